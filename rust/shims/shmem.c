// SPDX-License-Identifier: GPL-2.0
/*
 * Thin shims over shmem for the Rust side of movgem.  Policy lives in
 * rust/; this file only translates calls.
 */
#include <linux/build_bug.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/mount.h>
#include <linux/highmem.h>
#include <linux/migrate.h>
#include <linux/mman.h>
#include <linux/pagemap.h>
#include <linux/pagevec.h>
#include <linux/shmem_fs.h>
#include <linux/swap.h>
#include <linux/vmalloc.h>

#include "movgem_shim.h"

static_assert(sizeof(struct shmem_dev_info) == MOVGEM_SHMEM_DEV_INFO_SIZE);

/*
 * A private tmpfs mount with huge=within_size, i915's "gemfs": a file on
 * it gets PMD-sized folios wherever a whole 2 MiB range lies within it.
 */
struct vfsmount *movgem_gemfs_mount(void)
{
	struct file_system_type *type = get_fs_type("tmpfs");
	struct fs_context *fc;
	struct vfsmount *mnt;
	int ret;

	if (!type)
		return ERR_PTR(-ENODEV);
	fc = fs_context_for_mount(type, SB_KERNMOUNT);
	if (IS_ERR(fc))
		return ERR_CAST(fc);
	ret = vfs_parse_fs_string(fc, "source", "movgem", 6);
	if (!ret)
		ret = vfs_parse_fs_string(fc, "huge", "within_size", 11);
	mnt = ret ? ERR_PTR(ret) : fc_mount(fc);
	put_fs_context(fc);
	return mnt;
}

void movgem_gemfs_unmount(struct vfsmount *mnt)
{
	kern_unmount(mnt);
}

/* @mnt: NULL for the kernel's internal shmem mount. */
struct file *movgem_shmem_create(const char *name, size_t size, struct vfsmount *mnt)
{
	struct file *filp;

	if (mnt)
		filp = shmem_file_setup_with_mnt(mnt, name, size, VM_NORESERVE);
	else
		filp = shmem_kernel_file_setup(name, size, VM_NORESERVE);
	if (IS_ERR(filp))
		return filp;
	/*
	 * Movable and reclaimable are exclusive, and async compaction for
	 * movable requests only scans MOVABLE pageblocks: without
	 * __GFP_MOVABLE our pages would sit where compaction never looks.
	 */
	mapping_set_gfp_mask(filp->f_mapping, GFP_HIGHUSER_MOVABLE);
	return filp;
}

/*
 * @how: MOVGEM_PAGE_DEFAULT, the mapping's gfp flags; or, as i915's
 * shmem_sg_alloc_table() does for an object's pages, MOVGEM_PAGE_LIGHT
 * first (__GFP_NORETRY: the caller purges its own objects on failure) and
 * MOVGEM_PAGE_MAYFAIL last (__GFP_RETRY_MAYFAIL: fail rather than invoke
 * the OOM killer); MOVGEM_PAGE_CACHED under struct_mutex: no direct
 * reclaim, only a page still in the page cache (or free memory).
 */
struct page *movgem_shmem_get_page(struct file *filp, unsigned long index, int how)
{
	struct address_space *mapping = filp->f_mapping;
	gfp_t gfp = mapping_gfp_mask(mapping);
	struct folio *folio;

	if (how == MOVGEM_PAGE_LIGHT)
		gfp |= __GFP_NORETRY | __GFP_NOWARN;
	else if (how == MOVGEM_PAGE_MAYFAIL)
		gfp |= __GFP_RETRY_MAYFAIL | __GFP_NOWARN;
	else if (how == MOVGEM_PAGE_CACHED)
		gfp = (gfp & ~__GFP_DIRECT_RECLAIM) | __GFP_NORETRY | __GFP_NOWARN;
	folio = shmem_read_folio_gfp(mapping, index, gfp);
	if (IS_ERR(folio))
		return ERR_CAST(folio);
	/* The folio reference is the page's reference. */
	return folio_file_page(folio, index);
}

void movgem_page_get(struct page *page)
{
	get_page(page);
}

void movgem_page_put(struct page *page)
{
	put_page(page);
}

