// The web UI's thumbnails, grid view and preview (js/media.js) in Debian's
// headless Chromium, driven by playwright-core, against the real daemon.
// Usage: node web_media.mjs BASE_URL TOKEN FOLDER SHOTS_DIR PHOTO VIDEO
// The folder holds a file that is not media; the phone photo (EXIF
// orientation 6: portrait as displayed) and the video are uploaded through
// the UI's file picker, and come back with their thumbnails (the video's
// from its poster). Exits 0 when every step passed; prints one JSON line
// of results last.
import path from 'node:path';
import { check, steps, launch, watchProblems, signIn, failureShot, finish } from './lib/browser.mjs';

const [base, token, folder, shots, photo, video] = process.argv.slice(2);
const { results, step } = steps();

const browser = await launch();
let failed = null;
let page;
try {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  page = await ctx.newPage();
  const problems = [];
  const urls = [];
  watchProblems(page, problems);
  page.on('request', (r) => urls.push(r.url()));
  await signIn(page, base + '/#' + folder, token);
  await page.waitForSelector('#app:not([hidden])');

  // the photo and the video go up through the file picker and are processed
  await page.setInputFiles('#file-input', [photo, video]);
  for (const f of [photo, video]) {
    const name = path.basename(f);
    await page.waitForFunction((n) => [...document.querySelectorAll('#uploads li')].find((l) => l.dataset.name === n)?.dataset.state === 'available', name, { timeout: 60000 });
  }
  step('photo and video uploaded');

  // each gets a thumbnail (from a blob: URL), the other file none
  await page.waitForFunction(() => document.querySelectorAll('#rows img.thumb.loaded').length === 2, null, { timeout: 20000 });
  const thumb = (name) => page.locator('#rows tr', { hasText: name }).locator('img.thumb.loaded');
  const dims = (l) => l.evaluate((i) => [i.naturalWidth, i.naturalHeight, i.src.slice(0, 5)]);
  const pt = await dims(thumb(path.basename(photo)));
  check(pt[0] === 192 && pt[1] === 256 && pt[2] === 'blob:', 'photo thumb ' + pt);
  const vt = await dims(thumb(path.basename(video)));
  check(vt[0] === 256 && vt[1] === 144 && vt[2] === 'blob:', 'video thumb ' + vt);
  check(!urls.some((u) => /token|Bearer/i.test(u)), 'a token in a URL');
  step('thumbnail in the listing');

  // the grid view, remembered
  await page.click('#view-grid');
  check(await page.$eval('#listing', (t) => t.classList.contains('grid')), 'grid class');
  await page.screenshot({ path: path.join(shots, 'media-grid.png'), fullPage: true });
  step('grid view');

  // a press on the photo's thumbnail opens the preview, without the original
  const before = urls.filter((u) => /\/content/.test(u)).length;
  await page.locator('#rows tr', { hasText: path.basename(photo) }).locator('.thumb-btn').click();
  await page.waitForSelector('#preview[open]');
  await page.waitForFunction(() => document.getElementById('preview-img').naturalWidth > 0, null, { timeout: 20000 });
  const pd = await page.$eval('#preview-img', (i) => [i.naturalWidth, i.naturalHeight]);
  check(pd[0] === 960 && pd[1] === 1280, 'preview ' + pd);
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
  await failureShot(page, shots, 'media');
}
await finish(browser, results, failed);
