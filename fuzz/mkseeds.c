/*
 * mkseeds.c - write the seed corpora of the fuzz targets with the
 * project's own writers: GGUF models and vocabularies (tests/gguf_write.c,
 * tests/mkmodel_lib.c), recorded protocol frames (proto_pack_request and
 * proto_pack_response), texts and id lists for the tokenizers and
 * conversations for the templates (with the real templates and tokenizer
 * test strings of $HEARTH_TESTDATA when it is set).
 *
 *	mkseeds OUTDIR		writes OUTDIR/{gguf,proto,template,tokenizer}/
 *
 * The input layouts are those described at the top of each fuzz_*.c.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzzutil.h"
#include "gguf_write.h"
#include "kernels.h"
#include "mkmodel_lib.h"
#include "proto.h"
#include "testutil.h"

static const char *ms_out;
static int ms_count;

static void
ms_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mkseeds: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static const char *
ms_path(const char *target, const char *name)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/%s/%s", ms_out, target, name);
	return path;
}

/* Write prefix (plen bytes) then p (len bytes) as target/name. */
static void
ms_write2(const char *target, const char *name, const void *prefix,
    size_t plen, const void *p, size_t len)
{
	const char *path = ms_path(target, name);
	FILE *f = fopen(path, "wb");

	if (f == NULL || (plen > 0 && fwrite(prefix, 1, plen, f) != plen) ||
	    (len > 0 && fwrite(p, 1, len, f) != len) || fclose(f) != 0)
		ms_die("%s: %s", path, strerror(errno));
	ms_count++;
}

static void
ms_write(const char *target, const char *name, const void *p, size_t len)
{
	ms_write2(target, name, NULL, 0, p, len);
}

/* --- gguf ---------------------------------------------------------------- */

static void
ms_writer_out(struct gguf_writer *w, const char *name)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (gguf_writer_to_buf(w, &buf, &len) < 0)
		ms_die("gguf %s: cannot serialize", name);
	ms_write("gguf", name, buf, len);
	/* the same file as GGUF version 2 */
	if (strcmp(name, "kinds.gguf") == 0 && len >= 8) {
		buf[4] = 2;
		ms_write("gguf", "kinds-v2.gguf", buf, len);
	}
	free(buf);
	gguf_writer_free(w);
}

static void
ms_model(const char *name, const char *arch, uint32_t type, uint32_t embd,
    bool tied, bool rope_freqs)
{
	struct mkm_spec s;
	struct eng_err e = { "" };

	mkm_spec_default(&s);
	s.arch = arch;
	s.n_embd = embd;
	s.n_ff = embd * 2;
	s.n_layer = 1;
	s.n_head = 2;
	s.n_head_kv = 1;
	s.n_ctx = 64;
	s.wtype = type;
	s.embd_type = type;
	s.out_type = type;
	s.tied = tied;
	s.rope_freqs = rope_freqs;
	s.n_vocab = 3 + 256 + 8;
	if (mkm_write(&s, ms_path("gguf", name), &e) < 0)
		ms_die("gguf %s: %s", name, e.msg);
	ms_count++;
}

