// SPDX-License-Identifier: GPL-2.0
/*
 * Concurrency tests of device-exclusive access, through the devexcl probe
 * modules (one fixture variant per kernel API, as devexcl-api-tests.c):
 * drivers call the API from many threads, on THP-backed memory that the
 * process forks, remaps and touches at the same time.
 *
 * A test that can hang the kernel runs its work in a child process and waits
 * for it with a deadline: past the deadline the child is SIGKILLed and the
 * test fails ("hung").  The guest kernel's hung-task detector reports the
 * blocked tasks in the console log as well (ci/5-boot/scan-log fails the run).
 *
 * Build (tests/probe holds devexcl_probe_uapi.h):
 *   gcc -static -Wall -I<tree>/tools/testing/selftests -I<repo>/tests/probe \
 *       devexcl-concurrency-tests.c -o devexcl-concurrency-tests -lpthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>

/* 5.10's harness has an unused parameter in its SIGALRM handler. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "kselftest_harness.h"
#pragma GCC diagnostic pop
#include "devexcl_probe_uapi.h"

#include "devexcl_util.h"

PROBE_FIXTURE(conc);

/*
 * fork() while a driver holds a device-exclusive page locked.
 */
#define HOLD_MS		1500

struct hold_args {
	int fd;
	char *buf;
	int ioctl_ret;
	unsigned int made;
};

static void *hold_thread(void *p)
{
	struct hold_args *a = p;
	struct devexcl_probe_exclusive ex;

	a->ioctl_ret = probe_exclusive_flags(a->fd, a->buf, 1,
					     DEVEXCL_PROBE_EXCL_HOLD, HOLD_MS,
					     &ex);
	a->made = ex.made;
	return NULL;
}

/*
 * Child: one thread makes a page exclusive and keeps it locked for HOLD_MS,
 * then takes the mmap_lock again before unlocking it (a driver revalidating
 * its VMA); meanwhile the main thread forks.  fork() holds the mmap_lock for
 * writing while it copies the page tables: if it waited for the page lock
 * there, neither could go on.  fork() may succeed or fail with ENOMEM (the
 * page was locked); it must return, and the data must be intact.
 */
static int fork_vs_hold_child(void *p)
{
	const size_t len = psize();
	struct hold_args a = { .fd = probe_open(p) };
	pthread_t th;
	double t0;
	pid_t pid;
	int i;

	/* The probe's context belongs to the mm that opens it: this child's. */
	if (a.fd < 0)
		return CHILD_FAIL;
	a.buf = map_private(len);
	if (a.buf == MAP_FAILED)
		return CHILD_FAIL;
	madvise(a.buf, len, MADV_NOHUGEPAGE);
	fill_pattern(a.buf, len, 21);
	if (pthread_create(&th, NULL, hold_thread, &a))
		return CHILD_FAIL;
	/* Wait until the page is exclusive (and held), at most 5 s. */
	for (i = 0; i < 500 && pm_exclusive(a.buf, 1) != 1; i++)
		usleep(10000);
	if (i == 500) {
		printf("# the page never became device-exclusive\n");
		return CHILD_FAIL;
	}
	usleep(100000);
	t0 = now_s();
	pid = fork();
	if (pid == 0)
		_exit(0);
	printf("# fork() %s after %.2f s (page held for %d ms)\n",
	       pid > 0 ? "succeeded" : strerror(errno), now_s() - t0, HOLD_MS);
	if (pid < 0 && errno != ENOMEM)
		return CHILD_FAIL;
	if (pid > 0)
		waitpid(pid, NULL, 0);
	pthread_join(th, NULL);
	if (a.ioctl_ret || a.made != 1) {
		printf("# EXCLUSIVE with HOLD: %s, made %u\n",
		       strerror(-a.ioctl_ret), a.made);
		return CHILD_FAIL;
	}
	if (check_pattern(a.buf, len, 21) != -1) {
		printf("# data changed\n");
		return CHILD_FAIL;
	}
	return CHILD_OK;
}

/*
 * Issue 13 finding 2 (5.10): fork() slept on the page lock with the
 * mmap_lock held for writing, so a driver that takes the mmap_lock before it
 * unlocks the page deadlocked with it until SIGKILL.
 */
