/* SPDX-License-Identifier: GPL-2.0 */
/*
 * movgem: the boundary between the Rust module and its C shims.
 *
 * The 6.12 `kernel` crate has no bindings for shmem, debugfs, module
 * parameters and more, so rust/shims/ wraps the few kernel calls the
 * module needs: rust/shims/X.c serves rust/X.rs.  Each shim does one
 * thing and holds no policy.  Functions named movgem_rs_* are
 * implemented in Rust and called from C; every callback hands Rust the
 * owner it was registered with, never a global.
 */
#ifndef MOVGEM_SHIM_H
#define MOVGEM_SHIM_H

#include <linux/types.h>

struct file;
struct folio;
struct page;
struct dentry;
struct device;
struct mutex;
struct notifier_block;
struct shmem_dev_info;
struct shrinker;
struct vfsmount;
struct workqueue_struct;
struct movgem_misc;
struct movgem_userptr;

/* --- rust/shims/shmem.c (rust/shmem.rs, rust/migrate.rs) ---------- */

/*
 * Size of struct shmem_dev_info.  The Rust object reserves this much
 * storage for it; rust/shims/shmem.c checks the value at build time.
 */
#define MOVGEM_SHMEM_DEV_INFO_SIZE 8

/* A private huge=within_size tmpfs mount (gemfs), and its unmount. */
struct vfsmount *movgem_gemfs_mount(void);
void movgem_gemfs_unmount(struct vfsmount *mnt);
/* A shmem file whose folios are allocated movable, on @mnt or (NULL) the
 * kernel-internal mount. */
struct file *movgem_shmem_create(const char *name, size_t size, struct vfsmount *mnt);
/* How movgem_shmem_get_page() allocates a missing page: PageAlloc in Rust. */
#define MOVGEM_PAGE_DEFAULT 0
#define MOVGEM_PAGE_LIGHT 1
#define MOVGEM_PAGE_MAYFAIL 2
#define MOVGEM_PAGE_CACHED 3
/* Locks nothing on return; the page carries a reference for the caller. */
struct page *movgem_shmem_get_page(struct file *filp, unsigned long index, int how);
void movgem_page_get(struct page *page);
void movgem_page_put(struct page *page);
unsigned long movgem_page_pfn(struct page *page);
/* Copy @len bytes at @offset out of or into @page (bounds checked). */
int movgem_page_read(struct page *page, size_t offset, void *buf, size_t len);
int movgem_page_write(struct page *page, size_t offset, const void *buf,
		      size_t len);
void *movgem_vmap_pages(struct page **pages, unsigned int n);
void movgem_vunmap(void *vaddr);
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
/* A long-term pin: memfd_pin_folios() over the whole file, unpin_folios(). */
long movgem_shmem_pin_folios(struct file *filp, struct folio **folios,
			     unsigned int max);
void movgem_unpin_folios(struct folio **folios, unsigned long n);
void movgem_fput(struct file *filp);
/* Reference count, what the page cache accounts for, size, index. */
int movgem_folio_ref_count(struct folio *folio);
int movgem_folio_expected_refs(struct folio *folio);
bool movgem_folio_maybe_dma_pinned(struct folio *folio);
unsigned long movgem_folio_nr_pages(struct folio *folio);
unsigned long movgem_folio_index(struct folio *folio);
unsigned long movgem_folio_pfn(struct folio *folio);
/* Page @n of @folio (@n below its number of pages). */
struct page *movgem_folio_page(struct folio *folio, unsigned long n);
/*
 * Moves locked @src to locked @dst in place: the owner holds @extra
 * references on @src (one per page), which it gets on @dst.  0, -EAGAIN
 * (references changed: nothing done) or -EHWPOISON.  Sleeps (copying)
 * only for a large folio.
 */
int movgem_folio_move(struct folio *dst, struct folio *src, int extra);
/* The frame of page @index in the page cache of @filp, or 0 if absent. */
unsigned long movgem_shmem_lookup_pfn(struct file *filp, unsigned long index);

/* --- rust/shims/pages.c (rust/pages.rs) ---------------------------- */

bool movgem_fatal_signal_pending(void);

/* --- rust/shims/shrinker.c (rust/shrinker.rs) ---------------------- */

/* @owner: the shrinker's private_data, handed to the movgem_rs_ calls. */
struct shrinker *movgem_shrinker_register(void *owner);
void movgem_shrinker_unregister(struct shrinker *shrinker);
/* @nb: zeroed storage inside the Rust owner. */
int movgem_oom_notifier_register(struct notifier_block *nb);
void movgem_oom_notifier_unregister(struct notifier_block *nb);
int movgem_vmap_notifier_register(struct notifier_block *nb);
void movgem_vmap_notifier_unregister(struct notifier_block *nb);
/* Runs alloc_vmap_area() out of space (debugfs "vmap_overflow"): 0. */
int movgem_vmap_overflow(void);
/* For KUnit: one scan of @shrinker with GFP_KERNEL (@fs) or GFP_NOFS. */
unsigned long movgem_shrinker_scan_as(struct shrinker *shrinker, bool fs,
				      unsigned long nr);
