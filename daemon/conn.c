/*
 * conn.c - one client connection: reading frames, writing replies with
 * a capped output buffer (pause, resume, time out), and the requests in
 * flight.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access.h"
#include "conn.h"
#include "dispatch.h"
#include "listen.h"
#include "log.h"
#include "registry.h"
#include "server.h"

#define CONN_CLOSE_TIMEOUT_MS	1000	/* to write a last error */
#define CONN_WRITE_MAX		(1u << 20)	/* bytes per send(2) */

static void conn_read_cb(evutil_socket_t, short, void *);
static void conn_write_cb(evutil_socket_t, short, void *);
static void conn_timer_cb(evutil_socket_t, short, void *);
static void conn_input(struct conn *c);

int
conn_new(struct srv *s, int fd, const struct listen_peer *peer,
    struct acc_user *u, bool admin_socket, struct conn **out)
{
	struct conn *c;
	int sz;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return -ENOMEM;
	}
	c->srv = s;
	c->fd = fd;
	c->uid = peer->uid;
	c->gid = peer->gid;
	c->pid = peer->pid;
	c->admin_socket = admin_socket;
	c->id = s->next_conn_id++;
	TAILQ_INIT(&c->reqs);
	proto_buf_init(&c->out);
	if (s->cfg->sndbuf != 0) {
		sz = (int)s->cfg->sndbuf;
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) != 0)
			log_warn("conn %llu: SO_SNDBUF",
			    (unsigned long long)c->id);
	}
	if (proto_reader_new(s->limits.max_frame, &c->rd) < 0)
		goto fail;
	c->ev_read = event_new(s->base, fd, EV_READ | EV_PERSIST,
	    conn_read_cb, c);
	c->ev_write = event_new(s->base, fd, EV_WRITE | EV_PERSIST,
	    conn_write_cb, c);
	c->ev_timer = evtimer_new(s->base, conn_timer_cb, c);
	if (c->ev_read == NULL || c->ev_write == NULL || c->ev_timer == NULL ||
	    event_add(c->ev_read, NULL) != 0)
		goto fail;
	srv_conn_add(s, c);
	c->user = u;
	u->n_conns++;
	srv_changed(s);
	log_debug("conn %llu: open%s, uid %u gid %u pid %d",
	    (unsigned long long)c->id, admin_socket ? " (admin socket)" : "",
	    (unsigned)c->uid, (unsigned)c->gid, (int)c->pid);
	*out = c;
	return 0;
fail:
	if (c->ev_read != NULL)
		event_free(c->ev_read);
	if (c->ev_write != NULL)
		event_free(c->ev_write);
	if (c->ev_timer != NULL)
		event_free(c->ev_timer);
	proto_reader_free(c->rd);
	close(fd);
	free(c);
	return -ENOMEM;
}

/* Drop every request: the schedulers forget the connection first. */
static void
conn_drop_requests(struct conn *c)
{
	struct dreq *d;

	if (c->srv->reg != NULL)
		reg_drop_conn(c->srv->reg, c->id);
	while ((d = TAILQ_FIRST(&c->reqs)) != NULL)
		conn_req_end(d);
}

void
conn_free(struct conn *c)
{
	if (c == NULL)
		return;
	log_debug("conn %llu: closed (%s%s%s), %u requests dropped",
	    (unsigned long long)c->id, c->client[0] ? "client " : "",
	    c->client, c->client[0] ? "" : "no hello", c->n_reqs);
	conn_drop_requests(c);
	srv_conn_remove(c->srv, c);
	c->user->n_conns--;
	srv_changed(c->srv);
	event_free(c->ev_read);
	event_free(c->ev_write);
	event_free(c->ev_timer);
	proto_reader_free(c->rd);
	proto_buf_free(&c->out);
	close(c->fd);
	free(c);
}

size_t
conn_pending(const struct conn *c)
{
	return c->out.len - c->out_off;
}

/* Output over the cap: stop the streams and the reading, start the clock. */
static void
conn_pause(struct conn *c)
{
	struct timeval tv;
	uint32_t ms = c->srv->cfg->pause_timeout_ms;

	c->paused = true;
	if (c->srv->reg != NULL)
		reg_pause_conn(c->srv->reg, c->id, true);
	event_del(c->ev_read);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(c->ev_timer, &tv);
	log_debug("conn %llu: paused, %zu bytes queued",
	    (unsigned long long)c->id, conn_pending(c));
}

