/*
 * check_proto.c - the wire protocol: round trips of every message
 * through the packer, the incremental frame reader (fed byte by byte)
 * and the decoder; and one test per kind of malformed input, the
 * hostile ones also run in a child with a low address-space limit so
 * that any allocation sized from a declared length would fail loudly.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <msgpack.h>

#include "proto.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static struct proto_limits lim;

static void
setup(void)
{
	proto_limits_default(&lim);
}

/* ---- helpers ---- */

static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool
text_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	if (a == NULL || b == NULL)
		return a == b && alen == blen;
	return alen == blen && memcmp(a, b, alen) == 0;
}

static bool
ids_eq(const int32_t *a, uint32_t na, const int32_t *b, uint32_t nb)
{
	return na == nb && (na == 0 || memcmp(a, b, na * sizeof(*a)) == 0);
}

static bool
floats_eq(const float *a, const float *b, size_t n)
{
	return n == 0 || memcmp(a, b, n * sizeof(*a)) == 0;
}

/*
 * Feed a buffer holding exactly one frame to a fresh reader one byte at
 * a time: no frame until the last byte, then exactly one. The body is
 * copied out (the reader's pointer dies with the reader).
 */
static uint8_t *
reframe(const struct proto_buf *b, size_t *len)
{
	struct proto_reader	*r;
	struct proto_err	 e;
	const uint8_t		*body = NULL;
	uint8_t			*copy;
	size_t			 i, blen = 0;
	int			 rc;

	ck_assert_int_eq(proto_reader_new(lim.max_frame, &r), 0);
	/* (plain ifs: a passing ck_assert costs a write to the runner) */
	for (i = 0; i < b->len; i++) {
		if (proto_reader_feed(r, b->data + i, 1, &e) != 0)
			ck_abort_msg("feed byte %zu: %s", i, e.msg);
		rc = proto_reader_next(r, &body, &blen, &e);
		if (rc != (i + 1 == b->len ? 1 : 0))
			ck_abort_msg("next after byte %zu of %zu: %d", i,
			    b->len, rc);
	}
	ck_assert_uint_eq(blen + PROTO_HDR_SIZE, b->len);
	ck_assert_int_eq(proto_reader_next(r, &body, &blen, &e), 0);
	ck_assert_uint_eq(proto_reader_pending(r), 0);
	copy = malloc(b->len);
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, b->data + PROTO_HDR_SIZE, b->len - PROTO_HDR_SIZE);
	*len = b->len - PROTO_HDR_SIZE;
	proto_reader_free(r);
	return copy;
}

static void
sampling_eq(const struct proto_sampling *a, const struct proto_sampling *b)
{
	ck_assert_uint_eq(a->set, b->set);
	if (a->set & PROTO_S_TEMPERATURE)
		ck_assert(a->temperature == b->temperature);
	if (a->set & PROTO_S_TOP_K)
		ck_assert_int_eq(a->top_k, b->top_k);
	if (a->set & PROTO_S_TOP_P)
		ck_assert(a->top_p == b->top_p);
	if (a->set & PROTO_S_MIN_P)
		ck_assert(a->min_p == b->min_p);
	if (a->set & PROTO_S_REPEAT_PENALTY)
		ck_assert(a->repeat_penalty == b->repeat_penalty);
	if (a->set & PROTO_S_PRESENCE_PENALTY)
		ck_assert(a->presence_penalty == b->presence_penalty);
	if (a->set & PROTO_S_FREQUENCY_PENALTY)
		ck_assert(a->frequency_penalty == b->frequency_penalty);
	if (a->set & PROTO_S_PENALTY_LAST_N)
		ck_assert_int_eq(a->penalty_last_n, b->penalty_last_n);
	if (a->set & PROTO_S_SEED)
		ck_assert(a->seed == b->seed);
}

static void
opts_eq(const struct proto_gen_opts *a, const struct proto_gen_opts *b)
{
	uint32_t i;

	ck_assert_int_eq(a->max_tokens, b->max_tokens);
	ck_assert_uint_eq(a->n_stop, b->n_stop);
	for (i = 0; i < a->n_stop; i++)
		ck_assert_str_eq(a->stop[i], b->stop[i]);
	sampling_eq(&a->sampling, &b->sampling);
	ck_assert_uint_eq(a->top_logprobs, b->top_logprobs);
	ck_assert(a->stream == b->stream);
	ck_assert(a->has_keep_alive == b->has_keep_alive);
	if (a->has_keep_alive)
		ck_assert(a->keep_alive == b->keep_alive);
}

static void
input_eq(const struct proto_input *a, const struct proto_input *b)
{
	ck_assert(text_eq(a->text, a->text_len, b->text, b->text_len));
	ck_assert((a->ids == NULL) == (b->ids == NULL));
	ck_assert(ids_eq(a->ids, a->n_ids, b->ids, b->n_ids));
}

static void
chat_eq(const struct proto_chat *a, const struct proto_chat *b, bool opts)
{
	uint32_t i;

	ck_assert_str_eq(a->model, b->model);
	ck_assert_uint_eq(a->n_messages, b->n_messages);
	for (i = 0; i < a->n_messages; i++) {
		ck_assert_str_eq(a->messages[i].role, b->messages[i].role);
		ck_assert(text_eq(a->messages[i].content,
		    a->messages[i].content_len, b->messages[i].content,
		    b->messages[i].content_len));
	}
	ck_assert_int_eq(a->thinking, b->thinking);
	ck_assert(str_eq(a->template, b->template));
	if (opts)
		opts_eq(&a->opts, &b->opts);
}

static void
request_eq(const struct proto_request *a, const struct proto_request *b)
{
	ck_assert_int_eq(a->type, b->type);
	ck_assert(a->id == b->id);
	switch (a->type) {
	case PROTO_MSG_HELLO:
		ck_assert_uint_eq(a->u.hello.version, b->u.hello.version);
		ck_assert_str_eq(a->u.hello.client, b->u.hello.client);
		break;
	case PROTO_MSG_SHOW:
		ck_assert_str_eq(a->u.show.model, b->u.show.model);
		break;
	case PROTO_MSG_UNLOAD:
		ck_assert_str_eq(a->u.unload.model, b->u.unload.model);
		break;
	case PROTO_MSG_LOAD:
		ck_assert_str_eq(a->u.load.model, b->u.load.model);
		ck_assert(a->u.load.has_keep_alive == b->u.load.has_keep_alive);
		ck_assert(a->u.load.keep_alive == b->u.load.keep_alive);
		ck_assert(a->u.load.has_pin == b->u.load.has_pin);
		ck_assert(a->u.load.pin == b->u.load.pin);
		ck_assert(a->u.load.has_numa == b->u.load.has_numa);
		if (a->u.load.has_numa)
			ck_assert_int_eq(a->u.load.numa, b->u.load.numa);
		break;
	case PROTO_MSG_GENERATE:
		ck_assert_str_eq(a->u.generate.model, b->u.generate.model);
		input_eq(&a->u.generate.input, &b->u.generate.input);
		opts_eq(&a->u.generate.opts, &b->u.generate.opts);
		break;
	case PROTO_MSG_CHAT:
		chat_eq(&a->u.chat, &b->u.chat, true);
		break;
	case PROTO_MSG_RENDER:
		chat_eq(&a->u.chat, &b->u.chat, false);
		break;
	case PROTO_MSG_EVAL:
		ck_assert_str_eq(a->u.eval.model, b->u.eval.model);
		input_eq(&a->u.eval.input, &b->u.eval.input);
		ck_assert_uint_eq(a->u.eval.top, b->u.eval.top);
		ck_assert(a->u.eval.add_bos == b->u.eval.add_bos);
		break;
	case PROTO_MSG_EMBED:
		ck_assert_str_eq(a->u.embed.model, b->u.embed.model);
		input_eq(&a->u.embed.input, &b->u.embed.input);
		break;
	case PROTO_MSG_TOKENIZE:
		ck_assert_str_eq(a->u.tokenize.model, b->u.tokenize.model);
		ck_assert(text_eq(a->u.tokenize.text, a->u.tokenize.text_len,
		    b->u.tokenize.text, b->u.tokenize.text_len));
		ck_assert(a->u.tokenize.add_bos == b->u.tokenize.add_bos);
		ck_assert(a->u.tokenize.special == b->u.tokenize.special);
		break;
	case PROTO_MSG_DETOKENIZE:
		ck_assert_str_eq(a->u.detokenize.model, b->u.detokenize.model);
		ck_assert(ids_eq(a->u.detokenize.ids, a->u.detokenize.n_ids,
		    b->u.detokenize.ids, b->u.detokenize.n_ids));
		ck_assert(a->u.detokenize.special == b->u.detokenize.special);
		break;
	case PROTO_MSG_CANCEL:
		ck_assert(a->u.cancel.target == b->u.cancel.target);
		break;
	default:
		break;
	}
}

static void
reply_eq(const struct proto_response *a, const struct proto_response *b)
{
	size_t	 i, npos;

	ck_assert_int_eq(a->request, b->request);
	switch (a->request) {
	case PROTO_MSG_HELLO:
		ck_assert_uint_eq(a->u.hello.version, b->u.hello.version);
		ck_assert_str_eq(a->u.hello.server, b->u.hello.server);
		ck_assert(memcmp(&a->u.hello.limits, &b->u.hello.limits,
		    sizeof(a->u.hello.limits)) == 0);
		break;
	case PROTO_MSG_LIST:
		ck_assert_uint_eq(a->u.list.n_models, b->u.list.n_models);
		for (i = 0; i < a->u.list.n_models; i++) {
			const struct proto_model_info *x = &a->u.list.models[i];
			const struct proto_model_info *y = &b->u.list.models[i];

			ck_assert_str_eq(x->name, y->name);
			ck_assert(x->size == y->size);
			ck_assert_str_eq(x->arch, y->arch);
			ck_assert_str_eq(x->quant, y->quant);
			ck_assert(x->params == y->params);
			ck_assert_str_eq(x->license, y->license);
			ck_assert(x->resident == y->resident);
		}
		break;
	case PROTO_MSG_SHOW:
		ck_assert_str_eq(a->u.show.model, b->u.show.model);
		ck_assert_uint_eq(a->u.show.n_meta, b->u.show.n_meta);
		for (i = 0; i < a->u.show.n_meta; i++) {
			const struct proto_meta *x = &a->u.show.meta[i];
			const struct proto_meta *y = &b->u.show.meta[i];

			ck_assert_str_eq(x->key, y->key);
			ck_assert_int_eq(x->type, y->type);
			switch (x->type) {
			case PROTO_META_BOOL:
				ck_assert(x->b == y->b);
				break;
			case PROTO_META_INT:
				ck_assert(x->i == y->i);
				break;
			case PROTO_META_UINT:
				ck_assert(x->u == y->u);
				break;
			case PROTO_META_FLOAT:
				ck_assert(x->f == y->f);
				break;
			case PROTO_META_STR:
				ck_assert(text_eq(x->s, x->s_len, y->s,
				    y->s_len));
				break;
			default:
				ck_assert_str_eq(x->elem, y->elem);
				ck_assert(x->n == y->n);
				break;
			}
		}
		break;
	case PROTO_MSG_LOAD:
		ck_assert_str_eq(a->u.load.model, b->u.load.model);
		ck_assert(a->u.load.memory == b->u.load.memory);
		ck_assert(a->u.load.ms == b->u.load.ms);
		break;
	case PROTO_MSG_PS:
		ck_assert_uint_eq(a->u.ps.n_models, b->u.ps.n_models);
		for (i = 0; i < a->u.ps.n_models; i++) {
			const struct proto_ps_entry *x = &a->u.ps.models[i];
			const struct proto_ps_entry *y = &b->u.ps.models[i];

			ck_assert_str_eq(x->name, y->name);
			ck_assert(x->memory == y->memory);
			ck_assert_str_eq(x->hugepages, y->hugepages);
			ck_assert_uint_eq(x->clients, y->clients);
			ck_assert(x->tokens == y->tokens);
			ck_assert(x->keep_alive == y->keep_alive);
			ck_assert(x->weights == y->weights);
			ck_assert(x->kv == y->kv);
			ck_assert(x->scratch == y->scratch);
			ck_assert(x->bytes_1g == y->bytes_1g);
			ck_assert(x->bytes_2m == y->bytes_2m);
			ck_assert(x->bytes_thp == y->bytes_thp);
			ck_assert(x->bytes_small == y->bytes_small);
			ck_assert(x->pinned == y->pinned);
			ck_assert((x->placement == NULL) ==
			    (y->placement == NULL));
			if (x->placement != NULL)
				ck_assert_str_eq(x->placement, y->placement);
		}
		break;
	case PROTO_MSG_RENDER:
		ck_assert(text_eq(a->u.render.prompt, a->u.render.prompt_len,
		    b->u.render.prompt, b->u.render.prompt_len));
		ck_assert_str_eq(a->u.render.template, b->u.render.template);
		break;
	case PROTO_MSG_EVAL:
		ck_assert(ids_eq(a->u.eval.tokens, a->u.eval.n_tokens,
		    b->u.eval.tokens, b->u.eval.n_tokens));
		npos = a->u.eval.n_tokens > 0 ? a->u.eval.n_tokens - 1 : 0;
		ck_assert_uint_eq(a->u.eval.top, b->u.eval.top);
		ck_assert(floats_eq(a->u.eval.logprobs, b->u.eval.logprobs,
		    npos));
		ck_assert(ids_eq(a->u.eval.top_ids, npos * a->u.eval.top,
		    b->u.eval.top_ids, npos * b->u.eval.top));
		ck_assert(floats_eq(a->u.eval.top_logprobs,
		    b->u.eval.top_logprobs, npos * a->u.eval.top));
		break;
	case PROTO_MSG_EMBED:
		ck_assert_uint_eq(a->u.embed.n, b->u.embed.n);
		ck_assert(floats_eq(a->u.embed.embedding, b->u.embed.embedding,
		    a->u.embed.n));
		ck_assert_uint_eq(a->u.embed.tokens, b->u.embed.tokens);
		break;
	case PROTO_MSG_TOKENIZE:
		ck_assert(ids_eq(a->u.tokenize.ids, a->u.tokenize.n_ids,
		    b->u.tokenize.ids, b->u.tokenize.n_ids));
		break;
	case PROTO_MSG_DETOKENIZE:
		ck_assert(text_eq(a->u.detokenize.text,
		    a->u.detokenize.text_len, b->u.detokenize.text,
		    b->u.detokenize.text_len));
		break;
	case PROTO_MSG_CANCEL:
		ck_assert(a->u.cancel.found == b->u.cancel.found);
		break;
	case PROTO_MSG_STATS:
		ck_assert(memcmp(&a->u.stats, &b->u.stats,
		    sizeof(a->u.stats)) == 0);
		break;
	default:
		break;
	}
}

