// Writes the settings tables of README.md, docs/production.md and docs/pod-watcher.md from the tables of
// settings (src/config/settings.ts, src/pod-watcher/config.ts); test/config/docs.test.ts fails when a
// committed file differs. Run: node --import tsx scripts/gen-settings-docs.ts
import { readFileSync, writeFileSync } from 'node:fs';
import {
  productionSettings,
  readmeSettings,
  settingsTable,
  tableRows,
  withGenerated,
} from '../src/config/docs.ts';
import { POD_WATCHER_SETTINGS } from '../src/pod-watcher/config.ts';

const docs: Array<[file: string, source: string, block: string]> = [
  ['README.md', 'src/config/settings.ts', readmeSettings()],
  ['docs/production.md', 'src/config/settings.ts', productionSettings()],
  ['docs/pod-watcher.md', 'src/pod-watcher/config.ts', settingsTable(tableRows(POD_WATCHER_SETTINGS))],
];
for (const [file, source, block] of docs) {
  const path = new URL(`../${file}`, import.meta.url);
  writeFileSync(path, withGenerated(readFileSync(path, 'utf8'), source, block));
}
