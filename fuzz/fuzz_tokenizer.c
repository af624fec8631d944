/*
 * fuzz_tokenizer.c - libFuzzer target: any bytes as text to tokenize, any
 * ids to detokenize, with generated vocabularies (SPM, and byte-level BPE
 * under four pre-tokenizers) and, when $HEARTH_TESTDATA is set, the real
 * ones of its vocab/ folder and aidreams260K.
 *
 * Input: byte 0 picks the vocabulary (modulo how many there are), byte 1
 * the mode and flags, the rest is the payload:
 *	bit 0	add_special		bit 1	parse_special
 *	bit 2	decode with special	bit 3	remove_space
 *	bits 4-5  0 text, 1 ids of 2 bytes each mapped to -1..n_vocab,
 *		  2 ids as raw int32 (any value), 3 text through buffers
 *		  that are too small
 * Invariants: encode gives ids in range, the same with a buffer of any
 * size; text that is valid UTF-8 decodes back byte for byte where the
 * tokenizer promises it; the stream gives valid UTF-8 that equals
 * tok_decode's text when that is valid UTF-8; out-of-range ids give
 * -EINVAL; size-limited calls report the size snprintf-style.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "gguf.h"
#include "gguf_write.h"
#include "tokenizer.h"

#define FT_MAX_VOCABS	16
#define FT_MAX_IDS	65536

static struct tok *ft_toks[FT_MAX_VOCABS];
static int ft_n;

static void
ft_add(const char *path, const char *what)
{
	struct eng_err e = { "" };
	struct gguf *g = NULL;
	struct tok *t = NULL;

	if (gguf_open(path, &g, &e) < 0 || tok_new(g, &t, &e) < 0) {
		fprintf(stderr, "fuzz_tokenizer: %s: %s\n", what, e.msg);
		abort();
	}
	gguf_close(g);
	ft_toks[ft_n++] = t;
}

static void
ft_add_gen(int bpe, const char *pre)
{
	struct gguf_writer *w = NULL;
	struct fz_file f = { -1, "" };
	uint8_t *buf = NULL;
	size_t len = 0;

	if (gguf_writer_new(&w) < 0 ||
	    (bpe ? fz_vocab_bpe(w, pre) : fz_vocab_spm(w)) < 0 ||
	    gguf_writer_to_buf(w, &buf, &len) < 0 ||
	    fz_file_open(&f, "vocab.gguf") < 0 || fz_file_set(&f, buf, len) < 0) {
		fprintf(stderr, "fuzz_tokenizer: cannot write a vocabulary\n");
		abort();
	}
	ft_add(f.path, bpe ? pre : "spm");
	fz_file_close(&f);
	free(buf);
	gguf_writer_free(w);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const real[] = {
		"vocab/ggml-vocab-llama-spm.gguf",
		"vocab/ggml-vocab-phi-3.gguf",
		"vocab/ggml-vocab-llama-bpe.gguf",
		"vocab/ggml-vocab-qwen2.gguf",
		"vocab/ggml-vocab-deepseek-llm.gguf",
		"vocab/ggml-vocab-gpt-2.gguf",
		"models/aidreams260K.gguf",
	};
	const char *dir = getenv("HEARTH_TESTDATA");
	char path[4096];
	size_t i;

	(void)argc;
	(void)argv;
	ft_add_gen(0, NULL);
	ft_add_gen(1, "gpt-2");
	ft_add_gen(1, "llama-bpe");
	ft_add_gen(1, "qwen2");
	ft_add_gen(1, "deepseek-llm");
	for (i = 0; dir != NULL && *dir != '\0' &&
	    i < sizeof(real) / sizeof(real[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, real[i]);
		ft_add(path, real[i]);
	}
	return 0;
}

/* Stream ids; the text must be valid UTF-8. Returns its length in out. */
static size_t
ft_stream(const struct tok *t, const int32_t *ids, size_t n, bool special,
    char *out, size_t cap)
{
	struct tok_stream s;
	size_t len = 0, i;
	char small[4];
	int r;

	tok_stream_init(&s);
	for (i = 0; i < n; i++) {
		/* too small a buffer leaves the stream as it was (a piece
		 * that writes nothing may go through) */
		r = tok_stream_push(t, &s, ids[i], special, small, 0);
		FZ_ASSERT(r == -ENOBUFS || r == 0, "push into 0 bytes: %d", r);
		if (r == 0)
			continue;
		r = tok_stream_push(t, &s, ids[i], special, out + len,
		    cap - len);
		FZ_ASSERT(r >= 0, "push %d: %d", ids[i], r);
		FZ_ASSERT(fz_utf8_valid(out + len, (size_t)r) == (size_t)r,
		    "stream gave invalid UTF-8 for id %d", ids[i]);
		len += (size_t)r;
	}
	r = tok_stream_flush(&s, out + len, cap - len);
	FZ_ASSERT(r >= 0, "flush: %d", r);
	len += (size_t)r;
	FZ_ASSERT(fz_utf8_valid(out, len) == len, "stream not UTF-8");
	return len;
}

