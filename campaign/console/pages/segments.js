// Segments: build by condition with the count after each step (a grammar error is shown
// under its column), combine saved segments, preview, import numbers with a progress bar,
// export as CSV.
import { h, put, get, post, api, num, table, showError, progressBar, download, toast, showConditionError } from '../lib.js';
import { upload } from '../lib_upload.js';
import { t } from '../i18n.js';

const OPS = ['intersection', 'union', 'difference'];

/** The running condition after a step, as one expression of the grammar. */
function combine(prev, op, cond) {
  if (!prev) return cond;
  if (op === 'union') return `(${prev}) or (${cond})`;
  if (op === 'difference') return `(${prev}) and not (${cond})`;
  return `(${prev}) and (${cond})`;
}

export async function render(view) {
  const msg = h('div');
  const steps = h('div', { 'data-test': 'steps' });
  const saved = h('div');

  function stepRow(first) {
    const op = first ? null : h('select', { 'data-test': 'step-op' }, OPS.map((o) => h('option', { value: o }, t(`seg.${o}`))));
    const cond = h('input', { class: 'wide', 'data-test': 'step-condition', placeholder: 'brand in ["gotone","mzone"] and arpu >= 50' });
    const out = h('span', { class: 'muted', 'data-test': 'step-count' });
    const errAt = h('div', { 'data-test': 'step-error' });
    const row = h('div', { class: 'card', 'data-step': '' }, h('div', { class: 'row' }, op, h('label', { class: 'wide' }, t('seg.condition'), cond), out), errAt);
    row.get = () => ({ op: op ? op.value : 'union', cond: cond.value.trim(), out, errAt, cond_el: cond });
    return row;
  }

  /** Counts each step: the step's own condition first (its errors carry its own columns), then the running set. */
  async function countAll() {
    let prev = '';
    for (const row of steps.children) {
      const s = row.get();
      put(s.errAt, );
      s.out.textContent = '…';
      try {
        await post('/v1/campaign/count', { condition: s.cond });
      } catch (e) {
        s.out.textContent = '';
        if (!showConditionError(e, s.errAt, s.cond_el)) showError(e, s.errAt);
        return false;
      }
      prev = combine(prev, s.op, s.cond);
      const r = await post('/v1/campaign/count', { condition: prev });
      s.out.textContent = `${t('seg.count')}: ${num(r.count)}`;
    }
    return true;
  }

  async function loadSaved() {
    const list = await get('/v1/campaign/segments');
    const pick = () => h('select', {}, list.map((s) => h('option', { value: s.id }, `#${s.id} ${s.name}`)));
    const a = pick(), b = pick();
    const op = h('select', {}, OPS.map((o) => h('option', { value: o }, t(`seg.${o}`))));
    const name = h('input', { placeholder: t('name') });
    const previewBox = h('div');
    put(saved, 
      table([
        { key: 'id', label: '#' }, { key: 'name', label: t('name') }, { key: 'kind', label: '' },
        { key: 'count', label: t('seg.count'), num: true },
        { key: 'x', label: '', cell: (s) => h('div', { class: 'row' },
          h('button', { class: 'plain', 'data-test': 'seg-preview', onclick: async () => {
            try { put(previewBox, h('h2', {}, `${t('seg.preview')} #${s.id}`), table(
              ['msisdn', 'brand', 'region', 'city', 'arpu', 'age', 'plan'].map((k) => ({ key: k, label: k })),
              await get(`/v1/campaign/segments/${s.id}/preview?n=10`))); } catch (e) { showError(e, msg); }
          } }, t('seg.preview')),
          h('button', { class: 'plain', onclick: async () => {
            try { const r = await api('GET', `/v1/campaign/segments/${s.id}/export`, undefined, { raw: true }); download(`segment-${s.id}.csv`, await r.blob()); } catch (e) { showError(e, msg); }
          } }, t('seg.export'))) },
      ], list, { 'data-test': 'segments' }),
      previewBox,
      h('h2', {}, t('seg.setops')),
      h('div', { class: 'row card' }, a, op, b, name, h('button', { onclick: async () => {
        try { await post('/v1/campaign/segments', { name: name.value, op: op.value, a: Number(a.value), b: Number(b.value) }); await loadSaved(); } catch (e) { showError(e, msg); }
      } }, t('create'))));
  }

  const segName = h('input', { placeholder: t('name'), 'data-test': 'segment-name' });
  steps.append(stepRow(true));
  const [bar, setBar] = progressBar();
  const file = h('input', { type: 'file', accept: '.txt,.csv', 'data-test': 'numbers-file' });
  const fileName = h('input', { placeholder: t('name') });
  put(view, h('h1', {}, t('seg.title')),
    h('h2', {}, t('seg.steps')), steps,
    h('div', { class: 'row' },
      h('button', { class: 'plain', 'data-test': 'add-step', onclick: () => steps.append(stepRow(false)) }, t('seg.add_step')),
      h('button', { class: 'plain', 'data-test': 'count', onclick: () => countAll() }, t('seg.count')),
      segName,
      h('button', { 'data-test': 'segment-save', onclick: async () => {
        if (!(await countAll())) return;
        try {
          const body = { name: segName.value, steps: [...steps.children].map((r) => { const s = r.get(); return { op: s.op, source: { condition: s.cond } }; }) };
          const r = await post('/v1/campaign/segments', body);
          toast(`#${r.segment.id} ${r.segment.name}: ${num(r.segment.count)}`);
          await loadSaved();
        } catch (e) { showError(e, msg); }
      } }, t('seg.save'))),
    msg,
    h('h2', {}, t('seg.import')),
    h('div', { class: 'row card' }, file, fileName, h('button', { class: 'plain', 'data-test': 'numbers-import', onclick: async () => {
      const f = file.files[0];
      if (!f) return;
      try {
        const numbers = (await f.text()).split(/\r?\n/).map((x) => x.trim()).filter(Boolean);
        setBar(0);
        const r = await upload('/v1/campaign/segments', JSON.stringify({ name: fileName.value || f.name, numbers }), 'application/json', setBar);
        toast(`#${r.segment.id}: ${num(r.segment.count)}`);
        await loadSaved();
      } catch (e) { showError(e, msg); }
    } }, t('rules.import')), bar),
    h('h2', {}, t('seg.saved')), saved);
  await loadSaved();
}
