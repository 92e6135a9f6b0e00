// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suite for movgem, run when the module loads.  6.12 has no
 * #[kunit_tests] for Rust, so the cases live here and call into Rust
 * where the code under test is Rust (rust/kunit.rs; the mm/kasan pattern).
 */
#include <kunit/test.h>
#include <linux/file.h>
#include <linux/cpu.h>
#include <linux/jiffies.h>
#include <linux/migrate.h>
#include <linux/pagevec.h>
#include <linux/workqueue.h>
#include <linux/sched.h>
#include <linux/shmem_fs.h>

#include "movgem_shim.h"

int movgem_rs_kunit_policy(void);
int movgem_rs_kunit_object(void);
int movgem_rs_kunit_trylock_budget(u64 *elapsed_ns, int room, int *attempts);
int movgem_rs_kunit_oom_folio_locked(void);
int movgem_rs_kunit_deferred_purges(void);
int movgem_rs_kunit_purge_self_locked(void);
int movgem_rs_kunit_shrink_nofs(void);
int movgem_rs_kunit_hook_own_lock(void);
int movgem_kunit_migrate_folio(struct page *page);

/* The folio locks a migration holds, for the cases below. */
void movgem_kunit_page_lock(struct page *page)
{
	folio_lock(page_folio(page));
}

void movgem_kunit_page_unlock(struct page *page)
{
	folio_unlock(page_folio(page));
}

static void movgem_kunit_drain_lru_local(struct work_struct *unused)
{
	struct folio_batch empty;

	/* Drains this CPU's LRU caches first (lru_add_drain()). */
	folio_batch_init(&empty);
	__folio_batch_release(&empty);
}

/*
 * For rust/kunit.rs: lru_add_drain_all(), which modules cannot call; each
 * CPU drains its own LRU caches.  Takes the CPU hotplug lock and waits
 * for work: not under struct_mutex.
 */
void movgem_kunit_drain_lru_all(void);

void movgem_kunit_drain_lru_all(void)
{
	struct work_struct work;
	int cpu;

	cpus_read_lock();
	for_each_online_cpu(cpu) {
		INIT_WORK_ONSTACK(&work, movgem_kunit_drain_lru_local);
		queue_work_on(cpu, system_wq, &work);
		flush_work(&work);
		destroy_work_on_stack(&work);
	}
	cpus_read_unlock();
}

/*
 * For rust/kunit.rs: what migration does with a folio of a shmem file
 * before it calls the mapping's migrate_folio, and that call.  The
 * caller drained the LRU caches (movgem_kunit_drain_lru_all(): a folio
 * waiting in one holds a reference the hook would take for a foreign
 * one), and its reference on @page stands for the one the isolation
 * holds.  @page is locked, a fresh folio locked as the destination, and
 * shmem's migrate_folio (the owner's, through shmem_dev_info) called in
 * MIGRATE_SYNC; returns what it returned.  Only for calls the owner
 * refuses: a folio that moved would be left on the LRU and freed.
 */
int movgem_kunit_migrate_folio(struct page *page)
{
	struct folio *src = page_folio(page), *dst;
	struct address_space *mapping = folio_mapping(src);
	int ret;

	if (!mapping || !mapping->a_ops->migrate_folio)
		return -EINVAL;
	dst = folio_alloc(GFP_KERNEL, folio_order(src));
	if (!dst)
		return -ENOMEM;
	if (!folio_trylock(dst)) {
		folio_put(dst);
		return -EAGAIN;
	}
	folio_lock(src);
	ret = mapping->a_ops->migrate_folio(mapping, dst, src, MIGRATE_SYNC);
	folio_unlock(src);
	folio_unlock(dst);
	folio_put(dst);
	return ret;
}

/* For rust/kunit.rs: a sleep adds one, preemption does not. */
unsigned long movgem_kunit_nvcsw(void);

unsigned long movgem_kunit_nvcsw(void)
{
	return current->nvcsw;
}

static void movgem_shmem_file_is_movable(struct kunit *test)
{
	struct file *filp = movgem_shmem_create("movgem-kunit", 4 * PAGE_SIZE, NULL);

	KUNIT_ASSERT_FALSE(test, IS_ERR(filp));
	KUNIT_EXPECT_TRUE(test, movgem_gfp_is_movable(movgem_shmem_gfp_mask(filp)));
	KUNIT_EXPECT_NULL(test, shmem_get_dev_info(filp->f_mapping));
	fput(filp);
}

static void movgem_dev_info_register(struct kunit *test)
{
	struct file *filp = movgem_shmem_create("movgem-kunit", 4 * PAGE_SIZE, NULL);
	struct shmem_dev_info dev_info = {};

	KUNIT_ASSERT_FALSE(test, IS_ERR(filp));
	KUNIT_EXPECT_EQ(test, movgem_shmem_register(filp, &dev_info), 0);
	KUNIT_EXPECT_PTR_EQ(test, shmem_get_dev_info(filp->f_mapping), &dev_info);
	KUNIT_EXPECT_NOT_NULL(test, dev_info.migrate_folio);
	KUNIT_EXPECT_EQ(test, movgem_shmem_register(filp, NULL), 0);
	KUNIT_EXPECT_NULL(test, shmem_get_dev_info(filp->f_mapping));
	fput(filp);
}

