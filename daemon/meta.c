/*
 * meta.c - GGUF metadata for list, show and render.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"
#include "template.h"

#define META_FTYPE_GUESSED	1024	/* llama.cpp's "guessed" flag */

/* llama.cpp's llama_ftype values and their usual names. */
static const struct {
	uint32_t	 ftype;
	const char	*name;
} meta_ftypes[] = {
	{ 0, "F32" }, { 1, "F16" }, { 2, "Q4_0" }, { 3, "Q4_1" },
	{ 4, "Q4_1_SOME_F16" }, { 7, "Q8_0" }, { 8, "Q5_0" }, { 9, "Q5_1" },
	{ 10, "Q2_K" }, { 11, "Q3_K_S" }, { 12, "Q3_K_M" }, { 13, "Q3_K_L" },
	{ 14, "Q4_K_S" }, { 15, "Q4_K_M" }, { 16, "Q5_K_S" }, { 17, "Q5_K_M" },
	{ 18, "Q6_K" }, { 19, "IQ2_XXS" }, { 20, "IQ2_XS" }, { 21, "Q2_K_S" },
	{ 22, "IQ3_XS" }, { 23, "IQ3_XXS" }, { 24, "IQ1_S" }, { 25, "IQ4_NL" },
	{ 26, "IQ3_S" }, { 27, "IQ3_M" }, { 28, "IQ2_S" }, { 29, "IQ2_M" },
	{ 30, "IQ4_XS" }, { 31, "IQ1_M" }, { 32, "BF16" }, { 36, "TQ1_0" },
	{ 37, "TQ2_0" },
};

const char *
meta_ftype_name(uint32_t ftype)
{
	size_t i;

	ftype &= ~(uint32_t)META_FTYPE_GUESSED;
	for (i = 0; i < sizeof(meta_ftypes) / sizeof(meta_ftypes[0]); i++)
		if (meta_ftypes[i].ftype == ftype)
			return meta_ftypes[i].name;
	return NULL;
}

/*
 * Copy src (len bytes) to dst as valid UTF-8, at most max bytes: whole
 * characters, '?' for each invalid byte and (when label) each control
 * character. Returns the bytes written (dst needs max + 1 for the NUL).
 */
static size_t
meta_clean(char *dst, size_t max, const char *src, size_t len, bool label)
{
	size_t i = 0, o = 0, v, n, k;

	while (i < len && o < max) {
		v = proto_utf8_valid(src + i, len - i);
		if (v == 0) {
			dst[o++] = '?';
			i++;
			continue;
		}
		/* copy whole characters of the valid run that fit */
		n = v < max - o ? v : max - o;
		while (n > 0 && n < v &&
		    ((unsigned char)src[i + n] & 0xc0) == 0x80)
			n--;
		if (n == 0)
			break;
		for (k = 0; k < n; k++) {
			unsigned char c = (unsigned char)src[i + k];

			dst[o + k] = label && (c < 0x20 || c == 0x7f) ? '?' :
			    (char)c;
		}
		o += n;
		i += n;
	}
	dst[o] = '\0';
	return o;
}

void
meta_label(char *dst, size_t size, const char *s, size_t len)
{
	if (size == 0)
		return;
	if (s == NULL) {
		dst[0] = '\0';
		return;
	}
	meta_clean(dst, size - 1, s, len, true);
}

/* The dominant type of the 2-D (and larger) tensors, by elements. */
static const char *
meta_guess_quant(const struct gguf *g)
{
	uint64_t count[64] = { 0 }, best = 0;
	uint32_t type = UINT32_MAX;
	uint64_t i;

	for (i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];

		if (t->n_dims >= 2 && t->type < 64)
			count[t->type] += t->nelems;
	}
	for (i = 0; i < 64; i++)
		if (count[i] > best) {
			best = count[i];
			type = (uint32_t)i;
		}
	return type == UINT32_MAX ? NULL : gguf_type_name(type);
}

