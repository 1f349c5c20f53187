/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * xgpu - reference vendor GPU module: SVM atomics through device-exclusive
 * access.  User ABI, shared by the module, libxgpu and the xgpu tool.
 *
 * Every ioctl argument starts with __u32 size, which must be exactly
 * sizeof() of the structure this header defines; a later ABI version that
 * grows a structure gets a new size, so old and new callers are told apart.
 * Every flags and reserved field must be 0.
 *
 * All addresses are virtual addresses in the mm of the process that opened
 * /dev/xgpu; the context is bound to that mm.
 *
 * errnos common to all ioctls:
 *   EBADF      the calling process is not the one that opened the file
 *              (another mm, e.g. a child after fork())
 *   EFAULT     the argument (or an array it points to) cannot be copied
 *   EINVAL     size mismatch, unknown flags, reserved field not 0, or a
 *              field out of its documented range (see each ioctl)
 *   ENOTTY     unknown ioctl
 *   EINTR      a signal arrived while the call waited or worked; a batch
 *              stops between two ops (ATOMIC done, ACQUIRE count say how
 *              far it got: nothing is run twice when the rest is resubmitted)
 *   ENOMEM     out of memory
 * errnos of the ioctls using device-exclusive access (ATOMIC, ACQUIRE):
 *   EOPNOTSUPP device-exclusive access is not available in this kernel, or
 *              atomics are disabled (module parameter enable_atomics=0);
 *              INFO tells which
 *   EFAULT     an address is not mapped
 *   EACCES     the mapping is not writable (e.g. after mprotect(PROT_READ))
 *   ENXIO      the memory cannot be made device-exclusive: shared or
 *              file-backed mapping, hugetlbfs, VM_IO/VM_PFNMAP
 *   ENOMEM     the page would take the caller's device-owned pages beyond
 *              RLIMIT_MEMLOCK (charged to the mm like pinned pages,
 *              /proc/PID/status VmPin; CAP_IPC_LOCK exempts); RELEASE or
 *              close() give pages back, and so does the next ACQUIRE or
 *              ATOMIC for the pages a revocation left charged (below)
 *   EBUSY      the page is a tail page of a transparent huge page and this
 *              kernel's device-exclusive API refuses those (the stock range
 *              API of 5.14-6.14); retrying does not help: madvise
 *              MADV_NOHUGEPAGE before the memory is touched
 *   EAGAIN     the device lost the page to the CPU for a whole second (the
 *              page is contended); nothing is wrong, retry the remaining ops
 * Validation (EINVAL) happens before anything is executed: a batch that
 * fails validation changes nothing.
 */
#ifndef _UAPI_XGPU_H
#define _UAPI_XGPU_H

#include <linux/ioctl.h>
#include <linux/types.h>

/*
 * 2: ioctl type 0xB9 (was 'X', which is XFS's); EINTR, ENOMEM, EBUSY as above
 * 3: struct xgpu_stats without the kernel-internal event counters
 *    (self_events, invalidations, revoked[] by mmu_notifier event: debugfs
 *    xgpu/contexts); revoked is one total
 */
#define XGPU_ABI_VERSION	3

/* Limits (also reported by INFO). */
#define XGPU_MAX_BATCH		256	/* ops per ATOMIC call */
#define XGPU_MAX_PAGES		512	/* pages per ACQUIRE/RELEASE/QUERY */
#define XGPU_MAX_RW		0x100000	/* bytes per READ/WRITE */

/* struct xgpu_info.api: the device-exclusive API compiled in */
#define XGPU_API_NONE		0	/* none: atomics unavailable */
#define XGPU_API_RANGE		1	/* make_device_exclusive_range() */
#define XGPU_API_PAGE		2	/* make_device_exclusive() */

/* struct xgpu_info.features */
#define XGPU_FEAT_ATOMICS	0x1	/* ATOMIC/ACQUIRE usable now */
#define XGPU_FEAT_DISABLED	0x2	/* API present, disabled by enable_atomics=0 */
#define XGPU_FEAT_MIRROR	0x4	/* READ/WRITE through hmm_range_fault() */

