// SPDX-License-Identifier: GPL-2.0
/*
 * Upstream v5.8, "mm/hmm: remove the customizable pfn
 * format from hmm_range_fault": hmm_range_fault(range) with hmm_pfns[];
 * the mirror also needs mmu_interval_notifier (v5.5).  Stock kernels
 * built without CONFIG_HMM_MIRROR declare it but do not provide it.
 *
 * Defines: HAVE_HMM_RANGE_FAULT
 */
#include <linux/hmm.h>
#include <linux/mmu_notifier.h>

#if !defined(CONFIG_HMM_MIRROR) || !defined(CONFIG_MMU_NOTIFIER)
#error "the mirror needs CONFIG_HMM_MIRROR and CONFIG_MMU_NOTIFIER"
#endif

int xgpu_probe(struct mmu_interval_notifier *mni, unsigned long *pfns);
int xgpu_probe(struct mmu_interval_notifier *mni, unsigned long *pfns)
{
	struct hmm_range range = {
		.notifier = mni,
		.hmm_pfns = pfns,
		.default_flags = HMM_PFN_REQ_FAULT,
	};

	range.notifier_seq = mmu_interval_read_begin(mni);
	return hmm_range_fault(&range);
}
