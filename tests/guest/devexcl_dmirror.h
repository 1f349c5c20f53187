// SPDX-License-Identifier: GPL-2.0
/*
 * devexcl_dmirror.h - what the test_hmm-mirror guest tests share (devexcl-tests.c,
 * devexcl-mirror-mm-tests.c): the ioctl wrappers, data patterns, sysfs knobs that
 * are restored on exit, kernel-log splat check, child helpers and the devexcl
 * fixture.  Include it from exactly one file per test program (it defines the
 * fixture).
 *
 * The tests drive the test_hmm mirror device (/dev/hmm_dmirror0) with the
 * HMM_DMIRROR_EXCLUSIVE and HMM_DMIRROR_CHECK_EXCLUSIVE ioctls and check
 * what the CPU, the mirror and the rest of mm (fork, mprotect, munmap,
 * madvise, mremap, compaction, migration, KSM, process exit) make of pages
 * a device holds for exclusive (atomic) access.
 *
 * The ioctls, as lib/test_hmm.c implements them:
 *  - EXCLUSIVE makes every page of [addr, addr + npages pages) device
 *    exclusive, maps it for atomic access in the mirror and copies the
 *    mirror's view of the range to ptr.  It fails with -EBUSY when some
 *    page could not be made exclusive.
 *  - CHECK_EXCLUSIVE fails with -EPERM while the mirror still maps at
 *    least one page of the range for atomic access, and returns 0 once
 *    none is left, i.e. once a CPU access or an mm invalidation revoked
 *    every page.  mirror_state() turns that into MIRROR_HELD or
 *    MIRROR_REVOKED.
 */
#ifndef DEVEXCL_DMIRROR_H
#define DEVEXCL_DMIRROR_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <sys/wait.h>

/* 5.10's harness has an unused parameter in its SIGALRM handler. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "kselftest_harness.h"
#pragma GCC diagnostic pop
#include "test_hmm_uapi.h"

#define DMIRROR_DEV		"/dev/hmm_dmirror0"
#define THP_ENABLED		"/sys/kernel/mm/transparent_hugepage/enabled"
#define COMPACT_MEMORY		"/proc/sys/vm/compact_memory"
#define DROP_CACHES		"/proc/sys/vm/drop_caches"
#define NR_HUGEPAGES		"/proc/sys/vm/nr_hugepages"
#define KSM_RUN			"/sys/kernel/mm/ksm/run"
#define KSM_FULL_SCANS		"/sys/kernel/mm/ksm/full_scans"
#define KSM_PAGES_TO_SCAN	"/sys/kernel/mm/ksm/pages_to_scan"
#define KSM_SLEEP_MSECS		"/sys/kernel/mm/ksm/sleep_millisecs"
#define NODE_HAS_MEMORY		"/sys/devices/system/node/has_memory"
#define NODE_ONLINE		"/sys/devices/system/node/online"

#define SZ_1M			(1024UL * 1024)
#define SZ_2M			(2 * SZ_1M)

#define STRESS_ROUNDS		1000
#define LEAK_WARMUP		4
#define LEAK_ROUNDS		64
#define LEAK_SIZE		(4 * SZ_1M)
#define LEAK_ANON_SLACK_KB	1024L
/*
 * Free memory moves between samples for reasons of its own: KASAN's quarantine
 * alone may hold up to 1/32 of RAM (64 MiB in the 2 GiB guest), and 7.1 was
 * measured 28 MiB lower after 64 clean children. A leaked reference per page
 * pins all LEAK_ROUNDS * LEAK_SIZE = 256 MiB; 96 MiB still catches that.
 */
#define LEAK_FREE_SLACK_KB	(96L * 1024)
#define KSM_WAIT_MSECS		10000L

#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE	101
#endif
#ifndef MPOL_MF_MOVE
#define MPOL_MF_MOVE		0x2
#endif
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC		0x01021994
#endif
#ifndef RAMFS_MAGIC
#define RAMFS_MAGIC		0x858458f6
#endif

enum {
	MIRROR_REVOKED = 0,	/* CHECK_EXCLUSIVE returned 0 */
	MIRROR_HELD = 1,	/* CHECK_EXCLUSIVE returned -EPERM */
};

static size_t page_size;

/* ------------------------------------------------------------------ */
/* Data patterns                                                       */
/* ------------------------------------------------------------------ */

