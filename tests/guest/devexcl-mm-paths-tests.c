// SPDX-License-Identifier: GPL-2.0
/*
 * The mm paths a device-exclusive page must survive, through the devexcl
 * probe modules (one fixture variant per kernel API): NUMA migration, reclaim
 * to swap inside a memory cgroup, memory offline, THP split, hwpoison, KSM,
 * idle page tracking, DAMON (physical address space) and uprobes.
 *
 * Since 6.15 (and on every line of this series, issue 13 finding 5) a
 * device-exclusive entry is a mapping: it keeps the page's mapcount, and the
 * rmap walkers migrate, unmap or split such a page like any other, revoking
 * the device's access with an MMU notifier invalidation.  Before that (the
 * 5.14 semantics) the entry held a page reference but no mapcount, so none of
 * these paths could move the page until the CPU touched it, and
 * memory_failure() skipped it: a later restore mapped the poisoned page back.
 *
 * Each test runs its work in a child process (the probe context belongs to
 * the mm that opens it) with a deadline; a path that loops for ever on the
 * old semantics (memory offline) is stopped by an alarm or the deadline.
 * The guest provides (ci/5-boot/boot): two NUMA nodes (numa=fake=2), 512 MiB of
 * ZONE_MOVABLE (movablecore=), a scratch disk for swap named by
 * devexcl.swapdev=, debugfs (split_huge_pages, hwpoison/corrupt-pfn).
 *
 * Build (tests/probe holds devexcl_probe_uapi.h):
 *   gcc -static -Wall -I<tree>/tools/testing/selftests -I<repo>/tests/probe \
 *       devexcl-mm-paths-tests.c -o devexcl-mm-paths-tests -lpthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

/* 5.10's harness has an unused parameter in its SIGALRM handler. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "kselftest_harness.h"
#pragma GCC diagnostic pop
#include "devexcl_probe_uapi.h"

#include "devexcl_util.h"

#ifndef MPOL_MF_MOVE
#define MPOL_MF_MOVE		(1 << 1)
#endif
#ifndef MADV_MERGEABLE
#define MADV_MERGEABLE		12
#endif

#define PM_PFN_MASK		((1ULL << 55) - 1)
#define PM_SWAP_TYPE(e)		((unsigned int)((e) & 0x1f))

#define KPF_COMPOUND_HEAD	15
#define KPF_COMPOUND_TAIL	16
#define KPF_THP			22
#define KPF_RESERVED		32

#define DEBUGFS			"/sys/kernel/debug"
#define SPLIT_HUGE_PAGES	DEBUGFS "/split_huge_pages"
#define CORRUPT_PFN		DEBUGFS "/hwpoison/corrupt-pfn"
#define UNPOISON_PFN		DEBUGFS "/hwpoison/unpoison-pfn"
#define MEMORY_SYSFS		"/sys/devices/system/memory"
#define PAGE_IDLE_BITMAP	"/sys/kernel/mm/page_idle/bitmap"
#define KSM_SYSFS		"/sys/kernel/mm/ksm"

/* The child prints its diagnostics as KTAP comments, like TH_LOG. */
#define CLOG(fmt, ...)	printf("# " fmt "\n", ##__VA_ARGS__)

/* The raw /proc/self/pagemap entry of addr, 0 on error. */
static uint64_t pm_entry(const void *addr)
{
	uint64_t ent = 0;
	int fd;

	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (pread(fd, &ent, sizeof(ent),
		  (off_t)((uintptr_t)addr / psize() * 8)) != sizeof(ent))
		ent = 0;
	close(fd);
	return ent;
}

/* The pagemap entries of n pages from addr; 0 or -1. */
static int pm_entries(const void *addr, size_t n, uint64_t *ent)
{
	ssize_t len = (ssize_t)(n * sizeof(*ent)), got;
	int fd;

	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	got = pread(fd, ent, len, (off_t)((uintptr_t)addr / psize() * 8));
	close(fd);
	return got == len ? 0 : -1;
}

/* The PFN of a present page (needs CAP_SYS_ADMIN), 0 if not present. */
static uint64_t pfn_of(const void *addr)
{
	uint64_t ent = pm_entry(addr);

	return (ent & PM_PRESENT) ? ent & PM_PFN_MASK : 0;
}

/* /proc/kpageflags of pfn, or 0 with errno set. */
static uint64_t kpageflags(uint64_t pfn)
{
	uint64_t fl = 0;
	int fd;

	fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (pread(fd, &fl, sizeof(fl), (off_t)(pfn * 8)) != sizeof(fl))
		fl = 0;
	close(fd);
	return fl;
}

static int write_str(const char *path, const char *s)
{
	ssize_t len = (ssize_t)strlen(s), n;
	int fd, err;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, s, len);
	err = n == len ? 0 : n < 0 ? -errno : -EIO;
	close(fd);
	return err;
}

