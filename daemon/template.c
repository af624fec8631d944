/*
 * template.c - chat templates rendered natively (see template.h).
 *
 * Detection normalises the Jinja text once and looks for the exact
 * expressions each family's rendering depends on. Rendering runs each
 * family's logic twice over the same input: a counting pass that also
 * finds refusals, then a writing pass into a buffer of the exact size.
 * The string operations the templates use (Python's str.strip() for
 * Jinja's trim, strip('\n'), split, json.dumps for tojson) are
 * reproduced on validated UTF-8.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

/* ------------------------------------------------------------------ */
/* String views and the output buffer                                  */

struct sv {
	const char	*p;	/* bytes, not NUL-terminated */
	size_t		 n;	/* length */
};

static struct sv
sv_make(const char *p, size_t n)
{
	struct sv v = { p == NULL ? "" : p, n };

	return v;
}

static struct sv
sv_cstr(const char *s)
{
	return sv_make(s, s == NULL ? 0 : strlen(s));
}

static bool
sv_eq(struct sv a, const char *s)
{
	size_t n = strlen(s);

	return a.n == n && memcmp(a.p, s, n) == 0;
}

/* First occurrence of needle in v, or NULL. */
static const char *
sv_find(struct sv v, const char *needle)
{
	return memmem(v.p, v.n, needle, strlen(needle));
}

/* Last occurrence of needle in v, or NULL. */
static const char *
sv_rfind(struct sv v, const char *needle)
{
	size_t k = strlen(needle);
	const char *last = NULL, *p = v.p, *end = v.p + v.n, *q;

	while ((q = memmem(p, (size_t)(end - p), needle, k)) != NULL) {
		last = q;
		p = q + 1;
	}
	return last;
}

static bool
sv_starts(struct sv v, const char *s)
{
	size_t n = strlen(s);

	return v.n >= n && memcmp(v.p, s, n) == 0;
}

static bool
sv_ends(struct sv v, const char *s)
{
	size_t n = strlen(s);

	return v.n >= n && memcmp(v.p + v.n - n, s, n) == 0;
}

