// Channels (operators): binds and state, rate against its limit, window use, backlog per
// lane, throttles, receipt latency and last errors, polled every 2 s while the page is
// shown (EventSource cannot send the bearer header); pause / resume a channel.
import { h, put, get, post, num, table, showError, confirmDialog, toast, ApiError } from '../lib.js';
import { t } from '../i18n.js';

const EVERY_MS = 2000;

export async function render(view) {
  const msg = h('div');
  const box = h('div', { 'data-test': 'channels' });
  put(view, h('h1', {}, t('chan.title')), h('p', { class: 'muted' }, t('chan.live')), msg, box);

  async function tick() {
    let data;
    try { data = await get('/v1/channels'); } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 405)) { put(box, h('p', { class: 'muted', 'data-test': 'unavailable' }, t('chan.unavailable'))); return false; }
      showError(e, msg);
      return true;
    }
    put(box, table([
      { key: 'name', label: t('name'), cell: (c) => h('span', {}, c.name, ' ', h('span', { class: `badge ${c.paused ? 'paused' : c.binds_up > 0 ? 'up' : 'down'}` }, c.paused ? t('state.paused') : `${c.protocol}`)) },
      { key: 'binds', label: t('chan.binds'), num: true, cell: (c) => `${c.binds_up}/${c.binds_configured}` },
      { key: 'rate', label: t('chan.rate'), num: true, cell: (c) => `${num(Math.round(c.sent_per_s))} / ${num(c.rate_aimd ?? c.rate_limit)} (${num(c.rate_limit)})` },
      { key: 'window', label: t('chan.window'), num: true, cell: (c) => `${c.window.in_use}/${c.window.size}` },
      { key: 'backlog', label: t('chan.backlog'), cell: (c) => `otp ${num(c.backlog.otp)} · notif ${num(c.backlog.notification)} · mkt ${num(c.backlog.marketing)}` },
      { key: 'throttled_total', label: t('chan.throttled'), num: true },
      { key: 'lat', label: t('chan.latency'), num: true, cell: (c) => `${num(c.receipt_latency_ms.p50)} / ${num(c.receipt_latency_ms.p99)} ms` },
      { key: 'err', label: t('chan.errors'), cell: (c) => (c.last_errors || []).slice(0, 3).map((e) => h('div', { class: 'err' }, `${e.at} ${e.text}`)) },
      { key: 'act', label: '', cell: (c) => h('button', { class: c.paused ? '' : 'danger', 'data-test': `chan-${c.paused ? 'resume' : 'pause'}`, onclick: async () => {
        const action = c.paused ? 'resume' : 'pause';
        if ((await confirmDialog(t(`chan.${action}`), c.name)) === null) return;
        try { await post(`/v1/channels/${encodeURIComponent(c.name)}/${action}`); toast(`${c.name}: ${action}`); await tick(); } catch (e) { showError(e, msg); }
      } }, c.paused ? t('chan.resume') : t('chan.pause')) },
    ], data.channels));
    return true;
  }

  if (await tick()) {
    const timer = setInterval(() => {
      if (!document.body.contains(box)) { clearInterval(timer); return; }
      tick();
    }, EVERY_MS);
  }
}
