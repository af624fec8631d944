/*
 * check_sampler.c - tests of the token sampler: determinism, each filter
 * on hand-built distributions, penalties, draw frequencies against the
 * softmax, huge vocabularies, the penalty window, odd logits and bad
 * parameters.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "testutil.h"

/* Parameters with every filter off at temperature 1. */
static void
plain_params(struct smp_params *p)
{
	smp_params_default(p);
	p->temperature = 1.0f;
	p->top_k = 0;
	p->top_p = 1.0f;
	p->min_p = 0.0f;
}

static struct smp *
new_smp(const struct smp_params *p, int32_t n_vocab)
{
	struct smp *s = NULL;

	ck_assert_int_eq(smp_new(p, n_vocab, &s), 0);
	ck_assert_ptr_nonnull(s);
	return s;
}

static void
fill_cands(struct smp_cand *c, const float *logits, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		c[i].id = (int32_t)i;
		c[i].logit = logits[i];
		c[i].p = 0.0f;
	}
}

static void
random_logits(float *l, size_t n, uint64_t *st, float scale)
{
	size_t i;

	for (i = 0; i < n; i++)
		l[i] = scale * tu_rand_normal(st);
}

/* softmax(l / temp) into out, in double. */
static void
ref_softmax(const float *l, size_t n, double temp, double *out)
{
	double max = -INFINITY, sum = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (l[i] > max)
			max = l[i];
	for (i = 0; i < n; i++) {
		out[i] = l[i] == -INFINITY ? 0 : exp((l[i] - max) / temp);
		sum += out[i];
	}
	for (i = 0; i < n; i++)
		out[i] /= sum;
}

/*
 * Draw `draws` tokens and return the chi-square statistic of the counts
 * against expected probabilities exp[n]; a token with expected 0 that is
 * drawn fails at once.
 */
static double
chi_square(struct smp *s, const float *logits, const double *exp_p, size_t n,
    int draws)
{
	int *cnt = calloc(n, sizeof(*cnt));
	double chi = 0, e;
	int i;
	int32_t t;
	size_t j;

	ck_assert_ptr_nonnull(cnt);
	for (i = 0; i < draws; i++) {
		t = smp_sample(s, logits);
		ck_assert_int_ge(t, 0);
		ck_assert_int_lt(t, (int32_t)n);
		cnt[t]++;
	}
	for (j = 0; j < n; j++) {
		e = exp_p[j] * draws;
		if (e == 0) {
			ck_assert_int_eq(cnt[j], 0);
			continue;
		}
		chi += (cnt[j] - e) * (cnt[j] - e) / e;
	}
	free(cnt);
	return chi;
}

/* --- core ------------------------------------------------------------------- */

START_TEST(test_defaults)
{
	struct smp_params p;

	smp_params_default(&p);
	ck_assert_float_eq(p.temperature, 0.8f);
	ck_assert_int_eq(p.top_k, 40);
	ck_assert_float_eq(p.top_p, 0.95f);
	ck_assert_float_eq(p.min_p, 0.05f);
	ck_assert_float_eq(p.repeat_penalty, 1.0f);
	ck_assert_float_eq(p.presence_penalty, 0.0f);
	ck_assert_float_eq(p.frequency_penalty, 0.0f);
	ck_assert_int_eq(p.penalty_last_n, 64);
	ck_assert_uint_eq(p.seed, 0);
}
END_TEST

START_TEST(test_seed_repeat)
{
	enum { NV = 100, NT = 300 };
	struct smp_params p;
	struct smp *a, *b;
	float logits[NV], flat[NV];
	int32_t ta[NT], tb[NT];
	uint64_t st = 7;
	int i, differ = 0;

	random_logits(logits, NV, &st, 1.0f);
	plain_params(&p);
	p.seed = 1234;
	a = new_smp(&p, NV);
	b = new_smp(&p, NV);
	for (i = 0; i < NT; i++) {
		ta[i] = smp_sample(a, logits);
		tb[i] = smp_sample(b, logits);
		ck_assert_int_eq(ta[i], tb[i]);
	}
	/* reset to the same seed replays the sequence */
	smp_reset(a, 1234);
	for (i = 0; i < NT; i++)
		ck_assert_int_eq(smp_sample(a, logits), ta[i]);

	/* a different seed on a flat distribution gives another sequence */
	for (i = 0; i < NV; i++)
		flat[i] = 0.0f;
	smp_reset(a, 1);
	smp_reset(b, 2);
	for (i = 0; i < NT; i++)
		differ += smp_sample(a, flat) != smp_sample(b, flat);
	ck_assert_int_gt(differ, NT / 2);
	smp_free(a);
	smp_free(b);
}
END_TEST