static void
response_eq(const struct proto_response *a, const struct proto_response *b)
{
	const struct proto_token *x, *y;
	const struct proto_done	*p, *q;

	ck_assert_int_eq(a->type, b->type);
	ck_assert(a->id == b->id);
	switch (a->type) {
	case PROTO_MSG_REPLY:
		reply_eq(a, b);
		break;
	case PROTO_MSG_TOKEN:
		x = &a->u.token;
		y = &b->u.token;
		ck_assert(text_eq(x->text, x->text_len, y->text, y->text_len));
		ck_assert_int_eq(x->token, y->token);
		ck_assert(x->thinking == y->thinking);
		ck_assert(x->has_logprob == y->has_logprob);
		if (x->has_logprob)
			ck_assert(x->logprob == y->logprob);
		ck_assert(ids_eq(x->top_ids, x->n_top, y->top_ids, y->n_top));
		ck_assert(floats_eq(x->top_logprobs, y->top_logprobs,
		    x->n_top));
		break;
	case PROTO_MSG_PROGRESS:
		ck_assert(a->u.progress.done == b->u.progress.done);
		ck_assert(a->u.progress.total == b->u.progress.total);
		break;
	case PROTO_MSG_DONE:
		p = &a->u.done;
		q = &b->u.done;
		ck_assert_int_eq(p->reason, q->reason);
		ck_assert_uint_eq(p->prompt_tokens, q->prompt_tokens);
		ck_assert_uint_eq(p->cached_tokens, q->cached_tokens);
		ck_assert_uint_eq(p->generated_tokens, q->generated_tokens);
		ck_assert(p->prefill_ms == q->prefill_ms);
		ck_assert(p->decode_ms == q->decode_ms);
		ck_assert(text_eq(p->text, p->text_len, q->text, q->text_len));
		ck_assert(text_eq(p->thinking, p->thinking_len, q->thinking,
		    q->thinking_len));
		ck_assert_int_eq(p->error_code, q->error_code);
		ck_assert(str_eq(p->error_message, q->error_message));
		break;
	case PROTO_MSG_ERROR:
		ck_assert_int_eq(a->u.error.code, b->u.error.code);
		ck_assert_str_eq(a->u.error.message, b->u.error.message);
		break;
	default:
		ck_abort_msg("bad type");
	}
}

/* Pack, reframe byte by byte, unpack, compare. */
static void
roundtrip_request(const struct proto_request *in)
{
	struct proto_buf	 b;
	struct proto_request	 out;
	struct proto_err	 e;
	uint8_t			*body;
	size_t			 len;
	int			 rc;

	proto_buf_init(&b);
	rc = proto_pack_request(&b, in, &lim, &e);
	ck_assert_msg(rc == 0, "pack %s: %s", proto_msg_name(in->type), e.msg);
	body = reframe(&b, &len);
	rc = proto_unpack_request(body, len, &lim, &out, &e);
	ck_assert_msg(rc == 0, "unpack %s: %s", proto_msg_name(in->type),
	    e.msg);
	request_eq(in, &out);
	proto_request_free(&out);
	ck_assert_ptr_null(out.mem);
	free(body);
	proto_buf_free(&b);
}

static void
roundtrip_response(const struct proto_response *in)
{
	struct proto_buf	 b;
	struct proto_response	 out;
	struct proto_err	 e;
	uint8_t			*body;
	size_t			 len;
	int			 rc;

	proto_buf_init(&b);
	rc = proto_pack_response(&b, in, &lim, &e);
	ck_assert_msg(rc == 0, "pack %s/%s: %s", proto_msg_name(in->type),
	    proto_msg_name(in->request), e.msg);
	body = reframe(&b, &len);
	rc = proto_unpack_response(body, len, &lim, &out, &e);
	ck_assert_msg(rc == 0, "unpack %s/%s: %s", proto_msg_name(in->type),
	    proto_msg_name(in->request), e.msg);
	response_eq(in, &out);
	proto_response_free(&out);
	free(body);
	proto_buf_free(&b);
}

/* ---- raw msgpack for malformed inputs ---- */

static msgpack_sbuffer	 sb;
static msgpack_packer	 mp;

static void
mp_begin(void)
{
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&mp, &sb, msgpack_sbuffer_write);
}

static void
mp_end(void)
{
	msgpack_sbuffer_destroy(&sb);
}

static void
mp_s(const char *s)
{
	msgpack_pack_str_with_body(&mp, s, strlen(s));
}

/* A map of npairs + 2 entries starting with type and id (7). */
static void
req_begin(const char *type, size_t npairs)
{
	mp_begin();
	msgpack_pack_map(&mp, npairs + 2);
	mp_s("type");
	mp_s(type);
	mp_s("id");
	msgpack_pack_uint64(&mp, 7);
}

/*
 * Decode the sbuffer as a request: expect rc, code and a message
 * containing want; the output struct must be left untouched.
 */
static void
expect_req(int want_rc, enum proto_code code, const char *want)
{
	struct proto_request	 out, sentinel;
	struct proto_err	 e;
	int			 rc;

	memset(&out, 0xa5, sizeof(out));
	memcpy(&sentinel, &out, sizeof(out));
	rc = proto_unpack_request(sb.data, sb.size, &lim, &out, &e);
	if (rc == 0)
		proto_request_free(&out);
	ck_assert_msg(rc == want_rc, "rc %d, want %d (%s)", rc, want_rc,
	    rc == 0 ? "ok" : e.msg);
	ck_assert_msg(e.code == code, "code %s, want %s: %s",
	    proto_code_name(e.code), proto_code_name(code), e.msg);
	ck_assert_msg(strstr(e.msg, want) != NULL, "message '%s' lacks '%s'",
	    e.msg, want);
	ck_assert(memcmp(&out, &sentinel, sizeof(out)) == 0);
	mp_end();
}

static void
expect_resp(int want_rc, enum proto_code code, const char *want)
{
	struct proto_response	 out, sentinel;
	struct proto_err	 e;
	int			 rc;

	memset(&out, 0x5a, sizeof(out));
	memcpy(&sentinel, &out, sizeof(out));
	rc = proto_unpack_response(sb.data, sb.size, &lim, &out, &e);
	if (rc == 0)
		proto_response_free(&out);
	ck_assert_msg(rc == want_rc, "rc %d, want %d (%s)", rc, want_rc,
	    rc == 0 ? "ok" : e.msg);
	ck_assert_msg(e.code == code, "code %s, want %s: %s",
	    proto_code_name(e.code), proto_code_name(code), e.msg);
	ck_assert_msg(strstr(e.msg, want) != NULL, "message '%s' lacks '%s'",
	    e.msg, want);
	ck_assert(memcmp(&out, &sentinel, sizeof(out)) == 0);
	mp_end();
}

/* Raw bytes as a request body. */
static void
expect_raw(const void *p, size_t len, int want_rc, const char *want)
{
	mp_begin();
	if (len > 0)
		msgpack_sbuffer_write(&sb, p, len);
	expect_req(want_rc, want_rc == -EMSGSIZE ? PROTO_E_TOO_LARGE :
	    PROTO_E_BAD_REQUEST, want);
}

/* ---- core: round trips ---- */

START_TEST(test_names)
{
	static const enum proto_msg all[] = {
		PROTO_MSG_HELLO, PROTO_MSG_LIST, PROTO_MSG_SHOW, PROTO_MSG_LOAD,
		PROTO_MSG_UNLOAD, PROTO_MSG_PS, PROTO_MSG_GENERATE,
		PROTO_MSG_CHAT, PROTO_MSG_RENDER, PROTO_MSG_EVAL,
		PROTO_MSG_EMBED, PROTO_MSG_TOKENIZE, PROTO_MSG_DETOKENIZE,
		PROTO_MSG_CANCEL, PROTO_MSG_STATS, PROTO_MSG_PING,
		PROTO_MSG_REPLY, PROTO_MSG_TOKEN, PROTO_MSG_PROGRESS,
		PROTO_MSG_DONE, PROTO_MSG_ERROR,
	};
	const char	*n;
	size_t		 i;
	int		 c;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		n = proto_msg_name(all[i]);
		ck_assert_ptr_nonnull(n);
		ck_assert_int_eq(proto_msg_lookup(n, strlen(n)), all[i]);
	}
	ck_assert_str_eq(proto_msg_name(PROTO_MSG_GENERATE), "generate");
	ck_assert_int_eq(proto_msg_lookup("gen", 3), PROTO_MSG_NONE);
	ck_assert_int_eq(proto_msg_lookup("generatex", 9), PROTO_MSG_NONE);
	ck_assert_ptr_null(proto_msg_name((enum proto_msg)50));
	for (c = PROTO_E_BAD_REQUEST; c <= PROTO_E_INTERNAL; c++) {
		n = proto_code_name(c);
		ck_assert_int_eq(proto_code_lookup(n, strlen(n)), c);
	}
	ck_assert_str_eq(proto_code_name(PROTO_E_TOO_LARGE), "too_large");
	ck_assert_str_eq(proto_code_name(PROTO_E_MODEL_ERROR), "model_error");
	ck_assert_ptr_null(proto_code_name(PROTO_E_NONE));
	for (c = PROTO_REASON_EOS; c <= PROTO_REASON_ERROR; c++) {
		n = proto_reason_name(c);
		ck_assert_int_eq(proto_reason_lookup(n, strlen(n)), c);
	}
	ck_assert(proto_msg_has_reply(PROTO_MSG_HELLO));
	ck_assert(!proto_msg_has_reply(PROTO_MSG_GENERATE));
	ck_assert(!proto_msg_has_reply(PROTO_MSG_CHAT));
	ck_assert(!proto_msg_has_reply(PROTO_MSG_TOKEN));
}
END_TEST

