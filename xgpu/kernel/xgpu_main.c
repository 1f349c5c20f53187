// SPDX-License-Identifier: GPL-2.0
/*
 * xgpu - reference vendor GPU module: SVM atomics through device-exclusive
 * access.
 *
 * There is no hardware: the "device" executes the work of an ioctl in the
 * calling thread (as lib/test_hmm.c does), so the work is the caller's:
 * its CPU time, its cgroup, its signals.  Everything it does to process
 * memory goes through the kernel APIs a real GPU driver uses:
 *
 *  - one context per open file, bound to the opener's mm;
 *  - interval notifiers on the ranges the device uses, not on the whole
 *    address space (nouveau_svm.c): one per 2 MiB chunk that holds or
 *    acquires atomic entries, one per READ/WRITE for its range;
 *  - READ/WRITE mirror memory through hmm_range_fault() and the
 *    mmu_interval_read_begin()/mmu_interval_read_retry() pattern;
 *  - an atomic op at a user VA makes the page device-exclusive
 *    (make_device_exclusive_range() or make_device_exclusive(), see
 *    xgpu_compat.h; owner = xgpu_owner_cookie), installs an atomic entry in
 *    the context's device page table, unlocks the page and executes the op
 *    through a kernel mapping of the page while the entry is valid.  Any
 *    invalidation but our own MMU_NOTIFY_EXCLUSIVE revokes the entries of
 *    its range, after the op in flight (which holds pt_lock) has finished.
 *
 * Limits: every atomic entry is charged to the mm's pinned_vm against the
 * caller's RLIMIT_MEMLOCK (CAP_IPC_LOCK exempts), like RDMA and io_uring;
 * RELEASE, close() and the kill switch give the pages back to the CPU.
 * Waits and retries end on a signal (EINTR) and after XGPU_RETRY_MS.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/hmm.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>

#include "../include/uapi/xgpu.h"
#include "xgpu_compat.h"

/* How long ATOMIC/ACQUIRE try to win one page, READ/WRITE one walk. */
#define XGPU_RETRY_MS		1000
/* Notifier granularity: atomic entries are watched per 2 MiB chunk. */
#define XGPU_CHUNK_SHIFT	21
#define XGPU_CHUNK_SIZE		BIT(XGPU_CHUNK_SHIFT)
/*
 * Chunks without entries are swept away once a context has this many, and
 * then each time the count doubles (a sweep visits every chunk).
 */
#define XGPU_CHUNK_SWEEP	64

/*
 * Owner cookie passed to the device-exclusive API; the MMU_NOTIFY_EXCLUSIVE
 * events it sends while converting our pages carry it.  Only its address
 * is used.  All contexts share it, like all channels of one GPU.
 */
static int xgpu_owner_cookie;
#define XGPU_OWNER ((void *)&xgpu_owner_cookie)

/*
 * Marks in ctx->pt: a stale entry (see struct xgpu_ctx); a stale entry
 * whose page xgpu_restore_stale() is giving back (a token: an entry
 * installed again meanwhile has lost it, and stays)
 */
#define XGPU_STALE		XA_MARK_1
#define XGPU_RESTORING		XA_MARK_2

/* All open contexts, for the kill switch and debugfs. */
static LIST_HEAD(xgpu_ctxs);
static DEFINE_MUTEX(xgpu_ctxs_lock);	/* xgpu_ctxs */
/*
 * Held by a kill switch run for its whole length (struct xgpu_ctx
 * @kill_node); taken before xgpu_ctxs_lock and each context's drain_lock,
 * never under pt_lock, mmap_lock or in reclaim.  (The parameter lock
 * already serializes the runs; this lock also lets module exit wait for
 * the last one.)
 */
static DEFINE_MUTEX(xgpu_kill_lock);

static bool enable_atomics = true;

/* debugfs: xgpu/contexts, the kernel-internal counters of every context */
static struct dentry *xgpu_debugfs;
static atomic64_t xgpu_ctx_ids;

/*
 * Why an atomic entry was revoked: the mmu_notifier event, counted for
 * debugfs only (the event kinds are kernel-internal, not ABI).
 */
enum xgpu_revoke {
	XGPU_REVOKE_UNMAP,
	XGPU_REVOKE_CLEAR,
	XGPU_REVOKE_PROT_VMA,
	XGPU_REVOKE_PROT_PAGE,
	XGPU_REVOKE_SOFT_DIRTY,
	XGPU_REVOKE_RELEASE,
	XGPU_REVOKE_MIGRATE,
	XGPU_REVOKE_EXCLUSIVE,	/* another owner, or a CPU touch (see README) */
	XGPU_REVOKE_OTHER,
	XGPU_REVOKE_NR
};

static const char * const xgpu_revoke_names[XGPU_REVOKE_NR] = {
	"unmap", "clear", "protection_vma", "protection_page", "soft_dirty",
	"release", "migrate", "exclusive", "other",
};

/*
 * struct xgpu_stats_ctr - counters of a context, lockless (atomic64_t);
 * struct xgpu_stats in the UAPI header reports the first ones (revoked as
 * the sum of @revoked[]), debugfs all of them.
 */
struct xgpu_stats_ctr {
	atomic64_t acquisitions;
	atomic64_t acquire_failures;
	atomic64_t fastpath_hits;
	atomic64_t ops;
	atomic64_t retries;
	atomic64_t released;
	atomic64_t rw_bytes;
	atomic64_t self_events;
	atomic64_t invalidations;
	atomic64_t sweep_visits;
	atomic64_t stale_restored;
	atomic64_t revoked[XGPU_REVOKE_NR];
};

/**
 * struct xgpu_ctx - one open file of /dev/xgpu
 * @mm: the opener's mm, mmgrab()ed; immutable
 * @tgid: the opener's thread group id, for debugfs; immutable
 * @id: a number unique among the contexts, for debugfs; immutable
 * @ref: the open file's reference, and one per kill switch run draining
 *	the context; the last put frees it (xgpu_ctx_free())
 * @node: in xgpu_ctxs (xgpu_ctxs_lock)
 * @kill_node: in the list of one kill switch run (xgpu_kill_lock)
 * @drain_lock: held across a whole drain (close, kill switch), so that a
 *	drain returns only when every page is back with the CPU; taken
 *	before mmap_lock and pt_lock, never in reclaim
 * @chunk_lock: protects @chunks, @nchunks and @sweep_at, orders new chunk users
 *	against their freeing; taken before pt_lock, never under it
 * @chunks: chunk index -> struct xgpu_chunk
 * @nchunks: chunks in @chunks; read by debugfs without the lock
 * @sweep_at: the next sweep comes when @nchunks reaches it (chunk_lock)
 * @pt_lock: protects @pt, @npages and the use of the pages @pt holds, and
 *	orders mmu_interval_set_seq() against mmu_interval_read_retry().  A
 *	leaf (README.md, lock order): taken under the mmap_lock and page locks;
 *	nothing under it faults, takes the mmap_lock or a page lock, or
 *	allocates with GFP_KERNEL
 * @pt: device page table: page index -> struct page * of an atomic
 *	(device-exclusive) entry; no reference is held.  Entries exist only inside
 *	registered chunks.  An entry marked XGPU_STALE was revoked by an
 *	event that may leave its PTE device-exclusive (xgpu_event_keeps_pte()):
 *	the device no longer owns it, but it stays, charged, until the page
 *	is back with the CPU (xgpu_restore_stale(), RELEASE, close), another
 *	conversion of the page or an event that ends it drops it.  (So a
 *	notifier revokes, drops or marks stale, every entry before its page
 *	can go away.)  Its page
 *	may be freed meanwhile (reclaim, migration, a zap): the pointer of a
 *	stale entry is never dereferenced, only its index is used.
 * @npages: entries in @pt, stale ones included, each charged to
 *	@mm->pinned_vm; written under pt_lock, read without it by debugfs
 * @stats: counters
 */
