/*
 * quant.c - quantize float32 rows into every weight type.
 *
 * F32/F16/BF16 are plain conversions. Q8_0 and Q4_0 follow GGML's
 * reference quantizers exactly, so the same input gives the same bytes as
 * llama-quantize (without an importance matrix):
 *   Q8_0: d = amax / 127, q = roundf(x * (1/d));
 *   Q4_0: d = m / -8 with m the value of largest magnitude (the first one
 *         on ties), q = min(15, trunc(x * (1/d) + 8.5)).
 * Q4_K and Q6_K produce blocks in GGML's exact layout with a quantizer of
 * our own (not bit-identical to llama.cpp's, equally valid):
 *   Q4_K: each sub-block of 32 gets x ~ a*q - m (q 0..15, a, m >= 0) by a
 *         small search over min/max fits refined by least squares; the 8
 *         a and 8 m are then quantized to 6 bits against the super-block
 *         scales d = max(a)/63 and dmin = max(m)/63, trying the neighbours
 *         of the rounded 6-bit values and keeping the pair that gives the
 *         smallest squared error once the quants are redone with them.
 *   Q6_K: each sub-block of 16 gets x ~ s*q (q -32..31) the same way; the
 *         16 s are quantized to 8 bits against d = s_max / -128, again
 *         with a neighbour search on the final error.
 * Every error measured here uses the exact float expression the
 * dequantizer (kernels/ref.c) evaluates, on the fp16-rounded scales.
 */

#include <errno.h>
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

/* Elements in a Q4_K sub-block and a Q6_K sub-block. */
#define QUANT_Q4_K_SUB	32
#define QUANT_Q6_K_SUB	16

/* roundf(v) clamped to lo..hi; NaN (which checked input never yields)
 * gives lo rather than undefined behaviour. */
static int
quant_nearest(float v, int lo, int hi)
{
	if (!(v > (float)lo))
		return lo;
	if (v >= (float)hi)
		return hi;
	return (int)roundf(v);
}

/* Block types refuse what their fp16 scales could not hold. */
static bool
quant_input_ok(const float *src, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (!(fabsf(src[i]) <= KERN_QUANT_MAX_ABS))	/* NaN too */
			return false;
	}
	return true;
}

static void
quant_store_u16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

/* --- Q8_0, Q4_0: GGML's reference quantizers --------------------------- */

static void
quant_block_q8_0(const float *x, struct kern_block_q8_0 *b)
{
	float	amax = 0.0f, d, id;
	int	j;

	for (j = 0; j < KERN_QK8_0; j++) {
		if (fabsf(x[j]) > amax)
			amax = fabsf(x[j]);
	}
	d = amax / 127.0f;
	id = d != 0.0f ? 1.0f / d : 0.0f;
	b->d = kern_fp32_to_fp16(d);
	for (j = 0; j < KERN_QK8_0; j++)
		b->qs[j] = (int8_t)quant_nearest(x[j] * id, -127, 127);
}

static void
quant_block_q4_0(const float *x, struct kern_block_q4_0 *b)
{
	float	amax = 0.0f, max = 0.0f, d, id, v;
	int	j, q0, q1;

	/* The signed value of largest magnitude; the first one wins. */
	for (j = 0; j < KERN_QK4_0; j++) {
		if (fabsf(x[j]) > amax) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	}
	/* It maps to q = 0 (x = -8d); the other extreme clips at 15. */
	d = max / -8.0f;
	id = d != 0.0f ? 1.0f / d : 0.0f;
	b->d = kern_fp32_to_fp16(d);
	for (j = 0; j < KERN_QK4_0 / 2; j++) {
		/* x*id + 8.5 lies in [0.5, 16.5]: truncation rounds half up. */
		v = x[j] * id + 8.5f;
		q0 = v < 0.0f ? 0 : (int)v;
		v = x[j + KERN_QK4_0 / 2] * id + 8.5f;
		q1 = v < 0.0f ? 0 : (int)v;
		q0 = q0 > 15 ? 15 : q0;
		q1 = q1 > 15 ? 15 : q1;
		b->qs[j] = (uint8_t)(q0 | (q1 << 4));
	}
}

/* --- Q4_K --------------------------------------------------------------- */

/*
 * Squared error of x[n] ~ a*q - m, q = nearest in 0..15, with the float
 * expression of the dequantizer. q[] receives the quants (may be NULL).
 */
