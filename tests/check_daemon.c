/*
 * check_daemon.c - hearthd end to end: start the real daemon on a
 * temporary socket with a temporary models directory (models made by
 * mkmodel_lib, and aidreams260K when HEARTH_TESTDATA is set) and speak
 * the protocol to it with proto/ and a tiny blocking client.
 *
 * core:   hello, list, show, load/unload with progress, ps, stats,
 *         generate (greedy = the engine's own computation; aidreams'
 *         known text), chat and render with a ChatML template, eval,
 *         embed, tokenize/detokenize, cancel, keep-alive, 16 concurrent
 *         clients each getting its alone-result, unload while running,
 *         graceful shutdown.
 * limits: a slow reader is paused then closed while others go on, a
 *         disconnect mid-stream frees its memory, prompts longer than
 *         the context, requests in flight per connection.
 * errors: every kind of malformed frame, requests before hello, version
 *         mismatch, bad and unknown model names, a broken model file.
 * residency: a memory budget that forces evictions (the pinned model
 *         stays, the evicted one reloads, every answer is the engine's),
 *         a load that cannot fit fails with the numbers while resident
 *         models serve, a resident model's file truncated while it
 *         serves, a simulated 2-node topology (--numa-topology) and the
 *         NUMA policies of the configuration, reported by show.
 *
 * The client is tclient.c. The daemon binary is $HEARTH_BUILDDIR/hearthd
 * (make check sets it), else ./hearthd. Its log goes to daemon.log in the
 * temporary directory and is printed when the daemon fails to start or
 * stop (always with CHECK_DAEMON_LOG set).
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "forward.h"
#include "gguf_write.h"
#include "kernels.h"
#include "mkmodel_lib.h"
#include "model.h"
#include "proto.h"
#include "sampler.h"
#include "tclient.h"
#include "testutil.h"
#include "tokenizer.h"

#define PAUSE_MS	400	/* pause_timeout of the test daemon */
#define OUTBUF		4096	/* output_buffer of the test daemon */

/* The ChatML template as many GGUF files carry it. */
static const char chatml_template[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + "
    "'\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}";

static const char aidreams_ids_text[] =
    "275 280 302 450 405 403 399 327 446 299 303 266 358 430 312 266 438 "
    "349 438 451 275 429 339 315 374 448 429 465 265 434 317 431 434 289 "
    "408 326 446 262 279 438 349 261 446 299 303 266 323 434 285 362 262 "
    "263 428 434 436 451 275 280 302 450";
static const char aidreams_text[] = " of probability unfold, as I sense "
    "the slowly of vectors. Contrast emerge, a flower, as I settle into a "
    "tapestry of prob";

/* ---- the daemon ---------------------------------------------------- */

static struct td g_d;			/* the daemon (tclient.c) */
static bool	g_aidreams;		/* aidreams260K is in the models */
static bool	g_think;		/* "think" has the R1 template */

/* Copy a model adding metadata keys (chat template, license). */
static void
rewrite_with(const char *src, const char *dst, const char *tmpl,
    const char *license)
{
	struct eng_err err = { "" };
	struct gguf_writer *w;
	struct gguf *g;
	uint64_t i;

	if (gguf_open(src, &g, &err) != 0 || gguf_writer_new(&w) != 0)
		abort();
	for (i = 0; i < g->n_kv; i++)
		if (gguf_writer_copy_kv(w, &g->kv[i]) != 0)
			abort();
	if ((tmpl != NULL && gguf_writer_set_str(w, "tokenizer.chat_template",
	    tmpl) != 0) || (license != NULL &&
	    gguf_writer_set_str(w, "general.license", license) != 0))
		abort();
	for (i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		void *buf = malloc(t->nbytes);

		if (buf == NULL || gguf_read_tensor(g, t, buf, t->nbytes,
		    &err) != 0 || gguf_writer_add_tensor(w, t->name.s,
		    t->n_dims, t->ne, t->type, buf, t->nbytes) != 0)
			abort();
		free(buf);
	}
	if (gguf_writer_to_file(w, dst, &err) != 0)
		abort();
	gguf_writer_free(w);
	gguf_close(g);
}

static void
spec_long(struct mkm_spec *s)
{
	mkm_spec_default(s);
	s->n_embd = 128;
	s->n_ff = 256;
	s->n_ctx = 4096;
	s->seed = 3;
}

/* The models directory and the configuration file. */
static void
make_models(void)
{
	struct mkm_spec s;
	const char *aid;
	char path[4400];
	FILE *f;

	if (td_init(&g_d, tu_tmpdir()) != 0)
		abort();

	mkm_spec_default(&s);		/* llama, 64 dim, context 512 */
	td_write_model(&g_d, &s, "tiny");
	td_write_model(&g_d, &s, "tload");
	td_write_model(&g_d, &s, "tka");
	s.arch = "qwen2";
	s.wtype = KERN_TYPE_Q8_0;
	s.seed = 2;
	td_write_model(&g_d, &s, "qtiny");
	spec_long(&s);
	td_write_model(&g_d, &s, "long");
	td_write_model(&g_d, &s, "long_u");
	snprintf(path, sizeof(path), "%s", td_model_path(&g_d, "tiny"));
	rewrite_with(path, td_model_path(&g_d, "chat"), chatml_template, "MIT");

	/* things that are not models */
	f = fopen(td_model_path(&g_d, "broken"), "w");
	fputs("this is not a GGUF file at all, not even close\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/sub.gguf", g_d.models);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/.hidden.gguf", g_d.models);
	symlink(td_model_path(&g_d, "tiny"), path);
	snprintf(path, sizeof(path), "%s/notes.txt", g_d.models);
	f = fopen(path, "w");
	fputs("x\n", f);
	fclose(f);
	/* a link inside the directory, one out of it */
	symlink("tiny.gguf", td_model_path(&g_d, "alias"));
	snprintf(path, sizeof(path), "%s/outside.gguf", g_d.dir);
	mkm_spec_default(&s);
	if (mkm_write(&s, path, NULL) != 0)
		abort();
	symlink(path, td_model_path(&g_d, "outside"));

	/* a reasoning template (DeepSeek-R1 distill, with a switch) */
	if ((aid = tu_testdata("templates/"
	    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")) != NULL) {
		size_t len;
		uint8_t *t = tu_read_file(aid, &len);
		char *z = t != NULL ? calloc(1, len + 1) : NULL;

		if (z == NULL)
			abort();
		memcpy(z, t, len);
		snprintf(path, sizeof(path), "%s", td_model_path(&g_d, "tiny"));
		rewrite_with(path, td_model_path(&g_d, "think"), z, NULL);
		free(z);
		free(t);
		g_think = true;
	}
	if ((aid = tu_testdata("models/aidreams260K.gguf")) != NULL) {
		symlink(aid, td_model_path(&g_d, "aidreams260K"));
		g_aidreams = true;
	}

	snprintf(path, sizeof(path), "%s/hearthd.conf", g_d.dir);
	f = fopen(path, "w");
	fprintf(f, "# check_daemon\n[daemon]\n"
	    "keep_alive = 300\nn_parallel = 16\nmax_queue = 64\n"
	    "drain_timeout = 300ms\n"
	    "output_buffer = %d\nsndbuf = 4K\npause_timeout = %dms\n"
	    "external_links = yes\nmax_models = 8\nmax_requests = 32\n",
	    OUTBUF, PAUSE_MS);
	fclose(f);
	snprintf(path, sizeof(path), "%s/links.conf", g_d.dir);
	f = fopen(path, "w");
	fprintf(f, "[daemon]\nexternal_links = no\n");
	fclose(f);
}

/* hearthd with the configuration conf_name of the directory. */
static void
daemon_start_conf(const char *conf_name)
{
	snprintf(g_d.conf, sizeof(g_d.conf), "%s/%s", g_d.dir, conf_name);
	td_start(&g_d);
}

static void
daemon_start(void)
{
	daemon_start_conf("hearthd.conf");
}

static void
setup(void)
{
	make_models();
	daemon_start();
}

static void
teardown(void)
{
	td_finish(&g_d);
	tu_tmpdir_free();
	g_aidreams = false;
	g_think = false;
	g_d.topo = NULL;
}

/* ---- a tiny blocking client (tclient.c) ------------------------------ */

static int
tc_open_raw(struct tc *c)
{
	return tc_open_raw_at(c, g_d.sock);
}

static void
tc_open(struct tc *c)
{
	tc_open_at(c, g_d.sock);
}

/* ---- the engine, directly ---------------------------------------------- */

static struct model *
direct_open(const char *name)
{
	struct eng_err err = { "" };
	struct model *m = NULL;

	ck_assert_msg(model_open(td_model_path(&g_d, name), NULL, NULL, &m,
	    &err) == 0, "%s", err.msg);
	return m;
}

static uint32_t
direct_tokenize(const struct model *m, const char *text, bool add_special,
    bool parse_special, int32_t *ids, size_t max)
{
	size_t n = 0;

	ck_assert_int_eq(tok_encode(m->tok, text, strlen(text), add_special,
	    parse_special, ids, max, &n), 0);
	return (uint32_t)n;
}

static uint32_t
direct_ctx(const struct model *m)
{
	return m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;
}

/* Greedy continuation of ids[0..n) as the scheduler must give it. */
static uint32_t
direct_greedy(const struct model *m, const int32_t *prompt, uint32_t n,
    uint32_t max_tokens, int32_t *out)
{
	struct eng_err err = { "" };
	struct smp_params sp;
	struct fwd_kv *kv;
	struct smp *s;
	struct fwd *f;
	uint32_t i, k = 0, n_ctx = direct_ctx(m);
	int32_t t;

	smp_params_default(&sp);
	sp.temperature = 0;
	ck_assert_int_eq(fwd_new(m, 512, n_ctx, 1, &f), 0);
	ck_assert_int_eq(fwd_kv_new(m, n_ctx, &kv), 0);
	ck_assert_int_eq(smp_new(&sp, (int32_t)m->hp.n_vocab, &s), 0);
	for (i = 0; i < n; i++)
		smp_accept(s, prompt[i]);
	ck_assert_int_eq(fwd_eval(f, kv, prompt, n, false, &err), 0);
	while (k < max_tokens && n + k < n_ctx) {
		t = smp_sample(s, fwd_logits(f, 0));
		if (tok_is_eog(m->tok, t))
			break;
		smp_accept(s, t);
		out[k++] = t;
		if (n + k >= n_ctx || k >= max_tokens)
			break;
		ck_assert_int_eq(fwd_eval(f, kv, &t, 1, false, &err), 0);
	}
	smp_free(s);
	fwd_kv_free(kv);
	fwd_free(f);
	return k;
}

/* The greedy continuation of a text prompt (BOS added). */
static uint32_t
direct_generate(const char *model, const char *prompt, uint32_t max_tokens,
    int32_t *out)
{
	int32_t ids[1024];
	struct model *m = direct_open(model);
	uint32_t n, k;

	n = direct_tokenize(m, prompt, true, false, ids, 1024);
	k = direct_greedy(m, ids, n, max_tokens, out);
	model_free(m);
	return k;
}

static void
assert_ids_eq(const int32_t *a, uint32_t na, const int32_t *b, uint32_t nb)
{
	uint32_t i;

	for (i = 0; i < na && i < nb; i++)
		ck_assert_msg(a[i] == b[i], "token %u: %d, want %d", i, a[i],
		    b[i]);
	ck_assert_uint_eq(na, nb);
}

/* ---- core ---------------------------------------------------------- */

START_TEST(test_hello)
{
	struct proto_response resp;
	struct proto_request r;
	struct tc c;
	int64_t id;

	ck_assert_int_eq(tc_open_raw(&c), 0);
	proto_request_init(&r, PROTO_MSG_HELLO, 0);
	r.u.hello.version = PROTO_VERSION;
	r.u.hello.client = "check_daemon";
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_HELLO, &resp);
	ck_assert_uint_eq(resp.u.hello.version, PROTO_VERSION);
	ck_assert_msg(strncmp(resp.u.hello.server, "hearthd ", 8) == 0, "%s",
	    resp.u.hello.server);
	ck_assert_uint_eq(resp.u.hello.limits.max_frame,
	    PROTO_MAX_FRAME_DEFAULT);
	ck_assert_uint_eq(resp.u.hello.limits.max_stop,
	    PROTO_MAX_STOP_DEFAULT);
	proto_response_free(&resp);
	/* once only */
	proto_request_init(&r, PROTO_MSG_HELLO, 0);
	r.u.hello.version = PROTO_VERSION;
	r.u.hello.client = "again";
	id = tc_send(&c, &r);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST, "hello");
	tc_ping(&c);
	tc_close(&c);
}
END_TEST

START_TEST(test_list)
{
	struct proto_response resp;
	struct eng_err err = { "" };
	const struct proto_model_info *mi;
	struct gguf *g;
	uint64_t params = 0, i;
	uint32_t k, seen = 0;
	struct tc c;
	int64_t id;

	ck_assert_int_eq(gguf_open(td_model_path(&g_d, "tiny"), &g, &err), 0);
	for (i = 0; i < g->n_tensors; i++)
		params += g->tensors[i].nelems;
	gguf_close(g);

	tc_open(&c);
	id = tc_simple(&c, PROTO_MSG_LIST, NULL);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_LIST, &resp);
	for (k = 0; k < resp.u.list.n_models; k++) {
		mi = &resp.u.list.models[k];
		ck_assert_msg(strcmp(mi->name, "sub") != 0 &&
		    strcmp(mi->name, ".hidden") != 0 &&
		    strcmp(mi->name, "notes") != 0, "%s listed", mi->name);
		if (k > 0)
			ck_assert_int_lt(strcmp(resp.u.list.models[k - 1].name,
			    mi->name), 0);
		if (strcmp(mi->name, "tiny") == 0 ||
		    strcmp(mi->name, "alias") == 0) {
			struct stat st;

			ck_assert_int_eq(stat(td_model_path(&g_d, "tiny"), &st),
			    0);
			ck_assert_str_eq(mi->arch, "llama");
			ck_assert_str_eq(mi->quant, "F32");
			ck_assert_uint_eq(mi->params, params);
			ck_assert_uint_eq(mi->size, (uint64_t)st.st_size);
			ck_assert_str_eq(mi->license, "");
			seen |= 1;
		} else if (strcmp(mi->name, "chat") == 0) {
			ck_assert_str_eq(mi->license, "MIT");
			ck_assert_uint_eq(mi->params, params);
			seen |= 2;
		} else if (strcmp(mi->name, "qtiny") == 0) {
			ck_assert_str_eq(mi->arch, "qwen2");
			ck_assert_str_eq(mi->quant, "Q8_0");
			seen |= 4;
		} else if (strcmp(mi->name, "broken") == 0) {
			ck_assert_str_eq(mi->arch, "");
			ck_assert_uint_eq(mi->params, 0);
			seen |= 8;
		} else if (strcmp(mi->name, "aidreams260K") == 0) {
			ck_assert_str_eq(mi->arch, "llama");
			ck_assert_str_eq(mi->quant, "F32");
			seen |= 16;
		}
	}
	ck_assert_uint_eq(seen, g_aidreams ? 31u : 15u);
	proto_response_free(&resp);
	tc_close(&c);
}
END_TEST

