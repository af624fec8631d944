/*
 * fuzz_gguf.c - libFuzzer target: a whole GGUF file as input.
 *
 * The bytes go into a memfd that the code under test opens by path, as it
 * would a model file. gguf_open() reads it; when it is accepted every
 * key, getter and tensor is exercised, a tokenizer is built from its
 * vocabulary (and used a little), its chat template is detected, and
 * model_open() runs the hyperparameter and tensor checks and loads it.
 * Invariants: refusals carry a message and one of the documented codes,
 * outputs are untouched on failure, accepted tensors lie in the file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "gguf.h"
#include "model.h"
#include "template.h"
#include "tokenizer.h"

static struct fz_file fg_file = { -1, "" };

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fz_file_open(&fg_file, "fuzz.gguf") < 0) {
		perror("memfd_create");
		abort();
	}
	return 0;
}

static void
fg_refused(const char *what, int r, const struct eng_err *e)
{
	FZ_ASSERT(r < 0, "%s: %d", what, r);
	FZ_ASSERT(e->msg[0] != '\0', "%s: %d without a message", what, r);
	FZ_ASSERT(memchr(e->msg, '\0', sizeof(e->msg)) != NULL,
	    "%s: message not terminated", what);
}

/* Every getter on every key; conversions must agree with each other. */
static void
fg_keys(const struct gguf *g)
{
	const struct gguf_str *s;
	const struct gguf_kv *kv, *found;
	uint64_t i, u64;
	uint32_t u32;
	int32_t i32;
	float f;
	bool b;
	int r32, r64, e;

	for (i = 0; i < g->n_kv; i++) {
		kv = &g->kv[i];
		FZ_ASSERT(kv->key.s != NULL && kv->key.s[kv->key.len] == '\0',
		    "key %llu not terminated", (unsigned long long)i);
		FZ_ASSERT(kv->type < GGUF_VTYPE_COUNT, "key type %d",
		    (int)kv->type);
		if (memchr(kv->key.s, '\0', kv->key.len) != NULL)
			continue;	/* not reachable by a C string */
		found = gguf_find_kv(g, kv->key.s);
		FZ_ASSERT(found == kv, "key '%s' found elsewhere", kv->key.s);
		r32 = gguf_get_u32(g, kv->key.s, &u32);
		r64 = gguf_get_u64(g, kv->key.s, &u64);
		if (r32 == 0 && r64 == 0)
			FZ_ASSERT(u32 == u64, "u32 %u != u64 %llu", u32,
			    (unsigned long long)u64);
		if (r32 == 0)
			FZ_ASSERT(r64 == 0, "u32 but not u64");
		(void)gguf_get_i32(g, kv->key.s, &i32);
		(void)gguf_get_f32(g, kv->key.s, &f);
		(void)gguf_get_bool(g, kv->key.s, &b);
		if (gguf_get_str(g, kv->key.s, &s) == 0)
			FZ_ASSERT(s->s[s->len] == '\0', "string not terminated");
		for (e = 0; e < GGUF_VTYPE_COUNT; e++)
			(void)gguf_get_arr(g, kv->key.s, (enum gguf_vtype)e,
			    &found);
		if (kv->type == GGUF_VTYPE_ARRAY &&
		    kv->v.arr.type == GGUF_VTYPE_STRING) {
			const struct gguf_str *a = kv->v.arr.data;
			uint64_t k;

			for (k = 0; k < kv->v.arr.n; k++)
				FZ_ASSERT(a[k].s[a[k].len] == '\0',
				    "element %llu not terminated",
				    (unsigned long long)k);
		}
	}
	FZ_ASSERT(gguf_find_kv(g, "fuzz.no.such.key") == NULL ||
	    g->n_kv > 0, "found a key in an empty file");
}

