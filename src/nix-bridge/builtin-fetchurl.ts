/**
 * `builtin:fetchurl`, the one builtin builder Nix derivations commonly use
 * (`<nix/fetchurl.nix>`, bootstrap tarballs): like Nix, Kiln fetches these
 * itself instead of sending them to a builder, since they are fixed-output
 * derivations whose result is checked by hash anyway.
 *
 * What Nix 2.8 does, and so does this: download `url` (redirects followed,
 * the body taken as is, never decompressed); with `unpack = "1"` the body
 * is a NAR and the output is the tree it holds, otherwise the output is
 * the body as a regular file, made executable when `executable = "1"`.
 * Supported schemes: http, https and file. Not supported, with an error
 * saying so: an `.xz` NAR with `unpack` (Nix decompresses those), other
 * schemes, and Nix's hashed mirrors (empty by default).
 */
import { createReadStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BuildResponse } from '../build/index.js';
import type { BlobService, DirectoryService, Node } from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { type Derivation, isFixedOutput } from '../nix/index.js';
import { NixBridgeError } from './errors.js';
import { narToCastore } from './nar-to-castore.js';

export const BUILTIN_FETCHURL = 'builtin:fetchurl';

export interface FetchurlStores {
  blobService: Pick<BlobService, 'put'>;
  directoryService: Pick<DirectoryService, 'putMany'>;
}

/** The body at `url` as a stream of chunks. */
async function download(url: URL, options: AbortOptions): Promise<AsyncIterable<Uint8Array>> {
  if (url.protocol === 'file:') return createReadStream(fileURLToPath(url), options.signal ? { signal: options.signal } : {});
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    const response = await fetch(url, { redirect: 'follow', ...(options.signal ? { signal: options.signal } : {}) });
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      throw new Error(`HTTP error ${response.status}${response.statusText ? ` (${response.statusText})` : ''}`);
    }
    return response.body as AsyncIterable<Uint8Array>;
  }
  throw new Error(`the scheme ${url.protocol.slice(0, -1)} is not supported (http, https and file are)`);
}

/**
 * Runs `builtin:fetchurl` for `drv` and stores the result: the response a
 * builder would give (one output, no needles: a fetched file refers to
 * nothing). The output's hash is checked afterwards, as for any fixed
 * output.
 */
export async function runBuiltinFetchurl(
  drvPath: string,
  drv: Derivation,
  stores: FetchurlStores,
  options: AbortOptions = {},
): Promise<BuildResponse> {
  const failed = (message: string, cause?: unknown) =>
    new NixBridgeError('BUILD_FAILED', `builder for '${drvPath}' failed: ${message}`, { cause, details: { drvPath } });
  const attr = (name: string) => {
    const value = drv.env.get(name);
    if (value === undefined) throw failed(`attribute '${name}' missing`);
    return value;
  };
  attr('out');
  const mainUrl = attr('url');
  const unpack = drv.env.get('unpack') === '1';
  const executable = drv.env.get('executable') === '1';
  let url: URL;
  try {
    url = new URL(mainUrl);
  } catch (error) {
    throw failed(`invalid URL '${mainUrl}'`, error);
  }
  if (unpack && mainUrl.endsWith('.xz')) throw failed(`unpacking an xz-compressed NAR ('${mainUrl}') is not supported`);
  let node: Node;
  try {
    const body = await download(url, options);
    if (unpack) {
      node = (await narToCastore(body, { ...stores, ...options })).node;
    } else {
      const { digest, size } = await stores.blobService.put(body, options);
      node = { type: 'file', digest, size, executable };
    }
  } catch (error) {
    options.signal?.throwIfAborted();
    throw failed(`unable to download '${mainUrl}': ${(error as Error).message}`, error);
  }
  return { outputs: [{ node, needles: [] }] };
}

/** Why `drv` cannot run as `builtin:fetchurl`, if it cannot. */
export function builtinFetchurlProblem(drv: Derivation): string | undefined {
  if (!isFixedOutput(drv)) return 'builtin:fetchurl must be a fixed-output derivation';
  return undefined;
}
