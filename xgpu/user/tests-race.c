// SPDX-License-Identifier: GPL-2.0
/*
 * xgpu selftest: real concurrency: many threads on shared counters, two
 * contexts on one mm, fork/munmap/mremap/mprotect/close racing with ops,
 * THP tail pages, exit with work in flight, a descriptor passed to another
 * process over SCM_RIGHTS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xgpu-test.h"

/* errnos the UAPI documents for ops on memory that changes under them */
static bool racy_errno_ok(int e)
{
	switch (e) {
	case 0:
	case EFAULT:
	case EACCES:
	case ENXIO:
	case EAGAIN:
	case EBUSY:
	case EBADF:
		return true;
	}
	return false;
}

/* ---- many threads, shared counters --------------------------------- */

#define NCTR	8

struct mt {
	uint64_t *ctr;		/* NCTR words on two pages, and the cmpxchg word */
	int stop;		/* READ_ONCE()/WRITE_ONCE() */
	int err;
};

struct mt_arg {
	struct mt *m;
	int fd;
	uint64_t adds;
	uint64_t incs;
};

static uint64_t *mt_word(struct mt *m, int i)
{
	return &m->ctr[(i % 2) * (PAGE / 8) + i / 2];
}

static void *mt_worker(void *p)
{
	struct mt_arg *a = p;
	struct mt *m = a->m;
	struct xgpu_atomic_op ops[32];
	uint64_t *lock = &m->ctr[2 * PAGE / 8];
	int i, ret;

	for (i = 0; i < 32; i++)
		ops[i] = (struct xgpu_atomic_op){
			.addr = (uintptr_t)mt_word(m, i % NCTR), .value = 1,
			.op = XGPU_OP_ADD, .width = 8 };
	while (!READ_ONCE(m->stop)) {
		uint32_t done = 0;
		uint64_t cur;

		ret = xgpu_atomic(a->fd, ops, 32, &done);
		a->adds += done;
		if (ret && ret != -EAGAIN) {
			WRITE_ONCE(m->err, ret);
			break;
		}
		/* contended cmpxchg increment: read, then cmpxchg until it sticks */
		ret = xgpu_atomic1(a->fd, XGPU_OP_ADD, 8, lock, 0, 0, &cur);
		while (!ret) {
			uint64_t old;

			ret = xgpu_atomic1(a->fd, XGPU_OP_CMPXCHG, 8, lock,
					   cur + 1, cur, &old);
			if (!ret && old == cur) {
				a->incs++;
				break;
			}
			cur = old;
		}
		if (ret && ret != -EAGAIN) {
			WRITE_ONCE(m->err, ret);
			break;
		}
	}
	return NULL;
}

static int test_many_threads_atomic_shared_counters_exact(void)
{
	int n = 2 * opt_threads + 2, i;
	struct mt_arg args[130];
	pthread_t th[130];
	struct mt m = { 0 };
	uint64_t adds = 0, incs = 0, sum = 0;

	NEED_ATOMICS();
	m.ctr = map_anon(HPAGE, 0);
	CHECK(m.ctr, "mmap");
	/* half share the tool's descriptor, half have their own */
	for (i = 0; i < n; i++) {
		args[i] = (struct mt_arg){ .m = &m,
			.fd = i % 2 ? xgpu_open() : dev_fd };
		CHECK(args[i].fd >= 0, "open");
		pthread_create(&th[i], NULL, mt_worker, &args[i]);
	}
	usleep(opt_seconds * 1e6);
	WRITE_ONCE(m.stop, 1);
	for (i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		adds += args[i].adds;
		incs += args[i].incs;
		if (args[i].fd != dev_fd)
			close(args[i].fd);
	}
	for (i = 0; i < NCTR; i++)
		sum += *mt_word(&m, i);
	printf("# %d threads: %llu adds, %llu cmpxchg increments\n", n,
	       (unsigned long long)adds, (unsigned long long)incs);
	CHECK(!m.err, "ATOMIC failed: %d (%s)", m.err, strerror(-m.err));
	CHECK(sum == adds, "counters sum %llu, want %llu", (unsigned long long)sum,
	      (unsigned long long)adds);
	CHECK(m.ctr[2 * PAGE / 8] == incs, "cmpxchg word %llu, want %llu",
	      (unsigned long long)m.ctr[2 * PAGE / 8], (unsigned long long)incs);
	CHECK(adds && incs, "no progress");
	munmap(m.ctr, HPAGE);
	return T_PASS;
}

