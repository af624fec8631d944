/*
 * check_model.c - models and the forward pass.
 *
 * core:   the real trained model continues "Echoes" exactly as llama.cpp
 *         does; teacher-forced logits of every reference model agree with
 *         llama.cpp's; generated models of both architectures and every
 *         weight type give the same logits whatever the chunking.
 * limits: context full, tokens out of range, chunk splitting.
 * errors: unknown architecture, missing tensor, wrong shape, unsupported
 *         type, vocabulary mismatch: refused with a message.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "gguf.h"
#include "gguf_write.h"
#include "kernels.h"
#include "mkmodel_lib.h"
#include "model.h"
#include "sampler.h"
#include "testutil.h"
#include "tokenizer.h"

/* Logits must agree with llama.cpp's top-1 at least this often. */
#define TOP1_MIN_EXACT	1.00	/* F32, F16 */
#define TOP1_MIN_QUANT	0.97	/* every other type */
/* RMS error against the F32 truth at most this times llama.cpp's own. */
#define RMS_MAX_RATIO	1.10
/* Quantized generated model vs its F32 twin: relative RMS of logits. */
#define TWIN_REL_RMS_Q8_0	0.05
#define TWIN_REL_RMS_Q6_K	0.12	/* 2 bits fewer: ~4x Q8_0's noise */
#define TWIN_REL_RMS_Q4		0.45	/* ~8% noise per weight, x3.8 through the net */

static struct model *
open_model(const char *path)
{
	struct eng_err err = { "" };
	struct model *m = NULL;
	int r;

	r = model_open(path, NULL, NULL, &m, &err);
	ck_assert_msg(r == 0, "model_open %s: %d %s", path, r, err.msg);
	return m;
}

/* model_open with a KV cache of k_type keys and v_type values. */
static struct model *
open_model_kv(const char *path, uint32_t k_type, uint32_t v_type)
{
	struct eng_err err = { "" };
	struct model_load_opts o;
	struct model *m = NULL;
	int r;

	model_load_opts_default(&o);
	o.kv_type_k = k_type;
	o.kv_type_v = v_type;
	r = model_open_opts(path, &o, NULL, NULL, &m, &err);
	ck_assert_msg(r == 0, "model_open %s: %d %s", path, r, err.msg);
	ck_assert_uint_eq(m->kv_type_k, k_type);
	ck_assert_uint_eq(m->kv_type_v, v_type);
	return m;
}

/* Teacher-forced logits of all n tokens, chunks of n_batch, with a
 * cache of the given types: [n][n_vocab]. */
static float *
eval_all_kv(struct model *m, const int32_t *ids, size_t n, uint32_t n_batch,
    uint32_t k_type, uint32_t v_type)
{
	struct eng_err err = { "" };
	struct fwd *f = NULL;
	struct fwd_kv *kv = NULL;
	size_t V = m->hp.n_vocab, i, done, c;
	float *out;
	int r;

	ck_assert_int_eq(fwd_new(m, n_batch, (uint32_t)n + 8, n_batch, &f), 0);
	ck_assert_int_eq(fwd_kv_new_types(m, (uint32_t)n + 8, k_type, v_type,
	    &kv), 0);
	out = malloc(n * V * sizeof(float));
	ck_assert_ptr_nonnull(out);
	for (done = 0; done < n; done += c) {
		c = n - done < n_batch ? n - done : n_batch;
		r = fwd_eval(f, kv, ids + done, c, true, &err);
		ck_assert_msg(r == 0, "fwd_eval: %s", err.msg);
		ck_assert_uint_eq(f->n_logits, c);
		for (i = 0; i < c; i++)
			memcpy(out + (done + i) * V, fwd_logits(f, (uint32_t)i),
			    V * sizeof(float));
	}
	fwd_kv_free(kv);
	fwd_free(f);
	return out;
}

/* The same with the model's own cache types. */
static float *
eval_all(struct model *m, const int32_t *ids, size_t n, uint32_t n_batch)
{
	return eval_all_kv(m, ids, n, n_batch, m->kv_type_k, m->kv_type_v);
}

