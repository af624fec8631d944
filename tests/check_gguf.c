/*
 * check_gguf.c - tests of the GGUF reader (daemon/gguf.c) and writer
 * (tests/gguf_write.c): real files, round trips of every value type,
 * caps, and corrupt files that must each fail with a precise errno and
 * message.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_write.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static void
setup(void)
{
	tu_tmpdir();
}

static void
teardown(void)
{
	tu_tmpdir_free();
}

/* --- helpers ------------------------------------------------------------- */

static void
put_u32(uint8_t *b, size_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[off + i] = (uint8_t)(v >> (8 * i));
}

static void
put_u64(uint8_t *b, size_t off, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[off + i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get_u64(const uint8_t *b, size_t off)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[off + i];
	return v;
}

/* Offset of the length prefix of the GGUF string s in b; must be unique. */
static size_t
off_str(const uint8_t *b, size_t len, const char *s)
{
	size_t n = strlen(s), i, found = SIZE_MAX;
	uint8_t enc[8 + 256];

	ck_assert(n <= 256);
	put_u64(enc, 0, n);
	memcpy(enc + 8, s, n);
	for (i = 0; i + 8 + n <= len; i++) {
		if (memcmp(b + i, enc, 8 + n) != 0)
			continue;
		ck_assert_msg(found == SIZE_MAX, "'%s' found twice", s);
		found = i;
	}
	ck_assert_msg(found != SIZE_MAX, "'%s' not found", s);
	return found;
}

/* Offset of the u32 value type of key. */
static size_t
kv_type_off(const uint8_t *b, size_t len, const char *key)
{
	return off_str(b, len, key) + 8 + strlen(key);
}

/* Offset of n_dims of a tensor info; dims follow, then type, offset. */
static size_t
ti_off(const uint8_t *b, size_t len, const char *name)
{
	return off_str(b, len, name) + 8 + strlen(name);
}

static uint8_t *
w_buf(struct gguf_writer *w, size_t *len)
{
	uint8_t *b = NULL;

	ck_assert_int_eq(gguf_writer_to_buf(w, &b, len), 0);
	gguf_writer_free(w);
	return b;
}

static int
open_bytes(const uint8_t *b, size_t len, struct gguf **g, struct eng_err *e)
{
	const char *p = tu_tmpfile("t.gguf");

	ck_assert_int_eq(tu_write_file(p, b, len), 0);
	return gguf_open(p, g, e);
}

static struct gguf *
open_ok(const uint8_t *b, size_t len)
{
	struct gguf *g = NULL;
	struct eng_err e = { "" };
	int r;

	r = open_bytes(b, len, &g, &e);
	ck_assert_msg(r == 0, "open failed: %d %s", r, e.msg);
	ck_assert_ptr_nonnull(g);
	return g;
}

static void
expect_fail_at(const uint8_t *b, size_t len, int code, const char *sub,
    int line)
{
	struct gguf sentinel, *g = &sentinel;
	struct eng_err e;
	int r;

	memset(&e, 0, sizeof(e));
	r = open_bytes(b, len, &g, &e);
	ck_assert_msg(r == code && strstr(e.msg, sub) != NULL,
	    "line %d: got %d '%s', want %d '%s'", line, r, e.msg, code, sub);
	ck_assert_msg(g == &sentinel, "line %d: *out changed on failure",
	    line);
	ck_assert_msg(strncmp(e.msg, tu_tmpfile("t.gguf"),
	    strlen(tu_tmpfile("t.gguf"))) == 0, "line %d: no path in '%s'",
	    line, e.msg);
}
#define EXPECT_FAIL(b, len, code, sub) \
	expect_fail_at((b), (len), (code), (sub), __LINE__)

/* A hand-made byte string, for files the writer will not produce. */
struct bb {
	uint8_t	*b;	/* [cap] */
	size_t	 len;	/* bytes used */
	size_t	 cap;	/* bytes allocated */
};

static void
bb_put(struct bb *bb, const void *p, size_t n)
{
	if (bb->len + n > bb->cap) {
		bb->cap = (bb->len + n) * 2 + 64;
		bb->b = realloc(bb->b, bb->cap);
		ck_assert_ptr_nonnull(bb->b);
	}
	memcpy(bb->b + bb->len, p, n);
	bb->len += n;
}

static void
bb_u32(struct bb *bb, uint32_t v)
{
	uint8_t t[4];

	put_u32(t, 0, v);
	bb_put(bb, t, 4);
}

static void
bb_u64(struct bb *bb, uint64_t v)
{
	uint8_t t[8];

	put_u64(t, 0, v);
	bb_put(bb, t, 8);
}

static void
bb_str(struct bb *bb, const char *s)
{
	bb_u64(bb, strlen(s));
	bb_put(bb, s, strlen(s));
}

static void
bb_hdr(struct bb *bb, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
	bb_u32(bb, GGUF_MAGIC);
	bb_u32(bb, version);
	bb_u64(bb, n_tensors);
	bb_u64(bb, n_kv);
}

/*
 * The base file that the corruptions start from: 11 keys of many types,
 * 3 tensors (f32 8x2, q8_0 64, f32 4).
 */
static struct gguf_writer *
base_writer(void)
{
	static const char *const toks[] = { "a", "bb", "", "dddd" };
	const float scores[4] = { 0.0f, -1.0f, -2.5f, 3.0f };
	const int32_t tt[4] = { 1, 1, 3, 6 };
	const uint64_t u64s[5] = { 1, 2, 3, 4, UINT64_MAX };
	const uint64_t ne_a[2] = { 8, 2 }, ne_b[1] = { 64 }, ne_c[1] = { 4 };
	float alpha[16], gamma[4];
	uint8_t beta[68];
	struct gguf_writer *w;
	int i;

	for (i = 0; i < 16; i++)
		alpha[i] = (float)i * 0.5f;
	for (i = 0; i < 68; i++)
		beta[i] = (uint8_t)(i * 7);
	for (i = 0; i < 4; i++)
		gamma[i] = -(float)i;
	ck_assert_int_eq(gguf_writer_new(&w), 0);
	ck_assert_int_eq(gguf_writer_set_str(w, "general.architecture",
	    "llama"), 0);
	ck_assert_int_eq(gguf_writer_set_str(w, "general.name", "base model"),
	    0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "llama.block_count", 2), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "llama.embedding_length", 8),
	    0);
	ck_assert_int_eq(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens",
	    toks, NULL, 4), 0);
	ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.scores",
	    GGUF_VTYPE_FLOAT32, scores, 4), 0);
	ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.token_type",
	    GGUF_VTYPE_INT32, tt, 4), 0);
	ck_assert_int_eq(gguf_writer_set_arr(w, "test.u64arr",
	    GGUF_VTYPE_UINT64, u64s, 5), 0);
	ck_assert_int_eq(gguf_writer_set_f32(w, "test.f32", 1.5f), 0);
	ck_assert_int_eq(gguf_writer_set_bool(w, "test.bool", 1), 0);
	ck_assert_int_eq(gguf_writer_set_str(w, "test.str", "hello"), 0);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "wt.alpha", 2, ne_a,
	    0, alpha, sizeof(alpha)), 0);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "wt.beta", 1, ne_b,
	    8, beta, sizeof(beta)), 0);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "wt.gamma", 1, ne_c,
	    0, gamma, sizeof(gamma)), 0);
	return w;
}

static uint8_t *
base_buf(size_t *len)
{
	return w_buf(base_writer(), len);
}

/* --- core ---------------------------------------------------------------- */

