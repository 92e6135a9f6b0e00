// SPDX-License-Identifier: GPL-2.0
/*
 * debugfs shims for rust/debugfs.rs: /sys/kernel/debug/movgem/ holds one
 * read-only file per counter (its data: the counter), "control" and
 * "drop_caches" (their data: the Rust owner).  The values and commands
 * are Rust's.
 */
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "movgem_shim.h"

#define MOVGEM_CONTROL_MAX 256
#define MOVGEM_REPORT_MAX 4096

static int movgem_counter_get(void *data, u64 *val)
{
	*val = movgem_rs_counter_read(data);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(movgem_counter_fops, movgem_counter_get, NULL, "%llu\n");

static ssize_t movgem_control_write(struct file *filp, const char __user *ubuf,
				    size_t len, loff_t *ppos)
{
	char cmd[MOVGEM_CONTROL_MAX];
	ssize_t ret;

	if (len >= sizeof(cmd))
		return -E2BIG;
	if (copy_from_user(cmd, ubuf, len))
		return -EFAULT;
	cmd[len] = '\0';
	ret = movgem_rs_control(filp->private_data, cmd, len);
	return ret < 0 ? ret : len;
}

static ssize_t movgem_control_read(struct file *filp, char __user *ubuf,
				   size_t len, loff_t *ppos)
{
	ssize_t n, ret;
	char *buf;

	buf = kmalloc(MOVGEM_REPORT_MAX, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	n = movgem_rs_report(filp->private_data, buf, MOVGEM_REPORT_MAX);
	ret = n < 0 ? n : simple_read_from_buffer(ubuf, len, ppos, buf, n);
	kfree(buf);
	return ret;
}

static const struct file_operations movgem_control_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = movgem_control_write,
	.read = movgem_control_read,
	.llseek = default_llseek,
};

static ssize_t movgem_drop_caches_write(struct file *filp,
					const char __user *ubuf, size_t len,
					loff_t *ppos)
{
	u64 flags;
	int ret;

	ret = kstrtou64_from_user(ubuf, len, 0, &flags);
	if (ret)
		return ret;
	ret = movgem_rs_drop_caches(filp->private_data, flags);
	return ret < 0 ? ret : len;
}

static const struct file_operations movgem_drop_caches_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = movgem_drop_caches_write,
	.llseek = noop_llseek,
};

struct dentry *movgem_debugfs_init(void)
{
	return debugfs_create_dir("movgem", NULL);
}

void movgem_debugfs_add_counter(struct dentry *dir, const char *name,
				const u64 *value)
{
	debugfs_create_file_unsafe(name, 0444, dir, (void *)value,
				   &movgem_counter_fops);
}

void movgem_debugfs_add_control(struct dentry *dir, void *owner)
{
	debugfs_create_file("control", 0600, dir, owner, &movgem_control_fops);
	debugfs_create_file("drop_caches", 0200, dir, owner,
			    &movgem_drop_caches_fops);
}

void movgem_debugfs_remove(struct dentry *dir)
{
	debugfs_remove(dir);
}
