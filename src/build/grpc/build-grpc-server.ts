/**
 * One Kiln server on one listener: the castore services for a store, and,
 * given a builder, the build services of build-server.ts and health. With a
 * token, every call must carry `authorization: Bearer <token>` (compared in
 * constant time); TLS and mutual TLS come from the castore server.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { type CastoreServer, type CastoreServerOptions, startCastoreServer } from '../../castore/grpc/index.js';
import type { BuildService } from '../build-service.js';
import { type BuildRoutes, type BuildServerOptions, createBuildRoutes } from './build-server.js';

export interface KilnServerOptions extends Omit<CastoreServerOptions, 'extraRoutes' | 'authorize'> {
  /** Serve builds on this builder; without one, only the castore is served. */
  builder?: BuildService;
  /** Where build event journals are kept (needed with a builder). */
  journalDir?: string;
  /** Require this bearer token on every call. */
  token?: string;
  maxInFlight?: BuildServerOptions['maxInFlight'];
  retainMs?: BuildServerOptions['retainMs'];
  systems?: BuildServerOptions['systems'];
}

export interface KilnServer extends CastoreServer {
  /** The build routes, when a builder is served. */
  readonly builds?: BuildRoutes;
  /** Stops taking builds, lets running ones finish for up to `deadlineMs`, then stops serving. */
  shutdown(deadlineMs: number): Promise<void>;
}

export async function startKilnServer(options: KilnServerOptions): Promise<KilnServer> {
  const builds = options.builder
    ? createBuildRoutes({
        service: options.builder,
        blobService: options.blobService,
        directoryService: options.directoryService,
        journalDir: options.journalDir ?? '/var/tmp/kiln-journals',
        ...(options.maxInFlight !== undefined ? { maxInFlight: options.maxInFlight } : {}),
        ...(options.retainMs !== undefined ? { retainMs: options.retainMs } : {}),
        ...(options.systems !== undefined ? { systems: options.systems } : {}),
      })
    : undefined;
  const server = await startCastoreServer({
    ...options,
    ...(builds ? { extraRoutes: (router) => builds.register(router) } : {}),
    ...(options.token !== undefined ? { authorize: bearerTokenCheck(options.token) } : {}),
  });
  return {
    ...(builds ? { builds } : {}),
    address: server.address,
    url: server.url,
    close: async (closeOptions) => {
      await builds?.close();
      await server.close(closeOptions);
    },
    async shutdown(deadlineMs) {
      await builds?.drain(deadlineMs);
      await builds?.close();
      await server.close();
    },
  };
}

/** Accepts exactly `Bearer <token>`, comparing digests so the time taken says nothing about the token. */
export function bearerTokenCheck(token: string): (authorization: string | undefined) => boolean {
  const expected = createHash('sha256').update(`Bearer ${token}`).digest();
  return (authorization) => authorization !== undefined && timingSafeEqual(createHash('sha256').update(authorization).digest(), expected);
}
