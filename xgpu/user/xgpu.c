// SPDX-License-Identifier: GPL-2.0
/*
 * xgpu - command line tool for /dev/xgpu
 *
 *   xgpu info                  API compiled in, features, limits
 *   xgpu selftest [options]    KTAP correctness tests
 *       -t <seconds>   duration of each concurrency test (default 2)
 *       -k <threads>   CPU threads in the concurrency tests (default 2)
 *       -f <calls>     ioctl fuzzer calls (default 100000)
 *       -u             last, unload the module with pages device-owned
 *                      (runs "rmmod xgpu")
 *       -l             list the test names, one per line
 *       -r <name>      run only test <name>: exit 0 pass, 4 skip (reason
 *                      on a "# SKIP" line), 1 fail (what failed on a "#"
 *                      line), 2 unknown name
 *   xgpu bench [-t <seconds>]  acquisition, fast path, ping-pong; a table
 *                              and "bench:" key=value lines
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libxgpu.h"

#define PAGE		4096UL
#define HPAGE		(2UL << 20)
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/*
 * Flags and words shared between threads (and with the device): explicit
 * atomic accesses, the userspace counterparts of the kernel's READ_ONCE(),
 * WRITE_ONCE(), smp_load_acquire() and smp_store_release().
 */
#define READ_ONCE(x)		__atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v)	__atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define LOAD_ACQUIRE(x)		__atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE_RELEASE(x, v)	__atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static double opt_seconds = 2.0;
static int opt_threads = 2;
static long opt_fuzz = 100000;
static bool opt_unload;
static const char *opt_run;

static int dev_fd = -1;
static uint64_t bm1[1];		/* QUERY bitmap scratch for one word */
static struct xgpu_info dev_info;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Anonymous private memory; @thp: 1 = MADV_HUGEPAGE, 0 = MADV_NOHUGEPAGE */
static void *map_anon(size_t len, int thp)
{
	size_t maplen = len + HPAGE;
	char *p = mmap(NULL, maplen, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + HPAGE - 1) & ~(HPAGE - 1));
	if (a > p)
		munmap(p, a - p);
	munmap(a + len, p + maplen - (a + len));
	madvise(a, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset(a, 0, len);
	return a;
}

/* ---- KTAP ---------------------------------------------------------- */

enum { T_PASS, T_FAIL, T_SKIP };

static char t_reason[256];

static int t_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t_reason, sizeof(t_reason), fmt, ap);
	va_end(ap);
	return T_FAIL;
}

static int t_skip(const char *why)
{
	snprintf(t_reason, sizeof(t_reason), "%s", why);
	return T_SKIP;
}

#define CHECK(cond, ...) do { if (!(cond)) return t_fail(__VA_ARGS__); } while (0)
#define CHECK_ERR(expr, want) do {					\
	long __r = (expr);						\
	if (__r != -(want))						\
		return t_fail("%s: got %ld, want -%s", #expr, __r, #want); \
} while (0)

static bool atomics(void)
{
	return dev_info.features & XGPU_FEAT_ATOMICS;
}

#define NEED_ATOMICS() do {						\
	if (!atomics())							\
		return t_skip("device atomics unavailable or disabled (xgpu info)"); \
} while (0)

/* ---- tests --------------------------------------------------------- */

static int test_info_reports_api_and_limits(void)
{
	struct xgpu_info i;

	CHECK(!xgpu_info(dev_fd, &i), "INFO failed");
	CHECK(i.abi_version == XGPU_ABI_VERSION, "abi %u", i.abi_version);
	CHECK(i.page_size == PAGE, "page size %u", i.page_size);
	CHECK(i.max_batch == XGPU_MAX_BATCH && i.max_pages == XGPU_MAX_PAGES,
	      "limits");
	CHECK(i.api <= XGPU_API_PAGE, "api %u", i.api);
	CHECK(!(i.api == XGPU_API_NONE && (i.features & XGPU_FEAT_ATOMICS)),
	      "atomics without API");
	return T_PASS;
}

static int test_atomic_unavailable_returns_eopnotsupp(void)
{
	uint64_t *mem;

	if (atomics())
		return t_skip("device atomics available");
	mem = map_anon(HPAGE, 0);
	CHECK(mem, "mmap");
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem, 1, 0, NULL),
		  EOPNOTSUPP);
	CHECK_ERR(xgpu_acquire(dev_fd, mem, 1), EOPNOTSUPP);
	CHECK(mem[0] == 0, "memory changed");
	munmap(mem, HPAGE);
	return T_PASS;
}

/* What the device must compute: the reference for every op. */
static uint64_t ref_apply(uint32_t op, uint64_t cur, uint64_t val, uint64_t cmp)
{
	switch (op) {
	case XGPU_OP_ADD:
		return cur + val;
	case XGPU_OP_SUB:
		return cur - val;
	case XGPU_OP_AND:
		return cur & val;
	case XGPU_OP_OR:
		return cur | val;
	case XGPU_OP_XOR:
		return cur ^ val;
	case XGPU_OP_XCHG:
		return val;
	case XGPU_OP_CMPXCHG:
		return cur == cmp ? val : cur;
	case XGPU_OP_MIN:
		return cur < val ? cur : val;
	case XGPU_OP_MAX:
		return cur > val ? cur : val;
	}
	return cur;
}