START_TEST(test_roundtrip_requests)
{
	static const int32_t ids[] = { 0, 1, 127, 128, 65535, 65536,
	    INT32_MAX };
	static const char *stop[] = { "\n\n", "User:", "\xe2\x80\x94" };
	static const char text[] = "Hello, w\xc3\xb6rld \xf0\x9f\x94\xa5\0nul";
	struct proto_message	 msgs[3] = {
		{ "system", "Be brief.", 9 },
		{ "user", "Why is the sky blue?", 20 },
		{ "assistant", "", 0 },
	};
	struct proto_request	 r;
	int			 i;

	proto_request_init(&r, PROTO_MSG_HELLO, 1);
	r.u.hello.client = "hearth 0.1.0 (test)";
	roundtrip_request(&r);

	proto_request_init(&r, PROTO_MSG_LIST, 2);
	roundtrip_request(&r);
	proto_request_init(&r, PROTO_MSG_PS, 3);
	roundtrip_request(&r);
	proto_request_init(&r, PROTO_MSG_STATS, 4);
	roundtrip_request(&r);
	proto_request_init(&r, PROTO_MSG_PING, UINT64_MAX);
	roundtrip_request(&r);

	proto_request_init(&r, PROTO_MSG_SHOW, 5);
	r.u.show.model = "qwen2.5-0.5b-instruct-q4_k_m";
	roundtrip_request(&r);
	proto_request_init(&r, PROTO_MSG_UNLOAD, 6);
	r.u.unload.model = "aidreams260K";
	roundtrip_request(&r);
	proto_request_init(&r, PROTO_MSG_LOAD, 7);
	r.u.load.model = "aidreams260K";
	roundtrip_request(&r);
	r.u.load.has_keep_alive = true;
	r.u.load.keep_alive = -1;
	roundtrip_request(&r);
	r.u.load.keep_alive = 300;
	roundtrip_request(&r);
	r.u.load.has_pin = true;
	r.u.load.pin = true;
	roundtrip_request(&r);
	r.u.load.pin = false;		/* unpin */
	roundtrip_request(&r);
	r.u.load.has_numa = true;	/* every NUMA policy */
	for (i = (int)PROTO_NUMA_AUTO; i <= (int)PROTO_NUMA_REPLICATE; i++) {
		r.u.load.numa = (enum proto_numa)i;
		roundtrip_request(&r);
	}

	/* generate: text, then ids, every option set */
	proto_request_init(&r, PROTO_MSG_GENERATE, 8);
	r.u.generate.model = "m";
	r.u.generate.input.text = text;
	r.u.generate.input.text_len = sizeof(text) - 1;
	roundtrip_request(&r);
	r.u.generate.input.text = NULL;
	r.u.generate.input.text_len = 0;
	r.u.generate.input.ids = ids;
	r.u.generate.input.n_ids = 7;
	r.u.generate.opts.max_tokens = 60;
	r.u.generate.opts.stop = stop;
	r.u.generate.opts.n_stop = 3;
	r.u.generate.opts.sampling.set = PROTO_S_ALL;
	r.u.generate.opts.sampling.temperature = 0.7f;
	r.u.generate.opts.sampling.top_k = 40;
	r.u.generate.opts.sampling.top_p = 0.95f;
	r.u.generate.opts.sampling.min_p = 0.05f;
	r.u.generate.opts.sampling.repeat_penalty = 1.1f;
	r.u.generate.opts.sampling.presence_penalty = -0.5f;
	r.u.generate.opts.sampling.frequency_penalty = 0.25f;
	r.u.generate.opts.sampling.penalty_last_n = -1;
	r.u.generate.opts.sampling.seed = 0xfedcba9876543210ull;
	r.u.generate.opts.top_logprobs = PROTO_MAX_TOP;
	r.u.generate.opts.stream = false;
	r.u.generate.opts.has_keep_alive = true;
	r.u.generate.opts.keep_alive = 0;
	roundtrip_request(&r);
	/* max_tokens 0 (prefill only) and an empty id list are legal */
	r.u.generate.opts.max_tokens = 0;
	r.u.generate.input.n_ids = 0;
	roundtrip_request(&r);

	proto_request_init(&r, PROTO_MSG_CHAT, 9);
	r.u.chat.model = "deepseek-r1-distill-qwen-1.5b";
	r.u.chat.messages = msgs;
	r.u.chat.n_messages = 3;
	roundtrip_request(&r);
	r.u.chat.thinking = PROTO_THINK_OFF;
	r.u.chat.template = "chatml";
	r.u.chat.opts.sampling.set = PROTO_S_TEMPERATURE | PROTO_S_SEED;
	r.u.chat.opts.sampling.temperature = 0;
	r.u.chat.opts.sampling.seed = 42;
	r.u.chat.opts.stop = stop;
	r.u.chat.opts.n_stop = 1;
	roundtrip_request(&r);
	r.u.chat.thinking = PROTO_THINK_ON;
	roundtrip_request(&r);

	proto_request_init(&r, PROTO_MSG_RENDER, 10);
	r.u.chat.model = "gemma-2-2b-it";
	r.u.chat.messages = msgs + 1;
	r.u.chat.n_messages = 2;
	r.u.chat.thinking = PROTO_THINK_OFF;
	roundtrip_request(&r);

	proto_request_init(&r, PROTO_MSG_EVAL, 11);
	r.u.eval.model = "m";
	r.u.eval.input.text = "The quick brown fox";
	r.u.eval.input.text_len = 19;
	r.u.eval.top = 5;
	r.u.eval.add_bos = false;
	roundtrip_request(&r);
	r.u.eval.input.text = NULL;
	r.u.eval.input.text_len = 0;
	r.u.eval.input.ids = ids;
	r.u.eval.input.n_ids = 3;
	roundtrip_request(&r);

	proto_request_init(&r, PROTO_MSG_EMBED, 12);
	r.u.embed.model = "m";
	r.u.embed.input.text = "";
	roundtrip_request(&r);

	proto_request_init(&r, PROTO_MSG_TOKENIZE, 13);
	r.u.tokenize.model = "m";
	r.u.tokenize.text = text;
	r.u.tokenize.text_len = sizeof(text) - 1;
	r.u.tokenize.special = true;
	roundtrip_request(&r);

	proto_request_init(&r, PROTO_MSG_DETOKENIZE, 14);
	r.u.detokenize.model = "m";
	r.u.detokenize.ids = ids;
	r.u.detokenize.n_ids = 7;
	roundtrip_request(&r);

	proto_request_init(&r, PROTO_MSG_CANCEL, 15);
	r.u.cancel.target = 8;
	roundtrip_request(&r);
}
END_TEST

START_TEST(test_roundtrip_responses)
{
	static const int32_t ids[] = { 1, 15043, 3186, 29871, 13 };
	static const float lps[] = { -1.5f, -0.25f, -7.0f, -0.0f };
	static const int32_t top_ids[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	static const float top_lps[] = { -0.1f, -2.f, -0.2f, -3.f, -0.3f,
	    -4.f, -0.4f, -5.f };
	static const float emb[] = { 0.6f, -0.8f, 0.0f };
	struct proto_model_info	 models[2] = {
		{ "aidreams260K", 1092416, "llama", "F32", 260000, "mit",
		    true },
		{ "q", 0, "", "", 0, "", false },
	};
	struct proto_meta	 meta[6];
	struct proto_ps_entry	 ps[2] = {
		{ "aidreams260K", 2 << 20, "thp", 3, 12345, -1, 0, 0, 0, 0,
		    0, 0, 0, false, NULL },
		{ "qwen", 6ull << 30, "2M", 1, 7, 120, 4ull << 30,
		    (1ull << 30) + 5, 12345, 1ull << 30, (3ull << 30) - 4096,
		    4096, 12288, true, "local: node 1 has the most free memory" },
	};
	struct proto_response	 r;

	proto_response_init(&r, PROTO_MSG_REPLY, 1);
	r.request = PROTO_MSG_HELLO;
	r.u.hello.version = PROTO_VERSION;
	r.u.hello.server = "hearthd 0.1.0";
	proto_limits_default(&r.u.hello.limits);
	r.u.hello.limits.max_frame = 1 << 20;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 2);
	r.request = PROTO_MSG_LIST;
	roundtrip_response(&r);		/* no models */
	r.u.list.models = models;
	r.u.list.n_models = 2;
	roundtrip_response(&r);

	memset(meta, 0, sizeof(meta));
	meta[0].key = "general.architecture";
	meta[0].type = PROTO_META_STR;
	meta[0].s = "llama";
	meta[0].s_len = 5;
	meta[1].key = "llama.context_length";
	meta[1].type = PROTO_META_UINT;
	meta[1].u = 2048;
	meta[2].key = "llama.rope.freq_base";
	meta[2].type = PROTO_META_FLOAT;
	meta[2].f = 10000.0;
	meta[3].key = "tokenizer.ggml.tokens";
	meta[3].type = PROTO_META_ARRAY;
	meta[3].elem = "string";
	meta[3].n = 151936;
	meta[4].key = "x.neg";
	meta[4].type = PROTO_META_INT;
	meta[4].i = -5;
	meta[5].key = "x.flag";
	meta[5].type = PROTO_META_BOOL;
	meta[5].b = true;
	proto_response_init(&r, PROTO_MSG_REPLY, 3);
	r.request = PROTO_MSG_SHOW;
	r.u.show.model = "aidreams260K";
	r.u.show.meta = meta;
	r.u.show.n_meta = 6;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 4);
	r.request = PROTO_MSG_LOAD;
	r.u.load.model = "aidreams260K";
	r.u.load.memory = 1u << 30;
	r.u.load.ms = 12.5;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 5);
	r.request = PROTO_MSG_UNLOAD;
	roundtrip_response(&r);
	r.request = PROTO_MSG_PING;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 6);
	r.request = PROTO_MSG_PS;
	r.u.ps.models = ps;
	r.u.ps.n_models = 1;
	roundtrip_response(&r);
	r.u.ps.n_models = 2;		/* memory split, pages, pin, placement */
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 7);
	r.request = PROTO_MSG_RENDER;
	r.u.render.prompt = "<|im_start|>user\nHi<|im_end|>\n"
	    "<|im_start|>assistant\n";
	r.u.render.prompt_len = strlen(r.u.render.prompt);
	r.u.render.template = "chatml";
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 8);
	r.request = PROTO_MSG_EVAL;
	r.u.eval.tokens = ids;
	r.u.eval.n_tokens = 5;
	r.u.eval.logprobs = lps;
	r.u.eval.top = 2;
	r.u.eval.top_ids = top_ids;
	r.u.eval.top_logprobs = top_lps;
	roundtrip_response(&r);
	r.u.eval.top = 0;
	roundtrip_response(&r);
	r.u.eval.n_tokens = 1;		/* nothing to score */
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 9);
	r.request = PROTO_MSG_EMBED;
	r.u.embed.embedding = emb;
	r.u.embed.n = 3;
	r.u.embed.tokens = 4;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 10);
	r.request = PROTO_MSG_TOKENIZE;
	r.u.tokenize.ids = ids;
	r.u.tokenize.n_ids = 5;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 11);
	r.request = PROTO_MSG_DETOKENIZE;
	r.u.detokenize.text = " Hello world\n";
	r.u.detokenize.text_len = 13;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 12);
	r.request = PROTO_MSG_CANCEL;
	r.u.cancel.found = true;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_REPLY, 13);
	r.request = PROTO_MSG_STATS;
	r.u.stats.uptime = 3600;
	r.u.stats.connections = 2;
	r.u.stats.requests = 100;
	r.u.stats.prompt_tokens = 1 << 20;
	r.u.stats.generated_tokens = 77777;
	r.u.stats.models = 1;
	r.u.stats.memory = 5ull << 30;
	roundtrip_response(&r);
	r.u.stats.budget = 12ull << 30;
	r.u.stats.weights = 4ull << 30;
	r.u.stats.kv = 1ull << 30;
	r.u.stats.scratch = 77;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_TOKEN, 14);
	r.u.token.text = " fox";
	r.u.token.text_len = 4;
	r.u.token.token = 1234;
	roundtrip_response(&r);
	r.u.token.text = "";
	r.u.token.text_len = 0;		/* held back: incomplete UTF-8 */
	r.u.token.thinking = true;
	r.u.token.has_logprob = true;
	r.u.token.logprob = -0.125f;
	r.u.token.top_ids = top_ids;
	r.u.token.top_logprobs = top_lps;
	r.u.token.n_top = 8;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_PROGRESS, 15);
	r.u.progress.done = 1 << 20;
	r.u.progress.total = 3ull << 30;
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_DONE, 16);
	r.u.done.reason = PROTO_REASON_MAX_TOKENS;
	r.u.done.prompt_tokens = 100;
	r.u.done.cached_tokens = 90;
	r.u.done.generated_tokens = 60;
	r.u.done.prefill_ms = 1.5;
	r.u.done.decode_ms = 321.25;
	roundtrip_response(&r);
	r.u.done.reason = PROTO_REASON_EOS;
	r.u.done.text = "Because of Rayleigh scattering.";
	r.u.done.text_len = strlen(r.u.done.text);
	r.u.done.thinking = "The user asks...";
	r.u.done.thinking_len = strlen(r.u.done.thinking);
	roundtrip_response(&r);
	proto_response_init(&r, PROTO_MSG_DONE, 17);
	r.u.done.reason = PROTO_REASON_ERROR;
	r.u.done.error_code = PROTO_E_MODEL_ERROR;
	r.u.done.error_message = "decode failed";
	roundtrip_response(&r);

	proto_response_init(&r, PROTO_MSG_ERROR, 18);
	r.u.error.code = PROTO_E_NOT_FOUND;
	r.u.error.message = "no model named 'x' in /var/lib/hearth/models";
	roundtrip_response(&r);
	r.id = 0;	/* a connection-level error */
	r.u.error.code = PROTO_E_TOO_LARGE;
	roundtrip_response(&r);
}
END_TEST

