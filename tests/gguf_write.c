/*
 * gguf_write.c - a GGUF (version 3) writer for tests and the model maker.
 *
 * Keys and tensors are kept in the order added. The layout written is
 * the one llama.cpp writes: header, key/values, tensor infos, padding to
 * the alignment (general.alignment when it is a nonzero uint32, else
 * 32), then each tensor's data padded to the alignment. Metadata is not
 * validated (tests write wrong types on purpose); tensors are: their
 * shape, type and data size must agree.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf_write.h"

#define GW_OUT_BUF	(1u << 20)	/* staging buffer for files */

/* One tensor: a copy of its data and shape. */
struct gw_tensor {
	char		*name;			/* NUL-terminated */
	size_t		 name_len;		/* bytes of name */
	uint32_t	 n_dims;		/* 1..GGUF_MAX_DIMS */
	uint64_t	 ne[GGUF_MAX_DIMS];	/* elements per dim */
	uint32_t	 type;			/* GGML type id */
	uint8_t		*data;			/* [nbytes] */
	uint64_t	 nbytes;		/* data size */
};

struct gguf_writer {
	struct gguf_kv		*kv;		/* [n_kv] owned copies: key.s,
						 * str.s, arr.data (and each
						 * string of a string array)
						 * are malloc'd */
	size_t			 n_kv;
	size_t			 cap_kv;	/* allocated entries of kv */
	struct gw_tensor	*t;		/* [n_t] */
	size_t			 n_t;
	size_t			 cap_t;		/* allocated entries of t */
};

/* Where serialized bytes go: a buffer of known size or a file. */
struct gw_out {
	uint8_t		*buf;	/* [cap] memory buffer or staging buffer */
	size_t		 cap;	/* bytes of buf */
	size_t		 len;	/* bytes in buf */
	int		 fd;	/* -1 for memory */
	int		 err;	/* first write error, -errno */
};

static const uint8_t gw_vsize[GGUF_VTYPE_COUNT] = {
	1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8,
};

int
gguf_writer_new(struct gguf_writer **out)
{
	struct gguf_writer *w;

	if (out == NULL)
		return -EINVAL;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return -ENOMEM;
	*out = w;
	return 0;
}

static void
gw_value_free(struct gguf_kv *kv)
{
	struct gguf_str *s;
	uint64_t i;

	if (kv->type == GGUF_VTYPE_STRING) {
		free(kv->v.str.s);
	} else if (kv->type == GGUF_VTYPE_ARRAY) {
		if (kv->v.arr.type == GGUF_VTYPE_STRING) {
			s = kv->v.arr.data;
			for (i = 0; i < kv->v.arr.n; i++)
				free(s[i].s);
		}
		free(kv->v.arr.data);
	}
	kv->type = GGUF_VTYPE_UINT8;
}

void
gguf_writer_free(struct gguf_writer *w)
{
	size_t i;

	if (w == NULL)
		return;
	for (i = 0; i < w->n_kv; i++) {
		gw_value_free(&w->kv[i]);
		free(w->kv[i].key.s);
	}
	for (i = 0; i < w->n_t; i++) {
		free(w->t[i].name);
		free(w->t[i].data);
	}
	free(w->kv);
	free(w->t);
	free(w);
}

static char *
gw_memdup(const void *p, size_t n)
{
	char *s;

	if ((s = malloc(n + 1)) == NULL)
		return NULL;
	if (n > 0)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/*
 * Store a new value (already an owned copy in *val) under key, replacing
 * an old value in place. On failure val is freed.
 */
static int
gw_put(struct gguf_writer *w, const char *key, struct gguf_kv *val)
{
	struct gguf_kv *kv;
	size_t i, len, cap;
	char *k;

	if (w == NULL || key == NULL || *key == '\0') {
		gw_value_free(val);
		return -EINVAL;
	}
	len = strlen(key);
	for (i = 0; i < w->n_kv; i++) {
		if (w->kv[i].key.len == len &&
		    memcmp(w->kv[i].key.s, key, len) == 0) {
			gw_value_free(&w->kv[i]);
			val->key = w->kv[i].key;
			w->kv[i] = *val;
			return 0;
		}
	}
	if (w->n_kv == w->cap_kv) {
		cap = w->cap_kv ? w->cap_kv * 2 : 16;
		if ((kv = realloc(w->kv, cap * sizeof(*kv))) == NULL) {
			gw_value_free(val);
			return -ENOMEM;
		}
		w->kv = kv;
		w->cap_kv = cap;
	}
	if ((k = gw_memdup(key, len)) == NULL) {
		gw_value_free(val);
		return -ENOMEM;
	}
	val->key.s = k;
	val->key.len = len;
	w->kv[w->n_kv++] = *val;
	return 0;
}

int
gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
	struct gguf_kv kv = { .type = GGUF_VTYPE_UINT32, .v.u64 = v };

	return gw_put(w, key, &kv);
}

