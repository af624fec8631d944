/*
 * fuzz_template.c - libFuzzer target: chat template detection on any text
 * and rendering of any conversation.
 *
 * Input: byte 0 holds flags, byte 1 picks bos/eos texts and the family
 * used when no template is detected, the rest is
 *	[template text 0xFF] message (0xFE message)...
 * where the template part is there only when bit 3 of byte 0 is set. A
 * message is a role byte then its content: role bytes below 0xF0 pick a
 * role from a table (system, user, assistant, tool, ipython, odd ones);
 * 0xFD starts a role written out, ended by another 0xFD.
 *	bit 0	add_generation_prompt	bit 1	enable_thinking
 *	bit 2	a date for strftime_now	bit 3	template text present
 * tmpl_detect runs on the template text (and on the whole input); the
 * conversation is rendered with the detected template, else with the
 * family picked by byte 1. Invariants: refusals have a message and
 * leave the outputs untouched, content that is not UTF-8 is refused,
 * a rendering is NUL-terminated valid UTF-8 of the length returned.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "template.h"

#define FT_MAX_MSGS	(TMPL_MAX_MESSAGES + 8)

static const char *const ft_names[] = {
	"chatml", "qwen2", "qwen2.5", "qwen3", "llama2", "llama3",
	"llama3.1", "llama3.2", "deepseek-r1", "mistral", "mistral-nemo",
	"phi3", "gemma", "no-such-family",
};
#define FT_N_NAMES	(sizeof(ft_names) / sizeof(ft_names[0]))

static const char *const ft_roles[] = {
	"user", "assistant", "system", "tool", "ipython", "", "User",
	"model", "assistant\n", "a-role-name-longer-than-thirty-two-bytes",
};
#define FT_N_ROLES	(sizeof(ft_roles) / sizeof(ft_roles[0]))

static const char *const ft_bos[] = {
	NULL, "<s>", "<|begin_of_text|>", "<bos>", "<\xef\xbd\x9c" "begin"
	    "\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "",
	"<|endoftext|>", "{{ raise_exception('x') }}",
};
static const char *const ft_eos[] = {
	NULL, "</s>", "<|eot_id|>", "<eos>", "<|im_end|>", "<|end|>", "",
	"<|endoftext|>",
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static void
ft_detect(const uint8_t *text, size_t len)
{
	struct tmpl t, s;
	int r;

	memset(&t, 0x6b, sizeof(t));
	s = t;
	r = tmpl_detect((const char *)text, len, &t);
	FZ_ASSERT(r == 0 || r == -ENOENT || r == -E2BIG, "detect: %d", r);
	if (r < 0) {
		FZ_ASSERT(memcmp(&t, &s, sizeof(t)) == 0,
		    "detect changed *out on failure");
		return;
	}
	FZ_ASSERT(t.kind < TMPL_KIND_COUNT, "kind %d", (int)t.kind);
	FZ_ASSERT(memchr(t.default_system, '\0', TMPL_SYSTEM_MAX) != NULL &&
	    memchr(t.default_date, '\0', TMPL_DATE_MAX) != NULL,
	    "unterminated defaults");
}

/* Split the messages part into msgs; returns how many. */
static size_t
ft_split(const uint8_t *p, size_t len, struct tmpl_msg *msgs, bool *bad_utf8)
{
	const uint8_t *end = p + len, *rec, *rec_end, *q;
	size_t n = 0;

	*bad_utf8 = false;
	for (rec = p; rec < end && n < FT_MAX_MSGS; rec = rec_end + 1) {
		struct tmpl_msg *m = &msgs[n++];

		rec_end = memchr(rec, 0xfe, (size_t)(end - rec));
		if (rec_end == NULL)
			rec_end = end;
		if (rec == rec_end) {
			m->role = "user";
			m->role_len = 4;
			m->content = NULL;
			m->content_len = 0;
			continue;
		}
		if (*rec == 0xfd && (q = memchr(rec + 1, 0xfd,
		    (size_t)(rec_end - rec - 1))) != NULL) {
			m->role = (const char *)rec + 1;
			m->role_len = (size_t)(q - rec - 1);
			rec = q;
		} else {
			m->role = ft_roles[*rec % FT_N_ROLES];
			m->role_len = strlen(m->role);
		}
		m->content = (const char *)rec + 1;
		m->content_len = (size_t)(rec_end - rec - 1);
		if (m->content_len == 0 && (rec[0] & 1))
			m->content = NULL;
		if (fz_utf8_valid(m->content, m->content_len) != m->content_len)
			*bad_utf8 = true;
	}
	return n;
}

