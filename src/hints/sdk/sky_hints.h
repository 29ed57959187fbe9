/*
 * Sky application hints for C: iwrite/iread/ipwrite/ipread are write/read/pwrite64/pread64 with two extra
 * trailing syscall arguments, SKY_HINT_MAGIC and an I/O class. The kernel ignores arguments a syscall does not
 * take; Sky's eBPF tracer reads them and tags the call's blocks with the class. Without Sky these are the plain
 * calls. Same return values and errno as the plain calls.
 *
 * The magic must equal the one in src/trace/hint-abi.ts (a unit test checks this). x86_64 Linux only.
 */
#ifndef SKY_HINTS_H
#define SKY_HINTS_H

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define SKY_HINT_MAGIC 0x534b5948L

/* The paper's default classes; applications may use any small non-negative integer. */
enum sky_io_class {
  SKY_CLASS_LARGE = 0,    /* file >= 10 MiB */
  SKY_CLASS_LT_10M = 1,
  SKY_CLASS_LT_5M = 2,
  SKY_CLASS_LT_2M = 3,
  SKY_CLASS_LT_1M = 4,
  SKY_CLASS_METADATA = 5,
};

static inline ssize_t iwrite(int fd, const void *buf, size_t count, int io_class) {
  return (ssize_t)syscall(SYS_write, fd, buf, count, SKY_HINT_MAGIC, (long)io_class);
}

static inline ssize_t iread(int fd, void *buf, size_t count, int io_class) {
  return (ssize_t)syscall(SYS_read, fd, buf, count, SKY_HINT_MAGIC, (long)io_class);
}

static inline ssize_t ipwrite(int fd, const void *buf, size_t count, off_t offset, int io_class) {
  return (ssize_t)syscall(SYS_pwrite64, fd, buf, count, (long)offset, SKY_HINT_MAGIC, (long)io_class);
}

static inline ssize_t ipread(int fd, void *buf, size_t count, off_t offset, int io_class) {
  return (ssize_t)syscall(SYS_pread64, fd, buf, count, (long)offset, SKY_HINT_MAGIC, (long)io_class);
}

#endif /* SKY_HINTS_H */
