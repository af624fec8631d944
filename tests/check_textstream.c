/*
 * check_textstream.c - the thinking split and stop strings over streamed
 * text (daemon/textstream.c).
 *
 * core:   tags and stop strings found whole and split across pieces, in
 *         any chunking; nothing of them is passed on; held-back text is
 *         let go as soon as it cannot start one; a randomized comparison
 *         with a whole-text reference.
 * limits: long pieces, pushes after a stop, a stop completed by flush.
 * errors: bad arguments.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "textstream.h"

/* What came out: runs merged by channel, and the push count at each. */
struct out {
	char	 text[2][65536];	/* [answer, thinking] all bytes */
	size_t	 len[2];
	char	 seq[131072];		/* all bytes in order, with the
					 * channel switches marked by \1 / \2 */
	size_t	 n_seq;
	int	 last;			/* channel of the last run, -1 none */
	size_t	 calls;
};

static void
out_init(struct out *o)
{
	memset(o, 0, sizeof(*o));
	o->last = -1;
}

static void
emit(void *arg, bool thinking, const char *s, size_t len)
{
	struct out *o = arg;
	int c = thinking ? 1 : 0;

	ck_assert_uint_gt(len, 0);
	ck_assert_uint_lt(o->len[c] + len, sizeof(o->text[c]));
	memcpy(o->text[c] + o->len[c], s, len);
	o->len[c] += len;
	if (o->last != c) {
		o->seq[o->n_seq++] = thinking ? '\2' : '\1';
		o->last = c;
	}
	ck_assert_uint_lt(o->n_seq + len, sizeof(o->seq));
	memcpy(o->seq + o->n_seq, s, len);
	o->n_seq += len;
	o->calls++;
}

static void
ck_text(const struct out *o, int c, const char *want)
{
	ck_assert_msg(o->len[c] == strlen(want) &&
	    memcmp(o->text[c], want, o->len[c]) == 0,
	    "channel %d: got '%.*s', want '%s'", c, (int)o->len[c],
	    o->text[c], want);
}

/* Push text in pieces of the given size (0: one byte each), flush. */
static int
run(struct tstream *t, const char *text, size_t piece, struct out *o)
{
	size_t n = strlen(text), i, c;
	int r = 0;

	for (i = 0; i < n && r == 0; i += c) {
		c = piece == 0 ? 1 : piece;
		if (c > n - i)
			c = n - i;
		r = tstream_push(t, text + i, c, emit, o);
		ck_assert_int_ge(r, 0);
	}
	if (r == 0)
		r = tstream_flush(t, emit, o);
	return r;
}

START_TEST(test_plain)
{
	struct tstream t;
	struct out o;
	size_t piece;

	for (piece = 0; piece < 6; piece++) {
		ck_assert_int_eq(tstream_init(&t, NULL, NULL, false, NULL, 0,
		    16), 0);
		out_init(&o);
		ck_assert_int_eq(run(&t, "plain text, <think> and all", piece,
		    &o), 0);
		ck_text(&o, 0, "plain text, <think> and all");
		ck_assert_uint_eq(o.len[1], 0);
		ck_assert(!tstream_thinking(&t));
		tstream_free(&t);
	}
}
END_TEST

