// SPDX-License-Identifier: GPL-2.0
/* Module parameters: the 6.12 `module!` macro cannot declare them. */
#include <linux/moduleparam.h>

#include "movgem_shim.h"

static bool hook = true;
module_param(hook, bool, 0644);
MODULE_PARM_DESC(hook, "Release idle objects' pages when migration asks (default: on)");

static unsigned int lock_timeout_ms = 10;
module_param(lock_timeout_ms, uint, 0644);
MODULE_PARM_DESC(lock_timeout_ms, "Longest wait for struct_mutex in the migrate hook (default: 10)");

bool movgem_param_hook_enabled(void)
{
	return READ_ONCE(hook);
}

unsigned int movgem_param_lock_timeout_ms(void)
{
	return READ_ONCE(lock_timeout_ms);
}