int
gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
	struct gguf_kv kv = { .type = GGUF_VTYPE_INT32, .v.i64 = v };

	return gw_put(w, key, &kv);
}

int
gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
	struct gguf_kv kv = { .type = GGUF_VTYPE_UINT64, .v.u64 = v };

	return gw_put(w, key, &kv);
}

int
gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
	struct gguf_kv kv = { .type = GGUF_VTYPE_FLOAT32, .v.f64 = v };

	return gw_put(w, key, &kv);
}

int
gguf_writer_set_bool(struct gguf_writer *w, const char *key, int v)
{
	struct gguf_kv kv = { .type = GGUF_VTYPE_BOOL, .v.b = v != 0 };

	return gw_put(w, key, &kv);
}

static int
gw_set_strn(struct gguf_writer *w, const char *key, const char *s,
    uint64_t len)
{
	struct gguf_kv kv = { .type = GGUF_VTYPE_STRING };

	if (s == NULL && len > 0)
		return -EINVAL;
	if (len > SIZE_MAX - 1)
		return -EFBIG;
	if ((kv.v.str.s = gw_memdup(s, (size_t)len)) == NULL)
		return -ENOMEM;
	kv.v.str.len = len;
	return gw_put(w, key, &kv);
}

int
gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *s)
{
	if (s == NULL)
		return -EINVAL;
	return gw_set_strn(w, key, s, strlen(s));
}

int
gguf_writer_set_arr(struct gguf_writer *w, const char *key,
    enum gguf_vtype elem, const void *data, uint64_t n)
{
	struct gguf_kv kv = { .type = GGUF_VTYPE_ARRAY };
	uint64_t size;

	if ((unsigned)elem >= GGUF_VTYPE_COUNT || gw_vsize[elem] == 0 ||
	    (data == NULL && n > 0))
		return -EINVAL;
	if (n > SIZE_MAX / gw_vsize[elem])
		return -EFBIG;
	size = n * gw_vsize[elem];
	if ((kv.v.arr.data = malloc(size > 0 ? (size_t)size : 1)) == NULL)
		return -ENOMEM;
	if (size > 0)
		memcpy(kv.v.arr.data, data, (size_t)size);
	kv.v.arr.type = elem;
	kv.v.arr.n = n;
	return gw_put(w, key, &kv);
}

/* An array of n strings given as (pointer, length) pairs. */
static int
gw_set_arr_strs(struct gguf_writer *w, const char *key,
    const struct gguf_str *src, const char *const *strs, const size_t *lens,
    uint64_t n)
{
	struct gguf_kv kv = { .type = GGUF_VTYPE_ARRAY };
	struct gguf_str *d;
	const char *s;
	uint64_t i, len;
	int r;

	if (n > SIZE_MAX / sizeof(*d))
		return -EFBIG;
	if ((d = calloc(n > 0 ? (size_t)n : 1, sizeof(*d))) == NULL)
		return -ENOMEM;
	kv.v.arr.type = GGUF_VTYPE_STRING;
	kv.v.arr.n = n;
	kv.v.arr.data = d;
	for (i = 0; i < n; i++) {
		if (src != NULL) {
			s = src[i].s;
			len = src[i].len;
		} else {
			s = strs[i];
			if (lens != NULL)
				len = lens[i];
			else
				len = s != NULL ? strlen(s) : 0;
		}
		r = 0;
		if (s == NULL && len > 0)
			r = -EINVAL;
		else if (len > SIZE_MAX - 1)
			r = -EFBIG;
		else if ((d[i].s = gw_memdup(s, (size_t)len)) == NULL)
			r = -ENOMEM;
		if (r < 0) {
			kv.v.arr.n = i;
			gw_value_free(&kv);
			return r;
		}
		d[i].len = len;
	}
	return gw_put(w, key, &kv);
}

