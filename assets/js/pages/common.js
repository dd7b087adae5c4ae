// Pieces shared by several pages.

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { badge, busy, button, copyButton, infoDialog, toast } from '../ui.js';
import { bytes, countryName, dateTime, duration, titleCase, zoneName } from '../format.js';

/** The live-feed indicator: Live / Connecting / Reconnecting in N s. */
export function liveBadge() {
  const dot = h('span', { class: 'live-dot', 'aria-hidden': 'true' });
  const text = h('span', null, 'Connecting…');
  const el = h('span', { class: 'live-badge', testid: 'live-status', role: 'status', 'data-state': 'connecting' }, dot, text);
  let timer = null;
  return {
    el,
    set(st) {
      clearInterval(timer);
      el.dataset.state = st.state;
      if (st.state === 'live') text.textContent = 'Live';
      else if (st.state === 'retrying') {
        const until = (st.at || Date.now()) + (st.inMs || 0);
        const tick = () => {
          const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
          text.textContent = left ? `Reconnecting in ${left} s` : 'Reconnecting…';
        };
        tick();
        timer = setInterval(tick, 1000);
      } else if (st.state === 'closed') text.textContent = 'Offline';
      else text.textContent = 'Connecting…';
    },
  };
}

/**
 * Online (serving) / draining / paused / offline, as one badge. A node that paused itself and
 * closed its tunnel (a cap, its schedule, its owner's hand) is "paused (reason)", not offline.
 */
export function nodeStatus(n, testid) {
  let b;
  const why = n.pause_reason ? PAUSE_TEXT[n.pause_reason] || PAUSE_TEXT.other : null;
  if (!n.online && n.pause_reason) b = badge(`paused (${why})`, 'warn');
  else if (!n.online) b = badge('offline', 'muted');
  else if (!n.state || n.state === 'serving') b = badge('online', 'ok');
  else if (n.state === 'paused' && why) b = badge(`paused (${why})`, 'warn');
  else b = badge(n.state, 'warn');
  const title = n.online ? `online, ${n.state || 'serving'}` : n.pause_reason ? `paused (${why}): its tunnel is closed until that clears` : 'offline';
  return h('span', { class: 'badges', testid, title }, b);
}

const QUALITY_KIND = { healthy: 'ok', degraded: 'warn', flagged: 'bad', banned: 'bad' };
const PAUSE_TEXT = {
  not_on_wifi: 'Wi-Fi only, and not on Wi-Fi',
  daily_cap: 'daily data cap reached',
  monthly_cap: 'monthly data cap reached',
  not_charging: 'shares only while charging',
  battery_low: 'battery below its floor',
  outside_schedule: 'outside its schedule',
  by_owner: 'paused by its owner',
  data_saver: 'Data Saver is on, on a metered network',
  battery_saver: 'Battery Saver is on',
  draining: 'stopping',
  other: 'paused by a setting of the app',
};

/** The quality watchdog's state and score as one badge ("healthy 92"), docs/watchdog.md. */
export function qualityBadge(d, testid) {
  const q = d.quality;
  if (!q) return h('span', { class: 'muted', testid }, 'not measured yet');
  const label = q.unresponsive ? 'not answering' : q.state;
  const kind = q.unresponsive ? 'warn' : QUALITY_KIND[q.state] || 'muted';
  return h('span', { class: 'badges', testid, title: `score ${q.score} of 100${q.high_tier ? ' · high tier' : ''}` }, badge(label, kind), h('span', { class: 'sub' }, `score ${q.score}${q.high_tier ? ' · high tier' : ''}`));
}

/** Why a device has its state and what would raise its score: one line per reason. */
export function qualityReasons(d, testid) {
  const q = d.quality;
  const lines = [];
  if (d.online && d.state === 'paused') lines.push(h('li', null, h('span', { class: 'strong' }, 'Paused: '), PAUSE_TEXT[q?.pause_reason] || PAUSE_TEXT.other, '. No traffic until it serves again.'));
  if (q?.admin) lines.push(h('li', null, h('span', { class: 'strong' }, `Set to ${q.admin.state} by the operator: `), q.admin.note));
  for (const r of q?.reasons || []) {
    lines.push(h('li', { testid: testid ? `${testid}-${r.code}` : null }, h('span', { class: 'strong' }, `${r.detail}. `), h('span', { class: 'muted' }, r.hint)));
  }
  if (!lines.length) return null;
  const lead = q && (q.state === 'flagged' || q.state === 'banned') ? 'No traffic because:' : q && (q.state === 'degraded' || q.unresponsive) ? 'Less traffic because:' : 'Notes:';
  return h('div', { class: 'quality-reasons', testid }, h('p', { class: 'small' }, lead), h('ul', { class: 'small' }, lines));
}

