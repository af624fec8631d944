/*
 * gguf.c - the hardened GGUF reader (versions 2 and 3).
 *
 * The header region (magic, counts, metadata, tensor infos) is read with
 * pread through a small buffered reader that knows the current offset;
 * tensor data is only read by gguf_read_tensor(). Every count and length
 * is checked against the caps in gguf.h and against the bytes left in
 * the file before anything is allocated, so a lying file fails fast and
 * cannot make us allocate much more than its own size. All strings of
 * the header live in one chunked arena; keys and tensor names are kept
 * sorted for duplicate checks and lookups (O(n log n), no hashing).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"

#define GGUF_RD_BUF	(64u * 1024)	/* header read buffer */
#define GGUF_DATA_CHUNK	(8u << 20)	/* tensor data pread size */
#define GGUF_ARENA_CHUNK (64u * 1024)	/* string arena chunk */
#define GGUF_MIN_KV	13	/* key length 8 + type 4 + 1-byte value */
#define GGUF_MIN_TINFO	32	/* name length 8 + n_dims 4 + one dim 8 +
				 * type 4 + offset 8 */
#define GGUF_NAME_SHOW	48	/* bytes of a name shown in messages */

/* Block geometry of one GGML type. */
struct gguf_type_info {
	const char	*name;	/* "q4_k"; NULL for ids that are not types */
	uint32_t	 blck;	/* elements per block */
	uint32_t	 size;	/* bytes per block */
};

static const struct gguf_type_info gguf_types[] = {
	[0]  = { "f32",      1,   4 },
	[1]  = { "f16",      1,   2 },
	[2]  = { "q4_0",    32,  18 },
	[3]  = { "q4_1",    32,  20 },
	[6]  = { "q5_0",    32,  22 },
	[7]  = { "q5_1",    32,  24 },
	[8]  = { "q8_0",    32,  34 },
	[9]  = { "q8_1",    32,  36 },
	[10] = { "q2_k",   256,  84 },
	[11] = { "q3_k",   256, 110 },
	[12] = { "q4_k",   256, 144 },
	[13] = { "q5_k",   256, 176 },
	[14] = { "q6_k",   256, 210 },
	[15] = { "q8_k",   256, 292 },
	[16] = { "iq2_xxs", 256, 66 },
	[17] = { "iq2_xs", 256,  74 },
	[18] = { "iq3_xxs", 256, 98 },
	[19] = { "iq1_s",  256,  50 },
	[20] = { "iq4_nl",  32,  18 },
	[21] = { "iq3_s",  256, 110 },
	[22] = { "iq2_s",  256,  82 },
	[23] = { "iq4_xs", 256, 136 },
	[24] = { "i8",       1,   1 },
	[25] = { "i16",      1,   2 },
	[26] = { "i32",      1,   4 },
	[27] = { "i64",      1,   8 },
	[28] = { "f64",      1,   8 },
	[29] = { "iq1_m",  256,  56 },
	[30] = { "bf16",     1,   2 },
	[34] = { "tq1_0",  256,  54 },
	[35] = { "tq2_0",  256,  66 },
	[39] = { "mxfp4",   32,  17 },
};

static const char *const gguf_vtype_names[GGUF_VTYPE_COUNT] = {
	"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
	"bool", "string", "array", "uint64", "int64", "float64",
};

/* Bytes of one fixed-size value; the smallest encoding for STRING. */
static const uint8_t gguf_vtype_size[GGUF_VTYPE_COUNT] = {
	1, 1, 2, 2, 4, 4, 4, 1, 8, 0, 8, 8, 8,
};

/* One block of the string arena. */
struct gguf_chunk {
	struct gguf_chunk	*next;	/* older chunks */
	size_t			 size;	/* bytes in data[] */
	size_t			 used;	/* bytes handed out */
	char			 data[];	/* [size] */
};

/* What gguf_open() returns: the public part first. */
struct gguf_impl {
	struct gguf		 pub;		/* what callers see */
	struct gguf_chunk	*arena;		/* every string of the header */
	const struct gguf_str	**kv_sorted;	/* [n_kv] keys, sorted */
	const struct gguf_str	**t_sorted;	/* [n_tensors] names, sorted */
};

/* State while parsing: the buffered reader and the current place. */
struct gguf_parse {
	struct gguf_impl	*gi;		/* being built */
	struct eng_err		*err;		/* messages go here */
	const char		*path;		/* for messages */
	int			 fd;
	uint64_t		 size;		/* file size */
	uint64_t		 pos;		/* next byte to read */
	uint8_t			*buf;		/* [GGUF_RD_BUF] read buffer */
	uint64_t		 boff;		/* file offset of buf[0] */
	size_t			 blen;		/* valid bytes in buf */
	/* the place being read, for messages */
	const char		*what;		/* "key", "tensor", NULL */
	uint64_t		 idx;		/* index of the key or tensor */
	const struct gguf_str	*name;		/* its name once known */
	const char		*field;		/* "type", "value", ... */
	uint64_t		 elem;		/* array element being read */
	int			 in_elem;	/* elem is meaningful */
};

static struct gguf_impl *
gguf_impl(const struct gguf *g)
{
	return (struct gguf_impl *)(uintptr_t)g;
}

/* --- types --------------------------------------------------------------- */

static const struct gguf_type_info *
gguf_type_info(uint32_t type)
{
	if (type >= sizeof(gguf_types) / sizeof(gguf_types[0]) ||
	    gguf_types[type].name == NULL)
		return NULL;
	return &gguf_types[type];
}