static void
conn_resume(struct conn *c)
{
	c->paused = false;
	if (c->srv->reg != NULL)
		reg_pause_conn(c->srv->reg, c->id, false);
	evtimer_del(c->ev_timer);
	event_add(c->ev_read, NULL);
	log_debug("conn %llu: resumed", (unsigned long long)c->id);
	/* frames that arrived before the pause */
	conn_input(c);
}

void
conn_send(struct conn *c, const void *frame, size_t len)
{
	if (c->out_off > 0 && c->out_off >= c->out.len / 2) {
		proto_buf_consume(&c->out, c->out_off);
		c->out_off = 0;
	}
	if (proto_buf_append(&c->out, frame, len) < 0) {
		struct timeval now = { 0, 0 };

		/*
		 * Cannot keep the protocol's promises: close from a fresh
		 * callback (the caller may still hold one of c's requests).
		 */
		log_warnx("conn %llu: out of memory for output, closing",
		    (unsigned long long)c->id);
		c->closing = true;
		c->paused = false;
		event_del(c->ev_read);
		event_del(c->ev_write);
		evtimer_del(c->ev_timer);
		evtimer_add(c->ev_timer, &now);
		return;
	}
	event_add(c->ev_write, NULL);
	if (!c->paused && !c->closing &&
	    conn_pending(c) > c->srv->cfg->output_buffer)
		conn_pause(c);
}

void
conn_reply(struct conn *c, const struct proto_response *r)
{
	struct proto_err e;
	struct proto_buf b;

	proto_buf_init(&b);
	memset(&e, 0, sizeof(e));
	if (proto_pack_response(&b, r, &c->srv->limits, &e) < 0) {
		log_warnx("conn %llu: cannot pack the %s reply to request "
		    "%llu: %s", (unsigned long long)c->id,
		    proto_msg_name(r->request) ? proto_msg_name(r->request) :
		    "?", (unsigned long long)r->id, e.msg);
		conn_error(c, r->id, e.code == PROTO_E_TOO_LARGE ?
		    PROTO_E_TOO_LARGE : PROTO_E_INTERNAL,
		    "cannot send the reply: %s", e.msg);
		return;
	}
	conn_send(c, b.data, b.len);
	proto_buf_free(&b);
}

void
conn_error(struct conn *c, uint64_t id, enum proto_code code,
    const char *fmt, ...)
{
	char msg[PROTO_MAX_MESSAGE + 1];
	struct proto_buf b;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	proto_buf_init(&b);
	if (proto_pack_error(&b, id, code, msg) < 0) {
		log_warnx("conn %llu: out of memory for an error",
		    (unsigned long long)c->id);
		return;
	}
	conn_send(c, b.data, b.len);
	proto_buf_free(&b);
}

void
conn_fatal(struct conn *c, const struct proto_err *e)
{
	struct timeval tv = { CONN_CLOSE_TIMEOUT_MS / 1000,
	    (CONN_CLOSE_TIMEOUT_MS % 1000) * 1000 };

	if (c->closing)
		return;
	log_debug("conn %llu: framing error, closing: %s",
	    (unsigned long long)c->id, e->msg);
	conn_drop_requests(c);
	conn_error(c, 0, e->code != PROTO_E_NONE ? e->code :
	    PROTO_E_BAD_REQUEST, "%s", e->msg);
	c->closing = true;
	event_del(c->ev_read);
	if (c->paused)
		c->paused = false;	/* the timer now bounds the close */
	evtimer_del(c->ev_timer);
	evtimer_add(c->ev_timer, &tv);
	event_add(c->ev_write, NULL);
}

void
conn_abort_requests(struct conn *c, enum proto_code code, const char *msg)
{
	struct dreq *d;

	if (c->srv->reg != NULL)
		reg_drop_conn(c->srv->reg, c->id);
	while ((d = TAILQ_FIRST(&c->reqs)) != NULL) {
		conn_error(c, d->id, code, "%s", msg);
		conn_req_end(d);
	}
}

void
conn_close_soon(struct conn *c)
{
	struct timeval tv = { CONN_CLOSE_TIMEOUT_MS / 1000,
	    (CONN_CLOSE_TIMEOUT_MS % 1000) * 1000 };

	if (conn_pending(c) == 0) {
		conn_free(c);
		return;
	}
	if (c->closing)
		return;
	c->closing = true;
	c->paused = false;
	event_del(c->ev_read);
	evtimer_del(c->ev_timer);
	evtimer_add(c->ev_timer, &tv);
	event_add(c->ev_write, NULL);
}