unsigned long movgem_shmem_writeback(struct file *filp,
				     unsigned long nr_to_write);
bool movgem_current_is_kswapd(void);
bool movgem_current_in_reclaim(void);
long movgem_swap_free_pages(void);

/* --- rust/shims/file.c (rust/file.rs) ------------------------------ */

/* /dev/movgem; opening it calls movgem_rs_open(@owner). */
struct movgem_misc *movgem_misc_register(void *owner);
void movgem_misc_deregister(struct movgem_misc *misc);

/* --- rust/shims/pm.c (rust/pm.rs) ---------------------------------- */

int movgem_pm_driver_register(void);
void movgem_pm_driver_unregister(void);
struct device *movgem_pm_init(unsigned int autosuspend_ms, bool numbered);
void movgem_pm_attach(struct device *dev, void *owner);
void movgem_pm_fini(struct device *dev);
int movgem_pm_get(struct device *dev);
int movgem_pm_get_if_active(struct device *dev);
void movgem_pm_put(struct device *dev);
void movgem_pm_put_idle(struct device *dev);
void movgem_pm_set_enabled(struct device *dev, bool enabled);
bool movgem_pm_suspended(struct device *dev);

/* --- rust/shims/engine.c (rust/engine.rs) -------------------------- */

struct workqueue_struct *movgem_wq_alloc(void);
struct workqueue_struct *movgem_wq_alloc_unbound(void);
void movgem_wq_flush(struct workqueue_struct *wq);
void movgem_wq_destroy(struct workqueue_struct *wq);
/* Copy out of or into the page at frame @pfn (bounds checked). */
int movgem_frame_read(unsigned long pfn, size_t offset, void *buf, size_t len);
int movgem_frame_write(unsigned long pfn, size_t offset, const void *buf,
		       size_t len);

/* --- rust/shims/params.c (rust/params.rs) -------------------------- */

/* The values of the hook parameter: HookMode in rust/policy.rs. */
#define MOVGEM_HOOK_OFF 0
#define MOVGEM_HOOK_RELEASE 1
#define MOVGEM_HOOK_INPLACE 2
int movgem_param_hook_mode(void);
bool movgem_param_debug_skip_gtt_rewrite(void);
bool movgem_param_debug_skip_restore(void);
bool movgem_param_debug_skip_longterm_migrate(void);
bool movgem_param_debug_release_before_bind(void);
unsigned int movgem_param_debug_reclaim_waits_truncation_ms(void);
bool movgem_param_debug_userptr_invalidate_keeps(void);
bool movgem_param_debug_userptr_shrink_keeps(void);
bool movgem_param_debug_no_locked_fetch(void);
unsigned int movgem_param_debug_lock_wait_overrun_ms(void);
unsigned int movgem_param_lock_timeout_ms(void);
unsigned int movgem_param_autosuspend_ms(void);
unsigned int movgem_param_hang_timeout_ms(void);
bool movgem_param_shrinker_enabled(void);
bool movgem_param_oom_notifier_enabled(void);
bool movgem_param_userptr_keep_pages(void);

/* --- rust/shims/debugfs.c (rust/debugfs.rs) ------------------------ */

struct dentry *movgem_debugfs_init(void);
/* @value: the counter the file shows (the file's data). */
void movgem_debugfs_add_counter(struct dentry *dir, const char *name,
				const u64 *value);
/* "control" and "drop_caches", with @owner as their data. */
void movgem_debugfs_add_control(struct dentry *dir, void *owner);
void movgem_debugfs_remove(struct dentry *dir);

/* --- rust/shims/userptr.c (rust/userptr.rs) ------------------------ */

struct movgem_userptr *movgem_userptr_create(void *owner, unsigned long start,
					     unsigned long len);
void movgem_userptr_destroy(struct movgem_userptr *up);
unsigned long movgem_userptr_read_begin(struct movgem_userptr *up);
bool movgem_userptr_read_retry(struct movgem_userptr *up, unsigned long seq);
void movgem_userptr_set_seq(struct movgem_userptr *up, unsigned long seq);
long movgem_userptr_get_pages(struct movgem_userptr *up, unsigned long start,
			      unsigned int npages, bool write,
			      struct page **pages);
long movgem_userptr_pin_pages(struct movgem_userptr *up, unsigned long start,
			      unsigned int npages, bool write,
			      struct page **pages);
void movgem_userptr_unpin_page(struct page *page, bool dirty);

/* --- rust/shims/sync.c (rust/sync.rs) ------------------------------ */

int movgem_mutex_lock_killable(struct mutex *lock);
unsigned int movgem_nofs_save(void);
void movgem_nofs_restore(unsigned int flags);
void movgem_lockdep_prime_reclaim(struct mutex *lock);

/* --- implemented in Rust ------------------------------------------- */

/*
 * rust/migrate.rs.  Called by the migrate_folio callback with @src and
 * @dst locked.  Returns the callback's answer (0 once the folio moved in
 * place, or -errno), or asks the callback to call migrate_folio():
 * MOVGEM_HOOK_BYPASS, return its answer untouched (hook off);
 * MOVGEM_HOOK_PASS, the same, reporting it with migrate_done (nothing of
 * the object's on @src); MOVGEM_HOOK_RELEASED, the object let go of its
 * pages (hook=release): -EAGAIN becomes -EBUSY, reported.
 */
