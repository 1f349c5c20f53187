// SPDX-License-Identifier: GPL-2.0
/*
 * Guest tests for the devexcl probe modules: a module written against each
 * kernel API of device-exclusive access builds, loads and works.
 *
 *   range  /dev/devexcl_probe_range  make_device_exclusive_range()
 *   page   /dev/devexcl_probe_page   make_device_exclusive()
 *
 * Each test runs once per API (fixture variant).  If the device node does
 * not exist, the test fails when the kernel command line says the API is
 * expected (devexcl.apis=<comma separated list>, e.g. devexcl.apis=range),
 * and skips otherwise.
 *
 * Outcomes are checked through /proc/self/pagemap: a device-exclusive entry
 * is a non-present swap-type entry (bit 62 set, bit 63 clear); once the CPU
 * touches the page it is present again (bit 63 set, bit 62 clear).  And
 * through the probe's STATS counters: self_events (MMU_NOTIFY_EXCLUSIVE
 * carrying the probe's own owner cookie, ignored) and invalidations (every
 * other invalidation of the registered range).
 *
 * Build (tests/probe holds devexcl_probe_uapi.h):
 *   gcc -static -Wall -I<tree>/tools/testing/selftests -I<repo>/tests/probe \
 *       devexcl-api-tests.c -o devexcl-api-tests
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

/* 5.10's harness has an unused parameter in its SIGALRM handler. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "kselftest_harness.h"
#pragma GCC diagnostic pop
#include "devexcl_probe_uapi.h"

#include "devexcl_util.h"

PROBE_FIXTURE(api);

/*
 * 16 small pages: all made exclusive, all non-present in pagemap; the
 * probe's own MMU_NOTIFY_EXCLUSIVE events are counted and not taken for
 * invalidations.  A CPU read revokes them: data intact, pages present,
 * invalidations counted.
 */
TEST_F(api, small_pages_all_exclusive_cpu_read_restores_data)
{
	const unsigned long n = 16;
	const size_t len = n * psize();
	struct devexcl_probe_stats st0, st1, st2;
	struct devexcl_probe_exclusive ex;
	char *buf;

	NEED_DEVICE();
	buf = map_private(len);
	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_EQ(0, madvise(buf, len, MADV_NOHUGEPAGE));
	fill_pattern(buf, len, 1);
	ASSERT_EQ(n, pm_present(buf, n));

	ASSERT_EQ(0, probe_stats(self->fd, &st0));
	ASSERT_EQ(0, probe_exclusive(self->fd, buf, n, &ex));
	EXPECT_EQ(0, ex.first_errno);
	ASSERT_EQ(n, ex.made);
	ASSERT_EQ(n, pm_exclusive(buf, n));

	ASSERT_EQ(0, probe_stats(self->fd, &st1));
	TH_LOG("%s: EXCLUSIVE sent %llu self events, %llu invalidations",
	       variant->name,
	       (unsigned long long)(st1.self_events - st0.self_events),
	       (unsigned long long)(st1.invalidations - st0.invalidations));
	ASSERT_GE(st1.self_events - st0.self_events, n);
	ASSERT_EQ(st0.invalidations, st1.invalidations);

	ASSERT_EQ(-1, check_pattern(buf, len, 1));
	ASSERT_EQ(n, pm_present(buf, n));
	ASSERT_EQ(0, probe_stats(self->fd, &st2));
	TH_LOG("%s: CPU read caused %llu invalidations", variant->name,
	       (unsigned long long)(st2.invalidations - st1.invalidations));
	ASSERT_GE(st2.invalidations - st1.invalidations, 1ULL);
	ASSERT_EQ(st1.self_events, st2.self_events);
	ASSERT_EQ(0, munmap(buf, len));
}

/*
 * A THP-backed 2 MiB region.  Page API: one call per page, the folio is
 * unlocked in between, so all 512 pages are made exclusive.  Range API: a
 * large folio has one lock, so at least one page is.  Either way made is
 * what pagemap shows, and a CPU read gets every byte back.
 */
