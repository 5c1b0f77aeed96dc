// End-to-end test of the web UI in Debian's headless Chromium, driven by
// playwright-core, against the real daemon.
// Usage: node web_e2e.mjs BASE_URL ALICE_TOKEN BOB_TOKEN WORKDIR SHOTS_DIR MAX_UPLOAD
// (alice is an admin; the daemon refuses uploads over MAX_UPLOAD bytes).
// Exits 0 when every step passed; prints one JSON line of results last.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { check, steps, launch, finish, api } from './lib/browser.mjs';

const [base, token, bobToken, work, shots, maxUploadArg] = process.argv.slice(2);
const maxUpload = Number(maxUploadArg);
const { results, step } = steps({ shots: [] });

function writeRandom(p, n) {
  fs.writeFileSync(p, crypto.randomBytes(n));
  return p;
}

const xssName = '<img src=x onerror=alert(1)>.png';
const longName = 'Quarterly report for the northern region 2026 final version.pdf';
const fileA = writeRandom(path.join(work, 'alpha.bin'), 300 * 1024);
const fileB = writeRandom(path.join(work, xssName), 2048);
const fileLong = writeRandom(path.join(work, longName), 4096);
const fileBig = writeRandom(path.join(work, 'big.bin'), 6 * 1024 * 1024);
const fileHuge = writeRandom(path.join(work, 'too-big.bin'), maxUpload + 1024 * 1024);
fs.mkdirSync(path.join(work, 'as-folder'));
const fileSub = writeRandom(path.join(work, 'as-folder', 'sub'), 100);

// bob's file in bob's /e2e, shared with alice: it shows in her /e2e.
async function bobShares() {
  const bob = api(base, bobToken);
  const h = bob.auth;
  const { media } = await bob.put('/e2e/from-bob.txt', 'hello from bob\n');
  const r = await fetch(base + '/v1/media/' + media.id + '/shares', {
    method: 'POST', headers: { ...h, 'Content-Type': 'application/json' }, body: JSON.stringify({ user: 'alice' }),
  });
  check(r.status === 201, 'bob share ' + r.status);
}

const browser = await launch();
let failed = null;
const dialogs = [];
let page;
async function shot(name) {
  const p = path.join(shots, name + '.png');
  await page.screenshot({ path: p, fullPage: true });
  results.shots.push(name);
}
const upload = (name) => page.locator('#uploads li', { has: page.locator('.uname', { hasText: new RegExp('^' + name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '$') }) });
const state = (li) => li.getAttribute('data-state');

