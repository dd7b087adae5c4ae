// Admin payments (#/payments): every deposit's receipt (filter by user and provider, CSV, record
// a refund or a chargeback), the provider invoices of top-ups, and the payment settings
// (enabled providers, write-only secrets, rates; the webhook URLs to give the providers).

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { dateTime, money, parseAmount } from '../format.js';
import {
  busy, button, card, checkbox, copyButton, dataTable, defList, emptyState, field, formDialog, loader, pageHeader, select,
  timeEl, toast,
} from '../ui.js';
import { depositsTable, paymentStatus, providerName } from './payments.js';

const PROVIDERS = [['stars', 'Telegram Stars'], ['cryptopay', 'Crypto Pay'], ['generic', 'Signed webhook (your shop or gateway)']];

export default function paymentsAdminPage(main, ctx) {
  const currency = () => ctx.me?.currency || 'USD';
  let user = ctx.params.get('user') || '';
  let provider = ctx.params.get('provider') || '';
  main.append(pageHeader('Payments', { subtitle: 'Money in: every deposit with its receipt, the invoices of top-ups, and which providers take payments.' }));

  /* ---------- receipts ---------- */
  const userBox = field({ label: 'User', testid: 'deposits-user', value: user, autocomplete: 'off', placeholder: 'all users' });
  const provSel = select({ label: 'From', testid: 'deposits-provider', value: provider, options: [['', 'All'], ['admin', 'Operator'], ['generic', 'Shop'], ['cryptopay', 'Crypto Pay'], ['stars', 'Telegram Stars']] });
  const apply = button('Show', { kind: 'secondary', small: true, testid: 'deposits-apply', type: 'submit' });
  const filters = h('form', { class: 'toolbar', testid: 'deposits-filters' }, userBox, provSel, apply);
  const csv = button('Download CSV', { kind: 'secondary', small: true, iconName: 'download', testid: 'admin-deposits-csv' });
  csv.addEventListener('click', () => busy(csv, async () => {
    try {
      await api.download(`/admin/deposits.csv${api.qs({ user, provider })}`, `traffix-payments-${new Date().toISOString().slice(0, 10)}.csv`);
    } catch (e) {
      toast(`Could not download the payments: ${e.reason || e.message}`, { type: 'error' });
    }
  }));
  const body = h('div', { testid: 'admin-deposits' });
  main.append(card('Deposits', { testid: 'admin-deposits-card', actions: [csv] }, filters, body));
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    user = userBox.input.value.trim();
    provider = provSel.input.value;
    reloadDeposits();
  });
  const open = (d) => BigInt(d.amount_micros) - BigInt(d.claimed_micros) > 0n && d.status !== 'reversed';
  const reloadDeposits = loader(body, () => api.get(`/admin/deposits${api.qs({ user, provider, limit: 500 })}`), (rows) => {
    replace(body, depositsTable(rows, {
      currency: currency(),
      admin: true,
      testid: 'admin-deposits-table',
      rowPrefix: 'deposit-row',
      empty: emptyState({ title: 'No deposits', text: user || provider ? 'Nothing matches the filter.' : 'Credits and payments appear here.', testid: 'admin-deposits-empty', iconName: 'wallet' }),
      actions: (d) => (open(d)
        ? h('div', { class: 'row-actions' },
          button('Refund', { kind: 'secondary', small: true, testid: `deposit-refund-${d.seq}`, onClick: () => recordReturn(d, 'refund') }),
          button('Chargeback', { kind: 'danger-ghost', small: true, testid: `deposit-chargeback-${d.seq}`, onClick: () => recordReturn(d, 'chargeback') }))
        : null),
    }));
  }, { testid: 'admin-deposits-error' });

  async function recordReturn(d, kind) {
    const left = BigInt(d.amount_micros) - BigInt(d.claimed_micros);
    const amount = field({ label: 'Amount claimed back', testid: 'return-amount', inputmode: 'decimal', autocomplete: 'off', placeholder: money(left, currency()), hint: `Empty: all that is left (${money(left, currency())}). Only what ${d.user} has not spent is taken back; the rest is shown for you to decide.` });
    const rid = field({ label: `The provider's ${kind} id`, testid: 'return-id', autocomplete: 'off', maxlength: '128', hint: 'Recording the same id again changes nothing.' });
    const reason = field({ label: 'Reason', testid: 'return-reason', required: true, maxlength: '500' });
    const result = await formDialog({
      title: `Record a ${kind} of deposit #${d.seq}`,
      testid: 'return-dialog',
      description: h('div', null, h('p', null, h('strong', null, money(d.amount_micros, d.currency || currency())), ` from ${providerName(d.provider)} to ${d.user}, payment ${d.external_id}.`)),
      fields: [amount, rid, reason],
      submitLabel: kind === 'refund' ? 'Record refund' : 'Record chargeback',
      danger: kind === 'chargeback',
      onSubmit: ({ fail }) => {
        const body = { kind, reason: reason.input.value.trim() };
        if (!body.reason) return fail('Give a reason.', reason.input);
        const t = amount.input.value.trim();
        if (t) {
          const a = parseAmount(t);
          if (!a.ok) return fail(a.message, amount.input);
          if (a.micros === 0n || a.micros > left) return fail(`Enter an amount greater than zero and at most ${money(left, currency())}.`, amount.input);
          body.amount = a.text;
        }
        if (rid.input.value.trim()) body.id = rid.input.value.trim();
        return api.post(`/admin/deposits/${encodeURIComponent(d.transfer_id)}/return`, body);
      },
    });
    if (!result) return;
    const r = result.return;
    const rest = BigInt(r.claimed_micros) - BigInt(r.recovered_micros);
    toast(`${money(r.recovered_micros, currency())} taken back from ${d.user}${rest > 0n ? `; ${money(rest, currency())} was already spent` : ''}.`, { type: rest > 0n ? 'info' : 'success', timeout: 8000 });
    reloadDeposits();
  }

  /* ---------- invoices ---------- */
  const invBody = h('div', { testid: 'admin-invoices' });
  main.append(card('Top-up invoices', { testid: 'admin-invoices-card' }, invBody));
  const reloadInvoices = loader(invBody, () => api.get('/admin/invoices'), (rows) => {
    replace(invBody, dataTable({
      testid: 'admin-invoices-table',
      caption: 'Top-up invoices',
      rows: rows.slice(0, 200),
      rowAttrs: (i) => ({ testid: `invoice-row-${i.invoice_id}` }),
      empty: emptyState({ title: 'No invoices', text: 'Users create them with Top up in their portal.', testid: 'admin-invoices-empty', iconName: 'wallet' }),
      columns: [
        { label: 'Created', cell: (i) => timeEl(i.created_at, dateTime(i.created_at)) },
        { label: 'User', cell: (i) => h('span', { class: 'strong' }, i.user) },
        { label: 'Provider', cell: (i) => `${providerName(i.provider)} #${i.invoice_id}` },
        { label: 'Amount', num: true, cell: (i) => money(i.amount_micros, i.currency) },
        { label: 'Status', cell: (i) => h('span', null, paymentStatus(i.status), i.note ? h('span', { class: 'sub' }, i.note) : null) },
      ],
    }));
  }, { testid: 'admin-invoices-error' });

  /* ---------- settings ---------- */
  const setBody = h('div', { testid: 'payment-settings' });
  main.append(card('Payment settings', { testid: 'payment-settings-card' }, setBody));
  loader(setBody, () => api.get('/admin/payments/settings'), renderSettings, { testid: 'payment-settings-error' });

  function renderSettings(s) {
    const boxes = PROVIDERS.map(([p, label]) => checkbox({ label, testid: `payments-enable-${p}`, checked: s.enabled.includes(p) }));
    const secretHint = (set) => (set ? 'Set. Type a new one to replace it; it is never shown.' : 'Not set.');
    const genericSecret = field({ label: 'Webhook secret', testid: 'payments-generic-secret', type: 'password', autocomplete: 'new-password', hint: `${secretHint(s.generic_secret_set)} At least 32 characters (e.g. openssl rand -hex 32).` });
    const token = field({ label: 'Crypto Pay API token', testid: 'payments-cryptopay-token', type: 'password', autocomplete: 'off', hint: secretHint(s.cryptopay_token_set) });
    const stars = field({ label: 'Telegram Stars per unit', testid: 'payments-stars-per-unit', inputmode: 'numeric', value: String(s.stars_per_unit), required: true });
    const minTopup = field({ label: 'Smallest top-up', testid: 'payments-min-topup', inputmode: 'decimal', value: s.min_topup, required: true });
    const err = h('p', { class: 'form-error', role: 'alert', testid: 'payment-settings-form-error', hidden: true });
    const save = button('Save payment settings', { kind: 'primary', type: 'submit', testid: 'payment-settings-save' });
    const base = `${location.origin}`;
    const form = h('form', { class: 'settings-form', testid: 'payment-settings-form', novalidate: true },
      h('fieldset', null, h('legend', null, 'Providers that take payments'), boxes),
      genericSecret, token, stars, minTopup, err, save);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.hidden = true;
      const fail = (m, input) => { err.textContent = m; err.hidden = false; if (input) input.focus(); };
      const body = { enabled: PROVIDERS.filter((_, i) => boxes[i].input.checked).map(([p]) => p) };
      const gs = genericSecret.input.value;
      if (gs) body.generic_secret = gs;
      const tk = token.input.value;
      if (tk) body.cryptopay_token = tk;
      if (!/^\d+$/.test(stars.input.value.trim()) || Number(stars.input.value) < 1) return fail('Stars per unit is a whole number of at least 1.', stars.input);
      body.stars_per_unit = Number(stars.input.value.trim());
      const m = parseAmount(minTopup.input.value);
      if (!m.ok) return fail(m.message, minTopup.input);
      body.min_topup = m.text;
      try {
        const saved = await busy(save, () => api.put('/admin/payments/settings', body));
        toast(`Payment settings saved: ${saved.enabled.length ? saved.enabled.map(providerName).join(', ') : 'no providers'} enabled.`, { type: 'success' });
        renderSettings(saved);
      } catch (ex) {
        fail(ex.reason || ex.message);
      }
    });
    const url = (p) => `${base}${p}`;
    replace(setBody,
      h('p', { class: 'muted small' }, 'These override traffix.toml ([payments]) and take effect at once. Secrets are write-only: the API never returns them.'),
      form,
      h('h3', null, 'Where providers call'),
      defList([
        ['Signed webhook', h('span', null, h('code', { class: 'mono', testid: 'payments-generic-url' }, url(s.generic_webhook_path)), ' ', copyButton(url(s.generic_webhook_path), { testid: 'copy-generic-url', label: 'Copy the webhook URL', what: 'URL copied' }))],
        ['Crypto Pay webhook', h('span', null, h('code', { class: 'mono', testid: 'payments-cryptopay-url' }, url(s.cryptopay_webhook_path)), ' ', copyButton(url(s.cryptopay_webhook_path), { testid: 'copy-cryptopay-url', label: 'Copy the Crypto Pay webhook URL', what: 'URL copied' }))],
      ]),
      h('p', { class: 'muted small', testid: 'payment-settings-updated' }, s.updated_at ? `Last changed by ${s.updated_by} at ${dateTime(s.updated_at)}.` : 'The values come from traffix.toml.'),
      h('p', { class: 'muted small' }, 'How to sign webhooks, Crypto Pay and refunds: docs/payments.md.'));
  }

  const timer = setInterval(() => { if (document.visibilityState === 'visible') { reloadDeposits(); reloadInvoices(); } }, 10000);
  return () => clearInterval(timer);
}
