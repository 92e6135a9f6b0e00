// SPDX-License-Identifier: GPL-2.0
/*
 * Runtime PM of the simulated GPU (rust/pm.rs): a platform device per
 * Rust device, bound to one driver whose runtime PM callbacks reach the
 * device's owner through its driver data.
 */
#include <linux/err.h>
#include <linux/platform_device.h>
#include <linux/pm_runtime.h>

#include "movgem_shim.h"

static int movgem_runtime_suspend(struct device *dev)
{
	void *owner = dev_get_drvdata(dev);

	if (owner)
		movgem_rs_runtime_suspend(owner);
	return 0;
}

static int movgem_runtime_resume(struct device *dev)
{
	void *owner = dev_get_drvdata(dev);

	if (owner)
		movgem_rs_runtime_resume(owner);
	return 0;
}

static const struct dev_pm_ops movgem_pm_ops = {
	RUNTIME_PM_OPS(movgem_runtime_suspend, movgem_runtime_resume, NULL)
};

static struct platform_driver movgem_platform_driver = {
	.driver = {
		.name = "movgem",
		.pm = &movgem_pm_ops,
	},
};

int movgem_pm_driver_register(void)
{
	return platform_driver_register(&movgem_platform_driver);
}

void movgem_pm_driver_unregister(void)
{
	platform_driver_unregister(&movgem_platform_driver);
}

/*
 * "movgem", or with @numbered "movgem.N.auto" (a KUnit case's device
 * beside the module's).  Starts suspended; the first wakeref resumes it.
 */
struct device *movgem_pm_init(unsigned int autosuspend_ms, bool numbered)
{
	struct platform_device *pdev;

	pdev = platform_device_register_simple("movgem",
					       numbered ? PLATFORM_DEVID_AUTO :
							  PLATFORM_DEVID_NONE,
					       NULL, 0);
	if (IS_ERR(pdev))
		return ERR_CAST(pdev);
	pm_runtime_set_autosuspend_delay(&pdev->dev, autosuspend_ms);
	pm_runtime_use_autosuspend(&pdev->dev);
	pm_runtime_enable(&pdev->dev);
	return &pdev->dev;
}

/* Callbacks from now on reach @owner. */
void movgem_pm_attach(struct device *dev, void *owner)
{
	dev_set_drvdata(dev, owner);
}

/* Waits for callbacks in flight (pm_runtime_disable()). */
void movgem_pm_fini(struct device *dev)
{
	pm_runtime_dont_use_autosuspend(dev);
	pm_runtime_disable(dev);
	dev_set_drvdata(dev, NULL);
	platform_device_unregister(to_platform_device(dev));
}

int movgem_pm_get(struct device *dev)
{
	return pm_runtime_resume_and_get(dev);
}

int movgem_pm_get_if_active(struct device *dev)
{
	return pm_runtime_get_if_active(dev);
}

/* The end of a use of the device: autosuspend counts from now. */
void movgem_pm_put(struct device *dev)
{
	pm_runtime_mark_last_busy(dev);
	pm_runtime_put_autosuspend(dev);
}

/*
 * The end of a reference that was not a use (the migrate hook's,
 * reclaim's): the autosuspend delay still counts from the last use, so a
 * device that has been idle long enough suspends now.
 */
void movgem_pm_put_idle(struct device *dev)
{
	pm_runtime_put_autosuspend(dev);
}

/*
 * Test aid (debugfs "runtime_pm"): runtime PM disabled with the device
 * in whatever state it is, as the PM core does from suspend_late to
 * resume_early of a system sleep; pm_runtime_get_if_active() then fails
 * with -EINVAL even though an active device keeps its state.
 */
void movgem_pm_set_enabled(struct device *dev, bool enabled)
{
	if (enabled)
		pm_runtime_enable(dev);
	else
		pm_runtime_disable(dev);
}

bool movgem_pm_suspended(struct device *dev)
{
	return pm_runtime_suspended(dev);
}
