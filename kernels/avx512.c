/*
 * avx512.c - the AVX-512 kernel set: repacked weights, 8-bit activations
 * and VNNI dot products, F16C/FMA for float weights, fused attention.
 *
 * The file is compiled for AVX-512 (F, BW, VL, DQ, VNNI) by the target
 * pragma below, whatever the build's flags; nothing in it runs unless
 * kern_avx512_ops() (outside the pragma) saw the CPU support it.
 *
 * Layout KERN_LAYOUT_R16. Rows go in groups of 16 (the last group padded
 * with zero rows); within a group, lane j of every 64-byte vector belongs
 * to row 16g+j, so one vpdpbusd multiplies 4 consecutive 8-bit weights of
 * 16 rows with 4 activation bytes broadcast to all lanes (the activation
 * is the signed operand; the weights are made unsigned). A group is
 *   Q4_0: [nb][4 x 64] nibbles | [nb][16] fp16 d           (nb = cols/32)
 *         vector c, lane j, byte t: qs[4c+t] of row j's block (low nibble
 *         element 4c+t, high nibble element 16+4c+t; q in 0..15, the -8
 *         comes back as -8 * (sum of the activations) per block)
 *   Q8_0: [nb][8 x 64] q+128 | [nb][16] fp16 d   (vector c: elements
 *         4c..4c+3; the +128 comes back as -128 * sum of activations)
 *   Q4_K: [nb][32 x 64 nibbles | 8 x 16 scales | 4 x 16 x 2 mins]
 *         | [nb][16 d, 16 dmin]                            (nb = cols/256)
 *         vector 8h+c: qs[32h+4c+t] (low: element 64h+4c+t, sub-block
 *         2h; high: element 64h+32+4c+t, sub-block 2h+1); scales and mins
 *         unpacked from 6 bits to bytes, mins paired for vpdpwssd
 *   Q6_K: [nb][48 x 64 q | 16 x 16 scales] | [nb][16] fp16 d
 *         the 6-bit values q_k (0..63) of elements 128h+32k+4c+t, k =
 *         0..3, in vectors (8h+c)*3 + m, m = 0, 1, 2, byte t: q_m in
 *         bits 0-5, bits 2m, 2m+1 of q_3 in bits 6-7 (one AND per vector
 *         for k < 3; q_3 from the three top pairs)
 *   F32, F16, BF16: [cols][16] values
 * each group padded to a multiple of 64 bytes.
 *
 * Activations, one row per vector, a multiple of 64 bytes:
 *   Q8_0 form (Q4_0, Q8_0 weights): qs[n] int8 | d[nb] float (the fp16
 *     scale's value) | [nb] int32 -8*sum(qs of block) | [nb] -128*sum
 *   Q8_K form (Q4_K, Q6_K): qs[n] | d[nb] float | [nb][4] int32 pairs of
 *     int16 32-element sums (for the mins) | [nb][32] int32 -32 * the
 *     8-element sums (Q6_K's offset)
 *   float weights: the float32 activations.
 * The quantized values are exactly those of kern_quantize_act_ref.
 *
 * Every output lane accumulates its row's blocks in order with the same
 * float operations as kernels/act.c, so the quantized kernels give the
 * references' results bit for bit, whatever the tile of vectors. Float
 * weights use one fused multiply-add per element, in element order.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KA_BUILD 1
#endif

#ifdef KA_BUILD

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#pragma clang attribute push(__attribute__((target( \
    "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,bmi,bmi2"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,bmi,bmi2")
#endif

#include <immintrin.h>

#define KA_INLINE	static inline __attribute__((always_inline))
#define KA_PF		8192	/* bytes ahead to prefetch when streaming */
#define KA_G		16	/* rows per group */

/* --- sizes ------------------------------------------------------------- */

static size_t
ka_round64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

/* Bytes of one group of 16 rows of cols elements; 0 if unsupported. */
static size_t
ka_group_bytes(uint32_t type, size_t cols)
{
	if (kern_row_bytes(type, cols) == 0)
		return 0;
	switch (type) {
	case KERN_TYPE_F32:
		return ka_round64(cols * 64);
	case KERN_TYPE_F16:
	case KERN_TYPE_BF16:
		return ka_round64(cols * 32);
	case KERN_TYPE_Q4_0:
		return ka_round64(cols / 32 * 288);
	case KERN_TYPE_Q8_0:
		return ka_round64(cols / 32 * 544);
	case KERN_TYPE_Q4_K:
		return ka_round64(cols / 256 * 2368);
	case KERN_TYPE_Q6_K:
		return ka_round64(cols / 256 * 3360);
	}
	return 0;
}

static size_t
ka_pack_size(uint32_t type, size_t rows, size_t cols)
{
	size_t	 gb = ka_group_bytes(type, cols);
	size_t	 ng = (rows + KA_G - 1) / KA_G;

	if (gb == 0 || cols > (SIZE_MAX >> 8) || ng > SIZE_MAX / gb)
		return 0;
	return gb * ng;
}

/* --- packing ----------------------------------------------------------- */

/* One 6-bit scale and min of a Q4_K block (as kernels/act.c). */
static void
ka_q4_k_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *m)
{
	if (j < 4) {
		*sc = s[j] & 0x3f;
		*m = s[j + 4] & 0x3f;
	} else {
		*sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
		*m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
	}
}

/* The 12 packed bytes back from 8 scales and mins (inverse of above). */
static void
ka_q4_k_pack_scales(const uint8_t *sc, const uint8_t *m, uint8_t *s)
{
	int	 j;

	for (j = 0; j < 4; j++) {
		s[j] = (uint8_t)((sc[j] & 0x3f) | ((sc[j + 4] >> 4) << 6));
		s[j + 4] = (uint8_t)((m[j] & 0x3f) | ((m[j + 4] >> 4) << 6));
		s[j + 8] = (uint8_t)((sc[j + 4] & 0x0f) | ((m[j + 4] & 0x0f)
		    << 4));
	}
}

/*
 * Move one block of row j (0..15) of a group between the GGUF form
 * (blk, kern_type_block_bytes) and the group (g), either way.
 */
static void
ka_block_xfer(uint32_t type, uint8_t *g, size_t nb, size_t b, size_t j,
    uint8_t *blk, bool to_group)
{
	size_t	 c, t, h, p, s;

#define XF(gp, bp) do {							\
	if (to_group)							\
		*(gp) = *(bp);						\
	else								\
		*(bp) = *(gp);						\
} while (0)
#define XF4(gp, bp) do {						\
	if (to_group)							\
		memcpy((gp), (bp), 4);					\
	else								\
		memcpy((bp), (gp), 4);					\
} while (0)

	switch (type) {
	case KERN_TYPE_Q4_0: {
		uint8_t	*q = g + b * 256, *d = g + nb * 256 + b * 32;

		XF(d + 2 * j, blk);
		XF(d + 2 * j + 1, blk + 1);
		for (c = 0; c < 4; c++)
			XF4(q + c * 64 + 4 * j, blk + 2 + 4 * c);
		break;
	}
	case KERN_TYPE_Q8_0: {
		uint8_t	*q = g + b * 512, *d = g + nb * 512 + b * 32;

		XF(d + 2 * j, blk);
		XF(d + 2 * j + 1, blk + 1);
		for (c = 0; c < 8; c++) {
			for (t = 0; t < 4; t++) {
				uint8_t	*gp = q + c * 64 + 4 * j + t;
				uint8_t	*bp = blk + 2 + 4 * c + t;

				if (to_group)
					*gp = (uint8_t)(*bp ^ 0x80);
				else
					*bp = (uint8_t)(*gp ^ 0x80);
			}
		}
		break;
	}
	case KERN_TYPE_Q4_K: {
		uint8_t	*tile = g + b * 2304, *dd = g + nb * 2304 + b * 64;
		uint8_t	 sc[8], m[8];

		XF(dd + 2 * j, blk);
		XF(dd + 2 * j + 1, blk + 1);
		XF(dd + 32 + 2 * j, blk + 2);
		XF(dd + 32 + 2 * j + 1, blk + 3);
		for (h = 0; h < 4; h++)
			for (c = 0; c < 8; c++)
				XF4(tile + (h * 8 + c) * 64 + 4 * j,
				    blk + 16 + 32 * h + 4 * c);
		if (to_group) {
			for (s = 0; s < 8; s++)
				ka_q4_k_scale_min(blk + 4, (int)s, &sc[s],
				    &m[s]);
			for (s = 0; s < 8; s++) {
				tile[2048 + s * 16 + j] = sc[s];
				tile[2176 + (s / 2) * 32 + 2 * j + s % 2] = m[s];
			}
		} else {
			for (s = 0; s < 8; s++) {
				sc[s] = tile[2048 + s * 16 + j];
				m[s] = tile[2176 + (s / 2) * 32 + 2 * j + s % 2];
			}
			ka_q4_k_pack_scales(sc, m, blk + 4);
		}
		break;
	}
	case KERN_TYPE_Q6_K: {
		uint8_t	*tile = g + b * 3328, *d = g + nb * 3328 + b * 32;

		for (h = 0; h < 2; h++) {
			uint8_t	*ql = blk + 64 * h, *qh = blk + 128 + 32 * h;

			for (p = 0; p < 32; p++) {	/* element l = p */
				uint8_t	*gp = tile + (h * 8 + p / 4) * 192 +
				    4 * j + p % 4;
				unsigned q[4], m;

				if (to_group) {
					q[0] = ql[p] & 0x0f;
					q[1] = ql[p + 32] & 0x0f;
					q[2] = ql[p] >> 4;
					q[3] = ql[p + 32] >> 4;
					for (m = 0; m < 4; m++)
						q[m] |= ((qh[p] >> (2 * m)) &
						    3) << 4;
					for (m = 0; m < 3; m++)
						gp[64 * m] = (uint8_t)(q[m] |
						    ((q[3] >> (2 * m)) & 3) << 6);
				} else {
					q[3] = 0;
					for (m = 0; m < 3; m++) {
						q[m] = gp[64 * m] & 0x3f;
						q[3] |= (unsigned)(gp[64 * m] >>
						    6) << (2 * m);
					}
					ql[p] = (uint8_t)((q[0] & 0x0f) |
					    (q[2] & 0x0f) << 4);
					ql[p + 32] = (uint8_t)((q[1] & 0x0f) |
					    (q[3] & 0x0f) << 4);
					qh[p] = (uint8_t)(q[0] >> 4 |
					    (q[1] >> 4) << 2 | (q[2] >> 4) << 4 |
					    (q[3] >> 4) << 6);
				}
			}
		}
		for (s = 0; s < 16; s++)
			XF(tile + 3072 + s * 16 + j, blk + 192 + s);
		XF(d + 2 * j, blk + 208);
		XF(d + 2 * j + 1, blk + 209);
		break;
	}
	case KERN_TYPE_F32:
		for (t = 0; t < 4; t++)
			XF(g + (b * 16 + j) * 4 + t, blk + t);
		break;
	case KERN_TYPE_F16:
	case KERN_TYPE_BF16:
		for (t = 0; t < 2; t++)
			XF(g + (b * 16 + j) * 2 + t, blk + t);
		break;
	}
