/*
 * tclient.h - hearthd for the test suites (check_daemon, check_service,
 * check_faults, check_residency, check_client, hearth-load):
 *
 * td_*: the daemon itself. Start the real hearthd ($HEARTH_BUILDDIR)
 * on a socket in a test's temporary directory, wait for its socket,
 * stop it (SIGTERM, then SIGKILL), read its log and /proc status.
 * tc_*: a tiny blocking client: connect, send requests packed with
 * proto/, receive and check responses, collect streams.
 *
 * The tc_expect_*, tc_open* helpers, td_start and td_log_has use
 * ck_assert (test process only); the others return errors and may run in
 * threads or forked children.
 */
#ifndef HEARTH_TCLIENT_H
#define HEARTH_TCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mkmodel_lib.h"
#include "proto.h"

#define TIMEOUT_MS	(10000 * timeout_scale())	/* for one answer */
#define MAX_GEN		4096	/* tokens a test collects at most */

/* CK_TIMEOUT_MULTIPLIER stretches our waits too (valgrind runs). */
int	timeout_scale(void);

struct tc {
	int			 fd;
	struct proto_reader	*rd;
	struct proto_limits	 l;
	uint64_t		 next_id;
};

/* What a generate or chat stream brought. */
struct gen {
	int32_t		 ids[MAX_GEN];
	uint32_t	 n;
	char		 text[MAX_GEN * 16];
	size_t		 len;
	uint32_t	 n_thinking;	/* tokens marked thinking */
	bool		 done;		/* a done event came */
	enum proto_reason reason;
	uint32_t	 prompt_tokens, cached_tokens, generated_tokens;
	char		 done_text[MAX_GEN * 16];	/* stream false */
	size_t		 done_len;
	enum proto_code	 error;		/* an error came instead */
	char		 msg[PROTO_MAX_MESSAGE + 1];
	int		 fail;		/* protocol surprise (for threads) */
};

/* A connected socket: the fd or -errno. */
int	tc_connect(const char *path);
/* Connect (no hello): 0 or -errno. */
int	tc_open_raw_at(struct tc *c, const char *path);
/* Connect and say hello (asserts). */
void	tc_open_at(struct tc *c, const char *path);
void	tc_close(struct tc *c);
int	tc_write(struct tc *c, const void *p, size_t len);
/* Pack and send r (an id is given when r->id is 0); the id or -errno. */
int64_t	tc_send(struct tc *c, struct proto_request *r);
/*
 * The next response: 1, 0 at end of file, -ETIMEDOUT, or another
 * negative errno (a broken frame).
 */
int	tc_recv(struct tc *c, struct proto_response *out, int timeout_ms);
void	tc_must_recv(struct tc *c, struct proto_response *out);
void	tc_expect_error(struct tc *c, uint64_t id, enum proto_code code,
	    const char *needle);
/* A REPLY to request id of type t; the caller frees it. */
void	tc_expect_reply(struct tc *c, uint64_t id, enum proto_msg t,
	    struct proto_response *resp);
/* A request naming model (or none); the id. */
int64_t	tc_simple(struct tc *c, enum proto_msg type, const char *model);
void	tc_ping(struct tc *c);
/* A generate request, greedy. */
int64_t	tc_generate(struct tc *c, const char *model, const char *prompt,
	    int32_t max_tokens, bool stream);
/*
 * Collect the events of request id up to its end (or max_events token
 * events when > 0). No ck_assert: usable from threads. 0 at the end,
 * 1 stopped early, -1 on a surprise (g->fail says which).
 */
int	tc_collect(struct tc *c, uint64_t id, struct gen *g,
	    uint32_t max_events);
struct gen *gen_new(void);

/* ---- the daemon ------------------------------------------------------ */

/*
 * A hearthd of a test: where it lives and how td_start runs it, as
 *   hearthd [-d] -s SOCK -m MODELS [-c CONF] [-t THREADS]
 *       [--numa-topology TOPO] [ARGS...]
 * td_init fills in the defaults; a suite changes what it needs before
 * td_start.
 */
