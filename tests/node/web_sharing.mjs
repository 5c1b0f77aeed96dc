// The web UI's sharing (js/sharing.js) in Debian's headless Chromium,
// driven by playwright-core, against the real daemon (issue 18 item 2):
// who sees a file, share and remove, a folder share, public links with an
// expiry and a download limit (copy, list, revoke).
// Usage: node web_sharing.mjs BASE_URL ALICE_TOKEN BOB_TOKEN CAROL_TOKEN SHOTS_DIR
// Exits 0 when every step passed; prints one JSON line of results last.
import path from 'node:path';
import { check, steps, launch, watchProblems, signIn, failureShot, finish, api } from './lib/browser.mjs';

const [base, token, bobToken, carolToken, shots] = process.argv.slice(2);
const { results, step } = steps();
const auth = (t) => ({ Authorization: 'Bearer ' + t });
const { put } = api(base, token);
const putFile = async (remote, body) => (await put(remote, body)).media.id;
const status = async (url, t) => (await fetch(url, { headers: t ? auth(t) : {} })).status;

const browser = await launch();
let failed = null;
let page;
try {
  const fileId = await putFile('/w/report.txt', 'the report\n');
  await putFile('/w/album/one.txt', 'one\n');

  const ctx = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  page = await ctx.newPage();
  const problems = [];
  watchProblems(page, problems);
  await signIn(page, base + '/#/w', token);
  await page.waitForSelector('#app:not([hidden])');
  const row = page.locator('#rows tr.file', { hasText: 'report.txt' });
  await row.waitFor();

  // Share: nobody yet; add bob; a user that does not exist is said in the dialog.
  await row.locator('button.share').click();
  await page.waitForSelector('#share-dlg[open]');
  check((await page.textContent('#share-title')) === 'Share “report.txt”', 'title');
  await page.waitForSelector('#share-none:not([hidden])');
  await page.fill('#share-user', 'mallory');
  await page.click('#share-add');
  await page.waitForSelector('#share-error:not(:empty)');
  check((await page.textContent('#share-error')) === 'There is no user named “mallory”.', 'unknown user');
  await page.fill('#share-user', 'bob');
  await page.click('#share-add');
  await page.waitForSelector('#share-list li[data-user=bob] button.unshare');
  check(await status(base + '/v1/media/' + fileId, bobToken) === 200, 'bob does not see it');
  step('share a file, errors in the dialog');

  // A public link with an expiry and a limit of one download.
  await page.selectOption('#link-expires', '86400');
  await page.fill('#link-max', '1');
  await page.click('#link-create');
  const li = page.locator('#link-list li.link');
  await li.waitFor();
  const url = await li.locator('input.url').inputValue();
  check(url.startsWith(base + '/p/'), 'link URL ' + url);
  const facts = await li.locator('.facts').textContent();
  check(facts.startsWith('active · 0 of 1 downloads · expires '), 'facts: ' + facts);
  await li.locator('button.copy').click();
  await page.waitForSelector('.notice >> text=Copied the link.');
  check((await page.evaluate(() => navigator.clipboard.readText())) === url, 'clipboard');
  await page.screenshot({ path: path.join(shots, 'sharing-file.png'), fullPage: true });
  step('public link made and copied');

  // Anyone downloads it once, without a token; then it is used up.
  let r = await fetch(url);
  check(r.status === 200 && (await r.text()) === 'the report\n', 'public download ' + r.status);
  check(await status(url) === 410, 'a second download');
  await page.click('#share-close');
  await row.locator('button.share').click();
  await page.waitForSelector('#link-list li.link[data-state="used up"]');
  check((await page.textContent('#link-list li.link .facts')).startsWith('used up · 1 of 1 downloads'), 'used up');
  step('download limit shows');

  // Remove bob; revoke the link.
  await page.click('#share-list li[data-user=bob] button.unshare');
  await page.waitForSelector('#share-none:not([hidden])');
  check(await status(base + '/v1/media/' + fileId, bobToken) === 404, 'bob still sees it');
  await page.fill('#link-max', '');
  await page.click('#link-create');
  await page.waitForFunction(() => document.querySelectorAll('#link-list li.link').length === 2);
  const url2 = await page.locator('#link-list li.link[data-state=active] input.url').inputValue();
  check(await status(url2) === 200, 'second link');
  await page.click('#link-list li.link[data-state=active] button.revoke');
  await page.waitForFunction(() => document.querySelectorAll('#link-list li.link').length === 1);
  check(await status(url2) === 404, 'revoked link still works');
  await page.click('#share-close');
  step('unshare and revoke');

  // A folder: shared with carol, covering a file put there later.
  const folderRow = page.locator('#rows tr.folder[data-folder=album]');
  await folderRow.locator('button.share-folder').click();
  await page.waitForSelector('#share-dlg[open]');
  check((await page.textContent('#share-title')) === 'Share the folder /w/album', 'folder title');
  check(await page.isHidden('#links-section'), 'links on a folder');
  check((await page.textContent('#share-note')).includes('files put there later'), 'note');
  await page.fill('#share-user', 'carol');
  await page.click('#share-add');
  await page.waitForSelector('#share-list li[data-user=carol] button.unshare');
  const later = await putFile('/w/album/later.txt', 'later\n');
  check(await status(base + '/v1/media/' + later, carolToken) === 200, 'carol cannot see a later file');
  await page.screenshot({ path: path.join(shots, 'sharing-folder.png'), fullPage: true });
  await page.click('#share-list li[data-user=carol] button.unshare');
  await page.waitForSelector('#share-none:not([hidden])');
  check(await status(base + '/v1/media/' + later, carolToken) === 404, 'carol still sees it');
  await page.click('#share-close');
  step('folder share covers later files, and is taken back');

  // Every link of mine, from the toolbar.
  await page.click('#show-links');
  await page.waitForSelector('#links-dlg[open]');
  await page.waitForSelector('#all-links li.link');
  check(await page.locator('#all-links li.link').count() === 1, 'all links');
  check((await page.textContent('#all-links li.link .who')) === '/w/report.txt', 'link path');
  await page.click('#all-links li.link button.revoke');
  await page.waitForSelector('#links-none:not([hidden])');
  check(await status(url) === 404, 'revoked from the list');
  await page.click('#links-close');
  step('all links listed and revoked');

  check(problems.length === 0, 'page problems: ' + problems.join(' | '));
} catch (e) {
  failed = e;
  await failureShot(page, shots, 'sharing');
}
await finish(browser, results, failed);