struct xgpu_ctx {
	struct mm_struct *mm;
	pid_t tgid;
	u64 id;
	struct kref ref;
	struct list_head node;
	struct list_head kill_node;
	struct mutex drain_lock;	/* see above */
	struct mutex chunk_lock;	/* see above: @chunks, @nchunks, @sweep_at */
	struct xarray chunks;
	unsigned long nchunks;
	unsigned long sweep_at;
	struct mutex pt_lock;		/* see above: @pt, pages in @pt, seq */
	struct xarray pt;
	unsigned long npages;
	struct xgpu_stats_ctr stats;
};

/**
 * struct xgpu_chunk - interval notifier over one 2 MiB chunk of a context
 * @notifier: the notifier; its seq orders acquisitions in the chunk
 * @ctx: the context
 * @start: first address
 * @users: acquisitions in progress; taken under ctx->chunk_lock, dropped
 *	without it (under pt_lock); a chunk with users or entries is never
 *	freed
 */
struct xgpu_chunk {
	struct mmu_interval_notifier notifier;
	struct xgpu_ctx *ctx;
	unsigned long start;
	atomic_t users;
};

/**
 * struct xgpu_mirror - interval notifier over the range of one READ/WRITE
 * @notifier: the notifier, on the caller's stack for the call
 * @ctx: the context
 */
struct xgpu_mirror {
	struct mmu_interval_notifier notifier;
	struct xgpu_ctx *ctx;
};

static unsigned int xgpu_revoke_cause(const struct mmu_notifier_range *range)
{
	if (xgpu_event_exclusive(range))
		return XGPU_REVOKE_EXCLUSIVE;
	switch (range->event) {
	case MMU_NOTIFY_UNMAP:
		return XGPU_REVOKE_UNMAP;
	case MMU_NOTIFY_CLEAR:
		return XGPU_REVOKE_CLEAR;
	case MMU_NOTIFY_PROTECTION_VMA:
		return XGPU_REVOKE_PROT_VMA;
	case MMU_NOTIFY_PROTECTION_PAGE:
		return XGPU_REVOKE_PROT_PAGE;
	case MMU_NOTIFY_SOFT_DIRTY:
		return XGPU_REVOKE_SOFT_DIRTY;
	case MMU_NOTIFY_RELEASE:
		return XGPU_REVOKE_RELEASE;
	case MMU_NOTIFY_MIGRATE:
		return XGPU_REVOKE_MIGRATE;
	default:
		return XGPU_REVOKE_OTHER;
	}
}

/*
 * May a revocation by this event leave the PTE device-exclusive?  Then the
 * entry goes stale, still charged, until the page is back with the CPU.
 * Most events may: mprotect() (also NUMA hinting, userfaultfd write-
 * protect) and soft-dirty clearing keep the entry (where entries are
 * writable or readable, 5.10 and stock 5.14-6.14, a writable one becomes
 * readable); fork sends PROTECTION_PAGE and restores the page under it;
 * CLEAR is also sent where nothing is cleared (a vma split sends it for
 * the whole PMD range, THP or not; MADV_FREE skips non-swap entries), and
 * MIGRATE where nothing moves (migrate_vma skips the entry).  A CPU touch
 * sends CLEAR on devexcl's 6.1 and 6.12 and on 6.15+; on devexcl's 5.10
 * and stock 5.14-6.14 it sends EXCLUSIVE with no owner.
 * Only three end the entry for sure: EXCLUSIVE with another owner (or
 * none: the CPU took the page back), UNMAP (munmap(); mremap() moves the
 * entry out of our sight, uncharged) and RELEASE.  A conversion with our
 * own owner drops stale entries too (xgpu_chunk_invalidate()).
 */
static bool xgpu_event_keeps_pte(const struct mmu_notifier_range *range)
{
	switch (xgpu_revoke_cause(range)) {
	case XGPU_REVOKE_EXCLUSIVE:
	case XGPU_REVOKE_UNMAP:
	case XGPU_REVOKE_RELEASE:
		return false;
	default:
		return true;
	}
}

/*
 * Drop the atomic entries of [start, end), stale ones too, and uncharge
 * them; with @restore, note their page indices there (at most
 * XGPU_MAX_PAGES from start).  Returns how many of them the device still
 * owned (not stale).  Called with pt_lock held.
 */
static unsigned long xgpu_pt_drop(struct xgpu_ctx *ctx, unsigned long start,
				  unsigned long end, unsigned long *restore)
{
	unsigned long idx, n = 0, owned = 0;
	struct page *page;

	lockdep_assert_held(&ctx->pt_lock);
	xa_for_each_range(&ctx->pt, idx, page, start >> PAGE_SHIFT,
			  (end - 1) >> PAGE_SHIFT) {
		if (!xa_get_mark(&ctx->pt, idx, XGPU_STALE))
			owned++;
		xa_erase(&ctx->pt, idx);
		if (restore)
			__set_bit(idx - (start >> PAGE_SHIFT), restore);
		n++;
	}
	if (n) {
		WRITE_ONCE(ctx->npages, ctx->npages - n);
		atomic64_sub(n, &ctx->mm->pinned_vm);
	}
	return owned;
}

/*
 * Revoke the atomic entries of [start, end) but keep them, charged, as
 * stale (see struct xgpu_ctx); allocates nothing.  Returns how many the
 * device owned until now.  Called with pt_lock held.
 */
static unsigned long xgpu_pt_stale(struct xgpu_ctx *ctx, unsigned long start,
				   unsigned long end)
{
	unsigned long idx, n = 0;
	struct page *page;

	lockdep_assert_held(&ctx->pt_lock);
	xa_for_each_range(&ctx->pt, idx, page, start >> PAGE_SHIFT,
			  (end - 1) >> PAGE_SHIFT) {
		if (xa_get_mark(&ctx->pt, idx, XGPU_STALE))
			continue;
		xa_set_mark(&ctx->pt, idx, XGPU_STALE);
		n++;
	}
	return n;
}

/* The page of a valid (not stale) atomic entry at @idx, or NULL.  pt_lock held. */
static struct page *xgpu_pt_owned(struct xgpu_ctx *ctx, unsigned long idx)
{
	lockdep_assert_held(&ctx->pt_lock);
	if (xa_get_mark(&ctx->pt, idx, XGPU_STALE))
		return NULL;
	return xa_load(&ctx->pt, idx);
}

/*
 * May the caller go over RLIMIT_MEMLOCK (CAP_IPC_LOCK)?  Asked before any
 * lock is taken, and only when one more page would exceed the limit:
 * capable() may write an audit record and marks the task as having used a
 * privilege.  (A charge that crosses the limit after this look is asked
 * again: xgpu_acquire_page().)
 */
static bool xgpu_may_exceed(struct mm_struct *mm)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;

	if (atomic64_read(&mm->pinned_vm) < limit)
		return false;
	return capable(CAP_IPC_LOCK);
}

/*
 * Charge one more atomic entry to the caller: the mm's pinned_vm against
 * RLIMIT_MEMLOCK, as RDMA (ib_umem) and io_uring do; @may_exceed from
 * xgpu_may_exceed().  -EDQUOT over the limit.  pt_lock held, in the
 * caller's context.
 */
static int xgpu_charge(struct xgpu_ctx *ctx, bool may_exceed)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;

	lockdep_assert_held(&ctx->pt_lock);
	if (atomic64_inc_return(&ctx->mm->pinned_vm) > limit && !may_exceed) {
		atomic64_dec(&ctx->mm->pinned_vm);
		return -EDQUOT;
	}
	WRITE_ONCE(ctx->npages, ctx->npages + 1);
	return 0;
}

