/*
 * proto.h - the wire protocol shared by hearthd and libhearth.
 *
 * A connection is a Unix stream socket carrying frames: a 4-byte
 * big-endian body length, then a body that is exactly one msgpack map.
 * The frame length is checked against a maximum before the body is
 * read. Before msgpack-c sees a body, proto_scan() walks its raw bytes
 * and refuses anything whose declared lengths or counts do not fit in
 * the bytes left, nesting deeper than PROTO_MAX_DEPTH, more objects
 * than a cap, trailing bytes, a top level that is not a map and the
 * reserved byte 0xc1; so no declared length ever becomes an allocation.
 * The decoded tree is then copied into one C struct per message type,
 * every known field type- and range-checked (unknown fields ignored).
 *
 * Both directions use the same code: the client packs requests and
 * unpacks responses, the daemon unpacks requests and packs responses.
 * The protocol is documented for people in hearth-protocol(7).
 *
 * Functions return 0 (or a count) on success and a negative errno on
 * failure, leaving a one-line message and the error code to send in a
 * struct proto_err when one is given. Outputs are untouched on failure.
 * Nothing here logs, aborts or keeps global state; any number of
 * threads may use it on different objects.
 */
#ifndef HEARTH_PROTO_H
#define HEARTH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROTO_VERSION		1	/* protocol version sent in hello */

/* Framing. */
#define PROTO_HDR_SIZE		4		/* big-endian body length */
#define PROTO_MAX_FRAME_DEFAULT	(16u << 20)	/* body bytes */
#define PROTO_MAX_FRAME_MIN	1024u		/* smallest configurable max */
#define PROTO_MAX_FRAME_LIMIT	(1u << 30)	/* largest configurable max */

/* Fixed limits (not configurable; part of the protocol). */
#define PROTO_MAX_DEPTH		16	/* nested arrays/maps, top map is 1 */
#define PROTO_MAX_NAME		250	/* bytes of a model name */
#define PROTO_MAX_LABEL		256	/* client/server names, arch, quant,
					   license, metadata keys */
#define PROTO_MAX_IDENT		64	/* roles, template/hugepage names */
#define PROTO_MAX_MESSAGE	1024	/* bytes of an error message */
#define PROTO_MAX_PIECE		4096	/* bytes of a token event's text */
#define PROTO_MAX_TOP		20	/* top_logprobs, eval top n */
#define PROTO_MAX_EMBD		65536	/* embedding dimensions */
#define PROTO_MAX_KEEP_ALIVE	INT32_MAX	/* seconds */
#define PROTO_MAX_PENALTY_LAST_N 4096
#define PROTO_MAX_TEMPERATURE	100.0
#define PROTO_MAX_PENALTY	100.0	/* |presence|, |frequency|, repeat */

/* Defaults of the configurable limits (struct proto_limits). */
#define PROTO_MAX_OBJECTS_DEFAULT	(1u << 20)
#define PROTO_MAX_TEXT_DEFAULT		(4u << 20)
#define PROTO_MAX_IDS_DEFAULT		(1u << 18)
#define PROTO_MAX_STOP_DEFAULT		16
#define PROTO_MAX_STOP_LEN_DEFAULT	256
#define PROTO_MAX_MESSAGES_DEFAULT	1024
#define PROTO_MAX_ITEMS_DEFAULT		65536

/*
 * Limits one side applies to what it sends and receives. The daemon
 * may configure them and announces them in its hello reply.
 */
struct proto_limits {
	uint32_t max_frame;	/* body bytes of one frame; 16 MiB */
	uint32_t max_objects;	/* msgpack objects in one frame; 1 Mi */
	uint32_t max_text;	/* bytes of one text field (prompt, message
				   content, metadata string...); 4 MiB */
	uint32_t max_ids;	/* token ids in one array; 256 Ki */
	uint32_t max_stop;	/* stop strings in one request; 16 */
	uint32_t max_stop_len;	/* bytes of one stop string; 256 */
	uint32_t max_messages;	/* chat messages in one request; 1024 */
	uint32_t max_items;	/* models in list/ps, metadata entries; 64 Ki */
};

