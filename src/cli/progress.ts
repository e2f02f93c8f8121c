/** A single status line rewritten in place, only when stderr is a terminal. */
export interface ProgressLine {
  update(text: string): void;
  done(): void;
}

export function progressLine(stream: NodeJS.WritableStream & { isTTY?: boolean }, intervalMs = 100): ProgressLine {
  if (!stream.isTTY) return { update() {}, done() {} };
  let last = 0;
  let shown = false;
  return {
    update(text) {
      const now = Date.now();
      if (now - last < intervalMs) return;
      last = now;
      shown = true;
      stream.write(`\r\x1b[2K${text}`);
    },
    done() {
      if (shown) stream.write('\r\x1b[2K');
    },
  };
}