uint64_t
gguf_type_nbytes(uint32_t type, uint64_t n)
{
	const struct gguf_type_info *ti = gguf_type_info(type);
	uint64_t nb;

	if (ti == NULL || n % ti->blck != 0)
		return 0;
	nb = n / ti->blck;
	if (nb > UINT64_MAX / ti->size)
		return 0;
	return nb * ti->size;
}

const char *
gguf_type_name(uint32_t type)
{
	const struct gguf_type_info *ti = gguf_type_info(type);

	return ti == NULL ? NULL : ti->name;
}

static const char *
gguf_vtype_name(uint32_t t)
{
	return t < GGUF_VTYPE_COUNT ? gguf_vtype_names[t] : "unknown";
}

/* --- the string arena ---------------------------------------------------- */

static char *
gguf_arena_alloc(struct gguf_impl *gi, size_t n)
{
	struct gguf_chunk *c = gi->arena;
	size_t size;

	if (n > GGUF_ARENA_CHUNK / 4) {
		/* big strings get a chunk of their own behind the head */
		if ((c = malloc(sizeof(*c) + n)) == NULL)
			return NULL;
		c->size = c->used = n;
		if (gi->arena == NULL) {
			c->next = NULL;
			gi->arena = c;
		} else {
			c->next = gi->arena->next;
			gi->arena->next = c;
		}
		return c->data;
	}
	if (c == NULL || c->size - c->used < n) {
		size = GGUF_ARENA_CHUNK;
		if ((c = malloc(sizeof(*c) + size)) == NULL)
			return NULL;
		c->size = size;
		c->used = 0;
		c->next = gi->arena;
		gi->arena = c;
	}
	c->used += n;
	return c->data + c->used - n;
}

