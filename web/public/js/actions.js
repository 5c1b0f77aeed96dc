/* actions.js - what can be done to a file: download (anyone who sees it),
 * rename or move, share (sharing.js: people and public links), versions
 * (versions.js) and delete (its owner only; into the trash when the server
 * keeps one). Each is registered
 * with the folder view (browser.js registerFileAction); other features add
 * theirs the same way.
 */
import { el, joinPath, fmtTtl } from './util.js';
import { api, authHeaders, ApiError, problemDetail } from './api.js';
import { ask } from './dialog.js';
import { notify } from './notices.js';
import { registerFileAction, isOwn, loadListing } from './browser.js';
import { mediaGone } from './uploads.js';
import { shareFile } from './sharing.js';
import { trashTtl, openVersions } from './versions.js';

async function download(m) {
  /* The browser's own download manager streams the file to disk. It cannot
   * send our Authorization header, so ask for a short-lived signed link to
   * the content (the token never goes into a URL) and let it follow that. */
  try {
    let r;
    try {
      r = await fetch('/v1/media/' + encodeURIComponent(m.id) + '/link?expires_in=60',
        { method: 'POST', headers: authHeaders() });
    } catch (e) {
      throw new ApiError(0, String(e));
    }
    if (!r.ok) throw new ApiError(r.status, problemDetail(await r.text()), { name: m.name });
    const link = await r.json();
    const a = el('a', { href: link.url, download: m.name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) {
    notify('“' + m.name + '” could not be downloaded. ' + e.message, 'error');
    if (e.status === 404) loadListing(); /* the row was stale */
  }
}

/* "new.txt" renames in place; "/a/b.txt" is a full path; "/a/" (or any
 * path ending in /) moves into that folder keeping the name, like mv. */
export function targetPath(m, typed) {
  const v = typed.trim();
  if (!v) throw new Error('Type a new name or path.');
  if (!v.startsWith('/')) {
    if (v.includes('/')) throw new Error('A path starts with /; a new name has no /.');
    return joinPath(m.folder || '/', v);
  }
  return v.endsWith('/') ? v + m.name : v;
}

async function rename(m) {
  const done = await ask({
    title: 'Rename or move “' + m.name + '”',
    text: 'A new name, a new path, or a folder ending in / to move it there.',
    label: 'New name or path',
    value: m.path,
    okText: 'Save',
    submit: async (v) => {
      const path = targetPath(m, v);
      if (path === m.path) return null;
      const folder = path.slice(0, path.lastIndexOf('/')) || '/';
      return api('PATCH', '/v1/media/' + encodeURIComponent(m.id), { path },
        { name: path.slice(path.lastIndexOf('/') + 1), folder });
    },
  });
  if (!done) return;
  notify('Moved “' + m.name + '” to ' + done.path + '.');
  loadListing();
}

async function remove(m) {
  const ttl = await trashTtl();
  const ok = await ask({
    title: 'Delete “' + m.name + '”?',
    text: ttl ? m.path + ' goes to the trash, where you can restore it for ' + fmtTtl(ttl) + '.' :
      m.path + ' and its stored copy will be deleted. This cannot be undone.',
    okText: 'Delete',
    danger: true,
    submit: async () => {
      try {
        await api('DELETE', '/v1/media/' + encodeURIComponent(m.id), undefined, { name: m.name });
      } catch (e) {
        if (e.status !== 404) throw e; /* already gone: what was asked */
      }
      return true;
    },
  });
  if (!ok) return;
  mediaGone(m.id);
  notify(ttl ? 'Moved “' + m.name + '” to the trash.' : 'Deleted “' + m.name + '”.');
  loadListing();
}

export function registerActions() {
  registerFileAction({ id: 'download', label: 'Download', run: download });
  registerFileAction({ id: 'rename', label: 'Rename', visible: isOwn, run: rename });
  registerFileAction({ id: 'share', label: 'Share', visible: isOwn, run: shareFile });
  registerFileAction({ id: 'versions', label: 'Versions', visible: isOwn, run: openVersions });
  registerFileAction({ id: 'delete', label: 'Delete', visible: isOwn, run: remove });
}

