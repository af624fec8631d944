/*
 * libhearth.c - the client library of hearthd (include/hearth.h).
 *
 * One handle is one blocking Unix socket plus a pipe that
 * hearth_interrupt() writes to, so a call waiting in poll(2) wakes up.
 * Requests are packed and responses decoded by proto/ against the
 * limits the server announced in its hello reply. Calls run one at a
 * time on a handle: each request gets the next id and its call reads
 * until that request has ended; frames of other ids (late answers of
 * interrupted calls, replies to cancels) are dropped. A failure of the
 * connection itself (end of file, a bad frame, an id-0 error) breaks
 * the handle for good.
 *
 * Nothing here logs, aborts, raises SIGPIPE or keeps global state.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hearth.h"
#include "proto.h"

#define H_CLIENT	"libhearth " HEARTH_VERSION_STRING
#define H_KEEP_BUF	(64u << 10)	/* output buffer kept between calls */

struct hearth {
	int			 fd;		/* the socket */
	int			 wake[2];	/* interrupt pipe: read, write */
	atomic_int		 interrupted;	/* hearth_interrupt() pending */
	struct proto_reader	*rd;		/* incoming frames */
	struct proto_buf	 out;		/* the frame being sent */
	struct proto_limits	 limits;	/* the server's */
	uint64_t		 next_id;	/* id of the next request */
	int			 broken;	/* 0, or what broke the connection */
	uint32_t		 protocol;	/* the server's protocol version */
	char			 server[PROTO_MAX_LABEL + 1]; /* its name */
	char			 code[32];	/* server code of the last error */
	char			 msg[HEARTH_ERRMSG_MAX]; /* the last error */
	char			 broken_msg[HEARTH_ERRMSG_MAX]; /* why broken */
};

/* ---- errors ---- */

static const char *
h_strerror(int rc, char *buf, size_t size)
{
	return strerror_r(rc < 0 ? -rc : rc, buf, size);
}

static int
h_verr(struct hearth *h, int rc, const char *fmt, va_list ap)
{
	h->code[0] = '\0';
	vsnprintf(h->msg, sizeof(h->msg), fmt, ap);
	return rc;
}

/* A local failure: rc with a message, no server code. */
static int __attribute__((format(printf, 3, 4)))
h_err(struct hearth *h, int rc, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	h_verr(h, rc, fmt, ap);
	va_end(ap);
	return rc;
}

/* The errno a server error code maps to (see hearth.h). */
static int
h_code_rc(enum proto_code code)
{
	switch (code) {
	case PROTO_E_BAD_REQUEST:
		return -EINVAL;
	case PROTO_E_NOT_FOUND:
		return -ENOENT;
	case PROTO_E_TOO_LARGE:
		return -EMSGSIZE;
	case PROTO_E_BUSY:
		return -EBUSY;
	case PROTO_E_DENIED:
		return -EACCES;
	case PROTO_E_MODEL_ERROR:
		return -EIO;
	default:
		return -EREMOTEIO;
	}
}

/* The server refused: "code: message", and the code kept. */
static int
h_server_err(struct hearth *h, enum proto_code code, const char *message)
{
	const char	*name = proto_code_name(code);

	if (name == NULL)
		name = "internal";
	snprintf(h->code, sizeof(h->code), "%s", name);
	snprintf(h->msg, sizeof(h->msg), "%s: %s", name,
	    message != NULL && *message != '\0' ? message : "(no message)");
	return h_code_rc(code);
}

/* The connection is unusable from now on. */
static int __attribute__((format(printf, 3, 4)))
h_break(struct hearth *h, int rc, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	h_verr(h, rc, fmt, ap);
	va_end(ap);
	h->broken = rc;
	memcpy(h->broken_msg, h->msg, sizeof(h->broken_msg));
	return rc;
}

/* A connection-level error from the server, in h->msg and h->code. */
static int
h_break_server(struct hearth *h, int rc)
{
	memcpy(h->broken_msg, h->msg, sizeof(h->broken_msg));
	h->broken = rc;
	return rc;
}

static int
h_broken(struct hearth *h)
{
	h->code[0] = '\0';
	snprintf(h->msg, sizeof(h->msg), "connection to hearthd lost: %.1200s",
	    h->broken_msg);
	return -ENOTCONN;
}

static void
h_seterr(struct hearth_error *err, int rc, const char *code, const char *msg)
{
	if (err == NULL)
		return;
	err->rc = rc;
	snprintf(err->code, sizeof(err->code), "%s", code);
	snprintf(err->message, sizeof(err->message), "%s", msg);
}

/* ---- interrupts ---- */

static void
h_drain(struct hearth *h)
{
	char	 buf[64];

	while (read(h->wake[0], buf, sizeof(buf)) > 0)
		;
}

/* Consume a pending interrupt: true if there was one. */
static bool
h_take_interrupt(struct hearth *h)
{
	if (atomic_exchange(&h->interrupted, 0) == 0)
		return false;
	h_drain(h);
	return true;
}

void
hearth_interrupt(struct hearth *h)
{
	int	 saved = errno;
	ssize_t	 n;

	if (h == NULL)
		return;
	atomic_store(&h->interrupted, 1);
	n = write(h->wake[1], "", 1);	/* full pipe: a wakeup is pending */
	(void)n;
	errno = saved;
}

/* ---- frames ---- */

static int
h_send(struct hearth *h, const struct proto_request *r)
{
	struct proto_err e;
	char		 eb[128];
	int		 rc;

	if (h->broken)
		return h_broken(h);
	memset(&e, 0, sizeof(e));
	h->out.len = 0;
	rc = proto_pack_request(&h->out, r, &h->limits, &e);
	if (rc < 0) {
		if (rc == -ENOMEM)
			return h_err(h, rc, "out of memory");
		return h_err(h, rc, "%s", e.msg);
	}
	rc = proto_write_all(h->fd, h->out.data, h->out.len);
	if (h->out.cap > H_KEEP_BUF)
		proto_buf_free(&h->out);
	h->out.len = 0;
	if (rc < 0)
		return h_break(h, rc == -EPIPE ? -ECONNRESET : rc,
		    "sending to hearthd: %s", h_strerror(rc, eb, sizeof(eb)));
	return 0;
}

/*
 * The next response of any id into *resp (the caller frees it): 0, 1
 * when interrupted, or a negative errno (the connection is broken).
 */
