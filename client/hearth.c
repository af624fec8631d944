/*
 * hearth.c - the command-line client of hearthd, for people and
 * pipelines. Written only against libhearth (include/hearth.h).
 *
 *	hearth [-s SOCKET] COMMAND [OPTIONS] [ARGS]
 *
 * Pipeline rules: colours and progress bars only on a terminal; a
 * closed output pipe ends the command quietly (status 0, the request
 * is cancelled); any error is one line on standard error and status 1
 * (2 for bad usage); Ctrl-C cancels the running request on the server
 * and exits 130 once it has ended (a second Ctrl-C exits at once).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "hearth.h"

#define EXIT_USAGE	2
#define EXIT_INTR	130
#define MAX_STOP	64		/* --stop options */
#define DIM		"\033[2m"
#define RESET		"\033[0m"

static struct hearth *volatile	 g_h;		/* for the SIGINT handler */
static volatile sig_atomic_t	 g_intr;	/* Ctrl-C seen */
static const char		*g_cmd = "hearth";	/* for messages */

/* ---- errors and output ---- */

static void
msg_line(const char *prefix, const char *fmt, va_list ap)
{
	char	 buf[2048];
	size_t	 i;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* one line: no control characters from anywhere */
	for (i = 0; buf[i] != '\0'; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = ' ';
	fprintf(stderr, "%s: %s\n", prefix, buf);
}

static void __attribute__((noreturn))
leave(int status)
{
	struct hearth	*h = g_h;

	g_h = NULL;	/* first: the SIGINT handler must not see it closed */
	hearth_close(h);
	exit(status);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die_usage(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	msg_line("hearth", fmt, ap);
	va_end(ap);
	leave(EXIT_USAGE);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	msg_line("hearth", fmt, ap);
	va_end(ap);
	leave(EXIT_FAILURE);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
usage_err(const char *fmt, ...)
{
	char	 buf[1024];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	die_usage("%s (see hearth --help)", buf);
}

/* A library call failed: interrupted, or one line with its message. */
static void __attribute__((noreturn))
die_h(int rc)
{
	if (rc == -ECANCELED || g_intr)
		leave(EXIT_INTR);
	die("%s: %s", g_cmd, hearth_errmsg(g_h));
}

/* Standard output failed: a closed pipe is a normal end. */
static void __attribute__((noreturn))
die_out(int err)
{
	if (err == EPIPE)
		leave(EXIT_SUCCESS);
	die("standard output: %s", strerror(err));
}

static bool
out_write(const void *p, size_t len)
{
	if (len > 0 && fwrite(p, 1, len, stdout) != len)
		return false;
	return !ferror(stdout);
}

static void
out_flush(void)
{
	if (fflush(stdout) != 0 || ferror(stdout))
		die_out(errno);
}

static void
out_puts(const char *s)
{
	if (!out_write(s, strlen(s)))
		die_out(errno);
}

static void __attribute__((format(printf, 1, 2)))
out_printf(const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	if (n < 0 || ferror(stdout))
		die_out(errno);
}

/* One JSON value on a line of its own; consumes v. */
static void
out_json(json_t *v)
{
	char	*s;

	if (v == NULL)
		die("out of memory");
	s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(9) |
	    JSON_ENCODE_ANY);
	json_decref(v);
	if (s == NULL)
		die("out of memory");
	if (!out_write(s, strlen(s)) || !out_write("\n", 1)) {
		free(s);
		die_out(errno);
	}
	free(s);
}

static json_t *
jreal(double v)
{
	json_t	*j = isfinite(v) ? json_real(v) : NULL;

	return j != NULL ? j : json_null();
}

/* Set a key; memory failures end the program. */
static void
jset(json_t *o, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(o, key, v) != 0)
		die("out of memory");
}

static void
jappend(json_t *a, json_t *v)
{
	if (v == NULL || json_array_append_new(a, v) != 0)
		die("out of memory");
}

static bool
color_ok(FILE *f)
{
	const char	*nc = getenv("NO_COLOR");
	const char	*term = getenv("TERM");

	if (nc != NULL && *nc != '\0')
		return false;
	if (term != NULL && strcmp(term, "dumb") == 0)
		return false;
	return isatty(fileno(f));
}

/* ---- signals ---- */

static void
on_sigint(int sig)
{
	(void)sig;
	if (g_intr)
		_exit(EXIT_INTR);	/* second Ctrl-C: now */
	g_intr = 1;
	if (g_h != NULL)
		hearth_interrupt(g_h);
}

static void
signals_init(void)
{
	struct sigaction	 sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	/* no SA_RESTART: a read of standard input sees EINTR */
	sa.sa_handler = on_sigint;
	sigaction(SIGINT, &sa, NULL);
}

/* ---- input ---- */

struct buf {
	char	*p;	/* [len] bytes + NUL, malloc'd */
	size_t	 len;
	size_t	 cap;
};

static void
buf_add(struct buf *b, const void *p, size_t len)
{
	size_t	 cap;
	char	*n;

	if (b->len + len + 1 > b->cap) {
		cap = b->cap > 0 ? b->cap : 4096;
		while (cap < b->len + len + 1)
			cap *= 2;
		if ((n = realloc(b->p, cap)) == NULL)
			die("out of memory");
		b->p = n;
		b->cap = cap;
	}
	if (len > 0)
		memcpy(b->p + b->len, p, len);
	b->len += len;
	b->p[b->len] = '\0';
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* All of f, at most max bytes. */
static void
read_all(FILE *f, const char *what, size_t max, struct buf *b)
{
	char	 chunk[65536];
	size_t	 n;

	buf_add(b, "", 0);
	for (;;) {
		n = fread(chunk, 1, sizeof(chunk), f);
		if (n > 0) {
			if (b->len + n > max)
				die("%s: more than %zu bytes, the server's "
				    "limit", what, max);
			buf_add(b, chunk, n);
		}
		if (n < sizeof(chunk)) {
			if (ferror(f)) {
				if (errno == EINTR && g_intr)
					leave(EXIT_INTR);
				if (errno == EINTR) {
					clearerr(f);
					continue;
				}
				die("%s: %s", what, strerror(errno));
			}
			if (feof(f))
				break;
		}
	}
}

static size_t
max_text(void)
{
	struct hearth_limits	 l;

	hearth_limits(g_h, &l);
	return l.max_text;
}

/* ---- numbers ---- */

static long long
num_ll(const char *opt, const char *s, long long lo, long long hi)
{
	char		*end;
	long long	 v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		usage_err("%s: '%s' is not an integer in %lld..%lld", opt, s,
		    lo, hi);
	return v;
}

static uint64_t
num_u64(const char *opt, const char *s)
{
	char			*end;
	unsigned long long	 v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || *s == '-')
		usage_err("%s: '%s' is not a non-negative integer", opt, s);
	return v;
}

static float
num_f(const char *opt, const char *s)
{
	char	*end;
	double	 v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
		usage_err("%s: '%s' is not a number", opt, s);
	return (float)v;
}

static void
human_bytes(char *out, size_t size, uint64_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double	 v = (double)n;
	int	 u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, size, "%" PRIu64 " B", n);
	else
		snprintf(out, size, "%.1f %s", v, units[u]);
}

static void
human_count(char *out, size_t size, uint64_t n)
{
	if (n == 0)
		snprintf(out, size, "-");
	else if (n >= 1000000000)
		snprintf(out, size, "%.1fB", n / 1e9);
	else if (n >= 1000000)
		snprintf(out, size, "%.1fM", n / 1e6);
	else if (n >= 1000)
		snprintf(out, size, "%.1fK", n / 1e3);
	else
		snprintf(out, size, "%" PRIu64, n);
}