static int read_str(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static long read_long(const char *path)
{
	char buf[64];

	if (read_str(path, buf, sizeof(buf)))
		return -1;
	return strtol(buf, NULL, 0);
}

/* The value of key=VALUE on the kernel command line, or NULL. */
static const char *cmdline_value(const char *key, char *buf, size_t len)
{
	char line[4096], *tok, *save;
	size_t kl = strlen(key);

	if (read_str("/proc/cmdline", line, sizeof(line)))
		return NULL;
	for (tok = strtok_r(line, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		if (!strncmp(tok, key, kl) && tok[kl] == '=') {
			snprintf(buf, len, "%s", tok + kl + 1);
			return buf;
		}
	}
	return NULL;
}

static long move_pages(unsigned long count, void **pages, const int *nodes,
		       int *status, int flags)
{
	return syscall(SYS_move_pages, 0, count, pages, nodes, status, flags);
}

/* The node each page is on (status), or a negative errno per page. */
static int pages_nodes(void *buf, unsigned long n, int *status)
{
	void *pages[DEVEXCL_PROBE_MAX_PAGES];
	unsigned long i;

	for (i = 0; i < n; i++)
		pages[i] = (char *)buf + i * psize();
	return move_pages(n, pages, NULL, status, 0) ? -errno : 0;
}

static struct devexcl_probe_stats stats_of(int fd)
{
	struct devexcl_probe_stats st;

	probe_stats(fd, &st);
	return st;
}

PROBE_FIXTURE(paths);

/*
 * len bytes of private anonymous memory, not THP-backed, filled with the
 * pattern of seed; NULL if the mapping failed.
 */
static char *small_pages(size_t len, unsigned int seed)
{
	char *buf = map_private(len);

	if (buf == MAP_FAILED)
		return NULL;
	madvise(buf, len, MADV_NOHUGEPAGE);
	fill_pattern(buf, len, seed);
	return buf;
}

/*
 * Run fn in a child with a deadline and turn its exit code into the test's
 * result (CHILD_SKIP: the child printed "# SKIP reason" as its last line).
 */
#define RUN_CHILD(fn, arg, deadline_s, what) do {			\
	int __rc = run_child(fn, arg, deadline_s);			\
									\
	if (__rc == CHILD_SKIP)						\
		SKIP(return, "%s: see the reason above", what);		\
	ASSERT_NE(CHILD_HUNG, __rc) {					\
		TH_LOG("%s did not finish within %d s (killed)", what,	\
		       (int)(deadline_s));				\
	}								\
	ASSERT_EQ(CHILD_OK, __rc);					\
} while (0)

/* Open the probe in the calling (child) process: its context is this mm. */
static int child_probe(const char *api)
{
	int fd = probe_open(api);

	if (fd < 0)
		CLOG("open the %s probe: %s", api, strerror(-fd));
	return fd;
}

/* Make n pages at buf exclusive; 0 if all were, else CHILD_FAIL. */
static int child_exclusive(int fd, void *buf, unsigned long n)
{
	struct devexcl_probe_exclusive ex;
	int ret = probe_exclusive(fd, buf, n, &ex);

	if (ret || ex.made != n || pm_exclusive(buf, n) != (long)n) {
		CLOG("EXCLUSIVE of %lu pages: %s, made %u, %ld exclusive in pagemap",
		     n, ret ? strerror(-ret) : "ok", ex.made, pm_exclusive(buf, n));
		return CHILD_FAIL;
	}
	return CHILD_OK;
}

/*
 * NUMA migration by address: move_pages() and mbind() find pages through
 * present PTEs only (follow_page(), queue_pages_pte_range()), on every line
 * and upstream: an exclusive page is not found (status -ENOENT) and stays
 * exclusive, on its node, with its data, and the device keeps its access.
 * The pages migrate once the CPU has used them again.  (Migration by PFN:
 * THP migration through a present subpage, memory offline, compaction.)
 */
#define MIGRATE_PAGES	8
#define MIGRATE_SEED	51

static int migrate_child(void *p)
{
	const size_t len = MIGRATE_PAGES * psize();
	void *pages[MIGRATE_PAGES];
	int nodes[MIGRATE_PAGES], status[MIGRATE_PAGES];
	struct devexcl_probe_stats st0, st1;
	int fd, i, from, to, bad = 0;
	char *buf;
	long ret;

	fd = child_probe(p);
	if (fd < 0)
		return CHILD_FAIL;
	buf = small_pages(len, MIGRATE_SEED);
	if (!buf)
		return CHILD_FAIL;
	if (pages_nodes(buf, MIGRATE_PAGES, status)) {
		CLOG("move_pages() query: %s", strerror(errno));
		return CHILD_FAIL;
	}
	from = status[0];
	to = from == 0 ? 1 : 0;
	if (child_exclusive(fd, buf, MIGRATE_PAGES))
		return CHILD_FAIL;
	st0 = stats_of(fd);
	for (i = 0; i < MIGRATE_PAGES; i++) {
		pages[i] = buf + i * psize();
		nodes[i] = to;
		status[i] = -12345;
	}
	ret = move_pages(MIGRATE_PAGES, pages, nodes, status, MPOL_MF_MOVE);
	for (i = 0; i < MIGRATE_PAGES; i++)
		if (status[i] != -ENOENT)
			bad++;
	st1 = stats_of(fd);
	CLOG("move_pages() of %d exclusive pages, node %d -> %d: %s, %d with a status other than -ENOENT (status[0] %d); %ld still exclusive; invalidations %llu -> %llu",
	     MIGRATE_PAGES, from, to, ret ? strerror(errno) : "0", bad,
	     status[0], pm_exclusive(buf, MIGRATE_PAGES),
	     (unsigned long long)st0.invalidations,
	     (unsigned long long)st1.invalidations);
	if (ret || bad || pm_exclusive(buf, MIGRATE_PAGES) != MIGRATE_PAGES ||
	    st1.invalidations != st0.invalidations)
		return CHILD_FAIL;
	/* the CPU takes them back; now they move */
	if (check_pattern(buf, len, MIGRATE_SEED) != -1) {
		CLOG("data changed");
		return CHILD_FAIL;
	}
	ret = move_pages(MIGRATE_PAGES, pages, nodes, status, MPOL_MF_MOVE);
	for (bad = 0, i = 0; i < MIGRATE_PAGES; i++)
		if (status[i] != to)
			bad++;
	if (ret || bad) {
		CLOG("move_pages() after the CPU access: %s, %d not on node %d (status[0] %d)",
		     ret ? strerror(errno) : "0", bad, to, status[0]);
		return CHILD_FAIL;
	}
	if (check_pattern(buf, len, MIGRATE_SEED) != -1) {
		CLOG("data changed by the migration");
		return CHILD_FAIL;
	}
	return CHILD_OK;
}

TEST_F(paths, numa_migration_by_address_skips_exclusive_pages)
{
	NEED_DEVICE();
	if (access("/sys/devices/system/node/node1", F_OK))
		SKIP(return, "one NUMA node (ci/5-boot/boot gives the guest numa=fake=2)");
	RUN_CHILD(migrate_child, (void *)variant->name, 60, "move_pages()");
}

/*
 * THP migration: move_pages() of a present subpage migrates the whole THP
 * (or splits it first), device-exclusive subpage included: the entry does
 * not pin the THP, and becomes a migration entry, then a present PTE on the
 * target node.  With the 5.14 semantics the entry's page reference made the
 * migration fail, and the exclusive subpage stayed behind.
 */
#define THP_SEED	52
#define THP_EXCL	7

/*
 * A THP-backed, HPAGE_SIZE-aligned buffer filled with the THP_SEED pattern,
 * for a child: CHILD_OK, CHILD_FAIL, or CHILD_SKIP (after the reason) when
 * the kernel gave it no THP.
 */
static int thp_buffer(char **buf)
{
	char *map = map_private(2 * HPAGE_SIZE);

	if (map == MAP_FAILED)
		return CHILD_FAIL;
	*buf = hpage_align(map);
	madvise(*buf, HPAGE_SIZE, MADV_HUGEPAGE);
	fill_pattern(*buf, HPAGE_SIZE, THP_SEED);
	if (anon_huge_kb(*buf) < 2048) {
		printf("# SKIP no THP for the buffer (AnonHugePages %ld kB)\n",
		       anon_huge_kb(*buf));
		return CHILD_SKIP;
	}
	return CHILD_OK;
}

static int thp_migrate_child(void *p)
{
	const size_t ps = psize();
	int status[1], node, to, fd;
	void *page[1];
	char *buf;
	int nodes[1];
	long ret;

	fd = child_probe(p);
	if (fd < 0)
		return CHILD_FAIL;
	ret = thp_buffer(&buf);
	if (ret != CHILD_OK)
		return ret;
	if (pages_nodes(buf, 1, status))
		return CHILD_FAIL;
	node = status[0];
	to = node == 0 ? 1 : 0;
	if (child_exclusive(fd, buf + THP_EXCL * ps, 1))
		return CHILD_FAIL;
	page[0] = buf;
	nodes[0] = to;
	status[0] = -12345;
	ret = move_pages(1, page, nodes, status, MPOL_MF_MOVE);
	CLOG("move_pages() of a THP with exclusive subpage %d, node %d -> %d: %s, status %d",
	     THP_EXCL, node, to, ret ? strerror(errno) : "0", status[0]);
	if (ret || status[0] != to)
		return CHILD_FAIL;
	if (pages_nodes(buf + THP_EXCL * ps, 1, status) || status[0] != to) {
		CLOG("the exclusive subpage is on node %d, not %d", status[0], to);
		return CHILD_FAIL;
	}
	if (check_pattern(buf, HPAGE_SIZE, THP_SEED) != -1) {
		CLOG("data changed by the migration");
		return CHILD_FAIL;
	}
	return CHILD_OK;
}

TEST_F(paths, numa_migration_moves_thp_with_exclusive_subpage)
{
	char mode[64];

	NEED_DEVICE();
	if (access("/sys/devices/system/node/node1", F_OK))
		SKIP(return, "one NUMA node (ci/5-boot/boot gives the guest numa=fake=2)");
	if (!thp_usable(mode, sizeof(mode)))
		SKIP(return, "THP not usable (%s)", mode);
	RUN_CHILD(thp_migrate_child, (void *)variant->name, 60,
		  "move_pages() of a THP");
}

/*
 * Reclaim: in a memory cgroup whose limit is far below what the test
 * touches, device-exclusive pages are swapped out like any other anonymous
 * page (the entry becomes a swap entry of the test's swap device), and
 * swapped in intact.  With the 5.14 semantics reclaim never freed them: the
 * entry's page reference failed the swap cache's refcount check.
 */
#define RECLAIM_PAGES	16
#define RECLAIM_SEED	53
#define CG_LIMIT	"16M"
#define BALLOON_MB	64
#define RECLAIM_PASSES	3

struct reclaim_env {
	char cgroup[128];	/* the test's cgroup directory */
	char api[16];		/* the probe to open */
	unsigned int swap_type;	/* pagemap type of our swap device */
};

/*
 * Reclaim ages what it scans (folio_referenced(), from shrink_active_list()
 * and folio_check_references()), and with the 6.15 mapcount semantics that
 * includes every folio with a device-exclusive entry.  Aging must leave the
 * entry alone: it is either still the same device-exclusive entry or a swap
 * entry of the test's swap device.  On arm64 the accessed bit (PTE_AF, bit 10)
 * lies inside a swap entry, and ptep_clear_flush_young() clears it whatever
 * the PTE is: without its pte_present() check folio_referenced_one() turns a
 * device-exclusive entry into one of another swap type (6.12: type bits) or
 * of another PFN (6.1: PFN bits), which a CPU access then refaults forever.
 * (A present page is fine: a migration revoked the device's access.)
 * Returns the first page whose entry is none of these, -1 when all are
 * intact; entries[] holds the pagemap entries read after the conversion.
 */
static long first_rewritten_entry(const char *buf, const uint64_t *entries,
				  unsigned long n, unsigned int swap_type,
				  uint64_t *got)
{
	unsigned long i;
	uint64_t ent;

	for (i = 0; i < n; i++) {
		int tries;

		/*
		 * A migration entry (compaction may move the page, revoking
		 * the device's access) is there only for a moment; what
		 * aging wrote stays: look again before calling it rewritten.
		 */
		for (tries = 0; tries < 3; tries++) {
			ent = pm_entry(buf + i * psize());
			*got = ent;
			if (ent == entries[i])
				break;	/* the same device-exclusive entry */
			if ((ent & (PM_SWAP | PM_PRESENT)) == PM_SWAP &&
			    PM_SWAP_TYPE(ent) == swap_type)
				break;	/* swapped out to our device */
			if (ent & PM_PRESENT)
				break;	/* the device's access was revoked */
			usleep(100000);
		}
		if (tries == 3)
			return (long)i;
	}
	return -1;
}

/* log and fail the child when reclaim rewrote an entry (see above) */
#define CHECK_ENTRIES(when)						\
	do {								\
		uint64_t got_;						\
		long bad_ = first_rewritten_entry(buf, entries,		\
						  RECLAIM_PAGES,	\
						  env->swap_type, &got_); \
		if (bad_ >= 0) {					\
			CLOG("%s: page %ld's entry %#llx is now %#llx (swap type %u, our swap device's is %u): reclaim rewrote a device-exclusive entry", \
			     when, bad_,				\
			     (unsigned long long)entries[bad_],		\
			     (unsigned long long)got_,			\
			     PM_SWAP_TYPE(got_), env->swap_type);	\
			return CHILD_FAIL;				\
		}							\
	} while (0)

static int reclaim_child(void *p)
{
	struct reclaim_env *env = p;
	const size_t len = RECLAIM_PAGES * psize();
	const size_t blen = (size_t)BALLOON_MB << 20;
	struct devexcl_probe_stats st0, st1;
	char path[192], pid[32];
	unsigned long i;
	int fd, swapped = 0, pass, ret;
	char *buf, *balloon;
	uint64_t ent, pfn0, entries[RECLAIM_PAGES];

	snprintf(path, sizeof(path), "%s/cgroup.procs", env->cgroup);
	snprintf(pid, sizeof(pid), "%d", getpid());
	ret = write_str(path, pid);
	if (ret) {
		CLOG("join %s: %s", env->cgroup, strerror(-ret));
		return CHILD_FAIL;
	}
	fd = child_probe(env->api);
	if (fd < 0)
		return CHILD_FAIL;
	buf = small_pages(len, RECLAIM_SEED);
	if (!buf)
		return CHILD_FAIL;
	pfn0 = pfn_of(buf);
	if (child_exclusive(fd, buf, RECLAIM_PAGES))
		return CHILD_FAIL;
	CLOG("page 0 after the conversion: kpageflags %#llx",
	     (unsigned long long)kpageflags(pfn0));
	ent = pm_entry(buf);
	if (PM_SWAP_TYPE(ent) == env->swap_type) {
		CLOG("an exclusive entry reads as swap type %u, the swap device's: cannot tell them apart",
		     env->swap_type);
		return CHILD_FAIL;
	}
	for (i = 0; i < RECLAIM_PAGES; i++) {
		entries[i] = pm_entry(buf + i * psize());
		if ((entries[i] & (PM_SWAP | PM_PRESENT)) != PM_SWAP) {
			CLOG("page %lu is not device-exclusive after the conversion (pagemap %#llx)",
			     i, (unsigned long long)entries[i]);
			return CHILD_FAIL;
		}
	}
	st0 = stats_of(fd);
	/*
	 * Touch four times the limit in a fresh balloon, up to RECLAIM_PASSES
	 * times, until all of them are out.  A conversion may leave the pages
	 * on the active list (6.1/6.12's range API faults them in twice, and
	 * each GUP marks them accessed); reclaim ages the active list only
	 * when the inactive one runs low, which a new balloon brings about
	 * (the old one is unmapped first).
	 */
	for (pass = 0; pass < RECLAIM_PASSES && swapped < RECLAIM_PAGES; pass++) {
		balloon = mmap(NULL, blen, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (balloon == MAP_FAILED)
			return CHILD_FAIL;
		madvise(balloon, blen, MADV_NOHUGEPAGE);
		for (i = 0; i < blen; i += psize())
			balloon[i] = (char)(i >> 12) + pass;
		munmap(balloon, blen);
		CHECK_ENTRIES("after a balloon pass");
		for (swapped = 0, i = 0; i < RECLAIM_PAGES; i++) {
			ent = pm_entry(buf + i * psize());
			if ((ent & (PM_SWAP | PM_PRESENT)) == PM_SWAP &&
			    PM_SWAP_TYPE(ent) == env->swap_type)
				swapped++;
		}
	}
	if (swapped < RECLAIM_PAGES)
		CLOG("page 0 after the passes: kpageflags %#llx (lru 5, active 6, unevictable 18, mlocked 33)",
		     (unsigned long long)kpageflags(pfn0));
	/*
	 * Pages left on the active list stay there while the inactive list
	 * holds enough (new anonymous pages go to the inactive list): then
	 * ask the cgroup to reclaim more than it holds (memory.reclaim, 5.19+),
	 * which ages the active list once the inactive one is gone.
	 */
	snprintf(path, sizeof(path), "%s/memory.reclaim", env->cgroup);
	for (i = 0; swapped < RECLAIM_PAGES && i < 3 && !access(path, W_OK); i++) {
		unsigned long j;

		write_str(path, "32M");	/* EAGAIN when it falls short */
		CHECK_ENTRIES("after memory.reclaim");
		for (swapped = 0, j = 0; j < RECLAIM_PAGES; j++) {
			ent = pm_entry(buf + j * psize());
			if ((ent & (PM_SWAP | PM_PRESENT)) == PM_SWAP &&
			    PM_SWAP_TYPE(ent) == env->swap_type)
				swapped++;
		}
		CLOG("memory.reclaim 32M: %d of %d swapped out", swapped, RECLAIM_PAGES);
	}
	st1 = stats_of(fd);
	CLOG("%d of %d exclusive pages swapped out after touching %d fresh MiB %d times in a %s cgroup; invalidations %llu -> %llu",
	     swapped, RECLAIM_PAGES, BALLOON_MB, pass, CG_LIMIT,
	     (unsigned long long)st0.invalidations,
	     (unsigned long long)st1.invalidations);
	if (swapped == 0)
		return CHILD_FAIL;
	if (st1.invalidations <= st0.invalidations)
		return CHILD_FAIL;
	if (check_pattern(buf, len, RECLAIM_SEED) != -1) {
		CLOG("data changed by the round trip through swap");
		return CHILD_FAIL;
	}
	return CHILD_OK;
}

/* Write a swap header (mkswap: version 1, no bad pages) to dev. */
static int write_swap_header(const char *dev, unsigned long *pages)
{
	const size_t ps = psize();
	unsigned char *hdr;
	uint32_t *info;
	off_t size;
	int fd, ret = 0;

	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size = lseek(fd, 0, SEEK_END);
	hdr = calloc(1, ps);
	if (size < (off_t)(16 * ps) || !hdr) {
		close(fd);
		free(hdr);
		return -ENOSPC;
	}
	/* union swap_header: bootbits[1024], version, last_page, nr_badpages */
	info = (uint32_t *)(hdr + 1024);
	info[0] = 1;
	info[1] = (uint32_t)(size / ps - 1);
	info[2] = 0;
	memcpy(hdr + ps - 10, "SWAPSPACE2", 10);
	if (pwrite(fd, hdr, ps, 0) != (ssize_t)ps || fsync(fd))
		ret = -errno;
	close(fd);
	free(hdr);
	*pages = (unsigned long)(size / ps);
	return ret;
}

/* The swap type of dev: its position in /proc/swaps, -1 if not there. */
static int swap_type_of(const char *dev)
{
	char line[256], name[200];
	int type = -1, i = -1;
	FILE *f;

	f = fopen("/proc/swaps", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (i++ < 0)
			continue;	/* header */
		if (sscanf(line, "%199s", name) == 1 && !strcmp(name, dev))
			type = i - 1;
	}
	fclose(f);
	return type;
}

/* Mount cgroup2 at dir unless the memory controller is already at hand. */
static int cgroup2_root(char *dir, size_t len)
{
	char ctl[64];

	snprintf(dir, len, "/sys/fs/cgroup");
	if (!read_str("/sys/fs/cgroup/cgroup.controllers", ctl, sizeof(ctl)))
		return 0;
	snprintf(dir, len, "/tmp/devexcl-cgroup2");
	mkdir(dir, 0755);
	if (!access("/tmp/devexcl-cgroup2/cgroup.controllers", F_OK))
		return 0;
	return mount("none", dir, "cgroup2", 0, NULL) ? -errno : 0;
}

TEST_F(paths, reclaim_in_small_memcg_swaps_exclusive_pages_out)
{
	struct reclaim_env *env;
	char dev[64], root[64], path[192], buf[256], sw[32];
	unsigned long pages;
	int ret, type, rc;

	NEED_DEVICE();
	if (!cmdline_value("devexcl.swapdev", sw, sizeof(sw)))
		SKIP(return, "no scratch disk for swap (ci/5-boot/boot passes devexcl.swapdev=)");
	snprintf(dev, sizeof(dev), "/dev/%s", sw);
	if (access(dev, F_OK))
		SKIP(return, "%s (devexcl.swapdev=) does not exist", dev);
	ASSERT_EQ(0, cgroup2_root(root, sizeof(root))) {
		TH_LOG("mount cgroup2: %s (needs CONFIG_MEMCG)", strerror(errno));
	}
	snprintf(path, sizeof(path), "%s/cgroup.controllers", root);
	ASSERT_EQ(0, read_str(path, buf, sizeof(buf)));
	ASSERT_NE(NULL, strstr(buf, "memory")) {
		TH_LOG("no memory controller in %s: %s", root, buf);
	}
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", root);
	ASSERT_EQ(0, write_str(path, "+memory"));

	type = swap_type_of(dev);
	if (type < 0) {
		ret = write_swap_header(dev, &pages);
		ASSERT_EQ(0, ret) {
			TH_LOG("swap header on %s: %s", dev, strerror(-ret));
		}
		ASSERT_EQ(0, syscall(SYS_swapon, dev, 0)) {
			TH_LOG("swapon %s: %s", dev, strerror(errno));
		}
		type = swap_type_of(dev);
		TH_LOG("swap on %s: %lu pages, type %d", dev, pages, type);
	}
	ASSERT_LE(0, type);

	env = calloc(1, sizeof(*env));
	ASSERT_NE(NULL, env);
	snprintf(env->cgroup, sizeof(env->cgroup), "%s/devexcl-reclaim", root);
	snprintf(env->api, sizeof(env->api), "%s", variant->name);
	env->swap_type = (unsigned int)type;
	rmdir(env->cgroup);
	ASSERT_EQ(0, mkdir(env->cgroup, 0755));
	snprintf(path, sizeof(path), "%s/memory.max", env->cgroup);
	ASSERT_EQ(0, write_str(path, CG_LIMIT));

	rc = run_child(reclaim_child, env, 120);

	/* the child is gone: the cgroup is empty; swap off for the other tests */
	if (rmdir(env->cgroup))
		TH_LOG("rmdir %s: %s", env->cgroup, strerror(errno));
	if (syscall(SYS_swapoff, dev))
		TH_LOG("swapoff %s: %s", dev, strerror(errno));
	free(env);
	ASSERT_NE(CHILD_HUNG, rc) {
		TH_LOG("reclaim did not finish within 120 s (killed)");
	}
	ASSERT_EQ(CHILD_OK, rc);
}

/*
 * Memory offline: offlining a ZONE_MOVABLE memory block that holds
 * device-exclusive pages migrates them like any other page and succeeds.
 * With the 5.14 semantics offline_pages() retried the pinned pages until the
 * writer was signalled (here: an alarm after OFFLINE_ALARM_S seconds).
 */
#define OFFLINE_PAGES	64
#define OFFLINE_SEED	54000
#define OFFLINE_ALARM_S	30

struct offline_env {
	char api[16];
	long block;	/* offlined by the child and not yet online again */
};

static void on_alarm(int sig)
{
	(void)sig;
}

static long block_of(uint64_t pfn)
{
	static long block_pages;
	char buf[64];

	if (!block_pages) {
		if (read_str(MEMORY_SYSFS "/block_size_bytes", buf, sizeof(buf)))
			return -1;
		block_pages = (long)(strtoull(buf, NULL, 16) / psize());
		if (block_pages <= 0)
			return -1;
	}
	return (long)(pfn / (uint64_t)block_pages);
}

/*
 * Can the block be offlined at all: in ZONE_MOVABLE, and all System RAM
 * (offline_pages() refuses a block with holes, like the guest's last one,
 * whose top the firmware keeps).
 */
#define MAX_BLOCKS	1024

/* Any page of pfns [first, end) reserved (/proc/kpageflags)?  Unreadable: yes. */
static bool any_reserved(uint64_t first, uint64_t end)
{
	uint64_t flags[512], i, n;
	bool found = false;
	ssize_t got;
	int fd;

	fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	for (; !found && first < end; first += n) {
		n = end - first < 512 ? end - first : 512;
		got = pread(fd, flags, n * sizeof(flags[0]),
			    (off_t)(first * sizeof(flags[0])));
		if (got != (ssize_t)(n * sizeof(flags[0]))) {
			found = true;
			break;
		}
		for (i = 0; i < n; i++)
			if (flags[i] & (1ULL << KPF_RESERVED))
				found = true;
	}
	close(fd);
	return found;
}

static bool block_offlinable(long block)
{
	static signed char known[MAX_BLOCKS];	/* 0 unknown, 1 yes, -1 no */
	unsigned long long start, end, bs = 0, b0, b1;
	char path[128], zones[128], line[256];
	bool ok = false;
	FILE *f;

	if (block < 0 || block >= MAX_BLOCKS)
		return false;
	if (known[block])
		return known[block] > 0;
	known[block] = -1;

	snprintf(path, sizeof(path), MEMORY_SYSFS "/memory%ld/valid_zones", block);
	if (read_str(path, zones, sizeof(zones)) || strcmp(zones, "Movable"))
		return false;
	if (read_str(MEMORY_SYSFS "/block_size_bytes", line, sizeof(line)))
		return false;
	bs = strtoull(line, NULL, 16);
	b0 = (unsigned long long)block * bs;
	b1 = b0 + bs - 1;
	f = fopen("/proc/iomem", "r");
	if (!f)
		return false;
	while (!ok && fgets(line, sizeof(line), f))
		if (line[0] != ' ' && strstr(line, ": System RAM") &&
		    sscanf(line, "%llx-%llx", &start, &end) == 2)
			ok = start <= b0 && b1 <= end;
	fclose(f);
	/*
	 * Pages reserved at boot (memblock: on arm64 the device tree, the
	 * initrd and early allocations at the top of node 0's memory, which is
	 * its Movable zone) can never be migrated: offline fails on them
	 * whatever else the block holds.
	 */
	if (ok && any_reserved(b0 / psize(), (b1 + 1) / psize()))
		ok = false;
	known[block] = ok ? 1 : -1;
	return ok;
}

/*
 * The control of the offline test: offline, and online again, an
 * offlinable Movable block other than avoid, before any page of ours is
 * device-exclusive.  0 when the kernel offlines such memory at all; -ENOENT
 * when there is no such block; else -errno of the last of up to 3 tries.
 * arm64 never offlines memory that was present at boot (its
 * prevent_bootmem_remove_notifier() answers MEM_GOING_OFFLINE with
 * NOTIFY_BAD: "Boot memory [...] offlining attempted"), and the guest has
 * no hotplugged memory.
 */
static int control_offline(long avoid)
{
	char path[128];
	int ret = -ENOENT, tries = 0;
	long b;

	for (b = 0; b < MAX_BLOCKS && tries < 3; b++) {
		if (b == avoid || !block_offlinable(b))
			continue;
		tries++;
		snprintf(path, sizeof(path), MEMORY_SYSFS "/memory%ld/state", b);
		ret = write_str(path, "offline");
		CLOG("control: offline memory%ld (none of our pages): %s", b,
		     ret ? strerror(-ret) : "done");
		if (!ret) {
			if (write_str(path, "online_movable") &&
			    write_str(path, "online"))
				CLOG("control: memory%ld stays offline", b);
			return 0;
		}
	}
	return ret;
}

/*
 * Prefer, for this process's allocations, the node whose Movable zone has
 * the most free pages: a node's zonelist starts with its own Movable zone,
 * and the guest's node 0 may have a Movable zone with nothing in it to
 * allocate (its top holds the boot allocations).  The node, or -1.
 */
static int prefer_movable_node(void)
{
	long free, best_free = 0;
	int node = -1, cur = -1;
	bool movable = false;
	unsigned long mask;
	char line[256], zone[32];
	FILE *f;

	f = fopen("/proc/zoneinfo", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Node %d, zone %31s", &cur, zone) == 2) {
			movable = !strcmp(zone, "Movable");
			continue;
		}
		if (movable && sscanf(line, " pages free %ld", &free) == 1 &&
		    free > best_free) {
			best_free = free;
			node = cur;
		}
	}
	fclose(f);
	if (node < 0 || node >= (int)(8 * sizeof(mask)))
		return -1;
	mask = 1UL << node;
	/* MPOL_PREFERRED (1): allocate there first */
	if (syscall(SYS_set_mempolicy, 1, &mask, 8 * sizeof(mask) + 1))
		return -1;
	return node;
}

/*
 * Allocate 4 MiB chunks (at most OFFLINE_CHUNKS) until pages land in a block
 * that can be offlined; make up to OFFLINE_PAGES of them exclusive.
 */
#define OFFLINE_CHUNK	(4UL << 20)
#define OFFLINE_CHUNKS	48

static int offline_child(void *p)
{
	struct offline_env *env = p;
	const size_t ps = psize();
	static uint64_t ents[OFFLINE_CHUNK / 4096];
	char *addr[OFFLINE_PAGES], *chunk[OFFLINE_CHUNKS];
	uint64_t pfn[OFFLINE_PAGES];
	struct devexcl_probe_stats st0, st1;
	struct sigaction sa = { .sa_handler = on_alarm };
	char path[128];
	long block = -1;
	int fd, i, n = 0, moved = 0, ret, c, node;
	size_t off;
	char *buf;

	ret = control_offline(-1);
	if (ret == -ENOENT) {
		printf("# SKIP no Movable memory block free of boot reservations (ci/5-boot/boot passes movablecore=)\n");
		return CHILD_SKIP;
	}
	if (ret) {
		printf("# SKIP this kernel offlines no boot memory: a Movable block without device-exclusive pages cannot be offlined either (%s; arm64 refuses boot memory, and the guest has no hotplugged memory)\n",
		       strerror(-ret));
		return CHILD_SKIP;
	}
	fd = child_probe(env->api);
	if (fd < 0)
		return CHILD_FAIL;
	node = prefer_movable_node();
	for (c = 0; c < OFFLINE_CHUNKS && !n; c++) {
		buf = map_private(OFFLINE_CHUNK);
		if (buf == MAP_FAILED)
			return CHILD_FAIL;
		chunk[c] = buf;
		madvise(buf, OFFLINE_CHUNK, MADV_NOHUGEPAGE);
		fill_pattern(buf, OFFLINE_CHUNK, OFFLINE_SEED + c);
		if (pm_entries(buf, OFFLINE_CHUNK / ps, ents))
			return CHILD_FAIL;
		for (off = 0; off < OFFLINE_CHUNK && n < OFFLINE_PAGES; off += ps) {
			uint64_t e = ents[off / ps];
			uint64_t f = (e & PM_PRESENT) ? e & PM_PFN_MASK : 0;
			long b = f ? block_of(f) : -1;

			if (b < 0 || (block >= 0 && b != block) ||
			    (block < 0 && !block_offlinable(b)))
				continue;
			block = b;
			addr[n] = buf + off;
			pfn[n++] = f;
		}
	}
	CLOG("%d pages in memory%ld after %d MiB on node %d", n, block,
	     c * (int)(OFFLINE_CHUNK >> 20), node);
	if (!n) {
		printf("# SKIP no page landed in an offlinable ZONE_MOVABLE block (ci/5-boot/boot passes movablecore=)\n");
		return CHILD_SKIP;
	}
	for (i = 0; i < n; i++)
		if (child_exclusive(fd, addr[i], 1))
			return CHILD_FAIL;
	st0 = stats_of(fd);

	snprintf(path, sizeof(path), MEMORY_SYSFS "/memory%ld/state", block);
	sigaction(SIGALRM, &sa, NULL);	/* no SA_RESTART: the write ends */
	env->block = block;
	alarm(OFFLINE_ALARM_S);
	ret = write_str(path, "offline");
	alarm(0);
	CLOG("offline memory%ld with %d exclusive pages in it: %s", block, n,
	     ret ? strerror(-ret) : "done");
	if (ret) {
		env->block = -1;
		return CHILD_FAIL;
	}
	st1 = stats_of(fd);
	for (i = 0; i < n; i++)
		if (pm_present(addr[i], 1) == 1 && pfn_of(addr[i]) != pfn[i])
			moved++;
	CLOG("%d of %d pages moved out of the block; invalidations %llu -> %llu",
	     moved, n, (unsigned long long)st0.invalidations,
	     (unsigned long long)st1.invalidations);
	ret = write_str(path, "online_movable");
	if (ret)
		ret = write_str(path, "online");
	if (ret)
		CLOG("online memory%ld again: %s", block, strerror(-ret));
	else
		env->block = -1;
	if (moved != n || st1.invalidations <= st0.invalidations)
		return CHILD_FAIL;
	for (i = 0; i < c; i++)
		if (check_pattern(chunk[i], OFFLINE_CHUNK, OFFLINE_SEED + i) != -1) {
			CLOG("data of chunk %d changed by the offline migration", i);
			return CHILD_FAIL;
		}
	return CHILD_OK;
}

TEST_F(paths, memory_offline_migrates_exclusive_pages)
{
	struct offline_env *env;
	char path[128];
	int rc;

	NEED_DEVICE();
	if (access(MEMORY_SYSFS "/block_size_bytes", F_OK))
		SKIP(return, "no memory hotplug (CONFIG_MEMORY_HOTREMOVE)");
	env = mmap(NULL, sizeof(*env), PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, env);
	snprintf(env->api, sizeof(env->api), "%s", variant->name);
	env->block = -1;
	rc = run_child(offline_child, env, OFFLINE_ALARM_S + 60);
	if (env->block >= 0) {
		snprintf(path, sizeof(path), MEMORY_SYSFS "/memory%ld/state",
			 env->block);
		if (write_str(path, "online_movable") && write_str(path, "online"))
			TH_LOG("memory%ld stays offline", env->block);
	}
	munmap(env, sizeof(*env));
	if (rc == CHILD_SKIP)
		SKIP(return, "see the reason above");
	ASSERT_NE(CHILD_HUNG, rc) {
		TH_LOG("offline did not finish within %d s (killed)",
		       OFFLINE_ALARM_S + 60);
	}
	ASSERT_EQ(CHILD_OK, rc);
}

/*
 * THP split: a THP with a device-exclusive subpage is split by
 * split_huge_page() (debugfs split_huge_pages splits every THP it can); the
 * entry becomes a migration entry and then a present PTE.  With the 5.14
 * semantics the entry's page reference failed the split's refcount check.
 */
static int split_child(void *p)
{
	const size_t ps = psize();
	struct devexcl_probe_stats st0, st1;
	uint64_t pfn0, fl0, fl1;
	char *buf;
	int fd, ret;

	fd = child_probe(p);
	if (fd < 0)
		return CHILD_FAIL;
	ret = thp_buffer(&buf);
	if (ret != CHILD_OK)
		return ret;
	pfn0 = pfn_of(buf);
	if (child_exclusive(fd, buf + THP_EXCL * ps, 1))
		return CHILD_FAIL;
	fl0 = kpageflags(pfn0);
	if (!(fl0 & (1ULL << KPF_THP))) {
		CLOG("the THP is gone before the split (kpageflags %#llx): the conversion split it",
		     (unsigned long long)fl0);
		return CHILD_FAIL;
	}
	st0 = stats_of(fd);
	ret = write_str(SPLIT_HUGE_PAGES, "1");
	fl1 = kpageflags(pfn0);
	st1 = stats_of(fd);
	CLOG("split_huge_pages: %s; head page flags %#llx -> %#llx; invalidations %llu -> %llu",
	     ret ? strerror(-ret) : "ok", (unsigned long long)fl0,
	     (unsigned long long)fl1, (unsigned long long)st0.invalidations,
	     (unsigned long long)st1.invalidations);
	if (ret)
		return CHILD_FAIL;
	if (fl1 & ((1ULL << KPF_THP) | (1ULL << KPF_COMPOUND_HEAD))) {
		CLOG("the THP was not split: its exclusive subpage pinned it");
		return CHILD_FAIL;
	}
	if (st1.invalidations <= st0.invalidations)
		return CHILD_FAIL;
	if (check_pattern(buf, HPAGE_SIZE, THP_SEED) != -1) {
		CLOG("data changed by the split");
		return CHILD_FAIL;
	}
	return CHILD_OK;
}

TEST_F(paths, thp_split_splits_thp_with_exclusive_subpage)
{
	char mode[64];

	NEED_DEVICE();
	if (!thp_usable(mode, sizeof(mode)))
		SKIP(return, "THP not usable (%s)", mode);
	if (access(SPLIT_HUGE_PAGES, W_OK))
		SKIP(return, "no %s (CONFIG_DEBUG_FS)", SPLIT_HUGE_PAGES);
	RUN_CHILD(split_child, (void *)variant->name, 60, "THP split");
}

/*
 * hwpoison: memory_failure() on a device-exclusive page unmaps it (the entry
 * becomes a hwpoison entry): the next CPU access gets SIGBUS and never the
 * poisoned page.  With the 5.14 semantics memory_failure() saw no mapping,
 * and the access restored the entry: the poisoned page was mapped back.
 */
#define POISON_SEED	55

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_code;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	bus_code = si->si_code;
	siglongjmp(bus_jmp, 1);
}

