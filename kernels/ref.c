/*
 * ref.c - type traits, scalar fp16/bf16 conversions and the scalar
 * reference versions of every kernel.
 *
 * This file is the numeric truth of the engine: faster kernels are tested
 * against it. It is plain portable C11 (no intrinsics, no assumptions
 * about the host float unit beyond IEEE binary32). The dequantizers give
 * bit-for-bit the values GGML's dequantize_row_* functions give: each
 * element is computed with the same float operations in the same order
 * (for example Q4_K is (d * sc) * q - (dmin * m), Q6_K is (d * sc) * q).
 * Compile without floating-point contraction (-std=c11 implies
 * -ffp-contract=off with GCC) so a * b + c stays two roundings, and for
 * a target that evaluates float in float (FLT_EVAL_METHOD 0: x86-64,
 * aarch64; not x87).
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

/*
 * No fused multiply-add: results must not depend on the compiler's
 * choice. Clang honours the standard pragma; GCC does not know it but
 * contracts nothing in ISO C mode (-std=c11 means -ffp-contract=off).
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* --- types ------------------------------------------------------------ */

/* One row of the type table. */
struct kern_type_info {
	uint32_t	 type;		/* GGML type id */
	const char	*name;		/* GGML's lower-case name */
	size_t		 block_elems;	/* elements per block */
	size_t		 block_bytes;	/* bytes per block */
};

static const struct kern_type_info kern_types[] = {
	{ KERN_TYPE_F32,  "f32",  1,		sizeof(float) },
	{ KERN_TYPE_F16,  "f16",  1,		sizeof(uint16_t) },
	{ KERN_TYPE_Q4_0, "q4_0", KERN_QK4_0,	sizeof(struct kern_block_q4_0) },
	{ KERN_TYPE_Q8_0, "q8_0", KERN_QK8_0,	sizeof(struct kern_block_q8_0) },
	{ KERN_TYPE_Q4_K, "q4_k", KERN_QK_K,	sizeof(struct kern_block_q4_k) },
	{ KERN_TYPE_Q6_K, "q6_k", KERN_QK_K,	sizeof(struct kern_block_q6_k) },
	{ KERN_TYPE_BF16, "bf16", 1,		sizeof(uint16_t) },
};

/* The block structs must have GGML's exact sizes (no padding). */
_Static_assert(sizeof(struct kern_block_q4_0) == 18, "q4_0 block size");
_Static_assert(sizeof(struct kern_block_q8_0) == 34, "q8_0 block size");
_Static_assert(sizeof(struct kern_block_q4_k) == 144, "q4_k block size");
_Static_assert(sizeof(struct kern_block_q6_k) == 210, "q6_k block size");

static const struct kern_type_info *
kern_type_find(uint32_t type)
{
	size_t	i;

	for (i = 0; i < sizeof(kern_types) / sizeof(kern_types[0]); i++) {
		if (kern_types[i].type == type)
			return &kern_types[i];
	}
	return NULL;
}

bool
kern_type_supported(uint32_t type)
{
	return kern_type_find(type) != NULL;
}

const char *
kern_type_name(uint32_t type)
{
	const struct kern_type_info	*ti = kern_type_find(type);

	return ti != NULL ? ti->name : "?";
}

size_t
kern_type_block_elems(uint32_t type)
{
	const struct kern_type_info	*ti = kern_type_find(type);

	return ti != NULL ? ti->block_elems : 0;
}

size_t
kern_type_block_bytes(uint32_t type)
{
	const struct kern_type_info	*ti = kern_type_find(type);

	return ti != NULL ? ti->block_bytes : 0;
}

/*
 * Also 0 when the byte count would not fit in a size_t. A row of zero
 * elements is valid and has zero bytes.
 */
size_t
kern_row_bytes(uint32_t type, size_t n)
{
	const struct kern_type_info	*ti = kern_type_find(type);
	size_t				 nb;

	if (ti == NULL || n % ti->block_elems != 0)
		return 0;
	nb = n / ti->block_elems;
	if (nb > SIZE_MAX / ti->block_bytes)
		return 0;
	return nb * ti->block_bytes;
}

/* --- scalar conversions ------------------------------------------------ */