/* Many frames fed in uneven pieces come out whole and in order. */
START_TEST(test_reader_pieces)
{
	struct proto_reader	*rd;
	struct proto_buf	 b;
	struct proto_request	 r, out;
	struct proto_err	 e;
	const uint8_t		*body;
	size_t			 len, off, piece;
	uint64_t		 next_id = 1, seed = 7;
	int			 i, rc;
	char			 model[32];

	proto_buf_init(&b);
	for (i = 1; i <= 200; i++) {
		proto_request_init(&r, PROTO_MSG_SHOW, (uint64_t)i);
		snprintf(model, sizeof(model), "model-%d", i);
		r.u.show.model = model;
		ck_assert_int_eq(proto_pack_request(&b, &r, &lim, &e), 0);
	}
	ck_assert_int_eq(proto_reader_new(lim.max_frame, &rd), 0);
	for (off = 0; off < b.len; off += piece) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		piece = 1 + (seed >> 33) % 97;
		if (piece > b.len - off)
			piece = b.len - off;
		ck_assert_int_eq(proto_reader_feed(rd, b.data + off, piece, &e),
		    0);
		while ((rc = proto_reader_next(rd, &body, &len, &e)) == 1) {
			ck_assert_int_eq(proto_unpack_request(body, len, &lim,
			    &out, &e), 0);
			ck_assert(out.id == next_id);
			snprintf(model, sizeof(model), "model-%llu",
			    (unsigned long long)next_id);
			ck_assert_str_eq(out.u.show.model, model);
			proto_request_free(&out);
			next_id++;
		}
		ck_assert_int_eq(rc, 0);
	}
	ck_assert(next_id == 201);
	ck_assert_uint_eq(proto_reader_pending(rd), 0);
	proto_reader_free(rd);
	proto_buf_free(&b);
}
END_TEST

/* proto_write_all and proto_reader_read over a socket pair. */
START_TEST(test_socket)
{
	struct proto_reader	*rd;
	struct proto_buf	 b;
	struct proto_response	 r, out;
	struct proto_err	 e;
	const uint8_t		*body;
	char			*big;
	size_t			 len;
	ssize_t			 n;
	int			 sv[2], frames = 0, rc;
	pid_t			 pid;

	/* a 1 MiB done text: more than one socket buffer */
	big = malloc(1 << 20);
	ck_assert_ptr_nonnull(big);
	memset(big, 'a', 1 << 20);
	proto_buf_init(&b);
	proto_response_init(&r, PROTO_MSG_DONE, 3);
	r.u.done.reason = PROTO_REASON_STOP;
	r.u.done.text = big;
	r.u.done.text_len = 1 << 20;
	ck_assert_int_eq(proto_pack_response(&b, &r, &lim, &e), 0);
	ck_assert_int_eq(proto_pack_error(&b, 4, PROTO_E_BUSY, "later"), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(sv[0]);
		_exit(proto_write_all(sv[1], b.data, b.len) == 0 ? 0 : 1);
	}
	close(sv[1]);
	ck_assert_int_eq(proto_reader_new(lim.max_frame, &rd), 0);
	while ((n = proto_reader_read(rd, sv[0], &e)) > 0) {
		while ((rc = proto_reader_next(rd, &body, &len, &e)) == 1) {
			ck_assert_int_eq(proto_unpack_response(body, len, &lim,
			    &out, &e), 0);
			if (frames++ == 0) {
				ck_assert_int_eq(out.type, PROTO_MSG_DONE);
				ck_assert_uint_eq(out.u.done.text_len, 1 << 20);
				ck_assert(memcmp(out.u.done.text, big,
				    1 << 20) == 0);
			} else {
				ck_assert_int_eq(out.type, PROTO_MSG_ERROR);
				ck_assert_int_eq(out.u.error.code,
				    PROTO_E_BUSY);
				ck_assert_str_eq(out.u.error.message, "later");
			}
			proto_response_free(&out);
		}
		ck_assert_int_eq(rc, 0);
	}
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(frames, 2);
	ck_assert_uint_eq(proto_reader_pending(rd), 0);
	close(sv[0]);
	ck_assert_int_eq(waitpid(pid, &rc, 0), pid);
	ck_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
	/* writing to a closed peer is -EPIPE, not SIGPIPE */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[0]);
	ck_assert_int_eq(proto_write_all(sv[1], "x", 1), -EPIPE);
	close(sv[1]);
	proto_reader_free(rd);
	proto_buf_free(&b);
	free(big);
}
END_TEST

