/*
 * mkmodel_lib.c - write a GGUF model of architecture llama or qwen2 at any
 * shape, with seeded random weights in any supported type.
 *
 * Names, shapes and metadata keys are those of llama.cpp's converter.
 * Every tensor draws its floats from its own generator, seeded from the
 * spec's seed and the tensor's name, before quantizing: two specs with the
 * same seed and shape hold the same underlying weights whatever the types
 * (a Q4_0 model is the quantized twin of its F32 model), and --tied or
 * --rope-freqs do not shift the other tensors.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_write.h"
#include "kernels.h"
#include "mkmodel_lib.h"
#include "testutil.h"

/* Sane upper bounds for a test model. */
#define MKM_MAX_EMBD	65536
#define MKM_MAX_FF	(1u << 20)
#define MKM_MAX_LAYER	1024
#define MKM_MAX_HEAD	4096
#define MKM_MAX_CTX	(1u << 24)

/* GGUF token types (llama.cpp's llama_token_type). */
#define MKM_TOK_NORMAL	1
#define MKM_TOK_UNKNOWN	2
#define MKM_TOK_CONTROL	3
#define MKM_TOK_BYTE	6

/* The special tokens and the 256 byte tokens. */
#define MKM_VOCAB_FIXED	(3 + 256)

/* "▁" (U+2581), SentencePiece's space. */
#define MKM_SPACE	"\xe2\x96\x81"
#define MKM_SPACE_LEN	3

/* Lowercase letters from the most frequent in English text. */
static const char mkm_letters[] = "etaoinshrdlcumwfgypbvkjxqz";
/* Frequent English letter pairs, emitted before the other pairs. */
static const char *const mkm_common_pairs[] = {
	"th", "he", "in", "er", "an", "re", "on", "at", "en", "nd",
	"ti", "es", "or", "te", "of", "ed", "is", "it", "al", "ar",
	"st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le",
	"ve", "co", "me", "de", "hi", "ri", "ro", "ic", "ne", "ea",
	"ra", "ce", "li", "ch", "ll", "be", "ma", "si", "om", "ur",
};
#define MKM_N_COMMON	(sizeof(mkm_common_pairs) / sizeof(mkm_common_pairs[0]))

/* Longest run of lowercase letters in a synthesized token. */
#define MKM_MAX_WORD	4

/* --- spec --------------------------------------------------------------------- */

void
mkm_spec_default(struct mkm_spec *s)
{
	memset(s, 0, sizeof(*s));
	s->arch = "llama";
	s->name = NULL;
	s->n_embd = 64;
	s->n_ff = 128;
	s->n_layer = 2;
	s->n_head = 4;
	s->n_head_kv = 2;
	s->n_ctx = 512;
	s->rms_eps = 1e-5f;
	s->rope_base = 10000.0f;
	s->wtype = KERN_TYPE_F32;
	s->embd_type = KERN_TYPE_F32;
	s->out_type = KERN_TYPE_F32;
	s->tied = false;
	s->rope_freqs = false;
	s->mix_q6_k = false;
	s->seed = 1;
	s->vocab_from = NULL;
	s->n_vocab = 512;
}

/* Normal tokens a synthesized vocabulary can hold. */
static uint64_t
mkm_vocab_normal_max(void)
{
	uint64_t n = 1 + 26 + 26 + 10 + 32 + 26 + 26, words = 26, l;

	for (l = 2; l <= MKM_MAX_WORD; l++) {
		words *= 26;
		n += 2 * words;
	}
	return n;
}

/* GGML ftype of a model whose matrices are mostly of type t. */
static int
mkm_file_type(uint32_t t, uint32_t *ftype)
{
	switch (t) {
	case KERN_TYPE_F32:	*ftype = 0; return 0;
	case KERN_TYPE_F16:	*ftype = 1; return 0;
	case KERN_TYPE_Q4_0:	*ftype = 2; return 0;
	case KERN_TYPE_Q8_0:	*ftype = 7; return 0;
	case KERN_TYPE_Q4_K:	*ftype = 15; return 0;	/* Q4_K_M */
	case KERN_TYPE_Q6_K:	*ftype = 18; return 0;
	case KERN_TYPE_BF16:	*ftype = 32; return 0;
	}
	return -EINVAL;
}

