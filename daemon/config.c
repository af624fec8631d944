/*
 * config.c - hearthd's settings: defaults and the INI configuration file.
 *
 * Keys (all optional; the section, if any, must be [hearthd]):
 *	socket		path of the listening socket (-s overrides)
 *	models		models directory (-m overrides)
 *	keep_alive	duration a model stays resident once idle;
 *			-1 forever, 0 unload when idle; at most 2^31-1 s
 *	max_frame	frame body bytes, 1K..1G (16M)
 *	n_parallel	KV slots (sequences at once) per model, 1..256 (4)
 *	n_ctx		positions per slot, 0 (the model's training context,
 *			at most 4096) or 16..1048576; never above the model's
 *	n_batch		tokens per forward step, 1..65536 (512)
 *	prefill_chunk	prompt tokens per sequence per step, 1..65536 (128)
 *	max_queue	requests waiting for a slot per model, 1..65536 (64)
 *	threads		compute threads per model, 0..256 (0: $HEARTH_THREADS,
 *			else one per physical core; -t overrides)
 *	template	fallback chat template family ("chatml", ...) for
 *			models whose template is missing or unknown
 *	max_connections	open client connections, 1..65536 (256)
 *	max_requests	requests in flight per connection, 1..65536 (64)
 *	max_models	resident models, 1..256 (4)
 *	output_buffer	bytes queued for a client before its streams are
 *			paused, 4K..1G (1M)
 *	pause_timeout	how long a paused client may take to drain before
 *			its requests are cancelled and it is closed,
 *			10ms..1h (30s)
 *	sndbuf		SO_SNDBUF of client sockets, 0 (system default) or
 *			4K..64M
 *	external_links	follow symlinks that leave the models directory
 *			(yes for a user, no for root)
 *	debug		log debug lines (no; -d overrides)
 */
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "proto.h"
#include "template.h"

#define CONFIG_MAX_PATH	4096	/* bytes of a path value */

void
config_default(struct config *c, bool is_root)
{
	memset(c, 0, sizeof(*c));
	c->keep_alive = 300;
	c->max_frame = PROTO_MAX_FRAME_DEFAULT;
	c->n_parallel = 4;
	c->n_ctx = 0;
	c->n_batch = 512;
	c->prefill_chunk = 128;
	c->max_queue = 64;
	c->threads = 0;
	c->max_connections = 256;
	c->max_requests = 64;
	c->max_models = 4;
	c->output_buffer = 1u << 20;
	c->pause_timeout_ms = 30000;
	c->sndbuf = 0;
	c->external_links = !is_root;
	c->debug = false;
}

void
config_free(struct config *c)
{
	if (c == NULL)
		return;
	free(c->socket_path);
	free(c->models_dir);
	free(c->template_name);
	c->socket_path = c->models_dir = c->template_name = NULL;
}

/* A whole decimal number, no sign games, no trailing junk. */
static int
config_parse_ull(const char *s, unsigned long long *out, const char **end)
{
	char *e;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &e, 10);
	if (errno == ERANGE)
		return -ERANGE;
	*end = e;
	return 0;
}

int
config_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	unsigned long long v;
	const char *e;
	int r;

	if ((r = config_parse_ull(s, &v, &e)) < 0)
		return r;
	if (*e != '\0')
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

int
config_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v, mul = 1;
	const char *e;
	int r;

	if ((r = config_parse_ull(s, &v, &e)) < 0)
		return r;
	if (strcasecmp(e, "k") == 0 || strcasecmp(e, "kib") == 0)
		mul = 1ull << 10;
	else if (strcasecmp(e, "m") == 0 || strcasecmp(e, "mib") == 0)
		mul = 1ull << 20;
	else if (strcasecmp(e, "g") == 0 || strcasecmp(e, "gib") == 0)
		mul = 1ull << 30;
	else if (*e != '\0' && strcasecmp(e, "b") != 0)
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	v *= mul;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int
config_parse_duration_ms(const char *s, int64_t *out)
{
	unsigned long long v, mul;
	const char *e;
	int r;

	if (s != NULL && strcmp(s, "-1") == 0) {
		*out = -1;
		return 0;
	}
	if ((r = config_parse_ull(s, &v, &e)) < 0)
		return r;
	if (strcmp(e, "ms") == 0)
		mul = 1;
	else if (*e == '\0' || strcmp(e, "s") == 0)
		mul = 1000;
	else if (strcmp(e, "m") == 0 || strcmp(e, "min") == 0)
		mul = 60000;
	else if (strcmp(e, "h") == 0)
		mul = 3600000;
	else
		return -EINVAL;
	if (v > (unsigned long long)INT64_MAX / mul)
		return -ERANGE;
	*out = (int64_t)(v * mul);
	return 0;
}

int
config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Parser state handed to the inih callback. */
struct config_ctx {
	struct config	*c;
	char		 err[CONFIG_ERR_MAX];	/* first error, "" if none */
};

