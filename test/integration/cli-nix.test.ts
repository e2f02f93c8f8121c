/**
 * `kiln nix build/show/export/path-info` from the outside: every Nix 2.8
 * vector through the CLI on bwrap and runc (recursive builds in dependency
 * order, JSON shape, nothing rebuilt) and on a remote builder (`kiln serve`,
 * `--builder grpc+unix://…`), and bad input failing with a clear
 * message, the documented exit status and the path-info index unchanged.
 * The vectors' one source (busybox) lives in a store directory of the
 * test's own (KILN_NIX_STORE_DIR), so no real Nix is needed.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bwrapSkipReason, ociSkipReason } from '../../src/build/testing/index.js';
import { LmdbPathInfoService } from '../../src/nix-bridge/index.js';
import { loadVectors, makeVectorStore, VECTORS_DIR, vectorsSkipReason, writeTestDerivation } from '../../src/nix-bridge/testing/index.js';
import { runKiln } from './run-kiln.js';
import { startServer } from './serve-kit.js';

const vectors = loadVectors();
const skip = vectorsSkipReason(vectors) ?? bwrapSkipReason();
if (skip) console.log(`# skipping kiln nix CLI tests: ${skip}`);
const drvFile = (name: string) => join(VECTORS_DIR, (vectors?.derivations.find((d) => d.name === name)?.drvFile ?? '') as string);

describe('kiln nix CLI', { skip: skip ?? false }, () => {
  let work: string;
  let env: Record<string, string>;
  let drvDir: string;
  const busybox = vectors?.busybox.storePath as string;

  before(async () => {
    work = await fs.mkdtemp('/var/tmp/kiln-cli-nix-');
    await fs.chmod(work, 0o755);
    drvDir = join(work, 'drv');
    await fs.mkdir(drvDir);
    env = { KILN_NIX_STORE_DIR: await makeVectorStore(join(work, 'nix-store'), vectors as never) };
  });
  after(async () => {
    await fs.rm(work, { recursive: true, force: true });
  });

  const home = async () => {
    const dir = await fs.mkdtemp(join(work, 'home-'));
    return { ...env, KILN_HOME: dir };
  };
  const records = async (kilnHome: string) => {
    const service = LmdbPathInfoService.open(join(kilnHome, 'store', 'nix-path-info.mdb'));
    try {
      const paths: string[] = [];
      for await (const info of service.list()) paths.push(info.storePath.toAbsolute());
      return paths;
    } finally {
      await service.close();
    }
  };

  for (const [label, builder, backendSkip] of [
    ['bwrap', (dir: string) => `bwrap://${dir}`, undefined],
    ['oci(runc)', (dir: string) => `oci://?runtime=runc&sandbox-dir=${dir}`, ociSkipReason('runc')],
  ] as const) {
    it(`builds every vector on ${label}: inputs first, recorded outputs, JSON as specified, nothing rebuilt`, {
      skip: backendSkip ?? false,
    }, async () => {
      const e = await home();
      const url = builder(join(work, `sandbox-${label}`));
      const dep = await runKiln(['nix', 'build', drvFile('dep'), '--builder', url, '-j', '2', '--json'], e);
      assert.equal(dep.status, 0, dep.stderr);
      for (const name of ['hello', 'multi', 'dep'])
        assert.match(dep.stderr, new RegExp(`building '/nix/store/[0-9a-z]{32}-${name}\\.drv' on`));
      assert.ok(dep.stderr.indexOf('-dep.drv') > dep.stderr.indexOf('-hello.drv'), 'inputs are built first');
      for (const vector of vectors?.derivations ?? []) {
        const result = await runKiln(['nix', 'build', join(VECTORS_DIR, vector.drvFile), '--builder', url, '--json'], e);
        assert.equal(result.status, 0, result.stderr);
        if (vector.name !== 'passasfile') assert.doesNotMatch(result.stderr, /building/, `${vector.name} was built again`);
        const expected = Object.fromEntries(
          Object.entries(vector.outputs).map(([output, o]) => [
            output,
            { path: o.path, narHash: o.narHashBase32, narSize: o.narSize, references: o.references },
          ]),
        );
        assert.deepEqual(JSON.parse(result.stdout), { outputs: expected });
      }
      const plain = await runKiln(['nix', 'build', drvFile('multi'), '--builder', url], e);
      assert.equal(plain.status, 0, plain.stderr);
      const multi = vectors?.derivations.find((d) => d.name === 'multi');
      assert.deepEqual(
        plain.stdout.trim().split('\n'),
        Object.values(multi?.outputs ?? {}).map((o) => o.path),
      );
    });
  }

  it('builds on a remote builder (kiln serve) into the local store, the outputs copied back', async () => {
    const dir = join(work, 'remote');
    await fs.mkdir(dir, { recursive: true });
    const server = await startServer(
      ['--listen', `unix://${join(dir, 's.sock')}`, '--store', join(dir, 'store'), '--builder', `bwrap://${join(dir, 'sandbox')}`],
      env,
    );
    try {
      const e = await home();
      const result = await runKiln(['nix', 'build', drvFile('dep'), '--builder', `grpc+${server.address}`, '-j', '2', '--json'], e);
      assert.equal(result.status, 0, result.stderr);
      const dep = vectors?.derivations.find((d) => d.name === 'dep');
      assert.equal(JSON.parse(result.stdout).outputs.out.narHash, dep?.outputs.out.narHashBase32);
      const exported = await runKiln(['nix', 'export', dep?.outputs.out.path as string, join(dir, 'exported')], e);
      assert.equal(exported.status, 0, exported.stderr);
    } finally {
      await server.stop();
    }
  });

  it('path-info, export and show', async () => {
    const e = await home();
    const built = await runKiln(['nix', 'build', drvFile('dep')], e);
    assert.equal(built.status, 0, built.stderr);
    const vector = vectors?.derivations.find((d) => d.name === 'dep');
    const out = vector?.outputs.out;
    assert.ok(vector && out);

    const info = await runKiln(['nix', 'path-info', out.path, '--json'], e);
    assert.equal(info.status, 0, info.stderr);
    const json = JSON.parse(info.stdout);
    assert.equal(json.path, out.path);
    assert.equal(json.narHash, out.narHashBase32);
    assert.equal(json.narSize, out.narSize);
    assert.deepEqual(json.references, out.references);
    assert.equal(json.deriver, vector.drvPath);
    assert.ok(json.entry.file, 'the castore entry');
    const text = await runKiln(['nix', 'path-info', out.path], e);
    assert.match(text.stdout, new RegExp(`^${out.path}\\n  narHash     ${out.narHashBase32}\\n`));
    const source = await runKiln(['nix', 'path-info', busybox, '--json'], e);
    assert.equal(JSON.parse(source.stdout).narSize, vectors?.busybox.narSize);

    const dest = join(work, 'exported-dep');
    const exported = await runKiln(['nix', 'export', out.path, dest], e);
    assert.equal(exported.status, 0, exported.stderr);
    const hello = vectors?.derivations.find((d) => d.name === 'hello')?.outputs.out.path;
    assert.equal(readFileSync(dest, 'utf8'), `hi\ndev\n${hello}\n`);

    const shown = await runKiln(['nix', 'show', drvFile('dep')], e);
    assert.equal(shown.status, 0, shown.stderr);
    const request = JSON.parse(shown.stdout);
    assert.deepEqual(request.commandArgs.slice(0, 2), [`${busybox}/bin/busybox`, 'sh']);
    assert.equal(request.workingDir, 'build');
    assert.deepEqual(request.scratchPaths, ['build', 'nix/store']);
    assert.equal(request.inputsDir, 'nix/store');
    assert.deepEqual(request.outputs, [out.path.slice(1)]);
    const names = request.inputs.map((i: Record<string, { name: string }>) =>
      Buffer.from(Object.values(i)[0]?.name ?? '', 'base64').toString(),
    );
    assert.deepEqual(names, [...names].sort());
    assert.equal(names.length, 3, 'busybox, hello and multi-dev');
    const envKeys = request.environmentVars.map((v: { key: string }) => v.key);
    for (const key of [
      'HOME',
      'NIX_BUILD_CORES',
      'NIX_BUILD_TOP',
      'NIX_LOG_FD',
      'NIX_STORE',
      'PATH',
      'PWD',
      'TEMP',
      'TEMPDIR',
      'TERM',
      'TMP',
      'TMPDIR',
      'out',
    ]) {
      assert.ok(envKeys.includes(key), key);
    }
    assert.equal(request.constraints.provideBinSh, true);
    assert.equal(request.refscanNeedles[0], out.path.slice(11, 43));

    const unbuilt = await runKiln(['nix', 'show', drvFile('dep')], await home());
    assert.equal(unbuilt.status, 1);
    assert.match(unbuilt.stderr, /^error: output .* is not built yet/m);
    const absent = await runKiln(['nix', 'path-info', out.path], await home());
    assert.equal(absent.status, 1);
    assert.match(absent.stderr, /is not in Kiln's path-info index/);
  });

  describe('bad input fails clearly and leaves the path-info index unchanged', () => {
    let e: Record<string, string>;
    let before0: string[];
    before(async () => {
      e = await home();
      const built = await runKiln(['nix', 'build', drvFile('hello')], e);
      assert.equal(built.status, 0, built.stderr);
      before0 = await records(e.KILN_HOME as string);
    });
    const expectFailure = async (args: string[], status: number, message: RegExp) => {
      const result = await runKiln(['nix', ...args], e);
      assert.equal(result.status, status, result.stderr);
      assert.match(result.stderr, message);
      assert.deepEqual(await records(e.KILN_HOME as string), before0);
      return result;
    };
    const bytes = () => readFileSync(drvFile('hello'));
    const copy = async (dir: string, contents: Uint8Array) => {
      await fs.mkdir(join(work, dir), { recursive: true });
      const path = join(work, dir, drvFile('hello').split('/').at(-1) as string);
      await fs.writeFile(path, contents);
      return path;
    };

    it('a truncated .drv: exit 2, the offset named', async () => {
      await expectFailure(
        ['build', await copy('truncated', bytes().subarray(0, 100))],
        2,
        /^error: cannot read derivation \/nix\/store\/\S+-hello\.drv: invalid derivation: .* at byte \d+$/m,
      );
    });
    it('a malformed .drv: exit 2', async () => {
      await expectFailure(
        ['build', await copy('malformed', Buffer.from(bytes().toString().replace('Derive(', 'Derive{')))],
        2,
        /^error: cannot read derivation .*: invalid derivation: expected "Derive\(" at byte 6$/m,
      );
    });
    it('a .drv whose contents are not what its name says: exit 2', async () => {
      await expectFailure(
        ['build', await copy('changed', Buffer.from(bytes().toString().replace('echo hi', 'echo ho')))],
        2,
        /does not match its path/,
      );
    });
    it('a store path with a bad hash part: exit 2', async () => {
      await expectFailure(['build', '/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-hello.drv'], 2, /bad hash part/);
      await expectFailure(['path-info', '/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-hello'], 2, /bad hash part/);
    });
    it('a missing input source: exit 1, the source named', async () => {
      const missing = '/nix/store/1b9p07z77phvv2hf6gm9f28syrv81bmq-missing';
      const { drvPath } = await writeTestDerivation(drvDir, {
        name: 'nosource',
        builder: `${busybox}/bin/busybox`,
        args: ['sh', '-c', 'echo > $out'],
        inputSrcs: [busybox, missing],
      });
      await expectFailure(['build', join(drvDir, drvPath.slice(11))], 1, new RegExp(`input source ${missing} is not in the Nix store`));
    });
    it('a builder that produces no output: exit 1, the output named', async () => {
      const { drvPath, drv } = await writeTestDerivation(drvDir, {
        name: 'nooutput',
        builder: `${busybox}/bin/busybox`,
        args: ['sh', '-c', 'true'],
        inputSrcs: [busybox],
      });
      await expectFailure(
        ['build', join(drvDir, drvPath.slice(11))],
        1,
        new RegExp(`failed to produce output path for output 'out' at '${drv.outputs.get('out')?.path}'`),
      );
    });
    it('a fixed-output hash mismatch: exit 1, both hashes named', async () => {
      const { drvPath } = await writeTestDerivation(drvDir, {
        name: 'fodwrong',
        builder: `${busybox}/bin/busybox`,
        args: ['sh', '-c', 'echo other > $out'],
        inputSrcs: [busybox],
        fixed: { method: 'flat', algo: 'sha256', contents: Buffer.from('wanted\n') },
      });
      const result = await runKiln(['nix', 'build', join(drvDir, drvPath.slice(11))], e);
      assert.equal(result.status, 1, result.stderr);
      assert.deepEqual(await records(e.KILN_HOME as string), before0);
      assert.match(result.stderr, /hash mismatch in fixed-output derivation '.*': specified: sha256-\S+, got: sha256-\S+/);
    });
    it('usage errors: exit 2', async () => {
      await expectFailure(['build'], 2, /missing DRV/);
      await expectFailure(['build', drvFile('hello'), '-j', '0'], 2, /invalid -j/);
      const help = await runKiln(['nix', '--help'], e);
      assert.equal(help.status, 0);
      for (const command of ['build', 'show', 'export', 'path-info']) assert.match(help.stdout, new RegExp(`kiln nix ${command}`));
    });
  });
});
