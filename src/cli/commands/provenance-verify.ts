/** `kiln provenance verify ENVELOPE --key PUB`: check a signed provenance statement. */
import { readFile } from 'node:fs/promises';
import {
  isProvenanceError,
  type StatementSummary,
  summarizeStatement,
  type VerificationReport,
  verifyingKeyFromPem,
  verifyProvenance,
} from '../../provenance/index.js';
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION, stringOption, UsageError } from '../command.js';
import { EXIT_FAILURE, EXIT_OK } from '../exit-codes.js';
import { openStore } from '../store.js';
import { readEnvelopeArgument, resolveArtifact } from './provenance-common.js';

function summary(report: VerificationReport): string[] {
  const { statement } = report;
  const lines = [`verified: signed by key ${report.keyId}`];
  const summary = summarizeStatement(statement);
  const run = (r: StatementSummary['runs'][number]) =>
    `${r.builderId ?? '?'} (${r.backend ?? '?'}, invocation ${r.invocationId ?? '?'}, finished ${r.finishedOn ?? '?'})`;
  if (summary.kind === 'provenance')
    lines.push(`statement: SLSA provenance v1, build type ${summary.buildType}, builder ${summary.runs.map(run).join('')}`);
  else if (summary.kind === 'reproduced')
    lines.push(`statement: reproduced, build type ${summary.buildType}, by ${summary.runs.map(run).join(' and ')}`);
  for (const subject of statement.subject) {
    const checks = report.checked
      .filter((c) => c.subject === subject.name)
      .map((c) => (c.against === 'store' ? 'matches the store' : `matches ${c.against}`));
    lines.push(`subject ${subject.name}: ${checks.length > 0 ? checks.join(', ') : 'not checked'}`);
  }
  return lines;
}

export const provenanceVerify: CommandImplementation = {
  help: `usage: kiln provenance verify ENVELOPE --key PUB [--subject PATH_OR_ENTRY]...
                              [--store URL] [--signature-only] [--json]

Checks, in order, and stops at the first failure, naming it:
  1. ENVELOPE is a well-formed DSSE envelope (JSON: payloadType, base64 payload,
     signatures with keyid and sig); a truncated or corrupted file fails here;
  2. its payload type is application/vnd.in-toto+json;
  3. a signature verifies with the Ed25519 public key PUB over the DSSE
     pre-authentication encoding of the payload type and payload;
  4. the payload is an in-toto Statement v1 with a predicate Kiln issues
     (https://slsa.dev/provenance/v1 or https://kiln.dev/reproduced/v1);
  5. the subjects: each --subject matches a subject on every digest both have
     (blake3 of the castore digest, sha256 of the NAR); without --subject, every
     subject is looked up in the store by its castore digest and its NAR hashed
     again.

ENVELOPE is a file (- for stdin) or the blake3-… digest of an envelope stored
in the store (kiln provenance list). PATH_OR_ENTRY is a path on disk (hashed,
not stored), a blake3-… digest or Entry JSON of a node in the store, or
sha256:<hex> (a NAR hash).

Exit status: 0 every check holds; 1 verification failed (the reason is
printed); 2 usage (a missing or unreadable key or envelope file).

options:
  --key PUB          the signer's public key (SPKI PEM, e.g. FILE.pub of kiln key generate)
  --subject X        an artifact the statement must be about (repeatable)
${STORE_HELP}
  --signature-only   check only steps 1–4
  --json             print {"keyId", "statement", "checked": [{"subject", "against"}]}`,
  options: {
    ...STORE_OPTION,
    key: { type: 'string' },
    subject: { type: 'string', multiple: true },
    'signature-only': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const [envelopeArg] = expectPositionals(this, args, ['ENVELOPE']) as [string];
    const keyPath = stringOption(args, 'key');
    if (!keyPath) throw new UsageError("missing --key PUB (the signer's public key)");
    const subjects = (args.values.subject as string[] | undefined) ?? [];
    if (args.values['signature-only'] === true && subjects.length > 0)
      throw new UsageError('--signature-only and --subject exclude each other');
    let keyPem: Buffer;
    try {
      keyPem = await readFile(keyPath);
    } catch (error) {
      throw new UsageError(`cannot read --key ${keyPath}: ${(error as Error).message}`);
    }
    let key: ReturnType<typeof verifyingKeyFromPem>;
    try {
      key = verifyingKeyFromPem(keyPem, `--key ${keyPath}`);
    } catch (error) {
      if (isProvenanceError(error, 'INVALID_KEY')) throw new UsageError(error.message);
      throw error;
    }
    let store: Awaited<ReturnType<typeof openStore>> | undefined;
    const getStore = async () => (store ??= await openStore(args, io.env));
    try {
      const { envelope } = await readEnvelopeArgument(envelopeArg, getStore);
      const needStore = args.values['signature-only'] !== true;
      const artifacts = [];
      for (const subject of subjects) artifacts.push(await resolveArtifact(subject, await getStore(), io.signal));
      try {
        const report = await verifyProvenance(envelope(), {
          key,
          artifacts,
          ...(needStore && artifacts.length === 0 ? { store: await getStore() } : {}),
          signatureOnly: args.values['signature-only'] === true,
          signal: io.signal,
        });
        if (args.values.json === true) io.stdout.write(`${JSON.stringify(report)}\n`);
        else io.stdout.write(`${summary(report).join('\n')}\n`);
        return EXIT_OK;
      } catch (error) {
        if (!isProvenanceError(error)) throw error;
        io.stderr.write(`error: verification failed: ${error.message}\n`);
        return EXIT_FAILURE;
      }
    } catch (error) {
      if (isProvenanceError(error, 'INVALID_ENVELOPE')) {
        io.stderr.write(`error: verification failed: ${error.message}\n`);
        return EXIT_FAILURE;
      }
      throw error;
    } finally {
      await store?.close();
    }
  },
};
