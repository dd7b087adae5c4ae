// Admin settings: the billing values that can change at run time (price, platform fee, minimum
// payout: PUT /admin/settings, audited, kept across restarts), GeoIP (the databases in use and
// their updates), and a read-only view of the rest of the configuration (edited in traffix.toml).

import * as api from '../api.js';
import { h, icon, replace } from '../dom.js';
import { dateOnly, dateTime, dateTimeLong, money, parseAmount, relative, titleCase, toMicros } from '../format.js';
import { badge, busy, button, card, errorText, field, loader, pageHeader, timeEl, toast } from '../ui.js';
import { linkified } from './common.js';

/** The decimal text of an amount in micros, for an input: "3.00", "0.000412". */
function decimalText(micros) {
  const b = toMicros(micros);
  const whole = b / 1000000n;
  let frac = (b % 1000000n).toString().padStart(6, '0').replace(/0+$/, '');
  if (frac.length < 2) frac = frac.padEnd(2, '0');
  return `${whole}.${frac}`;
}

function value(k, v, currency) {
  if (typeof v === 'boolean') return h('span', { class: v ? 'pos' : 'muted' }, v ? 'yes' : 'no');
  if (v === null || v === undefined || v === '') return h('span', { class: 'muted' }, 'not set');
  if (Array.isArray(v)) return v.length ? h('span', { class: 'mono' }, v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ')) : h('span', { class: 'muted' }, 'none');
  if (typeof v === 'object') return h('code', { class: 'json' }, JSON.stringify(v));
  if (k.endsWith('_micros') && Number.isInteger(v)) return h('span', null, money(v, currency), h('span', { class: 'muted mono small' }, ` (${v} micro-units)`));
  if (typeof v === 'number') return h('span', { class: 'mono' }, new Intl.NumberFormat('en').format(v));
  return h('span', { class: 'mono' }, String(v));
}

function section(name, obj, currency, note) {
  return card(titleCase(name), { testid: `settings-section-${name}` },
    note ? h('p', { class: 'muted small' }, note) : null,
    h('dl', { class: 'settings-list' }, Object.entries(obj).map(([k, v]) => h('div', { class: 'settings-row', testid: `setting-${name}-${k}` },
      h('dt', null, h('code', null, k)), h('dd', null, value(k, v, currency))))));
}

const SOURCES = { dbip: 'DB-IP Lite (free, no account; CC BY 4.0)', maxmind: 'MaxMind GeoLite2 (licence key)', off: 'Off: no downloads' };

/** The GeoIP card: the source of updates, the databases in use, the last and next update. */
function geoipCard(g) {
  const row = (label, value, testid) => h('div', { class: 'settings-row', testid },
    h('dt', null, label), h('dd', null, value ?? h('span', { class: 'muted' }, '—')));
  const db = (d, none) => (d
    ? h('span', null, h('span', { class: 'mono' }, d.database_type), ', built ', timeEl(d.built_at, dateOnly(d.built_at)),
      ` (${d.age_days} ${d.age_days === 1 ? 'day' : 'days'} old)`,
      d.stale ? h('span', { class: 'neg' }, ' — stale') : null,
      h('br'), h('span', { class: 'muted small mono' }, d.path), d.managed ? null : h('span', { class: 'muted small' }, ' (your own file)'))
    : h('span', { class: 'neg' }, none));
  const when = (t) => (t ? h('span', null, timeEl(t, dateTime(t)), h('span', { class: 'muted' }, ` (${relative(t)})`)) : null);
  const missing = !g.country;
  return card('GeoIP', { testid: 'settings-geoip', cls: 'settings-geoip' },
    h('p', { class: 'muted small' }, 'Countries of nodes (the map, ', h('code', null, '-country-'), ' targeting) and their networks come from these databases. ',
      h('code', null, g.update_command), ' downloads them from the source below, verifies them and swaps them into the running server; the package’s ',
      h('code', null, 'traffix-geoip.timer'), ' runs it every week.'),
    missing ? h('div', { class: 'notice notice-bad', role: 'note', testid: 'settings-geoip-missing' }, icon('alert'),
      h('p', null, 'No country database is loaded: nodes have no country and ', h('code', null, '-country-'), ' targeting is refused. Run ',
        h('code', null, g.update_command), ' on the server (', h('code', null, 'sudo systemctl start traffix-geoip.service'), ').')) : null,
    h('dl', { class: 'settings-list' },
      row('Source', h('span', null, SOURCES[g.source] || g.source, ' ', h('code', { class: 'muted small' }, `geoip.source = "${g.source}"`)), 'settings-geoip-source'),
      row('Country database', db(g.country, 'none'), 'settings-geoip-country'),
      row('Network (ASN) database', db(g.asn, 'none'), 'settings-geoip-asn'),
      row('Last update', when(g.last_update), 'settings-geoip-last-update'),
      row('Last check', when(g.last_check), 'settings-geoip-last-check'),
      row('Next update due', when(g.next_update), 'settings-geoip-next-update'),
      g.last_error ? row('Last error', h('span', { class: 'neg' }, g.last_error), 'settings-geoip-error') : null),
    g.attribution?.length ? h('p', { class: 'muted small', testid: 'settings-geoip-attribution' },
      g.attribution.map((a, i) => [i ? h('br') : null, linkified(a)])) : null);
}

export default function settingsPage(main) {
  main.append(pageHeader('Settings', { subtitle: 'Billing can be changed here at run time; the rest is the configuration this server started with.' }));
  const body = h('div', { class: 'settings-page', testid: 'settings-view' });
  main.append(body);
  let currency = 'USD';

  /* ---------- billing (editable) ---------- */
  const price = field({ label: 'Price per GB', testid: 'settings-price', required: true, inputmode: 'decimal', autocomplete: 'off', hint: 'What clients pay per GB (10⁹ bytes, both directions), like 3.00: a dot before at most 6 decimals.' });
  const fee = field({ label: 'Platform fee (%)', testid: 'settings-fee', required: true, inputmode: 'numeric', autocomplete: 'off', hint: 'The operator’s share of every charge, 0–100; node owners earn the rest.' });
  const minPayout = field({ label: 'Minimum payout', testid: 'settings-min-payout', required: true, inputmode: 'decimal', autocomplete: 'off', hint: 'The smallest withdrawal a node owner may request, like 5.00.' });
  const err = h('p', { class: 'form-error', role: 'alert', testid: 'settings-error', hidden: true });
  const save = button('Save billing settings', { kind: 'primary', type: 'submit', testid: 'settings-save' });
  const changed = h('p', { class: 'muted small', testid: 'settings-updated' });
  const derived = h('dl', { class: 'settings-list' });
  const form = h('form', { class: 'settings-form', testid: 'settings-billing-form', novalidate: true },
    price, fee, minPayout, err, h('div', { class: 'form-actions' }, save));
  const billingCard = card('Billing', { testid: 'settings-section-billing', cls: 'settings-billing' },
    h('p', { class: 'muted small' }, 'Changes apply to new connections at once (live ones keep the price they started with), are kept across restarts and override ',
      h('code', null, 'traffix.toml'), '. Every change is in the audit log.'),
    form, changed, derived);

  function renderBilling(b) {
    price.input.value = b.price_per_gb_micros != null ? decimalText(b.price_per_gb_micros) : String(b.price_per_gb ?? '');
    fee.input.value = String(b.platform_fee_percent ?? '');
    minPayout.input.value = b.min_payout_micros != null ? decimalText(b.min_payout_micros) : String(b.min_payout ?? '');
    const unit = `(${currency})`;
    price.querySelector('label').firstChild.textContent = `Price per GB ${unit}`;
    minPayout.querySelector('label').firstChild.textContent = `Minimum payout ${unit}`;
    if (b.updated_at) {
      replace(changed, 'Last changed by ', h('strong', { testid: 'settings-updated-by' }, b.updated_by || 'unknown'), ' at ',
        timeEl(b.updated_at, dateTimeLong(b.updated_at)), '.');
    } else {
      replace(changed, 'Not changed at run time: these values come from ', h('code', null, 'traffix.toml'), ' (or its environment overrides).');
    }
    const rest = Object.fromEntries(Object.entries(b).filter(([k]) => !['price_per_gb', 'price_per_gb_micros', 'platform_fee_percent', 'min_payout', 'min_payout_micros', 'updated_at', 'updated_by'].includes(k)));
    replace(derived, Object.entries(rest).map(([k, v]) => h('div', { class: 'settings-row', testid: `setting-billing-${k}` },
      h('dt', null, h('code', null, k), k === 'max_overdraft_micros' ? h('span', { class: 'hint' }, ' (follows from the price and the stream limit)') : null),
      h('dd', null, value(k, v, currency)))));
  }

  let current = null;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, submit);
  });
  async function submit() {
    err.hidden = true;
    for (const x of form.querySelectorAll('[aria-invalid="true"]')) x.removeAttribute('aria-invalid');
    const fail = (message, input) => {
      err.textContent = message;
      err.hidden = false;
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        input.addEventListener('input', () => input.removeAttribute('aria-invalid'), { once: true });
      }
    };
    const body = {};
    // Only what changed is sent (the API checks the values and says what is wrong).
    const p = parseAmount(price.input.value, { example: '3.00' });
    if (!p.ok) return fail(`Price per GB: ${p.message}`, price.input);
    if (p.micros !== toMicros(current?.price_per_gb_micros ?? -1)) body.price_per_gb = p.text;
    const f = fee.input.value.trim();
    if (!/^\d{1,3}$/.test(f)) return fail('Enter the platform fee as a whole number of percent, 0 to 100.', fee.input);
    if (Number(f) !== current?.platform_fee_percent) body.platform_fee_percent = Number(f);
    const m = parseAmount(minPayout.input.value, { example: '5.00' });
    if (!m.ok) return fail(`Minimum payout: ${m.message}`, minPayout.input);
    if (m.micros !== toMicros(current?.min_payout_micros ?? -1)) body.min_payout = m.text;
    if (!Object.keys(body).length) {
      toast('Nothing to save: the values are unchanged.', { type: 'info' });
      return;
    }
    try {
      const b = await api.put('/admin/settings', body);
      current = b;
      renderBilling(b);
      const what = [
        body.price_per_gb !== undefined && `price ${money(b.price_per_gb_micros, currency)} per GB`,
        body.platform_fee_percent !== undefined && `fee ${b.platform_fee_percent}%`,
        body.min_payout !== undefined && `minimum payout ${money(b.min_payout_micros, currency)}`,
      ].filter(Boolean).join(', ');
      toast(`Billing settings saved: ${what}.`, { type: 'success' });
    } catch (ex) {
      if (ex.status === 401) return;
      const input = body.price_per_gb !== undefined && /price/i.test(ex.reason || '') ? price.input
        : body.platform_fee_percent !== undefined && /fee/i.test(ex.reason || '') ? fee.input
          : body.min_payout !== undefined && /payout/i.test(ex.reason || '') ? minPayout.input : null;
      fail(errorText(ex), input);
    }
  }

  /* ---------- the rest (read-only) ---------- */
  const note = h('div', { class: 'notice', testid: 'settings-note', role: 'note' }, icon('settings'),
    h('p', null, 'Everything below is read-only here. It is edited in ', h('code', null, 'traffix.toml'), ' in the data directory (or overridden with ',
      h('code', null, 'TRAFFIX_<SECTION>__<KEY>'), ' environment variables) and read when the server starts; ', h('code', null, 'traffix config example'), ' prints every key with its default.'));
  const rest = h('div', { class: 'settings-grid' });
  const view = h('div', { class: 'settings-rest' }, note, rest);

  loader(body, () => api.get('/admin/settings'), (s) => {
    const server = s?.server || {};
    currency = server.currency || s?.currency || 'USD';
    current = s?.billing || null;
    const scalars = Object.fromEntries(Object.entries(server).filter(([, v]) => v === null || typeof v !== 'object' || Array.isArray(v)));
    const objects = Object.entries(server).filter(([, v]) => v && typeof v === 'object' && !Array.isArray(v));
    // Top-level values other than billing, server, certificate and geoip (none today) still show.
    const others = Object.entries(s || {}).filter(([k]) => !['billing', 'server', 'certificate', 'geoip'].includes(k));
    replace(rest,
      Object.keys(scalars).length ? section('server', scalars, currency) : null,
      objects.map(([k, v]) => section(k, v, currency)),
      others.map(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) ? section(k, v, currency) : section('general', { [k]: v }, currency))));
    replace(body, current ? billingCard : null, s?.certificate ? certificateCard(s.certificate) : null,
      s?.geoip ? geoipCard(s.geoip) : null, view);
    if (current) renderBilling(current);
  }, { testid: 'settings-load-error' });
}