/* Stable error codes of error replies ("bad_request", ...). */
enum proto_code {
	PROTO_E_NONE = 0,
	PROTO_E_BAD_REQUEST = 1,	/* malformed or invalid request */
	PROTO_E_NOT_FOUND = 2,		/* no such model or request */
	PROTO_E_TOO_LARGE = 3,		/* over a limit (frame, prompt...) */
	PROTO_E_BUSY = 4,		/* no capacity now; retry later */
	PROTO_E_DENIED = 5,		/* not permitted */
	PROTO_E_MODEL_ERROR = 6,	/* model failed to load or run */
	PROTO_E_INTERNAL = 7,		/* anything else (out of memory...) */
};

#define PROTO_ERR_MAX 256

/* What went wrong, for the caller and for an error reply. */
struct proto_err {
	enum proto_code code;	/* code to send back; PROTO_E_NONE if unset */
	uint64_t id;		/* id of the offending request when it could
				   be read, else 0 (a connection error) */
	char msg[PROTO_ERR_MAX]; /* NUL-terminated one-line message */
};

/*
 * Message types, numbered like tmux's: requests from 1, server
 * messages from 100. The string names travel under the key "type".
 */
enum proto_msg {
	PROTO_MSG_NONE = 0,
	/* client -> server */
	PROTO_MSG_HELLO = 1,
	PROTO_MSG_LIST = 2,
	PROTO_MSG_SHOW = 3,
	PROTO_MSG_LOAD = 4,
	PROTO_MSG_UNLOAD = 5,
	PROTO_MSG_PS = 6,
	PROTO_MSG_GENERATE = 7,
	PROTO_MSG_CHAT = 8,
	PROTO_MSG_RENDER = 9,
	PROTO_MSG_EVAL = 10,
	PROTO_MSG_EMBED = 11,
	PROTO_MSG_TOKENIZE = 12,
	PROTO_MSG_DETOKENIZE = 13,
	PROTO_MSG_CANCEL = 14,
	PROTO_MSG_STATS = 15,
	PROTO_MSG_PING = 16,
	/* server -> client */
	PROTO_MSG_REPLY = 100,		/* the answer to one request */
	PROTO_MSG_TOKEN = 101,		/* a generated piece (streaming) */
	PROTO_MSG_PROGRESS = 102,	/* load progress */
	PROTO_MSG_DONE = 103,		/* end of generate/chat */
	PROTO_MSG_ERROR = 104,		/* a request (or the connection) failed */
};

/* Why a generation stopped. */
enum proto_reason {
	PROTO_REASON_NONE = 0,
	PROTO_REASON_EOS = 1,		/* "eos": end-of-generation token */
	PROTO_REASON_STOP = 2,		/* "stop": a stop string matched */
	PROTO_REASON_MAX_TOKENS = 3,	/* "max_tokens" (or context full) */
	PROTO_REASON_CANCELLED = 4,	/* "cancelled" */
	PROTO_REASON_ERROR = 5,		/* "error": see the done error */
};

/* Thinking (reasoning) for chat and render. */
enum proto_thinking {
	PROTO_THINK_DEFAULT = 0,	/* field absent: template's default */
	PROTO_THINK_ON = 1,		/* "thinking": true */
	PROTO_THINK_OFF = 2,		/* "thinking": false */
};

/* ---- requests (client -> server) ---- */

struct proto_hello {
	uint32_t	 version;	/* PROTO_VERSION of the client */
	const char	*client;	/* client name, 1..PROTO_MAX_LABEL bytes */
};

/* show, unload */
struct proto_model_req {
	const char	*model;		/* model name (see proto_check_model_name) */
};

