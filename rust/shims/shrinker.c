// SPDX-License-Identifier: GPL-2.0
/*
 * Giving memory back (rust/shrinker.rs): the shrinker, the OOM notifier
 * and the vmap purge notifier, each finding its Rust owner through what
 * it was registered with; and swap writeback of released object pages.
 * Counting, scanning and purging are Rust's.
 */
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/notifier.h>
#include <linux/oom.h>
#include <linux/pagemap.h>
#include <linux/sched.h>
#include <linux/shrinker.h>
#include <linux/swap.h>
#include <linux/vmalloc.h>
#include <linux/writeback.h>

#include "movgem_shim.h"

static unsigned long movgem_shrink_count(struct shrinker *shrinker,
					 struct shrink_control *sc)
{
	unsigned long n = movgem_rs_shrink_count(shrinker->private_data);

	return n ? n : SHRINK_EMPTY;
}

static unsigned long movgem_shrink_scan(struct shrinker *shrinker,
					struct shrink_control *sc)
{
	long freed;

	freed = movgem_rs_shrink_scan(shrinker->private_data, sc->nr_to_scan,
				      gfpflags_allow_blocking(sc->gfp_mask),
				      sc->gfp_mask & __GFP_FS);
	return freed < 0 ? SHRINK_STOP : freed;
}

struct shrinker *movgem_shrinker_register(void *owner)
{
	struct shrinker *shrinker = shrinker_alloc(0, "movgem");

	if (!shrinker)
		return NULL;
	shrinker->count_objects = movgem_shrink_count;
	shrinker->scan_objects = movgem_shrink_scan;
	shrinker->seeks = DEFAULT_SEEKS;
	shrinker->private_data = owner;
	shrinker_register(shrinker);
	return shrinker;
}

/* Waits for scans in flight. */
void movgem_shrinker_unregister(struct shrinker *shrinker)
{
	shrinker_free(shrinker);
}

static int movgem_oom_notify(struct notifier_block *nb, unsigned long event,
			     void *ptr)
{
	unsigned long *freed = ptr;

	*freed += movgem_rs_oom_notify(nb);
	return NOTIFY_DONE;
}

/* @nb: zeroed storage inside the Rust owner. */
int movgem_oom_notifier_register(struct notifier_block *nb)
{
	nb->notifier_call = movgem_oom_notify;
	return register_oom_notifier(nb);
}

void movgem_oom_notifier_unregister(struct notifier_block *nb)
{
	unregister_oom_notifier(nb);
}

static int movgem_vmap_notify(struct notifier_block *nb, unsigned long event,
			      void *ptr)
{
	unsigned long *freed = ptr;

	*freed += movgem_rs_vmap_purge(nb);
	return NOTIFY_DONE;
}

/* @nb: zeroed storage inside the Rust owner. */
int movgem_vmap_notifier_register(struct notifier_block *nb)
{
	nb->notifier_call = movgem_vmap_notify;
	return register_vmap_purge_notifier(nb);
}

void movgem_vmap_notifier_unregister(struct notifier_block *nb)
{
	unregister_vmap_purge_notifier(nb);
}

/*
 * Starts swap writeback of the dirty pages of @filp that nobody maps, as
 * reclaim would, so that they leave the page cache instead of waiting
 * for the LRU to reach them; stops once @nr_to_write pages are submitted.
 * Returns the pages submitted.
 */
unsigned long movgem_shmem_writeback(struct file *filp,
				     unsigned long nr_to_write)
{
	struct address_space *mapping = filp->f_mapping;
	struct writeback_control wbc = {
		.sync_mode = WB_SYNC_NONE,
		.nr_to_write = min_t(unsigned long, nr_to_write, LONG_MAX),
		.range_start = 0,
		.range_end = LLONG_MAX,
		.for_reclaim = 1,
	};
	pgoff_t i, end = i_size_read(file_inode(filp)) >> PAGE_SHIFT;
	unsigned long done = 0;

	if (get_nr_swap_pages() <= 0)
		return 0;
	for (i = 0; i < end && done < nr_to_write; i++) {
		struct folio *folio;

		cond_resched();
		/* Never wait for a folio lock: migration may hold it. */
		folio = __filemap_get_folio(mapping, i, FGP_LOCK | FGP_NOWAIT, 0);
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

/* Reclaim entered by an allocating task (__perform_reclaim()). */
bool movgem_current_in_reclaim(void)
{
	return current->flags & PF_MEMALLOC;
}

long movgem_swap_free_pages(void)
{
	return get_nr_swap_pages();
}
