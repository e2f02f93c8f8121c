/**
 * gRPC channel URLs, shared by every Kiln gRPC client (castore and build):
 *
 * - `grpc+unix:///abs/path.sock`: a Unix socket; no host may be given.
 * - `grpc+http://host[:port]`: HTTP/2 over cleartext TCP (h2c).
 * - `grpc+https://host[:port]`: HTTP/2 over TLS.
 *
 * The path of a TCP URL must be empty. The one query parameter is
 * `wait-connect`: `1` makes opening the channel connect eagerly and fail when
 * the endpoint is unreachable; any other value (or none) connects lazily.
 * Pure parsing: no I/O happens here.
 */
import { CastoreError } from '../errors.js';

/** Where a channel connects to, parsed from its URL. */
export type ChannelAddress =
  | {
      readonly kind: 'unix';
      /** Absolute path of the socket. */
      readonly path: string;
      /** Connect when the channel is opened and fail if the endpoint is unreachable. */
      readonly waitConnect: boolean;
      /** The URL this was parsed from. */
      readonly url: string;
    }
  | {
      readonly kind: 'http' | 'https';
      /** Host name or address; IPv6 addresses keep their brackets. */
      readonly host: string;
      readonly port: number;
      readonly waitConnect: boolean;
      readonly url: string;
    };

const SCHEMES: Record<string, ChannelAddress['kind']> = { 'grpc+unix:': 'unix', 'grpc+http:': 'http', 'grpc+https:': 'https' };
const DEFAULT_PORTS = { http: 80, https: 443 } as const;

/** Parses and validates a channel URL; throws `CastoreError('INVALID_URL')` naming the URL. */
export function parseChannelUrl(url: string): ChannelAddress {
  const invalid = (reason: string) =>
    new CastoreError('INVALID_URL', `invalid gRPC channel URL ${JSON.stringify(url)}: ${reason}`, { details: { url } });
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new CastoreError('INVALID_URL', `invalid gRPC channel URL ${JSON.stringify(url)}: not a URL`, { cause: error, details: { url } });
  }
  const kind = SCHEMES[parsed.protocol];
  if (!kind) throw invalid('the scheme must be grpc+unix, grpc+http or grpc+https');
  if (!url.slice(parsed.protocol.length).startsWith('//')) throw invalid('expected // after the scheme');
  if (parsed.username !== '' || parsed.password !== '') throw invalid('user information is not allowed');
  if (parsed.hash !== '') throw invalid('a fragment is not allowed');
  let waitConnect = false;
  for (const [key, value] of parsed.searchParams) {
    if (key !== 'wait-connect') throw invalid(`unknown query parameter ${JSON.stringify(key)}`);
    waitConnect = value === '1';
  }
  if (kind === 'unix') {
    if (parsed.host !== '') throw invalid('a unix socket URL must not have a host');
    const path = decodeURIComponent(parsed.pathname);
    if (!path.startsWith('/') || path === '/') throw invalid('the socket path must be absolute');
    return { kind, path, waitConnect, url };
  }
  if (parsed.hostname === '') throw invalid('a host is required');
  if (parsed.pathname !== '') throw invalid('the path must be empty');
  const port = parsed.port === '' ? DEFAULT_PORTS[kind] : Number(parsed.port);
  return { kind, host: parsed.hostname, port, waitConnect, url };
}

/** The `http(s)://host:port` origin HTTP/2 requests carry as their authority. */
export function channelOrigin(address: ChannelAddress): string {
  if (address.kind === 'unix') return 'http://localhost';
  return new URL(`${address.kind}://${address.host}:${address.port}`).origin;
}