/* ---- two contexts on one mm ---------------------------------------- */

struct two {
	uint64_t *w;
	int fd;
	int stop;
	uint64_t n;
	uint64_t eagain;
	int err;
};

static void *two_worker(void *p)
{
	struct two *t = p;

	while (!READ_ONCE(t->stop)) {
		int ret = xgpu_atomic1(t->fd, XGPU_OP_ADD, 8, t->w, 1, 0, NULL);

		if (!ret) {
			t->n++;
		} else if (ret == -EAGAIN) {
			t->eagain++;
		} else {
			t->err = ret;
			break;
		}
	}
	return NULL;
}

static int test_two_contexts_one_mm_take_pages_from_each_other(void)
{
	struct two t[2];
	pthread_t th[2];
	uint64_t *w, bm[1];
	int i, fd2;

	NEED_ATOMICS();
	w = map_anon(HPAGE, 0);
	fd2 = xgpu_open();
	CHECK(w && fd2 >= 0, "setup");
	/* one thread: alternate the contexts on one page */
	for (i = 0; i < 200; i++)
		CHECK(!xgpu_atomic1(i % 2 ? fd2 : dev_fd, XGPU_OP_ADD, 8, w, 1, 0,
				    NULL), "ATOMIC %d", i);
	CHECK(*w == 200, "value %llu after 200 alternating adds",
	      (unsigned long long)*w);
	CHECK(xgpu_query(dev_fd, w, 1, bm) + xgpu_query(fd2, w, 1, bm) <= 2,
	      "QUERY");
	/* two threads, one per context, at once */
	for (i = 0; i < 2; i++) {
		t[i] = (struct two){ .w = w, .fd = i ? fd2 : dev_fd };
		pthread_create(&th[i], NULL, two_worker, &t[i]);
	}
	usleep(opt_seconds * 5e5);
	WRITE_ONCE(t[0].stop, 1);
	WRITE_ONCE(t[1].stop, 1);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	close(fd2);
	/* each EAGAIN: a second of conversions lost to the other context */
	printf("# two contexts on one page at once: %llu and %llu adds, %llu and %llu EAGAIN\n",
	       (unsigned long long)t[0].n, (unsigned long long)t[1].n,
	       (unsigned long long)t[0].eagain, (unsigned long long)t[1].eagain);
	CHECK(!t[0].err && !t[1].err, "ATOMIC failed: %d %d", t[0].err, t[1].err);
	CHECK(*w == 200 + t[0].n + t[1].n, "value %llu, want %llu",
	      (unsigned long long)*w, (unsigned long long)(200 + t[0].n + t[1].n));
	CHECK(t[0].n && t[1].n, "a context made no progress");
	munmap(w, HPAGE);
	return T_PASS;
}

/* ---- ops racing with fork, munmap, mremap, mprotect, close ---------- */

#define RACE_PAGES	64

struct race {
	char *arena;		/* RACE_PAGES pages; the chaos thread changes them */
	char *scratch;		/* mremap target */
	int fds[2];		/* the chaos thread closes and reopens fds[1] */
	int stop;
	int bad;		/* undocumented errno */
	int bad_op;
	long calls, errs;
	long forks, fork_fail;
	/* the chaos thread's first failed syscall, or hole left in the arena */
	const char *chaos_fail;
	int chaos_errno;
	long chaos_round;
};

/* 0 if all of [a, a + len) is mapped, else the errno of mincore() */
static int mapped(void *a, size_t len)
{
	unsigned char vec[RACE_PAGES];

	if (len > RACE_PAGES * PAGE)
		return E2BIG;
	return mincore(a, len, vec) ? errno : 0;
}

/* Record the chaos thread's first failed call; errno is the call's. */
static void chaos_call(struct race *r, const char *what, bool ok)
{
	if (!ok && !r->chaos_fail) {
		r->chaos_fail = what;
		r->chaos_errno = errno;
	}
}

