/*
 * check_service.c - hearthd as a system service: systemd integration,
 * the configuration file, access control, reloads and draining. Each
 * test starts its own hearthd ($HEARTH_BUILDDIR/hearthd, else
 * ./hearthd) on sockets in a temporary directory, with small models made
 * by mkmodel_lib, and speaks to it with tclient.c.
 *
 * config:  hearthd -n accepts a full configuration and refuses bad
 *          ones, naming file and line.
 * systemd: socket activation end to end with systemd-socket-activate
 *          (hearth and admin sockets by name); READY=1 only once the
 *          preloaded model is resident, STATUS=, WATCHDOG=1, RELOADING=1
 *          and STOPPING=1 read from a NOTIFY_SOCKET the test binds.
 * access:  (root only: the client side runs in children that drop to
 *          other uids with setuid) models allowed and refused, admin
 *          operations only for admin rules or on the admin socket,
 *          per-user limits (connections, requests running and waiting,
 *          prompt tokens, max_tokens, tokens per minute), FIFOs, devices
 *          and links out of the models directory refused.
 * reload:  SIGHUP with a new rule applies to new requests while a
 *          stream runs on; a broken file keeps the old rules.
 * drain:   requests queued for one slot are served round robin across
 *          users; SIGTERM lets a running stream finish within
 *          drain_timeout, ends one that does not with an error event,
 *          exits 0.
 *
 * The daemon's log goes to daemon.log in the temporary directory; it is
 * printed when a test fails to start or stop the daemon (always with
 * CHECK_DAEMON_LOG set).
 */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mkmodel_lib.h"
#include "proto.h"
#include "tclient.h"
#include "testutil.h"

#define GUEST_UID	65534	/* [access guests] */
#define METER_UID	65533	/* [access metered]: tokens per minute */
#define QUEUE_UID	65532	/* [access queued]: max_queued 1 */
#define OTHER_UID	65531	/* no section: [access default] */
#define CLAMP_UID	65530	/* [access clamped]: max_tokens 7 */
#define TEST_GID	65534
#define LONG_TOKENS	3000	/* a stream that runs until cancelled */
#define PAUSED_TOKENS	1500	/* a stream that pauses when not read */
#define FAIR_TOKENS	2000	/* test_fairness: A's queued requests */
#define LOG_WAIT_MS	5000	/* for a line in the log */

static struct td g_d;			/* the daemon (tclient.c) */
static char	g_admin[4200];		/* admin socket */

static void
write_file(const char *path, const char *text)
{
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

/* The directory, its models and the paths. */
static void
setup(void)
{
	struct mkm_spec s;

	if (td_init(&g_d, tu_tmpdir()) != 0)
		abort();
	/* the children of the access tests must reach the socket */
	chmod(g_d.dir, 0711);
	snprintf(g_admin, sizeof(g_admin), "%s/run/admin.sock", g_d.dir);
	snprintf(g_d.conf, sizeof(g_d.conf), "%s/hearth.conf", g_d.dir);
	mkm_spec_default(&s);		/* llama, 64 dim, context 512 */
	td_write_model(&g_d, &s, "tiny");
	td_write_model(&g_d, &s, "secret");
	mkm_spec_default(&s);
	s.n_embd = 128;
	s.n_ff = 256;
	s.n_ctx = 4096;
	s.seed = 3;
	td_write_model(&g_d, &s, "long");
}

static void
teardown(void)
{
	td_finish(&g_d);
	tu_tmpdir_free();
}

/* A generate request with max_tokens, greedy, streaming. */
static int64_t
gen(struct tc *c, const char *model, int32_t max_tokens)
{
	return tc_generate(c, model, "once upon a time", max_tokens, true);
}

/* Cancel request id and read to its end. */
static void
cancel_to_end(struct tc *c, int64_t id, struct gen *g)
{
	struct proto_request r;
	struct proto_response resp;
	bool done = false, replied = false;

	proto_request_init(&r, PROTO_MSG_CANCEL, 0);
	r.u.cancel.target = (uint64_t)id;
	ck_assert_int_gt(tc_send(c, &r), 0);
	while (!done || !replied) {
		tc_must_recv(c, &resp);
		if (resp.type == PROTO_MSG_REPLY &&
		    resp.request == PROTO_MSG_CANCEL)
			replied = true;
		else if (resp.id == (uint64_t)id && (resp.type ==
		    PROTO_MSG_DONE || resp.type == PROTO_MSG_ERROR)) {
			done = true;
			if (g != NULL && resp.type == PROTO_MSG_DONE)
				g->reason = resp.u.done.reason;
		}
		proto_response_free(&resp);
	}
}

/* ---- children under other uids --------------------------------------- */

/* What a child reports: 0 and "" when all went well. */
typedef int (*child_fn)(void *arg, char *msg, size_t size);

#define CHILD_CHECK(cond, ...) do {					\
	if (!(cond)) {							\
		snprintf(msg, size, __VA_ARGS__);			\
		return -1;						\
	}								\
} while (0)

static bool
is_root(void)
{
	return geteuid() == 0;
}

/*
 * Run fn(arg) in a child that is uid (gid TEST_GID, no supplementary
 * groups); returns its exit code with its message in msg. 77: the
 * child cannot reach the socket (skip).
 */
