/*
 * tclient.c - hearthd for the test suites: the daemon (td_*) and a tiny
 * blocking client (tc_*). See tclient.h.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
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
#include <unistd.h>

#include "mkmodel_lib.h"
#include "proto.h"
#include "tclient.h"
#include "testutil.h"

int
timeout_scale(void)
{
	const char *s = getenv("CK_TIMEOUT_MULTIPLIER");
	int k = s != NULL ? atoi(s) : 1;

	return k >= 1 ? k : 1;
}

int
tc_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}


int
tc_open_raw_at(struct tc *c, const char *path)
{
	memset(c, 0, sizeof(*c));
	if ((c->fd = tc_connect(path)) < 0)
		return c->fd;
	proto_limits_default(&c->l);
	c->next_id = 1;
	if (proto_reader_new(PROTO_MAX_FRAME_DEFAULT, &c->rd) != 0) {
		close(c->fd);
		return -ENOMEM;
	}
	return 0;
}

void
tc_close(struct tc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	proto_reader_free(c->rd);
	c->rd = NULL;
}

int
tc_write(struct tc *c, const void *p, size_t len)
{
	return proto_write_all(c->fd, p, len);
}

/* Pack and send r (an id is given when r->id is 0); the id or -errno. */
int64_t
tc_send(struct tc *c, struct proto_request *r)
{
	struct proto_err e;
	struct proto_buf b;
	int rc;

	if (r->id == 0)
		r->id = c->next_id++;
	proto_buf_init(&b);
	if ((rc = proto_pack_request(&b, r, &c->l, &e)) < 0) {
		fprintf(stderr, "pack: %s\n", e.msg);
		return rc;
	}
	rc = tc_write(c, b.data, b.len);
	proto_buf_free(&b);
	return rc < 0 ? rc : (int64_t)r->id;
}

/*
 * The next response: 1, 0 at end of file, -ETIMEDOUT, or another
 * negative errno (a broken frame).
 */
int
tc_recv(struct tc *c, struct proto_response *out, int timeout_ms)
{
	struct pollfd pfd = { c->fd, POLLIN, 0 };
	const uint8_t *body;
	struct proto_err e;
	size_t len;
	ssize_t n;
	int r;

	for (;;) {
		r = proto_reader_next(c->rd, &body, &len, &e);
		if (r == 1) {
			r = proto_unpack_response(body, len, &c->l, out, &e);
			if (r < 0)
				fprintf(stderr, "unpack: %s\n", e.msg);
			return r < 0 ? r : 1;
		}
		if (r < 0)
			return r;
		r = poll(&pfd, 1, timeout_ms);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0)
			return -errno;
		n = proto_reader_read(c->rd, c->fd, &e);
		if (n == 0)
			return 0;
		if (n < 0)
			return (int)n;
	}
}

/* Receive one response, which must come. */
void
tc_must_recv(struct tc *c, struct proto_response *out)
{
	int r = tc_recv(c, out, TIMEOUT_MS);

	ck_assert_msg(r == 1, "no response (%d: %s)", r, strerror(-r));
}

void
tc_expect_error(struct tc *c, uint64_t id, enum proto_code code,
    const char *needle)
{
	struct proto_response resp;

	tc_must_recv(c, &resp);
	ck_assert_msg(resp.type == PROTO_MSG_ERROR, "expected an error, got %s",
	    proto_msg_name(resp.type));
	ck_assert_uint_eq(resp.id, id);
	ck_assert_msg(resp.u.error.code == code, "code %s (%s), want %s",
	    proto_code_name(resp.u.error.code), resp.u.error.message,
	    proto_code_name(code));
	if (needle != NULL)
		ck_assert_msg(strstr(resp.u.error.message, needle) != NULL,
		    "'%s' not in '%s'", needle, resp.u.error.message);
	proto_response_free(&resp);
}

/* A REPLY to request id of type t; the caller frees it. */
void
tc_expect_reply(struct tc *c, uint64_t id, enum proto_msg t,
    struct proto_response *resp)
{
	tc_must_recv(c, resp);
	ck_assert_msg(resp->type == PROTO_MSG_REPLY, "expected a reply, got "
	    "%s%s%s", proto_msg_name(resp->type),
	    resp->type == PROTO_MSG_ERROR ? ": " : "",
	    resp->type == PROTO_MSG_ERROR ? resp->u.error.message : "");
	ck_assert_uint_eq(resp->id, id);
	ck_assert_int_eq(resp->request, t);
}

