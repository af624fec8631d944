/*
 * sampler.c - choose the next token from logits.
 *
 * The chain follows llama.cpp's default order: penalties over a ring of
 * the last accepted tokens, top-k, top-p, min-p, temperature, then a draw
 * from the softmax with a seeded xoshiro256** generator. Candidates are
 * ordered by logit descending, ties by id ascending; NaN logits count as
 * -inf. Selection of the best k candidates is a bounded heap (O(n log k))
 * so a 150k vocabulary costs little when k is small; top-p finds its set
 * with a histogram of probability mass over the logit range (O(n)) and
 * sorts only that. Nothing is allocated after smp_new.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

struct smp {
	struct smp_params	 p;		/* validated copy; penalty_last_n
						 * resolved to the window size */
	int32_t			 n_vocab;	/* logits per call */
	struct smp_cand		*cand;		/* [n_vocab] work array */
	int32_t			 win;		/* ring capacity, 0..SMP_MAX_PENALTY_LAST_N */
	int32_t			*ring;		/* [win] last accepted ids, oldest
						 * at head when full */
	int32_t			 head;		/* next slot to write */
	int32_t			 len;		/* ids in ring, <= win */
	int32_t			*count;		/* [n_vocab] occurrences in ring */
	uint32_t		*mark;		/* [n_vocab] epoch a token was last
						 * penalized in */
	uint32_t		 epoch;		/* current penalty pass */
	uint64_t		 rng[4];	/* xoshiro256** state */
};

/* --- random numbers ------------------------------------------------------- */

static uint64_t
smp_splitmix64(uint64_t *x)
{
	uint64_t z;

	z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t
smp_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static void
smp_seed(struct smp *s, uint64_t seed)
{
	uint64_t x = seed;
	int i;

	for (i = 0; i < 4; i++)
		s->rng[i] = smp_splitmix64(&x);
}

static uint64_t
smp_next(struct smp *s)
{
	uint64_t *t = s->rng;
	uint64_t r, u;

	r = smp_rotl(t[1] * 5, 7) * 9;
	u = t[1] << 17;
	t[2] ^= t[0];
	t[3] ^= t[1];
	t[1] ^= t[2];
	t[0] ^= t[3];
	t[2] ^= u;
	t[3] = smp_rotl(t[3], 45);
	return r;
}

/* Uniform in [0, 1). */
static double
smp_uniform(struct smp *s)
{
	return (double)(smp_next(s) >> 11) * 0x1.0p-53;
}

/* --- ordering ------------------------------------------------------------- */

static float
smp_key(float l)
{
	return isnan(l) ? -INFINITY : l;
}

/* a ranks before b: higher logit, then lower id. */
static bool
smp_better(const struct smp_cand *a, const struct smp_cand *b)
{
	float la = smp_key(a->logit), lb = smp_key(b->logit);

	if (la != lb)
		return la > lb;
	return a->id < b->id;
}

static void
smp_swap(struct smp_cand *a, struct smp_cand *b)
{
	struct smp_cand t = *a;

	*a = *b;
	*b = t;
}

/* Heap of h[0..n) with the worst candidate at the root. */
static void
smp_sift_down(struct smp_cand *h, size_t n, size_t i)
{
	size_t l, r, w;

	for (;;) {
		l = 2 * i + 1;
		r = l + 1;
		w = i;
		if (l < n && smp_better(&h[w], &h[l]))
			w = l;
		if (r < n && smp_better(&h[w], &h[r]))
			w = r;
		if (w == i)
			return;
		smp_swap(&h[i], &h[w]);
		i = w;
	}
}

static bool
smp_is_sorted(const struct smp_cand *c, size_t n)
{
	size_t i;

	for (i = 1; i < n; i++)
		if (smp_better(&c[i], &c[i - 1]))
			return false;
	return true;
}

/*
 * Move the k best of c[0..n) to c[0..k), best first; the rest stay
 * after them in some order. O(n log k), in place.
 */
static void
smp_select(struct smp_cand *c, size_t n, size_t k)
{
	size_t i, m;

	if (k > n)
		k = n;
	if (k == 0 || smp_is_sorted(c, n))
		return;
	for (i = k / 2; i-- > 0;)
		smp_sift_down(c, k, i);
	for (i = k; i < n; i++) {
		if (smp_better(&c[i], &c[0])) {
			smp_swap(&c[0], &c[i]);
			smp_sift_down(c, k, 0);
		}
	}
	for (m = k; m > 1; m--) {
		smp_swap(&c[0], &c[m - 1]);
		smp_sift_down(c, m - 1, 0);
	}
}

/*
 * c[i].p = softmax of the logits of c[0..n), n > 0. When the largest
 * logit is infinite (all -inf, or some +inf), the candidates equal to it
 * share the mass evenly. Returns the largest key.
 */
static float
smp_softmax(struct smp_cand *c, size_t n)
{
	float max = -INFINITY, l, inv;
	double sum = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		l = smp_key(c[i].logit);
		max = l > max ? l : max;
	}
	if (isinf(max)) {
		for (i = 0; i < n; i++) {
			c[i].p = smp_key(c[i].logit) == max ? 1.0f : 0.0f;
			sum += c[i].p;
		}
	} else {
		for (i = 0; i < n; i++) {
			/* NaN - max is NaN, and fmaxf drops it: exp(-inf) */
			c[i].p = expf(fmaxf(c[i].logit - max, -INFINITY));
			sum += c[i].p;
		}
	}
	inv = (float)(1.0 / sum);
	for (i = 0; i < n; i++)
		c[i].p *= inv;
	return max;
}

