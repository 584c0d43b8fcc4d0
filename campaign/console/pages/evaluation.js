// Evaluation: a task's funnel and uplift per group and channel (charts), roll-ups by
// campaign, activity, organisation or city, and the daily report as CSV.
import { h, put, get, api, num, table, showError, download } from '../lib.js';
import { t } from '../i18n.js';
import { funnelChart, upliftDiff, upliftP } from '../funnel.js';

const STAGES = ['targeted', 'sent', 'delivered', 'failed', 'cancelled', 'converted'];

export async function render(view) {
  const msg = h('div');
  const tasks = await get('/v1/campaign/tasks?limit=100');
  const pick = h('select', { 'data-test': 'eval-task' }, tasks.items.map((x) => h('option', { value: x.id }, `#${x.id} ${x.name} (${t(`state.${x.state}`, x.state)})`)));
  const out = h('div', { 'data-test': 'eval-out' });
  const by = h('select', {}, ['campaign', 'activity', 'org', 'city'].map((b) => h('option', { value: b }, b)));
  const period = h('select', {}, ['day', 'month'].map((p) => h('option', { value: p }, p)));
  const roll = h('div');

  async function showTask() {
    if (!pick.value) { put(out, h('p', { class: 'muted' }, t('none'))); return; }
    try {
      const r = await get(`/v1/campaign/tasks/${pick.value}/report`);
      put(out, 
        ...r.funnel.map((f) => h('div', { class: 'card', 'data-test': 'funnel' },
          h('h2', {}, `${t('eval.funnel')} · ${t('eval.group')} ${f.group}${f.is_control ? ' (control)' : ''} · ${f.channel}`),
          funnelChart(f, STAGES))),
        r.uplift.length ? [h('h2', {}, t('eval.uplift')), table([
          { key: 'variant', label: t('eval.variant') }, { key: 'control', label: t('eval.control') }, { key: 'channel', label: t('appr.channel') },
          { key: 'd', label: t('eval.difference'), num: true, cell: (u) => upliftDiff(u.test) },
          { key: 'p', label: t('eval.p'), num: true, cell: (u) => upliftP(u.test) }], r.uplift)] : null);
      if (!r.funnel.length) out.append(h('p', { class: 'muted' }, t('none')));
    } catch (e) { showError(e, out); }
  }

  async function showRollup() {
    try {
      const rows = await get(`/v1/campaign/reports/rollup?by=${by.value}&period=${period.value}`);
      put(roll, table([
        { key: 'period', label: t('eval.period') },
        { key: 'k', label: t('eval.by'), cell: (r) => r.city ?? r.activity_name ?? r.campaign_name ?? (r.org !== null && r.org !== undefined ? `org ${r.org}` : null) ?? r.campaign ?? '–' },
        ...['targeted', 'sent', 'delivered', 'failed'].map((s) => ({ key: s, label: t(`eval.${s}`), num: true, cell: (r) => num(r.funnel[s]) })),
        { key: 'conversions', label: t('eval.converted'), num: true },
        { key: 'u', label: t('eval.uplift'), num: true, cell: (r) => upliftDiff(r.uplift) }], rows));
    } catch (e) { showError(e, roll); }
  }

  pick.addEventListener('change', showTask);
  by.addEventListener('change', showRollup);
  period.addEventListener('change', showRollup);
  put(view, h('h1', {}, t('eval.title')),
    h('div', { class: 'row' }, h('label', {}, t('eval.task'), pick),
      h('button', { class: 'plain', 'data-test': 'eval-refresh', onclick: showTask }, '↻'),
      h('button', { class: 'plain', 'data-test': 'daily-csv', onclick: async () => {
        try { const r = await api('GET', '/v1/campaign/reports/daily?format=csv', undefined, { raw: true }); download('daily.csv', await r.blob()); } catch (e) { showError(e, msg); }
      } }, t('eval.daily'))),
    msg, out, h('h2', {}, t('eval.rollup')), h('div', { class: 'row' }, h('label', {}, t('eval.by'), by), h('label', {}, t('eval.period'), period)), roll);
  await Promise.all([showTask(), showRollup()]);
}