/**
 * struct xgpu_info - XGPU_IOC_INFO, all fields but size are output
 * @size: in, sizeof(struct xgpu_info)
 * @abi_version: XGPU_ABI_VERSION
 * @api: XGPU_API_*
 * @features: XGPU_FEAT_*
 * @page_size: kernel page size in bytes
 * @max_batch: XGPU_MAX_BATCH
 * @max_pages: XGPU_MAX_PAGES
 * @max_rw: XGPU_MAX_RW
 */
struct xgpu_info {
	__u32 size;
	__u32 abi_version;
	__u32 api;
	__u32 features;
	__u32 page_size;
	__u32 max_batch;
	__u32 max_pages;
	__u32 max_rw;
};

/* struct xgpu_atomic_op.op; MIN and MAX compare unsigned */
#define XGPU_OP_ADD		0
#define XGPU_OP_SUB		1
#define XGPU_OP_AND		2
#define XGPU_OP_OR		3
#define XGPU_OP_XOR		4
#define XGPU_OP_XCHG		5
#define XGPU_OP_CMPXCHG		6
#define XGPU_OP_MIN		7
#define XGPU_OP_MAX		8
#define XGPU_OP_COUNT		9

/**
 * struct xgpu_atomic_op - one device atomic operation
 * @addr: in, user VA, naturally aligned to @width
 * @value: in, the operand; for CMPXCHG the value stored on match
 * @compare: in, CMPXCHG only: the expected value; must be 0 for other ops
 * @old: out, the value at @addr before the op
 * @op: in, XGPU_OP_*
 * @width: in, 4 (u32) or 8 (u64); a u32 op uses the low 32 bits of
 *	@value and @compare, which must fit in 32 bits
 * @flags: in, 0
 * @reserved: 0
 *
 * The ops of one batch run in order.  Ops of one batch may use the same
 * address with the same width; a u32 op and a u64 op of one batch that
 * overlap are rejected (EINVAL).
 */
struct xgpu_atomic_op {
	__u64 addr;
	__u64 value;
	__u64 compare;
	__u64 old;
	__u32 op;
	__u16 width;
	__u16 flags;
	__u64 reserved;
};

/**
 * struct xgpu_atomic - XGPU_IOC_ATOMIC: run a batch on the device engine
 * @size: in, sizeof(struct xgpu_atomic)
 * @count: in, number of ops, 1..XGPU_MAX_BATCH
 * @ops: in, user pointer to struct xgpu_atomic_op[@count]; the old values
 *	are written back
 * @done: out, number of ops executed (all of them on success; on a
 *	runtime error the ops before the failing one, whose @old values are
 *	written back too)
 * @flags: in, 0
 */
struct xgpu_atomic {
	__u32 size;
	__u32 count;
	__u64 ops;
	__u32 done;
	__u32 flags;
};

/**
 * struct xgpu_range - XGPU_IOC_ACQUIRE, XGPU_IOC_RELEASE, XGPU_IOC_QUERY
 * @size: in, sizeof(struct xgpu_range)
 * @flags: in, 0
 * @addr: in, page-aligned user VA
 * @npages: in, 1..XGPU_MAX_PAGES
 * @bitmap: QUERY: in, user pointer to (@npages + 63) / 64 __u64 words;
 *	bit i set on return = page i is device-owned now.  Must be 0 for
 *	ACQUIRE and RELEASE.
 * @count: out, pages acquired (ACQUIRE; on error the pages before the
 *	failing one), released (RELEASE: entries the device still owned) or
 *	device-owned (QUERY)
 *
 * ACQUIRE makes every page device-exclusive and installs an atomic entry
 * in the context's device page table (the next ATOMIC on it is a fast-path
 * hit); each entry counts against RLIMIT_MEMLOCK until it is dropped.
 * RELEASE drops the entries and gives the pages back to the CPU (their page
 * table entries are normal again); close() does so for all.  QUERY
 * reports the valid entries.  An entry the kernel revokes (a CPU touch,
 * mprotect(), fork...) is no longer device-owned, but while its page may
 * still be device-exclusive it stays charged: until the context's next
 * ACQUIRE or ATOMIC gives it back, or RELEASE or close().  On kernels where
 * a CPU touch is reported as a clear (devexcl's 6.1 and 6.12, 6.15+), VmPin
 * therefore stays up after a CPU touch until that next call.
 */