static void
human_secs(char *out, size_t size, int64_t s)
{
	if (s < 0)
		snprintf(out, size, "forever");
	else if (s >= 3600)
		snprintf(out, size, "%" PRId64 "h%02" PRId64 "m", s / 3600,
		    s % 3600 / 60);
	else if (s >= 60)
		snprintf(out, size, "%" PRId64 "m%02" PRId64 "s", s / 60,
		    s % 60);
	else
		snprintf(out, size, "%" PRId64 "s", s);
}

/* ---- options ---- */

enum opt_id {
	O_SOCKET = 's',
	O_HELP = 'h',
	O_JSON = 256,
	O_TEMPERATURE,
	O_TOP_K,
	O_TOP_P,
	O_MIN_P,
	O_REPEAT_PENALTY,
	O_SEED,
	O_MAX_TOKENS,
	O_STOP,
	O_TOP_LOGPROBS,
	O_KEEP_ALIVE,
	O_HIDE_THINKING,
	O_NO_THINKING,
	O_THINKING,
	O_TEMPLATE,
	O_SYSTEM,
	O_NO_BOS,
	O_SPECIAL,
	O_IDS,
	O_TOP,
	O_WINDOW,
	O_STRIDE,
	O_PIN,
	O_UNPIN,
	O_NUMA,
};

static const struct option long_opts[] = {
	{ "socket",		required_argument, NULL, O_SOCKET },
	{ "help",		no_argument,	   NULL, O_HELP },
	{ "json",		no_argument,	   NULL, O_JSON },
	{ "temperature",	required_argument, NULL, O_TEMPERATURE },
	{ "top-k",		required_argument, NULL, O_TOP_K },
	{ "top-p",		required_argument, NULL, O_TOP_P },
	{ "min-p",		required_argument, NULL, O_MIN_P },
	{ "repeat-penalty",	required_argument, NULL, O_REPEAT_PENALTY },
	{ "seed",		required_argument, NULL, O_SEED },
	{ "max-tokens",		required_argument, NULL, O_MAX_TOKENS },
	{ "stop",		required_argument, NULL, O_STOP },
	{ "top-logprobs",	required_argument, NULL, O_TOP_LOGPROBS },
	{ "keep-alive",		required_argument, NULL, O_KEEP_ALIVE },
	{ "hide-thinking",	no_argument,	   NULL, O_HIDE_THINKING },
	{ "no-thinking",	no_argument,	   NULL, O_NO_THINKING },
	{ "thinking",		no_argument,	   NULL, O_THINKING },
	{ "template",		required_argument, NULL, O_TEMPLATE },
	{ "system",		required_argument, NULL, O_SYSTEM },
	{ "no-bos",		no_argument,	   NULL, O_NO_BOS },
	{ "special",		no_argument,	   NULL, O_SPECIAL },
	{ "ids",		no_argument,	   NULL, O_IDS },
	{ "top",		required_argument, NULL, O_TOP },
	{ "window",		required_argument, NULL, O_WINDOW },
	{ "stride",		required_argument, NULL, O_STRIDE },
	{ "pin",		no_argument,	   NULL, O_PIN },
	{ "unpin",		no_argument,	   NULL, O_UNPIN },
	{ "numa",		required_argument, NULL, O_NUMA },
	{ NULL, 0, NULL, 0 }
};

/* Everything the options of any command set. */
struct opts {
	const char		*socket;
	bool			 json;
	struct hearth_gen_params gen;
	const char		*stop[MAX_STOP];
	bool			 hide_thinking;
	const char		*system;
	bool			 no_bos;
	bool			 special;
	bool			 ids;
	uint32_t		 top;
	int64_t			 keep_alive;
	long long		 window;	/* 0: default */
	long long		 stride;	/* 0: default */
	unsigned		 load_flags;	/* HEARTH_LOAD_PIN, _UNPIN */
	unsigned		 load_numa;	/* HEARTH_LOAD_NUMA_*, or 0 */
};

/* Option groups, for the table of commands. */
#define G_JSON		(1u << 0)
#define G_SAMPLE	(1u << 1)	/* sampling and generation */
#define G_THINK		(1u << 2)	/* --hide-thinking */
#define G_CHAT		(1u << 3)	/* --system */
#define G_TMPL		(1u << 4)	/* --template, --[no-]thinking */
#define G_BOS		(1u << 5)	/* --no-bos */
#define G_SPECIAL	(1u << 6)
#define G_IDS		(1u << 7)
#define G_TOP		(1u << 8)
#define G_KEEP		(1u << 9)	/* --keep-alive */
#define G_PPL		(1u << 10)	/* --window, --stride */
#define G_PIN		(1u << 11)	/* --pin, --unpin, --numa */

static unsigned
opt_group(int id)
{
	switch (id) {
	case O_JSON:
		return G_JSON;
	case O_TEMPERATURE:
	case O_TOP_K:
	case O_TOP_P:
	case O_MIN_P:
	case O_REPEAT_PENALTY:
	case O_SEED:
	case O_MAX_TOKENS:
	case O_STOP:
	case O_TOP_LOGPROBS:
		return G_SAMPLE;
	case O_HIDE_THINKING:
		return G_THINK;
	case O_SYSTEM:
		return G_CHAT;
	case O_NO_THINKING:
	case O_THINKING:
	case O_TEMPLATE:
		return G_TMPL;
	case O_NO_BOS:
		return G_BOS;
	case O_SPECIAL:
		return G_SPECIAL;
	case O_IDS:
		return G_IDS;
	case O_TOP:
		return G_TOP;
	case O_KEEP_ALIVE:
		return G_KEEP;
	case O_WINDOW:
	case O_STRIDE:
		return G_PPL;
	case O_PIN:
	case O_UNPIN:
	case O_NUMA:
		return G_PIN;
	default:
		return 0;	/* --socket, --help: everywhere */
	}
}

static const char *
opt_name(int id)
{
	const struct option	*o;

	for (o = long_opts; o->name != NULL; o++)
		if (o->val == id)
			return o->name;
	return "?";
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: hearth [-s SOCKET] COMMAND [OPTIONS] [ARGS]\n"
"\n"
"Commands:\n"
"  run MODEL [PROMPT...]   generate from the prompt (else standard input);\n"
"                          prints only the generated text\n"
"  chat MODEL              talk: one line of standard input per turn\n"
"  list                    models in the daemon's models directory\n"
"  show MODEL              a model's metadata\n"
"  ps                      resident models\n"
"  load MODEL              load a model (progress bar on a terminal)\n"
"  unload MODEL            unload a model\n"
"  tokenize MODEL          standard input to token ids, on one line\n"
"  detokenize MODEL        token ids on standard input to text\n"
"  embed MODEL [TEXT...]   the embedding of the text (else standard input)\n"
"  eval MODEL              score standard input: one JSON line per position\n"
"  perplexity MODEL FILE   perplexity of FILE ('-': standard input)\n"
"  template MODEL          the prompt for a JSON list of messages on stdin\n"
"  stats                   the daemon's counters\n"
"\n"
"Options (the commands that take them in parentheses):\n"
"  -s, --socket PATH       the daemon's socket (default: $HEARTH_SOCKET,\n"
"                          $XDG_RUNTIME_DIR/" HEARTH_SOCKET_USER ", "
HEARTH_SOCKET_SYSTEM ")\n"
"                          (all)\n"
"  --json                  JSON output; NDJSON events for run and chat\n"
"                          (run, chat, list, show, ps, load, tokenize, embed,\n"
"                          perplexity, stats)\n"
"  --temperature T, --top-k K, --top-p P, --min-p P, --repeat-penalty R,\n"
"  --seed N, --max-tokens N, --stop TEXT (repeatable), --top-logprobs N\n"
"                          generation (run, chat)\n"
"  --hide-thinking         leave out the thinking channel, also its --json\n"
"                          events (run, chat)\n"
"  --keep-alive SECONDS    how long the model stays loaded (-1 forever)\n"
"                          (run, chat, load)\n"
"  --pin, --unpin          keep the model resident, never evicted; undo (load)\n"
"  --numa POLICY           NUMA placement: auto, local, interleave, replicate\n"
"                          (load)\n"
"  --system TEXT           begin with a system message (chat)\n"
"  --template NAME, --thinking, --no-thinking\n"
"                          chat template options (chat, template)\n"
"  --no-bos                no beginning-of-sequence token (tokenize, eval,\n"
"                          perplexity)\n"
"  --special               special tokens as text (tokenize, detokenize)\n"
"  --ids                   input is token ids (eval, embed)\n"
"  --top N                 alternatives per position (eval)\n"
"  --window N, --stride N  perplexity windows (default 512 or the context,\n"
"                          stride half a window) (perplexity)\n");
}

