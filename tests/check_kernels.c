/*
 * check_kernels.c - tests of kernels/: type traits, fp16/bf16
 * conversions, quantizers, the scalar reference dequantizers, dot and
 * matmul, and the element-wise operations; then every kernel set the CPU
 * runs (kernels/cpu.c) against those references.
 *
 * Known values are written out by hand (block bytes and the numbers they
 * stand for), random data comes from the seeded tu_rand_* generators,
 * and with $HEARTH_TESTDATA the reference GGUF files made by llama.cpp
 * are checked against their F32 original.
 */

#include <check.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf.h"
#include "kernels.h"
#include "testutil.h"

/* The bit-exact comparisons below redo kernel arithmetic: no FMA. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/*
 * Quantization error bounds on random data, per block (the super-block
 * of 256 for K types) of maximum magnitude amax, while the block's fp16
 * scales stay normal numbers:
 *   TOL_MAX_x: max |dequant(quant(x)) - x| / amax over a block;
 *   TOL_RMS_x: RMS of the error / RMS of x over a whole row.
 * Q8_0: half a step (amax/254) plus the fp16 rounding of d (relative
 * 2^-11) times 127. Q4_0: the value of largest magnitude maps exactly to
 * -8d; one of the opposite sign and equal size clips at 7d, a full step
 * (amax/8) away. Q4_K: a step is about range/15 <= 2*amax/15 and the
 * least-squares fit may trade the extremes for the bulk, plus 6-bit
 * scales; Q6_K: a step of about amax/32, plus 8-bit scales. Q4_K/Q6_K
 * bounds have about 20% margin over what this quantizer reaches here and
 * hold for llama.cpp's own quantizer on the reference files.
 */
#define TOL_MAX_Q8_0	(1.0 / 254 + 1.0 / 2048)
#define TOL_MAX_Q4_0	(1.0 / 8 + 1.0 / 1024)
#define TOL_MAX_Q4_K	(1.0 / 8)
#define TOL_MAX_Q6_K	(1.0 / 40)
#define TOL_RMS_Q8_0	0.008
#define TOL_RMS_Q4_0	0.11
#define TOL_RMS_Q4_K	0.09
#define TOL_RMS_Q6_K	0.022
/* RMS error of our Q4_K/Q6_K over a plain min/max fit (random data), and
 * over llama.cpp's quantizer (the reference files; ours is 2-6% better). */
#define TOL_K_VS_MINMAX		0.90
#define TOL_K_VS_LLAMA		0.99
/* F16 and BF16 round each value: relative error at most half an ulp. */
#define TOL_REL_F16	(1.0 / 2048)
#define TOL_REL_BF16	(1.0 / 256)

/*
 * Assert inside hot loops: Check records every passing ck_assert (a
 * write per call), which for millions of element checks costs minutes;
 * this reaches Check only on failure.
 */
#define CHECK(cond, ...) do {						\
	if (!(cond))							\
		ck_abort_msg(__VA_ARGS__);				\
} while (0)

/* Every supported type, and the loop tests' index into it. */
static const uint32_t all_types[] = {
	KERN_TYPE_F32, KERN_TYPE_F16, KERN_TYPE_BF16, KERN_TYPE_Q8_0,
	KERN_TYPE_Q4_0, KERN_TYPE_Q4_K, KERN_TYPE_Q6_K,
};
#define N_TYPES	((int)(sizeof(all_types) / sizeof(all_types[0])))

/* Type ids GGML has but we do not support, and nonsense. */
static const uint32_t bad_types[] = {
	3, 4, 5, 6, 7, 9, 10, 11, 13, 15, 16, 29, 31, 39, 1000, UINT32_MAX,
};

static float
f32_of(uint32_t u)
{
	float	f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static uint32_t
bits_of(float f)
{
	uint32_t	u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

/* Value of a half, computed independently of the code under test. */
static double
half_value(uint16_t h)
{
	int	exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
	double	v;

	if (exp == 0x1f)
		v = mant ? NAN : INFINITY;
	else if (exp == 0)
		v = ldexp(mant, -24);
	else
		v = ldexp(1024 + mant, exp - 25);
	return (h & 0x8000) ? -v : v;
}

static void
put_u16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

/*
 * n values for quantizer tests, block by block (be elements each) with
 * block magnitudes from 0.05 to 50 so every fp16 scale stays normal.
 * dist 0: normal, 1: uniform in [-1, 1], 2: positive only (Q4_K min 0),
 * 3: negative only.
 */
static void
fill_blocks(float *x, size_t n, size_t be, int dist, uint64_t *st)
{
	static const float	mag[] = { 0.05f, 0.3f, 1.0f, 7.0f, 50.0f };
	size_t			i;
	float			s;

	for (i = 0; i < n; i++) {
		s = mag[(i / be) % 5];
		switch (dist) {
		case 0:
			x[i] = tu_rand_normal(st) * s;
			break;
		case 1:
			x[i] = tu_rand_float(st, -1.0f, 1.0f) * s;
			break;
		case 2:
			x[i] = tu_rand_float(st, 0.25f, 2.0f) * s;
			break;
		default:
			x[i] = tu_rand_float(st, -2.0f, -0.25f) * s;
			break;
		}
	}
}

/* Row of random quantized data of type t: n elements. */
static void *
make_row(uint32_t t, size_t n, uint64_t *st, float *x_out)
{
	size_t	 be = kern_type_block_elems(t);
	float	*x = malloc(n * sizeof(float));
	void	*q = malloc(kern_row_bytes(t, n));

	ck_assert_ptr_nonnull(x);
	ck_assert_ptr_nonnull(q);
	fill_blocks(x, n, be > 1 ? be : 32, 0, st);
	ck_assert_int_eq(kern_quantize_row(t, x, q, n), 0);
	if (x_out != NULL)
		memcpy(x_out, x, n * sizeof(float));
	free(x);
	return q;
}

/* --- core: types --------------------------------------------------------- */

START_TEST(test_type_traits)
{
	static const struct {
		uint32_t	 type;
		const char	*name;
		size_t		 be, bb;
	} want[] = {
		{ KERN_TYPE_F32,  "f32",  1,   4 },
		{ KERN_TYPE_F16,  "f16",  1,   2 },
		{ KERN_TYPE_BF16, "bf16", 1,   2 },
		{ KERN_TYPE_Q8_0, "q8_0", 32,  34 },
		{ KERN_TYPE_Q4_0, "q4_0", 32,  18 },
		{ KERN_TYPE_Q4_K, "q4_k", 256, 144 },
		{ KERN_TYPE_Q6_K, "q6_k", 256, 210 },
	};
	size_t	i;

	/* The GGML type ids are fixed by the file format. */
	ck_assert_int_eq(KERN_TYPE_F32, 0);
	ck_assert_int_eq(KERN_TYPE_F16, 1);
	ck_assert_int_eq(KERN_TYPE_Q4_0, 2);
	ck_assert_int_eq(KERN_TYPE_Q8_0, 8);
	ck_assert_int_eq(KERN_TYPE_Q4_K, 12);
	ck_assert_int_eq(KERN_TYPE_Q6_K, 14);
	ck_assert_int_eq(KERN_TYPE_BF16, 30);
	ck_assert_uint_eq(sizeof(struct kern_block_q8_0), 34);
	ck_assert_uint_eq(sizeof(struct kern_block_q4_0), 18);
	ck_assert_uint_eq(sizeof(struct kern_block_q4_k), 144);
	ck_assert_uint_eq(sizeof(struct kern_block_q6_k), 210);

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		ck_assert(kern_type_supported(want[i].type));
		ck_assert_str_eq(kern_type_name(want[i].type), want[i].name);
		ck_assert_uint_eq(kern_type_block_elems(want[i].type),
		    want[i].be);
		ck_assert_uint_eq(kern_type_block_bytes(want[i].type),
		    want[i].bb);
		ck_assert_uint_eq(kern_row_bytes(want[i].type, 3 * 256),
		    3 * 256 / want[i].be * want[i].bb);
	}
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_F32, 5), 20);
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_F16, 3), 6);
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_Q8_0, 64), 68);
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_Q4_0, 96), 54);
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_Q4_K, 512), 288);
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_Q6_K, 1536), 1260);
}
END_TEST

/* --- core: conversions ------------------------------------------------- */

START_TEST(test_fp16_known)
{
	static const struct {
		float		f;
		uint16_t	h;
	} cases[] = {
		{ 0.0f,			0x0000 },
		{ 1.0f,			0x3c00 },
		{ -2.5f,		0xc100 },
		{ 0.5f,			0x3800 },
		{ 65504.0f,		0x7bff },	/* largest half */
		{ -65504.0f,		0xfbff },
		{ 65519.0f,		0x7bff },	/* below the midpoint */
		{ 65520.0f,		0x7c00 },	/* tie, to even: inf */
		{ 1e6f,			0x7c00 },
		{ 0x1p-14f,		0x0400 },	/* smallest normal */
		{ 0x1p-24f,		0x0001 },	/* smallest subnormal */
		{ -0x1p-24f,		0x8001 },
		{ 0x1.ff8p-15f,		0x03ff },	/* largest subnormal */
		{ 0x1p-25f,		0x0000 },	/* tie between 0 and 1 */
		{ 0x1.8p-25f,		0x0001 },	/* above the tie */
		{ 0x1.8p-24f,		0x0002 },	/* tie 1|2: even 2 */
		{ 0x1.4p-23f,		0x0002 },	/* 2.5 units: tie, 2 */
		{ 0x1.cp-23f,		0x0004 },	/* 3.5 units: tie, 4 */
		{ 0x1p-26f,		0x0000 },
		{ 0x1.ffcp-15f,		0x0400 },	/* rounds up to normal */
		{ 1.0f + 0x1p-11f,	0x3c00 },	/* tie: even 1.0 */
		{ 1.0f + 0x1.8p-10f,	0x3c02 },	/* tie 1|2: even 2 */
		{ 1.0f + 0x1.1p-11f,	0x3c01 },	/* just above a tie */
		{ 2048.0f + 1.0f,	0x6800 },	/* tie: even 2048 */
		{ 2048.0f + 3.0f,	0x6802 },	/* tie: even 2052 */
	};
	size_t		i;
	uint16_t	h;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		h = kern_fp32_to_fp16(cases[i].f);
		ck_assert_msg(h == cases[i].h, "fp16(%a) = %04x, want %04x",
		    (double)cases[i].f, h, cases[i].h);
	}
	ck_assert_uint_eq(kern_fp32_to_fp16(-0.0f), 0x8000);
	ck_assert_uint_eq(kern_fp32_to_fp16(INFINITY), 0x7c00);
	ck_assert_uint_eq(kern_fp32_to_fp16(-INFINITY), 0xfc00);
	/* NaN: exponent all ones, mantissa not zero (quiet bit set). */
	h = kern_fp32_to_fp16(NAN);
	ck_assert_uint_eq(h & 0x7c00, 0x7c00);
	ck_assert_uint_ne(h & 0x03ff, 0);
	/* A NaN whose payload is all below the kept bits stays NaN. */
	h = kern_fp32_to_fp16(f32_of(0x7f800001u));
	ck_assert_uint_eq(h & 0x7e00, 0x7e00);
	h = kern_fp32_to_fp16(f32_of(0xff800001u));
	ck_assert_uint_eq(h, 0xfe00);

	ck_assert(kern_fp16_to_fp32(0x3c00) == 1.0f);
	ck_assert(kern_fp16_to_fp32(0xc100) == -2.5f);
	ck_assert(kern_fp16_to_fp32(0x7bff) == 65504.0f);
	ck_assert(kern_fp16_to_fp32(0x0001) == 0x1p-24f);
	ck_assert(kern_fp16_to_fp32(0x03ff) == 0x1.ff8p-15f);
	ck_assert(kern_fp16_to_fp32(0x0400) == 0x1p-14f);
	ck_assert(kern_fp16_to_fp32(0x7c00) == INFINITY);
	ck_assert(kern_fp16_to_fp32(0xfc00) == -INFINITY);
	ck_assert(isnan(kern_fp16_to_fp32(0x7e00)));
	ck_assert(isnan(kern_fp16_to_fp32(0x7c01)));
	ck_assert_uint_eq(bits_of(kern_fp16_to_fp32(0x8000)), 0x80000000u);
}
END_TEST

/* Every half converts exactly, and back to itself. */
START_TEST(test_fp16_all_values)
{
	uint32_t	i;
	uint16_t	h;
	float		f;
	double		v;

	for (i = 0; i < 0x10000; i++) {
		h = (uint16_t)i;
		f = kern_fp16_to_fp32(h);
		v = half_value(h);
		if (isnan(v)) {
			CHECK(isnan(f), "%04x not NaN", h);
			CHECK(isnan(kern_fp16_to_fp32(kern_fp32_to_fp16(f))),
			    "%04x: NaN lost", h);
			continue;
		}
		CHECK((double)f == v, "%04x -> %a, want %a", h, (double)f, v);
		CHECK(kern_fp32_to_fp16(f) == h, "%04x does not round-trip",
		    h);
	}
}
END_TEST

/*
 * Round to nearest even, as a property: for many floats (random bit
 * patterns within and around the half range, plus every float halfway
 * between two neighbouring halves and its two float neighbours), the
 * result is at least as close as either neighbouring half, and even on
 * a tie; magnitudes from 65520 on give infinity.
 */
static void
check_fp16_nearest(float f)
{
	uint16_t	h = kern_fp32_to_fp16(f);
	uint16_t	hm = h & 0x7fff;
	double		a = fabs((double)f), v, lo, hi;

	CHECK((h & 0x8000) == (signbit(f) ? 0x8000 : 0), "fp16(%a) sign",
	    (double)f);
	if (a >= 65520.0) {
		CHECK(hm == 0x7c00, "fp16(%a) = %04x, want inf", (double)f, h);
		return;
	}
	CHECK(hm < 0x7c00, "fp16(%a) = %04x overflows", (double)f, h);
	v = half_value(hm);
	lo = hm > 0 ? half_value((uint16_t)(hm - 1)) : -half_value(1);
	hi = hm < 0x7bff ? half_value((uint16_t)(hm + 1)) : 65536.0;
	CHECK(fabs(a - v) <= fabs(a - lo) && fabs(a - v) <= fabs(a - hi),
	    "fp16(%a) = %04x not nearest", (double)f, h);
	if (fabs(a - v) == fabs(a - lo) || fabs(a - v) == fabs(a - hi))
		CHECK((hm & 1) == 0, "fp16(%a) = %04x tie not even",
		    (double)f, h);
}

