/*
 * meta.h - what list, show and render read from a GGUF's metadata:
 * the architecture, a quantization label, the parameter count, the
 * license, every key for show (arrays summarised), the chat template
 * and the BOS/EOS texts. Works on any struct gguf (a model's, or one
 * opened for its header only); never fails on odd metadata: values that
 * cannot travel as they are (bad UTF-8, control characters in a label,
 * non-finite floats) are cleaned up.
 */
#ifndef HEARTH_META_H
#define HEARTH_META_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "proto.h"

#define META_LABEL_MAX	(PROTO_MAX_LABEL + 1)	/* label bytes with NUL */

/* What a list reply says about one model file. */
struct meta_info {
	char		 arch[META_LABEL_MAX];	/* general.architecture or "" */
	char		 quant[META_LABEL_MAX];	/* "Q4_K_M", "F32"... or "" */
	uint64_t	 params;		/* elements of all tensors */
	char		 license[META_LABEL_MAX]; /* general.license or "" */
};

void meta_info(const struct gguf *g, struct meta_info *out);

/*
 * llama.cpp's file type (general.file_type) as a label: "F32",
 * "Q4_K_M", ...; NULL when unknown.
 */
const char *meta_ftype_name(uint32_t ftype);

/* The metadata of a show reply, with the strings it points to. */
struct meta_show {
	struct proto_meta *meta;	/* [n_meta], file order */
	uint32_t	 n_meta;
	char		**strs;		/* [n_strs] cleaned copies to free */
	size_t		 n_strs;
};

/*
 * Every key of g (up to l->max_items) with its value; strings longer
 * than l->max_text are cut at a character boundary. 0 or -ENOMEM.
 */
int  meta_show(const struct gguf *g, const struct proto_limits *l,
	    struct meta_show *out);
void meta_show_free(struct meta_show *s);	/* NULL ok */

/*
 * tokenizer.chat_template: 0 with the text, -ENOENT when absent or not
 * a string.
 */
int  meta_chat_template(const struct gguf *g, const char **text,
	    size_t *len);

/*
 * What rendering a chat needs from a model's metadata: its chat
 * template and the texts of its BOS and EOS tokens. A view points into
 * a struct gguf (valid while it is open); a copy owns its text (buf).
 */
struct meta_render {
	const char	*tmpl;		/* tokenizer.chat_template or NULL */
	size_t		 tmpl_len;	/* bytes of tmpl */
	const char	*bos;		/* BOS text (C string) or NULL */
	const char	*eos;		/* EOS text (C string) or NULL */
	char		*buf;		/* copy: the three texts; view: NULL */
};

/*
 * The text of the special token whose id is at key (e.g.
 * "tokenizer.ggml.bos_token_id") as a C string of at most
 * TMPL_MAX_TOKEN bytes, or NULL.
 */
const char *meta_token_text(const struct gguf *g, const char *key);
void meta_render_view(const struct gguf *g, struct meta_render *out);
/* An owned copy of a view: 0 or -ENOMEM. */
int  meta_render_copy(const struct meta_render *in, struct meta_render *out);
void meta_render_free(struct meta_render *r);	/* NULL ok */
/* Bytes a meta_show and a meta_render hold (for cache accounting). */
size_t meta_show_bytes(const struct meta_show *s);

/*
 * Copy s (len bytes) into dst (size > 0 bytes, NUL-terminated) as a
 * protocol label: whole UTF-8 characters only, '?' for invalid bytes
 * and control characters, cut to fit.
 */
void meta_label(char *dst, size_t size, const char *s, size_t len);

#endif /* HEARTH_META_H */
