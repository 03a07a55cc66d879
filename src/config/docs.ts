import { GROUPS, type Setting, type SettingTable } from './settings.ts';

/**
 * The settings tables of README.md#configuration, docs/production.md#settings and
 * docs/pod-watcher.md#configuration, generated from the tables of settings (as docs/cli.md is from the
 * command declarations). scripts/gen-settings-docs.ts writes them between the markers below;
 * test/config/docs.test.ts fails when a committed file differs from what this renders.
 */

const BEGIN = (source: string) =>
  `<!-- Generated from ${source} by \`node --import tsx scripts/gen-settings-docs.ts\`: do not edit by hand. -->`;
const END = '<!-- End of the generated settings. -->';

/** One row per setting, in table order; `line` picks the text of its meaning column. */
export function settingsTable(rows: Array<[name: string, setting: Setting, line: string]>): string {
  const out = ['| variable | default | allowed | meaning |', '|---|---|---|---|'];
  for (const [name, s, line] of rows) {
    const variable = s.secret === 'value' ? `\`${name}\` (or \`_FILE\`)` : `\`${name}\``;
    const def = s.default ?? (s.reader.default === undefined ? '—' : `\`${s.reader.default}\``);
    out.push(`| ${variable} | ${def} | ${s.reader.allowed} | ${line} |`);
  }
  return out.join('\n');
}

/** Every row of `table` with its own line. */
export function tableRows(table: SettingTable): Array<[string, Setting, string]> {
  return Object.entries(table).map(([name, s]) => [name, s, s.doc]);
}

/** README.md#configuration: a table per group; the NATS group is in docs/production.md. */
export function readmeSettings(): string {
  const out: string[] = [];
  for (const g of GROUPS) {
    out.push(`### ${g.title}`, '');
    if (g.docs === 'readme') out.push(settingsTable(tableRows(g.settings)), '');
    else out.push(`${g.summary}: [docs/production.md](docs/production.md#settings).`, '');
  }
  return out.join('\n').trimEnd();
}

/** docs/production.md#settings: the NATS group, and what else matters in production, with its own line. */
export function productionSettings(): string {
  const rows = GROUPS.flatMap((g) =>
    Object.entries(g.settings).flatMap(([name, s]): Array<[string, Setting, string]> => {
      if (g.docs === 'production') return [[name, s, s.doc]];
      return s.production === undefined ? [] : [[name, s, s.production === true ? s.doc : s.production]];
    }),
  );
  return settingsTable(rows);
}

/** `markdown` with the generated block (between the markers) replaced by `block`. */
export function withGenerated(markdown: string, source: string, block: string): string {
  const [before, after] = splitAtGenerated(markdown);
  return `${before}${BEGIN(source)}\n\n${block}\n\n${END}${after}`;
}

/** The generated block of `markdown` as committed (between the markers), for the drift test. */
export function generatedBlock(markdown: string, source: string): string {
  const start = markdown.indexOf(BEGIN(source));
  const end = markdown.indexOf(END);
  if (start < 0 || end < start) throw new Error(`no generated block from ${source}`);
  return markdown.slice(start + BEGIN(source).length, end).trim();
}

function splitAtGenerated(markdown: string): [string, string] {
  const start = markdown.indexOf('<!-- Generated from ');
  const end = markdown.indexOf(END);
  if (start < 0 || end < start) throw new Error('no generated block: add the two marker lines first');
  return [markdown.slice(0, start), markdown.slice(end + END.length)];
}
