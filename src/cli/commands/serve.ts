/** `kiln serve`: expose a store and a builder over gRPC. */
import { readFile, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import {
  type BuildService,
  buildRequestDigest,
  buildServiceFromUrl,
  defaultBuilderUrl,
  isBuildError,
  sandboxDirOfBuilderUrl,
} from '../../build/index.js';
import { kilnHome } from '../../castore/index.js';
import { SigningBuildService, sidecarForStore } from '../../provenance/index.js';
import { checkBuilderId, defaultBuilderId, internalParameters, loadSigningKey } from '../build-provenance.js';
import {
  type CommandImplementation,
  expectPositionals,
  type ParsedArgs,
  STORE_HELP,
  STORE_OPTION,
  stringOption,
  UsageError,
} from '../command.js';
import { EXIT_OK } from '../exit-codes.js';
import { openStore } from '../store.js';

/** How long running builds may go on after SIGTERM/SIGINT, by default. */
export const DEFAULT_DRAIN_TIMEOUT = '30s';
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function parseDuration(option: string, value: string): number {
  const match = /^(0|[1-9][0-9]*)(ms|s|m|h)$/.exec(value);
  if (!match) throw new UsageError(`invalid --${option} ${JSON.stringify(value)}: expected a duration such as 500ms, 30s, 2m or 1h`);
  return Number(match[1]) * (DURATION_UNITS[match[2] as string] as number);
}

/** Whether a TCP listen host only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

async function readOptionFile(args: ParsedArgs, option: string): Promise<string | undefined> {
  const path = stringOption(args, option);
  if (path === undefined) return undefined;
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read --${option} ${path}: ${(error as Error).message}`);
  }
}

export const serve: CommandImplementation = {
  help: `usage: kiln serve --listen unix:///path.sock|HOST:PORT [--store URL] [--builder URL]
                  [--token-file FILE] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
                  [--insecure] [--drain-timeout DURATION] [--max-builds N]
                  [--sign-key FILE [--builder-id URI]]

Serves, on one listener until SIGTERM/SIGINT: snix.castore.v1.BlobService and
DirectoryService for the store; snix.build.v1.BuildService (DoBuild) and
kiln.build.v1.BuildEvents (streamed events, re-attach, cancel) running builds on
the builder, reading their inputs from the store and storing their outputs there;
and grpc.health.v1.Health. Prints the bound address (useful with port 0) on
stdout once listening.

A build is refused at once with FAILED_PRECONDITION when the builder cannot meet
its constraints or the store lacks part of its input closure (the missing digests
are named), and with RESOURCE_EXHAUSTED when --max-builds builds are already
running or queued. On SIGTERM or SIGINT the server stops taking builds, lets the
running ones finish for up to --drain-timeout, cancels the rest, then exits 0.

options:
  --listen ADDR            unix:///absolute/path.sock, or HOST:PORT (e.g. 127.0.0.1:0)
${STORE_HELP}
  --builder URL            where builds run (default: bwrap:// when bubblewrap is installed,
                           else oci://?runtime=runc; see kiln build --help); builds are not
                           served when the default builder cannot run here
  --token-file FILE        require "authorization: Bearer <token>" on every call, the token
                           being FILE's content (trimmed); otherwise UNAUTHENTICATED
  --tls-cert FILE, --tls-key FILE
                           serve TLS (grpc+https) with this PEM certificate chain and key
  --tls-client-ca FILE     mutual TLS: clients must present a certificate this CA signed
  --insecure               allow a TCP address other than loopback without a token or TLS
  --drain-timeout DURATION how long running builds may go on after SIGTERM/SIGINT
                           (default ${DEFAULT_DRAIN_TIMEOUT}; e.g. 500ms, 90s, 2m)
  --max-builds N           builds accepted at once, running or queued (default 64)
  --sign-key FILE          sign the SLSA provenance of every successful build with this
                           Ed25519 key (kiln key generate), store it in the store next to the
                           outputs, and send it to the client with the result (kiln build
                           --builder grpc+… --provenance OUT writes it)
  --builder-id URI         runDetails.builder.id of those statements (default:
                           $KILN_BUILDER_ID, else urn:kiln:builder:<hostname>:<backend>)

Journals of build events go under $KILN_HOME/journals.`,
  options: {
    ...STORE_OPTION,
    listen: { type: 'string' },
    builder: { type: 'string' },
    'token-file': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-client-ca': { type: 'string' },
    insecure: { type: 'boolean' },
    'drain-timeout': { type: 'string' },
    'max-builds': { type: 'string' },
    'sign-key': { type: 'string' },
    'builder-id': { type: 'string' },
  },
  async run(args, io) {
    expectPositionals(this, args, []);
    const listen = stringOption(args, 'listen');
    if (!listen) throw new UsageError('missing --listen unix:///path.sock|HOST:PORT');
    const grpc = await import('../../build/grpc/index.js');
    const { parseListenAddress } = await import('../../castore/grpc/index.js');
    const address = parseListenAddress(listen);
    const drainMs = parseDuration('drain-timeout', stringOption(args, 'drain-timeout') ?? DEFAULT_DRAIN_TIMEOUT);
    const maxBuilds = stringOption(args, 'max-builds');
    if (maxBuilds !== undefined && !/^[1-9][0-9]*$/.test(maxBuilds))
      throw new UsageError(`invalid --max-builds ${JSON.stringify(maxBuilds)}: expected a positive integer`);

    const token = (await readOptionFile(args, 'token-file'))?.trim();
    if (token === '') throw new UsageError(`--token-file ${stringOption(args, 'token-file')} is empty`);
    const cert = await readOptionFile(args, 'tls-cert');
    const key = await readOptionFile(args, 'tls-key');
    const clientCa = await readOptionFile(args, 'tls-client-ca');
    if ((cert === undefined) !== (key === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
    if (clientCa !== undefined && cert === undefined) throw new UsageError('--tls-client-ca needs --tls-cert and --tls-key');
    if (cert !== undefined && address.kind === 'unix') throw new UsageError('TLS needs a TCP --listen address (HOST:PORT)');
    if (address.kind === 'tcp' && !isLoopbackHost(address.host) && token === undefined && cert === undefined && !args.values.insecure)
      throw new UsageError(
        `refusing to serve on ${listen}, which is not a loopback address, without --token-file or TLS (--tls-cert/--tls-key); pass --insecure to do it anyway`,
      );

    const signKeyPath = stringOption(args, 'sign-key');
    const builderId = stringOption(args, 'builder-id') ?? (io.env.KILN_BUILDER_ID || undefined);
    if (stringOption(args, 'builder-id') !== undefined && signKeyPath === undefined)
      throw new UsageError('--builder-id needs --sign-key FILE');
    checkBuilderId(stringOption(args, 'builder-id'));
    const signingKey = signKeyPath !== undefined ? await loadSigningKey(signKeyPath) : undefined;

    const store = await openStore(args, io.env);
    let builder: BuildService | undefined;
    try {
      const builderUrl = stringOption(args, 'builder') ?? defaultBuilderUrl();
      try {
        builder = await buildServiceFromUrl(builderUrl, store, io.env);
        if (signingKey) {
          builder = new SigningBuildService(builder, {
            key: signingKey,
            castore: store,
            sidecar: sidecarForStore(store.url, store, io.env),
            builderId: (backend) => builderId ?? defaultBuilderId([builderUrl], backend),
            internalParameters: (backend) => internalParameters([builderUrl], backend),
            onError: (error, request) =>
              io.stderr.write(`kiln: build ${buildRequestDigest(request)} finished but its provenance was not signed: ${error.message}\n`),
          });
          io.stderr.write(`kiln: signing the provenance of builds with key ${signingKey.keyId}\n`);
        }
      } catch (error) {
        if (stringOption(args, 'builder') !== undefined || !isBuildError(error, 'SANDBOX_UNAVAILABLE')) throw error;
        io.stderr.write(`kiln: not serving builds: ${(error as Error).message}\n`);
      }
      const journalRoot = join(kilnHome(io.env), 'journals');
      const journalDir = join(journalRoot, String(process.pid));
      if (builder) {
        // A server of ours that was killed may have left sandboxes behind.
        const sandboxDir = sandboxDirOfBuilderUrl(builderUrl);
        const swept = await grpc.sweepAbandonedBuilds({ journalRoot, ...(sandboxDir ? { sandboxDir } : {}) });
        if (swept.buildDirs.length > 0 || swept.invocations.length > 0)
          io.stderr.write(
            `kiln: cleaned up after a server that did not shut down: ${swept.invocations.length} build(s), ${swept.buildDirs.length} build dir(s)\n`,
          );
      }
      const server = await grpc.startKilnServer({
        listen,
        blobService: store.blobService,
        directoryService: store.directoryService,
        ...(builder ? { builder, journalDir } : {}),
        ...(token !== undefined ? { token } : {}),
        ...(cert !== undefined && key !== undefined ? { tls: { cert, key, ...(clientCa !== undefined ? { clientCa } : {}) } } : {}),
        ...(maxBuilds !== undefined ? { maxInFlight: Number(maxBuilds) } : {}),
      });
      io.stdout.write(`listening on ${server.address}\n`);
      await new Promise<void>((resolve) => {
        if (io.signal.aborted) resolve();
        io.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      const running = server.builds?.invocations.inFlight ?? 0;
      io.stderr.write(
        running > 0
          ? `kiln: shutting down: letting ${running} running build(s) finish for up to ${drainMs < 1000 ? `${drainMs} ms` : `${drainMs / 1000} s`}\n`
          : 'kiln: shutting down\n',
      );
      await server.shutdown(drainMs);
      if (builder) await rm(journalDir, { recursive: true, force: true });
      return EXIT_OK;
    } finally {
      await builder?.close();
      await store.close();
    }
  },
};
