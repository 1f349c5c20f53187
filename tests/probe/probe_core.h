/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Common body of the devexcl probe modules
 *
 * Included by exactly one file per module, which first defines
 *   PROBE_API       DEVEXCL_PROBE_API_RANGE or DEVEXCL_PROBE_API_PAGE
 *   PROBE_API_NAME  "range" or "page" (the device is /dev/devexcl_probe_<name>)
 * and then implements probe_make_exclusive() with its one kernel API.
 *
 * One context per open file, bound to the opener's mm.  EXCLUSIVE
 * (re)registers an mmu_interval_notifier over the range, makes the pages
 * device-exclusive under mmap_read_lock and at once unlocks and releases
 * them: the entries stay device-exclusive until the CPU touches them.  The
 * notifier ignores the MMU_NOTIFY_EXCLUSIVE events carrying the module's own
 * owner cookie, like nouveau does, and counts every other invalidation.
 */
#ifndef DEVEXCL_PROBE_CORE_H
#define DEVEXCL_PROBE_CORE_H

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/delay.h>
#include <linux/errno.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/rmap.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "devexcl_probe_uapi.h"

#if !defined(PROBE_API) || !defined(PROBE_API_NAME)
#error "define PROBE_API and PROBE_API_NAME before including this header"
#endif

struct probe_ctx {
	struct mm_struct *mm;		/* mmgrab()ed at open */
	struct mutex ioctl_lock;	/* serialises ioctls: notifier state */
	struct mmu_interval_notifier notifier;
	bool registered;
	unsigned long start;		/* registered range */
	unsigned long end;
	struct mutex seq_lock;		/* mmu_interval_set_seq() */
	atomic64_t self_events;
	atomic64_t invalidations;
	atomic64_t unaligned;
};

/*
 * Owner cookie passed to the kernel API; the MMU_NOTIFY_EXCLUSIVE events it
 * sends while making our pages exclusive carry it.  Only its address is used.
 */
static int probe_owner_cookie;
#define PROBE_OWNER ((void *)&probe_owner_cookie)

/*
 * Implemented by the including file with its kernel API.  Called with
 * mmap_read_lock(mm) held.  Makes [start, start + npages pages) device
 * exclusive as far as it can (start need not be page-aligned), calls
 * probe_hold(mm, hold_ms) for every page it got if hold_ms is not 0, unlocks
 * and releases every page it got, adds the pages made exclusive to *made and
 * stores the positive errno of the first failure in *first_errno (if still
 * 0).  Returns 0, or a negative errno when the call as a whole must fail
 * (-ENOMEM, -EINTR).
 */
static int probe_make_exclusive(struct mm_struct *mm, unsigned long start,
				unsigned int npages, void *owner,
				unsigned int hold_ms, u32 *made, int *first_errno);

/*
 * DEVEXCL_PROBE_EXCL_HOLD: called with mmap_read_lock(mm) and the lock of a
 * page just made device-exclusive held.  Models a driver programming its
 * device: the mmap_lock is dropped, the page stays locked for hold_ms (a
 * signal ends that early), then the mmap_lock is taken again the way a
 * driver revalidating its VMA takes it.  Returns with the mmap_lock held.
 */
static void probe_hold(struct mm_struct *mm, unsigned int hold_ms)
{
	mmap_read_unlock(mm);
	msleep_interruptible(hold_ms);
	mmap_read_lock(mm);
}

static bool probe_invalidate(struct mmu_interval_notifier *mni,
			     const struct mmu_notifier_range *range,
			     unsigned long cur_seq)
{
	struct probe_ctx *ctx = container_of(mni, struct probe_ctx, notifier);

	if (!PAGE_ALIGNED(range->start) || !PAGE_ALIGNED(range->end))
		atomic64_inc(&ctx->unaligned);

	/*
	 * Our own request to make pages exclusive: nothing of ours to revoke,
	 * and bumping the sequence here would make a device driver retry
	 * forever (the caller must filter this event out).
	 */
	if (range->event == MMU_NOTIFY_EXCLUSIVE &&
	    range->owner == PROBE_OWNER) {
		atomic64_inc(&ctx->self_events);
		return true;
	}

	if (mmu_notifier_range_blockable(range))
		mutex_lock(&ctx->seq_lock);
	else if (!mutex_trylock(&ctx->seq_lock))
		return false;

	mmu_interval_set_seq(mni, cur_seq);
	atomic64_inc(&ctx->invalidations);

	mutex_unlock(&ctx->seq_lock);
	return true;
}

static const struct mmu_interval_notifier_ops probe_mni_ops = {
	.invalidate = probe_invalidate,
};

/* Called with ctx->ioctl_lock held and without the mmap_lock. */
static int probe_register(struct probe_ctx *ctx, unsigned long start,
			  unsigned long end)
{
	int ret;

	if (ctx->registered) {
		if (ctx->start == start && ctx->end == end)
			return 0;
		mmu_interval_notifier_remove(&ctx->notifier);
		ctx->registered = false;
	}

	ret = mmu_interval_notifier_insert(&ctx->notifier, ctx->mm, start,
					   end - start, &probe_mni_ops);
	if (ret)
		return ret;

	ctx->start = start;
	ctx->end = end;
	ctx->registered = true;
	return 0;
}

