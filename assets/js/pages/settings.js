// Admin settings: a read-only view of the effective configuration (edited in traffix.toml).

import * as api from '../api.js';
import { h, icon, replace } from '../dom.js';
import { money, titleCase } from '../format.js';
import { card, loader, pageHeader } from '../ui.js';

function value(k, v, currency) {
  if (typeof v === 'boolean') return h('span', { class: v ? 'pos' : 'muted' }, v ? 'yes' : 'no');
  if (v === null || v === undefined || v === '') return h('span', { class: 'muted' }, 'not set');
  if (Array.isArray(v)) return v.length ? h('span', { class: 'mono' }, v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ')) : h('span', { class: 'muted' }, 'none');
  if (typeof v === 'object') return h('code', { class: 'json' }, JSON.stringify(v));
  if (k.endsWith('_micros') && Number.isInteger(v)) return h('span', null, money(v, currency), h('span', { class: 'muted mono small' }, ` (${v} micro-units)`));
  if (typeof v === 'number') return h('span', { class: 'mono' }, new Intl.NumberFormat('en').format(v));
  return h('span', { class: 'mono' }, String(v));
}

function section(name, obj, currency) {
  return card(titleCase(name), { testid: `settings-section-${name}` },
    h('dl', { class: 'settings-list' }, Object.entries(obj).map(([k, v]) => h('div', { class: 'settings-row', testid: `setting-${name}-${k}` },
      h('dt', null, h('code', null, k)), h('dd', null, value(k, v, currency))))));
}

export default function settingsPage(main) {
  main.append(pageHeader('Settings', { subtitle: 'The configuration this server is running with.' }));
  main.append(h('div', { class: 'notice', testid: 'settings-note', role: 'note' }, icon('settings'),
    h('p', null, 'These settings are read-only here. They are edited in ', h('code', null, 'traffix.toml'), ' in the data directory (or overridden with ',
      h('code', null, 'TRAFFIX_<SECTION>__<KEY>'), ' environment variables) and read when the server starts; ', h('code', null, 'traffix config example'), ' prints every key with its default.')));
  const body = h('div', { class: 'settings-grid', testid: 'settings-view' });
  main.append(body);
  loader(body, () => api.get('/admin/settings'), (s) => {
    const currency = s?.billing?.currency || s?.currency || 'USD';
    const scalars = Object.entries(s || {}).filter(([, v]) => v === null || typeof v !== 'object' || Array.isArray(v));
    const sections = Object.entries(s || {}).filter(([, v]) => v && typeof v === 'object' && !Array.isArray(v));
    replace(body,
      scalars.length ? section('general', Object.fromEntries(scalars), currency) : null,
      sections.map(([k, v]) => section(k, v, currency)));
  }, { testid: 'settings-error' });
}
