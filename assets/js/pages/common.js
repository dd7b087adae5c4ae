// Pieces shared by several pages.

import { h, replace } from '../dom.js';
import { badge } from '../ui.js';
import { bytes, countryName, duration, titleCase } from '../format.js';

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

/** Online (serving) / draining / paused / offline, as one badge. */
export function nodeStatus(n, testid) {
  let b;
  if (!n.online) b = badge('offline', 'muted');
  else if (!n.state || n.state === 'serving') b = badge('online', 'ok');
  else b = badge(n.state, 'warn');
  return h('span', { class: 'badges', testid, title: n.online ? `online, ${n.state || 'serving'}` : 'offline' }, b);
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
    'pending:payouts': 'Pending payouts',
  };
  if (kind === 'user') return h('span', { class: 'acct acct-user', title: key }, name);
  return h('span', { class: 'acct acct-system', title: key }, labels[key] || key);
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