/* Set ctx->err unless an earlier error is kept; returns 0 (inih: error). */
static int __attribute__((format(printf, 2, 3)))
config_fail(struct config_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	if (ctx->err[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
		va_end(ap);
	}
	return 0;
}

static int
config_set_path(struct config_ctx *ctx, const char *key, const char *v,
    char **dst)
{
	char *s;

	if (*v == '\0' || strlen(v) >= CONFIG_MAX_PATH)
		return config_fail(ctx, "%s: empty or too long", key);
	if ((s = strdup(v)) == NULL)
		return config_fail(ctx, "%s: out of memory", key);
	free(*dst);
	*dst = s;
	return 1;
}

/* Unsigned keys with their ranges. */
static const struct config_u32_key {
	const char	*key;
	size_t		 off;	/* offsetof(struct config, field) */
	uint32_t	 min, max;
} config_u32_keys[] = {
	{ "n_parallel", offsetof(struct config, n_parallel), 1, 256 },
	{ "n_batch", offsetof(struct config, n_batch), 1, 65536 },
	{ "prefill_chunk", offsetof(struct config, prefill_chunk), 1, 65536 },
	{ "max_queue", offsetof(struct config, max_queue), 1, 65536 },
	{ "threads", offsetof(struct config, threads), 0, 256 },
	{ "max_connections", offsetof(struct config, max_connections), 1,
	    65536 },
	{ "max_requests", offsetof(struct config, max_requests), 1, 65536 },
	{ "max_models", offsetof(struct config, max_models), 1, 256 },
};

static int
config_handler(void *user, const char *section, const char *key,
    const char *v)
{
	struct config_ctx *ctx = user;
	struct config *c = ctx->c;
	struct tmpl t;
	uint64_t u64;
	int64_t ms;
	size_t i;
	char *s;

	if (*section != '\0' && strcmp(section, "hearthd") != 0)
		return config_fail(ctx, "unknown section [%s]", section);
	for (i = 0; i < sizeof(config_u32_keys) / sizeof(config_u32_keys[0]);
	    i++) {
		const struct config_u32_key *k = &config_u32_keys[i];

		if (strcmp(key, k->key) != 0)
			continue;
		if (config_parse_u32(v, k->min, k->max,
		    (uint32_t *)(void *)((char *)c + k->off)) < 0)
			return config_fail(ctx, "%s: '%s' is not in %u..%u",
			    key, v, k->min, k->max);
		return 1;
	}
	if (strcmp(key, "socket") == 0)
		return config_set_path(ctx, key, v, &c->socket_path);
	if (strcmp(key, "models") == 0)
		return config_set_path(ctx, key, v, &c->models_dir);
	if (strcmp(key, "keep_alive") == 0) {
		if (config_parse_duration_ms(v, &ms) < 0 ||
		    (ms >= 0 && ms / 1000 > PROTO_MAX_KEEP_ALIVE))
			return config_fail(ctx, "keep_alive: '%s' is not -1 "
			    "or a duration up to %d s", v, PROTO_MAX_KEEP_ALIVE);
		c->keep_alive = ms < 0 ? -1 : ms / 1000;
		return 1;
	}
	if (strcmp(key, "max_frame") == 0) {
		if (config_parse_size(v, PROTO_MAX_FRAME_MIN,
		    PROTO_MAX_FRAME_LIMIT, &u64) < 0)
			return config_fail(ctx, "max_frame: '%s' is not in "
			    "%u..%u bytes", v, PROTO_MAX_FRAME_MIN,
			    PROTO_MAX_FRAME_LIMIT);
		c->max_frame = (uint32_t)u64;
		return 1;
	}
	if (strcmp(key, "n_ctx") == 0) {
		if (config_parse_u32(v, 0, 1u << 20, &c->n_ctx) < 0 ||
		    (c->n_ctx != 0 && c->n_ctx < 16))
			return config_fail(ctx, "n_ctx: '%s' is not 0 or in "
			    "16..%u", v, 1u << 20);
		return 1;
	}
	if (strcmp(key, "template") == 0) {
		if (tmpl_from_name(v, &t) < 0)
			return config_fail(ctx, "template: unknown template "
			    "'%s'", v);
		if ((s = strdup(v)) == NULL)
			return config_fail(ctx, "template: out of memory");
		free(c->template_name);
		c->template_name = s;
		return 1;
	}
	if (strcmp(key, "output_buffer") == 0) {
		if (config_parse_size(v, 4096, 1u << 30, &u64) < 0)
			return config_fail(ctx, "output_buffer: '%s' is not "
			    "in 4K..1G", v);
		c->output_buffer = (size_t)u64;
		return 1;
	}
	if (strcmp(key, "pause_timeout") == 0) {
		if (config_parse_duration_ms(v, &ms) < 0 || ms < 10 ||
		    ms > 3600000)
			return config_fail(ctx, "pause_timeout: '%s' is not "
			    "in 10ms..1h", v);
		c->pause_timeout_ms = (uint32_t)ms;
		return 1;
	}
	if (strcmp(key, "sndbuf") == 0) {
		if (config_parse_size(v, 0, 64u << 20, &u64) < 0 ||
		    (u64 != 0 && u64 < 4096))
			return config_fail(ctx, "sndbuf: '%s' is not 0 or in "
			    "4K..64M", v);
		c->sndbuf = (uint32_t)u64;
		return 1;
	}
	if (strcmp(key, "external_links") == 0) {
		if (config_parse_bool(v, &c->external_links) < 0)
			return config_fail(ctx, "external_links: '%s' is not "
			    "yes or no", v);
		return 1;
	}
	if (strcmp(key, "debug") == 0) {
		if (config_parse_bool(v, &c->debug) < 0)
			return config_fail(ctx, "debug: '%s' is not yes or no",
			    v);
		return 1;
	}
	return config_fail(ctx, "unknown key '%s'", key);
}

int
config_load(struct config *c, const char *path, char *errbuf, size_t errsize)
{
	struct config_ctx ctx;
	int line;

	ctx.c = c;
	ctx.err[0] = '\0';
	line = ini_parse(path, config_handler, &ctx);
	if (line == 0)
		return 0;
	if (line < 0) {
		snprintf(errbuf, errsize, "%s: %s", path, line == -1 ?
		    "cannot open" : "out of memory");
		return line == -1 ? -ENOENT : -ENOMEM;
	}
	snprintf(errbuf, errsize, "%s:%d: %s", path, line, ctx.err[0] ?
	    ctx.err : "syntax error");
	return -EINVAL;
}