START_TEST(test_fp16_rounding)
{
	uint64_t	st = 1601;
	uint32_t	u, i;
	float		mid;
	int		k;

	for (k = 0; k < 200000; k++) {
		/* Exponents 2^-30 .. 2^17, any mantissa, either sign. */
		u = (uint32_t)tu_rand_u64(&st);
		u = (u & 0x807fffffu) | ((97u + (u >> 23) % 48u) << 23);
		check_fp16_nearest(f32_of(u));
	}
	for (i = 0; i < 0x7bff; i++) {
		mid = (float)((half_value((uint16_t)i) +
		    half_value((uint16_t)(i + 1))) / 2);
		check_fp16_nearest(mid);
		check_fp16_nearest(nextafterf(mid, 0.0f));
		check_fp16_nearest(nextafterf(mid, INFINITY));
		check_fp16_nearest(-mid);
	}
}
END_TEST

START_TEST(test_bf16_known)
{
	static const struct {
		uint32_t	f;	/* float bits */
		uint16_t	h;
	} cases[] = {
		{ 0x3f800000u, 0x3f80 },	/* 1.0 */
		{ 0xc0200000u, 0xc020 },	/* -2.5 */
		{ 0x00000000u, 0x0000 },
		{ 0x80000000u, 0x8000 },
		{ 0x3f808000u, 0x3f80 },	/* tie: even */
		{ 0x3f818000u, 0x3f82 },	/* tie: even, up */
		{ 0x3f808001u, 0x3f81 },	/* above the tie */
		{ 0x3f807fffu, 0x3f80 },	/* below the tie */
		{ 0x7f800000u, 0x7f80 },	/* inf */
		{ 0xff800000u, 0xff80 },	/* -inf */
		{ 0x7f7fffffu, 0x7f80 },	/* FLT_MAX rounds to inf */
		{ 0x7f7f7fffu, 0x7f7f },	/* largest bf16, below tie */
		{ 0x00000001u, 0x0000 },	/* tiny subnormal */
		{ 0x00018000u, 0x0002 },	/* subnormal tie: even */
		{ 0x7fc00000u, 0x7fc0 },	/* quiet NaN */
		{ 0xffc12345u, 0xffc1 },	/* NaN keeps sign, payload */
	};
	size_t		i;
	uint16_t	h;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		h = kern_fp32_to_bf16(f32_of(cases[i].f));
		ck_assert_msg(h == cases[i].h, "bf16(%08x) = %04x, want %04x",
		    cases[i].f, h, cases[i].h);
	}
	/* Signalling NaNs with the payload in the dropped half stay NaN
	 * (quiet), never become infinity. */
	ck_assert_uint_eq(kern_fp32_to_bf16(f32_of(0x7f800001u)), 0x7fc0);
	ck_assert_uint_eq(kern_fp32_to_bf16(f32_of(0xff80ffffu)), 0xffc0);
	ck_assert(isnan(kern_bf16_to_fp32(
	    kern_fp32_to_bf16(f32_of(0x7f800001u)))));

	ck_assert(kern_bf16_to_fp32(0x3f80) == 1.0f);
	ck_assert(kern_bf16_to_fp32(0xc020) == -2.5f);
	ck_assert(kern_bf16_to_fp32(0x7f80) == INFINITY);
	ck_assert(isnan(kern_bf16_to_fp32(0x7fc0)));
	ck_assert_uint_eq(bits_of(kern_bf16_to_fp32(0x0001)), 0x00010000u);
}
END_TEST

/* bf16 -> f32 -> bf16 is the identity, and rounding is nearest-even. */
START_TEST(test_bf16_rounding)
{
	uint64_t	st = 7;
	uint32_t	i, u, hb;
	uint16_t	h;
	double		a, v, lo, hi;
	int		k;

	for (i = 0; i < 0x10000; i++) {
		float	f = kern_bf16_to_fp32((uint16_t)i);

		CHECK(bits_of(f) == i << 16, "bf16 %04x", i);
		if (isnan(f))
			CHECK(isnan(kern_bf16_to_fp32(kern_fp32_to_bf16(f))),
			    "bf16 %04x: NaN lost", i);
		else
			CHECK(kern_fp32_to_bf16(f) == i,
			    "bf16 %04x does not round-trip", i);
	}
	for (k = 0; k < 200000; k++) {
		u = (uint32_t)tu_rand_u64(&st);
		if ((u & 0x7f800000u) == 0x7f800000u)
			continue;		/* inf/NaN: tested above */
		h = kern_fp32_to_bf16(f32_of(u));
		hb = h & 0x7fff;
		a = fabs((double)f32_of(u));
		if (hb == 0x7f80) {
			/* Only past the midpoint above the largest bf16. */
			CHECK(a >= ldexp(0x1ff, 119), "bf16(%08x) = inf", u);
			continue;
		}
		v = (double)kern_bf16_to_fp32((uint16_t)hb);
		lo = hb > 0 ? (double)kern_bf16_to_fp32((uint16_t)(hb - 1)) :
		    -(double)kern_bf16_to_fp32(1);
		hi = hb < 0x7f7f ? (double)kern_bf16_to_fp32(
		    (uint16_t)(hb + 1)) : ldexp(1, 128);
		CHECK(fabs(a - v) <= fabs(a - lo) &&
		    fabs(a - v) <= fabs(a - hi), "bf16(%08x) = %04x", u, h);
		if (fabs(a - v) == fabs(a - lo) || fabs(a - v) == fabs(a - hi))
			CHECK((hb & 1) == 0, "bf16(%08x) = %04x tie", u, h);
		CHECK((uint32_t)(h >> 15) == u >> 31, "bf16(%08x) sign", u);
	}
}
END_TEST

/* --- core: quantize / dequantize round trips --------------------------- */

static void
tolerances(uint32_t t, double *tol_max, double *tol_rms)
{
	switch (t) {
	case KERN_TYPE_Q8_0:
		*tol_max = TOL_MAX_Q8_0;
		*tol_rms = TOL_RMS_Q8_0;
		break;
	case KERN_TYPE_Q4_0:
		*tol_max = TOL_MAX_Q4_0;
		*tol_rms = TOL_RMS_Q4_0;
		break;
	case KERN_TYPE_Q4_K:
		*tol_max = TOL_MAX_Q4_K;
		*tol_rms = TOL_RMS_Q4_K;
		break;
	case KERN_TYPE_Q6_K:
		*tol_max = TOL_MAX_Q6_K;
		*tol_rms = TOL_RMS_Q6_K;
		break;
	default:
		*tol_max = *tol_rms = 0.0;
		break;
	}
}

/*
 * Check that y (dequantized) is within the type's bounds of x, n
 * elements of type t. Returns the relative RMS error. what names the
 * data in messages.
 */
static double
check_close(uint32_t t, const float *x, const float *y, size_t n,
    const char *what)
{
	size_t	be = kern_type_block_elems(t), b, i;
	double	tol_max, tol_rms, amax, e, se = 0, sx = 0, rel;

	tolerances(t, &tol_max, &tol_rms);
	if (be == 1) {
		rel = t == KERN_TYPE_F16 ? TOL_REL_F16 :
		    t == KERN_TYPE_BF16 ? TOL_REL_BF16 : 0.0;
		for (i = 0; i < n; i++) {
			/* F16 subnormals (below 2^-14) have a fixed step of
			 * 2^-24: add half of it. */
			e = fabs((double)y[i] - x[i]);
			CHECK(e <= rel * fabs((double)x[i]) +
			    (t == KERN_TYPE_F16 ? 0x1p-25 : 0.0),
			    "%s %s [%zu]: %g vs %g", what, kern_type_name(t),
			    i, (double)y[i], (double)x[i]);
		}
		return 0.0;
	}
	for (b = 0; b < n / be; b++) {
		amax = 0;
		for (i = b * be; i < (b + 1) * be; i++) {
			if (fabs((double)x[i]) > amax)
				amax = fabs((double)x[i]);
		}
		for (i = b * be; i < (b + 1) * be; i++) {
			e = fabs((double)y[i] - x[i]);
			se += e * e;
			sx += (double)x[i] * x[i];
			CHECK(e <= tol_max * amax,
			    "%s %s [%zu]: %g vs %g, error %g > %g * amax %g",
			    what, kern_type_name(t), i, (double)y[i],
			    (double)x[i], e, tol_max, amax);
		}
	}
	ck_assert_msg(sx == 0 || sqrt(se / sx) <= tol_rms,
	    "%s %s: relative RMS error %g > %g", what, kern_type_name(t),
	    sqrt(se / sx), tol_rms);
	return sx > 0 ? sqrt(se / sx) : 0.0;
}

START_TEST(test_quant_roundtrip)
{
	const uint32_t	 t = all_types[_i];
	const size_t	 n = 40 * 256;
	uint64_t	 st = 1000 + (uint64_t)_i;
	float		*x = malloc(n * sizeof(float));
	float		*y = malloc(n * sizeof(float));
	uint8_t		*q = malloc(kern_row_bytes(t, n));
	char		 what[32];
	int		 dist;

	ck_assert(x != NULL && y != NULL && q != NULL);
	for (dist = 0; dist < 4; dist++) {
		fill_blocks(x, n, t == KERN_TYPE_Q4_K || t == KERN_TYPE_Q6_K ?
		    256 : 32, dist, &st);
		ck_assert_int_eq(kern_quantize_row(t, x, q, n), 0);
		kern_dequant_row_ref(t, q, y, n);
		snprintf(what, sizeof(what), "dist %d", dist);
		if (t == KERN_TYPE_F32)
			ck_assert_mem_eq(x, y, n * sizeof(float));
		else
			(void)check_close(t, x, y, n, what);
	}
	free(x);
	free(y);
	free(q);
}
END_TEST

/*
 * Q4_K and Q6_K are fitted by least squares: on Gaussian data their RMS
 * error, 6-bit / 8-bit scales included, must come out at most
 * TOL_K_VS_MINMAX times that of a plain min/max fit with unquantized
 * float scales (Q4_K: 15 steps from min(x, 0) to max(x); Q6_K: the
 * largest magnitude at -32 steps). The quantizer reaches 0.893 (Q4_K)
 * and 0.895 (Q6_K); without its least-squares steps 0.913 and 0.900.
 */
START_TEST(test_quant_k_quality)
{
	const size_t	 n = 64 * 256;
	uint64_t	 st = 77;
	float		*x = malloc(n * sizeof(float));
	float		*y = malloc(n * sizeof(float));
	uint8_t		*q = malloc(kern_row_bytes(KERN_TYPE_Q6_K, n));
	double		 se, se_naive, v;
	float		 lo, hi, a, s, amax;
	size_t		 i, b, j;
	int		 l;

	ck_assert(x != NULL && y != NULL && q != NULL);
	for (i = 0; i < n; i++)
		x[i] = tu_rand_normal(&st);

	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q4_K, x, q, n), 0);
	kern_dequant_row_ref(KERN_TYPE_Q4_K, q, y, n);
	se = se_naive = 0;
	for (b = 0; b < n / 32; b++) {
		const float	*xs = x + 32 * b;

		lo = hi = 0.0f;
		for (j = 0; j < 32; j++) {
			lo = xs[j] < lo ? xs[j] : lo;
			hi = xs[j] > hi ? xs[j] : hi;
		}
		a = (hi - lo) / 15.0f;
		for (j = 0; j < 32; j++) {
			l = (int)lrint((xs[j] - lo) / a);
			v = (double)a * l + lo - xs[j];
			se_naive += v * v;
			v = (double)y[32 * b + j] - xs[j];
			se += v * v;
		}
	}
	ck_assert_msg(sqrt(se / se_naive) < TOL_K_VS_MINMAX,
	    "q4_k error %g, min/max %g", se, se_naive);

	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q6_K, x, q, n), 0);
	kern_dequant_row_ref(KERN_TYPE_Q6_K, q, y, n);
	se = se_naive = 0;
	for (b = 0; b < n / 16; b++) {
		const float	*xs = x + 16 * b;

		s = amax = 0.0f;
		for (j = 0; j < 16; j++) {
			if (fabsf(xs[j]) > amax) {
				amax = fabsf(xs[j]);
				s = xs[j] / -32.0f;
			}
		}
		for (j = 0; j < 16; j++) {
			l = (int)lrint(xs[j] / s);
			l = l > 31 ? 31 : l;
			v = (double)s * l - xs[j];
			se_naive += v * v;
			v = (double)y[16 * b + j] - xs[j];
			se += v * v;
		}
	}
	ck_assert_msg(sqrt(se / se_naive) < TOL_K_VS_MINMAX,
	    "q6_k error %g, min/max %g", se, se_naive);
	free(x);
	free(y);
	free(q);
}
END_TEST

/* A row of several blocks quantizes to the concatenation of its blocks
 * quantized alone (no state carried between blocks). */
START_TEST(test_quant_blocks_independent)
{
	const uint32_t	 t = all_types[_i];
	const size_t	 be = kern_type_block_elems(t);
	const size_t	 bb = kern_type_block_bytes(t);
	const size_t	 nb = be == 1 ? 37 : 5, n = nb * be;
	uint64_t	 st = 31 + (uint64_t)_i;
	float		*x = malloc(n * sizeof(float));
	uint8_t		*row = malloc(kern_row_bytes(t, n));
	uint8_t		*one = malloc(bb);
	float		*y = malloc(n * sizeof(float));
	float		*yb = malloc(be * sizeof(float));
	size_t		 b;

	ck_assert(x && row && one && y && yb);
	fill_blocks(x, n, be > 1 ? be : 8, 0, &st);
	ck_assert_int_eq(kern_quantize_row(t, x, row, n), 0);
	kern_dequant_row_ref(t, row, y, n);
	for (b = 0; b < nb; b++) {
		ck_assert_int_eq(kern_quantize_row(t, x + b * be, one, be), 0);
		ck_assert_mem_eq(row + b * bb, one, bb);
		kern_dequant_row_ref(t, one, yb, be);
		ck_assert_mem_eq(y + b * be, yb, be * sizeof(float));
	}
	free(x);
	free(row);
	free(one);
	free(y);
	free(yb);
}
END_TEST

