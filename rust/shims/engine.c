// SPDX-License-Identifier: GPL-2.0
/*
 * The simulated engine's ring (rust/engine.rs): one ordered queue, so
 * batches run one at a time in submission order, as a GPU ring does.
 * WQ_MEM_RECLAIM: retiring a request is what makes its objects' pages
 * reclaimable, so the queue must make progress when no new kworker can be
 * allocated (it gets a rescuer thread).  Destroying it drains it.
 */
#include <linux/mm.h>
#include <linux/workqueue.h>

#include "movgem_shim.h"

struct workqueue_struct *movgem_wq_alloc(void)
{
	return alloc_ordered_workqueue("movgem", WQ_MEM_RECLAIM);
}

/* Work items run side by side: one that sleeps holds up no other. */
struct workqueue_struct *movgem_wq_alloc_unbound(void)
{
	return alloc_workqueue("movgem_purge", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
}

void movgem_wq_flush(struct workqueue_struct *wq)
{
	flush_workqueue(wq);
}

void movgem_wq_destroy(struct workqueue_struct *wq)
{
	destroy_workqueue(wq);
}

/*
 * The engine reaches object memory through GTT entries, i.e. frame
 * numbers: the caller guarantees the frame is a page it keeps alive.
 */
int movgem_frame_read(unsigned long pfn, size_t offset, void *buf, size_t len)
{
	return movgem_page_read(pfn_to_page(pfn), offset, buf, len);
}

int movgem_frame_write(unsigned long pfn, size_t offset, const void *buf,
		       size_t len)
{
	return movgem_page_write(pfn_to_page(pfn), offset, buf, len);
}
