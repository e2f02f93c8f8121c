/**
 * What Nix 2.8's sandbox hands a builder besides its inputs: the
 * environment and the files it writes into the build directory before the
 * build starts. Reproduces `LocalDerivationGoal::initEnv`, `initTmpDir`,
 * `writeStructuredAttrs` and `exportReferencesGraph` (checked against Nix
 * 2.8 runs, see the README); where Snix's glue differs, Nix wins:
 *
 * - start: `PATH=/path-not-set`, `HOME=/homeless-shelter`, `NIX_STORE`,
 *   `NIX_BUILD_CORES` (the host's core count by default, as Nix);
 * - then the derivation's env, which overrides those four (not in
 *   structured mode); `passAsFile` names (split on whitespace, unknown
 *   names ignored) become `<name>Path=/build/.attr-<nixbase32 sha256(name)>`
 *   with the value in that file;
 * - then, always winning: `NIX_BUILD_TOP`, `TMPDIR`, `TEMPDIR`, `TMP`, `TEMP`,
 *   `PWD` = `/build`; `NIX_OUTPUT_CHECKED=1` and the `impureEnvVars` for
 *   fixed-output derivations; `NIX_LOG_FD=2`, `TERM=xterm-256color`;
 * - structured attrs: `/build/.attrs.json` and `/build/.attrs.sh`, and
 *   `NIX_ATTRS_JSON_FILE`/`NIX_ATTRS_SH_FILE`, which Nix 2.8 sets to the
 *   *host* build directory (`/tmp/nix-build-<drv name>-0/…`, a path that does
 *   not exist in the sandbox; fixed in later Nix) — reproduced as such;
 * - `exportReferencesGraph`: the closure of each named input path, as a
 *   registration file (`/build/<name>`) or, in structured mode, as path-info
 *   JSON in the attributes;
 * - finally every output's placeholder (`/<nixbase32 sha256("nix-output:<name>")>`)
 *   is replaced by the output's path in every `KEY=VALUE`, in the arguments
 *   (not the builder) and in every file written.
 *
 * Pure: no I/O.
 */
import { cpus } from 'node:os';
import {
  compareNixStrings,
  DEFAULT_STORE_DIR,
  type Derivation,
  encodeNixbase32,
  formatContentAddress,
  isFixedOutput,
  isUtf8NixString,
  nixStringToBytes,
  parseAbsoluteStorePath,
  sha256,
  splitAbsoluteStorePath,
} from '../nix/index.js';
import { NixBridgeError } from './errors.js';
import { formatNarHash, type PathInfo } from './path-info.js';
import {
  type AttrValue,
  dumpStructuredAttrs,
  parseStructuredAttrs,
  stringsAttr,
  structuredAttrsShell,
  withAttr,
} from './structured-attrs.js';

/** Where the build directory appears in the sandbox (Nix's `sandbox-build-dir`). */
export const SANDBOX_BUILD_DIR = '/build';

export interface DerivationEnvironmentOptions {
  /** The derivation's `.drv` path (absolute): names the host build directory in structured mode. */
  drvPath: string;
  /** `NIX_BUILD_CORES`; default the number of CPU cores, as Nix's `cores` setting. */
  buildCores?: number;
  /** Values of `impureEnvVars` for fixed-output derivations (Nix takes its own environment); unset names give `""`. */
  impureEnv?: Readonly<Record<string, string | undefined>>;
  /** Path infos of the input closure, for `exportReferencesGraph` (absolute store path → info). */
  pathInfos?: ReadonlyMap<string, PathInfo>;
  storeDir?: string;
}

export interface DerivationEnvironment {
  /** Raw key bytes (as a latin1 string, so sorting by it sorts by bytes) → raw value bytes. */
  readonly env: Map<string, Uint8Array>;
  /** Files for the build directory: name inside `/build` → contents. */
  readonly files: Map<string, Uint8Array>;
  /** The builder's arguments, placeholders replaced. */
  readonly args: Uint8Array[];
  /** The structured attributes, when the derivation has `__json`. */
  readonly structuredAttrs?: AttrValue;
}