static void
opts_parse(int argc, char **argv, unsigned groups, struct opts *o)
{
	int	 c;

	optind = 0;	/* glibc: start over */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:h", long_opts, NULL)) != -1) {
		if (c == '?') {
			if (optopt != 0)
				usage_err("%s: unknown option '-%c'", g_cmd,
				    optopt);
			usage_err("%s: unknown option '%s'", g_cmd,
			    argv[optind - 1]);
		}
		if (c == ':')
			usage_err("%s: option '%s' needs a value", g_cmd,
			    argv[optind - 1]);
		if (opt_group(c) != 0 && (opt_group(c) & groups) == 0)
			usage_err("%s: option --%s does not apply", g_cmd,
			    opt_name(c));
		switch (c) {
		case O_SOCKET:
			o->socket = optarg;
			break;
		case O_HELP:
			usage(stdout);
			leave(EXIT_SUCCESS);
		case O_JSON:
			o->json = true;
			break;
		case O_TEMPERATURE:
			o->gen.temperature = num_f("--temperature", optarg);
			break;
		case O_TOP_K:
			o->gen.top_k = (int32_t)num_ll("--top-k", optarg, 0,
			    INT32_MAX);
			break;
		case O_TOP_P:
			o->gen.top_p = num_f("--top-p", optarg);
			break;
		case O_MIN_P:
			o->gen.min_p = num_f("--min-p", optarg);
			break;
		case O_REPEAT_PENALTY:
			o->gen.repeat_penalty = num_f("--repeat-penalty",
			    optarg);
			break;
		case O_SEED:
			o->gen.seed = num_u64("--seed", optarg);
			o->gen.has_seed = true;
			break;
		case O_MAX_TOKENS:
			o->gen.max_tokens = (int32_t)num_ll("--max-tokens",
			    optarg, 0, INT32_MAX);
			break;
		case O_STOP:
			if (o->gen.n_stop == MAX_STOP)
				usage_err("too many --stop options");
			if (*optarg == '\0')
				usage_err("--stop: empty string");
			o->stop[o->gen.n_stop++] = optarg;
			break;
		case O_TOP_LOGPROBS:
			o->gen.top_logprobs = (uint32_t)num_ll("--top-logprobs",
			    optarg, 0, 20);
			break;
		case O_KEEP_ALIVE:
			o->keep_alive = num_ll("--keep-alive", optarg, -1,
			    INT32_MAX);
			o->gen.keep_alive = o->keep_alive;
			break;
		case O_PIN:
			o->load_flags = HEARTH_LOAD_PIN;
			break;
		case O_UNPIN:
			o->load_flags = HEARTH_LOAD_UNPIN;
			break;
		case O_NUMA:
			if (strcmp(optarg, "auto") == 0)
				o->load_numa = HEARTH_LOAD_NUMA_AUTO;
			else if (strcmp(optarg, "local") == 0)
				o->load_numa = HEARTH_LOAD_NUMA_LOCAL;
			else if (strcmp(optarg, "interleave") == 0)
				o->load_numa = HEARTH_LOAD_NUMA_INTERLEAVE;
			else if (strcmp(optarg, "replicate") == 0)
				o->load_numa = HEARTH_LOAD_NUMA_REPLICATE;
			else
				usage_err("--numa: '%s' is not auto, local, "
				    "interleave or replicate", optarg);
			break;
		case O_HIDE_THINKING:
			o->hide_thinking = true;
			break;
		case O_NO_THINKING:
			o->gen.thinking = HEARTH_THINKING_OFF;
			break;
		case O_THINKING:
			o->gen.thinking = HEARTH_THINKING_ON;
			break;
		case O_TEMPLATE:
			o->gen.template_name = optarg;
			break;
		case O_SYSTEM:
			o->system = optarg;
			break;
		case O_NO_BOS:
			o->no_bos = true;
			break;
		case O_SPECIAL:
			o->special = true;
			break;
		case O_IDS:
			o->ids = true;
			break;
		case O_TOP:
			o->top = (uint32_t)num_ll("--top", optarg, 0, 20);
			break;
		case O_WINDOW:
			o->window = num_ll("--window", optarg, 2, INT32_MAX);
			break;
		case O_STRIDE:
			o->stride = num_ll("--stride", optarg, 1, INT32_MAX);
			break;
		default:
			usage_err("%s: unknown option", g_cmd);
		}
	}
	o->gen.stop = o->stop;
}

/* ---- connection ---- */

static void
connect_or_die(const struct opts *o)
{
	struct hearth_error	 err;
	struct hearth		*h;
	int			 rc;

	memset(&err, 0, sizeof(err));
	rc = hearth_connect(o->socket, "hearth " HEARTH_VERSION_STRING, &h,
	    &err);
	if (rc < 0)
		die("%s", err.message);
	g_h = h;
	if (g_intr)
		hearth_interrupt(h);
}

/* Token ids from text: numbers separated by spaces, commas, brackets. */
static void
parse_ids(const char *what, const char *s, int32_t **ids, size_t *n)
{
	int32_t		*v = NULL, *nv;
	size_t		 len = 0, cap = 0;
	char		*end;
	long long	 x;
	size_t		 max;
	struct hearth_limits l;

	hearth_limits(g_h, &l);
	max = l.max_ids;
	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' ||
		    *s == ',' || *s == '[' || *s == ']')
			s++;
		if (*s == '\0')
			break;
		errno = 0;
		x = strtoll(s, &end, 10);
		if (end == s || errno != 0 || x < 0 || x > INT32_MAX ||
		    (*end != '\0' && strchr(" \t\r\n,[]", *end) == NULL)) {
			free(v);
			die("%s: '%.20s' is not a token id", what, s);
		}
		if (len == max) {
			free(v);
			die("%s: more than %zu token ids, the server's limit",
			    what, max);
		}
		if (len == cap) {
			cap = cap > 0 ? cap * 2 : 256;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				free(v);
				die("out of memory");
			}
			v = nv;
		}
		v[len++] = (int32_t)x;
		s = end;
	}
	*ids = v;
	*n = len;
}

