/*
 * config.c - hearthd's settings: defaults and hearth.conf.
 *
 * [daemon] keys (hearth.conf(5) has the details):
 *	socket		path of the listening socket (-s overrides)
 *	admin_socket	path of the admin socket (-a overrides; none)
 *	socket_mode	mode of the socket file, octal (0666 root, 0600 user)
 *	admin_socket_mode mode of the admin socket file, octal (0600)
 *	models		models directory (-m overrides)
 *	max_frame	frame body bytes, 1K..1G (16M)
 *	memory_budget	resident models' memory: "80%" or a size; admission
 *			and eviction (registry.c)
 *	pages		hugetlb, thp or small: the best kind of page for
 *			weights and KV caches
 *	numa		auto, local, interleave or replicate: the placement
 *			policy (decided and reported, not bound yet)
 *	keep_alive	duration a model stays resident once idle;
 *			-1 forever, 0 unload when idle; at most 2^31-1 s
 *	n_parallel	KV slots (sequences at once) per model, 1..256 (4)
 *	n_ctx		positions per slot, 0 (the model's training context,
 *			at most 4096) or 16..1048576; never above the model's
 *	n_batch		tokens per forward step, 1..65536 (512)
 *	kv_type		KV cache elements of every model, keys and values:
 *			f16 or q8_0 (f16); [model] kv_type overrides
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
 *	drain_timeout	SIGTERM: how long running requests may go on,
 *			0..1h (30s)
 *	sndbuf		SO_SNDBUF of client sockets, 0 (system default) or
 *			4K..64M
 *	external_links	follow symlinks that leave the models directory
 *			(yes for a user, no for root)
 *	debug		log debug lines (no; -d overrides)
 * [model NAME] keys: template, n_ctx, kv_type (f16 or q8_0), keep_alive, pin,
 * numa, preload.
 * [access NAME] keys: user, group, models, admin, max_connections,
 * max_requests, max_queued, max_prompt_tokens, max_tokens,
 * tokens_per_minute.
 *
 * libinih does the key = value lines; a reader wrapped around fgets
 * counts lines, refuses lines longer than libinih's buffer (it would
 * split them) and opens the sections, so that sections without keys
 * count and every error can name its line.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "budget.h"
#include "config.h"
#include "proto.h"
#include "template.h"
#include "units.h"

#define CONFIG_MAX_PATH	4096	/* bytes of a path value */

void
config_default(struct config *c, bool is_root)
{
	memset(c, 0, sizeof(*c));
	c->socket_mode = 0;
	c->admin_socket_mode = 0600;
	c->max_frame = PROTO_MAX_FRAME_DEFAULT;
	c->keep_alive = 300;
	c->n_parallel = 4;
	c->n_ctx = 0;
	c->n_batch = 512;
	c->kv_type = CONFIG_KV_F16;
	c->prefill_chunk = 128;
	c->max_queue = 64;
	c->threads = 0;
	c->max_connections = 256;
	c->max_requests = 64;
	c->max_models = 4;
	c->output_buffer = 1u << 20;
	c->pause_timeout_ms = 30000;
	c->drain_timeout_ms = 30000;
	c->sndbuf = 0;
	c->external_links = !is_root;
	c->debug = false;
}

static void
config_access_free(struct config_access *a)
{
	size_t i;

	free(a->name);
	free(a->users);
	free(a->groups);
	for (i = 0; i < a->n_models; i++)
		free(a->models[i]);
	free(a->models);
}

void
config_free(struct config *c)
{
	size_t i;

	if (c == NULL)
		return;
	free(c->socket_path);
	free(c->admin_socket_path);
	free(c->models_dir);
	free(c->template_name);
	free(c->memory_budget);
	for (i = 0; i < c->n_models; i++) {
		free(c->models[i].name);
		free(c->models[i].template_name);
	}
	free(c->models);
	for (i = 0; i < c->n_access; i++)
		config_access_free(&c->access[i]);
	free(c->access);
	memset(c, 0, sizeof(*c));
}