/**
 * Device trust (docs/trust.md): hardware / software / none as a badge, the attested security
 * level and the first reason under it (all reasons on hover). Admin views also flag an
 * attestation key shared by more accounts than `trust.shared_key_accounts`, and list the
 * emulator hints the app reported (the portal's device objects carry neither).
 */
export function trustCell(d, testid) {
  const level = d.trust || 'none';
  const kind = level === 'hardware' ? 'ok' : level === 'software' ? 'warn' : 'muted';
  const reasons = d.trust_reasons || [];
  const sub = reasons[0] || (level === 'hardware' && d.security_level === 'strongbox' ? 'StrongBox' : level === 'hardware' ? 'TEE' : level === 'none' ? 'no attestation' : null);
  const title = reasons.length ? reasons.join('\n') : `device trust: ${level}`;
  return h('span', { class: 'badges', testid, title },
    badge(level, kind),
    d.shared_attestation_key ? [' ', badge('shared key', 'bad', testid ? `${testid}-shared` : undefined)] : null,
    sub ? h('span', { class: 'sub' }, sub) : null,
    d.shared_attestation_key ? h('span', { class: 'sub' }, `attestation key on ${d.attestation_key_accounts} accounts`) : null,
    d.emulator_hints && d.emulator_hints.length ? h('span', { class: 'sub', title: 'emulator hints the app reported: weak signals, never a ban by themselves' }, `emulator hints: ${d.emulator_hints.join(', ')}`) : null);
}

export function countryCell(code) {
  if (!code) return h('span', { class: 'muted' }, 'unknown');
  return h('abbr', { class: 'country-cell', title: countryName(code) }, code.toUpperCase());
}

export function battery(pct, charging) {
  if (pct == null) return null;
  const cls = pct <= 15 ? 'bad' : pct <= 35 ? 'warn' : 'ok';
  return h('span', { class: `battery battery-${cls}`, title: charging ? 'charging' : null }, h('span', { class: 'battery-bar', 'aria-hidden': 'true' }, h('span', { class: 'battery-fill', style: { width: `${Math.max(0, Math.min(100, pct))}%` } })), ` ${pct}%`, charging ? h('span', { class: 'charging' }, ' · charging') : null);
}

/** "online for 2 h 5 min" from the node's connection time (uptime_s or connected_at). */
export function onlineFor(n) {
  if (!n.online) return null;
  let secs = Number.isFinite(n.uptime_s) ? n.uptime_s : null;
  if (secs == null && n.connected_at) secs = (Date.now() - new Date(n.connected_at).getTime()) / 1000;
  return secs == null || !Number.isFinite(secs) ? null : `for ${duration(secs)}`;
}

/** The node owner's data caps as reported by the node: "1.2 GB of 5 GB today". */
export function caps(n) {
  const parts = [];
  if (n.daily_cap_bytes) parts.push(`${bytes(n.node_bytes_today || 0)} of ${bytes(n.daily_cap_bytes)} today`);
  if (n.monthly_cap_bytes) parts.push(`${bytes(n.node_bytes_month || 0)} of ${bytes(n.monthly_cap_bytes)} this month`);
  if (n.max_streams) parts.push(`at most ${n.max_streams} streams`);
  return parts.length ? parts.join(' · ') : null;
}

export function network(n) {
  if (!n || n === 'unknown') return null;
  return titleCase(n);
}

/** A ledger account ("user:alice", "platform:fees") as a readable chip. */
export function account(key) {
  if (!key) return '—';
  const [kind, name] = String(key).split(/:(.*)/s);
  const labels = {
    'external:deposits': 'Deposits (outside)',
    'external:payouts': 'Payouts (outside)',
    'platform:fees': 'Platform fees',
    'platform:adjustments': 'Adjustments (platform)',
    'pending:payouts': 'Pending payouts',
  };
  if (kind === 'user') return h('span', { class: 'acct acct-user', title: key }, name);
  return h('span', { class: 'acct acct-system', title: key }, labels[key] || key);
}

const KIND_WORDS = {
  deposit: 'Deposit',
  usage: 'Usage',
  usage_fee: 'Usage (fee)',
  payout_request: 'Withdrawal requested',
  payout: 'Withdrawal paid',
  payout_reversal: 'Withdrawal rejected',
  adjustment: 'Adjustment',
  reversal: 'Reversal',
};

