/*
 * kernels.h - weight types, block layouts and the numeric operations of
 * the forward pass.
 *
 * Every operation has a scalar reference (suffix _ref, kernels/ref.c) that
 * is the truth faster versions are tested against. Block layouts are
 * bit-exact with the GGUF files llama.cpp writes (type ids are GGML's).
 *
 * Conventions: a weight matrix of `rows` x `cols` is stored row-major as
 * `rows` rows of kern_row_bytes(type, cols) bytes each; cols must be a
 * multiple of the type's block size. Activations are float32.
 */
#ifndef HEARTH_KERNELS_H
#define HEARTH_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Weight types the engine computes with; values are GGML type ids. */
enum kern_type {
	KERN_TYPE_F32  = 0,
	KERN_TYPE_F16  = 1,
	KERN_TYPE_Q4_0 = 2,
	KERN_TYPE_Q8_0 = 8,
	KERN_TYPE_Q4_K = 12,
	KERN_TYPE_Q6_K = 14,
	KERN_TYPE_BF16 = 30,
};

#define KERN_QK4_0 32		/* elements per Q4_0 block */
#define KERN_QK8_0 32		/* elements per Q8_0 block */
#define KERN_QK_K  256		/* elements per K-quant super-block */
#define KERN_K_SCALE_SIZE 12	/* packed 6-bit scales/mins of Q4_K */

/* Q4_0: x = d * (q - 8), q in 0..15; element j in low nibble of qs[j],
 * element j+16 in high nibble of qs[j]. 18 bytes. */
struct kern_block_q4_0 {
	uint16_t d;			/* fp16 scale */
	uint8_t  qs[KERN_QK4_0 / 2];	/* 4-bit quants */
};

/* Q8_0: x = d * q. 34 bytes. */
struct kern_block_q8_0 {
	uint16_t d;			/* fp16 scale */
	int8_t   qs[KERN_QK8_0];	/* 8-bit quants */
};

/* Q4_K: 8 sub-blocks of 32, x = d*sc*q - dmin*m with 6-bit sc, m packed
 * in scales[12]. 144 bytes. */
struct kern_block_q4_k {
	uint16_t d;				/* fp16 super-scale of scales */
	uint16_t dmin;				/* fp16 super-scale of mins */
	uint8_t  scales[KERN_K_SCALE_SIZE];	/* 6-bit scales and mins */
	uint8_t  qs[KERN_QK_K / 2];		/* 4-bit quants */
};

/* Q6_K: 16 sub-blocks of 16, x = d * scales[i] * (q - 32), q 6-bit
 * split in low 4 bits (ql) and high 2 bits (qh). 210 bytes. */
struct kern_block_q6_k {
	uint8_t  ql[KERN_QK_K / 2];	/* low 4 bits of quants */
	uint8_t  qh[KERN_QK_K / 4];	/* high 2 bits of quants */
	int8_t   scales[KERN_QK_K / 16];	/* 8-bit sub-block scales */
	uint16_t d;			/* fp16 super-scale */
};

/* Q8_K: the 8-bit form activations take for K-quant weights (never a
 * weight type here): x = d * q, bsums[i] = sum of qs[16i .. 16i+15].
 * 292 bytes. */
#define KERN_TYPE_Q8_K 15
struct kern_block_q8_k {
	float	 d;			/* float32 scale */
	int8_t	 qs[KERN_QK_K];		/* 8-bit quants */
	int16_t	 bsums[KERN_QK_K / 16];	/* sums of 16 quants */
};

/* --- types ------------------------------------------------------------ */

/* True for the types above. */
bool kern_type_supported(uint32_t type);
/* "f32", "q4_k", ...; "?" for anything unsupported. */
const char *kern_type_name(uint32_t type);
/* Elements per block (1 for F32/F16/BF16); 0 if unsupported. */
size_t kern_type_block_elems(uint32_t type);
/* Bytes per block; 0 if unsupported. */
size_t kern_type_block_bytes(uint32_t type);
/* Bytes of one row of n elements; 0 if unsupported or n not a multiple
 * of the block size. */
size_t kern_row_bytes(uint32_t type, size_t n);

/* --- scalar conversions ------------------------------------------------ */

float    kern_fp16_to_fp32(uint16_t h);
uint16_t kern_fp32_to_fp16(float f);	/* round to nearest even */
float    kern_bf16_to_fp32(uint16_t h);
uint16_t kern_fp32_to_bf16(float f);	/* round to nearest even, NaN kept */