START_TEST(test_unknown_fields)
{
	struct proto_request	 out;
	struct proto_err	 e;

	/* unknown keys of any type and shape are skipped */
	req_begin("show", 4);
	mp_s("model");
	mp_s("m");
	mp_s("future");
	msgpack_pack_array(&mp, 2);
	msgpack_pack_nil(&mp);
	msgpack_pack_bin_with_body(&mp, "ab", 2);
	mp_s("x-ext");
	msgpack_pack_ext_with_body(&mp, "abcd", 4, 5);
	mp_s("options");
	msgpack_pack_map(&mp, 1);
	mp_s("k");
	msgpack_pack_double(&mp, 1.5);
	ck_assert_int_eq(proto_unpack_request(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert_int_eq(out.type, PROTO_MSG_SHOW);
	ck_assert(out.id == 7);
	ck_assert_str_eq(out.u.show.model, "m");
	proto_request_free(&out);
	proto_request_free(NULL);
	mp_end();

	/* numbers given as integers are fine for float fields */
	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("hi");
	mp_s("temperature");
	msgpack_pack_int(&mp, 1);
	ck_assert_int_eq(proto_unpack_request(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert(out.u.generate.opts.sampling.temperature == 1.0f);
	ck_assert_uint_eq(out.u.generate.opts.sampling.set,
	    PROTO_S_TEMPERATURE);
	ck_assert(out.u.generate.opts.stream);
	ck_assert_int_eq(out.u.generate.opts.max_tokens, -1);
	proto_request_free(&out);
	mp_end();
}
END_TEST

/* Optional fields a peer leaves out read as zero (found by fuzzing: a
 * list reply without "resident" left garbage in the bool). */
START_TEST(test_optional_defaults)
{
	struct proto_response	 out;
	struct proto_err	 e;

	mp_begin();
	msgpack_pack_map(&mp, 4);
	mp_s("type");
	mp_s("reply");
	mp_s("id");
	msgpack_pack_uint64(&mp, 7);
	mp_s("request");
	mp_s("list");
	mp_s("models");
	msgpack_pack_array(&mp, 2);
	msgpack_pack_map(&mp, 1);
	mp_s("name");
	mp_s("m");
	msgpack_pack_map(&mp, 2);
	mp_s("name");
	mp_s("n");
	mp_s("resident");
	msgpack_pack_true(&mp);
	ck_assert_int_eq(proto_unpack_response(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert_uint_eq(out.u.list.n_models, 2);
	ck_assert(out.u.list.models[0].size == 0);
	ck_assert(out.u.list.models[0].params == 0);
	ck_assert(!out.u.list.models[0].resident);
	ck_assert(out.u.list.models[1].resident);
	proto_response_free(&out);
	mp_end();

	/* a ps reply and a stats reply without the memory split */
	mp_begin();
	msgpack_pack_map(&mp, 4);
	mp_s("type");
	mp_s("reply");
	mp_s("id");
	msgpack_pack_uint64(&mp, 7);
	mp_s("request");
	mp_s("ps");
	mp_s("models");
	msgpack_pack_array(&mp, 1);
	msgpack_pack_map(&mp, 2);
	mp_s("name");
	mp_s("m");
	mp_s("memory");
	msgpack_pack_uint64(&mp, 1000);
	ck_assert_int_eq(proto_unpack_response(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert_uint_eq(out.u.ps.n_models, 1);
	ck_assert(out.u.ps.models[0].memory == 1000);
	ck_assert(out.u.ps.models[0].weights == 0);
	ck_assert(out.u.ps.models[0].kv == 0);
	ck_assert(out.u.ps.models[0].bytes_small == 0);
	ck_assert(!out.u.ps.models[0].pinned);
	ck_assert_ptr_null(out.u.ps.models[0].placement);
	proto_response_free(&out);
	mp_end();

	mp_begin();
	msgpack_pack_map(&mp, 4);
	mp_s("type");
	mp_s("reply");
	mp_s("id");
	msgpack_pack_uint64(&mp, 7);
	mp_s("request");
	mp_s("stats");
	mp_s("memory");
	msgpack_pack_uint64(&mp, 99);
	ck_assert_int_eq(proto_unpack_response(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert(out.u.stats.memory == 99);
	ck_assert(out.u.stats.budget == 0 && out.u.stats.weights == 0);
	proto_response_free(&out);
	mp_end();
}
END_TEST

START_TEST(test_load_pin)
{
	struct proto_request	 out;
	struct proto_err	 e;

	/* without pin: has_pin is false */
	req_begin("load", 1);
	mp_s("model");
	mp_s("m");
	ck_assert_int_eq(proto_unpack_request(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert(!out.u.load.has_pin && !out.u.load.pin);
	proto_request_free(&out);
	mp_end();

	req_begin("load", 2);
	mp_s("model");
	mp_s("m");
	mp_s("pin");
	msgpack_pack_true(&mp);
	ck_assert_int_eq(proto_unpack_request(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert(out.u.load.has_pin && out.u.load.pin);
	proto_request_free(&out);
	mp_end();

	/* pin must be a boolean */
	req_begin("load", 2);
	mp_s("model");
	mp_s("m");
	mp_s("pin");
	msgpack_pack_uint64(&mp, 1);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "pin");
}
END_TEST

START_TEST(test_load_numa)
{
	static const char *const bad[] = { "far", "", "LOCAL", "local ",
	    "replicated" };
	struct proto_request	 out;
	struct proto_err	 e;
	enum proto_numa		 n;
	size_t			 i;

	/* names <-> values */
	ck_assert_str_eq(proto_numa_name(PROTO_NUMA_AUTO), "auto");
	ck_assert_str_eq(proto_numa_name(PROTO_NUMA_LOCAL), "local");
	ck_assert_str_eq(proto_numa_name(PROTO_NUMA_INTERLEAVE), "interleave");
	ck_assert_str_eq(proto_numa_name(PROTO_NUMA_REPLICATE), "replicate");
	ck_assert_ptr_null(proto_numa_name((enum proto_numa)4));
	ck_assert_int_eq(proto_numa_parse("replicate", &n), 0);
	ck_assert_int_eq(n, PROTO_NUMA_REPLICATE);
	ck_assert_int_eq(proto_numa_parse("far", &n), -EINVAL);
	ck_assert_int_eq(proto_numa_parse(NULL, &n), -EINVAL);
	ck_assert_int_eq(n, PROTO_NUMA_REPLICATE);	/* untouched */

	/* absent: has_numa false */
	req_begin("load", 1);
	mp_s("model");
	mp_s("m");
	ck_assert_int_eq(proto_unpack_request(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert(!out.u.load.has_numa);
	proto_request_free(&out);
	mp_end();

	/* with pin and numa */
	req_begin("load", 3);
	mp_s("model");
	mp_s("m");
	mp_s("numa");
	mp_s("interleave");
	mp_s("pin");
	msgpack_pack_true(&mp);
	ck_assert_int_eq(proto_unpack_request(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert(out.u.load.has_numa && out.u.load.has_pin);
	ck_assert_int_eq(out.u.load.numa, PROTO_NUMA_INTERLEAVE);
	proto_request_free(&out);
	mp_end();

	/* unknown policies and wrong types: bad_request naming the field */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req_begin("load", 2);
		mp_s("model");
		mp_s("m");
		mp_s("numa");
		mp_s(bad[i]);
		expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "unknown policy");
	}
	req_begin("load", 2);
	mp_s("model");
	mp_s("m");
	mp_s("numa");
	msgpack_pack_uint64(&mp, 1);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "numa");
	req_begin("load", 2);
	mp_s("model");
	mp_s("m");
	mp_s("numa");
	msgpack_pack_nil(&mp);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "numa");
}
END_TEST

START_TEST(test_version)
{
	struct proto_request	 r, out;
	struct proto_buf	 b;
	struct proto_err	 e;
	int			 rc;

	ck_assert_int_eq(proto_check_version(PROTO_VERSION, &e), 0);
	rc = proto_check_version(2, &e);
	ck_assert_int_eq(rc, -EPROTONOSUPPORT);
	ck_assert_int_eq(e.code, PROTO_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(e.msg, "version mismatch"));
	ck_assert_ptr_nonnull(strstr(e.msg, "version 2"));
	ck_assert_ptr_nonnull(strstr(e.msg, "version 1"));
	/* a hello of another version still decodes, for a clear reply */
	proto_buf_init(&b);
	proto_request_init(&r, PROTO_MSG_HELLO, 1);
	r.u.hello.version = 2;
	r.u.hello.client = "future";
	ck_assert_int_eq(proto_pack_request(&b, &r, &lim, &e), 0);
	ck_assert_int_eq(proto_unpack_request(b.data + 4, b.len - 4, &lim,
	    &out, &e), 0);
	ck_assert_uint_eq(out.u.hello.version, 2);
	ck_assert_int_eq(proto_check_version(out.u.hello.version, &e),
	    -EPROTONOSUPPORT);
	proto_request_free(&out);
	proto_buf_free(&b);
}
END_TEST

START_TEST(test_utf8_and_names)
{
	struct proto_err e;

	ck_assert_uint_eq(proto_utf8_valid("abc", 3), 3);
	ck_assert_uint_eq(proto_utf8_valid("\xc3\xa9", 2), 2);
	ck_assert_uint_eq(proto_utf8_valid("\xf0\x9f\x94\xa5", 4), 4);
	ck_assert_uint_eq(proto_utf8_valid("a\xc3", 2), 1);	/* cut */
	ck_assert_uint_eq(proto_utf8_valid("a\xc0\xaf", 3), 1);	/* overlong */
	ck_assert_uint_eq(proto_utf8_valid("\xed\xa0\x80", 3), 0); /* surrogate */
	ck_assert_uint_eq(proto_utf8_valid("\xf4\x90\x80\x80", 4), 0);
	ck_assert_uint_eq(proto_utf8_valid("\xff", 1), 0);
	ck_assert_uint_eq(proto_utf8_valid("\x80", 1), 0);

	ck_assert_int_eq(proto_check_model_name("llama-3.1-8b", &e), 0);
	ck_assert_int_eq(proto_check_model_name("m\xc3\xa9", &e), 0);
	ck_assert_int_eq(proto_check_model_name("a/b", &e), -EINVAL);
	ck_assert_int_eq(proto_check_model_name("..", &e), -EINVAL);
	ck_assert_int_eq(proto_check_model_name("a..b", &e), -EINVAL);
	ck_assert_int_eq(proto_check_model_name(".hidden", &e), -EINVAL);
	ck_assert_int_eq(proto_check_model_name("", &e), -EINVAL);
	ck_assert_int_eq(proto_check_model_name("a\nb", &e), -EINVAL);
	ck_assert_int_eq(proto_check_model_name("a\\b", &e), -EINVAL);
	ck_assert_int_eq(proto_check_model_name(NULL, &e), -EINVAL);
}
END_TEST

START_TEST(test_pack_error)
{
	struct proto_buf	 b;
	struct proto_response	 out;
	struct proto_err	 e;
	char			 msg[3000];

	/* bad UTF-8 and control characters are made safe; length is cut */
	memset(msg, 'x', sizeof(msg));
	memcpy(msg, "bad \xff\xfe byte\n\xe2\x82", 14);
	msg[sizeof(msg) - 1] = '\0';
	proto_buf_init(&b);
	ck_assert_int_eq(proto_pack_error(&b, 0, (enum proto_code)99, msg), 0);
	ck_assert_int_eq(proto_unpack_response(b.data + 4, b.len - 4, &lim,
	    &out, &e), 0);
	ck_assert_int_eq(out.type, PROTO_MSG_ERROR);
	ck_assert(out.id == 0);
	ck_assert_int_eq(out.u.error.code, PROTO_E_INTERNAL);
	ck_assert_uint_eq(strlen(out.u.error.message), PROTO_MAX_MESSAGE);
	ck_assert(strncmp(out.u.error.message, "bad ?? byte ??xx", 16) == 0);
	proto_response_free(&out);
	proto_buf_free(&b);
}
END_TEST

/* Packers refuse what the decoder would refuse, leaving b alone. */
START_TEST(test_pack_checks)
{
	static const int32_t bad_ids[] = { 5, -1 };
	struct proto_buf	 b;
	struct proto_request	 r;
	struct proto_response	 s;
	struct proto_err	 e;

	proto_buf_init(&b);
	ck_assert_int_eq(proto_buf_append(&b, "keep", 4), 0);

	proto_request_init(&r, PROTO_MSG_SHOW, 1);
	r.u.show.model = "../etc/passwd";
	ck_assert_int_eq(proto_pack_request(&b, &r, &lim, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "field 'model'"));
	r.u.show.model = "ok";
	r.id = 0;
	ck_assert_int_eq(proto_pack_request(&b, &r, &lim, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "'id'"));

	proto_request_init(&r, PROTO_MSG_GENERATE, 1);
	r.u.generate.model = "m";
	ck_assert_int_eq(proto_pack_request(&b, &r, &lim, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "'prompt' or 'ids'"));
	r.u.generate.input.ids = bad_ids;
	r.u.generate.input.n_ids = 2;
	ck_assert_int_eq(proto_pack_request(&b, &r, &lim, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "ids"));
	r.u.generate.input.n_ids = 1;
	r.u.generate.opts.sampling.set = PROTO_S_TOP_P;
	r.u.generate.opts.sampling.top_p = 1.5f;
	ck_assert_int_eq(proto_pack_request(&b, &r, &lim, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "top_p"));

	proto_response_init(&s, PROTO_MSG_DONE, 1);
	s.u.done.reason = PROTO_REASON_EOS;
	s.u.done.prompt_tokens = 1;
	s.u.done.cached_tokens = 2;
	ck_assert_int_eq(proto_pack_response(&b, &s, &lim, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "cached_tokens"));
	proto_response_init(&s, PROTO_MSG_REPLY, 1);
	s.request = PROTO_MSG_GENERATE;
	ck_assert_int_eq(proto_pack_response(&b, &s, &lim, &e), -EINVAL);

	ck_assert_uint_eq(b.len, 4);
	ck_assert(memcmp(b.data, "keep", 4) == 0);
	proto_buf_free(&b);
	proto_buf_free(NULL);
}
END_TEST

/* ---- limits ---- */

/*
 * The hostile bodies: each must be refused by the pre-validator before
 * msgpack-c could size an allocation from it.
 */
static const struct {
	const char	*name;
	const char	*bytes;
	size_t		 len;
	const char	*want;		/* in the error message */
} hostile[] = {
	{ "array32 at top (96 GB)", "\xdd\xff\x00\x00\x00", 5,
	    "top level: expected a map, got array" },
	{ "array32 in a map", "\x81\xa1x\xdd\xff\x00\x00\x00", 8,
	    "array at byte 3 declares 4278190080 elements, only 0 bytes left" },
	{ "map32 in a map", "\x81\xa1x\xdf\xff\xff\xff\xff", 8,
	    "map at byte 3 declares 4294967295 elements" },
	{ "str32 past the end", "\x81\xa1x\xdb\xff\xff\xff\xf0" "abc", 11,
	    "str at byte 3 declares 4294967280 bytes, only 3 left" },
	{ "bin32 past the end", "\x81\xa1x\xc6\x7f\xff\xff\xff" "abc", 11,
	    "bin at byte 3 declares 2147483647 bytes, only 3 left" },
	{ "ext32 past the end", "\x81\xa1x\xc9\x7f\xff\xff\xff\x01", 9,
	    "ext at byte 3 declares 2147483647 bytes, only 0 left" },
	{ "map32 at top", "\xdf\x7f\xff\xff\xff\xa1x", 7,
	    "map at byte 0 declares 2147483647 elements" },
	{ "array16 of arrays32", "\x81\xa1x\xdc\x00\x03\xdd\x10\x00\x00\x00"
	    "\xdd\x10\x00\x00\x00\xdd\x10\x00\x00\x00", 21,
	    "array at byte 6 declares 268435456 elements, only 10 bytes" },
};

static int
hostile_all(void)
{
	struct proto_request	 rq;
	struct proto_response	 rs;
	struct proto_err	 e;
	size_t			 i;
	int			 rc;

	for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		rc = proto_unpack_request(hostile[i].bytes, hostile[i].len,
		    &lim, &rq, &e);
		if (rc != -EBADMSG || e.code != PROTO_E_BAD_REQUEST)
			return 10 + (int)i;
		rc = proto_unpack_response(hostile[i].bytes, hostile[i].len,
		    &lim, &rs, &e);
		if (rc != -EBADMSG)
			return 30 + (int)i;
	}
	return 0;
}

/* Run fn in a child limited to its current address space + 256 MiB. */
static int
run_limited(int (*fn)(void))
{
	struct rlimit	 rl;
	unsigned long	 pages = 0;
	FILE		*f;
	pid_t		 pid;
	int		 st;

	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if ((f = fopen("/proc/self/statm", "r")) == NULL ||
		    fscanf(f, "%lu", &pages) != 1)
			_exit(2);
		fclose(f);
		rl.rlim_cur = rl.rlim_max = (rlim_t)pages *
		    (rlim_t)sysconf(_SC_PAGESIZE) + (256ul << 20);
		if (setrlimit(RLIMIT_AS, &rl) != 0)
			_exit(3);
		_exit(fn());
	}
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	if (WIFSIGNALED(st))
		return 1000 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

START_TEST(test_hostile_lengths)
{
	size_t	 i;

	/* each, with the message naming the problem */
	for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++)
		expect_raw(hostile[i].bytes, hostile[i].len, -EBADMSG,
		    hostile[i].want);
	/* and again where a big allocation would fail */
	ck_assert_int_eq(run_limited(hostile_all), 0);
}
END_TEST

#ifndef UNDER_ASAN
/* Without the pre-validator msgpack-c does try: the limit catches it. */
static int
control_raw(void)
{
	msgpack_zone	 z;
	msgpack_object	 o;
	size_t		 off = 0;
	int		 ur;

	msgpack_zone_init(&z, 2048);
	ur = msgpack_unpack("\xdd\xff\x00\x00\x00", 5, &off, &z, &o);
	msgpack_zone_destroy(&z);
	return ur == MSGPACK_UNPACK_NOMEM_ERROR ? 0 : 1;
}
#endif

START_TEST(test_hostile_control)
{
#ifdef UNDER_ASAN
	/* ASan reports the huge allocation itself; nothing to show here */
	ck_assert_int_eq(hostile_all(), 0);
#else
	ck_assert_int_eq(run_limited(control_raw), 0);
#endif
}
END_TEST

START_TEST(test_deep_nesting)
{
	uint8_t	 buf[200];
	size_t	 n, i;

	/* 100 nested arrays under a map key */
	n = 0;
	buf[n++] = 0x81;
	buf[n++] = 0xa1;
	buf[n++] = 'x';
	for (i = 0; i < 100; i++)
		buf[n++] = 0x91;
	buf[n++] = 0xc0;
	expect_raw(buf, n, -EBADMSG, "nested deeper than 16");
	ck_assert_int_eq(run_limited(hostile_all), 0);

	/* 16 levels in all is fine (a show with an unknown deep field) */
	mp_begin();
	msgpack_pack_map(&mp, 4);
	mp_s("type");
	mp_s("show");
	mp_s("id");
	msgpack_pack_uint64(&mp, 1);
	mp_s("model");
	mp_s("m");
	mp_s("deep");
	for (i = 0; i < 15; i++)
		msgpack_pack_array(&mp, 1);
	msgpack_pack_nil(&mp);
	{
		struct proto_request out;
		struct proto_err e;

		ck_assert_int_eq(proto_unpack_request(sb.data, sb.size, &lim,
		    &out, &e), 0);
		proto_request_free(&out);
	}
	mp_end();
	/* 17 is not, even when the innermost is empty */
	mp_begin();
	msgpack_pack_map(&mp, 1);
	mp_s("deep");
	for (i = 0; i < 15; i++)
		msgpack_pack_array(&mp, 1);
	msgpack_pack_array(&mp, 0);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "nested deeper");
}
END_TEST

START_TEST(test_frame_too_large)
{
	struct proto_reader	*rd;
	struct proto_err	 e;
	const uint8_t		*body;
	uint8_t			 hdr[4];
	size_t			 len;
	uint32_t		 blen;

	ck_assert_int_eq(proto_reader_new(lim.max_frame, &rd), 0);
	proto_frame_hdr(hdr, PROTO_MAX_FRAME_DEFAULT + 1);
	/* three bytes say nothing yet */
	ck_assert_int_eq(proto_reader_feed(rd, hdr, 3, &e), 0);
	ck_assert_int_eq(proto_reader_next(rd, &body, &len, &e), 0);
	/* the fourth is enough to refuse, before any body */
	ck_assert_int_eq(proto_reader_feed(rd, hdr + 3, 1, &e), -EMSGSIZE);
	ck_assert_int_eq(e.code, PROTO_E_TOO_LARGE);
	ck_assert_ptr_nonnull(strstr(e.msg, "exceeds"));
	/* sticky */
	ck_assert_int_eq(proto_reader_next(rd, &body, &len, &e), -EMSGSIZE);
	ck_assert_int_eq(proto_reader_feed(rd, "x", 1, &e), -EMSGSIZE);
	proto_reader_free(rd);

	/* 4 GiB - 1 */
	ck_assert_int_eq(proto_frame_len((const uint8_t *)"\xff\xff\xff\xff",
	    lim.max_frame, &blen, &e), -EMSGSIZE);
	/* exactly the maximum is fine */
	proto_frame_hdr(hdr, PROTO_MAX_FRAME_DEFAULT);
	ck_assert_int_eq(proto_frame_len(hdr, lim.max_frame, &blen, &e), 0);
	ck_assert_uint_eq(blen, PROTO_MAX_FRAME_DEFAULT);

	/* a maximum set at run time */
	ck_assert_int_eq(proto_reader_new(lim.max_frame, &rd), 0);
	ck_assert_int_eq(proto_reader_set_max(rd, 10), -EINVAL);
	ck_assert_int_eq(proto_reader_set_max(rd, 4096), 0);
	proto_frame_hdr(hdr, 4097);
	ck_assert_int_eq(proto_reader_feed(rd, hdr, 4, &e), -EMSGSIZE);
	proto_reader_free(rd);
	ck_assert_int_eq(proto_reader_new(100, &rd), -EINVAL);

	/* the packer refuses to build one */
	{
		struct proto_buf	 b;
		struct proto_request	 r;
		char			*p;

		lim.max_frame = 4096;
		p = calloc(1, 5000);
		ck_assert_ptr_nonnull(p);
		memset(p, 'a', 4999);
		proto_buf_init(&b);
		proto_request_init(&r, PROTO_MSG_TOKENIZE, 1);
		r.u.tokenize.model = "m";
		r.u.tokenize.text = p;
		r.u.tokenize.text_len = 4999;
		ck_assert_int_eq(proto_pack_request(&b, &r, &lim, &e),
		    -EMSGSIZE);
		ck_assert_int_eq(e.code, PROTO_E_TOO_LARGE);
		ck_assert_uint_eq(b.len, 0);
		ck_assert_int_eq(proto_frame_append(&b, p, 4097, 4096, &e),
		    -EMSGSIZE);
		ck_assert_int_eq(proto_frame_append(&b, p, 4096, 4096, &e), 0);
		ck_assert_uint_eq(b.len, 4100);
		/* and the decoder refuses an oversized body directly */
		ck_assert_int_eq(proto_scan(p, 4097, &lim, &e), -EMSGSIZE);
		proto_buf_free(&b);
		free(p);
	}
}
END_TEST

START_TEST(test_zero_length_frame)
{
	struct proto_reader	*rd;
	struct proto_buf	 b;
	struct proto_err	 e;
	const uint8_t		*body;
	size_t			 len;

	ck_assert_int_eq(proto_reader_new(lim.max_frame, &rd), 0);
	ck_assert_int_eq(proto_reader_feed(rd, "\0\0\0\0", 4, &e), -EBADMSG);
	ck_assert_int_eq(e.code, PROTO_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(e.msg, "zero-length"));
	ck_assert_int_eq(proto_reader_next(rd, &body, &len, &e), -EBADMSG);
	proto_reader_free(rd);
	/* nor can one be written, nor decoded */
	proto_buf_init(&b);
	ck_assert_int_eq(proto_frame_append(&b, "", 0, lim.max_frame, &e),
	    -EINVAL);
	proto_buf_free(&b);
	expect_raw("", 0, -EBADMSG, "empty body");
}
END_TEST

START_TEST(test_too_many_objects)
{
	size_t	 i;

	lim.max_objects = 100;
	/* declared up front: refused at the header */
	req_begin("ping", 1);
	mp_s("junk");
	msgpack_pack_array(&mp, 200);
	for (i = 0; i < 200; i++)
		msgpack_pack_nil(&mp);
	expect_req(-EMSGSIZE, PROTO_E_TOO_LARGE, "over the limit of 100");
	/* spread over many small containers: refused while walking */
	req_begin("ping", 1);
	mp_s("junk");
	msgpack_pack_array(&mp, 50);
	for (i = 0; i < 50; i++) {
		msgpack_pack_array(&mp, 1);
		msgpack_pack_nil(&mp);
	}
	expect_req(-EMSGSIZE, PROTO_E_TOO_LARGE, "objects");
}
END_TEST

START_TEST(test_field_caps)
{
	struct proto_request	 out;
	struct proto_err	 e;
	size_t			 i;
	char			*big;

	/* more ids than max_ids */
	lim.max_ids = 1000;
	req_begin("detokenize", 2);
	mp_s("model");
	mp_s("m");
	mp_s("ids");
	msgpack_pack_array(&mp, 1001);
	for (i = 0; i < 1001; i++)
		msgpack_pack_uint32(&mp, 1);
	expect_req(-EMSGSIZE, PROTO_E_TOO_LARGE, "field 'ids'");

	/* a prompt over max_text */
	lim.max_text = 1000;
	big = malloc(1001);
	ck_assert_ptr_nonnull(big);
	memset(big, 'a', 1001);
	req_begin("generate", 2);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	msgpack_pack_str_with_body(&mp, big, 1001);
	expect_req(-EMSGSIZE, PROTO_E_TOO_LARGE, "field 'prompt'");
	/* exactly max_text is fine */
	req_begin("generate", 2);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	msgpack_pack_str_with_body(&mp, big, 1000);
	ck_assert_int_eq(proto_unpack_request(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert_uint_eq(out.u.generate.input.text_len, 1000);
	ck_assert_int_eq(out.u.generate.input.text[1000], '\0');
	proto_request_free(&out);
	mp_end();

	/* a model name over PROTO_MAX_NAME */
	req_begin("show", 1);
	mp_s("model");
	msgpack_pack_str_with_body(&mp, big, PROTO_MAX_NAME + 1);
	expect_req(-EMSGSIZE, PROTO_E_TOO_LARGE, "field 'model'");

	/* a stop string over max_stop_len */
	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("p");
	mp_s("stop");
	msgpack_pack_array(&mp, 1);
	msgpack_pack_str_with_body(&mp, big, PROTO_MAX_STOP_LEN_DEFAULT + 1);
	expect_req(-EMSGSIZE, PROTO_E_TOO_LARGE, "field 'stop[0]'");

	/* too many chat messages */
	lim.max_messages = 4;
	req_begin("chat", 2);
	mp_s("model");
	mp_s("m");
	mp_s("messages");
	msgpack_pack_array(&mp, 5);
	for (i = 0; i < 5; i++) {
		msgpack_pack_map(&mp, 2);
		mp_s("role");
		mp_s("user");
		mp_s("content");
		mp_s("hi");
	}
	expect_req(-EMSGSIZE, PROTO_E_TOO_LARGE, "field 'messages'");

	/* top_logprobs over PROTO_MAX_TOP */
	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("p");
	mp_s("top_logprobs");
	msgpack_pack_uint32(&mp, PROTO_MAX_TOP + 1);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "field 'top_logprobs'");
	free(big);
}
END_TEST

/* Messages at the default limits pass whole. */
START_TEST(test_large_roundtrip)
{
	struct proto_request	 r;
	struct proto_response	 s;
	struct proto_message	*msgs;
	char			*text;
	int32_t			*ids;
	float			*lps;
	size_t			 i;

	text = malloc(PROTO_MAX_TEXT_DEFAULT);
	ids = malloc(PROTO_MAX_IDS_DEFAULT * sizeof(*ids));
	lps = malloc(PROTO_MAX_IDS_DEFAULT * sizeof(*lps));
	msgs = calloc(PROTO_MAX_MESSAGES_DEFAULT, sizeof(*msgs));
	ck_assert(text != NULL && ids != NULL && lps != NULL && msgs != NULL);
	for (i = 0; i < PROTO_MAX_TEXT_DEFAULT; i++)
		text[i] = (char)('a' + i % 26);
	for (i = 0; i < PROTO_MAX_IDS_DEFAULT; i++) {
		ids[i] = (int32_t)(INT32_MAX - i * 7919);
		lps[i] = -(float)i / 1000.0f;
	}

	proto_request_init(&r, PROTO_MSG_GENERATE, 1);
	r.u.generate.model = "m";
	r.u.generate.input.text = text;
	r.u.generate.input.text_len = PROTO_MAX_TEXT_DEFAULT;
	roundtrip_request(&r);
	r.u.generate.input.text = NULL;
	r.u.generate.input.text_len = 0;
	r.u.generate.input.ids = ids;
	r.u.generate.input.n_ids = PROTO_MAX_IDS_DEFAULT;
	roundtrip_request(&r);

	for (i = 0; i < PROTO_MAX_MESSAGES_DEFAULT; i++) {
		msgs[i].role = i % 2 ? "assistant" : "user";
		msgs[i].content = text + i;
		msgs[i].content_len = 100;
	}
	proto_request_init(&r, PROTO_MSG_CHAT, 2);
	r.u.chat.model = "m";
	r.u.chat.messages = msgs;
	r.u.chat.n_messages = PROTO_MAX_MESSAGES_DEFAULT;
	roundtrip_request(&r);

	proto_response_init(&s, PROTO_MSG_REPLY, 3);
	s.request = PROTO_MSG_TOKENIZE;
	s.u.tokenize.ids = ids;
	s.u.tokenize.n_ids = PROTO_MAX_IDS_DEFAULT;
	roundtrip_response(&s);

	/* 2049 tokens scored with 20 alternatives each */
	proto_response_init(&s, PROTO_MSG_REPLY, 4);
	s.request = PROTO_MSG_EVAL;
	s.u.eval.tokens = ids;
	s.u.eval.n_tokens = 2049;
	s.u.eval.logprobs = lps;
	s.u.eval.top = PROTO_MAX_TOP;
	s.u.eval.top_ids = ids;
	s.u.eval.top_logprobs = lps;
	roundtrip_response(&s);

	free(text);
	free(ids);
	free(lps);
	free(msgs);
}
END_TEST

START_TEST(test_limits)
{
	struct proto_limits	 l;
	struct proto_err	 e;

	proto_limits_default(&l);
	ck_assert_int_eq(proto_limits_check(&l, &e), 0);
	ck_assert_uint_eq(l.max_frame, 16u << 20);
	l.max_frame = PROTO_MAX_FRAME_LIMIT + 1;
	ck_assert_int_eq(proto_limits_check(&l, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "max_frame"));
	proto_limits_default(&l);
	l.max_ids = 0;
	ck_assert_int_eq(proto_limits_check(&l, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "max_ids"));
}
END_TEST

/* ---- errors ---- */

START_TEST(test_top_not_map)
{
	expect_raw("\x93\x01\x02\x03", 4, -EBADMSG, "top level: expected a map, got array");
	expect_raw("\x2a", 1, -EBADMSG, "expected a map, got int");
	expect_raw("\xa3" "abc", 4, -EBADMSG, "expected a map, got str");
	expect_raw("\xc0", 1, -EBADMSG, "expected a map");
}
END_TEST

START_TEST(test_trailing)
{
	req_begin("ping", 0);
	msgpack_sbuffer_write(&sb, "\x00\xff", 2);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "2 trailing bytes");
	/* a second map after the first */
	req_begin("ping", 0);
	msgpack_sbuffer_write(&sb, "\x80", 1);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "trailing");
}
END_TEST

START_TEST(test_reserved_c1)
{
	expect_raw("\x81\xa1x\xc1", 4, -EBADMSG, "reserved byte 0xc1");
	expect_raw("\xc1", 1, -EBADMSG, "0xc1");
}
END_TEST

START_TEST(test_truncated)
{
	/* map of 2 pairs with 1 pair: too few bytes for its count */
	expect_raw("\x82\xa1x\x01", 4, -EBADMSG,
	    "map at byte 0 declares 2 elements, only 3 bytes left");
	/* enough bytes for the count, but they run out on the way */
	expect_raw("\x82\xa1x\x01\x01", 5, -EBADMSG,
	    "truncated: 3 more elements due, 2 bytes left");
	/* uint32 header cut short */
	expect_raw("\x81\xa1x\xce\x00", 5, -EBADMSG,
	    "int at byte 3 needs 4 bytes, only 1 left");
	/* str32 header cut short */
	expect_raw("\x81\xa1x\xdb\x00", 5, -EBADMSG,
	    "str header at byte 3 cut short");
	/* str8 of 5 with 2 bytes */
	expect_raw("\x81\xa1x\xd9\x05" "ab", 7, -EBADMSG, "bytes, only");
}
END_TEST

START_TEST(test_bad_id)
{
	struct proto_request	 out;
	struct proto_err	 e;

	mp_begin();
	msgpack_pack_map(&mp, 2);
	mp_s("type");
	mp_s("ping");
	mp_s("id");
	mp_s("7");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "field 'id': expected an unsigned integer, got str");

	mp_begin();
	msgpack_pack_map(&mp, 2);
	mp_s("type");
	mp_s("ping");
	mp_s("id");
	msgpack_pack_int(&mp, -3);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "field 'id': -3 is negative");

	mp_begin();
	msgpack_pack_map(&mp, 2);
	mp_s("type");
	mp_s("ping");
	mp_s("id");
	msgpack_pack_uint64(&mp, 0);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "at least 1");

	mp_begin();
	msgpack_pack_map(&mp, 1);
	mp_s("type");
	mp_s("ping");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "missing field 'id'");

	/* the id is reported with errors found after it was read */
	req_begin("show", 1);
	mp_s("model");
	mp_s("a/b");
	ck_assert_int_eq(proto_unpack_request(sb.data, sb.size, &lim, &out,
	    &e), -EINVAL);
	ck_assert(e.id == 7);
	mp_end();
}
END_TEST

START_TEST(test_bad_max_tokens)
{
	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("hi");
	mp_s("max_tokens");
	msgpack_pack_int(&mp, -1);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST,
	    "field 'max_tokens': -1 is not in 0..2147483647");

	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("hi");
	mp_s("max_tokens");
	mp_s("60");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "field 'max_tokens': expected an integer, got str");

	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("hi");
	mp_s("max_tokens");
	msgpack_pack_uint64(&mp, 1ull << 40);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "field 'max_tokens'");

	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("hi");
	mp_s("max_tokens");
	msgpack_pack_double(&mp, 60.0);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "got float");
}
END_TEST

START_TEST(test_bad_prompt)
{
	req_begin("generate", 2);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	msgpack_pack_int(&mp, 5);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "field 'prompt': expected a string, got int");

	req_begin("generate", 2);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	msgpack_pack_bin_with_body(&mp, "hi", 2);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "got bin");

	req_begin("generate", 2);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	msgpack_pack_str_with_body(&mp, "a\xff", 2);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "invalid UTF-8 at byte 1");

	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("a");
	mp_s("ids");
	msgpack_pack_array(&mp, 1);
	msgpack_pack_uint32(&mp, 1);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "not both");
}
END_TEST

