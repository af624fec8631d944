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
 *         another uid (nobody, when we are root) is still served, a
 *         prompt of 4 MiB while another client streams (its streams do
 *         not stall while the long text is tokenized).
 * faults: a client SIGKILLed while it reads a stream; SIGHUP during a
 *         load (plain, and with a configuration that changes the
 *         model's settings); SIGTERM during a load (the drain cancels
 *         it, or lets it and the request waiting for it finish);
 *         clients that leave or cancel while their model loads; loads
 *         that fail (tensor data cut short, the file cut while it is
 *         read, over the memory budget, out of address space half-way,
 *         a file that cannot be read: as root, by a second hearthd
 *         running as nobody), each followed by good requests.
 *
 * "During a load" is made certain by holding the loader thread still
 * with ptrace once the first progress event came (freeze_new), while the
 * loop and the schedulers run on; the log then shows the signal handled
 * before the load ended.
 *
 * Covered elsewhere, not repeated here: SIGTERM during generation
 * (check_service: test_drain_finish, test_drain_deadline), the budget's
 * evictions and the model file truncated while resident (check_daemon:
 * test_budget_evict, test_truncate_resident), a slow reader, a
 * truncated frame and malformed frames (check_daemon).
 *
 * The client is tclient.c; the daemon is $HEARTH_BUILDDIR/hearthd.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mkmodel_lib.h"
#include "proto.h"
#include "tclient.h"
#include "testutil.h"

#define N_VOCAB		512	/* of the generated models */
#define MAX_CONNS	20	/* [access mine] max_connections */
#define OTHER_UID	65534	/* nobody */
#define LOG_WAIT_MS	10000	/* for lines in the log */

static struct td g_d;			/* the daemon (tclient.c) */

/* ---- the daemon ---------------------------------------------------- */

/*
 * The configuration: the [daemon] section with daemon_extra appended,
 * the access rules, then extra (more sections), if not NULL.
 */
static void
conf_write(const char *daemon_extra, const char *extra)
{
	char tmp[4300];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", g_d.conf);
	if ((f = fopen(tmp, "w")) == NULL)
		abort();
	fprintf(f, "# check_faults\n[daemon]\n"
	    "keep_alive = 300\nn_parallel = 8\nmax_queue = 64\n"
	    "drain_timeout = 300ms\nmax_connections = %d\n"
	    "output_buffer = 64K\npause_timeout = 2s\nmax_models = 8\n"
	    "external_links = yes\n%s"
	    "\n[access mine]\nuser = %u\nadmin = yes\nmax_connections = %d\n"
	    "\n[access default]\nmodels = *\n%s",
	    MAX_CONNS * 3, daemon_extra != NULL ? daemon_extra : "",
	    (unsigned)geteuid(), MAX_CONNS, extra != NULL ? extra : "");
	if (fclose(f) != 0 || rename(tmp, g_d.conf) != 0)
		abort();
}

static void
make_models(void)
{
	struct mkm_spec s;

	if (td_init(&g_d, tu_tmpdir()) != 0)
		abort();
	/* nobody must reach the socket */
	chmod(g_d.dir, 0711);
	mkm_spec_default(&s);		/* llama, 64 dim, context 512 */
	s.n_vocab = N_VOCAB;
	td_write_model(&g_d, &s, "tiny");
	td_write_model(&g_d, &s, "cut");
	td_write_model(&g_d, &s, "locked");
	s.n_embd = 128;
	s.n_ff = 256;
	s.n_ctx = 4096;
	s.seed = 3;
	td_write_model(&g_d, &s, "long");
	td_write_model(&g_d, &s, "big");
	conf_write(NULL, NULL);
}

/*
 * A model whose load takes a while: about 90 MB of F32 weights, read in
 * a dozen chunks of the loader (so progress comes long before the end;
 * under valgrind, where nothing holds the loader, the load outlasts a
 * drain_timeout of 300 ms too).
 */
static void
write_slow(void)
{
	struct mkm_spec s;

	mkm_spec_default(&s);
	s.n_vocab = N_VOCAB;
	s.n_embd = 512;
	s.n_ff = 2048;
	s.n_layer = 6;
	s.n_head = 8;
	s.n_head_kv = 2;
	s.seed = 7;
	td_write_model(&g_d, &s, "slow");
}

static void
daemon_start(void)
{
	td_start(&g_d);
	chmod(g_d.sock, 0666);
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
	td_finish(&g_d);
	tu_tmpdir_free();
}


/*
 * pid is a sanitizer build: its address space has the terabytes of
 * ASan's shadow, and its RSS holds freed memory in ASan's quarantine
 * (so RSS says nothing of what hearthd gave back).
 */
static bool
pid_sanitized(pid_t pid)
{
	return td_status_kb(pid, "VmSize") > (1L << 30);
}

/* ---- the daemon's log ------------------------------------------------ */

/* The log line of a successful reload (server.c). */
#define LOG_RELOADED	"new rules and limits apply"

/* ---- holding a load still ---------------------------------------------- */

/*
 * A load is held at a point of our choosing by stopping the daemon's
 * loader thread with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT stop one
 * thread; the loop and the schedulers run on), so that a signal sent
 * then is handled while the load is surely in progress. Under valgrind
 * (which runs one thread at a time: stopping one would stop all) or
 * where ptrace is not allowed, nothing is stopped and the tests rely on
 * the load's length, and check the order of events in the log.
 */
#define MAX_TIDS	256

struct freeze {
	pid_t	 tid[16];	/* [n] stopped threads */
	size_t	 n;
	bool	 tried;		/* ptrace was allowed and used */
};

/* The daemon's threads: how many (at most max) in out. */
static size_t
daemon_tids(pid_t *out, size_t max)
{
	char path[64];
	struct dirent *e;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)g_d.pid);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < max)
		if (e->d_name[0] != '.')
			out[n++] = (pid_t)atoi(e->d_name);
	closedir(d);
	return n;
}

