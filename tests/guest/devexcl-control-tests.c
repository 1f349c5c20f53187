// SPDX-License-Identifier: GPL-2.0
/*
 * The THP control: one test that shows the bug the series fixes on a stock
 * kernel and its fix on a patched one, and proves its own precondition.
 *
 * The stock range API (5.14 to 6.14) refuses THP tail pages: on a buffer
 * that a THP backs, test_hmm's HMM_DMIRROR_EXCLUSIVE fails with -EBUSY.
 * Upstream's own exclusive tests show that only if a THP is under their
 * buffer when they call it, which they do not check.  This test checks with
 * /proc/kpageflags that a THP backs its 2 MiB block right before the call,
 * and says what backs it right after:
 *  - no THP before the call: SKIP, with what was found (the bug could not
 *    be shown, and ci/7-report/report treats upstream's stock passes of that boot
 *    the same way);
 *  - THP before the call: EXCLUSIVE must succeed on all 512 pages and the
 *    mirror must read the data (the patched kernels).  On a stock kernel
 *    this FAILs: ci/expected/xfail-stock lists it, so the report counts it
 *    as the expected failure, and a pass there fails the run;
 *  - a THP split counted by /proc/vmstat (thp_split_page) between the check
 *    and the CPU taking the pages back, or a block that is then no longer
 *    one THP: the block is given up after the data checks and a fresh one
 *    tried, up to three; then SKIP.  A stock kernel succeeds on the small
 *    pages a split leaves: with the THP split through debugfs right after
 *    the check, stock 6.12.107 made all 512 pages exclusive.  A block
 *    without a THP at the check is retried the same way.
 * Anything that keeps the test from reaching the call (no test_hmm, a
 * failed mmap...) is a SKIP with its reason, so that a FAIL always means
 * the call itself failed on a THP.
 *
 * Build: ci/4-build/build-guest-tests (suite "control"), against the variant's own
 * lib/test_hmm_uapi.h; devexcl_util.h gives thp_usable() and PM_PRESENT.
 */
#define _GNU_SOURCE
/* 5.10's harness has an unused parameter in its SIGALRM handler. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "kselftest_harness.h"
#pragma GCC diagnostic pop
#include "test_hmm_uapi.h"
#include "devexcl_util.h"

#define DMIRROR_DEV	"/dev/hmm_dmirror0"
#define BLOCK		HPAGE_SIZE
#define PAGE		4096UL
#define NPAGES		(BLOCK / PAGE)

#define PM_PFN_MASK	((1ULL << 55) - 1)
#define KPF_HEAD	(1ULL << 15)
#define KPF_TAIL	(1ULL << 16)
#define KPF_THP		(1ULL << 22)

/* What backs [p, p + BLOCK): present pages, THP pages, heads, tails. */
struct backing {
	unsigned long present, thp, head, tail;
	int err;
};

static struct backing backing_of(void *p)
{
	struct backing b = { 0 };
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int kf = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	unsigned long i;

	if (pm < 0 || kf < 0) {
		b.err = errno;
		goto out;
	}
	for (i = 0; i < NPAGES; i++) {
		uint64_t e, f;

		if (pread(pm, &e, 8, ((uintptr_t)p / PAGE + i) * 8) != 8) {
			b.err = EIO;
			break;
		}
		if (!(e & PM_PRESENT))
			continue;
		b.present++;
		if (pread(kf, &f, 8, (e & PM_PFN_MASK) * 8) != 8) {
			b.err = EIO;
			break;
		}
		b.thp += !!(f & KPF_THP);
		b.head += !!(f & KPF_HEAD);
		b.tail += !!(f & KPF_TAIL);
	}
out:
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	return b;
}

/*
 * The /proc/vmstat counters printed around the call: thp_split_page is the
 * one that decides (a PMD-order folio split; on 5.10 and 6.12 a split in
 * migration counts there too); the migration counters are diagnostics (a
 * THP migrated whole is still a THP).  They are system-wide.  The exclusive
 * call itself splits no folio on any kernel here (the stock range API
 * refuses tail pages; the 6.15 design converts one PTE at a time), but both
 * split the PMD (FOLL_SPLIT_PMD): thp_split_pmd moves in every call and is
 * not one of them.
 */