int
gguf_writer_set_arr_str(struct gguf_writer *w, const char *key,
    const char *const *strs, const size_t *lens, uint64_t n)
{
	if (strs == NULL && n > 0)
		return -EINVAL;
	return gw_set_arr_strs(w, key, NULL, strs, lens, n);
}

int
gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_kv *kv)
{
	struct gguf_kv c;
	char *key;

	if (w == NULL || kv == NULL || kv->key.s == NULL || kv->key.len == 0)
		return -EINVAL;
	/* keys with NUL bytes cannot be passed on as C strings */
	if (strlen(kv->key.s) != kv->key.len)
		return -EINVAL;
	key = kv->key.s;
	switch (kv->type) {
	case GGUF_VTYPE_STRING:
		return gw_set_strn(w, key, kv->v.str.s, kv->v.str.len);
	case GGUF_VTYPE_ARRAY:
		if (kv->v.arr.type == GGUF_VTYPE_STRING)
			return gw_set_arr_strs(w, key, kv->v.arr.data, NULL,
			    NULL, kv->v.arr.n);
		return gguf_writer_set_arr(w, key, kv->v.arr.type,
		    kv->v.arr.data, kv->v.arr.n);
	default:
		if ((unsigned)kv->type >= GGUF_VTYPE_COUNT)
			return -EINVAL;
		memset(&c, 0, sizeof(c));
		c.type = kv->type;
		c.v = kv->v;
		return gw_put(w, key, &c);
	}
}