/* The daemon runs natively (not under valgrind). */
static bool
daemon_native(void)
{
	char path[64], comm[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)g_d.pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	if (fgets(comm, sizeof(comm), f) == NULL)
		comm[0] = '\0';
	fclose(f);
	return strncmp(comm, "hearthd", 7) == 0;
}

/*
 * The loop answers (a ping before hello gets its error): false when a
 * held thread was stopped inside a lock the loop needs (a worker is
 * stopped while it posts to the loop: libevent's lock is held).
 */
static bool
loop_alive(void)
{
	struct proto_response resp;
	struct tc t;
	bool ok;

	if (tc_open_raw_at(&t, g_d.sock) < 0)
		return false;
	ok = tc_simple(&t, PROTO_MSG_PING, NULL) > 0 &&
	    tc_recv(&t, &resp, 500) == 1;
	if (ok)
		proto_response_free(&resp);
	tc_close(&t);
	return ok;
}

static void thaw(struct freeze *fz);

/* Stop thread tid and add it to fz (not when ptrace is refused or the
 * thread ended meanwhile: the load is over). */
static void
freeze_tid(pid_t tid, struct freeze *fz)
{
	int st;

	if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
		fprintf(stderr, "note: ptrace(SEIZE) thread %d: %s: not held, "
		    "only long\n", (int)tid, strerror(errno));
		return;
	}
	fz->tried = true;
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0 ||
	    waitpid(tid, &st, __WALL) != tid || !WIFSTOPPED(st)) {
		(void)ptrace(PTRACE_DETACH, tid, 0, 0);
		return;
	}
	fz->tid[fz->n++] = tid;
}

/* Stop the threads the daemon has now and did not have in before[nb]. */
static void
freeze_new_once(const pid_t *before, size_t nb, struct freeze *fz)
{
	pid_t now[MAX_TIDS];
	size_t n, i, j;

	memset(fz, 0, sizeof(*fz));
	if (!daemon_native()) {
		fprintf(stderr, "note: hearthd is not native (valgrind?): the "
		    "load is not held, only long\n");
		return;
	}
	n = daemon_tids(now, MAX_TIDS);
	for (i = 0; i < n && fz->n < 16; i++) {
		for (j = 0; j < nb && before[j] != now[i]; j++)
			;
		if (j < nb)
			continue;
		freeze_tid(now[i], fz);
	}
}

/*
 * freeze_new_once, again (a few ms later) while the loop does not
 * answer with the threads held.
 */
static void
freeze_new(const pid_t *before, size_t nb, struct freeze *fz)
{
	int i;

	for (i = 0; i < 50; i++) {
		freeze_new_once(before, nb, fz);
		if (fz->n == 0 || loop_alive())
			break;
		thaw(fz);
		usleep(3000);
	}
	if (getenv("CHECK_FAULTS_VERBOSE") != NULL)
		fprintf(stderr, "freeze: %zu new thread%s held%s\n", fz->n,
		    fz->n == 1 ? "" : "s", i > 0 ? " (after a retry)" : "");
}

/* The comm (thread name) of the daemon's thread tid; "" if unknown. */
static void
thread_comm(pid_t tid, char *buf, size_t size)
{
	char path[96];
	FILE *f;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)g_d.pid,
	    (int)tid);
	if ((f = fopen(path, "r")) == NULL)
		return;
	if (fgets(buf, (int)size, f) == NULL)
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

/*
 * Stop the daemon's threads named comm (the header threads are
 * "hearth-meta"): fz->n of them; none under valgrind or without ptrace.
 */
static void
freeze_named_once(const char *comm, struct freeze *fz)
{
	pid_t now[MAX_TIDS];
	char name[64];
	size_t n, i;
	bool found = false;

	memset(fz, 0, sizeof(*fz));
	if (!daemon_native())
		return;
	n = daemon_tids(now, MAX_TIDS);
	for (i = 0; i < n && fz->n < 16; i++) {
		thread_comm(now[i], name, sizeof(name));
		if (strcmp(name, comm) != 0)
			continue;
		found = true;
		freeze_tid(now[i], fz);
	}
	ck_assert_msg(found, "hearthd has no thread named %s", comm);
}

static void
freeze_named(const char *comm, struct freeze *fz)
{
	int i;

	for (i = 0; i < 50; i++) {
		freeze_named_once(comm, fz);
		if (fz->n == 0 || loop_alive())
			break;
		thaw(fz);
		usleep(3000);
	}
}

static void
thaw(struct freeze *fz)
{
	size_t i;

	for (i = 0; i < fz->n; i++)
		ck_assert_int_eq(ptrace(PTRACE_DETACH, fz->tid[i], 0, 0), 0);
	fz->n = 0;
}

/* Send a load request; its id. */
static int64_t
load_send(struct tc *c, const char *name)
{
	struct proto_request r;

	proto_request_init(&r, PROTO_MSG_LOAD, 0);
	r.u.load.model = name;
	return tc_send(c, &r);
}

/* Wait for the first progress event of load id (its done < total). */
static void
load_first_progress(struct tc *c, int64_t id)
{
	struct proto_response resp;

	tc_must_recv(c, &resp);
	ck_assert_uint_eq(resp.id, (uint64_t)id);
	ck_assert_msg(resp.type == PROTO_MSG_PROGRESS, "load: %d %s",
	    resp.type, resp.type == PROTO_MSG_ERROR ? resp.u.error.message :
	    "");
	ck_assert_uint_lt(resp.u.progress.done, resp.u.progress.total);
	proto_response_free(&resp);
}