/* --- filters ---------------------------------------------------------------- */

void
smp_apply_top_k(struct smp_cand *c, size_t *n, int32_t k)
{
	size_t kk;

	if (k <= 0 || *n == 0)
		return;
	kk = (size_t)k < *n ? (size_t)k : *n;
	smp_select(c, *n, kk);
	*n = kk;
}

/* Length of the shortest prefix of c[0..n) reaching mass p, 0 if none. */
static size_t
smp_top_p_cut(const struct smp_cand *c, size_t n, float p)
{
	double cum = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		cum += c[i].p;
		if (cum >= p)
			return i + 1;
	}
	return 0;
}

/* Buckets of the top-p histogram. */
#define SMP_TOP_P_BUCKETS	256

/* Bucket of logit l in a histogram from lo with `scale` buckets per unit. */
static size_t
smp_bucket(float l, float lo, float scale)
{
	float x = (l - lo) * scale;

	if (!(x > 0.0f))
		return 0;	/* also -inf and NaN */
	if (x >= (float)(SMP_TOP_P_BUCKETS - 1))
		return SMP_TOP_P_BUCKETS - 1;
	return (size_t)x;
}

/*
 * With c[].p set, move a set of best candidates holding mass >= p to the
 * front of c[0..n) and return its size m (c[0..m) unsorted), or 0 when
 * the logits give no finite range to bucket. The bucket index grows with
 * the logit, so the set is a prefix of the sorted order: a histogram of
 * mass over the logit range finds the lowest bucket needed, and one pass
 * keeps everything from that bucket up. O(n), few branches.
 */
static size_t
smp_top_p_prefilter(struct smp_cand *c, size_t n, float p)
{
	double mass[SMP_TOP_P_BUCKETS] = { 0 }, cum = 0;
	float lo = INFINITY, hi = -INFINITY, l, scale;
	size_t i, m, b;

	for (i = 0; i < n; i++) {
		l = c[i].logit;
		if (isfinite(l)) {
			lo = l < lo ? l : lo;
			hi = l > hi ? l : hi;
		}
	}
	if (!(hi > lo) || !isfinite(hi - lo))
		return 0;
	scale = (float)SMP_TOP_P_BUCKETS / (hi - lo);
	for (i = 0; i < n; i++)
		mass[smp_bucket(c[i].logit, lo, scale)] += c[i].p;
	for (b = SMP_TOP_P_BUCKETS; b-- > 0;) {
		cum += mass[b];
		if (cum >= p)
			break;
	}
	if (b == (size_t)-1)
		return 0;
	for (i = m = 0; i < n; i++) {
		if (smp_bucket(c[i].logit, lo, scale) >= b)
			smp_swap(&c[i], &c[m++]);
	}
	return m;
}

