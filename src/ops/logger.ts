import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger };

/**
 * Structured JSON logs to stdout (one object per line), as every intake process writes them.
 * Paths that could carry personal data or message bodies are censored here as a last line of defence:
 * code must not log them in the first place (SPEC §5, §7). Exact paths only: wildcard redaction ran on
 * every line and cost more CPU than anything else in the access log.
 *
 * Writes are asynchronous (lines written while a write is pending go out together): a synchronous
 * write per access-log line was ~6 % of the API's CPU under load. pino flushes synchronously when the
 * process exits, so only a SIGKILL can lose the last lines.
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  const opts: LoggerOptions = {
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    base: { service: options.name ?? 'intake' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'body',
        'message',
        '["sent-from-ip"]',
        'ip',
        'req.body',
      ],
      censor: '[redacted]',
    },
  };
  return pino(opts, pino.destination({ dest: 1, sync: false }));
}
