/* sharing.js - sharing that can be taken back, and public links.
 *
 * "Share" on a file (its owner only) opens one dialog with who sees it
 * (shared with them on its own, with a Remove button, or through a
 * shared folder, named) and its public links (state, downloads, expiry,
 * the URL with Copy, Revoke), and forms to share with someone and to
 * create a link with an expiry and a download limit. "Share" on a folder
 * opens the same dialog for the folder: a folder share covers what is put
 * there later too (the note says so); links are per file.
 * "Public links" in the toolbar lists every link of the caller's.
 *
 * Server routes: GET/POST /v1/media/{id}/shares, DELETE
 * /v1/media/{id}/shares/{user}, GET/POST/DELETE /v1/folders/shares,
 * POST /v1/media/{id}/public-links, GET /v1/public-links, DELETE
 * /v1/public-links/{id}. A link's URL is /p/<token>: it carries no
 * bearer token (the server derives it), so showing and copying it is
 * fine.
 */
import { $, el, fmtDate } from './util.js';
import { api } from './api.js';
import { notify } from './notices.js';
import { registerToolbarButton } from './browser.js';

let target = null; /* {kind: 'file', m} or {kind: 'folder', d} */

const enc = encodeURIComponent;
const absUrl = (u) => new URL(u, location.origin).href;

async function copy(input) {
  try {
    await navigator.clipboard.writeText(input.value);
  } catch (e) {
    input.select(); /* no clipboard access (an insecure origin): select it for Ctrl-C */
    notify('Select the link and copy it with Ctrl-C.', 'info');
    return;
  }
  notify('Copied the link.');
}

/* One public link as a list item: (the file's path,) URL with Copy,
 * facts, Revoke. */
function linkItem(l, onRevoked, showPath) {
  const input = el('input', { class: 'url', type: 'text', readonly: true, value: l.url ? absUrl(l.url) : '',
    'aria-label': 'Link to ' + l.path });
  const limit = l.max_downloads ? l.downloads + ' of ' + l.max_downloads + ' downloads' :
    l.downloads + (l.downloads === 1 ? ' download' : ' downloads');
  const expiry = l.expires_at ? (l.state === 'expired' ? 'expired ' : 'expires ') + fmtDate(l.expires_at) : 'never expires';
  const stateCls = l.state === 'active' ? '' : l.state === 'expired' ? 'state-expired' : 'state-used';
  return el('li', { class: 'link', 'data-link': l.id, 'data-state': l.state },
    showPath ? el('span', { class: 'who', text: l.path }) : null,
    input,
    el('button', { type: 'button', class: 'copy', text: 'Copy', 'aria-label': 'Copy the link to ' + l.path,
      onclick: () => copy(input) }),
    el('button', { type: 'button', class: 'revoke', text: 'Revoke', 'aria-label': 'Revoke the link to ' + l.path,
      onclick: async () => {
        try {
          await api('DELETE', '/v1/public-links/' + enc(l.id));
        } catch (e) {
          if (e.status !== 404) { notify('The link could not be revoked. ' + e.message, 'error'); return; }
        }
        notify('Revoked the link to ' + l.path + '.');
        onRevoked();
      } }),
    el('span', { class: 'facts ' + stateCls, text: [l.state, limit, expiry].join(' · ') }));
}

/* ---------- the dialog ---------- */

async function loadPeople() {
  const list = $('share-list');
  list.replaceChildren();
  let shares = [];
  try {
    if (target.kind === 'file') {
      shares = (await api('GET', '/v1/media/' + enc(target.m.id) + '/shares')).shares;
    } else {
      shares = (await api('GET', '/v1/folders/shares?path=' + enc(target.d.path))).shares;
    }
  } catch (e) {
    $('share-error').textContent = 'Who it is shared with could not be loaded. ' + e.message;
  }
  for (const s of shares) {
    const li = el('li', { class: 'share', 'data-user': s.user }, el('span', { class: 'who', text: s.user }));
    if (s.via === 'folder') {
      li.append(el('span', { class: 'muted', text: 'through the shared folder ' + s.folder }));
    } else {
      li.append(el('button', { type: 'button', class: 'unshare', text: 'Remove',
        'aria-label': 'Stop sharing with ' + s.user, onclick: () => unshare(s.user) }));
    }
    list.append(li);
  }
  $('share-none').hidden = shares.length > 0;
}

async function loadLinks() {
  const list = $('link-list');
  list.replaceChildren();
  if (target.kind !== 'file') return;
  try {
    const doc = await api('GET', '/v1/public-links?media_id=' + enc(target.m.id));
    for (const l of doc.links) list.append(linkItem(l, loadLinks, false));
  } catch (e) {
    $('link-error').textContent = 'The links could not be loaded. ' + e.message;
  }
}

