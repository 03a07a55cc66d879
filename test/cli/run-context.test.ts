import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CommandSpec } from '../../src/commands/command.ts';
import { dispatch } from '../../src/commands/dispatch.ts';
import { type Config, ConfigError, type ConfigNeeds } from '../../src/config.ts';

/**
 * What a command runs with follows from what it declares. The declarations below are checked by
 * `npm run typecheck`, which compiles this file: a command that declares `needs` gets a `Config`
 * (no `config!`), one that declares none gets no configuration, and none can claim a Config without
 * saying what it reads.
 */
const info = { summary: 'a test command', options: {}, positionals: [] };

export const reads: CommandSpec<ConfigNeeds> = {
  ...info,
  name: 'reads',
  needs: { database: true },
  async run({ config }) {
    const loaded: Config = config;
    return loaded.port;
  },
};

export const readsNothing: CommandSpec<undefined> = {
  ...info,
  name: 'reads-nothing',
  async run({ config }) {
    const none: undefined = config;
    return none ?? 0;
  },
};

// @ts-expect-error a command whose run gets a Config must declare what it reads
export const undeclared: CommandSpec<ConfigNeeds> = {
  ...info,
  name: 'undeclared',
  async run({ config }) {
    return config.port;
  },
};

export const noConfigWithoutNeeds: CommandSpec<undefined> = {
  ...info,
  name: 'no-config',
  async run({ config }) {
    // @ts-expect-error a command that declares no needs gets no Config
    return config.port;
  },
};

test('a command that declares needs has them loaded and checked before it runs', async () => {
  await assert.rejects(
    dispatch(['smoke'], { INTAKE_SMOKE_URL: 'ftp://x' }),
    (err: unknown) =>
      err instanceof ConfigError && /INTAKE_SMOKE_URL="ftp:\/\/x" is not valid/.test(err.message),
  );
});

test('a command that declares none reads no setting, however wrong they are', async (t) => {
  const printed = t.mock.method(console, 'log', () => {});
  const env = { NODE_ENV: 'bogus', INTAKE_SMOKE_URL: 'ftp://x', PORT: 'eighty' };
  assert.equal(await dispatch(['keys', 'create', '--name', 'a', '--scopes', 'ingest'], env), 0);
  assert.match(String(printed.mock.calls[0]?.arguments[0]), /^key \(give it to the client/);
});