START_TEST(test_aidreams)
{
	const char *path = tu_testdata("models/aidreams260K.gguf");
	const struct gguf_tensor *t;
	const struct gguf_kv *kv;
	const struct gguf_str *s, *toks;
	struct gguf *g = NULL;
	struct eng_err e;
	uint8_t *file, *data;
	size_t flen;
	uint32_t u;
	float f;

	if (path == NULL) {
		tu_skip("aidreams260K.gguf");
		return;
	}
	ck_assert_msg(gguf_open(path, &g, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(g->version, 3);
	ck_assert_uint_eq(g->alignment, 32);
	ck_assert_int_eq(gguf_get_str(g, "general.architecture", &s), 0);
	ck_assert_str_eq(s->s, "llama");
	ck_assert_int_eq(gguf_get_u32(g, "llama.embedding_length", &u), 0);
	ck_assert_uint_eq(u, 64);
	/*
	 * The file says 4 layers, 4 heads, context 128 (the README says 5,
	 * 8 and 512); its tensors agree with the file.
	 */
	ck_assert_int_eq(gguf_get_u32(g, "llama.block_count", &u), 0);
	ck_assert_uint_eq(u, 4);
	ck_assert_uint_eq(g->n_tensors, 3 + 4 * 9);
	ck_assert_int_eq(gguf_get_u32(g, "llama.context_length", &u), 0);
	ck_assert_uint_eq(u, 128);
	ck_assert_int_eq(gguf_get_u32(g, "llama.feed_forward_length", &u), 0);
	ck_assert_uint_eq(u, 172);
	ck_assert_int_eq(gguf_get_u32(g, "llama.attention.head_count", &u), 0);
	ck_assert_uint_eq(u, 4);
	ck_assert_int_eq(gguf_get_u32(g, "llama.attention.head_count_kv", &u),
	    0);
	ck_assert_uint_eq(u, 4);
	ck_assert_int_eq(gguf_get_f32(g,
	    "llama.attention.layer_norm_rms_epsilon", &f), 0);
	ck_assert_float_eq_tol(f, 1e-5f, 1e-12f);
	ck_assert_int_eq(gguf_get_arr(g, "tokenizer.ggml.tokens",
	    GGUF_VTYPE_STRING, &kv), 0);
	ck_assert_uint_eq(kv->v.arr.n, 512);
	toks = kv->v.arr.data;
	ck_assert_str_eq(toks[0].s, "<unk>");
	ck_assert_str_eq(toks[3].s, "<0x00>");
	ck_assert_int_eq(gguf_get_arr(g, "tokenizer.ggml.scores",
	    GGUF_VTYPE_FLOAT32, &kv), 0);
	ck_assert_uint_eq(kv->v.arr.n, 512);
	ck_assert_int_eq(gguf_get_arr(g, "tokenizer.ggml.tokens",
	    GGUF_VTYPE_INT32, &kv), -EINVAL);

	t = gguf_find_tensor(g, "token_embd.weight");
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(t->n_dims, 2);
	ck_assert_uint_eq(t->ne[0], 64);
	ck_assert_uint_eq(t->ne[1], 512);
	ck_assert_uint_eq(t->ne[2], 1);
	ck_assert_uint_eq(t->type, 0);
	ck_assert_uint_eq(t->nelems, 64 * 512);
	ck_assert_uint_eq(t->nbytes, 64 * 512 * 4);
	ck_assert_ptr_null(gguf_find_tensor(g, "token_embd.weigh"));
	ck_assert_ptr_null(gguf_find_tensor(g, "token_embd.weightx"));
	ck_assert_ptr_nonnull(gguf_find_tensor(g, "blk.3.ffn_down.weight"));
	ck_assert_ptr_null(gguf_find_tensor(g, "blk.4.ffn_down.weight"));

	/* the data read equals the bytes in the file */
	file = tu_read_file(path, &flen);
	ck_assert_ptr_nonnull(file);
	data = malloc(t->nbytes);
	ck_assert_int_eq(gguf_read_tensor(g, t, data, t->nbytes, &e), 0);
	ck_assert(g->data_offset + t->offset + t->nbytes <= flen);
	ck_assert(memcmp(data, file + g->data_offset + t->offset,
	    t->nbytes) == 0);
	free(data);
	free(file);
	gguf_close(g);
}
END_TEST

START_TEST(test_ref_models)
{
	static const char *const names[] = {
		"ref-llama-f32", "ref-llama-f16", "ref-llama-bf16",
		"ref-llama-q8_0", "ref-llama-q4_0", "ref-llama-q4_k_m",
		"ref-llama-q6_k", "ref-qwen2-f16", "ref-qwen2-bf16",
		"ref-qwen2-q8_0", "ref-qwen2-q4_0", "ref-qwen2-q4_k_m",
		"ref-qwen2-q6_k",
	};
	char rel[128];
	const struct gguf_str *arch;
	const struct gguf_tensor *t;
	struct gguf *g;
	struct eng_err e;
	uint32_t u;
	size_t i;
	uint64_t k;
	uint8_t *buf;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *path;

		snprintf(rel, sizeof(rel), "ref/%s.gguf", names[i]);
		if ((path = tu_testdata(rel)) == NULL) {
			tu_skip(rel);
			return;
		}
		ck_assert_msg(gguf_open(path, &g, &e) == 0, "%s", e.msg);
		ck_assert_int_eq(gguf_get_str(g, "general.architecture",
		    &arch), 0);
		ck_assert_str_eq(arch->s, strstr(names[i], "qwen2") ?
		    "qwen2" : "llama");
		snprintf(rel, sizeof(rel), "%s.embedding_length", arch->s);
		ck_assert_int_eq(gguf_get_u32(g, rel, &u), 0);
		ck_assert_uint_eq(u, 512);
		snprintf(rel, sizeof(rel), "%s.block_count", arch->s);
		ck_assert_int_eq(gguf_get_u32(g, rel, &u), 0);
		ck_assert_uint_eq(u, 2);
		for (k = 0; k < g->n_tensors; k++) {
			t = &g->tensors[k];
			ck_assert_uint_eq(t->nbytes,
			    gguf_type_nbytes(t->type, t->nelems));
			ck_assert_uint_eq(t->offset % g->alignment, 0);
			ck_assert_ptr_eq(gguf_find_tensor(g, t->name.s), t);
		}
		t = gguf_find_tensor(g, "blk.1.ffn_up.weight");
		ck_assert_ptr_nonnull(t);
		ck_assert_uint_eq(t->ne[0], 512);
		ck_assert_uint_eq(t->ne[1], 1536);
		if (strstr(names[i], "q4_k_m") != NULL) {
			ck_assert_str_eq(gguf_type_name(t->type), "q4_k");
			t = gguf_find_tensor(g, "output.weight");
			if (t != NULL)
				ck_assert_str_eq(gguf_type_name(t->type),
				    "q6_k");
		}
		buf = malloc(t->nbytes);
		ck_assert_msg(gguf_read_tensor(g, t, buf, t->nbytes, &e) == 0,
		    "%s", e.msg);
		free(buf);
		gguf_close(g);
	}
}
END_TEST

START_TEST(test_vocab_only)
{
	static const char *const names[] = {
		"llama-spm", "phi-3", "llama-bpe", "qwen2", "deepseek-llm",
		"gpt-2",
	};
	const struct gguf_kv *kv;
	const struct gguf_str *s;
	struct gguf *g;
	struct eng_err e;
	char rel[128];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *path;

		snprintf(rel, sizeof(rel), "vocab/ggml-vocab-%s.gguf",
		    names[i]);
		if ((path = tu_testdata(rel)) == NULL) {
			tu_skip(rel);
			return;
		}
		ck_assert_msg(gguf_open(path, &g, &e) == 0, "%s", e.msg);
		ck_assert_uint_eq(g->n_tensors, 0);
		ck_assert_int_eq(gguf_get_arr(g, "tokenizer.ggml.tokens",
		    GGUF_VTYPE_STRING, &kv), 0);
		ck_assert_uint_gt(kv->v.arr.n, 1000);
		ck_assert_int_eq(gguf_get_str(g, "tokenizer.ggml.model", &s),
		    0);
		ck_assert(strcmp(s->s, "llama") == 0 ||
		    strcmp(s->s, "gpt2") == 0);
		if (strcmp(s->s, "gpt2") == 0)
			ck_assert_int_eq(gguf_get_arr(g,
			    "tokenizer.ggml.merges", GGUF_VTYPE_STRING, &kv),
			    0);
		gguf_close(g);
	}
}
END_TEST

START_TEST(test_base_file)
{
	const struct gguf_tensor *t;
	const struct gguf_kv *kv;
	const struct gguf_str *s;
	struct gguf *g;
	struct eng_err e;
	uint8_t *b, data[68];
	size_t len;
	float f;
	bool bl;
	int i;

	b = base_buf(&len);
	g = open_ok(b, len);
	ck_assert_uint_eq(g->version, 3);
	ck_assert_uint_eq(g->n_kv, 11);
	ck_assert_uint_eq(g->n_tensors, 3);
	ck_assert_uint_eq(g->file_size, len);
	ck_assert_uint_eq(g->data_offset % 32, 0);
	/* kv order is the file's */
	ck_assert_str_eq(g->kv[0].key.s, "general.architecture");
	ck_assert_str_eq(g->kv[10].key.s, "test.str");
	ck_assert_int_eq(gguf_get_arr(g, "tokenizer.ggml.tokens",
	    GGUF_VTYPE_STRING, &kv), 0);
	s = kv->v.arr.data;
	ck_assert_uint_eq(kv->v.arr.n, 4);
	ck_assert_str_eq(s[1].s, "bb");
	ck_assert_uint_eq(s[2].len, 0);
	ck_assert_str_eq(s[2].s, "");
	ck_assert_int_eq(gguf_get_f32(g, "test.f32", &f), 0);
	ck_assert(f == 1.5f);
	ck_assert_int_eq(gguf_get_bool(g, "test.bool", &bl), 0);
	ck_assert(bl);
	t = gguf_find_tensor(g, "wt.beta");
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(t->type, 8);
	ck_assert_uint_eq(t->nbytes, 68);
	ck_assert_uint_eq(t->offset, 64);	/* after 64 bytes of alpha */
	ck_assert_int_eq(gguf_read_tensor(g, t, data, sizeof(data), &e), 0);
	for (i = 0; i < 68; i++)
		ck_assert_uint_eq(data[i], (uint8_t)(i * 7));
	t = gguf_find_tensor(g, "wt.gamma");
	ck_assert_uint_eq(t->offset, 160);	/* 68 padded to 96 */
	gguf_close(g);
	gguf_close(NULL);

	/* version 2 has the same layout and is accepted */
	put_u32(b, 4, 2);
	g = open_ok(b, len);
	ck_assert_uint_eq(g->version, 2);
	gguf_close(g);
	free(b);
}
END_TEST