static int
mkm_check_type(const char *what, uint32_t t, uint32_t n, const char *dim,
    struct eng_err *err)
{
	size_t be;

	if (!kern_type_supported(t))
		return err_set(err, -EINVAL, "%s: unsupported type %u", what,
		    t);
	be = kern_type_block_elems(t);
	if (n % be != 0)
		return err_set(err, -EINVAL,
		    "%s: %s %u is not a multiple of the %s block size %zu",
		    what, dim, n, kern_type_name(t), be);
	return 0;
}

static int
mkm_validate(const struct mkm_spec *s, struct eng_err *err)
{
	uint32_t hd, ft;
	int r;

	if (s->arch == NULL || (strcmp(s->arch, "llama") != 0 &&
	    strcmp(s->arch, "qwen2") != 0))
		return err_set(err, -EINVAL, "unknown architecture %s",
		    s->arch ? s->arch : "(null)");
	if (s->n_embd == 0 || s->n_embd > MKM_MAX_EMBD)
		return err_set(err, -EINVAL, "n_embd %u out of range 1..%u",
		    s->n_embd, MKM_MAX_EMBD);
	if (s->n_ff == 0 || s->n_ff > MKM_MAX_FF)
		return err_set(err, -EINVAL, "n_ff %u out of range 1..%u",
		    s->n_ff, MKM_MAX_FF);
	if (s->n_layer == 0 || s->n_layer > MKM_MAX_LAYER)
		return err_set(err, -EINVAL, "n_layer %u out of range 1..%u",
		    s->n_layer, MKM_MAX_LAYER);
	if (s->n_head == 0 || s->n_head > MKM_MAX_HEAD)
		return err_set(err, -EINVAL, "n_head %u out of range 1..%u",
		    s->n_head, MKM_MAX_HEAD);
	if (s->n_head_kv == 0 || s->n_head % s->n_head_kv != 0)
		return err_set(err, -EINVAL,
		    "n_head %u is not a multiple of n_head_kv %u", s->n_head,
		    s->n_head_kv);
	if (s->n_embd % s->n_head != 0)
		return err_set(err, -EINVAL,
		    "n_embd %u is not divisible by n_head %u", s->n_embd,
		    s->n_head);
	hd = s->n_embd / s->n_head;
	if (hd % 2 != 0)
		return err_set(err, -EINVAL, "head dim %u is odd", hd);
	if (s->n_ctx == 0 || s->n_ctx > MKM_MAX_CTX)
		return err_set(err, -EINVAL, "n_ctx %u out of range 1..%u",
		    s->n_ctx, MKM_MAX_CTX);
	if (!isfinite(s->rms_eps) || s->rms_eps <= 0.0f)
		return err_set(err, -EINVAL, "bad rms epsilon %g",
		    (double)s->rms_eps);
	if (!isfinite(s->rope_base) || s->rope_base <= 0.0f)
		return err_set(err, -EINVAL, "bad rope base %g",
		    (double)s->rope_base);
	if ((r = mkm_check_type("weights", s->wtype, s->n_embd, "n_embd",
	    err)) < 0 ||
	    (r = mkm_check_type("weights", s->wtype, s->n_ff, "n_ff",
	    err)) < 0 ||
	    (r = mkm_check_type("token_embd", s->embd_type, s->n_embd,
	    "n_embd", err)) < 0)
		return r;
	if (!s->tied && (r = mkm_check_type("output", s->out_type, s->n_embd,
	    "n_embd", err)) < 0)
		return r;
	if (s->mix_q6_k) {
		if (s->wtype != KERN_TYPE_Q4_K)
			return err_set(err, -EINVAL,
			    "the Q6_K mix needs q4_k weights");
		if ((r = mkm_check_type("weights", KERN_TYPE_Q6_K, s->n_ff,
		    "n_ff", err)) < 0 ||
		    (r = mkm_check_type("weights", KERN_TYPE_Q6_K, s->n_embd,
		    "n_embd", err)) < 0)
			return r;
	}
	if (mkm_file_type(s->wtype, &ft) < 0)
		return err_set(err, -EINVAL, "no file type for weights %s",
		    kern_type_name(s->wtype));
	if (s->vocab_from == NULL && (s->n_vocab < MKM_VOCAB_FIXED ||
	    s->n_vocab > MKM_VOCAB_FIXED + mkm_vocab_normal_max()))
		return err_set(err, -EINVAL,
		    "n_vocab %u out of range %u..%llu for a synthesized "
		    "vocabulary", s->n_vocab, MKM_VOCAB_FIXED,
		    (unsigned long long)(MKM_VOCAB_FIXED +
		    mkm_vocab_normal_max()));
	return 0;
}

