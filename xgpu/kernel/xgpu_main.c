// SPDX-License-Identifier: GPL-2.0
/*
 * xgpu - reference vendor GPU module: SVM atomics through device-exclusive
 * access.
 *
 * There is no hardware: the "device" is a software engine (a workqueue)
 * executing the work that ioctls submit.  Everything it does to process
 * memory goes through the kernel APIs a real GPU driver uses:
 *
 *  - one context per open file, bound to the opener's mm, with an
 *    mmu_interval_notifier over the whole address space (like test_hmm);
 *  - READ/WRITE mirror memory through hmm_range_fault() and the
 *    mmu_interval_read_begin()/mmu_interval_read_retry() pattern;
 *  - an atomic op at a user VA makes the page device-exclusive
 *    (make_device_exclusive_range() or make_device_exclusive(), see
 *    xgpu_compat.h; owner = xgpu_owner_cookie), installs an atomic entry in
 *    the context's device page table and executes the op through a kernel
 *    mapping of the page while the entry is valid.  Any invalidation but
 *    our own MMU_NOTIFY_EXCLUSIVE revokes the entries of its range, after
 *    the in-flight op (which holds pt_lock) has finished.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/completion.h>
#include <linux/fs.h>
#include <linux/hmm.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "../include/uapi/xgpu.h"
#include "xgpu_compat.h"

static bool enable_atomics = true;
module_param(enable_atomics, bool, 0644);
MODULE_PARM_DESC(enable_atomics,
		 "Device atomics through device-exclusive access (field kill switch, default Y)");

static bool engine_inline;
module_param(engine_inline, bool, 0644);
MODULE_PARM_DESC(engine_inline,
		 "Run jobs in the calling thread instead of on the engine (diagnostics, default N)");

/* Attempts to win a page before ATOMIC/ACQUIRE give up with -EAGAIN. */
#define XGPU_ACQUIRE_TRIES	1000
/* Attempts of a READ/WRITE mirror walk before giving up with -EAGAIN. */
#define XGPU_MIRROR_TRIES	1000

/*
 * Owner cookie passed to the device-exclusive API; the MMU_NOTIFY_EXCLUSIVE
 * events it sends while converting our pages carry it.  Only its address
 * is used.  All contexts share it, like all channels of one GPU.
 */
static int xgpu_owner_cookie;
#define XGPU_OWNER ((void *)&xgpu_owner_cookie)

/*
 * struct xgpu_stats_ctr - counters of a context, lockless (atomic64_t);
 * the fields are those of struct xgpu_stats in the UAPI header.
 */
struct xgpu_stats_ctr {
	atomic64_t acquisitions;
	atomic64_t acquire_failures;
	atomic64_t fastpath_hits;
	atomic64_t ops;
	atomic64_t retries;
	atomic64_t self_events;
	atomic64_t invalidations;
	atomic64_t revoked[XGPU_REVOKE_NR];
	atomic64_t released;
	atomic64_t rw_bytes;
};

/**
 * struct xgpu_ctx - one open file of /dev/xgpu
 * @mm: the opener's mm, mmgrab()ed; immutable
 * @notifier: interval notifier over the whole address space of @mm
 * @pt_lock: protects @pt and the use of the pages it holds, and orders
 *	mmu_interval_set_seq() against mmu_interval_read_retry()
 * @pt: device page table: page index -> struct page * of an atomic
 *	(device-exclusive) entry; no reference is held, the notifier removes
 *	the entry before the page can go away
 * @stats: counters
 */
struct xgpu_ctx {
	struct mm_struct *mm;
	struct mmu_interval_notifier notifier;
	struct mutex pt_lock;	/* see above: @pt, pages in @pt, seq */
	struct xarray pt;
	struct xgpu_stats_ctr stats;
};

/**
 * struct xgpu_job - work submitted to the engine; lives on the stack of
 * the submitting ioctl, which waits for it
 * @work: engine work item
 * @done: completed by the engine
 * @ctx: the context
 * @run: what the engine executes, with @ctx->mm pinned
 * @ret: result of @run
 * @ops: ATOMIC: the batch; the engine fills in the old values
 * @count: ATOMIC: ops in @ops; ACQUIRE: pages from @addr
 * @progress: out: ops executed (ATOMIC), pages acquired (ACQUIRE)
 * @addr: ACQUIRE, READ, WRITE: user VA
 * @buf: READ, WRITE: kernel bounce buffer of @len bytes
 * @len: READ, WRITE: bytes
 * @write: WRITE rather than READ
 */