/* --- core: hand-built blocks ------------------------------------------- */

START_TEST(test_known_q8_0)
{
	uint8_t	blk[2 * 34];
	float	y[64];
	int	j;

	/* Block 0: d = 0.5 (fp16 0x3800), qs = -3 .. 28. */
	put_u16(blk, 0x3800);
	for (j = 0; j < 32; j++)
		blk[2 + j] = (uint8_t)(int8_t)(j - 3);
	/* Block 1: d = -0.125 (0xb000), qs = -128, 127, then 0, 1, 2.. */
	put_u16(blk + 34, 0xb000);
	blk[36] = 0x80;
	blk[37] = 0x7f;
	for (j = 2; j < 32; j++)
		blk[36 + j] = (uint8_t)(j - 2);
	kern_dequant_row_ref(KERN_TYPE_Q8_0, blk, y, 64);
	for (j = 0; j < 32; j++)
		ck_assert(y[j] == 0.5f * (float)(j - 3));
	ck_assert(y[0] == -1.5f);
	ck_assert(y[31] == 14.0f);
	ck_assert(y[32] == 16.0f);
	ck_assert(y[33] == -15.875f);
	for (j = 2; j < 32; j++)
		ck_assert(y[32 + j] == -0.125f * (float)(j - 2));
}
END_TEST

START_TEST(test_known_q4_0)
{
	uint8_t	blk[18];
	float	y[32];
	int	j;

	/* d = 0.25 (0x3400); byte j: low nibble j, high nibble 15 - j:
	 * element j = 0.25 * (j - 8), element j+16 = 0.25 * (7 - j). */
	put_u16(blk, 0x3400);
	for (j = 0; j < 16; j++)
		blk[2 + j] = (uint8_t)(j | ((15 - j) << 4));
	kern_dequant_row_ref(KERN_TYPE_Q4_0, blk, y, 32);
	for (j = 0; j < 16; j++) {
		ck_assert(y[j] == 0.25f * (float)(j - 8));
		ck_assert(y[16 + j] == 0.25f * (float)(7 - j));
	}
	ck_assert(y[0] == -2.0f);
	ck_assert(y[15] == 1.75f);
	ck_assert(y[16] == 1.75f);
	ck_assert(y[31] == -2.0f);
}
END_TEST

/*
 * Q4_K with d = 0.5, dmin = 0.25 and the 6-bit scales / mins
 *   sc = 1 2 3 63 17 33 48 5,  m = 0 4 63 1 32 16 7 60
 * packed by hand:
 *   bytes 0..3  = sc[0..3] | (sc[4..7] >> 4) << 6
 *               = 1|1<<6, 2|2<<6, 3|3<<6, 63|0<<6 = 41 82 c3 3f
 *   bytes 4..7  = m[0..3] | (m[4..7] >> 4) << 6
 *               = 0|2<<6, 4|1<<6, 63|0<<6, 1|3<<6 = 80 44 3f c1
 *   bytes 8..11 = (sc[4..7] & 15) | (m[4..7] & 15) << 4
 *               = 1|0, 1|0, 0|7<<4, 5|12<<4     = 01 01 70 c5
 * qs[i] = i*37 + 11 (mod 256). Element e is in sub-block k = e/32; the
 * 4-bit quant is in qs[32*(k/2) + e%32], low nibble for even k.
 */
START_TEST(test_known_q4_k)
{
	static const uint8_t	scales[12] = {
		0x41, 0x82, 0xc3, 0x3f, 0x80, 0x44, 0x3f, 0xc1,
		0x01, 0x01, 0x70, 0xc5,
	};
	static const int	sc[8] = { 1, 2, 3, 63, 17, 33, 48, 5 };
	static const int	mn[8] = { 0, 4, 63, 1, 32, 16, 7, 60 };
	uint8_t			blk[144 * 2];
	float			y[512];
	int			e, k, b, q;

	ck_assert_uint_eq(offsetof(struct kern_block_q4_k, scales), 4);
	ck_assert_uint_eq(offsetof(struct kern_block_q4_k, qs), 16);
	for (b = 0; b < 2; b++) {
		uint8_t	*p = blk + 144 * b;

		put_u16(p, 0x3800);			/* d = 0.5 */
		put_u16(p + 2, b == 0 ? 0x3400 : 0x0000); /* dmin .25, 0 */
		memcpy(p + 4, scales, 12);
		for (e = 0; e < 128; e++)
			p[16 + e] = (uint8_t)(e * 37 + 11 + b);
	}
	kern_dequant_row_ref(KERN_TYPE_Q4_K, blk, y, 512);
	for (b = 0; b < 2; b++) {
		for (e = 0; e < 256; e++) {
			k = e / 32;
			q = (uint8_t)(32 * (k / 2) + e % 32) * 37 + 11 + b;
			q &= 0xff;
			q = (k % 2 == 0) ? (q & 15) : (q >> 4);
			ck_assert_msg(y[256 * b + e] == 0.5f * (float)(sc[k] *
			    q) - (b == 0 ? 0.25f * (float)mn[k] : 0.0f),
			    "block %d element %d: %g", b, e,
			    (double)y[256 * b + e]);
		}
	}
	/* Spot values worked out by hand. */
	ck_assert(y[0] == 5.5f);	/* qs[0] = 0x0b: 0.5*1*11 - 0 */
	ck_assert(y[32] == -1.0f);	/* high 0: 0.5*2*0 - 0.25*4 */
	ck_assert(y[96] == 314.75f);	/* qs[32] = 0xab: 0.5*63*10 - .25 */
	ck_assert(y[128] == 85.5f);	/* qs[64] = 0x4b: 0.5*17*11 - 8 */
	ck_assert(y[224] == 20.0f);	/* qs[96] = 0xeb: 0.5*5*14 - 15 */
}
END_TEST

/*
 * Q6_K: element e of a super-block, with h = e/128, r = e%128,
 * k = r/32, l = r%32, has its low 4 bits in ql[64h + 32(k&1) + l] (low
 * nibble for k < 2), its high 2 bits at bit 2k of qh[32h + l], and the
 * scale scales[e/16]; x = d * scale * (q - 32).
 */
static void
q6_k_put(uint8_t *blk, int e, int q)
{
	int	h = e / 128, r = e % 128, k = r / 32, l = r % 32;

	blk[64 * h + 32 * (k & 1) + l] |= (uint8_t)((q & 15) <<
	    (k < 2 ? 0 : 4));
	blk[128 + 32 * h + l] |= (uint8_t)((q >> 4) << (2 * k));
}

START_TEST(test_known_q6_k)
{
	static const int8_t	sc[16] = {
		1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 127, -128,
	};
	uint8_t			blk[210];
	float			y[256];
	int			e, q;

	ck_assert_uint_eq(offsetof(struct kern_block_q6_k, qh), 128);
	ck_assert_uint_eq(offsetof(struct kern_block_q6_k, scales), 192);
	ck_assert_uint_eq(offsetof(struct kern_block_q6_k, d), 208);

	/* Every element different: q = (5e + 3) mod 64; d = 0.125. */
	memset(blk, 0, sizeof(blk));
	for (e = 0; e < 256; e++)
		q6_k_put(blk, e, (5 * e + 3) % 64);
	memcpy(blk + 192, sc, 16);
	put_u16(blk + 208, 0x3000);
	kern_dequant_row_ref(KERN_TYPE_Q6_K, blk, y, 256);
	for (e = 0; e < 256; e++) {
		q = (5 * e + 3) % 64;
		ck_assert_msg(y[e] == 0.125f * (float)(sc[e / 16] * (q - 32)),
		    "element %d: %g", e, (double)y[e]);
	}

	/* Raw bytes set by hand, all others 0 (q = 0, i.e. -32). */
	memset(blk, 0, sizeof(blk));
	blk[0] = 0x21;		/* ql[0]: e0 low 1, e64 low 2 */
	blk[32] = 0x5a;		/* ql[32]: e32 low 10, e96 low 5 */
	blk[128] = 0xe4;	/* qh[0] = 11 10 01 00: e0 0, e32 1,
				 * e64 2, e96 3 */
	blk[64] = 0x0f;		/* ql[64]: e128 low 15 */
	blk[160] = 0x03;	/* qh[32]: e128 high 3 */
	blk[112] = 0xf0;	/* ql[112]: e240 (k 3, l 16) low 15 */
	blk[176] = 0xc0;	/* qh[48]: e240 high 3 */
	memcpy(blk + 192, sc, 16);
	put_u16(blk + 208, 0x3000);
	kern_dequant_row_ref(KERN_TYPE_Q6_K, blk, y, 256);
	ck_assert(y[0] == -3.875f);	/* q 1:  0.125 * 1 * -31 */
	ck_assert(y[32] == -1.5f);	/* q 26: 0.125 * 2 * -6 */
	ck_assert(y[64] == 0.75f);	/* q 34: 0.125 * 3 * 2 */
	ck_assert(y[96] == 10.5f);	/* q 53: 0.125 * 4 * 21 */
	ck_assert(y[128] == 19.375f);	/* q 63: 0.125 * 5 * 31 */
	ck_assert(y[240] == -496.0f);	/* q 63: 0.125 * -128 * 31 */
	ck_assert(y[1] == -4.0f);	/* q 0:  0.125 * 1 * -32 */
	ck_assert(y[16] == 4.0f);	/* q 0:  0.125 * -1 * -32 */
}
END_TEST

/* F16 and BF16 rows: little-endian halves. */
START_TEST(test_known_f16_bf16)
{
	uint8_t	buf[8];
	float	y[4];

	put_u16(buf, 0x3c00);
	put_u16(buf + 2, 0xc100);
	put_u16(buf + 4, 0x0001);
	put_u16(buf + 6, 0x7bff);
	kern_dequant_row_ref(KERN_TYPE_F16, buf, y, 4);
	ck_assert(y[0] == 1.0f && y[1] == -2.5f && y[2] == 0x1p-24f &&
	    y[3] == 65504.0f);
	put_u16(buf, 0x3f80);
	put_u16(buf + 2, 0xc020);
	put_u16(buf + 4, 0x4049);
	put_u16(buf + 6, 0x0000);
	kern_dequant_row_ref(KERN_TYPE_BF16, buf, y, 4);
	ck_assert(y[0] == 1.0f && y[1] == -2.5f && y[2] == 3.140625f &&
	    y[3] == 0.0f);
}
END_TEST

/* --- core: quantizer output bytes ------------------------------------- */

START_TEST(test_quantize_exact_q8_0)
{
	static const float	x1[8] = {
		127.0f, 1.4f, 2.5f, -2.5f, 0.49f, -0.51f, 126.5f, -127.0f,
	};
	static const int8_t	q1[8] = { 127, 1, 3, -3, 0, -1, 127, -127 };
	static const float	x2[6] = {
		1.0f, -0.25f, 0.1f, 0.003f, -0.7f, 0.9f,
	};
	/* 1/127 -> fp16 0x2008; x * 127: 127, -31.75, 12.7, 0.38,
	 * -88.9, 114.3 */
	static const int8_t	q2[6] = { 127, -32, 13, 0, -89, 114 };
	struct kern_block_q8_0	b;
	float			x[32];
	int			j;

	/* amax 127: d = 1.0 (0x3c00), q = roundf(x), ties away from 0.
	 * The remaining elements j >= 8 are j - 16 + 0.25. */
	for (j = 0; j < 32; j++)
		x[j] = j < 8 ? x1[j] : (float)(j - 16) + 0.25f;
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q8_0, x, &b, 32), 0);
	ck_assert_uint_eq(b.d, 0x3c00);
	for (j = 0; j < 32; j++)
		ck_assert_int_eq(b.qs[j], j < 8 ? q1[j] : j - 16);

	for (j = 0; j < 32; j++)
		x[j] = j < 6 ? x2[j] : 0.0f;
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q8_0, x, &b, 32), 0);
	ck_assert_uint_eq(b.d, 0x2008);
	for (j = 0; j < 32; j++)
		ck_assert_int_eq(b.qs[j], j < 6 ? q2[j] : 0);

	/* All zero: d = 0, q = 0. */
	memset(x, 0, sizeof(x));
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q8_0, x, &b, 32), 0);
	ck_assert_uint_eq(b.d, 0);
	for (j = 0; j < 32; j++)
		ck_assert_int_eq(b.qs[j], 0);
}
END_TEST

