/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * movgem uAPI: GEM-style buffer objects on /dev/movgem.
 *
 * Modelled on i915's GEM ioctls.  Handles are per open file.  Every
 * structure is padded to a multiple of 8 bytes; pad fields and unknown
 * flags must be zero (-EINVAL otherwise).
 */
#ifndef _UAPI_MOVGEM_H
#define _UAPI_MOVGEM_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define MOVGEM_IOCTL_BASE 'M'

/* Largest object: 1 GiB.  Sizes must be non-zero and page aligned. */
#define MOVGEM_MAX_OBJECT_SIZE (1ULL << 30)
/* Most objects one execbuf may reference. */
#define MOVGEM_MAX_EXEC_OBJECTS 256

/*
 * CREATE_HUGE: back the object with a private tmpfs mount with
 * huge=within_size, as i915 does ("gemfs"), so that every 2 MiB range of
 * it may get one PMD-sized folio (when the allocation succeeds; small
 * pages otherwise).  Such a folio still migrates in place, as one unit.
 */
#define MOVGEM_CREATE_HUGE	(1 << 0)

/* CREATE: a new object of @size bytes; its handle comes back. */
struct movgem_create {
	__u64 size;
	__u32 handle;
	__u32 flags;		/* MOVGEM_CREATE_* */
};

/* CLOSE: drop the handle; the object goes when nothing else holds it. */
struct movgem_close {
	__u32 handle;
	__u32 pad;
};

/* PWRITE / PREAD: copy @size bytes between the object at @offset and user memory. */
struct movgem_rw {
	__u32 handle;
	__u32 pad;
	__u64 offset;
	__u64 size;
	__u64 data_ptr;
};

/* MMAP: map @size bytes of the object from @offset into the caller (shared). */
struct movgem_mmap {
	__u32 handle;
	__u32 pad;
	__u64 offset;
	__u64 size;
	__u64 addr_ptr;		/* out */
};

#define MOVGEM_DOMAIN_CPU	(1 << 0)
#define MOVGEM_DOMAIN_GTT	(1 << 1)

/* SET_DOMAIN: wait for the GPU to finish with the object, then move it
 * to the given domain; @write_domain is 0 or one of @read_domains. */
struct movgem_set_domain {
	__u32 handle;
	__u32 read_domains;
	__u32 write_domain;
	__u32 pad;
};

#define MOVGEM_MADV_WILLNEED	0
#define MOVGEM_MADV_DONTNEED	1

/* MADVISE: @retained says whether the pages still exist (0: purged). */
struct movgem_madvise {
	__u32 handle;
	__u32 madv;
	__u32 retained;		/* out */
	__u32 pad;
};

#define MOVGEM_EXEC_OBJECT_WRITE	(1 << 0)

struct movgem_exec_object {
	__u32 handle;
	__u32 flags;
	__u64 offset;		/* out: GTT address */
};

#define MOVGEM_OP_NOP		0	/* only keep the objects busy */
#define MOVGEM_OP_FILL		1	/* write @value to every dword of written objects */
#define MOVGEM_OP_CHECK		2	/* read every dword of every object and count
					 * those != @value (debugfs gpu_check_errors) */

#define MOVGEM_EXEC_HANG	(1 << 0)	/* never completes by itself */

/* EXECBUF: bind the objects into the GTT and run a simulated batch over
 * them; the objects stay busy for @duration_ns (at most 60 s). */
struct movgem_execbuf {
	__u64 objects_ptr;	/* array of @count struct movgem_exec_object */
	__u32 count;
	__u32 flags;
	__u64 duration_ns;
	__u32 op;
	__u32 value;
};

/* BUSY: @busy is non-zero while GPU work uses the object. */
struct movgem_busy {
	__u32 handle;
	__u32 busy;		/* out */
};

/* WAIT: until the object is idle or @timeout_ns passes (-ETIME).
 * @timeout_ns comes back as what is left; negative waits forever. */
struct movgem_wait {
	__u32 handle;
	__u32 flags;
	__s64 timeout_ns;
};

/* PIN / UNPIN: a display-style pin; pinned objects never move. */
struct movgem_pin {
	__u32 handle;
	__u32 pad;
	__u64 offset;		/* out: GTT address */
};

/* VMAP / VUNMAP: a cached kernel mapping of the whole object.  VMAP pins
 * it; VUNMAP unpins it but leaves it cached until memory is short. */
struct movgem_vmap {
	__u32 handle;
	__u32 pad;
};

