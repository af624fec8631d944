/*
 * access.h - who may do what: the [access] rule that applies to a
 * connection, model allow-lists, and what hearthd keeps per user (uid):
 * its connections, its model requests running and queued, its
 * tokens-per-minute bucket, its groups.
 *
 * The rule of a connection is looked up again for every request, in the
 * configuration of the moment, so a reload applies to new requests:
 *   - a connection on the admin socket: everything, no limits;
 *   - else the first [access] section in file order whose user = names
 *     the uid or whose group = names one of its groups (the peer's gid,
 *     the uid's supplementary groups), or that has neither;
 *   - else [access default] (wherever it stands);
 *   - else, when the file has no [access] section at all, built-in rules:
 *     every model, no limits, and load/unload only when there is no
 *     admin socket (a personal daemon);
 *   - else none: model requests are denied.
 * All of it runs on the loop thread.
 */
#ifndef HEARTH_ACCESS_H
#define HEARTH_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "config.h"

#define ACC_MAX_GROUPS	1024	/* supplementary groups kept per uid */

struct dreq;

/* What hearthd keeps about one uid while it is connected or owes tokens. */
struct acc_user {
	uid_t			 uid;
	gid_t			*groups;	/* [n_groups] the uid's groups
						 * (getgrouplist), at most
						 * ACC_MAX_GROUPS */
	size_t			 n_groups;
	uint32_t		 n_conns;	/* open connections */
	uint32_t		 n_active;	/* model requests started (waiting
						 * for their model or in its
						 * scheduler) */
	uint32_t		 n_held;	/* requests in held */
	TAILQ_HEAD(, dreq)	 held;		/* waiting for one of n_active to
						 * end (max_requests), oldest
						 * first */
	double			 tokens;	/* the bucket's level; below 0 is
						 * debt (at most one minute's) */
	double			 stamp;		/* monotonic seconds of the last
						 * refill */
	uint32_t		 tpm;		/* rate of the last refill; 0: the
						 * bucket is unused */
	TAILQ_ENTRY(acc_user)	 entry;		/* in acc_users */
};

TAILQ_HEAD(acc_users, acc_user);

/* The user entry of uid, made (with its groups) when missing; NULL: no
 * memory. */
struct acc_user *acc_user_get(struct acc_users *users, uid_t uid);
/* Free the entries nobody uses whose bucket is full again. */
void	acc_users_gc(struct acc_users *users, double now);
/* Free every entry (their held lists must be empty). */
void	acc_users_free(struct acc_users *users);
/* Forget the groups of every entry (a reload: looked up again). */
void	acc_users_regroup(struct acc_users *users);

/*
 * The rule for a connection of user u with peer gid on the admin socket
 * or not; have_admin_socket says whether the daemon has one. NULL when
 * no rule applies (the model requests are then denied).
 */
const struct config_access *acc_match(const struct config *c,
	    struct acc_user *u, gid_t gid, bool admin_socket,
	    bool have_admin_socket);
/* "[access guests]", "the admin socket" or "the built-in rules". */
const char *acc_rule_label(const struct config_access *r);
/* Whether r lets its users use model name. */
bool	acc_model_allowed(const struct config_access *r, const char *name);

/*
 * Token bucket of tpm tokens per minute (CONFIG_UNLIMITED: always true).
 * acc_bucket_ok: whether a request may start now; *wait_s the seconds
 * until it may when not. acc_bucket_charge: n tokens were used.
 */
bool	acc_bucket_ok(struct acc_user *u, uint32_t tpm, double now,
	    double *wait_s);
void	acc_bucket_charge(struct acc_user *u, uint32_t tpm, double now,
	    uint64_t n);

#endif /* HEARTH_ACCESS_H */