static int
as_user(uid_t uid, child_fn fn, void *arg, char *msg, size_t size)
{
	char buf[1024];
	size_t len = 0;
	ssize_t n;
	pid_t pid;
	int p[2], st, fd;

	ck_assert_int_eq(pipe(p), 0);
	if ((pid = fork()) < 0)
		abort();
	if (pid == 0) {
		close(p[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		buf[0] = '\0';
		if (setgroups(0, NULL) != 0 || setgid(TEST_GID) != 0 ||
		    setuid(uid) != 0) {
			snprintf(buf, sizeof(buf), "cannot become uid %u: %s",
			    (unsigned)uid, strerror(errno));
			(void)!write(p[1], buf, strlen(buf));
			_exit(2);
		}
		if ((fd = tc_connect(g_d.sock)) < 0) {
			snprintf(buf, sizeof(buf), "uid %u cannot connect to "
			    "%.600s: %s", (unsigned)uid, g_d.sock,
			    strerror(-fd));
			(void)!write(p[1], buf, strlen(buf));
			_exit(fd == -EACCES ? 77 : 2);
		}
		close(fd);
		st = fn(arg, buf, sizeof(buf));
		(void)!write(p[1], buf, strlen(buf));
		_exit(st == 0 ? 0 : 1);
	}
	close(p[1]);
	while (len + 1 < sizeof(buf) &&
	    (n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(p[0]);
	waitpid(pid, &st, 0);
	snprintf(msg, size, "%s", buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* as_user that must succeed; false: skipped (say so). */
static bool
must_as_user(uid_t uid, child_fn fn, void *arg)
{
	char msg[1024];
	int r = as_user(uid, fn, arg, msg, sizeof(msg));

	if (r == 77) {
		fprintf(stderr, "SKIP: %s\n", msg);
		return false;
	}
	ck_assert_msg(r == 0, "uid %u: exit %d: %s", (unsigned)uid, r, msg);
	return true;
}

/* In a child: connect and say hello; 0 or -1 with msg. */
static int
child_open(struct tc *c, char *msg, size_t size)
{
	struct proto_request r;
	struct proto_response resp;
	int rc;

	CHILD_CHECK(tc_open_raw_at(c, g_d.sock) == 0, "connect failed");
	proto_request_init(&r, PROTO_MSG_HELLO, 0);
	r.u.hello.version = PROTO_VERSION;
	r.u.hello.client = "check_service";
	CHILD_CHECK(tc_send(c, &r) > 0, "cannot send hello");
	rc = tc_recv(c, &resp, TIMEOUT_MS);
	CHILD_CHECK(rc == 1 && resp.type == PROTO_MSG_REPLY, "no hello reply "
	    "(%d, %s%s%s)", rc, rc == 1 ? proto_msg_name(resp.type) : "",
	    rc == 1 && resp.type == PROTO_MSG_ERROR ? ": " : "",
	    rc == 1 && resp.type == PROTO_MSG_ERROR ? resp.u.error.message :
	    "");
	proto_response_free(&resp);
	return 0;
}

/* In a child: the next response must be an error code with needle. */
static int
child_expect_error(struct tc *c, int64_t id, enum proto_code code,
    const char *needle, char *msg, size_t size)
{
	struct proto_response resp;
	int rc = tc_recv(c, &resp, TIMEOUT_MS);

	CHILD_CHECK(rc == 1, "request %lld: no response (%d)", (long long)id,
	    rc);
	if (resp.type != PROTO_MSG_ERROR || resp.id != (uint64_t)id ||
	    resp.u.error.code != code || (needle != NULL &&
	    strstr(resp.u.error.message, needle) == NULL)) {
		snprintf(msg, size, "request %lld: want error %s with '%s', "
		    "got %s id %llu%s%s%s", (long long)id,
		    proto_code_name(code), needle ? needle : "",
		    proto_msg_name(resp.type), (unsigned long long)resp.id,
		    resp.type == PROTO_MSG_ERROR ? " (" : "",
		    resp.type == PROTO_MSG_ERROR ? resp.u.error.message : "",
		    resp.type == PROTO_MSG_ERROR ? ")" : "");
		proto_response_free(&resp);
		return -1;
	}
	proto_response_free(&resp);
	return 0;
}

/* In a child: generate and read to done; 0 with g filled. */
static int
child_generate(struct tc *c, const char *model, int32_t max_tokens,
    struct gen *g, char *msg, size_t size)
{
	int64_t id = gen(c, model, max_tokens);

	memset(g, 0, sizeof(*g));
	CHILD_CHECK(id > 0, "cannot send generate");
	CHILD_CHECK(tc_collect(c, (uint64_t)id, g, 0) == 0, "generate %s: "
	    "protocol surprise %d", model, g->fail);
	CHILD_CHECK(g->done, "generate %s: error %s: %s", model,
	    proto_code_name(g->error), g->msg);
	return 0;
}

/* ---- config ------------------------------------------------------------ */

/* hearthd -n -c path: its exit code, its output in out. */
static int
check_config(const char *text, char *out, size_t size)
{
	const char *args[] = { "-n", "-c", g_d.conf, NULL };

	write_file(g_d.conf, text);
	return td_run(g_d.log, args, out, size);
}

START_TEST(test_config_good)
{
	const char *args[] = { "-n", "-c", g_d.conf, NULL };
	char out[4096];

	ck_assert_int_eq(check_config(
	    "# every key once\n"
	    "[daemon]\n"
	    "socket = /run/hearth/hearth.sock\n"
	    "admin_socket = /run/hearth/admin.sock\n"
	    "socket_mode = 0660\n"
	    "admin_socket_mode = 0600\n"
	    "models = /var/lib/hearth/models\n"
	    "threads = 4\n"
	    "memory_budget = 80%\n"
	    "pages = thp\n"
	    "numa = interleave\n"
	    "keep_alive = 5m\n"
	    "max_frame = 16M\n"
	    "n_parallel = 8\n"
	    "n_ctx = 2048\n"
	    "n_batch = 256\n"
	    "kv_type = q8_0\n"
	    "prefill_chunk = 64\n"
	    "max_queue = 32\n"
	    "template = chatml\n"
	    "max_connections = 100\n"
	    "max_requests = 16\n"
	    "max_models = 2\n"
	    "output_buffer = 2M\n"
	    "pause_timeout = 10s\n"
	    "drain_timeout = 1m\n"
	    "sndbuf = 0\n"
	    "external_links = no\n"
	    "debug = no\n"
	    "\n[model tiny]\n"
	    "template = llama3\n"
	    "n_ctx = 256\n"
	    "kv_type = f16\n"
	    "keep_alive = -1\n"
	    "pin = yes\n"
	    "numa = local\n"
	    "preload = yes\n"
	    "\n[access guests]\n"
	    "user = nobody, 65533\n"
	    "group = root\n"
	    "models = tiny long\n"
	    "  secret\n"
	    "admin = no\n"
	    "max_connections = 4\n"
	    "max_requests = 2\n"
	    "max_queued = 0\n"
	    "max_prompt_tokens = 1000\n"
	    "max_tokens = 512\n"
	    "tokens_per_minute = unlimited\n"
	    "\n[access default]\n"
	    "models = *\n", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "1 [model] and 2 [access] sections, OK") !=
	    NULL, "%s", out);
	/* no file at all (a personal daemon without one) is fine too */
	ck_assert_int_eq(check_config("", out, sizeof(out)), 0);
	/* the file make install puts in place for the system daemon */
	{
		const char *src = getenv("srcdir");
		char path[4096];
		uint8_t *text;
		size_t len;

		snprintf(path, sizeof(path), "%s/conf/hearth.conf",
		    src != NULL && *src ? src : ".");
		text = tu_read_file(path, &len);
		ck_assert_msg(text != NULL, "%s missing", path);
		ck_assert_int_eq(tu_write_file(g_d.conf, text, len), 0);
		free(text);
		ck_assert_int_eq(td_run(g_d.log, args, NULL, 0), 0);
	}
}
END_TEST

START_TEST(test_config_errors)
{
	static const struct {
		const char	*text;
		int		 line;
		const char	*needle;
	} bad[] = {
		{ "keep_alive = 5\n", 1, "outside a section" },
		{ "[daemon]\nnosuch = 1\n", 2, "unknown key 'nosuch'" },
		{ "[hearthd]\nkeep_alive = 1\n", 1, "unknown section" },
		{ "[daemon]\n\n[model]\n", 3, "needs a name" },
		{ "[daemon x]\n", 1, "takes no name" },
		{ "[daemon]\nkeep_alive = soon\n", 2, "keep_alive" },
		{ "[daemon]\nn_parallel = 0\n", 2, "n_parallel" },
		{ "[daemon]\nmax_frame = 12\n", 2, "max_frame" },
		{ "[daemon]\ntemplate = nosuch\n", 2, "template" },
		{ "[daemon]\npause_timeout = 2h\n", 2, "pause_timeout" },
		{ "[daemon]\ndrain_timeout = x\n", 2, "drain_timeout" },
		{ "[daemon]\nmemory_budget = 120%\n", 2, "memory_budget" },
		{ "[daemon]\npages = huge\n", 2, "pages" },
		{ "[daemon]\nnuma = far\n", 2, "numa" },
		{ "[daemon]\nsocket = relative.sock\n", 2, "absolute" },
		{ "[daemon]\nsocket_mode = 999\n", 2, "socket_mode" },
		{ "[model tiny]\nkv_type = q4_0\n", 2,
		    "kv_type: 'q4_0' is not f16 or q8_0" },
		{ "[daemon]\nn_ctx = 512\nkv_type = f32\n", 3,
		    "kv_type: 'f32' is not f16 or q8_0" },
		{ "[model tiny]\nkv_type =\n", 2,
		    "kv_type: '' is not f16 or q8_0" },
		{ "[model tiny]\npin = maybe\n", 2, "pin" },
		{ "[model a/b]\n", 1, "not a model name" },
		{ "[model tiny]\n[model tiny]\n", 2, "again (first at line 1)" },
		{ "[access a]\nuser = no-such-user-here\n", 2,
		    "no user 'no-such-user-here'" },
		{ "[access a]\ngroup = no-such-group-here\n", 2,
		    "no group 'no-such-group-here'" },
		{ "[access a]\nmodels = ../x\n", 2, "models" },
		{ "[access a]\nmax_requests = lots\n", 2, "max_requests" },
		{ "[access a]\nmax_tokens = 0\n", 2, "max_tokens" },
		{ "[access a]\nfly = yes\n", 2, "unknown key 'fly'" },
		{ "[access default]\nuser = 0\n", 2, "takes no user" },
		{ "[access a b]\n", 1, "names are" },
		{ "[access a]\n[access a]\n", 2, "again" },
		{ "[daemon]\nthis line has no equals sign\n", 2, "syntax" },
	};
	const char *args[] = { "-n", "-c", g_d.conf, NULL };
	char out[4096], want[64], line[400];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(check_config(bad[i].text, out, sizeof(out)) == 1,
		    "accepted: %s", bad[i].text);
		snprintf(want, sizeof(want), "hearth.conf:%d: ", bad[i].line);
		ck_assert_msg(strstr(out, want) != NULL, "'%s' not in '%s'",
		    want, out);
		ck_assert_msg(strstr(out, bad[i].needle) != NULL,
		    "'%s' not in '%s'", bad[i].needle, out);
	}
	/* a line longer than libinih's buffer is refused, not split */
	memset(line, 'x', sizeof(line));
	memcpy(line, "[daemon]\ntemplate = ", 20);
	line[sizeof(line) - 2] = '\n';
	line[sizeof(line) - 1] = '\0';
	ck_assert_int_eq(check_config(line, out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "hearth.conf:2: line longer than") != NULL,
	    "%s", out);
	/* a named file that does not exist */
	unlink(g_d.conf);
	ck_assert_int_eq(td_run(g_d.log, args, NULL, 0), 1);
}
END_TEST

/* ---- systemd ----------------------------------------------------------- */

static const char *
find_tool(const char *name)
{
	static const char *const dirs[] = { "/usr/bin", "/bin", "/usr/sbin",
	    "/usr/local/bin" };
	static char path[256];
	size_t i;

	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dirs[i], name);
		if (access(path, X_OK) == 0)
			return path;
	}
	return NULL;
}

START_TEST(test_socket_activation)
{
	const char *tool = find_tool("systemd-socket-activate");
	char lsock[4300], ladmin[4300], comm[64], path[64];
	struct proto_response resp;
	struct gen *g = gen_new();
	struct stat st;
	struct tc c;
	int64_t id;
	FILE *f;
	int i;

	if (tool == NULL) {
		fprintf(stderr, "SKIP: systemd-socket-activate not found\n");
		free(g);
		return;
	}
	/* a configuration that keeps loading for the admin socket */
	write_file(g_d.conf, "[daemon]\ndrain_timeout = 1s\n"
	    "[access users]\nadmin = no\n");
	mkdir(tu_tmpfile("run"), 0755);
	snprintf(lsock, sizeof(lsock), "%s", g_d.sock);
	snprintf(ladmin, sizeof(ladmin), "%s", g_admin);
	{
		char *argv[] = { (char *)tool, "-l", lsock, "-l", ladmin,
		    "--fdname=hearth:admin", (char *)td_build_path("hearthd"),
		    "-d", "-m", g_d.models, "-c", g_d.conf, "-t", "1", NULL };

		g_d.pid = td_spawn(g_d.log, geteuid(), tool, argv, NULL);
	}
	/* systemd-socket-activate listens; hearthd is not running yet */
	for (i = 0; i < 500 && stat(g_d.sock, &st) != 0; i++)
		usleep(10000);
	ck_assert_int_eq(stat(g_d.sock, &st), 0);
	ck_assert(!td_log_has(&g_d, "hearthd: models in"));
	/* the first connection starts hearthd, which gets the socket */
	tc_open_at(&c, g_d.sock);
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)g_d.pid);
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	ck_assert_ptr_nonnull(fgets(comm, sizeof(comm), f));
	fclose(f);
	ck_assert_msg(strncmp(comm, "hearthd", 7) == 0, "%s", comm);
	ck_assert(td_log_has(&g_d, "listening on the socket from systemd"));
	ck_assert(td_log_has(&g_d,
	    "listening on the admin socket from systemd"));
	id = gen(&c, "tiny", 5);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "%s", g->msg);
	ck_assert_uint_eq(g->generated_tokens, 5);
	/* load is for the admin socket here */
	id = tc_simple(&c, PROTO_MSG_LOAD, "long");
	tc_expect_error(&c, (uint64_t)id, PROTO_E_DENIED, "admin");
	tc_close(&c);
	tc_open_at(&c, g_admin);
	id = tc_simple(&c, PROTO_MSG_LOAD, "long");
	for (;;) {
		tc_must_recv(&c, &resp);
		if (resp.type != PROTO_MSG_PROGRESS)
			break;
		proto_response_free(&resp);
	}
	ck_assert_msg(resp.type == PROTO_MSG_REPLY, "%s: %s",
	    proto_msg_name(resp.type), resp.type == PROTO_MSG_ERROR ?
	    resp.u.error.message : "");
	ck_assert_uint_eq(resp.id, (uint64_t)id);
	proto_response_free(&resp);
	tc_close(&c);
	/* it stops cleanly and leaves systemd's sockets alone */
	ck_assert_int_eq(td_stop(&g_d), 0);
	ck_assert_int_eq(stat(g_d.sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	free(g);
}
END_TEST

/* A notification socket the daemon reports to. */
struct notify {
	int	 fd;
	char	 path[4300];
	char	 seen[16384];	/* every message so far, '|' between */
	size_t	 len;
};

static void
notify_open(struct notify *n)
{
	struct sockaddr_un sun;

	memset(n, 0, sizeof(*n));
	snprintf(n->path, sizeof(n->path), "%s/notify.sock", g_d.dir);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert_uint_lt(strlen(n->path), sizeof(sun.sun_path));
	memcpy(sun.sun_path, n->path, strlen(n->path) + 1);
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(n->fd, 0);
	ck_assert_int_eq(bind(n->fd, (struct sockaddr *)&sun, sizeof(sun)),
	    0);
}

/*
 * Read messages until one contains needle (true), for up to ms. Every
 * message is appended to n->seen.
 */
static bool
notify_wait(struct notify *n, const char *needle, int ms)
{
	struct pollfd pfd = { n->fd, POLLIN, 0 };
	char buf[4096];
	ssize_t r;
	int i;

	for (i = 0; i < ms / 10 * timeout_scale(); i++) {
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		if ((r = recv(n->fd, buf, sizeof(buf) - 1, 0)) <= 0)
			continue;
		buf[r] = '\0';
		if (n->len + (size_t)r + 2 < sizeof(n->seen)) {
			memcpy(n->seen + n->len, buf, (size_t)r);
			n->len += (size_t)r;
			n->seen[n->len++] = '|';
			n->seen[n->len] = '\0';
		}
		if (strstr(buf, needle) != NULL)
			return true;
	}
	return false;
}

/* Whether ps lists model. */
static bool
ps_has(struct tc *c, const char *model)
{
	struct proto_response resp;
	bool found = false;
	uint32_t k;
	int64_t id = tc_simple(c, PROTO_MSG_PS, NULL);

	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_PS, &resp);
	for (k = 0; k < resp.u.ps.n_models; k++)
		if (strcmp(resp.u.ps.models[k].name, model) == 0)
			found = true;
	proto_response_free(&resp);
	return found;
}

/* Connections with work (running or queued) on a resident model. */
static uint32_t
ps_clients(struct tc *c, const char *model)
{
	struct proto_response resp;
	uint32_t k, n = 0;
	int64_t id = tc_simple(c, PROTO_MSG_PS, NULL);

	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_PS, &resp);
	for (k = 0; k < resp.u.ps.n_models; k++)
		if (strcmp(resp.u.ps.models[k].name, model) == 0)
			n = resp.u.ps.models[k].clients;
	proto_response_free(&resp);
	return n;
}