let cores: number | undefined;
/** The host's core count (`os.cpus()` reads /proc each time; it does not change). */
function hostCores(): number {
  cores ??= cpus().length;
  return cores;
}

/** `/<nixbase32(sha256("nix-output:<name>"))>`: what `builtins.placeholder` returns. */
export function hashPlaceholder(outputName: string): string {
  return `/${encodeNixbase32(sha256(`nix-output:${outputName}`))}`;
}

const latin1 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
const fromLatin1 = (text: string) => new Uint8Array(Buffer.from(text, 'latin1'));
const ascii = (text: string) => new Uint8Array(Buffer.from(text, 'latin1'));

/** Nix's `rewriteStrings`: each rewrite in order, every occurrence, left to right. */
export function rewriteBytes(data: Uint8Array, rewrites: readonly (readonly [Uint8Array, Uint8Array])[]): Uint8Array {
  let buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (const [from, to] of rewrites) {
    if (Buffer.compare(from, to) === 0) continue;
    let at = buf.indexOf(from);
    if (at < 0) continue;
    const parts: Buffer[] = [];
    let start = 0;
    while (at >= 0) {
      parts.push(buf.subarray(start, at), Buffer.from(to));
      start = at + from.byteLength;
      at = buf.indexOf(from, start);
    }
    parts.push(buf.subarray(start));
    buf = Buffer.concat(parts);
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Nix's `tokenizeString` with the default separators: split on space, tab, CR and LF, dropping empty tokens. */
function tokenize(text: string): string[] {
  return text.split(/[ \t\n\r]+/).filter((t) => t !== '');
}

function invalid(message: string, field: string): NixBridgeError {
  return new NixBridgeError('INVALID_DERIVATION', message, { details: { field } });
}

/** The derivation's structured attributes, when it has `__json`; throws `INVALID_DERIVATION` when it does not parse. */
export function structuredAttrsOf(drv: Derivation): AttrValue | undefined {
  const json = drv.env.get('__json');
  if (json === undefined) return undefined;
  if (!isUtf8NixString(json)) throw invalid('cannot process __json attribute: invalid UTF-8', '__json');
  const attrs = parseStructuredAttrs(json);
  if (attrs.type !== 'object') throw invalid('cannot process __json attribute: not a JSON object', '__json');
  return attrs;
}

/** Nix's `getStringsAttr`: a list from structured attrs, or the whitespace-separated tokens of an env value. */
export function stringsAttrOf(drv: Derivation, attrs: AttrValue | undefined, name: string): string[] | undefined {
  if (attrs) return stringsAttr(attrs, name);
  const value = drv.env.get(name);
  return value === undefined ? undefined : tokenize(value);
}

/** Nix's `getBoolAttr`: a JSON boolean, or the env value `1`. */
export function boolAttrOf(drv: Derivation, attrs: AttrValue | undefined, name: string): boolean {
  if (attrs) {
    const value = attrs.type === 'object' ? attrs.entries.get(name) : undefined;
    if (value === undefined) return false;
    if (value.type !== 'boolean') throw invalid(`attribute '${name}' of the derivation must be a Boolean`, name);
    return value.value;
  }
  return drv.env.get(name) === '1';
}

/** The closure of `roots` over the references in `infos` (Nix's `exportReferences`, inputs only). */
function exportReferences(roots: readonly string[], infos: ReadonlyMap<string, PathInfo>, storeDir: string): string[] {
  const seen = new Set<string>();
  const queue: string[] = [];
  for (const root of roots) {
    if (!infos.has(root)) {
      throw new NixBridgeError(
        'INVALID_DERIVATION',
        `cannot export references of path '${root}' because it is not in the input closure of the derivation`,
        { details: { field: 'exportReferencesGraph', path: root } },
      );
    }
    queue.push(root);
  }
  while (queue.length > 0) {
    const path = queue.pop() as string;
    if (seen.has(path)) continue;
    seen.add(path);
    for (const ref of infos.get(path)?.references ?? []) if (!seen.has(ref)) queue.push(ref);
  }
  return [...seen].sort((a, b) => {
    const pa = parseAbsoluteStorePath(a, storeDir);
    const pb = parseAbsoluteStorePath(b, storeDir);
    return pa.baseName < pb.baseName ? -1 : pa.baseName > pb.baseName ? 1 : 0;
  });
}

/** `makeValidityRegistration(paths, false, false)`: path, empty deriver, reference count, references. */
function validityRegistration(paths: readonly string[], infos: ReadonlyMap<string, PathInfo>): string {
  let out = '';
  for (const path of paths) {
    const refs = infos.get(path)?.references ?? [];
    out += `${path}\n\n${refs.length}\n${refs.map((r) => `${r}\n`).join('')}`;
  }
  return out;
}

/** `pathInfoToJSON(paths, false, true)` as nlohmann holds it: path, narHash, narSize, references, ca, closureSize. */
function pathInfosAttr(paths: readonly string[], infos: ReadonlyMap<string, PathInfo>, storeDir: string): AttrValue {
  return {
    type: 'array',
    items: paths.map((path) => {
      const info = infos.get(path) as PathInfo;
      const closure = exportReferences([path], infos, storeDir);
      const closureSize = closure.reduce((sum, p) => sum + (infos.get(p)?.narSize ?? 0), 0);
      const entries = new Map<string, AttrValue>([
        ['closureSize', { type: 'integer', value: BigInt(closureSize) }],
        ['narHash', { type: 'string', value: formatNarHash(info.narHash) }],
        ['narSize', { type: 'integer', value: BigInt(info.narSize) }],
        ['path', { type: 'string', value: path }],
        ['references', { type: 'array', items: info.references.map((r) => ({ type: 'string', value: r }) as AttrValue) }],
      ]);
      if (info.ca) entries.set('ca', { type: 'string', value: formatContentAddress(info.ca) });
      return { type: 'object', entries: new Map([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) } as AttrValue;
    }),
  };
}

/** The store path (without sub-path) of an absolute path in the store, as Nix's `toStorePath`. */
function storePathOf(path: string, storeDir: string): string {
  try {
    return splitAbsoluteStorePath(path, storeDir).storePath.toAbsolute(storeDir);
  } catch (error) {
    throw new NixBridgeError('INVALID_DERIVATION', `'exportReferencesGraph' contains a non-store path '${path}'`, {
      cause: error,
      details: { field: 'exportReferencesGraph' },
    });
  }
}

export function derivationEnvironment(drv: Derivation, options: DerivationEnvironmentOptions): DerivationEnvironment {
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  const infos = options.pathInfos ?? new Map<string, PathInfo>();
  const attrs = structuredAttrsOf(drv);
  const env = new Map<string, string>(); // latin1 key → latin1 value (both raw bytes)
  const files = new Map<string, Uint8Array>();
  const set = (key: string, value: string) => env.set(latin1(nixStringToBytes(key)), latin1(nixStringToBytes(value)));

  const rewrites: [Uint8Array, Uint8Array][] = [...drv.outputs]
    .filter(([, output]) => output.path !== '')
    .map(([name, output]) => [ascii(hashPlaceholder(name)), ascii(output.path)] as [Uint8Array, Uint8Array])
    .sort(([a], [b]) => Buffer.compare(a, b));
  const rewrite = (bytes: Uint8Array) => rewriteBytes(bytes, rewrites);

  set('PATH', '/path-not-set');
  set('HOME', '/homeless-shelter');
  set('NIX_STORE', storeDir);
  set('NIX_BUILD_CORES', String(options.buildCores ?? hostCores()));

  if (!attrs) {
    const passAsFile = new Set(tokenize(drv.env.get('passAsFile') ?? ''));
    for (const key of [...drv.env.keys()].sort(compareNixStrings)) {
      const value = drv.env.get(key) as string;
      if (!passAsFile.has(key)) {
        set(key, value);
        continue;
      }
      const name = `.attr-${encodeNixbase32(sha256(nixStringToBytes(key)))}`;
      files.set(name, rewrite(nixStringToBytes(value)));
      set(`${key}Path`, `${SANDBOX_BUILD_DIR}/${name}`);
    }
  }
  set('NIX_BUILD_TOP', SANDBOX_BUILD_DIR);
  for (const key of ['TMPDIR', 'TEMPDIR', 'TMP', 'TEMP', 'PWD']) set(key, SANDBOX_BUILD_DIR);
  if (isFixedOutput(drv)) {
    set('NIX_OUTPUT_CHECKED', '1');
    for (const name of stringsAttrOf(drv, attrs, 'impureEnvVars') ?? []) set(name, options.impureEnv?.[name] ?? '');
  }
  set('NIX_LOG_FD', '2');
  set('TERM', 'xterm-256color');

  if (attrs) {
    let json = withAttr(attrs, 'outputs', {
      type: 'object',
      entries: new Map([...drv.outputs.keys()].map((name) => [name, { type: 'string', value: hashPlaceholder(name) } as AttrValue])),
    });
    const graph = attrs.type === 'object' ? attrs.entries.get('exportReferencesGraph') : undefined;
    if (graph?.type === 'object') {
      for (const [name, roots] of graph.entries) {
        const list = roots.type === 'array' ? roots.items : [roots];
        const paths = list.map((item) => {
          if (item.type !== 'string') throw invalid(`exportReferencesGraph.${name} must hold store paths`, 'exportReferencesGraph');
          try {
            return parseAbsoluteStorePath(item.value, storeDir).toAbsolute(storeDir);
          } catch (error) {
            throw new NixBridgeError('INVALID_DERIVATION', `exportReferencesGraph.${name}: ${(error as Error).message}`, {
              cause: error,
              details: { field: 'exportReferencesGraph' },
            });
          }
        });
        json = withAttr(json, name, pathInfosAttr(exportReferences(paths, infos, storeDir), infos, storeDir));
      }
    }
    const hostBuildDir = `/tmp/nix-build-${parseAbsoluteStorePath(options.drvPath, storeDir).name}-0`;
    files.set('.attrs.sh', rewrite(Buffer.from(structuredAttrsShell(json))));
    set('NIX_ATTRS_SH_FILE', `${hostBuildDir}/.attrs.sh`);
    files.set('.attrs.json', rewrite(Buffer.from(dumpStructuredAttrs(json))));
    set('NIX_ATTRS_JSON_FILE', `${hostBuildDir}/.attrs.json`);
  } else {
    const spec = drv.env.get('exportReferencesGraph') ?? '';
    const tokens = tokenize(spec);
    if (tokens.length % 2 !== 0) throw invalid(`odd number of tokens in 'exportReferencesGraph': '${spec}'`, 'exportReferencesGraph');
    for (let i = 0; i < tokens.length; i += 2) {
      const fileName = tokens[i] as string;
      if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(fileName)) {
        throw invalid(`invalid file name '${fileName}' in 'exportReferencesGraph'`, 'exportReferencesGraph');
      }
      const closure = exportReferences([storePathOf(tokens[i + 1] as string, storeDir)], infos, storeDir);
      files.set(fileName, Buffer.from(validityRegistration(closure, infos)));
    }
  }

  // Nix rewrites each `KEY=VALUE` string as a whole; a key that then holds `=` ends at the first one.
  const finalEnv = new Map<string, Uint8Array>();
  for (const [key, value] of env) {
    const entry = latin1(rewrite(fromLatin1(`${key}=${value}`)));
    const eq = entry.indexOf('=');
    finalEnv.set(entry.slice(0, eq), fromLatin1(entry.slice(eq + 1)));
  }
  const args = drv.args.map((arg) => rewrite(nixStringToBytes(arg)));
  return { env: finalEnv, files, args, ...(attrs ? { structuredAttrs: attrs } : {}) };
}