static int
h_recv(struct hearth *h, struct proto_response *resp)
{
	struct proto_err e;
	struct pollfd	 pfd[2];
	const uint8_t	*body;
	size_t		 len;
	ssize_t		 n;
	char		 eb[128];
	int		 rc;

	if (h->broken)
		return h_broken(h);
	for (;;) {
		/* an interrupt comes before frames already buffered */
		if (h_take_interrupt(h))
			return 1;
		memset(&e, 0, sizeof(e));
		rc = proto_reader_next(h->rd, &body, &len, &e);
		if (rc < 0)
			return h_break(h, -EPROTO, "bad frame from hearthd: %s",
			    e.msg);
		if (rc == 1) {
			rc = proto_unpack_response(body, len, &h->limits, resp,
			    &e);
			if (rc == -ENOMEM)
				return h_break(h, rc, "out of memory");
			if (rc < 0)
				return h_break(h, -EPROTO,
				    "bad message from hearthd: %s", e.msg);
			if (resp->type == PROTO_MSG_ERROR && resp->id == 0) {
				/* about the connection: it is over */
				rc = h_server_err(h, resp->u.error.code,
				    resp->u.error.message);
				proto_response_free(resp);
				return h_break_server(h, rc);
			}
			return 0;
		}
		pfd[0].fd = h->fd;
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = h->wake[0];
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			return h_break(h, rc, "poll: %s",
			    h_strerror(rc, eb, sizeof(eb)));
		}
		if (pfd[1].revents != 0) {
			/* the flag was set before the byte: the loop sees it */
			h_drain(h);
			continue;
		}
		if (pfd[0].revents == 0)
			continue;
		n = proto_reader_read(h->rd, h->fd, &e);
		if (n == 0) {
			if (proto_reader_pending(h->rd) > 0)
				return h_break(h, -ECONNRESET, "hearthd closed "
				    "the connection in the middle of a message");
			return h_break(h, -ECONNRESET,
			    "hearthd closed the connection");
		}
		if (n == -EMSGSIZE || n == -EBADMSG)
			return h_break(h, -EPROTO, "bad frame from hearthd: %s",
			    e.msg);
		if (n == -ENOMEM)
			return h_break(h, -ENOMEM, "out of memory");
		if (n < 0)
			return h_break(h, (int)n, "reading from hearthd: %s",
			    h_strerror((int)n, eb, sizeof(eb)));
	}
}

/* The next response of request id (others are dropped): as h_recv. */
static int
h_wait(struct hearth *h, uint64_t id, struct proto_response *resp)
{
	int	 rc;

	for (;;) {
		if ((rc = h_recv(h, resp)) != 0)
			return rc;
		if (resp->id == id)
			return 0;
		proto_response_free(resp);
	}
}

/* Ask the server to cancel request id; its answer is dropped later. */
static void
h_cancel(struct hearth *h, uint64_t id)
{
	struct proto_request	 r;
	char			 msg[HEARTH_ERRMSG_MAX];
	char			 code[sizeof(h->code)];

	memcpy(msg, h->msg, sizeof(msg));
	memcpy(code, h->code, sizeof(code));
	proto_request_init(&r, PROTO_MSG_CANCEL, h->next_id++);
	r.u.cancel.target = id;
	if (h_send(h, &r) == 0) {
		/* keep the message of the call; a failure breaks h anyway */
		memcpy(h->msg, msg, sizeof(msg));
		memcpy(h->code, code, sizeof(code));
	}
}

/* Start a call: a broken handle or a pending interrupt ends it here. */
static int
h_begin(struct hearth *h)
{
	if (h == NULL)
		return -EINVAL;
	h->msg[0] = '\0';
	h->code[0] = '\0';
	if (h->broken)
		return h_broken(h);
	if (h_take_interrupt(h))
		return h_err(h, -ECANCELED, "interrupted");
	return 0;
}

static int
h_unexpected(struct hearth *h, const struct proto_request *req,
    const struct proto_response *resp)
{
	const char	*got = proto_msg_name(resp->type);

	if (resp->type == PROTO_MSG_REPLY)
		return h_break(h, -EPROTO, "hearthd answered a %s request with "
		    "a %s reply", proto_msg_name(req->type),
		    proto_msg_name(resp->request));
	return h_break(h, -EPROTO, "hearthd answered a %s request with a %s "
	    "message", proto_msg_name(req->type), got != NULL ? got : "?");
}

/*
 * Send req (its id is assigned here) and wait for its reply into *resp
 * (freed by the caller on success). Progress events go to progress.
 */
static int
h_call(struct hearth *h, struct proto_request *req,
    struct proto_response *resp, hearth_progress_fn progress, void *arg)
{
	int	 rc;

	req->id = h->next_id++;
	if ((rc = h_send(h, req)) < 0)
		return rc;
	for (;;) {
		memset(resp, 0, sizeof(*resp));
		if ((rc = h_wait(h, req->id, resp)) < 0)
			return rc;
		if (rc == 1) {
			h_cancel(h, req->id);
			return h_err(h, -ECANCELED, "interrupted");
		}
		switch (resp->type) {
		case PROTO_MSG_REPLY:
			if (resp->request == req->type)
				return 0;
			break;
		case PROTO_MSG_ERROR:
			rc = h_server_err(h, resp->u.error.code,
			    resp->u.error.message);
			proto_response_free(resp);
			return rc;
		case PROTO_MSG_PROGRESS:
			if (req->type != PROTO_MSG_LOAD)
				break;
			rc = 0;
			if (progress != NULL)
				rc = progress(arg, resp->u.progress.done,
				    resp->u.progress.total);
			proto_response_free(resp);
			if (rc != 0) {
				h_cancel(h, req->id);
				return h_err(h, -ECANCELED, "load cancelled");
			}
			continue;
		default:
			break;
		}
		rc = h_unexpected(h, req, resp);
		proto_response_free(resp);
		return rc;
	}
}

/* ---- connections ---- */

