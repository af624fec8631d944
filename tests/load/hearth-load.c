/*
 * hearth-load.c - a bounded load test of hearthd (issue 7), run by
 * `make check-load` (not part of make check).
 *
 * It writes three small models (mkmodel_lib) to a temporary directory,
 * starts $HEARTH_BUILDDIR/hearthd on a Unix socket there, computes the
 * greedy answer of every prompt of its set alone, then runs LOAD_CLIENTS
 * (64) threads, each with its own connection, for LOAD_SECONDS (120):
 * mixed short and long prompts on every model, random cancels and
 * disconnects, some slow readers. It reports requests completed, errors
 * by code, p50/p99 time to first token, tokens/s and the daemon's RSS
 * before (after a warm-up that loads the models and runs every client
 * for WARM_SECONDS), during (the most) and after. It fails (exit 1) when a request gets no answer, when a
 * greedy output differs from the same request run alone (a cancelled
 * one must be a prefix of it), when RSS after exceeds RSS before by more
 * than 5%, or when the daemon does not stop cleanly.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernels.h"
#include "mkmodel_lib.h"
#include "proto.h"
#include "tclient.h"

#define N_PROMPTS	12		/* the prompt set */
#define MAX_OUT		512		/* tokens a request asks at most */
#define MAX_LAT		200000		/* latencies kept */
#define ANSWER_MS	60000		/* a request must answer in this */
#define WARM_SECONDS	5		/* all clients, before "before" */

/* One prompt of the set and its answer alone. */
struct prompt {
	const char	*model;		/* model name */
	char		*text;		/* the prompt */
	int32_t		 max_tokens;	/* asked */
	int32_t		 want[MAX_OUT];	/* [n_want] greedy, alone */
	uint32_t	 n_want;
};

static struct prompt	g_prompts[N_PROMPTS];
static char		g_dir[256];	/* temporary directory */
static struct td	g_d;		/* the daemon */
static double		g_end;		/* monotonic end of the run */
static atomic_long	g_rss_max;	/* kB, during the run */
static atomic_int	g_stop_sampler;

/* Totals, under g_mu. */
static pthread_mutex_t	g_mu = PTHREAD_MUTEX_INITIALIZER;
static long		g_done, g_cancelled, g_disconnected, g_slow;
static long		g_no_answer, g_mismatch, g_tokens;
static long		g_errors[PROTO_E_INTERNAL + 32];
static double		*g_lat;		/* [g_n_lat] seconds to first token */
static long		g_n_lat;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long
daemon_rss_kb(void)
{
	return td_status_kb(g_d.pid, "VmRSS");
}

/* ---- setup ------------------------------------------------------------- */

static int
write_models(void)
{
	struct eng_err err = { "" };
	struct mkm_spec s;
	char path[600];

	mkm_spec_default(&s);
	snprintf(path, sizeof(path), "%s/models/small.gguf", g_dir);
	if (mkm_write(&s, path, &err) != 0)
		goto fail;
	s.arch = "qwen2";
	s.wtype = KERN_TYPE_Q8_0;
	s.seed = 2;
	snprintf(path, sizeof(path), "%s/models/qsmall.gguf", g_dir);
	if (mkm_write(&s, path, &err) != 0)
		goto fail;
	mkm_spec_default(&s);
	s.n_embd = 128;
	s.n_ff = 256;
	s.n_ctx = 4096;
	s.seed = 3;
	snprintf(path, sizeof(path), "%s/models/long.gguf", g_dir);
	if (mkm_write(&s, path, &err) != 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "hearth-load: %s: %s\n", path, err.msg);
	return -1;
}

/* Words for prompts; n of them. */
static char *
words(unsigned n, unsigned seed)
{
	static const char *const w[] = { "the", "quiet", "river", "of",
	    "probability", "unfolds", "as", "I", "sense", "a", "flower",
	    "tapestry", "vectors", "emerge", "slowly", "into", "light" };
	char *s = malloc((size_t)n * 13 + 1);
	size_t len = 0;
	unsigned i;

	if (s == NULL)
		abort();
	for (i = 0; i < n; i++) {
		const char *x = w[(i * 7 + seed * 3 + i / 5) %
		    (sizeof(w) / sizeof(w[0]))];

		len += (size_t)sprintf(s + len, "%s%s", i ? " " : "", x);
	}
	return s;
}

static void
make_prompts(void)
{
	static const char *const models[3] = { "small", "qsmall", "long" };
	unsigned i;

	for (i = 0; i < N_PROMPTS; i++) {
		struct prompt *p = &g_prompts[i];
		bool lng = i % 2 == 1;

		p->model = models[i % 3];
		/* short: a few words; long: hundreds (within the context) */
		p->text = words(lng ? (i % 3 == 2 ? 400 : 60) : 3 + i, i);
		p->max_tokens = lng ? 48 : 24 + 8 * (int32_t)(i % 4);
		if (i % 3 == 2 && !lng)
			p->max_tokens = 300;	/* a long answer */
	}
}

