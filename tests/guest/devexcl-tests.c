// SPDX-License-Identifier: GPL-2.0
/*
 * Guest tests for the device-exclusive access backport (devexcl): what the CPU,
 * the mirror and the vma operations (fork, mprotect, munmap, madvise, mremap) make
 * of pages the test_hmm mirror holds for exclusive (atomic) access, and which
 * memory it must refuse (shmem, file, hugetlb).  The ioctls and the helpers:
 * devexcl_dmirror.h; compaction, migration, KSM, exit and stress:
 * devexcl-mirror-mm-tests.c.
 *
 * Build: see README.md next to this file.
 */
#include "devexcl_dmirror.h"

/*
 * A 2 MiB range backed by a transparent huge page can be made exclusive as
 * a whole.  Upstream kernels up to 6.1 fail this with -EBUSY; the backport
 * must not.  A CPU read afterwards sees the data and revokes the mirror.
 */
TEST_F_TIMEOUT(devexcl, exclusive_thp_always_and_madvise, 120)
{
	size_t size = SZ_2M;
	unsigned long npages = size / page_size;
	const char *mode;
	char modebuf[128];
	void *buf, *ref;
	long thp_kb;

	mode = thp_mode(modebuf, sizeof(modebuf));
	if (!mode)
		SKIP(return, "THP unavailable: cannot read %s", THP_ENABLED);
	TH_LOG("transparent_hugepage/enabled: [%s]", mode);
	if (!strcmp(mode, "never"))
		SKIP(return, "THP mode is [never]: no huge page to test");

	buf = map_anon_aligned(size, SZ_2M);
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, madvise(buf, size, MADV_HUGEPAGE));
	ref = pattern_alloc(size, 1);
	ASSERT_NE(NULL, ref);
	memcpy(buf, ref, size);

	thp_kb = smaps_kb(buf, "AnonHugePages:");
	if (thp_kb < (long)(size >> 10) &&
	    !file_write(COMPACT_MEMORY, "1")) {
		ASSERT_EQ(0, madvise(buf, size, MADV_DONTNEED));
		memcpy(buf, ref, size);
		thp_kb = smaps_kb(buf, "AnonHugePages:");
	}
	if (thp_kb < (long)(size >> 10))
		SKIP(return, "no THP backs the buffer (AnonHugePages %ld kB)",
		     thp_kb);
	TH_LOG("buffer is THP backed (AnonHugePages %ld kB)", thp_kb);

	acquire(_metadata, self->fd, buf, size, ref);
	TH_LOG("after EXCLUSIVE: AnonHugePages %ld kB",
	       smaps_kb(buf, "AnonHugePages:"));

	ASSERT_BYTES(buf, ref, size, "CPU view of the THP after EXCLUSIVE");
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages,
		      "after CPU read");

	/* The pages are ordinary again: CPU stores reach the device. */
	fill_pattern(ref, size, 2);
	memcpy(buf, ref, size);
	expect_device_view(_metadata, self->fd, buf, size, ref,
			   "device view of CPU stores into the former THP");

	free(ref);
	ASSERT_EQ(0, munmap(buf, size));
}

/* Shared anonymous (shmem) pages are not made exclusive, and stay shared. */
TEST_F(devexcl, exclusive_refuses_shmem)
{
	size_t size = 16 * page_size;
	void *buf, *ref;
	pid_t pid;

	buf = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, buf);
	ref = pattern_alloc(size, 3);
	ASSERT_NE(NULL, ref);
	memcpy(buf, ref, size);

	expect_refused(_metadata, self->fd, buf, size,
		       "MAP_SHARED|MAP_ANONYMOUS");
	ASSERT_BYTES(buf, ref, size, "shmem CPU view after refusal");
	expect_device_view(_metadata, self->fd, buf, size, ref,
			   "shmem device view after refusal");

	/* A store by a child must still show up here. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		fill_pattern(buf, page_size, 4);
		_exit(0);
	}
	ASSERT_CHILD_OK(wait_child(pid), "shmem store");
	fill_pattern(ref, page_size, 4);
	ASSERT_BYTES(buf, ref, size, "shmem after the child's store");

	free(ref);
	ASSERT_EQ(0, munmap(buf, size));
}

/*
 * File pages are not made exclusive: shared memfd and regular-file
 * mappings, and page-cache pages mapped read-only and private.  Neither
 * the mappings nor the files change.
 */
