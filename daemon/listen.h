/*
 * listen.h - hearthd's listening Unix socket: create its directory,
 * refuse to steal a live socket, bind with the right mode, accept with
 * the peer's credentials.
 */
#ifndef HEARTH_LISTEN_H
#define HEARTH_LISTEN_H

#include <stdbool.h>
#include <sys/types.h>

#define LISTEN_BACKLOG	128

/* Who is on the other end of an accepted connection (SO_PEERCRED). */
struct listen_peer {
	uid_t	uid;
	gid_t	gid;
	pid_t	pid;
};

/*
 * Bind and listen on path (non-blocking, close-on-exec). The parent
 * directory is created when missing (0755 for root, 0700 for a user);
 * a stale socket is removed only when nothing answers on it. The socket
 * file gets mode (bound under the umask that gives exactly that).
 * Returns the fd or a negative errno with a message in err:
 * -EADDRINUSE when another daemon listens, -EEXIST when path is not a
 * socket, -ENAMETOOLONG.
 */
int  listen_open(const char *path, bool is_root, mode_t mode, char *err,
	    size_t errsize);
/* Close fd and remove path (NULL: a socket systemd owns). */
void listen_close(int fd, const char *path);
/*
 * Accept one connection (non-blocking, close-on-exec) with its peer's
 * credentials: the fd, or -errno (-EAGAIN when none is waiting).
 */
int  listen_accept(int fd, struct listen_peer *peer);

#endif /* HEARTH_LISTEN_H */
