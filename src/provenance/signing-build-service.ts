/**
 * A builder that signs its own builds (`kiln serve --sign-key`): wraps any
 * BuildService, passes every event through, and on `finished` builds the
 * SLSA provenance of the run (outputs and inputs hashed from the castore),
 * signs it with its key, stores the envelope next to the outputs (the
 * sidecar's index) and yields the `finished` event with `provenance` set to
 * the envelope's JSON. A failure to sign never loses the build result: the
 * `finished` event then goes out without provenance, and `onError` hears why.
 */
import type { BuildEvent, BuildRequest, BuildService } from '../build/index.js';
import type { BlobService } from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import type { CastoreReader } from '../nix-bridge/index.js';
import { envelopeToJson, signEnvelope } from './dsse.js';
import type { SigningKey } from './keys.js';
import { storeEnvelope } from './provenance-store.js';
import { type RunIdentity, RunObserver } from './run-observer.js';
import type { Sidecar } from './sidecar.js';
import { buildProvenance } from './slsa-provenance.js';
import { statementToBytes } from './statement.js';

export interface SigningBuildServiceOptions extends RunIdentity {
  readonly key: SigningKey;
  /** Where the builder stores outputs and reads inputs; the log and the envelopes are stored there too. */
  readonly castore: CastoreReader & { readonly blobService: Pick<BlobService, 'put' | 'read'> };
  /** Where envelopes are indexed by subject (and subject digests memoized). */
  readonly sidecar: Sidecar;
  /** Told when a build's provenance could not be made; its `finished` event goes out without one. */
  readonly onError?: (error: Error, request: BuildRequest) => void;
}

export class SigningBuildService implements BuildService {
  readonly name: string;
  readonly #inner: BuildService;
  readonly #options: SigningBuildServiceOptions;

  constructor(inner: BuildService, options: SigningBuildServiceOptions) {
    this.#inner = inner;
    this.#options = options;
    this.name = inner.name;
  }

  /** The key's id, for logs. */
  get keyId(): string {
    return this.#options.key.keyId;
  }

  async *build(request: BuildRequest, options: AbortOptions = {}): AsyncGenerator<BuildEvent> {
    const observer = new RunObserver(this.#options.castore.blobService);
    try {
      for await (const event of this.#inner.build(request, options)) {
        observer.observe(event);
        if (event.type !== 'finished') {
          yield event;
          continue;
        }
        let provenance: string | undefined;
        try {
          provenance = await this.#sign(request, event, observer, options);
        } catch (error) {
          this.#options.onError?.(error instanceof Error ? error : new Error(String(error)), request);
        }
        yield provenance !== undefined ? { ...event, provenance } : event;
      }
    } finally {
      observer.abandon();
    }
  }

  async #sign(
    request: BuildRequest,
    finished: Extract<BuildEvent, { type: 'finished' }>,
    observer: RunObserver,
    options: AbortOptions,
  ): Promise<string> {
    const { key, castore, sidecar } = this.#options;
    const run = await observer.run(this.#options);
    const statement = await buildProvenance(request, finished.response, run, castore, { ...options, memo: sidecar });
    const envelope = signEnvelope(statementToBytes(statement), key);
    await storeEnvelope(envelope, statement, castore.blobService, sidecar, options);
    return envelopeToJson(envelope);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
