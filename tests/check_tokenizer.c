/*
 * check_tokenizer.c - tests of the SPM and BPE tokenizers: llama.cpp's
 * tokenizer vectors for six real vocabularies (ids and decoding back),
 * special-token splitting, streaming detokenization, small generated
 * vocabularies that pin down the merge rules, buffer limits, long inputs
 * and hostile vocabularies.
 *
 * Which vocabularies decode back losslessly: all six. SPM puts a space in
 * front of the text that tok_decode(remove_space) takes off again; byte
 * fallback covers every byte; BPE is byte-level and tok_decode does not
 * apply llama.cpp's clean_up_tokenization_spaces, so every valid UTF-8
 * input comes back byte for byte.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf_write.h"
#include "testutil.h"
#include "tokenizer.h"

#define SPM_SPACE "\xe2\x96\x81"	/* U+2581 */

/* --- helpers -------------------------------------------------------------- */

/* A tokenizer for testdata/vocab/ggml-vocab-<name>.gguf, or NULL (skip). */
static struct tok *
real_tok(const char *name, struct gguf **gp)
{
	char rel[128];
	const char *path;
	struct eng_err err = { "" };
	struct gguf *g = NULL;
	struct tok *t = NULL;

	snprintf(rel, sizeof(rel), "vocab/ggml-vocab-%s.gguf", name);
	if ((path = tu_testdata(rel)) == NULL) {
		tu_skip(rel);
		return NULL;
	}
	ck_assert_msg(gguf_open(path, &g, &err) == 0, "%s: %s", rel, err.msg);
	ck_assert_msg(tok_new(g, &t, &err) == 0, "%s: %s", rel, err.msg);
	*gp = g;
	return t;
}

/* Write w to a temporary file and build a tokenizer from it. */
static int
load_writer(struct gguf_writer *w, struct tok **tp, struct eng_err *err)
{
	const char *path = tu_tmpfile("vocab.gguf");
	struct gguf *g = NULL;
	int r;

	ck_assert_int_eq(gguf_writer_to_file(w, path, err), 0);
	if ((r = gguf_open(path, &g, err)) < 0)
		return r;
	r = tok_new(g, tp, err);
	gguf_close(g);	/* the tokenizer keeps copies */
	return r;
}

/* Encode into a fresh array; asserts success. */
static int32_t *
enc(const struct tok *t, const char *s, size_t len, bool add_special,
    bool parse_special, size_t *n)
{
	int32_t *ids;
	size_t need = 0;
	int r;

	r = tok_encode(t, s, len, add_special, parse_special, NULL, 0, &need);
	ck_assert_msg(r == 0 || r == -ENOBUFS, "tok_encode: %d", r);
	ids = malloc((need ? need : 1) * sizeof(*ids));
	ck_assert_ptr_nonnull(ids);
	ck_assert_int_eq(tok_encode(t, s, len, add_special, parse_special, ids,
	    need, n), 0);
	ck_assert_uint_eq(*n, need);
	return ids;
}

static void
expect_ids(const struct tok *t, const char *s, bool add_special,
    bool parse_special, const int32_t *want, size_t n_want)
{
	size_t n, i;
	int32_t *got = enc(t, s, strlen(s), add_special, parse_special, &n);

	ck_assert_msg(n == n_want, "'%s': %zu ids, want %zu", s, n, n_want);
	for (i = 0; i < n; i++)
		ck_assert_msg(got[i] == want[i], "'%s': id %zu is %d, want %d",
		    s, i, got[i], want[i]);
	free(got);
}

/* Decode ids into a malloc'd string; asserts success. */
static char *
dec(const struct tok *t, const int32_t *ids, size_t n, bool special,
    bool remove_space, int *len)
{
	char *out;
	int need;

	need = tok_decode(t, ids, n, special, remove_space, NULL, 0);
	ck_assert_int_ge(need, 0);
	out = malloc((size_t)need + 1);
	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(tok_decode(t, ids, n, special, remove_space, out,
	    (size_t)need + 1), need);
	*len = need;
	return out;
}

/* Stream-decode ids, flushing at the end. */
static char *
stream_dec(const struct tok *t, const int32_t *ids, size_t n, bool special,
    size_t *len)
{
	struct tok_stream s;
	size_t cap = 64, used = 0, i;
	char *out = malloc(cap);
	int r;

	ck_assert_ptr_nonnull(out);
	tok_stream_init(&s);
	for (i = 0; i <= n; i++) {
		for (;;) {
			if (i < n)
				r = tok_stream_push(t, &s, ids[i], special,
				    out + used, cap - used);
			else
				r = tok_stream_flush(&s, out + used,
				    cap - used);
			if (r != -ENOBUFS)
				break;
			cap *= 2;
			out = realloc(out, cap);
			ck_assert_ptr_nonnull(out);
		}
		ck_assert_int_ge(r, 0);
		used += (size_t)r;
	}
	*len = used;
	return out;
}

/* --- the llama.cpp tokenizer vectors -------------------------------------- */

/*
 * X.gguf.inp: every test string is followed by "\n__ggml_vocab_test__\n"
 * (the last one too); line i of X.gguf.out holds string i's ids, each
 * preceded by a space (an empty line for no ids).
 */
