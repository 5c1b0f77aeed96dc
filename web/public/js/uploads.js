/* uploads.js - resumable uploads over tus (the vendored tus-js-client),
 * one row per file in the Uploads panel.
 *
 * Each row shows a bar, the bytes done, the speed over the last few
 * seconds and the time left, then the job's progress (processing ->
 * available) live from the event stream. Failures are plain sentences:
 *   - a lost connection or a 5xx is retried by tus, then offers Retry;
 *   - any other 4xx is final: the bar turns red and no Retry is offered;
 * A file of 64 MiB or more goes up as 4 partial uploads at once (tus
 * concatenation: tus-js-client parallelUploads), joined by the server;
 * its name is checked before any byte is sent. Only if the server offers
 * concatenation (OPTIONS /v1/uploads, Tus-Extension, asked once at the
 * start; a cluster does too, docs/CLUSTER.md): a tus server that does
 * not gets one upload.
 *   - a name that exists already (409) offers Replace (a new version of
 *     the file that is there: If-Match with the ETag the folder showed,
 *     so a file changed meanwhile is not overwritten blindly), Keep both
 *     (?conflict=rename: the server picks the free name, "photo (1).jpg",
 *     shown once stored), Rename... (a name of one's own) or Skip.
 * "Clear finished" empties the panel of what is done; deleting a file in
 * the folder view removes its row too.
 */
import { $, el, fmtSize, fmtDuration, freeName, RateMeter } from './util.js';
import { api, authHeaders, plainError, problemDetail } from './api.js';
import { ask } from './dialog.js';
import { jobs, onJobEvent } from './events.js';
import { onListing } from './browser.js';

const CHUNK = 8 * 1024 * 1024;
/* A file this big goes up as PARALLEL partial uploads at once, joined by
 * a final one (tus concatenation, tus-js-client parallelUploads). */
const PARALLEL_MIN = 64 * 1024 * 1024;
const PARALLEL = 4;
const FINISHED = new Set(['available', 'skipped', 'failed', 'cancelled', 'gone']);
/* whether the server offers tus concatenation (initUploads asks) */
let concatOffered = true;
const recs = new Map();
let seq = 0;

export function initUploads() {
  $('uploads-clear').addEventListener('click', clearFinished);
  fetch('/v1/uploads', { method: 'OPTIONS', headers: { 'Tus-Resumable': '1.0.0' } })
    .then((r) => { concatOffered = (r.headers.get('Tus-Extension') || '').includes('concatenation'); })
    .catch(() => {}); /* unanswered: keep trying parallel; a refusal is a plain 4xx */
  onJobEvent(onJob);
  onListing(checkStillThere);
}

export function addFiles(files, folder) {
  for (const f of files) startUpload(f, folder);
}

function startUpload(file, folder) {
  const rec = {
    id: 'u' + (++seq), file, folder, name: file.name, status: 'uploading', message: '',
    bytes: 0, total: file.size, meter: new RateMeter(), t0: 0, secs: 0,
    jobId: null, mediaId: null, upload: null,
  };
  recs.set(rec.id, rec);
  buildRow(rec);
  begin(rec, true);
}

/* ---------- the row ---------- */
function buildRow(rec) {
  const b = (cls, text, fn) => el('button', { type: 'button', class: cls, text, onclick: fn, hidden: true });
  rec.ui = {
    name: el('span', { class: 'uname' }),
    where: el('span', { class: 'uwhere muted' }),
    state: el('span', { class: 'ustate' }),
    bar: el('progress', { max: '100', value: '0' }),
    stat: el('span', { class: 'stat' }),
    msg: el('p', { class: 'umsg' }),
    pause: b('pause', 'Pause', () => togglePause(rec)),
    cancel: b('cancel', 'Cancel', () => cancel(rec)),
    retry: b('retry', 'Retry', () => begin(rec, true)),
    replace: b('replace', 'Replace', () => replaceAfterConflict(rec)),
    keepboth: b('keepboth', 'Keep both', () => begin(rec, true, { rename: true })),
    rename: b('rename', 'Rename…', () => renameAfterConflict(rec)),
    skip: b('skip', 'Skip', () => setStatus(rec, 'skipped', 'Skipped: “' + rec.name + '” is taken in ' + rec.folder + '.')),
    dismiss: b('dismiss', 'Dismiss', () => removeRow(rec)),
  };
  const u = rec.ui;
  rec.li = el('li', { class: 'upload', 'data-upload': rec.id, 'data-name': rec.name },
    el('div', { class: 'uhead' }, u.name, u.state),
    u.where, u.bar, u.stat, u.msg,
    el('div', { class: 'uacts' }, u.pause, u.cancel, u.retry, u.replace, u.keepboth, u.rename, u.skip, u.dismiss));
  $('uploads').prepend(rec.li);
  render(rec);
}

