/** The last lines of a build's combined log, kept for the failure summary. */
export class LogTail {
  readonly #max: number;
  #text = '';

  constructor(maxLines: number) {
    this.#max = maxLines;
  }

  add(data: Uint8Array): void {
    this.#text = (this.#text + Buffer.from(data).toString('utf8'))
      .split('\n')
      .slice(-(this.#max + 1))
      .join('\n');
  }

  text(): string {
    return this.#text;
  }
}
