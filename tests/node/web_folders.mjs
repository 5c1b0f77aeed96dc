// The web UI's folders (js/folders.js) in Debian's headless Chromium,
// driven by playwright-core, against the real daemon (issue 18 item 3):
// New folder (and its errors), rename a folder, move one into another,
// delete one after a confirmation that says how many files go.
// Usage: node web_folders.mjs BASE_URL TOKEN SHOTS_DIR
// Exits 0 when every step passed; prints one JSON line of results last.
import path from 'node:path';
import { check, steps, launch, watchProblems, signIn, failureShot, finish, api } from './lib/browser.mjs';

const [base, token, shots] = process.argv.slice(2);
const { results, step } = steps();
const { put, listing } = api(base, token);
const putFile = async (remote, body) => (await put(remote, body, { wait: false })).media.id;

const browser = await launch();
let failed = null;
let page;
try {
  await putFile('/f/trip/a.txt', 'a');
  await putFile('/f/trip/day/b.txt', 'bb');
  await putFile('/f/note.txt', 'n');
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  page = await ctx.newPage();
  const problems = [];
  watchProblems(page, problems);
  await signIn(page, base + '/#/f', token);
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForSelector('#rows tr.folder[data-folder=trip]');

  // New folder: a name taken by a file is said in the dialog; then made.
  await page.click('#new-folder');
  await page.waitForSelector('#dlg[open]');
  await page.fill('#dlg-input', 'note.txt');
  await page.click('#dlg-ok');
  await page.waitForSelector('#dlg-error:not(:empty)');
  check((await page.textContent('#dlg-error')).includes('file of that name'), 'clash: ' + await page.textContent('#dlg-error'));
  await page.fill('#dlg-input', 'a/b');
  await page.click('#dlg-ok');
  await page.waitForFunction(() => document.getElementById('dlg-error').textContent.includes('cannot contain /'));
  await page.fill('#dlg-input', 'Empty one');
  await page.click('#dlg-ok');
  await page.waitForSelector('#dlg', { state: 'hidden' });
  await page.waitForSelector('#rows tr.folder[data-folder="Empty one"]');
  check((await page.textContent('#rows tr.folder[data-folder="Empty one"] td.type')) === '0 files', 'empty folder row');
  step('new folder, and its errors');

  // Rename a folder in place.
  await page.click('#rows tr.folder[data-folder=trip] button.rename-folder');
  await page.waitForSelector('#dlg[open]');
  check((await page.inputValue('#dlg-input')) === '/f/trip', 'rename proposes the path');
  await page.fill('#dlg-input', 'Trip 2026');
  await page.click('#dlg-ok');
  await page.waitForSelector('#dlg', { state: 'hidden' });
  await page.waitForSelector('#rows tr.folder[data-folder="Trip 2026"]');
  check(await page.locator('#rows tr.folder[data-folder=trip]').count() === 0, 'old name still listed');
  const doc = await listing('/f/Trip 2026');
  check(doc.files.length === 1 && doc.folders.length === 1 && doc.folders[0].files === 1, 'moved contents');
  await page.screenshot({ path: path.join(shots, 'folders-renamed.png'), fullPage: true });
  step('rename a folder');

  // Move it into the empty folder ("/x/" keeps the name).
  await page.click('#rows tr.folder[data-folder="Trip 2026"] button.rename-folder');
  await page.waitForSelector('#dlg[open]');
  await page.fill('#dlg-input', '/f/Empty one/');
  await page.click('#dlg-ok');
  await page.waitForSelector('#dlg', { state: 'hidden' });
  await page.waitForFunction(() => !document.querySelector('#rows tr.folder[data-folder="Trip 2026"]'));
  const moved = await listing('/f/Empty one');
  check(moved.folders.length === 1 && moved.folders[0].name === 'Trip 2026' && moved.folders[0].files === 2, 'moved in');
  step('move a folder');

  // Delete it: the confirmation says how many files go; cancel first.
  const row = page.locator('#rows tr.folder[data-folder="Empty one"]');
  await page.waitForFunction(() => document.querySelector('#rows tr.folder[data-folder="Empty one"] td.type').textContent === '2 files');
  await row.locator('button.delete-folder').click();
  await page.waitForSelector('#dlg[open]');
  check((await page.textContent('#dlg-text')).includes('the 2 files in it'), 'confirmation text: ' + await page.textContent('#dlg-text'));
  check((await page.textContent('#dlg-ok')) === 'Delete 2 files', 'confirm button');
  await page.screenshot({ path: path.join(shots, 'folders-delete-confirm.png'), fullPage: true });
  await page.click('#dlg-cancel');
  check((await listing('/f')).folders.length === 1, 'deleted without confirming');
  await row.locator('button.delete-folder').click();
  await page.waitForSelector('#dlg[open]');
  await page.click('#dlg-ok');
  await page.waitForSelector('.notice >> text=Deleted the folder /f/Empty one and 2 files.');
  await page.waitForFunction(() => !document.querySelector('#rows tr.folder'));
  check((await listing('/f')).folders.length === 0, 'folder still there');
  step('delete a folder after confirming');

  check(problems.length === 0, 'page problems: ' + problems.join(' | '));
} catch (e) {
  failed = e;
  await failureShot(page, shots, 'folders');
}
await finish(browser, results, failed);
