// SPDX-License-Identifier: GPL-2.0
/*
 * devexcl-bench - per-page cost of device-exclusive operations (issue 19)
 *
 * Measures what it costs to make anonymous pages device-exclusive and to
 * take them back with the CPU, so that the patched LTS kernels (5.10, 6.1,
 * 6.12) can be compared with upstream 7.1 on release kernels.  It runs as
 * root inside the test guest (QEMU TCG, 2 vCPUs, 2 GiB); the host boots each
 * kernel several times, interleaved, and computes medians and ratios from
 * the "bench:" lines printed on stdout.  tests/bench/README.md documents the
 * method and the output, which a host script parses: keep them in step.
 *
 * Paths (a path whose device node is missing is skipped with the reason):
 *   range  /dev/devexcl_probe_range: make_device_exclusive_range() (5.14 API)
 *   page   /dev/devexcl_probe_page: make_device_exclusive() (6.15 API)
 *   hmm    /dev/hmm_dmirror0: test_hmm's HMM_DMIRROR_EXCLUSIVE, compiled in
 *          only when the kernel tree's lib/test_hmm_uapi.h defines it (its
 *          number differs between 5.10 and 6.x: build against the tree of
 *          the kernel that runs the program)
 * Memory: "4k" (MADV_NOHUGEPAGE) and "thp" (MADV_HUGEPAGE, checked to be
 * THP-backed).  Operations: "convert" (the ioctls that make the pages
 * device-exclusive), "faultback" (a CPU store to each page, the fault that
 * restores it) and "pingpong" (1 page: convert, store, again).
 *
 * Build against the lib/ of the kernel that runs it, static, with -I<tree>/lib
 * and -I<repo>/tests/probe (the README gives the command line).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>

#include "devexcl_probe_uapi.h"
#include "test_hmm_uapi.h"

/* What the kernel's headers would give a kernel file. */
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define BIT(n)		(1UL << (n))
#define BIT_ULL(n)	(1ULL << (n))
#define __printf(a, b)	__attribute__((format(printf, a, b)))

#define THP_ENABLED	"/sys/kernel/mm/transparent_hugepage/enabled"
#define THP_PMD_SIZE	"/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
#define COMPACT_MEMORY	"/proc/sys/vm/compact_memory"
#define CLOCKSOURCE	"/sys/devices/system/clocksource/clocksource0/current_clocksource"

/* /proc/self/pagemap: a device-exclusive entry is a non-present swap entry */
#define PM_SWAP		BIT_ULL(62)
#define PM_PRESENT	BIT_ULL(63)
#define PM_PFN_MASK	(BIT_ULL(55) - 1)
#define KPF_THP		BIT_ULL(22)

/*
 * Most pages per ioctl, for every path: the probes' limit, and the size of
 * the bounce buffer HMM_DMIRROR_EXCLUSIVE copies the mirror's view into.
 */
#define CHUNK		DEVEXCL_PROBE_MAX_PAGES

#define NSEC_PER_SEC	1000000000ULL
#define NSEC_PER_MSEC	1000000ULL

#define DEFAULT_REPS	7
#define DEFAULT_MIN_MS	20
#define MAX_REPS	1000
#define MAX_MIN_MS	600000
#define MAX_SIZES	16
#define MAX_SIZE	BIT(20)		/* pages: 4 GiB, twice the guest's RAM */
#define THP_TRIES	2		/* regions tried before a THP skip */
#define CLOCK_SAMPLES	1001		/* clock_gettime() pairs timed */

enum { PATH_RANGE, PATH_PAGE, PATH_HMM, PATH_NULL, NR_PATHS };
enum { MEM_4K, MEM_THP, NR_MEMS };
enum { OP_CONVERT, OP_FAULTBACK, OP_PINGPONG, NR_OPS };

/*
 * "null" is a test hook, left out of the usage text: a fake device that
 * makes nothing exclusive and claims one page per call, like the range API
 * on a THP.  It drives the chunking, the pagemap fallback, the timing, the
 * statistics and the data checks on a machine without the modules.  Its
 * numbers mean nothing and must never be reported.
 */
static const char *const path_names[NR_PATHS] = {
	[PATH_RANGE] = "range",
	[PATH_PAGE] = "page",
	[PATH_HMM] = "hmm",
	[PATH_NULL] = "null",
};

static const char *const path_devs[NR_PATHS] = {
	[PATH_RANGE] = "/dev/devexcl_probe_range",
	[PATH_PAGE] = "/dev/devexcl_probe_page",
	[PATH_HMM] = "/dev/hmm_dmirror0",
	[PATH_NULL] = NULL,
};

static const char *const mem_names[NR_MEMS] = {
	[MEM_4K] = "4k",
	[MEM_THP] = "thp",
};

static const char *const op_names[NR_OPS] = {
	[OP_CONVERT] = "convert",
	[OP_FAULTBACK] = "faultback",
	[OP_PINGPONG] = "pingpong",
};

static const char *const op_units[NR_OPS] = {
	[OP_CONVERT] = "ns/page",
	[OP_FAULTBACK] = "ns/page",
	[OP_PINGPONG] = "ns/iter",
};

static struct {
	unsigned int paths;	/* BIT(PATH_*) */
	unsigned int mems;	/* BIT(MEM_*) */
	unsigned int ops;	/* BIT(OP_*) */
	unsigned long sizes[MAX_SIZES];
	unsigned int nr_sizes;
	unsigned int reps;
	unsigned int min_ms;
} opt = {
	.paths = BIT(PATH_RANGE) | BIT(PATH_PAGE) | BIT(PATH_HMM),
	.mems = BIT(MEM_4K) | BIT(MEM_THP),
	.ops = BIT(OP_CONVERT) | BIT(OP_FAULTBACK) | BIT(OP_PINGPONG),
	.sizes = { 1, 16, 512, 262144 },
	.nr_sizes = 4,
	.reps = DEFAULT_REPS,
	.min_ms = DEFAULT_MIN_MS,
};

