/* media.js - thumbnails in the listing, a grid view, and a preview on click
 * (issue 14: the server's process stage makes `thumb` and `preview`
 * variants of photos, video posters and PDF first pages).
 *
 * A file whose metadata has a width (a photo, a video, a PDF) and that is
 * available gets a thumbnail before its name; pressing it (or its Preview
 * button) opens the preview in a dialog, with what the metadata says (size
 * as displayed, camera, capture time, duration, pages). No original is
 * downloaded to look at a photo.
 *
 * The token never goes into a URL, so an image cannot just point at the
 * API: each variant is fetched with the Authorization header and shown
 * from a blob: URL (the CSP allows blob: images), revoked when the listing
 * is replaced or the preview closed. Thumbnails load when their row comes
 * into view, at most LOADS_MAX at a time. A missing or failed variant
 * (404), or one still being made (409), simply shows no thumbnail.
 */
import { $, el, fmtSize } from './util.js';
import { authHeaders } from './api.js';
import { registerFileAction, registerRowDecorator, onListing } from './browser.js';

const LOADS_MAX = 4;
let urls = [];           /* blob: URLs of the shown listing */
let queue = [];          /* [img, mediaId] waiting to load */
let loading = 0;
let observer = null;

const hasPicture = (m) => m.state === 'available' && m.metadata && m.metadata.width > 0;

async function variantUrl(id, name) {
  const r = await fetch('/v1/media/' + encodeURIComponent(id) + '/variants/' + name,
    { headers: authHeaders() });
  if (!r.ok) throw new Error('HTTP ' + r.status);
  return URL.createObjectURL(await r.blob());
}

function pump() {
  while (loading < LOADS_MAX && queue.length) {
    const [img, id] = queue.shift();
    if (!img.isConnected) continue;
    loading++;
    variantUrl(id, 'thumb').then((u) => {
      urls.push(u);
      img.src = u;
      img.classList.add('loaded');
    }, () => img.remove()).finally(() => { loading--; pump(); });
  }
}

function watch(img, id) {
  if (!observer) {
    observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        observer.unobserve(e.target);
        queue.push([e.target, e.target.dataset.media]);
      }
      pump();
    }, { rootMargin: '200px' });
  }
  img.dataset.media = id;
  observer.observe(img);
}

/* "3000 × 4000 · Pixel 7 · 2024-05-01 12:34 · 0:03 · 12 pages" */
function facts(m) {
  const md = m.metadata || {};
  const out = [];
  if (md.width && md.height) out.push(md.width + ' × ' + md.height);
  if (md.camera) out.push(md.camera);
  if (md.taken_at) out.push(md.taken_at.replace('T', ' ').slice(0, 16));
  if (md.duration_ms != null) {
    const s = Math.round(md.duration_ms / 1000);
    out.push(Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0'));
  }
  if (md.pages) out.push(md.pages + (md.pages === 1 ? ' page' : ' pages'));
  out.push(fmtSize(m.size));
  return out.join(' · ');
}

let previewUrl = null;
async function openPreview(m) {
  const d = $('preview');
  const img = $('preview-img');
  $('preview-title').textContent = m.name;
  $('preview-facts').textContent = facts(m);
  $('preview-error').textContent = '';
  img.removeAttribute('src');
  img.alt = 'Preview of ' + m.name;
  if (!d.open) d.showModal();
  try {
    const u = await variantUrl(m.id, 'preview');
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = u;
    img.src = u;
  } catch (e) {
    $('preview-error').textContent = 'There is no preview of this file (' + e.message + ').';
  }
}

function closePreview() {
  const d = $('preview');
  if (d.open) d.close();
}

export function registerMedia() {
  registerRowDecorator((m, tr) => {
    if (!hasPicture(m)) return;
    const img = el('img', { class: 'thumb', alt: '', width: '48', height: '48', decoding: 'async' });
    const btn = el('button', { type: 'button', class: 'thumb-btn', 'aria-label': 'Preview ' + m.name,
      onclick: () => openPreview(m) }, img);
    const name = tr.querySelector('td.name');
    name.prepend(btn);
    watch(img, m.id);
  });
  registerFileAction({ id: 'preview', label: 'Preview', visible: hasPicture, run: openPreview });
  onListing(() => {
    /* the rows are new: the old blob: URLs and queued loads go */
    for (const u of urls) URL.revokeObjectURL(u);
    urls = [];
    queue = [];
  });
  $('preview-close').addEventListener('click', closePreview);
  $('preview').addEventListener('close', () => {
    $('preview-img').removeAttribute('src');
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
  });
  const grid = $('view-grid');
  const apply = (on) => {
    $('listing').classList.toggle('grid', on);
    grid.setAttribute('aria-pressed', on ? 'true' : 'false');
  };
  apply(localStorage.getItem('dripd.grid') === '1');
  grid.addEventListener('click', () => {
    const on = grid.getAttribute('aria-pressed') !== 'true';
    localStorage.setItem('dripd.grid', on ? '1' : '0');
    apply(on);
  });
}
