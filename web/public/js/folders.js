/* folders.js - folders as first-class: "New folder" in the toolbar, and
 * on each folder "Rename" (a new name, a new path, or a folder ending in /
 * to move it there, with everything in it), "Share" (sharing.js) and
 * "Delete" (with everything
 * in it, after a confirmation that says how many files go, and whether
 * they go to the trash: trash.ttl).
 *
 * Server routes: POST /v1/folders {"path"}, PATCH /v1/folders
 * {"from","to"} (one transaction on the server: the folder moves whole or
 * not at all), DELETE /v1/folders?path=.
 */
import { joinPath, fmtTtl } from './util.js';
import { api } from './api.js';
import { ask } from './dialog.js';
import { notify } from './notices.js';
import { view, registerFolderAction, registerToolbarButton, loadListing, openFolder } from './browser.js';
import { shareFolder } from './sharing.js';
import { trashTtl } from './versions.js';

const enc = encodeURIComponent;

/* A sentence for a folder request that failed. */
function folderError(e, path) {
  if (e.status === 404) return 'You have no folder ' + path + ' (it was moved or deleted, or it is not yours).';
  if (e.status === 409 && /is a folder/.test(e.detail)) return 'There is a folder there already; choose another name.';
  if (e.status === 409 && /exists/.test(e.detail)) return 'There is a file of that name there; choose another name.';
  if (e.status === 409) return 'That place is inside a file, not a folder; choose another.';
  if (e.status === 400 && /into itself/.test(e.detail)) return 'A folder cannot go inside itself.';
  return e.message;
}

async function newFolder() {
  const made = await ask({
    title: 'New folder in ' + view.folder,
    label: 'Folder name',
    value: '',
    okText: 'Create',
    submit: async (v) => {
      const name = v.trim();
      if (!name) throw new Error('Type a name for the folder.');
      if (name.includes('/')) throw new Error('A folder name cannot contain /.');
      const path = joinPath(view.folder, name);
      try {
        return await api('POST', '/v1/folders', { path });
      } catch (e) {
        throw new Error(folderError(e, path));
      }
    },
  });
  if (!made) return;
  notify(made.created ? 'Made the folder ' + made.path + '.' : 'The folder ' + made.path + ' was there already.');
  loadListing();
}

/* "new" renames in place; "/a/b" is a full path; "/a/" moves it into /a. */
function targetOf(d, typed) {
  const v = typed.trim();
  if (!v) throw new Error('Type a new name or path.');
  if (!v.startsWith('/')) {
    if (v.includes('/')) throw new Error('A path starts with /; a new name has no /.');
    return joinPath(view.folder, v);
  }
  return v;
}

async function renameFolder(d) {
  const done = await ask({
    title: 'Rename or move the folder ' + d.path,
    text: 'A new name, a new path, or a folder ending in / to move it there. Everything in it goes along.',
    label: 'New name or path',
    value: d.path,
    okText: 'Save',
    submit: async (v) => {
      const to = targetOf(d, v);
      if (to === d.path) return null;
      try {
        return await api('PATCH', '/v1/folders', { from: d.path, to });
      } catch (e) {
        throw new Error(folderError(e, d.path));
      }
    },
  });
  if (!done) return;
  notify('Moved the folder ' + done.from + ' to ' + done.to + ' (' + done.files +
    (done.files === 1 ? ' file).' : ' files).'));
  loadListing();
}

async function deleteFolder(d) {
  const n = d.files || 0;
  const ttl = await trashTtl();
  const some = n === 1 ? 'file' : n + ' files';
  const ok = await ask({
    title: 'Delete the folder ' + d.path + '?',
    text: !n ? 'The folder is empty. It will be deleted.'
      : ttl ? 'The ' + some + ' in it go' + (n === 1 ? 'es' : '') + ' to the trash, where you can restore ' +
        (n === 1 ? 'it' : 'them') + ' for ' + fmtTtl(ttl) + '; restoring brings the folder back.'
        : 'The folder and the ' + some + ' in it will be deleted, with their stored copies. This cannot be undone.',
    okText: n ? 'Delete ' + (n === 1 ? '1 file' : n + ' files') : 'Delete',
    danger: true,
    submit: async () => {
      try {
        return await api('DELETE', '/v1/folders?path=' + enc(d.path));
      } catch (e) {
        if (e.status === 404) return { path: d.path, files: 0 }; /* gone already: what was asked */
        throw new Error(folderError(e, d.path));
      }
    },
  });
  if (!ok) return;
  const nf = ok.files ? ok.files + (ok.files === 1 ? ' file' : ' files') : '';
  notify(ok.trash && nf ? 'Moved the folder ' + ok.path + ' and its ' + nf + ' to the trash.'
    : 'Deleted the folder ' + ok.path + (nf ? ' and ' + nf + '.' : '.'));
  if (view.folder === d.path || view.folder.startsWith(d.path + '/')) openFolder('/');
  else loadListing();
}

export function registerFolders() {
  registerToolbarButton({ id: 'new-folder', label: 'New folder', run: newFolder });
  registerFolderAction({ id: 'rename-folder', label: 'Rename', run: renameFolder });
  registerFolderAction({ id: 'share-folder', label: 'Share', run: shareFolder });
  registerFolderAction({ id: 'delete-folder', label: 'Delete', run: deleteFolder });
}
