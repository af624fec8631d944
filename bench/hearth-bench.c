/*
 * hearth-bench.c - prompt processing and generation speed, like
 * llama-bench, beside llama.cpp on the same file.
 *
 *   hearth-bench -m MODEL.gguf [-m MODEL2 ...] [-t THREADS] [-p 512]
 *       [-n 128] [-b BATCH] [-r REPEATS] [-s STREAMS] [-o md|json]
 *       [-ctk f16|q8_0] [-ctv f16|q8_0] [--pages hugetlb|thp|small]
 *
 * Tests per model: pp<P> (a prompt of P random tokens in batches of B,
 * from an empty cache), tg<N> (N tokens decoded one at a time, greedy,
 * from an empty cache) and, with -s S > 1, tg<N>x<S> (S streams decoded
 * together in one batch per step: aggregate tokens/s). Each is run once
 * to warm up, then R times; t/s is the mean and stdev over the runs.
 *
 * It also measures the machine: the read bandwidth of a multi-threaded
 * streaming read of 1 GiB (best of 5 passes), and the peak multiply-add
 * rates (vpdpbusd for the 8-bit kernels, FMA for float weights), so tg
 * is shown as a fraction of the bandwidth roofline (weight bytes read
 * per token x t/s / bandwidth) and pp as a fraction of the peak.
 *
 * -ctk and -ctv (llama-bench's names; --cache-type-k/-v too) pick the
 * KV cache types of keys and values, f16 by default; they are passed on
 * to llama-bench and reported as type_k and type_v.
 *
 * --pages picks the best kind of page for the weights and KV caches
 * (explicit hugepages, then THP, then small pages; thp: THP then small;
 * small: small pages only, THP refused with MADV_NOHUGEPAGE), as hearthd's
 * pages key; what was actually obtained is printed per model.
 *
 * With LLAMA_BENCH naming a llama-bench binary, every run of hearth is
 * followed by one of llama-bench on the same file, threads and test, and
 * the table gains llama.cpp's t/s and the ratio hearth / llama.cpp.
 *
 * -o json prints a JSON array, one object per test, with llama-bench's
 * field names (model_filename, model_type, n_threads, n_prompt, n_gen,
 * n_batch, avg_ts, stddev_ts, ...) and hearth's additions.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "forward.h"
#include "kernels.h"
#include "model.h"
#include "pool.h"

#define BENCH_MAX_MODELS	16
#define BENCH_MAX_REPS		100
#define BENCH_BW_BYTES		((size_t)1 << 30)
#define BENCH_BW_PASSES		5

struct bench_opts {
	const char	*models[BENCH_MAX_MODELS];
	int		 n_models;
	uint32_t	 threads;	/* 0: one per physical core */
	uint32_t	 n_prompt;
	uint32_t	 n_gen;
	uint32_t	 n_batch;
	uint32_t	 reps;
	uint32_t	 streams;
	uint32_t	 depth;		/* -d: tokens in the cache first */
	bool		 json;
	const char	*llama;		/* $LLAMA_BENCH or NULL */
	uint32_t	 type_k;	/* KV cache keys: KERN_TYPE_F16, _Q8_0 */
	uint32_t	 type_v;	/* KV cache values, likewise */
	bool		 has_pages;	/* --pages given */
	enum mem_pages	 pages;		/* --pages: weights and KV caches */
};

/* The machine, measured once. */
struct bench_machine {
	double		 bw;		/* bytes/s, streaming read */
	double		 peak_vnni;	/* 8-bit multiply-adds/s */
	double		 peak_fma;	/* float multiply-adds/s */
	uint32_t	 threads;
};

/* One test's samples (t/s), hearth's and llama.cpp's. */
struct bench_result {
	char		 name[32];	/* pp512, tg128, tg128x8, pp512 @ d4096 */
	uint32_t	 n_prompt;
	uint32_t	 n_gen;
	uint32_t	 streams;
	double		 ts[BENCH_MAX_REPS];
	double		 llama_ts[BENCH_MAX_REPS];
	uint32_t	 n;
	uint32_t	 n_llama;
	double		 frac;		/* of roofline (tg) or peak (pp) */
};

static void
usage(void)
{
	fprintf(stderr, "usage: hearth-bench -m MODEL.gguf [-m MODEL ...] "
	    "[-t THREADS] [-p N_PROMPT]\n"
	    "                    [-n N_GEN] [-b BATCH] [-r REPEATS] "
	    "[-s STREAMS] [-d DEPTH]\n"
	    "                    [-o md|json] [-ctk f16|q8_0] [-ctv f16|q8_0] "
	    "\n                    [--pages hugetlb|thp|small]\n"
	    "environment: LLAMA_BENCH=path/to/llama-bench (run it "
	    "interleaved, show ratios)\n"
	    "             HEARTH_KERNELS=ref|avx512|auto, HEARTH_PIN=0\n");
	exit(2);
}

static double
now_s(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t
parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max)
{
	unsigned long	 v;
	char		*end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "hearth-bench: %s: bad value '%s' (%u..%u)\n",
		    opt, s, min, max);
		exit(2);
	}
	return (uint32_t)v;
}

