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
 *                      line) or unknown name
 *
 * The parts: ktap.c (KTAP runner, helpers), tests-basic.c, tests-limits.c
 * (permissions, limits, signals), tests-race.c (threads, contexts, races),
 * tests-last.c, fuzz.c, bench.c; xgpu-test.h ties them together.
 *   xgpu bench [-t <seconds>]  acquisition, fast path, ping-pong; a table
 *                              and "bench:" key=value lines
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xgpu-test.h"

double opt_seconds = 2.0;
int opt_threads = 2;
long opt_fuzz = 100000;
bool opt_unload;
static const char *opt_run;

int dev_fd = -1;
uint64_t bm1[1];
struct xgpu_info dev_info;

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