static int test_atomic_ops_return_old_values_u32_u64(void)
{
	static const uint64_t vals[] = { 0, 1, 3, 7, 0xf0, 0xffffffff };
	uint64_t *mem = map_anon(HPAGE, 0);
	uint32_t op;
	unsigned int a, b;

	CHECK(mem, "mmap");
	NEED_ATOMICS();
	for (op = 0; op < XGPU_OP_COUNT; op++) {
		for (a = 0; a < 6; a++) {
			for (b = 0; b < 6; b++) {
				uint32_t *m32 = (uint32_t *)&mem[2];
				uint64_t init = vals[a] | (vals[a] << 36);
				uint64_t cmp = op == XGPU_OP_CMPXCHG ?
					       vals[(a + b) % 2 ? b : a] : 0;
				uint64_t old;
				int ret;

				mem[0] = init;
				ret = xgpu_atomic1(dev_fd, op, 8, &mem[0],
						   vals[b], op == XGPU_OP_CMPXCHG ?
						   init : 0, &old);
				CHECK(!ret && old == init &&
				      mem[0] == ref_apply(op, init, vals[b], init),
				      "u64 %s %llx %llx: ret %d old %llx new %llx",
				      xgpu_op_name(op), (unsigned long long)init,
				      (unsigned long long)vals[b], ret,
				      (unsigned long long)old,
				      (unsigned long long)mem[0]);

				mem[2] = 0x5555555555555555ULL;
				*m32 = vals[a];
				ret = xgpu_atomic1(dev_fd, op, 4, m32, vals[b],
						   cmp, &old);
				CHECK(!ret && old == vals[a] &&
				      *m32 == (uint32_t)ref_apply(op, vals[a],
								  vals[b], cmp) &&
				      m32[1] == 0x55555555,
				      "u32 %s %llx %llx %llx: ret %d old %llx new %x",
				      xgpu_op_name(op), (unsigned long long)vals[a],
				      (unsigned long long)vals[b],
				      (unsigned long long)cmp, ret,
				      (unsigned long long)old, *m32);
			}
		}
	}
	munmap(mem, HPAGE);
	return T_PASS;
}

/* K CPU threads and the device add to the same counters. */
#define NCOUNTERS	16

struct race {
	uint64_t *ctr;		/* NCOUNTERS u64, 64 bytes apart */
	int stop;		/* READ_ONCE()/WRITE_ONCE() */
	uint64_t cpu_adds[64];
	uint64_t dev_adds;
	int dev_err;
};

struct cpu_arg {
	struct race *r;
	int id;
};

static void *cpu_adder(void *p)
{
	struct cpu_arg *a = p;
	uint64_t n = 0;

	while (!READ_ONCE(a->r->stop)) {
		__atomic_fetch_add(&a->r->ctr[(n % NCOUNTERS) * 8], 1,
				   __ATOMIC_SEQ_CST);
		n++;
	}
	a->r->cpu_adds[a->id] = n;
	return NULL;
}

static int atomic_add_race(int thp)
{
	struct xgpu_atomic_op ops[64];
	pthread_t th[64];
	struct cpu_arg args[64];
	struct race r = { 0 };
	struct xgpu_stats st;
	uint64_t total = 0, want;
	double end;
	int i;

	NEED_ATOMICS();
	r.ctr = map_anon(HPAGE, thp);
	CHECK(r.ctr, "mmap");
	for (i = 0; i < opt_threads; i++) {
		args[i].r = &r;
		args[i].id = i;
		pthread_create(&th[i], NULL, cpu_adder, &args[i]);
	}
	end = now() + opt_seconds;
	while (now() < end) {
		uint32_t done = 0;
		int ret;

		for (i = 0; i < 64; i++)
			ops[i] = (struct xgpu_atomic_op){
				.addr = (uintptr_t)&r.ctr[(i % NCOUNTERS) * 8],
				.value = 1, .op = XGPU_OP_ADD, .width = 8 };
		ret = xgpu_atomic(dev_fd, ops, 64, &done);
		r.dev_adds += done;
		if (ret && ret != -EAGAIN) {
			r.dev_err = ret;
			break;
		}
	}
	WRITE_ONCE(r.stop, 1);
	for (i = 0; i < opt_threads; i++) {
		pthread_join(th[i], NULL);
		total += r.cpu_adds[i];
	}
	want = total + r.dev_adds;
	total = 0;
	for (i = 0; i < NCOUNTERS; i++)
		total += r.ctr[i * 8];
	xgpu_stats(dev_fd, &st);
	munmap(r.ctr, HPAGE);
	CHECK(!r.dev_err, "device ATOMIC failed: %d", r.dev_err);
	CHECK(r.dev_adds > 0, "device made no progress");
	CHECK(total == want, "lost updates: sum %llu want %llu",
	      (unsigned long long)total, (unsigned long long)want);
	printf("# %s: %llu device adds, %llu total, acquisitions %llu, revoked %llu\n",
	       thp ? "thp" : "nothp", (unsigned long long)r.dev_adds,
	       (unsigned long long)want, (unsigned long long)st.acquisitions,
	       (unsigned long long)xgpu_stats_revoked(&st));
	return T_PASS;
}

static int test_atomic_add_cpu_and_device_no_lost_updates_thp(void)
{
	return atomic_add_race(1);
}

static int test_atomic_add_cpu_and_device_no_lost_updates_nothp(void)
{
	return atomic_add_race(0);
}

/* cmpxchg spin lock shared by CPU threads and the device */
struct lockmem {
	uint32_t lock;			/* page 0 */
	char pad[PAGE - 4];
	uint64_t x, y;			/* page 1: protected, non-atomic */
	uint64_t violations;
};

struct lock_arg {
	struct lockmem *m;
	int *stop;		/* READ_ONCE()/WRITE_ONCE() */
	uint64_t n;
};

static void *cpu_locker(void *p)
{
	struct lock_arg *a = p;
	struct lockmem *m = a->m;

	while (!READ_ONCE(*a->stop)) {
		uint32_t zero = 0;

		if (!__atomic_compare_exchange_n(&m->lock, &zero, 1, false,
						 __ATOMIC_ACQUIRE,
						 __ATOMIC_RELAXED))
			continue;
		if (m->x != m->y)
			m->violations++;
		m->x++;
		__asm__ volatile("" ::: "memory");
		m->y++;
		__atomic_store_n(&m->lock, 0, __ATOMIC_RELEASE);
		a->n++;
	}
	return NULL;
}