/* Every tensor lies inside the file, aligned, and can be read. */
static void
fg_tensors(const struct gguf *g)
{
	const struct gguf_tensor *t;
	struct eng_err e;
	uint64_t i, d, n;
	void *buf;
	int r;

	FZ_ASSERT(g->alignment != 0 && (g->alignment & (g->alignment - 1)) == 0,
	    "alignment %u", g->alignment);
	for (i = 0; i < g->n_tensors; i++) {
		t = &g->tensors[i];
		FZ_ASSERT(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS,
		    "n_dims %u", t->n_dims);
		for (d = 0, n = 1; d < GGUF_MAX_DIMS; d++) {
			FZ_ASSERT(t->ne[d] >= 1, "dim %llu is 0",
			    (unsigned long long)d);
			n *= t->ne[d];
		}
		FZ_ASSERT(n == t->nelems, "nelems %llu, dims give %llu",
		    (unsigned long long)t->nelems, (unsigned long long)n);
		FZ_ASSERT(gguf_type_nbytes(t->type, t->nelems) == t->nbytes &&
		    t->nbytes > 0, "nbytes %llu",
		    (unsigned long long)t->nbytes);
		FZ_ASSERT(t->offset % g->alignment == 0, "offset %llu",
		    (unsigned long long)t->offset);
		FZ_ASSERT(g->data_offset <= g->file_size &&
		    t->offset <= g->file_size - g->data_offset &&
		    t->nbytes <= g->file_size - g->data_offset - t->offset,
		    "tensor past the end");
		FZ_ASSERT(gguf_find_tensor(g, t->name.s) != NULL ||
		    memchr(t->name.s, '\0', t->name.len) != NULL,
		    "tensor not found by name");
		buf = malloc(t->nbytes);
		FZ_ASSERT(buf != NULL, "malloc %llu",
		    (unsigned long long)t->nbytes);
		e.msg[0] = '\0';
		r = gguf_read_tensor(g, t, buf, t->nbytes, &e);
		FZ_ASSERT(r == 0, "read tensor %llu: %d %s",
		    (unsigned long long)i, r, e.msg);
		free(buf);
	}
}

/* A tokenizer from the file: a little of everything. */
static void
fg_tok(const struct tok *t)
{
	static const char text[] = "Hello world <s> </s> <|im_start|>user\n"
	    "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac  \t1234 <0x41>";
	struct tok_stream st;
	int32_t ids[256], n_vocab, id;
	char buf[512];
	size_t n = 0, len;
	int r, k;

	n_vocab = tok_n_vocab(t);
	FZ_ASSERT(n_vocab > 0, "n_vocab %d", n_vocab);
	FZ_ASSERT(tok_bos(t) >= -1 && tok_bos(t) < n_vocab, "bos %d",
	    tok_bos(t));
	FZ_ASSERT(tok_eos(t) >= -1 && tok_eos(t) < n_vocab, "eos %d",
	    tok_eos(t));
	for (k = 0; k < 4; k++) {
		r = tok_encode(t, text, sizeof(text) - 1, k & 1, k & 2, ids,
		    sizeof(ids) / sizeof(ids[0]), &n);
		FZ_ASSERT(r == 0 || r == -EINVAL || r == -ENOBUFS,
		    "encode: %d", r);
		if (r != 0)
			continue;
		for (size_t i = 0; i < n; i++)
			FZ_ASSERT(ids[i] >= 0 && ids[i] < n_vocab, "id %d",
			    ids[i]);
		r = tok_decode(t, ids, n, k & 2, true, buf, sizeof(buf));
		FZ_ASSERT(r >= 0, "decode: %d", r);
	}
	/* every id (bounded: the file bounds the vocabulary) */
	tok_stream_init(&st);
	for (id = 0; id < n_vocab && id < 4096; id++) {
		(void)tok_text(t, id, &len);
		(void)tok_attr(t, id);
		(void)tok_is_eog(t, id);
		r = tok_piece(t, id, id & 1, buf, sizeof(buf));
		FZ_ASSERT(r >= 0, "piece %d: %d", id, r);
		r = tok_stream_push(t, &st, id, id & 1, buf, sizeof(buf));
		FZ_ASSERT(r >= 0 || r == -ENOBUFS, "stream %d: %d", id, r);
		if (r >= 0)
			FZ_ASSERT(fz_utf8_valid(buf, (size_t)r) == (size_t)r,
			    "stream piece of %d not UTF-8", id);
	}
	r = tok_stream_flush(&st, buf, sizeof(buf));
	FZ_ASSERT(r >= 0, "flush: %d", r);
	FZ_ASSERT(tok_piece(t, n_vocab, false, buf, sizeof(buf)) == -EINVAL,
	    "piece past the end");
	FZ_ASSERT(tok_piece(t, -1, false, buf, sizeof(buf)) == -EINVAL,
	    "piece -1");
}

