/*
 * unpack.c - decode frame bodies into the C structs of proto.h.
 *
 * Order of trust: proto_scan() proves the raw bytes harmless (no
 * declared size beyond the frame, bounded depth and object count), then
 * msgpack-c builds its object tree in a zone (strings stay in the body),
 * then every known field is type-checked and copied into one arena per
 * message, lengths and counts checked before each copy. Unknown fields
 * are ignored; a known field twice, a wrong type, a missing required
 * field or an unknown message type is an error naming the field. The
 * struct is finally run through the same checks the packers use.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "proto.h"

#define ARENA_BLOCK	16384	/* bytes of an ordinary arena block */
#define ALIGN		16
#define MAXF		32	/* known fields of one map, at most */

/* ---- the arena: every decoded pointer lives in one ---- */

struct blk {
	struct blk	*next;
	size_t		 cap;		/* data bytes */
	size_t		 used;
};

#define BLK_HDR	((sizeof(struct blk) + ALIGN - 1) & ~(size_t)(ALIGN - 1))

struct arena {
	struct blk	*head;		/* most recent block first */
};

static void
arena_free(struct arena *a)
{
	struct blk *b, *next;

	if (a == NULL)
		return;
	for (b = a->head; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	free(a);
}

/* n bytes, 16-aligned, never NULL for n == 0 (unless out of memory). */
static void *
arena_alloc(struct arena *a, size_t n)
{
	struct blk	*b;
	size_t		 cap;
	void		*p;

	if (n > SIZE_MAX - ALIGN - BLK_HDR)
		return NULL;
	n = n == 0 ? ALIGN : (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
	b = a->head;
	if (b == NULL || b->cap - b->used < n) {
		cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
		if ((b = malloc(BLK_HDR + cap)) == NULL)
			return NULL;
		b->cap = cap;
		b->used = 0;
		/* a big one-off block goes behind the current one */
		if (n > ARENA_BLOCK && a->head != NULL) {
			b->next = a->head->next;
			a->head->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
	}
	p = (char *)b + BLK_HDR + b->used;
	b->used += n;
	return p;
}

/* n elements of size sz, overflow-checked, zeroed (optional fields
 * that a message leaves out must read as 0, false, NULL). */
static void *
arena_array(struct arena *a, size_t n, size_t sz)
{
	void	*p;

	if (sz != 0 && n > SIZE_MAX / sz)
		return NULL;
	if ((p = arena_alloc(a, n * sz)) != NULL)
		memset(p, 0, n * sz);
	return p;
}

/* ---- decoding context and errors ---- */

struct dec {
	const struct proto_limits *l;
	struct proto_err	*e;	/* may be NULL */
	struct arena		*ar;
	const char		*what;	/* "generate", "list reply" */
	char			 whatbuf[32];
};

static int
derr(struct dec *d, enum proto_code code, int rc, const char *path,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int
derr(struct dec *d, enum proto_code code, int rc, const char *path,
    const char *fmt, ...)
{
	char	 m[PROTO_ERR_MAX];
	va_list	 ap;

	if (d->e == NULL)
		return rc;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	if (path == NULL)
		return proto_err_set(d->e, code, rc, "%s: %s", d->what, m);
	return proto_err_set(d->e, code, rc, "%s: field '%s': %s", d->what,
	    path, m);
}

#define MALFORMED(path, ...) \
	derr(d, PROTO_E_BAD_REQUEST, -EBADMSG, path, __VA_ARGS__)
#define INVALID(path, ...) \
	derr(d, PROTO_E_BAD_REQUEST, -EINVAL, path, __VA_ARGS__)
#define TOOBIG(path, ...) \
	derr(d, PROTO_E_TOO_LARGE, -EMSGSIZE, path, __VA_ARGS__)
#define NOMEM() \
	derr(d, PROTO_E_INTERNAL, -ENOMEM, NULL, "out of memory")

static const char *
tname(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:		return "nil";
	case MSGPACK_OBJECT_BOOLEAN:		return "bool";
	case MSGPACK_OBJECT_POSITIVE_INTEGER:	return "int";
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:	return "int";
	case MSGPACK_OBJECT_FLOAT32:		return "float";
	case MSGPACK_OBJECT_FLOAT64:		return "float";
	case MSGPACK_OBJECT_STR:		return "str";
	case MSGPACK_OBJECT_ARRAY:		return "array";
	case MSGPACK_OBJECT_MAP:		return "map";
	case MSGPACK_OBJECT_BIN:		return "bin";
	case MSGPACK_OBJECT_EXT:		return "ext";
	}
	return "unknown";
}

static int
wrong(struct dec *d, const char *path, const char *want,
    const msgpack_object *o)
{
	return MALFORMED(path, "expected %s, got %s", want, tname(o));
}

/* "base[i]" or "base[i].sub" into buf. */
static const char *
ipath(char *buf, size_t sz, const char *base, size_t i, const char *sub)
{
	if (sub == NULL)
		snprintf(buf, sz, "%s[%zu]", base, i);
	else
		snprintf(buf, sz, "%s[%zu].%s", base, i, sub);
	return buf;
}

/* ---- fields of a map ---- */

struct fields {
	const char *const	*names;		/* NULL-terminated */
	const msgpack_object	*o[MAXF];	/* [i]: value of names[i] */
};

/*
 * Record the values of the known keys of map; any key that is not a
 * string, or a known key given twice, is an error; others are ignored.
 */
static int
collect(struct dec *d, const msgpack_object *map, const char *path,
    const char *const *names, struct fields *f)
{
	const msgpack_object_kv	*kv;
	const msgpack_object	*k;
	uint32_t		 i;
	size_t			 j;

	if (map->type != MSGPACK_OBJECT_MAP)
		return wrong(d, path, "a map", map);
	memset(f, 0, sizeof(*f));
	f->names = names;
	for (i = 0; i < map->via.map.size; i++) {
		kv = &map->via.map.ptr[i];
		k = &kv->key;
		if (k->type != MSGPACK_OBJECT_STR) {
			if (path == NULL)
				return MALFORMED(NULL, "a map key is a %s, not "
				    "a string", tname(k));
			return MALFORMED(path, "a map key is a %s, not a "
			    "string", tname(k));
		}
		for (j = 0; names[j] != NULL && j < MAXF; j++) {
			if (strlen(names[j]) != k->via.str.size ||
			    memcmp(names[j], k->via.str.ptr,
			    k->via.str.size) != 0)
				continue;
			if (f->o[j] != NULL)
				return MALFORMED(names[j], "given twice");
			f->o[j] = &kv->val;
			break;
		}
	}
	return 0;
}

static const msgpack_object *
fget(const struct fields *f, const char *name)
{
	size_t	 j;

	for (j = 0; f->names[j] != NULL && j < MAXF; j++)
		if (strcmp(f->names[j], name) == 0)
			return f->o[j];
	return NULL;
}

/* A required field: its value, or NULL after setting the error. */
static const msgpack_object *
need(struct dec *d, const struct fields *f, const char *name, int *rc)
{
	const msgpack_object *o;

	if ((o = fget(f, name)) == NULL)
		*rc = MALFORMED(NULL, "missing field '%s'", name);
	return o;
}

/* ---- typed getters ---- */

static int
g_uint(struct dec *d, const msgpack_object *o, const char *path,
    uint64_t max, uint64_t *out)
{
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return INVALID(path, "%lld is negative", (long long)o->via.i64);
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return wrong(d, path, "an unsigned integer", o);
	if (o->via.u64 > max)
		return INVALID(path, "%llu is over the limit of %llu",
		    (unsigned long long)o->via.u64, (unsigned long long)max);
	*out = o->via.u64;
	return 0;
}

static int
g_u32(struct dec *d, const msgpack_object *o, const char *path, uint32_t max,
    uint32_t *out)
{
	uint64_t v = 0;
	int	 rc;

	if ((rc = g_uint(d, o, path, max, &v)) < 0)
		return rc;
	*out = (uint32_t)v;
	return 0;
}

static int
g_int(struct dec *d, const msgpack_object *o, const char *path, int64_t min,
    int64_t max, int64_t *out)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (o->via.u64 > (uint64_t)max)
			return INVALID(path, "%llu is not in %lld..%lld",
			    (unsigned long long)o->via.u64, (long long)min,
			    (long long)max);
		*out = (int64_t)o->via.u64;
		return 0;
	}
	if (o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return wrong(d, path, "an integer", o);
	if (o->via.i64 < min)
		return INVALID(path, "%lld is not in %lld..%lld",
		    (long long)o->via.i64, (long long)min, (long long)max);
	*out = o->via.i64;
	return 0;
}

static int
g_bool(struct dec *d, const msgpack_object *o, const char *path, bool *out)
{
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return wrong(d, path, "a bool", o);
	*out = o->via.boolean;
	return 0;
}

/* A number (float or integer), finite. */
static int
g_double(struct dec *d, const msgpack_object *o, const char *path,
    double *out)
{
	double	 v;

	switch (o->type) {
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		v = o->via.f64;
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		v = (double)o->via.u64;
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		v = (double)o->via.i64;
		break;
	default:
		return wrong(d, path, "a number", o);
	}
	if (!isfinite(v))
		return INVALID(path, "not a finite number");
	*out = v;
	return 0;
}

static int
g_float(struct dec *d, const msgpack_object *o, const char *path, float *out)
{
	double	 v = 0;
	int	 rc;

	if ((rc = g_double(d, o, path, &v)) < 0)
		return rc;
	if (fabs(v) > FLT_MAX)
		return INVALID(path, "%g is out of the range of a float", v);
	*out = (float)v;
	return 0;
}

/*
 * A string of at most max bytes of UTF-8, copied NUL-terminated.
 * Text may contain NUL (its length is carried); names may not.
 */
#define S_TEXT	0
#define S_NAME	1

static int
g_str(struct dec *d, const msgpack_object *o, const char *path, size_t max,
    int kind, const char **out, size_t *lenp)
{
	size_t	 len, v;
	char	*p;

	if (o->type != MSGPACK_OBJECT_STR)
		return wrong(d, path, "a string", o);
	len = o->via.str.size;
	if (len > max)
		return TOOBIG(path, "%zu bytes, over the limit of %zu", len,
		    max);
	if ((v = proto_utf8_valid(o->via.str.ptr, len)) != len)
		return INVALID(path, "invalid UTF-8 at byte %zu", v);
	if (kind == S_NAME && memchr(o->via.str.ptr, '\0', len) != NULL)
		return INVALID(path, "contains a NUL byte");
	if ((p = arena_alloc(d->ar, len + 1)) == NULL)
		return NOMEM();
	memcpy(p, o->via.str.ptr, len);
	p[len] = '\0';
	*out = p;
	if (lenp != NULL)
		*lenp = len;
	return 0;
}

/* An array of at most max token ids, each 0..2^31-1. */
static int
g_ids(struct dec *d, const msgpack_object *o, const char *path, size_t max,
    const int32_t **out, uint32_t *n)
{
	const msgpack_object	*e;
	char			 ep[64];
	int32_t			*ids;
	uint32_t		 i, cnt;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return wrong(d, path, "an array of token ids", o);
	cnt = o->via.array.size;
	if (cnt > max)
		return TOOBIG(path, "%u token ids, over the limit of %zu",
		    cnt, max);
	if ((ids = arena_array(d->ar, cnt, sizeof(*ids))) == NULL)
		return NOMEM();
	for (i = 0; i < cnt; i++) {
		e = &o->via.array.ptr[i];
		if (e->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
			return INVALID(ipath(ep, sizeof(ep), path, i, NULL),
			    "token id %lld is not in 0..%d",
			    (long long)e->via.i64, INT32_MAX);
		if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return wrong(d, ipath(ep, sizeof(ep), path, i, NULL),
			    "a token id", e);
		if (e->via.u64 > INT32_MAX)
			return INVALID(ipath(ep, sizeof(ep), path, i, NULL),
			    "token id %llu is not in 0..%d",
			    (unsigned long long)e->via.u64, INT32_MAX);
		ids[i] = (int32_t)e->via.u64;
	}
	*out = ids;
	*n = cnt;
	return 0;
}

/* An array of at most max finite floats. */
static int
g_floats(struct dec *d, const msgpack_object *o, const char *path,
    size_t max, const float **out, uint32_t *n)
{
	char		 ep[64];
	float		*v;
	uint32_t	 i, cnt;
	int		 rc;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return wrong(d, path, "an array of numbers", o);
	cnt = o->via.array.size;
	if (cnt > max)
		return TOOBIG(path, "%u numbers, over the limit of %zu", cnt,
		    max);
	if ((v = arena_array(d->ar, cnt, sizeof(*v))) == NULL)
		return NOMEM();
	for (i = 0; i < cnt; i++)
		if ((rc = g_float(d, &o->via.array.ptr[i],
		    ipath(ep, sizeof(ep), path, i, NULL), &v[i])) < 0)
			return rc;
	*out = v;
	*n = cnt;
	return 0;
}

/* Optional-field helpers: absent leaves *out alone. */
#define OPT(call)	do { if ((rc = (call)) < 0) return rc; } while (0)

/* ---- requests ---- */

static const char *const gen_opt_names[] = {
	"max_tokens", "stop", "temperature", "top_k", "top_p", "min_p",
	"repeat_penalty", "presence_penalty", "frequency_penalty",
	"penalty_last_n", "seed", "top_logprobs", "stream", "keep_alive",
	NULL
};

static int
dec_keep_alive(struct dec *d, const msgpack_object *o, bool *has,
    int64_t *v)
{
	int	 rc;

	if (o == NULL)
		return 0;
	if ((rc = g_int(d, o, "keep_alive", -1, PROTO_MAX_KEEP_ALIVE, v)) < 0)
		return rc;
	*has = true;
	return 0;
}

static int
dec_sampling_f(struct dec *d, const struct fields *f, const char *name,
    uint32_t bit, float *out, uint32_t *set)
{
	const msgpack_object	*o;
	int			 rc;

	if ((o = fget(f, name)) == NULL)
		return 0;
	if ((rc = g_float(d, o, name, out)) < 0)
		return rc;
	*set |= bit;
	return 0;
}

static int
dec_gen_opts(struct dec *d, const msgpack_object *map,
    struct proto_gen_opts *g)
{
	struct proto_sampling	*s = &g->sampling;
	struct fields		 f;
	const msgpack_object	*o, *e;
	const char		**stop;
	char			 ep[32];
	int64_t			 v;
	uint64_t		 u;
	uint32_t		 i;
	int			 rc;

	if ((rc = collect(d, map, NULL, gen_opt_names, &f)) < 0)
		return rc;
	if ((o = fget(&f, "max_tokens")) != NULL) {
		OPT(g_int(d, o, "max_tokens", 0, INT32_MAX, &v));
		g->max_tokens = (int32_t)v;
	}
	if ((o = fget(&f, "stop")) != NULL) {
		if (o->type != MSGPACK_OBJECT_ARRAY)
			return wrong(d, "stop", "an array of strings", o);
		if (o->via.array.size > d->l->max_stop)
			return TOOBIG("stop", "%u stop strings, over the "
			    "limit of %u", o->via.array.size, d->l->max_stop);
		stop = arena_array(d->ar, o->via.array.size, sizeof(*stop));
		if (stop == NULL)
			return NOMEM();
		for (i = 0; i < o->via.array.size; i++) {
			e = &o->via.array.ptr[i];
			OPT(g_str(d, e, ipath(ep, sizeof(ep), "stop", i, NULL),
			    d->l->max_stop_len, S_NAME, &stop[i], NULL));
		}
		g->stop = stop;
		g->n_stop = o->via.array.size;
	}
	OPT(dec_sampling_f(d, &f, "temperature", PROTO_S_TEMPERATURE,
	    &s->temperature, &s->set));
	if ((o = fget(&f, "top_k")) != NULL) {
		OPT(g_int(d, o, "top_k", 0, INT32_MAX, &v));
		s->top_k = (int32_t)v;
		s->set |= PROTO_S_TOP_K;
	}
	OPT(dec_sampling_f(d, &f, "top_p", PROTO_S_TOP_P, &s->top_p,
	    &s->set));
	OPT(dec_sampling_f(d, &f, "min_p", PROTO_S_MIN_P, &s->min_p,
	    &s->set));
	OPT(dec_sampling_f(d, &f, "repeat_penalty", PROTO_S_REPEAT_PENALTY,
	    &s->repeat_penalty, &s->set));
	OPT(dec_sampling_f(d, &f, "presence_penalty",
	    PROTO_S_PRESENCE_PENALTY, &s->presence_penalty, &s->set));
	OPT(dec_sampling_f(d, &f, "frequency_penalty",
	    PROTO_S_FREQUENCY_PENALTY, &s->frequency_penalty, &s->set));
	if ((o = fget(&f, "penalty_last_n")) != NULL) {
		OPT(g_int(d, o, "penalty_last_n", -1,
		    PROTO_MAX_PENALTY_LAST_N, &v));
		s->penalty_last_n = (int32_t)v;
		s->set |= PROTO_S_PENALTY_LAST_N;
	}
	if ((o = fget(&f, "seed")) != NULL) {
		OPT(g_uint(d, o, "seed", UINT64_MAX, &u));
		s->seed = u;
		s->set |= PROTO_S_SEED;
	}
	if ((o = fget(&f, "top_logprobs")) != NULL)
		OPT(g_u32(d, o, "top_logprobs", PROTO_MAX_TOP,
		    &g->top_logprobs));
	if ((o = fget(&f, "stream")) != NULL)
		OPT(g_bool(d, o, "stream", &g->stream));
	return dec_keep_alive(d, fget(&f, "keep_alive"), &g->has_keep_alive,
	    &g->keep_alive);
}

static int
dec_model(struct dec *d, const struct fields *f, const char **model)
{
	const msgpack_object	*o;
	int			 rc = 0;

	if ((o = need(d, f, "model", &rc)) == NULL)
		return rc;
	return g_str(d, o, "model", PROTO_MAX_NAME, S_NAME, model, NULL);
}

static int
dec_input(struct dec *d, const struct fields *f, const char *textname,
    struct proto_input *in)
{
	const msgpack_object	*o;
	int			 rc;

	if ((o = fget(f, textname)) != NULL)
		OPT(g_str(d, o, textname, d->l->max_text, S_TEXT, &in->text,
		    &in->text_len));
	if ((o = fget(f, "ids")) != NULL)
		OPT(g_ids(d, o, "ids", d->l->max_ids, &in->ids, &in->n_ids));
	return 0;
}

static int
dec_messages(struct dec *d, const msgpack_object *o, struct proto_chat *c)
{
	static const char *const names[] = { "role", "content", NULL };
	struct proto_message	*m;
	struct fields		 f;
	const msgpack_object	*v;
	char			 ep[48];
	uint32_t		 i, n;
	int			 rc;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return wrong(d, "messages", "an array of messages", o);
	n = o->via.array.size;
	if (n > d->l->max_messages)
		return TOOBIG("messages", "%u messages, over the limit of %u",
		    n, d->l->max_messages);
	if ((m = arena_array(d->ar, n, sizeof(*m))) == NULL)
		return NOMEM();
	for (i = 0; i < n; i++) {
		ipath(ep, sizeof(ep), "messages", i, NULL);
		OPT(collect(d, &o->via.array.ptr[i], ep, names, &f));
		if ((v = fget(&f, "role")) == NULL)
			return MALFORMED(ipath(ep, sizeof(ep), "messages", i,
			    "role"), "missing");
		OPT(g_str(d, v, ipath(ep, sizeof(ep), "messages", i, "role"),
		    PROTO_MAX_IDENT, S_NAME, &m[i].role, NULL));
		if ((v = fget(&f, "content")) == NULL)
			return MALFORMED(ipath(ep, sizeof(ep), "messages", i,
			    "content"), "missing");
		OPT(g_str(d, v, ipath(ep, sizeof(ep), "messages", i,
		    "content"), d->l->max_text, S_TEXT, &m[i].content,
		    &m[i].content_len));
	}
	c->messages = m;
	c->n_messages = n;
	return 0;
}

static int
dec_chat(struct dec *d, const msgpack_object *map, struct proto_chat *c,
    bool opts)
{
	static const char *const names[] = { "model", "messages", "thinking",
	    "template", NULL };
	struct fields		 f;
	const msgpack_object	*o;
	bool			 b = false;
	int			 rc = 0;

	OPT(collect(d, map, NULL, names, &f));
	OPT(dec_model(d, &f, &c->model));
	if ((o = need(d, &f, "messages", &rc)) == NULL)
		return rc;
	OPT(dec_messages(d, o, c));
	if ((o = fget(&f, "thinking")) != NULL) {
		OPT(g_bool(d, o, "thinking", &b));
		c->thinking = b ? PROTO_THINK_ON : PROTO_THINK_OFF;
	}
	if ((o = fget(&f, "template")) != NULL)
		OPT(g_str(d, o, "template", PROTO_MAX_IDENT, S_NAME,
		    &c->template, NULL));
	if (opts)
		return dec_gen_opts(d, map, &c->opts);
	return 0;
}

/* A load's numa: one of the policy names. */
static int
dec_numa(struct dec *d, const msgpack_object *o, struct proto_load *l)
{
	const char *v;
	int rc;

	OPT(g_str(d, o, "numa", PROTO_MAX_IDENT, S_NAME, &v, NULL));
	if (proto_numa_parse(v, &l->numa) < 0)
		return INVALID("numa", "unknown policy '%.32s' (auto, local, "
		    "interleave, replicate)", v);
	l->has_numa = true;
	return 0;
}

static int
dec_request_body(struct dec *d, const msgpack_object *map,
    struct proto_request *r)
{
	static const char *const hello_names[] = { "version", "client", NULL };
	static const char *const model_names[] = { "model", "keep_alive",
	    "pin", "numa", NULL };
	static const char *const gen_names[] = { "model", "prompt", "ids",
	    NULL };
	static const char *const eval_names[] = { "model", "text", "ids",
	    "top", "add_bos", "special", NULL };
	static const char *const detok_names[] = { "model", "ids", "special",
	    NULL };
	static const char *const cancel_names[] = { "target", NULL };
	struct fields		 f;
	const msgpack_object	*o;
	int			 rc = 0;

	switch (r->type) {
	case PROTO_MSG_HELLO:
		OPT(collect(d, map, NULL, hello_names, &f));
		if ((o = need(d, &f, "version", &rc)) == NULL)
			return rc;
		OPT(g_u32(d, o, "version", UINT32_MAX, &r->u.hello.version));
		if ((o = need(d, &f, "client", &rc)) == NULL)
			return rc;
		return g_str(d, o, "client", PROTO_MAX_LABEL, S_NAME,
		    &r->u.hello.client, NULL);
	case PROTO_MSG_SHOW:
	case PROTO_MSG_UNLOAD:
	case PROTO_MSG_LOAD:
		OPT(collect(d, map, NULL, model_names, &f));
		if (r->type == PROTO_MSG_SHOW)
			return dec_model(d, &f, &r->u.show.model);
		if (r->type == PROTO_MSG_UNLOAD)
			return dec_model(d, &f, &r->u.unload.model);
		OPT(dec_model(d, &f, &r->u.load.model));
		OPT(dec_keep_alive(d, fget(&f, "keep_alive"),
		    &r->u.load.has_keep_alive, &r->u.load.keep_alive));
		if ((o = fget(&f, "pin")) != NULL) {
			r->u.load.has_pin = true;
			OPT(g_bool(d, o, "pin", &r->u.load.pin));
		}
		if ((o = fget(&f, "numa")) == NULL)
			return 0;
		return dec_numa(d, o, &r->u.load);
	case PROTO_MSG_GENERATE:
		OPT(collect(d, map, NULL, gen_names, &f));
		OPT(dec_model(d, &f, &r->u.generate.model));
		OPT(dec_input(d, &f, "prompt", &r->u.generate.input));
		return dec_gen_opts(d, map, &r->u.generate.opts);
	case PROTO_MSG_CHAT:
		return dec_chat(d, map, &r->u.chat, true);
	case PROTO_MSG_RENDER:
		return dec_chat(d, map, &r->u.chat, false);
	case PROTO_MSG_EVAL:
	case PROTO_MSG_EMBED:
	case PROTO_MSG_TOKENIZE:
		OPT(collect(d, map, NULL, eval_names, &f));
		if (r->type == PROTO_MSG_TOKENIZE) {
			OPT(dec_model(d, &f, &r->u.tokenize.model));
			if ((o = need(d, &f, "text", &rc)) == NULL)
				return rc;
			OPT(g_str(d, o, "text", d->l->max_text, S_TEXT,
			    &r->u.tokenize.text, &r->u.tokenize.text_len));
			if ((o = fget(&f, "add_bos")) != NULL)
				OPT(g_bool(d, o, "add_bos",
				    &r->u.tokenize.add_bos));
			if ((o = fget(&f, "special")) != NULL)
				OPT(g_bool(d, o, "special",
				    &r->u.tokenize.special));
			return 0;
		}
		if (r->type == PROTO_MSG_EMBED) {
			OPT(dec_model(d, &f, &r->u.embed.model));
			return dec_input(d, &f, "text", &r->u.embed.input);
		}
		OPT(dec_model(d, &f, &r->u.eval.model));
		OPT(dec_input(d, &f, "text", &r->u.eval.input));
		if ((o = fget(&f, "top")) != NULL)
			OPT(g_u32(d, o, "top", PROTO_MAX_TOP, &r->u.eval.top));
		if ((o = fget(&f, "add_bos")) != NULL)
			OPT(g_bool(d, o, "add_bos", &r->u.eval.add_bos));
		return 0;
	case PROTO_MSG_DETOKENIZE:
		OPT(collect(d, map, NULL, detok_names, &f));
		OPT(dec_model(d, &f, &r->u.detokenize.model));
		if ((o = need(d, &f, "ids", &rc)) == NULL)
			return rc;
		OPT(g_ids(d, o, "ids", d->l->max_ids, &r->u.detokenize.ids,
		    &r->u.detokenize.n_ids));
		if ((o = fget(&f, "special")) != NULL)
			OPT(g_bool(d, o, "special", &r->u.detokenize.special));
		return 0;
	case PROTO_MSG_CANCEL:
		OPT(collect(d, map, NULL, cancel_names, &f));
		if ((o = need(d, &f, "target", &rc)) == NULL)
			return rc;
		OPT(g_uint(d, o, "target", UINT64_MAX, &r->u.cancel.target));
		if (r->u.cancel.target == 0)
			return INVALID("target", "must be at least 1");
		return 0;
	default:
		return 0;	/* list, ps, stats, ping: nothing more */
	}
}

/* A type name for a message, printable or described. */
static void
type_desc(char *buf, size_t sz, const msgpack_object *o)
{
	size_t	 i;

	for (i = 0; i < o->via.str.size; i++)
		if (o->via.str.ptr[i] < 0x21 || o->via.str.ptr[i] > 0x7e)
			break;
	if (i == o->via.str.size && i <= 32)
		snprintf(buf, sz, "'%.*s'", (int)i, o->via.str.ptr);
	else
		snprintf(buf, sz, "of %u bytes", o->via.str.size);
}

/*
 * type and id of a top-level map: id first, so an error about the type
 * can already carry it.
 */
static int
dec_top(struct dec *d, const msgpack_object *map, bool request,
    enum proto_msg *type, uint64_t *id)
{
	static const char *const names[] = { "type", "id", NULL };
	struct fields		 f;
	const msgpack_object	*o;
	enum proto_msg		 t;
	char			 desc[48];
	int			 rc = 0;

	OPT(collect(d, map, NULL, names, &f));
	if ((o = need(d, &f, "id", &rc)) == NULL)
		return rc;
	OPT(g_uint(d, o, "id", UINT64_MAX, id));
	if (d->e != NULL)
		d->e->id = *id;
	if ((o = need(d, &f, "type", &rc)) == NULL)
		return rc;
	if (o->type != MSGPACK_OBJECT_STR)
		return wrong(d, "type", "a string", o);
	t = proto_msg_lookup(o->via.str.ptr, o->via.str.size);
	if (t == PROTO_MSG_NONE || (request && t >= PROTO_MSG_REPLY) ||
	    (!request && t < PROTO_MSG_REPLY)) {
		type_desc(desc, sizeof(desc), o);
		return MALFORMED(NULL, "unknown message type %s", desc);
	}
	if (*id == 0 && t != PROTO_MSG_ERROR)
		return INVALID("id", "must be at least 1");
	*type = t;
	d->what = proto_msg_name(t);
	return 0;
}

/*
 * The common frame: scan, msgpack-c, then decode(). On success the
 * arena is returned in *mem.
 */
static int
unpack_common(const void *body, size_t len, const struct proto_limits *l,
    struct proto_err *err, int (*decode)(struct dec *, const msgpack_object *,
    void *), void *out, void **mem)
{
	msgpack_zone	 zone;
	msgpack_object	 obj;
	struct dec	 d;
	size_t		 off = 0;
	int		 rc, ur;

	if (err != NULL) {
		err->code = PROTO_E_NONE;
		err->id = 0;
		err->msg[0] = '\0';
	}
	if ((rc = proto_scan(body, len, l, err)) < 0)
		return rc;
	memset(&d, 0, sizeof(d));
	d.l = l;
	d.e = err;
	d.what = "message";
	if ((d.ar = calloc(1, sizeof(*d.ar))) == NULL)
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	if (!msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE)) {
		free(d.ar);
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	}
	ur = msgpack_unpack(body, len, &off, &zone, &obj);
	if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
		rc = proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "msgpack: out of memory");
	else if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
		rc = proto_err_set(err, PROTO_E_BAD_REQUEST, -EBADMSG,
		    "msgpack: malformed body (%d at byte %zu)", ur, off);
	else
		rc = decode(&d, &obj, out);
	msgpack_zone_destroy(&zone);
	if (rc < 0) {
		arena_free(d.ar);
		return rc;
	}
	*mem = d.ar;
	return 0;
}

static int
decode_request(struct dec *d, const msgpack_object *obj, void *out)
{
	struct proto_request	*r = out;
	enum proto_msg		 type;
	uint64_t		 id;
	int			 rc;

	if ((rc = dec_top(d, obj, true, &type, &id)) < 0)
		return rc;
	proto_request_init(r, type, id);
	if ((rc = dec_request_body(d, obj, r)) < 0)
		return rc;
	return proto_request_check(r, d->l, d->e);
}

int
proto_unpack_request(const void *body, size_t len,
    const struct proto_limits *l, struct proto_request *out,
    struct proto_err *err)
{
	struct proto_request	 r;
	void			*mem = NULL;
	int			 rc;

	memset(&r, 0, sizeof(r));
	if ((rc = unpack_common(body, len, l, err, decode_request, &r,
	    &mem)) < 0)
		return rc;
	r.mem = mem;
	*out = r;
	return 0;
}

void
proto_request_free(struct proto_request *r)
{
	if (r == NULL)
		return;
	arena_free(r->mem);
	memset(r, 0, sizeof(*r));
}

/* ---- responses ---- */

static int
dec_opt_u64(struct dec *d, const struct fields *f, const char *name,
    uint64_t *out)
{
	const msgpack_object *o;

	if ((o = fget(f, name)) == NULL)
		return 0;
	return g_uint(d, o, name, UINT64_MAX, out);
}

static int
dec_opt_u32(struct dec *d, const struct fields *f, const char *name,
    uint32_t *out)
{
	const msgpack_object *o;

	if ((o = fget(f, name)) == NULL)
		return 0;
	return g_u32(d, o, name, UINT32_MAX, out);
}

static int
dec_opt_label(struct dec *d, const struct fields *f, const char *name,
    const char *path, const char **out)
{
	const msgpack_object *o;

	*out = "";
	if ((o = fget(f, name)) == NULL)
		return 0;
	return g_str(d, o, path, PROTO_MAX_LABEL, S_NAME, out, NULL);
}

static int
dec_hello_reply(struct dec *d, const struct fields *f,
    struct proto_hello_reply *h)
{
	static const char *const names[] = { "max_frame", "max_objects",
	    "max_text", "max_ids", "max_stop", "max_stop_len",
	    "max_messages", "max_items", NULL };
	struct fields		 lf;
	const msgpack_object	*o;
	char			 ep[32];
	uint32_t		*dst[8];
	size_t			 i;
	int			 rc = 0;

	if ((o = need(d, f, "version", &rc)) == NULL)
		return rc;
	OPT(g_u32(d, o, "version", UINT32_MAX, &h->version));
	if ((o = need(d, f, "server", &rc)) == NULL)
		return rc;
	OPT(g_str(d, o, "server", PROTO_MAX_LABEL, S_NAME, &h->server, NULL));
	proto_limits_default(&h->limits);
	if ((o = fget(f, "limits")) == NULL)
		return 0;
	OPT(collect(d, o, "limits", names, &lf));
	dst[0] = &h->limits.max_frame;
	dst[1] = &h->limits.max_objects;
	dst[2] = &h->limits.max_text;
	dst[3] = &h->limits.max_ids;
	dst[4] = &h->limits.max_stop;
	dst[5] = &h->limits.max_stop_len;
	dst[6] = &h->limits.max_messages;
	dst[7] = &h->limits.max_items;
	for (i = 0; names[i] != NULL; i++) {
		if (lf.o[i] == NULL)
			continue;
		snprintf(ep, sizeof(ep), "limits.%s", names[i]);
		OPT(g_u32(d, lf.o[i], ep, UINT32_MAX, dst[i]));
	}
	return 0;
}

static int
dec_list_reply(struct dec *d, const struct fields *f,
    struct proto_list_reply *lr)
{
	static const char *const names[] = { "name", "size", "arch", "quant",
	    "params", "license", "resident", NULL };
	struct proto_model_info	*m;
	struct fields		 mf;
	const msgpack_object	*o, *v;
	char			 ep[48];
	uint32_t		 i, n;
	int			 rc = 0;

	if ((o = need(d, f, "models", &rc)) == NULL)
		return rc;
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return wrong(d, "models", "an array", o);
	if ((n = o->via.array.size) > d->l->max_items)
		return TOOBIG("models", "%u models, over the limit of %u", n,
		    d->l->max_items);
	if ((m = arena_array(d->ar, n, sizeof(*m))) == NULL)
		return NOMEM();
	for (i = 0; i < n; i++) {
		OPT(collect(d, &o->via.array.ptr[i],
		    ipath(ep, sizeof(ep), "models", i, NULL), names, &mf));
		if ((v = fget(&mf, "name")) == NULL)
			return MALFORMED(ipath(ep, sizeof(ep), "models", i,
			    "name"), "missing");
		OPT(g_str(d, v, ipath(ep, sizeof(ep), "models", i, "name"),
		    PROTO_MAX_NAME, S_NAME, &m[i].name, NULL));
		if ((v = fget(&mf, "size")) != NULL)
			OPT(g_uint(d, v, ipath(ep, sizeof(ep), "models", i,
			    "size"), UINT64_MAX, &m[i].size));
		OPT(dec_opt_label(d, &mf, "arch", ipath(ep, sizeof(ep),
		    "models", i, "arch"), &m[i].arch));
		OPT(dec_opt_label(d, &mf, "quant", ipath(ep, sizeof(ep),
		    "models", i, "quant"), &m[i].quant));
		if ((v = fget(&mf, "params")) != NULL)
			OPT(g_uint(d, v, ipath(ep, sizeof(ep), "models", i,
			    "params"), UINT64_MAX, &m[i].params));
		OPT(dec_opt_label(d, &mf, "license", ipath(ep, sizeof(ep),
		    "models", i, "license"), &m[i].license));
		if ((v = fget(&mf, "resident")) != NULL)
			OPT(g_bool(d, v, ipath(ep, sizeof(ep), "models", i,
			    "resident"), &m[i].resident));
	}
	lr->models = m;
	lr->n_models = n;
	return 0;
}

static int
dec_meta_value(struct dec *d, const msgpack_object *v, const char *path,
    struct proto_meta *m)
{
	static const char *const names[] = { "array", "len", NULL };
	struct fields		 af;
	const msgpack_object	*o;
	int			 rc = 0;

	switch (v->type) {
	case MSGPACK_OBJECT_BOOLEAN:
		m->type = PROTO_META_BOOL;
		m->b = v->via.boolean;
		return 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		m->type = PROTO_META_INT;
		m->i = v->via.i64;
		return 0;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		m->type = PROTO_META_UINT;
		m->u = v->via.u64;
		return 0;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		m->type = PROTO_META_FLOAT;
		return g_double(d, v, path, &m->f);
	case MSGPACK_OBJECT_STR:
		m->type = PROTO_META_STR;
		return g_str(d, v, path, d->l->max_text, S_TEXT, &m->s,
		    &m->s_len);
	case MSGPACK_OBJECT_MAP:
		m->type = PROTO_META_ARRAY;
		OPT(collect(d, v, path, names, &af));
		if ((o = fget(&af, "array")) == NULL)
			return MALFORMED(path, "array summary without "
			    "'array'");
		OPT(g_str(d, o, path, PROTO_MAX_IDENT, S_NAME, &m->elem,
		    NULL));
		if ((o = fget(&af, "len")) == NULL)
			return MALFORMED(path, "array summary without 'len'");
		return g_uint(d, o, path, UINT64_MAX, &m->n);
	default:
		return wrong(d, path, "a bool, number, string or array "
		    "summary", v);
	}
}

static int
dec_show_reply(struct dec *d, const struct fields *f,
    struct proto_show_reply *s)
{
	struct proto_meta	*m;
	const msgpack_object	*o;
	const msgpack_object_kv	*kv;
	char			 ep[96];
	uint32_t		 i, n;
	int			 rc = 0;

	if ((o = need(d, f, "model", &rc)) == NULL)
		return rc;
	OPT(g_str(d, o, "model", PROTO_MAX_NAME, S_NAME, &s->model, NULL));
	if ((o = need(d, f, "metadata", &rc)) == NULL)
		return rc;
	if (o->type != MSGPACK_OBJECT_MAP)
		return wrong(d, "metadata", "a map", o);
	if ((n = o->via.map.size) > d->l->max_items)
		return TOOBIG("metadata", "%u entries, over the limit of %u",
		    n, d->l->max_items);
	if ((m = arena_array(d->ar, n, sizeof(*m))) == NULL)
		return NOMEM();
	for (i = 0; i < n; i++) {
		kv = &o->via.map.ptr[i];
		memset(&m[i], 0, sizeof(m[i]));
		OPT(g_str(d, &kv->key, ipath(ep, sizeof(ep), "metadata", i,
		    NULL), PROTO_MAX_LABEL, S_NAME, &m[i].key, NULL));
		snprintf(ep, sizeof(ep), "metadata.%.64s", m[i].key);
		OPT(dec_meta_value(d, &kv->val, ep, &m[i]));
	}
	s->meta = m;
	s->n_meta = n;
	return 0;
}

static int
dec_ps_reply(struct dec *d, const struct fields *f, struct proto_ps_reply *p)
{
	static const char *const names[] = { "name", "memory", "hugepages",
	    "clients", "tokens", "keep_alive", "weights", "kv", "scratch",
	    "bytes_1g", "bytes_2m", "bytes_thp", "bytes_small", "pinned",
	    "placement", NULL };
	static const char *const bytes[] = { "weights", "kv", "scratch",
	    "bytes_1g", "bytes_2m", "bytes_thp", "bytes_small", NULL };
	struct proto_ps_entry	*m;
	uint64_t		*bv[7];
	size_t			 j;
	struct fields		 mf;
	const msgpack_object	*o, *v;
	char			 ep[48];
	uint32_t		 i, n;
	int			 rc = 0;

	if ((o = need(d, f, "models", &rc)) == NULL)
		return rc;
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return wrong(d, "models", "an array", o);
	if ((n = o->via.array.size) > d->l->max_items)
		return TOOBIG("models", "%u models, over the limit of %u", n,
		    d->l->max_items);
	if ((m = arena_array(d->ar, n, sizeof(*m))) == NULL)
		return NOMEM();
	for (i = 0; i < n; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		OPT(collect(d, &o->via.array.ptr[i],
		    ipath(ep, sizeof(ep), "models", i, NULL), names, &mf));
		if ((v = fget(&mf, "name")) == NULL)
			return MALFORMED(ipath(ep, sizeof(ep), "models", i,
			    "name"), "missing");
		OPT(g_str(d, v, ipath(ep, sizeof(ep), "models", i, "name"),
		    PROTO_MAX_NAME, S_NAME, &m[i].name, NULL));
		if ((v = fget(&mf, "memory")) != NULL)
			OPT(g_uint(d, v, ipath(ep, sizeof(ep), "models", i,
			    "memory"), UINT64_MAX, &m[i].memory));
		m[i].hugepages = "none";
		if ((v = fget(&mf, "hugepages")) != NULL)
			OPT(g_str(d, v, ipath(ep, sizeof(ep), "models", i,
			    "hugepages"), PROTO_MAX_IDENT, S_NAME,
			    &m[i].hugepages, NULL));
		if ((v = fget(&mf, "clients")) != NULL)
			OPT(g_u32(d, v, ipath(ep, sizeof(ep), "models", i,
			    "clients"), UINT32_MAX, &m[i].clients));
		if ((v = fget(&mf, "tokens")) != NULL)
			OPT(g_uint(d, v, ipath(ep, sizeof(ep), "models", i,
			    "tokens"), UINT64_MAX, &m[i].tokens));
		if ((v = fget(&mf, "keep_alive")) != NULL)
			OPT(g_int(d, v, ipath(ep, sizeof(ep), "models", i,
			    "keep_alive"), -1, INT64_MAX, &m[i].keep_alive));
		bv[0] = &m[i].weights;
		bv[1] = &m[i].kv;
		bv[2] = &m[i].scratch;
		bv[3] = &m[i].bytes_1g;
		bv[4] = &m[i].bytes_2m;
		bv[5] = &m[i].bytes_thp;
		bv[6] = &m[i].bytes_small;
		for (j = 0; bytes[j] != NULL; j++)
			if ((v = fget(&mf, bytes[j])) != NULL)
				OPT(g_uint(d, v, ipath(ep, sizeof(ep), "models",
				    i, bytes[j]), UINT64_MAX, bv[j]));
		if ((v = fget(&mf, "pinned")) != NULL)
			OPT(g_bool(d, v, ipath(ep, sizeof(ep), "models", i,
			    "pinned"), &m[i].pinned));
		if ((v = fget(&mf, "placement")) != NULL)
			OPT(g_str(d, v, ipath(ep, sizeof(ep), "models", i,
			    "placement"), PROTO_MAX_LABEL, S_NAME,
			    &m[i].placement, NULL));
	}
	p->models = m;
	p->n_models = n;
	return 0;
}

static int
dec_eval_reply(struct dec *d, const struct fields *f,
    struct proto_eval_reply *ev)
{
	const msgpack_object	*o;
	uint32_t		 n_lp = 0, n_ti = 0, n_tl = 0;
	size_t			 npos, maxtop;
	int			 rc = 0;

	if ((o = need(d, f, "tokens", &rc)) == NULL)
		return rc;
	OPT(g_ids(d, o, "tokens", d->l->max_ids, &ev->tokens, &ev->n_tokens));
	npos = ev->n_tokens > 0 ? ev->n_tokens - 1 : 0;
	if ((o = fget(f, "top")) != NULL)
		OPT(g_u32(d, o, "top", PROTO_MAX_TOP, &ev->top));
	maxtop = npos * ev->top;
	if ((o = need(d, f, "logprobs", &rc)) == NULL)
		return rc;
	OPT(g_floats(d, o, "logprobs", npos, &ev->logprobs, &n_lp));
	if ((o = fget(f, "top_ids")) != NULL)
		OPT(g_ids(d, o, "top_ids", maxtop, &ev->top_ids, &n_ti));
	if ((o = fget(f, "top_logprobs")) != NULL)
		OPT(g_floats(d, o, "top_logprobs", maxtop, &ev->top_logprobs,
		    &n_tl));
	if (n_lp != npos)
		return INVALID("logprobs", "%u values for %zu positions", n_lp,
		    npos);
	if (n_ti != maxtop || n_tl != maxtop)
		return INVALID("top_ids", "%u ids and %u logprobs for %zu "
		    "positions of %u alternatives", n_ti, n_tl, npos, ev->top);
	return 0;
}

static int
dec_reply(struct dec *d, const msgpack_object *map, struct proto_response *r)
{
	static const char *const names[] = { "request", "version", "server",
	    "limits", "models", "model", "metadata", "memory", "ms", "prompt",
	    "template", "tokens", "logprobs", "top", "top_ids",
	    "top_logprobs", "embedding", "ids", "text", "found", "uptime",
	    "connections", "requests", "prompt_tokens", "generated_tokens",
	    "budget", "weights", "kv", "scratch", NULL };
	struct fields		 f;
	const msgpack_object	*o;
	enum proto_msg		 t;
	char			 desc[48];
	int			 rc = 0;

	OPT(collect(d, map, NULL, names, &f));
	if ((o = need(d, &f, "request", &rc)) == NULL)
		return rc;
	if (o->type != MSGPACK_OBJECT_STR)
		return wrong(d, "request", "a string", o);
	t = proto_msg_lookup(o->via.str.ptr, o->via.str.size);
	if (!proto_msg_has_reply(t)) {
		type_desc(desc, sizeof(desc), o);
		return MALFORMED("request", "unknown request type %s", desc);
	}
	r->request = t;
	snprintf(d->whatbuf, sizeof(d->whatbuf), "%s reply",
	    proto_msg_name(t));
	d->what = d->whatbuf;
	switch (t) {
	case PROTO_MSG_HELLO:
		return dec_hello_reply(d, &f, &r->u.hello);
	case PROTO_MSG_LIST:
		return dec_list_reply(d, &f, &r->u.list);
	case PROTO_MSG_SHOW:
		return dec_show_reply(d, &f, &r->u.show);
	case PROTO_MSG_LOAD:
		if ((o = need(d, &f, "model", &rc)) == NULL)
			return rc;
		OPT(g_str(d, o, "model", PROTO_MAX_NAME, S_NAME,
		    &r->u.load.model, NULL));
		OPT(dec_opt_u64(d, &f, "memory", &r->u.load.memory));
		if ((o = fget(&f, "ms")) != NULL)
			OPT(g_double(d, o, "ms", &r->u.load.ms));
		return 0;
	case PROTO_MSG_PS:
		return dec_ps_reply(d, &f, &r->u.ps);
	case PROTO_MSG_RENDER:
		if ((o = need(d, &f, "prompt", &rc)) == NULL)
			return rc;
		OPT(g_str(d, o, "prompt", d->l->max_text, S_TEXT,
		    &r->u.render.prompt, &r->u.render.prompt_len));
		if ((o = need(d, &f, "template", &rc)) == NULL)
			return rc;
		return g_str(d, o, "template", PROTO_MAX_IDENT, S_NAME,
		    &r->u.render.template, NULL);
	case PROTO_MSG_EVAL:
		return dec_eval_reply(d, &f, &r->u.eval);
	case PROTO_MSG_EMBED:
		if ((o = need(d, &f, "embedding", &rc)) == NULL)
			return rc;
		OPT(g_floats(d, o, "embedding", PROTO_MAX_EMBD,
		    &r->u.embed.embedding, &r->u.embed.n));
		return dec_opt_u32(d, &f, "tokens", &r->u.embed.tokens);
	case PROTO_MSG_TOKENIZE:
		if ((o = need(d, &f, "ids", &rc)) == NULL)
			return rc;
		return g_ids(d, o, "ids", d->l->max_ids, &r->u.tokenize.ids,
		    &r->u.tokenize.n_ids);
	case PROTO_MSG_DETOKENIZE:
		if ((o = need(d, &f, "text", &rc)) == NULL)
			return rc;
		return g_str(d, o, "text", d->l->max_text, S_TEXT,
		    &r->u.detokenize.text, &r->u.detokenize.text_len);
	case PROTO_MSG_CANCEL:
		if ((o = need(d, &f, "found", &rc)) == NULL)
			return rc;
		return g_bool(d, o, "found", &r->u.cancel.found);
	case PROTO_MSG_STATS:
		OPT(dec_opt_u64(d, &f, "uptime", &r->u.stats.uptime));
		OPT(dec_opt_u32(d, &f, "connections",
		    &r->u.stats.connections));
		OPT(dec_opt_u64(d, &f, "requests", &r->u.stats.requests));
		OPT(dec_opt_u64(d, &f, "prompt_tokens",
		    &r->u.stats.prompt_tokens));
		OPT(dec_opt_u64(d, &f, "generated_tokens",
		    &r->u.stats.generated_tokens));
		OPT(dec_opt_u32(d, &f, "models", &r->u.stats.models));
		OPT(dec_opt_u64(d, &f, "memory", &r->u.stats.memory));
		OPT(dec_opt_u64(d, &f, "budget", &r->u.stats.budget));
		OPT(dec_opt_u64(d, &f, "weights", &r->u.stats.weights));
		OPT(dec_opt_u64(d, &f, "kv", &r->u.stats.kv));
		return dec_opt_u64(d, &f, "scratch", &r->u.stats.scratch);
	default:
		return 0;	/* unload, ping */
	}
}

/* {code, message} of an error or a done event. */
static int
dec_error_map(struct dec *d, const msgpack_object *o, enum proto_code *code,
    const char **message)
{
	static const char *const names[] = { "code", "message", NULL };
	struct fields		 f;
	const msgpack_object	*v;
	enum proto_code		 c;

	int			 rc = 0;

	OPT(collect(d, o, "error", names, &f));
	if ((v = fget(&f, "code")) == NULL)
		return MALFORMED("error.code", "missing");
	if (v->type != MSGPACK_OBJECT_STR)
		return wrong(d, "error.code", "a string", v);
	/* a code from a newer peer is still an error: call it internal */
	c = proto_code_lookup(v->via.str.ptr, v->via.str.size);
	*code = c == PROTO_E_NONE ? PROTO_E_INTERNAL : c;
	if ((v = fget(&f, "message")) == NULL)
		return MALFORMED("error.message", "missing");
	return g_str(d, v, "error.message", PROTO_MAX_MESSAGE, S_NAME, message,
	    NULL);
}

static int
dec_token(struct dec *d, const msgpack_object *map, struct proto_token *t)
{
	static const char *const names[] = { "text", "token", "thinking",
	    "logprob", "top_ids", "top_logprobs", NULL };
	struct fields		 f;
	const msgpack_object	*o;
	uint64_t		 u;
	uint32_t		 n_ti = 0, n_tl = 0;
	double			 lp;
	int			 rc = 0;

	OPT(collect(d, map, NULL, names, &f));
	if ((o = need(d, &f, "text", &rc)) == NULL)
		return rc;
	OPT(g_str(d, o, "text", PROTO_MAX_PIECE, S_TEXT, &t->text,
	    &t->text_len));
	if ((o = need(d, &f, "token", &rc)) == NULL)
		return rc;
	OPT(g_uint(d, o, "token", INT32_MAX, &u));
	t->token = (int32_t)u;
	if ((o = fget(&f, "thinking")) != NULL)
		OPT(g_bool(d, o, "thinking", &t->thinking));
	if ((o = fget(&f, "logprob")) != NULL) {
		OPT(g_double(d, o, "logprob", &lp));
		if (fabs(lp) > FLT_MAX)
			return INVALID("logprob", "out of the range of a float");
		t->logprob = (float)lp;
		t->has_logprob = true;
	}
	if ((o = fget(&f, "top_ids")) != NULL)
		OPT(g_ids(d, o, "top_ids", PROTO_MAX_TOP, &t->top_ids, &n_ti));
	if ((o = fget(&f, "top_logprobs")) != NULL)
		OPT(g_floats(d, o, "top_logprobs", PROTO_MAX_TOP,
		    &t->top_logprobs, &n_tl));
	if (n_ti != n_tl)
		return INVALID("top_ids", "%u ids but %u logprobs", n_ti, n_tl);
	t->n_top = n_ti;
	if (n_ti == 0) {
		t->top_ids = NULL;
		t->top_logprobs = NULL;
	}
	return 0;
}

static int
dec_done(struct dec *d, const msgpack_object *map, struct proto_done *dn)
{
	static const char *const names[] = { "reason", "prompt_tokens",
	    "cached_tokens", "generated_tokens", "prefill_ms", "decode_ms",
	    "text", "thinking", "error", NULL };
	struct fields		 f;
	const msgpack_object	*o;
	int			 rc = 0;

	OPT(collect(d, map, NULL, names, &f));
	if ((o = need(d, &f, "reason", &rc)) == NULL)
		return rc;
	if (o->type != MSGPACK_OBJECT_STR)
		return wrong(d, "reason", "a string", o);
	dn->reason = proto_reason_lookup(o->via.str.ptr, o->via.str.size);
	if (dn->reason == PROTO_REASON_NONE)
		return INVALID("reason", "unknown stop reason");
	OPT(dec_opt_u32(d, &f, "prompt_tokens", &dn->prompt_tokens));
	OPT(dec_opt_u32(d, &f, "cached_tokens", &dn->cached_tokens));
	OPT(dec_opt_u32(d, &f, "generated_tokens", &dn->generated_tokens));
	if ((o = fget(&f, "prefill_ms")) != NULL)
		OPT(g_double(d, o, "prefill_ms", &dn->prefill_ms));
	if ((o = fget(&f, "decode_ms")) != NULL)
		OPT(g_double(d, o, "decode_ms", &dn->decode_ms));
	if ((o = fget(&f, "text")) != NULL)
		OPT(g_str(d, o, "text", d->l->max_text, S_TEXT, &dn->text,
		    &dn->text_len));
	if ((o = fget(&f, "thinking")) != NULL)
		OPT(g_str(d, o, "thinking", d->l->max_text, S_TEXT,
		    &dn->thinking, &dn->thinking_len));
	if ((o = fget(&f, "error")) != NULL)
		OPT(dec_error_map(d, o, &dn->error_code, &dn->error_message));
	if (dn->reason == PROTO_REASON_ERROR && dn->error_message == NULL)
		return MALFORMED(NULL, "missing field 'error'");
	return 0;
}

static int
decode_response(struct dec *d, const msgpack_object *obj, void *out)
{
	static const char *const names[] = { "done", "total", "error", NULL };
	struct proto_response	*r = out;
	struct fields		 f;
	const msgpack_object	*o;
	enum proto_msg		 type;
	uint64_t		 id;
	int			 rc = 0;

	OPT(dec_top(d, obj, false, &type, &id));
	proto_response_init(r, type, id);
	switch (type) {
	case PROTO_MSG_REPLY:
		rc = dec_reply(d, obj, r);
		break;
	case PROTO_MSG_TOKEN:
		rc = dec_token(d, obj, &r->u.token);
		break;
	case PROTO_MSG_DONE:
		rc = dec_done(d, obj, &r->u.done);
		break;
	case PROTO_MSG_PROGRESS:
		OPT(collect(d, obj, NULL, names, &f));
		if ((o = need(d, &f, "done", &rc)) == NULL)
			return rc;
		OPT(g_uint(d, o, "done", UINT64_MAX, &r->u.progress.done));
		if ((o = need(d, &f, "total", &rc)) == NULL)
			return rc;
		rc = g_uint(d, o, "total", UINT64_MAX, &r->u.progress.total);
		break;
	default:	/* PROTO_MSG_ERROR */
		OPT(collect(d, obj, NULL, names, &f));
		if ((o = need(d, &f, "error", &rc)) == NULL)
			return rc;
		rc = dec_error_map(d, o, &r->u.error.code,
		    &r->u.error.message);
		break;
	}
	if (rc < 0)
		return rc;
	return proto_response_check(r, d->l, d->e);
}

int
proto_unpack_response(const void *body, size_t len,
    const struct proto_limits *l, struct proto_response *out,
    struct proto_err *err)
{
	struct proto_response	 r;
	void			*mem = NULL;
	int			 rc;

	memset(&r, 0, sizeof(r));
	if ((rc = unpack_common(body, len, l, err, decode_response, &r,
	    &mem)) < 0)
		return rc;
	r.mem = mem;
	*out = r;
	return 0;
}

void
proto_response_free(struct proto_response *r)
{
	if (r == NULL)
		return;
	arena_free(r->mem);
	memset(r, 0, sizeof(*r));
}