static int test_cmpxchg_spinlock_shared_cpu_device_no_violation(void)
{
	struct lockmem *m;
	struct lock_arg args[64];
	pthread_t th[64];
	int stop = 0;
	uint64_t dev_n = 0, cpu_n = 0, xy[2];
	int i, err = 0;
	double end;

	NEED_ATOMICS();
	m = map_anon(HPAGE, 0);
	CHECK(m, "mmap");
	for (i = 0; i < opt_threads; i++) {
		args[i] = (struct lock_arg){ .m = m, .stop = &stop };
		pthread_create(&th[i], NULL, cpu_locker, &args[i]);
	}
	end = now() + opt_seconds;
	while (now() < end && !err) {
		uint64_t old = 1;

		/* lock: device cmpxchg 0 -> 1 */
		while (old && !err && now() < end + 5)
			err = xgpu_atomic1(dev_fd, XGPU_OP_CMPXCHG, 4, &m->lock,
					   1, 0, &old);
		if (err == -EAGAIN) {
			err = 0;
			continue;
		}
		if (err || old)
			break;
		/* critical section through the mirror, not atomic */
		err = xgpu_read(dev_fd, xy, &m->x, sizeof(xy));
		if (!err) {
			if (xy[0] != xy[1])
				m->violations++;
			xy[0]++;
			xy[1]++;
			err = xgpu_write(dev_fd, &m->x, xy, sizeof(xy));
		}
		dev_n++;
		/* unlock: device xchg -> 0 */
		while (!err && (err = xgpu_atomic1(dev_fd, XGPU_OP_XCHG, 4,
						   &m->lock, 0, 0, NULL)) == -EAGAIN)
			err = 0;
	}
	WRITE_ONCE(stop, 1);
	for (i = 0; i < opt_threads; i++) {
		pthread_join(th[i], NULL);
		cpu_n += args[i].n;
	}
	CHECK(!err, "device op failed: %d", err);
	CHECK(!m->violations, "%llu violations",
	      (unsigned long long)m->violations);
	CHECK(m->x == cpu_n + dev_n && m->y == m->x,
	      "x %llu y %llu want %llu", (unsigned long long)m->x,
	      (unsigned long long)m->y, (unsigned long long)(cpu_n + dev_n));
	CHECK(dev_n > 0, "device never got the lock");
	printf("# %llu device and %llu CPU critical sections\n",
	       (unsigned long long)dev_n, (unsigned long long)cpu_n);
	munmap(m, HPAGE);
	return T_PASS;
}

static int test_acquire_query_release(void)
{
	char *mem = map_anon(HPAGE, 0);
	uint64_t bm[1];

	CHECK(mem, "mmap");
	NEED_ATOMICS();
	CHECK(xgpu_acquire(dev_fd, mem, 4) == 4, "ACQUIRE 4");
	CHECK(xgpu_query(dev_fd, mem, 8, bm) == 4 && bm[0] == 0xf,
	      "QUERY %llx", (unsigned long long)bm[0]);
	CHECK(xgpu_release(dev_fd, mem, 8) == 4, "RELEASE");
	CHECK(xgpu_query(dev_fd, mem, 8, bm) == 0 && !bm[0], "QUERY after");
	mem[0] = 1;	/* CPU gets it back */
	CHECK(mem[0] == 1, "cpu");
	munmap(mem, HPAGE);
	return T_PASS;
}

static int test_cpu_touch_revokes_device_entry(void)
{
	uint64_t *mem = map_anon(HPAGE, 0);
	struct xgpu_stats s0, s1;
	uint64_t bm[1], old;

	CHECK(mem, "mmap");
	NEED_ATOMICS();
	CHECK(!xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, (void *)mem, 5, 0, NULL),
	      "ATOMIC");
	CHECK(xgpu_query(dev_fd, (void *)mem, 1, bm) == 1, "not device-owned");
	/* fast path while owned */
	xgpu_stats(dev_fd, &s0);
	CHECK(!xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, (void *)mem, 1, 0, &old) &&
	      old == 5, "fast path op");
	xgpu_stats(dev_fd, &s1);
	CHECK(s1.fastpath_hits == s0.fastpath_hits + 1, "no fast-path hit");
	CHECK(s1.self_events > 0, "own MMU_NOTIFY_EXCLUSIVE not seen");
	/* CPU touch */
	old = READ_ONCE(mem[0]);
	CHECK(old == 6, "CPU read %llu", (unsigned long long)old);
	xgpu_stats(dev_fd, &s1);
	CHECK(xgpu_query(dev_fd, (void *)mem, 1, bm) == 0, "still owned");
	CHECK(xgpu_stats_revoked(&s1) > xgpu_stats_revoked(&s0),
	      "STATS shows no revocation");
	munmap((void *)mem, HPAGE);
	return T_PASS;
}

static int test_fork_parent_child_data_and_child_fd_refused(void)
{
	uint64_t *mem = map_anon(HPAGE, 0);
	struct xgpu_info i;
	int status;
	pid_t pid;

	CHECK(mem, "mmap");
	NEED_ATOMICS();
	mem[1] = 100;
	CHECK(!xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem, 42, 0, NULL), "ATOMIC");
	pid = fork();
	if (!pid) {
		int bad = 0;

		if (mem[0] != 42 || mem[1] != 100)
			bad |= 1;
		if (xgpu_info(dev_fd, &i) != -EBADF)
			bad |= 2;
		mem[0] = 1000;	/* child's copy only */
		_exit(bad);
	}
	CHECK(pid > 0, "fork");
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status),
	      "child saw wrong data or a usable fd (status %#x)", status);
	CHECK(!xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem, 1, 0, NULL), "ATOMIC");
	CHECK(mem[0] == 43 && mem[1] == 100, "parent data %llu",
	      (unsigned long long)mem[0]);
	munmap(mem, HPAGE);
	return T_PASS;
}

static int test_mprotect_readonly_atomic_refused_eacces(void)
{
	uint64_t *mem = map_anon(HPAGE, 0);

	CHECK(mem, "mmap");
	NEED_ATOMICS();
	mem[0] = 7;
	CHECK(!xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem, 1, 0, NULL), "ATOMIC");
	CHECK(!mprotect(mem, PAGE, PROT_READ), "mprotect");
	CHECK(xgpu_query(dev_fd, mem, 1, bm1) == 0,
	      "entry survived mprotect");
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem, 1, 0, NULL), EACCES);
	CHECK(mem[0] == 8, "value %llu", (unsigned long long)mem[0]);
	munmap(mem, HPAGE);
	return T_PASS;
}

