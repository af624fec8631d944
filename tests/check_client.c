/*
 * check_client.c - libhearth and the hearth command.
 *
 * "fake": libhearth against a scripted server on a socketpair that
 * speaks proto/ (every call and its conversions, limits adopted from
 * hello, cancel from the callback and from hearth_interrupt, late
 * answers dropped, a server that goes away, breaks the protocol or
 * speaks another version). "core"/"errors"/"cli": a real hearthd from
 * $HEARTH_BUILDDIR on a temporary socket with generated models (and
 * aidreams260K when HEARTH_TESTDATA is set), driven through libhearth
 * and through the CLI in shell pipelines.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <jansson.h>

#include "hearth.h"
#include "mkmodel_lib.h"
#include "proto.h"
#include "tclient.h"
#include "testutil.h"

/* The known greedy continuation of "Echoes" (testdata README). */
#define ECHOES_TEXT " of probability unfold, as I sense the slowly of " \
	"vectors. Contrast emerge, a flower, as I settle into a tapestry of prob"
static const int32_t echoes_prompt[] = { 1, 388, 355, 260 };
static const int32_t echoes_ids[60] = {
	275, 280, 302, 450, 405, 403, 399, 327, 446, 299, 303, 266, 358, 430,
	312, 266, 438, 349, 438, 451, 275, 429, 339, 315, 374, 448, 429, 465,
	265, 434, 317, 431, 434, 289, 408, 326, 446, 262, 279, 438, 349, 261,
	446, 299, 303, 266, 323, 434, 285, 362, 262, 263, 428, 434, 436, 451,
	275, 280, 302, 450
};

/* snprintf that must fit (paths built from the temporary directory). */
static void __attribute__((format(printf, 3, 4)))
xsnprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	ck_assert_msg(n >= 0 && (size_t)n < size, "path too long: %s", buf);
}

/* ---- the fake server ---- */

#define F_BAD_VERSION	(1u << 0)	/* hello reply of version 99 */
#define F_REFUSE_HELLO	(1u << 1)	/* hello gets bad_request */
#define F_SMALL_LIMITS	(1u << 2)	/* max_text 1024, max_ids 16 */
#define F_WAIT_CANCEL	(1u << 3)	/* generate: 2 tokens, wait cancel */
#define F_CLOSE_MID	(1u << 4)	/* generate: 1 token, then close */
#define F_GARBAGE	(1u << 5)	/* ping: a frame that is not msgpack */
#define F_CONN_ERROR	(1u << 6)	/* ping: an id-0 error */
#define F_STALE		(1u << 7)	/* ping: first other ids' frames */
#define F_SLOW		(1u << 8)	/* first ping: wait for a cancel,
					   then answer it late */
#define F_DONE_ERROR	(1u << 9)	/* generate: done with an error */
#define F_HUGE_FRAME	(1u << 10)	/* ping: a header over max_frame */

#define FAKE_MAX_REQ	64

struct fake {
	int			 fd;		/* server end */
	unsigned		 mode;		/* F_* */
	pthread_t		 thr;
	struct proto_limits	 limits;	/* announced and used */
	bool			 failed;	/* the fake itself went wrong */
	int			 n_req;		/* requests seen, hello included */
	enum proto_msg		 types[FAKE_MAX_REQ];
	uint64_t		 ids[FAKE_MAX_REQ];
	uint64_t		 cancel_target;	/* of the last cancel */
	char			 client[PROTO_MAX_LABEL + 1];
	/* the last generate or chat */
	struct proto_sampling	 sampling;
	int32_t			 max_tokens;
	uint32_t		 n_stop;
	char			 stop0[64];
	uint32_t		 top_logprobs;
	bool			 stream;
	bool			 has_keep_alive;
	int64_t			 keep_alive;
	enum proto_thinking	 thinking;
	char			 tmpl[PROTO_MAX_IDENT + 1];
	uint32_t		 n_messages;
	bool			 special;	/* tokenize/detokenize */
	uint32_t		 pin_log;	/* loads, base 3, last lowest:
						 * 0 no pin, 1 unpin, 2 pin */
	struct proto_reader	*rd;
};

static void
fake_send(struct fake *f, const struct proto_response *r)
{
	struct proto_buf b;
	struct proto_err e;

	proto_buf_init(&b);
	if (proto_pack_response(&b, r, &f->limits, &e) < 0) {
		fprintf(stderr, "fake: pack %d: %s\n", r->type, e.msg);
		f->failed = true;
	} else
		(void)proto_write_all(f->fd, b.data, b.len);
	proto_buf_free(&b);
}

static void
fake_error(struct fake *f, uint64_t id, enum proto_code code, const char *m)
{
	struct proto_buf b;

	proto_buf_init(&b);
	if (proto_pack_error(&b, id, code, m) < 0)
		f->failed = true;
	else
		(void)proto_write_all(f->fd, b.data, b.len);
	proto_buf_free(&b);
}

/* Next request: 1, 0 at end of file, -1 on a broken stream. */
static int
fake_next(struct fake *f, struct proto_request *req)
{
	struct proto_err e;
	const uint8_t	*body;
	size_t		 len;
	ssize_t		 n;
	int		 rc;

	for (;;) {
		rc = proto_reader_next(f->rd, &body, &len, &e);
		if (rc < 0)
			return -1;
		if (rc == 1) {
			if (proto_unpack_request(body, len, &f->limits, req,
			    &e) < 0) {
				fprintf(stderr, "fake: bad request: %s\n",
				    e.msg);
				f->failed = true;
				return -1;
			}
			if (f->n_req < FAKE_MAX_REQ) {
				f->types[f->n_req] = req->type;
				f->ids[f->n_req] = req->id;
			}
			f->n_req++;
			if (req->type == PROTO_MSG_CANCEL)
				f->cancel_target = req->u.cancel.target;
			return 1;
		}
		n = proto_reader_read(f->rd, f->fd, &e);
		if (n <= 0)
			return n == 0 ? 0 : -1;
	}
}

static void
fake_token(struct fake *f, uint64_t id, const char *text, int32_t tok,
    bool thinking, uint32_t top)
{
	static const int32_t	 ids[3] = { 11, 12, 13 };
	static const float	 lps[3] = { -0.25f, -1.5f, -3.0f };
	struct proto_response	 r;

	proto_response_init(&r, PROTO_MSG_TOKEN, id);
	r.u.token.text = text;
	r.u.token.text_len = strlen(text);
	r.u.token.token = tok;
	r.u.token.thinking = thinking;
	if (top > 0) {
		r.u.token.has_logprob = true;
		r.u.token.logprob = -0.25f;
		r.u.token.top_ids = ids;
		r.u.token.top_logprobs = lps;
		r.u.token.n_top = top < 3 ? top : 3;
	}
	fake_send(f, &r);
}

static void
fake_done(struct fake *f, uint64_t id, enum proto_reason reason,
    const char *text, const char *thinking)
{
	struct proto_response	 r;

	proto_response_init(&r, PROTO_MSG_DONE, id);
	r.u.done.reason = reason;
	r.u.done.prompt_tokens = 4;
	r.u.done.cached_tokens = 1;
	r.u.done.generated_tokens = 3;
	r.u.done.prefill_ms = 1.5;
	r.u.done.decode_ms = 2.5;
	if (text != NULL) {
		r.u.done.text = text;
		r.u.done.text_len = strlen(text);
		r.u.done.thinking = thinking;
		r.u.done.thinking_len = strlen(thinking);
	}
	if (reason == PROTO_REASON_ERROR) {
		r.u.done.error_code = PROTO_E_MODEL_ERROR;
		r.u.done.error_message = "the model fell over";
	}
	fake_send(f, &r);
}

static void
fake_generate(struct fake *f, const struct proto_request *req)
{
	const struct proto_gen_opts *o = req->type == PROTO_MSG_GENERATE ?
	    &req->u.generate.opts : &req->u.chat.opts;
	struct proto_request	 next;
	struct proto_response	 r;
	uint64_t		 id = req->id;

	f->sampling = o->sampling;
	f->max_tokens = o->max_tokens;
	f->n_stop = o->n_stop;
	if (o->n_stop > 0)
		snprintf(f->stop0, sizeof(f->stop0), "%s", o->stop[0]);
	f->top_logprobs = o->top_logprobs;
	f->stream = o->stream;
	f->has_keep_alive = o->has_keep_alive;
	f->keep_alive = o->keep_alive;
	if (req->type == PROTO_MSG_CHAT) {
		f->thinking = req->u.chat.thinking;
		f->n_messages = req->u.chat.n_messages;
		snprintf(f->tmpl, sizeof(f->tmpl), "%s",
		    req->u.chat.template != NULL ? req->u.chat.template : "");
	}
	if (req->type == PROTO_MSG_GENERATE &&
	    strcmp(req->u.generate.model, "nope") == 0) {
		fake_error(f, id, PROTO_E_NOT_FOUND, "no model named 'nope'");
		return;
	}
	if (f->mode & F_DONE_ERROR) {
		fake_token(f, id, "x", 5, false, 0);
		fake_done(f, id, PROTO_REASON_ERROR, NULL, NULL);
		return;
	}
	if (f->mode & F_CLOSE_MID) {
		fake_token(f, id, "x", 5, false, 0);
		shutdown(f->fd, SHUT_RDWR);
		return;
	}
	if (!o->stream) {
		fake_done(f, id, PROTO_REASON_EOS, "Hello world", "think");
		return;
	}
	fake_token(f, id, "think", 10, true, o->top_logprobs);
	fake_token(f, id, "Hello", 11, false, o->top_logprobs);
	if (f->mode & F_WAIT_CANCEL) {
		if (fake_next(f, &next) != 1)
			return;
		if (next.type == PROTO_MSG_CANCEL &&
		    next.u.cancel.target == id) {
			proto_response_init(&r, PROTO_MSG_REPLY, next.id);
			r.request = PROTO_MSG_CANCEL;
			r.u.cancel.found = true;
			fake_send(f, &r);
			/* one more in flight: the client must not show it */
			fake_token(f, id, " late", 14, false, 0);
			fake_done(f, id, PROTO_REASON_CANCELLED, NULL, NULL);
		} else
			f->failed = true;
		proto_request_free(&next);
		return;
	}
	fake_token(f, id, " world", 12, false, o->top_logprobs);
	fake_done(f, id, PROTO_REASON_MAX_TOKENS, NULL, NULL);
}