/* Decode, stream and compare; ids are all in range. */
static void
ft_decode(const struct tok *t, const int32_t *ids, size_t n, bool special,
    bool remove_space, const char *want, size_t want_len)
{
	char *out, *st, tiny[3];
	size_t cap, st_len;
	int len, r;

	len = tok_decode(t, ids, n, special, remove_space, NULL, 0);
	FZ_ASSERT(len >= 0, "decode size: %d", len);
	out = malloc((size_t)len + 1);
	FZ_ASSERT(out != NULL, "malloc");
	r = tok_decode(t, ids, n, special, remove_space, out, (size_t)len + 1);
	FZ_ASSERT(r == len && out[len] == '\0', "decode: %d, sized %d", r,
	    len);
	r = tok_decode(t, ids, n, special, remove_space, tiny, sizeof(tiny));
	FZ_ASSERT(r == len && memchr(tiny, '\0', sizeof(tiny)) != NULL &&
	    memcmp(tiny, out, strlen(tiny)) == 0, "decode into 3 bytes");
	if (want != NULL)
		FZ_ASSERT((size_t)len == want_len &&
		    memcmp(out, want, want_len) == 0,
		    "decode(encode(text)) differs: %zu bytes in, %d out",
		    want_len, len);

	/* the stream removes the SPM space as remove_space does */
	cap = (size_t)len * 3 + 16 * n + 16;
	st = malloc(cap);
	FZ_ASSERT(st != NULL, "malloc");
	st_len = ft_stream(t, ids, n, special, st, cap);
	if (remove_space && fz_utf8_valid(out, (size_t)len) == (size_t)len)
		FZ_ASSERT(st_len == (size_t)len && memcmp(st, out, st_len) == 0,
		    "stream and decode differ");
	free(st);
	free(out);
}

/* Whether encoding text must decode back to it byte for byte. */
static bool
ft_lossless(const struct tok *t, const int32_t *ids, size_t n,
    const uint8_t *text, size_t len)
{
	size_t i;

	if (fz_utf8_valid(text, len) != len)
		return false;
	/* SPM writes spaces as U+2581: the marker itself comes back as ' ' */
	if (tok_kind(t) == TOK_KIND_SPM && len >= 3 &&
	    memmem(text, len, "\xe2\x96\x81", 3) != NULL)
		return false;
	for (i = 0; i < n; i++) {
		/* unknown tokens lose the text; special ones may strip spaces */
		enum tok_attr a = tok_attr(t, ids[i]);

		if (a != TOK_ATTR_NORMAL && a != TOK_ATTR_BYTE)
			return false;
	}
	return true;
}