START_TEST(test_notify)
{
	char env_notify[4400], env_wd[] = "WATCHDOG_USEC=200000";
	char *env[] = { env_notify, env_wd, NULL };
	struct notify n;
	struct gen *g = gen_new();
	struct tc c;
	int64_t id;
	char *p;

	notify_open(&n);
	snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", n.path);
	write_file(g_d.conf, "[daemon]\ndrain_timeout = 5s\n"
	    "output_buffer = 4K\nsndbuf = 4K\n"
	    "[model long]\npreload = yes\npin = yes\n");
	g_d.env = env;
	td_start(&g_d);
	/* READY=1 comes once the preloaded model is resident */
	ck_assert_msg(notify_wait(&n, "READY=1", 5000), "%s", n.seen);
	p = strstr(n.seen, "READY=1");
	ck_assert_msg(strstr(p, "STATUS=1 model resident") != NULL, "%s",
	    n.seen);
	ck_assert(td_log_has(&g_d, "registry: loaded long"));
	tc_open_at(&c, g_d.sock);
	ck_assert(ps_has(&c, "long"));
	/* the watchdog is fed at half the interval */
	n.len = 0;
	n.seen[0] = '\0';
	ck_assert_msg(notify_wait(&n, "WATCHDOG=1", 1000), "%s", n.seen);
	ck_assert_msg(notify_wait(&n, "WATCHDOG=1", 1000), "%s", n.seen);
	/* a running stream shows in STATUS= (the client does not read:
	 * the stream pauses and stays running) */
	id = gen(&c, "long", LONG_TOKENS);
	ck_assert_msg(notify_wait(&n, "1 request running", 3000), "%s",
	    n.seen);
	cancel_to_end(&c, id, g);
	ck_assert_msg(notify_wait(&n, "0 requests running", 3000), "%s",
	    n.seen);
	/* SIGHUP: RELOADING=1, then READY=1 again */
	n.len = 0;
	kill(g_d.pid, SIGHUP);
	ck_assert_msg(notify_wait(&n, "RELOADING=1", 3000), "%s", n.seen);
	ck_assert_msg(strstr(n.seen, "MONOTONIC_USEC=") != NULL, "%s",
	    n.seen);
	ck_assert_msg(notify_wait(&n, "READY=1", 3000), "%s", n.seen);
	tc_close(&c);
	/* SIGTERM: STOPPING=1, exit 0 */
	kill(g_d.pid, SIGTERM);
	ck_assert_msg(notify_wait(&n, "STOPPING=1", 3000), "%s", n.seen);
	ck_assert_int_eq(td_wait(&g_d, 5000), 0);
	close(n.fd);
	free(g);
}
END_TEST

