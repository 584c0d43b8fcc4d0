// Public rules (gateway, operators): check a number, add / remove numbers on a list,
// import a file with a progress bar, and the caps and quiet hours in force.
import { h, put, get, post, api, num, showError, progressBar, toast, table } from '../lib.js';
import { t } from '../i18n.js';

const LISTS = ['blacklist', 'graylist', 'do_not_disturb'];

export async function render(view) {
  const msg = h('div');
  const q = h('input', { placeholder: '13800138000', 'data-test': 'rules-msisdn' });
  const result = h('div', { 'data-test': 'rules-result' });
  const list = h('select', { 'data-test': 'rules-list' }, LISTS.map((l) => h('option', { value: l }, l)));
  const channel = h('input', { placeholder: `${t('rules.channel')} (sms)`, 'data-test': 'rules-channel' });
  const numbers = h('textarea', { placeholder: t('rules.numbers'), 'data-test': 'rules-numbers' });
  const file = h('input', { type: 'file', accept: '.txt,.csv', 'data-test': 'rules-file' });
  const [bar, setBar] = progressBar();
  const jobOut = h('div', { 'data-test': 'rules-import' });

  const edit = async (remove) => {
    const body = { msisdns: numbers.value.split(/\s+/).filter(Boolean) };
    if (channel.value) body.channel = channel.value;
    try {
      const r = await post(`/v1/rules/lists/${list.value}${remove ? '/remove' : ''}`, body);
      toast(JSON.stringify(r));
    } catch (e) { showError(e, msg); }
  };

  const check = async () => {
    try {
      const r = await get(`/v1/rules/check?msisdn=${encodeURIComponent(q.value.trim())}`);
      put(result, h('span', { class: r.refused ? 'err' : 'ok' }, r.refused || t('rules.allowed')), h('span', { class: 'muted' }, ` (${r.channel}, ${r.lane}${r.exempt ? ', exempt' : ''})`));
    } catch (e) { showError(e, result); }
  };

  const importFile = async () => {
    const f = file.files[0];
    if (!f) return;
    try {
      const text = await f.text();
      const total = Math.max(1, text.split(/\n/).filter((l) => l.trim()).length);
      setBar(0);
      const qs = channel.value ? `?channel=${encodeURIComponent(channel.value)}` : '';
      const job = await api('POST', `/v1/rules/lists/${list.value}/import${qs}`, text, { type: 'text/plain' });
      for (;;) {
        const p = await get(`/v1/rules/imports/${job.id}`);
        setBar(p.lines_read / total);
        jobOut.textContent = `${p.state}: ${num(p.lines_read)} / ${num(total)}, +${num(p.added)}, ${num(p.errors_total)} ${t('error')}`;
        if (p.state === 'done' || p.state === 'failed') break;
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (e) { showError(e, msg); }
  };

  const [caps, quiet] = await Promise.all([get('/v1/rules/caps'), get('/v1/rules/quiet_hours')]);
  put(view, h('h1', {}, t('rules.title')),
    h('div', { class: 'card' }, h('h2', {}, t('rules.check')),
      h('div', { class: 'row' }, q, h('button', { 'data-test': 'rules-check', onclick: check }, t('search'))), result),
    h('div', { class: 'card' }, h('h2', {}, t('rules.list')),
      h('div', { class: 'row' }, list, channel), numbers,
      h('div', { class: 'row' },
        h('button', { 'data-test': 'rules-add', onclick: () => edit(false) }, t('rules.add')),
        h('button', { class: 'danger', 'data-test': 'rules-remove', onclick: () => edit(true) }, t('rules.remove'))),
      h('h2', {}, t('rules.import')), h('div', { class: 'row' }, file, h('button', { class: 'plain', 'data-test': 'rules-import-go', onclick: importFile }, t('rules.import')), bar), jobOut),
    msg,
    h('div', { class: 'grid' },
      h('div', { class: 'card' }, h('h2', {}, t('rules.caps')),
        table([{ key: 'channel', label: t('rules.channel') }, { key: 'max', label: 'max', num: true }, { key: 'period', label: '' }], caps.caps)),
      h('div', { class: 'card' }, h('h2', {}, t('rules.quiet')), h('p', {}, quiet.windows.join(', ') || '–'))));
}
