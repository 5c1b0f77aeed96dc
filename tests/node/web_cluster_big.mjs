// The web UI against a cluster (issues 16, 18): a file of 64 MiB or more
// goes up as parallel tus partial uploads (a cluster offers
// concatenation: OPTIONS says so), through the balancer to any nodes,
// joined by one final upload, and arrives whole.
// Usage: node web_cluster_big.mjs BASE_URL TOKEN WORKDIR
// Exits 0 when every step passed; prints one JSON line of results last.
import path from 'node:path';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { check, steps, launch, watchProblems, signIn, finish, api } from './lib/browser.mjs';

const [base, token, work] = process.argv.slice(2);
const { results, step } = steps();
const { listing } = api(base, token);

const browser = await launch();
let failed = null;
try {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  const page = await ctx.newPage();
  watchProblems(page, []);
  const posts = [];
  page.on('request', (r) => { if (r.method() === 'POST' && r.url().includes('/v1/uploads')) posts.push(r.headers()['upload-concat'] || ''); });
  await signIn(page, base + '/#/big', token);
  await page.waitForSelector('#app:not([hidden])');
  const big = path.join(work, 'big.bin');
  const bytes = crypto.randomBytes(65 * 1024 * 1024 + 17);
  fs.writeFileSync(big, bytes);
  await page.setInputFiles('#file-input', [big]);
  await page.waitForSelector('#uploads li[data-state=available][data-name="big.bin"]', { timeout: 240000 });
  const partials = posts.filter((p) => p === 'partial').length;
  const finals = posts.filter((p) => p.startsWith('final;')).length;
  check(partials >= 4 && finals === 1 && partials + finals === posts.length,
    'four partial uploads and one final: ' + JSON.stringify(posts));
  const f = (await listing('/big')).files.find((x) => x.name === 'big.bin');
  check(f && f.size === bytes.length && f.sha256 === crypto.createHash('sha256').update(bytes).digest('hex'),
    'big.bin: ' + JSON.stringify(f));
  step('a big file goes up as parallel partial uploads');
} catch (e) {
  failed = e;
}
await finish(browser, results, failed);