static void *race_ops(void *p)
{
	struct race *r = p;
	unsigned int seed = (uintptr_t)p ^ (unsigned int)pthread_self();
	static uint64_t bm[RACE_PAGES / 64];
	char buf[256];

	while (!READ_ONCE(r->stop)) {
		int op = rand_r(&seed) % 5, fd = READ_ONCE(r->fds[rand_r(&seed) % 2]);
		size_t pg = rand_r(&seed) % RACE_PAGES;
		char *a = r->arena + pg * PAGE;
		int ret;

		switch (op) {
		case 0:
			ret = xgpu_atomic1(fd, XGPU_OP_ADD, 8, a + 64, 1, 0, NULL);
			break;
		case 1:
			ret = xgpu_acquire(fd, a, 1 + rand_r(&seed) % (RACE_PAGES - pg));
			break;
		case 2:
			ret = xgpu_release(fd, r->arena, RACE_PAGES);
			break;
		case 3:
			ret = xgpu_read(fd, buf, a + 100, sizeof(buf));
			break;
		default:
			ret = xgpu_query(fd, r->arena, RACE_PAGES, bm);
			break;
		}
		if (ret > 0)
			ret = 0;
		__atomic_fetch_add(&r->calls, 1, __ATOMIC_RELAXED);
		if (ret)
			__atomic_fetch_add(&r->errs, 1, __ATOMIC_RELAXED);
		if (!racy_errno_ok(-ret)) {
			WRITE_ONCE(r->bad, ret);
			WRITE_ONCE(r->bad_op, op);
		}
	}
	return NULL;
}

static void race_chaos(struct race *r, double end)
{
	unsigned int seed = 1;
	int status;

	while (now() < end && !r->chaos_fail) {
		size_t pg = rand_r(&seed) % (RACE_PAGES - 4);
		char *a = r->arena + pg * PAGE;
		int fd, e;
		pid_t pid;

		r->chaos_round++;
		switch (rand_r(&seed) % 6) {
		case 0:
			chaos_call(r, "munmap(a, 2 pages)", !munmap(a, 2 * PAGE));
			chaos_call(r, "mmap(a, 2 pages, MAP_FIXED)",
				   mmap(a, 2 * PAGE, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
					-1, 0) == a);
			break;
		case 1:
			/*
			 * The arena's VMAs split and stop merging as pages move
			 * (anon_vma and pgoff differ): a two-page range can span
			 * two VMAs, and mremap() refuses that with EFAULT, after
			 * it has unmapped the MREMAP_FIXED target.  So do not
			 * move scratch back then: scratch has no pages there
			 * (an earlier round moved them away), and that mremap()
			 * would unmap a and then fail the same way.
			 */
			if (mremap(a, 2 * PAGE, 2 * PAGE,
				   MREMAP_MAYMOVE | MREMAP_FIXED, r->scratch) == MAP_FAILED) {
				chaos_call(r, "mremap(a -> scratch)", errno == EFAULT);
				break;
			}
			chaos_call(r, "mremap(scratch -> a)",
				   mremap(r->scratch, 2 * PAGE, 2 * PAGE,
					  MREMAP_MAYMOVE | MREMAP_FIXED, a) == a);
			break;
		case 2:
			chaos_call(r, "mprotect(a, 4 pages, PROT_READ)",
				   !mprotect(a, 4 * PAGE, PROT_READ));
			chaos_call(r, "mprotect(a, 4 pages, PROT_READ | PROT_WRITE)",
				   !mprotect(a, 4 * PAGE, PROT_READ | PROT_WRITE));
			break;
		case 3:
			r->forks++;
			pid = fork();
			if (!pid)
				_exit(0);
			if (pid < 0)
				r->fork_fail++;
			else
				waitpid(pid, &status, 0);
			break;
		case 4:
			fd = r->fds[1];
			WRITE_ONCE(r->fds[1], xgpu_open());
			close(fd);
			break;
		default:
			e = mapped(a, PAGE);
			if (e) {
				errno = e;
				chaos_call(r, "mincore(a) before a CPU write", 0);
				break;
			}
			a[rand_r(&seed) % PAGE]++;
			break;
		}
		e = mapped(r->arena, RACE_PAGES * PAGE);
		if (e) {
			errno = e;
			chaos_call(r, "mincore(arena): a hole after a successful op", 0);
		}
	}
}

/* what makes a race run count: the ops' calls */
#define RACE_MIN_CALLS	100