try {
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 860 } });
  page = await ctx.newPage();
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  const cspViolations = [];
  const pageErrors = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => console.error('console: ' + m.text()));
  // File choosers are intercepted from the start (a waitForEvent started
  // just before the key press can miss the first one).
  const choosers = [];
  page.on('filechooser', (fc) => choosers.push(fc));
  const nextChooser = async () => {
    for (let i = 0; i < 100 && !choosers.length; i++) await page.waitForTimeout(50);
    check(choosers.length, 'no file chooser opened');
    return choosers.shift();
  };

  await page.goto(base + '/');
  await page.waitForSelector('#signin:not([hidden])');
  await shot('01-signin-light');
  await page.fill('#token', 'wrong-token-123');
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#signin-error:not(:empty)');
  check((await page.textContent('#signin-error')).includes('refused'), 'sign-in error text');
  await page.fill('#token', token);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden])');
  check(!page.url().includes(token), 'token leaked into the URL');
  check((await page.textContent('#whoami-name')) === 'alice', 'who is signed in');
  check(await page.isVisible('#whoami-role'), 'the admin badge');
  step('signed in, shows who');

  // The dropzone: the hidden input is no tab stop; a click anywhere on the
  // zone, or Enter on it, opens the picker.
  await page.evaluate(() => { location.hash = '#/e2e'; });
  await page.waitForFunction(() => document.getElementById('drop-folder').textContent === '/e2e');
  await page.focus('#dropzone');
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.id !== 'file-input'), 'the file input is a tab stop');
  await page.focus('#dropzone');
  await page.keyboard.press('Enter');
  await (await nextChooser()).setFiles([]);
  const box = await page.locator('#dropzone').boundingBox();
  await page.mouse.click(box.x + 12, box.y + box.height - 8); // a corner, away from any text
  await (await nextChooser()).setFiles([fileA, fileB, fileLong]);
  step('dropzone opens the picker');

  await page.waitForFunction(() => document.querySelectorAll('#uploads li').length === 3);
  await page.waitForFunction(
    () => [...document.querySelectorAll('#uploads li')].every((li) => li.dataset.state === 'available'),
    null, { timeout: 60000 });
  step('three available over SSE');

  // Speed and time left while a slow upload runs (the browser's upload
  // throttled to 1.5 MiB/s).
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions',
    { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 1.5 * 1024 * 1024 });
  await page.setInputFiles('#file-input', [fileBig]);
  const bigRow = upload('big.bin');
  await page.waitForFunction(() => {
    const li = [...document.querySelectorAll('#uploads li')].find((l) => l.dataset.name === 'big.bin');
    return li && /\d+% · [\d.]+ MiB of 6\.0 MiB · [\d.]+ (KiB|MiB)\/s · \d+ s left/.test(li.querySelector('.stat').textContent);
  }, null, { timeout: 20000 });
  const live = await bigRow.locator('.stat').textContent();
  const m = /([\d.]+) (KiB|MiB)\/s · (\d+) s left/.exec(live);
  const rate = Number(m[1]) * (m[2] === 'MiB' ? 1024 * 1024 : 1024);
  check(rate > 0.3 * 1024 * 1024 && rate < 3 * 1024 * 1024, 'speed shown: ' + live);
  check(Number(m[3]) <= 20, 'time left shown: ' + live);
  results.live = live;
  await shot('02-uploading-light');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await page.waitForFunction(() => [...document.querySelectorAll('#uploads li')].find((l) => l.dataset.name === 'big.bin')?.dataset.state === 'available', null, { timeout: 60000 });
  check(/6\.0 MiB in \d+ s · [\d.]+ (KiB|MiB)\/s/.test(await bigRow.locator('.stat').textContent()), 'the finished line');
  step('speed and time left');

  // The same name again: at once (no 18 s of retries) a plain sentence, no
  // Retry, and Rename... proposes the next free name.
  let t0 = Date.now();
  await page.setInputFiles('#file-input', [fileA]);
  await page.waitForSelector('#uploads li[data-state=conflict]', { timeout: 5000 });
  check(Date.now() - t0 < 5000, 'a 409 was retried');
  const conflict = page.locator('#uploads li[data-state=conflict]');
  const msg = await conflict.locator('.umsg').textContent();
  check(msg === 'A file named “alpha.bin” already exists in /e2e.', 'conflict message: ' + msg);
  check(!(await conflict.locator('button.retry').isVisible()), 'Retry offered for a 409');
  check(await conflict.locator('button.skip').isVisible(), 'Skip offered');
  await shot('03-conflict-light');
  await conflict.locator('button.rename').click();
  await page.waitForSelector('#dlg[open]');
  check((await page.inputValue('#dlg-input')) === 'alpha (2).bin', 'proposed name ' + await page.inputValue('#dlg-input'));
  await page.click('#dlg-ok');
  await page.waitForFunction(() => [...document.querySelectorAll('#uploads li')].some((l) => l.dataset.name === 'alpha (2).bin' && l.dataset.state === 'available'), null, { timeout: 30000 });
  await page.setInputFiles('#file-input', [fileA]);
  await page.waitForSelector('#uploads li[data-state=conflict]', { timeout: 5000 });
  await page.locator('#uploads li[data-state=conflict] button.skip').click();
  await page.waitForSelector('#uploads li[data-state=skipped]');
  // A file named like a folder of this folder: the same choice, said so.
  await page.evaluate(async (t) => {
    const r = await fetch('/v1/files/e2e/sub/inner.txt', { method: 'PUT', headers: { Authorization: 'Bearer ' + t }, body: 'x' });
    if (r.status !== 202) throw new Error('PUT ' + r.status);
  }, token);
  await page.setInputFiles('#file-input', [fileSub]);
  const subRow = page.locator('#uploads li[data-state=conflict][data-name="sub"]');
  await subRow.waitFor({ timeout: 5000 });
  const subMsg = await subRow.locator('.umsg').textContent();
  check(subMsg === 'There is a folder named “sub” in /e2e; a file cannot have the same name.', 'folder clash: ' + subMsg);
  await subRow.locator('button.skip').click();
  await page.waitForSelector('#uploads li[data-state=skipped][data-name="sub"]');
  check(await page.textContent('#uploads li[data-state=skipped][data-name="sub"] .umsg') === 'Skipped: “sub” is taken in /e2e.', 'skip message');
  step('conflict: rename or skip');

  // Over the server's limit: final at once, red, no Retry.
  t0 = Date.now();
  await page.setInputFiles('#file-input', [fileHuge]);
  await page.waitForSelector('#uploads li[data-state=failed]', { timeout: 5000 });
  check(Date.now() - t0 < 5000, 'a 413 was retried');
  const huge = page.locator('#uploads li[data-state=failed]');
  const hmsg = await huge.locator('.umsg').textContent();
  check(/^“too-big\.bin” is larger than this server accepts \(the limit is [\d.]+ MiB\)\.$/.test(hmsg), '413 message: ' + hmsg);
  check(!(await huge.locator('button.retry').isVisible()), 'Retry offered for a 413');
  const red = await huge.evaluate((li) => getComputedStyle(li.querySelector('.ustate')).color);
  check(red !== await page.evaluate(() => getComputedStyle(document.querySelector('#uploads li[data-state=available] .ustate')).color), 'failed is not coloured like available');
  check(!/object ProgressEvent|caused by/.test(await page.textContent('#uploads')), 'raw tus text shown');
  step('413 is final and plain');

  // bob's shared file: marked with its owner, only Download on it.
  await bobShares();
  await page.click('#refresh');
  const shared = page.locator('#rows tr.file', { hasText: 'from-bob.txt' });
  await shared.waitFor();
  check((await shared.locator('.badge.shared').textContent()) === 'shared by bob', 'shared badge');
  const sharedButtons = await shared.locator('td.acts button').evaluateAll((bs) => bs.map((b) => b.className));
  check(JSON.stringify(sharedButtons) === '["download"]', 'actions on a shared file: ' + sharedButtons);
  const ownButtons = await page.locator('#rows tr.file', { hasText: 'alpha.bin' }).locator('td.acts button').evaluateAll((bs) => bs.map((b) => b.className));
  check(JSON.stringify(ownButtons) === '["download","rename","share","versions","delete"]', 'actions on an own file: ' + ownButtons);
  step('shared file shows its owner and only download');

  // The hostile name shows as text, not markup.
  const names = await page.$$eval('#rows tr.file .fname', (s) => s.map((t) => t.textContent));
  check(names.includes(xssName), 'XSS name not shown as text: ' + JSON.stringify(names));
  check(!(await page.$('#rows img')), 'file name was rendered as HTML');
  step('xss name is text');

  // Screens while the panel shows every kind of row: desktop and phone,
  // light and dark.
  await shot('04-desktop-light');
  await page.emulateMedia({ colorScheme: 'dark' });
  const bg = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  const lum = (c) => { const [r, g, b] = c.match(/\d+/g).map(Number); return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; };
  check(lum(bg) < 0.2, 'dark mode background ' + bg);
  await shot('05-desktop-dark');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.emulateMedia({ colorScheme: 'light' });
  check(lum(await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor)) > 0.8, 'light mode background');
  const phone = await page.evaluate(() => {
    const rows = [...document.querySelectorAll('#rows tr.file')];
    return {
      overflow: document.documentElement.scrollWidth - window.innerWidth,
      display: getComputedStyle(rows[0]).display,
      nameWidth: Math.min(...rows.map((r) => r.querySelector('td.name').getBoundingClientRect().width / r.getBoundingClientRect().width)),
      buttonRows: Math.max(...rows.map((r) => new Set([...r.querySelectorAll('td.acts button')].map((b) => Math.round(b.getBoundingClientRect().top))).size)),
    };
  });
  check(phone.overflow <= 0, 'horizontal scroll on a phone: ' + phone.overflow + ' px');
  check(phone.display === 'grid', 'phone rows are cards: ' + phone.display);
  check(phone.nameWidth > 0.85, 'a name gets the card width on a phone: ' + phone.nameWidth);
  check(phone.buttonRows === 1, 'the actions sit in one row on a phone: ' + phone.buttonRows);
  results.phone = phone;
  await shot('06-phone-light');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot('07-phone-dark');
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1200, height: 860 });
  step('layouts');

  // Rename to a taken name: the error shows in the dialog, which keeps what
  // was typed; a free name then works.
  const rowA = page.locator('#rows tr.file', { hasText: /^alpha\.bin/ });
  await rowA.locator('button.rename').click();
  await page.waitForSelector('#dlg[open]');
  await page.fill('#dlg-input', 'alpha (2).bin');
  await page.click('#dlg-ok');
  await page.waitForSelector('#dlg-error:not(:empty)');
  check((await page.textContent('#dlg-error')) === 'A file named “alpha (2).bin” already exists in /e2e.', 'rename error: ' + await page.textContent('#dlg-error'));
  check(await page.isVisible('#dlg'), 'the dialog closed on an error');
  check((await page.inputValue('#dlg-input')) === 'alpha (2).bin', 'what was typed is kept');
  await shot('08-rename-error-light');
  await page.fill('#dlg-input', 'renamed.bin');
  await page.click('#dlg-ok');
  await page.waitForSelector('#dlg', { state: 'hidden' });
  await page.waitForSelector('#rows tr.file >> text=renamed.bin');
  step('rename error keeps the dialog');

  // Share with someone who does not exist: said in the dialog.
  const rowR = page.locator('#rows tr.file', { hasText: 'renamed.bin' });
  await rowR.locator('button.share').click();
  await page.waitForSelector('#share-dlg[open]');
  await page.fill('#share-user', 'mallory');
  await page.click('#share-add');
  await page.waitForSelector('#share-error:not(:empty)');
  check((await page.textContent('#share-error')) === 'There is no user named “mallory”.', 'share error: ' + await page.textContent('#share-error'));
  check((await page.inputValue('#share-user')) === 'mallory', 'what was typed is kept');
  await page.click('#share-close');
  step('share error in the dialog');

  // Download it and compare the bytes.
  const [dl] = await Promise.all([page.waitForEvent('download'), rowR.locator('button.download').click()]);
  const got = path.join(work, 'downloaded.bin');
  await dl.saveAs(got);
  check(fs.readFileSync(got).equals(fs.readFileSync(fileA)), 'downloaded bytes differ');
  check(dl.suggestedFilename() === 'renamed.bin', 'download name ' + dl.suggestedFilename());
  // the browser's own download, from a signed link: never the token in a URL
  check(/\/content\?user=[^&]+&expires=\d+&sig=[0-9a-f]{64}$/.test(dl.url()), 'download url ' + dl.url());
  check(!dl.url().includes(token), 'the token leaked into a URL');
  step('downloaded and compared');

  // Delete it: its upload row goes too (it no longer shows as available).
  // (renamed in place: its upload row says so)
  const alphaDone = page.locator('#uploads li[data-name="alpha.bin"][data-state=available]');
  const alphaMsg = await alphaDone.locator('.umsg').textContent();
  check(alphaMsg === 'Renamed to “renamed.bin”.', 'the upload row of the renamed alpha.bin: ' + alphaMsg);
  await rowR.locator('button.delete').click();
  await page.waitForSelector('#dlg[open]');
  await page.click('#dlg-ok');
  await page.waitForFunction(() => ![...document.querySelectorAll('#rows .fname')].some((t) => t.textContent === 'renamed.bin'));
  check(await alphaDone.count() === 0, 'a deleted file still shows in the uploads');
  step('deleted, and its upload row with it');

  // An error outside a dialog stays until dismissed.
  const stale = page.locator('#rows tr.file', { hasText: 'alpha (2).bin' });
  const staleId = await stale.getAttribute('data-id');
  await page.evaluate(async ([id, t]) => {
    await fetch('/v1/media/' + id, { method: 'DELETE', headers: { Authorization: 'Bearer ' + t } });
  }, [staleId, token]);
  await stale.locator('button.download').click();
  await page.waitForSelector('.notice-error');
  // It outlives a confirmation: one made now (through the page's own
  // notices module) fades on its timer while the error stays.
  await page.evaluate(() => import('/js/notices.js').then((m) => m.notify('probe', 'info')));
  await page.waitForSelector('.notice-info:has-text("probe")');
  await page.waitForSelector('.notice-info:has-text("probe")', { state: 'detached', timeout: 15000 });
  check(await page.locator('.notice-error').count() === 1, 'the error notice vanished with the confirmation');
  const note = await page.textContent('.notice-error .notice-text');
  check(note === '“alpha (2).bin” could not be downloaded. That file is no longer there (it was moved or deleted).', 'notice: ' + note);
  await shot('09-error-notice-light');
  // the listing reloaded, and the upload of the file deleted behind the UI's back says so
  await page.waitForSelector('#uploads li[data-name="alpha (2).bin"][data-state=gone]');
  check(!(await page.$('#rows tr.file[data-id="' + staleId + '"]')), 'the stale row stayed');
  await page.click('.notice-error .notice-close');
  await page.waitForSelector('.notice-error', { state: 'detached' });
  step('errors stay until dismissed');

  // Clear finished empties the panel of what is done.
  await page.click('#uploads-clear');
  await page.waitForFunction(() => document.querySelectorAll('#uploads li').length === 0);
  check(await page.isHidden('#uploads-panel'), 'the empty panel still shows');
  step('clear finished');

  if (dialogs.length) throw new Error('a JS dialog opened (XSS?): ' + dialogs.join(' | '));
  if (cspViolations.length) throw new Error('CSP violations: ' + cspViolations.join(' | '));
  if (pageErrors.length) throw new Error('page errors: ' + pageErrors.join(' | '));
} catch (e) {
  failed = e;
  try { if (page) await shot('99-failure'); } catch (e2) { /* the page may be gone */ }
}
await finish(browser, results, failed);
