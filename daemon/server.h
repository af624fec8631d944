/*
 * server.h - hearthd's state and its event loop thread: the listening
 * sockets (the main one and the admin one, bound here or passed by
 * systemd), the connections (by a 64-bit id that is never reused), the
 * registry of models, the users, the configuration (replaced whole by a
 * SIGHUP reload), the service manager's notifications, and the queue
 * through which worker threads (schedulers, loaders) hand results to
 * the loop.
 *
 * SIGTERM and SIGINT drain: the sockets close, running requests go on
 * for up to drain_timeout and are then ended with an error, the output
 * is flushed, and srv_run returns 0. A second signal stops at once.
 *
 * Only the loop thread touches struct srv, except srv_post_*(), which
 * any thread may call: they append to a mutex-protected queue and wake
 * the loop with event_active().
 */
#ifndef HEARTH_SERVER_H
#define HEARTH_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "access.h"
#include "config.h"
#include "model.h"
#include "proto.h"
#include "sched.h"

struct event;
struct event_base;
struct conn;
struct registry;
struct reg_model;
struct svc;

#define SRV_VERSION_MAX	64	/* bytes of "hearthd X.Y.Z" with NUL */

/* One item handed from a worker thread to the loop. */
enum srv_post_kind {
	SRV_POST_FRAME,		/* a scheduler's frame for a connection */
	SRV_POST_PROGRESS,	/* a loader's progress */
	SRV_POST_LOADED,	/* a loader finished (model or error) */
};

struct srv_post {
	STAILQ_ENTRY(srv_post) entry;
	enum srv_post_kind kind;
	/* FRAME */
	uint64_t	 conn_id;	/* destination connection */
	uint64_t	 id;		/* request id */
	bool		 final;		/* last frame of the request */
	size_t		 len;		/* bytes in data */
	/* PROGRESS, LOADED */
	struct reg_model *rm;		/* the model being loaded */
	uint64_t	 done, total;	/* PROGRESS: bytes */
	struct model	*m;		/* LOADED: the model, NULL on error */
	struct sched	*s;		/* LOADED: its scheduler */
	int		 rc;		/* LOADED: 0 or a negative errno */
	char		 msg[ENG_ERR_MAX];	/* LOADED: error message */
	uint8_t		 data[];	/* FRAME: [len] bytes, header included */
};

/* A listening socket. */
struct srv_listener {
	struct srv		*srv;
	int			 fd;		/* -1: none or closed */
	bool			 admin;		/* the admin socket */
	bool			 activated;	/* passed by systemd: its file is
						 * not ours to remove */
	char			*path;		/* its file (NULL if unknown) */
	struct event		*ev;		/* readable */
};

#define SRV_MAIN	0	/* srv->lis[] index of the main socket */
#define SRV_ADMIN	1	/* and of the admin socket */

/* What main decided before the loop starts. */
struct srv_opts {
	const char		*socket_path;	/* the main socket (resolved) */
	const char		*admin_socket_path; /* NULL: none of our own */
	const char		*models_dir;
	const char		*config_path;	/* re-read on SIGHUP; NULL */
	bool			 config_optional; /* a missing file means the
						 * defaults (the default path) */
	struct config_overrides	 ov;		/* the command line's values */
	bool			 is_root;
};

struct srv {
	struct event_base	*base;
	struct config		*cfg;		/* settings (owned; a reload
						 * swaps in a new one) */
	char			*config_path;	/* NULL: none */
	bool			 config_optional;
	struct config_overrides	 ov;		/* kept across reloads (strings
						 * point into argv) */
	struct proto_limits	 limits;	/* announced in hello */
	char			 version[SRV_VERSION_MAX]; /* "hearthd 0.1.0" */
	const char		*hugepages;	/* "thp" or "none" for ps */
	bool			 is_root;
	struct srv_listener	 lis[2];	/* SRV_MAIN, SRV_ADMIN */
	bool			 have_admin;	/* an admin socket was opened */
	struct event		*ev_accept_retry; /* accepting paused (EMFILE) */
	struct event		*ev_sigint;
	struct event		*ev_sigterm;
	struct event		*ev_sighup;
	struct event		*ev_wake;	/* posts are queued */
	struct event		*ev_kick;	/* something started or ended:
						 * release held requests, drain,
						 * status, readiness */
	struct event		*ev_drain;	/* the drain deadline, then the
						 * flush timeout */
	struct svc		*svc;		/* systemd notifications */
	struct acc_users	 users;		/* per uid */
	TAILQ_HEAD(, conn)	 conns;		/* open connections */
	uint32_t		 n_conns;
	uint64_t		 next_conn_id;	/* never reused, from 1 */
	struct conn		**conn_hash;	/* [conn_hash_size] chains */
	size_t			 conn_hash_size; /* power of two */
	struct registry		*reg;
	pthread_mutex_t		 post_lock;	/* protects posts */
	STAILQ_HEAD(, srv_post)	 posts;		/* from worker threads */
	double			 start;		/* monotonic seconds */
	uint64_t		 requests;	/* requests ended since start */
	bool			 reload_failed;	/* the last reload was refused */
	bool			 draining;	/* SIGTERM: no new requests */
	bool			 flushing;	/* drained: closing connections */
	bool			 stopping;	/* shutting down */
};

/* Monotonic seconds. */
double	srv_now(void);

/*
 * Create the event base, take the sockets systemd passed or bind our
 * own, open the models directory. s owns cfg from here on (also on
 * failure). 0 or a negative errno with a message in err.
 */
int	srv_init(struct srv *s, struct config *cfg, const struct srv_opts *o,
	    char *err, size_t errsize);
/* Run the loop until drained (SIGINT/SIGTERM) or srv_stop. */
int	srv_run(struct srv *s);
/* Stop accepting, cancel and close everything, leave the loop. */
void	srv_stop(struct srv *s);
/* Read the configuration again (SIGHUP): 0, or -errno keeping the old. */
int	srv_reload(struct srv *s);
/* Requests or models changed: run the kick (from a fresh callback). */
void	srv_changed(struct srv *s);
/* Free what srv_init made; after srv_run returned. */
void	srv_free(struct srv *s);

/* A scheduler's post callback (sched_post_fn); arg is the srv. */
void	srv_post_frame(void *arg, uint64_t conn_id, uint64_t id,
	    const uint8_t *frame, size_t len, bool final);
/* From a loader thread. */
void	srv_post_progress(struct srv *s, struct reg_model *rm, uint64_t done,
	    uint64_t total);
void	srv_post_loaded(struct srv *s, struct reg_model *rm, struct model *m,
	    struct sched *sc, int rc, const char *msg);

struct conn *srv_conn_find(struct srv *s, uint64_t id);
void	srv_conn_add(struct srv *s, struct conn *c);
void	srv_conn_remove(struct srv *s, struct conn *c);

#endif /* HEARTH_SERVER_H */