START_TEST(test_greedy)
{
	struct smp_params p;
	struct smp *s;
	float l[10] = { 0, 1, 2, 5, 1, 0, -3, 5, 4, 5 };

	smp_params_default(&p);
	p.temperature = 0.0f;
	s = new_smp(&p, 10);
	ck_assert_int_eq(smp_sample(s, l), 3);		/* ties: lowest id */
	smp_free(s);
	p.temperature = -1.0f;				/* negative: greedy too */
	s = new_smp(&p, 10);
	ck_assert_int_eq(smp_sample(s, l), 3);
	l[9] = 6;
	ck_assert_int_eq(smp_sample(s, l), 9);
	smp_free(s);
}
END_TEST

START_TEST(test_top_k_one_is_greedy)
{
	enum { NV = 500 };
	struct smp_params p;
	struct smp *g, *k1;
	float l[NV];
	uint64_t st = 99;
	int i;

	smp_params_default(&p);
	p.temperature = 0.0f;
	g = new_smp(&p, NV);
	smp_params_default(&p);
	p.top_k = 1;
	p.temperature = 1.5f;
	p.seed = 5;
	k1 = new_smp(&p, NV);
	for (i = 0; i < 200; i++) {
		random_logits(l, NV, &st, 2.0f);
		if (i % 3 == 0)		/* a tie for the maximum */
			l[i + 10] = l[i + 20] = 50.0f;
		ck_assert_int_eq(smp_sample(k1, l), smp_sample(g, l));
		if (i % 3 == 0)
			ck_assert_int_eq(smp_sample(g, l), i + 10);
	}
	smp_free(g);
	smp_free(k1);
}
END_TEST

START_TEST(test_filter_top_k)
{
	float l[6] = { 1, 5, 3, 4, 2, 0 };
	struct smp_cand c[6];
	size_t n = 6;

	fill_cands(c, l, 6);
	smp_apply_top_k(c, &n, 3);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(c[0].id, 1);
	ck_assert_int_eq(c[1].id, 3);
	ck_assert_int_eq(c[2].id, 2);
	ck_assert_float_eq(c[2].logit, 3.0f);

	/* k >= n keeps everything, sorted */
	fill_cands(c, l, 6);
	n = 6;
	smp_apply_top_k(c, &n, 10);
	ck_assert_uint_eq(n, 6);
	ck_assert_int_eq(c[0].id, 1);
	ck_assert_int_eq(c[5].id, 5);

	/* k <= 0 is off */
	fill_cands(c, l, 6);
	n = 6;
	smp_apply_top_k(c, &n, 0);
	ck_assert_uint_eq(n, 6);
	ck_assert_int_eq(c[0].id, 0);
}
END_TEST

