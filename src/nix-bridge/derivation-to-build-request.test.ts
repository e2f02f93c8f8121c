import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type BuildRequest, validateBuildRequest } from '../build/index.js';
import { B3Digest, directoryNode, type Node } from '../castore/index.js';
import { parseDerivation } from '../nix/index.js';
import { hashPlaceholder } from './derivation-environment.js';
import { derivationToBuildRequest } from './derivation-to-build-request.js';

const FIXTURES = '/work/shared/vectors/snix-fixtures';
const fixture = (name: string) => readFileSync(join(FIXTURES, name));

/** The 12 variables Snix fixes (reference §5.4), with Snix's NIX_BUILD_CORES = 0. */
const FIXED_ENV: [string, string][] = [
  ['HOME', '/homeless-shelter'],
  ['NIX_BUILD_CORES', '0'],
  ['NIX_BUILD_TOP', '/build'],
  ['NIX_LOG_FD', '2'],
  ['NIX_STORE', '/nix/store'],
  ['PATH', '/path-not-set'],
  ['PWD', '/build'],
  ['TEMP', '/build'],
  ['TEMPDIR', '/build'],
  ['TERM', 'xterm-256color'],
  ['TMP', '/build'],
  ['TMPDIR', '/build'],
];

const envOf = (request: BuildRequest) => request.environmentVars.map(({ key, value }) => [key, Buffer.from(value).toString()]);
const sorted = (entries: [string, string][]) => [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
const inputNames = (request: BuildRequest) => request.inputs.map((i) => Buffer.from(i.name).toString());

function translate(drvText: string | Buffer, drvPath: string, inputs = new Map<string, Node>()) {
  const drv = parseDerivation(typeof drvText === 'string' ? Buffer.from(drvText) : drvText);
  const result = derivationToBuildRequest(drv, inputs, { drvPath, buildCores: 0 });
  validateBuildRequest(result.request);
  return result;
}

function assertCommon(request: BuildRequest): void {
  assert.equal(request.workingDir, 'build');
  assert.deepEqual(request.scratchPaths, ['build', 'nix/store']);
  assert.equal(request.inputsDir, 'nix/store');
}

describe('derivationToBuildRequest: the expected BuildRequests of reference §5.8', () => {
  it('test 1: an input-addressed derivation with an input derivation output', () => {
    const zero = directoryNode(B3Digest.fromBytes(new Uint8Array(32)), 42);
    const { request, needlePaths } = translate(
      fixture('ch49594n9avinrf8ip0aslidkc4lxkqv-foo.drv'),
      '/nix/store/ch49594n9avinrf8ip0aslidkc4lxkqv-foo.drv',
      new Map([['/nix/store/mp57d33657rf34lzvlbpfa1gjfv5gmpg-bar', zero]]),
    );
    assertCommon(request);
    assert.deepEqual(request.commandArgs, [':']);
    assert.deepEqual(request.outputs, ['nix/store/fhaj6gmwns62s6ypkcldbaj2ybvkhx3p-foo']);
    assert.deepEqual(inputNames(request), ['mp57d33657rf34lzvlbpfa1gjfv5gmpg-bar']);
    assert.deepEqual(request.inputs[0]?.node, zero);
    assert.deepEqual(request.constraints, { system: ':', minMemory: 0, availableRoPaths: [], networkAccess: false, provideBinSh: true });
    assert.deepEqual(request.additionalFiles, []);
    assert.deepEqual(request.refscanNeedles, ['fhaj6gmwns62s6ypkcldbaj2ybvkhx3p', 'mp57d33657rf34lzvlbpfa1gjfv5gmpg']);
    assert.deepEqual(needlePaths, ['/nix/store/fhaj6gmwns62s6ypkcldbaj2ybvkhx3p-foo', '/nix/store/mp57d33657rf34lzvlbpfa1gjfv5gmpg-bar']);
    assert.deepEqual(
      envOf(request),
      sorted([
        ...FIXED_ENV,
        ['bar', '/nix/store/mp57d33657rf34lzvlbpfa1gjfv5gmpg-bar'],
        ['builder', ':'],
        ['name', 'foo'],
        ['out', '/nix/store/fhaj6gmwns62s6ypkcldbaj2ybvkhx3p-foo'],
        ['system', ':'],
      ]),
    );
  });

  it('test 2: output placeholders are replaced in arguments and env, other placeholders are not', () => {
    assert.equal(hashPlaceholder('out'), '/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9');
    assert.equal(hashPlaceholder('non-existent'), '/1zwrijlc0ixcpdjslshwq3nd28rbbmp6812lh5c49ifrcc3gk3mz');
    const out = '/nix/store/dgapb8kh5gis4w7hzfl5725sx5gam0nz-with-placeholders';
    const { request } = translate(
      fixture('18m7y1d025lqgrzx8ypnhjbvq23z2kda-with-placeholders.drv'),
      '/nix/store/18m7y1d025lqgrzx8ypnhjbvq23z2kda-with-placeholders.drv',
    );
    assertCommon(request);
    assert.deepEqual(request.commandArgs, ['/bin/sh', '-c', out, '/1zwrijlc0ixcpdjslshwq3nd28rbbmp6812lh5c49ifrcc3gk3mz']);
    assert.deepEqual(request.outputs, [out.slice(1)]);
    assert.deepEqual(request.inputs, []);
    assert.deepEqual(request.constraints, {
      system: 'x86_64-linux',
      minMemory: 0,
      availableRoPaths: [],
      networkAccess: false,
      provideBinSh: true,
    });
    assert.deepEqual(request.refscanNeedles, ['dgapb8kh5gis4w7hzfl5725sx5gam0nz']);
    assert.deepEqual(
      envOf(request),
      sorted([
        ['BAR', '/1zwrijlc0ixcpdjslshwq3nd28rbbmp6812lh5c49ifrcc3gk3mz'],
        ['FOO', out],
        ...FIXED_ENV,
        ['builder', '/bin/sh'],
        ['name', 'with-placeholders'],
        ['out', out],
        ['system', 'x86_64-linux'],
      ]),
    );
  });

  it('test 3: a fixed-output derivation gets network access (and, as in Nix, NIX_OUTPUT_CHECKED=1)', () => {
    const { request } = translate(
      fixture('0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv'),
      '/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv',
    );
    assertCommon(request);
    assert.deepEqual(request.commandArgs, [':']);
    assert.deepEqual(request.outputs, ['nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar']);
    assert.deepEqual(request.constraints, { system: ':', minMemory: 0, availableRoPaths: [], networkAccess: true, provideBinSh: true });
    assert.deepEqual(request.refscanNeedles, ['4q0pg5zpfmznxscq3avycvf9xdvx50n3']);
    // Deviation from Snix's expectation: Nix sets NIX_OUTPUT_CHECKED=1 for fixed-output derivations.
    assert.deepEqual(
      envOf(request),
      sorted([
        ...FIXED_ENV,
        ['NIX_OUTPUT_CHECKED', '1'],
        ['builder', ':'],
        ['name', 'bar'],
        ['out', '/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar'],
        ['outputHash', '08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba'],
        ['outputHashAlgo', 'sha256'],
        ['outputHashMode', 'recursive'],
        ['system', ':'],
      ]),
    );
  });

  it('test 4: passAsFile moves values into build/.attr-<hash> files', () => {
    const aterm =
      'Derive([("out","/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo","","")],[],[],":",":",[],[("bar","baz"),("baz","bar"),("builder",":"),("name","foo"),("out","/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo"),("passAsFile","bar baz"),("system",":")])';
    const { request } = translate(aterm, '/nix/store/z10frkf0mxx03wgcj82648sgzqzkb2a9-foo.drv');
    assertCommon(request);
    assert.deepEqual(request.commandArgs, [':']);
    assert.deepEqual(request.outputs, ['nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo']);
    assert.deepEqual(request.refscanNeedles, ['pp17lwra2jkx8rha15qabg2q3wij72lj']);
    assert.deepEqual(
      request.additionalFiles.map((f) => [f.path, Buffer.from(f.contents).toString()]),
      [
        ['build/.attr-15l04iksj1280dvhbzdq9ai3wlf8ac2188m9qv0gn81k9nba19ds', 'bar'],
        ['build/.attr-1fcgpy7vc4ammr7s17j2xq88scswkgz23dqzc04g8sx5vcp2pppw', 'baz'],
      ],
    );
    assert.deepEqual(
      envOf(request),
      sorted([
        ...FIXED_ENV,
        ['barPath', '/build/.attr-1fcgpy7vc4ammr7s17j2xq88scswkgz23dqzc04g8sx5vcp2pppw'],
        ['bazPath', '/build/.attr-15l04iksj1280dvhbzdq9ai3wlf8ac2188m9qv0gn81k9nba19ds'],
        ['builder', ':'],
        ['name', 'foo'],
        ['out', '/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo'],
        ['passAsFile', 'bar baz'],
        ['system', ':'],
      ]),
    );
  });
});

describe('derivationToBuildRequest: Nix 2.8 behaviour where Snix differs', () => {
  const base = (env: string, outputs = '[("out","/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo","","")]') =>
    `Derive(${outputs},[],[],"x86_64-linux","/bin/sh",[],[${env}])`;

  it('the derivation overrides PATH, HOME, NIX_STORE and NIX_BUILD_CORES but not the build dir, TERM or NIX_LOG_FD', () => {
    const { request } = translate(
      base(
        '("HOME","/h"),("NIX_BUILD_CORES","7"),("NIX_LOG_FD","9"),("NIX_STORE","/s"),("PATH","/p"),("PWD","/x"),("TERM","dumb"),("TMPDIR","/t"),("out","/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo")',
      ),
      '/nix/store/z10frkf0mxx03wgcj82648sgzqzkb2a9-foo.drv',
    );
    const env = Object.fromEntries(envOf(request));
    assert.equal(env.HOME, '/h');
    assert.equal(env.PATH, '/p');
    assert.equal(env.NIX_STORE, '/s');
    assert.equal(env.NIX_BUILD_CORES, '7');
    assert.equal(env.PWD, '/build');
    assert.equal(env.TMPDIR, '/build');
    assert.equal(env.TERM, 'xterm-256color');
    assert.equal(env.NIX_LOG_FD, '2');
  });

  it('passAsFile splits on any whitespace and ignores names the env lacks', () => {
    const { request } = translate(
      base('("a","1"),("out","/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo"),("passAsFile"," a\\n\\tmissing  ")'),
      '/nix/store/z10frkf0mxx03wgcj82648sgzqzkb2a9-foo.drv',
    );
    const env = Object.fromEntries(envOf(request));
    assert.equal(env.a, undefined);
    assert.match(env.aPath ?? '', /^\/build\/\.attr-[0-9a-z]{52}$/);
    assert.equal(env.missingPath, undefined);
    assert.equal(request.additionalFiles.length, 1);
  });

  it('impureEnvVars reach fixed-output derivations only', () => {
    const fod =
      'Derive([("out","/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar","r:sha256","08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba")],[],[],":",":",[],[("impureEnvVars","http_proxy unset_var"),("out","/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar")])';
    const drv = parseDerivation(Buffer.from(fod));
    const { request } = derivationToBuildRequest(drv, new Map(), {
      drvPath: '/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv',
      impureEnv: { http_proxy: 'http://proxy:3128' },
    });
    const env = Object.fromEntries(envOf(request));
    assert.equal(env.http_proxy, 'http://proxy:3128');
    assert.equal(env.unset_var, '');
    const plain = translate(
      base('("impureEnvVars","http_proxy"),("out","/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo")'),
      '/nix/store/z10frkf0mxx03wgcj82648sgzqzkb2a9-foo.drv',
    );
    assert.equal(Object.fromEntries(envOf(plain.request)).http_proxy, undefined);
  });

  it('structured attrs become .attrs.json and .attrs.sh instead of env entries', () => {
    const drvPath = '/nix/store/9lj1lkjm2ag622mh4h9rpy6j607an8g2-structured-attrs.drv';
    const { request } = translate(fixture('9lj1lkjm2ag622mh4h9rpy6j607an8g2-structured-attrs.drv'), drvPath);
    const out = '/nix/store/6a39dl014j57bqka7qx25k0vb20vkqm6-structured-attrs';
    assert.deepEqual(
      envOf(request),
      sorted([
        ...FIXED_ENV,
        ['NIX_ATTRS_JSON_FILE', '/tmp/nix-build-structured-attrs.drv-0/.attrs.json'],
        ['NIX_ATTRS_SH_FILE', '/tmp/nix-build-structured-attrs.drv-0/.attrs.sh'],
      ]),
    );
    assert.deepEqual(
      request.additionalFiles.map((f) => [f.path, Buffer.from(f.contents).toString()]),
      [
        ['build/.attrs.json', `{"builder":":","name":"structured-attrs","outputs":{"out":"${out}"},"system":":"}`],
        [
          'build/.attrs.sh',
          `declare builder=':'\ndeclare name='structured-attrs'\ndeclare -A outputs=(['out']='${out}' )\ndeclare system=':'\n`,
        ],
      ],
    );
  });

  it('non-UTF-8 env values pass as raw bytes; a non-UTF-8 argument is refused', () => {
    const drv = parseDerivation(fixture('x6p0hg79i3wg0kkv7699935f7rrj9jf3-latin1.drv'));
    const { request } = derivationToBuildRequest(drv, new Map(), { drvPath: '/nix/store/x6p0hg79i3wg0kkv7699935f7rrj9jf3-latin1.drv' });
    const chars = request.environmentVars.find((e) => e.key === 'chars');
    assert.deepEqual(chars && [...chars.value], [0xc5, 0xc4, 0xd6]);
  });
});
