// SPDX-License-Identifier: GPL-2.0
/*
 * Upstream v5.14, "mm: device exclusive memory
 * access": make_device_exclusive_range(); also devexcl's 5.10, 6.1 and
 * 6.12 series.  Removed upstream in v6.15.
 *
 * Defines: HAVE_MAKE_DEVICE_EXCLUSIVE_RANGE
 */
#include <linux/mm.h>
#include <linux/rmap.h>

#ifndef CONFIG_DEVICE_PRIVATE
#error "make_device_exclusive_range() needs CONFIG_DEVICE_PRIVATE"
#endif

int xgpu_probe(struct mm_struct *mm, unsigned long start, struct page **pages);
int xgpu_probe(struct mm_struct *mm, unsigned long start, struct page **pages)
{
	return make_device_exclusive_range(mm, start, start + PAGE_SIZE,
					   pages, NULL);
}
