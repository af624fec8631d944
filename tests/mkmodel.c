/*
 * mkmodel.c - write a random-weight llama or qwen2 GGUF model for tests.
 *
 *	mkmodel -o OUT.gguf [--arch llama|qwen2] [--dim N] [--ff N]
 *	    [--layers N] [--heads N] [--kv-heads N] [--ctx N]
 *	    [--vocab-from FILE | --vocab N] [--type T] [--embd-type T]
 *	    [--out-type T] [--seed N] [--tied] [--rope-freqs] [--name S]
 *	    [--eps X] [--rope-base X] [-v]
 *
 * T is f32, f16, bf16, q8_0, q4_0, q4_k, q6_k or q4_k_m (q4_k weights,
 * q6_k output, attn_v/ffn_down of some layers in q6_k, as llama-quantize).
 * Silent on success unless -v; errors go to stderr with exit status 1.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "kernels.h"
#include "mkmodel_lib.h"

static const struct {
	const char	*name;
	uint32_t	 type;
} types[] = {
	{ "f32", KERN_TYPE_F32 },
	{ "f16", KERN_TYPE_F16 },
	{ "bf16", KERN_TYPE_BF16 },
	{ "q8_0", KERN_TYPE_Q8_0 },
	{ "q4_0", KERN_TYPE_Q4_0 },
	{ "q4_k", KERN_TYPE_Q4_K },
	{ "q6_k", KERN_TYPE_Q6_K },
};

static void
usage(void)
{
	fprintf(stderr, "usage: mkmodel -o OUT.gguf [--arch llama|qwen2] "
	    "[--dim N] [--ff N] [--layers N]\n"
	    "\t[--heads N] [--kv-heads N] [--ctx N] "
	    "[--vocab-from FILE | --vocab N]\n"
	    "\t[--type T] [--embd-type T] [--out-type T] [--seed N] [--tied] "
	    "[--rope-freqs]\n"
	    "\t[--name S] [--eps X] [--rope-base X] [-v]\n"
	    "types: f32 f16 bf16 q8_0 q4_0 q4_k q6_k q4_k_m\n");
}

static int
parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (*s == '\0' || *s == '-')
		goto bad;
	v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0' || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	fprintf(stderr, "mkmodel: %s: bad number '%s'\n", opt, s);
	return -1;
}

static int
parse_u32(const char *opt, const char *s, uint32_t *out)
{
	uint64_t v;

	if (parse_u64(opt, s, UINT32_MAX, &v) < 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int
parse_float(const char *opt, const char *s, float *out)
{
	char *end;
	float v;

	errno = 0;
	v = strtof(s, &end);
	if (*s == '\0' || errno != 0 || *end != '\0' || !isfinite(v)) {
		fprintf(stderr, "mkmodel: %s: bad number '%s'\n", opt, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_type(const char *opt, const char *s, uint32_t *out)
{
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(s, types[i].name) == 0) {
			*out = types[i].type;
			return 0;
		}
	}
	fprintf(stderr, "mkmodel: %s: unknown type '%s'\n", opt, s);
	return -1;
}

/* -v: read the file back and describe it. */
static int
describe(const char *path)
{
	struct eng_err err = { "" };
	struct gguf *g;
	uint64_t i, bytes = 0;
	const char *tn;
	int r;

	if ((r = gguf_open(path, &g, &err)) < 0) {
		fprintf(stderr, "mkmodel: reading back %s: %s\n", path,
		    err.msg);
		return -1;
	}
	printf("%s: GGUF v%" PRIu32 ", %" PRIu64 " keys, %" PRIu64
	    " tensors, %" PRIu64 " bytes\n", path, g->version, g->n_kv,
	    g->n_tensors, g->file_size);
	for (i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];

		tn = gguf_type_name(t->type);
		printf("  %-28s %-5s", t->name.s, tn ? tn : "?");
		if (t->n_dims == 1)
			printf(" {%" PRIu64 "}\n", t->ne[0]);
		else
			printf(" {%" PRIu64 ", %" PRIu64 "}\n", t->ne[0],
			    t->ne[1]);
		bytes += t->nbytes;
	}
	printf("  tensor data: %" PRIu64 " bytes\n", bytes);
	gguf_close(g);
	return 0;
}

