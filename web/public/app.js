/* dripd web UI: sign in with a token, upload over tus, browse, download,
 * rename/move, delete, share, and follow job status live over SSE.
 *
 * Security rules this file keeps:
 *  - the token lives in sessionStorage and goes only into Authorization
 *    headers (never a URL), so SSE uses fetch(), not EventSource, and a
 *    download follows a short-lived signed link (POST /v1/media/{id}/link);
 *  - every user-controlled string reaches the DOM through textContent or
 *    an attribute setter, never as markup;
 *  - no inline scripts or styles (the CSP forbids them).
 */
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem('dripd.token') || '',
  folder: '/',
  listing: null,
  uploads: new Map(),   // local id -> upload record
  jobs: new Map(),      // job id -> last job JSON seen over SSE
  lastEventId: null,
  sse: null,
};

/* ---------- helpers ---------- */
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function fmtSize(n) {
  if (n == null) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

function fmtDate(s) {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d) ? String(s) : d.toLocaleString();
}

function toast(msg) {
  const t = $('toast');
  t.textContent = msg;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 2500);
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: 'Bearer ' + state.token } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let doc = null;
  const ct = r.headers.get('Content-Type') || '';
  if (ct.includes('json')) { try { doc = await r.json(); } catch (e) { doc = null; } }
  if (!r.ok) {
    const err = new Error((doc && (doc.detail || doc.title)) || (r.status + ' ' + r.statusText));
    err.status = r.status;
    throw err;
  }
  return doc;
}

function joinPath(folder, name) {
  return (folder === '/' ? '' : folder) + '/' + name;
}

/* ---------- sign in ---------- */
async function signIn(token) {
  state.token = token;
  try {
    await api('GET', '/v1/media?folder=%2F');
  } catch (e) {
    state.token = '';
    throw e;
  }
  sessionStorage.setItem('dripd.token', token);
  showApp();
}

function signOut() {
  sessionStorage.removeItem('dripd.token');
  state.token = '';
  if (state.sse) state.sse.abort();
  state.sse = null;
  $('app').hidden = true;
  $('signout').hidden = true;
  $('signin').hidden = false;
  $('token').value = '';
  $('token').focus();
}

function showApp() {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
  route();
  startEvents();
}

/* ---------- folder browser ---------- */
function route() {
  let f = decodeURIComponent((location.hash || '#/').slice(1)) || '/';
  if (!f.startsWith('/')) f = '/' + f;
  if (f.length > 1 && f.endsWith('/')) f = f.slice(0, -1);
  state.folder = f;
  $('drop-folder').textContent = f;
  renderCrumbs();
  loadListing();
}

function renderCrumbs() {
  const nav = $('crumbs');
  nav.replaceChildren();
  const parts = state.folder.split('/').filter(Boolean);
  nav.append(el('a', { href: '#/', text: 'Home' }));
  let acc = '';
  for (const p of parts) {
    acc += '/' + p;
    nav.append(' / ', el('a', { href: '#' + encodeURIComponent(acc).replace(/%2F/g, '/'), text: p }));
  }
}

async function loadListing() {
  $('list-error').textContent = '';
  try {
    state.listing = await api('GET', '/v1/media?folder=' + encodeURIComponent(state.folder));
  } catch (e) {
    if (e.status === 401) { signOut(); $('signin-error').textContent = 'Your token was refused.'; return; }
    state.listing = { folders: [], files: [] };
    $('list-error').textContent = 'Could not load this folder: ' + e.message;
  }
  renderListing();
}

function sorted(files) {
  const key = $('sort').value;
  const f = [...files];
  const cmp = {
    name: (a, b) => a.name.localeCompare(b.name),
    size: (a, b) => (a.size || 0) - (b.size || 0),
    date: (a, b) => String(a.created_at).localeCompare(String(b.created_at)),
    type: (a, b) => String(a.content_type || '').localeCompare(String(b.content_type || '')),
  }[key];
  return f.sort(cmp);
}

