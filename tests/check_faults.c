/*
 * check_faults.c - hearthd under hostile requests and faults (issue 7):
 * start the real daemon on a temporary socket with generated models
 * (mkmodel_lib) and, for every case, do the hostile thing, expect a
 * clear error, then check that another client still gets the greedy
 * answer it got before and that the daemon's RSS is back near its level.
 *
 * requests: a frame length of 4 GiB, nesting 10,000 deep in a frame of a
 *         valid length, a 100 MB prompt (refused from its header, never
 *         allocated: VmHWM stays), max_tokens 2^63 and as a string,
 *         temperature NaN and -1, top_p 2 (and the other sampling
 *         fields out of range), token ids -1 and >= n_vocab,
 *         cancel of an unknown id and of another connection's id,
 *         connections from one uid past its max_connections while
 *         another uid (nobody, when we are root) is still served.
 * faults: a client SIGKILLed while it reads a stream, SIGHUP during a
 *         load, clients that leave or cancel while their model loads,
 *         loads that fail half-way (tensor data cut short, a file that
 *         cannot be read) followed by a good request.
 *
 * Covered elsewhere, not repeated here: SIGTERM during generation
 * (check_service: test_drain_finish, test_drain_deadline), a load over
 * the memory budget with the numbers and the model file truncated while
 * resident (check_daemon: test_budget_evict, test_truncate_resident), a
 * slow reader, a truncated frame and malformed frames (check_daemon).
 *
 * The client is tclient.c; the daemon is $HEARTH_BUILDDIR/hearthd.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mkmodel_lib.h"
#include "proto.h"
#include "tclient.h"
#include "testutil.h"

#define N_VOCAB		512	/* of the generated models */
#define MAX_CONNS	20	/* [access mine] max_connections */
#define OTHER_UID	65534	/* nobody */

static char	g_dir[4096];		/* temporary directory */
static char	g_models[4200];		/* models directory */
static char	g_sock[4200];		/* socket path */
static char	g_log[4200];		/* daemon's stderr */
static char	g_conf[4200];		/* configuration */
static pid_t	g_pid = -1;		/* the daemon */

/* ---- the daemon ---------------------------------------------------- */

static const char *
model_path(const char *name)
{
	static char path[4400];

	snprintf(path, sizeof(path), "%s/%s.gguf", g_models, name);
	return path;
}

static void
write_model(const struct mkm_spec *spec, const char *name)
{
	struct eng_err err = { "" };

	if (mkm_write(spec, model_path(name), &err) != 0) {
		fprintf(stderr, "mkm_write %s: %s\n", name, err.msg);
		abort();
	}
}

static void
make_models(void)
{
	struct mkm_spec s;
	FILE *f;

	snprintf(g_dir, sizeof(g_dir), "%s", tu_tmpdir());
	snprintf(g_models, sizeof(g_models), "%s/models", g_dir);
	snprintf(g_sock, sizeof(g_sock), "%s/run/hearth.sock", g_dir);
	snprintf(g_log, sizeof(g_log), "%s/daemon.log", g_dir);
	snprintf(g_conf, sizeof(g_conf), "%s/hearthd.conf", g_dir);
	/* nobody must reach the socket */
	chmod(g_dir, 0711);
	if (mkdir(g_models, 0700) != 0)
		abort();
	mkm_spec_default(&s);		/* llama, 64 dim, context 512 */
	s.n_vocab = N_VOCAB;
	write_model(&s, "tiny");
	write_model(&s, "cut");
	write_model(&s, "locked");
	s.n_embd = 128;
	s.n_ff = 256;
	s.n_ctx = 4096;
	s.seed = 3;
	write_model(&s, "long");
	write_model(&s, "big");
	f = fopen(g_conf, "w");
	fprintf(f, "# check_faults\n[daemon]\n"
	    "keep_alive = 300\nn_parallel = 8\nmax_queue = 64\n"
	    "drain_timeout = 300ms\nmax_connections = %d\n"
	    "output_buffer = 64K\npause_timeout = 2s\nmax_models = 8\n"
	    "external_links = yes\n"
	    "\n[access mine]\nuser = %u\nadmin = yes\nmax_connections = %d\n"
	    "\n[access default]\nmodels = *\n",
	    MAX_CONNS * 3, (unsigned)geteuid(), MAX_CONNS);
	fclose(f);
}

