// cors_upload.mjs - cross-origin uploads from a browser page: Debian's
// headless Chromium (playwright-core) opens a page this script serves on
// another port, and the page talks to dripd with tus-js-client (its
// browser bundle) and fetch().
//
//   CORS_PAGE_PORT=P node cors_upload.mjs DRIPD_URL TOKEN SIZE
//
// The page is served twice: as http://127.0.0.1:P (the origin the daemon's
// cors.origins lists) and as http://localhost:P (an origin it does not).
// From the first: a tus upload of SIZE random bytes in 1 MiB chunks, a PUT
// and a listing with fetch, reading the exposed headers (Location,
// Upload-Job, Upload-Offset, ETag...). From the second: the same fetch
// must be refused by the browser. Prints one JSON line; exits non-zero on
// failure.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [dripd, token, sizeArg] = process.argv.slice(2);
const size = Number(sizeArg);
const here = path.dirname(fileURLToPath(import.meta.url));
const bundle = fs.readFileSync(path.join(here, 'node_modules/tus-js-client/dist/tus.min.js'));

const page_html = `<!doctype html><meta charset="utf-8"><title>cors</title>
<script src="/tus.min.js"></script><p>cross-origin test page</p>`;

const server = http.createServer((req, res) => {
  if (req.url === '/tus.min.js') {
    res.writeHead(200, { 'Content-Type': 'text/javascript' });
    res.end(bundle);
  } else {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(page_html);
  }
});
await new Promise((r) => server.listen(Number(process.env.CORS_PAGE_PORT || 0), '127.0.0.1', r));
const port = server.address().port;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const out = { page_port: port };
let failed = null;
try {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(m.text()));

  await page.goto(`http://127.0.0.1:${port}/`);
  out.allowed = await page.evaluate(async ({ dripd, token, size }) => {
    const auth = { Authorization: 'Bearer ' + token };
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
    const hex = (buf) => Array.from(new Uint8Array(buf)).map((b) => b.toString(16).padStart(2, '0')).join('');
    const sha256 = hex(await crypto.subtle.digest('SHA-256', bytes));
    const r = { origin: location.origin, sha256 };
    // tus-js-client: creation, PATCHes, Location and Upload-Offset read cross-origin
    r.tus = await new Promise((resolve, reject) => {
      let chunks = 0;
      const up = new tus.Upload(new Blob([bytes]), {
        endpoint: dripd + '/v1/uploads',
        chunkSize: 1024 * 1024,
        headers: auth,
        metadata: { filename: 'browser.bin', folder: '/cors', filetype: 'application/octet-stream' },
        retryDelays: null,
        onChunkComplete: () => { chunks++; },
        onSuccess: ({ lastResponse }) => resolve({
          url: up.url, chunks,
          job: lastResponse.getHeader('Upload-Job'),
          media: lastResponse.getHeader('Upload-Media'),
          offset: lastResponse.getHeader('Upload-Offset'),
        }),
        onError: (e) => reject(new Error('tus: ' + e)),
      });
      up.start();
    });
    // fetch: PUT with a JSON answer and an exposed Location
    let res = await fetch(dripd + '/v1/files/cors/put.txt', { method: 'PUT', headers: auth, body: 'from another origin\n' });
    r.put = { status: res.status, location: res.headers.get('Location'), json: await res.json() };
    // a problem+json error is readable too (CORS headers on every answer)
    res = await fetch(dripd + '/v1/files/cors/put.txt', { method: 'PUT', headers: auth, body: 'again\n' });
    r.conflict = { status: res.status, type: res.headers.get('Content-Type'), body: await res.json() };
    res = await fetch(dripd + '/v1/media?folder=/cors', { headers: auth });
    r.list = { status: res.status, names: (await res.json()).files.map((f) => f.name).sort() };
    res = await fetch(dripd + '/v1/me');
    r.unauth = { status: res.status, www: res.headers.get('WWW-Authenticate') };
    return r;
  }, { dripd, token, size });

  // the same page from an origin the daemon does not list
  await page.goto(`http://localhost:${port}/`);
  out.refused = await page.evaluate(async ({ dripd, token }) => {
    const r = { origin: location.origin };
    try {
      const res = await fetch(dripd + '/v1/media?folder=/cors', { headers: { Authorization: 'Bearer ' + token } });
      r.status = res.status;
    } catch (e) {
      r.error = String(e);
    }
    try {
      const res = await fetch(dripd + '/healthz'); // a simple GET: no preflight, the answer is withheld
      r.simple_status = res.status;
    } catch (e) {
      r.simple_error = String(e);
    }
    return r;
  }, { dripd, token });
  out.console = consoleLines.slice(-10);
} catch (e) {
  failed = e;
}
await browser.close();
server.close();
out.ok = failed === null;
if (failed) out.error = String(failed && failed.stack ? failed.stack : failed);
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(failed ? 1 : 0);
