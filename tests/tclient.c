/*
 * tclient.c - a tiny blocking client of hearthd for the test suites
 * (see tclient.h).
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto.h"
#include "tclient.h"

int
timeout_scale(void)
{
	const char *s = getenv("CK_TIMEOUT_MULTIPLIER");
	int k = s != NULL ? atoi(s) : 1;

	return k >= 1 ? k : 1;
}

int
tc_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}


int
tc_open_raw_at(struct tc *c, const char *path)
{
	memset(c, 0, sizeof(*c));
	if ((c->fd = tc_connect(path)) < 0)
		return c->fd;
	proto_limits_default(&c->l);
	c->next_id = 1;
	if (proto_reader_new(PROTO_MAX_FRAME_DEFAULT, &c->rd) != 0) {
		close(c->fd);
		return -ENOMEM;
	}
	return 0;
}

void
tc_close(struct tc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	proto_reader_free(c->rd);
	c->rd = NULL;
}

int
tc_write(struct tc *c, const void *p, size_t len)
{
	return proto_write_all(c->fd, p, len);
}

/* Pack and send r (an id is given when r->id is 0); the id or -errno. */
int64_t
tc_send(struct tc *c, struct proto_request *r)
{
	struct proto_err e;
	struct proto_buf b;
	int rc;

	if (r->id == 0)
		r->id = c->next_id++;
	proto_buf_init(&b);
	if ((rc = proto_pack_request(&b, r, &c->l, &e)) < 0) {
		fprintf(stderr, "pack: %s\n", e.msg);
		return rc;
	}
	rc = tc_write(c, b.data, b.len);
	proto_buf_free(&b);
	return rc < 0 ? rc : (int64_t)r->id;
}

/*
 * The next response: 1, 0 at end of file, -ETIMEDOUT, or another
 * negative errno (a broken frame).
 */
int
tc_recv(struct tc *c, struct proto_response *out, int timeout_ms)
{
	struct pollfd pfd = { c->fd, POLLIN, 0 };
	const uint8_t *body;
	struct proto_err e;
	size_t len;
	ssize_t n;
	int r;

	for (;;) {
		r = proto_reader_next(c->rd, &body, &len, &e);
		if (r == 1) {
			r = proto_unpack_response(body, len, &c->l, out, &e);
			if (r < 0)
				fprintf(stderr, "unpack: %s\n", e.msg);
			return r < 0 ? r : 1;
		}
		if (r < 0)
			return r;
		r = poll(&pfd, 1, timeout_ms);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0)
			return -errno;
		n = proto_reader_read(c->rd, c->fd, &e);
		if (n == 0)
			return 0;
		if (n < 0)
			return (int)n;
	}
}

/* Receive one response, which must come. */
void
tc_must_recv(struct tc *c, struct proto_response *out)
{
	int r = tc_recv(c, out, TIMEOUT_MS);

	ck_assert_msg(r == 1, "no response (%d: %s)", r, strerror(-r));
}

void
tc_expect_error(struct tc *c, uint64_t id, enum proto_code code,
    const char *needle)
{
	struct proto_response resp;

	tc_must_recv(c, &resp);
	ck_assert_msg(resp.type == PROTO_MSG_ERROR, "expected an error, got %s",
	    proto_msg_name(resp.type));
	ck_assert_uint_eq(resp.id, id);
	ck_assert_msg(resp.u.error.code == code, "code %s (%s), want %s",
	    proto_code_name(resp.u.error.code), resp.u.error.message,
	    proto_code_name(code));
	if (needle != NULL)
		ck_assert_msg(strstr(resp.u.error.message, needle) != NULL,
		    "'%s' not in '%s'", needle, resp.u.error.message);
	proto_response_free(&resp);
}

/* A REPLY to request id of type t; the caller frees it. */
void
tc_expect_reply(struct tc *c, uint64_t id, enum proto_msg t,
    struct proto_response *resp)
{
	tc_must_recv(c, resp);
	ck_assert_msg(resp->type == PROTO_MSG_REPLY, "expected a reply, got "
	    "%s%s%s", proto_msg_name(resp->type),
	    resp->type == PROTO_MSG_ERROR ? ": " : "",
	    resp->type == PROTO_MSG_ERROR ? resp->u.error.message : "");
	ck_assert_uint_eq(resp->id, id);
	ck_assert_int_eq(resp->request, t);
}