static void
run_vectors(const char *name)
{
	static const char sep[] = "\n__ggml_vocab_test__\n";
	char rel[128], rel_out[128];
	const char *pin, *pout;
	struct gguf *g = NULL;
	struct tok *t;
	char *in, *outf, *s, *e, *o, *oe, *q, *end, *text, *st;
	size_t inl, outl, len, n, nw, i, stl;
	int32_t *got, want[1024];
	int matched = 0, back = 0, streamed = 0, count = 0, tl;
	long v;

	if ((t = real_tok(name, &g)) == NULL)
		return;
	snprintf(rel, sizeof(rel), "vocab/ggml-vocab-%s.gguf.inp", name);
	snprintf(rel_out, sizeof(rel_out), "vocab/ggml-vocab-%s.gguf.out",
	    name);
	if ((pin = tu_testdata(rel)) == NULL) {
		tu_skip(rel);
		goto done;
	}
	in = (char *)tu_read_file(pin, &inl);
	ck_assert_ptr_nonnull(in);
	if ((pout = tu_testdata(rel_out)) == NULL) {
		tu_skip(rel_out);
		free(in);
		goto done;
	}
	outf = (char *)tu_read_file(pout, &outl);
	ck_assert_ptr_nonnull(outf);
	in = realloc(in, inl + 1);
	outf = realloc(outf, outl + 1);
	ck_assert(in != NULL && outf != NULL);
	in[inl] = '\0';
	outf[outl] = '\0';

	for (s = in, o = outf; s < in + inl; s = e + strlen(sep)) {
		e = memmem(s, (size_t)(in + inl - s), sep, strlen(sep));
		ck_assert_msg(e != NULL, "%s: string %d has no separator",
		    name, count);
		len = (size_t)(e - s);
		ck_assert_msg(*o != '\0', "%s: no ids for string %d", name,
		    count);
		oe = strchr(o, '\n');
		if (oe == NULL)
			oe = o + strlen(o);
		for (nw = 0, q = o; q < oe; q = end) {
			v = strtol(q, &end, 10);
			if (end == q)
				break;
			ck_assert(nw < sizeof(want) / sizeof(want[0]));
			want[nw++] = (int32_t)v;
		}
		o = *oe != '\0' ? oe + 1 : oe;
		count++;

		got = enc(t, s, len, false, false, &n);
		if (n == nw && memcmp(got, want, n * sizeof(*got)) == 0)
			matched++;
		else {
			fprintf(stderr, "%s: string %d '%.*s':\n  got ", name,
			    count, (int)len, s);
			for (i = 0; i < n; i++)
				fprintf(stderr, " %d", got[i]);
			fprintf(stderr, "\n  want");
			for (i = 0; i < nw; i++)
				fprintf(stderr, " %d", want[i]);
			fprintf(stderr, "\n");
		}
		text = dec(t, got, n, false, true, &tl);
		if ((size_t)tl == len && memcmp(text, s, len) == 0)
			back++;
		else
			fprintf(stderr, "%s: string %d '%.*s' decodes to "
			    "'%s'\n", name, count, (int)len, s, text);
		st = stream_dec(t, got, n, false, &stl);
		if (stl == (size_t)tl && memcmp(st, text, stl) == 0)
			streamed++;
		free(st);
		free(text);
		free(got);
	}
	printf("%s: %d/%d strings matched, %d/%d decoded back, %d/%d "
	    "streamed alike\n", name, matched, count, back, count, streamed,
	    count);
	fflush(stdout);
	ck_assert_int_gt(count, 0);
	ck_assert_int_eq(matched, count);
	ck_assert_int_eq(back, count);
	ck_assert_int_eq(streamed, count);
	free(in);
	free(outf);
done:
	tok_free(t);
	gguf_close(g);
}

START_TEST(test_vectors_llama_spm)
{
	run_vectors("llama-spm");
}
END_TEST

START_TEST(test_vectors_phi3)
{
	run_vectors("phi-3");
}
END_TEST

START_TEST(test_vectors_llama_bpe)
{
	run_vectors("llama-bpe");
}
END_TEST

START_TEST(test_vectors_qwen2)
{
	run_vectors("qwen2");
}
END_TEST

START_TEST(test_vectors_deepseek_llm)
{
	run_vectors("deepseek-llm");
}
END_TEST

START_TEST(test_vectors_gpt2)
{
	run_vectors("gpt-2");
}
END_TEST

/* --- real vocabularies ---------------------------------------------------- */

