// End-to-end test of the web UI in Debian's headless Chromium, driven by
// playwright-core. Usage: node web_e2e.mjs BASE_URL TOKEN WORKDIR SHOTS_DIR
// Exits 0 when every step passed; prints one JSON line of results.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

const [base, token, work, shots] = process.argv.slice(2);
const results = { steps: [] };
const step = (name) => { results.steps.push(name); console.error('step: ' + name); };

function writeRandom(p, n) {
  fs.writeFileSync(p, crypto.randomBytes(n));
  return p;
}

const xssName = '<img src=x onerror=alert(1)>.png';
const fileA = writeRandom(path.join(work, 'alpha.bin'), 300 * 1024);
const fileB = writeRandom(path.join(work, xssName), 2048);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = null;
const dialogs = [];
try {
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 800 } });
  const page = await ctx.newPage();
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  const cspViolations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });

  await page.goto(base + '/');
  step('signin page');
  await page.fill('#token', 'wrong-token-123');
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#signin-error:not(:empty)');
  await page.fill('#token', token);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden])');
  if (page.url().includes(token)) throw new Error('token leaked into the URL');
  step('signed in');
  await page.screenshot({ path: path.join(shots, '01-signed-in.png') });

  // Open a folder first so the uploads land in it.
  await page.evaluate(() => { location.hash = '#/e2e'; });
  await page.waitForFunction(() => document.getElementById('drop-folder').textContent === '/e2e');
  await page.setInputFiles('#file-input', [fileA, fileB]);
  step('files chosen');
  // Progress bars appear, then both uploads reach "available" through SSE.
  await page.waitForSelector('#uploads li progress');
  await page.waitForFunction(() => [...document.querySelectorAll('#uploads li')].length === 2);
  await page.waitForFunction(
    () => [...document.querySelectorAll('#uploads li')].every((li) => li.dataset.state === 'available'),
    null, { timeout: 60000 });
  step('both available over SSE');
  await page.screenshot({ path: path.join(shots, '02-uploaded.png') });

  // The folder view lists both; the hostile name shows as text, not markup.
  await page.waitForFunction(() => document.querySelectorAll('#rows tr.file').length === 2, null, { timeout: 20000 });
  const names = await page.$$eval('#rows tr.file td.name', (tds) => tds.map((t) => t.textContent));
  if (!names.includes(xssName)) throw new Error('XSS name not shown as text: ' + JSON.stringify(names));
  if (await page.$('#rows img')) throw new Error('file name was rendered as HTML');
  step('xss name is text');

  // Go up to the root: the folder "e2e" shows with its file count, then open it.
  await page.click('#crumbs a[href="#/"]');
  await page.waitForSelector('#rows tr.folder[data-folder="e2e"]');
  await page.click('#rows tr.folder[data-folder="e2e"] a');
  await page.waitForFunction(() => document.querySelectorAll('#rows tr.file').length === 2);
  step('opened folder');

  // Rename alpha.bin -> renamed.bin
  const rowA = page.locator('#rows tr.file', { hasText: 'alpha.bin' });
  await rowA.locator('button.rename').click();
  await page.fill('#dlg-input', '/e2e/renamed.bin');
  await page.click('#dlg-ok');
  await page.waitForSelector('#rows tr.file >> text=renamed.bin');
  step('renamed');

  // Download it and compare the bytes.
  const rowR = page.locator('#rows tr.file', { hasText: 'renamed.bin' });
  const [dl] = await Promise.all([page.waitForEvent('download'), rowR.locator('button.download').click()]);
  const got = path.join(work, 'downloaded.bin');
  await dl.saveAs(got);
  if (!fs.readFileSync(got).equals(fs.readFileSync(fileA))) throw new Error('downloaded bytes differ');
  if (dl.suggestedFilename() !== 'renamed.bin') throw new Error('download name ' + dl.suggestedFilename());
  // the browser's own download, from a signed link: never the token in a URL
  if (!/\/content\?user=[^&]+&expires=\d+&sig=[0-9a-f]{64}$/.test(dl.url())) throw new Error('download url ' + dl.url());
  if (dl.url().includes(token)) throw new Error('the token leaked into a URL');
  step('downloaded and compared');

  // Delete it, with confirmation.
  await rowR.locator('button.delete').click();
  await page.waitForSelector('#dlg[open]');
  await page.click('#dlg-ok');
  await page.waitForFunction(() => ![...document.querySelectorAll('#rows td.name')].some((t) => t.textContent === 'renamed.bin'));
  step('deleted');
  await page.screenshot({ path: path.join(shots, '03-after-delete.png') });

  // Phone-sized screen still works.
  await page.setViewportSize({ width: 380, height: 760 });
  await page.screenshot({ path: path.join(shots, '04-phone.png') });
  step('phone layout');

  if (dialogs.length) throw new Error('a JS dialog opened (XSS?): ' + dialogs.join(' | '));
  if (cspViolations.length) throw new Error('CSP violations: ' + cspViolations.join(' | '));
} catch (e) {
  failed = e;
}
await browser.close();
results.ok = !failed;
if (failed) results.error = String(failed && failed.stack || failed);
console.log(JSON.stringify(results));
process.exit(failed ? 1 : 0);