START_TEST(test_quantize_exact_q4_0)
{
	/* Largest magnitude -8 comes first (8 later does not replace it):
	 * d = -8 / -8 = 1 (0x3c00); q = min(15, trunc(x + 8.5)). */
	static const float	xa[32] = {
		-8.0f, 8.0f, 7.4f, -0.5f, -0.6f, 3.2f, 0.0f, -7.6f,
		-7.4f, 0.5f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f,
		/* upper half: the high nibbles */
		7.0f, 6.49f, -1.0f, -2.0f, -3.0f, -4.0f, -5.0f, -6.0f,
		-7.0f, 0.2f, -0.2f, 1.6f, 4.4f, -4.4f, 0.9f, -0.9f,
	};
	static const uint8_t	qa[32] = {
		0, 15, 15, 8, 7, 11, 8, 0, 1, 9, 9, 10, 11, 12, 13, 14,
		15, 14, 7, 6, 5, 4, 3, 2, 1, 8, 8, 10, 12, 4, 9, 7,
	};
	/* Largest magnitude +4: d = 4 / -8 = -0.5 (0xb800), 1/d = -2, so
	 * q = min(15, trunc(-2x + 8.5)); -4 gives 16.5, clipped to 15. */
	static const float	xb[32] = {
		4.0f, -4.0f, 1.0f, -1.0f, 0.3f, 0.0f, 2.0f, -2.0f,
		[16] = 3.5f, [17] = -3.5f, [18] = 0.24f, [19] = -0.26f,
	};
	static const uint8_t	qb[32] = {
		0, 15, 6, 10, 7, 8, 4, 12, 8, 8, 8, 8, 8, 8, 8, 8,
		1, 15, 8, 9, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
	};
	struct kern_block_q4_0	b;
	float			x[32];
	int			j;

	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q4_0, xa, &b, 32), 0);
	ck_assert_uint_eq(b.d, 0x3c00);
	for (j = 0; j < 16; j++)
		ck_assert_uint_eq(b.qs[j], qa[j] | (qa[j + 16] << 4));
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q4_0, xb, &b, 32), 0);
	ck_assert_uint_eq(b.d, 0xb800);
	for (j = 0; j < 16; j++)
		ck_assert_uint_eq(b.qs[j], qb[j] | (qb[j + 16] << 4));

	/* All zero: d = 0 / -8 = -0 (fp16 0x8000, as GGML writes it), every
	 * quant 8. */
	memset(x, 0, sizeof(x));
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q4_0, x, &b, 32), 0);
	ck_assert_uint_eq(b.d, 0x8000);
	for (j = 0; j < 16; j++)
		ck_assert_uint_eq(b.qs[j], 0x88);
}
END_TEST

/* K quants: structure of the output for chosen inputs. */
START_TEST(test_quantize_k_structure)
{
	float			x[256], y[256];
	struct kern_block_q4_k	b4;
	struct kern_block_q6_k	b6;
	int			i;

	/*
	 * Values exactly on a Q4_K grid come back exactly: every sub-block
	 * holds k * 63/64 for k = 0..15, so a = 63/64, d = a/63 = 1/64
	 * (fp16 0x2400), 6-bit scale 63, no min.
	 */
	for (i = 0; i < 256; i++)
		x[i] = (float)(i % 16) * (63.0f / 64.0f);
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q4_K, x, &b4, 256), 0);
	ck_assert_uint_eq(b4.d, 0x2400);
	ck_assert_uint_eq(b4.dmin, 0);
	for (i = 0; i < 4; i++)
		ck_assert_uint_eq(b4.scales[i], 63 | (63 >> 4) << 6);
	for (i = 0; i < 128; i++)	/* nibble k of sub-block element k */
		ck_assert_uint_eq(b4.qs[i], (i % 16) | (i % 16) << 4);
	kern_dequant_row_ref(KERN_TYPE_Q4_K, &b4, y, 256);
	ck_assert_mem_eq(y, x, sizeof(x));
	/* The same with a min of 63/32: dmin = 1/32 (0x2800), 6-bit 63. */
	for (i = 0; i < 256; i++)
		x[i] = (float)(i % 16) * (63.0f / 64.0f) - 63.0f / 32.0f;
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q4_K, x, &b4, 256), 0);
	ck_assert_uint_eq(b4.d, 0x2400);
	ck_assert_uint_eq(b4.dmin, 0x2800);
	kern_dequant_row_ref(KERN_TYPE_Q4_K, &b4, y, 256);
	ck_assert_mem_eq(y, x, sizeof(x));

	/* All zero: zero scales, dequantizes to exact zeros. */
	memset(x, 0, sizeof(x));
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q4_K, x, &b4, 256), 0);
	ck_assert_uint_eq(b4.d, 0);
	ck_assert_uint_eq(b4.dmin, 0);
	kern_dequant_row_ref(KERN_TYPE_Q4_K, &b4, y, 256);
	for (i = 0; i < 256; i++)
		ck_assert(y[i] == 0.0f);
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q6_K, x, &b6, 256), 0);
	ck_assert_uint_eq(b6.d, 0);
	kern_dequant_row_ref(KERN_TYPE_Q6_K, &b6, y, 256);
	for (i = 0; i < 256; i++)
		ck_assert(y[i] == 0.0f);

	/* A constant negative block: Q4_K represents it by the min alone
	 * (scale 0), up to the fp16/6-bit rounding of the min. */
	for (i = 0; i < 256; i++)
		x[i] = -3.0f;
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q4_K, x, &b4, 256), 0);
	kern_dequant_row_ref(KERN_TYPE_Q4_K, &b4, y, 256);
	for (i = 0; i < 256; i++)
		ck_assert(fabsf(y[i] + 3.0f) <= 3.0f * 0x1p-10f);

	/*
	 * Q6_K on its grid: 0.5 * (-32..31), each sub-block of 16 starting
	 * with -16 (its largest magnitude), so s = -16 / -32 = 0.5, d =
	 * 0.5 / -128 = -2^-8 (fp16 0x9c00), 8-bit scales -128: exact.
	 */
	for (i = 0; i < 256; i++)
		x[i] = i % 16 == 0 ? -16.0f : 0.5f * (float)((i * 7) % 63 - 31);
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q6_K, x, &b6, 256), 0);
	ck_assert_uint_eq(b6.d, 0x9c00);
	for (i = 0; i < 16; i++)
		ck_assert_int_eq(b6.scales[i], -128);
	kern_dequant_row_ref(KERN_TYPE_Q6_K, &b6, y, 256);
	ck_assert_mem_eq(y, x, sizeof(x));
}
END_TEST

/* --- core: dot and matmul ---------------------------------------------- */

/*
 * kern_dot_ref follows its documented order exactly (float accumulator,
 * element order, products of the dequantized values), and is close to
 * the exact dot of the dequantized row with x.
 */
START_TEST(test_dot_ref)
{
	const uint32_t	 t = all_types[_i];
	const size_t	 n = 3 * 256 + (kern_type_block_elems(t) == 256 ?
	    0 : 64);
	uint64_t	 st = 555 + (uint64_t)_i;
	void		*row = make_row(t, n, &st, NULL);
	float		*w = malloc(n * sizeof(float));
	float		*x = malloc(n * sizeof(float));
	float		 got, seq = 0.0f;
	double		 exact = 0, mag = 0;
	size_t		 i;

	ck_assert(w != NULL && x != NULL);
	kern_dequant_row_ref(t, row, w, n);
	for (i = 0; i < n; i++)
		x[i] = tu_rand_normal(&st);
	got = kern_dot_ref(t, row, x, n);
	for (i = 0; i < n; i++) {
		seq += w[i] * x[i];
		exact += (double)w[i] * x[i];
		mag += fabs((double)w[i] * x[i]);
	}
	ck_assert_uint_eq(bits_of(got), bits_of(seq));
	/* Sequential float summation: |error| <= n * 2^-24 * sum|a*b|. */
	ck_assert(fabs((double)got - exact) <= (double)n * 0x1p-24 * mag);
	free(row);
	free(w);
	free(x);
}
END_TEST

/* Batch independence: n_x = 1 and n_x = 3 agree bit for bit, and every
 * output is kern_dot_ref of its row. Rows span several blocks. */
START_TEST(test_matmul_ref)
{
	const uint32_t	 t = all_types[_i];
	const size_t	 rows = 7, cols = 512, n_x = 3;
	const size_t	 rb = kern_row_bytes(t, cols);
	uint64_t	 st = 99 + (uint64_t)_i;
	uint8_t		*w = malloc(rows * rb);
	float		*x = malloc(n_x * cols * sizeof(float));
	float		 y3[3 * 7], y1[7];
	size_t		 i, r;

	ck_assert(w != NULL && x != NULL);
	for (r = 0; r < rows; r++) {
		void	*q = make_row(t, cols, &st, NULL);

		memcpy(w + r * rb, q, rb);
		free(q);
	}
	for (i = 0; i < n_x * cols; i++)
		x[i] = tu_rand_float(&st, -2.0f, 2.0f);
	kern_matmul_ref(t, w, rows, cols, x, n_x, y3);
	for (i = 0; i < n_x; i++) {
		kern_matmul_ref(t, w, rows, cols, x + i * cols, 1, y1);
		ck_assert_mem_eq(y1, y3 + i * rows, rows * sizeof(float));
		for (r = 0; r < rows; r++) {
			float	d = kern_dot_ref(t, w + r * rb, x + i * cols,
			    cols);

			ck_assert_uint_eq(bits_of(d),
			    bits_of(y3[i * rows + r]));
		}
	}
	free(w);
	free(x);
}
END_TEST

/* --- core: element-wise ops -------------------------------------------- */

static void
assert_close(float got, double want, double rel)
{
	ck_assert_msg(fabs((double)got - want) <= rel * fabs(want) + 1e-30,
	    "got %.9g, want %.9g", (double)got, want);
}

START_TEST(test_rmsnorm)
{
	const float	x[4] = { 1, 2, 3, 4 }, w[4] = { 1, 1, 2, 0.5f };
	float		out[4], a[4];
	int		i;

	/* mean(x^2) = 30/4 = 7.5; 1/sqrt(7.5) = 0.365148372 */
	kern_rmsnorm_ref(out, x, w, 4, 0.0f);
	assert_close(out[0], 0.365148372, 2e-7);
	assert_close(out[1], 0.730296743, 2e-7);
	assert_close(out[2], 2.190890230, 2e-7);
	assert_close(out[3], 0.730296743, 2e-7);

	/* eps = 0.5: 1/sqrt(8) */
	kern_rmsnorm_ref(out, x, w, 4, 0.5f);
	assert_close(out[0], 0.353553391, 2e-7);
	assert_close(out[2], 2.121320344, 2e-7);

	/* In place gives the same bits. */
	memcpy(a, x, sizeof(a));
	kern_rmsnorm_ref(out, x, w, 4, 1e-6f);
	kern_rmsnorm_ref(a, a, w, 4, 1e-6f);
	ck_assert_mem_eq(a, out, sizeof(a));

	/* All zeros with eps: zeros, no NaN. */
	memset(a, 0, sizeof(a));
	kern_rmsnorm_ref(out, a, w, 4, 1e-5f);
	for (i = 0; i < 4; i++)
		ck_assert(out[i] == 0.0f);
}
END_TEST

START_TEST(test_softmax)
{
	float	a[3] = { 1, 2, 3 };
	float	b[2] = { 1000, 1000 };
	float	c[3] = { 0, -INFINITY, 0 };
	float	d[2] = { -INFINITY, -INFINITY };
	float	e[1] = { -42 };
	float	f[4] = { -1e30f, 0, 88, 89 };

	/* e^-2, e^-1, 1 over 1.503214724 */
	kern_softmax_ref(a, 3);
	assert_close(a[0], 0.0900305732, 1e-6);
	assert_close(a[1], 0.2447284711, 1e-6);
	assert_close(a[2], 0.6652409558, 1e-6);
	kern_softmax_ref(b, 2);
	ck_assert(b[0] == 0.5f && b[1] == 0.5f);
	kern_softmax_ref(c, 3);
	ck_assert(c[0] == 0.5f && c[1] == 0.0f && c[2] == 0.5f);
	kern_softmax_ref(d, 2);
	ck_assert(d[0] == 0.0f && d[1] == 0.0f);
	kern_softmax_ref(e, 1);
	ck_assert(e[0] == 1.0f);
	/* Max subtracted: no overflow from large inputs. */
	kern_softmax_ref(f, 4);
	ck_assert(f[0] == 0.0f);
	assert_close(f[2], 1.0 / (1.0 + M_E), 1e-6);
	assert_close(f[3], M_E / (1.0 + M_E), 1e-6);
}
END_TEST

START_TEST(test_silu_mul_add)
{
	float		g[5] = { 0, 1, -1, 20, -100 };
	const float	u[5] = { 5, 2, 3, 0.5f, 1 };
	float		y[3] = { 1, -2, 0.5f };
	const float	x[3] = { 0.25f, 2, -0.5f };

	/* silu(1) = 1/(1+e^-1) = 0.7310585786; silu(-1) = -0.2689414214 */
	kern_silu_mul_ref(g, u, 5);
	ck_assert(g[0] == 0.0f);
	assert_close(g[1], 1.4621171573, 1e-6);
	assert_close(g[2], -0.8068242642, 1e-6);
	assert_close(g[3], 10.0, 1e-6);
	assert_close(g[4], -100.0 / (1.0 + exp(100.0)), 1e-5);
	kern_add_ref(y, x, 3);
	ck_assert(y[0] == 1.25f && y[1] == 0.0f && y[2] == 0.0f);
}
END_TEST

/* Rotate (a, b) by theta, in double: the expected values. */
static void
rot(double a, double b, double theta, double *ra, double *rb)
{
	*ra = a * cos(theta) - b * sin(theta);
	*rb = a * sin(theta) + b * cos(theta);
}