TEST_F(api, thp_exclusive_count_matches_pagemap_data_intact)
{
	const unsigned long n = HPAGE_SIZE / psize();
	struct devexcl_probe_stats st0, st1;
	struct devexcl_probe_exclusive ex;
	char mode[128], *raw, *buf;
	size_t head, tail;
	long kb, excl;

	NEED_DEVICE();
	if (!thp_usable(mode, sizeof(mode)))
		SKIP(return, "THP not usable: %s %s", THP_ENABLED, mode);
	ASSERT_LE(n, (unsigned long)DEVEXCL_PROBE_MAX_PAGES);

	/* Exactly one 2 MiB-aligned VMA. */
	raw = map_private(2 * HPAGE_SIZE);
	ASSERT_NE(MAP_FAILED, raw);
	buf = hpage_align(raw);
	head = buf - raw;
	tail = raw + 2 * HPAGE_SIZE - (buf + HPAGE_SIZE);
	if (head)
		ASSERT_EQ(0, munmap(raw, head));
	if (tail)
		ASSERT_EQ(0, munmap(buf + HPAGE_SIZE, tail));
	ASSERT_EQ(0, madvise(buf, HPAGE_SIZE, MADV_HUGEPAGE));
	fill_pattern(buf, HPAGE_SIZE, 2);

	kb = anon_huge_kb(buf);
	if (kb < (long)(HPAGE_SIZE >> 10)) {
		munmap(buf, HPAGE_SIZE);
		SKIP(return, "region not THP-backed (AnonHugePages: %ld kB, THP %s)",
		     kb, mode);
	}

	ASSERT_EQ(0, probe_stats(self->fd, &st0));
	ASSERT_EQ(0, probe_exclusive(self->fd, buf, n, &ex));
	excl = pm_exclusive(buf, n);
	TH_LOG("%s: %u of %lu THP pages made exclusive, pagemap: %ld non-present, first_errno %d",
	       variant->name, ex.made, n, excl, ex.first_errno);
	if (variant->id == DEVEXCL_PROBE_API_PAGE) {
		ASSERT_EQ(0, ex.first_errno);
		ASSERT_EQ(n, ex.made);
	} else {
		ASSERT_GE(ex.made, 1U);
	}
	ASSERT_EQ((long)ex.made, excl);

	ASSERT_EQ(-1, check_pattern(buf, HPAGE_SIZE, 2));
	ASSERT_EQ((long)n, pm_present(buf, n));
	ASSERT_EQ(0, probe_stats(self->fd, &st1));
	ASSERT_GE(st1.invalidations - st0.invalidations, 1ULL);
	ASSERT_EQ(0, munmap(buf, HPAGE_SIZE));
}

/*
 * CPU stores to exclusive pages land; only the touched pages become present
 * again, the untouched ones stay device-exclusive.
 */
TEST_F(api, cpu_write_lands_and_revokes_only_touched_pages)
{
	const unsigned long n = 4;
	const size_t ps = psize();
	const size_t len = n * ps;
	struct devexcl_probe_exclusive ex;
	uint64_t *w;
	char *buf;
	size_t i;

	NEED_DEVICE();
	buf = map_private(len);
	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_EQ(0, madvise(buf, len, MADV_NOHUGEPAGE));
	fill_pattern(buf, len, 3);
	ASSERT_EQ(0, probe_exclusive(self->fd, buf, n, &ex));
	ASSERT_EQ(n, ex.made);
	ASSERT_EQ(n, pm_exclusive(buf, n));

	/* One word of page 1, all of page 2. */
	w = (uint64_t *)(buf + ps);
	w[5] = 0x5a5a5a5a5a5a5a5aULL;
	memset(buf + 2 * ps, 0xa5, ps);

	ASSERT_EQ(2, pm_present(buf + ps, 2));
	ASSERT_EQ(1, pm_exclusive(buf, 1));
	ASSERT_EQ(1, pm_exclusive(buf + 3 * ps, 1));

	ASSERT_EQ(-1, check_pattern(buf, ps, 3));
	ASSERT_EQ(0x5a5a5a5a5a5a5a5aULL, w[5]);
	w[5] = pattern_word(3, ps / 8 + 5);
	ASSERT_EQ(-1, check_pattern(buf, 2 * ps, 3));
	for (i = 0; i < ps; i++)
		ASSERT_EQ(0xa5, (unsigned char)buf[2 * ps + i]);
	/* Page 3's words sit at word offset 3 * ps / 8 of the pattern. */
	for (i = 0; i < ps / 8; i++)
		ASSERT_EQ(pattern_word(3, 3 * ps / 8 + i),
			  ((uint64_t *)(buf + 3 * ps))[i]);
	ASSERT_EQ(n, pm_present(buf, n));
	ASSERT_EQ(0, munmap(buf, len));
}

