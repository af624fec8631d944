/*
 * act.c - the activation path: activations quantized to 8 bits on the fly
 * and integer dot products per block, the scalar reference of what the
 * SIMD kernels compute.
 *
 *   weights        activations    per block
 *   F32 F16 BF16   float32        float products (kern_dot_ref)
 *   Q4_0 Q8_0      Q8_0 (32)      sum(qw * qx) * dw * dx
 *   Q4_K Q6_K      Q8_K (256)     sum over sub-blocks of scale * sum(qw *
 *                                 qx), minus the mins against bsums
 *
 * The integer sums are exact, so a SIMD version differs from these only
 * in the order its float partial sums are added.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

_Static_assert(sizeof(struct kern_block_q8_k) == 292, "q8_k block size");

uint32_t
kern_act_type(uint32_t wtype)
{
	switch (wtype) {
	case KERN_TYPE_Q4_0:
	case KERN_TYPE_Q8_0:
		return KERN_TYPE_Q8_0;
	case KERN_TYPE_Q4_K:
	case KERN_TYPE_Q6_K:
		return KERN_TYPE_Q8_K;
	default:
		return KERN_TYPE_F32;
	}
}

size_t
kern_act_row_bytes(uint32_t wtype, size_t n)
{
	if (kern_row_bytes(wtype, n) == 0)
		return 0;
	switch (kern_act_type(wtype)) {
	case KERN_TYPE_Q8_0:
		return n / KERN_QK8_0 * sizeof(struct kern_block_q8_0);
	case KERN_TYPE_Q8_K:
		return n / KERN_QK_K * sizeof(struct kern_block_q8_k);
	default:
		return n * sizeof(float);
	}
}

/* Round half to even, as the hardware's default rounding does. */
static int
act_nearest(float v)
{
	return (int)lrintf(v);
}

/* Q8_0: d = amax / 127, q = round(x / d). */
static void
act_quantize_q8_0(const float *x, struct kern_block_q8_0 *b)
{
	float amax = 0.0f, d, id;
	int j;

	for (j = 0; j < KERN_QK8_0; j++)
		if (fabsf(x[j]) > amax)
			amax = fabsf(x[j]);
	d = amax / 127.0f;
	id = d != 0.0f ? 1.0f / d : 0.0f;
	b->d = kern_fp32_to_fp16(d);
	for (j = 0; j < KERN_QK8_0; j++)
		b->qs[j] = (int8_t)act_nearest(x[j] * id);
}

/*
 * Q8_K: the value of largest magnitude maps to -127 (iscale = -127 /
 * max), so every q lies in -127..127; d = 1 / iscale.
 */
