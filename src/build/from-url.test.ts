import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
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

describe('buildServiceFromUrl for remote builders', () => {
  const pem = join(tmpdir(), `kiln-from-url-${process.pid}.pem`);
  const token = join(tmpdir(), `kiln-from-url-${process.pid}.token`);
  before(async () => {
    await writeFile(pem, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
    await writeFile(token, 'secret\n');
  });
  after(async () => {
    await rm(pem, { force: true });
    await rm(token, { force: true });
  });

  for (const [url, name] of [
    ['grpc+unix:///run/kiln.sock', 'grpc(grpc+unix:///run/kiln.sock)'],
    ['grpc+http://127.0.0.1:7000', 'grpc(grpc+http://127.0.0.1:7000)'],
    ['grpc+https://builder.example:443?token-file=TOKEN&ca-file=PEM', 'grpc(grpc+https://builder.example:443)'],
    ['grpc+https://builder.example?cert-file=PEM&key-file=PEM&wait-connect=0', 'grpc(grpc+https://builder.example?wait-connect=0)'],
  ] as const) {
    it(`accepts ${url}, keeping Kiln's own parameters out of the channel URL`, async () => {
      const service = await buildServiceFromUrl(url.replaceAll('PEM', pem).replace('TOKEN', token), deps);
      try {
        assert.equal(service.name, name);
      } finally {
        await service.close();
      }
    });
  }
  for (const [url, why] of [
    ['grpc+unix:///run/kiln.sock?token-file=/nonexistent/token', 'cannot read the token file'],
    ['grpc+http://127.0.0.1:7000?ca-file=PEM', 'need grpc+https'],
    ['grpc+https://builder.example?cert-file=PEM', 'cert-file and key-file go together'],
    ['grpc+unix://host/run/kiln.sock', 'must not have a host'],
    ['grpc+http://127.0.0.1:7000?colour=blue', 'unknown query parameter'],
  ] as const) {
    it(`rejects ${url}: ${why}`, async () => {
      await assert.rejects(
        buildServiceFromUrl(url.replaceAll('PEM', pem), deps),
        (e) => isBuildError(e, 'INVALID_REQUEST') && e.message.includes(why) && e.message.includes('invalid builder URL'),
      );
    });
  }
});