/* NUMA placement policies of a load ("auto", "local", ...). */
enum proto_numa {
	PROTO_NUMA_AUTO = 0,		/* the daemon decides */
	PROTO_NUMA_LOCAL = 1,		/* weights, KV, threads on one node */
	PROTO_NUMA_INTERLEAVE = 2,	/* memory over the nodes, threads on all */
	PROTO_NUMA_REPLICATE = 3,	/* a copy of the weights per node */
};

/* "auto", "local", "interleave", "replicate"; NULL for another value. */
const char *proto_numa_name(enum proto_numa n);
/* The reverse; 0 or -EINVAL. */
int	proto_numa_parse(const char *s, enum proto_numa *out);

struct proto_load {
	const char	*model;		/* model name */
	bool		 has_keep_alive; /* keep_alive was given */
	int64_t		 keep_alive;	/* seconds: -1 forever, 0 unload when
					   idle, ..PROTO_MAX_KEEP_ALIVE */
	bool		 has_pin;	/* pin was given */
	bool		 pin;		/* true: keep resident forever, never
					   evicted; false: unpin (admin) */
	bool		 has_numa;	/* numa was given */
	enum proto_numa	 numa;		/* NUMA placement policy of the load */
};

/* Input of generate, eval, embed: exactly one of text and ids. */
struct proto_input {
	const char	*text;		/* NULL or text_len bytes of UTF-8 (NUL-
					   terminated when decoded) */
	size_t		 text_len;	/* bytes, <= max_text */
	const int32_t	*ids;		/* NULL or [n_ids] token ids, 0..2^31-1 */
	uint32_t	 n_ids;		/* <= max_ids */
};

/* Bits of proto_sampling.set: which fields a request gave. */
#define PROTO_S_TEMPERATURE		(1u << 0)
#define PROTO_S_TOP_K			(1u << 1)
#define PROTO_S_TOP_P			(1u << 2)
#define PROTO_S_MIN_P			(1u << 3)
#define PROTO_S_REPEAT_PENALTY		(1u << 4)
#define PROTO_S_PRESENCE_PENALTY	(1u << 5)
#define PROTO_S_FREQUENCY_PENALTY	(1u << 6)
#define PROTO_S_PENALTY_LAST_N		(1u << 7)
#define PROTO_S_SEED			(1u << 8)
#define PROTO_S_ALL			0x1ffu

/* Sampling options; fields whose bit is clear take server defaults. */
struct proto_sampling {
	uint32_t set;			/* PROTO_S_* bits */
	float	 temperature;		/* 0..PROTO_MAX_TEMPERATURE; 0 greedy */
	int32_t	 top_k;			/* 0..INT32_MAX; 0 off */
	float	 top_p;			/* 0..1; 1 off */
	float	 min_p;			/* 0..1; 0 off */
	float	 repeat_penalty;	/* (0..PROTO_MAX_PENALTY]; 1 off */
	float	 presence_penalty;	/* -PROTO_MAX_PENALTY..+; 0 off */
	float	 frequency_penalty;	/* -PROTO_MAX_PENALTY..+; 0 off */
	int32_t	 penalty_last_n;	/* -1 (context)..PROTO_MAX_PENALTY_LAST_N */
	uint64_t seed;			/* any */
};

/* Options common to generate and chat. */
struct proto_gen_opts {
	int32_t		 max_tokens;	/* -1: not given; else 0..INT32_MAX */
	const char	**stop;		/* [n_stop] strings, each 1..max_stop_len
					   bytes of UTF-8 without NUL */
	uint32_t	 n_stop;	/* <= max_stop */
	struct proto_sampling sampling;	/* sampler settings and seed */
	uint32_t	 top_logprobs;	/* alternatives per token, 0..PROTO_MAX_TOP */
	bool		 stream;	/* token events (default true); when false
					   the done event carries the text */
	bool		 has_keep_alive; /* keep_alive was given */
	int64_t		 keep_alive;	/* seconds, as in struct proto_load */
};

