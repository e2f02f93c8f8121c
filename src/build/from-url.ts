/**
 * Composition by URL for builders, the one place besides the CLI and tests
 * that names backends:
 *
 * - `dummy://`: fails every build; for wiring tests.
 * - `bwrap://[/SANDBOX_DIR]`: bubblewrap; the path, if any, is the sandbox
 *   directory (build roots and the inputs cache).
 * - `oci://[/BUNDLE_ROOT]?runtime=runc|crun`: an OCI runtime (default runc);
 *   the path, if any, is where bundles are written.
 * - `grpc+unix:///path.sock`, `grpc+http://host:port`,
 *   `grpc+https://host:port`: a remote Kiln server, with its bearer token
 *   from `?token-file=PATH` or `$KILN_TOKEN`; for TLS, `ca-file=PATH` (CA
 *   certificates to trust) and `cert-file=PATH&key-file=PATH` (a client
 *   certificate for mutual TLS).
 *
 * Parameters every local sandbox takes (all optional):
 * `concurrency=N` (default: cores), `timeout=DURATION`,
 * `silence-timeout=DURATION` (e.g. `90s`, `500ms`, `2m`, `1h`),
 * `memory=SIZE` (e.g. `512M`, `2G`; bytes without a suffix), `pids=N`
 * (default 1024), `sandbox-dir=PATH` (oci only; bwrap takes it as the path).
 * `defaultBuilderUrl()` picks bwrap when it is installed, else runc.
 */
import { readFile } from 'node:fs/promises';
import type { BlobService, DirectoryService } from '../castore/index.js';
import type { BuildService } from './build-service.js';
import { BwrapBuildService } from './bwrap/bwrap-build-service.js';
import { DummyBuildService } from './dummy.js';
import { BuildError } from './errors.js';
import { OciBuildService } from './oci/oci-build-service.js';
import { findExecutable } from './sandbox/find-executable.js';
import { DEFAULT_SANDBOX_DIR, type LocalSandboxOptions } from './sandbox/local-sandbox-service.js';
import { parseDuration, parseSize } from './units.js';

export interface BuilderDependencies {
  blobService: BlobService;
  directoryService: DirectoryService;
}

/** bwrap:// when bubblewrap is installed, else oci://?runtime=runc. */
export function defaultBuilderUrl(): string {
  return findExecutable('bwrap') || !findExecutable('runc') ? 'bwrap://' : 'oci://?runtime=runc';
}

function invalid(url: string, why: string): BuildError {
  return new BuildError('INVALID_REQUEST', `invalid builder URL ${url}: ${why}`, { details: { field: 'builder' } });
}

/** Parses the local sandbox parameters of `url`, rejecting unknown ones. */
function sandboxOptions(url: string, params: URLSearchParams, extra: readonly string[]): Partial<LocalSandboxOptions> {
  const known = ['concurrency', 'timeout', 'silence-timeout', 'memory', 'pids', ...extra];
  for (const key of params.keys()) if (!known.includes(key)) throw invalid(url, `unknown parameter ${key} (known: ${known.join(', ')})`);
  const count = (name: string) => {
    const value = params.get(name);
    if (value === null) return undefined;
    if (!/^[1-9][0-9]*$/.test(value)) throw invalid(url, `${name} must be a positive integer`);
    return Number(value);
  };
  const duration = (name: string) => {
    const value = params.get(name);
    if (value === null) return undefined;
    const ms = parseDuration(value);
    if (ms === undefined) throw invalid(url, `${name} must be a duration such as 500ms, 90s, 2m or 1h`);
    return ms;
  };
  const size = (name: string) => {
    const value = params.get(name);
    if (value === null) return undefined;
    const bytes = parseSize(value);
    if (bytes === undefined) throw invalid(url, `${name} must be a size such as 512M or 2G`);
    return bytes;
  };
  const options = {
    concurrency: count('concurrency'),
    timeoutMs: duration('timeout'),
    silenceTimeoutMs: duration('silence-timeout'),
    memoryLimitBytes: size('memory'),
    pidsLimit: count('pids'),
  };
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
}

const pathOf = (parsed: URL) => (parsed.pathname !== '' && parsed.pathname !== '/' ? decodeURIComponent(parsed.pathname) : undefined);