TEST_F(devexcl, exclusive_refuses_file)
{
	size_t size = 16 * page_size;
	const char *dir = getenv("DEVEXCL_TMPDIR");
	char path[256];
	struct statfs sfs;
	void *buf, *ref;
	int fd;

	ref = pattern_alloc(size, 5);
	ASSERT_NE(NULL, ref);

	/* memfd, shared */
	fd = memfd_create("devexcl", 0);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, buf);
	memcpy(buf, ref, size);
	expect_refused(_metadata, self->fd, buf, size, "memfd MAP_SHARED");
	ASSERT_BYTES(buf, ref, size, "memfd mapping after refusal");
	ASSERT_EQ(0, file_differs(_metadata, fd, ref, size, "memfd file"));
	expect_device_view(_metadata, self->fd, buf, size, ref,
			   "memfd device view after refusal");
	ASSERT_EQ(0, munmap(buf, size));
	close(fd);

	/* regular file, shared */
	snprintf(path, sizeof(path), "%s/devexcl-XXXXXX", dir ? dir : "/tmp");
	fd = mkstemp(path);
	ASSERT_LE(0, fd) {
		TH_LOG("mkstemp %s: %s", path, strerror(errno));
	}
	unlink(path);
	if (!fstatfs(fd, &sfs))
		TH_LOG("%s is on %s (f_type %#lx)", path,
		       sfs.f_type == TMPFS_MAGIC ? "tmpfs" :
		       sfs.f_type == RAMFS_MAGIC ? "ramfs" : "a block or network fs",
		       (unsigned long)sfs.f_type);
	ASSERT_EQ((ssize_t)size, pwrite(fd, ref, size, 0));
	ASSERT_EQ(0, fsync(fd));
	buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_BYTES(buf, ref, size, "file MAP_SHARED before EXCLUSIVE");
	expect_refused(_metadata, self->fd, buf, size, "file MAP_SHARED");
	ASSERT_BYTES(buf, ref, size, "file MAP_SHARED after refusal");
	expect_device_view(_metadata, self->fd, buf, size, ref,
			   "file MAP_SHARED device view after refusal");
	ASSERT_EQ(0, munmap(buf, size));

	/* the same page-cache pages, mapped private and read-only */
	buf = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_BYTES(buf, ref, size, "file MAP_PRIVATE before EXCLUSIVE");
	expect_refused(_metadata, self->fd, buf, size,
		       "file MAP_PRIVATE PROT_READ (page cache)");
	ASSERT_BYTES(buf, ref, size, "file MAP_PRIVATE after refusal");
	ASSERT_EQ(0, munmap(buf, size));
	ASSERT_EQ(0, file_differs(_metadata, fd, ref, size, "regular file"));

	close(fd);
	free(ref);
}

/*
 * A writable private file mapping whose pages were never written maps the
 * page cache.  EXCLUSIVE may refuse it or take private copies; either way
 * the file never changes, and the mapping keeps its data.
 */
