// Admin ledger: the transfer log (double entry), by user and date range, page by page, as CSV.

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { count, dateTime, money } from '../format.js';
import { card, confirmDialog, dataTable, defList, emptyState, field, formDialog, loader, pageHeader, searchBox, select, timeEl, button, toast } from '../ui.js';
import { account, csvButton, dateRange, kindLabel, pager, pageSize, perPage, reversible, rowsOrUnknownUser } from './common.js';

export { kindLabel };

/**
 * Transfers as a table. With `me` (a user name) amounts are signed from that user's side:
 * money in is positive, money out negative. With `onReverse(t)` (admins), deposits and
 * adjustments get a Reverse button (`reverse-<seq>`).
 */
export function ledgerTable(rows, { currency, me, testid = 'ledger-table', rowPrefix = 'ledger-row', empty, onReverse }) {
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
      onReverse ? {
        label: 'Actions',
        hideLabel: true,
        class: 'actions',
        cell: (t) => (reversible(t) ? button('Reverse', { kind: 'danger-ghost', small: true, testid: `reverse-${t.seq}`, onClick: () => onReverse(t) }) : h('span')),
      } : null,
    ].filter(Boolean),
  });
}

/** The user account of a transfer ("erin" for user:erin), or ''. */
function userOf(t) {
  for (const k of [t.debit, t.credit]) if (String(k).startsWith('user:')) return String(k).slice(5);
  return '';
}

/**
 * Reverses a deposit or an adjustment: asks for a reason, then confirms the exact amount and
 * which way it moves; the API's error (e.g. already reversed) shows in the dialog. Resolves
 * with the API's answer, or null when cancelled.
 */
export async function reverseTransfer(t, { currency }) {
  const user = userOf(t);
  const reason = field({ label: 'Reason', testid: 'reverse-reason', required: true, placeholder: 'e.g. credited the wrong user', maxlength: '500' });
  const result = await formDialog({
    title: `Reverse transfer #${t.seq}?`,
    testid: 'reverse-dialog',
    description: h('div', null,
      defList([
        ['Kind', kindLabel(t.kind)],
        ['From → to', h('span', { class: 'flow' }, account(t.debit), ' → ', account(t.credit))],
        ['Amount', h('strong', null, money(t.amount_micros, currency))],
        ['Time', timeEl(t.time, dateTime(t.time))],
        t.reference ? ['Reference', t.reference] : null,
      ]),
      h('p', { class: 'muted small' }, 'A reversal posts the exact opposite transfer. It can be made once, and only for deposits and adjustments.')),
    fields: [reason],
    submitLabel: 'Reverse…',
    danger: true,
    onSubmit: async ({ fail }) => {
      const r = reason.input.value.trim();
      if (!r) return fail('Give a reason: it goes in the ledger and the audit log.', reason.input);
      const ok = await confirmDialog({
        title: `Reverse ${money(t.amount_micros, currency)}?`,
        testid: 'reverse-confirm-dialog',
        confirmLabel: `Reverse ${money(t.amount_micros, currency)}`,
        danger: true,
        message: h('div', null,
          defList([
            ['Amount', h('strong', { testid: 'reverse-confirm-amount' }, money(t.amount_micros, currency))],
            ['Moves', h('span', { class: 'flow', testid: 'reverse-confirm-flow' }, account(t.credit), ' → ', account(t.debit))],
            user ? ['User', user] : null,
            ['Reason', r],
          ]),
          h('p', { class: 'muted small' }, 'The reversal stays in the ledger; it cannot be undone.')),
      });
      if (!ok) return false;
      return api.post(`/admin/ledger/${encodeURIComponent(t.seq)}/reverse`, { reason: r });
    },
  });
  if (result) {
    const who = result.user || user;
    const bal = result.balance_micros != null && who ? ` ${who}'s balance is now ${money(result.balance_micros, currency)}.` : '';
    toast(`Reversed transfer #${t.seq}.${bal}`, { type: 'success' });
  }
  return result;
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
      onReverse: async (t) => { if (await reverseTransfer(t, { currency: currency() })) reload(); },
      empty: emptyState({
        title: unknown ? `No user “${unknown}”` : pages.before() ? 'No older transfers' : filtered ? 'No transfers match' : 'The ledger is empty',
        text: unknown ? 'User names must match exactly.' : filtered ? `Nothing ${what}. Check the user name (it must match exactly) and the dates.` : 'Credits, usage and withdrawals will appear here.',
        testid: 'ledger-empty',
        iconName: 'ledger',
      }),
    }));
  }, { testid: 'ledger-error' });
}
