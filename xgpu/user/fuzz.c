// SPDX-License-Identifier: GPL-2.0
/*
 * xgpu selftest: the ioctl fuzzer.
 *
 * FUZZ_THREADS threads issue random ioctls (valid, malformed, unknown) on
 * FUZZ_FDS shared descriptors over two arenas, one THP-backed and one of
 * 4 KiB pages, while a disruptor thread changes the arenas under them:
 * munmap and mmap again, mremap away and back, mprotect, MADV_DONTNEED,
 * fork (the child touches the arenas and must get EBADF from the
 * inherited descriptors), a descriptor replaced by a new open (dup2: the
 * old context is torn down while ioctls on it finish) and SIGUSR1 to the
 * workers (EINTR).  Every errno must be one the UAPI header documents for
 * that ioctl; the first other one fails the test, naming the call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xgpu-test.h"

#define FUZZ_THREADS	4
#define FUZZ_FDS	3
#define ARENA_LEN	(2 * HPAGE)	/* per arena; the upper half churns */
#define ZONE_LEN	(64 * PAGE)
#define NERR		140
#define FUZZ_STALL_S	60	/* no call finished for this long: stuck */

static const struct {
	const char *name;
	unsigned long cmd;
	size_t size;
	bool atomics;	/* documents the device-exclusive errnos */
	bool again;	/* documents EAGAIN */
} cmds[] = {
	{ "INFO", XGPU_IOC_INFO, sizeof(struct xgpu_info), false, false },
	{ "ATOMIC", XGPU_IOC_ATOMIC, sizeof(struct xgpu_atomic), true, true },
	{ "ACQUIRE", XGPU_IOC_ACQUIRE, sizeof(struct xgpu_range), true, true },
	{ "RELEASE", XGPU_IOC_RELEASE, sizeof(struct xgpu_range), false, false },
	{ "QUERY", XGPU_IOC_QUERY, sizeof(struct xgpu_range), false, false },
	{ "STATS", XGPU_IOC_STATS, sizeof(struct xgpu_stats), false, false },
	{ "READ", XGPU_IOC_READ, sizeof(struct xgpu_rw), false, true },
	{ "WRITE", XGPU_IOC_WRITE, sizeof(struct xgpu_rw), false, true },
};

#define NCMDS		((int)ARRAY_SIZE(cmds))
#define CMD_UNKNOWN	NCMDS	/* an ioctl number the module does not know */

/*
 * The errnos the UAPI header documents for @c: the common ones (EBADF only
 * in another mm: the fork child), ENOTTY for unknown ioctls, the
 * device-exclusive ones for ATOMIC/ACQUIRE, EAGAIN where documented.
 */
static bool documented(int c, int err)
{
	switch (err) {
	case EFAULT:
	case EINVAL:
	case EINTR:
	case ENOMEM:
		return c != CMD_UNKNOWN;
	case ENOTTY:
		return c == CMD_UNKNOWN;
	case EAGAIN:
		return c < NCMDS && cmds[c].again;
	case EOPNOTSUPP:
	case EACCES:
	case ENXIO:
	case EBUSY:
		return c < NCMDS && cmds[c].atomics;
	default:
		return false;
	}
}

static const char *errname(int e)
{
	static const char * const names[] = {
		[EFAULT] = "EFAULT", [EINVAL] = "EINVAL", [EINTR] = "EINTR",
		[ENOMEM] = "ENOMEM", [ENOTTY] = "ENOTTY", [EAGAIN] = "EAGAIN",
		[EOPNOTSUPP] = "EOPNOTSUPP", [EACCES] = "EACCES",
		[ENXIO] = "ENXIO", [EBUSY] = "EBUSY",
	};

	return e < (int)ARRAY_SIZE(names) && names[e] ? names[e] : "other";
}

static char *arena[2];		/* [0] 4 KiB pages, [1] THP */
static char *spare;		/* where mremap moves a zone to */
static int fds[FUZZ_FDS];	/* replaced by dup2() while in use */
static int stop;		/* READ_ONCE()/WRITE_ONCE() */
static int ndone;		/* workers finished; __atomic_add_fetch() */

/* the first undocumented errno: the test's failure (fail_lock) */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char fail_msg[200];