static void
fake_reply(struct fake *f, const struct proto_request *req)
{
	static const struct proto_model_info models[2] = {
		{ "alpha", 1000, "llama", "F32", 260000, "MIT", true },
		{ "beta", 5, "", "", 0, "", false },
	};
	static const struct proto_ps_entry ps[1] = {
		{ "alpha", 4096, "thp", 2, 77, -1, 2048, 1536, 512, 0,
		    2097152, 4096, 8192, true, "local: one node" },
	};
	struct proto_meta	 meta[6];
	struct proto_response	 r;
	struct proto_request	 next;
	int32_t			 ids[64];
	char			 text[64];
	float			 emb[2] = { 0.6f, 0.8f };
	float			 lps[8], tl[16];
	int32_t			 ti[16];
	size_t			 i, n;
	char			 prompt[256];

	proto_response_init(&r, PROTO_MSG_REPLY, req->id);
	r.request = req->type;
	switch (req->type) {
	case PROTO_MSG_LIST:
		r.u.list.models = models;
		r.u.list.n_models = 2;
		break;
	case PROTO_MSG_SHOW:
		if (strcmp(req->u.show.model, "nope") == 0) {
			fake_error(f, req->id, PROTO_E_NOT_FOUND,
			    "no model named 'nope'");
			return;
		}
		memset(meta, 0, sizeof(meta));
		meta[0].key = "general.architecture";
		meta[0].type = PROTO_META_STR;
		meta[0].s = "llama";
		meta[0].s_len = 5;
		meta[1].key = "llama.context_length";
		meta[1].type = PROTO_META_UINT;
		meta[1].u = 512;
		meta[2].key = "x.neg";
		meta[2].type = PROTO_META_INT;
		meta[2].i = -3;
		meta[3].key = "x.f";
		meta[3].type = PROTO_META_FLOAT;
		meta[3].f = 0.5;
		meta[4].key = "x.b";
		meta[4].type = PROTO_META_BOOL;
		meta[4].b = true;
		meta[5].key = "tokenizer.ggml.tokens";
		meta[5].type = PROTO_META_ARRAY;
		meta[5].elem = "string";
		meta[5].n = 512;
		r.u.show.model = req->u.show.model;
		r.u.show.meta = meta;
		r.u.show.n_meta = 6;
		break;
	case PROTO_MSG_LOAD: {
		struct proto_response p;

		for (i = 0; i <= 2; i++) {
			proto_response_init(&p, PROTO_MSG_PROGRESS, req->id);
			p.u.progress.done = i * 50;
			p.u.progress.total = 100;
			fake_send(f, &p);
		}
		f->has_keep_alive = req->u.load.has_keep_alive;
		f->keep_alive = req->u.load.keep_alive;
		f->pin_log = f->pin_log * 3 + (req->u.load.has_pin ?
		    1u + req->u.load.pin : 0);
		r.u.load.model = req->u.load.model;
		r.u.load.memory = 4096;
		r.u.load.ms = 1.5;
		break;
	}
	case PROTO_MSG_PS:
		r.u.ps.models = ps;
		r.u.ps.n_models = 1;
		break;
	case PROTO_MSG_STATS:
		r.u.stats.uptime = 10;
		r.u.stats.connections = 1;
		r.u.stats.requests = 2;
		r.u.stats.prompt_tokens = 3;
		r.u.stats.generated_tokens = 4;
		r.u.stats.models = 5;
		r.u.stats.memory = 6;
		r.u.stats.budget = 7ull << 30;
		r.u.stats.weights = 3;
		r.u.stats.kv = 2;
		r.u.stats.scratch = 1;
		break;
	case PROTO_MSG_TOKENIZE:
		/* BOS 1, then byte + 3 */
		n = 0;
		f->special = req->u.tokenize.special;
		if (req->u.tokenize.add_bos)
			ids[n++] = 1;
		for (i = 0; i < req->u.tokenize.text_len && n < 64; i++)
			ids[n++] = (unsigned char)req->u.tokenize.text[i] + 3;
		r.u.tokenize.ids = ids;
		r.u.tokenize.n_ids = (uint32_t)n;
		break;
	case PROTO_MSG_DETOKENIZE:
		n = 0;
		f->special = req->u.detokenize.special;
		for (i = 0; i < req->u.detokenize.n_ids && n < 63; i++)
			if (req->u.detokenize.ids[i] >= 3)
				text[n++] = (char)(req->u.detokenize.ids[i] - 3);
		r.u.detokenize.text = text;
		r.u.detokenize.text_len = n;
		break;
	case PROTO_MSG_EMBED:
		r.u.embed.embedding = emb;
		r.u.embed.n = 2;
		r.u.embed.tokens = req->u.embed.input.text != NULL ?
		    (uint32_t)req->u.embed.input.text_len :
		    req->u.embed.input.n_ids;
		break;
	case PROTO_MSG_EVAL:
		/* ids as given (at most 8), top alternatives of id + k */
		n = req->u.eval.input.n_ids < 8 ? req->u.eval.input.n_ids : 8;
		for (i = 0; i < n; i++)
			ids[i] = req->u.eval.input.ids[i];
		for (i = 0; i + 1 < n; i++)
			lps[i] = -0.5f * (float)(i + 1);
		for (i = 0; i + 1 < n && req->u.eval.top == 2; i++) {
			ti[2 * i] = ids[i + 1];
			ti[2 * i + 1] = ids[i + 1] + 1;
			tl[2 * i] = lps[i];
			tl[2 * i + 1] = lps[i] - 1;
		}
		r.u.eval.tokens = ids;
		r.u.eval.n_tokens = (uint32_t)n;
		r.u.eval.logprobs = lps;
		r.u.eval.top = req->u.eval.top == 2 ? 2 : 0;
		r.u.eval.top_ids = ti;
		r.u.eval.top_logprobs = tl;
		break;
	case PROTO_MSG_RENDER:
		prompt[0] = '\0';
		for (i = 0; i < req->u.chat.n_messages; i++) {
			strncat(prompt, req->u.chat.messages[i].role, 40);
			strcat(prompt, ":");
			strncat(prompt, req->u.chat.messages[i].content, 40);
			strcat(prompt, "\n");
		}
		f->thinking = req->u.chat.thinking;
		r.u.render.prompt = prompt;
		r.u.render.prompt_len = strlen(prompt);
		r.u.render.template = req->u.chat.template != NULL ?
		    req->u.chat.template : "chatml";
		break;
	case PROTO_MSG_CANCEL:
		r.u.cancel.found = false;
		break;
	case PROTO_MSG_PING:
		if (f->mode & F_GARBAGE) {
			static const uint8_t bad[] = { 0, 0, 0, 2, 0xc1, 0xc1 };

			(void)proto_write_all(f->fd, bad, sizeof(bad));
			return;
		}
		if (f->mode & F_HUGE_FRAME) {
			static const uint8_t big[] = { 0x7f, 0, 0, 0, 0x80 };

			(void)proto_write_all(f->fd, big, sizeof(big));
			return;
		}
		if (f->mode & F_CONN_ERROR) {
			fake_error(f, 0, PROTO_E_INTERNAL, "shutting down");
			return;
		}
		if (f->mode & F_STALE) {
			struct proto_response s;

			proto_response_init(&s, PROTO_MSG_REPLY, 999);
			s.request = PROTO_MSG_PING;
			fake_send(f, &s);
			fake_token(f, 998, "stale", 3, false, 0);
			fake_error(f, 997, PROTO_E_BUSY, "stale");
		}
		if (f->mode & F_SLOW) {
			f->mode &= ~F_SLOW;
			if (fake_next(f, &next) != 1)
				return;
			if (next.type != PROTO_MSG_CANCEL ||
			    next.u.cancel.target != req->id)
				f->failed = true;
			fake_send(f, &r);	/* the late answer */
			proto_response_init(&r, PROTO_MSG_REPLY, next.id);
			proto_request_free(&next);
			r.request = PROTO_MSG_CANCEL;
			r.u.cancel.found = false;
		}
		break;
	default:
		break;
	}
	fake_send(f, &r);
}

static void *
fake_main(void *arg)
{
	struct fake		*f = arg;
	struct proto_request	 req;
	struct proto_response	 r;
	int			 rc;

	while ((rc = fake_next(f, &req)) == 1) {
		if (req.type == PROTO_MSG_HELLO) {
			snprintf(f->client, sizeof(f->client), "%s",
			    req.u.hello.client);
			if (f->mode & F_REFUSE_HELLO) {
				fake_error(f, req.id, PROTO_E_BAD_REQUEST,
				    "protocol version 1 is not 7");
				proto_request_free(&req);
				continue;
			}
			proto_response_init(&r, PROTO_MSG_REPLY, req.id);
			r.request = PROTO_MSG_HELLO;
			r.u.hello.version = f->mode & F_BAD_VERSION ? 99 :
			    PROTO_VERSION;
			r.u.hello.server = "fake 1.0";
			r.u.hello.limits = f->limits;
			fake_send(f, &r);
		} else if (req.type == PROTO_MSG_GENERATE ||
		    req.type == PROTO_MSG_CHAT)
			fake_generate(f, &req);
		else
			fake_reply(f, &req);
		proto_request_free(&req);
	}
	close(f->fd);
	f->fd = -1;
	return NULL;
}

/* A fake on one end of a socketpair; the other end is returned. */
static int
fake_start(struct fake *f, unsigned mode)
{
	int	 sv[2];

	memset(f, 0, sizeof(*f));
	f->mode = mode;
	proto_limits_default(&f->limits);
	if (mode & F_SMALL_LIMITS) {
		f->limits.max_text = 1024;
		f->limits.max_ids = 16;
		f->limits.max_stop = 2;
		f->limits.max_messages = 2;
	}
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
	    sv), 0);
	f->fd = sv[0];
	ck_assert_int_eq(proto_reader_new(f->limits.max_frame, &f->rd), 0);
	ck_assert_int_eq(pthread_create(&f->thr, NULL, fake_main, f), 0);
	return sv[1];
}

static void
fake_join(struct fake *f)
{
	pthread_join(f->thr, NULL);
	proto_reader_free(f->rd);
	ck_assert_msg(!f->failed, "the fake server saw something wrong");
}

static struct hearth *
fake_connect(struct fake *f, unsigned mode)
{
	struct hearth_error	 err;
	struct hearth		*h = NULL;
	int			 rc;

	rc = hearth_connect_fd(fake_start(f, mode), "check", &h, &err);
	ck_assert_msg(rc == 0, "connect: %d %s", rc, err.message);
	ck_assert_ptr_nonnull(h);
	return h;
}

/* ---- fake: tests ---- */

START_TEST(test_fake_hello)
{
	struct fake		 f;
	struct hearth		*h;
	struct hearth_limits	 l;

	h = fake_connect(&f, F_SMALL_LIMITS);
	ck_assert_str_eq(hearth_server(h), "fake 1.0");
	ck_assert_uint_eq(hearth_server_protocol(h), PROTO_VERSION);
	hearth_limits(h, &l);
	ck_assert_uint_eq(l.max_text, 1024);
	ck_assert_uint_eq(l.max_ids, 16);
	ck_assert_int_ge(hearth_fd(h), 0);
	ck_assert_str_eq(hearth_errmsg(h), "");
	ck_assert_ptr_null(hearth_errcode(h));
	ck_assert_int_eq(hearth_ping(h), 0);
	hearth_close(h);
	fake_join(&f);
	ck_assert_str_eq(f.client, "check");
	ck_assert_int_eq(f.n_req, 2);
	ck_assert_int_eq(f.types[0], PROTO_MSG_HELLO);
	ck_assert_uint_eq(f.ids[0], 1);
	ck_assert_int_eq(f.types[1], PROTO_MSG_PING);
	ck_assert_uint_gt(f.ids[1], f.ids[0]);
}
END_TEST

