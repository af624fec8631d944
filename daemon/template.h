/*
 * template.h - chat templates, rendered natively.
 *
 * A GGUF carries its chat template as Jinja text (tokenizer.chat_template).
 * hearth has no Jinja interpreter: tmpl_detect recognises the family of
 * a template by markers in its text (compared after a light
 * normalisation: whitespace-control dashes and spaces inside tags are
 * dropped, string literals are re-quoted, message.role is written
 * message['role']) and tmpl_render reproduces, byte for byte, what the
 * template renders under Hugging Face's apply_chat_template (sandboxed
 * Jinja, trim_blocks, lstrip_blocks, tools=None) for conversations of
 * plain text messages, including the template's own refusals
 * (raise_exception) with their messages. Templates whose markers do not
 * match exactly are unknown (-ENOENT) rather than guessed; the caller
 * then falls back to a family named in its configuration or request
 * (tmpl_from_name).
 *
 * Families:
 *	chatml		<|im_start|>role\n...<|im_end|>\n: generic ChatML,
 *			Qwen2 and Qwen2.5 (default system prompt taken from
 *			the template text, Qwen-style <tool_response>)
 *	qwen3		ChatML with reasoning: <think> dropped from turns
 *			before the last user query, enable_thinking
 *	llama2		<s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST]
 *	llama3		Llama 3.0 headers, no system block
 *	llama3.1	Llama 3.1/3.2/3.3: system block with the knowledge
 *			and "Today Date" lines (fixed date or strftime_now)
 *	deepseek-r1	DeepSeek-R1 distills: <｜User｜>, <｜Assistant｜>,
 *			reasoning stripped from history, prompt ends "<think>\n"
 *	mistral		Mistral Nemo (v3-tekken): [INST]..[/INST], the
 *			system prompt goes into the last user message
 *	phi3		Phi-3/3.5: <|user|>\n...<|end|>\n
 *	gemma		Gemma 1/2: <start_of_turn>user/model, no system role
 *
 * Messages are (role, content) text pairs; tool calls and tool
 * schemas are not modelled. Roles are "system", "user", "assistant",
 * plus "tool" where the family renders tool results from their text
 * alone (chatml, qwen3, llama3.1, deepseek-r1; mistral accepts it and
 * refuses it the way its template does), plus "ipython" for llama3.1.
 * Contents must be valid UTF-8 (any code point, NUL included).
 */
#ifndef HEARTH_TEMPLATE_H
#define HEARTH_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* Limits, checked before any allocation or copy. */
#define TMPL_MAX_SOURCE		(1u << 20)	/* template text, bytes */
#define TMPL_MAX_MESSAGES	4096u		/* messages per conversation */
#define TMPL_MAX_TEXT		(16u << 20)	/* all contents, bytes */
#define TMPL_MAX_ROLE		32u		/* a role name, bytes */
#define TMPL_MAX_TOKEN		256u		/* bos, eos or date text */
#define TMPL_SYSTEM_MAX		1024u		/* default system, with NUL */
#define TMPL_DATE_MAX		32u		/* default date, with NUL */

enum tmpl_kind {
	TMPL_KIND_CHATML,
	TMPL_KIND_QWEN3,
	TMPL_KIND_LLAMA2,
	TMPL_KIND_LLAMA3,
	TMPL_KIND_LLAMA31,
	TMPL_KIND_DEEPSEEK_R1,
	TMPL_KIND_MISTRAL,
	TMPL_KIND_PHI3,
	TMPL_KIND_GEMMA,
	TMPL_KIND_COUNT
};

/* A recognised template: its family and the variant details that matter. */
struct tmpl {
	/* family */
	enum tmpl_kind	kind;
	/* chatml, phi3: the text starts with bos_token */
	bool		bos;
	/* chatml: default_system goes first when messages[0] is not a
	 * system message (Qwen2, Qwen2.5) */
	bool		has_default_system;
	/* chatml: tool messages become user turns wrapped in
	 * <tool_response> (Qwen2.5); else "<|im_start|>tool" turns */
	bool		tool_response;
	/* deepseek-r1: enable_thinking=false closes the think block of
	 * the generation prompt ("<think>\n</think>") */
	bool		thinking_switch;
	/* llama3.1: "Today Date" is strftime_now("%d %b %Y"), taken from
	 * tmpl_opts.date (Llama 3.2); else always default_date */
	bool		date_from_clock;
	/* phi3: system messages with empty content are dropped */
	bool		skip_empty_system;
	/* phi3: eos_token ends the text without a generation prompt */
	bool		eos_without_prompt;
	/* chatml: the default system prompt, NUL-terminated */
	char		default_system[TMPL_SYSTEM_MAX];
	/* llama3.1: the template's date_string default, "26 Jul 2024" */
	char		default_date[TMPL_DATE_MAX];
};