static size_t
argmax(const float *x, size_t n)
{
	size_t i, best = 0;

	for (i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

static double
rms_diff(const float *a, const float *b, size_t n)
{
	double s = 0;
	size_t i;

	for (i = 0; i < n; i++)
		s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
	return sqrt(s / (double)n);
}

/* ---- core: the real model ------------------------------------------- */

START_TEST(test_aidreams_echoes)
{
	static const int32_t want_prompt[] = { 1, 388, 355, 260 };
	static const int32_t want[60] = {
		275, 280, 302, 450, 405, 403, 399, 327, 446, 299, 303, 266,
		358, 430, 312, 266, 438, 349, 438, 451, 275, 429, 339, 315,
		374, 448, 429, 465, 265, 434, 317, 431, 434, 289, 408, 326,
		446, 262, 279, 438, 349, 261, 446, 299, 303, 266, 323, 434,
		285, 362, 262, 263, 428, 434, 436, 451, 275, 280, 302, 450 };
	static const char want_text[] = "Echoes of probability unfold, as I "
	    "sense the slowly of vectors. Contrast emerge, a flower, as I "
	    "settle into a tapestry of prob";
	const char *path = tu_testdata("models/aidreams260K.gguf");
	struct eng_err err = { "" };
	struct model *m;
	struct fwd *f;
	struct fwd_kv *kv;
	struct smp *s;
	struct smp_params sp;
	int32_t ids[64 + 4], tok;
	size_t n = 0, i;
	char text[1024];

	if (path == NULL) {
		tu_skip("aidreams260K");
		return;
	}
	m = open_model(path);
	ck_assert_int_eq(m->hp.arch, MODEL_ARCH_LLAMA);
	ck_assert_uint_eq(m->hp.n_embd, 64);
	/* the file says 4 layers of 4 heads (its README says 5 and 8) */
	ck_assert_uint_eq(m->hp.n_layer, 4);
	ck_assert_uint_eq(m->hp.n_head, 4);
	ck_assert_uint_eq(m->hp.n_head_kv, 4);
	ck_assert_uint_eq(m->hp.n_vocab, 512);
	ck_assert(m->tied == (gguf_find_tensor(m->gguf, "output.weight") == NULL));

	ck_assert_int_eq(tok_encode(m->tok, "Echoes", 6, true, false, ids, 64,
	    &n), 0);
	ck_assert_uint_eq(n, 4);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(ids[i], want_prompt[i]);

	smp_params_default(&sp);
	sp.temperature = 0;
	ck_assert_int_eq(smp_new(&sp, 512, &s), 0);
	ck_assert_int_eq(fwd_new(m, 16, 128, 1, &f), 0);
	ck_assert_int_eq(fwd_kv_new(m, 128, &kv), 0);
	ck_assert_int_eq(fwd_eval(f, kv, ids, n, false, &err), 0);
	for (i = 0; i < 60; i++) {
		tok = smp_sample(s, fwd_logits(f, 0));
		ck_assert_msg(tok == want[i], "token %zu: got %d, want %d", i,
		    tok, want[i]);
		ids[n++] = tok;
		ck_assert_int_eq(fwd_eval(f, kv, &tok, 1, false, &err), 0);
	}
	ck_assert_int_ge(tok_decode(m->tok, ids, n, false, true, text,
	    sizeof(text)), 0);
	ck_assert_str_eq(text, want_text);
	smp_free(s);
	fwd_kv_free(kv);
	fwd_free(f);
	model_free(m);
}
END_TEST

/* ---- core: the same answers as llama.cpp ----------------------------- */

static const struct ref_case {
	const char	*file;		/* ref/<file>.gguf */
	const char	*truth;		/* F32 logits of the same model */
	double		 top1_min;
	double		 llama_rms;	/* llama.cpp's own RMS vs truth */
} ref_cases[] = {
	{ "ref-llama-f32",    "ref-llama-f32", TOP1_MIN_EXACT, 0 },
	{ "ref-llama-f16",    "ref-llama-f32", TOP1_MIN_EXACT, 0 },
	{ "ref-llama-bf16",   "ref-llama-f32", TOP1_MIN_QUANT, 0 },
	{ "ref-llama-q8_0",   "ref-llama-f32", TOP1_MIN_QUANT, 0 },
	{ "ref-llama-q6_k",   "ref-llama-f32", TOP1_MIN_QUANT, 0 },
	{ "ref-llama-q4_k_m", "ref-llama-f32", TOP1_MIN_QUANT, 0 },
	{ "ref-llama-q4_0",   "ref-llama-f32", TOP1_MIN_QUANT, 0 },
	{ "ref-qwen2-f16",    "ref-qwen2-f32", TOP1_MIN_EXACT, 0 },
	{ "ref-qwen2-bf16",   "ref-qwen2-f32", TOP1_MIN_QUANT, 0 },
	{ "ref-qwen2-q8_0",   "ref-qwen2-f32", TOP1_MIN_QUANT, 0 },
	{ "ref-qwen2-q6_k",   "ref-qwen2-f32", TOP1_MIN_QUANT, 0 },
	{ "ref-qwen2-q4_k_m", "ref-qwen2-f32", TOP1_MIN_QUANT, 0 },
	{ "ref-qwen2-q4_0",   "ref-qwen2-f32", TOP1_MIN_QUANT, 0 },
};
#define N_REF_CASES (sizeof(ref_cases) / sizeof(ref_cases[0]))

static float *
read_logits(const char *name, size_t want_floats)
{
	char rel[256];
	const char *path;
	size_t len = 0;
	uint8_t *buf;

	snprintf(rel, sizeof(rel), "ref/%s.logits.f32", name);
	path = tu_testdata(rel);
	ck_assert_ptr_nonnull(path);
	buf = tu_read_file(path, &len);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(len, want_floats * sizeof(float));
	return (float *)buf;
}

START_TEST(test_ref_logits)
{
	const struct ref_case *rc = &ref_cases[_i];
	char rel[256];
	const char *path;
	struct model *m;
	int32_t ids[256];
	size_t n = 0, V, i, top1 = 0;
	float *ours, *theirs, *truth;
	double rms_ours, rms_theirs, frac;
	uint8_t *txt;
	size_t txt_len;
	char *p, *end;

	path = tu_testdata("ref/tokens.txt");
	if (path == NULL) {
		tu_skip("ref logits");
		return;
	}
	txt = tu_read_file(path, &txt_len);
	ck_assert_ptr_nonnull(txt);
	txt = realloc(txt, txt_len + 1);
	txt[txt_len] = '\0';
	for (p = (char *)txt; n < 256; p = end) {
		long v = strtol(p, &end, 10);

		if (end == p)
			break;
		ids[n++] = (int32_t)v;
	}
	free(txt);
	ck_assert_uint_eq(n, 69);

	snprintf(rel, sizeof(rel), "ref/%s.gguf", rc->file);
	path = tu_testdata(rel);
	ck_assert_ptr_nonnull(path);
	m = open_model(path);
	V = m->hp.n_vocab;
	ck_assert_uint_eq(V, 512);

	ours = eval_all(m, ids, n, 512);
	theirs = read_logits(rc->file, n * V);
	truth = read_logits(rc->truth, n * V);
	for (i = 0; i < n; i++)
		if (argmax(ours + i * V, V) == argmax(theirs + i * V, V))
			top1++;
	frac = (double)top1 / (double)n;
	rms_ours = rms_diff(ours, truth, n * V);
	rms_theirs = rms_diff(theirs, truth, n * V);
	fprintf(stderr, "%-18s top-1 %3zu/%zu (%.1f%%)  rms vs f32: hearth "
	    "%.5f  llama.cpp %.5f\n", rc->file, top1, n, 100 * frac, rms_ours,
	    rms_theirs);
	ck_assert_msg(frac >= rc->top1_min, "%s: top-1 agreement %.3f < %.3f",
	    rc->file, frac, rc->top1_min);
	/* for the F32 file itself llama.cpp's error is 0: allow float noise */
	ck_assert_msg(rms_ours <= RMS_MAX_RATIO * rms_theirs + 1e-3,
	    "%s: rms %.5f > %.2f x llama.cpp's %.5f", rc->file, rms_ours,
	    RMS_MAX_RATIO, rms_theirs);
	free(ours);
	free(theirs);
	free(truth);
	model_free(m);
}
END_TEST

/*
 * The same files with a Q8_0 KV cache (keys and values; llama.cpp's
 * -ctk q8_0 -ctv q8_0), against llama.cpp's logits (made with its fp16
 * cache) and the F32 truth. Bounds from what was measured (in the
 * comments): top-1 agreement at least the measured count minus one row,
 * RMS vs the truth at most the measured value plus about half of what
 * the 8-bit cache adds (~0.004 in quadrature on these files).
 */
static const struct kvq8_case {
	const char	*file;
	const char	*truth;
	double		 top1_min;
	double		 rms_max;
} kvq8_cases[] = {
	/* measured: top-1 of 69, RMS vs truth (f16 cache: 69, RMS) */
	/* 68, 0.00398 (69, 0.00001) */
	{ "ref-llama-f32",    "ref-llama-f32",    67 / 69.0, 0.0060 },
	/* 68, 0.00398 (69, 0.00001) */
	{ "ref-llama-f16",    "ref-llama-f32",    67 / 69.0, 0.0060 },
	/* 66, 0.01728 (69, 0.01668) */
	{ "ref-llama-q8_0",   "ref-llama-f32",    65 / 69.0, 0.0195 },
	/* 66, 0.14383 (69, 0.14390) */
	{ "ref-llama-q4_k_m", "ref-llama-f32",    65 / 69.0, 0.1460 },
	/* 68, 0.18356 (69, 0.18363) */
	{ "ref-llama-q4_0",   "ref-llama-f32",    67 / 69.0, 0.1860 },
	/* 69, 0.00407 (69, 0.00001) */
	{ "ref-qwen2-f16",    "ref-qwen2-f32",    68 / 69.0, 0.0060 },
	/* 68, 0.01729 (69, 0.01675) */
	{ "ref-qwen2-q8_0",   "ref-qwen2-f32",    67 / 69.0, 0.0195 },
	/* 67, 0.17879 (69, 0.17875) */
	{ "ref-qwen2-q4_0",   "ref-qwen2-f32",    66 / 69.0, 0.1810 },
};
#define N_KVQ8_CASES (sizeof(kvq8_cases) / sizeof(kvq8_cases[0]))

/* ref/tokens.txt into ids[256]; 0 when the test data is missing. */
static size_t
read_ref_tokens(int32_t *ids)
{
	const char *path = tu_testdata("ref/tokens.txt");
	uint8_t *txt;
	size_t n = 0, len;
	char *p, *end;

	if (path == NULL)
		return 0;
	txt = tu_read_file(path, &len);
	ck_assert_ptr_nonnull(txt);
	txt = realloc(txt, len + 1);
	ck_assert_ptr_nonnull(txt);
	txt[len] = '\0';
	for (p = (char *)txt; n < 256; p = end) {
		long v = strtol(p, &end, 10);

		if (end == p)
			break;
		ids[n++] = (int32_t)v;
	}
	free(txt);
	return n;
}

START_TEST(test_ref_logits_kvq8)
{
	const struct kvq8_case *kc = &kvq8_cases[_i];
	char rel[256];
	const char *path;
	struct model *m;
	int32_t ids[256];
	size_t n, V, i, top1 = 0, top1_f16 = 0;
	float *q8, *f16, *theirs, *truth;
	double rms_q8, rms_f16, frac;

	if ((n = read_ref_tokens(ids)) == 0) {
		tu_skip("ref logits with a q8_0 KV cache");
		return;
	}
	ck_assert_uint_eq(n, 69);
	snprintf(rel, sizeof(rel), "ref/%s.gguf", kc->file);
	path = tu_testdata(rel);
	ck_assert_ptr_nonnull(path);
	m = open_model_kv(path, KERN_TYPE_Q8_0, KERN_TYPE_Q8_0);
	V = m->hp.n_vocab;
	q8 = eval_all(m, ids, n, 512);
	f16 = eval_all_kv(m, ids, n, 512, KERN_TYPE_F16, KERN_TYPE_F16);
	theirs = read_logits(kc->file, n * V);
	truth = read_logits(kc->truth, n * V);
	for (i = 0; i < n; i++) {
		top1 += argmax(q8 + i * V, V) == argmax(theirs + i * V, V);
		top1_f16 += argmax(f16 + i * V, V) ==
		    argmax(theirs + i * V, V);
	}
	frac = (double)top1 / (double)n;
	rms_q8 = rms_diff(q8, truth, n * V);
	rms_f16 = rms_diff(f16, truth, n * V);
	fprintf(stderr, "%-18s kv q8_0: top-1 %3zu/%zu (%.1f%%), rms vs f32 "
	    "%.5f; kv f16: top-1 %zu, rms %.5f\n", kc->file, top1, n,
	    100 * frac, rms_q8, top1_f16, rms_f16);
	ck_assert_msg(frac >= kc->top1_min, "%s kv q8_0: top-1 agreement "
	    "%.3f < %.3f", kc->file, frac, kc->top1_min);
	ck_assert_msg(rms_q8 <= kc->rms_max, "%s kv q8_0: rms %.5f > %.5f",
	    kc->file, rms_q8, kc->rms_max);
	/* the cache's quantization adds error; it never hides the weights' */
	ck_assert_msg(memcmp(q8, f16, n * V * sizeof(float)) != 0,
	    "%s: the q8_0 cache gave the f16 cache's logits", kc->file);
	free(q8);
	free(f16);
	free(theirs);
	free(truth);
	model_free(m);
}
END_TEST

/* ---- core: generated models ------------------------------------------- */

static const struct gen_case {
	const char	*arch;
	uint32_t	 type;
} gen_cases[] = {
	{ "llama", KERN_TYPE_F32 },
	{ "llama", KERN_TYPE_F16 },
	{ "llama", KERN_TYPE_BF16 },
	{ "llama", KERN_TYPE_Q8_0 },
	{ "llama", KERN_TYPE_Q4_0 },
	{ "llama", KERN_TYPE_Q4_K },
	{ "llama", KERN_TYPE_Q6_K },
	{ "qwen2", KERN_TYPE_F32 },
	{ "qwen2", KERN_TYPE_F16 },
	{ "qwen2", KERN_TYPE_Q8_0 },
	{ "qwen2", KERN_TYPE_Q4_K },
	{ "qwen2", KERN_TYPE_Q6_K },
};
#define N_GEN_CASES (sizeof(gen_cases) / sizeof(gen_cases[0]))

static void
gen_spec(struct mkm_spec *s, const char *arch, uint32_t type)
{
	mkm_spec_default(s);
	s->arch = arch;
	s->n_embd = 256;	/* a K-quant super-block */
	s->n_ff = 512;
	s->n_layer = 2;
	s->n_head = 4;
	s->n_head_kv = 2;
	s->n_ctx = 256;
	s->wtype = type;
	s->embd_type = type;
	s->out_type = type;
	s->n_vocab = 300;
	s->seed = 42;
}

static const char *
gen_model(const struct mkm_spec *s, const char *name)
{
	struct eng_err err = { "" };
	const char *path = tu_tmpfile(name);
	static char keep[4096];
	int r;

	r = mkm_write(s, path, &err);
	ck_assert_msg(r == 0, "mkm_write %s: %d %s", name, r, err.msg);
	snprintf(keep, sizeof(keep), "%s", path);
	return keep;
}

static void
gen_ids(int32_t *ids, size_t n, uint32_t n_vocab, uint64_t seed)
{
	size_t i;

	ids[0] = 1;
	for (i = 1; i < n; i++)
		ids[i] = (int32_t)(tu_rand_u64(&seed) % n_vocab);
}

/* Chunked, one by one, or all at once: the same logits, bit for bit. */
START_TEST(test_gen_batch_invariance)
{
	const struct gen_case *gc = &gen_cases[_i];
	struct mkm_spec spec;
	char name[64];
	struct model *m;
	int32_t ids[40];
	float *all, *one, *three;
	size_t V;

	gen_spec(&spec, gc->arch, gc->type);
	snprintf(name, sizeof(name), "gen-%s-%s.gguf", gc->arch,
	    kern_type_name(gc->type));
	m = open_model(gen_model(&spec, name));
	ck_assert_int_eq(m->hp.arch, strcmp(gc->arch, "qwen2") == 0 ?
	    MODEL_ARCH_QWEN2 : MODEL_ARCH_LLAMA);
	ck_assert(m->hp.rope_neox == (m->hp.arch == MODEL_ARCH_QWEN2));
	ck_assert(m->layers[0].wq.type == gc->type);
	V = m->hp.n_vocab;
	gen_ids(ids, 40, (uint32_t)V, 7);
	all = eval_all(m, ids, 40, 64);
	one = eval_all(m, ids, 40, 1);
	three = eval_all(m, ids, 40, 3);
	ck_assert_msg(memcmp(all, one, 40 * V * sizeof(float)) == 0,
	    "%s: logits differ between batch 64 and 1", name);
	ck_assert_msg(memcmp(all, three, 40 * V * sizeof(float)) == 0,
	    "%s: logits differ between batch 64 and 3", name);
	for (size_t i = 0; i < 40 * V; i++)
		ck_assert_msg(isfinite(all[i]), "%s: logit %zu not finite",
		    name, i);
	free(all);
	free(one);
	free(three);
	model_free(m);
}
END_TEST

/* A quantized model stays close to its F32 twin (same seed). */
START_TEST(test_gen_quant_twin)
{
	static const struct { uint32_t type; double tol; } tw[] = {
		{ KERN_TYPE_F16, 0.01 },
		{ KERN_TYPE_BF16, 0.03 },
		{ KERN_TYPE_Q8_0, TWIN_REL_RMS_Q8_0 },
		{ KERN_TYPE_Q6_K, TWIN_REL_RMS_Q6_K },
		{ KERN_TYPE_Q4_K, TWIN_REL_RMS_Q4 },
		{ KERN_TYPE_Q4_0, TWIN_REL_RMS_Q4 },
	};
	struct mkm_spec spec;
	struct model *m32, *mq;
	int32_t ids[24];
	float *a, *b;
	double rms, norm;
	size_t V, k;

	gen_spec(&spec, "llama", KERN_TYPE_F32);
	m32 = open_model(gen_model(&spec, "twin-f32.gguf"));
	V = m32->hp.n_vocab;
	gen_ids(ids, 24, (uint32_t)V, 11);
	a = eval_all(m32, ids, 24, 24);
	norm = 0;
	for (k = 0; k < 24 * V; k++)
		norm += (double)a[k] * a[k];
	norm = sqrt(norm / (double)(24 * V));	/* rms of the logits */
	ck_assert(norm > 0);
	for (k = 0; k < sizeof(tw) / sizeof(tw[0]); k++) {
		gen_spec(&spec, "llama", tw[k].type);
		mq = open_model(gen_model(&spec, "twin-q.gguf"));
		b = eval_all(mq, ids, 24, 24);
		rms = rms_diff(a, b, 24 * V) / norm;
		fprintf(stderr, "twin %-5s relative rms %.4f (limit %.3f)\n",
		    kern_type_name(tw[k].type), rms, tw[k].tol);
		ck_assert_msg(rms <= tw[k].tol, "%s: relative rms %.4f > %.3f",
		    kern_type_name(tw[k].type), rms, tw[k].tol);
		free(b);
		model_free(mq);
	}
	free(a);
	model_free(m32);
}
END_TEST


/*
 * Continuous batching: four sequences prefilled together, then decoded
 * together greedily, give the same logits bit for bit as each alone.
 */
START_TEST(test_gen_multi_seq)
{
	enum { NS = 4, STEPS = 6 };
	static const uint32_t plen[NS] = { 5, 1, 9, 3 };
	struct eng_err err = { "" };
	struct mkm_spec spec;
	struct model *m;
	struct fwd *f;
	struct fwd_kv *kv[NS];
	struct fwd_seq seq[NS];
	int32_t prompt[NS][16], tok[NS];
	float *alone[NS], *together[NS];
	size_t V, s, k;

	gen_spec(&spec, _i % 2 ? "qwen2" : "llama", _i % 2 ? KERN_TYPE_Q4_K :
	    KERN_TYPE_Q8_0);
	/* _i >= 2: the same with a Q8_0 KV cache */
	m = _i >= 2 ? open_model_kv(gen_model(&spec, "multi.gguf"),
	    KERN_TYPE_Q8_0, KERN_TYPE_Q8_0) :
	    open_model(gen_model(&spec, "multi.gguf"));
	V = m->hp.n_vocab;
	for (s = 0; s < NS; s++) {
		gen_ids(prompt[s], plen[s], (uint32_t)V, 100 + s);
		alone[s] = malloc((STEPS + 1) * V * sizeof(float));
		together[s] = malloc((STEPS + 1) * V * sizeof(float));
		ck_assert(alone[s] != NULL && together[s] != NULL);
	}
	/* alone: prefill, then greedy steps */
	ck_assert_int_eq(fwd_new(m, 32, 64, NS, &f), 0);
	for (s = 0; s < NS; s++) {
		ck_assert_int_eq(fwd_kv_new(m, 64, &kv[0]), 0);
		ck_assert_int_eq(fwd_eval(f, kv[0], prompt[s], plen[s], false,
		    &err), 0);
		for (k = 0; k <= STEPS; k++) {
			memcpy(alone[s] + k * V, fwd_logits(f, 0),
			    V * sizeof(float));
			tok[0] = (int32_t)argmax(fwd_logits(f, 0), V);
			if (k < STEPS)
				ck_assert_int_eq(fwd_eval(f, kv[0], tok, 1,
				    false, &err), 0);
		}
		fwd_kv_free(kv[0]);
	}
	/* together: one batch of all prompts, then steps of all four */
	for (s = 0; s < NS; s++) {
		ck_assert_int_eq(fwd_kv_new(m, 64, &kv[s]), 0);
		memset(&seq[s], 0, sizeof(seq[s]));
		seq[s].kv = kv[s];
		seq[s].tokens = prompt[s];
		seq[s].n = plen[s];
	}
	for (k = 0; k <= STEPS; k++) {
		ck_assert_int_eq(fwd_eval_batch(f, seq, NS, &err), 0);
		ck_assert_uint_eq(f->n_logits, NS);
		for (s = 0; s < NS; s++) {
			const float *lg = fwd_logits(f, seq[s].logits_row);

			memcpy(together[s] + k * V, lg, V * sizeof(float));
			tok[s] = (int32_t)argmax(lg, V);
			seq[s].tokens = &tok[s];
			seq[s].n = 1;
		}
	}
	for (s = 0; s < NS; s++) {
		ck_assert_msg(memcmp(alone[s], together[s],
		    (STEPS + 1) * V * sizeof(float)) == 0,
		    "sequence %zu: batched logits differ from alone", s);
		ck_assert_uint_eq(kv[s]->n_past, plen[s] + STEPS);
		fwd_kv_free(kv[s]);
		free(alone[s]);
		free(together[s]);
	}
	fwd_free(f);
	model_free(m);
}
END_TEST

/*
 * A Q8_0 KV cache (keys, values, both): chunked, one by one or all at
 * once, the same logits bit for bit; greedy continuations equal; and
 * different from the f16 cache's (the option does something).
 */
START_TEST(test_gen_kvq8_chunking)
{
	static const uint32_t kt[] = { KERN_TYPE_Q8_0, KERN_TYPE_Q8_0,
	    KERN_TYPE_F16 };
	static const uint32_t vt[] = { KERN_TYPE_Q8_0, KERN_TYPE_F16,
	    KERN_TYPE_Q8_0 };
	struct mkm_spec spec;
	struct model *m;
	int32_t ids[40];
	float *all, *one, *three, *f16;
	size_t V, i, same = 0;

	gen_spec(&spec, _i == 1 ? "qwen2" : "llama", _i == 2 ?
	    KERN_TYPE_F16 : KERN_TYPE_Q4_0);
	m = open_model_kv(gen_model(&spec, "kvq8.gguf"), kt[_i], vt[_i]);
	V = m->hp.n_vocab;
	gen_ids(ids, 40, (uint32_t)V, 11);
	all = eval_all(m, ids, 40, 64);
	one = eval_all(m, ids, 40, 1);
	three = eval_all(m, ids, 40, 3);
	f16 = eval_all_kv(m, ids, 40, 64, KERN_TYPE_F16, KERN_TYPE_F16);
	ck_assert_msg(memcmp(all, one, 40 * V * sizeof(float)) == 0,
	    "kv %s/%s: logits differ between batch 64 and 1",
	    kern_type_name(kt[_i]), kern_type_name(vt[_i]));
	ck_assert_msg(memcmp(all, three, 40 * V * sizeof(float)) == 0,
	    "kv %s/%s: logits differ between batch 64 and 3",
	    kern_type_name(kt[_i]), kern_type_name(vt[_i]));
	ck_assert(memcmp(all, f16, 40 * V * sizeof(float)) != 0);
	for (i = 0; i < 40; i++) {
		ck_assert(isfinite(all[i * V]));
		same += argmax(all + i * V, V) == argmax(f16 + i * V, V);
	}
	/* random weights: nearly flat logits, yet mostly the same top-1 */
	ck_assert_msg(same >= 30, "kv %s/%s: top-1 equal to the f16 cache's "
	    "in %zu of 40 rows", kern_type_name(kt[_i]),
	    kern_type_name(vt[_i]), same);
	free(all);
	free(one);
	free(three);
	free(f16);
	model_free(m);
}
END_TEST

/* Q8_0 KV caches need head dims of whole blocks; other types are
 * refused with a message. */
START_TEST(test_kv_type_refused)
{
	struct eng_err err = { "" };
	struct model_load_opts o;
	struct mkm_spec spec;
	struct model *m = NULL;
	struct fwd_kv *kv = NULL;
	const char *path;

	gen_spec(&spec, "llama", KERN_TYPE_F32);
	spec.n_head = 16;	/* head dim 16 */
	spec.n_head_kv = 4;
	path = gen_model(&spec, "hd16.gguf");
	model_load_opts_default(&o);
	o.kv_type_v = KERN_TYPE_Q8_0;
	ck_assert_int_eq(model_open_opts(path, &o, NULL, NULL, &m, &err),
	    -EINVAL);
	ck_assert_msg(strstr(err.msg, "multiple of 32") != NULL &&
	    strstr(err.msg, "q8_0") != NULL && strstr(err.msg, "16") != NULL,
	    "message: %s", err.msg);
	ck_assert_ptr_null(m);
	model_load_opts_default(&o);
	o.kv_type_k = KERN_TYPE_Q4_0;
	ck_assert_int_eq(model_open_opts(path, &o, NULL, NULL, &m, &err),
	    -ENOTSUP);
	ck_assert_msg(strstr(err.msg, "q4_0") != NULL &&
	    strstr(err.msg, "not supported") != NULL, "message: %s", err.msg);
	ck_assert_ptr_null(m);
	/* the default f16 loads; a q8_0 cache of it is refused */
	m = open_model(path);
	ck_assert_uint_eq(m->kv_type_k, KERN_TYPE_F16);
	ck_assert_uint_eq(m->kv_type_v, KERN_TYPE_F16);
	ck_assert_int_eq(fwd_kv_new_types(m, 16, KERN_TYPE_Q8_0,
	    KERN_TYPE_F16, &kv), -EINVAL);
	ck_assert_int_eq(fwd_kv_new_types(m, 16, KERN_TYPE_F32,
	    KERN_TYPE_F16, &kv), -EINVAL);
	ck_assert_ptr_null(kv);
	model_free(m);
}
END_TEST

/* Batch errors leave every cache as it was. */
START_TEST(test_batch_errors)
{
	struct eng_err err = { "" };
	struct mkm_spec spec;
	struct model *m;
	struct fwd *f;
	struct fwd_kv *a, *b;
	struct fwd_seq seq[2];
	int32_t ids[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	gen_spec(&spec, "llama", KERN_TYPE_F32);
	m = open_model(gen_model(&spec, "batcherr.gguf"));
	ck_assert_int_eq(fwd_new(m, 8, 16, 2, &f), 0);
	ck_assert_int_eq(fwd_kv_new(m, 16, &a), 0);
	ck_assert_int_eq(fwd_kv_new(m, 16, &b), 0);
	memset(seq, 0, sizeof(seq));
	seq[0].kv = a; seq[0].tokens = ids; seq[0].n = 5;
	seq[1].kv = b; seq[1].tokens = ids; seq[1].n = 4;
	ck_assert_int_eq(fwd_eval_batch(f, seq, 2, &err), -E2BIG);
	seq[1].n = 3;
	seq[1].kv = a;
	ck_assert_int_eq(fwd_eval_batch(f, seq, 2, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "used twice"));
	seq[1].kv = b;
	seq[0].all_logits = true;
	ck_assert_int_eq(fwd_eval_batch(f, seq, 2, &err), -E2BIG);
	seq[0].all_logits = false;
	ck_assert_int_eq(fwd_eval_batch(f, seq, 0, &err), -EINVAL);
	ck_assert_uint_eq(a->n_past, 0);
	ck_assert_uint_eq(b->n_past, 0);
	ck_assert_int_eq(fwd_eval_batch(f, seq, 2, &err), 0);
	ck_assert_uint_eq(a->n_past, 5);
	ck_assert_uint_eq(b->n_past, 3);
	ck_assert_int_eq(fwd_new(m, 4, 16, 5, &f), -EINVAL);	/* logits > batch */
	fwd_kv_free(a);
	fwd_kv_free(b);
	fwd_free(f);
	model_free(m);
}
END_TEST


/* Tied output and rope frequency factors (Llama 3.1 style). */
START_TEST(test_gen_tied_rope_freqs)
{
	struct mkm_spec spec;
	struct model *m, *m_plain;
	const struct gguf_tensor *t;
	float ff[128];
	int32_t ids[12];
	float *a;
	size_t i, V;

	gen_spec(&spec, "llama", KERN_TYPE_Q8_0);
	spec.tied = true;
	spec.rope_freqs = true;
	m = open_model(gen_model(&spec, "tied.gguf"));
	ck_assert(m->tied);
	ck_assert_ptr_null(gguf_find_tensor(m->gguf, "output.weight"));
	ck_assert_ptr_eq(m->output.data, m->tok_embd.data);
	t = gguf_find_tensor(m->gguf, "rope_freqs.weight");
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(t->ne[0], m->hp.n_rot / 2);
	ck_assert_int_eq(gguf_read_tensor(m->gguf, t, ff, sizeof(ff), NULL), 0);

	spec.tied = false;
	spec.rope_freqs = false;
	m_plain = open_model(gen_model(&spec, "plain.gguf"));
	ck_assert(!m_plain->tied);
	/* theta_i is divided by the i-th factor */
	for (i = 0; i < m->hp.n_rot / 2; i++)
		ck_assert_float_eq_tol(m->rope_freq[i],
		    m_plain->rope_freq[i] / ff[i], 1e-6f * m_plain->rope_freq[i]);
	V = m->hp.n_vocab;
	gen_ids(ids, 12, (uint32_t)V, 3);
	a = eval_all(m, ids, 12, 12);
	for (i = 0; i < 12 * V; i++)
		ck_assert_msg(isfinite(a[i]), "logit %zu", i);
	free(a);
	model_free(m);
	model_free(m_plain);
}
END_TEST

/* ---- limits ------------------------------------------------------------ */

START_TEST(test_context_full)
{
	struct eng_err err = { "" };
	struct mkm_spec spec;
	struct model *m;
	struct fwd *f;
	struct fwd_kv *kv;
	int32_t ids[8] = { 1, 5, 6, 7, 8, 9, 10, 11 };

	gen_spec(&spec, "llama", KERN_TYPE_F32);
	m = open_model(gen_model(&spec, "ctx.gguf"));
	ck_assert_int_eq(fwd_new(m, 4, 8, 1, &f), 0);
	ck_assert_int_eq(fwd_kv_new(m, 8, &kv), 0);
	ck_assert_int_eq(fwd_eval(f, kv, ids, 6, false, &err), 0);
	ck_assert_uint_eq(kv->n_past, 6);
	ck_assert_int_eq(fwd_eval(f, kv, ids, 3, false, &err), -ENOSPC);
	ck_assert_ptr_nonnull(strstr(err.msg, "context full"));
	ck_assert_uint_eq(kv->n_past, 6);	/* unchanged */
	ck_assert_int_eq(fwd_eval(f, kv, ids, 2, false, &err), 0);
	ck_assert_uint_eq(kv->n_past, 8);
	fwd_kv_truncate(kv, 2);
	ck_assert_uint_eq(kv->n_past, 2);
	ck_assert_int_eq(fwd_eval(f, kv, ids, 0, false, &err), -EINVAL);
	fwd_kv_free(kv);
	fwd_free(f);
	ck_assert_int_eq(fwd_new(m, 0, 8, 1, &f), -EINVAL);
	ck_assert_int_eq(fwd_kv_new(m, 0, &kv), -EINVAL);
	model_free(m);
}
END_TEST

START_TEST(test_token_range)
{
	struct eng_err err = { "" };
	struct mkm_spec spec;
	struct model *m;
	struct fwd *f;
	struct fwd_kv *kv;
	int32_t bad[3] = { 1, -1, 2 }, big[2] = { 1, 0 };

	gen_spec(&spec, "qwen2", KERN_TYPE_F32);
	m = open_model(gen_model(&spec, "range.gguf"));
	big[1] = (int32_t)m->hp.n_vocab;
	ck_assert_int_eq(fwd_new(m, 4, 16, 1, &f), 0);
	ck_assert_int_eq(fwd_kv_new(m, 16, &kv), 0);
	ck_assert_int_eq(fwd_eval(f, kv, bad, 3, false, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "out of range"));
	ck_assert_int_eq(fwd_eval(f, kv, big, 2, false, &err), -EINVAL);
	ck_assert_uint_eq(kv->n_past, 0);
	fwd_kv_free(kv);
	fwd_free(f);
	model_free(m);
}
END_TEST

/* ---- errors: broken models --------------------------------------------- */

/*
 * Copy src to dst through the reader and writer, changing one thing:
 * drop tensor `drop`, rename the architecture, or retype/reshape tensor
 * `alter`.
 */
struct rewrite {
	const char	*drop;		/* tensor to leave out */
	const char	*arch;		/* new general.architecture */
	const char	*alter;		/* tensor to reshape (swap ne0/ne1) */
	const char	*drop_key;	/* metadata key to leave out */
};

static void
rewrite_model(const char *src, const char *dst, const struct rewrite *rw)
{
	struct eng_err err = { "" };
	struct gguf *g;
	struct gguf_writer *w;
	uint64_t i;

	ck_assert_int_eq(gguf_open(src, &g, &err), 0);
	ck_assert_int_eq(gguf_writer_new(&w), 0);
	for (i = 0; i < g->n_kv; i++) {
		if (rw->drop_key && strcmp(g->kv[i].key.s, rw->drop_key) == 0)
			continue;
		ck_assert_int_eq(gguf_writer_copy_kv(w, &g->kv[i]), 0);
	}
	if (rw->arch != NULL)
		ck_assert_int_eq(gguf_writer_set_str(w, "general.architecture",
		    rw->arch), 0);
	for (i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		uint64_t ne[GGUF_MAX_DIMS];
		void *buf;

		if (rw->drop && strcmp(t->name.s, rw->drop) == 0)
			continue;
		memcpy(ne, t->ne, sizeof(ne));
		if (rw->alter && strcmp(t->name.s, rw->alter) == 0 &&
		    t->n_dims == 2) {
			ne[0] = t->ne[1];
			ne[1] = t->ne[0];
		}
		buf = malloc(t->nbytes);
		ck_assert_ptr_nonnull(buf);
		ck_assert_int_eq(gguf_read_tensor(g, t, buf, t->nbytes, &err),
		    0);
		ck_assert_int_eq(gguf_writer_add_tensor(w, t->name.s,
		    t->n_dims, ne, t->type, buf, t->nbytes), 0);
		free(buf);
	}
	ck_assert_int_eq(gguf_writer_to_file(w, dst, &err), 0);
	gguf_writer_free(w);
	gguf_close(g);
}

static const struct bad_case {
	struct rewrite	 rw;
	int		 code;
	const char	*msg;	/* substring of the error */
} bad_cases[] = {
	{ { .arch = "gptneox" }, -ENOTSUP, "unknown architecture 'gptneox'" },
	{ { .drop = "blk.1.ffn_down.weight" }, -EINVAL,
	    "missing tensor 'blk.1.ffn_down.weight'" },
	{ { .drop = "output_norm.weight" }, -EINVAL,
	    "missing tensor 'output_norm.weight'" },
	{ { .drop = "blk.0.attn_k.bias" }, -EINVAL,
	    "missing tensor 'blk.0.attn_k.bias'" },
	{ { .alter = "blk.0.attn_k.weight" }, -EINVAL,
	    "tensor 'blk.0.attn_k.weight': shape" },
	{ { .drop_key = "qwen2.block_count" }, -EINVAL,
	    "missing key 'qwen2.block_count'" },
	{ { .drop_key = "qwen2.attention.layer_norm_rms_epsilon" }, -EINVAL,
	    "layer_norm_rms_epsilon" },
	{ { .drop_key = "tokenizer.ggml.tokens" }, -EINVAL, "" },
};
#define N_BAD_CASES (sizeof(bad_cases) / sizeof(bad_cases[0]))

START_TEST(test_bad_model)
{
	const struct bad_case *bc = &bad_cases[_i];
	struct eng_err err = { "" };
	struct mkm_spec spec;
	struct model *m = (struct model *)0x1;	/* must stay untouched */
	char src[4096];
	const char *dst;
	int r;

	gen_spec(&spec, "qwen2", KERN_TYPE_Q8_0);
	snprintf(src, sizeof(src), "%s", gen_model(&spec, "good.gguf"));
	dst = tu_tmpfile("bad.gguf");
	rewrite_model(src, dst, &bc->rw);
	r = model_open(dst, NULL, NULL, &m, &err);
	fprintf(stderr, "bad model %zu: %d %s\n", (size_t)_i, r, err.msg);
	ck_assert_int_eq(r, bc->code);
	ck_assert_msg(strstr(err.msg, bc->msg) != NULL, "message '%s' lacks "
	    "'%s'", err.msg, bc->msg);
	ck_assert_ptr_eq(m, (struct model *)0x1);
}
END_TEST

START_TEST(test_unsupported_type)
{
	struct eng_err err = { "" };
	struct gguf_writer *w;
	struct mkm_spec spec;
	struct gguf *g;
	struct model *m = NULL;
	const char *dst;
	uint64_t i;
	char src[4096];

	/* retype one matrix to q5_k (same bytes per 256 as nothing we know:
	 * rebuild its data at the q5_k size) */
	gen_spec(&spec, "llama", KERN_TYPE_F32);
	snprintf(src, sizeof(src), "%s", gen_model(&spec, "f32.gguf"));
	ck_assert_int_eq(gguf_open(src, &g, &err), 0);
	ck_assert_int_eq(gguf_writer_new(&w), 0);
	for (i = 0; i < g->n_kv; i++)
		ck_assert_int_eq(gguf_writer_copy_kv(w, &g->kv[i]), 0);
	for (i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		uint32_t type = t->type;
		uint64_t nb = t->nbytes;
		void *buf;

		if (strcmp(t->name.s, "blk.0.ffn_up.weight") == 0) {
			type = 13;	/* q5_k */
			nb = gguf_type_nbytes(type, t->nelems);
			ck_assert_uint_gt(nb, 0);
		}
		buf = calloc(1, t->nbytes > nb ? t->nbytes : nb);
		ck_assert_ptr_nonnull(buf);
		if (type == t->type)
			ck_assert_int_eq(gguf_read_tensor(g, t, buf, nb, &err),
			    0);
		ck_assert_int_eq(gguf_writer_add_tensor(w, t->name.s,
		    t->n_dims, t->ne, type, buf, nb), 0);
		free(buf);
	}
	dst = tu_tmpfile("q5k.gguf");
	ck_assert_int_eq(gguf_writer_to_file(w, dst, &err), 0);
	gguf_writer_free(w);
	gguf_close(g);
	ck_assert_int_eq(model_open(dst, NULL, NULL, &m, &err), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err.msg, "blk.0.ffn_up.weight"));
	ck_assert_ptr_nonnull(strstr(err.msg, "q5_k"));
	ck_assert_ptr_null(m);
}
END_TEST

START_TEST(test_missing_file)
{
	struct eng_err err = { "" };
	struct model *m = NULL;

	ck_assert_int_eq(model_open(tu_tmpfile("nope.gguf"), NULL, NULL, &m,
	    &err), -ENOENT);
	ck_assert_ptr_null(m);
	ck_assert(err.msg[0] != '\0');
}
END_TEST

static int
cancel_half(uint64_t done, uint64_t total, void *arg)
{
	(void)arg;
	return done * 2 >= total;
}

START_TEST(test_load_cancel)
{
	struct eng_err err = { "" };
	struct mkm_spec spec;
	struct model *m = NULL;

	gen_spec(&spec, "llama", KERN_TYPE_Q4_0);
	ck_assert_int_eq(model_open(gen_model(&spec, "c.gguf"), cancel_half,
	    NULL, &m, &err), -ECANCELED);
	ck_assert_ptr_null(m);
}
END_TEST

static Suite *
model_suite(void)
{
	Suite *s = suite_create("model");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_set_timeout(core, 600);
	tcase_add_test(core, test_aidreams_echoes);
	tcase_add_loop_test(core, test_ref_logits, 0, N_REF_CASES);
	tcase_add_loop_test(core, test_gen_batch_invariance, 0, N_GEN_CASES);
	tcase_add_test(core, test_gen_quant_twin);
	tcase_add_loop_test(core, test_gen_multi_seq, 0, 4);
	tcase_add_loop_test(core, test_ref_logits_kvq8, 0, N_KVQ8_CASES);
	tcase_add_loop_test(core, test_gen_kvq8_chunking, 0, 3);
	tcase_add_test(core, test_gen_tied_rope_freqs);
	tcase_add_test(limits, test_context_full);
	tcase_add_test(limits, test_token_range);
	tcase_add_test(limits, test_batch_errors);
	tcase_set_timeout(errors, 120);
	tcase_add_loop_test(errors, test_bad_model, 0, N_BAD_CASES);
	tcase_add_test(errors, test_unsupported_type);
	tcase_add_test(errors, test_kv_type_refused);
	tcase_add_test(errors, test_missing_file);
	tcase_add_test(errors, test_load_cancel);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(model_suite());
	int failed;

	tu_tmpdir();	/* made once, shared by the forked tests */
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	tu_tmpdir_free();
	return failed != 0;
}