START_TEST(test_bad_ids)
{
	req_begin("generate", 2);
	mp_s("model");
	mp_s("m");
	mp_s("ids");
	msgpack_pack_array(&mp, 3);
	msgpack_pack_uint32(&mp, 1);
	msgpack_pack_int(&mp, -1);
	msgpack_pack_uint32(&mp, 2);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST,
	    "field 'ids[1]': token id -1 is not in 0..2147483647");

	req_begin("generate", 2);
	mp_s("model");
	mp_s("m");
	mp_s("ids");
	msgpack_pack_array(&mp, 2);
	msgpack_pack_uint32(&mp, 1);
	msgpack_pack_uint64(&mp, 1ull << 40);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST,
	    "field 'ids[1]': token id 1099511627776");

	req_begin("generate", 2);
	mp_s("model");
	mp_s("m");
	mp_s("ids");
	msgpack_pack_array(&mp, 1);
	msgpack_pack_uint64(&mp, 1ull << 31);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "ids[0]");

	req_begin("detokenize", 2);
	mp_s("model");
	mp_s("m");
	mp_s("ids");
	msgpack_pack_array(&mp, 1);
	mp_s("5");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "field 'ids[0]': expected a token id, got str");

	req_begin("detokenize", 2);
	mp_s("model");
	mp_s("m");
	mp_s("ids");
	msgpack_pack_uint32(&mp, 5);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "expected an array");
}
END_TEST