void
smp_apply_top_p(struct smp_cand *c, size_t *n, float p)
{
	size_t m, cut;

	if (!(p < 1.0f) || *n == 0)
		return;
	smp_softmax(c, *n);
	if (!smp_is_sorted(c, *n)) {
		m = smp_top_p_prefilter(c, *n, p);
		if (m > 0) {
			smp_select(c, m, m);
			if ((cut = smp_top_p_cut(c, m, p)) > 0) {
				*n = cut;
				return;
			}
		}
		smp_select(c, *n, *n);	/* no range, or rounding: sort all */
	}
	cut = smp_top_p_cut(c, *n, p);
	if (cut > 0)
		*n = cut;	/* else rounding: the mass never got there */
}

void
smp_apply_min_p(struct smp_cand *c, size_t *n, float p)
{
	float max = -INFINITY, thr, l;
	size_t i, j;

	if (!(p > 0.0f) || *n == 0)
		return;
	if (p > 1.0f)
		p = 1.0f;
	for (i = 0; i < *n; i++) {
		l = smp_key(c[i].logit);
		if (l > max)
			max = l;
	}
	if (max == -INFINITY)
		return;		/* all equally impossible: keep them */
	/* p_i >= p * p_max  <=>  logit_i >= max + log(p) */
	thr = max + logf(p);
	for (i = j = 0; i < *n; i++) {
		if (smp_key(c[i].logit) >= thr)
			c[j++] = c[i];
	}
	*n = j;		/* >= 1: the maximum always passes */
}

/* --- penalties -------------------------------------------------------------- */

static bool
smp_penalties_on(const struct smp *s)
{
	return s->win > 0 && s->len > 0 && (s->p.repeat_penalty != 1.0f ||
	    s->p.presence_penalty != 0.0f || s->p.frequency_penalty != 0.0f);
}

static void
smp_new_epoch(struct smp *s)
{
	if (++s->epoch == 0) {
		memset(s->mark, 0, (size_t)s->n_vocab * sizeof(*s->mark));
		s->epoch = 1;
	}
}

/* The next distinct id of the window not yet seen in this epoch, or -1. */
static int32_t
smp_next_distinct(struct smp *s, int32_t *i)
{
	int32_t id;

	while (*i < s->len) {
		id = s->ring[(*i)++];
		if (s->mark[id] != s->epoch) {
			s->mark[id] = s->epoch;
			return id;
		}
	}
	return -1;
}

static float
smp_penalize(const struct smp *s, float l, int32_t cnt)
{
	if (l <= 0.0f)
		l *= s->p.repeat_penalty;
	else
		l /= s->p.repeat_penalty;
	return l - (float)cnt * s->p.frequency_penalty -
	    (cnt > 0 ? s->p.presence_penalty : 0.0f);
}

void
smp_apply_penalties(struct smp *s, float *logits)
{
	int32_t i = 0, id;

	if (!smp_penalties_on(s))
		return;
	smp_new_epoch(s);
	while ((id = smp_next_distinct(s, &i)) >= 0)
		logits[id] = smp_penalize(s, logits[id], s->count[id]);
}

/* Same on the work array while c[id].id == id. */
static void
smp_penalize_cand(struct smp *s, struct smp_cand *c)
{
	int32_t i = 0, id;

	if (!smp_penalties_on(s))
		return;
	smp_new_epoch(s);
	while ((id = smp_next_distinct(s, &i)) >= 0)
		c[id].logit = smp_key(smp_penalize(s, c[id].logit,
		    s->count[id]));
}

/* --- the sampler ------------------------------------------------------------ */

void
smp_params_default(struct smp_params *p)
{
	memset(p, 0, sizeof(*p));
	p->temperature = 0.8f;
	p->top_k = 40;
	p->top_p = 0.95f;
	p->min_p = 0.05f;
	p->repeat_penalty = 1.0f;
	p->presence_penalty = 0.0f;
	p->frequency_penalty = 0.0f;
	p->penalty_last_n = 64;
	p->seed = 0;
}