/* Every scalar type survives writer -> reader -> copy_kv -> reader. */
START_TEST(test_roundtrip_scalars)
{
	struct gguf_kv kv[12];
	struct gguf_writer *w, *w2;
	struct gguf *g, *g2;
	const struct gguf_kv *r;
	uint8_t *b, *b2;
	size_t len, len2;
	char key[32];
	int i;

	memset(kv, 0, sizeof(kv));
	kv[0].type = GGUF_VTYPE_UINT8;   kv[0].v.u64 = 250;
	kv[1].type = GGUF_VTYPE_INT8;    kv[1].v.i64 = -128;
	kv[2].type = GGUF_VTYPE_UINT16;  kv[2].v.u64 = 65535;
	kv[3].type = GGUF_VTYPE_INT16;   kv[3].v.i64 = -32768;
	kv[4].type = GGUF_VTYPE_UINT32;  kv[4].v.u64 = 4000000000u;
	kv[5].type = GGUF_VTYPE_INT32;   kv[5].v.i64 = INT32_MIN;
	kv[6].type = GGUF_VTYPE_FLOAT32; kv[6].v.f64 = -0.15625;
	kv[7].type = GGUF_VTYPE_BOOL;    kv[7].v.b = true;
	kv[8].type = GGUF_VTYPE_STRING;
	kv[8].v.str.s = (char *)"with\0nul";
	kv[8].v.str.len = 8;
	kv[9].type = GGUF_VTYPE_UINT64;  kv[9].v.u64 = UINT64_MAX;
	kv[10].type = GGUF_VTYPE_INT64;  kv[10].v.i64 = INT64_MIN;
	kv[11].type = GGUF_VTYPE_FLOAT64; kv[11].v.f64 = 1.0 / 3.0;

	ck_assert_int_eq(gguf_writer_new(&w), 0);
	for (i = 0; i < 12; i++) {
		snprintf(key, sizeof(key), "k.%d", i);
		kv[i].key.s = key;
		kv[i].key.len = strlen(key);
		ck_assert_int_eq(gguf_writer_copy_kv(w, &kv[i]), 0);
	}
	b = w_buf(w, &len);
	g = open_ok(b, len);
	ck_assert_uint_eq(g->n_kv, 12);
	for (i = 0; i < 12; i++) {
		snprintf(key, sizeof(key), "k.%d", i);
		r = gguf_find_kv(g, key);
		ck_assert_ptr_nonnull(r);
		ck_assert_int_eq(r->type, kv[i].type);
		switch (r->type) {
		case GGUF_VTYPE_STRING:
			ck_assert_uint_eq(r->v.str.len, 8);
			ck_assert(memcmp(r->v.str.s, "with\0nul", 9) == 0);
			break;
		case GGUF_VTYPE_FLOAT32:
		case GGUF_VTYPE_FLOAT64:
			ck_assert(r->v.f64 == kv[i].v.f64);
			break;
		case GGUF_VTYPE_BOOL:
			ck_assert(r->v.b == kv[i].v.b);
			break;
		default:
			ck_assert_uint_eq(r->v.u64, kv[i].v.u64);
			break;
		}
	}
	/* copying everything again gives the same bytes */
	ck_assert_int_eq(gguf_writer_new(&w2), 0);
	for (i = 0; i < (int)g->n_kv; i++)
		ck_assert_int_eq(gguf_writer_copy_kv(w2, &g->kv[i]), 0);
	b2 = w_buf(w2, &len2);
	ck_assert_uint_eq(len, len2);
	ck_assert(memcmp(b, b2, len) == 0);
	g2 = open_ok(b2, len2);
	gguf_close(g2);
	gguf_close(g);
	free(b);
	free(b2);
}
END_TEST

/* Arrays of each element type, empty and not, plus odd strings. */
START_TEST(test_roundtrip_arrays)
{
	static const uint8_t sizes[GGUF_VTYPE_COUNT] = {
		1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8,
	};
	const char *strs[5] = { "", "x", "two words", "nul\0in", "\xc3\xa9" };
	const size_t lens[5] = { 0, 1, 9, 6, 2 };
	const struct gguf_kv *kv;
	const struct gguf_str *s;
	struct gguf_writer *w;
	struct gguf *g;
	uint8_t raw[7 * 8], *b;
	size_t len;
	char key[32];
	int t, i;

	for (i = 0; i < (int)sizeof(raw); i++)
		raw[i] = (uint8_t)(i * 37 + 1);
	for (i = 0; i < 7; i++)
		raw[i] = (uint8_t)(i & 1);	/* valid bools first */
	ck_assert_int_eq(gguf_writer_new(&w), 0);
	for (t = 0; t < GGUF_VTYPE_COUNT; t++) {
		if (sizes[t] == 0) {
			ck_assert_int_eq(gguf_writer_set_arr(w, "bad",
			    (enum gguf_vtype)t, raw, 1), -EINVAL);
			continue;
		}
		snprintf(key, sizeof(key), "arr.%d", t);
		ck_assert_int_eq(gguf_writer_set_arr(w, key,
		    (enum gguf_vtype)t, raw, 7), 0);
		snprintf(key, sizeof(key), "empty.%d", t);
		ck_assert_int_eq(gguf_writer_set_arr(w, key,
		    (enum gguf_vtype)t, NULL, 0), 0);
	}
	ck_assert_int_eq(gguf_writer_set_arr_str(w, "arr.str", strs, lens, 5),
	    0);
	ck_assert_int_eq(gguf_writer_set_arr_str(w, "empty.str", NULL, NULL,
	    0), 0);
	b = w_buf(w, &len);
	g = open_ok(b, len);
	for (t = 0; t < GGUF_VTYPE_COUNT; t++) {
		if (sizes[t] == 0)
			continue;
		snprintf(key, sizeof(key), "arr.%d", t);
		ck_assert_int_eq(gguf_get_arr(g, key, (enum gguf_vtype)t, &kv),
		    0);
		ck_assert_uint_eq(kv->v.arr.n, 7);
		ck_assert(memcmp(kv->v.arr.data, raw, 7u * sizes[t]) == 0);
		snprintf(key, sizeof(key), "empty.%d", t);
		ck_assert_int_eq(gguf_get_arr(g, key, (enum gguf_vtype)t, &kv),
		    0);
		ck_assert_uint_eq(kv->v.arr.n, 0);
	}
	ck_assert_int_eq(gguf_get_arr(g, "arr.str", GGUF_VTYPE_STRING, &kv),
	    0);
	s = kv->v.arr.data;
	for (i = 0; i < 5; i++) {
		ck_assert_uint_eq(s[i].len, lens[i]);
		ck_assert(memcmp(s[i].s, strs[i], lens[i]) == 0);
		ck_assert(s[i].s[lens[i]] == '\0');
	}
	ck_assert_int_eq(gguf_get_arr(g, "empty.str", GGUF_VTYPE_STRING, &kv),
	    0);
	ck_assert_uint_eq(kv->v.arr.n, 0);
	gguf_close(g);
	free(b);
}
END_TEST

/* Tensors of many types and alignments, data read back intact. */
START_TEST(test_roundtrip_tensors)
{
	static const uint32_t types[] = {
		0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
		19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 34, 35, 39,
	};
	static const uint32_t aligns[] = { 0, 1, 8, 64, 4096 };
	const struct gguf_tensor *t;
	struct gguf_writer *w;
	struct gguf *g;
	struct eng_err e;
	uint64_t ne[4], st = 42, nb;
	uint32_t nd;
	uint8_t *data, *b, *back;
	size_t len, a, i, j;
	char name[32];

	for (a = 0; a < sizeof(aligns) / sizeof(aligns[0]); a++) {
		st = 42;
		ck_assert_int_eq(gguf_writer_new(&w), 0);
		if (aligns[a] != 0)
			ck_assert_int_eq(gguf_writer_set_u32(w,
			    "general.alignment", aligns[a]), 0);
		for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
			/* 1..4 dims: 256, 256x2, 256x3x2, 256x1x1x2 */
			nd = 1 + (uint32_t)(i % 4);
			ne[0] = 256;
			ne[1] = nd >= 2 ? 1 + i % 3 : 1;
			ne[2] = nd >= 3 ? 1 + i % 2 : 1;
			ne[3] = nd >= 4 ? 2 : 1;
			nb = gguf_type_nbytes(types[i],
			    ne[0] * ne[1] * ne[2] * ne[3]);
			ck_assert_uint_gt(nb, 0);
			data = malloc(nb);
			for (j = 0; j < nb; j++)
				data[j] = (uint8_t)tu_rand_u64(&st);
			snprintf(name, sizeof(name), "t.%s",
			    gguf_type_name(types[i]));
			ck_assert_int_eq(gguf_writer_add_tensor(w, name, nd,
			    ne, types[i], data, nb), 0);
			free(data);
		}
		b = w_buf(w, &len);
		g = open_ok(b, len);
		ck_assert_uint_eq(g->alignment, aligns[a] ? aligns[a] : 32);
		ck_assert_uint_eq(g->n_tensors, sizeof(types) /
		    sizeof(types[0]));
		ck_assert_uint_eq(g->data_offset % g->alignment, 0);
		st = 42;
		for (i = 0; i < g->n_tensors; i++) {
			t = &g->tensors[i];
			ck_assert_uint_eq(t->type, types[i]);
			ck_assert_uint_eq(t->n_dims, 1 + i % 4);
			ck_assert_uint_eq(t->nelems, t->ne[0] * t->ne[1] *
			    t->ne[2] * t->ne[3]);
			ck_assert_uint_eq(t->offset % g->alignment, 0);
			back = malloc(t->nbytes);
			ck_assert_int_eq(gguf_read_tensor(g, t, back,
			    t->nbytes, &e), 0);
			for (j = 0; j < t->nbytes; j++)
				ck_assert_uint_eq(back[j],
				    (uint8_t)tu_rand_u64(&st));
			free(back);
		}
		gguf_close(g);
		free(b);
	}
}
END_TEST

