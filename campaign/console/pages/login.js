// Login: user and password (argon2 on the server) → a session token kept in this tab only.
import { h, put, api, get, setToken, showError } from '../lib.js';
import { t } from '../i18n.js';

export async function render(view, ctx) {
  const user = h('input', { name: 'user', autocomplete: 'username', required: true, 'data-test': 'login-user' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, 'data-test': 'login-password' });
  const msg = h('div');
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      put(msg, );
      try {
        const r = await api('POST', '/v1/campaign/login', { user: user.value, password: pass.value }, { noRedirect: true });
        setToken(r.token);
        ctx.signedIn(await get('/v1/campaign/me'));
      } catch (err) {
        if (err.status === 401) put(msg, h('div', { class: 'err', 'data-test': 'error' }, t('login.failed')));
        else showError(err, msg);
      }
    },
  },
  h('label', {}, t('user'), user), h('label', {}, t('password'), pass),
  h('button', { type: 'submit', 'data-test': 'login-submit' }, t('login')), msg);
  put(view, h('div', { class: 'card login' }, h('h1', {}, t('app')), form));
  user.focus();
}