static int test_munmap_revokes_then_atomic_efault(void)
{
	char *mem = map_anon(HPAGE, 0);
	struct xgpu_stats s0, s1;

	CHECK(mem, "mmap");
	NEED_ATOMICS();
	CHECK(xgpu_acquire(dev_fd, mem, 2) == 2, "ACQUIRE");
	xgpu_stats(dev_fd, &s0);
	munmap(mem, HPAGE);
	xgpu_stats(dev_fd, &s1);
	CHECK(s1.revoked[XGPU_REVOKE_UNMAP] == s0.revoked[XGPU_REVOKE_UNMAP] + 2,
	      "UNMAP revocations %llu",
	      (unsigned long long)s1.revoked[XGPU_REVOKE_UNMAP]);
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem, 1, 0, NULL), EFAULT);
	return T_PASS;
}

static int test_madvise_dontneed_revokes_and_zeroes(void)
{
	uint64_t *mem = map_anon(HPAGE, 0);
	uint64_t old = 1;

	CHECK(mem, "mmap");
	NEED_ATOMICS();
	CHECK(!xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem, 9, 0, NULL), "ATOMIC");
	CHECK(!madvise(mem, PAGE, MADV_DONTNEED), "madvise");
	CHECK(xgpu_query(dev_fd, mem, 1, bm1) == 0, "still owned");
	CHECK(!xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem, 1, 0, &old) && !old,
	      "old %llu after DONTNEED", (unsigned long long)old);
	CHECK(mem[0] == 1, "value");
	munmap(mem, HPAGE);
	return T_PASS;
}

static int test_shared_and_file_memory_refused_enxio(void)
{
	char path[] = "/tmp/xgpu-selftest-XXXXXX";
	uint64_t *shm, *fmem;
	int fd;

	NEED_ATOMICS();
	shm = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(shm != MAP_FAILED, "mmap shared");
	shm[0] = 3;
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, shm, 1, 0, NULL), ENXIO);
	CHECK(shm[0] == 3, "shared value changed");
	munmap(shm, PAGE);

	fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	unlink(path);
	CHECK(!ftruncate(fd, PAGE), "ftruncate");
	fmem = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	CHECK(fmem != MAP_FAILED, "mmap file");
	fmem[0] = 3;
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, fmem, 1, 0, NULL), ENXIO);
	munmap(fmem, PAGE);
	return T_PASS;
}

static int test_read_write_through_mirror(void)
{
	size_t len = 3 * PAGE + 123;
	char *mem = map_anon(HPAGE, 0);
	char *buf = malloc(len), *back = malloc(len);
	size_t i;

	CHECK(mem && buf && back, "alloc");
	for (i = 0; i < len; i++)
		buf[i] = (char)(i * 7 + 1);
	CHECK(!xgpu_write(dev_fd, mem + 100, buf, len), "WRITE");
	CHECK(!memcmp(mem + 100, buf, len), "CPU does not see WRITE");
	CHECK(mem[99] == 0 && mem[100 + len] == 0, "WRITE out of bounds");
	memset(back, 0, len);
	CHECK(!xgpu_read(dev_fd, back, mem + 100, len), "READ");
	CHECK(!memcmp(back, buf, len), "READ data");
	free(buf);
	free(back);
	munmap(mem, HPAGE);
	return T_PASS;
}

static int test_bad_input_documented_errnos(void)
{
	uint64_t *mem = map_anon(HPAGE, 0);
	struct xgpu_atomic_op ops[XGPU_MAX_BATCH + 1];
	struct xgpu_atomic a;
	struct xgpu_info info;
	struct xgpu_range r;
	char *hole;
	uint32_t done;

	CHECK(mem, "mmap");
	hole = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(hole, PAGE);

	/* size field mismatch */
	memset(&info, 0, sizeof(info));
	info.size = sizeof(info) - 4;
	CHECK_ERR(ioctl(dev_fd, XGPU_IOC_INFO, &info) ? -errno : 0, EINVAL);
	CHECK_ERR(ioctl(dev_fd, XGPU_IOC_INFO, NULL) ? -errno : 0, EFAULT);
	CHECK_ERR(ioctl(dev_fd, _IOWR('X', 0x7f, struct xgpu_info), &info) ?
		  -errno : 0, ENOTTY);
	/* READ/WRITE: zero length, overlap, bad VA */
	CHECK_ERR(xgpu_read(dev_fd, mem + 64, mem, 0), EINVAL);
	CHECK_ERR(xgpu_read(dev_fd, mem + 1, mem, 16), EINVAL);
	CHECK_ERR(xgpu_read(dev_fd, mem, hole, 16), EFAULT);
	CHECK_ERR(xgpu_read(dev_fd, mem, mem + 64, XGPU_MAX_RW + 1), EINVAL);
	/* ranges */
	CHECK_ERR(xgpu_release(dev_fd, (char *)mem + 1, 1), EINVAL);
	CHECK_ERR(xgpu_release(dev_fd, mem, 0), EINVAL);
	CHECK_ERR(xgpu_release(dev_fd, mem, XGPU_MAX_PAGES + 1), EINVAL);
	CHECK_ERR(xgpu_query(dev_fd, mem, 1, NULL), EINVAL);
	r = (struct xgpu_range){ .size = sizeof(r), .flags = 1,
				 .addr = (uintptr_t)mem, .npages = 1 };
	CHECK_ERR(ioctl(dev_fd, XGPU_IOC_RELEASE, &r) ? -errno : 0, EINVAL);

	if (!atomics()) {
		CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem, 1, 0, NULL),
			  EOPNOTSUPP);
		return T_PASS;
	}
	/* bad VA, unaligned, unknown op/width, u32 operand too wide */
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, hole, 1, 0, NULL), EFAULT);
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, (char *)mem + 4, 1, 0,
			       NULL), EINVAL);
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_COUNT, 8, mem, 1, 0, NULL), EINVAL);
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 2, mem, 1, 0, NULL), EINVAL);
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 4, mem, 1ULL << 32, 0, NULL),
		  EINVAL);
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, mem, 1, 5, NULL), EINVAL);
	CHECK_ERR(xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, (void *)(1UL << 63), 1, 0,
			       NULL), EINVAL);
	CHECK_ERR(xgpu_acquire(dev_fd, hole, 1), EFAULT);
	/* batch: zero, too large, overlapping u32/u64; nothing changes */
	memset(ops, 0, sizeof(ops));
	for (done = 0; done <= XGPU_MAX_BATCH; done++)
		ops[done] = (struct xgpu_atomic_op){ .addr = (uintptr_t)mem,
			.value = 1, .op = XGPU_OP_ADD, .width = 8 };
	CHECK_ERR(xgpu_atomic(dev_fd, ops, 0, NULL), EINVAL);
	CHECK_ERR(xgpu_atomic(dev_fd, ops, XGPU_MAX_BATCH + 1, NULL), EINVAL);
	ops[1].width = 4;
	ops[1].addr += 4;
	CHECK_ERR(xgpu_atomic(dev_fd, ops, 2, &done), EINVAL);
	CHECK(mem[0] == 0 && done == 0, "rejected batch changed memory");
	ops[1] = ops[0];
	ops[1].op = 99;
	CHECK_ERR(xgpu_atomic(dev_fd, ops, 2, NULL), EINVAL);
	CHECK(mem[0] == 0, "rejected batch changed memory");
	/* runtime error stops the batch: done tells how far */
	ops[1] = ops[0];
	ops[1].addr = (uintptr_t)hole;
	CHECK_ERR(xgpu_atomic(dev_fd, ops, 3, &done), EFAULT);
	CHECK(done == 1 && mem[0] == 1, "done %u", done);
	a = (struct xgpu_atomic){ .size = sizeof(a) + 8, .count = 1,
				  .ops = (uintptr_t)ops };
	CHECK_ERR(ioctl(dev_fd, XGPU_IOC_ATOMIC, &a) ? -errno : 0, EINVAL);
	a.size = sizeof(a);
	a.ops = (uintptr_t)hole;
	CHECK_ERR(ioctl(dev_fd, XGPU_IOC_ATOMIC, &a) ? -errno : 0, EFAULT);
	munmap(mem, HPAGE);
	return T_PASS;
}