const struct config_model *
config_model_find(const struct config *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->n_models; i++)
		if (strcmp(c->models[i].name, name) == 0)
			return &c->models[i];
	return NULL;
}

/* Replace *dst by a copy of s (NULL: keep *dst). 0 or -ENOMEM. */
static int
config_set_str(char **dst, const char *s)
{
	char *p;

	if (s == NULL)
		return 0;
	if ((p = strdup(s)) == NULL)
		return -ENOMEM;
	free(*dst);
	*dst = p;
	return 0;
}

int
config_apply(struct config *c, const struct config_overrides *o)
{
	if (config_set_str(&c->socket_path, o->socket_path) < 0 ||
	    config_set_str(&c->admin_socket_path, o->admin_socket_path) < 0 ||
	    config_set_str(&c->models_dir, o->models_dir) < 0)
		return -ENOMEM;
	if (o->threads != 0)
		c->threads = o->threads;
	if (o->debug)
		c->debug = true;
	return 0;
}

/* ---- value parsers ---- */

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
	uint64_t v;
	int r;

	if ((r = units_parse_size(s, &v)) < 0)
		return r;
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

/* ---- parser state ---- */

enum config_sec {
	CONFIG_SEC_NONE,	/* before the first section */
	CONFIG_SEC_BAD,		/* a section header with an error */
	CONFIG_SEC_DAEMON,
	CONFIG_SEC_MODEL,
	CONFIG_SEC_ACCESS,
};

/* Parser state shared by the line reader and the inih callback. */
struct config_ctx {
	struct config	*c;
	FILE		*f;
	int		 lineno;	/* of the line being parsed */
	int		 err_line;	/* of the first error; 0: none */
	char		 err[CONFIG_ERR_MAX];	/* its message */
	enum config_sec	 sec;		/* the current section */
	size_t		 idx;		/* its index in c->models/access */
};

/* Keep the first error (with the current line); returns 0 (inih: error). */
static int __attribute__((format(printf, 2, 3)))
config_fail(struct config_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	if (ctx->err_line == 0) {
		ctx->err_line = ctx->lineno;
		va_start(ap, fmt);
		vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
		va_end(ap);
	}
	return 0;
}

/* Grow an array of elements of size sz by one; NULL when full/no memory. */
static void *
config_grow(void *arr, size_t n, size_t sz, size_t max)
{
	if (n >= max)
		return NULL;
	return realloc(arr, (n + 1) * sz);
}

/* ---- sections ---- */

