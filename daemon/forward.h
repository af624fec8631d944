/*
 * forward.h - the transformer forward pass of llama and qwen2 models.
 *
 * A struct fwd holds the scratch buffers for one model and a maximum
 * batch, allocated once; fwd_eval() runs a chunk of tokens of one
 * sequence through the model, appending to its KV cache, and allocates
 * nothing. Results for a token do not depend on the chunk it came in.
 */
#ifndef HEARTH_FORWARD_H
#define HEARTH_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model.h"

/* One sequence's keys and values, stored as IEEE fp16 (as llama.cpp's
 * default cache: half the memory, and the same numbers). */
struct fwd_kv {
	uint32_t	 n_layer;
	uint32_t	 n_ctx;		/* positions it can hold */
	uint32_t	 kv_dim;	/* n_head_kv * head_dim */
	uint32_t	 n_past;	/* positions filled */
	uint16_t	*k;		/* [n_layer][n_ctx][kv_dim] fp16 */
	uint16_t	*v;		/* [n_layer][n_ctx][kv_dim] fp16 */
};

int  fwd_kv_new(const struct model *m, uint32_t n_ctx, struct fwd_kv **out);
void fwd_kv_free(struct fwd_kv *kv);	/* accepts NULL */
/* Forget positions from n on (n <= n_past), e.g. to reuse a prefix. */
void fwd_kv_truncate(struct fwd_kv *kv, uint32_t n);

struct fwd {
	const struct model *m;
	uint32_t	 n_batch;	/* tokens per chunk at most */
	uint32_t	 n_ctx;		/* longest sequence (attention scratch) */
	bool		 all_logits;	/* logits of every position kept */
	float		*x;		/* [n_batch][n_embd] residual stream */
	float		*xb;		/* [n_batch][n_embd] normed input */
	float		*q;		/* [n_batch][n_head*head_dim] queries */
	float		*k;		/* [n_batch][kv_dim] new keys */
	float		*v;		/* [n_batch][kv_dim] new values */
	float		*att_out;	/* [n_batch][n_head*head_dim] */
	float		*att;		/* [n_ctx] scores of one head */
	float		*hb;		/* [n_batch][n_ff] gate */
	float		*hb2;		/* [n_batch][n_ff] up */
	float		*logits;	/* [n_batch or 1][n_vocab] */
	void		*xq;		/* [n_batch] activation rows in the
					 * weight type's form (<= float32) */
	uint32_t	 n_logits;	/* rows of logits from the last eval */
};

/*
 * Scratch for chunks of up to n_batch tokens and sequences of up to n_ctx
 * positions. all_logits keeps the logits of every token of a chunk (for
 * scoring); otherwise only the last token's.
 */
int  fwd_new(const struct model *m, uint32_t n_batch, uint32_t n_ctx,
	    bool all_logits, struct fwd **out);
void fwd_free(struct fwd *f);	/* accepts NULL */

/*
 * Run n tokens at positions kv->n_past .. kv->n_past+n-1 and append them
 * to kv. Chunks longer than n_batch are split (with all_logits only the
 * last chunk's logits are kept). Errors: -EINVAL (token id out of range,
 * n == 0), -ENOSPC (context full); kv is unchanged on error.
 */
int  fwd_eval(struct fwd *f, struct fwd_kv *kv, const int32_t *tokens,
	    size_t n, struct eng_err *err);

/* Logits row i of the last eval: [n_vocab]; i < f->n_logits. With
 * all_logits, row i belongs to the i-th token of the last chunk. */
const float *fwd_logits(const struct fwd *f, uint32_t i);

#endif /* HEARTH_FORWARD_H */