/* Every value type and several tensor types in one file. */
static void
ms_kinds(void)
{
	static const char *const strs[] = { "a", "", "ccc" };
	const uint8_t u8s[3] = { 1, 2, 255 };
	const int16_t i16s[2] = { -1, 300 };
	const double f64s[2] = { 0.5, -1e300 };
	const uint64_t ne2[2] = { 32, 2 }, ne1[1] = { 256 }, ne4[4] =
	    { 2, 1, 2, 1 };
	uint8_t data[1024];
	struct gguf_writer *w = NULL;

	memset(data, 0x11, sizeof(data));
	if (gguf_writer_new(&w) < 0)
		ms_die("writer");
	gguf_writer_set_str(w, "general.architecture", "llama");
	gguf_writer_set_u32(w, "general.alignment", 64);
	gguf_writer_set_u32(w, "test.u32", 7);
	gguf_writer_set_i32(w, "test.i32", -7);
	gguf_writer_set_u64(w, "test.u64", 1ull << 40);
	gguf_writer_set_f32(w, "test.f32", 1.5f);
	gguf_writer_set_bool(w, "test.bool", 1);
	gguf_writer_set_str(w, "test.str", "hello");
	gguf_writer_set_arr(w, "test.u8s", GGUF_VTYPE_UINT8, u8s, 3);
	gguf_writer_set_arr(w, "test.i16s", GGUF_VTYPE_INT16, i16s, 2);
	gguf_writer_set_arr(w, "test.f64s", GGUF_VTYPE_FLOAT64, f64s, 2);
	gguf_writer_set_arr_str(w, "test.strs", strs, NULL, 3);
	gguf_writer_add_tensor(w, "t.f32", 2, ne2, KERN_TYPE_F32, data,
	    32 * 2 * 4);
	gguf_writer_add_tensor(w, "t.q8_0", 1, ne1, KERN_TYPE_Q8_0, data,
	    gguf_type_nbytes(KERN_TYPE_Q8_0, 256));
	gguf_writer_add_tensor(w, "t.q4_k", 1, ne1, KERN_TYPE_Q4_K, data,
	    gguf_type_nbytes(KERN_TYPE_Q4_K, 256));
	gguf_writer_add_tensor(w, "t.f16", 4, ne4, KERN_TYPE_F16, data, 8);
	ms_writer_out(w, "kinds.gguf");
}

static void
ms_vocabs(void)
{
	static const char *const pres[] = {
		"gpt-2", "llama-bpe", "qwen2", "deepseek-llm", NULL
	};
	struct gguf_writer *w = NULL;
	char name[64];
	size_t i;

	if (gguf_writer_new(&w) < 0 || fz_vocab_spm(w) < 0)
		ms_die("spm vocab");
	gguf_writer_set_str(w, "general.architecture", "llama");
	gguf_writer_set_str(w, "tokenizer.chat_template",
	    "{% for message in messages %}{{'<|im_start|>' + message['role'] "
	    "+ '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
	    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
	    "{% endif %}");
	ms_writer_out(w, "vocab-spm.gguf");
	for (i = 0; i < sizeof(pres) / sizeof(pres[0]); i++) {
		if (gguf_writer_new(&w) < 0 || fz_vocab_bpe(w, pres[i]) < 0)
			ms_die("bpe vocab");
		gguf_writer_set_str(w, "general.architecture", "qwen2");
		snprintf(name, sizeof(name), "vocab-bpe-%s.gguf",
		    pres[i] ? pres[i] : "none");
		ms_writer_out(w, name);
	}
}

static void
ms_gguf(void)
{
	ms_model("llama-f32.gguf", "llama", KERN_TYPE_F32, 8, false, false);
	ms_model("llama-f32-tied-rope.gguf", "llama", KERN_TYPE_F32, 8, true,
	    true);
	ms_model("qwen2-f16.gguf", "qwen2", KERN_TYPE_F16, 8, false, false);
	ms_model("llama-q8_0.gguf", "llama", KERN_TYPE_Q8_0, 32, true, false);
	ms_model("qwen2-q4_0.gguf", "qwen2", KERN_TYPE_Q4_0, 32, true, false);
	ms_kinds();
	ms_vocabs();
}

/* --- proto --------------------------------------------------------------- */

static const struct proto_limits *
ms_limits(void)
{
	static struct proto_limits l;

	proto_limits_default(&l);
	return &l;
}

/* Record one frame: as a stream (mode 0 and 6: pieces of 1 and 4096
 * bytes) and as a bare body (mode 1). */
static void
ms_frame(const char *name, const struct proto_buf *b)
{
	char fn[128];
	uint8_t mode;

	mode = 0x00;
	snprintf(fn, sizeof(fn), "%s.stream", name);
	ms_write2("proto", fn, &mode, 1, b->data, b->len);
	mode = 0x01;
	snprintf(fn, sizeof(fn), "%s.body", name);
	ms_write2("proto", fn, &mode, 1, b->data + PROTO_HDR_SIZE,
	    b->len - PROTO_HDR_SIZE);
}