static int
h_new(int fd, struct hearth **out)
{
	struct hearth	*h;
	int		 rc;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return -ENOMEM;
	h->fd = fd;
	atomic_init(&h->interrupted, 0);
	proto_buf_init(&h->out);
	proto_limits_default(&h->limits);
	h->next_id = 1;
	if (pipe2(h->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = -errno;
		free(h);
		return rc;
	}
	if ((rc = proto_reader_new(h->limits.max_frame, &h->rd)) < 0) {
		close(h->wake[0]);
		close(h->wake[1]);
		free(h);
		return rc;
	}
	*out = h;
	return 0;
}

void
hearth_close(struct hearth *h)
{
	if (h == NULL)
		return;
	if (h->fd >= 0)
		close(h->fd);
	close(h->wake[0]);
	close(h->wake[1]);
	proto_reader_free(h->rd);
	proto_buf_free(&h->out);
	free(h);
}

/* hello: version, server name and limits, adopted. */
static int
h_hello(struct hearth *h, const char *client)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	struct proto_hello_reply *hr = &resp.u.hello;
	struct proto_err	 e;
	char			 why[HEARTH_ERRMSG_MAX];
	int			 rc;

	memset(&e, 0, sizeof(e));
	proto_request_init(&req, PROTO_MSG_HELLO, 0);
	req.u.hello.client = client != NULL ? client : H_CLIENT;
	rc = h_call(h, &req, &resp, NULL, NULL);
	if (rc == -EINVAL && h->code[0] != '\0') {
		/* the server refuses our hello: a version it does not speak */
		memcpy(why, h->msg, sizeof(why));
		h_err(h, -EPROTONOSUPPORT, "hearthd refused the connection: "
		    "%.1200s", why);
		snprintf(h->code, sizeof(h->code), "bad_request");
		return -EPROTONOSUPPORT;
	}
	if (rc < 0)
		return rc;
	if ((rc = proto_check_version(hr->version, &e)) < 0) {
		proto_response_free(&resp);
		return h_break(h, -EPROTONOSUPPORT, "%s", e.msg);
	}
	if ((rc = proto_limits_check(&hr->limits, &e)) < 0 ||
	    (rc = proto_reader_set_max(h->rd, hr->limits.max_frame)) < 0) {
		proto_response_free(&resp);
		return h_break(h, -EPROTO, "hearthd announced bad limits: %s",
		    e.msg);
	}
	h->limits = hr->limits;
	h->protocol = hr->version;
	snprintf(h->server, sizeof(h->server), "%s",
	    hr->server != NULL ? hr->server : "");
	proto_response_free(&resp);
	return 0;
}

int
hearth_connect_fd(int fd, const char *client, struct hearth **out,
    struct hearth_error *err)
{
	struct hearth	*h = NULL;
	int		 rc;

	if (fd < 0 || out == NULL) {
		if (fd >= 0)
			close(fd);
		h_seterr(err, -EINVAL, "", "hearth_connect_fd: bad arguments");
		return -EINVAL;
	}
	if ((rc = h_new(fd, &h)) < 0) {
		close(fd);
		h_seterr(err, rc, "", rc == -ENOMEM ? "out of memory" :
		    "cannot create a pipe");
		return rc;
	}
	if ((rc = h_hello(h, client)) < 0) {
		h_seterr(err, rc, h->code, h->msg);
		hearth_close(h);
		return rc;
	}
	h->msg[0] = '\0';
	*out = h;
	return 0;
}

/* Connect a new socket to path: the fd or a negative errno. */
static int
h_dial(const char *path)
{
	struct sockaddr_un	 sun;
	struct pollfd		 pfd;
	socklen_t		 sl;
	int			 fd, rc, soerr;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		return fd;
	rc = -errno;
	if (rc == -EINTR) {
		/* the connection goes on: wait for its outcome */
		pfd.fd = fd;
		pfd.events = POLLOUT;
		while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
			;
		soerr = 0;
		sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
		    soerr == 0)
			return fd;
		rc = soerr != 0 ? -soerr : -ECONNREFUSED;
	}
	close(fd);
	return rc;
}

static void
h_dial_err(struct hearth_error *err, int rc, const char *path,
    const char *also)
{
	char	 msg[HEARTH_ERRMSG_MAX], eb[128];

	snprintf(msg, sizeof(msg), "cannot connect to hearthd at %s%s%s%s: "
	    "%s%s", path, also != NULL ? " (nor at " : "",
	    also != NULL ? also : "", also != NULL ? ")" : "",
	    h_strerror(rc, eb, sizeof(eb)),
	    rc == -ENOENT || rc == -ECONNREFUSED ?
	    " (is hearthd running?)" : "");
	h_seterr(err, rc, "", msg);
}

