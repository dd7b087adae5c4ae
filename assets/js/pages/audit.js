// Admin audit log: who did what, when, why; each entry expands to its before/after.

import * as api from '../api.js';
import { h, icon, replace } from '../dom.js';
import { dateTime } from '../format.js';
import { badge, button, card, dataTable, emptyState, loader, pageHeader, searchBox, select, timeEl } from '../ui.js';

function show(v) {
  if (v === undefined) return h('span', { class: 'muted' }, '—');
  if (v === null) return h('span', { class: 'muted' }, 'null');
  if (typeof v === 'object') return h('code', { class: 'json' }, JSON.stringify(v));
  return h('code', null, String(v));
}

/** Key-by-key before/after, changed keys first and highlighted. */
export function changeView(before, after) {
  const isObj = (x) => x && typeof x === 'object' && !Array.isArray(x);
  if (!isObj(before) && !isObj(after)) {
    return h('div', { class: 'diff-plain' }, h('div', null, h('p', { class: 'label' }, 'Before'), show(before ?? undefined)), h('div', null, h('p', { class: 'label' }, 'After'), show(after ?? undefined)));
  }
  const b = isObj(before) ? before : {};
  const a = isObj(after) ? after : {};
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])];
  const same = (k) => JSON.stringify(b[k]) === JSON.stringify(a[k]);
  keys.sort((x, y) => Number(same(x)) - Number(same(y)) || x.localeCompare(y));
  return h('table', { class: 'diff' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, before == null ? 'Before (none)' : 'Before'), h('th', { scope: 'col' }, after == null ? 'After (none)' : 'After'))),
    h('tbody', null, keys.map((k) => h('tr', { class: same(k) ? 'same' : 'changed' },
      h('th', { scope: 'row' }, k, same(k) ? null : h('span', { class: 'sr-only' }, ' (changed)')),
      h('td', null, show(b[k])),
      h('td', null, show(a[k]))))));
}

export default function auditPage(main, ctx) {
  let limit = Number(ctx.params.get('limit')) || 100;
  let q = '';
  let rows = [];
  const refresh = button('Refresh', { kind: 'secondary', iconName: 'refresh', testid: 'audit-refresh', onClick: () => reload() });
  main.append(pageHeader('Audit log', { subtitle: 'Every administrative action: who, when, what, why, and the record before and after. Secrets are never recorded.', actions: [refresh] }));
  const search = searchBox({ label: 'Filter the audit log', testid: 'audit-search', placeholder: 'Filter by actor, action, target or reason…', onInput: (v) => { q = v.toLowerCase(); render(); }, delay: 100 });
  const lim = select({ label: 'Show', testid: 'audit-limit', value: limit, options: [[50, 'Last 50'], [100, 'Last 100'], [500, 'Last 500'], [1000, 'Last 1000']] });
  lim.input.addEventListener('change', () => { limit = Number(lim.input.value); reload(); });
  const body = h('div', { testid: 'audit-table-wrap' });
  main.append(card(null, { testid: 'audit-card' }, h('div', { class: 'toolbar' }, search, lim), body));
  const open = new Set();

  function actionBadge(action) {
    const a = String(action || '');
    const kind = /unban|credit|approve|\.add$/.test(a) ? 'ok' : /ban|disable|reject/.test(a) ? 'bad' : 'muted';
    return badge(action, kind);
  }

  function render() {
    const shown = q ? rows.filter((e) => [e.actor, e.action, e.target, e.reason].some((x) => x && String(x).toLowerCase().includes(q))) : rows;
    replace(body, dataTable({
      testid: 'audit-table',
      caption: 'Audit log',
      rows: shown,
      rowAttrs: (e) => ({ testid: `audit-row-${e.seq}` }),
      empty: emptyState({ title: q ? 'No entry matches' : 'No administrative action yet', text: q ? 'Change the filter.' : 'Credits, bans, user changes and withdrawal decisions are recorded here.', testid: 'audit-empty', iconName: 'audit' }),
      columns: [
        { label: '#', num: true, cell: (e) => h('span', { class: 'mono muted' }, String(e.seq)) },
        { label: 'Time', cell: (e) => timeEl(e.time, dateTime(e.time)) },
        { label: 'Actor', cell: (e) => h('span', { class: 'strong' }, e.actor) },
        { label: 'Action', cell: (e) => actionBadge(e.action) },
        { label: 'Target', cell: (e) => h('span', { class: 'mono target', title: e.target }, e.target && e.target.length > 24 ? `${e.target.slice(0, 12)}…` : e.target) },
        { label: 'Reason', cell: (e) => e.reason || null },
        {
          label: 'Changes',
          hideLabel: true,
          class: 'actions',
          cell: (e) => {
            if (e.before == null && e.after == null) return h('span', { class: 'muted small' }, 'no record');
            const expanded = open.has(e.seq);
            const b = h('button', { type: 'button', class: 'btn btn-ghost btn-sm expander', testid: `audit-toggle-${e.seq}`, 'aria-expanded': String(expanded), 'aria-controls': `audit-details-${e.seq}` },
              icon('chevron'), h('span', null, expanded ? 'Hide changes' : 'Show changes'));
            b.addEventListener('click', () => {
              const now = !open.has(e.seq);
              if (now) open.add(e.seq); else open.delete(e.seq);
              b.setAttribute('aria-expanded', String(now));
              b.lastChild.textContent = now ? 'Hide changes' : 'Show changes';
              const row = body.querySelector(`#audit-details-${e.seq}`);
              if (row) row.hidden = !now;
            });
            return b;
          },
        },
      ],
      extraRow: (e, span) => {
        if (e.before == null && e.after == null) return null;
        return h('tr', { class: 'details-row', id: `audit-details-${e.seq}`, testid: `audit-details-${e.seq}`, hidden: !open.has(e.seq) },
          h('td', { colspan: String(span) },
            changeView(e.before, e.after),
            h('details', { class: 'raw' }, h('summary', null, 'Raw JSON'),
              h('pre', null, JSON.stringify({ before: e.before, after: e.after }, null, 2)))));
      },
    }));
  }
  const reload = loader(body, () => api.get(`/admin/audit${api.qs({ limit })}`), (list) => { rows = list; render(); }, { testid: 'audit-error' });
  return () => {};
}

