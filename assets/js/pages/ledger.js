// Admin ledger: the transfer log (double entry), by user and date range, page by page, as CSV.

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { count, dateTime, money, titleCase } from '../format.js';
import { card, dataTable, emptyState, loader, pageHeader, searchBox, select, timeEl, button } from '../ui.js';
import { account, csvButton, dateRange, pager, pageSize, perPage, rowsOrUnknownUser } from './common.js';

const KIND_WORDS = {
  deposit: 'Deposit',
  usage: 'Usage',
  usage_fee: 'Usage (fee)',
  payout_request: 'Withdrawal requested',
  payout: 'Withdrawal paid',
  payout_reversal: 'Withdrawal rejected',
};

export function kindLabel(kind) {
  return KIND_WORDS[kind] || titleCase(kind || '');
}

/**
 * Transfers as a table. With `me` (a user name) amounts are signed from that user's side:
 * money in is positive, money out negative.
 */
export function ledgerTable(rows, { currency, me, testid = 'ledger-table', rowPrefix = 'ledger-row', empty }) {
  return dataTable({
    testid,
    caption: 'Ledger transfers',
    rows,
    rowAttrs: (t) => ({ testid: `${rowPrefix}-${t.seq}` }),
    empty,
    columns: [
      { label: '#', num: true, cell: (t) => h('span', { class: 'mono muted' }, String(t.seq)) },
      { label: 'Time', cell: (t) => timeEl(t.time, dateTime(t.time)) },
      { label: 'Kind', cell: (t) => kindLabel(t.kind) },
      me
        ? { label: 'Counterpart', cell: (t) => account(t.debit === `user:${me}` ? t.credit : t.debit) }
        : { label: 'From → to', cell: (t) => h('span', { class: 'flow' }, account(t.debit), h('span', { class: 'arrow', 'aria-label': 'to' }, ' → '), account(t.credit)) },
      {
        label: 'Amount',
        num: true,
        cell: (t) => {
          if (!me) return h('span', { class: 'strong' }, money(t.amount_micros, currency));
          const out = t.debit === `user:${me}`;
          return h('span', { class: out ? 'neg' : 'pos' }, (out ? '−' : '+') + money(t.amount_micros, currency));
        },
      },
      { label: 'Reference', cell: (t) => (t.reference ? h('span', { class: 'ref' }, t.reference) : null) },
      { label: 'Transfer id', cell: (t) => h('span', { class: 'mono small muted', title: t.id }, t.id) },
    ],
  });
}

export default function ledgerPage(main, ctx) {
  let user = ctx.params.get('user') || '';
  let limit = pageSize(ctx.params.get('limit'), 200);
  const refresh = button('Refresh', { kind: 'secondary', iconName: 'refresh', testid: 'ledger-refresh', onClick: () => reload() });
  main.append(pageHeader('Ledger', { subtitle: 'Every movement of money, newest first. Each transfer debits one account and credits another; balances always sum to zero.', actions: [refresh] }));
  const changed = () => { pages.reset(); reload(); };
  const search = searchBox({ label: 'User name', testid: 'ledger-user', placeholder: 'Filter by user name…', value: user, onInput: (v) => { user = v; changed(); } });
  const range = dateRange({ testid: 'ledger-range', from: ctx.params.get('from') || '', to: ctx.params.get('to') || '', onChange: changed });
  const lim = select({ label: 'Per page', testid: 'ledger-limit', value: limit, options: perPage([[50, '50'], [200, '200'], [1000, '1000']], limit) });
  lim.input.addEventListener('change', () => { limit = Number(lim.input.value); changed(); });
  const pages = pager({ testid: 'ledger-pager', onChange: () => reload() });
  const csv = csvButton({ testid: 'ledger-export', path: '/admin/ledger.csv', name: 'traffix-ledger', query: () => ({ user, ...range.query(), fromDay: range.from(), toDay: range.to() }) });
  const summary = h('p', { class: 'muted small', testid: 'ledger-summary', 'aria-live': 'polite' });
  const body = h('div', { testid: 'ledger-table-wrap' });
  main.append(card(null, { testid: 'ledger-card' },
    h('div', { class: 'toolbar' }, search, range.el, lim, csv),
    summary, body, h('div', { class: 'toolbar toolbar-end' }, pages.el)));
  const currency = () => ctx.me?.currency || 'USD';
  const fetchRows = () => rowsOrUnknownUser(user, () => api.get(`/admin/ledger${api.qs({ user, limit, before: pages.before(), ...range.query() })}`));
  const reload = loader(body, fetchRows, (got) => {
    const unknown = Array.isArray(got) ? '' : got.unknownUser;
    const rows = unknown ? [] : got;
    pages.update(rows, limit, (t) => t.seq);
    const what = [user && `of ${user}`, range.describe()].filter(Boolean).join(' ');
    summary.textContent = rows.length
      ? `${count(rows.length)} transfers${what ? ` ${what}` : ''}, newest first. The CSV holds every transfer of this filter (at most 100,000), not only this page.`
      : '';
    const filtered = user || range.describe();
    replace(body, ledgerTable(rows, {
      currency: currency(),
      empty: emptyState({
        title: unknown ? `No user “${unknown}”` : pages.before() ? 'No older transfers' : filtered ? 'No transfers match' : 'The ledger is empty',
        text: unknown ? 'User names must match exactly.' : filtered ? `Nothing ${what}. Check the user name (it must match exactly) and the dates.` : 'Credits, usage and withdrawals will appear here.',
        testid: 'ledger-empty',
        iconName: 'ledger',
      }),
    }));
  }, { testid: 'ledger-error' });
}
