/*
 * model.c - hyperparameters and weights of llama and qwen2 models.
 *
 * Loading is two passes over the tensor infos: the first checks every
 * tensor the architecture needs (present, supported type, shape) and adds
 * up the memory; the second copies the data into one allocation. Nothing
 * is allocated between the passes that depends on unchecked values.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model.h"
#include "pool.h"

#define MODEL_ALIGN		64	/* every tensor starts on a cache line */
#define MODEL_MAX_LAYERS	1024
#define MODEL_MAX_DIM		(1u << 20)
#define MODEL_MAX_HEADS		1024

/* What one tensor of the architecture should look like. */
struct model_want {
	const char	*name;
	uint32_t	 ne0;		/* GGUF ne[0] (input features / length) */
	uint32_t	 ne1;		/* GGUF ne[1] (rows), 0 for 1-D */
	bool		 optional;
	/* where it goes: exactly one is set */
	struct model_weight	*w;
	const float		**f;
	/* filled by the first pass */
	const struct gguf_tensor *t;
	size_t			 off;	/* into model->mem */
	size_t			 size;	/* bytes there */
	bool			 pack;	/* repacked for the kernels */
};

const char *
model_arch_name(enum model_arch arch)
{
	switch (arch) {
	case MODEL_ARCH_LLAMA:
		return "llama";
	case MODEL_ARCH_QWEN2:
		return "qwen2";
	}
	return "?";
}

static int
model_get_u32(const struct gguf *g, const char *arch, const char *suffix,
    bool required, uint32_t def, uint32_t *out, struct eng_err *err)
{
	char key[128];
	int r;

	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	r = gguf_get_u32(g, key, out);
	if (r == -ENOENT && !required) {
		*out = def;
		return 0;
	}
	if (r == -ENOENT)
		return err_set(err, -EINVAL, "missing key '%s'", key);
	if (r < 0)
		return err_set(err, -EINVAL, "key '%s': not a uint32", key);
	return 0;
}

static int
model_get_f32(const struct gguf *g, const char *arch, const char *suffix,
    bool required, float def, float *out, struct eng_err *err)
{
	char key[128];
	int r;

	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	r = gguf_get_f32(g, key, out);
	if (r == -ENOENT && !required) {
		*out = def;
		return 0;
	}
	if (r == -ENOENT)
		return err_set(err, -EINVAL, "missing key '%s'", key);
	if (r < 0 || !isfinite(*out))
		return err_set(err, -EINVAL, "key '%s': not a finite float", key);
	return 0;
}

/* Read and check the hyperparameters; hp is written only on success. */
static int
model_load_hparams(const struct gguf *g, struct model_hparams *out,
    struct eng_err *err)
{
	struct model_hparams hp;
	const struct gguf_str *s;
	const char *a;
	uint32_t key_len, val_len;
	float factor;
	int r;

	memset(&hp, 0, sizeof(hp));
	r = gguf_get_str(g, "general.architecture", &s);
	if (r == -ENOENT)
		return err_set(err, -EINVAL, "missing key 'general.architecture'");
	if (r < 0)
		return err_set(err, -EINVAL, "general.architecture is not a string");
	if (strcmp(s->s, "llama") == 0)
		hp.arch = MODEL_ARCH_LLAMA;
	else if (strcmp(s->s, "qwen2") == 0)
		hp.arch = MODEL_ARCH_QWEN2;
	else
		return err_set(err, -ENOTSUP,
		    "unknown architecture '%.64s' (supported: llama, qwen2)",
		    s->s);
	a = model_arch_name(hp.arch);
	hp.rope_neox = hp.arch == MODEL_ARCH_QWEN2;

