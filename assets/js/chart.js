// uPlot charts (vendor/uplot, a global loaded by index.html), sized to their container and redrawn
// in the colours of the current theme. Money series are plotted as integer micro-units and only
// formatted for display.

import { h } from './dom.js';
import { bytes, clock, dateOnly, dateTime, moneyShort, moneyCents, rate } from './format.js';

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

const instances = new Set();
/** Rebuilds every chart (theme change). */
export function rethemeCharts() {
  for (const c of instances) c.rebuild();
}

function axisStyle() {
  const grid = css('--chart-grid');
  return {
    stroke: css('--text-muted'),
    grid: { stroke: grid, width: 1 },
    ticks: { stroke: grid, width: 1, size: 4 },
    font: '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
  };
}

/**
 * A chart in `container`. spec(): {series: [...uPlot series beyond x], axes, data, scales}; built
 * lazily so it can be rebuilt on theme change. Returns {update(data), destroy()}.
 */
function mount(container, build, height) {
  const holder = h('div', { class: 'chart' });
  container.append(holder);
  let plot = null;
  let data = null;
  let ro = null;

  function width() {
    return Math.max(240, Math.floor(holder.clientWidth || container.clientWidth || 600));
  }
  function create() {
    if (!window.uPlot || !data) return;
    if (plot) plot.destroy();
    const opts = build();
    opts.width = width();
    opts.height = height;
    plot = new window.uPlot(opts, data, holder);
  }
  const inst = {
    update(d) {
      data = d;
      if (plot) plot.setData(d);
      else create();
    },
    rebuild() {
      if (plot) create();
    },
    destroy() {
      instances.delete(inst);
      if (ro) ro.disconnect();
      if (plot) plot.destroy();
      plot = null;
      holder.remove();
    },
  };
  ro = new ResizeObserver(() => {
    if (plot) {
      const w = width();
      if (w !== plot.width) plot.setSize({ width: w, height });
    }
  });
  ro.observe(holder);
  instances.add(inst);
  return inst;
}

function tsToDate(ts) {
  return new Date(ts * 1000);
}

// Axis labels are short (24-hour "20:00", "Nov 26"); legends use the dashboard's one time format.
const hourFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

/**
 * Traffic bars plus money lines from a usage series (GET …/usage): {series:[{start, bytes_up,
 * bytes_down, debit_micros, earned_micros, fee_micros}]}. moneySeries: [[field, label, cssVar]].
 */
export function usageChart(container, { by = 'hour', currency = 'USD', moneySeries = [], height = 260, trafficLabel = 'Traffic' }) {
  const bucket = by === 'day' ? 86400 : 3600;
  const build = () => {
    const bars = window.uPlot.paths.bars({ size: [0.7, 48], align: 0 });
    const traffic = css('--chart-1');
    const series = [
      { value: (u, v) => (v == null ? '—' : (by === 'day' ? dateOnly : dateTime)(tsToDate(v - bucket / 2))) },
      {
        label: trafficLabel,
        scale: 'bytes',
        stroke: traffic,
        fill: css('--chart-1-fill'),
        width: 1,
        paths: bars,
        points: { show: false },
        value: (u, v) => (v == null ? '—' : bytes(v)),
      },
      ...moneySeries.map(([, label, color, dash]) => ({
        label,
        scale: 'money',
        stroke: css(color),
        width: 2,
        dash: dash ? [6, 4] : undefined,
        points: { show: false },
        value: (u, v) => (v == null ? '—' : moneyCents(Math.round(v), currency)),
      })),
    ];
    const ax = axisStyle();
    return {
      series,
      legend: { live: true },
      cursor: { points: { show: false }, drag: { x: false, y: false } },
      scales: { x: { time: true, range: (u, min, max) => [min - bucket / 2, max + bucket / 2] }, bytes: { range: (u, min, max) => [0, Math.max(max, 1000) * 1.1] }, money: { range: (u, min, max) => [0, Math.max(max, 10000) * 1.15] } },
      axes: [
        { ...ax, values: (u, vals) => vals.map((v) => (by === 'day' ? dayFmt : hourFmt).format(tsToDate(v))) },
        { ...ax, scale: 'bytes', size: 64, values: (u, vals) => vals.map((v) => bytes(v)) },
        moneySeries.length ? { ...ax, scale: 'money', side: 1, size: 64, grid: { show: false }, values: (u, vals) => vals.map((v) => moneyShort(Math.round(v), currency)) } : null,
      ].filter(Boolean),
    };
  };
  const m = mount(container, build, height);
  const note = h('p', { class: 'chart-note', hidden: true, testid: 'chart-empty' }, 'Nothing in this period yet.');
  container.append(note);
  return {
    update(usage) {
      const rows = usage.series || [];
      const xs = rows.map((r) => Math.floor(new Date(r.start).getTime() / 1000) + bucket / 2);
      const traffic = rows.map((r) => (Number(r.bytes_up) || 0) + (Number(r.bytes_down) || 0));
      // Micro-units stay integers; uPlot only positions them.
      const money = moneySeries.map(([field]) => rows.map((r) => Number(r[field]) || 0));
      m.update([xs, traffic, ...money]);
      const empty = !traffic.some((v) => v > 0) && !money.some((col) => col.some((v) => v > 0));
      note.hidden = !empty;
    },
    destroy: () => m.destroy(),
  };
}

/** Live throughput (up/down bytes per second) from the admin feed's history. */
export function throughputChart(container, { height = 140, windowSecs = 300 } = {}) {
  const build = () => {
    const ax = axisStyle();
    return {
      series: [
        { value: (u, v) => (v == null ? '—' : clock(tsToDate(v))) },
        { label: 'Down', stroke: css('--chart-1'), fill: css('--chart-1-fill'), width: 2, points: { show: false }, value: (u, v) => rate(v) },
        { label: 'Up', stroke: css('--chart-2'), width: 2, points: { show: false }, value: (u, v) => rate(v) },
      ],
      legend: { live: true },
      cursor: { points: { show: false }, drag: { x: false, y: false } },
      // A fixed five-minute window ending now, so that the axis reads as time from the start.
      scales: { x: { time: true, range: (u, min, max) => { const end = Math.max(max || 0, Date.now() / 1000); return [end - windowSecs, end]; } }, y: { range: (u, min, max) => [0, Math.max(max || 0, 1000) * 1.15] } },
      axes: [
        { ...ax, space: 90, values: (u, vals) => vals.map((v) => clock(tsToDate(v))) },
        { ...ax, size: 72, values: (u, vals) => vals.map((v) => rate(v)) },
      ],
    };
  };
  const m = mount(container, build, height);
  const note = h('p', { class: 'chart-note', testid: 'throughput-measuring' }, 'Measuring… the rate needs two samples of the live feed.');
  container.append(note);
  return {
    update(history) {
      note.hidden = history.length > 0;
      m.update([history.map((p) => p.t), history.map((p) => p.down), history.map((p) => p.up)]);
    },
    destroy: () => m.destroy(),
  };
}
