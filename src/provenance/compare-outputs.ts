/**
 * Comparing the outputs of two runs of one build, for `--check`: walks both
 * trees in the castore side by side (skipping identical subtrees by digest)
 * and lists each differing path with its kind, size and digest on both
 * sides, and a short line diff when both are small text files.
 */
import type { BuildResponse } from '../build/index.js';
import { type Directory, type Node, nodesEqual } from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { concatBytes } from '../common/async-iterable.js';
import { compareBytes, displayBytes } from '../common/encoding.js';
import type { StoreReader } from './digests.js';
import { ProvenanceError } from './errors.js';
import { shortTextDiff } from './text-diff.js';

/** One side of a difference. */
export interface EntrySummary {
  readonly type: Node['type'];
  /** Bytes for a file, entries (recursive) for a directory. */
  readonly size?: number;
  /** `blake3-…` for files and directories. */
  readonly digest?: string;
  readonly executable?: boolean;
  readonly target?: string;
}

export interface Difference {
  /** The output path, then the path inside it. */
  readonly path: string;
  /** Absent on one side: only in the other run's output. */
  readonly first?: EntrySummary;
  readonly second?: EntrySummary;
  /** A short line diff (`-` first run, `+` second run) when both are small text files. */
  readonly diff?: string;
}

export interface CompareOptions extends AbortOptions {
  /** Stop after this many differences (default 100). */
  readonly maxDifferences?: number;
  /** Files up to this size (both sides) get a text diff (default 64 KiB). */
  readonly textDiffMaxBytes?: number;
}

export interface Comparison {
  readonly identical: boolean;
  readonly differences: readonly Difference[];
  /** More differences exist than were listed. */
  readonly truncated: boolean;
}

function summarize(node: Node): EntrySummary {
  switch (node.type) {
    case 'directory':
      return { type: 'directory', size: node.size, digest: node.digest.toString() };
    case 'file':
      return { type: 'file', size: node.size, digest: node.digest.toString(), executable: node.executable };
    case 'symlink':
      return { type: 'symlink', target: displayBytes(node.target) };
  }
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });

function asText(bytes: Uint8Array): string | undefined {
  if (bytes.includes(0)) return undefined;
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Compares the outputs of two responses to the same request, output by output. */
export async function compareOutputs(
  outputPaths: readonly string[],
  first: BuildResponse,
  second: BuildResponse,
  store: StoreReader,
  options: CompareOptions = {},
): Promise<Comparison> {
  const max = options.maxDifferences ?? 100;
  const textMax = options.textDiffMaxBytes ?? 64 * 1024;
  const differences: Difference[] = [];
  let truncated = false;

  const readSmall = async (node: Node): Promise<Uint8Array | undefined> => {
    if (node.type !== 'file' || node.size > textMax) return undefined;
    const data = await store.blobService.read(node.digest, options);
    return data ? concatBytes(data) : undefined;
  };
  const directory = async (node: Node & { type: 'directory' }): Promise<Directory> => {
    const found = await store.directoryService.get(node.digest, options);
    if (!found) throw new ProvenanceError('SUBJECT_MISSING', `directory ${node.digest} is not in the store`);
    return found;
  };
  const record = (difference: Difference) => {
    if (differences.length >= max) truncated = true;
    else differences.push(difference);
  };

  const walk = async (path: string, a: Node | undefined, b: Node | undefined): Promise<void> => {
    options.signal?.throwIfAborted();
    if (truncated) return;
    if (a && b && nodesEqual(a, b)) return;
    if (a?.type === 'directory' && b?.type === 'directory') {
      const [da, db] = await Promise.all([directory(a), directory(b)]);
      const names = new Map<string, Uint8Array>();
      for (const e of [...da.entries, ...db.entries]) names.set(Buffer.from(e.name).toString('hex'), e.name);
      for (const name of [...names.values()].sort(compareBytes)) await walk(`${path}/${displayBytes(name)}`, da.get(name), db.get(name));
      return;
    }
    let diff: string | undefined;
    if (a?.type === 'file' && b?.type === 'file' && !a.digest.equals(b.digest)) {
      const [ba, bb] = await Promise.all([readSmall(a), readSmall(b)]);
      const ta = ba && asText(ba);
      const tb = bb && asText(bb);
      if (ta !== undefined && tb !== undefined) diff = shortTextDiff(ta, tb);
    }
    record({ path, ...(a ? { first: summarize(a) } : {}), ...(b ? { second: summarize(b) } : {}), ...(diff ? { diff } : {}) });
  };

  for (const [i, path] of outputPaths.entries()) await walk(path, first.outputs[i]?.node, second.outputs[i]?.node);
  return { identical: differences.length === 0, differences, truncated };
}

function describe(summary: EntrySummary | undefined): string {
  if (!summary) return 'absent';
  switch (summary.type) {
    case 'directory':
      return `directory ${summary.digest}`;
    case 'file':
      return `file size=${summary.size}${summary.executable ? ' executable' : ''} ${summary.digest}`;
    case 'symlink':
      return `symlink -> ${summary.target}`;
  }
}

/** The comparison as text lines for a terminal: one block per differing path. */
export function formatComparison(comparison: Comparison, labels: readonly [string, string] = ['first', 'second']): string {
  const width = Math.max(labels[0].length, labels[1].length);
  const lines: string[] = [];
  for (const d of comparison.differences) {
    lines.push(`  ${d.path}`);
    lines.push(`    ${labels[0].padEnd(width)}: ${describe(d.first)}`);
    lines.push(`    ${labels[1].padEnd(width)}: ${describe(d.second)}`);
    if (d.diff) for (const line of d.diff.split('\n')) lines.push(`      ${line}`);
  }
  if (comparison.truncated) lines.push('  … (more differences not listed)');
  return lines.join('\n');
}