#undef XF
#undef XF4
}

static bool
ka_is_float(uint32_t type)
{
	return type == KERN_TYPE_F32 || type == KERN_TYPE_F16 ||
	    type == KERN_TYPE_BF16;
}

static void
ka_pack(uint32_t type, const void *src, size_t rows, size_t cols, void *dst)
{
	size_t	 gb = ka_group_bytes(type, cols);
	size_t	 bb = kern_type_block_bytes(type);
	size_t	 nb = cols / kern_type_block_elems(type);
	size_t	 rb = kern_row_bytes(type, cols);
	size_t	 r, b;
	uint8_t	 blk[256];

	memset(dst, 0, ka_pack_size(type, rows, cols));
	if (ka_is_float(type)) {
		/* a transpose per group: element k of row j at [k][j] */
		for (r = 0; r < rows; r++) {
			const uint8_t	*row = (const uint8_t *)src + r * rb;
			uint8_t		*g = (uint8_t *)dst + (r / KA_G) * gb +
			    (r % KA_G) * bb;

			for (b = 0; b < nb; b++)
				memcpy(g + b * KA_G * bb, row + b * bb, bb);
		}
		return;
	}
	for (r = 0; r < rows; r++) {
		const uint8_t	*row = (const uint8_t *)src + r * rb;
		uint8_t		*g = (uint8_t *)dst + (r / KA_G) * gb;

		for (b = 0; b < nb; b++) {
			memcpy(blk, row + b * bb, bb);
			ka_block_xfer(type, g, nb, b, r % KA_G, blk, true);
		}
	}
}

static void
ka_get_row(uint32_t type, const void *w, size_t rows, size_t cols, size_t r,
    float *dst)
{
	size_t	 gb = ka_group_bytes(type, cols);
	size_t	 bb = kern_type_block_bytes(type);
	size_t	 be = kern_type_block_elems(type);
	size_t	 nb = cols / be;
	uint8_t	*g = (uint8_t *)w + (r / KA_G) * gb;	/* read only */
	size_t	 b;
	uint8_t	 blk[256];

	(void)rows;
	if (ka_is_float(type)) {
		/* gather 64 elements at a time, then widen them */
		size_t	 k, n;

		g += (r % KA_G) * bb;
		for (b = 0; b < nb; b += n) {
			n = nb - b < 64 ? nb - b : 64;
			for (k = 0; k < n; k++)
				memcpy(blk + k * bb, g + (b + k) * KA_G * bb,
				    bb);
			kern_dequant_row_ref(type, blk, dst + b, n);
		}
		return;
	}
	for (b = 0; b < nb; b++) {
		ka_block_xfer(type, g, nb, b, r % KA_G, blk, false);
		kern_dequant_row_ref(type, blk, dst + b * be, be);
	}
}

/* --- activations ------------------------------------------------------- */

static size_t
ka_act_row_bytes(uint32_t wtype, size_t n)
{
	if (kern_row_bytes(wtype, n) == 0)
		return 0;
	switch (kern_act_type(wtype)) {
	case KERN_TYPE_Q8_0:
		return ka_round64(n + n / 32 * 12);
	case KERN_TYPE_Q8_K:
		return ka_round64(n + n / 256 * 148);
	default:
		return ka_round64(n * sizeof(float));
	}
}

static bool
ka_act_same(uint32_t a, uint32_t b)
{
	return kern_act_type(a) == kern_act_type(b);
}

KA_INLINE __m512
ka_abs(__m512 v)
{
	return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v),
	    _mm512_set1_epi32(0x7fffffff)));
}

/* Q8_0 blocks of 32, as act.c's act_quantize_q8_0. */
static void
ka_quantize_q8_0(const float *x, uint8_t *xq, size_t n)
{
	size_t	 nb = n / 32, b;
	int8_t	*qs = (int8_t *)xq;
	float	*xd = (float *)(xq + n);
	int32_t	*b8 = (int32_t *)(xq + n + 4 * nb);
	int32_t	*b128 = (int32_t *)(xq + n + 8 * nb);

	for (b = 0; b < nb; b++) {
		__m512	 v0 = _mm512_loadu_ps(x + 32 * b);
		__m512	 v1 = _mm512_loadu_ps(x + 32 * b + 16);
		__m512i	 q0, q1;
		float	 amax, d, id;
		int32_t	 sum;

		amax = _mm512_reduce_max_ps(_mm512_max_ps(ka_abs(v0),
		    ka_abs(v1)));
		d = amax / 127.0f;
		id = d != 0.0f ? 1.0f / d : 0.0f;
		q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
		q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
		_mm_storeu_si128((__m128i *)(qs + 32 * b),
		    _mm512_cvtepi32_epi8(q0));
		_mm_storeu_si128((__m128i *)(qs + 32 * b + 16),
		    _mm512_cvtepi32_epi8(q1));
		sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
		xd[b] = kern_fp16_to_fp32(kern_fp32_to_fp16(d));
		b8[b] = -8 * sum;
		b128[b] = -128 * sum;
	}
}

/* Q8_K blocks of 256, as act.c's act_quantize_q8_k. */
static void
ka_quantize_q8_k(const float *x, uint8_t *xq, size_t n)
{
	size_t	 nb = n / 256, b;
	int	 i;
	int8_t	*qs = (int8_t *)xq;
	float	*xd = (float *)(xq + n);
	int32_t	*pairs = (int32_t *)(xq + n + 4 * nb);
	int32_t	*b32 = (int32_t *)(xq + n + 20 * nb);

	for (b = 0; b < nb; b++) {
		const float	*xb = x + 256 * b;
		__m512		 mx = _mm512_setzero_ps(), is;
		__m512i		 lo = _mm512_set1_epi32(-127);
		__m512i		 hi = _mm512_set1_epi32(127);
		int32_t		 s16[16], s8[32];
		float		 amax, max = 0.0f, iscale;

		for (i = 0; i < 16; i++)
			mx = _mm512_max_ps(mx, ka_abs(_mm512_loadu_ps(xb +
			    16 * i)));
		amax = _mm512_reduce_max_ps(mx);
		if (amax == 0.0f) {
			memset(qs + 256 * b, 0, 256);
			xd[b] = 0.0f;
			memset(pairs + 4 * b, 0, 16);
			memset(b32 + 32 * b, 0, 128);
			continue;
		}
		/* the first element of that magnitude gives the sign */
		for (i = 0; i < 16; i++) {
			__mmask16 k = _mm512_cmp_ps_mask(ka_abs(
			    _mm512_loadu_ps(xb + 16 * i)),
			    _mm512_set1_ps(amax), _CMP_EQ_OQ);

			if (k != 0) {
				max = xb[16 * i + __builtin_ctz(k)];
				break;
			}
		}
		iscale = -127.0f / max;
		is = _mm512_set1_ps(iscale);
		for (i = 0; i < 16; i++) {
			__m512i	 q = _mm512_cvtps_epi32(_mm512_mul_ps(is,
			    _mm512_loadu_ps(xb + 16 * i)));

			q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
			_mm_storeu_si128((__m128i *)(qs + 256 * b + 16 * i),
			    _mm512_cvtepi32_epi8(q));
		}
		/* 8-element sums: vpsadbw of q + 128 against 0, less 1024 */
		for (i = 0; i < 4; i++) {
			__m512i	 u = _mm512_xor_si512(_mm512_loadu_si512(
			    qs + 256 * b + 64 * i), _mm512_set1_epi8(-128));
			__m512i	 sad = _mm512_sad_epu8(u, _mm512_setzero_si512());

			_mm256_storeu_si256((__m256i *)(s8 + 8 * i),
			    _mm256_sub_epi32(_mm512_cvtepi64_epi32(sad),
			    _mm256_set1_epi32(1024)));
		}
		for (i = 0; i < 16; i++)
			s16[i] = s8[2 * i] + s8[2 * i + 1];
		xd[b] = 1.0f / iscale;
		for (i = 0; i < 4; i++) {
			int32_t	 a = s16[4 * i] + s16[4 * i + 1];
			int32_t	 c = s16[4 * i + 2] + s16[4 * i + 3];

			pairs[4 * b + i] = (int32_t)((uint32_t)(uint16_t)a |
			    ((uint32_t)(uint16_t)c << 16));
		}
		for (i = 0; i < 32; i++)
			b32[32 * b + i] = -32 * s8[i];
	}
}

