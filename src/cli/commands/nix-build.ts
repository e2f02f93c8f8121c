/** `kiln nix build DRV`: realise a Nix derivation on a Kiln builder, its missing inputs first. */
import { buildServiceFromUrl, defaultBuilderUrl } from '../../build/index.js';
import { formatNarHash, type NixBuildEvent, NixBuilder, type PathInfo } from '../../nix-bridge/index.js';
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION, stringOption, UsageError } from '../command.js';
import { NIX_ATTESTATION_HELP, NIX_ATTESTATION_OPTIONS, NixAttestation } from '../nix-build-provenance.js';
import { localNixStore, NIX_STORE_HELP, withNixExitStatus, withNixStore } from './nix-common.js';

export const nixBuild: CommandImplementation = {
  help: `usage: kiln nix build DRV [--builder URL] [--store URL] [--json] [-j N]

Builds the Nix derivation DRV (a .drv path in the Nix store, or a file named
<hash>-<name>.drv elsewhere, whose directory is then searched for the input
derivations first) in a Kiln sandbox, with the environment Nix's sandbox
gives a builder, and records each output's store path, NAR hash and size,
references and deriver in Kiln's path-info index. Input sources are imported
from the local Nix store; input derivations whose outputs Kiln does not hold
are built first, in dependency order, up to N at a time. Outputs already held
are not rebuilt.

stderr: "building '<drv>'..." per derivation, then its log (prefixed with the
derivation's name when several run at once). stdout: the output paths, one per
line, or with --json {"outputs": {"<name>": {"path", "narHash", "narSize",
"references"}}} for DRV.

Exit status: 0 built (or already held); 1 a build failed (the derivation and
reason are named: exit status, missing output, fixed-output hash mismatch
naming both hashes, …), an input source is missing, or the builder could not
run it; 2 a malformed or truncated .drv, a store path with a bad hash part, a
.drv that is not what its path says, a derivation refused before building
(builtin builder, __noChroot, required system features), or usage; 130
interrupted.

options:
  --builder URL   where to build (default: bwrap:// when bubblewrap is installed,
                  else oci://?runtime=runc; see kiln build --help)
${STORE_HELP}
  --json          print the outputs of DRV as JSON
  -j, --jobs N    derivations built at once (default 1)
${NIX_STORE_HELP}

${NIX_ATTESTATION_HELP}`,
  options: {
    ...STORE_OPTION,
    builder: { type: 'string' },
    json: { type: 'boolean' },
    jobs: { type: 'string', short: 'j' },
    ...NIX_ATTESTATION_OPTIONS,
  },
  async run(args, io) {
    const [drvArg] = expectPositionals(this, args, ['DRV']) as [string];
    const jobsText = stringOption(args, 'jobs') ?? '1';
    if (!/^[1-9][0-9]*$/.test(jobsText)) throw new UsageError(`invalid -j ${JSON.stringify(jobsText)}: expected a positive integer`);
    const jobs = Number(jobsText);
    const builderUrl = stringOption(args, 'builder') ?? defaultBuilderUrl();
    return withNixExitStatus(io, async () => {
      const nixStore = localNixStore(io.env);
      const drvPath = nixStore.resolveDerivationArgument(drvArg);
      return withNixStore(args, io.env, async (store, pathInfoService) => {
        const attestation = await NixAttestation.open(args, io, store, builderUrl);
        const buildService = await buildServiceFromUrl(builderUrl, store);
        const log = new BuildLog(io.stderr, jobs > 1);
        try {
          const builder = new NixBuilder({
            buildService: attestation.wrap(buildService),
            blobService: store.blobService,
            directoryService: store.directoryService,
            ...(store.fileDigestCache ? { fileDigestCache: store.fileDigestCache } : {}),
            pathInfoService,
            nixStore,
            jobs,
            impureEnv: io.env,
            onEvent: (event) => log.event(event),
          });
          const outputs = await builder.realise(drvPath, { signal: io.signal });
          log.flush();
          if (args.values.json === true) {
            io.stdout.write(
              `${JSON.stringify({ outputs: Object.fromEntries([...outputs].map(([name, info]) => [name, outputJson(info)])) })}\n`,
            );
          } else {
            for (const info of outputs.values()) io.stdout.write(`${info.storePath.toAbsolute()}\n`);
          }
          return await attestation.finish(builder, drvPath, outputs);
        } finally {
          log.flush();
          await buildService.close();
        }
      });
    });
  },
};

function outputJson(info: PathInfo) {
  return {
    path: info.storePath.toAbsolute(),
    narHash: formatNarHash(info.narHash),
    narSize: info.narSize,
    references: [...info.references],
  };
}

/** Writes build progress and logs to stderr; with several builds at once, each log line is prefixed with its derivation's name. */
class BuildLog {
  readonly #stream: NodeJS.WritableStream;
  readonly #prefix: boolean;
  readonly #partial = new Map<string, string>();

  constructor(stream: NodeJS.WritableStream, prefix: boolean) {
    this.#stream = stream;
    this.#prefix = prefix;
  }

  event(event: NixBuildEvent): void {
    switch (event.type) {
      case 'planned':
        if (event.drvPaths.length > 1) {
          this.#stream.write(
            `these ${event.drvPaths.length} derivations will be built:\n${event.drvPaths.map((p) => `  ${p}\n`).join('')}`,
          );
        }
        break;
      case 'started':
        this.#stream.write(`building '${event.drvPath}' on ${event.backend}...\n`);
        break;
      case 'log':
        this.#log(event.drvPath, event.data);
        break;
      case 'built':
        this.#end(event.drvPath);
        break;
      case 'failed':
        this.#end(event.drvPath);
        break;
      default:
        break;
    }
  }

  #log(drvPath: string, data: Uint8Array): void {
    if (!this.#prefix) {
      this.#stream.write(data);
      return;
    }
    const name = drvPath.slice(drvPath.indexOf('-') + 1, -'.drv'.length);
    const text = (this.#partial.get(drvPath) ?? '') + Buffer.from(data).toString('latin1');
    const lines = text.split('\n');
    this.#partial.set(drvPath, lines.pop() as string);
    for (const line of lines) this.#stream.write(Buffer.from(`${name}> ${line}\n`, 'latin1'));
  }

  #end(drvPath: string): void {
    const rest = this.#partial.get(drvPath);
    this.#partial.delete(drvPath);
    if (rest) this.#log(drvPath, Buffer.from(`${rest}\n`, 'latin1'));
  }

  flush(): void {
    for (const drvPath of [...this.#partial.keys()]) this.#end(drvPath);
  }
}