static unsigned int nr_measured, nr_skipped, nr_errors;
static size_t page_size;
static size_t thp_size;		/* PMD size */
static unsigned long thp_pages;
static int pm_fd = -1;		/* /proc/self/pagemap */
static int kpf_fd = -1;		/* /proc/kpageflags, root only */

/* One (path, mem, size) measurement and its buffer. */
struct bench {
	int path;
	int mem;
	int fd;			/* the device, -1 for the null hook */
	__u64 *bounce;		/* hmm: the mirror's view of one chunk */
	unsigned long size;	/* pages measured, from the region's start */
	unsigned long npages;	/* pages in the region (a THP multiple) */
	char *buf;		/* the region, thp_size aligned */
	char *raw;		/* the mapping, with PROT_NONE guards */
	size_t raw_len;
	__u64 gen;		/* stamp generation in the measured pages */
	const char *op;		/* what an error is reported against */
	bool failed;
	unsigned long revoked;	/* pages the kernel took back before the check */
};

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

/* Names of the errnos this program expects to meet. */
static const struct {
	int err;
	const char *name;
} errno_names[] = {
	{ EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { EINTR, "EINTR" },
	{ EIO, "EIO" }, { ENXIO, "ENXIO" }, { EBADF, "EBADF" },
	{ EAGAIN, "EAGAIN" }, { ENOMEM, "ENOMEM" }, { EACCES, "EACCES" },
	{ EFAULT, "EFAULT" }, { EBUSY, "EBUSY" }, { ENODEV, "ENODEV" },
	{ EINVAL, "EINVAL" }, { ENOSPC, "ENOSPC" }, { ENOTTY, "ENOTTY" },
	{ EOPNOTSUPP, "EOPNOTSUPP" },
};

static const char *errno_name(int err)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(errno_names); i++)
		if (errno_names[i].err == err)
			return errno_names[i].name;
	return "E?";
}

/* "errno=16 EBUSY (Device or resource busy)"; up to 4 per printf */
static const char *errstr(int err)
{
	static char bufs[4][96];
	static unsigned int next;
	char *buf = bufs[next++ % ARRAY_SIZE(bufs)];

	snprintf(buf, sizeof(bufs[0]), "errno=%d %s (%s)", err,
		 errno_name(err), strerror(err));
	return buf;
}

static __printf(3, 4) void print_skip(int path, int mem, const char *fmt, ...)
{
	va_list ap;

	printf("bench: skip path=%s", path_names[path]);
	if (mem >= 0)
		printf(" mem=%s", mem_names[mem]);
	printf(" reason=");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	nr_skipped++;
}

/* An error that belongs to no measurement: every key, with "-" values. */
static __printf(2, 3) void print_setup_error(const char *path, const char *fmt, ...)
{
	va_list ap;

	printf("bench: error path=%s mem=- size=- op=setup ", path);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	nr_errors++;
}

