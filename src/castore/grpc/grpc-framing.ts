/**
 * gRPC wire framing for the blob fast path (plain gRPC on the wire, written
 * directly on node:http2): the 5-byte message prefix, a streaming decoder for
 * `BlobChunk` messages that hands out the `data` bytes as subarrays of what
 * the socket delivered (no reassembly copy), and status trailers.
 * See https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md.
 */
import type * as http2 from 'node:http2';
import { Code, ConnectError } from '@connectrpc/connect';
import { setTrailerStatus } from '@connectrpc/connect/protocol-grpc';

/** Length of the message prefix: compressed flag (1 byte) + length (4 bytes, big-endian). */
export const MESSAGE_PREFIX_LENGTH = 5;
/** Largest message the decoders accept, as every gRPC peer must (2^32 - 1 bytes). */
export const MAX_MESSAGE_LENGTH = 0xffff_ffff;
/** Tag byte of `BlobChunk.data`: field 1, wire type 2 (length-delimited). */
const BLOB_CHUNK_DATA_TAG = 0x0a;

function varintLength(value: number): number {
  let length = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    length++;
  }
  return length;
}

function writeVarint(target: Uint8Array, offset: number, value: number): number {
  while (value >= 0x80) {
    target[offset++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  target[offset++] = value;
  return offset;
}

/** A whole gRPC message frame: prefix + `payload` (one copy; for small messages). */
export function frameMessage(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(MESSAGE_PREFIX_LENGTH + payload.byteLength);
  new DataView(frame.buffer).setUint32(1, payload.byteLength);
  frame.set(payload, MESSAGE_PREFIX_LENGTH);
  return frame;
}

/**
 * Everything of a `BlobChunk{data}` frame that precedes the data itself
 * (prefix, tag, length), so the data can be written as it is without a copy.
 * Empty data is an empty message, as protobuf omits default values.
 */
export function blobChunkFrameHead(dataLength: number): Uint8Array {
  if (dataLength === 0) return new Uint8Array(MESSAGE_PREFIX_LENGTH);
  const messageLength = 1 + varintLength(dataLength) + dataLength;
  const head = new Uint8Array(MESSAGE_PREFIX_LENGTH + 1 + varintLength(dataLength));
  new DataView(head.buffer).setUint32(1, messageLength);
  head[MESSAGE_PREFIX_LENGTH] = BLOB_CHUNK_DATA_TAG;
  writeVarint(head, MESSAGE_PREFIX_LENGTH + 1, dataLength);
  return head;
}

function protocolError(message: string): ConnectError {
  return new ConnectError(`protocol error: ${message}`, Code.Internal);
}

// Decoder states (plain numbers: enums are not erasable syntax).
const State = { Prefix: 0, Tag: 1, Length: 2, Data: 3, SkipBytes: 4, SkipVarint: 5 } as const;
type State = (typeof State)[keyof typeof State];
type VarintState = typeof State.Tag | typeof State.Length | typeof State.SkipVarint;

/**
 * Decodes a stream of `BlobChunk` frames incrementally and returns the
 * `data` bytes as subarrays of the pushed buffers. Unknown fields are
 * skipped. A message carrying `data` twice (legal protobuf, where the last
 * one wins) is rejected rather than buffered, since no encoder produces it.
 */
export class BlobChunkDecoder {
  #state: State = State.Prefix;
  readonly #prefix = new Uint8Array(MESSAGE_PREFIX_LENGTH);
  #prefixFilled = 0;
  /** Bytes of the current message not consumed yet. */
  #messageLeft = 0;
  /** Bytes of the current field (data or skipped) not consumed yet. */
  #fieldLeft = 0;
  #varint = 0;
  #varintScale = 1;
  #tagIsData = false;
  #sawData = false;

  /** Feeds received bytes; returns the data pieces they complete, in order. */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let i = 0;
    const end = chunk.byteLength;
    while (i < end) {
      switch (this.#state) {
        case State.Prefix: {
          const take = Math.min(MESSAGE_PREFIX_LENGTH - this.#prefixFilled, end - i);
          this.#prefix.set(chunk.subarray(i, i + take), this.#prefixFilled);
          this.#prefixFilled += take;
          i += take;
          if (this.#prefixFilled < MESSAGE_PREFIX_LENGTH) break;
          this.#prefixFilled = 0;
          if (this.#prefix[0] !== 0) throw new ConnectError('compressed messages are not supported', Code.Internal);
          this.#messageLeft = new DataView(this.#prefix.buffer).getUint32(1);
          this.#sawData = false;
          if (this.#messageLeft > 0) this.#beginVarint(State.Tag);
          break;
        }
        case State.Tag:
        case State.Length:
        case State.SkipVarint: {
          const byte = chunk[i++] as number;
          this.#messageLeft--;
          this.#varint += (byte & 0x7f) * this.#varintScale;
          this.#varintScale *= 0x80;
          if (byte & 0x80) {
            if (this.#messageLeft === 0 || this.#varintScale > 2 ** 63) throw protocolError('truncated varint in BlobChunk');
            break;
          }
          this.#varintDone();
          break;
        }
        case State.Data: {
          const take = Math.min(this.#fieldLeft, end - i);
          out.push(chunk.subarray(i, i + take));
          i += take;
          this.#fieldLeft -= take;
          this.#messageLeft -= take;
          if (this.#fieldLeft === 0) this.#fieldDone();
          break;
        }
        case State.SkipBytes: {
          const take = Math.min(this.#fieldLeft, end - i);
          i += take;
          this.#fieldLeft -= take;
          this.#messageLeft -= take;
          if (this.#fieldLeft === 0) this.#fieldDone();
          break;
        }
      }
    }
    return out;
  }

  /** Call at end of stream: throws when it stopped inside a message. */
  finish(): void {
    if (this.#state !== State.Prefix || this.#prefixFilled !== 0) throw protocolError('stream ended inside a message');
  }

  #beginVarint(state: VarintState): void {
    this.#state = state;
    this.#varint = 0;
    this.#varintScale = 1;
  }

  #varintDone(): void {
    const value = this.#varint;
    if (this.#state === State.SkipVarint) {
      this.#fieldDone();
      return;
    }
    if (this.#state === State.Length) {
      if (value > this.#messageLeft) throw protocolError('BlobChunk field longer than its message');
      this.#fieldLeft = value;
      this.#state = this.#tagIsData ? State.Data : State.SkipBytes;
      if (value === 0) this.#fieldDone();
      return;
    }
    const field = Math.floor(value / 8);
    const wireType = value % 8;
    if (field === 0) throw protocolError('BlobChunk field number 0');
    this.#tagIsData = field === 1;
    if (this.#tagIsData) {
      if (wireType !== 2) throw protocolError('BlobChunk.data has the wrong wire type');
      if (this.#sawData) throw protocolError('BlobChunk carries data twice');
      this.#sawData = true;
    }
    switch (wireType) {
      case 0:
        this.#beginVarint(State.SkipVarint);
        return;
      case 1:
      case 5:
        this.#fieldLeft = wireType === 1 ? 8 : 4;
        if (this.#fieldLeft > this.#messageLeft) throw protocolError('BlobChunk field longer than its message');
        this.#state = State.SkipBytes;
        return;
      case 2:
        this.#beginVarint(State.Length);
        return;
      default:
        throw protocolError(`unsupported wire type ${wireType} in BlobChunk`);
    }
  }

  #fieldDone(): void {
    if (this.#messageLeft === 0) this.#state = State.Prefix;
    else this.#beginVarint(State.Tag);
  }
}

/**
 * Splits a stream into whole messages, for the small requests and responses
 * (ReadBlobRequest, PutBlobResponse): each message is copied into one buffer.
 * Rejects messages longer than `maxLength`.
 */
export class MessageDecoder {
  #buffered: Uint8Array = new Uint8Array(0);
  readonly #maxLength: number;

  constructor(maxLength: number) {
    this.#maxLength = maxLength;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    let data = this.#buffered.byteLength === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    const out: Uint8Array[] = [];
    while (data.byteLength >= MESSAGE_PREFIX_LENGTH) {
      if (data[0] !== 0) throw new ConnectError('compressed messages are not supported', Code.Internal);
      const length = new DataView(data.buffer, data.byteOffset, MESSAGE_PREFIX_LENGTH).getUint32(1);
      if (length > this.#maxLength)
        throw new ConnectError(`message of ${length} bytes exceeds the limit of ${this.#maxLength}`, Code.ResourceExhausted);
      if (data.byteLength < MESSAGE_PREFIX_LENGTH + length) break;
      out.push(data.slice(MESSAGE_PREFIX_LENGTH, MESSAGE_PREFIX_LENGTH + length));
      data = data.subarray(MESSAGE_PREFIX_LENGTH + length);
    }
    this.#buffered = data.byteLength === 0 ? new Uint8Array(0) : data.slice();
    return out;
  }

  finish(): void {
    if (this.#buffered.byteLength !== 0) throw protocolError('stream ended inside a message');
  }
}

/** Node's header object as web Headers (pseudo-headers dropped). */
export function headersFromNode(headers: http2.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [key, value] of Object.entries(headers)) {
    if (key.startsWith(':') || value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) out.append(key, v);
    else out.append(key, String(value));
  }
  return out;
}

/** The `grpc-status`/`grpc-message` (and metadata) fields for a trailer or a trailers-only response. */
export function statusFields(error: ConnectError | undefined): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  setTrailerStatus(new Headers(), error).forEach((value, key) => {
    out[key] = value;
  });
  return out;
}
