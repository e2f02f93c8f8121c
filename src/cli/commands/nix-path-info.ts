/** `kiln nix path-info STOREPATH`: what Kiln records about a store path. */

import { parseAbsoluteStorePath } from '../../nix/index.js';
import { NixBridgeError, pathInfoToJson } from '../../nix-bridge/index.js';
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION } from '../command.js';
import { EXIT_OK } from '../exit-codes.js';
import { formatNode } from '../format.js';
import { withNixExitStatus, withNixStore } from './nix-common.js';

export const nixPathInfo: CommandImplementation = {
  help: `usage: kiln nix path-info STOREPATH [--store URL] [--json]

Prints what Kiln's path-info index records about STOREPATH: its NAR hash
(sha256, nixbase32) and size, references, deriver, content address (for
fixed outputs and sources) and castore node. With --json, one object:
{"path", "narHash", "narSize", "references", "deriver"?, "ca"?, "entry"}, where
entry is the proto3 JSON of the snix.castore.v1.Entry. Exit status 1 when
Kiln does not hold STOREPATH, 2 when it is not a valid store path.

options:
${STORE_HELP}
  --json          print the record as JSON`,
  options: { ...STORE_OPTION, json: { type: 'boolean' } },
  async run(args, io) {
    const [pathArg] = expectPositionals(this, args, ['STOREPATH']) as [string];
    return withNixExitStatus(io, async () => {
      const storePath = parseAbsoluteStorePath(pathArg).toAbsolute();
      return withNixStore(args, io.env, async (_store, pathInfos) => {
        const info = await pathInfos.get(storePath);
        if (!info) throw new NixBridgeError('NOT_FOUND', `${storePath} is not in Kiln's path-info index`, { details: { path: storePath } });
        const json = pathInfoToJson(info);
        if (args.values.json === true) {
          io.stdout.write(`${JSON.stringify(json)}\n`);
          return EXIT_OK;
        }
        const lines = [
          json.path,
          `  narHash     ${json.narHash}`,
          `  narSize     ${json.narSize}`,
          `  references  ${json.references.length === 0 ? '(none)' : json.references.join('\n              ')}`,
          ...(json.deriver ? [`  deriver     ${json.deriver}`] : []),
          ...(json.ca ? [`  ca          ${json.ca}`] : []),
          `  castore     ${formatNode(info.node)}`,
        ];
        io.stdout.write(`${lines.join('\n')}\n`);
        return EXIT_OK;
      });
    });
  },
};