/* The text of a command: its arguments joined, else standard input. */
static void
input_text(int argc, char **argv, bool strip_newline, struct buf *b)
{
	int	 i;

	if (argc > 0) {
		buf_add(b, "", 0);
		for (i = 0; i < argc; i++) {
			if (i > 0)
				buf_add(b, " ", 1);
			buf_add(b, argv[i], strlen(argv[i]));
		}
		if (b->len > max_text())
			die("prompt: more than %zu bytes, the server's limit",
			    max_text());
		return;
	}
	read_all(stdin, "standard input", max_text(), b);
	/* "echo text |" means text: drop the line's end */
	if (strip_newline && b->len > 0 && b->p[b->len - 1] == '\n') {
		b->p[--b->len] = '\0';
		if (b->len > 0 && b->p[b->len - 1] == '\r')
			b->p[--b->len] = '\0';
	}
}

/* ---- run and chat ---- */

struct gen {
	bool		 json;		/* NDJSON events */
	bool		 color;		/* dim thinking */
	bool		 hide_thinking;
	bool		 in_think;	/* thinking shown and not closed */
	bool		 at_bol;	/* nothing printed, or a newline last */
	int		 out_err;	/* errno of a failed write, or 0 */
	struct buf	*answer;	/* chat: the visible text, or NULL */
};

static bool
gen_put(struct gen *g, const void *p, size_t len)
{
	if (len == 0)
		return true;
	if (!out_write(p, len)) {
		g->out_err = errno != 0 ? errno : EIO;
		return false;
	}
	g->at_bol = ((const char *)p)[len - 1] == '\n';
	return true;
}

/* Leave the thinking channel's display. */
static bool
gen_think_end(struct gen *g)
{
	if (!g->in_think)
		return true;
	g->in_think = false;
	return gen_put(g, g->color ? RESET : "</think>",
	    strlen(g->color ? RESET : "</think>"));
}

static json_t *
token_json(const struct hearth_token *t)
{
	json_t		*o = json_object(), *top, *pair;
	uint32_t	 i;

	if (o == NULL)
		die("out of memory");
	jset(o, "type", json_string("token"));
	jset(o, "text", json_stringn(t->text, t->text_len));
	jset(o, "token", json_integer(t->id));
	if (t->thinking)
		jset(o, "thinking", json_true());
	if (t->has_logprob) {
		jset(o, "logprob", jreal(t->logprob));
		if ((top = json_array()) == NULL)
			die("out of memory");
		for (i = 0; i < t->n_top; i++) {
			if ((pair = json_array()) == NULL)
				die("out of memory");
			jappend(pair, json_integer(t->top_ids[i]));
			jappend(pair, jreal(t->top_logprobs[i]));
			jappend(top, pair);
		}
		jset(o, "top", top);
	}
	return o;
}

static int
gen_token(void *arg, const struct hearth_token *t)
{
	struct gen	*g = arg;

	if (g->json) {
		/* --hide-thinking: no events for the thinking channel */
		if (t->thinking && g->hide_thinking)
			return 0;
		if (!t->thinking && g->answer != NULL)
			buf_add(g->answer, t->text, t->text_len);
		out_json(token_json(t));
		if (fflush(stdout) != 0) {
			g->out_err = errno;
			return 1;
		}
		return 0;
	}
	if (t->thinking) {
		if (g->hide_thinking)
			return 0;
		if (!g->in_think) {
			g->in_think = true;
			if (!gen_put(g, g->color ? DIM : "<think>",
			    strlen(g->color ? DIM : "<think>")))
				return 1;
		}
	} else {
		if (!gen_think_end(g))
			return 1;
		if (g->answer != NULL)
			buf_add(g->answer, t->text, t->text_len);
	}
	if (!gen_put(g, t->text, t->text_len))
		return 1;
	if (fflush(stdout) != 0) {
		g->out_err = errno;
		return 1;
	}
	return 0;
}

static void
done_json(const struct hearth_done *d)
{
	json_t	*o = json_object();

	if (o == NULL)
		die("out of memory");
	jset(o, "type", json_string("done"));
	jset(o, "reason", json_string(hearth_reason_name(d->reason)));
	jset(o, "prompt_tokens", json_integer(d->prompt_tokens));
	jset(o, "cached_tokens", json_integer(d->cached_tokens));
	jset(o, "generated_tokens", json_integer(d->generated_tokens));
	jset(o, "prefill_ms", jreal(d->prefill_ms));
	jset(o, "decode_ms", jreal(d->decode_ms));
	out_json(o);
}

/* After a generate or chat: errors, output failures, Ctrl-C. */
static void
gen_finish(struct gen *g, int rc, const struct hearth_done *d, bool newline)
{
	if (g->out_err != 0)
		die_out(g->out_err);
	if (rc == 0 && !g->json && !gen_think_end(g))
		die_out(g->out_err);
	if (rc < 0 && rc != -ECANCELED) {
		out_flush();
		die_h(rc);
	}
	if (rc == 0 && g->json)
		done_json(d);
	if (!g->json && newline && !g->at_bol && !gen_put(g, "\n", 1))
		die_out(g->out_err);
	out_flush();
	if (rc == -ECANCELED || g_intr)
		leave(EXIT_INTR);
}

static int
cmd_run(int argc, char **argv, struct opts *o)
{
	struct hearth_input	 in;
	struct hearth_done	 done;
	struct gen		 g;
	struct buf		 prompt = { 0 };
	int			 rc;

	if (argc < 1)
		usage_err("run: no model");
	connect_or_die(o);
	input_text(argc - 1, argv + 1, true, &prompt);
	memset(&g, 0, sizeof(g));
	g.json = o->json;
	g.color = color_ok(stdout);
	g.hide_thinking = o->hide_thinking;
	g.at_bol = true;
	memset(&in, 0, sizeof(in));
	memset(&done, 0, sizeof(done));
	in.text = prompt.p;
	in.text_len = prompt.len;
	if (prompt.len == 0)
		in.text = "";
	rc = hearth_generate(g_h, argv[0], &in, &o->gen, gen_token, &g, &done);
	buf_free(&prompt);
	/* on a terminal the answer ends its line; in a pipe it is exact */
	gen_finish(&g, rc, &done, isatty(STDOUT_FILENO));
	hearth_done_clear(&done);
	return 0;
}

struct history {
	struct hearth_message	*m;	/* [n] with malloc'd contents */
	size_t			 n;
	size_t			 cap;
};

static void
history_add(struct history *hi, const char *role, const char *text,
    size_t len)
{
	struct hearth_message	*nm;
	char			*c;

	if (hi->n == hi->cap) {
		hi->cap = hi->cap > 0 ? hi->cap * 2 : 16;
		if ((nm = realloc(hi->m, hi->cap * sizeof(*nm))) == NULL)
			die("out of memory");
		hi->m = nm;
	}
	if ((c = malloc(len + 1)) == NULL)
		die("out of memory");
	memcpy(c, text, len);
	c[len] = '\0';
	hi->m[hi->n].role = role;
	hi->m[hi->n].content = c;
	hi->m[hi->n].content_len = len;
	hi->n++;
}

static void
history_free(struct history *hi)
{
	size_t	 i;

	for (i = 0; i < hi->n; i++)
		free((char *)hi->m[i].content);
	free(hi->m);
}

