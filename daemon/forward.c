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
    uint32_t n_logits_max, struct fwd **out)
{
	const struct model_hparams *hp = &m->hp;
	size_t q_dim = (size_t)hp->n_head * hp->head_dim;
	size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
	struct fwd *f;

	if (n_batch == 0 || n_batch > FWD_MAX_BATCH || n_ctx == 0 ||
	    n_ctx > FWD_MAX_CTX || n_logits_max == 0 ||
	    n_logits_max > n_batch)
		return -EINVAL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return -ENOMEM;
	f->m = m;
	f->n_batch = n_batch;
	f->n_ctx = n_ctx;
	f->n_logits_max = n_logits_max;
	f->x = malloc((size_t)n_batch * hp->n_embd * sizeof(float));
	f->xb = malloc((size_t)n_batch * hp->n_embd * sizeof(float));
	f->q = malloc((size_t)n_batch * q_dim * sizeof(float));
	f->k = malloc((size_t)n_batch * kv_dim * sizeof(float));
	f->v = malloc((size_t)n_batch * kv_dim * sizeof(float));
	f->att_out = malloc((size_t)n_batch * q_dim * sizeof(float));
	f->att = malloc((size_t)n_ctx * sizeof(float));
	f->hb = malloc((size_t)n_batch * hp->n_ff * sizeof(float));
	f->hb2 = malloc((size_t)n_batch * hp->n_ff * sizeof(float));
	/* quantized activations are never larger than float32 ones */
	f->xq = malloc((size_t)n_batch * fwd_max_cols(hp) * sizeof(float));
	f->row_pos = malloc((size_t)n_batch * sizeof(*f->row_pos));
	f->row_out = malloc((size_t)n_logits_max * sizeof(*f->row_out));
	f->logits = malloc((size_t)n_logits_max * hp->n_vocab * sizeof(float));
	if (f->x == NULL || f->xb == NULL || f->q == NULL || f->k == NULL ||
	    f->v == NULL || f->att_out == NULL || f->att == NULL ||
	    f->hb == NULL || f->hb2 == NULL || f->xq == NULL ||
	    f->row_pos == NULL || f->row_out == NULL || f->logits == NULL) {
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
	free(f->xq);
	free(f->row_pos);
	free(f->row_out);
	free(f->logits);
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
 * Causal attention of the n new queries of one sequence (batch rows r0 ..
 * r0+n-1) against layer l of its cache, which already holds their own
 * keys and values.   q: [rows][n_head*head_dim] -> att_out: same shape
 */
static void
fwd_attention(struct fwd *f, const struct fwd_kv *kv, uint32_t l,
    size_t r0, size_t n)
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

	for (i = r0; i < r0 + n; i++) {
		size_t pos = (size_t)f->row_pos[i];	/* attends to 0..pos */

		for (h = 0; h < hp->n_head; h++) {
			const float *q = f->q + i * q_dim + h * hd;
			float *o = f->att_out + i * q_dim + h * hd;
			size_t kvh = (h / group) * hd;	/* shared kv head */

			/* scores against every key up to its own */
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

/*
 * The forward pass over a checked batch of n rows (the tokens of all
 * sequences, each sequence's rows contiguous and in order).
 */
static void
fwd_forward(struct fwd *f, struct fwd_seq *seqs, size_t n_seqs, size_t n)
{
	const struct model *m = f->m;
	const struct model_hparams *hp = &m->hp;
	const size_t dim = hp->n_embd;
	const size_t q_dim = (size_t)hp->n_head * hp->head_dim;
	const size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
	const size_t emb_row = kern_row_bytes(m->tok_embd.type, dim);
	size_t i, j, s, r, n_out;
	uint32_t l;

	/* x[r] = the embedding row of the token of batch row r */
	for (s = 0, r = 0; s < n_seqs; s++) {
		for (j = 0; j < seqs[s].n; j++, r++) {
			kern_dequant_row_ref(m->tok_embd.type,
			    (const uint8_t *)m->tok_embd.data +
			    (size_t)seqs[s].tokens[j] * emb_row,
			    f->x + r * dim, dim);
			f->row_pos[r] = (int32_t)(seqs[s].kv->n_past + j);
		}
	}

	for (l = 0; l < hp->n_layer; l++) {
		const struct model_layer *L = &m->layers[l];

		/* attention block: pre-norm */
		for (r = 0; r < n; r++)
			kern_rmsnorm_ref(f->xb + r * dim, f->x + r * dim,
			    L->attn_norm, dim, hp->rms_eps);

		/* projections: q [n][q_dim], k and v [n][kv_dim] */
		fwd_matmul(f, &L->wq, f->xb, n, f->q);
		fwd_matmul(f, &L->wk, f->xb, n, f->k);
		fwd_matmul(f, &L->wv, f->xb, n, f->v);
		fwd_add_bias(f->q, L->bq, n, q_dim);
		fwd_add_bias(f->k, L->bk, n, kv_dim);
		fwd_add_bias(f->v, L->bv, n, kv_dim);

		/* rotate queries and keys by their absolute positions */
		for (r = 0; r < n; r++) {
			kern_rope_ref(f->q + r * q_dim, hp->n_head,
			    hp->head_dim, hp->n_rot, f->row_pos[r],
			    m->rope_freq, hp->rope_neox);
			kern_rope_ref(f->k + r * kv_dim, hp->n_head_kv,
			    hp->head_dim, hp->n_rot, f->row_pos[r],
			    m->rope_freq, hp->rope_neox);
		}

		/* per sequence: append to its cache (fp16, as llama.cpp
		 * keeps it), then attend */
		for (s = 0, r = 0; s < n_seqs; r += seqs[s].n, s++) {
			struct fwd_kv *kv = seqs[s].kv;
			size_t base = ((size_t)l * kv->n_ctx + kv->n_past) *
			    kv_dim;

			for (i = 0; i < seqs[s].n * kv_dim; i++) {
				kv->k[base + i] =
				    kern_fp32_to_fp16(f->k[r * kv_dim + i]);
				kv->v[base + i] =
				    kern_fp32_to_fp16(f->v[r * kv_dim + i]);
			}
			fwd_attention(f, kv, l, r, seqs[s].n);
		}

		/* output projection and residual: x += Wo att_out */
		fwd_matmul(f, &L->wo, f->att_out, n, f->xb);
		kern_add_ref(f->x, f->xb, n * dim);

		/* feed-forward block (SwiGLU): pre-norm */
		for (r = 0; r < n; r++)
			kern_rmsnorm_ref(f->xb + r * dim, f->x + r * dim,
			    L->ffn_norm, dim, hp->rms_eps);
		fwd_matmul(f, &L->w_gate, f->xb, n, f->hb);
		fwd_matmul(f, &L->w_up, f->xb, n, f->hb2);
		kern_silu_mul_ref(f->hb, f->hb2, n * hp->n_ff);
		fwd_matmul(f, &L->w_down, f->hb, n, f->xb);
		kern_add_ref(f->x, f->xb, n * dim);
	}

	/* final norm of the rows that need logits or embeddings */
	n_out = 0;
	for (s = 0, r = 0; s < n_seqs; r += seqs[s].n, s++) {
		seqs[s].logits_row = (uint32_t)n_out;
		for (j = 0; j < seqs[s].n; j++) {
			bool out = seqs[s].all_logits || j + 1 == seqs[s].n;

			if (!out && seqs[s].embd == NULL)
				continue;
			kern_rmsnorm_ref(f->xb + n_out * dim,
			    f->x + (r + j) * dim, m->output_norm, dim,
			    hp->rms_eps);
			if (seqs[s].embd != NULL)
				kern_add_ref(seqs[s].embd, f->xb + n_out * dim,
				    dim);
			if (out)
				n_out++;
		}
	}
	/* the vocabulary projection: logits [n_out][n_vocab] */
	fwd_matmul(f, &m->output, f->xb, n_out, f->logits);
	f->n_logits = (uint32_t)n_out;

	for (s = 0; s < n_seqs; s++)
		seqs[s].kv->n_past += seqs[s].n;
}

int
fwd_eval_batch(struct fwd *f, struct fwd_seq *seqs, size_t n_seqs,
    struct eng_err *err)
{
	const struct model_hparams *hp = &f->m->hp;
	size_t s, t, i, n = 0, n_out = 0;

	if (n_seqs == 0)
		return err_set(err, -EINVAL, "empty batch");
	for (s = 0; s < n_seqs; s++) {
		const struct fwd_seq *q = &seqs[s];
		const struct fwd_kv *kv = q->kv;

		if (q->n == 0 || q->tokens == NULL || kv == NULL)
			return err_set(err, -EINVAL,
			    "sequence %zu: no tokens to evaluate", s);
		if (kv->n_layer != hp->n_layer ||
		    kv->kv_dim != hp->n_head_kv * hp->head_dim)
			return err_set(err, -EINVAL,
			    "sequence %zu: cache belongs to another model", s);
		for (t = 0; t < s; t++)
			if (seqs[t].kv == kv)
				return err_set(err, -EINVAL,
				    "sequence %zu: cache used twice", s);
		if (q->n > kv->n_ctx - kv->n_past ||
		    kv->n_past + q->n > f->n_ctx)
			return err_set(err, -ENOSPC, "context full: %u "
			    "positions used, %u more, room for %u",
			    kv->n_past, q->n,
			    kv->n_ctx < f->n_ctx ? kv->n_ctx : f->n_ctx);
		for (i = 0; i < q->n; i++)
			if (q->tokens[i] < 0 ||
			    (uint32_t)q->tokens[i] >= hp->n_vocab)
				return err_set(err, -EINVAL,
				    "token %d at %zu out of range "
				    "(vocabulary %u)", q->tokens[i], i,
				    hp->n_vocab);
		n += q->n;
		n_out += q->all_logits ? q->n : 1;
		if (n > f->n_batch || n_out > f->n_logits_max)
			return err_set(err, -E2BIG, "batch of more than %u "
			    "tokens or %u logits rows", f->n_batch,
			    f->n_logits_max);
	}
	fwd_forward(f, seqs, n_seqs, n);
	return 0;
}

int
fwd_eval(struct fwd *f, struct fwd_kv *kv, const int32_t *tokens, size_t n,
    bool all_logits, struct eng_err *err)
{
	struct fwd_seq seq;
	size_t done, c;
	int r;

	if (n == 0)
		return err_set(err, -EINVAL, "no tokens to evaluate");
	if (n > kv->n_ctx - kv->n_past || kv->n_past + n > f->n_ctx)
		return err_set(err, -ENOSPC,
		    "context full: %u positions used, %zu more, room for %u",
		    kv->n_past, n, kv->n_ctx < f->n_ctx ? kv->n_ctx : f->n_ctx);
	if (all_logits && (n > f->n_batch || n > f->n_logits_max))
		return err_set(err, -E2BIG, "%zu tokens: more logits rows "
		    "than %u", n, f->n_logits_max);
	for (done = 0; done < n; done += c) {
		c = n - done < f->n_batch ? n - done : f->n_batch;
		memset(&seq, 0, sizeof(seq));
		seq.kv = kv;
		seq.tokens = tokens + done;
		seq.n = (uint32_t)c;
		seq.all_logits = all_logits;
		if ((r = fwd_eval_batch(f, &seq, 1, err)) < 0)
			return r;	/* only the first chunk can fail */
	}
	return 0;
}
