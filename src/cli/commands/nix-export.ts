/** `kiln nix export STOREPATH DEST`: write a store path Kiln holds out as files. */
import { resolve } from 'node:path';
import { materialize } from '../../castore/index.js';
import { parseAbsoluteStorePath } from '../../nix/index.js';
import { NixBridgeError } from '../../nix-bridge/index.js';
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION } from '../command.js';
import { EXIT_OK } from '../exit-codes.js';
import { withNixExitStatus, withNixStore } from './nix-common.js';

export const nixExport: CommandImplementation = {
  help: `usage: kiln nix export STOREPATH DEST [--store URL]

Materializes the contents of STOREPATH (a /nix/store path in Kiln's path-info
index: a build output or an imported source) at DEST, which must not exist,
verifying every blob. Files are read-only; from the embedded store they are
hardlinked or reflinked where the filesystem allows. Exit status 1 when Kiln
does not hold STOREPATH, 2 when it is not a valid store path.

options:
${STORE_HELP}`,
  options: { ...STORE_OPTION },
  async run(args, io) {
    const [pathArg, dest] = expectPositionals(this, args, ['STOREPATH', 'DEST']) as [string, string];
    return withNixExitStatus(io, async () => {
      const storePath = parseAbsoluteStorePath(pathArg).toAbsolute();
      return withNixStore(args, io.env, async (store, pathInfos) => {
        const info = await pathInfos.get(storePath);
        if (!info) throw new NixBridgeError('NOT_FOUND', `${storePath} is not in Kiln's path-info index`, { details: { path: storePath } });
        await materialize(info.node, resolve(dest), {
          blobService: store.blobService,
          directoryService: store.directoryService,
          signal: io.signal,
        });
        return EXIT_OK;
      });
    });
  },
};
