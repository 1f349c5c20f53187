/* SPDX-License-Identifier: GPL-2.0 */
/*
 * devexcl_util.h - helpers shared by the guest test programs that drive the
 * devexcl probe modules (devexcl-api-tests.c, devexcl-concurrency-tests.c):
 * the probe ioctls, data patterns, /proc/self/pagemap and smaps readers, the
 * kernel command line's devexcl.apis= list and the THP mode.
 *
 * Included after kselftest_harness.h and devexcl_probe_uapi.h; every helper
 * is static, one copy per program.
 */
#ifndef DEVEXCL_UTIL_H
#define DEVEXCL_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "devexcl_probe_uapi.h"

#define PROBE_DEV_FMT	"/dev/devexcl_probe_%s"
#define CMDLINE_KEY	"devexcl.apis="
#define THP_ENABLED	"/sys/kernel/mm/transparent_hugepage/enabled"
#define HPAGE_SIZE	(2UL << 20)

#define PM_SWAP		(1ULL << 62)
#define PM_PRESENT	(1ULL << 63)

static inline size_t psize(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* A value unique to the seed and to every 8-byte word of the buffer. */
static inline uint64_t pattern_word(unsigned int seed, size_t i)
{
	return (seed + 1) * 0x9e3779b97f4a7c15ULL ^ (i * 0x100000001b3ULL);
}

static inline void fill_pattern(void *buf, size_t len, unsigned int seed)
{
	uint64_t *w = buf;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i++)
		w[i] = pattern_word(seed, i);
}

/* Index of the first 8-byte word that differs, or -1 if all match. */
static inline long check_pattern(const void *buf, size_t len, unsigned int seed)
{
	const volatile uint64_t *w = buf;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i++)
		if (w[i] != pattern_word(seed, i))
			return (long)i;
	return -1;
}

/* DEVEXCL_PROBE_IOC_EXCLUSIVE with flags; 0 or -errno. */
static inline int probe_exclusive_flags(int fd, void *addr, unsigned long npages,
					__u32 flags, __u32 hold_ms,
					struct devexcl_probe_exclusive *ex)
{
	memset(ex, 0, sizeof(*ex));
	ex->size = sizeof(*ex);
	ex->flags = flags;
	ex->addr = (uintptr_t)addr;
	ex->npages = npages;
	ex->hold_ms = hold_ms;
	return ioctl(fd, DEVEXCL_PROBE_IOC_EXCLUSIVE, ex) ? -errno : 0;
}

static inline int probe_exclusive(int fd, void *addr, unsigned long npages,
				  struct devexcl_probe_exclusive *ex)
{
	return probe_exclusive_flags(fd, addr, npages, 0, 0, ex);
}

static inline int probe_stats(int fd, struct devexcl_probe_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	return ioctl(fd, DEVEXCL_PROBE_IOC_STATS, st) ? -errno : 0;
}

/*
 * Count the pages of [addr, addr + npages pages) whose pagemap entry has
 * exactly the bits of want among PM_SWAP | PM_PRESENT; -1 on error.
 */
static inline long pagemap_count(void *addr, unsigned long npages, uint64_t want)
{
	uint64_t ent[DEVEXCL_PROBE_MAX_PAGES];
	size_t len = npages * sizeof(ent[0]);
	unsigned long i;
	long n = 0;
	ssize_t got;
	int fd;

	if (npages > DEVEXCL_PROBE_MAX_PAGES)
		return -1;
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	got = pread(fd, ent, len, (off_t)((uintptr_t)addr / psize() * 8));
	close(fd);
	if (got != (ssize_t)len)
		return -1;
	for (i = 0; i < npages; i++)
		if ((ent[i] & (PM_SWAP | PM_PRESENT)) == want)
			n++;
	return n;
}

/* Pages that are device-exclusive (non-present swap-type entries). */
static inline long pm_exclusive(void *addr, unsigned long npages)
{
	return pagemap_count(addr, npages, PM_SWAP);
}

/* Pages that are present. */
static inline long pm_present(void *addr, unsigned long npages)
{
	return pagemap_count(addr, npages, PM_PRESENT);
}

