import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { arch } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { withoutHybridCgroups } from '../oci/oci-build-service.js';
import { BPF_MAX_INSNS, ociSeccompProfile, SOCK_FILTER_SIZE, seccompBpfProgram } from './seccomp.js';

// ---------------------------------------------------------------------------
// Structure of the BPF program.

interface SockFilter {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

function decode(program: Buffer): SockFilter[] {
  const out: SockFilter[] = [];
  for (let at = 0; at < program.length; at += SOCK_FILTER_SIZE) {
    out.push({ code: program.readUInt16LE(at), jt: program[at + 2], jf: program[at + 3], k: program.readUInt32LE(at + 4) });
  }
  return out;
}

const BPF_CLASS = (code: number) => code & 0x07;
const BPF_JMP = 0x05;
const BPF_RET = 0x06;
const BPF_JA = 0x00;

/** A tiny classic-BPF interpreter for the instructions the program uses, to check the policy without a kernel. */
function evaluate(program: SockFilter[], data: { nr: number; arch: number; args?: bigint[] }): number {
  const mem = Buffer.alloc(64);
  mem.writeUInt32LE(data.nr >>> 0, 0);
  mem.writeUInt32LE(data.arch >>> 0, 4);
  for (const [i, a] of (data.args ?? []).entries()) mem.writeBigUInt64LE(BigInt.asUintN(64, a), 16 + 8 * i);
  let acc = 0;
  for (let pc = 0; pc < program.length; pc++) {
    const { code, jt, jf, k } = program[pc];
    switch (code) {
      case 0x20: // ld w abs
        assert.ok(k % 4 === 0 && k + 4 <= 64, `load offset ${k}`);
        acc = mem.readUInt32LE(k);
        break;
      case 0x15: // jeq k
        pc += acc === k ? jt : jf;
        break;
      case 0x45: // jset k
        pc += (acc & k) !== 0 ? jt : jf;
        break;
      case 0x06: // ret k
        return k;
      default:
        throw new Error(`unexpected opcode ${code.toString(16)} at ${pc}`);
    }
  }
  throw new Error('fell off the end of the program');
}

const ARCH = { x86_64: 0xc000003e, i386: 0x40000003, aarch64: 0xc00000b7, arm: 0x40000028 };
const ALLOW = 0x7fff0000;
const KILL_PROCESS = 0x80000000;
const errno = (e: number) => 0x00050000 | e;
const [EPERM, ENOSYS, ENOTSUP] = [1, 38, 95];

describe('seccompBpfProgram: structure', () => {
  const bytes = seccompBpfProgram();
  const program = decode(bytes);

  it('is whole sock_filter entries, within the kernel limit, every jump in range, ending in a RET', () => {
    assert.equal(bytes.length % SOCK_FILTER_SIZE, 0);
    assert.ok(program.length > 0 && program.length <= BPF_MAX_INSNS, `${program.length} instructions`);
    program.forEach(({ code, jt, jf, k }, pc) => {
      if (BPF_CLASS(code) !== BPF_JMP) return;
      const targets = (code & 0xf0) === BPF_JA ? [k] : [jt, jf];
      for (const offset of targets) assert.ok(pc + 1 + offset < program.length, `jump at ${pc} leaves the program`);
    });
    assert.equal(BPF_CLASS(program[program.length - 1].code), BPF_RET);
    // The first instruction loads seccomp_data.arch: nothing is decided on a syscall number before its ABI is known.
    assert.deepEqual(program[0], { code: 0x20, jt: 0, jf: 0, k: 4 });
  });

  it('is deterministic', () => {
    assert.deepEqual(seccompBpfProgram(), bytes);
  });

  it('implements the policy for every architecture (checked with an interpreter)', () => {
    const chmodLike = {
      x86_64: { chmod: 90, fchmod: 91, fchmodat: 268, fchmodat2: 452, xattr: [188, 189, 190, 463] },
      i386: { chmod: 15, fchmod: 94, fchmodat: 306, fchmodat2: 452, xattr: [226, 227, 228, 463] },
      aarch64: { chmod: undefined, fchmod: 52, fchmodat: 53, fchmodat2: 452, xattr: [5, 6, 7, 463] },
    } as const;
    for (const [name, nrs] of Object.entries(chmodLike)) {
      const a = ARCH[name as keyof typeof chmodLike];
      const calls: [number | undefined, number][] = [
        [nrs.chmod, 1],
        [nrs.fchmod, 1],
        [nrs.fchmodat, 2],
        [nrs.fchmodat2, 2],
      ];
      for (const [nr, index] of calls) {
        if (nr === undefined) continue;
        const at = (mode: bigint) => {
          const args = [0n, 0n, 0n, 0n, 0n, 0n];
          args[index] = mode;
          // The other mode-sized argument slot carries set bits, to catch a check of the wrong index.
          args[index === 1 ? 2 : 1] = 0o6000n;
          return evaluate(program, { nr, arch: a, args });
        };
        const what = `${name} syscall ${nr}`;
        assert.equal(at(0o4755n), errno(EPERM), `${what} S_ISUID`);
        assert.equal(at(0o2755n), errno(EPERM), `${what} S_ISGID`);
        assert.equal(at(0o6000n), errno(EPERM), `${what} both`);
        assert.equal(at(0xffff_0000_0000_0800n), errno(EPERM), `${what} S_ISUID with garbage in the upper half`);
        assert.equal(at(0o755n), ALLOW, `${what} 0755`);
        assert.equal(at(0o1777n), ALLOW, `${what} sticky`);
        assert.equal(at(0xffff_ffff_0000_0000n | 0o755n), ALLOW, `${what} upper half ignored`);
      }
      for (const nr of nrs.xattr) assert.equal(evaluate(program, { nr, arch: a }), errno(ENOTSUP), `${name} xattr ${nr}`);
      // Reading xattrs, open, write, exit_group: allowed.
      for (const nr of name === 'aarch64' ? [8, 56, 64, 94] : name === 'i386' ? [229, 5, 4, 252] : [191, 2, 1, 231]) {
        assert.equal(evaluate(program, { nr, arch: a, args: [0n, 0o6777n, 0o6777n] }), ALLOW, `${name} ${nr}`);
      }
    }
    // x32: the whole ABI is refused, even a harmless chmod.
    assert.equal(evaluate(program, { nr: 0x40000000 | 90, arch: ARCH.x86_64, args: [0n, 0o644n] }), errno(ENOSYS));
    assert.equal(evaluate(program, { nr: 0x40000000 | 1, arch: ARCH.x86_64 }), errno(ENOSYS));
    // Unknown architectures (here AArch32) are killed.
    assert.equal(evaluate(program, { nr: 15, arch: ARCH.arm, args: [0n, 0o644n] }), KILL_PROCESS);
    assert.equal(evaluate(program, { nr: 0, arch: 0 }), KILL_PROCESS);
  });
});

describe('ociSeccompProfile', () => {
  it('denies each special bit with its own masked-eq rule, and xattr writes with ENOTSUP', () => {
    const profile = ociSeccompProfile();
    assert.equal(profile.defaultAction, 'SCMP_ACT_ALLOW');
    assert.deepEqual(profile.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64']);
    const rulesFor = (name: string) => profile.syscalls.filter((s) => s.names.includes(name));
    for (const [name, index] of [
      ['chmod', 1],
      ['fchmod', 1],
      ['fchmodat', 2],
      ['fchmodat2', 2],
    ] as const) {
      const rules = rulesFor(name);
      assert.deepEqual(
        rules.map((r) => [r.action, r.errnoRet, r.args]),
        [0o4000, 0o2000].map((bit) => ['SCMP_ACT_ERRNO', EPERM, [{ index, value: bit, valueTwo: bit, op: 'SCMP_CMP_MASKED_EQ' }]]),
        name,
      );
    }
    for (const name of ['setxattr', 'lsetxattr', 'fsetxattr', 'setxattrat']) {
      assert.deepEqual(
        rulesFor(name).map((r) => [r.action, r.errnoRet, r.args]),
        [['SCMP_ACT_ERRNO', ENOTSUP, undefined]],
      );
    }
    // Plain JSON (what goes into config.json).
    assert.deepEqual(JSON.parse(JSON.stringify(profile)), profile);
  });
});

// ---------------------------------------------------------------------------
// Behaviour inside real sandboxes.

/**
 * A static x86_64 ELF executable that makes one raw syscall and exits with
 * its errno (0 on success), to reach what busybox never calls: fchmodat2,
 * xattr writes, `int 0x80` (i386 compat) and x32 syscall numbers. String
 * arguments become pointers to NUL-terminated copies.
 */
function probeElf(abi: 'x86_64' | 'x32' | 'i386', nr: number, args: (bigint | string)[]): Buffer {
  const base = 0x400000;
  const headers = 64 + 56;
  const strings = args.filter((a): a is string => typeof a === 'string');
  const code = (dataAddress: number): Buffer => {
    const addresses = new Map<string, number>();
    let offset = dataAddress;
    for (const s of strings) {
      addresses.set(s, offset);
      offset += Buffer.byteLength(s) + 1;
    }
    const value = (a: bigint | string | undefined): bigint =>
      a === undefined ? 0n : typeof a === 'string' ? BigInt(addresses.get(a)!) : a;
    const imm64 = (v: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt.asUintN(64, v));
      return b;
    };
    const imm32 = (v: bigint) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(Number(BigInt.asUintN(32, v)));
      return b;
    };
    const parts: Buffer[] = [];
    if (abi === 'i386') {
      // mov eax/ebx/ecx/edx/esi/edi, imm32; int 0x80
      const regs = [0xbb, 0xb9, 0xba, 0xbe, 0xbf];
      parts.push(Buffer.from([0xb8]), imm32(BigInt(nr)));
      for (const [i, op] of regs.entries()) parts.push(Buffer.from([op]), imm32(value(args[i])));
      parts.push(Buffer.from([0xcd, 0x80]));
    } else {
      // movabs rax/rdi/rsi/rdx/r10/r8/r9, imm64; syscall
      const regs = [
        [0x48, 0xbf],
        [0x48, 0xbe],
        [0x48, 0xba],
        [0x49, 0xba],
        [0x49, 0xb8],
        [0x49, 0xb9],
      ];
      parts.push(Buffer.from([0x48, 0xb8]), imm64(BigInt(abi === 'x32' ? nr | 0x40000000 : nr)));
      for (const [i, op] of regs.entries()) parts.push(Buffer.from(op), imm64(value(args[i])));
      parts.push(Buffer.from([0x0f, 0x05]));
    }
    // neg eax; mov edi, eax; mov eax, 231 (exit_group); syscall
    parts.push(Buffer.from([0xf7, 0xd8, 0x89, 0xc7, 0xb8, 231, 0, 0, 0, 0x0f, 0x05]));
    return Buffer.concat(parts);
  };
  const codeLength = code(0).length;
  const text = code(base + headers + codeLength);
  const data = Buffer.concat(strings.map((s) => Buffer.from(`${s}\0`)));
  const size = headers + text.length + data.length;
  const ehdr = Buffer.alloc(64);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(ehdr, 0);
  ehdr.writeUInt16LE(2, 16); // ET_EXEC
  ehdr.writeUInt16LE(62, 18); // EM_X86_64
  ehdr.writeUInt32LE(1, 20);
  ehdr.writeBigUInt64LE(BigInt(base + headers), 24); // e_entry
  ehdr.writeBigUInt64LE(64n, 32); // e_phoff
  ehdr.writeUInt16LE(64, 52); // e_ehsize
  ehdr.writeUInt16LE(56, 54); // e_phentsize
  ehdr.writeUInt16LE(1, 56); // e_phnum
  const phdr = Buffer.alloc(56);
  phdr.writeUInt32LE(1, 0); // PT_LOAD
  phdr.writeUInt32LE(5, 4); // PF_R | PF_X
  phdr.writeBigUInt64LE(BigInt(base), 16); // p_vaddr
  phdr.writeBigUInt64LE(BigInt(base), 24); // p_paddr
  phdr.writeBigUInt64LE(BigInt(size), 32); // p_filesz
  phdr.writeBigUInt64LE(BigInt(size), 40); // p_memsz
  phdr.writeBigUInt64LE(0x1000n, 48); // p_align
  return Buffer.concat([ehdr, phdr, text, data]);
}

