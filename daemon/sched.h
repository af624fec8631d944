/*
 * sched.h - one resident model's scheduler: a thread that runs every
 * request for that model, with continuous batching.
 *
 * Each step, the scheduler thread takes new requests from its queue into
 * free KV slots (round robin across uids: the uid with the fewest
 * requests running first), then runs one batch through the forward pass holding
 * every running sequence's next token and a chunk of each prompt still
 * being read (so running streams keep going while a long prompt is
 * processed), samples, and posts events. Texts longer than tok_async_min
 * (16 KiB) are tokenized beforehand by a second thread of the scheduler
 * (one per model, in arrival order), so that tokenizing megabytes never
 * stalls running streams; such a request is admitted once its tokens
 * are ready. When a sequence ends, its slot
 * keeps its KV cache and tokens (for the same uid only) so a request
 * whose prompt begins with them reuses that prefix.
 *
 * The scheduler packs its own output frames (proto/) and hands them to
 * the post callback, from its own thread; the daemon queues them to the
 * loop thread, which writes them to the connection if it still exists.
 * All other functions are called from the loop thread.
 *
 * What a request gets (every request ends with exactly one final frame):
 *   generate/chat  token events, one per sampled token (the end-of-
 *                  generation token too, with its held-back text or
 *                  ""), a second event for the same token only when its
 *                  text crosses a think tag (the logprobs are on the
 *                  first) or is over PROTO_MAX_PIECE; then done. Stop
 *                  strings apply to the answer channel only; the first
 *                  to complete wins. stream=false: no token events, done
 *                  carries text (and thinking when think_close is set).
 *                  prefill_ms/decode_ms: wall time of the steps in which
 *                  the sequence read its prompt / decoded.
 *   eval, embed,   a reply.
 *   tokenize,
 *   detokenize
 *   cancelled      done, reason cancelled (any kind, queued or running).
 *   refused/failed an error frame: too_large (prompt over n_ctx - 1, eval
 *                  input over n_ctx + 1, embed input over n_ctx, a reply
 *                  over the frame limit), bad_request (ids outside the
 *                  vocabulary, empty prompt, sampling out of range, text
 *                  the tokenizer refuses), model_error (the forward pass
 *                  failed; the slot's cache is forgotten), internal.
 */
#ifndef HEARTH_SCHED_H
#define HEARTH_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "model.h"
#include "proto.h"
#include "sampler.h"

struct sched;

struct sched_params {
	uint32_t	 n_parallel;	/* KV slots: sequences at once (4) */
	uint32_t	 n_ctx;		/* positions per slot (min(train, 4096)) */
	uint32_t	 n_batch;	/* tokens per forward step (512) */
	uint32_t	 prefill_chunk;	/* prompt tokens per sequence per step
					 * while others decode (128) */
	uint32_t	 max_queue;	/* requests waiting for a slot (64);
					 * more get a busy error */
	size_t		 tok_async_min;	/* texts of more bytes than this are
					 * tokenized on the tokenizer thread,
					 * shorter ones at admission (16384) */
	struct smp_params sampling;	/* defaults for absent fields */
	struct proto_limits limits;	/* for packing replies */
};

/*
 * A request handed to the scheduler, which owns it from a successful
 * sched_submit() on and frees it with sched_req_free().
 */
struct sched_req {
	uint64_t		 conn_id;	/* the connection (loop's key) */
	uid_t			 uid;		/* peer uid: caches never cross it */
	struct proto_request	 req;		/* decoded: GENERATE, CHAT, EVAL,
						 * EMBED, TOKENIZE, DETOKENIZE */
	char			*prompt;	/* CHAT: the rendered prompt, owned
						 * (tokenized with special tokens
						 * parsed, no BOS added) */
	size_t			 prompt_len;
	const char		*think_open;	/* "<think>" or NULL: no thinking
						 * channel (static string) */
	const char		*think_close;	/* "</think>" */
	bool			 think_first;	/* the prompt ends inside thinking */
	struct smp_params	 sampling;	/* resolved: defaults + request */
	int32_t			 max_tokens;	/* resolved; -1 until the context */
	uint32_t		 max_prompt_tokens; /* 0: no limit but the
						 * context; else a generate/chat
						 * prompt of more tokens is refused
						 * with PROTO_E_DENIED */
	char			 limit_rule[96];	/* names the rule in that
						 * error ("denied by [access
						 * guests]"); "" */
};

/* NULL-safe; frees req->req's memory, the prompt and r itself (which
 * must come from malloc). */
void sched_req_free(struct sched_req *r);

/*
 * Called from the scheduler thread with one complete frame (header
 * included) for request id of connection conn_id; final is true for the
 * last frame of that request (done, reply or error). The callee copies
 * the bytes. It is called with the scheduler's lock held (that is how
 * nothing is posted for a connection once sched_drop_conn returned): it
 * must not call sched_*(), and the loop thread must not call sched_*()
 * while holding a lock the callback takes.
 */
typedef void (*sched_post_fn)(void *arg, uint64_t conn_id, uint64_t id,
    const uint8_t *frame, size_t len, bool final);

struct sched_stats {
	uint32_t	 running;	/* sequences in slots */
	uint32_t	 queued;	/* waiting for a slot */
	uint32_t	 clients;	/* distinct connections with requests */
	uint64_t	 requests;	/* finished since start */
	uint64_t	 prompt_tokens;	/* processed (not from cache) */
	uint64_t	 cached_tokens;	/* prompt tokens reused from cache */
	uint64_t	 generated_tokens;
	uint64_t	 kv_bytes;	/* memory of the KV slots */
	uint64_t	 scratch_bytes;	/* forward pass and sampler buffers */
};

void sched_params_default(struct sched_params *p, const struct model *m);
/* Start the thread. The model must outlive the scheduler. */
int  sched_new(struct model *m, const struct sched_params *p,
	    sched_post_fn post, void *arg, struct sched **out,
	    struct eng_err *err);
/* Stop: cancel everything without posting, join the thread. NULL ok. */
void sched_free(struct sched *s);

/*
 * Queue a request. On success the scheduler owns it. -EBUSY when the
 * queue is full (max_queue requests wait for a slot or for their turn),
 * -EINVAL for a request kind it does not run (or a chat without its
 * rendered prompt), -ENOMEM; the caller keeps req and replies with the
 * error. Tokenize and detokenize are answered between two steps, ahead
 * of requests waiting for a slot.
 */
int  sched_submit(struct sched *s, struct sched_req *req);
/* Cancel request id of conn_id: true when it was queued or running
 * (it then ends with a done event, reason cancelled). */
bool sched_cancel(struct sched *s, uint64_t conn_id, uint64_t id);
/* A connection is gone: drop its requests at once, post nothing more
 * for it (from when this returns), and free its slots' caches. */
void sched_drop_conn(struct sched *s, uint64_t conn_id);
/* A connection's output backs up (or drains): its sequences are left
 * out of batches while paused (they keep their slots; at most the step
 * running when this is called still posts for it). Remembered for
 * requests it submits later, until unpaused or dropped. */
void sched_pause_conn(struct sched *s, uint64_t conn_id, bool paused);
void sched_get_stats(struct sched *s, struct sched_stats *out);
/* No request queued or running. */
bool sched_idle(struct sched *s);

#endif /* HEARTH_SCHED_H */
