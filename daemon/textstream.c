/*
 * textstream.c - the thinking channel and stop strings over streamed
 * text (see textstream.h).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "textstream.h"

void
tstream_free(struct tstream *t)
{
	if (t == NULL)
		return;
	free(t->stop_len);
	free(t->tbuf);
	free(t->sbuf);
	memset(t, 0, sizeof(*t));
}

int
tstream_init(struct tstream *t, const char *open, const char *close,
    bool think_first, const char *const *stop, uint32_t n_stop, size_t hint)
{
	size_t tag = 0;
	uint32_t i;

	memset(t, 0, sizeof(*t));
	if (n_stop > 0 && stop == NULL)
		return -EINVAL;
	if (close != NULL && close[0] != '\0') {
		t->close = close;
		t->close_len = strlen(close);
		if (open != NULL && open[0] != '\0') {
			t->open = open;
			t->open_len = strlen(open);
		}
		t->thinking = think_first;
		tag = t->open_len > t->close_len ? t->open_len : t->close_len;
	}
	if (n_stop > 0) {
		if ((t->stop_len = calloc(n_stop, sizeof(*t->stop_len))) ==
		    NULL)
			return -ENOMEM;
		for (i = 0; i < n_stop; i++) {
			if (stop[i] == NULL)
				return -EINVAL;
			t->stop_len[i] = strlen(stop[i]);
			if (t->stop_len[i] > t->max_stop)
				t->max_stop = t->stop_len[i];
		}
		t->stop = stop;
		t->n_stop = n_stop;
	}
	if (hint > 1u << 20)
		hint = 1u << 20;
	t->t_cap = tag + hint + 16;
	t->s_cap = t->max_stop + tag + hint + 16;
	if ((t->tbuf = malloc(t->t_cap)) == NULL ||
	    (t->sbuf = malloc(t->s_cap)) == NULL)
		return -ENOMEM;
	return 0;
}

bool
tstream_thinking(const struct tstream *t)
{
	return t->thinking;
}

/* Grow *buf to hold need bytes, keeping its content. */
static int
tstream_grow(char **buf, size_t *cap, size_t need)
{
	size_t n = *cap;
	char *p;

	if (need <= n)
		return 0;
	while (n < need)
		n = n < 64 ? 64 : n * 2;
	if ((p = realloc(*buf, n)) == NULL)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

/*
 * Length of the longest suffix of s[0..n) that is a proper prefix of one
 * of the needles (n_needles of them, lengths in lens).
 */
static size_t
tstream_partial(const char *s, size_t n, const char *const *needles,
    const size_t *lens, uint32_t n_needles, size_t max_len)
{
	size_t i, k, from;
	uint32_t j;

	if (max_len < 2 || n == 0)
		return 0;
	from = n > max_len - 1 ? n - (max_len - 1) : 0;
	for (i = from; i < n; i++) {
		k = n - i;
		for (j = 0; j < n_needles; j++)
			if (k < lens[j] && memcmp(s + i, needles[j], k) == 0)
				return k;
	}
	return 0;
}

/* Stop stage: answer text in, answer text out. 1 when stopped. */
static int
tstream_stop_push(struct tstream *t, const char *s, size_t len,
    tstream_emit_fn emit, void *arg)
{
	const char *p;
	size_t n, best, end, e, h;
	uint32_t i;

	if (t->stopped)
		return 1;
	if (t->n_stop == 0) {
		if (len > 0)
			emit(arg, false, s, len);
		return 0;
	}
	/* the caller made room: s_cap >= s_held + len */
	memcpy(t->sbuf + t->s_held, s, len);
	n = t->s_held + len;
	/*
	 * The match that completes first (the earliest end; at equal ends
	 * the longer), as when the text comes one byte at a time: the cut
	 * does not depend on how the text was pieced.
	 */
	best = n;
	end = SIZE_MAX;
	for (i = 0; i < t->n_stop; i++) {
		if (t->stop_len[i] == 0 || t->stop_len[i] > n)
			continue;
		p = memmem(t->sbuf, n, t->stop[i], t->stop_len[i]);
		if (p == NULL)
			continue;
		e = (size_t)(p - t->sbuf) + t->stop_len[i];
		if (e < end || (e == end && (size_t)(p - t->sbuf) < best)) {
			end = e;
			best = (size_t)(p - t->sbuf);
		}
	}
	if (end != SIZE_MAX) {
		if (best > 0)
			emit(arg, false, t->sbuf, best);
		t->s_held = 0;
		t->stopped = true;
		return 1;
	}
	h = tstream_partial(t->sbuf, n, t->stop, t->stop_len, t->n_stop,
	    t->max_stop);
	if (n - h > 0)
		emit(arg, false, t->sbuf, n - h);
	memmove(t->sbuf, t->sbuf + n - h, h);
	t->s_held = h;
	return 0;
}

/* Let go of the held answer text (it cannot complete a stop any more). */
static void
tstream_stop_release(struct tstream *t, tstream_emit_fn emit, void *arg)
{
	if (t->s_held > 0 && !t->stopped)
		emit(arg, false, t->sbuf, t->s_held);
	t->s_held = 0;
}

/* Text of one channel out of the thinking stage. 1 when stopped. */
static int
tstream_out(struct tstream *t, bool thinking, const char *s, size_t len,
    tstream_emit_fn emit, void *arg)
{
	if (thinking) {
		if (len > 0)
			emit(arg, true, s, len);
		return 0;
	}
	return tstream_stop_push(t, s, len, emit, arg);
}

int
tstream_push(struct tstream *t, const char *s, size_t len,
    tstream_emit_fn emit, void *arg)
{
	const char *tag, *q;
	size_t n, pos, tag_len, h;
	int r;

	if (t->stopped)
		return 1;
	if (len == 0)
		return 0;
	/* all room first, so nothing fails after text went out */
	if (tstream_grow(&t->tbuf, &t->t_cap, t->t_held + len) < 0 ||
	    tstream_grow(&t->sbuf, &t->s_cap, t->s_held + t->t_held + len) < 0)
		return -ENOMEM;
	if (t->close == NULL)
		return tstream_stop_push(t, s, len, emit, arg);

	memcpy(t->tbuf + t->t_held, s, len);
	n = t->t_held + len;
	t->t_held = 0;
	pos = 0;
	for (;;) {
		tag = t->thinking ? t->close : t->open;
		tag_len = t->thinking ? t->close_len : t->open_len;
		if (tag == NULL)	/* answer, and no open tag to look for */
			return tstream_out(t, false, t->tbuf + pos, n - pos,
			    emit, arg);
		q = memmem(t->tbuf + pos, n - pos, tag, tag_len);
		if (q == NULL)
			break;
		r = tstream_out(t, t->thinking, t->tbuf + pos,
		    (size_t)(q - (t->tbuf + pos)), emit, arg);
		if (r != 0)
			return r;
		if (!t->thinking)
			tstream_stop_release(t, emit, arg);
		t->thinking = !t->thinking;
		pos = (size_t)(q - t->tbuf) + tag_len;
	}
	h = tstream_partial(t->tbuf + pos, n - pos, &tag, &tag_len, 1,
	    tag_len);
	r = tstream_out(t, t->thinking, t->tbuf + pos, n - pos - h, emit, arg);
	if (r != 0)
		return r;
	memmove(t->tbuf, t->tbuf + n - h, h);
	t->t_held = h;
	return 0;
}

int
tstream_flush(struct tstream *t, tstream_emit_fn emit, void *arg)
{
	int r = 0;

	if (t->stopped)
		return 0;
	if (t->t_held > 0) {
		/* room was made when these bytes came in */
		r = tstream_out(t, t->thinking, t->tbuf, t->t_held, emit, arg);
		t->t_held = 0;
		if (r != 0)
			return r;
	}
	tstream_stop_release(t, emit, arg);
	return 0;
}