static void
ka_quantize_act(uint32_t wtype, const float *x, void *xq, size_t n)
{
	if (kern_row_bytes(wtype, n) == 0)
		return;
	switch (kern_act_type(wtype)) {
	case KERN_TYPE_Q8_0:
		ka_quantize_q8_0(x, xq, n);
		break;
	case KERN_TYPE_Q8_K:
		ka_quantize_q8_k(x, xq, n);
		break;
	default:
		memcpy(xq, x, n * sizeof(float));
		break;
	}
}

/* --- matrix products: tiles of 16 rows x nv vectors ---------------------- */

/*
 * acc += vpdpbusd(w, the 4 bytes at p in every lane), the broadcast
 * folded into the instruction's memory operand ({1to16}): compilers
 * otherwise load it with a separate vpbroadcastd, an extra vector
 * operation per multiply (7-14% slower tiles here).
 */
KA_INLINE __m512i
ka_dpbusd_bc(__m512i acc, __m512i w, const void *p)
{
	__asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w),
	    "m"(*(const int32_t *)p));
	return acc;
}

/*
 * One vector streams the weights from memory faster with the lines
 * KA_PF bytes ahead asked for (the hardware prefetchers alone leave a
 * single thread well short of the read bandwidth).
 */
KA_INLINE void
ka_prefetch(const void *p, size_t bytes)
{
	size_t	 i;

#pragma GCC unroll 8
	for (i = 0; i < bytes; i += 64)
		_mm_prefetch((const char *)p + KA_PF + i, _MM_HINT_T0);
}

/*
 * Q4_0: acc[v] (16 rows) = sum over blocks b, in order, of
 * (float)sumi * (dw * dx), sumi = sum(q * x) - 8 * sum(x).
 */
KA_INLINE void
ka_tile_q4_0(const uint8_t *wg, size_t cols, const uint8_t *x, size_t ab,
    const int nv, bool pf, __m512 *acc)
{
	const size_t	 nb = cols / 32;
	const uint16_t	*wd = (const uint16_t *)(wg + nb * 256);
	const __m512i	 m4 = _mm512_set1_epi8(0x0f);
	size_t		 b;
	int		 v, c;

#pragma GCC unroll 16
	for (v = 0; v < nv; v++)
		acc[v] = _mm512_setzero_ps();
	for (b = 0; b < nb; b++) {
		const uint8_t	*wq = wg + b * 256;
		__m512i		 lo[4], hi[4];
		__m512		 dw;

		if (pf) {
			ka_prefetch(wq, 256);
			ka_prefetch(wd + 16 * b, 32);
		}

#pragma GCC unroll 16
		for (c = 0; c < 4; c++) {
			__m512i	 w = _mm512_load_si512(wq + 64 * c);

			lo[c] = _mm512_and_si512(w, m4);
			hi[c] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
		}
		dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)
		    (wd + 16 * b)));
#pragma GCC unroll 8
		for (v = 0; v < nv; v++) {
			const uint8_t	*xv = x + (size_t)v * ab;
			const uint8_t	*xb = xv + 32 * b;
			const float	*xd = (const float *)(xv + cols);
			const int32_t	*bias = (const int32_t *)(xv + cols +
			    4 * nb);
			__m512i		 s = _mm512_set1_epi32(bias[b]);
			__m512i		 s1 = _mm512_setzero_si512();
			__m512		 t;

			/* two short chains instead of one long one */
			s = ka_dpbusd_bc(s, lo[0], xb);
			s1 = ka_dpbusd_bc(s1, lo[1], xb + 4);
			s = ka_dpbusd_bc(s, lo[2], xb + 8);
			s1 = ka_dpbusd_bc(s1, lo[3], xb + 12);
			s = ka_dpbusd_bc(s, hi[0], xb + 16);
			s1 = ka_dpbusd_bc(s1, hi[1], xb + 20);
			s = ka_dpbusd_bc(s, hi[2], xb + 24);
			s1 = ka_dpbusd_bc(s1, hi[3], xb + 28);
			s = _mm512_add_epi32(s, s1);
			t = _mm512_mul_ps(dw, _mm512_set1_ps(xd[b]));
			acc[v] = _mm512_add_ps(acc[v],
			    _mm512_mul_ps(_mm512_cvtepi32_ps(s), t));
		}
	}
}

/* Q8_0: as Q4_0 with weights + 128 and the -128 * sum(x) correction. */
KA_INLINE void
ka_tile_q8_0(const uint8_t *wg, size_t cols, const uint8_t *x, size_t ab,
    const int nv, bool pf, __m512 *acc)
{
	const size_t	 nb = cols / 32;
	const uint16_t	*wd = (const uint16_t *)(wg + nb * 512);
	size_t		 b;
	int		 v, c;

#pragma GCC unroll 16
	for (v = 0; v < nv; v++)
		acc[v] = _mm512_setzero_ps();
	for (b = 0; b < nb; b++) {
		const uint8_t	*wq = wg + b * 512;
		__m512i		 w[8];
		__m512		 dw;

		if (pf) {
			ka_prefetch(wq, 512);
			ka_prefetch(wd + 16 * b, 32);
		}

#pragma GCC unroll 16
		for (c = 0; c < 8; c++)
			w[c] = _mm512_load_si512(wq + 64 * c);
		dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)
		    (wd + 16 * b)));
#pragma GCC unroll 8
		for (v = 0; v < nv; v++) {
			const uint8_t	*xv = x + (size_t)v * ab;
			const uint8_t	*xb = xv + 32 * b;
			const float	*xd = (const float *)(xv + cols);
			const int32_t	*bias = (const int32_t *)(xv + cols +
			    8 * nb);
			__m512i		 s = _mm512_set1_epi32(bias[b]);
			__m512i		 s1 = _mm512_setzero_si512();
			__m512		 t;

			/* two short chains instead of one long one */
			s = ka_dpbusd_bc(s, w[0], xb);
			s1 = ka_dpbusd_bc(s1, w[1], xb + 4);
			s = ka_dpbusd_bc(s, w[2], xb + 8);
			s1 = ka_dpbusd_bc(s1, w[3], xb + 12);
			s = ka_dpbusd_bc(s, w[4], xb + 16);
			s1 = ka_dpbusd_bc(s1, w[5], xb + 20);
			s = ka_dpbusd_bc(s, w[6], xb + 24);
			s1 = ka_dpbusd_bc(s1, w[7], xb + 28);
			s = _mm512_add_epi32(s, s1);
			t = _mm512_mul_ps(dw, _mm512_set1_ps(xd[b]));
			acc[v] = _mm512_add_ps(acc[v],
			    _mm512_mul_ps(_mm512_cvtepi32_ps(s), t));
		}
	}
}

/*
 * Q4_K: per block, sumi = sum over sub-blocks of sc * sum(q * x) and
 * summ = sum of m * (32-sums of x); acc += (d*dx)*sumi - (dmin*dx)*summ.
 */
KA_INLINE void
ka_tile_q4_k(const uint8_t *wg, size_t cols, const uint8_t *x, size_t ab,
    const int nv, bool pf, __m512 *acc)
{
	const size_t	 nb = cols / 256;
	const uint8_t	*wdd = wg + nb * 2304;
	const __m512i	 m4 = _mm512_set1_epi8(0x0f);
	size_t		 b;
	int		 v, c, sb;

#pragma GCC unroll 16
	for (v = 0; v < nv; v++)
		acc[v] = _mm512_setzero_ps();
	for (b = 0; b < nb; b++) {
		const uint8_t	*tile = wg + b * 2304;
		__m512i		 sumi[8];
		__m512		 d, dmin;

		if (pf) {
			/* the rest with the sub-blocks: few lines at a time */
			ka_prefetch(tile + 2048, 256);
			ka_prefetch(wdd + 64 * b, 64);
		}

#pragma GCC unroll 16
		for (v = 0; v < nv; v++)
			sumi[v] = _mm512_setzero_si512();
		/* sub-block s: the low (s even) or high nibbles of vectors
		 * 8(s/2) .. 8(s/2)+7 */
		for (sb = 0; sb < 8; sb++) {
			const uint8_t	*wq = tile + (sb / 2) * 8 * 64;
			__m512i		 w[8], sc;

			if (pf)
				ka_prefetch(tile + 256 * sb, 256);

#pragma GCC unroll 16
			for (c = 0; c < 8; c++) {
				__m512i	 t = _mm512_load_si512(wq + c * 64);

				w[c] = _mm512_and_si512(sb % 2 ?
				    _mm512_srli_epi16(t, 4) : t, m4);
			}
			sc = _mm512_cvtepu8_epi32(_mm_load_si128(
			    (const __m128i *)(tile + 2048 + 16 * sb)));
#pragma GCC unroll 8
			for (v = 0; v < nv; v++) {
				const uint8_t	*xb = x + (size_t)v * ab +
				    256 * b + 32 * sb;
				__m512i		 a0 = _mm512_setzero_si512();
				__m512i		 a1 = _mm512_setzero_si512();

				/* two short chains instead of one long one */
#pragma GCC unroll 16
				for (c = 0; c < 8; c += 2) {
					a0 = ka_dpbusd_bc(a0, w[c], xb + 4 * c);
					a1 = ka_dpbusd_bc(a1, w[c + 1],
					    xb + 4 * c + 4);
				}
				sumi[v] = _mm512_add_epi32(sumi[v],
				    _mm512_mullo_epi32(_mm512_add_epi32(a0, a1),
				    sc));
			}
		}
		d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)
		    (wdd + 64 * b)));
		dmin = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)
		    (wdd + 64 * b + 32)));
		{
			__m512i	 mp[4];

#pragma GCC unroll 16
			for (c = 0; c < 4; c++)
				mp[c] = _mm512_cvtepu8_epi16(_mm256_load_si256(
				    (const __m256i *)(tile + 2176 + 32 * c)));
#pragma GCC unroll 8
			for (v = 0; v < nv; v++) {
				const uint8_t	*xv = x + (size_t)v * ab;
				const float	*xd = (const float *)(xv + cols);
				const int32_t	*pr = (const int32_t *)(xv +
				    cols + 4 * nb) + 4 * b;
				__m512i		 summ = _mm512_setzero_si512();
				__m512		 dx = _mm512_set1_ps(xd[b]);
				__m512		 f1, f2;

#pragma GCC unroll 16
				for (c = 0; c < 4; c++)
					summ = _mm512_dpwssd_epi32(summ, mp[c],
					    _mm512_set1_epi32(pr[c]));
				f1 = _mm512_mul_ps(_mm512_mul_ps(d, dx),
				    _mm512_cvtepi32_ps(sumi[v]));
				f2 = _mm512_mul_ps(_mm512_mul_ps(dmin, dx),
				    _mm512_cvtepi32_ps(summ));
				acc[v] = _mm512_add_ps(acc[v],
				    _mm512_sub_ps(f1, f2));
			}
		}
	}
}

