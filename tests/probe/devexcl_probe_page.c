// SPDX-License-Identifier: GPL-2.0
/*
 * devexcl_probe_page - devexcl probe written against the page API,
 * make_device_exclusive() (upstream 6.15 and later; devexcl's 6.1 and 6.12
 * series).
 *
 * The page API makes one page exclusive per call and returns it with its
 * folio locked and referenced.  The folio is unlocked before the next call,
 * so every page of a large folio can be made exclusive.
 */
#define PROBE_API	DEVEXCL_PROBE_API_PAGE
#define PROBE_API_NAME	"page"

#include "probe_core.h"

static int probe_make_exclusive(struct mm_struct *mm, unsigned long start,
				unsigned int npages, void *owner,
				unsigned int hold_ms, u32 *made, int *first_errno)
{
	unsigned long end = start + ((unsigned long)npages << PAGE_SHIFT);
	unsigned long addr;

	for (addr = start; addr < end; addr += PAGE_SIZE) {
		struct folio *folio;
		struct page *page;

		if (fatal_signal_pending(current))
			return -EINTR;

		page = make_device_exclusive(mm, addr, owner, &folio);
		if (IS_ERR(page)) {
			if (!*first_errno)
				*first_errno = -PTR_ERR(page);
			continue;
		}

		(*made)++;
		if (hold_ms)
			probe_hold(mm, hold_ms);
		folio_unlock(folio);
		folio_put(folio);
	}
	return 0;
}