/* ---- access -------------------------------------------------------------- */

static const char access_conf[] =
    "[daemon]\n"
    "drain_timeout = 300ms\n"
    "output_buffer = 4K\n"
    "sndbuf = 4K\n"
    "external_links = yes\n"
    "\n[access guests]\n"
    "user = 65534\n"
    "models = tiny long\n"
    "max_connections = 3\n"
    "max_requests = 1\n"
    "max_queued = 0\n"
    "max_prompt_tokens = 16\n"
    "\n[access metered]\n"
    "user = 65533\n"
    "models = tiny\n"
    "tokens_per_minute = 30\n"
    "\n[access queued]\n"
    "user = 65532\n"
    "models = long\n"
    "max_requests = 1\n"
    "max_queued = 1\n"
    "\n[access clamped]\n"
    "user = 65530\n"
    "max_tokens = 7\n"
    "\n[access default]\n"
    "admin = yes\n";

/* base with text replaced by with, into out. */
static void
replace_text(const char *base, const char *text, const char *with,
    char *out, size_t size)
{
	const char *p = strstr(base, text);

	ck_assert_ptr_nonnull(p);
	snprintf(out, size, "%.*s%s%s", (int)(p - base), base, with,
	    p + strlen(text));
}

static void
access_setup(void)
{
	setup();
	write_file(g_d.conf, access_conf);
	if (is_root())
		td_start(&g_d);
}

/* The guest: its models, admin refused, a list of what it may use. */
static int
child_guest_models(void *arg, char *msg, size_t size)
{
	struct proto_response resp;
	struct gen g;
	struct tc c;
	int64_t id;
	uint32_t k;
	bool tiny = false, secret = false;

	(void)arg;
	if (child_open(&c, msg, size) < 0)
		return -1;
	/* allowed */
	if (child_generate(&c, "tiny", 3, &g, msg, size) < 0)
		return -1;
	CHILD_CHECK(g.generated_tokens == 3, "generated %u",
	    g.generated_tokens);
	/* not allowed: named in the error */
	id = gen(&c, "secret", 3);
	if (child_expect_error(&c, id, PROTO_E_DENIED, "denied by [access "
	    "guests]: model 'secret' not allowed", msg, size) < 0)
		return -1;
	id = tc_simple(&c, PROTO_MSG_SHOW, "secret");
	if (child_expect_error(&c, id, PROTO_E_DENIED, "not allowed", msg,
	    size) < 0)
		return -1;
	/* admin operations */
	id = tc_simple(&c, PROTO_MSG_LOAD, "tiny");
	if (child_expect_error(&c, id, PROTO_E_DENIED, "load needs admin",
	    msg, size) < 0)
		return -1;
	id = tc_simple(&c, PROTO_MSG_UNLOAD, "tiny");
	if (child_expect_error(&c, id, PROTO_E_DENIED, "unload needs admin",
	    msg, size) < 0)
		return -1;
	/* the list shows what the rule allows */
	id = tc_simple(&c, PROTO_MSG_LIST, NULL);
	CHILD_CHECK(tc_recv(&c, &resp, TIMEOUT_MS) == 1 &&
	    resp.type == PROTO_MSG_REPLY, "no list reply");
	for (k = 0; k < resp.u.list.n_models; k++) {
		if (strcmp(resp.u.list.models[k].name, "tiny") == 0)
			tiny = true;
		if (strcmp(resp.u.list.models[k].name, "secret") == 0)
			secret = true;
	}
	proto_response_free(&resp);
	CHILD_CHECK(tiny && !secret, "list: tiny %d secret %d", tiny, secret);
	/* keeping a model for ever is for admins: clamped to keep_alive */
	{
		struct proto_request r;

		proto_request_init(&r, PROTO_MSG_GENERATE, 0);
		r.u.generate.model = "tiny";
		r.u.generate.input.text = "x";
		r.u.generate.input.text_len = 1;
		r.u.generate.opts.max_tokens = 1;
		r.u.generate.opts.has_keep_alive = true;
		r.u.generate.opts.keep_alive = -1;
		id = tc_send(&c, &r);
		memset(&g, 0, sizeof(g));
		CHILD_CHECK(tc_collect(&c, (uint64_t)id, &g, 0) == 0 &&
		    g.done, "keep_alive -1: %s", g.msg);
	}
	id = tc_simple(&c, PROTO_MSG_PS, NULL);
	CHILD_CHECK(tc_recv(&c, &resp, TIMEOUT_MS) == 1 &&
	    resp.type == PROTO_MSG_REPLY, "no ps reply");
	for (k = 0; k < resp.u.ps.n_models; k++)
		if (strcmp(resp.u.ps.models[k].name, "tiny") == 0)
			CHILD_CHECK(resp.u.ps.models[k].keep_alive > 0 &&
			    resp.u.ps.models[k].keep_alive <= 300,
			    "keep_alive %lld",
			    (long long)resp.u.ps.models[k].keep_alive);
	proto_response_free(&resp);
	tc_close(&c);
	return 0;
}

