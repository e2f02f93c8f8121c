/**
 * Provenance next to the outputs: each envelope is stored as a castore blob
 * (its JSON), and the sidecar index maps every digest of every subject to
 * the envelope blobs naming it, so the attestations of an output can be
 * listed by its castore digest or its NAR hash.
 */
import type { B3Digest, BlobService } from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { concatBytes } from '../common/async-iterable.js';
import type { DigestSet } from './digests.js';
import { type DsseEnvelope, envelopeFromJson, envelopeToJson } from './dsse.js';
import { ProvenanceError } from './errors.js';
import { indexKeys, type Sidecar } from './sidecar.js';
import type { Statement } from './statement.js';

/** Stores the envelope as a blob and indexes it under its subjects' digests; resolves to the blob digest. */
export async function storeEnvelope(
  envelope: DsseEnvelope,
  statement: Pick<Statement<unknown>, 'subject'>,
  blobService: Pick<BlobService, 'put'>,
  sidecar: Sidecar,
  options: AbortOptions = {},
): Promise<B3Digest> {
  const { digest } = await blobService.put(Buffer.from(envelopeToJson(envelope), 'utf8'), options);
  await sidecar.addProvenance(
    statement.subject.flatMap((s) => indexKeys(s.digest)),
    digest,
  );
  return digest;
}

/** The envelope blobs recorded for an artifact with any of these digests, each once. */
export async function listEnvelopes(digests: DigestSet, sidecar: Sidecar): Promise<B3Digest[]> {
  const found = new Map<string, B3Digest>();
  for (const key of indexKeys(digests)) for (const digest of await sidecar.listProvenance(key)) found.set(digest.toHex(), digest);
  return [...found.values()].sort((a, b) => a.toHex().localeCompare(b.toHex()));
}

/** Reads and parses an envelope blob. */
export async function readEnvelope(
  digest: B3Digest,
  blobService: Pick<BlobService, 'read'>,
  options: AbortOptions = {},
): Promise<{ envelope: DsseEnvelope; bytes: Uint8Array }> {
  const data = await blobService.read(digest, options);
  if (!data)
    throw new ProvenanceError('INVALID_RECORD', `envelope blob ${digest} is not in the store`, { details: { digest: digest.toString() } });
  const bytes = await concatBytes(data);
  return { envelope: envelopeFromJson(bytes), bytes };
}