START_TEST(test_filter_top_p)
{
	/* probabilities 0.05 0.5 0.15 0.3: sorted cumulative .5 .8 .95 1 */
	const float pr[4] = { 0.05f, 0.5f, 0.15f, 0.3f };
	struct smp_cand c[4];
	float l[4];
	size_t n, i;

	for (i = 0; i < 4; i++)
		l[i] = logf(pr[i]) + 3.0f;	/* any shift */
	fill_cands(c, l, 4);
	n = 4;
	smp_apply_top_p(c, &n, 0.9f);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(c[0].id, 1);
	ck_assert_int_eq(c[1].id, 3);
	ck_assert_int_eq(c[2].id, 2);
	ck_assert_float_eq_tol(c[0].p, 0.5f, 1e-6f);
	ck_assert_float_eq_tol(c[2].p, 0.15f, 1e-6f);

	fill_cands(c, l, 4);
	n = 4;
	smp_apply_top_p(c, &n, 0.7f);
	ck_assert_uint_eq(n, 2);

	fill_cands(c, l, 4);
	n = 4;
	smp_apply_top_p(c, &n, 0.45f);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(c[0].id, 1);

	fill_cands(c, l, 4);		/* 0: at least one kept */
	n = 4;
	smp_apply_top_p(c, &n, 0.0f);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(c[0].id, 1);

	fill_cands(c, l, 4);		/* 1: off */
	n = 4;
	smp_apply_top_p(c, &n, 1.0f);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(c[0].id, 0);

	/* equal logits in reverse id order: ties go to the lowest ids */
	for (i = 0; i < 4; i++) {
		c[i].id = 3 - (int32_t)i;
		c[i].logit = 1.0f;
	}
	n = 4;
	smp_apply_top_p(c, &n, 0.6f);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(c[0].id, 0);
	ck_assert_int_eq(c[1].id, 1);
	ck_assert_int_eq(c[2].id, 2);

	/* -inf candidates have no mass */
	l[0] = -INFINITY;
	fill_cands(c, l, 4);
	n = 4;
	smp_apply_top_p(c, &n, 0.999f);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_ne(c[0].id, 0);
	ck_assert_int_ne(c[1].id, 0);
	ck_assert_int_ne(c[2].id, 0);
}
END_TEST

static int
cmp_desc(const void *a, const void *b)
{
	const struct smp_cand *x = a, *y = b;

	if (x->logit != y->logit)
		return x->logit > y->logit ? -1 : 1;
	return x->id < y->id ? -1 : 1;
}

/* top-p on an unsorted array large enough to need several rounds. */
START_TEST(test_filter_top_p_large)
{
	enum { NV = 5000 };
	static struct smp_cand c[NV], r[NV];
	static float l[NV];
	const float ps[] = { 0.1f, 0.5f, 0.9f, 0.99f };
	uint64_t st = 3;
	double sum, max, cum;
	size_t n, i, want, k;

	for (k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
		random_logits(l, NV, &st, 0.5f + (float)k);
		fill_cands(r, l, NV);
		qsort(r, NV, sizeof(r[0]), cmp_desc);
		max = r[0].logit;
		for (sum = 0, i = 0; i < NV; i++)
			sum += exp(r[i].logit - max);
		for (cum = 0, want = 0; want < NV; want++) {
			cum += exp(r[want].logit - max) / sum;
			if (cum >= ps[k])
				break;
		}
		want++;
		fill_cands(c, l, NV);
		n = NV;
		smp_apply_top_p(c, &n, ps[k]);
		/* float vs double rounding may move the cut by one */
		ck_assert_msg(n + 1 >= want && n <= want + 1,
		    "p %g: kept %zu, want %zu", ps[k], n, want);
		for (i = 0; i < n && i < want; i++)
			ck_assert_int_eq(c[i].id, r[i].id);
	}
}
END_TEST

START_TEST(test_filter_min_p)
{
	/* probabilities .06 .5 .09 .2 .15; min_p 0.2 -> threshold 0.1 */
	const float pr[5] = { 0.06f, 0.5f, 0.09f, 0.2f, 0.15f };
	struct smp_cand c[5];
	float l[5];
	size_t n, i;

	for (i = 0; i < 5; i++)
		l[i] = logf(pr[i]);
	fill_cands(c, l, 5);
	n = 5;
	smp_apply_min_p(c, &n, 0.2f);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(c[0].id, 1);	/* order is kept */
	ck_assert_int_eq(c[1].id, 3);
	ck_assert_int_eq(c[2].id, 4);

	fill_cands(c, l, 5);
	n = 5;
	smp_apply_min_p(c, &n, 1.0f);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(c[0].id, 1);

	fill_cands(c, l, 5);
	n = 5;
	smp_apply_min_p(c, &n, 0.0f);	/* off */
	ck_assert_uint_eq(n, 5);

	fill_cands(c, l, 5);
	n = 5;
	smp_apply_min_p(c, &n, 0.1f);	/* threshold .05 keeps all */
	ck_assert_uint_eq(n, 5);
}
END_TEST

