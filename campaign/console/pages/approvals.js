// Approvals inbox: what waits for my decision, with what I need to decide, and the trail.
import { h, put, get, post, num, pct, when, table, confirmDialog, showError, toast } from '../lib.js';
import { t } from '../i18n.js';

export async function render(view) {
  const { items } = await get('/v1/campaign/approvals/inbox');
  put(view, h('h1', {}, t('appr.title')),
    items.length ? items.map((it) => card(it, () => render(view))) : h('p', { class: 'muted', 'data-test': 'inbox-empty' }, t('appr.empty')));
}

const plural = { campaign: 'campaigns', activity: 'activities', task: 'tasks' };

function card(it, reload) {
  const msg = h('div');
  const act = async (action) => {
    const reject = action === 'reject';
    const comment = await confirmDialog(t(`appr.${action}`), `${it.kind} #${it.id} ${it.name}`, { comment: true, danger: reject });
    if (comment === null) return;
    try {
      await post(`/v1/campaign/${plural[it.kind]}/${it.id}/${action}`, { comment });
      toast(t('appr.done'));
      await reload();
    } catch (e) { showError(e, msg); }
  };
  const st = it.status;
  return h('div', { class: 'card', 'data-test': 'inbox-item', 'data-id': it.id, 'data-kind': it.kind },
    h('h2', {}, `${it.kind} #${it.id} · ${it.name}`),
    h('dl', { class: 'kv' },
      h('dt', {}, t('appr.submitted_by')), h('dd', {}, st.submitted_by || '–'),
      h('dt', {}, t('appr.round')), h('dd', {}, String(st.round)),
      h('dt', {}, t('appr.step')), h('dd', {}, `${st.step + 1} / ${st.chain.length}`)),
    it.bulk.map((b) => h('div', { class: 'card' },
      h('dl', { class: 'kv' },
        h('dt', {}, t('appr.segment')), h('dd', {}, `#${b.segment} ${b.segment_name}`),
        h('dt', {}, t('appr.size')), h('dd', { 'data-test': 'segment-size' }, num(b.segment_size)),
        h('dt', {}, t('appr.channel')), h('dd', {}, `${b.spec.channel} / ${b.spec.lane || 'marketing'}`),
        h('dt', {}, t('appr.exclusions')), h('dd', {}, (b.spec.custom_lists || []).join(', ') || '–'),
        h('dt', {}, t('appr.caps')), h('dd', {}, capsText(b.spec.policy)),
        h('dt', {}, t('appr.schedule')), h('dd', {}, b.spec.slices.map((s) => `${s.start}${s.window ? ` ${s.window}` : ''}`).join('; ') + ` (${b.spec.timezone})`)),
      h('h2', {}, t('appr.samples')),
      b.samples.map((s) => h('pre', { class: 'msg', 'data-test': 'sample' }, `${s.msisdn}: ${s.text}`)))),
    it.trigger ? triggerCard(it.trigger.spec) : null,
    h('h2', {}, t('appr.trail')),
    table([{ key: 'at', label: t('appr.at'), cell: (r) => when(r.at) }, { key: 'action', label: t('appr.action') }, { key: 'actor', label: t('appr.actor') }, { key: 'comment', label: t('comment') }], it.trail),
    h('div', { class: 'row' },
      h('button', { 'data-test': 'approve', onclick: () => act('approve') }, t('appr.approve')),
      h('button', { class: 'danger', 'data-test': 'reject', onclick: () => act('reject') }, t('appr.reject'))),
    msg);
}

function capsText(p) {
  if (!p) return '–';
  const parts = (p.caps || []).map((c) => JSON.stringify(c));
  if (p.recent_days) parts.push(`recent ${p.recent_days}d`);
  if (p.conflict_days) parts.push(`conflict ${p.conflict_days}d`);
  return parts.join(', ') || '–';
}

/** What a triggered task will do: the event it reacts to, for whom, what it sends and its limits. */
function triggerCard(s) {
  return h('div', { class: 'card', 'data-test': 'inbox-trigger' },
    h('dl', { class: 'kv' },
      h('dt', {}, t('trig.event_type')), h('dd', {}, s.event_type),
      h('dt', {}, t('seg.condition')), h('dd', {}, h('code', {}, s.condition || t('trig.any'))),
      h('dt', {}, t('appr.channel')), h('dd', {}, `${s.channel} / ${s.lane}`),
      h('dt', {}, t('trig.window')), h('dd', {}, `${s.window || t('trig.always')} (${s.timezone})`),
      h('dt', {}, t('trig.cooldown')), h('dd', {}, `${num(s.cooldown_s)} s`),
      h('dt', {}, t('trig.budget')), h('dd', {}, s.daily_budget === null ? t('trig.unlimited') : num(s.daily_budget)),
      h('dt', {}, t('trig.control_share')), h('dd', {}, pct(s.control_share)),
      h('dt', {}, t('appr.caps')), h('dd', {}, capsText(s.policy)),
      h('dt', {}, t('trig.valid_from')), h('dd', {}, `${s.valid_from || '–'} → ${s.valid_until || '–'}`)),
    h('h2', {}, t('camp.template')),
    h('pre', { class: 'msg', 'data-test': 'trigger-template' }, s.template));
}