static uint32_t
kern_f32_bits(float f)
{
	uint32_t	u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float
kern_bits_f32(uint32_t u)
{
	float	f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/*
 * IEEE binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
 * Every half value is exactly representable as a float, so this is exact.
 */
float
kern_fp16_to_fp32(uint16_t h)
{
	uint32_t	sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t	exp = (h >> 10) & 0x1f;
	uint32_t	mant = h & 0x3ff;
	int		e;

	if (exp == 0x1f) {
		/* Inf, or NaN with its payload moved to the top bits. */
		return kern_bits_f32(sign | 0x7f800000u | (mant << 13));
	}
	if (exp != 0) {
		/* Normal: rebias the exponent 15 -> 127. */
		return kern_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
	}
	if (mant == 0)
		return kern_bits_f32(sign);	/* +-0 */
	/*
	 * Subnormal: mant * 2^-24. Shift the leading one up to bit 10 to
	 * get a normal float; each shift lowers the exponent by one.
	 */
	e = -14;
	while ((mant & 0x400) == 0) {
		mant <<= 1;
		e--;
	}
	mant &= 0x3ff;
	return kern_bits_f32(sign | ((uint32_t)(e + 127) << 23) | (mant << 13));
}

/*
 * Round to nearest, ties to even. Values of magnitude >= 65520 become
 * infinity (65504 is the largest half, 65520 the halfway point to the
 * next would-be value), tiny values become subnormals or zero, NaN stays
 * a (quiet) NaN with the top bits of its payload.
 */
uint16_t
kern_fp32_to_fp16(float f)
{
	uint32_t	u = kern_f32_bits(f);
	uint16_t	sign = (uint16_t)((u >> 16) & 0x8000);
	uint32_t	a = u & 0x7fffffffu;	/* magnitude bits */
	int32_t		exp;
	uint32_t	mant, h, rest, half, shift;

	if (a >= 0x7f800000u) {
		if (a == 0x7f800000u)
			return sign | 0x7c00;	/* +-inf */
		return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff);
	}
	exp = (int32_t)(a >> 23) - 127;		/* unbiased */
	mant = a & 0x7fffff;
	if (exp >= -14) {
		/*
		 * Normal range of half (or overflow). Keep the top 10 of the
		 * 23 mantissa bits, round on the 13 dropped ones; a carry
		 * out of the mantissa correctly bumps the exponent, up to
		 * the infinity encoding 0x7c00.
		 */
		if (exp > 15)
			return sign | 0x7c00;
		h = ((uint32_t)(exp + 15) << 10) | (mant >> 13);
		rest = mant & 0x1fff;
		if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
			h++;
		return sign | (uint16_t)h;
	}
	/*
	 * Subnormal half: the result counts units of 2^-24. The value is
	 * (mant | 1 << 23) * 2^(exp - 23), that is the significand shifted
	 * right by -(exp + 1) places. Below 2^-25 everything rounds to 0
	 * (exactly 2^-25 is a tie, which goes to the even 0).
	 */
	if (exp < -25)
		return sign;
	mant |= 0x800000;
	shift = (uint32_t)(-(exp + 1));		/* 14 .. 24 */
	h = mant >> shift;
	rest = mant & ((1u << shift) - 1);
	half = 1u << (shift - 1);
	if (rest > half || (rest == half && (h & 1)))
		h++;				/* may become 0x400, the
						 * smallest normal: right */
	return sign | (uint16_t)h;
}

/* bfloat16 is the top half of a float: exact. */
float
kern_bf16_to_fp32(uint16_t h)
{
	return kern_bits_f32((uint32_t)h << 16);
}

/*
 * Round to nearest, ties to even, on the 16 dropped bits. A NaN is kept
 * a NaN by forcing the quiet bit (a signalling NaN whose payload is all
 * in the low half would otherwise truncate to infinity). Finite values
 * that round past the largest bfloat16 become infinity, as they should.
 */
uint16_t
kern_fp32_to_bf16(float f)
{
	uint32_t	u = kern_f32_bits(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x0040);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/* --- dequantization ---------------------------------------------------- */

static uint16_t
kern_load_u16(const uint8_t *p)
{
	uint16_t	v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* One Q4_0 block: x = d * (q - 8). */
static void
kern_dequant_q4_0(const struct kern_block_q4_0 *b, float *y)
{
	const float	d = kern_fp16_to_fp32(b->d);
	int		j;

	for (j = 0; j < KERN_QK4_0 / 2; j++) {
		y[j] = (float)((b->qs[j] & 0x0f) - 8) * d;
		y[j + KERN_QK4_0 / 2] = (float)((b->qs[j] >> 4) - 8) * d;
	}
}

/* One Q8_0 block: x = d * q. */
static void
kern_dequant_q8_0(const struct kern_block_q8_0 *b, float *y)
{
	const float	d = kern_fp16_to_fp32(b->d);
	int		j;

	for (j = 0; j < KERN_QK8_0; j++)
		y[j] = (float)b->qs[j] * d;
}

/*
 * The 6-bit scale and min of sub-block j (0..7) of a Q4_K block. The 12
 * bytes hold, in GGML's packing:
 *   bytes 0..3:  low 6 bits = scale of j 0..3, top 2 bits = scale bits
 *                4..5 of j 4..7;
 *   bytes 4..7:  low 6 bits = min of j 0..3, top 2 bits = min bits 4..5
 *                of j 4..7;
 *   bytes 8..11: low nibble = scale bits 0..3 of j 4..7, high nibble =
 *                min bits 0..3 of j 4..7.
 */
static void
kern_q4_k_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *m)
{
	if (j < 4) {
		*sc = s[j] & 0x3f;
		*m = s[j + 4] & 0x3f;
	} else {
		*sc = (uint8_t)((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4));
		*m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
	}
}

/*
 * One Q4_K super-block. The 256 elements are 4 groups of 64; group g
 * uses the 32 bytes qs[32g .. 32g+31]: their low nibbles are sub-block
 * 2g (elements 64g .. 64g+31), their high nibbles sub-block 2g+1.
 */
static void
kern_dequant_q4_k(const struct kern_block_q4_k *b, float *y)
{
	const float	 d = kern_fp16_to_fp32(b->d);
	const float	 dmin = kern_fp16_to_fp32(b->dmin);
	const uint8_t	*q = b->qs;
	uint8_t		 sc, m;
	float		 d1, m1, d2, m2;
	int		 g, l;

	for (g = 0; g < 4; g++) {
		kern_q4_k_scale_min(b->scales, 2 * g, &sc, &m);
		d1 = d * (float)sc;
		m1 = dmin * (float)m;
		kern_q4_k_scale_min(b->scales, 2 * g + 1, &sc, &m);
		d2 = d * (float)sc;
		m2 = dmin * (float)m;
		for (l = 0; l < 32; l++)
			y[l] = d1 * (float)(q[l] & 0x0f) - m1;
		for (l = 0; l < 32; l++)
			y[32 + l] = d2 * (float)(q[l] >> 4) - m2;
		y += 64;
		q += 32;
	}
}

/*
 * One Q6_K super-block: two halves of 128 elements; half h uses
 * ql[64h .. 64h+63], qh[32h .. 32h+31] and scales[8h .. 8h+7]. Within a
 * half, element 32k + l (k 0..3, l 0..31) has
 *   low 4 bits:  ql[l + 32*(k & 1)], low nibble for k < 2, else high;
 *   high 2 bits: bits 2k..2k+1 of qh[l];
 *   scale:       scales[l/16 + 2k]   (so sub-block = element / 16).
 */
static void
kern_dequant_q6_k(const struct kern_block_q6_k *b, float *y)
{
	const float	 d = kern_fp16_to_fp32(b->d);
	const uint8_t	*ql = b->ql;
	const uint8_t	*qh = b->qh;
	const int8_t	*sc = b->scales;
	int		 h, l, is, q1, q2, q3, q4;

	for (h = 0; h < 2; h++) {
		for (l = 0; l < 32; l++) {
			is = l / 16;
			q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
			q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4))
			    - 32;
			q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
			q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4))
			    - 32;
			y[l] = d * (float)sc[is] * (float)q1;
			y[l + 32] = d * (float)sc[is + 2] * (float)q2;
			y[l + 64] = d * (float)sc[is + 4] * (float)q3;
			y[l + 96] = d * (float)sc[is + 6] * (float)q4;
		}
		y += 128;
		ql += 64;
		qh += 32;
		sc += 8;
	}
}