static void
mean_sd(const double *v, uint32_t n, double *mean, double *sd)
{
	double	 m = 0, s = 0;
	uint32_t i;

	for (i = 0; i < n; i++)
		m += v[i];
	m = n ? m / n : 0;
	for (i = 0; i < n; i++)
		s += (v[i] - m) * (v[i] - m);
	*mean = m;
	*sd = n > 1 ? sqrt(s / (n - 1)) : 0;
}

/* --- the machine ------------------------------------------------------ */

struct bw_job {
	const uint8_t	*buf;
	size_t		 size;
	_Atomic uint64_t sink;
};

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static uint64_t
bw_read512(const uint8_t *p, size_t n)
{
	__m512i	 a = _mm512_setzero_si512(), b = a, c = a, d = a;
	uint64_t lanes[8], sum = 0;
	size_t	 i;

	for (i = 0; i + 256 <= n; i += 256) {
		a = _mm512_add_epi64(a, _mm512_load_si512(p + i));
		b = _mm512_add_epi64(b, _mm512_load_si512(p + i + 64));
		c = _mm512_add_epi64(c, _mm512_load_si512(p + i + 128));
		d = _mm512_add_epi64(d, _mm512_load_si512(p + i + 192));
	}
	a = _mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d));
	/* not _mm512_reduce_add_epi64: its C fallback adds signed long
	 * longs, which may overflow (undefined; UBSan stops there) */
	_mm512_storeu_si512(lanes, a);
	for (i = 0; i < 8; i++)
		sum += lanes[i];
	return sum;
}
#endif

static uint64_t
bw_read(const uint8_t *p, size_t n)
{
	const uint64_t	*q = (const uint64_t *)p;
	uint64_t	 s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	size_t		 i;

#if defined(__x86_64__)
	if (kern_cpu()->avx512f)
		return bw_read512(p, n);
#endif
	for (i = 0; i + 4 <= n / 8; i += 4) {
		s0 += q[i];
		s1 += q[i + 1];
		s2 += q[i + 2];
		s3 += q[i + 3];
	}
	return s0 + s1 + s2 + s3;
}

static void
bw_task(void *arg, uint32_t ith, uint32_t nth)
{
	struct bw_job	*j = arg;
	size_t		 chunk = j->size / nth / 256 * 256;

	atomic_fetch_add(&j->sink, bw_read(j->buf + chunk * ith, chunk));
}

static void
bw_touch(void *arg, uint32_t ith, uint32_t nth)
{
	struct bw_job	*j = arg;
	size_t		 chunk = j->size / nth;

	memset((uint8_t *)j->buf + chunk * ith, (int)ith + 1, chunk);
}

/* Streaming read bandwidth with every thread of the pool, bytes/s. */
static double
bench_bandwidth(struct kern_pool *pool)
{
	struct bw_job	 j;
	double		 best = 0, t;
	void		*buf;
	int		 pass;

	if (posix_memalign(&buf, 64, BENCH_BW_BYTES) != 0)
		return 0;
	j.buf = buf;
	j.size = BENCH_BW_BYTES;
	atomic_init(&j.sink, 0);
	kern_pool_run(pool, bw_touch, &j);	/* first touch, each its part */
	for (pass = 0; pass < BENCH_BW_PASSES; pass++) {
		t = now_s();
		kern_pool_run(pool, bw_task, &j);
		t = now_s() - t;
		if (BENCH_BW_BYTES / t > best)
			best = BENCH_BW_BYTES / t;
	}
	free(buf);
	return best;
}

struct peak_job {
	int		 kind;		/* 0: vpdpbusd zmm, 1: fma zmm, 2: fma ymm */
	double		 rate[KERN_POOL_MAX_THREADS];	/* instructions/s */
};

#define PEAK_ITERS	20000000L

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512vnni")))
static double
peak_vnni512(void)
{
	/* 16 independent sums: vpdpbusd's latency (about 6 cycles here)
	 * times its 2 a cycle; 8 chains measure the latency instead */
	__m512i	 a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
	__m512i	 a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0;
	__m512i	 a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
	__m512i	 w = _mm512_set1_epi32(0x01020304);
	double	 t = now_s();
	long	 i;

	for (i = 0; i < PEAK_ITERS / 16; i++) {
		a0 = _mm512_dpbusd_epi32(a0, w, w);
		a1 = _mm512_dpbusd_epi32(a1, w, w);
		a2 = _mm512_dpbusd_epi32(a2, w, w);
		a3 = _mm512_dpbusd_epi32(a3, w, w);
		a4 = _mm512_dpbusd_epi32(a4, w, w);
		a5 = _mm512_dpbusd_epi32(a5, w, w);
		a6 = _mm512_dpbusd_epi32(a6, w, w);
		a7 = _mm512_dpbusd_epi32(a7, w, w);
		a8 = _mm512_dpbusd_epi32(a8, w, w);
		a9 = _mm512_dpbusd_epi32(a9, w, w);
		a10 = _mm512_dpbusd_epi32(a10, w, w);
		a11 = _mm512_dpbusd_epi32(a11, w, w);
		a12 = _mm512_dpbusd_epi32(a12, w, w);
		a13 = _mm512_dpbusd_epi32(a13, w, w);
		a14 = _mm512_dpbusd_epi32(a14, w, w);
		a15 = _mm512_dpbusd_epi32(a15, w, w);
		__asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3),
		    "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7));
		__asm__ volatile("" : "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11),
		    "+v"(a12), "+v"(a13), "+v"(a14), "+v"(a15));
	}
	t = now_s() - t;
	a0 = _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2,
	    a3));
	a4 = _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6,
	    a7));
	a8 = _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10,
	    a11));
	a12 = _mm512_add_epi32(_mm512_add_epi32(a12, a13),
	    _mm512_add_epi32(a14, a15));
	__asm__ volatile("" : : "v"(a0), "v"(a4), "v"(a8), "v"(a12));
	return (double)(PEAK_ITERS / 16) * 16 / t * 64;	/* 64 MACs each */
}

