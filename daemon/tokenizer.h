/*
 * tokenizer.h - text <-> token ids for GGUF vocabularies.
 *
 * Two models, chosen by tokenizer.ggml.model:
 *   "llama"  SentencePiece-style: scores, "\xe2\x96\x81" space marker,
 *            byte fallback tokens <0xXX>;
 *   "gpt2"   byte-level BPE with merges and a pre-tokenizer split chosen
 *            by tokenizer.ggml.pre (PCRE2 with UTF+UCP, JIT).
 * Special tokens: user-defined tokens (type 4) are matched in raw text
 * always, control tokens (type 3) only when parse_special is set.
 * The token ids are llama.cpp's, byte for byte; tokenizer.c lists the
 * few places where hearth decides differently (bad vocabularies, text
 * that is not UTF-8, decoding without clean-up of spaces).
 */
#ifndef HEARTH_TOKENIZER_H
#define HEARTH_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

/* tokenizer.ggml.token_type values */
enum tok_attr {
	TOK_ATTR_UNDEFINED    = 0,
	TOK_ATTR_NORMAL       = 1,
	TOK_ATTR_UNKNOWN      = 2,
	TOK_ATTR_CONTROL      = 3,
	TOK_ATTR_USER_DEFINED = 4,
	TOK_ATTR_UNUSED       = 5,
	TOK_ATTR_BYTE         = 6,
};

enum tok_kind {
	TOK_KIND_SPM = 1,	/* "llama" */
	TOK_KIND_BPE = 2,	/* "gpt2" */
};

struct tok;

/* Build a tokenizer from a GGUF's tokenizer.ggml.* metadata (a vocab-only
 * file is enough). *out untouched on failure. */
int  tok_new(const struct gguf *g, struct tok **out, struct eng_err *err);
void tok_free(struct tok *t);	/* accepts NULL */

enum tok_kind tok_kind(const struct tok *t);
int32_t tok_n_vocab(const struct tok *t);
int32_t tok_bos(const struct tok *t);	/* -1 when none */
int32_t tok_eos(const struct tok *t);	/* -1 when none */
bool    tok_add_bos(const struct tok *t);	/* tokenizer.ggml.add_bos_token */
bool    tok_add_eos(const struct tok *t);
/* True for tokens that end generation (eos, eot, eom, ...). */
bool    tok_is_eog(const struct tok *t, int32_t id);
enum tok_attr tok_attr(const struct tok *t, int32_t id);	/* UNDEFINED if out of range */
/* The raw vocabulary string of a token (NULL if out of range). */
const char *tok_text(const struct tok *t, int32_t id, size_t *len);
/* Find a token by its exact vocabulary text; -1 if absent. */
int32_t tok_find(const struct tok *t, const char *text, size_t len);

/*
 * Tokenize len bytes of text. add_special adds BOS/EOS as the metadata
 * asks; parse_special lets control tokens written in the text match.
 * Writes at most max_ids ids and sets *n_ids to the number the text
 * needs; returns 0, -ENOBUFS when max_ids was too small (call again with
 * *n_ids), -EINVAL for text that is not valid UTF-8 where the model
 * requires it (BPE), -E2BIG for text over 256 MiB, -ENOMEM.
 * ids may be NULL when max_ids is 0. Safe to call from several threads.
 */
int tok_encode(const struct tok *t, const char *text, size_t len,
	    bool add_special, bool parse_special, int32_t *ids, size_t max_ids,
	    size_t *n_ids);

/*
 * The bytes a token stands for: byte tokens give their byte, the SPM
 * space marker becomes ' ', byte-level BPE symbols map back to bytes.
 * Control tokens give "" unless special is set (then their text).
 * Returns the number of bytes the piece has (may exceed size, as
 * snprintf), or -EINVAL for an id out of range.
 */
int tok_piece(const struct tok *t, int32_t id, bool special, char *buf,
	    size_t size);

/*
 * Detokenize ids into out (NUL-terminated when size > 0). The leading
 * space SentencePiece adds is removed when remove_space is set: the
 * first token after any leading BOS loses one leading space (only for
 * vocabularies with add_space_prefix). Spaces are not cleaned up as
 * llama.cpp's llama_detokenize does for some BPE models, so decoding
 * what tok_encode made gives the text back byte for byte. Returns the
 * length the text needs (as snprintf), -EINVAL for an id out of range.
 */
int tok_decode(const struct tok *t, const int32_t *ids, size_t n_ids,
	    bool special, bool remove_space, char *out, size_t size);

/*
 * Streaming detokenizer: pieces come out as valid UTF-8 only; a
 * character split across tokens is held back until it is complete, bytes
 * that can never be valid come out as U+FFFD. Like tok_decode with
 * remove_space, the first token after any leading BOS loses the space
 * SentencePiece put in front; to stream a continuation (keep that space)
 * set first to false after tok_stream_init.
 */
struct tok_stream {
	uint8_t	 pend[8];	/* bytes of an incomplete UTF-8 sequence */
	size_t	 n_pend;
	bool	 first;		/* no token seen yet (leading SPM space) */
};

void tok_stream_init(struct tok_stream *s);
/* Append the text of id to out (size bytes); returns bytes written (a
 * NUL follows when there is room), or -ENOBUFS when out is too small,
 * the stream unchanged (needs at most 3 + piece length, three times that
 * when bytes turn into U+FFFD), -EINVAL for an id out of range. */
int  tok_stream_push(const struct tok *t, struct tok_stream *s, int32_t id,
	    bool special, char *out, size_t size);
/* Whatever is pending at the end, invalid bytes as U+FFFD. */
int  tok_stream_flush(struct tok_stream *s, char *out, size_t size);

#endif /* HEARTH_TOKENIZER_H */