static const char *
daemon_path(void)
{
	static char path[4096];
	const char *b = getenv("HEARTH_BUILDDIR");

	snprintf(path, sizeof(path), "%s/hearthd", b != NULL && *b ? b : ".");
	return path;
}

static void
print_log(void)
{
	size_t len;
	uint8_t *s = tu_read_file(g_log, &len);

	if (s != NULL) {
		fprintf(stderr, "---- hearthd log ----\n%.*s---- end ----\n",
		    (int)len, (const char *)s);
		free(s);
	}
}

static void
daemon_start(void)
{
	int i, fd;

	g_pid = fork();
	if (g_pid < 0)
		abort();
	if (g_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 2);
		execl(daemon_path(), "hearthd", "-d", "-s", g_sock, "-m",
		    g_models, "-c", g_conf, "-t", "1", (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", daemon_path(), strerror(errno));
		_exit(127);
	}
	for (i = 0; i < 1000 * timeout_scale(); i++) {
		if ((fd = tc_connect(g_sock)) >= 0) {
			close(fd);
			chmod(g_sock, 0666);
			return;
		}
		if (waitpid(g_pid, NULL, WNOHANG) == g_pid)
			break;
		usleep(10000);
	}
	print_log();
	fprintf(stderr, "hearthd did not start\n");
	abort();
}

static int
daemon_stop(void)
{
	int st, i;

	if (g_pid <= 0)
		return 0;
	kill(g_pid, SIGTERM);
	for (i = 0; i < 500 * timeout_scale(); i++) {
		if (waitpid(g_pid, &st, WNOHANG) == g_pid) {
			g_pid = -1;
			return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
		}
		usleep(10000);
	}
	kill(g_pid, SIGKILL);
	waitpid(g_pid, &st, 0);
	g_pid = -1;
	return -1;
}

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	make_models();
	daemon_start();
}

static void
teardown(void)
{
	if (daemon_stop() != 0) {
		print_log();
		fprintf(stderr, "hearthd did not stop cleanly\n");
	} else if (getenv("CHECK_DAEMON_LOG") != NULL)
		print_log();
	tu_tmpdir_free();
}

/* A field of /proc/PID/status in kB ("VmRSS", "VmHWM"). */
static long
daemon_kb(const char *field)
{
	char path[64], line[256], fmt[64];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)g_pid);
	snprintf(fmt, sizeof(fmt), "%s: %%ld kB", field);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, fmt, &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* ---- the reference client ---------------------------------------------- */

/* The bystander: one connection and the greedy answer it got first. */
struct keep {
	struct tc	 c;
	struct gen	*want;		/* "long", "steady", 16 tokens */
	long		 rss;		/* kB after the warm-up */
};