async function unshare(user) {
  $('share-error').textContent = '';
  try {
    if (target.kind === 'file') {
      await api('DELETE', '/v1/media/' + enc(target.m.id) + '/shares/' + enc(user));
    } else {
      await api('DELETE', '/v1/folders/shares?path=' + enc(target.d.path) + '&user=' + enc(user));
    }
    notify(user + ' no longer sees ' + label() + '.');
  } catch (e) {
    if (e.status !== 404) $('share-error').textContent = e.message;
  }
  loadPeople();
}

const label = () => target.kind === 'file' ? '“' + target.m.name + '”' : 'the folder ' + target.d.path;

async function share(ev) {
  ev.preventDefault();
  const user = $('share-user').value.trim();
  $('share-error').textContent = '';
  if (!user) { $('share-error').textContent = 'Type the name of the user to share with.'; return; }
  const btn = $('share-add');
  btn.disabled = true;
  try {
    let res;
    if (target.kind === 'file') {
      res = await api('POST', '/v1/media/' + enc(target.m.id) + '/shares', { user }, { user, name: target.m.name });
    } else {
      res = await api('POST', '/v1/folders/shares', { path: target.d.path, user }, { user });
    }
    $('share-user').value = '';
    notify(res && res.created ? 'Shared ' + label() + ' with ' + user + '.' : user + ' could already see ' + label() + '.');
    await loadPeople();
  } catch (e) {
    $('share-error').textContent = e.status === 404 && target.kind === 'folder' ?
      'You have no folder ' + target.d.path + ' any more.' : e.message;
  } finally {
    btn.disabled = false;
  }
}

async function createLink(ev) {
  ev.preventDefault();
  $('link-error').textContent = '';
  const body = {};
  const exp = $('link-expires').value;
  if (exp) body.expires_in = Number(exp);
  const max = $('link-max').value.trim();
  if (max) {
    const n = Number(max);
    if (!Number.isInteger(n) || n < 1) { $('link-error').textContent = 'The download limit is a whole number from 1.'; return; }
    body.max_downloads = n;
  }
  const btn = $('link-create');
  btn.disabled = true;
  try {
    const l = await api('POST', '/v1/media/' + enc(target.m.id) + '/public-links', body, { name: target.m.name });
    $('link-max').value = '';
    await loadLinks();
    const input = document.querySelector('#link-list li[data-link="' + CSS.escape(l.id) + '"] input.url');
    if (input) input.focus();
  } catch (e) {
    $('link-error').textContent = e.message;
  } finally {
    btn.disabled = false;
  }
}

function open(t) {
  target = t;
  const file = t.kind === 'file';
  $('share-title').textContent = file ? 'Share “' + t.m.name + '”' : 'Share the folder ' + t.d.path;
  $('share-note').textContent = file ? 'They can see and download it, not change it.' :
    'They can see and download every file in it, including files put there later; ' +
    'files moved out of it are no longer shared.';
  $('links-section').hidden = !file;
  $('share-error').textContent = '';
  $('link-error').textContent = '';
  $('share-user').value = '';
  $('share-list').replaceChildren();
  $('link-list').replaceChildren();
  const d = $('share-dlg');
  if (!d.open) d.showModal();
  $('share-user').focus();
  loadPeople();
  loadLinks();
}

/* ---------- every link ---------- */

async function loadAllLinks() {
  const list = $('all-links');
  list.replaceChildren();
  $('links-error').textContent = '';
  let links = [];
  try {
    links = (await api('GET', '/v1/public-links')).links;
  } catch (e) {
    $('links-error').textContent = 'Your links could not be loaded. ' + e.message;
  }
  for (const l of links) list.append(linkItem(l, loadAllLinks, true));
  $('links-none').hidden = links.length > 0;
}

function openAllLinks() {
  const d = $('links-dlg');
  if (!d.open) d.showModal();
  loadAllLinks();
}

/* The file action "Share" (actions.js registers it, in its place among
 * the file's buttons). */
export function shareFile(m) { open({ kind: 'file', m }); }
/* The folder action "Share" (folders.js registers it). */
export function shareFolder(d) { open({ kind: 'folder', d }); }

export function registerSharing() {
  registerToolbarButton({ id: 'show-links', label: 'Public links', run: openAllLinks });
  $('share-form').addEventListener('submit', share);
  $('link-form').addEventListener('submit', createLink);
  $('share-close').addEventListener('click', () => $('share-dlg').close());
  $('links-close').addEventListener('click', () => $('links-dlg').close());
}
