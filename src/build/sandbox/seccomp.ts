/**
 * The seccomp filter every build sandbox installs, in the two shapes the
 * sandboxes take it: a raw classic-BPF program for bubblewrap's
 * `--seccomp FD`, and the OCI runtime-spec `linux.seccomp` object for
 * runc/crun. Both express the same policy, modelled on Nix's build sandbox
 * ("seccomp + privileges"):
 *
 * - **No setuid/setgid files.** `chmod`, `fchmod`, `fchmodat` and
 *   `fchmodat2` fail with `EPERM` when the requested mode has `S_ISUID`
 *   (04000) or `S_ISGID` (02000) set. A build must not leave behind a binary
 *   that raises privileges when someone else runs it, and a store path cannot
 *   carry these bits anyway. Every other mode, including the sticky bit
 *   (01000, `chmod 1777 dir`), is allowed.
 * - **No extended attributes.** `setxattr`, `lsetxattr`, `fsetxattr` and
 *   `setxattrat` (Linux 6.13+) fail with `ENOTSUP`, as if the file system had
 *   no xattr support, so a build can set neither POSIX ACLs
 *   (`system.posix_acl_*`) nor file capabilities (`security.capability`, the
 *   other way to make a privileged binary). NARs cannot represent xattrs, so
 *   no correct build needs them, and tools such as `cp -a` treat `ENOTSUP` as
 *   "not supported here" and carry on. (Reading xattrs stays allowed.)
 * - Everything else is allowed: this filter guards against privilege
 *   creation, it is not a general syscall allow-list.
 *
 * Not covered, as in Nix: a mode given when a file is created (`open`/`creat`
 * with `O_CREAT`, `mkdir`, `mknod`) can still carry the bits; `openat2` passes
 * its mode in a struct that seccomp cannot read, so no filter can close that
 * completely. Outputs must therefore still be canonicalised (special mode
 * bits stripped) when they are ingested.
 */

// ---------------------------------------------------------------------------
// Policy: syscall numbers per architecture (from the kernel's uapi headers:
// asm/unistd_64.h, asm/unistd_32.h, asm-generic/unistd.h).

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const EPERM = 1;
const ENOSYS = 38;
/** `ENOTSUP` (`== EOPNOTSUPP` on Linux). */
const ENOTSUP = 95;

/** Numbered since Linux 6.6 / 6.13 from the unified table, the same on every architecture. */
const NR_FCHMODAT2 = 452;
const NR_SETXATTRAT = 463;

/** `AUDIT_ARCH_*` = ELF machine | 64-bit flag (0x80000000) | little-endian flag (0x40000000). */
const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_I386 = 0x40000003;
const AUDIT_ARCH_AARCH64 = 0xc00000b7;

/** x86_64 syscalls made through the x32 ABI carry this bit in their number. */
const X32_SYSCALL_BIT = 0x40000000;

interface ArchSyscalls {
  readonly name: string;
  readonly auditArch: number;
  /** Syscalls whose mode is `args[1]` (`chmod(path, mode)`, `fchmod(fd, mode)`). */
  readonly modeArg1: readonly number[];
  /** Syscalls whose mode is `args[2]` (`fchmodat(dirfd, path, mode[, flags])`, `fchmodat2`). */
  readonly modeArg2: readonly number[];
  readonly setxattr: readonly number[];
  /** Refuse x32 syscalls (only meaningful for x86_64). */
  readonly rejectX32: boolean;
}

const ARCHES: readonly ArchSyscalls[] = [
  {
    name: 'x86_64',
    auditArch: AUDIT_ARCH_X86_64,
    modeArg1: [90, 91],
    modeArg2: [268, NR_FCHMODAT2],
    setxattr: [188, 189, 190, NR_SETXATTRAT],
    rejectX32: true,
  },
  {
    // `int 0x80` / compat syscalls from 32-bit code on an x86_64 kernel: a
    // different numbering, so it needs its own block or chmod(15) would slip by.
    name: 'i386',
    auditArch: AUDIT_ARCH_I386,
    modeArg1: [15, 94],
    modeArg2: [306, NR_FCHMODAT2],
    setxattr: [226, 227, 228, NR_SETXATTRAT],
    rejectX32: false,
  },
  {
    // asm-generic numbering: there is no plain chmod.
    name: 'aarch64',
    auditArch: AUDIT_ARCH_AARCH64,
    modeArg1: [52],
    modeArg2: [53, NR_FCHMODAT2],
    setxattr: [5, 6, 7, NR_SETXATTRAT],
    rejectX32: false,
  },
];

// ---------------------------------------------------------------------------
// Classic BPF, as the kernel runs it for seccomp.

/** `struct seccomp_data` offsets: `nr` (u32), `arch` (u32), `instruction_pointer` (u64), `args[6]` (u64 each). */
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
/** Low 32 bits of `args[i]`: the filter runs in the host's byte order, little-endian on x86_64 and aarch64. */
const offsetArgLow = (i: number): number => 16 + 8 * i;