/*
 * Dequantize the count blocks (count elements for F32/F16/BF16)
 * starting at src into y. Type already validated.
 */
static void
kern_dequant_blocks(uint32_t type, const uint8_t *src, float *y,
    size_t count)
{
	size_t	i;

	switch (type) {
	case KERN_TYPE_F32:
		memcpy(y, src, count * sizeof(float));
		break;
	case KERN_TYPE_F16:
		for (i = 0; i < count; i++)
			y[i] = kern_fp16_to_fp32(kern_load_u16(src + 2 * i));
		break;
	case KERN_TYPE_BF16:
		for (i = 0; i < count; i++)
			y[i] = kern_bf16_to_fp32(kern_load_u16(src + 2 * i));
		break;
	case KERN_TYPE_Q4_0:
		for (i = 0; i < count; i++) {
			struct kern_block_q4_0	b;

			memcpy(&b, src + i * sizeof(b), sizeof(b));
			kern_dequant_q4_0(&b, y + i * KERN_QK4_0);
		}
		break;
	case KERN_TYPE_Q8_0:
		for (i = 0; i < count; i++) {
			struct kern_block_q8_0	b;

			memcpy(&b, src + i * sizeof(b), sizeof(b));
			kern_dequant_q8_0(&b, y + i * KERN_QK8_0);
		}
		break;
	case KERN_TYPE_Q4_K:
		for (i = 0; i < count; i++) {
			struct kern_block_q4_k	b;

			memcpy(&b, src + i * sizeof(b), sizeof(b));
			kern_dequant_q4_k(&b, y + i * KERN_QK_K);
		}
		break;
	case KERN_TYPE_Q6_K:
		for (i = 0; i < count; i++) {
			struct kern_block_q6_k	b;

			memcpy(&b, src + i * sizeof(b), sizeof(b));
			kern_dequant_q6_k(&b, y + i * KERN_QK_K);
		}
		break;
	}
}

