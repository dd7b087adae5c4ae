// Admin users: search, create, credit, disable, enable; each name opens the user's page (user.js).

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { count, dateTime, money, parseAmount, toMicros } from '../format.js';
import { badge, button, card, checkbox, confirmDialog, copyButton, dataTable, defList, emptyState, field, formDialog, infoDialog, loader, pageHeader, searchBox, toast, timeEl } from '../ui.js';

export default function usersPage(main, ctx) {
  let q = ctx.params.get('q') || '';
  const create = button('New user', { kind: 'primary', iconName: 'plus', testid: 'users-create', onClick: () => createUser() });
  main.append(pageHeader('Users', { subtitle: 'Clients and node owners. Credits are recorded in the ledger; every action here is audited.', actions: [create] }));
  const search = searchBox({ label: 'Search users', testid: 'users-search', placeholder: 'Search by name…', value: q, onInput: (v) => { q = v; reload(); } });
  const body = h('div', { testid: 'users-table-wrap' });
  main.append(card(null, { testid: 'users-card' }, h('div', { class: 'toolbar' }, search), body));

  const cur = (u) => u.currency || ctx.me?.currency || 'USD';

  function render(users) {
    const rows = [...users].sort((a, b) => a.name.localeCompare(b.name));
    replace(body, dataTable({
      testid: 'users-table',
      caption: 'Users',
      rows,
      rowAttrs: (u) => ({ testid: `user-row-${u.name}`, class: u.disabled && 'row-disabled' }),
      empty: q
        ? emptyState({ title: `No user matches “${q}”`, text: 'Try another part of the name.', testid: 'users-no-match', iconName: 'users' })
        : emptyState({ title: 'No users yet', text: 'Create the first client or node owner with “New user”.', testid: 'users-empty', iconName: 'users' }),
      columns: [
        {
          label: 'Name',
          cell: (u) => h('span', null, h('a', { class: 'strong', href: `#/users/${encodeURIComponent(u.name)}`, testid: `user-open-${u.name}`, title: `Open ${u.name}` }, u.name), ' ', u.admin ? badge('admin', 'accent') : null, ' ', u.disabled ? badge('disabled', 'bad') : null,
            u.disabled && u.disabled_reason ? h('span', { class: 'sub' }, u.disabled_reason) : null,
            h('span', { class: 'sub links' },
              h('a', { href: `#/sessions?user=${encodeURIComponent(u.name)}`, testid: `user-sessions-${u.name}` }, 'sessions'), ' · ',
              h('a', { href: `#/ledger?user=${encodeURIComponent(u.name)}`, testid: `user-ledger-${u.name}` }, 'ledger'))),
        },
        { label: 'Balance', num: true, cell: (u) => h('span', { class: u.balance_micros < 0 ? 'neg' : null, testid: `user-balance-${u.name}` }, money(u.balance_micros, cur(u))) },
        { label: 'Available', num: true, cell: (u) => money(u.available_micros, cur(u)) },
        { label: 'Held', num: true, cell: (u) => money(u.held_micros, cur(u)) },
        { label: 'Withdrawing', num: true, cell: (u) => (u.pending_withdrawals_micros ? money(u.pending_withdrawals_micros, cur(u)) : null) },
        { label: 'Devices', num: true, cell: (u) => count(u.devices || 0) },
        { label: 'Created', cell: (u) => (u.created_at ? timeEl(u.created_at, dateTime(u.created_at)) : null) },
        {
          label: 'Actions',
          hideLabel: true,
          class: 'actions',
          cell: (u) => h('div', { class: 'row-actions' },
            button('Credit', { kind: 'secondary', small: true, testid: `user-credit-${u.name}`, onClick: () => credit(u) }),
            u.disabled
              ? button('Enable', { kind: 'secondary', small: true, testid: `user-enable-${u.name}`, onClick: () => enable(u) })
              : u.name === ctx.me?.name ? null : button('Disable', { kind: 'danger-ghost', small: true, testid: `user-disable-${u.name}`, onClick: () => disable(u) })),
        },
      ],
    }));
  }

  const reload = loader(body, () => api.get(`/admin/users${api.qs({ q })}`), render, { testid: 'users-error' });

  async function createUser() {
    const name = field({ label: 'User name', testid: 'create-user-name', required: true, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', hint: '3–32 characters: a–z, 0–9 and _.', pattern: '[a-z0-9_]{3,32}', maxlength: '32' });
    const password = field({ label: 'Dashboard password', testid: 'create-user-password', type: 'password', autocomplete: 'new-password', hint: 'At least 8 characters. Leave empty to generate one.' });
    const admin = checkbox({ label: 'Administrator (full access to this dashboard)', testid: 'create-user-admin' });
    const result = await formDialog({
      title: 'New user',
      testid: 'create-user-dialog',
      fields: [name, password, admin],
      submitLabel: 'Create user',
      onSubmit: async ({ fail }) => {
        const n = name.input.value.trim();
        if (!/^[a-z0-9_]{3,32}$/.test(n)) return fail('The user name must be 3–32 characters of a–z, 0–9 and _.', name.input);
        const p = password.input.value;
        if (p && p.length < 8) return fail('The password needs at least 8 characters.', password.input);
        const body = { name: n, admin: admin.input.checked };
        if (p) body.password = p;
        return api.post('/admin/users', body);
      },
    });
    if (!result) return;
    toast(`User ${result.name} created`, { type: 'success' });
    reload();
    if (result.password) {
      await infoDialog({
        title: `${result.name} can sign in`,
        testid: 'user-created-dialog',
        content: h('div', null,
          h('p', null, 'This generated password is shown only once. Give it to the user; they sign in here with it.'),
          h('div', { class: 'secret-row' }, h('code', { class: 'secret', testid: 'user-created-password' }, result.password),
            copyButton(result.password, { testid: 'copy-user-created-password', label: 'Copy the password', what: 'Password copied' }))),
      });
    }
  }

  async function credit(u) {
    if (await creditUser(u, { currency: cur(u) })) reload();
  }

  async function disable(u) {
    if (await disableUser(u)) reload();
  }

  async function enable(u) {
    if (await enableUser(u)) reload();
  }
}

/** The credit dialog (amount, reason, payment id) and its confirmation; resolves with the API's answer or null. */
export async function creditUser(u, { currency = 'USD' } = {}) {
  const amount = field({ label: `Amount (${currency})`, testid: 'credit-amount', required: true, inputmode: 'decimal', autocomplete: 'off', placeholder: '25.00', hint: 'Like 12.50: a dot before at most 6 decimals.' });
  const reason = field({ label: 'Reason', testid: 'credit-reason', required: true, placeholder: 'e.g. bank transfer 1234', maxlength: '500' });
  const pid = field({ label: 'Payment id', testid: 'credit-id', autocomplete: 'off', hint: 'The bank or provider reference. With it, submitting the same payment twice credits it only once.', maxlength: '128' });
  const result = await formDialog({
    title: `Credit ${u.name}`,
    testid: 'credit-dialog',
    description: h('p', null, 'Current balance: ', h('strong', null, money(u.balance_micros, currency)), '. The credit is a ledger transfer from external deposits.'),
    fields: [amount, reason, pid],
    submitLabel: 'Credit',
    onSubmit: async ({ fail }) => {
      const a = parseAmount(amount.input.value);
      if (!a.ok) return fail(a.message, amount.input);
      if (a.micros === 0n) return fail('Enter an amount greater than zero, like 12.50.', amount.input);
      const r = reason.input.value.trim();
      if (!r) return fail('Give a reason: it goes in the ledger and the audit log.', reason.input);
      const body = { amount: a.text, reason: r };
      const id = pid.input.value.trim();
      if (id) body.id = id;
      // The balance right now (the table's may be seconds old), then the person confirms.
      const fresh = (await api.get(`/admin/users${api.qs({ q: u.name })}`)).find((x) => x.name === u.name) || u;
      const now = toMicros(fresh.balance_micros);
      const ok = await confirmDialog({
        title: `Credit ${money(a.micros, currency)} to ${u.name}?`,
        testid: 'credit-confirm-dialog',
        confirmLabel: `Credit ${money(a.micros, currency)}`,
        message: h('div', null,
          defList([
            ['Amount', h('strong', { testid: 'credit-confirm-amount' }, money(a.micros, currency))],
            ['Balance now', h('span', { testid: 'credit-confirm-before' }, money(now, currency))],
            ['Balance after', h('strong', { testid: 'credit-confirm-after' }, money(now + a.micros, currency))],
            ['Reason', r],
          ]),
          h('p', { class: 'muted small' }, 'A credit cannot be edited afterwards; it stays in the ledger.')),
      });
      if (!ok) return false;
      return api.post(`/admin/users/${encodeURIComponent(u.name)}/credit`, body);
    },
  });
  if (!result) return null;
  const bal = result.balance_micros != null ? ` New balance: ${money(result.balance_micros, currency)}.` : '';
  toast(`Credited ${u.name}.${bal}`, { type: 'success' });
  return result;
}

/** Disables a user after asking for a reason; resolves with the API's answer or null. */
export async function disableUser(u) {
  const reason = field({ label: 'Reason', testid: 'disable-reason', required: true, placeholder: 'e.g. chargeback', maxlength: '500' });
  const result = await formDialog({
    title: `Disable ${u.name}?`,
    testid: 'disable-dialog',
    description: h('p', null, `${u.name} can no longer sign in or use the proxy; live connections are refused from now on. Their balance and history stay.`),
    fields: [reason],
    submitLabel: 'Disable user',
    danger: true,
    onSubmit: async ({ fail }) => {
      const r = reason.input.value.trim();
      if (!r) return fail('Give a reason: it goes in the audit log.', reason.input);
      return api.post(`/admin/users/${encodeURIComponent(u.name)}/disable`, { reason: r });
    },
  });
  if (result) toast(`${u.name} disabled`, { type: 'success' });
  return result || null;
}

/** Enables a disabled user after a confirmation; resolves true when done. */
export async function enableUser(u) {
  const ok = await confirmDialog({
    title: `Enable ${u.name}?`,
    message: h('p', null, `${u.name} can sign in and use the proxy again.`, u.disabled_reason ? ` They were disabled because: ${u.disabled_reason}.` : ''),
    confirmLabel: 'Enable user',
    testid: 'enable-dialog',
    onConfirm: () => api.post(`/admin/users/${encodeURIComponent(u.name)}/enable`),
  });
  if (ok) toast(`${u.name} enabled`, { type: 'success' });
  return ok;
}