/** A ledger transfer's kind ("deposit", "adjustment") in words. */
export function kindLabel(kind) {
  return KIND_WORDS[kind] || titleCase(kind || '');
}

/** The transfers an admin may reverse: deposits and adjustments (once; the API says if it was). */
export function reversible(t) {
  return t.kind === 'deposit' || t.kind === 'adjustment';
}

/**
 * The pairing dialog for a `POST …/pair` answer: the QR code (an <img> of the SVG), the link,
 * the code, the Linux command and a live expiry countdown. `who` names the account in the steps.
 */
export async function pairDialog(result, { who = 'your account' } = {}) {
  const img = h('img', { class: 'qr', testid: 'pair-qr', alt: 'QR code of the pairing link', src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(result.qr_svg || '')}` });
  const expiry = h('p', { class: 'pair-expiry', testid: 'pair-expiry', role: 'status' });
  const cmd = `traffix node --pair '${result.link}' --state ~/.traffix-node.json`;
  const until = new Date(result.expires_at).getTime();
  const tick = () => {
    const left = Math.round((until - Date.now()) / 1000);
    if (left <= 0) {
      expiry.textContent = 'This code has expired. Close this and create a new one.';
      expiry.classList.add('neg');
      clearInterval(t);
      return;
    }
    expiry.textContent = `Valid for ${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')} more (until ${dateTime(result.expires_at)}). It works once.`;
  };
  const t = setInterval(tick, 1000);
  tick();
  await infoDialog({
    title: 'Pair a device',
    testid: 'pair-dialog',
    content: h('div', { class: 'pair' },
      h('div', { class: 'qr-frame' }, img),
      h('div', { class: 'pair-text' },
        h('ol', { class: 'steps' },
          h('li', null, 'Open the Traffix app on the phone and choose to pair it.'),
          h('li', null, `Scan this code. The phone joins ${who} and starts earning when it shares its connection.`)),
        expiry,
        h('p', { class: 'label' }, 'Pairing link'),
        h('div', { class: 'secret-row' }, h('code', { class: 'secret wrap', testid: 'pair-link' }, result.link), copyButton(result.link, { testid: 'copy-pair-link', label: 'Copy the pairing link', what: 'Link copied' })),
        result.code ? h('p', { class: 'small muted' }, 'Code: ', h('code', { testid: 'pair-code' }, result.code)) : null,
        h('p', { class: 'label' }, 'On Linux'),
        h('div', { class: 'secret-row' }, h('code', { class: 'secret wrap', testid: 'pair-command' }, cmd), copyButton(cmd, { testid: 'copy-pair-command', label: 'Copy the Linux command', what: 'Command copied' })))),
  });
  clearInterval(t);
}

/** Ends of a session, in words. */
export function endReason(s) {
  if (s.live) return badge('live', 'live');
  if (!s.end_reason) return '—';
  const words = { closed: 'closed', billing: 'out of balance', node_gone: 'node left' };
  return h('span', { title: s.end_reason }, words[s.end_reason] || s.end_reason.replace(/_/g, ' '));
}

export function statusBadge(status) {
  const kind = { pending: 'warn', approved: 'ok', rejected: 'bad' }[status] || 'muted';
  return badge(status, kind);
}

/** Sets children only when the text changed, to keep focus and selection in live tables. */
export function setText(el, text) {
  if (el.textContent !== text) replace(el, text);
}

/* ---------- date range, pages and CSV of the admin lists ---------- */

/** A local day ("2026-12-02") as a Date at its midnight plus `plusDays`, or null. */
function localDay(day, plusDays = 0) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day || '');
  return m ? new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + plusDays) : null;
}

/** The instant a local day starts, as an ISO string, or '' for ''. */
function dayStart(day) {
  const d = localDay(day);
  return d ? d.toISOString() : '';
}

/** The last second of a local day (the API's `until` is inclusive), or '' for ''. */
function dayEnd(day) {
  const d = localDay(day, 1);
  return d ? new Date(d.getTime() - 1000).toISOString() : '';
}

/**
 * From / to day pickers, whole days in the browser's zone. `.query()` gives {since, until} for
 * the API, both inclusive: from the start of "from" to the last second of "to".
 */
