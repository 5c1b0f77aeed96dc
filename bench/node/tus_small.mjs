// Many small tus uploads with tus-js-client: CONC uploads in flight for
// SECONDS, each a fresh upload of FILE (POST creation, then one PATCH; with
// MODE "cwu", creation-with-upload: the bytes ride on the POST, one round
// trip, tus-js-client uploadDataDuringCreation).
// Usage: node tus_small.mjs FILE ENDPOINT SECONDS CONC [TOKEN] [FOLDER] [MODE]
// Prints: uploads=.. elapsed_s=.. ups=.. p50_ms=.. p99_ms=.. errors=..
import fs from 'node:fs'
import { Upload } from 'tus-js-client'

const [file, endpoint, secs, conc, token, folder = '/tus-small', mode = ''] = process.argv.slice(2)
const data = fs.readFileSync(file)
const until = Date.now() + Number(secs) * 1000
const lat = []
let n = 0, errors = 0, seq = 0
const t0 = process.hrtime.bigint()

function one() {
  return new Promise((resolve) => {
    const s = process.hrtime.bigint()
    const up = new Upload(data, {
      endpoint,
      retryDelays: null,
      uploadDataDuringCreation: mode === 'cwu',
      headers: token ? { Authorization: 'Bearer ' + token } : {},
      metadata: { filename: `t${process.pid}-${seq++}.bin`, folder },
      onError: () => { errors++; resolve() },
      onSuccess: () => { n++; lat.push(Number(process.hrtime.bigint() - s) / 1e6); resolve() },
    })
    up.start()
  })
}

async function worker() {
  while (Date.now() < until)
    await one()
}

await Promise.all(Array.from({ length: Number(conc) }, worker))
const el = Number(process.hrtime.bigint() - t0) / 1e9
lat.sort((a, b) => a - b)
const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] : 0)
console.log(`uploads=${n} elapsed_s=${el.toFixed(2)} ups=${(n / el).toFixed(1)} ` +
  `p50_ms=${pct(0.5).toFixed(1)} p99_ms=${pct(0.99).toFixed(1)} errors=${errors}`)