const AT_FDCWD = -100n;

/** Expected outcome of one case: exit status (errno for probes) and the mode of the target afterwards. */
interface Outcome {
  rc: number;
  mode: string;
  /** Text the case's stderr must contain. */
  stderr?: string;
}

interface Case {
  name: string;
  /** `f` (a file) or `d` (a directory), reset to 644 / 755 before the case. */
  target: 'f' | 'd';
  /** A shell command run in /tmp (as `/bin/busybox sh`), or a probe executable. */
  command: string | { abi: 'x86_64' | 'x32' | 'i386'; nr: number; args: (bigint | string)[]; stdinFromTarget?: boolean };
  /** Outcome without seccomp: proves a refusal below is the filter's doing. */
  baseline: Outcome | 'any';
  /** Outcome under the BPF program (bwrap, or crun given the raw program). */
  bpf: Outcome;
  /** Outcome under the OCI profile, when it differs from `bpf`; a function gets the baseline outcome. */
  oci?: Outcome | ((baseline: Outcome) => Outcome | string);
}

const denied = (mode: string): Outcome => ({ rc: 1, mode, stderr: 'Operation not permitted' });
const ok = (mode: string): Outcome => ({ rc: 0, mode });
const err = (rc: number, mode: string): Outcome => ({ rc, mode });

