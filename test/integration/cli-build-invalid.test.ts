/**
 * `kiln build` refuses what it must not run: every BuildRequest validation
 * rule, malformed JSON, bad options and builder URLs exit 2 with the field
 * named on stderr, and nothing runs (the build is never accepted and the
 * sandbox directory stays empty).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bwrapSkipReason } from '../../src/build/testing/index.js';
import { b64, sandboxDir, shellRequest, tempDir, writeRequest } from './build-cli-kit.js';
import { repo, runKiln } from './run-kiln.js';

const skip = bwrapSkipReason();
if (skip) console.log(`# skipping kiln build invalid-request tests: ${skip}`);

const digest = Buffer.alloc(32, 7).toString('base64');
const fileEntry = (name: string) => ({ file: { name: b64(name), digest, size: '1' } });
const env = (...pairs: [string, string][]) => pairs.map(([key, value]) => ({ key, value: b64(value) }));

type Case = [what: string, request: Record<string, unknown> | string, field: string, extraArgs?: string[]];

/** One case per rule of validateBuildRequest, plus what the JSON decoder and the builder reject. */
const CASES: Case[] = [
  ['inputs not sorted by name', { inputs: [fileEntry('b'), fileEntry('a')] }, 'inputs[1]'],
  ['duplicate input names', { inputs: [fileEntry('a'), fileEntry('a')] }, 'inputs[1]'],
  ['an input that is not a valid castore entry', { inputs: [fileEntry('..')] }, 'inputs[0]'],
  [
    'an --input named like an input of the request',
    { inputs: [fileEntry('sample-tree')] },
    'inputs[1]',
    ['--input', `sample-tree=${join(repo, 'examples/sample-tree')}`],
  ],
  ['empty command_args', { commandArgs: [] }, 'command_args'],
  ['NUL in an argument', { commandArgs: ['/bin/sh', 'a\u0000b'] }, 'command_args[1]'],
  ['an absolute working_dir', { workingDir: '/build' }, 'working_dir'],
  ['a working_dir leaving the root', { workingDir: 'build/../..' }, 'working_dir'],
  ['an empty scratch path', { scratchPaths: ['', 'nix/store'] }, 'scratch_paths[0]'],
  ['an unclean scratch path', { scratchPaths: ['build', 'nix//store'] }, 'scratch_paths[1]'],
  ['a scratch path with a trailing slash', { scratchPaths: ['build', 'nix/store/'] }, 'scratch_paths[1]'],
  ['unsorted scratch_paths', { scratchPaths: ['nix/store', 'build'] }, 'scratch_paths[1]'],
  ['an unclean inputs_dir', { inputsDir: 'nix/store/' }, 'inputs_dir'],
  ['an inputs_dir with ..', { inputsDir: 'nix/../store' }, 'inputs_dir'],
  ['an empty inputs_dir with inputs', { inputsDir: '', inputs: [fileEntry('a')] }, 'inputs_dir'],
  ['an empty output path', { outputs: [''] }, 'outputs[0]'],
  ['an output outside every scratch path', { outputs: ['elsewhere/out'] }, 'outputs[0]'],
  ['an unclean output path', { outputs: ['nix/store/./x'] }, 'outputs[0]'],
  ['an output hiding inputs_dir', { outputs: ['nix/store'] }, 'outputs[0]'],
  ['unsorted outputs', { outputs: ['nix/store/b', 'nix/store/a'] }, 'outputs[1]'],
  ['an empty environment key', { environmentVars: env(['', 'x']) }, 'environment_vars[0].key'],
  ['"=" in an environment key', { environmentVars: env(['A=B', 'x']) }, 'environment_vars[0].key'],
  ['NUL in an environment key', { environmentVars: env(['A\u0000', 'x']) }, 'environment_vars[0].key'],
  ['NUL in an environment value', { environmentVars: env(['A', 'x\u0000y']) }, 'environment_vars[0].value'],
  ['unsorted environment_vars', { environmentVars: env(['b', '1'], ['a', '2']) }, 'environment_vars[1]'],
  ['an empty constraints.system', { constraints: { system: '', provideBinSh: true } }, 'constraints.system'],
  [
    'a relative available_ro_path',
    { constraints: { system: 'x86_64-linux', availableRoPaths: ['usr/share'] } },
    'constraints.available_ro_paths[0]',
  ],
  [
    'an unclean available_ro_path',
    { constraints: { system: 'x86_64-linux', availableRoPaths: ['/usr/../etc'] } },
    'constraints.available_ro_paths[0]',
  ],
  [
    'unsorted available_ro_paths',
    { constraints: { system: 'x86_64-linux', availableRoPaths: ['/usr', '/etc'] } },
    'constraints.available_ro_paths[1]',
  ],
  ['a min_memory beyond 2^53', { constraints: { system: 'x86_64-linux', minMemory: '18446744073709551615' } }, 'constraints.min_memory'],
  [
    'a min_memory above this host’s memory (admission)',
    { constraints: { system: 'x86_64-linux', minMemory: String(2 ** 52), provideBinSh: true } },
    'constraints.min_memory',
  ],
  [
    'an additional file inside inputs_dir',
    { additionalFiles: [{ path: 'nix/store/evil', contents: b64('x') }] },
    'additional_files[0].path',
  ],
  ['an unclean additional file path', { additionalFiles: [{ path: 'build/../x', contents: b64('x') }] }, 'additional_files[0].path'],
  [
    'unsorted additional_files',
    {
      additionalFiles: [
        { path: 'build/b', contents: '' },
        { path: 'build/a', contents: '' },
      ],
    },
    'additional_files[1]',
  ],
  ['a JSON field of the wrong type', '{"commandArgs": 5}', 'command_args'],
  ['an unknown JSON field', '{"commandArgz": ["/bin/sh"]}', 'commandArgz'],
  ['a file that is not JSON', 'not json', 'invalid build request JSON'],
  ['--input without =', {}, '--input', ['--input', 'no-equals-sign']],
  ['--input with an invalid name', {}, 'invalid name', ['--input', `../x=${repo}`]],
  ['an unknown option', {}, '--frobnicate', ['--frobnicate']],
  ['an unknown builder scheme', {}, 'builder URL nope://', ['--builder', 'nope://']],
  ['an unknown builder parameter', {}, 'unknown parameter colour', ['--builder', 'bwrap://?colour=blue']],
  ['an unknown OCI runtime', {}, 'runtime must be runc or crun', ['--builder', 'oci://?runtime=youki']],
];