static int
cmd_chat(int argc, char **argv, struct opts *o)
{
	struct history		 hi = { 0 };
	struct hearth_done	 done;
	struct buf		 answer = { 0 };
	struct gen		 g;
	char			*line = NULL;
	size_t			 cap = 0;
	ssize_t			 n;
	bool			 tty;
	int			 rc;

	if (argc != 1)
		usage_err("chat: give one model");
	connect_or_die(o);
	tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	if (o->system != NULL)
		history_add(&hi, "system", o->system, strlen(o->system));
	for (;;) {
		if (tty) {
			out_puts(">>> ");
			out_flush();
		}
		errno = 0;
		n = getline(&line, &cap, stdin);
		if (n < 0) {
			if (g_intr)
				break;
			if (ferror(stdin) && errno == EINTR) {
				clearerr(stdin);
				continue;
			}
			if (ferror(stdin))
				die("standard input: %s", strerror(errno));
			break;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0)
			continue;
		if ((size_t)n > max_text())
			die("standard input: a line of more than %zu bytes",
			    max_text());
		history_add(&hi, "user", line, (size_t)n);
		memset(&g, 0, sizeof(g));
		g.json = o->json;
		g.color = color_ok(stdout);
		g.hide_thinking = o->hide_thinking;
		g.at_bol = true;
		g.answer = &answer;
		answer.len = 0;
		buf_add(&answer, "", 0);
		memset(&done, 0, sizeof(done));
		rc = hearth_chat(g_h, argv[0], hi.m, hi.n, &o->gen, gen_token,
		    &g, &done);
		if (rc == 0 && done.text != NULL)	/* not streamed */
			buf_add(&answer, done.text, done.text_len);
		hearth_done_clear(&done);
		/* every answer ends its line, so turns stay apart */
		gen_finish(&g, rc, &done, true);
		history_add(&hi, "assistant", answer.p, answer.len);
	}
	free(line);
	buf_free(&answer);
	history_free(&hi);
	if (g_intr) {
		if (tty)
			out_puts("\n");
		out_flush();
		leave(EXIT_INTR);
	}
	return 0;
}

/* ---- models ---- */

static int
cmd_list(int argc, char **argv, struct opts *o)
{
	struct hearth_model	*m = NULL;
	size_t			 n, i;
	int			 rc, wn = 4, wa = 4, wq = 5;
	char			 size[32], params[32];
	json_t			*j;

	(void)argv;
	if (argc != 0)
		usage_err("list: no arguments expected");
	connect_or_die(o);
	if ((rc = hearth_list(g_h, &m, &n)) < 0)
		die_h(rc);
	for (i = 0; i < n && !o->json; i++) {
		if ((int)strlen(m[i].name) > wn)
			wn = (int)strlen(m[i].name);
		if ((int)strlen(m[i].arch) > wa)
			wa = (int)strlen(m[i].arch);
		if ((int)strlen(m[i].quant) > wq)
			wq = (int)strlen(m[i].quant);
	}
	if (!o->json)
		out_printf("%-*s  %10s  %-*s  %-*s  %7s  %-8s  %s\n", wn, "NAME",
		    "SIZE", wa, "ARCH", wq, "QUANT", "PARAMS", "RESIDENT",
		    "LICENSE");
	for (i = 0; i < n; i++) {
		if (o->json) {
			if ((j = json_object()) == NULL)
				die("out of memory");
			jset(j, "name", json_string(m[i].name));
			jset(j, "size", json_integer((json_int_t)m[i].size));
			jset(j, "arch", json_string(m[i].arch));
			jset(j, "quant", json_string(m[i].quant));
			jset(j, "params",
			    json_integer((json_int_t)m[i].params));
			jset(j, "license", json_string(m[i].license));
			jset(j, "resident", json_boolean(m[i].resident));
			out_json(j);
			continue;
		}
		human_bytes(size, sizeof(size), m[i].size);
		human_count(params, sizeof(params), m[i].params);
		out_printf("%-*s  %10s  %-*s  %-*s  %7s  %-8s  %s\n", wn,
		    m[i].name, size, wa, *m[i].arch ? m[i].arch : "-", wq,
		    *m[i].quant ? m[i].quant : "-", params,
		    m[i].resident ? "yes" : "no",
		    *m[i].license ? m[i].license : "-");
	}
	hearth_free(m);
	return 0;
}

static json_t *
meta_json(const struct hearth_meta *m)
{
	json_t	*a;

	switch (m->type) {
	case HEARTH_META_BOOL:
		return json_boolean(m->b);
	case HEARTH_META_INT:
		return json_integer(m->i);
	case HEARTH_META_UINT:
		if (m->u > INT64_MAX)
			return jreal((double)m->u);
		return json_integer((json_int_t)m->u);
	case HEARTH_META_FLOAT:
		return jreal(m->f);
	case HEARTH_META_STR:
		return json_stringn(m->s, m->s_len);
	case HEARTH_META_ARRAY:
		if ((a = json_object()) == NULL)
			return NULL;
		jset(a, "array", json_string(m->elem));
		jset(a, "len", json_integer((json_int_t)m->n));
		return a;
	default:
		return json_null();
	}
}

static int
cmd_show(int argc, char **argv, struct opts *o)
{
	struct hearth_meta	*m = NULL;
	size_t			 n, i;
	json_t			*all = NULL, *v;
	char			*s;
	int			 rc;

	if (argc != 1)
		usage_err("show: give one model");
	connect_or_die(o);
	if ((rc = hearth_show(g_h, argv[0], &m, &n)) < 0)
		die_h(rc);
	if (o->json && (all = json_object()) == NULL)
		die("out of memory");
	for (i = 0; i < n; i++) {
		if (o->json) {
			jset(all, m[i].key, meta_json(&m[i]));
			continue;
		}
		if (m[i].type == HEARTH_META_ARRAY) {
			out_printf("%s: [%s x %" PRIu64 "]\n", m[i].key,
			    m[i].elem, m[i].n);
			continue;
		}
		if ((v = meta_json(&m[i])) == NULL)
			die("out of memory");
		s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
		json_decref(v);
		if (s == NULL)
			die("out of memory");
		out_printf("%s: %s\n", m[i].key, s);
		free(s);
	}
	if (o->json)
		out_json(all);
	hearth_free(m);
	return 0;
}

struct bar {
	bool	 on;		/* a terminal on stderr */
	int	 last;		/* per mille shown, -1 none */
};

static int
load_progress(void *arg, uint64_t done, uint64_t total)
{
	struct bar	*b = arg;
	char		 d[32], t[32], line[64];
	int		 pm, i, w = 30;

	if (!b->on || total == 0)
		return 0;
	pm = (int)(done >= total ? 1000 : done * 1000 / total);
	if (pm == b->last)
		return 0;
	b->last = pm;
	human_bytes(d, sizeof(d), done);
	human_bytes(t, sizeof(t), total);
	for (i = 0; i < w; i++)
		line[i] = i < pm * w / 1000 ? '#' : ' ';
	line[w] = '\0';
	fprintf(stderr, "\r[%s] %3d%% %s / %s  ", line, pm / 10, d, t);
	fflush(stderr);
	return 0;
}