/* --- quantize (kernels/quant.c) ---------------------------------------- */

/*
 * Quantize n floats (n a multiple of the block size) into dst, which
 * holds kern_row_bytes(type, n) bytes. Returns 0 or -EINVAL.
 */
int kern_quantize_row(uint32_t type, const float *src, void *dst, size_t n);

/*
 * Largest input magnitude the block types (Q4_0, Q8_0, Q4_K, Q6_K)
 * accept: with it every fp16 scale they store is finite. Larger or
 * non-finite inputs make kern_quantize_row return -EINVAL (dst
 * untouched); F32/F16/BF16 take any value (F16 rounds big ones to inf).
 */
#define KERN_QUANT_MAX_ABS	65504.0f

/* --- references (kernels/ref.c) ---------------------------------------- */

/* dst[n] = the values of one row of n elements of `type`. */
void  kern_dequant_row_ref(uint32_t type, const void *src, float *dst,
	    size_t n);
/* sum over i < n of row[i] * x[i], row of `type`, x float32. */
float kern_dot_ref(uint32_t type, const void *row, const float *x, size_t n);

/*
 * y = W x for n_x activation vectors:
 *   w: rows x cols of `type`;  x: [n_x][cols];  y: [n_x][rows].
 * y[i*rows + r] = kern_dot(type, row r, x + i*cols, cols); each output is
 * computed the same way whatever n_x is (batch-independent results).
 */
void kern_matmul_ref(uint32_t type, const void *w, size_t rows, size_t cols,
	    const float *x, size_t n_x, float *y);

/* out[n] = x / sqrt(mean(x^2) + eps) * w.  out may alias x. */
void kern_rmsnorm_ref(float *out, const float *x, const float *w, size_t n,
	    float eps);
/* x[n] = softmax(x), in place, max-subtracted. */
void kern_softmax_ref(float *x, size_t n);
/* gate[n] = silu(gate) * up. */
void kern_silu_mul_ref(float *gate, const float *up, size_t n);
/* y[n] += x[n]. */
void kern_add_ref(float *y, const float *x, size_t n);

/*
 * Rotary position embedding, in place, for n_heads heads of head_dim
 * floats each (x: [n_heads][head_dim]). The first n_rot dimensions of
 * each head rotate; theta_i = pos * freq[i] for i < n_rot/2.
 *   neox == false: pairs (2i, 2i+1)          (llama layout)
 *   neox == true:  pairs (i, i + n_rot/2)    (qwen2 layout)
 */
void kern_rope_ref(float *x, size_t n_heads, size_t head_dim, size_t n_rot,
	    int32_t pos, const float *freq, bool neox);

/* --- the activation path (kernels/act.c) --------------------------------
 *
 * Matrix products take their activations in the form that suits the
 * weight type, as llama.cpp does: float32 for F32/F16/BF16 weights, Q8_0
 * blocks for Q4_0/Q8_0 weights, Q8_K blocks for Q4_K/Q6_K weights. The
 * quantized forms make the dot products integer sums per block (what
 * VNNI computes), and keep hearth's numbers those of llama.cpp.
 */

/* The activation format (a KERN_TYPE_*) for a weight type. */
uint32_t kern_act_type(uint32_t wtype);
/* Bytes of n activations for weight type wtype; 0 as kern_row_bytes. */
size_t   kern_act_row_bytes(uint32_t wtype, size_t n);
/* Quantize n floats into the activation form for wtype (a copy for
 * float types). n a multiple of wtype's block size. */
void     kern_quantize_act_ref(uint32_t wtype, const float *x, void *xq,
	    size_t n);
/* Dot product of one weight row with activations in the form above. */
float    kern_vec_dot_ref(uint32_t wtype, const void *row, const void *xq,
	    size_t n);
/*
 * y = W x with x in activation form:
 *   w: rows x cols of wtype;  xq: n_x rows of kern_act_row_bytes(wtype,
 *   cols);  y: [n_x][rows].  Each output is kern_vec_dot_ref of its row
 *   and vector, whatever n_x is.
 */
void     kern_matmul_act_ref(uint32_t wtype, const void *w, size_t rows,
	    size_t cols, const void *xq, size_t n_x, float *y);

/* --- attention reference (kernels/ref.c) -------------------------------- */

