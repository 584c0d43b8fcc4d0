// Triggers: triggered tasks (an event type and a condition instead of a bulk send) with
// their state, limits and control share; a create form under a campaign → activity whose
// task then goes through the same approval chain as any task (the approvals inbox), and
// is activated once scheduled; each trigger's funnel against its control (the Evaluation
// page's charts); the live monitor, polled every 2 s like the channels page.
import { h, put, get, post, num, pct, badge, table, showError, showConditionError, toast } from '../lib.js';
import { t } from '../i18n.js';
import { funnelChart, upliftDiff, upliftP, upliftSignificant } from '../funnel.js';

const EVERY_MS = 2000;
const STAGES = ['matched', 'sent', 'delivered', 'converted'];
const VERSUS = ['treated_targeted', 'treated_converted', 'control_targeted', 'control_converted'];
const secs = (s) => (s ? `${num(s)} s` : '–');

export async function render(view, { me }) {
  const has = (...roles) => me.roles.some((r) => roles.includes(r));
  const planner = has('planner', 'admin');
  const launcher = has('planner', 'operator', 'admin');
  const operator = has('operator', 'admin');
  const msg = h('div');
  const monitorBox = h('div', { class: 'card', 'data-test': 'trig-monitor' });
  const listBox = h('div', { 'data-test': 'triggers' });
  const funnelBox = h('div', { 'data-test': 'trig-funnel' });
  let shown = null;

  async function tickMonitor() {
    const m = await get('/v1/campaign/triggers/monitor');
    const suppressed = Object.entries(m.outcomes_last_hour);
    const held = Object.entries(m.held_by_window);
    put(monitorBox,
      h('h2', {}, `${t('trig.monitor')} · ${t('chan.live')}`),
      h('dl', { class: 'kv' },
        h('dt', {}, t('trig.events_s')), h('dd', { 'data-test': 'mon-events-s' }, m.events_per_s.toFixed(2)),
        h('dt', {}, t('trig.events_span', { s: m.over_s })), h('dd', { 'data-test': 'mon-events' }, num(Math.round(m.events_per_s * m.over_s))),
        h('dt', {}, t('trig.matches_s')), h('dd', { 'data-test': 'mon-matches-s' }, m.matches_per_s.toFixed(2)),
        h('dt', {}, t('trig.sent_s')), h('dd', {}, m.sent_per_s.toFixed(2)),
        h('dt', {}, t('trig.pending')), h('dd', { 'data-test': 'mon-pending' }, num(m.pending_events)),
        h('dt', {}, t('trig.held')), h('dd', { 'data-test': 'mon-held' }, held.length ? held.map(([id, n]) => `#${id}: ${num(n)}`).join(' · ') : '0'),
        h('dt', {}, t('trig.outcomes')), h('dd', { 'data-test': 'mon-outcomes' },
          suppressed.length ? suppressed.map(([k, n]) => h('div', {}, `${k}: ${num(n)}`)) : '0')));
  }

  async function loadList() {
    const rows = await get('/v1/campaign/triggers');
    put(listBox, rows.length ? table([
      { key: 'id', label: '#', cell: (r) => String(r.trigger.id) },
      { key: 'name', label: t('name'), cell: (r) => r.task.task_name },
      { key: 'where', label: t('camp.activity_of'), cell: (r) => (r.task.activity ? `${r.task.campaign_name ?? '–'} › ${r.task.activity_name ?? '–'}` : '–') },
      { key: 'state', label: t('camp.state'), cell: (r) => badge(r.state) },
      { key: 'event', label: t('trig.event_type'), cell: (r) => r.trigger.spec.event_type },
      { key: 'cond', label: t('seg.condition'), cell: (r) => h('code', {}, r.trigger.spec.condition || t('trig.any')) },
      { key: 'window', label: t('trig.window'), cell: (r) => r.trigger.spec.window || t('trig.always') },
      { key: 'cool', label: t('trig.cooldown'), num: true, cell: (r) => secs(r.trigger.spec.cooldown_s) },
      { key: 'budget', label: t('trig.budget'), num: true, cell: (r) => num(r.trigger.spec.daily_budget) },
      { key: 'ctl', label: t('trig.control_share'), num: true, cell: (r) => pct(r.trigger.spec.control_share) },
      { key: 'act', label: t('camp.actions'), cell: (r) => h('div', { class: 'row' }, actions(r)) },
    ], rows, { 'data-test': 'trigger-rows' }) : h('p', { class: 'muted' }, t('none')));
    for (const tr of listBox.querySelectorAll('tbody tr')) {
      const r = rows[tr.sectionRowIndex];
      tr.dataset.trigger = r.trigger.id;
      tr.dataset.state = r.state;
      tr.dataset.name = r.task.task_name;
    }
  }

  function actions(r) {
    const task = r.trigger.task;
    const act = (key, label, fn, cls = 'plain') => h('button', { class: cls, 'data-act': key, onclick: async () => {
      try { await fn(); toast(`${label}: ${r.task.task_name}`); await loadList(); } catch (e) { showError(e, msg); }
    } }, label);
    const out = [];
    if (r.state === 'draft' && planner) out.push(act('submit', t('camp.submit'), () => post(`/v1/campaign/tasks/${task}/submit`, { comment: '' })));
    if (r.state === 'rejected' && planner) out.push(act('revise', t('camp.revise'), () => post(`/v1/campaign/tasks/${task}/revise`, { comment: '' })));
    if (r.state === 'approved' && planner) out.push(act('schedule', t('camp.schedule'), () => post(`/v1/campaign/tasks/${task}/transitions`, { to: 'scheduled' })));
    if (r.state === 'scheduled' && launcher) out.push(act('activate', t('trig.activate'), () => post(`/v1/campaign/triggers/${r.trigger.id}/activate`), ''));
    if (r.state === 'running' && operator) out.push(act('pause', t('camp.pause'), () => post(`/v1/campaign/tasks/${task}/pause`)));
    if (r.state === 'paused' && operator) out.push(act('resume', t('camp.resume'), () => post(`/v1/campaign/tasks/${task}/resume`)));
    out.push(h('button', { class: 'plain', 'data-act': 'funnel', onclick: () => showFunnel(r) }, t('eval.funnel')));
    return out;
  }

  async function showFunnel(r) {
    shown = r;
    try {
      const f = await get(`/v1/campaign/triggers/${r.trigger.id}/report`);
      const u = f.uplift;
      const suppressed = Object.entries(f.suppressed);
      put(funnelBox, h('div', { class: 'card', 'data-trigger': r.trigger.id },
        h('h2', {}, `${t('eval.funnel')} · #${r.trigger.id} ${r.task.task_name} · ${r.trigger.spec.event_type}`),
        h('div', { 'data-test': 'trig-funnel-main' }, funnelChart(f, STAGES)),
        h('h2', {}, `${t('eval.variant')} / ${t('eval.control')}`),
        h('div', { 'data-test': 'trig-funnel-control' }, funnelChart(f, VERSUS)),
        h('dl', { class: 'kv' },
          h('dt', {}, t('eval.uplift')), h('dd', { 'data-test': 'trig-uplift' }, upliftDiff(u)),
          h('dt', {}, t('eval.p')), h('dd', {}, upliftP(u)),
          h('dt', {}, t('trig.significance')), h('dd', {}, upliftSignificant(u)),
          h('dt', {}, t('eval.failed')), h('dd', {}, num(f.failed)),
          h('dt', {}, t('trig.held')), h('dd', {}, `${num(f.held_now)} (${t('trig.held_total')} ${num(f.held_total)})`),
          h('dt', {}, t('trig.stale')), h('dd', {}, num(f.dropped_stale)),
          h('dt', {}, t('trig.suppressed')), h('dd', {}, suppressed.length ? suppressed.map(([k, n]) => h('div', {}, `${k}: ${num(n)}`)) : '0'))));
    } catch (e) { showError(e, funnelBox); }
  }

  put(view, h('h1', {}, t('trig.title')), msg, monitorBox, listBox, funnelBox,
    planner ? [h('h2', {}, t('trig.new')), await createForm(async () => { await loadList(); })] : null);
  await Promise.all([tickMonitor(), loadList()]);
  const timer = setInterval(async () => {
    if (!document.body.contains(monitorBox)) { clearInterval(timer); return; }
    try {
      await tickMonitor();
      if (shown) await showFunnel(shown);
    } catch (e) { showError(e, msg); }
  }, EVERY_MS);
}

