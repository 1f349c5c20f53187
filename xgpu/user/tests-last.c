// SPDX-License-Identifier: GPL-2.0
/*
 * xgpu selftest: the tests that run last: the fuzzer, process exit, the
 * kill switch and module unload (which ends the run's use of the device).
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

static int test_process_exit_with_device_owned_pages(void)
{
	int status;
	pid_t pid;

	NEED_ATOMICS();
	pid = fork();
	if (!pid) {
		char *mem = map_anon(HPAGE, 1);
		int fd = xgpu_open();
		int64_t n;

		if (!mem || fd < 0)
			_exit(1);
		n = xgpu_acquire(fd, mem, 64);
		if (n == -EBUSY) {
			/* the stock range API refuses THP tail pages: 4 KiB pages */
			mem = map_anon(HPAGE, 0);
			if (!mem)
				_exit(1);
			n = xgpu_acquire(fd, mem, 64);
		}
		_exit(n == 64 ? 0 : 2);	/* no close */
	}
	CHECK(pid > 0, "fork");
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status), "child status %#x",
	      status);
	return T_PASS;
}

#define ENABLE_ATOMICS	"/sys/module/xgpu/parameters/enable_atomics"
/* entries of the context the kill switch drains while open() is timed */
#define KS_PAGES	4096

struct ks_writer {
	int fd;
	int done;
};

static void *ks_write_zero(void *arg)
{
	struct ks_writer *w = arg;

	if (pwrite(w->fd, "0", 1, 0) != 1)
		perror("enable_atomics=0");
	STORE_RELEASE(w->done, 1);
	return NULL;
}

/* atomic entries of @fd in [mem, mem + npages pages), or -errno */
static int64_t owned_in(int fd, char *mem, unsigned long npages)
{
	uint64_t bm[XGPU_MAX_PAGES / 64];
	int64_t n, total = 0;
	unsigned long i;

	for (i = 0; i < npages; i += XGPU_MAX_PAGES) {
		n = xgpu_query(fd, mem + i * PAGE, XGPU_MAX_PAGES, bm);
		if (n < 0)
			return n;
		total += n;
	}
	return total;
}

/* map KS_PAGES pages, open a context and acquire them all; 0 or -errno */
static int ks_setup(char **mem, int *fd)
{
	unsigned long i;
	int64_t n;

	*fd = -1;
	*mem = map_anon(KS_PAGES * PAGE, 0);
	if (!*mem)
		return -ENOMEM;
	*fd = xgpu_open();
	if (*fd < 0)
		return *fd;
	for (i = 0; i < KS_PAGES; i += XGPU_MAX_PAGES) {
		n = xgpu_acquire(*fd, *mem + i * PAGE, XGPU_MAX_PAGES);
		if (n != XGPU_MAX_PAGES)
			return n < 0 ? (int)n : -EAGAIN;
	}
	return 0;
}

/* until the drain of @fd's KS_PAGES entries has begun: entries left */
static int64_t ks_wait_drain(int fd, char *mem, struct ks_writer *w)
{
	double t0 = now();
	int64_t left;

	do {
		left = owned_in(fd, mem, KS_PAGES);
	} while (left == KS_PAGES && !LOAD_ACQUIRE(w->done) && now() - t0 < 60);
	return left;
}

/*
 * The kill switch drains each context without the lock that open() and
 * close() take: while it gives back the pages of a big context, another
 * open() of the device returns at once, long before the drain ends.  (It
 * used to drain under that lock: every open() and close() of every user
 * waited for all contexts to be drained.)  Under TCG with KASAN the drain
 * of 4096 entries takes far longer than one open(); on a fast machine the
 * drain may end first, which the test reports as a skip.
 */
static int test_kill_switch_drain_does_not_block_open(void)
{
	struct ks_writer w = { .fd = -1 };
	int64_t before = -1, after = -1;
	int fd = -1, fd2 = -1, ret;
	char *mem = NULL;
	pthread_t th;

	NEED_ATOMICS();
	w.fd = open(ENABLE_ATOMICS, O_WRONLY);
	if (w.fd < 0)
		return t_skip("enable_atomics parameter not writable");
	ret = ks_setup(&mem, &fd);
	if (!ret && pthread_create(&th, NULL, ks_write_zero, &w))
		ret = -EAGAIN;
	if (!ret) {
		before = ks_wait_drain(fd, mem, &w);
		fd2 = xgpu_open();
		after = owned_in(fd, mem, KS_PAGES);
		pthread_join(th, NULL);
	}
	if (pwrite(w.fd, "1", 1, 0) != 1)
		ret = ret ?: -EIO;
	close(w.fd);
	if (fd2 >= 0)
		close(fd2);
	if (fd >= 0)
		close(fd);
	if (mem)
		munmap(mem, KS_PAGES * PAGE);
	CHECK(!ret, "setup (%d entries) or enable_atomics=1: %s", KS_PAGES, strerror(-ret));
	CHECK(fd2 >= 0, "open() during the drain: %s", strerror(-fd2));
	if (before <= 0 || before == KS_PAGES)
		return t_skip("drain of %d entries not seen under way (%lld left at open())",
			      KS_PAGES, (long long)before);
	/* the drain was under way when open() began: it must not have waited for it */
	CHECK(after > 0, "open() waited for the whole drain (%lld of %d entries left at its start)",
	      (long long)before, KS_PAGES);
	printf("# open() during the drain: %lld of %d entries left before, %lld after\n",
	       (long long)before, KS_PAGES, (long long)after);
	return T_PASS;
}