START_TEST(test_penalties_exact)
{
	struct smp_params p;
	struct smp *s;
	float l[10];
	int i;

	smp_params_default(&p);
	p.repeat_penalty = 2.0f;
	p.frequency_penalty = 0.5f;
	p.presence_penalty = 0.25f;
	s = new_smp(&p, 10);
	for (i = 0; i < 10; i++)
		l[i] = (float)i - 3.0f;
	l[2] = 4.0f;
	l[5] = -1.0f;
	l[7] = 0.0f;
	smp_accept(s, 2);
	smp_accept(s, 5);
	smp_accept(s, 2);
	smp_accept(s, 7);
	smp_apply_penalties(s, l);
	ck_assert_float_eq(l[2], 0.75f);	/* 4/2 - 2*.5 - .25 */
	ck_assert_float_eq(l[5], -2.75f);	/* -1*2 - .5 - .25 */
	ck_assert_float_eq(l[7], -0.75f);	/* 0 - .5 - .25 */
	for (i = 0; i < 10; i++)
		if (i != 2 && i != 5 && i != 7)
			ck_assert_float_eq(l[i], (float)i - 3.0f);
	smp_free(s);

	/* neutral parameters change nothing */
	smp_params_default(&p);
	s = new_smp(&p, 10);
	smp_accept(s, 3);
	l[3] = 1.5f;
	smp_apply_penalties(s, l);
	ck_assert_float_eq(l[3], 1.5f);
	smp_free(s);
}
END_TEST

START_TEST(test_penalties_greedy)
{
	struct smp_params p;
	struct smp *s;
	float l[5] = { 3.0f, 2.5f, 1.0f, 0.0f, -1.0f };

	/* repetition: 3/1.5 = 2 < 2.5 */
	smp_params_default(&p);
	p.temperature = 0.0f;
	p.repeat_penalty = 1.5f;
	s = new_smp(&p, 5);
	ck_assert_int_eq(smp_sample(s, l), 0);
	smp_accept(s, 0);
	ck_assert_int_eq(smp_sample(s, l), 1);
	ck_assert_float_eq(l[0], 3.0f);		/* input untouched */
	smp_free(s);

	/* frequency: 3 - n*0.3 drops below 2.5 on the second occurrence */
	smp_params_default(&p);
	p.temperature = 0.0f;
	p.frequency_penalty = 0.3f;
	s = new_smp(&p, 5);
	smp_accept(s, 0);
	ck_assert_int_eq(smp_sample(s, l), 0);
	smp_accept(s, 0);
	ck_assert_int_eq(smp_sample(s, l), 1);
	smp_free(s);

	/* presence: once is enough, more does not add */
	smp_params_default(&p);
	p.temperature = 0.0f;
	p.presence_penalty = 0.4f;
	s = new_smp(&p, 5);
	smp_accept(s, 0);
	smp_accept(s, 0);
	smp_accept(s, 0);
	ck_assert_int_eq(smp_sample(s, l), 0);	/* 2.6 > 2.5 */
	smp_accept(s, 1);
	ck_assert_int_eq(smp_sample(s, l), 0);	/* 2.6 > 2.1 */
	smp_free(s);

	/* penalty_last_n 0 disables them */
	smp_params_default(&p);
	p.temperature = 0.0f;
	p.presence_penalty = 10.0f;
	p.penalty_last_n = 0;
	s = new_smp(&p, 5);
	smp_accept(s, 0);
	ck_assert_int_eq(smp_sample(s, l), 0);
	smp_free(s);
}
END_TEST

START_TEST(test_frequencies)
{
	enum { NV = 8, DRAWS = 200000 };
	const float l[NV] = { 1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f, 1.5f,
	    -INFINITY };
	double e[NV], chi, sum;
	struct smp_params p;
	struct smp *s;
	int i;

	/* df 6 (7 live tokens): P(chi2 > 40) ~ 2e-7 */
	plain_params(&p);
	p.seed = 42;
	s = new_smp(&p, NV);
	ref_softmax(l, NV, 1.0, e);
	chi = chi_square(s, l, e, NV, DRAWS);
	ck_assert_msg(chi < 40.0, "temperature 1: chi2 %g", chi);
	smp_free(s);

	p.temperature = 0.5f;
	s = new_smp(&p, NV);
	ref_softmax(l, NV, 0.5, e);
	chi = chi_square(s, l, e, NV, DRAWS);
	ck_assert_msg(chi < 40.0, "temperature .5: chi2 %g", chi);
	smp_free(s);

	/* top-k 3 renormalizes over ids 4, 6, 0 */
	p.temperature = 1.0f;
	p.top_k = 3;
	s = new_smp(&p, NV);
	ref_softmax(l, NV, 1.0, e);
	for (sum = 0, i = 0; i < NV; i++) {
		if (i != 4 && i != 6 && i != 0)
			e[i] = 0;
		sum += e[i];
	}
	for (i = 0; i < NV; i++)
		e[i] /= sum;
	chi = chi_square(s, l, e, NV, DRAWS);
	ck_assert_msg(chi < 40.0, "top-k 3: chi2 %g", chi);
	smp_free(s);
}
END_TEST