/* GET_INFO: device-wide numbers. */
struct movgem_info {
	__u64 objects;
	__u64 object_bytes;
	__u64 bound_objects;
	__u64 active_objects;
	__u64 gtt_size;
	__u64 gtt_used;
	__u64 cached_vmaps;
	__u32 runtime_suspended;
	__u32 requests;		/* batches submitted and not yet retired */
};

/* USERPTR: an object whose pages are @user_size bytes of the caller's
 * own memory at @user_ptr (both page aligned, at most
 * MOVGEM_MAX_OBJECT_SIZE).  The object pins the range (FOLL_LONGTERM)
 * only while GPU work uses it, so a fork() meanwhile gives the child
 * copies and GPU writes reach the parent; SET_DOMAIN only faults it in.
 * The GPU cannot write a range over a writable shared mapping of a file
 * that tracks dirty pages (a disk file system; not tmpfs or anonymous
 * memory): EXECBUF with the object's write flag fails with EFAULT
 * (reading works).  An mmu_interval_notifier drops the binding when the
 * range is unmapped, migrated or otherwise invalidated.  Such objects
 * support EXECBUF,
 * SET_DOMAIN, BUSY, WAIT, MADVISE and CLOSE (PREAD, PWRITE, MMAP, PIN
 * and VMAP: -EINVAL).  No flags are defined yet. */
struct movgem_userptr {
	__u64 user_ptr;
	__u64 user_size;
	__u32 flags;
	__u32 handle;		/* out */
};

/*
 * debugfs, not ABI: bits written (in decimal or 0x hex) to
 * /sys/kernel/debug/movgem/drop_caches, in the manner of i915_drop_caches.
 */
#define MOVGEM_DROP_UNBOUND	(1 << 0)	/* release idle unbound objects */
#define MOVGEM_DROP_BOUND	(1 << 1)	/* and unbind idle bound ones */
#define MOVGEM_DROP_ACTIVE	(1 << 2)	/* wait for the GPU to idle first */
#define MOVGEM_DROP_PURGE	(1 << 3)	/* purge DONTNEED objects */
#define MOVGEM_DROP_WRITEBACK	(1 << 4)	/* push released pages to swap */
#define MOVGEM_DROP_ALL		0x1f

/*
 * Errors.  An ioctl fails only with the errnos its "errors:" line lists;
 * a command number not defined below (a wrong size or direction
 * included) fails with ENOTTY and nothing else.  The fuzzer
 * (tools/movgem-tests/src/bin/movgem-stress/fuzz.rs) holds the driver to
 * this table, and its unit test to this comment.
 *
 * errors: CREATE EFAULT EINVAL E2BIG ENOMEM ENOSPC ENFILE
 * errors: CLOSE EFAULT EINVAL ENOENT
 * errors: PWRITE EFAULT EINVAL ENOENT ENOMEM ENOSPC EIO
 * errors: PREAD EFAULT EINVAL ENOENT ENOMEM ENOSPC EIO
 * errors: MMAP EFAULT EINVAL ENOENT ENOMEM EAGAIN EINTR
 * errors: SET_DOMAIN EFAULT EINVAL ENOENT EINTR ENOMEM ENOSPC EIO EHWPOISON
 * errors: MADVISE EFAULT EINVAL ENOENT EBUSY EINTR
 * errors: EXECBUF EFAULT EINVAL ENOENT ENOMEM ENOSPC EIO EAGAIN EINTR EHWPOISON
 * errors: BUSY EFAULT ENOENT
 * errors: WAIT EFAULT EINVAL ENOENT ETIME EINTR
 * errors: PIN EFAULT EINVAL ENOENT ENOMEM ENOSPC EIO EINTR
 * errors: UNPIN EFAULT EINVAL ENOENT
 * errors: VMAP EFAULT EINVAL ENOENT ENOMEM ENOSPC EIO EINTR
 * errors: VUNMAP EFAULT EINVAL ENOENT
 * errors: GET_INFO EFAULT
 * errors: USERPTR EFAULT EINVAL E2BIG ENOMEM ENOSPC
 *
 * EFAULT	the argument, or memory it points to (PWRITE/PREAD data,
 *		EXECBUF objects_ptr), cannot be read or written; also: the
 *		object is DONTNEED (SET_DOMAIN, EXECBUF, PIN, VMAP) or purged
 *		(any use of its pages); a userptr range that is not mapped,
 *		or used from another process, or (USERPTR) not in user space,
 *		or that the GPU would write (EXECBUF write flag; SET_DOMAIN
 *		write domain with the userptr_keep_pages module parameter)
 *		over a writable shared mapping of a file that tracks dirty
 *		pages (pin_user_pages(FOLL_LONGTERM | FOLL_WRITE) refuses it).
 * EINVAL	a pad field or unknown flag set; CREATE/USERPTR size 0 or
 *		not page aligned, unaligned user_ptr, non-zero handle in;
 *		PWRITE/PREAD/MMAP range empty (MMAP), unaligned (MMAP) or
 *		outside the object; unknown domains or advice; EXECBUF count
 *		0 or above MOVGEM_MAX_EXEC_OBJECTS, a handle twice, unknown op,
 *		duration above 60 s; UNPIN/VUNMAP without PIN/VMAP;
 *		PWRITE, PREAD, MMAP, PIN, VMAP on a userptr object.
 * ENOENT	no such handle in this open file (another file's or
 *		process's handles included), or the object is being
 *		destroyed by a concurrent CLOSE.
 * E2BIG	size above MOVGEM_MAX_OBJECT_SIZE.
 * ENOMEM	out of memory: kernel structures, the object's pages (never
 *		the OOM killer on the object's behalf for EXECBUF, PIN, VMAP,
 *		SET_DOMAIN), a vmap, the caller's address space (MMAP);
 *		PIN, VMAP: the object's pages could not be moved out of
 *		ZONE_MOVABLE or CMA to be pinned long term (three tries).
 * ENOSPC	no handle left in this file (2^32 created); shmem could not
 *		account the pages or the inode; the GTT is full (EXECBUF,
 *		PIN).
 * ENFILE	the system's file table is full (CREATE, unprivileged).
 * EIO		a page of the object could not be read back from swap.
 * EAGAIN	EXECBUF: a userptr range kept being invalidated, or the
 *		object's pages kept being reclaimed and could not be fetched
 *		again under the lock (from the fifth try on), between faulting
 *		them in and binding (64 tries); MMAP: the caller's
 *		RLIMIT_MEMLOCK under mlockall(MCL_FUTURE).
 * EBUSY	MADVISE of an object that is pinned or vmapped.
 * ETIME	WAIT: the timeout passed (0 only polls; negative waits
 *		forever).
 * EINTR	a signal interrupted SET_DOMAIN's or WAIT's wait for the GPU
 *		(without SA_RESTART; otherwise the call restarts); elsewhere
 *		only a fatal signal during a lock or page allocation, which
 *		the caller never sees.
 * EHWPOISON	a page of a userptr range is poisoned.
 */