TEST_F(devexcl, exclusive_private_file_cow_leaves_file_intact)
{
	size_t size = 16 * page_size;
	unsigned long npages = size / page_size;
	const char *dir = getenv("DEVEXCL_TMPDIR");
	struct hmm_dmirror_cmd cmd;
	void *buf, *ref, *ref2, *seen;
	char path[256];
	int fd, ret;

	ref = pattern_alloc(size, 6);
	ref2 = pattern_alloc(size, 7);
	seen = malloc(size);
	ASSERT_NE(NULL, ref);
	ASSERT_NE(NULL, ref2);
	ASSERT_NE(NULL, seen);

	snprintf(path, sizeof(path), "%s/devexcl-XXXXXX", dir ? dir : "/tmp");
	fd = mkstemp(path);
	ASSERT_LE(0, fd);
	unlink(path);
	ASSERT_EQ((ssize_t)size, pwrite(fd, ref, size, 0));
	buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_BYTES(buf, ref, size, "private file mapping before EXCLUSIVE");

	ret = dmirror_ioctl(self->fd, HMM_DMIRROR_EXCLUSIVE, buf, seen,
			    npages, &cmd);
	if (!ret) {
		TH_LOG("EXCLUSIVE took private copies of the file pages");
		ASSERT_EQ(npages, cmd.cpages);
		ASSERT_BYTES(seen, ref, size, "device view after EXCLUSIVE");
		ASSERT_MIRROR(MIRROR_HELD, self->fd, buf, npages,
			      "after EXCLUSIVE");
		ASSERT_BYTES(buf, ref, size, "CPU view after EXCLUSIVE");
		ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages,
			      "after CPU read");
	} else {
		ASSERT_TRUE(is_refusal(-ret)) {
			TH_LOG("EXCLUSIVE failed with unexpected %s",
			       errno_name(-ret));
		}
		TH_LOG("EXCLUSIVE refused with %s", errno_name(-ret));
		ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages,
			      "after refusal");
		ASSERT_BYTES(buf, ref, size, "CPU view after refusal");
	}
	ASSERT_EQ(0, file_differs(_metadata, fd, ref, size,
				  "file after EXCLUSIVE"));

	/* Private stores must never reach the file. */
	memcpy(buf, ref2, size);
	ASSERT_BYTES(buf, ref2, size, "private mapping after CPU stores");
	expect_device_view(_metadata, self->fd, buf, size, ref2,
			   "device view of private stores");
	ASSERT_EQ(0, munmap(buf, size));
	ASSERT_EQ(0, file_differs(_metadata, fd, ref, size,
				  "file after private stores"));

	close(fd);
	free(seen);
	free(ref2);
	free(ref);
}

/* hugetlbfs pages are not made exclusive and keep their data. */
TEST_F(devexcl, exclusive_refuses_hugetlb)
{
	long hpage_kb = meminfo_field("Hugepagesize:");
	long free_hp = meminfo_field("HugePages_Free:");
	size_t size;
	void *buf, *ref;

	if (hpage_kb <= 0)
		SKIP(return, "no hugetlb support (no Hugepagesize in meminfo)");
	if (free_hp < 1) {
		long nr = file_read_long(NR_HUGEPAGES);
		char val[32];
		int ret;

		snprintf(val, sizeof(val), "%ld", nr > 0 ? nr + 4 : 4);
		ret = knob_set(NR_HUGEPAGES, val);
		free_hp = meminfo_field("HugePages_Free:");
		TH_LOG("nr_hugepages %ld -> %s: %s, HugePages_Free %ld",
		       nr, val, ret ? strerror(-ret) : "ok", free_hp);
	}
	size = (size_t)hpage_kb << 10;
	buf = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (buf == MAP_FAILED)
		SKIP(return, "no %ld kB huge page could be reserved (HugePages_Free %ld): %s",
		     hpage_kb, free_hp, strerror(errno));
	ref = pattern_alloc(size, 8);
	ASSERT_NE(NULL, ref);
	memcpy(buf, ref, size);

	expect_refused(_metadata, self->fd, buf, size, "MAP_HUGETLB");
	ASSERT_BYTES(buf, ref, size, "hugetlb CPU view after refusal");
	expect_device_view(_metadata, self->fd, buf, size, ref,
			   "hugetlb device view after refusal");

	/* The huge page is still writable and coherent. */
	fill_pattern(ref, size, 9);
	memcpy(buf, ref, size);
	expect_device_view(_metadata, self->fd, buf, size, ref,
			   "hugetlb device view of CPU stores");

	ASSERT_EQ(0, munmap(buf, size));
	free(ref);
	knobs_restore();
}

/*
 * fork() of a process holding device-exclusive pages: the child sees the
 * data, acquiring again in the parent breaks COW without touching the
 * child's copy, and the child's stores stay out of the parent.
 */
