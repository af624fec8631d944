/*
 * listen.c - hearthd's listening Unix socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"

/* Fill a sockaddr_un; -ENAMETOOLONG when path does not fit. */
static int
listen_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	memcpy(sun->sun_path, path, strlen(path) + 1);
	return 0;
}

/* Create the socket's directory if it is missing (not its parents). */
static int
listen_mkdir(const char *path, bool is_root, char *err, size_t errsize)
{
	char buf[PATH_MAX], *dir;
	struct stat st;

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, strlen(path) + 1);
	dir = dirname(buf);
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			snprintf(err, errsize, "%s: not a directory", dir);
			return -ENOTDIR;
		}
		return 0;
	}
	if (errno != ENOENT || mkdir(dir, is_root ? 0755 : 0700) != 0) {
		snprintf(err, errsize, "%s: %s", dir, strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * An existing path: a socket with a listener is in use; a dead socket
 * is removed; anything else is left alone.
 */
static int
listen_check_stale(const char *path, const struct sockaddr_un *sun,
    char *err, size_t errsize)
{
	struct stat st;
	int fd, r;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errsize, "%s: exists and is not a socket", path);
		return -EEXIST;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errsize, "socket: %s", strerror(errno));
		return -errno;
	}
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	if (r == 0) {
		snprintf(err, errsize, "%s: another daemon is listening", path);
		return -EADDRINUSE;
	}
	if (errno != ECONNREFUSED) {
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		snprintf(err, errsize, "%s: cannot remove stale socket: %s",
		    path, strerror(errno));
		return -errno;
	}
	return 0;
}

int
listen_open(const char *path, bool is_root, mode_t mode, char *err,
    size_t errsize)
{
	struct sockaddr_un sun;
	mode_t old;
	int fd, r;

	if ((r = listen_addr(path, &sun)) < 0) {
		snprintf(err, errsize, "%s: socket path too long", path);
		return r;
	}
	if ((r = listen_mkdir(path, is_root, err, errsize)) < 0)
		return r;
	if ((r = listen_check_stale(path, &sun, err, errsize)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errsize, "socket: %s", strerror(errno));
		return r;
	}
	old = umask(~mode & 0777);
	r = bind(fd, (const struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		r = -errno;
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	return fd;
}

void
listen_close(int fd, const char *path)
{
	if (fd < 0)
		return;
	close(fd);
	if (path != NULL)
		unlink(path);
}

int
listen_accept(int fd, struct listen_peer *peer)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int cfd;

	cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0)
		return -errno;
	if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		int r = -errno;

		close(cfd);
		return r;
	}
	peer->uid = cred.uid;
	peer->gid = cred.gid;
	peer->pid = cred.pid;
	return cfd;
}
