/*
 * sched.c - one resident model's scheduler thread: continuous batching
 * over KV slots (see sched.h).
 *
 * The loop thread only touches the queue, the flags of jobs (cancelled,
 * dropped, paused) and the counters, all under s->mtx. Everything else
 * (slots, the forward pass, samplers, text streams, the output buffer)
 * belongs to the scheduler thread, which computes without the lock and
 * takes it to look at the flags between steps and to post each frame
 * (so nothing is posted for a connection once sched_drop_conn returned).
 *
 * One iteration of the thread:
 *   control  - end cancelled jobs (done, reason cancelled) and forget
 *              dropped ones (nothing posted, their slots' caches freed);
 *   admit    - tokenize/detokenize are answered at once; other requests
 *              are started while a slot is free, round robin across
 *              users (the uid with the fewest running first, FIFO
 *              among equals): prompt
 *              tokenized and checked, a slot chosen (longest cached
 *              prefix of the same uid, else the least recently used),
 *              sampler and buffers allocated;
 *              texts longer than tok_async_min bytes are not
 *              tokenized here but beforehand, on the model's tokenizer
 *              thread (sched_tok_main), so that a prompt of megabytes
 *              never stalls the running streams; such a job is not
 *              admitted before its tokens are ready;
 *   build    - one batch: every decoding sequence's next token first,
 *              then chunks of prompts (and of eval/embed inputs);
 *              sequences of paused connections are left out;
 *   step     - fwd_eval_batch, then per sequence: sample, split the
 *              text into channels, stop strings, post token events; or
 *              score eval positions; or finish an embedding.
 * With nothing to run it sleeps on s->cond until something changes.
 */
#include <sys/queue.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "sched.h"
#include "textstream.h"
#include "tokenizer.h"

#ifndef TAILQ_FOREACH_SAFE	/* glibc's sys/queue.h lacks it */
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

#define SCHED_MAX_PARALLEL	1024	/* slots at most */
#define SCHED_LOGITS_ROWS	64	/* logits rows per step at least */
#define SCHED_OUT_RESERVE	8192	/* output buffer kept (error frames
					 * then never allocate) */
#define SCHED_TOK_ASYNC_MIN	16384	/* default tok_async_min: texts up
					 * to this are tokenized at admission
					 * (about 20 ms at most) */

enum sched_kind {
	SCHED_GEN = 1,		/* generate, chat */
	SCHED_EVAL,
	SCHED_EMBED,
	SCHED_TOKENIZE,
	SCHED_DETOKENIZE,
};

/* Where a job's text is in its tokenization (under s->mtx). */
enum sched_toks {
	SCHED_TOKS_INLINE = 0,	/* ids, or a short text: at admission */
	SCHED_TOKS_WAIT,	/* for the tokenizer thread */
	SCHED_TOKS_BUSY,	/* the tokenizer thread has it */
	SCHED_TOKS_DONE,	/* toks, n_toks and toks_rc are set */
};

/* A growable text buffer (grows by doubling, never per token). */
struct sched_text {
	char		*p;		/* [cap] bytes, len used */
	size_t		 len;
	size_t		 cap;
	bool		 failed;	/* an append ran out of memory */
};

/* One run of same-channel text of the token being emitted. */
struct sched_seg {
	bool		 thinking;	/* channel */
	size_t		 off;		/* in s->segtext */
	size_t		 len;
};

struct sched_slot {
	struct fwd_kv	*kv;		/* the cache: kv->n_past positions */
	int32_t		*tokens;	/* [n_ctx + 1]: [0, kv->n_past) are in
					 * the cache, then the ones to run */
	uint32_t	 n_tokens;	/* tokens known (>= kv->n_past) */
	bool		 valid;		/* the cache belongs to uid */
	uid_t		 uid;
	struct sched_job *job;		/* running here, or NULL */
	uint64_t	 last_use;	/* s->tick when last released */
};

struct sched_job {
	TAILQ_ENTRY(sched_job) entry;	/* in s->queue or s->active */
	struct sched	*s;
	struct sched_req *r;		/* the request, owned */
	uint64_t	 conn_id;
	uint64_t	 id;
	enum sched_kind	 kind;
	/* under s->mtx: */
	bool		 queued;	/* in s->queue (else s->active) */
	bool		 cancelled;	/* sched_cancel */
	bool		 dropped;	/* sched_drop_conn: post nothing */
	bool		 paused;	/* sched_pause_conn */
	enum sched_toks	 tstate;	/* tokenization of a long text */
	/* the tokenizer thread's while BUSY, then the scheduler's: */
	int32_t		*toks;		/* [min(n_toks, cap)] tokens */
	uint32_t	 n_toks;	/* tokens of the text (may be more than
					 * toks holds when toks_rc is
					 * -ENOBUFS) */
	int		 toks_rc;	/* tok_encode's result */
	/* scheduler thread only: */
	struct sched_slot *slot;	/* while running */
	uint32_t	 n_prompt;	/* prompt tokens (eval/embed: input) */
	uint32_t	 n_cached;	/* of which reused from the cache */
	uint32_t	 n_run;		/* eval/embed: tokens to run */
	uint32_t	 n_gen;		/* tokens sampled */
	uint32_t	 max_tokens;	/* clamped */
	bool		 stream;	/* token events, else text in done */
	uint32_t	 top_logprobs;	/* alternatives per token */
	struct smp	*smp;		/* sampler (prompt + generated seen) */
	struct tok_stream tks;		/* UTF-8-safe pieces */
	struct tstream	 txt;		/* thinking split, stop strings */
	double		 prefill_ms;
	double		 decode_ms;
	struct sched_text text;		/* !stream: the answer */
	struct sched_text thinking;	/* !stream: the thinking text */
	int32_t		 top_ids[PROTO_MAX_TOP];	/* this token's */
	float		 top_lp[PROTO_MAX_TOP];
	float		 logprob;	/* of the sampled token */
	uint32_t	 top;		/* eval: alternatives per position */
	float		*eval_lp;	/* eval: [n_prompt - 1] */
	int32_t		*eval_ids;	/* eval: [(n_prompt - 1) * top] */
	float		*eval_top;	/* eval: [(n_prompt - 1) * top] */
	float		*embd;		/* embed: [n_embd] sum, then result */
};

TAILQ_HEAD(sched_jobs, sched_job);

#define SCHED_SERVED_MAX 64	/* users whose last admission is kept */

/* When a user's request was last admitted (round robin). */
struct sched_served {
	uid_t		 uid;
	uint64_t	 tick;		/* s->admit_tick then */
};

struct sched {
	struct model	*m;
	const struct tok *tok;
	struct sched_params p;
	sched_post_fn	 post;
	void		*post_arg;
	uint32_t	 n_vocab;
	uint32_t	 n_embd;
	uint32_t	 n_logits_max;	/* logits rows per step */
	pthread_t	 thread;
	bool		 thread_started;
	pthread_t	 tthread;	/* the tokenizer thread */
	bool		 tthread_started;
	pthread_mutex_t	 mtx;
	pthread_cond_t	 cond;		/* for the scheduler thread */
	pthread_cond_t	 tcond;		/* for the tokenizer thread */

	/* under mtx: */
	bool		 stop;		/* sched_free: exit, post nothing */
	struct sched_jobs queue;	/* waiting for admission, FIFO */
	uint32_t	 n_queued;
	struct sched_jobs active;	/* admitted, in admission order */
	uint32_t	 n_running;	/* active jobs holding a slot */
	uint64_t	*paused;	/* [n_paused] paused connections */
	size_t		 n_paused;
	size_t		 paused_cap;
	struct sched_stats st;		/* counters (running, queued and
					 * clients computed on demand) */
	struct sched_served served[SCHED_SERVED_MAX]; /* [n_served] */
	uint32_t	 n_served;
	uint64_t	 admit_tick;	/* admissions so far */

	/* scheduler thread only: */
	struct fwd	*f;
	struct sched_slot *slots;	/* [n_parallel] */
	struct fwd_seq	*seqs;		/* [n_parallel] one batch */
	struct sched_job **batch;	/* [n_parallel] job of each seq */
	bool		*decoding;	/* [n_parallel] seq was a decode */
	int32_t		*scratch;	/* [n_ctx + 1] prompt tokens */
	char		*piece;		/* [piece_cap] one token's text */
	size_t		 piece_cap;
	struct sched_text segtext;	/* the text of one token's events */
	struct sched_seg *segs;		/* [seg_cap] its channel runs */
	size_t		 n_segs;
	size_t		 seg_cap;
	struct proto_buf out;		/* the frame being posted */
	uint64_t	 tick;		/* LRU clock */
	uint64_t	 scratch_bytes;	/* forward pass and scheduler */
	uint64_t	 smp_bytes;	/* one request's sampler */
};

