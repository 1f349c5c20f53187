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
#include <sys/mman.h>

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

#endif /* DEVEXCL_UTIL_H */