void
tc_open_at(struct tc *c, const char *path)
{
	struct proto_request r;
	struct proto_response resp;
	int64_t id;

	ck_assert_int_eq(tc_open_raw_at(c, path), 0);
	proto_request_init(&r, PROTO_MSG_HELLO, 0);
	r.u.hello.version = PROTO_VERSION;
	r.u.hello.client = "check_daemon";
	ck_assert_int_gt(id = tc_send(c, &r), 0);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_HELLO, &resp);
	proto_response_free(&resp);
}

int64_t
tc_simple(struct tc *c, enum proto_msg type, const char *model)
{
	struct proto_request r;

	proto_request_init(&r, type, 0);
	if (model != NULL)
		r.u.show.model = model;	/* shared by the model requests */
	switch (type) {
	case PROTO_MSG_LOAD:
		r.u.load.model = model;
		break;
	case PROTO_MSG_UNLOAD:
		r.u.unload.model = model;
		break;
	default:
		break;
	}
	return tc_send(c, &r);
}

void
tc_ping(struct tc *c)
{
	struct proto_response resp;
	int64_t id = tc_simple(c, PROTO_MSG_PING, NULL);

	ck_assert_int_gt(id, 0);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_PING, &resp);
	proto_response_free(&resp);
}

/* A generate request, greedy unless temperature >= 0 is given. */
int64_t
tc_generate(struct tc *c, const char *model, const char *prompt,
    int32_t max_tokens, bool stream)
{
	struct proto_request r;

	proto_request_init(&r, PROTO_MSG_GENERATE, 0);
	r.u.generate.model = model;
	r.u.generate.input.text = prompt;
	r.u.generate.input.text_len = strlen(prompt);
	r.u.generate.opts.max_tokens = max_tokens;
	r.u.generate.opts.stream = stream;
	r.u.generate.opts.sampling.set = PROTO_S_TEMPERATURE;
	r.u.generate.opts.sampling.temperature = 0;
	return tc_send(c, &r);
}


/*
 * Collect the events of request id up to its end (or max_events token
 * events when > 0). No ck_assert: usable from threads. 0 at the end,
 * 1 stopped early, -1 on a surprise (g->fail says which).
 */
int
tc_collect(struct tc *c, uint64_t id, struct gen *g, uint32_t max_events)
{
	struct proto_response resp;
	uint32_t events = 0;
	int r;

	for (;;) {
		if ((r = tc_recv(c, &resp, TIMEOUT_MS)) != 1) {
			g->fail = r == 0 ? 1 : r;
			return -1;
		}
		if (resp.id != id) {
			g->fail = 2;
			proto_response_free(&resp);
			return -1;
		}
		switch (resp.type) {
		case PROTO_MSG_TOKEN:
			if (g->n < MAX_GEN)
				g->ids[g->n++] = resp.u.token.token;
			if (g->len + resp.u.token.text_len < sizeof(g->text)) {
				memcpy(g->text + g->len, resp.u.token.text,
				    resp.u.token.text_len);
				g->len += resp.u.token.text_len;
				g->text[g->len] = '\0';
			}
			if (resp.u.token.thinking)
				g->n_thinking++;
			proto_response_free(&resp);
			if (max_events > 0 && ++events >= max_events)
				return 1;
			continue;
		case PROTO_MSG_DONE:
			g->done = true;
			g->reason = resp.u.done.reason;
			g->prompt_tokens = resp.u.done.prompt_tokens;
			g->cached_tokens = resp.u.done.cached_tokens;
			g->generated_tokens = resp.u.done.generated_tokens;
			if (resp.u.done.text != NULL &&
			    resp.u.done.text_len < sizeof(g->done_text)) {
				memcpy(g->done_text, resp.u.done.text,
				    resp.u.done.text_len);
				g->done_len = resp.u.done.text_len;
				g->done_text[g->done_len] = '\0';
			}
			proto_response_free(&resp);
			return 0;
		case PROTO_MSG_ERROR:
			g->error = resp.u.error.code;
			snprintf(g->msg, sizeof(g->msg), "%s",
			    resp.u.error.message);
			proto_response_free(&resp);
			return 0;
		default:
			g->fail = 3;
			proto_response_free(&resp);
			return -1;
		}
	}
}

struct gen *
gen_new(void)
{
	struct gen *g = calloc(1, sizeof(*g));

	ck_assert_ptr_nonnull(g);
	return g;
}

