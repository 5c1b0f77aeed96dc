/* dripd web UI: sign in with a token, upload over tus, browse, download,
 * rename/move, delete, share, and follow each upload's job live.
 *
 * This file only wires the modules together; each lives in js/:
 *   util.js     DOM and formatting helpers
 *   api.js      the session and JSON requests; errors as plain sentences
 *   notices.js  messages at the top (errors stay until dismissed)
 *   dialog.js   the modal question; an error keeps it open with the input
 *   events.js   live job events (SSE over fetch), onJobEvent(fn)
 *   browser.js  the folder view; registerFileAction / registerRowDecorator
 *   actions.js  download, rename or move, share, delete
 *   uploads.js  tus uploads and the Uploads panel
 *   media.js    thumbnails, the grid view and the preview dialog
 *   sharing.js  who sees a file or folder, unsharing, public links
 *   folders.js  new folder; rename, move and delete a folder
 *   pipeline.js the live pipeline view (#pipeline, admins only)
 *   versions.js a file's versions and restoring one; the trash
 * A new feature is a new module that registers itself here.
 *
 * Security rules every module keeps:
 *  - the token lives in sessionStorage and goes only into Authorization
 *    headers (never a URL): SSE uses fetch(), not EventSource, and a
 *    download follows a short-lived signed link;
 *  - every user-controlled string reaches the DOM through textContent or
 *    an attribute setter, never as markup;
 *  - no inline scripts or styles, nothing from another origin (the CSP
 *    forbids them).
 */
import { $ } from './js/util.js';
import { session, signIn, forget, onRefused } from './js/api.js';
import { clearNotices } from './js/notices.js';
import { startEvents, stopEvents, onJobEvent } from './js/events.js';
import { view, folderFromHash, openFolder, loadListing, renderListing, markAvailable } from './js/browser.js';
import { registerActions } from './js/actions.js';
import { initUploads, addFiles } from './js/uploads.js';
import { registerMedia } from './js/media.js';
import { registerSharing } from './js/sharing.js';
import { registerFolders } from './js/folders.js';
import { initPipelineLink, isPipelineHash, startPipeline, stopPipeline } from './js/pipeline.js';
import { registerVersions } from './js/versions.js';

function showSignIn(message) {
  stopEvents();
  stopPipeline();
  $('pipeline-link').hidden = true;
  $('files-link').hidden = true;
  $('app').hidden = true;
  $('signout').hidden = true;
  $('whoami').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('token').value = '';
  $('token').focus();
}

function showApp() {
  const me = session.me;
  $('whoami-name').textContent = me.user;
  $('whoami-role').hidden = !me.admin;
  $('whoami').hidden = false;
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
  initPipelineLink();
  route();
  startEvents();
}

/* #pipeline is the admins' live view; every other hash is a folder. The
 * pipeline's stream runs only while its view is shown. */
function route() {
  const pipeline = isPipelineHash() && session.me && session.me.admin;
  $('app').hidden = !!pipeline;
  $('files-link').hidden = !pipeline;
  if (pipeline) {
    startPipeline();
  } else {
    stopPipeline();
    openFolder(folderFromHash());
  }
}

/* The listing follows the jobs: a finished upload shows at once, and the
 * folder is reloaded (debounced) when something was created or ended. */
let reloadTimer = null;
function onJob(job, type) {
  if (job.state === 'done' && job.kind === 'upload' && job.media_id) markAvailable(job.media_id);
  if (job.state === 'done' || job.state === 'failed' || type === 'job.created') {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(loadListing, 300);
  }
}

function wireDropzone() {
  const dz = $('dropzone');
  const input = $('file-input');
  const pick = () => input.click();
  dz.addEventListener('click', pick);
  dz.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); pick(); }
  });
  input.addEventListener('change', () => { addFiles(input.files, view.folder); input.value = ''; });
  dz.addEventListener('dragover', (ev) => { ev.preventDefault(); dz.classList.add('over'); });
  dz.addEventListener('dragleave', () => dz.classList.remove('over'));
  dz.addEventListener('drop', (ev) => {
    ev.preventDefault();
    dz.classList.remove('over');
    addFiles(ev.dataTransfer.files, view.folder);
  });
}

function init() {
  registerActions();
  registerMedia();
  registerFolders();
  registerSharing();
  registerVersions();
  initUploads();
  onJobEvent(onJob);
  onRefused(() => { forget(); showSignIn('Your token was refused. Sign in again.'); });
  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('signin-error').textContent = '';
    try {
      await signIn($('token').value.trim());
      showApp();
    } catch (e) {
      $('signin-error').textContent = e.status === 401 ? 'That token was refused.' : 'Signing in failed. ' + e.message;
    }
  });
  $('signout').addEventListener('click', () => { forget(); clearNotices(); showSignIn(); });
  $('refresh').addEventListener('click', () => loadListing());
  $('sort').addEventListener('change', renderListing);
  window.addEventListener('hashchange', () => { if (session.me) route(); });
  wireDropzone();
  if (session.token) {
    signIn(session.token).then(showApp, () => { forget(); showSignIn(); });
  } else {
    showSignIn();
  }
}

init();
