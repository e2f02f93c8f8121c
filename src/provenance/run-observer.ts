/**
 * What a provenance statement needs to know of one build run, observed from
 * its events as they pass: the `accepted` event (build and invocation ids,
 * backend), when it started and finished, and its combined log, stored as
 * a castore blob while being hashed with SHA-256. Used by `kiln build`
 * (client-side signing, `--check`) and by `SigningBuildService` (a server
 * signing its own builds), so both describe a run the same way.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { BuildEvent } from '../build/index.js';
import type { BlobService } from '../castore/index.js';
import { AsyncQueue } from '../common/async-queue.js';
import type { DigestSet } from './digests.js';
import type { BuildRun } from './slsa-provenance.js';

/** Kiln's version (package.json), for `runDetails.builder.version`. */
export const KILN_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

/** Captures the combined log into a blob while hashing it with SHA-256. */
export class LogRecorder {
  readonly #queue = new AsyncQueue<Uint8Array>();
  readonly #sha256 = createHash('sha256');
  readonly #put: Promise<{ digest: { toHex(): string }; size: number }>;
  constructor(blobService: Pick<BlobService, 'put'>) {
    this.#put = blobService.put(this.#queue);
    this.#put.catch(() => {}); // awaited in finish; a failed build's log is dropped
  }
  push(data: Uint8Array): void {
    this.#sha256.update(data);
    this.#queue.push(data);
  }
  async finish(): Promise<{ digest: DigestSet; size: number }> {
    this.#queue.end();
    const { digest, size } = await this.#put;
    return { digest: { blake3: digest.toHex(), sha256: this.#sha256.digest('hex') }, size };
  }
  abandon(): void {
    this.#queue.fail(new Error('the build did not finish'));
  }
}

/** The facts of a run that the observer cannot see: who built it and how. */
export interface RunIdentity {
  /** `runDetails.builder.id`, a URI; a function of the backend when it depends on it. */
  readonly builderId: string | ((backend: string) => string);
  /** `internalParameters`; a function of the backend when it depends on it. */
  readonly internalParameters?: Readonly<Record<string, unknown>> | ((backend: string) => Readonly<Record<string, unknown>>);
}

/** What one run observed; `watch` passes its events through. */
export class RunObserver {
  accepted: Extract<BuildEvent, { type: 'accepted' }> | undefined;
  startedOn: Date | undefined;
  finishedOn: Date | undefined;
  readonly log: LogRecorder | undefined;
  /** Without a blob service, the log is not recorded. */
  constructor(blobService: Pick<BlobService, 'put'> | undefined) {
    this.log = blobService ? new LogRecorder(blobService) : undefined;
  }

  /** Notes one event; call for every event of the run, in order. */
  observe(event: BuildEvent): void {
    if (event.type === 'accepted') {
      this.accepted = event;
      this.startedOn = new Date();
    } else if (event.type === 'started') this.startedOn = new Date();
    else if (event.type === 'log') this.log?.push(event.data);
    else if (event.type === 'finished') this.finishedOn = new Date();
  }

  /** Drops the log of a run that will not finish. */
  abandon(): void {
    if (!this.finishedOn) this.log?.abandon();
  }

  async *watch(events: AsyncIterable<BuildEvent>): AsyncGenerator<BuildEvent> {
    try {
      for await (const event of events) {
        this.observe(event);
        yield event;
      }
    } finally {
      this.abandon();
    }
  }

  /** The facts of the watched run, once it finished (its log is then stored). */
  async run(identity: RunIdentity): Promise<BuildRun> {
    const log = await this.log?.finish();
    const accepted = this.accepted;
    if (!accepted || !this.startedOn || !this.finishedOn) throw new Error('the build finished without being accepted');
    const { builderId, internalParameters } = identity;
    const parameters = typeof internalParameters === 'function' ? internalParameters(accepted.backend) : internalParameters;
    return {
      buildId: accepted.buildId,
      invocationId: accepted.invocationId,
      backend: accepted.backend,
      builderId: typeof builderId === 'function' ? builderId(accepted.backend) : builderId,
      builderVersion: { kiln: KILN_VERSION },
      startedOn: this.startedOn.toISOString(),
      finishedOn: this.finishedOn.toISOString(),
      ...(log ? { log } : {}),
      ...(parameters ? { internalParameters: parameters } : {}),
    };
  }
}
