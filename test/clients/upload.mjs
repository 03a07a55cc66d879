// A real Node client for test/http/refusals-reach-clients.test.ts. Reads a plan (JSON, see
// clients.ts) of uploads, POSTs each one `count` times, and prints one line per try: the upload's
// index and the status, or `ERR <code>`. Plain JavaScript so any `node` runs it as is.
//   node upload.mjs fetch|http <plan.json>
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';

const [mode, planFile] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(planFile, 'utf8'));
const agent = new Agent({ keepAlive: true });

function errorCode(err) {
  let e = err;
  while (e?.cause && !e.code) e = e.cause;
  return e?.code ?? e?.name ?? String(err);
}

function pieces(body) {
  const out = [];
  for (let i = 0; i < body.length; i += 64 * 1024) out.push(body.subarray(i, i + 64 * 1024));
  return out;
}

async function viaFetch(u, body) {
  const init = { method: 'POST', headers: u.headers };
  if (u.chunked) {
    const parts = pieces(body);
    init.body = new ReadableStream({
      pull(c) {
        if (parts.length) c.enqueue(parts.shift());
        else c.close();
      },
    });
    init.duplex = 'half';
  } else init.body = body;
  const res = await fetch(u.url, init);
  await res.arrayBuffer();
  return res.status;
}

function viaHttp(u, body) {
  return new Promise((resolve, reject) => {
    const headers = { ...u.headers };
    if (!u.chunked) headers['content-length'] = String(body.length);
    const req = request(u.url, { method: 'POST', headers, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (u.chunked) {
      for (const p of pieces(body)) req.write(p);
      req.end();
    } else req.end(body);
  });
}

for (const [i, u] of plan.entries()) {
  const body = readFileSync(u.file);
  for (let n = 0; n < u.count; n++) {
    try {
      console.log(i, await (mode === 'fetch' ? viaFetch(u, body) : viaHttp(u, body)));
    } catch (err) {
      console.log(i, `ERR ${errorCode(err)}`);
    }
  }
}
agent.destroy();
