/*
 * textstream.h - split generated text into the thinking and answer
 * channels and cut it at stop strings, as it streams.
 *
 * Text goes in as it is decoded (valid UTF-8 pieces of any size, tags
 * and stop strings possibly split across pieces) and comes out through
 * a callback, each run of bytes marked thinking or not. Two stages:
 *
 *   1. the thinking split: with a close tag set, text between the open
 *      tag and the close tag is thinking (or from the start when
 *      think_first); the tags themselves are not passed on; bytes at
 *      the end that could start the tag looked for are held back;
 *   2. the stop strings, on the answer channel only: the text before
 *      the first stop string to complete (the earliest end; at equal
 *      ends the one starting first) is passed on and the rest is
 *      dropped (the stream is then stopped); bytes at the end that
 *      could start a stop string are held back until known not to.
 *      The result does not depend on how the text was pieced.
 *
 * Tags and stop strings are valid UTF-8, so every cut falls between
 * characters and the output stays valid UTF-8. A held answer is let go
 * before thinking text starts, so the output keeps the input's order.
 * Pushing allocates only to grow the work buffers when a piece is
 * longer than any before.
 */
#ifndef HEARTH_TEXTSTREAM_H
#define HEARTH_TEXTSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Receives len > 0 bytes of one channel (the bytes are not kept). */
typedef void (*tstream_emit_fn)(void *arg, bool thinking, const char *s,
    size_t len);

struct tstream {
	const char	 *open;		/* open tag or NULL (never opens) */
	size_t		  open_len;
	const char	 *close;	/* close tag or NULL: no thinking */
	size_t		  close_len;
	bool		  thinking;	/* inside a think block now */
	const char *const *stop;	/* [n_stop] stop strings (borrowed) */
	size_t		 *stop_len;	/* [n_stop] their lengths */
	uint32_t	  n_stop;
	size_t		  max_stop;	/* length of the longest */
	char		 *tbuf;		/* [t_cap] thinking stage: t_held held
					 * bytes, then the new piece */
	size_t		  t_held;
	size_t		  t_cap;
	char		 *sbuf;		/* [s_cap] stop stage: s_held held
					 * bytes, then the new text */
	size_t		  s_held;
	size_t		  s_cap;
	bool		  stopped;	/* a stop string matched: no more */
};

/*
 * Set up t. open/close: the think tags (close NULL: one answer channel;
 * open NULL: only think_first can start thinking); stop: n_stop strings
 * (empty ones ignored), borrowed until tstream_free. hint: the longest
 * piece expected, to size the buffers. 0, -EINVAL or -ENOMEM (t is then
 * safe to tstream_free).
 */
int  tstream_init(struct tstream *t, const char *open, const char *close,
	    bool think_first, const char *const *stop, uint32_t n_stop,
	    size_t hint);
void tstream_free(struct tstream *t);	/* NULL ok; t can be reused */

/*
 * Push len bytes of text. Returns 1 when a stop string matched (the
 * text before it has been emitted, the rest of the stream is dropped
 * and later pushes do nothing), 0 otherwise, -ENOMEM (nothing emitted,
 * state unchanged).
 */
int  tstream_push(struct tstream *t, const char *s, size_t len,
	    tstream_emit_fn emit, void *arg);
/*
 * The end of the text: let go of everything held back (a partial tag
 * goes to its channel). Returns 1 when that completed a stop string,
 * else 0.
 */
int  tstream_flush(struct tstream *t, tstream_emit_fn emit, void *arg);

/* The channel text is in now. */
bool tstream_thinking(const struct tstream *t);

#endif /* HEARTH_TEXTSTREAM_H */