static int race_run(int thp, struct race *r)
{
	pthread_t th[64];
	int i, n = opt_threads + 1;
	double t0;

	r->arena = map_anon(HPAGE, thp);
	r->scratch = map_anon(HPAGE, 0);
	r->fds[0] = dev_fd;
	r->fds[1] = xgpu_open();
	if (!r->arena || !r->scratch || r->fds[1] < 0)
		return -1;
	for (i = 0; i < n; i++)
		pthread_create(&th[i], NULL, race_ops, r);
	t0 = now();
	race_chaos(r, t0 + opt_seconds);
	/*
	 * A slow guest (arm64 under TCG: 63 calls in 2 s) races on until the
	 * ops have made RACE_MIN_CALLS calls, for at most 5 times as long.
	 */
	while (__atomic_load_n(&r->calls, __ATOMIC_RELAXED) <= RACE_MIN_CALLS &&
	       now() < t0 + 5 * opt_seconds && !r->chaos_fail)
		race_chaos(r, now() + opt_seconds / 4);
	WRITE_ONCE(r->stop, 1);
	for (i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	close(r->fds[1]);
	munmap(r->arena, HPAGE);
	munmap(r->scratch, HPAGE);
	return 0;
}

static int test_ops_race_munmap_mremap_mprotect_close_fork(void)
{
	struct race r[2] = { 0 };
	int thp;

	NEED_ATOMICS();
	for (thp = 0; thp < 2; thp++) {
		CHECK(!race_run(thp, &r[thp]), "setup");
		printf("# %s: %ld calls, %ld errors (documented), %ld forks\n",
		       thp ? "thp" : "nothp", r[thp].calls, r[thp].errs, r[thp].forks);
		CHECK(!r[thp].chaos_fail, "%s: round %ld: %s", r[thp].chaos_fail,
		      r[thp].chaos_round, strerror(r[thp].chaos_errno));
		CHECK(!r[thp].bad, "op %d: undocumented errno %d (%s)", r[thp].bad_op,
		      -r[thp].bad, strerror(-r[thp].bad));
		CHECK(r[thp].calls > RACE_MIN_CALLS, "only %ld calls in %.0f s", r[thp].calls,
		      5 * opt_seconds);
	}
	return T_PASS;
}

/*
 * fork() copies device-exclusive entries by restoring them, which needs the
 * page lock: a driver that keeps a page locked longer than it must makes
 * fork() of its client fail with ENOMEM.
 */
struct forker {
	uint64_t *mem;
	int stop;
	int err;
};

static void *fork_ops(void *p)
{
	struct forker *f = p;
	struct xgpu_atomic_op ops[16];
	int i, ret;

	for (i = 0; i < 16; i++)
		ops[i] = (struct xgpu_atomic_op){
			.addr = (uintptr_t)&f->mem[i * PAGE / 8], .value = 1,
			.op = XGPU_OP_ADD, .width = 8 };
	while (!READ_ONCE(f->stop)) {
		ret = xgpu_atomic(dev_fd, ops, 16, NULL);
		if (ret && ret != -EAGAIN) {
			f->err = ret;
			break;
		}
	}
	return NULL;
}

#define FORK_MAX_THREADS 64

/*
 * fork() for opt_seconds while @nthreads threads run ATOMIC on 16 pages.
 * Only a page the driver keeps locked makes it fail here: reclaim,
 * compaction or migration could lock one too, and the guests run these
 * tests without memory pressure.
 */
static int fork_while_atomics_run(int nthreads)
{
	struct forker f = { 0 };
	long forks = 0, failed = 0;
	pthread_t th[FORK_MAX_THREADS];
	int i, started, first = 0, perr = 0;
	double end;

	f.mem = map_anon(16 * PAGE, 0);
	CHECK(f.mem, "mmap");
	for (started = 0; started < nthreads; started++) {
		perr = pthread_create(&th[started], NULL, fork_ops, &f);
		if (perr)
			break;
	}
	end = perr ? 0 : now() + opt_seconds;
	while (now() < end) {
		pid_t pid = fork();

		forks++;
		if (!pid)
			_exit(0);
		if (pid < 0) {
			if (!failed)
				first = errno;
			failed++;
			continue;
		}
		waitpid(pid, NULL, 0);
	}
	WRITE_ONCE(f.stop, 1);
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	munmap(f.mem, 16 * PAGE);
	CHECK(!perr, "pthread_create (thread %d of %d): %s", started + 1,
	      nthreads, strerror(perr));
	printf("# %d threads: %ld forks, %ld failed\n", nthreads, forks, failed);
	CHECK(!f.err, "ATOMIC failed: %d", f.err);
	CHECK(!failed, "%ld of %ld forks failed (first: %s)", failed, forks,
	      strerror(first));
	return T_PASS;
}

static int test_fork_never_fails_while_atomics_run(void)
{
	NEED_ATOMICS();
	return fork_while_atomics_run(2);
}

/*
 * The same with 3 converting threads per CPU this process may use, as on a
 * loaded machine: a thread that waits for the driver's lock, or is woken
 * and waits for a CPU, stays in the driver's critical section for longer.
 * A driver that holds the page lock there without the mmap_lock leaves
 * pages locked while fork() copies them.
 */
static int test_fork_never_fails_with_more_threads_than_cpus(void)
{
	cpu_set_t set;
	int ncpu = 1;

	NEED_ATOMICS();
	if (!sched_getaffinity(0, sizeof(set), &set))
		ncpu = CPU_COUNT(&set);
	if (ncpu * 3 > FORK_MAX_THREADS)
		return t_skip("%d CPUs: more than %d threads would be needed",
			      ncpu, FORK_MAX_THREADS);
	return fork_while_atomics_run(ncpu * 3);
}

/* ---- THP tail pages ------------------------------------------------ */

/* AnonHugePages of the mapping holding @p, in kB */
static long thp_kb(void *p)
{
	char line[256];
	unsigned long lo, hi;
	bool in = false;
	long kb = -1;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' '))
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (in && !strncmp(line, "AnonHugePages:", 14))
			kb = atol(line + 14);
	}
	fclose(f);
	return kb;
}