/* max_tokens is clamped to the rule's 7, unset or over. */
static int
child_clamped(void *arg, char *msg, size_t size)
{
	struct gen g;
	struct tc c;

	(void)arg;
	if (child_open(&c, msg, size) < 0)
		return -1;
	if (child_generate(&c, "tiny", 100, &g, msg, size) < 0)
		return -1;
	CHILD_CHECK(g.generated_tokens == 7 &&
	    g.reason == PROTO_REASON_MAX_TOKENS, "max_tokens 100: %u tokens",
	    g.generated_tokens);
	if (child_generate(&c, "tiny", -1, &g, msg, size) < 0)
		return -1;
	CHILD_CHECK(g.generated_tokens == 7, "max_tokens unset: %u tokens",
	    g.generated_tokens);
	if (child_generate(&c, "tiny", 3, &g, msg, size) < 0)
		return -1;
	CHILD_CHECK(g.generated_tokens == 3, "max_tokens 3: %u tokens",
	    g.generated_tokens);
	tc_close(&c);
	return 0;
}

/* Nobody matches: [access default], which has admin = yes but no user
 * = line, applies. */
static int
child_other(void *arg, char *msg, size_t size)
{
	struct gen g;
	struct tc c;

	(void)arg;
	if (child_open(&c, msg, size) < 0)
		return -1;
	if (child_generate(&c, "secret", 2, &g, msg, size) < 0)
		return -1;
	tc_close(&c);
	return 0;
}

START_TEST(test_access_models)
{
	struct gen *g = gen_new();
	struct tc c;
	int64_t id;

	if (!is_root()) {
		fprintf(stderr, "SKIP: access tests need root (setuid)\n");
		free(g);
		return;
	}
	if (!must_as_user(GUEST_UID, child_guest_models, NULL))
		goto out;
	ck_assert(td_log_has(&g_d, "access: uid 65534"));
	ck_assert(td_log_has(&g_d, "denied by [access guests]: model 'secret' "
	    "not allowed"));
	ck_assert(must_as_user(OTHER_UID, child_other, NULL));
	ck_assert(must_as_user(CLAMP_UID, child_clamped, NULL));
	/* root falls to [access default] too */
	tc_open_at(&c, g_d.sock);
	id = gen(&c, "secret", 2);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "%s", g->msg);
	tc_close(&c);
out:
	free(g);
}
END_TEST

/* The guest's limits: one request at a time over all its connections,
 * three connections, prompts of ten tokens. */
static int
child_guest_limits(void *arg, char *msg, size_t size)
{
	struct proto_request r;
	struct tc a, b, x, y;
	struct gen g;
	int32_t ids[20];
	int64_t id, id2;
	int i, fd;

	(void)arg;
	if (child_open(&a, msg, size) < 0 || child_open(&b, msg, size) < 0)
		return -1;
	/* a stream that runs (the client reads only its first token) */
	memset(&g, 0, sizeof(g));
	id = tc_generate(&a, "long", "x", 100000, true);
	CHILD_CHECK(tc_collect(&a, (uint64_t)id, &g, 1) == 1, "no stream");
	/* the second request, on another connection: busy */
	id2 = gen(&b, "tiny", 2);
	if (child_expect_error(&b, id2, PROTO_E_BUSY, "busy by [access "
	    "guests]: uid 65534 has 1 requests running and 0 waiting "
	    "(max_requests 1, max_queued 0)", msg, size) < 0)
		return -1;
	/* a third connection is fine, a fourth is refused */
	if (child_open(&x, msg, size) < 0)
		return -1;
	CHILD_CHECK((fd = tc_connect(g_d.sock)) >= 0, "connect");
	y.fd = fd;
	y.rd = NULL;
	CHILD_CHECK(proto_reader_new(PROTO_MAX_FRAME_DEFAULT, &y.rd) == 0,
	    "reader");
	proto_limits_default(&y.l);
	if (child_expect_error(&y, 0, PROTO_E_BUSY, "busy by [access "
	    "guests]: uid 65534 has 3 connections open (max_connections 3)",
	    msg, size) < 0)
		return -1;
	tc_close(&y);
	tc_close(&x);
	/* the stream ends (cancelled); then the next request runs */
	close(a.fd);
	a.fd = -1;
	tc_close(&a);
	for (i = 0; i < 200; i++) {
		if (child_generate(&b, "tiny", 2, &g, msg, size) == 0)
			break;
		usleep(10000);	/* the daemon sees the close soon */
	}
	if (i == 200) {
		char why[512];

		snprintf(why, sizeof(why), "%s", msg);
		snprintf(msg, size, "after the stream ended: %s", why);
		return -1;
	}
	/* a prompt of 20 ids is over max_prompt_tokens (16) */
	for (i = 0; i < 20; i++)
		ids[i] = 300 + i;
	proto_request_init(&r, PROTO_MSG_GENERATE, 0);
	r.u.generate.model = "tiny";
	r.u.generate.input.ids = ids;
	r.u.generate.input.n_ids = 20;
	r.u.generate.opts.max_tokens = 2;
	id = tc_send(&b, &r);
	if (child_expect_error(&b, id, PROTO_E_DENIED, "the prompt has 20 "
	    "tokens, over max_prompt_tokens 16", msg, size) < 0)
		return -1;
	/* a text prompt is measured once the scheduler tokenized it */
	id = tc_generate(&b, "tiny", "the quick brown fox jumps over the lazy "
	    "dog and runs far away into the woods", 2, true);
	if (child_expect_error(&b, id, PROTO_E_DENIED, "denied by [access "
	    "guests]: the prompt has", msg, size) < 0)
		return -1;
	if (child_generate(&b, "tiny", 2, &g, msg, size) < 0)
		return -1;
	tc_close(&b);
	return 0;
}

START_TEST(test_access_limits)
{
	if (!is_root()) {
		fprintf(stderr, "SKIP: access tests need root (setuid)\n");
		return;
	}
	if (!must_as_user(GUEST_UID, child_guest_limits, NULL))
		return;
	ck_assert(td_log_has(&g_d, "access: uid 65534 pid"));
}
END_TEST

/* tokens_per_minute 30: a request of 40 tokens uses them up. */
static int
child_metered(void *arg, char *msg, size_t size)
{
	struct gen g;
	struct tc c;
	int64_t id;

	(void)arg;
	if (child_open(&c, msg, size) < 0)
		return -1;
	if (child_generate(&c, "tiny", 40, &g, msg, size) < 0)
		return -1;
	id = gen(&c, "tiny", 2);
	if (child_expect_error(&c, id, PROTO_E_BUSY, "busy by [access "
	    "metered]: tokens_per_minute 30 used up; try again in", msg,
	    size) < 0)
		return -1;
	tc_close(&c);
	return 0;
}

