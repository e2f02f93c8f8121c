/** A blob and a directory client sharing one channel, opened from a channel URL. */
import type { AbortOptions } from '../../common/abort.js';
import type { Castore } from '../from-url.js';
import { type GrpcChannelOptions, openGrpcChannel } from './channel.js';
import { GrpcBlobService, type GrpcBlobServiceOptions } from './grpc-blob-service.js';
import { GrpcDirectoryService } from './grpc-directory-service.js';

/**
 * Opens `url` (see channel-url.ts) as a Castore whose two services share one
 * HTTP/2 connection; `close()` closes both and then the connection.
 */
export async function openGrpcCastore(url: string, options: GrpcChannelOptions & GrpcBlobServiceOptions & AbortOptions = {}): Promise<Castore> {
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
