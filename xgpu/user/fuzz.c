// SPDX-License-Identifier: GPL-2.0
/*
 * xgpu selftest: the ioctl fuzzer.
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

int test_fuzz_random_ioctls_documented_errnos(void)
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