START_TEST(test_show)
{
	struct proto_response resp;
	const struct proto_meta *mm;
	uint32_t k, seen = 0;
	struct tc c;
	int64_t id;

	tc_open(&c);
	id = tc_simple(&c, PROTO_MSG_SHOW, "chat");
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_SHOW, &resp);
	ck_assert_str_eq(resp.u.show.model, "chat");
	ck_assert_uint_gt(resp.u.show.n_meta, 10);
	for (k = 0; k < resp.u.show.n_meta; k++) {
		mm = &resp.u.show.meta[k];
		if (strcmp(mm->key, "general.architecture") == 0) {
			ck_assert_int_eq(mm->type, PROTO_META_STR);
			ck_assert_str_eq(mm->s, "llama");
			seen |= 1;
		} else if (strcmp(mm->key, "tokenizer.ggml.tokens") == 0) {
			ck_assert_int_eq(mm->type, PROTO_META_ARRAY);
			ck_assert_str_eq(mm->elem, "string");
			ck_assert_uint_eq(mm->n, 512);
			seen |= 2;
		} else if (strcmp(mm->key, "tokenizer.chat_template") == 0) {
			ck_assert_int_eq(mm->type, PROTO_META_STR);
			ck_assert_str_eq(mm->s, chatml_template);
			seen |= 4;
		} else if (strcmp(mm->key, "general.license") == 0) {
			ck_assert_str_eq(mm->s, "MIT");
			seen |= 8;
		} else if (strcmp(mm->key, "llama.embedding_length") == 0) {
			ck_assert_int_eq(mm->type, PROTO_META_UINT);
			ck_assert_uint_eq(mm->u, 64);
			seen |= 16;
		} else if (strcmp(mm->key,
		    "llama.attention.layer_norm_rms_epsilon") == 0) {
			ck_assert_int_eq(mm->type, PROTO_META_FLOAT);
			ck_assert(fabs(mm->f - 1e-5) < 1e-9);
			seen |= 32;
		}
	}
	ck_assert_uint_eq(seen, 63);
	proto_response_free(&resp);
	/* not found, bad names */
	id = tc_simple(&c, PROTO_MSG_SHOW, "nosuch");
	tc_expect_error(&c, (uint64_t)id, PROTO_E_NOT_FOUND, "nosuch");
	id = tc_simple(&c, PROTO_MSG_SHOW, "broken");
	tc_expect_error(&c, (uint64_t)id, PROTO_E_MODEL_ERROR, NULL);
	tc_close(&c);
}
END_TEST

/* Is model name resident according to ps? */
static bool
ps_has(struct tc *c, const char *name, struct proto_ps_entry *out)
{
	struct proto_response resp;
	bool found = false;
	uint32_t k;
	int64_t id;

	id = tc_simple(c, PROTO_MSG_PS, NULL);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_PS, &resp);
	for (k = 0; k < resp.u.ps.n_models; k++)
		if (strcmp(resp.u.ps.models[k].name, name) == 0) {
			found = true;
			if (out != NULL) {
				*out = resp.u.ps.models[k];
				out->name = NULL;
				out->hugepages = NULL;
				out->placement = NULL;
			}
		}
	proto_response_free(&resp);
	return found;
}

/* Read a load's progress events up to its reply. */
static void
tc_load_done(struct tc *c, uint64_t id)
{
	struct proto_response resp;
	enum proto_msg t;

	do {
		tc_must_recv(c, &resp);
		ck_assert_uint_eq(resp.id, id);
		ck_assert_msg(resp.type != PROTO_MSG_ERROR, "%s",
		    resp.u.error.message);
		t = resp.type;
		proto_response_free(&resp);
	} while (t == PROTO_MSG_PROGRESS);
	ck_assert_int_eq(t, PROTO_MSG_REPLY);
}

START_TEST(test_load_unload)
{
	struct proto_response resp;
	struct proto_ps_entry pe;
	uint64_t last = 0, total = 0;
	uint32_t progress = 0;
	struct tc c;
	int64_t id;

	tc_open(&c);
	ck_assert(!ps_has(&c, "tload", NULL));
	id = tc_simple(&c, PROTO_MSG_LOAD, "tload");
	for (;;) {
		tc_must_recv(&c, &resp);
		ck_assert_uint_eq(resp.id, (uint64_t)id);
		if (resp.type != PROTO_MSG_PROGRESS)
			break;
		ck_assert_uint_ge(resp.u.progress.done, last);
		ck_assert_uint_le(resp.u.progress.done, resp.u.progress.total);
		last = resp.u.progress.done;
		total = resp.u.progress.total;
		progress++;
		proto_response_free(&resp);
	}
	ck_assert_msg(resp.type == PROTO_MSG_REPLY, "%s: %s",
	    proto_msg_name(resp.type), resp.type == PROTO_MSG_ERROR ?
	    resp.u.error.message : "");
	ck_assert_int_eq(resp.request, PROTO_MSG_LOAD);
	ck_assert_str_eq(resp.u.load.model, "tload");
	ck_assert_uint_gt(resp.u.load.memory, total);
	ck_assert_uint_ge(progress, 1);
	ck_assert_uint_eq(last, total);
	ck_assert_uint_gt(total, 0);
	proto_response_free(&resp);

	ck_assert(ps_has(&c, "tload", &pe));
	ck_assert_uint_gt(pe.memory, total);
	ck_assert_int_eq(pe.keep_alive, 300);
	/* a second load answers at once */
	id = tc_simple(&c, PROTO_MSG_LOAD, "tload");
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_LOAD, &resp);
	proto_response_free(&resp);

	id = tc_simple(&c, PROTO_MSG_UNLOAD, "tload");
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_UNLOAD, &resp);
	proto_response_free(&resp);
	ck_assert(!ps_has(&c, "tload", NULL));
	/* unloading what is not resident is fine; a bad name is not */
	id = tc_simple(&c, PROTO_MSG_UNLOAD, "tload");
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_UNLOAD, &resp);
	proto_response_free(&resp);
	id = tc_simple(&c, PROTO_MSG_UNLOAD, "nosuch");
	tc_expect_error(&c, (uint64_t)id, PROTO_E_NOT_FOUND, NULL);
	/* a link inside the directory is a model too */
	id = tc_simple(&c, PROTO_MSG_LOAD, "alias");
	tc_load_done(&c, (uint64_t)id);
	id = tc_simple(&c, PROTO_MSG_UNLOAD, "alias");
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_UNLOAD, &resp);
	proto_response_free(&resp);
	tc_close(&c);
}
END_TEST