/*
 * Blocks are copied out with memcpy, so src needs no alignment (rows in
 * a GGUF file or a packed buffer may start anywhere). An unsupported
 * type or an n that is not a whole number of blocks is a caller bug;
 * dst is then left untouched.
 */
void
kern_dequant_row_ref(uint32_t type, const void *src, float *dst, size_t n)
{
	const struct kern_type_info	*ti = kern_type_find(type);

	if (ti == NULL || n % ti->block_elems != 0 || n == 0)
		return;
	kern_dequant_blocks(type, src, dst, n / ti->block_elems);
}

/* Elements dequantized at a time by kern_dot_ref: one K super-block. */
#define KERN_DOT_CHUNK	KERN_QK_K

/*
 * Accumulation order (part of the contract, so that results depend only
 * on the row and x): one float accumulator, starting at +0, adding the
 * float product row[i] * x[i] for i = 0, 1, ..., n-1 in that order, with
 * row[i] the exact dequantized value kern_dequant_row_ref gives. The row
 * is dequantized KERN_DOT_CHUNK elements at a time into a stack buffer,
 * which does not change the result.
 *
 * Returns 0 for n == 0 and NaN for an unsupported type or an n that is
 * not a whole number of blocks (a caller bug, made visible).
 */
float
kern_dot_ref(uint32_t type, const void *row, const float *x, size_t n)
{
	const struct kern_type_info	*ti = kern_type_find(type);
	const uint8_t			*src = row;
	float				 buf[KERN_DOT_CHUNK];
	float				 sum = 0.0f;
	size_t				 done, len, i;

	if (ti == NULL || n % ti->block_elems != 0)
		return NAN;
	for (done = 0; done < n; done += len) {
		/* KERN_DOT_CHUNK is a multiple of every block size. */
		len = n - done < KERN_DOT_CHUNK ? n - done : KERN_DOT_CHUNK;
		kern_dequant_blocks(type, src, buf, len / ti->block_elems);
		src += len / ti->block_elems * ti->block_bytes;
		for (i = 0; i < len; i++)
			sum += buf[i] * x[done + i];
	}
	return sum;
}

/*
 * Outer loop over the activation vectors, inner over the weight rows;
 * each output is exactly kern_dot_ref of its row and vector, so it does
 * not depend on n_x or on the other vectors.
 */