	if ((r = model_get_u32(g, a, "context_length", true, 0,
	    &hp.n_ctx_train, err)) < 0 ||
	    (r = model_get_u32(g, a, "embedding_length", true, 0,
	    &hp.n_embd, err)) < 0 ||
	    (r = model_get_u32(g, a, "block_count", true, 0,
	    &hp.n_layer, err)) < 0 ||
	    (r = model_get_u32(g, a, "feed_forward_length", true, 0,
	    &hp.n_ff, err)) < 0 ||
	    (r = model_get_u32(g, a, "attention.head_count", true, 0,
	    &hp.n_head, err)) < 0)
		return r;
	if (hp.n_embd == 0 || hp.n_embd > MODEL_MAX_DIM)
		return err_set(err, -EINVAL, "embedding_length %u out of range",
		    hp.n_embd);
	if (hp.n_layer == 0 || hp.n_layer > MODEL_MAX_LAYERS)
		return err_set(err, -EINVAL, "block_count %u out of range",
		    hp.n_layer);
	if (hp.n_ff == 0 || hp.n_ff > MODEL_MAX_DIM)
		return err_set(err, -EINVAL, "feed_forward_length %u out of range",
		    hp.n_ff);
	if (hp.n_head == 0 || hp.n_head > MODEL_MAX_HEADS)
		return err_set(err, -EINVAL, "head_count %u out of range",
		    hp.n_head);
	if ((r = model_get_u32(g, a, "attention.head_count_kv", false,
	    hp.n_head, &hp.n_head_kv, err)) < 0)
		return r;
	if (hp.n_head_kv == 0 || hp.n_head_kv > hp.n_head ||
	    hp.n_head % hp.n_head_kv != 0)
		return err_set(err, -EINVAL,
		    "head_count_kv %u does not divide head_count %u",
		    hp.n_head_kv, hp.n_head);
	if (hp.n_ctx_train == 0)
		return err_set(err, -EINVAL, "context_length is 0");

	if (hp.n_embd % hp.n_head != 0)
		return err_set(err, -EINVAL,
		    "embedding_length %u not divisible by head_count %u",
		    hp.n_embd, hp.n_head);
	if ((r = model_get_u32(g, a, "attention.key_length", false,
	    hp.n_embd / hp.n_head, &key_len, err)) < 0 ||
	    (r = model_get_u32(g, a, "attention.value_length", false,
	    key_len, &val_len, err)) < 0)
		return r;
	if (key_len != val_len || key_len == 0 || key_len % 2 != 0 ||
	    key_len > MODEL_MAX_DIM / hp.n_head)
		return err_set(err, -EINVAL,
		    "attention key_length %u / value_length %u unsupported",
		    key_len, val_len);
	hp.head_dim = key_len;
	if ((r = model_get_u32(g, a, "rope.dimension_count", false,
	    hp.head_dim, &hp.n_rot, err)) < 0)
		return r;
	if (hp.n_rot == 0 || hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0)
		return err_set(err, -EINVAL,
		    "rope.dimension_count %u invalid for head dim %u",
		    hp.n_rot, hp.head_dim);

	if ((r = model_get_f32(g, a, "attention.layer_norm_rms_epsilon", true,
	    0, &hp.rms_eps, err)) < 0)
		return r;
	if (hp.rms_eps <= 0 || hp.rms_eps > 1)
		return err_set(err, -EINVAL, "rms epsilon %g out of range",
		    (double)hp.rms_eps);
	if ((r = model_get_f32(g, a, "rope.freq_base", false, 10000.0f,
	    &hp.rope_base, err)) < 0)
		return r;
	if (hp.rope_base <= 1)
		return err_set(err, -EINVAL, "rope.freq_base %g out of range",
		    (double)hp.rope_base);

	/* Rope scaling: none or linear; others are refused, not ignored. */
	hp.rope_freq_scale = 1.0f;
	{
		char key[128];

		snprintf(key, sizeof(key), "%s.rope.scaling.type", a);
		r = gguf_get_str(g, key, &s);
		if (r < 0 && r != -ENOENT)
			return err_set(err, -EINVAL, "'%s' is not a string", key);
		if (r == 0 && strcmp(s->s, "none") != 0 &&
		    strcmp(s->s, "linear") != 0)
			return err_set(err, -ENOTSUP,
			    "rope scaling '%.32s' is not supported", s->s);
		if (r == 0 && strcmp(s->s, "linear") == 0) {
			if ((r = model_get_f32(g, a, "rope.scaling.factor",
			    true, 1, &factor, err)) < 0)
				return r;
			if (factor < 1.0f || factor > 1024.0f)
				return err_set(err, -EINVAL,
				    "rope scaling factor %g out of range",
				    (double)factor);
			hp.rope_freq_scale = 1.0f / factor;
		}
	}
	*out = hp;
	return 0;
}