/* Bounded random ioctl fuzzer over an arena: only documented errnos. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static uint64_t fuzz_addr(char *arena, size_t len)
{
	static const uint64_t special[] = {
		0, 1, 4095, 4096, 0x7fffffffe000ULL, 0x800000000000ULL,
		0xffff888000000000ULL, ~0ULL, ~0ULL - 7,
	};

	switch (rnd() % 8) {
	case 0:
		return special[rnd() % ARRAY_SIZE(special)];
	case 1:
		return (uintptr_t)arena + rnd() % len;
	default:
		return (uintptr_t)arena + ((rnd() % len) & ~7ULL);
	}
}

static bool in_arena(uint64_t a, char *arena, size_t len)
{
	return a >= (uintptr_t)arena && a < (uintptr_t)arena + len;
}

static uint64_t fuzz_num(uint64_t typical)
{
	switch (rnd() % 6) {
	case 0:
		return rnd();
	case 1:
		return 0;
	case 2:
		return typical + 1;
	default:
		return rnd() % (typical + 1);
	}
}

static int test_fuzz_random_ioctls_documented_errnos(void)
{
	const size_t len = 64 * PAGE;
	static struct xgpu_atomic_op ops[XGPU_MAX_BATCH + 2];
	static uint64_t bitmap[XGPU_MAX_PAGES / 64 + 2];
	union {
		struct xgpu_info i;
		struct xgpu_atomic a;
		struct xgpu_range r;
		struct xgpu_rw w;
		struct xgpu_stats s;
	} u;
	static const unsigned long cmds[] = {
		XGPU_IOC_INFO, XGPU_IOC_ATOMIC, XGPU_IOC_ACQUIRE,
		XGPU_IOC_RELEASE, XGPU_IOC_QUERY, XGPU_IOC_STATS,
		XGPU_IOC_READ, XGPU_IOC_WRITE,
	};
	static const size_t sizes[] = {
		sizeof(struct xgpu_info), sizeof(struct xgpu_atomic),
		sizeof(struct xgpu_range), sizeof(struct xgpu_range),
		sizeof(struct xgpu_range), sizeof(struct xgpu_stats),
		sizeof(struct xgpu_rw), sizeof(struct xgpu_rw),
	};
	long n, counts[5] = { 0 };
	char *arena;
	int fd;

	arena = map_anon(len, 0);
	CHECK(arena, "mmap");
	/* holes and read-only parts */
	munmap(arena + 8 * PAGE, PAGE);
	mprotect(arena + 16 * PAGE, 2 * PAGE, PROT_READ);
	fd = xgpu_open();
	CHECK(fd >= 0, "open");

	for (n = 0; n < opt_fuzz; n++) {
		int c = rnd() % 8, ret, i;
		uint32_t cnt;

		memset(&u, 0, sizeof(u));
		u.i.size = rnd() % 16 ? sizes[c] : (uint32_t)fuzz_num(200);
		switch (c) {
		case 1:
			cnt = fuzz_num(8);
			if (rnd() % 50 == 0)
				cnt = fuzz_num(XGPU_MAX_BATCH);
			if (cnt > XGPU_MAX_BATCH + 2)
				cnt = 0;
			for (i = 0; i < (int)cnt && i < XGPU_MAX_BATCH + 2; i++) {
				ops[i] = (struct xgpu_atomic_op){
					.addr = fuzz_addr(arena, len),
					.value = rnd() % 4 ? rnd() % 100 : rnd(),
					.op = rnd() % 12 ? rnd() % XGPU_OP_COUNT :
							  fuzz_num(XGPU_OP_COUNT),
					.width = rnd() % 2 ? 4 : 8,
				};
				if (rnd() % 20 == 0)
					ops[i].width = fuzz_num(16);
				if (ops[i].op == XGPU_OP_CMPXCHG || rnd() % 20 == 0)
					ops[i].compare = rnd() % 100;
				if (rnd() % 50 == 0)
					ops[i].flags = rnd();
			}
			u.a.count = cnt;
			u.a.ops = rnd() % 30 ? (uintptr_t)ops : fuzz_addr(arena, len);
			u.a.flags = rnd() % 30 ? 0 : rnd();
			break;
		case 2:
		case 3:
		case 4:
			u.r.addr = rnd() % 4 ? (uintptr_t)arena + (rnd() % 64) * PAGE
					    : fuzz_addr(arena, len);
			u.r.npages = rnd() % 4 ? 1 + rnd() % 16 :
						fuzz_num(XGPU_MAX_PAGES);
			u.r.flags = rnd() % 30 ? 0 : rnd();
			if (c == 4)
				u.r.bitmap = rnd() % 20 ? (uintptr_t)bitmap :
							 fuzz_addr(arena, len);
			else if (rnd() % 20 == 0)
				u.r.bitmap = rnd();
			if (u.r.npages > XGPU_MAX_PAGES && c == 4 &&
			    u.r.bitmap == (uintptr_t)bitmap)
				u.r.npages = XGPU_MAX_PAGES + 1;
			break;
		case 6:
		case 7:
			u.w.addr = fuzz_addr(arena, len);
			u.w.buf = fuzz_addr(arena, len);
			u.w.len = rnd() % 4 ? rnd() % (2 * PAGE) :
					     fuzz_num(XGPU_MAX_RW);
			u.w.flags = rnd() % 30 ? 0 : rnd();
			/* never let the device or the kernel write past the arena */
			if (c == 6 ? in_arena(u.w.buf, arena, len) :
				     in_arena(u.w.addr, arena, len)) {
				uint64_t lim = (uintptr_t)arena + len -
					       (c == 6 ? u.w.buf : u.w.addr);

				if (u.w.len > lim)
					u.w.len = lim;
			}
			break;
		default:
			break;
		}
		ret = ioctl(fd, cmds[c], rnd() % 200 ? (void *)&u :
			    (void *)(uintptr_t)fuzz_addr(arena, len)) ? errno : 0;
		switch (ret) {
		case 0:
			counts[0]++;
			break;
		case EINVAL:
			counts[1]++;
			break;
		case EFAULT:
			counts[2]++;
			break;
		case EACCES:
		case ENXIO:
		case EAGAIN:
		case EOPNOTSUPP:
			counts[3]++;
			break;
		default:
			close(fd);
			return t_fail("call %ld cmd %d: undocumented errno %d (%s)",
				      n, c, ret, strerror(ret));
		}
	}
	close(fd);
	munmap(arena, len);
	printf("# %ld calls: %ld ok, %ld EINVAL, %ld EFAULT, %ld other documented\n",
	       n, counts[0], counts[1], counts[2], counts[3]);
	return T_PASS;
}