/*
 * fork() while pages are exclusive: the child reads the pattern and its
 * stores stay private; the parent reads the pattern too.
 */
TEST_F(api, fork_while_exclusive_child_and_parent_read_pattern)
{
	const unsigned long n = 16;
	const size_t len = n * psize();
	struct devexcl_probe_exclusive ex;
	int status;
	char *buf;
	pid_t pid;

	NEED_DEVICE();
	buf = map_private(len);
	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_EQ(0, madvise(buf, len, MADV_NOHUGEPAGE));
	fill_pattern(buf, len, 4);
	ASSERT_EQ(0, probe_exclusive(self->fd, buf, n, &ex));
	ASSERT_EQ(n, ex.made);
	ASSERT_EQ(n, pm_exclusive(buf, n));

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		if (check_pattern(buf, len, 4) != -1)
			_exit(1);
		memset(buf, 0xee, len);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status)) {
		TH_LOG("child read wrong data");
	}

	ASSERT_EQ(-1, check_pattern(buf, len, 4));
	ASSERT_EQ(n, pm_present(buf, n));
	ASSERT_EQ(0, munmap(buf, len));
}

/* The context belongs to the opener's mm: a forked child gets EBADF. */
TEST_F(api, fd_used_from_forked_child_fails_with_ebadf)
{
	const size_t len = psize();
	int status;
	char *buf;
	pid_t pid;

	NEED_DEVICE();
	buf = map_private(len);
	ASSERT_NE(MAP_FAILED, buf);
	fill_pattern(buf, len, 5);

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct devexcl_probe_exclusive ex;
		struct devexcl_probe_stats st;

		if (probe_stats(self->fd, &st) != -EBADF)
			_exit(1);
		if (probe_exclusive(self->fd, buf, 1, &ex) != -EBADF)
			_exit(2);
		if (pm_present(buf, 1) != 1)
			_exit(3);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(-1, check_pattern(buf, len, 5));
	ASSERT_EQ(0, munmap(buf, len));
}

/*
 * A process that exits with exclusive pages and its probe fd still open:
 * exit tears the mm down (the notifier sees the release), then the fd is
 * released (notifier removed, mm dropped).  The kernel log scan of the
 * pipeline catches anything that goes wrong on the way.
 */
TEST_F(api, exit_with_exclusive_pages_and_open_fd_is_clean)
{
	const unsigned long n = 8;
	char path[64];
	int status;
	pid_t pid;

	NEED_DEVICE();
	snprintf(path, sizeof(path), PROBE_DEV_FMT, variant->name);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct devexcl_probe_exclusive ex;
		size_t len = n * psize();
		char *buf = map_private(len);
		int fd = open(path, O_RDWR);

		if (buf == MAP_FAILED || fd < 0)
			_exit(1);
		madvise(buf, len, MADV_NOHUGEPAGE);
		fill_pattern(buf, len, 9);
		if (probe_exclusive(fd, buf, n, &ex) || ex.made != n)
			_exit(2);
		if (pm_exclusive(buf, n) != (long)n)
			_exit(3);
		_exit(0);	/* no munmap, no close */
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
}

/*
 * Bad arguments fail with EINVAL and do nothing: npages 0 and 513,
 * unaligned address, wrong size field, unknown flags, hold_ms without HOLD,
 * HOLD with 2 pages or hold_ms 0 or above the maximum.
 */
