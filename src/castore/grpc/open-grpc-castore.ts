/** A blob and a directory client sharing one channel, opened from a channel URL. */
import type { AbortOptions } from '../../common/abort.js';
import { type GrpcChannelOptions, openGrpcChannel } from './channel.js';
import { GrpcBlobService, type GrpcBlobServiceOptions } from './grpc-blob-service.js';
import { GrpcDirectoryService } from './grpc-directory-service.js';

/** The two clients of one channel (shaped like castore's `Castore`, which from-url.ts returns). */
export interface GrpcCastore {
  readonly url: string;
  readonly blobService: GrpcBlobService;
  readonly directoryService: GrpcDirectoryService;
  /** Closes both services and the shared connection. */
  close(): Promise<void>;
}

/**
 * Opens `url` (see channel-url.ts) as a Castore whose two services share one
 * HTTP/2 connection; `close()` closes both and then the connection.
 */
export async function openGrpcCastore(
  url: string,
  options: GrpcChannelOptions & GrpcBlobServiceOptions & AbortOptions = {},
): Promise<GrpcCastore> {
  const channel = await openGrpcChannel(url, options);
  const blobService = new GrpcBlobService(channel, { ...options, keepChannelOpen: true });
  const directoryService = new GrpcDirectoryService(channel, { keepChannelOpen: true });
  return {
    url,
    blobService,
    directoryService,
    async close() {
      await Promise.all([blobService.close(), directoryService.close()]);
      await channel.close();
    },
  };
}
