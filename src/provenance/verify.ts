/**
 * Verifying a provenance envelope, every step failing with its reason:
 * 1. the envelope parses (a truncated or malformed one is `INVALID_ENVELOPE`);
 * 2. its payload type is `application/vnd.in-toto+json` (`WRONG_PAYLOAD_TYPE`);
 * 3. a signature verifies with the given Ed25519 key over the DSSE PAE (`BAD_SIGNATURE`);
 * 4. the payload is an in-toto Statement v1 with a predicate Kiln issues
 *    (SLSA provenance v1 or Kiln's reproduced predicate) (`INVALID_STATEMENT`);
 * 5. subjects: each artifact given (a path on disk or a castore node) matches a
 *    subject on every digest both have (`SUBJECT_MISMATCH`); without artifacts,
 *    every subject is found in the store and its NAR hashes as stated
 *    (`SUBJECT_MISSING`, `SUBJECT_MISMATCH`).
 */
import type { Node } from '../castore/index.js';
import { B3Digest, directoryNode, fileNode } from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { type DigestSet, nodeDigests, nodeFromDescription, type StoreReader } from './digests.js';
import { type DsseEnvelope, envelopeFromJson, verifyEnvelope } from './dsse.js';
import { ProvenanceError } from './errors.js';
import type { VerifyingKey } from './keys.js';
import { KILN_REPRODUCED_PREDICATE, NODE_ANNOTATION, SLSA_PROVENANCE_V1 } from './slsa-provenance.js';
import { type Statement, type Subject, statementFromBytes } from './statement.js';

/** Something the statement should be about: a path on disk or a node in the store, with its digests. */
export interface Artifact {
  /** How the user named it, for messages. */
  readonly label: string;
  readonly digests: DigestSet;
}

export interface VerifyProvenanceOptions extends AbortOptions {
  readonly key: VerifyingKey;
  /** Check these against the subjects (instead of checking every subject in the store). */
  readonly artifacts?: readonly Artifact[];
  /** Where subjects are looked up when no artifacts are given. */
  readonly store?: StoreReader;
  /** Stop after the signature and statement checks. */
  readonly signatureOnly?: boolean;
}

export interface SubjectCheck {
  readonly subject: string;
  /** How it was checked: the artifact label, or `store`. */
  readonly against: string;
}

export interface VerificationReport {
  readonly keyId: string;
  readonly statement: Statement;
  readonly checked: readonly SubjectCheck[];
}

export const KNOWN_PREDICATES: readonly string[] = [SLSA_PROVENANCE_V1, KILN_REPRODUCED_PREDICATE];

/** Algorithms on which both sets agree, or the first that differs. */
function compareDigests(a: DigestSet, b: DigestSet): { shared: string[]; differing?: string } {
  const shared = Object.keys(a).filter((alg) => b[alg] !== undefined);
  return { shared, differing: shared.find((alg) => a[alg] !== b[alg]) };
}

const formatDigests = (d: DigestSet) =>
  Object.entries(d)
    .map(([alg, hex]) => `${alg}:${hex}`)
    .join(' ');

/** The subject an artifact matches on every shared algorithm (at least one), or a reason it matches none. */
export function matchSubject(subjects: readonly Subject[], artifact: Artifact): Subject {
  for (const subject of subjects) {
    const { shared, differing } = compareDigests(subject.digest, artifact.digests);
    if (shared.length > 0 && differing === undefined) return subject;
  }
  const names = subjects.map((s) => s.name).join(', ');
  throw new ProvenanceError(
    'SUBJECT_MISMATCH',
    `${artifact.label} (${formatDigests(artifact.digests)}) matches no subject of the statement (${names})`,
    { details: { artifact: artifact.label } },
  );
}

/** The candidate nodes a subject may be in the store. */
async function subjectNodes(subject: Subject, store: StoreReader, options: AbortOptions): Promise<Node[]> {
  const described = nodeFromDescription(subject.digest, subject.annotations?.[NODE_ANNOTATION]);
  if (described) return [described];
  const hex = subject.digest.blake3;
  if (!hex || !/^[0-9a-f]{64}$/.test(hex)) return [];
  const digest = B3Digest.fromHex(hex);
  const directory = await store.directoryService.get(digest, options);
  if (directory) return [directoryNode(digest, directory.size)];
  const data = await store.blobService.read(digest, options);
  if (!data) return [];
  let size = 0;
  for await (const chunk of data) size += chunk.byteLength;
  // Without the annotation the executable bit is unknown: either may be the one hashed.
  return [fileNode(digest, size, false), fileNode(digest, size, true)];
}

async function checkSubjectInStore(subject: Subject, store: StoreReader, options: AbortOptions): Promise<void> {
  const candidates = await subjectNodes(subject, store, options);
  if (candidates.length === 0) {
    throw new ProvenanceError('SUBJECT_MISSING', `subject ${subject.name} (${formatDigests(subject.digest)}) is not in the store`, {
      details: { subject: subject.name },
    });
  }
  let lastDiffering: { alg: string; actual: string } | undefined;
  for (const node of candidates) {
    if (node.type === 'directory' && !(await store.directoryService.get(node.digest, options))) {
      throw new ProvenanceError('SUBJECT_MISSING', `subject ${subject.name}: directory ${node.digest} is not in the store`, {
        details: { subject: subject.name },
      });
    }
    if (node.type === 'file') {
      if (!(await store.blobService.has(node.digest, options))) {
        throw new ProvenanceError('SUBJECT_MISSING', `subject ${subject.name}: blob ${node.digest} is not in the store`, {
          details: { subject: subject.name },
        });
      }
    }
    const actual = await nodeDigests(node, store, options);
    const { shared, differing } = compareDigests(subject.digest, actual);
    if (shared.length > 0 && differing === undefined) return;
    if (differing) lastDiffering = { alg: differing, actual: actual[differing] as string };
  }
  throw new ProvenanceError(
    'SUBJECT_MISMATCH',
    `subject ${subject.name}: the stored artifact's ${lastDiffering?.alg} is ${lastDiffering?.actual}, the statement says ${lastDiffering ? subject.digest[lastDiffering.alg] : '?'}`,
    { details: { subject: subject.name } },
  );
}

/** Runs every check; resolves to a report, or throws a `ProvenanceError` with the first reason verification fails. */
export async function verifyProvenance(
  envelope: DsseEnvelope | string | Uint8Array,
  options: VerifyProvenanceOptions,
): Promise<VerificationReport> {
  const parsed = typeof envelope === 'string' || envelope instanceof Uint8Array ? envelopeFromJson(envelope) : envelope;
  const { payload, keyId } = verifyEnvelope(parsed, options.key);
  const statement = statementFromBytes(payload);
  if (!KNOWN_PREDICATES.includes(statement.predicateType)) {
    throw new ProvenanceError(
      'INVALID_STATEMENT',
      `predicate type ${statement.predicateType} is not one Kiln issues (${KNOWN_PREDICATES.join(', ')})`,
    );
  }
  const checked: SubjectCheck[] = [];
  if (options.signatureOnly) return { keyId, statement, checked };
  if (options.artifacts && options.artifacts.length > 0) {
    for (const artifact of options.artifacts)
      checked.push({ subject: matchSubject(statement.subject, artifact).name, against: artifact.label });
    return { keyId, statement, checked };
  }
  if (!options.store) throw new ProvenanceError('SUBJECT_MISSING', 'no store and no artifact to check the subjects against');
  for (const subject of statement.subject) {
    await checkSubjectInStore(subject, options.store, options);
    checked.push({ subject: subject.name, against: 'store' });
  }
  return { keyId, statement, checked };
}