/* Check one wanted tensor against the file. */
static int
model_check_tensor(const struct gguf *g, struct model_want *w,
    struct eng_err *err)
{
	const struct gguf_tensor *t;

	t = gguf_find_tensor(g, w->name);
	if (t == NULL) {
		if (w->optional)
			return 0;
		return err_set(err, -EINVAL, "missing tensor '%s'", w->name);
	}
	if (w->ne1 == 0) {
		if (t->n_dims != 1 || t->ne[0] != w->ne0)
			return err_set(err, -EINVAL,
			    "tensor '%s': shape [%llu x %llu], want [%u]",
			    w->name, (unsigned long long)t->ne[0],
			    (unsigned long long)t->ne[1], w->ne0);
		if (t->type != KERN_TYPE_F32 && t->type != KERN_TYPE_F16 &&
		    t->type != KERN_TYPE_BF16)
			return err_set(err, -ENOTSUP,
			    "tensor '%s': type %s unsupported for a vector",
			    w->name, gguf_type_name(t->type) ?
			    gguf_type_name(t->type) : "?");
		w->size = (size_t)w->ne0 * sizeof(float);
	} else {
		if (t->n_dims != 2 || t->ne[0] != w->ne0 || t->ne[1] != w->ne1)
			return err_set(err, -EINVAL,
			    "tensor '%s': shape [%llu x %llu x %llu], want [%u x %u]",
			    w->name, (unsigned long long)t->ne[0],
			    (unsigned long long)t->ne[1],
			    (unsigned long long)t->ne[2], w->ne0, w->ne1);
		if (!kern_type_supported(t->type))
			return err_set(err, -ENOTSUP,
			    "tensor '%s': type %s is not supported (f32, f16, "
			    "bf16, q8_0, q4_0, q4_k, q6_k are)", w->name,
			    gguf_type_name(t->type) ?
			    gguf_type_name(t->type) : "?");
		if (kern_row_bytes(t->type, w->ne0) == 0)
			return err_set(err, -EINVAL,
			    "tensor '%s': row of %u not whole blocks",
			    w->name, w->ne0);
		w->size = kern_row_bytes(t->type, w->ne0) * (size_t)w->ne1;
		if (w->size != t->nbytes)
			return err_set(err, -EINVAL,
			    "tensor '%s': size mismatch", w->name);
	}
	w->t = t;
	return 0;
}

/* Read tensor t's bytes (bounds checked by model_check_tensor) into dst. */
static int
model_load_bytes(struct model *m, struct mem_loader *l,
    const struct gguf_tensor *t, void *dst, size_t size, struct eng_err *err)
{
	if (t->nbytes > size)
		return err_set(err, -EINVAL, "tensor '%s' too large", t->name.s);
	return mem_loader_read(l, m->gguf->data_offset + t->offset, dst,
	    t->nbytes, err);
}

/* Copy one checked tensor into the model's memory. */
static int
model_read_tensor(struct model *m, struct mem_loader *l, struct model_want *w,
    uint8_t *scratch, size_t scratch_size, struct eng_err *err)
{
	uint8_t *dst = (uint8_t *)m->mem + w->off;
	float *f;
	size_t i;
	int r;

	if (w->t == NULL)
		return 0;
	if (w->w != NULL) {
		w->w->type = w->t->type;
		w->w->cols = w->ne0;
		w->w->rows = w->ne1;
		w->w->layout = w->pack ? m->ops->layout : KERN_LAYOUT_ROWS;
		w->w->data = dst;
		if (!w->pack || m->ops->layout == KERN_LAYOUT_ROWS)
			return model_load_bytes(m, l, w->t, dst, w->size, err);
		/* read the GGUF rows once, keep them repacked */
		if (w->t->nbytes > scratch_size)
			return err_set(err, -EINVAL, "tensor '%s' too large",
			    w->name);
		r = model_load_bytes(m, l, w->t, scratch, scratch_size, err);
		if (r < 0)
			return r;
		m->ops->pack(w->t->type, scratch, w->ne1, w->ne0, dst);
		return 0;
	}
	/* 1-D: read the raw data, then widen to float32 in place. */
	if (w->t->nbytes > scratch_size)
		return err_set(err, -EINVAL, "tensor '%s' too large", w->name);
	r = model_load_bytes(m, l, w->t, scratch, scratch_size, err);
	if (r < 0)
		return r;
	f = (float *)dst;
	kern_dequant_row_ref(w->t->type, scratch, f, w->ne0);
	for (i = 0; i < w->ne0; i++)
		if (!isfinite(f[i]))
			return err_set(err, -EINVAL,
			    "tensor '%s': element %zu is not finite",
			    w->name, i);
	*w->f = f;
	return 0;
}