static int test_process_exit_with_device_owned_pages(void)
{
	int status;
	pid_t pid;

	NEED_ATOMICS();
	pid = fork();
	if (!pid) {
		char *mem = map_anon(HPAGE, 1);
		int fd = xgpu_open();

		if (!mem || fd < 0)
			_exit(1);
		_exit(xgpu_acquire(fd, mem, 64) == 64 ? 0 : 2);	/* no close */
	}
	CHECK(pid > 0, "fork");
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status), "child status %#x",
	      status);
	return T_PASS;
}

static int test_kill_switch_disables_atomics(void)
{
	const char *param = "/sys/module/xgpu/parameters/enable_atomics";
	struct xgpu_info i;
	uint64_t v = 0;
	int fd, ret;

	NEED_ATOMICS();
	fd = open(param, O_WRONLY);
	if (fd < 0)
		return t_skip("enable_atomics parameter not writable");
	ret = write(fd, "0", 1) == 1 ? 0 : -1;
	CHECK(!ret, "write 0");
	xgpu_info(dev_fd, &i);
	ret = xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, &v, 1, 0, NULL);
	CHECK(pwrite(fd, "1", 1, 0) == 1, "write 1");
	close(fd);
	CHECK(ret == -EOPNOTSUPP, "ATOMIC with enable_atomics=0: %d", ret);
	CHECK(i.features & XGPU_FEAT_DISABLED, "INFO does not say disabled");
	return T_PASS;
}

static int test_module_unload_with_device_owned_pages(void)
{
	uint64_t *mem;
	int fd, i, ret;

	if (!opt_unload)
		return t_skip("needs -u (runs rmmod xgpu)");
	NEED_ATOMICS();
	mem = map_anon(HPAGE, 0);
	fd = xgpu_open();
	CHECK(mem && fd >= 0, "setup");
	for (i = 0; i < 8; i++) {
		mem[i * 512] = i;
		CHECK(!xgpu_atomic1(fd, XGPU_OP_ADD, 8, &mem[i * 512], 100, 0,
				    NULL), "ATOMIC");
	}
	CHECK(xgpu_query(fd, mem, 8, bm1) == 8, "owned");
	close(fd);
	close(dev_fd);
	dev_fd = -1;
	ret = system("rmmod xgpu");
	CHECK(ret == 0, "rmmod xgpu: %d", ret);
	for (i = 0; i < 8; i++)
		CHECK(mem[i * 512] == (uint64_t)i + 100, "page %d: %llu", i,
		      (unsigned long long)mem[i * 512]);
	munmap(mem, HPAGE);
	return T_PASS;
}