int
gguf_writer_add_tensor(struct gguf_writer *w, const char *name,
    uint32_t n_dims, const uint64_t *ne, uint32_t type, const void *data,
    size_t nbytes)
{
	struct gw_tensor *t;
	uint64_t nelems = 1;
	size_t i, len, cap;
	uint32_t d;

	if (w == NULL || name == NULL || *name == '\0' || ne == NULL ||
	    n_dims == 0 || n_dims > GGUF_MAX_DIMS ||
	    (data == NULL && nbytes > 0))
		return -EINVAL;
	len = strlen(name);
	for (i = 0; i < w->n_t; i++)
		if (w->t[i].name_len == len &&
		    memcmp(w->t[i].name, name, len) == 0)
			return -EEXIST;
	for (d = 0; d < n_dims; d++) {
		if (ne[d] == 0 || ne[d] > (uint64_t)INT64_MAX / nelems)
			return -EINVAL;
		nelems *= ne[d];
	}
	if (gguf_type_nbytes(type, ne[0]) == 0 ||
	    gguf_type_nbytes(type, nelems) != nbytes)
		return -EINVAL;
	if (w->n_t == w->cap_t) {
		cap = w->cap_t ? w->cap_t * 2 : 16;
		if ((t = realloc(w->t, cap * sizeof(*t))) == NULL)
			return -ENOMEM;
		w->t = t;
		w->cap_t = cap;
	}
	t = &w->t[w->n_t];
	memset(t, 0, sizeof(*t));
	if ((t->name = gw_memdup(name, len)) == NULL ||
	    (t->data = malloc(nbytes > 0 ? nbytes : 1)) == NULL) {
		free(t->name);
		return -ENOMEM;
	}
	if (nbytes > 0)
		memcpy(t->data, data, nbytes);
	t->name_len = len;
	t->n_dims = n_dims;
	for (d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = d < n_dims ? ne[d] : 1;
	t->type = type;
	t->nbytes = nbytes;
	w->n_t++;
	return 0;
}

/* --- serializing --------------------------------------------------------- */

static uint64_t
gw_alignment(const struct gguf_writer *w)
{
	size_t i;

	for (i = 0; i < w->n_kv; i++)
		if (strcmp(w->kv[i].key.s, "general.alignment") == 0 &&
		    w->kv[i].type == GGUF_VTYPE_UINT32 && w->kv[i].v.u64 != 0)
			return w->kv[i].v.u64;
	return GGUF_DEFAULT_ALIGNMENT;
}

static uint64_t
gw_pad(uint64_t x, uint64_t a)
{
	return (a - x % a) % a;
}

static int
gw_write_full(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	ssize_t r;

	while (n > 0) {
		if ((r = write(fd, p, n)) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void
gw_flush(struct gw_out *o)
{
	int r;

	if (o->fd < 0 || o->len == 0)
		return;
	if (o->err == 0 && (r = gw_write_full(o->fd, o->buf, o->len)) < 0)
		o->err = r;
	o->len = 0;
}

static void
gw_emit(struct gw_out *o, const void *p, uint64_t n)
{
	const uint8_t *s = p;
	size_t k;

	while (n > 0) {
		if (o->len == o->cap) {
			if (o->fd < 0) {	/* sized wrong: a bug */
				o->err = -EOVERFLOW;
				return;
			}
			gw_flush(o);
		}
		k = o->cap - o->len;
		if (k > n)
			k = (size_t)n;
		memcpy(o->buf + o->len, s, k);
		o->len += k;
		s += k;
		n -= k;
	}
}

static void
gw_emit_le(struct gw_out *o, uint64_t v, unsigned n)
{
	uint8_t b[8];
	unsigned i;

	for (i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	gw_emit(o, b, n);
}

static void
gw_emit_zeros(struct gw_out *o, uint64_t n)
{
	static const uint8_t z[64];

	while (n > 0) {
		gw_emit(o, z, n < sizeof(z) ? n : sizeof(z));
		n -= n < sizeof(z) ? n : sizeof(z);
	}
}

static void
gw_emit_str(struct gw_out *o, const char *s, uint64_t len)
{
	gw_emit_le(o, len, 8);
	gw_emit(o, s, len);
}

static void
gw_emit_scalar(struct gw_out *o, const struct gguf_kv *kv)
{
	float f;
	uint32_t u;
	uint64_t v;

	switch (kv->type) {
	case GGUF_VTYPE_FLOAT32:
		f = (float)kv->v.f64;
		memcpy(&u, &f, sizeof(u));
		gw_emit_le(o, u, 4);
		break;
	case GGUF_VTYPE_FLOAT64:
		memcpy(&v, &kv->v.f64, sizeof(v));
		gw_emit_le(o, v, 8);
		break;
	case GGUF_VTYPE_BOOL:
		gw_emit_le(o, kv->v.b ? 1 : 0, 1);
		break;
	case GGUF_VTYPE_INT8:
	case GGUF_VTYPE_INT16:
	case GGUF_VTYPE_INT32:
	case GGUF_VTYPE_INT64:
		gw_emit_le(o, (uint64_t)kv->v.i64, gw_vsize[kv->type]);
		break;
	default:
		gw_emit_le(o, kv->v.u64, gw_vsize[kv->type]);
		break;
	}
}

/* Bytes of the header through the last tensor info. */
static uint64_t
gw_header_size(const struct gguf_writer *w)
{
	const struct gguf_kv *kv;
	const struct gguf_str *s;
	uint64_t n = 4 + 4 + 8 + 8, i, j;

	for (i = 0; i < w->n_kv; i++) {
		kv = &w->kv[i];
		n += 8 + kv->key.len + 4;
		if (kv->type == GGUF_VTYPE_STRING) {
			n += 8 + kv->v.str.len;
		} else if (kv->type == GGUF_VTYPE_ARRAY) {
			n += 4 + 8;
			if (kv->v.arr.type == GGUF_VTYPE_STRING) {
				s = kv->v.arr.data;
				for (j = 0; j < kv->v.arr.n; j++)
					n += 8 + s[j].len;
			} else {
				n += kv->v.arr.n * gw_vsize[kv->v.arr.type];
			}
		} else {
			n += gw_vsize[kv->type];
		}
	}
	for (i = 0; i < w->n_t; i++)
		n += 8 + w->t[i].name_len + 4 + 8 * w->t[i].n_dims + 4 + 8;
	return n;
}

/* Total file size. */
static uint64_t
gw_total_size(const struct gguf_writer *w)
{
	uint64_t a = gw_alignment(w), n = gw_header_size(w), i;

	n += gw_pad(n, a);
	for (i = 0; i < w->n_t; i++)
		n += w->t[i].nbytes + gw_pad(w->t[i].nbytes, a);
	return n;
}

static void
gw_serialize(const struct gguf_writer *w, struct gw_out *o)
{
	const struct gguf_kv *kv;
	const struct gguf_str *s;
	const struct gw_tensor *t;
	uint64_t a = gw_alignment(w), off = 0, i, j;
	uint32_t d;

	gw_emit_le(o, GGUF_MAGIC, 4);
	gw_emit_le(o, 3, 4);
	gw_emit_le(o, w->n_t, 8);
	gw_emit_le(o, w->n_kv, 8);
	for (i = 0; i < w->n_kv; i++) {
		kv = &w->kv[i];
		gw_emit_str(o, kv->key.s, kv->key.len);
		gw_emit_le(o, kv->type, 4);
		if (kv->type == GGUF_VTYPE_STRING) {
			gw_emit_str(o, kv->v.str.s, kv->v.str.len);
		} else if (kv->type == GGUF_VTYPE_ARRAY) {
			gw_emit_le(o, kv->v.arr.type, 4);
			gw_emit_le(o, kv->v.arr.n, 8);
			if (kv->v.arr.type == GGUF_VTYPE_STRING) {
				s = kv->v.arr.data;
				for (j = 0; j < kv->v.arr.n; j++)
					gw_emit_str(o, s[j].s, s[j].len);
			} else {
				/* raw little-endian, as held */
				gw_emit(o, kv->v.arr.data, kv->v.arr.n *
				    gw_vsize[kv->v.arr.type]);
			}
		} else {
			gw_emit_scalar(o, kv);
		}
	}
	for (i = 0; i < w->n_t; i++) {
		t = &w->t[i];
		gw_emit_str(o, t->name, t->name_len);
		gw_emit_le(o, t->n_dims, 4);
		for (d = 0; d < t->n_dims; d++)
			gw_emit_le(o, t->ne[d], 8);
		gw_emit_le(o, t->type, 4);
		gw_emit_le(o, off, 8);
		off += t->nbytes + gw_pad(t->nbytes, a);
	}
	gw_emit_zeros(o, gw_pad(gw_header_size(w), a));
	for (i = 0; i < w->n_t; i++) {
		gw_emit(o, w->t[i].data, w->t[i].nbytes);
		gw_emit_zeros(o, gw_pad(w->t[i].nbytes, a));
	}
	gw_flush(o);
}

int
gguf_writer_to_buf(const struct gguf_writer *w, uint8_t **buf, size_t *len)
{
	struct gw_out o = { .fd = -1 };
	uint64_t total;

	if (w == NULL || buf == NULL || len == NULL)
		return -EINVAL;
	total = gw_total_size(w);
	if (total > SIZE_MAX)
		return -EFBIG;
	if ((o.buf = malloc((size_t)total)) == NULL)
		return -ENOMEM;
	o.cap = (size_t)total;
	gw_serialize(w, &o);
	if (o.err != 0 || o.len != total) {
		free(o.buf);
		return o.err != 0 ? o.err : -EOVERFLOW;
	}
	*buf = o.buf;
	*len = o.len;
	return 0;
}

int
gguf_writer_to_file(const struct gguf_writer *w, const char *path,
    struct eng_err *err)
{
	struct gw_out o = { .fd = -1 };
	int r;

	if (w == NULL || path == NULL)
		return err_set(err, -EINVAL, "gguf_writer_to_file: no path");
	if ((o.buf = malloc(GW_OUT_BUF)) == NULL)
		return err_set(err, -ENOMEM, "%s: out of memory", path);
	o.cap = GW_OUT_BUF;
	o.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (o.fd < 0) {
		r = -errno;
		free(o.buf);
		return err_set(err, r, "%s: %s", path, strerror(-r));
	}
	gw_serialize(w, &o);
	free(o.buf);
	r = o.err;
	if (close(o.fd) != 0 && r == 0)
		r = -errno;
	if (r < 0) {
		unlink(path);
		return err_set(err, r, "%s: write: %s", path, strerror(-r));
	}
	return 0;
}
