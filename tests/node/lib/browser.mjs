// lib/browser.mjs - what every web UI test (tests/node/web_*.mjs) shares:
// Debian's headless Chromium through playwright-core, the step list and
// the one JSON results line the blackbox tests read, the sign-in, the
// page problems (CSP violations, uncaught errors) a test must not have,
// and the daemon's API calls that set a test up.
//
// A test: const { results, step } = steps(); const browser = await launch();
// try { ... } catch (e) { failed = e; await failureShot(page, shots, 'x'); }
// await finish(browser, results, failed);  // prints, exits 0 or 1
import { chromium } from 'playwright-core';
import path from 'node:path';

export const check = (cond, what) => { if (!cond) throw new Error(what); };

// The steps passed so far, in results.steps (and on stderr as they pass).
export function steps(extra = {}) {
  const results = { steps: [], ...extra };
  const step = (name) => { results.steps.push(name); console.error('step: ' + name); };
  return { results, step };
}

export function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// Collect p's Content-Security-Policy complaints and uncaught errors into problems.
export function watchProblems(p, problems) {
  p.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) problems.push(m.text()); });
  p.on('pageerror', (e) => problems.push(String(e)));
}

// Open url and sign in with token (the caller waits for what it needs next).
export async function signIn(p, url, token) {
  await p.goto(url);
  await p.fill('#token', token);
  await p.click('#signin-form button[type=submit]');
}

// A full-page screenshot of a failure, shots/<name>-failure.png (a page
// already gone is no second failure).
export async function failureShot(p, shots, name) {
  if (p) await p.screenshot({ path: path.join(shots, name + '-failure.png'), fullPage: true }).catch(() => {});
}

// Close the browser, print the results line, exit 0 (passed) or 1.
export async function finish(browser, results, failed) {
  await browser.close();
  results.ok = !failed;
  if (failed) results.error = String((failed && failed.stack) || failed);
  console.log(JSON.stringify(results));
  process.exit(failed ? 1 : 0);
}

// The daemon's API as user token: PUT a file, wait for its job, list a folder.
export function api(base, token) {
  const auth = { Authorization: 'Bearer ' + token };
  async function waitDone(jobId) {
    for (let i = 0; i < 600; i++) {
      const j = await (await fetch(base + '/v1/jobs/' + jobId, { headers: auth })).json();
      if (j.state === 'done') return;
      check(j.state !== 'failed', 'job failed: ' + j.error);
      await new Promise((ok) => setTimeout(ok, 50));
    }
    throw new Error('job ' + jobId + ' not done');
  }
  // The upload's {media, job}; with wait, once its job is done.
  async function put(remote, body, { headers = {}, wait = true } = {}) {
    const r = await fetch(base + '/v1/files' + remote, { method: 'PUT', headers: { ...auth, ...headers }, body });
    check(r.status === 202, 'PUT ' + remote + ' ' + r.status);
    const doc = await r.json();
    if (wait) await waitDone(doc.job.id);
    return doc;
  }
  async function listing(folder) {
    const r = await fetch(base + '/v1/media?folder=' + encodeURIComponent(folder), { headers: auth });
    return r.json();
  }
  return { auth, put, waitDone, listing };
}