static double
quant_q4_k_err(const float *x, int n, float a, float m, uint8_t *q)
{
	double	err = 0.0, e;
	float	ia = a > 0.0f ? 1.0f / a : 0.0f;
	int	i, l;

	for (i = 0; i < n; i++) {
		l = quant_nearest((x[i] + m) * ia, 0, 15);
		e = (double)(a * (float)l - m) - (double)x[i];
		err += e * e;
		if (q != NULL)
			q[i] = (uint8_t)l;
	}
	return err;
}

/*
 * Least-squares (a, m) for the quants that (a, m) itself gives:
 * minimise sum (a*q_i - m - x_i)^2 subject to m >= 0. Returns false
 * when there is no usable fit (all quants equal, or a <= 0).
 */
static bool
quant_q4_k_lsq(const float *x, int n, float a, float m, float *a_out,
    float *m_out)
{
	uint8_t	q[QUANT_Q4_K_SUB];
	double	sq = 0, sqq = 0, sx = 0, sqx = 0, det, na, nb;
	int	i;

	(void)quant_q4_k_err(x, n, a, m, q);
	for (i = 0; i < n; i++) {
		sq += q[i];
		sqq += (double)q[i] * q[i];
		sx += x[i];
		sqx += (double)q[i] * x[i];
	}
	det = n * sqq - sq * sq;
	if (det <= 0.0)
		return false;
	na = (n * sqx - sq * sx) / det;		/* slope */
	nb = (sqq * sx - sq * sqx) / det;	/* intercept = -m */
	if (nb > 0.0) {
		/* The min must not be negative: fit through the origin. */
		nb = 0.0;
		na = sqx / sqq;
	}
	if (!(na > 0.0))
		return false;
	*a_out = (float)na;
	*m_out = (float)-nb;
	return true;
}

/*
 * Best (a, m) for one sub-block of 32 in float (before 6-bit
 * quantization): min/max fits over slightly narrowed and widened ranges,
 * each followed by a few least-squares steps; smallest error wins.
 */
static void
quant_q4_k_fit(const float *x, float *a_out, float *m_out)
{
	const int	n = QUANT_Q4_K_SUB;
	float		lo = x[0], hi = x[0], a, m, na, nm, best_a, best_m;
	double		err, best;
	int		i, t, it;

	for (i = 1; i < n; i++) {
		if (x[i] < lo)
			lo = x[i];
		if (x[i] > hi)
			hi = x[i];
	}
	if (lo > 0.0f)
		lo = 0.0f;		/* the min term can only subtract */
	if (!(hi > lo)) {
		/* All equal and <= 0: exact with a = 0. */
		*a_out = 0.0f;
		*m_out = -lo;
		return;
	}
	best_a = (hi - lo) / 15.0f;
	best_m = -lo;
	best = quant_q4_k_err(x, n, best_a, best_m, NULL);
	/* Range divisors 14.0 .. 17.0 in steps of 0.5. */
	for (t = 0; t <= 6; t++) {
		a = (hi - lo) / (14.0f + 0.5f * (float)t);
		m = -lo;
		err = quant_q4_k_err(x, n, a, m, NULL);
		if (err < best) {
			best = err;
			best_a = a;
			best_m = m;
		}
		for (it = 0; it < 4; it++) {
			if (!quant_q4_k_lsq(x, n, a, m, &na, &nm))
				break;
			err = quant_q4_k_err(x, n, na, nm, NULL);
			if (err < best) {
				best = err;
				best_a = na;
				best_m = nm;
			}
			if (na == a && nm == m)
				break;
			a = na;
			m = nm;
		}
	}
	*a_out = best_a;
	*m_out = best_m;
}

