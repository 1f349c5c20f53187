/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xgpu compat layer: thin wrappers over the kernel APIs whose shape differs
 * between the kernels xgpu builds on.  The HAVE_* defines come from
 * xgpu_config.h, written by ./configure from the probes in config/.
 *
 * xgpu_make_exclusive() makes the page mapped at @addr device-exclusive
 * for @owner and returns it locked and referenced, or an ERR_PTR
 * (-EAGAIN: try again; -EBUSY: a THP tail page the kernel refuses);
 * xgpu_exclusive_done() unlocks and releases it.  Called with
 * mmap_read_lock(mm) held.  With both APIs (devexcl's 6.1/6.12 series) the
 * newer page API is used.
 */
#ifndef XGPU_COMPAT_H
#define XGPU_COMPAT_H

#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/pagemap.h>
#include <linux/rmap.h>

#include "xgpu_config.h"

#ifndef HAVE_HMM_RANGE_FAULT
#error "xgpu needs CONFIG_MMU_NOTIFIER and CONFIG_HMM_MIRROR (see xgpu_config.log)"
#endif

#if defined(HAVE_MAKE_DEVICE_EXCLUSIVE)
#define XGPU_API		XGPU_API_PAGE
#define XGPU_API_NAME		"make_device_exclusive"

static inline struct page *xgpu_make_exclusive(struct mm_struct *mm,
					       unsigned long addr, void *owner)
{
	struct folio *folio;

	return make_device_exclusive(mm, addr, owner, &folio);
}

static inline void xgpu_exclusive_done(struct page *page)
{
	struct folio *folio = page_folio(page);

	folio_unlock(folio);
	folio_put(folio);
}

#elif defined(HAVE_MAKE_DEVICE_EXCLUSIVE_RANGE)
#define XGPU_API		XGPU_API_RANGE
#define XGPU_API_NAME		"make_device_exclusive_range"

/*
 * Is the page mapped at @addr a tail page of a THP?  The stock range API
 * (5.14-6.14) refuses those for good; devexcl's series and the 6.15 page
 * API convert them.  mmap_read_lock(mm) held.
 */
static inline bool xgpu_thp_tail(struct mm_struct *mm, unsigned long addr)
{
	struct page *page;
	bool tail = false;
	long n;

#ifdef HAVE_GET_USER_PAGES_REMOTE_VMAS
	n = get_user_pages_remote(mm, addr, 1, 0, &page, NULL, NULL);
#else
	n = get_user_pages_remote(mm, addr, 1, 0, &page, NULL);
#endif
	if (n == 1) {
		tail = PageTail(page);
		put_page(page);
	}
	return tail;
}

static inline struct page *xgpu_make_exclusive(struct mm_struct *mm,
					       unsigned long addr, void *owner)
{
	struct page *page = NULL;
	int n;

	n = make_device_exclusive_range(mm, addr, addr + PAGE_SIZE, &page,
					owner);
	if (n < 0)
		return ERR_PTR(n);
	if (!n || !page) {
		/* A THP tail page this kernel refuses: retrying cannot help. */
		if (n && xgpu_thp_tail(mm, addr))
			return ERR_PTR(-EBUSY);
		/* Found but not converted: raced with a PTE change, try again. */
		return ERR_PTR(-EAGAIN);
	}
	return page;
}

static inline void xgpu_exclusive_done(struct page *page)
{
	unlock_page(page);
	put_page(page);
}

#else
#define XGPU_API		XGPU_API_NONE
#define XGPU_API_NAME		"none"

static inline struct page *xgpu_make_exclusive(struct mm_struct *mm,
					       unsigned long addr, void *owner)
{
	return ERR_PTR(-EOPNOTSUPP);
}

static inline void xgpu_exclusive_done(struct page *page)
{
}
#endif

/*
 * The driver's own conversions arrive as MMU_NOTIFY_EXCLUSIVE with its
 * owner cookie (5.14; devexcl 5.10).  A kernel without the event (stock
 * 5.10) cannot convert a page either, so there is nothing to filter.
 */
#if defined(HAVE_MAKE_DEVICE_EXCLUSIVE) || defined(HAVE_MAKE_DEVICE_EXCLUSIVE_RANGE)
#ifndef HAVE_MMU_NOTIFY_EXCLUSIVE
#error "a device-exclusive API without MMU_NOTIFY_EXCLUSIVE (see xgpu_config.log)"
#endif
#endif

/*
 * Fault in the page at @addr for reading as ptrace does (FOLL_FORCE), which
 * restores a device-exclusive PTE even where the vma no longer allows
 * access (mprotect(PROT_NONE)): fixup_user_fault() refuses those.
 * mmap_read_lock(mm) held.  Returns 1, or an error (-EFAULT: no vma;
 * -EINTR: a fatal signal is pending, nothing was done).
 */
static inline long xgpu_fault_in_force(struct mm_struct *mm,
				       unsigned long addr)
{
	struct page *page;
	long n;

#ifdef HAVE_GET_USER_PAGES_REMOTE_VMAS
	n = get_user_pages_remote(mm, addr, 1, FOLL_FORCE, &page, NULL, NULL);
#else
	n = get_user_pages_remote(mm, addr, 1, FOLL_FORCE, &page, NULL);
#endif
	if (n == 1)
		put_page(page);
	return n;
}

static inline bool xgpu_event_exclusive(const struct mmu_notifier_range *range)
{
#ifdef HAVE_MMU_NOTIFY_EXCLUSIVE
	return range->event == MMU_NOTIFY_EXCLUSIVE;
#else
	return false;
#endif
}

static inline bool xgpu_event_own(const struct mmu_notifier_range *range,
				  void *owner)
{
#ifdef HAVE_MMU_NOTIFY_EXCLUSIVE
	return range->event == MMU_NOTIFY_EXCLUSIVE && range->owner == owner;
#else
	return false;
#endif
}

/*
 * Short-lived kernel mapping of a page.  Kernels before kmap_local_page()
 * (5.11) are supported without CONFIG_HIGHMEM only, where every page has a
 * permanent kernel address.
 */
#if !defined(HAVE_KMAP_LOCAL_PAGE) && defined(CONFIG_HIGHMEM)
#error "xgpu needs kmap_local_page() on CONFIG_HIGHMEM kernels"
#endif

static inline void *xgpu_kmap(struct page *page)
{
#ifdef HAVE_KMAP_LOCAL_PAGE
	return kmap_local_page(page);
#else
	return page_address(page);
#endif
}

static inline void xgpu_kunmap(void *addr)
{
#ifdef HAVE_KMAP_LOCAL_PAGE
	kunmap_local(addr);
#endif
}

#endif /* XGPU_COMPAT_H */
