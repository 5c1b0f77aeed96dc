// tus_parallel.mjs - upload one file to dripd with tus-js-client 4.3.1's
// parallelUploads (tus concatenation: N partial uploads, then one final
// upload that joins them). With --cut, one partial's PATCH is cut in the
// middle of its body (the socket destroyed) and the whole upload aborted;
// it is then resumed the way a real client does (findPreviousUploads +
// resumeFromPreviousUpload from a URL store), which HEADs every partial
// and sends only what is missing.
//
//   node tests/node/tus_parallel.mjs --endpoint http://127.0.0.1:8080/v1/uploads \
//        --token T --file PATH [--name NAME] [--parallel 4] [--chunk-size N]
//        [--cut 1] [--store /tmp/tus-urls.json]
//
// Prints one JSON line: {"url", "job", "media", "size", "cut_at", "ms",
// "final_ms"} (final_ms: the final upload's POST, the join, alone);
// exits non-zero (message on stderr) on failure.
import { createRequire } from 'node:module'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

const require = createRequire(import.meta.url)
const tus = require('tus-js-client')

function args() {
  const a = {
    parallel: 4,
    chunkSize: Infinity,
    cut: 0,
    store: path.join(os.tmpdir(), `tus-par-urls-${process.pid}.json`),
  }
  const v = process.argv.slice(2)
  for (let i = 0; i < v.length; i += 2) {
    const k = v[i].replace(/^--/, '')
    const val = v[i + 1]
    if (k === 'endpoint') a.endpoint = val
    else if (k === 'token') a.token = val
    else if (k === 'file') a.file = val
    else if (k === 'name') a.name = val
    else if (k === 'parallel') a.parallel = Number(val)
    else if (k === 'chunk-size') a.chunkSize = Number(val)
    else if (k === 'cut') a.cut = Number(val)
    else if (k === 'store') a.store = val
    else throw new Error(`unknown option --${k}`)
  }
  if (!a.endpoint || !a.token || !a.file) throw new Error('--endpoint, --token and --file are required')
  a.name = a.name || path.basename(a.file)
  return a
}

function options(a, extra) {
  return {
    endpoint: a.endpoint,
    chunkSize: a.chunkSize,
    parallelUploads: a.parallel,
    headers: { Authorization: `Bearer ${a.token}` },
    metadata: { filename: a.name, filetype: 'application/octet-stream' },
    urlStorage: new tus.FileUrlStorage(a.store),
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    retryDelays: [0, 100, 300, 1000, 2000, 3000],
    ...extra,
  }
}

// An httpStack that lets the n-th PATCH through only until half its body
// is in the socket, then calls onCut (which aborts the whole upload, so
// the other parts' PATCHes are cut too). With one PATCH per part, the
// n-th PATCH (n = parallel) starts once every part was created, so the URL
// store already holds them all.
class CuttingStack {
  constructor(inner, n, onCut) {
    this.inner = inner
    this.n = n
    this.onCut = onCut
    this.patches = 0
  }

  getName() {
    return 'dripd-test-cutting-stack'
  }

  createRequest(method, url) {
    const r = this.inner.createRequest(method, url)
    if (method !== 'PATCH' || ++this.patches !== this.n) return r
    const send = r.send.bind(r)
    r.send = (body) => {
      const p = send(body)
      const req = r.getUnderlyingObject()
      const size = body && body.size ? body.size : 0
      const timer = setInterval(() => {
        const sock = req.socket
        const head = typeof req._header === 'string' ? Buffer.byteLength(req._header) : 0
        if (sock && sock.bytesWritten >= head + size / 2) {
          clearInterval(timer)
          this.onCut(sock.bytesWritten - head)
        }
      }, 1)
      p.then(
        () => clearInterval(timer),
        () => clearInterval(timer),
      )
      return p
    }
    return r
  }
}

let finalT0 = 0
let finalMs = null

function run(a, resume) {
  return new Promise((resolve, reject) => {
    let stopped = false
    let upload = null
    const extra = {
      onBeforeRequest(req) {
        const uc = req.getHeader('Upload-Concat')
        if (req.getMethod() === 'POST' && uc && uc.startsWith('final')) finalT0 = Date.now()
      },
      onAfterResponse(req) {
        const uc = req.getHeader('Upload-Concat')
        if (req.getMethod() === 'POST' && uc && uc.startsWith('final')) finalMs = Date.now() - finalT0
      },
      onSuccess({ lastResponse }) {
        resolve({
          url: upload.url,
          job: lastResponse.getHeader('Upload-Job') || null,
          media: lastResponse.getHeader('Upload-Media') || null,
        })
      },
      onError(err) {
        if (!stopped) reject(err)
      },
    }
    if (!resume && a.cut)
      extra.httpStack = new CuttingStack(new tus.DefaultHttpStack(), a.parallel, (at) => {
        if (stopped) return
        stopped = true
        upload.abort(false).then(() => resolve({ cut_at: at }), reject)
      })
    upload = new tus.Upload(fs.createReadStream(a.file), options(a, extra))
    if (!resume) {
      upload.start()
      return
    }
    upload
      .findPreviousUploads()
      .then((previous) => {
        if (previous.length === 0) throw new Error('no previous upload found in the URL store')
        if (!previous[0].parallelUploadUrls) throw new Error('the stored upload has no partial URLs')
        upload.resumeFromPreviousUpload(previous[0])
        upload.start()
      })
      .catch(reject)
  })
}

async function main() {
  const a = args()
  const t0 = Date.now()
  let cutAt = null
  let r = await run(a, false)
  if (a.cut) {
    if (r.cut_at === undefined) throw new Error('the upload finished before the forced cut')
    cutAt = r.cut_at
    r = await run(a, true)
  }
  if (!r.job) throw new Error('the final upload carried no Upload-Job header')
  process.stdout.write(
    JSON.stringify({
      url: r.url,
      job: r.job,
      media: r.media,
      size: fs.statSync(a.file).size,
      cut_at: cutAt,
      ms: Date.now() - t0,
      final_ms: finalMs,
    }) + '\n',
  )
  fs.rmSync(a.store, { force: true })
}

main().catch((err) => {
  process.stderr.write(`tus_parallel: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