void
meta_info(const struct gguf *g, struct meta_info *out)
{
	const struct gguf_str *s;
	const char *q = NULL;
	uint32_t ftype;
	uint64_t i;
	size_t k;

	memset(out, 0, sizeof(*out));
	if (gguf_get_str(g, "general.architecture", &s) == 0)
		meta_label(out->arch, sizeof(out->arch), s->s, s->len);
	if (gguf_get_str(g, "general.license", &s) == 0)
		meta_label(out->license, sizeof(out->license), s->s, s->len);
	if (gguf_get_u32(g, "general.file_type", &ftype) == 0)
		q = meta_ftype_name(ftype);
	if (q == NULL)
		q = meta_guess_quant(g);
	if (q != NULL) {
		meta_label(out->quant, sizeof(out->quant), q, strlen(q));
		for (k = 0; out->quant[k] != '\0'; k++)
			out->quant[k] = (char)toupper((unsigned char)out->quant[k]);
	}
	for (i = 0; i < g->n_tensors; i++)
		out->params += g->tensors[i].nelems;
}

/* Element type names of array summaries (identifiers). */
static const char *
meta_vtype_name(enum gguf_vtype t)
{
	static const char *const names[GGUF_VTYPE_COUNT] = {
		[GGUF_VTYPE_UINT8] = "u8", [GGUF_VTYPE_INT8] = "i8",
		[GGUF_VTYPE_UINT16] = "u16", [GGUF_VTYPE_INT16] = "i16",
		[GGUF_VTYPE_UINT32] = "u32", [GGUF_VTYPE_INT32] = "i32",
		[GGUF_VTYPE_FLOAT32] = "f32", [GGUF_VTYPE_BOOL] = "bool",
		[GGUF_VTYPE_STRING] = "string", [GGUF_VTYPE_ARRAY] = "array",
		[GGUF_VTYPE_UINT64] = "u64", [GGUF_VTYPE_INT64] = "i64",
		[GGUF_VTYPE_FLOAT64] = "f64",
	};

	return (unsigned)t < GGUF_VTYPE_COUNT ? names[t] : "unknown";
}

/* Keep a cleaned copy of a string; NULL on ENOMEM. */
static char *
meta_keep(struct meta_show *s, const char *src, size_t len, size_t max,
    bool label, size_t *out_len)
{
	size_t n = len < max ? len : max;
	char *d;

	if ((d = malloc(n + 1)) == NULL)
		return NULL;
	*out_len = meta_clean(d, n, src, len, label);
	s->strs[s->n_strs++] = d;
	return d;
}

int
meta_show(const struct gguf *g, const struct proto_limits *l,
    struct meta_show *out)
{
	struct meta_show s = { NULL, 0, NULL, 0 };
	uint64_t i, n = g->n_kv;
	size_t len;

	if (n > l->max_items)
		n = l->max_items;
	if ((s.meta = calloc(n ? n : 1, sizeof(*s.meta))) == NULL ||
	    (s.strs = calloc(n ? 2 * n : 1, sizeof(*s.strs))) == NULL)
		goto nomem;
	for (i = 0; i < n; i++) {
		const struct gguf_kv *kv = &g->kv[i];
		struct proto_meta *m = &s.meta[s.n_meta];

		m->key = meta_keep(&s, kv->key.s, kv->key.len,
		    PROTO_MAX_LABEL, true, &len);
		if (m->key == NULL)
			goto nomem;
		if (len == 0)
			continue;	/* an empty key cannot travel */
		switch (kv->type) {
		case GGUF_VTYPE_UINT8:
		case GGUF_VTYPE_UINT16:
		case GGUF_VTYPE_UINT32:
		case GGUF_VTYPE_UINT64:
			m->type = PROTO_META_UINT;
			m->u = kv->v.u64;
			break;
		case GGUF_VTYPE_INT8:
		case GGUF_VTYPE_INT16:
		case GGUF_VTYPE_INT32:
		case GGUF_VTYPE_INT64:
			if (kv->v.i64 >= 0) {
				m->type = PROTO_META_UINT;
				m->u = (uint64_t)kv->v.i64;
			} else {
				m->type = PROTO_META_INT;
				m->i = kv->v.i64;
			}
			break;
		case GGUF_VTYPE_FLOAT32:
		case GGUF_VTYPE_FLOAT64:
			if (isfinite(kv->v.f64)) {
				m->type = PROTO_META_FLOAT;
				m->f = kv->v.f64;
			} else {
				m->type = PROTO_META_STR;
				m->s = isnan(kv->v.f64) ? "nan" :
				    kv->v.f64 > 0 ? "inf" : "-inf";
				m->s_len = strlen(m->s);
			}
			break;
		case GGUF_VTYPE_BOOL:
			m->type = PROTO_META_BOOL;
			m->b = kv->v.b;
			break;
		case GGUF_VTYPE_STRING:
			m->type = PROTO_META_STR;
			m->s = meta_keep(&s, kv->v.str.s, kv->v.str.len,
			    l->max_text, false, &m->s_len);
			if (m->s == NULL)
				goto nomem;
			break;
		case GGUF_VTYPE_ARRAY:
			m->type = PROTO_META_ARRAY;
			m->elem = meta_vtype_name(kv->v.arr.type);
			m->n = kv->v.arr.n;
			break;
		default:
			continue;
		}
		s.n_meta++;
	}
	*out = s;
	return 0;
nomem:
	meta_show_free(&s);
	return -ENOMEM;
}

