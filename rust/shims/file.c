// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/movgem: a misc device whose file operations go straight to Rust
 * (rust/file.rs).  The device carries its Rust owner, which open finds
 * through the miscdevice the misc core leaves in file->private_data.
 */
#include <linux/compat.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "movgem_shim.h"

struct movgem_misc {
	struct miscdevice misc;
	void *owner;
};

static int movgem_fop_open(struct inode *inode, struct file *filp)
{
	struct movgem_misc *m = container_of(filp->private_data,
					     struct movgem_misc, misc);
	void *priv = movgem_rs_open(m->owner);

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

struct movgem_misc *movgem_misc_register(void *owner)
{
	struct movgem_misc *m = kzalloc(sizeof(*m), GFP_KERNEL);
	int ret;

	if (!m)
		return ERR_PTR(-ENOMEM);
	m->owner = owner;
	m->misc.minor = MISC_DYNAMIC_MINOR;
	m->misc.name = "movgem";
	m->misc.fops = &movgem_fops;
	m->misc.mode = 0666;
	ret = misc_register(&m->misc);
	if (ret) {
		kfree(m);
		return ERR_PTR(ret);
	}
	return m;
}

void movgem_misc_deregister(struct movgem_misc *m)
{
	misc_deregister(&m->misc);
	kfree(m);
}
