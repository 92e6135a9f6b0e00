// SPDX-License-Identifier: GPL-2.0
/*
 * Userptr shims: an mmu_interval_notifier over the user range of an
 * object, pinning the range for a request (or for keeping it), and
 * faulting it in.  What to do on an invalidation is decided in Rust.
 */
#include <linux/err.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "movgem_shim.h"

struct movgem_userptr {
	struct mmu_interval_notifier notifier;
	void *owner;
};

static bool movgem_userptr_invalidate(struct mmu_interval_notifier *mni,
				      const struct mmu_notifier_range *range,
				      unsigned long cur_seq)
{
	struct movgem_userptr *up = container_of(mni, struct movgem_userptr,
						 notifier);

	return movgem_rs_userptr_invalidate(up->owner, up, cur_seq,
					    mmu_notifier_range_blockable(range));
}

static const struct mmu_interval_notifier_ops movgem_userptr_ops = {
	.invalidate = movgem_userptr_invalidate,
};

struct movgem_userptr *movgem_userptr_create(void *owner, unsigned long start,
					     unsigned long len)
{
	struct movgem_userptr *up;
	int ret;

	if (!access_ok((void __user *)start, len))
		return ERR_PTR(-EFAULT);
	up = kzalloc(sizeof(*up), GFP_KERNEL);
	if (!up)
		return ERR_PTR(-ENOMEM);
	up->owner = owner;
	ret = mmu_interval_notifier_insert(&up->notifier, current->mm, start,
					   len, &movgem_userptr_ops);
	if (ret) {
		kfree(up);
		return ERR_PTR(ret);
	}
	return up;
}

/* Waits for an invalidation in flight on @up to finish. */
void movgem_userptr_destroy(struct movgem_userptr *up)
{
	mmu_interval_notifier_remove(&up->notifier);
	kfree(up);
}

unsigned long movgem_userptr_read_begin(struct movgem_userptr *up)
{
	return mmu_interval_read_begin(&up->notifier);
}

bool movgem_userptr_read_retry(struct movgem_userptr *up, unsigned long seq)
{
	return mmu_interval_read_retry(&up->notifier, seq);
}

void movgem_userptr_set_seq(struct movgem_userptr *up, unsigned long seq)
{
	mmu_interval_set_seq(&up->notifier, seq);
}

/*
 * Plain references on up to @npages pages from @start, to fault them in
 * (SET_DOMAIN): dropped at once, never used for access.  Only from the
 * process that created the object.  Returns the number of pages or
 * -errno.
 */
long movgem_userptr_get_pages(struct movgem_userptr *up, unsigned long start,
			      unsigned int npages, bool write,
			      struct page **pages)
{
	if (current->mm != up->notifier.mm)
		return -EFAULT;
	return get_user_pages_fast(start, npages, write ? FOLL_WRITE : 0, pages);
}

/*
 * Pins up to @npages pages from @start for the engine, which reads and
 * writes them later, as DMA would.  A pin (folio_maybe_dma_pinned())
 * makes fork() copy a private page for the child instead of sharing it,
 * so the GPU's write still reaches the parent; FOLL_LONGTERM refuses a
 * writable mapping of a file that needs dirty tracking (-EFAULT from
 * check_vma_flags()), whose pages writeback could clean before the GPU
 * writes them, and moves pages out of ZONE_MOVABLE and CMA first.  Only
 * from the process that created the object.  Returns the number of
 * pages or -errno.
 */
long movgem_userptr_pin_pages(struct movgem_userptr *up, unsigned long start,
			      unsigned int npages, bool write,
			      struct page **pages)
{
	if (current->mm != up->notifier.mm)
		return -EFAULT;
	return pin_user_pages_fast(start, npages,
				   FOLL_LONGTERM | (write ? FOLL_WRITE : 0),
				   pages);
}

/*
 * Drops a pin from movgem_userptr_pin_pages().  With @dirty, marks the
 * page dirty first (the GPU wrote it), under the folio lock: may sleep.
 * Without, never sleeps.
 */
void movgem_userptr_unpin_page(struct page *page, bool dirty)
{
	unpin_user_pages_dirty_lock(&page, 1, dirty);
}