static int hwpoison_child(void *p)
{
	uint64_t *shared_pfn = p;
	const size_t ps = psize();
	struct devexcl_probe_stats st0, st1;
	struct sigaction sa = { .sa_sigaction = on_sigbus,
				.sa_flags = SA_SIGINFO };
	const char *api = (const char *)(shared_pfn + 1);
	volatile uint64_t v;
	char num[32];
	uint64_t pfn;
	int fd, i, ret;
	char *buf;

	fd = child_probe(api);
	if (fd < 0)
		return CHILD_FAIL;
	buf = map_private(4 * ps);
	if (buf == MAP_FAILED)
		return CHILD_FAIL;
	madvise(buf, 4 * ps, MADV_NOHUGEPAGE);
	for (i = 0; i < 4; i++)
		fill_pattern(buf + i * ps, ps, POISON_SEED + i);
	pfn = pfn_of(buf + ps);
	if (!pfn) {
		CLOG("no pfn for the page (pagemap needs CAP_SYS_ADMIN)");
		return CHILD_FAIL;
	}
	if (child_exclusive(fd, buf + ps, 1))
		return CHILD_FAIL;
	st0 = stats_of(fd);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)pfn);
	*shared_pfn = pfn;
	ret = write_str(CORRUPT_PFN, num);
	st1 = stats_of(fd);
	CLOG("corrupt-pfn %s: %s; invalidations %llu -> %llu", num,
	     ret ? strerror(-ret) : "ok", (unsigned long long)st0.invalidations,
	     (unsigned long long)st1.invalidations);
	if (ret)
		return CHILD_FAIL;
	sigaction(SIGBUS, &sa, NULL);
	if (!sigsetjmp(bus_jmp, 1)) {
		v = *(volatile uint64_t *)(buf + ps);
		CLOG("the poisoned page was mapped back: read %s",
		     v == pattern_word(POISON_SEED + 1, 0) ? "its old data" : "other data");
		return CHILD_FAIL;
	}
	CLOG("SIGBUS on access (si_code %d)", (int)bus_code);
	for (i = 0; i < 4; i++)
		if (i != 1 && check_pattern(buf + i * ps, ps, POISON_SEED + i) != -1) {
			CLOG("page %d changed", i);
			return CHILD_FAIL;
		}
	if (st1.invalidations <= st0.invalidations)
		return CHILD_FAIL;
	return CHILD_OK;
}