/* Progress events of load id, then its reply (0) or an error (-1). */
static int
load_finish(struct tc *c, int64_t id, struct proto_response *out)
{
	for (;;) {
		tc_must_recv(c, out);
		ck_assert_uint_eq(out->id, (uint64_t)id);
		if (out->type != PROTO_MSG_PROGRESS)
			return out->type == PROTO_MSG_REPLY ? 0 : -1;
		proto_response_free(out);
	}
}

/* ps's entry of a model: false when it is not resident. */
static bool
ps_get(struct tc *c, const char *name, struct proto_ps_entry *out)
{
	struct proto_response resp;
	bool found = false;
	int64_t id;
	uint32_t k;

	id = tc_simple(c, PROTO_MSG_PS, NULL);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_PS, &resp);
	for (k = 0; k < resp.u.ps.n_models; k++)
		if (strcmp(resp.u.ps.models[k].name, name) == 0) {
			*out = resp.u.ps.models[k];
			out->name = NULL;
			out->hugepages = NULL;
			out->placement = NULL;
			found = true;
		}
	proto_response_free(&resp);
	return found;
}

/* A greedy answer of model (8 tokens), into g. */
static void
answer(struct tc *c, const char *model, const char *prompt, struct gen *g)
{
	int64_t id;

	memset(g, 0, sizeof(*g));
	id = tc_generate(c, model, prompt, 8, true);
	ck_assert_int_eq(tc_collect(c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "no done: error %d %s", g->error, g->msg);
	ck_assert_uint_gt(g->n, 0);
}

static void
same_answer(const struct gen *a, const struct gen *b)
{
	uint32_t i;

	ck_assert_uint_eq(a->n, b->n);
	for (i = 0; i < a->n; i++)
		ck_assert_int_eq(a->ids[i], b->ids[i]);
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

	tc_open_at(&k->c, g_d.sock);
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
	k->rss = td_status_kb(g_d.pid, "VmRSS");
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
	rss = td_status_kb(g_d.pid, "VmRSS");
	if (pid_sanitized(g_d.pid))
		return;		/* ASan's quarantine: valgrind checks leaks */
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
	tc_open_at(&c, g_d.sock);
	ck_assert_int_eq(tc_write(&c, hdr, 4), 0);
	expect_error_close(&c, PROTO_E_TOO_LARGE);
	tc_close(&c);
	/* before hello too */
	ck_assert_int_eq(tc_open_raw_at(&c, g_d.sock), 0);
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
	tc_open_at(&c, g_d.sock);
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
	hwm0 = td_status_kb(g_d.pid, "VmHWM");
	tc_open_at(&c, g_d.sock);
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
	hwm1 = td_status_kb(g_d.pid, "VmHWM");
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
	tc_open_at(&c, g_d.sock);
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
	tc_open_at(&c, g_d.sock);
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
	tc_open_at(&a, g_d.sock);
	tc_open_at(&b, g_d.sock);
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
	if ((fd = tc_connect(g_d.sock)) < 0)
		return fd == -EACCES ? 77 : 4;
	close(fd);
	if (tc_open_raw_at(&c, g_d.sock) != 0)
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
		ck_assert_int_eq(tc_open_raw_at(&cs[i], g_d.sock), 0);
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
		tc_open_at(&cs[i], g_d.sock);
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
			tc_open_at(&c, g_d.sock);
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
	return load_finish(c, id, out);
}

/*
 * Load "slow" and, once its first progress event came, hold the loader
 * (see freeze_new), write conf_extra as the [model] sections when not
 * NULL, send SIGHUP and wait for the reload; then let the load go on.
 * Checks that the reload was handled while the model was loading (the
 * log has it before "loaded slow") and that the load ended with its
 * reply.
 */
static void
hup_during_load(struct tc *c, const char *conf_extra)
{
	pid_t before[MAX_TIDS];
	struct proto_response resp;
	struct freeze fz;
	long n_hup, n_loaded, at_hup, at_loaded;
	size_t nb;
	int64_t id;

	n_hup = td_log_find(&g_d, LOG_RELOADED, 0);
	n_loaded = td_log_find(&g_d, "registry: loaded slow:", 0);
	nb = daemon_tids(before, MAX_TIDS);
	id = load_send(c, "slow");
	load_first_progress(c, id);
	freeze_new(before, nb, &fz);
	if (conf_extra != NULL)
		conf_write(NULL, conf_extra);
	kill(g_d.pid, SIGHUP);
	ck_assert_msg(td_log_wait(&g_d, LOG_RELOADED, n_hup + 1, LOG_WAIT_MS),
	    "no reload");
	if (fz.n > 0)
		/* the loader is held: the load cannot have ended */
		ck_assert_int_eq(td_log_find(&g_d, "registry: loaded slow:", 0),
		    n_loaded);
	thaw(&fz);
	ck_assert_msg(load_finish(c, id, &resp) == 0, "load: %s",
	    resp.type == PROTO_MSG_ERROR ? resp.u.error.message : "?");
	proto_response_free(&resp);
	/* the loop handled the reload before the end of the load */
	at_hup = td_log_find(&g_d, LOG_RELOADED, n_hup + 1);
	at_loaded = td_log_find(&g_d, "registry: loaded slow:", n_loaded + 1);
	ck_assert(at_hup >= 0 && at_loaded >= 0);
	if (fz.tried || at_hup < at_loaded)
		ck_assert_msg(at_hup < at_loaded, "the reload came after the "
		    "load");
	else
		fprintf(stderr, "SKIP: the load ended before the reload "
		    "(nothing held it)\n");
}

/*
 * SIGHUP while a model loads: the load completes, the daemon keeps
 * serving, the model answers as before and memory is back after its
 * unload.
 */
START_TEST(test_sighup_load)
{
	struct gen *want = gen_new(), *g = gen_new();
	struct keep k;
	struct tc c;
	int i;

	write_slow();
	keep_open(&k);
	tc_open_at(&c, g_d.sock);
	answer(&c, "slow", "before the signal", want);
	unload_model(&c, "slow");
	for (i = 0; i < 2; i++) {
		hup_during_load(&c, NULL);
		answer(&c, "slow", "before the signal", g);
		same_answer(g, want);
		unload_model(&c, "slow");
		keep_check(&k);
	}
	ck_assert_int_eq(waitpid(g_d.pid, NULL, WNOHANG), 0);
	tc_close(&c);
	keep_check(&k);
	keep_close(&k);
	free(want);
	free(g);
}
END_TEST

/*
 * SIGHUP while a model loads, with a configuration that changes the
 * model's settings: the load in progress keeps the settings it started
 * with (n_ctx, so its KV cache), what applies at once applies to it too
 * (pin), and its next load uses the new n_ctx.
 */
START_TEST(test_sighup_load_config)
{
	struct gen *want = gen_new(), *g = gen_new();
	struct proto_ps_entry pe;
	struct proto_response resp;
	uint64_t kv0;
	struct keep k;
	struct tc c;
	int64_t id;

	write_slow();
	keep_open(&k);
	tc_open_at(&c, g_d.sock);
	answer(&c, "slow", "settings", want);
	ck_assert(ps_get(&c, "slow", &pe));
	ck_assert(!pe.pinned);
	kv0 = pe.kv;
	ck_assert_uint_gt(kv0, 0);
	unload_model(&c, "slow");

	hup_during_load(&c, "\n[model slow]\nn_ctx = 256\npin = yes\n");
	ck_assert(ps_get(&c, "slow", &pe));
	ck_assert(pe.pinned);
	ck_assert_uint_eq(pe.kv, kv0);
	answer(&c, "slow", "settings", g);
	same_answer(g, want);
	unload_model(&c, "slow");
	ck_assert(!ps_get(&c, "slow", &pe));
	/* the next load has the new context: half the KV cache */
	id = load_send(&c, "slow");
	ck_assert_int_eq(load_finish(&c, id, &resp), 0);
	proto_response_free(&resp);
	ck_assert(ps_get(&c, "slow", &pe));
	ck_assert(pe.pinned);
	ck_assert_uint_eq(pe.kv, kv0 / 2);
	answer(&c, "slow", "settings", g);
	same_answer(g, want);
	unload_model(&c, "slow");
	ck_assert_int_eq(waitpid(g_d.pid, NULL, WNOHANG), 0);
	tc_close(&c);
	keep_check(&k);
	keep_close(&k);
	free(want);
	free(g);
}
END_TEST

/*
 * SIGTERM while a model loads and a request waits for it, the drain
 * shorter than the load: both requests are told (busy, shutting down),
 * the connection ends, the load is cancelled and hearthd exits 0.
 */
START_TEST(test_sigterm_load_cancel)
{
	pid_t before[MAX_TIDS];
	struct proto_response resp;
	struct gen *g = gen_new();
	struct freeze fz;
	struct tc c, d;
	int64_t id, gid;
	bool cancelled = false;
	size_t nb;
	int r;

	write_slow();
	tc_open_at(&c, g_d.sock);
	tc_open_at(&d, g_d.sock);
	nb = daemon_tids(before, MAX_TIDS);
	id = load_send(&c, "slow");
	gid = tc_generate(&d, "slow", "waits for the load", 8, true);
	load_first_progress(&c, id);
	freeze_new(before, nb, &fz);
	kill(g_d.pid, SIGTERM);
	/* drain_timeout is 300 ms: the load does not end in it */
	ck_assert(td_log_wait(&g_d, "draining: 2 requests running", 1,
	    LOG_WAIT_MS));
	(void)load_finish(&c, id, &resp);	/* its type is checked below */
	if (resp.type == PROTO_MSG_REPLY && !fz.tried) {
		/* nothing held the load and it was quicker than the drain */
		fprintf(stderr, "SKIP: the load ended within drain_timeout\n");
		proto_response_free(&resp);
		thaw(&fz);
		ck_assert_int_eq(tc_collect(&d, (uint64_t)gid, g, 0), 0);
	} else {
		ck_assert_int_eq(resp.type, PROTO_MSG_ERROR);
		ck_assert_int_eq(resp.u.error.code, PROTO_E_BUSY);
		ck_assert_msg(strstr(resp.u.error.message, "shutting down") !=
		    NULL, "%s", resp.u.error.message);
		proto_response_free(&resp);
		ck_assert_int_eq(tc_collect(&d, (uint64_t)gid, g, 0), 0);
		ck_assert(!g->done);
		ck_assert_int_eq(g->error, PROTO_E_BUSY);
		ck_assert(td_log_find(&g_d, "drain_timeout: ending 2 requests",
		    0) == 1);
		thaw(&fz);
		cancelled = true;
	}
	/* then the connections end and hearthd exits 0 */
	r = tc_recv(&c, &resp, TIMEOUT_MS);
	ck_assert_int_eq(r, 0);
	r = tc_recv(&d, &resp, TIMEOUT_MS);
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(td_wait(&g_d, 10000), 0);
	/* the load never completed; when nothing held it (valgrind), it may
	 * have got past its last cancel check before the drain ended */
	if (cancelled && fz.tried)
		ck_assert_int_eq(td_log_find(&g_d, "registry: loaded slow:",
		    0), 0);
	tc_close(&c);
	tc_close(&d);
	free(g);
}
END_TEST

/*
 * SIGTERM while a model loads and a request waits for it, the drain
 * long enough: no new connections; the load ends, the request gets its
 * whole answer, then hearthd exits 0.
 */
START_TEST(test_sigterm_load_finish)
{
	struct gen *want = gen_new(), *g = gen_new();
	pid_t before[MAX_TIDS];
	struct proto_response resp;
	struct freeze fz;
	struct tc c, d;
	int64_t id, gid;
	size_t nb;

	write_slow();
	tc_open_at(&c, g_d.sock);
	tc_open_at(&d, g_d.sock);
	answer(&c, "slow", "drained", want);
	unload_model(&c, "slow");
	conf_write("drain_timeout = 60s\n", NULL);
	kill(g_d.pid, SIGHUP);
	ck_assert(td_log_wait(&g_d, LOG_RELOADED, 1, LOG_WAIT_MS));

	nb = daemon_tids(before, MAX_TIDS);
	id = load_send(&c, "slow");
	gid = tc_generate(&d, "slow", "drained", 8, true);
	load_first_progress(&c, id);
	freeze_new(before, nb, &fz);
	kill(g_d.pid, SIGTERM);
	ck_assert(td_log_wait(&g_d, "draining: 2 requests running", 1,
	    LOG_WAIT_MS));
	ck_assert_int_lt(tc_connect(g_d.sock), 0);
	thaw(&fz);
	ck_assert_int_eq(load_finish(&c, id, &resp), 0);
	proto_response_free(&resp);
	memset(g, 0, sizeof(*g));
	ck_assert_int_eq(tc_collect(&d, (uint64_t)gid, g, 0), 0);
	ck_assert_msg(g->done, "error %d %s", g->error, g->msg);
	same_answer(g, want);
	ck_assert_int_eq(tc_recv(&c, &resp, TIMEOUT_MS), 0);
	ck_assert_int_eq(tc_recv(&d, &resp, TIMEOUT_MS), 0);
	ck_assert_int_eq(td_wait(&g_d, 10000), 0);
	ck_assert(td_log_find(&g_d, "every request has ended", 0) == 1);
	tc_close(&c);
	tc_close(&d);
	free(want);
	free(g);
}
END_TEST

START_TEST(test_load_fails)
{
	struct gen *want = gen_new(), *g = gen_new();
	pid_t before[MAX_TIDS];
	struct proto_response resp;
	struct freeze fz;
	struct stat st;
	struct keep k;
	struct tc c;
	int64_t id;
	size_t nb;
	long vm;

	write_slow();
	keep_open(&k);
	tc_open_at(&c, g_d.sock);
	answer(&c, "big", "after the failures", want);
	unload_model(&c, "big");
	keep_check(&k);

	/* tensor data cut short: the header is fine, the data is not */
	ck_assert_int_eq(stat(td_model_path(&g_d, "cut"), &st), 0);
	ck_assert_int_eq(truncate(td_model_path(&g_d, "cut"),
	    st.st_size - 1000), 0);
	ck_assert_int_eq(load_model(&c, "cut", &resp), -1);
	ck_assert_int_eq(resp.u.error.code, PROTO_E_MODEL_ERROR);
	ck_assert_msg(strlen(resp.u.error.message) > 10, "%s",
	    resp.u.error.message);
	proto_response_free(&resp);
	/* a request waiting for it gets the error too */
	id = tc_generate(&c, "cut", "x", 4, true);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_MODEL_ERROR, NULL);
	keep_check(&k);

	/* a file that cannot be read (as root: test_unreadable_as_user) */
	ck_assert_int_eq(chmod(td_model_path(&g_d, "locked"), 0), 0);
	if (geteuid() == 0)
		fprintf(stderr, "SKIP: root reads a mode 000 file (see "
		    "test_unreadable_as_user)\n");
	else {
		ck_assert_int_eq(load_model(&c, "locked", &resp), -1);
		ck_assert_msg(strstr(resp.u.error.message, "ermission") !=
		    NULL, "%s", resp.u.error.message);
		proto_response_free(&resp);
	}
	chmod(td_model_path(&g_d, "locked"), 0644);
	keep_check(&k);

	/* over the memory budget: refused with the numbers */
	conf_write("memory_budget = 32M\n", NULL);
	kill(g_d.pid, SIGHUP);
	ck_assert(td_log_wait(&g_d, LOG_RELOADED, 1, LOG_WAIT_MS));
	ck_assert_int_eq(load_model(&c, "slow", &resp), -1);
	ck_assert_int_eq(resp.u.error.code, PROTO_E_TOO_LARGE);
	ck_assert_msg(strstr(resp.u.error.message, "budget") != NULL, "%s",
	    resp.u.error.message);
	proto_response_free(&resp);
	conf_write(NULL, NULL);
	kill(g_d.pid, SIGHUP);
	ck_assert(td_log_wait(&g_d, LOG_RELOADED, 2, LOG_WAIT_MS));
	keep_check(&k);

	/*
	 * Out of memory in the middle of a load: the address space capped
	 * (prlimit) below what the weights need; not under valgrind or a
	 * sanitizer (their address space is not the daemon's own).
	 */
	vm = td_status_kb(g_d.pid, "VmSize");
	if (!daemon_native() || vm <= 0 || pid_sanitized(g_d.pid))
		fprintf(stderr, "SKIP: no address space limit on this "
		    "hearthd (valgrind or a sanitizer build)\n");
	else {
		struct rlimit lim, old;

		lim.rlim_cur = (rlim_t)(vm + 40 * 1024) * 1024;
		lim.rlim_max = RLIM_INFINITY;
		ck_assert_int_eq(prlimit(g_d.pid, RLIMIT_AS, &lim, &old), 0);
		ck_assert_int_eq(load_model(&c, "slow", &resp), -1);
		ck_assert_int_eq(prlimit(g_d.pid, RLIMIT_AS, &old, NULL), 0);
		ck_assert_int_eq(resp.u.error.code, PROTO_E_MODEL_ERROR);
		ck_assert_msg(strstr(resp.u.error.message, "weights") !=
		    NULL, "%s", resp.u.error.message);
		proto_response_free(&resp);
		keep_check(&k);
	}

	/* the file cut short while the loader reads it */
	nb = daemon_tids(before, MAX_TIDS);
	id = load_send(&c, "slow");
	load_first_progress(&c, id);
	freeze_new(before, nb, &fz);
	ck_assert_int_eq(stat(td_model_path(&g_d, "slow"), &st), 0);
	ck_assert_int_eq(truncate(td_model_path(&g_d, "slow"),
	    st.st_size / 2), 0);
	thaw(&fz);
	if (load_finish(&c, id, &resp) == 0 && !fz.tried) {
		fprintf(stderr, "SKIP: the load ended before the file was "
		    "cut (nothing held it)\n");
		proto_response_free(&resp);
		unload_model(&c, "slow");
	} else {
		ck_assert_int_eq(resp.type, PROTO_MSG_ERROR);
		ck_assert_int_eq(resp.u.error.code, PROTO_E_MODEL_ERROR);
		ck_assert_msg(strstr(resp.u.error.message, "file ends") !=
		    NULL, "%s", resp.u.error.message);
		proto_response_free(&resp);
	}
	keep_check(&k);

	/* then a good model loads and answers as before */
	ck_assert_int_eq(load_model(&c, "big", &resp), 0);
	proto_response_free(&resp);
	answer(&c, "big", "after the failures", g);
	same_answer(g, want);
	unload_model(&c, "big");
	tc_close(&c);
	keep_check(&k);
	keep_close(&k);
	free(want);
	free(g);
}
END_TEST

