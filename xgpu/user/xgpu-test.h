/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the parts of the xgpu tool: options, the device, the KTAP
 * helpers (ktap.c) and the test tables of tests-*.c and fuzz.c.
 */
#ifndef XGPU_TEST_H
#define XGPU_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* options (xgpu.c) */
extern double opt_seconds;
extern int opt_threads;
extern long opt_fuzz;
extern bool opt_unload;

/* the tool's own descriptor and what INFO said about it */
extern int dev_fd;
extern struct xgpu_info dev_info;
extern uint64_t bm1[1];		/* QUERY bitmap scratch for one word */

double now(void);
/* Anonymous private memory; @thp: 1 = MADV_HUGEPAGE, 0 = MADV_NOHUGEPAGE */
void *map_anon(size_t len, int thp);
/*
 * The kernel-internal counter @key ("self_events", "revoked_unmap", ...) of
 * this process's only context, from debugfs: 0, or -ENOENT (no debugfs),
 * -ESRCH (no context), -EEXIST (several), -EINVAL (no such key).
 */
#define XGPU_DEBUGFS_CONTEXTS	"/sys/kernel/debug/xgpu/contexts"
int dbg_counter(const char *key, uint64_t *val);
/* exit status of a finished child: its exit code, or 128 + its signal */
int child_status(int status);

/* ---- KTAP ---------------------------------------------------------- */

enum { T_PASS, T_FAIL, T_SKIP };

extern char t_reason[256];

int t_fail(const char *fmt, ...);
int t_skip(const char *fmt, ...);

#define CHECK(cond, ...) do { if (!(cond)) return t_fail(__VA_ARGS__); } while (0)
#define CHECK_ERR(expr, want) do {					\
	long __r = (expr);						\
	if (__r != -(want))						\
		return t_fail("%s: got %ld, want -%s", #expr, __r, #want); \
} while (0)

static inline bool atomics(void)
{
	return dev_info.features & XGPU_FEAT_ATOMICS;
}

#define NEED_ATOMICS() do {						\
	if (!atomics())							\
		return t_skip("device atomics unavailable or disabled (xgpu info)"); \
} while (0)

struct xgpu_test {
	const char *name;
	int (*fn)(void);
};

#define TEST(fn) { #fn + 5, fn }

/* the test tables, in the order they run */
extern const struct xgpu_test tests_basic[], tests_limits[], tests_race[],
	tests_last[];
extern const size_t tests_basic_n, tests_limits_n, tests_race_n, tests_last_n;

void list_tests(void);
int run_one(const char *name);
int cmd_selftest(void);

/* fuzz.c */
int test_fuzz_random_ioctls_documented_errnos(void);
/* bench.c */
int cmd_bench(void);

#endif /* XGPU_TEST_H */