static void
keep_gen(struct keep *k, struct gen *g)
{
	int64_t id = tc_generate(&k->c, "long", "steady", 16, true);

	ck_assert_int_eq(tc_collect(&k->c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "no done: error %d %s", g->error, g->msg);
}

static void
keep_open(struct keep *k)
{
	struct gen *g = gen_new();
	int i;

	tc_open_at(&k->c, g_sock);
	k->want = gen_new();
	keep_gen(k, k->want);
	ck_assert_uint_gt(k->want->n, 0);
	/* warm up the slots of both models a little */
	for (i = 0; i < 2; i++) {
		int64_t id = tc_generate(&k->c, "tiny", "warm", 64, true);

		memset(g, 0, sizeof(*g));
		ck_assert_int_eq(tc_collect(&k->c, (uint64_t)id, g, 0), 0);
		memset(g, 0, sizeof(*g));
		keep_gen(k, g);
	}
	free(g);
	tc_ping(&k->c);
	k->rss = daemon_kb("VmRSS");
	ck_assert_int_gt(k->rss, 0);
}

/* Still served the same answer, memory back near its level. */
static void
keep_check(struct keep *k)
{
	struct gen *g = gen_new();
	long rss;
	uint32_t i;

	keep_gen(k, g);
	ck_assert_uint_eq(g->n, k->want->n);
	for (i = 0; i < g->n; i++)
		ck_assert_int_eq(g->ids[i], k->want->ids[i]);
	free(g);
	usleep(100000);
	tc_ping(&k->c);
	rss = daemon_kb("VmRSS");
	ck_assert_msg(rss <= k->rss + k->rss / 10 + 4096,
	    "RSS %ld kB before, %ld kB after", k->rss, rss);
}

static void
keep_close(struct keep *k)
{
	tc_close(&k->c);
	free(k->want);
}

/* ---- raw msgpack ------------------------------------------------------- */

struct mp {
	uint8_t	 b[65536];	/* the body */
	size_t	 n;		/* bytes used */
};

static void
mp_byte(struct mp *m, uint8_t v)
{
	ck_assert_uint_lt(m->n, sizeof(m->b));
	m->b[m->n++] = v;
}

static void
mp_be(struct mp *m, uint64_t v, int bytes)
{
	while (bytes-- > 0)
		mp_byte(m, (uint8_t)(v >> (8 * bytes)));
}

static void
mp_str(struct mp *m, const char *s)
{
	size_t len = strlen(s);

	ck_assert_uint_lt(len, 32);
	mp_byte(m, (uint8_t)(0xa0 | len));
	memcpy(m->b + m->n, s, len);
	m->n += len;
}

static void
mp_u64(struct mp *m, uint64_t v)
{
	mp_byte(m, 0xcf);
	mp_be(m, v, 8);
}

static void
mp_i64(struct mp *m, int64_t v)
{
	mp_byte(m, 0xd3);
	mp_be(m, (uint64_t)v, 8);
}

static void
mp_f64(struct mp *m, double d)
{
	uint64_t u;

	memcpy(&u, &d, 8);
	mp_byte(m, 0xcb);
	mp_be(m, u, 8);
}

/* {"type": "generate", "id": id, "model": model, + n_more pairs */
static void
mp_generate(struct mp *m, uint64_t id, const char *model, unsigned n_more)
{
	m->n = 0;
	mp_byte(m, (uint8_t)(0x80 | (3 + n_more)));
	mp_str(m, "type");
	mp_str(m, "generate");
	mp_str(m, "id");
	mp_u64(m, id);
	mp_str(m, "model");
	mp_str(m, model);
}

static void
send_frame(struct tc *c, const void *body, uint32_t len)
{
	uint8_t hdr[4];

	proto_frame_hdr(hdr, len);
	ck_assert_int_eq(tc_write(c, hdr, 4), 0);
	ck_assert_int_eq(tc_write(c, body, len), 0);
}

static void
send_mp(struct tc *c, const struct mp *m)
{
	send_frame(c, m->b, (uint32_t)m->n);
}

/* Expect an id-0 error then end of file. */
static void
expect_error_close(struct tc *c, enum proto_code code)
{
	struct proto_response resp;

	tc_expect_error(c, 0, code, NULL);
	ck_assert_int_eq(tc_recv(c, &resp, TIMEOUT_MS), 0);
}

/* ---- requests -------------------------------------------------------- */

START_TEST(test_frame_4g)
{
	static const uint8_t hdr[4] = { 0xff, 0xff, 0xff, 0xff };
	struct keep k;
	struct tc c;

	keep_open(&k);
	tc_open_at(&c, g_sock);
	ck_assert_int_eq(tc_write(&c, hdr, 4), 0);
	expect_error_close(&c, PROTO_E_TOO_LARGE);
	tc_close(&c);
	/* before hello too */
	ck_assert_int_eq(tc_open_raw_at(&c, g_sock), 0);
	ck_assert_int_eq(tc_write(&c, hdr, 4), 0);
	expect_error_close(&c, PROTO_E_TOO_LARGE);
	tc_close(&c);
	keep_check(&k);
	keep_close(&k);
}
END_TEST

START_TEST(test_deep_nesting)
{
	struct mp *m = calloc(1, sizeof(*m));
	struct keep k;
	struct tc c;
	int i;

	keep_open(&k);
	tc_open_at(&c, g_sock);
	/* {"type": "ping", "id": 3, "x": [[[[... 10,000 deep ...]]]]} */
	mp_byte(m, 0x83);
	mp_str(m, "type");
	mp_str(m, "ping");
	mp_str(m, "id");
	mp_byte(m, 0x03);
	mp_str(m, "x");
	for (i = 0; i < 10000; i++)
		mp_byte(m, 0x91);
	mp_byte(m, 0x01);
	ck_assert_uint_lt(m->n, PROTO_MAX_FRAME_DEFAULT);
	send_mp(&c, m);
	tc_expect_error(&c, 0, PROTO_E_BAD_REQUEST, NULL);
	/* and maps 10,000 deep: {"x": {"x": ...}} */
	m->n = 0;
	for (i = 0; i < 10000; i++) {
		mp_byte(m, 0x81);
		mp_str(m, "x");
	}
	mp_byte(m, 0x01);
	send_mp(&c, m);
	tc_expect_error(&c, 0, PROTO_E_BAD_REQUEST, NULL);
	/* the connection itself still works */
	tc_ping(&c);
	tc_close(&c);
	keep_check(&k);
	keep_close(&k);
	free(m);
}
END_TEST

START_TEST(test_huge_prompt)
{
	const size_t total = 100u << 20;	/* 100 MB */
	struct mp *m = calloc(1, sizeof(*m));
	uint8_t *chunk = malloc(1 << 20);
	struct proto_response resp;
	struct keep k;
	long hwm0, hwm1;
	struct tc c;
	size_t sent;
	int r;

	keep_open(&k);
	hwm0 = daemon_kb("VmHWM");
	tc_open_at(&c, g_sock);
	/* a generate whose prompt is a str32 of 100 MB */
	mp_generate(m, 5, "tiny", 1);
	mp_str(m, "prompt");
	mp_byte(m, 0xdb);
	mp_be(m, total, 4);
	{
		uint8_t hdr[4];

		proto_frame_hdr(hdr, (uint32_t)(m->n + total));
		ck_assert_int_eq(tc_write(&c, hdr, 4), 0);
	}
	/* the daemon answers from the header: it may close while we write */
	memset(chunk, 'a', 1 << 20);
	if (tc_write(&c, m->b, m->n) == 0)
		for (sent = 0; sent < total; sent += 1 << 20)
			if (tc_write(&c, chunk, 1 << 20) != 0)
				break;
	tc_expect_error(&c, 0, PROTO_E_TOO_LARGE, NULL);
	do {
		r = tc_recv(&c, &resp, TIMEOUT_MS);
		if (r == 1)
			proto_response_free(&resp);
	} while (r == 1);
	ck_assert_int_le(r, 0);
	ck_assert_int_ne(r, -ETIMEDOUT);
	tc_close(&c);
	/* never held in the daemon's memory */
	hwm1 = daemon_kb("VmHWM");
	ck_assert_msg(hwm1 < hwm0 + 32 * 1024, "VmHWM %ld kB, then %ld kB",
	    hwm0, hwm1);
	keep_check(&k);
	keep_close(&k);
	free(chunk);
	free(m);
}
END_TEST

/* One raw generate with an extra pair; the error must name the field. */
static void
bad_param(struct tc *c, uint64_t id, const char *key,
    void (*val)(struct mp *, const void *), const void *arg)
{
	struct mp *m = calloc(1, sizeof(*m));

	mp_generate(m, id, "tiny", 2);
	mp_str(m, "prompt");
	mp_str(m, "x");
	mp_str(m, key);
	val(m, arg);
	send_mp(c, m);
	tc_expect_error(c, id, PROTO_E_BAD_REQUEST, key);
	free(m);
}

static void
val_u64(struct mp *m, const void *arg)
{
	mp_u64(m, *(const uint64_t *)arg);
}

static void
val_i64(struct mp *m, const void *arg)
{
	mp_i64(m, *(const int64_t *)arg);
}

static void
val_f64(struct mp *m, const void *arg)
{
	mp_f64(m, *(const double *)arg);
}

static void
val_str(struct mp *m, const void *arg)
{
	mp_str(m, arg);
}

START_TEST(test_bad_params)
{
	const uint64_t big = 1ull << 63, huge = UINT64_MAX;
	const int64_t minus1 = -1;
	const double nan_ = NAN, inf = INFINITY, neg = -1.0, two = 2.0,
	    neg_top = -0.5;
	struct keep k;
	struct tc c;

	keep_open(&k);
	tc_open_at(&c, g_sock);
	bad_param(&c, 11, "max_tokens", val_u64, &big);
	bad_param(&c, 12, "max_tokens", val_u64, &huge);
	bad_param(&c, 13, "max_tokens", val_i64, &minus1);
	bad_param(&c, 14, "max_tokens", val_str, "9223372036854775808");
	bad_param(&c, 15, "temperature", val_f64, &nan_);
	bad_param(&c, 16, "temperature", val_f64, &neg);
	bad_param(&c, 17, "temperature", val_f64, &inf);
	bad_param(&c, 18, "top_p", val_f64, &two);
	bad_param(&c, 19, "top_p", val_f64, &neg_top);
	bad_param(&c, 20, "top_p", val_f64, &nan_);
	bad_param(&c, 21, "top_k", val_u64, &big);
	bad_param(&c, 22, "min_p", val_f64, &nan_);
	bad_param(&c, 23, "repeat_penalty", val_f64, &neg);
	bad_param(&c, 24, "presence_penalty", val_f64, &inf);
	bad_param(&c, 25, "penalty_last_n", val_u64, &big);
	bad_param(&c, 26, "top_logprobs", val_u64, &huge);
	bad_param(&c, 27, "keep_alive", val_u64, &big);
	bad_param(&c, 28, "seed", val_str, "42");
	tc_ping(&c);
	tc_close(&c);
	keep_check(&k);
	keep_close(&k);
}
END_TEST

START_TEST(test_bad_ids)
{
	static const int32_t over[] = { 1, 5, N_VOCAB, 7 };
	static const int32_t far[] = { 1, 0x7fffffff };
	struct mp *m = calloc(1, sizeof(*m));
	struct proto_request r;
	struct keep k;
	struct tc c;
	int64_t id;

	keep_open(&k);
	tc_open_at(&c, g_sock);
	/* -1 is not a token id on the wire */
	mp_generate(m, 31, "tiny", 1);
	mp_str(m, "ids");
	mp_byte(m, 0x93);
	mp_byte(m, 0x01);
	mp_byte(m, 0xff);	/* -1 */
	mp_byte(m, 0x05);
	send_mp(&c, m);
	tc_expect_error(&c, 31, PROTO_E_BAD_REQUEST, "ids");
	/* >= n_vocab: the model refuses them before any work */
	proto_request_init(&r, PROTO_MSG_GENERATE, 0);
	r.u.generate.model = "tiny";
	r.u.generate.input.ids = over;
	r.u.generate.input.n_ids = 4;
	id = tc_send(&c, &r);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST,
	    "out of the vocabulary of 512");
	r.id = 0;
	r.u.generate.input.ids = far;
	r.u.generate.input.n_ids = 2;
	id = tc_send(&c, &r);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST,
	    "out of the vocabulary of 512");
	/* and to detokenize */
	proto_request_init(&r, PROTO_MSG_DETOKENIZE, 0);
	r.u.detokenize.model = "tiny";
	r.u.detokenize.ids = over;
	r.u.detokenize.n_ids = 4;
	id = tc_send(&c, &r);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BAD_REQUEST,
	    "ids[2]: 512 is not below the vocabulary size 512");
	tc_ping(&c);
	tc_close(&c);
	keep_check(&k);
	keep_close(&k);
	free(m);
}
END_TEST

