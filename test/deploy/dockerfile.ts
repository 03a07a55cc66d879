import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './tools.ts';

/** One Dockerfile instruction, continuation lines joined, comments dropped. */
export interface Instruction {
  op: string;
  args: string;
}

/** The instructions of a Dockerfile in the repository. */
export function instructions(path: string): Instruction[] {
  return readFileSync(join(REPO, path), 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op!.toUpperCase(), args: rest.join(' ') };
    });
}

/** The image of each FROM, with ARG defaults substituted. */
export function baseImages(path: string): string[] {
  const args = new Map<string, string>();
  const out: string[] = [];
  for (const { op, args: a } of instructions(path)) {
    if (op === 'ARG' && a.includes('=')) args.set(a.split('=')[0]!, a.slice(a.indexOf('=') + 1));
    if (op === 'FROM') out.push(a.split(/\s+/)[0]!.replace(/\$\{(\w+)\}/g, (_, n) => args.get(n) ?? ''));
  }
  return out;
}

/** The instructions of the last stage (the image that ships). */
export function finalStage(path: string): Instruction[] {
  const all = instructions(path);
  return all.slice(all.map((i) => i.op).lastIndexOf('FROM'));
}

/** What a container started from the final stage gets by default: ENV, WORKDIR, ENTRYPOINT, CMD, USER. */
export interface ImageConfig {
  env: Record<string, string>;
  workdir: string;
  entrypoint: string[];
  cmd: string[];
  user: string | undefined;
}

/**
 * The runtime defaults of a Dockerfile's final stage. Only the exec (JSON) form of ENTRYPOINT/CMD and
 * `ENV k=v …` are understood, which is all this repository uses; anything else throws rather than guess.
 */
export function imageConfig(path: string): ImageConfig {
  const cfg: ImageConfig = { env: {}, workdir: '/', entrypoint: [], cmd: [], user: undefined };
  for (const { op, args } of finalStage(path)) {
    if (op === 'ENV') {
      for (const m of args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) cfg.env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
    } else if (op === 'WORKDIR') {
      cfg.workdir = args;
    } else if (op === 'USER') {
      cfg.user = args;
    } else if (op === 'ENTRYPOINT' || op === 'CMD') {
      if (!args.startsWith('[')) throw new Error(`${path}: ${op} ${args} is not in exec form`);
      const argv = JSON.parse(args) as string[];
      if (op === 'ENTRYPOINT') {
        cfg.entrypoint = argv;
        cfg.cmd = []; // a later ENTRYPOINT resets CMD, as Docker does
      } else {
        cfg.cmd = argv;
      }
    }
  }
  return cfg;
}
