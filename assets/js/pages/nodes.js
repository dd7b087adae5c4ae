// Admin nodes: world map of online nodes, the node table (live from the SSE feed), ban / unban.

import * as api from '../api.js';
import * as live from '../live.js';
import { h, icon, replace } from '../dom.js';
import { bytes, count, ipKey, money, relative } from '../format.js';
import { badge, button, card, confirmDialog, dataTable, emptyState, errorState, field, formDialog, loading, pageHeader, searchBox, segmented, select, toast, timeEl } from '../ui.js';
import { worldMap } from '../map.js';
import { battery, caps, countryCell, linkified, liveBadge, network, nodeStatus, onlineFor, qualityBadge, qualityReasons, trustCell } from './common.js';

export default function nodesPage(main, ctx) {
  const status = liveBadge();
  const summary = h('p', { class: 'page-sub', testid: 'nodes-summary' }, '');
  main.append(pageHeader('Nodes', { actions: [status.el] }));
  main.querySelector('.page-head > div').append(summary);

  const mapCard = card('Where nodes are online', { testid: 'nodes-map' });
  // Without a GeoIP database no node has a country: say how to get one (the overview says).
  const geoipNote = h('div', { class: 'notice notice-geoip', role: 'note', testid: 'nodes-geoip-off', hidden: true }, icon('alert'),
    h('div', null,
      h('p', { class: 'strong' }, 'Countries are unknown: no GeoIP database is loaded'),
      h('p', null, 'Run ', h('code', null, 'traffix geoip update'), ' on the server (as the service user: ',
        h('code', null, 'sudo systemctl start traffix-geoip.service'), '). It downloads DB-IP Lite’s free country and network databases, or MaxMind GeoLite2’s with a licence key, and the server loads them without a restart; the package’s ',
        h('code', null, 'traffix-geoip.timer'), ' keeps them current every week. Nodes then show their country here, and clients can choose one with ',
        h('code', null, '-country-de'), ' in the proxy user name.'),
      h('p', null, h('a', { href: '#/settings', testid: 'nodes-geoip-settings' }, 'GeoIP settings and update status'))));
  mapCard.append(geoipNote);
  const map = worldMap(mapCard);
  // The databases' licences ask for a credit wherever their data shows (DB-IP Lite: CC BY 4.0).
  const credit = h('p', { class: 'muted small map-credit', testid: 'nodes-geoip-credit', hidden: true });
  mapCard.append(credit);
  api.get('/admin/settings').then((st) => {
    const lines = st?.geoip?.attribution || [];
    if (lines.length) { replace(credit, lines.map((l, i) => [i ? ' · ' : null, linkified(l)])); credit.hidden = false; }
  }).catch(() => {});
  main.append(mapCard);
  let nodes = null;
  let unmetRows = [];
  let unmetKey = '';
  const hasCountryDemand = () => unmetRows.some((r) => r.country && r.country !== 'any');
  const showGeoip = (ov) => {
    if (ov && typeof ov.geoip_country === 'boolean') geoipNote.hidden = ov.geoip_country;
    // The overview comes every 2 s: the map changes only when the demand did.
    const key = ov && Array.isArray(ov.unmet_demand) ? JSON.stringify(ov.unmet_demand.map((r) => [r.country, r.count])) : unmetKey;
    if (key !== unmetKey) {
      unmetKey = key;
      unmetRows = ov.unmet_demand;
      map.setUnmet(unmetRows);
      if (nodes) mapCard.hidden = nodes.length === 0 && !hasCountryDemand();
    }
  };
  showGeoip(live.latest.overview);
  if (!live.latest.overview) api.get('/admin/overview').then(showGeoip).catch(() => {});

  let filter = 'all';
  let query = '';
  let sort = 'status';
  const currency = () => ctx.me?.currency || 'USD';

  const search = searchBox({ label: 'Search nodes', testid: 'nodes-search', placeholder: 'Search vIP, owner, country, IP, model…', onInput: (q) => { query = q.toLowerCase(); render(); } });
  const filters = segmented({
    label: 'Show',
    value: filter,
    testid: 'nodes-filter',
    options: [['all', 'All', 'nodes-filter-all'], ['online', 'Online', 'nodes-filter-online'], ['offline', 'Offline', 'nodes-filter-offline'], ['flagged', 'Flagged', 'nodes-filter-flagged'], ['banned', 'Banned', 'nodes-filter-banned']],
    onChange: (v) => { filter = v; render(); },
  });
  const sorter = select({
    label: 'Sort by',
    testid: 'nodes-sort',
    value: sort,
    options: [['status', 'Online first'], ['vip', 'Virtual IP'], ['streams', 'Active streams'], ['bytes', 'Bytes today'], ['earned', 'Earned today'], ['score', 'Quality score'], ['owner', 'Owner']],
  });
  sorter.input.addEventListener('change', () => { sort = sorter.input.value; render(); });
  const body = h('div', { testid: 'nodes-table-wrap' }, loading());
  main.append(card(null, { testid: 'nodes-card' }, h('div', { class: 'toolbar' }, search, filters, sorter), body));

  function matches(n) {
    if (filter === 'online' && !(n.online && !n.banned)) return false;
    if (filter === 'offline' && (n.online || n.pause_reason)) return false;
    if (filter === 'banned' && !n.banned) return false;
    if (filter === 'flagged' && !['degraded', 'flagged'].includes(n.quality?.state)) return false;
    if (!query) return true;
    return [n.vip, n.owner, n.country, n.public_ip, n.model, n.os, n.id, n.network, n.trust].some((x) => x && String(x).toLowerCase().includes(query));
  }

  const sorters = {
    status: (a, b) => Number(b.online) - Number(a.online) || Number(a.banned) - Number(b.banned) || (b.active_streams || 0) - (a.active_streams || 0) || ipKey(a.vip) - ipKey(b.vip),
    vip: (a, b) => ipKey(a.vip) - ipKey(b.vip),
    streams: (a, b) => (b.active_streams || 0) - (a.active_streams || 0) || ipKey(a.vip) - ipKey(b.vip),
    bytes: (a, b) => (b.bytes_today || 0) - (a.bytes_today || 0),
    earned: (a, b) => (b.earned_today_micros || 0) - (a.earned_today_micros || 0),
    owner: (a, b) => String(a.owner).localeCompare(String(b.owner)) || ipKey(a.vip) - ipKey(b.vip),
    score: (a, b) => (a.quality?.score ?? 101) - (b.quality?.score ?? 101) || ipKey(a.vip) - ipKey(b.vip),
  };

  function actions(n) {
    if (n.banned) {
      return button('Unban', { kind: 'secondary', small: true, testid: `node-unban-${n.vip}`, onClick: () => unban(n) });
    }
    return h('span', { class: 'row-actions row-actions-stacked' },
      button('Quality…', { kind: 'ghost', small: true, testid: `node-quality-${n.vip}`, onClick: () => setQuality(n) }),
      button('Ban', { kind: 'danger-ghost', small: true, testid: `node-ban-${n.vip}`, onClick: () => ban(n) }));
  }

  function render() {
    if (!nodes) return;
    const online = nodes.filter((n) => n.online).length;
    const banned = nodes.filter((n) => n.banned).length;
    summary.textContent = nodes.length
      ? `${count(online)} online of ${count(nodes.length)} paired${banned ? ` · ${count(banned)} banned` : ''}`
      : 'No node has been paired yet.';
    // Shown once a node is paired, or as soon as clients asked for a country nobody serves.
    mapCard.hidden = nodes.length === 0 && !hasCountryDemand();
    map.update(nodes);
    const rows = nodes.filter(matches).sort(sorters[sort]);
    const focused = document.activeElement && body.contains(document.activeElement) ? document.activeElement.getAttribute('data-testid') : null;
    if (!nodes.length) {
      replace(body, emptyState({
        title: 'No nodes yet — pair one from your portal',
        text: 'A node is a phone or Linux box that shares its connection. Open “My account”, choose “Pair a device” and scan the code with the Traffix app, or run traffix node --pair with the link.',
        action: h('a', { class: 'btn btn-primary', href: '#/me', testid: 'nodes-empty-pair' }, 'Go to my portal'),
        testid: 'nodes-empty',
        iconName: 'nodes',
      }));
      return;
    }
    replace(body, dataTable({
      testid: 'nodes-table',
      caption: 'Nodes',
      rows,
      rowAttrs: (n) => ({ testid: `node-row-${n.vip}`, class: [n.banned && 'row-banned', !n.online && 'row-offline'] }),
      empty: emptyState({ title: 'No node matches', text: 'Change the search or the filter.', testid: 'nodes-no-match', iconName: 'nodes' }),
      columns: [
        { label: 'vIP', cell: (n) => h('span', { title: `device ${n.id}` }, h('span', { class: 'mono strong' }, n.vip), h('span', { class: 'sub' }, [n.model, n.os].filter(Boolean).join(' · ') || String(n.id || '').slice(0, 8))) },
        { label: 'Owner', cell: (n) => n.owner },
        { label: 'Country / IP', cell: (n) => h('span', null, countryCell(n.country), n.public_ip ? h('span', { class: 'sub mono', testid: `node-ip-${n.vip}` }, n.public_ip) : null) },
        { label: 'State', cell: (n) => h('span', null, nodeStatus(n, `node-status-${n.vip}`), n.banned ? h('span', { testid: `node-banned-${n.vip}` }, ' ', badge('banned', 'bad'), n.ban_reason ? h('span', { class: 'sub' }, n.ban_reason) : null) : null, n.online ? (onlineFor(n) ? h('span', { class: 'sub' }, onlineFor(n)) : null) : h('span', { class: 'sub' }, n.last_seen ? timeEl(n.last_seen, `seen ${relative(n.last_seen)}`) : 'never seen')) },
        { label: 'Streams', num: true, cell: (n) => (n.online ? h('span', { title: caps(n) || null }, count(n.active_streams || 0), n.max_streams ? h('span', { class: 'sub' }, `of ${count(n.max_streams)}`) : null) : null) },
        { label: 'Battery / network', cell: (n) => (n.battery_pct == null && !network(n.network) ? null : h('span', { testid: `node-power-${n.vip}` }, battery(n.battery_pct) || h('span', { class: 'muted' }, 'no battery'), [n.charging ? 'charging' : null, network(n.network)].some(Boolean) ? h('span', { class: 'sub' }, [n.charging ? 'charging' : null, network(n.network)].filter(Boolean).join(' · ')) : null)) },
        { label: 'Quality', cell: (n) => (n.banned ? h('span', { class: 'muted' }, '—') : h('span', { testid: `node-quality-cell-${n.vip}` }, qualityBadge(n, `node-quality-state-${n.vip}`), n.quality?.reasons?.length || n.quality?.admin ? h('details', { class: 'sub' }, h('summary', null, n.quality.reasons[0]?.code?.replaceAll('_', ' ') || 'override'), qualityReasons(n, `node-reasons-${n.vip}`)) : null)) },
        { label: 'Trust', cell: (n) => trustCell(n, `node-trust-${n.vip}`) },
        { label: 'Today', num: true, cell: (n) => h('span', { title: 'carried and earned today (UTC)' }, bytes(n.bytes_today || 0), h('span', { class: 'sub' }, money(n.earned_today_micros || 0, currency()))) },
        { label: 'Actions', hideLabel: true, class: 'actions', cell: actions },
      ],
    }));
    if (focused) {
      const el = body.querySelector(`[data-testid="${CSS.escape(focused)}"]`);
      if (el) el.focus();
    }
  }

  async function ban(n) {
    const reason = field({ label: 'Reason', testid: 'ban-reason', required: true, placeholder: 'e.g. abuse report 2026-11-26', maxlength: '500' });
    const ok = await formDialog({
      title: `Ban node ${n.vip}`,
      testid: 'ban-dialog',
      description: h('p', null, `The node of ${n.owner} is disconnected at once and cannot reconnect or pair again until it is unbanned. The reason is kept in the audit log.`),
      fields: [reason],
      submitLabel: 'Ban node',
      danger: true,
      onSubmit: async ({ fail }) => {
        const r = reason.input.value.trim();
        if (!r) return fail('Give a reason for the ban.', reason.input);
        const d = await api.post(`/admin/nodes/${encodeURIComponent(n.id)}/ban`, { reason: r });
        return d || true;
      },
    });
    if (ok) {
      toast(`Node ${n.vip} banned`, { type: 'success' });
      merge(ok);
      reload();
    }
  }

  async function setQuality(n) {
    const state = select({ label: 'State', testid: 'quality-state', value: n.quality?.admin ? n.quality.admin.state : 'auto', options: [['auto', 'Automatic (the watchdog decides)'], ['healthy', 'Healthy'], ['degraded', 'Degraded (routed last)'], ['flagged', 'Flagged (not routed)']] });
    const note = field({ label: 'Note', testid: 'quality-note', required: true, placeholder: 'e.g. checked with the owner', maxlength: '500' });
    const ok = await formDialog({
      title: `Quality of node ${n.vip}`,
      testid: 'quality-dialog',
      description: h('p', null, `Now ${n.quality ? `${n.quality.state}, score ${n.quality.score}` : 'not measured'}. A state set here stays until it is set back to automatic; the note goes to the audit log and to ${n.owner}’s portal.`),
      fields: [state, note],
      submitLabel: 'Set quality',
      onSubmit: async ({ fail }) => {
        const r = note.input.value.trim();
        if (!r) return fail('Give a note.', note.input);
        const d = await api.post(`/admin/nodes/${encodeURIComponent(n.id)}/quality`, { state: state.input.value, note: r });
        return d || true;
      },
    });
    if (ok) {
      toast(`Node ${n.vip}: quality ${ok.quality_state || 'set'}`, { type: 'success' });
      merge(ok);
      reload();
    }
  }

  async function unban(n) {
    const ok = await confirmDialog({
      title: `Unban node ${n.vip}?`,
      message: h('p', null, `The node of ${n.owner} may connect again.${n.ban_reason ? ` It was banned for: “${n.ban_reason}”.` : ''}`),
      confirmLabel: 'Unban node',
      testid: 'unban-dialog',
      onConfirm: () => api.post(`/admin/nodes/${encodeURIComponent(n.id)}/unban`),
    });
    if (ok) {
      toast(`Node ${n.vip} unbanned`, { type: 'success' });
      reload();
    }
  }

  function merge(d) {
    if (!nodes || !d || typeof d !== 'object' || !d.id) return;
    const i = nodes.findIndex((x) => x.id === d.id);
    if (i >= 0) nodes[i] = { ...nodes[i], ...d };
    render();
  }

  async function reload() {
    try {
      const list = await api.get('/admin/nodes');
      if (!main.isConnected) return;
      nodes = list;
      render();
    } catch (e) {
      if (e.status === 401 || !main.isConnected) return;
      if (!nodes) replace(body, errorState(e, reload, 'nodes-error'));
      else toast(`Could not refresh the nodes: ${e.reason}`, { type: 'error' });
    }
  }

  if (live.latest.nodes) { nodes = live.latest.nodes; render(); }
  reload();
  const unsub = live.subscribe((kind, value) => {
    if (kind === 'nodes') { nodes = value; render(); }
    else if (kind === 'overview') showGeoip(value);
    else if (kind === 'status') status.set(value);
  });
  // Offline times ("seen 3 min ago") age: re-render each minute.
  const timer = setInterval(render, 60000);
  return () => { unsub(); clearInterval(timer); };
}