static void
quant_block_q4_k(const float *x, struct kern_block_q4_k *b)
{
	float	a[8], m[8], amax = 0.0f, mmax = 0.0f, d, dmin, s, mn;
	uint8_t	ls[8], lm[8], q[KERN_QK_K], qt[QUANT_Q4_K_SUB];
	double	err, best;
	int	j, i, c0, c1, ci, cm, bi, bm;

	for (j = 0; j < 8; j++) {
		quant_q4_k_fit(x + QUANT_Q4_K_SUB * j, &a[j], &m[j]);
		if (a[j] > amax)
			amax = a[j];
		if (m[j] > mmax)
			mmax = m[j];
	}
	b->d = kern_fp32_to_fp16(amax / 63.0f);
	b->dmin = kern_fp32_to_fp16(mmax / 63.0f);
	d = kern_fp16_to_fp32(b->d);		/* what dequantizers see */
	dmin = kern_fp16_to_fp32(b->dmin);

	for (j = 0; j < 8; j++) {
		const float	*xs = x + QUANT_Q4_K_SUB * j;

		c0 = d > 0.0f ? quant_nearest(a[j] / d, 0, 63) : 0;
		c1 = dmin > 0.0f ? quant_nearest(m[j] / dmin, 0, 63) : 0;
		bi = c0;
		bm = c1;
		best = -1.0;
		for (ci = c0 - 1; ci <= c0 + 1; ci++) {
			if (ci < 0 || ci > 63)
				continue;
			for (cm = c1 - 1; cm <= c1 + 1; cm++) {
				if (cm < 0 || cm > 63)
					continue;
				s = d * (float)ci;
				mn = dmin * (float)cm;
				err = quant_q4_k_err(xs, QUANT_Q4_K_SUB, s, mn,
				    NULL);
				if (best < 0.0 || err < best) {
					best = err;
					bi = ci;
					bm = cm;
				}
			}
		}
		ls[j] = (uint8_t)bi;
		lm[j] = (uint8_t)bm;
		(void)quant_q4_k_err(xs, QUANT_Q4_K_SUB, d * (float)bi,
		    dmin * (float)bm, qt);
		for (i = 0; i < QUANT_Q4_K_SUB; i++)
			q[QUANT_Q4_K_SUB * j + i] = qt[i];
	}

	/* Pack the 6-bit scales and mins (see kern_q4_k_scale_min). */
	for (j = 0; j < 4; j++) {
		b->scales[j] = (uint8_t)(ls[j] | ((ls[j + 4] >> 4) << 6));
		b->scales[j + 4] = (uint8_t)(lm[j] | ((lm[j + 4] >> 4) << 6));
		b->scales[j + 8] = (uint8_t)((ls[j + 4] & 0x0f) |
		    ((lm[j + 4] & 0x0f) << 4));
	}
	/* Group g of 64: low nibbles sub-block 2g, high nibbles 2g+1. */
	for (j = 0; j < 4; j++) {
		for (i = 0; i < 32; i++) {
			b->qs[32 * j + i] = (uint8_t)(q[64 * j + i] |
			    (q[64 * j + 32 + i] << 4));
		}
	}
}

/* --- Q6_K --------------------------------------------------------------- */

/*
 * Squared error of x[n] ~ s*q, q = nearest in -32..31 (s may be
 * negative). q[] receives q + 32 (may be NULL).
 */
static double
quant_q6_k_err(const float *x, int n, float s, uint8_t *q)
{
	double	err = 0.0, e;
	float	is = s != 0.0f ? 1.0f / s : 0.0f;
	int	i, l;

	for (i = 0; i < n; i++) {
		l = quant_nearest(x[i] * is, -32, 31);
		e = (double)(s * (float)l) - (double)x[i];
		err += e * e;
		if (q != NULL)
			q[i] = (uint8_t)(l + 32);
	}
	return err;
}

/* Best s for one sub-block of 16: a few start scales, least squares. */
static float
quant_q6_k_fit(const float *x)
{
	/* Where the value of largest magnitude lands: -32 (GGML's choice,
	 * the one end with a full step), or short of it, or at +31. */
	static const float	 targets[] = {
		-32.0f, -31.5f, -31.0f, -30.5f, -30.0f, -29.0f, 31.0f, 30.5f
	};
	const int		 n = QUANT_Q6_K_SUB;
	uint8_t			 q[QUANT_Q6_K_SUB];
	float			 max = 0.0f, amax = 0.0f, s, best_s;
	double			 err, best, sqx, sqq;
	int			 i, t, it;

	for (i = 0; i < n; i++) {
		if (fabsf(x[i]) > amax) {
			amax = fabsf(x[i]);
			max = x[i];
		}
	}
	if (amax == 0.0f)
		return 0.0f;
	best_s = max / -32.0f;
	best = quant_q6_k_err(x, n, best_s, NULL);
	for (t = 0; t < (int)(sizeof(targets) / sizeof(targets[0])); t++) {
		s = max / targets[t];
		for (it = 0; it < 4; it++) {
			err = quant_q6_k_err(x, n, s, q);
			if (err < best) {
				best = err;
				best_s = s;
			}
			/* Least squares through the origin for these q. */
			sqx = sqq = 0.0;
			for (i = 0; i < n; i++) {
				sqx += (double)((int)q[i] - 32) * x[i];
				sqq += (double)((int)q[i] - 32) *
				    ((int)q[i] - 32);
			}
			if (sqq == 0.0 || (float)(sqx / sqq) == s)
				break;
			s = (float)(sqx / sqq);
		}
		err = quant_q6_k_err(x, n, s, NULL);
		if (err < best) {
			best = err;
			best_s = s;
		}
	}
	return best_s;
}