START_TEST(test_bad_stop)
{
	size_t	 i;

	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("p");
	mp_s("stop");
	msgpack_pack_array(&mp, PROTO_MAX_STOP_DEFAULT + 1);
	for (i = 0; i < PROTO_MAX_STOP_DEFAULT + 1; i++)
		mp_s("s");
	expect_req(-EMSGSIZE, PROTO_E_TOO_LARGE,
	    "field 'stop': 17 stop strings, over the limit of 16");

	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("p");
	mp_s("stop");
	mp_s("\n");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "expected an array");

	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("p");
	mp_s("stop");
	msgpack_pack_array(&mp, 1);
	mp_s("");
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "field 'stop[0]': empty");

	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("p");
	mp_s("stop");
	msgpack_pack_array(&mp, 1);
	msgpack_pack_str_with_body(&mp, "a\0b", 3);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "NUL");
}
END_TEST

START_TEST(test_bad_sampling)
{
	static const struct {
		const char	*field;
		double		 v;
		const char	*want;
	} t[] = {
		{ "temperature", NAN, "field 'temperature': not a finite" },
		{ "temperature", INFINITY, "not a finite" },
		{ "temperature", -0.5, "field 'temperature': -0.5 is not in" },
		{ "temperature", 1e300, "field 'temperature'" },
		{ "top_p", 1.5, "field 'top_p'" },
		{ "min_p", -0.1, "field 'min_p'" },
		{ "repeat_penalty", 0, "field 'repeat_penalty'" },
		{ "presence_penalty", -101, "field 'presence_penalty'" },
		{ "frequency_penalty", NAN, "field 'frequency_penalty'" },
	};
	size_t	 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		req_begin("generate", 3);
		mp_s("model");
		mp_s("m");
		mp_s("prompt");
		mp_s("p");
		mp_s(t[i].field);
		if (i == 0)
			msgpack_pack_float(&mp, NAN);	/* float32 NaN */
		else
			msgpack_pack_double(&mp, t[i].v);
		expect_req(-EINVAL, PROTO_E_BAD_REQUEST, t[i].want);
	}
	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("p");
	mp_s("temperature");
	mp_s("hot");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "field 'temperature': expected a number, got str");

	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("p");
	mp_s("penalty_last_n");
	msgpack_pack_int(&mp, -2);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "field 'penalty_last_n'");

	req_begin("generate", 3);
	mp_s("model");
	mp_s("m");
	mp_s("prompt");
	mp_s("p");
	mp_s("stream");
	msgpack_pack_int(&mp, 1);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "field 'stream': expected a bool, got int");

	req_begin("load", 2);
	mp_s("model");
	mp_s("m");
	mp_s("keep_alive");
	msgpack_pack_int(&mp, -2);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "field 'keep_alive'");
}
END_TEST

START_TEST(test_bad_model)
{
	static const char *const bad[] = { "a/b", "..", "../x", "x/../y",
	    ".hidden", "", "a\tb" };
	size_t	 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req_begin("generate", 2);
		mp_s("model");
		mp_s(bad[i]);
		mp_s("prompt");
		mp_s("p");
		expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "field 'model'");
	}
	req_begin("show", 1);
	mp_s("model");
	msgpack_pack_str_with_body(&mp, "a\0b", 3);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "NUL");
	req_begin("show", 1);
	mp_s("model");
	msgpack_pack_uint32(&mp, 3);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "expected a string, got int");
	/* template names are identifiers */
	req_begin("render", 3);
	mp_s("model");
	mp_s("m");
	mp_s("messages");
	msgpack_pack_array(&mp, 1);
	msgpack_pack_map(&mp, 2);
	mp_s("role");
	mp_s("user");
	mp_s("content");
	mp_s("hi");
	mp_s("template");
	mp_s("../chatml");
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "field 'template'");
}
END_TEST