describe('kiln build rejects invalid requests with exit 2, naming the field, running nothing', {
  skip: skip ?? false,
  concurrency: 4,
}, () => {
  let work: string;
  const sandbox = sandboxDir('invalid');
  before(async () => {
    work = await tempDir('kiln-build-invalid-');
    await fs.mkdir(sandbox, { recursive: true });
  });
  after(async () => {
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(sandbox, { recursive: true, force: true });
  });

  for (const [what, change, field, extraArgs = []] of CASES) {
    it(`${what} → exit 2 naming ${field}`, async () => {
      const request = typeof change === 'string' ? change : shellRequest('echo ran > $out; echo RAN', change);
      const path = await writeRequest(work, request);
      const home = await fs.mkdtemp(join(work, 'home-'));
      // A --builder in the case replaces the default one.
      const args = ['build', path, ...(extraArgs.includes('--builder') ? [] : ['--builder', `bwrap://${sandbox}`]), ...extraArgs];
      const result = await runKiln(args, { KILN_HOME: home });
      assert.equal(result.status, 2, result.stderr);
      assert.ok(result.stderr.includes(field), `stderr names ${field}: ${result.stderr}`);
      assert.match(result.stderr, /^error: /m);
      assert.doesNotMatch(result.stderr, /kiln: build |RAN/, 'the build was never accepted');
      assert.equal(result.stdout, '');
      assert.deepEqual(await fs.readdir(sandbox), [], 'the sandbox directory stays empty');
    });
  }

  it('a missing or unreadable REQUEST.json is a usage error', async () => {
    const missing = await runKiln(['build', join(work, 'absent.json')]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /^error: cannot read .*absent\.json/);
    const none = await runKiln(['build']);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /missing REQUEST\.json/);
  });
});
