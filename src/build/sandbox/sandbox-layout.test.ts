import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { B3Digest, parsePathComponent } from '../../castore/index.js';
import { shellBuildRequest } from '../testing/shell-request.js';
import type { InputsCache } from './inputs-cache.js';
import { etcFiles } from './nix-compatible-etc.js';
import { prepareSandboxLayout } from './sandbox-layout.js';

const root = mkdtempSync(join(tmpdir(), 'kiln-layout-'));
after(() => rmSync(root, { recursive: true, force: true }));
const noInputs = {} as InputsCache; // these requests have none
const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
let builds = 0;

function layout(request = shellBuildRequest('true'), sharedEtcRoot = join(root, 'etc')) {
  const buildDir = join(root, `build-${builds++}`);
  mkdirSync(buildDir);
  return prepareSandboxLayout(request, buildDir, owner, noInputs, { sharedEtcRoot });
}

describe('sandbox layout', () => {
  it('gives builds with the same /etc files one shared, complete, read-only /etc outside their build dirs', async () => {
    const [first, ...others] = await Promise.all(Array.from({ length: 6 }, () => layout()));
    for (const other of others) assert.equal(other.etcDir, first?.etcDir);
    const etcDir = first?.etcDir as string;
    assert.ok(etcDir.startsWith(join(root, 'etc')));
    const expected = etcFiles('/build');
    assert.deepEqual(readdirSync(etcDir).sort(), Object.keys(expected).sort());
    for (const [name, content] of Object.entries(expected)) {
      assert.equal(readFileSync(join(etcDir, name), 'utf8'), content);
      assert.equal(statSync(join(etcDir, name)).mode & 0o777, 0o444);
    }
    assert.deepEqual(
      readdirSync(join(root, 'etc')).filter((name) => name.startsWith('.tmp-')),
      [],
      'no half-written copy is left by the builds that lost the race',
    );
  });

  it('gives another working directory (the home in passwd) another /etc', async () => {
    const build = await layout();
    const other = await layout(shellBuildRequest('true', { workingDir: 'nix/store', scratchPaths: ['nix/store'] }));
    assert.notEqual(other.etcDir, build.etcDir);
    assert.match(readFileSync(join(other.etcDir, 'passwd'), 'utf8'), /:\/nix\/store:/);
  });

  it('gives a build its own /etc in its build dir when additional files go there', async () => {
    const contents = new TextEncoder().encode('extra\n');
    const request = shellBuildRequest('true', { additionalFiles: [{ path: 'etc/extra.conf', contents }] });
    const own = await layout(request);
    assert.ok(own.etcDir.startsWith(join(root, 'build-')), own.etcDir);
    assert.equal(readFileSync(join(own.etcDir, 'extra.conf'), 'utf8'), 'extra\n');
    assert.ok(readdirSync(join(root, 'etc')).every((dir) => !readdirSync(join(root, 'etc', dir)).includes('extra.conf')));
  });

  it('hard-links file inputs placed in a scratch directory and binds the rest', async () => {
    const cached = join(root, 'cached');
    mkdirSync(join(cached, 'tree'), { recursive: true });
    writeFileSync(join(cached, 'data'), 'data\n', { mode: 0o444 });
    const paths: Record<string, string> = { file: join(cached, 'data'), directory: join(cached, 'tree') };
    const pathOf = async (node: { type: string }) => paths[node.type] as string;
    const inputs = { pathOf, linkSourceOf: pathOf } as unknown as InputsCache;
    const digest = B3Digest.of(new Uint8Array());
    const request = (inputsDir: string, scratchPaths: string[]) =>
      shellBuildRequest('true', {
        inputsDir,
        scratchPaths,
        outputs: [`${scratchPaths.at(-1)}/out`],
        inputs: [
          { name: parsePathComponent('a-data'), node: { type: 'file', digest, size: 5, executable: false } },
          { name: parsePathComponent('b-tree'), node: { type: 'directory', digest, size: 1 } },
        ],
      });
    const buildDir = join(root, `build-${builds++}`);
    mkdirSync(buildDir);
    const linked = await prepareSandboxLayout(request('nix/store', ['build', 'nix/store']), buildDir, owner, inputs, {
      sharedEtcRoot: join(root, 'etc'),
    });
    assert.deepEqual(linked.inputPaths, [undefined, paths.directory]);
    const link = join(linked.scratchDirs[1] as string, 'a-data');
    assert.equal(statSync(link).ino, statSync(paths.file as string).ino, 'the same file, linked');
    assert.equal(statSync(link).mode & 0o777, 0o444);

    const otherDir = join(root, `build-${builds++}`);
    mkdirSync(otherDir);
    const outside = await prepareSandboxLayout(request('inputs', ['build']), otherDir, owner, inputs, { sharedEtcRoot: join(root, 'etc') });
    assert.deepEqual(outside.inputPaths, [paths.file, paths.directory], 'inputs outside every scratch path are bound');
  });
});