struct proto_generate {
	const char	*model;		/* model name */
	struct proto_input input;	/* "prompt" (text) or "ids" */
	struct proto_gen_opts opts;
};

/* One chat message. */
struct proto_message {
	const char	*role;		/* 1..PROTO_MAX_IDENT of [A-Za-z0-9_.-] */
	const char	*content;	/* content_len bytes of UTF-8 */
	size_t		 content_len;	/* <= max_text */
};

/* chat and render */
struct proto_chat {
	const char	*model;		/* model name */
	const struct proto_message *messages;	/* [n_messages] */
	uint32_t	 n_messages;	/* 1..max_messages */
	enum proto_thinking thinking;	/* reasoning on/off/default */
	const char	*template;	/* NULL: the model's; else a template
					   name ("chatml"), an identifier */
	struct proto_gen_opts opts;	/* chat only; ignored by render */
};

struct proto_eval {
	const char	*model;		/* model name */
	struct proto_input input;	/* "text" or "ids" */
	uint32_t	 top;		/* alternatives per position, 0..PROTO_MAX_TOP */
	bool		 add_bos;	/* text: add BOS (default true) */
};

struct proto_embed {
	const char	*model;		/* model name */
	struct proto_input input;	/* "text" or "ids" */
};

struct proto_tokenize {
	const char	*model;		/* model name */
	const char	*text;		/* text_len bytes of UTF-8 */
	size_t		 text_len;	/* <= max_text */
	bool		 add_bos;	/* default true */
	bool		 special;	/* parse special tokens (default false) */
};

struct proto_detokenize {
	const char	*model;		/* model name */
	const int32_t	*ids;		/* [n_ids] token ids */
	uint32_t	 n_ids;		/* <= max_ids */
	bool		 special;	/* render special tokens (default false) */
};

struct proto_cancel {
	uint64_t	 target;	/* id of the request to cancel, >= 1 */
};

/* A request; list, ps, stats and ping have no fields. */
struct proto_request {
	enum proto_msg	 type;		/* PROTO_MSG_HELLO..PROTO_MSG_PING */
	uint64_t	 id;		/* chosen by the client, >= 1 */
	union {
		struct proto_hello	hello;
		struct proto_model_req	show;
		struct proto_load	load;
		struct proto_model_req	unload;
		struct proto_generate	generate;
		struct proto_chat	chat;	/* chat and render */
		struct proto_eval	eval;
		struct proto_embed	embed;
		struct proto_tokenize	tokenize;
		struct proto_detokenize	detokenize;
		struct proto_cancel	cancel;
	} u;
	void		*mem;		/* decoded: owns all pointers above */
};

/* ---- responses (server -> client) ---- */

struct proto_hello_reply {
	uint32_t	 version;	/* PROTO_VERSION of the server */
	const char	*server;	/* "hearthd 0.1.0", 1..PROTO_MAX_LABEL */
	struct proto_limits limits;	/* what the server accepts */
};

/* One model of a list reply. */
struct proto_model_info {
	const char	*name;		/* model name */
	uint64_t	 size;		/* file bytes */
	const char	*arch;		/* "llama", ""; label */
	const char	*quant;		/* "Q4_K_M", ""; label */
	uint64_t	 params;	/* parameter count, 0 unknown */
	const char	*license;	/* general.license or ""; label */
	bool		 resident;	/* loaded now */
};

struct proto_list_reply {
	const struct proto_model_info *models;	/* [n_models] */
	uint32_t	 n_models;	/* <= max_items */
};

