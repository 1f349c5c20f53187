/* SPDX-License-Identifier: LGPL-2.1 OR GPL-2.0 */
/*
 * libxgpu - thin C library over the /dev/xgpu ioctls (include/uapi/xgpu.h).
 *
 * Every function returns 0 (or a non-negative count) on success and a
 * negative errno on failure; errno itself is left as the ioctl set it.
 * The meaning of each errno is documented in include/uapi/xgpu.h.
 * A descriptor belongs to the process that opened it: after fork() the
 * child gets -EBADF from every call and must open its own.
 */
#ifndef LIBXGPU_H
#define LIBXGPU_H

#include <stddef.h>
#include <stdint.h>

/* installed next to it as xgpu/uapi/xgpu.h; in the tree: -I../include */
#include "uapi/xgpu.h"

/* Open /dev/xgpu (or $XGPU_DEV).  Returns the fd or -errno. */
int xgpu_open(void);
void xgpu_close(int fd);

/* INFO: fills @info (size is set by the library). */
int xgpu_info(int fd, struct xgpu_info *info);
/* "none", "range" or "page" for struct xgpu_info.api */
const char *xgpu_api_name(uint32_t api);
/* "add", "sub", ... for XGPU_OP_*; NULL if unknown */
const char *xgpu_op_name(uint32_t op);

/*
 * ATOMIC: run @count ops (1..XGPU_MAX_BATCH) on the device; each op's old
 * value is stored in its ->old.  *@done (may be NULL) receives the number
 * of ops executed, also on error.
 */
int xgpu_atomic(int fd, struct xgpu_atomic_op *ops, uint32_t count,
		uint32_t *done);
/* One op; @width 4 or 8; *@old (may be NULL) receives the old value. */
int xgpu_atomic1(int fd, uint32_t op, uint16_t width, void *addr,
		 uint64_t value, uint64_t compare, uint64_t *old);

/* ACQUIRE/RELEASE @npages pages at page-aligned @addr; returns the count. */
int64_t xgpu_acquire(int fd, void *addr, uint64_t npages);
int64_t xgpu_release(int fd, void *addr, uint64_t npages);
/*
 * QUERY: @bitmap has (npages + 63) / 64 words; bit i = page i is
 * device-owned.  Returns the number of device-owned pages.
 */
int64_t xgpu_query(int fd, void *addr, uint64_t npages, uint64_t *bitmap);

/* STATS of this descriptor's context. */
int xgpu_stats(int fd, struct xgpu_stats *st);

/* READ/WRITE @len bytes (1..XGPU_MAX_RW) through the device mirror. */
int xgpu_read(int fd, void *dst, const void *addr, size_t len);
int xgpu_write(int fd, void *addr, const void *src, size_t len);

#endif /* LIBXGPU_H */