START_TEST(test_getters)
{
	struct gguf_kv kv;
	struct gguf_writer *w;
	struct gguf *g;
	const struct gguf_str *s = NULL;
	const struct gguf_kv *arr = NULL;
	uint8_t *b;
	size_t len;
	uint32_t u32 = 77;
	uint64_t u64 = 77;
	int32_t i32 = 77;
	float f = 77.0f;
	bool bl = false;

	ck_assert_int_eq(gguf_writer_new(&w), 0);
	memset(&kv, 0, sizeof(kv));
	kv.key.s = (char *)"u8";
	kv.key.len = 2;
	kv.type = GGUF_VTYPE_UINT8;
	kv.v.u64 = 200;
	ck_assert_int_eq(gguf_writer_copy_kv(w, &kv), 0);
	kv.key.s = (char *)"i64min";
	kv.key.len = 6;
	kv.type = GGUF_VTYPE_INT64;
	kv.v.i64 = INT32_MIN;
	ck_assert_int_eq(gguf_writer_copy_kv(w, &kv), 0);
	kv.key.s = (char *)"f64";
	kv.key.len = 3;
	kv.type = GGUF_VTYPE_FLOAT64;
	kv.v.f64 = 0.25;
	ck_assert_int_eq(gguf_writer_copy_kv(w, &kv), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "u32big", 4000000000u), 0);
	ck_assert_int_eq(gguf_writer_set_i32(w, "neg", -7), 0);
	ck_assert_int_eq(gguf_writer_set_u64(w, "u64big", 1ull << 40), 0);
	ck_assert_int_eq(gguf_writer_set_f32(w, "f32", 2.5f), 0);
	ck_assert_int_eq(gguf_writer_set_bool(w, "yes", 5), 0);
	ck_assert_int_eq(gguf_writer_set_str(w, "s", "str"), 0);
	/* set twice: replaced in place */
	ck_assert_int_eq(gguf_writer_set_str(w, "s", "string"), 0);
	b = w_buf(w, &len);
	g = open_ok(b, len);
	ck_assert_uint_eq(g->n_kv, 9);
	ck_assert_str_eq(g->kv[8].key.s, "s");

	ck_assert_int_eq(gguf_get_u32(g, "u8", &u32), 0);
	ck_assert_uint_eq(u32, 200);
	ck_assert_int_eq(gguf_get_u32(g, "u32big", &u32), 0);
	ck_assert_uint_eq(u32, 4000000000u);
	u32 = 77;
	ck_assert_int_eq(gguf_get_u32(g, "u64big", &u32), -EINVAL);
	ck_assert_int_eq(gguf_get_u32(g, "neg", &u32), -EINVAL);
	ck_assert_int_eq(gguf_get_u32(g, "f32", &u32), -EINVAL);
	ck_assert_int_eq(gguf_get_u32(g, "missing", &u32), -ENOENT);
	ck_assert_uint_eq(u32, 77);
	ck_assert_int_eq(gguf_get_u64(g, "u64big", &u64), 0);
	ck_assert_uint_eq(u64, 1ull << 40);
	u64 = 77;
	ck_assert_int_eq(gguf_get_u64(g, "neg", &u64), -EINVAL);
	ck_assert_int_eq(gguf_get_u64(g, "s", &u64), -EINVAL);
	ck_assert_uint_eq(u64, 77);
	ck_assert_int_eq(gguf_get_i32(g, "neg", &i32), 0);
	ck_assert_int_eq(i32, -7);
	ck_assert_int_eq(gguf_get_i32(g, "i64min", &i32), 0);
	ck_assert_int_eq(i32, INT32_MIN);
	i32 = 77;
	ck_assert_int_eq(gguf_get_i32(g, "u32big", &i32), -EINVAL);
	ck_assert_int_eq(gguf_get_i32(g, "yes", &i32), -EINVAL);
	ck_assert_int_eq(i32, 77);
	ck_assert_int_eq(gguf_get_f32(g, "f32", &f), 0);
	ck_assert(f == 2.5f);
	ck_assert_int_eq(gguf_get_f32(g, "f64", &f), 0);
	ck_assert(f == 0.25f);
	f = 77.0f;
	ck_assert_int_eq(gguf_get_f32(g, "u8", &f), -EINVAL);
	ck_assert(f == 77.0f);
	ck_assert_int_eq(gguf_get_bool(g, "yes", &bl), 0);
	ck_assert(bl);
	ck_assert_int_eq(gguf_get_bool(g, "u8", &bl), -EINVAL);
	ck_assert_int_eq(gguf_get_str(g, "s", &s), 0);
	ck_assert_str_eq(s->s, "string");
	ck_assert_int_eq(gguf_get_str(g, "u8", &s), -EINVAL);
	ck_assert_int_eq(gguf_get_str(g, "nope", &s), -ENOENT);
	ck_assert_int_eq(gguf_get_arr(g, "s", GGUF_VTYPE_STRING, &arr),
	    -EINVAL);
	ck_assert_ptr_null(arr);
	ck_assert_ptr_null(gguf_find_kv(g, ""));
	ck_assert_ptr_null(gguf_find_kv(g, NULL));
	ck_assert_ptr_null(gguf_find_kv(NULL, "s"));
	ck_assert_ptr_null(gguf_find_tensor(g, "s"));
	gguf_close(g);
	free(b);
}
END_TEST

START_TEST(test_type_table)
{
	static const struct {
		uint32_t	 id;
		const char	*name;
		uint32_t	 blck;
		uint32_t	 size;
	} tt[] = {
		{ 0, "f32", 1, 4 }, { 1, "f16", 1, 2 }, { 2, "q4_0", 32, 18 },
		{ 3, "q4_1", 32, 20 }, { 6, "q5_0", 32, 22 },
		{ 7, "q5_1", 32, 24 }, { 8, "q8_0", 32, 34 },
		{ 9, "q8_1", 32, 36 }, { 10, "q2_k", 256, 84 },
		{ 11, "q3_k", 256, 110 }, { 12, "q4_k", 256, 144 },
		{ 13, "q5_k", 256, 176 }, { 14, "q6_k", 256, 210 },
		{ 15, "q8_k", 256, 292 }, { 16, "iq2_xxs", 256, 66 },
		{ 17, "iq2_xs", 256, 74 }, { 18, "iq3_xxs", 256, 98 },
		{ 19, "iq1_s", 256, 50 }, { 20, "iq4_nl", 32, 18 },
		{ 21, "iq3_s", 256, 110 }, { 22, "iq2_s", 256, 82 },
		{ 23, "iq4_xs", 256, 136 }, { 24, "i8", 1, 1 },
		{ 25, "i16", 1, 2 }, { 26, "i32", 1, 4 }, { 27, "i64", 1, 8 },
		{ 28, "f64", 1, 8 }, { 29, "iq1_m", 256, 56 },
		{ 30, "bf16", 1, 2 }, { 34, "tq1_0", 256, 54 },
		{ 35, "tq2_0", 256, 66 }, { 39, "mxfp4", 32, 17 },
	};
	static const uint32_t unknown[] = {
		4, 5, 31, 32, 33, 36, 37, 38, 40, 99, UINT32_MAX,
	};
	uint64_t want;
	size_t i;

	for (i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		ck_assert_str_eq(gguf_type_name(tt[i].id), tt[i].name);
		ck_assert_uint_eq(gguf_type_nbytes(tt[i].id, tt[i].blck),
		    tt[i].size);
		ck_assert_uint_eq(gguf_type_nbytes(tt[i].id, 3 * tt[i].blck),
		    3 * tt[i].size);
		if (tt[i].blck > 1)
			ck_assert_uint_eq(gguf_type_nbytes(tt[i].id,
			    tt[i].blck + 1), 0);
		/* too many blocks to count bytes in 64 bits */
		if (__builtin_mul_overflow(UINT64_MAX / tt[i].blck,
		    (uint64_t)tt[i].size, &want))
			want = 0;
		ck_assert_uint_eq(gguf_type_nbytes(tt[i].id,
		    UINT64_MAX / tt[i].blck * tt[i].blck), want);
	}
	for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		ck_assert_ptr_null(gguf_type_name(unknown[i]));
		ck_assert_uint_eq(gguf_type_nbytes(unknown[i], 256), 0);
	}
}
END_TEST