function renderListing() {
  const rows = $('rows');
  rows.replaceChildren();
  const { folders = [], files = [] } = state.listing || {};
  const fsorted = [...folders].sort((a, b) => a.name.localeCompare(b.name));
  for (const d of fsorted) {
    const href = '#' + encodeURIComponent(joinPath(state.folder, d.name)).replace(/%2F/g, '/');
    rows.append(el('tr', { class: 'folder', 'data-folder': d.name },
      el('td', {}, el('a', { href, text: d.name + '/' })),
      el('td', { class: 'num', text: fmtSize(d.size) }),
      el('td', { class: 'hide-sm', text: d.files + (d.files === 1 ? ' file' : ' files') }),
      el('td', { class: 'hide-sm' }), el('td'), el('td')));
  }
  for (const m of sorted(files)) rows.append(fileRow(m));
  $('empty').hidden = folders.length + files.length > 0;
  $('listing').hidden = folders.length + files.length === 0;
}

function fileRow(m) {
  const st = m.state || '';
  const tr = el('tr', { class: 'file', 'data-id': m.id },
    el('td', { class: 'name', text: m.name }),
    el('td', { class: 'num', text: fmtSize(m.size) }),
    el('td', { class: 'hide-sm', text: m.content_type || '' }),
    el('td', { class: 'hide-sm', text: fmtDate(m.created_at) }),
    el('td', { class: 'state state-' + st, text: st }),
    el('td', { class: 'acts' },
      el('button', { type: 'button', class: 'download', 'aria-label': 'Download ' + m.name, text: 'Download',
        onclick: () => download(m) }),
      el('button', { type: 'button', class: 'rename', 'aria-label': 'Rename or move ' + m.name, text: 'Rename',
        onclick: () => rename(m) }),
      el('button', { type: 'button', class: 'share', 'aria-label': 'Share ' + m.name, text: 'Share',
        onclick: () => share(m) }),
      el('button', { type: 'button', class: 'delete', 'aria-label': 'Delete ' + m.name, text: 'Delete',
        onclick: () => remove(m) })));
  return tr;
}

/* ---------- actions ---------- */
async function download(m) {
  // The browser's own download manager streams the file to disk (progress,
  // pause, no copy in memory). It cannot send our Authorization header, so
  // ask for a short-lived signed link to the content route (the token
  // itself never goes into a URL) and let the browser follow it.
  try {
    const r = await fetch('/v1/media/' + encodeURIComponent(m.id) + '/link?expires_in=60',
      { method: 'POST', headers: { Authorization: 'Bearer ' + state.token } });
    if (!r.ok) {
      let detail = r.status + ' ' + r.statusText;
      try { const d = await r.json(); detail = d.detail || d.title || detail; } catch (e) { /* not JSON */ }
      throw new Error(detail);
    }
    const link = await r.json();
    const a = el('a', { href: link.url, download: m.name });
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) {
    toast('Download failed: ' + e.message);
  }
}

function dialog({ title, text, label, value, okText }) {
  return new Promise((resolve) => {
    const d = $('dlg');
    $('dlg-title').textContent = title;
    $('dlg-text').textContent = text || '';
    $('dlg-error').textContent = '';
    const input = $('dlg-input');
    const hasInput = label != null;
    $('dlg-label').textContent = label || '';
    $('dlg-label').hidden = !hasInput;
    input.hidden = !hasInput;
    input.value = value || '';
    $('dlg-ok').textContent = okText || 'OK';
    const done = (v) => { d.close(); cleanup(); resolve(v); };
    const onSubmit = (ev) => { ev.preventDefault(); done(hasInput ? input.value : true); };
    const onCancel = () => done(null);
    const cleanup = () => {
      $('dlg-form').removeEventListener('submit', onSubmit);
      $('dlg-cancel').removeEventListener('click', onCancel);
      d.removeEventListener('cancel', onCancel);
    };
    $('dlg-form').addEventListener('submit', onSubmit);
    $('dlg-cancel').addEventListener('click', onCancel);
    d.addEventListener('cancel', onCancel);
    d.showModal();
    (hasInput ? input : $('dlg-ok')).focus();
  });
}