START_TEST(test_aidreams_echoes)
{
	static const int32_t want[] = { 1, 388, 355, 260 };
	struct eng_err err = { "" };
	const char *path = tu_testdata("models/aidreams260K.gguf");
	struct gguf *g = NULL;
	struct tok *t = NULL;
	char *text;
	int len;

	if (path == NULL) {
		tu_skip("models/aidreams260K.gguf");
		return;
	}
	ck_assert_msg(gguf_open(path, &g, &err) == 0, "%s", err.msg);
	ck_assert_msg(tok_new(g, &t, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(tok_kind(t), TOK_KIND_SPM);
	ck_assert_int_eq(tok_n_vocab(t), 512);
	ck_assert_int_eq(tok_bos(t), 1);
	ck_assert_int_eq(tok_eos(t), 2);
	ck_assert(tok_add_bos(t));
	ck_assert(!tok_add_eos(t));
	expect_ids(t, "Echoes", true, false, want, 4);
	expect_ids(t, "Echoes", false, false, want + 1, 3);
	text = dec(t, want, 4, false, true, &len);
	ck_assert_str_eq(text, "Echoes");
	free(text);
	ck_assert(tok_is_eog(t, 2));
	ck_assert(!tok_is_eog(t, 1));
	tok_free(t);
	gguf_close(g);
}
END_TEST

/* Control tokens only with parse_special, user-defined ones always. */
START_TEST(test_special_parsing)
{
	static const char text[] = "<|begin_of_text|>Hello<|eot_id|>";
	struct gguf *g = NULL;
	struct tok *t;
	int32_t *a, *b, *plain;
	size_t na, nb, np, i;

	if ((t = real_tok("llama-bpe", &g)) == NULL)
		return;
	ck_assert_int_eq(tok_find(t, "<|begin_of_text|>", 17), 128000);
	ck_assert_int_eq(tok_attr(t, 128000), TOK_ATTR_CONTROL);
	plain = enc(t, "Hello", 5, false, false, &np);
	a = enc(t, text, strlen(text), false, true, &na);
	ck_assert_uint_eq(na, np + 2);
	ck_assert_int_eq(a[0], 128000);
	ck_assert_int_eq(a[na - 1], 128009);
	ck_assert_mem_eq(a + 1, plain, np * sizeof(*plain));
	b = enc(t, text, strlen(text), false, false, &nb);
	ck_assert_uint_gt(nb, na);
	for (i = 0; i < nb; i++)
		ck_assert(b[i] < 128000);
	free(a);
	free(b);
	/* add_special: llama-bpe adds BOS, not EOS */
	a = enc(t, "Hello", 5, true, false, &na);
	ck_assert_uint_eq(na, np + 1);
	ck_assert_int_eq(a[0], 128000);
	free(a);
	free(plain);
	ck_assert(tok_is_eog(t, 128001));
	ck_assert(tok_is_eog(t, 128009));	/* <|eot_id|> by its text */
	ck_assert(!tok_is_eog(t, 128000));
	ck_assert(!tok_is_eog(t, 9906));
	tok_free(t);
	gguf_close(g);

	/* qwen2: [PAD151646] is user-defined, matched without parse_special */
	if ((t = real_tok("qwen2", &g)) == NULL)
		return;
	ck_assert_int_eq(tok_attr(t, 151646), TOK_ATTR_USER_DEFINED);
	a = enc(t, "a[PAD151646]b", 13, false, false, &na);
	ck_assert_uint_eq(na, 3);
	ck_assert_int_eq(a[1], 151646);
	free(a);
	a = enc(t, "x<|im_end|>", 11, false, false, &na);
	for (i = 0; i < na; i++)
		ck_assert_int_ne(a[i], 151645);
	free(a);
	a = enc(t, "x<|im_end|>", 11, false, true, &na);
	ck_assert_int_eq(a[na - 1], 151645);
	free(a);
	ck_assert(tok_is_eog(t, 151643));
	ck_assert(tok_is_eog(t, 151645));	/* <|im_end|> */
	ck_assert(!tok_is_eog(t, 151644));
	ck_assert(!tok_add_bos(t));
	tok_free(t);
	gguf_close(g);
}
END_TEST

/* SPM: a space prefix after every special token; Phi-3's rstrip. */
START_TEST(test_special_spm)
{
	struct gguf *g = NULL;
	struct tok *t;
	int32_t *a, *hi;
	size_t na, nh;
	char *s;
	int len;

	if ((t = real_tok("llama-spm", &g)) == NULL)
		return;
	hi = enc(t, "Hi", 2, false, false, &nh);
	a = enc(t, "<s>Hi", 5, false, true, &na);
	ck_assert_uint_eq(na, nh + 1);
	ck_assert_int_eq(a[0], 1);
	ck_assert_mem_eq(a + 1, hi, nh * sizeof(*hi));
	s = dec(t, a, na, true, true, &len);
	ck_assert_str_eq(s, "<s>Hi");
	free(s);
	s = dec(t, a, na, false, true, &len);
	ck_assert_str_eq(s, "Hi");
	free(s);
	s = dec(t, a, na, false, false, &len);
	ck_assert_str_eq(s, " Hi");
	free(s);
	free(a);
	a = enc(t, "<s>Hi", 5, false, false, &na);
	ck_assert_int_ne(a[0], 1);
	free(a);
	free(hi);
	tok_free(t);
	gguf_close(g);

	if ((t = real_tok("phi-3", &g)) == NULL)
		return;
	hi = enc(t, "Hi", 2, false, false, &nh);
	a = enc(t, "<|user|>\n Hi", 12, false, true, &na);
	ck_assert_uint_eq(na, nh + 1);
	ck_assert_int_eq(a[0], 32010);
	ck_assert_mem_eq(a + 1, hi, nh * sizeof(*hi));
	free(a);
	free(hi);
	ck_assert(tok_is_eog(t, 32000));	/* eos */
	ck_assert(tok_is_eog(t, 32007));	/* <|end|> */
	tok_free(t);
	gguf_close(g);
}
END_TEST

START_TEST(test_pieces)
{
	struct gguf *g = NULL;
	struct tok *t;
	char buf[16];

	if ((t = real_tok("llama-spm", &g)) == NULL)
		return;
	ck_assert_int_eq(tok_piece(t, 29871, false, buf, sizeof(buf)), 1);
	ck_assert_str_eq(buf, " ");
	ck_assert_int_eq(tok_piece(t, 13, false, buf, sizeof(buf)), 1);
	ck_assert_str_eq(buf, "\n");
	ck_assert_int_eq(tok_attr(t, 13), TOK_ATTR_BYTE);
	ck_assert_int_eq(tok_piece(t, 1, false, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "");
	ck_assert_int_eq(tok_piece(t, 1, true, buf, sizeof(buf)), 3);
	ck_assert_str_eq(buf, "<s>");
	ck_assert_int_eq(tok_piece(t, 15043, false, buf, sizeof(buf)), 6);
	ck_assert_str_eq(buf, " Hello");
	ck_assert_int_eq(tok_piece(t, 15043, false, buf, 4), 6);
	ck_assert_str_eq(buf, " He");
	ck_assert_int_eq(tok_piece(t, 15043, false, NULL, 0), 6);
	tok_free(t);
	gguf_close(g);

	if ((t = real_tok("llama-bpe", &g)) == NULL)
		return;
	ck_assert_int_eq(tok_find(t, "\xc4\xa0", 2), 220);
	ck_assert_int_eq(tok_piece(t, 220, false, buf, sizeof(buf)), 1);
	ck_assert_str_eq(buf, " ");
	ck_assert_int_eq(tok_piece(t, 128009, false, buf, sizeof(buf)), 0);
	ck_assert_int_eq(tok_piece(t, 128009, true, buf, sizeof(buf)), 10);
	ck_assert_str_eq(buf, "<|eot_id|>");
	tok_free(t);
	gguf_close(g);
}
END_TEST

/* A character split over byte tokens comes out whole, and only then. */
START_TEST(test_stream)
{
	static const int32_t llama[] = { 243, 162, 169, 156 };	/* U+1F999 */
	struct gguf *g = NULL;
	struct tok_stream s;
	struct tok *t;
	int32_t *ids;
	size_t n, i, len;
	char buf[64], *txt;

	if ((t = real_tok("llama-spm", &g)) == NULL)
		return;
	tok_stream_init(&s);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(tok_stream_push(t, &s, llama[i], false, buf,
		    sizeof(buf)), 0);
	ck_assert_int_eq(tok_stream_push(t, &s, llama[3], false, buf,
	    sizeof(buf)), 4);
	ck_assert_mem_eq(buf, "\xf0\x9f\xa6\x99", 4);
	ck_assert_int_eq(tok_stream_flush(&s, buf, sizeof(buf)), 0);

	/* an incomplete character at the end becomes U+FFFD */
	tok_stream_init(&s);
	ck_assert_int_eq(tok_stream_push(t, &s, llama[0], false, buf,
	    sizeof(buf)), 0);
	ck_assert_int_eq(tok_stream_push(t, &s, llama[1], false, buf,
	    sizeof(buf)), 0);
	ck_assert_int_eq(tok_stream_flush(&s, buf, sizeof(buf)), 3);
	ck_assert_mem_eq(buf, "\xef\xbf\xbd", 3);
	/* a byte that cannot start a character: U+FFFD at once */
	ck_assert_int_eq(tok_stream_push(t, &s, 3 + 0x80, false, buf,
	    sizeof(buf)), 3);
	ck_assert_mem_eq(buf, "\xef\xbf\xbd", 3);
	/* a broken sequence: U+FFFD, then the byte that broke it */
	ck_assert_int_eq(tok_stream_push(t, &s, llama[0], false, buf,
	    sizeof(buf)), 0);
	ck_assert_int_eq(tok_stream_push(t, &s, 3 + 'A', false, buf,
	    sizeof(buf)), 4);
	ck_assert_mem_eq(buf, "\xef\xbf\xbd" "A", 4);

	/* the leading space goes after BOS, not within a continuation */
	ids = enc(t, "Hello world", 11, true, false, &n);
	ck_assert_int_eq(ids[0], 1);
	txt = stream_dec(t, ids, n, false, &len);
	ck_assert_uint_eq(len, 11);
	ck_assert_mem_eq(txt, "Hello world", 11);
	free(txt);
	tok_stream_init(&s);
	s.first = false;
	ck_assert_int_eq(tok_stream_push(t, &s, ids[1], false, buf,
	    sizeof(buf)), 6);
	ck_assert_mem_eq(buf, " Hello", 6);
	free(ids);
	tok_free(t);
	gguf_close(g);

	/* byte-level BPE: a character split across tokens */
	if ((t = real_tok("llama-bpe", &g)) == NULL)
		return;
	ids = enc(t, "\xf0\x9f\xa6\x99\xf0\x9f\xa6\x99", 8, false, false, &n);
	ck_assert_uint_gt(n, 1);
	tok_stream_init(&s);
	ck_assert_int_eq(tok_stream_push(t, &s, ids[0], false, buf,
	    sizeof(buf)), 0);
	free(ids);
	tok_free(t);
	gguf_close(g);
}
END_TEST

/* --- generated vocabularies ----------------------------------------------- */

enum {
	OMIT_MODEL	= 1 << 0,
	OMIT_TOKENS	= 1 << 1,
	OMIT_SCORES	= 1 << 2,
	OMIT_TYPES	= 1 << 3,
	OMIT_MERGES	= 1 << 4,
};

#define SPM_NBASE 271

/*
 * A small SPM vocabulary: <unk> <s> </s>, the 256 byte tokens, then
 * 259 "▁" 260 "a" 261 "b" 262 "c" 263 "▁a" 264 "ab" 265 "bc" 266 "abc"
 * 267 "aa" 268 "<x>" (user-defined) 269 "<c>" (control) 270 "▁b".
 */
static struct gguf_writer *
spm_writer(unsigned omit)
{
	static const char *const tail[] = {
		SPM_SPACE, "a", "b", "c", SPM_SPACE "a", "ab", "bc", "abc",
		"aa", "<x>", "<c>", SPM_SPACE "b"
	};
	static const float tail_score[] = {
		-1, -1, -1, -1, -2, -3, -1.5f, -0.5f, -1, 0, 0, -2.5f
	};
	static const int32_t tail_type[] = {
		1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 3, 1
	};
	static char bytes[256][8];
	const char *toks[SPM_NBASE];
	float scores[SPM_NBASE];
	int32_t types[SPM_NBASE];
	struct gguf_writer *w = NULL;
	int i;

	toks[0] = "<unk>";
	toks[1] = "<s>";
	toks[2] = "</s>";
	types[0] = TOK_ATTR_UNKNOWN;
	types[1] = types[2] = TOK_ATTR_CONTROL;
	scores[0] = scores[1] = scores[2] = 0;
	for (i = 0; i < 256; i++) {
		snprintf(bytes[i], sizeof(bytes[i]), "<0x%02X>", i);
		toks[3 + i] = bytes[i];
		types[3 + i] = TOK_ATTR_BYTE;
		scores[3 + i] = 0;
	}
	for (i = 0; i < 12; i++) {
		toks[259 + i] = tail[i];
		scores[259 + i] = tail_score[i];
		types[259 + i] = tail_type[i];
	}
	ck_assert_int_eq(gguf_writer_new(&w), 0);
	ck_assert_int_eq(gguf_writer_set_str(w, "general.architecture",
	    "llama"), 0);
	if (!(omit & OMIT_MODEL))
		ck_assert_int_eq(gguf_writer_set_str(w, "tokenizer.ggml.model",
		    "llama"), 0);
	if (!(omit & OMIT_TOKENS))
		ck_assert_int_eq(gguf_writer_set_arr_str(w,
		    "tokenizer.ggml.tokens", toks, NULL, SPM_NBASE), 0);
	if (!(omit & OMIT_SCORES))
		ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.scores",
		    GGUF_VTYPE_FLOAT32, scores, SPM_NBASE), 0);
	if (!(omit & OMIT_TYPES))
		ck_assert_int_eq(gguf_writer_set_arr(w,
		    "tokenizer.ggml.token_type", GGUF_VTYPE_INT32, types,
		    SPM_NBASE), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id",
	    1), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id",
	    2), 0);
	return w;
}