const STATE_LABEL = {
  uploading: 'uploading', paused: 'paused', error: 'interrupted', failed: 'failed',
  conflict: 'name taken', skipped: 'skipped', cancelled: 'cancelled', queued: 'processing',
  processing: 'processing', available: 'available', gone: 'gone',
};

function render(rec) {
  const u = rec.ui;
  const s = rec.status;
  rec.li.dataset.state = s;
  rec.li.dataset.name = rec.name;
  u.name.textContent = rec.name;
  u.where.textContent = 'to ' + rec.folder;
  u.state.textContent = STATE_LABEL[s] || s;
  u.state.className = 'ustate st-' + s;
  const pct = rec.total ? Math.floor((rec.bytes / rec.total) * 100) : (s === 'uploading' ? 0 : 100);
  u.bar.value = pct;
  u.bar.setAttribute('aria-label', 'Upload of ' + rec.name + ': ' + pct + '%');
  u.stat.textContent = statLine(rec, pct);
  u.msg.textContent = rec.message;
  u.msg.hidden = !rec.message;
  u.msg.setAttribute('role', s === 'failed' || s === 'error' || s === 'conflict' ? 'alert' : 'status');
  u.pause.hidden = !(s === 'uploading' || s === 'paused');
  u.pause.textContent = s === 'paused' ? 'Resume' : 'Pause';
  u.cancel.hidden = !(s === 'uploading' || s === 'paused' || s === 'error');
  u.retry.hidden = s !== 'error';
  u.replace.hidden = !(s === 'conflict' && rec.takenBy === 'file');
  u.keepboth.hidden = s !== 'conflict';
  u.rename.hidden = s !== 'conflict';
  u.skip.hidden = s !== 'conflict';
  u.dismiss.hidden = !(FINISHED.has(s) || s === 'conflict');
  updatePanel();
}

function statLine(rec, pct) {
  const of = fmtSize(rec.bytes) + ' of ' + fmtSize(rec.total);
  switch (rec.status) {
    case 'uploading': {
      const rate = rec.meter.rate();
      const eta = rec.meter.eta(rec.total);
      return pct + '% · ' + of + (rate ? ' · ' + fmtSize(rate) + '/s' : '') +
        (eta != null && rate ? ' · ' + fmtDuration(eta) + ' left' : '');
    }
    case 'paused': return 'paused at ' + pct + '% · ' + of;
    case 'queued': case 'processing': case 'available':
      return fmtSize(rec.total) + ' in ' + fmtDuration(rec.secs) +
        (rec.secs > 0 ? ' · ' + fmtSize(rec.total / rec.secs) + '/s' : '') +
        (rec.stage && rec.status !== 'available' ? ' · ' + rec.stage : '');
    default: return rec.bytes ? of : '';
  }
}

function setStatus(rec, status, message) {
  rec.status = status;
  rec.message = message || '';
  render(rec);
}

function removeRow(rec) {
  if (rec.upload && (rec.status === 'uploading' || rec.status === 'paused')) rec.upload.abort(true);
  rec.li.remove();
  recs.delete(rec.id);
  updatePanel();
}

function clearFinished() {
  for (const rec of [...recs.values()]) if (FINISHED.has(rec.status)) removeRow(rec);
}

/* A listing of a folder is the truth about it: an upload that finished
 * there and is missing from it was moved or deleted (by anyone); one
 * whose name changed was renamed. */
function checkStillThere(listing) {
  const byId = new Map((listing.files || []).map((f) => [f.id, f]));
  for (const rec of recs.values()) {
    if (rec.status !== 'available' || rec.folder !== listing.folder || !rec.mediaId) continue;
    const m = byId.get(rec.mediaId);
    if (!m) setStatus(rec, 'gone', 'No longer in ' + rec.folder + ' (moved or deleted).');
    else if (m.name !== rec.name) setStatus(rec, 'available', 'Renamed to “' + m.name + '”.');
  }
}

/* The folder view deleted this media: its upload row is stale. */
export function mediaGone(mediaId) {
  for (const rec of [...recs.values()]) if (rec.mediaId === mediaId) removeRow(rec);
}