int
hearth_connect(const char *path, const char *client, struct hearth **out,
    struct hearth_error *err)
{
	char		 user[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
	const char	*env, *also = NULL;
	int		 fd, rc;

	if (out == NULL) {
		h_seterr(err, -EINVAL, "", "hearth_connect: no output");
		return -EINVAL;
	}
	if (path == NULL && (env = getenv("HEARTH_SOCKET")) != NULL &&
	    *env != '\0')
		path = env;
	if (path == NULL && (env = getenv("XDG_RUNTIME_DIR")) != NULL &&
	    *env == '/') {
		if ((size_t)snprintf(user, sizeof(user), "%s/%s", env,
		    HEARTH_SOCKET_USER) < sizeof(user)) {
			path = user;
			also = HEARTH_SOCKET_SYSTEM;
		}
	}
	if (path == NULL)
		path = HEARTH_SOCKET_SYSTEM;
	if (*path == '\0') {
		h_seterr(err, -EINVAL, "", "empty socket path");
		return -EINVAL;
	}
	fd = h_dial(path);
	if (fd < 0 && also != NULL && (fd == -ENOENT || fd == -ECONNREFUSED)) {
		/* no user daemon: the system's */
		rc = h_dial(also);
		if (rc >= 0)
			fd = rc;
	} else
		also = NULL;
	if (fd < 0) {
		h_dial_err(err, fd, path, also);
		return fd;
	}
	return hearth_connect_fd(fd, client, out, err);
}

const char *
hearth_errmsg(const struct hearth *h)
{
	return h != NULL ? h->msg : "no connection";
}

const char *
hearth_errcode(const struct hearth *h)
{
	return h != NULL && h->code[0] != '\0' ? h->code : NULL;
}

const char *
hearth_server(const struct hearth *h)
{
	return h != NULL ? h->server : "";
}

uint32_t
hearth_server_protocol(const struct hearth *h)
{
	return h != NULL ? h->protocol : 0;
}

void
hearth_limits(const struct hearth *h, struct hearth_limits *out)
{
	struct proto_limits	 def;
	const struct proto_limits *l;

	if (out == NULL)
		return;
	proto_limits_default(&def);
	l = h != NULL ? &h->limits : &def;
	out->max_frame = l->max_frame;
	out->max_objects = l->max_objects;
	out->max_text = l->max_text;
	out->max_ids = l->max_ids;
	out->max_stop = l->max_stop;
	out->max_stop_len = l->max_stop_len;
	out->max_messages = l->max_messages;
	out->max_items = l->max_items;
}

int
hearth_fd(const struct hearth *h)
{
	return h != NULL ? h->fd : -1;
}

void
hearth_free(void *p)
{
	free(p);
}

/* ---- output blocks: one allocation with strings at the end ---- */

struct blk {
	char	*p;	/* the block */
	size_t	 off;	/* where the next string goes */
};

static size_t
blk_len(const char *s)
{
	return (s != NULL ? strlen(s) : 0) + 1;
}

static const char *
blk_str(struct blk *b, const char *s, size_t len)
{
	char	*d = b->p + b->off;

	if (s != NULL && len > 0)
		memcpy(d, s, len);
	d[len] = '\0';
	b->off += len + 1;
	return d;
}

static const char *
blk_cstr(struct blk *b, const char *s)
{
	return blk_str(b, s, s != NULL ? strlen(s) : 0);
}

/* Round up to the alignment of any scalar. */
static size_t
blk_align(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

/* ---- arguments ---- */

static int
h_model(struct hearth *h, const char *model)
{
	if (model == NULL)
		return h_err(h, -EINVAL, "no model name");
	return 0;
}

static size_t
h_len(const char *s, size_t len)
{
	return len == 0 && s != NULL ? strlen(s) : len;
}

static int
h_input(struct hearth *h, const struct hearth_input *in,
    struct proto_input *out)
{
	static const int32_t	 none[1];

	if (in == NULL)
		return h_err(h, -EINVAL, "no input");
	memset(out, 0, sizeof(*out));
	if (in->text != NULL) {
		out->text = in->text;
		out->text_len = h_len(in->text, in->text_len);
		return 0;
	}
	if (in->ids == NULL && in->n_ids > 0)
		return h_err(h, -EINVAL, "no text and no token ids");
	if (in->n_ids > h->limits.max_ids)
		return h_err(h, -EMSGSIZE, "%zu token ids, over the limit of "
		    "%u", in->n_ids, h->limits.max_ids);
	out->ids = in->ids != NULL ? in->ids : none;
	out->n_ids = (uint32_t)in->n_ids;
	return 0;
}

/* ---- models ---- */

int
hearth_list(struct hearth *h, struct hearth_model **models, size_t *n)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	struct proto_list_reply	*lr = &resp.u.list;
	struct hearth_model	*m;
	struct blk		 b;
	size_t			 size, i;
	int			 rc;

	if ((rc = h_begin(h)) < 0)
		return rc;
	if (models == NULL || n == NULL)
		return h_err(h, -EINVAL, "list: no output");
	proto_request_init(&req, PROTO_MSG_LIST, 0);
	if ((rc = h_call(h, &req, &resp, NULL, NULL)) < 0)
		return rc;
	size = blk_align(lr->n_models * sizeof(*m));
	for (i = 0; i < lr->n_models; i++)
		size += blk_len(lr->models[i].name) +
		    blk_len(lr->models[i].arch) +
		    blk_len(lr->models[i].quant) +
		    blk_len(lr->models[i].license);
	if ((b.p = malloc(size > 0 ? size : 1)) == NULL) {
		proto_response_free(&resp);
		return h_err(h, -ENOMEM, "out of memory");
	}
	m = (struct hearth_model *)(void *)b.p;
	b.off = blk_align(lr->n_models * sizeof(*m));
	for (i = 0; i < lr->n_models; i++) {
		const struct proto_model_info *pm = &lr->models[i];

		m[i].name = blk_cstr(&b, pm->name);
		m[i].size = pm->size;
		m[i].arch = blk_cstr(&b, pm->arch);
		m[i].quant = blk_cstr(&b, pm->quant);
		m[i].params = pm->params;
		m[i].license = blk_cstr(&b, pm->license);
		m[i].resident = pm->resident;
	}
	*n = lr->n_models;
	*models = m;
	proto_response_free(&resp);
	return 0;
}

int
hearth_show(struct hearth *h, const char *model, struct hearth_meta **meta,
    size_t *n)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	struct proto_show_reply	*sr = &resp.u.show;
	struct hearth_meta	*m;
	struct blk		 b;
	size_t			 size, i;
	int			 rc;

	if ((rc = h_begin(h)) < 0 || (rc = h_model(h, model)) < 0)
		return rc;
	if (meta == NULL || n == NULL)
		return h_err(h, -EINVAL, "show: no output");
	proto_request_init(&req, PROTO_MSG_SHOW, 0);
	req.u.show.model = model;
	if ((rc = h_call(h, &req, &resp, NULL, NULL)) < 0)
		return rc;
	size = blk_align(sr->n_meta * sizeof(*m));
	for (i = 0; i < sr->n_meta; i++)
		size += blk_len(sr->meta[i].key) + sr->meta[i].s_len + 1 +
		    blk_len(sr->meta[i].elem);
	if ((b.p = malloc(size > 0 ? size : 1)) == NULL) {
		proto_response_free(&resp);
		return h_err(h, -ENOMEM, "out of memory");
	}
	m = (struct hearth_meta *)(void *)b.p;
	b.off = blk_align(sr->n_meta * sizeof(*m));
	for (i = 0; i < sr->n_meta; i++) {
		const struct proto_meta *pm = &sr->meta[i];

		memset(&m[i], 0, sizeof(m[i]));
		m[i].key = blk_cstr(&b, pm->key);
		m[i].type = (enum hearth_meta_type)pm->type;
		m[i].b = pm->b;
		m[i].i = pm->i;
		m[i].u = pm->u;
		m[i].f = pm->f;
		m[i].s = blk_str(&b, pm->s, pm->s != NULL ? pm->s_len : 0);
		m[i].s_len = pm->s != NULL ? pm->s_len : 0;
		m[i].elem = blk_cstr(&b, pm->elem);
		m[i].n = pm->n;
	}
	*n = sr->n_meta;
	*meta = m;
	proto_response_free(&resp);
	return 0;
}

