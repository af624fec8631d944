/*
 * hearth_run.c - run the engine on one prompt, without the daemon.
 *
 *   hearth-run -m MODEL.gguf [-n TOKENS] [-c CTX] [--temp T] [--seed S]
 *              [--top-k K] [--top-p P] [--min-p P] [--ids] PROMPT...
 *
 * Prints the prompt and its continuation as it is generated. Greedy by
 * default (temperature 0), so the output is reproducible.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

static void
usage(void)
{
	fprintf(stderr, "usage: hearth-run -m MODEL.gguf [-n TOKENS] [-c CTX] "
	    "[--temp T] [--seed S]\n"
	    "                  [--top-k K] [--top-p P] [--min-p P] [--ids] "
	    "PROMPT...\n");
	exit(2);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "tokens", required_argument, NULL, 'n' },
		{ "ctx", required_argument, NULL, 'c' },
		{ "temp", required_argument, NULL, 'T' },
		{ "seed", required_argument, NULL, 'S' },
		{ "top-k", required_argument, NULL, 'K' },
		{ "top-p", required_argument, NULL, 'P' },
		{ "min-p", required_argument, NULL, 'M' },
		{ "ids", no_argument, NULL, 'I' },
		{ NULL, 0, NULL, 0 }
	};
	struct eng_err err = { "" };
	struct model *m = NULL;
	struct fwd *f = NULL;
	struct fwd_kv *kv = NULL;
	struct smp *s = NULL;
	struct smp_params sp;
	struct tok_stream ts;
	const char *path = NULL;
	char *prompt = NULL, piece[512];
	int32_t *ids = NULL, tok;
	size_t n_ids = 0, len = 0, i, n_done = 0;
	long n_gen = 60, n_ctx = 0;
	int c, r, show_ids = 0, n;
	double t0, t1, t2;

	smp_params_default(&sp);
	sp.temperature = 0.0f;
	while ((c = getopt_long(argc, argv, "m:n:c:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': path = optarg; break;
		case 'n': n_gen = strtol(optarg, NULL, 10); break;
		case 'c': n_ctx = strtol(optarg, NULL, 10); break;
		case 'T': sp.temperature = strtof(optarg, NULL); break;
		case 'S': sp.seed = strtoull(optarg, NULL, 10); break;
		case 'K': sp.top_k = (int32_t)strtol(optarg, NULL, 10); break;
		case 'P': sp.top_p = strtof(optarg, NULL); break;
		case 'M': sp.min_p = strtof(optarg, NULL); break;
		case 'I': show_ids = 1; break;
		default: usage();
		}
	}
	if (path == NULL || optind >= argc || n_gen < 0 || n_ctx < 0)
		usage();
	for (i = (size_t)optind; i < (size_t)argc; i++)
		len += strlen(argv[i]) + 1;
	if ((prompt = calloc(1, len + 1)) == NULL)
		return 1;
	for (i = (size_t)optind; i < (size_t)argc; i++) {
		if (i > (size_t)optind)
			strcat(prompt, " ");
		strcat(prompt, argv[i]);
	}

	if ((r = model_open(path, NULL, NULL, &m, &err)) < 0) {
		fprintf(stderr, "hearth-run: %s\n", err.msg);
		return 1;
	}
	if (n_ctx == 0)
		n_ctx = m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;

	r = tok_encode(m->tok, prompt, strlen(prompt), true, false, NULL, 0,
	    &n_ids);
	if (r == -ENOBUFS) {
		ids = malloc((n_ids + (size_t)n_gen + 1) * sizeof(*ids));
		if (ids == NULL)
			return 1;
		r = tok_encode(m->tok, prompt, strlen(prompt), true, false, ids,
		    n_ids, &n_ids);
	}
	if (r < 0 || n_ids == 0) {
		fprintf(stderr, "hearth-run: cannot tokenize the prompt (%d)\n", r);
		return 1;
	}
	if ((long)n_ids + n_gen > n_ctx) {
		fprintf(stderr, "hearth-run: %zu prompt + %ld tokens exceed "
		    "the context of %ld\n", n_ids, n_gen, n_ctx);
		return 1;
	}
	if ((r = fwd_new(m, 512, (uint32_t)n_ctx, 1, &f)) < 0 ||
	    (r = fwd_kv_new(m, (uint32_t)n_ctx, &kv)) < 0 ||
	    (r = smp_new(&sp, (int32_t)m->hp.n_vocab, &s)) < 0) {
		fprintf(stderr, "hearth-run: %s\n", strerror(-r));
		return 1;
	}
	if (show_ids) {
		fprintf(stderr, "prompt ids:");
		for (i = 0; i < n_ids; i++)
			fprintf(stderr, " %d", ids[i]);
		fprintf(stderr, "\n");
	}

	fputs(prompt, stdout);
	fflush(stdout);
	for (i = 0; i < n_ids; i++)
		smp_accept(s, ids[i]);
	tok_stream_init(&ts);
	ts.first = false;	/* the prompt is already printed */
	t0 = now_ms();
	if ((r = fwd_eval(f, kv, ids, n_ids, false, &err)) < 0) {
		fprintf(stderr, "hearth-run: %s\n", err.msg);
		return 1;
	}
	t1 = now_ms();
	for (i = 0; i < (size_t)n_gen; i++) {
		tok = smp_sample(s, fwd_logits(f, 0));
		if (tok_is_eog(m->tok, tok))
			break;
		smp_accept(s, tok);
		n_done++;
		if (show_ids)
			fprintf(stderr, "%d ", tok);
		n = tok_stream_push(m->tok, &ts, tok, false, piece,
		    sizeof(piece));
		if (n > 0)
			fwrite(piece, 1, (size_t)n, stdout);
		fflush(stdout);
		if (i + 1 == (size_t)n_gen)
			break;
		if ((r = fwd_eval(f, kv, &tok, 1, false, &err)) < 0) {
			fprintf(stderr, "\nhearth-run: %s\n", err.msg);
			return 1;
		}
	}
	n = tok_stream_flush(&ts, piece, sizeof(piece));
	if (n > 0)
		fwrite(piece, 1, (size_t)n, stdout);
	t2 = now_ms();
	printf("\n");
	fflush(stdout);
	if (show_ids)
		fprintf(stderr, "\n");
	fprintf(stderr, "hearth-run: %zu prompt tokens in %.1f ms, %zu "
	    "generated in %.1f ms (%.1f tokens/s)\n", n_ids, t1 - t0, n_done,
	    t2 - t1, n_done > 0 ? n_done * 1e3 / (t2 - t1) : 0.0);

	smp_free(s);
	fwd_kv_free(kv);
	fwd_free(f);
	model_free(m);
	free(ids);
	free(prompt);
	return 0;
}
