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
	TEST(test_kill_switch_disables_atomics_revokes_entries),
	TEST(test_module_unload_with_device_owned_pages),
};

const size_t tests_last_n = ARRAY_SIZE(tests_last);
