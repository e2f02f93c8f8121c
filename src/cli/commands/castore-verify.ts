/** `kiln castore verify`: re-hash everything in the embedded store. */
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION, UsageError } from '../command.js';
import { progressLine } from '../progress.js';
import { withStore } from '../store.js';

export const castoreVerify: CommandImplementation = {
  help: `usage: kiln castore verify [--store URL] [--json]

Re-hashes every blob and directory of the embedded store and checks that every
reference resolves. Prints one line per problem (kind and digest) and exits 1
if there is any, 0 when the store is clean.

options:
${STORE_HELP}
  --json        print {"blobs", "blobBytes", "directories", "problems": [{"kind", "digest", "detail"}]}`,
  options: { ...STORE_OPTION, json: { type: 'boolean' } },
  async run(args, io) {
    expectPositionals(this, args, []);
    return withStore(args, io.env, async (store) => {
      if (!store.verify)
        throw new UsageError(`castore verify needs a store that can list its contents (the embedded disk store), not ${store.url}`);
      const progress = progressLine(io.stderr);
      const report = await store.verify({
        signal: io.signal,
        onProgress: (p) =>
          progress.update(`verifying: ${p.blobs} blobs (${(p.blobBytes / 1e6).toFixed(1)} MB), ${p.directories} directories`),
      });
      progress.done();
      if (args.values.json) io.stdout.write(`${JSON.stringify(report)}\n`);
      else {
        for (const p of report.problems) io.stdout.write(`${p.kind} ${p.digest}: ${p.detail}\n`);
        io.stderr.write(
          `checked ${report.blobs} blobs (${report.blobBytes} bytes) and ${report.directories} directories: ${report.problems.length === 0 ? 'all good' : `${report.problems.length} problem(s)`}\n`,
        );
      }
      return report.problems.length === 0 ? 0 : 1;
    });
  },
};