START_TEST(test_keep_alive)
{
	struct proto_response resp;
	struct proto_ps_entry pe;
	struct proto_request r;
	struct tc c;
	int64_t id;
	int i;

	tc_open(&c);
	proto_request_init(&r, PROTO_MSG_LOAD, 0);
	r.u.load.model = "tka";
	r.u.load.has_keep_alive = true;
	r.u.load.keep_alive = 1;
	id = tc_send(&c, &r);
	tc_load_done(&c, (uint64_t)id);
	ck_assert(ps_has(&c, "tka", &pe));
	ck_assert_int_le(pe.keep_alive, 1);
	ck_assert_int_ge(pe.keep_alive, 0);
	for (i = 0; i < 40 && ps_has(&c, "tka", NULL); i++)
		usleep(100000);
	ck_assert_msg(i > 3 && i < 40, "unloaded after %d00 ms", i);
	/* forever */
	r.id = 0;
	r.u.load.keep_alive = -1;
	id = tc_send(&c, &r);
	tc_load_done(&c, (uint64_t)id);
	ck_assert(ps_has(&c, "tka", &pe));
	ck_assert_int_eq(pe.keep_alive, -1);
	id = tc_simple(&c, PROTO_MSG_UNLOAD, "tka");
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_UNLOAD, &resp);
	proto_response_free(&resp);
	tc_close(&c);
}
END_TEST

START_TEST(test_generate_greedy)
{
	static const char *const prompts[] = { "hello world", "abc", "x" };
	int32_t want[64];
	struct gen *g;
	struct tc c;
	uint32_t nw, i;
	int64_t id;

	tc_open(&c);
	for (i = 0; i < 3; i++) {
		nw = direct_generate("tiny", prompts[i], 24, want);
		g = gen_new();
		id = tc_generate(&c, "tiny", prompts[i], 24, true);
		ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
		ck_assert_msg(g->done, "error %s", g->msg);
		assert_ids_eq(g->ids, g->n, want, nw);
		ck_assert_uint_eq(g->generated_tokens, nw);
		ck_assert_int_eq(g->reason, nw == 24 ? PROTO_REASON_MAX_TOKENS :
		    PROTO_REASON_EOS);
		ck_assert_uint_gt(g->prompt_tokens, 1);
		ck_assert_uint_le(g->cached_tokens, g->prompt_tokens);
		free(g);
	}
	tc_close(&c);
}
END_TEST

START_TEST(test_generate_ids_nostream)
{
	struct gen *a = gen_new(), *b = gen_new();
	struct proto_request r;
	int32_t ids[4] = { 1, 300, 301, 302 }, want[64];
	struct model *m;
	struct tc c;
	uint32_t nw;
	int64_t id;

	m = direct_open("tiny");
	nw = direct_greedy(m, ids, 4, 16, want);
	model_free(m);
	tc_open(&c);
	proto_request_init(&r, PROTO_MSG_GENERATE, 0);
	r.u.generate.model = "tiny";
	r.u.generate.input.ids = ids;
	r.u.generate.input.n_ids = 4;
	r.u.generate.opts.max_tokens = 16;
	r.u.generate.opts.sampling.set = PROTO_S_TEMPERATURE;
	id = tc_send(&c, &r);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, a, 0), 0);
	ck_assert(a->done);
	assert_ids_eq(a->ids, a->n, want, nw);
	ck_assert_uint_eq(a->prompt_tokens, 4);
	/* the same without streaming: one done with the whole text */
	r.id = 0;
	r.u.generate.opts.stream = false;
	id = tc_send(&c, &r);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, b, 0), 0);
	ck_assert(b->done);
	ck_assert_uint_eq(b->n, 0);
	ck_assert_uint_eq(b->generated_tokens, nw);
	ck_assert_uint_eq(b->done_len, a->len);
	ck_assert(memcmp(b->done_text, a->text, a->len) == 0);
	tc_close(&c);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_generate_aidreams)
{
	int32_t want[60];
	struct gen *g;
	const char *p = aidreams_ids_text;
	struct tc c;
	int64_t id;
	int i, n;

	if (!g_aidreams) {
		tu_skip("test_generate_aidreams");
		return;
	}
	for (i = 0; i < 60; i++) {
		ck_assert_int_eq(sscanf(p, "%d%n", &want[i], &n), 1);
		p += n;
	}
	g = gen_new();
	tc_open(&c);
	id = tc_generate(&c, "aidreams260K", "Echoes", 60, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "%s", g->msg);
	assert_ids_eq(g->ids, g->n, want, 60);
	ck_assert_str_eq(g->text, aidreams_text);
	ck_assert_int_eq(g->reason, PROTO_REASON_MAX_TOKENS);
	ck_assert_uint_eq(g->prompt_tokens, 4);
	tc_close(&c);
	free(g);
}
END_TEST

/* A chat request of one user message. */
static int64_t
tc_chat(struct tc *c, enum proto_msg type, const char *model,
    const char *user, const char *tmpl, int32_t max_tokens)
{
	struct proto_message msg = { "user", user, strlen(user) };
	struct proto_request r;

	proto_request_init(&r, type, 0);
	r.u.chat.model = model;
	r.u.chat.messages = &msg;
	r.u.chat.n_messages = 1;
	r.u.chat.template = tmpl;
	r.u.chat.opts.max_tokens = max_tokens;
	r.u.chat.opts.sampling.set = PROTO_S_TEMPERATURE;
	return tc_send(c, &r);
}

START_TEST(test_chat)
{
	static const char want_prompt[] = "<|im_start|>user\nhi there"
	    "<|im_end|>\n<|im_start|>assistant\n";
	struct proto_response resp;
	int32_t ids[256], want[64];
	char prompt[512];
	struct model *m;
	struct gen *g;
	uint32_t n, nw;
	struct tc c;
	int64_t id;

	tc_open(&c);
	id = tc_chat(&c, PROTO_MSG_RENDER, "chat", "hi there", NULL, -1);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_RENDER, &resp);
	ck_assert_str_eq(resp.u.render.template, "chatml");
	ck_assert_uint_eq(resp.u.render.prompt_len, strlen(want_prompt));
	ck_assert_str_eq(resp.u.render.prompt, want_prompt);
	proto_response_free(&resp);

	/* the model adds BOS and the template does not write it */
	m = direct_open("chat");
	ck_assert(tok_add_bos(m->tok));
	snprintf(prompt, sizeof(prompt), "<s>%s", want_prompt);
	n = direct_tokenize(m, prompt, false, true, ids, 256);
	ck_assert_int_eq(ids[0], tok_bos(m->tok));
	nw = direct_greedy(m, ids, n, 12, want);
	model_free(m);

	g = gen_new();
	id = tc_chat(&c, PROTO_MSG_CHAT, "chat", "hi there", NULL, 12);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "%s", g->msg);
	ck_assert_uint_eq(g->prompt_tokens, n);
	assert_ids_eq(g->ids, g->n, want, nw);
	ck_assert_uint_eq(g->n_thinking, 0);
	free(g);

	/* a model without a template: an error, unless one is named */
	id = tc_chat(&c, PROTO_MSG_CHAT, "tiny", "hi", NULL, 4);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST,
	    "model tiny has no chat template; name one");
	id = tc_chat(&c, PROTO_MSG_RENDER, "tiny", "hi", NULL, 4);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST, "template");
	g = gen_new();
	id = tc_chat(&c, PROTO_MSG_CHAT, "tiny", "hi there", "chatml", 12);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "%s", g->msg);
	assert_ids_eq(g->ids, g->n, want, nw);
	free(g);
	id = tc_chat(&c, PROTO_MSG_RENDER, "tiny", "hi", "nosuch", 4);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST, "nosuch");
	/* the template's own refusal: gemma has no system role */
	{
		struct proto_message msgs[2] = {
			{ "system", "be brief", 8 }, { "user", "hi", 2 } };
		struct proto_request r;

		proto_request_init(&r, PROTO_MSG_RENDER, 0);
		r.u.chat.model = "tiny";
		r.u.chat.messages = msgs;
		r.u.chat.n_messages = 2;
		r.u.chat.template = "gemma";
		id = tc_send(&c, &r);
		tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST,
		    "System role not supported");
	}
	tc_close(&c);
}
END_TEST

START_TEST(test_chat_thinking)
{
	struct proto_message msg = { "user", "why?", 4 };
	struct proto_response resp;
	struct proto_request r;
	struct gen *g;
	struct tc c;
	int64_t id;
	size_t n;

	if (!g_think) {
		tu_skip("test_chat_thinking");
		return;
	}
	tc_open(&c);
	proto_request_init(&r, PROTO_MSG_RENDER, 0);
	r.u.chat.model = "think";
	r.u.chat.messages = &msg;
	r.u.chat.n_messages = 1;
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_RENDER, &resp);
	ck_assert_str_eq(resp.u.render.template, "deepseek-r1");
	n = resp.u.render.prompt_len;
	ck_assert_uint_gt(n, 8);
	ck_assert_str_eq(resp.u.render.prompt + n - 8, "<think>\n");
	ck_assert(strncmp(resp.u.render.prompt, "<s>", 3) == 0);
	proto_response_free(&resp);
	/* generation starts inside the thinking channel */
	g = gen_new();
	r.type = PROTO_MSG_CHAT;
	r.id = 0;
	r.u.chat.opts.max_tokens = 8;
	r.u.chat.opts.sampling.set = PROTO_S_TEMPERATURE;
	id = tc_send(&c, &r);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "%s", g->msg);
	ck_assert_uint_gt(g->n, 0);
	ck_assert_uint_eq(g->n_thinking, g->n);
	free(g);
	/* thinking off: the block is closed in the prompt */
	g = gen_new();
	r.id = 0;
	r.u.chat.thinking = PROTO_THINK_OFF;
	id = tc_send(&c, &r);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "%s", g->msg);
	ck_assert_uint_gt(g->n, 0);
	ck_assert_uint_eq(g->n_thinking, 0);
	free(g);
	tc_close(&c);
}
END_TEST

START_TEST(test_eval)
{
	struct eng_err err = { "" };
	struct proto_response resp;
	struct proto_request r;
	int32_t ids[6] = { 1, 280, 300, 77, 400, 9 };
	struct model *m;
	struct fwd_kv *kv;
	struct fwd *f;
	uint32_t i, v, k;
	struct tc c;
	int64_t id;

	tc_open(&c);
	proto_request_init(&r, PROTO_MSG_EVAL, 0);
	r.u.eval.model = "tiny";
	r.u.eval.input.ids = ids;
	r.u.eval.input.n_ids = 6;
	r.u.eval.top = 3;
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_EVAL, &resp);
	ck_assert_uint_eq(resp.u.eval.n_tokens, 6);
	ck_assert_uint_eq(resp.u.eval.top, 3);
	assert_ids_eq(resp.u.eval.tokens, 6, ids, 6);

	m = direct_open("tiny");
	ck_assert_int_eq(fwd_new(m, 64, 64, 64, &f), 0);
	ck_assert_int_eq(fwd_kv_new(m, 64, &kv), 0);
	ck_assert_int_eq(fwd_eval(f, kv, ids, 6, true, &err), 0);
	for (i = 0; i < 5; i++) {
		const float *lg = fwd_logits(f, i);
		double mx = -INFINITY, sum = 0, lp;

		for (v = 0; v < m->hp.n_vocab; v++)
			mx = lg[v] > mx ? lg[v] : mx;
		for (v = 0; v < m->hp.n_vocab; v++)
			sum += exp(lg[v] - mx);
		lp = lg[ids[i + 1]] - mx - log(sum);
		ck_assert_msg(fabs(lp - resp.u.eval.logprobs[i]) < 1e-3,
		    "position %u: %f, want %f", i, resp.u.eval.logprobs[i], lp);
		for (k = 0; k < 3; k++) {
			int32_t t = resp.u.eval.top_ids[i * 3 + k];

			ck_assert(fabs(lg[t] - mx - log(sum) -
			    resp.u.eval.top_logprobs[i * 3 + k]) < 1e-3);
			if (k > 0)
				ck_assert(resp.u.eval.top_logprobs[i * 3 + k] <=
				    resp.u.eval.top_logprobs[i * 3 + k - 1]);
		}
		ck_assert(resp.u.eval.top_logprobs[i * 3] >=
		    resp.u.eval.logprobs[i] - 1e-6);
	}
	fwd_kv_free(kv);
	fwd_free(f);
	model_free(m);
	proto_response_free(&resp);
	tc_close(&c);
}
END_TEST