/* A KV cache type the attention reads for this head dim. */
static int
model_check_kv_type(const char *what, uint32_t type, uint32_t head_dim,
    struct eng_err *err)
{
	if (type != KERN_TYPE_F16 && type != KERN_TYPE_Q8_0)
		return err_set(err, -ENOTSUP, "KV cache type %s for %s is not "
		    "supported (f16, q8_0 are)", kern_type_name(type), what);
	if (!kern_kv_type_ok(type, head_dim))
		return err_set(err, -EINVAL, "KV cache type %s for %s needs a "
		    "head dim that is a multiple of %d; this model's is %u "
		    "(use f16)", kern_type_name(type), what, KERN_QK8_0,
		    head_dim);
	return 0;
}

void
model_load_opts_default(struct model_load_opts *o)
{
	memset(o, 0, sizeof(*o));
	mem_params_default(&o->mem);
	mem_params_default(&o->kv_mem);
	o->kv_type_k = KERN_TYPE_F16;
	o->kv_type_v = KERN_TYPE_F16;
	o->lock = true;
	o->direct = MEM_DIRECT_AUTO;
}

int
model_open(const char *path, model_progress_fn progress, void *arg,
    struct model **out, struct eng_err *err)
{
	return model_open_opts(path, NULL, progress, arg, out, err);
}

int
model_open_opts(const char *path, const struct model_load_opts *o,
    model_progress_fn progress, void *arg, struct model **out,
    struct eng_err *err)
{
	struct model_load_opts def;
	struct mem_load_opts lo;
	struct mem_loader *ldr = NULL;
	struct model *m = NULL;
	struct model_want *want = NULL;
	struct model_hparams *hp;
	const struct gguf_kv *tokens;
	const float *rope_ff = NULL;	/* [n_rot/2] frequency factors */
	uint8_t *scratch = NULL;
	size_t n_want = 0, max_want, i, off, scratch_size;
	uint32_t l, q_dim, kv_dim;
	int r;

	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	if ((m->path = strdup(path)) == NULL) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = gguf_open(path, &m->gguf, err)) < 0)
		goto fail;
	hp = &m->hp;
	if ((r = model_load_hparams(m->gguf, hp, err)) < 0)
		goto fail_path;
	if (o == NULL) {
		model_load_opts_default(&def);
		o = &def;
	}
	if ((r = model_check_kv_type("K", o->kv_type_k, hp->head_dim,
	    err)) < 0 || (r = model_check_kv_type("V", o->kv_type_v,
	    hp->head_dim, err)) < 0)
		goto fail_path;
	m->kv_type_k = o->kv_type_k;
	m->kv_type_v = o->kv_type_v;
	if ((r = tok_new(m->gguf, &m->tok, err)) < 0)
		goto fail_path;

	/* The vocabulary decides n_vocab; token_embd must agree. */
	if (gguf_get_arr(m->gguf, "tokenizer.ggml.tokens", GGUF_VTYPE_STRING,
	    &tokens) < 0 || tokens->v.arr.n == 0 ||
	    tokens->v.arr.n > MODEL_MAX_DIM) {
		r = err_set(err, -EINVAL, "bad tokenizer.ggml.tokens");
		goto fail_path;
	}
	hp->n_vocab = (uint32_t)tokens->v.arr.n;

	m->layers = calloc(hp->n_layer, sizeof(*m->layers));
	max_want = 4 + (size_t)hp->n_layer * 12;
	want = calloc(max_want, sizeof(*want));
	m->rope_freq = calloc(hp->n_rot / 2, sizeof(float));
	if (m->layers == NULL || want == NULL || m->rope_freq == NULL) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}

	q_dim = hp->n_head * hp->head_dim;
	kv_dim = hp->n_head_kv * hp->head_dim;
