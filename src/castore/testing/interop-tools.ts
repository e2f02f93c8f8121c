/**
 * Host tools the gRPC interoperability and TLS tests use, found or made at
 * test time: throwaway certificates from openssl, and a Python with grpcio
 * plus a protoc. Each lookup says why a tool is missing, so a test can skip
 * with the reason printed (CI installs them all).
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Why openssl cannot be used, or undefined when it can. */
export async function opensslSkipReason(): Promise<string | undefined> {
  try {
    await run('openssl', ['version']);
    return undefined;
  } catch {
    return 'openssl is not installed';
  }
}

export interface CertificateFiles {
  /** Path of the PEM certificate (self-signed, so also the CA to trust). */
  readonly certPath: string;
  /** Path of the PEM private key. */
  readonly keyPath: string;
  readonly cert: string;
  readonly key: string;
}

/** A self-signed EC certificate valid for `localhost` and 127.0.0.1, written to `dir` as `<name>-cert.pem` / `<name>-key.pem`. */
export async function selfSignedCertificate(dir: string, name = 'server'): Promise<CertificateFiles> {
  const keyPath = join(dir, `${name}-key.pem`);
  const certPath = join(dir, `${name}-cert.pem`);
  const subject = name === 'server' ? 'localhost' : name;
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=${subject}`,
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout',
    keyPath,
    '-out',
    certPath,
  ]);
  return { certPath, keyPath, cert: await fs.readFile(certPath, 'utf8'), key: await fs.readFile(keyPath, 'utf8') };
}

/** A Python with the grpc and protobuf modules and a way to run protoc, or why there is none. */
export async function findPythonGrpcTools(): Promise<{ python: string; protoc: string[] } | string> {
  let python: string | undefined;
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    try {
      await run(candidate, ['-c', 'import grpc, google.protobuf']);
      python = candidate;
      break;
    } catch {
      // try the next one
    }
  }
  if (!python) return 'no python3 with the grpc and protobuf modules (Debian: python3-grpcio, python3-protobuf)';
  try {
    await run('protoc', ['--version']);
    return { python, protoc: ['protoc'] };
  } catch {
    try {
      await run(python, ['-m', 'grpc_tools.protoc', '--version']);
      return { python, protoc: [python, '-m', 'grpc_tools.protoc'] };
    } catch {
      return 'neither protoc nor python grpc_tools is installed';
    }
  }
}