/* The writer's own checks. */
START_TEST(test_writer_refuses)
{
	struct gguf_writer *w;
	const uint64_t ne[4] = { 32, 2, 1, 1 }, zero[2] = { 32, 0 };
	uint8_t data[2 * 34] = { 0 };
	const char *strs[1] = { NULL };
	const size_t lens[1] = { 3 };
	struct eng_err e;

	ck_assert_int_eq(gguf_writer_new(NULL), -EINVAL);
	ck_assert_int_eq(gguf_writer_new(&w), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "", 1), -EINVAL);
	ck_assert_int_eq(gguf_writer_set_u32(w, NULL, 1), -EINVAL);
	ck_assert_int_eq(gguf_writer_set_str(w, "k", NULL), -EINVAL);
	ck_assert_int_eq(gguf_writer_set_arr(w, "k", GGUF_VTYPE_ARRAY, data,
	    1), -EINVAL);
	ck_assert_int_eq(gguf_writer_set_arr(w, "k", GGUF_VTYPE_UINT8, NULL,
	    1), -EINVAL);
	ck_assert_int_eq(gguf_writer_set_arr_str(w, "k", strs, lens, 1),
	    -EINVAL);
	/* q8_0 32x2 is 68 bytes */
	ck_assert_int_eq(gguf_writer_add_tensor(w, "t", 2, ne, 8, data, 67),
	    -EINVAL);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "t", 2, ne, 99, data, 68),
	    -EINVAL);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "t", 0, ne, 8, data, 68),
	    -EINVAL);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "t", 5, ne, 8, data, 68),
	    -EINVAL);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "t", 2, zero, 8, data, 0),
	    -EINVAL);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "", 2, ne, 8, data, 68),
	    -EINVAL);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "t", 2, ne, 8, data, 68),
	    0);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "t", 2, ne, 8, data, 68),
	    -EEXIST);
	ck_assert_int_eq(gguf_writer_to_file(w, "/nonexistent-dir/x.gguf",
	    &e), -ENOENT);
	ck_assert_ptr_nonnull(strstr(e.msg, "/nonexistent-dir/x.gguf"));
	gguf_writer_free(w);
	gguf_writer_free(NULL);
}
END_TEST

/* to_file and to_buf write the same bytes; a real file copies exactly. */
START_TEST(test_writer_file)
{
	const char *path = tu_testdata("models/aidreams260K.gguf");
	const struct gguf_tensor *t;
	struct gguf_writer *w;
	struct gguf *g;
	struct eng_err e;
	uint8_t *b, *f, *orig, *data;
	size_t len, flen, olen;
	uint64_t i;

	b = base_buf(&len);
	w = base_writer();
	ck_assert_msg(gguf_writer_to_file(w, tu_tmpfile("w.gguf"), &e) == 0,
	    "%s", e.msg);
	gguf_writer_free(w);
	f = tu_read_file(tu_tmpfile("w.gguf"), &flen);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(flen, len);
	ck_assert(memcmp(f, b, len) == 0);
	free(f);
	free(b);

	if (path == NULL) {
		tu_skip("aidreams260K.gguf");
		return;
	}
	ck_assert_msg(gguf_open(path, &g, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(gguf_writer_new(&w), 0);
	for (i = 0; i < g->n_kv; i++)
		ck_assert_int_eq(gguf_writer_copy_kv(w, &g->kv[i]), 0);
	for (i = 0; i < g->n_tensors; i++) {
		t = &g->tensors[i];
		data = malloc(t->nbytes);
		ck_assert_int_eq(gguf_read_tensor(g, t, data, t->nbytes, &e),
		    0);
		ck_assert_int_eq(gguf_writer_add_tensor(w, t->name.s,
		    t->n_dims, t->ne, t->type, data, t->nbytes), 0);
		free(data);
	}
	gguf_close(g);
	ck_assert_msg(gguf_writer_to_file(w, tu_tmpfile("copy.gguf"), &e) == 0,
	    "%s", e.msg);
	gguf_writer_free(w);
	orig = tu_read_file(path, &olen);
	f = tu_read_file(tu_tmpfile("copy.gguf"), &flen);
	ck_assert_uint_eq(olen, flen);
	ck_assert(memcmp(orig, f, olen) == 0);	/* llama.cpp's layout */
	free(orig);
	free(f);
}
END_TEST

/* --- limits -------------------------------------------------------------- */

/* A file with one string key (name key, value val of vlen bytes). */
static uint8_t *
one_str_file(const char *key, size_t klen, size_t vlen, size_t *len)
{
	struct bb bb = { 0 };
	char *v = malloc(vlen + 1);

	memset(v, 'v', vlen);
	bb_hdr(&bb, 3, 0, 1);
	bb_u64(&bb, klen);
	bb_put(&bb, key, klen);
	bb_u32(&bb, GGUF_VTYPE_STRING);
	bb_u64(&bb, vlen);
	bb_put(&bb, v, vlen);
	free(v);
	*len = bb.len;
	return bb.b;
}

START_TEST(test_string_caps)
{
	const struct gguf_kv *kv;
	struct gguf *g;
	char *key;
	uint8_t *b;
	size_t len;

	key = malloc(GGUF_MAX_KEY + 1);
	memset(key, 'k', GGUF_MAX_KEY + 1);
	/* longest key and longest string: fine */
	b = one_str_file(key, GGUF_MAX_KEY, GGUF_MAX_STRING, &len);
	g = open_ok(b, len);
	kv = &g->kv[0];
	ck_assert_uint_eq(kv->key.len, GGUF_MAX_KEY);
	ck_assert_uint_eq(kv->v.str.len, GGUF_MAX_STRING);
	ck_assert(kv->v.str.s[GGUF_MAX_STRING - 1] == 'v');
	gguf_close(g);
	free(b);
	/* one more byte each: refused before reading it */
	b = one_str_file(key, GGUF_MAX_KEY + 1, 1, &len);
	EXPECT_FAIL(b, len, -EFBIG, "key 0: string length 65537 > max 65536");
	free(b);
	b = one_str_file("k", 1, GGUF_MAX_STRING + 1, &len);
	EXPECT_FAIL(b, len, -EFBIG, "key 'k' value: string length 1048577 > "
	    "max 1048576");
	free(b);
	free(key);
}
END_TEST

START_TEST(test_many)
{
	struct gguf_writer *w;
	const struct gguf_kv *kv;
	const struct gguf_tensor *t;
	struct gguf *g;
	uint64_t ne[4] = { 1, 1, 1, 1 };
	float v;
	char name[32];
	uint8_t *b;
	size_t len;
	int i;

	ck_assert_int_eq(gguf_writer_new(&w), 0);
	for (i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "key.%d", (i * 7919) % 20000);
		ck_assert_int_eq(gguf_writer_set_u32(w, name, (uint32_t)i), 0);
	}
	for (i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "t.%d", 2999 - i);
		v = (float)i;
		ck_assert_int_eq(gguf_writer_add_tensor(w, name, 4, ne, 0, &v,
		    4), 0);
	}
	b = w_buf(w, &len);
	g = open_ok(b, len);
	for (i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "key.%d", (i * 7919) % 20000);
		kv = gguf_find_kv(g, name);
		ck_assert_ptr_nonnull(kv);
		ck_assert_uint_eq(kv->v.u64, (uint64_t)i);
	}
	for (i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "t.%d", 2999 - i);
		t = gguf_find_tensor(g, name);
		ck_assert_ptr_eq(t, &g->tensors[i]);
		ck_assert_uint_eq(t->n_dims, 4);
	}
	gguf_close(g);
	free(b);
}
END_TEST

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct rlimit saved_as;
static int limited;

/* Cap the address space near what we use now (not under ASan). */
static void
limit_memory(size_t headroom)
{
	struct rlimit rl;
	unsigned long vm = 0;
	FILE *f;

	if (UNDER_ASAN)
		return;
	f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return;
	if (fscanf(f, "%lu", &vm) != 1)
		vm = 0;
	fclose(f);
	if (vm == 0 || getrlimit(RLIMIT_AS, &rl) != 0)
		return;
	saved_as = rl;
	rl.rlim_cur = (rlim_t)vm * (rlim_t)sysconf(_SC_PAGESIZE) + headroom;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
		return;
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
	limited = 1;
}

static void
unlimit_memory(void)
{
	if (limited)
		ck_assert_int_eq(setrlimit(RLIMIT_AS, &saved_as), 0);
	limited = 0;
}

/*
 * Files that claim huge counts (at the caps) but are small fail with
 * -EINVAL quickly, under an address-space limit far below what the
 * claims would take (a reader that allocated first would see -ENOMEM).
 */