TEST_F(conc, fork_while_driver_holds_page_lock_returns)
{
	int rc;

	NEED_DEVICE();
	rc = run_child(fork_vs_hold_child, (void *)variant->name, 30);
	ASSERT_NE(CHILD_HUNG, rc) {
		TH_LOG("fork() and the page lock holder deadlocked (killed after 30 s)");
	}
	ASSERT_EQ(CHILD_OK, rc);
}

/*
 * Issue 13 finding 3 (5.10): an address that is not page-aligned is
 * converted like the page that holds it: that page and no other becomes
 * exclusive, every notifier range the driver sees (its own
 * MMU_NOTIFY_EXCLUSIVE and the CPU's revocation) is page-aligned, and the
 * data survives.
 */
TEST_F(conc, unaligned_address_converts_its_page_with_aligned_ranges)
{
	const unsigned long n = 4;
	const size_t ps = psize();
	const size_t len = n * ps;
	struct devexcl_probe_exclusive ex;
	struct devexcl_probe_stats st0, st1, st2;
	char *buf;

	NEED_DEVICE();
	buf = map_private(len);
	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_EQ(0, madvise(buf, len, MADV_NOHUGEPAGE));
	fill_pattern(buf, len, 22);
	ASSERT_EQ(0, probe_stats(self->fd, &st0));

	ASSERT_EQ(0, probe_exclusive_flags(self->fd, buf + ps + 123, 1,
					   DEVEXCL_PROBE_EXCL_UNALIGNED, 0,
					   &ex));
	ASSERT_EQ(1, ex.made);
	ASSERT_EQ(0, ex.first_errno);
	ASSERT_EQ(1, pm_exclusive(buf + ps, 1));
	ASSERT_EQ(1, pm_present(buf, 1));
	ASSERT_EQ(2, pm_present(buf + 2 * ps, 2));
	ASSERT_EQ(0, probe_stats(self->fd, &st1));
	ASSERT_GE(st1.self_events - st0.self_events, 1ULL);
	ASSERT_EQ(st0.unaligned, st1.unaligned) {
		TH_LOG("%llu unaligned notifier range(s) while converting",
		       (unsigned long long)(st1.unaligned - st0.unaligned));
	}

	ASSERT_EQ(-1, check_pattern(buf, len, 22));
	ASSERT_EQ(n, pm_present(buf, n));
	ASSERT_EQ(0, probe_stats(self->fd, &st2));
	ASSERT_GE(st2.invalidations - st1.invalidations, 1ULL);
	ASSERT_EQ(st1.unaligned, st2.unaligned) {
		TH_LOG("%llu unaligned notifier range(s) while restoring",
		       (unsigned long long)(st2.unaligned - st1.unaligned));
	}
	ASSERT_EQ(0, munmap(buf, len));
}

/*
 * Stress: two driver threads (each with its own context) make random pages
 * of a THP exclusive, one page per call, on the same range; two CPU threads
 * read random words (faults race to restore the same entries); one thread
 * splits every THP (debugfs split_huge_pages) as soon as the entries of one
 * are gone.  Each round maps a fresh THP-eligible 2 MiB region.  Every read
 * must see the pattern; the kernel checks the references and locks (DEBUG_VM,
 * lockdep, KASAN; any report fails the run).
 */
/* DEVEXCL_STRESS_SECONDS (guest: devexcl.stress_s=) overrides the length. */
#define STRESS_SECONDS	6
#define STRESS_ROUND_MS	500
#define SPLIT_HPAGES	"/sys/kernel/debug/split_huge_pages"

struct stress {
	const char *api;
	char *volatile buf;	/* region of the current round */
	volatile int stop;	/* end of the current round */
	volatile int done;	/* end of the test */
	volatile long bad_reads;
	volatile long made, calls, reads, splits;
	volatile int errors, split_errno;
	pthread_barrier_t round_start, round_end;
};