static void
ms_req(const char *name, const struct proto_request *r, struct proto_buf *all)
{
	struct proto_buf b;
	struct proto_err e;

	proto_buf_init(&b);
	if (proto_pack_request(&b, r, ms_limits(), &e) < 0)
		ms_die("proto %s: %s", name, e.msg);
	ms_frame(name, &b);
	if (proto_buf_append(all, b.data, b.len) < 0)
		ms_die("proto: out of memory");
	proto_buf_free(&b);
}

static void
ms_res(const char *name, const struct proto_response *r,
    struct proto_buf *all)
{
	struct proto_buf b;
	struct proto_err e;

	proto_buf_init(&b);
	if (proto_pack_response(&b, r, ms_limits(), &e) < 0)
		ms_die("proto %s: %s", name, e.msg);
	ms_frame(name, &b);
	if (proto_buf_append(all, b.data, b.len) < 0)
		ms_die("proto: out of memory");
	proto_buf_free(&b);
}

static void
ms_requests(struct proto_buf *all)
{
	static const int32_t ids[] = { 1, 2, 3, 31999 };
	static const char *stop[] = { "\n\n", "User:" };
	static const struct proto_message msgs[] = {
		{ "system", "You are terse.", 14 },
		{ "user", "Hello", 5 },
		{ "assistant", "Hi!", 3 },
		{ "user", "caf\xc3\xa9?", 6 },
	};
	struct proto_request r;
	struct proto_gen_opts *o;

	proto_request_init(&r, PROTO_MSG_HELLO, 1);
	r.u.hello.client = "fuzz";
	ms_req("hello", &r, all);
	proto_request_init(&r, PROTO_MSG_LIST, 2);
	ms_req("list", &r, all);
	proto_request_init(&r, PROTO_MSG_SHOW, 3);
	r.u.show.model = "tiny";
	ms_req("show", &r, all);
	proto_request_init(&r, PROTO_MSG_LOAD, 4);
	r.u.load.model = "tiny";
	r.u.load.has_keep_alive = true;
	r.u.load.keep_alive = -1;
	ms_req("load", &r, all);
	proto_request_init(&r, PROTO_MSG_UNLOAD, 5);
	r.u.unload.model = "tiny";
	ms_req("unload", &r, all);
	proto_request_init(&r, PROTO_MSG_PS, 6);
	ms_req("ps", &r, all);

	proto_request_init(&r, PROTO_MSG_GENERATE, 7);
	r.u.generate.model = "tiny";
	r.u.generate.input.text = "Once upon a time";
	r.u.generate.input.text_len = 16;
	o = &r.u.generate.opts;
	o->max_tokens = 32;
	o->stop = stop;
	o->n_stop = 2;
	o->sampling.set = PROTO_S_ALL;
	o->sampling.temperature = 0.7f;
	o->sampling.top_k = 40;
	o->sampling.top_p = 0.9f;
	o->sampling.min_p = 0.05f;
	o->sampling.repeat_penalty = 1.1f;
	o->sampling.presence_penalty = 0.5f;
	o->sampling.frequency_penalty = -0.5f;
	o->sampling.penalty_last_n = 64;
	o->sampling.seed = 42;
	o->top_logprobs = 3;
	o->stream = false;
	o->has_keep_alive = true;
	o->keep_alive = 300;
	ms_req("generate-text", &r, all);
	proto_request_init(&r, PROTO_MSG_GENERATE, 8);
	r.u.generate.model = "tiny";
	r.u.generate.input.ids = ids;
	r.u.generate.input.n_ids = 4;
	ms_req("generate-ids", &r, all);

	proto_request_init(&r, PROTO_MSG_CHAT, 9);
	r.u.chat.model = "tiny";
	r.u.chat.messages = msgs;
	r.u.chat.n_messages = 4;
	r.u.chat.thinking = PROTO_THINK_OFF;
	r.u.chat.template = "chatml";
	r.u.chat.opts.max_tokens = 8;
	r.u.chat.opts.sampling.set = PROTO_S_TEMPERATURE | PROTO_S_SEED;
	r.u.chat.opts.sampling.temperature = 0;
	ms_req("chat", &r, all);
	proto_request_init(&r, PROTO_MSG_RENDER, 10);
	r.u.chat.model = "tiny";
	r.u.chat.messages = msgs + 1;
	r.u.chat.n_messages = 1;
	r.u.chat.thinking = PROTO_THINK_ON;
	ms_req("render", &r, all);

	proto_request_init(&r, PROTO_MSG_EVAL, 11);
	r.u.eval.model = "tiny";
	r.u.eval.input.text = "abc";
	r.u.eval.input.text_len = 3;
	r.u.eval.top = 2;
	r.u.eval.add_bos = false;
	ms_req("eval", &r, all);
	proto_request_init(&r, PROTO_MSG_EMBED, 12);
	r.u.embed.model = "tiny";
	r.u.embed.input.ids = ids;
	r.u.embed.input.n_ids = 3;
	ms_req("embed", &r, all);
	proto_request_init(&r, PROTO_MSG_TOKENIZE, 13);
	r.u.tokenize.model = "tiny";
	r.u.tokenize.text = "Hello <s> world";
	r.u.tokenize.text_len = 15;
	r.u.tokenize.special = true;
	ms_req("tokenize", &r, all);
	proto_request_init(&r, PROTO_MSG_DETOKENIZE, 14);
	r.u.detokenize.model = "tiny";
	r.u.detokenize.ids = ids;
	r.u.detokenize.n_ids = 4;
	r.u.detokenize.special = true;
	ms_req("detokenize", &r, all);
	proto_request_init(&r, PROTO_MSG_CANCEL, 15);
	r.u.cancel.target = 7;
	ms_req("cancel", &r, all);
	proto_request_init(&r, PROTO_MSG_STATS, 16);
	ms_req("stats", &r, all);
	proto_request_init(&r, PROTO_MSG_PING, UINT64_MAX);
	ms_req("ping", &r, all);
}