/*
 * Every API on a tail page of a THP: on the devexcl kernels (and 6.15+)
 * it works; the stock range API (5.14-6.14) refuses THP tail pages, which
 * must come back at once as EBUSY, not as EAGAIN after futile retries.
 */
static int test_thp_tail_pages_every_api(void)
{
	struct utsname u;
	char *mem, buf[64];
	uint64_t bm[1], old;
	bool devexcl;
	double t0, t;
	int ret;

	NEED_ATOMICS();
	uname(&u);
	devexcl = strstr(u.release, "devexcl");
	mem = map_anon(HPAGE, 1);
	CHECK(mem, "mmap");
	if (thp_kb(mem) < 2048) {
		munmap(mem, HPAGE);
		return t_skip("no THP backs the buffer (transparent_hugepage=%s?)",
			      "never");
	}
	t0 = now();
	ret = xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem + 5 * PAGE + 8, 3, 0, &old);
	t = now() - t0;
	printf("# ATOMIC on a THP tail page: %d (%s) in %.3f s; kernel %s\n", ret,
	       strerror(-ret), t, u.release);
	CHECK(t < 1.0, "ATOMIC on a THP tail page took %.2f s", t);
	if (ret == -EBUSY) {
		CHECK(!devexcl, "EBUSY on a devexcl kernel: its THP handling is broken");
		CHECK(mem[5 * PAGE + 8] == 0, "EBUSY but memory changed");
		CHECK_ERR(xgpu_acquire(dev_fd, mem + 7 * PAGE, 1), EBUSY);
		munmap(mem, HPAGE);
		return T_PASS;
	}
	CHECK(!ret, "ATOMIC on a THP tail page: %d (%s), want 0 or EBUSY", ret,
	      strerror(-ret));
	CHECK(mem[5 * PAGE + 8] == 3, "value %d", mem[5 * PAGE + 8]);
	CHECK(xgpu_acquire(dev_fd, mem + 6 * PAGE, 8) == 8, "ACQUIRE tails");
	CHECK(xgpu_query(dev_fd, mem, 64, bm) >= 8, "QUERY %llx",
	      (unsigned long long)bm[0]);
	CHECK(xgpu_release(dev_fd, mem, 64) >= 8, "RELEASE");
	CHECK(!xgpu_write(dev_fd, mem + 9 * PAGE, "tail", 5), "WRITE tail");
	CHECK(!xgpu_read(dev_fd, buf, mem + 9 * PAGE, 5) && !strcmp(buf, "tail"),
	      "READ tail");
	munmap(mem, HPAGE);
	return T_PASS;
}

/* ---- unrelated changes elsewhere in the mm -------------------------- */

