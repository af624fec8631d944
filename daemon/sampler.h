/*
 * sampler.h - choose the next token from logits.
 *
 * Order of the chain (as llama.cpp's default): penalties (repetition,
 * presence, frequency, over the last penalty_last_n accepted tokens),
 * top-k, top-p, min-p, temperature, then a seeded draw. temperature <= 0
 * is greedy (argmax, ties to the lowest id). All buffers are allocated
 * by smp_new; sampling allocates nothing.
 */
#ifndef HEARTH_SAMPLER_H
#define HEARTH_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#define SMP_MAX_PENALTY_LAST_N 4096

struct smp_params {
	float	 temperature;		/* <= 0: greedy; default 0.8 */
	int32_t	 top_k;			/* <= 0: off; default 40 */
	float	 top_p;			/* >= 1: off; default 0.95 */
	float	 min_p;			/* <= 0: off; default 0.05 */
	float	 repeat_penalty;	/* 1: off; divides positive logits */
	float	 presence_penalty;	/* 0: off */
	float	 frequency_penalty;	/* 0: off */
	int32_t	 penalty_last_n;	/* window; 0 off, -1 = max */
	uint64_t seed;
};

/* A candidate token: what the filters work on. */
struct smp_cand {
	int32_t	 id;
	float	 logit;
	float	 p;
};

struct smp;

void smp_params_default(struct smp_params *p);
/* -EINVAL for out-of-range parameters (n_vocab <= 0, top_p < 0, ...). */
int  smp_new(const struct smp_params *p, int32_t n_vocab, struct smp **out);
void smp_free(struct smp *s);	/* accepts NULL */
/* Forget accepted tokens and reseed. */
void smp_reset(struct smp *s, uint64_t seed);
/* Record a token (prompt or generated) for the penalties. */
void smp_accept(struct smp *s, int32_t id);
/* Sample from logits[n_vocab] (not modified). */
int32_t smp_sample(struct smp *s, const float *logits);

/*
 * The filter steps, exposed for tests: each works on c[0..*n) and
 * shrinks *n. They expect c sorted by logit descending where noted.
 */
void smp_apply_top_k(struct smp_cand *c, size_t *n, int32_t k);	/* sorts */
void smp_apply_top_p(struct smp_cand *c, size_t *n, float p);	/* sorts */
void smp_apply_min_p(struct smp_cand *c, size_t *n, float p);
/*
 * Apply the repetition, frequency and presence penalties of the accepted
 * window to logits[n_vocab] in place (what smp_sample does first).
 */
void smp_apply_penalties(struct smp *s, float *logits);

#endif /* HEARTH_SAMPLER_H */