static void
gguf_arena_free(struct gguf_chunk *c)
{
	struct gguf_chunk *next;

	for (; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
}

/* --- messages ------------------------------------------------------------ */

/* A name fit for a message: at most GGUF_NAME_SHOW bytes, printable. */
static const char *
gguf_show(const struct gguf_str *s, char *buf, size_t size)
{
	size_t i, n;

	if (s == NULL || s->s == NULL) {
		snprintf(buf, size, "?");
		return buf;
	}
	n = s->len < GGUF_NAME_SHOW ? (size_t)s->len : GGUF_NAME_SHOW;
	if (n > size - 4)
		n = size - 4;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s->s[i];

		buf[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	if (n < s->len)
		memcpy(buf + i, "...", 3), i += 3;
	buf[i] = '\0';
	return buf;
}

/* "key 3", "key 'general.name' value", "tensor 'x' dims", "magic". */
static void
gguf_place(const struct gguf_parse *p, char *buf, size_t size)
{
	char name[GGUF_NAME_SHOW + 8];
	int n;

	if (p->what == NULL) {
		snprintf(buf, size, "%s", p->field != NULL ? p->field : "?");
		return;
	}
	if (p->name == NULL)
		n = snprintf(buf, size, "%s %" PRIu64, p->what, p->idx);
	else
		n = snprintf(buf, size, "%s '%s'", p->what,
		    gguf_show(p->name, name, sizeof(name)));
	if (n < 0 || (size_t)n >= size)
		return;
	if (p->in_elem)
		snprintf(buf + n, size - n, " element %" PRIu64, p->elem);
	else if (p->field != NULL)
		snprintf(buf + n, size - n, " %s", p->field);
}

static int
gguf_perr(struct gguf_parse *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
gguf_perr(struct gguf_parse *p, int code, const char *fmt, ...)
{
	char msg[ENG_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(p->err, code, "%s: %s", p->path, msg);
}

/* The name of the current key or tensor, for messages. */
static const char *
gguf_cur(const struct gguf_parse *p, char *buf, size_t size)
{
	return gguf_show(p->name, buf, size);
}

static int
gguf_truncated(struct gguf_parse *p)
{
	char place[160];

	gguf_place(p, place, sizeof(place));
	return gguf_perr(p, -EINVAL, "truncated at byte %" PRIu64
	    " reading %s", p->pos, place);
}

/* --- buffered reading ---------------------------------------------------- */

/* pread all of n bytes unless the file ends: bytes read or -errno. */
static ssize_t
gguf_pread_full(int fd, void *buf, size_t n, uint64_t off)
{
	size_t done = 0;
	ssize_t r;

	while (done < n) {
		r = pread(fd, (char *)buf + done, n - done,
		    (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

static uint64_t
gguf_left(const struct gguf_parse *p)
{
	return p->size - p->pos;
}

static int
gguf_rd(struct gguf_parse *p, void *dst, uint64_t n)
{
	uint8_t *d = dst;
	size_t len, off, k;
	ssize_t r;

	if (n > gguf_left(p))
		return gguf_truncated(p);
	while (n > 0) {
		if (p->pos < p->boff || p->pos >= p->boff + p->blen) {
			len = GGUF_RD_BUF;
			if (len > p->size - p->pos)
				len = (size_t)(p->size - p->pos);
			r = gguf_pread_full(p->fd, p->buf, len, p->pos);
			if (r < 0)
				return gguf_perr(p, (int)r, "read error at "
				    "byte %" PRIu64 ": %s", p->pos,
				    strerror((int)-r));
			if ((size_t)r < len)
				return gguf_perr(p, -EIO, "file changed while "
				    "reading (short read at byte %" PRIu64 ")",
				    p->pos + (uint64_t)r);
			p->boff = p->pos;
			p->blen = len;
		}
		off = (size_t)(p->pos - p->boff);
		k = p->blen - off;
		if (k > n)
			k = (size_t)n;
		memcpy(d, p->buf + off, k);
		d += k;
		p->pos += k;
		n -= k;
	}
	return 0;
}

static uint64_t
gguf_le(const uint8_t *b, unsigned n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | b[n];
	return v;
}

static int
gguf_rd_u32(struct gguf_parse *p, uint32_t *v)
{
	uint8_t b[4];
	int r;

	if ((r = gguf_rd(p, b, 4)) < 0)
		return r;
	*v = (uint32_t)gguf_le(b, 4);
	return 0;
}

static int
gguf_rd_u64(struct gguf_parse *p, uint64_t *v)
{
	uint8_t b[8];
	int r;

	if ((r = gguf_rd(p, b, 8)) < 0)
		return r;
	*v = gguf_le(b, 8);
	return 0;
}

/* A length-prefixed string of at most cap bytes, copied into the arena. */
static int
gguf_rd_str(struct gguf_parse *p, struct gguf_str *out, uint64_t cap)
{
	char place[160];
	uint64_t len;
	char *s;
	int r;

	if ((r = gguf_rd_u64(p, &len)) < 0)
		return r;
	if (len > cap) {
		gguf_place(p, place, sizeof(place));
		return gguf_perr(p, -EFBIG, "%s: string length %" PRIu64
		    " > max %" PRIu64, place, len, cap);
	}
	if (len > gguf_left(p)) {
		gguf_place(p, place, sizeof(place));
		return gguf_perr(p, -EINVAL, "truncated at byte %" PRIu64
		    " reading %s: string of %" PRIu64 " bytes, %" PRIu64
		    " left", p->pos, place, len, gguf_left(p));
	}
	if ((s = gguf_arena_alloc(p->gi, (size_t)len + 1)) == NULL)
		return gguf_perr(p, -ENOMEM, "out of memory");
	if ((r = gguf_rd(p, s, len)) < 0)
		return r;
	s[len] = '\0';
	out->len = len;
	out->s = s;
	return 0;
}

/* --- metadata ------------------------------------------------------------ */

static int
gguf_rd_array(struct gguf_parse *p, struct gguf_kv *kv)
{
	char nm[GGUF_NAME_SHOW + 8];
	struct gguf_str *strs;
	uint32_t et;
	uint64_t n, j, need;
	void *data;
	int r;

	p->field = "array type";
	if ((r = gguf_rd_u32(p, &et)) < 0)
		return r;
	if (et == GGUF_VTYPE_ARRAY)
		return gguf_perr(p, -EINVAL, "key '%s': array of arrays is "
		    "not supported", gguf_cur(p, nm, sizeof(nm)));
	if (et >= GGUF_VTYPE_COUNT)
		return gguf_perr(p, -EINVAL, "key '%s': unknown array element "
		    "type %" PRIu32, gguf_cur(p, nm, sizeof(nm)), et);
	p->field = "array length";
	if ((r = gguf_rd_u64(p, &n)) < 0)
		return r;
	if (n > GGUF_MAX_ARRAY)
		return gguf_perr(p, -E2BIG, "key '%s': array of %" PRIu64
		    " elements > max %u", gguf_cur(p, nm, sizeof(nm)), n,
		    GGUF_MAX_ARRAY);
	need = n * gguf_vtype_size[et];	/* n <= 2^26: no overflow */
	if (need > gguf_left(p))
		return gguf_perr(p, -EINVAL, "truncated at byte %" PRIu64
		    " reading key '%s': array of %" PRIu64 " %s needs at "
		    "least %" PRIu64 " bytes, %" PRIu64 " left", p->pos,
		    gguf_cur(p, nm, sizeof(nm)), n, gguf_vtype_name(et),
		    need, gguf_left(p));
	if (et == GGUF_VTYPE_STRING) {
		/* each string takes >= 8 bytes of file for 16 here */
		if ((strs = calloc(n > 0 ? n : 1, sizeof(*strs))) == NULL)
			return gguf_perr(p, -ENOMEM, "out of memory");
		data = strs;
	} else {
		if ((data = malloc(need > 0 ? need : 1)) == NULL)
			return gguf_perr(p, -ENOMEM, "out of memory");
		strs = NULL;
	}
	kv->type = GGUF_VTYPE_ARRAY;	/* from here gguf_close frees data */
	kv->v.arr.type = (enum gguf_vtype)et;
	kv->v.arr.n = n;
	kv->v.arr.data = data;
	if (strs == NULL) {
		p->field = "array data";
		return gguf_rd(p, data, need);
	}
	p->in_elem = 1;
	for (j = 0; j < n; j++) {
		p->elem = j;
		if ((r = gguf_rd_str(p, &strs[j], GGUF_MAX_STRING)) < 0)
			return r;
	}
	p->in_elem = 0;
	return 0;
}

static int
gguf_rd_value(struct gguf_parse *p, struct gguf_kv *kv, uint32_t type)
{
	uint8_t b[8];
	uint64_t v;
	unsigned sz;
	float f;
	uint32_t u;
	int r;

	p->field = "value";
	if (type == GGUF_VTYPE_STRING) {
		if ((r = gguf_rd_str(p, &kv->v.str, GGUF_MAX_STRING)) < 0)
			return r;
		kv->type = GGUF_VTYPE_STRING;
		return 0;
	}
	if (type == GGUF_VTYPE_ARRAY)
		return gguf_rd_array(p, kv);
	sz = gguf_vtype_size[type];
	if ((r = gguf_rd(p, b, sz)) < 0)
		return r;
	v = gguf_le(b, sz);
	switch (type) {
	case GGUF_VTYPE_UINT8:
	case GGUF_VTYPE_UINT16:
	case GGUF_VTYPE_UINT32:
	case GGUF_VTYPE_UINT64:
		kv->v.u64 = v;
		break;
	case GGUF_VTYPE_INT8:
		kv->v.i64 = (int8_t)(uint8_t)v;
		break;
	case GGUF_VTYPE_INT16:
		kv->v.i64 = (int16_t)(uint16_t)v;
		break;
	case GGUF_VTYPE_INT32:
		kv->v.i64 = (int32_t)(uint32_t)v;
		break;
	case GGUF_VTYPE_INT64:
		kv->v.i64 = (int64_t)v;
		break;
	case GGUF_VTYPE_FLOAT32:
		u = (uint32_t)v;
		memcpy(&f, &u, sizeof(f));
		kv->v.f64 = f;
		break;
	case GGUF_VTYPE_FLOAT64:
		memcpy(&kv->v.f64, &v, sizeof(v));
		break;
	case GGUF_VTYPE_BOOL:
		kv->v.b = v != 0;	/* any nonzero byte is true */
		break;
	default:
		break;
	}
	kv->type = (enum gguf_vtype)type;
	return 0;
}

static int
gguf_rd_kvs(struct gguf_parse *p)
{
	struct gguf *g = &p->gi->pub;
	struct gguf_kv *kv;
	uint64_t i;
	uint32_t type;
	char nm[GGUF_NAME_SHOW + 8];
	int r;

	p->what = "key";
	for (i = 0; i < g->n_kv; i++) {
		kv = &g->kv[i];
		p->idx = i;
		p->name = NULL;
		p->field = NULL;
		if ((r = gguf_rd_str(p, &kv->key, GGUF_MAX_KEY)) < 0)
			return r;
		if (kv->key.len == 0)
			return gguf_perr(p, -EINVAL, "key %" PRIu64 " is empty",
			    i);
		p->name = &kv->key;
		p->field = "type";
		if ((r = gguf_rd_u32(p, &type)) < 0)
			return r;
		if (type >= GGUF_VTYPE_COUNT)
			return gguf_perr(p, -EINVAL, "key '%s': unknown value "
			    "type %" PRIu32, gguf_cur(p, nm, sizeof(nm)), type);
		if ((r = gguf_rd_value(p, kv, type)) < 0)
			return r;
	}
	return 0;
}

/* --- sorted names -------------------------------------------------------- */

static int
gguf_str_cmp(const struct gguf_str *a, const struct gguf_str *b)
{
	size_t n = a->len < b->len ? (size_t)a->len : (size_t)b->len;
	int c = memcmp(a->s, b->s, n);

	if (c != 0)
		return c;
	return a->len < b->len ? -1 : a->len > b->len;
}

static int
gguf_sort_cmp(const void *a, const void *b)
{
	return gguf_str_cmp(*(const struct gguf_str *const *)a,
	    *(const struct gguf_str *const *)b);
}

/* Sort n names (at stride bytes apart from first) into *out. */
static int
gguf_sort_names(struct gguf_parse *p, const struct gguf_str *first,
    size_t stride, uint64_t n, const struct gguf_str ***out,
    const char *what)
{
	const struct gguf_str **v;
	char nm[GGUF_NAME_SHOW + 8];
	uint64_t i;

	*out = NULL;
	if (n == 0)
		return 0;
	if ((v = calloc(n, sizeof(*v))) == NULL)
		return gguf_perr(p, -ENOMEM, "out of memory");
	for (i = 0; i < n; i++)
		v[i] = (const struct gguf_str *)(const void *)
		    ((const char *)first + i * stride);
	qsort(v, n, sizeof(*v), gguf_sort_cmp);
	*out = v;
	for (i = 1; i < n; i++)
		if (gguf_str_cmp(v[i - 1], v[i]) == 0)
			return gguf_perr(p, -EINVAL, "duplicate %s '%s'", what,
			    gguf_show(v[i], nm, sizeof(nm)));
	return 0;
}

static const struct gguf_str *
gguf_bsearch(const struct gguf_str **v, uint64_t n, const char *name)
{
	struct gguf_str key;
	uint64_t lo = 0, hi = n, mid;
	int c;

	if (v == NULL || name == NULL)
		return NULL;
	key.s = (char *)(uintptr_t)name;
	key.len = strlen(name);
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = gguf_str_cmp(&key, v[mid]);
		if (c == 0)
			return v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const struct gguf_kv *
gguf_find_kv(const struct gguf *g, const char *key)
{
	const struct gguf_str *s;

	if (g == NULL)
		return NULL;
	s = gguf_bsearch(gguf_impl(g)->kv_sorted, g->n_kv, key);
	if (s == NULL)
		return NULL;
	return (const struct gguf_kv *)(const void *)
	    ((const char *)s - offsetof(struct gguf_kv, key));
}

const struct gguf_tensor *
gguf_find_tensor(const struct gguf *g, const char *name)
{
	const struct gguf_str *s;

	if (g == NULL)
		return NULL;
	s = gguf_bsearch(gguf_impl(g)->t_sorted, g->n_tensors, name);
	if (s == NULL)
		return NULL;
	return (const struct gguf_tensor *)(const void *)
	    ((const char *)s - offsetof(struct gguf_tensor, name));
}

/* --- known keys ---------------------------------------------------------- */

static void
gguf_kv_type_desc(const struct gguf_kv *kv, char *buf, size_t size)
{
	if (kv->type == GGUF_VTYPE_ARRAY)
		snprintf(buf, size, "array of %s",
		    gguf_vtype_name(kv->v.arr.type));
	else
		snprintf(buf, size, "%s", gguf_vtype_name(kv->type));
}

static int
gguf_is_int(enum gguf_vtype t)
{
	switch (t) {
	case GGUF_VTYPE_UINT8:
	case GGUF_VTYPE_INT8:
	case GGUF_VTYPE_UINT16:
	case GGUF_VTYPE_INT16:
	case GGUF_VTYPE_UINT32:
	case GGUF_VTYPE_INT32:
	case GGUF_VTYPE_UINT64:
	case GGUF_VTYPE_INT64:
		return 1;
	default:
		return 0;
	}
}

/* Keys whose type is fixed; arrays name their element type. */
static const struct {
	const char	*key;
	enum gguf_vtype	 type;
	enum gguf_vtype	 elem;	/* for ARRAY */
} gguf_known[] = {
	{ "general.alignment",		GGUF_VTYPE_UINT32, 0 },
	{ "general.architecture",	GGUF_VTYPE_STRING, 0 },
	{ "tokenizer.ggml.tokens",	GGUF_VTYPE_ARRAY, GGUF_VTYPE_STRING },
	{ "tokenizer.ggml.scores",	GGUF_VTYPE_ARRAY, GGUF_VTYPE_FLOAT32 },
	{ "tokenizer.ggml.token_type",	GGUF_VTYPE_ARRAY, GGUF_VTYPE_INT32 },
	{ "tokenizer.ggml.merges",	GGUF_VTYPE_ARRAY, GGUF_VTYPE_STRING },
};

/* "<arch>.X" keys that must hold an integer. */
static const char *const gguf_arch_int[] = {
	"context_length", "embedding_length", "block_count",
	"feed_forward_length", "attention.head_count",
	"attention.head_count_kv",
};

static int
gguf_check_known(struct gguf_parse *p)
{
	struct gguf *g = &p->gi->pub;
	const struct gguf_kv *kv, *arch;
	char have[32], want[32], nm[GGUF_NAME_SHOW + 8];
	size_t i, n, al;
	uint64_t k;

	for (i = 0; i < sizeof(gguf_known) / sizeof(gguf_known[0]); i++) {
		if ((kv = gguf_find_kv(g, gguf_known[i].key)) == NULL)
			continue;
		if (kv->type == gguf_known[i].type &&
		    (kv->type != GGUF_VTYPE_ARRAY ||
		    kv->v.arr.type == gguf_known[i].elem))
			continue;
		gguf_kv_type_desc(kv, have, sizeof(have));
		if (gguf_known[i].type == GGUF_VTYPE_ARRAY)
			snprintf(want, sizeof(want), "array of %s",
			    gguf_vtype_name(gguf_known[i].elem));
		else
			snprintf(want, sizeof(want), "%s",
			    gguf_vtype_name(gguf_known[i].type));
		return gguf_perr(p, -EINVAL, "key '%s' has type %s, want %s",
		    gguf_known[i].key, have, want);
	}
	if ((arch = gguf_find_kv(g, "general.architecture")) == NULL)
		return 0;
	al = (size_t)arch->v.str.len;
	for (k = 0; k < g->n_kv; k++) {
		kv = &g->kv[k];
		if (kv->key.len <= al + 1 ||
		    memcmp(kv->key.s, arch->v.str.s, al) != 0 ||
		    kv->key.s[al] != '.')
			continue;
		for (i = 0; i < sizeof(gguf_arch_int) /
		    sizeof(gguf_arch_int[0]); i++) {
			n = strlen(gguf_arch_int[i]);
			if (kv->key.len != al + 1 + n ||
			    memcmp(kv->key.s + al + 1, gguf_arch_int[i], n)
			    != 0)
				continue;
			if (gguf_is_int(kv->type))
				break;
			gguf_kv_type_desc(kv, have, sizeof(have));
			return gguf_perr(p, -EINVAL, "key '%s' has type %s, "
			    "want an integer", gguf_show(&kv->key, nm,
			    sizeof(nm)), have);
		}
	}
	return 0;
}

/* --- tensor infos -------------------------------------------------------- */

static int
gguf_rd_tensor_info(struct gguf_parse *p, struct gguf_tensor *t)
{
	const struct gguf_type_info *ti;
	char nm[GGUF_NAME_SHOW + 8];
	uint64_t ne, nelems = 1, nblocks;
	uint32_t d;
	int r;

	p->field = "name";
	if ((r = gguf_rd_str(p, &t->name, GGUF_MAX_KEY)) < 0)
		return r;
	if (t->name.len == 0)
		return gguf_perr(p, -EINVAL, "tensor %" PRIu64 " has an "
		    "empty name", p->idx);
	p->name = &t->name;
	gguf_cur(p, nm, sizeof(nm));
	p->field = "n_dims";
	if ((r = gguf_rd_u32(p, &t->n_dims)) < 0)
		return r;
	if (t->n_dims == 0)
		return gguf_perr(p, -EINVAL, "tensor '%s': n_dims 0", nm);
	if (t->n_dims > GGUF_MAX_DIMS)
		return gguf_perr(p, -EINVAL, "tensor '%s': n_dims %" PRIu32
		    " > %d", nm, t->n_dims, GGUF_MAX_DIMS);
	p->field = "dims";
	for (d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = 1;
	for (d = 0; d < t->n_dims; d++) {
		if ((r = gguf_rd_u64(p, &ne)) < 0)
			return r;
		if (ne > (uint64_t)INT64_MAX)
			return gguf_perr(p, -EINVAL, "tensor '%s': dim %" PRIu32
			    " is negative (%" PRId64 ")", nm, d, (int64_t)ne);
		if (ne == 0)
			return gguf_perr(p, -EINVAL, "tensor '%s': dim %" PRIu32
			    " is 0", nm, d);
		if (ne > (uint64_t)INT64_MAX / nelems)
			return gguf_perr(p, -EINVAL, "tensor '%s': element "
			    "count overflows at dim %" PRIu32, nm, d);
		nelems *= ne;
		t->ne[d] = ne;
	}
	p->field = "type";
	if ((r = gguf_rd_u32(p, &t->type)) < 0)
		return r;
	if ((ti = gguf_type_info(t->type)) == NULL)
		return gguf_perr(p, -EINVAL, "tensor '%s': unknown type %"
		    PRIu32, nm, t->type);
	if (t->ne[0] % ti->blck != 0)
		return gguf_perr(p, -EINVAL, "tensor '%s': row of %" PRIu64
		    " elements is not a multiple of the %s block size %"
		    PRIu32, nm, t->ne[0], ti->name, ti->blck);
	nblocks = nelems / ti->blck;
	if (nblocks > (uint64_t)INT64_MAX / ti->size)
		return gguf_perr(p, -EINVAL, "tensor '%s': data size "
		    "overflows (%" PRIu64 " blocks of %s)", nm, nblocks,
		    ti->name);
	t->nelems = nelems;
	t->nbytes = nblocks * ti->size;
	p->field = "offset";
	if ((r = gguf_rd_u64(p, &t->offset)) < 0)
		return r;
	if (t->offset % p->gi->pub.alignment != 0)
		return gguf_perr(p, -EINVAL, "tensor '%s': offset %" PRIu64
		    " not aligned to %" PRIu32, nm, t->offset,
		    p->gi->pub.alignment);
	return 0;
}

static int
gguf_off_cmp(const void *a, const void *b)
{
	const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
	const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every tensor within the file, none overlapping another. */
static int
gguf_check_extents(struct gguf_parse *p)
{
	struct gguf *g = &p->gi->pub;
	const struct gguf_tensor **v, *t;
	char a[GGUF_NAME_SHOW + 8], b[GGUF_NAME_SHOW + 8];
	uint64_t i, avail, abs;
	int r = 0;

	avail = g->data_offset <= p->size ? p->size - g->data_offset : 0;
	for (i = 0; i < g->n_tensors; i++) {
		t = &g->tensors[i];
		if (t->offset <= avail && t->nbytes <= avail - t->offset)
			continue;
		abs = t->offset <= UINT64_MAX - g->data_offset ?
		    g->data_offset + t->offset : t->offset;
		return gguf_perr(p, -EINVAL, "tensor '%s': offset %" PRIu64
		    " + %" PRIu64 " bytes past end of file (size %" PRIu64
		    ")", gguf_show(&t->name, a, sizeof(a)), abs, t->nbytes,
		    p->size);
	}
	if (g->n_tensors < 2)
		return 0;
	if ((v = calloc(g->n_tensors, sizeof(*v))) == NULL)
		return gguf_perr(p, -ENOMEM, "out of memory");
	for (i = 0; i < g->n_tensors; i++)
		v[i] = &g->tensors[i];
	qsort(v, g->n_tensors, sizeof(*v), gguf_off_cmp);
	for (i = 1; i < g->n_tensors; i++) {
		if (v[i - 1]->offset + v[i - 1]->nbytes <= v[i]->offset)
			continue;
		r = gguf_perr(p, -EINVAL, "tensors '%s' and '%s' overlap "
		    "(offsets %" PRIu64 " + %" PRIu64 " and %" PRIu64 ")",
		    gguf_show(&v[i - 1]->name, a, sizeof(a)),
		    gguf_show(&v[i]->name, b, sizeof(b)), v[i - 1]->offset,
		    v[i - 1]->nbytes, v[i]->offset);
		break;
	}
	free(v);
	return r;
}

/* --- open / close -------------------------------------------------------- */

static int
gguf_rd_header(struct gguf_parse *p)
{
	struct gguf *g = &p->gi->pub;
	uint32_t magic, version, swapped;
	uint64_t n_tensors, n_kv, need;
	int r;

	p->what = NULL;
	p->field = "magic";
	if ((r = gguf_rd_u32(p, &magic)) < 0)
		return r;
	if (magic != GGUF_MAGIC)
		return gguf_perr(p, -EINVAL, "bad magic 0x%08" PRIx32
		    " (not a GGUF file)", magic);
	p->field = "version";
	if ((r = gguf_rd_u32(p, &version)) < 0)
		return r;
	swapped = (version >> 24) | ((version >> 8) & 0xff00) |
	    ((version << 8) & 0xff0000) | (version << 24);
	if (version == 1)
		return gguf_perr(p, -EINVAL, "version 1 is not supported "
		    "(obsolete GGUF v1; want 2 or 3)");
	if (swapped == 2 || swapped == 3)
		return gguf_perr(p, -EINVAL, "version 0x%08" PRIx32 " is not "
		    "supported (big-endian GGUF?)", version);
	if (version != 2 && version != 3)
		return gguf_perr(p, -EINVAL, "version %" PRIu32 " is not "
		    "supported (want 2 or 3)", version);
	g->version = version;
	p->field = "tensor count";
	if ((r = gguf_rd_u64(p, &n_tensors)) < 0)
		return r;
	p->field = "key/value count";
	if ((r = gguf_rd_u64(p, &n_kv)) < 0)
		return r;
	if (n_tensors > GGUF_MAX_TENSORS)
		return gguf_perr(p, -E2BIG, "tensor count %" PRIu64 " > max %u",
		    n_tensors, GGUF_MAX_TENSORS);
	if (n_kv > GGUF_MAX_KV)
		return gguf_perr(p, -E2BIG, "key/value count %" PRIu64
		    " > max %u", n_kv, GGUF_MAX_KV);
	need = n_kv * GGUF_MIN_KV + n_tensors * GGUF_MIN_TINFO;
	if (need > gguf_left(p))
		return gguf_perr(p, -EINVAL, "truncated: %" PRIu64 " keys and %"
		    PRIu64 " tensors need at least %" PRIu64 " bytes after "
		    "byte %" PRIu64 ", file size %" PRIu64, n_kv, n_tensors,
		    need, p->pos, p->size);
	if ((g->kv = calloc(n_kv > 0 ? n_kv : 1, sizeof(*g->kv))) == NULL ||
	    (g->tensors = calloc(n_tensors > 0 ? n_tensors : 1,
	    sizeof(*g->tensors))) == NULL)
		return gguf_perr(p, -ENOMEM, "out of memory");
	g->n_kv = n_kv;
	g->n_tensors = n_tensors;
	return 0;
}

static int
gguf_parse(struct gguf_parse *p)
{
	struct gguf_impl *gi = p->gi;
	struct gguf *g = &gi->pub;
	const struct gguf_kv *kv;
	uint64_t i;
	int r;

	if ((r = gguf_rd_header(p)) < 0 || (r = gguf_rd_kvs(p)) < 0)
		return r;
	p->what = NULL;
	p->name = NULL;
	p->field = NULL;
	if ((r = gguf_sort_names(p, &g->kv[0].key, sizeof(g->kv[0]),
	    g->n_kv, &gi->kv_sorted, "key")) < 0 ||
	    (r = gguf_check_known(p)) < 0)
		return r;
	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if ((kv = gguf_find_kv(g, "general.alignment")) != NULL) {
		if (kv->v.u64 == 0 || (kv->v.u64 & (kv->v.u64 - 1)) != 0)
			return gguf_perr(p, -EINVAL, "alignment %" PRIu64
			    " is not a power of two", kv->v.u64);
		g->alignment = (uint32_t)kv->v.u64;
	}
	p->what = "tensor";
	for (i = 0; i < g->n_tensors; i++) {
		p->idx = i;
		p->name = NULL;
		if ((r = gguf_rd_tensor_info(p, &g->tensors[i])) < 0)
			return r;
	}
	p->what = NULL;
	p->name = NULL;
	if ((r = gguf_sort_names(p, &g->tensors[0].name,
	    sizeof(g->tensors[0]), g->n_tensors, &gi->t_sorted,
	    "tensor")) < 0)
		return r;
	g->data_offset = p->pos + (g->alignment - p->pos % g->alignment) %
	    g->alignment;
	return gguf_check_extents(p);
}

static const char *
gguf_kind(mode_t m)
{
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	if (S_ISSOCK(m))
		return "a socket";
	return "not a regular file";
}

int
gguf_open(const char *path, struct gguf **out, struct eng_err *err)
{
	struct gguf_parse p;
	struct gguf_impl *gi = NULL;
	struct stat st;
	int fd, flags, r;

	if (path == NULL || out == NULL)
		return err_set(err, -EINVAL, "gguf_open: no path");
	/* O_NONBLOCK so that opening a FIFO cannot hang */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0) {
		r = err_set(err, -errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		r = err_set(err, -EISDIR, "%s: is a directory", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		r = err_set(err, -EINVAL, "%s: is %s, not a regular file",
		    path, gguf_kind(st.st_mode));
		goto fail;
	}
	if ((flags = fcntl(fd, F_GETFL)) != -1)
		(void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	if (st.st_size == 0) {
		r = err_set(err, -EINVAL, "%s: file is empty", path);
		goto fail;
	}

	memset(&p, 0, sizeof(p));
	if ((gi = calloc(1, sizeof(*gi))) != NULL)
		gi->pub.fd = -1;	/* fd is ours until success */
	if (gi == NULL || (gi->pub.path = strdup(path)) == NULL ||
	    (p.buf = malloc(GGUF_RD_BUF)) == NULL) {
		r = err_set(err, -ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	gi->pub.file_size = (uint64_t)st.st_size;
	gi->pub.alignment = GGUF_DEFAULT_ALIGNMENT;
	p.gi = gi;
	p.err = err;
	p.path = path;
	p.fd = fd;
	p.size = (uint64_t)st.st_size;
	r = gguf_parse(&p);
	free(p.buf);
	if (r < 0)
		goto fail;
	gi->pub.fd = fd;
	*out = &gi->pub;
	return 0;
fail:
	if (gi != NULL)
		gguf_close(&gi->pub);
	close(fd);
	return r;
}

void
gguf_close(struct gguf *g)
{
	struct gguf_impl *gi;
	uint64_t i;

	if (g == NULL)
		return;
	gi = gguf_impl(g);
	if (g->kv != NULL)
		for (i = 0; i < g->n_kv; i++)
			if (g->kv[i].type == GGUF_VTYPE_ARRAY)
				free(g->kv[i].v.arr.data);
	free(g->kv);
	free(g->tensors);
	free(gi->kv_sorted);
	free(gi->t_sorted);
	gguf_arena_free(gi->arena);
	if (g->fd >= 0)
		close(g->fd);
	free(g->path);
	free(gi);
}

/* --- typed getters ------------------------------------------------------- */

/* The integer value of kv as a signed/unsigned pair: 0 or -EINVAL. */
static int
gguf_kv_int(const struct gguf_kv *kv, int *neg, uint64_t *mag)
{
	switch (kv->type) {
	case GGUF_VTYPE_UINT8:
	case GGUF_VTYPE_UINT16:
	case GGUF_VTYPE_UINT32:
	case GGUF_VTYPE_UINT64:
		*neg = 0;
		*mag = kv->v.u64;
		return 0;
	case GGUF_VTYPE_INT8:
	case GGUF_VTYPE_INT16:
	case GGUF_VTYPE_INT32:
	case GGUF_VTYPE_INT64:
		*neg = kv->v.i64 < 0;
		*mag = *neg ? (uint64_t)0 - (uint64_t)kv->v.i64 :
		    (uint64_t)kv->v.i64;
		return 0;
	default:
		return -EINVAL;
	}
}

static int
gguf_get_int(const struct gguf *g, const char *key, int *neg, uint64_t *mag)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (kv == NULL)
		return -ENOENT;
	return gguf_kv_int(kv, neg, mag);
}

int
gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out)
{
	uint64_t m;
	int neg, r;

	if ((r = gguf_get_int(g, key, &neg, &m)) < 0)
		return r;
	if (neg || m > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)m;
	return 0;
}

int
gguf_get_u64(const struct gguf *g, const char *key, uint64_t *out)
{
	uint64_t m;
	int neg, r;

	if ((r = gguf_get_int(g, key, &neg, &m)) < 0)
		return r;
	if (neg)
		return -EINVAL;
	*out = m;
	return 0;
}

int
gguf_get_i32(const struct gguf *g, const char *key, int32_t *out)
{
	uint64_t m;
	int neg, r;

	if ((r = gguf_get_int(g, key, &neg, &m)) < 0)
		return r;
	if (neg ? m > (uint64_t)INT32_MAX + 1 : m > INT32_MAX)
		return -EINVAL;
	*out = neg ? (int32_t)(0 - (int64_t)m) : (int32_t)m;
	return 0;
}

int
gguf_get_f32(const struct gguf *g, const char *key, float *out)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VTYPE_FLOAT32 && kv->type != GGUF_VTYPE_FLOAT64)
		return -EINVAL;
	*out = (float)kv->v.f64;
	return 0;
}

int
gguf_get_bool(const struct gguf *g, const char *key, bool *out)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VTYPE_BOOL)
		return -EINVAL;
	*out = kv->v.b;
	return 0;
}

int
gguf_get_str(const struct gguf *g, const char *key,
    const struct gguf_str **out)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VTYPE_STRING)
		return -EINVAL;
	*out = &kv->v.str;
	return 0;
}

int
gguf_get_arr(const struct gguf *g, const char *key, enum gguf_vtype elem,
    const struct gguf_kv **out)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VTYPE_ARRAY || kv->v.arr.type != elem)
		return -EINVAL;
	*out = kv;
	return 0;
}

/* --- tensor data --------------------------------------------------------- */

int
gguf_read_tensor(const struct gguf *g, const struct gguf_tensor *t,
    void *dst, size_t dst_size, struct eng_err *err)
{
	char nm[GGUF_NAME_SHOW + 8];
	struct stat st;
	uint64_t off, done = 0;
	size_t chunk;
	ssize_t r;

	if (g == NULL || t == NULL)
		return err_set(err, -EINVAL, "gguf_read_tensor: no tensor");
	if (g->n_tensors == 0 || t < g->tensors ||
	    t >= g->tensors + g->n_tensors)
		return err_set(err, -EINVAL, "%s: tensor not from this file",
		    g->path);
	gguf_show(&t->name, nm, sizeof(nm));
	if (t->nbytes > SIZE_MAX)
		return err_set(err, -EFBIG, "%s: tensor '%s': %" PRIu64
		    " bytes do not fit in memory", g->path, nm, t->nbytes);
	if (dst == NULL || dst_size < t->nbytes)
		return err_set(err, -EINVAL, "%s: tensor '%s': buffer of %zu "
		    "bytes, need %" PRIu64, g->path, nm,
		    dst == NULL ? (size_t)0 : dst_size, t->nbytes);
	off = g->data_offset + t->offset;	/* checked at open */
	if (fstat(g->fd, &st) != 0)
		return err_set(err, -errno, "%s: %s", g->path,
		    strerror(errno));
	if ((uint64_t)st.st_size < off + t->nbytes)
		return err_set(err, -EIO, "%s: file changed: size now %"
		    PRIu64 ", was %" PRIu64 " (tensor '%s')", g->path,
		    (uint64_t)st.st_size, g->file_size, nm);
	while (done < t->nbytes) {
		chunk = GGUF_DATA_CHUNK;
		if (chunk > t->nbytes - done)
			chunk = (size_t)(t->nbytes - done);
		r = pread(g->fd, (char *)dst + done, chunk,
		    (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return err_set(err, -errno, "%s: tensor '%s': read "
			    "error at byte %" PRIu64 ": %s", g->path, nm,
			    off + done, strerror(errno));
		}
		if (r == 0)
			return err_set(err, -EIO, "%s: file changed: tensor "
			    "'%s' short at byte %" PRIu64, g->path, nm,
			    off + done);
		done += (uint64_t)r;
	}
	return 0;
}
