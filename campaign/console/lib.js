// Shared helpers of the console: element building (text only: nothing is ever parsed as
// HTML, so a campaign name cannot inject markup), the API client, dialogs and charts.
import { t } from './i18n.js';

const TOKEN = 'sluice.token';

/** Builds an element: h('button', {onclick: f, class: 'plain'}, 'text', child, ...). */
export function h(tag, attrs, ...kids) {
  const svg = tag.startsWith('svg:');
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value' && !svg) el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

/** Replaces the children of `el` with `kids`, flattened, without the null / false ones. */
export function put(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
  return el;
}

export const token = () => sessionStorage.getItem(TOKEN);
export const setToken = (v) => (v ? sessionStorage.setItem(TOKEN, v) : sessionStorage.removeItem(TOKEN));

/** An API failure: HTTP status and the server's `{"error"}` body (with `column` for parse errors). */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.error || body.reason)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** Calls the JSON API with the session's bearer token; 401 sends the user back to the login page. */
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  const tk = token();
  if (tk) headers.Authorization = `Bearer ${tk}`;
  let payload;
  if (body instanceof Blob || typeof body === 'string') { payload = body; headers['Content-Type'] = opts.type || 'text/plain'; }
  else if (body !== undefined) { payload = JSON.stringify(body); headers['Content-Type'] = 'application/json'; }
  const r = await fetch(path, { method, headers, body: payload });
  if (opts.raw) { if (!r.ok) throw new ApiError(r.status, null); return r; }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (r.status === 401 && !opts.noRedirect) { setToken(null); location.hash = '#/login'; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

export const get = (p, o) => api('GET', p, undefined, o);
export const post = (p, b, o) => api('POST', p, b === undefined ? {} : b, o);

export function toast(msg) {
  const el = document.getElementById('toast');
  el.textContent = msg;
  el.className = 'show';
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.className = ''; }, 3500);
}

/** Shows an error in `slot` (or a toast): the message, and the column for a condition's parse error. */
export function showError(e, slot) {
  const msg = e instanceof ApiError ? `${t('error')} ${e.status}: ${e.message}` : String(e && e.message || e);
  if (slot) put(slot, h('div', { class: 'err', 'data-test': 'error' }, msg));
  else toast(msg);
}

/**
 * Shows a condition's parse error (422 with `column`) in `slot`: the condition with a caret
 * under the column, the message, and the cursor put there in `input`. False for any other
 * error, which the caller shows its own way.
 */
export function showConditionError(e, slot, input) {
  if (!(e instanceof ApiError && e.body.column)) return false;
  const src = input.value.trim();
  put(slot,
    h('div', { class: 'caretpos' }, `${src}\n${' '.repeat(Math.max(0, e.body.column - 1))}^`),
    h('div', { class: 'err', 'data-test': 'error' }, `${t('seg.at_column')} ${e.body.column}: ${e.message}`));
  const at = input.value.length - input.value.trimStart().length + e.body.column - 1;
  input.focus();
  input.setSelectionRange(at, at);
  return true;
}

/** A modal confirmation; resolves to the typed comment or value (or '') on OK, null on cancel. */
export function confirmDialog(title, text, { danger = false, comment = false, value } = {}) {
  return new Promise((resolve) => {
    const input = value !== undefined ? h('input', { 'data-test': 'dialog-value', class: 'wide', value })
      : comment ? h('textarea', { 'data-test': 'dialog-comment', placeholder: t('comment') }) : null;
    const dlg = h('dialog', { 'data-test': 'dialog' },
      h('h2', {}, title), h('p', { 'data-test': 'dialog-text' }, text), input,
      h('div', { class: 'row' },
        h('button', { class: danger ? 'danger' : '', 'data-test': 'dialog-ok', onclick: () => { dlg.close(); resolve(input ? input.value : ''); } }, t('ok')),
        h('button', { class: 'plain', 'data-test': 'dialog-cancel', onclick: () => { dlg.close(); resolve(null); } }, t('cancel'))));
    dlg.addEventListener('close', () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
  });
}

export const badge = (s) => h('span', { class: `badge ${s}` }, t(`state.${s}`, s));
export const num = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString());
export const pct = (x) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(1)}%`);
export const when = (s) => (s ? new Date(s * 1000).toLocaleString() : '–');

/** A table: columns [{key, label, num?, cell?(row)}]. */
export function table(cols, rows, attrs = {}) {
  return h('div', { class: 'scroll' }, h('table', attrs,
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { class: c.num ? 'num' : '' }, c.label)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, cols.map((c) => h('td', { class: c.num ? 'num' : '' }, c.cell ? c.cell(r) : (c.num ? num(r[c.key]) : r[c.key] ?? '–'))))))));
}

/** A horizontal bar chart in SVG: bars [{label, value}], one colour per series. */
export function barChart(bars, { title = '', width = 560 } = {}) {
  const max = Math.max(1, ...bars.map((b) => b.value || 0));
  const rowH = 22, left = 120, right = 70;
  const hgt = bars.length * rowH + 20;
  return h('svg:svg', { class: 'chart', viewBox: `0 0 ${width} ${hgt}`, role: 'img', 'aria-label': title },
    bars.map((b, i) => {
      const w = ((width - left - right) * (b.value || 0)) / max;
      const y = 10 + i * rowH;
      return [
        h('svg:text', { x: left - 6, y: y + 13, 'text-anchor': 'end' }, b.label),
        h('svg:rect', { x: left, y, width: Math.max(0, w), height: rowH - 6, rx: 3, fill: b.color || '#1f6feb' }),
        h('svg:text', { x: left + w + 4, y: y + 13 }, num(b.value)),
      ];
    }));
}

/** A progress bar element and its setter (fraction 0..1). */
export function progressBar() {
  const fill = h('span');
  const el = h('div', { class: 'bar', role: 'progressbar', 'data-test': 'progress' }, fill);
  return [el, (f) => { fill.style.width = `${Math.round(Math.min(1, Math.max(0, f)) * 100)}%`; el.setAttribute('aria-valuenow', String(Math.round(f * 100))); }];
}

/** Saves `data` as a file download (CSV exports). */
export function download(name, blob) {
  const a = h('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