/*
 * Give the page at @addr back to the CPU: restore a device-exclusive PTE.
 * fixup_user_fault() refuses a vma that no longer allows access
 * (mprotect(PROT_NONE)); there a read fault as ptrace makes one
 * (FOLL_FORCE) restores the page.  mmap_lock held for reading.  Returns 0
 * (restored, or it was not exclusive), -EFAULT (nothing mapped there),
 * -EINTR (a fatal signal is pending: the FOLL_FORCE fault is not tried)
 * or another error of the fault.
 */
static long xgpu_restore_locked(struct mm_struct *mm, unsigned long addr)
{
	long ret;

	ret = fixup_user_fault(mm, addr, 0, NULL);
	if (ret != -EFAULT)
		return ret;
	ret = xgpu_fault_in_force(mm, addr);
	return ret < 0 ? ret : 0;
}

/* xgpu_restore_locked() under mmap_lock; a failure is logged. */
static void xgpu_restore_page(struct mm_struct *mm, unsigned long addr)
{
	long ret;

	mmap_read_lock(mm);
	ret = xgpu_restore_locked(mm, addr);
	mmap_read_unlock(mm);
	if (ret && ret != -EFAULT)
		pr_warn_ratelimited("%s[%d]: page at %#lx not given back to the CPU (%ld): if it was device-exclusive, it stays so until touched\n",
				    current->comm, task_pid_nr(current), addr,
				    ret);
}

/*
 * Give the pages of the stale entries back to the CPU, then drop the
 * entries and their charge: so RLIMIT_MEMLOCK bounds what the device left
 * device-exclusive, too.  Called before an ACQUIRE or ATOMIC batch charges
 * more, in the caller's context (current->mm == ctx->mm), no lock held.
 * One pass in index order, each entry once; an entry installed again
 * meanwhile stays.  -EINTR on a signal (the rest is left for the next
 * call).  Any other error is dropped all the same: restoring an exclusive
 * PTE allocates nothing and fixup_user_fault() does not stop for signals,
 * so an error (no vma, out of memory) says the PTE was no longer
 * exclusive.  A restore may also take the page from another context that
 * converted it after our token was set: correct, its entry is revoked.
 */
static int xgpu_restore_stale(struct xgpu_ctx *ctx)
{
	unsigned long idx = 0;
	void *entry;
	long ret;

	/* (a hint without the lock; xa_find() below decides) */
	if (!data_race(xa_marked(&ctx->pt, XGPU_STALE)))
		return 0;
	for (;;) {
		if (signal_pending(current) ||
		    mutex_lock_killable(&ctx->pt_lock))
			return -EINTR;
		entry = xa_find(&ctx->pt, &idx, ULONG_MAX, XGPU_STALE);
		if (entry)
			xa_set_mark(&ctx->pt, idx, XGPU_RESTORING);
		mutex_unlock(&ctx->pt_lock);
		if (!entry)
			return 0;

		if (mmap_read_lock_killable(ctx->mm))
			return -EINTR;
		/* a notifier of the restore may drop the entry itself */
		ret = xgpu_restore_locked(ctx->mm, idx << PAGE_SHIFT);
		mmap_read_unlock(ctx->mm);
		if (ret == -EINTR || mutex_lock_killable(&ctx->pt_lock))
			return -EINTR;
		if (xa_get_mark(&ctx->pt, idx, XGPU_STALE) &&
		    xa_get_mark(&ctx->pt, idx, XGPU_RESTORING)) {
			xgpu_pt_drop(ctx, idx << PAGE_SHIFT,
				     (idx + 1) << PAGE_SHIFT, NULL);
			atomic64_inc(&ctx->stats.stale_restored);
		}
		mutex_unlock(&ctx->pt_lock);
		if (++idx == 0)
			return 0;
		cond_resched();
	}
}

/*
 * Drop every atomic entry of @ctx and give the pages back to the CPU
 * (close, kill switch).  A dying mm needs no restoring.  If the owner has
 * exited meanwhile, ours is the last mm reference: mmput_async() leaves
 * the teardown to a workqueue instead of the kill switch, which holds the
 * parameter lock (readers of the parameter and rmmod would wait for it).
 */
static void xgpu_pt_drain(struct xgpu_ctx *ctx)
{
	unsigned long idx;
	struct page *page;
	bool live;

	mutex_lock(&ctx->drain_lock);
	live = mmget_not_zero(ctx->mm);
	for (;;) {
		idx = 0;
		mutex_lock(&ctx->pt_lock);
		page = xa_find(&ctx->pt, &idx, ULONG_MAX, XA_PRESENT);
		if (page)
			xgpu_pt_drop(ctx, idx << PAGE_SHIFT,
				     (idx + 1) << PAGE_SHIFT, NULL);
		mutex_unlock(&ctx->pt_lock);
		if (!page)
			break;
		if (live)
			xgpu_restore_page(ctx->mm, idx << PAGE_SHIFT);
		cond_resched();
	}
	if (live)
		mmput_async(ctx->mm);
	mutex_unlock(&ctx->drain_lock);
}

static bool xgpu_chunk_invalidate(struct mmu_interval_notifier *mni,
				  const struct mmu_notifier_range *range,
				  unsigned long cur_seq)
{
	struct xgpu_chunk *chunk = container_of(mni, struct xgpu_chunk, notifier);
	struct xgpu_ctx *ctx = chunk->ctx;
	unsigned long start, end, n;

	start = max(range->start, chunk->start);
	end = min(range->end, chunk->start + XGPU_CHUNK_SIZE);

	/*
	 * Our own request to make a page exclusive (this context's or
	 * another's: they share the owner): nothing to revoke, and bumping
	 * the sequence would make the acquire loop retry forever.  A stale
	 * entry of the page goes: the converting context charges it now.
	 * Only for a one-page event: the stock range API sends one over a
	 * whole large folio, whose other pages may still be exclusive (those
	 * stay stale; xgpu_pt_install() takes over such an entry).
	 */
	if (xgpu_event_own(range, XGPU_OWNER)) {
		atomic64_inc(&ctx->stats.self_events);
		/* (xa_marked() without the lock: a hint, as in restore_stale) */
		if (data_race(xa_marked(&ctx->pt, XGPU_STALE)) &&
		    range->end - range->start == PAGE_SIZE &&
		    mmu_notifier_range_blockable(range)) {
			mutex_lock(&ctx->pt_lock);
			if (xa_get_mark(&ctx->pt, start >> PAGE_SHIFT, XGPU_STALE))
				xgpu_pt_drop(ctx, start, end, NULL);
			mutex_unlock(&ctx->pt_lock);
		}
		return true;
	}

	/* Taking pt_lock waits for the op in flight on these pages. */
	if (mmu_notifier_range_blockable(range))
		mutex_lock(&ctx->pt_lock);
	else if (!mutex_trylock(&ctx->pt_lock))
		return false;

	mmu_interval_set_seq(mni, cur_seq);
	if (xgpu_event_keeps_pte(range))
		n = xgpu_pt_stale(ctx, start, end);
	else
		n = xgpu_pt_drop(ctx, start, end, NULL);

	mutex_unlock(&ctx->pt_lock);

	atomic64_inc(&ctx->stats.invalidations);
	if (n)
		atomic64_add(n, &ctx->stats.revoked[xgpu_revoke_cause(range)]);
	return true;
}

static const struct mmu_interval_notifier_ops xgpu_chunk_ops = {
	.invalidate = xgpu_chunk_invalidate,
};

