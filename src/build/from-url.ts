/**
 * Composition by URL for builders: `dummy://` and `bwrap://` (optionally
 * `bwrap:///sandbox/dir`), with `?concurrency=N`. Later: `oci://` and
 * `grpc+…`. The one place besides the CLI and tests that names backends.
 */
import type { BlobService, DirectoryService } from '../castore/index.js';
import type { BuildService } from './build-service.js';
import { BwrapBuildService } from './bwrap/bwrap-build-service.js';
import { DummyBuildService } from './dummy.js';
import { BuildError } from './errors.js';

export interface BuilderDependencies {
  blobService: BlobService;
  directoryService: DirectoryService;
}

function invalid(url: string, why: string): BuildError {
  return new BuildError('INVALID_REQUEST', `invalid builder URL ${url}: ${why}`, { details: { field: 'builder' } });
}

function positiveInteger(url: string, params: URLSearchParams, name: string): number | undefined {
  const value = params.get(name);
  if (value === null) return undefined;
  if (!/^[1-9][0-9]*$/.test(value)) throw invalid(url, `${name} must be a positive integer`);
  return Number(value);
}

export async function buildServiceFromUrl(url: string, dependencies: BuilderDependencies): Promise<BuildService> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw invalid(url, (error as Error).message);
  }
  switch (parsed.protocol) {
    case 'dummy:':
      if (parsed.host !== '' || (parsed.pathname !== '' && parsed.pathname !== '/')) throw invalid(url, 'dummy:// takes no host or path');
      return new DummyBuildService();
    case 'bwrap:': {
      if (parsed.host !== '') throw invalid(url, 'bwrap:// takes no host; put a sandbox directory in the path');
      for (const key of parsed.searchParams.keys()) if (key !== 'concurrency') throw invalid(url, `unknown parameter ${key}`);
      const concurrency = positiveInteger(url, parsed.searchParams, 'concurrency');
      const sandboxDir = parsed.pathname !== '' && parsed.pathname !== '/' ? decodeURIComponent(parsed.pathname) : undefined;
      return new BwrapBuildService({ ...dependencies, ...(sandboxDir ? { sandboxDir } : {}), ...(concurrency ? { concurrency } : {}) });
    }
    default:
      throw invalid(url, `unknown scheme ${parsed.protocol}`);
  }
}