static void
ft_render(const struct tmpl *t, const struct tmpl_opts *o,
    const struct tmpl_msg *msgs, size_t n, bool bad_utf8)
{
	char sentinel, *out = &sentinel;
	size_t out_len = 12345;
	struct eng_err e;
	int r;

	(void)tmpl_emits_bos(t);
	(void)tmpl_has_thinking(t);
	(void)tmpl_think_open(t);
	(void)tmpl_think_close(t);
	(void)tmpl_can_disable_thinking(t);
	(void)tmpl_starts_in_thinking(t, o);
	FZ_ASSERT(strcmp(tmpl_name(t), "unknown") != 0, "family name");

	memset(&e, 0, sizeof(e));
	r = tmpl_render(t, o, msgs, n, &out, &out_len, &e);
	if (r < 0) {
		FZ_ASSERT(r == -EINVAL || r == -E2BIG, "render: %d %s", r,
		    e.msg);
		FZ_ASSERT(e.msg[0] != '\0', "render: %d without a message", r);
		FZ_ASSERT(out == &sentinel && out_len == 12345,
		    "render changed its outputs on failure");
		return;
	}
	FZ_ASSERT(!bad_utf8, "rendered content that is not UTF-8");
	FZ_ASSERT(n > 0, "rendered no messages");
	FZ_ASSERT(out != NULL && out != &sentinel && out[out_len] == '\0',
	    "rendering not terminated");
	FZ_ASSERT(fz_utf8_valid(out, out_len) == out_len,
	    "rendering is not UTF-8");
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct tmpl_msg msgs[FT_MAX_MSGS];
	const uint8_t *p, *sep;
	struct tmpl_opts o;
	struct tmpl t;
	size_t len, n;
	bool detected = false, bad_utf8;
	unsigned fl, pick;

	if (size < 2)
		return 0;
	fl = data[0];
	pick = data[1];
	p = data + 2;
	len = size - 2;
	ft_detect(p, len);
	if (fl & 8) {
		sep = memchr(p, 0xff, len);
		if (sep == NULL)
			sep = p + len;
		ft_detect(p, (size_t)(sep - p));
		detected = tmpl_detect((const char *)p, (size_t)(sep - p),
		    &t) == 0;
		len -= (size_t)(sep - p);
		p = sep;
		if (len > 0) {
			p++;
			len--;
		}
	}
	if (!detected && tmpl_from_name(ft_names[pick % FT_N_NAMES], &t) < 0)
		FZ_ASSERT(pick % FT_N_NAMES == FT_N_NAMES - 1,
		    "family '%s' unknown", ft_names[pick % FT_N_NAMES]);
	else {
		tmpl_opts_default(&o);
		o.add_generation_prompt = fl & 1;
		o.enable_thinking = fl & 2;
		o.date = fl & 4 ? "28 Nov 2026" : NULL;
		o.bos = ft_bos[(pick >> 4) & 7];
		o.eos = ft_eos[((pick >> 4) + (fl >> 4)) & 7];
		n = ft_split(p, len, msgs, &bad_utf8);
		ft_render(&t, &o, msgs, n, bad_utf8);
	}
	return 0;
}
