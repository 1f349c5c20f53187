// SPDX-License-Identifier: GPL-2.0
/*
 * xgpu selftest: the basic correctness tests (one thread, one context):
 * every op, the mirror, ACQUIRE/QUERY/RELEASE, revocation by each kind of
 * CPU-side change, documented errnos for bad input.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
	       (unsigned long long)st.revoked);
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
	uint64_t bm[1], old, self = 0;
	int ret;

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
	ret = dbg_counter("self_events", &self);
	if (ret == -ENOENT)
		printf("# no %s: own MMU_NOTIFY_EXCLUSIVE events not checked\n",
		       XGPU_DEBUGFS_CONTEXTS);
	else
		CHECK(!ret && self > 0, "own MMU_NOTIFY_EXCLUSIVE not seen (debugfs: %d, %llu)",
		      ret, (unsigned long long)self);
	/* CPU touch */
	old = READ_ONCE(mem[0]);
	CHECK(old == 6, "CPU read %llu", (unsigned long long)old);
	xgpu_stats(dev_fd, &s1);
	CHECK(xgpu_query(dev_fd, (void *)mem, 1, bm) == 0, "still owned");
	CHECK(s1.revoked > s0.revoked, "STATS shows no revocation");
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
	uint64_t u0 = 0, u1 = 0;
	int r0, r1;

	CHECK(mem, "mmap");
	NEED_ATOMICS();
	CHECK(xgpu_acquire(dev_fd, mem, 2) == 2, "ACQUIRE");
	xgpu_stats(dev_fd, &s0);
	r0 = dbg_counter("revoked_unmap", &u0);
	munmap(mem, HPAGE);
	xgpu_stats(dev_fd, &s1);
	r1 = dbg_counter("revoked_unmap", &u1);
	CHECK(s1.revoked == s0.revoked + 2, "revocations %llu -> %llu",
	      (unsigned long long)s0.revoked, (unsigned long long)s1.revoked);
	if (r0 == -ENOENT)
		printf("# no %s: the revocations' event (UNMAP) not checked\n",
		       XGPU_DEBUGFS_CONTEXTS);
	else
		CHECK(!r0 && !r1 && u1 == u0 + 2,
		      "debugfs revoked_unmap %llu -> %llu (%d, %d)",
		      (unsigned long long)u0, (unsigned long long)u1, r0, r1);
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
	CHECK_ERR(ioctl(dev_fd, _IOWR(XGPU_IOC_TYPE, 0x7f, struct xgpu_info), &info) ?
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

const struct xgpu_test tests_basic[] = {
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
};

const size_t tests_basic_n = ARRAY_SIZE(tests_basic);
