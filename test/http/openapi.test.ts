import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import SwaggerParser from '@apidevtools/swagger-parser';
import openapiTS, { astToString } from 'openapi-typescript';
import { waitFor } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

const run = promisify(execFile);
const REPO = new URL('../../', import.meta.url).pathname;
const BIN = (name: string) => join(REPO, 'node_modules/.bin', name);

/** `redocly lint` under the repository's redocly.yaml: each problem as `<rule> <JSON pointer>`. */
async function redocly(spec: string): Promise<string[]> {
  const r = await run(
    process.execPath,
    [BIN('redocly'), 'lint', spec, '--format=json', `--config=${join(REPO, 'redocly.yaml')}`],
    { env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' } },
  ).catch((e: { stdout: string }) => e);
  const report = JSON.parse(r.stdout) as {
    problems: Array<{ ruleId: string; location: Array<{ pointer: string }> }>;
  };
  return report.problems.map((p) => `${p.ruleId} ${p.location[0]?.pointer}`);
}

/** `spectral lint` under the repository's .spectral.yaml: each problem, hints included, as `<rule> <path>`. */
async function spectral(spec: string): Promise<string[]> {
  const r = await run(process.execPath, [
    BIN('spectral'),
    'lint',
    spec,
    '--ruleset',
    join(REPO, '.spectral.yaml'),
    '--format=json',
    '--quiet',
  ]).catch((e: { stdout: string }) => e);
  const results = JSON.parse(r.stdout) as Array<{ code: string; path: string[] }>;
  return results.map((p) => `${p.code} ${p.path.join('.')}`);
}

/**
 * The OpenAPI document intake serves is accepted by the tools people use on it: swagger-parser
 * validates and dereferences it, Spectral (spectral:oas) and Redocly (recommended) lint it with no
 * error and no warning under the repository's .spectral.yaml and redocly.yaml, openapi-typescript
 * generates types that a typed client (openapi-fetch) compiles against and uses on the running service,
 * every path parameter's documented format is what the service enforces, and a Prism proxy finds no
 * response that breaks the document over a pass of real API requests.
 */
describe('the OpenAPI document, checked by real tools', () => {
  let app: TestApp;
  const dir = join(REPO, 'test/.generated', `openapi-${process.pid}`);
  const file = join(dir, 'openapi.json');
  let doc: Record<string, unknown>;
  before(async () => {
    app = await startTestApp('openapi');
    mkdirSync(dir, { recursive: true });
    doc = (await (await fetch(`${app.url}/openapi.json`)).json()) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify(doc, null, 2));
  });
  after(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('swagger-parser validates it (every $ref resolves)', async () => {
    const api = (await SwaggerParser.validate(structuredClone(doc) as never)) as {
      paths: Record<string, unknown>;
    };
    assert.ok(api.paths['/v1/messages']);
  });

  test('Redocly (recommended, redocly.yaml) and Spectral (spectral:oas, .spectral.yaml): no problem at all', async () => {
    assert.deepEqual(await redocly(file), []);
    assert.deepEqual(await spectral(file), []);
  });

  test('the linters do report a document that breaks their rules (the control)', async () => {
    const broken = structuredClone(doc) as {
      info: Record<string, unknown>;
      paths: Record<string, Record<string, { tags?: string[]; responses: Record<string, unknown> }>>;
    };
    delete broken.info.contact;
    delete broken.paths['/v1/messages']!.get!.tags;
    const read = broken.paths['/v1/messages/{id}']!.get!.responses;
    for (const status of Object.keys(read)) if (status.startsWith('4')) delete read[status];
    const brokenFile = join(dir, 'broken.json');
    writeFileSync(brokenFile, JSON.stringify(broken));
    assert.deepEqual((await redocly(brokenFile)).sort(), [
      'rule/v1-operation-4xx-response #/paths/~1v1~1messages~1{id}/get/responses',
    ]);
    assert.deepEqual((await spectral(brokenFile)).sort(), [
      'info-contact info',
      'operation-tags paths./v1/messages.get',
    ]);
  });

  test('every path parameter is enforced as documented: off its format → 400 naming it', async () => {
    const paths = doc.paths as Record<
      string,
      Record<string, { parameters?: Array<{ in: string; name: string; schema: { format?: string } }> }>
    >;
    // A value of each documented format that names nothing, and one that is not of the format.
    const wellFormed: Record<string, string> = {
      uuid: '0b5f4b8e-6c1d-4f7a-9e2b-3c4d5e6f7a8b',
      ipv4: '192.0.2.250',
    };
    const malformed: Record<string, string> = { uuid: '0b5f4b8e-6c1d-4f7a-9e2b', ipv4: '192.0.2.1.5' };
    let checked = 0;
    for (const [template, ops] of Object.entries(paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const p of (op.parameters ?? []).filter((x) => x.in === 'path')) {
          const format = p.schema.format;
          assert.ok(format && wellFormed[format], `${method} ${template}: {${p.name}} has no known format`);
          const url = (v: string) => app.url + template.replace(`{${p.name}}`, v);
          const init = { method: method.toUpperCase() };
          const bad = await fetch(url(malformed[format]!), init);
          const problem = (await bad.json()) as { code: string; errors: Array<{ pointer: string }> };
          assert.equal(bad.status, 400, `${method} ${template} with a malformed ${p.name}`);
          assert.equal(problem.code, 'INVALID_REQUEST');
          assert.deepEqual(
            problem.errors.map((e) => e.pointer),
            [`/${p.name}`],
          );
          const good = await fetch(url(wellFormed[format]!), init);
          await good.arrayBuffer();
          // An id that names nothing is a 404 (its status: 200 `unknown`); a subject with nothing stored
          // is still a subject.
          const expected = format === 'uuid' && !template.endsWith('/status') ? 404 : 200;
          assert.equal(good.status, expected, `${method} ${template} well-formed`);
          checked++;
        }
      }
    }
    assert.equal(checked, 8, 'path parameters checked');
  });

  test('every operation has an operationId, its statuses with schemas, problems as application/problem+json', () => {
    const paths = doc.paths as Record<string, Record<string, Record<string, unknown>>>;
    for (const [path, ops] of Object.entries(paths)) {
      for (const [method, op] of Object.entries(ops)) {
        assert.ok(op.operationId, `${method} ${path} has no operationId`);
        for (const [status, res] of Object.entries(
          op.responses as Record<string, { content?: Record<string, { schema?: unknown }> }>,
        )) {
          const types = Object.keys(res.content ?? {});
          assert.ok(
            types.length > 0 && types.every((t) => res.content![t]!.schema),
            `${method} ${path} ${status}`,
          );
          if (Number(status) >= 400 && path.startsWith('/v1/'))
            assert.deepEqual(types, ['application/problem+json']);
        }
        assert.ok(Array.isArray(op.security), `${method} ${path} says nothing about security`);
      }
    }
    const ingest = paths['/v1/messages']!.post as {
      responses: Record<string, { headers?: Record<string, unknown> }>;
    };
    assert.ok(ingest.responses['202']!.headers!.location);
    assert.ok(ingest.responses['429']!.headers!['retry-after']);
    assert.ok(ingest.responses['429']!.headers!['ratelimit-remaining']);
    assert.ok(ingest.responses['503']!.headers!['retry-after']);
    assert.deepEqual((paths['/livez']!.get as { security: unknown[] }).security, []);
  });

  test('openapi-typescript: a typed client compiles, refuses a wrong call at compile time, and works', async () => {
    writeFileSync(join(dir, 'schema.ts'), astToString(await openapiTS(new URL(`file://${file}`))));
    writeFileSync(
      join(dir, 'use.ts'),
      `import createClient from 'openapi-fetch';
import type { paths } from './schema.ts';
const client = createClient<paths>({ baseUrl: process.env.INTAKE_URL! });
const sent = await client.POST('/v1/messages', { body: { ts: 1530228282, sender: 'generated', message: { a: 1 } } });
if (!sent.data) throw new Error('no 202: ' + JSON.stringify(sent.error));
const id: string = sent.data.id;
const refused = await client.POST('/v1/messages', { body: { ts: -1, sender: 'generated', message: { a: 1 } } });
const code: string | undefined = refused.error?.code;
const page = await client.GET('/v1/messages', { params: { query: { since: '2018-06-28T00:00:00Z', limit: 5 } } });
if (!page.data) throw new Error('no page: ' + JSON.stringify(page.error));
let stored;
for (let i = 0; i < 100 && !stored; i++) {
  stored = (await client.GET('/v1/messages/{id}', { params: { path: { id } } })).data;
  if (!stored) await new Promise((r) => setTimeout(r, 100));
}
console.log(JSON.stringify({ id, code, sender: stored?.sender, status: sent.response.status }));
`,
    );
    writeFileSync(
      join(dir, 'wrong.ts'),
      `import createClient from 'openapi-fetch';
import type { paths } from './schema.ts';
const client = createClient<paths>({ baseUrl: '' });
await client.POST('/v1/messages', { body: { ts: 1, message: { a: 1 } } });
`,
    );
    const tsconfig = {
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        allowImportingTsExtensions: true,
        skipLibCheck: true,
        types: ['node'],
      },
    };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ ...tsconfig, files: ['use.ts'] }));
    writeFileSync(join(dir, 'tsconfig.wrong.json'), JSON.stringify({ ...tsconfig, files: ['wrong.ts'] }));
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    await run(process.execPath, [BIN('tsc'), '-p', join(dir, 'tsconfig.json')]);
    const wrong = await run(process.execPath, [BIN('tsc'), '-p', join(dir, 'tsconfig.wrong.json')]).then(
      () => '',
      (e: { stdout: string }) => e.stdout,
    );
    assert.match(wrong, /sender/, 'a body without sender must not compile');
    const out = await run(process.execPath, ['--import', 'tsx', join(dir, 'use.ts')], {
      env: { ...process.env, INTAKE_URL: app.url },
    });
    const r = JSON.parse(out.stdout) as { id: string; code: string; sender: string; status: number };
    assert.equal(r.status, 202);
    assert.equal(r.code, 'INVALID_MESSAGE');
    assert.equal(r.sender, 'generated');
  });

  /** A Prism proxy in front of the service, checking against `spec`; stopped when the test ends. */
  const startPrism = async (t: { after: (fn: () => void) => void }, spec: string): Promise<string> => {
    const port = await freePort();
    const prism: ChildProcess = spawn(
      process.execPath,
      [BIN('prism'), 'proxy', spec, app.url, '--host', '127.0.0.1', '--port', String(port)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    t.after(() => {
      prism.kill('SIGTERM');
    });
    const base = `http://127.0.0.1:${port}`;
    await waitFor(
      'prism listening',
      async () => (await fetch(`${base}/livez`).catch(() => undefined))?.ok,
      60_000,
      200,
    );
    return base;
  };
  const responseViolations = (res: Response) => {
    const header = res.headers.get('sl-violations');
    const found = header ? (JSON.parse(header) as Array<{ location: string[]; message: string }>) : [];
    return found
      .filter((x) => x.location[0] === 'response')
      .map((v) => `${v.location.join('.')} ${v.message}`);
  };

  test('Prism proxy: it does catch an answer that breaks a document', async (t) => {
    // The control: the same service behind a document that promises status "queued".
    const wrong = structuredClone(doc) as {
      components: { schemas: Record<string, { properties: Record<string, unknown> }> };
    };
    wrong.components.schemas.Accepted!.properties.status = { type: 'string', enum: ['queued'] };
    const wrongFile = join(dir, 'wrong.json');
    writeFileSync(wrongFile, JSON.stringify(wrong));
    const base = await startPrism(t, wrongFile);
    const res = await fetch(`${base}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ts: 1, sender: 'prism', message: { a: 1 } }),
    });
    await res.arrayBuffer();
    assert.match(responseViolations(res).join('\n'), /status/);
  });

  test('Prism proxy: no answer of a pass of real requests breaks the document', async (t) => {
    const base = await startPrism(t, file);
    const json = { 'content-type': 'application/json' };
    const message = { ts: 1530228282, sender: 'prism', message: { a: 1 }, 'sent-from-ip': '192.0.2.1' };
    // Not sent through Prism: compressed bodies (Prism does not decode Content-Encoding).
    const requests: Array<[string, string, RequestInit?]> = [
      ['POST', '/v1/messages', { headers: json, body: JSON.stringify(message) }],
      ['POST', '/v1/messages', { headers: json, body: JSON.stringify({ ...message, ts: 'x' }) }],
      ['POST', '/v1/messages', { headers: json, body: '{broken' }],
      ['POST', '/v1/messages', { headers: { 'content-type': 'text/plain' }, body: 'x' }],
      [
        'POST',
        '/v1/messages/batch',
        { headers: json, body: JSON.stringify({ messages: [message, message] }) },
      ],
      [
        'POST',
        '/v1/messages/batch?mode=partial',
        { headers: json, body: JSON.stringify({ messages: [message, {}] }) },
      ],
      [
        'POST',
        '/v1/messages/batch',
        { headers: { 'content-type': 'application/x-ndjson' }, body: `${JSON.stringify(message)}\n{}\n` },
      ],
      ['GET', '/v1/messages?limit=5'],
      ['GET', '/v1/messages?limit=0'],
      ['GET', '/v1/messages/01890a5d-ac96-774b-bcce-b302099a8057'],
      ['GET', '/v1/messages/01890a5d-ac96-774b-bcce-b302099a8057/revealed'],
      ['GET', '/v1/subjects/ip/192.0.2.1/messages'],
      ['DELETE', '/v1/subjects/ip/192.0.2.99'],
      ['GET', '/v1/subjects/ip/not-an-ip/messages'],
      ['GET', '/v1/dead-letters?limit=2'],
      ['GET', '/v1/dead-letters/01890a5d-ac96-774b-bcce-b302099a8057'],
      ['POST', '/v1/dead-letters/replay', { headers: json, body: JSON.stringify({ sender: 'nobody' }) }],
      ['GET', '/livez'],
      ['GET', '/readyz'],
      ['GET', '/metrics'],
    ];
    const violations: string[] = [];
    for (const [method, path, init] of requests) {
      const direct = await fetch(app.url + path, { method, ...init });
      await direct.arrayBuffer();
      const res = await fetch(base + path, { method, ...init });
      assert.equal(res.status, direct.status, `${method} ${path} through Prism: ${await res.clone().text()}`);
      await res.arrayBuffer();
      for (const v of responseViolations(res)) violations.push(`${method} ${path} ${res.status}: ${v}`);
    }
    assert.deepEqual(violations, []);
  });
});
