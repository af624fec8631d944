/*
 * hearth.h - the public interface of libhearth, the client library of
 * hearthd, and the only installed header.
 *
 * A struct hearth is one connection to the daemon. hearth_connect()
 * opens it and says hello; the server's version and limits are kept,
 * so a request over a limit fails here, before it is sent. Every call
 * blocks until its request has ended. generate and chat stream: a
 * callback sees each token as it arrives and may stop the generation.
 *
 * Conventions:
 * - Calls return 0 (or a count) on success and a negative errno on
 *   failure, leaving their outputs untouched. hearth_errmsg() then
 *   holds a one-line message and hearth_errcode() the server's error
 *   code ("not_found") when the server refused the request. Server
 *   codes map to: bad_request -EINVAL, not_found -ENOENT, too_large
 *   -EMSGSIZE, busy -EBUSY, denied -EACCES, model_error -EIO, internal
 *   (and unknown codes) -EREMOTEIO. Local failures: -ENOMEM, -EMSGSIZE
 *   (over the server's limits), -EINVAL (bad arguments), -ECANCELED
 *   (hearth_interrupt), -EPROTO (the server broke the protocol),
 *   -EPIPE/-ECONNRESET (the server went away), -ENOTCONN (the
 *   connection is broken: every later call fails with it; close it).
 * - Everything a call allocates for the caller is one block, freed with
 *   hearth_free() (strings and arrays inside it go with it).
 * - Texts are UTF-8 with a length; a length of 0 means NUL-terminated
 *   (so an empty string still works). Output texts are NUL-terminated
 *   too.
 * - A handle is used by one thread at a time; different handles are
 *   independent (no global state). The library never logs, never
 *   aborts, never raises SIGPIPE and never touches signal handlers.
 */
#ifndef HEARTH_H
#define HEARTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEARTH_VERSION_MAJOR	0
#define HEARTH_VERSION_MINOR	1
#define HEARTH_VERSION_PATCH	0
#define HEARTH_VERSION_STRING	"0.1.0"

/* Socket used when none is given and $HEARTH_SOCKET is unset. */
#define HEARTH_SOCKET_SYSTEM	"/run/hearth/hearth.sock"
#define HEARTH_SOCKET_USER	"hearth/hearth.sock" /* in $XDG_RUNTIME_DIR */

#define HEARTH_ERRMSG_MAX	1280	/* bytes of a message with its NUL */
#define HEARTH_DEFAULT		INT32_MIN	/* int field: server default */
#define HEARTH_KEEP_ALIVE_DEFAULT INT64_MIN	/* keep_alive: server default */
#define HEARTH_KEEP_ALIVE_FOREVER (-1)

/* A connection to hearthd (opaque). */
struct hearth;

/* A failure without a handle (hearth_connect). */
struct hearth_error {
	int	 rc;			/* negative errno */
	char	 code[32];		/* server error code or "" */
	char	 message[HEARTH_ERRMSG_MAX];	/* one line */
};

/* Limits the server announced in its hello reply. */
struct hearth_limits {
	uint32_t max_frame;	/* body bytes of one message */
	uint32_t max_objects;	/* MessagePack objects in one message */
	uint32_t max_text;	/* bytes of one text (prompt, content) */
	uint32_t max_ids;	/* token ids in one array */
	uint32_t max_stop;	/* stop strings per request */
	uint32_t max_stop_len;	/* bytes of one stop string */
	uint32_t max_messages;	/* chat messages per request */
	uint32_t max_items;	/* models per list, metadata entries */
};

/* ---- connections ---- */

/*
 * Connect to the daemon at path, or when path is NULL at $HEARTH_SOCKET,
 * else $XDG_RUNTIME_DIR/hearth/hearth.sock, else (also when that one does
 * not exist or nobody listens there) /run/hearth/hearth.sock; then say
 * hello as client ("libhearth 0.1.0" when NULL). err (may be NULL) says
 * why it failed: -ENOENT/-ECONNREFUSED when no daemon runs there,
 * -EPROTONOSUPPORT for a server of another protocol version.
 */
int	 hearth_connect(const char *path, const char *client,
	    struct hearth **out, struct hearth_error *err);
/*
 * The same over a connected stream socket, which the handle owns from
 * then on (it is closed on failure too).
 */
int	 hearth_connect_fd(int fd, const char *client, struct hearth **out,
	    struct hearth_error *err);
/* Close the connection (the server cancels what still runs). NULL ok. */
void	 hearth_close(struct hearth *h);

