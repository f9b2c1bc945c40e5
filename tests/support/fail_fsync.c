/*
 * An LD_PRELOAD shim for tests: fsync() and fdatasync() fail with EIO on files under
 * $FAIL_FSYNC_DIR while the file $FAIL_FSYNC_FLAG exists, and behave normally otherwise (so the
 * server's own files are never touched). Lets tests/hardening.sh make the pg_leader state
 * directory's fsyncs fail, and then heal, without a special block device.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int should_fail(int fd)
{
	const char *dir = getenv("FAIL_FSYNC_DIR");
	const char *flag = getenv("FAIL_FSYNC_FLAG");
	char link[64], path[PATH_MAX];
	ssize_t n;

	if (dir == NULL || flag == NULL || access(flag, F_OK) != 0)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	return strncmp(path, dir, strlen(dir)) == 0;
}

int fsync(int fd)
{
	static int (*real)(int);

	if (should_fail(fd))
	{
		errno = EIO;
		return -1;
	}
	if (real == NULL)
		real = (int (*)(int)) dlsym(RTLD_NEXT, "fsync");
	return real(fd);
}

int fdatasync(int fd)
{
	static int (*real)(int);

	if (should_fail(fd))
	{
		errno = EIO;
		return -1;
	}
	if (real == NULL)
		real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
	return real(fd);
}
