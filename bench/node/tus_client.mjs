// tus-js-client upload of one file, default chunking (one PATCH), as the
// anchor's client.mjs does, but with dripd's bearer token and metadata.
// Usage: node tus_client.mjs FILE ENDPOINT [TOKEN] [FOLDER]
// Prints: elapsed_s=.. bytes=.. MBps=.. url=.. job=..
import fs from 'node:fs'
import path from 'node:path'
import { Upload } from 'tus-js-client'

const [file, endpoint, token, folder = '/bench'] = process.argv.slice(2)
setTimeout(() => { console.error('timeout after 600 s'); process.exit(3) }, 600_000).unref()
let job = ''
const t0 = process.hrtime.bigint()
const upload = new Upload(fs.createReadStream(file), {
  endpoint,
  retryDelays: null,
  headers: token ? { Authorization: 'Bearer ' + token } : {},
  metadata: { filename: path.basename(file) + '-' + Date.now(), folder },
  onAfterResponse: (req, res) => { job = res.getHeader('Upload-Job') || job },
  onError: (err) => { console.error('upload failed:', err.message); process.exit(1) },
  onSuccess: () => {
    const s = Number(process.hrtime.bigint() - t0) / 1e9
    const bytes = fs.statSync(file).size
    console.log(`elapsed_s=${s.toFixed(3)} bytes=${bytes} MBps=${(bytes / s / 1e6).toFixed(1)} url=${upload.url} job=${job}`)
  },
})
upload.start()
