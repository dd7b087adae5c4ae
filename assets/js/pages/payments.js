// The portal's money-in and payout parts (#/me): Top up (only the providers the operator has
// enabled: a Crypto Pay invoice from here, the operator's shop, Telegram Stars in the bot), the
// user's payments (receipts, with CSV) and payout details (with the automatic withdrawal
// threshold). Imported by portal.js.

import * as api from '../api.js';
import { h, icon, replace } from '../dom.js';
import { dateTime, money, parseAmount, toMicros } from '../format.js';
import { badge, busy, button, card, dataTable, emptyState, field, loader, timeEl, toast } from '../ui.js';

const PROVIDER_NAMES = { admin: 'Operator', generic: 'Shop', cryptopay: 'Crypto Pay', stars: 'Telegram Stars' };
export const providerName = (p) => PROVIDER_NAMES[p] || p;

const STATUS_KINDS = {
  credited: 'ok', active: 'warn', expired: 'muted', disputed: 'bad',
  partially_refunded: 'warn', refunded: 'muted', charged_back: 'bad', reversed: 'muted',
};
export const paymentStatus = (s, testid) => badge(s.replace(/_/g, ' '), STATUS_KINDS[s] || 'muted', testid);

/**
 * The Top up card. `onCredited()` runs when one of the user's invoices has been credited (the
 * balance grows). Shows only the enabled providers; with none, says top-ups are made by the
 * operator.
 */
export function topupCard({ cur, onCredited }) {
  const body = h('div', { class: 'topup-body', testid: 'topup-body' });
  const c = card('Top up', { testid: 'topup-card' }, body);
  let opts = null;
  let watching = null;
  const known = new Map(); // invoice id → status last seen

  function invoiceRow(inv) {
    return h('li', { class: 'invoice', testid: `topup-invoice-${inv.invoice_id}` },
      h('span', { class: 'strong' }, money(inv.amount_micros, inv.currency)), ' ',
      paymentStatus(inv.status, `topup-invoice-status-${inv.invoice_id}`), ' ',
      inv.status === 'active'
        ? h('a', { href: inv.pay_url, target: '_blank', rel: 'noopener noreferrer', class: 'btn btn-primary btn-sm', testid: `topup-pay-link-${inv.invoice_id}` }, 'Pay in Crypto Bot')
        : null,
      h('span', { class: 'sub' }, `Invoice ${inv.invoice_id} · `, timeEl(inv.created_at, dateTime(inv.created_at))));
  }

  function render(o) {
    opts = o;
    const parts = [];
    if (!o.providers.length) {
      parts.push(h('div', { class: 'topup-note', testid: 'topup-note' }, icon('wallet'),
        h('p', null, 'Top-ups are made by the operator of this server: contact them to add money to your balance. It shows here as soon as they have credited it.')));
    }
    if (o.providers.includes('cryptopay')) {
      const amount = field({ label: `Amount (${o.currency})`, testid: 'topup-amount', required: true, inputmode: 'decimal', autocomplete: 'off', placeholder: '12.50', hint: `From ${money(o.min_topup_micros, o.currency)} to ${money(o.max_topup_micros, o.currency)}. You pay in crypto at the rate of the moment.` });
      const err = h('p', { class: 'form-error', role: 'alert', testid: 'topup-error', hidden: true });
      const submit = button('Pay with Crypto Pay', { kind: 'primary', type: 'submit', testid: 'topup-cryptopay-submit' });
      const form = h('form', { class: 'topup-form', testid: 'topup-cryptopay-form', novalidate: true }, amount, err, submit);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        err.hidden = true;
        const fail = (m) => { err.textContent = m; err.hidden = false; amount.input.focus(); };
        const a = parseAmount(amount.input.value);
        if (!a.ok) return fail(a.message);
        if (a.micros < toMicros(o.min_topup_micros)) return fail(`The smallest top-up is ${money(o.min_topup_micros, o.currency)}.`);
        if (a.micros > toMicros(o.max_topup_micros)) return fail(`The largest top-up is ${money(o.max_topup_micros, o.currency)}.`);
        try {
          const inv = await busy(submit, () => api.post('/me/topup/cryptopay', { amount: a.text }));
          amount.input.value = '';
          toast('Invoice created: pay it in Crypto Bot. Your balance grows once it is paid.', { type: 'success' });
          known.set(inv.invoice_id, inv.status);
          await reload();
        } catch (ex) {
          fail(ex.reason || ex.message);
        }
      });
      parts.push(h('section', { class: 'topup-provider', testid: 'topup-cryptopay' },
        h('h3', null, 'Crypto Pay'),
        h('p', { class: 'muted small' }, 'Pay an invoice in your own currency with crypto from the Telegram wallet @CryptoBot.'),
        form));
    }
    if (o.providers.includes('generic')) {
      parts.push(h('section', { class: 'topup-provider', testid: 'topup-generic' },
        h('h3', null, 'Shop'),
        h('p', { class: 'muted small' }, 'Pay in the operator’s shop with your user name; the payment is credited here as soon as the shop reports it.')));
    }
    if (o.providers.includes('stars')) {
      parts.push(h('section', { class: 'topup-provider', testid: 'topup-stars' },
        h('h3', null, 'Telegram Stars'),
        h('p', { class: 'muted small' }, `In the Telegram bot, send /topup. ${o.stars_per_unit} Stars are ${money(1000000, o.currency)}.`)));
    }
    const invoices = o.invoices.filter((i) => i.status !== 'expired').slice(0, 5);
    if (invoices.length) {
      parts.push(h('div', { testid: 'topup-invoices' }, h('h3', null, 'Your invoices'), h('ul', { class: 'invoice-list' }, invoices.map(invoiceRow))));
    }
    replace(body, ...parts);
    // Credited since the last look: the balance grows.
    let credited = false;
    for (const i of o.invoices) {
      if (known.get(i.invoice_id) === 'active' && i.status === 'credited') {
        credited = true;
        toast(`Payment of ${money(i.amount_micros, i.currency)} received.`, { type: 'success' });
      }
      known.set(i.invoice_id, i.status);
    }
    if (credited && onCredited) onCredited();
    // While an invoice waits, look again every 3 s.
    const waiting = o.invoices.some((i) => i.status === 'active');
    if (waiting && !watching) watching = setInterval(() => { if (document.visibilityState === 'visible') reload(); }, 3000);
    if (!waiting && watching) { clearInterval(watching); watching = null; }
  }
  const reload = loader(body, () => api.get('/me/topup'), render, { testid: 'topup-load-error', quiet: true });
  c.stop = () => { if (watching) clearInterval(watching); };
  c.options = () => opts;
  return c;
}

