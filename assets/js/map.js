// The nodes world map: an SVG choropleth of online nodes per country (vendor/world/countries.json,
// pre-projected Natural Earth shapes keyed by ISO 3166-1 alpha-2; small countries as dots).

import { h, s, replace } from './dom.js';
import { countryName, count } from './format.js';

let shapes = null;
function loadShapes() {
  shapes ??= fetch('/assets/vendor/world/countries.json', { cache: 'force-cache' }).then((r) => {
    if (!r.ok) throw new Error(`map data: HTTP ${r.status}`);
    return r.json();
  });
  return shapes;
}

const LEVELS = 5;
function level(n, max) {
  if (!n) return 0;
  return Math.max(1, Math.ceil((Math.log(n + 1) / Math.log(max + 1)) * LEVELS));
}

/** Counts online (not banned) nodes per country code. */
export function onlineByCountry(nodes) {
  const m = new Map();
  for (const n of nodes) {
    if (!n.online || n.banned) continue;
    const c = (n.country || '??').toUpperCase();
    m.set(c, (m.get(c) || 0) + 1);
  }
  return m;
}

/** Requests that found no node per country code (the overview's `unmet_demand`; `any` left out). */
export function unmetByCountry(rows) {
  const m = new Map();
  for (const r of rows || []) {
    if (!r.country || r.country === 'any') continue;
    const c = r.country.toUpperCase();
    m.set(c, (m.get(c) || 0) + (Number(r.count) || 0));
  }
  return m;
}

/**
 * Mounts the map into `container`. Returns {update(nodes), setUnmet(rows)}: online nodes shade
 * a country, and a dashed outline marks one where client requests found no node. The map is one labelled image for
 * screen readers; the country list beside it carries the same numbers as text.
 */
export function worldMap(container) {
  const svgHolder = h('div', { class: 'map-svg', testid: 'nodes-map-svg' });
  const legend = h('div', { class: 'map-legend', 'aria-hidden': 'true' });
  const list = h('ol', { class: 'country-list', testid: 'nodes-country-list', 'aria-label': 'Online nodes by country', tabindex: '0' });
  const tip = h('div', { class: 'map-tip', hidden: true, 'aria-hidden': 'true' });
  container.append(h('div', { class: 'map-layout' }, h('div', { class: 'map-frame' }, svgHolder, tip, legend), list));

  let svg = null;
  let byCode = new Map(); // code → element(s)
  let counts = new Map();
  let unmet = new Map();
  let pending = null;

  loadShapes().then((data) => {
    svg = s('svg', { viewBox: `0 0 ${data.width} ${data.height}`, class: 'map', role: 'img', 'aria-label': 'World map of online nodes' });
    const gShapes = s('g', { class: 'map-shapes' });
    const gDots = s('g', { class: 'map-dots' });
    for (const [code, name, d] of data.countries) {
      const p = s('path', { d, class: 'country lvl0', testid: `map-country-${code}`, 'data-code': code, 'data-name': name });
      gShapes.append(p);
      byCode.set(code, p);
    }
    for (const [code, name, x, y] of data.points || []) {
      const c = s('circle', { cx: x, cy: y, r: 3, class: 'country dot lvl0', testid: `map-country-${code}`, 'data-code': code, 'data-name': name });
      gDots.append(c);
      byCode.set(code, c);
    }
    svg.append(gShapes, gDots);
    svg.addEventListener('pointermove', (e) => {
      const t = e.target.closest && e.target.closest('.country');
      if (!t) { tip.hidden = true; return; }
      const code = t.getAttribute('data-code');
      const n = counts.get(code) || 0;
      const u = unmet.get(code) || 0;
      tip.textContent = `${countryName(code) || t.getAttribute('data-name')}: ${n} online${u ? ` · ${count(u)} ${u === 1 ? 'request' : 'requests'} found no node` : ''}`;
      const box = svgHolder.getBoundingClientRect();
      tip.style.left = `${e.clientX - box.left + 12}px`;
      tip.style.top = `${e.clientY - box.top + 12}px`;
      tip.hidden = false;
    });
    svg.addEventListener('pointerleave', () => { tip.hidden = true; });
    replace(svgHolder, svg);
    if (pending) update(pending);
  }).catch(() => {
    replace(svgHolder, h('p', { class: 'muted' }, 'The map could not be loaded; the list shows the same numbers.'));
  });

  function update(nodes) {
    pending = nodes;
    counts = onlineByCountry(nodes);
    const max = Math.max(0, ...counts.values());
    if (svg) {
      for (const [code, el] of byCode) {
        const n = counts.get(code) || 0;
        const cls = `country${el.tagName === 'circle' ? ' dot' : ''} lvl${level(n, max)}${unmet.get(code) ? ' unmet' : ''}`;
        if (el.getAttribute('class') !== cls) el.setAttribute('class', cls);
        if (el.tagName === 'circle') el.setAttribute('r', n ? '5' : '3');
      }
    }
    replace(legend, h('span', null, 'Online nodes'), h('span', { class: 'legend-scale' },
      Array.from({ length: LEVELS + 1 }, (_, i) => h('i', { class: `lvl${i}` }))),
    h('span', null, max ? `0 – ${count(max)}` : 'none'),
    unmet.size ? h('span', { testid: 'map-legend-unmet' }, h('i', { class: 'legend-unmet' }), ' requests found no node') : null);
    const codes = [...new Set([...counts.keys(), ...unmet.keys()])];
    const rows = codes.map((c) => [c, counts.get(c) || 0, unmet.get(c) || 0])
      .sort((a, b) => b[1] - a[1] || b[2] - a[2] || a[0].localeCompare(b[0]));
    replace(list, rows.length
      ? rows.map(([code, n, u]) => h('li', { testid: `nodes-country-${code}`, class: u ? 'has-unmet' : null },
        h('span', { class: 'cc' }, code === '??' ? '—' : code),
        h('span', { class: 'cname' }, code === '??' ? 'Unknown country' : countryName(code)),
        h('span', { class: 'cnum' }, count(n)),
        u ? h('span', { class: 'cunmet', testid: `nodes-country-unmet-${code}`, title: 'Client requests for this country that found no node since the server started' }, `${count(u)} unmet`) : null))
      : h('li', { class: 'muted' }, 'No node is online.'));
  }

  function setUnmet(rows) {
    unmet = unmetByCountry(rows);
    if (pending) update(pending);
  }
  return { update, setUnmet };
}