#define BPE_N 11

/*
 * A small byte-level BPE vocabulary: 0 "a" 1 "b" 2 "c" 3 "Ġ" (space)
 * 4 "ab" 5 "bc" 6 "abc" 7 "Ġa" 8 "aa" 9 "<|endoftext|>" (control)
 * 10 "<u>" (user-defined); merges "a b" "b c" "ab c" "Ġ a" "a a".
 */
static struct gguf_writer *
bpe_writer(unsigned omit)
{
	static const char *const toks[BPE_N] = {
		"a", "b", "c", "\xc4\xa0", "ab", "bc", "abc", "\xc4\xa0" "a",
		"aa", "<|endoftext|>", "<u>"
	};
	static const int32_t types[BPE_N] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 4 };
	static const char *const merges[] = {
		"a b", "b c", "ab c", "\xc4\xa0 a", "a a"
	};
	struct gguf_writer *w = NULL;

	ck_assert_int_eq(gguf_writer_new(&w), 0);
	ck_assert_int_eq(gguf_writer_set_str(w, "general.architecture",
	    "gpt2"), 0);
	if (!(omit & OMIT_MODEL))
		ck_assert_int_eq(gguf_writer_set_str(w, "tokenizer.ggml.model",
		    "gpt2"), 0);
	ck_assert_int_eq(gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2"),
	    0);
	if (!(omit & OMIT_TOKENS))
		ck_assert_int_eq(gguf_writer_set_arr_str(w,
		    "tokenizer.ggml.tokens", toks, NULL, BPE_N), 0);
	if (!(omit & OMIT_TYPES))
		ck_assert_int_eq(gguf_writer_set_arr(w,
		    "tokenizer.ggml.token_type", GGUF_VTYPE_INT32, types,
		    BPE_N), 0);
	if (!(omit & OMIT_MERGES))
		ck_assert_int_eq(gguf_writer_set_arr_str(w,
		    "tokenizer.ggml.merges", merges, NULL, 5), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id",
	    9), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id",
	    9), 0);
	return w;
}

