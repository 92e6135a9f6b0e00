/* SPDX-License-Identifier: GPL-2.0 */
/*
 * movgem: the boundary between the Rust module and its C shims.
 *
 * The 6.12 `kernel` crate has no bindings for shmem, debugfs or module
 * parameters, so rust/helpers/ wraps the few kernel calls the module
 * needs.  Each shim does one thing and holds no policy.  Functions named
 * movgem_rs_* are implemented in Rust and called from C.
 */
#ifndef MOVGEM_SHIM_H
#define MOVGEM_SHIM_H

#include <linux/types.h>

struct file;
struct folio;
struct page;
struct dentry;
struct shmem_dev_info;

/*
 * Size of struct shmem_dev_info.  The Rust object reserves this much
 * storage for it; rust/helpers/shmem.c checks the value at build time.
 */
#define MOVGEM_SHMEM_DEV_INFO_SIZE 8

/* --- rust/helpers/shmem.c ------------------------------------------ */

/* A kernel-internal shmem file whose folios are allocated movable. */
struct file *movgem_shmem_create(const char *name, size_t size);
/* Locks nothing on return; the page carries a reference for the caller. */
/* How movgem_shmem_get_page() allocates a missing page: PageAlloc in Rust. */
#define MOVGEM_PAGE_DEFAULT 0
#define MOVGEM_PAGE_LIGHT 1
#define MOVGEM_PAGE_MAYFAIL 2
struct page *movgem_shmem_get_page(struct file *filp, unsigned long index, int how);
bool movgem_fatal_signal_pending(void);
void movgem_page_get(struct page *page);
void movgem_page_put(struct page *page);
unsigned long movgem_page_pfn(struct page *page);
/* Copy @len bytes at @offset out of or into @page (bounds checked). */
int movgem_page_read(struct page *page, size_t offset, void *buf, size_t len);
int movgem_page_write(struct page *page, size_t offset, const void *buf,
		      size_t len);
/* vm_mmap() of @size bytes of @filp from @offset; an address or -errno. */
unsigned long movgem_vm_mmap(struct file *filp, u64 offset, u64 size);
unsigned long movgem_shmem_gfp_mask(struct file *filp);
bool movgem_gfp_is_movable(unsigned long gfp);
/* Point the mapping of @filp at @dev_info (NULL unregisters). */
int movgem_shmem_register(struct file *filp, struct shmem_dev_info *dev_info);
struct shmem_dev_info *movgem_shmem_registered(struct file *filp);
void movgem_shmem_set_unevictable(struct file *filp);
void movgem_shmem_clear_unevictable(struct file *filp, struct page *const *pages,
				    unsigned long n);
void movgem_shmem_truncate(struct file *filp);
void movgem_fput(struct file *filp);

/* --- rust/helpers/vmap.c ------------------------------------------- */

void *movgem_vmap_pages(struct page **pages, unsigned int n);
void movgem_vunmap(void *vaddr);
int movgem_vmap_notifier_register(void);
void movgem_vmap_notifier_unregister(void);

/* --- rust/helpers/device.c ----------------------------------------- */

struct device;
struct workqueue_struct;

int movgem_misc_register(void);
void movgem_misc_deregister(void);
struct device *movgem_pm_init(unsigned int autosuspend_ms);
void movgem_pm_fini(struct device *dev);
int movgem_pm_get(struct device *dev);
int movgem_pm_get_if_active(struct device *dev);
void movgem_pm_put(struct device *dev);
bool movgem_pm_suspended(struct device *dev);
struct workqueue_struct *movgem_wq_alloc(void);
void movgem_wq_destroy(struct workqueue_struct *wq);

/* --- rust/helpers/shrinker.c --------------------------------------- */

struct shrinker;

struct shrinker *movgem_shrinker_register(void);
void movgem_shrinker_unregister(struct shrinker *shrinker);

/* --- rust/helpers/params.c ----------------------------------------- */

bool movgem_param_hook_enabled(void);
unsigned int movgem_param_lock_timeout_ms(void);
unsigned int movgem_param_autosuspend_ms(void);
unsigned int movgem_param_hang_timeout_ms(void);
bool movgem_param_shrinker_enabled(void);
bool movgem_param_oom_notifier_enabled(void);