START_TEST(test_rope)
{
	/* 2 heads of 6, n_rot 4: dims 4 and 5 of each head stay put. */
	const float	src[12] = { 1, 2, 3, 4, 5, 6, -1, 0.5f, 2, -3, 7, 8 };
	const float	freq[2] = { 0.5f, 0.25f };
	float		x[12];
	double		ra, rb;
	int		h;

	/* llama layout, pos 2: theta = 1 for (0,1), 0.5 for (2,3). */
	memcpy(x, src, sizeof(x));
	kern_rope_ref(x, 2, 6, 4, 2, freq, false);
	for (h = 0; h < 2; h++) {
		const float	*s = src + 6 * h;
		float		*v = x + 6 * h;

		rot(s[0], s[1], 1.0, &ra, &rb);
		assert_close(v[0], ra, 1e-6);
		assert_close(v[1], rb, 1e-6);
		rot(s[2], s[3], 0.5, &ra, &rb);
		assert_close(v[2], ra, 1e-6);
		assert_close(v[3], rb, 1e-6);
		ck_assert(v[4] == s[4] && v[5] == s[5]);
	}
	/* Head 0 by hand: (1,2) by 1 rad = (cos1 - 2 sin1, sin1 + 2 cos1) */
	assert_close(x[0], -1.1426396637, 1e-6);
	assert_close(x[1], 1.9220755966, 1e-6);

	/* neox layout: pairs (0,2) with theta 1, (1,3) with theta 0.5. */
	memcpy(x, src, sizeof(x));
	kern_rope_ref(x, 2, 6, 4, 2, freq, true);
	for (h = 0; h < 2; h++) {
		const float	*s = src + 6 * h;
		float		*v = x + 6 * h;

		rot(s[0], s[2], 1.0, &ra, &rb);
		assert_close(v[0], ra, 1e-6);
		assert_close(v[2], rb, 1e-6);
		rot(s[1], s[3], 0.5, &ra, &rb);
		assert_close(v[1], ra, 1e-6);
		assert_close(v[3], rb, 1e-6);
		ck_assert(v[4] == s[4] && v[5] == s[5]);
	}
	/* (1,3) by 1 rad: (cos1 - 3 sin1, sin1 + 3 cos1) */
	assert_close(x[0], -1.9841106485, 1e-6);
	assert_close(x[2], 2.4623779025, 1e-6);

	/* Position 0 changes nothing, bit for bit. */
	memcpy(x, src, sizeof(x));
	kern_rope_ref(x, 2, 6, 6, 0, (const float[3]){ 1, 0.1f, 0.01f },
	    false);
	ck_assert_mem_eq(x, src, sizeof(x));

	/* Negative positions rotate backwards: rope(-p) undoes rope(p). */
	memcpy(x, src, sizeof(x));
	kern_rope_ref(x, 2, 6, 4, 7, freq, true);
	kern_rope_ref(x, 2, 6, 4, -7, freq, true);
	for (h = 0; h < 12; h++)
		ck_assert(fabsf(x[h] - src[h]) <= 1e-5f * (1 + fabsf(src[h])));

	/* n_rot 0: no-op. */
	memcpy(x, src, sizeof(x));
	kern_rope_ref(x, 2, 6, 0, 5, freq, false);
	ck_assert_mem_eq(x, src, sizeof(x));
}
END_TEST

/* --- core: the reference files ------------------------------------------ */

/* Read one tensor as float32 rows (any supported type); NULL if absent. */
static float *
read_tensor_f32(struct gguf *g, const char *name, uint32_t want_type,
    uint64_t *cols, uint64_t *rows, void **raw)
{
	const struct gguf_tensor	*t = gguf_find_tensor(g, name);
	struct eng_err			 err;
	uint8_t				*buf;
	float				*out;
	uint64_t			 r, rb;

	if (t == NULL || (want_type != UINT32_MAX && t->type != want_type))
		return NULL;
	ck_assert(kern_type_supported(t->type));
	*cols = t->ne[0];
	*rows = t->nelems / t->ne[0];
	rb = kern_row_bytes(t->type, *cols);
	ck_assert_uint_eq(rb * *rows, t->nbytes);
	buf = malloc(t->nbytes);
	out = malloc(t->nelems * sizeof(float));
	ck_assert(buf != NULL && out != NULL);
	ck_assert_msg(gguf_read_tensor(g, t, buf, t->nbytes, &err) == 0,
	    "%s: %s", name, err.msg);
	for (r = 0; r < *rows; r++)
		kern_dequant_row_ref(t->type, buf + r * rb, out + r * *cols,
		    *cols);
	if (raw != NULL)
		*raw = buf;
	else
		free(buf);
	return out;
}

/*
 * Our Q4_K/Q6_K requantization of the F32 tensor ref[rows][cols] is at
 * least as close to it as llama.cpp's (deq, from the file), in RMS.
 */
static void
check_k_vs_file(uint32_t t, const float *ref, const float *deq,
    uint64_t cols, uint64_t rows, const char *what)
{
	size_t	 rb = kern_row_bytes(t, cols);
	uint8_t	*q = malloc(rb);
	float	*y = malloc(cols * sizeof(float));
	double	 se_ours = 0, se_file = 0, e;
	uint64_t r, c;

	ck_assert(q != NULL && y != NULL);
	for (r = 0; r < rows; r++) {
		const float	*x = ref + r * cols;

		CHECK(kern_quantize_row(t, x, q, cols) == 0, "%s", what);
		kern_dequant_row_ref(t, q, y, cols);
		for (c = 0; c < cols; c++) {
			e = (double)y[c] - x[c];
			se_ours += e * e;
			e = (double)deq[r * cols + c] - x[c];
			se_file += e * e;
		}
	}
	ck_assert_msg(sqrt(se_ours / se_file) <= TOL_K_VS_LLAMA,
	    "%s: our RMS error %g vs llama.cpp's %g", what,
	    sqrt(se_ours / (double)(rows * cols)),
	    sqrt(se_file / (double)(rows * cols)));
	free(q);
	free(y);
}

/*
 * Every weight tensor of ref-llama-<type>.gguf, made by llama-quantize
 * from the same weights as ref-llama-f32.gguf, dequantizes to within the
 * type's bounds of the F32 tensor. For F16, BF16, Q8_0 and Q4_0 (GGML's
 * deterministic reference quantizers) our quantizer reproduces the file
 * bytes exactly; for Q4_K and Q6_K ours is at least as accurate as
 * llama.cpp's. The Q4_K_M file must contain Q4_K and Q6_K tensors.
 */
START_TEST(test_reference_files)
{
	static const char	*files[] = {
		"ref/ref-llama-f16.gguf", "ref/ref-llama-bf16.gguf",
		"ref/ref-llama-q8_0.gguf", "ref/ref-llama-q4_0.gguf",
		"ref/ref-llama-q6_k.gguf", "ref/ref-llama-q4_k_m.gguf",
	};
	const char		*path;
	struct gguf		*gf = NULL, *gq = NULL;
	struct eng_err		 err;
	uint64_t		 i, r, cols, rows, cq, rq;
	size_t			 f, seen[64] = { 0 }, rb;
	float			*ref, *deq;
	void			*raw;
	uint8_t			*mine;
	char			 what[160];

	path = tu_testdata("ref/ref-llama-f32.gguf");
	if (path == NULL) {
		tu_skip("check_kernels reference files");
		return;
	}
	ck_assert_msg(gguf_open(path, &gf, &err) == 0, "%s", err.msg);
	for (f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		path = tu_testdata(files[f]);
		ck_assert_ptr_nonnull(path);
		ck_assert_msg(gguf_open(path, &gq, &err) == 0, "%s", err.msg);
		for (i = 0; i < gq->n_tensors; i++) {
			const struct gguf_tensor *t = &gq->tensors[i];

			if (t->type == KERN_TYPE_F32)
				continue;	/* norms stay F32 */
			ref = read_tensor_f32(gf, t->name.s, KERN_TYPE_F32,
			    &cols, &rows, NULL);
			ck_assert_ptr_nonnull(ref);
			deq = read_tensor_f32(gq, t->name.s, t->type, &cq, &rq,
			    &raw);
			ck_assert_ptr_nonnull(deq);
			ck_assert(cq == cols && rq == rows);
			snprintf(what, sizeof(what), "%s %s", files[f],
			    t->name.s);
			(void)check_close(t->type, ref, deq, cols * rows, what);
			seen[t->type]++;
			if (t->type == KERN_TYPE_F16 || t->type ==
			    KERN_TYPE_BF16 || t->type == KERN_TYPE_Q8_0 ||
			    t->type == KERN_TYPE_Q4_0) {
				rb = kern_row_bytes(t->type, cols);
				mine = malloc(rb);
				ck_assert_ptr_nonnull(mine);
				for (r = 0; r < rows; r++) {
					CHECK(kern_quantize_row(t->type,
					    ref + r * cols, mine, cols) == 0,
					    "%s quantize", what);
					CHECK(memcmp(mine, (uint8_t *)raw +
					    r * rb, rb) == 0,
					    "%s row %llu differs", what,
					    (unsigned long long)r);
				}
				free(mine);
			}
			if (t->type == KERN_TYPE_Q4_K || t->type ==
			    KERN_TYPE_Q6_K)
				check_k_vs_file(t->type, ref, deq, cols, rows,
				    what);
			free(ref);
			free(deq);
			free(raw);
		}
		gguf_close(gq);
		gq = NULL;
	}
	gguf_close(gf);
	ck_assert_uint_gt(seen[KERN_TYPE_F16], 0);
	ck_assert_uint_gt(seen[KERN_TYPE_BF16], 0);
	ck_assert_uint_gt(seen[KERN_TYPE_Q8_0], 0);
	ck_assert_uint_gt(seen[KERN_TYPE_Q4_0], 0);
	ck_assert_uint_gt(seen[KERN_TYPE_Q4_K], 0);
	ck_assert_uint_gt(seen[KERN_TYPE_Q6_K], 0);
}
END_TEST

/* --- limits ------------------------------------------------------------- */

START_TEST(test_zero_length)
{
	const uint32_t	t = all_types[_i];
	uint8_t		dst[4] = { 0xaa, 0xaa, 0xaa, 0xaa };
	float		y[2] = { 7.0f, 7.0f }, x[1] = { 1.0f };

	ck_assert_uint_eq(kern_row_bytes(t, 0), 0);
	ck_assert_int_eq(kern_quantize_row(t, x, dst, 0), 0);
	ck_assert(dst[0] == 0xaa && dst[3] == 0xaa);
	kern_dequant_row_ref(t, dst, y, 0);
	ck_assert(y[0] == 7.0f);
	ck_assert(kern_dot_ref(t, dst, x, 0) == 0.0f);
	/* No rows, no vectors: nothing written. */
	kern_matmul_ref(t, dst, 0, 0, x, 1, y);
	kern_matmul_ref(t, dst, 1, 0, x, 0, y);
	ck_assert(y[0] == 7.0f && y[1] == 7.0f);
	/* cols 0: every output is an empty dot, 0. */
	kern_matmul_ref(t, dst, 2, 0, x, 1, y);
	ck_assert(y[0] == 0.0f && y[1] == 0.0f);
}
END_TEST

/* n not a whole number of blocks: 0 bytes, -EINVAL, nothing written. */
START_TEST(test_ragged_n)
{
	static const uint32_t	 blocked[] = {
		KERN_TYPE_Q8_0, KERN_TYPE_Q4_0, KERN_TYPE_Q4_K, KERN_TYPE_Q6_K,
	};
	static const size_t	 ns[] = { 1, 16, 31, 33, 100, 255, 257, 300 };
	float			 x[512], y[512];
	uint8_t			 dst[600];
	size_t			 i, j, k;

	for (i = 0; i < 512; i++)
		x[i] = (float)i / 512.0f;
	for (i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++) {
		for (j = 0; j < sizeof(ns) / sizeof(ns[0]); j++) {
			size_t	n = ns[j];

			if (n % kern_type_block_elems(blocked[i]) == 0)
				continue;
			ck_assert_uint_eq(kern_row_bytes(blocked[i], n), 0);
			memset(dst, 0xaa, sizeof(dst));
			ck_assert_int_eq(kern_quantize_row(blocked[i], x, dst,
			    n), -EINVAL);
			for (k = 0; k < sizeof(dst); k++)
				CHECK(dst[k] == 0xaa, "byte %zu written", k);
			for (k = 0; k < 512; k++)
				y[k] = -1.0f;
			kern_dequant_row_ref(blocked[i], dst, y, n);
			for (k = 0; k < 512; k++)
				CHECK(y[k] == -1.0f, "y[%zu] written", k);
			ck_assert(isnan(kern_dot_ref(blocked[i], dst, x, n)));
		}
	}
}
END_TEST

START_TEST(test_unsupported_types)
{
	float	x[32] = { 0 }, y[32];
	uint8_t	dst[64];
	size_t	i, k;

	for (i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
		uint32_t	t = bad_types[i];

		ck_assert(!kern_type_supported(t));
		ck_assert_str_eq(kern_type_name(t), "?");
		ck_assert_uint_eq(kern_type_block_elems(t), 0);
		ck_assert_uint_eq(kern_type_block_bytes(t), 0);
		ck_assert_uint_eq(kern_row_bytes(t, 32), 0);
		ck_assert_uint_eq(kern_row_bytes(t, 0), 0);
		memset(dst, 0x55, sizeof(dst));
		ck_assert_int_eq(kern_quantize_row(t, x, dst, 32), -EINVAL);
		ck_assert_int_eq(kern_quantize_row(t, x, dst, 0), -EINVAL);
		for (k = 0; k < sizeof(dst); k++)
			CHECK(dst[k] == 0x55, "byte %zu written", k);
		for (k = 0; k < 32; k++)
			y[k] = 3.0f;
		kern_dequant_row_ref(t, dst, y, 32);
		for (k = 0; k < 32; k++)
			ck_assert(y[k] == 3.0f);
		ck_assert(isnan(kern_dot_ref(t, dst, x, 32)));
	}
}
END_TEST

/* Byte counts that do not fit a size_t are 0, not wrapped. */
START_TEST(test_row_bytes_overflow)
{
	size_t	n;

	n = (SIZE_MAX / 34 + 1) * 32;
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_Q8_0, n), 0);
	n = (SIZE_MAX / 4 + 1);
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_F32, n), 0);
	n = SIZE_MAX / 2 + 1;
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_F16, n), 0);
	n = SIZE_MAX / 2 + 2;
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_BF16, n), 0);
	/* The largest that fits still works. (Q4_0, Q4_K and Q6_K have
	 * fewer bytes than elements: they cannot overflow.) */
	n = SIZE_MAX / 4;
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_F32, n), n * 4);
	n = SIZE_MAX / 34 * 32;
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_Q8_0, n),
	    SIZE_MAX / 34 * 34);
	n = SIZE_MAX / 256 * 256;
	ck_assert_uint_eq(kern_row_bytes(KERN_TYPE_Q6_K, n),
	    SIZE_MAX / 256 * 210);
	/* quantize refuses such an n before touching anything. */
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_Q8_0, NULL, NULL,
	    (SIZE_MAX / 34 + 1) * 32), -EINVAL);
}
END_TEST