START_TEST(test_fake_models)
{
	struct fake		 f;
	struct hearth		*h;
	struct hearth_model	*m = NULL;
	struct hearth_meta	*meta = NULL;
	struct hearth_ps_entry	*ps = NULL;
	struct hearth_stats	 st;
	size_t			 n;

	h = fake_connect(&f, 0);
	ck_assert_int_eq(hearth_list(h, &m, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(m[0].name, "alpha");
	ck_assert_uint_eq(m[0].size, 1000);
	ck_assert_str_eq(m[0].arch, "llama");
	ck_assert_str_eq(m[0].quant, "F32");
	ck_assert_uint_eq(m[0].params, 260000);
	ck_assert_str_eq(m[0].license, "MIT");
	ck_assert(m[0].resident);
	ck_assert_str_eq(m[1].name, "beta");
	ck_assert_str_eq(m[1].arch, "");
	ck_assert(!m[1].resident);
	hearth_free(m);

	ck_assert_int_eq(hearth_show(h, "alpha", &meta, &n), 0);
	ck_assert_uint_eq(n, 6);
	ck_assert_str_eq(meta[0].key, "general.architecture");
	ck_assert_int_eq(meta[0].type, HEARTH_META_STR);
	ck_assert_str_eq(meta[0].s, "llama");
	ck_assert_uint_eq(meta[0].s_len, 5);
	ck_assert_int_eq(meta[1].type, HEARTH_META_UINT);
	ck_assert_uint_eq(meta[1].u, 512);
	ck_assert_int_eq(meta[2].type, HEARTH_META_INT);
	ck_assert_int_eq(meta[2].i, -3);
	ck_assert_int_eq(meta[3].type, HEARTH_META_FLOAT);
	ck_assert(meta[3].f == 0.5);
	ck_assert_int_eq(meta[4].type, HEARTH_META_BOOL);
	ck_assert(meta[4].b);
	ck_assert_int_eq(meta[5].type, HEARTH_META_ARRAY);
	ck_assert_str_eq(meta[5].elem, "string");
	ck_assert_uint_eq(meta[5].n, 512);
	hearth_free(meta);

	ck_assert_int_eq(hearth_ps(h, &ps, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(ps[0].name, "alpha");
	ck_assert_uint_eq(ps[0].memory, 4096);
	ck_assert_str_eq(ps[0].hugepages, "thp");
	ck_assert_uint_eq(ps[0].clients, 2);
	ck_assert_uint_eq(ps[0].tokens, 77);
	ck_assert_int_eq(ps[0].keep_alive, -1);
	ck_assert_uint_eq(ps[0].weights, 2048);
	ck_assert_uint_eq(ps[0].kv, 1536);
	ck_assert_uint_eq(ps[0].scratch, 512);
	ck_assert_uint_eq(ps[0].bytes_1g, 0);
	ck_assert_uint_eq(ps[0].bytes_2m, 2097152);
	ck_assert_uint_eq(ps[0].bytes_thp, 4096);
	ck_assert_uint_eq(ps[0].bytes_small, 8192);
	ck_assert(ps[0].pinned);
	ck_assert_str_eq(ps[0].placement, "local: one node");
	hearth_free(ps);

	ck_assert_int_eq(hearth_stats(h, &st), 0);
	ck_assert_uint_eq(st.uptime, 10);
	ck_assert_uint_eq(st.connections, 1);
	ck_assert_uint_eq(st.requests, 2);
	ck_assert_uint_eq(st.prompt_tokens, 3);
	ck_assert_uint_eq(st.generated_tokens, 4);
	ck_assert_uint_eq(st.models, 5);
	ck_assert_uint_eq(st.memory, 6);
	ck_assert_uint_eq(st.budget, 7ull << 30);
	ck_assert_uint_eq(st.weights, 3);
	ck_assert_uint_eq(st.kv, 2);
	ck_assert_uint_eq(st.scratch, 1);
	hearth_close(h);
	fake_join(&f);
}
END_TEST

static int
count_progress(void *arg, uint64_t done, uint64_t total)
{
	uint64_t	*p = arg;

	ck_assert_uint_le(done, total);
	ck_assert_uint_ge(done, p[1]);
	p[0]++;
	p[1] = done;
	return 0;
}

static int
stop_progress(void *arg, uint64_t done, uint64_t total)
{
	(void)arg;
	(void)total;
	return done >= 50;
}

START_TEST(test_fake_load)
{
	struct fake		 f;
	struct hearth		*h;
	struct hearth_load_info	 li = { 0, 0 };
	uint64_t		 prog[2] = { 0, 0 };

	h = fake_connect(&f, 0);
	ck_assert_int_eq(hearth_load(h, "alpha", 60, count_progress, prog,
	    &li), 0);
	ck_assert_uint_eq(prog[0], 3);
	ck_assert_uint_eq(prog[1], 100);
	ck_assert_uint_eq(li.memory, 4096);
	ck_assert(li.ms == 1.5);
	/* a callback that gives up: -ECANCELED, connection still fine */
	ck_assert_int_eq(hearth_load(h, "alpha", HEARTH_KEEP_ALIVE_DEFAULT,
	    stop_progress, NULL, NULL), -ECANCELED);
	ck_assert_int_eq(hearth_load(h, "alpha", -1, NULL, NULL, NULL), 0);
	ck_assert_int_eq(hearth_unload(h, "alpha"), 0);
	/* pin and unpin; both flags, or unknown ones, are refused */
	ck_assert_int_eq(hearth_load_ex(h, "alpha", HEARTH_KEEP_ALIVE_DEFAULT,
	    HEARTH_LOAD_PIN, NULL, NULL, &li), 0);
	ck_assert_int_eq(hearth_load_ex(h, "alpha", HEARTH_KEEP_ALIVE_DEFAULT,
	    HEARTH_LOAD_UNPIN, NULL, NULL, NULL), 0);
	ck_assert_int_eq(hearth_load_ex(h, "alpha", 5, 0, NULL, NULL, NULL),
	    0);
	ck_assert_int_eq(hearth_load_ex(h, "alpha", -1, HEARTH_LOAD_PIN |
	    HEARTH_LOAD_UNPIN, NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(hearth_load_ex(h, "alpha", -1, 4, NULL, NULL, NULL),
	    -EINVAL);
	ck_assert_int_eq(hearth_ping(h), 0);
	hearth_close(h);
	fake_join(&f);
	ck_assert(f.has_keep_alive);
	ck_assert_int_eq(f.keep_alive, 5);
	/* loads: none, none, none, pin, unpin, none */
	ck_assert_uint_eq(f.pin_log, ((2u * 3) + 1) * 3 + 0);
}
END_TEST

START_TEST(test_fake_tokens)
{
	struct fake		 f;
	struct hearth		*h;
	struct hearth_embedding	*e = NULL;
	struct hearth_eval	*ev = NULL;
	struct hearth_input	 in;
	int32_t			*ids = NULL;
	char			*text = NULL;
	size_t			 n, len;
	static const int32_t	 some[4] = { 1, 7, 8, 9 };

	h = fake_connect(&f, 0);
	ck_assert_int_eq(hearth_tokenize(h, "alpha", "ab", 0, true, false,
	    &ids, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(ids[0], 1);
	ck_assert_int_eq(ids[1], 'a' + 3);
	ck_assert_int_eq(ids[2], 'b' + 3);
	ck_assert_int_eq(hearth_detokenize(h, "alpha", ids, n, true, &text,
	    &len), 0);
	ck_assert(f.special);
	ck_assert_uint_eq(len, 2);
	ck_assert_str_eq(text, "ab");
	hearth_free(text);
	hearth_free(ids);
	/* an explicit length with a NUL inside */
	ck_assert_int_eq(hearth_tokenize(h, "alpha", "a\0b", 3, false, false,
	    &ids, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(ids[1], 3);
	hearth_free(ids);
	/* nothing at all */
	ck_assert_int_eq(hearth_tokenize(h, "alpha", "", 0, false, false,
	    &ids, &n), 0);
	ck_assert_uint_eq(n, 0);
	hearth_free(ids);
	ck_assert_int_eq(hearth_detokenize(h, "alpha", NULL, 0, false, &text,
	    NULL), 0);
	ck_assert_str_eq(text, "");
	hearth_free(text);

	memset(&in, 0, sizeof(in));
	in.text = "hello";
	ck_assert_int_eq(hearth_embed(h, "alpha", &in, &e), 0);
	ck_assert_uint_eq(e->n, 2);
	ck_assert(e->values[0] == 0.6f && e->values[1] == 0.8f);
	ck_assert_uint_eq(e->tokens, 5);
	hearth_free(e);

	memset(&in, 0, sizeof(in));
	in.ids = some;
	in.n_ids = 4;
	ck_assert_int_eq(hearth_eval(h, "alpha", &in, 2, true, &ev), 0);
	ck_assert_uint_eq(ev->n_tokens, 4);
	ck_assert_int_eq(ev->tokens[3], 9);
	ck_assert_uint_eq(ev->top, 2);
	ck_assert(ev->logprobs[0] == -0.5f && ev->logprobs[2] == -1.5f);
	ck_assert_int_eq(ev->top_ids[2 * 2], 9);
	ck_assert_int_eq(ev->top_ids[2 * 2 + 1], 10);
	ck_assert(ev->top_logprobs[2 * 2 + 1] == -2.5f);
	hearth_free(ev);
	ck_assert_int_eq(hearth_eval(h, "alpha", &in, 0, true, &ev), 0);
	ck_assert_uint_eq(ev->top, 0);
	hearth_free(ev);
	hearth_close(h);
	fake_join(&f);
}
END_TEST

struct collect {
	char		 text[256];	/* visible text */
	char		 think[256];	/* thinking text */
	int		 calls;
	int		 cancel_at;	/* return 1 at this call, 0 never */
	int		 interrupt_at;	/* hearth_interrupt at this call */
	struct hearth	*h;
	float		 logprob;
	uint32_t	 n_top;
	int32_t		 top0;
};

static int
collect_token(void *arg, const struct hearth_token *t)
{
	struct collect	*c = arg;

	c->calls++;
	ck_assert_uint_eq(strlen(t->text), t->text_len);
	strncat(t->thinking ? c->think : c->text, t->text, 100);
	if (t->has_logprob) {
		c->logprob = t->logprob;
		c->n_top = t->n_top;
		c->top0 = t->n_top > 0 ? t->top_ids[0] : -1;
	}
	if (c->interrupt_at == c->calls)
		hearth_interrupt(c->h);
	return c->cancel_at == c->calls;
}

START_TEST(test_fake_generate)
{
	static const char *const stop[2] = { "\n\n", "END" };
	struct hearth_gen_params p;
	struct hearth_done	 d;
	struct hearth_input	 in;
	struct collect		 c;
	struct fake		 f;
	struct hearth		*h;

	h = fake_connect(&f, 0);
	hearth_gen_params_default(&p);
	ck_assert(isnan(p.temperature));
	ck_assert(p.stream);
	ck_assert_int_eq(p.max_tokens, -1);
	p.temperature = 0;
	p.top_k = 40;
	p.has_seed = true;
	p.seed = 42;
	p.max_tokens = 8;
	p.stop = stop;
	p.n_stop = 2;
	p.top_logprobs = 2;
	p.keep_alive = 30;
	memset(&in, 0, sizeof(in));
	in.text = "Hi";
	memset(&c, 0, sizeof(c));
	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, &p, collect_token,
	    &c, &d), 0);
	ck_assert_str_eq(c.text, "Hello world");
	ck_assert_str_eq(c.think, "think");
	ck_assert_int_eq(c.calls, 3);
	ck_assert(c.logprob == -0.25f);
	ck_assert_uint_eq(c.n_top, 2);
	ck_assert_int_eq(c.top0, 11);
	ck_assert_int_eq(d.reason, HEARTH_REASON_MAX_TOKENS);
	ck_assert_str_eq(hearth_reason_name(d.reason), "max_tokens");
	ck_assert_uint_eq(d.prompt_tokens, 4);
	ck_assert_uint_eq(d.cached_tokens, 1);
	ck_assert_uint_eq(d.generated_tokens, 3);
	ck_assert(d.prefill_ms == 1.5 && d.decode_ms == 2.5);
	ck_assert_ptr_null(d.text);
	ck_assert_uint_eq(f.sampling.set, PROTO_S_TEMPERATURE | PROTO_S_TOP_K |
	    PROTO_S_SEED);
	ck_assert(f.sampling.temperature == 0);
	ck_assert_int_eq(f.sampling.top_k, 40);
	ck_assert_uint_eq(f.sampling.seed, 42);
	ck_assert_int_eq(f.max_tokens, 8);
	ck_assert_uint_eq(f.n_stop, 2);
	ck_assert_str_eq(f.stop0, "\n\n");
	ck_assert_uint_eq(f.top_logprobs, 2);
	ck_assert(f.has_keep_alive && f.keep_alive == 30);

	/* not streamed: the done info carries the text */
	p.stream = false;
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, &p, collect_token,
	    &c, &d), 0);
	ck_assert_int_eq(c.calls, 0);
	ck_assert_str_eq(d.text, "Hello world");
	ck_assert_uint_eq(d.text_len, 11);
	ck_assert_str_eq(d.thinking, "think");
	hearth_done_clear(&d);
	ck_assert_ptr_null(d.text);
	hearth_done_clear(&d);
	hearth_done_clear(NULL);

	/* defaults: nothing set, no callback, no done */
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, NULL, NULL, NULL,
	    NULL), 0);
	hearth_close(h);
	fake_join(&f);
	ck_assert_uint_eq(f.sampling.set, 0);
	ck_assert_int_eq(f.max_tokens, -1);
	ck_assert(!f.has_keep_alive);
	ck_assert(f.stream);
}
END_TEST

START_TEST(test_fake_chat_render)
{
	struct hearth_message	 msgs[2] = {
		{ "system", "Be brief.", 0 },
		{ "user", "Hi there", 0 },
	};
	struct hearth_gen_params p;
	struct hearth_rendered	*r = NULL;
	struct hearth_done	 d;
	struct collect		 c;
	struct fake		 f;
	struct hearth		*h;

	h = fake_connect(&f, 0);
	hearth_gen_params_default(&p);
	p.thinking = HEARTH_THINKING_OFF;
	p.template_name = "chatml";
	ck_assert_int_eq(hearth_render(h, "alpha", msgs, 2, &p, &r), 0);
	ck_assert_str_eq(r->prompt, "system:Be brief.\nuser:Hi there\n");
	ck_assert_uint_eq(r->prompt_len, strlen(r->prompt));
	ck_assert_str_eq(r->template_name, "chatml");
	ck_assert_int_eq(f.thinking, PROTO_THINK_OFF);
	hearth_free(r);
	ck_assert_int_eq(hearth_render(h, "alpha", msgs, 1, NULL, &r), 0);
	ck_assert_str_eq(r->prompt, "system:Be brief.\n");
	hearth_free(r);

	memset(&c, 0, sizeof(c));
	p.thinking = HEARTH_THINKING_ON;
	ck_assert_int_eq(hearth_chat(h, "alpha", msgs, 2, &p, collect_token,
	    &c, &d), 0);
	ck_assert_str_eq(c.text, "Hello world");
	ck_assert_int_eq(d.reason, HEARTH_REASON_MAX_TOKENS);
	hearth_close(h);
	fake_join(&f);
	ck_assert_int_eq(f.thinking, PROTO_THINK_ON);
	ck_assert_uint_eq(f.n_messages, 2);
	ck_assert_str_eq(f.tmpl, "chatml");
}
END_TEST

START_TEST(test_fake_cancel)
{
	struct hearth_done	 d;
	struct hearth_input	 in;
	struct collect		 c;
	struct fake		 f;
	struct hearth		*h;

	/* the callback says stop at the 2nd token */
	h = fake_connect(&f, F_WAIT_CANCEL);
	memset(&in, 0, sizeof(in));
	in.text = "Hi";
	memset(&c, 0, sizeof(c));
	c.cancel_at = 2;
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, NULL, collect_token,
	    &c, &d), 0);
	ck_assert_int_eq(d.reason, HEARTH_REASON_CANCELLED);
	ck_assert_int_eq(c.calls, 2);	/* " late" is not shown */
	ck_assert_str_eq(c.text, "Hello");
	/* then hearth_interrupt, as from a signal handler */
	memset(&c, 0, sizeof(c));
	c.h = h;
	c.interrupt_at = 1;
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, NULL, collect_token,
	    &c, &d), 0);
	ck_assert_int_eq(d.reason, HEARTH_REASON_CANCELLED);
	ck_assert_int_eq(c.calls, 1);	/* nothing after the interrupt */
	/* the cancel replies were dropped, the connection goes on */
	ck_assert_int_eq(hearth_ping(h), 0);
	hearth_close(h);
	fake_join(&f);
	ck_assert_int_eq(f.types[f.n_req - 2], PROTO_MSG_CANCEL);
	ck_assert_uint_eq(f.cancel_target, f.ids[f.n_req - 3]);
}
END_TEST

