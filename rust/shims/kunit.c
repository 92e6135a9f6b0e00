// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suite for movgem, run when the module loads.  6.12 has no
 * #[kunit_tests] for Rust, so the cases live here and call into Rust
 * where the code under test is Rust (rust/kunit.rs; the mm/kasan pattern).
 */
#include <kunit/test.h>
#include <linux/file.h>
#include <linux/shmem_fs.h>

#include "movgem_shim.h"

int movgem_rs_kunit_policy(void);
int movgem_rs_kunit_object(void);
int movgem_rs_kunit_trylock(u32 timeout_ms, u64 *elapsed_ns);

static void movgem_shmem_file_is_movable(struct kunit *test)
{
	struct file *filp = movgem_shmem_create("movgem-kunit", 4 * PAGE_SIZE);

	KUNIT_ASSERT_FALSE(test, IS_ERR(filp));
	KUNIT_EXPECT_TRUE(test, movgem_gfp_is_movable(movgem_shmem_gfp_mask(filp)));
	KUNIT_EXPECT_NULL(test, shmem_get_dev_info(filp->f_mapping));
	fput(filp);
}

static void movgem_dev_info_register(struct kunit *test)
{
	struct file *filp = movgem_shmem_create("movgem-kunit", 4 * PAGE_SIZE);
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

static void movgem_trylock_budget(struct kunit *test)
{
	u64 elapsed = 0;

	KUNIT_EXPECT_EQ(test, movgem_rs_kunit_trylock(3, &elapsed), 0);
	KUNIT_EXPECT_GE(test, elapsed, 3 * NSEC_PER_MSEC);
}

static struct kunit_case movgem_cases[] = {
	KUNIT_CASE(movgem_shmem_file_is_movable),
	KUNIT_CASE(movgem_dev_info_register),
	KUNIT_CASE(movgem_policy_in_kernel),
	KUNIT_CASE(movgem_object_lifecycle),
	KUNIT_CASE(movgem_trylock_budget),
	{}
};

static struct kunit_suite movgem_suite = {
	.name = "movgem",
	.test_cases = movgem_cases,
};
kunit_test_suite(movgem_suite);
