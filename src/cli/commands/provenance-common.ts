/** What the provenance commands share: naming artifacts and envelopes on the command line. */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { B3Digest, type Castore, entryFromJson } from '../../castore/index.js';
import {
  type Artifact,
  type DigestSet,
  type DsseEnvelope,
  diskDigests,
  envelopeFromJson,
  nodeDigests,
  readEnvelope,
} from '../../provenance/index.js';
import { UsageError } from '../command.js';

/**
 * An artifact named on the command line, with the digests a subject would
 * give it: a `blake3-…` digest (a directory or blob in the store), inline
 * Entry JSON (a node in the store), `sha256:<hex>` (a NAR hash), or a path
 * on disk (hashed, nothing stored).
 */
export async function resolveArtifact(text: string, store: Castore, signal: AbortSignal): Promise<Artifact> {
  const sha = /^sha256[:-]([0-9a-f]{64})$/.exec(text);
  if (sha) return { label: text, digests: { sha256: sha[1] as string } };
  if (text.startsWith('blake3-')) {
    const digest = B3Digest.parse(text);
    const directory = await store.directoryService.get(digest, { signal });
    if (directory) {
      const digests = await nodeDigests({ type: 'directory', digest, size: directory.size }, store, { signal });
      return { label: text, digests };
    }
    if (await store.blobService.has(digest, { signal })) return { label: text, digests: { blake3: digest.toHex() } };
    throw new UsageError(`${text} is neither a directory nor a blob in ${store.url}`);
  }
  if (text.trim().startsWith('{')) {
    const { node } = entryFromJson(text.trim(), { anonymous: false, allowEmptyName: true });
    return { label: text, digests: await nodeDigests(node, store, { signal }) };
  }
  if (existsSync(text)) return { label: text, digests: (await diskDigests(text, { signal })).digests };
  throw new UsageError(`${JSON.stringify(text)} is not a path, a blake3-… digest, sha256:<hex> or Entry JSON`);
}

export function formatDigestSet(digests: DigestSet): string {
  return Object.entries(digests)
    .map(([alg, hex]) => `${alg}:${hex}`)
    .join(' ');
}

/** ENVELOPE: a file holding the envelope JSON, `-` for stdin, or the `blake3-…` digest of one stored in the store. */
export async function readEnvelopeArgument(
  text: string,
  store: () => Promise<Castore>,
): Promise<{ source: string; envelope: () => DsseEnvelope }> {
  if (text.startsWith('blake3-') && !existsSync(text)) {
    const { bytes } = await readEnvelope(B3Digest.parse(text), (await store()).blobService);
    return { source: text, envelope: () => envelopeFromJson(bytes) };
  }
  let bytes: Buffer;
  try {
    bytes = text === '-' ? await readStdin() : await readFile(text);
  } catch (error) {
    throw new UsageError(`cannot read ${text}: ${(error as Error).message}`);
  }
  return { source: text, envelope: () => envelopeFromJson(bytes) };
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
