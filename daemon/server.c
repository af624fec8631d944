/*
 * server.c - hearthd's loop: accepting connections on the main and
 * admin sockets, the connection table, the queue from worker threads,
 * signals (reload, drain, stop), and what systemd is told.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "conn.h"
#include "dispatch.h"
#include "listen.h"
#include "log.h"
#include "registry.h"
#include "server.h"
#include "service.h"

#ifndef HEARTHD_VERSION
#define HEARTHD_VERSION	"0.1.0"
#endif

#define SRV_ACCEPT_RETRY_MS	100	/* pause after EMFILE/ENFILE */
#define SRV_ACCEPT_BURST	64	/* accepts per wakeup */

double
srv_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- connection table ---- */

static size_t
srv_conn_slot(const struct srv *s, uint64_t id)
{
	return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 32) &
	    (s->conn_hash_size - 1);
}

struct conn *
srv_conn_find(struct srv *s, uint64_t id)
{
	struct conn *c;

	for (c = s->conn_hash[srv_conn_slot(s, id)]; c != NULL;
	    c = c->hash_next)
		if (c->id == id)
			return c;
	return NULL;
}

void
srv_conn_add(struct srv *s, struct conn *c)
{
	size_t slot = srv_conn_slot(s, c->id);

	c->hash_next = s->conn_hash[slot];
	s->conn_hash[slot] = c;
	TAILQ_INSERT_TAIL(&s->conns, c, entry);
	s->n_conns++;
}

void
srv_conn_remove(struct srv *s, struct conn *c)
{
	struct conn **pp;

	for (pp = &s->conn_hash[srv_conn_slot(s, c->id)]; *pp != NULL;
	    pp = &(*pp)->hash_next)
		if (*pp == c) {
			*pp = c->hash_next;
			break;
		}
	TAILQ_REMOVE(&s->conns, c, entry);
	s->n_conns--;
}

/* ---- the queue from worker threads ---- */

static void
srv_enqueue(struct srv *s, struct srv_post *p)
{
	pthread_mutex_lock(&s->post_lock);
	STAILQ_INSERT_TAIL(&s->posts, p, entry);
	pthread_mutex_unlock(&s->post_lock);
	event_active(s->ev_wake, EV_READ, 0);
}

void
srv_post_frame(void *arg, uint64_t conn_id, uint64_t id,
    const uint8_t *frame, size_t len, bool final)
{
	struct srv *s = arg;
	struct srv_post *p;

	if ((p = malloc(sizeof(*p) + len)) == NULL) {
		log_warnx("post: out of memory, frame of request %llu on "
		    "connection %llu lost", (unsigned long long)id,
		    (unsigned long long)conn_id);
		return;
	}
	memset(p, 0, sizeof(*p));
	p->kind = SRV_POST_FRAME;
	p->conn_id = conn_id;
	p->id = id;
	p->final = final;
	p->len = len;
	memcpy(p->data, frame, len);
	srv_enqueue(s, p);
}

void
srv_post_progress(struct srv *s, struct reg_model *rm, uint64_t done,
    uint64_t total)
{
	struct srv_post *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return;		/* progress is advisory */
	p->kind = SRV_POST_PROGRESS;
	p->rm = rm;
	p->done = done;
	p->total = total;
	srv_enqueue(s, p);
}

void
srv_post_loaded(struct srv *s, struct reg_model *rm, struct model *m,
    struct sched *sc, int rc, const char *msg)
{
	struct srv_post *p;

	/* The loop must learn that the loader ended: retry until memory. */
	while ((p = calloc(1, sizeof(*p))) == NULL)
		usleep(10000);
	p->kind = SRV_POST_LOADED;
	p->rm = rm;
	p->m = m;
	p->s = sc;
	p->rc = rc;
	snprintf(p->msg, sizeof(p->msg), "%s", msg != NULL ? msg : "");
	srv_enqueue(s, p);
}

/* Handle one post on the loop thread. */
static void
srv_post_handle(struct srv *s, struct srv_post *p)
{
	struct conn *c;
	struct dreq *d;

	switch (p->kind) {
	case SRV_POST_FRAME:
		if ((c = srv_conn_find(s, p->conn_id)) == NULL || c->closing)
			break;	/* gone: drop */
		conn_send(c, p->data, p->len);
		if (p->final && (d = conn_req_find(c, p->id)) != NULL &&
		    d->state == DREQ_RUNNING) {
			dispatch_account(d, p->data, p->len);
			conn_req_end(d);
		}
		break;
	case SRV_POST_PROGRESS:
		reg_progress(p->rm, p->done, p->total);
		break;
	case SRV_POST_LOADED:
		reg_loaded(p->rm, p->m, p->s, p->rc, p->msg);
		break;
	}
}

