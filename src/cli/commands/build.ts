/** `kiln build REQUEST.json`: run a BuildRequest on a builder, streaming its logs. */
import { mkdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import {
  type BuildEvent,
  type BuildInput,
  type BuildRequest,
  type BuildResponse,
  type BuildService,
  buildRequestFromJson,
  buildResponseToJson,
  buildServiceFromUrls,
  DEFAULT_SANDBOX_DIR,
  defaultBuilderUrl,
  validateBuildRequest,
} from '../../build/index.js';
import { type Castore, type CastoreServices, copyClosure, importPath, materialize, parsePathComponent } from '../../castore/index.js';
import { compareBytes } from '../../common/encoding.js';
import { ATTESTATION_HELP, ATTESTATION_OPTIONS, BuildAttestation } from '../build-provenance.js';
import { BuildStatus, formatBytes, formatSeconds } from '../build-status.js';
import {
  type CommandImplementation,
  type CommandIo,
  expectPositionals,
  STORE_HELP,
  STORE_OPTION,
  stringOption,
  UsageError,
} from '../command.js';
import { EXIT_FAILURE, EXIT_INTERRUPTED } from '../exit-codes.js';
import { formatNode } from '../format.js';
import { withStore } from '../store.js';

/** Short options that become parameters of the builder URL, by option name. */
const LIMIT_OPTIONS = ['timeout', 'silence-timeout', 'memory', 'concurrency'] as const;

/**
 * The builder URL with the short limit options appended as parameters; a
 * limit given both ways is a usage error.
 */
export function builderUrlWithLimits(base: string, limits: Partial<Record<(typeof LIMIT_OPTIONS)[number], string>>): string {
  const given = LIMIT_OPTIONS.filter((name) => limits[name] !== undefined);
  if (given.length === 0) return base;
  let url: URL;
  try {
    url = new URL(base);
  } catch (error) {
    throw new UsageError(`invalid --builder ${base}: ${(error as Error).message}`);
  }
  for (const name of given) {
    if (url.searchParams.has(name))
      throw new UsageError(`--${name} given twice: as an option and as the parameter ${name}= of the builder URL ${base}`);
    url.searchParams.append(name, limits[name] as string);
  }
  return url.href;
}

/**
 * The builder URLs with the limit options applied: to a single local
 * builder only (a remote builder's limits are set where it is served).
 */
export function builderUrlsWithLimits(urls: readonly string[], limits: Partial<Record<(typeof LIMIT_OPTIONS)[number], string>>): string[] {
  const given = LIMIT_OPTIONS.filter((name) => limits[name] !== undefined);
  if (given.length === 0) return [...urls];
  const remote = urls.find((url) => url.startsWith('grpc+'));
  if (remote)
    throw new UsageError(
      `--${given[0]} applies to local builders only; a remote builder's limits are set where it is served (kiln serve --builder 'bwrap://?${given[0]}=…'), not by ${remote}`,
    );
  if (urls.length > 1) throw new UsageError('several --builder URLs are remote builders only');
  return [builderUrlWithLimits(urls[0] as string, limits)];
}

export const build: CommandImplementation = {
  help: `usage: kiln build REQUEST.json [--builder URL]... [--store URL] [--input NAME=PATH]...
                  [--timeout DURATION] [--silence-timeout DURATION] [--memory SIZE]
                  [--concurrency N] [--json] [--export DIR] [--fetch]

Runs the build REQUEST.json describes (the proto3 JSON of snix.build.v1.BuildRequest)
and stores its outputs in the castore. stderr shows the build id (the request
digest) and backend, then the build's stdout and stderr live; on a terminal, a
status line below them. stdout gets one line per output (or the BuildResponse
with --json). Ctrl-C kills the sandbox and removes everything it left.

Exit status: 0 built; 1 the build ran and failed (the message says why: exit
code, signal, missing output, timeout, out of memory…) or the builder could
not run it; 2 invalid request (the field is named), a request this builder
rejects (constraints), or usage; 130 interrupted (SIGINT/SIGTERM).

options:
  --builder URL      where to build (default: bwrap:// when bubblewrap is installed,
                     else oci://?runtime=runc):
                       bwrap://[/SANDBOX_DIR]           bubblewrap, as unprivileged build users
                       oci://[/BUNDLE_ROOT]?runtime=R   an OCI runtime, R = runc (default) or crun
                       dummy://                         fails every build (for wiring tests)
                       grpc+unix:///path.sock, grpc+http://HOST:PORT, grpc+https://HOST:PORT
                                                        a remote Kiln server (kiln serve): inputs it
                                                        lacks are uploaded from the store, its logs
                                                        are shown live, outputs stay in its castore
                     URL parameters (bwrap and oci):
                       concurrency=N         builds at once (default: number of cores)
                       timeout=DURATION      wall-clock limit (e.g. 500ms, 90s, 2m, 1h; default none)
                       silence-timeout=DURATION  kill a build silent this long (default none)
                       memory=SIZE           memory limit (e.g. 512M, 2G; bytes without suffix;
                                             default none)
                       pids=N                process limit (default 1024)
                       sandbox-dir=PATH      oci only: build dirs and the inputs cache
                     URL parameters (grpc+…):
                       token-file=FILE       the bearer token (default: $KILN_TOKEN)
                       ca-file=FILE          CA certificates to trust (grpc+https; default: the
                                             system's roots)
                       cert-file=FILE&key-file=FILE  a client certificate (mutual TLS)
                     SANDBOX_DIR defaults to ${DEFAULT_SANDBOX_DIR}; build users must be able to
                     traverse its parents (not under a 0700 dir such as /root).
                     Repeat --builder to give several remote builders: each build goes to the
                     least loaded one that meets its constraints, the next when one is
                     unreachable or full before the build starts.
  --timeout DURATION, --silence-timeout DURATION, --memory SIZE, --concurrency N
                     the same as the URL parameters (appended to the builder URL;
                     giving one both ways is a usage error; local builders only)
${STORE_HELP}
  --input NAME=PATH  import PATH and add it as input NAME (repeatable; kept sorted)
  --json             print the BuildResponse as proto3 JSON on stdout
  --export DIR       also write each output to DIR/<basename of its path> (from the
                     remote builder's castore for a remote build)
  --fetch            copy the outputs (their whole closure) of a remote build into the store

${ATTESTATION_HELP}`,
  options: {
    ...STORE_OPTION,
    builder: { type: 'string', multiple: true },
    fetch: { type: 'boolean' },
    input: { type: 'string', multiple: true },
    json: { type: 'boolean' },
    export: { type: 'string' },
    ...Object.fromEntries(LIMIT_OPTIONS.map((name) => [name, { type: 'string' } as const])),
    ...ATTESTATION_OPTIONS,
  },
  async run(args, io) {
    const [requestPath] = expectPositionals(this, args, ['REQUEST.json']) as [string];
    const builderUrls = builderUrlsWithLimits(
      (args.values.builder as string[] | undefined) ?? [defaultBuilderUrl()],
      Object.fromEntries(
        LIMIT_OPTIONS.flatMap((name) => (stringOption(args, name) === undefined ? [] : [[name, stringOption(args, name)]])),
      ),
    );
    const inputSpecs = ((args.values.input as string[] | undefined) ?? []).map((spec) => {
      const at = spec.indexOf('=');
      if (at <= 0 || at === spec.length - 1) throw new UsageError(`invalid --input ${JSON.stringify(spec)}: expected NAME=PATH`);
      return { name: parsePathComponent(spec.slice(0, at)), path: resolve(spec.slice(at + 1)) };
    });
    let text: string;
    try {
      text = await readFile(requestPath, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read ${requestPath}: ${(error as Error).message}`);
    }
    const parsed = buildRequestFromJson(text);
    return withStore(args, io.env, async (store) => {
      const builder = await buildServiceFromUrls(builderUrls, store, io.env);
      try {
        const extraInputs: BuildInput[] = [];
        for (const { name, path } of inputSpecs) {
          const { node } = await importPath(path, {
            blobService: store.blobService,
            directoryService: store.directoryService,
            fileDigestCache: store.fileDigestCache,
            signal: io.signal,
          });
          extraInputs.push({ name, node });
        }
        const request = validateBuildRequest({
          ...parsed,
          inputs: [...parsed.inputs, ...extraInputs].sort((a, b) => compareBytes(a.name, b.name)),
        });
        const attestation = await BuildAttestation.open(args, io, store, builderUrls);
        const cached = await attestation.lookup(request);
        if (cached) {
          await writeResult(request, cached.response, store, args.values.json === true, stringOption(args, 'export'), io);
          return await attestation.finish(request, cached);
        }
        const status = new BuildStatus(io.stderr);
        let outcome: Extract<BuildEvent, { type: 'finished' | 'failed' }> | undefined;
        let invocationId = '';
        try {
          for await (const event of attestation.watch(builder.build(request, { signal: io.signal }))) {
            if (event.type === 'accepted') {
              invocationId = event.invocationId;
              status.accepted(event.buildId, event.backend);
            } else if (event.type === 'started') status.started();
            else if (event.type === 'log') status.log(event.data);
            else if (event.type === 'resources') status.resources(event.cpuTimeMs, event.peakMemoryBytes);
            else if (event.type === 'output-ingested') status.ingesting();
            else outcome = event;
          }
          if (!outcome) throw new Error('the builder ended without a result');
          if (outcome.type === 'failed') {
            if (io.signal.aborted) {
              status.note('error: interrupted');
              return EXIT_INTERRUPTED;
            }
            status.note(`error: build failed (${outcome.reason}): ${outcome.message}`);
            return EXIT_FAILURE;
          }
          status.note(
            `kiln: built in ${formatSeconds(outcome.wallTimeMs)} (cpu ${formatSeconds(outcome.cpuTimeMs)}, peak memory ${formatBytes(outcome.peakMemoryBytes)})`,
          );
        } finally {
          status.close();
        }
        const remote = builderUrls.some((url) => url.startsWith('grpc+'));
        const outputs = await outputsStore(builder, remote, invocationId, outcome.response, store, args.values.fetch === true, io);
        await writeResult(request, outcome.response, outputs, args.values.json === true, stringOption(args, 'export'), io);
        return await attestation.finish(request, outcome, outputs);
      } finally {
        await builder.close();
      }
    });
  },
};

/**
 * Where the outputs are to be read from: the store for a local build; for a
 * remote one, the server's castore, or the store once `fetch` has copied
 * their closures into it.
 */
async function outputsStore(
  builder: BuildService,
  remoteBuilder: boolean,
  invocationId: string,
  response: BuildResponse,
  store: Castore,
  fetch: boolean,
  io: CommandIo,
): Promise<CastoreServices> {
  if (!remoteBuilder) {
    if (fetch) io.stderr.write('kiln: --fetch: the outputs of a local build are in the store already\n');
    return store;
  }
  const { remoteCastoreOf } = await import('../../build/grpc/index.js');
  const remote = await remoteCastoreOf(builder, invocationId);
  if (!remote) return store;
  if (!fetch) return remote;
  const copied = await copyClosure(
    response.outputs.map((o) => o.node),
    remote,
    store,
    { signal: io.signal },
  );
  io.stderr.write(
    `kiln: fetched the outputs into ${store.url}: ${copied.blobsSent} blob(s) (${formatBytes(copied.bytesSent)}), ${copied.directoriesSent} director${copied.directoriesSent === 1 ? 'y' : 'ies'}\n`,
  );
  return store;
}

async function writeResult(
  request: BuildRequest,
  response: BuildResponse,
  store: CastoreServices,
  json: boolean,
  exportDir: string | undefined,
  io: CommandIo,
): Promise<void> {
  if (exportDir) {
    await mkdir(resolve(exportDir), { recursive: true });
    for (const [i, output] of response.outputs.entries()) {
      await materialize(output.node, join(resolve(exportDir), basename(request.outputs[i] as string)), {
        blobService: store.blobService,
        directoryService: store.directoryService,
        signal: io.signal,
      });
    }
  }
  if (json) {
    io.stdout.write(`${buildResponseToJson(response)}\n`);
    return;
  }
  for (const [i, output] of response.outputs.entries()) {
    const refs = output.needles.map((n) => request.refscanNeedles[n]).join(' ');
    io.stdout.write(`${request.outputs[i]}: ${formatNode(output.node)}${refs ? ` references: ${refs}` : ''}\n`);
  }
}