static struct tok *
gen_tok(struct gguf_writer *w)
{
	struct eng_err err = { "" };
	struct tok *t = NULL;

	ck_assert_msg(load_writer(w, &t, &err) == 0, "%s", err.msg);
	gguf_writer_free(w);
	return t;
}

START_TEST(test_spm_rules)
{
	struct tok *t = gen_tok(spm_writer(0));
	struct gguf_writer *w;
	char *s;
	int len;

	ck_assert_int_eq(tok_kind(t), TOK_KIND_SPM);
	ck_assert_int_eq(tok_n_vocab(t), SPM_NBASE);
	/* highest score first: "bc" (-1.5) before "▁a" (-2), then "abc" */
	expect_ids(t, "abc", false, false, (const int32_t[]){ 259, 266 }, 2);
	/* equal scores: the leftmost pair wins */
	expect_ids(t, "aaa", false, false, (const int32_t[]){ 259, 267, 260 },
	    3);
	/* no token: the bytes' tokens */
	expect_ids(t, "\xc3\xa9", false, false,
	    (const int32_t[]){ 259, 3 + 0xc3, 3 + 0xa9 }, 3);
	/* special tokens, and the space prefix after them */
	expect_ids(t, "<x>a", false, false, (const int32_t[]){ 268, 263 }, 2);
	expect_ids(t, "a<c>b", false, false,
	    (const int32_t[]){ 263, 3 + '<', 262, 3 + '>', 261 }, 5);
	expect_ids(t, "a<c>b", false, true, (const int32_t[]){ 263, 269, 270 },
	    3);
	expect_ids(t, "a", true, false, (const int32_t[]){ 1, 263 }, 2);
	expect_ids(t, "", true, false, (const int32_t[]){ 1 }, 1);
	expect_ids(t, "", false, false, NULL, 0);
	s = dec(t, (const int32_t[]){ 1, 263, 259, 270 }, 4, false, true, &len);
	ck_assert_str_eq(s, "a  b");
	free(s);
	s = dec(t, (const int32_t[]){ 1, 263 }, 2, true, true, &len);
	ck_assert_str_eq(s, "<s>a");
	free(s);
	s = dec(t, (const int32_t[]){ 263 }, 1, false, false, &len);
	ck_assert_str_eq(s, " a");
	free(s);
	ck_assert(tok_is_eog(t, 2));
	ck_assert(!tok_is_eog(t, 1));
	ck_assert_int_eq(tok_attr(t, 268), TOK_ATTR_USER_DEFINED);
	ck_assert_int_eq(tok_attr(t, SPM_NBASE), TOK_ATTR_UNDEFINED);
	ck_assert_ptr_null(tok_text(t, -1, NULL));
	tok_free(t);

	/* add_eos and no space prefix */
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token",
	    1), 0);
	ck_assert_int_eq(gguf_writer_set_bool(w,
	    "tokenizer.ggml.add_space_prefix", 0), 0);
	t = gen_tok(w);
	expect_ids(t, "a", true, false, (const int32_t[]){ 1, 260, 2 }, 3);
	s = dec(t, (const int32_t[]){ 263 }, 1, false, true, &len);
	ck_assert_str_eq(s, " a");
	free(s);
	tok_free(t);
}
END_TEST

/* Without byte tokens an SPM byte falls back to <unk>. */
START_TEST(test_spm_unk)
{
	static const char *const toks[] = {
		"<unk>", "<s>", "</s>", "a", SPM_SPACE
	};
	static const float scores[] = { 0, 0, 0, -1, -1 };
	struct gguf_writer *w = NULL;
	struct tok *t;

	ck_assert_int_eq(gguf_writer_new(&w), 0);
	ck_assert_int_eq(gguf_writer_set_str(w, "tokenizer.ggml.model",
	    "llama"), 0);
	ck_assert_int_eq(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens",
	    toks, NULL, 5), 0);
	ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.scores",
	    GGUF_VTYPE_FLOAT32, scores, 5), 0);
	t = gen_tok(w);
	/* defaults: bos 1, eos 2, unk 0, add_bos */
	ck_assert_int_eq(tok_bos(t), 1);
	ck_assert_int_eq(tok_eos(t), 2);
	expect_ids(t, "a", true, false, (const int32_t[]){ 1, 4, 3 }, 3);
	/* every byte of a piece with no token is one <unk> */
	expect_ids(t, "a\xc3\xa9", false, false,
	    (const int32_t[]){ 4, 3, 0, 0 }, 4);
	tok_free(t);
}
END_TEST

START_TEST(test_bpe_rules)
{
	struct tok *t = gen_tok(bpe_writer(0));
	char *s;
	int len;

	ck_assert_int_eq(tok_kind(t), TOK_KIND_BPE);
	ck_assert(!tok_add_bos(t));
	expect_ids(t, "abc", false, false, (const int32_t[]){ 6 }, 1);
	expect_ids(t, "bca", false, false, (const int32_t[]){ 5, 0 }, 2);
	/* gpt-2 words " a" and " b"; "Ġb" is no token */
	expect_ids(t, " a b", false, false, (const int32_t[]){ 7, 3, 1 }, 3);
	/* equal ranks: the leftmost pair merges */
	expect_ids(t, "aaa", false, false, (const int32_t[]){ 8, 0 }, 2);
	/* bytes without a token are dropped, as llama.cpp does */
	expect_ids(t, "azb", false, false, (const int32_t[]){ 0, 1 }, 2);
	expect_ids(t, "a<u>b", false, false, (const int32_t[]){ 0, 10, 1 }, 3);
	expect_ids(t, "a<|endoftext|>", false, true,
	    (const int32_t[]){ 0, 9 }, 2);
	expect_ids(t, "a", true, false, (const int32_t[]){ 0 }, 1);
	s = dec(t, (const int32_t[]){ 7, 3, 1, 9 }, 4, false, true, &len);
	ck_assert_str_eq(s, " a b");
	free(s);
	s = dec(t, (const int32_t[]){ 7, 9 }, 2, true, true, &len);
	ck_assert_str_eq(s, " a<|endoftext|>");
	free(s);
	ck_assert(tok_is_eog(t, 9));
	ck_assert_int_eq(tok_bos(t), 9);
	tok_free(t);
}
END_TEST