struct worker {
	pthread_t th;
	int id;
	long calls;
	long done;	/* calls made so far; __atomic_store_n() */
	uint64_t rnd;
	long errs[NERR];	/* [0]: success */
	struct xgpu_atomic_op ops[XGPU_MAX_BATCH + 2];
	uint64_t bitmap[XGPU_MAX_PAGES / 64 + 2];
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t fuzz_num(uint64_t *s, uint64_t typical)
{
	switch (rnd(s) % 6) {
	case 0:
		return rnd(s);
	case 1:
		return 0;
	case 2:
		return typical + 1;
	default:
		return rnd(s) % (typical + 1);
	}
}

/*
 * An address: mostly in one of the arenas, sometimes one that is never
 * mapped (so that no write the kernel makes lands outside the arenas).
 */
static uint64_t fuzz_addr(uint64_t *s)
{
	static const uint64_t bad[] = {
		0, 1, 4095, 0x800000000000ULL, 0xffff888000000000ULL, ~0ULL,
		~0ULL - 7,
	};
	char *a = arena[rnd(s) % 2];

	switch (rnd(s) % 10) {
	case 0:
		return bad[rnd(s) % ARRAY_SIZE(bad)];
	case 1:
		return (uintptr_t)a + rnd(s) % ARENA_LEN;
	default:
		return (uintptr_t)a + ((rnd(s) % ARENA_LEN) & ~7ULL);
	}
}

/* the bytes from @a to the end of its arena; 0 outside the arenas */
static uint64_t arena_room(uint64_t a)
{
	int i;

	for (i = 0; i < 2; i++)
		if (a >= (uintptr_t)arena[i] && a < (uintptr_t)arena[i] + ARENA_LEN)
			return (uintptr_t)arena[i] + ARENA_LEN - a;
	return 0;
}

/* one random call; returns its index in cmds[] (or CMD_UNKNOWN), errno */
static int fuzz_call(struct worker *w, int *err)
{
	uint64_t *s = &w->rnd;
	int c = rnd(s) % NCMDS, i, fd;
	unsigned long cmd = cmds[c].cmd;
	union {
		struct xgpu_info i;
		struct xgpu_atomic a;
		struct xgpu_range r;
		struct xgpu_rw w;
		struct xgpu_stats s;
		char raw[256];
	} u;
	uint32_t cnt;
	void *argp = &u;

	memset(&u, 0, sizeof(u));
	u.i.size = rnd(s) % 16 ? cmds[c].size : (uint32_t)fuzz_num(s, 200);
	switch (cmd) {
	case XGPU_IOC_ATOMIC:
		cnt = rnd(s) % 50 ? fuzz_num(s, 8) : fuzz_num(s, XGPU_MAX_BATCH);
		if (cnt > XGPU_MAX_BATCH + 2)
			cnt = 0;
		for (i = 0; i < (int)cnt; i++) {
			w->ops[i] = (struct xgpu_atomic_op){
				.addr = fuzz_addr(s),
				.value = rnd(s) % 4 ? rnd(s) % 100 : rnd(s),
				.op = rnd(s) % 12 ? rnd(s) % XGPU_OP_COUNT :
						    fuzz_num(s, XGPU_OP_COUNT),
				.width = rnd(s) % 2 ? 4 : 8,
			};
			if (rnd(s) % 20 == 0)
				w->ops[i].width = fuzz_num(s, 16);
			if (w->ops[i].op == XGPU_OP_CMPXCHG || rnd(s) % 20 == 0)
				w->ops[i].compare = rnd(s) % 100;
			if (rnd(s) % 50 == 0)
				w->ops[i].flags = rnd(s);
		}
		u.a.count = cnt;
		/* ops in an arena: the old values are written there */
		u.a.ops = rnd(s) % 30 ? (uintptr_t)w->ops : fuzz_addr(s);
		u.a.flags = rnd(s) % 30 ? 0 : rnd(s);
		break;
	case XGPU_IOC_ACQUIRE:
	case XGPU_IOC_RELEASE:
	case XGPU_IOC_QUERY:
		u.r.addr = rnd(s) % 4 ? (uintptr_t)arena[rnd(s) % 2] +
					(rnd(s) % (ARENA_LEN / PAGE)) * PAGE :
					fuzz_addr(s);
		u.r.npages = rnd(s) % 4 ? 1 + rnd(s) % 16 :
					  fuzz_num(s, XGPU_MAX_PAGES);
		u.r.flags = rnd(s) % 30 ? 0 : rnd(s);
		if (cmd == XGPU_IOC_QUERY)
			/* an arena address has >= 64 bytes of guard after it */
			u.r.bitmap = rnd(s) % 20 ? (uintptr_t)w->bitmap :
						   fuzz_addr(s);
		else if (rnd(s) % 20 == 0)
			u.r.bitmap = rnd(s);
		if (u.r.npages > XGPU_MAX_PAGES && cmd == XGPU_IOC_QUERY)
			u.r.npages = XGPU_MAX_PAGES + 1;
		break;
	case XGPU_IOC_READ:
	case XGPU_IOC_WRITE:
		u.w.addr = fuzz_addr(s);
		u.w.buf = fuzz_addr(s);
		u.w.len = rnd(s) % 4 ? rnd(s) % (2 * PAGE) :
				       fuzz_num(s, XGPU_MAX_RW);
		u.w.flags = rnd(s) % 30 ? 0 : rnd(s);
		/* the kernel writes only inside an arena (or faults) */
		if (arena_room(cmd == XGPU_IOC_READ ? u.w.buf : u.w.addr) &&
		    u.w.len > arena_room(cmd == XGPU_IOC_READ ? u.w.buf : u.w.addr))
			u.w.len = arena_room(cmd == XGPU_IOC_READ ? u.w.buf :
								    u.w.addr);
		break;
	default:
		break;
	}
	if (rnd(s) % 100 == 0) {
		/* an unknown ioctl: an unused number, or a known one of another size */
		c = CMD_UNKNOWN;
		if (rnd(s) % 2)
			cmd = _IOWR(XGPU_IOC_TYPE, NCMDS + rnd(s) % 200,
				    struct xgpu_info);
		else
			cmd = _IOC(_IOC_READ | _IOC_WRITE, XGPU_IOC_TYPE,
				   rnd(s) % NCMDS, 200 + rnd(s) % 50);
	}
	if (rnd(s) % 200 == 0)
		argp = (void *)(uintptr_t)fuzz_addr(s);
	if (rnd(s) % 200 == 0)
		argp = &u.raw[1];	/* unaligned */
	fd = READ_ONCE(fds[rnd(s) % FUZZ_FDS]);
	*err = ioctl(fd, cmd, argp) ? errno : 0;
	return c;
}

static void *worker_fn(void *p)
{
	struct worker *w = p;
	long n;
	int c, err;

	for (n = 0; n < w->calls && !READ_ONCE(stop); n++) {
		c = fuzz_call(w, &err);
		__atomic_store_n(&w->done, n + 1, __ATOMIC_RELAXED);
		if (!err || documented(c, err)) {
			w->errs[err < NERR ? err : NERR - 1]++;
			continue;
		}
		pthread_mutex_lock(&fail_lock);
		if (!fail_msg[0])
			snprintf(fail_msg, sizeof(fail_msg),
				 "thread %d call %ld %s: undocumented errno %d (%s)",
				 w->id, n, c < NCMDS ? cmds[c].name : "unknown ioctl",
				 err, strerror(err));
		pthread_mutex_unlock(&fail_lock);
		WRITE_ONCE(stop, 1);
	}
	w->calls = n;
	__atomic_add_fetch(&ndone, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void on_sigusr1(int sig)
{
	(void)sig;
}

/* a zone of the churning upper half of arena @a: 64 pages, or all of it */
static char *zone(uint64_t *s, int a, size_t *len)
{
	*len = rnd(s) % 8 ? ZONE_LEN : HPAGE;
	return arena[a] + HPAGE + (rnd(s) % (HPAGE / *len)) * *len;
}

/* map @len at @z again, as the arena it belongs to has it */
static int remap(char *z, size_t len, int a)
{
	if (mmap(z, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != z)
		return -1;
	madvise(z, len, a ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset(z, 0x5a, PAGE);
	return 0;
}

struct disrupt {
	pthread_t *workers;
	long actions[7];
	long mremap_refused;	/* a zone of several VMAs: mapped again instead */
	int child_bad;
	int errors;
	const char *err_what;	/* the first failed disruption, and its errno */
	int err_errno;
};

/* count a failed disruption; the first is named, with its errno */
static void disrupt_failed(struct disrupt *d, const char *what)
{
	if (!d->errors++) {
		d->err_what = what;
		d->err_errno = errno;
	}
}

/*
 * Nothing else in this process maps memory while the workers run, so a
 * zone unmapped here stays a hole until remap() fills it again.
 */
static void disrupt_once(struct disrupt *d, uint64_t *s)
{
	int a = rnd(s) % 2, act = rnd(s) % 7, status, nfd, k;
	size_t len;
	char *z = zone(s, a, &len);
	pid_t pid;

	d->actions[act]++;
	switch (act) {
	case 0:	/* munmap, then map again */
		munmap(z, len);
		sched_yield();
		if (remap(z, len, a))
			disrupt_failed(d, "mmap");
		break;
	case 1:	/* mremap away and back */
		if (mremap(z, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, spare) !=
		    spare) {
			/* EFAULT: the zone spans VMAs (earlier remaps) */
			d->mremap_refused++;
			if (errno != EFAULT)
				disrupt_failed(d, "mremap");
			munmap(z, len);
			if (remap(z, len, a))
				disrupt_failed(d, "mmap");
			break;
		}
		sched_yield();
		if (mremap(spare, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, z) != z) {
			disrupt_failed(d, "mremap back");
			if (remap(z, len, a))
				disrupt_failed(d, "mmap");
		}
		mmap(spare, HPAGE, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
		break;
	case 2:	/* mprotect read-only and back */
		mprotect(z, len, PROT_READ);
		sched_yield();
		mprotect(z, len, PROT_READ | PROT_WRITE);
		break;
	case 3:
		madvise(z, len, MADV_DONTNEED);
		break;
	case 4:	/* fork: the child touches the arenas; its fds are refused */
		pid = fork();
		if (!pid) {
			struct xgpu_info info = { .size = sizeof(info) };
			int bad = 0;

			for (k = 0; k < FUZZ_FDS; k++)
				if (!ioctl(fds[k], XGPU_IOC_INFO, &info) ||
				    (errno != EBADF && errno != EINTR))
					bad = 1;
			/* (the lower half's pages 8, 16 and 17 are not writable) */
			z[0]++;
			arena[!a][PAGE * (rnd(s) % 8)]++;
			_exit(bad);
		}
		if (pid < 0)
			disrupt_failed(d, "fork");
		else if (waitpid(pid, &status, 0) != pid)
			disrupt_failed(d, "waitpid");
		else if (!WIFEXITED(status) || WEXITSTATUS(status))
			d->child_bad = status;
		break;
	case 5:	/* a descriptor replaced while ioctls run on it */
		k = rnd(s) % FUZZ_FDS;
		nfd = xgpu_open();
		if (nfd < 0)
			disrupt_failed(d, "open");
		else if (dup2(nfd, fds[k]) != fds[k])
			disrupt_failed(d, "dup2");
		if (nfd >= 0)
			close(nfd);
		break;
	case 6:
		pthread_kill(d->workers[rnd(s) % FUZZ_THREADS], SIGUSR1);
		break;
	}
}

/* an arena of @len with PROT_NONE guards of at least 2 MiB around it */
static char *map_guarded(size_t len, int thp)
{
	char *p = mmap(NULL, len + 4 * HPAGE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + 2 * HPAGE - 1) & ~(HPAGE - 1));
	if (remap(a, len, thp))
		return NULL;
	memset(a, 0, len);
	return a;
}

static long vm_pin_kb(void)
{
	char line[128];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmPin:", 6))
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

int test_fuzz_random_ioctls_documented_errnos(void)
{
	static struct worker w[FUZZ_THREADS];
	pthread_t th[FUZZ_THREADS];
	struct sigaction sa = { .sa_handler = on_sigusr1 }, old_sa;
	struct disrupt d = { .workers = th };
	uint64_t ds = 0x2545f4914f6cdd1dULL;
	long total = 0, last = 0, errs[NERR] = { 0 }, pin;
	double t0, secs, shown, moved;
	int i, e;

	if (opt_fuzz <= 0)
		return t_skip("not run in this boot (-f 0): CI fuzzes in THP always boots");
	arena[0] = map_guarded(ARENA_LEN, 0);
	arena[1] = map_guarded(ARENA_LEN, 1);
	spare = map_guarded(HPAGE, 0);
	CHECK(arena[0] && arena[1] && spare, "mmap");
	/* a hole and read-only pages in the stable lower halves */
	for (i = 0; i < 2; i++) {
		munmap(arena[i] + 8 * PAGE, PAGE);
		mprotect(arena[i] + 16 * PAGE, 2 * PAGE, PROT_READ);
	}
	for (i = 0; i < FUZZ_FDS; i++) {
		fds[i] = xgpu_open();
		CHECK(fds[i] >= 0, "open");
	}
	sigaction(SIGUSR1, &sa, &old_sa);	/* no SA_RESTART: EINTR */
	fail_msg[0] = 0;
	WRITE_ONCE(stop, 0);
	ndone = 0;
	t0 = now();
	for (i = 0; i < FUZZ_THREADS; i++) {
		w[i] = (struct worker){ .id = i, .rnd = 0x9e3779b97f4a7c15ULL * (i + 1),
					.calls = opt_fuzz / FUZZ_THREADS +
						 (i < opt_fuzz % FUZZ_THREADS) };
		CHECK(!pthread_create(&th[i], NULL, worker_fn, &w[i]),
		      "pthread_create");
	}
	/*
	 * The disruptor: until the workers are done, an action every 20 ms.
	 * Every 10 s a progress line, written out at once: if the runner's
	 * timeout kills the test, its output tells a slow run from a stuck one.
	 * No call finished by any worker for FUZZ_STALL_S: stuck, and the test
	 * ends there (_exit: the workers may be inside the module).
	 */
	shown = t0;
	moved = t0;
	while (__atomic_load_n(&ndone, __ATOMIC_ACQUIRE) < FUZZ_THREADS) {
		disrupt_once(&d, &ds);
		usleep(20000);
		if (now() - shown < 10)
			continue;
		shown = now();
		for (i = 0, total = 0; i < FUZZ_THREADS; i++)
			total += __atomic_load_n(&w[i].done, __ATOMIC_RELAXED);
		printf("# progress: %ld of %ld calls after %.0f s\n", total,
		       opt_fuzz, shown - t0);
		if (total != last) {
			last = total;
			moved = shown;
		} else if (shown - moved >= FUZZ_STALL_S) {
			printf("# stuck: no call finished in %.0f s (%ld of %ld calls made)\n",
			       shown - moved, total, opt_fuzz);
			fflush(stdout);
			_exit(1);
		}
		fflush(stdout);
	}
	total = 0;
	for (i = 0; i < FUZZ_THREADS; i++)
		pthread_join(th[i], NULL);
	secs = now() - t0;
	sigaction(SIGUSR1, &old_sa, NULL);
	for (i = 0; i < FUZZ_FDS; i++)
		close(fds[i]);
	pin = vm_pin_kb();
	for (i = 0; i < 2; i++)
		munmap(arena[i], ARENA_LEN);
	munmap(spare, HPAGE);

	for (i = 0; i < FUZZ_THREADS; i++) {
		total += w[i].calls;
		for (e = 0; e < NERR; e++)
			errs[e] += w[i].errs[e];
	}
	printf("# %ld calls by %d threads on %d fds in %.1f s: %ld ok", total,
	       FUZZ_THREADS, FUZZ_FDS, secs, errs[0]);
	for (e = 1; e < NERR; e++)
		if (errs[e])
			printf(", %ld %s", errs[e], errname(e));
	printf("\n# disruptions: %ld munmap, %ld mremap (%ld refused: several VMAs),",
	       d.actions[0], d.actions[1], d.mremap_refused);
	printf(" %ld mprotect, %ld DONTNEED, %ld fork, %ld fd replaced, %ld SIGUSR1\n",
	       d.actions[2], d.actions[3], d.actions[4], d.actions[5],
	       d.actions[6]);
	if (fail_msg[0])
		return t_fail("%s", fail_msg);
	CHECK(!d.errors, "%d disruptions failed, the first: %s (%s)", d.errors,
	      d.err_what, strerror(d.err_errno));
	CHECK(!d.child_bad,
	      "a fork child: status %#x (exit 1: an inherited fd was usable)",
	      d.child_bad);
	CHECK(total == opt_fuzz, "%ld calls of %ld", total, opt_fuzz);
	CHECK(pin == 0, "VmPin %ld kB after the last close", pin);
	return T_PASS;
}