TEST_F(devexcl, exclusive_fork_keeps_data)
{
	size_t size = 64 * page_size;
	unsigned long npages = size / page_size;
	int ready[2], go[2];
	void *buf, *ref, *ref2;
	char c = 0;
	pid_t pid;

	buf = map_anon(size, MADV_NOHUGEPAGE);
	ASSERT_NE(NULL, buf);
	ref = pattern_alloc(size, 10);
	ref2 = pattern_alloc(size, 11);
	ASSERT_NE(NULL, ref);
	ASSERT_NE(NULL, ref2);
	memcpy(buf, ref, size);
	acquire(_metadata, self->fd, buf, size, ref);

	ASSERT_EQ(0, pipe(ready));
	ASSERT_EQ(0, pipe(go));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		int ret = 0;

		/* If the parent dies, read() sees EOF instead of blocking. */
		close(ready[0]);
		close(go[1]);
		if (memcmp(buf, ref, size))
			ret = 1;
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(2);
		if (memcmp(buf, ref, size))
			ret = 3;
		memcpy(buf, ref2, size);
		if (memcmp(buf, ref2, size))
			ret = 4;
		_exit(ret);
	}

	close(ready[1]);
	close(go[0]);

	/* fork() write-protected the range, which invalidates the mirror. */
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages, "after fork");

	/* The pages are COW-shared with the child now; take them again. */
	ASSERT_EQ(1, read(ready[0], &c, 1));
	acquire(_metadata, self->fd, buf, size, ref);
	ASSERT_EQ(1, write(go[1], &c, 1));
	ASSERT_CHILD_OK(wait_child(pid),
			"child check (1,3: data, 4: own store)");
	close(ready[0]);
	close(go[1]);

	ASSERT_BYTES(buf, ref, size, "parent view after the child's stores");
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages, "after CPU read");
	expect_device_view(_metadata, self->fd, buf, size, ref,
			   "parent device view after fork");

	free(ref2);
	free(ref);
	ASSERT_EQ(0, munmap(buf, size));
}

/*
 * Make 16 pages exclusive, mprotect() them read-only and store to them.
 * Runs in a child; the store must kill it with SIGSEGV.  Exit codes tell
 * which earlier step failed.
 */
static int readonly_store_child(void)
{
	size_t size = 16 * page_size;
	unsigned long npages = size / page_size;
	struct hmm_dmirror_cmd cmd;
	void *buf, *seen;
	int fd;

	fd = open(DMIRROR_DEV, O_RDWR);
	buf = map_anon(size, MADV_NOHUGEPAGE);
	seen = malloc(size);
	if (fd < 0 || !buf || !seen)
		return 2;
	fill_pattern(buf, size, 13);
	if (dmirror_ioctl(fd, HMM_DMIRROR_EXCLUSIVE, buf, seen, npages, &cmd))
		return 3;
	if (mirror_state(fd, buf, npages) != MIRROR_HELD)
		return 4;
	if (mprotect(buf, size, PROT_READ))
		return 5;
	__atomic_store_n((char *)buf + page_size, 1, __ATOMIC_RELAXED);
	return 6;
}

/*
 * After mprotect(PROT_READ) the data stay intact, the device cannot write
 * through the mirror and a CPU store faults.
 */
TEST_F(devexcl, exclusive_mprotect_readonly_then_write_faults)
{
	size_t size = 16 * page_size;
	unsigned long npages = size / page_size;
	void *buf, *ref, *ref2;
	char res[64];
	int status, ret;
	pid_t pid;

	buf = map_anon(size, MADV_NOHUGEPAGE);
	ASSERT_NE(NULL, buf);
	ref = pattern_alloc(size, 12);
	ref2 = pattern_alloc(size, 14);
	ASSERT_NE(NULL, ref);
	ASSERT_NE(NULL, ref2);
	memcpy(buf, ref, size);
	acquire(_metadata, self->fd, buf, size, ref);

	ASSERT_EQ(0, mprotect(buf, size, PROT_READ));
	ret = mirror_state(self->fd, buf, npages);
	ASSERT_TRUE(ret == MIRROR_HELD || ret == MIRROR_REVOKED) {
		TH_LOG("CHECK_EXCLUSIVE failed: %s", strerror(-ret));
	}
	TH_LOG("after mprotect(PROT_READ) the mirror is %s",
	       mirror_state_name(ret));

	ret = dmirror_ioctl(self->fd, HMM_DMIRROR_WRITE, buf, ref2, npages,
			    NULL);
	ASSERT_EQ(-EPERM, ret) {
		TH_LOG("device WRITE to read-only memory: %s",
		       ret ? errno_name(-ret) : "succeeded");
	}

	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(readonly_store_child());
	status = wait_child(pid);
	ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) {
		TH_LOG("read-only store: child %s (2-5: setup, 6: no fault)",
		       child_result(status, res, sizeof(res)));
	}

	ASSERT_BYTES(buf, ref, size, "read-only CPU view");
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages, "after CPU read");

	ASSERT_EQ(0, mprotect(buf, size, PROT_READ | PROT_WRITE));
	memcpy(buf, ref2, size);
	ASSERT_BYTES(buf, ref2, size, "CPU view after mprotect(PROT_WRITE)");
	expect_device_view(_metadata, self->fd, buf, size, ref2,
			   "device view after mprotect(PROT_WRITE)");

	free(ref2);
	free(ref);
	ASSERT_EQ(0, munmap(buf, size));
}