int
hearth_load(struct hearth *h, const char *model, int64_t keep_alive,
    hearth_progress_fn progress, void *arg, struct hearth_load_info *info)
{
	return hearth_load_ex(h, model, keep_alive, 0, progress, arg, info);
}

int
hearth_load_ex(struct hearth *h, const char *model, int64_t keep_alive,
    unsigned flags, hearth_progress_fn progress, void *arg,
    struct hearth_load_info *info)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	static const enum proto_numa numa_of[] = { PROTO_NUMA_AUTO,
	    PROTO_NUMA_AUTO, PROTO_NUMA_LOCAL, PROTO_NUMA_INTERLEAVE,
	    PROTO_NUMA_REPLICATE };	/* by HEARTH_LOAD_NUMA_* >> 8 */
	unsigned		 numa = (flags & HEARTH_LOAD_NUMA_MASK) >> 8;
	int			 rc;

	if ((rc = h_begin(h)) < 0 || (rc = h_model(h, model)) < 0)
		return rc;
	if ((flags & ~(HEARTH_LOAD_PIN | HEARTH_LOAD_UNPIN |
	    HEARTH_LOAD_NUMA_MASK)) != 0 ||
	    (flags & HEARTH_LOAD_PIN && flags & HEARTH_LOAD_UNPIN) ||
	    numa >= sizeof(numa_of) / sizeof(numa_of[0]))
		return h_err(h, -EINVAL, "load: bad flags 0x%x", flags);
	proto_request_init(&req, PROTO_MSG_LOAD, 0);
	req.u.load.model = model;
	if (keep_alive != HEARTH_KEEP_ALIVE_DEFAULT) {
		req.u.load.has_keep_alive = true;
		req.u.load.keep_alive = keep_alive;
	}
	if ((flags & (HEARTH_LOAD_PIN | HEARTH_LOAD_UNPIN)) != 0) {
		req.u.load.has_pin = true;
		req.u.load.pin = (flags & HEARTH_LOAD_PIN) != 0;
	}
	if (numa != 0) {
		req.u.load.has_numa = true;
		req.u.load.numa = numa_of[numa];
	}
	if ((rc = h_call(h, &req, &resp, progress, arg)) < 0)
		return rc;
	if (info != NULL) {
		info->memory = resp.u.load.memory;
		info->ms = resp.u.load.ms;
	}
	proto_response_free(&resp);
	return 0;
}

int
hearth_unload(struct hearth *h, const char *model)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	int			 rc;

	if ((rc = h_begin(h)) < 0 || (rc = h_model(h, model)) < 0)
		return rc;
	proto_request_init(&req, PROTO_MSG_UNLOAD, 0);
	req.u.unload.model = model;
	if ((rc = h_call(h, &req, &resp, NULL, NULL)) < 0)
		return rc;
	proto_response_free(&resp);
	return 0;
}

int
hearth_ps(struct hearth *h, struct hearth_ps_entry **models, size_t *n)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	struct proto_ps_reply	*pr = &resp.u.ps;
	struct hearth_ps_entry	*m;
	struct blk		 b;
	size_t			 size, i;
	int			 rc;

	if ((rc = h_begin(h)) < 0)
		return rc;
	if (models == NULL || n == NULL)
		return h_err(h, -EINVAL, "ps: no output");
	proto_request_init(&req, PROTO_MSG_PS, 0);
	if ((rc = h_call(h, &req, &resp, NULL, NULL)) < 0)
		return rc;
	size = blk_align(pr->n_models * sizeof(*m));
	for (i = 0; i < pr->n_models; i++)
		size += blk_len(pr->models[i].name) +
		    blk_len(pr->models[i].hugepages) +
		    blk_len(pr->models[i].placement);
	if ((b.p = malloc(size > 0 ? size : 1)) == NULL) {
		proto_response_free(&resp);
		return h_err(h, -ENOMEM, "out of memory");
	}
	m = (struct hearth_ps_entry *)(void *)b.p;
	b.off = blk_align(pr->n_models * sizeof(*m));
	for (i = 0; i < pr->n_models; i++) {
		const struct proto_ps_entry *pe = &pr->models[i];

		m[i].name = blk_cstr(&b, pe->name);
		m[i].memory = pe->memory;
		m[i].hugepages = blk_cstr(&b, pe->hugepages);
		m[i].clients = pe->clients;
		m[i].tokens = pe->tokens;
		m[i].keep_alive = pe->keep_alive;
		m[i].weights = pe->weights;
		m[i].kv = pe->kv;
		m[i].scratch = pe->scratch;
		m[i].bytes_1g = pe->bytes_1g;
		m[i].bytes_2m = pe->bytes_2m;
		m[i].bytes_thp = pe->bytes_thp;
		m[i].bytes_small = pe->bytes_small;
		m[i].pinned = pe->pinned;
		m[i].placement = blk_cstr(&b, pe->placement);
	}
	*n = pr->n_models;
	*models = m;
	proto_response_free(&resp);
	return 0;
}

int
hearth_stats(struct hearth *h, struct hearth_stats *out)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	struct proto_stats_reply *sr = &resp.u.stats;
	int			 rc;

	if ((rc = h_begin(h)) < 0)
		return rc;
	if (out == NULL)
		return h_err(h, -EINVAL, "stats: no output");
	proto_request_init(&req, PROTO_MSG_STATS, 0);
	if ((rc = h_call(h, &req, &resp, NULL, NULL)) < 0)
		return rc;
	out->uptime = sr->uptime;
	out->connections = sr->connections;
	out->requests = sr->requests;
	out->prompt_tokens = sr->prompt_tokens;
	out->generated_tokens = sr->generated_tokens;
	out->models = sr->models;
	out->memory = sr->memory;
	out->budget = sr->budget;
	out->weights = sr->weights;
	out->kv = sr->kv;
	out->scratch = sr->scratch;
	proto_response_free(&resp);
	return 0;
}

int
hearth_ping(struct hearth *h)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	int			 rc;

	if ((rc = h_begin(h)) < 0)
		return rc;
	proto_request_init(&req, PROTO_MSG_PING, 0);
	if ((rc = h_call(h, &req, &resp, NULL, NULL)) < 0)
		return rc;
	proto_response_free(&resp);
	return 0;
}