START_TEST(test_missing_fields)
{
	req_begin("generate", 1);
	mp_s("prompt");
	mp_s("p");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "missing field 'model'");

	req_begin("generate", 1);
	mp_s("model");
	mp_s("m");
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST,
	    "missing field 'prompt' or 'ids'");

	req_begin("chat", 1);
	mp_s("model");
	mp_s("m");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "missing field 'messages'");

	req_begin("chat", 2);
	mp_s("model");
	mp_s("m");
	mp_s("messages");
	msgpack_pack_array(&mp, 0);
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "field 'messages'");

	req_begin("chat", 2);
	mp_s("model");
	mp_s("m");
	mp_s("messages");
	msgpack_pack_array(&mp, 1);
	msgpack_pack_map(&mp, 1);
	mp_s("content");
	mp_s("hi");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "'messages[0].role'");

	req_begin("chat", 2);
	mp_s("model");
	mp_s("m");
	mp_s("messages");
	msgpack_pack_array(&mp, 1);
	msgpack_pack_map(&mp, 2);
	mp_s("role");
	mp_s("us er");
	mp_s("content");
	mp_s("hi");
	expect_req(-EINVAL, PROTO_E_BAD_REQUEST, "'messages[0].role'");

	req_begin("chat", 2);
	mp_s("model");
	mp_s("m");
	mp_s("messages");
	msgpack_pack_array(&mp, 1);
	mp_s("hello");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "'messages[0]': expected a map, got str");

	req_begin("hello", 1);
	mp_s("client");
	mp_s("c");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "missing field 'version'");

	req_begin("tokenize", 1);
	mp_s("model");
	mp_s("m");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "missing field 'text'");

	req_begin("cancel", 0);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "missing field 'target'");

	mp_begin();
	msgpack_pack_map(&mp, 1);
	mp_s("id");
	msgpack_pack_uint32(&mp, 3);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "missing field 'type'");
}
END_TEST

START_TEST(test_unknown_type)
{
	req_begin("frobnicate", 0);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "unknown message type 'frobnicate'");
	/* a server type is not a request, nor the other way round */
	req_begin("reply", 0);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "unknown message type");
	req_begin("ping", 0);
	expect_resp(-EBADMSG, PROTO_E_BAD_REQUEST, "unknown message type");
	/* unprintable names are described, not echoed */
	req_begin("a\x01\x02", 0);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "of 3 bytes");

	mp_begin();
	msgpack_pack_map(&mp, 2);
	mp_s("type");
	msgpack_pack_uint32(&mp, 7);
	mp_s("id");
	msgpack_pack_uint32(&mp, 3);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "field 'type': expected a string, got int");
	/* a reply to an unknown request */
	mp_begin();
	msgpack_pack_map(&mp, 3);
	mp_s("type");
	mp_s("reply");
	mp_s("id");
	msgpack_pack_uint32(&mp, 3);
	mp_s("request");
	mp_s("generate");
	expect_resp(-EBADMSG, PROTO_E_BAD_REQUEST, "unknown request type");
}
END_TEST

START_TEST(test_map_keys)
{
	/* a key twice */
	req_begin("show", 2);
	mp_s("model");
	mp_s("a");
	mp_s("model");
	mp_s("b");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "field 'model': given twice");
	mp_begin();
	msgpack_pack_map(&mp, 3);
	mp_s("type");
	mp_s("ping");
	mp_s("id");
	msgpack_pack_uint32(&mp, 3);
	mp_s("type");
	mp_s("list");
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "given twice");
	/* a key that is not a string */
	req_begin("ping", 1);
	msgpack_pack_uint32(&mp, 1);
	msgpack_pack_uint32(&mp, 1);
	expect_req(-EBADMSG, PROTO_E_BAD_REQUEST, "map key is a int");
}
END_TEST

START_TEST(test_bad_responses)
{
	/* token id out of range */
	mp_begin();
	msgpack_pack_map(&mp, 4);
	mp_s("type");
	mp_s("token");
	mp_s("id");
	msgpack_pack_uint32(&mp, 3);
	mp_s("text");
	mp_s("a");
	mp_s("token");
	msgpack_pack_int(&mp, -1);
	expect_resp(-EINVAL, PROTO_E_BAD_REQUEST, "field 'token'");
	/* top ids and logprobs of different lengths */
	mp_begin();
	msgpack_pack_map(&mp, 6);
	mp_s("type");
	mp_s("token");
	mp_s("id");
	msgpack_pack_uint32(&mp, 3);
	mp_s("text");
	mp_s("a");
	mp_s("token");
	msgpack_pack_uint32(&mp, 1);
	mp_s("top_ids");
	msgpack_pack_array(&mp, 1);
	msgpack_pack_uint32(&mp, 1);
	mp_s("top_logprobs");
	msgpack_pack_array(&mp, 0);
	expect_resp(-EINVAL, PROTO_E_BAD_REQUEST, "1 ids but 0 logprobs");
	/* progress past its total */
	mp_begin();
	msgpack_pack_map(&mp, 4);
	mp_s("type");
	mp_s("progress");
	mp_s("id");
	msgpack_pack_uint32(&mp, 3);
	mp_s("done");
	msgpack_pack_uint32(&mp, 10);
	mp_s("total");
	msgpack_pack_uint32(&mp, 9);
	expect_resp(-EINVAL, PROTO_E_BAD_REQUEST, "field 'done'");
	/* eval reply whose logprobs do not match its tokens */
	mp_begin();
	msgpack_pack_map(&mp, 5);
	mp_s("type");
	mp_s("reply");
	mp_s("id");
	msgpack_pack_uint32(&mp, 3);
	mp_s("request");
	mp_s("eval");
	mp_s("tokens");
	msgpack_pack_array(&mp, 3);
	msgpack_pack_uint32(&mp, 1);
	msgpack_pack_uint32(&mp, 2);
	msgpack_pack_uint32(&mp, 3);
	mp_s("logprobs");
	msgpack_pack_array(&mp, 1);
	msgpack_pack_float(&mp, -1);
	expect_resp(-EINVAL, PROTO_E_BAD_REQUEST, "1 values for 2 positions");
	/* done without a reason; done error without the error */
	mp_begin();
	msgpack_pack_map(&mp, 2);
	mp_s("type");
	mp_s("done");
	mp_s("id");
	msgpack_pack_uint32(&mp, 3);
	expect_resp(-EBADMSG, PROTO_E_BAD_REQUEST, "missing field 'reason'");
	mp_begin();
	msgpack_pack_map(&mp, 3);
	mp_s("type");
	mp_s("done");
	mp_s("id");
	msgpack_pack_uint32(&mp, 3);
	mp_s("reason");
	mp_s("error");
	expect_resp(-EBADMSG, PROTO_E_BAD_REQUEST, "missing field 'error'");
	/* id 0 is only for errors */
	mp_begin();
	msgpack_pack_map(&mp, 3);
	mp_s("type");
	mp_s("done");
	mp_s("id");
	msgpack_pack_uint32(&mp, 0);
	mp_s("reason");
	mp_s("eos");
	expect_resp(-EINVAL, PROTO_E_BAD_REQUEST, "at least 1");
	/* an error map that is a string */
	mp_begin();
	msgpack_pack_map(&mp, 3);
	mp_s("type");
	mp_s("error");
	mp_s("id");
	msgpack_pack_uint32(&mp, 0);
	mp_s("error");
	mp_s("boom");
	expect_resp(-EBADMSG, PROTO_E_BAD_REQUEST,
	    "field 'error': expected a map, got str");
	/* hello reply with absurd limits */
	mp_begin();
	msgpack_pack_map(&mp, 6);
	mp_s("type");
	mp_s("reply");
	mp_s("id");
	msgpack_pack_uint32(&mp, 1);
	mp_s("request");
	mp_s("hello");
	mp_s("version");
	msgpack_pack_uint32(&mp, 1);
	mp_s("server");
	mp_s("s");
	mp_s("limits");
	msgpack_pack_map(&mp, 1);
	mp_s("max_frame");
	msgpack_pack_uint32(&mp, 1);
	expect_resp(-EINVAL, PROTO_E_BAD_REQUEST, "max_frame");
}
END_TEST

START_TEST(test_unknown_error_code)
{
	struct proto_response	 out;
	struct proto_err	 e;

	/* an error code from a newer server is kept as an error */
	mp_begin();
	msgpack_pack_map(&mp, 3);
	mp_s("type");
	mp_s("error");
	mp_s("id");
	msgpack_pack_uint32(&mp, 9);
	mp_s("error");
	msgpack_pack_map(&mp, 2);
	mp_s("code");
	mp_s("quota_exceeded");
	mp_s("message");
	mp_s("over quota");
	ck_assert_int_eq(proto_unpack_response(sb.data, sb.size, &lim, &out,
	    &e), 0);
	ck_assert_int_eq(out.u.error.code, PROTO_E_INTERNAL);
	ck_assert_str_eq(out.u.error.message, "over quota");
	proto_response_free(&out);
	proto_response_free(NULL);
	mp_end();
}
END_TEST

/* Random bytes and mutated valid frames never crash or leak. */
START_TEST(test_fuzz)
{
	struct proto_buf	 b;
	struct proto_request	 r, out;
	struct proto_response	 rs;
	struct proto_err	 e;
	uint8_t			 buf[256];
	uint64_t		 s = 12345;
	size_t			 len, i, j;
	int			 ok = 0;

	proto_buf_init(&b);
	proto_request_init(&r, PROTO_MSG_DETOKENIZE, 77);
	{
		static const int32_t ids[] = { 1, 2, 300, 70000 };

		r.u.detokenize.model = "model";
		r.u.detokenize.ids = ids;
		r.u.detokenize.n_ids = 4;
	}
	ck_assert_int_eq(proto_pack_request(&b, &r, &lim, &e), 0);
	len = b.len - 4;
	for (i = 0; i < 20000; i++) {
		memcpy(buf, b.data + 4, len);
		for (j = 0; j < 1 + i % 4; j++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			buf[(s >> 33) % len] = (uint8_t)(s >> 20);
		}
		if (proto_unpack_request(buf, len, &lim, &out, &e) == 0) {
			ok++;
			proto_request_free(&out);
		}
		if (proto_unpack_response(buf, len, &lim, &rs, &e) == 0)
			proto_response_free(&rs);
	}
	/* some mutations (of ids, say) still decode; most do not */
	ck_assert_int_gt(ok, 0);
	ck_assert_int_lt(ok, 20000);
	proto_buf_free(&b);
}
END_TEST

static Suite *
proto_suite(void)
{
	Suite	*s = suite_create("proto");
	TCase	*tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_roundtrip_requests);
	tcase_add_test(tc, test_roundtrip_responses);
	tcase_add_test(tc, test_reader_pieces);
	tcase_add_test(tc, test_socket);
	tcase_add_test(tc, test_unknown_fields);
	tcase_add_test(tc, test_optional_defaults);
	tcase_add_test(tc, test_load_pin);
	tcase_add_test(tc, test_load_numa);
	tcase_add_test(tc, test_version);
	tcase_add_test(tc, test_utf8_and_names);
	tcase_add_test(tc, test_pack_error);
	tcase_add_test(tc, test_pack_checks);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hostile_lengths);
	tcase_add_test(tc, test_hostile_control);
	tcase_add_test(tc, test_deep_nesting);
	tcase_add_test(tc, test_frame_too_large);
	tcase_add_test(tc, test_zero_length_frame);
	tcase_add_test(tc, test_too_many_objects);
	tcase_add_test(tc, test_field_caps);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_large_roundtrip);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_top_not_map);
	tcase_add_test(tc, test_trailing);
	tcase_add_test(tc, test_reserved_c1);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_bad_id);
	tcase_add_test(tc, test_bad_max_tokens);
	tcase_add_test(tc, test_bad_prompt);
	tcase_add_test(tc, test_bad_ids);
	tcase_add_test(tc, test_bad_stop);
	tcase_add_test(tc, test_bad_sampling);
	tcase_add_test(tc, test_bad_model);
	tcase_add_test(tc, test_missing_fields);
	tcase_add_test(tc, test_unknown_type);
	tcase_add_test(tc, test_map_keys);
	tcase_add_test(tc, test_bad_responses);
	tcase_add_test(tc, test_unknown_error_code);
	tcase_add_test(tc, test_fuzz);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr;
	int	 failed;

	signal(SIGPIPE, SIG_DFL);
	sr = srunner_create(proto_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
