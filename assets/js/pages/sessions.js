// Admin sessions: one row per stream, live ones first; by client, node IP (abuse reports) and
// date range, page by page, as CSV; auto-refresh.

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { between, bytes, count, dateTime, duration, money } from '../format.js';
import { button, card, checkbox, dataTable, emptyState, loader, pageHeader, searchBox, select, timeEl } from '../ui.js';
import { csvButton, dateRange, endReason, pager, pageSize, perPage, rowsOrUnknownUser } from './common.js';

/** The session table, shared with the portal (`mine` hides the client column). */
export function sessionsTable(rows, { currency, mine = false, testid = 'sessions-table', rowPrefix = 'session-row', empty }) {
  const sorted = [...rows].sort((a, b) => Number(b.live) - Number(a.live) || String(b.start).localeCompare(String(a.start)));
  return dataTable({
    testid,
    caption: 'Sessions',
    rows: sorted,
    rowAttrs: (s) => ({ testid: `${rowPrefix}-${s.id}`, class: s.live && 'row-live' }),
    empty,
    columns: [
      mine ? null : { label: 'Client', cell: (s) => h('span', null, h('span', { class: 'strong' }, s.client), s.sub ? h('span', { class: 'sub' }, `sub-user ${s.sub}`) : null) },
      { label: 'Node', cell: (s) => h('span', null, h('span', { class: 'mono' }, s.vip || '—'), mine ? null : h('span', { class: 'sub' }, `${s.owner || ''}${s.node_ip ? ` · ${s.node_ip}` : ''}`)) },
      { label: 'Target', cell: (s) => h('span', { class: 'mono target', title: s.target }, s.target) },
      { label: 'Started', cell: (s) => timeEl(s.start, dateTime(s.start)) },
      { label: 'Duration', num: true, cell: (s) => duration(between(s.start, s.end)) },
      { label: 'Bytes ↑ / ↓', num: true, cell: (s) => h('span', null, bytes(s.bytes_up || 0), h('span', { class: 'muted' }, ' / '), bytes(s.bytes_down || 0)) },
      { label: 'Charge', num: true, cell: (s) => h('span', null, money(s.charge_micros || 0, currency), s.self_use ? h('span', { class: 'sub' }, 'own node: fee only') : null) },
      mine ? null : { label: 'Node credit', num: true, cell: (s) => money(s.node_credit_micros || 0, currency) },
      { label: 'End', cell: (s) => endReason(s) },
    ].filter(Boolean),
  });
}

export default function sessionsPage(main, ctx) {
  let user = ctx.params.get('user') || '';
  let nodeIp = ctx.params.get('node_ip') || '';
  let limit = pageSize(ctx.params.get('limit'), 100);
  let auto = true;
  const refresh = button('Refresh', { kind: 'secondary', iconName: 'refresh', testid: 'sessions-refresh', onClick: () => reload() });
  main.append(pageHeader('Sessions', { subtitle: 'Every client connection carried by a node, newest first (live ones first on each page).', actions: [refresh] }));
  const changed = () => { pages.reset(); reload(); };
  const search = searchBox({ label: 'Client user name', testid: 'sessions-user', placeholder: 'Filter by client user name…', value: user, onInput: (v) => { user = v; changed(); } });
  const ipBox = searchBox({ label: 'Node public IP', testid: 'sessions-node-ip', placeholder: 'Node IP, e.g. from an abuse report…', value: nodeIp, onInput: (v) => { nodeIp = v; changed(); } });
  const range = dateRange({ testid: 'sessions-range', from: ctx.params.get('from') || '', to: ctx.params.get('to') || '', onChange: changed });
  const lim = select({ label: 'Per page', testid: 'sessions-limit', value: limit, options: perPage([[50, '50'], [100, '100'], [500, '500'], [1000, '1000']], limit) });
  lim.input.addEventListener('change', () => { limit = Number(lim.input.value); changed(); });
  const autoBox = checkbox({ label: 'Refresh every 5 s', testid: 'sessions-auto', checked: auto });
  autoBox.input.addEventListener('change', () => { auto = autoBox.input.checked; });
  const pages = pager({ testid: 'sessions-pager', onChange: () => reload() });
  const csv = csvButton({ testid: 'sessions-export', path: '/admin/sessions.csv', name: 'traffix-sessions', query: () => ({ user, nodeIp, ...range.query(), fromDay: range.from(), toDay: range.to() }) });
  const summary = h('p', { class: 'muted small', testid: 'sessions-summary', 'aria-live': 'polite' });
  const body = h('div', { testid: 'sessions-table-wrap' });
  main.append(card(null, { testid: 'sessions-card' },
    h('div', { class: 'toolbar' }, search, ipBox, range.el, lim, autoBox, csv),
    summary, body, h('div', { class: 'toolbar toolbar-end' }, pages.el)));

  const currency = () => ctx.me?.currency || 'USD';
  function render(got) {
    const unknown = Array.isArray(got) ? '' : got.unknownUser;
    const badIp = Array.isArray(got) ? '' : got.badIp;
    const rows = Array.isArray(got) ? got : [];
    pages.update(rows, limit, (s) => s.id);
    const liveN = rows.filter((s) => s.live).length;
    // A date range selects the sessions open at some moment of it (started by its end, and
    // ended at its start or later, or still live): the API's since/until.
    const what = [user && `of ${user}`, nodeIp && `on node ${nodeIp}`, range.describe() && `open ${range.describe()}`].filter(Boolean).join(' ');
    summary.textContent = rows.length ? `${count(rows.length)} sessions${liveN ? `, ${count(liveN)} live` : ''}${what ? ` ${what}` : ''}.` : '';
    const filtered = user || nodeIp || range.describe();
    replace(body, sessionsTable(rows, {
      currency: currency(),
      empty: emptyState({
        title: unknown ? `No user “${unknown}”` : badIp ? `“${badIp}” is not an IP address` : pages.before() ? 'No older sessions' : filtered ? 'No sessions match' : 'No sessions yet',
        text: unknown ? 'User names must match exactly.' : badIp ? 'Enter a node\'s public IP address, like 203.0.113.7 or 2001:db8::1.' : filtered ? `Nothing ${what}. Check the user name and the node IP (they must match exactly) and the dates.` : 'Sessions appear when clients connect through the SOCKS5 or HTTP proxy.',
        testid: 'sessions-empty',
        iconName: 'sessions',
      }),
    }));
  }
  const fetchRows = async () => {
    try {
      return await rowsOrUnknownUser(user, () => api.get(`/admin/sessions${api.qs({ user, node_ip: nodeIp, limit, before: pages.before(), ...range.query() })}`));
    } catch (e) {
      // An address still being typed is not an error panel.
      if (nodeIp && e && e.status === 400 && e.code === 'invalid' && /not an IP address/.test(e.reason)) return { badIp: nodeIp };
      throw e;
    }
  };
  const reload = loader(body, fetchRows, render, { testid: 'sessions-error', quiet: true });
  const timer = setInterval(() => { if (auto && document.visibilityState === 'visible') reload(); }, 5000);
  return () => clearInterval(timer);
}