function updatePanel() {
  const all = [...recs.values()];
  $('uploads-panel').hidden = all.length === 0;
  const active = all.filter((r) => r.status === 'uploading' || r.status === 'paused').length;
  const done = all.filter((r) => r.status === 'available').length;
  const bad = all.filter((r) => ['error', 'failed', 'conflict'].includes(r.status)).length;
  const parts = [];
  if (active) parts.push(active + ' uploading');
  if (done) parts.push(done + ' done');
  if (bad) parts.push(bad + ' need attention');
  $('uploads-summary').textContent = parts.join(' · ');
  $('uploads-clear').hidden = !all.some((r) => FINISHED.has(r.status));
}

/* ---------- tus ---------- */
function statusOf(err) {
  return err && err.originalResponse ? err.originalResponse.getStatus() : 0;
}

function detailOf(err) {
  return err && err.originalResponse ? problemDetail(err.originalResponse.getBody() || '') : '';
}

/* Worth another automatic try: no answer, a server error, a lock, or an
 * offset race on a PATCH. Never a 4xx that says what is wrong. */
function transient(err) {
  const st = statusOf(err);
  const method = err && err.originalRequest ? err.originalRequest.getMethod() : '';
  if (st === 0 || st === 423) return true;
  if (st === 409) return method === 'PATCH' && /Upload-Offset/.test(detailOf(err));
  return st >= 500 && st !== 507;
}

/* how: {ifMatch: '"<sha256>"' | '*'} replaces the file at the name,
 * {rename: true} keeps both (the server picks a free name); both only on
 * the creation request. */
function begin(rec, resume, how = {}) {
  if (rec.upload) rec.upload.abort(false);
  rec.how = how;
  rec.bytes = 0;
  rec.meter = new RateMeter();
  rec.t0 = performance.now();
  setStatus(rec, 'uploading');
  const parallel = concatOffered && rec.file.size >= PARALLEL_MIN;
  const up = new window.tus.Upload(rec.file, {
    parallelUploads: parallel ? PARALLEL : 1,
    endpoint: how.rename ? '/v1/uploads?conflict=rename' : '/v1/uploads',
    headers: authHeaders(),
    metadata: { filename: rec.name, folder: rec.folder, filetype: rec.file.type || 'application/octet-stream' },
    chunkSize: CHUNK,
    retryDelays: [0, 1000, 3000, 5000, 10000],
    removeFingerprintOnSuccess: true,
    /* resume only an upload of the same file to the same place */
    fingerprint: (file) => Promise.resolve(['dripd', rec.folder, rec.name, file.name, file.size,
      file.type, file.lastModified].join('|')),
    onShouldRetry(err) {
      if (!transient(err)) return false;
      rec.message = statusOf(err) ? 'The server is busy; trying again…' : 'The connection was lost; trying again…';
      render(rec);
      return true;
    },
    onProgress(sent, total) {
      rec.bytes = sent;
      rec.total = total;
      rec.meter.add(sent);
      if (rec.message && rec.status === 'uploading') rec.message = '';
      render(rec);
    },
    onBeforeRequest(req) {
      if (how.ifMatch && req.getMethod() === 'POST') req.setHeader('If-Match', how.ifMatch);
    },
    onAfterResponse(req, res) {
      const job = res.getHeader('Upload-Job');
      const media = res.getHeader('Upload-Media');
      if (job) rec.jobId = job;
      if (media) rec.mediaId = media;
    },
    onError(err) {
      if (rec.status !== 'uploading') return; /* cancelled or paused meanwhile */
      const st = statusOf(err);
      const ctx = { name: rec.name, folder: rec.folder };
      const msg = plainError(st, detailOf(err), ctx);
      if (st === 409 && /exists|is a folder/.test(detailOf(err))) {
        rec.takenBy = /exists/.test(detailOf(err)) ? 'file' : 'folder';
        setStatus(rec, 'conflict', msg);
      } else if (st === 412) {
        /* Replace: the file changed since the folder was read */
        rec.takenBy = 'file';
        setStatus(rec, 'conflict', '“' + rec.name + '” in ' + rec.folder +
          ' changed meanwhile (someone replaced or removed it). Replace again, or keep both.');
      } else if (st === 0 || st >= 500) setStatus(rec, 'error', msg + ' Retry resumes where it stopped.');
      else setStatus(rec, 'failed', msg);
    },
    onSuccess() {
      rec.bytes = rec.total;
      rec.secs = (performance.now() - rec.t0) / 1000;
      setStatus(rec, 'queued', how.ifMatch ? 'Replaced “' + rec.name + '” with a new version.' : '');
      if (how.rename && rec.mediaId) showGivenName(rec);
      if (!rec.jobId) return;
      const seen = jobs.get(rec.jobId);
      if (seen) applyJob(rec, seen);
      api('GET', '/v1/jobs/' + encodeURIComponent(rec.jobId)).then((j) => applyJob(rec, j)).catch(() => {});
    },
  });
  rec.upload = up;
  /* the name is checked by the final upload, after every part was sent:
   * for a big file, ask first rather than send it all for a 409 */
  const taken = parallel && !how.ifMatch && !how.rename ? nameTaken(rec) : Promise.resolve(null);
  taken.then((what) => {
    if (rec.upload !== up || rec.status !== 'uploading') return;
    if (what) {
      rec.takenBy = what;
      setStatus(rec, 'conflict', plainError(409, what === 'file' ? 'already exists' : 'is a folder',
        { name: rec.name, folder: rec.folder }));
      return;
    }
    if (!resume) { up.start(); return; }
    up.findPreviousUploads().then((prev) => {
      if (prev.length) up.resumeFromPreviousUpload(prev[0]);
      up.start();
    });
  });
}