/*
 * Q6_K: per block, sumi = sum over 16 sub-blocks of scale * (sum(q * x)
 * - 32 * sum(x)); acc += (d*dx) * sumi. Each sub-block goes as two
 * halves of 8 elements: |sum((q - 32) * x)| <= 8 * 32 * 127 fits in 16
 * bits, so vpdpwssd with the scale in the low half of each lane (zero in
 * the high half) multiplies and accumulates exactly in one instruction
 * (vpmulld + vpaddd took three uops). Sub-block 8h + 2k + half holds
 * elements 128h + 32k + 16half .. +15: quads c = 4half .. 4half+3, in
 * vector (8h+c)*3 + k (k < 3: AND 0x3f) or built from the top bit pairs
 * of the three (k = 3).
 */
KA_INLINE void
ka_tile_q6_k(const uint8_t *wg, size_t cols, const uint8_t *x, size_t ab,
    const int nv, bool pf, __m512 *acc)
{
	const size_t	 nb = cols / 256;
	const uint16_t	*wd = (const uint16_t *)(wg + nb * 3328);
	const __m512i	 m03 = _mm512_set1_epi8(0x03);
	const __m512i	 m0f = _mm512_set1_epi8(0x0f);
	const __m512i	 m3f = _mm512_set1_epi8(0x3f);
	const __m512i	 m16 = _mm512_set1_epi32(0xffff);
	size_t		 b;
	int		 v, c, h, k, half;

#pragma GCC unroll 16
	for (v = 0; v < nv; v++)
		acc[v] = _mm512_setzero_ps();
	for (b = 0; b < nb; b++) {
		const uint8_t	*tile = wg + b * 3328;
		__m512i		 sumi[8];
		__m512		 d;

		if (pf) {
			/* the rest with the sub-blocks: few lines at a time */
			ka_prefetch(tile + 3072, 256);
			ka_prefetch(wd + 16 * b, 32);
		}

#pragma GCC unroll 16
		for (v = 0; v < nv; v++)
			sumi[v] = _mm512_setzero_si512();
		for (h = 0; h < 2; h++) {
#pragma GCC unroll 4
			for (k = 0; k < 4; k++) {
				for (half = 0; half < 2; half++) {
					const int	 sb = 8 * h + 2 * k + half;
					__m512i		 q[4], sc;

					if (pf)
						ka_prefetch(tile + 192 * sb,
						    192);

#pragma GCC unroll 4
					for (c = 0; c < 4; c++) {
						const uint8_t *qv = tile +
						    (h * 8 + 4 * half + c) * 192;
						__m512i	 A, B, C;

						if (k < 3) {
							q[c] = _mm512_and_si512(
							    _mm512_load_si512(
							    qv + 64 * k), m3f);
							continue;
						}
						/* top pairs of A, B, C to bits
						 * 0-1, 2-3, 4-5 (c ? a : b) */
						A = _mm512_srli_epi16(
						    _mm512_load_si512(qv), 6);
						B = _mm512_srli_epi16(
						    _mm512_load_si512(qv + 64), 4);
						C = _mm512_srli_epi16(
						    _mm512_load_si512(qv + 128), 2);
						A = _mm512_ternarylogic_epi32(A,
						    B, m03, 0xe4);
						A = _mm512_ternarylogic_epi32(A,
						    C, m0f, 0xe4);
						q[c] = _mm512_and_si512(A, m3f);
					}
					/* int16 scale, zero high half */
					sc = _mm512_and_si512(
					    _mm512_cvtepi8_epi32(_mm_load_si128(
					    (const __m128i *)(tile + 3072 +
					    16 * sb))), m16);
#pragma GCC unroll 8
					for (v = 0; v < nv; v++) {
						const uint8_t *xv = x +
						    (size_t)v * ab;
						const uint8_t *xb = xv +
						    256 * b + 128 * h + 32 * k +
						    16 * half;
						const int32_t *b32 =
						    (const int32_t *)(xv +
						    cols + 20 * nb) + 32 * b;
						__m512i	 a = _mm512_set1_epi32(
						    b32[2 * sb]);
						__m512i	 a1 = _mm512_set1_epi32(
						    b32[2 * sb + 1]);

						a = ka_dpbusd_bc(a, q[0], xb);
						a1 = ka_dpbusd_bc(a1, q[2], xb + 8);
						a = ka_dpbusd_bc(a, q[1], xb + 4);
						a1 = ka_dpbusd_bc(a1, q[3], xb + 12);
						sumi[v] = _mm512_dpwssd_epi32(
						    sumi[v], a, sc);
						sumi[v] = _mm512_dpwssd_epi32(
						    sumi[v], a1, sc);
					}
				}
			}
		}
		d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)
		    (wd + 16 * b)));
#pragma GCC unroll 8
		for (v = 0; v < nv; v++) {
			const float	*xd = (const float *)(x +
			    (size_t)v * ab + cols);

			acc[v] = _mm512_add_ps(acc[v], _mm512_mul_ps(
			    _mm512_mul_ps(d, _mm512_set1_ps(xd[b])),
			    _mm512_cvtepi32_ps(sumi[v])));
		}
	}
}

/* 16 weights of one element (column k) of a float group. */
KA_INLINE __m512
ka_wload(uint32_t type, const uint8_t *wg, size_t k)
{
	switch (type) {
	case KERN_TYPE_F16:
		return _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)
		    (wg + 32 * k)));
	case KERN_TYPE_BF16:
		return _mm512_castsi512_ps(_mm512_slli_epi32(
		    _mm512_cvtepu16_epi32(_mm256_load_si256((const __m256i *)
		    (wg + 32 * k))), 16));
	default:
		return _mm512_load_ps((const float *)(wg + 64 * k));
	}
}

/*
 * Float weights, ng groups (adjacent, gb bytes apart) x nv vectors:
 * acc[g*nv + v] = fma over k in order of w[k] * x[k], from +0.
 */
KA_INLINE void
ka_tile_f(uint32_t type, const uint8_t *wg, size_t gb, size_t cols,
    const uint8_t *x, size_t ab, const int ng, const int nv, bool pf,
    __m512 *acc)
{
	size_t	 k;
	int	 g, v;

#pragma GCC unroll 16
	for (v = 0; v < ng * nv; v++)
		acc[v] = _mm512_setzero_ps();
	for (k = 0; k < cols; k++) {
		__m512	 w[4];

		if (pf && k % (type == KERN_TYPE_F32 ? 1 : 2) == 0)
			for (g = 0; g < ng; g++)
				ka_prefetch(wg + (size_t)g * gb + 64 * k /
				    (type == KERN_TYPE_F32 ? 1 : 2), 64);

#pragma GCC unroll 16
		for (g = 0; g < ng; g++)
			w[g] = ka_wload(type, wg + (size_t)g * gb, k);
#pragma GCC unroll 8
		for (v = 0; v < nv; v++) {
			__m512	 xk = _mm512_set1_ps(((const float *)(x +
			    (size_t)v * ab))[k]);

#pragma GCC unroll 16
			for (g = 0; g < ng; g++)
				acc[g * nv + v] = _mm512_fmadd_ps(w[g], xk,
				    acc[g * nv + v]);
		}
	}
}

/* y rows [row0, row0+16) masked by k, vector i: the epilogue. */
KA_INLINE void
ka_store(const struct kern_mm *mm, size_t i, size_t row0, __mmask16 k,
    __m512 s)
{
	float	*y = mm->y + i * mm->ldy + row0;

	if (mm->bias != NULL)
		s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(k, mm->bias + row0));
	if (mm->add)
		s = _mm512_add_ps(_mm512_maskz_loadu_ps(k, y), s);
	_mm512_mask_storeu_ps(y, k, s);
}

/* Rows of group g that lie in [r0, r1), as a lane mask. */
static __mmask16
ka_group_mask(size_t g, size_t r0, size_t r1)
{
	size_t	 lo = g * KA_G, hi = lo + KA_G;
	uint32_t m = 0xffff;

	if (r1 < hi)
		m &= (1u << (r1 - lo)) - 1;
	if (r0 > lo)
		m &= ~((1u << (r0 - lo)) - 1);
	return (__mmask16)m;
}