static void movgem_policy_in_kernel(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, movgem_rs_kunit_policy(), 0);
}

static void movgem_object_lifecycle(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, movgem_rs_kunit_object(), 0);
}

/*
 * The timed trylock gives up after its budget: not before, and not much
 * after.  It polls once per sleep, and without high-resolution timers a
 * sleep lasts at least a tick, so it overruns by up to a tick, and by
 * more when a loaded host does not run the vCPU on time (16.5 ms for a
 * 3 ms budget was seen with four QEMUs on two host cores).  Ten ticks
 * (40 ms at HZ=250) cover that; with a 20 ms budget, a wait four times
 * as long as its budget, or one that ignores it, fails.  A host that
 * stops the vCPU for longer (a 103 ms overrun was seen with four QEMUs
 * and builds on two cores) stalls one attempt, not three in a row: every
 * attempt must last its budget, and one of three must end within the
 * overrun.  A wait that ignores its budget fails all three.
 */
#define MOVGEM_KUNIT_OVERRUN_NS (10 * TICK_NSEC)
#define MOVGEM_KUNIT_ATTEMPTS 3

/*
 * The check itself is rust/kunit.rs's trylock_budget() (budget 20 ms,
 * three attempts), which debugfs `control` also runs (`trylock_budget`):
 * there the in-guest test lock_budget_check_fails_on_overrun runs it
 * with debug_lock_wait_overrun_ms, a wait that overruns its budget, and
 * it must fail, then without, and it must pass.
 */
u64 movgem_kunit_trylock_overrun_ns(void)
{
	return MOVGEM_KUNIT_OVERRUN_NS;
}

static void movgem_trylock_budget(struct kunit *test)
{
	u64 elapsed[MOVGEM_KUNIT_ATTEMPTS] = {};
	int i, attempts = 0;
	int ret = movgem_rs_kunit_trylock_budget(elapsed, ARRAY_SIZE(elapsed),
						 &attempts);

	for (i = 0; i < attempts && i < MOVGEM_KUNIT_ATTEMPTS; i++)
		kunit_info(test, "attempt %d gave up after %llu ns\n", i + 1,
			   elapsed[i]);
	KUNIT_EXPECT_EQ(test, ret, 0);
}

/*
 * The OOM notifier runs inside an allocation that may hold folio locks
 * (migration's next destination): it must return without waiting for
 * one (issue 26, finding 1).
 */
static void movgem_oom_notify_folio_locked(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, movgem_rs_kunit_oom_folio_locked(), 0);
}

/*
 * A deferred truncation stuck on a folio lock holds up no other, and the
 * OOM notifier counts the pages still to be truncated (finding 4).
 */
static void movgem_deferred_purges(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, movgem_rs_kunit_deferred_purges(), 0);
}

/*
 * The vmap purge notifier runs inside alloc_vmap_area() once the vmalloc
 * range is exhausted, which a test VM cannot reach (32 TiB on x86_64);
 * when the exhausting vmap() is our own, the task holds struct_mutex.
 * The case calls the notifier's function with the lock held: it must
 * give up at once, without sleeping.
 */
static void movgem_vmap_purge_self_locked(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, movgem_rs_kunit_purge_self_locked(), 0);
}

/*
 * Reclaim without __GFP_FS (every allocation under struct_mutex is NOFS)
 * gets nothing from the shrinker: the scan is refused and counted
 * (shrink_nofs), a purgeable object keeps its pages; with GFP_KERNEL the
 * same scan purges it.  An in-guest test cannot reach a NOFS scan on
 * demand (rust/kunit.rs says why).
 */
static void movgem_shrinker_refuses_nofs(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, movgem_rs_kunit_shrink_nofs(), 0);
}

/*
 * The hook called from a task that holds struct_mutex refuses at once
 * (refused_lock_owned) instead of polling a lock it owns; the same call
 * with the lock free gets past it (here to the refusal of an active
 * object).  Not reachable from user space: rust/kunit.rs says why.
 */
static void movgem_hook_refuses_own_lock(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, movgem_rs_kunit_hook_own_lock(), 0);
}

static struct kunit_case movgem_cases[] = {
	KUNIT_CASE(movgem_shmem_file_is_movable),
	KUNIT_CASE(movgem_dev_info_register),
	KUNIT_CASE(movgem_policy_in_kernel),
	KUNIT_CASE(movgem_object_lifecycle),
	KUNIT_CASE(movgem_trylock_budget),
	KUNIT_CASE(movgem_oom_notify_folio_locked),
	KUNIT_CASE(movgem_deferred_purges),
	KUNIT_CASE(movgem_vmap_purge_self_locked),
	KUNIT_CASE(movgem_shrinker_refuses_nofs),
	KUNIT_CASE(movgem_hook_refuses_own_lock),
	{}
};

static struct kunit_suite movgem_suite = {
	.name = "movgem",
	.test_cases = movgem_cases,
};
kunit_test_suite(movgem_suite);
