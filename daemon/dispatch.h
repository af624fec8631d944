/*
 * dispatch.h - one handler per request type: decode and check a frame,
 * answer what the loop can answer itself (hello, ps, stats, ping,
 * cancel, unload; list, show and render once the registry has the
 * headers they need), and hand model work to the registry
 * (load) or the model's scheduler (generate, chat, eval, embed,
 * tokenize, detokenize), rendering chat templates first.
 */
#ifndef HEARTH_DISPATCH_H
#define HEARTH_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "proto.h"

/* One frame body from c. */
void	dispatch_frame(struct conn *c, const uint8_t *body, size_t len);
/*
 * d waited for its model, which is resident now: answer it (load) or
 * submit it to the scheduler. d is unlinked from the model's waiters.
 */
void	dispatch_resume(struct dreq *d);
/*
 * d was held (its user over max_requests) and may start now: checked
 * again against the rules of the moment, then started.
 */
void	dispatch_release(struct dreq *d);
/* The final frame of d (len bytes, header included): charge the tokens
 * it reports to the user's tokens_per_minute bucket; log a refusal. */
void	dispatch_account(struct dreq *d, const uint8_t *frame, size_t len);
struct reg_meta;
/*
 * The headers d (list, show or render) waited for are read (m): answer
 * it and end it.
 */
void	dispatch_meta_done(struct dreq *d, struct reg_meta *m);
/* End d with an error (a failed load, shutdown...). */
void	dispatch_fail(struct dreq *d, enum proto_code code, const char *fmt,
	    ...) __attribute__((format(printf, 3, 4)));

#endif /* HEARTH_DISPATCH_H */
