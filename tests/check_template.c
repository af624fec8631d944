/*
 * check_template.c - chat template detection and native rendering.
 *
 * The real templates in $HEARTH_TESTDATA/templates are detected and
 * their renderings compared byte for byte with expected.json (made with
 * Hugging Face's Jinja environment). The hand-written table below was
 * rendered the same way from the same templates (and, for llama2,
 * llama3, llama3.2, chatml and qwen2, from those models' published
 * templates); it runs through the families by name without test data,
 * and through the detected real templates when they are present.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>
#include <jansson.h>

#include "template.h"
#include "testutil.h"

#define DATE	"28 Nov 2026"	/* strftime_now of expected.json */

/* Render with the usual options; returns tmpl_render's code. */
static int
render(const struct tmpl *t, const char *bos, const char *eos, bool gen,
    bool think, const struct tmpl_msg *m, size_t n, char **out,
    size_t *len, struct eng_err *err)
{
	struct tmpl_opts o;

	tmpl_opts_default(&o);
	o.bos = bos;
	o.eos = eos;
	o.add_generation_prompt = gen;
	o.enable_thinking = think;
	o.date = DATE;
	memset(err, 0, sizeof(*err));
	return tmpl_render(t, &o, m, n, out, len, err);
}

static struct tmpl_msg
msg(const char *role, const char *content)
{
	struct tmpl_msg m = { role, strlen(role), content, strlen(content) };

	return m;
}

/* Detect the template of a test data file; false when it is missing. */
static bool
detect_file(const char *rel, struct tmpl *t, int *rc)
{
	const char *path = tu_testdata(rel);
	uint8_t *text;
	size_t len;

	if (path == NULL)
		return false;
	text = tu_read_file(path, &len);
	ck_assert_ptr_nonnull(text);
	*rc = tmpl_detect((const char *)text, len, t);
	free(text);
	return true;
}

/* ------------------------------------------------------------------ */
/* expected.json                                                       */