#define KA_SWITCH_NV(nv, X) switch (nv) {				\
	case 1: X(1); break; case 2: X(2); break;			\
	case 3: X(3); break; case 4: X(4); break;			\
	case 5: X(5); break; case 6: X(6); break;			\
	case 7: X(7); break; default: X(8); break;			\
}
#define KA_SWITCH_NV4(nv, X) switch (nv) {				\
	case 1: X(1); break; case 2: X(2); break;			\
	case 3: X(3); break; default: X(4); break;			\
}

/* One group x up to 8 vectors (pf: prefetch the weights ahead). */
static void
ka_mm_group_q(const struct kern_mm *mm, const uint8_t *wg, size_t g,
    size_t i0, size_t nv, bool pf, __mmask16 k)
{
	const size_t	 ab = ka_act_row_bytes(mm->type, mm->cols);
	const uint8_t	*x = (const uint8_t *)mm->xq + i0 * ab;
	__m512		 acc[8];
	size_t		 v;

	switch (mm->type) {
	case KERN_TYPE_Q4_0:
#define X(n) ka_tile_q4_0(wg, mm->cols, x, ab, n, pf, acc)
		KA_SWITCH_NV(nv, X);
#undef X
		break;
	case KERN_TYPE_Q8_0:
#define X(n) ka_tile_q8_0(wg, mm->cols, x, ab, n, pf, acc)
		KA_SWITCH_NV(nv, X);
#undef X
		break;
	case KERN_TYPE_Q4_K:
#define X(n) ka_tile_q4_k(wg, mm->cols, x, ab, n, pf, acc)
		KA_SWITCH_NV(nv, X);
#undef X
		break;
	case KERN_TYPE_Q6_K:
#define X(n) ka_tile_q6_k(wg, mm->cols, x, ab, n, pf, acc)
		KA_SWITCH_NV(nv, X);
#undef X
		break;
	default:
		return;
	}
#pragma GCC unroll 16
	for (v = 0; v < nv; v++)
		ka_store(mm, i0 + v, g * KA_G, k, acc[v]);
}

/* ng adjacent groups x nv vectors of float weights. */
static void
ka_mm_group_f(const struct kern_mm *mm, const uint8_t *wg, size_t gb,
    size_t g, int ng, size_t i0, size_t nv, bool pf, size_t r0, size_t r1)
{
	const size_t	 ab = ka_act_row_bytes(mm->type, mm->cols);
	const uint8_t	*x = (const uint8_t *)mm->xq + i0 * ab;
	__m512		 acc[16];
	size_t		 v;
	int		 j;

#define TF(t, G, n) ka_tile_f(t, wg, gb, mm->cols, x, ab, G, n, pf, acc)
#define TYPES(G, n) do {						\
	if (mm->type == KERN_TYPE_F16) TF(KERN_TYPE_F16, G, n);		\
	else if (mm->type == KERN_TYPE_BF16) TF(KERN_TYPE_BF16, G, n);	\
	else TF(KERN_TYPE_F32, G, n);					\
} while (0)
	if (ng == 4) {
#define X(n) TYPES(4, n)
		KA_SWITCH_NV4(nv, X);
#undef X
	} else if (ng == 2) {
#define X(n) TYPES(2, n)
		KA_SWITCH_NV(nv, X);
#undef X
	} else {
#define X(n) TYPES(1, n)
		KA_SWITCH_NV(nv, X);
#undef X
	}
#undef TYPES
#undef TF
	for (j = 0; j < ng; j++)
#pragma GCC unroll 16
		for (v = 0; v < nv; v++)
			ka_store(mm, i0 + v, (g + j) * KA_G,
			    ka_group_mask(g + j, r0, r1), acc[j * nv + v]);
}

/* Vectors per pass over a thread's groups: their activations stay in L2. */
#define KA_XCHUNK	128
/* Columns of float weights widened at a time for many vectors, and how
 * many vectors are many (fewer convert as they go). */
#define KA_KC		256
#define KA_PANEL_MIN	32
#define KA_PNG		3	/* groups per float panel at most */

/*
 * Float weights, many vectors: acc[v*KA_PNG + g] += w[k] x_v[k] for k in
 * 0 .. kc-1 of one slice of columns, w widened already (wf: ng panels of
 * [kc][16] floats, KA_KC*16 apart). The same fused multiply-adds in the
 * same order as ka_tile_f, so the same bits. 3 groups x 8 vectors: 24
 * accumulators, 11 loads per 24 multiply-adds.
 */
KA_INLINE void
ka_tile_fk(const float *wf, const int ng, size_t kc, const uint8_t *x,
    size_t ab, const int nv, __m512 *accb)
{
	__m512	 acc[KA_PNG * 8];
	size_t	 k;
	int	 g, v;

#pragma GCC unroll 24
	for (v = 0; v < nv; v++)
#pragma GCC unroll 4
		for (g = 0; g < ng; g++)
			acc[g * nv + v] = accb[KA_PNG * v + g];
	for (k = 0; k < kc; k++) {
		__m512	 w[KA_PNG];

#pragma GCC unroll 4
		for (g = 0; g < ng; g++)
			w[g] = _mm512_load_ps(wf + (size_t)g * KA_KC * 16 +
			    16 * k);
#pragma GCC unroll 8
		for (v = 0; v < nv; v++) {
			__m512	 xk = _mm512_set1_ps(((const float *)(x +
			    (size_t)v * ab))[k]);

#pragma GCC unroll 4
			for (g = 0; g < ng; g++)
				acc[g * nv + v] = _mm512_fmadd_ps(w[g], xk,
				    acc[g * nv + v]);
		}
	}
#pragma GCC unroll 24
	for (v = 0; v < nv; v++)
#pragma GCC unroll 4
		for (g = 0; g < ng; g++)
			accb[KA_PNG * v + g] = acc[g * nv + v];
}

/*
 * ng (1 to KA_PNG) groups x the vectors i0 .. i1-1 (at most KA_XCHUNK) of
 * float weights: KA_KC columns at a time are widened to float once, then
 * every vector goes through them; partial sums wait in accb between
 * slices (stored and reloaded exactly, so the order of the sums is that
 * of ka_tile_f).
 */
static void
ka_mm_f_panel(const struct kern_mm *mm, size_t gb, size_t g, int ng,
    size_t i0, size_t i1, size_t r0, size_t r1)
{
	const size_t	 ab = ka_act_row_bytes(mm->type, mm->cols);
	const uint8_t	*wg = (const uint8_t *)mm->w + g * gb;
	float		 wf[KA_PNG * KA_KC * 16] __attribute__((aligned(64)));
	__m512		 accb[KA_PNG * KA_XCHUNK];
	size_t		 k0, kc, k, i, nv;
	int		 j;

	for (i = 0; i < KA_PNG * (i1 - i0); i++)
		accb[i] = _mm512_setzero_ps();
	for (k0 = 0; k0 < mm->cols; k0 += kc) {
		kc = mm->cols - k0 < KA_KC ? mm->cols - k0 : KA_KC;
		for (j = 0; j < ng; j++) {
			const uint8_t	*p = wg + (size_t)j * gb;

			switch (mm->type) {
			case KERN_TYPE_F16:
				for (k = 0; k < kc; k++) {
					if (k % 2 == 0)
						ka_prefetch(p + 32 * (k0 + k),
						    64);
					_mm512_store_ps(wf + j * KA_KC * 16 +
					    16 * k, ka_wload(KERN_TYPE_F16, p,
					    k0 + k));
				}
				break;
			case KERN_TYPE_BF16:
				for (k = 0; k < kc; k++) {
					if (k % 2 == 0)
						ka_prefetch(p + 32 * (k0 + k),
						    64);
					_mm512_store_ps(wf + j * KA_KC * 16 +
					    16 * k, ka_wload(KERN_TYPE_BF16, p,
					    k0 + k));
				}
				break;
			default:
				memcpy(wf + j * KA_KC * 16, p + 64 * k0,
				    64 * kc);
				break;
			}
		}
		for (i = i0; i < i1; i += nv) {
			const uint8_t	*x = (const uint8_t *)mm->xq + i * ab +
			    4 * k0;
			__m512		*a = accb + KA_PNG * (i - i0);

			nv = i1 - i < 8 ? i1 - i : 8;
			if (ng == 3) {
#define X(n) ka_tile_fk(wf, 3, kc, x, ab, n, a)
				KA_SWITCH_NV(nv, X);
#undef X
			} else if (ng == 2) {
#define X(n) ka_tile_fk(wf, 2, kc, x, ab, n, a)
				KA_SWITCH_NV(nv, X);
#undef X
			} else {
#define X(n) ka_tile_fk(wf, 1, kc, x, ab, n, a)
				KA_SWITCH_NV(nv, X);
#undef X
			}
		}
	}
	for (i = i0; i < i1; i++)
		for (j = 0; j < ng; j++)
			ka_store(mm, i, (g + j) * KA_G, ka_group_mask(g + j, r0,
			    r1), accb[KA_PNG * (i - i0) + j]);
}