/** The create form: where (campaign → activity, with their approval), then the trigger. */
async function createForm(created) {
  const msg = h('div');
  const campaigns = (await get('/v1/campaign/campaigns?limit=100')).items;
  const camp = h('select', { 'data-test': 'trig-campaign' }, campaigns.map((c) => h('option', { value: c.id }, `#${c.id} ${c.name}`)));
  const act = h('select', { 'data-test': 'trig-activity' });
  const approvals = h('div', { class: 'row', 'data-test': 'trig-parents' });
  const field = (label, el, cls) => h('label', { class: cls }, label, el);
  const input = (key, attrs = {}) => h('input', { 'data-test': `trig-${key}`, ...attrs });
  const sel = (key, values, value) => h('select', { 'data-test': `trig-${key}` }, values.map((v) => h('option', { value: v, selected: v === value }, v)));
  const f = {
    name: input('name', { placeholder: t('name') }),
    event_type: input('event', { value: 'roaming_arrival' }),
    condition: input('condition', { class: 'wide', placeholder: 'attrs.country != "CN" and arpu >= 50' }),
    template: h('textarea', { 'data-test': 'trig-template', class: 'wide', placeholder: 'Welcome to {attrs.country}! …' }),
    channel: sel('channel', ['sms', 'wap_push', 'mms', 'web'], 'sms'),
    lane: sel('lane', ['marketing', 'notification', 'otp'], 'marketing'),
    window: input('window', { placeholder: '08:00-22:00' }),
    staleness_s: input('staleness', { type: 'number', min: 0, value: 3600 }),
    cooldown_s: input('cooldown', { type: 'number', min: 0, value: 0 }),
    daily_budget: input('budget', { type: 'number', min: 0, placeholder: t('trig.unlimited') }),
    valid_from: input('valid-from', { type: 'datetime-local' }),
    valid_until: input('valid-until', { type: 'datetime-local' }),
    control_share: input('control', { type: 'number', min: 0, max: 100, step: 1, value: 10 }),
    priority: input('priority', { type: 'number', value: 0 }),
    score_attr: input('score', { placeholder: 'propensity' }),
  };
  const condErr = h('div', { 'data-test': 'trig-condition-error' });
  // A task created by a first attempt whose trigger the server refused: the next attempt
  // attaches to it instead of leaving one empty task per try.
  let pending = null;

  async function parents() {
    put(approvals);
    if (!camp.value) return;
    const full = await get(`/v1/campaign/campaigns/${camp.value}`);
    const keep = act.value;
    put(act, full.activity_list.map((a) => h('option', { value: a.id, selected: String(a.id) === keep }, `#${a.id} ${a.name}`)));
    const subjects = [['campaigns', camp.value, t('trig.campaign')]];
    if (act.value) subjects.push(['activities', act.value, t('camp.activity_of')]);
    put(approvals, await Promise.all(subjects.map(async ([kind, id, label]) => {
      const { status } = await get(`/v1/campaign/${kind}/${id}/approval`);
      const submit = ['draft', 'rejected'].includes(status.state)
        ? h('button', { class: 'plain', 'data-test': `trig-submit-${kind}`, onclick: async () => {
          try {
            await post(`/v1/campaign/${kind}/${id}/${status.state === 'draft' ? 'submit' : 'revise'}`, { comment: '' });
            await parents();
          } catch (e) { showError(e, msg); }
        } }, t('camp.submit')) : null;
      return h('span', { 'data-test': `trig-parent-${kind}`, 'data-state': status.state }, `${label} #${id} `, badge(status.state), ' ', submit);
    })));
  }
  camp.addEventListener('change', () => { act.value = ''; parents().catch((e) => showError(e, msg)); });
  act.addEventListener('change', () => parents().catch((e) => showError(e, msg)));

  function spec() {
    const n = (el) => (el.value === '' ? undefined : Number(el.value));
    const at = (el) => (el.value ? new Date(el.value).toISOString() : undefined);
    return {
      event_type: f.event_type.value.trim(), condition: f.condition.value.trim(), template: f.template.value,
      channel: f.channel.value, lane: f.lane.value, window: f.window.value.trim() || undefined,
      staleness_s: n(f.staleness_s), cooldown_s: n(f.cooldown_s), daily_budget: n(f.daily_budget),
      valid_from: at(f.valid_from), valid_until: at(f.valid_until),
      control_share: (n(f.control_share) || 0) / 100, priority: n(f.priority), score_attr: f.score_attr.value.trim() || undefined,
    };
  }

  async function create() {
    put(condErr);
    put(msg);
    try {
      if (!act.value) throw new Error(t('trig.need_activity'));
      const name = f.name.value.trim();
      if (!pending || pending.name !== name || pending.activity !== act.value) {
        const task = await post('/v1/campaign/tasks', { name, activity: Number(act.value) });
        pending = { id: task.id, name, activity: act.value };
      }
      await post(`/v1/campaign/tasks/${pending.id}/trigger`, spec());
      toast(`${t('trig.created')}: ${name}`);
      pending = null;
      f.name.value = '';
      await created();
    } catch (e) {
      if (!showConditionError(e, condErr, f.condition)) showError(e, msg);
    }
  }

  await parents();
  return h('div', { class: 'card', 'data-test': 'trig-form' },
    h('div', { class: 'row' }, field(t('trig.campaign'), camp), field(t('camp.activity_of'), act), approvals),
    h('div', { class: 'row' }, field(t('name'), f.name), field(t('trig.event_type'), f.event_type),
      field(t('appr.channel'), f.channel), field(t('trig.lane'), f.lane), field(t('trig.priority'), f.priority), field(t('trig.score_attr'), f.score_attr)),
    h('div', { class: 'row' }, field(t('seg.condition'), f.condition, 'wide')), condErr,
    field(t('camp.template'), f.template),
    h('div', { class: 'row' }, field(t('trig.window'), f.window), field(t('trig.staleness'), f.staleness_s),
      field(t('trig.cooldown_s'), f.cooldown_s), field(t('trig.budget'), f.daily_budget), field(t('trig.control_pct'), f.control_share)),
    h('div', { class: 'row' }, field(t('trig.valid_from'), f.valid_from), field(t('trig.valid_until'), f.valid_until),
      h('button', { 'data-test': 'trig-create', onclick: create }, t('create'))),
    msg);
}