static int
fg_progress(uint64_t done, uint64_t total, void *arg)
{
	(void)arg;
	FZ_ASSERT(done <= total, "progress %llu of %llu",
	    (unsigned long long)done, (unsigned long long)total);
	return 0;
}

static void
fg_model(const char *path)
{
	struct model sentinel, *m = &sentinel;
	const struct model_hparams *hp;
	struct eng_err e;
	int r;

	e.msg[0] = '\0';
	r = model_open(path, fg_progress, NULL, &m, &e);
	fz_log("  model_open: %d %s", r, e.msg);
	if (r < 0) {
		fg_refused("model_open", r, &e);
		FZ_ASSERT(r == -EINVAL || r == -ENOTSUP || r == -E2BIG ||
		    r == -EFBIG, "model_open: unexpected %d %s", r, e.msg);
		FZ_ASSERT(m == &sentinel, "model_open changed *out");
		return;
	}
	hp = &m->hp;
	FZ_ASSERT(hp->n_embd > 0 && hp->n_layer > 0 && hp->n_head > 0 &&
	    hp->n_head_kv > 0 && hp->n_head % hp->n_head_kv == 0 &&
	    hp->head_dim > 0 && hp->n_rot <= hp->head_dim && hp->n_vocab > 0,
	    "hparams");
	FZ_ASSERT(m->tok_embd.data != NULL && m->output.data != NULL &&
	    m->output_norm != NULL, "weights missing");
	FZ_ASSERT((uint32_t)tok_n_vocab(m->tok) == hp->n_vocab, "n_vocab");
	model_free(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf sentinel, *g = &sentinel;
	struct tok *t;
	char tsent;
	const struct gguf_str *tmpl_text;
	struct tmpl tm;
	struct eng_err e;
	int r;

	if (fz_file_set(&fg_file, data, size) < 0)
		abort();
	e.msg[0] = '\0';
	r = gguf_open(fg_file.path, &g, &e);
	fz_log("  gguf_open: %d %s", r, e.msg);
	if (r < 0) {
		fg_refused("gguf_open", r, &e);
		FZ_ASSERT(r == -EINVAL || r == -E2BIG || r == -EFBIG,
		    "gguf_open: unexpected %d %s", r, e.msg);
		FZ_ASSERT(g == &sentinel, "gguf_open changed *out");
		return 0;
	}
	FZ_ASSERT(g->file_size == size, "file size %llu",
	    (unsigned long long)g->file_size);
	FZ_ASSERT(g->version == 2 || g->version == 3, "version %u",
	    g->version);
	fg_keys(g);
	fg_tensors(g);

	t = (struct tok *)&tsent;
	e.msg[0] = '\0';
	r = tok_new(g, &t, &e);
	fz_log("  tok_new: %d %s", r, e.msg);
	if (r < 0) {
		fg_refused("tok_new", r, &e);
		FZ_ASSERT(r == -EINVAL || r == -ENOTSUP,
		    "tok_new: unexpected %d %s", r, e.msg);
		FZ_ASSERT(t == (struct tok *)&tsent, "tok_new changed *out");
	} else {
		fg_tok(t);
		tok_free(t);
	}
	if (gguf_get_str(g, "tokenizer.chat_template", &tmpl_text) == 0) {
		r = tmpl_detect(tmpl_text->s, tmpl_text->len, &tm);
		fz_log("  tmpl_detect: %d %s", r, r == 0 ? tmpl_name(&tm) : "");
		FZ_ASSERT(r == 0 || r == -ENOENT || r == -E2BIG,
		    "tmpl_detect: %d", r);
	}
	gguf_close(g);

	fg_model(fg_file.path);
	return 0;
}
