// Admin overview: live KPIs from the SSE feed, live throughput, traffic and revenue history.

import * as api from '../api.js';
import * as live from '../live.js';
import { h, replace } from '../dom.js';
import { bytes, bits, count, money, moneyCents, rate } from '../format.js';
import { card, dataTable, emptyState, errorState, kpi, pageHeader, segmented, defList } from '../ui.js';
import { throughputChart, usageChart } from '../chart.js';
import { liveBadge } from './common.js';

export default function overviewPage(main, ctx) {
  const status = liveBadge();
  main.append(pageHeader('Overview', { subtitle: 'The whole network, live.', actions: [status.el] }));

  const k = {
    nodes: kpi({ label: 'Nodes online', testid: 'kpi-nodes-online', href: '#/nodes' }),
    streams: kpi({ label: 'Active streams', testid: 'kpi-streams', href: '#/sessions' }),
    throughput: kpi({ label: 'Throughput now', testid: 'kpi-throughput', sub: 'measuring…' }),
    revenue: kpi({ label: 'Revenue today', testid: 'kpi-revenue-today' }),
    pending: kpi({ label: 'Pending withdrawals', testid: 'kpi-pending-withdrawals', href: '#/withdrawals' }),
    users: kpi({ label: 'Users', testid: 'kpi-users', href: '#/users' }),
  };
  const grid = h('div', { class: 'kpi-grid', testid: 'overview-kpis' }, Object.values(k));
  const kpiError = h('div');
  main.append(kpiError, grid);

  function render(ov) {
    replace(kpiError);
    const cur = ov.currency || 'USD';
    k.nodes.set(`${count(ov.nodes_online)} / ${count(ov.nodes_total)}`, ov.nodes_total ? `${count(ov.nodes_total - ov.nodes_online)} offline` : 'No nodes paired yet');
    k.streams.set(count(ov.streams_active), 'client connections carried now');
    k.revenue.set(moneyCents(ov.revenue_today_micros, cur), `${bytes(ov.traffic_today_bytes)} relayed today (UTC)`, `exactly ${money(ov.revenue_today_micros, cur)}`);
    k.pending.set(count(ov.pending_withdrawals), ov.pending_withdrawals ? `${moneyCents(ov.pending_withdrawals_micros, cur)} to decide` : 'nothing to decide');
    k.users.set(count(ov.users));
    if (Number.isFinite(ov.nodes_healthy)) {
      quality.textContent = `Online nodes by quality: ${count(ov.nodes_healthy)} healthy · ${count(ov.nodes_degraded || 0)} degraded (routed last) · ${count(ov.nodes_flagged || 0)} flagged (not routed).`;
    }
    renderUnmet(ov.unmet_demand || []);
    const t = live.latest.throughput;
    if (t) k.throughput.set(rate(t.up + t.down), `↓ ${bits(t.down)} · ↑ ${bits(t.up)}`);
  }

  // Requests that found no node: where to recruit nodes (docs/watchdog.md, "Unmet demand").
  const REASONS = { no_node: 'no node at all', all_busy: 'all nodes busy', all_paused: 'all paused or at their caps', all_flagged: 'all flagged or not answering' };
  const unmetBody = h('div', { testid: 'unmet-body' });
  const quality = h('p', { class: 'small', testid: 'overview-quality' });
  main.append(card('Supply and demand', { testid: 'unmet-card' }, quality, h('p', { class: 'muted small' }, 'Client requests that found no node since the server started, by the country asked for and why: where to recruit nodes.'), unmetBody));
  function renderUnmet(rows) {
    replace(unmetBody, dataTable({
      testid: 'unmet-table',
      caption: 'Unmet demand',
      rows,
      rowAttrs: (r) => ({ testid: `unmet-row-${r.country}-${r.reason}` }),
      empty: emptyState({ title: 'Every request found a node', text: 'Requests that find no node are counted here by country.', testid: 'unmet-empty', iconName: 'nodes' }),
      columns: [
        { label: 'Country', cell: (r) => (r.country === 'any' ? h('span', { class: 'muted' }, 'any') : h('span', { class: 'mono' }, r.country)) },
        { label: 'Why', cell: (r) => REASONS[r.reason] || r.reason },
        { label: 'Requests', num: true, cell: (r) => count(r.count) },
      ],
    }));
  }

  // Live throughput chart.
  const tpBody = h('div', { class: 'chart-box', testid: 'throughput-chart' });
  const tpNote = h('p', { class: 'muted small' }, 'Bytes relayed per second, from the live feed (the last few minutes).');
  main.append(card('Throughput', { testid: 'throughput-card' }, tpNote, tpBody));
  const tp = throughputChart(tpBody);

  // Traffic and revenue history.
  let by = 'hour';
  const usageBody = h('div', { class: 'chart-box', testid: 'usage-chart' });
  const totals = h('div', { testid: 'usage-totals' });
  const range = segmented({
    label: 'Period',
    value: by,
    testid: 'usage-range',
    options: [['hour', 'Last 24 hours', 'usage-range-24h'], ['day', 'Last 30 days', 'usage-range-30d']],
    onChange: (v) => { by = v; loadUsage(); },
  });
  main.append(card('Traffic and revenue', { testid: 'usage-card', actions: [range] }, usageBody, totals));
  let chart = null;
  let cur = 'USD';
  let usageSeq = 0;
  async function loadUsage() {
    const my = ++usageSeq;
    try {
      const u = await api.get(`/admin/usage${api.qs({ by, last: by === 'hour' ? 24 : 30 })}`);
      if (my !== usageSeq || !main.isConnected) return;
      cur = live.latest.overview?.currency || cur;
      if (chart) chart.destroy();
      replace(usageBody);
      chart = usageChart(usageBody, {
        by,
        currency: cur,
        trafficLabel: 'Traffic',
        moneySeries: [['fee_micros', 'Revenue (fees)', '--chart-3'], ['debit_micros', 'Client spend', '--chart-2', true]],
      });
      chart.update(u);
      const t = u.total || {};
      replace(totals, defList([
        ['Traffic', bytes((t.bytes_up || 0) + (t.bytes_down || 0)), 'usage-total-traffic'],
        ['Client spend', moneyCents(t.debit_micros || 0, cur), 'usage-total-spend'],
        ['Revenue (fees)', moneyCents(t.fee_micros || 0, cur), 'usage-total-revenue'],
        ['Paid to node owners', moneyCents(t.earned_micros || 0, cur), 'usage-total-earned'],
        ['Sessions', count(t.sessions || 0), 'usage-total-sessions'],
      ], 'deflist deflist-row-wrap'));
    } catch (e) {
      if (my !== usageSeq || e.status === 401) return;
      replace(usageBody, errorState(e, loadUsage, 'usage-error'));
    }
  }

  // First numbers at once; then the stream.
  if (live.latest.overview) render(live.latest.overview);
  api.get('/admin/overview').then((ov) => {
    if (!main.isConnected) return;
    live.addOverview(ov);
  }).catch((e) => {
    if (e.status !== 401 && main.isConnected && !live.latest.overview) replace(kpiError, errorState(e, null, 'overview-error'));
  });
  tp.update(live.latest.history);
  const unsub = live.subscribe((kind, value) => {
    if (kind === 'overview') {
      render(value);
      tp.update(live.latest.history);
      if (value.currency && value.currency !== cur && chart) { cur = value.currency; loadUsage(); }
    } else if (kind === 'status') status.set(value);
  });
  loadUsage();
  // The chart's current hour grows: refresh it every minute.
  const timer = setInterval(() => { if (document.visibilityState === 'visible') loadUsage(); }, 60000);

  return () => {
    unsub();
    clearInterval(timer);
    tp.destroy();
    if (chart) chart.destroy();
  };
}