struct td {
	char		 dir[4096];	/* its temporary directory */
	char		 models[4200];	/* -m: models directory */
	char		 sock[4200];	/* -s: its socket */
	char		 conf[4200];	/* -c: configuration, "" for none */
	char		 log[4300];	/* its stderr and stdout, appended */
	bool		 quiet;		/* without -d */
	const char	*threads;	/* -t, NULL for the daemon's default */
	const char	*topo;		/* --numa-topology file, or NULL */
	const char *const *args;	/* more arguments: NULL-terminated,
					 * or NULL */
	char *const	*env;		/* more "NAME=value" entries of its
					 * environment: NULL-terminated, or
					 * NULL */
	uid_t		 uid;		/* runs as (needs root unless ours) */
	pid_t		 pid;		/* the daemon, -1 when none runs */
};

/* $HEARTH_BUILDDIR (make check sets it), else ".". */
const char *td_builddir(void);
/* The program prog of the build directory (a static buffer). */
const char *td_build_path(const char *prog);
/*
 * Defaults under dir: dir/models (made when missing), dir/run/hearth.sock,
 * dir/hearthd.conf, dir/daemon.log, -d, -t 1, our uid, no daemon.
 * 0 or -errno (the models directory could not be made).
 */
int	td_init(struct td *d, const char *dir);
/* models/name.gguf of d (a static buffer). */
const char *td_model_path(const struct td *d, const char *name);
/* Write the model of spec as models/name.gguf of d; aborts on failure. */
void	td_write_model(const struct td *d, const struct mkm_spec *spec,
	    const char *name);
/*
 * Fork and exec path with argv, stderr and stdout appended to log, the
 * env entries ("NAME=value", NULL-terminated, may be NULL) added to the
 * environment, as uid when it is not ours (the child exits 126 when it
 * cannot become uid, 127 when exec fails); SIGKILLed when the test
 * ends. The pid, or -errno.
 */
pid_t	td_spawn(const char *log, uid_t uid, const char *path,
	    char *const argv[], char *const env[]);
/*
 * Run hearthd with args (NULL-terminated, without argv[0]) to its end,
 * its output in log (emptied first) and, when out is not NULL, in out.
 * Its exit status, 128 + the signal that ended it, or -errno.
 */
int	td_run(const char *log, const char *const *args, char *out,
	    size_t size);
/*
 * Start d and wait until its socket takes connections: 0, or -1 when it
 * ended first or did not listen in time (then killed), *status (may be
 * NULL) its wait status.
 */
int	td_start_st(struct td *d, int *status);
/* td_start_st that must succeed: else the log is printed, and ck_abort. */
void	td_start(struct td *d);
/*
 * Wait up to ms (times timeout_scale) for d to exit by itself: its exit
 * status or 128 + its signal (d->pid is -1 then), -1 when it runs on.
 */
int	td_wait(struct td *d, int ms);
/*
 * SIGTERM, 5 s (times timeout_scale) to exit, then SIGKILL: 0 when the
 * daemon exited 0 (or none ran), else -1.
 */
int	td_stop(struct td *d);
/*
 * td_stop, with the log printed when the daemon did not stop cleanly
 * (saying so) or when CHECK_DAEMON_LOG is set. The same result.
 */
int	td_finish(struct td *d);
/* Print d's log to stderr between markers. */
void	td_print_log(const struct td *d);
/* d's log as a string (free it), or NULL. */
char	*td_log_text(const struct td *d);
/*
 * Where the n-th (from 1) needle is in d's log, or -1; with n 0: how
 * many there are.
 */
long	td_log_find(const struct td *d, const char *needle, long n);
/* Whether d's log has needle; the log must exist (asserts). */
bool	td_log_has(const struct td *d, const char *needle);
/*
 * Wait up to ms (times timeout_scale) until needle is in d's log n
 * times: true, or false when it is not.
 */
bool	td_log_wait(const struct td *d, const char *needle, long n, int ms);
/* A field of /proc/PID/status in kB ("VmRSS", "VmHWM"), or -1. */
long	td_status_kb(pid_t pid, const char *field);

#endif /* HEARTH_TCLIENT_H */
