import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { needTool } from '../deploy/tools.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));

/** One upload to make `count` times. */
export interface Upload {
  url: string;
  /** File holding the body. */
  file: string;
  count: number;
  headers: Record<string, string>;
  /** Send the body with Transfer-Encoding: chunked (no Content-Length). */
  chunked: boolean;
}

/** A real HTTP client on this machine. */
export interface Client {
  name: string;
  /** Makes each upload `count` times, in order; per upload, each try's status, or `ERR <reason>`. */
  run(uploads: Upload[]): Promise<string[][]>;
}

/**
 * Debian's python3 (/usr/bin/python3), which sees python3-requests from Debian's packages; a python3
 * from elsewhere on PATH may not.
 */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

function exec(cmd: string, args: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 180_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const lines = stdout.split('\n').filter(Boolean);
      // curl exits non-zero when its last transfer failed; its lines still say what happened.
      if (err && lines.length === 0) reject(new Error(`${cmd} failed: ${err.message}\n${stderr}`));
      else resolve(lines);
    });
  });
}

/** A client program in this folder: one process for the whole plan, lines of `<index> <result>`. */
function programClient(name: string, cmd: string, pre: string[], dir: string): Client {
  return {
    name,
    async run(uploads) {
      const plan = join(dir, `plan-${process.hrtime.bigint()}.json`);
      writeFileSync(plan, JSON.stringify(uploads));
      const out: string[][] = uploads.map(() => []);
      for (const line of await exec(cmd, [...pre, plan])) {
        const [, i, result] = /^(\d+) (.*)$/.exec(line) ?? [];
        if (i === undefined || result === undefined)
          throw new Error(`${name} printed ${JSON.stringify(line)}`);
        out[Number(i)]!.push(result);
      }
      return out;
    },
  };
}

/**
 * curl, one process per upload (so it reuses a kept-alive connection across tries, as a caller would).
 * `expect`: force `Expect: 100-continue` (curl adds it itself only above 1 MiB), or suppress it.
 */
function curlClient(expect: boolean): Client {
  const once = async (u: Upload) => {
    const h: Record<string, string> = { ...u.headers, expect: expect ? '100-continue' : '' };
    if (u.chunked) h['transfer-encoding'] = 'chunked';
    const lines = await exec('curl', [
      '-sS',
      '-w',
      '%{http_code} %{errormsg}\\n',
      '--data-binary',
      `@${u.file}`,
      ...Object.entries(h).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
      // -o applies to one URL: one per try.
      ...Array.from({ length: u.count }, () => ['-o', '/dev/null', u.url]).flat(),
    ]);
    return lines.map((l) => (l.startsWith('000') ? `ERR ${l.slice(4).trim()}` : l.trim()));
  };
  return {
    name: expect ? 'curl (Expect: 100-continue)' : 'curl (no Expect)',
    run: async (uploads) => {
      const out: string[][] = [];
      for (const u of uploads) out.push(await once(u));
      return out;
    },
  };
}

/**
 * Every client present: Node fetch (undici) and node:http on the running `node` (CI runs the suite on
 * Node 20 and on 24), curl with and without Expect, Python urllib and requests, and a Go net/http client
 * built here. A missing one is skipped with a printed reason, or fails the run under CI=true.
 */
export function availableClients(): { clients: Client[]; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'intake-clients-'));
  const node = join(HERE, 'upload.mjs');
  const clients: Client[] = [
    programClient(`Node ${process.version} fetch`, process.execPath, [node, 'fetch'], dir),
    programClient(`Node ${process.version} node:http`, process.execPath, [node, 'http'], dir),
  ];
  if (!needTool('curl')) clients.push(curlClient(true), curlClient(false));
  const py = join(HERE, 'upload.py');
  if (!needTool(PYTHON)) {
    clients.push(programClient('Python urllib', PYTHON, [py, 'urllib'], dir));
    if (!needTool(PYTHON, ['-c', 'import requests'])) {
      clients.push(programClient('Python requests', PYTHON, [py, 'requests'], dir));
    }
  }
  if (!needTool('go', ['version'])) {
    const bin = join(dir, 'upload');
    const built = spawnSync('go', ['build', '-o', bin, join(HERE, 'upload.go')], {
      encoding: 'utf8',
      env: { ...process.env, GO111MODULE: 'off', CGO_ENABLED: '0' },
    });
    if (built.status !== 0) throw new Error(`go build failed: ${built.stderr}`);
    clients.push(programClient('Go net/http', bin, [], dir));
  }
  return { clients, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** "20/20" or "3/20 (17× ECONNRESET)": how many tries read `want`, and what the others got. */
export function tally(results: string[], want: number, tries: number): { ok: boolean; text: string } {
  const good = results.filter((r) => r === String(want)).length;
  const other = new Map<string, number>();
  for (const r of results) if (r !== String(want)) other.set(r, (other.get(r) ?? 0) + 1);
  const rest = [...other].map(([r, n]) => `${n}× ${r.replace(/^ERR /, '')}`).join(', ');
  const missing = tries - results.length;
  const text = `${good}/${tries}${rest ? ` (${rest})` : ''}${missing ? ` (${missing} tries never ran)` : ''}`;
  return { ok: good === tries, text };
}
