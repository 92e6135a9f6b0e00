// SPDX-License-Identifier: GPL-2.0
/* For rust/pages.rs: whether fetching an object's pages should stop. */
#include <linux/sched/signal.h>

#include "movgem_shim.h"

bool movgem_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
}
