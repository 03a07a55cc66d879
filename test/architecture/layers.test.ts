import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';

/**
 * The layers of docs/architecture.md, held against the code: a file may import from its own part or from a
 * part on a lower layer, never from a higher one, and no files import each other in a loop. A new top-level
 * part of src/ must be placed here (and in the doc) before it can be used. Imports are read with the
 * TypeScript compiler's own pre-processor, so comments and strings are not mistaken for imports.
 */
const LAYERS: string[][] = [
  ['contract', 'auth', 'client'], // rules and types that need nothing of intake's
  ['config.ts', 'config'], // config.ts is the public face of config/
  ['ops'], // logging, metrics, process exit, shutdown steps, maintenance
  ['store'], // PostgreSQL: the only place with SQL
  ['privacy', 'queue'],
  ['worker', 'ingest'],
  ['http'],
  ['runtime.ts', 'pod-watcher'],
  ['commands', 'cli.ts'],
];

const SRC = 'src';
const layerOf = new Map<string, number>(LAYERS.flatMap((parts, i) => parts.map((p) => [p, i] as const)));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function mjsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? mjsFiles(p) : p.endsWith('.mjs') ? [p] : [];
  });
}

/** The part of src/ a file belongs to: its top-level folder, or the file itself. */
const partOf = (file: string) => relative(SRC, file).split(/[\\/]/)[0]!;

function imports(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((f) => f.startsWith('.'))
    .map((f) => normalize(join(dirname(file), f)));
}

const all = files(SRC);
const graph = new Map(all.map((f) => [f, imports(f)]));

/**
 * A folder with a `mod.ts` is entered through it, as a nats.js package is: a file outside the folder
 * imports only its mod.ts (the public face), files inside import each other directly. Returns the imports
 * that reach past a face into its folder.
 */
function pastFaces(edges: Map<string, string[]>, faces: string[]): string[] {
  const wrong: string[] = [];
  for (const [from, targets] of edges) {
    for (const to of targets) {
      const face = faces.find((dir) => to.startsWith(`${dir}/`));
      if (face && !from.startsWith(`${face}/`) && to !== join(face, 'mod.ts')) wrong.push(`${from} -> ${to}`);
    }
  }
  return wrong;
}

/** The folders of src/ that have a public face. */
const faces = all.filter((f) => f.endsWith('/mod.ts')).map((f) => dirname(f));

describe('architecture: one direction of flow (docs/architecture.md)', () => {
  it('every part of src/ has a layer', () => {
    const unplaced = [...new Set(all.map(partOf))].filter((p) => !layerOf.has(p));
    assert.deepEqual(unplaced, [], 'place each new part in LAYERS and in docs/architecture.md');
  });

  it('no import points to a higher layer', () => {
    const upward: string[] = [];
    for (const [from, targets] of graph) {
      for (const to of targets) {
        if (!to.startsWith(`${SRC}/`)) {
          upward.push(`${from} -> ${to} (outside src/)`);
          continue;
        }
        const a = partOf(from);
        const b = partOf(to);
        if (a !== b && layerOf.get(a)! < layerOf.get(b)!) upward.push(`${from} -> ${to}`);
      }
    }
    assert.deepEqual(upward, []);
  });

  it('no files import each other in a loop', () => {
    // Depth-first search with colours: meeting a grey file again closes a loop.
    const colour = new Map<string, 'grey' | 'black'>();
    const loops: string[] = [];
    const visit = (f: string, path: string[]) => {
      colour.set(f, 'grey');
      for (const t of graph.get(f) ?? []) {
        if (colour.get(t) === 'grey') loops.push([...path.slice(path.indexOf(t)), t].join(' -> '));
        else if (!colour.has(t)) visit(t, [...path, t]);
      }
      colour.set(f, 'black');
    };
    for (const f of all) if (!colour.has(f)) visit(f, [f]);
    assert.deepEqual(loops, []);
  });

  it('outside src/: tests and scripts share harness/, and neither imports the other', () => {
    // harness/ starts real databases, NATS servers and intake processes for both; it imports neither.
    const rules: Array<[string, string[]]> = [
      ['scripts', ['test']],
      ['test', ['scripts']],
      ['harness', ['test', 'scripts']],
      [SRC, ['test', 'scripts', 'harness']],
    ];
    const wrong: string[] = [];
    for (const [dir, forbidden] of rules) {
      for (const f of files(dir).concat(dir === SRC ? [] : mjsFiles(dir))) {
        for (const t of imports(f)) {
          const top = t.split(/[\\/]/)[0]!;
          if (forbidden.includes(top)) wrong.push(`${f} -> ${t}`);
        }
      }
    }
    assert.deepEqual(wrong, []);
  });

  it('a folder with a mod.ts is imported only through it (each queue adapter)', () => {
    // The adapters must keep their faces: without them this rule would hold vacuously.
    for (const dir of ['queue/nats', 'queue/postgres'])
      assert.ok(faces.includes(join(SRC, dir)), `src/${dir}/mod.ts is its public face`);
    assert.deepEqual(
      pastFaces(graph, faces),
      [],
      "import the folder's mod.ts, or export what is needed from it",
    );
  });

  it('the face rule catches an import past a face, and allows the face and the folder itself', () => {
    const nats = join(SRC, 'queue', 'nats');
    const planted = new Map([
      [join(SRC, 'commands', 'doctor-checks.ts'), [join(nats, 'link.ts'), join(nats, 'mod.ts')]],
      [join(nats, 'open.ts'), [join(nats, 'link.ts')]],
      [join(SRC, 'queue', 'postgres', 'open.ts'), [join(nats, 'errors.ts')]],
    ]);
    assert.deepEqual(pastFaces(planted, [nats]), [
      `${join(SRC, 'commands', 'doctor-checks.ts')} -> ${join(nats, 'link.ts')}`,
      `${join(SRC, 'queue', 'postgres', 'open.ts')} -> ${join(nats, 'errors.ts')}`,
    ]);
  });

  it('the checker reads the real imports', () => {
    // Guards the test itself: it reads the tree's imports (the http edge does import auth below it).
    const edges = [...graph.values()].flat().length;
    assert.ok(edges > 100, `only ${edges} imports read`);
    assert.ok(graph.get(join(SRC, 'http', 'app.ts'))!.some((t) => partOf(t) === 'auth'));
  });
});