static bool xgpu_mirror_invalidate(struct mmu_interval_notifier *mni,
				   const struct mmu_notifier_range *range,
				   unsigned long cur_seq)
{
	struct xgpu_mirror *m = container_of(mni, struct xgpu_mirror, notifier);

	if (xgpu_event_own(range, XGPU_OWNER))
		return true;
	/* Taking pt_lock waits for the copy in flight. */
	if (mmu_notifier_range_blockable(range))
		mutex_lock(&m->ctx->pt_lock);
	else if (!mutex_trylock(&m->ctx->pt_lock))
		return false;
	mmu_interval_set_seq(mni, cur_seq);
	mutex_unlock(&m->ctx->pt_lock);
	return true;
}

static const struct mmu_interval_notifier_ops xgpu_mirror_ops = {
	.invalidate = xgpu_mirror_invalidate,
};

/* Is there an atomic entry in the chunk?  pt_lock held. */
static bool xgpu_chunk_busy(struct xgpu_ctx *ctx, struct xgpu_chunk *chunk)
{
	unsigned long idx = chunk->start >> PAGE_SHIFT;

	lockdep_assert_held(&ctx->pt_lock);
	return atomic_read(&chunk->users) ||
	       xa_find(&ctx->pt, &idx,
		       ((chunk->start + XGPU_CHUNK_SIZE) >> PAGE_SHIFT) - 1,
		       XA_PRESENT);
}

/* Free the chunks without entries or users.  chunk_lock held. */
static void xgpu_chunk_sweep(struct xgpu_ctx *ctx, bool all)
{
	struct xgpu_chunk *chunk;
	unsigned long idx;
	bool busy;

	lockdep_assert_held(&ctx->chunk_lock);
	xa_for_each(&ctx->chunks, idx, chunk) {
		atomic64_inc(&ctx->stats.sweep_visits);
		mutex_lock(&ctx->pt_lock);
		busy = !all && xgpu_chunk_busy(ctx, chunk);
		mutex_unlock(&ctx->pt_lock);
		if (busy)
			continue;
		xa_erase(&ctx->chunks, idx);
		WRITE_ONCE(ctx->nchunks, ctx->nchunks - 1);
		mmu_interval_notifier_remove(&chunk->notifier);
		kfree(chunk);
	}
}

/* The chunk of @addr, registered if it was not; with a user reference. */
static struct xgpu_chunk *xgpu_chunk_get(struct xgpu_ctx *ctx,
					 unsigned long addr)
{
	unsigned long idx = addr >> XGPU_CHUNK_SHIFT;
	struct xgpu_chunk *chunk;
	int ret;

	if (mutex_lock_killable(&ctx->chunk_lock))
		return ERR_PTR(-EINTR);
	chunk = xa_load(&ctx->chunks, idx);
	if (chunk)
		goto out;

	if (ctx->nchunks >= ctx->sweep_at) {
		xgpu_chunk_sweep(ctx, false);
		/* busy chunks stay: sweep again when they have doubled */
		ctx->sweep_at = max_t(unsigned long, XGPU_CHUNK_SWEEP,
				      2 * ctx->nchunks);
	}
	chunk = kzalloc(sizeof(*chunk), GFP_KERNEL_ACCOUNT);
	if (!chunk) {
		chunk = ERR_PTR(-ENOMEM);
		goto out_unlock;
	}
	chunk->ctx = ctx;
	chunk->start = idx << XGPU_CHUNK_SHIFT;
	ret = mmu_interval_notifier_insert(&chunk->notifier, ctx->mm,
					   chunk->start, XGPU_CHUNK_SIZE,
					   &xgpu_chunk_ops);
	if (ret)
		goto err_free;
	ret = xa_err(xa_store(&ctx->chunks, idx, chunk, GFP_KERNEL_ACCOUNT));
	if (ret)
		goto err_remove;
	WRITE_ONCE(ctx->nchunks, ctx->nchunks + 1);
out:
	atomic_inc(&chunk->users);
out_unlock:
	mutex_unlock(&ctx->chunk_lock);
	return chunk;

err_remove:
	mmu_interval_notifier_remove(&chunk->notifier);
err_free:
	kfree(chunk);
	chunk = ERR_PTR(ret);
	goto out_unlock;
}

/* May be called under pt_lock: chunk_lock is not taken. */
static void xgpu_chunk_put(struct xgpu_chunk *chunk)
{
	atomic_dec(&chunk->users);
}

/* Atomics usable now?  Says why not, once. */
static int xgpu_atomics_check(void)
{
	if (XGPU_API == XGPU_API_NONE) {
		pr_info_once("device atomics unavailable: kernel has no device-exclusive API (make_device_exclusive_range/make_device_exclusive)\n");
		return -EOPNOTSUPP;
	}
	if (!READ_ONCE(enable_atomics)) {
		pr_info_once("device atomics disabled by enable_atomics=0\n");
		return -EOPNOTSUPP;
	}
	return 0;
}

/* Can the page at @addr be made device-exclusive?  mmap_lock held. */
static int xgpu_check_vma(struct mm_struct *mm, unsigned long addr)
{
	struct vm_area_struct *vma = find_vma(mm, addr);

	if (!vma || addr < vma->vm_start)
		return -EFAULT;
	if (!vma_is_anonymous(vma) ||
	    (vma->vm_flags & (VM_SHARED | VM_IO | VM_PFNMAP | VM_HUGETLB)))
		return -ENXIO;
	if (!(vma->vm_flags & VM_WRITE))
		return -EACCES;
	return 0;
}

/*
 * Record the atomic entry of @page at @addr, charged (@may_exceed: see
 * xgpu_charge()).  pt_lock held.
 */
static int xgpu_pt_install(struct xgpu_ctx *ctx, unsigned long addr,
			   struct page *page, bool may_exceed)
{
	unsigned long idx = addr >> PAGE_SHIFT;
	int ret;

	if (xa_load(&ctx->pt, idx)) {
		/*
		 * Another thread of this context won it meanwhile, or a stale
		 * entry that our conversion's notifier could not drop: it is
		 * charged already.  (Replacing allocates nothing.)
		 */
		xa_store(&ctx->pt, idx, page, GFP_NOWAIT | __GFP_ACCOUNT);
		xa_clear_mark(&ctx->pt, idx, XGPU_STALE);
		xa_clear_mark(&ctx->pt, idx, XGPU_RESTORING);
		return 0;
	}
	ret = xgpu_charge(ctx, may_exceed);
	if (ret)
		return ret;
	/* GFP_NOWAIT: pt_lock is taken by notifiers called from reclaim */
	ret = xa_err(xa_store(&ctx->pt, idx, page, GFP_NOWAIT | __GFP_ACCOUNT));
	if (ret) {
		WRITE_ONCE(ctx->npages, ctx->npages - 1);
		atomic64_dec(&ctx->mm->pinned_vm);
	}
	return ret;
}

/*
 * Make the page at @addr (page aligned, in @chunk) device-exclusive and
 * install its atomic entry.  On success returns 0 with pt_lock held; the
 * page is unlocked as soon as its entry is recorded, the entry under
 * pt_lock keeps it usable.  The mmap_lock stays held (for reading) until
 * the page is unlocked: fork() copies a device-exclusive PTE only by
 * restoring it, which only trylocks its page, under the mmap_lock held for
 * writing, and fails with -ENOMEM if the page is locked; so fork() waits
 * for us instead of finding the page locked while we wait for pt_lock.
 * (mmap_lock, page lock, then pt_lock: the order README.md gives; fork,
 * munmap and mprotect call the notifiers, which take pt_lock, under the
 * mmap_lock.)
 * Runs in the caller's context (current->mm == ctx->mm).  Ends on a signal
 * (-EINTR), the kill switch (-EOPNOTSUPP) or after XGPU_RETRY_MS (-EAGAIN).
 */