void
kern_matmul_ref(uint32_t type, const void *w, size_t rows, size_t cols,
    const float *x, size_t n_x, float *y)
{
	const uint8_t	*wb = w;
	size_t		 row_bytes = kern_row_bytes(type, cols);
	size_t		 i, r;

	for (i = 0; i < n_x; i++) {
		for (r = 0; r < rows; r++) {
			y[i * rows + r] = kern_dot_ref(type, wb + r * row_bytes,
			    x + i * cols, cols);
		}
	}
}

/* --- element-wise operations ------------------------------------------- */

/*
 * As GGML's rms_norm followed by the multiplication with the weight:
 * squares are formed in float and summed in double, the mean is rounded
 * to float, scale = 1 / sqrtf(mean + eps), out = (x * scale) * w.
 */
void
kern_rmsnorm_ref(float *out, const float *x, const float *w, size_t n,
    float eps)
{
	double	sum = 0.0;
	float	mean, scale;
	size_t	i;

	if (n == 0)
		return;
	for (i = 0; i < n; i++)
		sum += (double)(x[i] * x[i]);
	mean = (float)(sum / (double)n);
	scale = 1.0f / sqrtf(mean + eps);
	for (i = 0; i < n; i++)
		out[i] = (x[i] * scale) * w[i];
}

/*
 * e_i = expf(x_i - max) in float, summed in double, then each e_i is
 * multiplied by (float)(1 / sum). Entries of -inf (masked) get exactly 0.
 * A row that is all -inf has no distribution; it becomes all zeros.
 */
void
kern_softmax_ref(float *x, size_t n)
{
	double	sum = 0.0;
	float	max, inv;
	size_t	i;

	if (n == 0)
		return;
	max = x[0];
	for (i = 1; i < n; i++) {
		if (x[i] > max)
			max = x[i];
	}
	if (max == -INFINITY) {
		for (i = 0; i < n; i++)
			x[i] = 0.0f;
		return;
	}
	for (i = 0; i < n; i++) {
		x[i] = expf(x[i] - max);
		sum += (double)x[i];
	}
	inv = (float)(1.0 / sum);
	for (i = 0; i < n; i++)
		x[i] *= inv;
}

