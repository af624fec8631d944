/*
 * forward.c - the forward pass, readable top to bottom.
 *
 * For a chunk of n tokens of one sequence at positions p0 .. p0+n-1:
 *
 *   x = embed(tokens)                                  [n][n_embd]
 *   for each layer:
 *     xb = rmsnorm(x) * attn_norm
 *     q = Wq xb + bq,  k = Wk xb + bk,  v = Wv xb + bv
 *     rotate q and k by their positions (rope)
 *     append k, v to the cache (fp16)
 *     att_out = softmax(q . K^T / sqrt(head_dim)) V    causal, GQA
 *     x += Wo att_out
 *     xb = rmsnorm(x) * ffn_norm
 *     x += W_down (silu(W_gate xb) * W_up xb)
 *   logits = W_out (rmsnorm(x) * output_norm)          last or every row
 *
 * Every buffer is allocated by fwd_new(); nothing here allocates. Each
 * output element is computed from its own row only, in a fixed order, so
 * a token's results do not depend on the chunk size.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "kernels.h"

#define FWD_MAX_BATCH	4096
#define FWD_MAX_CTX	(1u << 20)

int
fwd_kv_new(const struct model *m, uint32_t n_ctx, struct fwd_kv **out)
{
	struct fwd_kv *kv;
	size_t n;

	if (n_ctx == 0 || n_ctx > FWD_MAX_CTX)
		return -EINVAL;
	if ((kv = calloc(1, sizeof(*kv))) == NULL)
		return -ENOMEM;
	kv->n_layer = m->hp.n_layer;
	kv->n_ctx = n_ctx;
	kv->kv_dim = m->hp.n_head_kv * m->hp.head_dim;
	n = (size_t)kv->n_layer * n_ctx * kv->kv_dim;
	kv->k = malloc(n * sizeof(uint16_t));
	kv->v = malloc(n * sizeof(uint16_t));
	if (kv->k == NULL || kv->v == NULL) {
		fwd_kv_free(kv);
		return -ENOMEM;
	}
	*out = kv;
	return 0;
}

void
fwd_kv_free(struct fwd_kv *kv)
{
	if (kv == NULL)
		return;
	free(kv->k);
	free(kv->v);
	free(kv);
}

void
fwd_kv_truncate(struct fwd_kv *kv, uint32_t n)
{
	if (n < kv->n_past)
		kv->n_past = n;
}

/* The widest input of any matrix product. */
static size_t
fwd_max_cols(const struct model_hparams *hp)
{
	size_t c = hp->n_embd;

	if ((size_t)hp->n_head * hp->head_dim > c)
		c = (size_t)hp->n_head * hp->head_dim;
	if (hp->n_ff > c)
		c = hp->n_ff;
	return c;
}

int
fwd_new(const struct model *m, uint32_t n_batch, uint32_t n_ctx,
    bool all_logits, struct fwd **out)
{
	const struct model_hparams *hp = &m->hp;
	size_t q_dim = (size_t)hp->n_head * hp->head_dim;
	size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
	struct fwd *f;

	if (n_batch == 0 || n_batch > FWD_MAX_BATCH || n_ctx == 0 ||
	    n_ctx > FWD_MAX_CTX)
		return -EINVAL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return -ENOMEM;
	f->m = m;
	f->n_batch = n_batch;
	f->n_ctx = n_ctx;
	f->all_logits = all_logits;
	f->x = malloc((size_t)n_batch * hp->n_embd * sizeof(float));
	f->xb = malloc((size_t)n_batch * hp->n_embd * sizeof(float));
	f->q = malloc((size_t)n_batch * q_dim * sizeof(float));
	f->k = malloc((size_t)n_batch * kv_dim * sizeof(float));
	f->v = malloc((size_t)n_batch * kv_dim * sizeof(float));
	f->att_out = malloc((size_t)n_batch * q_dim * sizeof(float));
	f->att = malloc((size_t)n_ctx * sizeof(float));
	f->hb = malloc((size_t)n_batch * hp->n_ff * sizeof(float));
	f->hb2 = malloc((size_t)n_batch * hp->n_ff * sizeof(float));
	f->logits = malloc((size_t)(all_logits ? n_batch : 1) * hp->n_vocab *
	    sizeof(float));
	/* quantized activations are never larger than float32 ones */
	f->xq = malloc((size_t)n_batch * fwd_max_cols(hp) * sizeof(float));
	if (f->x == NULL || f->xb == NULL || f->q == NULL || f->k == NULL ||
	    f->v == NULL || f->att_out == NULL || f->att == NULL ||
	    f->hb == NULL || f->hb2 == NULL || f->logits == NULL ||
	    f->xq == NULL) {
		fwd_free(f);
		return -ENOMEM;
	}
	*out = f;
	return 0;
}