static const char * const moves[] = {
	"thp_split_page", "thp_migration_success", "thp_migration_split",
};
#define NMOVES	(sizeof(moves) / sizeof(moves[0]))
#define SPLIT	0	/* moves[SPLIT]: thp_split_page */
#define TRIES	3

/* Read the counters of moves[] into v (a missing counter reads as 0). */
static int vmstat_moves(unsigned long long *v)
{
	FILE *f = fopen("/proc/vmstat", "re");
	char name[64];
	unsigned long long n;
	unsigned int i;

	if (!f)
		return -1;
	memset(v, 0, NMOVES * sizeof(*v));
	while (fscanf(f, "%63s %llu", name, &n) == 2)
		for (i = 0; i < NMOVES; i++)
			if (!strcmp(name, moves[i]))
				v[i] = n;
	fclose(f);
	return 0;
}

/* "name +delta, ..." of the counters that moved from a to b, or "none moved" */
static const char *moved_str(char *buf, size_t len, const unsigned long long *a,
			     const unsigned long long *b)
{
	size_t n = 0;
	unsigned int i;

	buf[0] = 0;
	for (i = 0; i < NMOVES && n < len; i++)
		if (b[i] != a[i])
			n += snprintf(buf + n, len - n, "%s%s +%llu", n ? ", " : "",
				      moves[i], b[i] - a[i]);
	return n ? buf : "none moved";
}

FIXTURE(control) {
	int fd;
};

FIXTURE_SETUP(control)
{
	self->fd = open(DMIRROR_DEV, O_RDWR | O_CLOEXEC);
	if (self->fd < 0)
		SKIP(return, DMIRROR_DEV ": %s (test_hmm not loaded)", strerror(errno));
}

FIXTURE_TEARDOWN(control)
{
	if (self->fd >= 0)
		close(self->fd);
}

/*
 * EXCLUSIVE on all 512 pages of a 2 MiB block that kpageflags shows to be
 * one THP right before the call.
 */