unsigned long movgem_page_pfn(struct page *page)
{
	return page_to_pfn(page);
}

int movgem_page_read(struct page *page, size_t offset, void *buf, size_t len)
{
	if (offset > PAGE_SIZE || len > PAGE_SIZE - offset)
		return -EINVAL;
	memcpy_from_page(buf, page, offset, len);
	return 0;
}

int movgem_page_write(struct page *page, size_t offset, const void *buf,
		      size_t len)
{
	if (offset > PAGE_SIZE || len > PAGE_SIZE - offset)
		return -EINVAL;
	memcpy_to_page(page, offset, buf, len);
	set_page_dirty(page);
	return 0;
}

/* A kernel mapping of an object's pages (cached until purged). */
void *movgem_vmap_pages(struct page **pages, unsigned int n)
{
	return vmap(pages, n, VM_MAP, PAGE_KERNEL);
}

void movgem_vunmap(void *vaddr)
{
	vunmap(vaddr);
}

unsigned long movgem_vm_mmap(struct file *filp, u64 offset, u64 size)
{
	return vm_mmap(filp, 0, size, PROT_READ | PROT_WRITE, MAP_SHARED,
		       offset);
}

unsigned long movgem_shmem_gfp_mask(struct file *filp)
{
	return (__force unsigned long)mapping_gfp_mask(filp->f_mapping);
}

bool movgem_gfp_is_movable(unsigned long gfp)
{
	return ((__force gfp_t)gfp & (__GFP_RECLAIMABLE | __GFP_MOVABLE)) == __GFP_MOVABLE;
}

static int movgem_migrate_mode(enum migrate_mode mode)
{
	switch (mode) {
	case MIGRATE_ASYNC:
		return MOVGEM_MIGRATE_ASYNC;
	case MIGRATE_SYNC_LIGHT:
		return MOVGEM_MIGRATE_SYNC_LIGHT;
	default:
		return MOVGEM_MIGRATE_SYNC;
	}
}

/*
 * The callback shmem calls for every folio of a movgem object that
 * migration wants to move.  @src and @dst are locked.
 */
static int movgem_shmem_migrate_folio(struct address_space *mapping,
				      struct folio *dst, struct folio *src,
				      enum migrate_mode mode)
{
	struct shmem_dev_info *dev_info = shmem_get_dev_info(mapping);
	int ret;

	/* Unregistered since shmem looked: nothing of ours on it. */
	if (!dev_info)
		return migrate_folio(mapping, dst, src, mode);

	ret = movgem_rs_migrate_folio(dev_info, dst, src, movgem_migrate_mode(mode));
	/* Exactly what shmem without the hook would do, -EAGAIN included. */
	if (ret == MOVGEM_HOOK_BYPASS)
		return migrate_folio(mapping, dst, src, mode);
	if (ret == MOVGEM_HOOK_PASS) {
		ret = migrate_folio(mapping, dst, src, mode);
		movgem_rs_migrate_done(dev_info, ret);
		return ret;
	}
	if (ret != MOVGEM_HOOK_RELEASED)
		return ret;

	ret = migrate_folio(mapping, dst, src, mode);
	/*
	 * hook=release: -EAGAIN means references we do not own remain;
	 * retrying would release nothing more.
	 */
	if (ret == -EAGAIN)
		ret = -EBUSY;
	movgem_rs_migrate_done(dev_info, ret);
	return ret;
}

int movgem_folio_ref_count(struct folio *folio)
{
	return folio_ref_count(folio);
}

int movgem_folio_expected_refs(struct folio *folio)
{
	return folio_expected_ref_count(folio);
}

bool movgem_folio_maybe_dma_pinned(struct folio *folio)
{
	return folio_maybe_dma_pinned(folio);
}

unsigned long movgem_folio_nr_pages(struct folio *folio)
{
	return folio_nr_pages(folio);
}

unsigned long movgem_folio_pfn(struct folio *folio)
{
	return folio_pfn(folio);
}

unsigned long movgem_folio_index(struct folio *folio)
{
	return folio->index;
}

struct page *movgem_folio_page(struct folio *folio, unsigned long n)
{
	return folio_page(folio, n);
}

