// SPDX-License-Identifier: GPL-2.0
/*
 * xgpu bench: acquisition rate, fast path, CPU<->device ping-pong.
 */
#define _GNU_SOURCE
#include <errno.h>
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

int cmd_bench(void)
{
	size_t npages = XGPU_MAX_PAGES;
	struct xgpu_atomic_op ops[XGPU_MAX_BATCH];
	double t0, acq[2] = { 0 }, fast, pingpong, info_us, op_us;
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
			int64_t n = xgpu_acquire(dev_fd, mem, npages);

			if (thp && n == -EBUSY && !iters) {
				/* the stock range API refuses THP tail pages */
				printf("# acquire pages/s (THP-backed): refused (EBUSY), 0\n");
				break;
			}
			if (n != (int64_t)npages)
				return fprintf(stderr, "ACQUIRE failed: %lld\n", (long long)n), 1;
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
	/* fixed costs: an ioctl that does no device work, one fast-path op */
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
	printf("%-40s %14.2f\n", "INFO ioctl (us)", info_us);
	printf("%-40s %14.2f\n", "ATOMIC 1 op, fast path (us)", op_us);
	/* one line, parsed by ci/7-report/report: keep the keys stable */
	printf("bench: api=%s acquire_4k_pps=%.0f acquire_thp_pps=%.0f",
	       xgpu_api_name(dev_info.api), acq[0], acq[1]);
	printf(" fastpath_ops=%.0f pingpong_us=%.2f info_us=%.2f",
	       fast, pingpong, info_us);
	printf(" atomic1_us=%.2f\n", op_us);
	return 0;
}
