// tus_upload.mjs - upload one file to dripd with tus-js-client 4.3.1,
// forcing one interruption, then resuming it the way a real client does
// (findPreviousUploads + resumeFromPreviousUpload from a URL store).
//
//   node tests/node/tus_upload.mjs --endpoint http://127.0.0.1:8080/v1/uploads \
//        --token T --file PATH [--name NAME] [--folder /x] [--chunk-size 5242880] \
//        [--interrupt mid|chunk] [--store /tmp/tus-urls.json]
//
// --interrupt mid   (default) cut the second chunk's PATCH after half its body
//                   reached the socket, so the server must keep the bytes it
//                   got before the cut (tus-js-client's own progress events are
//                   throttled to 100 ms, too coarse to cut with on loopback)
// --interrupt chunk abort right after the first chunk's onChunkComplete
//
// Prints one JSON line: {"url", "job", "media", "interrupted_at",
// "resumed_from", "size"}; exits non-zero (message on stderr) on failure.
import { createRequire } from 'node:module'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Transform } from 'node:stream'

const require = createRequire(import.meta.url)
const tus = require('tus-js-client')

function args() {
  const a = {
    chunkSize: 5 * 1024 * 1024,
    interrupt: 'mid',
    folder: null,
    store: path.join(os.tmpdir(), `tus-urls-${process.pid}.json`),
  }
  const v = process.argv.slice(2)
  for (let i = 0; i < v.length; i += 2) {
    const k = v[i].replace(/^--/, '')
    const val = v[i + 1]
    if (k === 'endpoint') a.endpoint = val
    else if (k === 'token') a.token = val
    else if (k === 'file') a.file = val
    else if (k === 'name') a.name = val
    else if (k === 'folder') a.folder = val
    else if (k === 'chunk-size') a.chunkSize = Number(val)
    else if (k === 'interrupt') a.interrupt = val
    else if (k === 'store') a.store = val
    else throw new Error(`unknown option --${k}`)
  }
  if (!a.endpoint || !a.token || !a.file) throw new Error('--endpoint, --token and --file are required')
  a.name = a.name || path.basename(a.file)
  return a
}

function options(a, extra) {
  const metadata = { filename: a.name, filetype: 'application/octet-stream' }
  if (a.folder) metadata.folder = a.folder
  return {
    endpoint: a.endpoint,
    chunkSize: a.chunkSize,
    headers: { Authorization: `Bearer ${a.token}` },
    metadata,
    urlStorage: new tus.FileUrlStorage(a.store),
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    // 409/423 are retried too: the server may still be saving the cut PATCH.
    retryDelays: [0, 100, 300, 1000, 2000, 3000],
    ...extra,
  }
}

// An httpStack around tus-js-client's own: the second PATCH gets only the
// first half of its body, and once that half went into the socket, onCut
// runs (which aborts the upload: the socket is destroyed mid-body).
class CuttingStack {
  constructor(inner, chunkSize, onCut) {
    this.inner = inner
    this.half = Math.floor(chunkSize / 2)
    this.onCut = onCut
    this.patches = 0
  }

  getName() {
    return 'dripd-test-cutting-stack'
  }

  createRequest(method, url) {
    const r = this.inner.createRequest(method, url)
    if (method !== 'PATCH' || ++this.patches !== 2) return r
    const send = r.send.bind(r)
    const half = this.half
    r.send = (body) => {
      let passed = 0
      const cut = new Transform({
        transform(chunk, _enc, cb) {
          if (passed >= half) return cb()
          const take = Math.min(chunk.length, half - passed)
          passed += take
          cb(null, chunk.subarray(0, take))
        },
      })
      cut.size = body.size // keeps the Content-Length of the whole chunk
      body.pipe(cut)
      const p = send(cut)
      const req = r.getUnderlyingObject()
      let base = null
      req.on('socket', (sock) => {
        base = sock.bytesWritten // keep-alive sockets count earlier requests too
      })
      const timer = setInterval(() => {
        const sock = req.socket
        // the request head and half the body are in the kernel: the server
        // will read them all before it sees the connection end
        const head = typeof req._header === 'string' ? Buffer.byteLength(req._header) : 0
        if (base !== null && sock && sock.bytesWritten - base >= head + half) {
          clearInterval(timer)
          this.onCut(passed)
        }
      }, 2)
      p.then(
        () => clearInterval(timer),
        () => clearInterval(timer),
      )
      return p
    }
    return r
  }
}

// First attempt: runs until the forced interruption, resolves with the
// offset the client had reached (acknowledged + bytes of the cut PATCH).
function firstAttempt(a) {
  return new Promise((resolve, reject) => {
    let done = false
    let acked = 0
    const stop = (at) => {
      if (done) return
      done = true
      upload.abort().then(() => resolve(at), reject)
    }
    const extra = {
      onChunkComplete(_chunk, accepted) {
        acked = accepted
        if (a.interrupt === 'chunk') stop(accepted)
      },
      onSuccess() {
        if (!done) reject(new Error('the upload finished before the forced interruption'))
      },
      onError(err) {
        if (!done) reject(err)
      },
    }
    if (a.interrupt === 'mid')
      extra.httpStack = new CuttingStack(new tus.DefaultHttpStack(), a.chunkSize, (sent) =>
        stop(acked + sent),
      )
    const upload = new tus.Upload(fs.createReadStream(a.file), options(a, extra))
    upload.start()
  })
}

function resume(a) {
  return new Promise((resolve, reject) => {
    let resumedFrom = null
    const upload = new tus.Upload(
      fs.createReadStream(a.file),
      options(a, {
        onChunkComplete(chunk, accepted) {
          if (resumedFrom === null) resumedFrom = accepted - chunk
        },
        onSuccess({ lastResponse }) {
          resolve({
            url: upload.url,
            job: lastResponse.getHeader('Upload-Job') || null,
            media: lastResponse.getHeader('Upload-Media') || null,
            resumedFrom,
          })
        },
        onError: reject,
      }),
    )
    upload
      .findPreviousUploads()
      .then((previous) => {
        if (previous.length === 0) throw new Error('no previous upload found in the URL store')
        upload.resumeFromPreviousUpload(previous[0])
        upload.start()
      })
      .catch(reject)
  })
}

async function main() {
  const a = args()
  const size = fs.statSync(a.file).size
  const interruptedAt = await firstAttempt(a)
  const r = await resume(a)
  if (!r.job) throw new Error('the last PATCH carried no Upload-Job header')
  process.stdout.write(
    JSON.stringify({
      url: r.url,
      job: r.job,
      media: r.media,
      interrupted_at: interruptedAt,
      resumed_from: r.resumedFrom,
      size,
    }) + '\n',
  )
  fs.rmSync(a.store, { force: true })
}

main().catch((err) => {
  process.stderr.write(`tus_upload: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