/*
 * As root, a mode 000 file is readable: run a second hearthd as nobody
 * (a setuid child) with its own models directory, where one file is
 * mode 000. Its load fails with the system's message, the daemon keeps
 * serving the same answer and its memory is back.
 */
START_TEST(test_unreadable_as_user)
{
	char dir[4200];
	struct gen *want = gen_new(), *g = gen_new();
	struct proto_response resp;
	struct mkm_spec spec;
	struct eng_err err = { "" };
	struct td nobody;
	long rss0, rss;
	struct tc c;
	int64_t id;
	int st = 0;
	FILE *f;

	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: not root (test_load_fails checks an "
		    "unreadable file)\n");
		free(want);
		free(g);
		return;
	}
	snprintf(dir, sizeof(dir), "%s/nobody", g_d.dir);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	ck_assert_int_eq(td_init(&nobody, dir), 0);
	nobody.uid = OTHER_UID;
	ck_assert_int_eq(chown(dir, OTHER_UID, OTHER_UID), 0);
	ck_assert_int_eq(chown(nobody.models, OTHER_UID, OTHER_UID), 0);
	mkm_spec_default(&spec);
	spec.n_vocab = N_VOCAB;
	ck_assert_int_eq(mkm_write(&spec, td_model_path(&nobody, "tiny"),
	    &err), 0);
	ck_assert_int_eq(chown(td_model_path(&nobody, "tiny"), OTHER_UID,
	    OTHER_UID), 0);
	ck_assert_int_eq(mkm_write(&spec, td_model_path(&nobody, "locked"),
	    &err), 0);
	ck_assert_int_eq(chown(td_model_path(&nobody, "locked"), OTHER_UID,
	    OTHER_UID), 0);
	ck_assert_int_eq(chmod(td_model_path(&nobody, "locked"), 0), 0);
	f = fopen(nobody.conf, "w");
	fprintf(f, "[daemon]\nkeep_alive = 300\n\n[access root]\nuser = 0\n"
	    "admin = yes\n\n[access default]\nmodels = *\n");
	fclose(f);
	chmod(nobody.conf, 0644);

	if (td_start_st(&nobody, &st) != 0) {
		fprintf(stderr, "hearthd as uid %u:\n", OTHER_UID);
		td_print_log(&nobody);
		/* the build directory out of its reach: not hearthd's fault */
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 127,
		    "hearthd as uid %u did not start (status %d)", OTHER_UID,
		    st);
		fprintf(stderr, "SKIP: uid %u cannot run %s\n", OTHER_UID,
		    td_build_path("hearthd"));
		free(want);
		free(g);
		return;
	}
	{
		char p[64], line[256];
		unsigned ruid = 0, euid = 0;

		snprintf(p, sizeof(p), "/proc/%d/status", (int)nobody.pid);
		f = fopen(p, "r");
		ck_assert_ptr_nonnull(f);
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "Uid: %u %u", &ruid, &euid) == 2)
				break;
		fclose(f);
		ck_assert_uint_eq(euid, OTHER_UID);
	}
	tc_open_at(&c, nobody.sock);
	answer(&c, "tiny", "as nobody", want);
	tc_ping(&c);
	rss0 = td_status_kb(nobody.pid, "VmRSS");
	ck_assert_int_eq(load_model(&c, "locked", &resp), -1);
	ck_assert_int_eq(resp.u.error.code, PROTO_E_MODEL_ERROR);
	ck_assert_msg(strstr(resp.u.error.message, "ermission") != NULL,
	    "%s", resp.u.error.message);
	proto_response_free(&resp);
	id = tc_generate(&c, "locked", "x", 4, true);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_MODEL_ERROR, "ermission");
	answer(&c, "tiny", "as nobody", g);
	same_answer(g, want);
	usleep(100000);
	tc_ping(&c);
	rss = td_status_kb(nobody.pid, "VmRSS");
	ck_assert_msg(pid_sanitized(nobody.pid) ||
	    rss <= rss0 + rss0 / 10 + 4096,
	    "RSS %ld kB before, %ld kB after", rss0, rss);
	tc_close(&c);
	kill(nobody.pid, SIGTERM);
	ck_assert_int_eq(td_wait(&nobody, 10000), 0);
	free(want);
	free(g);
}
END_TEST

