import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { MemoryBlobService } from '../blob-service/memory.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { isCastoreError } from '../errors.js';
import { HELLOWORLD_BLOB, HELLOWORLD_BLOB_DIGEST } from '../testing/fixtures.js';
import { openGrpcChannel } from './channel.js';
import { parseChannelUrl } from './channel-url.js';
import { openGrpcCastore } from './open-grpc-castore.js';
import { parseListenAddress, startCastoreServer } from './server.js';

// The channel-URL table of the Snix reference (castore tonic.rs tests), plus our stricter extras.
const VALID = [
  ['grpc+unix:///path/to/somewhere', { kind: 'unix', path: '/path/to/somewhere', waitConnect: false }],
  ['grpc+unix:///path/to/somewhere?wait-connect=0', { kind: 'unix', path: '/path/to/somewhere', waitConnect: false }],
  ['grpc+unix:///path/to/somewhere?wait-connect=1', { kind: 'unix', path: '/path/to/somewhere', waitConnect: true }],
  ['grpc+unix:///with%20space.sock', { kind: 'unix', path: '/with space.sock', waitConnect: false }],
  ['grpc+http://[::1]:12345', { kind: 'http', host: '[::1]', port: 12345, waitConnect: false }],
  ['grpc+http://localhost', { kind: 'http', host: 'localhost', port: 80, waitConnect: false }],
  ['grpc+https://localhost', { kind: 'https', host: 'localhost', port: 443, waitConnect: false }],
  ['grpc+http://localhost?wait-connect=0', { kind: 'http', host: 'localhost', port: 80, waitConnect: false }],
  ['grpc+http://nonexist.invalid?wait-connect=1', { kind: 'http', host: 'nonexist.invalid', port: 80, waitConnect: true }],
  ['grpc+https://127.0.0.1:8443', { kind: 'https', host: '127.0.0.1', port: 8443, waitConnect: false }],
] as const;

const INVALID = [
  'grpc+unix://host.example/path/to/somewhere',
  'grpc+http://localhost/some-path',
  'grpc+http://localhost/',
  'grpc+unix://',
  'grpc+unix:///',
  'grpc+unix:/no/authority',
  'grpc+http://',
  'grpc+http://user:pw@localhost',
  'grpc+http://localhost#fragment',
  'grpc+http://localhost?unknown=1',
  'grpc+http://localhost:99999',
  'grpc+tcp://localhost',
  'http://foo.example/test',
  'memory://',
  'not a url',
  '',
];

describe('parseChannelUrl', () => {
  for (const [url, expected] of VALID) {
    it(`accepts ${url}`, () => {
      assert.deepEqual(parseChannelUrl(url), { ...expected, url });
    });
  }
  for (const url of INVALID) {
    it(`rejects ${JSON.stringify(url)} with INVALID_URL naming it`, () => {
      assert.throws(
        () => parseChannelUrl(url),
        (e) => isCastoreError(e, 'INVALID_URL') && (e as Error).message.includes(JSON.stringify(url)),
      );
    });
  }
});

describe('openGrpcChannel', () => {
  it('connects lazily: an unreachable endpoint without wait-connect opens fine', async () => {
    const channel = await openGrpcChannel('grpc+unix:///path/to/somewhere');
    await channel.close();
  });

  for (const url of ['grpc+unix:///path/to/somewhere?wait-connect=1', 'grpc+http://nonexist.invalid?wait-connect=1']) {
    it(`fails with BACKEND_FAILURE naming ${url} when wait-connect=1 cannot connect`, async () => {
      await assert.rejects(openGrpcChannel(url), (e) => isCastoreError(e, 'BACKEND_FAILURE') && (e as Error).message.includes(url));
    });
  }

  it('with wait-connect=1 connects to a live server, over which openGrpcCastore works', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-grpc-url-'));
    const server = await startCastoreServer({
      listen: `unix://${path.join(dir, 's.sock')}`,
      blobService: new MemoryBlobService(),
      directoryService: new MemoryDirectoryService(),
    });
    try {
      const castore = await openGrpcCastore(`${server.url}?wait-connect=1`);
      await castore.blobService.put(HELLOWORLD_BLOB);
      assert.equal(await castore.blobService.has(HELLOWORLD_BLOB_DIGEST), true);
      await castore.close();
    } finally {
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('parseListenAddress', () => {
  for (const [listen, expected] of [
    ['unix:///run/kiln/castore.sock', { kind: 'unix', path: '/run/kiln/castore.sock' }],
    ['127.0.0.1:0', { kind: 'tcp', host: '127.0.0.1', port: 0 }],
    ['localhost:8000', { kind: 'tcp', host: 'localhost', port: 8000 }],
    ['[::1]:9000', { kind: 'tcp', host: '::1', port: 9000 }],
    ['0.0.0.0:65535', { kind: 'tcp', host: '0.0.0.0', port: 65535 }],
  ] as const) {
    it(`accepts ${listen}`, () => assert.deepEqual(parseListenAddress(listen), expected));
  }
  for (const listen of [
    'unix://relative.sock',
    'unix:relative',
    'unix:///',
    '127.0.0.1',
    ':80',
    '127.0.0.1:65536',
    '[nope]:1',
    'grpc+unix:///x.sock',
    '::1:80',
  ]) {
    it(`rejects ${JSON.stringify(listen)} with INVALID_URL`, () => {
      assert.throws(
        () => parseListenAddress(listen),
        (e) => isCastoreError(e, 'INVALID_URL') && (e as Error).message.includes(listen),
      );
    });
  }
});