void
fwd_free(struct fwd *f)
{
	if (f == NULL)
		return;
	free(f->x);
	free(f->xb);
	free(f->q);
	free(f->k);
	free(f->v);
	free(f->att_out);
	free(f->att);
	free(f->hb);
	free(f->hb2);
	free(f->logits);
	free(f->xq);
	free(f);
}

const float *
fwd_logits(const struct fwd *f, uint32_t i)
{
	if (i >= f->n_logits)
		return NULL;
	return f->logits + (size_t)i * f->m->hp.n_vocab;
}

/* y[n][dim] += b[dim] for each of n rows. */
static void
fwd_add_bias(float *y, const float *b, size_t n, size_t dim)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < n; i++)
		kern_add_ref(y + i * dim, b, dim);
}

/*
 * y = W x for n rows of x: [n][w->cols] -> [n][w->rows]. The activations
 * are first put in the form the weight type multiplies with (8-bit
 * blocks for quantized weights, as llama.cpp does; see kernels/act.c).
 */
static void
fwd_matmul(struct fwd *f, const struct model_weight *w, const float *x,
    size_t n, float *y)
{
	size_t act = kern_act_row_bytes(w->type, w->cols);
	const void *xq = x;
	size_t i;

	if (kern_act_type(w->type) != KERN_TYPE_F32) {
		for (i = 0; i < n; i++)
			kern_quantize_act_ref(w->type, x + i * w->cols,
			    (uint8_t *)f->xq + i * act, w->cols);
		xq = f->xq;
	}
	kern_matmul_act_ref(w->type, w->data, w->rows, w->cols, xq, n, y);
}

/*
 * Causal attention of the n new queries against the cache of layer l,
 * which already holds their own keys and values.
 *   q: [n][n_head*head_dim]   out: [n][n_head*head_dim]
 */
static void
fwd_attention(struct fwd *f, const struct fwd_kv *kv, uint32_t l,
    uint32_t p0, size_t n)
{
	const struct model_hparams *hp = &f->m->hp;
	const size_t hd = hp->head_dim;
	const size_t q_dim = (size_t)hp->n_head * hd;
	const uint32_t group = hp->n_head / hp->n_head_kv;
	const float scale = 1.0f / sqrtf((float)hd);
	const uint16_t *kc = kv->k + (size_t)l * kv->n_ctx * kv->kv_dim;
	const uint16_t *vc = kv->v + (size_t)l * kv->n_ctx * kv->kv_dim;
	size_t i, t, d;
	uint32_t h;

	for (i = 0; i < n; i++) {
		uint32_t pos = p0 + (uint32_t)i;	/* attends to 0..pos */

		for (h = 0; h < hp->n_head; h++) {
			const float *q = f->q + i * q_dim + h * hd;
			float *o = f->att_out + i * q_dim + h * hd;
			size_t kvh = (h / group) * hd;	/* shared kv head */

			/* scores against every earlier key */
			for (t = 0; t <= pos; t++) {
				const uint16_t *k = kc + t * kv->kv_dim + kvh;
				float s = 0.0f;

				for (d = 0; d < hd; d++)
					s += q[d] * kern_fp16_to_fp32(k[d]);
				f->att[t] = s * scale;
			}
			kern_softmax_ref(f->att, pos + 1);
			/* weighted sum of values */
			memset(o, 0, hd * sizeof(float));
			for (t = 0; t <= pos; t++) {
				const uint16_t *v = vc + t * kv->kv_dim + kvh;
				float a = f->att[t];

				for (d = 0; d < hd; d++)
					o[d] += a * kern_fp16_to_fp32(v[d]);
			}
		}
	}
}