START_TEST(test_cancel_foreign)
{
	struct proto_response resp;
	struct proto_request r;
	struct gen *g = gen_new();
	struct keep k;
	struct tc a, b;
	int64_t id, cid;

	keep_open(&k);
	tc_open_at(&a, g_sock);
	tc_open_at(&b, g_sock);
	/* a's stream runs */
	id = tc_generate(&a, "long", "mine", 200, true);
	ck_assert_int_eq(tc_collect(&a, (uint64_t)id, g, 2), 1);
	/* b cancels a's id: not found on b's connection */
	proto_request_init(&r, PROTO_MSG_CANCEL, 0);
	r.u.cancel.target = (uint64_t)id;
	r.id = (uint64_t)id + 100;	/* b's own id for it */
	cid = tc_send(&b, &r);
	tc_expect_reply(&b, (uint64_t)cid, PROTO_MSG_CANCEL, &resp);
	ck_assert(!resp.u.cancel.found);
	proto_response_free(&resp);
	/* an id nobody has */
	r.id = 0;
	r.u.cancel.target = 0xfffffffffffull;
	cid = tc_send(&b, &r);
	tc_expect_reply(&b, (uint64_t)cid, PROTO_MSG_CANCEL, &resp);
	ck_assert(!resp.u.cancel.found);
	proto_response_free(&resp);
	/* a's stream runs to its end, not cancelled */
	ck_assert_int_eq(tc_collect(&a, (uint64_t)id, g, 0), 0);
	ck_assert(g->done);
	ck_assert_int_ne(g->reason, PROTO_REASON_CANCELLED);
	ck_assert_uint_eq(g->generated_tokens, g->n);
	tc_close(&a);
	tc_close(&b);
	keep_check(&k);
	keep_close(&k);
	free(g);
}
END_TEST