static const struct {
	const char	*model;	/* file name without .jinja */
	const char	*kind;	/* expected family */
	const char	*fallback;	/* tmpl_from_name equivalent */
} models[] = {
	{ "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "deepseek-r1", NULL },
	{ "deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "deepseek-r1",
	    "deepseek-r1" },
	{ "Qwen-Qwen2.5-7B-Instruct", "chatml", "qwen2.5" },
	{ "Qwen-Qwen3-0.6B", "qwen3", "qwen3" },
	{ "meta-llama-Llama-3.1-8B-Instruct", "llama3.1", "llama3.1" },
	{ "microsoft-Phi-3.5-mini-instruct", "phi3", "phi3" },
	{ "google-gemma-2-2b-it", "gemma", "gemma" },
	{ "mistralai-Mistral-Nemo-Instruct-2407", "mistral", "mistral" },
};

static const char *
model_kind(const char *model)
{
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
		if (strcmp(models[i].model, model) == 0)
			return models[i].kind;
	return NULL;
}

START_TEST(test_expected_json)
{
	static const char *const names[] = { "with_system", "no_system",
	    "no_system_thinking_off" };
	const char *path = tu_testdata("templates/expected.json");
	json_error_t je;
	json_t *root, *conv, *mods, *mv;
	const char *model;
	struct tmpl_msg m[16];
	size_t nconv, total = 0, matched = 0, nmodels = 0;

	if (path == NULL) {
		tu_skip("templates/expected.json");
		return;
	}
	root = json_load_file(path, 0, &je);
	ck_assert_msg(root != NULL, "%s: %s", path, je.text);
	conv = json_object_get(root, "conversation");
	mods = json_object_get(root, "models");
	ck_assert(json_is_array(conv) && json_is_object(mods));
	nconv = json_array_size(conv);
	ck_assert(nconv >= 2 && nconv <= 16);
	for (size_t i = 0; i < nconv; i++) {
		json_t *r = json_object_get(json_array_get(conv, i), "role");
		json_t *c = json_object_get(json_array_get(conv, i), "content");

		ck_assert(json_is_string(r) && json_is_string(c));
		m[i].role = json_string_value(r);
		m[i].role_len = json_string_length(r);
		m[i].content = json_string_value(c);
		m[i].content_len = json_string_length(c);
	}
	ck_assert_str_eq(m[0].role, "system");

	json_object_foreach(mods, model, mv) {
		char rel[256];
		const char *bos, *eos, *kind = model_kind(model);
		json_t *renders = json_object_get(mv, "renders");
		struct tmpl t;
		int rc;

		nmodels++;
		ck_assert_msg(kind != NULL, "%s: no expected family", model);
		snprintf(rel, sizeof(rel), "templates/%s.jinja", model);
		ck_assert_msg(detect_file(rel, &t, &rc), "%s missing", rel);
		ck_assert_msg(rc == 0, "%s: tmpl_detect %d", model, rc);
		ck_assert_str_eq(tmpl_name(&t), kind);
		bos = json_string_value(json_object_get(mv, "bos_token"));
		eos = json_string_value(json_object_get(mv, "eos_token"));
		ck_assert(bos != NULL && eos != NULL);

		for (size_t k = 0; k < 3; k++) {
			json_t *want = json_object_get(renders, names[k]);
			bool sys = k == 0, think = k != 2;
			struct eng_err err;
			char *out = NULL, key[64];
			size_t len = 0;

			ck_assert_msg(want != NULL, "%s: no %s", model,
			    names[k]);
			total++;
			rc = render(&t, bos, eos, true, think, sys ? m : m + 1,
			    sys ? nconv : nconv - 1, &out, &len, &err);
			if (json_is_null(want)) {
				snprintf(key, sizeof(key), "%s_error",
				    names[k]);
				ck_assert_msg(rc == -EINVAL, "%s %s: rc %d",
				    model, names[k], rc);
				ck_assert_ptr_nonnull(json_string_value(
				    json_object_get(renders, key)));
				ck_assert_str_eq(err.msg, json_string_value(
				    json_object_get(renders, key)));
				ck_assert_ptr_null(out);
			} else {
				const char *ws = json_string_value(want);

				ck_assert_msg(rc == 0, "%s %s: rc %d %s",
				    model, names[k], rc, err.msg);
				ck_assert(ws != NULL);
				ck_assert_uint_eq(len, json_string_length(want));
				ck_assert_msg(memcmp(out, ws, len) == 0,
				    "%s %s:\n got [%s]\nwant [%s]", model,
				    names[k], out, ws);
				ck_assert_int_eq(out[len], '\0');
				free(out);
			}
			matched++;
		}
	}
	fprintf(stderr, "template: %zu/%zu renders of %zu models match "
	    "expected.json\n", matched, total, nmodels);
	ck_assert_uint_eq(nmodels, sizeof(models) / sizeof(models[0]));
	ck_assert_uint_eq(matched, total);
	ck_assert_uint_eq(total, 3 * nmodels);
	json_decref(root);
}
END_TEST

/* Variant details found in the real templates, and the named fallbacks. */
START_TEST(test_detect_files)
{
	char rel[256];
	struct tmpl t, byname;
	int rc;

	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		snprintf(rel, sizeof(rel), "templates/%s.jinja",
		    models[i].model);
		if (!detect_file(rel, &t, &rc)) {
			tu_skip(rel);
			return;
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_str_eq(tmpl_name(&t), models[i].kind);
		if (models[i].fallback == NULL)
			continue;
		/* the named family is the same template */
		ck_assert_int_eq(tmpl_from_name(models[i].fallback, &byname),
		    0);
		ck_assert_int_eq(byname.kind, t.kind);
		ck_assert_int_eq(byname.bos, t.bos);
		ck_assert_int_eq(byname.has_default_system,
		    t.has_default_system);
		ck_assert_int_eq(byname.tool_response, t.tool_response);
		ck_assert_int_eq(byname.thinking_switch, t.thinking_switch);
		ck_assert_int_eq(byname.date_from_clock, t.date_from_clock);
		ck_assert_int_eq(byname.skip_empty_system, t.skip_empty_system);
		ck_assert_int_eq(byname.eos_without_prompt,
		    t.eos_without_prompt);
		ck_assert_str_eq(byname.default_system, t.default_system);
		if (t.kind == TMPL_KIND_LLAMA31)
			ck_assert_str_eq(byname.default_date, t.default_date);
	}
	ck_assert(detect_file("templates/Qwen-Qwen2.5-7B-Instruct.jinja", &t,
	    &rc));
	ck_assert(t.has_default_system && t.tool_response && !t.bos);
	ck_assert_str_eq(t.default_system, "You are Qwen, created by Alibaba "
	    "Cloud. You are a helpful assistant.");
	ck_assert(detect_file("templates/"
	    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", &t, &rc));
	ck_assert(t.thinking_switch);
	ck_assert(tmpl_can_disable_thinking(&t));
	ck_assert(detect_file("templates/"
	    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", &t, &rc));
	ck_assert(!t.thinking_switch);
	ck_assert(!tmpl_can_disable_thinking(&t));
	ck_assert(detect_file("templates/meta-llama-Llama-3.1-8B-Instruct.jinja",
	    &t, &rc));
	ck_assert(!t.date_from_clock);
	ck_assert_str_eq(t.default_date, "26 Jul 2024");
	ck_assert(detect_file("templates/microsoft-Phi-3.5-mini-instruct.jinja",
	    &t, &rc));
	ck_assert(t.skip_empty_system && t.eos_without_prompt && !t.bos);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Hand-written conversations                                          */

struct hcase {
	const char	*what;		/* description */
	const char	*name;		/* family for tmpl_from_name */
	const char	*bos;		/* bos_token */
	const char	*eos;		/* eos_token */
	bool		 gen;		/* add_generation_prompt */
	bool		 think;		/* enable_thinking */
	size_t		 n;		/* messages used in m */
	struct {
		const char	*role;
		const char	*content;
	}		 m[8];		/* the conversation */
	int		 rc;		/* 0 or -EINVAL */
	const char	*expect;	/* rendering, or the refusal message */
};

static const struct hcase hcases[] = {
	{ "r1 multi-turn strips earlier reasoning", "deepseek-r1", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
	  true, true, 6, {
	    { "system", "Be brief." },
	    { "user", "Q1" },
	    { "assistant", "<think>\nfirst\n</think>\n\nA1" },
	    { "user", "Q2" },
	    { "assistant", "<think>x</think>y</think>\n\nA2" },
	    { "user", "Q3" },
	  }, 0,
	  "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Q1<｜Assistant｜>\n"
	  "\n"
	  "A1<｜end▁of▁sentence｜><｜User｜>Q2<｜Assistant｜>\n"
	  "\n"
	  "A2<｜end▁of▁sentence｜><｜User｜>Q3<｜Assistant｜><think>\n" },
	{ "r1 single user", "deepseek-r1", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
	  true, true, 1, {
	    { "user", "Hi" },
	  }, 0,
	  "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n" },
	{ "r1 last system wins, tool outputs", "deepseek-r1", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
	  true, true, 8, {
	    { "system", "one" },
	    { "user", "Q" },
	    { "tool", "r1" },
	    { "tool", "r2" },
	    { "assistant", "<think>k</think>done" },
	    { "system", "two" },
	    { "user", "again" },
	    { "tool", "r3" },
	  }, 0,
	  "<｜begin▁of▁sentence｜>two<｜User｜>Q<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>r1<｜tool▁output▁end｜>\n"
	  "<｜tool▁output▁begin｜>r2<｜tool▁output▁end｜><｜tool▁outputs▁end｜><think>k</think>done<｜end▁of▁sentence｜><｜User｜>again\n"
	  "<｜tool▁output▁begin｜>r3<｜tool▁output▁end｜><｜tool▁outputs▁end｜>" },
	{ "r1 thinking off unsupported", "deepseek-r1", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
	  true, false, 1, {
	    { "user", "Hi" },
	  }, 0,
	  "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n" },
	{ "qwen3 keeps reasoning after the last query", "qwen3", "", "<|im_end|>",
	  false, true, 4, {
	    { "user", "Q1" },
	    { "assistant", "<think>\nA\n</think>\n\nX" },
	    { "user", "Q2" },
	    { "assistant", "<think>\n\nB\n</think>\n\n\nY" },
	  }, 0,
	  "<|im_start|>user\n"
	  "Q1<|im_end|>\n"
	  "<|im_start|>assistant\n"
	  "X<|im_end|>\n"
	  "<|im_start|>user\n"
	  "Q2<|im_end|>\n"
	  "<|im_start|>assistant\n"
	  "<think>\n"
	  "B\n"
	  "</think>\n"
	  "\n"
	  "Y<|im_end|>\n" },
	{ "qwen3 tool turns after the query", "qwen3", "", "<|im_end|>",
	  true, false, 7, {
	    { "system", "sys" },
	    { "user", "Q" },
	    { "assistant", "<think>plan</think>call" },
	    { "tool", "res1" },
	    { "tool", "res2" },
	    { "assistant", "no think here" },
	    { "user", "<tool_response>x</tool_response>" },
	  }, 0,
	  "<|im_start|>system\n"
	  "sys<|im_end|>\n"
	  "<|im_start|>user\n"
	  "Q<|im_end|>\n"
	  "<|im_start|>assistant\n"
	  "<think>\n"
	  "plan\n"
	  "</think>\n"
	  "\n"
	  "call<|im_end|>\n"
	  "<|im_start|>user\n"
	  "<tool_response>\n"
	  "res1\n"
	  "</tool_response>\n"
	  "<tool_response>\n"
	  "res2\n"
	  "</tool_response><|im_end|>\n"
	  "<|im_start|>assistant\n"
	  "no think here<|im_end|>\n"
	  "<|im_start|>user\n"
	  "<tool_response>x</tool_response><|im_end|>\n"
	  "<|im_start|>assistant\n"
	  "<think>\n"
	  "\n"
	  "</think>\n"
	  "\n" },
	{ "qwen3 empty content", "qwen3", "", "<|im_end|>",
	  true, true, 1, {
	    { "user", "" },
	  }, 0,
	  "<|im_start|>user\n"
	  "<|im_end|>\n"
	  "<|im_start|>assistant\n" },
	{ "qwen2.5 default system, tool responses", "qwen2.5", "", "<|im_end|>",
	  true, true, 5, {
	    { "user", "Q" },
	    { "tool", "a" },
	    { "tool", "b" },
	    { "assistant", "" },
	    { "system", "late system" },
	  }, 0,
	  "<|im_start|>system\n"
	  "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
	  "<|im_start|>user\n"
	  "Q<|im_end|>\n"
	  "<|im_start|>user\n"
	  "<tool_response>\n"
	  "a\n"
	  "</tool_response>\n"
	  "<tool_response>\n"
	  "b\n"
	  "</tool_response><|im_end|>\n"
	  "<|im_start|>assistant\n"
	  "<|im_end|>\n"
	  "<|im_start|>system\n"
	  "late system<|im_end|>\n"
	  "<|im_start|>assistant\n" },
	{ "qwen2 default system", "qwen2", "", "<|im_end|>",
	  true, true, 1, {
	    { "user", "Q" },
	  }, 0,
	  "<|im_start|>system\n"
	  "You are a helpful assistant.<|im_end|>\n"
	  "<|im_start|>user\n"
	  "Q<|im_end|>\n"
	  "<|im_start|>assistant\n" },
	{ "chatml any order", "chatml", "", "<|im_end|>",
	  false, true, 4, {
	    { "assistant", "a" },
	    { "assistant", "b" },
	    { "system", "s" },
	    { "user", " u " },
	  }, 0,
	  "<|im_start|>assistant\n"
	  "a<|im_end|>\n"
	  "<|im_start|>assistant\n"
	  "b<|im_end|>\n"
	  "<|im_start|>system\n"
	  "s<|im_end|>\n"
	  "<|im_start|>user\n"
	  " u <|im_end|>\n" },
	{ "llama2 system block and strip", "llama2", "<s>", "</s>",
	  true, true, 4, {
	    { "system", "Sys" },
	    { "user", "  Hello \n" },
	    { "assistant", " Hi " },
	    { "user", "Again" },
	  }, 0,
	  "<s>[INST] <<SYS>>\n"
	  "Sys\n"
	  "<</SYS>>\n"
	  "\n"
	  "  Hello [/INST] Hi </s><s>[INST] Again [/INST]" },
	{ "llama2 system with blank first user", "llama2", "<s>", "</s>",
	  true, true, 2, {
	    { "system", "Sys " },
	    { "user", " \n " },
	  }, 0,
	  "<s>[INST] <<SYS>>\n"
	  "Sys \n"
	  "<</SYS>> [/INST]" },
	{ "llama2 alternation", "llama2", "<s>", "</s>",
	  true, true, 1, {
	    { "assistant", "x" },
	  }, -EINVAL,
	  "Conversation roles must alternate user/assistant/user/assistant/..." },
	{ "llama3 trims contents", "llama3", "<|begin_of_text|>", "<|eot_id|>",
	  true, true, 3, {
	    { "system", " s " },
	    { "user", "　hi " },
	    { "assistant", "​ok" },
	  }, 0,
	  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
	  "\n"
	  "s<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
	  "\n"
	  "hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
	  "\n"
	  "​ok<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
	  "\n" },
	{ "llama3.1 no system, tool json", "llama3.1", "<|begin_of_text|>", "<|eot_id|>",
	  true, true, 4, {
	    { "user", "weather?" },
	    { "assistant", "call" },
	    { "tool", "{\"t\": \"20\\u00b0\"}\n\001" },
	    { "user", "thanks" },
	  }, 0,
	  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
	  "\n"
	  "Cutting Knowledge Date: December 2023\n"
	  "Today Date: 26 Jul 2024\n"
	  "\n"
	  "<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
	  "\n"
	  "weather?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
	  "\n"
	  "call<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n"
	  "\n"
	  "\"{\\\"t\\\": \\\"20\\\\u00b0\\\"}\\n\\u0001\"<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
	  "\n"
	  "thanks<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
	  "\n" },
	{ "llama3.1 ignores the clock", "llama3.1", "<|begin_of_text|>", "<|eot_id|>",
	  false, true, 2, {
	    { "system", "\n sys \n" },
	    { "user", "Hi" },
	  }, 0,
	  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
	  "\n"
	  "Cutting Knowledge Date: December 2023\n"
	  "Today Date: 26 Jul 2024\n"
	  "\n"
	  "sys<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
	  "\n"
	  "Hi<|eot_id|>" },
	{ "llama3.2 takes the date", "llama3.2", "<|begin_of_text|>", "<|eot_id|>",
	  true, true, 1, {
	    { "user", "Hi" },
	  }, 0,
	  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
	  "\n"
	  "Cutting Knowledge Date: December 2023\n"
	  "Today Date: 28 Nov 2026\n"
	  "\n"
	  "<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
	  "\n"
	  "Hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
	  "\n" },
	{ "mistral system before the last user", "mistral", "<s>", "</s>",
	  true, true, 4, {
	    { "system", "Sys" },
	    { "user", "Q1" },
	    { "assistant", "A1" },
	    { "user", "Q2" },
	  }, 0,
	  "<s>[INST]Q1[/INST]A1</s>[INST]Sys\n"
	  "\n"
	  "Q2[/INST]" },
	{ "mistral system lost when the last turn is the assistant", "mistral", "<s>", "</s>",
	  true, true, 3, {
	    { "system", "Sys" },
	    { "user", "Q1" },
	    { "assistant", "A1" },
	  }, 0,
	  "<s>[INST]Q1[/INST]A1</s>" },
	{ "mistral alternation", "mistral", "<s>", "</s>",
	  true, true, 2, {
	    { "system", "Sys" },
	    { "assistant", "A1" },
	  }, -EINVAL,
	  "After the optional system message, conversation roles must alternate user/assistant/user/assistant/..." },
	{ "mistral system in the middle", "mistral", "<s>", "</s>",
	  true, true, 2, {
	    { "user", "Q1" },
	    { "system", "S" },
	  }, -EINVAL,
	  "Only user and assistant roles are supported, with the exception of an initial optional system message!" },
	{ "mistral tool results", "mistral", "<s>", "</s>",
	  true, true, 2, {
	    { "user", "Q1" },
	    { "tool", "r" },
	  }, -EINVAL,
	  "Tool call IDs should be alphanumeric strings with length 9!" },
	{ "phi3 empty system dropped, eos at the end", "phi3", "<s>", "<|endoftext|>",
	  false, true, 3, {
	    { "system", "" },
	    { "user", "Q" },
	    { "assistant", "A" },
	  }, 0,
	  "<|user|>\n"
	  "Q<|end|>\n"
	  "<|assistant|>\n"
	  "A<|end|>\n"
	  "<|endoftext|>" },
	{ "gemma model role and trim", "gemma", "<bos>", "<eos>",
	  true, true, 2, {
	    { "user", " Hi\n" },
	    { "assistant", "Hello \t" },
	  }, 0,
	  "<bos><start_of_turn>user\n"
	  "Hi<end_of_turn>\n"
	  "<start_of_turn>model\n"
	  "Hello<end_of_turn>\n"
	  "<start_of_turn>model\n" },
	{ "gemma system refused", "gemma", "<bos>", "<eos>",
	  true, true, 2, {
	    { "system", "s" },
	    { "user", "Q" },
	  }, -EINVAL,
	  "System role not supported" },
	{ "gemma alternation", "gemma", "<bos>", "<eos>",
	  true, true, 2, {
	    { "user", "a" },
	    { "user", "b" },
	  }, -EINVAL,
	  "Conversation roles must alternate user/assistant/user/assistant/..." },
	{ "gemma system turn after the user", "gemma", "<bos>", "<eos>",
	  true, true, 2, {
	    { "user", "a" },
	    { "system", "b" },
	  }, 0,
	  "<bos><start_of_turn>user\n"
	  "a<end_of_turn>\n"
	  "<start_of_turn>system\n"
	  "b<end_of_turn>\n"
	  "<start_of_turn>model\n" },
};

#define NHCASES	(sizeof(hcases) / sizeof(hcases[0]))

static void
check_hcase(const struct hcase *h, const struct tmpl *t)
{
	struct tmpl_msg m[8];
	struct eng_err err;
	char *out = NULL;
	size_t len = 0;
	int rc;

	for (size_t i = 0; i < h->n; i++)
		m[i] = msg(h->m[i].role, h->m[i].content);
	rc = render(t, h->bos, h->eos, h->gen, h->think, m, h->n, &out, &len,
	    &err);
	ck_assert_msg(rc == h->rc, "%s: rc %d, want %d (%s)", h->what, rc,
	    h->rc, err.msg);
	if (rc == 0) {
		ck_assert_msg(len == strlen(h->expect) &&
		    memcmp(out, h->expect, len) == 0,
		    "%s:\n got [%s]\nwant [%s]", h->what, out, h->expect);
		free(out);
	} else {
		ck_assert_str_eq(err.msg, h->expect);
		ck_assert_ptr_null(out);
	}
}

START_TEST(test_hand_by_name)
{
	const struct hcase *h = &hcases[_i];
	struct tmpl t;

	ck_assert_int_eq(tmpl_from_name(h->name, &t), 0);
	check_hcase(h, &t);
}
END_TEST

/* The same cases through the detected real templates. */
START_TEST(test_hand_detected)
{
	static const struct {
		const char	*name;
		const char	*file;
	} files[] = {
		{ "deepseek-r1", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B" },
		{ "qwen3", "Qwen-Qwen3-0.6B" },
		{ "qwen2.5", "Qwen-Qwen2.5-7B-Instruct" },
		{ "llama3.1", "meta-llama-Llama-3.1-8B-Instruct" },
		{ "mistral", "mistralai-Mistral-Nemo-Instruct-2407" },
		{ "phi3", "microsoft-Phi-3.5-mini-instruct" },
		{ "gemma", "google-gemma-2-2b-it" },
	};
	size_t done = 0;

	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		char rel[256];
		struct tmpl t;
		int rc;

		snprintf(rel, sizeof(rel), "templates/%s.jinja", files[f].file);
		if (!detect_file(rel, &t, &rc)) {
			tu_skip(rel);
			return;
		}
		ck_assert_int_eq(rc, 0);
		for (size_t i = 0; i < NHCASES; i++) {
			if (strcmp(hcases[i].name, files[f].name) != 0)
				continue;
			check_hcase(&hcases[i], &t);
			done++;
		}
	}
	ck_assert_uint_gt(done, 15);
}
END_TEST

/* A content with a NUL byte and one at the limit of every UTF-8 length. */
START_TEST(test_binary_content)
{
	static const char c[] = "a\0b\x7f\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf";
	struct tmpl_msg m = { "user", 4, c, sizeof(c) - 1 };
	static const char want[] = "<|im_start|>user\na\0b\x7f\xdf\xbf"
	    "\xef\xbf\xbf\xf4\x8f\xbf\xbf<|im_end|>\n<|im_start|>assistant\n";
	struct tmpl t;
	struct eng_err err;
	char *out;
	size_t len;

	ck_assert_int_eq(tmpl_from_name("chatml", &t), 0);
	ck_assert_int_eq(render(&t, "", "", true, true, &m, 1, &out, &len,
	    &err), 0);
	ck_assert_uint_eq(len, sizeof(want) - 1);
	ck_assert(memcmp(out, want, len) == 0);
	free(out);
}
END_TEST

/* Whitespace of Python's str.strip() around a Gemma turn. */
START_TEST(test_unicode_trim)
{
	struct tmpl_msg m = msg("user", "\xe3\x80\x80\x1c\xc2\x85 hi "
	    "\xe2\x80\x8b\xe2\x80\xa8\xc2\xa0\x0b");
	struct tmpl t;
	struct eng_err err;
	char *out;
	size_t len;

	ck_assert_int_eq(tmpl_from_name("gemma", &t), 0);
	ck_assert_int_eq(render(&t, "<bos>", "<eos>", false, true, &m, 1,
	    &out, &len, &err), 0);
	/* U+200B (zero width space) is not whitespace to Python */
	ck_assert_str_eq(out, "<bos><start_of_turn>user\nhi \xe2\x80\x8b"
	    "<end_of_turn>\n");
	free(out);
}
END_TEST

/* The date line: fixed for 3.1, the caller's (or the fallback) for 3.2. */
START_TEST(test_llama_dates)
{
	struct tmpl_msg m = msg("user", "Hi");
	struct tmpl_opts o;
	struct tmpl t;
	char *out;
	size_t len;

	tmpl_opts_default(&o);
	o.add_generation_prompt = false;
	o.date = "01 Jan 2031";
	ck_assert_int_eq(tmpl_from_name("llama3.2", &t), 0);
	ck_assert_int_eq(tmpl_render(&t, &o, &m, 1, &out, &len, NULL), 0);
	ck_assert_str_eq(out, "<|start_header_id|>system<|end_header_id|>\n\n"
	    "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2031"
	    "\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi"
	    "<|eot_id|>");
	free(out);
	o.date = NULL;
	ck_assert_int_eq(tmpl_render(&t, &o, &m, 1, &out, &len, NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "Today Date: 26 Jul 2024\n"));
	free(out);
	o.date = "01 Jan 2031";
	ck_assert_int_eq(tmpl_from_name("llama3.1", &t), 0);
	ck_assert_int_eq(tmpl_render(&t, &o, &m, 1, &out, &len, NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "Today Date: 26 Jul 2024\n"));
	free(out);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Detection, names, reasoning helpers                                 */

static const char chatml_text[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + "
    "'\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}";

START_TEST(test_detect_text)
{
	struct tmpl t;
	char *s;
	size_t n = strlen(chatml_text);

	ck_assert_int_eq(tmpl_detect(chatml_text, n, &t), 0);
	ck_assert_int_eq(t.kind, TMPL_KIND_CHATML);
	ck_assert(!t.has_default_system && !t.bos && !t.tool_response);

	/* A default system prompt, written with double quotes and a real
	 * newline, spaces and whitespace control anywhere. */
	s = malloc(n + 400);
	ck_assert_ptr_nonnull(s);
	snprintf(s, n + 400, "{%%- if messages[0].role != \"system\" -%%}\n"
	    "  {{- \"<|im_start|>system\nBe \\\"kind\\\".<|im_end|>\\n\" }}\n"
	    "{%%- endif %%}\n%s", chatml_text);
	ck_assert_int_eq(tmpl_detect(s, strlen(s), &t), 0);
	ck_assert_int_eq(t.kind, TMPL_KIND_CHATML);
	ck_assert(t.has_default_system);
	ck_assert_str_eq(t.default_system, "Be \"kind\".");

	/* bos_token in front */
	snprintf(s, n + 400, "{{ bos_token }}%s", chatml_text);
	ck_assert_int_eq(tmpl_detect(s, strlen(s), &t), 0);
	ck_assert(t.bos);

	/* a first-message test without a default we can read */
	snprintf(s, n + 400, "{%% if messages[0]['role'] == 'system' %%}x"
	    "{%% endif %%}%s", chatml_text);
	ck_assert_int_eq(tmpl_detect(s, strlen(s), &t), -ENOENT);

	/* ChatML with reasoning we do not know (QwQ-like) */
	snprintf(s, n + 400, "%s{{ '<think>\\n' }}", chatml_text);
	ck_assert_int_eq(tmpl_detect(s, strlen(s), &t), -ENOENT);

	/* a comment is not text */
	snprintf(s, n + 400, "{# <think> #}%s", chatml_text);
	ck_assert_int_eq(tmpl_detect(s, strlen(s), &t), 0);

	/* text outside the tags renders: not a known variant; one final
	 * newline and whitespace that Jinja strips are fine */
	snprintf(s, n + 400, "%s\nHello", chatml_text);
	ck_assert_int_eq(tmpl_detect(s, strlen(s), &t), -ENOENT);
	snprintf(s, n + 400, "%s\n", chatml_text);
	ck_assert_int_eq(tmpl_detect(s, strlen(s), &t), 0);
	snprintf(s, n + 400, "  {%%- if true -%%}\n  {%% endif %%}\n%s",
	    chatml_text);
	ck_assert_int_eq(tmpl_detect(s, strlen(s), &t), 0);
	snprintf(s, n + 400, "{%% if true +%%}\n{%% endif %%}%s",
	    chatml_text);
	ck_assert_int_eq(tmpl_detect(s, strlen(s), &t), -ENOENT);

	/* an unterminated tag */
	snprintf(s, n + 400, "%s{{ 'x' ", chatml_text);
	ck_assert_int_eq(tmpl_detect(s, strlen(s), &t), -ENOENT);
	free(s);
}
END_TEST

START_TEST(test_names)
{
	static const char *const names[] = { "chatml", "qwen2", "qwen2.5",
	    "qwen3", "llama2", "llama3", "llama3.1", "llama3.2",
	    "deepseek-r1", "mistral", "mistral-nemo", "phi3", "gemma" };
	struct tmpl t;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ck_assert_int_eq(tmpl_from_name(names[i], &t), 0);
	for (int k = 0; k < TMPL_KIND_COUNT; k++) {
		ck_assert_int_eq(tmpl_from_name(tmpl_kind_name(k), &t), 0);
		ck_assert_int_eq(t.kind, k);
		ck_assert_str_eq(tmpl_name(&t), tmpl_kind_name(k));
	}
	ck_assert_str_eq(tmpl_kind_name(TMPL_KIND_COUNT), "unknown");
	ck_assert_int_eq(tmpl_from_name("qwen2", &t), 0);
	ck_assert_str_eq(t.default_system, "You are a helpful assistant.");
	ck_assert_int_eq(tmpl_from_name("llama3.2", &t), 0);
	ck_assert(t.date_from_clock);

	/* which renderings carry the BOS text themselves */
	ck_assert(tmpl_emits_bos(&t));
	ck_assert_int_eq(tmpl_from_name("gemma", &t), 0);
	ck_assert(tmpl_emits_bos(&t));
	ck_assert_int_eq(tmpl_from_name("qwen3", &t), 0);
	ck_assert(!tmpl_emits_bos(&t));
	ck_assert_int_eq(tmpl_from_name("chatml", &t), 0);
	ck_assert(!tmpl_emits_bos(&t));
	t.bos = true;
	ck_assert(tmpl_emits_bos(&t));
	ck_assert(!tmpl_emits_bos(NULL));
}
END_TEST

START_TEST(test_thinking)
{
	struct tmpl t;
	struct tmpl_opts o;

	tmpl_opts_default(&o);
	ck_assert(o.add_generation_prompt && o.enable_thinking);
	ck_assert_int_eq(tmpl_from_name("deepseek-r1", &t), 0);
	ck_assert(tmpl_has_thinking(&t));
	ck_assert_str_eq(tmpl_think_open(&t), "<think>");
	ck_assert_str_eq(tmpl_think_close(&t), "</think>");
	ck_assert(tmpl_starts_in_thinking(&t, &o));
	o.enable_thinking = false;	/* this variant cannot switch it off */
	ck_assert(tmpl_starts_in_thinking(&t, &o));
	t.thinking_switch = true;
	ck_assert(!tmpl_starts_in_thinking(&t, &o));
	o.enable_thinking = true;
	o.add_generation_prompt = false;
	ck_assert(!tmpl_starts_in_thinking(&t, &o));

	ck_assert_int_eq(tmpl_from_name("qwen3", &t), 0);
	ck_assert(tmpl_has_thinking(&t) && tmpl_can_disable_thinking(&t));
	o.add_generation_prompt = true;
	ck_assert(!tmpl_starts_in_thinking(&t, &o));

	ck_assert_int_eq(tmpl_from_name("llama3.1", &t), 0);
	ck_assert(!tmpl_has_thinking(&t));
	ck_assert_ptr_null(tmpl_think_open(&t));
	ck_assert_ptr_null(tmpl_think_close(&t));
	ck_assert(!tmpl_can_disable_thinking(&t));
	ck_assert(!tmpl_has_thinking(NULL));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Limits                                                              */

START_TEST(test_limit_messages)
{
	size_t n = TMPL_MAX_MESSAGES + 1;
	struct tmpl_msg *m = calloc(n, sizeof(*m));
	struct tmpl t;
	struct eng_err err;
	char *out = NULL;
	size_t len = 0;

	ck_assert_ptr_nonnull(m);
	for (size_t i = 0; i < n; i++)
		m[i] = msg(i % 2 ? "assistant" : "user", "x");
	ck_assert_int_eq(tmpl_from_name("gemma", &t), 0);
	ck_assert_int_eq(render(&t, "<bos>", "<eos>", true, true, m, n, &out,
	    &len, &err), -E2BIG);
	ck_assert_ptr_null(out);
	/* exactly at the limit */
	ck_assert_int_eq(render(&t, "<bos>", "<eos>", true, true, m, n - 1,
	    &out, &len, &err), 0);
	ck_assert_uint_eq(len, strlen("<bos>") + (n - 1) / 2 *
	    (strlen("<start_of_turn>user\nx<end_of_turn>\n") +
	    strlen("<start_of_turn>model\nx<end_of_turn>\n")) +
	    strlen("<start_of_turn>model\n"));
	free(out);
	free(m);
}
END_TEST

START_TEST(test_limit_text)
{
	size_t half = TMPL_MAX_TEXT / 2;
	char *big = malloc(half + 1);
	struct tmpl_msg m[2];
	struct tmpl t;
	struct eng_err err;
	char *out = NULL;
	size_t len = 0;

	ck_assert_ptr_nonnull(big);
	memset(big, 'a', half + 1);
	m[0] = (struct tmpl_msg){ "user", 4, big, half };
	m[1] = (struct tmpl_msg){ "assistant", 9, big, half };
	ck_assert_int_eq(tmpl_from_name("chatml", &t), 0);
	/* the sum at the limit renders */
	ck_assert_int_eq(render(&t, "", "", false, true, m, 2, &out, &len,
	    &err), 0);
	ck_assert_uint_eq(len, 2 * half + strlen("<|im_start|>user\n"
	    "<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n"));
	free(out);
	out = NULL;
	m[1].content_len = half + 1;
	ck_assert_int_eq(render(&t, "", "", false, true, m, 2, &out, &len,
	    &err), -E2BIG);
	ck_assert_ptr_null(out);
	free(big);
}
END_TEST

START_TEST(test_limit_sizes)
{
	char role[TMPL_MAX_ROLE + 2], tok[TMPL_MAX_TOKEN + 2];
	struct tmpl_msg m = msg("user", "hi");
	struct tmpl t;
	struct eng_err err;
	char *out = NULL, *text;
	size_t len = 0;

	ck_assert_int_eq(tmpl_from_name("llama3", &t), 0);
	memset(role, 'r', sizeof(role) - 1);
	role[sizeof(role) - 1] = '\0';
	m.role = role;
	m.role_len = TMPL_MAX_ROLE + 1;
	ck_assert_int_eq(render(&t, "", "", true, true, &m, 1, &out, &len,
	    &err), -E2BIG);
	m = msg("user", "hi");
	memset(tok, 'b', sizeof(tok) - 1);
	tok[sizeof(tok) - 1] = '\0';
	ck_assert_int_eq(render(&t, tok, "", true, true, &m, 1, &out, &len,
	    &err), -E2BIG);
	ck_assert_int_eq(render(&t, "", tok, true, true, &m, 1, &out, &len,
	    &err), -E2BIG);
	tok[TMPL_MAX_TOKEN] = '\0';	/* exactly at the limit */
	ck_assert_int_eq(render(&t, tok, "", true, true, &m, 1, &out, &len,
	    &err), 0);
	free(out);

	text = malloc(TMPL_MAX_SOURCE + 1);
	ck_assert_ptr_nonnull(text);
	/* the template, then a comment filling it up to the limit */
	memset(text, ' ', TMPL_MAX_SOURCE + 1);
	memcpy(text, chatml_text, strlen(chatml_text));
	memcpy(text + strlen(chatml_text), "{#", 2);
	memcpy(text + TMPL_MAX_SOURCE - 2, "#}", 2);
	ck_assert_int_eq(tmpl_detect(text, TMPL_MAX_SOURCE + 1, &t), -E2BIG);
	ck_assert_int_eq(tmpl_detect(text, TMPL_MAX_SOURCE, &t), 0);
	ck_assert_int_eq(t.kind, TMPL_KIND_CHATML);
	free(text);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Errors                                                              */

START_TEST(test_unknown_template)
{
	static const char *const texts[] = { "", "{{ messages }}",
	    "plain text", "{% for m in messages %}{{ m.content }}{% endfor %}",
	    "{{ '<|im_start|>' + message['role'] }}", "{# open",
	    "{{ 'unterminated }}" };
	struct tmpl t, keep;

	memset(&keep, 0x5a, sizeof(keep));
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		t = keep;
		ck_assert_int_eq(tmpl_detect(texts[i], strlen(texts[i]), &t),
		    -ENOENT);
		ck_assert(memcmp(&t, &keep, sizeof(t)) == 0);
	}
	ck_assert_int_eq(tmpl_detect(NULL, 0, &t), -EINVAL);
	ck_assert_int_eq(tmpl_detect("x", 1, NULL), -EINVAL);
	ck_assert_int_eq(tmpl_from_name("chatml2", &t), -ENOENT);
	ck_assert_int_eq(tmpl_from_name("ChatML", &t), -ENOENT);
	ck_assert_int_eq(tmpl_from_name("", &t), -ENOENT);
	ck_assert_int_eq(tmpl_from_name(NULL, &t), -EINVAL);
}
END_TEST

/* Fill n bytes of buf with copies of pat. */
static void
fill_pattern(char *buf, size_t n, const char *pat)
{
	size_t k = strlen(pat), i;

	for (i = 0; i < n; i++)
		buf[i] = pat[i % k];
}

/*
 * Hostile chat templates from model files: a megabyte of unbalanced
 * tags, deep nesting around real markers, unterminated blocks. Each is
 * not recognised (-ENOENT), quickly, and leaves *out alone.
 */
START_TEST(test_hostile_templates)
{
	static const char *const pats[] = {
		"{% if x %}", "{{", "{%", "{#", "}}{{", "{% for m in messages %}",
		"{% endif %}", "<|im_start|>{{ message['role'] }}{%",
		"{{ '", "\"'",
	};
	const size_t n = TMPL_MAX_SOURCE;
	struct timespec t0, t1;
	struct tmpl t, keep;
	char *text;
	size_t i, depth, off, cl = strlen(chatml_text);
	int rc;

	text = malloc(n);
	ck_assert_ptr_nonnull(text);
	memset(&keep, 0x3c, sizeof(keep));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
		fill_pattern(text, n, pats[i]);
		t = keep;
		ck_assert_int_eq(tmpl_detect(text, n, &t), -ENOENT);
		ck_assert(memcmp(&t, &keep, sizeof(t)) == 0);
	}
	/*
	 * A real template deep inside 50,000 ifs. Detection goes by
	 * markers, not by parsing Jinja: left open, the ifs do not hide
	 * the ChatML markers (and rendering is native, so nothing of the
	 * junk runs); with a cut tag at the end it is refused.
	 */
	depth = 50000;
	fill_pattern(text, depth * 10, "{% if x %}");
	memcpy(text + depth * 10, chatml_text, cl);
	off = depth * 10 + cl;
	fill_pattern(text + off, n - off, "{% endif %}");
	t = keep;
	ck_assert_int_eq(tmpl_detect(text, n, &t), -ENOENT);
	ck_assert(memcmp(&t, &keep, sizeof(t)) == 0);
	rc = tmpl_detect(text, off, &t);
	ck_assert(rc == 0 || rc == -ENOENT);
	if (rc == 0)
		ck_assert_int_eq(t.kind, TMPL_KIND_CHATML);
	/* the template cut short at every length: never a family */
	for (i = 0; i + 1 < cl; i += 7)
		ck_assert_int_eq(tmpl_detect(chatml_text, i, &t), -ENOENT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_msg(t1.tv_sec - t0.tv_sec < 10,
	    "hostile templates took %ld s", (long)(t1.tv_sec - t0.tv_sec));
	free(text);
}
END_TEST

START_TEST(test_bad_messages)
{
	struct tmpl_msg m[2];
	struct tmpl t;
	struct tmpl_opts o;
	struct eng_err err;
	char *out = (char *)&err, *keep = out;
	size_t len = 77;

	ck_assert_int_eq(tmpl_from_name("chatml", &t), 0);
	/* unknown role, a role of another family, a role with a NUL */
	m[0] = msg("robot", "x");
	ck_assert_int_eq(render(&t, "", "", true, true, m, 1, &out, &len,
	    &err), -EINVAL);
	ck_assert_str_eq(err.msg, "message 0: role \"robot\" is not "
	    "supported by the chatml template");
	m[0] = msg("ipython", "x");
	ck_assert_int_eq(render(&t, "", "", true, true, m, 1, &out, &len,
	    &err), -EINVAL);
	m[0] = (struct tmpl_msg){ "user\0x", 6, "x", 1 };
	ck_assert_int_eq(render(&t, "", "", true, true, m, 1, &out, &len,
	    &err), -EINVAL);
	ck_assert_str_eq(err.msg, "message 0: role \"user?x\" is not "
	    "supported by the chatml template");
	m[0] = (struct tmpl_msg){ "User", 4, "x", 1 };
	ck_assert_int_eq(render(&t, "", "", true, true, m, 1, &out, &len,
	    &err), -EINVAL);
	ck_assert_int_eq(tmpl_from_name("gemma", &t), 0);
	m[0] = msg("user", "x");
	m[1] = msg("tool", "y");
	ck_assert_int_eq(render(&t, "", "", true, true, m, 2, &out, &len,
	    &err), -EINVAL);
	ck_assert_int_eq(tmpl_from_name("chatml", &t), 0);

	/* invalid UTF-8: stray continuation, overlong, surrogate, too big,
	 * truncated */
	static const char *const bad[] = { "a\x80", "\xc0\xaf", "\xed\xa0\x80",
	    "\xf4\x90\x80\x80", "\xe2\x82", "\xff" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m[0] = msg("user", bad[i]);
		ck_assert_int_eq(render(&t, "", "", true, true, m, 1, &out,
		    &len, &err), -EINVAL);
		ck_assert_str_eq(err.msg, "message 0: content is not valid "
		    "UTF-8");
	}
	m[0] = msg("user", "ok");
	ck_assert_int_eq(render(&t, "\xff", "", true, true, m, 1, &out, &len,
	    &err), -EINVAL);

	/* no messages, NULL pointers */
	ck_assert_int_eq(render(&t, "", "", true, true, m, 0, &out, &len,
	    &err), -EINVAL);
	ck_assert_int_eq(render(&t, "", "", true, true, NULL, 1, &out, &len,
	    &err), -EINVAL);
	m[0] = (struct tmpl_msg){ "user", 4, NULL, 3 };
	ck_assert_int_eq(render(&t, "", "", true, true, m, 1, &out, &len,
	    &err), -EINVAL);
	m[0] = (struct tmpl_msg){ NULL, 4, "x", 1 };
	ck_assert_int_eq(render(&t, "", "", true, true, m, 1, &out, &len,
	    &err), -EINVAL);
	tmpl_opts_default(&o);
	m[0] = msg("user", "x");
	ck_assert_int_eq(tmpl_render(NULL, &o, m, 1, &out, &len, NULL),
	    -EINVAL);
	ck_assert_int_eq(tmpl_render(&t, NULL, m, 1, &out, &len, NULL),
	    -EINVAL);
	ck_assert_int_eq(tmpl_render(&t, &o, m, 1, NULL, &len, NULL), -EINVAL);
	ck_assert_int_eq(tmpl_render(&t, &o, m, 1, &out, NULL, NULL), -EINVAL);
	t.kind = TMPL_KIND_COUNT;
	ck_assert_int_eq(tmpl_render(&t, &o, m, 1, &out, &len, NULL), -EINVAL);

	/* outputs untouched on every failure */
	ck_assert_ptr_eq(out, keep);
	ck_assert_uint_eq(len, 77);

	/* empty content (NULL pointer, zero length) is fine */
	ck_assert_int_eq(tmpl_from_name("chatml", &t), 0);
	m[0] = (struct tmpl_msg){ "user", 4, NULL, 0 };
	ck_assert_int_eq(tmpl_render(&t, &o, m, 1, &out, &len, NULL), 0);
	ck_assert_str_eq(out, "<|im_start|>user\n<|im_end|>\n"
	    "<|im_start|>assistant\n");
	free(out);
}
END_TEST

static Suite *
template_suite(void)
{
	Suite *s = suite_create("template");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_test(core, test_expected_json);
	tcase_add_test(core, test_detect_files);
	tcase_add_loop_test(core, test_hand_by_name, 0, (int)NHCASES);
	tcase_add_test(core, test_hand_detected);
	tcase_add_test(core, test_binary_content);
	tcase_add_test(core, test_unicode_trim);
	tcase_add_test(core, test_llama_dates);
	tcase_add_test(core, test_detect_text);
	tcase_add_test(core, test_names);
	tcase_add_test(core, test_thinking);
	tcase_set_timeout(limits, 60);
	tcase_add_test(limits, test_limit_messages);
	tcase_add_test(limits, test_limit_text);
	tcase_add_test(limits, test_limit_sizes);
	tcase_add_test(errors, test_unknown_template);
	tcase_add_test(errors, test_bad_messages);
	tcase_add_test(errors, test_hostile_templates);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(template_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
