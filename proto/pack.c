/*
 * pack.c - names, checks and the packers of every message.
 *
 * proto_request_check and proto_response_check hold every rule a C
 * struct can break (names, ranges, counts, UTF-8); the packers run them
 * first, so a peer never receives what its decoder would refuse, and
 * the decoders run them last, so both directions share one rulebook.
 * Messages are packed with msgpack-c straight into a struct proto_buf,
 * header first, the length patched in at the end.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "proto.h"

/* ---- names ---- */

static const struct {
	enum proto_msg	 type;
	const char	*name;
} msg_names[] = {
	{ PROTO_MSG_HELLO,	"hello" },
	{ PROTO_MSG_LIST,	"list" },
	{ PROTO_MSG_SHOW,	"show" },
	{ PROTO_MSG_LOAD,	"load" },
	{ PROTO_MSG_UNLOAD,	"unload" },
	{ PROTO_MSG_PS,		"ps" },
	{ PROTO_MSG_GENERATE,	"generate" },
	{ PROTO_MSG_CHAT,	"chat" },
	{ PROTO_MSG_RENDER,	"render" },
	{ PROTO_MSG_EVAL,	"eval" },
	{ PROTO_MSG_EMBED,	"embed" },
	{ PROTO_MSG_TOKENIZE,	"tokenize" },
	{ PROTO_MSG_DETOKENIZE,	"detokenize" },
	{ PROTO_MSG_CANCEL,	"cancel" },
	{ PROTO_MSG_STATS,	"stats" },
	{ PROTO_MSG_PING,	"ping" },
	{ PROTO_MSG_REPLY,	"reply" },
	{ PROTO_MSG_TOKEN,	"token" },
	{ PROTO_MSG_PROGRESS,	"progress" },
	{ PROTO_MSG_DONE,	"done" },
	{ PROTO_MSG_ERROR,	"error" },
};

/* Indexed by enum proto_code and enum proto_reason. */
static const char *const code_names[] = {
	NULL, "bad_request", "not_found", "too_large", "busy", "denied",
	"model_error", "internal",
};
static const char *const reason_names[] = {
	NULL, "eos", "stop", "max_tokens", "cancelled", "error",
};

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

static bool
name_eq(const char *name, const char *s, size_t len)
{
	return strlen(name) == len && memcmp(name, s, len) == 0;
}

const char *
proto_msg_name(enum proto_msg t)
{
	size_t	 i;

	for (i = 0; i < nitems(msg_names); i++)
		if (msg_names[i].type == t)
			return msg_names[i].name;
	return NULL;
}

enum proto_msg
proto_msg_lookup(const char *name, size_t len)
{
	size_t	 i;

	for (i = 0; i < nitems(msg_names); i++)
		if (name_eq(msg_names[i].name, name, len))
			return msg_names[i].type;
	return PROTO_MSG_NONE;
}

const char *
proto_code_name(enum proto_code c)
{
	if ((unsigned)c >= nitems(code_names))
		return NULL;
	return code_names[c];
}

enum proto_code
proto_code_lookup(const char *name, size_t len)
{
	size_t	 i;

	for (i = 1; i < nitems(code_names); i++)
		if (name_eq(code_names[i], name, len))
			return (enum proto_code)i;
	return PROTO_E_NONE;
}

const char *
proto_reason_name(enum proto_reason r)
{
	if ((unsigned)r >= nitems(reason_names))
		return NULL;
	return reason_names[r];
}

enum proto_reason
proto_reason_lookup(const char *name, size_t len)
{
	size_t	 i;

	for (i = 1; i < nitems(reason_names); i++)
		if (name_eq(reason_names[i], name, len))
			return (enum proto_reason)i;
	return PROTO_REASON_NONE;
}

static const char *const numa_names[] = {
	"auto", "local", "interleave", "replicate",
};

const char *
proto_numa_name(enum proto_numa n)
{
	if ((unsigned)n >= nitems(numa_names))
		return NULL;
	return numa_names[n];
}

int
proto_numa_parse(const char *s, enum proto_numa *out)
{
	size_t	 i;

	for (i = 0; s != NULL && i < nitems(numa_names); i++)
		if (strcmp(numa_names[i], s) == 0) {
			*out = (enum proto_numa)i;
			return 0;
		}
	return -EINVAL;
}

bool
proto_msg_has_reply(enum proto_msg t)
{
	return t >= PROTO_MSG_HELLO && t <= PROTO_MSG_PING &&
	    t != PROTO_MSG_GENERATE && t != PROTO_MSG_CHAT;
}

/* ---- errors ---- */

int
proto_err_set(struct proto_err *err, enum proto_code code, int rc,
    const char *fmt, ...)
{
	va_list	 ap;

	if (err == NULL)
		return rc;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return rc;
}

/* "what: field 'path': problem" (or "what: problem" without a path). */
static int
fail(struct proto_err *e, enum proto_code code, int rc, const char *what,
    const char *path, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int
fail(struct proto_err *e, enum proto_code code, int rc, const char *what,
    const char *path, const char *fmt, ...)
{
	char	 m[PROTO_ERR_MAX];
	va_list	 ap;

	if (e == NULL)
		return rc;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	if (path == NULL)
		return proto_err_set(e, code, rc, "%s: %s", what, m);
	return proto_err_set(e, code, rc, "%s: field '%s': %s", what, path, m);
}

#define BAD(path, ...) \
	fail(e, PROTO_E_BAD_REQUEST, -EINVAL, what, path, __VA_ARGS__)
#define BIG(path, ...) \
	fail(e, PROTO_E_TOO_LARGE, -EMSGSIZE, what, path, __VA_ARGS__)

/* ---- strings ---- */

size_t
proto_utf8_valid(const void *s, size_t len)
{
	const uint8_t	*p = s;
	size_t		 i = 0, n, k;
	uint32_t	 cp, min;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			n = 2;
			cp = p[i] & 0x1f;
			min = 0x80;
		} else if ((p[i] & 0xf0) == 0xe0) {
			n = 3;
			cp = p[i] & 0x0f;
			min = 0x800;
		} else if ((p[i] & 0xf8) == 0xf0) {
			n = 4;
			cp = p[i] & 0x07;
			min = 0x10000;
		} else
			return i;
		if (len - i < n)
			return i;
		for (k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return i;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n;
	}
	return i;
}

/* Text: len bytes of UTF-8 (NUL allowed), at most max. */
static int
check_text(struct proto_err *e, const char *what, const char *path,
    const char *s, size_t len, size_t max)
{
	size_t	 v;

	if (s == NULL)
		return BAD(path, "missing");
	if (len > max)
		return BIG(path, "%zu bytes, over the limit of %zu", len, max);
	if ((v = proto_utf8_valid(s, len)) != len)
		return BAD(path, "invalid UTF-8 at byte %zu", v);
	return 0;
}

/* A label: UTF-8 without control characters, at most max bytes. */
static int
check_label(struct proto_err *e, const char *what, const char *path,
    const char *s, size_t max, bool empty_ok)
{
	size_t	 n, i, v;

	if (s == NULL)
		return BAD(path, "missing");
	n = strnlen(s, max + 1);
	if (n > max)
		return BIG(path, "longer than %zu bytes", max);
	if (n == 0 && !empty_ok)
		return BAD(path, "empty");
	if ((v = proto_utf8_valid(s, n)) != n)
		return BAD(path, "invalid UTF-8 at byte %zu", v);
	for (i = 0; i < n; i++)
		if ((uint8_t)s[i] < 0x20 || s[i] == 0x7f)
			return BAD(path, "control character at byte %zu", i);
	return 0;
}