/*
 * Causal attention of one query head against n_keys cached positions:
 *   k, v: position t's key/value of this head at k + t*stride (hd fp16);
 *   s_t = (sum over d of q[d] * k_t[d], in order) * scale;
 *   o = sum over t of softmax(s)_t * v_t (kern_softmax_ref, t in order).
 * scratch holds n_keys floats.
 */
void kern_attend_ref(const float *q, const uint16_t *k, const uint16_t *v,
	    size_t stride, size_t hd, size_t n_keys, float scale, float *o,
	    float *scratch);

/* --- dispatch (kernels/cpu.c) -------------------------------------------
 *
 * Every operation of the forward pass exists as the scalar reference and,
 * where the CPU has the instructions, an AVX-512 version (kernels/
 * avx512.c: VNNI vpdpbusd on 8-bit activations for Q4_0/Q8_0/Q4_K/Q6_K,
 * F16C conversion + FMA for F16/F32/BF16). A struct kern_ops is one
 * complete, consistent set: it fixes the layout weights are repacked into
 * once at load, the form activations take, and the kernels that read
 * them. kern_ops() picks a set once per process: the best the CPU runs,
 * unless the environment variable HEARTH_KERNELS says "ref" (the scalar
 * references, any CPU) or "avx512" (refused, falling back to ref, when
 * the CPU lacks it); "auto" or unset picks.
 *
 * Numbers: the quantized types' fast kernels give bit for bit the
 * references' results (integer block sums, then the same float operations
 * in the same order per row); F32/F16/BF16 products, attention and silu
 * differ from the references by rounding only (fused multiply-add, a
 * vector exp). Either way each output element is computed by the same
 * operations in the same order whatever the batch, the tile or the
 * thread it falls in, so results never depend on the batch.
 */

/* What the CPU and the OS offer (cpuid, xgetbv), read once. */
struct kern_cpu {
	bool	avx2;		/* and the OS saves ymm state */
	bool	fma;
	bool	f16c;
	bool	avx512f;	/* and the OS saves zmm and mask state */
	bool	avx512bw;
	bool	avx512vl;
	bool	avx512dq;
	bool	avx512vnni;	/* vpdpbusd / vpdpwssd on zmm */
	bool	avx512bf16;	/* vdpbf16ps */
	bool	avx_vnni;	/* the VEX (256-bit) form of VNNI */
};

const struct kern_cpu *kern_cpu(void);

enum kern_isa {
	KERN_ISA_REF = 0,	/* scalar references, GGUF layout */
	KERN_ISA_AVX512 = 1,	/* F, BW, VL, DQ, VNNI (+ F16C, FMA) */
};
#define KERN_ISA_COUNT	2

/* Weight layouts (struct model_weight.layout). */
#define KERN_LAYOUT_ROWS	0	/* GGUF: rows of blocks */
#define KERN_LAYOUT_R16		1	/* 16 rows interleaved per block
					 * (kernels/avx512.c describes it) */

/*
 * One matrix product: rows r0 .. r1-1 of y = W x for n_x vectors.
 *   y[i*ldy + r] = dot(row r, vector i)  (+ bias[r])  (+ old y, if add)
 * in that order (the forward pass's "q = Wx; q += b" and "x += Wx").
 */
struct kern_mm {
	uint32_t	 type;		/* weight type */
	const void	*w;		/* rows x cols in the ops' layout */
	size_t		 rows;
	size_t		 cols;
	const void	*xq;		/* n_x activation rows, act_row_bytes
					 * apart, from the ops' quantize_act */
	size_t		 n_x;
	float		*y;		/* [n_x][ldy] */
	size_t		 ldy;		/* >= rows */
	const float	*bias;		/* [rows] or NULL */
	bool		 add;		/* y += instead of y = */
};

/*
 * The heads that share a key/value head, for n_rows query rows at
 * consecutive positions of one sequence (a prompt's rows; a decode step
 * has one): row i sees keys 0 .. n_keys+i-1. The cache holds keys of
 * k_type and values of v_type, each KERN_TYPE_F16 or (hd a multiple of
 * 32) KERN_TYPE_Q8_0; position t's key of this kv head starts
 * kern_row_bytes(k_type, t*stride) bytes after k (likewise v). Each
 * (row, head) comes out the same bits whatever n_rows and n_q are.
 */