TEST_F(paths, hwpoison_never_maps_poisoned_exclusive_page_back)
{
	uint64_t *shared;
	char num[32];
	int rc;

	NEED_DEVICE();
	if (access(CORRUPT_PFN, W_OK))
		SKIP(return, "no %s (CONFIG_HWPOISON_INJECT, debugfs)", CORRUPT_PFN);
	shared = mmap(NULL, psize(), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, shared);
	snprintf((char *)(shared + 1), 16, "%s", variant->name);
	rc = run_child(hwpoison_child, shared, 60);
	if (shared[0]) {
		/* the child is gone: give the page back if the kernel can */
		snprintf(num, sizeof(num), "%llu", (unsigned long long)shared[0]);
		if (write_str(UNPOISON_PFN, num))
			TH_LOG("unpoison-pfn %s: %s (the page stays poisoned)",
			       num, strerror(errno));
	}
	munmap(shared, psize());
	ASSERT_NE(CHILD_HUNG, rc);
	ASSERT_EQ(CHILD_OK, rc);
}

/*
 * Idle page tracking: a device-exclusive page reads as idle (the entry is
 * old for the CPU, and the device reports no access through a notifier),
 * and as not idle once the CPU has used it again.  Drives
 * page_idle_clear_pte_refs_one() over the entry (3faa3ebc89c1).
 */
