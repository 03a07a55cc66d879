import assert from 'node:assert/strict';

/** An RFC 9457 problem as intake sends it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  errors?: Array<{ pointer: string; detail: string }>;
  errors_total?: number;
  ids?: string[];
}

/** Asserts the response is a problem with this status and code, and returns it. */
export async function expectProblem(res: Response, status: number, code: string): Promise<Problem> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${text.slice(0, 300)}`);
  assert.equal(res.headers.get('content-type'), 'application/problem+json; charset=utf-8');
  const p = JSON.parse(text) as Problem;
  assert.equal(p.status, status);
  assert.equal(p.code, code, `code for ${text.slice(0, 300)}`);
  assert.match(p.type, /^urn:intake:problem:/);
  assert.ok(p.title.length > 0 && p.detail.length > 0);
  return p;
}