struct kern_attn {
	const float	*q;		/* [n_rows][row_stride], row i's heads
					 * [n_q][hd] at q + i*row_stride */
	float		*o;		/* out, laid out as q */
	size_t		 n_q;		/* heads */
	size_t		 n_rows;	/* query rows, >= 1 */
	size_t		 row_stride;	/* floats from one row's q (and o) to
					 * the next; unused when n_rows is 1 */
	const void	*k;		/* key of position 0, this kv head */
	const void	*v;		/* value, likewise */
	uint32_t	 k_type;	/* KERN_TYPE_F16 or KERN_TYPE_Q8_0 */
	uint32_t	 v_type;	/* likewise */
	size_t		 stride;	/* elements between positions */
	size_t		 hd;		/* head dim */
	size_t		 n_keys;	/* row 0 sees positions 0 .. n_keys-1 */
	float		 scale;		/* 1/sqrt(hd) */
	float		*scratch;	/* [n_keys] floats (the reference's) */
	void		*qq;		/* Q8_0 keys: [n_q][kern_row_bytes(
					 * Q8_0, hd)] bytes for the quantized
					 * queries; else unused */
};

/*
 * Head h of a's row 0 (the reference every set's attend is checked
 * against, row by row through kern_attn_row):
 * kern_attend_ref's steps for F16 caches; with Q8_0 keys the query is
 * first quantized as kern_quantize_act_ref(KERN_TYPE_Q8_0) does (into
 * a->qq + h rows) and s_t = (sum over blocks b in order of
 * (float)isum_b * (d_k * d_q)) * scale, isum_b the integer dot product
 * of the block's quants (llama.cpp's q8_0 x q8_0 dot); Q8_0 values are
 * d * q in float.
 */
void kern_attend_head_ref(const struct kern_attn *a, size_t h);
/* Row i of a as a one-row kern_attn (its q, o and n_keys + i keys). */
void kern_attn_row(const struct kern_attn *a, size_t i,
	    struct kern_attn *row);
/* A KV cache element type the attention reads, for head dim hd. */
bool kern_kv_type_ok(uint32_t type, size_t hd);

struct kern_ops {
	enum kern_isa	 isa;
	const char	*name;		/* "ref", "avx512" */
	uint32_t	 layout;	/* KERN_LAYOUT_* its weights take */
	uint32_t	 row_align;	/* r0 of a kern_mm must be a multiple */

	/* Bytes of a rows x cols matrix of type in this layout; 0 if
	 * unsupported (cols not whole blocks). */
	size_t	(*pack_size)(uint32_t type, size_t rows, size_t cols);
	/* GGUF rows -> this layout (dst holds pack_size bytes). */
	void	(*pack)(uint32_t type, const void *src, size_t rows,
		    size_t cols, void *dst);
	/* Row r of a packed matrix, dequantized as kern_dequant_row_ref
	 * would the original row: dst[cols]. */
	void	(*get_row)(uint32_t type, const void *w, size_t rows,
		    size_t cols, size_t r, float *dst);

	/* Bytes of one activation row for weight type wtype (a multiple
	 * of 64 for the SIMD sets), and the quantizer filling it. */
	size_t	(*act_row_bytes)(uint32_t wtype, size_t cols);
	void	(*quantize_act)(uint32_t wtype, const float *x, void *xq,
		    size_t n);
	/* Activation rows of two weight types have the same form. */
	bool	(*act_same)(uint32_t wtype_a, uint32_t wtype_b);

	void	(*matmul)(const struct kern_mm *mm, size_t r0, size_t r1);
	void	(*attend)(const struct kern_attn *a);
	/* gate[n] = silu(gate) * up */
	void	(*silu_mul)(float *gate, const float *up, size_t n);
	/* dst[n] = fp16(src) rounded to nearest even */
	void	(*to_fp16)(uint16_t *dst, const float *src, size_t n);
};

/* The chosen set (see above); never NULL. */
const struct kern_ops *kern_ops(void);
/* The set kern_ops() picks for a value of $HEARTH_KERNELS (NULL: unset):
 * "ref", "avx512" (ref without it), anything else the best. */
const struct kern_ops *kern_ops_choose(const char *want);
/* A given set, or NULL when this CPU (or build) cannot run it. */
const struct kern_ops *kern_ops_get(enum kern_isa isa);

/* The AVX-512 set (kernels/avx512.c); NULL without CPU support. */
const struct kern_ops *kern_avx512_ops(void);

#endif /* HEARTH_KERNELS_H */
