/*
 * kiln-sandbox-init: the first program a sandbox runs, so that Kiln learns
 * how the build's command ended. A runtime (bwrap, runc) only passes on an
 * exit status, and turns death by signal n into status 128+n, which a
 * command can also exit with; this program sees the command's own wait
 * status and writes it to Kiln.
 *
 *   kiln-sandbox-init STATUS_FD COMMAND [ARG]...
 *
 * It runs as the sandbox's PID 1 (bwrap's `--as-pid-1`; an OCI container's
 * process), so it also reaps the orphans the command leaves while it runs.
 * It makes itself undumpable (the build's processes, running as the same
 * user, can then neither open its fds through /proc nor trace it), marks
 * STATUS_FD and every other fd above 2 close-on-exec, runs COMMAND with
 * the same environment (looked up on PATH like execvp when it has no `/`),
 * waits for it, writes its 4-byte wait status (native byte order) to
 * STATUS_FD and exits as a shell would: with its exit status, or 128+n
 * after signal n. A COMMAND that cannot be run says why on stderr and
 * exits 127, as execvp's callers do.
 *
 * Kiln passes it to the sandbox as a memfd and runs it as /proc/self/fd/N,
 * so nothing of it appears in the sandbox's file system. It is linked
 * without libc (static, no loader: the sandbox has no /lib), so it only
 * makes system calls, for x86_64 and aarch64 (the aarch64 build runs in
 * sandbox-init.test.ts under qemu-user, cross-compiled with these flags).
 */

typedef unsigned long size_t;
typedef long ssize_t;

#if defined(__x86_64__)
#define SYS_write 1
#define SYS_clone 56
#define SYS_execve 59
#define SYS_wait4 61
#define SYS_fcntl 72
#define SYS_prctl 157
#define SYS_exit_group 231

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
  return ret;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  xor %rbp, %rbp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call start_c\n"
        "  hlt\n");
#elif defined(__aarch64__)
#define SYS_write 64
#define SYS_clone 220
#define SYS_execve 221
#define SYS_wait4 260
#define SYS_fcntl 25
#define SYS_prctl 167
#define SYS_exit_group 94

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
  return x0;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  mov x0, sp\n"
        "  bl start_c\n"
        "  brk #0\n");
#else
#error "kiln-sandbox-init supports x86_64 and aarch64"
#endif

#define SYS_close_range 436 /* the same number on every architecture */
#define SIGCHLD 17
#define F_SETFD 2
#define FD_CLOEXEC 1
#define PR_SET_DUMPABLE 4
#define CLOSE_RANGE_CLOEXEC 4
#define EINTR 4
#define ENOENT 2
#define EACCES 13
#define ENOTDIR 20

static long sys3(long n, long a, long b, long c) { return sys6(n, a, b, c, 0, 0, 0); }

static __attribute__((noreturn)) void exit_with(int code) {
  for (;;) sys3(SYS_exit_group, code, 0, 0);
}

static size_t length(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

static void say(const char *s) { sys3(SYS_write, 2, (long)s, (long)length(s)); }

/* ": " and what an exec error means (as strerror puts it), or its number; then a newline. */
static void say_errno(long error) {
  static const struct {
    long number;
    const char *text;
  } known[] = {{2, "No such file or directory"}, {7, "Argument list too long"}, {8, "Exec format error"},
               {12, "Cannot allocate memory"},   {13, "Permission denied"},       {20, "Not a directory"},
               {21, "Is a directory"},           {26, "Text file busy"},          {36, "File name too long"},
               {40, "Too many levels of symbolic links"}};
  for (unsigned i = 0; i < sizeof known / sizeof known[0]; i++) {
    if (known[i].number != error) continue;
    say(": ");
    say(known[i].text);
    say("\n");
    return;
  }
  char text[32];
  int at = sizeof text;
  text[--at] = 0;
  text[--at] = '\n';
  do text[--at] = (char)('0' + error % 10);
  while ((error /= 10) > 0 && at > 10);
  say(": errno ");
  say(text + at);
}

/* The value of NAME in the environment, or 0. */
static const char *env_get(char **envp, const char *name) {
  size_t n = length(name);
  for (; *envp; envp++) {
    size_t i = 0;
    while (i < n && (*envp)[i] == name[i]) i++;
    if (i == n && (*envp)[n] == '=') return *envp + n + 1;
  }
  return 0;
}

/* execve, or for a name without `/` each PATH entry in turn as execvp does; returns the error that stopped it. */
static long run(char **argv, char **envp) {
  const char *file = argv[0];
  for (const char *p = file; *p; p++)
    if (*p == '/') return sys3(SYS_execve, (long)file, (long)argv, (long)envp);
  const char *path = env_get(envp, "PATH");
  if (!path) path = "/bin:/usr/bin";
  size_t file_length = length(file);
  long error = -ENOENT, denied = 0;
  char candidate[4096];
  for (const char *entry = path;;) {
    const char *end = entry;
    while (*end && *end != ':') end++;
    size_t dir_length = (size_t)(end - entry);
    if (dir_length + 1 + file_length + 1 <= sizeof candidate) {
      size_t at = 0;
      for (size_t i = 0; i < dir_length; i++) candidate[at++] = entry[i];
      if (dir_length > 0) candidate[at++] = '/';
      for (size_t i = 0; i <= file_length; i++) candidate[at++] = file[i];
      error = sys3(SYS_execve, (long)candidate, (long)argv, (long)envp);
      if (error == -EACCES) denied = error;
      else if (error != -ENOENT && error != -ENOTDIR) return error;
    }
    if (!*end) break;
    entry = end + 1;
  }
  return denied ? denied : error;
}

static int parse_fd(const char *s) {
  int fd = 0;
  if (!*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || fd > 100000) return -1;
    fd = fd * 10 + (*s - '0');
  }
  return fd;
}

__attribute__((noreturn, used)) void start_c(long *stack) {
  int argc = (int)stack[0];
  char **argv = (char **)(stack + 1);
  char **envp = argv + argc + 1;
  int status_fd = argc >= 3 ? parse_fd(argv[1]) : -1;
  if (status_fd < 3) {
    say("usage: kiln-sandbox-init STATUS_FD COMMAND [ARG]...\n");
    exit_with(127);
  }
  sys3(SYS_prctl, PR_SET_DUMPABLE, 0, 0);
  /* Nothing but 0, 1 and 2 reaches the command: not the status fd, not this program's own file. */
  if (sys3(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
    for (int fd = 3; fd < 1024; fd++) sys3(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
  long pid = sys6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0);
  if (pid < 0) {
    say("kiln-sandbox-init: cannot fork");
    say_errno(-pid);
    exit_with(127);
  }
  if (pid == 0) {
    long error = run(argv + 2, envp);
    say("kiln-sandbox-init: cannot run ");
    say(argv[2]);
    say_errno(-error);
    exit_with(127);
  }
  /* As the sandbox's PID 1 it inherits every orphan: each is reaped as it ends (a zombie would hold one of the
     build's pids) until the command itself ends; the kernel then kills what is left. */
  int status = 0;
  long waited;
  do waited = sys6(SYS_wait4, -1, (long)&status, 0, 0, 0, 0);
  while (waited != pid && (waited > 0 || waited == -EINTR));
  if (waited != pid) exit_with(127);
  sys3(SYS_write, status_fd, (long)&status, sizeof status);
  int signal = status & 0x7f;
  exit_with(signal == 0 ? (status >> 8) & 0xff : 128 + signal);
}
