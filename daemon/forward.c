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
 *     append k, v to the cache (fp16, or Q8_0 blocks)
 *     att_out = softmax(q . K^T / sqrt(head_dim)) V    causal, GQA
 *     x += Wo att_out
 *     xb = rmsnorm(x) * ffn_norm
 *     x += W_down (silu(W_gate xb) * W_up xb)
 *   logits = W_out (rmsnorm(x) * output_norm)          last or every row
 *
 * Every buffer is allocated by fwd_new(); nothing here allocates. Each
 * output element is computed from its own row only, in a fixed order, so
 * a token's results do not depend on the chunk size.
 *
 * The arithmetic is the model's kernel set (model->ops: the scalar
 * references or SIMD kernels on repacked weights). One evaluation is one
 * run of the model's worker pool: every thread walks the steps above,
 * doing its share of each (rows of the batch for the per-row steps,
 * equal bytes of weights for the matrix products, equal numbers of keys
 * for attention) and meeting the others at a barrier where a step needs
 * another's results. Which thread computes an element never changes how.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "kernels.h"
#include "pool.h"

#define FWD_MAX_BATCH	4096
#define FWD_MAX_CTX	(1u << 20)

/* Bytes of one of K or V of a cache, rounded up to a cache line. */
static size_t
fwd_kv_half(const struct model *m, uint32_t n_ctx, uint32_t type)
{
	size_t row = kern_row_bytes(type, (size_t)m->hp.n_head_kv *
	    m->hp.head_dim);

	return (row * m->hp.n_layer * n_ctx + 63) & ~(size_t)63;
}

uint64_t
fwd_kv_bytes(const struct model *m, uint32_t n_ctx)
{
	return (uint64_t)fwd_kv_half(m, n_ctx, m->kv_type_k) +
	    fwd_kv_half(m, n_ctx, m->kv_type_v);
}

int
fwd_kv_new_types(const struct model *m, uint32_t n_ctx, uint32_t k_type,
    uint32_t v_type, struct fwd_kv **out)
{
	struct fwd_kv *kv;
	size_t kb;

	if (n_ctx == 0 || n_ctx > FWD_MAX_CTX ||
	    !kern_kv_type_ok(k_type, m->hp.head_dim) ||
	    !kern_kv_type_ok(v_type, m->hp.head_dim))
		return -EINVAL;
	if ((kv = calloc(1, sizeof(*kv))) == NULL)
		return -ENOMEM;
	kv->n_layer = m->hp.n_layer;
	kv->n_ctx = n_ctx;
	kv->kv_dim = m->hp.n_head_kv * m->hp.head_dim;
	kv->k_type = k_type;
	kv->v_type = v_type;
	kv->k_row = kern_row_bytes(k_type, kv->kv_dim);
	kv->v_row = kern_row_bytes(v_type, kv->kv_dim);
	kb = fwd_kv_half(m, n_ctx, k_type);
	/* one anonymous region: K, then V at a 64-byte boundary */
	if (mem_region_new(kb + fwd_kv_half(m, n_ctx, v_type), &m->kv_mem,
	    NULL, &kv->mem, NULL) < 0) {
		free(kv);
		return -ENOMEM;
	}
	kv->k = kv->mem->addr;
	kv->v = (uint8_t *)kv->mem->addr + kb;
	*out = kv;
	return 0;
}

int
fwd_kv_new(const struct model *m, uint32_t n_ctx, struct fwd_kv **out)
{
	return fwd_kv_new_types(m, n_ctx, m->kv_type_k, m->kv_type_v, out);
}

void
fwd_kv_free(struct fwd_kv *kv)
{
	if (kv == NULL)
		return;
	mem_region_free(kv->mem);
	free(kv);
}

void
fwd_kv_truncate(struct fwd_kv *kv, uint32_t n)
{
	if (n < kv->n_past)
		kv->n_past = n;
}

/* Bytes of the largest activation row any matrix product takes (64-byte
 * multiple, so rows stay aligned). */