static void
ms_responses(struct proto_buf *all)
{
	static const int32_t ids[] = { 1, 5, 9 };
	static const float lps[] = { -0.5f, -1.25f };
	static const int32_t top_ids[] = { 5, 6, 9, 2 };
	static const float top_lps[] = { -0.5f, -2, -1.25f, -3 };
	static const float emb[] = { 0.6f, 0.8f };
	static const struct proto_model_info models[] = {
		{ "tiny", 12345, "llama", "F32", 1000, "mit", true },
		{ "other", 1, "", "", 0, "", false },
	};
	static const struct proto_ps_entry ps[] = {
		{ "tiny", 4096, "thp", 2, 77, -1, 2048, 1024, 1024, 0, 0,
		    2048, 0, true, "local: one node" },
	};
	struct proto_meta meta[6];
	struct proto_response r;

	memset(meta, 0, sizeof(meta));
	meta[0].key = "general.architecture";
	meta[0].type = PROTO_META_STR;
	meta[0].s = "llama";
	meta[0].s_len = 5;
	meta[1].key = "llama.block_count";
	meta[1].type = PROTO_META_UINT;
	meta[1].u = 2;
	meta[2].key = "test.i";
	meta[2].type = PROTO_META_INT;
	meta[2].i = -3;
	meta[3].key = "test.f";
	meta[3].type = PROTO_META_FLOAT;
	meta[3].f = 1e-5;
	meta[4].key = "test.b";
	meta[4].type = PROTO_META_BOOL;
	meta[4].b = true;
	meta[5].key = "tokenizer.ggml.tokens";
	meta[5].type = PROTO_META_ARRAY;
	meta[5].elem = "string";
	meta[5].n = 512;

	proto_response_init(&r, PROTO_MSG_REPLY, 1);
	r.request = PROTO_MSG_HELLO;
	r.u.hello.version = PROTO_VERSION;
	r.u.hello.server = "hearthd 0.1.0";
	proto_limits_default(&r.u.hello.limits);
	ms_res("reply-hello", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 2);
	r.request = PROTO_MSG_LIST;
	r.u.list.models = models;
	r.u.list.n_models = 2;
	ms_res("reply-list", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 3);
	r.request = PROTO_MSG_SHOW;
	r.u.show.model = "tiny";
	r.u.show.meta = meta;
	r.u.show.n_meta = 6;
	ms_res("reply-show", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 4);
	r.request = PROTO_MSG_LOAD;
	r.u.load.model = "tiny";
	r.u.load.memory = 1 << 20;
	r.u.load.ms = 12.5;
	ms_res("reply-load", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 6);
	r.request = PROTO_MSG_PS;
	r.u.ps.models = ps;
	r.u.ps.n_models = 1;
	ms_res("reply-ps", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 10);
	r.request = PROTO_MSG_RENDER;
	r.u.render.prompt = "<|im_start|>user\nHello<|im_end|>\n";
	r.u.render.prompt_len = strlen(r.u.render.prompt);
	r.u.render.template = "chatml";
	ms_res("reply-render", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 11);
	r.request = PROTO_MSG_EVAL;
	r.u.eval.tokens = ids;
	r.u.eval.n_tokens = 3;
	r.u.eval.logprobs = lps;
	r.u.eval.top = 2;
	r.u.eval.top_ids = top_ids;
	r.u.eval.top_logprobs = top_lps;
	ms_res("reply-eval", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 12);
	r.request = PROTO_MSG_EMBED;
	r.u.embed.embedding = emb;
	r.u.embed.n = 2;
	r.u.embed.tokens = 3;
	ms_res("reply-embed", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 13);
	r.request = PROTO_MSG_TOKENIZE;
	r.u.tokenize.ids = ids;
	r.u.tokenize.n_ids = 3;
	ms_res("reply-tokenize", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 14);
	r.request = PROTO_MSG_DETOKENIZE;
	r.u.detokenize.text = "Hello";
	r.u.detokenize.text_len = 5;
	ms_res("reply-detokenize", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 15);
	r.request = PROTO_MSG_CANCEL;
	r.u.cancel.found = true;
	ms_res("reply-cancel", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 16);
	r.request = PROTO_MSG_STATS;
	r.u.stats.uptime = 100;
	r.u.stats.connections = 3;
	r.u.stats.requests = 50;
	r.u.stats.prompt_tokens = 1000;
	r.u.stats.generated_tokens = 2000;
	r.u.stats.models = 1;
	r.u.stats.memory = 1 << 30;
	ms_res("reply-stats", &r, all);
	proto_response_init(&r, PROTO_MSG_REPLY, 17);
	r.request = PROTO_MSG_PING;
	ms_res("reply-ping", &r, all);

	proto_response_init(&r, PROTO_MSG_TOKEN, 7);
	r.u.token.text = " the";
	r.u.token.text_len = 4;
	r.u.token.token = 278;
	r.u.token.thinking = true;
	r.u.token.has_logprob = true;
	r.u.token.logprob = -0.25f;
	r.u.token.top_ids = top_ids;
	r.u.token.top_logprobs = top_lps;
	r.u.token.n_top = 2;
	ms_res("token", &r, all);
	proto_response_init(&r, PROTO_MSG_PROGRESS, 4);
	r.u.progress.done = 10;
	r.u.progress.total = 100;
	ms_res("progress", &r, all);
	proto_response_init(&r, PROTO_MSG_DONE, 7);
	r.u.done.reason = PROTO_REASON_STOP;
	r.u.done.prompt_tokens = 5;
	r.u.done.cached_tokens = 2;
	r.u.done.generated_tokens = 9;
	r.u.done.prefill_ms = 1.5;
	r.u.done.decode_ms = 20;
	r.u.done.text = "Hello";
	r.u.done.text_len = 5;
	r.u.done.thinking = "hmm";
	r.u.done.thinking_len = 3;
	ms_res("done", &r, all);
	proto_response_init(&r, PROTO_MSG_DONE, 8);
	r.u.done.reason = PROTO_REASON_ERROR;
	r.u.done.error_code = PROTO_E_MODEL_ERROR;
	r.u.done.error_message = "the model failed";
	ms_res("done-error", &r, all);
	proto_response_init(&r, PROTO_MSG_ERROR, 0);
	r.u.error.code = PROTO_E_TOO_LARGE;
	r.u.error.message = "frame of 4294967295 bytes";
	ms_res("error", &r, all);
}