static int
cmd_load(int argc, char **argv, struct opts *o)
{
	struct hearth_load_info	 info;
	struct bar		 b;
	char			 mem[32];
	json_t			*j;
	int			 rc;

	if (argc != 1)
		usage_err("load: give one model");
	connect_or_die(o);
	b.on = isatty(STDERR_FILENO) && getenv("TERM") != NULL &&
	    strcmp(getenv("TERM"), "dumb") != 0;
	b.last = -1;
	rc = hearth_load_ex(g_h, argv[0], o->keep_alive, o->load_flags |
	    o->load_numa, load_progress, &b, &info);
	if (b.on && b.last >= 0)
		fprintf(stderr, "\r\033[K");
	if (rc < 0)
		die_h(rc);
	if (o->json) {
		if ((j = json_object()) == NULL)
			die("out of memory");
		jset(j, "model", json_string(argv[0]));
		jset(j, "memory", json_integer((json_int_t)info.memory));
		jset(j, "ms", jreal(info.ms));
		if (o->load_flags != 0)
			jset(j, "pinned", json_boolean(o->load_flags ==
			    HEARTH_LOAD_PIN));
		out_json(j);
		return 0;
	}
	human_bytes(mem, sizeof(mem), info.memory);
	out_printf("%s: loaded, %s resident (%.0f ms)%s\n", argv[0], mem,
	    info.ms, o->load_flags == HEARTH_LOAD_PIN ? ", pinned" :
	    o->load_flags == HEARTH_LOAD_UNPIN ? ", not pinned" : "");
	return 0;
}

static int
cmd_unload(int argc, char **argv, struct opts *o)
{
	int	 rc;

	if (argc != 1)
		usage_err("unload: give one model");
	connect_or_die(o);
	if ((rc = hearth_unload(g_h, argv[0])) < 0)
		die_h(rc);
	return 0;
}

/*
 * The pages of a model's weights: "1.0 GiB 2M + 12.0 KiB small", the
 * kinds that hold any; the hugepages label from an older server.
 */
static void
ps_pages(const struct hearth_ps_entry *m, char *buf, size_t size)
{
	const struct { uint64_t v; const char *name; } k[] = {
		{ m->bytes_1g, "1G" }, { m->bytes_2m, "2M" },
		{ m->bytes_thp, "THP" }, { m->bytes_small, "small" },
	};
	char	 b[32];
	size_t	 i, off = 0;

	buf[0] = '\0';
	for (i = 0; i < sizeof(k) / sizeof(k[0]) && off < size; i++) {
		if (k[i].v == 0)
			continue;
		human_bytes(b, sizeof(b), k[i].v);
		off += (size_t)snprintf(buf + off, size - off, "%s%s %s",
		    off > 0 ? " + " : "", b, k[i].name);
	}
	if (off == 0)
		snprintf(buf, size, "%s", m->hugepages);
}

static int
cmd_ps(int argc, char **argv, struct opts *o)
{
	struct hearth_ps_entry	*m = NULL;
	size_t			 n, i;
	char			 mem[32], ka[32], w[32], kv[32], sc[32];
	char			 pages[160];
	int			 rc, wn = 4;
	json_t			*j;

	(void)argv;
	if (argc != 0)
		usage_err("ps: no arguments expected");
	connect_or_die(o);
	if ((rc = hearth_ps(g_h, &m, &n)) < 0)
		die_h(rc);
	for (i = 0; i < n; i++)
		if ((int)strlen(m[i].name) > wn)
			wn = (int)strlen(m[i].name);
	if (!o->json)
		out_printf("%-*s  %10s  %10s  %10s  %10s  %-6s  %7s  %10s  "
		    "%-10s  %s\n", wn, "NAME", "MEMORY", "WEIGHTS", "KV",
		    "SCRATCH", "PINNED", "CLIENTS", "TOKENS", "KEEP_ALIVE",
		    "PAGES");
	for (i = 0; i < n; i++) {
		if (o->json) {
			if ((j = json_object()) == NULL)
				die("out of memory");
			jset(j, "name", json_string(m[i].name));
			jset(j, "memory", json_integer((json_int_t)m[i].memory));
			jset(j, "hugepages", json_string(m[i].hugepages));
			jset(j, "clients", json_integer(m[i].clients));
			jset(j, "tokens", json_integer((json_int_t)m[i].tokens));
			jset(j, "keep_alive", json_integer(m[i].keep_alive));
			jset(j, "weights",
			    json_integer((json_int_t)m[i].weights));
			jset(j, "kv", json_integer((json_int_t)m[i].kv));
			jset(j, "scratch",
			    json_integer((json_int_t)m[i].scratch));
			jset(j, "bytes_1g",
			    json_integer((json_int_t)m[i].bytes_1g));
			jset(j, "bytes_2m",
			    json_integer((json_int_t)m[i].bytes_2m));
			jset(j, "bytes_thp",
			    json_integer((json_int_t)m[i].bytes_thp));
			jset(j, "bytes_small",
			    json_integer((json_int_t)m[i].bytes_small));
			jset(j, "pinned", json_boolean(m[i].pinned));
			jset(j, "placement", json_string(m[i].placement));
			out_json(j);
			continue;
		}
		human_bytes(mem, sizeof(mem), m[i].memory);
		human_bytes(w, sizeof(w), m[i].weights);
		human_bytes(kv, sizeof(kv), m[i].kv);
		human_bytes(sc, sizeof(sc), m[i].scratch);
		human_secs(ka, sizeof(ka), m[i].keep_alive);
		ps_pages(&m[i], pages, sizeof(pages));
		out_printf("%-*s  %10s  %10s  %10s  %10s  %-6s  %7" PRIu32
		    "  %10" PRIu64 "  %-10s  %s\n", wn, m[i].name, mem, w, kv,
		    sc, m[i].pinned ? "yes" : "no", m[i].clients, m[i].tokens,
		    ka, pages);
	}
	hearth_free(m);
	return 0;
}

static int
cmd_stats(int argc, char **argv, struct opts *o)
{
	struct hearth_stats	 s;
	json_t			*j;
	char			 up[32], mem[32], w[32], kv[32], sc[32];
	int			 rc;

	(void)argv;
	if (argc != 0)
		usage_err("stats: no arguments expected");
	connect_or_die(o);
	if ((rc = hearth_stats(g_h, &s)) < 0)
		die_h(rc);
	if (o->json) {
		if ((j = json_object()) == NULL)
			die("out of memory");
		jset(j, "server", json_string(hearth_server(g_h)));
		jset(j, "uptime", json_integer((json_int_t)s.uptime));
		jset(j, "connections", json_integer(s.connections));
		jset(j, "requests", json_integer((json_int_t)s.requests));
		jset(j, "prompt_tokens",
		    json_integer((json_int_t)s.prompt_tokens));
		jset(j, "generated_tokens",
		    json_integer((json_int_t)s.generated_tokens));
		jset(j, "models", json_integer(s.models));
		jset(j, "memory", json_integer((json_int_t)s.memory));
		jset(j, "budget", json_integer((json_int_t)(s.budget >
		    INT64_MAX ? INT64_MAX : s.budget)));
		jset(j, "weights", json_integer((json_int_t)s.weights));
		jset(j, "kv", json_integer((json_int_t)s.kv));
		jset(j, "scratch", json_integer((json_int_t)s.scratch));
		out_json(j);
		return 0;
	}
	human_secs(up, sizeof(up), (int64_t)(s.uptime > INT64_MAX ?
	    INT64_MAX : s.uptime));
	human_bytes(mem, sizeof(mem), s.memory);
	out_printf("server:           %s\n", hearth_server(g_h));
	out_printf("uptime:           %s\n", up);
	out_printf("connections:      %" PRIu32 "\n", s.connections);
	out_printf("requests:         %" PRIu64 "\n", s.requests);
	out_printf("prompt tokens:    %" PRIu64 "\n", s.prompt_tokens);
	out_printf("generated tokens: %" PRIu64 "\n", s.generated_tokens);
	out_printf("resident models:  %" PRIu32 " (%s)\n", s.models, mem);
	if (s.weights + s.kv + s.scratch > 0) {
		human_bytes(w, sizeof(w), s.weights);
		human_bytes(kv, sizeof(kv), s.kv);
		human_bytes(sc, sizeof(sc), s.scratch);
		out_printf("memory split:     weights %s, KV %s, scratch %s\n",
		    w, kv, sc);
	}
	if (s.budget > 0) {
		human_bytes(mem, sizeof(mem), s.budget);
		out_printf("memory budget:    %s\n", mem);
	}
	return 0;
}