/* --- vocabulary ----------------------------------------------------------------- */

struct mkm_vocab {
	uint32_t	 n;		/* tokens so far */
	uint32_t	 max;		/* tokens wanted */
	char		*buf;		/* [max * 16] token text, NUL-separated */
	size_t		 used;		/* bytes of buf used */
	const char	**str;		/* [max] token text (into buf) */
	size_t		*len;		/* [max] token byte lengths */
	float		*score;		/* [max] SentencePiece scores */
	int32_t		*type;		/* [max] token types */
};

/* Bytes of buf per token: the longest is "▁" + MKM_MAX_WORD letters. */
#define MKM_TOKEN_BYTES	16

/* Add a token; true when the vocabulary is full afterwards. */
static bool
mkm_vocab_add(struct mkm_vocab *v, const char *s, size_t len, float score,
    int32_t type)
{
	char *p = v->buf + v->used;

	if (v->n == v->max)
		return true;
	memcpy(p, s, len);
	p[len] = '\0';
	v->used += len + 1;
	v->str[v->n] = p;
	v->len[v->n] = len;
	v->score[v->n] = score;
	v->type[v->n] = type;
	v->n++;
	return v->n == v->max;
}

/* A normal token with the next lower score. */
static bool
mkm_vocab_word(struct mkm_vocab *v, const char *s, size_t len)
{
	return mkm_vocab_add(v, s, len, 0.0f - (float)(v->n - MKM_VOCAB_FIXED),
	    MKM_TOK_NORMAL);
}

static bool
mkm_is_common(const char *pair)
{
	size_t i;

	for (i = 0; i < MKM_N_COMMON; i++)
		if (memcmp(mkm_common_pairs[i], pair, 2) == 0)
			return true;
	return false;
}

/*
 * The letter pairs: the common ones, then the rest by the sum of the
 * letters' frequency ranks; each with the space prefix when pre is set.
 */
static bool
mkm_vocab_pairs(struct mkm_vocab *v, bool pre)
{
	char t[MKM_SPACE_LEN + 2];
	size_t o = pre ? MKM_SPACE_LEN : 0, i;
	int sum, a;

	memcpy(t, MKM_SPACE, MKM_SPACE_LEN);
	for (i = 0; i < MKM_N_COMMON; i++) {
		memcpy(t + o, mkm_common_pairs[i], 2);
		if (mkm_vocab_word(v, t, o + 2))
			return true;
	}
	for (sum = 0; sum <= 2 * 25; sum++) {
		for (a = 0; a <= sum; a++) {
			if (a > 25 || sum - a > 25)
				continue;
			t[o] = mkm_letters[a];
			t[o + 1] = mkm_letters[sum - a];
			if (mkm_is_common(t + o))
				continue;
			if (mkm_vocab_word(v, t, o + 2))
				return true;
		}
	}
	return false;
}

/* All words of len letters, by rank digits; space-prefixed if pre. */
static bool
mkm_vocab_words(struct mkm_vocab *v, size_t len, bool pre)
{
	char t[MKM_SPACE_LEN + MKM_MAX_WORD];
	size_t o = pre ? MKM_SPACE_LEN : 0, i;
	int d[MKM_MAX_WORD] = { 0 };

	memcpy(t, MKM_SPACE, MKM_SPACE_LEN);
	for (;;) {
		for (i = 0; i < len; i++)
			t[o + i] = mkm_letters[d[i]];
		if (mkm_vocab_word(v, t, o + len))
			return true;
		for (i = len; i-- > 0;) {
			if (++d[i] < 26)
				break;
			d[i] = 0;
		}
		if (i == (size_t)-1)
			return false;
	}
}