static void
ms_proto(void)
{
	struct proto_buf all;
	uint8_t mode;

	proto_buf_init(&all);
	ms_requests(&all);
	ms_responses(&all);
	/* everything in one stream, read 7 bytes at a time */
	mode = 3 << 1;
	ms_write2("proto", "all.stream", &mode, 1, all.data, all.len);
	proto_buf_free(&all);
	/* the hostile frames */
	ms_write("proto", "hostile-dd", "\x01\xdd\xff\x00\x00\x00", 6);
	ms_write("proto", "hostile-4g", "\x00\xff\xff\xff\xff", 5);
	ms_write("proto", "hostile-cut", "\x00\x00\x00\x00\x20\x82\xa4type",
	    11);
}

/* --- tokenizer ------------------------------------------------------------ */

static void
ms_tok_text(int vocab, unsigned flags, const char *name, const void *text,
    size_t len)
{
	uint8_t pre[2] = { (uint8_t)vocab, (uint8_t)flags };

	ms_write2("tokenizer", name, pre, 2, text, len);
}

static void
ms_tokenizer(void)
{
	static const char *const texts[] = {
		"Hello world",
		" leading space, trailing  ",
		("caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
		    "\xf0\x9f\x98\x80"),
		"<s>[INST] hi [/INST]</s> <|im_start|>user\n<|im_end|>",
		"<x> <c> <u> <|endoftext|>",
		"123 4567 89.0 3.14159 1,000,000",
		"\t\n\r\n  \n\n\n   x",
		"don't we'll I'M they've",
		"\xe2\x96\x81 marker \xe2\x96\x81\xe2\x96\x81",
		"abcabcabc aaaa bcbc",
		"\xff\xfe not utf-8 \xc3",
	};
	const char *dir = getenv("HEARTH_TESTDATA");
	static const uint8_t id_seq[] = {
		1, 0, 4, 1, 8, 1, 0x47, 0, 0xc3, 0, 0xa9, 0, 0xff, 0xff,
	};
	char name[64];
	size_t i;
	int v, k = 0;

	for (v = 0; v < 12; v++) {
		for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
			snprintf(name, sizeof(name), "text-%02d-%02zu", v, i);
			ms_tok_text(v, (i % 4) | (i & 4 ? 0x30 : 0), name,
			    texts[i], strlen(texts[i]));
		}
		snprintf(name, sizeof(name), "ids-%02d", v);
		ms_tok_text(v, 0x1c, name, id_seq, sizeof(id_seq));
		snprintf(name, sizeof(name), "raw-%02d", v);
		ms_tok_text(v, 0x28, name, "\x01\x00\x00\x00\x02\x00\x00\x00"
		    "\xff\xff\xff\xff", 12);
	}
	/* llama.cpp's tokenizer test strings, against each real vocabulary */
	if (dir != NULL && *dir != '\0') {
		static const char *const inps[] = {
			"llama-spm", "phi-3", "llama-bpe", "qwen2",
			"deepseek-llm", "gpt-2",
		};
		static const char sep[] = "\n__ggml_vocab_test__\n";
		char path[4096];
		uint8_t *text;
		size_t len;
		const char *p, *q, *end;

		for (i = 0; i < sizeof(inps) / sizeof(inps[0]); i++) {
			snprintf(path, sizeof(path),
			    "%s/vocab/ggml-vocab-%s.gguf.inp", dir, inps[i]);
			if ((text = tu_read_file(path, &len)) == NULL)
				continue;
			end = (const char *)text + len;
			for (p = (const char *)text, k = 0; p < end; k++) {
				q = memmem(p, (size_t)(end - p), sep,
				    sizeof(sep) - 1);
				if (q == NULL)
					q = end;
				snprintf(name, sizeof(name), "inp-%02zu-%02d",
				    i, k);
				ms_tok_text(5 + (int)i, 0, name, p,
				    (size_t)(q - p));
				p = q == end ? end : q + sizeof(sep) - 1;
			}
			free(text);
		}
	}
}