static bool
smp_params_valid(const struct smp_params *p)
{
	if (!isfinite(p->temperature) || !isfinite(p->top_p) ||
	    !isfinite(p->min_p) || !isfinite(p->repeat_penalty) ||
	    !isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
		return false;
	if (p->top_p < 0.0f || p->top_p > 1.0f)
		return false;
	if (p->min_p < 0.0f || p->min_p > 1.0f)
		return false;
	if (p->repeat_penalty <= 0.0f)
		return false;
	if (p->penalty_last_n < -1 ||
	    p->penalty_last_n > SMP_MAX_PENALTY_LAST_N)
		return false;
	return true;
}

int
smp_new(const struct smp_params *p, int32_t n_vocab, struct smp **out)
{
	struct smp *s;

	if (p == NULL || out == NULL || n_vocab <= 0 || !smp_params_valid(p))
		return -EINVAL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -ENOMEM;
	s->p = *p;
	s->n_vocab = n_vocab;
	s->win = p->penalty_last_n < 0 ? SMP_MAX_PENALTY_LAST_N :
	    p->penalty_last_n;
	s->p.penalty_last_n = s->win;
	if ((s->cand = calloc((size_t)n_vocab, sizeof(*s->cand))) == NULL)
		goto fail;
	if (s->win > 0) {
		s->ring = calloc((size_t)s->win, sizeof(*s->ring));
		s->count = calloc((size_t)n_vocab, sizeof(*s->count));
		s->mark = calloc((size_t)n_vocab, sizeof(*s->mark));
		if (s->ring == NULL || s->count == NULL || s->mark == NULL)
			goto fail;
	}
	smp_seed(s, p->seed);
	*out = s;
	return 0;
fail:
	smp_free(s);
	return -ENOMEM;
}

void
smp_free(struct smp *s)
{
	if (s == NULL)
		return;
	free(s->cand);
	free(s->ring);
	free(s->count);
	free(s->mark);
	free(s);
}

void
smp_reset(struct smp *s, uint64_t seed)
{
	int32_t i;

	for (i = 0; i < s->len; i++)
		s->count[s->ring[i]]--;
	s->len = 0;
	s->head = 0;
	smp_seed(s, seed);
}

void
smp_accept(struct smp *s, int32_t id)
{
	if (s->win == 0 || id < 0 || id >= s->n_vocab)
		return;
	if (s->len == s->win)
		s->count[s->ring[s->head]]--;
	else
		s->len++;
	s->ring[s->head] = id;
	s->count[id]++;
	s->head = s->head + 1 == s->win ? 0 : s->head + 1;
}

/* argmax of c[0..n), ties to the lowest id; c[i].id == i. */
static int32_t
smp_argmax(const struct smp_cand *c, size_t n)
{
	size_t i, best = 0;

	for (i = 1; i < n; i++)
		if (c[i].logit > c[best].logit)
			best = i;
	return c[best].id;
}

int32_t
smp_sample(struct smp *s, const float *logits)
{
	struct smp_cand *c = s->cand;
	size_t n = (size_t)s->n_vocab, i;
	double u, cum;
	int32_t last;

	for (i = 0; i < n; i++) {
		c[i].id = (int32_t)i;
		c[i].logit = smp_key(logits[i]);
		c[i].p = 0.0f;
	}
	smp_penalize_cand(s, c);
	if (s->p.temperature <= 0.0f)
		return smp_argmax(c, n);
	if (s->p.top_k > 0 && (size_t)s->p.top_k < n)
		smp_apply_top_k(c, &n, s->p.top_k);
	smp_apply_top_p(c, &n, s->p.top_p);
	smp_apply_min_p(c, &n, s->p.min_p);
	for (i = 0; i < n; i++)
		c[i].logit /= s->p.temperature;
	smp_softmax(c, n);

	u = smp_uniform(s);
	cum = 0;
	last = c[0].id;
	for (i = 0; i < n; i++) {
		if (c[i].p <= 0.0f)
			continue;
		last = c[i].id;
		cum += c[i].p;
		if (u < cum)
			return c[i].id;
	}
	return last;	/* the mass summed to a hair under 1 */
}
