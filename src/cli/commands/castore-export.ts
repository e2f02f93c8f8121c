/** `kiln castore export ENTRY DEST`: materialize a node from the castore. */
import { resolve } from 'node:path';
import { materialize } from '../../castore/index.js';
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION } from '../command.js';
import { resolveEntry, withStore } from '../store.js';

export const castoreExport: CommandImplementation = {
  help: `usage: kiln castore export ENTRY DEST [--store URL]

Materializes ENTRY at DEST (which must not exist), verifying every blob.
ENTRY is the proto3 JSON of a snix.castore.v1.Entry (as printed by
\`kiln castore import --json\`, inline or in a file) or a blake3-… directory
digest. From the embedded store, files are hardlinked or reflinked where the
filesystem allows instead of copied; exported files are read-only.

options:
${STORE_HELP}`,
  options: { ...STORE_OPTION },
  async run(args, io) {
    const [entryText, dest] = expectPositionals(this, args, ['ENTRY', 'DEST']) as [string, string];
    return withStore(args, io.env, async (store) => {
      const { node } = await resolveEntry(entryText, store);
      await materialize(node, resolve(dest), {
        blobService: store.blobService,
        directoryService: store.directoryService,
        signal: io.signal,
      });
      return 0;
    });
  },
};