/* --- limits --------------------------------------------------------------- */

START_TEST(test_enobufs)
{
	struct tok *t = gen_tok(spm_writer(0));
	int32_t ids[8] = { -7, -7, -7, -7, -7, -7, -7, -7 };
	size_t n = 99;

	/* "abc aaa": ▁ abc ▁ aa a (5 ids), 1 BOS */
	ck_assert_int_eq(tok_encode(t, "abc aaa", 7, true, false, NULL, 0, &n),
	    -ENOBUFS);
	ck_assert_uint_eq(n, 6);
	ck_assert_int_eq(tok_encode(t, "abc aaa", 7, true, false, ids, 2, &n),
	    -ENOBUFS);
	ck_assert_uint_eq(n, 6);
	ck_assert_int_eq(ids[0], 1);
	ck_assert_int_eq(ids[1], 259);
	ck_assert_int_eq(ids[2], -7);	/* nothing past max_ids */
	ck_assert_int_eq(tok_encode(t, "abc aaa", 7, true, false, ids, 6, &n),
	    0);
	ck_assert_uint_eq(n, 6);
	ck_assert_int_eq(ids[5], 260);
	ck_assert_int_eq(tok_encode(t, "", 0, false, false, NULL, 0, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(tok_encode(t, NULL, 0, true, false, ids, 8, &n), 0);
	ck_assert_uint_eq(n, 1);
	tok_free(t);
}
END_TEST

START_TEST(test_decode_limits)
{
	static const int32_t ids[] = { 1, 263, 259, 270 };	/* "a  b" */
	struct tok *t = gen_tok(spm_writer(0));
	struct tok_stream s;
	char buf[8];

	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(tok_decode(t, ids, 4, false, true, buf, 3), 4);
	ck_assert_str_eq(buf, "a ");
	ck_assert_int_eq(buf[3], 'x');
	ck_assert_int_eq(tok_decode(t, ids, 4, false, true, NULL, 0), 4);
	ck_assert_int_eq(tok_decode(t, ids, 4, false, true, buf, 1), 4);
	ck_assert_str_eq(buf, "");
	ck_assert_int_eq(tok_decode(t, ids, 0, false, true, buf, 8), 0);
	ck_assert_int_eq(tok_piece(t, 270, false, buf, 0), 2);

	/* a stream that cannot write keeps its state */
	tok_stream_init(&s);
	ck_assert_int_eq(tok_stream_push(t, &s, 3 + 0xc3, false, buf, 8), 0);
	ck_assert_uint_eq(s.n_pend, 1);
	ck_assert_int_eq(tok_stream_push(t, &s, 3 + 0xa9, false, buf, 1),
	    -ENOBUFS);
	ck_assert_uint_eq(s.n_pend, 1);
	ck_assert_int_eq(tok_stream_push(t, &s, 3 + 0xa9, false, buf, 2), 2);
	ck_assert_mem_eq(buf, "\xc3\xa9", 2);
	ck_assert_uint_eq(s.n_pend, 0);
	ck_assert_int_eq(tok_stream_push(t, &s, 3 + 0xe2, false, buf, 8), 0);
	ck_assert_int_eq(tok_stream_flush(&s, buf, 2), -ENOBUFS);
	ck_assert_int_eq(tok_stream_flush(&s, buf, 3), 3);
	ck_assert_uint_eq(s.n_pend, 0);
	tok_free(t);
}
END_TEST

/* Texts llama.cpp's regexes would backtrack on, and plain long ones. */
static void
long_roundtrip(const struct tok *t, const char *s, size_t len)
{
	int32_t *ids;
	size_t n;
	char *back;
	int bl;

	ids = enc(t, s, len, false, false, &n);
	ck_assert_uint_gt(n, 0);
	back = dec(t, ids, n, false, true, &bl);
	ck_assert_uint_eq((size_t)bl, len);
	ck_assert(memcmp(back, s, len) == 0);
	free(back);
	free(ids);
}

START_TEST(test_long_inputs)
{
	static const char *const words[] = {
		"hello", " world", "  ", "\n", "\xc3\xa4pfel", " \xe4\xbd\xa0",
		"\xf0\x9f\xa6\x99", "123456", "'s", " ...", "\t", "ok"
	};
	static const char *const names[] = {
		"llama-spm", "llama-bpe", "qwen2", "deepseek-llm", "gpt-2"
	};
	size_t len = 1 << 20, i, k;
	uint64_t seed = 42;
	struct gguf *g;
	struct tok *t;
	char *s;

	s = malloc(len + 16);
	ck_assert_ptr_nonnull(s);
	/* generated vocabularies: always */
	memset(s, 'a', len);
	t = gen_tok(spm_writer(0));
	long_roundtrip(t, s, len);
	tok_free(t);
	t = gen_tok(bpe_writer(0));
	long_roundtrip(t, s, len);
	memset(s, ' ', len);
	s[len - 1] = 'b';
	long_roundtrip(t, s, len);
	tok_free(t);

	for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		if ((t = real_tok(names[k], &g)) == NULL)
			break;
		memset(s, ' ', 200000);
		s[200000] = 'x';
		long_roundtrip(t, s, 200001);
		for (i = 0; i < 300000; ) {
			const char *w = words[tu_rand_u64(&seed) % 12];

			memcpy(s + i, w, strlen(w));
			i += strlen(w);
		}
		long_roundtrip(t, s, i);
		tok_free(t);
		gguf_close(g);
	}
	free(s);
}
END_TEST

/* The specials scan stays linear with many special tokens. */
START_TEST(test_many_specials)
{
	struct gguf *g = NULL;
	struct tok *t;
	int32_t *ids;
	size_t n, i;
	char *s;

	if ((t = real_tok("deepseek-llm", &g)) == NULL)
		return;
	/* "ø" is one of deepseek-llm's 2398 user-defined tokens */
	s = malloc(2 * 50000);
	ck_assert_ptr_nonnull(s);
	for (i = 0; i < 50000; i++)
		memcpy(s + 2 * i, "\xc3\xb8", 2);
	ids = enc(t, s, 2 * 50000, false, false, &n);
	ck_assert_uint_eq(n, 50000);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(ids[i], 100002);
	free(ids);
	free(s);
	tok_free(t);
	gguf_close(g);
}
END_TEST

START_TEST(test_bad_text)
{
	struct tok *t = gen_tok(bpe_writer(0));
	int32_t ids[8];
	size_t n = 7;

	/* BPE needs UTF-8 */
	ck_assert_int_eq(tok_encode(t, "a\xff", 2, false, false, ids, 8, &n),
	    -EINVAL);
	ck_assert_int_eq(tok_encode(t, "\xed\xa0\x80", 3, false, false, ids, 8,
	    &n), -EINVAL);
	ck_assert_int_eq(tok_encode(t, "\xc3", 1, false, false, ids, 8, &n),
	    -EINVAL);
	ck_assert_uint_eq(n, 7);
	ck_assert_int_eq(tok_encode(t, "a", 1, false, false, NULL, 8, &n),
	    -EINVAL);
	ck_assert_int_eq(tok_encode(t, NULL, 1, false, false, ids, 8, &n),
	    -EINVAL);
	ck_assert_int_eq(tok_encode(t, "a", 1, false, false, ids, 8, NULL),
	    -EINVAL);
	/* a NUL byte is text like any other: no token, dropped */
	ck_assert_int_eq(tok_encode(t, "a\0b", 3, false, false, ids, 8, &n), 0);
	ck_assert_uint_eq(n, 2);
	tok_free(t);

	/* SPM takes any bytes */
	t = gen_tok(spm_writer(0));
	ck_assert_int_eq(tok_encode(t, "\xff\xc3", 2, false, false, ids, 8, &n),
	    0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(ids[1], 3 + 0xff);
	ck_assert_int_eq(ids[2], 3 + 0xc3);
	tok_free(t);
}
END_TEST

/* --- errors --------------------------------------------------------------- */

/* tok_new on w must fail with code; *out stays untouched. */
static void
expect_refused(struct gguf_writer *w, int code, const char *what)
{
	struct tok *sentinel = (struct tok *)&sentinel, *t = sentinel;
	struct eng_err err = { "" };
	int r;

	r = load_writer(w, &t, &err);
	gguf_writer_free(w);
	ck_assert_msg(r == code, "%s: got %d (%s), want %d", what, r, err.msg,
	    code);
	ck_assert_ptr_eq(t, sentinel);
	ck_assert_msg(err.msg[0] != '\0', "%s: no message", what);
}

START_TEST(test_hostile_vocab)
{
	static const float two_scores[] = { 0, 0 };
	static const int32_t bad_type[] = { 1, 1, 1, 9 };
	const char *toks[SPM_NBASE];
	struct gguf_writer *w;
	float nan_scores[4] = { 0, 0, 0, 0 };
	int32_t types[4] = { 2, 3, 3, 6 };
	int i;

	for (i = 0; i < SPM_NBASE; i++)
		toks[i] = "t";

	/* array lengths that differ from the token count */
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.scores",
	    GGUF_VTYPE_FLOAT32, two_scores, 2), 0);
	expect_refused(w, -EINVAL, "short scores");
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.token_type",
	    GGUF_VTYPE_INT32, bad_type, 4), 0);
	expect_refused(w, -EINVAL, "short token types");

	/* ids out of range */
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id",
	    SPM_NBASE), 0);
	expect_refused(w, -EINVAL, "bos out of range");
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id",
	    0xffffffffu), 0);
	expect_refused(w, -EINVAL, "eos out of range");
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_i32(w, "tokenizer.ggml.eot_token_id",
	    -1), 0);
	expect_refused(w, -EINVAL, "negative eot");
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_str(w,
	    "tokenizer.ggml.unknown_token_id", "0"), 0);
	expect_refused(w, -EINVAL, "unk id as a string");

	/* models */
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_str(w, "tokenizer.ggml.model", "bert"),
	    0);
	expect_refused(w, -ENOTSUP, "bert");
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_str(w, "tokenizer.ggml.model", "t5"),
	    0);
	expect_refused(w, -ENOTSUP, "t5");
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_str(w, "tokenizer.ggml.model", "rwkv"),
	    0);
	expect_refused(w, -ENOTSUP, "rwkv");
	expect_refused(spm_writer(OMIT_MODEL), -EINVAL, "no model");
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "tokenizer.ggml.model", 1), 0);
	expect_refused(w, -EINVAL, "model not a string");

	/* tokens */
	expect_refused(spm_writer(OMIT_TOKENS), -EINVAL, "no tokens");
	expect_refused(spm_writer(OMIT_SCORES), -EINVAL, "SPM without scores");
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens",
	    toks, NULL, SPM_NBASE), 0);
	expect_refused(w, -EINVAL, "duplicate tokens");
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens",
	    toks, NULL, 0), 0);
	ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.scores",
	    GGUF_VTYPE_FLOAT32, two_scores, 0), 0);
	ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.token_type",
	    GGUF_VTYPE_INT32, bad_type, 0), 0);
	expect_refused(w, -EINVAL, "no tokens at all");

	/* a four-token vocabulary with one thing wrong each time */
	{
		const char *four[4] = { "<unk>", "<s>", "</s>", "<0x0A>" };
		const char *bad_utf8[4] = { "<unk>", "<s>", "</s>", "\xc3(" };
		const char *bad_byte[4] = { "<unk>", "<s>", "</s>", "<0xZZ>" };

		nan_scores[3] = NAN;
		w = NULL;
		ck_assert_int_eq(gguf_writer_new(&w), 0);
		gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
		gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", four, NULL,
		    4);
		gguf_writer_set_arr(w, "tokenizer.ggml.scores",
		    GGUF_VTYPE_FLOAT32, nan_scores, 4);
		expect_refused(w, -EINVAL, "NaN score");

		nan_scores[3] = 0;
		ck_assert_int_eq(gguf_writer_new(&w), 0);
		gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
		gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", bad_utf8,
		    NULL, 4);
		gguf_writer_set_arr(w, "tokenizer.ggml.scores",
		    GGUF_VTYPE_FLOAT32, nan_scores, 4);
		expect_refused(w, -EINVAL, "invalid UTF-8 token");

		ck_assert_int_eq(gguf_writer_new(&w), 0);
		gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
		gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", bad_byte,
		    NULL, 4);
		gguf_writer_set_arr(w, "tokenizer.ggml.scores",
		    GGUF_VTYPE_FLOAT32, nan_scores, 4);
		gguf_writer_set_arr(w, "tokenizer.ggml.token_type",
		    GGUF_VTYPE_INT32, types, 4);
		expect_refused(w, -EINVAL, "badly spelt byte token");

		/* byte tokens that are not one byte: negative, too long,
		 * short, lower-case x, not hex */
		{
			static const char *const spelt[] = {
				"<0x-1>", "<0x100>", "<0xA>", "<0X41>", "<0x4g>",
				"<0x41", "0x41>"
			};
			size_t k;

			for (k = 0; k < sizeof(spelt) / sizeof(spelt[0]); k++) {
				bad_byte[3] = spelt[k];
				ck_assert_int_eq(gguf_writer_new(&w), 0);
				gguf_writer_set_str(w, "tokenizer.ggml.model",
				    "llama");
				gguf_writer_set_arr_str(w,
				    "tokenizer.ggml.tokens", bad_byte, NULL, 4);
				gguf_writer_set_arr(w, "tokenizer.ggml.scores",
				    GGUF_VTYPE_FLOAT32, nan_scores, 4);
				gguf_writer_set_arr(w,
				    "tokenizer.ggml.token_type",
				    GGUF_VTYPE_INT32, types, 4);
				expect_refused(w, -EINVAL, spelt[k]);
			}
		}

		types[3] = -1;
		ck_assert_int_eq(gguf_writer_new(&w), 0);
		gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
		gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", four, NULL,
		    4);
		gguf_writer_set_arr(w, "tokenizer.ggml.scores",
		    GGUF_VTYPE_FLOAT32, nan_scores, 4);
		gguf_writer_set_arr(w, "tokenizer.ggml.token_type",
		    GGUF_VTYPE_INT32, types, 4);
		expect_refused(w, -EINVAL, "negative token type");
	}

	/* flags */
	w = spm_writer(0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "tokenizer.ggml.add_bos_token",
	    1), 0);
	expect_refused(w, -EINVAL, "add_bos_token not a bool");

	/* BPE */
	expect_refused(bpe_writer(OMIT_MERGES), -EINVAL, "BPE without merges");
	w = bpe_writer(0);
	ck_assert_int_eq(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges",
	    (const char *const[]){ "a b", "ab" }, NULL, 2), 0);
	expect_refused(w, -EINVAL, "merge without a space");
	w = bpe_writer(0);
	ck_assert_int_eq(gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token",
	    1), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id",
	    BPE_N + 5), 0);
	expect_refused(w, -EINVAL, "eos out of range with add_eos");
}
END_TEST

