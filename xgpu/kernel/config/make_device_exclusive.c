// SPDX-License-Identifier: GPL-2.0
/*
 * Upstream v6.15, "mm/rmap: implement
 * make_device_exclusive() using folio_walk instead of rmap walk":
 * make_device_exclusive(), one page per call, returned with its folio
 * locked and referenced; also devexcl's 6.1 and 6.12 series.
 *
 * Defines: HAVE_MAKE_DEVICE_EXCLUSIVE
 */
#include <linux/mm.h>
#include <linux/rmap.h>

#ifndef CONFIG_DEVICE_PRIVATE
#error "make_device_exclusive() needs CONFIG_DEVICE_PRIVATE"
#endif

struct page *xgpu_probe(struct mm_struct *mm, unsigned long addr);
struct page *xgpu_probe(struct mm_struct *mm, unsigned long addr)
{
	struct folio *folio;

	return make_device_exclusive(mm, addr, NULL, &folio);
}
