/*
 * config.h - hearthd's settings: defaults, the configuration file
 * (an INI file read with libinih) and their limits.
 *
 * The file holds "key = value" lines, optionally under a [hearthd]
 * section; '#' and ';' start comments. Every key is listed with its
 * range in config.c; an unknown key or a value out of range is an error
 * naming the line. Sizes take K, M or G suffixes (binary), durations
 * ms, s, m or h (seconds when bare).
 */
#ifndef HEARTH_CONFIG_H
#define HEARTH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_ERR_MAX	256

struct config {
	char		*socket_path;	/* listening socket; NULL: default */
	char		*models_dir;	/* models directory; NULL: default */
	int64_t		 keep_alive;	/* seconds a model stays resident once
					 * idle: -1 forever, 0 unload at once
					 * (300) */
	uint32_t	 max_frame;	/* frame body bytes (16 MiB) */
	uint32_t	 n_parallel;	/* KV slots per model (4) */
	uint32_t	 n_ctx;		/* positions per slot; 0: the model's
					 * training context, at most 4096 */
	uint32_t	 n_batch;	/* tokens per forward step (512) */
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
	uint32_t	 sndbuf;	/* SO_SNDBUF of client sockets; 0: the
					 * system's default */
	bool		 external_links; /* follow symlinks in the models
					 * directory that point outside it
					 * (true for a user, false for root) */
	bool		 debug;		/* log debug lines */
};

/* Defaults; is_root picks the root defaults where they differ. */
void config_default(struct config *c, bool is_root);
/*
 * Read path over c. 0, or a negative errno with a message in errbuf
 * ("hearthd.conf:3: keep_alive: 'x' is not a duration"). c may be
 * partly updated on failure.
 */
int  config_load(struct config *c, const char *path, char *errbuf,
	    size_t errsize);
/* Free the strings; NULL ok. */
void config_free(struct config *c);

/* Parsers shared with the command line; 0 or -EINVAL/-ERANGE. */
int  config_parse_u32(const char *s, uint32_t min, uint32_t max,
	    uint32_t *out);
int  config_parse_size(const char *s, uint64_t min, uint64_t max,
	    uint64_t *out);
/* A duration in milliseconds ("300ms", "30", "5m"); "-1" gives -1. */
int  config_parse_duration_ms(const char *s, int64_t *out);
int  config_parse_bool(const char *s, bool *out);

#endif /* HEARTH_CONFIG_H */
