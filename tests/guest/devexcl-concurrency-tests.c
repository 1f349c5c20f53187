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
 * blocked tasks in the console log as well (ci/scan-log fails the run).
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

/* Exit codes of a worker child (run_child()). */
#define CHILD_OK		0
#define CHILD_FAIL		1
#define CHILD_HUNG		-1	/* killed at the deadline */

static double now_s(void)
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
static int run_child(int (*fn)(void *), void *arg, double deadline_s)
{
	double end = now_s() + deadline_s;
	int status;
	pid_t pid, w;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return CHILD_FAIL;
	if (pid == 0)
		_exit(fn(arg));
	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0)
			return CHILD_FAIL;
		if (now_s() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return CHILD_HUNG;
		}
		usleep(20000);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return CHILD_FAIL;
}

FIXTURE(conc) {
	int fd;
	bool skipped;	/* 5.10's harness runs the test after a setup SKIP */
};

FIXTURE_VARIANT(conc) {
	const char *name;
	__u32 id;
};

FIXTURE_VARIANT_ADD(conc, range) {
	.name = "range",
	.id = DEVEXCL_PROBE_API_RANGE,
};

FIXTURE_VARIANT_ADD(conc, page) {
	.name = "page",
	.id = DEVEXCL_PROBE_API_PAGE,
};

FIXTURE_SETUP(conc)
{
	struct devexcl_probe_stats st;

	self->fd = probe_open(variant->name);
	if (self->fd == -ENODEV) {
		ASSERT_FALSE(cmdline_expects(variant->name)) {
			TH_LOG("expected API %s but its probe module is not loaded",
			       variant->name);
		}
		self->skipped = true;
		SKIP(return, "API %s not provided by this kernel",
		     variant->name);
	}
	ASSERT_GE(self->fd, 0) {
		TH_LOG("open the %s probe: %s", variant->name,
		       strerror(-self->fd));
	}
	ASSERT_EQ(0, probe_stats(self->fd, &st));
	ASSERT_EQ(variant->id, st.api);
}

FIXTURE_TEARDOWN(conc)
{
	if (self->fd >= 0)
		close(self->fd);
}

#define NEED_DEVICE() do {		\
	if (self->skipped)		\
		return;			\
} while (0)

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
	volatile int errors;
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
	int fd = open(SPLIT_HPAGES, O_WRONLY | O_CLOEXEC);

	for (;;) {
		pthread_barrier_wait(&st->round_start);
		if (st->done)
			break;
		while (!st->stop && fd >= 0) {
			if (pwrite(fd, "1", 1, 0) == 1)
				st->splits++;
			usleep(1000);
		}
		pthread_barrier_wait(&st->round_end);
	}
	if (fd >= 0)
		close(fd);
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
	double end = now_s() + STRESS_SECONDS;
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

	TH_LOG("%ld rounds: %ld calls made %ld pages exclusive, %ld reads, %ld splits",
	       rounds, st.calls, st.made, st.reads, st.splits);
	ASSERT_EQ(0, st.errors);
	ASSERT_EQ(0, st.bad_reads);
	ASSERT_GT(st.made, 0);
}

TEST_HARNESS_MAIN
