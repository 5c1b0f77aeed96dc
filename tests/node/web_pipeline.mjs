// The web UI's live pipeline view (js/pipeline.js, issue 20) in Debian's
// headless Chromium, driven by playwright-core, against the real daemon,
// whose store stage is slowed by the test hook (pipeline.test_store_delay,
// one store thread): under a steady upload load the numbers move, the
// store's queue grows and its box is marked as the bottleneck; a non-admin
// gets no link and no view; screenshots at desktop and phone widths.
// Usage: node web_pipeline.mjs BASE_URL ADMIN_TOKEN USER_TOKEN SHOTS_DIR
// Exits 0 when every step passed; prints one JSON line of results last.
import path from 'node:path';
import { check, steps, launch, watchProblems, signIn, failureShot, finish } from './lib/browser.mjs';

const [base, admin, user, shots] = process.argv.slice(2);
const { results, step } = steps();

const browser = await launch();
let failed = null;
let page;
let loading = true;
let sent = 0;
// a steady load: one small upload every 150 ms (the store takes 600 ms each)
async function load() {
  while (loading) {
    const r = await fetch(base + '/v1/files/load/' + sent + '.bin',
      { method: 'PUT', headers: { Authorization: 'Bearer ' + admin }, body: 'x'.repeat(2000) });
    check(r.status === 202, 'PUT ' + r.status);
    sent++;
    await new Promise((res) => setTimeout(res, 150));
  }
}
const problems = [];
async function openAs(ctx, token, hash) {
  const p = await ctx.newPage();
  watchProblems(p, problems);
  await signIn(p, base + '/' + hash, token);
  await p.waitForSelector('#whoami:not([hidden])');
  return p;
}
// the snapshot the page shows for a stage: numbers from its box
async function box(p, stage) {
  return p.evaluate((s) => {
    const b = document.querySelector('#pv-pipelines [data-stage="' + s + '"]');
    if (!b) return null;
    return { queued: Number(b.querySelector('.queued').textContent), rate: b.querySelector('.rate').textContent,
      hot: b.classList.contains('bottleneck'), busy: b.querySelector('.busy').textContent };
  }, stage);
}

try {
  // A user who is not an admin: no link, and #pipeline shows the files.
  const uctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const up = await openAs(uctx, user, '#pipeline');
  await up.waitForSelector('#app:not([hidden])');
  check(await up.isHidden('#pipeline-link'), 'non-admin sees the Pipeline link');
  check(await up.isHidden('#pipeline-view'), 'non-admin sees the pipeline view');
  const st = await up.evaluate(async (t) => (await fetch('/v1/admin/pipeline/stream',
    { headers: { Authorization: 'Bearer ' + t } })).status, user);
  check(st === 403, 'non-admin stream: ' + st);
  await uctx.close();
  step('non-admin: no link, no view, 403');

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  page = await openAs(ctx, admin, '#/');
  await page.waitForSelector('#pipeline-link:not([hidden])');
  await page.click('#pipeline-link');
  await page.waitForSelector('#pipeline-view:not([hidden])');
  await page.waitForSelector('#pv-pipelines [data-stage="upload/store"]');
  check(await page.isHidden('#app'), 'files shown beside the pipeline');
  check((await page.textContent('#pv-bottleneck')).includes('Nothing is behind'), 'idle bottleneck');
  const stages = await page.$$eval('#pv-pipelines .pv-chain', (cs) => cs.map((c) =>
    [...c.querySelectorAll('.pv-stage h4')].map((h) => h.textContent).join(' ')));
  check(stages[0] === 'starter process encrypt store notify' && stages[1] === 'starter fetch decrypt notify',
    'stages: ' + JSON.stringify(stages));
  step('admin: the view, idle');

  const loader = load();
  // The numbers move: the intake and the store's queue, snapshot after snapshot.
  const seen = [];
  const deadline = Date.now() + 45000;
  for (;;) {
    await page.waitForTimeout(250);
    const s = await box(page, 'upload/store');
    const intake = Number(await page.textContent('#pv-front .intake .v'));
    seen.push({ q: s.queued, intake, hot: s.hot });
    const qs = seen.map((x) => x.q);
    const grew = qs.length > 8 && qs[qs.length - 1] > qs[Math.max(0, qs.length - 9)];
    if (intake > 0 && s.queued >= 5 && grew && s.hot) break;
    check(Date.now() < deadline, 'no growing, marked store queue: ' + JSON.stringify(seen.slice(-12)));
  }
  const hot = await page.$$eval('#pv-pipelines .pv-stage.bottleneck', (bs) => bs.map((b) => b.dataset.stage));
  check(hot.length === 1 && hot[0] === 'upload/store', 'bottleneck boxes: ' + hot);
  check(/upload → store/.test(await page.textContent('#pv-bottleneck')), 'bottleneck sentence');
  check(await page.$eval('[data-stage="upload/store"] .badge.hot', (b) => b.textContent) === 'bottleneck', 'badge');
  const enc = await box(page, 'upload/encrypt');
  check(!enc.hot, 'encrypt marked');
  step('under load: intake moves, the store queue grows, marked bottleneck');

  // the sparkline draws the queue's history
  check(await page.$eval('[data-stage="upload/store"] svg.spark polyline', (l) => l.getAttribute('points').split(' ').length) >= 2,
    'sparkline points');
  await page.screenshot({ path: path.join(shots, 'pipeline-desktop.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  // a snapshot redrawn at the new width: poll for it (a fixed wait was too
  // short on a loaded machine); the checks below say what is wrong if not
  await page.waitForFunction(() => {
    const cs = [...document.querySelectorAll('#pv-pipelines .pv-chain')];
    return cs.length > 0 && cs.every((c) => getComputedStyle(c).flexDirection === 'column') &&
      document.documentElement.scrollWidth <= window.innerWidth;
  }, null, { timeout: 20000, polling: 100 }).catch(() => {});
  const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(over <= 0, 'phone width overflows by ' + over + 'px');
  const col = await page.$$eval('#pv-pipelines .pv-chain', (cs) => cs.map((c) => getComputedStyle(c).flexDirection));
  check(col.every((d) => d === 'column'), 'stacked at phone width: ' + col);
  await page.screenshot({ path: path.join(shots, 'pipeline-phone.png'), fullPage: true });
  step('phone width: stacked, no overflow');

  // Leaving the view ends its stream (nobody watching costs nothing).
  await page.click('#files-link');
  await page.waitForSelector('#app:not([hidden])');
  check(await page.isHidden('#pipeline-view'), 'view still shown');
  loading = false;
  await loader;
  check(problems.length === 0, 'page problems: ' + problems.join('; '));
  step('back to files');
  results.sent = sent;
} catch (e) {
  failed = e;
  loading = false;
  await failureShot(page, shots, 'pipeline');
}
await finish(browser, results, failed);