async function rename(m) {
  const path = await dialog({ title: 'Rename or move', label: 'New path', value: m.path, okText: 'Save' });
  if (path == null || path === m.path) return;
  try {
    await api('PATCH', '/v1/media/' + encodeURIComponent(m.id), { path });
    toast('Moved to ' + path);
    loadListing();
  } catch (e) {
    toast((e.status === 409 ? 'That path is taken: ' : 'Rename failed: ') + e.message);
  }
}

async function remove(m) {
  const ok = await dialog({ title: 'Delete file', text: 'Delete ' + m.path + '? This cannot be undone.', okText: 'Delete' });
  if (!ok) return;
  try {
    await api('DELETE', '/v1/media/' + encodeURIComponent(m.id));
    toast('Deleted ' + m.name);
    loadListing();
  } catch (e) {
    toast('Delete failed: ' + e.message);
  }
}

async function share(m) {
  const user = await dialog({ title: 'Share ' + m.name, label: 'User name', value: '', okText: 'Share' });
  if (!user) return;
  try {
    await api('POST', '/v1/media/' + encodeURIComponent(m.id) + '/shares', { user });
    toast('Shared with ' + user);
  } catch (e) {
    toast('Share failed: ' + e.message);
  }
}

/* ---------- uploads over tus ---------- */
let uploadSeq = 0;

function addFiles(files) {
  for (const file of files) startUpload(file);
}

function startUpload(file) {
  const id = 'u' + (++uploadSeq);
  const rec = { id, file, folder: state.folder, jobId: null, status: 'uploading', upload: null };
  const bar = el('progress', { max: '100', value: '0', 'aria-label': 'Progress of ' + file.name });
  const stat = el('span', { class: 'stat', text: 'starting' });
  const pause = el('button', { type: 'button', class: 'pause', text: 'Pause' });
  const retry = el('button', { type: 'button', class: 'retry', text: 'Retry', hidden: '' });
  const li = el('li', { 'data-upload': id, 'data-name': file.name },
    el('span', { class: 'fname', text: file.name }),
    el('span', { class: 'acts' }, pause, retry), bar, stat);
  $('uploads').prepend(li);
  rec.li = li; rec.bar = bar; rec.stat = stat;
  state.uploads.set(id, rec);

  const up = new tus.Upload(file, {
    endpoint: '/v1/uploads',
    headers: { Authorization: 'Bearer ' + state.token },
    metadata: { filename: file.name, folder: rec.folder, filetype: file.type || 'application/octet-stream' },
    chunkSize: 8 * 1024 * 1024,
    retryDelays: [0, 1000, 3000, 5000, 10000],
    removeFingerprintOnSuccess: true,
    onProgress(sent, total) {
      const pct = total ? Math.floor((sent / total) * 100) : 0;
      bar.value = pct;
      stat.textContent = 'uploading ' + pct + '% (' + fmtSize(sent) + ' of ' + fmtSize(total) + ')';
    },
    onAfterResponse(req, res) {
      const job = res.getHeader('Upload-Job');
      if (job) rec.jobId = job;
    },
    onError(err) {
      rec.status = 'error';
      stat.textContent = 'upload failed: ' + (err && err.message ? err.message.split('\n')[0] : err);
      li.dataset.state = 'error';
      pause.hidden = true;
      retry.hidden = false;
    },
    onSuccess() {
      bar.value = 100;
      pause.hidden = true;
      retry.hidden = true;
      setStatus(rec, 'queued');
      if (rec.jobId) {
        const seen = state.jobs.get(rec.jobId);
        if (seen) applyJob(rec, seen);
        api('GET', '/v1/jobs/' + encodeURIComponent(rec.jobId)).then((j) => applyJob(rec, j)).catch(() => {});
      }
    },
  });
  rec.upload = up;
  pause.addEventListener('click', () => {
    if (rec.status === 'paused') {
      rec.status = 'uploading';
      pause.textContent = 'Pause';
      up.start();
    } else {
      rec.status = 'paused';
      pause.textContent = 'Resume';
      stat.textContent = 'paused at ' + bar.value + '%';
      up.abort();
    }
  });
  retry.addEventListener('click', () => {
    rec.status = 'uploading';
    retry.hidden = true;
    pause.hidden = false;
    li.dataset.state = '';
    up.start();
  });
  up.findPreviousUploads().then((prev) => {
    if (prev.length) up.resumeFromPreviousUpload(prev[0]);
    up.start();
  });
}

