/**
 * The in-toto Statement v1 (in-toto/attestation spec/v1/statement.md): the
 * subjects (artifacts matched by digest) and a typed predicate about them.
 */
import { ProvenanceError } from './errors.js';

export const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';

/** in-toto ResourceDescriptor (spec/v1/resource_descriptor.md); at least one of uri, digest, content. */
export interface ResourceDescriptor {
  readonly name?: string;
  readonly uri?: string;
  readonly digest?: Readonly<Record<string, string>>;
  readonly downloadLocation?: string;
  readonly mediaType?: string;
  readonly annotations?: Readonly<Record<string, unknown>>;
}

/** A subject always has a name and a non-empty digest set. */
export interface Subject extends ResourceDescriptor {
  readonly name: string;
  readonly digest: Readonly<Record<string, string>>;
}

export interface Statement<Predicate = Record<string, unknown>> {
  readonly _type: typeof IN_TOTO_STATEMENT_TYPE;
  readonly subject: readonly Subject[];
  readonly predicateType: string;
  readonly predicate: Predicate;
}

/** The payload bytes: the statement as UTF-8 JSON. */
export function statementToBytes(statement: Statement<unknown>): Uint8Array {
  return new Uint8Array(Buffer.from(JSON.stringify(statement), 'utf8'));
}

const invalid = (message: string) => new ProvenanceError('INVALID_STATEMENT', `invalid in-toto statement: ${message}`);

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Parses and shape-checks a statement: `_type`, a non-empty subject list
 * whose entries each have a name and a non-empty digest set of lowercase
 * hex values, a `predicateType` and an object predicate.
 */
export function statementFromBytes(payload: Uint8Array): Statement {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch (error) {
    throw invalid(`the payload is not JSON: ${(error as Error).message}`);
  }
  if (!isObject(value)) throw invalid('the payload is not a JSON object');
  if (value._type !== IN_TOTO_STATEMENT_TYPE) throw invalid(`_type is ${JSON.stringify(value._type)}, expected ${IN_TOTO_STATEMENT_TYPE}`);
  if (!Array.isArray(value.subject) || value.subject.length === 0) throw invalid('subject is missing or empty');
  value.subject.forEach((subject: unknown, i) => {
    if (!isObject(subject)) throw invalid(`subject[${i}] is not an object`);
    if (typeof subject.name !== 'string') throw invalid(`subject[${i}].name is missing`);
    if (!isObject(subject.digest) || Object.keys(subject.digest).length === 0) throw invalid(`subject[${i}].digest is missing or empty`);
    for (const [algo, hex] of Object.entries(subject.digest)) {
      if (typeof hex !== 'string' || !/^[0-9a-f]+$/.test(hex)) throw invalid(`subject[${i}].digest.${algo} is not lowercase hex`);
    }
  });
  if (typeof value.predicateType !== 'string' || value.predicateType === '') throw invalid('predicateType is missing');
  if (!isObject(value.predicate)) throw invalid('predicate is missing or not an object');
  return value as unknown as Statement;
}