void
tc_open_at(struct tc *c, const char *path)
{
	struct proto_request r;
	struct proto_response resp;
	int64_t id;

	ck_assert_int_eq(tc_open_raw_at(c, path), 0);
	proto_request_init(&r, PROTO_MSG_HELLO, 0);
	r.u.hello.version = PROTO_VERSION;
	r.u.hello.client = "check_daemon";
	ck_assert_int_gt(id = tc_send(c, &r), 0);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_HELLO, &resp);
	proto_response_free(&resp);
}

int64_t
tc_simple(struct tc *c, enum proto_msg type, const char *model)
{
	struct proto_request r;

	proto_request_init(&r, type, 0);
	if (model != NULL)
		r.u.show.model = model;	/* shared by the model requests */
	switch (type) {
	case PROTO_MSG_LOAD:
		r.u.load.model = model;
		break;
	case PROTO_MSG_UNLOAD:
		r.u.unload.model = model;
		break;
	default:
		break;
	}
	return tc_send(c, &r);
}

void
tc_ping(struct tc *c)
{
	struct proto_response resp;
	int64_t id = tc_simple(c, PROTO_MSG_PING, NULL);

	ck_assert_int_gt(id, 0);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_PING, &resp);
	proto_response_free(&resp);
}

/* A generate request, greedy unless temperature >= 0 is given. */
int64_t
tc_generate(struct tc *c, const char *model, const char *prompt,
    int32_t max_tokens, bool stream)
{
	struct proto_request r;

	proto_request_init(&r, PROTO_MSG_GENERATE, 0);
	r.u.generate.model = model;
	r.u.generate.input.text = prompt;
	r.u.generate.input.text_len = strlen(prompt);
	r.u.generate.opts.max_tokens = max_tokens;
	r.u.generate.opts.stream = stream;
	r.u.generate.opts.sampling.set = PROTO_S_TEMPERATURE;
	r.u.generate.opts.sampling.temperature = 0;
	return tc_send(c, &r);
}


/*
 * Collect the events of request id up to its end (or max_events token
 * events when > 0). No ck_assert: usable from threads. 0 at the end,
 * 1 stopped early, -1 on a surprise (g->fail says which).
 */
int
tc_collect(struct tc *c, uint64_t id, struct gen *g, uint32_t max_events)
{
	struct proto_response resp;
	uint32_t events = 0;
	int r;

	for (;;) {
		if ((r = tc_recv(c, &resp, TIMEOUT_MS)) != 1) {
			g->fail = r == 0 ? 1 : r;
			return -1;
		}
		if (resp.id != id) {
			g->fail = 2;
			proto_response_free(&resp);
			return -1;
		}
		switch (resp.type) {
		case PROTO_MSG_TOKEN:
			if (g->n < MAX_GEN)
				g->ids[g->n++] = resp.u.token.token;
			if (g->len + resp.u.token.text_len < sizeof(g->text)) {
				memcpy(g->text + g->len, resp.u.token.text,
				    resp.u.token.text_len);
				g->len += resp.u.token.text_len;
				g->text[g->len] = '\0';
			}
			if (resp.u.token.thinking)
				g->n_thinking++;
			proto_response_free(&resp);
			if (max_events > 0 && ++events >= max_events)
				return 1;
			continue;
		case PROTO_MSG_DONE:
			g->done = true;
			g->reason = resp.u.done.reason;
			g->prompt_tokens = resp.u.done.prompt_tokens;
			g->cached_tokens = resp.u.done.cached_tokens;
			g->generated_tokens = resp.u.done.generated_tokens;
			if (resp.u.done.text != NULL &&
			    resp.u.done.text_len < sizeof(g->done_text)) {
				memcpy(g->done_text, resp.u.done.text,
				    resp.u.done.text_len);
				g->done_len = resp.u.done.text_len;
				g->done_text[g->done_len] = '\0';
			}
			proto_response_free(&resp);
			return 0;
		case PROTO_MSG_ERROR:
			g->error = resp.u.error.code;
			snprintf(g->msg, sizeof(g->msg), "%s",
			    resp.u.error.message);
			proto_response_free(&resp);
			return 0;
		default:
			g->fail = 3;
			proto_response_free(&resp);
			return -1;
		}
	}
}

