/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * ioctl ABI of the devexcl probe modules
 *
 * Each probe module (devexcl_probe_range.ko, devexcl_probe_page.ko) registers
 * the misc device /dev/devexcl_probe_<api>.  Every open file is a context
 * bound to the mm of the process that opened it; an ioctl issued from any
 * other mm (e.g. a child after fork()) fails with -EBADF.
 *
 * Every argument struct starts with a __u32 size that the caller sets to
 * sizeof() the struct; a mismatch fails with -EINVAL.
 */
#ifndef _DEVEXCL_PROBE_UAPI_H
#define _DEVEXCL_PROBE_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Which kernel API a module is written against (devexcl_probe_stats.api). */
#define DEVEXCL_PROBE_API_RANGE		1	/* make_device_exclusive_range() */
#define DEVEXCL_PROBE_API_PAGE		2	/* make_device_exclusive() */

/* Most pages one DEVEXCL_PROBE_IOC_EXCLUSIVE call accepts (one PMD). */
#define DEVEXCL_PROBE_MAX_PAGES		512

/*
 * DEVEXCL_PROBE_IOC_EXCLUSIVE flags.
 *
 * DEVEXCL_PROBE_EXCL_UNALIGNED: pass @addr to the kernel API as it is, even
 *	when it is not page-aligned (the API's callers may do that; it must
 *	work on the page that holds @addr).
 * DEVEXCL_PROBE_EXCL_HOLD: model a driver that keeps the page locked while
 *	it programs the device: with @npages 1, after the page was made
 *	exclusive, drop the mmap_lock, sleep @hold_ms (a signal ends the sleep
 *	early), take the mmap_lock again (uninterruptibly, as a driver
 *	revalidating its VMA would), and only then unlock the page.
 */
#define DEVEXCL_PROBE_EXCL_UNALIGNED	0x1U
#define DEVEXCL_PROBE_EXCL_HOLD		0x2U
#define DEVEXCL_PROBE_EXCL_FLAGS	(DEVEXCL_PROBE_EXCL_UNALIGNED | \
					 DEVEXCL_PROBE_EXCL_HOLD)
/* Longest DEVEXCL_PROBE_EXCL_HOLD sleep. */
#define DEVEXCL_PROBE_MAX_HOLD_MS	10000

/**
 * struct devexcl_probe_exclusive - DEVEXCL_PROBE_IOC_EXCLUSIVE argument
 * @size: in: sizeof(struct devexcl_probe_exclusive)
 * @flags: in: DEVEXCL_PROBE_EXCL_* flags
 * @addr: in: page-aligned start address in the caller's mm (any address
 *	with DEVEXCL_PROBE_EXCL_UNALIGNED)
 * @npages: in: number of pages, 1 to DEVEXCL_PROBE_MAX_PAGES
 * @made: out: pages made device-exclusive by this call
 * @first_errno: out: positive errno of the first failure the kernel API
 *	reported for a page of the range (e.g. EFAULT for an unmapped
 *	address), 0 if it reported none.  The range API does not report why
 *	a page it found was not made exclusive (pages[i] == NULL): that
 *	only shows in @made.
 * @hold_ms: in: with DEVEXCL_PROBE_EXCL_HOLD, 1 to
 *	DEVEXCL_PROBE_MAX_HOLD_MS; else must be 0
 *
 * Errors of the ioctl itself: EINVAL (size, unknown flags, @hold_ms out of
 * range or without HOLD, HOLD with @npages other than 1, unaligned @addr
 * without UNALIGNED, @npages out of range, range beyond the user address space),
 * EBADF (fd used from another mm), EFAULT (argument not readable or
 * writable), EINTR (fatal signal), ENOMEM.
 */
struct devexcl_probe_exclusive {
	__u32 size;
	__u32 flags;
	__u64 addr;
	__u32 npages;
	__u32 made;
	__s32 first_errno;
	__u32 hold_ms;
};

/**
 * struct devexcl_probe_stats - DEVEXCL_PROBE_IOC_STATS argument
 * @size: in: sizeof(struct devexcl_probe_stats)
 * @api: out: DEVEXCL_PROBE_API_RANGE or DEVEXCL_PROBE_API_PAGE
 * @self_events: out: MMU_NOTIFY_EXCLUSIVE events carrying the module's own
 *	owner cookie (sent while it makes pages exclusive); ignored
 * @invalidations: out: every other invalidation overlapping the registered
 *	range (CPU faults revoking exclusive entries, munmap, fork, ...)
 * @unaligned: out: notifier events of either kind whose range does not start
 *	and end on a page boundary (a kernel bug: drivers index their page
 *	tables by it)
 *
 * The counters are per open file and never reset.
 */
struct devexcl_probe_stats {
	__u32 size;
	__u32 api;
	__u64 self_events;
	__u64 invalidations;
	__u64 unaligned;
};

#define DEVEXCL_PROBE_IOC_EXCLUSIVE \
	_IOWR('D', 1, struct devexcl_probe_exclusive)
#define DEVEXCL_PROBE_IOC_STATS \
	_IOWR('D', 2, struct devexcl_probe_stats)

#endif /* _DEVEXCL_PROBE_UAPI_H */
