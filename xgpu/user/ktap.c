// SPDX-License-Identifier: GPL-2.0
/*
 * KTAP output and the test runner of "xgpu selftest", plus the helpers
 * every test file uses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "xgpu-test.h"

char t_reason[256];

double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void *map_anon(size_t len, int thp)
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

int dbg_counter(const char *key, uint64_t *val)
{
	char line[1024], want[32], *p;
	int found = 0;
	size_t klen = strlen(key);
	FILE *f = fopen(XGPU_DEBUGFS_CONTEXTS, "r");

	if (!f)
		return -ENOENT;
	snprintf(want, sizeof(want), "tgid=%d ", (int)getpid());
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, want, strlen(want)))
			continue;
		found++;
		for (p = line; (p = strstr(p, key)); p += klen)
			if ((p == line || p[-1] == ' ') && p[klen] == '=') {
				*val = strtoull(p + klen + 1, NULL, 10);
				break;
			}
		if (!p)
			found = -100;
	}
	fclose(f);
	if (found < 0)
		return -EINVAL;
	return found == 1 ? 0 : found ? -EEXIST : -ESRCH;
}

int child_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

int t_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t_reason, sizeof(t_reason), fmt, ap);
	va_end(ap);
	return T_FAIL;
}

int t_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t_reason, sizeof(t_reason), fmt, ap);
	va_end(ap);
	return T_SKIP;
}

static const struct {
	const struct xgpu_test *t;
	const size_t *n;
} tables[] = {
	{ tests_basic, &tests_basic_n },
	{ tests_limits, &tests_limits_n },
	{ tests_race, &tests_race_n },
	{ tests_last, &tests_last_n },
};

/* the @k-th test of all tables, or NULL */
static const struct xgpu_test *test_at(size_t k)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(tables); i++) {
		if (k < *tables[i].n)
			return &tables[i].t[k];
		k -= *tables[i].n;
	}
	return NULL;
}

static int ntests(void)
{
	size_t i, n = 0;

	for (i = 0; i < ARRAY_SIZE(tables); i++)
		n += *tables[i].n;
	return n;
}

void list_tests(void)
{
	const struct xgpu_test *t;
	size_t k;

	for (k = 0; (t = test_at(k)); k++)
		printf("%s\n", t->name);
}

/*
 * One test by name, for runners that give each test its own process and
 * timeout (the devexcl guest): kselftest exit codes, 0 pass, 4 skip
 * (reason on a "# SKIP" line), 1 fail (what failed on a "#" line); an
 * unknown name is a usage error, 1 as well (2 would read as XFAIL).
 */
int run_one(const char *name)
{
	const struct xgpu_test *t;
	size_t k;
	int r;

	for (k = 0; (t = test_at(k)); k++) {
		if (strcmp(t->name, name))
			continue;
		t_reason[0] = 0;
		fflush(stdout);
		r = t->fn();
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
	fprintf(stderr, "xgpu: no test named '%s' (xgpu selftest -l)\n", name);
	return 1;
}

int cmd_selftest(void)
{
	int n = ntests(), k, fails = 0, skips = 0;
	const struct xgpu_test *t;

	printf("KTAP version 1\n1..%d\n", n);
	printf("# xgpu: api %s, features %#x\n", xgpu_api_name(dev_info.api),
	       dev_info.features);
	for (k = 1; (t = test_at(k - 1)); k++) {
		double t0 = now();
		int r;

		t_reason[0] = 0;
		fflush(stdout);
		r = t->fn();
		if (r == T_FAIL) {
			fails++;
			printf("# %s: %s\nnot ok %d %s\n", t->name, t_reason,
			       k, t->name);
		} else if (r == T_SKIP) {
			skips++;
			printf("ok %d %s # SKIP %s\n", k, t->name, t_reason);
		} else {
			printf("ok %d %s # %.2fs\n", k, t->name, now() - t0);
		}
	}
	printf("# Totals: pass:%d fail:%d xfail:0 xpass:0 skip:%d error:0\n",
	       n - fails - skips, fails, skips);
	return fails ? 1 : 0;
}