START_TEST(test_embed)
{
	struct proto_response a, b, d;
	struct proto_request r;
	double norm = 0;
	uint32_t i;
	struct tc c;
	int64_t id;

	tc_open(&c);
	proto_request_init(&r, PROTO_MSG_EMBED, 0);
	r.u.embed.model = "tiny";
	r.u.embed.input.text = "the quick brown fox";
	r.u.embed.input.text_len = strlen(r.u.embed.input.text);
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_EMBED, &a);
	r.id = 0;
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_EMBED, &b);
	r.id = 0;
	r.u.embed.input.text = "something else";
	r.u.embed.input.text_len = strlen(r.u.embed.input.text);
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_EMBED, &d);
	ck_assert_uint_eq(a.u.embed.n, 64);
	ck_assert_uint_gt(a.u.embed.tokens, 1);
	for (i = 0; i < a.u.embed.n; i++)
		norm += (double)a.u.embed.embedding[i] * a.u.embed.embedding[i];
	ck_assert(fabs(norm - 1) < 1e-4);
	ck_assert(memcmp(a.u.embed.embedding, b.u.embed.embedding,
	    64 * sizeof(float)) == 0);
	ck_assert(memcmp(a.u.embed.embedding, d.u.embed.embedding,
	    64 * sizeof(float)) != 0);
	proto_response_free(&a);
	proto_response_free(&b);
	proto_response_free(&d);
	tc_close(&c);
}
END_TEST

START_TEST(test_tokenize)
{
	static const char text[] = "Hello world, this is hearth.";
	struct proto_response resp;
	struct proto_request r;
	int32_t want[64];
	struct model *m;
	uint32_t n;
	struct tc c;
	int64_t id;

	m = direct_open("tiny");
	n = direct_tokenize(m, text, true, false, want, 64);
	model_free(m);
	tc_open(&c);
	proto_request_init(&r, PROTO_MSG_TOKENIZE, 0);
	r.u.tokenize.model = "tiny";
	r.u.tokenize.text = text;
	r.u.tokenize.text_len = strlen(text);
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_TOKENIZE, &resp);
	assert_ids_eq(resp.u.tokenize.ids, resp.u.tokenize.n_ids, want, n);
	proto_response_free(&resp);
	/* no BOS */
	r.id = 0;
	r.u.tokenize.add_bos = false;
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_TOKENIZE, &resp);
	assert_ids_eq(resp.u.tokenize.ids, resp.u.tokenize.n_ids, want + 1,
	    n - 1);
	proto_response_free(&resp);

	proto_request_init(&r, PROTO_MSG_DETOKENIZE, 0);
	r.u.detokenize.model = "tiny";
	r.u.detokenize.ids = want;
	r.u.detokenize.n_ids = n;
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_DETOKENIZE, &resp);
	ck_assert_uint_eq(resp.u.detokenize.text_len, strlen(text));
	ck_assert_str_eq(resp.u.detokenize.text, text);
	proto_response_free(&resp);
	/* an id out of the vocabulary */
	want[0] = 100000;
	r.id = 0;
	id = tc_send(&c, &r);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST, NULL);
	tc_close(&c);
}
END_TEST

START_TEST(test_cancel)
{
	struct proto_response resp;
	struct proto_request r;
	struct gen *g = gen_new();
	bool got_reply = false;
	struct tc c;
	int64_t id, cid;

	tc_open(&c);
	id = tc_generate(&c, "long", "cancel me", 3000, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 2), 1);
	proto_request_init(&r, PROTO_MSG_CANCEL, 0);
	r.u.cancel.target = (uint64_t)id;
	cid = tc_send(&c, &r);
	/* token events, a cancel reply and a done, in some order */
	for (;;) {
		tc_must_recv(&c, &resp);
		if (resp.id == (uint64_t)cid) {
			ck_assert_int_eq(resp.type, PROTO_MSG_REPLY);
			ck_assert(resp.u.cancel.found);
			got_reply = true;
		} else {
			ck_assert_uint_eq(resp.id, (uint64_t)id);
			if (resp.type == PROTO_MSG_DONE) {
				ck_assert_int_eq(resp.u.done.reason,
				    PROTO_REASON_CANCELLED);
				ck_assert_uint_lt(resp.u.done.generated_tokens,
				    3000);
				proto_response_free(&resp);
				break;
			}
			ck_assert_int_eq(resp.type, PROTO_MSG_TOKEN);
		}
		proto_response_free(&resp);
	}
	if (!got_reply) {
		tc_must_recv(&c, &resp);
		ck_assert_uint_eq(resp.id, (uint64_t)cid);
		ck_assert(resp.u.cancel.found);
		proto_response_free(&resp);
	}
	/* nothing to cancel */
	r.id = 0;
	r.u.cancel.target = 999;
	cid = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)cid, PROTO_MSG_CANCEL, &resp);
	ck_assert(!resp.u.cancel.found);
	proto_response_free(&resp);
	tc_close(&c);
	free(g);
}
END_TEST

START_TEST(test_stats_ps)
{
	struct proto_response resp;
	struct proto_ps_entry pe;
	struct gen *g = gen_new();
	struct tc c;
	int64_t id;

	tc_open(&c);
	id = tc_generate(&c, "tiny", "count me", 5, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	id = tc_simple(&c, PROTO_MSG_STATS, NULL);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_STATS, &resp);
	ck_assert_uint_ge(resp.u.stats.connections, 1);
	ck_assert_uint_ge(resp.u.stats.requests, 2);
	ck_assert_uint_ge(resp.u.stats.generated_tokens, g->n);
	ck_assert_uint_ge(resp.u.stats.prompt_tokens, 1);
	ck_assert_uint_ge(resp.u.stats.models, 1);
	ck_assert_uint_gt(resp.u.stats.memory, 0);
	proto_response_free(&resp);
	ck_assert(ps_has(&c, "tiny", &pe));
	ck_assert_uint_gt(pe.tokens, 0);
	ck_assert_int_eq(pe.keep_alive, 300);
	tc_close(&c);
	free(g);
}
END_TEST

/* ---- 16 concurrent clients ---- */

#define N_CLIENTS 16

struct client_job {
	char		 prompt[32];
	struct gen	*g;
	int		 rc;
	pthread_barrier_t *bar;
};

static void *
client_main(void *arg)
{
	struct client_job *j = arg;
	struct proto_request r;
	struct proto_response resp;
	struct tc c;
	int64_t id;

	j->rc = -1;
	if (tc_open_raw(&c) != 0)
		return NULL;
	proto_request_init(&r, PROTO_MSG_HELLO, 0);
	r.u.hello.version = PROTO_VERSION;
	r.u.hello.client = "thread";
	if (tc_send(&c, &r) < 0 || tc_recv(&c, &resp, TIMEOUT_MS) != 1)
		goto out;
	proto_response_free(&resp);
	pthread_barrier_wait(j->bar);
	if ((id = tc_generate(&c, "tiny", j->prompt, 40, true)) < 0)
		goto out;
	j->rc = tc_collect(&c, (uint64_t)id, j->g, 0);
out:
	tc_close(&c);
	return NULL;
}

START_TEST(test_concurrent)
{
	struct client_job jobs[N_CLIENTS];
	pthread_t th[N_CLIENTS];
	pthread_barrier_t bar;
	struct gen *alone[N_CLIENTS];
	struct tc c;
	int64_t id;
	int i;

	/* alone, one after the other */
	tc_open(&c);
	for (i = 0; i < N_CLIENTS; i++) {
		snprintf(jobs[i].prompt, sizeof(jobs[i].prompt), "%s %d",
		    i % 2 ? "once upon" : "the", i * 7);
		alone[i] = gen_new();
		id = tc_generate(&c, "tiny", jobs[i].prompt, 40, true);
		ck_assert_int_eq(tc_collect(&c, (uint64_t)id, alone[i], 0), 0);
		ck_assert(alone[i]->done);
	}
	tc_close(&c);
	/* together */
	pthread_barrier_init(&bar, NULL, N_CLIENTS);
	for (i = 0; i < N_CLIENTS; i++) {
		jobs[i].g = gen_new();
		jobs[i].bar = &bar;
		ck_assert_int_eq(pthread_create(&th[i], NULL, client_main,
		    &jobs[i]), 0);
	}
	for (i = 0; i < N_CLIENTS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	for (i = 0; i < N_CLIENTS; i++) {
		ck_assert_msg(jobs[i].rc == 0, "client %d: rc %d fail %d", i,
		    jobs[i].rc, jobs[i].g->fail);
		ck_assert_msg(jobs[i].g->done, "client %d: %s", i,
		    jobs[i].g->msg);
		assert_ids_eq(jobs[i].g->ids, jobs[i].g->n, alone[i]->ids,
		    alone[i]->n);
		ck_assert_str_eq(jobs[i].g->text, alone[i]->text);
		free(jobs[i].g);
		free(alone[i]);
	}
}
END_TEST

START_TEST(test_unload_while_running)
{
	struct proto_response resp;
	struct pollfd pfd;
	struct gen *g = gen_new();
	struct tc a, b;
	int64_t id, uid;

	tc_open(&a);
	tc_open(&b);
	id = tc_generate(&a, "long_u", "keep going", 600, true);
	ck_assert_int_eq(tc_collect(&a, (uint64_t)id, g, 2), 1);
	uid = tc_simple(&b, PROTO_MSG_UNLOAD, "long_u");
	/* the unload waits for the running request */
	ck_assert_int_eq(tc_collect(&a, (uint64_t)id, g, 20), 1);
	pfd.fd = b.fd;
	pfd.events = POLLIN;
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	ck_assert_int_eq(tc_collect(&a, (uint64_t)id, g, 0), 0);
	ck_assert(g->done);
	ck_assert_int_eq(g->reason, PROTO_REASON_MAX_TOKENS);
	ck_assert_uint_eq(g->generated_tokens, 600);
	tc_expect_reply(&b, (uint64_t)uid, PROTO_MSG_UNLOAD, &resp);
	proto_response_free(&resp);
	ck_assert(!ps_has(&b, "long_u", NULL));
	/* and it loads again on the next use */
	memset(g, 0, sizeof(*g));
	id = tc_generate(&a, "long_u", "again", 3, true);
	ck_assert_int_eq(tc_collect(&a, (uint64_t)id, g, 0), 0);
	ck_assert_uint_eq(g->generated_tokens, 3);
	tc_close(&a);
	tc_close(&b);
	free(g);
}
END_TEST

START_TEST(test_shutdown)
{
	struct gen *g = gen_new();
	struct stat st;
	struct tc c;
	int64_t id;

	/* a stream in flight and a model resident when SIGTERM comes */
	tc_open(&c);
	id = tc_generate(&c, "long", "shutdown", 3000, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 1), 1);
	ck_assert_int_eq(td_stop(&g_d), 0);
	ck_assert_int_eq(stat(g_d.sock, &st), -1);
	while (tc_collect(&c, (uint64_t)id, g, 0) == 1)
		;
	ck_assert(!g->done);
	tc_close(&c);
	free(g);
}
END_TEST

