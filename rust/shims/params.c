// SPDX-License-Identifier: GPL-2.0
/* Module parameters: the 6.12 `module!` macro cannot declare them. */
#include <linux/moduleparam.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "movgem_shim.h"

/*
 * hook: how migration of an object's folio goes (MOVGEM_HOOK_*):
 * "inplace" moves the one folio and keeps the object bound, "release"
 * releases the whole object first (the 2016 design), "off" is plain
 * migrate_folio().  "1" and "0" are kept for "inplace" and "off".
 */
static const char *const hook_modes[] = {
	[MOVGEM_HOOK_OFF] = "off",
	[MOVGEM_HOOK_RELEASE] = "release",
	[MOVGEM_HOOK_INPLACE] = "inplace",
};
static int hook = MOVGEM_HOOK_INPLACE;

static int hook_set(const char *val, const struct kernel_param *kp)
{
	int mode = sysfs_match_string(hook_modes, val);

	if (mode < 0) {
		if (sysfs_streq(val, "0"))
			mode = MOVGEM_HOOK_OFF;
		else if (sysfs_streq(val, "1"))
			mode = MOVGEM_HOOK_INPLACE;
		else
			return -EINVAL;
	}
	WRITE_ONCE(*(int *)kp->arg, mode);
	return 0;
}

static int hook_get(char *buffer, const struct kernel_param *kp)
{
	return sysfs_emit(buffer, "%s\n", hook_modes[READ_ONCE(*(int *)kp->arg)]);
}

static const struct kernel_param_ops hook_ops = {
	.set = hook_set,
	.get = hook_get,
};
module_param_cb(hook, &hook_ops, &hook, 0644);
MODULE_PARM_DESC(hook, "Migration of object folios: inplace, release (the 2016 design) or off (default: inplace)");

static unsigned int lock_timeout_ms = 10;
module_param(lock_timeout_ms, uint, 0644);
MODULE_PARM_DESC(lock_timeout_ms, "Longest wait for struct_mutex in the migrate hook (default: 10)");

int movgem_param_hook_mode(void)
{
	return READ_ONCE(hook);
}

/*
 * Deliberate breakage, for the tests that must notice it: an in-place
 * migration leaves the GTT entries pointing at the old frame (kept alive
 * by the object), or a resume skips restoring the hardware entries.
 */
static bool debug_skip_gtt_rewrite;
module_param(debug_skip_gtt_rewrite, bool, 0644);
MODULE_PARM_DESC(debug_skip_gtt_rewrite, "Test aid: in-place migration does not rewrite GTT entries (default: off)");

static bool debug_skip_restore;
module_param(debug_skip_restore, bool, 0644);
MODULE_PARM_DESC(debug_skip_restore, "Test aid: hardware GTT entries are not restored after a runtime suspend (default: off)");

/*
 * Deliberate breakage: PIN and VMAP skip memfd_pin_folios() and pin pages
 * where they are, even in ZONE_MOVABLE or CMA, as movgem did before it
 * followed FOLL_LONGTERM.
 */
static bool debug_skip_longterm_migrate;
module_param(debug_skip_longterm_migrate, bool, 0644);
MODULE_PARM_DESC(debug_skip_longterm_migrate, "Test aid: PIN and VMAP skip memfd_pin_folios(), pinning pages in ZONE_MOVABLE and CMA where they are (default: off)");

/*
 * Test aid: EXECBUF gives back the pages it has just populated before it
 * takes struct_mutex, as a drop_caches loop racing with it would, so that
 * its locked fallback is exercised on every call.
 */
static bool debug_release_before_bind;
module_param(debug_release_before_bind, bool, 0644);
MODULE_PARM_DESC(debug_release_before_bind, "Test aid: EXECBUF releases the pages it populated before taking struct_mutex (default: off)");

/*
 * Deliberate breakages for the negative controls of the in-guest tests,
 * each test running once with its breakage (and failing) and once
 * without (Documentation/testing.md, "Negative controls"); all off by
 * default, and meant for nothing else.
 *
 * debug_reclaim_waits_truncation_ms: reclaim (the shrinker's scan)
 * waits for the truncation of each object it purged, as movgem's purge
 * did when it truncated in place, before truncations went to the purge
 * worker: a migration's own direct reclaim then waits for folio locks
 * that the same task holds.  The old code waited for ever; this waits
 * at most the given time, counts a wait that ran out
 * (purge_waits_timed_out) and goes on, so the deadlock shows as a
 * count instead of a hung guest.
 */
static unsigned int debug_reclaim_waits_truncation_ms;
module_param(debug_reclaim_waits_truncation_ms, uint, 0644);
MODULE_PARM_DESC(debug_reclaim_waits_truncation_ms, "Test aid: reclaim waits up to this long for the truncation of each object it purged, as the old in-place purge did (default: 0, off)");