static inline __u64 mix64(__u64 x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * Fill @len bytes (a multiple of 8) with data that depends on @seed and on
 * the offset, so that no two pages of a buffer look alike.
 */
static inline void fill_pattern(void *buf, size_t len, unsigned int seed)
{
	__u64 *word = buf;
	size_t i;

	for (i = 0; i < len / sizeof(*word); i++)
		word[i] = mix64(((__u64)seed << 40) ^ i);
}

/* Same as comparing against fill_pattern() output, without a copy. */
static inline bool pattern_matches(const void *buf, size_t len, unsigned int seed)
{
	const __u64 *word = buf;
	size_t i;

	for (i = 0; i < len / sizeof(*word); i++)
		if (word[i] != mix64(((__u64)seed << 40) ^ i))
			return false;
	return true;
}

static inline void *pattern_alloc(size_t len, unsigned int seed)
{
	void *buf = malloc(len);

	if (buf)
		fill_pattern(buf, len, seed);
	return buf;
}

/*
 * Compare @len bytes of @buf with @ref.  On a difference log how many bytes
 * differ and where the first one is, and return nonzero.
 */
static inline int bytes_differ(struct __test_metadata *_metadata, const void *buf,
			const void *ref, size_t len, const char *what)
{
	const unsigned char *b = buf, *r = ref;
	size_t i, bad = 0, first = 0;

	if (!memcmp(buf, ref, len))
		return 0;
	for (i = 0; i < len; i++) {
		if (b[i] == r[i])
			continue;
		if (!bad)
			first = i;
		bad++;
	}
	TH_LOG("%s: %zu of %zu bytes differ, first at %#zx (page %zu)",
	       what, bad, len, first, first / page_size);
	TH_LOG("%s: byte %#zx is %#04x, expected %#04x",
	       what, first, b[first], r[first]);
	return 1;
}

#define ASSERT_BYTES(buf, ref, len, what) \
	ASSERT_EQ(0, bytes_differ(_metadata, (buf), (ref), (len), (what)))

/* ------------------------------------------------------------------ */
/* The mirror device                                                   */
/* ------------------------------------------------------------------ */

static inline int dmirror_ioctl(int fd, unsigned long request, void *addr,
			 void *data, unsigned long npages,
			 struct hmm_dmirror_cmd *out)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (__u64)(uintptr_t)addr,
		.ptr = (__u64)(uintptr_t)data,
		.npages = npages,
	};
	int ret;

	do {
		ret = ioctl(fd, request, &cmd);
	} while (ret < 0 && errno == EINTR);
	if (out)
		*out = cmd;
	return ret < 0 ? -errno : 0;
}

/* MIRROR_HELD, MIRROR_REVOKED or a negative errno. */
static inline int mirror_state(int fd, void *addr, unsigned long npages)
{
	int ret = dmirror_ioctl(fd, HMM_DMIRROR_CHECK_EXCLUSIVE, addr, NULL,
				npages, NULL);

	return ret == -EPERM ? MIRROR_HELD : ret;
}

static inline const char *mirror_state_name(int state)
{
	switch (state) {
	case MIRROR_HELD:
		return "held";
	case MIRROR_REVOKED:
		return "revoked";
	default:
		return strerror(-state);
	}
}

static inline const char *errno_name(int err)
{
	switch (err) {
	case EBUSY:
		return "EBUSY";
	case EINVAL:
		return "EINVAL";
	case EOPNOTSUPP:
		return "EOPNOTSUPP";
	case EFAULT:
		return "EFAULT";
	case EPERM:
		return "EPERM";
	case ENOENT:
		return "ENOENT";
	default:
		return strerror(err);
	}
}

/* The ways EXCLUSIVE may decline memory it cannot make exclusive. */
static inline bool is_refusal(int err)
{
	return err == EBUSY || err == EINVAL || err == EOPNOTSUPP ||
	       err == EFAULT;
}

/*
 * Make [addr, addr + size) device-exclusive: the ioctl must succeed for
 * every page, the device must have seen exactly @expect, and the mirror
 * must hold the whole range afterwards.
 */