/* The first error of a series ends it; b->failed stops the next steps. */
static __printf(2, 3) void bench_error(struct bench *b, const char *fmt, ...)
{
	va_list ap;

	printf("bench: error path=%s mem=%s size=%lu op=%s ", path_names[b->path],
	       mem_names[b->mem], b->size, b->op);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	nr_errors++;
	b->failed = true;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/*
 * Quantile @p of the @n sorted values @s by linear interpolation between
 * the order statistics at (n - 1) * p (Hyndman & Fan type 7, the default of
 * R and numpy).
 */
static double quantile(const double *s, unsigned int n, double p)
{
	double h = (n - 1) * p;
	unsigned int lo = (unsigned int)h;

	if (lo + 1 >= n)
		return s[n - 1];
	return s[lo] + (h - lo) * (s[lo + 1] - s[lo]);
}

static void print_result(struct bench *b, int op, double *vals)
{
	unsigned int n = opt.reps;

	qsort(vals, n, sizeof(*vals), cmp_double);
	printf("bench: path=%s mem=%s size=%lu op=%s unit=%s n=%u",
	       path_names[b->path], mem_names[b->mem], b->size, op_names[op],
	       op_units[op], n);
	printf(" median=%.1f min=%.1f q1=%.1f q3=%.1f max=%.1f revoked=%lu\n",
	       quantile(vals, n, 0.5), vals[0], quantile(vals, n, 0.25),
	       quantile(vals, n, 0.75), vals[n - 1], b->revoked);
	nr_measured++;
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static inline __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/* What every word of page @i holds after setup; never 0. */
static inline __u64 pattern(unsigned long i)
{
	return ((__u64)i + 1) * 0x9e3779b97f4a7c15ULL ^ 0x5851f42d4c957f2dULL;
}

/*
 * Word 0 of page @i after the CPU's store of generation @gen: every
 * faultback stores a new generation, so a store that did not land (or data
 * that went back to an old copy) shows in the data check.  Generation 0 is
 * the pattern itself.
 */
static inline __u64 stamp(unsigned long i, __u64 gen)
{
	return pattern(i) ^ (gen * 0xbf58476d1ce4e5b9ULL);
}

/* A store the compiler must emit: it is the CPU access being measured. */
static inline void store_word(void *p, __u64 val)
{
	*(volatile __u64 *)p = val;
}

static inline __u64 *page_words(struct bench *b, unsigned long i)
{
	return (__u64 *)(b->buf + i * page_size);
}

static int read_text(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0)
		n = -errno;
	else
		buf[n] = '\0';
	close(fd);
	return n;
}

/* The bracketed word of transparent_hugepage/enabled, or "unavailable". */
static const char *thp_mode(void)
{
	static char buf[128];
	char *open, *close;

	if (read_text(THP_ENABLED, buf, sizeof(buf)) <= 0)
		return "unavailable";
	open = strchr(buf, '[');
	close = open ? strchr(open, ']') : NULL;
	if (!close)
		return "unavailable";
	*close = '\0';
	return open + 1;
}

/* AnonHugePages (kB) of the VMA that starts at @addr, -1 if not found. */
static long anon_huge_kb(void *addr)
{
	unsigned long start, end;
	bool in = false;
	char line[4096];
	long kb = -1;
	FILE *f;

	f = fopen("/proc/self/smaps", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			if (in)
				break;
			in = start == (uintptr_t)addr;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/* Pagemap entries of @n (at most CHUNK) pages from page @first; 0 or -errno. */
static int read_pagemap(struct bench *b, unsigned long first,
			unsigned long n, __u64 *ent)
{
	off_t off = ((uintptr_t)b->buf / page_size + first) * sizeof(*ent);
	ssize_t got;

	if (pm_fd < 0)
		return -ENOENT;
	got = pread(pm_fd, ent, n * sizeof(*ent), off);
	if (got < 0)
		return -errno;
	return got == (ssize_t)(n * sizeof(*ent)) ? 0 : -EIO;
}

static inline bool is_devexcl(__u64 ent)
{
	return (ent & (PM_SWAP | PM_PRESENT)) == PM_SWAP;
}

/* ------------------------------------------------------------------ */
/* Memory                                                              */
/* ------------------------------------------------------------------ */

static void unmap_region(struct bench *b)
{
	if (b->raw)
		munmap(b->raw, b->raw_len);
	b->raw = NULL;
	b->buf = NULL;
}

/*
 * Map the region, set its THP advice and fill every word of page i with
 * pattern(i).  The region is thp_size aligned and has PROT_NONE guards on
 * both sides, so that its VMA never merges with a neighbour: smaps then
 * reports the region alone.  Full pages of non-zero data also keep 6.12's
 * underused-THP shrinker away from the THPs.  Returns 0, or 1 after a skip
 * line (the mapping failed).
 */
static int map_region(struct bench *b)
{
	size_t len = b->npages * page_size;
	int advice = b->mem == MEM_THP ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;
	unsigned long i, j, words = page_size / sizeof(__u64);
	void *raw;

	b->raw_len = len + 2 * thp_size;
	raw = mmap(NULL, b->raw_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (raw == MAP_FAILED) {
		print_skip(b->path, b->mem, "size %lu: mmap of %zu bytes: %s",
			   b->size, b->raw_len, errstr(errno));
		return 1;
	}
	b->raw = raw;
	b->buf = (char *)(((uintptr_t)raw + page_size + thp_size - 1) &
			  ~(uintptr_t)(thp_size - 1));
	if (mprotect(b->buf, len, PROT_READ | PROT_WRITE)) {
		print_skip(b->path, b->mem, "size %lu: mmap (mprotect) of %zu bytes: %s",
			   b->size, len, errstr(errno));
		unmap_region(b);
		return 1;
	}
	/* Without CONFIG_TRANSPARENT_HUGEPAGE there is nothing to avoid. */
	if (madvise(b->buf, len, advice) && b->mem == MEM_THP) {
		print_skip(b->path, b->mem, "size %lu: MADV_HUGEPAGE: %s",
			   b->size, errstr(errno));
		unmap_region(b);
		return 1;
	}
	for (i = 0; i < b->npages; i++) {
		__u64 *w = page_words(b, i), v = pattern(i);

		for (j = 0; j < words; j++)
			w[j] = v;
	}
	b->gen = 0;
	return 0;
}

/*
 * Map and fill the region of b->size pages; "thp" must be THP-backed
 * everywhere (smaps AnonHugePages of the region's VMA), else a second region
 * is tried after compaction, then the size is skipped.  Returns 0, or 1
 * after a skip line.
 */
static int setup_region(struct bench *b)
{
	size_t kb_want;
	long kb = -1;
	int try;

	b->npages = b->size;
	if (b->mem == MEM_THP)
		b->npages = (b->size + thp_pages - 1) / thp_pages * thp_pages;
	kb_want = b->npages * page_size / 1024;
	for (try = 1; try <= THP_TRIES; try++) {
		if (map_region(b))
			return 1;
		kb = anon_huge_kb(b->buf);
		if (kb < 0) {
			print_skip(b->path, b->mem,
				   "size %lu: no AnonHugePages in /proc/self/smaps for the region",
				   b->size);
			unmap_region(b);
			return 1;
		}
		if (b->mem == MEM_4K) {
			if (!kb)
				return 0;
			print_skip(b->path, b->mem,
				   "size %lu: %ld kB of the MADV_NOHUGEPAGE region are THP",
				   b->size, kb);
			unmap_region(b);
			return 1;
		}
		if ((size_t)kb == kb_want)
			return 0;
		unmap_region(b);
		/* Root only; a failure just leaves the second try as it is. */
		if (try < THP_TRIES) {
			int fd = open(COMPACT_MEMORY, O_WRONLY | O_CLOEXEC);

			if (fd >= 0) {
				if (write(fd, "1", 1) < 0)
					fprintf(stderr, "# devexcl-bench: compact_memory: %s\n",
						strerror(errno));
				close(fd);
			}
		}
	}
	print_skip(b->path, b->mem,
		   "size %lu: THP not obtained: %ld of %zu kB AnonHugePages, %d tries",
		   b->size, kb, kb_want, THP_TRIES);
	return 1;
}

/*
 * How many pages of the region /proc/kpageflags shows as THP (PTE-mapped
 * or not), or -1 if it cannot tell (not root: no PFNs, no kpageflags).
 */
static long thp_pages_now(struct bench *b)
{
	__u64 ent[CHUNK], flags;
	unsigned long first, i, n;
	long thp = 0;

	if (kpf_fd < 0)
		return -1;
	for (first = 0; first < b->npages; first += n) {
		n = b->npages - first < CHUNK ? b->npages - first : CHUNK;
		if (read_pagemap(b, first, n, ent))
			return -1;
		for (i = 0; i < n; i++) {
			__u64 pfn = ent[i] & PM_PFN_MASK;

			if (!(ent[i] & PM_PRESENT))
				continue;
			if (!pfn)
				return -1;
			if (pread(kpf_fd, &flags, sizeof(flags),
				  pfn * sizeof(flags)) != sizeof(flags))
				return -1;
			thp += !!(flags & KPF_THP);
		}
	}
	return thp;
}

/* ------------------------------------------------------------------ */
/* The device calls                                                    */
/* ------------------------------------------------------------------ */

/* One EXCLUSIVE call, prepared before the clock starts. */
struct req {
	unsigned long nr;
	void *arg;
	unsigned long first;	/* page index in the region */
	unsigned long n;
	union {
		struct devexcl_probe_exclusive ex;
#ifdef HMM_DMIRROR_EXCLUSIVE
		struct hmm_dmirror_cmd cmd;
#endif
	};
};

static void req_prep(struct bench *b, struct req *r, unsigned long first,
		     unsigned long n)
{
	uintptr_t addr = (uintptr_t)(b->buf + first * page_size);

	memset(r, 0, sizeof(*r));
	r->first = first;
	r->n = n;
	switch (b->path) {
	case PATH_RANGE:
	case PATH_PAGE:
		r->ex.size = sizeof(r->ex);
		r->ex.addr = addr;
		r->ex.npages = n;
		r->nr = DEVEXCL_PROBE_IOC_EXCLUSIVE;
		r->arg = &r->ex;
		break;
#ifdef HMM_DMIRROR_EXCLUSIVE
	case PATH_HMM:
		r->cmd.addr = addr;
		r->cmd.ptr = (uintptr_t)b->bounce;
		r->cmd.npages = n;
		r->nr = HMM_DMIRROR_EXCLUSIVE;
		r->arg = &r->cmd;
		break;
#endif
	default:
		break;
	}
}

/* The timed part: the ioctl and nothing else.  0 or its errno. */
static inline int req_issue(struct bench *b, struct req *r)
{
	if (b->fd < 0)
		return 0;	/* the null hook */
	return ioctl(b->fd, r->nr, r->arg) ? errno : 0;
}

/* Pages the call made exclusive, if it succeeded (no error checks). */
static inline unsigned long req_made(struct bench *b, struct req *r)
{
	switch (b->path) {
	case PATH_RANGE:
	case PATH_PAGE:
		return r->ex.first_errno ? 0 : r->ex.made;
	case PATH_HMM:
		return r->n;
	default:
		return 1;
	}
}

#ifdef HMM_DMIRROR_EXCLUSIVE
/*
 * The mirror's view that EXCLUSIVE copied to the bounce buffer must be the
 * data the CPU stored last (generation @gen).
 */
static int check_bounce(struct bench *b, struct req *r, __u64 gen)
{
	unsigned long j, words = page_size / sizeof(__u64);

	if (r->cmd.cpages != r->n) {
		bench_error(b,
			    "HMM_DMIRROR_EXCLUSIVE, pages %lu-%lu: ok, but %llu pages copied",
			    r->first, r->first + r->n - 1,
			    (unsigned long long)r->cmd.cpages);
		return -1;
	}
	for (j = 0; j < r->n; j++) {
		unsigned long i = r->first + j;
		const __u64 *w = b->bounce + j * words;

		if (w[0] != stamp(i, gen) || w[words - 1] != pattern(i)) {
			bench_error(b,
				    "device view of page %lu: %#llx..%#llx, expected %#llx..%#llx",
				    i, (unsigned long long)w[0],
				    (unsigned long long)w[words - 1],
				    (unsigned long long)stamp(i, gen),
				    (unsigned long long)pattern(i));
			return -1;
		}
	}
	return 0;
}
#endif

/*
 * Check the outcome of a call that returned @err: the pages it made
 * exclusive, or -1 after an error line.  @gen is the generation the pages
 * held when it was issued.
 */
static long req_result(struct bench *b, struct req *r, int err, __u64 gen)
{
	unsigned long last = r->first + r->n - 1;

	if (err) {
		bench_error(b, "%s on pages %lu-%lu failed: %s%s",
			    b->path == PATH_HMM ? "HMM_DMIRROR_EXCLUSIVE" :
			    "DEVEXCL_PROBE_IOC_EXCLUSIVE", r->first, last,
			    errstr(err), b->path == PATH_HMM && err == EBUSY ?
			    ": a page was not made device-exclusive" : "");
		return -1;
	}
	switch (b->path) {
	case PATH_RANGE:
	case PATH_PAGE:
		if (r->ex.first_errno) {
			bench_error(b,
				    "PROBE_IOC_EXCLUSIVE, pages %lu-%lu: made %u, first_errno %s",
				    r->first, last, r->ex.made,
				    errstr(r->ex.first_errno));
			return -1;
		}
		if (r->ex.made > r->n) {
			bench_error(b, "DEVEXCL_PROBE_IOC_EXCLUSIVE on pages %lu-%lu: made %u",
				    r->first, last, r->ex.made);
			return -1;
		}
		return r->ex.made;
#ifdef HMM_DMIRROR_EXCLUSIVE
	case PATH_HMM:
		return check_bounce(b, r, gen) ? -1 : (long)r->n;
#endif
	default:
		(void)gen;
		return 1;
	}
}

/*
 * A call made fewer pages of [first, first + n) exclusive than asked (the
 * range API makes at most one subpage of a THP per call).  A driver calls
 * again, one page at a time, for each page pagemap does not show as
 * device-exclusive.  The pagemap read is not timed; the calls are.
 */
static int convert_rest(struct bench *b, unsigned long first,
			unsigned long n, __u64 *ns)
{
	__u64 ent[CHUNK], t0, t1;
	unsigned long i;
	struct req r;
	long made;
	int err;

	err = read_pagemap(b, first, n, ent);
	if (err) {
		bench_error(b, "reading /proc/self/pagemap: %s", errstr(-err));
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (is_devexcl(ent[i]))
			continue;
		req_prep(b, &r, first + i, 1);
		t0 = now_ns();
		err = req_issue(b, &r);
		t1 = now_ns();
		*ns += t1 - t0;
		made = req_result(b, &r, err, b->gen);
		if (made < 0)
			return -1;
		if (made != 1) {
			bench_error(b,
				    "page %lu: a 1-page call did not make it (pagemap %#llx)",
				    first + i, (unsigned long long)ent[i]);
			return -1;
		}
	}
	return 0;
}

/*
 * Make pages [0, b->size) device-exclusive the way a driver would: calls of
 * at most CHUNK pages, then convert_rest() where a call fell short.  Adds
 * the time spent in the ioctls, and only that, to *ns.
 */
static int convert_pages(struct bench *b, __u64 *ns)
{
	unsigned long first, n;
	struct req r;
	__u64 t0, t1;
	long made;
	int err;

	for (first = 0; first < b->size; first += n) {
		n = b->size - first < CHUNK ? b->size - first : CHUNK;
		req_prep(b, &r, first, n);
		t0 = now_ns();
		err = req_issue(b, &r);
		t1 = now_ns();
		*ns += t1 - t0;
		made = req_result(b, &r, err, b->gen);
		if (made < 0)
			return -1;
		/*
		 * Only a THP makes a call fall short (one lock per folio): on
		 * small pages a short call is a failure, not a cost to time.
		 */
		if ((unsigned long)made < n && b->mem == MEM_4K &&
		    b->path != PATH_NULL) {
			bench_error(b, "a call for %lu small pages made %ld",
				    n, made);
			return -1;
		}
		if ((unsigned long)made < n && convert_rest(b, first, n, ns))
			return -1;
	}
	return 0;
}

/*
 * Pagemap must show every measured page as device-exclusive: otherwise the
 * faultback that follows would time ordinary stores.  Not for the null hook,
 * which makes nothing exclusive.
 *
 * The kernel may take pages back between the conversion and this check: a
 * compaction or a migration moves a device-exclusive page and maps it
 * present again (the driver's notifier is told).  A driver converts such a
 * page again; so does this check, untimed, and counts it in b->revoked.  A
 * page that stays non-exclusive after that is an error.
 */
static int check_exclusive(struct bench *b)
{
	unsigned long first, i, n, bad = 0, bad_page = 0;
	__u64 ent[CHUNK], bad_ent = 0, untimed = 0;
	unsigned long revoked;
	int err;

	if (b->path == PATH_NULL)
		return 0;
	for (first = 0; first < b->size; first += n) {
		n = b->size - first < CHUNK ? b->size - first : CHUNK;
		err = read_pagemap(b, first, n, ent);
		if (err) {
			bench_error(b, "reading /proc/self/pagemap: %s",
				    errstr(-err));
			return -1;
		}
		for (i = 0, revoked = 0; i < n; i++)
			revoked += !is_devexcl(ent[i]);
		if (!revoked)
			continue;
		if (convert_rest(b, first, n, &untimed))
			return -1;
		b->revoked += revoked;
	}
	for (first = 0; first < b->size; first += n) {
		n = b->size - first < CHUNK ? b->size - first : CHUNK;
		err = read_pagemap(b, first, n, ent);
		if (err) {
			bench_error(b, "reading /proc/self/pagemap: %s",
				    errstr(-err));
			return -1;
		}
		for (i = 0; i < n; i++) {
			if (is_devexcl(ent[i]))
				continue;
			if (!bad++) {
				bad_page = first + i;
				bad_ent = ent[i];
			}
		}
	}
	if (!bad)
		return 0;
	bench_error(b,
		    "pagemap: %lu of %lu pages not device-exclusive (first page %lu: %#llx)",
		    bad, b->size, bad_page, (unsigned long long)bad_ent);
	return -1;
}

/*
 * The CPU stores a new generation into word 0 of every measured page: the
 * fault that restores each device-exclusive entry.  Returns the time of the
 * loop alone.
 */
static __u64 write_pages(struct bench *b)
{
	__u64 g = ++b->gen * 0xbf58476d1ce4e5b9ULL, t0, t1;
	unsigned long i;

	t0 = now_ns();
	for (i = 0; i < b->size; i++)
		store_word(b->buf + i * page_size, pattern(i) ^ g);
	t1 = now_ns();
	return t1 - t0;
}

/*
 * One word per page says the data survived (word 0 holds the last stamp,
 * the last word of the page was never written after setup); pages past
 * b->size, the rest of a THP, still hold the pattern.  Not timed.
 */
static int verify_region(struct bench *b, unsigned int rep)
{
	unsigned long i, last = page_size / sizeof(__u64) - 1;

	for (i = 0; i < b->npages; i++) {
		const __u64 *w = page_words(b, i);
		__u64 want = i < b->size ? stamp(i, b->gen) : pattern(i);
		__u64 w0 = w[0], wl = w[last];

		if (w0 == want && wl == pattern(i))
			continue;
		bench_error(b,
			    "data after rep %u: page %lu: %#llx..%#llx, expected %#llx..%#llx",
			    rep, i, (unsigned long long)w0,
			    (unsigned long long)wl, (unsigned long long)want,
			    (unsigned long long)pattern(i));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Repetitions                                                         */
/* ------------------------------------------------------------------ */

/*
 * One rep of convert and faultback: cycles of {convert all pages, CPU store
 * to all pages} on the same pages until each selected op has accumulated
 * opt.min_ms of timed work (at least one cycle).  The two ops share the
 * cycles; an op that is not selected still runs, untimed for the result,
 * since each needs the other (a faultback needs exclusive pages, the next
 * convert needs present ones).  Values in ns per page.
 */
static int cf_rep(struct bench *b, unsigned int rep, double *conv, double *fb)
{
	bool want_conv = opt.ops & BIT(OP_CONVERT);
	bool want_fb = opt.ops & BIT(OP_FAULTBACK);
	__u64 target = opt.min_ms * NSEC_PER_MSEC;
	__u64 conv_ns = 0, fb_ns = 0, cycles = 0;

	do {
		if (convert_pages(b, &conv_ns))
			return -1;
		if (!cycles && check_exclusive(b))
			return -1;
		fb_ns += write_pages(b);
		cycles++;
	} while ((want_conv && conv_ns < target) ||
		 (want_fb && fb_ns < target));
	if (verify_region(b, rep))
		return -1;
	*conv = (double)conv_ns / (cycles * b->size);
	*fb = (double)fb_ns / (cycles * b->size);
	return 0;
}

/*
 * One rep of pingpong on page 0: {convert it, CPU store to it} per
 * iteration, until opt.min_ms of it is timed.  The common iteration is one
 * interval around the ioctl and the store.  Checks and a short call's
 * fallback stop the clock: the first iteration checks pagemap, and the
 * bounce buffer of hmm is checked after the interval.  Value in ns per
 * iteration.
 */
static int pp_rep(struct bench *b, unsigned int rep, double *val)
{
	__u64 target = opt.min_ms * NSEC_PER_MSEC, ns = 0, iters = 0;
	__u64 t0, t1, gen;
	struct req r;
	bool slow;
	long made;
	int err;

	do {
		gen = b->gen;
		req_prep(b, &r, 0, 1);
		t0 = now_ns();
		err = req_issue(b, &r);
		slow = !iters || err || req_made(b, &r) != 1;
		if (slow) {
			t1 = now_ns();
			ns += t1 - t0;
			made = req_result(b, &r, err, gen);
			if (made < 0)
				return -1;
			if (made != 1 && convert_rest(b, 0, 1, &ns))
				return -1;
			if (!iters && check_exclusive(b))
				return -1;
			t0 = now_ns();
		}
		store_word(b->buf, stamp(0, ++b->gen));
		t1 = now_ns();
		ns += t1 - t0;
		if (!slow && req_result(b, &r, 0, gen) < 0)
			return -1;
		iters++;
	} while (ns < target);
	if (verify_region(b, rep))
		return -1;
	*val = (double)ns / iters;
	return 0;
}

/*
 * After the reps a "thp" region must still be THPs (PTE-mapped by then),
 * else its numbers are not THP numbers: skip them.  Returns true to print.
 */
static bool thp_stayed(struct bench *b, const char *what)
{
	long thp;

	if (b->mem != MEM_THP)
		return true;
	thp = thp_pages_now(b);
	if (thp < 0 || (unsigned long)thp == b->npages)
		return true;
	print_skip(b->path, b->mem,
		   "size %lu: %s: THP split during the reps (%ld of %lu pages THP after)",
		   b->size, what, thp, b->npages);
	return false;
}

/*
 * Convert and faultback of one buffer: a warm-up rep that is not counted
 * (it PTE-maps a THP, which both APIs do on first use, and warms the
 * probe's notifier and the page tables), then opt.reps measured reps.
 */
static void run_cf(struct bench *b)
{
	bool want_conv = opt.ops & BIT(OP_CONVERT);
	bool want_fb = opt.ops & BIT(OP_FAULTBACK);
	double *conv, *fb, c, f;
	unsigned int rep;

	b->op = want_conv && want_fb ? "convert+faultback" :
		want_conv ? "convert" : "faultback";
	conv = calloc(opt.reps, sizeof(*conv));
	fb = calloc(opt.reps, sizeof(*fb));
	if (!conv || !fb) {
		bench_error(b, "out of memory for the results");
		goto out;
	}
	if (cf_rep(b, 0, &c, &f))
		goto out;
	for (rep = 0; rep < opt.reps; rep++)
		if (cf_rep(b, rep + 1, &conv[rep], &fb[rep]))
			goto out;
	if (!thp_stayed(b, b->op))
		goto out;
	if (want_conv)
		print_result(b, OP_CONVERT, conv);
	if (want_fb)
		print_result(b, OP_FAULTBACK, fb);
out:
	free(conv);
	free(fb);
}

static void run_pp(struct bench *b)
{
	unsigned int rep;
	double *vals, v;

	b->op = "pingpong";
	vals = calloc(opt.reps, sizeof(*vals));
	if (!vals) {
		bench_error(b, "out of memory for the results");
		return;
	}
	if (pp_rep(b, 0, &v))
		goto out;
	for (rep = 0; rep < opt.reps; rep++)
		if (pp_rep(b, rep + 1, &vals[rep]))
			goto out;
	if (thp_stayed(b, b->op))
		print_result(b, OP_PINGPONG, vals);
out:
	free(vals);
}

/*
 * One (path, mem, size): its own buffer, unmapped afterwards.  Pingpong
 * runs on the size-1 buffer after convert and faultback, or on a fresh one
 * if they failed and may have left it in an unknown state.
 */
static void run_size(struct bench *b, int mem, unsigned long size)
{
	bool cf = opt.ops & (BIT(OP_CONVERT) | BIT(OP_FAULTBACK));
	bool pp = (opt.ops & BIT(OP_PINGPONG)) && size == 1;

	b->mem = mem;
	b->size = size;
	b->failed = false;
	b->revoked = 0;
	b->op = "setup";
	if (!cf && !pp)
		return;
	fprintf(stderr, "# devexcl-bench: path=%s mem=%s size=%lu\n",
		path_names[b->path], mem_names[mem], size);
	if (setup_region(b))
		return;
	if (cf)
		run_cf(b);
	if (pp) {
		if (b->failed) {
			unmap_region(b);
			b->failed = false;
			b->op = "setup";
			if (setup_region(b))
				return;
		}
		run_pp(b);
	}
	unmap_region(b);
}

static void run_path(int path)
{
	struct bench b = { .path = path, .fd = -1 };
	const char *dev = path_devs[path];
	const char *mode = thp_mode();
	size_t bounce_len = CHUNK * page_size;
	unsigned int m, s;

#ifndef HMM_DMIRROR_EXCLUSIVE
	if (path == PATH_HMM) {
		print_skip(path, -1,
			   "built against a test_hmm_uapi.h without HMM_DMIRROR_EXCLUSIVE");
		return;
	}
#endif
	if (dev) {
		b.fd = open(dev, O_RDWR | O_CLOEXEC);
		if (b.fd < 0) {
			int err = errno;

			if (err == ENOENT || err == ENODEV || err == ENXIO)
				print_skip(path, -1, "%s: %s (module not loaded?)",
					   dev, errstr(err));
			else
				print_setup_error(path_names[path], "open %s: %s",
						  dev, errstr(err));
			return;
		}
	}
	if (path == PATH_HMM) {
		b.bounce = mmap(NULL, bounce_len, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b.bounce == MAP_FAILED) {
			print_setup_error(path_names[path], "mmap of the bounce buffer: %s",
					  errstr(errno));
			close(b.fd);
			return;
		}
		/*
		 * Small pages on every kernel, faulted in now: the copy into
		 * it is inside the timed ioctl.
		 */
		madvise(b.bounce, bounce_len, MADV_NOHUGEPAGE);
		memset(b.bounce, 0, bounce_len);
	}
	for (m = 0; m < NR_MEMS; m++) {
		if (!(opt.mems & BIT(m)))
			continue;
		if (m == MEM_THP &&
		    strcmp(mode, "always") && strcmp(mode, "madvise")) {
			print_skip(path, m, "THP unavailable: transparent_hugepage/enabled is %s",
				   mode);
			continue;
		}
		for (s = 0; s < opt.nr_sizes; s++)
			run_size(&b, m, opt.sizes[s]);
	}
	if (b.bounce)
		munmap(b.bounce, bounce_len);
	if (b.fd >= 0)
		close(b.fd);
}

/*
 * Every timed interval also holds about one clock_gettime(), whose cost
 * depends on the clocksource: through the vDSO it is small, but where the
 * guest kernel fell back to a clocksource without vDSO support (TCG may
 * mark the TSC unstable) it is a system call.  Tell the log (stderr, so
 * that the "bench:" lines keep their format) so that small-size numbers
 * can be judged.
 */
static void report_clock(void)
{
	double d[CLOCK_SAMPLES];
	char src[64];
	unsigned int i;
	__u64 t0;

	for (i = 0; i < CLOCK_SAMPLES; i++) {
		t0 = now_ns();
		d[i] = now_ns() - t0;
	}
	qsort(d, CLOCK_SAMPLES, sizeof(d[0]), cmp_double);
	if (read_text(CLOCKSOURCE, src, sizeof(src)) <= 0)
		snprintf(src, sizeof(src), "unknown");
	src[strcspn(src, "\n")] = '\0';
	fprintf(stderr, "# devexcl-bench: clocksource=%s clock_gettime=%.1f ns (median of %d)\n",
		src, quantile(d, CLOCK_SAMPLES, 0.5), CLOCK_SAMPLES);
}

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

static void print_usage(FILE *f)
{
	fprintf(f,
		"usage: devexcl-bench [-p PATHS] [-M MEMS] [-O OPS] [-S SIZES]\n"
		"                     [-r REPS] [-t MS] [-h]\n"
		"\n"
		"Per-page cost of device-exclusive operations (devexcl issue 19).\n"
		"Run as root in the guest; pins itself to CPU 0; results on stdout\n"
		"as \"bench:\" lines (tests/bench/README.md).\n"
		"\n"
		"  -p PATHS  comma list of range,page,hmm (default: all)\n"
		"            range: /dev/devexcl_probe_range (make_device_exclusive_range)\n"
		"            page:  /dev/devexcl_probe_page (make_device_exclusive)\n"
		"            hmm:   /dev/hmm_dmirror0 (HMM_DMIRROR_EXCLUSIVE)\n"
		"  -M MEMS   comma list of 4k,thp (default: both); thp is measured on\n"
		"            PTE-mapped THPs: an uncounted warm-up rep maps them so\n"
		"  -O OPS    comma list of convert,faultback,pingpong (default: all);\n"
		"            pingpong runs at size 1 only\n"
		"  -S SIZES  comma list of range sizes in pages, 1 to %lu\n"
		"            (default: 1,16,512,262144)\n"
		"  -r REPS   measured repetitions after one warm-up, 1 to %u (default: %u)\n"
		"  -t MS     least timed work per repetition in ms, 0 to %u (default: %u)\n"
		"  -h        this text\n"
		"\n"
		"Exit status: 0 without errors, 1 after an error line, 2 for bad options.\n",
		MAX_SIZE, MAX_REPS, DEFAULT_REPS, MAX_MIN_MS, DEFAULT_MIN_MS);
}

static void __printf(1, 2) bad_option(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "devexcl-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'devexcl-bench -h'.\n");
	exit(2);
}

/* A decimal number in [min, max], digits only. */
static unsigned long parse_num(const char *s, unsigned long min,
			       unsigned long max, char opt_char)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (!*s || *s < '0' || *s > '9' || *end || errno || v < min || v > max)
		bad_option("-%c: '%s' is not a number from %lu to %lu",
			   opt_char, s, min, max);
	return v;
}

/* A comma list of @names (the ones in @allowed) as a BIT() mask. */
static unsigned int parse_names(const char *arg, const char *const *names,
				unsigned int nr, unsigned int allowed,
				char opt_char)
{
	char *copy = strdup(arg), *tok, *save = NULL;
	unsigned int mask = 0, i;

	if (!copy)
		bad_option("out of memory");
	if (!*copy || copy[strlen(copy) - 1] == ',' || strstr(copy, ",,") ||
	    *copy == ',')
		bad_option("-%c: empty item in '%s'", opt_char, arg);
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < nr; i++)
			if ((allowed & BIT(i)) && !strcmp(tok, names[i]))
				break;
		if (i == nr)
			bad_option("-%c: unknown item '%s'", opt_char, tok);
		mask |= BIT(i);
	}
	free(copy);
	return mask;
}

static void parse_sizes(const char *arg)
{
	char *copy = strdup(arg), *tok, *save = NULL;

	if (!copy)
		bad_option("out of memory");
	if (!*copy || copy[strlen(copy) - 1] == ',' || strstr(copy, ",,") ||
	    *copy == ',')
		bad_option("-S: empty item in '%s'", arg);
	opt.nr_sizes = 0;
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (opt.nr_sizes == MAX_SIZES)
			bad_option("-S: more than %d sizes", MAX_SIZES);
		opt.sizes[opt.nr_sizes++] = parse_num(tok, 1, MAX_SIZE, 'S');
	}
	free(copy);
}

static void parse_options(int argc, char **argv)
{
	bool size1 = false, ops_given = false;
	unsigned int i;
	int c;

	opterr = 0;
	while ((c = getopt(argc, argv, ":p:M:O:S:r:t:h")) != -1) {
		switch (c) {
		case 'p':
			/* "null" is accepted but not listed: the test hook */
			opt.paths = parse_names(optarg, path_names, NR_PATHS,
						BIT(NR_PATHS) - 1, 'p');
			break;
		case 'M':
			opt.mems = parse_names(optarg, mem_names, NR_MEMS,
					       BIT(NR_MEMS) - 1, 'M');
			break;
		case 'O':
			opt.ops = parse_names(optarg, op_names, NR_OPS,
					      BIT(NR_OPS) - 1, 'O');
			ops_given = true;
			break;
		case 'S':
			parse_sizes(optarg);
			break;
		case 'r':
			opt.reps = parse_num(optarg, 1, MAX_REPS, 'r');
			break;
		case 't':
			opt.min_ms = parse_num(optarg, 0, MAX_MIN_MS, 't');
			break;
		case 'h':
			print_usage(stdout);
			exit(0);
		case ':':
			bad_option("-%c needs an argument", optopt);
			break;
		default:
			bad_option("unknown option -%c", optopt);
		}
	}
	if (optind < argc)
		bad_option("unexpected argument '%s'", argv[optind]);
	for (i = 0; i < opt.nr_sizes; i++)
		size1 |= opt.sizes[i] == 1;
	/* Asked for by name, pingpong must run; by default it runs if it can. */
	if (ops_given && (opt.ops & BIT(OP_PINGPONG)) && !size1)
		bad_option("-O: pingpong runs at size 1 only, and -S has no 1");
}

/* ------------------------------------------------------------------ */
/* Main                                                                */
/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	struct utsname uts;
	bool pinned;
	cpu_set_t set;
	char buf[64];
	int p, err;

	parse_options(argc, argv);
	/* Line by line: a guest that dies still shows what was measured. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	page_size = sysconf(_SC_PAGESIZE);
	thp_size = 2UL << 20;
	if (read_text(THP_PMD_SIZE, buf, sizeof(buf)) > 0 && strtoul(buf, NULL, 10))
		thp_size = strtoul(buf, NULL, 10);
	thp_pages = thp_size / page_size;

	/*
	 * Single-threaded on one CPU: the faults and the ioctls do not
	 * migrate between vCPUs, whose TCG threads the host may run unevenly.
	 */
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	pinned = !sched_setaffinity(0, sizeof(set), &set);
	err = errno;
	if (uname(&uts))
		snprintf(uts.release, sizeof(uts.release), "unknown");
	printf("bench: kernel=%s cpus=%ld thp=%s reps=%u min_ms=%u pinned=%s\n",
	       uts.release, sysconf(_SC_NPROCESSORS_ONLN), thp_mode(), opt.reps,
	       opt.min_ms, pinned ? "cpu0" : "none");
	if (!pinned)
		print_setup_error("-", "sched_setaffinity(CPU 0): %s", errstr(err));

	pm_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm_fd < 0)
		print_setup_error("-", "open /proc/self/pagemap: %s", errstr(errno));
	/* Root only; without it the after-reps THP check is left out. */
	kpf_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	report_clock();

	for (p = 0; p < NR_PATHS; p++)
		if (opt.paths & BIT(p))
			run_path(p);

	printf("bench: done measured=%u skipped=%u errors=%u\n", nr_measured,
	       nr_skipped, nr_errors);
	return nr_errors ? 1 : 0;
}