static void
act_quantize_q8_k(const float *x, struct kern_block_q8_k *b)
{
	float amax = 0.0f, max = 0.0f, iscale;
	int j, v;

	for (j = 0; j < KERN_QK_K; j++) {
		if (fabsf(x[j]) > amax) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	}
	memset(b, 0, sizeof(*b));
	if (amax == 0.0f)
		return;
	iscale = -127.0f / max;
	for (j = 0; j < KERN_QK_K; j++) {
		v = act_nearest(iscale * x[j]);
		b->qs[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
	}
	for (j = 0; j < KERN_QK_K; j++)
		b->bsums[j / 16] = (int16_t)(b->bsums[j / 16] + b->qs[j]);
	b->d = 1.0f / iscale;
}

void
kern_quantize_act_ref(uint32_t wtype, const float *x, void *xq, size_t n)
{
	uint8_t *dst = xq;
	size_t i;

	if (kern_row_bytes(wtype, n) == 0)
		return;
	switch (kern_act_type(wtype)) {
	case KERN_TYPE_Q8_0:
		for (i = 0; i < n / KERN_QK8_0; i++) {
			struct kern_block_q8_0 b;

			act_quantize_q8_0(x + i * KERN_QK8_0, &b);
			memcpy(dst + i * sizeof(b), &b, sizeof(b));
		}
		break;
	case KERN_TYPE_Q8_K:
		for (i = 0; i < n / KERN_QK_K; i++) {
			struct kern_block_q8_k b;

			act_quantize_q8_k(x + i * KERN_QK_K, &b);
			memcpy(dst + i * sizeof(b), &b, sizeof(b));
		}
		break;
	default:
		memcpy(dst, x, n * sizeof(float));
		break;
	}
}

/* Q4_0 x Q8_0: per block sum((q4 - 8) * q8) * dw * dx. */
static float
act_dot_q4_0(const uint8_t *row, const uint8_t *xq, size_t nb)
{
	float sum = 0.0f;
	size_t i;
	int j, sumi;

	for (i = 0; i < nb; i++) {
		struct kern_block_q4_0 w;
		struct kern_block_q8_0 x;

		memcpy(&w, row + i * sizeof(w), sizeof(w));
		memcpy(&x, xq + i * sizeof(x), sizeof(x));
		sumi = 0;
		for (j = 0; j < KERN_QK4_0 / 2; j++) {
			sumi += ((w.qs[j] & 0x0f) - 8) * x.qs[j];
			sumi += ((w.qs[j] >> 4) - 8) * x.qs[j + KERN_QK4_0 / 2];
		}
		sum += (float)sumi * (kern_fp16_to_fp32(w.d) *
		    kern_fp16_to_fp32(x.d));
	}
	return sum;
}

/* Q8_0 x Q8_0: per block sum(q8 * q8) * dw * dx. */
static float
act_dot_q8_0(const uint8_t *row, const uint8_t *xq, size_t nb)
{
	float sum = 0.0f;
	size_t i;
	int j, sumi;

	for (i = 0; i < nb; i++) {
		struct kern_block_q8_0 w;
		struct kern_block_q8_0 x;

		memcpy(&w, row + i * sizeof(w), sizeof(w));
		memcpy(&x, xq + i * sizeof(x), sizeof(x));
		sumi = 0;
		for (j = 0; j < KERN_QK8_0; j++)
			sumi += w.qs[j] * x.qs[j];
		sum += (float)sumi * (kern_fp16_to_fp32(w.d) *
		    kern_fp16_to_fp32(x.d));
	}
	return sum;
}

/* The 6-bit scale and min of sub-block j of a Q4_K block (see ref.c). */
static void
act_q4_k_scale_min(const uint8_t *s, int j, int *sc, int *m)
{
	if (j < 4) {
		*sc = s[j] & 0x3f;
		*m = s[j + 4] & 0x3f;
	} else {
		*sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
		*m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
	}
}

/*
 * Q4_K x Q8_K: x = d*sc*q - dmin*m, so per block
 *   dw*dx * sum_s sc_s * sum(q4 * q8)  -  dminw*dx * sum_s m_s * bsum_s
 * where bsum_s (the sum of sub-block s's 32 activations) comes from the
 * two 16-sums of the Q8_K block.
 */
static float
act_dot_q4_k(const uint8_t *row, const uint8_t *xq, size_t nb)
{
	float sum = 0.0f;
	size_t i;
	int g, l, sc, m, lo, hi, sumi, summ;

	for (i = 0; i < nb; i++) {
		struct kern_block_q4_k w;
		struct kern_block_q8_k x;
		const uint8_t *q;
		const int8_t *y;

		memcpy(&w, row + i * sizeof(w), sizeof(w));
		memcpy(&x, xq + i * sizeof(x), sizeof(x));
		sumi = 0;
		summ = 0;
		q = w.qs;
		y = x.qs;
		for (g = 0; g < 4; g++) {
			lo = 0;
			hi = 0;
			for (l = 0; l < 32; l++) {
				lo += (q[l] & 0x0f) * y[l];
				hi += (q[l] >> 4) * y[l + 32];
			}
			act_q4_k_scale_min(w.scales, 2 * g, &sc, &m);
			sumi += sc * lo;
			summ += m * (x.bsums[4 * g] + x.bsums[4 * g + 1]);
			act_q4_k_scale_min(w.scales, 2 * g + 1, &sc, &m);
			sumi += sc * hi;
			summ += m * (x.bsums[4 * g + 2] + x.bsums[4 * g + 3]);
			q += 32;
			y += 64;
		}
		sum += kern_fp16_to_fp32(w.d) * x.d * (float)sumi -
		    kern_fp16_to_fp32(w.dmin) * x.d * (float)summ;
	}
	return sum;
}

/*
 * Q6_K x Q8_K: dw*dx * sum over the 16 sub-blocks of scale * sum((q6 -
 * 32) * q8). Element 128h + 32k + l takes its bits as in ref.c.
 */
static float
act_dot_q6_k(const uint8_t *row, const uint8_t *xq, size_t nb)
{
	float sum = 0.0f;
	size_t i;
	int h, k, l, q, sumi, sub[KERN_QK_K / 16];

	for (i = 0; i < nb; i++) {
		struct kern_block_q6_k w;
		struct kern_block_q8_k x;

		memcpy(&w, row + i * sizeof(w), sizeof(w));
		memcpy(&x, xq + i * sizeof(x), sizeof(x));
		memset(sub, 0, sizeof(sub));
		for (h = 0; h < 2; h++) {
			const uint8_t *ql = w.ql + 64 * h;
			const uint8_t *qh = w.qh + 32 * h;
			const int8_t *y = x.qs + 128 * h;

			for (k = 0; k < 4; k++) {
				for (l = 0; l < 32; l++) {
					int low = k < 2 ?
					    ql[l + 32 * (k & 1)] & 0x0f :
					    ql[l + 32 * (k & 1)] >> 4;

					q = (low | (((qh[l] >> (2 * k)) & 3) << 4))
					    - 32;
					sub[8 * h + 2 * k + l / 16] +=
					    q * y[32 * k + l];
				}
			}
		}
		sumi = 0;
		for (k = 0; k < KERN_QK_K / 16; k++)
			sumi += w.scales[k] * sub[k];
		sum += kern_fp16_to_fp32(w.d) * x.d * (float)sumi;
	}
	return sum;
}

float
kern_vec_dot_ref(uint32_t wtype, const void *row, const void *xq, size_t n)
{
	if (kern_row_bytes(wtype, n) == 0)
		return n == 0 ? 0.0f : NAN;
	switch (wtype) {
	case KERN_TYPE_Q4_0:
		return act_dot_q4_0(row, xq, n / KERN_QK4_0);
	case KERN_TYPE_Q8_0:
		return act_dot_q8_0(row, xq, n / KERN_QK8_0);
	case KERN_TYPE_Q4_K:
		return act_dot_q4_k(row, xq, n / KERN_QK_K);
	case KERN_TYPE_Q6_K:
		return act_dot_q6_k(row, xq, n / KERN_QK_K);
	default:
		return kern_dot_ref(wtype, row, xq, n);
	}
}

void
kern_matmul_act_ref(uint32_t wtype, const void *w, size_t rows, size_t cols,
    const void *xq, size_t n_x, float *y)
{
	const uint8_t *wb = w, *xb = xq;
	size_t row_bytes = kern_row_bytes(wtype, cols);
	size_t act_bytes = kern_act_row_bytes(wtype, cols);
	size_t i, r;

	for (i = 0; i < n_x; i++)
		for (r = 0; r < rows; r++)
			y[i * rows + r] = kern_vec_dot_ref(wtype,
			    wb + r * row_bytes, xb + i * act_bytes, cols);
}
