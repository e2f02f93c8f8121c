import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { B3Digest, directoryNode, fileNode, parsePathComponent } from '../castore/index.js';
import { type BuildRequest, isCleanAbsolutePath, isCleanRelativePath, scratchPathFor, validateBuildRequest } from './build-request.js';
import { isBuildError } from './errors.js';
import { buildRequestDigest, buildRequestFromJson, buildRequestToJson } from './proto-convert.js';

const digest = B3Digest.fromBytes(new Uint8Array(32).fill(1));
const enc = (s: string) => new TextEncoder().encode(s);

function base(): BuildRequest {
  return {
    inputs: [
      { name: parsePathComponent('aaa-input'), node: directoryNode(digest, 3) },
      { name: parsePathComponent('bbb-input'), node: fileNode(digest, 10, true) },
    ],
    commandArgs: ['/nix/store/bbb-input', '-c', 'echo hi > $out'],
    workingDir: 'build',
    scratchPaths: ['build', 'nix/store'],
    inputsDir: 'nix/store',
    outputs: ['nix/store/out-a', 'nix/store/out-b'],
    environmentVars: [
      { key: 'A', value: enc('1') },
      { key: 'out', value: enc('/nix/store/out-a') },
    ],
    constraints: {
      system: 'x86_64-linux',
      minMemory: 0,
      availableRoPaths: ['/etc/ssl', '/usr/share'],
      networkAccess: false,
      provideBinSh: true,
    },
    additionalFiles: [{ path: 'build/.attrs.json', contents: enc('{}') }],
    refscanNeedles: ['out-a', 'out-b'],
  };
}

function rejects(mutate: (r: BuildRequest & Record<string, unknown>) => BuildRequest, field: string): void {
  assert.throws(
    () => validateBuildRequest(mutate(base() as BuildRequest & Record<string, unknown>)),
    (e) => isBuildError(e, 'INVALID_REQUEST') && e.details.field === field && e.message.includes(field),
  );
}

describe('clean paths', () => {
  it('matches the reference vectors', () => {
    for (const bad of ['foo/bar/', 'foo/../bar', 'foo/./bar', 'foo//bar', '//foo/bar', '/foo', '.', '..', 'a/.'])
      assert.equal(isCleanRelativePath(bad), false, bad);
    for (const good of ['', 'foo/bar', 'build', 'nix/store']) assert.equal(isCleanRelativePath(good), true, good);
    for (const good of ['/', '/foo/bar']) assert.equal(isCleanAbsolutePath(good), true, good);
    for (const bad of ['foo', '//foo', '/foo/', '/a/../b', '']) assert.equal(isCleanAbsolutePath(bad), false, bad);
  });
  it('finds the deepest scratch path containing an output by whole components', () => {
    assert.equal(scratchPathFor({ scratchPaths: ['nix/store'] }, 'nix/store/aaaa'), 'nix/store');
    assert.equal(scratchPathFor({ scratchPaths: ['nix/sto'] }, 'nix/store/aaaa'), undefined);
    assert.equal(scratchPathFor({ scratchPaths: ['build'] }, 'nix/store/aaaa'), undefined);
    assert.equal(scratchPathFor({ scratchPaths: ['nix', 'nix/store'] }, 'nix/store/aaaa'), 'nix/store');
  });
});

describe('validateBuildRequest', () => {
  it('accepts a well-formed request', () => {
    assert.equal(validateBuildRequest(base()).outputs.length, 2);
  });
  it('names the field of each broken rule', () => {
    rejects((r) => ({ ...r, inputs: [...r.inputs].reverse() }), 'inputs[1]');
    rejects((r) => ({ ...r, inputs: [r.inputs[0]!, r.inputs[0]!] }), 'inputs[1]');
    rejects((r) => ({ ...r, commandArgs: [] }), 'command_args');
    rejects((r) => ({ ...r, workingDir: '/build' }), 'working_dir');
    rejects((r) => ({ ...r, workingDir: 'build/../..' }), 'working_dir');
    rejects((r) => ({ ...r, scratchPaths: ['build', 'nix//store'] }), 'scratch_paths[1]');
    rejects((r) => ({ ...r, scratchPaths: ['nix/store', 'build'] }), 'scratch_paths[1]');
    rejects((r) => ({ ...r, scratchPaths: ['build', ''] }), 'scratch_paths[1]');
    rejects((r) => ({ ...r, inputsDir: 'nix/store/' }), 'inputs_dir');
    rejects((r) => ({ ...r, outputs: ['nix/store/out-b', 'nix/store/out-a'] }), 'outputs[1]');
    rejects((r) => ({ ...r, outputs: ['elsewhere/out'] }), 'outputs[0]');
    rejects((r) => ({ ...r, outputs: ['nix/store/./x'] }), 'outputs[0]');
    rejects((r) => ({ ...r, environmentVars: [{ key: 'A=B', value: enc('') }] }), 'environment_vars[0].key');
    rejects((r) => ({ ...r, environmentVars: [{ key: '', value: enc('') }] }), 'environment_vars[0].key');
    rejects((r) => ({ ...r, environmentVars: [{ key: 'A', value: Uint8Array.of(0x61, 0) }] }), 'environment_vars[0].value');
    rejects((r) => ({ ...r, environmentVars: [...r.environmentVars].reverse() }), 'environment_vars[1]');
    rejects((r) => ({ ...r, constraints: { ...r.constraints!, system: '' } }), 'constraints.system');
    rejects(
      (r) => ({ ...r, constraints: { ...r.constraints!, availableRoPaths: ['relative/path'] } }),
      'constraints.available_ro_paths[0]',
    );
    rejects((r) => ({ ...r, constraints: { ...r.constraints!, availableRoPaths: ['/b', '/a'] } }), 'constraints.available_ro_paths[1]');
    rejects((r) => ({ ...r, additionalFiles: [{ path: 'nix/store/evil', contents: enc('') }] }), 'additional_files[0].path');
    rejects(
      (r) => ({
        ...r,
        additionalFiles: [
          { path: 'b', contents: enc('') },
          { path: 'a', contents: enc('') },
        ],
      }),
      'additional_files[1]',
    );
  });
});

describe('BuildRequest JSON and digest', () => {
  it('round-trips through proto3 JSON with a stable digest', () => {
    const request = base();
    const again = buildRequestFromJson(buildRequestToJson(request));
    assert.equal(buildRequestDigest(again).toHex(), buildRequestDigest(request).toHex());
    const changed = { ...request, commandArgs: [...request.commandArgs, 'x'] };
    assert.notEqual(buildRequestDigest(changed).toHex(), buildRequestDigest(request).toHex());
  });
  it('rejects malformed JSON and invalid inputs naming the field', () => {
    assert.throws(
      () => buildRequestFromJson('{"commandArgs": 5}'),
      (e) => isBuildError(e, 'INVALID_REQUEST'),
    );
    assert.throws(
      () => buildRequestFromJson(JSON.stringify({ commandArgs: ['x'], inputs: [{ file: { name: 'Li4=', digest: 'AAEC', size: '1' } }] })),
      (e) => isBuildError(e, 'INVALID_REQUEST') && e.details.field === 'inputs[0]',
    );
  });
});