/*
 * Extremes of magnitude: KERN_QUANT_MAX_ABS is accepted and gives finite
 * scales; tiny blocks have subnormal fp16 scales, where the error is
 * bounded by half a subnormal step of d times the largest quant instead.
 */
START_TEST(test_quant_extremes)
{
	const uint32_t	 t = all_types[3 + _i];	/* the block types */
	float		 x[256], y[256];
	uint8_t		 q[288];
	uint64_t	 st = 5;
	double		 amax, tol_max, tol_rms, bound;
	int		 i;

	tolerances(t, &tol_max, &tol_rms);
	for (i = 0; i < 256; i++)
		x[i] = tu_rand_float(&st, -1.0f, 1.0f) * KERN_QUANT_MAX_ABS;
	x[17] = KERN_QUANT_MAX_ABS;
	x[200] = -KERN_QUANT_MAX_ABS;
	ck_assert_int_eq(kern_quantize_row(t, x, q, 256), 0);
	kern_dequant_row_ref(t, q, y, 256);
	for (i = 0; i < 256; i++) {
		ck_assert(isfinite(y[i]));
		ck_assert(fabs((double)y[i] - x[i]) <= tol_max *
		    KERN_QUANT_MAX_ABS);
	}

	amax = 1e-4;
	for (i = 0; i < 256; i++)
		x[i] = tu_rand_float(&st, -1.0f, 1.0f) * (float)amax;
	ck_assert_int_eq(kern_quantize_row(t, x, q, 256), 0);
	kern_dequant_row_ref(t, q, y, 256);
	/* Half a subnormal step (2^-25) of each fp16 scale level, times
	 * the quant range it multiplies (Q4_K: 63 * 15 + 63). */
	bound = tol_max * amax + 0x1p-25 * (t == KERN_TYPE_Q4_K ? 1008 :
	    t == KERN_TYPE_Q6_K ? 128 * 32 : 127);
	for (i = 0; i < 256; i++)
		ck_assert_msg(fabs((double)y[i] - x[i]) <= bound,
		    "%s [%d]: %g vs %g", kern_type_name(t), i, (double)y[i],
		    (double)x[i]);
}
END_TEST

/* --- errors ------------------------------------------------------------- */

/* Non-finite or too large input: block types refuse, dst untouched. */
START_TEST(test_quantize_bad_input)
{
	const uint32_t	 t = all_types[3 + _i];	/* the block types */
	const float	 bad[] = {
		NAN, INFINITY, -INFINITY, 65505.0f, -1e10f, FLT_MAX,
	};
	float		 x[512];
	uint8_t		 dst[600];
	size_t		 i, k;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (k = 0; k < 512; k++)
			x[k] = 0.5f;
		x[300] = bad[i];	/* in the second super-block */
		memset(dst, 0xcc, sizeof(dst));
		ck_assert_int_eq(kern_quantize_row(t, x, dst, 512), -EINVAL);
		for (k = 0; k < sizeof(dst); k++)
			CHECK(dst[k] == 0xcc, "byte %zu written", k);
	}
}
END_TEST

/* F32/F16/BF16 take any value: inf, NaN and overflow convert. */
START_TEST(test_quantize_float_types_any_value)
{
	const float	x[4] = { INFINITY, NAN, 1e6f, -1e-30f };
	uint16_t	h[4];
	float		f[4];

	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_F16, x, h, 4), 0);
	ck_assert_uint_eq(h[0], 0x7c00);
	ck_assert_uint_eq(h[1] & 0x7c00, 0x7c00);
	ck_assert_uint_ne(h[1] & 0x3ff, 0);
	ck_assert_uint_eq(h[2], 0x7c00);
	ck_assert_uint_eq(h[3], 0x8000);
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_BF16, x, h, 4), 0);
	ck_assert_uint_eq(h[0], 0x7f80);
	ck_assert(isnan(kern_bf16_to_fp32(h[1])));
	ck_assert_uint_eq(h[2], kern_fp32_to_bf16(1e6f));
	ck_assert_int_eq(kern_quantize_row(KERN_TYPE_F32, x, f, 4), 0);
	ck_assert_mem_eq(f, x, sizeof(f));
}
END_TEST


/* --- the activation path (kernels/act.c) -------------------------------- */

/*
 * 8-bit activations: the dot product with quantized activations stays
 * within this fraction of sum |w_i x_i| of the float dot product (each
 * activation moves by at most half a step of amax/127).
 */
#define TOL_ACT_Q8	(1.0 / 127)

START_TEST(test_act_dot)
{
	const uint32_t	 type = all_types[_i];
	const size_t	 n = 1024;
	uint64_t	 st = 0x5eed + (uint64_t)_i;
	float		 w[1024], x[1024], wd[1024];
	uint8_t		 row[1024 * 4], xq[1024 * 4];
	double		 ref, got, mag;
	size_t		 i;
	int		 trial;

	ck_assert_uint_le(kern_act_row_bytes(type, n), sizeof(xq));
	for (trial = 0; trial < 20; trial++) {
		fill_blocks(w, n, kern_type_block_elems(type) > 1 ?
		    kern_type_block_elems(type) : 32, trial % 2, &st);
		for (i = 0; i < n; i++)
			x[i] = tu_rand_normal(&st) * (trial % 3 + 0.5f);
		ck_assert_int_eq(kern_quantize_row(type, w, row, n), 0);
		kern_dequant_row_ref(type, row, wd, n);
		kern_quantize_act_ref(type, x, xq, n);
		ref = kern_dot_ref(type, row, x, n);
		got = kern_vec_dot_ref(type, row, xq, n);
		mag = 0;
		for (i = 0; i < n; i++)
			mag += fabs((double)wd[i] * x[i]);
		if (kern_act_type(type) == KERN_TYPE_F32)
			ck_assert_msg(bits_of((float)got) == bits_of((float)ref),
			    "%s: float path must be kern_dot_ref",
			    kern_type_name(type));
		else
			ck_assert_msg(fabs(got - ref) <= TOL_ACT_Q8 * mag,
			    "%s: act dot %g vs %g (mag %g)",
			    kern_type_name(type), got, ref, mag);
	}
}
END_TEST

/* A Q8_K block: the largest magnitude maps to -127, bsums add up, and
 * d * q is within half a step of x. */
START_TEST(test_act_q8_k_block)
{
	struct kern_block_q8_k	 b;
	uint64_t		 st = 99;
	float			 x[KERN_QK_K];
	int			 j, k, sum, imax = 0;

	for (j = 0; j < KERN_QK_K; j++) {
		x[j] = tu_rand_normal(&st);
		if (fabsf(x[j]) > fabsf(x[imax]))
			imax = j;
	}
	kern_quantize_act_ref(KERN_TYPE_Q4_K, x, &b, KERN_QK_K);
	ck_assert_int_eq(b.qs[imax], -127);
	for (k = 0; k < KERN_QK_K / 16; k++) {
		sum = 0;
		for (j = 0; j < 16; j++)
			sum += b.qs[16 * k + j];
		ck_assert_int_eq(b.bsums[k], sum);
	}
	for (j = 0; j < KERN_QK_K; j++)
		CHECK(fabsf(b.d * b.qs[j] - x[j]) <= fabsf(b.d) * 0.5001f,
		    "q8_k element %d", j);
	/* all zero: d = 0, q = 0 */
	memset(x, 0, sizeof(x));
	kern_quantize_act_ref(KERN_TYPE_Q6_K, x, &b, KERN_QK_K);
	ck_assert(b.d == 0.0f);
	ck_assert_int_eq(b.qs[0], 0);
	ck_assert_int_eq(b.bsums[15], 0);
	ck_assert_uint_eq(kern_act_type(KERN_TYPE_Q4_0), KERN_TYPE_Q8_0);
	ck_assert_uint_eq(kern_act_type(KERN_TYPE_Q8_0), KERN_TYPE_Q8_0);
	ck_assert_uint_eq(kern_act_type(KERN_TYPE_Q6_K), KERN_TYPE_Q8_K);
	ck_assert_uint_eq(kern_act_type(KERN_TYPE_BF16), KERN_TYPE_F32);
	ck_assert_uint_eq(kern_act_row_bytes(KERN_TYPE_Q4_K, 512), 2 * 292);
	ck_assert_uint_eq(kern_act_row_bytes(KERN_TYPE_Q4_0, 64), 2 * 34);
	ck_assert_uint_eq(kern_act_row_bytes(KERN_TYPE_Q4_K, 100), 0);
}
END_TEST

/* matmul over 1 or 3 vectors: the same bits per output. */
START_TEST(test_act_matmul_batch)
{
	const uint32_t	 type = all_types[_i];
	enum { ROWS = 5, COLS = 512 };
	uint64_t	 st = 7 + (uint64_t)_i;
	static float	 w[ROWS * COLS], x[3 * COLS], y1[ROWS], y3[3 * ROWS];
	static uint8_t	 wq[ROWS * COLS * 4], xq[3 * COLS * 4];
	size_t		 rb = kern_row_bytes(type, COLS);
	size_t		 ab = kern_act_row_bytes(type, COLS);
	size_t		 i, r;

	fill_blocks(w, ROWS * COLS, 32, 0, &st);
	for (i = 0; i < 3 * COLS; i++)
		x[i] = tu_rand_normal(&st);
	for (r = 0; r < ROWS; r++)
		ck_assert_int_eq(kern_quantize_row(type, w + r * COLS,
		    wq + r * rb, COLS), 0);
	for (i = 0; i < 3; i++)
		kern_quantize_act_ref(type, x + i * COLS, xq + i * ab, COLS);
	kern_matmul_act_ref(type, wq, ROWS, COLS, xq, 3, y3);
	for (i = 0; i < 3; i++) {
		kern_matmul_act_ref(type, wq, ROWS, COLS, xq + i * ab, 1, y1);
		for (r = 0; r < ROWS; r++)
			ck_assert_uint_eq(bits_of(y1[r]),
			    bits_of(y3[i * ROWS + r]));
	}
}
END_TEST

/* --- core: the kernel sets against the references ------------------------
 *
 * Every kernel set this CPU runs (the references through the same table,
 * and AVX-512 where the CPU has it) is compared with the scalar reference
 * functions on random data whose shapes end in partial tiles: row counts
 * that are not whole 16-row groups, one or an odd number of blocks, odd
 * numbers of vectors and more vectors than one pass (128) takes. Named
 * tolerances:
 *   quantized weights (Q4_0, Q8_0, Q4_K, Q6_K): none, bit for bit: the
 *     block sums are integers and the float operations per row the same,
 *     in the same order, as kernels/act.c's;
 *   TOL_SIMD_F_DOT: float weights (F32, F16, BF16): one fused multiply-add
 *     per element instead of a product and a sum, same order: at most
 *     this times n times sum |w_i x_i| (two roundings per element);
 *   TOL_SIMD_SILU: silu with a vector exp (within 2 ulp of expf), plus
 *     the division and product: relative to |result| (+ one subnormal);
 *   TOL_SIMD_ATTN: attention with online softmax, a vector exp and FMA:
 *     relative to max |v| (the output is a convex combination of values).
 * Whatever the set, each output is the same bits whatever the number of
 * vectors or the range of rows it is computed in (batch invariance).
 */
#define TOL_SIMD_F_DOT	(2.0 / 16777216.0)
#define TOL_SIMD_SILU	(16.0 / 16777216.0)
#define TOL_SIMD_ATTN	2e-5

/* The sets to test: the reference always, then whatever the CPU runs. */
static int
simd_sets(const struct kern_ops **out)
{
	int	 n = 0, isa;

	for (isa = 0; isa < KERN_ISA_COUNT; isa++)
		if ((out[n] = kern_ops_get((enum kern_isa)isa)) != NULL)
			n++;
	return n;
}

static void *
alloc64(size_t n)
{
	void	*p = aligned_alloc(64, (n + 63) & ~(size_t)63);

	ck_assert_ptr_nonnull(p);
	return p;
}

/* Weights of type t: rows x cols, GGUF layout, from random floats. */
static uint8_t *
make_matrix(uint32_t t, size_t rows, size_t cols, uint64_t *st)
{
	size_t	 be = kern_type_block_elems(t), rb = kern_row_bytes(t, cols);
	float	*x = malloc(cols * sizeof(float));
	uint8_t	*w = malloc(rows * rb);
	size_t	 r;

	ck_assert_ptr_nonnull(x);
	ck_assert_ptr_nonnull(w);
	for (r = 0; r < rows; r++) {
		fill_blocks(x, cols, be > 1 ? be : 32, (int)(r % 4), st);
		ck_assert_int_eq(kern_quantize_row(t, x, w + r * rb, cols), 0);
	}
	free(x);
	return w;
}

/*
 * Activations with the blocks quantizers find hard: all zero, a tie of
 * +a and -a for the largest magnitude (the first decides the sign), one
 * value far above the rest; the others normal.
 */
static void
fill_acts(float *x, size_t n, uint64_t *st)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		x[i] = tu_rand_normal(st) * ((i / 32) % 3 + 0.5f);
	if (n >= 64)
		memset(x + 32, 0, 32 * sizeof(float));
	if (n >= 96) {
		x[70] = -9.0f;
		x[90] = 9.0f;
	}
	if (n >= 256)
		x[200] = 1000.0f;
}