/* One chat message. Not NUL-terminated; content may be NULL when empty. */
struct tmpl_msg {
	const char	*role;		/* role name, role_len bytes */
	size_t		 role_len;
	const char	*content;	/* UTF-8 text, content_len bytes */
	size_t		 content_len;
};

/* Render options: the values HF passes to the template. */
struct tmpl_opts {
	/* bos_token and eos_token texts, NUL-terminated; NULL is "" */
	const char	*bos;
	const char	*eos;
	/* end with the opening of the assistant's turn */
	bool		 add_generation_prompt;
	/* false: ask for no reasoning where the template can (qwen3,
	 * deepseek-r1 with thinking_switch) */
	bool		 enable_thinking;
	/* today as strftime("%d %b %Y"), "28 Nov 2026", for templates
	 * that call strftime_now; NULL: the template's fallback date */
	const char	*date;
};

/* add_generation_prompt and enable_thinking on, no bos/eos, no date. */
void tmpl_opts_default(struct tmpl_opts *o);

/*
 * Recognise a template text. 0 and *out filled; -ENOENT when the text
 * is not a known family (or a variant whose details are not known),
 * -E2BIG when len > TMPL_MAX_SOURCE, -EINVAL for NULL arguments,
 * -ENOMEM.
 */
int tmpl_detect(const char *text, size_t len, struct tmpl *out);

/*
 * A family by name, for fallbacks: "chatml", "qwen2" (ChatML with the
 * default system prompt "You are a helpful assistant."), "qwen2.5"
 * (Qwen's "You are Qwen, created by Alibaba Cloud. ..." and
 * <tool_response>), "qwen3", "llama2", "llama3", "llama3.1" (fixed
 * date "26 Jul 2024"), "llama3.2" (date from tmpl_opts.date),
 * "deepseek-r1", "mistral" (also "mistral-nemo"), "phi3", "gemma".
 * Case-sensitive. 0, -ENOENT unknown, -EINVAL NULL.
 */
int tmpl_from_name(const char *name, struct tmpl *out);

/* Family name ("chatml", "llama3.1", ...); "unknown" out of range. */
const char *tmpl_kind_name(enum tmpl_kind k);
/* Family name of a template. */
const char *tmpl_name(const struct tmpl *t);

/*
 * Render msgs[0..n) into a malloc'd, NUL-terminated string (*out_len
 * bytes, NUL not counted; contents may hold NUL bytes). Returns 0;
 * -EINVAL with the template's own message when it refuses the
 * conversation (e.g. "Conversation roles must alternate
 * user/assistant/user/assistant/...", "System role not supported"),
 * or for an unknown role, invalid UTF-8, no messages, NULL arguments;
 * -E2BIG beyond TMPL_MAX_MESSAGES, TMPL_MAX_TEXT, TMPL_MAX_ROLE or
 * TMPL_MAX_TOKEN (checked before any content is read); -ENOMEM.
 * Outputs are untouched on failure.
 */
int tmpl_render(const struct tmpl *t, const struct tmpl_opts *o,
    const struct tmpl_msg *msgs, size_t n, char **out, size_t *out_len,
    struct eng_err *err);

/*
 * Whether the rendered text carries bos_token itself (llama2 before
 * every user turn, llama3*, deepseek-r1, mistral, gemma, and chatml or
 * phi3 templates that start with it): the caller then tokenizes the
 * prompt without adding another BOS.
 */
bool tmpl_emits_bos(const struct tmpl *t);

/*
 * Reasoning: whether the family's model writes its reasoning between
 * think tags (qwen3, deepseek-r1), the tags, whether a request can turn
 * it off, and whether the rendered prompt leaves a think block open so
 * that generation starts inside the reasoning (deepseek-r1 unless
 * switched off). Tags are NULL for families without reasoning.
 */
bool tmpl_has_thinking(const struct tmpl *t);
const char *tmpl_think_open(const struct tmpl *t);
const char *tmpl_think_close(const struct tmpl *t);
bool tmpl_can_disable_thinking(const struct tmpl *t);
bool tmpl_starts_in_thinking(const struct tmpl *t, const struct tmpl_opts *o);

#endif /* HEARTH_TEMPLATE_H */