/* The daemon's paths (and its models directory) under g_dir. */
static int
setup_daemon(void)
{
	if (td_init(&g_d, g_dir) != 0)
		return -1;
	snprintf(g_d.sock, sizeof(g_d.sock), "%s/hearth.sock", g_dir);
	g_d.quiet = true;
	g_d.threads = NULL;
	return 0;
}

static int
start_daemon(void)
{
	FILE *f;

	if ((f = fopen(g_d.conf, "w")) == NULL)
		return -1;
	fprintf(f, "[daemon]\nkeep_alive = -1\nn_parallel = 16\n"
	    "max_queue = 256\nmax_connections = 256\nmax_requests = 8\n"
	    "output_buffer = 64K\npause_timeout = 10s\nmax_models = 4\n"
	    "drain_timeout = 1s\n");
	fclose(f);
	if (td_start_st(&g_d, NULL) != 0) {
		fprintf(stderr, "hearth-load: hearthd did not start (see %s)\n",
		    g_d.log);
		return -1;
	}
	return 0;
}

static int
stop_daemon(void)
{
	return td_stop(&g_d);
}

/* ---- a client ---------------------------------------------------------- */

static int
client_open(struct tc *c)
{
	struct proto_response resp;
	struct proto_request r;
	int rc;

	if (tc_open_raw_at(c, g_d.sock) != 0)
		return -1;
	proto_request_init(&r, PROTO_MSG_HELLO, 0);
	r.u.hello.version = PROTO_VERSION;
	r.u.hello.client = "hearth-load";
	if (tc_send(c, &r) < 0 || tc_recv(c, &resp, ANSWER_MS) != 1)
		goto fail;
	rc = resp.type == PROTO_MSG_REPLY ? 0 : -1;
	proto_response_free(&resp);
	if (rc == 0)
		return 0;
fail:
	tc_close(c);
	return -1;
}

enum mode {
	MODE_PLAIN,		/* read everything */
	MODE_CANCEL,		/* cancel after a few tokens */
	MODE_DISCONNECT,	/* hang up after a few tokens */
	MODE_SLOW,		/* read slowly */
};

/* What one request brought. */
struct result {
	int32_t		 ids[MAX_OUT];	/* [n] */
	uint32_t	 n;
	bool		 done;		/* a done event */
	enum proto_reason reason;
	bool		 error;		/* an error event */
	enum proto_code	 code;
	double		 ttft;		/* seconds to the first token, < 0 none */
};

/*
 * One generate of prompt p in mode m; 0 answered, 1 hung up on purpose,
 * -1 no answer (a timeout, a broken stream).
 */
static int
run_request(struct tc *c, const struct prompt *p, enum mode m,
    unsigned after, struct result *res)
{
	struct proto_response resp;
	double t0 = now();
	bool cancel_sent = false, cancel_replied = false;
	uint64_t cid = 0;
	int64_t id;
	int r;

	memset(res, 0, sizeof(*res));
	res->ttft = -1;
	if ((id = tc_generate(c, p->model, p->text, p->max_tokens, true)) < 0)
		return -1;
	for (;;) {
		if ((r = tc_recv(c, &resp, ANSWER_MS)) != 1) {
			fprintf(stderr, "hearth-load: %s: no answer (%d)\n",
			    p->model, r);
			return -1;
		}
		if (resp.id == cid && cancel_sent) {
			cancel_replied = true;
			proto_response_free(&resp);
			if (res->done || res->error)
				return 0;
			continue;
		}
		if (resp.id != (uint64_t)id) {
			fprintf(stderr, "hearth-load: an event for id %llu\n",
			    (unsigned long long)resp.id);
			proto_response_free(&resp);
			return -1;
		}
		switch (resp.type) {
		case PROTO_MSG_TOKEN:
			if (res->ttft < 0)
				res->ttft = now() - t0;
			if (res->n < MAX_OUT)
				res->ids[res->n++] = resp.u.token.token;
			break;
		case PROTO_MSG_DONE:
			res->done = true;
			res->reason = resp.u.done.reason;
			break;
		case PROTO_MSG_ERROR:
			res->error = true;
			res->code = resp.u.error.code;
			break;
		default:
			break;
		}
		proto_response_free(&resp);
		if (res->done || res->error) {
			if (cancel_sent && !cancel_replied)
				continue;
			return 0;
		}
		if (res->n == after && m == MODE_DISCONNECT)
			return 1;
		if (res->n == after && m == MODE_CANCEL && !cancel_sent) {
			struct proto_request q;

			proto_request_init(&q, PROTO_MSG_CANCEL, 0);
			q.u.cancel.target = (uint64_t)id;
			if (tc_send(c, &q) < 0)
				return -1;
			cid = q.id;
			cancel_sent = true;
		}
		if (m == MODE_SLOW)
			usleep(3000);
	}
}