START_TEST(test_thinking)
{
	static const struct {
		const char *in;
		bool first;
		const char *answer, *thinking, *seq;
	} cases[] = {
		{ "<think>abc</think>def", false, "def", "abc",
		  "\2abc\1def" },
		{ "xy<think>abc</think>def", false, "xydef", "abc",
		  "\1xy\2abc\1def" },
		{ "abc</think>def", true, "def", "abc", "\2abc\1def" },
		{ "<think>a</think>b<think>c</think>d", false, "bd", "ac",
		  "\2a\1b\2c\1d" },
		{ "<thi<think>x</thin</think>y", false, "<thiy", "x</thin",
		  "\1<thi\2x</thin\1y" },
		{ "no tags at all <", false, "no tags at all <", "",
		  "\1no tags at all <" },
		{ "<think>unclosed </thi", false, "", "unclosed </thi",
		  "\2unclosed </thi" },
		{ "</think>", true, "", "", "" },
	};
	struct tstream t;
	struct out o;
	size_t i, piece;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (piece = 0; piece < 9; piece++) {
			ck_assert_int_eq(tstream_init(&t, "<think>",
			    "</think>", cases[i].first, NULL, 0, 4), 0);
			out_init(&o);
			ck_assert_int_eq(run(&t, cases[i].in, piece, &o), 0);
			ck_text(&o, 0, cases[i].answer);
			ck_text(&o, 1, cases[i].thinking);
			ck_assert_msg(o.n_seq == strlen(cases[i].seq) &&
			    memcmp(o.seq, cases[i].seq, o.n_seq) == 0,
			    "case %zu piece %zu: order", i, piece);
			tstream_free(&t);
		}
}
END_TEST

/* Text that could start a tag is held back, and let go once it cannot. */
START_TEST(test_hold_back)
{
	static const char *const stop[] = { "STOP" };
	struct tstream t;
	struct out o;

	ck_assert_int_eq(tstream_init(&t, "<think>", "</think>", false, stop,
	    1, 16), 0);
	out_init(&o);
	ck_assert_int_eq(tstream_push(&t, "ab<th", 5, emit, &o), 0);
	ck_text(&o, 0, "ab");
	ck_assert_int_eq(tstream_push(&t, "x", 1, emit, &o), 0);
	ck_text(&o, 0, "ab<thx");
	ck_assert_int_eq(tstream_push(&t, " ST", 3, emit, &o), 0);
	ck_text(&o, 0, "ab<thx ");
	ck_assert_int_eq(tstream_push(&t, "OR", 2, emit, &o), 0);
	ck_text(&o, 0, "ab<thx STOR");
	/* held answer goes out before thinking starts */
	ck_assert_int_eq(tstream_push(&t, "S<think>", 8, emit, &o), 0);
	ck_text(&o, 0, "ab<thx STORS");
	ck_assert(tstream_thinking(&t));
	/* stop strings do not apply to thinking */
	ck_assert_int_eq(tstream_push(&t, "STOP</think>", 12, emit, &o), 0);
	ck_text(&o, 1, "STOP");
	ck_assert(!tstream_thinking(&t));
	ck_assert_int_eq(tstream_push(&t, "done ST", 7, emit, &o), 0);
	ck_text(&o, 0, "ab<thx STORSdone ");
	ck_assert_int_eq(tstream_flush(&t, emit, &o), 0);
	ck_text(&o, 0, "ab<thx STORSdone ST");
	tstream_free(&t);
}
END_TEST

START_TEST(test_stop)
{
	static const char *const stop[] = { "world", "or", "\xc3\xa9t\xc3\xa9" };
	static const struct {
		const char *in, *want;
		int r;
	} cases[] = {
		{ "hello world", "hello w", 1 },	/* "or" ends first */
		{ "hello worl", "hello w", 1 },
		{ "hello there", "hello there", 0 },
		{ "un \xc3\xa9t\xc3\xa9 chaud", "un ", 1 },
		{ "o", "o", 0 },
		{ "or", "", 1 },
	};
	struct tstream t;
	struct out o;
	size_t i, piece;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (piece = 0; piece < 8; piece++) {
			ck_assert_int_eq(tstream_init(&t, NULL, NULL, false,
			    stop, 3, 8), 0);
			out_init(&o);
			ck_assert_int_eq(run(&t, cases[i].in, piece, &o),
			    cases[i].r);
			ck_text(&o, 0, cases[i].want);
			tstream_free(&t);
		}
}
END_TEST