static unsigned int xorshift(unsigned int *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void *stress_maker(void *p)
{
	struct stress *st = p;
	struct devexcl_probe_exclusive ex;
	unsigned int seed = (unsigned int)(uintptr_t)&ex | 1;
	const unsigned long n = HPAGE_SIZE / psize();
	int fd = probe_open(st->api);

	if (fd < 0)
		st->errors++;
	for (;;) {
		pthread_barrier_wait(&st->round_start);
		if (st->done)
			break;
		while (!st->stop && fd >= 0) {
			unsigned long i = xorshift(&seed) % n;

			if (probe_exclusive(fd, st->buf + i * psize(), 1, &ex))
				st->errors++;
			st->calls++;
			st->made += ex.made;
		}
		pthread_barrier_wait(&st->round_end);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void *stress_reader(void *p)
{
	struct stress *st = p;
	unsigned int seed = (unsigned int)(uintptr_t)&st | 2;
	const size_t words = HPAGE_SIZE / sizeof(uint64_t);

	for (;;) {
		pthread_barrier_wait(&st->round_start);
		if (st->done)
			break;
		while (!st->stop) {
			size_t w = xorshift(&seed) % words;

			if (((volatile uint64_t *)st->buf)[w] != pattern_word(23, w))
				st->bad_reads++;
			st->reads++;
		}
		pthread_barrier_wait(&st->round_end);
	}
	return NULL;
}

static void *stress_splitter(void *p)
{
	struct stress *st = p;
	int fd;

	for (;;) {
		pthread_barrier_wait(&st->round_start);
		if (st->done)
			break;
		while (!st->stop) {
			/* A debugfs attribute: one write per open file. */
			fd = open(SPLIT_HPAGES, O_WRONLY | O_CLOEXEC);
			if (fd >= 0 && write(fd, "1", 1) == 1)
				st->splits++;
			else
				st->split_errno = errno;
			if (fd >= 0)
				close(fd);
			usleep(1000);
		}
		pthread_barrier_wait(&st->round_end);
	}
	return NULL;
}

#define STRESS_THREADS	5

TEST_F(conc, make_exclusive_restore_and_split_race_keeps_data)
{
	void *(*fn[STRESS_THREADS])(void *) = {
		stress_maker, stress_maker, stress_reader, stress_reader,
		stress_splitter,
	};
	pthread_t th[STRESS_THREADS];
	struct stress st = { .api = variant->name };
	const char *env = getenv("DEVEXCL_STRESS_SECONDS");
	double end = now_s() + (env ? atoi(env) : STRESS_SECONDS);
	long rounds = 0;
	char *raw;
	int i;

	NEED_DEVICE();
	if (access(SPLIT_HPAGES, W_OK))
		TH_LOG("no %s: THPs are not split on demand", SPLIT_HPAGES);
	ASSERT_EQ(0, pthread_barrier_init(&st.round_start, NULL,
					  STRESS_THREADS + 1));
	ASSERT_EQ(0, pthread_barrier_init(&st.round_end, NULL,
					  STRESS_THREADS + 1));
	for (i = 0; i < STRESS_THREADS; i++)
		ASSERT_EQ(0, pthread_create(&th[i], NULL, fn[i], &st));

	while (now_s() < end) {
		raw = mmap(NULL, 2 * HPAGE_SIZE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT_NE(MAP_FAILED, raw);
		st.buf = (char *)(((uintptr_t)raw + HPAGE_SIZE - 1) &
				  ~(HPAGE_SIZE - 1));
		madvise(st.buf, HPAGE_SIZE, MADV_HUGEPAGE);
		fill_pattern(st.buf, HPAGE_SIZE, 23);
		st.stop = 0;
		pthread_barrier_wait(&st.round_start);
		usleep(STRESS_ROUND_MS * 1000);
		st.stop = 1;
		pthread_barrier_wait(&st.round_end);
		ASSERT_EQ(-1, check_pattern(st.buf, HPAGE_SIZE, 23));
		ASSERT_EQ(0, munmap(raw, 2 * HPAGE_SIZE));
		rounds++;
	}
	st.done = 1;
	pthread_barrier_wait(&st.round_start);
	for (i = 0; i < STRESS_THREADS; i++)
		pthread_join(th[i], NULL);

	TH_LOG("%ld rounds: %ld calls made %ld pages exclusive, %ld reads, %ld splits (last split error: %s)",
	       rounds, st.calls, st.made, st.reads, st.splits,
	       st.split_errno ? strerror(st.split_errno) : "none");
	ASSERT_EQ(0, st.errors);
	ASSERT_EQ(0, st.bad_reads);
	ASSERT_GT(st.made, 0);
}

/*
 * Issue 13 finding 6 (6.12): make_device_exclusive_range() kept the folios
 * of earlier pages locked while it slept on the lock of a later folio.
 * Ascending addresses are no lock order: after a partial mremap() one large
 * folio F is mapped at two places, below and above a few small pages G, so
 *   thread 0 on [G, H] locks G, then waits for F (H is a page of F), and
 *   thread 1 on [L, G] locks F (L is a page of F), then waits for G:
 * an ABBA deadlock between two driver threads of one process.  The fixed
 * series only tries further folio locks (and GUPs with FOLL_NOWAIT) once it
 * holds one, so every call returns.  The page API unlocks between pages and
 * never holds two; it runs the same test.
 *
 * Layout (one 2 MiB THP F, PMD-split by the mremap()s, K = ABBA_SMALL):
 *   [a, a + 1M)                 F pages 0..255 (L = the last one)
 *   [a + 1M, a + 1M + K pages)  K small pages G
 *   [a + 1M + K pages, ...)     F pages 256..511 (H = the first one)
 * Thread 0: K + 1 pages from G (G..., H).  Thread 1: K + 1 pages from L
 * (L, G...).  The threads call in a loop for ABBA_SECONDS; a call that does
 * not return within ABBA_STALL_S is a hang: the test kills the child.
 */
#define ABBA_SMALL	16
#define ABBA_SECONDS	4
#define ABBA_STALL_S	5
#define ABBA_REAP_S	10
#define ABBA_SKIP	4	/* child exit code: KSFT_SKIP, reason printed */
#define ABBA_SEED	61

/* Shared between the test and its child (MAP_SHARED). */
struct abba {
	const char *api;
	volatile int started;		/* both threads are calling */
	volatile int stop;
	volatile int finished[2];
	volatile long calls[2];
	volatile long made[2];
	volatile long made_none[2];	/* calls that made no page exclusive */
	volatile int err[2];		/* first ioctl error, -errno */
	volatile int first_errno[2];	/* first per-page errno reported */
};

struct abba_thread {
	struct abba *ab;
	int t;
	int fd;
	char *addr;
};

static void *abba_caller(void *p)
{
	struct abba_thread *th = p;
	struct abba *ab = th->ab;
	struct devexcl_probe_exclusive ex;
	int ret;

	while (!ab->stop) {
		ret = probe_exclusive(th->fd, th->addr, ABBA_SMALL + 1, &ex);
		if (ret) {
			ab->err[th->t] = ret;
			break;
		}
		ab->made[th->t] += ex.made;
		if (!ex.made)
			ab->made_none[th->t]++;
		if (ex.first_errno && !ab->first_errno[th->t])
			ab->first_errno[th->t] = ex.first_errno;
		ab->calls[th->t]++;
	}
	ab->finished[th->t] = 1;
	return NULL;
}

/* The PFN mapped at addr (root only), 0 if unknown. */
static uint64_t abba_pfn(void *addr)
{
	uint64_t ent = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (pread(fd, &ent, sizeof(ent),
		  (off_t)((uintptr_t)addr / psize() * sizeof(ent))) != sizeof(ent))
		ent = 0;
	close(fd);
	return ent & PM_PRESENT ? ent & ((1ULL << 55) - 1) : 0;
}

#define KPF_THP_BIT	22

/* 1 if /proc/kpageflags says pfn is part of a THP, 0 if not, -1 unknown. */
static int abba_pfn_thp(uint64_t pfn)
{
	uint64_t flags;
	int fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	int ret = -1;

	if (fd < 0 || !pfn)
		goto out;
	if (pread(fd, &flags, sizeof(flags), (off_t)(pfn * sizeof(flags))) ==
	    sizeof(flags))
		ret = !!(flags & (1ULL << KPF_THP_BIT));
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

/* -1 if [buf, buf + len) holds the pattern of seed from word first on. */
static long abba_check(const char *buf, size_t len, unsigned int seed,
		       size_t first)
{
	const volatile uint64_t *w = (const void *)buf;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i++)
		if (w[i] != pattern_word(seed, first + i))
			return (long)i;
	return -1;
}

static int abba_child(void *p)
{
	struct abba *ab = p;
	const size_t ps = psize(), half = HPAGE_SIZE / 2;
	const size_t gap = ABBA_SMALL * ps;
	struct abba_thread th[2];
	pthread_t tid[2];
	char *raw, *a, *g, *h, *l;
	uint64_t pa, pl, ph;
	long kb;
	int t;

	/* Room for a 2 MiB-aligned THP, its moved half and a parking place. */
	raw = mmap(NULL, 8 * HPAGE_SIZE, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return CHILD_FAIL;
	a = hpage_align(raw);
	if (mmap(a, HPAGE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != a)
		return CHILD_FAIL;
	madvise(a, HPAGE_SIZE, MADV_HUGEPAGE);
	fill_pattern(a, HPAGE_SIZE, ABBA_SEED);
	kb = anon_huge_kb(a);
	if (kb < (long)(HPAGE_SIZE >> 10)) {
		printf("# SKIP region not THP-backed (AnonHugePages: %ld kB)\n", kb);
		return ABBA_SKIP;
	}

	/* Move the upper half away, then back K small pages higher. */
	if (mremap(a + half, half, half, MREMAP_MAYMOVE | MREMAP_FIXED,
		   a + 4 * HPAGE_SIZE) != a + 4 * HPAGE_SIZE)
		return CHILD_FAIL;
	h = a + half + gap;
	if (mremap(a + 4 * HPAGE_SIZE, half, half,
		   MREMAP_MAYMOVE | MREMAP_FIXED, h) != h)
		return CHILD_FAIL;
	g = a + half;
	if (mmap(g, gap, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != g)
		return CHILD_FAIL;
	madvise(g, gap, MADV_NOHUGEPAGE);
	fill_pattern(g, gap, ABBA_SEED + 1);
	l = g - ps;

	/* L and H must be pages of the same THP (needs root to see PFNs). */
	pa = abba_pfn(a);
	pl = abba_pfn(l);
	ph = abba_pfn(h);
	if (pa && (pl != pa + half / ps - 1 || ph != pa + half / ps ||
		   abba_pfn_thp(pl) == 0 || abba_pfn_thp(ph) == 0)) {
		printf("# SKIP the THP did not stay one folio: pfn %#llx, L %#llx, H %#llx\n",
		       (unsigned long long)pa, (unsigned long long)pl,
		       (unsigned long long)ph);
		return ABBA_SKIP;
	}
	if (!pa)
		printf("# PFNs not readable: L and H not checked to share a folio\n");

	for (t = 0; t < 2; t++) {
		th[t].ab = ab;
		th[t].t = t;
		th[t].addr = t ? l : g;
		/* one context (and notifier) per thread, as two drivers */
		th[t].fd = probe_open(ab->api);
		if (th[t].fd < 0)
			return CHILD_FAIL;
	}
	for (t = 0; t < 2; t++)
		if (pthread_create(&tid[t], NULL, abba_caller, &th[t]))
			return CHILD_FAIL;
	ab->started = 1;
	sleep(ABBA_SECONDS);
	ab->stop = 1;
	for (t = 0; t < 2; t++)
		pthread_join(tid[t], NULL);

	for (t = 0; t < 2; t++)
		printf("# %s: thread %d (%s): %ld calls made %ld pages exclusive, %ld calls none, first_errno %d\n",
		       ab->api, t, t ? "L..G" : "G..H", ab->calls[t],
		       ab->made[t], ab->made_none[t], ab->first_errno[t]);
	if (ab->err[0] || ab->err[1]) {
		printf("# EXCLUSIVE failed: %s / %s\n", strerror(-ab->err[0]),
		       strerror(-ab->err[1]));
		return CHILD_FAIL;
	}
	if (!ab->made[0] || !ab->made[1]) {
		printf("# a thread never made a page exclusive\n");
		return CHILD_FAIL;
	}
	if (abba_check(a, half, ABBA_SEED, 0) != -1 ||
	    abba_check(h, half, ABBA_SEED, half / sizeof(uint64_t)) != -1 ||
	    abba_check(g, gap, ABBA_SEED + 1, 0) != -1) {
		printf("# data changed\n");
		return CHILD_FAIL;
	}
	return CHILD_OK;
}

TEST_F(conc, range_calls_on_thp_mapped_twice_do_not_deadlock)
{
	int status = 0, hung = -1, killed = 0, reaped = 0, t;
	double stalled[2], t_now, end;
	long last[2] = { -1, -1 };
	char mode[128];
	struct abba *ab;
	pid_t pid, w;

	NEED_DEVICE();
	if (!thp_usable(mode, sizeof(mode)))
		SKIP(return, "THP not usable: %s %s", THP_ENABLED, mode);
	ab = mmap(NULL, sizeof(*ab), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, ab);
	memset(ab, 0, sizeof(*ab));
	ab->api = variant->name;

	fflush(NULL);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		status = abba_child(ab);
		fflush(NULL);	/* _exit() does not flush the log lines */
		_exit(status);
	}

	/* Watch both threads: each call must return within ABBA_STALL_S. */
	end = now_s() + ABBA_SECONDS + 3 * ABBA_STALL_S;
	stalled[0] = now_s();
	stalled[1] = stalled[0];
	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid) {
			reaped = 1;
			break;
		}
		ASSERT_EQ(0, w);
		t_now = now_s();
		for (t = 0; t < 2; t++) {
			if (!ab->started || ab->finished[t] ||
			    ab->calls[t] != last[t]) {
				last[t] = ab->calls[t];
				stalled[t] = t_now;
			} else if (t_now - stalled[t] > ABBA_STALL_S) {
				hung = t;
			}
		}
		if (hung >= 0 || t_now > end) {
			killed = 1;
			kill(pid, SIGKILL);
			/* A thread in an uninterruptible sleep stays. */
			for (end = now_s() + ABBA_REAP_S; now_s() < end;
			     usleep(20000)) {
				if (waitpid(pid, &status, WNOHANG) == pid) {
					reaped = 1;
					break;
				}
			}
			break;
		}
		usleep(20000);
	}
	if (hung >= 0)
		TH_LOG("%s: thread %d (%s) made no progress for %d s after %ld calls (other thread: %ld calls): the calls wait for each other's folio locks",
		       variant->name, hung, hung ? "L..G" : "G..H",
		       ABBA_STALL_S, ab->calls[hung], ab->calls[!hung]);
	else if (killed)
		TH_LOG("%s: the child did not finish in %d s (started: %d)",
		       variant->name, ABBA_SECONDS + 3 * ABBA_STALL_S,
		       ab->started);
	if (killed && !reaped)
		TH_LOG("the child was not reaped %d s after SIGKILL: a thread sleeps uninterruptibly",
		       ABBA_REAP_S);
	ASSERT_EQ(0, killed);
	ASSERT_TRUE(WIFEXITED(status));
	if (WEXITSTATUS(status) == ABBA_SKIP)
		SKIP(return, "no THP mapped at two places (see the log)");
	ASSERT_EQ(CHILD_OK, WEXITSTATUS(status));
	munmap(ab, sizeof(*ab));
}

/*
 * Issue 13 finding 10: a collapse scan over a PMD range that holds
 * device-exclusive entries must leave them alone.  Before "mm/khugepaged:
 * abort collapse scan on non-swap entries", hpage_collapse_scan_pmd() (5.10:
 * khugepaged_scan_pmd()) counted them as swap entries and
 * __collapse_huge_page_swapin() "swapped them in" with do_swap_page(), which
 * restored them (revoking the device's access) before the range was
 * collapsed into a THP.  The same scan runs synchronously for MADV_COLLAPSE
 * (6.1+, any THP mode) and in khugepaged (THP always or madvise), which this
 * test makes scan fast for two full passes.  Either way the entries must
 * still be device-exclusive afterwards, the driver must have seen no
 * invalidation, nothing may be collapsed, and the data must be intact.
 * Without the fix MADV_COLLAPSE succeeds and khugepaged collapses the range
 * (unless allocating the huge page fails): the entries are gone.
 */
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE		25
#endif
#define COLLAPSE_FIRST		100	/* first device-exclusive page of the PMD */
#define COLLAPSE_NEXCL		8	/* <= khugepaged's default max_ptes_swap */
#define COLLAPSE_SEED		23
#define KHP_DIR		"/sys/kernel/mm/transparent_hugepage/khugepaged/"
#define KHP_WAIT_S		60

static long khp_read(const char *name)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), KHP_DIR "%s", name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static int khp_write(const char *name, long v)
{
	char path[128];
	int ok;
	FILE *f;

	snprintf(path, sizeof(path), KHP_DIR "%s", name);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	ok = fprintf(f, "%ld\n", v) > 0;
	return fclose(f) == 0 && ok ? 0 : -EIO;
}

/*
 * Let khugepaged scan every 10 ms, 64k pages a pass, and wait for two more
 * full scans (the first may have started before our range became eligible).
 * The tunables are restored before returning.  Returns the number of full
 * scans seen (2 on success), or -errno if the tunables cannot be set.
 */
static int khugepaged_two_full_scans(void)
{
	long sleep_ms = khp_read("scan_sleep_millisecs");
	long alloc_ms = khp_read("alloc_sleep_millisecs");
	long pages = khp_read("pages_to_scan");
	long full0, full = -1;
	double end;
	int ret;

	if (sleep_ms < 0 || alloc_ms < 0 || pages < 0 || khp_read("full_scans") < 0)
		return -ENOENT;
	full0 = khp_read("full_scans");
	ret = khp_write("pages_to_scan", 65536);
	if (!ret)
		ret = khp_write("alloc_sleep_millisecs", 10);
	if (!ret)
		ret = khp_write("scan_sleep_millisecs", 10);
	if (!ret) {
		end = now_s() + KHP_WAIT_S;
		do {
			usleep(20000);
			full = khp_read("full_scans");
		} while (full < full0 + 2 && now_s() < end);
	}
	khp_write("scan_sleep_millisecs", sleep_ms);
	khp_write("alloc_sleep_millisecs", alloc_ms);
	khp_write("pages_to_scan", pages);
	return ret ? ret : (int)(full - full0);
}

/* After a collapse attempt: the checks that say nothing touched the entries. */
static void collapse_check(struct __test_metadata *_metadata, int fd,
			   char *buf, const struct devexcl_probe_stats *st0,
			   const char *by)
{
	const long n = HPAGE_SIZE / psize();
	struct devexcl_probe_stats st;

	EXPECT_EQ(COLLAPSE_NEXCL,
		  pm_exclusive(buf + COLLAPSE_FIRST * psize(), COLLAPSE_NEXCL)) {
		TH_LOG("%s faulted device-exclusive entries back in",
		       by);
	}
	EXPECT_EQ(n - COLLAPSE_NEXCL, pm_present(buf, n));
	EXPECT_EQ(0, anon_huge_kb(buf)) {
		TH_LOG("%s collapsed the range into a THP", by);
	}
	ASSERT_EQ(0, probe_stats(fd, &st));
	EXPECT_EQ(st0->invalidations, st.invalidations) {
		TH_LOG("%s revoked the device's access (%llu invalidations)",
		       by, (unsigned long long)(st.invalidations -
						st0->invalidations));
	}
}

TEST_F(conc, collapse_scan_leaves_device_exclusive_entries_alone)
{
	const size_t ps = psize();
	const long n = HPAGE_SIZE / ps;
	struct devexcl_probe_exclusive ex;
	struct devexcl_probe_stats st0;
	bool tried = false;
	char mode[64];
	char *map, *buf;
	int ret, err;

	NEED_DEVICE();
	map = mmap(NULL, 2 * HPAGE_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, map);
	buf = hpage_align(map);
	/*
	 * Order-0 pages, so that every line reaches the swap-in: on 5.10
	 * series that drop the mapcount of an exclusive entry (before 0020a),
	 * a PTE-mapped THP failed khugepaged's refcount check first.
	 */
	ASSERT_EQ(0, madvise(buf, HPAGE_SIZE, MADV_NOHUGEPAGE));
	fill_pattern(buf, HPAGE_SIZE, COLLAPSE_SEED);
	ASSERT_EQ(0, probe_exclusive(self->fd, buf + COLLAPSE_FIRST * ps,
				     COLLAPSE_NEXCL, &ex));
	ASSERT_EQ(COLLAPSE_NEXCL, (int)ex.made);
	ASSERT_EQ(COLLAPSE_NEXCL,
		  pm_exclusive(buf + COLLAPSE_FIRST * ps, COLLAPSE_NEXCL));
	ASSERT_EQ(0, probe_stats(self->fd, &st0));
	/* From here on the range may be collapsed (registers it with khugepaged). */
	ASSERT_EQ(0, madvise(buf, HPAGE_SIZE, MADV_HUGEPAGE));

	/* MADV_COLLAPSE: a length of 0 succeeds where the advice exists (6.1+). */
	if (madvise(buf, 0, MADV_COLLAPSE) == 0) {
		tried = true;
		ret = madvise(buf, HPAGE_SIZE, MADV_COLLAPSE);
		err = ret ? errno : 0;
		TH_LOG("MADV_COLLAPSE: %s (expected: EINVAL, the scan stops at the first exclusive entry)",
		       ret ? strerror(err) : "collapsed");
		EXPECT_NE(0, ret);
		collapse_check(_metadata, self->fd, buf, &st0, "MADV_COLLAPSE");
	}

	if (thp_usable(mode, sizeof(mode))) {
		ret = khugepaged_two_full_scans();
		TH_LOG("khugepaged (THP %s): %d full scans", mode, ret);
		if (ret != -ENOENT) {
			tried = true;
			ASSERT_LE(2, ret) {
				TH_LOG("khugepaged did not complete two full scans in %d s",
				       KHP_WAIT_S);
			}
			collapse_check(_metadata, self->fd, buf, &st0, "khugepaged");
		}
	}
	if (!tried) {
		munmap(map, 2 * HPAGE_SIZE);
		SKIP(return, "no MADV_COLLAPSE and no khugepaged (THP %s)", mode);
	}

	ASSERT_EQ(-1, check_pattern(buf, HPAGE_SIZE, COLLAPSE_SEED));
	ASSERT_EQ(n, pm_present(buf, n));
	ASSERT_EQ(0, munmap(map, 2 * HPAGE_SIZE));
}

/*
 * Two processes, one memory: after fork() parent and child map the same
 * anonymous pages (a THP where THP is usable) until one of them writes.
 * Both call the API at once on overlapping ranges of it, each through a
 * context (and notifier) of its own, for TWOPROC_SECONDS; each conversion
 * breaks COW in its own mm.  Neither may hang, both must make pages
 * exclusive, and each must still read the data it inherited.
 */
#define TWOPROC_SECONDS	4
#define TWOPROC_SEED	61

static int twoproc_loop(const char *api, char *buf, unsigned long first,
			unsigned long n)
{
	const size_t ps = psize();
	struct devexcl_probe_exclusive ex;
	unsigned long made = 0, calls = 0;
	double end = now_s() + TWOPROC_SECONDS;
	int fd = probe_open(api), ret;

	if (fd < 0)
		return CHILD_FAIL;
	while (now_s() < end) {
		/* the whole window, then page by page from the other end */
		ret = probe_exclusive(fd, buf + first * ps, n, &ex);
		if (ret && ret != -EBUSY) {
			printf("# EXCLUSIVE [%lu, %lu): %s\n", first, first + n,
			       strerror(-ret));
			return CHILD_FAIL;
		}
		made += ret ? 0 : ex.made;
		calls++;
		if (check_pattern(buf, HPAGE_SIZE, TWOPROC_SEED) != -1) {
			printf("# pid %d: data changed\n", getpid());
			return CHILD_FAIL;
		}
	}
	printf("# pid %d: pages [%lu, %lu): %lu calls made %lu pages exclusive\n",
	       getpid(), first, first + n, calls, made);
	close(fd);
	return made ? CHILD_OK : CHILD_FAIL;
}

static int twoproc_child(void *p)
{
	const size_t np = HPAGE_SIZE / psize();
	char *map, *buf;
	int status, rc;
	pid_t pid;

	map = map_private(2 * HPAGE_SIZE);
	if (map == MAP_FAILED)
		return CHILD_FAIL;
	buf = hpage_align(map);
	madvise(buf, HPAGE_SIZE, MADV_HUGEPAGE);
	fill_pattern(buf, HPAGE_SIZE, TWOPROC_SEED);
	printf("# AnonHugePages before fork(): %ld kB\n", anon_huge_kb(buf));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return CHILD_FAIL;
	if (pid == 0) {
		rc = twoproc_loop(p, buf, np / 4, np / 2);	/* [1/4, 3/4) */
		fflush(NULL);
		_exit(rc);
	}
	rc = twoproc_loop(p, buf, 0, np / 2);			/* [0, 1/2) */
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != CHILD_OK)
		rc = CHILD_FAIL;
	return rc;
}

TEST_F(conc, two_processes_on_inherited_memory_overlapping_ranges)
{
	int rc;

	NEED_DEVICE();
	rc = run_child(twoproc_child, (void *)variant->name,
		       TWOPROC_SECONDS + 40);
	ASSERT_NE(CHILD_HUNG, rc) {
		TH_LOG("the two processes did not finish in %d s",
		       TWOPROC_SECONDS + 40);
	}
	ASSERT_EQ(CHILD_OK, rc);
}

TEST_HARNESS_MAIN
