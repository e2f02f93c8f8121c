/**
 * Remote builds from the outside: `bin/kiln serve` children and `bin/kiln
 * build --builder grpc+…` clients over a unix socket, TLS and mutual TLS,
 * with and without tokens; the --insecure rule; SIGTERM draining; a server
 * killed mid-build; several builders. Real bubblewrap behind the server.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bwrapSkipReason } from '../../src/build/testing/index.js';
import { buildDirsIn, interruptKiln, processesMatching, sandboxDir, shellRequest, tempDir, writeRequest } from './build-cli-kit.js';
import { repo, runKiln } from './run-kiln.js';
import { eventually, opensslSkipReason, type ServerProcess, selfSignedCert, startServer, watchKiln } from './serve-kit.js';

const skip = bwrapSkipReason();
if (skip) console.log(`# skipping remote build CLI tests: ${skip}`);
const noOpenssl = await opensslSkipReason();

const sampleRequest = join(repo, 'examples/hello-request.json');
const sampleInput = `sample-tree=${join(repo, 'examples/sample-tree')}`;
const SAMPLE_LINE = /^nix\/store\/hello: (blake3-\S+) directory size=5 references: \/nix\/store\/sample-tree\n$/;

describe('remote builds through kiln serve and kiln build --builder grpc+…', { skip: skip ?? false }, () => {
  let work: string;
  const sandbox = sandboxDir('remote');
  const bwrap = `bwrap://${sandbox}`;
  const servers: ServerProcess[] = [];
  before(async () => {
    work = await tempDir('kiln-remote-cli-');
  });
  after(async () => {
    for (const server of servers) await server.stop('SIGKILL');
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(sandbox, { recursive: true, force: true });
  });
  const fresh = (prefix: string) => fs.mkdtemp(join(work, `${prefix}-`));
  /** A server with a disk store and a KILN_HOME of its own, building on bwrap. */
  const serve = async (listen: (dir: string) => string, extra: string[] = []) => {
    const dir = await fresh('server');
    const store = join(dir, 'store');
    const server = await startServer(['--listen', listen(dir), '--store', store, '--builder', bwrap, ...extra], { KILN_HOME: dir });
    servers.push(server);
    return { server, store, dir };
  };
  const unixSocket = (dir: string) => `unix://${join(dir, 'kiln.sock')}`;
  const clientEnv = async () => ({ KILN_HOME: await fresh('client'), KILN_TOKEN: '' });
  const request = (script: string) => writeRequest(work, shellRequest(script));

  it('builds over a unix socket like a local build: same log, same output line and digest; outputs stay remote until --fetch', async () => {
    const { server } = await serve(unixSocket);
    const builder = `grpc+${server.address}`;
    const env = await clientEnv();
    const dest = join(work, 'exported-unix');
    const remote = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', builder, '--export', dest], env);
    assert.equal(remote.status, 0, remote.stderr);
    assert.match(remote.stderr.split('\n')[0] as string, /^kiln: build blake3-[A-Za-z0-9+/]{43}= on bwrap$/);
    assert.match(remote.stderr, /^building hello from \/nix\/store\/sample-tree$/m);
    assert.match(remote.stderr, /^kiln: built in /m);
    const [, digest] = SAMPLE_LINE.exec(remote.stdout) ?? assert.fail(remote.stdout);
    assert.equal(await fs.readFile(join(dest, 'hello/share/README.upper'), 'utf8'), 'KILN SAMPLE TREE: IMPORTED BY THE QUICK START.\n');

    const local = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', bwrap], await clientEnv());
    assert.equal(local.status, 0, local.stderr);
    assert.equal(remote.stdout, local.stdout, 'the same output digest as a local build');
    assert.equal(remote.stderr.split('\n')[0], local.stderr.split('\n')[0], 'the same build id and backend in the first line');

    const lsLocal = await runKiln(['castore', 'ls', digest as string], env);
    assert.equal(lsLocal.status, 1, 'without --fetch the output is not in the local store');
    const lsRemote = await runKiln(['castore', 'ls', digest as string, '--store', builder], env);
    assert.equal(lsRemote.status, 0, lsRemote.stderr);

    const fetched = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', builder, '--fetch', '--json'], env);
    assert.equal(fetched.status, 0, fetched.stderr);
    assert.match(fetched.stderr, /^kiln: fetched the outputs into .*: 3 blob\(s\) \(130 B\), 3 directories$/m);
    assert.equal(JSON.parse(fetched.stdout).outputs[0].output.directory.digest, (digest as string).slice('blake3-'.length));
    const lsFetched = await runKiln(['castore', 'ls', digest as string], env);
    assert.equal(lsFetched.status, 0, lsFetched.stderr);
    assert.match(lsFetched.stdout, /share\/README\.upper/);
    const verify = await runKiln(['castore', 'verify'], env);
    assert.equal(verify.status, 0, verify.stdout);
    assert.deepEqual(await buildDirsIn(sandbox), []);
  });

  it('kiln serve --sign-key signs each build: kiln build --provenance writes the server-signed envelope, which verifies with the server key only', async () => {
    const keys = await fresh('keys');
    for (const name of ['server.key', 'client.key']) {
      const generated = await runKiln(['key', 'generate', '--out', join(keys, name)]);
      assert.equal(generated.status, 0, generated.stderr);
    }
    const { server, store } = await serve(unixSocket, ['--sign-key', join(keys, 'server.key')]);
    const builder = `grpc+${server.address}`;
    const env = await clientEnv();
    const out = join(work, 'server-signed.json');
    const build = await runKiln(
      ['build', sampleRequest, '--input', sampleInput, '--builder', builder, '--fetch', '--json', '--provenance', out],
      env,
    );
    assert.equal(build.status, 0, build.stderr);
    assert.match(build.stderr, /^kiln: provenance signed by the builder \(key [0-9a-f]{64}\), written to /m);
    const outputDigest = Buffer.from(JSON.parse(build.stdout).outputs[0].output.directory.digest, 'base64').toString('hex');
    const envelope = JSON.parse(await fs.readFile(out, 'utf8')) as { payload: string };
    const statement = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8'));
    assert.deepEqual(
      statement.subject.map((s: { name: string; digest: { blake3: string } }) => [s.name, s.digest.blake3]),
      [['nix/store/hello', outputDigest]],
    );
    assert.match(statement.predicate.runDetails.builder.id, /^urn:kiln:builder:[^:]+:bwrap$/);

    const verified = await runKiln(['provenance', 'verify', out, '--key', join(keys, 'server.key.pub')], env);
    assert.equal(verified.status, 0, verified.stderr);
    assert.match(verified.stdout, /^subject nix\/store\/hello: matches the store$/m);
    const wrongKey = await runKiln(['provenance', 'verify', out, '--key', join(keys, 'client.key.pub')], env);
    assert.equal(wrongKey.status, 1, wrongKey.stdout);
    // The server stored it next to the output.
    await server.stop('SIGTERM');
    const listed = await runKiln(
      ['provenance', 'list', `blake3-${Buffer.from(outputDigest, 'hex').toString('base64')}`, '--store', store],
      env,
    );
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /provenance by urn:kiln:builder:\S+ \(bwrap\)/);

    // A server without a key signs nothing: the build runs, then exit 1 naming why; no file.
    const { server: plain } = await serve(unixSocket);
    const none = join(work, 'unsigned.json');
    const unsigned = await runKiln(
      ['build', sampleRequest, '--input', sampleInput, '--builder', `grpc+${plain.address}`, '--provenance', none],
      env,
    );
    assert.equal(unsigned.status, 1, unsigned.stderr);
    assert.match(unsigned.stdout, SAMPLE_LINE);
    assert.match(unsigned.stderr, /^error: the builder signed no provenance for this build/m);
    assert.equal(existsSync(none), false);
  });

  it('shows the remote log live, before the build ends, and exits 1 naming why a remote build failed', async () => {
    const { server } = await serve(unixSocket);
    const builder = `grpc+${server.address}`;
    const watched = watchKiln(
      ['build', await request('echo first; sleep 2; echo second; exit 3'), '--builder', builder],
      await clientEnv(),
    );
    await watched.waitFor('first\n');
    assert.doesNotMatch(watched.stderr(), /second/);
    const result = await watched.done;
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^first\nsecond\nerror: build failed \(exit-code\): the build exited with status 3$/m);
  });

  it('Ctrl-C on kiln build cancels the remote build: exit 130, the sandbox gone within a second', async () => {
    const { server } = await serve(unixSocket);
    const marker = `remote-ctrl-c-${process.pid}`;
    const result = await interruptKiln(
      ['build', await request(`echo remote-started; sleep 300 # ${marker}`), '--builder', `grpc+${server.address}`],
      await clientEnv(),
      'remote-started',
      () => ({ processes: processesMatching(marker), containers: [] }),
    );
    assert.equal(result.status, 130, result.stderr);
    assert.ok(result.whileRunning.processes.length > 0, 'the build was running');
    assert.ok(await eventually(() => processesMatching(marker).length === 0, 1000), 'the sandbox is gone within a second');
    assert.ok(await eventually(async () => (await buildDirsIn(sandbox)).length === 0, 3000));
  });

  describe('TLS', { skip: noOpenssl ?? false }, () => {
    let certs: { server: { cert: string; key: string }; client: { cert: string; key: string } };
    before(async () => {
      const dir = await fresh('certs');
      certs = { server: await selfSignedCert(dir, 'server'), client: await selfSignedCert(dir, 'client') };
    });

    it('builds over TCP with TLS when the client trusts the certificate, and fails clearly when it does not', async () => {
      const { server } = await serve(() => '127.0.0.1:0', ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key]);
      const port = server.address.split(':')[1];
      const env = await clientEnv();
      const ok = await runKiln(
        ['build', sampleRequest, '--input', sampleInput, '--builder', `grpc+https://localhost:${port}?ca-file=${certs.server.cert}`],
        env,
      );
      assert.equal(ok.status, 0, ok.stderr);
      assert.match(ok.stdout, SAMPLE_LINE);
      const untrusted = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', `grpc+https://localhost:${port}`], env);
      assert.equal(untrusted.status, 1, untrusted.stderr);
      assert.match(untrusted.stderr, /^error: builder grpc\+https:\/\/localhost:\d+: .*certificate/m);
      assert.doesNotMatch(untrusted.stderr, /kiln: build /);
    });

    it('with --tls-client-ca, accepts a client certificate the CA signed and refuses a client without one', async () => {
      const { server, store } = await serve(
        () => '127.0.0.1:0',
        ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key, '--tls-client-ca', certs.client.cert],
      );
      const base = `grpc+https://localhost:${server.address.split(':')[1]}?ca-file=${certs.server.cert}`;
      const env = await clientEnv();
      const refused = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', base], env);
      assert.equal(refused.status, 1, refused.stderr);
      assert.match(refused.stderr, /^error: builder grpc\+https:\/\/localhost:\d+: /m);
      assert.doesNotMatch(refused.stderr, /kiln: build /);
      const withCert = `${base}&cert-file=${certs.client.cert}&key-file=${certs.client.key}`;
      const accepted = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', withCert], env);
      assert.equal(accepted.status, 0, accepted.stderr);
      assert.match(accepted.stdout, SAMPLE_LINE);
      await server.stop();
      const verify = await runKiln(['castore', 'verify', '--json', '--store', store]);
      assert.equal(JSON.parse(verify.stdout).directories, 6, 'the input and output trees, nothing of the refused client');
    });

    it('refuses --tls-cert on a unix socket, and --tls-cert without --tls-key', async () => {
      const tlsOnUnix = await runKiln([
        'serve',
        '--listen',
        `unix://${join(work, 'x.sock')}`,
        '--tls-cert',
        certs.server.cert,
        '--tls-key',
        certs.server.key,
      ]);
      assert.equal(tlsOnUnix.status, 2);
      assert.match(tlsOnUnix.stderr, /^error: TLS needs a TCP --listen address/m);
      const half = await runKiln(['serve', '--listen', '127.0.0.1:0', '--tls-cert', certs.server.cert]);
      assert.equal(half.status, 2);
      assert.match(half.stderr, /^error: --tls-cert and --tls-key go together/m);
    });
  });

  it('with --token-file, a missing or wrong token is UNAUTHENTICATED: exit 1, nothing built, nothing stored; the right one builds', async () => {
    const tokenFile = join(work, 'token');
    await fs.writeFile(tokenFile, 'the-right-token\n');
    const wrongFile = join(work, 'wrong-token');
    await fs.writeFile(wrongFile, 'a-wrong-token\n');
    const { server, store } = await serve(unixSocket, ['--token-file', tokenFile]);
    const builder = `grpc+${server.address}`;
    const env = await clientEnv();
    const attempts = [
      ['no token', builder, env],
      ['a wrong token file', `${builder}?token-file=${wrongFile}`, env],
      ['a wrong $KILN_TOKEN', builder, { ...env, KILN_TOKEN: 'a-wrong-token' }],
    ] as const;
    for (const [what, url, attemptEnv] of attempts) {
      const result = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', url], attemptEnv);
      assert.equal(result.status, 1, `${what}: ${result.stderr}`);
      assert.match(result.stderr, /^error: builder grpc\+unix:\/\/\S+: .*missing or invalid bearer token$/m, what);
      assert.doesNotMatch(result.stderr, /kiln: build |building hello/, `${what}: nothing built`);
    }
    assert.deepEqual(await buildDirsIn(sandbox), []);
    const castoreWithoutToken = await runKiln(['castore', 'ls', 'blake3-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', '--store', builder]);
    assert.equal(castoreWithoutToken.status, 1);
    assert.match(castoreWithoutToken.stderr, /missing or invalid bearer token/);

    await server.stop();
    const empty = await runKiln(['castore', 'verify', '--json', '--store', store]);
    assert.deepEqual(JSON.parse(empty.stdout), { blobs: 0, blobBytes: 0, directories: 0, problems: [] }, 'nothing stored');

    const again = await startServer(['--listen', server.address, '--store', store, '--builder', bwrap, '--token-file', tokenFile], {
      KILN_HOME: await fresh('server'),
    });
    servers.push(again);
    const right = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', `${builder}?token-file=${tokenFile}`], env);
    assert.equal(right.status, 0, right.stderr);
    const viaEnv = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', builder], {
      ...env,
      KILN_TOKEN: 'the-right-token',
    });
    assert.equal(viaEnv.status, 0, viaEnv.stderr);
    assert.equal(viaEnv.stdout, right.stdout);
  });

  it('refuses to listen on a non-loopback TCP address without a token or TLS unless --insecure', async () => {
    for (const listen of ['0.0.0.0:0', '[::]:0']) {
      const refused = await runKiln(['serve', '--listen', listen, '--store', 'memory://']);
      assert.equal(refused.status, 2, refused.stderr);
      assert.match(refused.stderr, /^error: refusing to serve on .* not a loopback address, without --token-file or TLS .*--insecure/m);
      assert.equal(refused.stdout, '');
    }
    const tokenFile = join(work, 'insecure-token');
    await fs.writeFile(tokenFile, 't');
    for (const extra of [['--insecure'], ['--token-file', tokenFile]]) {
      const server = await startServer(['--listen', '0.0.0.0:0', '--store', 'memory://', '--builder', bwrap, ...extra]);
      servers.push(server);
      assert.match(server.address, /^0\.0\.0\.0:\d+$/);
      assert.equal(await server.stop(), 0);
    }
    const loopback = await startServer(['--listen', '127.0.0.1:0', '--store', 'memory://', '--builder', bwrap]);
    servers.push(loopback);
    assert.equal(await loopback.stop(), 0, 'loopback needs neither');
  });

  it('on SIGTERM, lets a running build finish, refuses new ones, then exits 0', async () => {
    const { server } = await serve(unixSocket);
    const builder = `grpc+${server.address}`;
    const env = await clientEnv();
    const running = watchKiln(
      ['build', await request('echo draining-started; sleep 2; echo finishing; echo ok > $out'), '--builder', builder],
      env,
    );
    await running.waitFor('draining-started\n');
    server.child.kill('SIGTERM');
    assert.ok(await eventually(() => server.stderr().includes('kiln: shutting down')), server.stderr());
    const refused = await runKiln(['build', await request('echo too late > $out'), '--builder', builder], env);
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /^error: builder \S+: the server is shutting down$/m);
    const result = await running.done;
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /^finishing\nkiln: built in /m);
    assert.equal(await server.exited, 0);
    assert.match(server.stderr(), /letting 1 running build\(s\) finish for up to 30 s/);
    await assert.rejects(fs.access(server.address.slice('unix://'.length)), 'the socket is removed');
  });

  it('on SIGINT with --drain-timeout, cancels what is still running at the deadline and leaves nothing behind', async () => {
    const { server } = await serve(unixSocket, ['--drain-timeout', '1s']);
    const marker = `drain-deadline-${process.pid}`;
    const running = watchKiln(
      ['build', await request(`echo started; sleep 300 # ${marker}`), '--builder', `grpc+${server.address}`],
      await clientEnv(),
    );
    await running.waitFor('started\n');
    assert.ok(processesMatching(marker).length > 0, 'the build runs');
    const sent = performance.now();
    server.child.kill('SIGINT');
    const result = await running.done;
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, /^error: build failed \(cancelled\): the build was cancelled: the server is shutting down$/m);
    assert.equal(await server.exited, 0);
    assert.ok(performance.now() - sent < 5000, `the server stopped ${performance.now() - sent} ms after SIGTERM`);
    assert.deepEqual(processesMatching(marker), []);
    assert.deepEqual(await buildDirsIn(sandbox), []);
  });

  it('a server killed mid-build: the client fails clearly, no sandbox survives, and after a restart the store verifies clean', async () => {
    const { server, store, dir } = await serve(unixSocket);
    const marker = `killed-server-${process.pid}`;
    const script = `echo started; head -c 3000000 /dev/urandom > big; sleep 300 # ${marker}`;
    const env = await clientEnv();
    const running = watchKiln(['build', sampleRequest, '--input', sampleInput, '--builder', `grpc+${server.address}`], env);
    assert.equal((await running.done).status, 0, 'a first build fills the store');
    const client = watchKiln(['build', await request(script), '--builder', `grpc+${server.address}`], env);
    await client.waitFor('started\n');
    assert.ok(processesMatching(marker).length > 0, 'the build runs');
    assert.equal((await buildDirsIn(sandbox)).length, 1);
    // The build's cgroups, named after the invocation ids the server's journals are named after.
    const pid = server.child.pid as number;
    const ids = (await fs.readdir(join(dir, 'journals', String(pid)))).map((name) => name.replace(/\.events$/, ''));
    const cgroupLine = (await fs.readFile(`/proc/${pid}/cgroup`, 'utf8'))
      .split('\n')
      .find((l) => l.split(':')[1]?.split(',').includes('pids'));
    const cgroups = () =>
      ids.map((id) => join('/sys/fs/cgroup/pids', cgroupLine?.split(':')[2] ?? '/', `kiln-${id}`)).filter((d) => existsSync(d));
    assert.equal(cgroups().length, 1, 'the running build has its cgroup');
    await server.stop('SIGKILL');
    assert.ok(await eventually(() => processesMatching(marker).length === 0, 3000), 'the sandbox died with the server');

    const restarted = await startServer(['--listen', server.address, '--store', store, '--builder', bwrap], { KILN_HOME: dir });
    servers.push(restarted);
    assert.match(restarted.stderr(), /cleaned up after a server that did not shut down: 1 build\(s\), 1 build dir\(s\)/);
    assert.deepEqual(await buildDirsIn(sandbox), [], 'no build dir survives');
    assert.deepEqual(cgroups(), [], 'no cgroup survives');
    const result = await client.done;
    assert.equal(result.status, 1, result.stderr);
    assert.match(
      result.stderr,
      /^error: builder grpc\+unix:\/\/\S+: the build was lost with the connection \(.+\); a builder URL with reattach-grace=DURATION keeps a build running/m,
    );
    const verify = await runKiln(['castore', 'verify', '--json', '--store', store]);
    assert.equal(verify.status, 0, verify.stdout + verify.stderr);
    const report = JSON.parse(verify.stdout);
    assert.deepEqual(report.problems, []);
    assert.ok(report.blobs > 0 && report.directories > 0, verify.stdout);
    const again = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', `grpc+${restarted.address}`], env);
    assert.equal(again.status, 0, again.stderr);
  });

  it('dispatches among several --builder URLs, skipping one that is unreachable; fails naming each when none can build', async () => {
    const { server } = await serve(unixSocket);
    const env = await clientEnv();
    const gone = `grpc+unix://${join(work, 'nobody-listens.sock')}`;
    const result = await runKiln(
      ['build', sampleRequest, '--input', sampleInput, '--builder', gone, '--builder', `grpc+${server.address}`],
      env,
    );
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, SAMPLE_LINE);
    const none = await runKiln(['build', sampleRequest, '--input', sampleInput, '--builder', gone, '--builder', `${gone}2`], env);
    assert.equal(none.status, 1, none.stderr);
    assert.match(none.stderr, /^error: no builder could take the build: .*nobody-listens\.sock.*nobody-listens\.sock2/m);
    const mixed = await runKiln(['build', sampleRequest, '--builder', bwrap, '--builder', `grpc+${server.address}`], env);
    assert.equal(mixed.status, 2);
    assert.match(mixed.stderr, /several builders can only be remote ones/);
    const limits = await runKiln(['build', sampleRequest, '--builder', `grpc+${server.address}`, '--timeout', '1s'], env);
    assert.equal(limits.status, 2);
    assert.match(limits.stderr, /^error: --timeout applies to local builders only/m);
  });
});