struct xgpu_job {
	struct work_struct work;
	struct completion done;
	struct xgpu_ctx *ctx;
	int (*run)(struct xgpu_job *job);
	int ret;
	struct xgpu_atomic_op *ops;
	u32 count;
	u32 progress;
	unsigned long addr;
	void *buf;
	size_t len;
	bool write;
};

/**
 * struct xgpu_device - the one software device
 * @misc: /dev/xgpu
 * @engine: the engine; executes struct xgpu_job
 */
struct xgpu_device {
	struct miscdevice misc;
	struct workqueue_struct *engine;
};

static struct xgpu_device xgpu_dev;

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

/* Drop the atomic entries of [start, end).  Called with pt_lock held. */
static unsigned long xgpu_pt_drop(struct xgpu_ctx *ctx, unsigned long start,
				  unsigned long end)
{
	unsigned long idx, n = 0;
	struct page *page;

	lockdep_assert_held(&ctx->pt_lock);
	xa_for_each_range(&ctx->pt, idx, page, start >> PAGE_SHIFT,
			  (end - 1) >> PAGE_SHIFT) {
		xa_erase(&ctx->pt, idx);
		n++;
	}
	return n;
}

static bool xgpu_invalidate(struct mmu_interval_notifier *mni,
			    const struct mmu_notifier_range *range,
			    unsigned long cur_seq)
{
	struct xgpu_ctx *ctx = container_of(mni, struct xgpu_ctx, notifier);
	unsigned long n;

	/*
	 * Our own request to make a page exclusive: nothing to revoke, and
	 * bumping the sequence would make the acquire loop retry forever.
	 */
	if (xgpu_event_own(range, XGPU_OWNER)) {
		atomic64_inc(&ctx->stats.self_events);
		return true;
	}

	/* Taking pt_lock waits for the op in flight on these pages. */
	if (mmu_notifier_range_blockable(range))
		mutex_lock(&ctx->pt_lock);
	else if (!mutex_trylock(&ctx->pt_lock))
		return false;

	mmu_interval_set_seq(mni, cur_seq);
	n = xgpu_pt_drop(ctx, range->start, range->end);

	mutex_unlock(&ctx->pt_lock);

	atomic64_inc(&ctx->stats.invalidations);
	if (n)
		atomic64_add(n, &ctx->stats.revoked[xgpu_revoke_cause(range)]);
	return true;
}

static const struct mmu_interval_notifier_ops xgpu_mni_ops = {
	.invalidate = xgpu_invalidate,
};

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
 * Make the page at @addr (page aligned) device-exclusive and install its
 * atomic entry.  On success returns 0 with pt_lock held and *pagep locked
 * and referenced: the caller may use the page, then unlocks pt_lock and
 * calls xgpu_exclusive_done().  Runs on the engine with ctx->mm pinned.
 */
static int xgpu_acquire_page(struct xgpu_ctx *ctx, unsigned long addr,
			     struct page **pagep)
{
	struct mm_struct *mm = ctx->mm;
	unsigned int tries;
	struct page *page;
	unsigned long seq;
	int ret;

	for (tries = 0; tries < XGPU_ACQUIRE_TRIES; tries++) {
		if (tries) {
			/*
			 * A failed attempt leaves the PTE device-exclusive;
			 * converting it again would first restore it and so
			 * invalidate our own attempt.  Restore it now, before
			 * the critical section begins.
			 */
			atomic64_inc(&ctx->stats.retries);
			cond_resched();
			mmap_read_lock(mm);
			fixup_user_fault(mm, addr, FAULT_FLAG_WRITE, NULL);
			mmap_read_unlock(mm);
		}

		seq = mmu_interval_read_begin(&ctx->notifier);
		mmap_read_lock(mm);
		ret = xgpu_check_vma(mm, addr);
		if (!ret) {
			page = xgpu_make_exclusive(mm, addr, XGPU_OWNER);
			ret = PTR_ERR_OR_ZERO(page);
		}
		mmap_read_unlock(mm);
		if (ret == -EAGAIN)
			continue;
		if (ret == -EOPNOTSUPP && XGPU_API != XGPU_API_NONE)
			ret = -ENXIO;	/* not anonymous: page API */
		if (ret)
			goto out_fail;

		mutex_lock(&ctx->pt_lock);
		if (mmu_interval_read_retry(&ctx->notifier, seq)) {
			mutex_unlock(&ctx->pt_lock);
			xgpu_exclusive_done(page);
			continue;
		}

		ret = xa_err(xa_store(&ctx->pt, addr >> PAGE_SHIFT, page,
				      GFP_ATOMIC));
		if (ret) {
			mutex_unlock(&ctx->pt_lock);
			xgpu_exclusive_done(page);
			goto out_fail;
		}
		atomic64_inc(&ctx->stats.acquisitions);
		*pagep = page;
		return 0;
	}
	ret = -EAGAIN;
out_fail:
	atomic64_inc(&ctx->stats.acquire_failures);
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
 * loop keeps the op atomic against the engine's other workers too.
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