static void
quant_block_q6_k(const float *x, struct kern_block_q6_k *b)
{
	float	s[16], smax = 0.0f, samax = 0.0f, d;
	uint8_t	q[KERN_QK_K], qt[QUANT_Q6_K_SUB];
	double	err, best;
	int	j, i, c0, ci, bi, e, h, r, k, l;

	for (j = 0; j < 16; j++) {
		s[j] = quant_q6_k_fit(x + QUANT_Q6_K_SUB * j);
		if (fabsf(s[j]) > samax) {
			samax = fabsf(s[j]);
			smax = s[j];
		}
	}
	/* The largest scale maps to -128, the one end int8 has in full
	 * (an all-zero block gets d = +0 rather than -0). */
	b->d = smax != 0.0f ? kern_fp32_to_fp16(smax / -128.0f) : 0;
	d = kern_fp16_to_fp32(b->d);

	for (j = 0; j < 16; j++) {
		const float	*xs = x + QUANT_Q6_K_SUB * j;

		c0 = d != 0.0f ? quant_nearest(s[j] / d, -128, 127) : 0;
		bi = c0;
		best = -1.0;
		for (ci = c0 - 1; ci <= c0 + 1; ci++) {
			if (ci < -128 || ci > 127)
				continue;
			err = quant_q6_k_err(xs, QUANT_Q6_K_SUB,
			    d * (float)ci, NULL);
			if (best < 0.0 || err < best) {
				best = err;
				bi = ci;
			}
		}
		b->scales[j] = (int8_t)bi;
		(void)quant_q6_k_err(xs, QUANT_Q6_K_SUB, d * (float)bi, qt);
		for (i = 0; i < QUANT_Q6_K_SUB; i++)
			q[QUANT_Q6_K_SUB * j + i] = qt[i];
	}

	/* Pack (see kern_dequant_q6_k for the layout). */
	memset(b->ql, 0, sizeof(b->ql));
	memset(b->qh, 0, sizeof(b->qh));
	for (e = 0; e < KERN_QK_K; e++) {
		h = e / 128;		/* half */
		r = e % 128;
		k = r / 32;		/* quarter within the half */
		l = r % 32;
		b->ql[64 * h + 32 * (k & 1) + l] |=
		    (uint8_t)((q[e] & 0x0f) << (k < 2 ? 0 : 4));
		b->qh[32 * h + l] |= (uint8_t)((q[e] >> 4) << (2 * k));
	}
}

/* --- entry point -------------------------------------------------------- */

int
kern_quantize_row(uint32_t type, const float *src, void *dst, size_t n)
{
	uint8_t	*out = dst;
	size_t	 be, bb, i;

	be = kern_type_block_elems(type);
	bb = kern_type_block_bytes(type);
	/* Unsupported type, ragged n, or a byte count past SIZE_MAX. */
	if (be == 0 || n % be != 0 || (n > 0 && kern_row_bytes(type, n) == 0))
		return -EINVAL;

	switch (type) {
	case KERN_TYPE_F32:
		if (n > 0)
			memcpy(out, src, n * sizeof(float));
		return 0;
	case KERN_TYPE_F16:
		for (i = 0; i < n; i++)
			quant_store_u16(out + 2 * i, kern_fp32_to_fp16(src[i]));
		return 0;
	case KERN_TYPE_BF16:
		for (i = 0; i < n; i++)
			quant_store_u16(out + 2 * i, kern_fp32_to_bf16(src[i]));
		return 0;
	}

	if (!quant_input_ok(src, n))
		return -EINVAL;
	/* Each block is built in an aligned local, then copied out. */
	for (i = 0; i < n / be; i++) {
		const float	*x = src + i * be;

		switch (type) {
		case KERN_TYPE_Q8_0: {
			struct kern_block_q8_0	b;

			quant_block_q8_0(x, &b);
			memcpy(out + i * bb, &b, sizeof(b));
			break;
		}
		case KERN_TYPE_Q4_0: {
			struct kern_block_q4_0	b;

			quant_block_q4_0(x, &b);
			memcpy(out + i * bb, &b, sizeof(b));
			break;
		}
		case KERN_TYPE_Q4_K: {
			struct kern_block_q4_k	b;

			quant_block_q4_k(x, &b);
			memcpy(out + i * bb, &b, sizeof(b));
			break;
		}
		case KERN_TYPE_Q6_K: {
			struct kern_block_q6_k	b;

			quant_block_q6_k(x, &b);
			memcpy(out + i * bb, &b, sizeof(b));
			break;
		}
		}
	}
	return 0;
}