/* --- rust/helpers/debugfs.c ---------------------------------------- */

struct dentry *movgem_debugfs_init(void);
void movgem_debugfs_add_counter(struct dentry *dir, const char *name,
				unsigned long id);
void movgem_debugfs_add_control(struct dentry *dir);
void movgem_debugfs_remove(struct dentry *dir);

/* --- rust/helpers/userptr.c ---------------------------------------- */

struct movgem_userptr;
struct mutex;

struct movgem_userptr *movgem_userptr_create(void *owner, unsigned long start,
					     unsigned long len);
void movgem_userptr_destroy(struct movgem_userptr *up);
unsigned long movgem_userptr_read_begin(struct movgem_userptr *up);
bool movgem_userptr_read_retry(struct movgem_userptr *up, unsigned long seq);
void movgem_userptr_set_seq(struct movgem_userptr *up, unsigned long seq);
long movgem_userptr_get_pages(struct movgem_userptr *up, unsigned long start,
			      unsigned int npages, bool write,
			      struct page **pages);

/* --- rust/helpers/reclaim.c ---------------------------------------- */

unsigned long movgem_shmem_writeback(struct file *filp);
bool movgem_current_is_kswapd(void);
int movgem_oom_notifier_register(void);
void movgem_oom_notifier_unregister(void);
int movgem_mutex_lock_killable(struct mutex *lock);
unsigned int movgem_nofs_save(void);
void movgem_nofs_restore(unsigned int flags);
void movgem_lockdep_prime_reclaim(struct mutex *lock);

/* --- implemented in Rust ------------------------------------------- */

/*
 * Called by the migrate_folio callback with @src locked.  Returns 0 when
 * the folio may be handed to migrate_folio(), -EBUSY, or
 * MOVGEM_HOOK_BYPASS when the hook is switched off (hook=0): then the
 * callback must behave exactly like plain migrate_folio().
 */
#define MOVGEM_HOOK_BYPASS 1
int movgem_rs_migrate_prepare(struct shmem_dev_info *dev_info,
			      struct folio *src, bool may_block);
/* Reports what migrate_folio() made of a folio that was let through. */
void movgem_rs_migrate_done(struct shmem_dev_info *dev_info, int ret);
u64 movgem_rs_counter_read(unsigned long id);
/* A command written to debugfs control; returns bytes used or -errno. */
ssize_t movgem_rs_control(const char *cmd, size_t len);
/* Formats the control file's report into @buf; returns its length. */
ssize_t movgem_rs_report(char *buf, size_t len);

/* /dev/movgem file operations. */
void *movgem_rs_open(void);
void movgem_rs_release(void *priv);
long movgem_rs_ioctl(void *priv, unsigned int cmd, unsigned long arg);
/*
 * The shrinker: pages that scanning could release now, and a scan that
 * returns the pages released or -1 when struct_mutex was not obtained.
 */
unsigned long movgem_rs_shrink_count(void);
long movgem_rs_shrink_scan(unsigned long nr_to_scan, bool may_block,
			   bool may_fs);
/* Runtime PM callbacks of the simulated GPU. */
void movgem_rs_runtime_suspend(void);
void movgem_rs_runtime_resume(void);
/*
 * Drops cached kernel mappings that nobody pins; returns the pages
 * unmapped.  From the vmap purge notifier (@may_wait false: only try the
 * lock) or from debugfs.
 */
unsigned long movgem_rs_vmap_purge(bool may_wait);
/* The OOM notifier: releases what it can, returns the pages freed. */
unsigned long movgem_rs_oom_notify(void);
/* A command written to debugfs drop_caches (MOVGEM_DROP_* bits). */
int movgem_rs_drop_caches(u64 flags);
/*
 * The user range of userptr object @owner is being invalidated: record
 * @cur_seq with movgem_userptr_set_seq() and wait until the GPU is done
 * with the range.  false: would have to sleep but may not.
 */
bool movgem_rs_userptr_invalidate(void *owner, struct movgem_userptr *up,
				  unsigned long cur_seq, bool blockable);

#endif /* MOVGEM_SHIM_H */