static int xgpu_acquire_page(struct xgpu_ctx *ctx, struct xgpu_chunk *chunk,
			     unsigned long addr)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(XGPU_RETRY_MS);
	struct mm_struct *mm = ctx->mm;
	bool may_exceed, asked = false, requeue = false;
	bool dirty = false;
	struct page *page;
	unsigned long seq;
	int ret;

	for (;;) {
		ret = -EINTR;
		if (signal_pending(current))
			break;
		ret = xgpu_atomics_check();
		if (ret)
			break;
		if (dirty) {
			ret = -EAGAIN;
			/* (the CAP_IPC_LOCK retry below is not a lost race) */
			if (time_after(jiffies, deadline) && !requeue)
				break;
			requeue = false;
			/*
			 * A failed attempt may leave the PTE device-exclusive;
			 * converting it again would first restore it and so
			 * invalidate our own attempt.  Restore it now, before
			 * the critical section begins.
			 */
			atomic64_inc(&ctx->stats.retries);
			cond_resched();
			xgpu_restore_page(mm, addr);
		}

		may_exceed = asked || xgpu_may_exceed(mm);
		seq = mmu_interval_read_begin(&chunk->notifier);
		if (mmap_read_lock_killable(mm)) {
			ret = -EINTR;
			break;
		}
		ret = xgpu_check_vma(mm, addr);
		if (!ret) {
			page = xgpu_make_exclusive(mm, addr, XGPU_OWNER);
			ret = PTR_ERR_OR_ZERO(page);
		}
		if (ret)
			mmap_read_unlock(mm);
		if (ret == -EAGAIN) {
			dirty = true;
			continue;
		}
		if (ret == -EOPNOTSUPP && XGPU_API != XGPU_API_NONE)
			ret = -ENXIO;	/* not anonymous: page API */
		if (ret)
			break;

		/* page locked, mmap_lock held: see above */
		dirty = true;
		if (mutex_lock_killable(&ctx->pt_lock)) {
			xgpu_exclusive_done(page);
			mmap_read_unlock(mm);
			ret = -EINTR;
			break;
		}
		if (mmu_interval_read_retry(&chunk->notifier, seq)) {
			mutex_unlock(&ctx->pt_lock);
			xgpu_exclusive_done(page);
			mmap_read_unlock(mm);
			continue;
		}
		/* the kill switch revokes under pt_lock after clearing the flag */
		ret = xgpu_atomics_check();
		if (!ret)
			ret = xgpu_pt_install(ctx, addr, page, may_exceed);
		xgpu_exclusive_done(page);
		mmap_read_unlock(mm);
		if (ret) {
			mutex_unlock(&ctx->pt_lock);
			/*
			 * Over the limit since xgpu_may_exceed() looked: ask
			 * for CAP_IPC_LOCK, now that pt_lock is dropped.
			 */
			if (ret == -EDQUOT && !may_exceed && !asked &&
			    capable(CAP_IPC_LOCK)) {
				asked = true;
				requeue = true;
				continue;
			}
			if (ret == -EDQUOT) {
				pr_warn_ratelimited("%s[%d]: device-owned pages would exceed RLIMIT_MEMLOCK (%lu pages)\n",
						    current->comm, task_pid_nr(current),
						    rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT);
				ret = -ENOMEM;
			}
			break;
		}
		atomic64_inc(&ctx->stats.acquisitions);
		return 0;
	}
	atomic64_inc(&ctx->stats.acquire_failures);
	/* Leave no PTE device-exclusive without an entry. */
	if (dirty)
		xgpu_restore_page(mm, addr);
	return ret;
}

/* Acquire the page at @addr through its chunk; pt_lock held on success. */
static int xgpu_acquire(struct xgpu_ctx *ctx, unsigned long addr)
{
	struct xgpu_chunk *chunk = xgpu_chunk_get(ctx, addr);
	int ret;

	if (IS_ERR(chunk))
		return PTR_ERR(chunk);
	ret = xgpu_acquire_page(ctx, chunk, addr);
	xgpu_chunk_put(chunk);
	return ret;
}

static u64 xgpu_op_apply(u32 op, u64 cur, u64 val, u64 cmp)
{
	switch (op) {
	case XGPU_OP_ADD:
		return cur + val;
	case XGPU_OP_SUB:
		return cur - val;
	case XGPU_OP_AND:
		return cur & val;
	case XGPU_OP_OR:
		return cur | val;
	case XGPU_OP_XOR:
		return cur ^ val;
	case XGPU_OP_XCHG:
		return val;
	case XGPU_OP_CMPXCHG:
		return cur == cmp ? val : cur;
	case XGPU_OP_MIN:
		return min(cur, val);
	case XGPU_OP_MAX:
		return max(cur, val);
	default:
		return cur;
	}
}

/*
 * Execute @op on @page, which has a valid atomic entry: pt_lock is held.
 * The page is device-exclusive, so the CPU cannot touch it; the cmpxchg
 * loop keeps the op atomic against other contexts' ops too.
 */
static void xgpu_exec(struct xgpu_ctx *ctx, struct page *page,
		      struct xgpu_atomic_op *op)
{
	void *kaddr = xgpu_kmap(page);
	void *p = kaddr + offset_in_page(op->addr);

	lockdep_assert_held(&ctx->pt_lock);
	if (op->width == sizeof(u32)) {
		u32 *p32 = p;
		u32 old = READ_ONCE(*p32), prev, new;

		for (;;) {
			new = xgpu_op_apply(op->op, old, op->value, op->compare);
			prev = cmpxchg(p32, old, new);
			if (prev == old)
				break;
			old = prev;
		}
		op->old = old;
	} else {
		u64 *p64 = p;
		u64 old = READ_ONCE(*p64), prev, new;

		for (;;) {
			new = xgpu_op_apply(op->op, old, op->value, op->compare);
			prev = cmpxchg(p64, old, new);
			if (prev == old)
				break;
			old = prev;
		}
		op->old = old;
	}
	xgpu_kunmap(kaddr);
	atomic64_inc(&ctx->stats.ops);
}

static int xgpu_atomic_one(struct xgpu_ctx *ctx, struct xgpu_atomic_op *op)
{
	unsigned long addr = op->addr & PAGE_MASK;
	struct page *page;
	int ret;

	if (mutex_lock_killable(&ctx->pt_lock))
		return -EINTR;
	page = xgpu_pt_owned(ctx, addr >> PAGE_SHIFT);
	if (page) {
		/* Fast path: the atomic entry is still valid. */
		atomic64_inc(&ctx->stats.fastpath_hits);
	} else {
		mutex_unlock(&ctx->pt_lock);
		ret = xgpu_acquire(ctx, addr);
		if (ret)
			return ret;
		page = xgpu_pt_owned(ctx, addr >> PAGE_SHIFT);
	}
	xgpu_exec(ctx, page, op);
	mutex_unlock(&ctx->pt_lock);
	return 0;
}

/* Run the batch; *@done: ops executed.  A signal ends it with -EINTR. */
static int xgpu_run_atomic(struct xgpu_ctx *ctx, struct xgpu_atomic_op *ops,
			   u32 count, u32 *done)
{
	int ret;

	for (*done = 0; *done < count; (*done)++) {
		if (signal_pending(current))
			return -EINTR;
		ret = xgpu_atomics_check();
		if (!ret)
			ret = xgpu_atomic_one(ctx, &ops[*done]);
		if (ret)
			return ret;
	}
	return 0;
}