/* In a child as OTHER_UID: hello, a generate answered; exit code. */
static int
other_uid_served(void)
{
	struct proto_response resp;
	struct gen g;
	struct tc c;
	int64_t id;
	int fd;

	if (setgroups(0, NULL) != 0 || setgid(OTHER_UID) != 0 ||
	    setuid(OTHER_UID) != 0)
		return 3;
	if ((fd = tc_connect(g_sock)) < 0)
		return fd == -EACCES ? 77 : 4;
	close(fd);
	if (tc_open_raw_at(&c, g_sock) != 0)
		return 4;
	{
		struct proto_request r;

		proto_request_init(&r, PROTO_MSG_HELLO, 0);
		r.u.hello.version = PROTO_VERSION;
		r.u.hello.client = "check_faults";
		if ((id = tc_send(&c, &r)) < 0 ||
		    tc_recv(&c, &resp, TIMEOUT_MS) != 1)
			return 5;
		if (resp.type != PROTO_MSG_REPLY)
			return 6;
		proto_response_free(&resp);
	}
	memset(&g, 0, sizeof(g));
	id = tc_generate(&c, "tiny", "other", 4, true);
	if (id < 0 || tc_collect(&c, (uint64_t)id, &g, 0) != 0 || !g.done)
		return 7;
	tc_close(&c);
	return 0;
}