static inline void acquire(struct __test_metadata *_metadata, int fd, void *addr,
		    size_t size, const void *expect)
{
	unsigned long npages = size / page_size;
	struct hmm_dmirror_cmd cmd;
	void *seen = malloc(size);
	int ret;

	ASSERT_NE(NULL, seen);
	memset(seen, 0x5a, size);
	ret = dmirror_ioctl(fd, HMM_DMIRROR_EXCLUSIVE, addr, seen, npages,
			    &cmd);
	ASSERT_EQ(0, ret) {
		TH_LOG("EXCLUSIVE over %lu pages at %p failed: %s",
		       npages, addr, errno_name(-ret));
	}
	ASSERT_EQ(npages, cmd.cpages);
	ASSERT_BYTES(seen, expect, size, "device view after EXCLUSIVE");
	ret = mirror_state(fd, addr, npages);
	ASSERT_EQ(MIRROR_HELD, ret) {
		TH_LOG("mirror state right after EXCLUSIVE: %s",
		       mirror_state_name(ret));
	}
	free(seen);
}

/* EXCLUSIVE must decline [addr, addr + size) and leave nothing mapped. */
static inline void expect_refused(struct __test_metadata *_metadata, int fd,
			   void *addr, size_t size, const char *what)
{
	unsigned long npages = size / page_size;
	void *seen = malloc(size);
	int ret;

	ASSERT_NE(NULL, seen);
	ret = dmirror_ioctl(fd, HMM_DMIRROR_EXCLUSIVE, addr, seen, npages,
			    NULL);
	ASSERT_NE(0, ret) {
		TH_LOG("%s: EXCLUSIVE succeeded but must be refused", what);
	}
	ASSERT_TRUE(is_refusal(-ret)) {
		TH_LOG("%s: EXCLUSIVE failed with unexpected %s", what,
		       errno_name(-ret));
	}
	TH_LOG("%s: EXCLUSIVE refused with %s", what, errno_name(-ret));
	ret = mirror_state(fd, addr, npages);
	ASSERT_EQ(MIRROR_REVOKED, ret) {
		TH_LOG("%s: mirror is %s after a refused EXCLUSIVE", what,
		       mirror_state_name(ret));
	}
	free(seen);
}

/* A plain device read through the mirror must return exactly @expect. */
static inline void expect_device_view(struct __test_metadata *_metadata, int fd,
			       void *addr, size_t size, const void *expect,
			       const char *what)
{
	unsigned long npages = size / page_size;
	struct hmm_dmirror_cmd cmd;
	void *seen = malloc(size);
	int ret;

	ASSERT_NE(NULL, seen);
	memset(seen, 0xa5, size);
	ret = dmirror_ioctl(fd, HMM_DMIRROR_READ, addr, seen, npages, &cmd);
	ASSERT_EQ(0, ret) {
		TH_LOG("%s: device READ failed: %s", what, errno_name(-ret));
	}
	ASSERT_EQ(npages, cmd.cpages);
	ASSERT_BYTES(seen, expect, size, what);
	free(seen);
}

#define ASSERT_MIRROR(expected, fd, addr, npages, what) do {		\
	int __want = (expected);					\
	int __state = mirror_state((fd), (addr), (npages));		\
									\
	ASSERT_EQ(__want, __state) {					\
		TH_LOG("%s: mirror is %s, expected %s", (what),		\
		       mirror_state_name(__state),			\
		       mirror_state_name(__want));			\
	}								\
} while (0)

/* ------------------------------------------------------------------ */
/* Memory                                                              */
/* ------------------------------------------------------------------ */

/* Private anonymous memory; @advice is a MADV_*HUGEPAGE hint or 0. */
static inline void *map_anon(size_t size, int advice)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (advice)
		madvise(p, size, advice);	/* only a hint */
	return p;
}

/* Private anonymous memory starting on an @align boundary. */
static inline void *map_anon_aligned(size_t size, size_t align)
{
	size_t span = size + align;
	char *raw, *p;

	raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	p = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
	if (p > raw)
		munmap(raw, p - raw);
	if (raw + span > p + size)
		munmap(p + size, raw + span - (p + size));
	return p;
}

/* Byte-compare the first @len bytes of file @fd with @ref. */
static inline int file_differs(struct __test_metadata *_metadata, int fd,
			const void *ref, size_t len, const char *what)
{
	void *buf = malloc(len);
	int ret;

	if (!buf)
		return -ENOMEM;
	if (pread(fd, buf, len, 0) != (ssize_t)len) {
		TH_LOG("%s: short read of the backing file", what);
		free(buf);
		return 1;
	}
	ret = bytes_differ(_metadata, buf, ref, len, what);
	free(buf);
	return ret;
}

