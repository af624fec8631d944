/*
 * forward.h - the transformer forward pass of llama and qwen2 models.
 *
 * A struct fwd holds the scratch buffers for one model and a maximum
 * batch, allocated once; fwd_eval_batch() runs the new tokens of several
 * sequences through the model together, appending to their KV caches,
 * and allocates nothing. Results for a token do not depend on the batch
 * it came in (which other tokens or sequences).
 */
#ifndef HEARTH_FORWARD_H
#define HEARTH_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model.h"

/* One sequence's keys and values, stored as IEEE fp16 (as llama.cpp's
 * default cache: half the memory, and the same numbers) or as Q8_0
 * blocks (llama.cpp's --cache-type-k/-v q8_0: 34 bytes per 32 elements,
 * quantized as kern_quantize_act_ref does), keys and values each. */
struct fwd_kv {
	uint32_t	 n_layer;
	uint32_t	 n_ctx;		/* positions it can hold */
	uint32_t	 kv_dim;	/* n_head_kv * head_dim */
	uint32_t	 n_past;	/* positions filled */
	uint32_t	 k_type;	/* KERN_TYPE_F16 or KERN_TYPE_Q8_0 */
	uint32_t	 v_type;	/* likewise */
	size_t		 k_row;		/* bytes of one position's keys:
					 * kern_row_bytes(k_type, kv_dim) */
	size_t		 v_row;		/* likewise values */
	void		*k;		/* [n_layer][n_ctx][k_row] bytes */
	void		*v;		/* [n_layer][n_ctx][v_row] bytes */
	struct mem_region *mem;		/* k then v, as model->kv_mem says */
};

/* A cache of the model's KV types (model->kv_type_k, kv_type_v). */
int  fwd_kv_new(const struct model *m, uint32_t n_ctx, struct fwd_kv **out);
/* A cache with keys of k_type and values of v_type (KERN_TYPE_F16 or
 * KERN_TYPE_Q8_0; -EINVAL if the model's head dim cannot take them). */
int  fwd_kv_new_types(const struct model *m, uint32_t n_ctx,
	    uint32_t k_type, uint32_t v_type, struct fwd_kv **out);
/* Bytes fwd_kv_new allocates for one cache of n_ctx positions. */
uint64_t fwd_kv_bytes(const struct model *m, uint32_t n_ctx);
void fwd_kv_free(struct fwd_kv *kv);	/* accepts NULL */
/* Forget positions from n on (n <= n_past), e.g. to reuse a prefix. */
void fwd_kv_truncate(struct fwd_kv *kv, uint32_t n);

/*
 * One sequence's part of a batch: n tokens at positions kv->n_past ..
 * kv->n_past+n-1, appended to kv by the evaluation.
 */
struct fwd_seq {
	struct fwd_kv	*kv;		/* its cache; n_past advances by n */
	const int32_t	*tokens;	/* [n] token ids */
	uint32_t	 n;		/* >= 1 */
	bool		 all_logits;	/* logits of every token, else the last */
	float		*embd;		/* NULL, or [n_embd]: the final normed
					 * hidden states of the n tokens are
					 * added in (for mean-pooled embeddings) */
	uint32_t	 logits_row;	/* out: its first row in fwd_logits() */
};

struct fwd {
	const struct model *m;
	uint32_t	 n_batch;	/* tokens per evaluation at most */
	uint32_t	 n_ctx;		/* longest sequence (attention scratch) */
	uint32_t	 n_logits_max;	/* rows of logits per evaluation */
	float		*x;		/* [n_batch][n_embd] residual stream */
	float		*xb;		/* [n_batch][n_embd] normed input */
	float		*q;		/* [n_batch][n_head*head_dim] queries */
	float		*k;		/* [n_batch][kv_dim] new keys */
	float		*v;		/* [n_batch][kv_dim] new values */
	float		*att_out;	/* [n_batch][n_head*head_dim] */
	float		*att;		/* [n_att][n_ctx] scores of one head
					 * per thread (reference attention) */
	void		*att_qq;	/* [n_att][n_head][kern_row_bytes(
					 * Q8_0, head_dim)] queries quantized
					 * for Q8_0 keys; NULL when the head
					 * dim cannot take them */
	size_t		 att_qq_row;	/* bytes of one thread's att_qq */
	float		*hb;		/* [n_batch][n_ff] gate */
	float		*hb2;		/* [n_batch][n_ff] up */
	void		*xq;		/* [n_batch][xq_row] activation rows
					 * in the form the model's kernels
					 * multiply with (ops->quantize_act) */
	size_t		 xq_row;	/* bytes of one row of xq */
	uint32_t	 n_att;		/* threads with an att row */
	int32_t		*row_pos;	/* [n_batch] position of each row */
	uint32_t	*row_seq;	/* [n_batch] its sequence in the batch */
	uint32_t	*row_out;	/* [n_logits_max] rows that get logits */
	float		*logits;	/* [n_logits_max][n_vocab] */
	uint32_t	 n_logits;	/* rows of logits from the last eval */
};

/*
 * Scratch for batches of up to n_batch tokens (summed over sequences),
 * sequences of up to n_ctx positions, and n_logits_max rows of logits
 * per evaluation (>= 1).
 */
int  fwd_new(const struct model *m, uint32_t n_batch, uint32_t n_ctx,
	    uint32_t n_logits_max, struct fwd **out);
void fwd_free(struct fwd *f);	/* accepts NULL */

/*
 * Run a batch of sequences through the model in one pass over the
 * weights (continuous batching). The tokens of all sequences together
 * must fit n_batch and their logits rows n_logits_max (-E2BIG); each
 * sequence's kv must have room (-ENOSPC), appear once, and its tokens be
 * in the vocabulary (-EINVAL). Nothing changes on error. A sequence's
 * results do not depend on the others in the batch.
 */
int  fwd_eval_batch(struct fwd *f, struct fwd_seq *seqs, size_t n_seqs,
	    struct eng_err *err);

/*
 * One sequence, any length: split into batches of n_batch. With
 * all_logits, n must fit one batch and n_logits_max; otherwise row 0
 * holds the last token's logits.
 */
int  fwd_eval(struct fwd *f, struct fwd_kv *kv, const int32_t *tokens,
	    size_t n, bool all_logits, struct eng_err *err);

/* Logits row i of the last evaluation: [n_vocab]; NULL past n_logits. */
const float *fwd_logits(const struct fwd *f, uint32_t i);

#endif /* HEARTH_FORWARD_H */
