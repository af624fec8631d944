/*
 * server.c - hearthd's loop: accepting connections, the connection
 * table, the queue from worker threads, signals and shutdown.
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

#include "conn.h"
#include "listen.h"
#include "log.h"
#include "registry.h"
#include "server.h"

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
		    d->state == DREQ_RUNNING)
			conn_req_end(d);
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

	(void)fd;
	(void)what;
	if (s->listen_fd >= 0 && !s->stopping)
		event_add(s->ev_accept, NULL);
}

/* Refuse a connection over the limit with a busy error. */
static void
srv_refuse(int fd)
{
	struct proto_buf b;

	proto_buf_init(&b);
	if (proto_pack_error(&b, 0, PROTO_E_BUSY,
	    "too many connections; try again later") == 0)
		(void)!send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	proto_buf_free(&b);
	close(fd);
}

static void
srv_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct srv *s = arg;
	struct listen_peer peer;
	struct conn *c;
	int fd, i;

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
			event_del(s->ev_accept);
			evtimer_add(s->ev_accept_retry, &tv);
			return;
		}
		if (s->n_conns >= s->cfg->max_connections) {
			log_warnx("accept: %u connections open, refusing uid "
			    "%u pid %d", s->n_conns, (unsigned)peer.uid,
			    (int)peer.pid);
			srv_refuse(fd);
			continue;
		}
		if (conn_new(s, fd, peer.uid, peer.gid, peer.pid, &c) < 0) {
			log_warnx("accept: cannot set up a connection");
			continue;
		}
	}
}

/* ---- signals, setup, shutdown ---- */

static void
srv_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct srv *s = arg;

	(void)what;
	log_info("server: %s, shutting down", strsignal((int)sig));
	srv_stop(s);
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

int
srv_init(struct srv *s, struct config *cfg, const char *socket_path,
    const char *models_dir, bool is_root, char *err, size_t errsize)
{
	struct proto_err pe;
	size_t n;
	int r;

	memset(s, 0, sizeof(*s));
	s->listen_fd = -1;
	s->cfg = cfg;
	s->is_root = is_root;
	s->socket_path = socket_path;
	s->next_conn_id = 1;
	s->start = srv_now();
	s->hugepages = srv_hugepages();
	snprintf(s->version, sizeof(s->version), "hearthd %s",
	    HEARTHD_VERSION);
	TAILQ_INIT(&s->conns);
	STAILQ_INIT(&s->posts);
	pthread_mutex_init(&s->post_lock, NULL);
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
	s->ev_sigint = evsignal_new(s->base, SIGINT, srv_signal_cb, s);
	s->ev_sigterm = evsignal_new(s->base, SIGTERM, srv_signal_cb, s);
	s->ev_accept_retry = evtimer_new(s->base, srv_accept_retry_cb, s);
	if (s->ev_wake == NULL || s->ev_sigint == NULL ||
	    s->ev_sigterm == NULL || s->ev_accept_retry == NULL ||
	    evsignal_add(s->ev_sigint, NULL) != 0 ||
	    evsignal_add(s->ev_sigterm, NULL) != 0) {
		snprintf(err, errsize, "libevent: cannot set up events");
		return -ENOMEM;
	}

	if ((r = reg_new(s, models_dir, &s->reg, err, errsize)) < 0)
		return r;
	if ((r = listen_open(socket_path, is_root, err, errsize)) < 0)
		return r;
	s->listen_fd = r;
	s->ev_accept = event_new(s->base, s->listen_fd, EV_READ | EV_PERSIST,
	    srv_accept_cb, s);
	if (s->ev_accept == NULL || event_add(s->ev_accept, NULL) != 0) {
		snprintf(err, errsize, "libevent: cannot watch the socket");
		return -ENOMEM;
	}
	return 0;
}

int
srv_run(struct srv *s)
{
	log_info("server: %s listening on %s (protocol %d, max frame %u)",
	    s->version, s->socket_path, PROTO_VERSION, s->limits.max_frame);
	if (event_base_dispatch(s->base) < 0)
		return -EIO;
	return 0;
}

/* Close the listening socket: no new connections. */
static void
srv_close_listener(struct srv *s)
{
	if (s->ev_accept != NULL) {
		event_free(s->ev_accept);
		s->ev_accept = NULL;
	}
	if (s->ev_accept_retry != NULL)
		event_del(s->ev_accept_retry);
	if (s->listen_fd >= 0) {
		listen_close(s->listen_fd, s->socket_path);
		s->listen_fd = -1;
	}
}

void
srv_stop(struct srv *s)
{
	struct conn *c;

	if (s->stopping)
		return;
	s->stopping = true;
	srv_close_listener(s);
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

	while ((c = TAILQ_FIRST(&s->conns)) != NULL)
		conn_free(c);
	srv_close_listener(s);
	reg_free(s->reg);
	s->reg = NULL;
	srv_drain_posts(s);
	if (s->ev_wake != NULL)
		event_free(s->ev_wake);
	if (s->ev_sigint != NULL)
		event_free(s->ev_sigint);
	if (s->ev_sigterm != NULL)
		event_free(s->ev_sigterm);
	if (s->ev_accept_retry != NULL)
		event_free(s->ev_accept_retry);
	if (s->base != NULL)
		event_base_free(s->base);
	free(s->conn_hash);
	pthread_mutex_destroy(&s->post_lock);
	libevent_global_shutdown();
	memset(s, 0, sizeof(*s));
	s->listen_fd = -1;
}