static void
srv_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv *s = arg;
	STAILQ_HEAD(, srv_post) q;
	struct srv_post *p;

	(void)fd;
	(void)what;
	if (s->stopping)
		return;		/* srv_free drains the queue */
	pthread_mutex_lock(&s->post_lock);
	STAILQ_INIT(&q);
	STAILQ_CONCAT(&q, &s->posts);
	pthread_mutex_unlock(&s->post_lock);
	while ((p = STAILQ_FIRST(&q)) != NULL) {
		STAILQ_REMOVE_HEAD(&q, entry);
		srv_post_handle(s, p);
		free(p);
	}
}

/* ---- accepting ---- */

static void
srv_accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv *s = arg;
	int i;

	(void)fd;
	(void)what;
	if (s->stopping || s->draining)
		return;
	for (i = 0; i < 2; i++)
		if (s->lis[i].ev != NULL)
			event_add(s->lis[i].ev, NULL);
}

/* Refuse a connection with an id-0 error. */
static void
srv_refuse(int fd, enum proto_code code, const char *msg)
{
	struct proto_buf b;

	proto_buf_init(&b);
	if (proto_pack_error(&b, 0, code, msg) == 0)
		(void)!send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	proto_buf_free(&b);
	close(fd);
}

static void
srv_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct srv_listener *l = arg;
	struct srv *s = l->srv;
	const struct config_access *rule;
	struct listen_peer peer;
	struct acc_user *u;
	struct conn *c;
	char msg[256];
	int fd, i, k;

	(void)what;
	for (i = 0; i < SRV_ACCEPT_BURST; i++) {
		fd = listen_accept(lfd, &peer);
		if (fd == -EAGAIN || fd == -EWOULDBLOCK || fd == -EINTR ||
		    fd == -ECONNABORTED)
			return;
		if (fd < 0) {
			struct timeval tv = { 0, SRV_ACCEPT_RETRY_MS * 1000 };

			errno = -fd;
			log_warn("accept");
			/* EMFILE and friends: wait instead of spinning */
			for (k = 0; k < 2; k++)
				if (s->lis[k].ev != NULL)
					event_del(s->lis[k].ev);
			evtimer_add(s->ev_accept_retry, &tv);
			return;
		}
		if (s->n_conns >= s->cfg->max_connections) {
			log_warnx("accept: %u connections open, refusing uid "
			    "%u pid %d", s->n_conns, (unsigned)peer.uid,
			    (int)peer.pid);
			srv_refuse(fd, PROTO_E_BUSY, "too many connections; "
			    "try again later");
			continue;
		}
		if ((u = acc_user_get(&s->users, peer.uid)) == NULL) {
			log_warnx("accept: out of memory");
			srv_refuse(fd, PROTO_E_INTERNAL, "out of memory");
			continue;
		}
		rule = acc_match(s->cfg, u, peer.gid, l->admin, s->have_admin);
		if (rule != NULL && rule->max_connections != CONFIG_UNLIMITED &&
		    u->n_conns >= rule->max_connections) {
			snprintf(msg, sizeof(msg), "busy by %s: uid %u has %u "
			    "connections open (max_connections %u)",
			    acc_rule_label(rule), (unsigned)peer.uid,
			    u->n_conns, rule->max_connections);
			log_notice("access: uid %u pid %d: %s",
			    (unsigned)peer.uid, (int)peer.pid, msg);
			srv_refuse(fd, PROTO_E_BUSY, msg);
			continue;
		}
		if (conn_new(s, fd, &peer, u, l->admin, &c) < 0) {
			log_warnx("accept: cannot set up a connection");
			continue;
		}
	}
}

/* ---- the kick: releases, drain, status, readiness ---- */

/* Requests in flight on every connection. */
static uint32_t
srv_requests_in_flight(struct srv *s)
{
	struct conn *c;
	uint32_t n = 0;

	TAILQ_FOREACH(c, &s->conns, entry)
		n += c->n_reqs;
	return n;
}