#define TEST(fn) { #fn + 5, fn }
static const struct {
	const char *name;
	int (*fn)(void);
} tests[] = {
	TEST(test_info_reports_api_and_limits),
	TEST(test_atomic_unavailable_returns_eopnotsupp),
	TEST(test_atomic_ops_return_old_values_u32_u64),
	TEST(test_read_write_through_mirror),
	TEST(test_acquire_query_release),
	TEST(test_cpu_touch_revokes_device_entry),
	TEST(test_atomic_add_cpu_and_device_no_lost_updates_thp),
	TEST(test_atomic_add_cpu_and_device_no_lost_updates_nothp),
	TEST(test_cmpxchg_spinlock_shared_cpu_device_no_violation),
	TEST(test_fork_parent_child_data_and_child_fd_refused),
	TEST(test_mprotect_readonly_atomic_refused_eacces),
	TEST(test_munmap_revokes_then_atomic_efault),
	TEST(test_madvise_dontneed_revokes_and_zeroes),
	TEST(test_shared_and_file_memory_refused_enxio),
	TEST(test_bad_input_documented_errnos),
	TEST(test_fuzz_random_ioctls_documented_errnos),
	TEST(test_process_exit_with_device_owned_pages),
	TEST(test_kill_switch_disables_atomics),
	TEST(test_module_unload_with_device_owned_pages),
};

#define NTESTS ((int)ARRAY_SIZE(tests))

static void list_tests(void)
{
	int i;

	for (i = 0; i < NTESTS; i++)
		printf("%s\n", tests[i].name);
}

/*
 * One test by name, for runners that give each test its own process and
 * timeout (the devexcl guest), with kselftest's exit codes: 0 pass
 * (KSFT_PASS), 1 fail (KSFT_FAIL), 4 skip (KSFT_SKIP). An unknown name is a
 * failure: 2 would be KSFT_XFAIL, an expected failure.
 */
static int run_one(const char *name)
{
	int i, r;

	for (i = 0; i < NTESTS; i++)
		if (!strcmp(tests[i].name, name))
			break;
	if (i == NTESTS) {
		fprintf(stderr, "xgpu: no test named '%s' (xgpu selftest -l)\n",
			name);
		return 1;
	}
	t_reason[0] = 0;
	fflush(stdout);
	r = tests[i].fn();
	if (r == T_SKIP) {
		printf("# SKIP %s\n", t_reason);
		return 4;
	}
	if (r == T_FAIL) {
		printf("# %s: %s\n", name, t_reason);
		return 1;
	}
	return 0;
}

static int cmd_selftest(void)
{
	int n = NTESTS, i, fails = 0;

	printf("KTAP version 1\n1..%d\n", n);
	printf("# xgpu: api %s, features %#x\n", xgpu_api_name(dev_info.api),
	       dev_info.features);
	for (i = 0; i < n; i++) {
		double t0 = now();
		int r;

		t_reason[0] = 0;
		fflush(stdout);
		r = tests[i].fn();
		if (r == T_FAIL) {
			fails++;
			printf("# %s: %s\nnot ok %d %s\n", tests[i].name, t_reason,
			       i + 1, tests[i].name);
		} else if (r == T_SKIP) {
			printf("ok %d %s # SKIP %s\n", i + 1, tests[i].name,
			       t_reason);
		} else {
			printf("ok %d %s # %.2fs\n", i + 1, tests[i].name,
			       now() - t0);
		}
	}
	printf("# totals: pass %d fail %d\n", n - fails, fails);
	return fails ? 1 : 0;
}

/* ---- bench --------------------------------------------------------- */

struct pp {
	uint64_t *word;
	int turn;	/* 0: CPU, 1: device; LOAD_ACQUIRE()/STORE_RELEASE() */
	int stop;	/* READ_ONCE()/WRITE_ONCE() */
};

static void *pp_cpu(void *p)
{
	struct pp *pp = p;

	while (!READ_ONCE(pp->stop)) {
		if (LOAD_ACQUIRE(pp->turn) != 0)
			continue;
		/* CPU touch: revokes the device entry */
		WRITE_ONCE(*pp->word, READ_ONCE(*pp->word) + 1);
		STORE_RELEASE(pp->turn, 1);
	}
	return NULL;
}

/*
 * One fast-path op with the module's engine_inline=Y (jobs run in the
 * calling thread): the difference to the engine figure is the cost of the
 * hop to the engine.  -1 if the parameter is not writable.
 */
static double bench_inline(struct xgpu_atomic_op *ops)
{
	const char *param = "/sys/module/xgpu/parameters/engine_inline";
	uint64_t iters = 0;
	double t0, us;
	int fd;

	fd = open(param, O_WRONLY);
	if (fd < 0)
		return -1;
	if (pwrite(fd, "1", 1, 0) != 1) {
		close(fd);
		return -1;
	}
	t0 = now();
	while (now() - t0 < opt_seconds / 4) {
		if (xgpu_atomic(dev_fd, ops, 1, NULL))
			break;
		iters++;
	}
	us = (now() - t0) / (iters ? iters : 1) * 1e6;
	if (pwrite(fd, "0", 1, 0) != 1)
		us = -1;
	close(fd);
	return us;
}