START_TEST(test_chain)
{
	/* defaults: top-k 40 then top-p .95 then min-p .05 at T .8 */
	enum { NV = 1000 };
	static struct smp_cand r[NV];
	static float l[NV];
	static char allowed[NV], seen[NV];
	struct smp_params p;
	struct smp *s;
	uint64_t st = 11;
	double sum, cum, max;
	size_t n, i;
	int32_t t;

	random_logits(l, NV, &st, 3.0f);
	fill_cands(r, l, NV);
	qsort(r, NV, sizeof(r[0]), cmp_desc);
	/* expected set: top 40, then the .95 mass, then p >= .05 p_max */
	max = r[0].logit;
	for (sum = 0, i = 0; i < 40; i++)
		sum += exp(r[i].logit - max);
	for (cum = 0, n = 0; n < 40; n++) {
		cum += exp(r[n].logit - max) / sum;
		if (cum >= 0.95)
			break;
	}
	n++;
	for (i = 0; i < n; i++)
		if (exp(r[i].logit - max) >= 0.05)
			allowed[r[i].id] = 1;
	smp_params_default(&p);
	p.seed = 77;
	s = new_smp(&p, NV);
	for (i = 0; i < 5000; i++) {
		t = smp_sample(s, l);
		ck_assert_msg(allowed[t], "token %d outside the filtered set",
		    t);
		seen[t] = 1;
	}
	ck_assert(seen[r[0].id]);
	ck_assert(seen[r[1].id]);
	smp_free(s);
}
END_TEST

/* --- limits ----------------------------------------------------------------- */

START_TEST(test_huge_vocab)
{
	enum { NV = 152064 };
	static float l[NV];
	static struct smp_cand r[NV];
	static char top[NV];
	struct smp_params p;
	struct smp *s;
	uint64_t st = 5;
	int i;
	int32_t t;

	random_logits(l, NV, &st, 4.0f);
	fill_cands(r, l, NV);
	qsort(r, NV, sizeof(r[0]), cmp_desc);
	for (i = 0; i < 40; i++)
		top[r[i].id] = 1;

	smp_params_default(&p);
	p.seed = 9;
	s = new_smp(&p, NV);
	for (i = 0; i < 200; i++) {
		t = smp_sample(s, l);
		ck_assert(t >= 0 && t < NV && top[t]);
		smp_accept(s, t);
	}
	smp_free(s);

	/* top-p alone over the whole vocabulary */
	plain_params(&p);
	p.top_p = 0.5f;
	s = new_smp(&p, NV);
	for (i = 0; i < 20; i++) {
		t = smp_sample(s, l);
		ck_assert(t >= 0 && t < NV);
	}
	smp_free(s);

	p.temperature = 0.0f;
	s = new_smp(&p, NV);
	ck_assert_int_eq(smp_sample(s, l), r[0].id);
	smp_free(s);
}
END_TEST

