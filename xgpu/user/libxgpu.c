// SPDX-License-Identifier: LGPL-2.1 OR GPL-2.0
/* libxgpu - see libxgpu.h */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "libxgpu.h"

static int xgpu_ioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? -errno : 0;
}

int xgpu_open(void)
{
	const char *dev = getenv("XGPU_DEV");
	int fd = open(dev ? dev : "/dev/xgpu", O_RDWR | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

void xgpu_close(int fd)
{
	close(fd);
}

int xgpu_info(int fd, struct xgpu_info *info)
{
	memset(info, 0, sizeof(*info));
	info->size = sizeof(*info);
	return xgpu_ioctl(fd, XGPU_IOC_INFO, info);
}

const char *xgpu_api_name(uint32_t api)
{
	switch (api) {
	case XGPU_API_NONE:
		return "none";
	case XGPU_API_RANGE:
		return "range";
	case XGPU_API_PAGE:
		return "page";
	default:
		return "unknown";
	}
}

const char *xgpu_op_name(uint32_t op)
{
	static const char *const names[XGPU_OP_COUNT] = {
		"add", "sub", "and", "or", "xor", "xchg", "cmpxchg", "min", "max",
	};

	return op < XGPU_OP_COUNT ? names[op] : NULL;
}

int xgpu_atomic(int fd, struct xgpu_atomic_op *ops, uint32_t count,
		uint32_t *done)
{
	struct xgpu_atomic arg = {
		.size = sizeof(arg),
		.count = count,
		.ops = (uintptr_t)ops,
	};
	int ret = xgpu_ioctl(fd, XGPU_IOC_ATOMIC, &arg);

	if (done)
		*done = arg.done;
	return ret;
}

int xgpu_atomic1(int fd, uint32_t op, uint16_t width, void *addr,
		 uint64_t value, uint64_t compare, uint64_t *old)
{
	struct xgpu_atomic_op o = {
		.addr = (uintptr_t)addr,
		.value = value,
		.compare = compare,
		.op = op,
		.width = width,
	};
	int ret = xgpu_atomic(fd, &o, 1, NULL);

	if (!ret && old)
		*old = o.old;
	return ret;
}

static int64_t xgpu_range_ioctl(int fd, unsigned long cmd, void *addr,
				uint64_t npages, uint64_t *bitmap)
{
	struct xgpu_range arg = {
		.size = sizeof(arg),
		.addr = (uintptr_t)addr,
		.npages = npages,
		.bitmap = (uintptr_t)bitmap,
	};
	int ret = xgpu_ioctl(fd, cmd, &arg);

	return ret ? ret : (int64_t)arg.count;
}

int64_t xgpu_acquire(int fd, void *addr, uint64_t npages)
{
	return xgpu_range_ioctl(fd, XGPU_IOC_ACQUIRE, addr, npages, NULL);
}

int64_t xgpu_release(int fd, void *addr, uint64_t npages)
{
	return xgpu_range_ioctl(fd, XGPU_IOC_RELEASE, addr, npages, NULL);
}

int64_t xgpu_query(int fd, void *addr, uint64_t npages, uint64_t *bitmap)
{
	return xgpu_range_ioctl(fd, XGPU_IOC_QUERY, addr, npages, bitmap);
}

int xgpu_stats(int fd, struct xgpu_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	return xgpu_ioctl(fd, XGPU_IOC_STATS, st);
}

static int xgpu_rw(int fd, unsigned long cmd, const void *addr, void *buf,
		   size_t len)
{
	struct xgpu_rw arg = {
		.size = sizeof(arg),
		.addr = (uintptr_t)addr,
		.buf = (uintptr_t)buf,
		.len = len,
	};

	return xgpu_ioctl(fd, cmd, &arg);
}

int xgpu_read(int fd, void *dst, const void *addr, size_t len)
{
	return xgpu_rw(fd, XGPU_IOC_READ, addr, dst, len);
}

int xgpu_write(int fd, void *addr, const void *src, size_t len)
{
	return xgpu_rw(fd, XGPU_IOC_WRITE, addr, (void *)src, len);
}
