// Pure formatting and parsing helpers (no DOM).

const pad = (n) => String(n).padStart(2, '0');

/// Microseconds (number or decimal string) as a readable duration: "850 µs", "12 ms", "7.3 s",
/// "2 m 05 s", "3 h 07 m", "2 d 04 h".
export function duration(us) {
  const n = Number(us);
  if (!Number.isFinite(n) || n < 0) return String(us);
  if (n < 1000) return Math.round(n) + ' µs';
  if (n < 1e6) return Math.floor(n / 1000) + ' ms';
  const secs = n / 1e6;
  if (secs < 10) return (Math.floor(secs * 10) / 10).toFixed(1) + ' s';
  const s = Math.floor(secs);
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' m ' + pad(s % 60) + ' s';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + pad(Math.floor((s % 3600) / 60)) + ' m';
  return Math.floor(s / 86400) + ' d ' + pad(Math.floor((s % 86400) / 3600)) + ' h';
}

const UNITS = { us: 1, 'µs': 1, ms: 1000, s: 1e6, m: 60e6, min: 60e6, h: 3600e6 };

/// "30s", "100ms", "2m", "1.5h", "250us" (a bare number is seconds) -> microseconds.
/// Anything else throws: a filter the console cannot read is refused, never dropped.
export function parseDuration(text) {
  const t = String(text).trim();
  if (t === '') return null;
  const m = /^(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|min|h)?$/i.exec(t);
  if (!m) throw new Error('"' + t + '" is not a duration (examples: 250ms, 30s, 2m, 1h)');
  const us = Math.round(Number(m[1]) * UNITS[(m[2] || 's').toLowerCase()]);
  if (!Number.isSafeInteger(us)) throw new Error('"' + t + '" is too long');
  return us;
}

/// Unix milliseconds as "2026-12-01 17:20:05" (local time).
export function time(ms) {
  if (ms === null || ms === undefined) return '';
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return String(ms);
  return (
    d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
    pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds())
  );
}

/// A list field that the API may give as an array or as joined text.
export function list(v) {
  if (Array.isArray(v)) return v.join(', ');
  return v === undefined || v === null ? '' : String(v);
}

/// Long text cut to `n` characters with an ellipsis.
export function cut(text, n) {
  const s = String(text || '');
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}
