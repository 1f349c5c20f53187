// SPDX-License-Identifier: GPL-2.0
/*
 * Upstream v6.5, "mm/gup: remove vmas parameter from
 * get_user_pages_remote()": before it, the call takes a vmas array
 * between pages and locked.
 *
 * Defines: HAVE_GET_USER_PAGES_REMOTE_VMAS
 */
#include <linux/mm.h>

long xgpu_probe(struct mm_struct *mm, struct page **pages);
long xgpu_probe(struct mm_struct *mm, struct page **pages)
{
	return get_user_pages_remote(mm, 0, 1, 0, pages, NULL, NULL);
}
