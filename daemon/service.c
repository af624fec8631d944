/*
 * service.c - socket activation and sd_notify (see service.h).
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "service.h"

struct svc {
	struct event	*ev_watchdog;	/* every watchdog_usec / 2 */
	struct event	*ev_status;	/* sends a STATUS= held back */
	uint64_t	 watchdog_usec;	/* 0: no watchdog */
	bool		 managed;	/* $NOTIFY_SOCKET is set */
	bool		 ready;		/* READY=1 sent (since a reload) */
	bool		 stopping;	/* STOPPING=1 sent */
	double		 status_at;	/* monotonic seconds of the last one */
	char		 status[SVC_STATUS_MAX];	/* the last sent */
	char		 pending[SVC_STATUS_MAX];	/* to send; "" none */
};

static double
svc_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Make a passed fd ours: non-blocking, close-on-exec. */
static int
svc_adopt(int fd, const char *name, char *err, size_t errsize)
{
	int fl;

	if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
		snprintf(err, errsize, "socket %d (\"%s\") from systemd is not "
		    "a listening Unix stream socket", fd, name);
		return -ENOTSOCK;
	}
	if ((fl = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		snprintf(err, errsize, "socket %d from systemd: %s", fd,
		    strerror(errno));
		return -errno;
	}
	return 0;
}

int
svc_listen_fds(struct svc_fds *out, char *err, size_t errsize)
{
	char **names = NULL;
	const char *name;
	int n, i, fd, r = 0, *slot;

	out->main_fd = out->admin_fd = -1;
	n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		snprintf(err, errsize, "sockets from systemd: %s",
		    strerror(-n));
		return n;
	}
	for (i = 0; i < n; i++) {
		fd = SD_LISTEN_FDS_START + i;
		name = names != NULL && names[i] != NULL ? names[i] :
		    "unknown";
		if (strcmp(name, SVC_FD_NAME_MAIN) == 0)
			slot = &out->main_fd;
		else if (strcmp(name, SVC_FD_NAME_ADMIN) == 0)
			slot = &out->admin_fd;
		else if (n == 1)
			slot = &out->main_fd;	/* the one socket, unnamed */
		else
			slot = NULL;
		if (slot == NULL || *slot >= 0 || r < 0) {
			if (r == 0)
				log_warnx("service: ignoring socket %d (\"%s\") "
				    "from systemd: FileDescriptorName= must be "
				    "\"%s\" or \"%s\", once each", fd, name,
				    SVC_FD_NAME_MAIN, SVC_FD_NAME_ADMIN);
			close(fd);
			continue;
		}
		if ((r = svc_adopt(fd, name, err, errsize)) < 0) {
			close(fd);
			continue;
		}
		*slot = fd;
	}
	if (names != NULL) {
		for (i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	if (r < 0) {
		if (out->main_fd >= 0)
			close(out->main_fd);
		if (out->admin_fd >= 0)
			close(out->admin_fd);
		out->main_fd = out->admin_fd = -1;
	}
	return r;
}

static void
svc_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

/* Send STATUS=text (which may be sv->pending) now. */
static void
svc_send_status(struct svc *sv, const char *text)
{
	if (text != sv->status)
		snprintf(sv->status, sizeof(sv->status), "%s", text);
	sv->pending[0] = '\0';
	sv->status_at = svc_now();
	sd_notifyf(0, "STATUS=%s", sv->status);
}

static void
svc_status_cb(evutil_socket_t fd, short what, void *arg)
{
	struct svc *sv = arg;

	(void)fd;
	(void)what;
	if (sv->pending[0] != '\0' && strcmp(sv->pending, sv->status) != 0)
		svc_send_status(sv, sv->pending);
	sv->pending[0] = '\0';
}

int
svc_new(struct event_base *base, struct svc **out)
{
	struct timeval tv;
	struct svc *sv;
	uint64_t usec = 0;
	const char *ns;

	if ((sv = calloc(1, sizeof(*sv))) == NULL)
		return -ENOMEM;
	ns = getenv("NOTIFY_SOCKET");
	sv->managed = ns != NULL && *ns != '\0';
	if ((sv->ev_status = evtimer_new(base, svc_status_cb, sv)) == NULL) {
		free(sv);
		return -ENOMEM;
	}
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		sv->watchdog_usec = usec;
		sv->ev_watchdog = event_new(base, -1, EV_PERSIST,
		    svc_watchdog_cb, sv);
		tv.tv_sec = (time_t)(usec / 2 / 1000000);
		tv.tv_usec = (suseconds_t)(usec / 2 % 1000000);
		if (sv->ev_watchdog == NULL ||
		    event_add(sv->ev_watchdog, &tv) != 0) {
			svc_free(sv);
			return -ENOMEM;
		}
		sd_notify(0, "WATCHDOG=1");
	}
	*out = sv;
	return 0;
}

void
svc_free(struct svc *sv)
{
	if (sv == NULL)
		return;
	if (sv->ev_watchdog != NULL)
		event_free(sv->ev_watchdog);
	if (sv->ev_status != NULL)
		event_free(sv->ev_status);
	free(sv);
}

bool
svc_managed(const struct svc *sv)
{
	return sv->managed;
}

uint64_t
svc_watchdog_usec(const struct svc *sv)
{
	return sv->watchdog_usec;
}

void
svc_ready(struct svc *sv, const char *status)
{
	if (sv->ready || sv->stopping)
		return;
	sv->ready = true;
	snprintf(sv->status, sizeof(sv->status), "%s", status);
	sv->pending[0] = '\0';
	sv->status_at = svc_now();
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void
svc_status(struct svc *sv, const char *text)
{
	struct timeval tv;
	double wait;

	if (sv->stopping || strcmp(text, sv->status) == 0) {
		sv->pending[0] = '\0';
		return;
	}
	wait = sv->status_at + SVC_STATUS_MIN_MS / 1e3 - svc_now();
	if (wait <= 0 && sv->pending[0] == '\0') {
		svc_send_status(sv, text);
		return;
	}
	snprintf(sv->pending, sizeof(sv->pending), "%s", text);
	if (!evtimer_pending(sv->ev_status, NULL)) {
		if (wait < 0)
			wait = 0;
		tv.tv_sec = (time_t)wait;
		tv.tv_usec = (suseconds_t)((wait - (double)tv.tv_sec) * 1e6);
		evtimer_add(sv->ev_status, &tv);
	}
}

void
svc_reloading(struct svc *sv)
{
	struct timespec ts;

	if (sv->stopping)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sv->ready = false;
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ull +
	    (unsigned long long)ts.tv_nsec / 1000ull);
}

void
svc_stopping(struct svc *sv, const char *status)
{
	if (sv->stopping)
		return;
	sv->stopping = true;
	evtimer_del(sv->ev_status);
	sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
}
