// Campaigns: the campaign → activity → task → bulk send tree with states, owners and
// organisations; create; submit, schedule, launch, pause, resume, and the emergency stop
// whose confirmation names how many messages it cancels.
import { h, put, api, get, post, num, badge, confirmDialog, showError, toast } from '../lib.js';
import { t } from '../i18n.js';

const PAGE = 50;

export async function render(view, { me }) {
  const state = { offset: 0, q: '', st: '' };
  const msg = h('div');
  const tree = h('ul', { class: 'tree', 'data-test': 'campaign-tree' });
  const tasksBox = h('div');
  const planner = me.roles.some((r) => r === 'planner' || r === 'admin');

  async function loadCampaigns() {
    const page = await get('/v1/campaign/campaigns?limit=20');
    put(tree, ...page.items.map((c) => campaignNode(c)));
  }

  function campaignNode(c) {
    const kids = h('ul', { class: 'tree' });
    let open = false;
    const toggle = async () => {
      open = !open;
      if (!open) { put(kids, ); return; }
      const full = await get(`/v1/campaign/campaigns/${c.id}`);
      const name = h('input', { placeholder: t('name'), 'data-test': 'activity-name' });
      put(kids, ...full.activity_list.map((a) => h('li', { 'data-activity': a.id },
        `▸ ${t('camp.activity_of')} #${a.id} ${a.name} · ${num(a.tasks)} ${t('camp.tasks')} · ${a.owner || '–'}`)),
      planner ? h('li', {}, h('div', { class: 'row' }, name, h('button', { class: 'plain', 'data-test': 'activity-create', onclick: async () => {
        try { await post(`/v1/campaign/campaigns/${c.id}/activities`, { name: name.value }); open = false; await toggle(); } catch (e) { showError(e, msg); }
      } }, t('camp.activity')))) : null);
    };
    return h('li', { 'data-campaign': c.id }, h('span', { class: 'caret', onclick: toggle },
      `▾ #${c.id} ${c.name} · ${num(c.activities)} / ${num(c.tasks)} · ${c.owner || '–'} · org ${c.org}`), kids);
  }

  async function loadTasks() {
    const qs = new URLSearchParams({ limit: String(PAGE), offset: String(state.offset) });
    if (state.q) qs.set('q', state.q);
    if (state.st) qs.set('state', state.st);
    const page = await get(`/v1/campaign/tasks?${qs}`);
    const rows = page.items.map((r) => taskRow(r));
    put(tasksBox, 
      h('div', { class: 'scroll' }, h('table', { 'data-test': 'tasks' },
        h('thead', {}, h('tr', {}, ['#', t('name'), t('camp.activity_of'), t('camp.state'), t('camp.owner'), t('camp.org'), t('camp.contacts'), t('camp.actions')]
          .map((x, i) => h('th', { class: i === 6 ? 'num' : '' }, x)))),
        h('tbody', {}, rows))),
      h('div', { class: 'row' },
        h('button', { class: 'plain', disabled: state.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - PAGE); loadTasks(); } }, t('camp.prev')),
        h('span', { class: 'muted' }, `${state.offset + 1}–${state.offset + page.items.length} / ${num(page.total)}`),
        h('button', { class: 'plain', disabled: state.offset + PAGE >= page.total, onclick: () => { state.offset += PAGE; loadTasks(); } }, t('camp.next'))));
  }

  function taskRow(r) {
    const bulkRow = h('tr', { hidden: true }, h('td', { colspan: 8 }));
    const act = async (label, fn) => {
      try { await fn(); toast(`${label}: #${r.id}`); await loadTasks(); } catch (e) { showError(e, msg); }
    };
    const btn = (key, fn, cls = 'plain') => h('button', { class: cls, 'data-act': key, onclick: () => act(t(`camp.${key}`), fn) }, t(`camp.${key}`));
    const buttons = [];
    if (r.state === 'draft' && planner) {
      buttons.push(btn('submit', () => post(`/v1/campaign/tasks/${r.id}/submit`, { comment: '' })));
      buttons.push(h('button', { class: 'plain', 'data-act': 'bulk', onclick: () => bulkForm(r, bulkRow) }, t('camp.bulk.new')));
    }
    if ((r.state === 'draft' || r.state === 'rejected') && planner) {
      buttons.push(h('button', { class: 'plain', 'data-act': 'edit', onclick: async () => {
        const name = await confirmDialog(t('camp.edit'), `#${r.id}`, { value: r.name });
        if (name) await act(t('camp.edit'), () => api('PATCH', `/v1/campaign/tasks/${r.id}`, { name }));
      } }, t('camp.edit')));
    }
    if (r.state === 'rejected' && planner) buttons.push(btn('revise', () => post(`/v1/campaign/tasks/${r.id}/revise`, { comment: '' })));
    if (r.state === 'approved' && planner) buttons.push(btn('schedule', () => post(`/v1/campaign/tasks/${r.id}/transitions`, { to: 'scheduled' })));
    if (r.state === 'scheduled') buttons.push(btn('launch', async () => {
      const bulk = await bulksOf(r);
      const next = bulk.find((b) => !b.planned_at) || bulk[0];
      if (!next) throw new Error('no bulk send');
      await post(`/v1/campaign/bulk/${next.id}/launch`);
    }, ''));
    if (r.state === 'running') buttons.push(btn('pause', () => post(`/v1/campaign/tasks/${r.id}/pause`)));
    if (r.state === 'paused') buttons.push(btn('resume', () => post(`/v1/campaign/tasks/${r.id}/resume`)));
    // A completed task has handed every message to the gateway, which may still hold most of
    // them: the stop cancels those (the task itself stays completed).
    if (['running', 'paused', 'scheduled', 'completed'].includes(r.state)) {
      buttons.push(h('button', { class: 'danger', 'data-act': 'stop', onclick: async () => {
        try {
          const p = await get(`/v1/campaign/tasks/${r.id}/stop/preview`);
          const ok = await confirmDialog(t('camp.stop.title'), t('camp.stop.text', { name: r.name, n: num(p.would_cancel) }), { danger: true });
          if (ok === null) return;
          await act(t('camp.stop'), () => post(`/v1/campaign/tasks/${r.id}/stop`));
        } catch (e) { showError(e, msg); }
      } }, t('camp.stop')));
    }
    const expand = async () => {
      if (!bulkRow.hidden) { bulkRow.hidden = true; return; }
      const bulk = await bulksOf(r);
      put(bulkRow.firstChild, bulk.length ? h('ul', { class: 'tree' }, bulk.map((b) => h('li', { 'data-bulk': b.id },
        `${t('camp.bulk')} #${b.id} · ${b.channel} · segment #${b.segment} · ${num(b.slices_done)}/${num(b.slices)} · ${num(b.contacts)} ${t('camp.contacts')}`))) : t('none'));
      bulkRow.hidden = false;
    };
    return [h('tr', { 'data-task': r.id, 'data-state': r.state },
      h('td', {}, h('span', { class: 'caret', onclick: expand }, `▸ ${r.id}`)), h('td', {}, r.name),
      h('td', {}, r.activity ? `#${r.campaign ?? '–'} › #${r.activity}` : '–'), h('td', {}, badge(r.state)),
      h('td', {}, r.owner || '–'), h('td', {}, String(r.org)), h('td', { class: 'num' }, num(r.contacts)),
      h('td', {}, h('div', { class: 'row' }, buttons))), bulkRow];
  }

  async function bulksOf(r) {
    const page = await get(`/v1/campaign/bulk?limit=500&q=${encodeURIComponent(r.name)}`);
    return page.items.filter((b) => b.task === r.id);
  }

  async function bulkForm(r, row) {
    const segs = await get('/v1/campaign/segments');
    const seg = h('select', { 'data-test': 'bulk-segment' }, segs.map((s) => h('option', { value: s.id }, `#${s.id} ${s.name} (${num(s.count)})`)));
    const tpl = h('textarea', { 'data-test': 'bulk-template', class: 'wide' }, '');
    const ch = h('select', { 'data-test': 'bulk-channel' }, ['sms', 'wap_push', 'mms', 'web'].map((c) => h('option', { value: c }, c)));
    put(row.firstChild, h('div', { class: 'card' },
      h('label', {}, t('appr.segment'), seg), h('label', {}, t('camp.template'), tpl), h('label', {}, t('appr.channel'), ch),
      h('button', { 'data-test': 'bulk-create', onclick: async () => {
        try {
          await post(`/v1/campaign/tasks/${r.id}/bulk`, { segment: Number(seg.value), template: tpl.value, channel: ch.value, slices: [{ start: new Date().toISOString() }] });
          toast(`${t('camp.bulk')} ✓`);
          row.hidden = true;
        } catch (e) { showError(e, msg); }
      } }, t('create'))));
    row.hidden = false;
  }

  const cname = h('input', { placeholder: t('name'), 'data-test': 'campaign-name' });
  const tname = h('input', { placeholder: t('name'), 'data-test': 'task-name' });
  const tact = h('input', { placeholder: `${t('camp.activity_of')} #`, type: 'number', 'data-test': 'task-activity', class: 'hide-sm' });
  const q = h('input', { placeholder: t('search'), 'data-test': 'task-search', onchange: (e) => { state.q = e.target.value; state.offset = 0; loadTasks(); } });
  const stsel = h('select', { onchange: (e) => { state.st = e.target.value; state.offset = 0; loadTasks(); } },
    h('option', { value: '' }, t('camp.all')),
    ['draft', 'submitted', 'approved', 'rejected', 'scheduled', 'running', 'paused', 'completed', 'cancelled'].map((s) => h('option', { value: s }, t(`state.${s}`))));
  put(view, h('h1', {}, t('camp.title')),
    planner ? h('div', { class: 'card row' }, cname, h('button', { 'data-test': 'campaign-create', onclick: async () => {
      try { await post('/v1/campaign/campaigns', { name: cname.value }); cname.value = ''; await loadCampaigns(); } catch (e) { showError(e, msg); }
    } }, t('camp.new')), tname, tact, h('button', { 'data-test': 'task-create', onclick: async () => {
      try {
        const body = { name: tname.value };
        if (tact.value) body.activity = Number(tact.value);
        await post('/v1/campaign/tasks', body); tname.value = ''; state.offset = 0; await loadTasks();
      } catch (e) { showError(e, msg); }
    } }, t('camp.task'))) : null,
    msg, tree, h('h2', {}, t('camp.tasks')), h('div', { class: 'row' }, q, stsel), tasksBox);
  await Promise.all([loadCampaigns(), loadTasks()]);
}
