/*
 * kiln-launcher: starts sandbox processes for a Kiln process and relays
 * their output, so Kiln never forks itself.
 *
 * Why: a fork of a Node process copies its page tables, which costs
 * milliseconds per build and grows with the heap (measured: 2.7 ms per
 * spawn from a small Node process, 18 ms once it held 200 MB more). This
 * process stays a few hundred KiB, so its fork is cheap, and the child
 * does in C what a shell wrapper did before exec: join the build's
 * cgroups, drop to the build user, lay out its fds.
 *
 * Protocol, little-endian, on stdin (requests) and stdout (events); every
 * message is a u32 byte length followed by that many bytes.
 *
 *   request: u32 id, i32 uid (-1: keep), i32 gid (-1: keep),
 *            u32 n + n strings: cgroup `tasks` files the child writes "0" to,
 *            u32 n + n strings: argv (argv[0] looked up on PATH without a /),
 *            u32 n + n strings: contents of fds 3, 4, … (memfds at offset 0),
 *            u32 status: 1 gives the child a pipe at the fd after those,
 *              for kiln-sandbox-init to write the build command's wait
 *              status to (0: none)
 *            where a string is u32 length + bytes.
 *   event:   u32 id, u8 kind, then by kind:
 *            0 started: i32 pid, once the child has exec'd or died (it leads
 *              a new session and group and is in its cgroups by then)
 *            1 stdout / 2 stderr: the bytes read
 *            3 exited: i32 exit code (-1 when killed), i32 signal (0: none),
 *              i32 1 when a wait status came through the status pipe (else
 *              0), i32 that status; sent once the child is reaped and its
 *              stdout and stderr are closed
 *            4 failed: a message; the child never started, no exited follows
 *
 * A child that cannot join its cgroups exits 125, one that cannot drop to
 * the build user 126, one whose exec fails 127; each says why on stderr.
 * A child gets fds 0, 1, 2 and its fds 3, 4, …, nothing else open.
 * When stdin closes, every child's process group is killed and the
 * launcher exits; when Kiln dies the launcher dies with it, and each child
 * with the launcher (parent-death signals).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { EV_STARTED = 0, EV_STDOUT = 1, EV_STDERR = 2, EV_EXITED = 3, EV_FAILED = 4 };

struct child {
  uint32_t id;
  pid_t pid;
  int out; /* read ends, -1 once closed */
  int err;
  int reaped;
  int status;
  int report; /* read end of the status pipe (non-blocking), or -1 */
};

static struct child *children;
static size_t child_count, child_capacity;

static void kill_all_and_exit(int code) {
  for (size_t i = 0; i < child_count; i++)
    if (!children[i].reaped) kill(-children[i].pid, SIGKILL);
  _exit(code);
}

static void write_all(const void *data, size_t size) {
  const char *p = data;
  while (size > 0) {
    ssize_t n = write(STDOUT_FILENO, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) kill_all_and_exit(1); /* Kiln is gone */
    p += n;
    size -= (size_t)n;
  }
}

static void emit(uint32_t id, uint8_t kind, const void *payload, uint32_t size) {
  unsigned char header[9];
  uint32_t length = 5 + size;
  memcpy(header, &length, 4);
  memcpy(header + 4, &id, 4);
  header[8] = kind;
  write_all(header, sizeof header);
  if (size) write_all(payload, size);
}

static void emit_failed(uint32_t id, const char *format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(message, sizeof message, format, args);
  va_end(args);
  emit(id, EV_FAILED, message, n < 0 ? 0 : (uint32_t)(n < (int)sizeof message ? n : (int)sizeof message - 1));
}

/* ---- reading a request ---- */

struct cursor {
  const unsigned char *p, *end;
  int bad;
};

static uint32_t take_u32(struct cursor *c) {
  uint32_t v = 0;
  if (c->end - c->p < 4) {
    c->bad = 1;
    return 0;
  }
  memcpy(&v, c->p, 4);
  c->p += 4;
  return v;
}

/* n strings, each NUL-terminated in a fresh copy; NULL-terminated array. */
static char **take_strings(struct cursor *c, uint32_t *count, uint32_t **lengths) {
  uint32_t n = take_u32(c);
  if (c->bad || n > 65536) {
    c->bad = 1;
    return NULL;
  }
  char **list = calloc(n + 1, sizeof *list);
  *lengths = calloc(n + 1, sizeof **lengths);
  for (uint32_t i = 0; i < n; i++) {
    uint32_t len = take_u32(c);
    if (c->bad || (size_t)(c->end - c->p) < len) {
      c->bad = 1;
      break;
    }
    list[i] = malloc(len + 1);
    memcpy(list[i], c->p, len);
    list[i][len] = 0;
    (*lengths)[i] = len;
    c->p += len;
  }
  *count = n;
  return list;
}

static void free_strings(char **list, uint32_t count, uint32_t *lengths) {
  if (list)
    for (uint32_t i = 0; i < count; i++) free(list[i]);
  free(list);
  free(lengths);
}

/* ---- the child, between fork and exec ---- */

