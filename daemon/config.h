/*
 * config.h - hearthd's settings: defaults, the configuration file
 * (hearth.conf, an INI file read with libinih) and their limits.
 *
 * Sections (hearth.conf(5) documents every key):
 *	[daemon]	sockets, threads, models directory, memory budget,
 *			defaults for every model and connection
 *	[model NAME]	settings of one model (template, context, KV type,
 *			keep-alive, pin, NUMA policy, preload)
 *	[access NAME]	who (user =, group =) may use which models, whether
 *			they may load and unload, and their limits
 * '#' and ';' start comments. A key outside a section, an unknown
 * section or key, a value out of range, and a line longer than
 * CONFIG_LINE_MAX are errors naming file and line. Sizes take K, M or G
 * suffixes (binary), durations ms, s, m or h (seconds when bare).
 *
 * A struct config is complete on its own: a reload parses into a new
 * one and swaps it in whole.
 */
#ifndef HEARTH_CONFIG_H
#define HEARTH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "memory.h"
#include "numa_topo.h"

#define CONFIG_ERR_MAX		512	/* bytes of an error message */
#define CONFIG_LINE_MAX		199	/* bytes of a line (libinih's) */
#define CONFIG_NAME_MAX		64	/* bytes of an [access] name */
#define CONFIG_MAX_SECTIONS	1024	/* [model] plus [access] sections */
#define CONFIG_MAX_LIST		1024	/* users, groups or models of a rule */
#define CONFIG_UNLIMITED	UINT32_MAX	/* a limit that is not set */
#define CONFIG_DEFAULT_ACCESS	"default"	/* [access default]: for
					 * connections no other section
					 * matches, wherever it stands */

/* Element type of a model's KV cache, keys and values alike. */
enum config_kv_type {
	CONFIG_KV_F16 = 0,	/* IEEE half (llama.cpp's default) */
	CONFIG_KV_Q8_0,		/* blocks of 32 int8 + fp16 scale: 34 bytes
				 * per 32 elements (head dim a multiple of
				 * 32, else the load fails) */
};

/* One [model NAME] section. */
struct config_model {
	char		*name;		/* the model's name */
	int		 line;		/* of the section header */
	char		*template_name;	/* chat template family used instead of
					 * the file's; NULL: the file's */
	uint32_t	 n_ctx;		/* positions per slot; 0: [daemon]'s */
	bool		 has_kv_type;	/* kv_type below is set */
	enum config_kv_type kv_type;	/* KV cache elements; unset:
					 * [daemon]'s */
	bool		 has_keep_alive; /* keep_alive below is set */
	int64_t		 keep_alive;	/* seconds once idle; -1 forever */
	bool		 pin;		/* stays resident: no keep-alive expiry,
					 * never evicted (an admin may unload) */
	bool		 has_numa;	/* numa below is set */
	enum numa_policy numa;		/* NUMA placement policy (memory
					 * bound to it; threads not pinned) */
	bool		 preload;	/* loaded at start and on reload; READY
					 * waits for it */
};

/* One [access NAME] section: a rule. */
struct config_access {
	char		*name;		/* "guests" of [access guests] */
	int		 line;		/* of the section header */
	uid_t		*users;		/* [n_users] user = selectors */
	size_t		 n_users;
	gid_t		*groups;	/* [n_groups] group = selectors */
	size_t		 n_groups;
	char		**models;	/* [n_models] models = allow-list */
	size_t		 n_models;
	bool		 all_models;	/* models = * (the default) */
	bool		 models_set;	/* a models key was seen */
	bool		 admin;		/* load, unload, keep_alive -1 */
	uint32_t	 max_connections; /* per uid; CONFIG_UNLIMITED */
	uint32_t	 max_requests;	/* model requests running at once per
					 * uid, over all its connections */
	uint32_t	 max_queued;	/* more requests waiting behind those;
					 * beyond: busy */
	uint32_t	 max_prompt_tokens; /* tokens of one prompt */
	uint32_t	 max_tokens;	/* max_tokens of one request (clamped) */
	uint32_t	 tokens_per_minute; /* prompt and generated tokens per
					 * uid, as a token bucket */
};