/* The userptr object's kept pages survive an invalidation of the range. */
static bool debug_userptr_invalidate_keeps;
module_param(debug_userptr_invalidate_keeps, bool, 0644);
MODULE_PARM_DESC(debug_userptr_invalidate_keeps, "Test aid: an invalidation leaves the pages a userptr object kept (default: off)");

/* ... and the shrinker, the OOM notifier and drop_caches. */
static bool debug_userptr_shrink_keeps;
module_param(debug_userptr_shrink_keeps, bool, 0644);
MODULE_PARM_DESC(debug_userptr_shrink_keeps, "Test aid: reclaim leaves the pages a userptr object kept (default: off)");

/*
 * EXECBUF without its locked fallback: pages taken back between being
 * populated and struct_mutex make it fail with EAGAIN every time.
 */
static bool debug_no_locked_fetch;
module_param(debug_no_locked_fetch, bool, 0644);
MODULE_PARM_DESC(debug_no_locked_fetch, "Test aid: EXECBUF never fetches pages under struct_mutex (default: off)");

/* A timed trylock of struct_mutex that overruns its budget by this much. */
static unsigned int debug_lock_wait_overrun_ms;
module_param(debug_lock_wait_overrun_ms, uint, 0644);
MODULE_PARM_DESC(debug_lock_wait_overrun_ms, "Test aid: a timed trylock of struct_mutex keeps trying this much longer than its budget (default: 0)");

unsigned int movgem_param_debug_reclaim_waits_truncation_ms(void)
{
	return READ_ONCE(debug_reclaim_waits_truncation_ms);
}

bool movgem_param_debug_userptr_invalidate_keeps(void)
{
	return READ_ONCE(debug_userptr_invalidate_keeps);
}

bool movgem_param_debug_userptr_shrink_keeps(void)
{
	return READ_ONCE(debug_userptr_shrink_keeps);
}

bool movgem_param_debug_no_locked_fetch(void)
{
	return READ_ONCE(debug_no_locked_fetch);
}

unsigned int movgem_param_debug_lock_wait_overrun_ms(void)
{
	return READ_ONCE(debug_lock_wait_overrun_ms);
}

bool movgem_param_debug_release_before_bind(void)
{
	return READ_ONCE(debug_release_before_bind);
}

bool movgem_param_debug_skip_longterm_migrate(void)
{
	return READ_ONCE(debug_skip_longterm_migrate);
}

bool movgem_param_debug_skip_gtt_rewrite(void)
{
	return READ_ONCE(debug_skip_gtt_rewrite);
}

bool movgem_param_debug_skip_restore(void)
{
	return READ_ONCE(debug_skip_restore);
}

unsigned int movgem_param_lock_timeout_ms(void)
{
	return READ_ONCE(lock_timeout_ms);
}

static unsigned int autosuspend_ms = 100;
module_param(autosuspend_ms, uint, 0444);
MODULE_PARM_DESC(autosuspend_ms, "Runtime PM autosuspend delay of the simulated GPU (default: 100)");

static unsigned int hang_timeout_ms = 1000;
module_param(hang_timeout_ms, uint, 0644);
MODULE_PARM_DESC(hang_timeout_ms, "A hung batch is reset after this long (default: 1000)");

unsigned int movgem_param_autosuspend_ms(void)
{
	return READ_ONCE(autosuspend_ms);
}

unsigned int movgem_param_hang_timeout_ms(void)
{
	return READ_ONCE(hang_timeout_ms);
}

static bool shrinker = true;
module_param(shrinker, bool, 0644);
MODULE_PARM_DESC(shrinker, "Give object memory back under memory pressure: shrinker and OOM notifier (default: on)");

bool movgem_param_shrinker_enabled(void)
{
	return READ_ONCE(shrinker);
}

static int oom_notifier = -1;
module_param(oom_notifier, int, 0644);
MODULE_PARM_DESC(oom_notifier, "Release object memory before the OOM killer runs: 1 on, 0 off, -1 as 'shrinker' (default: -1)");

bool movgem_param_oom_notifier_enabled(void)
{
	int on = READ_ONCE(oom_notifier);

	return on < 0 ? READ_ONCE(shrinker) : on > 0;
}

/*
 * userptr_keep_pages: a userptr object keeps the page references taken
 * for SET_DOMAIN or a request after use, as i915 keeps its userptr pages,
 * until the shrinker, the OOM notifier or an invalidation of the range
 * drops them.  Off by default: compaction skips anonymous pages with
 * such extra references (isolate_migratepages_block()), so kept pages
 * stay where they are until an invalidation or the shrinker.
 */
static bool userptr_keep_pages;
module_param(userptr_keep_pages, bool, 0644);
MODULE_PARM_DESC(userptr_keep_pages, "Userptr objects keep their pages after use until reclaim or invalidation, as i915 (default: off)");

bool movgem_param_userptr_keep_pages(void)
{
	return READ_ONCE(userptr_keep_pages);
}