/* The last failure's message ("" after success) and server code or NULL. */
const char *hearth_errmsg(const struct hearth *h);
const char *hearth_errcode(const struct hearth *h);
/* The server's name ("hearthd 0.1.0"), protocol version and limits. */
const char *hearth_server(const struct hearth *h);
uint32_t    hearth_server_protocol(const struct hearth *h);
void	    hearth_limits(const struct hearth *h, struct hearth_limits *out);
/* The socket's file descriptor (for poll; do not read or write it). */
int	    hearth_fd(const struct hearth *h);

/*
 * Stop the call running on h, or the next one if none runs. Safe from
 * a signal handler and from another thread. A streaming call sends a
 * cancel and goes on reading until its done event (reason cancelled),
 * returning 0; any other call sends a cancel, drops its late answer
 * and returns -ECANCELED. The connection stays usable.
 */
void	 hearth_interrupt(struct hearth *h);

/* Free what a call returned. NULL ok. */
void	 hearth_free(void *p);

/* ---- models ---- */

/* One model of the models directory. */
struct hearth_model {
	const char	*name;		/* file name without .gguf */
	uint64_t	 size;		/* file bytes */
	const char	*arch;		/* "llama", or "" */
	const char	*quant;		/* "Q4_K_M", or "" */
	uint64_t	 params;	/* parameter count, 0 unknown */
	const char	*license;	/* general.license, or "" */
	bool		 resident;	/* loaded now */
};

/* *models: [*n] in one block. */
int	 hearth_list(struct hearth *h, struct hearth_model **models,
	    size_t *n);

enum hearth_meta_type {
	HEARTH_META_BOOL = 1,	/* b */
	HEARTH_META_INT = 2,	/* i (negative integers) */
	HEARTH_META_UINT = 3,	/* u (non-negative integers) */
	HEARTH_META_FLOAT = 4,	/* f */
	HEARTH_META_STR = 5,	/* s, s_len */
	HEARTH_META_ARRAY = 6,	/* elem, n: a summary, values not sent */
};

/* One metadata entry of a model. */
struct hearth_meta {
	const char	*key;		/* "general.architecture" */
	enum hearth_meta_type type;	/* which fields below are set */
	bool		 b;
	int64_t		 i;
	uint64_t	 u;
	double		 f;
	const char	*s;		/* s_len bytes, NUL-terminated */
	size_t		 s_len;
	const char	*elem;		/* array element type ("u32", "string") */
	uint64_t	 n;		/* array length */
};

/* All metadata of one model, in file order: *meta [*n], one block. */
int	 hearth_show(struct hearth *h, const char *model,
	    struct hearth_meta **meta, size_t *n);

/* Load progress: bytes read of total. Nonzero stops waiting (-ECANCELED). */
typedef int (*hearth_progress_fn)(void *arg, uint64_t done, uint64_t total);

struct hearth_load_info {
	uint64_t	 memory;	/* resident bytes */
	double		 ms;		/* load time */
};

/*
 * Load a model (no-op if resident) and keep it for keep_alive seconds
 * once idle (HEARTH_KEEP_ALIVE_DEFAULT: the server's; -1 forever).
 * progress and info may be NULL.
 */
int	 hearth_load(struct hearth *h, const char *model, int64_t keep_alive,
	    hearth_progress_fn progress, void *arg,
	    struct hearth_load_info *info);
/* Flags of hearth_load_ex (at most one; pinning needs an admin rule). */
#define HEARTH_LOAD_PIN		(1u << 0)	/* keep resident forever, never
						   evicted for another load */
#define HEARTH_LOAD_UNPIN	(1u << 1)	/* undo a pin: evictable, the
						   keep-alive applies again */
/*
 * The NUMA placement of the load, at most one, with or without a pin
 * flag: used when the request loads the model; a model resident with
 * another policy is loaded again when idle (busy while in use).
 */
#define HEARTH_LOAD_NUMA_AUTO	(1u << 8)	/* the daemon decides */
#define HEARTH_LOAD_NUMA_LOCAL	(2u << 8)	/* weights, KV, threads on
						   one node */
#define HEARTH_LOAD_NUMA_INTERLEAVE (3u << 8)	/* memory over the nodes */
#define HEARTH_LOAD_NUMA_REPLICATE (4u << 8)	/* a copy of the weights per
						   node */
#define HEARTH_LOAD_NUMA_MASK	(7u << 8)	/* the field of these */
/* hearth_load with flags; hearth_load is hearth_load_ex with flags 0. */
int	 hearth_load_ex(struct hearth *h, const char *model,
	    int64_t keep_alive, unsigned flags, hearth_progress_fn progress,
	    void *arg, struct hearth_load_info *info);
int	 hearth_unload(struct hearth *h, const char *model);