START_TEST(test_lying_counts)
{
	struct bb bb = { 0 };
	double t0 = now_s();

	limit_memory(64u << 20);

	/* 2^20 keys + 2^20 tensors: ~140 MiB of structs if believed */
	bb_hdr(&bb, 3, GGUF_MAX_TENSORS, GGUF_MAX_KV);
	bb_str(&bb, "k");
	bb_u32(&bb, GGUF_VTYPE_UINT8);
	bb_put(&bb, "x", 1);
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "truncated: 1048576 keys and "
	    "1048576 tensors need at least");
	bb.len = 0;

	/* 2^26 uint64: 512 MiB if believed */
	bb_hdr(&bb, 3, 0, 1);
	bb_str(&bb, "big");
	bb_u32(&bb, GGUF_VTYPE_ARRAY);
	bb_u32(&bb, GGUF_VTYPE_UINT64);
	bb_u64(&bb, GGUF_MAX_ARRAY);
	bb_u64(&bb, 1);
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "array of 67108864 uint64 needs "
	    "at least 536870912 bytes, 8 left");
	bb.len = 0;

	/* 2^26 strings: 1 GiB of string structs if believed */
	bb_hdr(&bb, 3, 0, 1);
	bb_str(&bb, "tokenizer.ggml.tokens");
	bb_u32(&bb, GGUF_VTYPE_ARRAY);
	bb_u32(&bb, GGUF_VTYPE_STRING);
	bb_u64(&bb, GGUF_MAX_ARRAY);
	bb_str(&bb, "a");
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "array of 67108864 string needs");
	bb.len = 0;

	/* a 1 MiB string in a tiny file */
	bb_hdr(&bb, 3, 0, 1);
	bb_str(&bb, "s");
	bb_u32(&bb, GGUF_VTYPE_STRING);
	bb_u64(&bb, GGUF_MAX_STRING);
	bb_str(&bb, "tail");
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "string of 1048576 bytes, 12 left");
	bb.len = 0;

	/* n_kv = 2^40: past the cap, refused at once */
	bb_hdr(&bb, 3, 0, 1ull << 40);
	EXPECT_FAIL(bb.b, bb.len, -E2BIG, "key/value count 1099511627776 > "
	    "max 1048576");
	free(bb.b);
	unlimit_memory();
	ck_assert_msg(now_s() - t0 < 5.0, "lying files took %.1f s",
	    now_s() - t0);
}
END_TEST

/* A long name is shortened and made printable in messages. */
START_TEST(test_message_names)
{
	struct bb bb = { 0 };
	char name[200];

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	name[3] = '\n';
	bb_hdr(&bb, 3, 0, 1);
	bb_str(&bb, name);
	bb_u32(&bb, 77);
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "key 'nnn?nnnn");
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "n...': unknown value type 77");
	free(bb.b);
}
END_TEST

/* --- errors -------------------------------------------------------------- */

/* One corruption of the base file: bytes patched or a variant written. */
static void
corrupt(int i, uint8_t **bp, size_t *lenp, int *code, const char **sub)
{
	struct gguf_writer *w = NULL;
	uint8_t *b = *bp;
	size_t len = *lenp, o;
	const float f1 = 1.0f;
	const int32_t i1 = 1;
	const uint32_t u1 = 1;

	*code = -EINVAL;
	switch (i) {
	case 0:		/* empty */
		len = 0;
		*sub = "file is empty";
		break;
	case 1:		/* inside the magic */
		len = 2;
		*sub = "truncated at byte 0 reading magic";
		break;
	case 2:
		len = 6;
		*sub = "truncated at byte 4 reading version";
		break;
	case 3:
		len = 12;
		*sub = "truncated at byte 8 reading tensor count";
		break;
	case 4:
		len = 20;
		*sub = "truncated at byte 16 reading key/value count";
		break;
	case 5:		/* counts need more than the file has */
		len = 100;
		*sub = "truncated: 11 keys and 3 tensors need at least 239 "
		    "bytes after byte 24";
		break;
	case 6:		/* inside a key's length */
		len = off_str(b, len, "test.u64arr") + 4;
		*sub = "reading key 7";
		break;
	case 7:		/* inside a key's name */
		o = off_str(b, len, "test.u64arr");
		len = o + 8 + 5;
		*sub = "reading key 7: string of 11 bytes, 5 left";
		break;
	case 8:		/* inside a value type */
		len = kv_type_off(b, len, "test.u64arr") + 2;
		*sub = "reading key 'test.u64arr' type";
		break;
	case 9:		/* inside an array length */
		len = kv_type_off(b, len, "test.u64arr") + 4 + 4 + 3;
		*sub = "reading key 'test.u64arr' array length";
		break;
	case 10:	/* inside array data */
		len = kv_type_off(b, len, "test.u64arr") + 4 + 4 + 8 + 20;
		*sub = "reading key 'test.u64arr': array of 5 uint64 needs at "
		    "least 40 bytes";
		break;
	case 11:	/* inside a string of a string array */
		o = kv_type_off(b, len, "tokenizer.ggml.tokens") + 4 + 4 + 8;
		len = o + (8 + 1) + (8 + 2) + 8 + 8 + 2;
		*sub = "reading key 'tokenizer.ggml.tokens' element 3: string "
		    "of 4 bytes, 2 left";
		break;
	case 12:	/* inside a scalar value */
		len = kv_type_off(b, len, "test.f32") + 4 + 2;
		*sub = "reading key 'test.f32' value";
		break;
	case 13:	/* inside a string value */
		len = kv_type_off(b, len, "test.str") + 4 + 8 + 3;
		*sub = "reading key 'test.str' value: string of 5 bytes, "
		    "3 left";
		break;
	case 14:	/* inside a tensor name */
		len = off_str(b, len, "wt.beta") + 8 + 3;
		*sub = "reading tensor 1 name: string of 7 bytes, 3 left";
		break;
	case 15:	/* inside dims */
		len = ti_off(b, len, "wt.beta") + 4 + 5;
		*sub = "reading tensor 'wt.beta' dims";
		break;
	case 16:	/* inside the type */
		len = ti_off(b, len, "wt.beta") + 4 + 8 + 1;
		*sub = "reading tensor 'wt.beta' type";
		break;
	case 17:	/* inside the offset */
		len = ti_off(b, len, "wt.gamma") + 4 + 8 + 4 + 7;
		*sub = "reading tensor 'wt.gamma' offset";
		break;
	case 18:	/* inside the data of the last tensor */
		len -= 32 - 8;	/* gamma: 16 bytes + 16 padding */
		*sub = "tensor 'wt.gamma': offset";
		break;
	case 19:
		b[0] = 'X';
		*sub = "bad magic 0x46554758";
		break;
	case 20:
		put_u32(b, 4, 1);
		*sub = "version 1 is not supported";
		break;
	case 21:
		put_u32(b, 4, 4);
		*sub = "version 4 is not supported (want 2 or 3)";
		break;
	case 22:
		put_u32(b, 4, 0x03000000);
		*sub = "big-endian";
		break;
	case 23:
		put_u64(b, 16, 1ull << 40);
		*code = -E2BIG;
		*sub = "key/value count 1099511627776 > max";
		break;
	case 24:
		put_u64(b, 8, UINT64_MAX);
		*code = -E2BIG;
		*sub = "tensor count 18446744073709551615 > max";
		break;
	case 25:	/* under the cap but a lie */
		put_u64(b, 16, GGUF_MAX_KV);
		*sub = "truncated: 1048576 keys";
		break;
	case 26:	/* key length 2^64-1 */
		put_u64(b, 24, UINT64_MAX);
		*code = -EFBIG;
		*sub = "key 0: string length 18446744073709551615 > max";
		break;
	case 27:	/* string value length 2^64-1 */
		put_u64(b, kv_type_off(b, len, "general.architecture") + 4,
		    UINT64_MAX);
		*code = -EFBIG;
		*sub = "key 'general.architecture' value: string length "
		    "18446744073709551615";
		break;
	case 28:	/* a string value longer than the file */
		put_u64(b, kv_type_off(b, len, "general.name") + 4, 100000);
		*sub = "key 'general.name' value: string of 100000 bytes";
		break;
	case 29:
		put_u32(b, kv_type_off(b, len, "test.bool"), 13);
		*sub = "key 'test.bool': unknown value type 13";
		break;
	case 30:
		put_u32(b, kv_type_off(b, len, "tokenizer.ggml.tokens") + 4,
		    GGUF_VTYPE_ARRAY);
		*sub = "key 'tokenizer.ggml.tokens': array of arrays";
		break;
	case 31:
		put_u32(b, kv_type_off(b, len, "test.u64arr") + 4, 99);
		*sub = "key 'test.u64arr': unknown array element type 99";
		break;
	case 32:
		put_u64(b, kv_type_off(b, len, "test.u64arr") + 8, UINT64_MAX);
		*code = -E2BIG;
		*sub = "key 'test.u64arr': array of 18446744073709551615 "
		    "elements > max 67108864";
		break;
	case 33:	/* under the cap but a lie */
		put_u64(b, kv_type_off(b, len, "tokenizer.ggml.tokens") + 8,
		    1u << 20);
		*sub = "array of 1048576 string needs at least 8388608 bytes";
		break;
	case 34:
		put_u32(b, ti_off(b, len, "wt.alpha"), 0);
		*sub = "tensor 'wt.alpha': n_dims 0";
		break;
	case 35:
		put_u32(b, ti_off(b, len, "wt.alpha"), 5);
		*sub = "tensor 'wt.alpha': n_dims 5 > 4";
		break;
	case 36:
		put_u64(b, ti_off(b, len, "wt.alpha") + 4 + 8, 0);
		*sub = "tensor 'wt.alpha': dim 1 is 0";
		break;
	case 37:	/* top bit set: negative as int64 */
		put_u64(b, ti_off(b, len, "wt.alpha") + 4, UINT64_MAX - 7);
		*sub = "tensor 'wt.alpha': dim 0 is negative (-8)";
		break;
	case 38:	/* 2^32 * 2^32 */
		o = ti_off(b, len, "wt.alpha") + 4;
		put_u64(b, o, 1ull << 32);
		put_u64(b, o + 8, 1ull << 32);
		*sub = "tensor 'wt.alpha': element count overflows at dim 1";
		break;
	case 39:	/* 2^62 f32 elements: 2^64 bytes */
		o = ti_off(b, len, "wt.alpha") + 4;
		put_u64(b, o, 1ull << 62);
		put_u64(b, o + 8, 1);
		*sub = "tensor 'wt.alpha': data size overflows";
		break;
	case 40:	/* q8_0 row of 48 */
		put_u64(b, ti_off(b, len, "wt.beta") + 4, 48);
		*sub = "tensor 'wt.beta': row of 48 elements is not a multiple "
		    "of the q8_0 block size 32";
		break;
	case 41:
		put_u32(b, ti_off(b, len, "wt.alpha") + 4 + 16, 99);
		*sub = "tensor 'wt.alpha': unknown type 99";
		break;
	case 42:	/* a removed type id */
		put_u32(b, ti_off(b, len, "wt.alpha") + 4 + 16, 4);
		*sub = "tensor 'wt.alpha': unknown type 4";
		break;
	case 43:	/* offset past the end */
		put_u64(b, ti_off(b, len, "wt.gamma") + 4 + 8 + 4, 1ull << 40);
		*sub = "tensor 'wt.gamma': offset";
		break;
	case 44:	/* starts inside, ends past the end */
		o = ti_off(b, len, "wt.alpha") + 4 + 16 + 4;
		put_u64(b, o, get_u64(b, ti_off(b, len, "wt.gamma") + 16) +
		    32);
		*sub = "+ 64 bytes past end of file";
		break;
	case 45:
		o = ti_off(b, len, "wt.beta") + 4 + 8 + 4;
		put_u64(b, o, get_u64(b, o) + 4);
		*sub = "tensor 'wt.beta': offset 68 not aligned to 32";
		break;
	case 46:	/* beta at 32 overlaps alpha (0..64) */
		put_u64(b, ti_off(b, len, "wt.beta") + 4 + 8 + 4, 32);
		*sub = "tensors 'wt.alpha' and 'wt.beta' overlap";
		break;
	case 47:
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_u32(w, "general.alignment",
		    0), 0);
		*sub = "alignment 0 is not a power of two";
		break;
	case 48:
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_u32(w, "general.alignment",
		    3), 0);
		*sub = "alignment 3 is not a power of two";
		break;
	case 49:
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_str(w, "general.alignment",
		    "32"), 0);
		*sub = "key 'general.alignment' has type string, want uint32";
		break;
	case 50:
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_u64(w, "general.alignment",
		    32), 0);
		*sub = "key 'general.alignment' has type uint64, want uint32";
		break;
	case 51:	/* "test.f32" renamed "test.str" */
		memcpy(b + off_str(b, len, "test.f32") + 8, "test.str", 8);
		*sub = "duplicate key 'test.str'";
		break;
	case 52:	/* "wt.gamma" renamed "wt.alpha" */
		memcpy(b + off_str(b, len, "wt.gamma") + 8, "wt.alpha", 8);
		*sub = "duplicate tensor 'wt.alpha'";
		break;
	case 53:
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_u32(w,
		    "general.architecture", 1), 0);
		*sub = "key 'general.architecture' has type uint32, want "
		    "string";
		break;
	case 54:
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.tokens",
		    GGUF_VTYPE_INT32, &i1, 1), 0);
		*sub = "key 'tokenizer.ggml.tokens' has type array of int32, "
		    "want array of string";
		break;
	case 55:
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.scores",
		    GGUF_VTYPE_FLOAT64, &f1, 0), 0);
		*sub = "key 'tokenizer.ggml.scores' has type array of float64, "
		    "want array of float32";
		break;
	case 56:
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_arr(w,
		    "tokenizer.ggml.token_type", GGUF_VTYPE_UINT32, &u1, 1), 0);
		*sub = "key 'tokenizer.ggml.token_type' has type array of "
		    "uint32, want array of int32";
		break;
	case 57:
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_str(w,
		    "tokenizer.ggml.merges", "a b"), 0);
		*sub = "key 'tokenizer.ggml.merges' has type string, want "
		    "array of string";
		break;
	case 58:
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_f32(w, "llama.block_count",
		    2.0f), 0);
		*sub = "key 'llama.block_count' has type float32, want an "
		    "integer";
		break;
	case 59:	/* checked for the file's architecture whatever order */
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_str(w,
		    "general.architecture", "qwen2"), 0);
		ck_assert_int_eq(gguf_writer_set_str(w,
		    "qwen2.attention.head_count_kv", "2"), 0);
		*sub = "key 'qwen2.attention.head_count_kv' has type string, "
		    "want an integer";
		break;
	case 60:	/* another architecture's keys are not checked */
		w = base_writer();
		ck_assert_int_eq(gguf_writer_set_str(w, "qwen2.block_count",
		    "x"), 0);
		ck_assert_int_eq(gguf_writer_set_str(w,
		    "llama.context_length", "x"), 0);
		*sub = "key 'llama.context_length' has type string, want an "
		    "integer";
		break;
	default:
		ck_abort_msg("no corruption %d", i);
	}
	if (w != NULL) {
		free(b);
		b = w_buf(w, &len);
	}
	*bp = b;
	*lenp = len;
}
#define N_CORRUPT 61

