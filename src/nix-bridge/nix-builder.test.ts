import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { MemoryBlobService, MemoryDirectoryService } from '../castore/index.js';
import { contentAddress, formatNixHash, hashBytes, isNixFormatError, makeFixedOutputStorePath } from '../nix/index.js';
import { isNixBridgeError } from './errors.js';
import { LocalNixStore } from './local-nix-store.js';
import { NixBuilder } from './nix-builder.js';
import { formatNarHash } from './path-info.js';
import { MemoryPathInfoService, type PathInfoService } from './path-info-service.js';
import { FakeBuildService, type FakeScript, writeTestDerivation } from './testing/index.js';

const BUILDER = '/nix/store/00000000000000000000000000000000-builder/bin/sh';

describe('NixBuilder (with a fake builder)', () => {
  let dir: string;
  let drvDir: string;
  let storeDir: string;
  let source: string;
  let castore: { blobService: MemoryBlobService; directoryService: MemoryDirectoryService };
  let pathInfos: PathInfoService;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kiln-nix-builder-'));
    drvDir = join(dir, 'drv');
    storeDir = join(dir, 'store');
    await mkdir(drvDir);
    await mkdir(storeDir);
    // A source as builtins.toFile makes it: a text path proven by its contents.
    const contents = 'echo hello\n';
    source = makeFixedOutputStorePath('script.sh', contentAddress('text', hashBytes('sha256', contents))).toAbsolute();
    await writeFile(join(storeDir, source.slice('/nix/store/'.length)), contents);
    castore = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
    pathInfos = new MemoryPathInfoService();
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const builderWith = (script: FakeScript, jobs = 1, delayMs = 0) => {
    const service = new FakeBuildService(castore, script, delayMs);
    const nix = new NixBuilder({
      buildService: service,
      ...castore,
      pathInfoService: pathInfos,
      nixStore: new LocalNixStore({ realStoreDir: storeDir, drvSearchDirs: [drvDir], nixStoreProgram: '/nonexistent/nix-store' }),
      jobs,
      buildCores: 1,
    });
    return { service, nix };
  };
  const count = async () => {
    let n = 0;
    for await (const _ of pathInfos.list()) n++;
    return n;
  };
  /** Writes each output as the given text (by output env var). */
  const echo =
    (texts: Record<string, (env: ReadonlyMap<string, string>) => string>): FakeScript =>
    (_request, env) => ({
      outputs: Object.fromEntries(Object.entries(texts).map(([output, text]) => [env.get(output) as string, text(env)])),
    });

  it('records outputs with NAR hash, size, references (self, siblings, inputs) and deriver; the source too', async () => {
    const { drvPath, drv } = await writeTestDerivation(drvDir, {
      name: 'multi',
      builder: BUILDER,
      outputs: ['out', 'dev'],
      inputSrcs: [source],
    });
    const { nix } = builderWith(echo({ out: (e) => `${e.get('dev')} ${e.get('out')}`, dev: () => source }));
    const outputs = await nix.realise(drvPath);
    const out = outputs.get('out');
    const dev = outputs.get('dev');
    assert.ok(out && dev);
    assert.equal(out.storePath.toAbsolute(), drv.outputs.get('out')?.path);
    assert.deepEqual(out.references, [dev.storePath.toAbsolute(), out.storePath.toAbsolute()].sort());
    assert.deepEqual(dev.references, [source]);
    assert.equal(out.deriver, drvPath);
    // NAR of a regular file: 112 bytes of framing plus the contents padded to 8.
    const text = `${dev.storePath.toAbsolute()} ${out.storePath.toAbsolute()}`;
    assert.equal(out.narSize, 112 + Math.ceil(text.length / 8) * 8);
    const sourceInfo = await pathInfos.get(source);
    assert.ok(sourceInfo, 'the source is recorded with the build');
    assert.equal(sourceInfo.ca?.method, 'text');
    assert.equal(await count(), 3);
  });

  it('a file name holding a hash part is a reference (Nix scans the NAR)', async () => {
    const base = source.slice('/nix/store/'.length);
    const { drvPath } = await writeTestDerivation(drvDir, { name: 'names', builder: BUILDER, inputSrcs: [source] });
    const { nix } = builderWith((_r, env) => ({ outputs: { [env.get('out') as string]: { dir: { [base]: 'x' } } } }));
    const outputs = await nix.realise(drvPath);
    assert.deepEqual(outputs.get('out')?.references, [source]);
  });

  it('builds input derivations first, up to N at a time, and nothing already held', async () => {
    const a = await writeTestDerivation(drvDir, { name: 'a', builder: BUILDER });
    const deps = { deps: a.drv.outputs.get('out')?.path as string };
    const b = await writeTestDerivation(drvDir, { name: 'b', builder: BUILDER, inputDrvs: { [a.drvPath]: ['out'] }, env: deps });
    const c = await writeTestDerivation(drvDir, { name: 'c', builder: BUILDER, inputDrvs: { [a.drvPath]: ['out'] }, env: deps });
    const d = await writeTestDerivation(drvDir, {
      name: 'd',
      builder: BUILDER,
      inputDrvs: { [b.drvPath]: ['out'], [c.drvPath]: ['out'] },
      env: { deps: `${b.drv.outputs.get('out')?.path} ${c.drv.outputs.get('out')?.path}` },
    });
    const { service, nix } = builderWith(echo({ out: (e) => `${e.get('name')} ${e.get('deps') ?? ''}` }), 2, 50);
    const outputs = await nix.realise(d.drvPath);
    assert.equal(service.finished[0], 'a');
    assert.deepEqual(service.finished.slice(1, 3).sort(), ['b', 'c']);
    assert.equal(service.finished[3], 'd');
    assert.equal(service.maxConcurrent, 2);
    assert.equal(outputs.get('out')?.references.length, 2);
    // The input closure is in d's request: a's output comes with b's and c's references.
    const last = service.started.at(-1);
    assert.equal(last?.inputs.length, 3);
    const again = builderWith(echo({ out: () => 'x' }));
    await again.nix.realise(d.drvPath);
    assert.equal(again.service.started.length, 0, 'nothing rebuilt');
  });

  it('the first failure stops the graph; what finished stays recorded, nothing of the failed build is', async () => {
    const a = await writeTestDerivation(drvDir, { name: 'a', builder: BUILDER });
    const b = await writeTestDerivation(drvDir, { name: 'b', builder: BUILDER, inputDrvs: { [a.drvPath]: ['out'] } });
    const { service, nix } = builderWith((_request, env) =>
      env.get('name') === 'b' ? { fail: 'exit-code', exitCode: 3 } : { outputs: { [env.get('out') as string]: 'a' } },
    );
    await assert.rejects(nix.realise(b.drvPath), (error: Error) => {
      assert.ok(isNixBridgeError(error, 'BUILD_FAILED'));
      assert.equal(error.message, `builder for '${b.drvPath}' failed with exit code 3`);
      return true;
    });
    assert.equal(service.started.length, 2);
    assert.ok(await pathInfos.get(a.drv.outputs.get('out')?.path as string));
    assert.equal(await pathInfos.get(b.drv.outputs.get('out')?.path as string), undefined);
  });

  it('a builder that produces no output fails naming the output, and records nothing', async () => {
    const { drvPath, drv } = await writeTestDerivation(drvDir, { name: 'none', builder: BUILDER, inputSrcs: [source] });
    const { nix } = builderWith(() => ({ outputs: {} }));
    await assert.rejects(nix.realise(drvPath), {
      code: 'BUILD_FAILED',
      message: `builder for '${drvPath}' failed to produce output path for output 'out' at '${drv.outputs.get('out')?.path}'`,
    });
    assert.equal(await count(), 0);
  });

  it('a fixed-output hash mismatch fails naming both hashes and records nothing', async () => {
    const { drvPath } = await writeTestDerivation(drvDir, {
      name: 'fod',
      builder: BUILDER,
      inputSrcs: [source],
      fixed: { method: 'flat', algo: 'sha256', contents: Buffer.from('wanted') },
    });
    const { nix, service } = builderWith(echo({ out: () => 'other' }));
    await assert.rejects(nix.realise(drvPath), (error: Error) => {
      assert.ok(isNixBridgeError(error, 'HASH_MISMATCH'));
      const specified = formatNixHash(hashBytes('sha256', 'wanted'), 'sri');
      const got = formatNixHash(hashBytes('sha256', 'other'), 'sri');
      assert.equal(error.message, `hash mismatch in fixed-output derivation '${drvPath}': specified: ${specified}, got: ${got}`);
      return true;
    });
    assert.equal(service.started[0]?.constraints?.networkAccess, true);
    assert.equal(await count(), 0);
  });

  it('fixed outputs: flat and recursive with any algorithm; flat must be a plain file; no references', async () => {
    const flat = await writeTestDerivation(drvDir, {
      name: 'flat',
      builder: BUILDER,
      fixed: { method: 'flat', algo: 'sha1', contents: Buffer.from('data') },
    });
    const ok = builderWith(echo({ out: () => 'data' }));
    const info = (await ok.nix.realise(flat.drvPath)).get('out');
    assert.equal(info?.ca && formatNixHash(info.ca.hash, 'base16'), formatNixHash(hashBytes('sha1', 'data'), 'base16'));
    assert.equal(info?.storePath.toAbsolute(), flat.drv.outputs.get('out')?.path);

    const exec = await writeTestDerivation(drvDir, {
      name: 'exec',
      builder: BUILDER,
      fixed: { method: 'flat', algo: 'sha256', contents: Buffer.from('data') },
    });
    const bad = builderWith((_r, env) => ({ outputs: { [env.get('out') as string]: { file: 'data', executable: true } } }));
    await assert.rejects(bad.nix.realise(exec.drvPath), { code: 'OUTPUT_REJECTED', message: /should be a non-executable regular file/ });

    const refs = await writeTestDerivation(drvDir, {
      name: 'refs',
      builder: BUILDER,
      inputSrcs: [source],
      fixed: { method: 'flat', algo: 'sha256', contents: Buffer.from(source) },
    });
    const referring = builderWith(echo({ out: () => source }));
    await assert.rejects(referring.nix.realise(refs.drvPath), {
      code: 'OUTPUT_REJECTED',
      message: /illegal path references in fixed-output derivation/,
    });
  });

  it('a reference cycle between two outputs fails as in Nix', async () => {
    const { drvPath } = await writeTestDerivation(drvDir, { name: 'cycle', builder: BUILDER, outputs: ['out', 'dev'] });
    const { nix } = builderWith(echo({ out: (e) => e.get('dev') as string, dev: (e) => e.get('out') as string }));
    await assert.rejects(nix.realise(drvPath), {
      code: 'OUTPUT_REJECTED',
      message: `cycle detected in build of '${drvPath}' in the references of output 'dev' from output 'out'`,
    });
    assert.equal(await count(), 0);
  });

  it('allowedReferences and disallowedReferences are enforced', async () => {
    const { drvPath } = await writeTestDerivation(drvDir, {
      name: 'allowed',
      builder: BUILDER,
      inputSrcs: [source],
      env: { allowedReferences: '' },
    });
    const { nix } = builderWith(echo({ out: () => source }));
    await assert.rejects(nix.realise(drvPath), {
      code: 'OUTPUT_REJECTED',
      message: new RegExp(`is not allowed to refer to the following paths: ${source}`),
    });
  });

  it('a missing input source fails naming it, and records nothing', async () => {
    const missing = makeFixedOutputStorePath('gone', contentAddress('text', hashBytes('sha256', 'gone'))).toAbsolute();
    const { drvPath } = await writeTestDerivation(drvDir, { name: 'nosrc', builder: BUILDER, inputSrcs: [source, missing] });
    const { nix, service } = builderWith(echo({ out: () => 'x' }));
    await assert.rejects(nix.realise(drvPath), {
      code: 'SOURCE_MISSING',
      message: new RegExp(`input source ${missing} is not in the Nix store`),
    });
    assert.equal(service.started.length, 0);
    assert.equal(await count(), 0);
  });

  it('a source whose path does not prove its references needs Nix’s database', async () => {
    const other = '/nix/store/1b9p07z77phvv2hf6gm9f28syrv81bmq-not-ca';
    await writeFile(join(storeDir, other.slice('/nix/store/'.length)), 'x');
    const { drvPath } = await writeTestDerivation(drvDir, { name: 'notca', builder: BUILDER, inputSrcs: [other] });
    const { nix } = builderWith(echo({ out: () => 'x' }));
    await assert.rejects(nix.realise(drvPath), {
      code: 'SOURCE_MISSING',
      message: /does not prove them and \/nonexistent\/nix-store is not installed/,
    });
  });

  it('truncated and malformed .drv files, bad hash parts and files that are not what their path says are refused', async () => {
    const { drvPath } = await writeTestDerivation(drvDir, { name: 'good', builder: BUILDER });
    const file = join(drvDir, drvPath.slice('/nix/store/'.length));
    const bytes = await readFile(file);
    const { nix } = builderWith(echo({ out: () => 'x' }));

    await writeFile(file, bytes.subarray(0, bytes.length - 10));
    await assert.rejects(builderWith(echo({ out: () => 'x' })).nix.realise(drvPath), (e: Error) => {
      assert.ok(isNixBridgeError(e, 'INVALID_DERIVATION') && isNixFormatError(e.cause, 'INVALID_DERIVATION'));
      assert.equal(e.message, `cannot read derivation ${drvPath}`);
      return true;
    });
    await writeFile(file, Buffer.from(bytes.toString().replace('Derive(', 'Derive[')));
    await assert.rejects(builderWith(echo({ out: () => 'x' })).nix.realise(drvPath), (e: Error) =>
      isNixFormatError(e.cause, 'INVALID_DERIVATION'),
    );
    await writeFile(file, Buffer.from(bytes.toString().replace('"x86_64-linux"', '"aarch64-linux"')));
    await assert.rejects(builderWith(echo({ out: () => 'x' })).nix.realise(drvPath), {
      code: 'INVALID_DERIVATION',
      message: /does not match its path/,
    });
    assert.throws(
      () => new LocalNixStore().resolveDerivationArgument('/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x.drv'),
      (e) => isNixFormatError(e, 'INVALID_STORE_PATH'),
    );
    await assert.rejects(nix.realise('/nix/store/00000000000000000000000000000000-absent.drv'), { code: 'NOT_FOUND' });
    assert.equal(await count(), 0);
  });

  it('refuses builtin builders but a fixed-output fetchurl, __noChroot and system features it lacks before building', async () => {
    for (const [spec, message] of [
      [
        { name: 'unpack', builder: 'builtin:unpack-channel' },
        /builtin builder builtin:unpack-channel, which Kiln does not provide \(only builtin:fetchurl\)/,
      ],
      [{ name: 'fetch', builder: 'builtin:fetchurl' }, /builtin:fetchurl must be a fixed-output derivation/],
      [{ name: 'nochroot', builder: BUILDER, env: { __noChroot: '1' } }, /'__noChroot' set/],
      [{ name: 'kvm', builder: BUILDER, env: { requiredSystemFeatures: 'kvm big-parallel' } }, /system features \{kvm\}/],
    ] as const) {
      const { drvPath } = await writeTestDerivation(drvDir, spec);
      const { nix, service } = builderWith(echo({ out: () => 'x' }));
      await assert.rejects(nix.realise(drvPath), { code: 'DERIVATION_REJECTED', message });
      assert.equal(service.started.length, 0);
    }
  });

  it('narHash text form is sha256:<nixbase32>', async () => {
    const { drvPath } = await writeTestDerivation(drvDir, { name: 'hash', builder: BUILDER });
    const { nix } = builderWith(echo({ out: () => 'x' }));
    const info = (await nix.realise(drvPath)).get('out');
    assert.match(formatNarHash(info?.narHash as never), /^sha256:[0-9a-z]{52}$/);
  });
});