static double
sched_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void
sched_req_free(struct sched_req *r)
{
	if (r == NULL)
		return;
	free(r->prompt);
	proto_request_free(&r->req);
	free(r);
}

void
sched_params_default(struct sched_params *p, const struct model *m)
{
	memset(p, 0, sizeof(*p));
	p->n_parallel = 4;
	p->n_ctx = 4096;
	if (m != NULL && m->hp.n_ctx_train > 0 && m->hp.n_ctx_train < 4096)
		p->n_ctx = m->hp.n_ctx_train;
	p->n_batch = 512;
	p->prefill_chunk = 128;
	p->max_queue = 64;
	p->tok_async_min = SCHED_TOK_ASYNC_MIN;
	smp_params_default(&p->sampling);
	proto_limits_default(&p->limits);
}

/* ---- text buffers -------------------------------------------------- */

static int
sched_text_reserve(struct sched_text *t, size_t need)
{
	size_t n = t->cap;
	char *p;

	if (need <= n)
		return 0;
	while (n < need)
		n = n < 256 ? 256 : n * 2;
	if ((p = realloc(t->p, n)) == NULL) {
		t->failed = true;
		return -ENOMEM;
	}
	t->p = p;
	t->cap = n;
	return 0;
}

static int
sched_text_add(struct sched_text *t, const char *p, size_t len)
{
	if (t->failed || sched_text_reserve(t, t->len + len) < 0)
		return -ENOMEM;
	memcpy(t->p + t->len, p, len);
	t->len += len;
	return 0;
}

static void
sched_text_free(struct sched_text *t)
{
	free(t->p);
	memset(t, 0, sizeof(*t));
}

/* ---- jobs and posting ---------------------------------------------- */

static void
sched_job_free(struct sched_job *j)
{
	if (j == NULL)
		return;
	smp_free(j->smp);
	tstream_free(&j->txt);
	sched_text_free(&j->text);
	sched_text_free(&j->thinking);
	free(j->eval_lp);
	free(j->eval_ids);
	free(j->eval_top);
	free(j->embd);
	free(j->toks);
	sched_req_free(j->r);
	free(j);
}

static bool
sched_conn_paused(const struct sched *s, uint64_t conn_id)
{
	size_t i;

	for (i = 0; i < s->n_paused; i++)
		if (s->paused[i] == conn_id)
			return true;
	return false;
}

/*
 * Give a slot back. Its cache stays for the uid (the last token sampled
 * was never run, so the cache is what kv holds) unless forget is set.
 */
static void
sched_slot_release(struct sched *s, struct sched_job *j, bool forget)
{
	struct sched_slot *sl = j->slot;

	if (sl == NULL)
		return;
	sl->job = NULL;
	sl->last_use = ++s->tick;
	if (forget) {
		fwd_kv_truncate(sl->kv, 0);
		sl->valid = false;
	}
	sl->n_tokens = sl->kv->n_past;
	j->slot = NULL;
}

/*
 * Take j off its list (lock held). The caller then frees it: no other
 * thread can reach it any more.
 */
static void
sched_unlink_locked(struct sched *s, struct sched_job *j)
{
	if (j->queued) {
		TAILQ_REMOVE(&s->queue, j, entry);
		s->n_queued--;
	} else {
		TAILQ_REMOVE(&s->active, j, entry);
		if (j->slot != NULL)
			s->n_running--;
	}
}

/* Post s->out for j, with the lock held; final ends j (unlinked). */
static void
sched_post_locked(struct sched *s, struct sched_job *j, bool final)
{
	if (!j->dropped && !s->stop && s->out.len > 0)
		s->post(s->post_arg, j->conn_id, j->id, s->out.data,
		    s->out.len, final);
	s->out.len = 0;
	if (final) {
		sched_unlink_locked(s, j);
		s->st.requests++;
	}
}

/* Post s->out for j: one more frame, not the last. */
static void
sched_post(struct sched *s, struct sched_job *j)
{
	pthread_mutex_lock(&s->mtx);
	sched_post_locked(s, j, false);
	pthread_mutex_unlock(&s->mtx);
}

/*
 * Post s->out as j's final frame: j is over; its slot is released
 * (forget: its cache too) and j freed.
 */
static void
sched_finish(struct sched *s, struct sched_job *j, bool forget)
{
	pthread_mutex_lock(&s->mtx);
	sched_post_locked(s, j, true);
	pthread_mutex_unlock(&s->mtx);
	sched_slot_release(s, j, forget);
	sched_job_free(j);
}

