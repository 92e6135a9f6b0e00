// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel mappings of object pages, and the vmap purge notifier that asks
 * for unpinned ones back when vmalloc space runs out.
 */
#include <linux/mm.h>
#include <linux/notifier.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "movgem_shim.h"

void *movgem_vmap_pages(struct page **pages, unsigned int n)
{
	return vmap(pages, n, VM_MAP, PAGE_KERNEL);
}

void movgem_vunmap(void *vaddr)
{
	vunmap(vaddr);
}

static int movgem_vmap_notify(struct notifier_block *nb, unsigned long event,
			      void *ptr)
{
	unsigned long *freed = ptr;

	*freed += movgem_rs_vmap_purge(false);
	return NOTIFY_DONE;
}

static struct notifier_block movgem_vmap_nb = {
	.notifier_call = movgem_vmap_notify,
};

int movgem_vmap_notifier_register(void)
{
	return register_vmap_purge_notifier(&movgem_vmap_nb);
}

void movgem_vmap_notifier_unregister(void)
{
	unregister_vmap_purge_notifier(&movgem_vmap_nb);
}
