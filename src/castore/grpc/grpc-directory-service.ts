/**
 * A DirectoryService backed by a remote `snix.castore.v1.DirectoryService`.
 * Nothing the server sends is trusted: `get` checks the digest of what comes
 * back, `getRecursive` checks that the stream is exactly the closure of the
 * root (every directory expected, with the size its parent recorded, and
 * every expected directory received).
 */
import { type Client, createClient } from '@connectrpc/connect';
import type { AbortOptions } from '../../common/abort.js';
import type { Directory as DirectoryMessage } from '../../gen/snix/castore/v1/castore_pb.js';
import { DirectoryService as DirectoryServiceDesc } from '../../gen/snix/castore/v1/rpc_directory_pb.js';
import type { B3Digest } from '../b3-digest.js';
import type { Directory } from '../directory.js';
import type { DirectoryService } from '../directory-service/directory-service.js';
import { CastoreError } from '../errors.js';
import { directoryFromMessage, directoryToMessage } from '../proto-convert.js';
import { type GrpcChannel, type GrpcChannelOptions, openGrpcChannel } from './channel.js';
import { receivedDigest } from './grpc-blob-service.js';
import { connectErrorToCastoreError, isNotFound } from './status.js';

export interface GrpcDirectoryServiceOptions {
  /** Leave the channel open on `close()` (when it is shared); default false. */
  keepChannelOpen?: boolean;
}

/**
 * The gRPC DirectoryService client: just another backend. `get` is a
 * non-recursive Get (NOT_FOUND → undefined), `getRecursive` a recursive Get
 * (empty stream → nothing), `putMany` a Put of the leaves-first closure.
 * Breaking out of `getRecursive` cancels the call.
 */
export class GrpcDirectoryService implements DirectoryService {
  readonly channel: GrpcChannel;
  readonly #client: Client<typeof DirectoryServiceDesc>;
  readonly #options: GrpcDirectoryServiceOptions;

  constructor(channel: GrpcChannel, options: GrpcDirectoryServiceOptions = {}) {
    this.channel = channel;
    this.#client = createClient(DirectoryServiceDesc, channel.transport);
    this.#options = options;
  }

  async get(digest: B3Digest, options: AbortOptions = {}): Promise<Directory | undefined> {
    const { signal } = options;
    signal?.throwIfAborted();
    const call = new AbortController();
    const callSignal = signal ? AbortSignal.any([signal, call.signal]) : call.signal;
    const messages: DirectoryMessage[] = [];
    try {
      for await (const message of this.#client.get(
        { byWhat: { case: 'digest', value: digest.bytes }, recursive: false },
        { signal: callSignal },
      )) {
        messages.push(message);
        if (messages.length > 1) break;
      }
    } catch (error) {
      if (isNotFound(error) && !signal?.aborted) return undefined;
      throw connectErrorToCastoreError(error, { signal, operation: 'grpc DirectoryService.Get', invalidArgumentCode: 'INVALID_DIGEST' });
    } finally {
      call.abort();
    }
    if (messages.length !== 1) {
      throw new CastoreError(
        'BACKEND_FAILURE',
        `grpc DirectoryService.Get answered ${messages.length} directories for ${digest}, expected one`,
      );
    }
    const directory = directoryFromMessage(messages[0] as DirectoryMessage);
    if (!directory.digest.equals(digest)) {
      throw new CastoreError('INTEGRITY_MISMATCH', `requested directory ${digest}, but the server returned ${directory.digest}`, {
        details: { digest: digest.toString(), actual: directory.digest.toString() },
      });
    }
    return directory;
  }

  async *getRecursive(root: B3Digest, options: AbortOptions = {}): AsyncGenerator<Directory> {
    const { signal } = options;
    signal?.throwIfAborted();
    const call = new AbortController();
    const callSignal = signal ? AbortSignal.any([signal, call.signal]) : call.signal;
    // digest → the size the referencing entry recorded (undefined for the root).
    const expected = new Map<string, number | undefined>([[root.toHex(), undefined]]);
    const received = new Set<string>();
    try {
      for await (const message of this.#client.get(
        { byWhat: { case: 'digest', value: root.bytes }, recursive: true },
        { signal: callSignal },
      )) {
        const directory = directoryFromMessage(message);
        const key = directory.digest.toHex();
        if (!expected.has(key)) {
          throw new CastoreError(
            'BACKEND_FAILURE',
            `grpc DirectoryService.Get sent unexpected directory ${directory.digest} in the closure of ${root}`,
          );
        }
        if (received.has(key)) continue;
        const recordedSize = expected.get(key);
        if (recordedSize !== undefined && recordedSize !== directory.size) throw wrongSize(directory.digest, recordedSize, directory.size);
        received.add(key);
        for (const { node } of directory.entries) {
          if (node.type !== 'directory') continue;
          const childKey = node.digest.toHex();
          if (!expected.has(childKey)) expected.set(childKey, node.size);
          else if (expected.get(childKey) !== node.size) throw wrongSize(node.digest, expected.get(childKey) ?? 0, node.size);
        }
        yield directory;
      }
    } catch (error) {
      throw connectErrorToCastoreError(error, { signal, operation: 'grpc DirectoryService.Get', invalidArgumentCode: 'INVALID_DIRECTORY' });
    } finally {
      call.abort();
    }
    // An empty stream means the root is absent; otherwise the closure must be complete.
    if (received.size === 0) return;
    for (const key of expected.keys()) {
      if (!received.has(key)) {
        throw new CastoreError('NOT_FOUND', `grpc DirectoryService.Get ended without directory ${key} of the closure of ${root}`, {
          details: { root: root.toString(), missingHex: key },
        });
      }
    }
  }

  async putMany(directories: AsyncIterable<Directory> | Iterable<Directory>, options: AbortOptions = {}): Promise<B3Digest> {
    const { signal } = options;
    signal?.throwIfAborted();
    let sourceError: { error: unknown } | undefined;
    async function* messages() {
      try {
        for await (const directory of directories) {
          signal?.throwIfAborted();
          yield directoryToMessage(directory);
        }
      } catch (error) {
        sourceError = { error };
        throw error;
      }
    }
    let response: { rootDigest: Uint8Array };
    try {
      response = await this.#client.put(messages(), { signal });
    } catch (error) {
      if (sourceError && !signal?.aborted) throw sourceError.error;
      throw connectErrorToCastoreError(error, { signal, operation: 'grpc DirectoryService.Put', invalidArgumentCode: 'INVALID_DIRECTORY' });
    }
    return receivedDigest(response.rootDigest, 'DirectoryService.Put');
  }

  async close(): Promise<void> {
    if (!this.#options.keepChannelOpen) await this.channel.close();
  }
}

function wrongSize(digest: B3Digest, recorded: number, actual: number): CastoreError {
  return new CastoreError('INVALID_DIRECTORY', `directory ${digest} has wrong size, specified ${recorded}, recorded ${actual}`, {
    details: { digest: digest.toString() },
  });
}

/** Opens a channel for `url` (see channel-url.ts) and a GrpcDirectoryService that owns it. */
export async function grpcDirectoryServiceFromUrl(
  url: string,
  options: GrpcDirectoryServiceOptions & GrpcChannelOptions & AbortOptions = {},
): Promise<GrpcDirectoryService> {
  return new GrpcDirectoryService(await openGrpcChannel(url, options), options);
}
