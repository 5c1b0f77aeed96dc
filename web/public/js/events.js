/* events.js - the caller's job events, live, over Server-Sent Events.
 *
 * fetch() rather than EventSource, so the token stays in a header. The
 * stream reconnects with Last-Event-ID after any drop or server restart,
 * so no event is missed. Any module subscribes with onJobEvent(fn); fn
 * gets (job, type) for every job.created / job.stage / job.done /
 * job.failed event, job being the job JSON plus the media's path and name.
 */
import { authHeaders, session, tokenRefused } from './api.js';

const subscribers = new Set();
export const jobs = new Map(); /* job id -> the last job JSON seen */
let controller = null;
let lastEventId = null;

export function onJobEvent(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

export function stopEvents() {
  if (controller) controller.abort();
  controller = null;
}

export async function startEvents() {
  stopEvents();
  const ctl = new AbortController();
  controller = ctl;
  let delay = 500;
  while (!ctl.signal.aborted && session.token) {
    try {
      const headers = authHeaders({ Accept: 'text/event-stream' });
      if (lastEventId) headers['Last-Event-ID'] = lastEventId;
      const r = await fetch('/v1/events', { headers, signal: ctl.signal });
      if (r.status === 401) { tokenRefused(); return; }
      if (!r.ok || !r.body) throw new Error('events: HTTP ' + r.status);
      delay = 500;
      await read(r.body.getReader());
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

/* Read a Server-Sent Events body (a fetch() ReadableStream reader) until it
 * ends, calling onEvent({id, type, data}) per event that carries data. */
export async function readSSE(reader, onEvent) {
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
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
      if (ev.data) onEvent(ev);
    }
  }
}

function read(reader) {
  return readSSE(reader, (ev) => {
    if (ev.id) lastEventId = ev.id;
    dispatch(ev);
  });
}

function dispatch(ev) {
  let job;
  try { job = JSON.parse(ev.data); } catch (e) { return; }
  if (job && job.job) job = job.job;
  if (!job || !job.id) return;
  jobs.set(job.id, job);
  for (const fn of subscribers) {
    try { fn(job, ev.type); } catch (e) { console.error(e); }
  }
}
