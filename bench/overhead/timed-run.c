/*
 * timed-run: runs one benchmark command and records how long it took, for Sky's overhead benchmark.
 *
 *   timed-run --out FILE [--drop-caches | --sync] [--stdout FILE] [--cwd DIR] -- CMD ARGS...
 *
 * With --drop-caches it first syncs and drops the page cache (echo 3 > /proc/sys/vm/drop_caches), so a
 * cold-cache run is cold exactly when CMD starts, whether or not a tracer started this helper; with --sync
 * it only syncs (a warm-cache run that does not pay for the previous run's write-back). --stdout sends CMD's
 * standard output to FILE (so a tracer's own output stays separate). The clock
 * (CLOCK_MONOTONIC) starts right before fork and stops when CMD has been reaped, so a tracer's start-up and
 * shut-down are outside it. Writes one JSON line to FILE and exits with CMD's exit status (128+signal if
 * CMD was killed). userSeconds/systemSeconds are CMD's CPU time (with its reaped descendants); selfCpuSeconds
 * is this helper's own (sync and drop_caches happen here). The helper itself makes a handful of system calls, so
 * tracing it costs nothing measurable.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double seconds_between(struct timespec a, struct timespec b) {
  return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static double timeval_seconds(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

static int drop_caches(void) {
  sync();
  int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
  if (fd < 0) return -1;
  ssize_t n = write(fd, "3\n", 2);
  close(fd);
  return n == 2 ? 0 : -1;
}

int main(int argc, char **argv) {
  const char *out = NULL, *cwd = NULL, *stdout_path = NULL;
  int drop = 0, sync_only = 0, i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (strcmp(argv[i], "--drop-caches") == 0) drop = 1;
    else if (strcmp(argv[i], "--sync") == 0) sync_only = 1;
    else if (strcmp(argv[i], "--stdout") == 0 && i + 1 < argc) stdout_path = argv[++i];
    else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
    else if (strcmp(argv[i], "--cwd") == 0 && i + 1 < argc) cwd = argv[++i];
    else {
      fprintf(stderr, "timed-run: unknown option %s\n", argv[i]);
      return 125;
    }
  }
  if (!out || i >= argc) {
    fprintf(stderr, "usage: timed-run --out FILE [--drop-caches | --sync] [--stdout FILE] [--cwd DIR] -- CMD...\n");
    return 125;
  }
  if (cwd && chdir(cwd) != 0) {
    fprintf(stderr, "timed-run: chdir %s: %s\n", cwd, strerror(errno));
    return 125;
  }
  if (drop && drop_caches() != 0) {
    fprintf(stderr, "timed-run: cannot drop caches: %s\n", strerror(errno));
    return 125;
  }
  if (sync_only && !drop) sync();
  if (stdout_path) {
    int fd = open(stdout_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0) {
      fprintf(stderr, "timed-run: %s: %s\n", stdout_path, strerror(errno));
      return 125;
    }
    close(fd);
  }
  FILE *report = fopen(out, "we");
  if (!report) {
    fprintf(stderr, "timed-run: %s: %s\n", out, strerror(errno));
    return 125;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "timed-run: fork: %s\n", strerror(errno));
    return 125;
  }
  if (child == 0) {
    execvp(argv[i], &argv[i]);
    fprintf(stderr, "timed-run: exec %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "timed-run: waitpid: %s\n", strerror(errno));
      return 125;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  struct rusage usage, self;
  getrusage(RUSAGE_CHILDREN, &usage);
  getrusage(RUSAGE_SELF, &self); /* this helper's own cost (sync, drop_caches), to subtract from an outer total */
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  fprintf(report,
          "{\"seconds\":%.6f,\"exitCode\":%d,\"userSeconds\":%.6f,\"systemSeconds\":%.6f,\"maxRssKiB\":%ld,"
          "\"selfCpuSeconds\":%.6f,\"droppedCaches\":%s}\n",
          seconds_between(t0, t1), code, timeval_seconds(usage.ru_utime), timeval_seconds(usage.ru_stime),
          usage.ru_maxrss, timeval_seconds(self.ru_utime) + timeval_seconds(self.ru_stime), drop ? "true" : "false");
  fclose(report);
  return code;
}