/* ---------- the web listener's certificate (GET /admin/settings → certificate) ---------- */

function row(key, label, content) {
  return h('div', { class: 'settings-row', testid: `cert-${key}` }, h('dt', null, label), h('dd', null, content));
}

/** Issuer, names, expiry and source of the certificate served, ACME's last attempt, and a
 * "Renew now" button (POST /admin/tls/renew) when ACME is on. */
function certificateCard(initial) {
  const list = h('dl', { class: 'settings-list' });
  const renewBtn = button('Renew now', { kind: 'secondary', testid: 'cert-renew', iconName: 'refresh' });
  const cardEl = card('Certificate', { testid: 'settings-section-certificate', actions: initial.acme ? [renewBtn] : [] },
    h('p', { class: 'muted small' }, 'The certificate of this web listener. Paired nodes check its key (the pin), never the certificate, so renewals and a move to ACME keep them connected.'),
    list);
  const text = (v, cls = 'mono') => (v ? h('span', { class: cls }, String(v)) : h('span', { class: 'muted' }, 'none'));
  const when = (t) => (t ? timeEl(t, dateTimeLong(t)) : h('span', { class: 'muted' }, 'never'));
  function render(c) {
    const acme = c.acme;
    const source = c.source === 'acme'
      ? badge('ACME', 'ok', 'cert-source-badge')
      : badge(acme ? 'self-signed (ACME has none yet)' : 'self-signed', 'warn', 'cert-source-badge');
    replace(list,
      row('source', 'Source', source),
      row('issuer', 'Issuer', text(c.issuer)),
      row('names', 'Names', text((c.dns_names || []).join(', ') || c.subject)),
      row('expiry', 'Valid until', when(c.not_after)),
      row('pin', 'Pin', text(c.pin, 'mono small')),
      acme ? [
        row('domain', 'ACME domain', h('span', null, h('span', { class: 'mono' }, acme.domain), h('span', { class: 'muted small' }, ` (${acme.challenge}, ${acme.directory})`))),
        row('renew-at', 'Renews', acme.renew_at ? when(acme.renew_at) : h('span', { class: 'muted' }, 'once an ACME certificate is served')),
        row('last-attempt', 'Last attempt', when(acme.last_attempt_at)),
        row('last-error', 'Last error', acme.last_error ? h('span', { class: 'neg' }, acme.last_error) : h('span', { class: 'muted' }, 'none')),
      ] : row('acme', 'ACME', h('span', { class: 'muted' }, 'off: set ', h('code', null, 'tls.acme_domain'), ' and ', h('code', null, 'tls.acme_contact'), ' in traffix.toml for a certificate browsers trust')));
  }
  renewBtn.addEventListener('click', () => busy(renewBtn, async () => {
    try {
      const c = await api.post('/admin/tls/renew', {});
      render(c);
      if (c.acme?.failures) toast(`The CA did not issue a certificate: ${c.acme.last_error}`, { type: 'error', timeout: 9000 });
      else toast(`Certificate for ${c.acme?.domain} issued; valid until ${dateTimeLong(c.not_after)}.`, { type: 'success' });
    } catch (ex) {
      if (ex.status === 401) return;
      toast(errorText(ex), { type: 'error' });
    }
  }));
  render(initial);
  return cardEl;
}