/* Choosing a set by name; each set's table is complete. */
START_TEST(test_ops_dispatch)
{
	const struct kern_ops	*sets[KERN_ISA_COUNT], *ref, *best;
	const struct kern_cpu	*c = kern_cpu();
	int			 n = simd_sets(sets), i;
	bool			 has512;

	ref = kern_ops_get(KERN_ISA_REF);
	ck_assert_ptr_nonnull(ref);
	ck_assert_int_eq(ref->isa, KERN_ISA_REF);
	ck_assert_uint_eq(ref->layout, KERN_LAYOUT_ROWS);
	ck_assert_uint_eq(ref->row_align, 1);
	has512 = c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq &&
	    c->avx512vnni && c->fma && c->f16c;
	ck_assert(has512 == (kern_ops_get(KERN_ISA_AVX512) != NULL));
	ck_assert_ptr_null(kern_ops_get((enum kern_isa)KERN_ISA_COUNT));
	best = has512 ? kern_ops_get(KERN_ISA_AVX512) : ref;
	ck_assert_ptr_eq(kern_ops_choose("ref"), ref);
	ck_assert_ptr_eq(kern_ops_choose("avx512"), best);
	ck_assert_ptr_eq(kern_ops_choose("auto"), best);
	ck_assert_ptr_eq(kern_ops_choose(NULL), best);
	ck_assert_ptr_eq(kern_ops_choose("no-such-set"), best);
	ck_assert_ptr_nonnull(kern_ops());
	ck_assert_ptr_eq(kern_ops(), kern_ops_choose(getenv("HEARTH_KERNELS")));
	/* AVX-512 implies what it is built on */
	if (c->avx512f)
		ck_assert(c->avx2 && c->fma && c->f16c);
	for (i = 0; i < n; i++) {
		const struct kern_ops *o = sets[i];

		ck_assert_ptr_nonnull(o->name);
		ck_assert(o->pack_size != NULL && o->pack != NULL &&
		    o->get_row != NULL && o->act_row_bytes != NULL &&
		    o->quantize_act != NULL && o->act_same != NULL &&
		    o->matmul != NULL && o->attend != NULL &&
		    o->silu_mul != NULL && o->to_fp16 != NULL);
		ck_assert_uint_ge(o->row_align, 1);
	}
}
END_TEST

/* Repacked weights give back every row exactly, ragged groups too. */
START_TEST(test_simd_pack_rows)
{
	static const size_t	 rows_list[] = { 1, 15, 16, 17, 37 };
	const uint32_t		 type = all_types[_i];
	const struct kern_ops	*sets[KERN_ISA_COUNT];
	size_t			 be = kern_type_block_elems(type);
	size_t			 cols = be > 1 ? 3 * be : 80;
	size_t			 rb = kern_row_bytes(type, cols), ri, r, sz;
	uint64_t		 st = 0xbacc + (uint64_t)_i;
	float			 a[3 * 256], b[3 * 256];
	int			 n = simd_sets(sets), k;

	for (k = 0; k < n; k++) {
		for (ri = 0; ri < sizeof(rows_list) / sizeof(rows_list[0]);
		    ri++) {
			size_t	 rows = rows_list[ri];
			uint8_t	*w = make_matrix(type, rows, cols, &st);
			uint8_t	*p;

			sz = sets[k]->pack_size(type, rows, cols);
			ck_assert_uint_ge(sz, rows * rb);
			p = alloc64(sz);
			sets[k]->pack(type, w, rows, cols, p);
			for (r = 0; r < rows; r++) {
				kern_dequant_row_ref(type, w + r * rb, a, cols);
				sets[k]->get_row(type, p, rows, cols, r, b);
				CHECK(memcmp(a, b, cols * sizeof(float)) == 0,
				    "%s %s: row %zu of %zu differs",
				    sets[k]->name, kern_type_name(type), r,
				    rows);
			}
			free(p);
			free(w);
		}
		/* unsupported shapes */
		ck_assert_uint_eq(sets[k]->pack_size(type, 4, be > 1 ?
		    be + 1 : 0), 0);
		ck_assert_uint_eq(sets[k]->pack_size(7, 4, 32), 0);
		ck_assert_uint_eq(sets[k]->act_row_bytes(7, 32), 0);
	}
}
END_TEST

/* Expected y = old + (dot + bias), in that order, as the references. */
static float
mm_expect(float dot, const float *bias, size_t r, bool add, float old)
{
	float	 v = dot;

	if (bias != NULL)
		v = v + bias[r];
	return add ? old + v : v;
}

/* The shapes of test_simd_matmul: rows, blocks per row, vectors. */
static const struct mm_shape {
	size_t	 rows;
	size_t	 blocks;	/* of the type; float types: 8 per block */
	size_t	 n_x;
} mm_shapes[] = {
	{ 1, 1, 1 }, { 17, 1, 3 }, { 16, 5, 8 }, { 33, 3, 9 },
	{ 5, 7, 13 }, { 50, 2, 65 }, { 47, 1, 4 }, { 21, 2, 131 },
};

START_TEST(test_simd_matmul)
{
	const uint32_t		 type = all_types[_i];
	const struct kern_ops	*sets[KERN_ISA_COUNT];
	const bool		 exact = kern_act_type(type) != KERN_TYPE_F32;
	size_t			 be = kern_type_block_elems(type);
	uint64_t		 st = 0x77 + (uint64_t)_i;
	int			 n = simd_sets(sets), k;
	size_t			 si;

	for (si = 0; si < sizeof(mm_shapes) / sizeof(mm_shapes[0]); si++) {
		const struct mm_shape *sh = &mm_shapes[si];
		size_t	 rows = sh->rows, n_x = sh->n_x;
		size_t	 cols = be > 1 ? sh->blocks * be : sh->blocks * 8 + 1;
		size_t	 rb = kern_row_bytes(type, cols);
		size_t	 rab = kern_act_row_bytes(type, cols);
		uint8_t	*w = make_matrix(type, rows, cols, &st);
		float	*x = malloc(n_x * cols * sizeof(float));
		float	*wd = malloc(cols * sizeof(float));
		float	*bias = malloc(rows * sizeof(float));
		float	*y0 = malloc(n_x * rows * sizeof(float));
		float	*yref = malloc(n_x * rows * sizeof(float));
		float	*y = malloc(n_x * rows * sizeof(float));
		float	*y1 = malloc(rows * sizeof(float));
		double	*mag = malloc(n_x * rows * sizeof(double));
		uint8_t	*xr = malloc(n_x * rab);
		size_t	 i, r, d;

		ck_assert(x && wd && bias && y0 && yref && y && y1 && mag &&
		    xr);
		fill_acts(x, n_x * cols, &st);
		for (r = 0; r < rows; r++)
			bias[r] = tu_rand_normal(&st);
		for (i = 0; i < n_x * rows; i++)
			y0[i] = tu_rand_normal(&st);
		for (i = 0; i < n_x; i++)
			kern_quantize_act_ref(type, x + i * cols, xr + i * rab,
			    cols);
		kern_matmul_act_ref(type, w, rows, cols, xr, n_x, yref);
		for (i = 0; i < n_x; i++) {
			for (r = 0; r < rows; r++) {
				double m = 0;

				kern_dequant_row_ref(type, w + r * rb, wd, cols);
				for (d = 0; d < cols; d++)
					m += fabs((double)wd[d] *
					    x[i * cols + d]);
				mag[i * rows + r] = m;
			}
		}
		for (k = 0; k < n; k++) {
			const struct kern_ops *o = sets[k];
			size_t	 ab = o->act_row_bytes(type, cols);
			uint8_t	*p = alloc64(o->pack_size(type, rows, cols));
			uint8_t	*xq = alloc64(n_x * ab);
			size_t	 split, variant;
			struct kern_mm mm;

			ck_assert_uint_eq(ab % (o->row_align > 1 ? 64 : 1), 0);
			o->pack(type, w, rows, cols, p);
			for (i = 0; i < n_x; i++)
				o->quantize_act(type, x + i * cols, xq + i * ab,
				    cols);
			memset(&mm, 0, sizeof(mm));
			mm.type = type;
			mm.w = p;
			mm.rows = rows;
			mm.cols = cols;
			mm.xq = xq;
			mm.n_x = n_x;
			mm.ldy = rows;
			/* plain, with a bias, adding to y (x += Wx) */
			for (variant = 0; variant < 3; variant++) {
				mm.y = y;
				mm.bias = variant == 1 ? bias : NULL;
				mm.add = variant == 2;
				memcpy(y, y0, n_x * rows * sizeof(float));
				/* two ranges of rows, as two threads */
				split = (rows / 2) / o->row_align * o->row_align;
				o->matmul(&mm, 0, split);
				o->matmul(&mm, split, rows);
				for (i = 0; i < n_x * rows; i++) {
					float e = mm_expect(yref[i], mm.bias,
					    i % rows, mm.add, y0[i]);
					double tol = exact ? 0 : TOL_SIMD_F_DOT *
					    (double)cols * mag[i] +
					    (mm.add || mm.bias ? 1e-6 *
					    fabs((double)e) : 0);

					CHECK(exact ? bits_of(y[i]) ==
					    bits_of(e) : fabs((double)y[i] -
					    e) <= tol, "%s %s %zux%zu n_x %zu "
					    "variant %zu: y[%zu] %.9g, ref %.9g",
					    o->name, kern_type_name(type), rows,
					    cols, n_x, variant, i, (double)y[i],
					    (double)e);
				}
			}
			/* each vector alone: the same bits as in the batch */
			mm.bias = NULL;
			mm.add = false;
			memset(y, 0, n_x * rows * sizeof(float));
			mm.y = y;
			o->matmul(&mm, 0, rows);
			for (i = 0; i < n_x; i++) {
				mm.xq = xq + i * ab;
				mm.n_x = 1;
				mm.y = y1;
				o->matmul(&mm, 0, rows);
				for (r = 0; r < rows; r++)
					CHECK(bits_of(y1[r]) ==
					    bits_of(y[i * rows + r]),
					    "%s %s: vector %zu row %zu alone "
					    "differs", o->name,
					    kern_type_name(type), i, r);
			}
			free(p);
			free(xq);
		}
		free(w);
		free(x);
		free(wd);
		free(bias);
		free(y0);
		free(yref);
		free(y);
		free(y1);
		free(mag);
		free(xr);
	}
}
END_TEST

/*
 * Fused attention, every set against the reference:
 *   TOL_SIMD_ATTN: each output against kern_attend_head_ref (row by row
 *     through kern_attn_row), relative to max |v| (the scores of Q8_0
 *     keys are the same bits; the online softmax and FMA differ by
 *     rounding); the reference set bit for bit;
 *   each set's rows and heads come out the same bits whether a call
 *     carries all rows and heads, one row, or one head of one row (a
 *     prompt's logits must not depend on how it is batched);
 *   TOL_ATTN_Q8_VS_F16: a Q8_0 cache's output against the fp16 cache's
 *     (kern_attend_ref) on the same data, relative to max |v|: the cost
 *     of 8-bit keys, values and queries (measured: at most 0.0095 on
 *     these shapes; random data is the hard case).
 */
#define TOL_ATTN_Q8_VS_F16	0.03

/* Fill a cache of n rows of stride elements of type t from floats;
 * also the fp16 cache of the same floats. */
static void
kv_fill(uint32_t t, size_t n, size_t stride, uint64_t *st, uint8_t *dst,
    uint16_t *h16, float sd)
{
	float	*x = malloc(stride * sizeof(float));
	size_t	 rb = kern_row_bytes(t, stride), i, j;

	ck_assert_ptr_nonnull(x);
	for (i = 0; i < n; i++) {
		for (j = 0; j < stride; j++) {
			x[j] = tu_rand_normal(st) * sd;
			h16[i * stride + j] = kern_fp32_to_fp16(x[j]);
		}
		if (t == KERN_TYPE_Q8_0)
			kern_quantize_act_ref(KERN_TYPE_Q8_0, x, dst + i * rb,
			    stride);
		else
			memcpy(dst + i * rb, h16 + i * stride, rb);
	}
	free(x);
}

/* Worst errors seen by attn_case, for the suite's log. */
struct attn_worst {
	double	 simd;		/* |set - ref| / max |v| */
	double	 q8_f16;	/* |q8_0 cache - f16 cache| / max |v| */
};

/*
 * One attention shape: nq heads of head dim hd for nrows rows (row i
 * sees nk + i keys) against the second kv head of a cache of keys of
 * type kt and values of type vt; checks every set as described above.
 */