/* ACQUIRE @count pages from @addr; *@done: pages acquired. */
static int xgpu_run_acquire(struct xgpu_ctx *ctx, unsigned long addr,
			    u64 count, u64 *done)
{
	bool owned;
	int ret;

	for (*done = 0; *done < count; (*done)++, addr += PAGE_SIZE) {
		if (signal_pending(current))
			return -EINTR;
		if (mutex_lock_killable(&ctx->pt_lock))
			return -EINTR;
		owned = xgpu_pt_owned(ctx, addr >> PAGE_SHIFT);
		mutex_unlock(&ctx->pt_lock);
		if (owned)
			continue;

		ret = xgpu_acquire(ctx, addr);
		if (ret)
			return ret;
		mutex_unlock(&ctx->pt_lock);
	}
	return 0;
}

/* Copy between @buf and the mirrored pages; pt_lock held. */
static void xgpu_mirror_copy(unsigned long start, void *buf, size_t len,
			     bool write, unsigned long *pfns)
{
	unsigned long addr = start;
	size_t done = 0;

	while (done < len) {
		unsigned long i = (addr >> PAGE_SHIFT) - (start >> PAGE_SHIFT);
		struct page *page = hmm_pfn_to_page(pfns[i]);
		size_t off = offset_in_page(addr);
		size_t n = min_t(size_t, PAGE_SIZE - off, len - done);
		void *kaddr = xgpu_kmap(page);

		if (write)
			memcpy(kaddr + off, buf + done, n);
		else
			memcpy(buf + done, kaddr + off, n);
		xgpu_kunmap(kaddr);
		done += n;
		addr += n;
	}
}

/*
 * READ/WRITE through hmm_range_fault(), watched by a notifier over just
 * this range for the time of the call (nouveau_range_fault() does the
 * same).
 */
static int xgpu_run_mirror(struct xgpu_ctx *ctx, unsigned long addr,
			   void *buf, size_t len, bool write)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(XGPU_RETRY_MS);
	struct mm_struct *mm = ctx->mm;
	struct xgpu_mirror m = { .ctx = ctx };
	struct hmm_range range = {
		.notifier = &m.notifier,
		.start = addr & PAGE_MASK,
		.end = PAGE_ALIGN(addr + len),
		.default_flags = HMM_PFN_REQ_FAULT |
				 (write ? HMM_PFN_REQ_WRITE : 0),
		.dev_private_owner = XGPU_OWNER,
	};
	unsigned long npages = (range.end - range.start) >> PAGE_SHIFT;
	int ret;

	range.hmm_pfns = kvcalloc(npages, sizeof(*range.hmm_pfns),
				  GFP_KERNEL_ACCOUNT);
	if (!range.hmm_pfns)
		return -ENOMEM;
	ret = mmu_interval_notifier_insert(&m.notifier, mm, range.start,
					   range.end - range.start,
					   &xgpu_mirror_ops);
	if (ret)
		goto out_free;

	for (;;) {
		ret = -EINTR;
		if (signal_pending(current))
			break;
		range.notifier_seq = mmu_interval_read_begin(range.notifier);
		if (mmap_read_lock_killable(mm))
			break;
		ret = hmm_range_fault(&range);
		mmap_read_unlock(mm);
		if (ret == -EBUSY)
			goto retry;
		if (ret) {
			if (ret != -ENOMEM)
				ret = -EFAULT;
			break;
		}

		ret = -EINTR;
		if (mutex_lock_killable(&ctx->pt_lock))
			break;
		if (mmu_interval_read_retry(range.notifier, range.notifier_seq)) {
			mutex_unlock(&ctx->pt_lock);
			goto retry;
		}
		xgpu_mirror_copy(addr, buf, len, write, range.hmm_pfns);
		mutex_unlock(&ctx->pt_lock);
		atomic64_add(len, &ctx->stats.rw_bytes);
		ret = 0;
		break;
retry:
		atomic64_inc(&ctx->stats.retries);
		ret = -EAGAIN;
		if (time_after(jiffies, deadline))
			break;
		cond_resched();
	}

	mmu_interval_notifier_remove(&m.notifier);
out_free:
	kvfree(range.hmm_pfns);
	return ret;
}

/* Copy an ioctl argument whose first field is its size. */
static int xgpu_get_arg(void *arg, const void __user *uarg, u32 size)
{
	u32 usize;

	if (get_user(usize, (const u32 __user *)uarg))
		return -EFAULT;
	if (usize != size)
		return -EINVAL;
	if (copy_from_user(arg, uarg, size))
		return -EFAULT;
	return 0;
}

static long xgpu_ioctl_info(struct xgpu_ctx *ctx, void __user *uarg)
{
	struct xgpu_info info;
	int ret;

	ret = xgpu_get_arg(&info, uarg, sizeof(info));
	if (ret)
		return ret;

	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	info.abi_version = XGPU_ABI_VERSION;
	info.api = XGPU_API;
	info.features = XGPU_FEAT_MIRROR;
	if (XGPU_API != XGPU_API_NONE)
		info.features |= READ_ONCE(enable_atomics) ?
				 XGPU_FEAT_ATOMICS : XGPU_FEAT_DISABLED;
	info.page_size = PAGE_SIZE;
	info.max_batch = XGPU_MAX_BATCH;
	info.max_pages = XGPU_MAX_PAGES;
	info.max_rw = XGPU_MAX_RW;
	return copy_to_user(uarg, &info, sizeof(info)) ? -EFAULT : 0;
}

static bool xgpu_user_range_ok(u64 addr, u64 len)
{
	return len && addr < TASK_SIZE && len <= TASK_SIZE - addr;
}

/* Everything is checked before anything runs: a bad batch changes nothing. */
static int xgpu_validate_ops(const struct xgpu_atomic_op *ops, u32 count)
{
	u32 i, j;

	for (i = 0; i < count; i++) {
		const struct xgpu_atomic_op *op = &ops[i];

		if (op->op >= XGPU_OP_COUNT || op->flags || op->reserved)
			return -EINVAL;
		if (op->width != sizeof(u32) && op->width != sizeof(u64))
			return -EINVAL;
		if (!IS_ALIGNED(op->addr, op->width) ||
		    !xgpu_user_range_ok(op->addr, op->width))
			return -EINVAL;
		if (op->op != XGPU_OP_CMPXCHG && op->compare)
			return -EINVAL;
		if (op->width == sizeof(u32) &&
		    (upper_32_bits(op->value) || upper_32_bits(op->compare)))
			return -EINVAL;
	}

	/* A u32 op and a u64 op of one batch must not overlap. */
	for (i = 0; i < count; i++) {
		if (ops[i].width != sizeof(u32))
			continue;
		for (j = 0; j < count; j++)
			if (ops[j].width == sizeof(u64) &&
			    ops[j].addr == ALIGN_DOWN(ops[i].addr, sizeof(u64)))
				return -EINVAL;
	}
	return 0;
}

static long xgpu_ioctl_atomic(struct xgpu_ctx *ctx, void __user *uarg)
{
	struct xgpu_atomic_op *ops;
	struct xgpu_atomic arg;
	void __user *uops;
	u32 done = 0;
	int ret;

	ret = xgpu_get_arg(&arg, uarg, sizeof(arg));
	if (ret)
		return ret;
	if (arg.flags || !arg.count || arg.count > XGPU_MAX_BATCH)
		return -EINVAL;
	ret = xgpu_atomics_check();
	if (ret)
		return ret;

	uops = u64_to_user_ptr(arg.ops);
	ops = kmalloc_array(arg.count, sizeof(*ops), GFP_KERNEL_ACCOUNT);
	if (!ops)
		return -ENOMEM;
	if (copy_from_user(ops, uops, array_size(arg.count, sizeof(*ops)))) {
		ret = -EFAULT;
		goto out_free;
	}
	ret = xgpu_validate_ops(ops, arg.count);
	if (ret)
		goto out_free;

	ret = xgpu_restore_stale(ctx);
	if (!ret)
		ret = xgpu_run_atomic(ctx, ops, arg.count, &done);

	arg.done = done;
	if (copy_to_user(uops, ops, array_size(done, sizeof(*ops))) ||
	    copy_to_user(uarg, &arg, sizeof(arg)))
		ret = ret ?: -EFAULT;
out_free:
	kfree(ops);
	return ret;
}