/* "[model NAME]" and friends: open the section. */
static void
config_section(struct config_ctx *ctx, char *p)
{
	struct config *c = ctx->c;
	char *end, *type, *name;
	size_t i;
	void *v;

	ctx->sec = CONFIG_SEC_BAD;
	if ((end = strchr(p, ']')) == NULL) {
		config_fail(ctx, "section header without ']'");
		return;
	}
	*end = '\0';
	type = p + 1;
	while (isspace((unsigned char)*type))
		type++;
	for (name = type; *name != '\0' && !isspace((unsigned char)*name);
	    name++)
		;
	if (*name != '\0')
		*name++ = '\0';
	while (isspace((unsigned char)*name))
		name++;
	for (end = name + strlen(name); end > name &&
	    isspace((unsigned char)end[-1]); end--)
		end[-1] = '\0';

	if (strcmp(type, "daemon") == 0) {
		if (*name != '\0') {
			config_fail(ctx, "[daemon] takes no name");
			return;
		}
		ctx->sec = CONFIG_SEC_DAEMON;
		return;
	}
	if (strcmp(type, "model") != 0 && strcmp(type, "access") != 0) {
		config_fail(ctx, "unknown section [%s%s%s]: sections are "
		    "[daemon], [model NAME] and [access NAME]", type,
		    *name ? " " : "", name);
		return;
	}
	if (*name == '\0') {
		config_fail(ctx, "[%s] needs a name: [%s NAME]", type, type);
		return;
	}
	if (c->n_models + c->n_access >= CONFIG_MAX_SECTIONS) {
		config_fail(ctx, "more than %d sections", CONFIG_MAX_SECTIONS);
		return;
	}
	if (strcmp(type, "model") == 0) {
		if (proto_check_model_name(name, NULL) < 0) {
			config_fail(ctx, "[model %s]: not a model name", name);
			return;
		}
		for (i = 0; i < c->n_models; i++)
			if (strcmp(c->models[i].name, name) == 0) {
				config_fail(ctx, "[model %s] again (first at "
				    "line %d)", name, c->models[i].line);
				return;
			}
		if ((v = config_grow(c->models, c->n_models,
		    sizeof(*c->models), CONFIG_MAX_SECTIONS)) == NULL) {
			config_fail(ctx, "out of memory");
			return;
		}
		c->models = v;
		memset(&c->models[c->n_models], 0, sizeof(*c->models));
		if ((c->models[c->n_models].name = strdup(name)) == NULL) {
			config_fail(ctx, "out of memory");
			return;
		}
		c->models[c->n_models].line = ctx->lineno;
		ctx->idx = c->n_models++;
		ctx->sec = CONFIG_SEC_MODEL;
		return;
	}
	/* access */
	if (strlen(name) >= CONFIG_NAME_MAX) {
		config_fail(ctx, "[access %s]: name longer than %d bytes", name,
		    CONFIG_NAME_MAX - 1);
		return;
	}
	for (p = name; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' &&
		    *p != '.') {
			config_fail(ctx, "[access %s]: names are letters, "
			    "digits, '-', '_' and '.'", name);
			return;
		}
	for (i = 0; i < c->n_access; i++)
		if (strcmp(c->access[i].name, name) == 0) {
			config_fail(ctx, "[access %s] again (first at line %d)",
			    name, c->access[i].line);
			return;
		}
	if ((v = config_grow(c->access, c->n_access, sizeof(*c->access),
	    CONFIG_MAX_SECTIONS)) == NULL) {
		config_fail(ctx, "out of memory");
		return;
	}
	c->access = v;
	memset(&c->access[c->n_access], 0, sizeof(*c->access));
	if ((c->access[c->n_access].name = strdup(name)) == NULL) {
		config_fail(ctx, "out of memory");
		return;
	}
	c->access[c->n_access].line = ctx->lineno;
	c->access[c->n_access].all_models = true;
	c->access[c->n_access].max_connections = CONFIG_UNLIMITED;
	c->access[c->n_access].max_requests = CONFIG_UNLIMITED;
	c->access[c->n_access].max_queued = CONFIG_UNLIMITED;
	c->access[c->n_access].max_prompt_tokens = CONFIG_UNLIMITED;
	c->access[c->n_access].max_tokens = CONFIG_UNLIMITED;
	c->access[c->n_access].tokens_per_minute = CONFIG_UNLIMITED;
	ctx->idx = c->n_access++;
	ctx->sec = CONFIG_SEC_ACCESS;
}

/*
 * fgets for inih: count lines, refuse those too long for inih's buffer
 * (skipping the rest), open sections.
 */