function setStatus(rec, s, err) {
  rec.status = s;
  rec.li.dataset.state = s;
  rec.stat.textContent = err ? s + ': ' + err : s;
}

/* A job JSON (from SSE or GET /v1/jobs) -> the upload row's status. */
function applyJob(rec, job) {
  if (job.state === 'done') setStatus(rec, 'available');
  else if (job.state === 'failed') setStatus(rec, 'failed', job.error || 'unknown error');
  else if (job.state === 'queued' && !job.attempts) setStatus(rec, 'queued');
  else setStatus(rec, job.stage || job.state);
}

/* ---------- live job status over SSE (fetch, so the token stays in a header) ---------- */
async function startEvents() {
  if (state.sse) state.sse.abort();
  const ctl = new AbortController();
  state.sse = ctl;
  let delay = 500;
  while (!ctl.signal.aborted && state.token) {
    try {
      const headers = { Authorization: 'Bearer ' + state.token, Accept: 'text/event-stream' };
      if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
      const r = await fetch('/v1/events', { headers, signal: ctl.signal });
      if (r.status === 401) { signOut(); return; }
      if (!r.ok || !r.body) throw new Error('events: ' + r.status);
      delay = 500;
      await readEvents(r.body.getReader());
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

async function readEvents(reader) {
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = { id: null, type: 'message', data: '' };
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (field === 'id') ev.id = val;
        else if (field === 'event') ev.type = val;
        else if (field === 'data') ev.data += (ev.data ? '\n' : '') + val;
      }
      if (ev.id) state.lastEventId = ev.id;
      if (ev.data) onEvent(ev);
    }
  }
}

let refreshTimer = null;
function onEvent(ev) {
  let job;
  try { job = JSON.parse(ev.data); } catch (e) { return; }
  if (job && job.job) job = job.job;
  if (!job || !job.id) return;
  state.jobs.set(job.id, job);
  for (const rec of state.uploads.values())
    if (rec.jobId === job.id && rec.status !== 'uploading' && rec.status !== 'paused') applyJob(rec, job);
  const row = document.querySelector('tr.file[data-id="' + CSS.escape(job.media_id || '') + '"] td.state');
  if (row && job.state === 'done' && job.kind === 'upload') { row.textContent = 'available'; row.className = 'state state-available'; }
  if (job.state === 'done' || job.state === 'failed' || ev.type === 'job.created') {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(loadListing, 300);
  }
}

/* ---------- wiring ---------- */
function init() {
  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('signin-error').textContent = '';
    try {
      await signIn($('token').value.trim());
    } catch (e) {
      $('signin-error').textContent = e.status === 401 ? 'That token was refused.' : 'Sign-in failed: ' + e.message;
    }
  });
  $('signout').addEventListener('click', signOut);
  $('refresh').addEventListener('click', loadListing);
  $('sort').addEventListener('change', renderListing);
  window.addEventListener('hashchange', route);
  $('file-input').addEventListener('change', (ev) => { addFiles(ev.target.files); ev.target.value = ''; });
  const dz = $('dropzone');
  dz.addEventListener('dragover', (ev) => { ev.preventDefault(); dz.classList.add('over'); });
  dz.addEventListener('dragleave', () => dz.classList.remove('over'));
  dz.addEventListener('drop', (ev) => { ev.preventDefault(); dz.classList.remove('over'); addFiles(ev.dataTransfer.files); });
  dz.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); $('file-input').click(); }
  });
  if (state.token) {
    signIn(state.token).catch(() => signOut());
  } else {
    signOut();
  }
}

document.addEventListener('DOMContentLoaded', init);