static void
ft_text(const struct tok *t, const uint8_t *text, size_t len, unsigned fl,
    bool small)
{
	bool add = fl & 1, parse = fl & 2;
	int32_t *ids, *ids2, few[4];
	size_t n = 0, n2 = 0, i;
	int32_t nv = tok_n_vocab(t);
	int r;

	r = tok_encode(t, (const char *)text, len, add, parse, NULL, 0, &n);
	if (r == -EINVAL) {
		/* only BPE refuses text, and only text that is not UTF-8 */
		FZ_ASSERT(tok_kind(t) == TOK_KIND_BPE &&
		    fz_utf8_valid(text, len) != len, "encode refused text");
		return;
	}
	FZ_ASSERT(r == 0 || r == -ENOBUFS, "encode size: %d", r);
	FZ_ASSERT(r == 0 || n > 0, "ENOBUFS for 0 ids");
	if (small) {
		/* a buffer one short, then a tiny one: same count */
		r = tok_encode(t, (const char *)text, len, add, parse, few,
		    n < 4 ? n : 4, &n2);
		FZ_ASSERT(n2 == n && (r == 0) == (n <= 4), "small: %d %zu %zu",
		    r, n, n2);
	}
	ids = malloc((n ? n : 1) * sizeof(*ids));
	FZ_ASSERT(ids != NULL, "malloc");
	r = tok_encode(t, (const char *)text, len, add, parse, ids, n, &n2);
	FZ_ASSERT(r == 0 && n2 == n, "encode: %d, %zu ids then %zu", r, n, n2);
	for (i = 0; i < n; i++)
		FZ_ASSERT(ids[i] >= 0 && ids[i] < nv, "id %d of %d", ids[i], nv);
	if (small && n > 0) {
		ids2 = malloc(n * sizeof(*ids2));
		FZ_ASSERT(ids2 != NULL, "malloc");
		r = tok_encode(t, (const char *)text, len, add, parse, ids2,
		    n - 1, &n2);
		FZ_ASSERT(r == -ENOBUFS && n2 == n, "one short: %d", r);
		free(ids2);
	}
	if (!add && !parse && ft_lossless(t, ids, n, text, len))
		ft_decode(t, ids, n, false, true, (const char *)text, len);
	else
		ft_decode(t, ids, n, fl & 4, fl & 8, NULL, 0);
	free(ids);
}

static void
ft_ids(const struct tok *t, const uint8_t *p, size_t len, unsigned fl,
    bool raw)
{
	int32_t nv = tok_n_vocab(t), *ids;
	size_t n = raw ? len / 4 : len / 2, i, tl;
	bool bad = false;
	char buf[64];
	int r;

	if (n > FT_MAX_IDS)
		n = FT_MAX_IDS;
	ids = malloc((n ? n : 1) * sizeof(*ids));
	FZ_ASSERT(ids != NULL, "malloc");
	for (i = 0; i < n; i++) {
		if (raw)
			ids[i] = (int32_t)fz_le32(p + 4 * i);
		else
			ids[i] = (int32_t)((p[2 * i] | p[2 * i + 1] << 8) %
			    (nv + 2)) - 1;
		if (ids[i] < 0 || ids[i] >= nv)
			bad = true;
		r = tok_piece(t, ids[i], fl & 4, buf, sizeof(buf));
		FZ_ASSERT((r == -EINVAL) == (ids[i] < 0 || ids[i] >= nv),
		    "piece %d: %d", ids[i], r);
		(void)tok_attr(t, ids[i]);
		(void)tok_is_eog(t, ids[i]);
		(void)tok_text(t, ids[i], &tl);
	}
	if (bad) {
		r = tok_decode(t, ids, n, fl & 4, fl & 8, buf, sizeof(buf));
		FZ_ASSERT(r == -EINVAL, "decode of a bad id: %d", r);
	} else
		ft_decode(t, ids, n, fl & 4, fl & 8, NULL, 0);
	free(ids);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct tok *t;
	unsigned fl;

	if (size < 2 || ft_n == 0)
		return 0;
	t = ft_toks[data[0] % ft_n];
	fl = data[1];
	switch ((fl >> 4) & 3) {
	case 0:
		ft_text(t, data + 2, size - 2, fl, false);
		break;
	case 1:
		ft_ids(t, data + 2, size - 2, fl, false);
		break;
	case 2:
		ft_ids(t, data + 2, size - 2, fl, true);
		break;
	case 3:
		ft_text(t, data + 2, size - 2, fl, true);
		break;
	}
	return 0;
}