/*
 * Odd but accepted: empty token texts; ids hearth does not use (padding,
 * fill-in-the-middle) out of range or mistyped are ignored, as llama.cpp
 * ignores them.
 */
START_TEST(test_tolerated_vocab)
{
	static const char *const toks[] = {
		"<unk>", "<s>", "</s>", "", "a", SPM_SPACE
	};
	static const float scores[] = { 0, 0, 0, 0, -1, -1 };
	struct gguf_writer *w = NULL;
	struct tok *t;
	char buf[4];
	size_t len = 9;

	ck_assert_int_eq(gguf_writer_new(&w), 0);
	ck_assert_int_eq(gguf_writer_set_str(w, "tokenizer.ggml.model",
	    "llama"), 0);
	ck_assert_int_eq(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens",
	    toks, NULL, 6), 0);
	ck_assert_int_eq(gguf_writer_set_arr(w, "tokenizer.ggml.scores",
	    GGUF_VTYPE_FLOAT32, scores, 6), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w,
	    "tokenizer.ggml.padding_token_id", 6), 0);
	ck_assert_int_eq(gguf_writer_set_str(w,
	    "tokenizer.ggml.fim_pre_token_id", "x"), 0);
	t = gen_tok(w);
	ck_assert_int_eq(tok_piece(t, 3, true, buf, sizeof(buf)), 0);
	ck_assert_ptr_nonnull(tok_text(t, 3, &len));
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(tok_find(t, "", 0), -1);
	expect_ids(t, "a", false, false, (const int32_t[]){ 5, 4 }, 2);
	tok_free(t);
}
END_TEST

