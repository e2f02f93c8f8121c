/**
 * The live comparison with real Nix: a handful of derivations made fresh
 * (a random nonce in every name) covering what the bridge must reproduce —
 * the sandbox environment, trees with executables, symlinks and binary data,
 * several outputs referring to each other and to themselves, a reference
 * made only by a file name, passAsFile, structured attrs with
 * exportReferencesGraph, the legacy exportReferencesGraph file, allowed
 * references, fixed outputs (flat sha256 and sha1, recursive sha256) and a
 * dependency chain — instantiated with `nix-instantiate`, so Kiln and
 * `nix-build` build the very same `.drv` files.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatNixHash, hashNar } from '../../src/nix/index.js';

/** Why real Nix cannot be compared with here, or undefined. */
export function nixSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'the comparison with Nix runs as root (single-user Nix, build users)';
  for (const program of ['nix-instantiate', 'nix-build', 'nix-store']) {
    if (spawnSync(program, ['--version']).status !== 0) return `${program} is not installed`;
  }
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed';
  const config = spawnSync('nix-instantiate', ['--eval', '--expr', 'builtins.currentSystem'], { encoding: 'utf8' });
  if (config.status !== 0) return `nix-instantiate does not run: ${config.stderr.trim()}`;
  const conf = existsSync('/etc/nix/nix.conf') ? readFileSync('/etc/nix/nix.conf', 'utf8') : '';
  if (!/^\s*sandbox\s*=\s*true\s*$/m.test(conf)) return '/etc/nix/nix.conf does not set sandbox = true (run scripts/install-deps.sh)';
  if (spawnSync('getent', ['group', 'nixbld']).status !== 0) return 'the nixbld group does not exist';
  return undefined;
}

/** The derivations of a live set, by attribute name; FOD hashes are computed here, so nothing needs fetching. */
export const LIVE_ATTRS = [
  'plain',
  'tree',
  'multi',
  'names',
  'passfile',
  'structured',
  'graph',
  'checked',
  'fodFlat',
  'fodSha1',
  'fodRecursive',
  'chain',
] as const;

export interface LiveSet {
  dir: string;
  nonce: string;
  /** attribute → `.drv` path, as nix-instantiate made it. */
  drvs: Map<string, string>;
}

/** Writes the expressions for `nonce` into `dir` and instantiates them. */
export async function instantiateLiveSet(dir: string, nonce: string): Promise<LiveSet> {
  await mkdir(join(dir, 'bb', 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(dir, 'bb', 'bin', 'busybox'));
  await chmod(join(dir, 'bb', 'bin', 'busybox'), 0o755);
  const flat = `${nonce} flat\n`;
  const sha1 = `${nonce} sha1\n`;
  const rec = `${nonce} recursive\n`;
  const recNar = await hashNar({ type: 'regular', executable: true, size: Buffer.byteLength(rec), contents: Buffer.from(rec) });
  const expr = `
let
  busybox = builtins.path { path = ./bb; name = "busybox"; };
  bb = "\${busybox}/bin/busybox";
  mk = name: attrs: builtins.derivation ({ name = "live-${nonce}-\${name}"; system = builtins.currentSystem; builder = bb; } // attrs);
  sh = script: [ "sh" "-c" script ];
in rec {
  plain = mk "plain" { args = sh "echo ${nonce} > $out; \${bb} env | \${bb} sort >> $out"; };
  tree = mk "tree" { args = sh "\${bb} mkdir -p $out/bin $out/share/a; echo '#!\${bb} sh' > $out/bin/run; \${bb} chmod +x $out/bin/run; \${bb} ln -s ../share $out/link; \${bb} ln -s \${plain} $out/dep; \${bb} touch $out/share/a/empty; \${bb} printf '\\\\377\\\\000binary' > $out/share/bin.dat"; };
  multi = mk "multi" { outputs = [ "out" "dev" "lib" ]; args = sh "echo $dev $lib > $out; echo $lib > $dev; \${bb} mkdir $lib; echo $lib > $lib/self"; };
  names = mk "names" { args = sh "\${bb} mkdir $out; \${bb} touch $out/$(\${bb} basename \${plain})"; };
  passfile = mk "passfile" { passAsFile = [ "text" "missing" ]; text = "hello ${nonce}\\n\${plain}\\n"; args = sh "\${bb} cat $textPath > $out; echo $textPath >> $out"; };
  structured = mk "structured" {
    __structuredAttrs = true; outputs = [ "out" "bin" ];
    n = 1; f = 1.5; big = 100000000000; l = [ 1 "x" true ]; deps = [ plain ]; s = "it's \${placeholder "bin"}";
    exportReferencesGraph.closure = [ tree ];
    args = sh "\${bb} mkdir \${placeholder "out"}; \${bb} cp /build/.attrs.json /build/.attrs.sh \${placeholder "out"}/; \${bb} env | \${bb} sort > \${placeholder "bin"}";
  };
  graph = mk "graph" { exportReferencesGraph = [ "closure" tree ]; args = sh "\${bb} cp closure $out"; };
  checked = mk "checked" { allowedReferences = [ plain ]; disallowedReferences = [ tree ]; args = sh "echo \${plain} > $out"; };
  fodFlat = mk "fod-flat" { outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "${createHash('sha256').update(flat).digest('hex')}"; args = sh "echo '${flat.trim()}' > $out"; };
  fodSha1 = mk "fod-sha1" { outputHashAlgo = "sha1"; outputHash = "${createHash('sha1').update(sha1).digest('hex')}"; args = sh "echo '${sha1.trim()}' > $out"; };
  fodRecursive = mk "fod-recursive" { outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "${formatNixHash(recNar.narHash, 'sri')}"; args = sh "echo '${rec.trim()}' > $out; \${bb} chmod +x $out"; };
  chain = mk "chain" { args = sh "echo \${multi.dev} \${names} \${fodRecursive} > $out"; };
  fodWrong = mk "fod-wrong" { outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "${createHash('sha256').update('something else').digest('hex')}"; args = sh "echo '${flat.trim()}' > $out"; };
}
`;
  await writeFile(join(dir, 'default.nix'), expr);
  const drvs = new Map<string, string>();
  for (const attr of [...LIVE_ATTRS, 'fodWrong']) {
    const out = execFileSync('nix-instantiate', [join(dir, 'default.nix'), '-A', attr], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    drvs.set(attr, out.trim());
  }
  return { dir, nonce, drvs };
}

/** What Nix's database records about `path` (`nix-store --dump-db`). */
export function nixPathInfo(path: string): { narHash: string; narSize: number; deriver: string; references: string[] } {
  const lines = execFileSync('nix-store', ['--dump-db', path], { encoding: 'utf8' }).split('\n');
  return {
    narHash: lines[1] as string,
    narSize: Number(lines[2]),
    deriver: lines[3] as string,
    references: lines.slice(5, 5 + Number(lines[4])),
  };
}

/** Builds `drvs` with nix-build (no result links); returns its exit status and stderr. */
export function nixBuild(drvs: readonly string[]): { status: number | null; stderr: string } {
  const result = spawnSync('nix-build', ['--no-out-link', ...drvs], { encoding: 'utf8' });
  return { status: result.status, stderr: result.stderr };
}
