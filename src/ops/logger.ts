import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger };

/**
 * Structured JSON logs to stdout (one object per line), as every intake process writes them.
 * Paths that could carry personal data or message bodies are censored here as a last line of defence:
 * code must not log them in the first place (SPEC §5, §7).
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
        '*.body',
        '["sent-from-ip"]',
        '*["sent-from-ip"]',
        'ip',
        '*.ip',
      ],
      censor: '[redacted]',
    },
  };
  return pino(opts);
}