/* Start the held requests whose users are below max_requests again. */
static void
srv_release_held(struct srv *s)
{
	const struct config_access *rule;
	struct acc_user *u;
	struct dreq *d;
	uint32_t max;

	TAILQ_FOREACH(u, &s->users, entry) {
		while ((d = TAILQ_FIRST(&u->held)) != NULL) {
			rule = acc_match(s->cfg, u, d->conn->gid,
			    d->conn->admin_socket, s->have_admin);
			max = rule != NULL ? rule->max_requests : 0;
			if (rule != NULL && max != CONFIG_UNLIMITED &&
			    u->n_active >= max)
				break;
			/* no rule any more: dispatch_release refuses it */
			dispatch_release(d);
		}
	}
}

static void
srv_status_text(struct srv *s, char *buf, size_t size)
{
	uint32_t resident, running, waiting, held = 0;
	struct acc_user *u;

	reg_counts(s->reg, &resident, &running, &waiting);
	TAILQ_FOREACH(u, &s->users, entry)
		held += u->n_held;
	snprintf(buf, size, "%u model%s resident, %u request%s running, %u "
	    "waiting, %u connection%s%s", resident, resident == 1 ? "" : "s",
	    running, running == 1 ? "" : "s", waiting + held, s->n_conns,
	    s->n_conns == 1 ? "" : "s", s->draining ? "; stopping" :
	    s->reload_failed ? "; the last reload failed (see the log)" : "");
}

static void srv_drain_done(struct srv *s);

static void
srv_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv *s = arg;
	char status[SVC_STATUS_MAX];

	(void)fd;
	(void)what;
	if (s->stopping)
		return;
	if (!s->draining)
		srv_release_held(s);
	if (s->flushing) {
		if (s->n_conns == 0)
			srv_stop(s);
		return;
	}
	if (s->draining && srv_requests_in_flight(s) == 0) {
		log_info("server: every request has ended");
		srv_drain_done(s);
		return;
	}
	acc_users_gc(&s->users, srv_now());
	srv_status_text(s, status, sizeof(status));
	if (!s->draining && reg_preloading(s->reg) == 0)
		svc_ready(s->svc, status);	/* once (per reload) */
	svc_status(s->svc, status);
}

void
srv_changed(struct srv *s)
{
	if (s->ev_kick != NULL && !s->stopping)
		event_active(s->ev_kick, EV_READ, 0);
}

/* ---- draining ---- */

/* Close the listening sockets: no new connections. */
static void
srv_close_listeners(struct srv *s)
{
	struct srv_listener *l;
	int i;

	for (i = 0; i < 2; i++) {
		l = &s->lis[i];
		if (l->ev != NULL) {
			event_free(l->ev);
			l->ev = NULL;
		}
		if (l->fd >= 0) {
			listen_close(l->fd, l->activated ? NULL : l->path);
			l->fd = -1;
		}
	}
	if (s->ev_accept_retry != NULL)
		event_del(s->ev_accept_retry);
}

/* Every request has ended: write what is queued, close, stop. */
static void
srv_drain_done(struct srv *s)
{
	struct timeval tv = { 2, 0 };
	struct conn *c, *next;

	s->flushing = true;
	evtimer_del(s->ev_drain);
	for (c = TAILQ_FIRST(&s->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		conn_close_soon(c);	/* may free c */
	}
	if (s->n_conns == 0) {
		srv_stop(s);
		return;
	}
	evtimer_add(s->ev_drain, &tv);	/* then stop anyway */
}

static void
srv_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv *s = arg;
	struct conn *c;
	uint32_t n;

	(void)fd;
	(void)what;
	if (s->flushing) {
		log_info("server: %u connections did not take their last "
		    "frames in time", s->n_conns);
		srv_stop(s);
		return;
	}
	n = srv_requests_in_flight(s);
	log_notice("server: drain_timeout: ending %u request%s with an "
	    "error", n, n == 1 ? "" : "s");
	TAILQ_FOREACH(c, &s->conns, entry)
		conn_abort_requests(c, PROTO_E_BUSY, "hearthd is shutting "
		    "down: the request did not end within drain_timeout");
	srv_drain_done(s);
}