static char *
config_reader(char *str, int num, void *stream)
{
	struct config_ctx *ctx = stream;
	char *p;
	size_t len;
	int ch;

	if (fgets(str, num, ctx->f) == NULL)
		return NULL;
	ctx->lineno++;
	len = strlen(str);
	if (len + 1 == (size_t)num && str[len - 1] != '\n' && !feof(ctx->f)) {
		while ((ch = fgetc(ctx->f)) != EOF && ch != '\n')
			;
		config_fail(ctx, "line longer than %d bytes", num - 2);
		str[0] = '\0';
		return str;
	}
	p = str;
	if (ctx->lineno == 1 && strncmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	if (*p == '[') {
		char line[256];

		snprintf(line, sizeof(line), "%s", p);
		config_section(ctx, line);
	}
	return str;
}

/* ---- [daemon] ---- */

static int
config_set_path(struct config_ctx *ctx, const char *key, const char *v,
    char **dst)
{
	if (*v == '\0' || strlen(v) >= CONFIG_MAX_PATH || *v != '/')
		return config_fail(ctx, "%s: '%s' is not an absolute path", key,
		    v);
	if (config_set_str(dst, v) < 0)
		return config_fail(ctx, "%s: out of memory", key);
	return 1;
}

static int
config_set_mode(struct config_ctx *ctx, const char *key, const char *v,
    uint32_t *dst)
{
	unsigned long m;
	char *e;

	errno = 0;
	m = strtoul(v, &e, 8);
	if (*v < '0' || *v > '7' || *e != '\0' || errno != 0 || m > 0777 ||
	    m == 0)
		return config_fail(ctx, "%s: '%s' is not a file mode (octal, "
		    "e.g. 0660)", key, v);
	*dst = (uint32_t)m;
	return 1;
}

static int
config_set_keep_alive(struct config_ctx *ctx, const char *v, int64_t *dst)
{
	int64_t ms;

	if (config_parse_duration_ms(v, &ms) < 0 ||
	    (ms >= 0 && ms / 1000 > PROTO_MAX_KEEP_ALIVE))
		return config_fail(ctx, "keep_alive: '%s' is not -1 or a "
		    "duration up to %d s", v, PROTO_MAX_KEEP_ALIVE);
	*dst = ms < 0 ? -1 : ms / 1000;
	return 1;
}

static int
config_set_template(struct config_ctx *ctx, const char *v, char **dst)
{
	struct tmpl t;

	if (tmpl_from_name(v, &t) < 0)
		return config_fail(ctx, "template: unknown template '%s'", v);
	if (config_set_str(dst, v) < 0)
		return config_fail(ctx, "template: out of memory");
	return 1;
}

static int
config_set_numa(struct config_ctx *ctx, const char *v, bool *has,
    enum numa_policy *dst)
{
	if (numa_policy_parse(v, dst) < 0)
		return config_fail(ctx, "numa: '%s' is not auto, local, "
		    "interleave or replicate", v);
	*has = true;
	return 1;
}

int
config_kv_type_parse(const char *s, enum config_kv_type *out)
{
	if (strcasecmp(s, "f16") == 0)
		*out = CONFIG_KV_F16;
	else if (strcasecmp(s, "q8_0") == 0)
		*out = CONFIG_KV_Q8_0;
	else
		return -EINVAL;
	return 0;
}

const char *
config_kv_type_name(enum config_kv_type t)
{
	switch (t) {
	case CONFIG_KV_F16:
		return "f16";
	case CONFIG_KV_Q8_0:
		return "q8_0";
	}
	return "?";
}

enum config_kv_type
config_model_kv_type(const struct config *c, const char *name)
{
	const struct config_model *cm = config_model_find(c, name);

	return cm != NULL && cm->has_kv_type ? cm->kv_type : c->kv_type;
}

static int
config_set_kv_type(struct config_ctx *ctx, const char *v,
    enum config_kv_type *dst)
{
	if (config_kv_type_parse(v, dst) < 0)
		return config_fail(ctx, "kv_type: '%s' is not f16 or q8_0", v);
	return 1;
}

static int
config_set_n_ctx(struct config_ctx *ctx, const char *v, uint32_t *dst)
{
	if (config_parse_u32(v, 0, 1u << 20, dst) < 0 ||
	    (*dst != 0 && *dst < 16))
		return config_fail(ctx, "n_ctx: '%s' is not 0 or in 16..%u", v,
		    1u << 20);
	return 1;
}

/* Unsigned [daemon] keys with their ranges. */
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
config_daemon_key(struct config_ctx *ctx, const char *key, const char *v)
{
	struct config *c = ctx->c;
	uint64_t u64;
	int64_t ms;
	size_t i;

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
	if (strcmp(key, "admin_socket") == 0)
		return config_set_path(ctx, key, v, &c->admin_socket_path);
	if (strcmp(key, "socket_mode") == 0)
		return config_set_mode(ctx, key, v, &c->socket_mode);
	if (strcmp(key, "admin_socket_mode") == 0)
		return config_set_mode(ctx, key, v, &c->admin_socket_mode);
	if (strcmp(key, "models") == 0)
		return config_set_path(ctx, key, v, &c->models_dir);
	if (strcmp(key, "keep_alive") == 0)
		return config_set_keep_alive(ctx, v, &c->keep_alive);
	if (strcmp(key, "max_frame") == 0) {
		if (config_parse_size(v, PROTO_MAX_FRAME_MIN,
		    PROTO_MAX_FRAME_LIMIT, &u64) < 0)
			return config_fail(ctx, "max_frame: '%s' is not in "
			    "%u..%u bytes", v, PROTO_MAX_FRAME_MIN,
			    PROTO_MAX_FRAME_LIMIT);
		c->max_frame = (uint32_t)u64;
		return 1;
	}
	if (strcmp(key, "n_ctx") == 0)
		return config_set_n_ctx(ctx, v, &c->n_ctx);
	if (strcmp(key, "kv_type") == 0)
		return config_set_kv_type(ctx, v, &c->kv_type);
	if (strcmp(key, "template") == 0)
		return config_set_template(ctx, v, &c->template_name);
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
	if (strcmp(key, "drain_timeout") == 0) {
		if (config_parse_duration_ms(v, &ms) < 0 || ms < 0 ||
		    ms > 3600000)
			return config_fail(ctx, "drain_timeout: '%s' is not "
			    "in 0..1h", v);
		c->drain_timeout_ms = (uint32_t)ms;
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
	if (strcmp(key, "memory_budget") == 0) {
		/* checked against a nominal 1 TiB; applied with real RAM */
		if (budget_parse(v, 1ull << 40, &u64) < 0)
			return config_fail(ctx, "memory_budget: '%s' is not "
			    "1%%..100%% or a size (K, M, G, T)", v);
		if (config_set_str(&c->memory_budget, v) < 0)
			return config_fail(ctx, "out of memory");
		return 1;
	}
	if (strcmp(key, "pages") == 0) {
		if (mem_pages_parse(v, &c->pages) < 0)
			return config_fail(ctx, "pages: '%s' is not hugetlb, "
			    "thp or small", v);
		c->has_pages = true;
		return 1;
	}
	if (strcmp(key, "numa") == 0)
		return config_set_numa(ctx, v, &c->has_numa, &c->numa);
	return config_fail(ctx, "unknown key '%s' in [daemon]", key);
}

/* ---- [model NAME] ---- */

static int
config_model_key(struct config_ctx *ctx, const char *key, const char *v)
{
	struct config_model *m = &ctx->c->models[ctx->idx];

	if (strcmp(key, "template") == 0)
		return config_set_template(ctx, v, &m->template_name);
	if (strcmp(key, "n_ctx") == 0)
		return config_set_n_ctx(ctx, v, &m->n_ctx);
	if (strcmp(key, "kv_type") == 0) {
		m->has_kv_type = true;
		return config_set_kv_type(ctx, v, &m->kv_type);
	}
	if (strcmp(key, "keep_alive") == 0) {
		m->has_keep_alive = true;
		return config_set_keep_alive(ctx, v, &m->keep_alive);
	}
	if (strcmp(key, "pin") == 0) {
		if (config_parse_bool(v, &m->pin) < 0)
			return config_fail(ctx, "pin: '%s' is not yes or no",
			    v);
		return 1;
	}
	if (strcmp(key, "preload") == 0) {
		if (config_parse_bool(v, &m->preload) < 0)
			return config_fail(ctx, "preload: '%s' is not yes or "
			    "no", v);
		return 1;
	}
	if (strcmp(key, "numa") == 0)
		return config_set_numa(ctx, v, &m->has_numa, &m->numa);
	return config_fail(ctx, "unknown key '%s' in [model %s]", key,
	    m->name);
}

/* ---- [access NAME] ---- */

/* The words of a list value, split at commas and white space. */
static char *
config_next_word(char **sp)
{
	char *s = *sp, *w;

	while (*s == ',' || isspace((unsigned char)*s))
		s++;
	if (*s == '\0')
		return NULL;
	w = s;
	while (*s != '\0' && *s != ',' && !isspace((unsigned char)*s))
		s++;
	if (*s != '\0')
		*s++ = '\0';
	*sp = s;
	return w;
}

/* A numeric id (not -1), or -EINVAL. */
static int
config_parse_id(const char *w, uint32_t *out)
{
	return config_parse_u32(w, 0, UINT32_MAX - 1, out);
}

/* user = / group =: names or numeric ids, added to the rule's lists. */
static int
config_access_ids(struct config_ctx *ctx, struct config_access *a,
    const char *key, const char *v)
{
	bool user = strcmp(key, "user") == 0;
	char buf[CONFIG_LINE_MAX + 2], *s = buf, *w;
	struct passwd *pw;
	struct group *gr;
	uint32_t id;
	void *arr;
	size_t *n = user ? &a->n_users : &a->n_groups;

	if (strcmp(a->name, CONFIG_DEFAULT_ACCESS) == 0)
		return config_fail(ctx, "[access %s] is for everyone no other "
		    "section matches: it takes no %s", a->name, key);
	snprintf(buf, sizeof(buf), "%s", v);
	if (*v == '\0')
		return config_fail(ctx, "%s: empty", key);
	while ((w = config_next_word(&s)) != NULL) {
		if (config_parse_id(w, &id) == 0)
			;
		else if (user) {
			errno = 0;
			if ((pw = getpwnam(w)) == NULL)
				return config_fail(ctx, "user: no user '%s'",
				    w);
			id = pw->pw_uid;
		} else {
			errno = 0;
			if ((gr = getgrnam(w)) == NULL)
				return config_fail(ctx, "group: no group '%s'",
				    w);
			id = gr->gr_gid;
		}
		if (user) {
			if ((arr = config_grow(a->users, *n, sizeof(uid_t),
			    CONFIG_MAX_LIST)) == NULL)
				return config_fail(ctx, "user: more than %d "
				    "users, or out of memory", CONFIG_MAX_LIST);
			a->users = arr;
			a->users[(*n)++] = (uid_t)id;
		} else {
			if ((arr = config_grow(a->groups, *n, sizeof(gid_t),
			    CONFIG_MAX_LIST)) == NULL)
				return config_fail(ctx, "group: more than %d "
				    "groups, or out of memory",
				    CONFIG_MAX_LIST);
			a->groups = arr;
			a->groups[(*n)++] = (gid_t)id;
		}
	}
	return 1;
}

/* models = a b c, or *. */
static int
config_access_models(struct config_ctx *ctx, struct config_access *a,
    const char *v)
{
	char buf[CONFIG_LINE_MAX + 2], *s = buf, *w, *copy;
	struct proto_err e;
	void *arr;

	snprintf(buf, sizeof(buf), "%s", v);
	if (!a->models_set) {
		/* the first models key replaces the default "*" */
		a->models_set = true;
		a->all_models = false;
	}
	while ((w = config_next_word(&s)) != NULL) {
		if (strcmp(w, "*") == 0) {
			a->all_models = true;
			continue;
		}
		memset(&e, 0, sizeof(e));
		if (proto_check_model_name(w, &e) < 0)
			return config_fail(ctx, "models: '%s': %s", w, e.msg);
		if ((arr = config_grow(a->models, a->n_models, sizeof(char *),
		    CONFIG_MAX_LIST)) == NULL)
			return config_fail(ctx, "models: more than %d, or out "
			    "of memory", CONFIG_MAX_LIST);
		a->models = arr;
		if ((copy = strdup(w)) == NULL)
			return config_fail(ctx, "out of memory");
		a->models[a->n_models++] = copy;
	}
	return 1;
}

/* A limit: a number in min..2^32-2, or "unlimited". */
static int
config_access_limit(struct config_ctx *ctx, const char *key, const char *v,
    uint32_t min, uint32_t *dst)
{
	if (strcmp(v, "unlimited") == 0) {
		*dst = CONFIG_UNLIMITED;
		return 1;
	}
	if (config_parse_u32(v, min, UINT32_MAX - 1, dst) < 0)
		return config_fail(ctx, "%s: '%s' is not a number from %u or "
		    "'unlimited'", key, v, min);
	return 1;
}

static int
config_access_key(struct config_ctx *ctx, const char *key, const char *v)
{
	struct config_access *a = &ctx->c->access[ctx->idx];

	if (strcmp(key, "user") == 0 || strcmp(key, "group") == 0)
		return config_access_ids(ctx, a, key, v);
	if (strcmp(key, "models") == 0)
		return config_access_models(ctx, a, v);
	if (strcmp(key, "admin") == 0) {
		if (config_parse_bool(v, &a->admin) < 0)
			return config_fail(ctx, "admin: '%s' is not yes or no",
			    v);
		return 1;
	}
	if (strcmp(key, "max_connections") == 0)
		return config_access_limit(ctx, key, v, 0,
		    &a->max_connections);
	if (strcmp(key, "max_requests") == 0)
		return config_access_limit(ctx, key, v, 0, &a->max_requests);
	if (strcmp(key, "max_queued") == 0)
		return config_access_limit(ctx, key, v, 0, &a->max_queued);
	if (strcmp(key, "max_prompt_tokens") == 0)
		return config_access_limit(ctx, key, v, 1,
		    &a->max_prompt_tokens);
	if (strcmp(key, "max_tokens") == 0)
		return config_access_limit(ctx, key, v, 1, &a->max_tokens);
	if (strcmp(key, "tokens_per_minute") == 0)
		return config_access_limit(ctx, key, v, 1,
		    &a->tokens_per_minute);
	return config_fail(ctx, "unknown key '%s' in [access %s]", key,
	    a->name);
}

static int
config_handler(void *user, const char *section, const char *key,
    const char *v)
{
	struct config_ctx *ctx = user;

	(void)section;		/* the reader opened it (inih cuts names) */
	switch (ctx->sec) {
	case CONFIG_SEC_NONE:
		return config_fail(ctx, "'%s' outside a section (the daemon's "
		    "settings go under [daemon])", key);
	case CONFIG_SEC_BAD:
		return 1;	/* the header's error is reported */
	case CONFIG_SEC_DAEMON:
		return config_daemon_key(ctx, key, v);
	case CONFIG_SEC_MODEL:
		return config_model_key(ctx, key, v);
	case CONFIG_SEC_ACCESS:
		return config_access_key(ctx, key, v);
	}
	return 0;
}

int
config_load(struct config *c, const char *path, char *errbuf, size_t errsize)
{
	struct config_ctx ctx;
	int line, r;

	memset(&ctx, 0, sizeof(ctx));
	ctx.c = c;
	ctx.sec = CONFIG_SEC_NONE;
	if ((ctx.f = fopen(path, "re")) == NULL) {
		r = -errno;
		snprintf(errbuf, errsize, "%s: %s", path, strerror(errno));
		return r;
	}
	line = ini_parse_stream(config_reader, &ctx, config_handler, &ctx);
	if (ferror(ctx.f) && ctx.err_line == 0) {
		fclose(ctx.f);
		snprintf(errbuf, errsize, "%s: read error", path);
		return -EIO;
	}
	fclose(ctx.f);
	if (line < 0) {
		snprintf(errbuf, errsize, "%s: out of memory", path);
		return -ENOMEM;
	}
	if (line == 0 && ctx.err_line == 0)
		return 0;
	if (ctx.err_line != 0 && (line == 0 || ctx.err_line <= line))
		snprintf(errbuf, errsize, "%s:%d: %s", path, ctx.err_line,
		    ctx.err);
	else
		snprintf(errbuf, errsize, "%s:%d: syntax error (not 'key = "
		    "value', '[section]' or a comment)", path, line);
	return -EINVAL;
}
