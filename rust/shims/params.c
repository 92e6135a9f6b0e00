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

static unsigned int autosuspend_ms = 100;
module_param(autosuspend_ms, uint, 0444);
MODULE_PARM_DESC(autosuspend_ms, "Runtime PM autosuspend delay of the simulated GPU (default: 100)");

static unsigned int hang_timeout_ms = 1000;
module_param(hang_timeout_ms, uint, 0644);
MODULE_PARM_DESC(hang_timeout_ms, "A hung batch is reset after this long (default: 1000)");

unsigned int movgem_param_autosuspend_ms(void)
{
	return READ_ONCE(autosuspend_ms);
}

unsigned int movgem_param_hang_timeout_ms(void)
{
	return READ_ONCE(hang_timeout_ms);
}

static bool shrinker = true;
module_param(shrinker, bool, 0644);
MODULE_PARM_DESC(shrinker, "Give object memory back under memory pressure: shrinker and OOM notifier (default: on)");

bool movgem_param_shrinker_enabled(void)
{
	return READ_ONCE(shrinker);
}

static int oom_notifier = -1;
module_param(oom_notifier, int, 0644);
MODULE_PARM_DESC(oom_notifier, "Release object memory before the OOM killer runs: 1 on, 0 off, -1 as 'shrinker' (default: -1)");

bool movgem_param_oom_notifier_enabled(void)
{
	int on = READ_ONCE(oom_notifier);

	return on < 0 ? READ_ONCE(shrinker) : on > 0;
}