/* SIGTERM/SIGINT: stop accepting, let the running requests end. */
static void
srv_drain(struct srv *s)
{
	uint32_t ms = s->cfg->drain_timeout_ms, n;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct acc_user *u;
	struct dreq *d;

	s->draining = true;
	svc_stopping(s->svc, "stopping: finishing running requests");
	srv_close_listeners(s);
	/* held requests have not started: refuse them now */
	TAILQ_FOREACH(u, &s->users, entry)
		while ((d = TAILQ_FIRST(&u->held)) != NULL)
			dispatch_fail(d, PROTO_E_BUSY, "hearthd is shutting "
			    "down; try again later");
	n = srv_requests_in_flight(s);
	log_info("server: draining: %u request%s running, %u ms to end",
	    n, n == 1 ? "" : "s", ms);
	evtimer_add(s->ev_drain, &tv);
	srv_changed(s);
}

/* ---- signals, setup, shutdown ---- */

static void
srv_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct srv *s = arg;

	(void)what;
	if (s->draining) {
		log_info("server: %s again, stopping now",
		    strsignal((int)sig));
		srv_stop(s);
		return;
	}
	log_info("server: %s, shutting down", strsignal((int)sig));
	srv_drain(s);
}

static void
srv_sighup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct srv *s = arg;

	(void)sig;
	(void)what;
	if (s->draining)
		return;
	(void)srv_reload(s);
}

/* Warn about a setting that only a restart applies. */
static void
srv_reload_fixed(const char *key, const char *old, const char *new)
{
	if ((old == NULL) != (new == NULL) ||
	    (old != NULL && strcmp(old, new) != 0))
		log_warnx("reload: %s changed; it takes effect when hearthd "
		    "restarts", key);
}