/* One chunk of at most n_batch tokens. */
static void
fwd_chunk(struct fwd *f, struct fwd_kv *kv, const int32_t *tokens, size_t n,
    bool keep_all)
{
	const struct model *m = f->m;
	const struct model_hparams *hp = &m->hp;
	const size_t dim = hp->n_embd;
	const size_t q_dim = (size_t)hp->n_head * hp->head_dim;
	const size_t kv_dim = kv->kv_dim;
	const size_t emb_row = kern_row_bytes(m->tok_embd.type, dim);
	const uint32_t p0 = kv->n_past;
	size_t i;
	uint32_t l;

	/* x[i] = the embedding row of token i */
	for (i = 0; i < n; i++)
		kern_dequant_row_ref(m->tok_embd.type,
		    (const uint8_t *)m->tok_embd.data +
		    (size_t)tokens[i] * emb_row, f->x + i * dim, dim);

	for (l = 0; l < hp->n_layer; l++) {
		const struct model_layer *L = &m->layers[l];
		uint16_t *kc = kv->k + ((size_t)l * kv->n_ctx + p0) * kv_dim;
		uint16_t *vc = kv->v + ((size_t)l * kv->n_ctx + p0) * kv_dim;

		/* attention block: pre-norm */
		for (i = 0; i < n; i++)
			kern_rmsnorm_ref(f->xb + i * dim, f->x + i * dim,
			    L->attn_norm, dim, hp->rms_eps);

		/* projections: q [n][q_dim], k and v [n][kv_dim] */
		fwd_matmul(f, &L->wq, f->xb, n, f->q);
		fwd_matmul(f, &L->wk, f->xb, n, f->k);
		fwd_matmul(f, &L->wv, f->xb, n, f->v);
		fwd_add_bias(f->q, L->bq, n, q_dim);
		fwd_add_bias(f->k, L->bk, n, kv_dim);
		fwd_add_bias(f->v, L->bv, n, kv_dim);

		/* rotate queries and keys by their absolute positions */
		for (i = 0; i < n; i++) {
			int32_t pos = (int32_t)(p0 + i);

			kern_rope_ref(f->q + i * q_dim, hp->n_head,
			    hp->head_dim, hp->n_rot, pos, m->rope_freq,
			    hp->rope_neox);
			kern_rope_ref(f->k + i * kv_dim, hp->n_head_kv,
			    hp->head_dim, hp->n_rot, pos, m->rope_freq,
			    hp->rope_neox);
		}

		/* append to the cache (as fp16, as llama.cpp keeps it), then
		 * attend */
		for (i = 0; i < n * kv_dim; i++) {
			kc[i] = kern_fp32_to_fp16(f->k[i]);
			vc[i] = kern_fp32_to_fp16(f->v[i]);
		}
		fwd_attention(f, kv, l, p0, n);

		/* output projection and residual: x += Wo att_out */
		fwd_matmul(f, &L->wo, f->att_out, n, f->xb);
		kern_add_ref(f->x, f->xb, n * dim);

		/* feed-forward block (SwiGLU): pre-norm */
		for (i = 0; i < n; i++)
			kern_rmsnorm_ref(f->xb + i * dim, f->x + i * dim,
			    L->ffn_norm, dim, hp->rms_eps);
		fwd_matmul(f, &L->w_gate, f->xb, n, f->hb);
		fwd_matmul(f, &L->w_up, f->xb, n, f->hb2);
		kern_silu_mul_ref(f->hb, f->hb2, n * hp->n_ff);
		fwd_matmul(f, &L->w_down, f->hb, n, f->xb);
		kern_add_ref(f->x, f->xb, n * dim);
	}

	/* final norm and the vocabulary projection */
	if (keep_all) {
		for (i = 0; i < n; i++)
			kern_rmsnorm_ref(f->xb + i * dim, f->x + i * dim,
			    m->output_norm, dim, hp->rms_eps);
		fwd_matmul(f, &m->output, f->xb, n, f->logits);
		f->n_logits = (uint32_t)n;
	} else {
		kern_rmsnorm_ref(f->xb, f->x + (n - 1) * dim, m->output_norm,
		    dim, hp->rms_eps);
		fwd_matmul(f, &m->output, f->xb, 1, f->logits);
		f->n_logits = 1;
	}
	kv->n_past = p0 + (uint32_t)n;
}

int
fwd_eval(struct fwd *f, struct fwd_kv *kv, const int32_t *tokens, size_t n,
    struct eng_err *err)
{
	const struct model_hparams *hp = &f->m->hp;
	size_t i, done, c;

	if (n == 0)
		return err_set(err, -EINVAL, "no tokens to evaluate");
	if (kv->n_layer != hp->n_layer ||
	    kv->kv_dim != hp->n_head_kv * hp->head_dim)
		return err_set(err, -EINVAL, "cache belongs to another model");
	if (n > kv->n_ctx - kv->n_past || kv->n_past + n > f->n_ctx)
		return err_set(err, -ENOSPC,
		    "context full: %u positions used, %zu more, room for %u",
		    kv->n_past, n, kv->n_ctx < f->n_ctx ? kv->n_ctx : f->n_ctx);
	for (i = 0; i < n; i++)
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp->n_vocab)
			return err_set(err, -EINVAL,
			    "token %d at %zu out of range (vocabulary %u)",
			    tokens[i], i, hp->n_vocab);
	for (done = 0; done < n; done += c) {
		c = n - done < f->n_batch ? n - done : f->n_batch;
		fwd_chunk(f, kv, tokens + done, c, f->all_logits);
	}
	return 0;
}