	/* Fast path: the atomic entry is still valid. */
	mutex_lock(&ctx->pt_lock);
	page = xa_load(&ctx->pt, addr >> PAGE_SHIFT);
	if (page) {
		xgpu_exec(ctx, page, op);
		mutex_unlock(&ctx->pt_lock);
		atomic64_inc(&ctx->stats.fastpath_hits);
		return 0;
	}
	mutex_unlock(&ctx->pt_lock);

	ret = xgpu_acquire_page(ctx, addr, &page);
	if (ret)
		return ret;
	xgpu_exec(ctx, page, op);
	mutex_unlock(&ctx->pt_lock);
	xgpu_exclusive_done(page);
	return 0;
}

static int xgpu_job_atomic(struct xgpu_job *job)
{
	int ret;

	for (job->progress = 0; job->progress < job->count; job->progress++) {
		ret = xgpu_atomic_one(job->ctx, &job->ops[job->progress]);
		if (ret)
			return ret;
	}
	return 0;
}

static int xgpu_job_acquire(struct xgpu_job *job)
{
	struct xgpu_ctx *ctx = job->ctx;
	unsigned long addr = job->addr;
	struct page *page;
	int ret;

	for (job->progress = 0; job->progress < job->count;
	     job->progress++, addr += PAGE_SIZE) {
		mutex_lock(&ctx->pt_lock);
		page = xa_load(&ctx->pt, addr >> PAGE_SHIFT);
		mutex_unlock(&ctx->pt_lock);
		if (page)
			continue;

		ret = xgpu_acquire_page(ctx, addr, &page);
		if (ret)
			return ret;
		mutex_unlock(&ctx->pt_lock);
		xgpu_exclusive_done(page);
	}
	return 0;
}

/* Copy between the bounce buffer and the mirrored pages; pt_lock held. */
static void xgpu_mirror_copy(struct xgpu_job *job, unsigned long *pfns)
{
	unsigned long addr = job->addr;
	size_t done = 0;

	while (done < job->len) {
		unsigned long i = (addr >> PAGE_SHIFT) - (job->addr >> PAGE_SHIFT);
		struct page *page = hmm_pfn_to_page(pfns[i]);
		size_t off = offset_in_page(addr);
		size_t n = min_t(size_t, PAGE_SIZE - off, job->len - done);
		void *kaddr = xgpu_kmap(page);

		if (job->write)
			memcpy(kaddr + off, job->buf + done, n);
		else
			memcpy(job->buf + done, kaddr + off, n);
		xgpu_kunmap(kaddr);
		done += n;
		addr += n;
	}
}

static int xgpu_job_mirror(struct xgpu_job *job)
{
	struct xgpu_ctx *ctx = job->ctx;
	struct mm_struct *mm = ctx->mm;
	struct hmm_range range = {
		.notifier = &ctx->notifier,
		.start = job->addr & PAGE_MASK,
		.end = PAGE_ALIGN(job->addr + job->len),
		.default_flags = HMM_PFN_REQ_FAULT |
				 (job->write ? HMM_PFN_REQ_WRITE : 0),
		.dev_private_owner = XGPU_OWNER,
	};
	unsigned long npages = (range.end - range.start) >> PAGE_SHIFT;
	unsigned int tries;
	int ret = -EAGAIN;

	range.hmm_pfns = kvcalloc(npages, sizeof(*range.hmm_pfns), GFP_KERNEL);
	if (!range.hmm_pfns)
		return -ENOMEM;

	for (tries = 0; tries < XGPU_MIRROR_TRIES; tries++) {
		range.notifier_seq = mmu_interval_read_begin(range.notifier);
		mmap_read_lock(mm);
		ret = hmm_range_fault(&range);
		mmap_read_unlock(mm);
		if (ret == -EBUSY) {
			atomic64_inc(&ctx->stats.retries);
			ret = -EAGAIN;
			continue;
		}
		if (ret) {
			if (ret != -ENOMEM)
				ret = -EFAULT;
			break;
		}

		mutex_lock(&ctx->pt_lock);
		if (mmu_interval_read_retry(range.notifier, range.notifier_seq)) {
			mutex_unlock(&ctx->pt_lock);
			atomic64_inc(&ctx->stats.retries);
			ret = -EAGAIN;
			continue;
		}
		xgpu_mirror_copy(job, range.hmm_pfns);
		mutex_unlock(&ctx->pt_lock);
		atomic64_add(job->len, &ctx->stats.rw_bytes);
		break;
	}

	kvfree(range.hmm_pfns);
	return ret;
}