#define MOVGEM_HOOK_BYPASS 1
#define MOVGEM_HOOK_RELEASED 2
#define MOVGEM_HOOK_PASS 3
/* @mode: MOVGEM_MIGRATE_*, from enum migrate_mode. */
#define MOVGEM_MIGRATE_ASYNC 0
#define MOVGEM_MIGRATE_SYNC_LIGHT 1
#define MOVGEM_MIGRATE_SYNC 2
int movgem_rs_migrate_folio(struct shmem_dev_info *dev_info,
			    struct folio *dst, struct folio *src, int mode);
/* Reports what migrate_folio() made of a folio let through. */
void movgem_rs_migrate_done(struct shmem_dev_info *dev_info, int ret);

/* rust/debugfs.rs: a counter file's value (@value: the file's data). */
u64 movgem_rs_counter_read(const u64 *value);
/* A command written to "control"; returns bytes used or -errno. */
ssize_t movgem_rs_control(void *owner, const char *cmd, size_t len);
/* Formats the control file's report into @buf; returns its length. */
ssize_t movgem_rs_report(void *owner, char *buf, size_t len);
/* A command written to "drop_caches" (MOVGEM_DROP_* bits). */
int movgem_rs_drop_caches(void *owner, u64 flags);

/* rust/file.rs: /dev/movgem file operations. */
void *movgem_rs_open(void *owner);
void movgem_rs_release(void *priv);
long movgem_rs_ioctl(void *priv, unsigned int cmd, unsigned long arg);

/*
 * rust/shrinker.rs.  The shrinker (@owner: its private_data): pages that
 * scanning could release now, and a scan that returns the pages released
 * or -1 when struct_mutex was not obtained.
 */
unsigned long movgem_rs_shrink_count(void *owner);
long movgem_rs_shrink_scan(void *owner, unsigned long nr_to_scan,
			   bool may_block, bool may_fs);
/* The OOM notifier: releases what it can, returns the pages freed. */
unsigned long movgem_rs_oom_notify(struct notifier_block *nb);
/*
 * The vmap purge notifier: drops cached kernel mappings that nobody
 * pins (only trying struct_mutex); returns the pages unmapped.
 */
unsigned long movgem_rs_vmap_purge(struct notifier_block *nb);

/* rust/pm.rs: runtime PM callbacks (@owner: from movgem_pm_attach()). */
void movgem_rs_runtime_suspend(void *owner);
void movgem_rs_runtime_resume(void *owner);

/*
 * rust/object.rs: the user range of userptr object @owner is being
 * invalidated: record @cur_seq with movgem_userptr_set_seq() so that the
 * next request faults the range in again.  Never sleeps: requests in
 * flight hold their own pins.
 */
bool movgem_rs_userptr_invalidate(void *owner, struct movgem_userptr *up,
				  unsigned long cur_seq, bool blockable);

/* --- rust/shims/trace.c (rust/trace.rs) ---------------------------- */

/* The hook's outcomes, as movgem_migrate_folio shows them. */
#define MOVGEM_OUTCOME_BYPASSED 0
#define MOVGEM_OUTCOME_PASSTHROUGH 1
#define MOVGEM_OUTCOME_IN_PLACE 2
#define MOVGEM_OUTCOME_RELEASED 3
#define MOVGEM_OUTCOME_REFUSED 4
#define MOVGEM_OUTCOME_FAILED 5
/* How a request ended, as movgem_request_retire shows it. */
#define MOVGEM_RETIRE_COMPLETED 0
#define MOVGEM_RETIRE_RESET 1
#define MOVGEM_RETIRE_HANG_TIMED_OUT 2
void movgem_trace_migrate_folio(u64 obj, unsigned long index, unsigned int nr,
				unsigned long pfn_from, unsigned long pfn_to,
				int mode, int outcome, const char *reason,
				u64 wait_ns, u64 locked_ns);
void movgem_trace_shrink_scan(bool kswapd, u64 nr_to_scan, u64 freed,
			      bool contended);
void movgem_trace_shrink_purge(u64 obj, struct page **pages, unsigned long n,
			       int who);
void movgem_trace_purge_wait(u64 obj, int who, u64 waited_us, bool timed_out);
void movgem_trace_oom_notify(u64 freed);
void movgem_trace_vmap_purge(u64 freed, bool contended);
void movgem_trace_request_submit(u64 seqno, unsigned int op,
				 unsigned int nobjs, bool hang);
void movgem_trace_request_retire(u64 seqno, int how);
void movgem_trace_runtime_pm(bool resumed);

/* --- rust/shims/kunit.c (rust/kunit.rs): test-only ----------------------- */
void movgem_kunit_page_lock(struct page *page);
void movgem_kunit_page_unlock(struct page *page);
u64 movgem_kunit_trylock_overrun_ns(void);

#endif /* MOVGEM_SHIM_H */