static int xgpu_get_range(struct xgpu_range *arg, void __user *uarg,
			  bool query)
{
	int ret;

	ret = xgpu_get_arg(arg, uarg, sizeof(*arg));
	if (ret)
		return ret;
	if (arg->flags || !PAGE_ALIGNED(arg->addr) || !arg->npages ||
	    arg->npages > XGPU_MAX_PAGES ||
	    !xgpu_user_range_ok(arg->addr, arg->npages << PAGE_SHIFT))
		return -EINVAL;
	if (query != !!arg->bitmap)
		return -EINVAL;
	return 0;
}

static long xgpu_ioctl_acquire(struct xgpu_ctx *ctx, void __user *uarg)
{
	struct xgpu_range arg;
	u64 done = 0;
	int ret;

	ret = xgpu_get_range(&arg, uarg, false);
	if (ret)
		return ret;
	ret = xgpu_atomics_check();
	if (ret)
		return ret;

	ret = xgpu_restore_stale(ctx);
	if (!ret)
		ret = xgpu_run_acquire(ctx, arg.addr, arg.npages, &done);

	arg.count = done;
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		ret = ret ?: -EFAULT;
	return ret;
}

/* Drop the entries of the range and give their pages back to the CPU. */
static long xgpu_ioctl_release(struct xgpu_ctx *ctx, void __user *uarg)
{
	DECLARE_BITMAP(restore, XGPU_MAX_PAGES);
	struct xgpu_range arg;
	unsigned long i;
	int ret;

	ret = xgpu_get_range(&arg, uarg, false);
	if (ret)
		return ret;

	bitmap_zero(restore, XGPU_MAX_PAGES);
	if (mutex_lock_killable(&ctx->pt_lock))
		return -EINTR;
	arg.count = xgpu_pt_drop(ctx, arg.addr,
				 arg.addr + (arg.npages << PAGE_SHIFT), restore);
	mutex_unlock(&ctx->pt_lock);
	atomic64_add(arg.count, &ctx->stats.released);

	for_each_set_bit(i, restore, arg.npages)
		xgpu_restore_page(ctx->mm, arg.addr + (i << PAGE_SHIFT));

	return copy_to_user(uarg, &arg, sizeof(arg)) ? -EFAULT : 0;
}

static long xgpu_ioctl_query(struct xgpu_ctx *ctx, void __user *uarg)
{
	unsigned long idx, first, last;
	struct xgpu_range arg;
	struct page *page;
	size_t words;
	u64 *bitmap;
	int ret;

	ret = xgpu_get_range(&arg, uarg, true);
	if (ret)
		return ret;

	words = DIV_ROUND_UP(arg.npages, 64);
	bitmap = kcalloc(words, sizeof(*bitmap), GFP_KERNEL_ACCOUNT);
	if (!bitmap)
		return -ENOMEM;

	first = arg.addr >> PAGE_SHIFT;
	last = first + arg.npages - 1;
	arg.count = 0;
	ret = -EINTR;
	if (mutex_lock_killable(&ctx->pt_lock))
		goto out_free;
	xa_for_each_range(&ctx->pt, idx, page, first, last) {
		if (xa_get_mark(&ctx->pt, idx, XGPU_STALE))
			continue;
		bitmap[(idx - first) / 64] |= 1ULL << ((idx - first) % 64);
		arg.count++;
	}
	mutex_unlock(&ctx->pt_lock);

	ret = 0;
	if (copy_to_user(u64_to_user_ptr(arg.bitmap), bitmap,
			 words * sizeof(*bitmap)) ||
	    copy_to_user(uarg, &arg, sizeof(arg)))
		ret = -EFAULT;
out_free:
	kfree(bitmap);
	return ret;
}

static long xgpu_ioctl_stats(struct xgpu_ctx *ctx, void __user *uarg)
{
	struct xgpu_stats_ctr *c = &ctx->stats;
	struct xgpu_stats st;
	int ret, i;

	ret = xgpu_get_arg(&st, uarg, sizeof(st));
	if (ret)
		return ret;
	if (st.flags)
		return -EINVAL;

	st.acquisitions = atomic64_read(&c->acquisitions);
	st.acquire_failures = atomic64_read(&c->acquire_failures);
	st.fastpath_hits = atomic64_read(&c->fastpath_hits);
	st.ops = atomic64_read(&c->ops);
	st.retries = atomic64_read(&c->retries);
	st.revoked = 0;
	for (i = 0; i < XGPU_REVOKE_NR; i++)
		st.revoked += atomic64_read(&c->revoked[i]);
	st.released = atomic64_read(&c->released);
	st.rw_bytes = atomic64_read(&c->rw_bytes);
	return copy_to_user(uarg, &st, sizeof(st)) ? -EFAULT : 0;
}

static long xgpu_ioctl_rw(struct xgpu_ctx *ctx, void __user *uarg, bool write)
{
	struct xgpu_rw arg;
	void __user *ubuf;
	void *buf;
	int ret;

	ret = xgpu_get_arg(&arg, uarg, sizeof(arg));
	if (ret)
		return ret;
	if (arg.flags || !arg.len || arg.len > XGPU_MAX_RW ||
	    !xgpu_user_range_ok(arg.addr, arg.len) ||
	    !xgpu_user_range_ok(arg.buf, arg.len))
		return -EINVAL;
	/* The device range and the buffer must not overlap. */
	if (arg.buf < arg.addr + arg.len && arg.addr < arg.buf + arg.len)
		return -EINVAL;

	ubuf = u64_to_user_ptr(arg.buf);
	buf = kvmalloc(arg.len, GFP_KERNEL_ACCOUNT);
	if (!buf)
		return -ENOMEM;
	if (write && copy_from_user(buf, ubuf, arg.len)) {
		ret = -EFAULT;
		goto out_free;
	}

	ret = xgpu_run_mirror(ctx, arg.addr, buf, arg.len, write);
	if (!ret && !write && copy_to_user(ubuf, buf, arg.len))
		ret = -EFAULT;
out_free:
	kvfree(buf);
	return ret;
}

static long xgpu_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct xgpu_ctx *ctx = file->private_data;
	void __user *uarg = (void __user *)arg;

	/* The context belongs to the mm that opened the file. */
	if (current->mm != ctx->mm)
		return -EBADF;

	switch (cmd) {
	case XGPU_IOC_INFO:
		return xgpu_ioctl_info(ctx, uarg);
	case XGPU_IOC_ATOMIC:
		return xgpu_ioctl_atomic(ctx, uarg);
	case XGPU_IOC_ACQUIRE:
		return xgpu_ioctl_acquire(ctx, uarg);
	case XGPU_IOC_RELEASE:
		return xgpu_ioctl_release(ctx, uarg);
	case XGPU_IOC_QUERY:
		return xgpu_ioctl_query(ctx, uarg);
	case XGPU_IOC_STATS:
		return xgpu_ioctl_stats(ctx, uarg);
	case XGPU_IOC_READ:
		return xgpu_ioctl_rw(ctx, uarg, false);
	case XGPU_IOC_WRITE:
		return xgpu_ioctl_rw(ctx, uarg, true);
	default:
		return -ENOTTY;
	}
}