TEST_F(control, exclusive_on_verified_thp)
{
#ifndef HMM_DMIRROR_EXCLUSIVE
	SKIP(return, "this kernel's test_hmm has no HMM_DMIRROR_EXCLUSIVE");
#else
	struct hmm_dmirror_cmd cmd;
	struct backing before, after, back;
	unsigned long long m0[NMOVES], m1[NMOVES], m2[NMOVES];
	char mode[128], nothp[256], moved[256], mv1[160], mv2[160];
	uint64_t *mirror, *w;
	char *map, *p;
	unsigned long i;
	int ret, err, try, tries_nothp = 0;

	if (!thp_usable(mode, sizeof(mode)))
		SKIP(return, "THP is off (%s): no THP to put under the buffer", mode);
	mirror = calloc(1, BLOCK);
	if (!mirror)
		SKIP(return, "setup: no memory for the mirror buffer");
	nothp[0] = moved[0] = 0;
	/*
	 * Up to TRIES fresh blocks: a block whose THP was not there at the
	 * check, or did not stay through the call, is given up and the next
	 * one tried, so that one bad moment does not cost the control.
	 */
	for (try = 1; try <= TRIES; try++) {
		map = mmap(NULL, 2 * BLOCK, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (map == MAP_FAILED)
			SKIP(return, "setup: mmap: %s", strerror(errno));
		p = (char *)(((uintptr_t)map + BLOCK - 1) & ~(BLOCK - 1));
		/* (THP always does not need it; madvise mode does) */
		if (madvise(p, BLOCK, MADV_HUGEPAGE))
			SKIP(return, "setup: MADV_HUGEPAGE: %s", strerror(errno));
		memset(mirror, 0, BLOCK);
		for (i = 0, w = (uint64_t *)p; i < BLOCK / 8; i++)
			w[i] = i * 0x9e3779b97f4a7c15ULL;

		if (vmstat_moves(m0))
			SKIP(return, "setup: /proc/vmstat: %s", strerror(errno));
		before = backing_of(p);
		if (before.err)
			SKIP(return, "setup: pagemap/kpageflags: %s", strerror(before.err));
		if (before.thp != NPAGES || before.head != 1) {
			snprintf(nothp, sizeof(nothp),
				 "no THP under the 2 MiB block right before the call (%lu of %lu pages THP, %lu head)",
				 before.thp, NPAGES, before.head);
			fprintf(stderr, "# try %d: %s\n", try, nothp);
			tries_nothp++;
			munmap(map, 2 * BLOCK);
			continue;
		}
		memset(&cmd, 0, sizeof(cmd));
		cmd.addr = (uintptr_t)p;
		cmd.ptr = (uintptr_t)mirror;
		cmd.npages = NPAGES;
		ret = ioctl(self->fd, HMM_DMIRROR_EXCLUSIVE, &cmd);
		err = ret ? errno : 0;
		if (vmstat_moves(m1))
			SKIP(return, "/proc/vmstat: %s", strerror(errno));
		after = backing_of(p);
		fprintf(stderr, "# try %d: before the call: %lu present, %lu THP (%lu head, %lu tail); "
			"EXCLUSIVE: %s, %llu pages; after: %lu present, %lu THP; "
			"vmstat from the check to the call's end: %s\n",
			try, before.present, before.thp, before.head, before.tail,
			ret ? strerror(err) : "ok", (unsigned long long)cmd.cpages,
			after.present, after.thp, moved_str(mv1, sizeof(mv1), m0, m1));
		ASSERT_EQ(ret, 0) TH_LOG("EXCLUSIVE on a THP-backed block: %s", strerror(err));
		ASSERT_EQ(cmd.cpages, NPAGES);
		for (i = 0; i < BLOCK / 8; i++)
			ASSERT_EQ(mirror[i], i * 0x9e3779b97f4a7c15ULL) TH_LOG("mirror word %lu", i);
		/* the CPU takes the pages back: the data is intact */
		for (i = 0, w = (uint64_t *)p; i < BLOCK / 8; i++)
			ASSERT_EQ(w[i], i * 0x9e3779b97f4a7c15ULL) TH_LOG("CPU word %lu", i);
		/*
		 * The call succeeded on the THP only if that THP was still
		 * there: a stock kernel succeeds when something split it right
		 * after the check (its small pages are then no THP any more),
		 * and a patched one has then not been tested on a THP either.
		 */
		back = backing_of(p);
		if (vmstat_moves(m2))
			SKIP(return, "/proc/vmstat: %s", strerror(errno));
		munmap(map, 2 * BLOCK);
		fprintf(stderr, "# try %d: after the CPU took the pages back: %lu present, %lu THP (%lu head); "
			"vmstat from the check to here: %s\n", try, back.present, back.thp, back.head,
			moved_str(mv2, sizeof(mv2), m0, m2));
		if (m2[SPLIT] == m0[SPLIT] && !back.err && back.thp == NPAGES && back.head == 1) {
			free(mirror);
			return;
		}
		snprintf(moved, sizeof(moved),
			 "the THP did not stay under the block through the call (thp_split_page +%llu; afterwards %lu of %lu pages THP, %lu head)",
			 m2[SPLIT] - m0[SPLIT], back.thp, NPAGES, back.head);
	}
	free(mirror);
	/* (ci/7-report/report reads "no THP under": only when no try had one) */
	if (tries_nothp == TRIES)
		SKIP(return, "%s, in each of %d tries: the control could not show the bug", nothp, TRIES);
	if (!tries_nothp)
		SKIP(return, "%s, in each of %d tries: the control could not show the bug", moved, TRIES);
	SKIP(return, "%s (in %d of %d tries; the others had no THP at the check): the control could not show the bug",
	     moved, TRIES - tries_nothp, TRIES);
#endif
}

TEST_HARNESS_MAIN