#define WANT_W(nm, c, rw, dst) do { \
	want[n_want].name = (nm); want[n_want].ne0 = (c); \
	want[n_want].ne1 = (rw); want[n_want].w = (dst); n_want++; } while (0)
#define WANT_F(nm, n, dst, opt) do { \
	want[n_want].name = (nm); want[n_want].ne0 = (n); \
	want[n_want].f = (dst); want[n_want].optional = (opt); n_want++; } while (0)

	WANT_W(strdup("token_embd.weight"), hp->n_embd, hp->n_vocab,
	    &m->tok_embd);
	WANT_F(strdup("output_norm.weight"), hp->n_embd, &m->output_norm,
	    false);
	WANT_W(strdup("output.weight"), hp->n_embd, hp->n_vocab, &m->output);
	want[n_want - 1].optional = true;
	for (l = 0; l < hp->n_layer; l++) {
		struct model_layer *L = &m->layers[l];
		bool bias = hp->arch == MODEL_ARCH_QWEN2;
		char nm[96];

#define NAME(s) (snprintf(nm, sizeof(nm), "blk.%u.%s", l, (s)), strdup(nm))
		WANT_F(NAME("attn_norm.weight"), hp->n_embd, &L->attn_norm,
		    false);
		WANT_W(NAME("attn_q.weight"), hp->n_embd, q_dim, &L->wq);
		WANT_W(NAME("attn_k.weight"), hp->n_embd, kv_dim, &L->wk);
		WANT_W(NAME("attn_v.weight"), hp->n_embd, kv_dim, &L->wv);
		WANT_W(NAME("attn_output.weight"), q_dim, hp->n_embd, &L->wo);
		/* qwen2 has Q/K/V biases; llama files may have them too */
		WANT_F(NAME("attn_q.bias"), q_dim, &L->bq, !bias);
		WANT_F(NAME("attn_k.bias"), kv_dim, &L->bk, !bias);
		WANT_F(NAME("attn_v.bias"), kv_dim, &L->bv, !bias);
		WANT_F(NAME("ffn_norm.weight"), hp->n_embd, &L->ffn_norm,
		    false);
		WANT_W(NAME("ffn_gate.weight"), hp->n_embd, hp->n_ff,
		    &L->w_gate);
		WANT_W(NAME("ffn_up.weight"), hp->n_embd, hp->n_ff, &L->w_up);
		WANT_W(NAME("ffn_down.weight"), hp->n_ff, hp->n_embd,
		    &L->w_down);
#undef NAME
	}
	WANT_F(strdup("rope_freqs.weight"), hp->n_rot / 2, &rope_ff, true);