/* --- template --------------------------------------------------------------- */

static void
ms_template(void)
{
	static const char conv[] =
	    "\x02You are helpful.\xfe\x00Hello\xfe\x01Hi there!\xfe"
	    "\x00What is 2+2? caf\xc3\xa9";
	static const char tool[] =
	    "\x00What time is it?\xfe\x01<tool_call>now()</tool_call>\xfe"
	    "\x03" "12:00\xfe\x04{\"a\":1}";
	static const char think[] =
	    "\x00Q1\xfe\x01<think>\nhmm\n</think>\n\nA1\xfe\x00Q2";
	static const char odd[] =
	    "\xfd" "developer\xfd" "be nice\xfe\x00\xfe\x01\xfe\x02late system";
	const char *dir = getenv("HEARTH_TESTDATA");
	char name[300];
	uint8_t pre[2];
	int k;

	for (k = 0; k < 14; k++) {
		pre[0] = (uint8_t)(k & 7);
		pre[1] = (uint8_t)(k | (k << 4));
		snprintf(name, sizeof(name), "conv-%02d", k);
		ms_write2("template", name, pre, 2, conv, sizeof(conv) - 1);
		snprintf(name, sizeof(name), "tool-%02d", k);
		ms_write2("template", name, pre, 2, tool, sizeof(tool) - 1);
		snprintf(name, sizeof(name), "think-%02d", k);
		ms_write2("template", name, pre, 2, think, sizeof(think) - 1);
		snprintf(name, sizeof(name), "odd-%02d", k);
		ms_write2("template", name, pre, 2, odd, sizeof(odd) - 1);
	}
	/* the real templates, each with a conversation */
	if (dir != NULL && *dir != '\0') {
		char path[4096];
		struct dirent *d;
		uint8_t *text, *buf;
		size_t len;
		DIR *dp;

		snprintf(path, sizeof(path), "%s/templates", dir);
		if ((dp = opendir(path)) == NULL)
			return;
		while ((d = readdir(dp)) != NULL) {
			size_t nl = strlen(d->d_name);

			if (nl < 6 || strcmp(d->d_name + nl - 6, ".jinja") != 0)
				continue;
			snprintf(path, sizeof(path), "%s/templates/%s", dir,
			    d->d_name);
			if ((text = tu_read_file(path, &len)) == NULL)
				continue;
			buf = malloc(2 + len + 1 + sizeof(conv));
			if (buf == NULL)
				ms_die("out of memory");
			buf[0] = 0x0b;
			buf[1] = 0x00;
			memcpy(buf + 2, text, len);
			buf[2 + len] = 0xff;
			memcpy(buf + 3 + len, conv, sizeof(conv) - 1);
			snprintf(name, sizeof(name), "real-%.200s", d->d_name);
			ms_write("template", name, buf,
			    2 + len + 1 + sizeof(conv) - 1);
			free(buf);
			free(text);
		}
		closedir(dp);
	}
}

int
main(int argc, char **argv)
{
	static const char *const sub[] = { "gguf", "proto", "template",
	    "tokenizer" };
	char path[4096];
	size_t i;

	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds OUTDIR\n");
		return 2;
	}
	ms_out = argv[1];
	if (mkdir(ms_out, 0755) != 0 && errno != EEXIST)
		ms_die("%s: %s", ms_out, strerror(errno));
	for (i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", ms_out, sub[i]);
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			ms_die("%s: %s", path, strerror(errno));
	}
	ms_gguf();
	ms_proto();
	ms_tokenizer();
	ms_template();
	printf("mkseeds: %d seeds in %s\n", ms_count, ms_out);
	return 0;
}