START_TEST(test_max_connections)
{
	struct tc *cs = calloc(MAX_CONNS + 10, sizeof(*cs));
	struct proto_response resp;
	struct keep k;
	int i, n_ok = 0, n_busy = 0, r, st;
	pid_t pid;

	keep_open(&k);		/* one of ours */
	for (i = 0; i < MAX_CONNS + 9; i++) {
		ck_assert_int_eq(tc_open_raw_at(&cs[i], g_sock), 0);
		r = tc_recv(&cs[i], &resp, 200);
		if (r == 1) {
			ck_assert_int_eq(resp.type, PROTO_MSG_ERROR);
			ck_assert_int_eq(resp.u.error.code, PROTO_E_BUSY);
			ck_assert_msg(strstr(resp.u.error.message,
			    "max_connections") != NULL, "%s",
			    resp.u.error.message);
			proto_response_free(&resp);
			n_busy++;
		} else {
			ck_assert_int_eq(r, -ETIMEDOUT);
			n_ok++;
		}
	}
	ck_assert_int_eq(n_ok, MAX_CONNS - 1);
	ck_assert_int_eq(n_busy, 10);
	/* another uid is still served */
	if (geteuid() != 0)
		fprintf(stderr, "SKIP: another uid needs root (setuid)\n");
	else {
		if ((pid = fork()) < 0)
			abort();
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			_exit(other_uid_served());
		}
		waitpid(pid, &st, 0);
		ck_assert(WIFEXITED(st));
		if (WEXITSTATUS(st) == 77)
			fprintf(stderr, "SKIP: uid %u cannot reach the "
			    "socket\n", OTHER_UID);
		else
			ck_assert_msg(WEXITSTATUS(st) == 0, "uid %u: step %d",
			    OTHER_UID, WEXITSTATUS(st));
	}
	/* closing them frees the places: MAX_CONNS - 1 open again */
	for (i = 0; i < MAX_CONNS + 9; i++)
		tc_close(&cs[i]);
	usleep(200000);
	for (i = 0; i < MAX_CONNS - 1; i++)
		tc_open_at(&cs[i], g_sock);
	tc_ping(&cs[MAX_CONNS - 2]);
	for (i = 0; i < MAX_CONNS - 1; i++)
		tc_close(&cs[i]);
	keep_check(&k);
	keep_close(&k);
	free(cs);
}
END_TEST