/** The user's payments (receipts), with CSV. */
export function depositsCard({ me, cur }) {
  const csv = button('Download CSV', { kind: 'secondary', small: true, iconName: 'download', testid: 'deposits-csv' });
  csv.addEventListener('click', () => busy(csv, async () => {
    try {
      await api.download('/me/deposits.csv', `traffix-payments-${me().name}-${new Date().toISOString().slice(0, 10)}.csv`);
    } catch (e) {
      toast(`Could not download the payments: ${e.reason || e.message}`, { type: 'error' });
    }
  }));
  const body = h('div', { testid: 'me-deposits' });
  const c = card('Payments', { testid: 'deposits-card', cls: 'span-2', actions: [csv] },
    h('p', { class: 'muted small' }, 'Every top-up of your balance: where it came from, its payment id and what became of it (refunds and chargebacks take back only what you have not spent).'), body);
  c.reload = loader(body, () => api.get(`/me/deposits${api.qs({ limit: 50 })}`), (rows) => {
    replace(body, depositsTable(rows, { currency: cur(), testid: 'me-deposits-table', rowPrefix: 'me-deposit-row' }));
  }, { testid: 'me-deposits-error', quiet: true });
  return c;
}

/** Receipts as a table (the portal's and the admin's). */
export function depositsTable(rows, { currency, admin = false, testid, rowPrefix, actions, empty }) {
  return dataTable({
    testid,
    caption: 'Payments',
    rows,
    rowAttrs: (d) => ({ testid: `${rowPrefix}-${d.seq}` }),
    empty: empty || emptyState({ title: 'No payments yet', text: 'Top-ups appear here with their receipts.', testid: `${testid}-empty`, iconName: 'wallet' }),
    columns: [
      { label: 'Time', cell: (d) => timeEl(d.time, dateTime(d.time)) },
      admin ? { label: 'User', cell: (d) => h('span', { class: 'strong' }, d.user) } : null,
      { label: 'From', cell: (d) => providerName(d.provider) },
      { label: 'Payment id', cell: (d) => h('span', { class: 'mono small' }, d.external_id) },
      { label: 'Amount', num: true, cell: (d) => h('span', { class: 'strong' }, money(d.amount_micros, d.currency || currency)) },
      {
        label: 'Status',
        cell: (d) => h('span', null, paymentStatus(d.status, `${rowPrefix}-status-${d.seq}`),
          d.recovered_micros ? h('span', { class: 'sub' }, `${money(d.recovered_micros, d.currency || currency)} taken back`) : null,
          admin && d.unrecovered_micros ? h('span', { class: 'sub warn' }, `${money(d.unrecovered_micros, d.currency || currency)} already spent`) : null),
      },
      actions ? { label: 'Actions', hideLabel: true, class: 'actions', cell: actions } : null,
    ].filter(Boolean),
  });
}