/* ---- tokens ---- */

int
hearth_tokenize(struct hearth *h, const char *model, const char *text,
    size_t len, bool add_bos, bool special, int32_t **ids, size_t *n)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	struct proto_tokenize_reply *tr = &resp.u.tokenize;
	int32_t			*v;
	int			 rc;

	if ((rc = h_begin(h)) < 0 || (rc = h_model(h, model)) < 0)
		return rc;
	if (text == NULL || ids == NULL || n == NULL)
		return h_err(h, -EINVAL, "tokenize: no text or no output");
	proto_request_init(&req, PROTO_MSG_TOKENIZE, 0);
	req.u.tokenize.model = model;
	req.u.tokenize.text = text;
	req.u.tokenize.text_len = h_len(text, len);
	req.u.tokenize.add_bos = add_bos;
	req.u.tokenize.special = special;
	if ((rc = h_call(h, &req, &resp, NULL, NULL)) < 0)
		return rc;
	if ((v = malloc(tr->n_ids * sizeof(*v) + 1)) == NULL) {
		proto_response_free(&resp);
		return h_err(h, -ENOMEM, "out of memory");
	}
	if (tr->n_ids > 0)
		memcpy(v, tr->ids, tr->n_ids * sizeof(*v));
	*ids = v;
	*n = tr->n_ids;
	proto_response_free(&resp);
	return 0;
}

int
hearth_detokenize(struct hearth *h, const char *model, const int32_t *ids,
    size_t n, bool special, char **text, size_t *len)
{
	static const int32_t	 none[1];
	struct proto_request	 req;
	struct proto_response	 resp;
	struct proto_detokenize_reply *dr = &resp.u.detokenize;
	char			*t;
	int			 rc;

	if ((rc = h_begin(h)) < 0 || (rc = h_model(h, model)) < 0)
		return rc;
	if ((ids == NULL && n > 0) || text == NULL)
		return h_err(h, -EINVAL, "detokenize: no ids or no output");
	if (n > h->limits.max_ids)
		return h_err(h, -EMSGSIZE, "%zu token ids, over the limit of "
		    "%u", n, h->limits.max_ids);
	proto_request_init(&req, PROTO_MSG_DETOKENIZE, 0);
	req.u.detokenize.model = model;
	req.u.detokenize.ids = ids != NULL ? ids : none;
	req.u.detokenize.n_ids = (uint32_t)n;
	req.u.detokenize.special = special;
	if ((rc = h_call(h, &req, &resp, NULL, NULL)) < 0)
		return rc;
	if ((t = malloc(dr->text_len + 1)) == NULL) {
		proto_response_free(&resp);
		return h_err(h, -ENOMEM, "out of memory");
	}
	if (dr->text_len > 0)
		memcpy(t, dr->text, dr->text_len);
	t[dr->text_len] = '\0';
	*text = t;
	if (len != NULL)
		*len = dr->text_len;
	proto_response_free(&resp);
	return 0;
}

int
hearth_embed(struct hearth *h, const char *model,
    const struct hearth_input *in, struct hearth_embedding **out)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	struct proto_embed_reply *er = &resp.u.embed;
	struct hearth_embedding	*e;
	int			 rc;

	if ((rc = h_begin(h)) < 0 || (rc = h_model(h, model)) < 0)
		return rc;
	if (out == NULL)
		return h_err(h, -EINVAL, "embed: no output");
	proto_request_init(&req, PROTO_MSG_EMBED, 0);
	req.u.embed.model = model;
	if ((rc = h_input(h, in, &req.u.embed.input)) < 0)
		return rc;
	if ((rc = h_call(h, &req, &resp, NULL, NULL)) < 0)
		return rc;
	e = malloc(blk_align(sizeof(*e)) + er->n * sizeof(float));
	if (e == NULL) {
		proto_response_free(&resp);
		return h_err(h, -ENOMEM, "out of memory");
	}
	e->values = (float *)(void *)((char *)e + blk_align(sizeof(*e)));
	e->n = er->n;
	e->tokens = er->tokens;
	if (er->n > 0)
		memcpy(e->values, er->embedding, er->n * sizeof(float));
	*out = e;
	proto_response_free(&resp);
	return 0;
}

int
hearth_eval(struct hearth *h, const char *model,
    const struct hearth_input *in, uint32_t top, bool add_bos,
    struct hearth_eval **out)
{
	struct proto_request	 req;
	struct proto_response	 resp;
	struct proto_eval_reply	*er = &resp.u.eval;
	struct hearth_eval	*ev;
	size_t			 npos, ntop;
	char			*p;
	int			 rc;

	if ((rc = h_begin(h)) < 0 || (rc = h_model(h, model)) < 0)
		return rc;
	if (out == NULL)
		return h_err(h, -EINVAL, "eval: no output");
	proto_request_init(&req, PROTO_MSG_EVAL, 0);
	req.u.eval.model = model;
	req.u.eval.top = top;
	req.u.eval.add_bos = add_bos;
	if ((rc = h_input(h, in, &req.u.eval.input)) < 0)
		return rc;
	if ((rc = h_call(h, &req, &resp, NULL, NULL)) < 0)
		return rc;
	npos = er->n_tokens > 0 ? er->n_tokens - 1 : 0;
	ntop = npos * er->top;
	p = malloc(blk_align(sizeof(*ev)) + (er->n_tokens + npos + 2 * ntop) *
	    4);
	if (p == NULL) {
		proto_response_free(&resp);
		return h_err(h, -ENOMEM, "out of memory");
	}
	ev = (struct hearth_eval *)(void *)p;
	p += blk_align(sizeof(*ev));
	ev->tokens = (int32_t *)(void *)p;
	ev->n_tokens = er->n_tokens;
	ev->logprobs = (float *)(void *)(ev->tokens + er->n_tokens);
	ev->top = er->top;
	ev->top_ids = (int32_t *)(void *)(ev->logprobs + npos);
	ev->top_logprobs = (float *)(void *)(ev->top_ids + ntop);
	if (er->n_tokens > 0)
		memcpy(ev->tokens, er->tokens, er->n_tokens * 4);
	if (npos > 0)
		memcpy(ev->logprobs, er->logprobs, npos * 4);
	if (ntop > 0) {
		memcpy(ev->top_ids, er->top_ids, ntop * 4);
		memcpy(ev->top_logprobs, er->top_logprobs, ntop * 4);
	}
	*out = ev;
	proto_response_free(&resp);
	return 0;
}

