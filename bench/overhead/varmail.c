/*
 * varmail: a mail-server workload for Sky's overhead benchmark, after filebench's varmail personality
 * (filebench is not packaged in Debian). One directory of small files; threads delete a mail, deliver a new
 * one (create, append, fsync), then read a mail and append to it (fsync), then read a mail again.
 *
 * Parameters mirror filebench's varmail.f: nfiles 1000, meandirwidth 1000000 (so one directory), filesize
 * gamma-distributed with mean 16 KiB and shape 1.5, iosize 1 MiB (whole-file reads), meanappendsize 16 KiB
 * (appendfilerand: uniform 0..16 KiB, zero skipped, as filebench does), nthreads 16, prealloc 80%.
 * Unlike filebench, a run is a fixed number of flow loops (not a duration), so run time is the measure.
 *
 *   varmail setup DIR [--nfiles N] [--filesize BYTES] [--gamma SHAPE] [--prealloc PCT] [--seed S]
 *   varmail run   DIR --loops N [--nthreads T] [--iosize BYTES] [--appendsize BYTES] [--seed S]
 *
 * `setup` (re)creates DIR with the preallocated fileset and syncs it; `run` finds the fileset's files in
 * DIR and runs the flow; it prints one JSON line of totals on stdout. Files are named %08u by entry index.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { ENTRY_EXISTS = 1, ENTRY_BUSY = 2 };

struct config {
  const char *dir;
  unsigned nfiles;
  double filesize_mean;
  double gamma_shape;
  unsigned prealloc_percent;
  unsigned long long loops;
  unsigned nthreads;
  size_t iosize;
  size_t appendsize;
  unsigned long long seed;
};

struct fileset {
  pthread_mutex_t lock;
  pthread_cond_t idle;
  unsigned char *state; /* ENTRY_* bits per entry */
  unsigned nfiles;
};

struct totals {
  unsigned long long flowops;
  unsigned long long read_bytes;
  unsigned long long write_bytes;
  unsigned long long fsyncs;
  unsigned long long errors;
};

struct worker {
  pthread_t thread;
  const struct config *config;
  struct fileset *fileset;
  unsigned long long loops;
  uint64_t rng;
  unsigned char *read_buffer;
  unsigned char *write_buffer;
  struct totals totals;
};

static void die(const char *what) {
  fprintf(stderr, "varmail: %s: %s\n", what, strerror(errno));
  exit(2);
}

/* xorshift64*: small, fast, seedable; each thread owns one. */
static uint64_t rng_next(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 2685821657736338717ULL;
}