/* PFNs of @npages pages from @addr, 0 where absent or hidden. */
static inline void page_pfns(void *addr, unsigned long npages, __u64 *pfn)
{
	unsigned long i;
	__u64 entry;
	int fd;

	memset(pfn, 0, npages * sizeof(*pfn));
	fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return;
	for (i = 0; i < npages; i++) {
		off_t off = ((uintptr_t)addr / page_size + i) * sizeof(entry);

		if (pread(fd, &entry, sizeof(entry), off) != sizeof(entry))
			break;
		if (entry & (1ULL << 63))
			pfn[i] = entry & ((1ULL << 55) - 1);
	}
	close(fd);
}

/* ------------------------------------------------------------------ */
/* procfs and sysfs                                                    */
/* ------------------------------------------------------------------ */

static inline int file_read(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0)
		n = -errno;
	else
		buf[n] = '\0';
	close(fd);
	return n;
}

static inline int file_write(const char *path, const char *val)
{
	ssize_t n;
	int fd;

	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	if (n < 0)
		n = -errno;
	close(fd);
	return n < 0 ? n : 0;
}

static inline long file_read_long(const char *path)
{
	char buf[64];

	if (file_read(path, buf, sizeof(buf)) <= 0)
		return -1;
	return strtol(buf, NULL, 10);
}

/* Value of a /proc/meminfo field such as "MemFree:", or -1. */
static inline long meminfo_field(const char *field)
{
	size_t len = strlen(field);
	char line[256];
	long val = -1;
	FILE *f;

	f = fopen("/proc/meminfo", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, field, len)) {
			val = strtol(line + len, NULL, 10);
			break;
		}
	}
	fclose(f);
	return val;
}

/* Value in kB of an smaps field of the VMA that contains @addr, or -1. */
static inline long smaps_kb(void *addr, const char *field)
{
	unsigned long start, end, a = (uintptr_t)addr;
	size_t len = strlen(field);
	bool inside = false;
	char line[512], perms[8];
	long val = -1;
	FILE *f;

	f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3) {
			if (inside)
				break;
			inside = start <= a && a < end;
		} else if (inside && !strncmp(line, field, len)) {
			val = strtol(line + len, NULL, 10);
			break;
		}
	}
	fclose(f);
	return val;
}

/* The bracketed THP mode ("always", "madvise", "never") or NULL. */
static inline const char *thp_mode(char *buf, size_t len)
{
	char *open, *close;

	if (file_read(THP_ENABLED, buf, len) <= 0)
		return NULL;
	open = strchr(buf, '[');
	close = open ? strchr(open, ']') : NULL;
	if (!close)
		return NULL;
	*close = '\0';
	return open + 1;
}

/*
 * Tunables a test changes are recorded here, restored by the fixture
 * teardown and, when an assertion aborts the test, by the SIGABRT handler.
 */
struct knob {
	const char *path;
	char old[64];
	size_t len;
};

static struct knob knobs[8];
static unsigned int nr_knobs;

static inline void knobs_restore(void)
{
	while (nr_knobs) {
		struct knob *k = &knobs[--nr_knobs];
		ssize_t n;
		int fd;

		fd = open(k->path, O_WRONLY);
		if (fd < 0)
			continue;
		n = write(fd, k->old, k->len);
		(void)n;
		close(fd);
	}
}

/* Returning lets abort() go on and terminate the test. */
static inline void knobs_restore_on_abort(int sig)
{
	(void)sig;
	knobs_restore();
}

static inline int knob_set(const char *path, const char *val)
{
	struct sigaction sa = { .sa_handler = knobs_restore_on_abort };
	struct knob *k;
	unsigned int i;
	int n;

	for (i = 0; i < nr_knobs; i++)
		if (!strcmp(knobs[i].path, path))
			return file_write(path, val);
	if (nr_knobs == ARRAY_SIZE(knobs))
		return -ENOSPC;
	k = &knobs[nr_knobs];
	n = file_read(path, k->old, sizeof(k->old));
	if (n < 0)
		return n;
	k->path = path;
	k->len = n;
	if (!nr_knobs++)
		sigaction(SIGABRT, &sa, NULL);
	return file_write(path, val);
}