static void
ka_matmul(const struct kern_mm *mm, size_t r0, size_t r1)
{
	const size_t	 gb = ka_group_bytes(mm->type, mm->cols);
	const bool	 is_f = kern_act_type(mm->type) == KERN_TYPE_F32;
	size_t		 g0 = r0 / KA_G, g1 = (r1 + KA_G - 1) / KA_G;
	size_t		 i0, i1, i, g, nv, vt;

	if (r0 >= r1 || mm->n_x == 0 || gb == 0)
		return;
	for (i0 = 0; i0 < mm->n_x; i0 = i1) {
		i1 = i0 + KA_XCHUNK < mm->n_x ? i0 + KA_XCHUNK : mm->n_x;
		if (is_f && i1 - i0 >= KA_PANEL_MIN) {
			int	 n;

			for (g = g0; g < g1; g += (size_t)n) {
				n = g1 - g >= KA_PNG ? KA_PNG : (int)(g1 - g);
				ka_mm_f_panel(mm, gb, g, n, i0, i1, r0, r1);
			}
			continue;
		}
		if (is_f) {
			/* few vectors: 4 groups at a time for enough
			 * independent sums; more: 2 groups x 8 */
			int	 ngw = i1 - i0 <= 4 ? 4 : 2, n;

			vt = ngw == 4 ? 4 : 8;
			for (g = g0; g < g1; g += (size_t)n) {
				const uint8_t *wg = (const uint8_t *)mm->w +
				    g * gb;

				n = g1 - g >= (size_t)ngw ? ngw :
				    g1 - g >= 2 ? 2 : 1;
				for (i = i0; i < i1; i += nv) {
					nv = i1 - i < vt ? i1 - i : vt;
					ka_mm_group_f(mm, wg, gb, g, n, i, nv,
					    i == i0, r0, r1);
				}
			}
			continue;
		}
		vt = 8;
		for (g = g0; g < g1; g++) {
			const uint8_t	*wg = (const uint8_t *)mm->w + g * gb;
			__mmask16	 k = ka_group_mask(g, r0, r1);

			for (i = i0; i < i1; i += nv) {
				nv = i1 - i < vt ? i1 - i : vt;
				/* the first tile streams the weights in */
				ka_mm_group_q(mm, wg, g, i, nv, i == i0, k);
			}
		}
	}
}

/* --- element-wise -------------------------------------------------------- */

/*
 * expf on 16 lanes: x = n ln2 + r, |r| <= ln2/2, e^r by Cephes' expf
 * polynomial, times 2^n (vscalefps: overflow to inf, underflow to 0).
 * Within about 2 ulp of expf.
 */
KA_INLINE __m512
ka_exp(__m512 x)
{
	__m512	 n, r, p, r2;

	x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(89.0f)),
	    _mm512_set1_ps(-104.0f));
	n = _mm512_roundscale_ps(_mm512_mul_ps(x,
	    _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT |
	    _MM_FROUND_NO_EXC);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
	r2 = _mm512_mul_ps(r, r);
	p = _mm512_set1_ps(1.9875691500e-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
	p = _mm512_fmadd_ps(p, r2, r);
	p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

/* gate = gate / (1 + exp(-gate)) * up, every lane the same way. */
static void
ka_silu_mul(float *gate, const float *up, size_t n)
{
	const __m512	 one = _mm512_set1_ps(1.0f);
	size_t		 i;

	for (i = 0; i < n; i += 16) {
		__mmask16 k = n - i >= 16 ? 0xffff :
		    (__mmask16)((1u << (n - i)) - 1);
		__m512	 g = _mm512_maskz_loadu_ps(k, gate + i);
		__m512	 u = _mm512_maskz_loadu_ps(k, up + i);
		__m512	 e = ka_exp(_mm512_sub_ps(_mm512_setzero_ps(), g));

		g = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u);
		_mm512_mask_storeu_ps(gate + i, k, g);
	}
}

static void
ka_to_fp16(uint16_t *dst, const float *src, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i += 16) {
		__mmask16 k = n - i >= 16 ? 0xffff :
		    (__mmask16)((1u << (n - i)) - 1);
		__m256i	 h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, src + i),
		    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);

		_mm256_mask_storeu_epi16(dst + i, k, h);
	}
}

/* --- attention ------------------------------------------------------------ */

#define KA_HD_MAX	256	/* head dims kept in registers */

/*
 * out[t] = sum of the 16 lanes of v[t], for 16 vectors: a tree of
 * shuffles and adds (halves, then 128-bit quarters, then pairs, then
 * singles), the lanes coming out in a fixed permuted order that the final
 * vpermps undoes. Each key's sum is always added in the same order.
 */
KA_INLINE __m512
ka_reduce16(__m512 *v)
{
	__m512	 w[8], x[4], y[2], z;
	int	 i;

#pragma GCC unroll 8
	for (i = 0; i < 8; i++)		/* lanes 0-7: key 2i, 8-15: 2i+1 */
		w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i],
		    v[2 * i + 1], 0x44), _mm512_shuffle_f32x4(v[2 * i],
		    v[2 * i + 1], 0xee));
#pragma GCC unroll 4
	for (i = 0; i < 4; i++)		/* quarter q: key 4i + q */
		x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i],
		    w[2 * i + 1], 0x88), _mm512_shuffle_f32x4(w[2 * i],
		    w[2 * i + 1], 0xdd));
#pragma GCC unroll 2
	for (i = 0; i < 2; i++)	/* quarter q: lanes 0, 2 key 8i+q, 1, 3 8i+4+q */
		y[i] = _mm512_add_ps(_mm512_unpacklo_ps(x[2 * i],
		    x[2 * i + 1]), _mm512_unpackhi_ps(x[2 * i], x[2 * i + 1]));
	/* quarter q, lane l: key 4l + q */
	z = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(
	    _mm512_castps_pd(y[0]), _mm512_castps_pd(y[1]))),
	    _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(y[0]),
	    _mm512_castps_pd(y[1]))));
	/* lane 4q + l holds key 4l + q: transpose the 4x4 */
	return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9,
	    13, 2, 6, 10, 14, 3, 7, 11, 15), z);
}

/* Online softmax state of one head. */
struct ka_head {
	float	 m;			/* running maximum score */
	float	 l;			/* running sum of exp(s - m) */
};

/*
 * One block of nt (1..16) raw dot products s into head hh's online
 * softmax: scales them, writes exp(score - new max) to p[16] (0 past nt)
 * and updates m and l; returns the factor the head's output so far must
 * be multiplied by.
 */
static inline float
ka_softmax_step(struct ka_head *hh, __m512 s, float scale, size_t nt,
    float *p)
{
	__mmask16 live = (__mmask16)((1u << nt) - 1);
	__m512	 e;
	float	 mb, mn, corr;

	s = _mm512_mul_ps(s, _mm512_set1_ps(scale));
	s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), live, s);
	mb = _mm512_reduce_max_ps(s);
	mn = mb > hh->m ? mb : hh->m;
	corr = expf(hh->m - mn);
	e = _mm512_maskz_mov_ps(live, ka_exp(_mm512_sub_ps(s,
	    _mm512_set1_ps(mn))));
	_mm512_store_ps(p, e);
	hh->l = hh->l * corr + _mm512_reduce_add_ps(e);
	hh->m = mn;
	return corr;
}

/*
 * The 16 x 16 floats r[key][dim] -> r[dim][key]: unpacks within 128-bit
 * lanes give rows of 4 keys per lane, then two rounds of 128-bit lane
 * shuffles put the 4 lanes of each dim together.
 */
KA_INLINE void
ka_transpose16(__m512 *r)
{
	__m512	 a[16], b[16], e0, e1, e2, e3;
	int	 i, c;

#pragma GCC unroll 8
	for (i = 0; i < 8; i++) {
		a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
	/* b[4m + c], lane L: dim 4L + c of keys 4m .. 4m+3 */
#pragma GCC unroll 4
	for (i = 0; i < 4; i++) {
		__m512d	 x0 = _mm512_castps_pd(a[4 * i]);
		__m512d	 x1 = _mm512_castps_pd(a[4 * i + 1]);
		__m512d	 x2 = _mm512_castps_pd(a[4 * i + 2]);
		__m512d	 x3 = _mm512_castps_pd(a[4 * i + 3]);

		b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, x2));
		b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, x2));
		b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(x1, x3));
		b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(x1, x3));
	}
#pragma GCC unroll 4
	for (c = 0; c < 4; c++) {
		e0 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x44);
		e1 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xee);
		e2 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x44);
		e3 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xee);
		r[c] = _mm512_shuffle_f32x4(e0, e2, 0x88);
		r[4 + c] = _mm512_shuffle_f32x4(e0, e2, 0xdd);
		r[8 + c] = _mm512_shuffle_f32x4(e1, e3, 0x88);
		r[12 + c] = _mm512_shuffle_f32x4(e1, e3, 0xdd);
	}
}

/*
 * Raw scores of n (1..4) query heads against one block of 16 keys held
 * transposed (kt[d][16]): per head four sums, dims d = j mod 4 in order,
 * added as (s0 + s1) + (s2 + s3). The same operations for a head
 * whichever heads share the call.
 */
KA_INLINE void
ka_scores(const float *const *q, const int n, size_t hd, const float *kt,
    __m512 *s)
{
	__m512	 c[4][4];
	size_t	 d;
	int	 u, j;

#pragma GCC unroll 4
	for (u = 0; u < n; u++)
#pragma GCC unroll 4
		for (j = 0; j < 4; j++)
			c[u][j] = _mm512_setzero_ps();
	for (d = 0; d + 4 <= hd; d += 4) {
#pragma GCC unroll 4
		for (j = 0; j < 4; j++) {
			__m512	 kv = _mm512_load_ps(kt + 16 * (d + j));

#pragma GCC unroll 4
			for (u = 0; u < n; u++)
				c[u][j] = _mm512_fmadd_ps(_mm512_set1_ps(
				    q[u][d + j]), kv, c[u][j]);
		}
	}
	for (; d < hd; d++) {
		__m512	 kv = _mm512_load_ps(kt + 16 * d);

#pragma GCC unroll 4
		for (u = 0; u < n; u++)
			c[u][d % 4] = _mm512_fmadd_ps(_mm512_set1_ps(q[u][d]),
			    kv, c[u][d % 4]);
	}
#pragma GCC unroll 4
	for (u = 0; u < n; u++)
		s[u] = _mm512_add_ps(_mm512_add_ps(c[u][0], c[u][1]),
		    _mm512_add_ps(c[u][2], c[u][3]));
}

