/*
 * mkmodel_lib.h - write a GGUF model of architecture llama or qwen2 at any
 * shape, with seeded random weights in any supported type, quantized by
 * the project's own quantizers. Used by the tests and tests/mkmodel.
 */
#ifndef HEARTH_MKMODEL_LIB_H
#define HEARTH_MKMODEL_LIB_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct mkm_spec {
	const char	*arch;		/* "llama" or "qwen2" */
	const char	*name;		/* general.name, may be NULL */
	uint32_t	 n_embd;	/* model dim */
	uint32_t	 n_ff;		/* feed-forward dim */
	uint32_t	 n_layer;
	uint32_t	 n_head;
	uint32_t	 n_head_kv;
	uint32_t	 n_ctx;		/* context_length */
	float		 rms_eps;
	float		 rope_base;
	uint32_t	 wtype;		/* GGML type of the 2-D weight matrices */
	uint32_t	 embd_type;	/* token_embd.weight type */
	uint32_t	 out_type;	/* output.weight type */
	bool		 tied;		/* no output.weight: use token_embd */
	bool		 rope_freqs;	/* write a rope_freqs.weight tensor */
	/*
	 * With wtype Q4_K: store attn_v and ffn_down of the layers that
	 * llama.cpp's Q4_K_M gives more bits in Q6_K, as llama-quantize
	 * does (default false).
	 */
	bool		 mix_q6_k;
	uint64_t	 seed;
	/*
	 * Copy every tokenizer.* key from this GGUF (NULL: synthesize a
	 * SentencePiece vocabulary of n_vocab tokens: <unk> <s> </s>, the
	 * 256 byte tokens, then letters and pairs).
	 */
	const char	*vocab_from;
	uint32_t	 n_vocab;	/* used when vocab_from is NULL */
};

/*
 * Defaults: llama, 64 dim, 128 ff, 2 layers, 4 heads, 2 kv heads, context
 * 512, eps 1e-5, rope base 10000, f32, seed 1, a synthesized vocabulary
 * of 512. Weights come from a generator per tensor seeded by seed and the
 * tensor name, so the same seed and shape give the same underlying floats
 * in every type (quantized twins), tied or not.
 */
void mkm_spec_default(struct mkm_spec *s);
/* Write the model to path. 0 or a negative errno with a message. */
int  mkm_write(const struct mkm_spec *s, const char *path,
	    struct eng_err *err);

#endif /* HEARTH_MKMODEL_LIB_H */