/* ---- limits -------------------------------------------------------- */

static uint32_t
stats_connections(struct tc *c)
{
	struct proto_response resp;
	uint32_t n;
	int64_t id;

	id = tc_simple(c, PROTO_MSG_STATS, NULL);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_STATS, &resp);
	n = resp.u.stats.connections;
	proto_response_free(&resp);
	return n;
}

/* Wait until at most n connections are open. */
static bool
wait_connections(struct tc *c, uint32_t n)
{
	int i;

	for (i = 0; i < 100 * timeout_scale(); i++) {
		if (stats_connections(c) <= n)
			return true;
		usleep(100000);
	}
	return false;
}

START_TEST(test_slow_reader)
{
	int32_t want[32];
	struct gen *g = gen_new(), *s = gen_new();
	struct proto_response resp;
	struct tc slow, c;
	uint32_t nw, conns;
	int64_t id, sid;
	int r;

	nw = direct_generate("long", "fast one", 20, want);
	tc_open(&slow);
	tc_open(&c);
	conns = stats_connections(&c);
	/* the slow reader asks for a long stream and reads nothing */
	sid = tc_generate(&slow, "long", "never read", 3500, true);
	usleep(100000);
	/* others on the same model are served meanwhile */
	id = tc_generate(&c, "long", "fast one", 20, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert(g->done);
	assert_ids_eq(g->ids, g->n, want, nw);
	/* after the pause timeout the slow reader is cut off */
	ck_assert_msg(wait_connections(&c, conns - 1), "the slow reader "
	    "is still connected");
	while ((r = tc_collect(&slow, (uint64_t)sid, s, 0)) == 1)
		;
	ck_assert_int_eq(r, -1);
	ck_assert_int_eq(s->fail, 1);	/* end of file */
	ck_assert(!s->done);
	ck_assert_uint_gt(s->n, 0);
	ck_assert_uint_lt(s->n, 3500);
	tc_close(&slow);
	/* the daemon goes on */
	id = tc_simple(&c, PROTO_MSG_STATS, NULL);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_STATS, &resp);
	proto_response_free(&resp);
	tc_close(&c);
	free(g);
	free(s);
}
END_TEST

START_TEST(test_disconnect)
{
	int32_t want[32];
	struct gen *g;
	struct tc c, d;
	long rss0, rss1;
	uint32_t nw;
	int64_t id;
	int i;

	nw = direct_generate("long", "steady", 24, want);
	tc_open(&c);
	/* warm up: the model, its slots, a full stream */
	for (i = 0; i < 2; i++) {
		g = gen_new();
		id = tc_generate(&c, "long", "warm up", 400, true);
		ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
		free(g);
	}
	tc_ping(&c);
	rss0 = td_status_kb(g_d.pid, "VmRSS");
	ck_assert_int_gt(rss0, 0);
	for (i = 0; i < 12; i++) {
		g = gen_new();
		tc_open(&d);
		id = tc_generate(&d, "long", "going away", 3000, true);
		ck_assert_int_eq(tc_collect(&d, (uint64_t)id, g, 3), 1);
		tc_close(&d);
		free(g);
		if (i % 4 == 0) {
			g = gen_new();
			id = tc_generate(&c, "long", "steady", 24, true);
			ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
			assert_ids_eq(g->ids, g->n, want, nw);
			free(g);
		}
	}
	usleep(200000);
	tc_ping(&c);
	rss1 = td_status_kb(g_d.pid, "VmRSS");
	ck_assert_msg(rss1 <= rss0 + rss0 / 10 + 2048,
	    "RSS %ld kB before, %ld kB after", rss0, rss1);
	tc_close(&c);
}
END_TEST

START_TEST(test_too_large)
{
	static int32_t ids[600];
	struct proto_request r;
	struct gen *g = gen_new();
	char *text;
	struct tc c;
	int64_t id;
	int i;

	tc_open(&c);
	for (i = 0; i < 600; i++)
		ids[i] = 300 + i % 100;
	proto_request_init(&r, PROTO_MSG_GENERATE, 0);
	r.u.generate.model = "tiny";
	r.u.generate.input.ids = ids;
	r.u.generate.input.n_ids = 600;
	id = tc_send(&c, &r);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_TOO_LARGE, NULL);
	/* a text prompt longer than the context of 512 */
	text = malloc(4001);
	for (i = 0; i < 4000; i++)
		text[i] = i % 5 == 4 ? ' ' : (char)('a' + i % 7);
	text[4000] = '\0';
	id = tc_generate(&c, "tiny", text, 10, true);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_TOO_LARGE, NULL);
	free(text);
	/* max_tokens is clamped to what fits */
	id = tc_generate(&c, "tiny", "x", 100000, false);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert(g->done);
	ck_assert_uint_le(g->prompt_tokens + g->generated_tokens, 512);
	tc_close(&c);
	free(g);
}
END_TEST

START_TEST(test_max_requests)
{
	struct proto_response resp;
	struct proto_request r;
	struct proto_buf b;
	struct proto_err e;
	uint32_t i, busy = 0, done = 0, tokens = 0;
	struct tc c;

	tc_open(&c);
	/* 40 requests in flight, in one write (so that none can end before
	 * the last arrives); the configuration allows 32 */
	proto_buf_init(&b);
	for (i = 0; i < 40; i++) {
		proto_request_init(&r, PROTO_MSG_GENERATE, 100 + i);
		r.u.generate.model = "tiny";
		r.u.generate.input.text = "many";
		r.u.generate.input.text_len = 4;
		r.u.generate.opts.max_tokens = 8;
		r.u.generate.opts.stream = false;
		ck_assert_int_eq(proto_pack_request(&b, &r, &c.l, &e), 0);
	}
	ck_assert_int_eq(tc_write(&c, b.data, b.len), 0);
	proto_buf_free(&b);
	while (done + busy < 40) {
		tc_must_recv(&c, &resp);
		if (resp.type == PROTO_MSG_ERROR) {
			ck_assert_int_eq(resp.u.error.code, PROTO_E_BUSY);
			busy++;
		} else if (resp.type == PROTO_MSG_DONE)
			done++;
		else
			tokens++;
		proto_response_free(&resp);
	}
	ck_assert_uint_ge(busy, 1);
	ck_assert_uint_ge(done, 32);
	ck_assert_uint_eq(tokens, 0);
	tc_close(&c);
}
END_TEST

/* ---- errors -------------------------------------------------------- */

/* A frame of len body bytes. */
static void
send_frame(struct tc *c, const void *body, uint32_t len)
{
	uint8_t hdr[4];

	proto_frame_hdr(hdr, len);
	ck_assert_int_eq(tc_write(c, hdr, 4), 0);
	ck_assert_int_eq(tc_write(c, body, len), 0);
}

/* Expect an error then end of file. */
static void
expect_error_close(struct tc *c, enum proto_code code)
{
	struct proto_response resp;

	tc_expect_error(c, 0, code, NULL);
	ck_assert_int_eq(tc_recv(c, &resp, TIMEOUT_MS), 0);
}

START_TEST(test_version_mismatch)
{
	struct proto_response resp;
	struct proto_request r;
	struct tc c;
	int64_t id;

	ck_assert_int_eq(tc_open_raw(&c), 0);
	proto_request_init(&r, PROTO_MSG_HELLO, 0);
	r.u.hello.version = PROTO_VERSION + 1;
	r.u.hello.client = "future";
	id = tc_send(&c, &r);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST, "version");
	/* still no hello: others are refused; a good hello works */
	id = tc_simple(&c, PROTO_MSG_PING, NULL);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST, "hello");
	r.id = 0;
	r.u.hello.version = PROTO_VERSION;
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_HELLO, &resp);
	proto_response_free(&resp);
	tc_close(&c);
}
END_TEST

START_TEST(test_before_hello)
{
	static const enum proto_msg types[] = { PROTO_MSG_LIST, PROTO_MSG_PS,
	    PROTO_MSG_STATS, PROTO_MSG_PING };
	struct proto_request r;
	struct tc c;
	int64_t id;
	size_t i;

	ck_assert_int_eq(tc_open_raw(&c), 0);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		id = tc_simple(&c, types[i], NULL);
		tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST,
		    "hello");
	}
	proto_request_init(&r, PROTO_MSG_GENERATE, 0);
	r.u.generate.model = "tiny";
	r.u.generate.input.text = "x";
	r.u.generate.input.text_len = 1;
	id = tc_send(&c, &r);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST, "hello");
	tc_close(&c);
	tc_open(&c);
	tc_ping(&c);
	tc_close(&c);
}
END_TEST

