// SPDX-License-Identifier: GPL-2.0
/*
 * Device shims: the /dev/movgem misc device, whose file operations go
 * straight to Rust, and a platform device that gives the simulated GPU
 * real runtime PM with autosuspend.
 */
#include <linux/compat.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/pm_runtime.h>
#include <linux/workqueue.h>

#include "movgem_shim.h"

static int movgem_fop_open(struct inode *inode, struct file *filp)
{
	void *priv = movgem_rs_open();

	if (IS_ERR(priv))
		return PTR_ERR(priv);
	filp->private_data = priv;
	return 0;
}

static int movgem_fop_release(struct inode *inode, struct file *filp)
{
	movgem_rs_release(filp->private_data);
	return 0;
}

static long movgem_fop_ioctl(struct file *filp, unsigned int cmd,
			     unsigned long arg)
{
	return movgem_rs_ioctl(filp->private_data, cmd, arg);
}

static const struct file_operations movgem_fops = {
	.owner = THIS_MODULE,
	.open = movgem_fop_open,
	.release = movgem_fop_release,
	.unlocked_ioctl = movgem_fop_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice movgem_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "movgem",
	.fops = &movgem_fops,
	.mode = 0666,
};

int movgem_misc_register(void)
{
	return misc_register(&movgem_misc);
}

void movgem_misc_deregister(void)
{
	misc_deregister(&movgem_misc);
}

/* Runtime PM --------------------------------------------------------- */

static int movgem_runtime_suspend(struct device *dev)
{
	movgem_rs_runtime_suspend();
	return 0;
}

static int movgem_runtime_resume(struct device *dev)
{
	movgem_rs_runtime_resume();
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

static struct platform_device *movgem_pdev;

struct device *movgem_pm_init(unsigned int autosuspend_ms)
{
	struct platform_device *pdev;
	int ret;

	ret = platform_driver_register(&movgem_platform_driver);
	if (ret)
		return ERR_PTR(ret);
	pdev = platform_device_register_simple("movgem", PLATFORM_DEVID_NONE,
					       NULL, 0);
	if (IS_ERR(pdev)) {
		platform_driver_unregister(&movgem_platform_driver);
		return ERR_CAST(pdev);
	}
	movgem_pdev = pdev;
	/* Starts suspended; the first wakeref resumes it. */
	pm_runtime_set_autosuspend_delay(&pdev->dev, autosuspend_ms);
	pm_runtime_use_autosuspend(&pdev->dev);
	pm_runtime_enable(&pdev->dev);
	return &pdev->dev;
}

void movgem_pm_fini(struct device *dev)
{
	pm_runtime_dont_use_autosuspend(dev);
	pm_runtime_disable(dev);
	platform_device_unregister(movgem_pdev);
	platform_driver_unregister(&movgem_platform_driver);
	movgem_pdev = NULL;
}

int movgem_pm_get(struct device *dev)
{
	return pm_runtime_resume_and_get(dev);
}

int movgem_pm_get_if_active(struct device *dev)
{
	return pm_runtime_get_if_active(dev);
}

void movgem_pm_put(struct device *dev)
{
	pm_runtime_mark_last_busy(dev);
	pm_runtime_put_autosuspend(dev);
}

bool movgem_pm_suspended(struct device *dev)
{
	return pm_runtime_suspended(dev);
}

/*
 * The simulated engine: one ordered queue, so batches run one at a time in
 * submission order, as a GPU ring does.  Destroying it drains it.
 * WQ_MEM_RECLAIM: retiring a request is what makes its objects' pages
 * reclaimable, so the queue must make progress when no new kworker can be
 * allocated (it gets a rescuer thread).
 */
struct workqueue_struct *movgem_wq_alloc(void)
{
	return alloc_ordered_workqueue("movgem", WQ_MEM_RECLAIM);
}

void movgem_wq_destroy(struct workqueue_struct *wq)
{
	destroy_workqueue(wq);
}