/* max_requests 1, max_queued 1: the second waits, the third is busy. */
static int
child_queued(void *arg, char *msg, size_t size)
{
	struct proto_request r;
	struct gen g1, g2;
	struct tc c;
	int64_t id1, id2, id3;

	(void)arg;
	if (child_open(&c, msg, size) < 0)
		return -1;
	memset(&g1, 0, sizeof(g1));
	memset(&g2, 0, sizeof(g2));
	id1 = tc_generate(&c, "long", "x", 100000, true);
	CHILD_CHECK(tc_collect(&c, (uint64_t)id1, &g1, 1) == 1, "no stream");
	id2 = gen(&c, "long", 5);
	id3 = gen(&c, "long", 5);
	/* the third is refused at once (before anything of the second) */
	for (;;) {
		struct proto_response resp;

		CHILD_CHECK(tc_recv(&c, &resp, TIMEOUT_MS) == 1, "no answer");
		if (resp.id == (uint64_t)id1) {
			proto_response_free(&resp);
			continue;	/* the stream's tokens */
		}
		CHILD_CHECK(resp.id == (uint64_t)id3 &&
		    resp.type == PROTO_MSG_ERROR &&
		    resp.u.error.code == PROTO_E_BUSY &&
		    strstr(resp.u.error.message, "max_queued 1") != NULL,
		    "want busy for %lld, got %s for %llu", (long long)id3,
		    proto_msg_name(resp.type), (unsigned long long)resp.id);
		proto_response_free(&resp);
		break;
	}
	/* cancel the stream: the second starts and completes */
	proto_request_init(&r, PROTO_MSG_CANCEL, 0);
	r.u.cancel.target = (uint64_t)id1;
	CHILD_CHECK(tc_send(&c, &r) > 0, "cancel");
	for (;;) {
		struct proto_response resp;

		CHILD_CHECK(tc_recv(&c, &resp, TIMEOUT_MS) == 1, "no answer");
		if (resp.id == (uint64_t)id2 &&
		    resp.type == PROTO_MSG_DONE) {
			CHILD_CHECK(resp.u.done.generated_tokens == 5,
			    "second: %u tokens",
			    resp.u.done.generated_tokens);
			proto_response_free(&resp);
			break;
		}
		CHILD_CHECK(resp.type != PROTO_MSG_ERROR, "error for %llu: "
		    "%s", (unsigned long long)resp.id,
		    resp.u.error.message);
		proto_response_free(&resp);
	}
	tc_close(&c);
	return 0;
}

START_TEST(test_access_rate)
{
	if (!is_root()) {
		fprintf(stderr, "SKIP: access tests need root (setuid)\n");
		return;
	}
	if (!must_as_user(METER_UID, child_metered, NULL))
		return;
	ck_assert(must_as_user(QUEUE_UID, child_queued, NULL));
}
END_TEST

/* Paths: FIFOs, devices and links out of the models directory. */
START_TEST(test_paths)
{
	char path[4400];
	struct tc c;
	int64_t id;

	write_file(g_d.conf, "[daemon]\nexternal_links = no\n");
	ck_assert_int_eq(mkfifo(td_model_path(&g_d, "fifo"), 0600), 0);
	ck_assert_int_eq(symlink("/dev/null", td_model_path(&g_d, "null")), 0);
	snprintf(path, sizeof(path), "%s/outside.gguf", g_d.dir);
	ck_assert_int_eq(link(td_model_path(&g_d, "tiny"), path), 0);
	ck_assert_int_eq(symlink(path, td_model_path(&g_d, "outside")), 0);
	td_start(&g_d);
	tc_open_at(&c, g_d.sock);
	id = gen(&c, "fifo", 2);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_NOT_FOUND,
	    "not a regular file");
	id = gen(&c, "null", 2);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_DENIED, "external_links");
	id = gen(&c, "outside", 2);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_DENIED, "external_links");
	id = gen(&c, "../models/tiny", 2);
	ck_assert_int_lt(id, 0);	/* the client refuses to send it */
	tc_close(&c);
	ck_assert_int_eq(td_stop(&g_d), 0);
	/* with external_links a device is still not a model */
	write_file(g_d.conf, "[daemon]\nexternal_links = yes\n");
	td_start(&g_d);
	tc_open_at(&c, g_d.sock);
	id = gen(&c, "null", 2);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_NOT_FOUND,
	    "not a regular file");
	tc_close(&c);
}
END_TEST

/* [model] sections: context, template, keep-alive, pin. */
START_TEST(test_model_section)
{
	struct proto_message m = { "user", "hi", 2 };
	struct proto_response resp;
	struct proto_request r;
	int32_t ids[100];
	struct tc c;
	int64_t id;
	uint32_t k;
	int i;

	write_file(g_d.conf, "[daemon]\nmax_models = 1\n"
	    "[model tiny]\nn_ctx = 64\ntemplate = chatml\npin = yes\n");
	td_start(&g_d);
	tc_open_at(&c, g_d.sock);
	/* the context of the section */
	for (i = 0; i < 100; i++)
		ids[i] = 300 + i;
	proto_request_init(&r, PROTO_MSG_GENERATE, 0);
	r.u.generate.model = "tiny";
	r.u.generate.input.ids = ids;
	r.u.generate.input.n_ids = 100;
	id = tc_send(&c, &r);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_TOO_LARGE, "context of 64");
	/* its template, though the file has none */
	proto_request_init(&r, PROTO_MSG_RENDER, 0);
	r.u.chat.model = "tiny";
	r.u.chat.messages = &m;
	r.u.chat.n_messages = 1;
	id = tc_send(&c, &r);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_RENDER, &resp);
	ck_assert_str_eq(resp.u.render.template, "chatml");
	proto_response_free(&resp);
	/* pinned: resident for ever, and never evicted for another model */
	id = tc_simple(&c, PROTO_MSG_PS, NULL);
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_PS, &resp);
	for (k = 0; k < resp.u.ps.n_models; k++)
		if (strcmp(resp.u.ps.models[k].name, "tiny") == 0)
			break;
	ck_assert_uint_lt(k, resp.u.ps.n_models);
	ck_assert_int_eq(resp.u.ps.models[k].keep_alive, -1);
	proto_response_free(&resp);
	id = gen(&c, "secret", 2);
	tc_expect_error(&c, (uint64_t)id, PROTO_E_BUSY, "resident");
	/* a reload unpins it: then it makes room */
	write_file(g_d.conf, "[daemon]\nmax_models = 1\n");
	kill(g_d.pid, SIGHUP);
	ck_assert(td_log_wait(&g_d, "tiny is no longer pinned", 1,
	    LOG_WAIT_MS));
	id = gen(&c, "secret", 2);
	{
		struct gen *g = gen_new();

		ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
		ck_assert_msg(g->done, "%s", g->msg);
		free(g);
	}
	tc_close(&c);
}
END_TEST