struct xgpu_range {
	__u32 size;
	__u32 flags;
	__u64 addr;
	__u64 npages;
	__u64 bitmap;
	__u64 count;
};

/**
 * struct xgpu_rw - XGPU_IOC_READ / XGPU_IOC_WRITE through the mirror
 * @size: in, sizeof(struct xgpu_rw)
 * @flags: in, 0
 * @addr: in, device-side user VA (any alignment)
 * @buf: in, user buffer: READ stores into it, WRITE takes the data from it;
 *	it must not overlap [@addr, @addr + @len) (EINVAL)
 * @len: in, 1..XGPU_MAX_RW bytes
 *
 * The device accesses the memory as hardware would, through
 * hmm_range_fault().  A page that is device-exclusive is faulted back to
 * normal first, which revokes its atomic entry (counted in STATS).
 * EFAULT: part of [@addr, @addr + @len) is not mapped (WRITE: or not
 * writable); nothing is copied to @buf then.  EAGAIN: the range kept
 * changing under the device (MMU notifier invalidations) for a whole
 * second; nothing was copied, retry.
 */
struct xgpu_rw {
	__u32 size;
	__u32 flags;
	__u64 addr;
	__u64 buf;
	__u64 len;
};

/**
 * struct xgpu_stats - XGPU_IOC_STATS, counters of this context (output)
 * @size: in, sizeof(struct xgpu_stats)
 * @flags: in, 0
 * @acquisitions: pages made device-exclusive
 * @acquire_failures: make-exclusive calls that failed
 * @fastpath_hits: ops executed on a still-valid atomic entry
 * @ops: atomic ops executed
 * @retries: acquisitions redone because an invalidation raced with them
 * @revoked: atomic entries the kernel took back (the CPU touched the page,
 *	munmap, mprotect, fork, migration, ...); the kernel-internal reasons
 *	are in debugfs (xgpu/contexts), not part of this ABI
 * @released: entries dropped by RELEASE
 * @rw_bytes: bytes moved by READ and WRITE
 */
struct xgpu_stats {
	__u32 size;
	__u32 flags;
	__u64 acquisitions;
	__u64 acquire_failures;
	__u64 fastpath_hits;
	__u64 ops;
	__u64 retries;
	__u64 revoked;
	__u64 released;
	__u64 rw_bytes;
};

/* ioctl type: 0xB9 is free in Documentation/userspace-api/ioctl/ioctl-number.rst */
#define XGPU_IOC_TYPE		0xB9

#define XGPU_IOC_INFO		_IOWR(XGPU_IOC_TYPE, 0x00, struct xgpu_info)
#define XGPU_IOC_ATOMIC		_IOWR(XGPU_IOC_TYPE, 0x01, struct xgpu_atomic)
#define XGPU_IOC_ACQUIRE	_IOWR(XGPU_IOC_TYPE, 0x02, struct xgpu_range)
#define XGPU_IOC_RELEASE	_IOWR(XGPU_IOC_TYPE, 0x03, struct xgpu_range)
#define XGPU_IOC_QUERY		_IOWR(XGPU_IOC_TYPE, 0x04, struct xgpu_range)
#define XGPU_IOC_STATS		_IOWR(XGPU_IOC_TYPE, 0x05, struct xgpu_stats)
#define XGPU_IOC_READ		_IOWR(XGPU_IOC_TYPE, 0x06, struct xgpu_rw)
#define XGPU_IOC_WRITE		_IOWR(XGPU_IOC_TYPE, 0x07, struct xgpu_rw)

#endif /* _UAPI_XGPU_H */
