/*
 * service.h - hearthd as a systemd service (libsystemd's sd-daemon):
 * the sockets systemd passes (socket activation), and what hearthd
 * tells the service manager over $NOTIFY_SOCKET: READY=1, STATUS=
 * lines (at most one per SVC_STATUS_MIN_MS, the latest text wins),
 * WATCHDOG=1 at half the interval systemd asks for (WatchdogSec=) from
 * a libevent timer, RELOADING=1 and STOPPING=1. Without systemd every
 * notification is a no-op. Loop thread only.
 */
#ifndef HEARTH_SERVICE_H
#define HEARTH_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SVC_STATUS_MAX		256	/* bytes of a STATUS= text */
#define SVC_STATUS_MIN_MS	250	/* between two STATUS= lines */
#define SVC_FD_NAME_MAIN	"hearth"	/* FileDescriptorName= */
#define SVC_FD_NAME_ADMIN	"admin"

struct event_base;
struct svc;

/* The listening sockets systemd passed; -1 for those it did not. */
struct svc_fds {
	int	 main_fd;	/* named "hearth" (or the only, unnamed one) */
	int	 admin_fd;	/* named "admin" */
};

/*
 * Take the sockets of $LISTEN_FDS (and unset the variables). Sockets
 * with other names are closed with a warning. 0 (also when there are
 * none), or a negative errno with a message in err (a passed fd that is
 * not a listening Unix stream socket).
 */
int	svc_listen_fds(struct svc_fds *out, char *err, size_t errsize);

/* Start: arms the watchdog timer when systemd asks for one. */
int	svc_new(struct event_base *base, struct svc **out);
void	svc_free(struct svc *sv);		/* NULL ok */

/* Whether the service manager listens ($NOTIFY_SOCKET is set). */
bool	svc_managed(const struct svc *sv);
/* The watchdog interval in microseconds; 0 when off. */
uint64_t svc_watchdog_usec(const struct svc *sv);

/* READY=1 with a status line (once; again after svc_reloading). */
void	svc_ready(struct svc *sv, const char *status);
/* STATUS=text when it changed, rate-limited. */
void	svc_status(struct svc *sv, const char *text);
/* RELOADING=1 (with MONOTONIC_USEC), STOPPING=1. */
void	svc_reloading(struct svc *sv);
void	svc_stopping(struct svc *sv, const char *status);

#endif /* HEARTH_SERVICE_H */