__attribute__((target("avx512f")))
static double
peak_fma512(void)
{
	__m512	 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	__m512	 a4 = a0, a5 = a0, a6 = a0, a7 = a0;
	__m512	 w = _mm512_set1_ps(0.999f);
	double	 t = now_s();
	long	 i;

	for (i = 0; i < PEAK_ITERS / 8; i++) {
		a0 = _mm512_fmadd_ps(a0, w, w);
		a1 = _mm512_fmadd_ps(a1, w, w);
		a2 = _mm512_fmadd_ps(a2, w, w);
		a3 = _mm512_fmadd_ps(a3, w, w);
		a4 = _mm512_fmadd_ps(a4, w, w);
		a5 = _mm512_fmadd_ps(a5, w, w);
		a6 = _mm512_fmadd_ps(a6, w, w);
		a7 = _mm512_fmadd_ps(a7, w, w);
		__asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3),
		    "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7));
	}
	t = now_s() - t;
	__asm__ volatile("" : : "v"(a0), "v"(a4));
	return (double)PEAK_ITERS / t * 16;
}

__attribute__((target("avx2,fma")))
static double
peak_fma256(void)
{
	__m256	 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	__m256	 a4 = a0, a5 = a0, a6 = a0, a7 = a0;
	__m256	 w = _mm256_set1_ps(0.999f);
	double	 t = now_s();
	long	 i;

	for (i = 0; i < PEAK_ITERS / 8; i++) {
		a0 = _mm256_fmadd_ps(a0, w, w);
		a1 = _mm256_fmadd_ps(a1, w, w);
		a2 = _mm256_fmadd_ps(a2, w, w);
		a3 = _mm256_fmadd_ps(a3, w, w);
		a4 = _mm256_fmadd_ps(a4, w, w);
		a5 = _mm256_fmadd_ps(a5, w, w);
		a6 = _mm256_fmadd_ps(a6, w, w);
		a7 = _mm256_fmadd_ps(a7, w, w);
		__asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3),
		    "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7));
	}
	t = now_s() - t;
	__asm__ volatile("" : : "x"(a0), "x"(a4));
	return (double)PEAK_ITERS / t * 8;
}
#endif

static void
peak_task(void *arg, uint32_t ith, uint32_t nth)
{
	struct peak_job	*j = arg;
	const struct kern_cpu *c = kern_cpu();

	(void)nth;
	j->rate[ith] = 0;
#if defined(__x86_64__)
	if (j->kind == 0 && c->avx512vnni)
		j->rate[ith] = peak_vnni512();
	else if (j->kind == 1 && c->avx512f)
		j->rate[ith] = peak_fma512();
	else if (j->kind == 2 && c->avx2 && c->fma)
		j->rate[ith] = peak_fma256();
#else
	(void)c;
#endif
}

/*
 * Multiply-adds/s of one kind on every thread together: the fastest
 * thread of 5 passes (all threads running at once) times the threads.
 * The cores are alike; a thread that lost its CPU for part of a pass
 * (others may share the machine) would otherwise lower the peak and
 * make the "% of peak" of later tests look better than they are.
 */
static double
bench_peak(struct kern_pool *pool, int kind)
{
	struct peak_job	 j;
	double		 best = 0;
	uint32_t	 i, pass;

	for (pass = 0; pass < 5; pass++) {
		memset(&j, 0, sizeof(j));
		j.kind = kind;
		kern_pool_run(pool, peak_task, &j);
		for (i = 0; i < kern_pool_threads(pool); i++)
			if (j.rate[i] > best)
				best = j.rate[i];
	}
	return best * kern_pool_threads(pool);
}

static void
bench_machine(uint32_t threads, struct bench_machine *bm)
{
	struct kern_pool	*pool;
	double			 f;

	memset(bm, 0, sizeof(*bm));
	if (kern_pool_new(threads, &pool) < 0) {
		fprintf(stderr, "hearth-bench: cannot start threads\n");
		exit(1);
	}
	bm->threads = kern_pool_threads(pool);
	bm->bw = bench_bandwidth(pool);
	bm->peak_vnni = bench_peak(pool, 0);
	bm->peak_fma = bench_peak(pool, 1);
	if ((f = bench_peak(pool, 2)) > bm->peak_fma)
		bm->peak_fma = f;
	kern_pool_free(pool);
}

/* --- the model -------------------------------------------------------- */

/* The matrices every token goes through, in order. */
static size_t
model_mats(const struct model *m, const struct model_weight **out, size_t max)
{
	size_t	 n = 0;
	uint32_t l;

	for (l = 0; l < m->hp.n_layer && n + 7 <= max; l++) {
		const struct model_layer *L = &m->layers[l];

		out[n++] = &L->wq;
		out[n++] = &L->wk;
		out[n++] = &L->wv;
		out[n++] = &L->wo;
		out[n++] = &L->w_gate;
		out[n++] = &L->w_up;
		out[n++] = &L->w_down;
	}
	if (n < max)
		out[n++] = &m->output;
	return n;
}