static void *
interrupter(void *arg)
{
	struct timespec	 ts = { 0, 100 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	hearth_interrupt(arg);
	return NULL;
}

START_TEST(test_fake_interrupt)
{
	struct fake		 f;
	struct hearth		*h;
	pthread_t		 t;

	/* a pending interrupt stops the next call before it is sent */
	h = fake_connect(&f, F_SLOW);
	hearth_interrupt(h);
	ck_assert_int_eq(hearth_ping(h), -ECANCELED);
	ck_assert_str_eq(hearth_errmsg(h), "interrupted");
	/* from another thread while the server sits on a ping */
	ck_assert_int_eq(pthread_create(&t, NULL, interrupter, h), 0);
	ck_assert_int_eq(hearth_ping(h), -ECANCELED);
	pthread_join(t, NULL);
	/* its late answer and the cancel's reply are dropped */
	ck_assert_int_eq(hearth_ping(h), 0);
	ck_assert_int_eq(hearth_ping(h), 0);
	hearth_close(h);
	fake_join(&f);
	ck_assert_int_eq(f.n_req, 5);	/* hello ping cancel ping ping */
	ck_assert_int_eq(f.types[2], PROTO_MSG_CANCEL);
	ck_assert_uint_eq(f.cancel_target, f.ids[1]);
	hearth_interrupt(NULL);
}
END_TEST

START_TEST(test_fake_stale)
{
	struct fake		 f;
	struct hearth		*h;

	h = fake_connect(&f, F_STALE);
	ck_assert_int_eq(hearth_ping(h), 0);
	ck_assert_int_eq(hearth_ping(h), 0);
	hearth_close(h);
	fake_join(&f);
}
END_TEST

START_TEST(test_fake_errors)
{
	struct hearth_meta	*meta = NULL;
	struct hearth_input	 in;
	struct hearth_done	 d;
	struct fake		 f;
	struct hearth		*h;
	size_t			 n = 99;

	h = fake_connect(&f, F_DONE_ERROR);
	/* a server error: its code, errno, message; outputs untouched */
	ck_assert_int_eq(hearth_show(h, "nope", &meta, &n), -ENOENT);
	ck_assert_ptr_null(meta);
	ck_assert_uint_eq(n, 99);
	ck_assert_str_eq(hearth_errcode(h), "not_found");
	ck_assert_str_eq(hearth_errmsg(h), "not_found: no model named 'nope'");
	/* success clears the message */
	ck_assert_int_eq(hearth_ping(h), 0);
	ck_assert_str_eq(hearth_errmsg(h), "");
	ck_assert_ptr_null(hearth_errcode(h));
	/* refused locally: no request sent */
	ck_assert_int_eq(hearth_show(h, "../etc/passwd", &meta, &n), -EINVAL);
	ck_assert_ptr_null(hearth_errcode(h));
	ck_assert(strstr(hearth_errmsg(h), "model") != NULL);
	ck_assert_int_eq(hearth_show(h, NULL, &meta, &n), -EINVAL);
	ck_assert_int_eq(hearth_show(h, "", &meta, &n), -EINVAL);
	ck_assert_int_eq(hearth_list(h, NULL, &n), -EINVAL);
	memset(&in, 0, sizeof(in));
	ck_assert_int_eq(hearth_generate(h, "alpha", NULL, NULL, NULL, NULL,
	    NULL), -EINVAL);
	/* a generation that fails on the server */
	in.text = "Hi";
	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, NULL, NULL, NULL,
	    &d), -EIO);
	ck_assert_int_eq(d.reason, HEARTH_REASON_ERROR);
	ck_assert_str_eq(hearth_errcode(h), "model_error");
	ck_assert(strstr(hearth_errmsg(h), "the model fell over") != NULL);
	/* an error reply to a generate */
	ck_assert_int_eq(hearth_generate(h, "nope", &in, NULL, NULL, NULL,
	    &d), -ENOENT);
	ck_assert_str_eq(hearth_errcode(h), "not_found");
	ck_assert_int_eq(hearth_ping(h), 0);
	hearth_close(h);
	hearth_close(NULL);
	fake_join(&f);
	ck_assert_int_eq(f.n_req, 6);	/* hello show ping gen gen ping */
}
END_TEST

START_TEST(test_fake_limits)
{
	static const char *const stop[3] = { "a", "b", "c" };
	struct hearth_message	 msgs[3] = {
		{ "user", "a", 0 }, { "assistant", "b", 0 }, { "user", "c", 0 },
	};
	struct hearth_gen_params p;
	struct hearth_rendered	*r = NULL;
	struct hearth_input	 in;
	struct fake		 f;
	struct hearth		*h;
	int32_t			 ids[17], *out = NULL;
	char			*big;
	size_t			 n;

	h = fake_connect(&f, F_SMALL_LIMITS);
	big = malloc(2000);
	ck_assert_ptr_nonnull(big);
	memset(big, 'x', 1999);
	big[1999] = '\0';
	memset(&in, 0, sizeof(in));
	in.text = big;
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, NULL, NULL, NULL,
	    NULL), -EMSGSIZE);
	ck_assert_ptr_null(hearth_errcode(h));
	ck_assert_int_eq(hearth_tokenize(h, "alpha", big, 0, true, false,
	    &out, &n), -EMSGSIZE);
	free(big);
	memset(ids, 0, sizeof(ids));
	memset(&in, 0, sizeof(in));
	in.ids = ids;
	in.n_ids = 17;
	ck_assert_int_eq(hearth_embed(h, "alpha", &in, NULL), -EINVAL);
	{
		struct hearth_embedding *e = NULL;

		ck_assert_int_eq(hearth_embed(h, "alpha", &in, &e), -EMSGSIZE);
		ck_assert_ptr_null(e);
	}
	hearth_gen_params_default(&p);
	p.stop = stop;
	p.n_stop = 3;
	in.n_ids = 2;
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, &p, NULL, NULL,
	    NULL), -EMSGSIZE);
	ck_assert_int_eq(hearth_render(h, "alpha", msgs, 3, NULL, &r),
	    -EMSGSIZE);
	hearth_gen_params_default(&p);
	p.temperature = 1000;	/* out of range */
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, &p, NULL, NULL,
	    NULL), -EINVAL);
	ck_assert(strstr(hearth_errmsg(h), "temperature") != NULL);
	ck_assert_int_eq(hearth_ping(h), 0);
	hearth_close(h);
	fake_join(&f);
	ck_assert_int_eq(f.n_req, 2);	/* only hello and ping went out */
}
END_TEST

START_TEST(test_fake_server_gone)
{
	struct hearth_input	 in;
	struct hearth_done	 d;
	struct collect		 c;
	struct fake		 f;
	struct hearth		*h;

	h = fake_connect(&f, F_CLOSE_MID);
	memset(&in, 0, sizeof(in));
	in.text = "Hi";
	memset(&c, 0, sizeof(c));
	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, NULL, collect_token,
	    &c, &d), -ECONNRESET);
	ck_assert_int_eq(c.calls, 1);
	ck_assert(strstr(hearth_errmsg(h), "closed") != NULL);
	ck_assert_int_eq(d.reason, 0);	/* untouched */
	fake_join(&f);
	/* broken for good, no crash, no SIGPIPE */
	ck_assert_int_eq(hearth_ping(h), -ENOTCONN);
	ck_assert(strstr(hearth_errmsg(h), "closed") != NULL);
	ck_assert_int_eq(hearth_generate(h, "alpha", &in, NULL, NULL, NULL,
	    NULL), -ENOTCONN);
	hearth_close(h);
}
END_TEST

START_TEST(test_fake_bad_server)
{
	static const unsigned modes[3] = { F_GARBAGE, F_HUGE_FRAME,
	    F_CONN_ERROR };
	static const int rcs[3] = { -EPROTO, -EPROTO, -EREMOTEIO };
	struct fake		 f;
	struct hearth		*h;
	int			 i;

	for (i = 0; i < 3; i++) {
		h = fake_connect(&f, modes[i]);
		ck_assert_int_eq(hearth_ping(h), rcs[i]);
		ck_assert(hearth_errmsg(h)[0] != '\0');
		ck_assert_int_eq(hearth_ping(h), -ENOTCONN);
		hearth_close(h);
		fake_join(&f);
	}
}
END_TEST

START_TEST(test_fake_version)
{
	struct hearth_error	 err;
	struct fake		 f;
	struct hearth		*h = NULL;

	memset(&err, 0, sizeof(err));
	ck_assert_int_eq(hearth_connect_fd(fake_start(&f, F_BAD_VERSION),
	    NULL, &h, &err), -EPROTONOSUPPORT);
	ck_assert_ptr_null(h);
	ck_assert_int_eq(err.rc, -EPROTONOSUPPORT);
	ck_assert(strstr(err.message, "99") != NULL);
	fake_join(&f);
	ck_assert_str_eq(f.client, "libhearth " HEARTH_VERSION_STRING);

	memset(&err, 0, sizeof(err));
	ck_assert_int_eq(hearth_connect_fd(fake_start(&f, F_REFUSE_HELLO),
	    NULL, &h, &err), -EPROTONOSUPPORT);
	ck_assert_ptr_null(h);
	ck_assert_str_eq(err.code, "bad_request");
	ck_assert(strstr(err.message, "version") != NULL);
	fake_join(&f);

	ck_assert_int_eq(hearth_connect_fd(-1, NULL, &h, NULL), -EINVAL);
}
END_TEST

/* A listening socket at path served by the fake (one connection). */
struct listener {
	int		 fd;
	struct fake	*f;
	unsigned	 mode;
};

static void *
accept_one(void *arg)
{
	struct listener	*l = arg;
	int		 c;

	c = accept(l->fd, NULL, NULL);
	if (c < 0)
		return NULL;
	memset(l->f, 0, sizeof(*l->f));
	l->f->fd = c;
	l->f->mode = l->mode;
	proto_limits_default(&l->f->limits);
	if (proto_reader_new(l->f->limits.max_frame, &l->f->rd) == 0)
		fake_main(l->f);
	return NULL;
}