static void xgpu_engine_work(struct work_struct *work)
{
	struct xgpu_job *job = container_of(work, struct xgpu_job, work);
	struct mm_struct *mm = job->ctx->mm;

	if (mmget_not_zero(mm)) {
		job->ret = job->run(job);
		mmput(mm);
	} else {
		job->ret = -EFAULT;
	}
	complete(&job->done);
}

/* Run @job on the engine and wait for it. */
static int xgpu_engine_run(struct xgpu_job *job)
{
	/* Diagnostics: the caller's mm is ctx->mm and stays alive meanwhile. */
	if (READ_ONCE(engine_inline))
		return job->run(job);

	INIT_WORK_ONSTACK(&job->work, xgpu_engine_work);
	init_completion(&job->done);
	queue_work(xgpu_dev.engine, &job->work);
	wait_for_completion(&job->done);
	destroy_work_on_stack(&job->work);
	return job->ret;
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
	struct xgpu_job job = { .ctx = ctx, .run = xgpu_job_atomic };
	struct xgpu_atomic arg;
	void __user *uops;
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
	job.ops = memdup_user(uops, array_size(arg.count, sizeof(*job.ops)));
	if (IS_ERR(job.ops))
		return PTR_ERR(job.ops);
	ret = xgpu_validate_ops(job.ops, arg.count);
	if (ret)
		goto out_free;

	job.count = arg.count;
	ret = xgpu_engine_run(&job);

	arg.done = job.progress;
	if (copy_to_user(uops, job.ops, array_size(job.progress,
						   sizeof(*job.ops))) ||
	    copy_to_user(uarg, &arg, sizeof(arg)))
		ret = ret ?: -EFAULT;
out_free:
	kfree(job.ops);
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
	struct xgpu_job job = { .ctx = ctx, .run = xgpu_job_acquire };
	struct xgpu_range arg;
	int ret;

	ret = xgpu_get_range(&arg, uarg, false);
	if (ret)
		return ret;
	ret = xgpu_atomics_check();
	if (ret)
		return ret;

	job.addr = arg.addr;
	job.count = arg.npages;
	ret = xgpu_engine_run(&job);

	arg.count = job.progress;
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		ret = ret ?: -EFAULT;
	return ret;
}

static long xgpu_ioctl_release(struct xgpu_ctx *ctx, void __user *uarg)
{
	struct xgpu_range arg;
	int ret;

	ret = xgpu_get_range(&arg, uarg, false);
	if (ret)
		return ret;

	mutex_lock(&ctx->pt_lock);
	arg.count = xgpu_pt_drop(ctx, arg.addr,
				 arg.addr + (arg.npages << PAGE_SHIFT));
	mutex_unlock(&ctx->pt_lock);
	atomic64_add(arg.count, &ctx->stats.released);

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
	bitmap = kcalloc(words, sizeof(*bitmap), GFP_KERNEL);
	if (!bitmap)
		return -ENOMEM;

	first = arg.addr >> PAGE_SHIFT;
	last = first + arg.npages - 1;
	arg.count = 0;
	mutex_lock(&ctx->pt_lock);
	xa_for_each_range(&ctx->pt, idx, page, first, last) {
		bitmap[(idx - first) / 64] |= 1ULL << ((idx - first) % 64);
		arg.count++;
	}
	mutex_unlock(&ctx->pt_lock);

	ret = 0;
	if (copy_to_user(u64_to_user_ptr(arg.bitmap), bitmap,
			 words * sizeof(*bitmap)) ||
	    copy_to_user(uarg, &arg, sizeof(arg)))
		ret = -EFAULT;
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
	st.self_events = atomic64_read(&c->self_events);
	st.invalidations = atomic64_read(&c->invalidations);
	for (i = 0; i < XGPU_REVOKE_NR; i++)
		st.revoked[i] = atomic64_read(&c->revoked[i]);
	st.released = atomic64_read(&c->released);
	st.rw_bytes = atomic64_read(&c->rw_bytes);
	return copy_to_user(uarg, &st, sizeof(st)) ? -EFAULT : 0;
}

