/** Durations (`500ms`, `90s`, `2m`, `1h`) and sizes (`512M`, `2G`, bytes without a suffix) as builder URLs and options write them. */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Milliseconds, or undefined when `text` is not a duration. */
export function parseDuration(text: string): number | undefined {
  const match = /^([1-9][0-9]*)(ms|s|m|h)$/.exec(text);
  return match ? Number(match[1]) * (DURATION_UNITS[match[2] as string] as number) : undefined;
}

/** Bytes, or undefined when `text` is not a size. */
export function parseSize(text: string): number | undefined {
  const match = /^([1-9][0-9]*)([KMGT]?)$/.exec(text);
  return match ? Number(match[1]) * (SIZE_UNITS[match[2] as string] as number) : undefined;
}
