/*
 * model.h - hyperparameters and weights of a llama or qwen2 GGUF model.
 *
 * model_open() validates the metadata and every tensor the architecture
 * needs (name, type, shape), then copies the weights once into memory the
 * model owns; the file is not mapped and can change on disk afterwards.
 * 1-D tensors (norms, biases, rope frequency factors) are kept as float32.
 */
#ifndef HEARTH_MODEL_H
#define HEARTH_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"
#include "memory.h"
#include "tokenizer.h"

enum model_arch {
	MODEL_ARCH_LLAMA = 1,	/* Llama 2/3, TinyLlama, Mistral, R1-Distill-Llama */
	MODEL_ARCH_QWEN2 = 2,	/* Qwen2/2.5, R1-Distill-Qwen */
};

struct model_hparams {
	enum model_arch	 arch;
	uint32_t	 n_vocab;	/* rows of token_embd */
	uint32_t	 n_ctx_train;	/* <arch>.context_length */
	uint32_t	 n_embd;	/* model dim */
	uint32_t	 n_layer;
	uint32_t	 n_head;	/* query heads */
	uint32_t	 n_head_kv;	/* key/value heads (GQA when < n_head) */
	uint32_t	 head_dim;	/* <arch>.attention.key_length or n_embd/n_head */
	uint32_t	 n_ff;		/* feed-forward dim */
	uint32_t	 n_rot;		/* rotated dims per head (<= head_dim) */
	float		 rms_eps;
	float		 rope_base;	/* <arch>.rope.freq_base */
	float		 rope_freq_scale;	/* 1 / linear scaling factor */
	bool		 rope_neox;	/* pairs (i, i+n_rot/2) instead of (2i, 2i+1) */
};

/*
 * A weight matrix of rows x cols in its GGUF type (resident memory), in
 * the layout the model's kernels read: matrices the forward pass
 * multiplies with are repacked once at load (model->ops->pack); the
 * token embeddings, only looked up by row, keep the GGUF layout unless
 * the output shares them.
 */
struct model_weight {
	uint32_t	 type;		/* enum kern_type */
	uint32_t	 rows;		/* output features (GGUF ne[1]) */
	uint32_t	 cols;		/* input features (GGUF ne[0]) */
	uint32_t	 layout;	/* KERN_LAYOUT_ROWS: data is rows *
					 * kern_row_bytes(type, cols) bytes;
					 * else ops->layout, ops->pack_size */
	const void	*data;
};

struct kern_ops;
struct kern_pool;

struct model_layer {
	const float		*attn_norm;	/* [n_embd] */
	struct model_weight	 wq;		/* [n_head*head_dim] x [n_embd] */
	struct model_weight	 wk;		/* [n_head_kv*head_dim] x [n_embd] */
	struct model_weight	 wv;		/* [n_head_kv*head_dim] x [n_embd] */
	struct model_weight	 wo;		/* [n_embd] x [n_head*head_dim] */
	const float		*bq;		/* [n_head*head_dim] or NULL (qwen2) */
	const float		*bk;		/* [n_head_kv*head_dim] or NULL */
	const float		*bv;		/* [n_head_kv*head_dim] or NULL */
	const float		*ffn_norm;	/* [n_embd] */
	struct model_weight	 w_gate;	/* [n_ff] x [n_embd] */
	struct model_weight	 w_up;		/* [n_ff] x [n_embd] */
	struct model_weight	 w_down;	/* [n_embd] x [n_ff] */
};

struct model {
	char			*path;
	struct gguf		*gguf;		/* metadata (kept for show) */
	struct tok		*tok;
	struct model_hparams	 hp;
	struct model_weight	 tok_embd;	/* [n_vocab] x [n_embd] */
	const float		*output_norm;	/* [n_embd] */
	struct model_weight	 output;	/* [n_vocab] x [n_embd]; tok_embd if tied */
	bool			 tied;		/* output shares token_embd */
	float			*rope_freq;	/* [n_rot/2] theta_i per position */
	struct model_layer	*layers;	/* [n_layer] */
	void			*mem;		/* all weights: weights->addr */
	size_t			 mem_size;
	struct mem_region	*weights;	/* the anonymous memory of mem,
						 * with the pages it got */
	int			 lock_status;	/* 0: weights mlocked; -errno
						 * with lock_warn; 1: not asked */
	struct eng_err		 lock_warn;	/* why mlock failed, how to
						 * raise RLIMIT_MEMLOCK */
	struct mem_params	 kv_mem;	/* how fwd_kv_new allocates */
	uint32_t		 kv_type_k;	/* KERN_TYPE_F16 or _Q8_0: the
						 * keys of fwd_kv_new's caches */
	uint32_t		 kv_type_v;	/* likewise the values */
	uint64_t		 n_params;	/* elements of all weights */
	const struct kern_ops	*ops;		/* the kernels (kern_ops() at
						 * load); weights are in their
						 * layout */
	struct kern_pool	*pool;		/* its worker threads */
};

/* Progress callback for loading: bytes copied so far of total. Return
 * nonzero to cancel (model_open then fails with -ECANCELED). */
typedef int (*model_progress_fn)(uint64_t done, uint64_t total, void *arg);

int  model_open(const char *path, model_progress_fn progress, void *arg,
	    struct model **out, struct eng_err *err);

/* How model_open_opts() allocates and reads the weights. */
struct model_load_opts {
	struct mem_params mem;		/* pages and NUMA policy of the
					 * weights (mem_params_default) */
	struct mem_params kv_mem;	/* the same for KV caches */
	uint32_t	 kv_type_k;	/* element type of cached keys:
					 * KERN_TYPE_F16 (default) or
					 * KERN_TYPE_Q8_0 (head dim a multiple
					 * of 32, else model_open fails) */
	uint32_t	 kv_type_v;	/* likewise the values */
	bool		 lock;		/* mlock the weights (true) */
	enum mem_direct	 direct;	/* O_DIRECT reads (AUTO) */
	const atomic_bool *cancel;	/* set: the load fails with
					 * -ECANCELED at the next read; NULL */
};

void model_load_opts_default(struct model_load_opts *o);
/* model_open with o (NULL: the defaults). */
int  model_open_opts(const char *path, const struct model_load_opts *o,
	    model_progress_fn progress, void *arg, struct model **out,
	    struct eng_err *err);
void model_free(struct model *m);	/* accepts NULL */

/*
 * The model's worker pool: model_open() starts $HEARTH_THREADS threads
 * (the caller of the forward pass included), or one per physical core.
 * model_set_threads() restarts it with n (0: the default); never while a
 * forward pass of the model runs. Returns 0 or -errno (the old pool then
 * stays).
 */
int      model_set_threads(struct model *m, uint32_t n_threads);
/*
 * Give m another worker pool (e.g. pinned to a placement's CPUs): m
 * takes pool over and frees its old one; never while a forward pass of
 * the model runs. 0, or -EINVAL when pool is NULL (m keeps its pool,
 * the caller keeps pool).
 */
int      model_set_pool(struct model *m, struct kern_pool *pool);
uint32_t model_threads(const struct model *m);

const char *model_arch_name(enum model_arch arch);

#endif /* HEARTH_MODEL_H */