static int cmd_bench(void)
{
	size_t npages = XGPU_MAX_PAGES;
	struct xgpu_atomic_op ops[XGPU_MAX_BATCH];
	double t0, acq[2] = { 0 }, fast, pingpong, info_us, op_us, inline_us;
	struct xgpu_info info;
	uint64_t iters, i;
	pthread_t th;
	struct pp pp;
	int thp;
	char *mem;

	if (!atomics()) {
		printf("bench: skipped: device atomics unavailable or disabled\n");
		return 0;
	}
	/* acquisition throughput: ACQUIRE all, CPU touches all, again */
	for (thp = 0; thp < 2; thp++) {
		mem = map_anon(npages * PAGE, thp);
		if (!mem)
			return 1;
		iters = 0;
		t0 = now();
		while (now() - t0 < opt_seconds) {
			if (xgpu_acquire(dev_fd, mem, npages) != (int64_t)npages)
				return fprintf(stderr, "ACQUIRE failed\n"), 1;
			for (i = 0; i < npages; i++)
				mem[i * PAGE]++;
			iters++;
		}
		acq[thp] = iters * npages / (now() - t0);
		munmap(mem, npages * PAGE);
	}
	/* fast path: batches on one device-owned page */
	mem = map_anon(HPAGE, 0);
	for (i = 0; i < XGPU_MAX_BATCH; i++)
		ops[i] = (struct xgpu_atomic_op){
			.addr = (uintptr_t)mem + (i % 64) * 8, .value = 1,
			.op = XGPU_OP_ADD, .width = 8 };
	iters = 0;
	t0 = now();
	while (now() - t0 < opt_seconds) {
		if (xgpu_atomic(dev_fd, ops, XGPU_MAX_BATCH, NULL))
			return fprintf(stderr, "ATOMIC failed\n"), 1;
		iters++;
	}
	fast = iters * XGPU_MAX_BATCH / (now() - t0);
	/* fixed costs: an ioctl without the engine, one fast-path op */
	iters = 0;
	t0 = now();
	while (now() - t0 < opt_seconds / 4) {
		xgpu_info(dev_fd, &info);
		iters++;
	}
	info_us = (now() - t0) / iters * 1e6;
	iters = 0;
	t0 = now();
	while (now() - t0 < opt_seconds / 4) {
		if (xgpu_atomic(dev_fd, ops, 1, NULL))
			return fprintf(stderr, "ATOMIC failed\n"), 1;
		iters++;
	}
	op_us = (now() - t0) / iters * 1e6;
	inline_us = bench_inline(ops);
	/* ping-pong: CPU and device take turns on one word */
	pp = (struct pp){ .word = (uint64_t *)mem };
	pthread_create(&th, NULL, pp_cpu, &pp);
	iters = 0;
	t0 = now();
	while (now() - t0 < opt_seconds) {
		while (LOAD_ACQUIRE(pp.turn) != 1)
			;
		if (xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, (void *)pp.word, 1, 0,
				 NULL))
			break;
		STORE_RELEASE(pp.turn, 0);
		iters++;
	}
	pingpong = (now() - t0) / (iters ? iters : 1) * 1e6;
	WRITE_ONCE(pp.stop, 1);
	STORE_RELEASE(pp.turn, 0);
	pthread_join(th, NULL);
	munmap(mem, HPAGE);

	printf("%-40s %14s\n", "metric", "value");
	printf("%-40s %14.0f\n", "acquire pages/s (4 KiB)", acq[0]);
	printf("%-40s %14.0f\n", "acquire pages/s (THP-backed)", acq[1]);
	printf("%-40s %14.0f\n", "fast-path device atomics ops/s", fast);
	printf("%-40s %14.2f\n", "CPU<->device ping-pong round trip (us)",
	       pingpong);
	printf("%-40s %14.1f\n", "fast path vs re-acquisition (x)",
	       acq[0] ? fast / acq[0] : 0);
	printf("%-40s %14.2f\n", "INFO ioctl, no engine (us)", info_us);
	printf("%-40s %14.2f\n", "ATOMIC 1 op, fast path, engine (us)",
	       op_us);
	if (inline_us >= 0)
		printf("%-40s %14.2f\n", "ATOMIC 1 op, fast path, inline (us)",
		       inline_us);
	/* one line, parsed by ci/report: keep the keys stable */
	printf("bench: api=%s acquire_4k_pps=%.0f acquire_thp_pps=%.0f",
	       xgpu_api_name(dev_info.api), acq[0], acq[1]);
	printf(" fastpath_ops=%.0f pingpong_us=%.2f info_us=%.2f",
	       fast, pingpong, info_us);
	printf(" atomic1_us=%.2f atomic1_inline_us=%.2f\n", op_us, inline_us);
	return 0;
}

static int cmd_info(void)
{
	printf("abi_version: %u\n", dev_info.abi_version);
	printf("api: %s\n", xgpu_api_name(dev_info.api));
	printf("device_exclusive: %s\n",
	       dev_info.features & XGPU_FEAT_ATOMICS ? "available" :
	       dev_info.features & XGPU_FEAT_DISABLED ? "disabled (enable_atomics=0)" :
	       "unavailable");
	printf("mirror: %s\n", dev_info.features & XGPU_FEAT_MIRROR ? "yes" : "no");
	printf("page_size: %u\nmax_batch: %u\nmax_pages: %u\nmax_rw: %u\n",
	       dev_info.page_size, dev_info.max_batch, dev_info.max_pages,
	       dev_info.max_rw);
	return 0;
}

static void print_usage(void)
{
	fprintf(stderr,
		"usage: xgpu info\n"
		"       xgpu selftest [-t seconds] [-k threads] [-f fuzz-calls] [-u]\n"
		"                     [-l | -r test]\n"
		"       xgpu bench [-t seconds]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *cmd;
	int c, ret;

	if (argc < 2)
		print_usage();
	cmd = argv[1];
	optind = 2;
	while ((c = getopt(argc, argv, "t:k:f:ulr:")) != -1) {
		switch (c) {
		case 't':
			opt_seconds = atof(optarg);
			break;
		case 'k':
			opt_threads = atoi(optarg);
			if (opt_threads < 1 || opt_threads > 64)
				print_usage();
			break;
		case 'f':
			opt_fuzz = atol(optarg);
			break;
		case 'u':
			opt_unload = true;
			break;
		case 'l':
			if (strcmp(cmd, "selftest"))
				print_usage();
			list_tests();	/* needs no device */
			return 0;
		case 'r':
			opt_run = optarg;
			break;
		default:
			print_usage();
		}
	}
	dev_fd = xgpu_open();
	if (dev_fd < 0) {
		fprintf(stderr, "xgpu: cannot open /dev/xgpu: %s\n",
			strerror(-dev_fd));
		return 1;
	}
	ret = xgpu_info(dev_fd, &dev_info);
	if (ret) {
		fprintf(stderr, "xgpu: INFO: %s\n", strerror(-ret));
		return 1;
	}
	if (!strcmp(cmd, "info"))
		return cmd_info();
	if (!strcmp(cmd, "selftest"))
		return opt_run ? run_one(opt_run) : cmd_selftest();
	if (!strcmp(cmd, "bench"))
		return cmd_bench();
	print_usage();
	return 2;
}
