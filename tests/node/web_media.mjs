// The web UI's thumbnails, grid view and preview (js/media.js) in Debian's
// headless Chromium, driven by playwright-core, against the real daemon.
// Usage: node web_media.mjs BASE_URL TOKEN FOLDER SHOTS_DIR
// The folder holds a processed photo (portrait as displayed) and a file
// that is not media. Exits 0 when every step passed; prints one JSON line
// of results last.
import { chromium } from 'playwright-core';
import path from 'node:path';

const [base, token, folder, shots] = process.argv.slice(2);
const results = { steps: [] };
const step = (name) => { results.steps.push(name); console.error('step: ' + name); };
const check = (cond, what) => { if (!cond) throw new Error(what); };

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = null;
let page;
try {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  page = await ctx.newPage();
  const problems = [];
  const urls = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('request', (r) => urls.push(r.url()));
  await page.goto(base + '/#' + folder);
  await page.fill('#token', token);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden])');

  // the photo gets a thumbnail (from a blob: URL), the other file none
  await page.waitForSelector('#rows img.thumb.loaded', { timeout: 20000 });
  const thumbs = await page.$$eval('#rows img.thumb.loaded', (l) => l.map((i) => [i.naturalWidth, i.naturalHeight, i.src.slice(0, 5)]));
  check(thumbs.length === 1, 'one thumbnail, got ' + thumbs.length);
  check(thumbs[0][0] === 192 && thumbs[0][1] === 256 && thumbs[0][2] === 'blob:', 'thumb ' + thumbs[0]);
  check(!urls.some((u) => /token|Bearer/i.test(u)), 'a token in a URL');
  step('thumbnail in the listing');

  // the grid view, remembered
  await page.click('#view-grid');
  check(await page.$eval('#listing', (t) => t.classList.contains('grid')), 'grid class');
  await page.screenshot({ path: path.join(shots, 'media-grid.png'), fullPage: true });
  step('grid view');

  // a press on the thumbnail opens the preview, without the original
  const before = urls.filter((u) => /\/content/.test(u)).length;
  await page.click('#rows .thumb-btn');
  await page.waitForSelector('#preview[open]');
  await page.waitForFunction(() => document.getElementById('preview-img').naturalWidth > 0, null, { timeout: 20000 });
  const dims = await page.$eval('#preview-img', (i) => [i.naturalWidth, i.naturalHeight]);
  check(dims[0] === 960 && dims[1] === 1280, 'preview ' + dims);
  const facts = await page.textContent('#preview-facts');
  check(facts.includes('3000 × 4000') && facts.includes('Pixel 7'), 'facts: ' + facts);
  check(urls.filter((u) => /\/content/.test(u)).length === before, 'the original was downloaded');
  await page.screenshot({ path: path.join(shots, 'media-preview.png') });
  await page.click('#preview-close');
  await page.waitForFunction(() => !document.getElementById('preview').open);
  step('preview on click');

  if (problems.length) throw new Error('page problems: ' + problems.join(' | '));
} catch (e) {
  failed = e;
  try { if (page) await page.screenshot({ path: path.join(shots, 'media-failure.png'), fullPage: true }); } catch (e2) { /* gone */ }
}
await browser.close();
results.ok = !failed;
if (failed) results.error = String(failed && failed.stack || failed);
console.log(JSON.stringify(results));
process.exit(failed ? 1 : 0);
