/**
 * What the `kiln nix` commands share: the store they use with its
 * path-info index, the local Nix store, and exit statuses for bad input.
 *
 * The path-info index lives with the castore: `<root>/nix-path-info.mdb`
 * for the embedded disk store, in memory for `memory://`, and under
 * `$KILN_HOME/nix-path-info/` (one per store URL) for remote stores.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Castore, kilnHome } from '../../castore/index.js';
import { isNixFormatError } from '../../nix/index.js';
import {
  isNixBridgeError,
  LmdbPathInfoService,
  LocalNixStore,
  MemoryPathInfoService,
  type PathInfoService,
} from '../../nix-bridge/index.js';
import type { CommandIo, ParsedArgs } from '../command.js';
import { EXIT_INVALID, errorLine } from '../exit-codes.js';
import { withStore } from '../store.js';

/** The options every `kiln nix` command that reads the Nix store takes. */
export const NIX_STORE_HELP = `  The local Nix store (default /nix/store; KILN_NIX_STORE_DIR sets where its files
  are, for a store kept elsewhere) supplies .drv files and input sources; Kiln
  never writes to it.`;

/** Where the disk castore at `url` keeps its files, or undefined for other stores. */
function diskStoreRoot(url: string): string | undefined {
  if (isAbsolute(url) || url.startsWith('.') || !/^[a-z][a-z0-9+.-]*:/i.test(url)) return resolve(url);
  if (url.startsWith('file:')) return fileURLToPath(url);
  return undefined;
}

/**
 * Opens the path-info index that belongs to `store`. (The contents a record
 * points at are made durable by the NixBuilder before it commits.)
 */
export function openPathInfoService(store: Castore, env: NodeJS.ProcessEnv): PathInfoService {
  const root = diskStoreRoot(store.url);
  if (root) return LmdbPathInfoService.open(join(root, 'nix-path-info.mdb'));
  if (store.url.startsWith('memory:')) return new MemoryPathInfoService();
  const dir = join(kilnHome(env), 'nix-path-info');
  mkdirSync(dir, { recursive: true });
  const key = createHash('sha256').update(store.url).digest('hex').slice(0, 32);
  return LmdbPathInfoService.open(join(dir, `${key}.mdb`));
}

/** Runs `fn` with the store and its path-info index open, closing both. */
export async function withNixStore<T>(
  args: ParsedArgs,
  env: NodeJS.ProcessEnv,
  fn: (store: Castore, pathInfos: PathInfoService) => Promise<T>,
): Promise<T> {
  return withStore(args, env, async (store) => {
    const pathInfos = openPathInfoService(store, env);
    try {
      return await fn(store, pathInfos);
    } finally {
      await pathInfos.close();
    }
  });
}

export function localNixStore(env: NodeJS.ProcessEnv): LocalNixStore {
  const realStoreDir = env.KILN_NIX_STORE_DIR;
  return new LocalNixStore(realStoreDir ? { realStoreDir: resolve(realStoreDir) } : {});
}

/** Bad input: a `.drv` or store path that does not parse or is not what it claims, or a derivation refused before building. */
export function isBadInput(error: unknown): boolean {
  return isNixFormatError(error) || isNixBridgeError(error, 'INVALID_DERIVATION') || isNixBridgeError(error, 'DERIVATION_REJECTED');
}

/** Runs a command body; bad input is reported with exit status 2 (other errors go to the CLI's usual mapping). */
export async function withNixExitStatus(io: CommandIo, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (error) {
    if (io.signal.aborted || !isBadInput(error)) throw error;
    io.stderr.write(`${errorLine(error)}\n`);
    if (io.env.KILN_DEBUG && error instanceof Error) io.stderr.write(`${error.stack}\n`);
    return EXIT_INVALID;
  }
}
