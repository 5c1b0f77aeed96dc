/* util.js - small DOM and formatting helpers every module uses.
 *
 * Rule kept here for the whole UI: a user-controlled string reaches the
 * DOM only through textContent or an attribute setter (el() below), never
 * as markup.
 */

export const $ = (id) => document.getElementById(id);

/* el('button', {class: 'x', text: 'Go', onclick: fn}, child, ...) */
export function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids) if (k != null) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

export function fmtSize(n) {
  if (n == null || isNaN(n)) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + ' ' + u[i];
}

export function fmtDuration(s) {
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + String(s % 60).padStart(2, '0') + ' s';
  return Math.floor(s / 3600) + ' h ' + String(Math.floor(s / 60) % 60).padStart(2, '0') + ' min';
}

export function fmtDate(s) {
  if (!s) return '';
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function joinPath(folder, name) {
  return (folder === '/' ? '' : folder) + '/' + name;
}

export function folderHref(folder) {
  return '#' + encodeURIComponent(folder).replace(/%2F/g, '/');
}

/* "photo.jpg" -> "photo (2).jpg", the first name not in taken. */
export function freeName(name, taken) {
  if (!taken.has(name)) return name;
  const dot = name.lastIndexOf('.');
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const ext = dot > 0 ? name.slice(dot) : '';
  for (let i = 2; ; i++) {
    const n = stem + ' (' + i + ')' + ext;
    if (!taken.has(n)) return n;
  }
}

/* Transfer rate over the last few seconds (a sliding window of samples),
 * so the speed follows the link and the time left follows the speed. */
export class RateMeter {
  constructor(windowMs = 5000) {
    this.windowMs = windowMs;
    this.samples = [];
  }

  add(bytes, now = performance.now()) {
    const s = this.samples;
    if (s.length && bytes < s[s.length - 1].bytes) s.length = 0; /* restarted */
    s.push({ t: now, bytes });
    while (s.length > 2 && now - s[1].t > this.windowMs) s.shift();
  }

  /* bytes per second, or 0 before two samples far enough apart */
  rate(now = performance.now()) {
    const s = this.samples;
    if (s.length < 2) return 0;
    const a = s[0], b = s[s.length - 1];
    const dt = (Math.max(now, b.t) - a.t) / 1000;
    return dt > 0.2 ? (b.bytes - a.bytes) / dt : 0;
  }

  /* seconds left for total bytes, or null when unknown */
  eta(total, now = performance.now()) {
    const r = this.rate(now);
    const s = this.samples;
    if (!r || !s.length) return null;
    return (total - s[s.length - 1].bytes) / r;
  }
}

/* 3600 -> "1 hour", 172800 -> "2 days" */
export function fmtTtl(s) {
  const unit = s >= 86400 ? ['day', 86400] : s >= 3600 ? ['hour', 3600] : s >= 60 ? ['minute', 60] : ['second', 1];
  const n = Math.floor(s / unit[1]);
  return n + ' ' + unit[0] + (n === 1 ? '' : 's');
}
