import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { addKeywords } from './keywords.ts';
import { IncomingBatch, IncomingMessage } from './message-schema.ts';

/** One violation of the contract, addressed by an RFC 6901 JSON pointer into the request body. */
export interface Violation {
  pointer: string;
  detail: string;
}

/** The Ajv instance every schema of intake is compiled with (Fastify uses it too, see http/app.ts). */
export function createAjv(): Ajv {
  // allErrors: a rejection lists every violation (docs/contract.md §1). No coercion, no removal of unknown keys:
  // Fastify's defaults would strip extra fields silently, which the contract forbids.
  const ajv = new Ajv({
    allErrors: true,
    strict: false,
    coerceTypes: false,
    removeAdditional: false,
    useDefaults: false,
  });
  addKeywords(ajv);
  ajv.addSchema([IncomingMessage, IncomingBatch]);
  return ajv;
}

const escapePointer = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * Turns Ajv's errors into client-facing violations: one per problem, specific messages first. Only the
 * first `limit` are worded (a hostile body can carry 100,000 violations, and wording them all cost
 * most of a second); `total` counts them all.
 */
export function toViolations(
  errors: ErrorObject[] | null | undefined,
  limit = Number.POSITIVE_INFINITY,
): Violation[] & { total?: number } {
  if (!errors?.length) return [];
  const out: Violation[] & { total?: number } = [];
  const custom = new Set<string>();
  for (const e of errors)
    if (e.keyword.charCodeAt(0) === 120 && e.keyword.startsWith('x-')) custom.add(e.instancePath);
  const seen = new Set<string>();
  let total = 0;
  for (const e of errors) {
    let pointer = e.instancePath;
    let detail: string;
    // A custom keyword at this path already said precisely what is wrong; the generic errors Ajv also
    // produced for the same value (anyOf branches, minProperties) would only repeat it less clearly.
    if (!e.keyword.startsWith('x-') && custom.has(pointer)) continue;
    if (out.length >= limit) {
      total++;
      continue;
    }
    switch (e.keyword) {
      case 'required':
        pointer += `/${escapePointer((e.params as { missingProperty: string }).missingProperty)}`;
        detail = 'is required';
        break;
      case 'additionalProperties':
        pointer += `/${escapePointer((e.params as { additionalProperty: string }).additionalProperty)}`;
        detail = 'is not an allowed field; allowed are ts, sender, message, sent-from-ip, priority';
        if (e.instancePath !== '' && !/^\/messages\/\d+$/.test(e.instancePath))
          detail = 'is not an allowed field';
        break;
      case 'format':
        detail =
          (e.params as { format: string }).format === 'ipv4'
            ? 'must be a dotted-decimal IPv4 address (four octets 0-255, no leading zeros)'
            : `must be a valid ${(e.params as { format: string }).format}`;
        break;
      case 'type':
        detail = `must be ${(e.params as { type: string }).type === 'object' ? 'a JSON object' : `of type ${(e.params as { type: string }).type}`}`;
        break;
      case 'minLength':
        detail = 'must not be empty';
        break;
      case 'maxItems':
        detail = `must have at most ${(e.params as { limit: number }).limit} items`;
        break;
      default:
        detail = e.message ?? 'is invalid';
    }
    const key = `${pointer}\u0000${detail}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ pointer, detail });
    total++;
  }
  out.total = total;
  return out;
}

export type MessageValidator = (body: unknown) => Violation[];

/** Compiles a validator for a schema; the returned function gives [] for a valid body. */
export function compileValidator(ajv: Ajv, schema: object): MessageValidator {
  const fn: ValidateFunction = ajv.compile(schema);
  return (body) => (fn(body) ? [] : toViolations(fn.errors));
}

export const schemas = { IncomingMessage, IncomingBatch };