/* Does devexcl.apis= on the kernel command line list api? */
static inline bool cmdline_expects(const char *api)
{
	char buf[4096], *tok, *save, *a, *save2;
	size_t n;
	FILE *f;

	f = fopen("/proc/cmdline", "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';

	for (tok = strtok_r(buf, " \t\n", &save); tok;
	     tok = strtok_r(NULL, " \t\n", &save)) {
		if (strncmp(tok, CMDLINE_KEY, strlen(CMDLINE_KEY)))
			continue;
		for (a = strtok_r(tok + strlen(CMDLINE_KEY), ",", &save2); a;
		     a = strtok_r(NULL, ",", &save2))
			if (!strcmp(a, api))
				return true;
	}
	return false;
}

/* 1 if THP can be used (mode always or madvise), 0 if not. */
static inline int thp_usable(char *mode, size_t len)
{
	FILE *f = fopen(THP_ENABLED, "r");

	snprintf(mode, len, "not available");
	if (!f)
		return 0;
	if (!fgets(mode, (int)len, f))
		snprintf(mode, len, "unreadable");
	fclose(f);
	mode[strcspn(mode, "\n")] = '\0';
	return strstr(mode, "[always]") || strstr(mode, "[madvise]");
}

/* AnonHugePages (kB) of the VMA holding addr, -1 if not found. */
static inline long anon_huge_kb(void *addr)
{
	unsigned long start, end;
	char line[512];
	bool in = false;
	long kb = -1;
	FILE *f;

	f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			in = (uintptr_t)addr >= start && (uintptr_t)addr < end;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/* The first HPAGE_SIZE-aligned address in raw (a 2 * HPAGE_SIZE mapping). */
static inline char *hpage_align(void *raw)
{
	return (char *)(((uintptr_t)raw + HPAGE_SIZE - 1) & ~(HPAGE_SIZE - 1));
}

static inline void *map_private(size_t len)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/*
 * Open the probe device of API name: the fd, -ENODEV if the module is not
 * loaded (no device node), or -errno.
 */
static inline int probe_open(const char *name)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), PROBE_DEV_FMT, name);
	if (access(path, F_OK))
		return -ENODEV;
	fd = open(path, O_RDWR | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Exit codes of a worker child (run_child()). */
#define CHILD_OK		0
#define CHILD_FAIL		1
#define CHILD_SKIP		4	/* cannot run here; it printed why */
#define CHILD_HUNG		-1	/* killed at the deadline */

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Run fn(arg) in a child process; wait at most deadline_s seconds.  Returns
 * the child's exit status, CHILD_HUNG if it had to be SIGKILLed at the
 * deadline, or CHILD_FAIL if it died of a signal.
 */
static inline int run_child(int (*fn)(void *), void *arg, double deadline_s)
{
	double end = now_s() + deadline_s;
	int status;
	pid_t pid, w;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return CHILD_FAIL;
	if (pid == 0) {
		int rc;

		/* its diagnostics must survive a SIGKILL at the deadline */
		setvbuf(stdout, NULL, _IOLBF, 0);
		rc = fn(arg);

		fflush(NULL);
		_exit(rc);
	}
	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0)
			return CHILD_FAIL;
		if (now_s() > end) {
			/*
			 * Reap it if it dies within 10 s; a task blocked
			 * uninterruptibly cannot, and the hung-task
			 * detector names it in the console.
			 */
			kill(pid, SIGKILL);
			for (end = now_s() + 10; now_s() < end; usleep(20000))
				if (waitpid(pid, &status, WNOHANG) == pid)
					break;
			return CHILD_HUNG;
		}
		usleep(20000);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return CHILD_FAIL;
}

/*
 * The probe fixtures (one variant per kernel API, "range" and "page") are all
 * the same: PROBE_FIXTURE(x) defines fixture x with its two variants, its
 * setup and teardown; tests start with NEED_DEVICE().  The setup opens the
 * variant's probe into self->fd; an absent module is a SKIP unless
 * devexcl.apis= says the kernel provides the API (then it fails).  5.10's
 * harness runs the test body after a SKIP in the setup: NEED_DEVICE()
 * returns at once then.
 */
#define PROBE_FIXTURE_SETUP() do {					\
	struct devexcl_probe_stats __st;				\
									\
	self->fd = probe_open(variant->name);				\
	if (self->fd == -ENODEV) {					\
		ASSERT_FALSE(cmdline_expects(variant->name)) {		\
			TH_LOG("expected API %s but its probe module is not loaded", \
			       variant->name);				\
		}							\
		self->skipped = true;					\
		SKIP(return, "API %s not provided by this kernel",	\
		     variant->name);					\
	}								\
	ASSERT_GE(self->fd, 0) {					\
		TH_LOG("open the %s probe: %s", variant->name,		\
		       strerror(-self->fd));				\
	}								\
	ASSERT_EQ(0, probe_stats(self->fd, &__st));			\
	ASSERT_EQ(variant->id, __st.api);				\
} while (0)

#define NEED_DEVICE() do {		\
	if (self->skipped)		\
		return;			\
} while (0)

#define PROBE_FIXTURE(fx)						\
	FIXTURE(fx) {							\
		int fd;							\
		bool skipped;						\
	};								\
	FIXTURE_VARIANT(fx) {						\
		const char *name;					\
		__u32 id;						\
	};								\
	FIXTURE_VARIANT_ADD(fx, range) {				\
		.name = "range",					\
		.id = DEVEXCL_PROBE_API_RANGE,				\
	};								\
	FIXTURE_VARIANT_ADD(fx, page) {					\
		.name = "page",						\
		.id = DEVEXCL_PROBE_API_PAGE,				\
	};								\
	FIXTURE_SETUP(fx)						\
	{								\
		PROBE_FIXTURE_SETUP();					\
	}								\
	FIXTURE_TEARDOWN(fx)						\
	{								\
		if (self->fd >= 0)					\
			close(self->fd);				\
	}

#endif /* DEVEXCL_UTIL_H */
