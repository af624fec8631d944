/*
 * tclient.h - a tiny blocking client of hearthd for the test suites
 * (check_daemon, check_service): connect, send requests packed with
 * proto/, receive and check responses, collect streams. The tc_expect_*
 * and tc_open* helpers use ck_assert (test process only); the others
 * return errors and may run in threads or forked children.
 */
#ifndef HEARTH_TCLIENT_H
#define HEARTH_TCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#endif /* HEARTH_TCLIENT_H */