/* The reference: the whole text at once. */
static int
ref_split(const char *in, const char *open, const char *close, bool first,
    const char *const *stop, size_t n_stop, struct out *o)
{
	size_t n = strlen(in), pos = 0, i, end, best, k, stop_end;
	bool th = first;
	const char *tag, *q, *p;

	while (pos < n) {
		tag = th ? close : open;
		q = tag != NULL ? memmem(in + pos, n - pos, tag, strlen(tag)) :
		    NULL;
		end = q != NULL ? (size_t)(q - in) : n;
		if (!th) {
			/* stops within this answer run */
			/* the one that ends first, then the longest */
			best = end;
			stop_end = SIZE_MAX;
			for (i = 0; i < n_stop; i++) {
				k = strlen(stop[i]);
				p = memmem(in + pos, end - pos, stop[i], k);
				if (p == NULL)
					continue;
				if ((size_t)(p - in) + k < stop_end ||
				    ((size_t)(p - in) + k == stop_end &&
				    (size_t)(p - in) < best)) {
					stop_end = (size_t)(p - in) + k;
					best = (size_t)(p - in);
				}
			}
			if (best > pos)
				emit(o, false, in + pos, best - pos);
			if (best < end)
				return 1;
		} else if (end > pos)
			emit(o, true, in + pos, end - pos);
		if (q == NULL)
			break;
		pos = end + strlen(tag);
		th = !th;
	}
	return 0;
}

START_TEST(test_random)
{
	static const char alpha[] = "ab<>/thinkS";
	static const char *const stop[] = { "ab", "k>S", "nab<" };
	char text[200];
	struct tstream t;
	struct out got, want;
	uint64_t rng = 42;
	size_t n, i, pos, c;
	int iter, rg, rw;
	bool first;

	for (iter = 0; iter < 20000; iter++) {
		n = tu_rand_u64(&rng) % 60;
		for (i = 0; i < n; i++) {
			/* sometimes whole tags */
			if (tu_rand_u64(&rng) % 10 == 0 && i + 8 < n) {
				memcpy(text + i, tu_rand_u64(&rng) % 2 ?
				    "<think>" : "</think>", 7);
				i += 6;
				continue;
			}
			text[i] = alpha[tu_rand_u64(&rng) % (sizeof(alpha) -
			    1)];
		}
		text[n] = '\0';
		first = tu_rand_u64(&rng) % 2;
		out_init(&want);
		rw = ref_split(text, "<think>", "</think>", first, stop,
		    iter % 2 ? 3 : 0, &want);

		ck_assert_int_eq(tstream_init(&t, "<think>", "</think>",
		    first, stop, iter % 2 ? 3 : 0, 1), 0);
		out_init(&got);
		rg = 0;
		for (pos = 0; pos < n && rg == 0; pos += c) {
			c = 1 + tu_rand_u64(&rng) % 9;
			if (c > n - pos)
				c = n - pos;
			rg = tstream_push(&t, text + pos, c, emit, &got);
		}
		if (rg == 0)
			rg = tstream_flush(&t, emit, &got);
		ck_assert_msg(rg == rw && got.n_seq == want.n_seq &&
		    memcmp(got.seq, want.seq, got.n_seq) == 0,
		    "'%s' first %d stops %d: got %d '%.*s' want %d '%.*s'",
		    text, first, iter % 2, rg, (int)got.n_seq, got.seq, rw,
		    (int)want.n_seq, want.seq);
		tstream_free(&t);
	}
}
END_TEST

/* ---- limits ---------------------------------------------------------- */

struct count {
	size_t	 len[2];	/* bytes per channel */
};

static void
emit_count(void *arg, bool thinking, const char *s, size_t len)
{
	struct count *c = arg;

	(void)s;
	ck_assert_uint_gt(len, 0);
	c->len[thinking ? 1 : 0] += len;
}

