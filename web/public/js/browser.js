/* browser.js - the folder view: breadcrumbs, subfolders and files.
 *
 * Extension points, so features are added beside this file rather than
 * into it:
 *   registerFileAction({id, label, visible(m), run(m)})  a button on each
 *       file the action applies to (visible decides, e.g. owner-only);
 *   registerFolderAction({id, label, visible(d), run(d)})  the same on each
 *       subfolder row (d: {name, path, files, size} from the listing);
 *   registerToolbarButton({id, label, run()})  a button in the toolbar;
 *   registerRowDecorator(fn(m, tr))  adds to a file's row (thumbnails...);
 *   onListing(fn(listing))           after every listing is shown.
 * A file shared with the caller carries `shared: true` and its `owner`;
 * the row says who shared it, and only actions whose visible() accepts
 * such a file appear on it.
 */
import { $, el, fmtSize, fmtDate, joinPath, folderHref } from './util.js';
import { api } from './api.js';

export const view = { folder: '/', listing: null };
const actions = [];
const folderActions = [];
const decorators = [];
const listeners = new Set();
let loadSeq = 0;

export function registerFileAction(a) { actions.push(a); }
export function registerFolderAction(a) { folderActions.push(a); }
export function registerToolbarButton(b) {
  $('toolbar-extra').append(el('button', { type: 'button', id: b.id, text: b.label, onclick: () => b.run() }));
}
export function registerRowDecorator(fn) { decorators.push(fn); }
export function onListing(fn) { listeners.add(fn); return () => listeners.delete(fn); }

/* The caller may move, rename, share and delete only what they own. */
export const isOwn = (m) => !m.shared;

export function folderFromHash() {
  let f = '/';
  try { f = decodeURIComponent((location.hash || '#/').slice(1)) || '/'; } catch (e) { f = '/'; }
  if (!f.startsWith('/')) f = '/' + f;
  if (f.length > 1 && f.endsWith('/')) f = f.slice(0, -1);
  return f;
}

export function openFolder(folder) {
  view.folder = folder;
  $('drop-folder').textContent = folder;
  $('dropzone').setAttribute('aria-label', 'Upload files to ' + folder + ': press to choose them, or drop them here');
  renderCrumbs();
  return loadListing();
}

function renderCrumbs() {
  const nav = $('crumbs');
  nav.replaceChildren();
  const parts = view.folder.split('/').filter(Boolean);
  const home = el('a', { href: '#/', text: 'Home' });
  if (!parts.length) home.setAttribute('aria-current', 'page');
  nav.append(home);
  let acc = '';
  parts.forEach((p, i) => {
    acc += '/' + p;
    const a = el('a', { href: folderHref(acc), text: p });
    if (i === parts.length - 1) a.setAttribute('aria-current', 'page');
    nav.append(el('span', { class: 'sep', 'aria-hidden': 'true', text: '/' }), a);
  });
}

export async function loadListing() {
  const seq = ++loadSeq;
  const folder = view.folder;
  $('list-error').textContent = '';
  let doc;
  try {
    doc = await api('GET', '/v1/media?folder=' + encodeURIComponent(folder));
  } catch (e) {
    if (seq !== loadSeq) return;
    if (e.status === 401) return; /* api.js signs out */
    doc = { folders: [], files: [] };
    $('list-error').textContent = 'This folder could not be loaded. ' + e.message;
  }
  if (seq !== loadSeq) return; /* a newer request is on its way */
  view.listing = doc;
  renderListing();
  for (const fn of listeners) fn(doc);
}

function sorted(files) {
  const key = $('sort').value;
  const cmp = {
    name: (a, b) => a.name.localeCompare(b.name),
    size: (a, b) => (a.size || 0) - (b.size || 0),
    date: (a, b) => String(a.created_at).localeCompare(String(b.created_at)),
    type: (a, b) => String(a.content_type || '').localeCompare(String(b.content_type || '')),
  }[key] || ((a, b) => a.name.localeCompare(b.name));
  return [...files].sort(cmp);
}

export function renderListing() {
  const rows = $('rows');
  rows.replaceChildren();
  const { folders = [], files = [] } = view.listing || {};
  for (const d of [...folders].sort((a, b) => a.name.localeCompare(b.name))) rows.append(folderRow(d));
  for (const m of sorted(files)) rows.append(fileRow(m));
  const n = folders.length + files.length;
  $('empty').hidden = n > 0;
  $('listing').hidden = n === 0;
}

function folderRow(d) {
  const count = d.files + (d.files === 1 ? ' file' : ' files');
  const path = d.path || joinPath(view.folder, d.name);
  const acts = el('td', { class: 'acts' });
  for (const a of folderActions) {
    if (a.visible && !a.visible(d)) continue;
    acts.append(el('button', { type: 'button', class: a.id, 'aria-label': a.label + ' folder ' + d.name,
      text: a.label, onclick: () => a.run(Object.assign({ path }, d)) }));
  }
  return el('tr', { class: 'folder', 'data-folder': d.name },
    el('td', { class: 'name' },
      el('a', { href: folderHref(joinPath(view.folder, d.name)), class: 'folder-link' },
        el('span', { class: 'icon', 'aria-hidden': 'true', text: '▸' }), d.name + '/')),
    el('td', { class: 'size num', text: fmtSize(d.size) }),
    el('td', { class: 'type', text: count }),
    el('td', { class: 'date' }),
    el('td', { class: 'state' }),
    acts);
}

const STATE_TEXT = { queued: 'processing', available: 'available', failed: 'failed' };

function fileRow(m) {
  const st = m.state || '';
  const name = el('td', { class: 'name' }, el('span', { class: 'fname', text: m.name }));
  if (m.shared) {
    name.append(el('span', { class: 'badge shared', text: 'shared by ' + (m.owner || 'someone') }));
  }
  const acts = el('td', { class: 'acts' });
  for (const a of actions) {
    if (a.visible && !a.visible(m)) continue;
    acts.append(el('button', { type: 'button', class: a.id, 'aria-label': a.label + ' ' + m.name,
      text: a.label, onclick: () => a.run(m) }));
  }
  const tr = el('tr', { class: 'file' + (m.shared ? ' is-shared' : ''), 'data-id': m.id },
    name,
    el('td', { class: 'size num', text: fmtSize(m.size) }),
    el('td', { class: 'type', text: m.content_type || '' }),
    el('td', { class: 'date', text: fmtDate(m.created_at) }),
    el('td', { class: 'state state-' + st, text: STATE_TEXT[st] || st }),
    acts);
  for (const fn of decorators) fn(m, tr);
  return tr;
}

/* A job finished for media id: show it available without a reload. */
export function markAvailable(mediaId) {
  const td = document.querySelector('tr.file[data-id="' + CSS.escape(mediaId) + '"] td.state');
  if (td) { td.textContent = 'available'; td.className = 'state state-available'; }
}
