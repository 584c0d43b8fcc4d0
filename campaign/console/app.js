// The console shell: hash routes, the session, the header. Each page is its own module,
// loaded when first visited, so the first page carries only the shell and the login form.
import { h, get, token, setToken, showError } from './lib.js';
import { t, setLang, currentLang } from './i18n.js';

/** Pages: hash → module and who sees it in the menu (roles; empty = everyone signed in). */
const PAGES = [
  ['home', []],
  ['approvals', ['approver', 'admin']],
  ['campaigns', []],
  ['segments', []],
  ['triggers', []],
  ['evaluation', []],
  ['rules', ['operator', 'admin']],
  ['channels', ['operator', 'admin']],
  ['lookup', ['operator', 'admin']],
];

let me = null;

const maysee = (roles) => roles.length === 0 || (me && me.roles.some((r) => roles.includes(r)));

function header(route) {
  const top = document.getElementById('top');
  const lang = h('select', { 'aria-label': 'language', 'data-test': 'lang', onchange: (e) => { setLang(e.target.value); show(); } },
    h('option', { value: 'zh', selected: currentLang() === 'zh' }, '中文'),
    h('option', { value: 'en', selected: currentLang() === 'en' }, 'English'));
  if (!me) { top.replaceChildren(h('span', { class: 'brand' }, t('app')), h('nav'), h('div', { class: 'who' }, lang)); return; }
  top.replaceChildren(
    h('span', { class: 'brand' }, t('app')),
    h('nav', {}, PAGES.filter(([, roles]) => maysee(roles)).map(([p]) =>
      h('a', { href: `#/${p}`, class: p === route ? 'on' : '', 'data-nav': p }, t(`nav.${p}`)))),
    h('div', { class: 'who' }, h('span', { 'data-test': 'whoami' }, me.user), lang,
      h('button', { 'data-test': 'logout', onclick: logout }, t('logout'))));
}

async function logout() {
  try { await fetch('/v1/campaign/logout', { method: 'POST', headers: { Authorization: `Bearer ${token()}` } }); } catch { /* the session ends here either way */ }
  setToken(null);
  me = null;
  location.hash = '#/login';
}

/** Renders the page of the current hash. */
async function show() {
  const view = document.getElementById('view');
  document.body.dataset.ready = '';
  let route = (location.hash.replace(/^#\/?/, '').split('/')[0]) || 'home';
  if (!token()) route = 'login';
  if (route !== 'login' && !me) {
    try { me = await get('/v1/campaign/me'); } catch (e) { if (!token()) { route = 'login'; } else { showError(e, view); return; } }
  }
  if (route === 'login' && token() && me) route = 'home';
  const page = PAGES.find(([p]) => p === route);
  if (route !== 'login' && (!page || !maysee(page[1]))) route = 'home';
  header(route);
  view.replaceChildren(h('p', { class: 'muted' }, t('loading')));
  try {
    const mod = await import(`./pages/${route}.js`);
    await mod.render(view, { me, signedIn: (who) => { me = who; location.hash = '#/home'; } });
  } catch (e) {
    showError(e, view);
  }
  // When the page is interactive (the browser test and the page-weight bench read it).
  document.body.dataset.readyAt = String(performance.now());
  document.body.dataset.ready = route;
}

window.addEventListener('hashchange', show);
show();