static int
listen_at(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	xsnprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	return fd;
}

START_TEST(test_fake_connect_paths)
{
	struct hearth_error	 err;
	struct listener		 l;
	struct fake		 f;
	struct hearth		*h = NULL;
	pthread_t		 t;
	char			 dir[512], path[600], longp[200];

	/* nothing there: -ENOENT and a hint */
	memset(&err, 0, sizeof(err));
	ck_assert_int_eq(hearth_connect(tu_tmpfile("none.sock"), NULL, &h,
	    &err), -ENOENT);
	ck_assert_ptr_null(h);
	ck_assert(strstr(err.message, "none.sock") != NULL);
	ck_assert(strstr(err.message, "is hearthd running") != NULL);
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	ck_assert_int_eq(hearth_connect(longp, NULL, &h, &err),
	    -ENAMETOOLONG);
	ck_assert_int_eq(hearth_connect(NULL, NULL, NULL, &err), -EINVAL);

	/* $XDG_RUNTIME_DIR/hearth/hearth.sock, then $HEARTH_SOCKET first */
	snprintf(dir, sizeof(dir), "%s", tu_tmpfile("xdg"));
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/hearth", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/hearth/hearth.sock", dir);
	l.fd = listen_at(path);
	l.f = &f;
	l.mode = 0;
	ck_assert_int_eq(pthread_create(&t, NULL, accept_one, &l), 0);
	unsetenv("HEARTH_SOCKET");
	setenv("XDG_RUNTIME_DIR", dir, 1);
	ck_assert_int_eq(hearth_connect(NULL, "x", &h, &err), 0);
	ck_assert_int_eq(hearth_ping(h), 0);
	hearth_close(h);
	pthread_join(t, NULL);
	proto_reader_free(f.rd);
	ck_assert_str_eq(f.client, "x");

	ck_assert_int_eq(pthread_create(&t, NULL, accept_one, &l), 0);
	setenv("XDG_RUNTIME_DIR", "/nonexistent-hearth", 1);
	setenv("HEARTH_SOCKET", path, 1);
	h = NULL;
	ck_assert_int_eq(hearth_connect(NULL, "y", &h, &err), 0);
	hearth_close(h);
	pthread_join(t, NULL);
	proto_reader_free(f.rd);
	ck_assert_str_eq(f.client, "y");
	close(l.fd);
	unlink(path);

	/* neither the user's nor the system's socket: both named */
	unsetenv("HEARTH_SOCKET");
	if (access(HEARTH_SOCKET_SYSTEM, F_OK) != 0) {
		ck_assert_int_lt(hearth_connect(NULL, NULL, &h, &err), 0);
		ck_assert(strstr(err.message, "/nonexistent-hearth") != NULL);
		ck_assert(strstr(err.message, HEARTH_SOCKET_SYSTEM) != NULL);
	}
}
END_TEST

/* ---- the real daemon ---- */

static struct td g_d;		/* the daemon, or the fake's socket */
static bool	 g_have_aidreams;

/* Make the models once, before the tests fork. */
static void
models_make(void)
{
	struct mkm_spec	 s;
	const char	*aid;
	uint8_t		*buf;
	size_t		 len;

	if (td_init(&g_d, tu_tmpdir()) != 0)
		abort();
	mkm_spec_default(&s);
	s.name = "tiny";
	td_write_model(&g_d, &s, "tiny");
	s.seed = 2;
	s.n_layer = 1;
	td_write_model(&g_d, &s, "tiny2");
	/* long enough to be interrupted: ~570 greedy tokens of 4096 */
	mkm_spec_default(&s);
	s.name = "slow";
	s.n_embd = 256;
	s.n_ff = 768;
	s.n_layer = 4;
	s.n_head = 4;
	s.n_head_kv = 4;
	s.n_ctx = 4096;
	td_write_model(&g_d, &s, "slow");
	aid = tu_testdata("models/aidreams260K.gguf");
	if (aid != NULL && (buf = tu_read_file(aid, &len)) != NULL) {
		/* a copy: links that leave the directory are refused */
		g_have_aidreams = tu_write_file(td_model_path(&g_d,
		    "aidreams260K"), buf, len) == 0;
		free(buf);
	}
}

/*
 * Start hearthd on a fresh socket (in the test's own process): no
 * configuration, two threads.
 */
static void
daemon_start(void)
{
	static int n;

	snprintf(g_d.sock, sizeof(g_d.sock), "%s/d%d-%d.sock", g_d.dir,
	    (int)getpid(), n++);
	snprintf(g_d.log, sizeof(g_d.log), "%s.log", g_d.sock);
	g_d.conf[0] = '\0';
	g_d.quiet = true;
	g_d.threads = "2";
	td_start(&g_d);
}

static void
daemon_stop(void)
{
	td_stop(&g_d);
}

static bool
daemon_skip(void)
{
	if (access(td_build_path("hearthd"), X_OK) == 0)
		return false;
	fprintf(stderr, "SKIP: hearthd not built in %s\n", td_builddir());
	return true;
}

static struct hearth *
daemon_connect(void)
{
	struct hearth_error	 err;
	struct hearth		*h = NULL;
	int			 rc;

	rc = hearth_connect(g_d.sock, "check_client", &h, &err);
	ck_assert_msg(rc == 0, "connect %s: %s", g_d.sock, err.message);
	return h;
}

START_TEST(test_daemon_calls)
{
	struct hearth_model	*m = NULL;
	struct hearth_meta	*meta = NULL;
	struct hearth_ps_entry	*ps = NULL;
	struct hearth_embedding	*e = NULL;
	struct hearth_eval	*ev = NULL;
	struct hearth_rendered	*r = NULL;
	struct hearth_load_info	 li;
	struct hearth_stats	 st;
	struct hearth_input	 in;
	struct hearth		*h;
	int32_t			*ids = NULL;
	char			*text = NULL;
	uint64_t		 prog[2] = { 0, 0 };
	size_t			 n, i, len;
	double			 norm = 0;
	bool			 found = false, arch = false;
	struct hearth_message	 msg = { "user", "Hello", 0 };
	struct hearth_gen_params p;

	if (daemon_skip())
		return;
	daemon_start();
	h = daemon_connect();
	ck_assert(strncmp(hearth_server(h), "hearthd", 7) == 0);
	ck_assert_int_eq(hearth_ping(h), 0);
	ck_assert_int_eq(hearth_list(h, &m, &n), 0);
	for (i = 0; i < n; i++)
		if (strcmp(m[i].name, "tiny") == 0) {
			found = true;
			ck_assert_str_eq(m[i].arch, "llama");
			ck_assert_uint_gt(m[i].size, 0);
		}
	ck_assert(found);
	hearth_free(m);
	ck_assert_int_eq(hearth_show(h, "tiny", &meta, &n), 0);
	for (i = 0; i < n; i++)
		if (strcmp(meta[i].key, "general.architecture") == 0 &&
		    meta[i].type == HEARTH_META_STR)
			arch = strcmp(meta[i].s, "llama") == 0;
	ck_assert(arch);
	hearth_free(meta);
	ck_assert_int_eq(hearth_load(h, "tiny", 60, count_progress, prog,
	    &li), 0);
	ck_assert_uint_gt(li.memory, 0);
	ck_assert(li.ms >= 0);
	ck_assert_int_eq(hearth_ps(h, &ps, &n), 0);
	found = false;
	for (i = 0; i < n; i++)
		found |= strcmp(ps[i].name, "tiny") == 0;
	ck_assert(found);
	hearth_free(ps);

	ck_assert_int_eq(hearth_tokenize(h, "tiny", "hello world", 0, true,
	    false, &ids, &n), 0);
	ck_assert_uint_ge(n, 2);
	ck_assert_int_eq(hearth_detokenize(h, "tiny", ids, n, false, &text,
	    &len), 0);
	ck_assert_str_eq(text, "hello world");
	hearth_free(text);

	memset(&in, 0, sizeof(in));
	in.ids = ids;
	in.n_ids = n;
	ck_assert_int_eq(hearth_eval(h, "tiny", &in, 3, false, &ev), 0);
	ck_assert_uint_eq(ev->n_tokens, n);
	ck_assert_uint_eq(ev->top, 3);
	for (i = 0; i + 1 < n; i++) {
		ck_assert(ev->logprobs[i] <= 0);
		ck_assert(ev->top_logprobs[i * 3] >= ev->logprobs[i] - 1e-4);
		ck_assert(ev->top_logprobs[i * 3] >= ev->top_logprobs[i * 3 + 1]);
	}
	hearth_free(ev);
	hearth_free(ids);

	memset(&in, 0, sizeof(in));
	in.text = "hello world";
	ck_assert_int_eq(hearth_embed(h, "tiny", &in, &e), 0);
	ck_assert_uint_eq(e->n, 64);
	for (i = 0; i < e->n; i++)
		norm += (double)e->values[i] * e->values[i];
	ck_assert(fabs(norm - 1) < 1e-3);
	hearth_free(e);

	hearth_gen_params_default(&p);
	p.template_name = "chatml";
	ck_assert_int_eq(hearth_render(h, "tiny", &msg, 1, &p, &r), 0);
	ck_assert_str_eq(r->prompt,
	    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
	ck_assert_str_eq(r->template_name, "chatml");
	hearth_free(r);

	ck_assert_int_eq(hearth_stats(h, &st), 0);
	ck_assert_uint_ge(st.connections, 1);
	ck_assert_uint_ge(st.models, 1);
	ck_assert_int_eq(hearth_unload(h, "tiny"), 0);
	hearth_close(h);
	daemon_stop();
}
END_TEST

static int
count_only(void *arg, const struct hearth_token *t)
{
	int	*n = arg;

	(void)t;
	(*n)++;
	return 0;
}

START_TEST(test_daemon_generate)
{
	struct hearth_gen_params p;
	struct hearth_message	 msg = { "user", "Hello", 0 };
	struct hearth_done	 d, d2;
	struct hearth_input	 in;
	struct collect		 c;
	struct hearth		*h;
	int			 calls = 0;

	if (daemon_skip())
		return;
	daemon_start();
	h = daemon_connect();
	hearth_gen_params_default(&p);
	p.temperature = 0;
	p.max_tokens = 12;
	memset(&in, 0, sizeof(in));
	in.text = "abc";
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(hearth_generate(h, "tiny", &in, &p, collect_token,
	    &c, &d), 0);
	ck_assert_int_ge(c.calls, 1);
	ck_assert(d.reason == HEARTH_REASON_MAX_TOKENS ||
	    d.reason == HEARTH_REASON_EOS);
	ck_assert_uint_le(d.generated_tokens, 12);
	ck_assert_uint_gt(d.prompt_tokens, 0);
	/* not streamed: the same text in the done info */
	p.stream = false;
	ck_assert_int_eq(hearth_generate(h, "tiny", &in, &p, count_only,
	    &calls, &d2), 0);
	ck_assert_int_eq(calls, 0);
	ck_assert_ptr_nonnull(d2.text);
	ck_assert_str_eq(d2.text, c.text);
	hearth_done_clear(&d2);
	/* logprobs */
	p.stream = true;
	p.top_logprobs = 2;
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(hearth_generate(h, "tiny", &in, &p, collect_token,
	    &c, &d), 0);
	ck_assert_uint_eq(c.n_top, 2);
	ck_assert(c.logprob <= 0);
	/* the callback cancels a long generation */
	p.top_logprobs = 0;
	p.max_tokens = 400;
	memset(&c, 0, sizeof(c));
	c.cancel_at = 3;
	ck_assert_int_eq(hearth_generate(h, "tiny", &in, &p, collect_token,
	    &c, &d), 0);
	ck_assert_int_eq(c.calls, 3);
	ck_assert(d.reason == HEARTH_REASON_CANCELLED ||
	    d.reason == HEARTH_REASON_EOS);
	/* chat with a named template */
	p.max_tokens = 5;
	p.template_name = "chatml";
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(hearth_chat(h, "tiny", &msg, 1, &p, collect_token,
	    &c, &d), 0);
	ck_assert_uint_le(d.generated_tokens, 5);
	ck_assert_int_eq(hearth_ping(h), 0);
	hearth_close(h);
	daemon_stop();
}
END_TEST

struct idcollect {
	int32_t	 ids[128];
	size_t	 n;
	char	 text[1024];
};

static int
collect_ids(void *arg, const struct hearth_token *t)
{
	struct idcollect	*c = arg;

	if (c->n < 128)
		c->ids[c->n++] = t->id;
	strncat(c->text, t->text, sizeof(c->text) - strlen(c->text) - 1);
	return 0;
}

/* One handle per thread, all at once: the same greedy text as alone. */
#define N_THREADS	8

struct worker {
	char		 text[1024];	/* generated */
	int		 rc;
};

static void *
worker_main(void *arg)
{
	struct worker		*w = arg;
	struct hearth_gen_params p;
	struct hearth_input	 in;
	struct idcollect	 c;
	struct hearth		*h = NULL;
	int32_t			*ids = NULL;
	size_t			 n;
	int			 i;

	if ((w->rc = hearth_connect(g_d.sock, NULL, &h, NULL)) < 0)
		return NULL;
	hearth_gen_params_default(&p);
	p.temperature = 0;
	p.max_tokens = 16;
	memset(&in, 0, sizeof(in));
	in.text = "hello world";
	for (i = 0; i < 3 && w->rc == 0; i++) {
		memset(&c, 0, sizeof(c));
		w->rc = hearth_generate(h, "tiny", &in, &p, collect_ids, &c,
		    NULL);
		if (w->rc == 0 && i > 0 && strcmp(c.text, w->text) != 0)
			w->rc = -EDOM;
		snprintf(w->text, sizeof(w->text), "%s", c.text);
		if (w->rc == 0)
			w->rc = hearth_tokenize(h, "tiny", c.text, 0, true,
			    false, &ids, &n);
		hearth_free(ids);
		ids = NULL;
	}
	hearth_close(h);
	return NULL;
}

START_TEST(test_daemon_threads)
{
	struct worker		 w[N_THREADS], alone;
	pthread_t		 t[N_THREADS];
	int			 i;

	if (daemon_skip())
		return;
	daemon_start();
	memset(&alone, 0, sizeof(alone));
	worker_main(&alone);
	ck_assert_int_eq(alone.rc, 0);
	memset(w, 0, sizeof(w));
	for (i = 0; i < N_THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main,
		    &w[i]), 0);
	for (i = 0; i < N_THREADS; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(w[i].rc == 0, "thread %d: %d", i, w[i].rc);
		ck_assert_str_eq(w[i].text, alone.text);
	}
	daemon_stop();
}
END_TEST