/*
 * A context closed (@how 0) or whose process exits (@how 1) while the kill
 * switch drains it: the kill switch keeps it until its drain ends and then
 * frees it (KASAN reports a use after free otherwise).  Afterwards the
 * context is gone from debugfs.  This guards the reference the kill switch
 * takes; the code before it drained under the lock close() takes, so this
 * could not fail there.
 */
static int ks_close_during_drain(int how)
{
	struct ks_writer w = { .fd = -1 };
	int p[2], status, st = -1, ret = 0;
	pthread_t th;
	char line[512], c;
	pid_t pid;
	FILE *f;

	w.fd = open(ENABLE_ATOMICS, O_WRONLY);
	if (w.fd < 0)
		return t_skip("enable_atomics parameter not writable");
	if (pipe(p)) {
		close(w.fd);
		return t_fail("pipe");
	}
	fflush(stdout);
	pid = fork();
	if (!pid) {
		char *mem;
		int fd;

		close(p[0]);
		if (ks_setup(&mem, &fd) || write(p[1], "r", 1) != 1)
			_exit(1);
		/* wait for the drain (the parent's write) to begin */
		while (owned_in(fd, mem, KS_PAGES) == KS_PAGES)
			;
		if (how == 0)
			close(fd);
		_exit(0);
	}
	close(p[1]);
	if (pid < 0 || read(p[0], &c, 1) != 1)
		ret = -ECHILD;
	close(p[0]);
	if (!ret && pthread_create(&th, NULL, ks_write_zero, &w))
		ret = -EAGAIN;
	if (!ret)
		pthread_join(th, NULL);
	if (pid > 0) {
		waitpid(pid, &status, 0);
		st = child_status(status);
	}
	if (pwrite(w.fd, "1", 1, 0) != 1)
		ret = ret ?: -EIO;
	close(w.fd);
	CHECK(!ret, "setup: %s", strerror(-ret));
	CHECK(st == 0, "child (%s during the drain): status %d", how ? "exit" : "close", st);
	f = fopen(XGPU_DEBUGFS_CONTEXTS, "r");
	if (!f)
		return T_PASS;	/* no debugfs: KASAN and the log are the check */
	while (fgets(line, sizeof(line), f)) {
		int tgid;

		if (sscanf(line, "tgid=%d ", &tgid) == 1 && tgid == pid) {
			fclose(f);
			return t_fail("the context of pid %d is still listed: %s", pid, line);
		}
	}
	fclose(f);
	return T_PASS;
}

static int test_kill_switch_races_close_and_exit(void)
{
	int r;

	NEED_ATOMICS();
	r = ks_close_during_drain(0);
	if (r != T_PASS)
		return r;
	return ks_close_during_drain(1);
}

static int test_kill_switch_disables_atomics_revokes_entries(void)
{
	const char *param = "/sys/module/xgpu/parameters/enable_atomics";
	struct xgpu_info i;
	uint64_t v = 0;
	int64_t owned;
	char *mem;
	int fd, ret;

	NEED_ATOMICS();
	fd = open(param, O_WRONLY);
	if (fd < 0)
		return t_skip("enable_atomics parameter not writable");
	mem = map_anon(HPAGE, 0);
	CHECK(mem, "mmap");
	CHECK(xgpu_acquire(dev_fd, mem, 16) == 16, "ACQUIRE");
	ret = write(fd, "0", 1) == 1 ? 0 : -1;
	CHECK(!ret, "write 0");
	xgpu_info(dev_fd, &i);
	owned = xgpu_query(dev_fd, mem, 16, bm1);
	ret = xgpu_atomic1(dev_fd, XGPU_OP_ADD, 8, &v, 1, 0, NULL);
	CHECK(pwrite(fd, "1", 1, 0) == 1, "write 1");
	close(fd);
	munmap(mem, HPAGE);
	CHECK(ret == -EOPNOTSUPP, "ATOMIC with enable_atomics=0: %d", ret);
	CHECK(i.features & XGPU_FEAT_DISABLED, "INFO does not say disabled");
	CHECK(owned == 0, "%lld atomic entries survived the kill switch",
	      (long long)owned);
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

const struct xgpu_test tests_last[] = {
	TEST(test_fuzz_random_ioctls_documented_errnos),
	TEST(test_process_exit_with_device_owned_pages),
	TEST(test_kill_switch_drain_does_not_block_open),
	TEST(test_kill_switch_races_close_and_exit),
	TEST(test_kill_switch_disables_atomics_revokes_entries),
	TEST(test_module_unload_with_device_owned_pages),
};

const size_t tests_last_n = ARRAY_SIZE(tests_last);