struct worker {
	pthread_t	 t;
	unsigned	 seed;
	int		 fail;
};

static void
record(const struct prompt *p, enum mode m, int rc,
    const struct result *res)
{
	uint32_t i;
	bool same = true;

	for (i = 0; i < res->n && i < p->n_want; i++)
		if (res->ids[i] != p->want[i])
			same = false;
	/* a finished greedy request is the alone answer; any is a prefix */
	if (res->n > p->n_want ||
	    (res->done && res->reason != PROTO_REASON_CANCELLED &&
	    res->n != p->n_want))
		same = false;
	pthread_mutex_lock(&g_mu);
	if (rc < 0)
		g_no_answer++;
	else if (rc == 1)
		g_disconnected++;
	else if (res->error) {
		if ((size_t)res->code < sizeof(g_errors) / sizeof(g_errors[0]))
			g_errors[res->code]++;
	} else if (res->done && res->reason == PROTO_REASON_CANCELLED)
		g_cancelled++;
	else
		g_done++;
	if (m == MODE_SLOW && rc == 0)
		g_slow++;
	if (!same && !res->error) {
		g_mismatch++;
		fprintf(stderr, "hearth-load: %s: output differs from alone "
		    "(%u tokens, %u alone)\n", p->model, res->n, p->n_want);
	}
	g_tokens += res->n;
	if (res->ttft >= 0 && g_n_lat < MAX_LAT)
		g_lat[g_n_lat++] = res->ttft;
	pthread_mutex_unlock(&g_mu);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct result *res = malloc(sizeof(*res));
	struct tc c;
	bool open = false;

	if (res == NULL)
		abort();
	while (now() < g_end) {
		unsigned x = (unsigned)rand_r(&w->seed);
		const struct prompt *p = &g_prompts[x % N_PROMPTS];
		enum mode m;
		int rc;

		x /= N_PROMPTS;
		m = x % 10 < 6 ? MODE_PLAIN : x % 10 < 7 ? MODE_CANCEL :
		    x % 10 < 8 ? MODE_DISCONNECT : MODE_SLOW;
		if (!open) {
			if (client_open(&c) != 0) {
				w->fail = 1;
				fprintf(stderr, "hearth-load: cannot connect\n");
				break;
			}
			open = true;
		}
		rc = run_request(&c, p, m, 1 + (x / 10) % 6, res);
		record(p, m, rc, res);
		if (rc != 0) {
			tc_close(&c);
			open = false;
		}
	}
	if (open)
		tc_close(&c);
	free(res);
	return NULL;
}

static void *
sampler_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&g_stop_sampler)) {
		long kb = daemon_rss_kb();

		if (kb > atomic_load(&g_rss_max))
			atomic_store(&g_rss_max, kb);
		usleep(200000);
	}
	return NULL;
}

/* Every client for seconds; 1 when one could not connect. */
static int
run_phase(struct worker *w, int n_clients, int seconds, unsigned seed)
{
	int i, fail = 0;

	g_end = now() + seconds;
	for (i = 0; i < n_clients; i++) {
		w[i].seed = seed + (unsigned)i * 7919u;
		pthread_create(&w[i].t, NULL, worker_main, &w[i]);
	}
	for (i = 0; i < n_clients; i++) {
		pthread_join(w[i].t, NULL);
		fail |= w[i].fail;
	}
	return fail;
}

