// Admin withdrawals: pending first; approve (optional note) or reject (reason required); the
// batch of approved payouts as CSV to pay outside, then mark them paid (with the payment's
// reference).

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { count, dateTime, money } from '../format.js';
import { busy, button, card, dataTable, emptyState, field, formDialog, loader, pageHeader, segmented, timeEl, toast } from '../ui.js';
import { statusBadge } from './common.js';

export function sortWithdrawals(rows) {
  return [...rows].sort((a, b) => Number(b.status === 'pending') - Number(a.status === 'pending') || String(b.requested_at).localeCompare(String(a.requested_at)) || b.id - a.id);
}

export function withdrawalsTable(rows, { currency, admin = false, onApprove, onReject, onMarkPaid, testid = 'withdrawals-table', rowPrefix = 'withdrawal-row', empty }) {
  return dataTable({
    testid,
    caption: 'Withdrawals',
    rows: sortWithdrawals(rows),
    rowAttrs: (w) => ({ testid: `${rowPrefix}-${w.id}`, class: w.status === 'pending' && 'row-pending' }),
    empty,
    columns: [
      { label: '#', num: true, cell: (w) => h('span', { class: 'mono muted' }, String(w.id)) },
      admin ? { label: 'User', cell: (w) => h('span', { class: 'strong' }, w.user) } : null,
      { label: 'Amount', num: true, cell: (w) => h('span', { class: 'strong' }, money(w.amount_micros, currency)) },
      { label: 'Destination', cell: (w) => (w.destination ? h('span', { class: 'dest' }, w.destination) : h('span', { class: 'muted' }, 'not given')) },
      { label: 'Requested', cell: (w) => timeEl(w.requested_at, dateTime(w.requested_at)) },
      { label: 'Status', cell: (w) => h('span', null, statusBadge(w.status), w.paid_at ? [' ', h('span', { class: 'badge badge-ok', testid: `withdrawal-paid-${w.id}` }, 'paid')] : null, w.auto ? h('span', { class: 'sub' }, 'requested automatically') : null, w.paid_reference ? h('span', { class: 'sub' }, `ref ${w.paid_reference}`) : null, w.reason ? h('span', { class: 'sub' }, w.reason) : null) },
      { label: 'Decided', cell: (w) => (w.decided_at ? h('span', null, timeEl(w.decided_at, dateTime(w.decided_at)), w.decided_by ? h('span', { class: 'sub' }, `by ${w.decided_by}`) : null) : null) },
      admin ? {
        label: 'Actions',
        hideLabel: true,
        class: 'actions',
        cell: (w) => (w.status === 'pending'
          ? h('div', { class: 'row-actions' },
            button('Approve', { kind: 'primary', small: true, testid: `withdrawal-approve-${w.id}`, onClick: () => onApprove(w) }),
            button('Reject', { kind: 'danger-ghost', small: true, testid: `withdrawal-reject-${w.id}`, onClick: () => onReject(w) }))
          : w.status === 'approved' && !w.paid_at && onMarkPaid
            ? button('Mark paid', { kind: 'secondary', small: true, testid: `withdrawal-mark-paid-${w.id}`, onClick: () => onMarkPaid([w]) })
            : null),
      } : null,
    ].filter(Boolean),
  });
}

