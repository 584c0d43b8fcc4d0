// Per-role home: who I am, what waits for me, what runs.
import { h, put, get, num, badge, table } from '../lib.js';
import { t } from '../i18n.js';

export async function render(view, { me }) {
  const approver = me.roles.includes('approver') || me.roles.includes('admin');
  const [tasks, running, inbox] = await Promise.all([
    get('/v1/campaign/tasks?limit=1'),
    get('/v1/campaign/tasks?state=running&limit=10'),
    approver ? get('/v1/campaign/approvals/inbox') : Promise.resolve(null),
  ]);
  put(view, 
    h('h1', {}, t('nav.home')),
    h('div', { class: 'grid' },
      h('div', { class: 'card' }, h('dl', { class: 'kv' },
        h('dt', {}, t('home.hello')), h('dd', { 'data-test': 'home-user' }, me.user),
        h('dt', {}, t('home.roles')), h('dd', {}, me.roles.join(', ')),
        h('dt', {}, t('home.org')), h('dd', {}, String(me.org_id)))),
      h('div', { class: 'card' }, h('dl', { class: 'kv' },
        h('dt', {}, t('home.tasks')), h('dd', { 'data-test': 'home-tasks' }, num(tasks.total)),
        h('dt', {}, t('home.running')), h('dd', {}, num(running.total)),
        inbox && [h('dt', {}, t('home.waiting')), h('dd', {}, h('a', { href: '#/approvals', 'data-test': 'home-inbox' }, num(inbox.items.length)))]))),
    running.items.length ? [h('h2', {}, t('home.running')), table([
      { key: 'id', label: '#' }, { key: 'name', label: t('name') },
      { key: 'state', label: t('camp.state'), cell: (r) => badge(r.state) },
      { key: 'contacts', label: t('camp.contacts'), num: true }], running.items)] : null);
}