START_TEST(test_daemon_aidreams)
{
	struct hearth_gen_params p;
	struct hearth_done	 d;
	struct hearth_input	 in;
	struct idcollect	 c;
	struct hearth		*h;
	int32_t			*ids = NULL;
	size_t			 n, i;

	if (daemon_skip())
		return;
	if (!g_have_aidreams) {
		tu_skip("aidreams260K");
		return;
	}
	daemon_start();
	h = daemon_connect();
	ck_assert_int_eq(hearth_tokenize(h, "aidreams260K", "Echoes", 0, true,
	    false, &ids, &n), 0);
	ck_assert_uint_eq(n, 4);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(ids[i], echoes_prompt[i]);
	hearth_free(ids);
	hearth_gen_params_default(&p);
	p.temperature = 0;
	p.max_tokens = 60;
	memset(&in, 0, sizeof(in));
	in.text = "Echoes";
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(hearth_generate(h, "aidreams260K", &in, &p,
	    collect_ids, &c, &d), 0);
	ck_assert_int_eq(d.reason, HEARTH_REASON_MAX_TOKENS);
	ck_assert_uint_eq(d.generated_tokens, 60);
	ck_assert_uint_eq(d.prompt_tokens, 4);
	ck_assert_uint_eq(c.n, 60);
	for (i = 0; i < 60; i++)
		ck_assert_int_eq(c.ids[i], echoes_ids[i]);
	ck_assert_str_eq(c.text, ECHOES_TEXT);
	hearth_close(h);
	daemon_stop();
}
END_TEST

START_TEST(test_daemon_errors)
{
	struct hearth_meta	*meta = NULL;
	struct hearth_input	 in;
	struct hearth_done	 d;
	struct hearth		*h;
	int32_t			*ids = NULL;
	size_t			 n;
	int			 rc;

	if (daemon_skip())
		return;
	daemon_start();
	h = daemon_connect();
	ck_assert_int_eq(hearth_show(h, "nope", &meta, &n), -ENOENT);
	ck_assert_str_eq(hearth_errcode(h), "not_found");
	ck_assert(strstr(hearth_errmsg(h), "not_found: ") == hearth_errmsg(h));
	memset(&in, 0, sizeof(in));
	in.text = "hi";
	ck_assert_int_eq(hearth_generate(h, "nope", &in, NULL, NULL, NULL,
	    &d), -ENOENT);
	ck_assert_str_eq(hearth_errcode(h), "not_found");
	ck_assert_int_eq(hearth_load(h, "nope", HEARTH_KEEP_ALIVE_DEFAULT,
	    NULL, NULL, NULL), -ENOENT);
	ck_assert_int_eq(hearth_tokenize(h, "nope", "x", 0, true, false, &ids,
	    &n), -ENOENT);
	/* bad names never reach the daemon */
	ck_assert_int_eq(hearth_show(h, "../tiny", &meta, &n), -EINVAL);
	ck_assert_int_eq(hearth_show(h, ".hidden", &meta, &n), -EINVAL);
	ck_assert_ptr_null(hearth_errcode(h));
	/* still fine */
	ck_assert_int_eq(hearth_ping(h), 0);
	/* the daemon goes away: errors, not crashes */
	daemon_stop();
	rc = hearth_ping(h);
	ck_assert_msg(rc == -ECONNRESET || rc == -EPIPE || rc == -EREMOTEIO,
	    "ping after stop: %d %s", rc, hearth_errmsg(h));
	ck_assert_int_eq(hearth_ping(h), -ENOTCONN);
	ck_assert_int_eq(hearth_generate(h, "tiny", &in, NULL, NULL, NULL,
	    NULL), -ENOTCONN);
	hearth_close(h);
	ck_assert_int_lt(hearth_connect(g_d.sock, NULL, &h, NULL), 0);
}
END_TEST

/* ---- the CLI ---- */

/* sh -c cmd with HEARTH (the client) and SOCK set; out/err captured. */
static int
sh(const char *cmd, char **out, char **err)
{
	char	 full[16384];
	int	 st;

	xsnprintf(full, sizeof(full), "HEARTH='%s/hearth'; SOCK='%s'; "
	    "export HEARTH SOCK; %s", td_builddir(), g_d.sock, cmd);
	st = tu_sh(full, out, err);
	ck_assert_int_ne(st, -1);
	return st;
}

static bool
starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* One line ending in a newline, starting "hearth: ". */
static void
one_line(const char *err)
{
	ck_assert_msg(strncmp(err, "hearth: ", 8) == 0, "stderr: '%s'", err);
	ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1,
	    "stderr is not one line: '%s'", err);
}

