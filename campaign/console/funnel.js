// Funnel charts shared by the Evaluation page (a task's groups) and the Triggers page (a
// trigger against its hold-out control): one drawing of the stages, their colours and the
// uplift's z-test cells, so both pages read the same way.
import { h, pct, barChart } from './lib.js';
import { t } from './i18n.js';

/** Colour of each stage, across both pages. */
export const COLORS = {
  matched: '#64748b', targeted: '#94a3b8', sent: '#1f6feb', delivered: '#1a7f37', failed: '#cf222e',
  cancelled: '#9a6700', converted: '#8250df', control: '#d4a72c',
  treated_targeted: '#94a3b8', treated_converted: '#8250df', control_targeted: '#d4a72c', control_converted: '#bf8700',
};

/** The funnel `counts` over `stages` as a bar chart, then its numbers as `stage=n` (the browser test reads them). */
export function funnelChart(counts, stages) {
  return [
    barChart(stages.map((s) => ({ label: t(`eval.${s}`), value: counts[s], color: COLORS[s] })), { title: t('eval.funnel') }),
    h('div', { class: 'muted', 'data-test': 'funnel-numbers' }, stages.map((s) => `${s}=${counts[s]}`).join(' ')),
  ];
}

/** Cells of an uplift (`stats::Uplift` from the server, or null when a group is empty). */
export const upliftDiff = (u) => (u ? pct(u.difference) : '–');
export const upliftP = (u) => (u ? u.p_value.toFixed(3) : '–');
/** Significance at the 5 % level of the two-sided z-test. */
export const upliftSignificant = (u) => (u ? (u.p_value < 0.05 ? t('eval.significant') : t('eval.not_significant')) : '–');