START_TEST(test_malformed)
{
	/* {"type": "ping", "id": 1} */
	static const uint8_t ping1[] = { 0x82, 0xa4, 't', 'y', 'p', 'e', 0xa4,
	    'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0x01 };
	static const uint8_t huge_array[] = { 0xdd, 0xff, 0x00, 0x00, 0x00 };
	static const uint8_t array_top[] = { 0x93, 0x01, 0x02, 0x03 };
	/* {"type": "ping", "id": "one"} */
	static const uint8_t bad_id[] = { 0x82, 0xa4, 't', 'y', 'p', 'e',
	    0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0xa3, 'o', 'n', 'e' };
	/* {"type": "frobnicate", "id": 9} */
	static const uint8_t unknown[] = { 0x82, 0xa4, 't', 'y', 'p', 'e',
	    0xaa, 'f', 'r', 'o', 'b', 'n', 'i', 'c', 'a', 't', 'e', 0xa2, 'i',
	    'd', 0x09 };
	/* a map of 3 entries with 2 */
	static const uint8_t short_map[] = { 0x83, 0xa4, 't', 'y', 'p', 'e',
	    0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0x01 };
	static const uint8_t reserved[] = { 0x82, 0xa4, 't', 'y', 'p', 'e',
	    0xc1, 0xa2, 'i', 'd', 0x01 };
	struct proto_request r;
	struct proto_response resp;
	uint8_t deep[64], hdr[4];
	struct tc c, keep;
	int64_t id;
	size_t n;
	int i;

	tc_open(&keep);

	/* the body dd ff 00 00 00: an error, the connection stays */
	tc_open(&c);
	send_frame(&c, huge_array, sizeof(huge_array));
	tc_expect_error(&c, 0, PROTO_E_BAD_REQUEST, NULL);
	tc_ping(&c);
	/* top level not a map */
	send_frame(&c, array_top, sizeof(array_top));
	tc_expect_error(&c, 0, PROTO_E_BAD_REQUEST, NULL);
	/* nesting deeper than 16 */
	n = 0;
	deep[n++] = 0x81;
	deep[n++] = 0xa1;
	deep[n++] = 'x';
	for (i = 0; i < 20; i++)
		deep[n++] = 0x91;
	deep[n++] = 0x01;
	send_frame(&c, deep, (uint32_t)n);
	tc_expect_error(&c, 0, PROTO_E_BAD_REQUEST, NULL);
	/* wrong field types */
	send_frame(&c, bad_id, sizeof(bad_id));
	tc_expect_error(&c, 0, PROTO_E_BAD_REQUEST, "id");
	proto_request_init(&r, PROTO_MSG_GENERATE, 77);
	{
		/* {"type":"generate","id":77,"model":"tiny","prompt":"x",
		 *  "max_tokens":"ten"} */
		static const uint8_t gen[] = { 0x85, 0xa4, 't', 'y', 'p', 'e',
		    0xa8, 'g', 'e', 'n', 'e', 'r', 'a', 't', 'e', 0xa2, 'i',
		    'd', 0x4d, 0xa5, 'm', 'o', 'd', 'e', 'l', 0xa4, 't', 'i',
		    'n', 'y', 0xa6, 'p', 'r', 'o', 'm', 'p', 't', 0xa1, 'x',
		    0xaa, 'm', 'a', 'x', '_', 't', 'o', 'k', 'e', 'n', 's',
		    0xa3, 't', 'e', 'n' };

		send_frame(&c, gen, sizeof(gen));
		tc_expect_error(&c, 77, PROTO_E_BAD_REQUEST, "max_tokens");
	}
	/* unknown type */
	send_frame(&c, unknown, sizeof(unknown));
	tc_expect_error(&c, 9, PROTO_E_BAD_REQUEST, NULL);
	/* truncated body, reserved byte */
	send_frame(&c, short_map, sizeof(short_map));
	tc_expect_error(&c, 0, PROTO_E_BAD_REQUEST, NULL);
	send_frame(&c, reserved, sizeof(reserved));
	tc_expect_error(&c, 0, PROTO_E_BAD_REQUEST, NULL);
	/* after all that, the connection still works */
	send_frame(&c, ping1, sizeof(ping1));
	tc_expect_reply(&c, 1, PROTO_MSG_PING, &resp);
	proto_response_free(&resp);
	tc_close(&c);

	/* length over the maximum: an error and a close */
	tc_open(&c);
	proto_frame_hdr(hdr, PROTO_MAX_FRAME_DEFAULT + 1);
	ck_assert_int_eq(tc_write(&c, hdr, 4), 0);
	expect_error_close(&c, PROTO_E_TOO_LARGE);
	tc_close(&c);
	/* zero length */
	tc_open(&c);
	memset(hdr, 0, sizeof(hdr));
	ck_assert_int_eq(tc_write(&c, hdr, 4), 0);
	expect_error_close(&c, PROTO_E_BAD_REQUEST);
	tc_close(&c);
	/* a frame before hello is framed fine but refused */
	ck_assert_int_eq(tc_open_raw(&c), 0);
	send_frame(&c, huge_array, sizeof(huge_array));
	tc_expect_error(&c, 0, PROTO_E_BAD_REQUEST, NULL);
	tc_close(&c);
	/* a cut frame, then close */
	tc_open(&c);
	proto_frame_hdr(hdr, 100);
	ck_assert_int_eq(tc_write(&c, hdr, 4), 0);
	ck_assert_int_eq(tc_write(&c, ping1, 10), 0);
	tc_close(&c);
	/* garbage without a hello at all, then close */
	ck_assert_int_eq(tc_open_raw(&c), 0);
	ck_assert_int_eq(tc_write(&c, "GET / HTTP/1.1\r\n\r\n", 18), 0);
	expect_error_close(&c, PROTO_E_TOO_LARGE);
	tc_close(&c);

	/* the other connection was never disturbed */
	tc_ping(&keep);
	id = tc_generate(&keep, "tiny", "still here", 4, true);
	{
		struct gen *g = gen_new();

		ck_assert_int_eq(tc_collect(&keep, (uint64_t)id, g, 0), 0);
		ck_assert(g->done);
		free(g);
	}
	tc_close(&keep);
}
END_TEST

START_TEST(test_bad_names)
{
	static const char *const bad[] = { "a/b", "..", "../tiny", "x..y",
	    ".tiny", "a\\b" };
	struct proto_request r;
	struct proto_err e;
	struct proto_buf b;
	struct tc c;
	size_t i;

	tc_open(&c);
	/* proto_pack_request refuses these names, so pack by hand with a
	 * good name and patch it in place */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char good[16];
		uint8_t *p;
		size_t k, n = strlen(bad[i]);

		memset(good, 'q', n);
		good[n] = '\0';
		proto_request_init(&r, PROTO_MSG_SHOW, 100 + i);
		r.u.show.model = good;
		proto_buf_init(&b);
		ck_assert_int_eq(proto_pack_request(&b, &r, &c.l, &e), 0);
		for (k = 1, p = NULL; k + n <= b.len; k++)
			if (memcmp(b.data + k, good, n) == 0 &&
			    b.data[k - 1] == (0xa0 | n))
				p = b.data + k;
		ck_assert_ptr_nonnull(p);
		memcpy(p, bad[i], n);
		ck_assert_int_eq(tc_write(&c, b.data, b.len), 0);
		proto_buf_free(&b);
		tc_expect_error(&c, 100 + i, PROTO_E_BAD_REQUEST, "model");
	}
	tc_close(&c);
}
END_TEST

START_TEST(test_unknown_model)
{
	struct gen *g = gen_new();
	struct tc c;
	int64_t id;

	tc_open(&c);
	id = tc_generate(&c, "nosuch", "x", 4, true);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_NOT_FOUND, "nosuch");
	id = tc_simple(&c, PROTO_MSG_LOAD, "nosuch");
	tc_expect_error(&c, (uint64_t)id, PROTO_E_NOT_FOUND, NULL);
	/* a directory and a non-model */
	id = tc_simple(&c, PROTO_MSG_LOAD, "sub");
	tc_expect_error(&c, (uint64_t)id, PROTO_E_NOT_FOUND, NULL);
	/* a file that is not a model */
	id = tc_generate(&c, "broken", "x", 4, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert(!g->done);
	ck_assert_int_eq(g->error, PROTO_E_MODEL_ERROR);
	ck_assert(!ps_has(&c, "broken", NULL));
	/* an id in use */
	{
		struct proto_request r;

		id = tc_generate(&c, "long", "busy", 300, true);
		proto_request_init(&r, PROTO_MSG_PING, (uint64_t)id);
		tc_send(&c, &r);
		memset(g, 0, sizeof(*g));
		for (;;) {
			struct proto_response resp;

			tc_must_recv(&c, &resp);
			if (resp.type == PROTO_MSG_ERROR) {
				ck_assert_int_eq(resp.u.error.code,
				    PROTO_E_BAD_REQUEST);
				ck_assert_ptr_nonnull(strstr(
				    resp.u.error.message, "in use"));
				proto_response_free(&resp);
				break;
			}
			ck_assert_int_eq(resp.type, PROTO_MSG_TOKEN);
			proto_response_free(&resp);
		}
		ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
		ck_assert(g->done);
	}
	tc_close(&c);
	free(g);
}
END_TEST

/* Run hearthd with args to its end; its exit status, its output in out. */
static int
run_hearthd(const char *const *args, char *out, size_t size)
{
	char path[4400];

	snprintf(path, sizeof(path), "%s/run.log", g_d.dir);
	return td_run(path, args, out, size);
}

START_TEST(test_startup_errors)
{
	static const char *const bad_conf[] = {
		"nosuch = 1\n",
		"keep_alive = soon\n",
		"n_parallel = 0\n",
		"max_frame = 12\n",
		"template = nosuch\n",
		"[other]\nkeep_alive = 1\n",
		"pause_timeout = 2h\n",
	};
	char conf[4400], out[4096];
	const char *args[12];
	size_t i;
	FILE *f;

	snprintf(conf, sizeof(conf), "%s/bad.conf", g_d.dir);
	for (i = 0; i < sizeof(bad_conf) / sizeof(bad_conf[0]); i++) {
		f = fopen(conf, "w");
		fputs(bad_conf[i], f);
		fclose(f);
		args[0] = "-s";
		args[1] = "/nonexistent/x.sock";
		args[2] = "-m";
		args[3] = g_d.models;
		args[4] = "-c";
		args[5] = conf;
		args[6] = NULL;
		ck_assert_int_eq(run_hearthd(args, out, sizeof(out)), 1);
		ck_assert_msg(strstr(out, "bad.conf:") != NULL, "%s", out);
	}
	/* a missing configuration file named on the command line */
	args[5] = "/nonexistent.conf";
	ck_assert_int_eq(run_hearthd(args, out, sizeof(out)), 1);
	/* the socket of a running daemon is not taken over */
	snprintf(conf, sizeof(conf), "%s/hearthd.conf", g_d.dir);
	args[1] = g_d.sock;
	args[5] = conf;
	ck_assert_int_eq(run_hearthd(args, out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "another daemon") != NULL, "%s", out);
	/* a missing models directory */
	args[1] = "/nonexistent/x.sock";
	args[3] = "/nonexistent";
	ck_assert_int_eq(run_hearthd(args, out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "/nonexistent") != NULL, "%s", out);
	/* usage */
	args[0] = "-x";
	args[1] = NULL;
	ck_assert_int_eq(run_hearthd(args, out, sizeof(out)), 2);
	/* the daemon still serves */
	{
		struct tc c;

		tc_open(&c);
		tc_ping(&c);
		tc_close(&c);
	}
}
END_TEST

START_TEST(test_stale_socket)
{
	struct gen *g = gen_new();
	struct tc c;
	int64_t id;

	/* a daemon killed without its shutdown leaves its socket behind */
	kill(g_d.pid, SIGKILL);
	waitpid(g_d.pid, NULL, 0);
	g_d.pid = -1;
	ck_assert_int_eq(access(g_d.sock, F_OK), 0);
	ck_assert_int_lt(tc_connect(g_d.sock), 0);
	daemon_start();
	tc_open(&c);
	id = tc_generate(&c, "tiny", "back again", 3, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert(g->done);
	tc_close(&c);
	free(g);
}
END_TEST

/* Whether list names model. */
static bool
list_has(struct tc *c, const char *name)
{
	struct proto_response resp;
	bool found = false;
	uint32_t k;
	int64_t id;

	id = tc_simple(c, PROTO_MSG_LIST, NULL);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_LIST, &resp);
	for (k = 0; k < resp.u.list.n_models; k++)
		if (strcmp(resp.u.list.models[k].name, name) == 0)
			found = true;
	proto_response_free(&resp);
	return found;
}