START_TEST(test_window_wrap)
{
	struct smp_params p;
	struct smp *s;
	float l[10];
	int i;

	smp_params_default(&p);
	p.penalty_last_n = 3;
	p.presence_penalty = 1.0f;
	p.frequency_penalty = 0.0f;
	s = new_smp(&p, 10);
	smp_accept(s, 1);
	smp_accept(s, 2);
	smp_accept(s, 3);
	smp_accept(s, 4);		/* pushes 1 out */
	for (i = 0; i < 10; i++)
		l[i] = 0.0f;
	smp_apply_penalties(s, l);
	ck_assert_float_eq(l[1], 0.0f);
	ck_assert_float_eq(l[2], -1.0f);
	ck_assert_float_eq(l[3], -1.0f);
	ck_assert_float_eq(l[4], -1.0f);
	ck_assert_float_eq(l[0], 0.0f);

	/* many laps: only the last three count */
	for (i = 0; i < 1000; i++)
		smp_accept(s, i % 7);
	/* 997 % 7 = 3, 998 % 7 = 4, 999 % 7 = 5 */
	for (i = 0; i < 10; i++)
		l[i] = 0.0f;
	smp_apply_penalties(s, l);
	for (i = 0; i < 10; i++)
		ck_assert_float_eq(l[i], (i >= 3 && i <= 5) ? -1.0f : 0.0f);

	/* reset forgets */
	smp_reset(s, 0);
	for (i = 0; i < 10; i++)
		l[i] = 0.0f;
	smp_apply_penalties(s, l);
	for (i = 0; i < 10; i++)
		ck_assert_float_eq(l[i], 0.0f);
	smp_free(s);

	/* frequency counts follow the window */
	smp_params_default(&p);
	p.penalty_last_n = 4;
	p.frequency_penalty = 1.0f;
	s = new_smp(&p, 10);
	for (i = 0; i < 6; i++)
		smp_accept(s, 8);	/* window holds 4 of them */
	smp_accept(s, 9);
	for (i = 0; i < 10; i++)
		l[i] = 0.0f;
	smp_apply_penalties(s, l);
	ck_assert_float_eq(l[8], -3.0f);
	ck_assert_float_eq(l[9], -1.0f);
	/* out-of-range ids are ignored */
	smp_accept(s, -1);
	smp_accept(s, 10);
	l[8] = l[9] = 0.0f;
	smp_apply_penalties(s, l);
	ck_assert_float_eq(l[8], -3.0f);
	smp_free(s);

	/* -1: the largest window */
	smp_params_default(&p);
	p.penalty_last_n = -1;
	p.frequency_penalty = 1.0f;
	s = new_smp(&p, 10);
	for (i = 0; i < SMP_MAX_PENALTY_LAST_N + 100; i++)
		smp_accept(s, i < 100 ? 0 : 1);
	l[0] = l[1] = 0.0f;
	smp_apply_penalties(s, l);
	ck_assert_float_eq(l[0], 0.0f);
	ck_assert_float_eq(l[1], -(float)SMP_MAX_PENALTY_LAST_N);
	smp_free(s);
}
END_TEST

START_TEST(test_odd_logits)
{
	enum { NV = 16 };
	struct smp_params p;
	struct smp *s, *g;
	float l[NV];
	int i, j;
	int32_t t;

	smp_params_default(&p);
	p.seed = 3;
	p.repeat_penalty = 1.3f;
	p.frequency_penalty = 0.1f;
	s = new_smp(&p, NV);
	p.temperature = 0.0f;
	g = new_smp(&p, NV);
	smp_accept(s, 5);
	smp_accept(g, 5);

	/* all -inf but one */
	for (i = 0; i < NV; i++)
		l[i] = -INFINITY;
	l[11] = -2.0f;
	for (i = 0; i < 50; i++)
		ck_assert_int_eq(smp_sample(s, l), 11);
	ck_assert_int_eq(smp_sample(g, l), 11);

	/* all -inf: a valid id */
	l[11] = -INFINITY;
	for (i = 0; i < 50; i++) {
		t = smp_sample(s, l);
		ck_assert(t >= 0 && t < NV);
	}
	ck_assert_int_eq(smp_sample(g, l), 0);

	/* all NaN */
	for (i = 0; i < NV; i++)
		l[i] = NAN;
	for (i = 0; i < 50; i++) {
		t = smp_sample(s, l);
		ck_assert(t >= 0 && t < NV);
	}
	ck_assert_int_eq(smp_sample(g, l), 0);

	/* NaN mixed with numbers: the NaN ones are never drawn */
	for (i = 0; i < NV; i++)
		l[i] = (i % 2) ? NAN : 0.1f * (float)i;
	for (i = 0; i < 200; i++) {
		t = smp_sample(s, l);
		ck_assert(t >= 0 && t < NV && t % 2 == 0);
	}
	ck_assert_int_eq(smp_sample(g, l), 14);

	/* +inf wins */
	for (i = 0; i < NV; i++)
		l[i] = 1.0f;
	l[6] = INFINITY;
	for (i = 0; i < 20; i++)
		ck_assert_int_eq(smp_sample(s, l), 6);
	ck_assert_int_eq(smp_sample(g, l), 6);
	smp_free(s);
	smp_free(g);

	/* a tiny temperature overflows the logits: still the argmax */
	plain_params(&p);
	p.temperature = 1e-30f;
	s = new_smp(&p, NV);
	for (j = 0; j < 3; j++) {
		for (i = 0; i < NV; i++)
			l[i] = (float)((i * 7 + j) % NV);
		for (i = 0; i < 10; i++) {
			t = smp_sample(s, l);
			ck_assert_float_eq(l[t], (float)(NV - 1));
		}
	}
	smp_free(s);

	/* one token vocabulary */
	smp_params_default(&p);
	s = new_smp(&p, 1);
	l[0] = 0.0f;
	ck_assert_int_eq(smp_sample(s, l), 0);
	smp_free(s);
}
END_TEST

