/**
 * A BuildService for tests that runs no sandbox: a script decides what each
 * request's outputs contain (or how it fails); the outputs are written to a
 * temporary directory and ingested into the castore with reference
 * scanning, as a real backend would. Records the order and concurrency of
 * builds.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { BuildEvent, BuildFailureReason, BuildRequest, BuildService } from '../../build/index.js';
import { type BlobService, type DirectoryService, importPath, type Node } from '../../castore/index.js';
import type { AbortOptions } from '../../common/abort.js';

/** A file tree to produce as an output. */
export type FakeTree =
  | string
  | { readonly file: string | Uint8Array; readonly executable?: boolean }
  | { readonly symlink: string }
  | { readonly dir: Readonly<Record<string, FakeTree>> };

export type FakeResult =
  /** Absolute output path → contents; a missing output makes the build fail as `output-missing`. */
  | { readonly outputs: Readonly<Record<string, FakeTree>> }
  | { readonly fail: BuildFailureReason; readonly exitCode?: number; readonly log?: string };

export type FakeScript = (request: BuildRequest, env: ReadonlyMap<string, string>) => FakeResult | Promise<FakeResult>;

export class FakeBuildService implements BuildService {
  readonly name = 'fake';
  /** Requests in the order builds started. */
  readonly started: BuildRequest[] = [];
  /** Env `name` of each build, in the order they finished. */
  readonly finished: string[] = [];
  maxConcurrent = 0;
  #running = 0;

  constructor(
    private readonly castore: { blobService: BlobService; directoryService: DirectoryService },
    private readonly script: FakeScript,
    private readonly delayMs = 0,
  ) {}

  async *build(request: BuildRequest, options: AbortOptions = {}): AsyncGenerator<BuildEvent> {
    options.signal?.throwIfAborted();
    yield { type: 'accepted', buildId: `fake-${this.started.length}`, invocationId: String(this.started.length), backend: this.name };
    this.started.push(request);
    this.#running++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.#running);
    const env = new Map(request.environmentVars.map((e) => [e.key, Buffer.from(e.value).toString()]));
    const dir = await mkdtemp(join(tmpdir(), 'kiln-fake-build-'));
    try {
      yield { type: 'started' };
      if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
      options.signal?.throwIfAborted();
      const result = await this.script(request, env);
      const fail = (reason: BuildFailureReason, message: string, exitCode?: number): BuildEvent => ({
        type: 'failed',
        reason,
        message,
        ...(exitCode !== undefined ? { exitCode } : {}),
        logTail: '',
      });
      if ('fail' in result) {
        if (result.log) yield { type: 'log', stream: 'stderr', offset: 0, data: Buffer.from(result.log) };
        yield fail(result.fail, `the build failed (${result.fail})`, result.exitCode);
        return;
      }
      const outputs: { node: Node; needles: number[] }[] = [];
      for (const [index, output] of request.outputs.entries()) {
        const tree = result.outputs[`/${output}`];
        if (tree === undefined) {
          yield fail('output-missing', `output ${output} was not produced`);
          return;
        }
        const path = join(dir, String(index));
        await writeTree(path, tree);
        const ingested = await importPath(path, { ...this.castore, needles: request.refscanNeedles.map((n) => Buffer.from(n)) });
        const needles = (ingested.needlesFound ?? []).flatMap((hit, i) => (hit ? [i] : []));
        outputs.push({ node: ingested.node, needles });
        yield { type: 'output-ingested', index, path: output, node: ingested.node, needles };
      }
      yield { type: 'finished', response: { outputs }, exitCode: 0, wallTimeMs: 0, cpuTimeMs: 0, peakMemoryBytes: 0 };
    } finally {
      this.#running--;
      this.finished.push(env.get('name') ?? '');
      await rm(dir, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {}
}

async function writeTree(path: string, tree: FakeTree): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  if (typeof tree === 'string') {
    await writeFile(path, tree, { mode: 0o644 });
  } else if ('file' in tree) {
    await writeFile(path, tree.file, { mode: tree.executable ? 0o755 : 0o644 });
  } else if ('symlink' in tree) {
    await symlink(tree.symlink, path);
  } else {
    await mkdir(path);
    for (const [name, child] of Object.entries(tree.dir)) await writeTree(join(path, name), child);
  }
}