enum proto_meta_type {
	PROTO_META_NONE = 0,
	PROTO_META_BOOL = 1,	/* b */
	PROTO_META_INT = 2,	/* i; negative on the wire */
	PROTO_META_UINT = 3,	/* u; non-negative integers decode as this */
	PROTO_META_FLOAT = 4,	/* f */
	PROTO_META_STR = 5,	/* s, s_len */
	PROTO_META_ARRAY = 6,	/* elem, n: a summary, values not sent */
};

/* One metadata entry of a show reply. */
struct proto_meta {
	const char	*key;		/* "general.architecture"; label */
	enum proto_meta_type type;	/* which of the fields below is set */
	bool		 b;
	int64_t		 i;
	uint64_t	 u;
	double		 f;		/* finite */
	const char	*s;		/* UTF-8, s_len <= max_text bytes */
	size_t		 s_len;
	const char	*elem;		/* array element type ("u32", "string") */
	uint64_t	 n;		/* array length */
};

struct proto_show_reply {
	const char	*model;		/* model name */
	const struct proto_meta *meta;	/* [n_meta], in file order */
	uint32_t	 n_meta;	/* <= max_items */
};

struct proto_load_reply {
	const char	*model;		/* model name */
	uint64_t	 memory;	/* resident bytes */
	double		 ms;		/* load time, >= 0 */
};

/* One resident model of a ps reply. */
struct proto_ps_entry {
	const char	*name;		/* model name */
	uint64_t	 memory;	/* resident bytes */
	const char	*hugepages;	/* "none", "thp", "2M", "1G"; ident */
	uint32_t	 clients;	/* connections using it */
	uint64_t	 tokens;	/* tokens served since load */
	int64_t		 keep_alive;	/* seconds left, -1 forever */
	uint64_t	 weights;	/* bytes of the weights (0: unknown) */
	uint64_t	 kv;		/* bytes of the KV cache */
	uint64_t	 scratch;	/* bytes of scratch buffers */
	uint64_t	 bytes_1g;	/* weight bytes in 1 GiB hugepages */
	uint64_t	 bytes_2m;	/* weight bytes in 2 MiB hugepages */
	uint64_t	 bytes_thp;	/* weight bytes in transparent hugepages */
	uint64_t	 bytes_small;	/* weight bytes in base pages */
	bool		 pinned;	/* never evicted, no keep-alive expiry */
	const char	*placement;	/* NULL (not sent) or NUMA placement,
					   a label of <= PROTO_MAX_LABEL bytes */
};

struct proto_ps_reply {
	const struct proto_ps_entry *models;	/* [n_models] */
	uint32_t	 n_models;	/* <= max_items */
};

struct proto_render_reply {
	const char	*prompt;	/* prompt_len bytes: the rendered text */
	size_t		 prompt_len;	/* <= max_text */
	const char	*template;	/* template used ("chatml"); ident */
};

/*
 * Teacher-forced scores of n_tokens tokens: n_pos = n_tokens - 1
 * positions (0 when n_tokens is 0), position i scoring tokens[i + 1].
 */
struct proto_eval_reply {
	const int32_t	*tokens;	/* [n_tokens] */
	uint32_t	 n_tokens;	/* <= max_ids */
	const float	*logprobs;	/* [n_pos] log p(tokens[i+1] | ..i) */
	uint32_t	 top;		/* alternatives per position, <= PROTO_MAX_TOP */
	const int32_t	*top_ids;	/* [n_pos * top], best first */
	const float	*top_logprobs;	/* [n_pos * top] */
};

struct proto_embed_reply {
	const float	*embedding;	/* [n], L2-normalised */
	uint32_t	 n;		/* 1..PROTO_MAX_EMBD */
	uint32_t	 tokens;	/* tokens embedded */
};

struct proto_tokenize_reply {
	const int32_t	*ids;		/* [n_ids] */
	uint32_t	 n_ids;		/* <= max_ids */
};

struct proto_detokenize_reply {
	const char	*text;		/* text_len bytes of UTF-8 */
	size_t		 text_len;	/* <= max_text */
};