static void
mkm_vocab_fill(struct mkm_vocab *v)
{
	static const char punct[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
	char t[MKM_TOKEN_BYTES];
	size_t len;
	int i;

	mkm_vocab_add(v, "<unk>", 5, 0.0f, MKM_TOK_UNKNOWN);
	mkm_vocab_add(v, "<s>", 3, 0.0f, MKM_TOK_CONTROL);
	mkm_vocab_add(v, "</s>", 4, 0.0f, MKM_TOK_CONTROL);
	for (i = 0; i < 256; i++) {
		snprintf(t, sizeof(t), "<0x%02X>", i);
		if (mkm_vocab_add(v, t, 6, 0.0f, MKM_TOK_BYTE))
			return;
	}
	if (mkm_vocab_word(v, MKM_SPACE, MKM_SPACE_LEN))
		return;
	/* single characters: letters, capitals, digits, punctuation */
	for (i = 0; i < 26; i++) {
		t[0] = mkm_letters[i];
		if (mkm_vocab_word(v, t, 1))
			return;
	}
	for (i = 0; i < 26; i++) {
		t[0] = (char)(mkm_letters[i] - 'a' + 'A');
		if (mkm_vocab_word(v, t, 1))
			return;
	}
	for (i = 0; i < 10; i++) {
		t[0] = (char)('0' + i);
		if (mkm_vocab_word(v, t, 1))
			return;
	}
	for (i = 0; punct[i] != '\0'; i++) {
		t[0] = punct[i];
		if (mkm_vocab_word(v, t, 1))
			return;
	}
	/* word starts: "▁a", "▁A" */
	memcpy(t, MKM_SPACE, MKM_SPACE_LEN);
	for (i = 0; i < 52; i++) {
		t[MKM_SPACE_LEN] = i < 26 ? mkm_letters[i] :
		    (char)(mkm_letters[i - 26] - 'a' + 'A');
		if (mkm_vocab_word(v, t, MKM_SPACE_LEN + 1))
			return;
	}
	if (mkm_vocab_pairs(v, false) || mkm_vocab_pairs(v, true))
		return;
	for (len = 3; len <= MKM_MAX_WORD; len++)
		if (mkm_vocab_words(v, len, false) ||
		    mkm_vocab_words(v, len, true))
			return;
}

static int
mkm_vocab_synth(struct gguf_writer *w, uint32_t n, struct eng_err *err)
{
	struct mkm_vocab v;
	int r = -ENOMEM;

	memset(&v, 0, sizeof(v));
	v.max = n;
	v.buf = malloc((size_t)n * MKM_TOKEN_BYTES);
	v.str = calloc(n, sizeof(*v.str));
	v.len = calloc(n, sizeof(*v.len));
	v.score = calloc(n, sizeof(*v.score));
	v.type = calloc(n, sizeof(*v.type));
	if (v.buf == NULL || v.str == NULL || v.len == NULL ||
	    v.score == NULL || v.type == NULL)
		goto out;
	mkm_vocab_fill(&v);
	if (v.n != n) {		/* validated before; cannot happen */
		r = err_set(err, -EINVAL, "vocabulary ran out at %u", v.n);
		goto out;
	}
	if ((r = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) < 0 ||
	    (r = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", v.str,
	    v.len, n)) < 0 ||
	    (r = gguf_writer_set_arr(w, "tokenizer.ggml.scores",
	    GGUF_VTYPE_FLOAT32, v.score, n)) < 0 ||
	    (r = gguf_writer_set_arr(w, "tokenizer.ggml.token_type",
	    GGUF_VTYPE_INT32, v.type, n)) < 0 ||
	    (r = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) < 0 ||
	    (r = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) < 0 ||
	    (r = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id",
	    0)) < 0 ||
	    (r = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token",
	    1)) < 0 ||
	    (r = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", 0)) < 0)
		err_set(err, r, "writing the vocabulary");
out:
	if (r == -ENOMEM)
		err_set(err, r, "out of memory for %u tokens", n);
	free(v.buf);
	free(v.str);
	free(v.len);
	free(v.score);
	free(v.type);
	return r;
}

