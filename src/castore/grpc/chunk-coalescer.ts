/**
 * node:http2 hands incoming data over in pieces of at most 16 KiB (one per
 * DATA frame), and the 6-byte message heads shift them off any round
 * offset. Consumers do much better with large chunks that start at round
 * offsets: file writes need fewer calls, and BLAKE3 only hashes many 1 KiB
 * chunks in parallel (SIMD) when an update starts at an offset aligned to
 * the subtree it covers; misaligned updates hash one chunk at a time, about
 * twice as slowly. So the fast path regroups received bytes into chunks that
 * end at multiples of `ALIGNMENT` (but the last) and are about `target`
 * long: one copy, made only when pieces have to be joined.
 */

/** Size the fast path gathers received blob bytes into. */
export const DEFAULT_COALESCE_TARGET = 1 << 20;
/** Every chunk but the last ends at a multiple of this offset in the blob. */
export const COALESCE_ALIGNMENT = 64 << 10;

export class ChunkCoalescer {
  readonly #target: number;
  #pieces: Uint8Array[] = [];
  #length = 0;

  constructor(target = DEFAULT_COALESCE_TARGET) {
    this.#target = Math.max(COALESCE_ALIGNMENT, target - (target % COALESCE_ALIGNMENT));
  }

  /** Adds a piece (kept by reference until handed on); returns a chunk once `target` bytes are gathered. */
  add(piece: Uint8Array): Uint8Array | undefined {
    if (piece.byteLength === 0) return undefined;
    this.#pieces.push(piece);
    this.#length += piece.byteLength;
    return this.#length >= this.#target ? this.#take(this.#target) : undefined;
  }

  /** The gathered bytes up to the last aligned offset, or undefined when that is nothing. */
  takeAligned(): Uint8Array | undefined {
    const aligned = this.#length - (this.#length % COALESCE_ALIGNMENT);
    return aligned === 0 ? undefined : this.#take(aligned);
  }

  /** Everything gathered (at the end of the stream), or undefined when there is nothing. */
  takeAll(): Uint8Array | undefined {
    return this.#length === 0 ? undefined : this.#take(this.#length);
  }

  /** Removes and returns the first `length` gathered bytes, joining pieces only when needed. */
  #take(length: number): Uint8Array {
    const first = this.#pieces[0] as Uint8Array;
    let out: Uint8Array;
    if (first.byteLength >= length) {
      out = first.subarray(0, length);
      if (first.byteLength === length) this.#pieces.shift();
      else this.#pieces[0] = first.subarray(length);
    } else {
      out = Buffer.allocUnsafeSlow(length);
      let filled = 0;
      while (filled < length) {
        const piece = this.#pieces[0] as Uint8Array;
        const used = Math.min(piece.byteLength, length - filled);
        out.set(used === piece.byteLength ? piece : piece.subarray(0, used), filled);
        filled += used;
        if (used === piece.byteLength) this.#pieces.shift();
        else this.#pieces[0] = piece.subarray(used);
      }
    }
    this.#length -= length;
    return out;
  }
}

/** Where received frames come from: batches of raw DATA pieces, `undefined` at the end. */
interface PieceSource {
  next(): Promise<readonly Uint8Array[] | undefined>;
}

/** Turns raw DATA pieces into BlobChunk payloads. */
interface PayloadDecoder {
  push(piece: Uint8Array): Iterable<Uint8Array>;
}

/**
 * Yields the blob bytes carried by the BlobChunk messages arriving from
 * `source`, regrouped by `coalescer` into aligned chunks. What is left in the
 * coalescer at the end is the caller's to take once the call ended cleanly.
 */
export async function* coalescedBlobData(
  source: PieceSource,
  decoder: PayloadDecoder,
  coalescer: ChunkCoalescer,
): AsyncGenerator<Uint8Array> {
  for (let batch = await source.next(); batch; batch = await source.next()) {
    for (const piece of batch) {
      for (const payload of decoder.push(piece)) {
        const joined = coalescer.add(payload);
        if (joined) yield joined;
      }
    }
    const aligned = coalescer.takeAligned();
    if (aligned) yield aligned;
  }
}
