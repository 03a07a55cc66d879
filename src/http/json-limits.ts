/**
 * JSON.parse's cost is not linear in bytes: a 1 MiB body of empty objects, or one object with tens of
 * thousands of keys, takes tens of times longer to parse (and validate) than 1 MiB of ordinary messages
 * (docs/capacity-plan.md#measurements-behind-choices-in-the-code). The event loop stalls for every client meanwhile. One pass over
 * the bytes first bounds that cost before JSON.parse runs. No JSON library offers such a pre-check,
 * hence these few lines.
 */

/** Objects plus arrays one request body may hold: ~10 bytes each in a 1 MiB body; real ones have far fewer. */
export const MAX_JSON_CONTAINERS = 100_000;
/** Fields one object may have (the contract allows 5 at the top; `message` may have many, not 10,000). */
export const MAX_OBJECT_FIELDS = 10_000;

export interface JsonShape {
  containers: number;
  /** Most fields of any one object. */
  maxFields: number;
}

/**
 * Counts the objects and arrays the JSON text opens and the fields of its largest object, outside
 * strings; stops early once a limit is passed. The text need not be valid: JSON.parse judges that.
 */
export function measureJson(bytes: Uint8Array): JsonShape {
  let containers = 0;
  let maxFields = 0;
  // Per open container: its field count so far, or -1 for an array.
  const fields: number[] = [];
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      fields.push(c === 0x7b ? 0 : -1);
      if (++containers > MAX_JSON_CONTAINERS) break;
    } else if (c === 0x7d || c === 0x5d) fields.pop();
    else if (c === 0x3a && fields.length > 0) {
      const n = fields[fields.length - 1]!;
      if (n >= 0) {
        fields[fields.length - 1] = n + 1;
        if (n + 1 > maxFields) {
          maxFields = n + 1;
          if (maxFields > MAX_OBJECT_FIELDS) break;
        }
      }
    }
  }
  return { containers, maxFields };
}

/** Why a body is refused before parsing, or undefined when it is within the limits. */
export function jsonTooComplex(bytes: Uint8Array): string | undefined {
  const { containers, maxFields } = measureJson(bytes);
  if (containers > MAX_JSON_CONTAINERS)
    return `the body holds more than ${MAX_JSON_CONTAINERS} JSON objects and arrays, the most one request may`;
  if (maxFields > MAX_OBJECT_FIELDS)
    return `an object in the body has more than ${MAX_OBJECT_FIELDS} fields, the most one object may`;
  return undefined;
}