const BPF_LD_W_ABS = 0x00 | 0x00 | 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JMP_JEQ_K = 0x05 | 0x10 | 0x00; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JMP_JSET_K = 0x05 | 0x40 | 0x00; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K = 0x06 | 0x00; // BPF_RET | BPF_K

const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const SECCOMP_RET_ERRNO = 0x00050000;
const SECCOMP_RET_ALLOW = 0x7fff0000;

/** A kernel limit (`BPF_MAXINSNS`) on one classic BPF program. */
export const BPF_MAX_INSNS = 4096;
/** Size of one `struct sock_filter`. */
export const SOCK_FILTER_SIZE = 8;

/** One instruction; a jump names its targets by label (`undefined` = the next instruction). */
type Insn =
  | { readonly kind: 'label'; readonly name: string }
  | { readonly kind: 'ld'; readonly offset: number }
  | { readonly kind: 'jeq' | 'jset'; readonly k: number; readonly jt?: string; readonly jf?: string }
  | { readonly kind: 'ret'; readonly k: number };

/** Resolves labels to relative forward offsets and encodes `struct sock_filter`s (little-endian). */
function assemble(program: readonly Insn[]): Buffer {
  const labels = new Map<string, number>();
  const code: Exclude<Insn, { kind: 'label' }>[] = [];
  for (const insn of program) {
    if (insn.kind === 'label') {
      if (labels.has(insn.name)) throw new Error(`seccomp: duplicate label ${insn.name}`);
      labels.set(insn.name, code.length);
    } else code.push(insn);
  }
  if (code.length > BPF_MAX_INSNS) throw new Error(`seccomp: ${code.length} instructions exceed ${BPF_MAX_INSNS}`);
  const out = Buffer.alloc(code.length * SOCK_FILTER_SIZE);
  const jump = (pc: number, label: string | undefined): number => {
    if (label === undefined) return 0;
    const target = labels.get(label);
    if (target === undefined) throw new Error(`seccomp: unknown label ${label}`);
    const offset = target - (pc + 1);
    // Classic BPF only jumps forward, by at most 255.
    if (offset < 0 || offset > 0xff) throw new Error(`seccomp: jump to ${label} out of range (${offset})`);
    return offset;
  };
  code.forEach((insn, pc) => {
    let op: number;
    let jt = 0;
    let jf = 0;
    let k: number;
    switch (insn.kind) {
      case 'ld':
        op = BPF_LD_W_ABS;
        k = insn.offset;
        break;
      case 'jeq':
      case 'jset':
        op = insn.kind === 'jeq' ? BPF_JMP_JEQ_K : BPF_JMP_JSET_K;
        jt = jump(pc, insn.jt);
        jf = jump(pc, insn.jf);
        k = insn.k;
        break;
      case 'ret':
        op = BPF_RET_K;
        k = insn.k;
        break;
    }
    const at = pc * SOCK_FILTER_SIZE;
    out.writeUInt16LE(op, at);
    out.writeUInt8(jt, at + 2);
    out.writeUInt8(jf, at + 3);
    out.writeUInt32LE(k >>> 0, at + 4);
  });
  return out;
}

/**
 * The filter as a classic BPF program: raw little-endian `struct sock_filter`
 * entries (`u16 code, u8 jt, u8 jf, u32 k`), no header — what bubblewrap's
 * `--seccomp FD` reads until EOF and hands to `prctl(PR_SET_SECCOMP)`.
 *
 * Architectures are checked first, since the same syscall number means
 * different things per ABI (and one process can switch ABI per syscall, e.g.
 * `int 0x80` from 64-bit code):
 * - `AUDIT_ARCH_X86_64`: x32 syscalls (number has bit 0x40000000) fail with
 *   `ENOSYS`, as on a kernel built without x32 — otherwise `0x40000000 | 90`
 *   would be a chmod the number checks below do not recognise.
 * - `AUDIT_ARCH_I386`: 32-bit compat calls, with their own numbers.
 * - `AUDIT_ARCH_AARCH64`.
 * - Any other architecture (e.g. AArch32 compat on an arm64 host, or a host
 *   this table does not know) kills the whole process (`SECCOMP_RET_KILL_PROCESS`,
 *   SIGSYS). Fail closed: we cannot tell a chmod from anything else there, so
 *   allowing would silently disable the policy. Killing is preferred over
 *   returning `EPERM` for every call because that would include `exit_group`,
 *   leaving a process that can neither work nor exit spinning until the
 *   build's timeout; a kill fails the build at once and visibly ("Bad system
 *   call"). It is also libseccomp's default for a foreign architecture.
 *
 * The mode argument is compared on its low 32 bits only (`mode_t`; the
 * kernel truncates it further to `umode_t`), so garbage in the upper half of
 * the register can neither hide nor fake the bits.
 *
 * Only valid on little-endian hosts (x86_64, aarch64): the kernel runs the
 * filter in host byte order.
 */