#define IDLE_PAGES	64
#define KPF_LRU		5

static int idle_get(int bfd, uint64_t pfn, int *idle)
{
	uint64_t word;

	if (pread(bfd, &word, sizeof(word), (off_t)(pfn / 64 * 8)) != sizeof(word))
		return -errno;
	*idle = !!(word & (1ULL << (pfn % 64)));
	return 0;
}

static int idle_child(void *p)
{
	const size_t ps = psize(), len = IDLE_PAGES * ps;
	int fd, bfd, i, idle_excl = -1, idle_used = -1;
	uint64_t pfn = 0, word;
	char *buf;

	fd = child_probe(p);
	if (fd < 0)
		return CHILD_FAIL;
	bfd = open(PAGE_IDLE_BITMAP, O_RDWR | O_CLOEXEC);
	if (bfd < 0)
		return CHILD_FAIL;
	/* more pages than a per-CPU LRU batch: the first ones reach the LRU */
	buf = small_pages(len, 56);
	if (!buf)
		return CHILD_FAIL;
	/*
	 * The bitmap is read and written in whole 64-bit words: for the word
	 * of the last pages below max_pfn, when they do not fill it, both
	 * return 0 bytes. Take the first page on an LRU list whose word is a
	 * whole one.
	 */
	for (i = 0; i < IDLE_PAGES; i++) {
		pfn = pfn_of(buf + i * ps);
		if (!(kpageflags(pfn) & (1ULL << KPF_LRU)))
			continue;
		if (pread(bfd, &word, sizeof(word), (off_t)(pfn / 64 * 8)) == sizeof(word))
			break;
	}
	if (i == IDLE_PAGES) {
		printf("# SKIP none of %d pages is on an LRU list in a whole word of the bitmap\n",
		       IDLE_PAGES);
		return CHILD_SKIP;
	}
	if (child_exclusive(fd, buf + i * ps, 1))
		return CHILD_FAIL;
	word = 1ULL << (pfn % 64);
	if (pwrite(bfd, &word, sizeof(word), (off_t)(pfn / 64 * 8)) != sizeof(word)) {
		CLOG("set idle: %s", strerror(errno));
		return CHILD_FAIL;
	}
	if (idle_get(bfd, pfn, &idle_excl))
		return CHILD_FAIL;
	if (check_pattern(buf, len, 56) != -1)
		return CHILD_FAIL;
	if (idle_get(bfd, pfn, &idle_used))
		return CHILD_FAIL;
	CLOG("page %d, pfn %#llx: idle bit %d while exclusive, %d after a CPU access (want 1, 0)",
	     i, (unsigned long long)pfn, idle_excl, idle_used);
	return idle_excl == 1 && idle_used == 0 ? CHILD_OK : CHILD_FAIL;
}

