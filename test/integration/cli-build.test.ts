/** `kiln build` from the outside: output shapes, exit statuses, --input, --export. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bwrapSkipReason } from '../../src/build/testing/index.js';
import { repo, runKiln } from './run-kiln.js';

const skip = bwrapSkipReason();
if (skip) console.log(`# skipping kiln build CLI tests: ${skip}`);

describe('kiln build CLI', { skip: skip ?? false }, () => {
  let work: string;
  before(async () => {
    work = await fs.mkdtemp(join(tmpdir(), 'kiln-build-cli-'));
  });
  after(async () => {
    await fs.rm(work, { recursive: true, force: true });
  });
  const env = () => ({ KILN_HOME: join(work, 'home') });
  const sandbox = () => `bwrap://${join('/var/tmp', `kiln-cli-test-${process.pid}`)}`;
  after(async () => {
    await fs.rm(join('/var/tmp', `kiln-cli-test-${process.pid}`), { recursive: true, force: true });
  });

  async function requestFile(script: string): Promise<string> {
    const path = join(work, `request-${Math.random().toString(36).slice(2)}.json`);
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    await fs.writeFile(
      path,
      JSON.stringify({
        commandArgs: ['/bin/sh', '-c', script],
        workingDir: 'build',
        scratchPaths: ['build', 'nix/store'],
        inputsDir: 'nix/store',
        outputs: ['nix/store/result'],
        environmentVars: [{ key: 'out', value: b64('/nix/store/result') }],
        constraints: { system: 'x86_64-linux', provideBinSh: true },
        refscanNeedles: ['/nix/store/the-input'],
      }),
    );
    return path;
  }

  it('builds the README example with --input, prints the response as JSON and exports the output', async () => {
    const dest = join(work, 'exported');
    const result = await runKiln(
      [
        'build',
        join(repo, 'examples/hello-request.json'),
        '--input',
        `sample-tree=${join(repo, 'examples/sample-tree')}`,
        '--json',
        '--export',
        dest,
        '--builder',
        sandbox(),
      ],
      env(),
    );
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /building hello/);
    const response = JSON.parse(result.stdout);
    assert.ok(response.outputs[0].output.directory.digest);
    assert.equal(await fs.readFile(join(dest, 'hello/bin/hello'), 'utf8'), '#!/bin/sh\necho hello from kiln\n');
    assert.match(await fs.readFile(join(dest, 'hello/README'), 'utf8'), /Kiln sample tree/);
  });

  it('reports references found by scanning', async () => {
    const request = await requestFile('cat /nix/store/the-input/README > $out; echo /nix/store/the-input >> $out');
    const result = await runKiln(
      ['build', request, '--input', `the-input=${join(repo, 'examples/sample-tree')}`, '--json', '--builder', sandbox()],
      env(),
    );
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout).outputs[0].needles, ['0']);
  });

  it('exits 1 when the build fails, saying why', async () => {
    const result = await runKiln(['build', await requestFile('echo oops >&2; exit 7'), '--builder', sandbox()], env());
    assert.equal(result.status, 1);
    assert.match(result.stderr, /oops/);
    assert.match(result.stderr, /^error: build failed \(exit-code\): the build exited with status 7$/m);
  });

  it('exits 1 naming a missing output', async () => {
    const result = await runKiln(['build', await requestFile('true'), '--builder', sandbox()], env());
    assert.equal(result.status, 1);
    assert.match(result.stderr, /output nix\/store\/result was not produced/);
  });

  it('exits 2 for an invalid request, naming the field, without running anything', async () => {
    const path = join(work, 'bad.json');
    await fs.writeFile(path, JSON.stringify({ commandArgs: ['/bin/sh'], scratchPaths: ['nix/store', 'build'], outputs: [] }));
    const result = await runKiln(['build', path, '--builder', sandbox()], env());
    assert.equal(result.status, 2);
    assert.match(result.stderr, /^error: invalid build request: scratch_paths\[1\]/);
    const unknown = await runKiln(['build', await requestFile('true'), '--builder', 'nope://'], env());
    assert.equal(unknown.status, 2);
  });
});