static long probe_ioctl_exclusive(struct probe_ctx *ctx, void __user *uarg)
{
	struct devexcl_probe_exclusive arg;
	unsigned long start, end;
	int first_errno = 0;
	u32 made = 0;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.size != sizeof(arg) || arg.flags & ~DEVEXCL_PROBE_EXCL_FLAGS)
		return -EINVAL;
	if (arg.flags & DEVEXCL_PROBE_EXCL_HOLD) {
		if (arg.npages != 1 || !arg.hold_ms ||
		    arg.hold_ms > DEVEXCL_PROBE_MAX_HOLD_MS)
			return -EINVAL;
	} else if (arg.hold_ms) {
		return -EINVAL;
	}
	if (!(arg.flags & DEVEXCL_PROBE_EXCL_UNALIGNED) &&
	    !PAGE_ALIGNED(arg.addr))
		return -EINVAL;
	if (!arg.npages || arg.npages > DEVEXCL_PROBE_MAX_PAGES)
		return -EINVAL;

	start = arg.addr;
	end = start + ((unsigned long)arg.npages << PAGE_SHIFT);
	if (start != arg.addr || end < start || PAGE_ALIGN(end) > TASK_SIZE)
		return -EINVAL;

	mutex_lock(&ctx->ioctl_lock);
	/* The notifier covers whole pages, whatever the API is passed. */
	ret = probe_register(ctx, start & PAGE_MASK, PAGE_ALIGN(end));
	if (ret)
		goto out_unlock;

	ret = mmap_read_lock_killable(ctx->mm);
	if (ret)
		goto out_unlock;
	ret = probe_make_exclusive(ctx->mm, start, arg.npages, PROBE_OWNER,
				   arg.hold_ms, &made, &first_errno);
	mmap_read_unlock(ctx->mm);

out_unlock:
	mutex_unlock(&ctx->ioctl_lock);
	if (ret)
		return ret;

	arg.made = made;
	arg.first_errno = first_errno;
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;
	return 0;
}

static long probe_ioctl_stats(struct probe_ctx *ctx, void __user *uarg)
{
	struct devexcl_probe_stats st;

	if (copy_from_user(&st, uarg, sizeof(st)))
		return -EFAULT;
	if (st.size != sizeof(st))
		return -EINVAL;

	st.api = PROBE_API;
	st.self_events = atomic64_read(&ctx->self_events);
	st.invalidations = atomic64_read(&ctx->invalidations);
	st.unaligned = atomic64_read(&ctx->unaligned);
	if (copy_to_user(uarg, &st, sizeof(st)))
		return -EFAULT;
	return 0;
}

static long probe_ioctl(struct file *file, unsigned int cmd,
			unsigned long arg)
{
	struct probe_ctx *ctx = file->private_data;
	void __user *uarg = (void __user *)arg;

	/* The context belongs to the mm that opened the file. */
	if (current->mm != ctx->mm)
		return -EBADF;

	switch (cmd) {
	case DEVEXCL_PROBE_IOC_EXCLUSIVE:
		return probe_ioctl_exclusive(ctx, uarg);
	case DEVEXCL_PROBE_IOC_STATS:
		return probe_ioctl_stats(ctx, uarg);
	default:
		return -ENOTTY;
	}
}

static int probe_open(struct inode *inode, struct file *file)
{
	struct probe_ctx *ctx;

	if (!current->mm)
		return -EINVAL;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;

	mutex_init(&ctx->ioctl_lock);
	mutex_init(&ctx->seq_lock);
	atomic64_set(&ctx->self_events, 0);
	atomic64_set(&ctx->invalidations, 0);
	atomic64_set(&ctx->unaligned, 0);
	mmgrab(current->mm);
	ctx->mm = current->mm;
	file->private_data = ctx;
	return 0;
}

static int probe_release(struct inode *inode, struct file *file)
{
	struct probe_ctx *ctx = file->private_data;

	if (ctx->registered)
		mmu_interval_notifier_remove(&ctx->notifier);
	mmdrop(ctx->mm);
	mutex_destroy(&ctx->seq_lock);
	mutex_destroy(&ctx->ioctl_lock);
	kfree(ctx);
	return 0;
}

static const struct file_operations probe_fops = {
	.owner = THIS_MODULE,
	.open = probe_open,
	.release = probe_release,
	.unlocked_ioctl = probe_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice probe_miscdev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "devexcl_probe_" PROBE_API_NAME,
	.fops = &probe_fops,
	.mode = 0600,
};

static int __init probe_init(void)
{
	int ret;

	ret = misc_register(&probe_miscdev);
	if (ret)
		goto err;

	pr_info("/dev/%s: device-exclusive probe, %s API\n",
		probe_miscdev.name, PROBE_API_NAME);
	return 0;

err:
	pr_err("cannot register /dev/%s: %d\n", probe_miscdev.name, ret);
	return ret;
}
module_init(probe_init);

static void __exit probe_exit(void)
{
	misc_deregister(&probe_miscdev);
}
module_exit(probe_exit);

MODULE_DESCRIPTION("devexcl test probe: device-exclusive access, " PROBE_API_NAME " API");
MODULE_LICENSE("GPL");

#endif /* DEVEXCL_PROBE_CORE_H */