int
main(int argc, char **argv)
{
	enum {
		O_ARCH = 256, O_DIM, O_FF, O_LAYERS, O_HEADS, O_KV_HEADS,
		O_CTX, O_VOCAB_FROM, O_VOCAB, O_TYPE, O_EMBD_TYPE, O_OUT_TYPE,
		O_SEED, O_TIED, O_ROPE_FREQS, O_NAME, O_EPS, O_ROPE_BASE,
	};
	static const struct option longopts[] = {
		{ "arch", required_argument, NULL, O_ARCH },
		{ "dim", required_argument, NULL, O_DIM },
		{ "ff", required_argument, NULL, O_FF },
		{ "layers", required_argument, NULL, O_LAYERS },
		{ "heads", required_argument, NULL, O_HEADS },
		{ "kv-heads", required_argument, NULL, O_KV_HEADS },
		{ "ctx", required_argument, NULL, O_CTX },
		{ "vocab-from", required_argument, NULL, O_VOCAB_FROM },
		{ "vocab", required_argument, NULL, O_VOCAB },
		{ "type", required_argument, NULL, O_TYPE },
		{ "embd-type", required_argument, NULL, O_EMBD_TYPE },
		{ "out-type", required_argument, NULL, O_OUT_TYPE },
		{ "seed", required_argument, NULL, O_SEED },
		{ "tied", no_argument, NULL, O_TIED },
		{ "rope-freqs", no_argument, NULL, O_ROPE_FREQS },
		{ "name", required_argument, NULL, O_NAME },
		{ "eps", required_argument, NULL, O_EPS },
		{ "rope-base", required_argument, NULL, O_ROPE_BASE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct eng_err err = { "" };
	struct mkm_spec s;
	const char *out = NULL;
	bool verbose = false, embd_set = false, out_set = false;
	bool vocab_set = false;
	uint32_t embd_type = 0, out_type = 0;
	int ch, r = 0;

	mkm_spec_default(&s);
	while ((ch = getopt_long(argc, argv, "o:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'o':
			out = optarg;
			break;
		case 'v':
			verbose = true;
			break;
		case O_ARCH:
			s.arch = optarg;
			break;
		case O_DIM:
			r = parse_u32("--dim", optarg, &s.n_embd);
			break;
		case O_FF:
			r = parse_u32("--ff", optarg, &s.n_ff);
			break;
		case O_LAYERS:
			r = parse_u32("--layers", optarg, &s.n_layer);
			break;
		case O_HEADS:
			r = parse_u32("--heads", optarg, &s.n_head);
			break;
		case O_KV_HEADS:
			r = parse_u32("--kv-heads", optarg, &s.n_head_kv);
			break;
		case O_CTX:
			r = parse_u32("--ctx", optarg, &s.n_ctx);
			break;
		case O_VOCAB_FROM:
			s.vocab_from = optarg;
			break;
		case O_VOCAB:
			r = parse_u32("--vocab", optarg, &s.n_vocab);
			vocab_set = true;
			break;
		case O_TYPE:
			if (strcmp(optarg, "q4_k_m") == 0) {
				s.wtype = s.embd_type = KERN_TYPE_Q4_K;
				s.out_type = KERN_TYPE_Q6_K;
				s.mix_q6_k = true;
				break;
			}
			r = parse_type("--type", optarg, &s.wtype);
			s.embd_type = s.out_type = s.wtype;
			s.mix_q6_k = false;
			break;
		case O_EMBD_TYPE:
			r = parse_type("--embd-type", optarg, &embd_type);
			embd_set = true;
			break;
		case O_OUT_TYPE:
			r = parse_type("--out-type", optarg, &out_type);
			out_set = true;
			break;
		case O_SEED:
			r = parse_u64("--seed", optarg, UINT64_MAX, &s.seed);
			break;
		case O_TIED:
			s.tied = true;
			break;
		case O_ROPE_FREQS:
			s.rope_freqs = true;
			break;
		case O_NAME:
			s.name = optarg;
			break;
		case O_EPS:
			r = parse_float("--eps", optarg, &s.rms_eps);
			break;
		case O_ROPE_BASE:
			r = parse_float("--rope-base", optarg, &s.rope_base);
			break;
		case 'h':
			usage();
			return 0;
		default:
			usage();
			return 1;
		}
		if (r < 0)
			return 1;
	}
	if (optind != argc || out == NULL) {
		if (out == NULL)
			fprintf(stderr, "mkmodel: no output file (-o)\n");
		else
			fprintf(stderr, "mkmodel: unexpected argument '%s'\n",
			    argv[optind]);
		usage();
		return 1;
	}
	if (s.vocab_from != NULL && vocab_set) {
		fprintf(stderr, "mkmodel: --vocab and --vocab-from exclude "
		    "each other\n");
		return 1;
	}
	if (embd_set)
		s.embd_type = embd_type;
	if (out_set)
		s.out_type = out_type;

	if ((r = mkm_write(&s, out, &err)) < 0) {
		if (err.msg[0] != '\0')
			fprintf(stderr, "mkmodel: %s\n", err.msg);
		else
			fprintf(stderr, "mkmodel: %s: %s\n", out, strerror(-r));
		return 1;
	}
	if (verbose && describe(out) < 0)
		return 1;
	return 0;
}