static void *unrelated_churn(void *p)
{
	char *o = p;
	int *stop = (int *)(o + PAGE * 2);
	unsigned long i = 0;

	while (!READ_ONCE(*stop))
		mprotect(o, PAGE, (i++ & 1) ? PROT_READ : PROT_READ | PROT_WRITE);
	return NULL;
}

/*
 * mprotect() on an unrelated mapping, 1 GiB away, must not make ACQUIRE
 * retry until it fails: the device watches the ranges it uses, not the
 * whole address space.
 */
static int test_acquire_unaffected_by_unrelated_mprotect(void)
{
	char *mem, *other;
	double end, worst = 0, base = 0;
	long calls = 0, eagain = 0;
	struct xgpu_stats s0, s1;
	pthread_t th;
	int *stop, k;

	NEED_ATOMICS();
	mem = map_anon(256 * PAGE, 0);
	other = mmap((char *)mem + (1UL << 30), 3 * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem && other != MAP_FAILED, "mmap");
	stop = (int *)(other + 2 * PAGE);
	/*
	 * What one ACQUIRE of these pages costs on this machine without the
	 * churn (the slowest of three): an arm64 guest under TCG needs 0.25 s
	 * and more, an x86_64 one a tenth of that.
	 */
	for (k = 0; k < 3; k++) {
		double t0 = now();
		int64_t n = xgpu_acquire(dev_fd, mem, 256);
		size_t i;

		CHECK(n == 256, "ACQUIRE without the churn: %lld", (long long)n);
		if (now() - t0 > base)
			base = now() - t0;
		for (i = 0; i < 256; i++)
			mem[i * PAGE]++;
	}
	pthread_create(&th, NULL, unrelated_churn, other);
	xgpu_stats(dev_fd, &s0);
	end = now() + opt_seconds;
	while (now() < end) {
		double t0 = now();
		int64_t n = xgpu_acquire(dev_fd, mem, 256);
		size_t i;

		if (now() - t0 > worst)
			worst = now() - t0;
		calls++;
		if (n == -EAGAIN)
			eagain++;
		else if (n != 256)
			break;
		for (i = 0; i < 256; i++)
			mem[i * PAGE]++;
	}
	xgpu_stats(dev_fd, &s1);
	WRITE_ONCE(*stop, 1);
	pthread_join(th, NULL);
	munmap(mem, 256 * PAGE);
	munmap(other, 3 * PAGE);
	printf("# %ld ACQUIREs of 256 pages beside an mprotect loop: ", calls);
	printf("%ld EAGAIN, %llu retries, slowest %.3f s (%.3f s without the churn)\n", eagain,
	       (unsigned long long)(s1.retries - s0.retries), worst, base);
	/* a stray invalidation of our own range (khugepaged) may cost a few */
	CHECK(s1.retries - s0.retries <= (uint64_t)calls,
	      "%llu retries in %ld calls: unrelated invalidations hit the acquisitions",
	      (unsigned long long)(s1.retries - s0.retries), calls);
	CHECK(!eagain, "%ld of %ld ACQUIREs failed with EAGAIN", eagain, calls);
	/*
	 * How long an ACQUIRE took is printed, not bounded.  The bound was
	 * four times the unloaded cost, and never less than 1 s, set when the
	 * x86_64 guests ran on one CPU (0.40-0.45 s then).  With 2 CPUs the
	 * churn runs beside the ACQUIRE for real and it took 0.85-2.14 s
	 * (0.08-0.19 s unloaded; 5.10.223 and arm64 6.12.107, 2026-12-06),
	 * with xgpu before and after 255153b alike (interleaved boots of
	 * 5.10.223 beside a CI run: 1.78, 1.59, 2.14 s before, 1.76, 1.64,
	 * 2.09 s after): a cost of SMP guests under TCG, not understood yet,
	 * that no bound here tells from a regression.
	 * What the test is about, invalidations of other ranges making
	 * ACQUIRE retry, the two checks above see directly.
	 */
	return T_PASS;
}

/* ---- exit with work in flight -------------------------------------- */

static void *exit_ops(void *p)
{
	char *mem = p;

	for (;;) {
		xgpu_acquire(dev_fd, mem, 256);
		mem[0]++;
	}
	return NULL;
}

