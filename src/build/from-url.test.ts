import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBlobService, MemoryDirectoryService } from '../castore/index.js';
import { isBuildError } from './errors.js';
import { buildServiceFromUrl } from './from-url.js';

const deps = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };

describe('buildServiceFromUrl', () => {
  for (const [url, name] of [
    ['dummy://', 'dummy'],
    ['bwrap://', 'bwrap'],
    ['bwrap:///var/tmp/sandbox', 'bwrap'],
    ['bwrap://?concurrency=3&timeout=90s&silence-timeout=500ms&memory=512M&pids=64', 'bwrap'],
    ['oci://', 'oci(runc)'],
    ['oci://?runtime=crun&memory=2G', 'oci(crun)'],
    ['oci:///var/tmp/bundles?runtime=runc&sandbox-dir=/var/tmp/sbx', 'oci(runc)'],
  ] as const) {
    it(`accepts ${url}`, async () => {
      assert.equal((await buildServiceFromUrl(url, deps)).name, name);
    });
  }
  for (const url of [
    'http://foo.example/test',
    'dummy://host',
    'bwrap://host/x',
    'bwrap://?concurrency=0',
    'bwrap://?frobnicate=1',
    'bwrap://?timeout=10',
    'bwrap://?memory=lots',
    'oci://?runtime=docker',
    'oci://host',
    'nonsense',
  ]) {
    it(`rejects ${url} naming it`, async () => {
      await assert.rejects(buildServiceFromUrl(url, deps), (e) => isBuildError(e, 'INVALID_REQUEST') && e.message.includes(url));
    });
  }
});