/* Python's str.isspace() for one code point. */
static bool
py_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) ||
	    c == 0x85 || c == 0xa0 || c == 0x1680 ||
	    (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
	    c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decode one code point of valid UTF-8 at s (n > 0); returns its length. */
static size_t
u8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	if (s[0] < 0x80 || n < 2) {
		*cp = s[0];
		return 1;
	}
	if (s[0] < 0xe0) {
		*cp = (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
		return 2;
	}
	if (s[0] < 0xf0 && n >= 3) {
		*cp = (uint32_t)(s[0] & 0x0f) << 12 |
		    (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
		return 3;
	}
	if (n >= 4) {
		*cp = (uint32_t)(s[0] & 0x07) << 18 |
		    (uint32_t)(s[1] & 0x3f) << 12 |
		    (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
		return 4;
	}
	*cp = s[0];
	return 1;
}

/* Strict UTF-8 check: no overlongs, surrogates or values past U+10FFFF. */
static bool
u8_valid(const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t k;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else
			return false;
		if (n - i - 1 < k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/* Python's str.rstrip() on valid UTF-8. */
static struct sv
sv_rtrim(struct sv v)
{
	const unsigned char *s = (const unsigned char *)v.p;
	uint32_t cp;

	while (v.n > 0) {
		size_t st = v.n - 1;

		while (st > 0 && (s[st] & 0xc0) == 0x80)
			st--;
		u8_decode(s + st, v.n - st, &cp);
		if (!py_space(cp))
			break;
		v.n = st;
	}
	return v;
}

/* Python's str.strip() (Jinja's trim) on valid UTF-8. */
static struct sv
sv_trim(struct sv v)
{
	const unsigned char *s = (const unsigned char *)v.p;
	size_t a = 0;
	uint32_t cp;

	while (a < v.n) {
		size_t k = u8_decode(s + a, v.n - a, &cp);

		if (!py_space(cp))
			break;
		a += k;
	}
	return sv_rtrim(sv_make(v.p + a, v.n - a));
}

static struct sv
sv_lstrip_nl(struct sv v)
{
	while (v.n > 0 && v.p[0] == '\n') {
		v.p++;
		v.n--;
	}
	return v;
}

static struct sv
sv_rstrip_nl(struct sv v)
{
	while (v.n > 0 && v.p[v.n - 1] == '\n')
		v.n--;
	return v;
}

/* Output: a counting pass (p == NULL) then a writing pass. */
struct obuf {
	char	*p;	/* destination of len bytes, NULL when counting */
	size_t	 len;	/* bytes produced so far */
};

static void
ob_put(struct obuf *b, const char *s, size_t n)
{
	if (b->p != NULL && n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void
ob_str(struct obuf *b, const char *s)
{
	ob_put(b, s, strlen(s));
}

static void
ob_sv(struct obuf *b, struct sv v)
{
	ob_put(b, v.p, v.n);
}

/* Python's json.dumps(s, ensure_ascii=False) of a string. */
static void
ob_json(struct obuf *b, struct sv v)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run = 0;

	ob_put(b, "\"", 1);
	for (i = 0; i < v.n; i++) {
		unsigned char c = (unsigned char)v.p[i];
		char esc[6];
		size_t k = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		ob_put(b, v.p + run, i - run);
		run = i + 1;
		esc[0] = '\\';
		switch (c) {
		case '"':	esc[1] = '"'; break;
		case '\\':	esc[1] = '\\'; break;
		case '\n':	esc[1] = 'n'; break;
		case '\r':	esc[1] = 'r'; break;
		case '\t':	esc[1] = 't'; break;
		case '\b':	esc[1] = 'b'; break;
		case '\f':	esc[1] = 'f'; break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			k = 6;
			break;
		}
		ob_put(b, esc, k);
	}
	ob_put(b, v.p + run, v.n - run);
	ob_put(b, "\"", 1);
}

/* ------------------------------------------------------------------ */
/* Roles and families                                                  */

enum role {
	ROLE_SYSTEM,
	ROLE_USER,
	ROLE_ASSISTANT,
	ROLE_TOOL,
	ROLE_IPYTHON,
	ROLE_OTHER
};

#define RB(r)		(1u << (r))
#define ROLES_BASIC	(RB(ROLE_SYSTEM) | RB(ROLE_USER) | RB(ROLE_ASSISTANT))

static const char *const role_names[] = {
	[ROLE_SYSTEM] = "system",
	[ROLE_USER] = "user",
	[ROLE_ASSISTANT] = "assistant",
	[ROLE_TOOL] = "tool",
	[ROLE_IPYTHON] = "ipython",
};

static const struct {
	const char	*name;	/* canonical family name */
	unsigned	 roles;	/* RB() mask of accepted roles */
} kinds[TMPL_KIND_COUNT] = {
	[TMPL_KIND_CHATML] = { "chatml", ROLES_BASIC | RB(ROLE_TOOL) },
	[TMPL_KIND_QWEN3] = { "qwen3", ROLES_BASIC | RB(ROLE_TOOL) },
	[TMPL_KIND_LLAMA2] = { "llama2", ROLES_BASIC },
	[TMPL_KIND_LLAMA3] = { "llama3", ROLES_BASIC },
	[TMPL_KIND_LLAMA31] = { "llama3.1",
	    ROLES_BASIC | RB(ROLE_TOOL) | RB(ROLE_IPYTHON) },
	[TMPL_KIND_DEEPSEEK_R1] = { "deepseek-r1",
	    ROLES_BASIC | RB(ROLE_TOOL) },
	[TMPL_KIND_MISTRAL] = { "mistral", ROLES_BASIC | RB(ROLE_TOOL) },
	[TMPL_KIND_PHI3] = { "phi3", ROLES_BASIC },
	[TMPL_KIND_GEMMA] = { "gemma", ROLES_BASIC },
};

static enum role
role_of(const struct tmpl_msg *m)
{
	struct sv r = sv_make(m->role, m->role_len);

	for (size_t i = 0; i < ROLE_OTHER; i++)
		if (sv_eq(r, role_names[i]))
			return (enum role)i;
	return ROLE_OTHER;
}

static struct sv
content_of(const struct tmpl_msg *m)
{
	return sv_make(m->content, m->content_len);
}

/* Resolved options. */
struct ropts {
	struct sv	 bos;	/* bos_token */
	struct sv	 eos;	/* eos_token */
	struct sv	 date;	/* Today Date text (llama3.1) */
	bool		 gen;	/* add_generation_prompt */
	bool		 think;	/* enable_thinking */
};

#define MSG_ALTERNATE \
	"Conversation roles must alternate user/assistant/user/assistant/..."

/* ------------------------------------------------------------------ */
/* Renderers: one per family, each a transcription of its template.    */

static int
render_chatml(const struct tmpl *t, const struct ropts *o,
    const struct tmpl_msg *m, size_t n, struct obuf *b, struct eng_err *err)
{
	(void)err;
	if (t->bos)
		ob_sv(b, o->bos);
	if (t->has_default_system && role_of(&m[0]) != ROLE_SYSTEM) {
		ob_str(b, "<|im_start|>system\n");
		ob_str(b, t->default_system);
		ob_str(b, "<|im_end|>\n");
	}
	for (size_t i = 0; i < n; i++) {
		if (t->tool_response && role_of(&m[i]) == ROLE_TOOL) {
			if (i == 0 || role_of(&m[i - 1]) != ROLE_TOOL)
				ob_str(b, "<|im_start|>user");
			ob_str(b, "\n<tool_response>\n");
			ob_sv(b, content_of(&m[i]));
			ob_str(b, "\n</tool_response>");
			if (i + 1 == n || role_of(&m[i + 1]) != ROLE_TOOL)
				ob_str(b, "<|im_end|>\n");
			continue;
		}
		ob_str(b, "<|im_start|>");
		ob_put(b, m[i].role, m[i].role_len);
		ob_str(b, "\n");
		ob_sv(b, content_of(&m[i]));
		ob_str(b, "<|im_end|>\n");
	}
	if (o->gen)
		ob_str(b, "<|im_start|>assistant\n");
	return 0;
}

static int
render_qwen3(const struct tmpl *t, const struct ropts *o,
    const struct tmpl_msg *m, size_t n, struct obuf *b, struct eng_err *err)
{
	size_t last_query = n - 1;

	(void)t;
	(void)err;
	if (role_of(&m[0]) == ROLE_SYSTEM) {
		ob_str(b, "<|im_start|>system\n");
		ob_sv(b, content_of(&m[0]));
		ob_str(b, "<|im_end|>\n");
	}
	/* The last user message that is not a wrapped tool response. */
	for (size_t k = n; k-- > 0;) {
		struct sv c = content_of(&m[k]);

		if (role_of(&m[k]) == ROLE_USER &&
		    !(sv_starts(c, "<tool_response>") &&
		    sv_ends(c, "</tool_response>"))) {
			last_query = k;
			break;
		}
	}
	for (size_t i = 0; i < n; i++) {
		enum role r = role_of(&m[i]);
		struct sv c = content_of(&m[i]);

		if (r == ROLE_USER || (r == ROLE_SYSTEM && i > 0)) {
			ob_str(b, "<|im_start|>");
			ob_put(b, m[i].role, m[i].role_len);
			ob_str(b, "\n");
			ob_sv(b, c);
			ob_str(b, "<|im_end|>\n");
		} else if (r == ROLE_ASSISTANT) {
			struct sv content = c, reason = sv_make("", 0);
			const char *close = sv_find(c, "</think>");

			if (close != NULL) {
				const char *last = sv_rfind(c, "</think>");
				struct sv before, open;

				content = sv_lstrip_nl(sv_make(last + 8,
				    (size_t)(c.p + c.n - last - 8)));
				before = sv_rstrip_nl(sv_make(c.p,
				    (size_t)(close - c.p)));
				open = before;
				if (sv_rfind(before, "<think>") != NULL) {
					const char *q = sv_rfind(before,
					    "<think>") + 7;

					open = sv_make(q,
					    (size_t)(before.p + before.n - q));
				}
				reason = sv_lstrip_nl(open);
			}
			ob_str(b, "<|im_start|>assistant\n");
			if (i > last_query && (i + 1 == n || reason.n > 0)) {
				ob_str(b, "<think>\n");
				ob_sv(b, sv_rstrip_nl(sv_lstrip_nl(reason)));
				ob_str(b, "\n</think>\n\n");
				ob_sv(b, sv_lstrip_nl(content));
			} else
				ob_sv(b, content);
			ob_str(b, "<|im_end|>\n");
		} else if (r == ROLE_TOOL) {
			if (i == 0 || role_of(&m[i - 1]) != ROLE_TOOL)
				ob_str(b, "<|im_start|>user");
			ob_str(b, "\n<tool_response>\n");
			ob_sv(b, c);
			ob_str(b, "\n</tool_response>");
			if (i + 1 == n || role_of(&m[i + 1]) != ROLE_TOOL)
				ob_str(b, "<|im_end|>\n");
		}
	}
	if (o->gen) {
		ob_str(b, "<|im_start|>assistant\n");
		if (!o->think)
			ob_str(b, "<think>\n\n</think>\n\n");
	}
	return 0;
}

static int
render_llama2(const struct tmpl *t, const struct ropts *o,
    const struct tmpl_msg *m, size_t n, struct obuf *b, struct eng_err *err)
{
	bool has_sys = role_of(&m[0]) == ROLE_SYSTEM;
	size_t start = has_sys ? 1 : 0;

	(void)t;
	for (size_t i = start; i < n; i++) {
		size_t idx = i - start;
		enum role r = role_of(&m[i]);
		struct sv c = content_of(&m[i]);

		if ((r == ROLE_USER) != (idx % 2 == 0))
			return err_set(err, -EINVAL, "%s", MSG_ALTERNATE);
		if (r == ROLE_USER) {
			ob_sv(b, o->bos);
			ob_str(b, "[INST] ");
		} else if (r == ROLE_ASSISTANT)
			ob_str(b, " ");
		else
			continue;
		/*
		 * content.strip() of "<<SYS>>\n" + system + "\n<</SYS>>\n\n"
		 * + content: the text starts with '<', so only its right
		 * end strips, into the prefix when content is all blank.
		 */
		if (idx == 0 && has_sys) {
			ob_str(b, "<<SYS>>\n");
			ob_sv(b, content_of(&m[0]));
			c = sv_rtrim(c);
			if (c.n > 0) {
				ob_str(b, "\n<</SYS>>\n\n");
				ob_sv(b, c);
			} else
				ob_str(b, "\n<</SYS>>");
		} else
			ob_sv(b, sv_trim(c));
		if (r == ROLE_USER)
			ob_str(b, " [/INST]");
		else {
			ob_str(b, " ");
			ob_sv(b, o->eos);
		}
	}
	return 0;
}

static int
render_llama3(const struct tmpl *t, const struct ropts *o,
    const struct tmpl_msg *m, size_t n, struct obuf *b, struct eng_err *err)
{
	(void)t;
	(void)err;
	for (size_t i = 0; i < n; i++) {
		if (i == 0)
			ob_sv(b, o->bos);
		ob_str(b, "<|start_header_id|>");
		ob_put(b, m[i].role, m[i].role_len);
		ob_str(b, "<|end_header_id|>\n\n");
		ob_sv(b, sv_trim(content_of(&m[i])));
		ob_str(b, "<|eot_id|>");
	}
	if (o->gen)
		ob_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
	return 0;
}

static int
render_llama31(const struct tmpl *t, const struct ropts *o,
    const struct tmpl_msg *m, size_t n, struct obuf *b, struct eng_err *err)
{
	size_t start = 0;

	(void)t;
	(void)err;
	ob_sv(b, o->bos);
	ob_str(b, "<|start_header_id|>system<|end_header_id|>\n\n");
	ob_str(b, "Cutting Knowledge Date: December 2023\n");
	ob_str(b, "Today Date: ");
	ob_sv(b, o->date);
	ob_str(b, "\n\n");
	if (role_of(&m[0]) == ROLE_SYSTEM) {
		ob_sv(b, sv_trim(content_of(&m[0])));
		start = 1;
	}
	ob_str(b, "<|eot_id|>");
	for (size_t i = start; i < n; i++) {
		enum role r = role_of(&m[i]);

		if (r == ROLE_TOOL || r == ROLE_IPYTHON) {
			/* a string "is iterable": the template emits tojson */
			ob_str(b, "<|start_header_id|>ipython"
			    "<|end_header_id|>\n\n");
			ob_json(b, content_of(&m[i]));
		} else {
			ob_str(b, "<|start_header_id|>");
			ob_put(b, m[i].role, m[i].role_len);
			ob_str(b, "<|end_header_id|>\n\n");
			ob_sv(b, sv_trim(content_of(&m[i])));
		}
		ob_str(b, "<|eot_id|>");
	}
	if (o->gen)
		ob_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
	return 0;
}

#define R1_EOS		"<｜end▁of▁sentence｜>"

static int
render_r1(const struct tmpl *t, const struct ropts *o,
    const struct tmpl_msg *m, size_t n, struct obuf *b, struct eng_err *err)
{
	struct sv sys = sv_make("", 0);
	bool is_tool = false, output_first = true;

	(void)err;
	for (size_t i = 0; i < n; i++)
		if (role_of(&m[i]) == ROLE_SYSTEM)
			sys = content_of(&m[i]);
	ob_sv(b, o->bos);
	ob_sv(b, sys);
	for (size_t i = 0; i < n; i++) {
		enum role r = role_of(&m[i]);
		struct sv c = content_of(&m[i]);

		if (r == ROLE_USER) {
			is_tool = false;
			ob_str(b, "<｜User｜>");
			ob_sv(b, c);
		} else if (r == ROLE_ASSISTANT && is_tool) {
			ob_str(b, "<｜tool▁outputs▁end｜>");
			ob_sv(b, c);
			ob_str(b, R1_EOS);
			is_tool = false;
		} else if (r == ROLE_ASSISTANT) {
			const char *q = sv_rfind(c, "</think>");

			if (q != NULL)
				c = sv_make(q + 8, (size_t)(c.p + c.n - q - 8));
			ob_str(b, "<｜Assistant｜>");
			ob_sv(b, c);
			ob_str(b, R1_EOS);
		} else if (r == ROLE_TOOL) {
			is_tool = true;
			if (output_first) {
				ob_str(b, "<｜tool▁outputs▁begin｜>");
				output_first = false;
			} else
				ob_str(b, "\n");
			ob_str(b, "<｜tool▁output▁begin｜>");
			ob_sv(b, c);
			ob_str(b, "<｜tool▁output▁end｜>");
		}
	}
	if (is_tool)
		ob_str(b, "<｜tool▁outputs▁end｜>");
	if (o->gen && !is_tool) {
		ob_str(b, "<｜Assistant｜><think>\n");
		if (t->thinking_switch && !o->think)
			ob_str(b, "</think>");
	}
	return 0;
}

static int
render_mistral(const struct tmpl *t, const struct ropts *o,
    const struct tmpl_msg *m, size_t n, struct obuf *b, struct eng_err *err)
{
	bool has_sys = role_of(&m[0]) == ROLE_SYSTEM;
	size_t start = has_sys ? 1 : 0, idx = 0;

	(void)t;
	for (size_t i = start; i < n; i++) {
		enum role r = role_of(&m[i]);

		if (r == ROLE_TOOL)
			continue;
		if ((r == ROLE_USER) != (idx % 2 == 0))
			return err_set(err, -EINVAL, "After the optional "
			    "system message, conversation roles must "
			    "alternate user/assistant/user/assistant/...");
		idx++;
	}
	ob_sv(b, o->bos);
	for (size_t i = start; i < n; i++) {
		enum role r = role_of(&m[i]);
		struct sv c = content_of(&m[i]);

		if (r == ROLE_USER) {
			ob_str(b, "[INST]");
			if (i + 1 == n && has_sys) {
				ob_sv(b, content_of(&m[0]));
				ob_str(b, "\n\n");
			}
			ob_sv(b, c);
			ob_str(b, "[/INST]");
		} else if (r == ROLE_ASSISTANT) {
			ob_sv(b, c);
			ob_sv(b, o->eos);
		} else if (r == ROLE_TOOL)
			return err_set(err, -EINVAL, "Tool call IDs should be "
			    "alphanumeric strings with length 9!");
		else
			return err_set(err, -EINVAL, "Only user and assistant "
			    "roles are supported, with the exception of an "
			    "initial optional system message!");
	}
	return 0;
}

static int
render_phi3(const struct tmpl *t, const struct ropts *o,
    const struct tmpl_msg *m, size_t n, struct obuf *b, struct eng_err *err)
{
	(void)err;
	if (t->bos)
		ob_sv(b, o->bos);
	for (size_t i = 0; i < n; i++) {
		struct sv c = content_of(&m[i]);

		switch (role_of(&m[i])) {
		case ROLE_SYSTEM:
			if (t->skip_empty_system && c.n == 0)
				continue;
			ob_str(b, "<|system|>\n");
			break;
		case ROLE_USER:
			ob_str(b, "<|user|>\n");
			break;
		case ROLE_ASSISTANT:
			ob_str(b, "<|assistant|>\n");
			break;
		default:
			continue;
		}
		ob_sv(b, c);
		ob_str(b, "<|end|>\n");
	}
	if (o->gen)
		ob_str(b, "<|assistant|>\n");
	else if (t->eos_without_prompt)
		ob_sv(b, o->eos);
	return 0;
}

static int
render_gemma(const struct tmpl *t, const struct ropts *o,
    const struct tmpl_msg *m, size_t n, struct obuf *b, struct eng_err *err)
{
	(void)t;
	ob_sv(b, o->bos);
	if (role_of(&m[0]) == ROLE_SYSTEM)
		return err_set(err, -EINVAL, "System role not supported");
	for (size_t i = 0; i < n; i++) {
		enum role r = role_of(&m[i]);

		if ((r == ROLE_USER) != (i % 2 == 0))
			return err_set(err, -EINVAL, "%s", MSG_ALTERNATE);
		ob_str(b, "<start_of_turn>");
		if (r == ROLE_ASSISTANT)
			ob_str(b, "model");
		else
			ob_put(b, m[i].role, m[i].role_len);
		ob_str(b, "\n");
		ob_sv(b, sv_trim(content_of(&m[i])));
		ob_str(b, "<end_of_turn>\n");
	}
	if (o->gen)
		ob_str(b, "<start_of_turn>model\n");
	return 0;
}

typedef int (*render_fn)(const struct tmpl *, const struct ropts *,
    const struct tmpl_msg *, size_t, struct obuf *, struct eng_err *);

static const render_fn renderers[TMPL_KIND_COUNT] = {
	[TMPL_KIND_CHATML] = render_chatml,
	[TMPL_KIND_QWEN3] = render_qwen3,
	[TMPL_KIND_LLAMA2] = render_llama2,
	[TMPL_KIND_LLAMA3] = render_llama3,
	[TMPL_KIND_LLAMA31] = render_llama31,
	[TMPL_KIND_DEEPSEEK_R1] = render_r1,
	[TMPL_KIND_MISTRAL] = render_mistral,
	[TMPL_KIND_PHI3] = render_phi3,
	[TMPL_KIND_GEMMA] = render_gemma,
};

/* ------------------------------------------------------------------ */
/* Public: options, names, rendering                                   */

void
tmpl_opts_default(struct tmpl_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->add_generation_prompt = true;
	o->enable_thinking = true;
}

const char *
tmpl_kind_name(enum tmpl_kind k)
{
	if ((unsigned)k >= TMPL_KIND_COUNT)
		return "unknown";
	return kinds[k].name;
}

const char *
tmpl_name(const struct tmpl *t)
{
	return t == NULL ? "unknown" : tmpl_kind_name(t->kind);
}

/* A token option: NULL is "", longer than TMPL_MAX_TOKEN is refused. */
static int
opt_text(const char *s, const char *what, struct sv *out,
    struct eng_err *err)
{
	size_t n;

	if (s == NULL) {
		*out = sv_make("", 0);
		return 0;
	}
	n = strnlen(s, TMPL_MAX_TOKEN + 1);
	if (n > TMPL_MAX_TOKEN)
		return err_set(err, -E2BIG, "%s text longer than %u bytes",
		    what, TMPL_MAX_TOKEN);
	if (!u8_valid(s, n))
		return err_set(err, -EINVAL, "%s text is not valid UTF-8",
		    what);
	*out = sv_make(s, n);
	return 0;
}

/* Role name for a message, printable, for error messages. */
static void
role_print(const struct tmpl_msg *m, char *buf, size_t size)
{
	size_t i, n = m->role_len < size - 1 ? m->role_len : size - 1;

	for (i = 0; i < n; i++) {
		char c = m->role[i];

		buf[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
	}
	buf[i] = '\0';
}

static int
check_messages(const struct tmpl *t, const struct tmpl_msg *msgs, size_t n,
    struct eng_err *err)
{
	size_t total = 0;
	char name[TMPL_MAX_ROLE + 1];

	if (n == 0)
		return err_set(err, -EINVAL, "no messages to render");
	if (n > TMPL_MAX_MESSAGES)
		return err_set(err, -E2BIG, "%zu messages, more than %u", n,
		    TMPL_MAX_MESSAGES);
	/* Sizes first, before any content is read. */
	for (size_t i = 0; i < n; i++) {
		if (msgs[i].role == NULL && msgs[i].role_len > 0)
			return err_set(err, -EINVAL, "message %zu: no role", i);
		if (msgs[i].content == NULL && msgs[i].content_len > 0)
			return err_set(err, -EINVAL, "message %zu: no content",
			    i);
		if (msgs[i].role_len > TMPL_MAX_ROLE)
			return err_set(err, -E2BIG, "message %zu: role longer "
			    "than %u bytes", i, TMPL_MAX_ROLE);
		if (msgs[i].content_len > TMPL_MAX_TEXT - total)
			return err_set(err, -E2BIG, "messages longer than %u "
			    "bytes in all", TMPL_MAX_TEXT);
		total += msgs[i].content_len;
	}
	for (size_t i = 0; i < n; i++) {
		enum role r = role_of(&msgs[i]);

		if (r == ROLE_OTHER || !(kinds[t->kind].roles & RB(r))) {
			role_print(&msgs[i], name, sizeof(name));
			return err_set(err, -EINVAL, "message %zu: role \"%s\" "
			    "is not supported by the %s template", i, name,
			    kinds[t->kind].name);
		}
		if (!u8_valid(msgs[i].content, msgs[i].content_len))
			return err_set(err, -EINVAL, "message %zu: content is "
			    "not valid UTF-8", i);
	}
	return 0;
}

int
tmpl_render(const struct tmpl *t, const struct tmpl_opts *o,
    const struct tmpl_msg *msgs, size_t n, char **out, size_t *out_len,
    struct eng_err *err)
{
	struct ropts ro;
	struct obuf b = { NULL, 0 };
	char *buf;
	size_t len;
	int rc;

	if (t == NULL || o == NULL || out == NULL || out_len == NULL ||
	    (msgs == NULL && n > 0))
		return err_set(err, -EINVAL, "tmpl_render: NULL argument");
	if ((unsigned)t->kind >= TMPL_KIND_COUNT)
		return err_set(err, -EINVAL, "unknown template kind %d",
		    (int)t->kind);
	if (memchr(t->default_system, '\0', sizeof(t->default_system)) ==
	    NULL || memchr(t->default_date, '\0', sizeof(t->default_date)) ==
	    NULL)
		return err_set(err, -EINVAL, "template defaults are not "
		    "terminated");
	if ((rc = opt_text(o->bos, "bos", &ro.bos, err)) < 0 ||
	    (rc = opt_text(o->eos, "eos", &ro.eos, err)) < 0 ||
	    (rc = opt_text(o->date, "date", &ro.date, err)) < 0)
		return rc;
	if (!t->date_from_clock || o->date == NULL)
		ro.date = sv_cstr(t->default_date);
	ro.gen = o->add_generation_prompt;
	ro.think = o->enable_thinking;
	if ((rc = check_messages(t, msgs, n, err)) < 0)
		return rc;

	if ((rc = renderers[t->kind](t, &ro, msgs, n, &b, err)) < 0)
		return rc;
	len = b.len;
	if ((buf = malloc(len + 1)) == NULL)
		return err_set(err, -ENOMEM, "out of memory for a %zu byte "
		    "prompt", len);
	b.p = buf;
	b.len = 0;
	rc = renderers[t->kind](t, &ro, msgs, n, &b, err);
	if (rc < 0 || b.len != len) {
		free(buf);
		return rc < 0 ? rc : err_set(err, -EIO, "template render "
		    "is not deterministic");
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	return 0;
}

/* ------------------------------------------------------------------ */
/* BOS and reasoning                                                   */

bool
tmpl_emits_bos(const struct tmpl *t)
{
	if (t == NULL)
		return false;
	switch (t->kind) {
	case TMPL_KIND_CHATML:
	case TMPL_KIND_PHI3:
		return t->bos;
	case TMPL_KIND_QWEN3:
		return false;
	default:
		return (unsigned)t->kind < TMPL_KIND_COUNT;
	}
}

bool
tmpl_has_thinking(const struct tmpl *t)
{
	return t != NULL && (t->kind == TMPL_KIND_QWEN3 ||
	    t->kind == TMPL_KIND_DEEPSEEK_R1);
}

const char *
tmpl_think_open(const struct tmpl *t)
{
	return tmpl_has_thinking(t) ? "<think>" : NULL;
}

const char *
tmpl_think_close(const struct tmpl *t)
{
	return tmpl_has_thinking(t) ? "</think>" : NULL;
}

bool
tmpl_can_disable_thinking(const struct tmpl *t)
{
	return t != NULL && (t->kind == TMPL_KIND_QWEN3 ||
	    (t->kind == TMPL_KIND_DEEPSEEK_R1 && t->thinking_switch));
}

bool
tmpl_starts_in_thinking(const struct tmpl *t, const struct tmpl_opts *o)
{
	if (t == NULL || o == NULL || t->kind != TMPL_KIND_DEEPSEEK_R1 ||
	    !o->add_generation_prompt)
		return false;
	return !(t->thinking_switch && !o->enable_thinking);
}

/* ------------------------------------------------------------------ */
/* Names                                                               */

#define QWEN25_SYSTEM \
	"You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

int
tmpl_from_name(const char *name, struct tmpl *out)
{
	struct tmpl t;

	if (name == NULL || out == NULL)
		return -EINVAL;
	memset(&t, 0, sizeof(t));
	strcpy(t.default_date, "26 Jul 2024");
	if (strcmp(name, "chatml") == 0)
		t.kind = TMPL_KIND_CHATML;
	else if (strcmp(name, "qwen2") == 0) {
		t.kind = TMPL_KIND_CHATML;
		t.has_default_system = true;
		strcpy(t.default_system, "You are a helpful assistant.");
	} else if (strcmp(name, "qwen2.5") == 0) {
		t.kind = TMPL_KIND_CHATML;
		t.has_default_system = true;
		t.tool_response = true;
		strcpy(t.default_system, QWEN25_SYSTEM);
	} else if (strcmp(name, "qwen3") == 0)
		t.kind = TMPL_KIND_QWEN3;
	else if (strcmp(name, "llama2") == 0)
		t.kind = TMPL_KIND_LLAMA2;
	else if (strcmp(name, "llama3") == 0)
		t.kind = TMPL_KIND_LLAMA3;
	else if (strcmp(name, "llama3.1") == 0)
		t.kind = TMPL_KIND_LLAMA31;
	else if (strcmp(name, "llama3.2") == 0) {
		t.kind = TMPL_KIND_LLAMA31;
		t.date_from_clock = true;
	} else if (strcmp(name, "deepseek-r1") == 0)
		t.kind = TMPL_KIND_DEEPSEEK_R1;
	else if (strcmp(name, "mistral") == 0 ||
	    strcmp(name, "mistral-nemo") == 0)
		t.kind = TMPL_KIND_MISTRAL;
	else if (strcmp(name, "phi3") == 0) {
		t.kind = TMPL_KIND_PHI3;
		t.skip_empty_system = true;
		t.eos_without_prompt = true;
	} else if (strcmp(name, "gemma") == 0)
		t.kind = TMPL_KIND_GEMMA;
	else
		return -ENOENT;
	*out = t;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Detection                                                           */

/*
 * Normalised template text: comments dropped; inside {{ }} and {% %}
 * the whitespace-control marks are dropped, whitespace is dropped
 * except one space between two identifier characters, string literals
 * are decoded and written back between single quotes with only \\, \',
 * \n, \r, \t escaped, and attribute access .role/.content becomes
 * ['role']/['content']. Text outside tags is what Jinja renders of it
 * (whitespace control, trim_blocks, lstrip_blocks, the final newline);
 * the known families have none, so any is a variant we do not know.
 */
struct norm {
	char	*p;		/* normalised text, len bytes (cap allocated) */
	size_t	 len;
	size_t	 cap;
	char	*dec;		/* scratch for one decoded literal */
	size_t	 raw;		/* bytes of text outside tags that render */
	int	 nsys;		/* ChatML default system candidates: 0 none,
				 * 1 one (in sys), -1 conflicting or too long */
	char	 sys[TMPL_SYSTEM_MAX];	/* the candidate, NUL-terminated */
};

static bool
is_ident(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_';
}

static int
nm_put(struct norm *nm, const char *s, size_t n)
{
	if (n > nm->cap - nm->len)
		return -ENOMEM;
	memcpy(nm->p + nm->len, s, n);
	nm->len += n;
	return 0;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Append code point cp as UTF-8 to d; returns bytes written. */
static size_t
u8_encode(uint32_t cp, char *d)
{
	if (cp < 0x80) {
		d[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		d[0] = (char)(0xc0 | cp >> 6);
		d[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		d[0] = (char)(0xe0 | cp >> 12);
		d[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		d[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	d[0] = (char)(0xf0 | cp >> 18);
	d[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	d[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	d[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A literal that opens "<|im_start|>system\n" with text and <|im_end|>. */
static void
nm_chatml_default(struct norm *nm, const char *s, size_t n)
{
	static const char pre[] = "<|im_start|>system\n";
	struct sv v = sv_make(s, n), text;
	const char *end;

	if (!sv_starts(v, pre))
		return;
	v = sv_make(s + sizeof(pre) - 1, n - (sizeof(pre) - 1));
	if ((end = sv_find(v, "<|im_end|>")) == NULL || end == v.p)
		return;
	text = sv_make(v.p, (size_t)(end - v.p));
	if (text.n >= sizeof(nm->sys) || memchr(text.p, '\0', text.n) != NULL) {
		nm->nsys = -1;
		return;
	}
	if (nm->nsys == 0) {
		memcpy(nm->sys, text.p, text.n);
		nm->sys[text.n] = '\0';
		nm->nsys = 1;
	} else if (nm->nsys == 1 && !sv_eq(text, nm->sys))
		nm->nsys = -1;
}

/*
 * A string literal at s[*i] (the quote): decode it (the escapes of
 * Jinja's Python-style strings that templates use), write it back in
 * canonical form. -ENOENT when unterminated.
 */
static int
nm_literal(struct norm *nm, const char *s, size_t len, size_t *i)
{
	char q = s[*i], *d = nm->dec;
	size_t j = *i + 1, dn = 0;
	int rc;

	for (;;) {
		if (j >= len)
			return -ENOENT;
		if (s[j] == q)
			break;
		if (s[j] == '\\' && j + 1 < len) {
			char c = s[j + 1];
			int h[8], ok = 1, nd = c == 'x' ? 2 : c == 'u' ? 4 : 0;

			j += 2;
			switch (c) {
			case 'n':	d[dn++] = '\n'; continue;
			case 't':	d[dn++] = '\t'; continue;
			case 'r':	d[dn++] = '\r'; continue;
			case '\\':	d[dn++] = '\\'; continue;
			case '\'':	d[dn++] = '\''; continue;
			case '"':	d[dn++] = '"'; continue;
			case 'x':
			case 'u':
				if (len - j < (size_t)nd)
					ok = 0;
				for (int k = 0; ok && k < nd; k++)
					if ((h[k] = hexval(s[j + k])) < 0)
						ok = 0;
				if (ok) {
					uint32_t cp = 0;

					for (int k = 0; k < nd; k++)
						cp = cp << 4 | (uint32_t)h[k];
					if (cp >= 0xd800 && cp <= 0xdfff)
						return -ENOENT;
					dn += u8_encode(cp, d + dn);
					j += (size_t)nd;
					continue;
				}
				break;
			default:
				break;
			}
			d[dn++] = '\\';
			d[dn++] = c;
			continue;
		}
		d[dn++] = s[j++];
	}
	*i = j + 1;
	nm_chatml_default(nm, d, dn);
	if ((rc = nm_put(nm, "'", 1)) < 0)
		return rc;
	for (size_t k = 0; k < dn; k++) {
		const char *e = NULL;

		switch (d[k]) {
		case '\\':	e = "\\\\"; break;
		case '\'':	e = "\\'"; break;
		case '\n':	e = "\\n"; break;
		case '\r':	e = "\\r"; break;
		case '\t':	e = "\\t"; break;
		}
		rc = e != NULL ? nm_put(nm, e, 2) : nm_put(nm, d + k, 1);
		if (rc < 0)
			return rc;
	}
	return nm_put(nm, "'", 1);
}

static bool
at(const char *s, size_t len, size_t i, const char *w)
{
	size_t n = strlen(w);

	return len - i >= n && memcmp(s + i, w, n) == 0;
}

/* The inside of a tag from s[*i] up to and including its closer. */
static int
nm_tag(struct norm *nm, const char *s, size_t len, size_t *i,
    const char *closer, char *mark)
{
	size_t j = *i;
	bool space = false;
	int rc;

	if (j < len && (s[j] == '-' || s[j] == '+'))
		j++;
	while (j < len) {
		char c = s[j];

		if (at(s, len, j, closer) || ((c == '-' || c == '+') &&
		    at(s, len, j + 1, closer))) {
			*mark = c == '-' || c == '+' ? c : '\0';
			j += c == closer[0] ? 2 : 3;
			*i = j;
			return nm_put(nm, closer, 2);
		}
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			space = true;
			j++;
			continue;
		}
		if (space && nm->len > 0 && is_ident(nm->p[nm->len - 1]) &&
		    is_ident(c) && (rc = nm_put(nm, " ", 1)) < 0)
			return rc;
		space = false;
		if (c == '\'' || c == '"') {
			if ((rc = nm_literal(nm, s, len, &j)) < 0)
				return rc;
			continue;
		}
		if (c == '.' && nm->len > 0 && (is_ident(nm->p[nm->len - 1]) ||
		    nm->p[nm->len - 1] == ']' || nm->p[nm->len - 1] == ')')) {
			static const char *const attrs[] = { "role",
			    "content" };

			for (size_t a = 0; a < 2; a++) {
				size_t k = strlen(attrs[a]);

				if (at(s, len, j + 1, attrs[a]) &&
				    (j + 1 + k >= len ||
				    !is_ident(s[j + 1 + k]))) {
					if ((rc = nm_put(nm, "['", 2)) < 0 ||
					    (rc = nm_put(nm, attrs[a],
					    k)) < 0 ||
					    (rc = nm_put(nm, "']", 2)) < 0)
						return rc;
					j += 1 + k;
					goto next;
				}
			}
		}
		if ((rc = nm_put(nm, &c, 1)) < 0)
			return rc;
		j++;
next:		;
	}
	return -ENOENT;	/* unterminated tag */
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
	    c == '\f' || c == '\v';
}

/*
 * Whitespace around tags as Jinja's lexer handles it with trim_blocks
 * and lstrip_blocks, so that the text between tags is what renders.
 */
static int
normalize(struct norm *nm, const char *s, size_t len)
{
	size_t i = 0, raw_out = 0, raw_src = 0;
	int rc;

	while (i < len) {
		bool var, com;
		char mark, end = '\0';

		if (!at(s, len, i, "{{") && !at(s, len, i, "{%") &&
		    !at(s, len, i, "{#")) {
			if ((rc = nm_put(nm, s + i, 1)) < 0)
				return rc;
			i++;
			continue;
		}
		var = s[i + 1] == '{';
		com = s[i + 1] == '#';
		mark = i + 2 < len ? s[i + 2] : '\0';
		if (mark == '-') {
			while (nm->len > raw_out &&
			    is_blank(nm->p[nm->len - 1]))
				nm->len--;
		} else if (mark != '+' && !var) {
			/* lstrip_blocks: blanks from the line start */
			size_t l = nm->len;

			while (l > raw_out && (nm->p[l - 1] == ' ' ||
			    nm->p[l - 1] == '\t'))
				l--;
			if ((l > raw_out && nm->p[l - 1] == '\n') ||
			    (l == raw_out && (raw_src == 0 ||
			    s[raw_src - 1] == '\n')))
				nm->len = l;
		}
		nm->raw += nm->len - raw_out;
		if (com) {
			const char *e = i + 2 < len ?
			    memmem(s + i + 2, len - i - 2, "#}", 2) : NULL;

			if (e == NULL)
				return -ENOENT;
			if (e > s + i + 2 && (e[-1] == '-' || e[-1] == '+'))
				end = e[-1];
			i = (size_t)(e - s) + 2;
		} else {
			if ((rc = nm_put(nm, s + i, 2)) < 0)
				return rc;
			i += 2;
			if ((rc = nm_tag(nm, s, len, &i, var ? "}}" : "%}",
			    &end)) < 0)
				return rc;
		}
		if (end == '-') {
			while (i < len && is_blank(s[i]))
				i++;
		} else if (end != '+' && !var && i < len && s[i] == '\n')
			i++;	/* trim_blocks */
		raw_out = nm->len;
		raw_src = i;
	}
	/* Jinja drops one newline at the end of the source */
	if (nm->len > raw_out && nm->p[nm->len - 1] == '\n')
		nm->len--;
	nm->raw += nm->len - raw_out;
	return 0;
}

static bool
has(const struct norm *nm, const char *marker)
{
	return memmem(nm->p, nm->len, marker, strlen(marker)) != NULL;
}

static bool
has_all(const struct norm *nm, const char *const *markers)
{
	for (; *markers != NULL; markers++)
		if (!has(nm, *markers))
			return false;
	return true;
}

/* Copy the canonical literal that follows marker (which ends in its
 * opening quote) into buf; false when absent, escaped or too long. */
static bool
literal_after(const struct norm *nm, const char *marker, char *buf,
    size_t size)
{
	const char *p = memmem(nm->p, nm->len, marker, strlen(marker));
	const char *end = nm->p + nm->len, *q;

	if (p == NULL)
		return false;
	p += strlen(marker);
	for (q = p; q < end && *q != '\''; q++)
		if (*q == '\\')
			return false;
	if (q >= end || (size_t)(q - p) >= size)
		return false;
	memcpy(buf, p, (size_t)(q - p));
	buf[q - p] = '\0';
	return true;
}

/*
 * Markers, in normalised form: the expressions and conditions that the
 * rendering of plain text conversations goes through (tool-call
 * branches are not looked at). A template must hold all of its
 * family's markers.
 */
static const char *const m_r1[] = {
	"{{bos_token}}{{ns.system_prompt}}",
	"'<｜tool▁outputs▁end｜>'+message['content']+'<｜end▁of▁sentence｜>'",
	"'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>'+message['content']"
	    "+'<｜tool▁output▁end｜>'",
	"'\\n<｜tool▁output▁begin｜>'+message['content']+'<｜tool▁output▁end｜>'",
	"{%if message['role']=='system'%}"
	    "{%set ns.system_prompt=message['content']%}{%endif%}",
	"{%if message['role']=='user'%}{%set ns.is_tool=false%}"
	    "{{'<｜User｜>'+message['content']}}{%endif%}",
	"{%if'</think>'in content%}{%set content=content.split('</think>')[-1]%}"
	    "{%endif%}{{'<｜Assistant｜>'+content+'<｜end▁of▁sentence｜>'}}",
	"{%if message['role']=='tool'%}{%set ns.is_tool=true%}",
	"{%if ns.is_tool%}{{'<｜tool▁outputs▁end｜>'}}{%endif%}"
	    "{%if add_generation_prompt and not ns.is_tool%}"
	    "{{'<｜Assistant｜><think>\\n'}}",
	NULL
};
static const char *const m_qwen3[] = {
	"{{'<|im_start|>'+message['role']+'\\n'+message['content']"
	    "+'<|im_end|>'+'\\n'}}",
	"{%set content=message['content'].split('</think>')[-1]"
	    ".lstrip('\\n')%}",
	"{%set reasoning_content=message['content'].split('</think>')[0]"
	    ".rstrip('\\n').split('<think>')[-1].lstrip('\\n')%}",
	"{%if loop.index0>ns.last_query_index%}"
	    "{%if loop.last or(not loop.last and reasoning_content)%}",
	"{{'<|im_start|>'+message['role']+'\\n<think>\\n'"
	    "+reasoning_content.strip('\\n')+'\\n</think>\\n\\n'"
	    "+content.lstrip('\\n')}}",
	"{{'\\n<tool_response>\\n'}}",
	"{%if enable_thinking is defined and enable_thinking is false%}"
	    "{{'<think>\\n\\n</think>\\n\\n'}}{%endif%}",
	"{%if messages[0]['role']=='system'%}{{'<|im_start|>system\\n'"
	    "+messages[0]['content']+'<|im_end|>\\n'}}{%endif%}",
	"{%if ns.multi_step_tool and message['role']=='user'and not("
	    "message['content'].startswith('<tool_response>')and "
	    "message['content'].endswith('</tool_response>'))%}",
	"{%if(message['role']=='user')or(message['role']=='system'and not "
	    "loop.first)%}",
	"{%if'</think>'in message['content']%}",
	"{%elif message['role']=='tool'%}{%if loop.first or(messages["
	    "loop.index0-1]['role']!='tool')%}{{'<|im_start|>user'}}{%endif%}",
	"{%if add_generation_prompt%}{{'<|im_start|>assistant\\n'}}",
	"{%elif message['role']=='assistant'%}"
	    "{%set content=message['content']%}",
	NULL
};
static const char *const m_chatml[] = {
	"'<|im_start|>'+message['role']+'\\n'+message['content']+'<|im_end|>'",
	"{%if add_generation_prompt%}{{'<|im_start|>assistant\\n'}}{%endif%}",
	NULL
};
static const char *const m_llama31[] = {
	"{{'<|start_header_id|>system<|end_header_id|>\\n\\n'}}",
	"{{'Cutting Knowledge Date: December 2023\\n'}}",
	"{{'Today Date: '+date_string+'\\n\\n'}}",
	"{{system_message}}{{'<|eot_id|>'}}",
	"{{'<|start_header_id|>'+message['role']+'<|end_header_id|>\\n\\n'"
	    "+message['content']|trim+'<|eot_id|>'}}",
	"{{'<|start_header_id|>ipython<|end_header_id|>\\n\\n'}}",
	"{%if message['content']is mapping or message['content']is iterable%}"
	    "{{message['content']|tojson}}",
	"{%if messages[0]['role']=='system'%}{%set system_message=messages[0]"
	    "['content']|trim%}{%set messages=messages[1:]%}{%else%}"
	    "{%set system_message=''%}{%endif%}",
	"{%if not(message['role']=='ipython'or message['role']=='tool'or"
	    "'tool_calls'in message)%}",
	"{%elif message['role']=='tool'or message['role']=='ipython'%}",
	"{%if add_generation_prompt%}"
	    "{{'<|start_header_id|>assistant<|end_header_id|>\\n\\n'}}{%endif%}",
	NULL
};
static const char *const m_llama3[] = {
	"{%set content='<|start_header_id|>'+message['role']"
	    "+'<|end_header_id|>\\n\\n'+message['content']|trim+'<|eot_id|>'%}",
	"{%if loop.index0==0%}{%set content=bos_token+content%}{%endif%}",
	"{%set loop_messages=messages%}{%for message in loop_messages%}",
	"{%endif%}{{content}}{%endfor%}{%if add_generation_prompt%}"
	    "{{'<|start_header_id|>assistant<|end_header_id|>\\n\\n'}}{%endif%}",
	NULL
};
static const char *const m_llama2[] = {
	"{%if(message['role']=='user')!=(loop.index0%2==0)%}"
	    "{{raise_exception('" MSG_ALTERNATE "')}}",
	"{%if loop.index0==0 and system_message!=false%}",
	"{%set content='<<SYS>>\\n'+system_message+'\\n<</SYS>>\\n\\n'"
	    "+message['content']%}",
	"{%if messages[0]['role']=='system'%}{%set loop_messages=messages[1:]%}"
	    "{%set system_message=messages[0]['content']%}{%else%}"
	    "{%set loop_messages=messages%}{%set system_message=false%}{%endif%}",
	"{%if message['role']=='user'%}"
	    "{{bos_token+'[INST] '+content.strip()+' [/INST]'}}"
	    "{%elif message['role']=='assistant'%}"
	    "{{' '+content.strip()+' '+eos_token}}{%endif%}",
	NULL
};
static const char *const m_mistral[] = {
	"After the optional system message, conversation roles must "
	    "alternate user/assistant/user/assistant/...",
	"{%if loop.last and system_message is defined%}",
	"{{'[INST]'+system_message+'\\n\\n'+message['content']+'[/INST]'}}",
	"{{'[INST]'+message['content']+'[/INST]'}}",
	"{{bos_token}}",
	"{%if messages[0]['role']=='system'%}{%set system_message=messages[0]"
	    "['content']%}{%set loop_messages=messages[1:]%}{%else%}"
	    "{%set loop_messages=messages%}{%endif%}",
	"{%if(message['role']=='user')!=(ns.index%2==0)%}",
	"{%for message in loop_messages%}{%if message['role']=='user'%}",
	"{%elif message['role']=='assistant'%}"
	    "{{message['content']+eos_token}}",
	"{%set ns.index=0%}",
	"{%set ns.index=ns.index+1%}",
	NULL
};
static const char *const m_phi3[] = {
	"{{'<|system|>\\n'+message['content']+'<|end|>\\n'}}",
	"{{'<|user|>\\n'+message['content']+'<|end|>\\n'}}",
	"{{'<|assistant|>\\n'+message['content']+'<|end|>\\n'}}",
	"{%if add_generation_prompt%}{{'<|assistant|>\\n'}}",
	"{%elif message['role']=='user'%}{{'<|user|>\\n'",
	"{%elif message['role']=='assistant'%}{{'<|assistant|>\\n'",
	NULL
};
static const char *const m_gemma[] = {
	"{%if messages[0]['role']=='system'%}"
	    "{{raise_exception('System role not supported')}}",
	"{%if(message['role']=='user')!=(loop.index0%2==0)%}"
	    "{{raise_exception('" MSG_ALTERNATE "')}}",
	"{%if(message['role']=='assistant')%}{%set role='model'%}",
	"{{'<start_of_turn>'+role+'\\n'+message['content']|trim"
	    "+'<end_of_turn>\\n'}}",
	"{%else%}{%set role=message['role']%}{%endif%}",
	"{%if add_generation_prompt%}{{'<start_of_turn>model\\n'}}{%endif%}",
	NULL
};

/* Recognise the family in normalised text; fills t. */
static int
detect_norm(const struct norm *nm, struct tmpl *t)
{
	memset(t, 0, sizeof(*t));
	/* every family renders from expressions only */
	if (nm->raw > 0)
		return -ENOENT;
	if (has_all(nm, m_r1) && !has(nm, "is_first_sp")) {
		t->kind = TMPL_KIND_DEEPSEEK_R1;
		if (has(nm, "enable_thinking")) {
			if (!has(nm, "{{'<｜Assistant｜><think>\\n'}}"
			    "{%if not enable_thinking%}{{'</think>'}}{%endif%}"))
				return -ENOENT;
			t->thinking_switch = true;
		}
		return 0;
	}
	if (has_all(nm, m_qwen3)) {
		t->kind = TMPL_KIND_QWEN3;
		return 0;
	}
	if (has_all(nm, m_chatml) && !has(nm, "think>") &&
	    !has(nm, "<|im_sep|>") && !has(nm, "enable_thinking")) {
		t->kind = TMPL_KIND_CHATML;
		t->bos = has(nm, "{{bos_token}}");
		if (has(nm, "<tool_response>")) {
			if (!has(nm, "{{'<|im_start|>user'}}") ||
			    !has(nm, "{{'\\n<tool_response>\\n'}}") ||
			    !has(nm, "{{'\\n</tool_response>'}}"))
				return -ENOENT;
			t->tool_response = true;
		}
		if (has(nm, "messages[0]")) {
			/* a first-message test: a default system prompt */
			if (nm->nsys != 1)
				return -ENOENT;
			t->has_default_system = true;
			memcpy(t->default_system, nm->sys, sizeof(nm->sys));
		}
		return 0;
	}
	if (has_all(nm, m_llama31)) {
		t->kind = TMPL_KIND_LLAMA31;
		if (has(nm, "strftime_now")) {
			if (!has(nm, "{%set date_string=strftime_now("
			    "'%d %b %Y')%}"))
				return -ENOENT;
			t->date_from_clock = true;
		}
		if (!literal_after(nm, "{%set date_string='", t->default_date,
		    sizeof(t->default_date)))
			return -ENOENT;
		return 0;
	}
	if (has_all(nm, m_llama3) && !has(nm, "Cutting Knowledge")) {
		t->kind = TMPL_KIND_LLAMA3;
		return 0;
	}
	if (has_all(nm, m_llama2) && !has(nm, "default_system") &&
	    !has(nm, "DEFAULT_SYSTEM")) {
		t->kind = TMPL_KIND_LLAMA2;
		return 0;
	}
	if (has_all(nm, m_mistral)) {
		t->kind = TMPL_KIND_MISTRAL;
		return 0;
	}
	if (has_all(nm, m_phi3)) {
		t->kind = TMPL_KIND_PHI3;
		t->bos = has(nm, "{{bos_token}}");
		t->skip_empty_system = has(nm, "{%if message['role']=='system'"
		    "and message['content']%}{{'<|system|>\\n'");
		if (!t->skip_empty_system && !has(nm, "{%if message['role']"
		    "=='system'%}{{'<|system|>\\n'"))
			return -ENOENT;
		t->eos_without_prompt = has(nm,
		    "{%if add_generation_prompt%}{{'<|assistant|>\\n'}}"
		    "{%else%}{{eos_token}}{%endif%}");
		return 0;
	}
	if (has_all(nm, m_gemma) && !has(nm, "first_user_prefix")) {
		t->kind = TMPL_KIND_GEMMA;
		return 0;
	}
	return -ENOENT;
}

int
tmpl_detect(const char *text, size_t len, struct tmpl *out)
{
	struct norm nm;
	struct tmpl t;
	int rc;

	if (text == NULL || out == NULL)
		return -EINVAL;
	if (len > TMPL_MAX_SOURCE)
		return -E2BIG;
	memset(&nm, 0, sizeof(nm));
	nm.cap = 2 * len + 16;
	nm.p = malloc(nm.cap);
	nm.dec = malloc(len + 4);
	if (nm.p == NULL || nm.dec == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = normalize(&nm, text, len)) < 0)
		goto out;
	if ((rc = detect_norm(&nm, &t)) < 0)
		goto out;
	*out = t;
	rc = 0;
out:
	free(nm.p);
	free(nm.dec);
	return rc;
}