static int test_exit_with_job_in_flight(void)
{
	int i, status;
	double t0;
	pid_t pid;

	NEED_ATOMICS();
	for (i = 0; i < 4; i++) {
		fflush(stdout);
		pid = fork();
		if (!pid) {
			char *mem = map_anon(256 * PAGE, i & 1);
			pthread_t th;
			int fd = xgpu_open();

			if (!mem || fd < 0)
				_exit(11);
			dev_fd = fd;
			pthread_create(&th, NULL, exit_ops, mem);
			pthread_create(&th, NULL, exit_ops, mem);
			usleep(100000 + 50000 * i);
			if (i >= 2)
				close(fd);	/* the threads' ioctls hold the file */
			_exit(0);
		}
		CHECK(pid > 0, "fork");
		t0 = now();
		waitpid(pid, &status, 0);
		CHECK(WIFEXITED(status) && !WEXITSTATUS(status), "child %d status %#x",
		      i, status);
		CHECK(now() - t0 < 3, "child %d took %.2f s to exit", i, now() - t0);
	}
	return T_PASS;
}

/* ---- a descriptor passed over SCM_RIGHTS ---------------------------- */

static int send_fd(int sock, int fd)
{
	char c = 'f', cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &c, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &mh, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char c, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &c, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &mh, 0) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/*
 * The child opens, makes 64 pages device-owned (where the kernel has
 * device atomics), passes the descriptor and closes its own copy; the
 * receiver cannot use it (EBADF: another mm) and its close() is the last
 * one, so the context is torn down in the receiver while the owner's mm
 * lives on.  The owner's data must be intact and its pages back to normal
 * (nothing left charged: VmPin 0).  Without device atomics (Debian's
 * kernels) the descriptor is passed with no pages device-owned: the
 * EBADF and the teardown from another process are tested all the same.
 */
static int test_fd_passed_over_scm_rights(void)
{
	int sv[2], fd, status;
	struct xgpu_info info;
	char c;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return t_skip("socketpair(AF_UNIX): %s (kernel without CONFIG_UNIX)",
			      strerror(errno));
	fflush(stdout);
	pid = fork();
	if (!pid) {
		uint64_t *mem = map_anon(64 * PAGE, 0);
		char line[128];
		long pin = -1;
		FILE *f;
		int i, cfd = xgpu_open();

		if (!mem || cfd < 0)
			_exit(11);
		for (i = 0; i < 64; i++)
			mem[i * PAGE / 8] = i;
		if (atomics() && xgpu_acquire(cfd, mem, 64) != 64)
			_exit(12);
		if (send_fd(sv[1], cfd))
			_exit(12);
		close(cfd);
		if (read(sv[1], &c, 1) != 1)	/* the receiver closed it */
			_exit(13);
		for (i = 0; i < 64; i++)
			if (mem[i * PAGE / 8] != (uint64_t)i)
				_exit(14);
		f = fopen("/proc/self/status", "r");
		while (f && fgets(line, sizeof(line), f))
			if (!strncmp(line, "VmPin:", 6))
				pin = atol(line + 6);
		if (f)
			fclose(f);
		_exit(pin == 0 ? 0 : 15);
	}
	CHECK(pid > 0, "fork");
	fd = recv_fd(sv[0]);
	CHECK(fd >= 0, "recvmsg");
	CHECK_ERR(xgpu_info(fd, &info), EBADF);
	CHECK_ERR(xgpu_acquire(fd, &info, 1), EBADF);
	close(fd);
	CHECK(write(sv[0], "c", 1) == 1, "write");
	waitpid(pid, &status, 0);
	close(sv[0]);
	close(sv[1]);
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status),
	      "owner status %#x (14: data, 15: VmPin not 0 after the last close)",
	      status);
	printf("# passed with %s\n", atomics() ? "64 device-owned pages" :
	       "no device-owned pages (no device atomics in this kernel)");
	return T_PASS;
}

const struct xgpu_test tests_race[] = {
	TEST(test_many_threads_atomic_shared_counters_exact),
	TEST(test_two_contexts_one_mm_take_pages_from_each_other),
	TEST(test_ops_race_munmap_mremap_mprotect_close_fork),
	TEST(test_fork_never_fails_while_atomics_run),
	TEST(test_fork_never_fails_with_more_threads_than_cpus),
	TEST(test_acquire_unaffected_by_unrelated_mprotect),
	TEST(test_thp_tail_pages_every_api),
	TEST(test_exit_with_job_in_flight),
	TEST(test_fd_passed_over_scm_rights),
};

const size_t tests_race_n = ARRAY_SIZE(tests_race);
