/*
 * cpu.c - CPU feature detection and the choice of kernel set.
 *
 * The features are read once with cpuid (and xgetbv: the OS must save the
 * wider registers too); kern_ops() then picks the kernel set once per
 * process, honouring $HEARTH_KERNELS (ref, avx512, auto). The reference
 * set lives here too: the scalar functions of ref.c and act.c behind the
 * same table as the SIMD sets, on weights in their GGUF layout.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* --- features ---------------------------------------------------------- */

static struct kern_cpu	 cpu_features;
static pthread_once_t	 cpu_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
/* XCR0: which register states the OS saves on a context switch. */
static uint64_t
cpu_xgetbv(void)
{
	uint32_t	 lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}
#endif

static void
cpu_detect(void)
{
#if defined(__x86_64__) || defined(__i386__)
	struct kern_cpu	 c;
	unsigned int	 a, b, cx, d, max;
	uint64_t	 xcr0 = 0;
	bool		 ymm, zmm;

	memset(&c, 0, sizeof(c));
	max = __get_cpuid_max(0, NULL);
	if (max < 1 || !__get_cpuid(1, &a, &b, &cx, &d))
		return;
	if (cx & (1u << 27))			/* OSXSAVE */
		xcr0 = cpu_xgetbv();
	ymm = (xcr0 & 0x6) == 0x6;		/* SSE and AVX state */
	zmm = ymm && (xcr0 & 0xe0) == 0xe0;	/* opmask, ZMM_Hi256, Hi16_ZMM */
	c.fma = ymm && (cx & (1u << 12));
	c.f16c = ymm && (cx & (1u << 29));
	if (max >= 7) {
		__cpuid_count(7, 0, a, b, cx, d);
		c.avx2 = ymm && (b & (1u << 5));
		c.avx512f = zmm && (b & (1u << 16));
		c.avx512dq = c.avx512f && (b & (1u << 17));
		c.avx512bw = c.avx512f && (b & (1u << 30));
		c.avx512vl = c.avx512f && (b & (1u << 31));
		c.avx512vnni = c.avx512f && (cx & (1u << 11));
		if (a >= 1) {
			__cpuid_count(7, 1, a, b, cx, d);
			c.avx_vnni = ymm && (a & (1u << 4));
			c.avx512bf16 = c.avx512f && (a & (1u << 5));
		}
	}
	cpu_features = c;
#endif
}

const struct kern_cpu *
kern_cpu(void)
{
	pthread_once(&cpu_once, cpu_detect);
	return &cpu_features;
}

/* --- the reference set ------------------------------------------------- */

static size_t
ref_pack_size(uint32_t type, size_t rows, size_t cols)
{
	size_t	 rb = kern_row_bytes(type, cols);

	if (rb == 0 || rows > SIZE_MAX / rb)
		return 0;
	return rb * rows;
}

static void
ref_pack(uint32_t type, const void *src, size_t rows, size_t cols, void *dst)
{
	memcpy(dst, src, kern_row_bytes(type, cols) * rows);
}

static void
ref_get_row(uint32_t type, const void *w, size_t rows, size_t cols, size_t r,
    float *dst)
{
	size_t	 rb = kern_row_bytes(type, cols);

	(void)rows;
	kern_dequant_row_ref(type, (const uint8_t *)w + r * rb, dst, cols);
}

static bool
ref_act_same(uint32_t a, uint32_t b)
{
	return kern_act_type(a) == kern_act_type(b);
}

static void
ref_matmul(const struct kern_mm *mm, size_t r0, size_t r1)
{
	const uint8_t	*w = mm->w, *xq = mm->xq;
	size_t		 rb = kern_row_bytes(mm->type, mm->cols);
	size_t		 ab = kern_act_row_bytes(mm->type, mm->cols);
	size_t		 i, r;
	float		 v, *y;

	for (i = 0; i < mm->n_x; i++) {
		y = mm->y + i * mm->ldy;
		for (r = r0; r < r1; r++) {
			v = kern_vec_dot_ref(mm->type, w + r * rb, xq + i * ab,
			    mm->cols);
			if (mm->bias != NULL)
				v = v + mm->bias[r];
			y[r] = mm->add ? y[r] + v : v;
		}
	}
}

static void
ref_attend(const struct kern_attn *a)
{
	struct kern_attn row;
	size_t	 i, h;

	for (i = 0; i < a->n_rows; i++) {
		kern_attn_row(a, i, &row);
		for (h = 0; h < row.n_q; h++)
			kern_attend_head_ref(&row, h);
	}
}

static void
ref_to_fp16(uint16_t *dst, const float *src, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		dst[i] = kern_fp32_to_fp16(src[i]);
}

static const struct kern_ops ref_ops = {
	.isa = KERN_ISA_REF,
	.name = "ref",
	.layout = KERN_LAYOUT_ROWS,
	.row_align = 1,
	.pack_size = ref_pack_size,
	.pack = ref_pack,
	.get_row = ref_get_row,
	.act_row_bytes = kern_act_row_bytes,
	.quantize_act = kern_quantize_act_ref,
	.act_same = ref_act_same,
	.matmul = ref_matmul,
	.attend = ref_attend,
	.silu_mul = kern_silu_mul_ref,
	.to_fp16 = ref_to_fp16,
};

/* --- the choice -------------------------------------------------------- */

static const struct kern_ops	*ops_chosen;
static pthread_once_t		 ops_once = PTHREAD_ONCE_INIT;

const struct kern_ops *
kern_ops_get(enum kern_isa isa)
{
	switch (isa) {
	case KERN_ISA_REF:
		return &ref_ops;
	case KERN_ISA_AVX512:
		return kern_avx512_ops();
	}
	return NULL;
}

const struct kern_ops *
kern_ops_choose(const char *want)
{
	const struct kern_ops	*o;

	if (want != NULL && strcmp(want, "ref") == 0)
		return &ref_ops;
	/* "avx512", "auto" and anything else: the best there is (for now
	 * the only SIMD set) */
	o = kern_avx512_ops();
	return o != NULL ? o : &ref_ops;
}

static void
ops_choose(void)
{
	ops_chosen = kern_ops_choose(getenv("HEARTH_KERNELS"));
}

const struct kern_ops *
kern_ops(void)
{
	pthread_once(&ops_once, ops_choose);
	return ops_chosen;
}