/* silu(g) = g / (1 + expf(-g)), in float; then times up. */
void
kern_silu_mul_ref(float *gate, const float *up, size_t n)
{
	size_t	i;
	float	g;

	for (i = 0; i < n; i++) {
		g = gate[i];
		gate[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

void
kern_add_ref(float *y, const float *x, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		y[i] += x[i];
}

/*
 * For each head and each pair i < n_rot/2: theta = (float)pos * freq[i]
 * in float, c = cosf(theta), s = sinf(theta), and the pair (a, b)
 * becomes (a*c - b*s, a*s + b*c). Dimensions from 2*(n_rot/2) to
 * head_dim - 1 are left as they are (so is the last one of an odd
 * n_rot). The caller keeps n_rot <= head_dim.
 */
void
kern_rope_ref(float *x, size_t n_heads, size_t head_dim, size_t n_rot,
    int32_t pos, const float *freq, bool neox)
{
	size_t	half = n_rot / 2;
	size_t	h, i, i0, i1;
	float	theta, c, s, a, b, *v;

	for (i = 0; i < half; i++) {
		theta = (float)pos * freq[i];
		c = cosf(theta);
		s = sinf(theta);
		/* Indices of the pair within a head. */
		i0 = neox ? i : 2 * i;
		i1 = neox ? i + half : 2 * i + 1;
		for (h = 0; h < n_heads; h++) {
			v = x + h * head_dim;
			a = v[i0];
			b = v[i1];
			v[i0] = a * c - b * s;
			v[i1] = a * s + b * c;
		}
	}
}

/* --- attention --------------------------------------------------------- */

/*
 * The forward pass's attention of one head, written out plainly: every
 * score, then kern_softmax_ref over them, then the weighted sum of the
 * values in position order.
 */
void
kern_attend_ref(const float *q, const uint16_t *k, const uint16_t *v,
    size_t stride, size_t hd, size_t n_keys, float scale, float *o,
    float *scratch)
{
	size_t	t, d;
	float	s, a;

	for (t = 0; t < n_keys; t++) {
		const uint16_t	*kt = k + t * stride;

		s = 0.0f;
		for (d = 0; d < hd; d++)
			s += q[d] * kern_fp16_to_fp32(kt[d]);
		scratch[t] = s * scale;
	}
	kern_softmax_ref(scratch, n_keys);
	for (d = 0; d < hd; d++)
		o[d] = 0.0f;
	for (t = 0; t < n_keys; t++) {
		const uint16_t	*vt = v + t * stride;

		a = scratch[t];
		for (d = 0; d < hd; d++)
			o[d] += a * kern_fp16_to_fp32(vt[d]);
	}
}

bool
kern_kv_type_ok(uint32_t type, size_t hd)
{
	return type == KERN_TYPE_F16 ||
	    (type == KERN_TYPE_Q8_0 && hd > 0 && hd % KERN_QK8_0 == 0);
}

/* Score of one Q8_0 key row against the quantized query qq (nb blocks):
 * llama.cpp's q8_0 x q8_0 dot product. */
static float
ref_score_q8_0(const struct kern_block_q8_0 *qq, const uint8_t *kt,
    size_t nb)
{
	struct kern_block_q8_0	 kb;
	size_t			 b;
	float			 s = 0.0f;
	int			 j, isum;

	for (b = 0; b < nb; b++) {
		memcpy(&kb, kt + b * sizeof(kb), sizeof(kb));
		isum = 0;
		for (j = 0; j < KERN_QK8_0; j++)
			isum += kb.qs[j] * qq[b].qs[j];
		s += (float)isum * (kern_fp16_to_fp32(kb.d) *
		    kern_fp16_to_fp32(qq[b].d));
	}
	return s;
}

void
kern_attn_row(const struct kern_attn *a, size_t i, struct kern_attn *row)
{
	*row = *a;
	row->q = a->q + i * a->row_stride;
	row->o = a->o + i * a->row_stride;
	row->n_rows = 1;
	row->n_keys = a->n_keys + i;
}

void
kern_attend_head_ref(const struct kern_attn *a, size_t h)
{
	const float	*q = a->q + h * a->hd;
	float		*o = a->o + h * a->hd, *sc = a->scratch;
	const size_t	 hd = a->hd, nb = hd / KERN_QK8_0;
	const size_t	 krow = kern_row_bytes(a->k_type, a->stride);
	const size_t	 vrow = kern_row_bytes(a->v_type, a->stride);
	struct kern_block_q8_0 *qq = NULL;
	size_t		 t, d, j;
	float		 s, w;

	if (a->k_type == KERN_TYPE_F16 && a->v_type == KERN_TYPE_F16) {
		kern_attend_ref(q, a->k, a->v, a->stride, hd, a->n_keys,
		    a->scale, o, sc);
		return;
	}
	if (a->k_type == KERN_TYPE_Q8_0) {
		qq = (struct kern_block_q8_0 *)((uint8_t *)a->qq +
		    h * kern_row_bytes(KERN_TYPE_Q8_0, hd));
		kern_quantize_act_ref(KERN_TYPE_Q8_0, q, qq, hd);
	}
	for (t = 0; t < a->n_keys; t++) {
		const uint8_t	*kt = (const uint8_t *)a->k + t * krow;

		if (qq != NULL)
			s = ref_score_q8_0(qq, kt, nb);
		else {
			const uint16_t *k16 = (const uint16_t *)kt;

			s = 0.0f;
			for (d = 0; d < hd; d++)
				s += q[d] * kern_fp16_to_fp32(k16[d]);
		}
		sc[t] = s * a->scale;
	}
	kern_softmax_ref(sc, a->n_keys);
	for (d = 0; d < hd; d++)
		o[d] = 0.0f;
	for (t = 0; t < a->n_keys; t++) {
		const uint8_t	*vt = (const uint8_t *)a->v + t * vrow;

		w = sc[t];
		if (a->v_type == KERN_TYPE_Q8_0) {
			struct kern_block_q8_0	 vb;
			float			 dv;

			for (d = 0; d < hd; d += KERN_QK8_0) {
				memcpy(&vb, vt + d / KERN_QK8_0 * sizeof(vb),
				    sizeof(vb));
				dv = kern_fp16_to_fp32(vb.d);
				for (j = 0; j < KERN_QK8_0; j++)
					o[d + j] += w * (dv *
					    (float)vb.qs[j]);
			}
		} else {
			const uint16_t *v16 = (const uint16_t *)vt;

			for (d = 0; d < hd; d++)
				o[d] += w * kern_fp16_to_fp32(v16[d]);
		}
	}
}