export async function buildServiceFromUrl(
  url: string,
  dependencies: BuilderDependencies,
  env: NodeJS.ProcessEnv = process.env,
): Promise<BuildService> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw invalid(url, (error as Error).message);
  }
  switch (parsed.protocol) {
    case 'dummy:':
      if (parsed.host !== '' || pathOf(parsed) || parsed.search !== '') throw invalid(url, 'dummy:// takes no host, path or parameters');
      return new DummyBuildService();
    case 'bwrap:': {
      if (parsed.host !== '') throw invalid(url, 'bwrap:// takes no host; put a sandbox directory in the path');
      const sandboxDir = pathOf(parsed);
      return new BwrapBuildService({
        ...dependencies,
        ...sandboxOptions(url, parsed.searchParams, []),
        ...(sandboxDir ? { sandboxDir } : {}),
      });
    }
    case 'oci:': {
      if (parsed.host !== '') throw invalid(url, 'oci:// takes no host; put a bundle root in the path');
      const runtime = parsed.searchParams.get('runtime') ?? 'runc';
      if (runtime !== 'runc' && runtime !== 'crun') throw invalid(url, `runtime must be runc or crun, not ${runtime}`);
      const bundleRoot = pathOf(parsed);
      const sandboxDir = parsed.searchParams.get('sandbox-dir');
      return new OciBuildService({
        ...dependencies,
        ...sandboxOptions(url, parsed.searchParams, ['runtime', 'sandbox-dir']),
        runtime,
        ...(bundleRoot ? { bundleRoot } : {}),
        ...(sandboxDir ? { sandboxDir } : {}),
      });
    }
    case 'grpc+unix:':
    case 'grpc+http:':
    case 'grpc+https:': {
      const { GrpcBuildService, splitBuilderUrl } = await import('./grpc/index.js');
      const parts = splitBuilderUrl(url);
      const read = async (path: string | undefined, what: string) => {
        if (path === undefined) return undefined;
        try {
          return await readFile(path, 'utf8');
        } catch (error) {
          throw invalid(url, `cannot read the ${what}: ${(error as Error).message}`);
        }
      };
      const token = (await read(parts.tokenFile, 'token file'))?.trim() ?? (env.KILN_TOKEN || undefined);
      const ca = await read(parts.caFile, 'CA file');
      const cert = await read(parts.certFile, 'client certificate');
      const key = await read(parts.keyFile, 'client key');
      try {
        return new GrpcBuildService({
          ...dependencies,
          url: parts.channelUrl,
          ...(token ? { token } : {}),
          ...(ca !== undefined ? { ca } : {}),
          ...(cert !== undefined && key !== undefined ? { clientCert: { cert, key } } : {}),
          ...(parts.reattachGraceMs !== undefined ? { reattachGraceMs: parts.reattachGraceMs } : {}),
        });
      } catch (error) {
        throw invalid(url, (error as Error).message);
      }
    }
    default:
      throw invalid(url, `unknown scheme ${parsed.protocol}`);
  }
}

/**
 * The sandbox directory of a local builder URL (bwrap://, oci://), where its
 * build directories go; undefined for other builders or an invalid URL.
 */
export function sandboxDirOfBuilderUrl(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol === 'bwrap:') return pathOf(parsed) ?? DEFAULT_SANDBOX_DIR;
  if (parsed.protocol === 'oci:') return parsed.searchParams.get('sandbox-dir') ?? DEFAULT_SANDBOX_DIR;
  return undefined;
}

/**
 * One builder from one URL; from several (remote builders only), a
 * dispatcher that sends each build to the least loaded one that fits.
 */
export async function buildServiceFromUrls(
  urls: readonly string[],
  dependencies: BuilderDependencies,
  env: NodeJS.ProcessEnv = process.env,
): Promise<BuildService> {
  if (urls.length === 1) return buildServiceFromUrl(urls[0] as string, dependencies, env);
  if (urls.length === 0) throw new BuildError('INVALID_REQUEST', 'no builder URL given', { details: { field: 'builder' } });
  for (const url of urls)
    if (!url.startsWith('grpc+')) throw invalid(url, 'several builders can only be remote ones (grpc+unix, grpc+http, grpc+https)');
  const services = await Promise.all(urls.map((url) => buildServiceFromUrl(url, dependencies, env)));
  const { DispatchingBuildService, GrpcBuildService } = await import('./grpc/index.js');
  return new DispatchingBuildService(services.filter((s) => s instanceof GrpcBuildService));
}
