/**
 * A single status line rewritten in place, only when the stream is a
 * terminal (on anything else every call is a no-op). Other output must call
 * `clear()` first, so the line never mixes with it; the next `update` draws
 * it again. The text is cut to the terminal's width so it never wraps.
 */
export interface ProgressLine {
  /** Shows `text`, at most once per interval unless `force`. */
  update(text: string, force?: boolean): void;
  /** Removes the line, if shown, before other output is written. */
  clear(): void;
  /** Removes the line for good. */
  done(): void;
}

type StatusStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

export function progressLine(stream: StatusStream, intervalMs = 100): ProgressLine {
  if (!stream.isTTY) return { update() {}, clear() {}, done() {} };
  let last = 0;
  let shown = false;
  let finished = false;
  const clear = () => {
    if (shown) stream.write('\r\x1b[2K');
    shown = false;
  };
  return {
    update(text, force = false) {
      const now = Date.now();
      if (finished || (!force && now - last < intervalMs)) return;
      last = now;
      shown = true;
      const width = Math.max((stream.columns || 80) - 1, 10);
      stream.write(`\r\x1b[2K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
    },
    clear,
    done() {
      clear();
      finished = true;
    },
  };
}