/* Bytes of weights read per decoded token, and multiply-adds per token
 * (matrices only); *vnni when all of them are 8-bit kernels. */
static void
model_cost(const struct model *m, double *bytes, double *macs, bool *vnni)
{
	const struct model_weight *w[7 * 1024 + 1];
	size_t	 n = model_mats(m, w, sizeof(w) / sizeof(w[0])), i;

	*bytes = 0;
	*macs = 0;
	*vnni = true;
	for (i = 0; i < n; i++) {
		if (w[i]->layout == KERN_LAYOUT_ROWS)
			*bytes += (double)kern_row_bytes(w[i]->type,
			    w[i]->cols) * w[i]->rows;
		else
			*bytes += (double)m->ops->pack_size(w[i]->type,
			    w[i]->rows, w[i]->cols);
		*macs += (double)w[i]->rows * w[i]->cols;
		if (kern_act_type(w[i]->type) == KERN_TYPE_F32)
			*vnni = false;
	}
}

/* "llama 1B Q4_0", as llama-bench names models. */
static void
model_desc(const struct model *m, char *buf, size_t len)
{
	const struct model_weight *w[7 * 1024 + 1];
	size_t	 n = model_mats(m, w, sizeof(w) / sizeof(w[0])), i;
	uint32_t main_type = m->layers[0].wq.type;
	bool	 mixed = false;
	char	 tn[16];
	double	 b = (double)m->n_params / 1e9;

	for (i = 0; i + 1 < n; i++)
		if (w[i]->type != main_type)
			mixed = true;
	snprintf(tn, sizeof(tn), "%s", kern_type_name(main_type));
	for (i = 0; tn[i] != '\0'; i++)
		tn[i] = (char)(tn[i] >= 'a' && tn[i] <= 'z' ? tn[i] - 32 :
		    tn[i]);
	if (b >= 1)
		snprintf(buf, len, "%s %.0fB %s%s", model_arch_name(m->hp.arch),
		    b, tn, mixed ? " (mixed)" : "");
	else
		snprintf(buf, len, "%s %.0fM %s%s", model_arch_name(m->hp.arch),
		    b * 1e3, tn, mixed ? " (mixed)" : "");
}