TEST_F(paths, page_idle_reads_exclusive_page_as_idle)
{
	NEED_DEVICE();
	if (access(PAGE_IDLE_BITMAP, W_OK))
		SKIP(return, "no %s (CONFIG_IDLE_PAGE_TRACKING)", PAGE_IDLE_BITMAP);
	RUN_CHILD(idle_child, (void *)variant->name, 60, "page_idle");
}

/*
 * KSM: ksmd scans identical mergeable pages while a thread keeps making them
 * device-exclusive and touching them again; write_protect_page() meets the
 * entries (789cfc66992e: it gives up on them).  The data stays intact, the
 * pages are converted many times, and the kernel log stays clean.
 */
#define KSM_PAGES	32
#define KSM_SEED	57
#define KSM_SCANS	3
#define KSM_WAIT_S	40

struct ksm_args {
	int fd;
	char *buf;
	volatile bool stop;
	unsigned long rounds, bad;
};

static void *ksm_flipper(void *p)
{
	struct ksm_args *a = p;
	struct devexcl_probe_exclusive ex;
	const size_t ps = psize();
	int i;

	while (!a->stop) {
		probe_exclusive(a->fd, a->buf, KSM_PAGES, &ex);
		for (i = 0; i < KSM_PAGES; i++)
			if (check_pattern(a->buf + i * ps, ps, KSM_SEED) != -1)
				a->bad++;
		a->rounds++;
	}
	return NULL;
}