struct config {
	/* [daemon]: where and how to listen (fixed until restart) */
	char		*socket_path;	/* listening socket; NULL: default */
	char		*admin_socket_path; /* admin socket; NULL: none */
	uint32_t	 socket_mode;	/* of the socket file; 0: 0666 for
					 * root, 0600 for a user */
	uint32_t	 admin_socket_mode; /* of the admin socket (0600) */
	char		*models_dir;	/* models directory; NULL: default */
	uint32_t	 max_frame;	/* frame body bytes (16 MiB) */
	/* [daemon]: memory (registry.c admits loads against the budget) */
	char		*memory_budget;	/* "80%" or "16G"; NULL: default */
	bool		 has_pages;	/* pages below is set */
	enum mem_pages	 pages;		/* best kind of page for weights */
	bool		 has_numa;	/* numa below is set */
	enum numa_policy numa;		/* default NUMA policy */
	/* [daemon]: the rest applies to what starts after a reload */
	int64_t		 keep_alive;	/* seconds a model stays resident once
					 * idle: -1 forever, 0 unload at once
					 * (300) */
	uint32_t	 n_parallel;	/* KV slots per model (4) */
	uint32_t	 n_ctx;		/* positions per slot; 0: the model's
					 * training context, at most 4096 */
	uint32_t	 n_batch;	/* tokens per forward step (512) */
	enum config_kv_type kv_type;	/* KV cache elements of models
					 * without their own (f16) */
	uint32_t	 prefill_chunk;	/* prompt tokens per sequence per step
					 * while others decode (128) */
	uint32_t	 max_queue;	/* requests waiting for a slot, per
					 * model (64) */
	uint32_t	 threads;	/* compute threads per model; 0: the
					 * engine's default ($HEARTH_THREADS,
					 * else one per physical core) */
	char		*template_name;	/* fallback chat template family for
					 * models without a known one; NULL */
	uint32_t	 max_connections; /* open client connections (256) */
	uint32_t	 max_requests;	/* requests in flight per connection
					 * (64) */
	uint32_t	 max_models;	/* resident models at once (4) */
	size_t		 output_buffer;	/* bytes queued for a client before it
					 * is paused (1 MiB) */
	uint32_t	 pause_timeout_ms; /* a paused client that does not
					 * drain within this is cancelled and
					 * closed (30 s) */
	uint32_t	 drain_timeout_ms; /* SIGTERM: how long running requests
					 * may go on before they are ended with
					 * an error (30 s) */
	uint32_t	 sndbuf;	/* SO_SNDBUF of client sockets; 0: the
					 * system's default */
	bool		 external_links; /* follow symlinks in the models
					 * directory that point outside it
					 * (true for a user, false for root) */
	bool		 debug;		/* log debug lines */
	/* sections */
	struct config_model *models;	/* [n_models] in file order */
	size_t		 n_models;
	struct config_access *access;	/* [n_access] in file order */
	size_t		 n_access;
};

/* What the command line sets over the file (kept across reloads). */
struct config_overrides {
	const char	*socket_path;	/* -s */
	const char	*admin_socket_path; /* -a */
	const char	*models_dir;	/* -m */
	uint32_t	 threads;	/* -t; 0: not given */
	bool		 debug;		/* -d */
};

/* Defaults; is_root picks the root defaults where they differ. */
void config_default(struct config *c, bool is_root);
/*
 * Read path over c (defaults first: config_default). 0, or a negative
 * errno with a message in errbuf ("hearth.conf:3: keep_alive: 'x' is not
 * a duration"): -ENOENT when the file does not exist. c is left partly
 * updated on failure: config_free it.
 */
int  config_load(struct config *c, const char *path, char *errbuf,
	    size_t errsize);
/* Set the command line's values over c; 0 or -ENOMEM. */
int  config_apply(struct config *c, const struct config_overrides *o);
/* Free the strings and sections; NULL ok. c is left empty. */
void config_free(struct config *c);

/* "f16", "q8_0" (case-insensitive) -> *out; 0 or -EINVAL. */
int  config_kv_type_parse(const char *s, enum config_kv_type *out);
/* "f16", "q8_0"; "?" for anything else. */
const char *config_kv_type_name(enum config_kv_type t);
/* The KV type a model runs with: its [model] kv_type, else [daemon]'s. */
enum config_kv_type config_model_kv_type(const struct config *c,
	    const char *name);

/* The [model NAME] section of name, or NULL. */
const struct config_model *config_model_find(const struct config *c,
	    const char *name);

/* Parsers shared with the command line; 0 or -EINVAL/-ERANGE. */
int  config_parse_u32(const char *s, uint32_t min, uint32_t max,
	    uint32_t *out);
/* config_parse_size: units_parse_size ("64K", "1MiB"), then min..max. */
int  config_parse_size(const char *s, uint64_t min, uint64_t max,
	    uint64_t *out);
/* A duration in milliseconds ("300ms", "30", "5m"); "-1" gives -1. */
int  config_parse_duration_ms(const char *s, int64_t *out);
int  config_parse_bool(const char *s, bool *out);

#endif /* HEARTH_CONFIG_H */