static double rng_unit(uint64_t *state) { /* (0, 1) */
  return ((double)(rng_next(state) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(uint64_t *state) {
  double u1 = rng_unit(state), u2 = rng_unit(state);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Marsaglia–Tsang gamma(shape, 1); shape < 1 handled by the usual boost. */
static double rng_gamma(uint64_t *state, double shape) {
  if (shape < 1.0) return rng_gamma(state, shape + 1.0) * pow(rng_unit(state), 1.0 / shape);
  double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
  for (;;) {
    double x = rng_normal(state), v = 1.0 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    double u = rng_unit(state);
    if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
  }
}

static void entry_path(char *out, size_t size, const char *dir, unsigned index) {
  snprintf(out, size, "%s/%08u", dir, index);
}

static void write_all(int fd, const unsigned char *buffer, size_t length, struct totals *totals) {
  while (length > 0) {
    ssize_t n = write(fd, buffer, length);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (totals) { totals->errors++; return; }
      die("write");
    }
    if (totals) totals->write_bytes += (unsigned long long)n;
    buffer += n;
    length -= (size_t)n;
  }
}

static int setup(const struct config *config) {
  if (mkdir(config->dir, 0755) != 0 && errno != EEXIST) die("mkdir");
  /* Remove whatever a previous run left. */
  DIR *d = opendir(config->dir);
  if (!d) die("opendir");
  struct dirent *entry;
  char path[4096];
  while ((entry = readdir(d)) != NULL) {
    if (entry->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", config->dir, entry->d_name);
    if (unlink(path) != 0) die("unlink");
  }
  closedir(d);

  uint64_t rng = config->seed ? config->seed : 1;
  unsigned *order = malloc(sizeof(unsigned) * config->nfiles);
  if (!order) die("malloc");
  for (unsigned i = 0; i < config->nfiles; i++) order[i] = i;
  for (unsigned i = config->nfiles; i > 1; i--) { /* Fisher–Yates: which entries are preallocated */
    unsigned j = (unsigned)(rng_next(&rng) % i);
    unsigned t = order[i - 1]; order[i - 1] = order[j]; order[j] = t;
  }
  unsigned count = (unsigned)((unsigned long long)config->nfiles * config->prealloc_percent / 100);
  size_t buffer_size = 1 << 20;
  unsigned char *buffer = malloc(buffer_size);
  if (!buffer) die("malloc");
  for (size_t i = 0; i < buffer_size; i++) buffer[i] = (unsigned char)rng_next(&rng);
  unsigned long long total = 0;
  for (unsigned k = 0; k < count; k++) {
    double scale = config->filesize_mean / config->gamma_shape;
    size_t size = (size_t)(rng_gamma(&rng, config->gamma_shape) * scale);
    entry_path(path, sizeof path, config->dir, order[k]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open");
    for (size_t done = 0; done < size;) {
      size_t n = size - done < buffer_size ? size - done : buffer_size;
      write_all(fd, buffer, n, NULL);
      done += n;
    }
    if (close(fd) != 0) die("close");
    total += size;
  }
  int dirfd = open(config->dir, O_RDONLY | O_DIRECTORY);
  if (dirfd < 0 || syncfs(dirfd) != 0) die("syncfs");
  close(dirfd);
  printf("{\"files\":%u,\"bytes\":%llu}\n", count, total);
  free(order);
  free(buffer);
  return 0;
}

/* Pick an idle entry that exists (or not) and mark it busy; waits while every candidate is busy. */
static unsigned pick(struct fileset *set, uint64_t *rng, int want_exists) {
  pthread_mutex_lock(&set->lock);
  for (;;) {
    unsigned start = (unsigned)(rng_next(rng) % set->nfiles);
    for (unsigned k = 0; k < set->nfiles; k++) {
      unsigned i = (start + k) % set->nfiles;
      unsigned char s = set->state[i];
      if ((s & ENTRY_BUSY) == 0 && ((s & ENTRY_EXISTS) != 0) == (want_exists != 0)) {
        set->state[i] = (unsigned char)(s | ENTRY_BUSY);
        pthread_mutex_unlock(&set->lock);
        return i;
      }
    }
    pthread_cond_wait(&set->idle, &set->lock);
  }
}

static void release(struct fileset *set, unsigned index, int exists) {
  pthread_mutex_lock(&set->lock);
  set->state[index] = exists ? ENTRY_EXISTS : 0;
  pthread_cond_broadcast(&set->idle);
  pthread_mutex_unlock(&set->lock);
}

static void append_random(struct worker *w, int fd) {
  size_t size = (size_t)(rng_next(&w->rng) % (w->config->appendsize + 1));
  w->totals.flowops++;
  if (size == 0) return; /* filebench skips a zero-length append */
  lseek(fd, 0, SEEK_END);
  write_all(fd, w->write_buffer, size, &w->totals);
}

static void read_whole(struct worker *w, int fd) {
  w->totals.flowops++;
  lseek(fd, 0, SEEK_SET);
  for (;;) {
    ssize_t n = read(fd, w->read_buffer, w->config->iosize);
    if (n > 0) { w->totals.read_bytes += (unsigned long long)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) w->totals.errors++;
    break;
  }
}

static void do_fsync(struct worker *w, int fd) {
  w->totals.flowops++;
  w->totals.fsyncs++;
  if (fsync(fd) != 0) w->totals.errors++;
}

static void do_close(struct worker *w, int fd) {
  w->totals.flowops++;
  if (close(fd) != 0) w->totals.errors++;
}

static int do_open(struct worker *w, unsigned index, int flags) {
  char path[4096];
  entry_path(path, sizeof path, w->config->dir, index);
  w->totals.flowops++;
  int fd = open(path, flags, 0644);
  if (fd < 0) w->totals.errors++;
  return fd;
}

/* One pass of varmail's flow: 13 flowops. */
static void flow_once(struct worker *w) {
  struct fileset *set = w->fileset;
  char path[4096];

  unsigned victim = pick(set, &w->rng, 1); /* deletefile1 */
  entry_path(path, sizeof path, w->config->dir, victim);
  w->totals.flowops++;
  if (unlink(path) != 0) w->totals.errors++;
  release(set, victim, 0);

  unsigned fresh = pick(set, &w->rng, 0); /* createfile2, appendfilerand2, fsyncfile2, closefile2 */
  int fd = do_open(w, fresh, O_RDWR | O_CREAT | O_TRUNC);
  if (fd >= 0) {
    append_random(w, fd);
    do_fsync(w, fd);
    do_close(w, fd);
  }
  release(set, fresh, fd >= 0);

  unsigned mail = pick(set, &w->rng, 1); /* openfile3, readfile3, appendfilerand3, fsyncfile3, closefile3 */
  fd = do_open(w, mail, O_RDWR);
  if (fd >= 0) {
    read_whole(w, fd);
    append_random(w, fd);
    do_fsync(w, fd);
    do_close(w, fd);
  }
  release(set, mail, 1);

  mail = pick(set, &w->rng, 1); /* openfile4, readfile4, closefile4 */
  fd = do_open(w, mail, O_RDONLY);
  if (fd >= 0) {
    read_whole(w, fd);
    do_close(w, fd);
  }
  release(set, mail, 1);
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (unsigned long long i = 0; i < w->loops; i++) flow_once(w);
  return NULL;
}

static void load_fileset(const struct config *config, struct fileset *set) {
  set->nfiles = config->nfiles;
  set->state = calloc(config->nfiles, 1);
  if (!set->state) die("calloc");
  pthread_mutex_init(&set->lock, NULL);
  pthread_cond_init(&set->idle, NULL);
  DIR *d = opendir(config->dir);
  if (!d) die("opendir");
  struct dirent *entry;
  unsigned present = 0;
  while ((entry = readdir(d)) != NULL) {
    char *end;
    unsigned long index = strtoul(entry->d_name, &end, 10);
    if (entry->d_name[0] == '.' || *end != '\0' || index >= config->nfiles) continue;
    set->state[index] = ENTRY_EXISTS;
    present++;
  }
  closedir(d);
  if (present < config->nthreads * 2 || present + config->nthreads * 2 > config->nfiles) {
    fprintf(stderr, "varmail: %u of %u files present in %s; run `varmail setup` first\n", present,
            config->nfiles, config->dir);
    exit(2);
  }
}

static int run(const struct config *config) {
  struct fileset set;
  load_fileset(config, &set);
  struct worker *workers = calloc(config->nthreads, sizeof *workers);
  if (!workers) die("calloc");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (unsigned t = 0; t < config->nthreads; t++) {
    struct worker *w = &workers[t];
    w->config = config;
    w->fileset = &set;
    w->loops = config->loops / config->nthreads + (t < config->loops % config->nthreads ? 1 : 0);
    w->rng = (config->seed ? config->seed : 1) * 0x9E3779B97F4A7C15ULL + t + 1;
    w->read_buffer = malloc(config->iosize);
    w->write_buffer = malloc(config->appendsize + 1);
    if (!w->read_buffer || !w->write_buffer) die("malloc");
    for (size_t i = 0; i <= config->appendsize; i++) w->write_buffer[i] = (unsigned char)rng_next(&w->rng);
    errno = pthread_create(&w->thread, NULL, worker_main, w);
    if (errno != 0) die("pthread_create");
  }
  struct totals sum = {0};
  for (unsigned t = 0; t < config->nthreads; t++) {
    pthread_join(workers[t].thread, NULL);
    sum.flowops += workers[t].totals.flowops;
    sum.read_bytes += workers[t].totals.read_bytes;
    sum.write_bytes += workers[t].totals.write_bytes;
    sum.fsyncs += workers[t].totals.fsyncs;
    sum.errors += workers[t].totals.errors;
    free(workers[t].read_buffer);
    free(workers[t].write_buffer);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("{\"loops\":%llu,\"flowops\":%llu,\"readBytes\":%llu,\"writeBytes\":%llu,\"fsyncs\":%llu,"
         "\"errors\":%llu,\"seconds\":%.6f}\n",
         config->loops, sum.flowops, sum.read_bytes, sum.write_bytes, sum.fsyncs, sum.errors, seconds);
  free(workers);
  free(set.state);
  return sum.errors == 0 ? 0 : 1;
}

static unsigned long long number(const char *text, const char *name) {
  char *end;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0') {
    fprintf(stderr, "varmail: bad %s: %s\n", name, text);
    exit(2);
  }
  return value;
}

int main(int argc, char **argv) {
  struct config config = {
      .nfiles = 1000, .filesize_mean = 16384, .gamma_shape = 1.5, .prealloc_percent = 80, .loops = 0,
      .nthreads = 16, .iosize = 1 << 20, .appendsize = 16384, .seed = 1};
  if (argc < 3 || (strcmp(argv[1], "setup") != 0 && strcmp(argv[1], "run") != 0)) {
    fprintf(stderr, "usage: varmail setup|run DIR [options]\n");
    return 2;
  }
  config.dir = argv[2];
  for (int i = 3; i + 1 < argc; i += 2) {
    const char *name = argv[i], *value = argv[i + 1];
    if (strcmp(name, "--nfiles") == 0) config.nfiles = (unsigned)number(value, name);
    else if (strcmp(name, "--filesize") == 0) config.filesize_mean = (double)number(value, name);
    else if (strcmp(name, "--gamma") == 0) config.gamma_shape = atof(value);
    else if (strcmp(name, "--prealloc") == 0) config.prealloc_percent = (unsigned)number(value, name);
    else if (strcmp(name, "--loops") == 0) config.loops = number(value, name);
    else if (strcmp(name, "--nthreads") == 0) config.nthreads = (unsigned)number(value, name);
    else if (strcmp(name, "--iosize") == 0) config.iosize = (size_t)number(value, name);
    else if (strcmp(name, "--appendsize") == 0) config.appendsize = (size_t)number(value, name);
    else if (strcmp(name, "--seed") == 0) config.seed = number(value, name);
    else {
      fprintf(stderr, "varmail: unknown option %s\n", name);
      return 2;
    }
  }
  if (config.nfiles == 0 || config.nthreads == 0 || config.iosize == 0 || config.gamma_shape <= 0 ||
      config.prealloc_percent > 100) {
    fprintf(stderr, "varmail: bad parameters\n");
    return 2;
  }
  if (strcmp(argv[1], "setup") == 0) return setup(&config);
  if (config.loops == 0) {
    fprintf(stderr, "varmail: run needs --loops N\n");
    return 2;
  }
  return run(&config);
}