static void
attn_case(uint32_t kt, uint32_t vt, size_t hd, size_t nk, size_t nq,
    size_t nrows, uint64_t *st, struct attn_worst *w)
{
	const struct kern_ops	*sets[KERN_ISA_COUNT];
	const int		 n = simd_sets(sets);
	const size_t		 stride = 2 * hd + 32, nkeys = nk + nrows - 1;
	const size_t		 rs = nq * hd + 5;	/* row stride */
	const size_t		 krb = kern_row_bytes(kt, stride);
	const size_t		 vrb = kern_row_bytes(vt, stride);
	const size_t		 nf = nrows * rs;
	float	*q = malloc(nf * sizeof(float));
	float	*o = malloc(nf * sizeof(float));
	float	*o1 = malloc(nf * sizeof(float));
	float	*oref = malloc(nf * sizeof(float));
	float	*of16 = malloc(nq * hd * sizeof(float));
	float	*scr = malloc(nkeys * sizeof(float));
	void	*qq = malloc(nq * kern_row_bytes(KERN_TYPE_Q8_0, hd));
	uint8_t	*kc = malloc(nkeys * krb), *vc = malloc(nkeys * vrb);
	uint16_t *k16 = malloc(nkeys * stride * 2);
	uint16_t *v16 = malloc(nkeys * stride * 2);
	float	 vmax = 0, scale = 1.0f / sqrtf((float)hd);
	struct kern_attn a, row, head;
	size_t	 i, h, x;
	int	 k;

	ck_assert(q && o && o1 && oref && of16 && scr && qq && kc && vc &&
	    k16 && v16);
	for (i = 0; i < nf; i++)
		q[i] = tu_rand_normal(st) * 2;
	kv_fill(kt, nkeys, stride, st, kc, k16, 1.0f);
	kv_fill(vt, nkeys, stride, st, vc, v16, 1.0f);
	for (i = 0; i < nkeys * stride; i++)
		if (fabsf(kern_fp16_to_fp32(v16[i])) > vmax)
			vmax = fabsf(kern_fp16_to_fp32(v16[i]));
	memset(&a, 0, sizeof(a));
	a.q = q;
	a.o = oref;
	a.n_q = nq;
	a.n_rows = nrows;
	a.row_stride = rs;
	/* the second kv head of the row */
	a.k = kc + kern_row_bytes(kt, hd);
	a.v = vc + kern_row_bytes(vt, hd);
	a.k_type = kt;
	a.v_type = vt;
	a.stride = stride;
	a.hd = hd;
	a.n_keys = nk;
	a.scale = scale;
	a.scratch = scr;
	a.qq = qq;
	memset(oref, 0xff, nf * sizeof(float));
	for (i = 0; i < nrows; i++) {
		kern_attn_row(&a, i, &row);
		for (h = 0; h < nq; h++) {
			kern_attend_head_ref(&row, h);
			kern_attend_ref(row.q + h * hd, k16 + hd, v16 + hd,
			    stride, hd, row.n_keys, scale, of16 + h * hd, scr);
		}
		for (x = 0; x < nq * hd; x++) {
			double e = fabs((double)row.o[x] - of16[x]) / vmax;

			if (e > w->q8_f16)
				w->q8_f16 = e;
			CHECK(e <= TOL_ATTN_Q8_VS_F16, "k %s v %s hd %zu "
			    "keys %zu: out[%zu] %.6g, f16 cache %.6g",
			    kern_type_name(kt), kern_type_name(vt), hd,
			    row.n_keys, x, (double)row.o[x], (double)of16[x]);
		}
	}
	for (k = 0; k < n; k++) {
		a.o = o;
		memset(o, 0xff, nf * sizeof(float));
		sets[k]->attend(&a);
		for (i = 0; i < nrows; i++)
			for (x = 0; x < rs; x++) {
				double	 e;

				if (x >= nq * hd) {	/* between rows */
					CHECK(memcmp(&o[i * rs + x],
					    &oref[i * rs + x], 4) == 0,
					    "%s: wrote between rows",
					    sets[k]->name);
					continue;
				}
				e = fabs((double)o[i * rs + x] -
				    oref[i * rs + x]) / vmax;
				if (e > w->simd)
					w->simd = e;
				CHECK(e <= TOL_SIMD_ATTN, "%s: k %s v %s hd %zu "
				    "keys %zu heads %zu row %zu of %zu: "
				    "out[%zu] %.9g, ref %.9g", sets[k]->name,
				    kern_type_name(kt), kern_type_name(vt), hd,
				    nk + i, nq, i, nrows, x,
				    (double)o[i * rs + x],
				    (double)oref[i * rs + x]);
			}
		if (sets[k]->isa == KERN_ISA_REF)
			ck_assert(memcmp(o, oref, nf * sizeof(float)) == 0);
		/* the same bits a row, and a head, at a time */
		memcpy(o1, o, nf * sizeof(float));
		for (i = 0; i < nrows; i++) {
			a.o = o1;
			kern_attn_row(&a, i, &row);
			memset(row.o, 0, nq * hd * sizeof(float));
			if (i % 2 == 0) {
				sets[k]->attend(&row);
				continue;
			}
			for (h = 0; h < nq; h++) {
				head = row;
				head.q += h * hd;
				head.o += h * hd;
				head.n_q = 1;
				sets[k]->attend(&head);
			}
		}
		CHECK(memcmp(o, o1, nf * sizeof(float)) == 0, "%s: k %s v %s "
		    "hd %zu heads %zu rows %zu: one call differs from a row "
		    "or head at a time", sets[k]->name, kern_type_name(kt),
		    kern_type_name(vt), hd, nq, nrows);
	}
	free(q);
	free(o);
	free(o1);
	free(oref);
	free(of16);
	free(scr);
	free(qq);
	free(kc);
	free(vc);
	free(k16);
	free(v16);
}

/* F16 caches: head dims with and without a partial vector, block
 * edges, one row or a prompt's rows, one head or a group. */
START_TEST(test_simd_attention)
{
	static const size_t	 hds[] = { 8, 64, 80, 128 };
	static const size_t	 keys[] = { 1, 15, 16, 17, 100 };
	static const size_t	 nqs[] = { 1, 4, 7 };
	static const size_t	 rows[] = { 1, 2, 19, 40 };
	struct attn_worst	 w = { 0, 0 };
	uint64_t		 st = 0xa77;
	size_t			 hi, ki, ri;

	for (hi = 0; hi < sizeof(hds) / sizeof(hds[0]); hi++)
	for (ki = 0; ki < sizeof(keys) / sizeof(keys[0]); ki++)
	for (ri = 0; ri < sizeof(rows) / sizeof(rows[0]); ri++)
		attn_case(KERN_TYPE_F16, KERN_TYPE_F16, hds[hi], keys[ki],
		    nqs[(hi + ki + ri) % 3], rows[ri], &st, &w);
	/* more (row, head) pairs than the kernel takes at once */
	attn_case(KERN_TYPE_F16, KERN_TYPE_F16, 64, 3, 8, 70, &st, &w);
	printf("attention f16: worst |simd - ref| / max|v| %.3g\n", w.simd);
}
END_TEST

START_TEST(test_simd_attention_q8)
{
	static const uint32_t	 kt[] = { KERN_TYPE_Q8_0, KERN_TYPE_Q8_0,
	    KERN_TYPE_F16 };
	static const uint32_t	 vt[] = { KERN_TYPE_Q8_0, KERN_TYPE_F16,
	    KERN_TYPE_Q8_0 };
	static const size_t	 hds[] = { 32, 64, 96, 128, 256, 288 };
	static const size_t	 keys[] = { 1, 15, 16, 17, 33, 100, 257 };
	static const size_t	 nqs[] = { 1, 4, 7 };
	static const size_t	 rows[] = { 1, 3, 19 };
	struct attn_worst	 w = { 0, 0 };
	uint64_t		 st = 0x8a77;
	size_t			 ti, hi, ki;

	for (ti = 0; ti < 3; ti++)
	for (hi = 0; hi < sizeof(hds) / sizeof(hds[0]); hi++)
	for (ki = 0; ki < sizeof(keys) / sizeof(keys[0]); ki++)
		attn_case(kt[ti], vt[ti], hds[hi], keys[ki],
		    nqs[(hi + ki) % 3], rows[(hi + ki + ti) % 3], &st, &w);
	/* a prompt's rows: 10 rows of 8 heads */
	for (ti = 0; ti < 3; ti++)
		attn_case(kt[ti], vt[ti], 64, 5, 8, 10, &st, &w);
	printf("attention q8_0: worst |simd - ref| / max|v| %.3g, "
	    "|q8_0 - f16| / max|v| %.3g\n", w.simd, w.q8_f16);
}
END_TEST

/* A Q8_0 cache only for head dims of whole blocks. */
START_TEST(test_kv_type_ok)
{
	ck_assert(kern_kv_type_ok(KERN_TYPE_F16, 80));
	ck_assert(kern_kv_type_ok(KERN_TYPE_Q8_0, 64));
	ck_assert(kern_kv_type_ok(KERN_TYPE_Q8_0, 32));
	ck_assert(!kern_kv_type_ok(KERN_TYPE_Q8_0, 80));
	ck_assert(!kern_kv_type_ok(KERN_TYPE_Q8_0, 16));
	ck_assert(!kern_kv_type_ok(KERN_TYPE_Q8_0, 0));
	ck_assert(!kern_kv_type_ok(KERN_TYPE_F32, 64));
	ck_assert(!kern_kv_type_ok(KERN_TYPE_Q4_0, 64));
}
END_TEST

/* silu(gate) * up and fp32 -> fp16, every length, every element alike. */
START_TEST(test_simd_elementwise)
{
	static const size_t	 lens[] = { 1, 15, 16, 17, 1000 };
	const struct kern_ops	*sets[KERN_ISA_COUNT];
	int			 n = simd_sets(sets), k;
	uint64_t		 st = 0xe1e;
	size_t			 li, i;

	for (li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		size_t	 len = lens[li];
		float	*g = malloc(len * sizeof(float));
		float	*u = malloc(len * sizeof(float));
		float	*gr = malloc(len * sizeof(float));
		float	*gs = malloc(len * sizeof(float));
		uint16_t *h = malloc(len * 2), *hr = malloc(len * 2);

		ck_assert(g && u && gr && gs && h && hr);
		for (i = 0; i < len; i++) {
			g[i] = tu_rand_normal(&st) * (i % 7 == 0 ? 40.0f : 3.0f);
			u[i] = tu_rand_normal(&st);
		}
		if (len > 10) {
			g[1] = 0.0f;
			g[2] = -100.0f;		/* exp(100): inf, silu -0 */
			g[3] = 100.0f;
			g[4] = 1e-30f;
			g[5] = 70000.0f;	/* fp16: inf */
			g[6] = 3e-6f;		/* fp16: subnormal */
			g[7] = -65519.0f;	/* fp16: rounds to -65504 */
		}
		memcpy(gr, g, len * sizeof(float));
		kern_silu_mul_ref(gr, u, len);
		for (i = 0; i < len; i++)
			hr[i] = kern_fp32_to_fp16(g[i]);
		for (k = 0; k < n; k++) {
			memcpy(gs, g, len * sizeof(float));
			sets[k]->silu_mul(gs, u, len);
			for (i = 0; i < len; i++) {
				float	 one = g[i];

				CHECK(fabsf(gs[i] - gr[i]) <= TOL_SIMD_SILU *
				    fabsf(gr[i]) + FLT_TRUE_MIN, "%s silu: "
				    "[%zu] %.9g, ref %.9g", sets[k]->name, i,
				    (double)gs[i], (double)gr[i]);
				/* alone, the element comes out the same */
				sets[k]->silu_mul(&one, &u[i], 1);
				CHECK(bits_of(one) == bits_of(gs[i]),
				    "%s silu: element %zu depends on the "
				    "length", sets[k]->name, i);
			}
			sets[k]->to_fp16(h, g, len);
			CHECK(memcmp(h, hr, len * 2) == 0, "%s: fp16 differs",
			    sets[k]->name);
		}
		free(g);
		free(u);
		free(gr);
		free(gs);
		free(h);
		free(hr);
	}
}
END_TEST

/* Empty ranges and no vectors write nothing. */
START_TEST(test_simd_empty)
{
	const struct kern_ops	*sets[KERN_ISA_COUNT];
	int			 n = simd_sets(sets), k;
	uint64_t		 st = 5;
	uint8_t			*w = make_matrix(KERN_TYPE_Q8_0, 20, 64, &st);
	float			 y[40], x[64];

	for (k = 0; k < n; k++) {
		const struct kern_ops *o = sets[k];
		uint8_t	*p = alloc64(o->pack_size(KERN_TYPE_Q8_0, 20, 64));
		uint8_t	*xq = alloc64(o->act_row_bytes(KERN_TYPE_Q8_0, 64));
		struct kern_mm mm = { KERN_TYPE_Q8_0, p, 20, 64, xq, 1, y, 20,
		    NULL, false };
		size_t	 i;

		o->pack(KERN_TYPE_Q8_0, w, 20, 64, p);
		for (i = 0; i < 64; i++)
			x[i] = (float)i;
		o->quantize_act(KERN_TYPE_Q8_0, x, xq, 64);
		for (i = 0; i < 40; i++)
			y[i] = -1.0f;
		o->matmul(&mm, 16, 16);
		mm.n_x = 0;
		o->matmul(&mm, 0, 20);
		for (i = 0; i < 40; i++)
			ck_assert(y[i] == -1.0f);
		free(p);
		free(xq);
	}
	free(w);
}
END_TEST

static Suite *
kernels_suite(void)
{
	Suite	*s = suite_create("kernels");
	TCase	*tc;

	tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_type_traits);
	tcase_add_test(tc, test_fp16_known);
	tcase_add_test(tc, test_fp16_all_values);
	tcase_add_test(tc, test_fp16_rounding);
	tcase_add_test(tc, test_bf16_known);
	tcase_add_test(tc, test_bf16_rounding);
	tcase_add_loop_test(tc, test_quant_roundtrip, 0, N_TYPES);
	tcase_add_test(tc, test_quant_k_quality);
	tcase_add_loop_test(tc, test_quant_blocks_independent, 0, N_TYPES);
	tcase_add_test(tc, test_known_q8_0);
	tcase_add_test(tc, test_known_q4_0);
	tcase_add_test(tc, test_known_q4_k);
	tcase_add_test(tc, test_known_q6_k);
	tcase_add_test(tc, test_known_f16_bf16);
	tcase_add_test(tc, test_quantize_exact_q8_0);
	tcase_add_test(tc, test_quantize_exact_q4_0);
	tcase_add_test(tc, test_quantize_k_structure);
	tcase_add_loop_test(tc, test_dot_ref, 0, N_TYPES);
	tcase_add_loop_test(tc, test_matmul_ref, 0, N_TYPES);
	tcase_add_test(tc, test_rmsnorm);
	tcase_add_test(tc, test_softmax);
	tcase_add_test(tc, test_silu_mul_add);
	tcase_add_test(tc, test_rope);
	tcase_add_test(tc, test_reference_files);
	tcase_add_loop_test(tc, test_act_dot, 0, N_TYPES);
	tcase_add_test(tc, test_act_q8_k_block);
	tcase_add_loop_test(tc, test_act_matmul_batch, 0, N_TYPES);
	tcase_add_test(tc, test_ops_dispatch);
	tcase_add_loop_test(tc, test_simd_pack_rows, 0, N_TYPES);
	tcase_add_loop_test(tc, test_simd_matmul, 0, N_TYPES);
	tcase_add_test(tc, test_simd_attention);
	tcase_add_test(tc, test_simd_attention_q8);
	tcase_add_test(tc, test_simd_elementwise);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_loop_test(tc, test_zero_length, 0, N_TYPES);
	tcase_add_test(tc, test_ragged_n);
	tcase_add_test(tc, test_unsupported_types);
	tcase_add_test(tc, test_row_bytes_overflow);
	tcase_add_loop_test(tc, test_quant_extremes, 0, 4);
	tcase_add_test(tc, test_simd_empty);
	tcase_add_test(tc, test_kv_type_ok);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_loop_test(tc, test_quantize_bad_input, 0, 4);
	tcase_add_test(tc, test_quantize_float_types_any_value);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr = srunner_create(kernels_suite());
	int	 failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