/* An identifier: 1..PROTO_MAX_IDENT of [A-Za-z0-9_.-], no "..". */
static int
check_ident(struct proto_err *e, const char *what, const char *path,
    const char *s)
{
	size_t	 n, i;
	char	 c;

	if (s == NULL)
		return BAD(path, "missing");
	n = strnlen(s, PROTO_MAX_IDENT + 1);
	if (n == 0)
		return BAD(path, "empty");
	if (n > PROTO_MAX_IDENT)
		return BIG(path, "longer than %d bytes", PROTO_MAX_IDENT);
	for (i = 0; i < n; i++) {
		c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		    c == '.'))
			return BAD(path, "character 0x%02x at byte %zu is "
			    "not one of A-Z a-z 0-9 _ . -", (uint8_t)c, i);
	}
	if (strstr(s, "..") != NULL)
		return BAD(path, "contains \"..\"");
	return 0;
}

static int
check_model(struct proto_err *e, const char *what, const char *path,
    const char *s)
{
	size_t	 n, i;
	int	 rc;

	if (s == NULL)
		return BAD(path, "missing");
	n = strnlen(s, PROTO_MAX_NAME + 1);
	if (n > PROTO_MAX_NAME)
		return BIG(path, "model name longer than %d bytes",
		    PROTO_MAX_NAME);
	if ((rc = check_label(e, what, path, s, PROTO_MAX_NAME, false)) < 0)
		return rc;
	for (i = 0; i < n; i++)
		if (s[i] == '/' || s[i] == '\\')
			return BAD(path, "model name contains '%c'", s[i]);
	if (strstr(s, "..") != NULL)
		return BAD(path, "model name contains \"..\"");
	if (s[0] == '.')
		return BAD(path, "model name starts with '.'");
	return 0;
}

int
proto_check_model_name(const char *name, struct proto_err *err)
{
	return check_model(err, "model", NULL, name);
}

int
proto_check_version(uint32_t peer, struct proto_err *err)
{
	if (peer == PROTO_VERSION)
		return 0;
	return proto_err_set(err, PROTO_E_BAD_REQUEST, -EPROTONOSUPPORT,
	    "protocol version mismatch: the peer speaks version %u, this "
	    "side speaks version %d; upgrade the older of hearth and hearthd",
	    peer, PROTO_VERSION);
}

/* ---- limits ---- */

void
proto_limits_default(struct proto_limits *l)
{
	l->max_frame = PROTO_MAX_FRAME_DEFAULT;
	l->max_objects = PROTO_MAX_OBJECTS_DEFAULT;
	l->max_text = PROTO_MAX_TEXT_DEFAULT;
	l->max_ids = PROTO_MAX_IDS_DEFAULT;
	l->max_stop = PROTO_MAX_STOP_DEFAULT;
	l->max_stop_len = PROTO_MAX_STOP_LEN_DEFAULT;
	l->max_messages = PROTO_MAX_MESSAGES_DEFAULT;
	l->max_items = PROTO_MAX_ITEMS_DEFAULT;
}

int
proto_limits_check(const struct proto_limits *l, struct proto_err *e)
{
	static const struct {
		const char	*name;
		size_t		 off;
		uint32_t	 min, max;
	} t[] = {
	{ "max_frame", offsetof(struct proto_limits, max_frame),
	    PROTO_MAX_FRAME_MIN, PROTO_MAX_FRAME_LIMIT },
	{ "max_objects", offsetof(struct proto_limits, max_objects),
	    64, 1u << 26 },
	{ "max_text", offsetof(struct proto_limits, max_text), 1,
	    PROTO_MAX_FRAME_LIMIT },
	{ "max_ids", offsetof(struct proto_limits, max_ids), 1, 1u << 26 },
	{ "max_stop", offsetof(struct proto_limits, max_stop), 0, 1024 },
	{ "max_stop_len", offsetof(struct proto_limits, max_stop_len), 1,
	    1u << 16 },
	{ "max_messages", offsetof(struct proto_limits, max_messages), 1,
	    1u << 20 },
	{ "max_items", offsetof(struct proto_limits, max_items), 1,
	    1u << 24 },
	};
	const char	*what = "limits";
	uint32_t	 v;
	size_t		 i;

	for (i = 0; i < nitems(t); i++) {
		memcpy(&v, (const char *)l + t[i].off, sizeof(v));
		if (v < t[i].min || v > t[i].max)
			return BAD(t[i].name, "%u is not in %u..%u", v,
			    t[i].min, t[i].max);
	}
	return 0;
}

/* ---- request checks ---- */

void
proto_request_init(struct proto_request *r, enum proto_msg type, uint64_t id)
{
	memset(r, 0, sizeof(*r));
	r->type = type;
	r->id = id;
	switch (type) {
	case PROTO_MSG_HELLO:
		r->u.hello.version = PROTO_VERSION;
		break;
	case PROTO_MSG_GENERATE:
		r->u.generate.opts.max_tokens = -1;
		r->u.generate.opts.stream = true;
		break;
	case PROTO_MSG_CHAT:
	case PROTO_MSG_RENDER:
		r->u.chat.opts.max_tokens = -1;
		r->u.chat.opts.stream = true;
		break;
	case PROTO_MSG_EVAL:
		r->u.eval.add_bos = true;
		break;
	case PROTO_MSG_TOKENIZE:
		r->u.tokenize.add_bos = true;
		break;
	default:
		break;
	}
}

void
proto_response_init(struct proto_response *r, enum proto_msg type,
    uint64_t id)
{
	memset(r, 0, sizeof(*r));
	r->type = type;
	r->id = id;
}

static int
check_ids(struct proto_err *e, const char *what, const char *path,
    const int32_t *ids, uint32_t n, uint32_t max)
{
	uint32_t i;

	if (n > max)
		return BIG(path, "%u token ids, over the limit of %u", n, max);
	if (ids == NULL && n > 0)
		return BAD(path, "missing");
	for (i = 0; i < n; i++)
		if (ids[i] < 0)
			return BAD(path, "[%u]: token id %d is negative", i,
			    ids[i]);
	return 0;
}

