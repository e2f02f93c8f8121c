/** `kiln nix show DRV`: the BuildRequest a Nix derivation becomes. */
import { buildRequestToJson } from '../../build/index.js';
import { NixBuilder } from '../../nix-bridge/index.js';
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION } from '../command.js';
import { EXIT_OK } from '../exit-codes.js';
import { localNixStore, NIX_STORE_HELP, withNixExitStatus, withNixStore } from './nix-common.js';

export const nixShow: CommandImplementation = {
  help: `usage: kiln nix show DRV [--store URL]

Prints the snix.build.v1.BuildRequest (proto3 JSON) that \`kiln nix build\`
sends a builder for DRV: its input closure as castore entries, the command,
the environment Nix's sandbox sets, passAsFile and structured-attrs files,
constraints and reference needles. Input sources are imported into the
castore (not recorded); the outputs of input derivations must already be
built (exit status 1 names the first one that is not).

options:
${STORE_HELP}
${NIX_STORE_HELP}`,
  options: { ...STORE_OPTION },
  async run(args, io) {
    const [drvArg] = expectPositionals(this, args, ['DRV']) as [string];
    return withNixExitStatus(io, async () => {
      const nixStore = localNixStore(io.env);
      const drvPath = nixStore.resolveDerivationArgument(drvArg);
      return withNixStore(args, io.env, async (store, pathInfoService) => {
        const builder = new NixBuilder({
          buildService: { name: 'none', build: () => (async function* () {})(), close: async () => {} },
          blobService: store.blobService,
          directoryService: store.directoryService,
          ...(store.fileDigestCache ? { fileDigestCache: store.fileDigestCache } : {}),
          pathInfoService,
          nixStore,
          impureEnv: io.env,
        });
        const { built } = await builder.prepare(drvPath, { signal: io.signal });
        io.stdout.write(`${buildRequestToJson(built.request)}\n`);
        return EXIT_OK;
      });
    });
  },
};