/* One resident model. */
struct hearth_ps_entry {
	const char	*name;		/* model name */
	uint64_t	 memory;	/* resident bytes */
	const char	*hugepages;	/* "none", "thp", "2M", "1G" */
	uint32_t	 clients;	/* connections using it */
	uint64_t	 tokens;	/* tokens served since load */
	int64_t		 keep_alive;	/* seconds left, -1 forever */
	/* The split of memory and the pages of the weights (0: an older
	 * server did not say). */
	uint64_t	 weights;	/* bytes of the weights */
	uint64_t	 kv;		/* bytes of the KV cache */
	uint64_t	 scratch;	/* bytes of scratch buffers */
	uint64_t	 bytes_1g;	/* weight bytes in 1 GiB hugepages */
	uint64_t	 bytes_2m;	/* weight bytes in 2 MiB hugepages */
	uint64_t	 bytes_thp;	/* weight bytes in transparent hugepages */
	uint64_t	 bytes_small;	/* weight bytes in base pages */
	bool		 pinned;	/* never evicted, no keep-alive expiry */
	const char	*placement;	/* NUMA placement ("local, CPUs 0-3:
					   ..."); "" when not reported */
};

int	 hearth_ps(struct hearth *h, struct hearth_ps_entry **models,
	    size_t *n);

struct hearth_stats {
	uint64_t	 uptime;	/* seconds */
	uint32_t	 connections;	/* open now */
	uint64_t	 requests;	/* served since start */
	uint64_t	 prompt_tokens;	/* processed since start */
	uint64_t	 generated_tokens; /* generated since start */
	uint32_t	 models;	/* resident now */
	uint64_t	 memory;	/* resident model bytes */
	uint64_t	 budget;	/* memory budget for models (0: not
					   reported) */
	uint64_t	 weights;	/* of memory: weights */
	uint64_t	 kv;		/* of memory: KV caches */
	uint64_t	 scratch;	/* of memory: scratch */
};

int	 hearth_stats(struct hearth *h, struct hearth_stats *out);
int	 hearth_ping(struct hearth *h);

/* ---- tokens ---- */

/* *ids: [*n], one block. */
int	 hearth_tokenize(struct hearth *h, const char *model, const char *text,
	    size_t len, bool add_bos, bool special, int32_t **ids, size_t *n);
/* *text: *len bytes plus a NUL, one block; len may be NULL. */
int	 hearth_detokenize(struct hearth *h, const char *model,
	    const int32_t *ids, size_t n, bool special, char **text,
	    size_t *len);

/* Input of generate, eval and embed: text, or (text NULL) token ids. */
struct hearth_input {
	const char	*text;		/* UTF-8, or NULL for ids */
	size_t		 text_len;	/* bytes; 0: NUL-terminated */
	const int32_t	*ids;		/* [n_ids] when text is NULL */
	size_t		 n_ids;
};

struct hearth_embedding {
	float		*values;	/* [n], L2-normalised */
	size_t		 n;		/* dimensions */
	uint32_t	 tokens;	/* tokens embedded */
};

/* *out, one block. */
int	 hearth_embed(struct hearth *h, const char *model,
	    const struct hearth_input *in, struct hearth_embedding **out);

/*
 * Teacher-forced scores of n_tokens tokens: n_pos = n_tokens - 1
 * positions (0 if n_tokens is 0), position i scoring tokens[i + 1]
 * after tokens[0..i].
 */
struct hearth_eval {
	int32_t		*tokens;	/* [n_tokens] */
	size_t		 n_tokens;
	float		*logprobs;	/* [n_pos] */
	uint32_t	 top;		/* alternatives per position */
	int32_t		*top_ids;	/* [n_pos * top], best first */
	float		*top_logprobs;	/* [n_pos * top] */
};

/* top: 0..20 alternatives; add_bos for text. *out, one block. */
int	 hearth_eval(struct hearth *h, const char *model,
	    const struct hearth_input *in, uint32_t top, bool add_bos,
	    struct hearth_eval **out);

/* ---- generation ---- */

enum hearth_thinking {
	HEARTH_THINKING_DEFAULT = 0,	/* the template's default */
	HEARTH_THINKING_ON = 1,
	HEARTH_THINKING_OFF = 2,
};

/*
 * Options of generate and chat (render uses thinking and template).
 * Start from hearth_gen_params_default(): every field then asks for the
 * server's default (NAN floats, HEARTH_DEFAULT ints, has_seed false).
 */