/* Pack an error frame for j into s->out (reserved: cannot fail). */
static void
sched_pack_error(struct sched *s, struct sched_job *j, enum proto_code code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
sched_pack_error(struct sched *s, struct sched_job *j, enum proto_code code,
    const char *fmt, ...)
{
	char msg[PROTO_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->out.len = 0;
	(void)proto_pack_error(&s->out, j->id, code, msg);
}

/* End j with an error frame (its slot's cache forgotten). */
static void
sched_fail(struct sched *s, struct sched_job *j, enum proto_code code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
sched_fail(struct sched *s, struct sched_job *j, enum proto_code code,
    const char *fmt, ...)
{
	char msg[PROTO_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sched_pack_error(s, j, code, "%s", msg);
	sched_finish(s, j, true);
}

/*
 * Pack a response for j; on failure pack the error instead and return
 * -1 (the caller must then end j with it).
 */
static int
sched_pack(struct sched *s, struct sched_job *j, const struct proto_response *r)
{
	struct proto_err e;
	int rc;

	s->out.len = 0;
	memset(&e, 0, sizeof(e));
	if ((rc = proto_pack_response(&s->out, r, &s->p.limits, &e)) < 0) {
		if (e.code == PROTO_E_NONE)
			e.code = rc == -ENOMEM ? PROTO_E_INTERNAL :
			    PROTO_E_TOO_LARGE;
		sched_pack_error(s, j, e.code, "%s", e.msg[0] != '\0' ? e.msg :
		    rc == -ENOMEM ? "out of memory" : "reply over a limit");
		return -1;
	}
	return 0;
}

/* Pack the done event of a generation (or a cancelled job). */
static void
sched_pack_done(struct sched *s, struct sched_job *j, enum proto_reason why)
{
	struct proto_response r;
	struct proto_done *d = &r.u.done;

	proto_response_init(&r, PROTO_MSG_DONE, j->id);
	d->reason = why;
	d->prompt_tokens = j->n_prompt;
	d->cached_tokens = j->n_cached;
	d->generated_tokens = j->n_gen;
	d->prefill_ms = j->prefill_ms;
	d->decode_ms = j->decode_ms;
	if (j->kind == SCHED_GEN && !j->stream) {
		if (j->text.failed || j->thinking.failed) {
			sched_pack_error(s, j, PROTO_E_INTERNAL,
			    "out of memory for the text");
			return;
		}
		d->text = j->text.p != NULL ? j->text.p : "";
		d->text_len = j->text.len;
		if (j->txt.close != NULL) {
			d->thinking = j->thinking.p != NULL ?
			    j->thinking.p : "";
			d->thinking_len = j->thinking.len;
		}
	}
	(void)sched_pack(s, j, &r);
}

/* ---- control: cancelled and dropped jobs (lock held) --------------- */

static void
sched_control_locked(struct sched *s)
{
	struct sched_job *j, *tmp;
	struct sched_jobs done;

	TAILQ_INIT(&done);
	TAILQ_FOREACH_SAFE(j, &s->queue, entry, tmp) {
		if (j->tstate == SCHED_TOKS_BUSY)
			continue;	/* the tokenizer thread reads it */
		if (j->dropped) {
			sched_unlink_locked(s, j);
			TAILQ_INSERT_TAIL(&done, j, entry);
		} else if (j->cancelled) {
			sched_pack_done(s, j, PROTO_REASON_CANCELLED);
			sched_post_locked(s, j, true);
			TAILQ_INSERT_TAIL(&done, j, entry);
		}
	}
	TAILQ_FOREACH_SAFE(j, &s->active, entry, tmp) {
		if (j->dropped) {
			sched_unlink_locked(s, j);
			sched_slot_release(s, j, true);
			TAILQ_INSERT_TAIL(&done, j, entry);
		} else if (j->cancelled) {
			sched_pack_done(s, j, PROTO_REASON_CANCELLED);
			sched_post_locked(s, j, true);
			sched_slot_release(s, j, false);
			TAILQ_INSERT_TAIL(&done, j, entry);
		}
	}
	while ((j = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, j, entry);
		sched_job_free(j);
	}
}

/* ---- admission ------------------------------------------------------ */

/* When uid was last admitted; 0: not lately. Lock held. */
static uint64_t
sched_served_tick(const struct sched *s, uid_t uid)
{
	uint32_t i;

	for (i = 0; i < s->n_served; i++)
		if (s->served[i].uid == uid)
			return s->served[i].tick;
	return 0;
}

/* Remember that uid was admitted now (forgetting the oldest). */
static void
sched_served_note(struct sched *s, uid_t uid)
{
	uint32_t i, old = 0;

	s->admit_tick++;
	for (i = 0; i < s->n_served; i++) {
		if (s->served[i].uid == uid)
			break;
		if (s->served[i].tick < s->served[old].tick)
			old = i;
	}
	if (i == s->n_served) {
		if (s->n_served < SCHED_SERVED_MAX)
			s->n_served++;
		else
			i = old;
	}
	s->served[i].uid = uid;
	s->served[i].tick = s->admit_tick;
}

/* j's tokens are ready, or made at admission (lock held). */
static bool
sched_toks_ready(const struct sched_job *j)
{
	return j->tstate == SCHED_TOKS_INLINE || j->tstate == SCHED_TOKS_DONE;
}

/*
 * The admission policy, lock held: the next queued job to start, or
 * NULL. Tokenize and detokenize need no slot and go first; the others
 * are taken while a slot is free, round robin across users: the job of
 * the uid with the fewest jobs admitted, then of the uid served least
 * recently, the oldest among equals. One user's batch cannot starve
 * another's chat.
 */
static struct sched_job *
sched_pick_locked(struct sched *s, bool slot_free)
{
	struct sched_job *j, *k, *best = NULL;
	uint64_t t, best_t = 0;
	uint32_t n, best_n = UINT32_MAX;

	TAILQ_FOREACH(j, &s->queue, entry)
		if (!j->cancelled && !j->dropped && sched_toks_ready(j) &&
		    (j->kind == SCHED_TOKENIZE || j->kind == SCHED_DETOKENIZE))
			return j;
	if (!slot_free)
		return NULL;
	TAILQ_FOREACH(j, &s->queue, entry) {
		if (j->cancelled || j->dropped || !sched_toks_ready(j))
			continue;
		n = 0;
		TAILQ_FOREACH(k, &s->active, entry)
			if (k->r->uid == j->r->uid)
				n++;
		t = sched_served_tick(s, j->r->uid);
		if (n < best_n || (n == best_n && t < best_t)) {
			best = j;
			best_n = n;
			best_t = t;
		}
	}
	if (best != NULL)
		sched_served_note(s, best->r->uid);	/* it is admitted */
	return best;
}

/*
 * The free slot for a new sequence of uid: the one of the same uid whose
 * cache shares the longest prefix with toks[0..n) (reuse at most n - 1
 * tokens: the last is always run, for its logits), else the least
 * recently used. *reuse: tokens kept. NULL when all are busy.
 */
static struct sched_slot *
sched_slot_pick(struct sched *s, uid_t uid, const int32_t *toks, uint32_t n,
    uint32_t *reuse)
{
	struct sched_slot *sl, *best = NULL, *lru = NULL;
	uint32_t i, c, best_c = 0, k;

	for (i = 0; i < s->p.n_parallel; i++) {
		sl = &s->slots[i];
		if (sl->job != NULL)
			continue;
		if (lru == NULL || sl->last_use < lru->last_use)
			lru = sl;
		if (toks == NULL || !sl->valid || sl->uid != uid)
			continue;
		k = sl->kv->n_past < n ? sl->kv->n_past : n;
		for (c = 0; c < k && sl->tokens[c] == toks[c]; c++)
			;
		if (c + 1 > n)
			c = n - 1;
		if (c > best_c) {
			best = sl;
			best_c = c;
		}
	}
	if (best != NULL) {
		*reuse = best_c;
		return best;
	}
	*reuse = 0;
	return lru;
}

/* Put j's n tokens (in s->scratch) into sl, keeping reuse of its cache. */
static void
sched_slot_take(struct sched *s, struct sched_job *j, struct sched_slot *sl,
    uint32_t n, uint32_t reuse)
{
	if (!sl->valid || sl->uid != j->r->uid)
		reuse = 0;
	fwd_kv_truncate(sl->kv, reuse);
	memcpy(sl->tokens, s->scratch, (size_t)n * sizeof(*sl->tokens));
	sl->n_tokens = n;
	sl->uid = j->r->uid;
	sl->valid = true;
	sl->job = j;
	j->slot = sl;
	j->n_cached = reuse;
	pthread_mutex_lock(&s->mtx);
	s->n_running++;
	s->st.prompt_tokens += n - reuse;
	s->st.cached_tokens += reuse;
	pthread_mutex_unlock(&s->mtx);
}

/*
 * Tokenize text (or copy ids, or the tokens the tokenizer thread made of
 * j's text) into s->scratch, at most max tokens (<= n_ctx + 1). *n: the
 * count (the needed count on -ENOBUFS). Ids are checked against the
 * vocabulary (-EDOM).
 */
static int
sched_tokens(struct sched *s, const struct sched_job *j, const char *text,
    size_t text_len, const int32_t *ids, uint32_t n_ids, bool add_special,
    bool parse_special, uint32_t max, uint32_t *n)
{
	size_t got = 0;
	uint32_t i;
	int r;

	if (j->tstate == SCHED_TOKS_DONE) {
		*n = j->n_toks;
		if (j->toks_rc < 0 && j->toks_rc != -ENOBUFS)
			return j->toks_rc;
		if (j->n_toks > max)
			return -ENOBUFS;
		if (j->n_toks > 0)
			memcpy(s->scratch, j->toks,
			    (size_t)j->n_toks * sizeof(*j->toks));
		return 0;
	}
	if (text == NULL) {
		*n = n_ids;
		if (n_ids > max)
			return -ENOBUFS;
		for (i = 0; i < n_ids; i++)
			if (ids[i] < 0 || (uint32_t)ids[i] >= s->n_vocab)
				return -EDOM;
		if (n_ids > 0)
			memcpy(s->scratch, ids, (size_t)n_ids * sizeof(*ids));
		return 0;
	}
	r = tok_encode(s->tok, text, text_len, add_special, parse_special,
	    s->scratch, max, &got);
	*n = got > UINT32_MAX ? UINT32_MAX : (uint32_t)got;
	return r;
}

/* Report a failure of sched_tokens for j. */
static void
sched_tokens_fail(struct sched *s, struct sched_job *j, int r, uint32_t n,
    const char *what, uint32_t room)
{
	if (r == -ENOBUFS)
		sched_fail(s, j, PROTO_E_TOO_LARGE,
		    "%s of %u tokens exceeds the context of %u", what, n, room);
	else if (r == -EDOM)
		sched_fail(s, j, PROTO_E_BAD_REQUEST,
		    "%s: token id out of the vocabulary of %u", what,
		    s->n_vocab);
	else if (r == -EINVAL)
		sched_fail(s, j, PROTO_E_BAD_REQUEST,
		    "%s: text the tokenizer cannot take (not UTF-8?)", what);
	else if (r == -ENOMEM)
		sched_fail(s, j, PROTO_E_INTERNAL, "%s: out of memory", what);
	else
		sched_fail(s, j, PROTO_E_INTERNAL, "%s: tokenizer error %d",
		    what, r);
}

static const struct proto_gen_opts *
sched_gen_opts(const struct sched_req *r)
{
	return r->req.type == PROTO_MSG_CHAT ? &r->req.u.chat.opts :
	    &r->req.u.generate.opts;
}

static void
sched_start_gen(struct sched *s, struct sched_job *j)
{
	const struct sched_req *r = j->r;
	const struct proto_gen_opts *o = sched_gen_opts(r);
	const struct proto_input *in = &r->req.u.generate.input;
	struct sched_slot *sl;
	uint32_t n = 0, reuse, i, room = s->p.n_ctx - 1;
	int rc;

	if (r->req.type == PROTO_MSG_CHAT)
		rc = sched_tokens(s, j, r->prompt, r->prompt_len, NULL, 0,
		    false, true, room, &n);
	else
		rc = sched_tokens(s, j, in->text, in->text_len, in->ids,
		    in->n_ids, true, false, room, &n);
	if (rc < 0) {
		sched_tokens_fail(s, j, rc, n, "prompt", s->p.n_ctx);
		return;
	}
	if (n == 0) {
		sched_fail(s, j, PROTO_E_BAD_REQUEST, "empty prompt");
		return;
	}
	if (r->max_prompt_tokens != 0 && n > r->max_prompt_tokens) {
		sched_fail(s, j, PROTO_E_DENIED, "%s: the prompt has %u tokens, "
		    "over max_prompt_tokens %u", r->limit_rule[0] ?
		    r->limit_rule : "denied", n, r->max_prompt_tokens);
		return;
	}
	j->n_prompt = n;
	j->max_tokens = s->p.n_ctx - n;
	if (r->max_tokens >= 0 && (uint32_t)r->max_tokens < j->max_tokens)
		j->max_tokens = (uint32_t)r->max_tokens;
	j->top_logprobs = o->top_logprobs < s->n_vocab ? o->top_logprobs :
	    s->n_vocab;
	if (j->top_logprobs > PROTO_MAX_TOP)
		j->top_logprobs = PROTO_MAX_TOP;
	if ((rc = smp_new(&r->sampling, (int32_t)s->n_vocab, &j->smp)) < 0) {
		if (rc == -EINVAL)
			sched_fail(s, j, PROTO_E_BAD_REQUEST,
			    "sampling parameters out of range");
		else
			sched_fail(s, j, PROTO_E_INTERNAL, "out of memory");
		return;
	}
	rc = tstream_init(&j->txt, r->think_open, r->think_close,
	    r->think_first, (const char *const *)o->stop, o->n_stop,
	    s->piece_cap);
	if (rc == 0 && !j->stream &&
	    (sched_text_reserve(&j->text, 256) < 0 ||
	    (r->think_close != NULL &&
	    sched_text_reserve(&j->thinking, 256) < 0)))
		rc = -ENOMEM;
	if (rc < 0) {
		sched_fail(s, j, rc == -ENOMEM ? PROTO_E_INTERNAL :
		    PROTO_E_BAD_REQUEST, "%s", rc == -ENOMEM ?
		    "out of memory" : "bad stop strings");
		return;
	}
	tok_stream_init(&j->tks);
	j->tks.first = false;	/* a continuation: keep its leading space */
	if (j->max_tokens == 0) {	/* nothing to run */
		sched_pack_done(s, j, PROTO_REASON_MAX_TOKENS);
		sched_finish(s, j, false);
		return;
	}
	sl = sched_slot_pick(s, r->uid, s->scratch, n, &reuse);
	if (sl == NULL) {	/* cannot happen: admitted with a free slot */
		sched_fail(s, j, PROTO_E_INTERNAL, "no free slot");
		return;
	}
	sched_slot_take(s, j, sl, n, reuse);
	for (i = 0; i < n; i++)
		smp_accept(j->smp, s->scratch[i]);
}

static void
sched_reply_eval(struct sched *s, struct sched_job *j, const int32_t *toks)
{
	struct proto_response r;
	struct proto_eval_reply *e = &r.u.eval;

	proto_response_init(&r, PROTO_MSG_REPLY, j->id);
	r.request = PROTO_MSG_EVAL;
	e->tokens = toks;
	e->n_tokens = j->n_prompt;
	e->logprobs = j->eval_lp;
	e->top = j->top;
	e->top_ids = j->eval_ids;
	e->top_logprobs = j->eval_top;
	(void)sched_pack(s, j, &r);
	sched_finish(s, j, false);
}

static void
sched_start_eval(struct sched *s, struct sched_job *j)
{
	const struct proto_eval *ev = &j->r->req.u.eval;
	struct sched_slot *sl;
	uint32_t n = 0, reuse, top;
	size_t np;
	int rc;

	rc = sched_tokens(s, j, ev->input.text, ev->input.text_len,
	    ev->input.ids, ev->input.n_ids, ev->add_bos, false,
	    s->p.n_ctx + 1, &n);
	if (rc < 0) {
		sched_tokens_fail(s, j, rc, n, "eval input", s->p.n_ctx);
		return;
	}
	top = ev->top < s->n_vocab ? ev->top : s->n_vocab;
	if (top > PROTO_MAX_TOP)
		top = PROTO_MAX_TOP;
	j->n_prompt = n;
	j->top = top;
	if (n <= 1) {		/* nothing to score */
		sched_reply_eval(s, j, s->scratch);
		return;
	}
	np = n - 1;
	j->n_run = n - 1;
	if ((j->eval_lp = calloc(np, sizeof(float))) == NULL ||
	    (top > 0 && ((j->eval_ids = calloc(np * top,
	    sizeof(int32_t))) == NULL || (j->eval_top = calloc(np * top,
	    sizeof(float))) == NULL))) {
		sched_fail(s, j, PROTO_E_INTERNAL, "out of memory");
		return;
	}
	sl = sched_slot_pick(s, j->r->uid, NULL, 0, &reuse);
	if (sl == NULL) {
		sched_fail(s, j, PROTO_E_INTERNAL, "no free slot");
		return;
	}
	sched_slot_take(s, j, sl, n, 0);
}

static void
sched_start_embed(struct sched *s, struct sched_job *j)
{
	const struct proto_embed *em = &j->r->req.u.embed;
	struct sched_slot *sl;
	uint32_t n = 0, reuse;
	int rc;

	rc = sched_tokens(s, j, em->input.text, em->input.text_len,
	    em->input.ids, em->input.n_ids, true, false, s->p.n_ctx, &n);
	if (rc < 0) {
		sched_tokens_fail(s, j, rc, n, "embed input", s->p.n_ctx);
		return;
	}
	if (n == 0) {
		sched_fail(s, j, PROTO_E_BAD_REQUEST, "nothing to embed");
		return;
	}
	if (s->n_embd > PROTO_MAX_EMBD) {
		sched_fail(s, j, PROTO_E_MODEL_ERROR, "embedding of %u "
		    "dimensions is over the protocol's %u", s->n_embd,
		    PROTO_MAX_EMBD);
		return;
	}
	j->n_prompt = n;
	j->n_run = n;
	if ((j->embd = calloc(s->n_embd, sizeof(float))) == NULL) {
		sched_fail(s, j, PROTO_E_INTERNAL, "out of memory");
		return;
	}
	sl = sched_slot_pick(s, j->r->uid, NULL, 0, &reuse);
	if (sl == NULL) {
		sched_fail(s, j, PROTO_E_INTERNAL, "no free slot");
		return;
	}
	sched_slot_take(s, j, sl, n, 0);
}

static void
sched_do_tokenize(struct sched *s, struct sched_job *j)
{
	const struct proto_tokenize *tq = &j->r->req.u.tokenize;
	struct proto_response r;
	int32_t *ids = s->scratch, *big = NULL;
	size_t n = 0;
	int rc;

	if (j->tstate == SCHED_TOKS_DONE) {
		/* the tokenizer thread's, all of them unless too many */
		ids = j->toks;
		n = j->n_toks;
		rc = j->toks_rc;
		if (rc == -ENOBUFS) {
			sched_fail(s, j, PROTO_E_TOO_LARGE, "%zu tokens, over "
			    "the limit of %u", n, s->p.limits.max_ids);
			return;
		}
	} else
		rc = tok_encode(s->tok, tq->text, tq->text_len, tq->add_bos,
		    tq->special, ids, s->p.n_ctx + 1, &n);
	if (rc == -ENOBUFS) {
		if (n > s->p.limits.max_ids) {
			sched_fail(s, j, PROTO_E_TOO_LARGE, "%zu tokens, over "
			    "the limit of %u", n, s->p.limits.max_ids);
			return;
		}
		if ((big = malloc(n * sizeof(*big))) == NULL) {
			sched_fail(s, j, PROTO_E_INTERNAL, "out of memory");
			return;
		}
		ids = big;
		rc = tok_encode(s->tok, tq->text, tq->text_len, tq->add_bos,
		    tq->special, ids, n, &n);
	}
	if (rc < 0) {
		free(big);
		sched_tokens_fail(s, j, rc, (uint32_t)n, "tokenize", 0);
		return;
	}
	proto_response_init(&r, PROTO_MSG_REPLY, j->id);
	r.request = PROTO_MSG_TOKENIZE;
	r.u.tokenize.ids = ids;
	r.u.tokenize.n_ids = (uint32_t)n;
	(void)sched_pack(s, j, &r);
	free(big);
	sched_finish(s, j, false);
}

static void
sched_do_detokenize(struct sched *s, struct sched_job *j)
{
	const struct proto_detokenize *dq = &j->r->req.u.detokenize;
	struct proto_response r;
	struct tok_stream ts;
	char *text = NULL;
	size_t cap, len = 0;
	uint32_t i;
	int rc;

	for (i = 0; i < dq->n_ids; i++)
		if (dq->ids[i] < 0 || (uint32_t)dq->ids[i] >= s->n_vocab) {
			sched_fail(s, j, PROTO_E_BAD_REQUEST, "token id %d out "
			    "of the vocabulary of %u", dq->ids[i], s->n_vocab);
			return;
		}
	rc = tok_decode(s->tok, dq->ids, dq->n_ids, dq->special, true, NULL,
	    0);
	if (rc < 0)
		goto fail;
	if ((size_t)rc > s->p.limits.max_text) {
		sched_fail(s, j, PROTO_E_TOO_LARGE, "text of %d bytes, over "
		    "the limit of %u", rc, s->p.limits.max_text);
		return;
	}
	/* valid UTF-8 through the stream decoder: at most 3x the bytes */
	cap = (size_t)rc * 3 + 16;
	if ((text = malloc(cap)) == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	tok_stream_init(&ts);
	for (i = 0; i < dq->n_ids; i++) {
		rc = tok_stream_push(s->tok, &ts, dq->ids[i], dq->special,
		    text + len, cap - len);
		if (rc < 0)
			goto fail;
		len += (size_t)rc;
	}
	if ((rc = tok_stream_flush(&ts, text + len, cap - len)) < 0)
		goto fail;
	len += (size_t)rc;
	proto_response_init(&r, PROTO_MSG_REPLY, j->id);
	r.request = PROTO_MSG_DETOKENIZE;
	r.u.detokenize.text = text;
	r.u.detokenize.text_len = len;
	(void)sched_pack(s, j, &r);
	free(text);
	sched_finish(s, j, false);
	return;
fail:
	free(text);
	sched_fail(s, j, rc == -ENOMEM ? PROTO_E_INTERNAL : PROTO_E_BAD_REQUEST,
	    "detokenize: %s", rc == -ENOMEM ? "out of memory" : "bad ids");
}

static void
sched_start(struct sched *s, struct sched_job *j)
{
	switch (j->kind) {
	case SCHED_GEN:
		sched_start_gen(s, j);
		break;
	case SCHED_EVAL:
		sched_start_eval(s, j);
		break;
	case SCHED_EMBED:
		sched_start_embed(s, j);
		break;
	case SCHED_TOKENIZE:
		sched_do_tokenize(s, j);
		break;
	case SCHED_DETOKENIZE:
		sched_do_detokenize(s, j);
		break;
	}
}

static bool
sched_slot_free(const struct sched *s)
{
	uint32_t i;

	for (i = 0; i < s->p.n_parallel; i++)
		if (s->slots[i].job == NULL)
			return true;
	return false;
}

/*
 * Start what can start (lock held on entry and exit; dropped around the
 * work). Returns true when it left work behind to bound the time spent
 * before the next step.
 */
static bool
sched_admit_locked(struct sched *s)
{
	struct sched_job *j;
	uint32_t budget = s->p.max_queue + s->p.n_parallel;

	while (!s->stop) {
		if (budget-- == 0)
			return true;
		if ((j = sched_pick_locked(s, sched_slot_free(s))) == NULL)
			return false;
		TAILQ_REMOVE(&s->queue, j, entry);
		s->n_queued--;
		j->queued = false;
		TAILQ_INSERT_TAIL(&s->active, j, entry);
		pthread_mutex_unlock(&s->mtx);
		sched_start(s, j);
		pthread_mutex_lock(&s->mtx);
	}
	return false;
}

/* ---- the step -------------------------------------------------------- */

/* The tokens j still has to run before its next logits. */
static uint32_t
sched_todo(const struct sched_job *j)
{
	const struct sched_slot *sl = j->slot;

	if (j->kind == SCHED_GEN)
		return sl->n_tokens - sl->kv->n_past;
	return j->n_run - sl->kv->n_past;
}

/* Build the next batch (lock held, for the paused flags). */
static size_t
sched_build_locked(struct sched *s)
{
	struct sched_job *j;
	struct fwd_seq *q;
	size_t n_seq = 0;
	uint32_t n_tok = 0, rows = 0, lim, c, todo;

	/* every decoding sequence's one token first: streams never stall */
	TAILQ_FOREACH(j, &s->active, entry) {
		if (j->slot == NULL || j->paused || j->cancelled ||
		    j->kind != SCHED_GEN || j->n_gen == 0)
			continue;
		q = &s->seqs[n_seq];
		memset(q, 0, sizeof(*q));
		q->kv = j->slot->kv;
		q->tokens = j->slot->tokens + j->slot->kv->n_past;
		q->n = 1;
		s->batch[n_seq] = j;
		s->decoding[n_seq] = true;
		n_seq++;
		n_tok++;
		rows++;
	}
	/* then prompt chunks, in admission order */
	lim = n_seq > 0 ? s->p.prefill_chunk : s->p.n_batch;
	TAILQ_FOREACH(j, &s->active, entry) {
		if (j->slot == NULL || j->paused || j->cancelled ||
		    (j->kind == SCHED_GEN && j->n_gen > 0))
			continue;
		if (n_tok >= s->p.n_batch || rows >= s->n_logits_max)
			break;
		todo = sched_todo(j);
		c = todo < lim ? todo : lim;
		if (c > s->p.n_batch - n_tok)
			c = s->p.n_batch - n_tok;
		if (j->kind == SCHED_EVAL && c > s->n_logits_max - rows)
			c = s->n_logits_max - rows;
		if (c == 0)
			continue;
		q = &s->seqs[n_seq];
		memset(q, 0, sizeof(*q));
		q->kv = j->slot->kv;
		q->tokens = j->slot->tokens + j->slot->kv->n_past;
		q->n = c;
		q->all_logits = j->kind == SCHED_EVAL;
		q->embd = j->kind == SCHED_EMBED ? j->embd : NULL;
		s->batch[n_seq] = j;
		s->decoding[n_seq] = false;
		n_seq++;
		n_tok += c;
		rows += j->kind == SCHED_EVAL ? c : 1;
	}
	return n_seq;
}

/* log(sum(exp(x))) over n values, in double. */
static double
sched_logsumexp(const float *x, size_t n)
{
	double mx = x[0], sum = 0;
	size_t i;

	for (i = 1; i < n; i++)
		if (x[i] > mx)
			mx = x[i];
	for (i = 0; i < n; i++)
		sum += exp((double)x[i] - mx);
	return mx + log(sum);
}

/*
 * The k largest of x[0..n) into ids/vals, best first (ties: lower id
 * first), as log-probabilities (minus lse).
 */
static void
sched_top(const float *x, size_t n, uint32_t k, double lse, int32_t *ids,
    float *vals)
{
	uint32_t have = 0, p;
	size_t i;

	if (k == 0)
		return;
	for (i = 0; i < n; i++) {
		if (have == k && !(x[i] > vals[k - 1]))
			continue;
		p = have < k ? have : k - 1;
		while (p > 0 && x[i] > vals[p - 1]) {
			vals[p] = vals[p - 1];
			ids[p] = ids[p - 1];
			p--;
		}
		vals[p] = x[i];
		ids[p] = (int32_t)i;
		if (have < k)
			have++;
	}
	for (p = 0; p < k; p++)
		vals[p] = (float)((double)vals[p] - lse);
}

/* Text out of j's text stream (see tstream_emit_fn). */
static void
sched_emit(void *arg, bool thinking, const char *p, size_t len)
{
	struct sched_job *j = arg;
	struct sched *s = j->s;
	struct sched_seg *g;
	size_t n;

	if (!j->stream) {
		(void)sched_text_add(thinking ? &j->thinking : &j->text, p,
		    len);
		return;
	}
	if (s->n_segs > 0 && s->segs[s->n_segs - 1].thinking == thinking) {
		if (sched_text_add(&s->segtext, p, len) == 0)
			s->segs[s->n_segs - 1].len += len;
		return;
	}
	if (s->n_segs == s->seg_cap) {
		n = s->seg_cap * 2;
		if ((g = realloc(s->segs, n * sizeof(*g))) == NULL) {
			s->segtext.failed = true;
			return;
		}
		s->segs = g;
		s->seg_cap = n;
	}
	if (sched_text_add(&s->segtext, p, len) < 0)
		return;
	g = &s->segs[s->n_segs++];
	g->thinking = thinking;
	g->off = s->segtext.len - len;
	g->len = len;
}

/*
 * Post one token event (text may be empty). False when it could not be
 * packed: j is then over (ended with the error).
 */
static bool
sched_post_token(struct sched *s, struct sched_job *j, int32_t tok,
    const char *text, size_t len, bool thinking, bool with_lp)
{
	struct proto_response r;
	struct proto_token *t = &r.u.token;

	proto_response_init(&r, PROTO_MSG_TOKEN, j->id);
	t->text = text;
	t->text_len = len;
	t->token = tok;
	t->thinking = thinking;
	if (with_lp && j->top_logprobs > 0) {
		t->has_logprob = true;
		t->logprob = j->logprob;
		t->top_ids = j->top_ids;
		t->top_logprobs = j->top_lp;
		t->n_top = j->top_logprobs;
	}
	if (sched_pack(s, j, &r) < 0) {
		sched_finish(s, j, true);
		return false;
	}
	sched_post(s, j);
	return true;
}

/*
 * The token events of one sampled token: one per channel run (normally
 * one), cut at PROTO_MAX_PIECE bytes on character boundaries; the first
 * carries the logprobs. A token with no text still gets one event.
 * False when j is over (an event could not be packed).
 */
static bool
sched_post_tokens(struct sched *s, struct sched_job *j, int32_t tok)
{
	const char *p;
	size_t i, left, cut;
	bool first = true;

	if (s->n_segs == 0)
		return sched_post_token(s, j, tok, "", 0,
		    tstream_thinking(&j->txt), true);
	for (i = 0; i < s->n_segs; i++) {
		p = s->segtext.p + s->segs[i].off;
		left = s->segs[i].len;
		while (left > 0) {
			cut = left;
			if (cut > PROTO_MAX_PIECE) {
				cut = PROTO_MAX_PIECE;
				while (cut > 0 && ((uint8_t)p[cut] & 0xc0) ==
				    0x80)
					cut--;
			}
			if (!sched_post_token(s, j, tok, p, cut,
			    s->segs[i].thinking, first))
				return false;
			first = false;
			p += cut;
			left -= cut;
		}
	}
	return true;
}

/*
 * Let go of all text held back at the end of a generation. Returns 1
 * when that completed a stop string.
 */
static int
sched_flush_text(struct sched *s, struct sched_job *j)
{
	int n, r = 0;

	n = tok_stream_flush(&j->tks, s->piece, s->piece_cap);
	if (n > 0)
		r = tstream_push(&j->txt, s->piece, (size_t)n, sched_emit, j);
	if (r == 0)
		r = tstream_flush(&j->txt, sched_emit, j);
	return r == 1 ? 1 : 0;
}

/* Sample j's next token from logits, emit it, maybe finish j. */
static void
sched_sample(struct sched *s, struct sched_job *j, const float *logits)
{
	struct sched_slot *sl = j->slot;
	enum proto_reason why = PROTO_REASON_NONE;
	double lse;
	int32_t t;
	int n, r;

	t = smp_sample(j->smp, logits);
	if (j->top_logprobs > 0) {
		lse = sched_logsumexp(logits, s->n_vocab);
		j->logprob = (float)((double)logits[t] - lse);
		sched_top(logits, s->n_vocab, j->top_logprobs, lse,
		    j->top_ids, j->top_lp);
	}
	j->n_gen++;
	sl->tokens[sl->n_tokens++] = t;
	smp_accept(j->smp, t);

	s->n_segs = 0;
	s->segtext.len = 0;
	if (tok_is_eog(s->tok, t)) {
		why = PROTO_REASON_EOS;
		if (sched_flush_text(s, j) == 1)
			why = PROTO_REASON_STOP;
	} else {
		n = tok_stream_push(s->tok, &j->tks, t, false, s->piece,
		    s->piece_cap);
		if (n < 0) {
			sched_fail(s, j, PROTO_E_INTERNAL,
			    "cannot decode token %d (%d)", t, n);
			return;
		}
		r = tstream_push(&j->txt, s->piece, (size_t)n, sched_emit, j);
		if (r < 0) {
			sched_fail(s, j, PROTO_E_INTERNAL, "out of memory");
			return;
		}
		if (r == 1)
			why = PROTO_REASON_STOP;
		else if (j->n_gen >= j->max_tokens) {
			why = PROTO_REASON_MAX_TOKENS;
			if (sched_flush_text(s, j) == 1)
				why = PROTO_REASON_STOP;
		}
	}
	if (s->segtext.failed) {
		s->segtext.failed = false;
		sched_fail(s, j, PROTO_E_INTERNAL, "out of memory");
		return;
	}
	if (j->stream && !sched_post_tokens(s, j, t))
		return;
	if (why != PROTO_REASON_NONE) {
		sched_pack_done(s, j, why);
		sched_finish(s, j, false);
	}
}

/* Score eval positions p0 .. p0+n-1 from logits rows row0 ... */
static void
sched_score(struct sched *s, struct sched_job *j, uint32_t p0, uint32_t n,
    uint32_t row0)
{
	const int32_t *toks = j->slot->tokens;
	const float *x;
	double lse;
	uint32_t i, p;

	for (i = 0; i < n; i++) {
		p = p0 + i;
		x = fwd_logits(s->f, row0 + i);
		lse = sched_logsumexp(x, s->n_vocab);
		j->eval_lp[p] = (float)((double)x[toks[p + 1]] - lse);
		if (j->top > 0)
			sched_top(x, s->n_vocab, j->top, lse,
			    j->eval_ids + (size_t)p * j->top,
			    j->eval_top + (size_t)p * j->top);
	}
}

static void
sched_reply_embed(struct sched *s, struct sched_job *j)
{
	struct proto_response r;
	double sum = 0;
	uint32_t i;

	for (i = 0; i < s->n_embd; i++) {
		j->embd[i] /= (float)j->n_run;
		sum += (double)j->embd[i] * j->embd[i];
	}
	if (sum > 0)
		for (i = 0; i < s->n_embd; i++)
			j->embd[i] = (float)(j->embd[i] / sqrt(sum));
	proto_response_init(&r, PROTO_MSG_REPLY, j->id);
	r.request = PROTO_MSG_EMBED;
	r.u.embed.embedding = j->embd;
	r.u.embed.n = s->n_embd;
	r.u.embed.tokens = j->n_run;
	(void)sched_pack(s, j, &r);
	sched_finish(s, j, false);
}

/* Run the batch of n sequences built by sched_build_locked (unlocked). */
static void
sched_step(struct sched *s, size_t n)
{
	struct eng_err err = { "" };
	struct sched_job *j;
	struct fwd_seq *q;
	uint64_t gen = 0;
	double t0, dt;
	size_t i;
	int rc;

	t0 = sched_now_ms();
	rc = fwd_eval_batch(s->f, s->seqs, n, &err);
	dt = sched_now_ms() - t0;
	if (rc < 0) {
		/* nothing changed; these sequences cannot go on */
		for (i = 0; i < n; i++)
			sched_fail(s, s->batch[i], PROTO_E_MODEL_ERROR, "%s",
			    err.msg);
		return;
	}
	for (i = 0; i < n; i++) {
		j = s->batch[i];
		q = &s->seqs[i];
		switch (j->kind) {
		case SCHED_GEN:
			if (s->decoding[i])
				j->decode_ms += dt;
			else
				j->prefill_ms += dt;
			if (j->slot->kv->n_past == j->slot->n_tokens) {
				gen++;
				sched_sample(s, j, fwd_logits(s->f,
				    q->logits_row));
			}
			break;
		case SCHED_EVAL:
			sched_score(s, j, j->slot->kv->n_past - q->n, q->n,
			    q->logits_row);
			if (j->slot->kv->n_past == j->n_run)
				sched_reply_eval(s, j, j->slot->tokens);
			break;
		case SCHED_EMBED:
			if (j->slot->kv->n_past == j->n_run)
				sched_reply_embed(s, j);
			break;
		default:
			break;
		}
	}
	pthread_mutex_lock(&s->mtx);
	s->st.generated_tokens += gen;
	pthread_mutex_unlock(&s->mtx);
}

/* ---- the tokenizer thread -------------------------------------------- */

/*
 * The text j tokenizes, how (add_special: BOS; parse_special: special
 * tokens' text): false when it has none (ids, detokenize).
 */
static bool
sched_job_text(const struct sched_job *j, const char **text, size_t *len,
    bool *add_special, bool *parse_special)
{
	const struct proto_request *q = &j->r->req;

	switch (q->type) {
	case PROTO_MSG_CHAT:
		*text = j->r->prompt;
		*len = j->r->prompt_len;
		*add_special = false;
		*parse_special = true;
		break;
	case PROTO_MSG_GENERATE:
		*text = q->u.generate.input.text;
		*len = q->u.generate.input.text_len;
		*add_special = true;
		*parse_special = false;
		break;
	case PROTO_MSG_EVAL:
		*text = q->u.eval.input.text;
		*len = q->u.eval.input.text_len;
		*add_special = q->u.eval.add_bos;
		*parse_special = false;
		break;
	case PROTO_MSG_EMBED:
		*text = q->u.embed.input.text;
		*len = q->u.embed.input.text_len;
		*add_special = true;
		*parse_special = false;
		break;
	case PROTO_MSG_TOKENIZE:
		*text = q->u.tokenize.text;
		*len = q->u.tokenize.text_len;
		*add_special = q->u.tokenize.add_bos;
		*parse_special = q->u.tokenize.special;
		break;
	default:
		return false;
	}
	return *text != NULL;
}

/*
 * Tokenize j's text (tokenizer thread, lock not held): up to n_ctx + 1
 * tokens, the count of all; a tokenize request gets all of them when
 * they are within the limit of ids.
 */
static void
sched_pretokenize(struct sched *s, struct sched_job *j)
{
	const char *text = NULL;
	size_t len = 0, n = 0, cap = (size_t)s->p.n_ctx + 1;
	bool add = false, parse = false;
	int32_t *toks, *t;
	int rc;

	(void)sched_job_text(j, &text, &len, &add, &parse);
	if ((toks = malloc(cap * sizeof(*toks))) == NULL) {
		j->toks_rc = -ENOMEM;
		return;
	}
	rc = tok_encode(s->tok, text, len, add, parse, toks, cap, &n);
	if (rc == -ENOBUFS && j->kind == SCHED_TOKENIZE &&
	    n <= s->p.limits.max_ids) {
		if ((t = realloc(toks, n * sizeof(*toks))) == NULL)
			rc = -ENOMEM;
		else {
			toks = t;
			rc = tok_encode(s->tok, text, len, add, parse, toks, n,
			    &n);
		}
	}
	j->toks = toks;
	j->n_toks = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
	j->toks_rc = rc;
}

/*
 * The tokenizer thread: the long texts of queued jobs, in arrival order
 * (the scheduler thread frees no job it has: see sched_control_locked).
 */
static void *
sched_tok_main(void *arg)
{
	struct sched *s = arg;
	struct sched_job *j;

	pthread_mutex_lock(&s->mtx);
	while (!s->stop) {
		TAILQ_FOREACH(j, &s->queue, entry)
			if (j->tstate == SCHED_TOKS_WAIT && !j->cancelled &&
			    !j->dropped)
				break;
		if (j == NULL) {
			pthread_cond_wait(&s->tcond, &s->mtx);
			continue;
		}
		j->tstate = SCHED_TOKS_BUSY;
		pthread_mutex_unlock(&s->mtx);
		sched_pretokenize(s, j);
		pthread_mutex_lock(&s->mtx);
		j->tstate = SCHED_TOKS_DONE;
		pthread_cond_signal(&s->cond);
	}
	pthread_mutex_unlock(&s->mtx);
	return NULL;
}

/* ---- the scheduler thread --------------------------------------------- */

static void *
sched_main(void *arg)
{
	struct sched *s = arg;
	bool more;
	size_t n;

	pthread_mutex_lock(&s->mtx);
	while (!s->stop) {
		sched_control_locked(s);
		more = sched_admit_locked(s);
		if (s->stop)
			break;
		sched_control_locked(s);
		n = sched_build_locked(s);
		if (n == 0) {
			if (!more)
				pthread_cond_wait(&s->cond, &s->mtx);
			continue;
		}
		pthread_mutex_unlock(&s->mtx);
		sched_step(s, n);
		pthread_mutex_lock(&s->mtx);
	}
	pthread_mutex_unlock(&s->mtx);
	return NULL;
}

/* ---- the loop thread's side ------------------------------------------ */

static void
sched_destroy(struct sched *s)
{
	struct sched_job *j;
	uint32_t i;

	while ((j = TAILQ_FIRST(&s->queue)) != NULL) {
		TAILQ_REMOVE(&s->queue, j, entry);
		sched_job_free(j);
	}
	while ((j = TAILQ_FIRST(&s->active)) != NULL) {
		TAILQ_REMOVE(&s->active, j, entry);
		sched_job_free(j);
	}
	if (s->slots != NULL)
		for (i = 0; i < s->p.n_parallel; i++) {
			fwd_kv_free(s->slots[i].kv);
			free(s->slots[i].tokens);
		}
	free(s->slots);
	fwd_free(s->f);
	free(s->seqs);
	free(s->batch);
	free(s->decoding);
	free(s->scratch);
	free(s->piece);
	sched_text_free(&s->segtext);
	free(s->segs);
	free(s->paused);
	proto_buf_free(&s->out);
	pthread_cond_destroy(&s->cond);
	pthread_cond_destroy(&s->tcond);
	pthread_mutex_destroy(&s->mtx);
	free(s);
}

/* Stop the threads that were started and wait for them. */
static void
sched_stop_threads(struct sched *s)
{
	pthread_mutex_lock(&s->mtx);
	s->stop = true;
	pthread_cond_signal(&s->cond);
	pthread_cond_signal(&s->tcond);
	pthread_mutex_unlock(&s->mtx);
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	if (s->tthread_started)
		pthread_join(s->tthread, NULL);
	s->thread_started = s->tthread_started = false;
}

int
sched_new(struct model *m, const struct sched_params *p, sched_post_fn post,
    void *arg, struct sched **out, struct eng_err *err)
{
	const struct model_hparams *hp;
	struct proto_err pe;
	struct sched *s;
	sigset_t all, old;
	size_t maxp = 0, kvd, qd;
	uint32_t i;
	int r, n;

	if (m == NULL || p == NULL || post == NULL || out == NULL)
		return err_set(err, -EINVAL, "sched_new: missing argument");
	hp = &m->hp;
	if (p->n_parallel == 0 || p->n_parallel > SCHED_MAX_PARALLEL)
		return err_set(err, -EINVAL, "n_parallel %u not in 1..%u",
		    p->n_parallel, SCHED_MAX_PARALLEL);
	if (p->n_ctx < 2)
		return err_set(err, -EINVAL, "n_ctx %u is less than 2",
		    p->n_ctx);
	if (p->n_batch < p->n_parallel)
		return err_set(err, -EINVAL, "n_batch %u is less than "
		    "n_parallel %u", p->n_batch, p->n_parallel);
	if (p->prefill_chunk == 0 || p->prefill_chunk > p->n_batch)
		return err_set(err, -EINVAL, "prefill_chunk %u not in 1..%u",
		    p->prefill_chunk, p->n_batch);
	if (p->max_queue == 0)
		return err_set(err, -EINVAL, "max_queue is 0");
	if (proto_limits_check(&p->limits, &pe) < 0)
		return err_set(err, -EINVAL, "limits: %s", pe.msg);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	s->m = m;
	s->tok = m->tok;
	s->p = *p;
	s->post = post;
	s->post_arg = arg;
	s->n_vocab = hp->n_vocab;
	s->n_embd = hp->n_embd;
	s->n_logits_max = p->n_parallel > SCHED_LOGITS_ROWS ? p->n_parallel :
	    SCHED_LOGITS_ROWS;
	if (s->n_logits_max > p->n_batch)
		s->n_logits_max = p->n_batch;
	TAILQ_INIT(&s->queue);
	TAILQ_INIT(&s->active);
	proto_buf_init(&s->out);
	pthread_mutex_init(&s->mtx, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_cond_init(&s->tcond, NULL);

	if ((r = fwd_new(m, p->n_batch, p->n_ctx, s->n_logits_max,
	    &s->f)) < 0) {
		err_set(err, r, "forward pass scratch for %u tokens: %s",
		    p->n_batch, strerror(-r));
		goto fail;
	}
	r = -ENOMEM;
	if ((s->slots = calloc(p->n_parallel, sizeof(*s->slots))) == NULL ||
	    (s->seqs = calloc(p->n_parallel, sizeof(*s->seqs))) == NULL ||
	    (s->batch = calloc(p->n_parallel, sizeof(*s->batch))) == NULL ||
	    (s->decoding = calloc(p->n_parallel, sizeof(bool))) == NULL ||
	    (s->scratch = calloc((size_t)p->n_ctx + 1,
	    sizeof(int32_t))) == NULL) {
		err_set(err, r, "out of memory");
		goto fail;
	}
	for (i = 0; i < p->n_parallel; i++) {
		if ((r = fwd_kv_new(m, p->n_ctx, &s->slots[i].kv)) < 0 ||
		    (s->slots[i].tokens = calloc((size_t)p->n_ctx + 1,
		    sizeof(int32_t))) == NULL) {
			if (r == 0)
				r = -ENOMEM;
			err_set(err, r, "KV cache of %u positions: %s",
			    p->n_ctx, strerror(-r));
			goto fail;
		}
	}
	/* the longest token text, for the piece buffer */
	for (i = 0; i < hp->n_vocab; i++) {
		n = tok_piece(s->tok, (int32_t)i, false, NULL, 0);
		if (n > 0 && (size_t)n > maxp)
			maxp = (size_t)n;
	}
	s->piece_cap = 3 * (maxp + 8) + 1;
	s->seg_cap = 8;
	r = -ENOMEM;
	if ((s->piece = malloc(s->piece_cap)) == NULL ||
	    (s->segs = calloc(s->seg_cap, sizeof(*s->segs))) == NULL ||
	    sched_text_reserve(&s->segtext, s->piece_cap +
	    p->limits.max_stop_len + 64) < 0 ||
	    proto_buf_reserve(&s->out, SCHED_OUT_RESERVE) < 0) {
		err_set(err, r, "out of memory");
		goto fail;
	}
	kvd = (size_t)hp->n_head_kv * hp->head_dim;
	qd = (size_t)hp->n_head * hp->head_dim;
	s->scratch_bytes = (uint64_t)p->n_batch * 4 * (2 * hp->n_embd +
	    2 * qd + 2 * kvd + 2 * hp->n_ff + (hp->n_ff > qd ? hp->n_ff : qd) +
	    2) + (uint64_t)p->n_ctx * 4 + (uint64_t)s->n_logits_max *
	    (hp->n_vocab * 4 + 4) + (uint64_t)(p->n_parallel + 1) *
	    (p->n_ctx + 1) * 4 + s->piece_cap + s->segtext.cap +
	    SCHED_OUT_RESERVE;
	s->smp_bytes = (uint64_t)hp->n_vocab * (sizeof(struct smp_cand) + 8);

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&s->tthread, NULL, sched_tok_main, s);
	if (r == 0) {
		s->tthread_started = true;
		r = -pthread_create(&s->thread, NULL, sched_main, s);
		if (r == 0)
			s->thread_started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		err_set(err, r, "cannot start the scheduler threads: %s",
		    strerror(-r));
		sched_stop_threads(s);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	sched_destroy(s);
	return r;
}

void
sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	sched_stop_threads(s);
	sched_destroy(s);
}

static enum sched_kind
sched_kind_of(enum proto_msg t)
{
	switch (t) {
	case PROTO_MSG_GENERATE:
	case PROTO_MSG_CHAT:
		return SCHED_GEN;
	case PROTO_MSG_EVAL:
		return SCHED_EVAL;
	case PROTO_MSG_EMBED:
		return SCHED_EMBED;
	case PROTO_MSG_TOKENIZE:
		return SCHED_TOKENIZE;
	case PROTO_MSG_DETOKENIZE:
		return SCHED_DETOKENIZE;
	default:
		return 0;
	}
}

int
sched_submit(struct sched *s, struct sched_req *req)
{
	struct sched_job *j;
	enum sched_kind k;
	const char *text;
	size_t len;
	bool add, parse;

	if (s == NULL || req == NULL)
		return -EINVAL;
	if ((k = sched_kind_of(req->req.type)) == 0 ||
	    (req->req.type == PROTO_MSG_CHAT && req->prompt == NULL))
		return -EINVAL;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return -ENOMEM;
	j->s = s;
	j->r = req;
	j->conn_id = req->conn_id;
	j->id = req->req.id;
	j->kind = k;
	if (k == SCHED_GEN)
		j->stream = sched_gen_opts(req)->stream;
	if (sched_job_text(j, &text, &len, &add, &parse) &&
	    len > s->p.tok_async_min)
		j->tstate = SCHED_TOKS_WAIT;
	pthread_mutex_lock(&s->mtx);
	if (s->stop || s->n_queued >= s->p.max_queue) {
		pthread_mutex_unlock(&s->mtx);
		free(j);
		return -EBUSY;
	}
	j->queued = true;
	j->paused = sched_conn_paused(s, j->conn_id);
	TAILQ_INSERT_TAIL(&s->queue, j, entry);
	s->n_queued++;
	if (j->tstate == SCHED_TOKS_WAIT)
		pthread_cond_signal(&s->tcond);
	else
		pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mtx);
	return 0;
}

bool
sched_cancel(struct sched *s, uint64_t conn_id, uint64_t id)
{
	struct sched_job *j;
	bool found = false;

	if (s == NULL)
		return false;
	pthread_mutex_lock(&s->mtx);
	TAILQ_FOREACH(j, &s->queue, entry)
		if (j->conn_id == conn_id && j->id == id && !j->dropped &&
		    !j->cancelled)
			found = j->cancelled = true;
	TAILQ_FOREACH(j, &s->active, entry)
		if (j->conn_id == conn_id && j->id == id && !j->dropped &&
		    !j->cancelled)
			found = j->cancelled = true;
	if (found)
		pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mtx);
	return found;
}

void
sched_drop_conn(struct sched *s, uint64_t conn_id)
{
	struct sched_job *j;
	size_t i;
	bool any = false;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mtx);
	TAILQ_FOREACH(j, &s->queue, entry)
		if (j->conn_id == conn_id)
			any = j->dropped = true;
	TAILQ_FOREACH(j, &s->active, entry)
		if (j->conn_id == conn_id)
			any = j->dropped = true;
	for (i = 0; i < s->n_paused; i++)
		if (s->paused[i] == conn_id) {
			s->paused[i] = s->paused[--s->n_paused];
			break;
		}
	if (any)
		pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mtx);
}

void
sched_pause_conn(struct sched *s, uint64_t conn_id, bool paused)
{
	struct sched_job *j;
	uint64_t *p;
	size_t i, n;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mtx);
	TAILQ_FOREACH(j, &s->queue, entry)
		if (j->conn_id == conn_id)
			j->paused = paused;
	TAILQ_FOREACH(j, &s->active, entry)
		if (j->conn_id == conn_id)
			j->paused = paused;
	for (i = 0; i < s->n_paused; i++)
		if (s->paused[i] == conn_id)
			break;
	if (paused && i == s->n_paused) {
		if (s->n_paused == s->paused_cap) {
			n = s->paused_cap ? s->paused_cap * 2 : 8;
			p = realloc(s->paused, n * sizeof(*p));
			if (p != NULL) {
				s->paused = p;
				s->paused_cap = n;
			}
		}
		/* without memory only the jobs already here are paused */
		if (s->n_paused < s->paused_cap)
			s->paused[s->n_paused++] = conn_id;
	} else if (!paused && i < s->n_paused) {
		s->paused[i] = s->paused[--s->n_paused];
	}
	if (!paused)
		pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mtx);
}