export function dateRange({ testid, from = '', to = '', onChange }) {
  const pick = (label, value, id) => {
    const input = h('input', { type: 'date', class: 'input input-date', id: `${testid}-${id}-input`, testid: `${testid}-${id}`, value });
    input.addEventListener('change', () => onChange());
    return h('div', { class: 'field field-inline' }, h('label', { class: 'label', for: `${testid}-${id}-input` }, label), input);
  };
  const f = pick('From', from, 'from');
  const t = pick('To', to, 'to');
  const el = h('div', { class: 'date-range', role: 'group', 'aria-label': `Date range (${zoneName()})`, testid }, f, t,
    h('span', { class: 'muted small', title: 'Days start at midnight in this time zone' }, zoneName()));
  const value = (x) => x.querySelector('input').value;
  return {
    el,
    from: () => value(f),
    to: () => value(t),
    query: () => ({ since: dayStart(value(f)), until: dayEnd(value(t)) }),
    describe: () => {
      const a = value(f);
      const b = value(t);
      return a && b ? `from ${a} to ${b}` : a ? `from ${a}` : b ? `up to ${b}` : '';
    },
  };
}

/**
 * Newer / Older buttons over a cursor: `before()` is the cursor of the page shown (undefined on
 * the first); `update(rows, limit, key)` after each load; `reset()` when the filter changes.
 */
export function pager({ testid, onChange }) {
  const stack = [];
  const label = h('span', { class: 'muted small', testid: `${testid}-page`, 'aria-live': 'polite' }, 'Page 1');
  const newer = button('Newer', { kind: 'secondary', small: true, testid: `${testid}-newer`, disabled: true, onClick: () => { stack.pop(); sync(); onChange(); } });
  const older = button('Older', { kind: 'secondary', small: true, testid: `${testid}-older`, disabled: true, onClick: () => { stack.push(next); sync(); onChange(); } });
  let next;
  const sync = () => {
    newer.disabled = stack.length === 0;
    label.textContent = `Page ${stack.length + 1}`;
  };
  return {
    el: h('div', { class: 'pager', testid }, newer, label, older),
    before: () => stack[stack.length - 1],
    reset: () => { stack.length = 0; next = undefined; sync(); },
    /** `key(row)` is the row's cursor value (a transfer's seq, a session's id). */
    update(rows, limit, key) {
      next = rows.length ? rows.reduce((m, r) => Math.min(m, key(r)), Infinity) : undefined;
      older.disabled = rows.length < limit || next === undefined;
      sync();
    },
  };
}

/** A "Download CSV" button for an admin export; `query()` gives the filter at click time. */
export function csvButton({ testid, path, name, query }) {
  const b = button('Download CSV', { kind: 'secondary', small: true, iconName: 'download', testid });
  b.addEventListener('click', () => busy(b, async () => {
    const q = query();
    const parts = [name, q.user, q.nodeIp, q.fromDay && q.toDay ? `${q.fromDay}_${q.toDay}` : q.fromDay ? `from-${q.fromDay}` : q.toDay ? `to-${q.toDay}` : new Date().toISOString().slice(0, 10)];
    try {
      await api.download(`${path}${api.qs({ user: q.user, node_ip: q.nodeIp, since: q.since, until: q.until })}`, `${parts.filter(Boolean).join('-')}.csv`);
    } catch (e) {
      toast(`Could not download the CSV: ${e.reason || e.message}`, { type: 'error' });
    }
  }));
  return b;
}

/**
 * The rows `fetch()` gets, or `{ unknownUser }` when the user filter names nobody (the API's 404
 * `not_found`): a name still being typed is not an error panel.
 */
export async function rowsOrUnknownUser(user, fetch) {
  try {
    return await fetch();
  } catch (e) {
    if (user && e && e.status === 404 && e.code === 'not_found') return { unknownUser: user };
    throw e;
  }
}

/** The page sizes offered, with `limit` among them when a link asked for another one. */
export function perPage(options, limit) {
  return options.some(([v]) => v === limit) ? options : [...options, [limit, String(limit)]].sort((a, b) => a[0] - b[0]);
}

/** A page size from a link (1–1000, what the API allows), else `fallback`. */
export function pageSize(text, fallback) {
  const n = Math.trunc(Number(text));
  return n >= 1 ? Math.min(1000, n) : fallback;
}

/** Text with its https:// URLs as links (a licence's credit line): nothing is parsed as HTML. */
export function linkified(text) {
  return String(text).split(/(https:\/\/[^\s()]+)/).map((part, i) => (i % 2
    ? h('a', { href: part, target: '_blank', rel: 'noopener noreferrer' }, part)
    : part));
}
