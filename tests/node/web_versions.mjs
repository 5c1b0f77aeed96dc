// The web UI's versions and trash (js/versions.js) in Debian's headless
// Chromium, driven by playwright-core, against the real daemon (issue 18
// item 4): a file's versions listed and an earlier one restored; a delete
// that goes to the trash (the dialog says so) and a restore from it; an
// upload onto a taken name replaced or kept beside it; a big file sent as
// parallel tus partial uploads (concatenation).
// Usage: node web_versions.mjs BASE_URL TOKEN SHOTS_DIR
// Exits 0 when every step passed; prints one JSON line of results last.
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import crypto from 'node:crypto';
import { check, steps, launch, watchProblems, signIn, failureShot, finish, api } from './lib/browser.mjs';

const [base, token, shots] = process.argv.slice(2);
const { results, step } = steps();
const { auth, put, listing } = api(base, token);
const putFile = async (remote, body, headers = {}) => (await put(remote, body, { headers })).media.id;

const browser = await launch();
let failed = null;
let page;
try {
  const v1 = await putFile('/w/doc.txt', 'one');
  const v2 = await putFile('/w/doc.txt', 'two!', { 'If-Match': '*' });
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  page = await ctx.newPage();
  const problems = [];
  watchProblems(page, problems);
  await signIn(page, base + '/#/w', token);
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForSelector('#rows tr.file[data-id="' + v2 + '"]');

  // Versions: 2 is current, 1 is earlier with Restore; restore it.
  await page.click('#rows tr.file[data-id="' + v2 + '"] button.versions');
  await page.waitForSelector('#versions-dlg[open]');
  await page.waitForSelector('#versions-list li[data-version="1"] button.restore');
  check(await page.locator('#versions-list li[data-version="2"] button.restore').count() === 0, 'current has no Restore');
  check((await page.textContent('#versions-list li[data-version="2"]')).includes('current'), 'current marked');
  await page.screenshot({ path: path.join(shots, 'versions.png'), fullPage: true });
  await page.click('#versions-list li[data-version="1"] button.restore');
  await page.waitForSelector('#versions-list li[data-version="2"] button.restore');
  await page.click('#versions-close');
  await page.waitForSelector('#rows tr.file[data-id="' + v1 + '"]');
  check((await listing('/w')).files[0].id === v1, 'version 1 is not current');
  step('list versions and restore one');

  // Delete: into the trash, as the dialog says; restore it from the Trash.
  await page.click('#rows tr.file[data-id="' + v1 + '"] button.delete');
  await page.waitForSelector('#dlg[open]');
  check((await page.textContent('#dlg-text')).includes('goes to the trash'), 'delete text: ' + await page.textContent('#dlg-text'));
  await page.click('#dlg-ok');
  await page.waitForFunction((id) => !document.querySelector('#rows tr.file[data-id="' + id + '"]'), v1);
  check((await listing('/w')).files.length === 0, 'still listed');
  await page.click('#show-trash');
  await page.waitForSelector('#trash-dlg[open]');
  await page.waitForSelector('#trash-list li[data-id="' + v1 + '"]');
  check((await page.textContent('#trash-list li[data-id="' + v1 + '"]')).includes('/w/doc.txt'), 'trash row path');
  await page.screenshot({ path: path.join(shots, 'trash.png'), fullPage: true });
  await page.click('#trash-list li[data-id="' + v1 + '"] button.restore');
  await page.waitForFunction(() => document.querySelectorAll('#trash-list li').length === 0);
  await page.click('#trash-close');
  await page.waitForSelector('#rows tr.file[data-id="' + v1 + '"]');
  step('delete into the trash and restore');

  // Upload onto a taken name: the row offers Replace and Keep both (not
  // only Rename/Skip); Replace makes a new version, Keep both a free name.
  const row = (state) => page.locator('#uploads li[data-state=' + state + ']');
  await page.setInputFiles('#file-input', [{ name: 'doc.txt', mimeType: 'text/plain', buffer: Buffer.from('three') }]);
  await page.waitForSelector('#uploads li[data-state=conflict]', { timeout: 10000 });
  check(await row('conflict').locator('button.replace').isVisible(), 'Replace offered');
  check(await row('conflict').locator('button.keepboth').isVisible(), 'Keep both offered');
  await page.screenshot({ path: path.join(shots, 'upload-conflict.png'), fullPage: true });
  await row('conflict').locator('button.replace').click();
  await page.waitForSelector('#uploads li[data-state=available]', { timeout: 20000 });
  check((await row('available').locator('.umsg').textContent()).includes('Replaced'), 'replace message');
  let files = (await listing('/w')).files;
  check(files.length === 1 && files[0].id !== v1 && files[0].version === 3, 'replaced: ' + JSON.stringify(files));
  const vs = await (await fetch(base + '/v1/media/' + files[0].id + '/versions', { headers: auth })).json();
  check(vs.versions.map((v) => v.id).includes(v1), 'the replaced file is an earlier version');
  await page.click('#uploads-clear');
  await page.setInputFiles('#file-input', [{ name: 'doc.txt', mimeType: 'text/plain', buffer: Buffer.from('four') }]);
  await page.waitForSelector('#uploads li[data-state=conflict]', { timeout: 10000 });
  await row('conflict').locator('button.keepboth').click();
  await page.waitForSelector('#uploads li[data-state=available][data-name="doc (1).txt"]', { timeout: 20000 });
  check((await row('available').locator('.umsg').textContent()).includes('Kept both'), 'keep both message');
  files = (await listing('/w')).files.map((f) => f.name).sort();
  check(JSON.stringify(files) === '["doc (1).txt","doc.txt"]', 'kept both: ' + files);
  step('upload onto a taken name: replace or keep both');

  // A big file (>= 64 MiB) goes up as 4 partial uploads + 1 final one
  // (tus-js-client parallelUploads); its name is checked before any byte.
  const big = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'webpar-')), 'big.bin');
  const bytes = crypto.randomBytes(65 * 1024 * 1024 + 17);
  fs.writeFileSync(big, bytes);
  const concat = [];
  page.on('request', (r) => { const h = r.headers()['upload-concat']; if (h && r.method() === 'POST') concat.push(h); });
  await page.click('#uploads-clear');
  await page.setInputFiles('#file-input', [big]);
  await page.waitForSelector('#uploads li[data-state=available][data-name="big.bin"]', { timeout: 120000 });
  check(concat.length === 5 && concat.slice(0, 4).every((h) => h === 'partial'), 'partials: ' + JSON.stringify(concat));
  check(concat[4].startsWith('final;') && concat[4].split(' ').length === 4, 'final: ' + concat[4]);
  const f = (await listing('/w')).files.find((x) => x.name === 'big.bin');
  check(f && f.size === bytes.length && f.sha256 === crypto.createHash('sha256').update(bytes).digest('hex'), 'big.bin: ' + JSON.stringify(f));
  await page.click('#uploads-clear');
  await page.setInputFiles('#file-input', [big]);
  await page.waitForSelector('#uploads li[data-state=conflict][data-name="big.bin"]', { timeout: 10000 });
  check(concat.length === 5, 'a taken name sent parts: ' + concat.length);
  fs.rmSync(path.dirname(big), { recursive: true, force: true });
  step('a big file goes up as parallel parts');

  // Delete a folder: its files go to the trash (the dialog says so), and
  // restoring them from the Trash brings the folder back.
  const x = await putFile('/w/dir/x.txt', 'x');
  const y = await putFile('/w/dir/deep/y.txt', 'y');
  await page.click('#refresh');
  await page.waitForSelector('#rows tr.folder[data-folder=dir]');
  await page.click('#rows tr.folder[data-folder=dir] button.delete-folder');
  await page.waitForSelector('#dlg[open]');
  const says = await page.textContent('#dlg-text');
  check(says.includes('2 files in it go to the trash') && says.includes('restoring brings the folder back'), 'folder delete text: ' + says);
  await page.click('#dlg-ok');
  await page.waitForSelector('.notice >> text=Moved the folder /w/dir and its 2 files to the trash.');
  await page.waitForFunction(() => !document.querySelector('#rows tr.folder[data-folder=dir]'));
  await page.click('#show-trash');
  await page.waitForSelector('#trash-dlg[open]');
  for (const id of [x, y]) {
    await page.waitForSelector('#trash-list li[data-id="' + id + '"]');
    await page.click('#trash-list li[data-id="' + id + '"] button.restore');
    await page.waitForFunction((i) => !document.querySelector('#trash-list li[data-id="' + i + '"]'), id);
  }
  await page.click('#trash-close');
  await page.waitForSelector('#rows tr.folder[data-folder=dir]');
  check((await listing('/w/dir')).files.map((f) => f.id).join() === x, 'x back in /w/dir');
  check((await listing('/w/dir/deep')).files.map((f) => f.id).join() === y, 'y back in /w/dir/deep');
  step('delete a folder into the trash and restore its files');

  check(problems.length === 0, 'page problems: ' + problems.join(' | '));
} catch (e) {
  failed = e;
  await failureShot(page, shots, 'versions');
}
await finish(browser, results, failed);
