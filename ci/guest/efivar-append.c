// SPDX-License-Identifier: GPL-2.0
/*
 * efivar-append.c - append to an authenticated UEFI variable through efivarfs.
 *
 *   efivar-append VARFILE AUTHFILE
 *
 * VARFILE is the variable's file in efivarfs (e.g. the signature database
 * /sys/firmware/efi/efivars/db-d719b2cb-3d3a-4596-a3bc-dad00e67656f), AUTHFILE what
 * efitools' sign-efi-sig-list -a writes: an EFI_VARIABLE_AUTHENTICATION_2 header signed by
 * a key the firmware accepts for that variable (KEK for db), followed by the signature
 * list to append. The firmware checks the signature; this program only passes the data
 * on, as efitools' efi-updatevar -a does, for a guest whose init is a static busybox.
 *
 * efivarfs takes a variable in one write(): its attributes (NON_VOLATILE, BOOTSERVICE
 * and RUNTIME_ACCESS, TIME_BASED_AUTHENTICATED_WRITE_ACCESS, APPEND_WRITE) as a 32-bit
 * number, then the data. The files of variables the kernel does not know to be
 * removable are immutable; the flag is cleared first (chattr -i, which busybox lacks) and
 * set again when the write fails.
 *
 * Exit 0 when the firmware took the data, 1 with the reason otherwise (EACCES: the
 * firmware refused the signature), 2 on a usage error.
 *
 * Build: cc -static -O2 -o efivar-append efivar-append.c
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define EFI_VARIABLE_NON_VOLATILE				0x01
#define EFI_VARIABLE_BOOTSERVICE_ACCESS				0x02
#define EFI_VARIABLE_RUNTIME_ACCESS				0x04
#define EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS	0x20
#define EFI_VARIABLE_APPEND_WRITE				0x40

int main(int argc, char **argv)
{
	uint32_t attr = EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS |
			EFI_VARIABLE_RUNTIME_ACCESS |
			EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS |
			EFI_VARIABLE_APPEND_WRITE;
	struct stat st;
	char *buf;
	size_t len, got = 0;
	ssize_t n;
	int fd, rfd, flags, cleared = 0, err;

	if (argc != 3) {
		fprintf(stderr, "usage: efivar-append VARFILE AUTHFILE\n");
		return 2;
	}
	fd = open(argv[2], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "efivar-append: %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	if (st.st_size <= 0 || st.st_size > 1 << 20) {
		fprintf(stderr, "efivar-append: %s: %lld bytes: not an authenticated append\n",
			argv[2], (long long)st.st_size);
		return 1;
	}
	buf = malloc(sizeof(attr) + st.st_size);
	if (!buf) {
		fprintf(stderr, "efivar-append: out of memory\n");
		return 1;
	}
	memcpy(buf, &attr, sizeof(attr));
	len = sizeof(attr) + st.st_size;
	while (sizeof(attr) + got < len) {
		n = read(fd, buf + sizeof(attr) + got, len - sizeof(attr) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "efivar-append: %s: %s\n", argv[2],
				n < 0 ? strerror(errno) : "shorter than its size");
			return 1;
		}
		got += n;
	}
	close(fd);

	/* (an immutable file cannot be opened for writing: the flags go through rfd) */
	rfd = open(argv[1], O_RDONLY);
	if (rfd < 0) {
		fprintf(stderr, "efivar-append: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (ioctl(rfd, FS_IOC_GETFLAGS, &flags) < 0) {
		fprintf(stderr, "efivar-append: %s: FS_IOC_GETFLAGS: %s\n", argv[1],
			strerror(errno));
		return 1;
	}
	if (flags & FS_IMMUTABLE_FL) {
		flags &= ~FS_IMMUTABLE_FL;
		if (ioctl(rfd, FS_IOC_SETFLAGS, &flags) < 0) {
			fprintf(stderr, "efivar-append: %s: clearing the immutable flag: %s\n",
				argv[1], strerror(errno));
			return 1;
		}
		cleared = 1;
	}

	/* the APPEND_WRITE attribute appends: the file offset means nothing to efivarfs */
	fd = open(argv[1], O_WRONLY);
	if (fd < 0) {
		n = -1;
		err = errno;
	} else {
		n = write(fd, buf, len);
		err = errno;
	}
	if (n < 0 || (size_t)n != len) {
		if (fd < 0)
			fprintf(stderr, "efivar-append: opening %s: %s\n", argv[1], strerror(err));
		else if (n < 0)
			fprintf(stderr, "efivar-append: writing %s: %s%s\n", argv[1], strerror(err),
				err == EACCES ? " (the firmware refused the data)" : "");
		else
			fprintf(stderr, "efivar-append: writing %s: %zd of %zu bytes written\n",
				argv[1], n, len);
		if (cleared) {
			flags |= FS_IMMUTABLE_FL;
			ioctl(rfd, FS_IOC_SETFLAGS, &flags);
		}
		return 1;
	}
	close(rfd);
	if (close(fd) < 0) {
		fprintf(stderr, "efivar-append: closing %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	return 0;
}
