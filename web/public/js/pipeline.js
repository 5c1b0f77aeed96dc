/* pipeline.js - the live pipeline view, for admins only (#pipeline).
 *
 * Follows GET /v1/admin/pipeline/stream (SSE over fetch, the token in a
 * header) while the view is open, and only then: leaving the view aborts
 * the stream, so nobody watching costs the server nothing. Each snapshot
 * redraws: the front end's intake, the queue, jobs and restarts; each
 * pipeline as a chain of stage boxes (queue, threads working, jobs/s, busy
 * share, p50/p99, the queue's last 10 minutes as a sparkline), the
 * bottleneck box marked; and the last errors with their jobs. Boxes wrap,
 * and stack under 40rem (phones).
 *
 * Non-admins never get the link, and #pipeline shows them the files.
 */
import { $, el } from './util.js';
import { authHeaders, session, tokenRefused } from './api.js';
import { readSSE } from './events.js';

let controller = null;
export const last = { snap: null, count: 0 }; /* for tests and the status line */

export function isPipelineHash() {
  return location.hash === '#pipeline';
}

/* Show the admin's link (or hide it for anyone else). */
export function initPipelineLink() {
  $('pipeline-link').hidden = !(session.me && session.me.admin);
}

export function stopPipeline() {
  if (controller) controller.abort();
  controller = null;
  $('pipeline-view').hidden = true;
}

export async function startPipeline() {
  if (!(session.me && session.me.admin)) return false;
  stopPipeline();
  $('pipeline-view').hidden = false;
  const ctl = new AbortController();
  controller = ctl;
  let delay = 500;
  while (!ctl.signal.aborted && session.token) {
    try {
      const r = await fetch('/v1/admin/pipeline/stream',
        { headers: authHeaders({ Accept: 'text/event-stream' }), signal: ctl.signal });
      if (r.status === 401) { tokenRefused(); return true; }
      if (r.status === 403) { status('Only admins can see the pipeline.'); return true; }
      if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
      delay = 500;
      status('live');
      await readSSE(r.body.getReader(), (ev) => {
        if (ev.type !== 'pipeline' || ctl.signal.aborted) return;
        try { render(JSON.parse(ev.data)); } catch (e) { console.error(e); }
      });
    } catch (e) {
      if (ctl.signal.aborted) return true;
    }
    status('reconnecting…');
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 10000);
  }
  return true;
}

function status(text) { $('pv-status').textContent = text; }

function num(v, digits) {
  if (v == null) return '–';
  return Number(v).toFixed(digits);
}

function ms(v) {
  if (v == null) return '–';
  if (v < 10) return v.toFixed(1) + ' ms';
  if (v < 1000) return Math.round(v) + ' ms';
  return (v / 1000).toFixed(2) + ' s';
}

/* A polyline of values scaled to their maximum (the scale is in the
 * title), cloned from index.html's #spark-tpl so it is in the SVG
 * namespace without naming it here. */
function sparkline(values, label) {
  const w = 120, h = 28, n = values.length;
  const max = Math.max(1, ...values);
  const svg = $('spark-tpl').content.firstElementChild.cloneNode(true);
  svg.setAttribute('aria-label', label + ', peak ' + max);
  const pts = values.map((v, i) => {
    const x = n > 1 ? (i * w) / (n - 1) : w;
    return x.toFixed(1) + ',' + (h - 1 - (v / max) * (h - 2)).toFixed(1);
  });
  svg.querySelector('polyline').setAttribute('points', (n === 1 ? '0,' + pts[0].split(',')[1] + ' ' : '') + pts.join(' '));
  svg.querySelector('title').textContent = label + ' (peak ' + max + ')';
  return svg;
}

function fact(label, value, cls) {
  return el('div', { class: 'pv-fact' + (cls ? ' ' + cls : '') }, el('span', { class: 'v', text: value }),
    el('span', { class: 'l', text: label }));
}

function stageBox(pipeline, s) {
  const busy = Math.max(0, Math.min(1, s.busy || 0));
  const box = el('li', {
    class: 'pv-stage' + (s.bottleneck ? ' bottleneck' : '') + (s.queued > 0 ? ' waiting' : ''),
    'data-stage': pipeline + '/' + s.name,
  },
  el('div', { class: 'pv-stage-head' }, el('h4', { text: s.name }),
    s.bottleneck ? el('span', { class: 'badge hot', text: 'bottleneck' }) : null),
  el('div', { class: 'pv-big' }, el('span', { class: 'queued', text: String(s.queued) }),
    el('span', { class: 'l', text: ' queued' })),
  el('div', { class: 'pv-line' }, el('span', { class: 'inflight', text: s.in_flight + '/' + s.threads }),
    ' working · ', el('span', { class: 'rate', text: num(s.jobs_per_s, 2) }), ' jobs/s'),
  el('div', { class: 'pv-line' }, 'busy ', el('span', { class: 'busy', text: Math.round(busy * 100) + '%' }),
    ' ', el('meter', { min: '0', max: '1', value: String(busy), 'aria-label': 'busy' })),
  el('div', { class: 'pv-line muted' }, 'p50 ', el('span', { class: 'p50', text: ms(s.p50_ms) }),
    ' · p99 ', el('span', { class: 'p99', text: ms(s.p99_ms) })),
  sparkline(s.history.queued, s.name + ' queue, last 10 minutes'));
  return box;
}

function render(snap) {
  last.snap = snap;
  last.count++;
  const f = snap.front, q = snap.queue, j = snap.jobs;
  $('pv-front').replaceChildren(
    fact('uploads/s', num(f.intake_per_s, 2), 'intake'),
    fact('requests/s', num(f.requests_per_s, 2)),
    fact('connections', String(f.open_connections)),
    fact('uploading', String(f.uploads_in_progress)),
    fact('queue (limit ' + q.limit + ')', String(q.depth), 'depth'),
    fact('jobs done', String(j.completed)),
    fact('retries', String(j.retries), j.retries_per_s > 0 ? 'warn' : ''),
    fact('failed', String(j.failed), j.failed_per_s > 0 ? 'bad' : ''),
    fact('restarts', String(snap.restarts.http + snap.restarts.pipeline),
      snap.restarts.http + snap.restarts.pipeline > 0 ? 'warn' : ''));
  const b = snap.bottleneck;
  $('pv-bottleneck').replaceChildren(b
    ? el('span', {}, el('strong', { text: 'Behind: ' + b.pipeline + ' → ' + b.stage }), ' — ' + b.why)
    : el('span', { class: 'muted', text: 'Nothing is behind.' }));
  $('pv-bottleneck').classList.toggle('hot', !!b);
  $('pv-pipelines').replaceChildren(...snap.pipelines.map((p) => el('section', { class: 'pv-pipeline' },
    el('h3', { text: p.name }),
    el('ol', { class: 'pv-chain', 'data-pipeline': p.name }, ...p.stages.map((s) => stageBox(p.name, s))))));
  $('pv-errors').replaceChildren(...(snap.errors.length ? snap.errors.slice(0, 8).map((e) => el('li', {},
    el('span', { class: 'muted', text: new Date(e.time).toLocaleTimeString() + ' ' }),
    el('strong', { text: e.pipeline + '/' + e.stage }), ' job ',
    el('code', { text: e.job_id }), ' attempt ' + e.attempt + ' ',
    el('span', { class: e.final ? 'bad' : 'warn', text: e.final ? 'failed' : 'retried' }), ': ',
    el('span', { text: e.error }))) : [el('li', { class: 'muted', text: 'No errors.' })]));
  $('pv-time').textContent = new Date(snap.time).toLocaleTimeString();
}