/* ---- tokens ---- */

static int
cmd_tokenize(int argc, char **argv, struct opts *o)
{
	struct buf	 text = { 0 };
	int32_t		*ids = NULL;
	size_t		 n, i;
	json_t		*a;
	int		 rc;

	if (argc != 1)
		usage_err("tokenize: give one model (the text comes from "
		    "standard input)");
	connect_or_die(o);
	read_all(stdin, "standard input", max_text(), &text);
	rc = hearth_tokenize(g_h, argv[0], text.p, text.len, !o->no_bos,
	    o->special, &ids, &n);
	buf_free(&text);
	if (rc < 0)
		die_h(rc);
	if (o->json) {
		if ((a = json_array()) == NULL)
			die("out of memory");
		for (i = 0; i < n; i++)
			jappend(a, json_integer(ids[i]));
		out_json(a);
	} else {
		for (i = 0; i < n; i++)
			out_printf(i > 0 ? " %" PRId32 : "%" PRId32, ids[i]);
		out_puts("\n");
	}
	hearth_free(ids);
	return 0;
}

static int
cmd_detokenize(int argc, char **argv, struct opts *o)
{
	struct buf	 in = { 0 };
	int32_t		*ids = NULL;
	char		*text = NULL;
	size_t		 n, len;
	int		 rc;

	if (argc != 1)
		usage_err("detokenize: give one model (the ids come from "
		    "standard input)");
	connect_or_die(o);
	read_all(stdin, "standard input", max_text(), &in);
	parse_ids("standard input", in.p, &ids, &n);
	buf_free(&in);
	rc = hearth_detokenize(g_h, argv[0], ids, n, o->special, &text, &len);
	free(ids);
	if (rc < 0)
		die_h(rc);
	if (!out_write(text, len)) {
		hearth_free(text);
		die_out(errno);
	}
	hearth_free(text);
	return 0;
}

/* Text or ids for eval and embed from the arguments or standard input. */
static void
model_input(int argc, char **argv, const struct opts *o,
    struct hearth_input *in, struct buf *text, int32_t **ids)
{
	size_t	 n;

	memset(in, 0, sizeof(*in));
	input_text(argc, argv, false, text);
	if (o->ids) {
		parse_ids("input", text->p, ids, &n);
		in->ids = *ids;
		in->n_ids = n;
		if (n == 0)
			die("input: no token ids");
		buf_free(text);
		return;
	}
	in->text = text->len > 0 ? text->p : "";
	in->text_len = text->len;
}

static int
cmd_embed(int argc, char **argv, struct opts *o)
{
	struct hearth_embedding	*e = NULL;
	struct hearth_input	 in;
	struct buf		 text = { 0 };
	int32_t			*ids = NULL;
	size_t			 i;
	json_t			*j, *a;
	int			 rc;

	if (argc < 1)
		usage_err("embed: no model");
	connect_or_die(o);
	model_input(argc - 1, argv + 1, o, &in, &text, &ids);
	rc = hearth_embed(g_h, argv[0], &in, &e);
	buf_free(&text);
	free(ids);
	if (rc < 0)
		die_h(rc);
	if (o->json) {
		if ((j = json_object()) == NULL || (a = json_array()) == NULL)
			die("out of memory");
		for (i = 0; i < e->n; i++)
			jappend(a, jreal(e->values[i]));
		jset(j, "embedding", a);
		jset(j, "tokens", json_integer(e->tokens));
		out_json(j);
	} else {
		for (i = 0; i < e->n; i++)
			out_printf(i > 0 ? " %.9g" : "%.9g", e->values[i]);
		out_puts("\n");
	}
	hearth_free(e);
	return 0;
}

static int
cmd_eval(int argc, char **argv, struct opts *o)
{
	struct hearth_eval	*ev = NULL;
	struct hearth_input	 in;
	struct buf		 text = { 0 };
	int32_t			*ids = NULL;
	size_t			 i, k;
	json_t			*j, *top, *pair;
	int			 rc;

	if (argc != 1)
		usage_err("eval: give one model (the input comes from "
		    "standard input)");
	connect_or_die(o);
	model_input(0, NULL, o, &in, &text, &ids);
	rc = hearth_eval(g_h, argv[0], &in, o->top, !o->no_bos, &ev);
	buf_free(&text);
	free(ids);
	if (rc < 0)
		die_h(rc);
	for (i = 0; i + 1 < ev->n_tokens; i++) {
		if ((j = json_object()) == NULL || (top = json_array()) == NULL)
			die("out of memory");
		jset(j, "pos", json_integer((json_int_t)i));
		jset(j, "token", json_integer(ev->tokens[i + 1]));
		jset(j, "logprob", jreal(ev->logprobs[i]));
		for (k = 0; k < ev->top; k++) {
			if ((pair = json_array()) == NULL)
				die("out of memory");
			jappend(pair, json_integer(
			    ev->top_ids[i * ev->top + k]));
			jappend(pair, jreal(ev->top_logprobs[i * ev->top + k]));
			jappend(top, pair);
		}
		jset(j, "top", top);
		out_json(j);
	}
	hearth_free(ev);
	return 0;
}

/* The model's context length from its metadata, or 0. */
static uint64_t
model_context(const char *model)
{
	struct hearth_meta	*m = NULL;
	const char		*arch = NULL;
	char			 key[300];
	uint64_t		 ctx = 0;
	size_t			 n, i;
	int			 rc;

	if ((rc = hearth_show(g_h, model, &m, &n)) < 0)
		die_h(rc);
	for (i = 0; i < n; i++)
		if (m[i].type == HEARTH_META_STR &&
		    strcmp(m[i].key, "general.architecture") == 0)
			arch = m[i].s;
	if (arch != NULL) {
		snprintf(key, sizeof(key), "%s.context_length", arch);
		for (i = 0; i < n; i++)
			if (m[i].type == HEARTH_META_UINT &&
			    strcmp(m[i].key, key) == 0)
				ctx = m[i].u;
	}
	hearth_free(m);
	return ctx;
}

/*
 * Perplexity over sliding windows: each window of at most W tokens
 * (BOS first when the model adds one) is scored by eval; a token counts
 * once, in the first window that predicts it, so each window after the
 * first gives the tokens it adds at least W - S tokens of context.
 */
