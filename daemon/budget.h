/*
 * budget.h - the memory budget for resident models: what a model costs
 * before it is loaded, and whether it can be admitted, after evicting
 * which idle models.
 *
 * Both are pure functions over plain numbers, with checked arithmetic
 * (a sum or product past 2^64 is -EOVERFLOW, never a wrapped value).
 * The registry keeps the state (which models are resident, their cost,
 * last use, pin and busy flags) and asks budget_admit() before loading.
 */
#ifndef HEARTH_BUDGET_H
#define HEARTH_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

#define BUDGET_MSG_MAX		320
#define BUDGET_DEFAULT_PCT	80	/* of RAM when the config says nothing */
#define BUDGET_ALIGN		64	/* model.c aligns every tensor to this */

/* Element type of the KV cache. */
enum budget_kv_type {
	BUDGET_KV_F16 = 0,	/* 2 bytes per element (default) */
	BUDGET_KV_Q8_0,		/* blocks of 32 elements in 34 bytes */
	BUDGET_KV_F32,		/* 4 bytes per element */
};

/* What decides a model's cost. */
struct budget_shape {
	uint64_t	 weight_bytes;	/* one copy of the weights as resident
					 * (repacked; the GGUF tensor bytes
					 * unless the kernels say otherwise) */
	uint32_t	 copies;	/* copies of the weights (NUMA replicate
					 * over N nodes: N); 0 counts as 1 */
	uint32_t	 n_layer;	/* layers with a KV cache */
	uint32_t	 n_embd_k;	/* K elements per position per layer
					 * (n_head_kv * head_dim) */
	uint32_t	 n_embd_v;	/* V elements per position per layer */
	uint32_t	 n_ctx;		/* positions per sequence */
	uint32_t	 n_parallel;	/* sequences (KV slots) */
	enum budget_kv_type kv_type;	/* element type of the cache */
	uint64_t	 scratch_bytes;	/* forward pass and sampler buffers */
	/* Filled by budget_shape_gguf() for budget_scratch_estimate(): */
	uint32_t	 n_embd;	/* model dim */
	uint32_t	 n_ff;		/* feed-forward dim */
	uint32_t	 n_head;	/* query heads */
	uint32_t	 head_dim;	/* per query head */
	uint32_t	 n_vocab;	/* rows of the output */
	uint32_t	 n_ctx_train;	/* the model's training context */
};

/* A model's memory, by use. */
struct budget_cost {
	uint64_t	 weights;	/* weight_bytes * copies */
	uint64_t	 kv;		/* K and V of every slot and layer */
	uint64_t	 scratch;
	uint64_t	 total;		/* the sum */
};

/* KV cache bytes; 0 or -EOVERFLOW / -EINVAL (bad type). */
int  budget_kv_bytes(uint32_t n_layer, uint32_t n_embd_k, uint32_t n_embd_v,
	    uint32_t n_ctx, uint32_t n_parallel, enum budget_kv_type type,
	    uint64_t *out);
/* The cost of a shape; 0 or -EOVERFLOW / -EINVAL. */
int  budget_cost(const struct budget_shape *s, struct budget_cost *out);
/*
 * Bytes a 2-D weight of a GGML type takes once repacked for the kernels
 * (kern_ops()->pack_size when its layout is not KERN_LAYOUT_ROWS); 0:
 * as in the GGUF.
 */
typedef uint64_t (*budget_pack_fn)(uint32_t type, uint64_t rows,
	    uint64_t cols, void *arg);

/*
 * Fill s's weight_bytes, n_layer, the KV and scratch dimensions from a
 * GGUF's metadata (gguf_open is enough: no tensor data is read). The
 * weights are counted as model.c keeps them: each tensor rounded up to
 * BUDGET_ALIGN, 1-D tensors widened to float32, 2-D tensors at pack()'s
 * size (pack NULL: the GGUF bytes) except token_embd.weight when an
 * output.weight exists (only looked up by row, never repacked). Leaves
 * n_ctx, n_parallel, kv_type, scratch_bytes and copies as they were.
 * -EINVAL naming a missing or bad key, -EOVERFLOW.
 */
int  budget_shape_gguf(const struct gguf *g, budget_pack_fn pack, void *arg,
	    struct budget_shape *s, struct eng_err *err);
/*
 * An estimate of the forward pass buffers for batches of n_batch tokens
 * (float32 activations of a batch through a layer, attention scores of
 * one head row over the context per token, logits of each sequence):
 *   4 * n_batch * (3 * n_embd + n_head * head_dim + n_embd_k + n_embd_v
 *                  + 2 * n_ff)
 * + 4 * n_batch * n_ctx            (scores)
 * + 4 * n_parallel * n_vocab       (logits and sampler)
 * Saturates at UINT64_MAX. Use the forward pass's own figure when it
 * has one.
 */
uint64_t budget_scratch_estimate(const struct budget_shape *s,
	    uint32_t n_batch);

/* A resident model, as the registry sees it. */
struct budget_model {
	const char	*name;		/* for messages */
	uint64_t	 bytes;		/* its cost (total) */
	uint64_t	 last_use;	/* any monotonic clock: smaller is older */
	bool		 pinned;	/* never evicted */
	bool		 busy;		/* requests queued or running, or
					 * loading: not evicted now */
};

enum budget_verdict {
	BUDGET_FITS = 0,	/* load it */
	BUDGET_EVICT,		/* unload evict[0..n_evict) first, then load */
	BUDGET_REFUSE,		/* cannot fit: message says why */
};

struct budget_decision {
	enum budget_verdict verdict;	/* what to do */
	size_t		 n_evict;	/* entries of the evict array used */
	uint64_t	 in_use;	/* bytes of all resident models */
	uint64_t	 held;		/* of those, pinned or busy */
	uint64_t	 freed;		/* bytes the evictions free */
	char		 message[BUDGET_MSG_MAX];	/* EVICT: what goes;
					 * REFUSE: the numbers; FITS: "" */
};

/*
 * Can a model named name costing need bytes be loaded next to the n
 * resident models res, within budget bytes and at most max_models
 * resident (0: no limit)? Evictions are idle, unpinned models, least
 * recently used first (ties: lower index); of those taken, any whose
 * eviction turns out unneeded (most recent first) is kept, so the set
 * is minimal. evict (room for n indices into res) receives them, oldest
 * first. 0 with the decision in *out, -EINVAL for bad arguments,
 * -EOVERFLOW when the resident models' bytes sum past 2^64.
 */
int  budget_admit(uint64_t budget, uint32_t max_models,
	    const struct budget_model *res, size_t n, const char *name,
	    uint64_t need, size_t *evict, struct budget_decision *out);

/* 80% of ram, without overflow. */
uint64_t budget_default(uint64_t ram);
/*
 * A budget from the config: "80%" (1..100 percent of ram) or a size as
 * units_parse_size reads it ("16G", "512MiB"), not 0. 0 or
 * -EINVAL/-ERANGE.
 */
int  budget_parse(const char *s, uint64_t ram, uint64_t *out);
/*
 * The RAM this process may use: MemTotal of /proc/meminfo, lowered to
 * its cgroup's memory limit (v2 memory.max, v1 memory.limit_in_bytes)
 * when one is set. 0 or -errno.
 */
int  budget_ram_total(uint64_t *out);
/* The same from given files (tests): cgroup may be NULL. */
int  budget_ram_from(const char *meminfo, const char *cgroup_limit,
	    uint64_t *out);

#endif /* HEARTH_BUDGET_H */