START_TEST(test_external_links)
{
	struct proto_response resp;
	struct tc c;
	int64_t id;

	/* allowed by the suite's configuration */
	tc_open(&c);
	ck_assert(list_has(&c, "outside"));
	id = tc_simple(&c, PROTO_MSG_SHOW, "outside");
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_SHOW, &resp);
	proto_response_free(&resp);
	tc_close(&c);
	/* a second daemon that refuses them (this process owns it) */
	snprintf(g_d.sock, sizeof(g_d.sock), "%s/run/links.sock", g_d.dir);
	daemon_start_conf("links.conf");
	tc_open(&c);
	ck_assert(!list_has(&c, "outside"));
	ck_assert(list_has(&c, "alias"));
	id = tc_simple(&c, PROTO_MSG_SHOW, "outside");
	tc_expect_error(&c, (uint64_t)id, PROTO_E_DENIED, "external_links");
	id = tc_generate(&c, "outside", "x", 2, true);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_DENIED, NULL);
	tc_close(&c);
	ck_assert_int_eq(td_stop(&g_d), 0);
}
END_TEST

/* ---- residency ------------------------------------------------------ */

/* The value of a show entry of model (asserts it is there). */
static struct proto_meta
show_get(struct tc *c, const char *model, const char *key, char *str,
    size_t size)
{
	struct proto_response resp;
	struct proto_meta out;
	bool found = false;
	uint32_t k;
	int64_t id;

	memset(&out, 0, sizeof(out));
	id = tc_simple(c, PROTO_MSG_SHOW, model);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_SHOW, &resp);
	for (k = 0; k < resp.u.show.n_meta; k++)
		if (strcmp(resp.u.show.meta[k].key, key) == 0) {
			out = resp.u.show.meta[k];
			found = true;
			if (str != NULL && out.type == PROTO_META_STR)
				snprintf(str, size, "%.*s", (int)out.s_len,
				    out.s);
		}
	out.key = out.s = out.elem = NULL;
	proto_response_free(&resp);
	ck_assert_msg(found, "show %s: no %s", model, key);
	return out;
}

static uint64_t
show_u(struct tc *c, const char *model, const char *key)
{
	struct proto_meta m = show_get(c, model, key, NULL, 0);

	ck_assert_int_eq(m.type, PROTO_META_UINT);
	return m.u;
}

static bool
show_b(struct tc *c, const char *model, const char *key)
{
	struct proto_meta m = show_get(c, model, key, NULL, 0);

	ck_assert_int_eq(m.type, PROTO_META_BOOL);
	return m.b;
}

/* Greedy answer of the daemon for model equals the engine's (want). */
static void
expect_answer(struct tc *c, const char *model, const char *prompt,
    const int32_t *want, uint32_t nw)
{
	struct gen *g = gen_new();
	int64_t id;

	id = tc_generate(c, model, prompt, 16, true);
	ck_assert_int_eq(tc_collect(c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "%s: error %d %s", model, g->error, g->msg);
	assert_ids_eq(g->ids, g->n, want, nw);
	free(g);
}

/* The models of the residency cases, on top of make_models'. */
static void
setup_residency(void)
{
	struct mkm_spec s;

	make_models();
	mkm_spec_default(&s);
	s.seed = 11;
	td_write_model(&g_d, &s, "bpin");
	s.seed = 12;
	td_write_model(&g_d, &s, "ba");
	s.seed = 13;
	td_write_model(&g_d, &s, "bb");
	s.seed = 14;
	td_write_model(&g_d, &s, "trunc");
	spec_long(&s);
	s.seed = 15;
	td_write_model(&g_d, &s, "big");
	daemon_start();
}

START_TEST(test_budget_evict)
{
	int32_t w_pin[16], w_a[16], w_b[16];
	uint32_t n_pin, n_a, n_b;
	uint64_t c_pin, c_a, c_b, c_big, budget;
	struct proto_response resp;
	char conf[4400], msg[512];
	struct tc c;
	int64_t id;
	FILE *f;

	n_pin = direct_generate("bpin", "hello", 16, w_pin);
	n_a = direct_generate("ba", "hello", 16, w_a);
	n_b = direct_generate("bb", "hello", 16, w_b);

	/* what each costs, before any is loaded */
	tc_open(&c);
	c_pin = show_u(&c, "bpin", "hearth.memory.total");
	c_a = show_u(&c, "ba", "hearth.memory.total");
	c_b = show_u(&c, "bb", "hearth.memory.total");
	c_big = show_u(&c, "big", "hearth.memory.total");
	ck_assert(!show_b(&c, "ba", "hearth.resident"));
	ck_assert_uint_eq(c_a, show_u(&c, "ba", "hearth.memory.weights") +
	    show_u(&c, "ba", "hearth.memory.kv") +
	    show_u(&c, "ba", "hearth.memory.scratch"));
	ck_assert_uint_gt(show_u(&c, "ba", "hearth.memory.kv"), 0);
	tc_close(&c);
	ck_assert_int_eq(td_stop(&g_d), 0);

	/* room for the pinned one and one of the others */
	budget = c_pin + (c_a > c_b ? c_a : c_b) + (c_a < c_b ? c_a : c_b) / 2;
	ck_assert_uint_gt(c_big, budget);
	snprintf(conf, sizeof(conf), "%s/budget.conf", g_d.dir);
	f = fopen(conf, "w");
	fprintf(f, "[daemon]\nkeep_alive = 300\nn_parallel = 16\n"
	    "max_models = 8\nmemory_budget = %llu\npages = small\n"
	    "[model bpin]\npin = yes\n",
	    (unsigned long long)budget);
	fclose(f);
	daemon_start_conf("budget.conf");

	tc_open(&c);
	ck_assert_uint_eq(show_u(&c, "bpin", "hearth.memory.budget"), budget);
	ck_assert(show_b(&c, "bpin", "hearth.pinned"));
	expect_answer(&c, "bpin", "hello", w_pin, n_pin);
	expect_answer(&c, "ba", "hello", w_a, n_a);
	ck_assert(ps_has(&c, "bpin", NULL) && ps_has(&c, "ba", NULL));
	ck_assert(show_b(&c, "ba", "hearth.resident"));
	/* pages = small: what the weights got */
	show_get(&c, "ba", "hearth.memory.pages", msg, sizeof(msg));
	ck_assert_msg(strstr(msg, "small") != NULL && strstr(msg, "2M") ==
	    NULL && strstr(msg, "thp") == NULL, "%s", msg);
	/* bb evicts ba (idle, unpinned), never bpin */
	expect_answer(&c, "bb", "hello", w_b, n_b);
	ck_assert(ps_has(&c, "bpin", NULL) && ps_has(&c, "bb", NULL));
	ck_assert(!ps_has(&c, "ba", NULL));
	ck_assert(td_log_has(&g_d, "evicting ba"));
	/* ba reloads on its next request and evicts bb */
	expect_answer(&c, "ba", "hello", w_a, n_a);
	ck_assert(ps_has(&c, "bpin", NULL) && ps_has(&c, "ba", NULL));
	ck_assert(!ps_has(&c, "bb", NULL));
	expect_answer(&c, "bpin", "hello", w_pin, n_pin);

	/* too big for the budget: refused with the numbers */
	id = tc_simple(&c, PROTO_MSG_LOAD, "big");
	tc_must_recv(&c, &resp);
	ck_assert_uint_eq(resp.id, (uint64_t)id);
	ck_assert_int_eq(resp.type, PROTO_MSG_ERROR);
	ck_assert_int_eq(resp.u.error.code, PROTO_E_TOO_LARGE);
	snprintf(msg, sizeof(msg), "%s", resp.u.error.message);
	proto_response_free(&resp);
	ck_assert_msg(strstr(msg, "big needs") != NULL &&
	    strstr(msg, "budget") != NULL && strstr(msg, "KV") != NULL,
	    "%s", msg);
	/* a request for it fails the same way; the others keep serving */
	{
		struct gen *g = gen_new();

		id = tc_generate(&c, "big", "hello", 4, true);
		ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
		ck_assert_int_eq(g->error, PROTO_E_TOO_LARGE);
		free(g);
	}
	ck_assert(ps_has(&c, "bpin", NULL) && ps_has(&c, "ba", NULL));
	expect_answer(&c, "ba", "hello", w_a, n_a);
	expect_answer(&c, "bpin", "hello", w_pin, n_pin);
	/* an explicit unload of the pinned model is still allowed */
	id = tc_simple(&c, PROTO_MSG_UNLOAD, "bpin");
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_UNLOAD, &resp);
	proto_response_free(&resp);
	ck_assert(!ps_has(&c, "bpin", NULL));
	tc_close(&c);
}
END_TEST

/* A load with pin set (pin true or false); waits for its reply. */
static void
tc_load_pin(struct tc *c, const char *model, bool pin)
{
	struct proto_request r;
	int64_t id;

	proto_request_init(&r, PROTO_MSG_LOAD, 0);
	r.u.load.model = model;
	r.u.load.has_pin = true;
	r.u.load.pin = pin;
	id = tc_send(c, &r);
	ck_assert_int_gt(id, 0);
	tc_load_done(c, (uint64_t)id);
}

/*
 * load with pin = true keeps a model through an eviction that would
 * otherwise take it (it is the least recently used); pin = false gives
 * it back. ps and stats show the memory split.
 */