const busyboxCases: Case[] = [
  { name: 'chmod 4755 f', target: 'f', command: '/bin/busybox chmod 4755 f', baseline: ok('4755'), bpf: denied('644') },
  { name: 'chmod 2755 f', target: 'f', command: '/bin/busybox chmod 2755 f', baseline: ok('2755'), bpf: denied('644') },
  { name: 'chmod u+s f', target: 'f', command: '/bin/busybox chmod u+s f', baseline: ok('4644'), bpf: denied('644') },
  { name: 'chmod 755 f', target: 'f', command: '/bin/busybox chmod 755 f', baseline: ok('755'), bpf: ok('755') },
  { name: 'chmod g+s d', target: 'd', command: '/bin/busybox chmod g+s d', baseline: ok('2755'), bpf: denied('755') },
  { name: 'chmod 1777 d', target: 'd', command: '/bin/busybox chmod 1777 d', baseline: ok('1777'), bpf: ok('1777') },
];

const probeCases: Case[] = [
  {
    name: 'x86_64 chmod 04755',
    target: 'f',
    command: { abi: 'x86_64', nr: 90, args: ['f', 0o4755n] },
    baseline: ok('4755'),
    bpf: err(EPERM, '644'),
  },
  {
    name: 'x86_64 chmod 04755 with upper-half garbage',
    target: 'f',
    command: { abi: 'x86_64', nr: 90, args: ['f', 0xdead_beef_0000_0000n | 0o4755n] },
    baseline: ok('4755'),
    bpf: err(EPERM, '644'),
  },
  {
    name: 'x86_64 chmod 0755 with upper-half garbage',
    target: 'f',
    command: { abi: 'x86_64', nr: 90, args: ['f', 0xdead_beef_0000_0000n | 0o755n] },
    baseline: ok('755'),
    bpf: ok('755'),
  },
  {
    name: 'x86_64 fchmod 02755',
    target: 'f',
    command: { abi: 'x86_64', nr: 91, args: [0n, 0o2755n], stdinFromTarget: true },
    baseline: ok('2755'),
    bpf: err(EPERM, '644'),
  },
  {
    name: 'x86_64 fchmodat 04755',
    target: 'f',
    command: { abi: 'x86_64', nr: 268, args: [AT_FDCWD, 'f', 0o4755n, 0n] },
    baseline: ok('4755'),
    bpf: err(EPERM, '644'),
  },
  {
    name: 'x86_64 fchmodat2 02755',
    target: 'f',
    command: { abi: 'x86_64', nr: 452, args: [AT_FDCWD, 'f', 0o2755n, 0n] },
    baseline: ok('2755'),
    bpf: err(EPERM, '644'),
  },
  {
    name: 'x86_64 fchmodat2 0755',
    target: 'f',
    command: { abi: 'x86_64', nr: 452, args: [AT_FDCWD, 'f', 0o755n, 0n] },
    baseline: ok('755'),
    bpf: ok('755'),
  },
  {
    name: 'x86_64 setxattr user.kiln',
    target: 'f',
    command: { abi: 'x86_64', nr: 188, args: ['f', 'user.kiln', '1', 1n, 0n] },
    baseline: ok('644'),
    bpf: err(ENOTSUP, '644'),
  },
  {
    name: 'x86_64 lsetxattr user.kiln',
    target: 'f',
    command: { abi: 'x86_64', nr: 189, args: ['f', 'user.kiln', '1', 1n, 0n] },
    baseline: ok('644'),
    bpf: err(ENOTSUP, '644'),
  },
  {
    name: 'x86_64 fsetxattr user.kiln',
    target: 'f',
    command: { abi: 'x86_64', nr: 190, args: [0n, 'user.kiln', '1', 1n, 0n], stdinFromTarget: true },
    baseline: ok('644'),
    bpf: err(ENOTSUP, '644'),
  },
  {
    // Deliberately malformed (no struct xattr_args): the kernel answers EINVAL (or ENOSYS before 6.13), the filter ENOTSUP first.
    name: 'x86_64 setxattrat',
    target: 'f',
    command: { abi: 'x86_64', nr: 463, args: [AT_FDCWD, 'f', 0n, 'user.kiln', 0n, 0n] },
    baseline: 'any',
    bpf: err(ENOTSUP, '644'),
    oci: (baseline) =>
      baseline.rc === ENOTSUP
        ? baseline
        : 'setxattrat is not refused by the OCI profile here: the runtime’s libseccomp does not know the name (2.5.4 does not), so it skips the rule',
  },
  {
    name: 'i386 chmod 04755',
    target: 'f',
    command: { abi: 'i386', nr: 15, args: ['f', 0o4755n] },
    baseline: ok('4755'),
    bpf: err(EPERM, '644'),
  },
  { name: 'i386 chmod 0755', target: 'f', command: { abi: 'i386', nr: 15, args: ['f', 0o755n] }, baseline: ok('755'), bpf: ok('755') },
  {
    name: 'i386 fchmod 04755',
    target: 'f',
    command: { abi: 'i386', nr: 94, args: [0n, 0o4755n], stdinFromTarget: true },
    baseline: ok('4755'),
    bpf: err(EPERM, '644'),
  },
  {
    name: 'i386 fchmodat 02755',
    target: 'f',
    command: { abi: 'i386', nr: 306, args: [AT_FDCWD, 'f', 0o2755n, 0n] },
    baseline: ok('2755'),
    bpf: err(EPERM, '644'),
  },
  {
    name: 'i386 fchmodat2 04755',
    target: 'f',
    command: { abi: 'i386', nr: 452, args: [AT_FDCWD, 'f', 0o4755n, 0n] },
    baseline: ok('4755'),
    bpf: err(EPERM, '644'),
  },
  {
    name: 'i386 setxattr user.kiln',
    target: 'f',
    command: { abi: 'i386', nr: 226, args: ['f', 'user.kiln', '1', 1n, 0n] },
    baseline: ok('644'),
    bpf: err(ENOTSUP, '644'),
  },
  {
    // The BPF program refuses the x32 ABI outright; the OCI profile lists SCMP_ARCH_X32 and filters it by the same rules.
    name: 'x32 chmod 04755',
    target: 'f',
    command: { abi: 'x32', nr: 90, args: ['f', 0o4755n] },
    baseline: 'any',
    bpf: err(ENOSYS, '644'),
    oci: err(EPERM, '644'),
  },
  {
    name: 'x32 chmod 0755',
    target: 'f',
    command: { abi: 'x32', nr: 90, args: ['f', 0o755n] },
    baseline: 'any',
    bpf: err(ENOSYS, '644'),
    oci: (baseline) => baseline,
  },
];