export function seccompBpfProgram(): Buffer {
  const program: Insn[] = [{ kind: 'ld', offset: OFFSET_ARCH }];
  for (const arch of ARCHES) program.push({ kind: 'jeq', k: arch.auditArch, jt: arch.name });
  program.push({ kind: 'ret', k: SECCOMP_RET_KILL_PROCESS });

  for (const arch of ARCHES) {
    program.push({ kind: 'label', name: arch.name }, { kind: 'ld', offset: OFFSET_NR });
    if (arch.rejectX32) program.push({ kind: 'jset', k: X32_SYSCALL_BIT, jt: 'enosys' });
    for (const nr of arch.modeArg1) program.push({ kind: 'jeq', k: nr, jt: 'mode-arg-1' });
    for (const nr of arch.modeArg2) program.push({ kind: 'jeq', k: nr, jt: 'mode-arg-2' });
    for (const nr of arch.setxattr) program.push({ kind: 'jeq', k: nr, jt: 'enotsup' });
    program.push({ kind: 'ret', k: SECCOMP_RET_ALLOW });
  }

  for (const index of [1, 2]) {
    program.push(
      { kind: 'label', name: `mode-arg-${index}` },
      { kind: 'ld', offset: offsetArgLow(index) },
      { kind: 'jset', k: S_ISUID | S_ISGID, jt: 'eperm' },
      { kind: 'ret', k: SECCOMP_RET_ALLOW },
    );
  }
  program.push(
    { kind: 'label', name: 'eperm' },
    { kind: 'ret', k: SECCOMP_RET_ERRNO | EPERM },
    { kind: 'label', name: 'enotsup' },
    { kind: 'ret', k: SECCOMP_RET_ERRNO | ENOTSUP },
    { kind: 'label', name: 'enosys' },
    { kind: 'ret', k: SECCOMP_RET_ERRNO | ENOSYS },
  );
  return assemble(program);
}

// ---------------------------------------------------------------------------
// OCI runtime-spec `linux.seccomp`.

/** One condition of an OCI seccomp rule; `SCMP_CMP_MASKED_EQ` means `(args[index] & value) == valueTwo`. */
export interface OciSeccompArg {
  index: number;
  value: number;
  valueTwo: number;
  op: 'SCMP_CMP_MASKED_EQ';
}

/** One OCI seccomp rule: the action applies when every condition in `args` holds (they are ANDed). */
export interface OciSeccompSyscall {
  names: string[];
  action: 'SCMP_ACT_ERRNO';
  errnoRet: number;
  args?: OciSeccompArg[];
}

/** The subset of the OCI runtime-spec `linux.seccomp` object this module produces. */
export interface OciLinuxSeccomp {
  defaultAction: 'SCMP_ACT_ALLOW';
  architectures: string[];
  syscalls: OciSeccompSyscall[];
}

/**
 * The same policy as {@link seccompBpfProgram} as an OCI runtime-spec
 * `linux.seccomp` object for runc/crun (both compile it with libseccomp).
 *
 * Conditions of one rule are ANDed, so "S_ISUID or S_ISGID is set" takes two
 * rules per syscall group, one `SCMP_CMP_MASKED_EQ` per bit. libseccomp
 * compares all 64 bits, but with a mask of 04000/02000 the upper half is
 * masked away.
 *
 * Differences from the BPF program, inherent to the format:
 * - Syscalls are named, and runc and crun silently skip a name their
 *   libseccomp does not know (crun fails instead with the annotation
 *   `run.oci.seccomp_fail_unknown_syscall`). libseccomp 2.5.4 (Debian 12)
 *   knows `fchmodat2` but not `setxattrat`, so there the latter is not
 *   refused.
 * - x32 (`SCMP_ARCH_X32`) is filtered by the same rules instead of refused.
 * - A foreign architecture gets the runtime's bad-architecture action, not
 *   necessarily a kill.
 */
export function ociSeccompProfile(): OciLinuxSeccomp {
  const bitRules = (names: string[], index: number): OciSeccompSyscall[] =>
    [S_ISUID, S_ISGID].map((bit) => ({
      names,
      action: 'SCMP_ACT_ERRNO',
      errnoRet: EPERM,
      args: [{ index, value: bit, valueTwo: bit, op: 'SCMP_CMP_MASKED_EQ' }],
    }));
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64'],
    syscalls: [
      ...bitRules(['chmod', 'fchmod'], 1),
      ...bitRules(['fchmodat', 'fchmodat2'], 2),
      { names: ['setxattr', 'lsetxattr', 'fsetxattr', 'setxattrat'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOTSUP },
    ],
  };
}