struct hearth_gen_params {
	float		 temperature;	/* 0..100, 0 greedy; NAN default */
	int32_t		 top_k;		/* >= 0, 0 off; HEARTH_DEFAULT */
	float		 top_p;		/* 0..1, 1 off; NAN */
	float		 min_p;		/* 0..1, 0 off; NAN */
	float		 repeat_penalty; /* (0..100], 1 off; NAN */
	float		 presence_penalty; /* -100..100, 0 off; NAN */
	float		 frequency_penalty; /* -100..100, 0 off; NAN */
	int32_t		 penalty_last_n; /* -1 (context)..4096; HEARTH_DEFAULT */
	bool		 has_seed;	/* seed is set */
	uint64_t	 seed;
	int32_t		 max_tokens;	/* -1: until the context is full */
	const char *const *stop;	/* [n_stop] stop strings, NUL-terminated */
	size_t		 n_stop;
	uint32_t	 top_logprobs;	/* 0..20 alternatives with each token */
	bool		 stream;	/* token events (true); false: the done
					   info carries the whole text */
	int64_t		 keep_alive;	/* seconds; HEARTH_KEEP_ALIVE_DEFAULT */
	enum hearth_thinking thinking;	/* chat, render: reasoning on/off */
	const char	*template_name; /* chat, render: a template instead of
					   the model's ("chatml"), or NULL */
};

void	 hearth_gen_params_default(struct hearth_gen_params *p);

/* One generated piece, valid during the callback. */
struct hearth_token {
	const char	*text;		/* text_len bytes of whole UTF-8
					   characters (may be empty), NUL-
					   terminated */
	size_t		 text_len;
	int32_t		 id;		/* token id */
	bool		 thinking;	/* part of the thinking channel */
	bool		 has_logprob;	/* logprob and top_* are set */
	float		 logprob;
	const int32_t	*top_ids;	/* [n_top] alternatives, best first */
	const float	*top_logprobs;	/* [n_top] */
	uint32_t	 n_top;
};

/*
 * Called for every token. Returning nonzero cancels the generation: no
 * more tokens are reported and the call returns when the server's done
 * event arrives (reason cancelled, unless it finished first).
 */
typedef int (*hearth_token_fn)(void *arg, const struct hearth_token *tok);

enum hearth_reason {
	HEARTH_REASON_EOS = 1,		/* end-of-generation token */
	HEARTH_REASON_STOP = 2,		/* a stop string */
	HEARTH_REASON_MAX_TOKENS = 3,	/* max_tokens or the context's end */
	HEARTH_REASON_CANCELLED = 4,	/* callback, hearth_interrupt */
	HEARTH_REASON_ERROR = 5,	/* the call returned an error */
};

/* The end of a generation. */
struct hearth_done {
	enum hearth_reason reason;
	uint32_t	 prompt_tokens;	/* prompt length */
	uint32_t	 cached_tokens;	/* of which reused from the cache */
	uint32_t	 generated_tokens;
	double		 prefill_ms;
	double		 decode_ms;
	char		*text;		/* stream false: the answer, else NULL */
	size_t		 text_len;
	char		*thinking;	/* stream false: the thinking, or NULL */
	size_t		 thinking_len;
};

/* Free done->text and done->thinking and zero them. NULL ok. */
void	 hearth_done_clear(struct hearth_done *done);

/*
 * Generate from a prompt (text as is, or ids). p NULL: defaults; cb may
 * be NULL; done may be NULL. A generation that fails on the server
 * after it started returns its error with done->reason ERROR.
 */
int	 hearth_generate(struct hearth *h, const char *model,
	    const struct hearth_input *prompt, const struct hearth_gen_params *p,
	    hearth_token_fn cb, void *arg, struct hearth_done *done);

/* A chat message. */
struct hearth_message {
	const char	*role;		/* "system", "user", "assistant" */
	const char	*content;	/* UTF-8 */
	size_t		 content_len;	/* bytes; 0: NUL-terminated */
};

/* Chat: messages rendered with the model's template, then generate. */
int	 hearth_chat(struct hearth *h, const char *model,
	    const struct hearth_message *messages, size_t n,
	    const struct hearth_gen_params *p, hearth_token_fn cb, void *arg,
	    struct hearth_done *done);

struct hearth_rendered {
	char		*prompt;	/* the exact prompt text, NUL-terminated */
	size_t		 prompt_len;
	char		*template_name;	/* the template used ("chatml") */
};

/* The prompt a chat would give the model (p: thinking, template). */
int	 hearth_render(struct hearth *h, const char *model,
	    const struct hearth_message *messages, size_t n,
	    const struct hearth_gen_params *p, struct hearth_rendered **out);

/* "eos", "stop", "max_tokens", "cancelled", "error"; "?" otherwise. */
const char *hearth_reason_name(enum hearth_reason r);

#ifdef __cplusplus
}
#endif

#endif /* HEARTH_H */