/* Closes every fd from `first` up: none of Kiln's may reach a sandbox, whatever it left open across exec. */
static void close_fds_from(int first) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0) return;
#endif
  struct rlimit limit;
  long last = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY ? (long)limit.rlim_cur : 65536;
  for (long fd = first; fd < last; fd++) close((int)fd);
}

static void child_fail(int code, const char *what, const char *detail) {
  dprintf(STDERR_FILENO, "kiln-launcher: %s %s: %s\n", what, detail, strerror(errno));
  _exit(code);
}

static void run_child(int out, int err, int *fds, uint32_t fd_count, int report, char **tasks, uint32_t task_count, int uid,
                      int gid, char **argv) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  setsid();
  /* Move every source fd above the targets first, so no dup2 clobbers one still needed. */
  int high = 3 + (int)fd_count + 16;
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int moved_out = fcntl(out, F_DUPFD_CLOEXEC, high);
  int moved_err = fcntl(err, F_DUPFD_CLOEXEC, high);
  int moved_null = fcntl(devnull, F_DUPFD_CLOEXEC, high);
  for (uint32_t i = 0; i < fd_count; i++) fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, high);
  int moved_report = report >= 0 ? fcntl(report, F_DUPFD_CLOEXEC, high) : -1;
  if (moved_out < 0 || moved_err < 0 || moved_null < 0) _exit(125);
  if (dup2(moved_null, 0) < 0 || dup2(moved_out, 1) < 0 || dup2(moved_err, 2) < 0) _exit(125);
  for (uint32_t i = 0; i < fd_count; i++)
    if (fds[i] < 0 || dup2(fds[i], 3 + (int)i) < 0) child_fail(125, "cannot pass fd", "");
  int passed = 3 + (int)fd_count;
  if (report >= 0 && (moved_report < 0 || dup2(moved_report, passed++) < 0)) child_fail(125, "cannot pass the status pipe", "");
  close_fds_from(passed);
  for (uint32_t i = 0; i < task_count; i++) {
    int fd = open(tasks[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) child_fail(125, "cannot join cgroup", tasks[i]);
    close(fd);
  }
  if (gid >= 0 || uid >= 0) {
    if (setgroups(0, NULL) < 0) child_fail(126, "cannot clear groups", "");
    if (gid >= 0 && setgid((gid_t)gid) < 0) child_fail(126, "cannot set gid", "");
    if (uid >= 0 && setuid((uid_t)uid) < 0) child_fail(126, "cannot set uid", "");
  }
  /* Set last: a change of credentials clears it. If the launcher dies, so does the child. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) _exit(125);
  execvp(argv[0], argv);
  child_fail(127, "cannot run", argv[0]);
}

/* ---- starting a child ---- */

static int memfd_with(const char *data, uint32_t size) {
  int fd = memfd_create("kiln-launcher-fd", MFD_CLOEXEC);
  if (fd < 0) return -1;
  for (uint32_t done = 0; done < size;) {
    ssize_t n = write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return -1;
    }
    done += (uint32_t)n;
  }
  lseek(fd, 0, SEEK_SET);
  return fd;
}

static void start(const unsigned char *body, uint32_t size) {
  struct cursor c = {body, body + size, 0};
  uint32_t id = take_u32(&c);
  int uid = (int)take_u32(&c);
  int gid = (int)take_u32(&c);
  uint32_t task_count = 0, argc = 0, fd_count = 0;
  uint32_t *task_lengths = NULL, *arg_lengths = NULL, *fd_lengths = NULL;
  char **tasks = take_strings(&c, &task_count, &task_lengths);
  char **argv = c.bad ? NULL : take_strings(&c, &argc, &arg_lengths);
  char **contents = c.bad ? NULL : take_strings(&c, &fd_count, &fd_lengths);
  int wants_report = c.bad ? 0 : (int)take_u32(&c);
  int out[2] = {-1, -1}, err[2] = {-1, -1}, execed[2] = {-1, -1}, report[2] = {-1, -1};
  int *fds = calloc(fd_count + 1, sizeof *fds);
  for (uint32_t i = 0; i < fd_count; i++) fds[i] = -1;
  if (c.bad || argc == 0) {
    emit_failed(id, "malformed request");
    goto done;
  }
  for (uint32_t i = 0; i < fd_count; i++) {
    fds[i] = memfd_with(contents[i], fd_lengths[i]);
    if (fds[i] < 0) {
      emit_failed(id, "memfd: %s", strerror(errno));
      goto done;
    }
  }
  if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(execed, O_CLOEXEC) < 0 ||
      (wants_report && pipe2(report, O_CLOEXEC | O_NONBLOCK) < 0)) {
    emit_failed(id, "pipe: %s", strerror(errno));
    goto done;
  }
  pid_t pid = fork();
  if (pid < 0) {
    emit_failed(id, "fork: %s", strerror(errno));
    goto done;
  }
  if (pid == 0) run_child(out[1], err[1], fds, fd_count, report[1], tasks, task_count, uid, gid, argv);
  /* The write end closes when the child execs or exits: until then it may not be in its session or cgroups yet. */
  close(execed[1]);
  execed[1] = -1;
  char ignored;
  while (read(execed[0], &ignored, 1) < 0 && errno == EINTR) {
  }
  if (child_count == child_capacity) {
    child_capacity = child_capacity ? child_capacity * 2 : 16;
    children = realloc(children, child_capacity * sizeof *children);
  }
  children[child_count++] = (struct child){id, pid, out[0], err[0], 0, 0, report[0]};
  out[0] = err[0] = report[0] = -1;
  int32_t started = pid;
  emit(id, EV_STARTED, &started, 4);