/* Copy the tokenizer.* keys of path; *n_vocab = its token count. */
static int
mkm_vocab_copy(struct gguf_writer *w, const char *path, uint32_t *n_vocab,
    struct eng_err *err)
{
	const struct gguf_kv *tok;
	struct gguf *g = NULL;
	uint64_t i;
	int r;

	if ((r = gguf_open(path, &g, err)) < 0)
		return r;
	if (gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VTYPE_STRING,
	    &tok) < 0 || tok->v.arr.n == 0 || tok->v.arr.n > INT32_MAX) {
		r = err_set(err, -EINVAL, "%s: no tokenizer.ggml.tokens array",
		    path);
		goto out;
	}
	for (i = 0; i < g->n_kv; i++) {
		if (strncmp(g->kv[i].key.s, "tokenizer.", 10) != 0)
			continue;
		if ((r = gguf_writer_copy_kv(w, &g->kv[i])) < 0) {
			err_set(err, r, "%s: copying %s", path,
			    g->kv[i].key.s);
			goto out;
		}
	}
	*n_vocab = (uint32_t)tok->v.arr.n;
out:
	gguf_close(g);
	return r;
}

/* --- tensors ---------------------------------------------------------------------- */

struct mkm_ctx {
	const struct mkm_spec	*s;		/* the spec being written */
	struct gguf_writer	*w;		/* the file */
	struct eng_err		*err;		/* where messages go */
	float			*row;		/* [max row length] floats */
	size_t			 row_cap;	/* elements row holds */
};

static uint64_t
mkm_splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Generator state for a tensor: the seed mixed with its name. */
static uint64_t
mkm_stream(uint64_t seed, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL;	/* FNV-1a */
	uint64_t st;

	for (; *name != '\0'; name++)
		h = (h ^ (unsigned char)*name) * 0x100000001b3ULL;
	st = mkm_splitmix(seed ^ mkm_splitmix(h));
	return st != 0 ? st : 1;
}

/*
 * A tensor of rows x cols (ne {cols, rows}; 1-D when rows is 0) with
 * elements mean + std * N(0, 1), stored as type.
 */
static int
mkm_add_random(struct mkm_ctx *c, const char *name, uint64_t cols,
    uint64_t rows, uint32_t type, float mean, float std)
{
	uint64_t ne[2] = { cols, rows ? rows : 1 }, st, r, j;
	size_t rb = kern_row_bytes(type, cols);
	uint8_t *q;
	int ret;

	if (rb == 0 || ne[1] > SIZE_MAX / rb)
		return err_set(c->err, -EINVAL, "%s: bad shape %llu x %llu "
		    "for %s", name, (unsigned long long)cols,
		    (unsigned long long)ne[1], kern_type_name(type));
	if ((q = malloc(rb * ne[1])) == NULL)
		return err_set(c->err, -ENOMEM, "%s: out of memory", name);
	st = mkm_stream(c->s->seed, name);
	for (r = 0; r < ne[1]; r++) {
		for (j = 0; j < cols; j++)
			c->row[j] = mean + std * tu_rand_normal(&st);
		if ((ret = kern_quantize_row(type, c->row, q + r * rb,
		    cols)) < 0) {
			free(q);
			return err_set(c->err, ret, "%s: quantizing to %s",
			    name, kern_type_name(type));
		}
	}
	ret = gguf_writer_add_tensor(c->w, name, rows ? 2 : 1, ne, type, q,
	    rb * ne[1]);
	free(q);
	if (ret < 0)
		return err_set(c->err, ret, "%s: adding the tensor", name);
	return 0;
}

/* A 2-D weight matrix, fan-in cols: std 1/sqrt(cols). */
static int
mkm_add_matrix(struct mkm_ctx *c, const char *name, uint64_t cols,
    uint64_t rows, uint32_t type)
{
	return mkm_add_random(c, name, cols, rows, type, 0.0f,
	    1.0f / sqrtf((float)cols));
}