static int
cmd_perplexity(int argc, char **argv, struct opts *o)
{
	struct hearth_eval	*ev = NULL;
	struct hearth_input	 in;
	struct buf		 text = { 0 };
	int32_t			*t = NULL, *bos = NULL, *win = NULL;
	size_t			 nt = 0, nb = 0, w, s, a, b, j, first, prev;
	size_t			 count = 0, nwin = 0;
	uint64_t		 ctx;
	double			 sum = 0, ppl;
	FILE			*f;
	json_t			*jo;
	int			 rc;

	if (argc != 2)
		usage_err("perplexity: give a model and a file");
	connect_or_die(o);
	if (strcmp(argv[1], "-") == 0)
		f = stdin;
	else if ((f = fopen(argv[1], "r")) == NULL)
		die("%s: %s", argv[1], strerror(errno));
	read_all(f, argv[1], max_text(), &text);
	if (f != stdin)
		fclose(f);
	ctx = model_context(argv[0]);
	w = o->window > 0 ? (size_t)o->window :
	    ctx > 0 && ctx < 512 ? (size_t)ctx : 512;
	s = o->stride > 0 ? (size_t)o->stride : w / 2 > 0 ? w / 2 : 1;
	if ((rc = hearth_tokenize(g_h, argv[0], "", 0, !o->no_bos, false,
	    &bos, &nb)) < 0)
		die_h(rc);
	if (nb > 1)
		die("%s: tokenizing nothing gave %zu tokens", argv[0], nb);
	rc = hearth_tokenize(g_h, argv[0], text.len > 0 ? text.p : "",
	    text.len, false, false, &t, &nt);
	buf_free(&text);
	if (rc < 0)
		die_h(rc);
	if (nt + nb < 2)
		die("%s: too short: %zu tokens", argv[1], nt);
	if (w <= nb)
		die("--window: %zu tokens leave no room", w);
	if ((win = malloc(w * sizeof(*win))) == NULL)
		die("out of memory");
	if (nb == 1)
		win[0] = bos[0];
	prev = 0;
	for (a = 0;; a += s) {
		/* window: [bos] + t[a..b) */
		b = a + (w - nb) < nt ? a + (w - nb) : nt;
		memcpy(win + nb, t + a, (b - a) * sizeof(*t));
		memset(&in, 0, sizeof(in));
		in.ids = win;
		in.n_ids = nb + (b - a);
		if ((rc = hearth_eval(g_h, argv[0], &in, 0, false, &ev)) < 0)
			die_h(rc);
		if (ev->n_tokens != in.n_ids)
			die("eval: %zu tokens scored for %zu sent",
			    ev->n_tokens, in.n_ids);
		/* t[j] sits at window index nb + j - a, scored by the
		   logprob of the position before it */
		first = a + (nb == 0 ? 1 : 0);
		if (first < prev)
			first = prev;
		for (j = first; j < b; j++) {
			sum += ev->logprobs[nb + j - a - 1];
			count++;
		}
		hearth_free(ev);
		ev = NULL;
		nwin++;
		prev = b;
		if (b == nt)
			break;
		if (g_intr)
			leave(EXIT_INTR);
	}
	free(win);
	free(t);
	hearth_free(bos);
	if (count == 0)
		die("%s: no token scored", argv[1]);
	ppl = exp(-sum / (double)count);
	if (o->json) {
		if ((jo = json_object()) == NULL)
			die("out of memory");
		jset(jo, "perplexity", jreal(ppl));
		jset(jo, "tokens", json_integer((json_int_t)count));
		jset(jo, "windows", json_integer((json_int_t)nwin));
		jset(jo, "window", json_integer((json_int_t)w));
		jset(jo, "stride", json_integer((json_int_t)s));
		out_json(jo);
	} else
		out_printf("%.4f\n", ppl);
	return 0;
}

/* ---- templates ---- */

static int
cmd_template(int argc, char **argv, struct opts *o)
{
	struct hearth_rendered	*r = NULL;
	struct hearth_message	*m;
	struct buf		 in = { 0 };
	json_error_t		 jerr;
	json_t			*root, *msg, *role, *content;
	size_t			 n, i;
	int			 rc;

	if (argc != 1)
		usage_err("template: give one model (the messages come from "
		    "standard input)");
	connect_or_die(o);
	read_all(stdin, "standard input", max_text(), &in);
	root = json_loadb(in.p, in.len, JSON_ALLOW_NUL, &jerr);
	buf_free(&in);
	if (root == NULL)
		die("standard input: line %d: %s", jerr.line, jerr.text);
	if (!json_is_array(root)) {
		json_decref(root);
		die("standard input: expected a JSON list of messages");
	}
	n = json_array_size(root);
	if ((m = calloc(n > 0 ? n : 1, sizeof(*m))) == NULL)
		die("out of memory");
	for (i = 0; i < n; i++) {
		msg = json_array_get(root, i);
		role = json_object_get(msg, "role");
		content = json_object_get(msg, "content");
		if (!json_is_object(msg) || !json_is_string(role) ||
		    !json_is_string(content)) {
			free(m);
			json_decref(root);
			die("standard input: message %zu: expected "
			    "{\"role\": string, \"content\": string}", i);
		}
		m[i].role = json_string_value(role);
		m[i].content = json_string_value(content);
		m[i].content_len = json_string_length(content);
		if (m[i].content_len == 0)
			m[i].content = "";
	}
	rc = hearth_render(g_h, argv[0], m, n, &o->gen, &r);
	free(m);
	json_decref(root);
	if (rc < 0)
		die_h(rc);
	if (!out_write(r->prompt, r->prompt_len)) {
		hearth_free(r);
		die_out(errno);
	}
	hearth_free(r);
	return 0;
}

/* ---- main ---- */

struct command {
	const char	*name;
	unsigned	 groups;	/* options it takes */
	int		 (*fn)(int, char **, struct opts *);
};

static const struct command commands[] = {
	{ "chat", G_JSON | G_SAMPLE | G_THINK | G_CHAT | G_TMPL | G_KEEP,
	    cmd_chat },
	{ "detokenize", G_SPECIAL, cmd_detokenize },
	{ "embed", G_JSON | G_IDS, cmd_embed },
	{ "eval", G_BOS | G_IDS | G_TOP, cmd_eval },
	{ "list", G_JSON, cmd_list },
	{ "load", G_JSON | G_KEEP | G_PIN, cmd_load },
	{ "perplexity", G_JSON | G_BOS | G_PPL, cmd_perplexity },
	{ "ps", G_JSON, cmd_ps },
	{ "run", G_JSON | G_SAMPLE | G_THINK | G_KEEP, cmd_run },
	{ "show", G_JSON, cmd_show },
	{ "stats", G_JSON, cmd_stats },
	{ "template", G_TMPL, cmd_template },
	{ "tokenize", G_JSON | G_BOS | G_SPECIAL, cmd_tokenize },
	{ "unload", 0, cmd_unload },
};

int
main(int argc, char **argv)
{
	static const struct option main_opts[] = {
		{ "socket",	required_argument, NULL, 's' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ "version",	no_argument,	   NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const struct command	*cmd = NULL;
	struct opts		 o;
	size_t			 i;
	int			 c, rc;

	signals_init();
	memset(&o, 0, sizeof(o));
	hearth_gen_params_default(&o.gen);
	o.keep_alive = HEARTH_KEEP_ALIVE_DEFAULT;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:s:hV", main_opts, NULL)) != -1) {
		switch (c) {
		case 's':
			o.socket = optarg;
			break;
		case 'h':
			usage(stdout);
			leave(EXIT_SUCCESS);
		case 'V':
			out_puts("hearth " HEARTH_VERSION_STRING "\n");
			out_flush();
			leave(EXIT_SUCCESS);
		case ':':
			usage_err("option '%s' needs a value",
			    argv[optind - 1]);
		default:
			usage_err("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		usage_err("no command");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	if (cmd == NULL)
		usage_err("unknown command '%s'", argv[optind]);
	g_cmd = cmd->name;
	argc -= optind;
	argv += optind;
	opts_parse(argc, argv, cmd->groups, &o);
	rc = cmd->fn(argc - optind, argv + optind, &o);
	if (fflush(stdout) != 0 || ferror(stdout))
		die_out(errno);
	leave(rc);
}