static int xgpu_open(struct inode *inode, struct file *file)
{
	struct xgpu_ctx *ctx;

	if (!current->mm)
		return -EINVAL;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL_ACCOUNT);
	if (!ctx)
		return -ENOMEM;

	mutex_init(&ctx->chunk_lock);
	ctx->sweep_at = XGPU_CHUNK_SWEEP;
	mutex_init(&ctx->drain_lock);
	xa_init(&ctx->chunks);
	mutex_init(&ctx->pt_lock);
	xa_init(&ctx->pt);
	mmgrab(current->mm);
	ctx->mm = current->mm;
	ctx->tgid = current->tgid;
	ctx->id = atomic64_inc_return(&xgpu_ctx_ids);
	kref_init(&ctx->ref);

	mutex_lock(&xgpu_ctxs_lock);
	list_add(&ctx->node, &xgpu_ctxs);
	mutex_unlock(&xgpu_ctxs_lock);

	file->private_data = ctx;
	return 0;
}

/* The last reference is gone: no entry, no chunk, no user is left. */
static void xgpu_ctx_free(struct kref *ref)
{
	struct xgpu_ctx *ctx = container_of(ref, struct xgpu_ctx, ref);

	WARN_ON_ONCE(ctx->npages);
	xa_destroy(&ctx->chunks);
	xa_destroy(&ctx->pt);
	mmdrop(ctx->mm);
	mutex_destroy(&ctx->pt_lock);
	mutex_destroy(&ctx->drain_lock);
	mutex_destroy(&ctx->chunk_lock);
	kfree(ctx);
}

static int xgpu_release(struct inode *inode, struct file *file)
{
	struct xgpu_ctx *ctx = file->private_data;

	mutex_lock(&xgpu_ctxs_lock);
	list_del(&ctx->node);
	mutex_unlock(&xgpu_ctxs_lock);

	/*
	 * No ioctl is in flight (they hold the file), so no entry can be
	 * added; a kill switch run may still be draining the context (it
	 * holds a reference; our drain waits for its drain to end).  The
	 * last close may come from another process (SCM_RIGHTS) or after the
	 * mm's exit: the pages go back to the CPU if the mm still lives.
	 */
	xgpu_pt_drain(ctx);
	mutex_lock(&ctx->chunk_lock);
	xgpu_chunk_sweep(ctx, true);
	mutex_unlock(&ctx->chunk_lock);
	kref_put(&ctx->ref, xgpu_ctx_free);
	return 0;
}

/*
 * debugfs xgpu/contexts: one line per open context, "key=value" pairs: the
 * opener's tgid, the context's id, its counters including the
 * kernel-internal ones (own MMU_NOTIFY_EXCLUSIVE events ignored, notifier
 * callbacks, chunks visited by sweeps, stale entries restored and dropped,
 * revocations by mmu_notifier event) and its atomic entries (stale ones
 * included).
 */
static int xgpu_contexts_show(struct seq_file *m, void *unused)
{
	struct xgpu_stats_ctr *c;
	struct xgpu_ctx *ctx;
	int i;

	mutex_lock(&xgpu_ctxs_lock);
	list_for_each_entry(ctx, &xgpu_ctxs, node) {
		c = &ctx->stats;
		seq_printf(m, "tgid=%d ctx=%llu entries=%lu chunks=%lu self_events=%lld invalidations=%lld sweep_visits=%lld stale_restored=%lld",
			   ctx->tgid, ctx->id, READ_ONCE(ctx->npages),
			   READ_ONCE(ctx->nchunks),
			   atomic64_read(&c->self_events),
			   atomic64_read(&c->invalidations),
			   atomic64_read(&c->sweep_visits),
			   atomic64_read(&c->stale_restored));
		for (i = 0; i < XGPU_REVOKE_NR; i++)
			seq_printf(m, " revoked_%s=%lld", xgpu_revoke_names[i],
				   atomic64_read(&c->revoked[i]));
		seq_putc(m, '\n');
	}
	mutex_unlock(&xgpu_ctxs_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(xgpu_contexts);

static const struct file_operations xgpu_fops = {
	.owner = THIS_MODULE,
	.open = xgpu_open,
	.release = xgpu_release,
	.unlocked_ioctl = xgpu_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/*
 * 0660: only root and the group the packages' udev rule gives the node
 * ("xgpu") may use the device; misc devices have no group of their own.
 */
static struct miscdevice xgpu_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "xgpu",
	.fops = &xgpu_fops,
	.mode = 0660,
};

/*
 * The kill switch: enable_atomics=0 makes new ATOMIC/ACQUIRE calls fail
 * with EOPNOTSUPP, stops the ones running (between two pages or ops) and
 * revokes every atomic entry, giving the pages back to the CPU.  The
 * contexts open at that moment are drained one by one, each kept by a
 * reference, without xgpu_ctxs_lock: a slow mm (its mmap_lock held long)
 * delays the kill switch, not open(), close() or debugfs for all users.
 */
static int xgpu_set_enable(const char *val, const struct kernel_param *kp)
{
	struct xgpu_ctx *ctx, *next;
	LIST_HEAD(todo);
	int ret;

	ret = param_set_bool(val, kp);
	if (ret || READ_ONCE(enable_atomics))
		return ret;

	mutex_lock(&xgpu_kill_lock);
	mutex_lock(&xgpu_ctxs_lock);
	list_for_each_entry(ctx, &xgpu_ctxs, node) {
		kref_get(&ctx->ref);
		list_add_tail(&ctx->kill_node, &todo);
	}
	mutex_unlock(&xgpu_ctxs_lock);
	list_for_each_entry_safe(ctx, next, &todo, kill_node) {
		list_del(&ctx->kill_node);
		xgpu_pt_drain(ctx);
		kref_put(&ctx->ref, xgpu_ctx_free);
	}
	mutex_unlock(&xgpu_kill_lock);
	pr_info("device atomics disabled (enable_atomics=0): atomic entries revoked\n");
	return 0;
}

static const struct kernel_param_ops xgpu_enable_ops = {
	.set = xgpu_set_enable,
	.get = param_get_bool,
};

module_param_cb(enable_atomics, &xgpu_enable_ops, &enable_atomics, 0644);
MODULE_PARM_DESC(enable_atomics,
		 "Device atomics through device-exclusive access (field kill switch: 0 also revokes all entries; default Y)");

static int __init xgpu_init(void)
{
	int ret;

	ret = misc_register(&xgpu_misc);
	if (ret)
		return ret;
	/* debugfs is optional: its errors are not ours to handle */
	xgpu_debugfs = debugfs_create_dir("xgpu", NULL);
	debugfs_create_file("contexts", 0400, xgpu_debugfs, NULL,
			    &xgpu_contexts_fops);

	if (XGPU_API == XGPU_API_NONE)
		pr_info("/dev/xgpu: device atomics unavailable: this kernel has no device-exclusive API (make_device_exclusive_range/make_device_exclusive); READ/WRITE only\n");
	else
		pr_info("/dev/xgpu: device atomics via %s%s\n", XGPU_API_NAME,
			enable_atomics ? "" : " (disabled: enable_atomics=0)");
	return 0;
}
module_init(xgpu_init);

static void __exit xgpu_exit(void)
{
	/*
	 * No file is open, but a kill switch run may still hold the last
	 * reference of a context closed during it (the parameter's sysfs
	 * file goes away only after this): wait for it to free them.
	 */
	mutex_lock(&xgpu_kill_lock);
	mutex_unlock(&xgpu_kill_lock);
	WARN_ON(!list_empty(&xgpu_ctxs));
	debugfs_remove_recursive(xgpu_debugfs);
	misc_deregister(&xgpu_misc);
}
module_exit(xgpu_exit);

MODULE_DESCRIPTION("xgpu: reference vendor GPU module, SVM atomics through device-exclusive access");
MODULE_LICENSE("GPL");