/* ---- generation ---- */

void
hearth_gen_params_default(struct hearth_gen_params *p)
{
	if (p == NULL)
		return;
	memset(p, 0, sizeof(*p));
	p->temperature = NAN;
	p->top_k = HEARTH_DEFAULT;
	p->top_p = NAN;
	p->min_p = NAN;
	p->repeat_penalty = NAN;
	p->presence_penalty = NAN;
	p->frequency_penalty = NAN;
	p->penalty_last_n = HEARTH_DEFAULT;
	p->has_seed = false;
	p->max_tokens = -1;
	p->stream = true;
	p->keep_alive = HEARTH_KEEP_ALIVE_DEFAULT;
	p->thinking = HEARTH_THINKING_DEFAULT;
	p->template_name = NULL;
}

void
hearth_done_clear(struct hearth_done *done)
{
	if (done == NULL)
		return;
	free(done->text);
	free(done->thinking);
	done->text = NULL;
	done->text_len = 0;
	done->thinking = NULL;
	done->thinking_len = 0;
}

const char *
hearth_reason_name(enum hearth_reason r)
{
	const char	*s = proto_reason_name((enum proto_reason)r);

	return s != NULL && r != 0 ? s : "?";
}

static void
h_opts(const struct hearth_gen_params *p, struct proto_gen_opts *o)
{
	struct proto_sampling	*s = &o->sampling;

	s->set = 0;
#define F(field, bit) do {						\
	if (!isnan(p->field)) {						\
		s->field = p->field;					\
		s->set |= (bit);					\
	}								\
} while (0)
	F(temperature, PROTO_S_TEMPERATURE);
	F(top_p, PROTO_S_TOP_P);
	F(min_p, PROTO_S_MIN_P);
	F(repeat_penalty, PROTO_S_REPEAT_PENALTY);
	F(presence_penalty, PROTO_S_PRESENCE_PENALTY);
	F(frequency_penalty, PROTO_S_FREQUENCY_PENALTY);
#undef F
	if (p->top_k != HEARTH_DEFAULT) {
		s->top_k = p->top_k;
		s->set |= PROTO_S_TOP_K;
	}
	if (p->penalty_last_n != HEARTH_DEFAULT) {
		s->penalty_last_n = p->penalty_last_n;
		s->set |= PROTO_S_PENALTY_LAST_N;
	}
	if (p->has_seed) {
		s->seed = p->seed;
		s->set |= PROTO_S_SEED;
	}
	o->max_tokens = p->max_tokens < 0 ? -1 : p->max_tokens;
	o->stop = (const char **)p->stop;
	o->n_stop = (uint32_t)p->n_stop;
	o->top_logprobs = p->top_logprobs;
	o->stream = p->stream;
	if (p->keep_alive != HEARTH_KEEP_ALIVE_DEFAULT) {
		o->has_keep_alive = true;
		o->keep_alive = p->keep_alive;
	}
}

static int
h_check_params(struct hearth *h, const struct hearth_gen_params *p)
{
	if (p->n_stop > h->limits.max_stop)
		return h_err(h, -EMSGSIZE, "%zu stop strings, over the limit "
		    "of %u", p->n_stop, h->limits.max_stop);
	if (p->n_stop > 0 && p->stop == NULL)
		return h_err(h, -EINVAL, "no stop strings");
	if (p->thinking != HEARTH_THINKING_DEFAULT &&
	    p->thinking != HEARTH_THINKING_ON &&
	    p->thinking != HEARTH_THINKING_OFF)
		return h_err(h, -EINVAL, "bad thinking value %d",
		    (int)p->thinking);
	return 0;
}

static int
h_done(struct hearth *h, const struct proto_done *pd, struct hearth_done *done)
{
	struct hearth_done	 d;

	memset(&d, 0, sizeof(d));
	d.reason = (enum hearth_reason)pd->reason;
	d.prompt_tokens = pd->prompt_tokens;
	d.cached_tokens = pd->cached_tokens;
	d.generated_tokens = pd->generated_tokens;
	d.prefill_ms = pd->prefill_ms;
	d.decode_ms = pd->decode_ms;
	if (done != NULL && pd->text != NULL) {
		if ((d.text = malloc(pd->text_len + 1)) == NULL)
			return h_err(h, -ENOMEM, "out of memory");
		memcpy(d.text, pd->text, pd->text_len);
		d.text[pd->text_len] = '\0';
		d.text_len = pd->text_len;
	}
	if (done != NULL && pd->thinking != NULL) {
		if ((d.thinking = malloc(pd->thinking_len + 1)) == NULL) {
			free(d.text);
			return h_err(h, -ENOMEM, "out of memory");
		}
		memcpy(d.thinking, pd->thinking, pd->thinking_len);
		d.thinking[pd->thinking_len] = '\0';
		d.thinking_len = pd->thinking_len;
	}
	if (done != NULL)
		*done = d;
	if (pd->reason == PROTO_REASON_ERROR)
		return h_server_err(h, pd->error_code != PROTO_E_NONE ?
		    pd->error_code : PROTO_E_INTERNAL, pd->error_message);
	return 0;
}

