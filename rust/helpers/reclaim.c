// SPDX-License-Identifier: GPL-2.0
/*
 * Reclaim shims: swap writeback of released object pages, the OOM
 * notifier, the NOFS scope of struct_mutex and its lockdep priming.
 */
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/lockdep.h>
#include <linux/mutex.h>
#include <linux/notifier.h>
#include <linux/oom.h>
#include <linux/pagemap.h>
#include <linux/sched/mm.h>
#include <linux/swap.h>
#include <linux/writeback.h>

#include "movgem_shim.h"

/*
 * Starts swap writeback of the dirty pages of @filp that nobody maps, as
 * reclaim would, so that they leave the page cache instead of waiting
 * for the LRU to reach them.  Returns the pages submitted.
 */
unsigned long movgem_shmem_writeback(struct file *filp)
{
	struct address_space *mapping = filp->f_mapping;
	struct writeback_control wbc = {
		.sync_mode = WB_SYNC_NONE,
		.nr_to_write = SWAP_CLUSTER_MAX,
		.range_start = 0,
		.range_end = LLONG_MAX,
		.for_reclaim = 1,
	};
	pgoff_t i, end = i_size_read(file_inode(filp)) >> PAGE_SHIFT;
	unsigned long done = 0;

	if (get_nr_swap_pages() <= 0)
		return 0;
	for (i = 0; i < end; i++) {
		struct folio *folio = filemap_lock_folio(mapping, i);

		if (IS_ERR(folio))
			continue;
		if (!folio_mapped(folio) && folio_clear_dirty_for_io(folio)) {
			folio_set_reclaim(folio);
			/* On success the folio comes back unlocked. */
			if (!mapping->a_ops->writepage(&folio->page, &wbc)) {
				done++;
				folio_put(folio);
				continue;
			}
			if (!folio_test_writeback(folio))
				folio_clear_reclaim(folio);
		}
		folio_unlock(folio);
		folio_put(folio);
	}
	return done;
}

bool movgem_current_is_kswapd(void)
{
	return current_is_kswapd();
}

bool movgem_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
}

static int movgem_oom_notify(struct notifier_block *nb, unsigned long event,
			     void *ptr)
{
	unsigned long *freed = ptr;

	*freed += movgem_rs_oom_notify();
	return NOTIFY_DONE;
}

static struct notifier_block movgem_oom_nb = {
	.notifier_call = movgem_oom_notify,
};

int movgem_oom_notifier_register(void)
{
	return register_oom_notifier(&movgem_oom_nb);
}

void movgem_oom_notifier_unregister(void)
{
	unregister_oom_notifier(&movgem_oom_nb);
}

/* mutex_lock_killable() is a macro when lockdep is on. */
int movgem_mutex_lock_killable(struct mutex *lock)
{
	return mutex_lock_killable(lock);
}

unsigned int movgem_nofs_save(void)
{
	return memalloc_nofs_save();
}

void movgem_nofs_restore(unsigned int flags)
{
	memalloc_nofs_restore(flags);
}

/*
 * Tell lockdep that @lock may be taken inside fs reclaim, so that a
 * GFP_FS allocation under it (or a blocking lock of it from reclaim) is
 * reported even if reclaim never happens to run there.
 */
void movgem_lockdep_prime_reclaim(struct mutex *lock)
{
#ifdef CONFIG_DEBUG_LOCK_ALLOC
	fs_reclaim_acquire(GFP_KERNEL);
	mutex_acquire(&lock->dep_map, 0, 0, _RET_IP_);
	mutex_release(&lock->dep_map, _RET_IP_);
	fs_reclaim_release(GFP_KERNEL);
#endif
}