/**
 * The shell script a sandbox runs: each case as one tab-separated line
 * `index rc mode stderr` (with `/tmp` the working directory).
 */
function script(cases: Case[]): string {
  const lines = [
    'set -u',
    'cd /tmp',
    '/bin/busybox touch f && /bin/busybox mkdir d || exit 99',
    'run() { i=$1; t=$2; shift 2; /bin/busybox chmod 644 f; /bin/busybox chmod 755 d; ' +
      'e=$("$@" 2>&1 >/dev/null); rc=$?; ' +
      'printf "RESULT\\t%s\\t%s\\t%s\\t%s\\n" "$i" "$rc" "$(/bin/busybox stat -c %a "$t")" "$(echo $e)"; }',
  ];
  cases.forEach((c, i) => {
    if (typeof c.command === 'string') lines.push(`run ${i} ${c.target} ${c.command}`);
    else if (c.command.stdinFromTarget) lines.push(`run ${i} ${c.target} /bin/busybox sh -c '/probe/${i} < ${c.target}'`);
    else lines.push(`run ${i} ${c.target} /probe/${i}`);
  });
  return lines.join('\n');
}

async function writeProbes(cases: Case[], dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  for (const [i, c] of cases.entries()) {
    if (typeof c.command === 'string') continue;
    await fs.writeFile(join(dir, String(i)), probeElf(c.command.abi, c.command.nr, c.command.args), { mode: 0o755 });
  }
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], fd3?: Buffer): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const extra = child.stdio[3] as NodeJS.WritableStream;
    if (fd3) extra.end(fd3);
    else extra.end();
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function results(cases: Case[], r: Run): Outcome[] {
  const byIndex = new Map<number, Outcome>();
  for (const line of r.stdout.split('\n')) {
    const [tag, i, rc, mode, stderr] = line.split('\t');
    if (tag === 'RESULT') byIndex.set(Number(i), { rc: Number(rc), mode, stderr });
  }
  assert.equal(byIndex.size, cases.length, `sandbox ran every case (exit ${r.code})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return cases.map((_, i) => byIndex.get(i)!);
}

function assertOutcome(t: TestContext, name: string, actual: Outcome, expected: Outcome | string | 'any'): void {
  if (expected === 'any') {
    t.diagnostic(`${name}: rc ${actual.rc}, mode ${actual.mode} (not asserted)`);
    return;
  }
  if (typeof expected === 'string') {
    t.diagnostic(`${name}: ${expected} (got rc ${actual.rc}, mode ${actual.mode})`);
    return;
  }
  assert.equal(actual.rc, expected.rc, `${name}: exit status / errno (stderr: ${actual.stderr})`);
  assert.equal(actual.mode, expected.mode, `${name}: mode afterwards`);
  if (expected.stderr) assert.ok(actual.stderr?.includes(expected.stderr), `${name}: stderr ${JSON.stringify(actual.stderr)}`);
}

/** Checks a sandbox's results against the baseline (no filter) run and the expected policy outcomes. */
function check(t: TestContext, cases: Case[], baseline: Outcome[], filtered: Outcome[], policy: 'bpf' | 'oci'): void {
  cases.forEach((c, i) => {
    assertOutcome(t, `${c.name} (no filter)`, baseline[i], c.baseline);
    let expected: Outcome | string = c.bpf;
    if (policy === 'oci' && c.oci) expected = typeof c.oci === 'function' ? c.oci(baseline[i]) : c.oci;
    assertOutcome(t, `${c.name} (${policy} filter)`, filtered[i], expected);
  });
}

const hasBusybox = existsSync('/bin/busybox');
const isX86_64 = arch() === 'x64';
const allCases = isX86_64 ? [...busyboxCases, ...probeCases] : busyboxCases;
if (!isX86_64) console.log('# raw-syscall probes skipped: they are x86_64 machine code');

function toolMissing(tool: string): string | undefined {
  if (!hasBusybox) return '/bin/busybox (busybox-static) is not installed';
  if (spawnSync(tool, ['--version']).error) return `${tool} is not installed`;
  return undefined;
}

describe('seccompBpfProgram under bwrap', () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp('/var/tmp/kiln-seccomp-bwrap-');
    await writeProbes(allCases, join(dir, 'probe'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const bwrap = (seccomp: boolean) =>
    run(
      'bwrap',
      [
        ...['--unshare-all', '--uid', '1000', '--gid', '100', '--tmpfs', '/', '--ro-bind', '/bin/busybox', '/bin/busybox'],
        ...['--ro-bind', join(dir, 'probe'), '/probe', '--tmpfs', '/tmp', '--dev', '/dev', '--proc', '/proc'],
        ...(seccomp ? ['--seccomp', '3'] : []),
        ...['--', '/bin/busybox', 'sh', '-c', script(allCases)],
      ],
      seccomp ? seccompBpfProgram() : undefined,
    );

  it('refuses setuid/setgid modes and xattr writes, allows the rest', async (t) => {
    const missing = toolMissing('bwrap');
    if (missing) return t.skip(missing);
    const baseline = results(allCases, await bwrap(false));
    const filtered = results(allCases, await bwrap(true));
    check(t, allCases, baseline, filtered, 'bpf');
    t.diagnostic('busybox has no setfattr applet: xattr writes are checked with raw-syscall probes instead');
  });
});

for (const runtime of ['runc', 'crun'] as const) {
  describe(`ociSeccompProfile under ${runtime}`, () => {
    let dir: string;
    const containers: string[] = [];
    // This test needs no cgroup. crun 1.8 refuses a hybrid cgroup v1/v2 host whatever the manager, so it runs
    // without the v2 hierarchy in a private mount namespace, as the oci backend runs it.
    const runtimeFlags = runtime === 'crun' ? ['--cgroup-manager=disabled'] : [];
    before(async () => {
      dir = await fs.mkdtemp(`/var/tmp/kiln-seccomp-${runtime}-`);
      const rootfs = join(dir, 'rootfs');
      for (const sub of ['bin', 'tmp', 'dev', 'proc']) await fs.mkdir(join(rootfs, sub), { recursive: true });
      await fs.chmod(join(rootfs, 'tmp'), 0o1777);
      await fs.copyFile('/bin/busybox', join(rootfs, 'bin/busybox'));
      await fs.chmod(join(rootfs, 'bin/busybox'), 0o755);
      await writeProbes(allCases, join(rootfs, 'probe'));
    });
    after(async () => {
      for (const id of containers) spawnSync(runtime, [...runtimeFlags, 'delete', '-f', id]);
      await fs.rm(dir, { recursive: true, force: true });
    });

    /** A host limitation the runtime cannot work around (it is installed, but cannot run any container here). */
    function hostUnsupported(r: Run): string | undefined {
      const hybrid = 'cgroups in hybrid mode not supported';
      if (r.code !== 0 && r.stderr.includes(hybrid)) return `${runtime} cannot run containers on this host: "${r.stderr.trim()}"`;
      return undefined;
    }

    async function container(seccomp: Record<string, unknown> | undefined, annotations?: Record<string, string>): Promise<Run> {
      const config = {
        ociVersion: '1.0.2',
        process: {
          terminal: false,
          user: { uid: 0, gid: 0 },
          args: ['/bin/busybox', 'sh', '-c', script(allCases)],
          env: ['PATH=/bin'],
          cwd: '/',
          noNewPrivileges: true,
        },
        root: { path: 'rootfs', readonly: false },
        hostname: 'kiln-seccomp-test',
        mounts: [
          { destination: '/proc', type: 'proc', source: 'proc' },
          { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755', 'size=1m'] },
          { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nodev', 'mode=1777', 'size=1m'] },
        ],
        ...(annotations ? { annotations } : {}),
        linux: {
          namespaces: ['pid', 'mount', 'ipc', 'uts', 'network'].map((type) => ({ type })),
          // runc and crun create the default devices (/dev/null, zero, full, random, urandom, tty) themselves.
          resources: { devices: [{ allow: false, access: 'rwm' }] },
          ...(seccomp ? { seccomp } : {}),
        },
      };
      await fs.writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
      const id = `kiln-seccomp-test-${randomBytes(6).toString('hex')}`;
      containers.push(id);
      try {
        const argv = [runtime, ...runtimeFlags, 'run', '--bundle', dir, id];
        const [command, ...args] = runtime === 'crun' ? withoutHybridCgroups(argv) : argv;
        return await run(command as string, args);
      } finally {
        spawnSync(runtime, [...runtimeFlags, 'delete', '-f', id]);
      }
    }

    it('refuses setuid/setgid modes and xattr writes, allows the rest', async (t) => {
      const missing = toolMissing(runtime);
      if (missing) return t.skip(missing);
      const unfiltered = await container(undefined);
      const unusable = hostUnsupported(unfiltered);
      if (unusable) return t.skip(unusable);
      const baseline = results(allCases, unfiltered);
      const filtered = results(allCases, await container({ ...ociSeccompProfile() }));
      check(t, allCases, baseline, filtered, 'oci');
    });

    if (runtime === 'crun') {
      it('runs the raw BPF program too (annotation run.oci.seccomp_bpf_data)', async (t) => {
        const missing = toolMissing(runtime);
        if (missing) return t.skip(missing);
        const unfiltered = await container(undefined);
        const unusable = hostUnsupported(unfiltered);
        if (unusable) return t.skip(unusable);
        const baseline = results(allCases, unfiltered);
        const bpfData = seccompBpfProgram().toString('base64');
        const filtered = results(allCases, await container(undefined, { 'run.oci.seccomp_bpf_data': bpfData }));
        check(t, allCases, baseline, filtered, 'bpf');
      });
    }
  });
}