export default function withdrawalsPage(main, ctx) {
  let status = ctx.params.get('status') || '';
  main.append(pageHeader('Withdrawals', { subtitle: 'Node owners ask to be paid out. Approving records the payout: you send the money outside Traffix. Rejecting returns it to their balance.' }));
  const pendingNote = h('p', { class: 'muted small', testid: 'withdrawals-summary', 'aria-live': 'polite' });
  const filters = segmented({
    label: 'Show',
    value: status,
    testid: 'withdrawals-filter',
    options: [['', 'All', 'withdrawals-filter-all'], ['pending', 'Pending', 'withdrawals-filter-pending'], ['approved', 'Approved', 'withdrawals-filter-approved'], ['rejected', 'Rejected', 'withdrawals-filter-rejected']],
    onChange: (v) => { status = v; reload(); },
  });
  const body = h('div', { testid: 'withdrawals-table-wrap' });
  const exportCsv = button('Export approved (CSV)', { kind: 'secondary', small: true, iconName: 'download', testid: 'payouts-csv' });
  exportCsv.addEventListener('click', () => busy(exportCsv, async () => {
    try {
      await api.download('/admin/payouts.csv', `traffix-payouts-${new Date().toISOString().slice(0, 10)}.csv`);
    } catch (e) {
      toast(`Could not export the payouts: ${e.reason || e.message}`, { type: 'error' });
    }
  }));
  const markAll = button('Mark approved as paid…', { kind: 'secondary', small: true, testid: 'payouts-mark-paid', onClick: () => markPaid(lastRows.filter((w) => w.status === 'approved' && !w.paid_at)) });
  main.append(card(null, { testid: 'withdrawals-card' }, h('div', { class: 'toolbar' }, filters, exportCsv, markAll), pendingNote, body));
  let lastRows = [];
  const currency = () => ctx.me?.currency || 'USD';

  function render(rows) {
    lastRows = rows;
    markAll.hidden = !rows.some((w) => w.status === 'approved' && !w.paid_at);
    const pending = rows.filter((w) => w.status === 'pending');
    let sum = 0n;
    for (const w of pending) sum += BigInt(w.amount_micros || 0);
    pendingNote.textContent = pending.length ? `${count(pending.length)} pending, ${money(sum, currency())} in total.` : (status === '' || status === 'pending') && rows.length ? 'Nothing pending.' : '';
    replace(body, withdrawalsTable(rows, {
      currency: currency(),
      admin: true,
      onApprove: approve,
      onReject: reject,
      onMarkPaid: markPaid,
      empty: emptyState({
        title: status ? `No ${status} withdrawals` : 'No withdrawals yet',
        text: 'Node owners request withdrawals from their portal.',
        testid: 'withdrawals-empty',
        iconName: 'withdrawals',
      }),
    }));
  }
  const reload = loader(body, () => api.get(`/admin/withdrawals${api.qs({ status })}`), render, { testid: 'withdrawals-error' });

  function summary(w) {
    return h('p', null, h('strong', null, money(w.amount_micros, currency())), ` to ${w.user}`, w.destination ? [' — ', h('span', { class: 'dest' }, w.destination)] : null);
  }

  async function approve(w) {
    const note = field({ label: 'Note', testid: 'approve-reason', placeholder: 'e.g. paid 2026-11-26, bank ref 5678', maxlength: '500', hint: 'Kept with the withdrawal and in the audit log.' });
    const ok = await formDialog({
      title: `Approve withdrawal #${w.id}`,
      testid: 'approve-dialog',
      description: h('div', null, summary(w), h('p', { class: 'muted' }, 'Approve once you have sent (or will send) the money. This cannot be undone.')),
      fields: [note],
      submitLabel: 'Approve',
      onSubmit: () => {
        const r = note.input.value.trim();
        return api.post(`/admin/withdrawals/${w.id}/approve`, r ? { reason: r } : {});
      },
    });
    if (ok) { toast(`Withdrawal #${w.id} approved`, { type: 'success' }); reload(); }
  }

  async function markPaid(list) {
    if (!list.length) return;
    let sum = 0n;
    for (const w of list) sum += BigInt(w.amount_micros || 0);
    const reference = field({ label: 'Payment reference', testid: 'mark-paid-reference', required: true, maxlength: '200', placeholder: 'e.g. bank batch 2026-12-01', hint: 'Kept with each withdrawal and in the audit log.' });
    const ok = await formDialog({
      title: list.length === 1 ? `Mark withdrawal #${list[0].id} paid` : `Mark ${list.length} withdrawals paid`,
      testid: 'mark-paid-dialog',
      description: h('div', null, h('p', null, h('strong', null, money(sum, currency())), ` to ${[...new Set(list.map((w) => w.user))].join(', ')}.`), h('p', { class: 'muted' }, 'Mark them once you have sent the money outside Traffix (e.g. after paying the exported batch).')),
      fields: [reference],
      submitLabel: 'Mark paid',
      onSubmit: ({ fail }) => {
        const r = reference.input.value.trim();
        if (!r) return fail('Give the payment reference.', reference.input);
        return api.post('/admin/payouts/mark-paid', { ids: list.map((w) => w.id), reference: r });
      },
    });
    if (ok) { toast(`${list.length} withdrawal${list.length === 1 ? '' : 's'} marked paid`, { type: 'success' }); reload(); }
  }

  async function reject(w) {
    const reason = field({ label: 'Reason', testid: 'reject-reason', required: true, placeholder: 'e.g. destination account name does not match', maxlength: '500', hint: `${w.user} sees this reason.` });
    const ok = await formDialog({
      title: `Reject withdrawal #${w.id}`,
      testid: 'reject-dialog',
      description: h('div', null, summary(w), h('p', { class: 'muted' }, 'The amount goes back to their balance.')),
      fields: [reason],
      submitLabel: 'Reject',
      danger: true,
      onSubmit: ({ fail }) => {
        const r = reason.input.value.trim();
        if (!r) return fail('A rejection needs a reason.', reason.input);
        return api.post(`/admin/withdrawals/${w.id}/reject`, { reason: r });
      },
    });
    if (ok) { toast(`Withdrawal #${w.id} rejected`, { type: 'success' }); reload(); }
  }
}