int
srv_reload(struct srv *s)
{
	struct config *nc, *old = s->cfg;
	char err[CONFIG_ERR_MAX + 64], status[SVC_STATUS_MAX];
	int r = 0;

	svc_reloading(s->svc);
	if ((nc = calloc(1, sizeof(*nc))) == NULL) {
		r = -ENOMEM;
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	config_default(nc, s->is_root);
	if (s->config_path != NULL) {
		r = config_load(nc, s->config_path, err, sizeof(err));
		if (r == -ENOENT && s->config_optional) {
			config_free(nc);
			config_default(nc, s->is_root);
			r = 0;
		}
	}
	if (r == 0 && (r = config_apply(nc, &s->ov)) < 0)
		snprintf(err, sizeof(err), "out of memory");
	if (r < 0)
		goto fail;
	srv_reload_fixed("socket", old->socket_path, nc->socket_path);
	srv_reload_fixed("admin_socket", old->admin_socket_path,
	    nc->admin_socket_path);
	srv_reload_fixed("models", old->models_dir, nc->models_dir);
	if (old->socket_mode != nc->socket_mode ||
	    old->admin_socket_mode != nc->admin_socket_mode)
		srv_reload_fixed("socket_mode", "", "changed");
	if (old->max_frame != nc->max_frame)
		srv_reload_fixed("max_frame", "", "changed");
	s->cfg = nc;
	s->reload_failed = false;
	config_free(old);
	free(old);
	log_init(nc->debug);
	acc_users_regroup(&s->users);
	log_notice("reload: %s: %zu [model] and %zu [access] section%s; new "
	    "rules and limits apply to new requests", s->config_path ?
	    s->config_path : "(no file)", nc->n_models, nc->n_access,
	    nc->n_access == 1 ? "" : "s");
	reg_reconfigure(s->reg);
	reg_preload(s->reg);
	srv_status_text(s, status, sizeof(status));
	svc_ready(s->svc, status);
	srv_changed(s);
	return 0;
fail:
	if (nc != NULL) {
		config_free(nc);
		free(nc);
	}
	s->reload_failed = true;
	log_warnx("reload: %s; keeping the configuration in use", err);
	snprintf(status, sizeof(status), "reload failed: %.*s",
	    (int)(sizeof(status) - 32), err);
	svc_ready(s->svc, status);
	srv_changed(s);
	return r;
}

/* "thp" when transparent hugepages are always on, else "none". */
static const char *
srv_hugepages(void)
{
	char buf[128];
	ssize_t n;
	int fd;

	fd = open("/sys/kernel/mm/transparent_hugepage/enabled",
	    O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return "none";
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return "none";
	buf[n] = '\0';
	return strstr(buf, "[always]") != NULL ? "thp" : "none";
}

/* Set up listener i: a socket systemd passed (fd >= 0) or our own. */
static int
srv_listen(struct srv *s, int i, int fd, const char *path, mode_t mode,
    char *err, size_t errsize)
{
	struct srv_listener *l = &s->lis[i];
	int r;

	l->srv = s;
	l->admin = i == SRV_ADMIN;
	if (path != NULL && (l->path = strdup(path)) == NULL) {
		snprintf(err, errsize, "out of memory");
		return -ENOMEM;
	}
	if (fd >= 0) {
		l->fd = fd;
		l->activated = true;
		free(l->path);
		l->path = NULL;
	} else {
		if ((r = listen_open(path, s->is_root, mode, err, errsize)) < 0)
			return r;
		l->fd = r;
	}
	l->ev = event_new(s->base, l->fd, EV_READ | EV_PERSIST,
	    srv_accept_cb, l);
	if (l->ev == NULL || event_add(l->ev, NULL) != 0) {
		snprintf(err, errsize, "libevent: cannot watch the socket");
		return -ENOMEM;
	}
	if (i == SRV_ADMIN)
		s->have_admin = true;
	return 0;
}

int
srv_init(struct srv *s, struct config *cfg, const struct srv_opts *o,
    char *err, size_t errsize)
{
	struct proto_err pe;
	struct svc_fds fds = { -1, -1 };
	mode_t mode;
	size_t n;
	int r;

	memset(s, 0, sizeof(*s));
	s->lis[0].fd = s->lis[1].fd = -1;
	s->cfg = cfg;
	s->is_root = o->is_root;
	s->ov = o->ov;
	s->config_optional = o->config_optional;
	s->next_conn_id = 1;
	s->start = srv_now();
	s->hugepages = srv_hugepages();
	snprintf(s->version, sizeof(s->version), "hearthd %s",
	    HEARTHD_VERSION);
	TAILQ_INIT(&s->conns);
	TAILQ_INIT(&s->users);
	STAILQ_INIT(&s->posts);
	pthread_mutex_init(&s->post_lock, NULL);
	if (o->config_path != NULL &&
	    (s->config_path = strdup(o->config_path)) == NULL) {
		snprintf(err, errsize, "out of memory");
		return -ENOMEM;
	}
	proto_limits_default(&s->limits);
	s->limits.max_frame = cfg->max_frame;
	if (proto_limits_check(&s->limits, &pe) < 0) {
		snprintf(err, errsize, "limits: %s", pe.msg);
		return -EINVAL;
	}
	for (n = 16; n < cfg->max_connections; n <<= 1)
		;
	s->conn_hash_size = n;
	if ((s->conn_hash = calloc(n, sizeof(*s->conn_hash))) == NULL) {
		snprintf(err, errsize, "out of memory");
		return -ENOMEM;
	}

	if (evthread_use_pthreads() != 0) {
		snprintf(err, errsize, "libevent: no thread support");
		return -ENOSYS;
	}
	if ((s->base = event_base_new()) == NULL) {
		snprintf(err, errsize, "libevent: cannot create the loop");
		return -ENOMEM;
	}
	s->ev_wake = event_new(s->base, -1, 0, srv_wake_cb, s);
	s->ev_kick = event_new(s->base, -1, 0, srv_kick_cb, s);
	s->ev_drain = evtimer_new(s->base, srv_drain_cb, s);
	s->ev_sigint = evsignal_new(s->base, SIGINT, srv_signal_cb, s);
	s->ev_sigterm = evsignal_new(s->base, SIGTERM, srv_signal_cb, s);
	s->ev_sighup = evsignal_new(s->base, SIGHUP, srv_sighup_cb, s);
	s->ev_accept_retry = evtimer_new(s->base, srv_accept_retry_cb, s);
	if (s->ev_wake == NULL || s->ev_kick == NULL || s->ev_drain == NULL ||
	    s->ev_sigint == NULL || s->ev_sigterm == NULL ||
	    s->ev_sighup == NULL || s->ev_accept_retry == NULL ||
	    evsignal_add(s->ev_sigint, NULL) != 0 ||
	    evsignal_add(s->ev_sigterm, NULL) != 0 ||
	    evsignal_add(s->ev_sighup, NULL) != 0) {
		snprintf(err, errsize, "libevent: cannot set up events");
		return -ENOMEM;
	}
	if ((r = svc_new(s->base, &s->svc)) < 0) {
		snprintf(err, errsize, "out of memory");
		return r;
	}

	if ((r = reg_new(s, o->models_dir, &s->reg, err, errsize)) < 0)
		return r;
	if ((r = svc_listen_fds(&fds, err, errsize)) < 0)
		return r;
	mode = cfg->socket_mode != 0 ? cfg->socket_mode :
	    s->is_root ? 0666 : 0600;
	r = srv_listen(s, SRV_MAIN, fds.main_fd, o->socket_path, mode, err,
	    errsize);
	fds.main_fd = -1;	/* the listener has it, even on failure */
	if (r == 0 && (fds.admin_fd >= 0 || o->admin_socket_path != NULL)) {
		r = srv_listen(s, SRV_ADMIN, fds.admin_fd,
		    o->admin_socket_path, cfg->admin_socket_mode, err,
		    errsize);
		fds.admin_fd = -1;
	}
	if (fds.admin_fd >= 0)
		close(fds.admin_fd);
	return r;
}

int
srv_run(struct srv *s)
{
	struct srv_listener *l;
	int i;

	for (i = 0; i < 2; i++) {
		l = &s->lis[i];
		if (l->fd < 0)
			continue;
		log_info("server: %s listening on %s%s", s->version,
		    l->path != NULL ? l->path : l->admin ?
		    "the admin socket from systemd" : "the socket from systemd",
		    l->admin && l->path != NULL ? " (admin)" : "");
	}
	log_info("server: protocol %d, max frame %u%s%s", PROTO_VERSION,
	    s->limits.max_frame, svc_managed(s->svc) ? ", notifying systemd" :
	    "", svc_watchdog_usec(s->svc) ? ", watchdog on" : "");
	reg_preload(s->reg);
	srv_changed(s);		/* READY=1 once the preloads are resident */
	if (event_base_dispatch(s->base) < 0)
		return -EIO;
	return 0;
}

void
srv_stop(struct srv *s)
{
	struct conn *c;

	if (s->stopping)
		return;
	svc_stopping(s->svc, "stopping");
	s->stopping = true;
	srv_close_listeners(s);
	while ((c = TAILQ_FIRST(&s->conns)) != NULL)
		conn_free(c);
	/* cancels loads, joins threads, frees schedulers and models */
	reg_free(s->reg);
	s->reg = NULL;
	event_base_loopbreak(s->base);
}

/* Free posts nobody will handle (after every worker thread is gone). */
static void
srv_drain_posts(struct srv *s)
{
	struct srv_post *p;

	while ((p = STAILQ_FIRST(&s->posts)) != NULL) {
		STAILQ_REMOVE_HEAD(&s->posts, entry);
		if (p->kind == SRV_POST_LOADED) {
			sched_free(p->s);
			model_free(p->m);
		}
		free(p);
	}
}

void
srv_free(struct srv *s)
{
	struct conn *c;
	int i;

	s->stopping = true;
	while ((c = TAILQ_FIRST(&s->conns)) != NULL)
		conn_free(c);
	srv_close_listeners(s);
	reg_free(s->reg);
	s->reg = NULL;
	srv_drain_posts(s);
	acc_users_free(&s->users);
	svc_free(s->svc);
	if (s->ev_wake != NULL)
		event_free(s->ev_wake);
	if (s->ev_kick != NULL)
		event_free(s->ev_kick);
	if (s->ev_drain != NULL)
		event_free(s->ev_drain);
	if (s->ev_sigint != NULL)
		event_free(s->ev_sigint);
	if (s->ev_sigterm != NULL)
		event_free(s->ev_sigterm);
	if (s->ev_sighup != NULL)
		event_free(s->ev_sighup);
	if (s->ev_accept_retry != NULL)
		event_free(s->ev_accept_retry);
	if (s->base != NULL)
		event_base_free(s->base);
	for (i = 0; i < 2; i++)
		free(s->lis[i].path);
	free(s->conn_hash);
	free(s->config_path);
	config_free(s->cfg);
	free(s->cfg);
	pthread_mutex_destroy(&s->post_lock);
	libevent_global_shutdown();
	memset(s, 0, sizeof(*s));
	s->lis[0].fd = s->lis[1].fd = -1;
}