static int
check_floats(struct proto_err *e, const char *what, const char *path,
    const float *v, size_t n)
{
	size_t	 i;

	if (v == NULL && n > 0)
		return BAD(path, "missing");
	for (i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return BAD(path, "[%zu]: not a finite number", i);
	return 0;
}

static int
check_input(struct proto_err *e, const char *what, const char *textname,
    const struct proto_input *in, const struct proto_limits *l)
{
	if (in->text != NULL && in->ids != NULL)
		return BAD(NULL, "give either '%s' or 'ids', not both",
		    textname);
	if (in->text != NULL)
		return check_text(e, what, textname, in->text, in->text_len,
		    l->max_text);
	if (in->ids == NULL)
		return BAD(NULL, "missing field '%s' or 'ids'", textname);
	return check_ids(e, what, "ids", in->ids, in->n_ids, l->max_ids);
}

static int
check_range(struct proto_err *e, const char *what, const char *path,
    double v, double lo, double hi, bool lo_open)
{
	if (!isfinite(v))
		return BAD(path, "not a finite number");
	if (v < lo || v > hi || (lo_open && v == lo))
		return BAD(path, "%g is not in %s%g..%g]", v,
		    lo_open ? "(" : "[", lo, hi);
	return 0;
}

static int
check_sampling(struct proto_err *e, const char *what,
    const struct proto_sampling *s)
{
	int	 rc;

	if (s->set & ~PROTO_S_ALL)
		return BAD(NULL, "unknown sampling bits 0x%x", s->set);
	if ((s->set & PROTO_S_TEMPERATURE) && (rc = check_range(e, what,
	    "temperature", s->temperature, 0, PROTO_MAX_TEMPERATURE,
	    false)) < 0)
		return rc;
	if ((s->set & PROTO_S_TOP_K) && s->top_k < 0)
		return BAD("top_k", "%d is negative", s->top_k);
	if ((s->set & PROTO_S_TOP_P) && (rc = check_range(e, what, "top_p",
	    s->top_p, 0, 1, false)) < 0)
		return rc;
	if ((s->set & PROTO_S_MIN_P) && (rc = check_range(e, what, "min_p",
	    s->min_p, 0, 1, false)) < 0)
		return rc;
	if ((s->set & PROTO_S_REPEAT_PENALTY) && (rc = check_range(e, what,
	    "repeat_penalty", s->repeat_penalty, 0, PROTO_MAX_PENALTY,
	    true)) < 0)
		return rc;
	if ((s->set & PROTO_S_PRESENCE_PENALTY) && (rc = check_range(e, what,
	    "presence_penalty", s->presence_penalty, -PROTO_MAX_PENALTY,
	    PROTO_MAX_PENALTY, false)) < 0)
		return rc;
	if ((s->set & PROTO_S_FREQUENCY_PENALTY) && (rc = check_range(e,
	    what, "frequency_penalty", s->frequency_penalty,
	    -PROTO_MAX_PENALTY, PROTO_MAX_PENALTY, false)) < 0)
		return rc;
	if ((s->set & PROTO_S_PENALTY_LAST_N) && (s->penalty_last_n < -1 ||
	    s->penalty_last_n > PROTO_MAX_PENALTY_LAST_N))
		return BAD("penalty_last_n", "%d is not in -1..%d",
		    s->penalty_last_n, PROTO_MAX_PENALTY_LAST_N);
	return 0;
}

static int
check_keep_alive(struct proto_err *e, const char *what, bool has, int64_t v)
{
	if (has && (v < -1 || v > PROTO_MAX_KEEP_ALIVE))
		return BAD("keep_alive", "%lld is not in -1..%d", (long long)v,
		    PROTO_MAX_KEEP_ALIVE);
	return 0;
}

static int
check_gen_opts(struct proto_err *e, const char *what,
    const struct proto_gen_opts *o, const struct proto_limits *l)
{
	char	 path[32];
	uint32_t i;
	size_t	 n;
	int	 rc;

	if (o->max_tokens < -1)
		return BAD("max_tokens", "%d is negative", o->max_tokens);
	if (o->n_stop > l->max_stop)
		return BIG("stop", "%u stop strings, over the limit of %u",
		    o->n_stop, l->max_stop);
	if (o->n_stop > 0 && o->stop == NULL)
		return BAD("stop", "missing");
	for (i = 0; i < o->n_stop; i++) {
		snprintf(path, sizeof(path), "stop[%u]", i);
		if (o->stop[i] == NULL)
			return BAD(path, "missing");
		n = strnlen(o->stop[i], (size_t)l->max_stop_len + 1);
		if (n == 0)
			return BAD(path, "empty");
		if ((rc = check_text(e, what, path, o->stop[i], n,
		    l->max_stop_len)) < 0)
			return rc;
	}
	if ((rc = check_sampling(e, what, &o->sampling)) < 0)
		return rc;
	if (o->top_logprobs > PROTO_MAX_TOP)
		return BAD("top_logprobs", "%u is over the limit of %d",
		    o->top_logprobs, PROTO_MAX_TOP);
	return check_keep_alive(e, what, o->has_keep_alive, o->keep_alive);
}

static int
check_chat(struct proto_err *e, const char *what, const struct proto_chat *c,
    const struct proto_limits *l, bool opts)
{
	char	 path[48];
	uint32_t i;
	int	 rc;

	if ((rc = check_model(e, what, "model", c->model)) < 0)
		return rc;
	if (c->n_messages == 0 || c->messages == NULL)
		return BAD("messages", "missing or empty");
	if (c->n_messages > l->max_messages)
		return BIG("messages", "%u messages, over the limit of %u",
		    c->n_messages, l->max_messages);
	for (i = 0; i < c->n_messages; i++) {
		snprintf(path, sizeof(path), "messages[%u].role", i);
		if ((rc = check_ident(e, what, path, c->messages[i].role)) < 0)
			return rc;
		snprintf(path, sizeof(path), "messages[%u].content", i);
		if ((rc = check_text(e, what, path, c->messages[i].content,
		    c->messages[i].content_len, l->max_text)) < 0)
			return rc;
	}
	if ((unsigned)c->thinking > PROTO_THINK_OFF)
		return BAD("thinking", "bad value %d", (int)c->thinking);
	if (c->template != NULL &&
	    (rc = check_ident(e, what, "template", c->template)) < 0)
		return rc;
	if (opts)
		return check_gen_opts(e, what, &c->opts, l);
	return 0;
}

int
proto_request_check(const struct proto_request *r,
    const struct proto_limits *l, struct proto_err *e)
{
	const char	*what = proto_msg_name(r->type);
	int		 rc;

	if (r->type < PROTO_MSG_HELLO || r->type > PROTO_MSG_PING) {
		what = "request";
		return BAD("type", "%d is not a request type", (int)r->type);
	}
	if (r->id == 0)
		return BAD("id", "must be at least 1");
	switch (r->type) {
	case PROTO_MSG_HELLO:
		return check_label(e, what, "client", r->u.hello.client,
		    PROTO_MAX_LABEL, false);
	case PROTO_MSG_SHOW:
		return check_model(e, what, "model", r->u.show.model);
	case PROTO_MSG_UNLOAD:
		return check_model(e, what, "model", r->u.unload.model);
	case PROTO_MSG_LOAD:
		if ((rc = check_model(e, what, "model", r->u.load.model)) < 0)
			return rc;
		return check_keep_alive(e, what, r->u.load.has_keep_alive,
		    r->u.load.keep_alive);
	case PROTO_MSG_GENERATE:
		if ((rc = check_model(e, what, "model",
		    r->u.generate.model)) < 0)
			return rc;
		if ((rc = check_input(e, what, "prompt", &r->u.generate.input,
		    l)) < 0)
			return rc;
		return check_gen_opts(e, what, &r->u.generate.opts, l);
	case PROTO_MSG_CHAT:
		return check_chat(e, what, &r->u.chat, l, true);
	case PROTO_MSG_RENDER:
		return check_chat(e, what, &r->u.chat, l, false);
	case PROTO_MSG_EVAL:
		if ((rc = check_model(e, what, "model", r->u.eval.model)) < 0)
			return rc;
		if ((rc = check_input(e, what, "text", &r->u.eval.input,
		    l)) < 0)
			return rc;
		if (r->u.eval.top > PROTO_MAX_TOP)
			return BAD("top", "%u is over the limit of %d",
			    r->u.eval.top, PROTO_MAX_TOP);
		return 0;
	case PROTO_MSG_EMBED:
		if ((rc = check_model(e, what, "model", r->u.embed.model)) < 0)
			return rc;
		return check_input(e, what, "text", &r->u.embed.input, l);
	case PROTO_MSG_TOKENIZE:
		if ((rc = check_model(e, what, "model",
		    r->u.tokenize.model)) < 0)
			return rc;
		return check_text(e, what, "text", r->u.tokenize.text,
		    r->u.tokenize.text_len, l->max_text);
	case PROTO_MSG_DETOKENIZE:
		if ((rc = check_model(e, what, "model",
		    r->u.detokenize.model)) < 0)
			return rc;
		if (r->u.detokenize.ids == NULL)
			return BAD("ids", "missing");
		return check_ids(e, what, "ids", r->u.detokenize.ids,
		    r->u.detokenize.n_ids, l->max_ids);
	case PROTO_MSG_CANCEL:
		if (r->u.cancel.target == 0)
			return BAD("target", "must be at least 1");
		return 0;
	default:
		return 0;
	}
}

/* ---- response checks ---- */

static int
check_reply(const struct proto_response *r, const struct proto_limits *l,
    struct proto_err *e, const char *what)
{
	char	 path[64];
	uint32_t i;
	size_t	 npos;
	int	 rc;

	switch (r->request) {
	case PROTO_MSG_HELLO:
		if ((rc = check_label(e, what, "server", r->u.hello.server,
		    PROTO_MAX_LABEL, false)) < 0)
			return rc;
		if ((rc = proto_limits_check(&r->u.hello.limits, e)) < 0)
			return fail(e, PROTO_E_BAD_REQUEST, rc, what, NULL,
			    "%s", e != NULL ? e->msg : "limits");
		return 0;
	case PROTO_MSG_LIST:
		if (r->u.list.n_models > l->max_items)
			return BIG("models", "%u models, over the limit of %u",
			    r->u.list.n_models, l->max_items);
		if (r->u.list.n_models > 0 && r->u.list.models == NULL)
			return BAD("models", "missing");
		for (i = 0; i < r->u.list.n_models; i++) {
			const struct proto_model_info *m = &r->u.list.models[i];

			snprintf(path, sizeof(path), "models[%u].name", i);
			if ((rc = check_model(e, what, path, m->name)) < 0)
				return rc;
			snprintf(path, sizeof(path), "models[%u].arch", i);
			if ((rc = check_label(e, what, path, m->arch,
			    PROTO_MAX_LABEL, true)) < 0)
				return rc;
			snprintf(path, sizeof(path), "models[%u].quant", i);
			if ((rc = check_label(e, what, path, m->quant,
			    PROTO_MAX_LABEL, true)) < 0)
				return rc;
			snprintf(path, sizeof(path), "models[%u].license", i);
			if ((rc = check_label(e, what, path, m->license,
			    PROTO_MAX_LABEL, true)) < 0)
				return rc;
		}
		return 0;
	case PROTO_MSG_SHOW:
		if ((rc = check_model(e, what, "model", r->u.show.model)) < 0)
			return rc;
		if (r->u.show.n_meta > l->max_items)
			return BIG("metadata", "%u entries, over the limit of %u",
			    r->u.show.n_meta, l->max_items);
		if (r->u.show.n_meta > 0 && r->u.show.meta == NULL)
			return BAD("metadata", "missing");
		for (i = 0; i < r->u.show.n_meta; i++) {
			const struct proto_meta *m = &r->u.show.meta[i];

			snprintf(path, sizeof(path), "metadata[%u]", i);
			if ((rc = check_label(e, what, path, m->key,
			    PROTO_MAX_LABEL, false)) < 0)
				return rc;
			snprintf(path, sizeof(path), "metadata.%.48s", m->key);
			switch (m->type) {
			case PROTO_META_BOOL:
			case PROTO_META_INT:
			case PROTO_META_UINT:
				break;
			case PROTO_META_FLOAT:
				if (!isfinite(m->f))
					return BAD(path, "not a finite number");
				break;
			case PROTO_META_STR:
				if ((rc = check_text(e, what, path, m->s,
				    m->s_len, l->max_text)) < 0)
					return rc;
				break;
			case PROTO_META_ARRAY:
				if ((rc = check_ident(e, what, path,
				    m->elem)) < 0)
					return rc;
				break;
			default:
				return BAD(path, "bad type %d", (int)m->type);
			}
		}
		return 0;
	case PROTO_MSG_LOAD:
		if ((rc = check_model(e, what, "model", r->u.load.model)) < 0)
			return rc;
		return check_range(e, what, "ms", r->u.load.ms, 0, INFINITY,
		    false);
	case PROTO_MSG_PS:
		if (r->u.ps.n_models > l->max_items)
			return BIG("models", "%u models, over the limit of %u",
			    r->u.ps.n_models, l->max_items);
		if (r->u.ps.n_models > 0 && r->u.ps.models == NULL)
			return BAD("models", "missing");
		for (i = 0; i < r->u.ps.n_models; i++) {
			const struct proto_ps_entry *m = &r->u.ps.models[i];

			snprintf(path, sizeof(path), "models[%u].name", i);
			if ((rc = check_model(e, what, path, m->name)) < 0)
				return rc;
			snprintf(path, sizeof(path), "models[%u].hugepages", i);
			if ((rc = check_ident(e, what, path,
			    m->hugepages)) < 0)
				return rc;
			snprintf(path, sizeof(path), "models[%u].keep_alive",
			    i);
			if (m->keep_alive < -1)
				return BAD(path, "%lld is below -1",
				    (long long)m->keep_alive);
			snprintf(path, sizeof(path), "models[%u].placement",
			    i);
			if (m->placement != NULL && (rc = check_label(e, what,
			    path, m->placement, PROTO_MAX_LABEL, true)) < 0)
				return rc;
		}
		return 0;
	case PROTO_MSG_RENDER:
		if ((rc = check_text(e, what, "prompt", r->u.render.prompt,
		    r->u.render.prompt_len, l->max_text)) < 0)
			return rc;
		return check_ident(e, what, "template", r->u.render.template);
	case PROTO_MSG_EVAL:
		if ((rc = check_ids(e, what, "tokens", r->u.eval.tokens,
		    r->u.eval.n_tokens, l->max_ids)) < 0)
			return rc;
		if (r->u.eval.top > PROTO_MAX_TOP)
			return BAD("top", "%u is over the limit of %d",
			    r->u.eval.top, PROTO_MAX_TOP);
		npos = r->u.eval.n_tokens > 0 ? r->u.eval.n_tokens - 1 : 0;
		if ((rc = check_floats(e, what, "logprobs", r->u.eval.logprobs,
		    npos)) < 0)
			return rc;
		if ((rc = check_ids(e, what, "top_ids", r->u.eval.top_ids,
		    (uint32_t)(npos * r->u.eval.top), UINT32_MAX)) < 0)
			return rc;
		return check_floats(e, what, "top_logprobs",
		    r->u.eval.top_logprobs, npos * r->u.eval.top);
	case PROTO_MSG_EMBED:
		if (r->u.embed.n == 0 || r->u.embed.n > PROTO_MAX_EMBD)
			return BAD("embedding", "%u dimensions, not in 1..%d",
			    r->u.embed.n, PROTO_MAX_EMBD);
		return check_floats(e, what, "embedding", r->u.embed.embedding,
		    r->u.embed.n);
	case PROTO_MSG_TOKENIZE:
		if (r->u.tokenize.ids == NULL)
			return BAD("ids", "missing");
		return check_ids(e, what, "ids", r->u.tokenize.ids,
		    r->u.tokenize.n_ids, l->max_ids);
	case PROTO_MSG_DETOKENIZE:
		return check_text(e, what, "text", r->u.detokenize.text,
		    r->u.detokenize.text_len, l->max_text);
	case PROTO_MSG_UNLOAD:
	case PROTO_MSG_CANCEL:
	case PROTO_MSG_STATS:
	case PROTO_MSG_PING:
		return 0;
	default:
		return BAD("request", "%d is not a request with a reply",
		    (int)r->request);
	}
}

int
proto_response_check(const struct proto_response *r,
    const struct proto_limits *l, struct proto_err *e)
{
	const char		*what = proto_msg_name(r->type);
	const struct proto_token *t;
	const struct proto_done	*d;
	char			 buf[32];
	int			 rc;

	if (r->type < PROTO_MSG_REPLY || r->type > PROTO_MSG_ERROR) {
		what = "response";
		return BAD("type", "%d is not a response type", (int)r->type);
	}
	if (r->id == 0 && r->type != PROTO_MSG_ERROR)
		return BAD("id", "must be at least 1");
	switch (r->type) {
	case PROTO_MSG_REPLY:
		if (!proto_msg_has_reply(r->request))
			return BAD("request", "%d is not a request with a reply",
			    (int)r->request);
		snprintf(buf, sizeof(buf), "%s reply",
		    proto_msg_name(r->request));
		return check_reply(r, l, e, buf);
	case PROTO_MSG_TOKEN:
		t = &r->u.token;
		if ((rc = check_text(e, what, "text", t->text, t->text_len,
		    PROTO_MAX_PIECE)) < 0)
			return rc;
		if (t->token < 0)
			return BAD("token", "token id %d is negative", t->token);
		if (t->has_logprob && !isfinite(t->logprob))
			return BAD("logprob", "not a finite number");
		if (t->n_top > PROTO_MAX_TOP)
			return BAD("top_ids", "%u alternatives, over the limit "
			    "of %d", t->n_top, PROTO_MAX_TOP);
		if (t->n_top > 0 && (t->top_ids == NULL ||
		    t->top_logprobs == NULL))
			return BAD("top_ids", "missing");
		if ((rc = check_ids(e, what, "top_ids", t->top_ids, t->n_top,
		    PROTO_MAX_TOP)) < 0)
			return rc;
		return check_floats(e, what, "top_logprobs", t->top_logprobs,
		    t->n_top);
	case PROTO_MSG_PROGRESS:
		if (r->u.progress.done > r->u.progress.total)
			return BAD("done", "%llu is more than total %llu",
			    (unsigned long long)r->u.progress.done,
			    (unsigned long long)r->u.progress.total);
		return 0;
	case PROTO_MSG_DONE:
		d = &r->u.done;
		if (proto_reason_name(d->reason) == NULL)
			return BAD("reason", "bad value %d", (int)d->reason);
		if (d->cached_tokens > d->prompt_tokens)
			return BAD("cached_tokens", "%u is more than "
			    "prompt_tokens %u", d->cached_tokens,
			    d->prompt_tokens);
		if ((rc = check_range(e, what, "prefill_ms", d->prefill_ms, 0,
		    INFINITY, false)) < 0)
			return rc;
		if ((rc = check_range(e, what, "decode_ms", d->decode_ms, 0,
		    INFINITY, false)) < 0)
			return rc;
		if (d->text != NULL && (rc = check_text(e, what, "text",
		    d->text, d->text_len, l->max_text)) < 0)
			return rc;
		if (d->thinking != NULL && (rc = check_text(e, what,
		    "thinking", d->thinking, d->thinking_len,
		    l->max_text)) < 0)
			return rc;
		if (d->reason != PROTO_REASON_ERROR) {
			if (d->error_code != PROTO_E_NONE ||
			    d->error_message != NULL)
				return BAD("error", "set but the reason is "
				    "not error");
			return 0;
		}
		if (proto_code_name(d->error_code) == NULL)
			return BAD("error.code", "bad value %d",
			    (int)d->error_code);
		if (d->error_message == NULL)
			return BAD("error.message", "missing");
		return check_text(e, what, "error.message", d->error_message,
		    strnlen(d->error_message, PROTO_MAX_MESSAGE + 1),
		    PROTO_MAX_MESSAGE);
	case PROTO_MSG_ERROR:
		if (proto_code_name(r->u.error.code) == NULL)
			return BAD("error.code", "bad value %d",
			    (int)r->u.error.code);
		if (r->u.error.message == NULL)
			return BAD("error.message", "missing");
		return check_text(e, what, "error.message", r->u.error.message,
		    strnlen(r->u.error.message, PROTO_MAX_MESSAGE + 1),
		    PROTO_MAX_MESSAGE);
	default:
		return 0;
	}
}

/* ---- packing ---- */

struct pk {
	msgpack_packer	 mp;
	struct proto_buf *b;
	size_t		 start;		/* offset of the frame header in b */
	uint32_t	 max_frame;
	uint64_t	 objects;	/* msgpack objects written */
	int		 rc;		/* first failure: -ENOMEM, -EMSGSIZE */
};

static int
pk_write(void *data, const char *buf, size_t len)
{
	struct pk *k = data;

	if (k->rc != 0)
		return -1;
	if (k->b->len - k->start - PROTO_HDR_SIZE + len > k->max_frame) {
		k->rc = -EMSGSIZE;
		return -1;
	}
	if (proto_buf_append(k->b, buf, len) < 0) {
		k->rc = -ENOMEM;
		return -1;
	}
	return 0;
}

static void
p_map(struct pk *k, size_t n)
{
	k->objects++;
	msgpack_pack_map(&k->mp, n);
}

static void
p_arr(struct pk *k, size_t n)
{
	k->objects++;
	msgpack_pack_array(&k->mp, n);
}

static void
p_str(struct pk *k, const char *s, size_t len)
{
	k->objects++;
	msgpack_pack_str_with_body(&k->mp, s, len);
}

static void
p_cstr(struct pk *k, const char *s)
{
	p_str(k, s, strlen(s));
}

static void
p_u64(struct pk *k, uint64_t v)
{
	k->objects++;
	msgpack_pack_uint64(&k->mp, v);
}

static void
p_i64(struct pk *k, int64_t v)
{
	k->objects++;
	msgpack_pack_int64(&k->mp, v);
}

static void
p_f32(struct pk *k, float v)
{
	k->objects++;
	msgpack_pack_float(&k->mp, v);
}

static void
p_f64(struct pk *k, double v)
{
	k->objects++;
	msgpack_pack_double(&k->mp, v);
}

static void
p_bool(struct pk *k, bool v)
{
	k->objects++;
	if (v)
		msgpack_pack_true(&k->mp);
	else
		msgpack_pack_false(&k->mp);
}

static void
p_ids(struct pk *k, const int32_t *ids, size_t n)
{
	size_t	 i;

	p_arr(k, n);
	for (i = 0; i < n && k->rc == 0; i++)
		p_u64(k, (uint64_t)ids[i]);
}

static void
p_floats(struct pk *k, const float *v, size_t n)
{
	size_t	 i;

	p_arr(k, n);
	for (i = 0; i < n && k->rc == 0; i++)
		p_f32(k, v[i]);
}

/*
 * The top-level map is written as a map16 whose count is patched at the
 * end, so optional fields need not be counted in advance; keys counts
 * them as they are written.
 */
static void
pk_begin(struct pk *k, struct proto_buf *b, uint32_t max_frame)
{
	static const char hdr[PROTO_HDR_SIZE + 3] = { 0, 0, 0, 0,
	    (char)0xde, 0, 0 };

	memset(k, 0, sizeof(*k));
	k->b = b;
	k->start = b->len;
	k->max_frame = max_frame;
	msgpack_packer_init(&k->mp, k, pk_write);
	if (proto_buf_append(b, hdr, sizeof(hdr)) < 0)
		k->rc = -ENOMEM;
	k->objects = 1;
}

static int
pk_end(struct pk *k, unsigned keys, const struct proto_limits *l,
    struct proto_err *err, const char *what)
{
	uint8_t	*p;
	size_t	 body;
	int	 rc = k->rc;

	if (rc == 0 && k->objects > l->max_objects)
		rc = -EMSGSIZE;
	if (rc != 0) {
		k->b->len = k->start;
		if (rc == -ENOMEM)
			return proto_err_set(err, PROTO_E_INTERNAL, rc,
			    "%s: out of memory", what);
		if (k->objects > l->max_objects)
			return proto_err_set(err, PROTO_E_TOO_LARGE, rc,
			    "%s: %llu msgpack objects, over the limit of %u",
			    what, (unsigned long long)k->objects,
			    l->max_objects);
		return proto_err_set(err, PROTO_E_TOO_LARGE, rc,
		    "%s: more than the maximum frame of %u bytes", what,
		    k->max_frame);
	}
	p = k->b->data + k->start;
	body = k->b->len - k->start - PROTO_HDR_SIZE;
	proto_frame_hdr(p, (uint32_t)body);
	p[PROTO_HDR_SIZE + 1] = (uint8_t)(keys >> 8);
	p[PROTO_HDR_SIZE + 2] = (uint8_t)keys;
	return 0;
}

/* Key-value helpers counting keys in *n. */
#define KEY(name)	(++*n, p_cstr(k, (name)))

static void
pack_input(struct pk *k, unsigned *n, const char *textname,
    const struct proto_input *in)
{
	if (in->text != NULL) {
		KEY(textname);
		p_str(k, in->text, in->text_len);
	} else {
		KEY("ids");
		p_ids(k, in->ids, in->n_ids);
	}
}

static void
pack_keep_alive(struct pk *k, unsigned *n, bool has, int64_t v)
{
	if (has) {
		KEY("keep_alive");
		p_i64(k, v);
	}
}

static void
pack_gen_opts(struct pk *k, unsigned *n, const struct proto_gen_opts *o)
{
	const struct proto_sampling *s = &o->sampling;
	uint32_t i;

	if (o->max_tokens >= 0) {
		KEY("max_tokens");
		p_u64(k, (uint64_t)o->max_tokens);
	}
	if (o->n_stop > 0) {
		KEY("stop");
		p_arr(k, o->n_stop);
		for (i = 0; i < o->n_stop; i++)
			p_cstr(k, o->stop[i]);
	}
	if (s->set & PROTO_S_TEMPERATURE) {
		KEY("temperature");
		p_f32(k, s->temperature);
	}
	if (s->set & PROTO_S_TOP_K) {
		KEY("top_k");
		p_u64(k, (uint64_t)s->top_k);
	}
	if (s->set & PROTO_S_TOP_P) {
		KEY("top_p");
		p_f32(k, s->top_p);
	}
	if (s->set & PROTO_S_MIN_P) {
		KEY("min_p");
		p_f32(k, s->min_p);
	}
	if (s->set & PROTO_S_REPEAT_PENALTY) {
		KEY("repeat_penalty");
		p_f32(k, s->repeat_penalty);
	}
	if (s->set & PROTO_S_PRESENCE_PENALTY) {
		KEY("presence_penalty");
		p_f32(k, s->presence_penalty);
	}
	if (s->set & PROTO_S_FREQUENCY_PENALTY) {
		KEY("frequency_penalty");
		p_f32(k, s->frequency_penalty);
	}
	if (s->set & PROTO_S_PENALTY_LAST_N) {
		KEY("penalty_last_n");
		p_i64(k, s->penalty_last_n);
	}
	if (s->set & PROTO_S_SEED) {
		KEY("seed");
		p_u64(k, s->seed);
	}
	if (o->top_logprobs > 0) {
		KEY("top_logprobs");
		p_u64(k, o->top_logprobs);
	}
	KEY("stream");
	p_bool(k, o->stream);
	pack_keep_alive(k, n, o->has_keep_alive, o->keep_alive);
}

static void
pack_chat(struct pk *k, unsigned *n, const struct proto_chat *c)
{
	uint32_t i;

	KEY("model");
	p_cstr(k, c->model);
	KEY("messages");
	p_arr(k, c->n_messages);
	for (i = 0; i < c->n_messages && k->rc == 0; i++) {
		p_map(k, 2);
		p_cstr(k, "role");
		p_cstr(k, c->messages[i].role);
		p_cstr(k, "content");
		p_str(k, c->messages[i].content, c->messages[i].content_len);
	}
	if (c->thinking != PROTO_THINK_DEFAULT) {
		KEY("thinking");
		p_bool(k, c->thinking == PROTO_THINK_ON);
	}
	if (c->template != NULL) {
		KEY("template");
		p_cstr(k, c->template);
	}
}

int
proto_pack_request(struct proto_buf *b, const struct proto_request *r,
    const struct proto_limits *l, struct proto_err *err)
{
	struct pk	 pk, *k = &pk;
	unsigned	 keys = 0, *n = &keys;
	const char	*what;
	int		 rc;

	if ((rc = proto_request_check(r, l, err)) < 0)
		return rc;
	what = proto_msg_name(r->type);
	pk_begin(k, b, l->max_frame);
	KEY("type");
	p_cstr(k, what);
	KEY("id");
	p_u64(k, r->id);
	switch (r->type) {
	case PROTO_MSG_HELLO:
		KEY("version");
		p_u64(k, r->u.hello.version);
		KEY("client");
		p_cstr(k, r->u.hello.client);
		break;
	case PROTO_MSG_SHOW:
		KEY("model");
		p_cstr(k, r->u.show.model);
		break;
	case PROTO_MSG_UNLOAD:
		KEY("model");
		p_cstr(k, r->u.unload.model);
		break;
	case PROTO_MSG_LOAD:
		KEY("model");
		p_cstr(k, r->u.load.model);
		pack_keep_alive(k, n, r->u.load.has_keep_alive,
		    r->u.load.keep_alive);
		if (r->u.load.has_pin) {
			KEY("pin");
			p_bool(k, r->u.load.pin);
		}
		if (r->u.load.has_numa &&
		    proto_numa_name(r->u.load.numa) != NULL) {
			KEY("numa");
			p_cstr(k, proto_numa_name(r->u.load.numa));
		}
		break;
	case PROTO_MSG_GENERATE:
		KEY("model");
		p_cstr(k, r->u.generate.model);
		pack_input(k, n, "prompt", &r->u.generate.input);
		pack_gen_opts(k, n, &r->u.generate.opts);
		break;
	case PROTO_MSG_CHAT:
		pack_chat(k, n, &r->u.chat);
		pack_gen_opts(k, n, &r->u.chat.opts);
		break;
	case PROTO_MSG_RENDER:
		pack_chat(k, n, &r->u.chat);
		break;
	case PROTO_MSG_EVAL:
		KEY("model");
		p_cstr(k, r->u.eval.model);
		pack_input(k, n, "text", &r->u.eval.input);
		if (r->u.eval.top > 0) {
			KEY("top");
			p_u64(k, r->u.eval.top);
		}
		KEY("add_bos");
		p_bool(k, r->u.eval.add_bos);
		break;
	case PROTO_MSG_EMBED:
		KEY("model");
		p_cstr(k, r->u.embed.model);
		pack_input(k, n, "text", &r->u.embed.input);
		break;
	case PROTO_MSG_TOKENIZE:
		KEY("model");
		p_cstr(k, r->u.tokenize.model);
		KEY("text");
		p_str(k, r->u.tokenize.text, r->u.tokenize.text_len);
		KEY("add_bos");
		p_bool(k, r->u.tokenize.add_bos);
		KEY("special");
		p_bool(k, r->u.tokenize.special);
		break;
	case PROTO_MSG_DETOKENIZE:
		KEY("model");
		p_cstr(k, r->u.detokenize.model);
		KEY("ids");
		p_ids(k, r->u.detokenize.ids, r->u.detokenize.n_ids);
		KEY("special");
		p_bool(k, r->u.detokenize.special);
		break;
	case PROTO_MSG_CANCEL:
		KEY("target");
		p_u64(k, r->u.cancel.target);
		break;
	default:
		break;
	}
	return pk_end(k, keys, l, err, what);
}

static void
pack_limits(struct pk *k, const struct proto_limits *m)
{
	p_map(k, 8);
	p_cstr(k, "max_frame");
	p_u64(k, m->max_frame);
	p_cstr(k, "max_objects");
	p_u64(k, m->max_objects);
	p_cstr(k, "max_text");
	p_u64(k, m->max_text);
	p_cstr(k, "max_ids");
	p_u64(k, m->max_ids);
	p_cstr(k, "max_stop");
	p_u64(k, m->max_stop);
	p_cstr(k, "max_stop_len");
	p_u64(k, m->max_stop_len);
	p_cstr(k, "max_messages");
	p_u64(k, m->max_messages);
	p_cstr(k, "max_items");
	p_u64(k, m->max_items);
}

static void
pack_meta(struct pk *k, const struct proto_meta *m)
{
	p_cstr(k, m->key);
	switch (m->type) {
	case PROTO_META_BOOL:
		p_bool(k, m->b);
		break;
	case PROTO_META_INT:
		p_i64(k, m->i);
		break;
	case PROTO_META_UINT:
		p_u64(k, m->u);
		break;
	case PROTO_META_FLOAT:
		p_f64(k, m->f);
		break;
	case PROTO_META_STR:
		p_str(k, m->s, m->s_len);
		break;
	default:
		p_map(k, 2);
		p_cstr(k, "array");
		p_cstr(k, m->elem);
		p_cstr(k, "len");
		p_u64(k, m->n);
		break;
	}
}

static void
pack_error_map(struct pk *k, enum proto_code code, const char *message)
{
	p_map(k, 2);
	p_cstr(k, "code");
	p_cstr(k, proto_code_name(code));
	p_cstr(k, "message");
	p_cstr(k, message);
}

static void
pack_reply(struct pk *k, unsigned *n, const struct proto_response *r)
{
	uint32_t i;
	size_t	 npos;

	KEY("request");
	p_cstr(k, proto_msg_name(r->request));
	switch (r->request) {
	case PROTO_MSG_HELLO:
		KEY("version");
		p_u64(k, r->u.hello.version);
		KEY("server");
		p_cstr(k, r->u.hello.server);
		KEY("limits");
		pack_limits(k, &r->u.hello.limits);
		break;
	case PROTO_MSG_LIST:
		KEY("models");
		p_arr(k, r->u.list.n_models);
		for (i = 0; i < r->u.list.n_models && k->rc == 0; i++) {
			const struct proto_model_info *m = &r->u.list.models[i];

			p_map(k, 7);
			p_cstr(k, "name");
			p_cstr(k, m->name);
			p_cstr(k, "size");
			p_u64(k, m->size);
			p_cstr(k, "arch");
			p_cstr(k, m->arch);
			p_cstr(k, "quant");
			p_cstr(k, m->quant);
			p_cstr(k, "params");
			p_u64(k, m->params);
			p_cstr(k, "license");
			p_cstr(k, m->license);
			p_cstr(k, "resident");
			p_bool(k, m->resident);
		}
		break;
	case PROTO_MSG_SHOW:
		KEY("model");
		p_cstr(k, r->u.show.model);
		KEY("metadata");
		p_map(k, r->u.show.n_meta);
		for (i = 0; i < r->u.show.n_meta && k->rc == 0; i++)
			pack_meta(k, &r->u.show.meta[i]);
		break;
	case PROTO_MSG_LOAD:
		KEY("model");
		p_cstr(k, r->u.load.model);
		KEY("memory");
		p_u64(k, r->u.load.memory);
		KEY("ms");
		p_f64(k, r->u.load.ms);
		break;
	case PROTO_MSG_PS:
		KEY("models");
		p_arr(k, r->u.ps.n_models);
		for (i = 0; i < r->u.ps.n_models && k->rc == 0; i++) {
			const struct proto_ps_entry *m = &r->u.ps.models[i];

			p_map(k, m->placement != NULL ? 15 : 14);
			p_cstr(k, "name");
			p_cstr(k, m->name);
			p_cstr(k, "memory");
			p_u64(k, m->memory);
			p_cstr(k, "hugepages");
			p_cstr(k, m->hugepages);
			p_cstr(k, "clients");
			p_u64(k, m->clients);
			p_cstr(k, "tokens");
			p_u64(k, m->tokens);
			p_cstr(k, "keep_alive");
			p_i64(k, m->keep_alive);
			p_cstr(k, "weights");
			p_u64(k, m->weights);
			p_cstr(k, "kv");
			p_u64(k, m->kv);
			p_cstr(k, "scratch");
			p_u64(k, m->scratch);
			p_cstr(k, "bytes_1g");
			p_u64(k, m->bytes_1g);
			p_cstr(k, "bytes_2m");
			p_u64(k, m->bytes_2m);
			p_cstr(k, "bytes_thp");
			p_u64(k, m->bytes_thp);
			p_cstr(k, "bytes_small");
			p_u64(k, m->bytes_small);
			p_cstr(k, "pinned");
			p_bool(k, m->pinned);
			if (m->placement != NULL) {
				p_cstr(k, "placement");
				p_cstr(k, m->placement);
			}
		}
		break;
	case PROTO_MSG_RENDER:
		KEY("prompt");
		p_str(k, r->u.render.prompt, r->u.render.prompt_len);
		KEY("template");
		p_cstr(k, r->u.render.template);
		break;
	case PROTO_MSG_EVAL:
		npos = r->u.eval.n_tokens > 0 ? r->u.eval.n_tokens - 1 : 0;
		KEY("tokens");
		p_ids(k, r->u.eval.tokens, r->u.eval.n_tokens);
		KEY("logprobs");
		p_floats(k, r->u.eval.logprobs, npos);
		KEY("top");
		p_u64(k, r->u.eval.top);
		KEY("top_ids");
		p_ids(k, r->u.eval.top_ids, npos * r->u.eval.top);
		KEY("top_logprobs");
		p_floats(k, r->u.eval.top_logprobs, npos * r->u.eval.top);
		break;
	case PROTO_MSG_EMBED:
		KEY("embedding");
		p_floats(k, r->u.embed.embedding, r->u.embed.n);
		KEY("tokens");
		p_u64(k, r->u.embed.tokens);
		break;
	case PROTO_MSG_TOKENIZE:
		KEY("ids");
		p_ids(k, r->u.tokenize.ids, r->u.tokenize.n_ids);
		break;
	case PROTO_MSG_DETOKENIZE:
		KEY("text");
		p_str(k, r->u.detokenize.text, r->u.detokenize.text_len);
		break;
	case PROTO_MSG_CANCEL:
		KEY("found");
		p_bool(k, r->u.cancel.found);
		break;
	case PROTO_MSG_STATS:
		KEY("uptime");
		p_u64(k, r->u.stats.uptime);
		KEY("connections");
		p_u64(k, r->u.stats.connections);
		KEY("requests");
		p_u64(k, r->u.stats.requests);
		KEY("prompt_tokens");
		p_u64(k, r->u.stats.prompt_tokens);
		KEY("generated_tokens");
		p_u64(k, r->u.stats.generated_tokens);
		KEY("models");
		p_u64(k, r->u.stats.models);
		KEY("memory");
		p_u64(k, r->u.stats.memory);
		if (r->u.stats.budget > 0) {
			KEY("budget");
			p_u64(k, r->u.stats.budget);
		}
		KEY("weights");
		p_u64(k, r->u.stats.weights);
		KEY("kv");
		p_u64(k, r->u.stats.kv);
		KEY("scratch");
		p_u64(k, r->u.stats.scratch);
		break;
	default:
		break;
	}
}

int
proto_pack_response(struct proto_buf *b, const struct proto_response *r,
    const struct proto_limits *l, struct proto_err *err)
{
	struct pk		 pk, *k = &pk;
	unsigned		 keys = 0, *n = &keys;
	const struct proto_token *t = &r->u.token;
	const struct proto_done	*d = &r->u.done;
	const char		*what;
	int			 rc;

	if ((rc = proto_response_check(r, l, err)) < 0)
		return rc;
	what = proto_msg_name(r->type);
	pk_begin(k, b, l->max_frame);
	KEY("type");
	p_cstr(k, what);
	KEY("id");
	p_u64(k, r->id);
	switch (r->type) {
	case PROTO_MSG_REPLY:
		pack_reply(k, n, r);
		break;
	case PROTO_MSG_TOKEN:
		KEY("text");
		p_str(k, t->text, t->text_len);
		KEY("token");
		p_u64(k, (uint64_t)t->token);
		if (t->thinking) {
			KEY("thinking");
			p_bool(k, true);
		}
		if (t->has_logprob) {
			KEY("logprob");
			p_f32(k, t->logprob);
		}
		if (t->n_top > 0) {
			KEY("top_ids");
			p_ids(k, t->top_ids, t->n_top);
			KEY("top_logprobs");
			p_floats(k, t->top_logprobs, t->n_top);
		}
		break;
	case PROTO_MSG_PROGRESS:
		KEY("done");
		p_u64(k, r->u.progress.done);
		KEY("total");
		p_u64(k, r->u.progress.total);
		break;
	case PROTO_MSG_DONE:
		KEY("reason");
		p_cstr(k, proto_reason_name(d->reason));
		KEY("prompt_tokens");
		p_u64(k, d->prompt_tokens);
		KEY("cached_tokens");
		p_u64(k, d->cached_tokens);
		KEY("generated_tokens");
		p_u64(k, d->generated_tokens);
		KEY("prefill_ms");
		p_f64(k, d->prefill_ms);
		KEY("decode_ms");
		p_f64(k, d->decode_ms);
		if (d->text != NULL) {
			KEY("text");
			p_str(k, d->text, d->text_len);
		}
		if (d->thinking != NULL) {
			KEY("thinking");
			p_str(k, d->thinking, d->thinking_len);
		}
		if (d->reason == PROTO_REASON_ERROR) {
			KEY("error");
			pack_error_map(k, d->error_code, d->error_message);
		}
		break;
	case PROTO_MSG_ERROR:
		KEY("error");
		pack_error_map(k, r->u.error.code, r->u.error.message);
		break;
	default:
		break;
	}
	return pk_end(k, keys, l, err, what);
}

int
proto_pack_error(struct proto_buf *b, uint64_t id, enum proto_code code,
    const char *message)
{
	struct proto_response	 r;
	struct proto_limits	 l;
	char			 msg[PROTO_MAX_MESSAGE + 1];
	size_t			 len, i, o, v;

	/* Keep whole UTF-8 sequences, '?' for each bad byte, no controls. */
	if (message == NULL)
		message = "";
	len = strnlen(message, SIZE_MAX);
	for (i = o = 0; i < len && o < PROTO_MAX_MESSAGE; ) {
		v = proto_utf8_valid(message + i, len - i > 4 ? 4 : len - i);
		if (v == 0) {
			msg[o++] = '?';
			i++;
			continue;
		}
		/* v covers at least one whole sequence; copy the first */
		v = (uint8_t)message[i] < 0x80 ? 1 :
		    (uint8_t)message[i] < 0xe0 ? 2 :
		    (uint8_t)message[i] < 0xf0 ? 3 : 4;
		if (o + v > PROTO_MAX_MESSAGE)
			break;
		memcpy(msg + o, message + i, v);
		if (v == 1 && (uint8_t)msg[o] < 0x20)
			msg[o] = ' ';
		o += v;
		i += v;
	}
	msg[o] = '\0';
	if (proto_code_name(code) == NULL)
		code = PROTO_E_INTERNAL;
	proto_limits_default(&l);
	proto_response_init(&r, PROTO_MSG_ERROR, id);
	r.u.error.code = code;
	r.u.error.message = msg;
	return proto_pack_response(b, &r, &l, NULL);
}