struct proto_cancel_reply {
	bool		 found;		/* the target was running and is cancelled */
};

struct proto_stats_reply {
	uint64_t	 uptime;	/* seconds */
	uint32_t	 connections;	/* open now */
	uint64_t	 requests;	/* served since start */
	uint64_t	 prompt_tokens;	/* processed since start */
	uint64_t	 generated_tokens; /* generated since start */
	uint32_t	 models;	/* resident now */
	uint64_t	 memory;	/* resident model bytes */
	uint64_t	 budget;	/* memory budget for models, bytes (0:
					   not sent) */
	uint64_t	 weights;	/* of memory: weights, bytes */
	uint64_t	 kv;		/* of memory: KV caches, bytes */
	uint64_t	 scratch;	/* of memory: scratch, bytes */
};

/* A generated piece (streaming generate/chat). */
struct proto_token {
	const char	*text;		/* text_len bytes of UTF-8, may be empty
					   (incomplete sequences are held back) */
	size_t		 text_len;	/* <= PROTO_MAX_PIECE */
	int32_t		 token;		/* token id */
	bool		 thinking;	/* part of the thinking channel */
	bool		 has_logprob;	/* logprob is set */
	float		 logprob;	/* of this token */
	const int32_t	*top_ids;	/* [n_top] alternatives, best first */
	const float	*top_logprobs;	/* [n_top] */
	uint32_t	 n_top;		/* <= PROTO_MAX_TOP */
};

struct proto_progress {
	uint64_t	 done;		/* bytes read so far, <= total */
	uint64_t	 total;		/* bytes to read */
};

struct proto_done {
	enum proto_reason reason;	/* why it stopped */
	uint32_t	 prompt_tokens;	/* prompt length in tokens */
	uint32_t	 cached_tokens;	/* of which reused from cache, <= prompt */
	uint32_t	 generated_tokens;
	double		 prefill_ms;	/* >= 0 */
	double		 decode_ms;	/* >= 0 */
	const char	*text;		/* non-streamed requests: the answer */
	size_t		 text_len;
	const char	*thinking;	/* non-streamed: the thinking text */
	size_t		 thinking_len;
	enum proto_code	 error_code;	/* reason error: why; else NONE */
	const char	*error_message;	/* reason error: message; else NULL */
};

struct proto_error {
	enum proto_code	 code;		/* never PROTO_E_NONE */
	const char	*message;	/* 0..PROTO_MAX_MESSAGE bytes of UTF-8 */
};

struct proto_response {
	enum proto_msg	 type;		/* PROTO_MSG_REPLY..PROTO_MSG_ERROR */
	uint64_t	 id;		/* the request's id; 0 only in a
					   connection-level error */
	enum proto_msg	 request;	/* REPLY: request type answered */
	union {
		/* type REPLY, by request: */
		struct proto_hello_reply	hello;
		struct proto_list_reply		list;
		struct proto_show_reply		show;
		struct proto_load_reply		load;
		struct proto_ps_reply		ps;
		struct proto_render_reply	render;
		struct proto_eval_reply		eval;
		struct proto_embed_reply	embed;
		struct proto_tokenize_reply	tokenize;
		struct proto_detokenize_reply	detokenize;
		struct proto_cancel_reply	cancel;
		struct proto_stats_reply	stats;
		/* other types: */
		struct proto_token		token;
		struct proto_progress		progress;
		struct proto_done		done;
		struct proto_error		error;
	} u;
	void		*mem;		/* decoded: owns all pointers above */
};

/* ---- names, errors, checks (pack.c) ---- */

/* Wire names; NULL for unknown values. */
const char	*proto_msg_name(enum proto_msg t);
const char	*proto_code_name(enum proto_code c);
const char	*proto_reason_name(enum proto_reason r);
/* Lookups of len bytes; PROTO_MSG_NONE / PROTO_E_NONE / _NONE if unknown. */
enum proto_msg	 proto_msg_lookup(const char *name, size_t len);
enum proto_code	 proto_code_lookup(const char *name, size_t len);
enum proto_reason proto_reason_lookup(const char *name, size_t len);
/* A request type with a REPLY (all but generate and chat). */
bool		 proto_msg_has_reply(enum proto_msg t);