START_TEST(test_corrupt)
{
	const char *sub = NULL;
	uint8_t *b;
	size_t len;
	int code = 0;

	b = base_buf(&len);
	corrupt(_i, &b, &len, &code, &sub);
	expect_fail_at(b, len, code, sub, 1000 + _i);
	free(b);
}
END_TEST

/* Hand-made files the writer will not make. */
START_TEST(test_handmade)
{
	struct bb bb = { 0 };

	/* an empty key */
	bb_hdr(&bb, 3, 0, 1);
	bb_str(&bb, "");
	bb_u32(&bb, GGUF_VTYPE_UINT8);
	bb_put(&bb, "x", 1);
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "key 0 is empty");
	bb.len = 0;

	/* an empty tensor name */
	bb_hdr(&bb, 3, 1, 0);
	bb_str(&bb, "");
	bb_u32(&bb, 1);
	bb_u64(&bb, 1);
	bb_u32(&bb, 0);
	bb_u64(&bb, 0);
	bb_put(&bb, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
	    "\0\0\0\0\0\0\0\0", 32);
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "tensor 0 has an empty name");
	bb.len = 0;

	/* a tensor with no data section at all */
	bb_hdr(&bb, 3, 1, 0);
	bb_str(&bb, "w");
	bb_u32(&bb, 1);
	bb_u64(&bb, 8);
	bb_u32(&bb, 0);
	bb_u64(&bb, 0);
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "tensor 'w': offset 64 + 32 bytes "
	    "past end of file (size 57)");
	bb.len = 0;

	/* no keys and no tensors is a valid (useless) file */
	bb_hdr(&bb, 3, 0, 0);
	gguf_close(open_ok(bb.b, bb.len));
	free(bb.b);
}
END_TEST

START_TEST(test_not_files)
{
	struct gguf sentinel, *g = &sentinel;
	struct eng_err e;
	const char *fifo, *dir;

	fifo = tu_tmpfile("fifo");
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	/* must not block waiting for a writer */
	ck_assert_int_eq(gguf_open(fifo, &g, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "is a FIFO, not a regular file") != NULL,
	    "%s", e.msg);
	dir = tu_tmpdir();
	ck_assert_int_eq(gguf_open(dir, &g, &e), -EISDIR);
	ck_assert_msg(strstr(e.msg, "is a directory") != NULL, "%s", e.msg);
	if (access("/dev/null", R_OK) == 0) {
		ck_assert_int_eq(gguf_open("/dev/null", &g, &e), -EINVAL);
		ck_assert_msg(strstr(e.msg, "/dev/null: is a character device")
		    != NULL, "%s", e.msg);
	}
	ck_assert_int_eq(gguf_open(tu_tmpfile("missing.gguf"), &g, &e),
	    -ENOENT);
	ck_assert_msg(strstr(e.msg, "missing.gguf: No such file") != NULL,
	    "%s", e.msg);
	ck_assert_int_eq(gguf_open(NULL, &g, &e), -EINVAL);
	ck_assert_ptr_eq(g, &sentinel);
}
END_TEST

START_TEST(test_read_tensor_errors)
{
	const struct gguf_tensor *t;
	struct gguf_tensor fake;
	struct gguf *g;
	struct eng_err e;
	uint8_t *b, buf[128];
	size_t len;

	b = base_buf(&len);
	g = open_ok(b, len);
	t = gguf_find_tensor(g, "wt.beta");
	ck_assert_int_eq(gguf_read_tensor(g, t, buf, 67, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "tensor 'wt.beta': buffer of 67 bytes, "
	    "need 68") != NULL, "%s", e.msg);
	ck_assert_int_eq(gguf_read_tensor(g, t, NULL, 68, &e), -EINVAL);
	fake = *t;
	ck_assert_int_eq(gguf_read_tensor(g, &fake, buf, sizeof(buf), &e),
	    -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "not from this file"));
	ck_assert_int_eq(gguf_read_tensor(NULL, t, buf, sizeof(buf), &e),
	    -EINVAL);
	/* the file shrinks under us */
	ck_assert_int_eq(truncate(tu_tmpfile("t.gguf"), (off_t)(len - 40)), 0);
	ck_assert_int_eq(gguf_read_tensor(g, gguf_find_tensor(g, "wt.alpha"),
	    buf, sizeof(buf), &e), 0);
	t = gguf_find_tensor(g, "wt.gamma");
	ck_assert_int_eq(gguf_read_tensor(g, t, buf, sizeof(buf), &e), -EIO);
	ck_assert_msg(strstr(e.msg, "file changed") != NULL, "%s", e.msg);
	gguf_close(g);
	free(b);
}
END_TEST

