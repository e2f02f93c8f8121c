/** `dummy://`: a BuildService that accepts every request and fails it; for wiring and tests. */
import { randomUUID } from 'node:crypto';
import type { AbortOptions } from '../common/abort.js';
import type { BuildEvent } from './build-events.js';
import type { BuildRequest } from './build-request.js';
import type { BuildService } from './build-service.js';
import { buildRequestDigest } from './proto-convert.js';

export class DummyBuildService implements BuildService {
  readonly name = 'dummy';

  async *build(request: BuildRequest, options: AbortOptions = {}): AsyncGenerator<BuildEvent> {
    options.signal?.throwIfAborted();
    yield { type: 'accepted', buildId: buildRequestDigest(request).toString(), invocationId: randomUUID(), backend: this.name };
    yield { type: 'failed', reason: 'sandbox-error', message: 'builds are not supported with the dummy build service', logTail: '' };
  }

  async close(): Promise<void> {}
}