void
meta_show_free(struct meta_show *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n_strs; i++)
		free(s->strs[i]);
	free(s->strs);
	free(s->meta);
	memset(s, 0, sizeof(*s));
}

int
meta_chat_template(const struct gguf *g, const char **text, size_t *len)
{
	const struct gguf_str *s;

	if (gguf_get_str(g, "tokenizer.chat_template", &s) < 0)
		return -ENOENT;
	*text = s->s;
	*len = s->len;
	return 0;
}

const char *
meta_token_text(const struct gguf *g, const char *key)
{
	const struct gguf_kv *arr;
	const struct gguf_str *s;
	uint32_t id;

	if (gguf_get_u32(g, key, &id) < 0 ||
	    gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VTYPE_STRING,
	    &arr) < 0 || id >= arr->v.arr.n)
		return NULL;
	s = &((const struct gguf_str *)arr->v.arr.data)[id];
	if (s->len == 0 || s->len > TMPL_MAX_TOKEN || strlen(s->s) != s->len)
		return NULL;
	return s->s;
}

void
meta_render_view(const struct gguf *g, struct meta_render *out)
{
	memset(out, 0, sizeof(*out));
	if (meta_chat_template(g, &out->tmpl, &out->tmpl_len) < 0) {
		out->tmpl = NULL;
		out->tmpl_len = 0;
	}
	out->bos = meta_token_text(g, "tokenizer.ggml.bos_token_id");
	out->eos = meta_token_text(g, "tokenizer.ggml.eos_token_id");
}

int
meta_render_copy(const struct meta_render *in, struct meta_render *out)
{
	size_t tl = in->tmpl != NULL ? in->tmpl_len : 0;
	size_t bl = in->bos != NULL ? strlen(in->bos) : 0;
	size_t el = in->eos != NULL ? strlen(in->eos) : 0;
	struct meta_render r;
	char *p;

	memset(&r, 0, sizeof(r));
	if ((r.buf = malloc(tl + bl + el + 3)) == NULL)
		return -ENOMEM;
	p = r.buf;
	if (in->tmpl != NULL) {
		memcpy(p, in->tmpl, tl);
		p[tl] = '\0';
		r.tmpl = p;
		r.tmpl_len = tl;
	}
	p += tl + 1;
	if (in->bos != NULL) {
		memcpy(p, in->bos, bl + 1);
		r.bos = p;
	}
	p += bl + 1;
	if (in->eos != NULL) {
		memcpy(p, in->eos, el + 1);
		r.eos = p;
	}
	*out = r;
	return 0;
}

void
meta_render_free(struct meta_render *r)
{
	if (r == NULL)
		return;
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

size_t
meta_show_bytes(const struct meta_show *s)
{
	size_t i, n;

	n = (size_t)s->n_meta * sizeof(*s->meta) + s->n_strs *
	    sizeof(*s->strs);
	for (i = 0; i < s->n_strs; i++)
		n += strlen(s->strs[i]) + 1;
	return n;
}
