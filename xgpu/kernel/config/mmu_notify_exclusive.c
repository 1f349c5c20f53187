// SPDX-License-Identifier: GPL-2.0
/*
 * Upstream v5.14, b756a3b5e7ea "mm: device exclusive memory access" (and
 * 7d4a8be0c4b2 "mm/mmu_notifier: rename migrate_pgmap_owner to owner"):
 * the MMU_NOTIFY_EXCLUSIVE event and mmu_notifier_range.owner, which a
 * driver needs to recognise its own conversions.  Present on every kernel
 * with a device-exclusive API, and on 5.14+ kernels built without one.
 *
 * Defines: HAVE_MMU_NOTIFY_EXCLUSIVE
 */
#include <linux/mmu_notifier.h>

bool xgpu_probe(const struct mmu_notifier_range *range, void *owner);
bool xgpu_probe(const struct mmu_notifier_range *range, void *owner)
{
	return range->event == MMU_NOTIFY_EXCLUSIVE && range->owner == owner;
}
