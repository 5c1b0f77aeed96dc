/* versions.js - earlier versions and the trash.
 *
 * "Versions" on a file (its owner only) lists its versions: the current
 * one, a replacement still being stored, and the earlier ones the server
 * keeps (versions.keep), each with its size and upload time; an earlier
 * version has "Restore", which makes it the file again. "Trash" in the
 * toolbar lists the caller's deleted files (trash.ttl) with when each
 * goes for good and "Restore". Deleting a file says whether it goes to
 * the trash (trashTtl(), from GET /v1/trash) or for good.
 *
 * Server routes: GET /v1/media/{id}/versions, POST
 * /v1/media/{id}/versions/{n}/restore, GET /v1/trash, POST
 * /v1/trash/{id}/restore.
 */
import { $, el, fmtDate, fmtSize } from './util.js';
import { api } from './api.js';
import { notify } from './notices.js';
import { registerToolbarButton, loadListing } from './browser.js';

const enc = encodeURIComponent;
let ttlSeconds = 0;

/* Seconds a deleted file stays in the trash (0: no trash), asked of the
 * server each time (its config may have been reloaded). */
export async function trashTtl() {
  try {
    ttlSeconds = (await api('GET', '/v1/trash')).ttl_seconds || 0;
  } catch (e) {
    ttlSeconds = 0; /* unknown: the delete dialog says "for good", the safe thing to say */
  }
  return ttlSeconds;
}

/* ---------- versions ---------- */

let current = null; /* the media whose versions are shown */

function versionItem(v) {
  const what = !v.retired ? 'current' : v.retired === 'pending' ? 'being uploaded' : 'earlier version';
  const li = el('li', { class: 'version', 'data-version': String(v.version), 'data-state': v.retired || 'current' },
    el('span', { class: 'who', text: 'Version ' + v.version }),
    el('span', { class: 'facts', text: [what, fmtSize(v.size), v.uploaded_at ? fmtDate(v.uploaded_at) : ''].filter(Boolean).join(' · ') }));
  if (v.retired === 'version' && v.state === 'available') {
    li.append(el('button', { type: 'button', class: 'restore', text: 'Restore',
      'aria-label': 'Restore version ' + v.version, onclick: () => restoreVersion(v) }));
  }
  return li;
}

async function loadVersions() {
  const list = $('versions-list');
  list.replaceChildren();
  $('versions-error').textContent = '';
  try {
    const doc = await api('GET', '/v1/media/' + enc(current.id) + '/versions');
    for (const v of doc.versions) list.append(versionItem(v));
    $('versions-note').textContent = doc.keep ? 'The server keeps ' + doc.keep +
      (doc.keep === 1 ? ' earlier version.' : ' earlier versions.') :
      'The server keeps no earlier versions (versions.keep is 0).';
  } catch (e) {
    $('versions-error').textContent = 'The versions could not be loaded. ' + e.message;
  }
}

async function restoreVersion(v) {
  $('versions-error').textContent = '';
  try {
    const m = await api('POST', '/v1/media/' + enc(current.id) + '/versions/' + v.version + '/restore');
    current = m;
    notify('Version ' + v.version + ' of ' + m.path + ' is the current one again.');
    loadListing();
    await loadVersions();
  } catch (e) {
    $('versions-error').textContent = e.status === 409 ? 'The file is in the trash: restore it from there first.' : e.message;
  }
}

/* The file action "Versions" (actions.js registers it, in its place). */
export function openVersions(m) {
  current = m;
  $('versions-title').textContent = 'Versions of “' + m.name + '”';
  const d = $('versions-dlg');
  if (!d.open) d.showModal();
  loadVersions();
}

/* ---------- trash ---------- */

async function loadTrash() {
  const list = $('trash-list');
  list.replaceChildren();
  $('trash-error').textContent = '';
  let files = [];
  try {
    const doc = await api('GET', '/v1/trash');
    files = doc.files;
    ttlSeconds = doc.ttl_seconds || 0;
  } catch (e) {
    $('trash-error').textContent = 'The trash could not be loaded. ' + e.message;
  }
  for (const f of files) {
    list.append(el('li', { class: 'trashed', 'data-id': f.id },
      el('span', { class: 'who', text: f.path }),
      el('span', { class: 'facts', text: [fmtSize(f.size), 'deleted ' + fmtDate(f.retired_at),
        f.expires_at ? 'goes ' + fmtDate(f.expires_at) : ''].filter(Boolean).join(' · ') }),
      el('button', { type: 'button', class: 'restore', text: 'Restore', 'aria-label': 'Restore ' + f.path,
        onclick: () => untrash(f) })));
  }
  $('trash-none').textContent = ttlSeconds ? 'The trash is empty.' :
    'The trash is off on this server (trash.ttl is 0): deleted files go for good.';
  $('trash-none').hidden = files.length > 0;
}

async function untrash(f) {
  $('trash-error').textContent = '';
  try {
    const m = await api('POST', '/v1/trash/' + enc(f.id) + '/restore');
    notify('Restored ' + m.path + '.');
    loadListing();
  } catch (e) {
    if (e.status === 409) {
      $('trash-error').textContent = f.path + ' is taken now: move or rename what is there, then restore.';
      return;
    }
    if (e.status !== 404) { $('trash-error').textContent = e.message; return; }
  }
  loadTrash();
}

function openTrash() {
  const d = $('trash-dlg');
  if (!d.open) d.showModal();
  loadTrash();
}

export function registerVersions() {
  registerToolbarButton({ id: 'show-trash', label: 'Trash', run: openTrash });
  $('versions-close').addEventListener('click', () => $('versions-dlg').close());
  $('trash-close').addEventListener('click', () => $('trash-dlg').close());
}