/* Clients that leave (or cancel) while their model is still loading. */
/* ---- headers off the loop ------------------------------------------- */

/* Two show replies say the same, entry by entry. */
static void
same_show(const struct proto_response *a, const struct proto_response *b)
{
	uint32_t k;

	ck_assert_str_eq(a->u.show.model, b->u.show.model);
	ck_assert_uint_eq(a->u.show.n_meta, b->u.show.n_meta);
	ck_assert_uint_gt(a->u.show.n_meta, 0);
	for (k = 0; k < a->u.show.n_meta; k++) {
		const struct proto_meta *x = &a->u.show.meta[k];
		const struct proto_meta *y = &b->u.show.meta[k];

		ck_assert_str_eq(x->key, y->key);
		ck_assert_int_eq(x->type, y->type);
		switch (x->type) {
		case PROTO_META_UINT:
			ck_assert_uint_eq(x->u, y->u);
			break;
		case PROTO_META_INT:
			ck_assert_int_eq(x->i, y->i);
			break;
		case PROTO_META_FLOAT:
			ck_assert(x->f == y->f);
			break;
		case PROTO_META_BOOL:
			ck_assert(x->b == y->b);
			break;
		case PROTO_META_STR:
			ck_assert_uint_eq(x->s_len, y->s_len);
			ck_assert(memcmp(x->s, y->s, x->s_len) == 0);
			break;
		case PROTO_META_ARRAY:
			ck_assert_str_eq(x->elem, y->elem);
			ck_assert_uint_eq(x->n, y->n);
			break;
		default:
			break;
		}
	}
}