/* The admin socket: mode 0600, load allowed there only. */
START_TEST(test_admin_socket)
{
	const char *admin[] = { "-a", g_admin, NULL };
	struct proto_response resp;
	struct stat st;
	struct tc c;
	int64_t id;

	write_file(g_d.conf, "[daemon]\n");
	g_d.args = admin;
	td_start(&g_d);
	ck_assert_int_eq(stat(g_admin, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(stat(g_d.sock, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, is_root() ? 0666 : 0600);
	/* no [access] sections: everyone may use every model, but load and
	 * unload are for the admin socket */
	tc_open_at(&c, g_d.sock);
	id = tc_simple(&c, PROTO_MSG_LOAD, "tiny");
	tc_expect_error(&c, (uint64_t)id, PROTO_E_DENIED,
	    "denied by the built-in rules: load needs admin");
	tc_close(&c);
	tc_open_at(&c, g_admin);
	id = tc_simple(&c, PROTO_MSG_LOAD, "tiny");
	for (;;) {
		tc_must_recv(&c, &resp);
		if (resp.type != PROTO_MSG_PROGRESS)
			break;
		proto_response_free(&resp);
	}
	ck_assert_int_eq(resp.type, PROTO_MSG_REPLY);
	ck_assert_uint_eq(resp.id, (uint64_t)id);
	proto_response_free(&resp);
	id = tc_simple(&c, PROTO_MSG_UNLOAD, "tiny");
	tc_expect_reply(&c, (uint64_t)id, PROTO_MSG_UNLOAD, &resp);
	proto_response_free(&resp);
	tc_close(&c);
	ck_assert_int_eq(td_stop(&g_d), 0);
	/* both socket files are gone */
	ck_assert_int_eq(stat(g_admin, &st), -1);
	ck_assert_int_eq(stat(g_d.sock, &st), -1);
}
END_TEST

/* ---- reload -------------------------------------------------------------- */

/* A guest stream that goes on across a reload (the test's go pipe). */
struct stream_job {
	int	 go;		/* read end: the parent says "go on" */
	int	 ready;		/* write end: the stream is running */
	uint32_t tokens;	/* to generate */
};

static int
child_stream(void *arg, char *msg, size_t size)
{
	struct stream_job *j = arg;
	struct gen g;
	struct tc c;
	char ch;
	int64_t id;

	if (child_open(&c, msg, size) < 0)
		return -1;
	memset(&g, 0, sizeof(g));
	id = tc_generate(&c, "long", "x", (int32_t)j->tokens, true);
	CHILD_CHECK(tc_collect(&c, (uint64_t)id, &g, 1) == 1, "no stream: "
	    "%s", g.msg);
	(void)!write(j->ready, "r", 1);
	/* stop reading: the stream pauses; go on when told */
	CHILD_CHECK(read(j->go, &ch, 1) == 1, "no go");
	CHILD_CHECK(tc_collect(&c, (uint64_t)id, &g, 0) == 0, "protocol "
	    "surprise %d", g.fail);
	CHILD_CHECK(g.done && g.reason == PROTO_REASON_MAX_TOKENS &&
	    g.generated_tokens == j->tokens, "stream: done %d reason %d, %u "
	    "tokens; error %s: %s", g.done, g.reason, g.generated_tokens,
	    proto_code_name(g.error), g.msg);
	tc_close(&c);
	return 0;
}

/* The guest's view of a model: 0 allowed, 1 denied, -1 trouble. */
static int
child_probe(void *arg, char *msg, size_t size)
{
	const char *model = arg;
	struct gen g;
	struct tc c;
	int64_t id;

	if (child_open(&c, msg, size) < 0)
		return -1;
	memset(&g, 0, sizeof(g));
	id = gen(&c, model, 1);
	CHILD_CHECK(tc_collect(&c, (uint64_t)id, &g, 0) == 0, "surprise");
	tc_close(&c);
	if (g.done)
		return 0;
	CHILD_CHECK(g.error == PROTO_E_DENIED, "%s: %s",
	    proto_code_name(g.error), g.msg);
	snprintf(msg, size, "%s", g.msg);
	return 1;
}

/* Run a stream of uid in the background; returns its pid. */
static pid_t
start_stream(struct stream_job *j, int *go_w, uid_t uid, uint32_t tokens)
{
	int go[2], ready[2];
	char ch;
	pid_t pid;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(ready), 0);
	j->go = go[0];
	j->ready = ready[1];
	j->tokens = tokens;
	if ((pid = fork()) < 0)
		abort();
	if (pid == 0) {
		char msg[1024];
		int r;

		close(go[1]);
		close(ready[0]);
		r = as_user(uid, child_stream, j, msg, sizeof(msg));
		if (r != 0)
			fprintf(stderr, "stream: %s\n", msg);
		_exit(r);
	}
	close(go[0]);
	close(ready[1]);
	ck_assert_msg(read(ready[0], &ch, 1) == 1, "the stream did not start");
	close(ready[0]);
	*go_w = go[1];
	return pid;
}

START_TEST(test_reload_rule)
{
	struct stream_job j;
	char msg[1024], a[2048], b[2048];
	int go, st, r, i;
	pid_t pid;

	if (!is_root()) {
		fprintf(stderr, "SKIP: access tests need root (setuid)\n");
		return;
	}
	ck_assert_int_eq(as_user(GUEST_UID, child_probe, "secret", msg,
	    sizeof(msg)), 1);
	/* a stream of [access queued], which may use long */
	pid = start_stream(&j, &go, QUEUE_UID, PAUSED_TOKENS);
	/* new rules: guests may use secret, queued long no more */
	replace_text(access_conf, "user = 65534\nmodels = tiny long\n",
	    "user = 65534\nmodels = tiny secret\n", a, sizeof(a));
	replace_text(a, "user = 65532\nmodels = long\n",
	    "user = 65532\nmodels = tiny\n", b, sizeof(b));
	write_file(g_d.conf, b);
	kill(g_d.pid, SIGHUP);
	ck_assert(td_log_wait(&g_d, "reload: ", 1, LOG_WAIT_MS));
	for (i = 0; i < 100; i++) {
		if ((r = as_user(GUEST_UID, child_probe, "secret", msg,
		    sizeof(msg))) == 0)
			break;
		usleep(20000);
	}
	ck_assert_msg(r == 0, "secret after the reload: %s", msg);
	ck_assert_int_eq(as_user(QUEUE_UID, child_probe, "long", msg,
	    sizeof(msg)), 1);
	ck_assert_msg(strstr(msg, "model 'long' not allowed") != NULL, "%s",
	    msg);
	/* the stream that was running goes on to its end */
	ck_assert_int_eq(write(go, "g", 1), 1);
	close(go);
	waitpid(pid, &st, 0);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "stream: %d",
	    st);
}
END_TEST

START_TEST(test_reload_broken)
{
	char msg[1024];
	struct tc c;

	if (!is_root()) {
		fprintf(stderr, "SKIP: access tests need root (setuid)\n");
		return;
	}
	write_file(g_d.conf, "[daemon]\ndrain_timeout = 1s\n\n"
	    "[access guests]\nuser = 65534\nmodels = *\nmax_tokens = none\n");
	kill(g_d.pid, SIGHUP);
	ck_assert(td_log_wait(&g_d, "hearth.conf:7: max_tokens: 'none' is "
	    "not a number", 1, LOG_WAIT_MS));
	ck_assert(td_log_has(&g_d, "keeping the configuration in use"));
	/* the old rules still apply */
	ck_assert_int_eq(as_user(GUEST_UID, child_probe, "secret", msg,
	    sizeof(msg)), 1);
	ck_assert_int_eq(as_user(GUEST_UID, child_probe, "tiny", msg,
	    sizeof(msg)), 0);
	tc_open_at(&c, g_d.sock);
	tc_ping(&c);
	tc_close(&c);
}
END_TEST

/* ---- fairness ------------------------------------------------------------ */

/* B's one request, sent while A's queue is long; msg: when it ended. */
static int
child_fair(void *arg, char *msg, size_t size)
{
	int ready = *(int *)arg;
	struct timespec ts;
	struct gen g;
	struct tc c;
	int64_t id;

	if (child_open(&c, msg, size) < 0)
		return -1;
	memset(&g, 0, sizeof(g));
	CHILD_CHECK((id = gen(&c, "long", 20)) > 0, "send");
	(void)!write(ready, "s", 1);
	CHILD_CHECK(tc_collect(&c, (uint64_t)id, &g, 0) == 0 && g.done,
	    "B: %s", g.msg);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, size, "%lld", (long long)ts.tv_sec * 1000000000ll +
	    ts.tv_nsec);
	tc_close(&c);
	return 0;
}