static int ksm_child(void *p)
{
	const size_t ps = psize(), len = KSM_PAGES * ps;
	struct ksm_args a = { 0 };
	long full0, full = -1;
	pthread_t th;
	double end;
	int i;

	a.fd = child_probe(p);
	if (a.fd < 0)
		return CHILD_FAIL;
	a.buf = map_private(len);
	if (a.buf == MAP_FAILED)
		return CHILD_FAIL;
	madvise(a.buf, len, MADV_NOHUGEPAGE);
	for (i = 0; i < KSM_PAGES; i++)
		fill_pattern(a.buf + i * ps, ps, KSM_SEED);
	if (madvise(a.buf, len, MADV_MERGEABLE)) {
		CLOG("MADV_MERGEABLE: %s", strerror(errno));
		return CHILD_FAIL;
	}
	full0 = read_long(KSM_SYSFS "/full_scans");
	if (pthread_create(&th, NULL, ksm_flipper, &a))
		return CHILD_FAIL;
	for (end = now_s() + KSM_WAIT_S; now_s() < end; usleep(100000)) {
		full = read_long(KSM_SYSFS "/full_scans");
		if (full >= full0 + KSM_SCANS)
			break;
	}
	a.stop = true;
	pthread_join(th, NULL);
	CLOG("ksmd: %ld full scans, %lu conversion rounds, %lu pages with wrong data, %ld pages shared",
	     full - full0, a.rounds, a.bad, read_long(KSM_SYSFS "/pages_sharing"));
	if (full < full0 + KSM_SCANS || !a.rounds || a.bad)
		return CHILD_FAIL;
	if (check_pattern(a.buf, ps, KSM_SEED) != -1)
		return CHILD_FAIL;
	return CHILD_OK;
}

TEST_F(paths, ksm_scan_while_pages_flip_exclusive_keeps_data)
{
	char run[16] = "0", sleep_ms[16] = "20", scan[16] = "100";
	int rc;

	NEED_DEVICE();
	if (read_str(KSM_SYSFS "/run", run, sizeof(run)))
		SKIP(return, "no KSM (CONFIG_KSM)");
	read_str(KSM_SYSFS "/sleep_millisecs", sleep_ms, sizeof(sleep_ms));
	read_str(KSM_SYSFS "/pages_to_scan", scan, sizeof(scan));
	ASSERT_EQ(0, write_str(KSM_SYSFS "/sleep_millisecs", "10"));
	ASSERT_EQ(0, write_str(KSM_SYSFS "/pages_to_scan", "1000"));
	ASSERT_EQ(0, write_str(KSM_SYSFS "/run", "1"));
	rc = run_child(ksm_child, (void *)variant->name, KSM_WAIT_S + 30);
	write_str(KSM_SYSFS "/run", run);
	write_str(KSM_SYSFS "/sleep_millisecs", sleep_ms);
	write_str(KSM_SYSFS "/pages_to_scan", scan);
	ASSERT_NE(CHILD_HUNG, rc);
	ASSERT_EQ(CHILD_OK, rc);
}

/*
 * DAMON, physical address space: kdamond samples the exclusive pages by PFN
 * and walks their rmap; damon_folio_mkold_one() and damon_folio_young_one()
 * meet the device-exclusive entries (1f3ac4c577bb, be1ea2a2ad0d).  With the
 * fix, damon_ptep_mkold() finds the folio through the entry and marks it
 * idle (KPF_IDLE); without it, it takes pte_pfn() of the swap PTE and marks
 * some other page, or none.  The device keeps its access (the entries are
 * old for the CPU; no invalidation), and the data stays intact.
 */
#define DAMON_ADMIN	"/sys/kernel/mm/damon/admin/kdamonds"
#define DAMON_PAGES	64
#define DAMON_SEED	58
#define DAMON_REGIONS	16
#define DAMON_RUN_S	2
#define KPF_IDLE	25

static int damon_set(const char *rel, const char *val)
{
	char path[256];
	int ret;

	snprintf(path, sizeof(path), DAMON_ADMIN "/%s", rel);
	ret = write_str(path, val);
	if (ret)
		CLOG("write \"%s\" to %s: %s", val, path, strerror(-ret));
	return ret;
}

