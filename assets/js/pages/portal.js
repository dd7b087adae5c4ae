// The portal (#/me) of every user: balance (refreshed every 2 s), top-up, usage, proxy
// credentials, devices and earnings, pairing, payout details and withdrawals, connections,
// payments and ledger with CSV, API keys, and the sign-in password.

import * as api from '../api.js';
import { h, icon, replace } from '../dom.js';
import { bytes, count, dateTime, money, moneyCents, parseAmount, relative, toMicros } from '../format.js';
import {
  badge, busy, button, card, confirmDialog, copyButton, dataTable, defList, emptyState, errorState, field, formDialog,
  infoDialog, loader, pageHeader, segmented, select, timeEl, toast,
} from '../ui.js';
import { usageChart } from '../chart.js';
import { battery, caps, countryCell, network, nodeStatus, onlineFor, pairDialog, qualityBadge, qualityReasons, setText, trustCell } from './common.js';
import { sessionsTable } from './sessions.js';
import { ledgerTable } from './ledger.js';
import { withdrawalsTable } from './withdrawals.js';
import { depositsCard, payoutCard, topupCard } from './payments.js';

export default function portalPage(main, ctx) {
  const timers = [];
  const cleanups = [];
  const every = (ms, fn) => timers.push(setInterval(() => { if (document.visibilityState === 'visible') fn(); }, ms));
  let me = ctx.me;
  const cur = () => me?.currency || 'USD';

  main.append(pageHeader('My account', { subtitle: h('span', null, 'Signed in as ', h('strong', { testid: 'portal-user' }, me.name), '.') }));
  const disabledBanner = h('div', { class: 'notice notice-bad', role: 'alert', testid: 'account-disabled', hidden: true });
  main.append(disabledBanner);
  const grid = h('div', { class: 'portal-grid' });
  main.append(grid);

  /* ---------- balance ---------- */
  const balanceValue = h('p', { class: 'balance-value', testid: 'balance' }, '—');
  const balanceRows = {
    available: h('dd', { testid: 'balance-available' }, '—'),
    held: h('dd', { testid: 'balance-held' }, '—'),
    pending: h('dd', { testid: 'balance-pending-withdrawals' }, '—'),
  };
  const priceLine = h('p', { class: 'muted small', testid: 'price-per-gb' });
  const updated = h('span', { class: 'live-badge', 'data-state': 'live', testid: 'balance-live' }, h('span', { class: 'live-dot', 'aria-hidden': 'true' }), h('span', null, 'Live'));
  grid.append(card('Balance', { testid: 'balance-card', actions: [updated] },
    balanceValue,
    h('dl', { class: 'balance-parts' },
      h('div', null, h('dt', null, 'Available'), balanceRows.available),
      h('div', null, h('dt', { title: 'Reserved for your live connections; released as they are billed' }, 'Held for live use'), balanceRows.held),
      h('div', null, h('dt', null, 'Pending withdrawals'), balanceRows.pending)),
    priceLine));
  const topup = topupCard({ cur, onCredited: () => { refreshMe(); reloadLedger(); deposits.reload(); } });
  grid.append(topup);
  cleanups.push(() => topup.stop());

  function renderMe(m) {
    me = m;
    setText(balanceValue, money(m.balance_micros, cur()));
    balanceValue.classList.toggle('neg', m.balance_micros < 0);
    setText(balanceRows.available, money(m.available_micros, cur()));
    setText(balanceRows.held, money(m.held_micros, cur()));
    setText(balanceRows.pending, money(m.pending_withdrawals_micros || 0, cur()));
    const price = priceText(m);
    setText(priceLine, price ? `Traffic costs ${price} per GB (10⁹ bytes, both directions, counted by the server).` : '');
    disabledBanner.hidden = !m.disabled;
    if (m.disabled) replace(disabledBanner, icon('alert'), h('p', null, 'Your account is disabled', m.disabled_reason ? `: ${m.disabled_reason}` : '', '. The proxy refuses your connections; contact the operator.'));
    renderProxy(m.proxy);
    renderTelegram(m);
  }

  /* ---------- proxy credentials ---------- */
  const proxyBody = h('div', { class: 'proxy' });
  const rotate = button('Rotate password', { kind: 'secondary', small: true, iconName: 'refresh', testid: 'rotate-proxy-password', onClick: () => rotatePassword() });
  grid.append(card('Proxy access', { testid: 'proxy-card', actions: [rotate] }, proxyBody));
  let proxyKey = '';
  let showPw = false;
  function credRow(label, value, key, { secret = false, mono = true } = {}) {
    const shown = secret && !showPw ? '•'.repeat(Math.min(24, value.length || 12)) : value;
    const row = h('div', { class: 'cred-row' },
      h('span', { class: 'cred-label' }, label),
      h('code', { class: ['cred-value', mono && 'mono'], testid: `proxy-${key}` }, shown),
      h('span', { class: 'cred-actions' },
        secret ? h('button', { type: 'button', class: 'btn btn-ghost btn-sm btn-icon', testid: `proxy-${key}-show`, 'aria-label': showPw ? 'Hide the password' : 'Show the password', 'aria-pressed': String(showPw), onclick: () => { showPw = !showPw; proxyKey = ''; renderProxy(me.proxy); } }, icon(showPw ? 'eyeOff' : 'eye')) : null,
        copyButton(value, { testid: `copy-proxy-${key}`, label: `Copy the ${label.toLowerCase()}`, what: `${label} copied` })));
    return row;
  }
  function curlRow(label, line, key) {
    return h('div', { class: 'curl' },
      h('div', { class: 'curl-head' }, h('span', { class: 'cred-label' }, label), copyButton(line, { testid: `copy-curl-${key}`, label: `Copy the ${label} curl command`, what: 'Command copied' })),
      h('pre', { class: 'curl-line', testid: `curl-${key}` }, line));
  }
  function renderProxy(p) {
    if (!p) {
      replace(proxyBody, h('p', { class: 'muted' }, 'Proxy access is not available for this account.'));
      return;
    }
    const key = JSON.stringify(p) + showPw;
    if (key === proxyKey) return;
    proxyKey = key;
    replace(proxyBody,
      credRow('User name', p.username || '', 'username'),
      credRow('Password', p.password || '', 'password', { secret: true }),
      p.socks5 ? credRow('SOCKS5', p.socks5, 'socks5') : null,
      p.http ? credRow('HTTP proxy', p.http, 'http') : null,
      p.curl_socks5 ? curlRow('SOCKS5', p.curl_socks5, 'socks5') : null,
      p.curl_http ? curlRow('HTTP', p.curl_http, 'http') : null,
      h('details', { class: 'targeting', testid: 'proxy-targeting' },
        h('summary', null, 'Choose the exit country or keep one node (sticky sessions)'),
        h('p', null, 'Add options to the user name, separated by dashes:'),
        h('ul', null,
          h('li', null, h('code', null, `${p.username}-country-de`), ' — exit through a node in Germany (ISO country code)'),
          h('li', null, h('code', null, `${p.username}-session-job42`), ' — keep the same node for this session name'),
          h('li', null, h('code', null, `${p.username}-session-job42-ttl-30`), ' — … until 30 minutes after its last use'),
          h('li', null, h('code', null, `${p.username}-node-100.64.0.12`), ' — one node by its virtual IP'))));
  }

  async function rotatePassword() {
    const ok = await confirmDialog({
      title: 'Rotate the proxy password?',
      message: h('p', null, 'A new password is created at once. Programs using the old one are refused from now on: update them with the new password.'),
      confirmLabel: 'Rotate password',
      danger: true,
      testid: 'rotate-dialog',
      onConfirm: () => api.post('/me/proxy-password'),
    });
    if (!ok) return;
    toast('Proxy password rotated. Copy the new one below.', { type: 'success' });
    refreshMe();
  }

  /* ---------- usage ---------- */
  let usageBy = 'hour';
  const usageChartBox = h('div', { class: 'chart-box', testid: 'usage-chart' });
  const usageTotals = h('div', { testid: 'me-usage-totals' });
  const usageRange = segmented({
    label: 'Period',
    value: usageBy,
    testid: 'me-usage-range',
    options: [['hour', 'Last 24 hours', 'me-usage-range-24h'], ['day', 'Last 30 days', 'me-usage-range-30d']],
    onChange: (v) => { usageBy = v; loadUsage(); },
  });
  grid.append(card('What I used', { testid: 'usage-card', cls: 'span-2', actions: [usageRange] }, usageChartBox, usageTotals));
  let usage = null;
  let usageSeq = 0;
  async function loadUsage() {
    const my = ++usageSeq;
    try {
      const u = await api.get(`/me/usage${api.qs({ by: usageBy, last: usageBy === 'hour' ? 24 : 30 })}`);
      if (my !== usageSeq || !main.isConnected) return;
      if (usage) usage.destroy();
      replace(usageChartBox);
      usage = usageChart(usageChartBox, { by: usageBy, currency: cur(), trafficLabel: 'Traffic', moneySeries: [['debit_micros', 'Spent', '--chart-3']] });
      usage.update(u);
      const t = u.total || {};
      replace(usageTotals, defList([
        ['Traffic', bytes((t.bytes_up || 0) + (t.bytes_down || 0)), 'me-usage-total-bytes'],
        ['Downloaded', bytes(t.bytes_down || 0)],
        ['Uploaded', bytes(t.bytes_up || 0)],
        ['Spent', moneyCents(t.debit_micros || 0, cur()), 'me-usage-total-spent'],
        ['Connections', count(t.sessions || 0), 'me-usage-total-sessions'],
      ], 'deflist deflist-row-wrap'));
    } catch (e) {
      if (my !== usageSeq || e.status === 401) return;
      replace(usageChartBox, errorState(e, loadUsage, 'me-usage-error'));
    }
  }
  cleanups.push(() => usage && usage.destroy());

  /* ---------- devices and earnings ---------- */
  const pairBtn = button('Pair a device', { kind: 'primary', small: true, iconName: 'plus', testid: 'pair-device', onClick: () => pair() });
  const earningsBox = h('div', { class: 'earnings', testid: 'earnings' });
  const devicesBody = h('div', { testid: 'devices-list' });
  grid.append(card('My devices', { testid: 'devices-card', cls: 'span-2', actions: [pairBtn] },
    h('p', { class: 'muted small' }, 'Phones and Linux boxes you paired share their connection and earn for every byte they carry (after the platform fee).'),
    earningsBox, devicesBody));
  let devices = null;
  let earnings30 = null;
  let earningsChart = null;
  function renderEarnings() {
    if (!devices) return;
    let today = 0n;
    for (const d of devices) today += toMicros(d.earned_today_micros || 0);
    const items = [
      ['Earned today', money(today, cur()), 'earnings-today'],
      ['Last 30 days', earnings30 ? moneyCents(earnings30.total?.earned_micros || 0, cur()) : '…', 'earnings-30d'],
      ['Carried (30 days)', earnings30 ? bytes((earnings30.total?.bytes_up || 0) + (earnings30.total?.bytes_down || 0)) : '…', 'earnings-30d-bytes'],
      ['Online now', `${count(devices.filter((d) => d.online).length)} of ${count(devices.length)}`, 'devices-online'],
    ];
    const hasEarnings = devices.length || (earnings30 && (earnings30.total?.earned_micros || 0) > 0);
    if (!hasEarnings) { replace(earningsBox); return; }
    if (!earningsBox.querySelector('.deflist')) {
      replace(earningsBox, defList(items, 'deflist deflist-row-wrap'), h('div', { class: 'chart-box', testid: 'earnings-chart' }));
    } else {
      replace(earningsBox.querySelector('.deflist'), ...defList(items).childNodes);
    }
    const box = earningsBox.querySelector('.chart-box');
    if (earnings30 && box) {
      if (!earningsChart) earningsChart = usageChart(box, { by: 'day', currency: cur(), trafficLabel: 'Carried', moneySeries: [['earned_micros', 'Earned', '--chart-4']], height: 200 });
      earningsChart.update(earnings30);
    }
  }
  cleanups.push(() => earningsChart && earningsChart.destroy());
  function renderDevices(list) {
    devices = list;
    renderEarnings();
    if (!list.length) {
      replace(devicesBody, emptyState({
        title: 'No devices yet — pair one to start earning',
        text: 'Install the Traffix app on an Android phone (or run traffix node on Linux), then choose “Pair a device” and scan the code.',
        action: button('Pair a device', { kind: 'primary', testid: 'devices-empty-pair', onClick: () => pair() }),
        testid: 'devices-empty',
        iconName: 'phone',
      }));
      return;
    }
    const sorted = [...list].sort((a, b) => Number(b.online) - Number(a.online) || String(a.vip).localeCompare(String(b.vip), 'en', { numeric: true }));
    replace(devicesBody, dataTable({
      testid: 'devices-table',
      caption: 'My devices',
      rows: sorted,
      rowAttrs: (d) => ({ testid: `device-row-${d.vip}`, class: [d.banned && 'row-banned', !d.online && 'row-offline'] }),
      columns: [
        { label: 'Device', cell: (d) => h('span', null, h('span', { class: 'strong' }, d.model || 'Device'), h('span', { class: 'sub' }, [d.os, `paired ${relative(d.paired_at)}`].filter(Boolean).join(' · '))) },
        { label: 'vIP', cell: (d) => h('span', { class: 'mono' }, d.vip) },
        { label: 'Status', cell: (d) => h('span', null, nodeStatus(d, `device-status-${d.vip}`), d.banned ? [' ', badge('banned', 'bad')] : null, onlineFor(d) ? h('span', { class: 'sub' }, onlineFor(d)) : null, !d.online && d.last_seen ? h('span', { class: 'sub' }, timeEl(d.last_seen, `seen ${relative(d.last_seen)}`)) : null, d.banned && d.ban_reason ? h('span', { class: 'sub' }, d.ban_reason) : null) },
        { label: 'Quality', cell: (d) => h('span', null, qualityBadge(d, `device-quality-${d.vip}`), qualityReasons(d, `device-reasons-${d.vip}`)) },
        { label: 'Country', cell: (d) => countryCell(d.country) },
        { label: 'Trust', cell: (d) => trustCell(d, `device-trust-${d.vip}`) },
        { label: 'Streams', num: true, cell: (d) => (d.online ? count(d.active_streams || 0) : null) },
        { label: 'Battery', cell: (d) => battery(d.battery_pct, d.charging) },
        { label: 'Network', cell: (d) => network(d.network) },
        { label: 'Carried today', num: true, cell: (d) => bytes(d.bytes_today || 0) },
        { label: 'Earned today', num: true, cell: (d) => h('span', { testid: `device-earned-${d.vip}` }, money(d.earned_today_micros || 0, cur())) },
        list.some((d) => caps(d)) ? { label: 'Limits', cell: (d) => caps(d) } : null,
      ].filter(Boolean),
    }));
  }
  const reloadDevices = loader(devicesBody, () => api.get('/me/devices'), renderDevices, { testid: 'devices-error', quiet: true });
  async function loadEarnings() {
    try {
      earnings30 = await api.get(`/me/earnings${api.qs({ by: 'day', last: 30 })}`);
      if (main.isConnected) renderEarnings();
    } catch { /* the device list still shows today's earnings */ }
  }

  async function pair() {
    let result;
    try {
      result = await busy(pairBtn, () => api.post('/me/pair'));
    } catch (e) {
      toast(`Could not create a pairing code: ${e.reason || e.message}`, { type: 'error' });
      return;
    }
    await pairDialog(result);
    reloadDevices();
  }

  /* ---------- withdrawals ---------- */
  const wAmount = field({ label: 'Amount', testid: 'withdraw-amount', required: true, inputmode: 'decimal', autocomplete: 'off', placeholder: '12.50', hint: 'Like 12.50: a dot before at most 6 decimals.' });
  const wDest = field({ label: 'Pay to', testid: 'withdraw-destination', required: true, autocomplete: 'off', placeholder: 'IBAN, PayPal address…', maxlength: '200', hint: 'Where the operator should send the money.' });
  const wError = h('p', { class: 'form-error', role: 'alert', testid: 'withdraw-error', hidden: true });
  const wSubmit = button('Request withdrawal', { kind: 'primary', type: 'submit', testid: 'withdraw-submit' });
  const wAvail = h('p', { class: 'muted small', testid: 'withdraw-available' });
  const wMin = h('p', { class: 'muted small', testid: 'withdraw-minimum' });
  const wForm = h('form', { class: 'withdraw-form', testid: 'withdraw-form', novalidate: true }, wAvail, wMin, wAmount, wDest, wError, wSubmit);
  const wList = h('div', { testid: 'me-withdrawals' });
  const payout = payoutCard({ cur, onProfile: (p) => { if (p.method && !wDest.input.value.trim()) wDest.input.value = `${p.method}: ${p.details}`; } });
  grid.append(payout);
  grid.append(card('Withdrawals', { testid: 'withdrawals-card', cls: 'span-2' },
    h('div', { class: 'split' },
      h('div', null, h('p', { class: 'muted small' }, 'Earnings from your devices can be paid out. The amount is set aside at once; the operator sends the money outside Traffix and marks the request approved (or rejects it with a reason, and the amount returns to your balance).'), wForm),
      wList)));
  const minPayout = () => (me && me.min_payout_micros != null ? toMicros(me.min_payout_micros) : null);
  function renderAvail() {
    setText(wAvail, me ? `Available to withdraw: ${money(me.available_micros, cur())}` : '');
    const min = minPayout();
    setText(wMin, min != null ? `The smallest withdrawal is ${money(min, cur())}.` : '');
    wMin.hidden = min == null;
  }
  wForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    wError.hidden = true;
    const fail = (msg, input) => { wError.textContent = msg; wError.hidden = false; if (input) input.focus(); };
    const a = parseAmount(wAmount.input.value);
    if (!a.ok) return fail(a.message, wAmount.input);
    if (a.micros === 0n) return fail('Enter an amount greater than zero, like 12.50.', wAmount.input);
    if (minPayout() != null && a.micros < minPayout()) return fail(`The smallest withdrawal is ${money(minPayout(), cur())}.`, wAmount.input);
    if (me && a.micros > toMicros(me.available_micros)) return fail(`You can withdraw at most ${money(me.available_micros, cur())}.`, wAmount.input);
    const dest = wDest.input.value.trim();
    if (!dest) return fail('Say where the money should be sent.', wDest.input);
    const ok = await confirmDialog({
      title: 'Request this withdrawal?',
      message: h('div', null,
        defList([
          ['Amount', h('strong', { testid: 'withdraw-confirm-amount' }, money(a.micros, cur()))],
          ['Pay to', dest],
          ['Available now', h('span', { testid: 'withdraw-confirm-before' }, money(me.available_micros, cur()))],
          ['Available after', h('strong', { testid: 'withdraw-confirm-after' }, money(toMicros(me.available_micros) - a.micros, cur()))],
        ]),
        h('p', { class: 'muted small' }, 'The amount leaves your available balance now; if the operator rejects the request, it comes back.')),
      confirmLabel: 'Request withdrawal',
      testid: 'withdraw-confirm-dialog',
      onConfirm: () => api.post('/me/withdrawals', { amount: a.text, destination: dest }),
    });
    if (!ok) return;
    toast('Withdrawal requested. The operator will review it.', { type: 'success' });
    wAmount.input.value = '';
    reloadWithdrawals();
    refreshMe();
    reloadLedger();
  });
  const reloadWithdrawals = loader(wList, () => api.get('/me/withdrawals'), (rows) => {
    replace(wList, withdrawalsTable(rows, {
      currency: cur(),
      testid: 'me-withdrawals-table',
      rowPrefix: 'me-withdrawal-row',
      empty: emptyState({ title: 'No withdrawals yet', text: 'Your requests and their status appear here.', testid: 'me-withdrawals-empty', iconName: 'withdrawals' }),
    }));
  }, { testid: 'me-withdrawals-error' });

  /* ---------- recent connections ---------- */
  const sBody = h('div', { testid: 'me-sessions' });
  grid.append(card('Recent connections', { testid: 'me-sessions-card', cls: 'span-2' }, sBody));
  const reloadSessions = loader(sBody, () => api.get(`/me/sessions${api.qs({ limit: 25 })}`), (rows) => {
    replace(sBody, sessionsTable(rows, {
      currency: cur(),
      mine: true,
      testid: 'me-sessions-table',
      rowPrefix: 'me-session-row',
      empty: emptyState({ title: 'No connections yet', text: 'Use the proxy with the credentials above; each connection shows here with its bytes and charge.', testid: 'me-sessions-empty', iconName: 'sessions' }),
    }));
  }, { testid: 'me-sessions-error', quiet: true });

  /* ---------- ledger ---------- */
  const csv = button('Download CSV', { kind: 'secondary', small: true, iconName: 'download', testid: 'ledger-csv' });
  csv.addEventListener('click', () => busy(csv, async () => {
    try {
      const day = new Date().toISOString().slice(0, 10);
      await api.download('/me/ledger.csv', `traffix-ledger-${me.name}-${day}.csv`);
    } catch (e) {
      toast(`Could not download the ledger: ${e.reason || e.message}`, { type: 'error' });
    }
  }));
  const lBody = h('div', { testid: 'me-ledger' });
  grid.append(card('Account history', { testid: 'me-ledger-card', cls: 'span-2', actions: [csv] },
    h('p', { class: 'muted small' }, 'Every movement of your money (the last 50; the CSV has all of it). Usage is posted when a connection ends and at least once a minute.'), lBody));
  const reloadLedger = loader(lBody, () => api.get(`/me/ledger${api.qs({ limit: 50 })}`), (rows) => {
    replace(lBody, ledgerTable(rows, {
      currency: cur(),
      me: me.name,
      testid: 'me-ledger-table',
      rowPrefix: 'me-ledger-row',
      empty: emptyState({ title: 'No transactions yet', text: 'Top-ups, usage, earnings and withdrawals appear here.', testid: 'me-ledger-empty', iconName: 'ledger' }),
    }));
  }, { testid: 'me-ledger-error', quiet: true });

  /* ---------- payments (receipts) ---------- */
  const deposits = depositsCard({ me: () => me, cur });
  grid.append(deposits);

  /* ---------- sub-users ---------- */
  const newSub = button('New sub-user', { kind: 'secondary', small: true, iconName: 'plus', testid: 'subuser-create', onClick: () => createSub() });
  const subBody = h('div', { testid: 'subusers' });
  grid.append(card('Sub-users', { testid: 'subusers-card', cls: 'span-2', actions: [newSub] },
    h('p', { class: 'muted small' }, 'Extra proxy logins for your scripts, customers or teammates. Their traffic is billed to your balance; each can have a byte cap, a stream cap and an expiry, and can be disabled at any time.'), subBody));
  const capText = (u) => (u.byte_cap == null ? `${bytes(u.bytes_used || 0)} used, no cap` : `${bytes(u.bytes_used || 0)} of ${bytes(u.byte_cap)}`);
  function subCurl(u) {
    const socks = me?.proxy?.socks5;
    return socks ? `curl --socks5-hostname '${u.name}:${u.proxy_password}@${socks}' https://example.com/` : '';
  }
  const reloadSubs = loader(subBody, () => api.get('/me/sub-users'), (rows) => {
    replace(subBody, dataTable({
      testid: 'subusers-table',
      caption: 'Sub-users',
      rows: [...rows].sort((a, b) => a.name.localeCompare(b.name)),
      rowAttrs: (u) => ({ testid: `subuser-row-${u.name}`, class: u.disabled && 'row-disabled' }),
      empty: emptyState({ title: 'No sub-users', text: 'Create one to give a separate proxy login that is billed to you.', testid: 'subusers-empty', iconName: 'users' }),
      columns: [
        { label: 'Proxy user name', cell: (u) => h('span', null, h('span', { class: 'mono strong' }, u.name), ' ', u.disabled ? badge('disabled', 'bad') : null, u.expires_at && new Date(u.expires_at) < new Date() ? badge('expired', 'warn') : null) },
        { label: 'Copy', cell: (u) => h('span', { class: 'cred-inline' }, copyButton(u.proxy_password, { testid: `copy-subuser-password-${u.name}`, label: `Copy the proxy password of ${u.name}`, what: 'Password copied', caption: 'Password' }), subCurl(u) ? copyButton(subCurl(u), { testid: `copy-subuser-curl-${u.name}`, label: `Copy a curl command for ${u.name}`, what: 'Command copied', caption: 'curl' }) : null) },
        {
          label: 'Traffic',
          cell: (u) => {
            const pct = u.byte_cap ? Math.min(100, Math.round(((u.bytes_used || 0) / u.byte_cap) * 100)) : null;
            return h('span', { testid: `subuser-usage-${u.name}` }, capText(u), pct == null ? null : h('span', { class: `meter ${pct >= 90 ? 'meter-bad' : pct >= 70 ? 'meter-warn' : ''}`, role: 'img', 'aria-label': `${pct}% of the cap used` }, h('span', { class: 'meter-fill', style: { width: `${pct}%` } })));
          },
        },
        { label: 'Streams', num: true, cell: (u) => (u.max_streams == null ? 'no cap' : count(u.max_streams)) },
        { label: 'Expires', cell: (u) => (u.expires_at ? timeEl(u.expires_at, dateTime(u.expires_at)) : 'never') },
        {
          label: 'Actions',
          hideLabel: true,
          class: 'actions',
          cell: (u) => h('div', { class: 'row-actions' },
            u.disabled
              ? button('Enable', { kind: 'secondary', small: true, testid: `subuser-enable-${u.name}`, onClick: () => subAction(u, 'enable') })
              : button('Disable', { kind: 'secondary', small: true, testid: `subuser-disable-${u.name}`, onClick: () => subAction(u, 'disable') }),
            button('New password', { kind: 'secondary', small: true, testid: `subuser-rotate-${u.name}`, onClick: () => subAction(u, 'proxy-password') }),
            button('Delete', { kind: 'danger-ghost', small: true, testid: `subuser-delete-${u.name}`, onClick: () => deleteSub(u) })),
        },
      ],
    }));
  }, { testid: 'subusers-error' });

  async function createSub() {
    const name = field({ label: 'Proxy user name', testid: 'subuser-name', required: true, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', maxlength: '32', hint: '3–32 characters: a–z, 0–9 and _ (unique on this server).' });
    const cap = field({ label: 'Traffic cap (GB)', testid: 'subuser-cap', inputmode: 'decimal', autocomplete: 'off', placeholder: 'e.g. 5', hint: 'Both directions, 1 GB = 10⁹ bytes. Empty: no cap.' });
    const streams = field({ label: 'Streams at once', testid: 'subuser-streams', inputmode: 'numeric', autocomplete: 'off', placeholder: 'e.g. 20', hint: 'Empty: your account’s own limit.' });
    const days = field({ label: 'Valid for (days)', testid: 'subuser-days', inputmode: 'numeric', autocomplete: 'off', placeholder: 'e.g. 30', hint: 'Empty: never expires.' });
    const result = await formDialog({
      title: 'New sub-user',
      testid: 'subuser-dialog',
      fields: [name, cap, streams, days],
      submitLabel: 'Create sub-user',
      onSubmit: ({ fail }) => {
        const n = name.input.value.trim();
        if (!/^[a-z0-9_]{3,32}$/.test(n)) return fail('The name must be 3–32 characters of a–z, 0–9 and _.', name.input);
        const body = { name: n };
        if (cap.input.value.trim()) {
          const gb = parseAmount(cap.input.value, { example: '5.5' });
          if (!gb.ok) return fail(`The cap is in GB. ${gb.message}`, cap.input);
          if (gb.micros === 0n) return fail('Enter a cap greater than zero, like 5.5 (GB), or leave it empty.', cap.input);
          if (gb.micros * 1000n > BigInt(Number.MAX_SAFE_INTEGER)) return fail('That cap is too large. Enter a cap like 5.5 (GB), or leave it empty.', cap.input);
          body.byte_cap = Number(gb.micros * 1000n); // micro-GB → bytes, exact
        }
        for (const [f, key, max] of [[streams, 'max_streams', 100000], [days, 'valid_days', 3650]]) {
          const v = f.input.value.trim();
          if (!v) continue;
          if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) return fail(`Enter a whole number from 1 to ${max}.`, f.input);
          body[key] = Number(v);
        }
        return api.post('/me/sub-users', body);
      },
    });
    if (!result) return;
    toast(`Sub-user ${result.name} created`, { type: 'success' });
    reloadSubs();
  }

  async function subAction(u, action) {
    const words = { enable: ['Enable', 'enabled'], disable: ['Disable', 'disabled'], 'proxy-password': ['New password', 'has a new password'] }[action];
    const ok = await confirmDialog({
      title: `${words[0]} for ${u.name}?`,
      message: h('p', null, action === 'enable' ? `${u.name} may use the proxy again.` : action === 'disable' ? `${u.name}'s connections are refused from now on.` : `A new proxy password is made for ${u.name}; the old one stops working.`),
      confirmLabel: words[0],
      danger: action !== 'enable',
      testid: 'subuser-action-dialog',
      onConfirm: () => api.post(`/me/sub-users/${encodeURIComponent(u.name)}/${action}`),
    });
    if (ok) { toast(`${u.name} ${words[1]}`, { type: 'success' }); reloadSubs(); }
  }

  async function deleteSub(u) {
    const ok = await confirmDialog({
      title: `Delete ${u.name}?`,
      message: h('p', null, 'The login stops working at once. Its past connections stay in your history.'),
      confirmLabel: 'Delete sub-user',
      danger: true,
      testid: 'subuser-delete-dialog',
      onConfirm: () => api.del(`/me/sub-users/${encodeURIComponent(u.name)}`),
    });
    if (ok) { toast(`${u.name} deleted`, { type: 'success' }); reloadSubs(); }
  }

  /* ---------- API keys ---------- */
  const newKey = button('New API key', { kind: 'secondary', small: true, iconName: 'key', testid: 'api-key-create', onClick: () => createKey() });
  const kBody = h('div', { testid: 'api-keys' });
  grid.append(card('API keys', { testid: 'api-keys-card', cls: 'span-2', actions: [newKey] },
    h('p', { class: 'muted small' }, 'For scripts that call the Traffix API: send ', h('code', null, 'Authorization: Bearer tfx_…'), '. A key is shown once when it is created.'), kBody));
  const SCOPES = { read: 'Read only', billing: 'Billing (read, credits, withdrawal decisions)', admin: 'Everything this account may do' };
  const reloadKeys = loader(kBody, () => api.get('/me/api-keys'), (rows) => {
    replace(kBody, dataTable({
      testid: 'api-keys-table',
      caption: 'API keys',
      rows,
      rowAttrs: (k) => ({ testid: `api-key-row-${k.id}` }),
      empty: emptyState({ title: 'No API keys', text: 'Create one to use the API from a script.', testid: 'api-keys-empty', iconName: 'key' }),
      columns: [
        { label: 'Name', cell: (k) => h('span', { class: 'strong' }, k.name || '—') },
        { label: 'Scope', cell: (k) => badge(k.scope, k.scope === 'admin' ? 'warn' : 'muted') },
        { label: 'Id', cell: (k) => h('span', { class: 'mono small' }, String(k.id)) },
        { label: 'Created', cell: (k) => (k.created_at ? timeEl(k.created_at, dateTime(k.created_at)) : null) },
        rows.some((k) => k.last_used) ? { label: 'Last used', cell: (k) => (k.last_used ? timeEl(k.last_used, relative(k.last_used)) : null) } : null,
        { label: 'Actions', hideLabel: true, class: 'actions', cell: (k) => button('Delete', { kind: 'danger-ghost', small: true, testid: `api-key-delete-${k.id}`, onClick: () => deleteKey(k) }) },
      ].filter(Boolean),
    }));
  }, { testid: 'api-keys-error' });

  async function createKey() {
    const name = field({ label: 'Name', testid: 'api-key-name', required: true, placeholder: 'e.g. billing script', maxlength: '64', autocomplete: 'off' });
    const scopes = me.admin ? ['read', 'billing', 'admin'] : ['read', 'admin'];
    const scope = select({ label: 'Scope', testid: 'api-key-scope', value: 'read', options: scopes.map((s) => [s, SCOPES[s]]) });
    const result = await formDialog({
      title: 'New API key',
      testid: 'api-key-dialog',
      fields: [name, scope],
      submitLabel: 'Create key',
      onSubmit: ({ fail }) => {
        const n = name.input.value.trim();
        if (!n) return fail('Give the key a name, so you know later what uses it.', name.input);
        return api.post('/me/api-keys', { name: n, scope: scope.input.value });
      },
    });
    if (!result) return;
    reloadKeys();
    await infoDialog({
      title: 'Your new API key',
      testid: 'api-key-created-dialog',
      content: h('div', null, h('p', null, 'Copy it now: it is not shown again.'),
        h('div', { class: 'secret-row' }, h('code', { class: 'secret wrap', testid: 'api-key-created' }, result.key), copyButton(result.key, { testid: 'copy-api-key', label: 'Copy the API key', what: 'Key copied' }))),
    });
  }

  async function deleteKey(k) {
    const ok = await confirmDialog({
      title: `Delete the key “${k.name}”?`,
      message: h('p', null, 'Scripts using it are refused from now on.'),
      confirmLabel: 'Delete key',
      danger: true,
      testid: 'api-key-delete-dialog',
      onConfirm: () => api.del(`/me/api-keys/${encodeURIComponent(k.id)}`),
    });
    if (ok) { toast('API key deleted', { type: 'success' }); reloadKeys(); }
  }

  /* ---------- sign-in password ---------- */
  /* ---------- Telegram and notifications (docs/telegram.md) ---------- */
  const tgStatus = h('p', { testid: 'telegram-status' });
  const tgCode = h('p', { class: 'notice', testid: 'telegram-code', hidden: true });
  const linkBtn = button('Link Telegram', { kind: 'secondary', small: true, testid: 'telegram-link', onClick: () => busy(linkBtn, async () => {
    try {
      const c = await api.post('/me/telegram/link-code');
      replace(tgCode, h('span', null, 'Send this to the bot within 10 minutes: '), h('code', { testid: 'telegram-command' }, c.command), ' ', copyButton(c.command));
      tgCode.hidden = false;
    } catch (ex) { toast(ex.reason, { type: 'error' }); }
  }) });
  const unlinkBtn = button('Unlink', { kind: 'ghost', small: true, testid: 'telegram-unlink', onClick: async () => {
    const ok = await confirmDialog({
      title: 'Unlink Telegram?',
      message: h('p', null, 'The bot will no longer know this account; you can link it again later.'),
      confirmLabel: 'Unlink',
      danger: true,
      testid: 'telegram-unlink-dialog',
      onConfirm: () => api.del('/me/telegram'),
    });
    if (ok) { toast('Telegram unlinked', { type: 'success' }); refreshMe(); }
  } });
  const inbox = h('ul', { class: 'inbox', testid: 'inbox' });
  function renderTelegram(m) {
    const linked = m.telegram_id != null;
    setText(tgStatus, linked ? `Linked to Telegram account ${m.telegram_id}.` : 'Not linked: link it to use the bot and get notifications there.');
    linkBtn.hidden = linked;
    unlinkBtn.hidden = !linked;
    if (linked) tgCode.hidden = true;
  }
  async function reloadInbox() {
    try {
      const list = await api.get('/me/notifications?limit=20');
      if (!main.isConnected) return;
      replace(inbox, ...(list.length ? list.map((n) => h('li', { class: n.read ? 'read' : 'unread', testid: 'inbox-item' },
        timeEl(n.time), ' ', h('span', null, n.text))) : [h('li', { class: 'muted' }, 'No notifications yet.')]));
      const newest = list.find((n) => !n.read);
      if (newest) await api.post('/me/notifications/read', { upto: list[0].seq });
    } catch { /* shown again on the next refresh */ }
  }
  grid.append(card('Telegram and notifications', { testid: 'telegram-card', cls: 'span-2', actions: [linkBtn, unlinkBtn] },
    tgStatus, tgCode, inbox));

  const pwField = (label, testid, autocomplete, hint) => field({ label, testid, type: 'password', required: true, autocomplete, hint });
  const pwCurrent = pwField('Current password', 'password-current', 'current-password');
  const pwNew = pwField('New password', 'password-new', 'new-password', 'At least 8 characters.');
  const pwRepeat = pwField('Repeat the new password', 'password-repeat', 'new-password');
  const pwError = h('p', { class: 'form-error', role: 'alert', testid: 'password-error', hidden: true });
  const pwDone = h('p', { class: 'notice notice-ok', role: 'status', testid: 'password-done', hidden: true });
  const pwSubmit = button('Change password', { kind: 'primary', type: 'submit', testid: 'password-submit' });
  const pwForm = h('form', { class: 'password-form', testid: 'password-form', novalidate: true }, pwCurrent, pwNew, pwRepeat, pwError, pwDone, pwSubmit);
  grid.append(card('Sign-in password', { testid: 'password-card' },
    h('p', { class: 'muted small' }, 'The password you sign in to this dashboard with (not the proxy password). Changing it signs out your other sessions; this one stays signed in.'),
    pwForm));
  pwForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    pwError.hidden = true;
    pwDone.hidden = true;
    for (const f of [pwCurrent, pwNew, pwRepeat]) f.input.removeAttribute('aria-invalid');
    const fail = (msg, f) => {
      pwError.textContent = msg;
      pwError.hidden = false;
      if (f) { f.input.setAttribute('aria-invalid', 'true'); f.input.focus(); }
    };
    const current = pwCurrent.input.value;
    const next = pwNew.input.value;
    if (!current) return fail('Enter your current password.', pwCurrent);
    if (next.length < 8) return fail('The new password needs at least 8 characters.', pwNew);
    if (pwRepeat.input.value !== next) return fail('The two new passwords do not match: type the same one twice.', pwRepeat);
    if (next === current) return fail('The new password is the same as the current one.', pwNew);
    await busy(pwSubmit, async () => {
      try {
        const r = await api.post('/me/password', { current, new: next });
        for (const f of [pwCurrent, pwNew, pwRepeat]) f.input.value = '';
        const n = r.revoked_logins || 0;
        pwDone.textContent = `Password changed. ${n === 0 ? 'You had no other sessions to sign out' : n === 1 ? 'Your 1 other session was signed out' : `Your ${count(n)} other sessions were signed out`}; this one stays signed in.`;
        pwDone.hidden = false;
        toast('Password changed', { type: 'success' });
      } catch (ex) {
        if (ex.status === 403 && ex.code === 'invalid_credentials') return fail('The current password is wrong. Nothing was changed.', pwCurrent);
        if (ex.status === 429) {
          const wait = ex.retryAfter != null ? ` Try again in ${count(ex.retryAfter)} s.` : ` ${ex.reason}`;
          return fail(`Too many wrong passwords: changing it is paused for a while.${wait}`, null);
        }
        return fail(ex.reason || String(ex), null);
      }
    });
  });

  /* ---------- refresh ---------- */
  let meFailures = 0;
  async function refreshMe() {
    try {
      const m = await ctx.refreshMe();
      if (!main.isConnected) return;
      meFailures = 0;
      updated.dataset.state = 'live';
      updated.lastChild.textContent = 'Live';
      renderMe(m);
      renderAvail();
    } catch (e) {
      if (e.status === 401 || !main.isConnected) return;
      meFailures += 1;
      updated.dataset.state = 'retrying';
      updated.lastChild.textContent = 'Not updating';
      updated.title = e.reason || '';
      if (meFailures === 3) toast(`The balance is not updating: ${e.reason}`, { type: 'error' });
    }
  }

  renderMe(me);
  renderAvail();
  refreshMe();
  loadUsage();
  loadEarnings();
  every(2000, refreshMe);
  reloadInbox();
  every(10000, () => { reloadDevices(); reloadSessions(); reloadSubs(); reloadInbox(); });
  payout.reload();
  every(60000, () => { loadUsage(); loadEarnings(); reloadLedger(); deposits.reload(); });

  return () => {
    timers.forEach(clearInterval);
    cleanups.forEach((f) => f());
  };
}

/** The price per GB: from `price_per_gb_micros` if given, else the decimal string, exactly. */
function priceText(m) {
  const cur = m.currency || 'USD';
  if (Number.isInteger(m.price_per_gb_micros)) return money(m.price_per_gb_micros, cur);
  const p = m.price_per_gb;
  if (p == null || p === '') return '';
  const d = /^(\d+)(?:\.(\d{1,6}))?$/.exec(String(p).trim());
  if (!d || typeof p !== 'string') return `${p} ${cur}`;
  return money(BigInt(d[1]) * 1000000n + BigInt((d[2] || '').padEnd(6, '0')), cur);
}