START_TEST(test_long_piece)
{
	static const char *const stop[] = { "zz" };
	struct tstream t;
	struct count cnt;
	size_t n = 1 << 20, i;
	char *big;

	big = malloc(n);
	ck_assert_ptr_nonnull(big);
	for (i = 0; i < n; i++)
		big[i] = "xy"[i % 2];
	memcpy(big + n / 2, "<think>", 7);
	big[n - 1] = 'z';

	/* the buffers grow past the hint; thinking ignores stops */
	memset(&cnt, 0, sizeof(cnt));
	ck_assert_int_eq(tstream_init(&t, "<think>", "</think>", false, stop,
	    1, 1), 0);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(tstream_push(&t, big, n, emit_count, &cnt), 0);
	ck_assert_int_eq(tstream_flush(&t, emit_count, &cnt), 0);
	ck_assert_uint_eq(cnt.len[0], n / 2);
	ck_assert_uint_eq(cnt.len[1], 3 * n - n / 2 - 7);
	ck_assert_uint_ge(t.t_cap, n);
	tstream_free(&t);

	/* a stop split across two long pieces */
	memset(&cnt, 0, sizeof(cnt));
	memset(big + n / 2, 'x', 7);
	big[0] = 'z';
	ck_assert_int_eq(tstream_init(&t, NULL, NULL, false, stop, 1, 1), 0);
	ck_assert_int_eq(tstream_push(&t, big, n, emit_count, &cnt), 0);
	ck_assert_uint_eq(cnt.len[0], n - 1);
	ck_assert_int_eq(tstream_push(&t, big, n, emit_count, &cnt), 1);
	ck_assert_uint_eq(cnt.len[0], n - 1);
	ck_assert_uint_eq(cnt.len[1], 0);
	tstream_free(&t);
	free(big);
}
END_TEST

START_TEST(test_after_stop)
{
	static const char *const stop[] = { "x<" };
	struct tstream t;
	struct out o;

	/* the flush completes a stop: "x" held as its start, "<" as a tag's */
	ck_assert_int_eq(tstream_init(&t, "<think>", "</think>", false, stop,
	    1, 1), 0);
	out_init(&o);
	ck_assert_int_eq(tstream_push(&t, "ax<", 3, emit, &o), 0);
	ck_text(&o, 0, "a");
	ck_assert_int_eq(tstream_flush(&t, emit, &o), 1);
	ck_text(&o, 0, "a");
	/* nothing more once stopped */
	ck_assert_int_eq(tstream_push(&t, "more", 4, emit, &o), 1);
	ck_assert_int_eq(tstream_flush(&t, emit, &o), 0);
	ck_text(&o, 0, "a");
	ck_assert_uint_eq(o.calls, 1);
	tstream_free(&t);

	/* empty stop strings are ignored; an empty push is nothing */
	{
		static const char *const empty[] = { "", "b" };

		ck_assert_int_eq(tstream_init(&t, NULL, NULL, false, empty, 2,
		    1), 0);
		out_init(&o);
		ck_assert_int_eq(tstream_push(&t, "", 0, emit, &o), 0);
		ck_assert_int_eq(tstream_push(&t, "aab", 3, emit, &o), 1);
		ck_text(&o, 0, "aa");
		tstream_free(&t);
	}
}
END_TEST

/* ---- errors ---------------------------------------------------------- */

START_TEST(test_bad_args)
{
	static const char *const bad[] = { "a", NULL };
	struct tstream t;

	ck_assert_int_eq(tstream_init(&t, NULL, NULL, false, NULL, 2, 1),
	    -EINVAL);
	tstream_free(&t);
	ck_assert_int_eq(tstream_init(&t, NULL, NULL, false, bad, 2, 1),
	    -EINVAL);
	tstream_free(&t);
	tstream_free(NULL);
	/* an open tag without a close tag: no thinking channel */
	ck_assert_int_eq(tstream_init(&t, "<think>", NULL, true, NULL, 0, 1),
	    0);
	ck_assert(!tstream_thinking(&t));
	tstream_free(&t);
}
END_TEST

static Suite *
textstream_suite(void)
{
	Suite *s = suite_create("textstream");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_test(tc, test_plain);
	tcase_add_test(tc, test_thinking);
	tcase_add_test(tc, test_hold_back);
	tcase_add_test(tc, test_stop);
	tcase_add_test(tc, test_random);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_long_piece);
	tcase_add_test(tc, test_after_stop);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, test_bad_args);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(textstream_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