void
sched_get_stats(struct sched *s, struct sched_stats *out)
{
	struct sched_job *j, *k;
	uint32_t clients = 0;
	bool seen;

	if (s == NULL || out == NULL)
		return;
	pthread_mutex_lock(&s->mtx);
	*out = s->st;
	out->running = s->n_running;
	out->queued = s->n_queued;
	/* distinct connections: few jobs, so quadratic is fine */
	TAILQ_FOREACH(j, &s->queue, entry) {
		seen = false;
		TAILQ_FOREACH(k, &s->queue, entry) {
			if (k == j)
				break;
			if (k->conn_id == j->conn_id)
				seen = true;
		}
		clients += !seen;
	}
	TAILQ_FOREACH(j, &s->active, entry) {
		seen = false;
		TAILQ_FOREACH(k, &s->queue, entry)
			if (k->conn_id == j->conn_id)
				seen = true;
		TAILQ_FOREACH(k, &s->active, entry) {
			if (k == j)
				break;
			if (k->conn_id == j->conn_id)
				seen = true;
		}
		clients += !seen;
	}
	out->clients = clients;
	out->kv_bytes = (uint64_t)s->p.n_parallel *
	    fwd_kv_bytes(s->m, s->p.n_ctx);
	out->scratch_bytes = s->scratch_bytes + s->n_running * s->smp_bytes;
	pthread_mutex_unlock(&s->mtx);
}

bool
sched_idle(struct sched *s)
{
	bool idle;

	if (s == NULL)
		return true;
	pthread_mutex_lock(&s->mtx);
	idle = TAILQ_EMPTY(&s->queue) && TAILQ_EMPTY(&s->active);
	pthread_mutex_unlock(&s->mtx);
	return idle;
}
