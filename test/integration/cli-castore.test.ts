/**
 * The castore CLI contract, exercised from the outside through bin/kiln:
 * output shapes, exit statuses, KILN_HOME, corruption handling, serving.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { B3Digest, importPath, MemoryBlobService, MemoryDirectoryService } from '../../src/castore/index.js';
import { kiln, repo, runKiln } from './run-kiln.js';

const sample = join(repo, 'examples/sample-tree');

describe('kiln castore CLI', () => {
  let home: string;
  let work: string;
  before(async () => {
    home = await fs.mkdtemp(join(tmpdir(), 'kiln-home-'));
    work = await fs.mkdtemp(join(tmpdir(), 'kiln-work-'));
  });
  after(async () => {
    await fs.rm(home, { recursive: true, force: true });
    await fs.rm(work, { recursive: true, force: true });
  });
  const env = () => ({ KILN_HOME: home });

  it('runs from any working directory', () => {
    const result = spawnSync(kiln, ['castore', 'import', sample], { cwd: '/', env: { ...process.env, ...env() }, encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /blake3-/);
  });

  it('import --json prints the Entry of the sample tree into the default store under KILN_HOME', async () => {
    const result = await runKiln(['castore', 'import', sample, '--json'], env());
    assert.equal(result.status, 0, result.stderr);
    const entry = JSON.parse(result.stdout);
    assert.equal(Buffer.from(entry.directory.name, 'base64').toString(), 'sample-tree');
    const reference = await importPath(sample, { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() });
    assert.equal(reference.node.type, 'directory');
    if (reference.node.type === 'directory') {
      assert.equal(entry.directory.digest, Buffer.from(reference.node.digest.bytes).toString('base64'));
      assert.equal(entry.directory.size, String(reference.node.size));
    }
    await fs.access(join(home, 'store', 'index.mdb'));
  });

  it('export materializes the tree with modes and symlinks, and ls lists it', async () => {
    const imported = await runKiln(['castore', 'import', sample, '--json'], env());
    const dest = join(work, 'exported');
    const exported = await runKiln(['castore', 'export', imported.stdout.trim(), dest], env());
    assert.equal(exported.status, 0, exported.stderr);
    assert.equal(await fs.readFile(join(dest, 'bin/hello'), 'utf8'), await fs.readFile(join(sample, 'bin/hello'), 'utf8'));
    assert.ok((await fs.stat(join(dest, 'bin/hello'))).mode & 0o100);
    assert.equal((await fs.stat(join(dest, 'README'))).mode & 0o111, 0);
    assert.equal(await fs.readlink(join(dest, 'src/hello-link')), '../bin/hello');
    const digest = B3Digest.fromBytes(new Uint8Array(Buffer.from(JSON.parse(imported.stdout).directory.digest, 'base64')));
    const listed = await runKiln(['castore', 'ls', digest.toString()], env());
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /^x .* bin\/hello$/m);
    assert.match(listed.stdout, /^l .*\.\.\/bin\/hello {2}src\/hello-link$/m);
  });

  it('verify is clean, then finds a corrupted blob by digest and export fails with exit 1', async () => {
    const store = join(work, 'verify-store');
    const file = join(work, 'payload.txt');
    await fs.writeFile(file, 'precious bytes that will rot\n'.repeat(100));
    const imported = await runKiln(['castore', 'import', file, '--json', '--store', store]);
    assert.equal(imported.status, 0, imported.stderr);
    assert.equal((await runKiln(['castore', 'verify', '--store', store])).status, 0);
    const digest = B3Digest.fromBytes(new Uint8Array(Buffer.from(JSON.parse(imported.stdout).file.digest, 'base64')));
    const blobFile = join(store, 'blobs', digest.toHex().slice(0, 2), digest.toHex());
    await fs.chmod(blobFile, 0o644);
    await fs.writeFile(blobFile, 'precious bytes that have rotted\n');
    const verified = await runKiln(['castore', 'verify', '--store', store, '--json']);
    assert.equal(verified.status, 1);
    const report = JSON.parse(verified.stdout);
    assert.deepEqual(
      report.problems.map((p: { kind: string; digest: string }) => [p.kind, p.digest]),
      [['corrupt-blob', digest.toString()]],
    );
    const exported = await runKiln(['castore', 'export', imported.stdout.trim(), join(work, 'rotten'), '--store', store]);
    assert.equal(exported.status, 1);
    assert.match(exported.stderr, new RegExp(`^error: .*${digest.toString().replace(/[+/=]/g, '\\$&')}`));
    await assert.rejects(fs.access(join(work, 'rotten')));
  });

  it('invalid input exits 2 with a one-line error', async () => {
    for (const args of [
      ['castore', 'export', 'blake3-notbase64!', join(work, 'x')],
      ['castore', 'export', '{"file":{"name":"","digest":"AAEC","size":"1"}}', join(work, 'x')],
      ['castore', 'import'],
      ['castore', 'import', sample, '--store', 'memory://nope'],
      ['castore', 'import', sample, '--bogus'],
      ['frobnicate'],
    ]) {
      const result = await runKiln(args, env());
      assert.equal(result.status, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /^error: [^\n]+\n/, args.join(' '));
    }
  });

  it('a missing path or unknown digest exits 1', async () => {
    assert.equal((await runKiln(['castore', 'import', join(work, 'does-not-exist')], env())).status, 1);
    const unknown = B3Digest.fromBytes(new Uint8Array(32).fill(9)).toString();
    const result = await runKiln(['castore', 'ls', unknown], env());
    assert.equal(result.status, 1);
    assert.match(result.stderr, /not found/);
  });

  it('every command has --help', async () => {
    for (const args of [
      ['--help'],
      ['castore', 'import', '--help'],
      ['castore', 'export', '--help'],
      ['castore', 'ls', '--help'],
      ['castore', 'verify', '--help'],
      ['serve', '--help'],
    ]) {
      const result = await runKiln(args);
      assert.equal(result.status, 0, args.join(' '));
      assert.match(result.stdout, /usage: kiln/);
    }
  });

  it('serve exposes the store over a unix socket to import and export through grpc+unix://', async () => {
    const socket = join(work, 'castore.sock');
    const served = join(work, 'served-store');
    const server: ChildProcess = spawn(kiln, ['serve', '--listen', `unix://${socket}`, '--store', served], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((ready, fail) => {
        server.stdout?.once('data', () => ready());
        server.once('exit', (code) => fail(new Error(`serve exited with ${code}`)));
      });
      const url = `grpc+unix://${socket}`;
      const imported = await runKiln(['castore', 'import', sample, '--json', '--store', url]);
      assert.equal(imported.status, 0, imported.stderr);
      const dest = join(work, 'from-grpc');
      const exported = await runKiln(['castore', 'export', imported.stdout.trim(), dest, '--store', url]);
      assert.equal(exported.status, 0, exported.stderr);
      assert.equal(await fs.readlink(join(dest, 'src/hello-link')), '../bin/hello');
      const local = await runKiln(['castore', 'import', sample, '--json', '--store', served]);
      assert.equal(local.stdout, imported.stdout, 'the same tree imported locally on the served store gives the same entry');
    } finally {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
    }
    await assert.rejects(fs.access(socket), 'the socket file is removed on shutdown');
  });
});
