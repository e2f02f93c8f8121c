/**
 * Composition by URL: the one place (besides the CLI and tests) that names
 * concrete castore backends. gRPC is loaded with `import()` only when a
 * `grpc+` URL is used, so local users never load http2.
 *
 * - `memory://` (no host, no path): in-process, gone at exit.
 * - a filesystem path, or `file:///abs/path`: the embedded disk store.
 * - `grpc+unix:///abs/path.sock`, `grpc+http://host:port`, `grpc+https://host:port`.
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BlobService } from './blob-service/blob-service.js';
import { MemoryBlobService } from './blob-service/memory.js';
import type { DirectoryService } from './directory-service/directory-service.js';
import { MemoryDirectoryService } from './directory-service/memory.js';
import { CastoreError } from './errors.js';
import { openFsCastore } from './fs-store.js';
import type { FileDigestCache } from './import/file-digest-cache.js';
import { type VerifyOptions, type VerifyReport, verifyFsCastore } from './verify.js';

/** A blob and a directory service opened together from one URL. */
export interface Castore {
  readonly url: string;
  readonly blobService: BlobService;
  readonly directoryService: DirectoryService;
  /** Present on stores that persist the re-import memo (the disk store). */
  readonly fileDigestCache?: FileDigestCache;
  /** Re-hashes everything; only stores that can list their contents (the disk store) have it. */
  readonly verify?: (options?: VerifyOptions) => Promise<VerifyReport>;
  /** Closes both services. */
  close(): Promise<void>;
}

/** Where every Kiln default lives: `$KILN_HOME`, else `~/.local/share/kiln`. */
export function kilnHome(env: NodeJS.ProcessEnv = process.env): string {
  const home = env.KILN_HOME;
  if (home) return resolve(home);
  return join(env.HOME || homedir(), '.local', 'share', 'kiln');
}

/** The embedded default store: `$KILN_HOME/store`. */
export function defaultStoreUrl(env: NodeJS.ProcessEnv = process.env): string {
  return join(kilnHome(env), 'store');
}

type Factory = (url: string, parsed: URL | undefined) => Promise<Castore>;

const factories = new Map<string, Factory>([
  [
    'memory',
    async (url, parsed) => {
      if (parsed && (parsed.host !== '' || parsed.pathname !== '' || parsed.search !== '')) {
        throw new CastoreError('INVALID_URL', `invalid store URL ${url}: memory:// takes no host, path or query`);
      }
      const blobService = new MemoryBlobService();
      const directoryService = new MemoryDirectoryService();
      return { url, blobService, directoryService, close: async () => {} };
    },
  ],
  [
    'file',
    async (url, parsed) => {
      if (parsed === undefined || parsed.host !== '' || parsed.search !== '' || parsed.pathname === '' || parsed.pathname === '/') {
        throw new CastoreError('INVALID_URL', `invalid store URL ${url}: expected file:///absolute/path`);
      }
      return fsCastore(url, fileURLToPath(parsed));
    },
  ],
  [
    'grpc',
    async (url) => {
      const grpc = await import('./grpc/index.js');
      return grpc.openGrpcCastore(url);
    },
  ],
]);

async function fsCastore(url: string, root: string): Promise<Castore> {
  const store = await openFsCastore(root);
  return {
    url,
    blobService: store.blobService,
    directoryService: store.directoryService,
    fileDigestCache: store.fileDigestCache,
    verify: (options) => verifyFsCastore(store, options),
    close: store.close,
  };
}

/** Opens the store a URL names; throws `INVALID_URL` naming the URL when no backend accepts it. */
export async function castoreFromUrl(url: string): Promise<Castore> {
  if (url === '') throw new CastoreError('INVALID_URL', 'empty store URL');
  if (isAbsolute(url) || url.startsWith('.') || !/^[a-z][a-z0-9+.-]*:/i.test(url)) return fsCastore(url, resolve(url));
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new CastoreError('INVALID_URL', `invalid store URL ${url}`, { cause: error });
  }
  const scheme = parsed.protocol.slice(0, -1).split('+')[0] as string;
  const factory = factories.get(scheme);
  if (!factory) throw new CastoreError('INVALID_URL', `invalid store URL ${url}: unknown scheme ${parsed.protocol}`);
  return factory(url, parsed);
}
