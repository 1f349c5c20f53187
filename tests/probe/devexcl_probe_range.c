// SPDX-License-Identifier: GPL-2.0
/*
 * devexcl_probe_range - devexcl probe written against the range API,
 * make_device_exclusive_range() (upstream 5.14 to 6.14; devexcl's 5.10, 6.1
 * and 6.12 series).
 *
 * The range API locks each page it makes exclusive and returns it in
 * pages[]; a page it found but could not make exclusive is returned as
 * NULL.  A large folio has one lock, so one call makes at most one subpage
 * of it exclusive.  Each range is handled by one pass: this probe shows what
 * one call does and does not call again for the NULL pages.
 */
#define PROBE_API	DEVEXCL_PROBE_API_RANGE
#define PROBE_API_NAME	"range"

#include "probe_core.h"

static int probe_make_exclusive(struct mm_struct *mm, unsigned long start,
				unsigned int npages, void *owner,
				unsigned int hold_ms, u32 *made, int *first_errno)
{
	unsigned long end = start + ((unsigned long)npages << PAGE_SHIFT);
	unsigned long addr = start;
	struct page **pages;
	int ret = 0;

	pages = kcalloc(npages, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return -ENOMEM;

	while (addr < end) {
		long n, i;

		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}

		n = make_device_exclusive_range(mm, addr, end, pages, owner);
		if (n <= 0) {
			/* Nothing found at addr (e.g. -EFAULT): skip that page. */
			if (!*first_errno)
				*first_errno = n ? -n : EFAULT;
			addr += PAGE_SIZE;
			continue;
		}

		for (i = 0; i < n; i++) {
			if (!pages[i])
				continue;
			(*made)++;
			if (hold_ms)
				probe_hold(mm, hold_ms);
			unlock_page(pages[i]);
			put_page(pages[i]);
		}
		addr += n << PAGE_SHIFT;
	}

	kfree(pages);
	return ret;
}