#undef WANT_W
#undef WANT_F

	/* Pass 1: check everything, lay out memory. */
	for (i = 0; i < n_want; i++) {
		if (want[i].name == NULL) {
			r = err_set(err, -ENOMEM, "out of memory");
			goto fail;
		}
		if ((r = model_check_tensor(m->gguf, &want[i], err)) < 0)
			goto fail_path;
	}
	/* want[0] is token_embd, want[2] output: tied when it is absent */
	m->ops = kern_ops();
	off = 0;
	scratch_size = 0;
	for (i = 0; i < n_want; i++) {
		if (want[i].t == NULL)
			continue;
		want[i].pack = want[i].w != NULL &&
		    (i != 0 || want[2].t == NULL);
		if (want[i].pack && m->ops->layout != KERN_LAYOUT_ROWS) {
			want[i].size = m->ops->pack_size(want[i].t->type,
			    want[i].ne1, want[i].ne0);
			if (want[i].size == 0) {
				r = err_set(err, -EINVAL, "tensor '%s': "
				    "cannot be repacked", want[i].name);
				goto fail_path;
			}
			if (want[i].t->nbytes > scratch_size)
				scratch_size = want[i].t->nbytes;
		}
		if (want[i].size > SIZE_MAX - off - MODEL_ALIGN) {
			r = err_set(err, -ENOMEM, "weights too large");
			goto fail_path;
		}
		want[i].off = off;
		off += (want[i].size + MODEL_ALIGN - 1) & ~(size_t)(MODEL_ALIGN - 1);
		if (want[i].f != NULL && want[i].t->nbytes > scratch_size)
			scratch_size = want[i].t->nbytes;
		m->n_params += want[i].t->nelems;
	}
	m->mem_size = off;
	/* anonymous memory of our own: a file changed on disk cannot fault */
	if ((r = mem_region_new(off ? off : MODEL_ALIGN, &o->mem, NULL,
	    &m->weights, err)) < 0) {
		err_prefix(err, r, "weights (%zu bytes)", off);
		goto fail;
	}
	m->mem = m->weights->addr;
	m->kv_mem = o->kv_mem;
	memset(&lo, 0, sizeof(lo));
	lo.direct = o->direct;
	lo.drop_cache = true;
	lo.cancel = o->cancel;
	for (i = 0; i < n_want; i++)
		if (want[i].t != NULL)
			lo.total += want[i].t->nbytes;
	lo.progress = progress;
	lo.arg = arg;
	if ((r = mem_loader_new(m->gguf->fd, &lo, &ldr, err)) < 0)
		goto fail_path;
	if ((scratch = malloc(scratch_size ? scratch_size : 1)) == NULL) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}

	/* Pass 2: copy (the loader reports progress and cancels). */
	for (i = 0; i < n_want; i++) {
		if ((r = model_read_tensor(m, ldr, &want[i], scratch,
		    scratch_size, err)) < 0) {
			if (r == -ECANCELED)
				goto fail;
			goto fail_path;
		}
	}
	mem_loader_free(ldr);
	ldr = NULL;
	m->lock_status = 1;
	if (o->lock)
		m->lock_status = mem_region_lock(m->weights, &m->lock_warn);
	if (m->output.data == NULL) {
		m->output = m->tok_embd;
		m->tied = true;
	}

	/* theta_i = pos * scale * base^(-2i/n_rot) / freq_factor_i */
	for (i = 0; i < hp->n_rot / 2; i++) {
		double f = pow((double)hp->rope_base,
		    -2.0 * (double)i / (double)hp->n_rot);

		f *= hp->rope_freq_scale;
		m->rope_freq[i] = (float)f;
	}
	for (i = 0; rope_ff != NULL && i < hp->n_rot / 2; i++) {
		if (!(rope_ff[i] > 0)) {
			r = err_set(err, -EINVAL,
			    "rope_freqs.weight[%zu] is not positive", i);
			goto fail_path;
		}
		m->rope_freq[i] /= rope_ff[i];
	}

	r = model_set_threads(m, 0);
	if (r < 0) {
		err_set(err, r, "cannot start worker threads");
		goto fail;
	}

	for (i = 0; i < n_want; i++)
		free((char *)want[i].name);
	free(want);
	free(scratch);
	*out = m;
	return 0;

fail_path:
	err_prefix(err, r, "%s", path);
fail:
	mem_loader_free(ldr);
	if (want != NULL) {
		for (i = 0; i < n_want; i++)
			free((char *)want[i].name);
		free(want);
	}
	free(scratch);
	model_free(m);
	return r;
}

/* $HEARTH_THREADS, or 0 (one per physical core). */
static uint32_t
model_default_threads(void)
{
	const char *s = getenv("HEARTH_THREADS");
	unsigned long v;
	char *end;

	if (s == NULL || *s == '\0')
		return 0;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || v > KERN_POOL_MAX_THREADS)
		return 0;
	return (uint32_t)v;
}

int
model_set_threads(struct model *m, uint32_t n_threads)
{
	struct kern_pool *p;
	int r;

	if (n_threads == 0)
		n_threads = model_default_threads();
	if ((r = kern_pool_new(n_threads, &p)) < 0)
		return r;
	return model_set_pool(m, p);
}

int
model_set_pool(struct model *m, struct kern_pool *pool)
{
	/* an open model always has a pool */
	if (pool == NULL)
		return -EINVAL;
	if (pool != m->pool) {
		kern_pool_free(m->pool);
		m->pool = pool;
	}
	return 0;
}

uint32_t
model_threads(const struct model *m)
{
	return kern_pool_threads(m->pool);
}

void
model_free(struct model *m)
{
	if (m == NULL)
		return;
	kern_pool_free(m->pool);
	mem_region_free(m->weights);
	free(m->layers);
	free(m->rope_freq);
	tok_free(m->tok);
	gguf_close(m->gguf);
	free(m->path);
	free(m);
}
