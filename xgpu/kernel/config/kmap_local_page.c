// SPDX-License-Identifier: GPL-2.0
/*
 * Upstream v5.11, "mm/highmem: Provide
 * kmap_local*": kmap_local_page() / kunmap_local().
 *
 * Defines: HAVE_KMAP_LOCAL_PAGE
 */
#include <linux/highmem.h>

u8 xgpu_probe(struct page *page);
u8 xgpu_probe(struct page *page)
{
	u8 *p = kmap_local_page(page);
	u8 v = *p;

	kunmap_local(p);
	return v;
}