/** Payout details and the automatic withdrawal threshold. `onProfile(p)` gets every saved profile. */
export function payoutCard({ cur, onProfile }) {
  const method = field({ label: 'Method', testid: 'payout-method', required: true, autocomplete: 'off', maxlength: '32', placeholder: 'bank, usdt-trc20, paypal…' });
  const details = field({ label: 'Details', testid: 'payout-details', required: true, autocomplete: 'off', maxlength: '500', placeholder: 'IBAN, wallet address, e-mail…' });
  const threshold = field({ label: 'Withdraw automatically at', testid: 'payout-threshold', inputmode: 'decimal', autocomplete: 'off', placeholder: 'e.g. 50.00', hint: 'When your available balance reaches this, a withdrawal of all of it is requested for you. Empty: only by hand.' });
  const err = h('p', { class: 'form-error', role: 'alert', testid: 'payout-error', hidden: true });
  const saved = h('p', { class: 'muted small', testid: 'payout-saved' });
  const submit = button('Save payout details', { kind: 'primary', type: 'submit', testid: 'payout-submit' });
  const form = h('form', { class: 'payout-form', testid: 'payout-form', novalidate: true }, method, details, threshold, err, saved, submit);
  let profile = null;
  function show(p) {
    profile = p;
    method.input.value = p.method || '';
    details.input.value = p.details || '';
    threshold.input.value = p.auto_threshold || '';
    threshold.querySelector('.hint').textContent = `When your available balance reaches this (at least ${money(p.min_payout_micros, cur())}), a withdrawal of all of it is requested for you. Empty: only by hand.`;
    saved.textContent = p.updated_at ? `Saved ${dateTime(p.updated_at)}.` : 'Not saved yet.';
    if (onProfile) onProfile(p);
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.hidden = true;
    const fail = (m, input) => { err.textContent = m; err.hidden = false; if (input) input.focus(); };
    const m = method.input.value.trim();
    const d = details.input.value.trim();
    if (!m) return fail('Say how you want to be paid (e.g. bank).', method.input);
    if (!d) return fail('Say where you want to be paid (e.g. your IBAN).', details.input);
    const t = threshold.input.value.trim();
    if (t) {
      const a = parseAmount(t);
      if (!a.ok) return fail(a.message, threshold.input);
      if (profile && a.micros < toMicros(profile.min_payout_micros)) return fail(`The threshold is at least the smallest withdrawal, ${money(profile.min_payout_micros, cur())}.`, threshold.input);
    }
    try {
      const p = await busy(submit, () => api.put('/me/payout-profile', { method: m, details: d, auto_threshold: t }));
      show(p);
      toast('Payout details saved.', { type: 'success' });
    } catch (ex) {
      fail(ex.reason || ex.message);
    }
  });
  const c = card('Payout details', { testid: 'payout-card' },
    h('p', { class: 'muted small' }, 'Where the operator pays your withdrawals.'), form);
  c.reload = () => api.get('/me/payout-profile').then(show).catch(() => {});
  return c;
}
