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
/* Locks nothing on return; the folio carries a reference for the caller. */
struct folio *movgem_shmem_get_folio(struct file *filp, unsigned long index);
void movgem_folio_put(struct folio *folio);
unsigned long movgem_folio_pfn(struct folio *folio);
/* Copy the first @len (at most PAGE_SIZE) bytes out of or into @folio. */
int movgem_folio_read(struct folio *folio, void *buf, size_t len);
int movgem_folio_write(struct folio *folio, const void *buf, size_t len);
unsigned long movgem_shmem_gfp_mask(struct file *filp);
bool movgem_gfp_is_movable(unsigned long gfp);
/* Point the mapping of @filp at @dev_info (NULL unregisters). */
int movgem_shmem_register(struct file *filp, struct shmem_dev_info *dev_info);
struct shmem_dev_info *movgem_shmem_registered(struct file *filp);
void movgem_shmem_truncate(struct file *filp);
void movgem_fput(struct file *filp);

/* --- rust/helpers/params.c ----------------------------------------- */

bool movgem_param_hook_enabled(void);
unsigned int movgem_param_lock_timeout_ms(void);

/* --- rust/helpers/debugfs.c ---------------------------------------- */

struct dentry *movgem_debugfs_init(void);
void movgem_debugfs_add_counter(struct dentry *dir, const char *name,
				unsigned long id);
void movgem_debugfs_add_control(struct dentry *dir);
void movgem_debugfs_remove(struct dentry *dir);

/* --- implemented in Rust ------------------------------------------- */

/*
 * Called by the migrate_folio callback with @src locked.  Returns 0 when
 * the folio may be handed to migrate_folio(), or -EBUSY.
 */
int movgem_rs_migrate_prepare(struct shmem_dev_info *dev_info,
			      struct folio *src, bool may_block);
/* Reports what migrate_folio() made of a folio that was let through. */
void movgem_rs_migrate_done(struct shmem_dev_info *dev_info, int ret);
u64 movgem_rs_counter_read(unsigned long id);
/* A command written to debugfs control; returns bytes used or -errno. */
ssize_t movgem_rs_control(const char *cmd, size_t len);
/* Formats the control file's report into @buf; returns its length. */
ssize_t movgem_rs_report(char *buf, size_t len);

/* Pure policy exposed for the KUnit suite (rust/policy.rs). */
int movgem_rs_policy_selftest(void);

#endif /* MOVGEM_SHIM_H */