static long xgpu_ioctl_rw(struct xgpu_ctx *ctx, void __user *uarg, bool write)
{
	struct xgpu_job job = { .ctx = ctx, .run = xgpu_job_mirror };
	struct xgpu_rw arg;
	void __user *ubuf;
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
	job.buf = kvmalloc(arg.len, GFP_KERNEL);
	if (!job.buf)
		return -ENOMEM;
	if (write && copy_from_user(job.buf, ubuf, arg.len)) {
		ret = -EFAULT;
		goto out_free;
	}

	job.addr = arg.addr;
	job.len = arg.len;
	job.write = write;
	ret = xgpu_engine_run(&job);
	if (!ret && !write && copy_to_user(ubuf, job.buf, arg.len))
		ret = -EFAULT;
out_free:
	kvfree(job.buf);
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
	int ret;

	if (!current->mm)
		return -EINVAL;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;

	mutex_init(&ctx->pt_lock);
	xa_init(&ctx->pt);
	mmgrab(current->mm);
	ctx->mm = current->mm;

	ret = mmu_interval_notifier_insert(&ctx->notifier, ctx->mm, 0,
					   ULONG_MAX & PAGE_MASK,
					   &xgpu_mni_ops);
	if (ret)
		goto err_mmdrop;

	file->private_data = ctx;
	return 0;

err_mmdrop:
	mmdrop(ctx->mm);
	mutex_destroy(&ctx->pt_lock);
	kfree(ctx);
	return ret;
}

static int xgpu_release(struct inode *inode, struct file *file)
{
	struct xgpu_ctx *ctx = file->private_data;

	/*
	 * No job is in flight (ioctls hold the file).  Pages still
	 * device-exclusive stay so in the CPU page table until the CPU
	 * touches them; the kernel restores them without us.
	 */
	mmu_interval_notifier_remove(&ctx->notifier);
	xa_destroy(&ctx->pt);
	mmdrop(ctx->mm);
	mutex_destroy(&ctx->pt_lock);
	kfree(ctx);
	return 0;
}

static const struct file_operations xgpu_fops = {
	.owner = THIS_MODULE,
	.open = xgpu_open,
	.release = xgpu_release,
	.unlocked_ioctl = xgpu_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct xgpu_device xgpu_dev = {
	.misc = {
		.minor = MISC_DYNAMIC_MINOR,
		.name = "xgpu",
		.fops = &xgpu_fops,
		.mode = 0666,
	},
};

static int __init xgpu_init(void)
{
	int ret;

	/*
	 * Per-CPU and high priority: a job runs on the submitter's CPU while
	 * the submitter sleeps, without a cross-CPU wakeup.
	 */
	xgpu_dev.engine = alloc_workqueue("xgpu_engine", WQ_HIGHPRI, 0);
	if (!xgpu_dev.engine)
		return -ENOMEM;

	ret = misc_register(&xgpu_dev.misc);
	if (ret)
		goto err_wq;

	if (XGPU_API == XGPU_API_NONE)
		pr_info("/dev/xgpu: device atomics unavailable: this kernel has no device-exclusive API (make_device_exclusive_range/make_device_exclusive); READ/WRITE only\n");
	else
		pr_info("/dev/xgpu: device atomics via %s%s\n", XGPU_API_NAME,
			enable_atomics ? "" : " (disabled: enable_atomics=0)");
	return 0;

err_wq:
	destroy_workqueue(xgpu_dev.engine);
	return ret;
}
module_init(xgpu_init);

static void __exit xgpu_exit(void)
{
	misc_deregister(&xgpu_dev.misc);
	destroy_workqueue(xgpu_dev.engine);
}
module_exit(xgpu_exit);

MODULE_DESCRIPTION("xgpu: reference vendor GPU module, SVM atomics through device-exclusive access");
MODULE_LICENSE("GPL");
