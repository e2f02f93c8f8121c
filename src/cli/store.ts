/** Opening the store a command names, and reading ENTRY arguments. */
import { existsSync, readFileSync } from 'node:fs';
import {
  B3Digest,
  type Castore,
  CastoreError,
  castoreFromUrl,
  defaultStoreUrl,
  directoryNode,
  entryFromJson,
  type NamedNode,
} from '../castore/index.js';
import { type ParsedArgs, stringOption, UsageError } from './command.js';

export async function openStore(args: ParsedArgs, env: NodeJS.ProcessEnv): Promise<Castore> {
  return castoreFromUrl(stringOption(args, 'store') ?? defaultStoreUrl(env));
}

/** Runs `fn` with the store open and always closes it. */
export async function withStore<T>(args: ParsedArgs, env: NodeJS.ProcessEnv, fn: (store: Castore) => Promise<T>): Promise<T> {
  const store = await openStore(args, env);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * ENTRY: the proto3 JSON of a `snix.castore.v1.Entry` (inline or in a file),
 * or a `blake3-…` directory digest.
 */
export async function resolveEntry(text: string, store: Castore): Promise<NamedNode> {
  if (text.startsWith('blake3-')) {
    const digest = B3Digest.parse(text);
    const directory = await store.directoryService.get(digest);
    if (!directory) throw new CastoreError('NOT_FOUND', `directory ${digest} not found in ${store.url}`);
    return { name: new Uint8Array(0), node: directoryNode(digest, directory.size) };
  }
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) return entryFromJson(trimmed, { anonymous: false, allowEmptyName: true });
  if (existsSync(text)) return entryFromJson(readFileSync(text, 'utf8').trim(), { anonymous: false, allowEmptyName: true });
  throw new UsageError(`invalid ENTRY ${JSON.stringify(text)}: expected Entry JSON, a file holding it, or a blake3-… directory digest`);
}
