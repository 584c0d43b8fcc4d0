// Message lookup (operators): by message id or by number; parts, center ids, receipts and
// the timeline of each message.
import { h, put, get, when, table, showError, ApiError } from '../lib.js';
import { t } from '../i18n.js';

export async function render(view) {
  const id = h('input', { placeholder: t('look.id'), 'data-test': 'lookup-id' });
  const to = h('input', { placeholder: t('look.to'), 'data-test': 'lookup-to' });
  const out = h('div', { 'data-test': 'lookup-out' });
  const find = async () => {
    const qs = id.value.trim() ? `id=${encodeURIComponent(id.value.trim())}` : `to=${encodeURIComponent(to.value.trim())}&limit=20`;
    try {
      const r = await get(`/v1/lookup/messages?${qs}`);
      put(out, ...(r.messages.length ? r.messages.map(card) : [h('p', { class: 'muted' }, t('none'))]));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && !e.body.error) put(out, h('p', { class: 'muted' }, t('look.unavailable')));
      else showError(e, out);
    }
  };
  put(view, h('h1', {}, t('look.title')),
    h('div', { class: 'row card' }, id, to, h('button', { 'data-test': 'lookup-find', onclick: find }, t('look.find'))), out);
}

function card(m) {
  const skip = new Set(['timeline', 'parts']);
  return h('div', { class: 'card', 'data-test': 'message' },
    h('h2', {}, `${m.id} → ${m.to ?? ''}`),
    h('dl', { class: 'kv' }, Object.entries(m).filter(([k]) => !skip.has(k)).map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))])),
    m.parts ? table(Object.keys(m.parts[0] || {}).map((k) => ({ key: k, label: k, cell: (p) => (typeof p[k] === 'object' ? JSON.stringify(p[k]) : String(p[k] ?? '–')) })), m.parts) : null,
    h('h2', {}, t('look.timeline')),
    table([{ key: 'at', label: '', cell: (e) => (typeof e.at === 'number' ? when(e.at) : e.at) }, { key: 'event', label: '' }, { key: 'detail', label: '', cell: (e) => (typeof e.detail === 'object' ? JSON.stringify(e.detail) : e.detail ?? '') }], m.timeline || []));
}