/* A single CPU read revokes the touched page and leaves the rest held. */
TEST_F(devexcl, exclusive_cpu_read_revokes_only_touched_page)
{
	size_t size = 16 * page_size;
	unsigned long npages = size / page_size, touch = 5;
	char *buf, *ref;
	char c;

	buf = map_anon(size, MADV_NOHUGEPAGE);
	ASSERT_NE(NULL, buf);
	ref = pattern_alloc(size, 15);
	ASSERT_NE(NULL, ref);
	memcpy(buf, ref, size);
	acquire(_metadata, self->fd, buf, size, ref);

	c = __atomic_load_n(buf + touch * page_size + 7, __ATOMIC_RELAXED);
	ASSERT_EQ(ref[touch * page_size + 7], c);

	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf + touch * page_size, 1,
		      "touched page");
	ASSERT_MIRROR(MIRROR_HELD, self->fd, buf, touch,
		      "pages below the touched one");
	/* test_hmm's invalidation also drops the page after the range. */
	ASSERT_MIRROR(MIRROR_HELD, self->fd, buf + (touch + 2) * page_size,
		      npages - touch - 2, "pages above the touched one");

	ASSERT_BYTES(buf, ref, size, "CPU view");
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages, "after CPU read");

	free(ref);
	ASSERT_EQ(0, munmap(buf, size));
}

/* A device write through the mirror revokes exclusivity and lands. */
TEST_F(devexcl, exclusive_device_write_revokes_and_lands)
{
	size_t size = 16 * page_size;
	unsigned long npages = size / page_size;
	struct hmm_dmirror_cmd cmd;
	void *buf, *ref, *ref2;
	int ret;

	buf = map_anon(size, MADV_NOHUGEPAGE);
	ASSERT_NE(NULL, buf);
	ref = pattern_alloc(size, 16);
	ref2 = pattern_alloc(size, 17);
	ASSERT_NE(NULL, ref);
	ASSERT_NE(NULL, ref2);
	memcpy(buf, ref, size);
	acquire(_metadata, self->fd, buf, size, ref);

	ret = dmirror_ioctl(self->fd, HMM_DMIRROR_WRITE, buf, ref2, npages,
			    &cmd);
	ASSERT_EQ(0, ret) {
		TH_LOG("device WRITE: %s", errno_name(-ret));
	}
	ASSERT_EQ(npages, cmd.cpages);
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages,
		      "after device WRITE");
	ASSERT_BYTES(buf, ref2, size, "CPU view of the device WRITE");

	free(ref2);
	free(ref);
	ASSERT_EQ(0, munmap(buf, size));
}

/*
 * munmap() of exclusive pages drops them from the mirror; a fresh mapping
 * at the same address is empty and zero-filled, and can be taken again.
 */
TEST_F(devexcl, exclusive_munmap_releases)
{
	size_t size = 64 * page_size;
	unsigned long npages = size / page_size, i;
	unsigned char *vec;
	void *buf, *again, *ref, *zero;
	int round;

	buf = map_anon(size, MADV_NOHUGEPAGE);
	ASSERT_NE(NULL, buf);
	ref = malloc(size);
	zero = calloc(1, size);
	vec = malloc(npages);
	ASSERT_NE(NULL, ref);
	ASSERT_NE(NULL, zero);
	ASSERT_NE(NULL, vec);

	for (round = 0; round < 4; round++) {
		fill_pattern(ref, size, 20 + round);
		memcpy(buf, ref, size);
		acquire(_metadata, self->fd, buf, size, ref);
		ASSERT_EQ(0, munmap(buf, size));
		ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages,
			      "after munmap");

		again = mmap(buf, size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		ASSERT_EQ(buf, again);
		madvise(buf, size, MADV_NOHUGEPAGE);
		ASSERT_EQ(0, mincore(buf, size, vec));
		for (i = 0; i < npages; i++) {
			ASSERT_EQ(0, vec[i] & 1) {
				TH_LOG("round %d: page %lu of a fresh mapping is resident",
				       round, i);
			}
		}
		ASSERT_BYTES(buf, zero, size, "fresh mapping after munmap");
		expect_device_view(_metadata, self->fd, buf, size, zero,
				   "device view of the fresh mapping");
	}

	free(vec);
	free(zero);
	free(ref);
	ASSERT_EQ(0, munmap(buf, size));
}