/* One kdamond, one paddr context, a one-page region per PFN of pfns. */
static int damon_setup(const uint64_t *pfns, int n)
{
	char rel[128], val[32];
	int i;

	/* a kdamond left by an earlier run: stop it (ENOENT if there is none) */
	write_str(DAMON_ADMIN "/0/state", "off");
	if (damon_set("nr_kdamonds", "1") ||
	    damon_set("0/contexts/nr_contexts", "1") ||
	    damon_set("0/contexts/0/operations", "paddr") ||
	    damon_set("0/contexts/0/monitoring_attrs/intervals/sample_us", "1000") ||
	    damon_set("0/contexts/0/monitoring_attrs/intervals/aggr_us", "20000") ||
	    damon_set("0/contexts/0/monitoring_attrs/intervals/update_us", "1000000") ||
	    damon_set("0/contexts/0/targets/nr_targets", "1"))
		return -1;
	snprintf(val, sizeof(val), "%d", n);
	if (damon_set("0/contexts/0/targets/0/regions/nr_regions", val))
		return -1;
	for (i = 0; i < n; i++) {
		snprintf(rel, sizeof(rel), "0/contexts/0/targets/0/regions/%d/start", i);
		snprintf(val, sizeof(val), "%llu", (unsigned long long)(pfns[i] * psize()));
		if (damon_set(rel, val))
			return -1;
		snprintf(rel, sizeof(rel), "0/contexts/0/targets/0/regions/%d/end", i);
		snprintf(val, sizeof(val), "%llu", (unsigned long long)((pfns[i] + 1) * psize()));
		if (damon_set(rel, val))
			return -1;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int damon_child(void *p)
{
	const size_t ps = psize(), len = DAMON_PAGES * ps;
	struct devexcl_probe_stats st0, st1;
	uint64_t pfns[DAMON_REGIONS], fl;
	int fd, i, n = 0, idle_before = 0, idle_after = 0, ret;
	long kdamond;
	char *buf;

	fd = child_probe(p);
	if (fd < 0)
		return CHILD_FAIL;
	/* more pages than a per-CPU LRU batch: most reach the LRU (DAMON needs it) */
	buf = small_pages(len, DAMON_SEED);
	if (!buf)
		return CHILD_FAIL;
	for (i = 0; i < DAMON_PAGES && n < DAMON_REGIONS; i++) {
		uint64_t pfn = pfn_of(buf + i * ps);

		if (pfn && (kpageflags(pfn) & (1ULL << KPF_LRU)))
			pfns[n++] = pfn;
	}
	if (!n) {
		printf("# SKIP none of %d fresh pages is on an LRU list yet\n", DAMON_PAGES);
		return CHILD_SKIP;
	}
	/* regions must be sorted and must not overlap */
	qsort(pfns, n, sizeof(*pfns), cmp_u64);
	if (child_exclusive(fd, buf, DAMON_PAGES))
		return CHILD_FAIL;
	for (i = 0; i < n; i++)
		idle_before += !!(kpageflags(pfns[i]) & (1ULL << KPF_IDLE));
	st0 = stats_of(fd);
	if (damon_setup(pfns, n) || damon_set("0/state", "on"))
		return CHILD_FAIL;
	kdamond = read_long(DAMON_ADMIN "/0/pid");
	usleep(DAMON_RUN_S * 1000000);
	ret = damon_set("0/state", "off");
	damon_set("nr_kdamonds", "0");
	st1 = stats_of(fd);
	for (i = 0; i < n; i++) {
		fl = kpageflags(pfns[i]);
		idle_after += !!(fl & (1ULL << KPF_IDLE));
	}
	CLOG("kdamond %ld sampled %d exclusive pages by PFN for %d s: idle %d -> %d, %ld of %d still exclusive, invalidations %llu -> %llu",
	     kdamond, n, DAMON_RUN_S, idle_before, idle_after,
	     pm_exclusive(buf, DAMON_PAGES), DAMON_PAGES,
	     (unsigned long long)st0.invalidations,
	     (unsigned long long)st1.invalidations);
	if (ret || kdamond <= 0)
		return CHILD_FAIL;
	/* every entry still the device's: DAMON only ages, it never revokes */
	if (pm_exclusive(buf, DAMON_PAGES) != DAMON_PAGES ||
	    st1.invalidations != st0.invalidations)
		return CHILD_FAIL;
	/* damon_ptep_mkold() found each folio through its entry */
	if (idle_after != n)
		return CHILD_FAIL;
	if (check_pattern(buf, len, DAMON_SEED) != -1)
		return CHILD_FAIL;
	return CHILD_OK;
}

TEST_F(paths, damon_paddr_ages_exclusive_pages_keeps_device_access)
{
	int rc;

	NEED_DEVICE();
	if (access(DAMON_ADMIN "/nr_kdamonds", W_OK))
		SKIP(return, "no DAMON sysfs interface (CONFIG_DAMON_SYSFS, 5.18+; CONFIG_DAMON_PADDR)");
	rc = run_child(damon_child, (void *)variant->name, 60);
	/* the child stops it; a child killed at its deadline does not */
	write_str(DAMON_ADMIN "/0/state", "off");
	write_str(DAMON_ADMIN "/nr_kdamonds", "0");
	ASSERT_NE(CHILD_HUNG, rc);
	ASSERT_EQ(CHILD_OK, rc);
}

/*
 * uprobes: a uprobe on a private file mapping whose page the device holds
 * exclusive.  Installing it faults the page back with GUP(FOLL_FORCE) and
 * __replace_page() maps a copy with the breakpoint; removing it does the
 * same with the original instruction.  While it is removed, a thread keeps
 * making the page exclusive again, so __replace_page()'s rmap walk can meet
 * a device-exclusive entry that came back between its GUP and the walk
 * (096cbb80ab3f).  A uprobe is installed only in VMAs that are not writable,
 * and the device can only take pages of writable ones: the mapping is
 * read-only while the probe is installed and writable while it is removed.
 */
#define UPROBE_FILE	"/tmp/devexcl-uprobe-target"
#define UPROBE_OFF	0x40
#define UPROBE_SEED	59
#define UPROBE_ROUNDS	40
#define TRACEFS		"/sys/kernel/tracing"
#define UPROBE_EVENT	"devexcl_paths/p0"

struct uprobe_args {
	int fd;
	char *page;
	volatile bool stop;
	unsigned long conversions;
};

static void *uprobe_flipper(void *p)
{
	struct uprobe_args *a = p;
	struct devexcl_probe_exclusive ex;

	while (!a->stop) {
		/* EFAULT while the mapping is read-only */
		if (!probe_exclusive(a->fd, a->page, 1, &ex) && ex.made == 1)
			a->conversions++;
		(void)*(volatile char *)(a->page + UPROBE_OFF + 8);
	}
	return NULL;
}

static int uprobe_ctl(const char *path, const char *s, int append)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | (append ? O_APPEND : 0));
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : n < 0 ? -errno : -EIO;
}

/* The page as the device left it: pattern, with the file's nop at UPROBE_OFF. */
static bool uprobe_page_ok(const char *page, unsigned char at_off)
{
	const size_t ps = psize();
	static char want[65536];

	fill_pattern(want, ps, UPROBE_SEED);
	want[UPROBE_OFF] = (char)at_off;
	return !memcmp(page, want, ps);
}

static int uprobe_child(void *p)
{
	const size_t ps = psize();
	const char *enable = TRACEFS "/events/" UPROBE_EVENT "/enable";
	struct uprobe_args a = { 0 };
	unsigned char installed = 0, removed = 0;
	int round, bad = 0, ret, ffd;
	pthread_t th;
	char *file;

	a.fd = child_probe(p);
	if (a.fd < 0)
		return CHILD_FAIL;
	/* one page of nops: the probed instruction must decode */
	file = malloc(ps);
	if (!file)
		return CHILD_FAIL;
	memset(file, 0x90, ps);
	mkdir("/tmp", 01777);
	ffd = open(UPROBE_FILE, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (ffd < 0 || write(ffd, file, ps) != (ssize_t)ps) {
		CLOG("create %s: %s", UPROBE_FILE, strerror(errno));
		return CHILD_FAIL;
	}
	a.page = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, ffd, 0);
	if (a.page == MAP_FAILED)
		return CHILD_FAIL;
	/* CoW: an anonymous page, the device can take it */
	fill_pattern(a.page, ps, UPROBE_SEED);
	a.page[UPROBE_OFF] = (char)0x90;
	snprintf(file, ps, "p:%s %s:%#x", UPROBE_EVENT, UPROBE_FILE, UPROBE_OFF);
	/* an event left by an earlier run (ENOENT if there is none) */
	uprobe_ctl(TRACEFS "/uprobe_events", "-:" UPROBE_EVENT, 1);
	ret = uprobe_ctl(TRACEFS "/uprobe_events", file, 1);
	if (ret) {
		CLOG("define uprobe \"%s\": %s", file, strerror(-ret));
		return CHILD_FAIL;
	}
	/* the first install meets the entry for sure, later ones if the thread won */
	if (child_exclusive(a.fd, a.page, 1))
		return CHILD_FAIL;
	if (pthread_create(&th, NULL, uprobe_flipper, &a))
		return CHILD_FAIL;
	for (round = 0; round < UPROBE_ROUNDS && !bad; round++) {
		/* install: the mapping read-only and executable */
		if (mprotect(a.page, ps, PROT_READ | PROT_EXEC) ||
		    uprobe_ctl(enable, "1", 0)) {
			CLOG("round %d: install: %s", round, strerror(errno));
			bad = 1;
			break;
		}
		installed = (unsigned char)a.page[UPROBE_OFF];
		/* remove while the thread makes the page exclusive again */
		mprotect(a.page, ps, PROT_READ | PROT_WRITE);
		usleep(2000);
		ret = uprobe_ctl(enable, "0", 0);
		removed = (unsigned char)a.page[UPROBE_OFF];
		if (ret || installed != 0xcc || !uprobe_page_ok(a.page, 0x90)) {
			CLOG("round %d: remove: %s; byte %#x installed, %#x removed (want 0xcc, 0x90); page %s",
			     round, ret ? strerror(-ret) : "ok", installed, removed,
			     uprobe_page_ok(a.page, 0x90) ? "intact" : "CHANGED");
			bad = 1;
		}
	}
	a.stop = true;
	pthread_join(th, NULL);
	uprobe_ctl(TRACEFS "/uprobe_events", "-:" UPROBE_EVENT, 1);
	CLOG("%d rounds of uprobe install/remove, %lu conversions by the device thread",
	     round, a.conversions);
	munmap(a.page, ps);
	close(ffd);
	unlink(UPROBE_FILE);
	if (bad || !a.conversions)
		return CHILD_FAIL;
	return CHILD_OK;
}

TEST_F(paths, uprobe_on_exclusive_cow_page_installs_and_removes)
{
	struct stat st;

	NEED_DEVICE();
	if (stat(TRACEFS "/uprobe_events", &st))
		mount("tracefs", TRACEFS, "tracefs", 0, NULL);
	if (stat(TRACEFS "/uprobe_events", &st))
		SKIP(return, "no %s/uprobe_events (CONFIG_UPROBE_EVENTS: make matrix's test kernels have it, CI's do not)",
		     TRACEFS);
	RUN_CHILD(uprobe_child, (void *)variant->name, 90, "uprobe");
}

TEST_HARNESS_MAIN
