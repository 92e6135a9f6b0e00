// SPDX-License-Identifier: GPL-2.0
/* The GEM shrinker: registration only; counting and scanning are Rust's. */
#include <linux/gfp.h>
#include <linux/shrinker.h>

#include "movgem_shim.h"

static unsigned long movgem_shrink_count(struct shrinker *shrinker,
					 struct shrink_control *sc)
{
	unsigned long n = movgem_rs_shrink_count();

	return n ? n : SHRINK_EMPTY;
}

static unsigned long movgem_shrink_scan(struct shrinker *shrinker,
					struct shrink_control *sc)
{
	long freed;

	freed = movgem_rs_shrink_scan(sc->nr_to_scan,
				      gfpflags_allow_blocking(sc->gfp_mask),
				      sc->gfp_mask & __GFP_FS);
	return freed < 0 ? SHRINK_STOP : freed;
}

struct shrinker *movgem_shrinker_register(void)
{
	struct shrinker *shrinker = shrinker_alloc(0, "movgem");

	if (!shrinker)
		return NULL;
	shrinker->count_objects = movgem_shrink_count;
	shrinker->scan_objects = movgem_shrink_scan;
	shrinker->seeks = DEFAULT_SEEKS;
	shrinker_register(shrinker);
	return shrinker;
}

/* Waits for scans in flight. */
void movgem_shrinker_unregister(struct shrinker *shrinker)
{
	shrinker_free(shrinker);
}