/* Send a generate or chat and stream it to cb until its done event. */
static int
h_stream(struct hearth *h, struct proto_request *req, hearth_token_fn cb,
    void *arg, struct hearth_done *done)
{
	struct proto_response	 resp;
	struct hearth_token	 t;
	const struct proto_token *pt;
	bool			 cancelled = false;
	int			 rc;

	req->id = h->next_id++;
	if ((rc = h_send(h, req)) < 0)
		return rc;
	for (;;) {
		memset(&resp, 0, sizeof(resp));
		if ((rc = h_wait(h, req->id, &resp)) < 0)
			return rc;
		if (rc == 1) {
			if (cancelled)	/* again: stop waiting */
				return h_err(h, -ECANCELED, "interrupted");
			h_cancel(h, req->id);
			cancelled = true;
			continue;
		}
		switch (resp.type) {
		case PROTO_MSG_TOKEN:
			pt = &resp.u.token;
			if (cancelled || cb == NULL)
				break;
			t.text = pt->text != NULL ? pt->text : "";
			t.text_len = pt->text != NULL ? pt->text_len : 0;
			t.id = pt->token;
			t.thinking = pt->thinking;
			t.has_logprob = pt->has_logprob;
			t.logprob = pt->logprob;
			t.top_ids = pt->top_ids;
			t.top_logprobs = pt->top_logprobs;
			t.n_top = pt->n_top;
			if (cb(arg, &t) != 0) {
				h_cancel(h, req->id);
				cancelled = true;
			}
			break;
		case PROTO_MSG_DONE:
			rc = h_done(h, &resp.u.done, done);
			proto_response_free(&resp);
			return rc;
		case PROTO_MSG_ERROR:
			rc = h_server_err(h, resp.u.error.code,
			    resp.u.error.message);
			proto_response_free(&resp);
			return rc;
		default:
			rc = h_unexpected(h, req, &resp);
			proto_response_free(&resp);
			return rc;
		}
		proto_response_free(&resp);
	}
}

int
hearth_generate(struct hearth *h, const char *model,
    const struct hearth_input *prompt, const struct hearth_gen_params *p,
    hearth_token_fn cb, void *arg, struct hearth_done *done)
{
	struct hearth_gen_params def;
	struct proto_request	 req;
	int			 rc;

	if ((rc = h_begin(h)) < 0 || (rc = h_model(h, model)) < 0)
		return rc;
	if (p == NULL) {
		hearth_gen_params_default(&def);
		p = &def;
	}
	if ((rc = h_check_params(h, p)) < 0)
		return rc;
	proto_request_init(&req, PROTO_MSG_GENERATE, 0);
	req.u.generate.model = model;
	if ((rc = h_input(h, prompt, &req.u.generate.input)) < 0)
		return rc;
	h_opts(p, &req.u.generate.opts);
	return h_stream(h, &req, cb, arg, done);
}

/* Messages into proto's (a malloc'd array the caller frees). */
static int
h_messages(struct hearth *h, const struct hearth_message *messages, size_t n,
    struct proto_message **out)
{
	struct proto_message	*pm;
	size_t			 i;

	if (messages == NULL && n > 0)
		return h_err(h, -EINVAL, "no messages");
	if (n > h->limits.max_messages)
		return h_err(h, -EMSGSIZE, "%zu messages, over the limit of "
		    "%u", n, h->limits.max_messages);
	if ((pm = calloc(n > 0 ? n : 1, sizeof(*pm))) == NULL)
		return h_err(h, -ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		if (messages[i].role == NULL || messages[i].content == NULL) {
			free(pm);
			return h_err(h, -EINVAL, "message %zu: no role or no "
			    "content", i);
		}
		pm[i].role = messages[i].role;
		pm[i].content = messages[i].content;
		pm[i].content_len = h_len(messages[i].content,
		    messages[i].content_len);
	}
	*out = pm;
	return 0;
}

static int
h_chat_req(struct hearth *h, enum proto_msg type, const char *model,
    const struct hearth_message *messages, size_t n,
    const struct hearth_gen_params *p, struct proto_request *req,
    struct proto_message **pm)
{
	int	 rc;

	if ((rc = h_model(h, model)) < 0 || (rc = h_check_params(h, p)) < 0)
		return rc;
	if ((rc = h_messages(h, messages, n, pm)) < 0)
		return rc;
	proto_request_init(req, type, 0);
	req->u.chat.model = model;
	req->u.chat.messages = *pm;
	req->u.chat.n_messages = (uint32_t)n;
	req->u.chat.thinking = p->thinking == HEARTH_THINKING_ON ?
	    PROTO_THINK_ON : p->thinking == HEARTH_THINKING_OFF ?
	    PROTO_THINK_OFF : PROTO_THINK_DEFAULT;
	req->u.chat.template = p->template_name;
	if (type == PROTO_MSG_CHAT)
		h_opts(p, &req->u.chat.opts);
	return 0;
}

int
hearth_chat(struct hearth *h, const char *model,
    const struct hearth_message *messages, size_t n,
    const struct hearth_gen_params *p, hearth_token_fn cb, void *arg,
    struct hearth_done *done)
{
	struct hearth_gen_params def;
	struct proto_request	 req;
	struct proto_message	*pm = NULL;
	int			 rc;

	if ((rc = h_begin(h)) < 0)
		return rc;
	if (p == NULL) {
		hearth_gen_params_default(&def);
		p = &def;
	}
	rc = h_chat_req(h, PROTO_MSG_CHAT, model, messages, n, p, &req, &pm);
	if (rc < 0)
		return rc;
	rc = h_stream(h, &req, cb, arg, done);
	free(pm);
	return rc;
}

int
hearth_render(struct hearth *h, const char *model,
    const struct hearth_message *messages, size_t n,
    const struct hearth_gen_params *p, struct hearth_rendered **out)
{
	struct hearth_gen_params def;
	struct proto_request	 req;
	struct proto_response	 resp;
	struct proto_render_reply *rr = &resp.u.render;
	struct proto_message	*pm = NULL;
	struct hearth_rendered	*r;
	struct blk		 b;
	int			 rc;

	if ((rc = h_begin(h)) < 0)
		return rc;
	if (out == NULL)
		return h_err(h, -EINVAL, "render: no output");
	if (p == NULL) {
		hearth_gen_params_default(&def);
		p = &def;
	}
	rc = h_chat_req(h, PROTO_MSG_RENDER, model, messages, n, p, &req, &pm);
	if (rc < 0)
		return rc;
	rc = h_call(h, &req, &resp, NULL, NULL);
	free(pm);
	if (rc < 0)
		return rc;
	b.p = malloc(blk_align(sizeof(*r)) + rr->prompt_len + 1 +
	    blk_len(rr->template));
	if (b.p == NULL) {
		proto_response_free(&resp);
		return h_err(h, -ENOMEM, "out of memory");
	}
	r = (struct hearth_rendered *)(void *)b.p;
	b.off = blk_align(sizeof(*r));
	r->prompt = (char *)blk_str(&b, rr->prompt, rr->prompt_len);
	r->prompt_len = rr->prompt_len;
	r->template_name = (char *)blk_cstr(&b, rr->template);
	*out = r;
	proto_response_free(&resp);
	return 0;
}