static size_t
fwd_max_act_row(const struct model *m)
{
	const struct kern_ops *ops = m->ops;
	size_t b = ops->act_row_bytes(m->output.type, m->output.cols), c;
	uint32_t l;

	for (l = 0; l < m->hp.n_layer; l++) {
		const struct model_layer *L = &m->layers[l];
		const struct model_weight *w[] = { &L->wq, &L->wk, &L->wv,
		    &L->wo, &L->w_gate, &L->w_up, &L->w_down };
		size_t i;

		for (i = 0; i < sizeof(w) / sizeof(w[0]); i++)
			if ((c = ops->act_row_bytes(w[i]->type, w[i]->cols)) >
			    b)
				b = c;
	}
	return (b + 63) & ~(size_t)63;
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
	f->n_att = model_threads(m);
	f->att = malloc((size_t)f->n_att * n_ctx * sizeof(float));
	if (kern_kv_type_ok(KERN_TYPE_Q8_0, hp->head_dim)) {
		f->att_qq_row = (kern_row_bytes(KERN_TYPE_Q8_0, hp->head_dim) *
		    hp->n_head + 63) & ~(size_t)63;
		f->att_qq = aligned_alloc(64, f->n_att * f->att_qq_row);
		if (f->att_qq == NULL) {
			fwd_free(f);
			return -ENOMEM;
		}
	}
	f->hb = malloc((size_t)n_batch * hp->n_ff * sizeof(float));
	f->hb2 = malloc((size_t)n_batch * hp->n_ff * sizeof(float));
	f->xq_row = fwd_max_act_row(m);
	f->xq = aligned_alloc(64, (size_t)n_batch * f->xq_row);
	f->row_pos = malloc((size_t)n_batch * sizeof(*f->row_pos));
	f->row_seq = malloc((size_t)n_batch * sizeof(*f->row_seq));
	f->row_out = malloc((size_t)n_logits_max * sizeof(*f->row_out));
	f->logits = malloc((size_t)n_logits_max * hp->n_vocab * sizeof(float));
	if (f->x == NULL || f->xb == NULL || f->q == NULL || f->k == NULL ||
	    f->v == NULL || f->att_out == NULL || f->att == NULL ||
	    f->hb == NULL || f->hb2 == NULL || f->xq == NULL ||
	    f->row_pos == NULL || f->row_seq == NULL || f->row_out == NULL ||
	    f->logits == NULL) {
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
	free(f->att_qq);
	free(f->hb);
	free(f->hb2);
	free(f->xq);
	free(f->row_pos);
	free(f->row_seq);
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

/* What every thread of one evaluation shares. */
struct fwd_ctx {
	struct fwd	*f;
	struct fwd_seq	*seqs;
	size_t		 n_seqs;
	size_t		 n;		/* rows of the batch */
	size_t		 n_out;		/* rows of logits */
};

/* One matrix product of a group that shares its input rows. */
struct fwd_mmi {
	const struct model_weight *w;
	float		*y;		/* [n][w->rows] */
	const float	*bias;		/* [w->rows] or NULL */
	bool		 add;		/* y += W x */
};

/* Thread ith's rows of n: [*a, *b). */
static void
fwd_split(size_t n, uint32_t ith, uint32_t nth, size_t *a, size_t *b)
{
	*a = n * ith / nth;
	*b = n * (ith + 1) / nth;
}

static size_t
fwd_weight_bytes(const struct kern_ops *ops, const struct model_weight *w)
{
	if (w->layout == KERN_LAYOUT_ROWS)
		return kern_row_bytes(w->type, w->cols) * w->rows;
	return ops->pack_size(w->type, w->rows, w->cols);
}

/*
 * Thread ith's share of the products of a group whose activations are
 * in f->xq: the weights are cut into units of row_align rows, and the
 * thread takes the units that start in its 1/nth of the group's bytes.
 */
static void
fwd_mm_part(struct fwd *f, const struct fwd_mmi *it, size_t n_it, size_t n,
    uint32_t ith, uint32_t nth)
{
	const struct kern_ops *ops = f->m->ops;
	size_t total = 0, start = 0, lo, hi, i;

	for (i = 0; i < n_it; i++)
		total += fwd_weight_bytes(ops, it[i].w);
	/* total < 2^48 (model sizes) and nth <= 256: no overflow */
	lo = (size_t)((uint64_t)total * ith / nth);
	hi = (size_t)((uint64_t)total * (ith + 1) / nth);
	for (i = 0; i < n_it; i++) {
		const struct model_weight *w = it[i].w;
		size_t bytes = fwd_weight_bytes(ops, w);
		size_t align = ops->row_align;
		size_t units = (w->rows + align - 1) / align;
		size_t ub = bytes / units, u0, u1;
		struct kern_mm mm;

		u0 = lo <= start ? 0 : (lo - start + ub - 1) / ub;
		u1 = hi <= start ? 0 : (hi - start + ub - 1) / ub;
		if (u0 > units)
			u0 = units;
		if (u1 > units)
			u1 = units;
		start += bytes;
		if (u0 >= u1)
			continue;
		mm.type = w->type;
		/* the thread's own NUMA node's copy of the weights (replicate) */
		mm.w = (const void *)((uintptr_t)w->data +
		    (uintptr_t)kern_pool_offset(f->m->pool, ith));
		mm.rows = w->rows;
		mm.cols = w->cols;
		mm.xq = f->xq;
		mm.n_x = n;
		mm.y = it[i].y;
		mm.ldy = w->rows;
		mm.bias = it[i].bias;
		mm.add = it[i].add;
		ops->matmul(&mm, u0 * align,
		    u1 * align < w->rows ? u1 * align : w->rows);
	}
}

/*
 * y_i = W_i x for a group of products over the same n input rows x
 * ([n][cols]): the activations are put in the form the weight type
 * multiplies with (8-bit blocks for quantized weights, as llama.cpp
 * does; see kernels/act.c), each thread its own rows, then each thread
 * computes its share of the products. Ends at a barrier: the outputs are
 * complete for everyone.
 */
static void
fwd_mm_group(struct fwd *f, const float *x, size_t n,
    const struct fwd_mmi *it, size_t n_it, uint32_t ith, uint32_t nth)
{
	const struct kern_ops *ops = f->m->ops;
	struct kern_pool *pool = f->m->pool;
	size_t i, j, r, ra, rb, stride;
	bool done[8] = { false };

	fwd_split(n, ith, nth, &ra, &rb);
	/* one pass per form of the activations (usually one) */
	for (i = 0; i < n_it; i++) {
		struct fwd_mmi sub[8];
		size_t n_sub = 0;
		const struct model_weight *w = it[i].w;

		if (done[i])
			continue;
		for (j = i; j < n_it; j++) {
			if (!done[j] && ops->act_same(w->type, it[j].w->type)) {
				sub[n_sub++] = it[j];
				done[j] = true;
			}
		}
		stride = ops->act_row_bytes(w->type, w->cols);
		for (r = ra; r < rb; r++)
			ops->quantize_act(w->type, x + r * w->cols,
			    (uint8_t *)f->xq + r * stride, w->cols);
		kern_pool_barrier(pool);
		fwd_mm_part(f, sub, n_sub, n, ith, nth);
		kern_pool_barrier(pool);
	}
}

/*
 * Causal attention of every row against layer l of its sequence's
 * cache, which already holds the rows' own keys and values. The units
 * are (row, head); a row at position p costs p + 1 keys, and thread ith
 * takes the units that start in its 1/nth of the total cost (threads
 * past f->n_att, when the pool grew after fwd_new(), have no scratch
 * row and sit out). Adjacent heads sharing a kv head go together, and
 * so do a sequence's consecutive rows whose heads are all this
 * thread's (a prompt's rows: the kernel widens each block of the cache
 * once for all of them).
 *   q: [rows][n_head*head_dim] -> att_out: same shape
 */
static void
fwd_attention(struct fwd_ctx *c, uint32_t l, uint32_t ith, uint32_t nth)
{
	struct fwd *f = c->f;
	const struct model_hparams *hp = &f->m->hp;
	const size_t hd = hp->head_dim;
	const size_t q_dim = (size_t)hp->n_head * hd;
	const uint32_t group = hp->n_head / hp->n_head_kv;
	uint64_t total = 0, lo, hi, at = 0;
	size_t r, re;
	uint32_t nt = nth < f->n_att ? nth : f->n_att;
	struct kern_attn a;

	if (ith >= nt)
		return;
	for (r = 0; r < c->n; r++)
		total += ((uint64_t)f->row_pos[r] + 1) * hp->n_head;
	lo = total * ith / nt;
	hi = total * (ith + 1) / nt;
	a.hd = hd;
	a.scale = 1.0f / sqrtf((float)hd);
	a.scratch = f->att + (size_t)ith * f->n_ctx;
	a.qq = f->att_qq == NULL ? NULL :
	    (uint8_t *)f->att_qq + (size_t)ith * f->att_qq_row;
	a.row_stride = q_dim;
	for (r = 0; r < c->n && at < hi; r = re) {
		const struct fwd_kv *kv = c->seqs[f->row_seq[r]].kv;
		uint64_t cost = (uint64_t)f->row_pos[r] + 1;
		uint32_t h0, h1, h, e;

		re = r + 1;
		if (at + cost * hp->n_head <= lo) {
			at += cost * hp->n_head;
			continue;
		}
		/* heads h with lo <= at + h*cost < hi */
		h0 = lo <= at ? 0 : (uint32_t)((lo - at + cost - 1) / cost);
		h1 = hi <= at ? 0 : (uint32_t)((hi - at + cost - 1) / cost);
		if (h1 > hp->n_head)
			h1 = hp->n_head;
		at += cost * hp->n_head;
		/* the next rows of the sequence, while all their heads are
		 * this thread's */
		if (h0 == 0 && h1 == hp->n_head)
			while (re < c->n && f->row_seq[re] == f->row_seq[r] &&
			    at + ((uint64_t)f->row_pos[re] + 1) *
			    (hp->n_head - 1) < hi) {
				at += ((uint64_t)f->row_pos[re] + 1) *
				    hp->n_head;
				re++;
			}
		for (h = h0; h < h1; h = e) {
			size_t kvh = h / group;

			e = (uint32_t)(kvh + 1) * group;
			if (e > h1)
				e = h1;
			a.q = f->q + r * q_dim + h * hd;
			a.o = f->att_out + r * q_dim + h * hd;
			a.n_q = e - h;
			a.n_rows = re - r;
			a.k = (const uint8_t *)kv->k + (size_t)l *
			    kv->n_ctx * kv->k_row +
			    kern_row_bytes(kv->k_type, kvh * hd);
			a.v = (const uint8_t *)kv->v + (size_t)l *
			    kv->n_ctx * kv->v_row +
			    kern_row_bytes(kv->v_type, kvh * hd);
			a.k_type = kv->k_type;
			a.v_type = kv->v_type;
			a.stride = kv->kv_dim;
			a.n_keys = cost;
			f->m->ops->attend(&a);
		}
	}
}

/* One position's keys or values (n floats) into a cache row of type. */
static void
fwd_kv_store(const struct kern_ops *ops, uint32_t type, void *dst,
    const float *src, size_t n)
{
	if (type == KERN_TYPE_Q8_0)
		kern_quantize_act_ref(KERN_TYPE_Q8_0, src, dst, n);
	else
		ops->to_fp16(dst, src, n);
}

/* The final norm of the rows that need logits or embeddings (thread 0;
 * the rows are packed into xb in order). */
static void
fwd_final_norm(struct fwd_ctx *c)
{
	struct fwd *f = c->f;
	const struct model *m = f->m;
	const size_t dim = m->hp.n_embd;
	size_t s, r, j, n_out = 0;

	for (s = 0, r = 0; s < c->n_seqs; r += c->seqs[s].n, s++) {
		for (j = 0; j < c->seqs[s].n; j++) {
			bool out = c->seqs[s].all_logits ||
			    j + 1 == c->seqs[s].n;

			if (!out && c->seqs[s].embd == NULL)
				continue;
			kern_rmsnorm_ref(f->xb + n_out * dim,
			    f->x + (r + j) * dim, m->output_norm, dim,
			    m->hp.rms_eps);
			if (c->seqs[s].embd != NULL)
				kern_add_ref(c->seqs[s].embd,
				    f->xb + n_out * dim, dim);
			if (out)
				n_out++;
		}
	}
}

/*
 * The forward pass over a checked batch of n rows (the tokens of all
 * sequences, each sequence's rows contiguous and in order), as thread
 * ith of nth.
 */
static void
fwd_thread(void *arg, uint32_t ith, uint32_t nth)
{
	struct fwd_ctx *c = arg;
	struct fwd *f = c->f;
	const struct model *m = f->m;
	const struct model_hparams *hp = &m->hp;
	const struct kern_ops *ops = m->ops;
	struct kern_pool *pool = m->pool;
	const size_t dim = hp->n_embd;
	const size_t q_dim = (size_t)hp->n_head * hp->head_dim;
	const size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
	const size_t emb_row = kern_row_bytes(m->tok_embd.type, dim);
	size_t r, ra, rb;
	uint32_t l;

	fwd_split(c->n, ith, nth, &ra, &rb);

	/* x[r] = the embedding row of the token of batch row r */
	for (r = ra; r < rb; r++) {
		const struct fwd_seq *q = &c->seqs[f->row_seq[r]];
		int32_t tok = q->tokens[f->row_pos[r] - (int32_t)q->kv->n_past];

		if (m->tok_embd.layout == KERN_LAYOUT_ROWS)
			kern_dequant_row_ref(m->tok_embd.type,
			    (const uint8_t *)m->tok_embd.data +
			    (size_t)tok * emb_row, f->x + r * dim, dim);
		else
			ops->get_row(m->tok_embd.type, m->tok_embd.data,
			    m->tok_embd.rows, dim, (size_t)tok, f->x + r * dim);
	}

	for (l = 0; l < hp->n_layer; l++) {
		const struct model_layer *L = &m->layers[l];
		const struct fwd_mmi qkv[] = {
			{ &L->wq, f->q, L->bq, false },
			{ &L->wk, f->k, L->bk, false },
			{ &L->wv, f->v, L->bv, false },
		};
		const struct fwd_mmi wo[] = { { &L->wo, f->x, NULL, true } };
		const struct fwd_mmi gate_up[] = {
			{ &L->w_gate, f->hb, NULL, false },
			{ &L->w_up, f->hb2, NULL, false },
		};
		const struct fwd_mmi down[] = {
			{ &L->w_down, f->x, NULL, true },
		};

		/* attention block: pre-norm, then projections (+ biases):
		 * q [n][q_dim], k and v [n][kv_dim] */
		for (r = ra; r < rb; r++)
			kern_rmsnorm_ref(f->xb + r * dim, f->x + r * dim,
			    L->attn_norm, dim, hp->rms_eps);
		fwd_mm_group(f, f->xb, c->n, qkv, 3, ith, nth);

		/* rotate queries and keys by their absolute positions, and
		 * append keys and values to the caches (fp16 as llama.cpp
		 * keeps them by default, or Q8_0 blocks) */
		for (r = ra; r < rb; r++) {
			struct fwd_kv *kv = c->seqs[f->row_seq[r]].kv;
			size_t at = (size_t)l * kv->n_ctx +
			    (size_t)f->row_pos[r];

			kern_rope_ref(f->q + r * q_dim, hp->n_head,
			    hp->head_dim, hp->n_rot, f->row_pos[r],
			    m->rope_freq, hp->rope_neox);
			kern_rope_ref(f->k + r * kv_dim, hp->n_head_kv,
			    hp->head_dim, hp->n_rot, f->row_pos[r],
			    m->rope_freq, hp->rope_neox);
			fwd_kv_store(ops, kv->k_type, (uint8_t *)kv->k +
			    at * kv->k_row, f->k + r * kv_dim, kv_dim);
			fwd_kv_store(ops, kv->v_type, (uint8_t *)kv->v +
			    at * kv->v_row, f->v + r * kv_dim, kv_dim);
		}
		kern_pool_barrier(pool);
		fwd_attention(c, l, ith, nth);
		kern_pool_barrier(pool);

		/* output projection and residual: x += Wo att_out */
		fwd_mm_group(f, f->att_out, c->n, wo, 1, ith, nth);

		/* feed-forward block (SwiGLU): pre-norm, gate and up,
		 * silu(gate) * up, x += W_down of that */
		for (r = ra; r < rb; r++)
			kern_rmsnorm_ref(f->xb + r * dim, f->x + r * dim,
			    L->ffn_norm, dim, hp->rms_eps);
		fwd_mm_group(f, f->xb, c->n, gate_up, 2, ith, nth);
		for (r = ra; r < rb; r++)
			ops->silu_mul(f->hb + r * hp->n_ff,
			    f->hb2 + r * hp->n_ff, hp->n_ff);
		fwd_mm_group(f, f->hb, c->n, down, 1, ith, nth);
	}

	/* final norm, then the vocabulary projection: logits
	 * [n_out][n_vocab] */
	if (ith == 0)
		fwd_final_norm(c);
	kern_pool_barrier(pool);
	if (c->n_out > 0) {
		const struct fwd_mmi out[] = {
			{ &m->output, f->logits, NULL, false },
		};

		fwd_mm_group(f, f->xb, c->n_out, out, 1, ith, nth);
	}
}

/* Run a checked batch: lay out its rows, then one run of the pool. */
static void
fwd_forward(struct fwd *f, struct fwd_seq *seqs, size_t n_seqs, size_t n)
{
	struct fwd_ctx c;
	size_t s, j, r, n_out = 0;

	for (s = 0, r = 0; s < n_seqs; s++) {
		seqs[s].logits_row = (uint32_t)n_out;
		n_out += seqs[s].all_logits ? seqs[s].n : 1;
		for (j = 0; j < seqs[s].n; j++, r++) {
			f->row_pos[r] = (int32_t)(seqs[s].kv->n_past + j);
			f->row_seq[r] = (uint32_t)s;
		}
	}
	c.f = f;
	c.seqs = seqs;
	c.n_seqs = n_seqs;
	c.n = n;
	c.n_out = n_out;
	kern_pool_run(f->m->pool, fwd_thread, &c);
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
		if (kv->k_type == KERN_TYPE_Q8_0 && f->att_qq == NULL)
			return err_set(err, -EINVAL,
			    "sequence %zu: Q8_0 keys need a head dim that is "
			    "a multiple of 32", s);
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