/* 'file' or 'folder' when rec.name is taken in its folder, else null (and
 * null when the listing fails: the final upload still says 409). */
async function nameTaken(rec) {
  try {
    const doc = await api('GET', '/v1/media?folder=' + encodeURIComponent(rec.folder));
    if ((doc.files || []).some((f) => f.name === rec.name)) return 'file';
    if ((doc.folders || []).some((f) => f.name === rec.name)) return 'folder';
  } catch (e) { /* let the server decide */ }
  return null;
}

function togglePause(rec) {
  if (rec.status === 'paused') {
    setStatus(rec, 'uploading');
    rec.meter = new RateMeter();
    rec.upload.start();
  } else {
    rec.upload.abort(false);
    setStatus(rec, 'paused');
  }
}

function cancel(rec) {
  if (rec.upload) rec.upload.abort(true); /* and terminate it on the server */
  setStatus(rec, 'cancelled');
}

/* Replace: the version the folder shows now (its ETag), or whatever is
 * there when the file has no checksum yet. */
async function replaceAfterConflict(rec) {
  let tag = '*';
  try {
    const doc = await api('GET', '/v1/media?folder=' + encodeURIComponent(rec.folder));
    const f = (doc.files || []).find((x) => x.name === rec.name);
    if (f && f.sha256) tag = '"' + f.sha256 + '"';
  } catch (e) { /* replace what is there */ }
  begin(rec, true, { ifMatch: tag }); /* parallel parts already sent are reused */
}

/* Keep both: the name the server gave the upload. */
async function showGivenName(rec) {
  try {
    const m = await api('GET', '/v1/media/' + encodeURIComponent(rec.mediaId));
    const name = (m.path || '').split('/').pop();
    if (name && name !== rec.name) {
      rec.name = name;
      rec.message = 'Kept both: uploaded as “' + name + '”.';
      render(rec);
    }
  } catch (e) { /* the listing shows it */ }
}

async function renameAfterConflict(rec) {
  const names = async () => {
    const doc = await api('GET', '/v1/media?folder=' + encodeURIComponent(rec.folder));
    return new Set([...(doc.files || []), ...(doc.folders || [])].map((f) => f.name));
  };
  let taken = new Set([rec.name]);
  try { taken = await names(); taken.add(rec.name); } catch (e) { /* propose from what we know */ }
  const name = await ask({
    title: 'Upload “' + rec.name + '” under another name',
    text: rec.message,
    label: 'New name',
    value: freeName(rec.name, taken),
    okText: 'Upload',
    submit: async (v) => {
      const n = v.trim();
      if (!n) throw new Error('Type a name.');
      if (n.includes('/')) throw new Error('A name cannot contain /.');
      if ((await names()).has(n)) throw new Error('“' + n + '” exists too. Choose another name.');
      return n;
    },
  });
  if (!name) return;
  rec.name = name;
  begin(rec, false);
}

/* ---------- the job after the upload ---------- */
function applyJob(rec, job) {
  if (rec.status !== 'queued' && rec.status !== 'processing') return;
  if (job.media_id) rec.mediaId = job.media_id;
  if (job.state === 'done') {
    setStatus(rec, 'available', rec.message); /* replaced / kept both says so */
  } else if (job.state === 'failed') {
    setStatus(rec, 'failed', 'The server could not store the file: ' + (job.error || 'unknown error') + '.');
  } else {
    rec.stage = job.stage || job.state;
    setStatus(rec, 'processing', rec.message);
  }
}

function onJob(job) {
  for (const rec of recs.values()) if (rec.jobId === job.id) applyJob(rec, job);
}