static size_t
argmax(const float *v, size_t n)
{
	size_t	 i, best = 0;

	for (i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	return best;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static int32_t
rand_token(const struct model *m)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (int32_t)(rng_state % m->hp.n_vocab);
}

static void
die_eng(const char *what, const struct eng_err *err)
{
	fprintf(stderr, "hearth-bench: %s: %s\n", what, err->msg);
	exit(1);
}

/* One pp run: seconds for n_prompt tokens after the cache's first
 * o->depth positions. */
static double
run_pp(struct fwd *f, struct fwd_kv *kv, const struct bench_opts *o)
{
	struct eng_err	 err = { "" };
	int32_t		*ids = malloc(o->n_prompt * sizeof(*ids));
	uint32_t	 i;
	double		 t;

	if (ids == NULL)
		exit(1);
	for (i = 0; i < o->n_prompt; i++)
		ids[i] = rand_token(f->m);
	fwd_kv_truncate(kv, o->depth);
	t = now_s();
	if (fwd_eval(f, kv, ids, o->n_prompt, false, &err) < 0)
		die_eng("pp", &err);
	t = now_s() - t;
	free(ids);
	return t;
}

/* One tg run: seconds for n tokens decoded greedily after the caches'
 * first depth positions, in n_kv streams at once. */
static double
run_tg(struct fwd *f, struct fwd_kv **kv, uint32_t n_kv, uint32_t n,
    uint32_t depth)
{
	struct eng_err	 err = { "" };
	struct fwd_seq	 seq[64];
	int32_t		 tok[64];
	uint32_t	 i, s;
	double		 t;

	for (s = 0; s < n_kv; s++) {
		fwd_kv_truncate(kv[s], depth);
		tok[s] = rand_token(f->m);
		memset(&seq[s], 0, sizeof(seq[s]));
		seq[s].kv = kv[s];
		seq[s].tokens = &tok[s];
		seq[s].n = 1;
	}
	t = now_s();
	for (i = 0; i < n; i++) {
		if (fwd_eval_batch(f, seq, n_kv, &err) < 0)
			die_eng("tg", &err);
		for (s = 0; s < n_kv; s++)
			tok[s] = (int32_t)argmax(fwd_logits(f,
			    seq[s].logits_row), f->m->hp.n_vocab);
	}
	return now_s() - t;
}

/* The first depth positions of a cache: random tokens, not timed. */
static void
fill_depth(struct fwd *f, struct fwd_kv *kv, uint32_t depth)
{
	struct eng_err	 err = { "" };
	int32_t		*ids;
	uint32_t	 i;

	if (depth == 0)
		return;
	if ((ids = malloc(depth * sizeof(*ids))) == NULL)
		exit(1);
	for (i = 0; i < depth; i++)
		ids[i] = rand_token(f->m);
	fwd_kv_truncate(kv, 0);
	if (fwd_eval(f, kv, ids, depth, false, &err) < 0)
		die_eng("-d", &err);
	free(ids);
}

/* --- llama-bench ------------------------------------------------------- */

/* One llama-bench run of a test; its t/s, or -1. */
static double
run_llama(const struct bench_opts *o, const char *model, uint32_t threads,
    uint32_t n_prompt, uint32_t n_gen)
{
	char		 cmd[8192], dir[4096], *buf = NULL;
	size_t		 len = 0, cap = 0, r;
	FILE		*p;
	json_t		*root, *v;
	json_error_t	 je;
	double		 ts = -1;

	snprintf(dir, sizeof(dir), "%s", o->llama);
	snprintf(cmd, sizeof(cmd), "LD_LIBRARY_PATH='%s'${LD_LIBRARY_PATH:+:"
	    "$LD_LIBRARY_PATH} '%s' -m '%s' -t %u -p %u -n %u -d %u -b %u "
	    "-ub %u -ctk %s -ctv %s -r 1 -o json 2>/dev/null", dirname(dir),
	    o->llama, model, threads, n_prompt, n_gen, o->depth, o->n_batch,
	    o->n_batch,
	    kern_type_name(o->type_k), kern_type_name(o->type_v));
	if ((p = popen(cmd, "r")) == NULL)
		return -1;
	for (;;) {
		if (len + 4096 > cap) {
			cap = cap ? cap * 2 : 65536;
			if ((buf = realloc(buf, cap)) == NULL)
				exit(1);
		}
		if ((r = fread(buf + len, 1, cap - len - 1, p)) == 0)
			break;
		len += r;
	}
	pclose(p);
	if (buf == NULL)
		return -1;
	buf[len] = '\0';
	root = json_loads(buf, 0, &je);
	free(buf);
	if (root == NULL)
		return -1;
	if (json_is_array(root) && json_array_size(root) > 0 &&
	    (v = json_object_get(json_array_get(root, 0), "avg_ts")) != NULL &&
	    json_is_number(v))
		ts = json_number_value(v);
	json_decref(root);
	return ts;
}

/* --- output ------------------------------------------------------------ */

static void
fmt_size(double bytes, char *buf, size_t len)
{
	if (bytes >= 1024.0 * 1024 * 1024)
		snprintf(buf, len, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
	else
		snprintf(buf, len, "%.2f MiB", bytes / (1024.0 * 1024));
}

static void
print_md_header(const struct bench_opts *o)
{
	printf("| %-28s | %10s | %8s | %-6s | %7s | %15s | %16s |",
	    "model", "size", "params", "kernel", "threads", "test", "t/s");
	if (o->llama != NULL)
		printf(" %16s | %6s |", "llama.cpp t/s", "ratio");
	printf(" %-16s |\n", "roofline / peak");
	printf("| %.28s | %.10s: | %.8s: | %.6s | %.7s: | %.15s: | %.16s: |",
	    "------------------------------", "----------", "----------",
	    "------", "-------", "---------------", "----------------");
	if (o->llama != NULL)
		printf(" %.16s: | %.6s: |", "----------------", "------");
	printf(" %.16s |\n", "----------------");
	fflush(stdout);
}

static void
print_md_row(const struct bench_opts *o, const struct model *m,
    const char *desc, double size, uint32_t threads,
    const struct bench_result *br, double tg1)
{
	char	 sz[32], ts[32], lts[32], ratio[16], frac[32], params[16];
	double	 mean, sd, lmean, lsd;

	mean_sd(br->ts, br->n, &mean, &sd);
	fmt_size(size, sz, sizeof(sz));
	snprintf(params, sizeof(params), "%.2f B", (double)m->n_params / 1e9);
	snprintf(ts, sizeof(ts), "%.2f ± %.2f", mean, sd);
	if (br->streams > 1)
		snprintf(frac, sizeof(frac), "%.2fx one stream",
		    tg1 > 0 ? mean / tg1 : 0);
	else if (br->n_gen > 0)
		snprintf(frac, sizeof(frac), "%.0f%% of roofline",
		    100 * br->frac);
	else
		snprintf(frac, sizeof(frac), "%.0f%% of peak", 100 * br->frac);
	printf("| %-28s | %10s | %8s | %-6s | %7u | %15s | %16s |", desc, sz,
	    params, m->ops->name, threads, br->name, ts);
	if (o->llama != NULL) {
		mean_sd(br->llama_ts, br->n_llama, &lmean, &lsd);
		if (br->n_llama > 0) {
			snprintf(lts, sizeof(lts), "%.2f ± %.2f", lmean, lsd);
			snprintf(ratio, sizeof(ratio), "%.2f", mean / lmean);
		} else {
			snprintf(lts, sizeof(lts), "-");
			snprintf(ratio, sizeof(ratio), "-");
		}
		printf(" %16s | %6s |", lts, ratio);
	}
	printf(" %-16s |\n", frac);
	fflush(stdout);
}

static json_t *
json_samples(const double *v, uint32_t n, bool ns)
{
	json_t	*a = json_array();
	uint32_t i;

	for (i = 0; i < n; i++)
		json_array_append_new(a, ns ? json_integer((json_int_t)v[i]) :
		    json_real(v[i]));
	return a;
}

static json_t *
json_row(const struct bench_opts *o, const char *path, const struct model *m,
    const char *desc, double size, uint32_t threads,
    const struct bench_machine *bm, const struct bench_result *br,
    double tg1)
{
	double	 mean, sd, ns[BENCH_MAX_REPS], nmean, nsd, lmean, lsd;
	uint32_t i, tokens = br->n_prompt + br->n_gen * (br->streams ?
	    br->streams : 1);
	json_t	*j;
	char	 tbuf[32];
	time_t	 now = time(NULL);

	mean_sd(br->ts, br->n, &mean, &sd);
	for (i = 0; i < br->n; i++)
		ns[i] = 1e9 * tokens / br->ts[i];
	mean_sd(ns, br->n, &nmean, &nsd);
	strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	j = json_object();
	json_object_set_new(j, "model_filename", json_string(path));
	json_object_set_new(j, "model_type", json_string(desc));
	json_object_set_new(j, "model_size", json_integer((json_int_t)size));
	json_object_set_new(j, "model_n_params",
	    json_integer((json_int_t)m->n_params));
	json_object_set_new(j, "n_batch", json_integer(o->n_batch));
	json_object_set_new(j, "n_ubatch", json_integer(o->n_batch));
	json_object_set_new(j, "n_threads", json_integer(threads));
	json_object_set_new(j, "type_k",
	    json_string(kern_type_name(o->type_k)));
	json_object_set_new(j, "type_v",
	    json_string(kern_type_name(o->type_v)));
	json_object_set_new(j, "n_prompt", json_integer(br->n_prompt));
	json_object_set_new(j, "n_gen", json_integer(br->n_gen));
	json_object_set_new(j, "n_depth", json_integer(o->depth));
	json_object_set_new(j, "test_time", json_string(tbuf));
	json_object_set_new(j, "avg_ns", json_integer((json_int_t)nmean));
	json_object_set_new(j, "stddev_ns", json_integer((json_int_t)nsd));
	json_object_set_new(j, "avg_ts", json_real(mean));
	json_object_set_new(j, "stddev_ts", json_real(sd));
	json_object_set_new(j, "samples_ns", json_samples(ns, br->n, true));
	json_object_set_new(j, "samples_ts", json_samples(br->ts, br->n,
	    false));
	/* hearth's own */
	json_object_set_new(j, "test", json_string(br->name));
	json_object_set_new(j, "kernels", json_string(m->ops->name));
	json_object_set_new(j, "n_streams", json_integer(br->streams ?
	    br->streams : 1));
	json_object_set_new(j, "bandwidth_gbs", json_real(bm->bw / 1e9));
	if (br->streams > 1)
		json_object_set_new(j, "vs_one_stream", json_real(tg1 > 0 ?
		    mean / tg1 : 0));
	else if (br->n_gen > 0)
		json_object_set_new(j, "roofline_frac", json_real(br->frac));
	else
		json_object_set_new(j, "peak_frac", json_real(br->frac));
	if (o->llama != NULL && br->n_llama > 0) {
		mean_sd(br->llama_ts, br->n_llama, &lmean, &lsd);
		json_object_set_new(j, "llama_avg_ts", json_real(lmean));
		json_object_set_new(j, "llama_stddev_ts", json_real(lsd));
		json_object_set_new(j, "llama_samples_ts",
		    json_samples(br->llama_ts, br->n_llama, false));
		json_object_set_new(j, "ratio", json_real(mean / lmean));
	}
	return j;
}

/* --- main --------------------------------------------------------------- */

/* What --pages obtained: the weights' and the KV caches' pages. */
static void
print_pages(const struct bench_opts *o, const struct model *m,
    struct fwd_kv *const *kv, uint32_t n_kv)
{
	struct mem_usage u;
	char w[160], k[160];
	uint32_t i;

	memset(&u, 0, sizeof(u));
	for (i = 0; i < n_kv; i++)
		mem_usage_add(&u, &kv[i]->mem->usage);
	mem_usage_format(&m->weights->usage, w, sizeof(w));
	mem_usage_format(&u, k, sizeof(k));
	fprintf(stderr, "hearth-bench: --pages %s: weights %s; KV caches %s\n",
	    mem_pages_name(o->pages), w, k);
	if (!o->json)
		printf("pages (%s): weights %s; KV caches %s\n",
		    mem_pages_name(o->pages), w, k);
}

static void
bench_model(const struct bench_opts *o, const char *path,
    const struct bench_machine *bm, json_t *out, bool *header)
{
	struct eng_err		 err = { "" };
	struct model		*m;
	struct fwd		*f;
	struct fwd_kv		*kv[64];
	struct bench_result	 res[3];
	uint32_t		 n_res = 0, ctx, nb, s, i, threads, k;
	double			 bytes, macs, att, size, tg1 = 0, peak;
	bool			 vnni;
	char			 desc[64], dsfx[24] = "";
	struct stat		 st;
	struct model_load_opts	 lo;

	fprintf(stderr, "hearth-bench: loading %s\n", path);
	model_load_opts_default(&lo);
	lo.kv_type_k = o->type_k;
	lo.kv_type_v = o->type_v;
	if (o->has_pages)
		lo.mem.pages = lo.kv_mem.pages = o->pages;
	if (model_open_opts(path, &lo, NULL, NULL, &m, &err) < 0)
		die_eng(path, &err);
	if (o->threads != 0 && model_set_threads(m, o->threads) < 0) {
		fprintf(stderr, "hearth-bench: cannot start %u threads\n",
		    o->threads);
		exit(1);
	}
	threads = model_threads(m);
	model_cost(m, &bytes, &macs, &vnni);
	model_desc(m, desc, sizeof(desc));
	size = stat(path, &st) == 0 ? (double)st.st_size : bytes;
	ctx = o->depth + (o->n_prompt > o->n_gen ? o->n_prompt : o->n_gen) +
	    1;
	nb = o->n_batch > o->streams ? o->n_batch : o->streams;
	if (fwd_new(m, nb, ctx, o->streams > 1 ? o->streams : 1, &f) < 0) {
		fprintf(stderr, "hearth-bench: out of memory\n");
		exit(1);
	}
	for (s = 0; s < (o->streams > 1 ? o->streams : 1); s++)
		if (fwd_kv_new(m, ctx, &kv[s]) < 0) {
			fprintf(stderr, "hearth-bench: out of memory\n");
			exit(1);
		}
	if (o->has_pages)
		print_pages(o, m, kv, o->streams > 1 ? o->streams : 1);
	if (o->depth > 0) {
		fprintf(stderr, "hearth-bench: %u tokens into %u cache%s first "
		    "(-d)\n", o->depth, o->streams > 1 ? o->streams : 1,
		    o->streams > 1 ? "s" : "");
		for (s = 0; s < (o->streams > 1 ? o->streams : 1); s++)
			fill_depth(f, kv[s], o->depth);
		/* the weights' and KV bytes a token reads at that depth */
		bytes += (double)m->hp.n_layer * o->depth *
		    (kern_row_bytes(o->type_k, m->hp.n_head_kv *
		    m->hp.head_dim) + kern_row_bytes(o->type_v,
		    m->hp.n_head_kv * m->hp.head_dim));
	}
	memset(res, 0, sizeof(res));
	if (o->depth > 0)	/* llama-bench's "pp512 @ d4096" */
		snprintf(dsfx, sizeof(dsfx), " @ d%u", o->depth);
	if (o->n_prompt > 0) {
		struct bench_result *r = &res[n_res++];

		snprintf(r->name, sizeof(r->name), "pp%u%s", o->n_prompt, dsfx);
		r->n_prompt = o->n_prompt;
	}
	if (o->n_gen > 0) {
		struct bench_result *r = &res[n_res++];

		snprintf(r->name, sizeof(r->name), "tg%u%s", o->n_gen, dsfx);
		r->n_gen = o->n_gen;
		if (o->streams > 1) {
			r = &res[n_res++];
			snprintf(r->name, sizeof(r->name), "tg%ux%u%s",
			    o->n_gen, o->streams, dsfx);
			r->n_gen = o->n_gen;
			r->streams = o->streams;
		}
	}

	for (k = 0; k < n_res; k++) {
		struct bench_result *r = &res[k];
		uint32_t n_kv = r->streams > 1 ? r->streams : 1;

		fprintf(stderr, "hearth-bench: %s %s", desc, r->name);
		/* warm up */
		if (r->n_prompt > 0)
			run_pp(f, kv[0], o);
		else
			run_tg(f, kv, n_kv, r->n_gen < 16 ? r->n_gen : 16,
			    o->depth);
		for (i = 0; i < o->reps; i++) {
			double t = r->n_prompt > 0 ? run_pp(f, kv[0], o) :
			    run_tg(f, kv, n_kv, r->n_gen, o->depth);

			r->ts[r->n++] = (r->n_prompt + (double)r->n_gen *
			    n_kv) / t;
			fprintf(stderr, " %.2f", r->ts[r->n - 1]);
			if (o->llama != NULL && r->streams <= 1) {
				double lt = run_llama(o, path, threads,
				    r->n_prompt, r->n_gen);

				if (lt > 0)
					r->llama_ts[r->n_llama++] = lt;
				fprintf(stderr, " (llama.cpp %.2f)", lt);
			}
		}
		fprintf(stderr, "\n");
		{
			double mean, sd;

			mean_sd(r->ts, r->n, &mean, &sd);
			if (r->streams > 1) {
				r->frac = 0;
			} else if (r->n_gen > 0) {
				tg1 = mean;
				r->frac = bm->bw > 0 ? mean * bytes / bm->bw :
				    0;
			} else {
				/* attention: position t costs t+1 keys, q.k
				 * and p.v, per layer and head */
				att = (double)m->hp.n_layer * m->hp.n_head *
				    m->hp.head_dim * 2 * (o->depth +
				    (o->n_prompt + 1) / 2.0);
				peak = vnni ? bm->peak_vnni : bm->peak_fma;
				r->frac = peak > 0 ? mean * (macs + att) / peak :
				    0;
			}
		}
	}
	for (k = 0; k < n_res; k++) {
		if (o->json) {
			json_array_append_new(out, json_row(o, path, m, desc,
			    size, threads, bm, &res[k], tg1));
		} else {
			if (!*header) {
				print_md_header(o);
				*header = true;
			}
			print_md_row(o, m, desc, size, threads, &res[k], tg1);
		}
	}
	for (s = 0; s < (o->streams > 1 ? o->streams : 1); s++)
		fwd_kv_free(kv[s]);
	fwd_free(f);
	model_free(m);
}

/* Take --pages KIND or --pages=KIND out of argv; the new argc. */
static int
pages_opt(int argc, char **argv, struct bench_opts *o)
{
	const char *v;
	int i, n = 1;

	for (i = 1; i < argc; i++) {
		v = NULL;
		if (strcmp(argv[i], "--pages") == 0) {
			if ((v = argv[i + 1]) == NULL)
				v = "";
			else
				i++;
		} else if (strncmp(argv[i], "--pages=", 8) == 0)
			v = argv[i] + 8;
		if (v == NULL) {
			argv[n++] = argv[i];
			continue;
		}
		if (mem_pages_parse(v, &o->pages) < 0) {
			fprintf(stderr, "hearth-bench: --pages: '%s' is not "
			    "hugetlb, thp or small\n", v);
			exit(2);
		}
		o->has_pages = true;
	}
	argv[n] = NULL;
	return n;
}

/* "f16" or "q8_0" (llama-bench's names) as a KV cache type. */
static uint32_t
kv_type(const char *opt, const char *v)
{
	if (v != NULL && strcmp(v, "f16") == 0)
		return KERN_TYPE_F16;
	if (v != NULL && strcmp(v, "q8_0") == 0)
		return KERN_TYPE_Q8_0;
	fprintf(stderr, "hearth-bench: %s: '%s' is not f16 or q8_0\n", opt,
	    v != NULL ? v : "");
	exit(2);
}

/* Take llama-bench's -ctk/-ctv (getopt cannot: two letters after one
 * dash) out of argv; the new argc. */
static int
kv_opts(int argc, char **argv, struct bench_opts *o)
{
	int	 i, n = 1;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-ctk") == 0 ||
		    strcmp(argv[i], "--cache-type-k") == 0) {
			o->type_k = kv_type(argv[i], argv[i + 1]);
			i++;
		} else if (strcmp(argv[i], "-ctv") == 0 ||
		    strcmp(argv[i], "--cache-type-v") == 0) {
			o->type_v = kv_type(argv[i], argv[i + 1]);
			i++;
		} else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return n;
}

int
main(int argc, char **argv)
{
	struct bench_opts	 o;
	struct bench_machine	 bm;
	const struct kern_cpu	*c = kern_cpu();
	json_t			*out = json_array();
	bool			 header = false;
	int			 ch, i;

	memset(&o, 0, sizeof(o));
	o.type_k = o.type_v = KERN_TYPE_F16;
	argc = kv_opts(argc, argv, &o);
	argc = pages_opt(argc, argv, &o);
	o.n_prompt = 512;
	o.n_gen = 128;
	o.n_batch = 512;
	o.reps = 5;
	o.streams = 8;
	while ((ch = getopt(argc, argv, "m:t:p:n:b:r:s:d:o:h")) != -1) {
		switch (ch) {
		case 'm':
			if (o.n_models == BENCH_MAX_MODELS)
				usage();
			o.models[o.n_models++] = optarg;
			break;
		case 't':
			o.threads = parse_u32("-t", optarg, 1,
			    KERN_POOL_MAX_THREADS);
			break;
		case 'p':
			o.n_prompt = parse_u32("-p", optarg, 0, 65536);
			break;
		case 'n':
			o.n_gen = parse_u32("-n", optarg, 0, 65536);
			break;
		case 'b':
			o.n_batch = parse_u32("-b", optarg, 1, 4096);
			break;
		case 'r':
			o.reps = parse_u32("-r", optarg, 1, BENCH_MAX_REPS);
			break;
		case 's':
			o.streams = parse_u32("-s", optarg, 0, 64);
			break;
		case 'd':
			o.depth = parse_u32("-d", optarg, 0, 1048576);
			break;
		case 'o':
			if (strcmp(optarg, "json") == 0)
				o.json = true;
			else if (strcmp(optarg, "md") != 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (o.n_models == 0 || optind != argc)
		usage();
	o.llama = getenv("LLAMA_BENCH");
	if (o.llama != NULL && *o.llama == '\0')
		o.llama = NULL;

	bench_machine(o.threads, &bm);
	if (!o.json) {
		printf("hearth-bench: kernels %s; cpu: avx2 %d fma %d f16c %d "
		    "avx512f %d bw %d vl %d vnni %d bf16 %d\n",
		    kern_ops()->name, c->avx2, c->fma, c->f16c, c->avx512f,
		    c->avx512bw, c->avx512vl, c->avx512vnni, c->avx512bf16);
		printf("machine (%u threads): read bandwidth %.1f GB/s, peak "
		    "%.0f G 8-bit MAC/s (vpdpbusd), %.0f G float MAC/s (FMA)\n",
		    bm.threads, bm.bw / 1e9, bm.peak_vnni / 1e9,
		    bm.peak_fma / 1e9);
		printf("KV cache: k %s, v %s\n", kern_type_name(o.type_k),
		    kern_type_name(o.type_v));
		if (o.llama != NULL)
			printf("llama.cpp: %s, interleaved run by run\n",
			    o.llama);
		printf("\n");
		fflush(stdout);
	}
	for (i = 0; i < o.n_models; i++)
		bench_model(&o, o.models[i], &bm, out, &header);
	if (o.json) {
		char *s = json_dumps(out, JSON_INDENT(2));

		if (s != NULL)
			printf("%s\n", s);
		free(s);
	}
	json_decref(out);
	return 0;
}