/* Every prefix of a valid file fails cleanly until the data is whole. */
START_TEST(test_every_prefix)
{
	struct gguf *g;
	struct eng_err e;
	uint8_t *b;
	size_t len, n, end = 0;
	uint64_t i;
	int r;

	b = base_buf(&len);
	g = open_ok(b, len);
	for (i = 0; i < g->n_tensors; i++)
		if (g->data_offset + g->tensors[i].offset +
		    g->tensors[i].nbytes > end)
			end = g->data_offset + g->tensors[i].offset +
			    g->tensors[i].nbytes;
	gguf_close(g);
	for (n = 0; n < len; n++) {
		e.msg[0] = '\0';
		g = NULL;
		r = open_bytes(b, n, &g, &e);
		if (n >= end) {
			ck_assert_msg(r == 0, "prefix %zu: %s", n, e.msg);
			gguf_close(g);
		} else {
			ck_assert_msg(r == -EINVAL && g == NULL &&
			    (strstr(e.msg, "truncated") != NULL ||
			    strstr(e.msg, "past end of file") != NULL ||
			    strstr(e.msg, "empty") != NULL),
			    "prefix %zu: %d %s", n, r, e.msg);
		}
	}
	free(b);
}
END_TEST

/* Random byte changes: never a crash, every failure has a message. */
START_TEST(test_fuzz)
{
	const struct gguf_tensor *t;
	struct gguf *g;
	struct eng_err e;
	uint8_t *b, *m, *data;
	size_t len, k;
	uint64_t st = 0x5eed, i;
	int iter, n, r, ok = 0;

	b = base_buf(&len);
	m = malloc(len);
	for (iter = 0; iter < 3000; iter++) {
		memcpy(m, b, len);
		n = 1 + (int)(tu_rand_u64(&st) % 4);
		while (n-- > 0) {
			k = (size_t)(tu_rand_u64(&st) % len);
			if (tu_rand_u64(&st) & 1)
				m[k] = (uint8_t)tu_rand_u64(&st);
			else
				m[k] ^= 0x80;
		}
		e.msg[0] = '\0';
		g = NULL;
		r = open_bytes(m, len, &g, &e);
		if (r < 0) {
			ck_assert_msg(e.msg[0] != '\0', "no message for %d", r);
			ck_assert(r == -EINVAL || r == -E2BIG || r == -EFBIG);
			continue;
		}
		ok++;
		for (i = 0; i < g->n_tensors; i++) {
			t = &g->tensors[i];
			data = malloc(t->nbytes);
			ck_assert_ptr_nonnull(data);
			ck_assert_int_eq(gguf_read_tensor(g, t, data,
			    t->nbytes, &e), 0);
			free(data);
		}
		gguf_close(g);
	}
	ck_assert_int_gt(ok, 0);	/* some changes hit only data */
	free(m);
	free(b);
}
END_TEST

/*
 * The hostile model files of issue 7 that the cases above do not make:
 * each is refused with a clear message, or read correctly when it is
 * odd but valid.
 */
START_TEST(test_hostile_files)
{
	struct bb bb = { 0 };
	struct gguf *g;
	const struct gguf_tensor *t;
	struct eng_err e;
	float v[8];
	int i;

	/* the magic alone */
	bb_hdr(&bb, 3, 0, 0);
	EXPECT_FAIL(bb.b, 4, -EINVAL, "truncated at byte 4 reading version");
	bb.len = 0;

	/* an array of 2^30 elements in a file of a few bytes */
	bb_hdr(&bb, 3, 0, 1);
	bb_str(&bb, "big");
	bb_u32(&bb, GGUF_VTYPE_ARRAY);
	bb_u32(&bb, GGUF_VTYPE_UINT8);
	bb_u64(&bb, 1ull << 30);
	bb_put(&bb, "abcd", 4);
	EXPECT_FAIL(bb.b, bb.len, -E2BIG, "key 'big': array of 1073741824 "
	    "elements > max 67108864");
	bb.len = 0;

	/* a string length of 2^63 */
	bb_hdr(&bb, 3, 0, 1);
	bb_str(&bb, "s");
	bb_u32(&bb, GGUF_VTYPE_STRING);
	bb_u64(&bb, 1ull << 63);
	EXPECT_FAIL(bb.b, bb.len, -EFBIG, "key 's' value: string length "
	    "9223372036854775808 > max");
	bb.len = 0;

	/* alignment 2^30 is a power of two: the tensor lands past the end */
	bb_hdr(&bb, 3, 1, 1);
	bb_str(&bb, "general.alignment");
	bb_u32(&bb, GGUF_VTYPE_UINT32);
	bb_u32(&bb, 1u << 30);
	bb_str(&bb, "w");
	bb_u32(&bb, 1);
	bb_u64(&bb, 8);
	bb_u32(&bb, 0);
	bb_u64(&bb, 0);
	bb_put(&bb, v, sizeof(v));
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "tensor 'w': offset 1073741824 + "
	    "32 bytes past end of file");
	bb.len = 0;
	/* ... and without tensors there is nothing to place */
	bb_hdr(&bb, 3, 0, 1);
	bb_str(&bb, "general.alignment");
	bb_u32(&bb, GGUF_VTYPE_UINT32);
	bb_u32(&bb, 1u << 30);
	g = open_ok(bb.b, bb.len);
	ck_assert_uint_eq(g->alignment, 1u << 30);
	gguf_close(g);
	bb.len = 0;

	/* an offset with the top bit set (negative as int64) */
	bb_hdr(&bb, 3, 1, 0);
	bb_str(&bb, "w");
	bb_u32(&bb, 1);
	bb_u64(&bb, 8);
	bb_u32(&bb, 0);
	bb_u64(&bb, 1ull << 63);
	while (bb.len % 32 != 0)
		bb_put(&bb, "", 1);
	bb_put(&bb, v, sizeof(v));
	EXPECT_FAIL(bb.b, bb.len, -EINVAL, "past end of file");
	bb.len = 0;

	/* offsets out of order but disjoint: valid, each reads its own data */
	for (i = 0; i < 8; i++)
		v[i] = (float)i;
	bb_hdr(&bb, 3, 2, 0);
	bb_str(&bb, "late");
	bb_u32(&bb, 1);
	bb_u64(&bb, 4);
	bb_u32(&bb, 0);
	bb_u64(&bb, 32);
	bb_str(&bb, "early");
	bb_u32(&bb, 1);
	bb_u64(&bb, 4);
	bb_u32(&bb, 0);
	bb_u64(&bb, 0);
	while (bb.len % 32 != 0)
		bb_put(&bb, "", 1);
	bb_put(&bb, v, 16);
	bb_put(&bb, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
	bb_put(&bb, v + 4, 16);
	g = open_ok(bb.b, bb.len);
	t = gguf_find_tensor(g, "late");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(gguf_read_tensor(g, t, v, sizeof(v), &e), 0);
	ck_assert(v[0] == 4.0f && v[3] == 7.0f);
	t = gguf_find_tensor(g, "early");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(gguf_read_tensor(g, t, v, sizeof(v), &e), 0);
	ck_assert(v[0] == 0.0f && v[3] == 3.0f);
	gguf_close(g);
	free(bb.b);

	/* endless character devices are not files */
	g = NULL;
	if (access("/dev/zero", R_OK) == 0) {
		ck_assert_int_eq(gguf_open("/dev/zero", &g, &e), -EINVAL);
		ck_assert_msg(strstr(e.msg, "/dev/zero: is a character device")
		    != NULL, "%s", e.msg);
		ck_assert_ptr_null(g);
	}
}
END_TEST

static Suite *
gguf_suite(void)
{
	Suite *s = suite_create("gguf");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_aidreams);
	tcase_add_test(tc, test_ref_models);
	tcase_add_test(tc, test_vocab_only);
	tcase_add_test(tc, test_base_file);
	tcase_add_test(tc, test_roundtrip_scalars);
	tcase_add_test(tc, test_roundtrip_arrays);
	tcase_add_test(tc, test_roundtrip_tensors);
	tcase_add_test(tc, test_getters);
	tcase_add_test(tc, test_type_table);
	tcase_add_test(tc, test_writer_refuses);
	tcase_add_test(tc, test_writer_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_string_caps);
	tcase_add_test(tc, test_many);
	tcase_add_test(tc, test_lying_counts);
	tcase_add_test(tc, test_message_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_corrupt, 0, N_CORRUPT);
	tcase_add_test(tc, test_handmade);
	tcase_add_test(tc, test_not_files);
	tcase_add_test(tc, test_read_tensor_errors);
	tcase_add_test(tc, test_every_prefix);
	tcase_add_test(tc, test_fuzz);
	tcase_add_test(tc, test_hostile_files);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(gguf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