/*
 * o_u = o_u * corr[u] + sum over t < nk[u], in order, of p[u][t] * v_t
 * for n (1..4) heads against one block of widened values (vf[16][hd]);
 * up to four vectors of each head's output at a time, so 4n independent
 * sums are in flight, each in the order one head alone would take.
 */
KA_INLINE void
ka_pv(float *const *o, const int n, const size_t *nk, const float *corr,
    float (*p)[16], const float *vf, size_t nvec, __mmask16 klast)
{
	size_t	 j0, nmin = 16, nmax = 0, tt;
	int	 u, jj;

#pragma GCC unroll 4
	for (u = 0; u < n; u++) {
		nmin = nk[u] < nmin ? nk[u] : nmin;
		nmax = nk[u] > nmax ? nk[u] : nmax;
	}
	for (j0 = 0; j0 < nvec; j0 += 4) {
		__m512		 acc[4][4];
		__mmask16	 km[4];

#pragma GCC unroll 4
		for (jj = 0; jj < 4; jj++)
			km[jj] = j0 + jj >= nvec ? 0 : j0 + jj + 1 == nvec ?
			    klast : 0xffff;
#pragma GCC unroll 4
		for (u = 0; u < n; u++)
#pragma GCC unroll 4
			for (jj = 0; jj < 4; jj++)
				acc[u][jj] = _mm512_mul_ps(_mm512_maskz_loadu_ps(
				    km[jj], o[u] + 16 * (j0 + jj)),
				    _mm512_set1_ps(corr[u]));
		/* every head has keys 0 .. nmin-1; past them, some */
		for (tt = 0; tt < nmax; tt++) {
#pragma GCC unroll 4
			for (jj = 0; jj < 4; jj++) {
				__m512	 v = _mm512_load_ps(vf + tt * KA_HD_MAX +
				    16 * (j0 + jj));

#pragma GCC unroll 4
				for (u = 0; u < n; u++)
					if (tt < nmin || tt < nk[u])
						acc[u][jj] = _mm512_fmadd_ps(
						    _mm512_set1_ps(p[u][tt]), v,
						    acc[u][jj]);
			}
		}
#pragma GCC unroll 4
		for (u = 0; u < n; u++)
#pragma GCC unroll 4
			for (jj = 0; jj < 4; jj++)
				_mm512_mask_storeu_ps(o[u] + 16 * (j0 + jj),
				    km[jj], acc[u][jj]);
	}
}

#define KA_ATT_UNITS	256	/* (row, head) pairs sharing widened blocks */

/*
 * F16 keys and values: the (row, head) pairs of a, KA_ATT_UNITS at a time,
 * online softmax over blocks of 16 positions (always the same blocks:
 * 0-15, 16-31, ...). Each block's keys are widened to float and
 * transposed once, its values widened once, for every pair that sees
 * any of its keys; per pair: the 16 scores (ka_scores), the running
 * maximum m, the running sum l of exp(s - m), and the output rescaled by
 * exp(m_old - m) when m grows, then the block's values added in position
 * order. Finally o /= l. A pair's bits depend only on its own query and
 * keys.
 */
static void
ka_attend_f16(const struct kern_attn *a)
{
	const size_t	 hd = a->hd, nvec = (hd + 15) / 16;
	const size_t	 n_units = a->n_rows * a->n_q;
	const __mmask16	 klast = (__mmask16)(hd % 16 == 0 ? 0xffff :
			    (1u << (hd % 16)) - 1);
	float		 kt[KA_HD_MAX * 16] __attribute__((aligned(64)));
	float		 vf[16 * KA_HD_MAX] __attribute__((aligned(64)));
	float		 p[4][16] __attribute__((aligned(64)));
	struct ka_head	 st[KA_ATT_UNITS];
	const float	*uq[KA_ATT_UNITS];
	float		*uo[KA_ATT_UNITS];
	size_t		 unk[KA_ATT_UNITS];
	size_t		 u0, u1, u, ul, t0, tt, nt, nkb, j;
	int		 g, ng;

	for (u0 = 0; u0 < n_units; u0 = u1) {
		u1 = u0 + KA_ATT_UNITS < n_units ? u0 + KA_ATT_UNITS : n_units;
		for (u = u0; u < u1; u++) {
			size_t	 i = u / a->n_q, h = u % a->n_q;

			uq[u - u0] = a->q + i * a->row_stride + h * hd;
			uo[u - u0] = a->o + i * a->row_stride + h * hd;
			unk[u - u0] = a->n_keys + i;
			st[u - u0].m = -INFINITY;
			st[u - u0].l = 0.0f;
			memset(uo[u - u0], 0, hd * sizeof(float));
		}
		/* units see more keys as they go: the last sees the most */
		nkb = unk[u1 - 1 - u0];
		for (t0 = 0, ul = u0; t0 < nkb; t0 += 16) {
			nt = nkb - t0 < 16 ? nkb - t0 : 16;
			/* widen the block (missing keys: zeros) */
			for (j = 0; j < nvec; j++) {
				__mmask16 k = j + 1 == nvec ? klast : 0xffff;
				__m512	 r[16];
				size_t	 dn = j + 1 == nvec ? hd - 16 * j : 16;

#pragma GCC unroll 16
				for (tt = 0; tt < 16; tt++) {
					const uint16_t *kp = (const uint16_t *)
					    a->k + (t0 + tt) * a->stride;
					const uint16_t *vp = (const uint16_t *)
					    a->v + (t0 + tt) * a->stride;
					__mmask16 kk = tt < nt ? k : 0;

					r[tt] = _mm512_cvtph_ps(
					    _mm256_maskz_loadu_epi16(kk, kp +
					    16 * j));
					_mm512_store_ps(vf + tt * KA_HD_MAX +
					    16 * j, _mm512_cvtph_ps(
					    _mm256_maskz_loadu_epi16(kk, vp +
					    16 * j)));
				}
				ka_transpose16(r);
				for (tt = 0; tt < dn; tt++)
					_mm512_store_ps(kt + 16 * (16 * j + tt),
					    r[tt]);
			}
			while (unk[ul - u0] <= t0)
				ul++;
			for (u = ul; u < u1; u += (size_t)ng) {
				const float	*qg[4];
				float		*go[4], gc[4];
				size_t		 gn[4];
				__m512		 s[4];

				ng = u1 - u < 4 ? (int)(u1 - u) : 4;
				for (g = 0; g < ng; g++)
					qg[g] = uq[u + g - u0];
				switch (ng) {
				case 4: ka_scores(qg, 4, hd, kt, s); break;
				case 3: ka_scores(qg, 3, hd, kt, s); break;
				case 2: ka_scores(qg, 2, hd, kt, s); break;
				default: ka_scores(qg, 1, hd, kt, s); break;
				}
				for (g = 0; g < ng; g++) {
					size_t	 x = u + g - u0;

					go[g] = uo[x];
					gn[g] = unk[x] - t0 < 16 ? unk[x] - t0 :
					    16;
					gc[g] = ka_softmax_step(&st[x], s[g],
					    a->scale, gn[g], p[g]);
				}
				switch (ng) {
				case 4: ka_pv(go, 4, gn, gc, p, vf, nvec, klast);
					break;
				case 3: ka_pv(go, 3, gn, gc, p, vf, nvec, klast);
					break;
				case 2: ka_pv(go, 2, gn, gc, p, vf, nvec, klast);
					break;
				default: ka_pv(go, 1, gn, gc, p, vf, nvec, klast);
					break;
				}
			}
		}
		for (u = u0; u < u1; u++) {
			float	*o = uo[u - u0];
			__m512	 inv = _mm512_set1_ps(st[u - u0].l);

			for (j = 0; j < nvec; j++) {
				__mmask16 k = j + 1 == nvec ? klast : 0xffff;

				_mm512_mask_storeu_ps(o + 16 * j, k,
				    _mm512_div_ps(_mm512_maskz_loadu_ps(k,
				    o + 16 * j), inv));
			}
		}
	}
}

/* ka_reduce16 on int32 lanes: lane t = sum of the 16 lanes of v[t]. */
KA_INLINE __m512i
ka_reduce16i(__m512i *v)
{
	__m512i	 w[8], x[4], y[2], z;
	int	 i;

#pragma GCC unroll 8
	for (i = 0; i < 8; i++)
		w[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(v[2 * i],
		    v[2 * i + 1], 0x44), _mm512_shuffle_i32x4(v[2 * i],
		    v[2 * i + 1], 0xee));
#pragma GCC unroll 4
	for (i = 0; i < 4; i++)
		x[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(w[2 * i],
		    w[2 * i + 1], 0x88), _mm512_shuffle_i32x4(w[2 * i],
		    w[2 * i + 1], 0xdd));
#pragma GCC unroll 2
	for (i = 0; i < 2; i++)
		y[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(x[2 * i],
		    x[2 * i + 1]), _mm512_unpackhi_epi32(x[2 * i],
		    x[2 * i + 1]));
	z = _mm512_add_epi32(_mm512_unpacklo_epi64(y[0], y[1]),
	    _mm512_unpackhi_epi64(y[0], y[1]));
	return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5,
	    9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
}

/* n floats (a multiple of 32) to Q8_0 blocks in GGUF layout, the same
 * bytes as kern_quantize_act_ref (d = amax / 127, q = rint(x / d)). */