#define MOVGEM_IOCTL_CREATE	_IOWR(MOVGEM_IOCTL_BASE, 0x00, struct movgem_create)
#define MOVGEM_IOCTL_CLOSE	_IOW(MOVGEM_IOCTL_BASE, 0x01, struct movgem_close)
#define MOVGEM_IOCTL_PWRITE	_IOW(MOVGEM_IOCTL_BASE, 0x02, struct movgem_rw)
#define MOVGEM_IOCTL_PREAD	_IOW(MOVGEM_IOCTL_BASE, 0x03, struct movgem_rw)
#define MOVGEM_IOCTL_MMAP	_IOWR(MOVGEM_IOCTL_BASE, 0x04, struct movgem_mmap)
#define MOVGEM_IOCTL_SET_DOMAIN	_IOW(MOVGEM_IOCTL_BASE, 0x05, struct movgem_set_domain)
#define MOVGEM_IOCTL_MADVISE	_IOWR(MOVGEM_IOCTL_BASE, 0x06, struct movgem_madvise)
#define MOVGEM_IOCTL_EXECBUF	_IOWR(MOVGEM_IOCTL_BASE, 0x07, struct movgem_execbuf)
#define MOVGEM_IOCTL_BUSY	_IOWR(MOVGEM_IOCTL_BASE, 0x08, struct movgem_busy)
#define MOVGEM_IOCTL_WAIT	_IOWR(MOVGEM_IOCTL_BASE, 0x09, struct movgem_wait)
#define MOVGEM_IOCTL_PIN	_IOWR(MOVGEM_IOCTL_BASE, 0x0a, struct movgem_pin)
#define MOVGEM_IOCTL_UNPIN	_IOW(MOVGEM_IOCTL_BASE, 0x0b, struct movgem_pin)
#define MOVGEM_IOCTL_VMAP	_IOW(MOVGEM_IOCTL_BASE, 0x0c, struct movgem_vmap)
#define MOVGEM_IOCTL_VUNMAP	_IOW(MOVGEM_IOCTL_BASE, 0x0d, struct movgem_vmap)
#define MOVGEM_IOCTL_GET_INFO	_IOR(MOVGEM_IOCTL_BASE, 0x0e, struct movgem_info)
#define MOVGEM_IOCTL_USERPTR	_IOWR(MOVGEM_IOCTL_BASE, 0x0f, struct movgem_userptr)

#endif /* _UAPI_MOVGEM_H */
