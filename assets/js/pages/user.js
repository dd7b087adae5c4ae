// One user, for admins (#/users/NAME): balance, held, pending withdrawals and available; recent
// sessions and ledger (with links to the full lists), devices, sub-users; and the actions:
// adjust (signed), credit, rotate the proxy password, reset the login password, pairing link,
// disable / enable.

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { bytes, count, dateTime, money, parseAmount, relative, toMicros } from '../format.js';
import {
  badge, button, card, confirmDialog, copyButton, dataTable, defList, emptyState, errorState, field, formDialog,
  infoDialog, loading, pageHeader, timeEl, toast,
} from '../ui.js';
import { battery, countryCell, nodeStatus, onlineFor, pairDialog, trustCell } from './common.js';
import { sessionsTable } from './sessions.js';
import { ledgerTable, reverseTransfer } from './ledger.js';
import { creditUser, disableUser, enableUser } from './users.js';

const RECENT = 10;

export default function userPage(main, ctx) {
  const name = ctx.name;
  const enc = encodeURIComponent(name);
  const cur = () => ctx.me?.currency || 'USD';
  let user = null;

  const back = h('a', { href: '#/users', class: 'back-link', testid: 'user-page-back' }, '← Users');
  const head = h('div', { testid: 'user-page-head' });
  const body = h('div', { testid: 'user-page' }, loading());
  main.append(back, head, body);

  /** The user object (GET /admin/users?q= is a substring search: the exact name is picked). */
  async function fetchUser() {
    const list = await api.get(`/admin/users${api.qs({ q: name })}`);
    return list.find((u) => u.name === name) || null;
  }

  /* ---------- the layout, built once the user is known ---------- */
  const balanceValue = h('p', { class: 'balance-value', testid: 'user-page-balance' }, '—');
  const parts = {
    available: h('dd', { testid: 'user-page-available' }, '—'),
    held: h('dd', { testid: 'user-page-held' }, '—'),
    pending: h('dd', { testid: 'user-page-pending' }, '—'),
  };
  const facts = h('div', { testid: 'user-page-facts' });
  const sBody = h('div', { testid: 'user-sessions' });
  const lBody = h('div', { testid: 'user-ledger' });
  const dBody = h('div', { testid: 'user-devices' });
  const subBody = h('div', { testid: 'user-subusers' });
  let built = false;

  function build() {
    built = true;
    replace(body, h('div', { class: 'portal-grid' },
      card('Balance', { testid: 'user-balance-card' },
        balanceValue,
        h('dl', { class: 'balance-parts' },
          h('div', null, h('dt', null, 'Available'), parts.available),
          h('div', null, h('dt', { title: 'Reserved for live connections; released as they are billed' }, 'Held for live use'), parts.held),
          h('div', null, h('dt', null, 'Pending withdrawals'), parts.pending)),
        h('p', { class: 'muted small' }, 'Available is what the user may spend or withdraw: the balance less what is held and what is owed for usage not yet posted.')),
      card('Account', { testid: 'user-account-card' }, facts),
      card('Recent sessions', { testid: 'user-sessions-card', cls: 'span-2', actions: [h('a', { class: 'btn btn-secondary btn-sm', href: `#/sessions?user=${enc}`, testid: 'user-sessions-all' }, 'All sessions')] }, sBody),
      card('Ledger', { testid: 'user-ledger-card', cls: 'span-2', actions: [h('a', { class: 'btn btn-secondary btn-sm', href: `#/ledger?user=${enc}`, testid: 'user-ledger-all' }, 'Older transfers in the ledger')] },
        h('p', { class: 'muted small' }, `The last ${RECENT} transfers, signed from ${name}'s side.`), lBody),
      card('Devices', { testid: 'user-devices-card', cls: 'span-2' }, dBody),
      card('Sub-users', { testid: 'user-subusers-card', cls: 'span-2' }, subBody)));
  }

  let headKey = '';
  function renderUser(u) {
    user = u;
    // The header (and its buttons, which may have focus) is rebuilt only when it changes.
    const key = JSON.stringify([u.admin, u.disabled, u.disabled_reason]);
    if (key !== headKey) { headKey = key; renderHead(u); }
    if (!built) build();
    renderNumbers(u);
  }

  function renderHead(u) {
    const actions = [
      button('Adjust balance', { kind: 'primary', small: true, testid: 'user-page-adjust', onClick: () => adjust() }),
      button('Credit', { kind: 'secondary', small: true, testid: 'user-page-credit', onClick: () => credit() }),
      button('Rotate proxy password', { kind: 'secondary', small: true, iconName: 'refresh', testid: 'user-page-rotate', onClick: () => rotate() }),
      button('Reset login password', { kind: 'secondary', small: true, iconName: 'key', testid: 'user-page-reset-password', onClick: () => resetPassword() }),
      u.disabled ? null : button('Pairing link', { kind: 'secondary', small: true, iconName: 'plus', testid: 'user-page-pair', onClick: (e) => pair(e.currentTarget) }),
      u.disabled
        ? button('Enable', { kind: 'secondary', small: true, testid: 'user-page-enable', onClick: () => enable() })
        : u.name === ctx.me?.name ? null : button('Disable', { kind: 'danger-ghost', small: true, testid: 'user-page-disable', onClick: () => disable() }),
    ].filter(Boolean);
    replace(head, pageHeader(u.name, {
      subtitle: h('span', { testid: 'user-page-status' },
        u.admin ? badge('admin', 'accent') : null, ' ',
        u.disabled ? badge('disabled', 'bad') : badge('active', 'ok'),
        u.disabled && u.disabled_reason ? ` ${u.disabled_reason}` : ''),
      actions,
    }));
  }

  function renderNumbers(u) {
    balanceValue.textContent = money(u.balance_micros, cur());
    balanceValue.classList.toggle('neg', u.balance_micros < 0);
    parts.available.textContent = money(u.available_micros, cur());
    parts.held.textContent = money(u.held_micros, cur());
    parts.pending.textContent = money(u.pending_withdrawals_micros || 0, cur());
    replace(facts, defList([
      ['Proxy user name', h('code', null, u.name)],
      ['Role', u.admin ? 'Administrator' : 'User'],
      ['Status', u.disabled ? `Disabled${u.disabled_reason ? `: ${u.disabled_reason}` : ''}` : 'Active', 'user-page-state'],
      ['Devices', count(u.devices || 0)],
      ['Telegram', u.telegram_id != null
        ? h('span', null, `linked (id ${u.telegram_id}) `, button('Unlink', { kind: 'ghost', small: true, testid: 'user-page-telegram-unlink', onClick: () => unlinkTelegram() }))
        : 'not linked', 'user-page-telegram'],
      u.created_at ? ['Created', timeEl(u.created_at, dateTime(u.created_at))] : null,
    ]));
  }

  async function loadUser() {
    try {
      const u = await fetchUser();
      if (!main.isConnected) return;
      if (!u) {
        headKey = '';
        replace(head, pageHeader(name));
        replace(body, emptyState({ title: `No user “${name}”`, text: 'User names must match exactly.', testid: 'user-page-missing', iconName: 'users', action: h('a', { class: 'btn btn-secondary', href: '#/users' }, 'All users') }));
        return;
      }
      renderUser(u);
      if (!loadedLists) { loadedLists = true; loadLists(); }
    } catch (e) {
      if (e.status === 401 || !main.isConnected) return;
      if (!built) { replace(head, pageHeader(name)); replace(body, errorState(e, loadUser, 'user-page-error')); }
      else toast(`Could not refresh ${name}: ${e.reason || e.message}`, { type: 'error' });
    }
  }
  let loadedLists = false;

  /* ---------- the lists ---------- */
  async function into(box, testid, fetcher, render) {
    try {
      const data = await fetcher();
      if (main.isConnected) render(data);
    } catch (e) {
      if (e.status !== 401 && main.isConnected) replace(box, errorState(e, () => into(box, testid, fetcher, render), testid));
    }
  }
  const loadSessions = () => into(sBody, 'user-sessions-error', () => api.get(`/admin/sessions${api.qs({ user: name, limit: RECENT })}`), (rows) => {
    replace(sBody, sessionsTable(rows, {
      currency: cur(),
      testid: 'user-sessions-table',
      rowPrefix: 'user-session-row',
      empty: emptyState({ title: 'No sessions yet', text: `${name} has not used the proxy.`, testid: 'user-sessions-empty', iconName: 'sessions' }),
    }));
  });
  const loadLedger = () => into(lBody, 'user-ledger-error', () => api.get(`/admin/ledger${api.qs({ user: name, limit: RECENT })}`), (rows) => {
    replace(lBody, ledgerTable(rows, {
      currency: cur(),
      me: name,
      testid: 'user-ledger-table',
      rowPrefix: 'user-ledger-row',
      onReverse: async (t) => { if (await reverseTransfer(t, { currency: cur() })) refresh(); },
      empty: emptyState({ title: 'No transfers yet', text: 'Credits, adjustments, usage and withdrawals appear here.', testid: 'user-ledger-empty', iconName: 'ledger' }),
    }));
  });
  const loadDevices = () => into(dBody, 'user-devices-error', () => api.get('/admin/nodes'), (all) => {
    const rows = all.filter((d) => d.owner === name).sort((a, b) => Number(b.online) - Number(a.online) || String(a.vip).localeCompare(String(b.vip), 'en', { numeric: true }));
    replace(dBody, dataTable({
      testid: 'user-devices-table',
      caption: `Devices of ${name}`,
      rows,
      rowAttrs: (d) => ({ testid: `user-device-row-${d.vip}`, class: [d.banned && 'row-banned', !d.online && 'row-offline'] }),
      empty: emptyState({ title: 'No devices', text: `${name} has paired no device. A pairing link lets them add one.`, testid: 'user-devices-empty', iconName: 'phone' }),
      columns: [
        { label: 'vIP', cell: (d) => h('span', null, h('span', { class: 'mono strong' }, d.vip), h('span', { class: 'sub' }, [d.model, d.os].filter(Boolean).join(' · '))) },
        { label: 'Status', cell: (d) => h('span', null, nodeStatus(d), d.banned ? [' ', badge('banned', 'bad')] : null, onlineFor(d) ? h('span', { class: 'sub' }, onlineFor(d)) : null, !d.online && d.last_seen ? h('span', { class: 'sub' }, timeEl(d.last_seen, `seen ${relative(d.last_seen)}`)) : null, d.banned && d.ban_reason ? h('span', { class: 'sub' }, d.ban_reason) : null) },
        { label: 'Country / IP', cell: (d) => h('span', null, countryCell(d.country), d.public_ip ? h('span', { class: 'sub mono' }, d.public_ip) : null) },
        { label: 'Trust', cell: (d) => trustCell(d, `user-device-trust-${d.vip}`) },
        { label: 'Streams', num: true, cell: (d) => (d.online ? count(d.active_streams || 0) : null) },
        { label: 'Battery', cell: (d) => battery(d.battery_pct, d.charging) },
        { label: 'Carried today', num: true, cell: (d) => bytes(d.bytes_today || 0) },
        { label: 'Earned today', num: true, cell: (d) => money(d.earned_today_micros || 0, cur()) },
        { label: 'Paired', cell: (d) => (d.paired_at ? timeEl(d.paired_at, dateTime(d.paired_at)) : null) },
      ],
    }));
  });
  const loadSubs = () => into(subBody, 'user-subusers-error', () => api.get(`/admin/users/${enc}/sub-users`), (rows) => {
    replace(subBody, dataTable({
      testid: 'user-subusers-table',
      caption: `Sub-users of ${name}`,
      rows,
      rowAttrs: (s) => ({ testid: `user-subuser-row-${s.name}`, class: s.disabled && 'row-disabled' }),
      empty: emptyState({ title: 'No sub-users', text: `${name} has made no extra proxy logins.`, testid: 'user-subusers-empty', iconName: 'users' }),
      columns: [
        { label: 'Proxy user name', cell: (s) => h('span', null, h('span', { class: 'mono strong' }, s.name), ' ', s.disabled ? badge('disabled', 'bad') : null, s.expires_at && new Date(s.expires_at) < new Date() ? badge('expired', 'warn') : null) },
        { label: 'Traffic', cell: (s) => (s.byte_cap == null ? `${bytes(s.bytes_used || 0)} used, no cap` : `${bytes(s.bytes_used || 0)} of ${bytes(s.byte_cap)}`) },
        { label: 'Streams', num: true, cell: (s) => (s.max_streams == null ? 'no cap' : count(s.max_streams)) },
        { label: 'Expires', cell: (s) => (s.expires_at ? timeEl(s.expires_at, dateTime(s.expires_at)) : 'never') },
        { label: 'Created', cell: (s) => (s.created_at ? timeEl(s.created_at, dateTime(s.created_at)) : null) },
      ],
    }));
  });
  function loadLists() {
    for (const [box, f] of [[sBody, loadSessions], [lBody, loadLedger], [dBody, loadDevices], [subBody, loadSubs]]) {
      if (!box.firstChild) replace(box, loading());
      f();
    }
  }
  function refresh() {
    loadUser();
    loadLedger();
  }

  /* ---------- actions ---------- */
  async function adjust() {
    const amount = field({ label: `Amount (${cur()})`, testid: 'adjust-amount', required: true, inputmode: 'decimal', autocomplete: 'off', placeholder: '-13.50', hint: 'Signed: -13.50 takes money, 2.00 or +2 gives it. A dot before at most 6 decimals.' });
    const reason = field({ label: 'Reason', testid: 'adjust-reason', required: true, placeholder: 'e.g. refund of a failed job', maxlength: '500' });
    const result = await formDialog({
      title: `Adjust ${name}'s balance`,
      testid: 'adjust-dialog',
      description: h('p', null, 'A correction moves money between the user and the platform\'s adjustments account. It cannot take money held for live connections or owed for usage not yet posted.'),
      fields: [amount, reason],
      submitLabel: 'Adjust…',
      onSubmit: async ({ fail }) => {
        const a = parseAmount(amount.input.value, { signed: true });
        if (!a.ok) return fail(a.message, amount.input);
        if (a.micros === 0n) return fail('Enter an amount other than zero, like -13.50 or 2.00.', amount.input);
        const r = reason.input.value.trim();
        if (!r) return fail('Give a reason: it goes in the ledger and the audit log.', reason.input);
        // The balance right now, then the person confirms.
        const fresh = (await fetchUser()) || user;
        const now = toMicros(fresh.balance_micros);
        const shown = (a.micros > 0n ? '+' : '') + money(a.micros, cur());
        const ok = await confirmDialog({
          title: a.micros < 0n ? `Take ${money(-a.micros, cur())} from ${name}?` : `Give ${money(a.micros, cur())} to ${name}?`,
          testid: 'adjust-confirm-dialog',
          confirmLabel: `Adjust by ${shown}`,
          danger: a.micros < 0n,
          message: h('div', null,
            defList([
              ['Amount', h('strong', { testid: 'adjust-confirm-amount' }, shown)],
              ['Balance now', h('span', { testid: 'adjust-confirm-before' }, money(now, cur()))],
              ['Balance after', h('strong', { testid: 'adjust-confirm-after' }, money(now + a.micros, cur()))],
              a.micros < 0n ? ['Available now', h('span', { testid: 'adjust-confirm-available' }, money(fresh.available_micros, cur()))] : null,
              ['Reason', r],
            ]),
            h('p', { class: 'muted small' }, 'The adjustment stays in the ledger; a mistake is undone by reversing it.')),
        });
        if (!ok) return false;
        return api.post(`/admin/users/${enc}/adjust`, { amount: a.text, reason: r });
      },
    });
    if (!result) return;
    toast(`Adjusted ${name} by ${result.amount_micros > 0 ? '+' : ''}${money(result.amount_micros, cur())}. New balance: ${money(result.balance_micros, cur())}.`, { type: 'success' });
    refresh();
  }

  async function credit() {
    if (await creditUser(user, { currency: cur() })) refresh();
  }

  async function rotate() {
    let result = null;
    const ok = await confirmDialog({
      title: `Rotate ${name}'s proxy password?`,
      message: h('p', null, `A new proxy password is made at once. Programs using the old one are refused from now on: ${name} must update them (their portal shows the new one).`),
      confirmLabel: 'Rotate password',
      danger: true,
      testid: 'user-rotate-dialog',
      onConfirm: async () => { result = await api.post(`/admin/users/${enc}/proxy-password`); },
    });
    if (!ok || !result) return;
    await infoDialog({
      title: `${name}'s new proxy password`,
      testid: 'user-proxy-password-dialog',
      content: h('div', null,
        h('p', null, 'Shown only this once here. Give it to the user, or let them copy it from their portal.'),
        defList([['Proxy user name', h('code', null, result.name)]]),
        h('div', { class: 'secret-row' }, h('code', { class: 'secret', testid: 'user-proxy-password' }, result.proxy_password),
          copyButton(result.proxy_password, { testid: 'copy-user-proxy-password', label: 'Copy the proxy password', what: 'Password copied' }))),
    });
  }

  async function resetPassword() {
    let result = null;
    const ok = await confirmDialog({
      title: `Reset ${name}'s login password?`,
      message: h('p', null, `A new dashboard password is generated and every login of ${name} is signed out. The proxy password does not change.`),
      confirmLabel: 'Reset password',
      danger: true,
      testid: 'reset-password-dialog',
      onConfirm: async () => { result = await api.post(`/admin/users/${enc}/password`, { generate: true }); },
    });
    if (!ok || !result) return;
    const n = result.revoked_logins || 0;
    await infoDialog({
      title: `${name} has a new login password`,
      testid: 'password-reset-dialog',
      content: h('div', null,
        h('p', null, 'This generated password is shown only once. Give it to the user; they sign in with it and can change it in their account.'),
        h('div', { class: 'secret-row' }, h('code', { class: 'secret', testid: 'reset-password-value' }, result.password),
          copyButton(result.password, { testid: 'copy-reset-password', label: 'Copy the password', what: 'Password copied' })),
        h('p', { class: 'muted small', testid: 'reset-password-revoked' }, n === 1 ? '1 login was signed out.' : `${count(n)} logins were signed out.`)),
    });
  }

  async function pair(btn) {
    let result;
    btn.disabled = true;
    try {
      result = await api.post(`/admin/users/${enc}/pair`);
    } catch (e) {
      toast(`Could not create a pairing link: ${e.reason || e.message}`, { type: 'error' });
      return;
    } finally {
      btn.disabled = false;
    }
    await pairDialog(result, { who: `${name}'s account` });
    loadDevices();
  }

  async function disable() {
    if (await disableUser(user)) loadUser();
  }

  async function unlinkTelegram() {
    const ok = await confirmDialog({
      title: `Unlink ${name}'s Telegram account?`,
      message: h('p', null, 'The bot will no longer know this user until it links again with a code from its portal.'),
      confirmLabel: 'Unlink',
      danger: true,
      testid: 'telegram-unlink-dialog',
      onConfirm: () => api.post(`/admin/users/${encodeURIComponent(name)}/telegram/unlink`),
    });
    if (ok) { toast('Telegram unlinked', { type: 'success' }); loadUser(); }
  }

  async function enable() {
    if (await enableUser(user)) loadUser();
  }

  loadUser();
  const timer = setInterval(() => { if (document.visibilityState === 'visible' && built) { loadUser(); loadSessions(); loadDevices(); } }, 10000);
  return () => clearInterval(timer);
}