/*
 * MADV_DONTNEED on exclusive pages zaps them: the mirror lets go and the
 * range reads back as zeroes; zapping half a range leaves the other half
 * held and intact.
 */
TEST_F(devexcl, exclusive_madvise_dontneed_zeroes)
{
	size_t size = 32 * page_size, half = size / 2;
	unsigned long npages = size / page_size;
	char *buf, *ref, *zero;

	buf = map_anon(size, MADV_NOHUGEPAGE);
	ASSERT_NE(NULL, buf);
	ref = pattern_alloc(size, 30);
	zero = calloc(1, size);
	ASSERT_NE(NULL, ref);
	ASSERT_NE(NULL, zero);

	memcpy(buf, ref, size);
	acquire(_metadata, self->fd, buf, size, ref);
	ASSERT_EQ(0, madvise(buf, size, MADV_DONTNEED));
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages,
		      "after MADV_DONTNEED");
	ASSERT_BYTES(buf, zero, size, "CPU view after MADV_DONTNEED");
	expect_device_view(_metadata, self->fd, buf, size, zero,
			   "device view after MADV_DONTNEED");

	fill_pattern(ref, size, 31);
	memcpy(buf, ref, size);
	acquire(_metadata, self->fd, buf, size, ref);
	ASSERT_EQ(0, madvise(buf + half, half, MADV_DONTNEED));
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf + half,
		      npages / 2, "zapped half");
	ASSERT_MIRROR(MIRROR_HELD, self->fd, buf, npages / 2, "kept half");
	ASSERT_BYTES(buf, ref, half, "kept half after partial MADV_DONTNEED");
	ASSERT_BYTES(buf + half, zero, half, "zapped half");
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, buf, npages, "after CPU read");

	free(zero);
	free(ref);
	ASSERT_EQ(0, munmap(buf, size));
}

/*
 * mremap(MREMAP_MAYMOVE | MREMAP_FIXED) moves exclusive entries to a new
 * address: the old range is gone, and the device and the CPU find the data
 * at the new one.
 */
TEST_F(devexcl, exclusive_mremap_moves_data)
{
	size_t size = 64 * page_size;
	unsigned long npages = size / page_size;
	void *src, *dst, *moved, *ref, *ref2;
	unsigned char vec;

	src = map_anon(size, MADV_NOHUGEPAGE);
	ASSERT_NE(NULL, src);
	dst = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, dst);
	ref = pattern_alloc(size, 40);
	ref2 = pattern_alloc(size, 41);
	ASSERT_NE(NULL, ref);
	ASSERT_NE(NULL, ref2);
	memcpy(src, ref, size);
	acquire(_metadata, self->fd, src, size, ref);

	moved = mremap(src, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	ASSERT_EQ(dst, moved) {
		TH_LOG("mremap: %s", strerror(errno));
	}
	ASSERT_EQ(-1, mincore(src, page_size, &vec));
	ASSERT_EQ(ENOMEM, errno);
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, src, npages,
		      "old range after mremap");
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, dst, npages,
		      "new range after mremap");

	/* The device faults the moved entries back first, then the CPU. */
	expect_device_view(_metadata, self->fd, dst, size, ref,
			   "device view at the new address");
	ASSERT_BYTES(dst, ref, size, "CPU view at the new address");

	acquire(_metadata, self->fd, dst, size, ref);
	memcpy(dst, ref2, size);
	ASSERT_MIRROR(MIRROR_REVOKED, self->fd, dst, npages,
		      "after CPU stores at the new address");
	expect_device_view(_metadata, self->fd, dst, size, ref2,
			   "device view of CPU stores at the new address");

	free(ref2);
	free(ref);
	ASSERT_EQ(0, munmap(dst, size));
}

TEST_HARNESS_MAIN