/* Set err (may be NULL) and return rc (a negative errno). */
int proto_err_set(struct proto_err *err, enum proto_code code, int rc,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Length of the longest valid UTF-8 prefix (== len when all valid). */
size_t proto_utf8_valid(const void *s, size_t len);

/* A peer's version: -EPROTONOSUPPORT with a clear message if not ours. */
int proto_check_version(uint32_t peer, struct proto_err *err);
/*
 * A model name: 1..PROTO_MAX_NAME bytes of UTF-8, no '/', no "..",
 * not starting with '.', no control characters. -EINVAL otherwise
 * (-EMSGSIZE when too long).
 */
int proto_check_model_name(const char *name, struct proto_err *err);

void proto_limits_default(struct proto_limits *l);
/* Every field in its sane range (max_frame in MIN..LIMIT, ...). */
int  proto_limits_check(const struct proto_limits *l, struct proto_err *err);

/* Zero r and set the defaults of its type (stream, add_bos, -1s). */
void proto_request_init(struct proto_request *r, enum proto_msg type,
    uint64_t id);
void proto_response_init(struct proto_response *r, enum proto_msg type,
    uint64_t id);
/*
 * Every rule of hearth-protocol(7) that the C struct can break: names,
 * ranges, counts and lengths against l, UTF-8, required fields.
 * -EINVAL or -EMSGSIZE (with PROTO_E_TOO_LARGE).
 */
int proto_request_check(const struct proto_request *r,
    const struct proto_limits *l, struct proto_err *err);
int proto_response_check(const struct proto_response *r,
    const struct proto_limits *l, struct proto_err *err);

/* ---- output buffers and frames (frame.c) ---- */

/* A growable byte buffer; frames are appended to it. */
struct proto_buf {
	uint8_t	*data;		/* [cap] bytes, len used; NULL when empty */
	size_t	 len;		/* bytes used */
	size_t	 cap;		/* bytes allocated */
};

void proto_buf_init(struct proto_buf *b);
void proto_buf_free(struct proto_buf *b);	/* back to empty; NULL ok */
int  proto_buf_reserve(struct proto_buf *b, size_t more);	/* -ENOMEM */
int  proto_buf_append(struct proto_buf *b, const void *p, size_t len);
/* Drop n bytes from the front (what a partial write sent). */
void proto_buf_consume(struct proto_buf *b, size_t n);

/* Write the header of a body of len bytes. */
void proto_frame_hdr(uint8_t hdr[PROTO_HDR_SIZE], uint32_t len);
/*
 * Read and check a header: *len is the body length. -EBADMSG for a
 * zero length (never valid), -EMSGSIZE (PROTO_E_TOO_LARGE) over max.
 */
int  proto_frame_len(const uint8_t hdr[PROTO_HDR_SIZE], uint32_t max_frame,
    uint32_t *len, struct proto_err *err);
/* Append header + body (1..max_frame bytes). */
int  proto_frame_append(struct proto_buf *b, const void *body, size_t len,
    uint32_t max_frame, struct proto_err *err);
/*
 * Write all len bytes to a blocking fd (sockets with MSG_NOSIGNAL, so
 * a closed peer is -EPIPE, never SIGPIPE), retrying on EINTR.
 */
int  proto_write_all(int fd, const void *p, size_t len);

/*
 * The incremental frame reader. Feed it bytes as they arrive, in any
 * pieces, then call proto_reader_next() until it returns 0. The header
 * of each frame is checked as soon as its 4 bytes are in, before any
 * of its body is buffered beyond what was fed; buffer growth follows
 * the bytes actually received, never a declared length. After an error
 * the stream is out of step: the reader returns the same error from
 * then on, and the connection should be closed.
 */
struct proto_reader;

int  proto_reader_new(uint32_t max_frame, struct proto_reader **out);
void proto_reader_free(struct proto_reader *r);	/* NULL ok */
/* Change the maximum body size (MIN..LIMIT, else -EINVAL). */
int  proto_reader_set_max(struct proto_reader *r, uint32_t max_frame);
/* Append bytes. 0, -ENOMEM, or the sticky error. */
int  proto_reader_feed(struct proto_reader *r, const void *data, size_t len,
    struct proto_err *err);
/*
 * One read(2) from fd into the reader: bytes read, 0 at end of file,
 * -errno (-EAGAIN on a non-blocking fd with nothing to read).
 */
ssize_t proto_reader_read(struct proto_reader *r, int fd,
    struct proto_err *err);
/*
 * The next complete frame: 1 with the body in *body and *len (valid
 * until the next call on r), 0 when more bytes are needed, or a
 * negative errno (sticky):
 * -EMSGSIZE over the maximum, -EBADMSG zero length.
 */
int  proto_reader_next(struct proto_reader *r, const uint8_t **body,
    size_t *len, struct proto_err *err);
/* Bytes buffered and not yet returned (nonzero at EOF: a cut frame). */
size_t proto_reader_pending(const struct proto_reader *r);

/* ---- the pre-validator (scan.c) ---- */

/*
 * Walk len raw msgpack bytes without allocating: exactly one map at the
 * top, no declared str/bin/ext length or array/map count beyond the
 * bytes left (every pending element needs at least one byte), depth
 * <= PROTO_MAX_DEPTH, at most l->max_objects objects, no 0xc1, no
 * trailing bytes, len <= l->max_frame. Returns the object count, or
 * -EBADMSG (PROTO_E_BAD_REQUEST) / -EMSGSIZE (PROTO_E_TOO_LARGE).
 */
int proto_scan(const void *buf, size_t len, const struct proto_limits *l,
    struct proto_err *err);

/* ---- packing (pack.c) ---- */

/*
 * Check r (proto_request_check) and append it as one frame to b.
 * -EMSGSIZE when the body would exceed l->max_frame or l->max_objects.
 * b is unchanged on failure.
 */
int proto_pack_request(struct proto_buf *b, const struct proto_request *r,
    const struct proto_limits *l, struct proto_err *err);
int proto_pack_response(struct proto_buf *b, const struct proto_response *r,
    const struct proto_limits *l, struct proto_err *err);
/*
 * An error response {type, id, error: {code, message}}; the message is
 * cut to PROTO_MAX_MESSAGE bytes and invalid UTF-8 replaced by '?', so
 * this fails only with -ENOMEM.
 */
int proto_pack_error(struct proto_buf *b, uint64_t id, enum proto_code code,
    const char *message);

/* ---- unpacking (unpack.c) ---- */

/*
 * Decode one frame body (without its header): proto_scan, then msgpack-c,
 * then every field into *out, which owns its memory (proto_*_free).
 * On failure *out is untouched and err carries the code to reply with
 * and the request id when it could be read: -EBADMSG (malformed,
 * wrong type, missing field, unknown type), -EINVAL (a value out of
 * range), -EMSGSIZE (over a limit), -ENOMEM.
 */
int  proto_unpack_request(const void *body, size_t len,
    const struct proto_limits *l, struct proto_request *out,
    struct proto_err *err);
int  proto_unpack_response(const void *body, size_t len,
    const struct proto_limits *l, struct proto_response *out,
    struct proto_err *err);
/* Free what a decode allocated and zero the struct; NULL ok. */
void proto_request_free(struct proto_request *r);
void proto_response_free(struct proto_response *r);

#endif /* HEARTH_PROTO_H */