/* llama.cpp's use_more_bits(): the layers Q4_K_M keeps in Q6_K. */
static bool
mkm_more_bits(uint32_t i, uint32_t n)
{
	return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/*
 * rope_freqs.weight as the converter makes it for Llama 3.1 scaling
 * (factor 8, low/high frequency factors 1 and 4, original context
 * 8192): 1 for short wavelengths, 8 for long ones, smooth between.
 */
static int
mkm_add_rope_freqs(struct mkm_ctx *c, uint32_t hd)
{
	const double factor = 8, lo_f = 1, hi_f = 4, old_ctx = 8192;
	const double lo_wl = old_ctx / lo_f, hi_wl = old_ctx / hi_f;
	uint64_t ne[1] = { hd / 2 };
	double freq, wl, smooth;
	uint32_t i;
	int r;

	for (i = 0; i < hd / 2; i++) {
		freq = 1.0 / pow(c->s->rope_base, 2.0 * i / hd);
		wl = 2 * M_PI / freq;
		if (wl < hi_wl) {
			c->row[i] = 1.0f;
		} else if (wl > lo_wl) {
			c->row[i] = (float)factor;
		} else {
			smooth = (old_ctx / wl - lo_f) / (hi_f - lo_f);
			c->row[i] = (float)(1.0 / ((1 - smooth) / factor +
			    smooth));
		}
	}
	r = gguf_writer_add_tensor(c->w, "rope_freqs.weight", 1, ne,
	    KERN_TYPE_F32, c->row, (size_t)ne[0] * sizeof(float));
	if (r < 0)
		return err_set(c->err, r, "rope_freqs.weight: adding");
	return 0;
}

static int
mkm_add_layer(struct mkm_ctx *c, uint32_t il)
{
	const struct mkm_spec *s = c->s;
	uint32_t hd = s->n_embd / s->n_head, n_kv = s->n_head_kv * hd;
	uint32_t t_v = s->wtype, t_down = s->wtype;
	bool qwen2 = strcmp(s->arch, "qwen2") == 0;
	char name[64];
	int r;

	if (s->mix_q6_k && mkm_more_bits(il, s->n_layer))
		t_v = t_down = KERN_TYPE_Q6_K;
#define NAME(x) (snprintf(name, sizeof(name), "blk.%u." x, il), name)
	if ((r = mkm_add_random(c, NAME("attn_norm.weight"), s->n_embd, 0,
	    KERN_TYPE_F32, 1.0f, 0.05f)) < 0 ||
	    (r = mkm_add_matrix(c, NAME("attn_q.weight"), s->n_embd,
	    s->n_embd, s->wtype)) < 0 ||
	    (qwen2 && (r = mkm_add_random(c, NAME("attn_q.bias"), s->n_embd,
	    0, KERN_TYPE_F32, 0.0f, 0.1f)) < 0) ||
	    (r = mkm_add_matrix(c, NAME("attn_k.weight"), s->n_embd, n_kv,
	    s->wtype)) < 0 ||
	    (qwen2 && (r = mkm_add_random(c, NAME("attn_k.bias"), n_kv, 0,
	    KERN_TYPE_F32, 0.0f, 0.1f)) < 0) ||
	    (r = mkm_add_matrix(c, NAME("attn_v.weight"), s->n_embd, n_kv,
	    t_v)) < 0 ||
	    (qwen2 && (r = mkm_add_random(c, NAME("attn_v.bias"), n_kv, 0,
	    KERN_TYPE_F32, 0.0f, 0.1f)) < 0) ||
	    (r = mkm_add_matrix(c, NAME("attn_output.weight"), s->n_embd,
	    s->n_embd, s->wtype)) < 0 ||
	    (r = mkm_add_random(c, NAME("ffn_norm.weight"), s->n_embd, 0,
	    KERN_TYPE_F32, 1.0f, 0.05f)) < 0 ||
	    (r = mkm_add_matrix(c, NAME("ffn_gate.weight"), s->n_embd,
	    s->n_ff, s->wtype)) < 0 ||
	    (r = mkm_add_matrix(c, NAME("ffn_up.weight"), s->n_embd, s->n_ff,
	    s->wtype)) < 0 ||
	    (r = mkm_add_matrix(c, NAME("ffn_down.weight"), s->n_ff,
	    s->n_embd, t_down)) < 0)
		return r;
#undef NAME
	return 0;
}

/* --- metadata ------------------------------------------------------------------- */

static int
mkm_add_meta(struct gguf_writer *w, const struct mkm_spec *s)
{
	char key[96], name[96];
	uint32_t ft = 0;
	int r;

	mkm_file_type(s->wtype, &ft);
	if (s->name == NULL)
		snprintf(name, sizeof(name), "random-%s-%ux%u", s->arch,
		    s->n_embd, s->n_layer);
#define KEY(x) (snprintf(key, sizeof(key), "%s." x, s->arch), key)
	if ((r = gguf_writer_set_str(w, "general.architecture", s->arch)) < 0 ||
	    (r = gguf_writer_set_str(w, "general.name",
	    s->name ? s->name : name)) < 0 ||
	    (r = gguf_writer_set_u32(w, "general.alignment", 32)) < 0 ||
	    (r = gguf_writer_set_u32(w, KEY("context_length"), s->n_ctx)) < 0 ||
	    (r = gguf_writer_set_u32(w, KEY("embedding_length"),
	    s->n_embd)) < 0 ||
	    (r = gguf_writer_set_u32(w, KEY("block_count"), s->n_layer)) < 0 ||
	    (r = gguf_writer_set_u32(w, KEY("feed_forward_length"),
	    s->n_ff)) < 0 ||
	    (r = gguf_writer_set_u32(w, KEY("attention.head_count"),
	    s->n_head)) < 0 ||
	    (r = gguf_writer_set_u32(w, KEY("attention.head_count_kv"),
	    s->n_head_kv)) < 0 ||
	    (r = gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"),
	    s->rms_eps)) < 0 ||
	    (r = gguf_writer_set_f32(w, KEY("rope.freq_base"),
	    s->rope_base)) < 0 ||
	    (r = gguf_writer_set_u32(w, KEY("rope.dimension_count"),
	    s->n_embd / s->n_head)) < 0 ||
	    (r = gguf_writer_set_u32(w, "general.file_type", ft)) < 0 ||
	    (r = gguf_writer_set_u32(w, "general.quantization_version", 2)) < 0)
		return r;
#undef KEY
	return 0;
}