static void
ka_q8_0_row(const float *x, uint8_t *dst, size_t n)
{
	size_t	 b;

	for (b = 0; b < n / 32; b++) {
		__m512	 v0 = _mm512_loadu_ps(x + 32 * b);
		__m512	 v1 = _mm512_loadu_ps(x + 32 * b + 16);
		float	 amax, d, id;
		uint16_t h;

		amax = _mm512_reduce_max_ps(_mm512_max_ps(ka_abs(v0),
		    ka_abs(v1)));
		d = amax / 127.0f;
		id = d != 0.0f ? 1.0f / d : 0.0f;
		h = kern_fp32_to_fp16(d);
		memcpy(dst + 34 * b, &h, 2);
		_mm_storeu_si128((__m128i *)(dst + 34 * b + 2),
		    _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0,
		    _mm512_set1_ps(id)))));
		_mm_storeu_si128((__m128i *)(dst + 34 * b + 18),
		    _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1,
		    _mm512_set1_ps(id)))));
	}
}

/*
 * One query row's heads against a cache with Q8_0 keys and/or values (hd
 * a multiple of 32). Q8_0 keys: the queries are quantized once
 * (ka_q8_0_row: kern_quantize_act_ref's bytes, into a->qq); a block of
 * 16 keys is widened to
 * int16 with its scales; per head and 32-element block, vpmaddwd gives
 * 16 partial integer sums per key, ka_reduce16i the block's sum per key
 * (exact), and s += (float)isum * (d_k * d_q) in block order: the
 * reference's scores bit for bit. Q8_0 values are widened to d * q in
 * float once per block of keys. The online softmax is ka_attend_f16's;
 * F16 keys beside Q8_0 values are scored with ka_reduce16.
 */
static void
ka_attend_group_q8(const struct kern_attn *a)
{
	const size_t	 hd = a->hd, nvec = hd / 16, nb = hd / 32;
	const size_t	 krow = kern_row_bytes(a->k_type, a->stride);
	const size_t	 vrow = kern_row_bytes(a->v_type, a->stride);
	const size_t	 qrow = kern_row_bytes(KERN_TYPE_Q8_0, hd);
	const bool	 kq8 = a->k_type == KERN_TYPE_Q8_0;
	const bool	 vq8 = a->v_type == KERN_TYPE_Q8_0;
	float		 kf[16 * KA_HD_MAX] __attribute__((aligned(64)));
	float		 vf[16 * KA_HD_MAX] __attribute__((aligned(64)));
	int16_t		 k16[16 * KA_HD_MAX] __attribute__((aligned(64)));
	float		 kd[KA_HD_MAX / 32][16] __attribute__((aligned(64)));
	float		 p[16] __attribute__((aligned(64)));
	struct ka_head	 st[64];
	size_t		 h, t0, tt, nt, j, b, hs, he;

	if (kq8)
		for (h = 0; h < a->n_q; h++)
			ka_q8_0_row(a->q + h * hd, (uint8_t *)a->qq + h * qrow,
			    hd);
	for (hs = 0; hs < a->n_q; hs = he) {
		he = hs + 64 < a->n_q ? hs + 64 : a->n_q;
		for (h = hs; h < he; h++) {
			st[h - hs].m = -INFINITY;
			st[h - hs].l = 0.0f;
			memset(a->o + h * hd, 0, hd * sizeof(float));
		}
		for (t0 = 0; t0 < a->n_keys; t0 += 16) {
			nt = a->n_keys - t0 < 16 ? a->n_keys - t0 : 16;
			/* widen the block (missing keys: zeros) */
			for (tt = 0; tt < 16; tt++) {
				const uint8_t *kt = (const uint8_t *)a->k +
				    (t0 + tt) * krow;
				const uint8_t *vt = (const uint8_t *)a->v +
				    (t0 + tt) * vrow;

				if (tt >= nt) {
					memset(k16 + tt * KA_HD_MAX, 0,
					    hd * sizeof(int16_t));
					memset(kf + tt * KA_HD_MAX, 0,
					    hd * sizeof(float));
					for (b = 0; b < nb; b++)
						kd[b][tt] = 0.0f;
					continue;
				}
				for (b = 0; b < nb && kq8; b++) {
					const uint8_t *kb = kt + b * 34;
					uint16_t d;

					memcpy(&d, kb, 2);
					kd[b][tt] = _cvtsh_ss(d);
					_mm512_store_si512(k16 + tt *
					    KA_HD_MAX + 32 * b,
					    _mm512_cvtepi8_epi16(
					    _mm256_loadu_si256((const __m256i *)
					    (kb + 2))));
				}
				for (j = 0; j < nvec && !kq8; j++)
					_mm512_store_ps(kf + tt * KA_HD_MAX +
					    16 * j, _mm512_cvtph_ps(
					    _mm256_loadu_si256((const __m256i *)
					    ((const uint16_t *)kt + 16 * j))));
				for (j = 0; j < nvec; j++) {
					__m512 x;

					if (vq8) {
						const uint8_t *vb = vt +
						    j / 2 * 34;
						uint16_t d;

						memcpy(&d, vb, 2);
						x = _mm512_mul_ps(
						    _mm512_set1_ps(
						    _cvtsh_ss(d)),
						    _mm512_cvtepi32_ps(
						    _mm512_cvtepi8_epi32(
						    _mm_loadu_si128(
						    (const __m128i *)(vb + 2 +
						    16 * (j % 2))))));
					} else
						x = _mm512_cvtph_ps(
						    _mm256_loadu_si256(
						    (const __m256i *)
						    ((const uint16_t *)vt +
						    16 * j)));
					_mm512_store_ps(vf + tt * KA_HD_MAX +
					    16 * j, x);
				}
			}
			for (h = hs; h < he; h++) {
				struct ka_head	*hh = &st[h - hs];
				float		*o = a->o + h * hd;
				__m512		 s;
				float		 corr;

				if (kq8) {
					const uint8_t *qq = (const uint8_t *)
					    a->qq + h * qrow;

					s = _mm512_setzero_ps();
					for (b = 0; b < nb; b++) {
						__m512i	 acc[16], qv;
						uint16_t d;
						__m512	 dd;

						memcpy(&d, qq + b * 34, 2);
						qv = _mm512_cvtepi8_epi16(
						    _mm256_loadu_si256(
						    (const __m256i *)(qq +
						    b * 34 + 2)));
#pragma GCC unroll 16
						for (tt = 0; tt < 16; tt++)
							acc[tt] =
							    _mm512_madd_epi16(
							    _mm512_load_si512(
							    k16 + tt *
							    KA_HD_MAX + 32 * b),
							    qv);
						dd = _mm512_mul_ps(
						    _mm512_load_ps(kd[b]),
						    _mm512_set1_ps(
						    _cvtsh_ss(d)));
						s = _mm512_add_ps(s,
						    _mm512_mul_ps(
						    _mm512_cvtepi32_ps(
						    ka_reduce16i(acc)), dd));
					}
				} else {
					const float *q = a->q + h * hd;
					__m512	 acc[16];

					for (tt = 0; tt < 16; tt++)
						acc[tt] = _mm512_setzero_ps();
					for (j = 0; j < nvec; j++) {
						__m512 qv = _mm512_loadu_ps(
						    q + 16 * j);

#pragma GCC unroll 16
						for (tt = 0; tt < 16; tt++)
							acc[tt] =
							    _mm512_fmadd_ps(qv,
							    _mm512_load_ps(kf +
							    tt * KA_HD_MAX +
							    16 * j), acc[tt]);
					}
					s = ka_reduce16(acc);
				}
				corr = ka_softmax_step(hh, s, a->scale, nt, p);
				for (j = 0; j < nvec; j++) {
					__m512	 ov = _mm512_mul_ps(
					    _mm512_loadu_ps(o + 16 * j),
					    _mm512_set1_ps(corr));

					for (tt = 0; tt < nt; tt++)
						ov = _mm512_fmadd_ps(
						    _mm512_set1_ps(p[tt]),
						    _mm512_load_ps(vf + tt *
						    KA_HD_MAX + 16 * j), ov);
					_mm512_storeu_ps(o + 16 * j, ov);
				}
			}
		}
		for (h = hs; h < he; h++) {
			float	*o = a->o + h * hd;
			__m512	 inv = _mm512_set1_ps(st[h - hs].l);

			for (j = 0; j < nvec; j++)
				_mm512_storeu_ps(o + 16 * j, _mm512_div_ps(
				    _mm512_loadu_ps(o + 16 * j), inv));
		}
	}
}

static void
ka_attend(const struct kern_attn *a)
{
	struct kern_attn row;
	size_t	 i, h;

	if (a->hd <= KA_HD_MAX && a->k_type == KERN_TYPE_F16 &&
	    a->v_type == KERN_TYPE_F16) {
		ka_attend_f16(a);
		return;
	}
	for (i = 0; i < a->n_rows; i++) {
		kern_attn_row(a, i, &row);
		if (a->hd <= KA_HD_MAX)
			ka_attend_group_q8(&row);
		else
			for (h = 0; h < row.n_q; h++)
				kern_attend_head_ref(&row, h);
	}
}

static const struct kern_ops ka_ops = {
	.isa = KERN_ISA_AVX512,
	.name = "avx512",
	.layout = KERN_LAYOUT_R16,
	.row_align = KA_G,
	.pack_size = ka_pack_size,
	.pack = ka_pack,
	.get_row = ka_get_row,
	.act_row_bytes = ka_act_row_bytes,
	.quantize_act = ka_quantize_act,
	.act_same = ka_act_same,
	.matmul = ka_matmul,
	.attend = ka_attend,
	.silu_mul = ka_silu_mul,
	.to_fp16 = ka_to_fp16,
};

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* KA_BUILD */

/* Outside the target pragma: runs on any CPU. */
const struct kern_ops *
kern_avx512_ops(void)
{
#ifdef KA_BUILD
	const struct kern_cpu	*c = kern_cpu();

	if (c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq &&
	    c->avx512vnni && c->fma && c->f16c)
		return &ka_ops;
#endif
	return NULL;
}