/* ---- faults ------------------------------------------------------------ */

START_TEST(test_killed_reader)
{
	struct keep k;
	struct gen *g;
	int p[2], i, st;
	char ch;
	pid_t pid;

	keep_open(&k);
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(pipe(p), 0);
		if ((pid = fork()) < 0)
			abort();
		if (pid == 0) {
			struct tc c;
			int64_t id;

			close(p[0]);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			g = gen_new();
			tc_open_at(&c, g_sock);
			id = tc_generate(&c, "long", "killed", 3000, true);
			if (tc_collect(&c, (uint64_t)id, g, 3) != 1)
				_exit(1);
			(void)!write(p[1], "r", 1);
			/* reading on, until killed */
			tc_collect(&c, (uint64_t)id, g, 0);
			_exit(2);
		}
		close(p[1]);
		ck_assert_int_eq(read(p[0], &ch, 1), 1);
		close(p[0]);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		ck_assert(WIFSIGNALED(st));
	}
	keep_check(&k);
	keep_close(&k);
}
END_TEST

static void
unload_model(struct tc *c, const char *name)
{
	struct proto_response resp;
	int64_t id = tc_simple(c, PROTO_MSG_UNLOAD, name);

	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_UNLOAD, &resp);
	proto_response_free(&resp);
}

/* Load a model; progress events, then the reply or an error. */
static int
load_model(struct tc *c, const char *name, struct proto_response *out)
{
	struct proto_request r;
	int64_t id;

	proto_request_init(&r, PROTO_MSG_LOAD, 0);
	r.u.load.model = name;
	id = tc_send(c, &r);
	for (;;) {
		tc_must_recv(c, out);
		ck_assert_uint_eq(out->id, (uint64_t)id);
		if (out->type != PROTO_MSG_PROGRESS)
			return out->type == PROTO_MSG_REPLY ? 0 : -1;
		proto_response_free(out);
	}
}

START_TEST(test_sighup_load)
{
	struct proto_response resp;
	struct proto_request r;
	struct keep k;
	struct tc c;
	int64_t id;
	int i;

	keep_open(&k);
	tc_open_at(&c, g_sock);
	for (i = 0; i < 3; i++) {
		proto_request_init(&r, PROTO_MSG_LOAD, 0);
		r.u.load.model = "big";
		id = tc_send(&c, &r);
		kill(g_pid, SIGHUP);
		for (;;) {
			tc_must_recv(&c, &resp);
			ck_assert_uint_eq(resp.id, (uint64_t)id);
			if (resp.type != PROTO_MSG_PROGRESS)
				break;
			proto_response_free(&resp);
		}
		ck_assert_msg(resp.type == PROTO_MSG_REPLY, "load: %d %s",
		    resp.type, resp.type == PROTO_MSG_ERROR ?
		    resp.u.error.message : "");
		proto_response_free(&resp);
		id = tc_simple(&c, PROTO_MSG_UNLOAD, "big");
		tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_UNLOAD, &resp);
		proto_response_free(&resp);
	}
	/* the daemon is still there and serves "big" from scratch */
	ck_assert_int_eq(waitpid(g_pid, NULL, WNOHANG), 0);
	{
		struct gen *g = gen_new();

		id = tc_generate(&c, "big", "after hup", 8, true);
		ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
		ck_assert(g->done);
		free(g);
	}
	unload_model(&c, "big");
	tc_close(&c);
	keep_check(&k);
	keep_close(&k);
}
END_TEST

