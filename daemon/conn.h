/*
 * conn.h - one client connection of hearthd, owned by the loop thread.
 *
 * Frames are read with a proto_reader and handed to dispatch; replies
 * and events are appended to an output buffer written as the socket
 * accepts them. When more than output_buffer bytes are queued the
 * connection is paused: its streams are left out of batches
 * (sched_pause_conn), no more requests are read, and a timer starts; it
 * resumes when the buffer drains to half, and is closed with its
 * requests cancelled if the timer fires first. A framing error sends an
 * id-0 error and closes the connection once that is written. On end of
 * file or an error everything of the connection is dropped at once.
 */
#ifndef HEARTH_CONN_H
#define HEARTH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "proto.h"

struct acc_user;
struct event;
struct listen_peer;
struct srv;
struct reg_model;

/* Where a request stands with its model. */
enum dreq_state {
	DREQ_NONE = 0,		/* not linked to a model */
	DREQ_WAITING,		/* in model->waiters: loading or unloading */
	DREQ_UNLOADING,		/* an unload in model->unloaders */
	DREQ_RUNNING,		/* submitted to the model's scheduler */
	DREQ_HELD,		/* in its user's held list: over the user's
				 * max_requests, waiting for one to end */
	DREQ_META,		/* list, show, render: waiting for GGUF
				 * headers (the d of a reg_meta) */
};

/* A request that outlives its frame: it waits for a model or runs. */
struct dreq {
	struct conn		*conn;		/* owner */
	uint64_t		 id;		/* client's id */
	enum proto_msg		 type;
	enum dreq_state		 state;
	struct reg_model	*model;		/* WAITING, UNLOADING, RUNNING:
						 * its model; NONE: its model
						 * between reg_use and running,
						 * or NULL; HELD, META: NULL */
	struct proto_request	 req;		/* WAITING, HELD: the decoded
						 * request (owned); else empty */
	bool			 counted;	/* in its user's n_active */
	double			 start;		/* monotonic seconds */
	TAILQ_ENTRY(dreq)	 entry;		/* in conn->reqs */
	TAILQ_ENTRY(dreq)	 model_entry;	/* in a model's list, or HELD:
						 * in the user's held list */
};

struct conn {
	struct srv		*srv;
	uint64_t		 id;		/* never reused */
	int			 fd;
	uid_t			 uid;		/* SO_PEERCRED */
	gid_t			 gid;
	pid_t			 pid;
	struct acc_user		*user;		/* of uid (counts this one in
						 * n_conns) */
	bool			 admin_socket;	/* came in on the admin socket */
	struct event		*ev_read;
	struct event		*ev_write;
	struct event		*ev_timer;	/* pause or close timeout */
	struct proto_reader	*rd;
	struct proto_buf	 out;		/* frames not yet written */
	size_t			 out_off;	/* bytes of out already written */
	bool			 hello;		/* hello done */
	bool			 paused;	/* output over the cap */
	bool			 closing;	/* close once out is written */
	bool			 in_input;	/* inside conn_input() */
	char			 client[64];	/* hello's client name, for logs */
	TAILQ_HEAD(, dreq)	 reqs;		/* requests in flight */
	uint32_t		 n_reqs;
	TAILQ_ENTRY(conn)	 entry;		/* in srv->conns */
	struct conn		*hash_next;	/* srv->conn_hash chain */
};

/*
 * Take over an accepted fd of peer, user u (its entry for peer->uid),
 * from the admin socket or not. 0 or a negative errno (fd then closed).
 */
int	conn_new(struct srv *s, int fd, const struct listen_peer *peer,
	    struct acc_user *u, bool admin_socket, struct conn **out);
/* Drop everything of c at once: its requests, scheduler state, fd. */
void	conn_free(struct conn *c);

/* Queued bytes not yet written. */
size_t	conn_pending(const struct conn *c);
/* Append one complete frame (header included). */
void	conn_send(struct conn *c, const void *frame, size_t len);
/* Pack and send a response; an internal error instead if it cannot be
 * packed. */
void	conn_reply(struct conn *c, const struct proto_response *r);
void	conn_error(struct conn *c, uint64_t id, enum proto_code code,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A framing error: id-0 error, cancel everything, close once written. */
void	conn_fatal(struct conn *c, const struct proto_err *e);
/*
 * Shutdown: end every request of c with an error (code, msg), the
 * schedulers told to forget them first.
 */
void	conn_abort_requests(struct conn *c, enum proto_code code,
	    const char *msg);
/* Shutdown: read no more, close once the output is written (or after
 * a short timeout); at once when nothing is pending. */
void	conn_close_soon(struct conn *c);

/* Requests in flight. */
struct dreq *conn_req_find(struct conn *c, uint64_t id);
/* A new request record, linked into c (id must be free). */
struct dreq *conn_req_new(struct conn *c, uint64_t id, enum proto_msg type);
/* A request ended (its last frame is sent, or it is dropped). */
void	conn_req_end(struct dreq *d);

#endif /* HEARTH_CONN_H */
