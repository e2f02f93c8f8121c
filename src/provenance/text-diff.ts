/**
 * A short line diff of two small texts, for reports: common prefix and
 * suffix trimmed, the middle aligned by longest common subsequence, shown
 * as `-`/`+` lines with one line of context, at most `maxLines` lines.
 */

export interface TextDiffOptions {
  /** Lines of output at most (default 12); the rest is summarised. */
  readonly maxLines?: number;
  /** Lines of context around changes (default 1). */
  readonly context?: number;
}

/** Largest middle part aligned exactly (lines × lines); beyond it, the middle is shown as removed and added. */
const MAX_TABLE = 2_000_000;

type Op = { kind: ' ' | '-' | '+'; line: string };

function alignMiddle(a: readonly string[], b: readonly string[]): Op[] {
  const n = a.length;
  const m = b.length;
  if ((n + 1) * (m + 1) > MAX_TABLE)
    return [...a.map((line) => ({ kind: '-' as const, line })), ...b.map((line) => ({ kind: '+' as const, line }))];
  // lcs[i][j] = LCS length of a[i..] and b[j..]
  const width = m + 1;
  const lcs = new Uint32Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * width + j] =
        a[i] === b[j]
          ? (lcs[(i + 1) * width + j + 1] as number) + 1
          : Math.max(lcs[(i + 1) * width + j] as number, lcs[i * width + j + 1] as number);
    }
  }
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push({ kind: ' ', line: a[i++] as string });
      j++;
    } else if ((lcs[(i + 1) * width + j] as number) >= (lcs[i * width + j + 1] as number)) ops.push({ kind: '-', line: a[i++] as string });
    else ops.push({ kind: '+', line: b[j++] as string });
  }
  while (i < n) ops.push({ kind: '-', line: a[i++] as string });
  while (j < m) ops.push({ kind: '+', line: b[j++] as string });
  return ops;
}

/** The diff of `before` and `after` as text lines (`-` before, `+` after), or `''` when they are equal. */
export function shortTextDiff(before: string, after: string, options: TextDiffOptions = {}): string {
  if (before === after) return '';
  const maxLines = options.maxLines ?? 12;
  const context = options.context ?? 1;
  const lines = (text: string) => {
    const split = text.split('\n');
    if (split.at(-1) === '') split.pop(); // a final newline ends the last line; it is not an empty one
    return split;
  };
  const a = lines(before);
  const b = lines(after);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const ops: Op[] = [
    ...a.slice(0, start).map((line) => ({ kind: ' ' as const, line })),
    ...alignMiddle(a.slice(start, endA), b.slice(start, endB)),
    ...a.slice(endA).map((line) => ({ kind: ' ' as const, line })),
  ];
  // Keep changes and `context` lines around them; mark skipped runs.
  const keep = ops.map(() => false);
  ops.forEach((op, k) => {
    if (op.kind === ' ') return;
    for (let c = Math.max(0, k - context); c <= Math.min(ops.length - 1, k + context); c++) keep[c] = true;
  });
  const out: string[] = [];
  let skipped = false;
  ops.forEach((op, k) => {
    if (!keep[k]) {
      skipped = true;
      return;
    }
    if (skipped && out.length > 0) out.push('…');
    skipped = false;
    const shown = op.line.length > 160 ? `${op.line.slice(0, 160)}…` : op.line;
    out.push(`${op.kind} ${shown}`);
  });
  if (out.length <= maxLines) return out.join('\n');
  const changed = ops.filter((op) => op.kind !== ' ').length;
  return [...out.slice(0, maxLines), `… (${changed} changed lines in all)`].join('\n');
}
