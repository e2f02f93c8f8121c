/**
 * `builtin:fetchurl` against real Nix: derivations from `<nix/fetchurl.nix>`
 * with fresh contents, served over HTTP on 127.0.0.1, fetched by Kiln (which
 * runs them itself, as Nix does) and by nix-build, must give the same store
 * path, NAR hash, NAR size and references — a plain file, an executable one,
 * an unpacked NAR and a redirected URL. A wrong hash, a 404 and a
 * builtin:fetchurl derivation that is not fixed-output fail on Kiln naming
 * the cause, and leave the path-info index as it was.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type BuildService, buildServiceFromUrl } from '../../src/build/index.js';
import { type FsCastore, openFsCastore } from '../../src/castore/index.js';
import { formatNixHash } from '../../src/nix/index.js';
import { isNixBridgeError, LmdbPathInfoService, LocalNixStore, NixBuilder } from '../../src/nix-bridge/index.js';
import { nixPathInfo, nixSkipReason } from './nix-live-kit.js';

const skip = nixSkipReason();
if (skip) console.log(`# skipping builtin:fetchurl against Nix: ${skip}`);

const FETCHES = ['plain', 'exec', 'tree', 'redirected'] as const;

/** nix-build of one derivation, run asynchronously: this process serves what Nix fetches. */
async function nixBuild(drvPath: string): Promise<{ status: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)('nix-build', ['--no-out-link', drvPath], { encoding: 'utf8' });
    return { status: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { status: failed.code ?? 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

describe('builtin:fetchurl: Kiln fetches what nix-build fetches', { skip: skip ?? false, timeout: 300_000 }, () => {
  let work: string;
  let server: Server;
  let castore: FsCastore;
  let pathInfos: LmdbPathInfoService;
  let buildService: BuildService;
  let nix: NixBuilder;
  const drvs = new Map<string, string>();

  async function recordCount(): Promise<number> {
    let n = 0;
    for await (const _ of pathInfos.list()) n++;
    return n;
  }

  before(async () => {
    work = await mkdtemp('/var/tmp/kiln-fetchurl-');
    await chmod(work, 0o755);
    const files = new Map<string, Buffer>([
      ['/plain', randomBytes(3000)],
      ['/tool', Buffer.from(`#!/bin/sh\necho ${randomBytes(8).toString('hex')}\n`)],
    ]);
    // The tree to serve as a NAR, and the hashes <nix/fetchurl.nix> wants (computed by Nix's own tools).
    const tree = join(work, 'tree');
    await mkdir(join(tree, 'sub'), { recursive: true });
    await writeFile(join(tree, 'sub', 'data'), randomBytes(100_000));
    await writeFile(join(tree, 'run'), '#!/bin/sh\n', { mode: 0o755 });
    files.set('/tree.nar', execFileSync('nix-store', ['--dump', tree], { maxBuffer: 1 << 24 }));
    await writeFile(join(work, 'plain'), files.get('/plain') as Buffer);
    await writeFile(join(work, 'tool'), files.get('/tool') as Buffer, { mode: 0o755 });
    const hash = (args: string[]) => execFileSync('nix-hash', ['--type', 'sha256', '--base32', ...args], { encoding: 'utf8' }).trim();
    const plainHash = hash(['--flat', join(work, 'plain')]);
    const execHash = hash([join(work, 'tool')]);
    const treeHash = hash([tree]);

    server = createServer((request, response) => {
      if (request.url === '/redirect') {
        response.writeHead(302, { location: '/plain' }).end();
        return;
      }
      const body = files.get(request.url ?? '');
      if (!body) response.writeHead(404).end('no such file');
      else response.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const expression = `
      let f = import <nix/fetchurl.nix>; in {
        plain = f { url = "${base}/plain"; sha256 = "${plainHash}"; };
        exec = f { url = "${base}/tool"; sha256 = "${execHash}"; executable = true; };
        tree = f { url = "${base}/tree.nar"; sha256 = "${treeHash}"; unpack = true; };
        redirected = f { url = "${base}/redirect"; sha256 = "${plainHash}"; name = "redirected"; };
        wrong = f { url = "${base}/tool"; sha256 = "${plainHash}"; name = "wrong"; };
        missing = f { url = "${base}/missing"; sha256 = "${plainHash}"; name = "missing"; };
        notFixed = builtins.derivation { name = "not-fixed"; builder = "builtin:fetchurl"; system = "builtin"; url = "${base}/plain"; };
      }`;
    await writeFile(join(work, 'fetches.nix'), expression);
    for (const attr of [...FETCHES, 'wrong', 'missing', 'notFixed']) {
      const drv = execFileSync('nix-instantiate', [join(work, 'fetches.nix'), '-A', attr], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      drvs.set(attr, drv.trim());
    }

    castore = await openFsCastore(join(work, 'castore'));
    pathInfos = LmdbPathInfoService.open(join(work, 'castore', 'nix-path-info.mdb'));
    buildService = await buildServiceFromUrl('dummy://', castore);
    nix = new NixBuilder({
      buildService,
      blobService: castore.blobService,
      directoryService: castore.directoryService,
      pathInfoService: pathInfos,
      nixStore: new LocalNixStore(),
    });
  });

  after(async () => {
    await buildService?.close();
    await pathInfos?.close();
    await castore?.close();
    await new Promise((resolve) => server?.close(resolve));
    await rm(work, { recursive: true, force: true });
  });

  for (const attr of FETCHES) {
    it(`${attr}: the same store path, NAR hash, size and references as nix-build`, async () => {
      const drvPath = drvs.get(attr) as string;
      const outputs = await nix.realise(drvPath);
      const ours = outputs.get('out');
      assert.ok(ours);
      const built = await nixBuild(drvPath);
      assert.equal(built.status, 0, built.stderr);
      const theirs = nixPathInfo(built.stdout.trim());
      assert.equal(ours.storePath.toAbsolute(), built.stdout.trim());
      assert.equal(ours.deriver, drvPath);
      assert.equal(formatNixHash(ours.narHash, 'base16', { prefix: false }), theirs.narHash);
      assert.equal(theirs.deriver, drvPath);
      assert.equal(ours.narSize, theirs.narSize);
      assert.deepEqual(ours.references, theirs.references);
    });
  }

  it('the executable bit and the unpacked tree are the ones Nix made', async () => {
    const exec = (await nix.realise(drvs.get('exec') as string)).get('out');
    assert.equal(exec?.node.type === 'file' && exec.node.executable, true);
    const tree = (await nix.realise(drvs.get('tree') as string)).get('out');
    assert.equal(tree?.node.type, 'directory');
  });

  it('a wrong hash fails naming both hashes, a 404 names the URL and status, and nothing is recorded', async () => {
    const before = await recordCount();
    await assert.rejects(nix.realise(drvs.get('wrong') as string), (error: Error) => {
      assert.ok(isNixBridgeError(error, 'HASH_MISMATCH'), error.message);
      assert.match(error.message, /specified: sha256-\S+, got: sha256-\S+/);
      return true;
    });
    await assert.rejects(nix.realise(drvs.get('missing') as string), (error: Error) => {
      assert.ok(isNixBridgeError(error, 'BUILD_FAILED'), error.message);
      assert.match(error.message, /unable to download 'http:\/\/127\.0\.0\.1:\d+\/missing': HTTP error 404/);
      return true;
    });
    assert.equal(await recordCount(), before);
    assert.notEqual((await nixBuild(drvs.get('missing') as string)).status, 0, 'Nix fails too');
  });

  it('a builtin:fetchurl derivation that is not fixed-output is refused before anything is fetched', async () => {
    const drvPath = drvs.get('notFixed') as string;
    await assert.rejects(nix.realise(drvPath), (error: Error) => {
      assert.ok(isNixBridgeError(error, 'DERIVATION_REJECTED'), error.message);
      assert.match(error.message, /builtin:fetchurl must be a fixed-output derivation/);
      return true;
    });
    assert.ok((await readFile(drvPath, 'latin1')).includes('builtin:fetchurl'));
  });
});