/* Nodes listed in has_memory (or online), up to @max; returns the count. */
static inline int memory_nodes(int *nodes, int max)
{
	char buf[256], *s;
	int n = 0;

	if (file_read(NODE_HAS_MEMORY, buf, sizeof(buf)) <= 0 &&
	    file_read(NODE_ONLINE, buf, sizeof(buf)) <= 0)
		return 0;
	s = buf;
	while (*s >= '0' && *s <= '9') {
		long lo = strtol(s, &s, 10), hi = lo;

		if (*s == '-')
			hi = strtol(s + 1, &s, 10);
		for (; lo <= hi && n < max; lo++)
			nodes[n++] = lo;
		if (*s != ',')
			break;
		s++;
	}
	return n;
}

static inline long sys_move_pages(unsigned long count, void **pages,
			   const int *nodes, int *status)
{
	return syscall(__NR_move_pages, 0, count, pages, nodes, status,
		       MPOL_MF_MOVE);
}

static inline long now_msecs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Wait for ksmd to complete @scans more full scans; 0 or -ETIMEDOUT. */
static inline int ksm_wait_full_scans(long scans, long timeout_msecs)
{
	long target = file_read_long(KSM_FULL_SCANS) + scans;
	long deadline = now_msecs() + timeout_msecs;

	while (file_read_long(KSM_FULL_SCANS) < target) {
		if (now_msecs() > deadline)
			return -ETIMEDOUT;
		usleep(20000);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Kernel log                                                          */
/* ------------------------------------------------------------------ */

static const char * const splat_markers[] = {
	"BUG:", "kernel BUG", "WARNING:", "Bad page", "Bad rss-counter",
	"general protection fault", "Oops", "blocked for more than",
};

/* Log and count kernel messages since setup that report a kernel bug. */
static inline int kmsg_splats(struct __test_metadata *_metadata, int kmsg)
{
	char rec[8192];
	int found = 0;
	unsigned int i;

	for (;;) {
		ssize_t n = read(kmsg, rec, sizeof(rec) - 1);
		char *msg;

		if (n < 0 && errno == EPIPE)
			continue;	/* records were overwritten */
		if (n <= 0)
			break;
		rec[n] = '\0';
		msg = strchr(rec, ';');
		msg = msg ? msg + 1 : rec;
		msg[strcspn(msg, "\n")] = '\0';
		for (i = 0; i < ARRAY_SIZE(splat_markers); i++) {
			if (strstr(msg, splat_markers[i])) {
				if (found++ < 16)
					TH_LOG("kernel: %s", msg);
				break;
			}
		}
	}
	return found;
}

/* ------------------------------------------------------------------ */
/* Child processes                                                     */
/* ------------------------------------------------------------------ */

static inline int wait_child(pid_t pid)
{
	int status = 0;

	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

static inline const char *child_result(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)",
			 WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "status %#x", status);
	return buf;
}

#define ASSERT_CHILD_OK(status, what) do {				\
	int __status = (status);					\
	char __res[64];							\
									\
	ASSERT_TRUE(WIFEXITED(__status) && !WEXITSTATUS(__status)) {	\
		TH_LOG("%s: child %s", (what),				\
		       child_result(__status, __res, sizeof(__res)));	\
	}								\
} while (0)

/* ------------------------------------------------------------------ */
/* Fixture                                                             */
/* ------------------------------------------------------------------ */

FIXTURE(devexcl)
{
	int fd;		/* /dev/hmm_dmirror0, mirrors this process */
	int kmsg;	/* /dev/kmsg positioned at setup, or -1 */
};

FIXTURE_SETUP(devexcl)
{
	page_size = sysconf(_SC_PAGESIZE);
	self->kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (self->kmsg >= 0)
		lseek(self->kmsg, 0, SEEK_END);
	self->fd = open(DMIRROR_DEV, O_RDWR);
	ASSERT_LE(0, self->fd) {
		TH_LOG("open %s: %s (is the test_hmm module loaded?)",
		       DMIRROR_DEV, strerror(errno));
	}
}

FIXTURE_TEARDOWN(devexcl)
{
	knobs_restore();
	if (self->fd >= 0)
		close(self->fd);
	if (self->kmsg >= 0) {
		ASSERT_EQ(0, kmsg_splats(_metadata, self->kmsg));
		close(self->kmsg);
	}
}

#endif /* DEVEXCL_DMIRROR_H */
