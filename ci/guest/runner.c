// SPDX-License-Identifier: GPL-2.0
/*
 * runner.c - run one test of a kselftest_harness program by name.
 *
 * The 5.10 harness has no test filter, so one hung or crashing test would take the
 * rest of the program with it. This file includes the test program itself (TEST_SOURCE)
 * with the harness's main() renamed, and provides a main() that lists the tests or runs
 * exactly one, so the guest can give every test its own timeout and KTAP line.
 *
 *   runner -l          list "fixture[.variant].test" names, one per line
 *   runner NAME        run NAME; exit 0 pass, 4 skip (reason on stdout), 1 fail
 *
 * The exit codes are kselftest's (KSFT_PASS 0, KSFT_FAIL 1, KSFT_SKIP 4): a usage error
 * and an unknown test name exit 1, not 2, which kselftest reads as KSFT_XFAIL.
 *
 * DEVEXCL_TEST_TIMEOUT (seconds) overrides the harness's per-test timeout.
 * Build with -DDEVEXCL_HARNESS_EXIT_CODE for harnesses that report through
 * __test_metadata.exit_code (6.x and later) instead of .passed/.skip (5.10).
 *
 * Build: cc -static -DTEST_SOURCE='"<tree>/tools/testing/selftests/vm/hmm-tests.c"' \
 *        -I<tree>/tools/testing/selftests -I<tree>/lib runner.c ...
 */
#define main harness_main
#include TEST_SOURCE
#undef main

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void full_name(char *buf, size_t len, struct __fixture_metadata *f,
		      struct __fixture_variant_metadata *v,
		      struct __test_metadata *t)
{
	snprintf(buf, len, "%s%s%s.%s", f->name, v->name[0] ? "." : "",
		 v->name, t->name);
}

int main(int argc, char **argv)
{
	struct __fixture_variant_metadata no_variant = { .name = "", };
	struct __fixture_variant_metadata *v;
	struct __fixture_metadata *f;
	struct __test_metadata *t;
	struct __test_results *results;
	const char *tmo = getenv("DEVEXCL_TEST_TIMEOUT");
	int list = argc == 2 && !strcmp(argv[1], "-l");
	char name[256];

	if (argc != 2) {
		fprintf(stderr, "usage: %s -l | %s TEST\n", argv[0], argv[0]);
		return 1;
	}
	results = mmap(NULL, sizeof(*results), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (results == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (f = __fixture_list; f; f = f->next) {
		for (v = f->variant ?: &no_variant; v; v = v->next) {
			for (t = f->tests; t; t = t->next) {
				full_name(name, sizeof(name), f, v, t);
				if (list) {
					printf("%s\n", name);
					continue;
				}
				if (strcmp(name, argv[1]))
					continue;
				if (tmo && atoi(tmo) > 0)
					t->timeout = atoi(tmo);
				t->results = results;
				__run_test(f, v, t);
#ifdef DEVEXCL_HARNESS_EXIT_CODE
				/* 6.x+ harness: the result is t->exit_code */
				if (t->exit_code == KSFT_SKIP) {
					printf("# SKIP %s\n", results->reason);
					return 4;
				}
				return t->exit_code == KSFT_PASS ? 0 : 1;
#else
				/*
				 * SKIP(exit(0), ...) in a 6.1 FIXTURE_SETUP sets the
				 * skip flag in the child only; the reason it writes to
				 * the shared results page is what survives.
				 */
				if (t->skip || results->reason[0]) {
					printf("# SKIP %s\n", results->reason);
					return 4;
				}
				return t->passed ? 0 : 1;
#endif
			}
		}
	}
	if (list)
		return 0;
	fprintf(stderr, "%s: no test named %s\n", argv[0], argv[1]);
	return 1;
}