done:
  for (int i = 0; i < 2; i++) {
    if (out[i] >= 0) close(out[i]);
    if (err[i] >= 0) close(err[i]);
    if (execed[i] >= 0) close(execed[i]);
    if (report[i] >= 0) close(report[i]);
  }
  for (uint32_t i = 0; i < fd_count; i++)
    if (fds[i] >= 0) close(fds[i]);
  free(fds);
  free_strings(tasks, task_count, task_lengths);
  free_strings(argv, argc, arg_lengths);
  free_strings(contents, fd_count, fd_lengths);
}

/* ---- children's ends ---- */

static void finish_if_done(size_t i) {
  struct child *ch = &children[i];
  if (!ch->reaped || ch->out >= 0 || ch->err >= 0) return;
  int32_t result[4] = {-1, 0, 0, 0};
  if (WIFEXITED(ch->status)) result[0] = WEXITSTATUS(ch->status);
  else if (WIFSIGNALED(ch->status)) result[1] = WTERMSIG(ch->status);
  if (ch->report >= 0) {
    /* Written before the sandbox's init exited, so before the child (its runtime) could be reaped. */
    int32_t reported[2];
    ssize_t n = read(ch->report, reported, sizeof reported);
    if (n == 4) {
      result[2] = 1;
      result[3] = reported[0];
    }
    close(ch->report);
  }
  emit(ch->id, EV_EXITED, result, sizeof result);
  children[i] = children[--child_count];
}

static void reap(void) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (size_t i = 0; i < child_count; i++) {
      if (children[i].pid != pid) continue;
      children[i].reaped = 1;
      children[i].status = status;
      finish_if_done(i);
      break;
    }
  }
}

/* Relays what one pipe has; closes it (and sets *fd to -1) at its end. */
static void relay(uint32_t id, int *fd, uint8_t kind) {
  static char buffer[65536];
  ssize_t n = read(*fd, buffer, sizeof buffer);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n > 0) {
    emit(id, kind, buffer, (uint32_t)n);
    return;
  }
  close(*fd);
  *fd = -1;
}

int main(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1; /* the parent is already gone */
  close_fds_from(3); /* what Kiln's process had open without close-on-exec (a database file, a pipe) */
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) return 1;
  fcntl(STDIN_FILENO, F_SETFD, FD_CLOEXEC);
  fcntl(STDOUT_FILENO, F_SETFD, FD_CLOEXEC);

  unsigned char *in = NULL;
  size_t in_size = 0, in_capacity = 0;
  struct pollfd *polls = NULL;
  size_t poll_capacity = 0;
  for (;;) {
    size_t want = 2 + 2 * child_count;
    if (want > poll_capacity) {
      poll_capacity = want * 2;
      polls = realloc(polls, poll_capacity * sizeof *polls);
    }
    polls[0] = (struct pollfd){STDIN_FILENO, POLLIN, 0};
    polls[1] = (struct pollfd){sigfd, POLLIN, 0};
    for (size_t i = 0; i < child_count; i++) {
      polls[2 + 2 * i] = (struct pollfd){children[i].out, POLLIN, 0};
      polls[3 + 2 * i] = (struct pollfd){children[i].err, POLLIN, 0};
    }
    size_t polled = child_count;
    if (poll(polls, 2 + 2 * polled, -1) < 0) {
      if (errno == EINTR) continue;
      kill_all_and_exit(1);
    }
    /* Output first, then exits, so a child's last bytes come before its exited event. */
    for (size_t i = polled; i-- > 0;) {
      struct child *ch = &children[i];
      if (ch->out >= 0 && polls[2 + 2 * i].revents) relay(ch->id, &ch->out, EV_STDOUT);
      if (ch->err >= 0 && polls[3 + 2 * i].revents) relay(ch->id, &ch->err, EV_STDERR);
      finish_if_done(i);
    }
    if (polls[1].revents) {
      struct signalfd_siginfo info;
      while (read(sigfd, &info, sizeof info) == sizeof info) {
      }
      reap();
    }
    if (polls[0].revents) {
      if (in_capacity - in_size < 65536) {
        in_capacity = in_capacity * 2 + 65536;
        in = realloc(in, in_capacity);
      }
      ssize_t n = read(STDIN_FILENO, in + in_size, in_capacity - in_size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) kill_all_and_exit(0); /* Kiln closed us, or died */
      in_size += (size_t)n;
      size_t used = 0;
      while (in_size - used >= 4) {
        uint32_t length;
        memcpy(&length, in + used, 4);
        if (in_size - used - 4 < length) break;
        start(in + used + 4, length);
        used += 4 + length;
      }
      memmove(in, in + used, in_size - used);
      in_size -= used;
    }
  }
}