/* A render request of model (chatml); its id. */
static int64_t
render_send(struct tc *c, const char *model)
{
	static const struct proto_message msg = { "user", "hi", 2 };
	struct proto_request r;

	proto_request_init(&r, PROTO_MSG_RENDER, 0);
	r.u.chat.model = model;
	r.u.chat.messages = &msg;
	r.u.chat.n_messages = 1;
	r.u.chat.template = "chatml";
	return tc_send(c, &r);
}

static void
write_hdr_model(const char *name, uint64_t seed)
{
	struct mkm_spec s;

	mkm_spec_default(&s);
	s.n_vocab = N_VOCAB;
	s.seed = seed;
	td_write_model(&g_d, &s, name);
}

/*
 * GGUF headers (list, show, render, a load's cost) are read on the
 * header threads ("hearth-meta"), never on the loop: with them held
 * still (ptrace), a show of a file not read yet waits while pings are
 * answered and tokens stream on other connections; a client that
 * leaves with a show, a render and a list waiting does no harm; once
 * the threads go on, the show is answered, the same as a show from the
 * cache after it.
 */
START_TEST(test_meta_off_loop)
{
	struct proto_response r1, r2, resp;
	struct gen *g = gen_new(), *want = gen_new();
	struct freeze fz;
	struct tc c, d, e;
	int64_t sid, id;

	write_hdr_model("hdr1", 11);
	write_hdr_model("hdr2", 12);
	tc_open_at(&c, g_d.sock);
	tc_open_at(&d, g_d.sock);
	tc_open_at(&e, g_d.sock);
	/* tiny's header is read to load it: the header threads exist */
	answer(&d, "tiny", "a header is read meanwhile", want);
	freeze_named("hearth-meta", &fz);
	if (fz.n == 0)
		fprintf(stderr, "note: no header thread held (valgrind or no "
		    "ptrace): the reads are only quick\n");
	sid = tc_simple(&c, PROTO_MSG_SHOW, "hdr1");
	if (fz.n > 0) {
		/* the loop answers while the header waits */
		tc_ping(&c);
		tc_ping(&d);
		answer(&d, "tiny", "a header is read meanwhile", g);
		same_answer(g, want);
		ck_assert_int_eq(tc_recv(&c, &resp, 300), -ETIMEDOUT);
	}
	/* e leaves with three requests waiting for headers */
	ck_assert_int_gt(tc_simple(&e, PROTO_MSG_SHOW, "hdr2"), 0);
	ck_assert_int_gt(render_send(&e, "hdr2"), 0);
	ck_assert_int_gt(tc_simple(&e, PROTO_MSG_LIST, NULL), 0);
	usleep(100000);
	tc_close(&e);
	tc_ping(&d);
	thaw(&fz);
	tc_expect_reply(&c, (uint64_t)sid, PROTO_MSG_SHOW, &r1);
	/* again, from the cache: the same reply */
	id = tc_simple(&c, PROTO_MSG_SHOW, "hdr1");
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_SHOW, &r2);
	same_show(&r1, &r2);
	proto_response_free(&r2);
	/* hdr2 was read for e (gone): answered as well */
	id = tc_simple(&d, PROTO_MSG_SHOW, "hdr2");
	tc_expect_reply(&d, (uint64_t)id, PROTO_MSG_SHOW, &r2);
	ck_assert_str_eq(r2.u.show.model, "hdr2");
	proto_response_free(&r2);
	id = render_send(&d, "hdr2");
	tc_expect_reply(&d, (uint64_t)id, PROTO_MSG_RENDER, &r2);
	ck_assert_str_eq(r2.u.render.template, "chatml");
	proto_response_free(&r2);
	proto_response_free(&r1);
	answer(&c, "tiny", "a header is read meanwhile", g);
	same_answer(g, want);
	ck_assert_int_eq(waitpid(g_d.pid, NULL, WNOHANG), 0);
	tc_close(&c);
	tc_close(&d);
	free(g);
	free(want);
}
END_TEST