TEST_F(api, bad_arguments_fail_with_einval)
{
	const unsigned long n = 2;
	const size_t len = n * psize();
	struct devexcl_probe_exclusive ex;
	struct devexcl_probe_stats st;
	char *buf;

	NEED_DEVICE();
	buf = map_private(len);
	ASSERT_NE(MAP_FAILED, buf);
	fill_pattern(buf, len, 6);

	ASSERT_EQ(-EINVAL, probe_exclusive(self->fd, buf, 0, &ex));
	ASSERT_EQ(-EINVAL, probe_exclusive(self->fd, buf,
					   DEVEXCL_PROBE_MAX_PAGES + 1, &ex));
	ASSERT_EQ(-EINVAL, probe_exclusive(self->fd, buf + 1, 1, &ex));

	memset(&ex, 0, sizeof(ex));
	ex.size = sizeof(ex) - 1;
	ex.addr = (uintptr_t)buf;
	ex.npages = 1;
	ASSERT_EQ(-1, ioctl(self->fd, DEVEXCL_PROBE_IOC_EXCLUSIVE, &ex));
	ASSERT_EQ(EINVAL, errno);
	ex.size = sizeof(ex);
	ex.flags = 1U << 31;
	ASSERT_EQ(-1, ioctl(self->fd, DEVEXCL_PROBE_IOC_EXCLUSIVE, &ex));
	ASSERT_EQ(EINVAL, errno);
	ex.flags = 0;
	ex.hold_ms = 1;
	ASSERT_EQ(-1, ioctl(self->fd, DEVEXCL_PROBE_IOC_EXCLUSIVE, &ex));
	ASSERT_EQ(EINVAL, errno);
	ex.flags = DEVEXCL_PROBE_EXCL_HOLD;
	ex.hold_ms = 0;
	ASSERT_EQ(-1, ioctl(self->fd, DEVEXCL_PROBE_IOC_EXCLUSIVE, &ex));
	ASSERT_EQ(EINVAL, errno);
	ex.hold_ms = DEVEXCL_PROBE_MAX_HOLD_MS + 1;
	ASSERT_EQ(-1, ioctl(self->fd, DEVEXCL_PROBE_IOC_EXCLUSIVE, &ex));
	ASSERT_EQ(EINVAL, errno);
	ex.hold_ms = 1;
	ex.npages = 2;
	ASSERT_EQ(-1, ioctl(self->fd, DEVEXCL_PROBE_IOC_EXCLUSIVE, &ex));
	ASSERT_EQ(EINVAL, errno);

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st) + 8;
	ASSERT_EQ(-1, ioctl(self->fd, DEVEXCL_PROBE_IOC_STATS, &st));
	ASSERT_EQ(EINVAL, errno);

	ASSERT_EQ(n, pm_present(buf, n));
	ASSERT_EQ(-1, check_pattern(buf, len, 6));
	ASSERT_EQ(0, munmap(buf, len));
}

/*
 * An unmapped range: the ioctl succeeds, made is 0 and first_errno is
 * EFAULT (the probe reports per-page failures in first_errno, it does not
 * fail the ioctl).
 */
TEST_F(api, unmapped_range_made_zero_first_errno_efault)
{
	const unsigned long n = 4;
	const size_t len = n * psize();
	struct devexcl_probe_exclusive ex;
	char *buf;

	NEED_DEVICE();
	buf = map_private(len);
	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_EQ(0, munmap(buf, len));

	ASSERT_EQ(0, probe_exclusive(self->fd, buf, n, &ex));
	ASSERT_EQ(0U, ex.made);
	ASSERT_EQ(EFAULT, ex.first_errno);
}

/*
 * Shared memory is not anonymous: MAP_SHARED|MAP_ANONYMOUS and a shared
 * memfd mapping are never made exclusive; the data stays intact.  The range
 * API reports no errno for pages it found but refused (first_errno 0), the
 * page API reports EOPNOTSUPP; both are logged.
 */
TEST_F(api, shared_anon_and_memfd_not_made_exclusive)
{
	const unsigned long n = 4;
	const size_t len = n * psize();
	struct devexcl_probe_exclusive ex;
	const char *what[2] = { "MAP_SHARED|MAP_ANONYMOUS", "memfd MAP_SHARED" };
	int k, mfd = -1;
	char *buf;

	NEED_DEVICE();
	for (k = 0; k < 2; k++) {
		if (k == 0) {
			buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		} else {
			mfd = (int)syscall(SYS_memfd_create, "devexcl-probe", 0);
			ASSERT_GE(mfd, 0);
			ASSERT_EQ(0, ftruncate(mfd, len));
			buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
				   MAP_SHARED, mfd, 0);
		}
		ASSERT_NE(MAP_FAILED, buf);
		fill_pattern(buf, len, 7 + k);

		ASSERT_EQ(0, probe_exclusive(self->fd, buf, n, &ex));
		TH_LOG("%s API, %s: made %u, first_errno %d (%s)",
		       variant->name, what[k], ex.made, ex.first_errno,
		       strerror(ex.first_errno));
		ASSERT_EQ(0U, ex.made);
		ASSERT_EQ(0, pm_exclusive(buf, n));
		ASSERT_EQ(-1, check_pattern(buf, len, 7 + k));
		ASSERT_EQ(0, munmap(buf, len));
	}
	if (mfd >= 0)
		close(mfd);
}

TEST_HARNESS_MAIN