/* --- the model -------------------------------------------------------------------- */

int
mkm_write(const struct mkm_spec *s, const char *path, struct eng_err *err)
{
	struct mkm_ctx c;
	struct gguf_writer *w = NULL;
	uint32_t n_vocab = 0, il, hd;
	int r;

	if (s == NULL || path == NULL)
		return err_set(err, -EINVAL, "no spec or path");
	if ((r = mkm_validate(s, err)) < 0)
		return r;
	hd = s->n_embd / s->n_head;
	memset(&c, 0, sizeof(c));
	c.s = s;
	c.err = err;
	c.row_cap = s->n_embd > s->n_ff ? s->n_embd : s->n_ff;
	if ((c.row = malloc(c.row_cap * sizeof(*c.row))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	if ((r = gguf_writer_new(&w)) < 0) {
		err_set(err, r, "creating the writer");
		goto out;
	}
	if ((r = mkm_add_meta(w, s)) < 0) {
		err_set(err, r, "writing the metadata");
		goto out;
	}
	if (s->vocab_from != NULL)
		r = mkm_vocab_copy(w, s->vocab_from, &n_vocab, err);
	else
		r = mkm_vocab_synth(w, n_vocab = s->n_vocab, err);
	if (r < 0)
		goto out;
	c.w = w;

	if ((r = mkm_add_matrix(&c, "token_embd.weight", s->n_embd, n_vocab,
	    s->embd_type)) < 0)
		goto out;
	if (s->rope_freqs && (r = mkm_add_rope_freqs(&c, hd)) < 0)
		goto out;
	for (il = 0; il < s->n_layer; il++)
		if ((r = mkm_add_layer(&c, il)) < 0)
			goto out;
	if ((r = mkm_add_random(&c, "output_norm.weight", s->n_embd, 0,
	    KERN_TYPE_F32, 1.0f, 0.05f)) < 0)
		goto out;
	if (!s->tied && (r = mkm_add_matrix(&c, "output.weight", s->n_embd,
	    n_vocab, s->out_type)) < 0)
		goto out;
	r = gguf_writer_to_file(w, path, err);
out:
	gguf_writer_free(w);
	free(c.row);
	return r;
}
