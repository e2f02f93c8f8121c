/** `kiln provenance list OUTPUT…` and `kiln provenance show DIGEST`: the statements stored for an output. */
import { B3Digest } from '../../castore/index.js';
import {
  decodeDsseBase64,
  listEnvelopes,
  readEnvelope,
  type StatementSummary,
  sidecarForStore,
  statementFromBytes,
  summarizeStatement,
} from '../../provenance/index.js';
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION, UsageError } from '../command.js';
import { EXIT_OK } from '../exit-codes.js';
import { withStore } from '../store.js';
import { formatDigestSet, resolveArtifact } from './provenance-common.js';

interface Listed {
  envelope: string;
  predicateType?: string;
  kind?: StatementSummary['kind'];
  runs?: StatementSummary['runs'];
  keyIds: string[];
  error?: string;
}

export const provenanceList: CommandImplementation = {
  help: `usage: kiln provenance list OUTPUT... [--store URL] [--json]

Lists the envelopes (castore blobs) the store's provenance index holds for
each OUTPUT: a blake3-… digest or Entry JSON of a node in the store, a path on
disk (hashed, matched by digest), or sha256:<hex> (a NAR hash). One line per
envelope: its digest, the predicate, builder and finish time and the key ids
of its signatures, read from the envelope WITHOUT verifying it (use kiln
provenance verify DIGEST --key PUB for that). Exit status 0 even when none is
found.

options:
${STORE_HELP}
  --json        print [{"output", "digests", "envelopes": [{"envelope", "predicateType",
                "kind", "runs": [{"builderId", "backend", "invocationId", "finishedOn"}],
                "keyIds"}]}]`,
  options: { ...STORE_OPTION, json: { type: 'boolean' } },
  async run(args, io) {
    if (args.positionals.length === 0) throw new UsageError('missing OUTPUT (usage: kiln provenance list OUTPUT...)');
    return withStore(args, io.env, async (store) => {
      const sidecar = sidecarForStore(store.url, store, io.env);
      const results = [];
      for (const output of args.positionals) {
        const artifact = await resolveArtifact(output, store, io.signal);
        const envelopes: Listed[] = [];
        for (const digest of await listEnvelopes(artifact.digests, sidecar)) {
          const listed: Listed = { envelope: digest.toString(), keyIds: [] };
          try {
            const { envelope } = await readEnvelope(digest, store.blobService, { signal: io.signal });
            listed.keyIds = envelope.signatures.map((s) => s.keyid ?? '?');
            const statement = statementFromBytes(decodeDsseBase64(envelope.payload, 'payload'));
            const summary = summarizeStatement(statement);
            listed.predicateType = statement.predicateType;
            listed.kind = summary.kind;
            listed.runs = summary.runs;
          } catch (error) {
            listed.error = (error as Error).message;
          }
          envelopes.push(listed);
        }
        results.push({ output, digests: artifact.digests, envelopes });
      }
      if (args.values.json === true) {
        io.stdout.write(`${JSON.stringify(results)}\n`);
        return EXIT_OK;
      }
      for (const { output, digests, envelopes } of results) {
        io.stdout.write(`${output} (${formatDigestSet(digests)}): ${envelopes.length} statement${envelopes.length === 1 ? '' : 's'}\n`);
        for (const e of envelopes) {
          const kind = e.kind === 'other' ? e.predicateType : (e.kind ?? '?');
          const runs = (e.runs ?? [])
            .map((r) => `${r.builderId ?? '?'} ${r.backend ? `(${r.backend}) ` : ''}at ${r.finishedOn ?? '?'}`)
            .join(' + ');
          io.stdout.write(
            `  ${e.envelope} ${kind}${runs ? ` by ${runs}` : ''} keyid=${e.keyIds.join(',')}${e.error ? ` (unreadable: ${e.error})` : ''}\n`,
          );
        }
      }
      return EXIT_OK;
    });
  },
};

export const provenanceShow: CommandImplementation = {
  help: `usage: kiln provenance show DIGEST [--statement] [--store URL]

Prints the envelope stored as the blob DIGEST (blake3-…, from kiln provenance
list) as JSON, or with --statement its decoded payload, pretty-printed. Nothing
is verified (use kiln provenance verify).

options:
  --statement   print the in-toto statement instead of the envelope
${STORE_HELP}`,
  options: { ...STORE_OPTION, statement: { type: 'boolean' } },
  async run(args, io) {
    const [text] = expectPositionals(this, args, ['DIGEST']) as [string];
    const digest = B3Digest.parse(text);
    return withStore(args, io.env, async (store) => {
      const { envelope, bytes } = await readEnvelope(digest, store.blobService, { signal: io.signal });
      if (args.values.statement === true) {
        const statement = JSON.parse(Buffer.from(decodeDsseBase64(envelope.payload, 'payload')).toString('utf8'));
        io.stdout.write(`${JSON.stringify(statement, null, 2)}\n`);
      } else io.stdout.write(`${Buffer.from(bytes).toString('utf8').trim()}\n`);
      return EXIT_OK;
    });
  },
};
