/** `kiln castore import PATH`: ingest a filesystem tree and print its root. */
import { basename, resolve } from 'node:path';
import { entryToJson, importPath } from '../../castore/index.js';
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION } from '../command.js';
import { formatNode } from '../format.js';
import { progressLine } from '../progress.js';
import { withStore } from '../store.js';

export const castoreImport: CommandImplementation = {
  help: `usage: kiln castore import PATH [--store URL] [--json]

Imports PATH (a file, directory or symlink; symlinks are not followed) into
the castore and prints its root node. Unchanged files are not re-read when the
store remembers them.

options:
${STORE_HELP}
  --json        print the root as the proto3 JSON of snix.castore.v1.Entry
                (name = basename of PATH)`,
  options: { ...STORE_OPTION, json: { type: 'boolean' } },
  async run(args, io) {
    const [path] = expectPositionals(this, args, ['PATH']) as [string];
    return withStore(args, io.env, async (store) => {
      const progress = progressLine(io.stderr);
      const result = await importPath(resolve(path), {
        blobService: store.blobService,
        directoryService: store.directoryService,
        fileDigestCache: store.fileDigestCache,
        signal: io.signal,
        onProgress: (p) => progress.update(`importing: ${p.files} files, ${(p.bytes / 1e6).toFixed(1)} MB`),
      });
      progress.done();
      const name = Buffer.from(basename(resolve(path)));
      io.stdout.write(args.values.json ? `${entryToJson(name, result.node)}\n` : `${formatNode(result.node)}\n`);
      return 0;
    });
  },
};