START_TEST(test_fairness)
{
	struct proto_response resp;
	struct proto_request r[3];
	struct proto_buf b;
	struct proto_err e;
	struct timespec ts;
	struct gen *g = gen_new();
	struct tc c, q;
	char msg[1024], ch;
	long long t_a2 = 0, t_b;
	int ready[2], res[2], i, st;
	bool a2 = false, a3 = false;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	if (!is_root()) {
		fprintf(stderr, "SKIP: access tests need root (setuid)\n");
		free(g);
		return;
	}
	/* one slot: requests run one after the other */
	write_file(g_d.conf, "[daemon]\nn_parallel = 1\noutput_buffer = 4K\n"
	    "sndbuf = 4K\ndrain_timeout = 1s\n");
	td_start(&g_d);
	tc_open_at(&c, g_d.sock);
	/* A (root): a stream that pauses holding the slot, and two more
	 * requests behind it, in one write */
	proto_buf_init(&b);
	for (i = 0; i < 3; i++) {
		proto_request_init(&r[i], PROTO_MSG_GENERATE, (uint64_t)i + 1);
		r[i].u.generate.model = "long";
		r[i].u.generate.input.text = "once upon a time";
		r[i].u.generate.input.text_len = 16;
		/* A's next two long enough that the order shows in
		 * wall-clock time across processes */
		r[i].u.generate.opts.max_tokens = i == 0 ? PAUSED_TOKENS :
		    FAIR_TOKENS;
		r[i].u.generate.opts.stream = i == 0;
		r[i].u.generate.opts.sampling.set = PROTO_S_TEMPERATURE;
		r[i].u.generate.opts.sampling.temperature = 0;
		ck_assert_int_eq(proto_pack_request(&b, &r[i], &c.l, &e), 0);
	}
	ck_assert_int_eq(tc_write(&c, b.data, b.len), 0);
	proto_buf_free(&b);
	ck_assert_int_eq(tc_collect(&c, 1, g, 1), 1);
	/* B (another uid) asks once, behind A's queue */
	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(res), 0);
	if ((pid = fork()) == 0) {
		close(ready[0]);
		close(res[0]);
		i = as_user(GUEST_UID, child_fair, &ready[1], msg,
		    sizeof(msg));
		(void)!write(res[1], msg, strlen(msg));
		_exit(i);
	}
	close(ready[1]);
	close(res[1]);
	ck_assert_int_eq(read(ready[0], &ch, 1), 1);
	close(ready[0]);
	/* B's request is queued when the model has two connections' work */
	tc_open_at(&q, g_d.sock);
	for (i = 0; ps_clients(&q, "long") < 2; i++) {
		ck_assert_msg(i < 1000 * timeout_scale(), "B never queued");
		usleep(10000);
	}
	tc_close(&q);
	/* A reads again: its stream ends, then the slot goes to B before
	 * A's next requests (round robin), though B came last */
	ck_assert_int_eq(tc_collect(&c, 1, g, 0), 0);
	ck_assert_msg(g->done, "%s", g->msg);
	while (!a2 || !a3) {
		tc_must_recv(&c, &resp);
		ck_assert_int_eq(resp.type, PROTO_MSG_DONE);
		if (resp.id == 2) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			t_a2 = (long long)ts.tv_sec * 1000000000ll +
			    ts.tv_nsec;
			a2 = true;
		} else {
			ck_assert_msg(a2, "A's third request ended first");
			a3 = true;
		}
		proto_response_free(&resp);
	}
	while (len + 1 < sizeof(msg) &&
	    (n = read(res[0], msg + len, sizeof(msg) - 1 - len)) > 0)
		len += (size_t)n;
	msg[len] = '\0';
	close(res[0]);
	waitpid(pid, &st, 0);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "B: %s", msg);
	t_b = atoll(msg);
	ck_assert_msg(t_b < t_a2, "B's request ended %.1f ms after A's "
	    "second", (double)(t_b - t_a2) / 1e6);
	tc_close(&c);
	free(g);
}
END_TEST

/* ---- drain --------------------------------------------------------------- */

START_TEST(test_drain_finish)
{
	struct stream_job j;
	struct stat st;
	int go, s;
	pid_t pid;

	if (!is_root()) {
		fprintf(stderr, "SKIP: access tests need root (setuid)\n");
		return;
	}
	write_file(g_d.conf, "[daemon]\ndrain_timeout = 20s\n"
	    "output_buffer = 4K\nsndbuf = 4K\n");
	td_start(&g_d);
	pid = start_stream(&j, &go, GUEST_UID, PAUSED_TOKENS);
	kill(g_d.pid, SIGTERM);
	ck_assert(td_log_wait(&g_d, "draining: 1 request running", 1,
	    LOG_WAIT_MS));
	/* no new connections */
	ck_assert_int_eq(stat(g_d.sock, &st), -1);
	ck_assert_int_lt(tc_connect(g_d.sock), 0);
	/* the stream finishes, then hearthd exits 0 */
	ck_assert_int_eq(write(go, "g", 1), 1);
	close(go);
	waitpid(pid, &s, 0);
	ck_assert_msg(WIFEXITED(s) && WEXITSTATUS(s) == 0, "stream: %d", s);
	ck_assert_int_eq(td_wait(&g_d, 5000), 0);
	ck_assert(td_log_has(&g_d, "every request has ended"));
}
END_TEST

START_TEST(test_drain_deadline)
{
	struct gen *g = gen_new();
	struct tc c;
	int64_t id;

	write_file(g_d.conf, "[daemon]\ndrain_timeout = 200ms\n"
	    "output_buffer = 4K\nsndbuf = 4K\n");
	td_start(&g_d);
	tc_open_at(&c, g_d.sock);
	id = gen(&c, "long", LONG_TOKENS);
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 1), 1);
	kill(g_d.pid, SIGTERM);
	/* the stream is ended with an error event; hearthd exits 0 */
	ck_assert_int_eq(tc_collect(&c, (uint64_t)id, g, 0), 0);
	ck_assert_int_eq(td_wait(&g_d, 5000), 0);
	ck_assert(!g->done);
	ck_assert_msg(g->error == PROTO_E_BUSY, "%d: %s", g->error, g->msg);
	ck_assert_msg(strstr(g->msg, "shutting down") != NULL, "%s", g->msg);
	ck_assert(td_log_has(&g_d, "drain_timeout: ending 1 request"));
	tc_close(&c);
	free(g);
}
END_TEST

static Suite *
service_suite(void)
{
	Suite *s = suite_create("service");
	TCase *tc;

	tc = tcase_create("config");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_config_good);
	tcase_add_test(tc, test_config_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("systemd");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_socket_activation);
	tcase_add_test(tc, test_notify);
	tcase_add_test(tc, test_admin_socket);
	tcase_add_test(tc, test_paths);
	tcase_add_test(tc, test_model_section);
	suite_add_tcase(s, tc);

	tc = tcase_create("access");
	tcase_add_checked_fixture(tc, access_setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_access_models);
	tcase_add_test(tc, test_access_limits);
	tcase_add_test(tc, test_access_rate);
	tcase_add_test(tc, test_reload_rule);
	tcase_add_test(tc, test_reload_broken);
	suite_add_tcase(s, tc);

	tc = tcase_create("drain");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_fairness);
	tcase_add_test(tc, test_drain_finish);
	tcase_add_test(tc, test_drain_deadline);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(service_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