START_TEST(test_load_fails)
{
	struct proto_response resp;
	struct stat st;
	struct keep k;
	struct tc c;
	int64_t id;

	keep_open(&k);
	tc_open_at(&c, g_sock);
	/* tensor data cut short: the header is fine, the data is not */
	ck_assert_int_eq(stat(model_path("cut"), &st), 0);
	ck_assert_int_eq(truncate(model_path("cut"), st.st_size - 1000), 0);
	ck_assert_int_eq(load_model(&c, "cut", &resp), -1);
	ck_assert_int_eq(resp.u.error.code, PROTO_E_MODEL_ERROR);
	ck_assert_msg(strlen(resp.u.error.message) > 10, "%s",
	    resp.u.error.message);
	proto_response_free(&resp);
	/* a request waiting for it gets the error too */
	id = tc_generate(&c, "cut", "x", 4, true);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_MODEL_ERROR, NULL);
	/* a file that cannot be read (root reads anyway: skip) */
	ck_assert_int_eq(chmod(model_path("locked"), 0), 0);
	if (geteuid() == 0)
		fprintf(stderr, "SKIP: root reads a mode 000 file\n");
	else {
		ck_assert_int_eq(load_model(&c, "locked", &resp), -1);
		ck_assert_msg(strstr(resp.u.error.message, "ermission") !=
		    NULL, "%s", resp.u.error.message);
		proto_response_free(&resp);
	}
	chmod(model_path("locked"), 0644);
	/* then a good model loads and answers */
	ck_assert_int_eq(load_model(&c, "big", &resp), 0);
	proto_response_free(&resp);
	{
		struct gen *g = gen_new();

		id = tc_generate(&c, "big", "after the failures", 8, true);
		ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
		ck_assert(g->done);
		ck_assert_uint_gt(g->n, 0);
		free(g);
	}
	unload_model(&c, "big");
	tc_close(&c);
	keep_check(&k);
	keep_close(&k);
}
END_TEST

/* Clients that leave (or cancel) while their model is still loading. */
START_TEST(test_leave_during_load)
{
	struct proto_response resp;
	struct proto_request r;
	struct gen *g = gen_new();
	struct keep k;
	struct tc c, d;
	int64_t id, cid;
	int i;

	keep_open(&k);
	tc_open_at(&c, g_sock);
	for (i = 0; i < 4; i++) {
		/* a generate that waits for the load, then the client goes */
		tc_open_at(&d, g_sock);
		id = tc_generate(&d, "big", "gone before the load", 50, true);
		ck_assert_int_gt(id, 0);
		proto_request_init(&r, PROTO_MSG_LOAD, 0);
		r.u.load.model = "big";
		ck_assert_int_gt(tc_send(&d, &r), 0);
		tc_close(&d);
		/* one cancelled while it waits */
		id = tc_generate(&c, "big", "cancelled while loading", 50,
		    true);
		proto_request_init(&r, PROTO_MSG_CANCEL, 0);
		r.u.cancel.target = (uint64_t)id;
		cid = tc_send(&c, &r);
		/* its end (done cancelled, or done if it won) and the reply */
		memset(g, 0, sizeof(*g));
		for (;;) {
			tc_must_recv(&c, &resp);
			if (resp.id == (uint64_t)cid) {
				ck_assert_int_eq(resp.type, PROTO_MSG_REPLY);
				proto_response_free(&resp);
				if (g->done)
					break;
				continue;
			}
			ck_assert_uint_eq(resp.id, (uint64_t)id);
			ck_assert_int_ne(resp.type, PROTO_MSG_ERROR);
			if (resp.type == PROTO_MSG_DONE) {
				g->done = true;
				proto_response_free(&resp);
				break;
			}
			proto_response_free(&resp);
		}
		if (g->done) {
			/* the cancel reply may still come */
			if (tc_recv(&c, &resp, 2000) == 1) {
				ck_assert_uint_eq(resp.id, (uint64_t)cid);
				proto_response_free(&resp);
			}
		}
		unload_model(&c, "big");
	}
	/* then "big" serves a fresh request */
	memset(g, 0, sizeof(*g));
	id = tc_generate(&c, "big", "after all that", 8, true);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert(g->done);
	unload_model(&c, "big");
	tc_close(&c);
	keep_check(&k);
	keep_close(&k);
	free(g);
}
END_TEST

static Suite *
faults_suite(void)
{
	Suite *s = suite_create("faults");
	TCase *tc;

	tc = tcase_create("requests");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_frame_4g);
	tcase_add_test(tc, test_deep_nesting);
	tcase_add_test(tc, test_huge_prompt);
	tcase_add_test(tc, test_bad_params);
	tcase_add_test(tc, test_bad_ids);
	tcase_add_test(tc, test_cancel_foreign);
	tcase_add_test(tc, test_max_connections);
	suite_add_tcase(s, tc);

	tc = tcase_create("faults");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_killed_reader);
	tcase_add_test(tc, test_sighup_load);
	tcase_add_test(tc, test_leave_during_load);
	tcase_add_test(tc, test_load_fails);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(faults_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