/* Dispatch the complete frames in the reader (not while paused). */
static void
conn_input(struct conn *c)
{
	struct proto_err e;
	const uint8_t *body;
	size_t len;
	int r;

	if (c->in_input)
		return;
	c->in_input = true;
	while (!c->paused && !c->closing) {
		memset(&e, 0, sizeof(e));
		r = proto_reader_next(c->rd, &body, &len, &e);
		if (r == 0)
			break;
		if (r < 0) {
			conn_fatal(c, &e);
			break;
		}
		dispatch_frame(c, body, len);
	}
	c->in_input = false;
}

static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct proto_err e;
	ssize_t n;

	(void)fd;
	(void)what;
	memset(&e, 0, sizeof(e));
	n = proto_reader_read(c->rd, c->fd, &e);
	if (n == -EAGAIN || n == -EWOULDBLOCK)
		return;
	if (n == -EMSGSIZE || n == -EBADMSG) {
		/* a bad header: answer the frames before it, then fail */
		conn_input(c);
		conn_fatal(c, &e);
		return;
	}
	if (n < 0) {
		log_debug("conn %llu: %s", (unsigned long long)c->id, e.msg);
		conn_free(c);
		return;
	}
	if (n == 0) {
		if (proto_reader_pending(c->rd) > 0)
			log_debug("conn %llu: end of file inside a frame "
			    "(%zu bytes)", (unsigned long long)c->id,
			    proto_reader_pending(c->rd));
		conn_free(c);
		return;
	}
	conn_input(c);
}

static void
conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	size_t want;
	ssize_t n;

	(void)fd;
	(void)what;
	while (conn_pending(c) > 0) {
		want = conn_pending(c);
		if (want > CONN_WRITE_MAX)
			want = CONN_WRITE_MAX;
		n = send(c->fd, c->out.data + c->out_off, want,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			log_debug("conn %llu: write: %s",
			    (unsigned long long)c->id,
			    n < 0 ? strerror(errno) : "closed");
			conn_free(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	if (conn_pending(c) == 0) {
		c->out.len = 0;
		c->out_off = 0;
		/* do not hold on to a large buffer once it is drained */
		if (c->out.cap > c->srv->cfg->output_buffer)
			proto_buf_free(&c->out);
		event_del(c->ev_write);
		if (c->closing) {
			conn_free(c);
			return;
		}
	}
	if (c->paused && !c->closing &&
	    conn_pending(c) <= c->srv->cfg->output_buffer / 2)
		conn_resume(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->closing) {
		log_debug("conn %llu: last error not read in time, closing",
		    (unsigned long long)c->id);
	} else {
		log_warnx("conn %llu: client (uid %u pid %d) did not read "
		    "%zu bytes of output in %u ms; cancelling its %u "
		    "requests and closing", (unsigned long long)c->id,
		    (unsigned)c->uid, (int)c->pid, conn_pending(c),
		    c->srv->cfg->pause_timeout_ms, c->n_reqs);
	}
	conn_free(c);
}

/* ---- requests in flight ---- */

struct dreq *
conn_req_find(struct conn *c, uint64_t id)
{
	struct dreq *d;

	TAILQ_FOREACH(d, &c->reqs, entry)
		if (d->id == id)
			return d;
	return NULL;
}

struct dreq *
conn_req_new(struct conn *c, uint64_t id, enum proto_msg type)
{
	struct dreq *d;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->conn = c;
	d->id = id;
	d->type = type;
	d->state = DREQ_NONE;
	d->start = srv_now();
	TAILQ_INSERT_TAIL(&c->reqs, d, entry);
	c->n_reqs++;
	return d;
}

void
conn_req_end(struct dreq *d)
{
	struct conn *c = d->conn;

	TAILQ_REMOVE(&c->reqs, d, entry);
	c->n_reqs--;
	c->srv->requests++;
	if (d->state == DREQ_HELD) {
		TAILQ_REMOVE(&c->user->held, d, model_entry);
		c->user->n_held--;
		d->state = DREQ_NONE;
	}
	if (d->counted)
		c->user->n_active--;
	srv_changed(c->srv);
	reg_detach(d);
	proto_request_free(&d->req);
	free(d);
}
