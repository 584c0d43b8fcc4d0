// UI strings in English and Chinese. Chinese is the default when the browser's preferred
// languages put Chinese first; the header's switch stores the choice in localStorage.
const en = {
  'app': 'sluice console', 'login': 'Sign in', 'logout': 'Sign out', 'user': 'User', 'password': 'Password',
  'login.failed': 'Wrong user or password.', 'error': 'Error', 'ok': 'OK', 'cancel': 'Cancel', 'comment': 'Comment',
  'loading': 'Loading…', 'none': 'Nothing here.', 'save': 'Save', 'create': 'Create', 'name': 'Name', 'search': 'Search',
  'nav.home': 'Home', 'nav.approvals': 'Approvals', 'nav.campaigns': 'Campaigns', 'nav.segments': 'Segments',
  'nav.rules': 'Public rules', 'nav.evaluation': 'Evaluation', 'nav.channels': 'Channels', 'nav.lookup': 'Message lookup',
  'home.hello': 'Signed in as', 'home.roles': 'Roles', 'home.org': 'Organisation', 'home.waiting': 'Waiting for your approval',
  'home.tasks': 'Tasks you can see', 'home.running': 'Running now',
  'appr.title': 'Approvals inbox', 'appr.empty': 'Nothing waits for you.', 'appr.approve': 'Approve', 'appr.reject': 'Reject',
  'appr.submitted_by': 'Submitted by', 'appr.round': 'Round', 'appr.step': 'Step', 'appr.trail': 'Trail', 'appr.segment': 'Segment',
  'appr.size': 'Size', 'appr.exclusions': 'Exclusions', 'appr.caps': 'Caps', 'appr.schedule': 'Schedule', 'appr.samples': 'Sample messages',
  'appr.channel': 'Channel', 'appr.at': 'When', 'appr.action': 'Action', 'appr.actor': 'By', 'appr.reason': 'Reason for rejecting', 'appr.done': 'Done.',
  'camp.title': 'Campaigns', 'camp.new': 'New campaign', 'camp.activity': 'New activity', 'camp.task': 'New task', 'camp.tasks': 'Tasks',
  'camp.state': 'State', 'camp.owner': 'Owner', 'camp.org': 'Org', 'camp.contacts': 'Contacts', 'camp.actions': 'Actions',
  'camp.submit': 'Submit', 'camp.edit': 'Edit', 'camp.revise': 'Revise', 'camp.schedule': 'Schedule', 'camp.launch': 'Launch', 'camp.pause': 'Pause', 'camp.resume': 'Resume',
  'camp.stop': 'Stop', 'camp.stop.title': 'Emergency stop', 'camp.stop.text': 'Stop task “{name}”? This cancels {n} messages not yet sent.',
  'camp.bulk': 'Bulk send', 'camp.bulk.new': 'Add bulk send', 'camp.template': 'Message template', 'camp.all': 'all', 'camp.activity_of': 'Activity',
  'camp.no_activity': 'Tasks without an activity', 'camp.prev': 'Previous', 'camp.next': 'Next', 'camp.page': 'Page',
  'seg.title': 'Segments', 'seg.condition': 'Condition', 'seg.add_step': 'Add step', 'seg.count': 'Count', 'seg.save': 'Save segment',
  'seg.steps': 'Steps', 'seg.op': 'Operation', 'seg.union': 'or (union)', 'seg.intersection': 'and (intersection)', 'seg.difference': 'minus (difference)',
  'seg.saved': 'Saved segments', 'seg.preview': 'Preview', 'seg.export': 'Export CSV', 'seg.import': 'Import numbers (file)',
  'seg.setops': 'Combine two segments', 'seg.at_column': 'at column', 'seg.import_subs': 'Import subscribers (CSV, root organisation)',
  'rules.title': 'Public rules', 'rules.check': 'Check a number', 'rules.result': 'Result', 'rules.list': 'List', 'rules.add': 'Add',
  'rules.remove': 'Remove', 'rules.import': 'Import a file', 'rules.numbers': 'Numbers (one a line)', 'rules.allowed': 'allowed',
  'rules.caps': 'Caps', 'rules.quiet': 'Quiet hours', 'rules.channel': 'Channel',
  'eval.title': 'Evaluation', 'eval.task': 'Task', 'eval.funnel': 'Funnel', 'eval.uplift': 'Uplift', 'eval.rollup': 'Roll-up',
  'eval.by': 'By', 'eval.period': 'Period', 'eval.daily': 'Daily report (CSV)', 'eval.group': 'Group',
  'eval.targeted': 'Targeted', 'eval.sent': 'Sent', 'eval.delivered': 'Delivered', 'eval.failed': 'Failed', 'eval.cancelled': 'Cancelled',
  'eval.converted': 'Converted', 'eval.variant': 'Variant', 'eval.control': 'Control', 'eval.difference': 'Difference', 'eval.p': 'p-value',
  'chan.title': 'Channels', 'chan.binds': 'Binds', 'chan.rate': 'Rate / limit', 'chan.window': 'Window', 'chan.backlog': 'Backlog',
  'chan.throttled': 'Throttled', 'chan.latency': 'Receipt latency p50/p99', 'chan.errors': 'Last errors', 'chan.pause': 'Pause',
  'chan.resume': 'Resume', 'chan.unavailable': 'Channel status is not available from this gateway.', 'chan.live': 'Live, every 2 s',
  'look.title': 'Message lookup', 'look.id': 'Message id', 'look.to': 'Number', 'look.find': 'Find', 'look.timeline': 'Timeline',
  'look.unavailable': 'Message lookup is not available from this gateway.',
  'nav.triggers': 'Triggers',
  'trig.title': 'Triggered tasks', 'trig.new': 'New triggered task', 'trig.monitor': 'Live monitor', 'trig.events_s': 'Events / s',
  'trig.events_span': 'Events in the last {s} s', 'trig.matches_s': 'Matches / s', 'trig.sent_s': 'Sent / s', 'trig.pending': 'Events not yet matched',
  'trig.held': 'Held by window', 'trig.held_total': 'ever held', 'trig.suppressed': 'Suppressed by reason', 'trig.outcomes': 'Not sent, by outcome / reason (last hour)', 'trig.campaign': 'Campaign', 'trig.stale': 'Dropped as stale',
  'trig.event_type': 'Event type', 'trig.any': 'any', 'trig.window': 'Window', 'trig.always': 'always', 'trig.cooldown': 'Cooldown', 'trig.cooldown_s': 'Cooldown (s)',
  'trig.budget': 'Daily budget', 'trig.unlimited': 'unlimited', 'trig.control_share': 'Control', 'trig.control_pct': 'Control share (%)',
  'trig.staleness': 'Staleness (s)', 'trig.valid_from': 'Valid from', 'trig.valid_until': 'Valid until', 'trig.priority': 'Priority',
  'trig.score_attr': 'Score attribute', 'trig.lane': 'Lane', 'trig.activate': 'Activate', 'trig.created': 'Triggered task created',
  'trig.need_activity': 'Choose an activity (create one on the Campaigns page).', 'trig.significance': 'Significant (z-test, 5 %)',
  'eval.matched': 'Matched', 'eval.treated_targeted': 'Targeted', 'eval.treated_converted': 'Converted', 'eval.control_targeted': 'Control',
  'eval.control_converted': 'Control converted', 'eval.significant': 'yes', 'eval.not_significant': 'no',
  'state.draft': 'draft', 'state.submitted': 'submitted', 'state.approved': 'approved', 'state.rejected': 'rejected',
  'state.scheduled': 'scheduled', 'state.running': 'running', 'state.paused': 'paused', 'state.completed': 'completed',
  'state.cancelled': 'cancelled', 'state.pending': 'pending',
};
const zh = {
  'app': 'sluice 控制台', 'login': '登录', 'logout': '退出', 'user': '用户名', 'password': '密码',
  'login.failed': '用户名或密码错误。', 'error': '错误', 'ok': '确定', 'cancel': '取消', 'comment': '意见',
  'loading': '加载中…', 'none': '暂无数据。', 'save': '保存', 'create': '新建', 'name': '名称', 'search': '搜索',
  'nav.home': '首页', 'nav.approvals': '审批', 'nav.campaigns': '活动', 'nav.segments': '客群',
  'nav.rules': '公共规则', 'nav.evaluation': '效果评估', 'nav.channels': '通道', 'nav.lookup': '消息查询',
  'home.hello': '当前用户', 'home.roles': '角色', 'home.org': '组织', 'home.waiting': '待我审批',
  'home.tasks': '可见任务', 'home.running': '执行中',
  'appr.title': '审批待办', 'appr.empty': '没有待您审批的事项。', 'appr.approve': '同意', 'appr.reject': '驳回',
  'appr.submitted_by': '提交人', 'appr.round': '轮次', 'appr.step': '环节', 'appr.trail': '审批记录', 'appr.segment': '客群',
  'appr.size': '人数', 'appr.exclusions': '剔除名单', 'appr.caps': '频次控制', 'appr.schedule': '发送计划', 'appr.samples': '样例短信',
  'appr.channel': '渠道', 'appr.at': '时间', 'appr.action': '操作', 'appr.actor': '操作人', 'appr.reason': '驳回理由', 'appr.done': '已完成。',
  'camp.title': '营销活动', 'camp.new': '新建活动', 'camp.activity': '新建子活动', 'camp.task': '新建任务', 'camp.tasks': '任务',
  'camp.state': '状态', 'camp.owner': '负责人', 'camp.org': '组织', 'camp.contacts': '接触数', 'camp.actions': '操作',
  'camp.submit': '报批', 'camp.edit': '编辑', 'camp.revise': '修改重报', 'camp.schedule': '排期', 'camp.launch': '启动', 'camp.pause': '暂停', 'camp.resume': '恢复',
  'camp.stop': '紧急停止', 'camp.stop.title': '紧急停止', 'camp.stop.text': '停止任务“{name}”？将取消 {n} 条尚未发出的消息。',
  'camp.bulk': '批量发送', 'camp.bulk.new': '添加批量发送', 'camp.template': '短信模板', 'camp.all': '全部', 'camp.activity_of': '子活动',
  'camp.no_activity': '未归属子活动的任务', 'camp.prev': '上一页', 'camp.next': '下一页', 'camp.page': '页',
  'seg.title': '客群', 'seg.condition': '条件', 'seg.add_step': '添加条件', 'seg.count': '计数', 'seg.save': '保存客群',
  'seg.steps': '步骤', 'seg.op': '运算', 'seg.union': '或（并集）', 'seg.intersection': '且（交集）', 'seg.difference': '减（差集）',
  'seg.saved': '已保存客群', 'seg.preview': '预览', 'seg.export': '导出 CSV', 'seg.import': '导入号码（文件）',
  'seg.setops': '两个客群运算', 'seg.at_column': '位于第几列', 'seg.import_subs': '导入用户数据（CSV，仅省公司）',
  'rules.title': '公共规则', 'rules.check': '号码查询', 'rules.result': '结果', 'rules.list': '名单', 'rules.add': '添加',
  'rules.remove': '移除', 'rules.import': '导入文件', 'rules.numbers': '号码（每行一个）', 'rules.allowed': '允许',
  'rules.caps': '频次上限', 'rules.quiet': '静默时段', 'rules.channel': '渠道',
  'eval.title': '效果评估', 'eval.task': '任务', 'eval.funnel': '漏斗', 'eval.uplift': '提升', 'eval.rollup': '汇总',
  'eval.by': '维度', 'eval.period': '周期', 'eval.daily': '日报（CSV）', 'eval.group': '组',
  'eval.targeted': '目标', 'eval.sent': '已发送', 'eval.delivered': '成功', 'eval.failed': '失败', 'eval.cancelled': '已取消',
  'eval.converted': '转化', 'eval.variant': '实验组', 'eval.control': '对照组', 'eval.difference': '差值', 'eval.p': 'p 值',
  'chan.title': '通道监控', 'chan.binds': '连接', 'chan.rate': '速率 / 上限', 'chan.window': '窗口', 'chan.backlog': '积压',
  'chan.throttled': '流控次数', 'chan.latency': '回执时延 p50/p99', 'chan.errors': '最近错误', 'chan.pause': '暂停',
  'chan.resume': '恢复', 'chan.unavailable': '此网关未提供通道状态。', 'chan.live': '实时，每 2 秒',
  'look.title': '消息查询', 'look.id': '消息 ID', 'look.to': '号码', 'look.find': '查询', 'look.timeline': '时间线',
  'look.unavailable': '此网关未提供消息查询。',
  'nav.triggers': '事件营销',
  'trig.title': '事件触发任务', 'trig.new': '新建触发任务', 'trig.monitor': '实时监控', 'trig.events_s': '事件 / 秒',
  'trig.events_span': '最近 {s} 秒事件数', 'trig.matches_s': '匹配 / 秒', 'trig.sent_s': '发送 / 秒', 'trig.pending': '待匹配事件',
  'trig.held': '等待发送窗口', 'trig.held_total': '累计等待', 'trig.suppressed': '按原因抑制', 'trig.outcomes': '未发送（按结果 / 原因，最近一小时）', 'trig.campaign': '活动', 'trig.stale': '过期丢弃',
  'trig.event_type': '事件类型', 'trig.any': '任意', 'trig.window': '发送窗口', 'trig.always': '全天', 'trig.cooldown': '冷却期', 'trig.cooldown_s': '冷却期（秒）',
  'trig.budget': '每日上限', 'trig.unlimited': '不限', 'trig.control_share': '对照组', 'trig.control_pct': '对照组比例（%）',
  'trig.staleness': '时效（秒）', 'trig.valid_from': '生效时间', 'trig.valid_until': '失效时间', 'trig.priority': '优先级',
  'trig.score_attr': '评分字段', 'trig.lane': '通道优先级', 'trig.activate': '激活', 'trig.created': '触发任务已创建',
  'trig.need_activity': '请选择子活动（可在“活动”页面新建）。', 'trig.significance': '显著性（z 检验，5%）',
  'eval.matched': '匹配', 'eval.treated_targeted': '目标', 'eval.treated_converted': '转化', 'eval.control_targeted': '对照组',
  'eval.control_converted': '对照组转化', 'eval.significant': '显著', 'eval.not_significant': '不显著',
  'state.draft': '草稿', 'state.submitted': '审批中', 'state.approved': '已审批', 'state.rejected': '已驳回',
  'state.scheduled': '已排期', 'state.running': '执行中', 'state.paused': '已暂停', 'state.completed': '已完成',
  'state.cancelled': '已取消', 'state.pending': '待审批',
};
const tables = { en, zh };

function initial() {
  const saved = localStorage.getItem('sluice.lang');
  if (saved && tables[saved]) return saved;
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  return String(langs[0]).toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

let lang = initial();
document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';

export const currentLang = () => lang;
export function setLang(l) {
  lang = tables[l] ? l : 'en';
  localStorage.setItem('sluice.lang', lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

/** The string for `key` in the current language, `{name}` placeholders filled from `vars`. */
export function t(key, fallbackOrVars, vars) {
  const v = typeof fallbackOrVars === 'object' ? fallbackOrVars : vars;
  const fb = typeof fallbackOrVars === 'string' ? fallbackOrVars : key;
  const s = tables[lang][key] ?? en[key] ?? fb;
  return v ? s.replace(/\{(\w+)\}/g, (_, k) => String(v[k] ?? '')) : s;
}