START_TEST(test_bad_calls)
{
	struct tok *t = gen_tok(spm_writer(0));
	struct tok_stream s;
	int32_t bad[] = { 1, SPM_NBASE };
	char buf[8];

	ck_assert_int_eq(tok_decode(t, bad, 2, false, true, buf, 8), -EINVAL);
	bad[1] = -1;
	ck_assert_int_eq(tok_decode(t, bad, 2, false, true, buf, 8), -EINVAL);
	ck_assert_int_eq(tok_piece(t, SPM_NBASE, false, buf, 8), -EINVAL);
	ck_assert_int_eq(tok_piece(t, -5, false, buf, 8), -EINVAL);
	tok_stream_init(&s);
	ck_assert_int_eq(tok_stream_push(t, &s, SPM_NBASE, false, buf, 8),
	    -EINVAL);
	ck_assert_int_eq(tok_new(NULL, &t, NULL), -EINVAL);
	ck_assert(!tok_is_eog(t, -1));
	ck_assert(!tok_is_eog(t, SPM_NBASE));
	ck_assert_int_eq(tok_find(t, NULL, 0), -1);
	tok_free(t);
	tok_free(NULL);
}
END_TEST

static Suite *
tokenizer_suite(void)
{
	Suite *su = suite_create("tokenizer");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_test(tc, test_vectors_llama_spm);
	tcase_add_test(tc, test_vectors_phi3);
	tcase_add_test(tc, test_vectors_llama_bpe);
	tcase_add_test(tc, test_vectors_qwen2);
	tcase_add_test(tc, test_vectors_deepseek_llm);
	tcase_add_test(tc, test_vectors_gpt2);
	tcase_add_test(tc, test_aidreams_echoes);
	tcase_add_test(tc, test_special_parsing);
	tcase_add_test(tc, test_special_spm);
	tcase_add_test(tc, test_pieces);
	tcase_add_test(tc, test_stream);
	tcase_add_test(tc, test_spm_rules);
	tcase_add_test(tc, test_spm_unk);
	tcase_add_test(tc, test_bpe_rules);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(su, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_enobufs);
	tcase_add_test(tc, test_decode_limits);
	tcase_add_test(tc, test_long_inputs);
	tcase_add_test(tc, test_many_specials);
	tcase_add_test(tc, test_bad_text);
	tcase_set_timeout(tc, 300);
	suite_add_tcase(su, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, test_hostile_vocab);
	tcase_add_test(tc, test_tolerated_vocab);
	tcase_add_test(tc, test_bad_calls);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(su, tc);
	return su;
}

int
main(void)
{
	SRunner *sr = srunner_create(tokenizer_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	tu_tmpdir_free();
	return failed != 0;
}
