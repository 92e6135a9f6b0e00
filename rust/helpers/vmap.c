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

void *movgem_vmap_folios(struct folio *const *folios, unsigned int n)
{
	struct page **pages;
	unsigned int i;
	void *vaddr;

	pages = kvmalloc_array(n, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return NULL;
	for (i = 0; i < n; i++)
		pages[i] = folio_page(folios[i], 0);
	vaddr = vmap(pages, n, VM_MAP, PAGE_KERNEL);
	kvfree(pages);
	return vaddr;
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
