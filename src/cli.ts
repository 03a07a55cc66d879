import { dispatch } from './commands/dispatch.ts';
import { ConfigError } from './config.ts';
import { ExitCode, exitProcess } from './ops/process-exit.ts';

/**
 * The `intake` command line: a thin dispatcher over the declarations in src/commands/ (docs/cli.md).
 * Exit codes are the same for every command: 0 ok, 1 a check or the operation failed, 2 usage,
 * 78 configuration.
 */
dispatch(process.argv.slice(2), process.env).then(
  (code) => {
    if (code >= 0) void exitProcess(code, { name: 'intake' });
  },
  (err: Error) => {
    if (err instanceof ConfigError) {
      void exitProcess(ExitCode.config, { name: 'intake', line: `intake: ${err.message}` });
      return;
    }
    const cause = err.cause ? `\n  cause: ${(err.cause as Error).message ?? err.cause}` : '';
    void exitProcess(ExitCode.failure, { name: 'intake', line: `intake: ${err.message}${cause}` });
  },
);
