// Formatting of money, bytes, rates and times. Money is integer micro-units (`*_micros`): it is
// only ever handled as BigInt or integer strings here, never with float arithmetic.

const MICROS = 1000000n;

/** An integer amount of micro-units as a BigInt (from a JSON number, a BigInt or a digit string). */
export function toMicros(v) {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return BigInt(Math.trunc(v));
  if (typeof v === 'string' && /^-?\d+$/.test(v.trim())) return BigInt(v.trim());
  return 0n;
}

function groupThousands(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** "1,234.50" from micros: at least two decimals, more only when they are not zero (up to six). */
export function microsToDecimal(v, { minFraction = 2, group = true } = {}) {
  let b = toMicros(v);
  const neg = b < 0n;
  if (neg) b = -b;
  const whole = (b / MICROS).toString();
  let frac = (b % MICROS).toString().padStart(6, '0').replace(/0+$/, '');
  if (frac.length < minFraction) frac = frac.padEnd(minFraction, '0');
  return (neg ? '-' : '') + (group ? groupThousands(whole) : whole) + (frac ? '.' + frac : '');
}

const symbols = new Map();
function currencyAffix(code) {
  if (!symbols.has(code)) {
    let affix = { prefix: '', suffix: ' ' + code };
    try {
      const parts = new Intl.NumberFormat('en', { style: 'currency', currency: code, currencyDisplay: 'narrowSymbol' }).formatToParts(1);
      const i = parts.findIndex((p) => p.type === 'currency');
      const n = parts.findIndex((p) => p.type === 'integer');
      if (i >= 0) {
        const sym = parts[i].value;
        const space = /^[A-Za-z]{2,}$/.test(sym) ? '\u00a0' : '';
        affix = i < n ? { prefix: sym + space, suffix: '' } : { prefix: '', suffix: '\u00a0' + sym };
      }
    } catch { /* unknown code: show it after the number */ }
    symbols.set(code, affix);
  }
  return symbols.get(code);
}

/** "$12.50", "-$0.000412", "12.50 XYZ" from micros and an ISO 4217 code. */
export function money(v, currency = 'USD') {
  const s = microsToDecimal(v);
  const neg = s.startsWith('-');
  const { prefix, suffix } = currencyAffix(currency || 'USD');
  return (neg ? '-' : '') + prefix + (neg ? s.slice(1) : s) + suffix;
}

/** Money rounded (half up) to whole cents, for summaries and KPIs; tables show the exact amount. */
export function moneyCents(v, currency = 'USD') {
  const b = toMicros(v);
  const abs = b < 0n ? -b : b;
  const r = ((abs + 5000n) / 10000n) * 10000n;
  return money(b < 0n ? -r : r, currency);
}

/** Compact money for chart axes: "$1.2k", "$0.35". Micros in, display only. */
export function moneyShort(v, currency = 'USD') {
  const b = toMicros(v);
  const abs = b < 0n ? -b : b;
  const { prefix, suffix } = currencyAffix(currency || 'USD');
  const sign = b < 0n ? '-' : '';
  const units = abs / MICROS;
  if (units >= 1000000n) return sign + prefix + microsToDecimal((abs / 1000000n / 100000n) * 100000n, { minFraction: 0, group: false }) + 'M' + suffix;
  if (units >= 1000n) return sign + prefix + microsToDecimal((abs / 1000n / 100000n) * 100000n, { minFraction: 0, group: false }) + 'k' + suffix;
  // Below 1000 units: two decimals (truncated), the smallest non-zero amounts with more.
  const cents = (abs / 10000n) * 10000n;
  return sign + prefix + microsToDecimal(cents === 0n && abs > 0n ? abs : cents) + suffix;
}

// The money grammar of the CLI and the API (Micros::parse in src/money.rs), case for case: the
// shared cases are tests/vectors/amounts.json. White space around the amount is Unicode
// White_Space, as Rust's str::trim removes it (JavaScript's own trim() also removes U+FEFF and
// keeps U+0085, so it is not used here).
const WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const TRIM_RE = new RegExp(`^[${WS}]+|[${WS}]+$`, 'g');
const U64_MAX = 18446744073709551615n;

const I64_MAX = 9223372036854775807n;

/** What to tell a person about an amount the grammar refuses; `example` is a well-formed one. */
export function amountMessage(error, example = '12.50', { signed = false } = {}) {
  if (error === 'too_precise') return `Enter an amount like ${example}: at most 6 decimals.`;
  if (error === 'overflow') return `That amount is too large. Enter an amount like ${example}.`;
  if (signed) return `Enter an amount like ${example}: an optional + or - right before the digits, and a dot before the decimals (no commas, spaces or letters).`;
  return `Enter an amount like ${example}: digits, and a dot before the decimals (no commas, spaces, signs or letters).`;
}

/**
 * Reads a decimal amount typed by a person, exactly as the server does: "12", "12.5",
 * "0.000001"; no sign, exponent, separator or more than 6 decimals. Returns {ok: true, text,
 * micros (BigInt)} or {ok: false, error: 'syntax' | 'too_precise' | 'overflow', message}.
 * With `signed` (adjustments) it reads as `parse_signed` does: an optional "+" or "-" right
 * before the digits ("-13.50", "+2"), a magnitude that fits an i64; `micros` is negative for "-".
 */
export function parseAmount(text, { signed = false, example = signed ? '-13.50' : '12.50' } = {}) {
  const fail = (error) => ({ ok: false, error, message: amountMessage(error, example, { signed }) });
  const t = String(text ?? '').replace(TRIM_RE, '');
  let negative = false;
  let digits = t;
  if (signed) {
    if (t[0] === '-' || t[0] === '+') { negative = t[0] === '-'; digits = t.slice(1); }
    if (!/^[0-9]/.test(digits)) return fail('syntax');
  }
  const dot = digits.indexOf('.');
  const int = dot < 0 ? digits : digits.slice(0, dot);
  const frac = dot < 0 ? '' : digits.slice(dot + 1);
  if (!/^[0-9]+$/.test(int) || !/^[0-9]*$/.test(frac) || (dot >= 0 && !frac)) return fail('syntax');
  if (frac.length > 6) return fail('too_precise');
  const micros = BigInt(int) * MICROS + BigInt(frac.padEnd(6, '0'));
  if (micros > (signed ? I64_MAX : U64_MAX)) return fail('overflow');
  return { ok: true, text: t, micros: negative ? -micros : micros };
}

const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
/** Decimal units, as billing counts them (1 GB = 10^9 bytes). */
export function bytes(n) {
  n = Number(n) || 0;
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1000 && i < BYTE_UNITS.length - 1) { v /= 1000; i++; }
  const digits = i === 0 ? 0 : v < 10 ? 2 : v < 100 ? 1 : 0;
  return (n < 0 ? '-' : '') + v.toFixed(digits) + '\u00a0' + BYTE_UNITS[i];
}

