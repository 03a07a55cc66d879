import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiException } from '@kubernetes/client-node';
import { describeError, statusOf } from '../../src/pod-watcher/kube-client.ts';

describe('API error descriptions', () => {
  it('gives the status and the Status message, which client-node 1.4 passes as raw JSON', () => {
    const body = JSON.stringify({ kind: 'Status', code: 403, message: 'leases is forbidden' });
    const err = new ApiException(403, 'Forbidden', body, { 'content-type': 'application/json' });
    assert.equal(statusOf(err), 403);
    assert.equal(describeError(err), 'HTTP 403: leases is forbidden');
  });

  it('handles watch errors (statusCode), timeouts and plain errors', () => {
    assert.equal(describeError(Object.assign(new Error('Gone'), { statusCode: 410 })), 'HTTP 410');
    assert.equal(
      describeError(Object.assign(new Error('x'), { name: 'AbortError' })),
      'request timed out or was aborted',
    );
    assert.equal(
      describeError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })),
      'connect ECONNREFUSED',
    );
    assert.equal(statusOf('nope'), undefined);
  });
});
