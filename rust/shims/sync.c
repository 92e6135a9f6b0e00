// SPDX-License-Identifier: GPL-2.0
/*
 * For rust/sync.rs: the killable lock of struct_mutex, the NOFS scope
 * that everything under it runs in, and its lockdep priming.
 */
#include <linux/gfp.h>
#include <linux/lockdep.h>
#include <linux/mutex.h>
#include <linux/sched/mm.h>

#include "movgem_shim.h"

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