START_TEST(test_cli_pipeline)
{
	char	*out, *err;
	int	 st;

	if (daemon_skip())
		return;
	daemon_start();
	/* tokenize | detokenize gives the text back */
	st = sh("printf 'hello world' | $HEARTH -s $SOCK tokenize tiny | "
	    "$HEARTH -s $SOCK detokenize tiny", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_str_eq(out, "hello world");
	ck_assert_str_eq(err, "");
	free(out);
	free(err);
	/* ids on one line */
	st = sh("printf 'abc' | $HEARTH -s $SOCK tokenize tiny --no-bos",
	    &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert(strlen(out) > 1 && strchr(out, '\n') == out + strlen(out) - 1);
	ck_assert(strspn(out, "0123456789 \n") == strlen(out));
	free(out);
	free(err);
	/* run streams only the generated text; --json is NDJSON */
	st = sh("echo abc | $HEARTH -s $SOCK run tiny --temperature 0 "
	    "--max-tokens 5 --json", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	{
		char		*line, *save = NULL;
		json_t		*j;
		json_error_t	 je;
		int		 tokens = 0, dones = 0;

		for (line = strtok_r(out, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save)) {
			j = json_loads(line, 0, &je);
			ck_assert_msg(j != NULL, "bad JSON '%s'", line);
			if (strcmp(json_string_value(json_object_get(j,
			    "type")), "token") == 0) {
				tokens++;
				ck_assert(json_is_integer(json_object_get(j,
				    "token")));
			} else {
				dones++;
				ck_assert(json_is_string(json_object_get(j,
				    "reason")));
			}
			json_decref(j);
		}
		ck_assert_int_ge(tokens, 1);
		ck_assert_int_le(tokens, 5);
		ck_assert_int_eq(dones, 1);
	}
	free(out);
	free(err);
	/* eval NDJSON: pos, token, logprob, top */
	st = sh("printf 'hello world' | $HEARTH -s $SOCK eval tiny --top 3",
	    &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	{
		char		*line, *save = NULL;
		json_t		*j;
		json_error_t	 je;
		int		 pos = 0;

		for (line = strtok_r(out, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save)) {
			j = json_loads(line, 0, &je);
			ck_assert_msg(j != NULL, "bad JSON '%s'", line);
			ck_assert_int_eq(json_integer_value(json_object_get(j,
			    "pos")), pos);
			ck_assert(json_is_integer(json_object_get(j,
			    "token")));
			ck_assert(json_number_value(json_object_get(j,
			    "logprob")) <= 0);
			ck_assert_uint_eq(json_array_size(json_object_get(j,
			    "top")), 3);
			ck_assert_uint_eq(json_array_size(json_array_get(
			    json_object_get(j, "top"), 0)), 2);
			json_decref(j);
			pos++;
		}
		ck_assert_int_ge(pos, 2);
	}
	free(out);
	free(err);
	/* template: the exact prompt */
	st = sh("echo '[{\"role\": \"user\", \"content\": \"hi\"}]' | "
	    "$HEARTH -s $SOCK template tiny --template chatml", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_str_eq(out,
	    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
	free(out);
	free(err);
	/* list, show, ps, stats, load, unload, embed */
	st = sh("$HEARTH -s $SOCK load tiny && $HEARTH -s $SOCK list && "
	    "$HEARTH -s $SOCK ps && $HEARTH -s $SOCK show tiny && "
	    "$HEARTH -s $SOCK stats && echo hi | $HEARTH -s $SOCK embed tiny "
	    "&& $HEARTH -s $SOCK unload tiny", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert(strstr(out, "tiny") != NULL);
	ck_assert(strstr(out, "general.architecture: \"llama\"") != NULL);
	ck_assert(strstr(out, "requests:") != NULL);
	ck_assert_str_eq(err, "");	/* no progress bar off a terminal */
	free(out);
	free(err);
	/* chat: one answer line per input line */
	st = sh("printf 'hi\\nhello\\n' | $HEARTH -s $SOCK chat tiny "
	    "--template chatml --temperature 0 --max-tokens 4 | wc -l",
	    &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_int_eq(atoi(out), 2);
	free(out);
	free(err);
	daemon_stop();
}
END_TEST

START_TEST(test_cli_aidreams)
{
	char	*out, *err, cmd[8192];
	int	 st;
	double	 ppl, sum = 0;
	int	 n = 0;

	if (daemon_skip())
		return;
	if (!g_have_aidreams) {
		tu_skip("aidreams260K");
		return;
	}
	daemon_start();
	st = sh("echo Echoes | $HEARTH -s $SOCK run aidreams260K "
	    "--temperature 0 --max-tokens 60", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_str_eq(out, ECHOES_TEXT);
	ck_assert_str_eq(err, "");
	free(out);
	free(err);
	/* the prompt from the arguments */
	st = sh("$HEARTH -s $SOCK run aidreams260K --temperature 0 "
	    "--max-tokens 60 Echoes", &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, ECHOES_TEXT);
	free(out);
	free(err);
	st = sh("printf Echoes | $HEARTH -s $SOCK tokenize aidreams260K",
	    &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "1 388 355 260\n");
	free(out);
	free(err);
	/* perplexity over one window equals exp(-mean) of eval */
	snprintf(cmd, sizeof(cmd), "printf 'Echoes%s' > '%s'",
	    ECHOES_TEXT, tu_tmpfile("echoes.txt"));
	ck_assert_int_eq(sh(cmd, NULL, NULL), 0);
	snprintf(cmd, sizeof(cmd), "$HEARTH -s $SOCK perplexity aidreams260K "
	    "'%s'", tu_tmpfile("echoes.txt"));
	st = sh(cmd, &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ppl = atof(out);
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "$HEARTH -s $SOCK eval aidreams260K < '%s'",
	    tu_tmpfile("echoes.txt"));
	st = sh(cmd, &out, &err);
	ck_assert_int_eq(st, 0);
	{
		char		*line, *save = NULL;
		json_t		*j;
		json_error_t	 je;

		for (line = strtok_r(out, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save)) {
			j = json_loads(line, 0, &je);
			ck_assert_ptr_nonnull(j);
			sum += json_number_value(json_object_get(j, "logprob"));
			n++;
			json_decref(j);
		}
	}
	free(out);
	free(err);
	ck_assert_int_ge(n, 60);	/* ~64 tokens, BOS first: n - 1 */
	ck_assert_msg(fabs(ppl - exp(-sum / n)) < 1e-3 * ppl,
	    "perplexity %f, from eval %f", ppl, exp(-sum / n));
	/* several windows still score every token once; sane value */
	snprintf(cmd, sizeof(cmd), "$HEARTH -s $SOCK perplexity aidreams260K "
	    "--window 16 --stride 8 --json '%s'", tu_tmpfile("echoes.txt"));
	st = sh(cmd, &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	snprintf(cmd, sizeof(cmd), "\"tokens\":%d,", n);
	ck_assert_msg(strstr(out, cmd) != NULL, "%s", out);
	free(out);
	free(err);
	/* SIGPIPE: head closes early, run exits cleanly */
	st = sh("( $HEARTH -s $SOCK run aidreams260K --temperature 0 "
	    "--max-tokens 200 Echoes; echo $? > \"$SOCK.st\" ) | head -c 5",
	    &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, " of p");
	ck_assert_str_eq(err, "");
	free(out);
	free(err);
	st = sh("cat \"$SOCK.st\"", &out, NULL);
	ck_assert_str_eq(out, "0\n");
	free(out);
	daemon_stop();
}
END_TEST

START_TEST(test_cli_errors)
{
	char	*out, *err;
	int	 st;

	if (daemon_skip())
		return;
	daemon_start();
	/* unknown model: status 1, one line naming the code */
	st = sh("$HEARTH -s $SOCK show nope", &out, &err);
	ck_assert_int_eq(st, 1);
	ck_assert_str_eq(out, "");
	one_line(err);
	ck_assert(strstr(err, "not_found") != NULL);
	free(out);
	free(err);
	st = sh("echo hi | $HEARTH -s $SOCK run nope", &out, &err);
	ck_assert_int_eq(st, 1);
	one_line(err);
	free(out);
	free(err);
	/* bad ids and bad JSON */
	st = sh("echo 1 x 2 | $HEARTH -s $SOCK detokenize tiny", &out, &err);
	ck_assert_int_eq(st, 1);
	one_line(err);
	free(out);
	free(err);
	st = sh("echo '[{\"role\": 1}]' | $HEARTH -s $SOCK template tiny",
	    &out, &err);
	ck_assert_int_eq(st, 1);
	one_line(err);
	free(out);
	free(err);
	/* usage errors: status 2 */
	st = sh("$HEARTH -s $SOCK frobnicate", &out, &err);
	ck_assert_int_eq(st, 2);
	one_line(err);
	free(out);
	free(err);
	st = sh("$HEARTH -s $SOCK list --temperature 1", &out, &err);
	ck_assert_int_eq(st, 2);
	free(out);
	free(err);
	st = sh("$HEARTH -s $SOCK run tiny --top-k x hi", &out, &err);
	ck_assert_int_eq(st, 2);
	free(out);
	free(err);
	daemon_stop();
	/* the daemon is not running */
	st = sh("echo hi | $HEARTH -s $SOCK run tiny", &out, &err);
	ck_assert_int_eq(st, 1);
	ck_assert_str_eq(out, "");
	one_line(err);
	ck_assert(strstr(err, "is hearthd running") != NULL);
	free(out);
	free(err);
}
END_TEST

/* The commands of hearth. */
static const char *const cli_cmds[] = {
	"run", "chat", "list", "show", "ps", "load", "unload", "tokenize",
	"detokenize", "embed", "eval", "perplexity", "template", "stats",
};

/* group ("run, chat" or "all") names cmd. */
static bool
help_group_has(const char *group, const char *cmd)
{
	size_t n = strlen(cmd);
	const char *p;

	if (strcmp(group, "all") == 0)
		return true;
	for (p = group; (p = strstr(p, cmd)) != NULL; p += n)
		if ((p == group || p[-1] == ' ') &&
		    (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

/* "(...)" at the end of s lists only commands (or is "(all)"): into g. */
static bool
help_group(const char *s, char *g, size_t size)
{
	const char *open = strrchr(s, '('), *w;
	size_t len = strlen(s), i, n;

	if (open == NULL || len == 0 || s[len - 1] != ')' ||
	    (size_t)(s + len - open) >= size)
		return false;
	snprintf(g, size, "%.*s", (int)(s + len - open - 2), open + 1);
	if (strcmp(g, "all") == 0)
		return true;
	for (w = g; *w != '\0'; w += n) {
		n = strcspn(w, ",");
		for (i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++)
			if (strlen(cli_cmds[i]) == n &&
			    strncmp(w, cli_cmds[i], n) == 0)
				break;
		if (i == sizeof(cli_cmds) / sizeof(cli_cmds[0]))
			return false;
		if (w[n] == ',')
			n += w[n + 1] == ' ' ? 2 : 1;
	}
	return true;
}

/*
 * Every long option of the entry (opts: its option column) is taken by
 * the commands of its group and refused ("does not apply") by the
 * others; the number of options checked.
 */
static int
help_check_entry(const char *opts, const char *group)
{
	char name[64], sock[4200], path[4200], err[4096], libs[4200] = "";
	char *argv[8];
	const char *p = opts;
	bool value, in, refused;
	size_t n, i, len;
	int count = 0, fd[2], null, st;
	ssize_t r;
	pid_t pid;

	while ((p = strstr(p, "--")) != NULL) {
		n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz-");
		ck_assert_uint_gt(n, 0);
		ck_assert_uint_lt(n + 3, sizeof(name));
		snprintf(name, sizeof(name), "%.*s", (int)(n + 2), p);
		p += 2 + n;
		/* a value follows when the help names one: "--top N" */
		value = p[0] == ' ' && p[1] >= 'A' && p[1] <= 'Z';
		for (i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++) {
			in = help_group_has(group, cli_cmds[i]);
			/*
			 * hearth -s SOCK CMD --opt [1], stderr into err; the
			 * binary behind libtool's wrapper script when there
			 * is one (a shell per run would take seconds)
			 */
			snprintf(path, sizeof(path), "%s/.libs/hearth",
			    td_builddir());
			if (access(path, X_OK) != 0)
				snprintf(path, sizeof(path), "%s/hearth",
				    td_builddir());
			else
				snprintf(libs, sizeof(libs), "%s/.libs",
				    td_builddir());
			snprintf(sock, sizeof(sock), "%s/none.sock",
			    tu_tmpdir());
			argv[0] = path;
			argv[1] = (char *)"-s";
			argv[2] = sock;
			argv[3] = (char *)cli_cmds[i];
			argv[4] = name;
			argv[5] = value ? (char *)"1" : NULL;
			argv[6] = NULL;
			ck_assert_int_eq(pipe(fd), 0);
			if ((pid = fork()) == 0) {
				null = open("/dev/null", O_RDWR);
				dup2(null, 0);
				dup2(null, 1);
				dup2(fd[1], 2);
				close(fd[0]);
				if (libs[0] != '\0')
					setenv("LD_LIBRARY_PATH", libs, 1);
				execv(path, argv);
				_exit(127);
			}
			ck_assert_int_gt(pid, 0);
			close(fd[1]);
			len = 0;
			while (len < sizeof(err) - 1 && (r = read(fd[0],
			    err + len, sizeof(err) - 1 - len)) > 0)
				len += (size_t)r;
			err[len] = '\0';
			close(fd[0]);
			ck_assert_int_eq(waitpid(pid, &st, 0), pid);
			ck_assert(WIFEXITED(st) && WEXITSTATUS(st) != 127);
			refused = strstr(err, "does not apply") != NULL;
			ck_assert_msg(refused == !in, "hearth %s %s: help says "
			    "(%s), hearth %s it: %s", cli_cmds[i], name, group,
			    refused ? "refuses" : "takes", err);
		}
		count++;
	}
	return count;
}

/*
 * hearth --help lists each option with the commands that take it, in
 * parentheses at the end of its entry: that is exactly what hearth
 * accepts.
 */
START_TEST(test_cli_help)
{
	char *out, *err, *line, *save = NULL, *gap;
	char opts[1024] = "", desc[2048] = "", group[256];
	int st, n_opts = 0, n_entries = 0;

	st = sh("$HEARTH --help", &out, &err);
	ck_assert_int_eq(st, 0);
	line = strstr(out, "\nOptions");
	ck_assert_ptr_nonnull(line);
	line = strchr(line + 1, '\n');
	ck_assert_ptr_nonnull(line);
	for (line = strtok_r(line + 1, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "  -", 3) == 0) {
			/* the option column ends at a run of spaces */
			gap = strstr(line + 2, "  ");
			if (gap != NULL)
				*gap = '\0';
			strncat(opts, line, sizeof(opts) - strlen(opts) - 2);
			strcat(opts, " ");
			line = gap != NULL ? gap + 1 : line + strlen(line);
		}
		while (*line == ' ')
			line++;
		if (desc[0] != '\0')
			strncat(desc, " ", sizeof(desc) - strlen(desc) - 1);
		strncat(desc, line, sizeof(desc) - strlen(desc) - 1);
		if (!help_group(desc, group, sizeof(group)))
			continue;
		n_opts += help_check_entry(opts, group);
		n_entries++;
		opts[0] = desc[0] = '\0';
	}
	ck_assert_msg(opts[0] == '\0', "options without their commands: %s",
	    opts);
	ck_assert_int_ge(n_entries, 12);
	ck_assert_int_ge(n_opts, 25);
	free(out);
	free(err);
}
END_TEST

START_TEST(test_cli_interrupt)
{
	char		 bin[4200], buf[8192], *last;
	char		 c;
	size_t		 len;
	ssize_t		 n;
	int		 p[2], st;
	pid_t		 pid;
	struct hearth	*h;

	if (daemon_skip())
		return;
	daemon_start();
	snprintf(bin, sizeof(bin), "%s/hearth", td_builddir());
	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execl(bin, "hearth", "-s", g_d.sock, "run", "slow", "--json",
		    "--max-tokens", "100000", "--temperature", "0", "abc",
		    (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	/* once it streams, Ctrl-C */
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	kill(pid, SIGINT);
	len = 0;
	while ((n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0) {
		len += (size_t)n;
		if (len > sizeof(buf) / 2) {	/* keep the tail */
			memmove(buf, buf + len - 1024, 1024);
			len = 1024;
		}
	}
	buf[len] = '\0';
	close(p[0]);
	/* the request ended on the server: its done event, cancelled */
	last = strstr(buf, "{\"type\":\"done\"");
	ck_assert_msg(last != NULL, "no done event: %s", buf);
	ck_assert_msg(strstr(last, "\"reason\":\"cancelled\"") != NULL,
	    "%s", last);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 130,
	    "status %#x", st);
	/* the daemon is fine */
	h = daemon_connect();
	ck_assert_int_eq(hearth_ping(h), 0);
	hearth_close(h);
	daemon_stop();
}
END_TEST

/* Serve connections at path, each on its own thread, until shut down. */
#define SERVE_MAX	64

struct fake_listener {
	int		 fd;
	unsigned	 mode;
	pthread_t	 thr;
	struct fake	 fakes[SERVE_MAX];
	int		 n;
};

static void *
serve_loop(void *arg)
{
	struct fake_listener	*l = arg;
	struct fake		*f;
	int			 c;

	while (l->n < SERVE_MAX && (c = accept(l->fd, NULL, NULL)) >= 0) {
		f = &l->fakes[l->n];
		memset(f, 0, sizeof(*f));
		f->fd = c;
		f->mode = l->mode;
		proto_limits_default(&f->limits);
		if (proto_reader_new(f->limits.max_frame, &f->rd) < 0 ||
		    pthread_create(&f->thr, NULL, fake_main, f) != 0) {
			close(c);
			break;
		}
		l->n++;
	}
	return NULL;
}

static void
serve_start(struct fake_listener *l, unsigned mode)
{
	xsnprintf(g_d.sock, sizeof(g_d.sock), "%s/fake-%d.sock", tu_tmpdir(),
	    (int)getpid());
	l->fd = listen_at(g_d.sock);
	l->mode = mode;
	l->n = 0;
	ck_assert_int_eq(pthread_create(&l->thr, NULL, serve_loop, l), 0);
}

static void
serve_stop(struct fake_listener *l)
{
	int	 i;

	shutdown(l->fd, SHUT_RDWR);
	pthread_join(l->thr, NULL);
	for (i = 0; i < l->n; i++)
		fake_join(&l->fakes[i]);
	close(l->fd);
	unlink(g_d.sock);
}

/* The CLI against the fake: output formats without a daemon. */
START_TEST(test_cli_fake)
{
	struct fake_listener	 l;
	char			*out, *err;
	int			 st;

	serve_start(&l, 0);
	/* thinking between tags off a terminal; only generated text */
	st = sh("$HEARTH -s $SOCK run alpha hi there", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_str_eq(out, "<think>think</think>Hello world");
	ck_assert_str_eq(err, "");
	free(out);
	free(err);
	st = sh("echo hi | $HEARTH -s $SOCK run alpha --hide-thinking "
	    "--temperature 0.5 --top-k 3 --top-p 0.9 --min-p 0.1 --seed 7 "
	    "--max-tokens 9 --stop END --stop '\n\n'", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_str_eq(out, "Hello world");
	free(out);
	free(err);
	st = sh("$HEARTH -s $SOCK run alpha --json --top-logprobs 2 hi",
	    &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_str_eq(out,
	    "{\"type\":\"token\",\"text\":\"think\",\"token\":10,"
	    "\"thinking\":true,\"logprob\":-0.25,\"top\":[[11,-0.25],"
	    "[12,-1.5]]}\n"
	    "{\"type\":\"token\",\"text\":\"Hello\",\"token\":11,"
	    "\"logprob\":-0.25,\"top\":[[11,-0.25],[12,-1.5]]}\n"
	    "{\"type\":\"token\",\"text\":\" world\",\"token\":12,"
	    "\"logprob\":-0.25,\"top\":[[11,-0.25],[12,-1.5]]}\n"
	    "{\"type\":\"done\",\"reason\":\"max_tokens\","
	    "\"prompt_tokens\":4,\"cached_tokens\":1,"
	    "\"generated_tokens\":3,\"prefill_ms\":1.5,"
	    "\"decode_ms\":2.5}\n");
	free(out);
	free(err);
	/* --hide-thinking with --json: no events of the thinking channel */
	st = sh("$HEARTH -s $SOCK run alpha --json --hide-thinking hi",
	    &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_str_eq(out,
	    "{\"type\":\"token\",\"text\":\"Hello\",\"token\":11}\n"
	    "{\"type\":\"token\",\"text\":\" world\",\"token\":12}\n"
	    "{\"type\":\"done\",\"reason\":\"max_tokens\","
	    "\"prompt_tokens\":4,\"cached_tokens\":1,"
	    "\"generated_tokens\":3,\"prefill_ms\":1.5,"
	    "\"decode_ms\":2.5}\n");
	free(out);
	free(err);
	st = sh("echo hi | $HEARTH -s $SOCK chat alpha --json --hide-thinking",
	    &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_msg(strstr(out, "\"thinking\"") == NULL &&
	    strstr(out, "\"text\":\"Hello\"") != NULL &&
	    strstr(out, "\"type\":\"done\"") != NULL, "%s", out);
	free(out);
	free(err);
	/* without it, chat --json has them */
	st = sh("echo hi | $HEARTH -s $SOCK chat alpha --json", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_msg(strstr(out, "\"thinking\":true") != NULL, "%s", out);
	free(out);
	free(err);
	/* chat: one answer line per turn */
	st = sh("printf 'hi\\n\\nagain\\n' | $HEARTH -s $SOCK chat alpha "
	    "--hide-thinking --system 'Be brief.' --no-thinking", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_str_eq(out, "Hello world\nHello world\n");
	free(out);
	free(err);
	/* tables and lines */
	st = sh("$HEARTH -s $SOCK list", &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert(starts(out, "NAME "));
	ck_assert(strstr(out, "\nalpha ") != NULL);
	ck_assert(strstr(out, "\nbeta ") != NULL);
	free(out);
	free(err);
	st = sh("$HEARTH -s $SOCK list --json", &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert_msg(starts(out, "{\"name\":\"alpha\",\"size\":1000,"),
	    "list --json: %s", out);
	free(out);
	free(err);
	st = sh("$HEARTH -s $SOCK show alpha", &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "general.architecture: \"llama\"\n"
	    "llama.context_length: 512\nx.neg: -3\nx.f: 0.5\nx.b: true\n"
	    "tokenizer.ggml.tokens: [string x 512]\n");
	free(out);
	free(err);
	st = sh("printf ab | $HEARTH -s $SOCK tokenize alpha", &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "1 100 101\n");
	free(out);
	free(err);
	st = sh("printf ab | $HEARTH -s $SOCK tokenize alpha --no-bos | "
	    "$HEARTH -s $SOCK detokenize alpha", &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "ab");
	free(out);
	free(err);
	st = sh("echo '[1, 7, 8, 9]' | $HEARTH -s $SOCK eval alpha --ids "
	    "--top 2", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_str_eq(out,
	    "{\"pos\":0,\"token\":7,\"logprob\":-0.5,\"top\":[[7,-0.5],"
	    "[8,-1.5]]}\n"
	    "{\"pos\":1,\"token\":8,\"logprob\":-1.0,\"top\":[[8,-1.0],"
	    "[9,-2.0]]}\n"
	    "{\"pos\":2,\"token\":9,\"logprob\":-1.5,\"top\":[[9,-1.5],"
	    "[10,-2.5]]}\n");
	free(out);
	free(err);
	st = sh("$HEARTH -s $SOCK embed alpha hello", &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "0.600000024 0.800000012\n");
	free(out);
	free(err);
	st = sh("echo '[{\"role\":\"user\",\"content\":\"hi\"}]' | "
	    "$HEARTH -s $SOCK template alpha", &out, &err);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "user:hi\n");
	free(out);
	free(err);
	st = sh("$HEARTH -s $SOCK load alpha --keep-alive -1 && "
	    "$HEARTH -s $SOCK ps && $HEARTH -s $SOCK stats && "
	    "$HEARTH -s $SOCK unload alpha", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert(strstr(out, "alpha: loaded") != NULL);
	ck_assert(strstr(out, "forever") != NULL);
	ck_assert(strstr(out, "server:           fake 1.0") != NULL);
	ck_assert_str_eq(err, "");
	free(out);
	free(err);
	/* pin: the load says so; ps shows the split, pin and pages */
	st = sh("$HEARTH -s $SOCK load --pin alpha && $HEARTH -s $SOCK ps && "
	    "$HEARTH -s $SOCK stats", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_msg(strstr(out, "alpha: loaded, 4.0 KiB resident (2 ms), "
	    "pinned\n") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "NAME       MEMORY     WEIGHTS          KV"
	    "     SCRATCH  PINNED  CLIENTS      TOKENS  KEEP_ALIVE  PAGES\n"
	    "alpha     4.0 KiB     2.0 KiB     1.5 KiB       512 B  yes     "
	    "      2          77  forever     2.0 MiB 2M + 4.0 KiB THP + "
	    "8.0 KiB small\n") != NULL, "%s", out);
	ck_assert(strstr(out, "memory split:     weights 3 B, KV 2 B, "
	    "scratch 1 B\n") != NULL);
	ck_assert(strstr(out, "memory budget:    7.0 GiB\n") != NULL);
	free(out);
	free(err);
	st = sh("$HEARTH -s $SOCK load alpha --unpin --json && "
	    "$HEARTH -s $SOCK ps --json", &out, &err);
	ck_assert_msg(st == 0, "status %d: %s", st, err);
	ck_assert_msg(strstr(out, "\"pinned\":false}\n") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "\"weights\":2048,\"kv\":1536,"
	    "\"scratch\":512,\"bytes_1g\":0,\"bytes_2m\":2097152,"
	    "\"bytes_thp\":4096,\"bytes_small\":8192,\"pinned\":true,"
	    "\"placement\":\"local: one node\"}\n") != NULL, "%s", out);
	free(out);
	free(err);
	st = sh("$HEARTH -s $SOCK ps --pin", &out, &err);
	ck_assert_int_eq(st, 2);
	free(out);
	free(err);
	/* errors: one line, status 1 */
	st = sh("$HEARTH -s $SOCK show nope", &out, &err);
	ck_assert_int_eq(st, 1);
	ck_assert_str_eq(err, "hearth: show: not_found: no model named "
	    "'nope'\n");
	free(out);
	free(err);
	st = sh("$HEARTH -s $SOCK show ../x", &out, &err);
	ck_assert_int_eq(st, 1);
	one_line(err);
	free(out);
	free(err);
	serve_stop(&l);

	serve_start(&l, F_DONE_ERROR);
	st = sh("$HEARTH -s $SOCK run alpha hi", &out, &err);
	ck_assert_int_eq(st, 1);
	ck_assert_str_eq(out, "x");	/* what came before the error */
	ck_assert_str_eq(err, "hearth: run: model_error: the model fell "
	    "over\n");
	free(out);
	free(err);
	serve_stop(&l);

	serve_start(&l, F_CLOSE_MID);
	st = sh("$HEARTH -s $SOCK run alpha hi", &out, &err);
	ck_assert_int_eq(st, 1);
	one_line(err);
	ck_assert(strstr(err, "closed the connection") != NULL);
	free(out);
	free(err);
	serve_stop(&l);
}
END_TEST

static void
teardown_daemon(void)
{
	daemon_stop();
}

static Suite *
client_suite(void)
{
	Suite	*s = suite_create("client");
	TCase	*tc;

	tc = tcase_create("fake");
	tcase_add_test(tc, test_fake_hello);
	tcase_add_test(tc, test_fake_models);
	tcase_add_test(tc, test_fake_load);
	tcase_add_test(tc, test_fake_tokens);
	tcase_add_test(tc, test_fake_generate);
	tcase_add_test(tc, test_fake_chat_render);
	tcase_add_test(tc, test_fake_cancel);
	tcase_add_test(tc, test_fake_interrupt);
	tcase_add_test(tc, test_fake_stale);
	tcase_add_test(tc, test_fake_errors);
	tcase_add_test(tc, test_fake_limits);
	tcase_add_test(tc, test_fake_server_gone);
	tcase_add_test(tc, test_fake_bad_server);
	tcase_add_test(tc, test_fake_version);
	tcase_add_test(tc, test_fake_connect_paths);
	suite_add_tcase(s, tc);

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, NULL, teardown_daemon);
	tcase_add_test(tc, test_daemon_calls);
	tcase_add_test(tc, test_daemon_generate);
	tcase_add_test(tc, test_daemon_threads);
	tcase_add_test(tc, test_daemon_aidreams);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, NULL, teardown_daemon);
	tcase_add_test(tc, test_daemon_errors);
	tcase_add_test(tc, test_cli_errors);
	tcase_add_test(tc, test_cli_help);
	suite_add_tcase(s, tc);

	tc = tcase_create("cli");
	tcase_add_checked_fixture(tc, NULL, teardown_daemon);
	tcase_add_test(tc, test_cli_fake);
	tcase_add_test(tc, test_cli_pipeline);
	tcase_add_test(tc, test_cli_aidreams);
	tcase_add_test(tc, test_cli_interrupt);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr;
	int	 failed;

	signal(SIGPIPE, SIG_IGN);
	tu_tmpdir();	/* made once, shared by the forked tests */
	models_make();
	sr = srunner_create(client_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	tu_tmpdir_free();
	return failed != 0;
}
