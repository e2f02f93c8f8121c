import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { B3Digest, directoryNode, parsePathComponent } from '../../castore/index.js';
import type { BuildRequest } from '../build-request.js';
import { bwrapArgs } from './bwrap-args.js';

const request: BuildRequest = {
  inputs: [{ name: parsePathComponent('abc-input'), node: directoryNode(B3Digest.fromBytes(new Uint8Array(32)), 0) }],
  commandArgs: ['/nix/store/abc-input/bin/sh', '-c', 'true'],
  workingDir: 'build',
  scratchPaths: ['build', 'nix/store'],
  inputsDir: 'nix/store',
  outputs: ['nix/store/out'],
  environmentVars: [{ key: 'LATIN1', value: Uint8Array.of(0xe9) }],
  constraints: { system: 'x86_64-linux', minMemory: 0, availableRoPaths: ['/etc/ssl'], networkAccess: false, provideBinSh: true },
  additionalFiles: [],
  refscanNeedles: [],
};
const layout = {
  etcDir: '/b/etc',
  scratchDirs: ['/b/s0', '/b/s1'],
  inputPaths: ['/cache/x'],
  extraFiles: [{ hostPath: '/b/files/0', sandboxPath: '/etc/extra.conf' }],
  shell: '/bin/busybox',
};
const text = (invocation: { options: (string | Uint8Array)[]; command: string[] }) =>
  [...invocation.options, ...invocation.command].map((a) => (typeof a === 'string' ? a : `<${Buffer.from(a).toString('hex')}>`));

describe('bwrapArgs', () => {
  it('binds scratch paths before inputs so inputs stay read-only inside them, and ends with the command', () => {
    const args = text(bwrapArgs(request, layout));
    const scratch = args.indexOf('/b/s1');
    const input = args.indexOf('/cache/x');
    assert.ok(scratch > 0 && input > scratch);
    assert.deepEqual(args.slice(input - 1, input + 2), ['--ro-bind', '/cache/x', '/nix/store/abc-input']);
    assert.deepEqual(args.slice(-4), ['--', '/nix/store/abc-input/bin/sh', '-c', 'true']);
    assert.ok(args.includes('--unshare-net'));
    assert.deepEqual(args.slice(args.indexOf('/bin/busybox') - 1, args.indexOf('/bin/busybox') + 2), [
      '--ro-bind',
      '/bin/busybox',
      '/bin/sh',
    ]);
    assert.deepEqual(args.slice(args.indexOf('LATIN1') - 1, args.indexOf('LATIN1') + 2), ['--setenv', 'LATIN1', '<e9>']);
    assert.deepEqual(args.slice(args.indexOf('--chdir'), args.indexOf('--chdir') + 2), ['--chdir', '/build']);
    assert.deepEqual(args.slice(args.indexOf('/b/files/0') - 1, args.indexOf('/b/files/0') + 2), [
      '--ro-bind',
      '/b/files/0',
      '/etc/extra.conf',
    ]);
  });
  it('keeps the host network only when the request allows it', () => {
    const open = { ...request, constraints: { ...request.constraints!, networkAccess: true } };
    assert.equal(text(bwrapArgs(open, layout)).includes('--unshare-net'), false);
  });
});