struct gen *
gen_new(void)
{
	struct gen *g = calloc(1, sizeof(*g));

	ck_assert_ptr_nonnull(g);
	return g;
}

/* ---- the daemon ------------------------------------------------------ */

/* $HEARTH_BUILDDIR, else ".". */
const char *
td_builddir(void)
{
	const char *b = getenv("HEARTH_BUILDDIR");

	return b != NULL && *b != '\0' ? b : ".";
}

/* A program of the build directory. */
const char *
td_build_path(const char *prog)
{
	static char path[4400];

	snprintf(path, sizeof(path), "%s/%s", td_builddir(), prog);
	return path;
}

/* The defaults under dir; the models directory made. */
int
td_init(struct td *d, const char *dir)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "%s", dir);
	snprintf(d->models, sizeof(d->models), "%s/models", d->dir);
	snprintf(d->sock, sizeof(d->sock), "%s/run/hearth.sock", d->dir);
	snprintf(d->conf, sizeof(d->conf), "%s/hearthd.conf", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/daemon.log", d->dir);
	d->threads = "1";
	d->uid = geteuid();
	d->pid = -1;
	if (mkdir(d->models, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* models/name.gguf. */
const char *
td_model_path(const struct td *d, const char *name)
{
	static char path[4400];

	snprintf(path, sizeof(path), "%s/%s.gguf", d->models, name);
	return path;
}

/* A generated model in the models directory, or abort. */
void
td_write_model(const struct td *d, const struct mkm_spec *spec,
    const char *name)
{
	struct eng_err err = { "" };

	if (mkm_write(spec, td_model_path(d, name), &err) != 0) {
		fprintf(stderr, "mkm_write %s: %s\n", name, err.msg);
		abort();
	}
}

/* Fork and exec with the log as stdout and stderr. */
pid_t
td_spawn(const char *log, uid_t uid, const char *path, char *const argv[],
    char *const env[])
{
	pid_t pid;
	int fd, i;

	if ((pid = fork()) < 0)
		return -errno;
	if (pid > 0)
		return pid;
	/* never outlive the test */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if ((fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0) {
		dup2(fd, 2);
		dup2(fd, 1);
		if (fd > 2)
			close(fd);
	}
	for (i = 0; env != NULL && env[i] != NULL; i++)
		putenv(env[i]);
	if (uid != geteuid() && (setgroups(0, NULL) != 0 ||
	    setgid((gid_t)uid) != 0 || setuid(uid) != 0)) {
		fprintf(stderr, "setuid %u: %s\n", (unsigned)uid,
		    strerror(errno));
		_exit(126);
	}
	execv(path, argv);
	fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
	_exit(127);
}

/* Run hearthd to its end: its status, its output. */
int
td_run(const char *log, const char *const *args, char *out, size_t size)
{
	const char *argv[32];
	size_t n = 0, len;
	uint8_t *s;
	pid_t pid;
	int st;

	argv[n++] = "hearthd";
	while (*args != NULL && n < 31)
		argv[n++] = *args++;
	argv[n] = NULL;
	unlink(log);
	pid = td_spawn(log, geteuid(), td_build_path("hearthd"),
	    (char *const *)argv, NULL);
	if (pid < 0)
		return pid;
	if (waitpid(pid, &st, 0) != pid)
		return -errno;
	if (out != NULL && size > 0) {
		out[0] = '\0';
		if ((s = tu_read_file(log, &len)) != NULL) {
			snprintf(out, size, "%.*s", (int)len, (const char *)s);
			free(s);
		}
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Start the daemon, wait for its socket: 0 or -1. */
int
td_start_st(struct td *d, int *status)
{
	const char *argv[32];
	const char *const *a;
	size_t n = 0;
	int i, fd, st = 0;

	argv[n++] = "hearthd";
	if (!d->quiet)
		argv[n++] = "-d";
	argv[n++] = "-s";
	argv[n++] = d->sock;
	argv[n++] = "-m";
	argv[n++] = d->models;
	if (d->conf[0] != '\0') {
		argv[n++] = "-c";
		argv[n++] = d->conf;
	}
	if (d->threads != NULL) {
		argv[n++] = "-t";
		argv[n++] = d->threads;
	}
	if (d->topo != NULL) {
		argv[n++] = "--numa-topology";
		argv[n++] = d->topo;
	}
	for (a = d->args; a != NULL && *a != NULL && n < 31; a++)
		argv[n++] = *a;
	argv[n] = NULL;
	d->pid = td_spawn(d->log, d->uid, td_build_path("hearthd"),
	    (char *const *)argv, d->env);
	if (d->pid < 0) {
		d->pid = -1;
		goto fail;
	}
	for (i = 0; i < 1000 * timeout_scale(); i++) {
		if ((fd = tc_connect(d->sock)) >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = -1;
			goto fail;
		}
		usleep(10000);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, &st, 0);
	d->pid = -1;
fail:
	if (status != NULL)
		*status = st;
	return -1;
}

/* Start the daemon, or fail the test showing its log. */
void
td_start(struct td *d)
{
	int st = 0;

	if (td_start_st(d, &st) == 0)
		return;
	td_print_log(d);
	ck_abort_msg("hearthd did not start on %s (status %d)", d->sock, st);
}

/* Wait for the daemon to exit: its status, -1 in time. */
int
td_wait(struct td *d, int ms)
{
	int st, i;

	if (d->pid <= 0)
		return -1;
	for (i = 0; i < ms / 10 * timeout_scale(); i++) {
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = -1;
			return WIFEXITED(st) ? WEXITSTATUS(st) :
			    128 + WTERMSIG(st);
		}
		usleep(10000);
	}
	return -1;
}

/* SIGTERM (SIGKILL when late): 0 when it exited 0. */
int
td_stop(struct td *d)
{
	int r;

	if (d->pid <= 0)
		return 0;
	kill(d->pid, SIGTERM);
	if ((r = td_wait(d, 5000)) < 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = -1;
	}
	return r == 0 ? 0 : -1;
}

/* td_stop for a teardown: the log printed when it matters. */
int
td_finish(struct td *d)
{
	int r = td_stop(d);

	if (r != 0) {
		td_print_log(d);
		fprintf(stderr, "hearthd did not stop cleanly\n");
	} else if (getenv("CHECK_DAEMON_LOG") != NULL)
		td_print_log(d);
	return r;
}

/* The log to stderr. */
void
td_print_log(const struct td *d)
{
	size_t len;
	uint8_t *s = tu_read_file(d->log, &len);

	if (s != NULL) {
		fprintf(stderr, "---- hearthd log ----\n%.*s---- end ----\n",
		    (int)len, (const char *)s);
		free(s);
	}
}

/* The log as a string, or NULL. */
char *
td_log_text(const struct td *d)
{
	size_t len;
	uint8_t *s = tu_read_file(d->log, &len);
	char *z;

	if (s == NULL)
		return NULL;
	if ((z = calloc(1, len + 1)) == NULL)
		abort();
	memcpy(z, s, len);
	free(s);
	return z;
}

/* The offset of the n-th needle, or with n 0 the count. */
long
td_log_find(const struct td *d, const char *needle, long n)
{
	char *z = td_log_text(d), *p;
	long k = 0, at = -1;

	if (z == NULL)
		return n == 0 ? 0 : -1;
	for (p = strstr(z, needle); p != NULL; p = strstr(p + 1, needle))
		if (++k == n) {
			at = p - z;
			break;
		}
	free(z);
	return n == 0 ? k : at;
}

/* Whether the log (which must exist) has needle. */
bool
td_log_has(const struct td *d, const char *needle)
{
	char *z = td_log_text(d);
	bool found;

	ck_assert_msg(z != NULL, "no log %s", d->log);
	found = strstr(z, needle) != NULL;
	free(z);
	return found;
}

/* Poll the log for n needles. */
bool
td_log_wait(const struct td *d, const char *needle, long n, int ms)
{
	int i;

	for (i = 0; i < ms / 10 * timeout_scale(); i++) {
		if (td_log_find(d, needle, 0) >= n)
			return true;
		usleep(10000);
	}
	return false;
}

/* A kB field of /proc/PID/status. */
long
td_status_kb(pid_t pid, const char *field)
{
	char path[64], line[256], fmt[64];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	snprintf(fmt, sizeof(fmt), "%s: %%ld kB", field);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, fmt, &kb) == 1)
			break;
	fclose(f);
	return kb;
}