/* Forget the warm-up's numbers, keep its failures. */
static void
reset_totals(void)
{
	pthread_mutex_lock(&g_mu);
	g_done = g_cancelled = g_disconnected = g_slow = g_tokens = 0;
	memset(g_errors, 0, sizeof(g_errors));
	g_n_lat = 0;
	pthread_mutex_unlock(&g_mu);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Alone: every prompt on one connection, nothing else running. */
static int
compute_alone(void)
{
	struct result *res = malloc(sizeof(*res));
	struct tc c;
	unsigned i;
	int rc = 0;

	if (res == NULL || client_open(&c) != 0)
		return -1;
	for (i = 0; i < N_PROMPTS && rc == 0; i++) {
		struct prompt *p = &g_prompts[i];

		if (run_request(&c, p, MODE_PLAIN, 0, res) != 0 ||
		    !res->done) {
			fprintf(stderr, "hearth-load: prompt %u alone: %s %d\n",
			    i, res->error ? proto_code_name(res->code) :
			    "no answer", (int)res->code);
			rc = -1;
		}
		memcpy(p->want, res->ids, sizeof(p->want));
		p->n_want = res->n;
	}
	tc_close(&c);
	free(res);
	return rc;
}

int
main(void)
{
	const char *s = getenv("LOAD_SECONDS"), *n = getenv("LOAD_CLIENTS");
	int seconds = s != NULL ? atoi(s) : 120;
	int n_clients = n != NULL ? atoi(n) : 64;
	long rss_before, rss_after, total;
	struct worker *w;
	pthread_t sampler;
	double t0, elapsed;
	int i, fail = 0;
	char cmd[600];

	if (seconds < 1 || n_clients < 1 || n_clients > 1024) {
		fprintf(stderr, "hearth-load: bad LOAD_SECONDS/LOAD_CLIENTS\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(g_dir, sizeof(g_dir), "/tmp/hearth-load.XXXXXX");
	if (mkdtemp(g_dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	if ((g_lat = calloc(MAX_LAT, sizeof(*g_lat))) == NULL ||
	    setup_daemon() != 0 || write_models() != 0 ||
	    start_daemon() != 0)
		return 2;
	make_prompts();
	printf("hearth-load: %d clients, %d s, %d prompts on 3 models, "
	    "daemon pid %d\n", n_clients, seconds, N_PROMPTS, (int)g_d.pid);
	/* the warm-up: loads the models, gives the alone answers */
	if (compute_alone() != 0 || compute_alone() != 0) {
		stop_daemon();
		return 1;
	}
	/*
	 * then every client for a few seconds: the daemon's buffers and
	 * allocator arenas reach their working size (its outputs are
	 * checked too, its numbers are not reported)
	 */
	{
		struct worker *ww = calloc((size_t)n_clients, sizeof(*ww));

		fail |= run_phase(ww, n_clients, WARM_SECONDS, 99u);
		free(ww);
		reset_totals();
		sleep(1);
	}
	rss_before = daemon_rss_kb();
	atomic_store(&g_rss_max, rss_before);
	pthread_create(&sampler, NULL, sampler_main, NULL);

	w = calloc((size_t)n_clients, sizeof(*w));
	t0 = now();
	fail |= run_phase(w, n_clients, seconds, 1234u);
	elapsed = now() - t0;
	atomic_store(&g_stop_sampler, 1);
	pthread_join(sampler, NULL);
	/* every connection is gone; let the daemon settle */
	sleep(1);
	{
		struct tc c;

		if (client_open(&c) == 0)
			tc_close(&c);
	}
	usleep(300000);
	rss_after = daemon_rss_kb();

	total = g_done + g_cancelled + g_disconnected + g_no_answer;
	for (i = 0; i < (int)(sizeof(g_errors) / sizeof(g_errors[0])); i++)
		total += g_errors[i];
	printf("requests: %ld (completed %ld, cancelled %ld, disconnected "
	    "%ld, slow readers %ld, no answer %ld)\n", total, g_done,
	    g_cancelled, g_disconnected, g_slow, g_no_answer);
	printf("errors by code:");
	for (i = 0; i < (int)(sizeof(g_errors) / sizeof(g_errors[0])); i++)
		if (g_errors[i] > 0)
			printf(" %s %ld", proto_code_name((enum proto_code)i),
			    g_errors[i]);
	printf("%s\n", total - g_done - g_cancelled - g_disconnected -
	    g_no_answer > 0 ? "" : " none");
	if (g_n_lat > 0) {
		qsort(g_lat, (size_t)g_n_lat, sizeof(*g_lat), cmp_double);
		printf("time to first token: p50 %.1f ms, p99 %.1f ms (%ld)\n",
		    g_lat[g_n_lat / 2] * 1e3,
		    g_lat[(long)((double)g_n_lat * 0.99)] * 1e3, g_n_lat);
	}
	printf("tokens: %ld in %.1f s, %.0f tokens/s\n", g_tokens, elapsed,
	    (double)g_tokens / elapsed);
	printf("greedy outputs differing from alone: %ld\n", g_mismatch);
	printf("daemon RSS: before %ld kB, during up to %ld kB, after %ld kB "
	    "(%+.1f%%)\n", rss_before, (long)atomic_load(&g_rss_max),
	    rss_after, 100.0 * (double)(rss_after - rss_before) /
	    (double)rss_before);
	if (g_no_answer > 0 || g_mismatch > 0)
		fail = 1;
	if (rss_after > rss_before + rss_before / 20) {
		printf("FAIL: RSS after exceeds RSS before by more than 5%%\n");
		fail = 1;
	}
	if (stop_daemon() != 0) {
		printf("FAIL: hearthd did not stop cleanly (log in %s)\n",
		    g_dir);
		fail = 1;
	} else if (!fail) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "hearth-load: cannot remove %s\n",
			    g_dir);
	}
	printf("%s\n", fail ? "FAIL" : "PASS");
	free(w);
	free(g_lat);
	return fail;
}
