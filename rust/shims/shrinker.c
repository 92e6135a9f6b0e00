// SPDX-License-Identifier: GPL-2.0
/*
 * Giving memory back (rust/shrinker.rs): the shrinker, the OOM notifier
 * and the vmap purge notifier, each finding its Rust owner through what
 * it was registered with; and swap writeback of released object pages.
 * Counting, scanning and purging are Rust's.
 */
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/ioport.h>
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
 * Test aid (debugfs "vmap_overflow"): makes alloc_vmap_area() run out of
 * vmalloc space, which calls the vmap purge notifier chain, ours among
 * them.  A test VM cannot fill the area (32 TiB on x86-64), so this asks
 * for more than the whole area at once: its overflow path then runs as
 * for a full one (purge the lazily freed areas and try again; call the
 * chain, and try again for as long as a notifier frees something; fail).
 * ioremap() is the exported way to ask for a vmalloc range of any size,
 * and the physical range is one no RAM overlaps; nothing is mapped, since
 * no range is ever found.  Returns 0 once the request failed, as it must.
 */
int movgem_vmap_overflow(void)
{
#ifdef CONFIG_X86
	unsigned long size = VMALLOC_END - VMALLOC_START + 1 + SZ_1G;
	resource_size_t phys = 1ULL << (boot_cpu_data.x86_phys_bits - 1);
	void __iomem *p;

	/* The range must stay a valid physical one, and not be RAM. */
	if (phys + size - 1 < phys || phys + size - 1 > __PHYSICAL_MASK ||
	    region_intersects(phys, size, IORESOURCE_SYSTEM_RAM,
			      IORES_DESC_NONE) != REGION_DISJOINT)
		return -EOPNOTSUPP;
	p = ioremap(phys, size);
	if (p) {
		iounmap(p);
		return -EEXIST;
	}
	return 0;
#else
	/* Where a physical range is valid is the architecture's business. */
	return -EOPNOTSUPP;
#endif
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

/*
 * For KUnit: one scan of @shrinker as shrink_slab() makes it, from
 * reclaim that may (@fs) or may not enter the filesystem.
 */
unsigned long movgem_shrinker_scan_as(struct shrinker *shrinker, bool fs,
				      unsigned long nr)
{
	struct shrink_control sc = {
		.gfp_mask = fs ? GFP_KERNEL : GFP_NOFS,
		.nr_to_scan = nr,
	};

	return shrinker->scan_objects(shrinker, &sc);
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