START_TEST(test_load_pin)
{
	int32_t w_pin[16], w_a[16], w_b[16];
	uint32_t n_pin, n_a, n_b;
	uint64_t c_pin, c_a, c_b, budget;
	struct proto_response resp;
	struct proto_ps_entry pe;
	char conf[4400];
	struct tc c;
	int64_t id;
	FILE *f;

	n_pin = direct_generate("bpin", "hello", 16, w_pin);
	n_a = direct_generate("ba", "hello", 16, w_a);
	n_b = direct_generate("bb", "hello", 16, w_b);
	tc_open(&c);
	c_pin = show_u(&c, "bpin", "hearth.memory.total");
	c_a = show_u(&c, "ba", "hearth.memory.total");
	c_b = show_u(&c, "bb", "hearth.memory.total");
	tc_close(&c);
	ck_assert_int_eq(td_stop(&g_d), 0);

	/* room for two of the three, whichever */
	budget = c_pin + c_a + c_b - (c_pin < c_a ? (c_pin < c_b ? c_pin :
	    c_b) : (c_a < c_b ? c_a : c_b)) / 2;
	budget = budget > c_pin + c_a + c_b - 1 ? c_pin + c_a + c_b - 1 :
	    budget;
	ck_assert_uint_ge(budget, c_a + c_b);
	ck_assert_uint_ge(budget, c_a + c_pin);
	snprintf(conf, sizeof(conf), "%s/pin.conf", g_d.dir);
	f = fopen(conf, "w");
	fprintf(f, "[daemon]\nkeep_alive = 300\nn_parallel = 16\n"
	    "max_models = 8\nmemory_budget = %llu\npages = small\n",
	    (unsigned long long)budget);
	fclose(f);
	daemon_start_conf("pin.conf");

	tc_open(&c);
	tc_load_pin(&c, "ba", true);
	ck_assert(ps_has(&c, "ba", &pe));
	ck_assert(pe.pinned);
	ck_assert_int_eq(pe.keep_alive, -1);
	ck_assert_uint_gt(pe.weights, 0);
	ck_assert_uint_gt(pe.kv, 0);
	ck_assert_uint_eq(pe.weights + pe.kv + pe.scratch, pe.memory);
	/* pages = small: the weights are all in base pages */
	ck_assert_uint_gt(pe.bytes_small, 0);
	ck_assert_uint_eq(pe.bytes_1g + pe.bytes_2m, 0);
	expect_answer(&c, "bb", "hello", w_b, n_b);
	ck_assert(ps_has(&c, "bb", &pe));
	ck_assert(!pe.pinned);
	/* ba is the least recently used, but pinned: bb goes */
	expect_answer(&c, "bpin", "hello", w_pin, n_pin);
	ck_assert(ps_has(&c, "ba", NULL) && ps_has(&c, "bpin", NULL));
	ck_assert(!ps_has(&c, "bb", NULL));
	ck_assert(td_log_has(&g_d, "evicting bb"));
	expect_answer(&c, "ba", "hello", w_a, n_a);

	/* stats: the budget and the split of the resident memory */
	id = tc_simple(&c, PROTO_MSG_STATS, NULL);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_STATS, &resp);
	ck_assert_uint_eq(resp.u.stats.budget, budget);
	ck_assert_uint_eq(resp.u.stats.models, 2);
	ck_assert_uint_gt(resp.u.stats.weights, 0);
	ck_assert_uint_eq(resp.u.stats.weights + resp.u.stats.kv +
	    resp.u.stats.scratch, resp.u.stats.memory);
	proto_response_free(&resp);

	/* unpinned, ba is evictable again: with bpin used since, ba is the
	 * least recently used and bb's load takes it */
	tc_load_pin(&c, "ba", false);
	ck_assert(ps_has(&c, "ba", &pe));
	ck_assert(!pe.pinned);
	ck_assert_int_ge(pe.keep_alive, 0);
	expect_answer(&c, "bpin", "hello", w_pin, n_pin);
	expect_answer(&c, "bb", "hello", w_b, n_b);
	ck_assert(!ps_has(&c, "ba", NULL));
	ck_assert(ps_has(&c, "bb", NULL) && ps_has(&c, "bpin", NULL));
	tc_close(&c);
}
END_TEST

START_TEST(test_truncate_resident)
{
	int32_t want[16], want2[16];
	uint32_t nw, nw2;
	struct gen *g;
	struct tc c;
	int64_t id;

	nw = direct_generate("trunc", "hello", 16, want);
	nw2 = direct_generate("trunc", "abc", 16, want2);
	tc_open(&c);
	expect_answer(&c, "trunc", "hello", want, nw);
	/* the file changes on disk under the resident model */
	ck_assert_int_eq(truncate(td_model_path(&g_d, "trunc"), 0), 0);
	expect_answer(&c, "trunc", "hello", want, nw);
	expect_answer(&c, "trunc", "abc", want2, nw2);
	ck_assert(show_b(&c, "trunc", "hearth.resident"));
	ck_assert(ps_has(&c, "trunc", NULL));
	tc_ping(&c);
	/* once unloaded, it cannot come back */
	id = tc_simple(&c, PROTO_MSG_UNLOAD, "trunc");
	{
		struct proto_response resp;

		tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_UNLOAD, &resp);
		proto_response_free(&resp);
	}
	g = gen_new();
	id = tc_generate(&c, "trunc", "hello", 4, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_int_eq(g->error, PROTO_E_MODEL_ERROR);
	free(g);
	tc_close(&c);
}
END_TEST

/*
 * kv_type = q8_0: show says so and costs the KV cache at 34 bytes per 32
 * elements before and after loading; the model serves; a model whose
 * head dim is not a multiple of 32 fails to load with the reason.
 */
START_TEST(test_kv_type)
{
	struct proto_ps_entry pe;
	struct mkm_spec s;
	char conf[4400], str[512];
	uint64_t kv_q8, kv_f16;
	struct gen *g;
	struct tc c;
	int64_t id;
	FILE *f;

	ck_assert_int_eq(td_stop(&g_d), 0);
	mkm_spec_default(&s);
	s.n_embd = 128;		/* 4 heads of 32 */
	s.seed = 21;
	td_write_model(&g_d, &s, "kvq");
	td_write_model(&g_d, &s, "kvf");
	snprintf(conf, sizeof(conf), "%s/kv.conf", g_d.dir);
	f = fopen(conf, "w");
	fputs("[daemon]\nn_parallel = 2\npages = small\n"
	    "[model kvq]\nkv_type = q8_0\n"
	    "[model tiny]\nkv_type = Q8_0\n", f);
	fclose(f);
	daemon_start_conf("kv.conf");

	tc_open(&c);
	show_get(&c, "kvq", "hearth.kv_type", str, sizeof(str));
	ck_assert_str_eq(str, "q8_0");
	show_get(&c, "kvf", "hearth.kv_type", str, sizeof(str));
	ck_assert_str_eq(str, "f16");
	kv_q8 = show_u(&c, "kvq", "hearth.memory.kv");
	kv_f16 = show_u(&c, "kvf", "hearth.memory.kv");
	ck_assert_uint_gt(kv_q8, 0);
	ck_assert_uint_eq(kv_q8 * 64, kv_f16 * 34);

	g = gen_new();
	id = tc_generate(&c, "kvq", "hello", 8, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->error == 0, "kvq: %s", g->msg);
	ck_assert(g->done);
	ck_assert_uint_gt(g->generated_tokens, 0);
	free(g);
	ck_assert(ps_has(&c, "kvq", &pe));
	/* what the scheduler allocated: the same size, to cache lines */
	ck_assert_uint_ge(pe.kv, kv_q8);
	ck_assert_uint_lt(pe.kv, kv_q8 + 256);
	ck_assert(show_b(&c, "kvq", "hearth.resident"));
	show_get(&c, "kvq", "hearth.kv_type", str, sizeof(str));
	ck_assert_str_eq(str, "q8_0");
	ck_assert_uint_eq(show_u(&c, "kvq", "hearth.memory.kv"), kv_q8);
	ck_assert(td_log_has(&g_d, "kvq memory: weights "));
	ck_assert(td_log_has(&g_d, "(q8_0), scratch"));

	/* tiny: 4 heads of 16 */
	g = gen_new();
	id = tc_generate(&c, "tiny", "hello", 4, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_int_eq(g->error, PROTO_E_MODEL_ERROR);
	ck_assert_msg(strstr(g->msg, "multiple of 32") != NULL &&
	    strstr(g->msg, "q8_0") != NULL, "%s", g->msg);
	free(g);
	tc_close(&c);
}
END_TEST

START_TEST(test_numa_topology)
{
	char path[4400], conf[4400], str[512], out[4096];
	const char *args[12];
	int32_t want[16];
	uint32_t nw;
	struct tc c;
	FILE *f;

	ck_assert_int_eq(td_stop(&g_d), 0);
	snprintf(path, sizeof(path), "%s/topo2", g_d.dir);
	f = fopen(path, "w");
	fputs("# two nodes, uneven memory\n"
	    "node 0 cpus 0-3 mem 16G free 12G\n"
	    "node 1 cpus 4-7 mem 8G\n", f);
	fclose(f);
	snprintf(conf, sizeof(conf), "%s/numa.conf", g_d.dir);
	f = fopen(conf, "w");
	fputs("[daemon]\nnuma = interleave\n[model tiny]\nnuma = local\n", f);
	fclose(f);
	g_d.topo = path;
	daemon_start_conf("numa.conf");
	ck_assert(td_log_has(&g_d, "NUMA topology: 2 nodes (simulated)"));
	ck_assert(td_log_has(&g_d, "topology: node 1 cpus 4-7"));

	nw = direct_generate("tiny", "hello", 16, want);
	tc_open(&c);
	ck_assert_uint_eq(show_u(&c, "tiny", "hearth.numa.nodes"), 2);
	show_get(&c, "tiny", "hearth.numa.policy", str, sizeof(str));
	ck_assert_str_eq(str, "local");
	show_get(&c, "qtiny", "hearth.numa.policy", str, sizeof(str));
	ck_assert_str_eq(str, "interleave");
	expect_answer(&c, "tiny", "hello", want, nw);
	show_get(&c, "tiny", "hearth.numa.placement", str, sizeof(str));
	ck_assert_msg(strstr(str, "local") != NULL &&
	    strstr(str, "simulated") != NULL, "%s", str);
	ck_assert(show_b(&c, "tiny", "hearth.resident"));
	ck_assert(td_log_has(&g_d, "tiny numa: local"));
	ck_assert(td_log_has(&g_d, "tiny memory: weights "));
	tc_close(&c);

	/* a bad topology file stops the start with its line */
	f = fopen(path, "w");
	fputs("node 0 cpus 0-3\n", f);
	fclose(f);
	args[0] = "-s";
	args[1] = "/nonexistent/x.sock";
	args[2] = "-m";
	args[3] = g_d.models;
	args[4] = "--numa-topology";
	args[5] = path;
	args[6] = NULL;
	ck_assert_int_eq(run_hearthd(args, out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "topo2") != NULL, "%s", out);
}
END_TEST

static Suite *
daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hello);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_show);
	tcase_add_test(tc, test_load_unload);
	tcase_add_test(tc, test_keep_alive);
	tcase_add_test(tc, test_generate_greedy);
	tcase_add_test(tc, test_generate_ids_nostream);
	tcase_add_test(tc, test_generate_aidreams);
	tcase_add_test(tc, test_chat);
	tcase_add_test(tc, test_chat_thinking);
	tcase_add_test(tc, test_eval);
	tcase_add_test(tc, test_embed);
	tcase_add_test(tc, test_tokenize);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_stats_ps);
	tcase_add_test(tc, test_concurrent);
	tcase_add_test(tc, test_unload_while_running);
	suite_add_tcase(s, tc);

	/* a daemon of its own, started in the test's process */
	tc = tcase_create("shutdown");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_shutdown);
	tcase_add_test(tc, test_stale_socket);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_slow_reader);
	tcase_add_test(tc, test_disconnect);
	tcase_add_test(tc, test_too_large);
	tcase_add_test(tc, test_max_requests);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_version_mismatch);
	tcase_add_test(tc, test_before_hello);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_bad_names);
	tcase_add_test(tc, test_unknown_model);
	tcase_add_test(tc, test_startup_errors);
	tcase_add_test(tc, test_external_links);
	suite_add_tcase(s, tc);

	/* daemons with their own configurations: a fixture per test */
	tc = tcase_create("residency");
	tcase_add_checked_fixture(tc, setup_residency, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_budget_evict);
	tcase_add_test(tc, test_load_pin);
	tcase_add_test(tc, test_truncate_resident);
	tcase_add_test(tc, test_numa_topology);
	tcase_add_test(tc, test_kv_type);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(daemon_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