export function rate(bytesPerSec) {
  if (bytesPerSec == null || !Number.isFinite(bytesPerSec)) return '—';
  return bytes(Math.max(0, bytesPerSec)) + '/s';
}

/** Megabits per second, the unit people compare line speeds in. */
export function bits(bytesPerSec) {
  if (bytesPerSec == null || !Number.isFinite(bytesPerSec)) return '—';
  const mbit = (Math.max(0, bytesPerSec) * 8) / 1e6;
  return (mbit < 10 ? mbit.toFixed(2) : mbit < 100 ? mbit.toFixed(1) : mbit.toFixed(0)) + '\u00a0Mbit/s';
}

export function count(n) {
  if (n == null) return '—';
  return new Intl.NumberFormat('en').format(n);
}

function toDate(t) {
  if (t == null || t === '') return null;
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}

// One time format everywhere: 24-hour, year first, in the browser's zone, named
// ("2026-12-02 20:41 UTC", "2026-12-02 21:41 GMT+1").
const stampFmt = new Intl.DateTimeFormat('en-US', { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'short' });

function stamp(d) {
  const p = Object.fromEntries(stampFmt.formatToParts(d).map((x) => [x.type, x.value]));
  return { date: `${p.year}-${p.month}-${p.day}`, hm: `${p.hour}:${p.minute}`, s: p.second, zone: p.timeZoneName || '' };
}

/** Date and time in the browser's zone: "2026-12-02 20:41 UTC". */
export function dateTime(t) {
  const d = toDate(t);
  if (!d) return '—';
  const p = stamp(d);
  return `${p.date} ${p.hm} ${p.zone}`.trim();
}

/** Date and time to the second: "2026-12-02 20:41:07 UTC". */
export function dateTimeLong(t) {
  const d = toDate(t);
  if (!d) return '—';
  const p = stamp(d);
  return `${p.date} ${p.hm}:${p.s} ${p.zone}`.trim();
}

/** The date alone: "2026-12-02". */
export function dateOnly(t) {
  const d = toDate(t);
  return d ? stamp(d).date : '—';
}

/** The time of day, 24-hour: "20:41:07". */
export function clock(t) {
  const d = toDate(t);
  if (!d) return '—';
  const p = stamp(d);
  return `${p.hm}:${p.s}`;
}

/** The short name of the browser's time zone ("UTC", "GMT+1"). */
export function zoneName() {
  return stamp(new Date()).zone;
}

/** "3 min ago", "in 9 min". */
export function relative(t, now = Date.now()) {
  const d = toDate(t);
  if (!d) return '—';
  const s = Math.round((d.getTime() - now) / 1000);
  const a = Math.abs(s);
  const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
  if (a < 45) return s <= 0 ? 'just now' : 'in a few seconds';
  if (a < 3600) return rtf.format(Math.round(s / 60), 'minute');
  if (a < 86400) return rtf.format(Math.round(s / 3600), 'hour');
  return rtf.format(Math.round(s / 86400), 'day');
}

/** "4 min 12 s", "2 h 5 min". */
export function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function between(a, b) {
  const x = toDate(a);
  const y = b ? toDate(b) : new Date();
  return x && y ? (y.getTime() - x.getTime()) / 1000 : null;
}

let regionNames = null;
/** "Germany" from "DE" (Intl), the code itself when unknown. */
export function countryName(code) {
  if (!code) return 'Unknown';
  try {
    regionNames ??= new Intl.DisplayNames(['en'], { type: 'region' });
    return regionNames.of(code.toUpperCase()) || code;
  } catch {
    return code;
  }
}

/** A regional-indicator flag emoji ("🇩🇪") for a two-letter code, "" otherwise. */
export function flag(code) {
  if (!code || !/^[A-Za-z]{2}$/.test(code)) return '';
  const base = 0x1f1e6;
  const up = code.toUpperCase();
  return String.fromCodePoint(base + up.charCodeAt(0) - 65, base + up.charCodeAt(1) - 65);
}

/** Numeric compare of dotted IPv4 strings, for sorting virtual IPs. */
export function ipKey(ip) {
  const p = String(ip || '').split('.').map((x) => Number(x) || 0);
  return ((p[0] * 256 + p[1]) * 256 + p[2]) * 256 + p[3];
}

export function titleCase(s) {
  return s ? String(s).replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase()) : '';
}