/* --- errors ----------------------------------------------------------------- */

START_TEST(test_bad_params)
{
	struct smp_params p;
	struct smp *s = (struct smp *)&p;	/* sentinel: must stay */

	smp_params_default(&p);
	ck_assert_int_eq(smp_new(&p, 0, &s), -EINVAL);
	ck_assert_int_eq(smp_new(&p, -5, &s), -EINVAL);
	ck_assert_int_eq(smp_new(NULL, 10, &s), -EINVAL);
	ck_assert_int_eq(smp_new(&p, 10, NULL), -EINVAL);

#define BAD(field, val) do {						\
	smp_params_default(&p);						\
	p.field = (val);						\
	ck_assert_int_eq(smp_new(&p, 10, &s), -EINVAL);			\
	ck_assert_ptr_eq(s, (struct smp *)&p);				\
} while (0)
	BAD(temperature, NAN);
	BAD(top_p, -0.01f);
	BAD(top_p, 1.01f);
	BAD(top_p, NAN);
	BAD(min_p, -0.5f);
	BAD(min_p, 1.5f);
	BAD(min_p, NAN);
	BAD(repeat_penalty, 0.0f);
	BAD(repeat_penalty, -1.0f);
	BAD(repeat_penalty, NAN);
	BAD(presence_penalty, NAN);
	BAD(frequency_penalty, NAN);
	BAD(frequency_penalty, INFINITY);
	BAD(penalty_last_n, SMP_MAX_PENALTY_LAST_N + 1);
	BAD(penalty_last_n, -2);
#undef BAD

	/* edges that are fine */
	smp_params_default(&p);
	p.temperature = -2.0f;
	p.top_p = 0.0f;
	p.min_p = 1.0f;
	p.top_k = -3;
	p.penalty_last_n = SMP_MAX_PENALTY_LAST_N;
	p.presence_penalty = -1.0f;
	s = NULL;
	ck_assert_int_eq(smp_new(&p, 10, &s), 0);
	smp_free(s);
	smp_free(NULL);
}
END_TEST

static Suite *
sampler_suite(void)
{
	Suite *su = suite_create("sampler");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_seed_repeat);
	tcase_add_test(tc, test_greedy);
	tcase_add_test(tc, test_top_k_one_is_greedy);
	tcase_add_test(tc, test_filter_top_k);
	tcase_add_test(tc, test_filter_top_p);
	tcase_add_test(tc, test_filter_top_p_large);
	tcase_add_test(tc, test_filter_min_p);
	tcase_add_test(tc, test_penalties_exact);
	tcase_add_test(tc, test_penalties_greedy);
	tcase_add_test(tc, test_frequencies);
	tcase_add_test(tc, test_chain);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(su, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_huge_vocab);
	tcase_add_test(tc, test_window_wrap);
	tcase_add_test(tc, test_odd_logits);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(su, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, test_bad_params);
	suite_add_tcase(su, tc);
	return su;
}

int
main(void)
{
	SRunner *sr = srunner_create(sampler_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