/*
 * __migrate_folio() with the owner's references accounted for: the
 * exported pieces, in its order.  Sleeps only in folio_mc_copy() for a
 * large folio, which the caller passes only when it may block.
 */
int movgem_folio_move(struct folio *dst, struct folio *src, int extra)
{
	struct address_space *mapping = folio_mapping(src);
	int ret;

	if (folio_ref_count(src) != folio_expected_ref_count(src) + extra + 1)
		return -EAGAIN;
	ret = folio_mc_copy(dst, src);
	if (ret)
		return ret;
	ret = folio_migrate_mapping(mapping, dst, src, extra);
	if (ret)
		return ret;
	folio_migrate_flags(dst, src);
	/* The owner's references move with it; migration drops @src's. */
	folio_ref_add(dst, extra);
	return 0;
}

unsigned long movgem_shmem_lookup_pfn(struct file *filp, unsigned long index)
{
	struct folio *folio = filemap_get_folio(filp->f_mapping, index);
	unsigned long pfn;

	if (IS_ERR(folio))
		return 0;
	pfn = folio_pfn(folio) + (index - folio->index);
	folio_put(folio);
	return pfn;
}

int movgem_shmem_register(struct file *filp, struct shmem_dev_info *dev_info)
{
	if (dev_info)
		dev_info->migrate_folio = movgem_shmem_migrate_folio;
	return shmem_set_dev_info(filp->f_mapping, dev_info);
}

struct shmem_dev_info *movgem_shmem_registered(struct file *filp)
{
	return shmem_get_dev_info(filp->f_mapping);
}

/*
 * While an object holds its pages nothing but the shrinker can free them:
 * keep reclaim from scanning them, as i915 and drm_gem_shmem do.  Folios
 * already on an evictable list move to the unevictable one the first
 * time reclaim meets them.
 */
void movgem_shmem_set_unevictable(struct file *filp)
{
	mapping_set_unevictable(filp->f_mapping);
}

/*
 * The object is letting go of @pages (still referenced by the caller):
 * make the mapping evictable again and put the folios back on the
 * evictable lists now, as i915's shmem_sg_free_table() does.  Takes only
 * the LRU locks: callable from the migrate callback in MIGRATE_ASYNC.
 */
void movgem_shmem_clear_unevictable(struct file *filp, struct page *const *pages,
				    unsigned long n)
{
	struct folio_batch fbatch;
	struct folio *last = NULL;
	unsigned long i;

	mapping_clear_unevictable(filp->f_mapping);
	folio_batch_init(&fbatch);
	for (i = 0; i < n; i++) {
		struct folio *folio = page_folio(pages[i]);

		if (folio == last)
			continue;
		last = folio;
		if (!folio_batch_add(&fbatch, folio)) {
			check_move_unevictable_folios(&fbatch);
			folio_batch_reinit(&fbatch);
		}
	}
	if (folio_batch_count(&fbatch))
		check_move_unevictable_folios(&fbatch);
}

void movgem_shmem_truncate(struct file *filp)
{
	shmem_truncate_range(file_inode(filp), 0, (loff_t)-1);
}

/*
 * FOLL_LONGTERM's rule for our own pins (PIN, VMAP): memfd_pin_folios()
 * migrates the folios of @filp that sit in ZONE_MOVABLE or CMA elsewhere
 * (under memalloc_pin_save(), through our migrate hook) and pins them all
 * with FOLL_PIN, which keeps them where they are until unpin_folios().
 * @folios has room for @max entries, one per page of the file in the
 * worst case; the number of folios pinned or -errno.
 */
long movgem_shmem_pin_folios(struct file *filp, struct folio **folios,
			     unsigned int max)
{
	loff_t size = i_size_read(file_inode(filp));
	pgoff_t offset;

	if (!size)
		return -EINVAL;
	return memfd_pin_folios(filp, 0, size - 1, folios, max, &offset);
}

void movgem_unpin_folios(struct folio **folios, unsigned long n)
{
	unpin_folios(folios, n);
}

void movgem_fput(struct file *filp)
{
	fput(filp);
}