/*
 * SIGTERM while a show waits for a held header thread: the drain ends
 * it (busy, shutting down) and hearthd exits 0 once the thread goes on.
 */
START_TEST(test_meta_sigterm)
{
	struct proto_response resp;
	struct gen *g = gen_new();
	struct freeze fz;
	struct tc c;
	int64_t sid;
	int r;

	write_hdr_model("hdr3", 13);
	tc_open_at(&c, g_d.sock);
	answer(&c, "tiny", "hello", g);
	freeze_named("hearth-meta", &fz);
	sid = tc_simple(&c, PROTO_MSG_SHOW, "hdr3");
	if (fz.n > 0)
		tc_ping(&c);
	kill(g_d.pid, SIGTERM);
	tc_must_recv(&c, &resp);
	ck_assert_uint_eq(resp.id, (uint64_t)sid);
	if (fz.n > 0) {
		ck_assert(td_log_find(&g_d, "draining: 1 request running",
		    0) == 1);
		ck_assert_int_eq(resp.type, PROTO_MSG_ERROR);
		ck_assert_int_eq(resp.u.error.code, PROTO_E_BUSY);
		ck_assert_msg(strstr(resp.u.error.message, "shutting down") !=
		    NULL, "%s", resp.u.error.message);
	} else
		ck_assert(resp.type == PROTO_MSG_REPLY ||
		    resp.type == PROTO_MSG_ERROR);
	proto_response_free(&resp);
	r = tc_recv(&c, &resp, TIMEOUT_MS);
	ck_assert_int_eq(r, 0);
	thaw(&fz);
	ck_assert_int_eq(td_wait(&g_d, 10000), 0);
	tc_close(&c);
	free(g);
}
END_TEST

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
	tc_open_at(&c, g_d.sock);
	for (i = 0; i < 4; i++) {
		/* a generate that waits for the load, then the client goes */
		tc_open_at(&d, g_d.sock);
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

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A prompt of megabytes (nearly max_text, 4 MiB: tokenizing it takes
 * seconds) for the model another client streams from: that client's
 * streams go on meanwhile (long texts are tokenized on the model's
 * tokenizer thread, not by the scheduler at admission), and the long
 * one is refused with its token count.
 */
START_TEST(test_long_prompt_stream)
{
	static const char *const words[] = { "alpha ", "beta ", "gamma ",
	    "delta ", "epsilon ", "zeta ", "eta ", "theta " };
	const size_t len = PROTO_MAX_TEXT_DEFAULT - 1024;
	struct proto_response resp;
	struct proto_request r;
	struct pollfd pfd;
	struct keep k;
	struct tc a, b;
	double t0, t, last = 0, gap = 0, tb = 0;
	uint32_t n_during = 0, seed = 1;
	size_t off = 0, w;
	int64_t bid, id;
	char *text;

	if (!daemon_native()) {
		fprintf(stderr, "SKIP: tokenizing 4 MiB under valgrind takes "
		    "too long\n");
		return;
	}
	ck_assert_ptr_nonnull(text = malloc(len));
	while (off < len) {
		seed = seed * 1103515245u + 12345u;
		w = strlen(words[(seed >> 16) % 8]);
		if (w > len - off)
			w = len - off;
		memcpy(text + off, words[(seed >> 16) % 8], w);
		off += w;
	}
	keep_open(&k);
	tc_open_at(&a, g_d.sock);
	tc_open_at(&b, g_d.sock);
	proto_request_init(&r, PROTO_MSG_GENERATE, 0);
	r.u.generate.model = "long";
	r.u.generate.input.text = text;
	r.u.generate.input.text_len = len;
	t0 = now_s();
	bid = tc_send(&b, &r);
	ck_assert_int_gt(bid, 0);
	/* a's streams, one after another, until b's answer is there */
	for (;;) {
		id = tc_generate(&a, "long", "steady", 16, true);
		for (;;) {
			tc_must_recv(&a, &resp);
			ck_assert_uint_eq(resp.id, (uint64_t)id);
			ck_assert_msg(resp.type != PROTO_MSG_ERROR, "%s",
			    resp.type == PROTO_MSG_ERROR ?
			    resp.u.error.message : "");
			if (resp.type == PROTO_MSG_TOKEN) {
				t = now_s();
				if (last > 0 && t - last > gap)
					gap = t - last;
				last = t;
				n_during++;
			}
			if (resp.type == PROTO_MSG_DONE) {
				proto_response_free(&resp);
				break;
			}
			proto_response_free(&resp);
		}
		pfd.fd = b.fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, 0) == 1) {
			tb = now_s() - t0;
			break;
		}
		ck_assert_msg(now_s() - t0 < 120 * timeout_scale(),
		    "no answer to the long prompt");
	}
	tc_expect_error(&b, (uint64_t)bid, PROTO_E_TOO_LARGE,
	    "exceeds the context");
	fprintf(stderr, "long prompt: answered in %.2f s; meanwhile %u "
	    "tokens streamed, at most %.3f s apart\n", tb, n_during, gap);
	ck_assert_uint_gt(n_during, 16);
	if (tb < 0.5)
		fprintf(stderr, "note: tokenizing was quick here (%.2f s): "
		    "this run cannot tell a stall\n", tb);
	else
		ck_assert_msg(gap < tb / 2, "the streams stopped for %.2f s "
		    "of the %.2f s the long prompt took", gap, tb);
	tc_close(&a);
	tc_close(&b);
	keep_check(&k);
	keep_close(&k);
	free(text);
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
	tcase_add_test(tc, test_long_prompt_stream);
	suite_add_tcase(s, tc);

	tc = tcase_create("faults");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_killed_reader);
	tcase_add_test(tc, test_sighup_load);
	tcase_add_test(tc, test_sighup_load_config);
	tcase_add_test(tc, test_sigterm_load_cancel);
	tcase_add_test(tc, test_sigterm_load_finish);
	tcase_add_test(tc, test_leave_during_load);
	tcase_add_test(tc, test_meta_off_loop);
	tcase_add_test(tc, test_meta_sigterm);
	tcase_add_test(tc, test_load_fails);
	tcase_add_test(tc, test_unreadable_as_user);
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
