/*
 * access.c - [access] rules and per-user state (see access.h).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"

/* Built-in rules: every model, no limits. */
static char acc_name_open[] = "built-in";
static char acc_name_admin[] = "admin socket";

static const struct config_access acc_rule_open_admin = {
	.name = acc_name_open,
	.all_models = true,
	.admin = true,
	.max_connections = CONFIG_UNLIMITED,
	.max_requests = CONFIG_UNLIMITED,
	.max_queued = CONFIG_UNLIMITED,
	.max_prompt_tokens = CONFIG_UNLIMITED,
	.max_tokens = CONFIG_UNLIMITED,
	.tokens_per_minute = CONFIG_UNLIMITED,
};
static const struct config_access acc_rule_open = {
	.name = acc_name_open,
	.all_models = true,
	.admin = false,
	.max_connections = CONFIG_UNLIMITED,
	.max_requests = CONFIG_UNLIMITED,
	.max_queued = CONFIG_UNLIMITED,
	.max_prompt_tokens = CONFIG_UNLIMITED,
	.max_tokens = CONFIG_UNLIMITED,
	.tokens_per_minute = CONFIG_UNLIMITED,
};
static const struct config_access acc_rule_admin_socket = {
	.name = acc_name_admin,
	.all_models = true,
	.admin = true,
	.max_connections = CONFIG_UNLIMITED,
	.max_requests = CONFIG_UNLIMITED,
	.max_queued = CONFIG_UNLIMITED,
	.max_prompt_tokens = CONFIG_UNLIMITED,
	.max_tokens = CONFIG_UNLIMITED,
	.tokens_per_minute = CONFIG_UNLIMITED,
};

/*
 * The groups of uid (getgrouplist: its primary and supplementary groups,
 * the first ACC_MAX_GROUPS); none when the uid has no passwd entry.
 */
static void
acc_user_groups(struct acc_user *u)
{
	struct passwd *pw;
	gid_t *g, *ng;
	int n = 32, want;

	free(u->groups);
	u->groups = NULL;
	u->n_groups = 0;
	if ((pw = getpwuid(u->uid)) == NULL)
		return;
	if ((g = calloc((size_t)n, sizeof(*g))) == NULL)
		return;
	if (getgrouplist(pw->pw_name, pw->pw_gid, g, &n) < 0) {
		/* n is the count needed now */
		want = n > ACC_MAX_GROUPS ? ACC_MAX_GROUPS : n;
		if (want < 32 || (ng = realloc(g, (size_t)want *
		    sizeof(*g))) == NULL) {
			free(g);
			return;
		}
		g = ng;
		n = want;
		/* over ACC_MAX_GROUPS: -1, with the first n filled in */
		if (getgrouplist(pw->pw_name, pw->pw_gid, g, &n) < 0)
			n = want;
	}
	u->groups = g;
	u->n_groups = n > 0 ? (size_t)n : 0;
}

struct acc_user *
acc_user_get(struct acc_users *users, uid_t uid)
{
	struct acc_user *u;

	TAILQ_FOREACH(u, users, entry)
		if (u->uid == uid)
			return u;
	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->uid = uid;
	TAILQ_INIT(&u->held);
	acc_user_groups(u);
	TAILQ_INSERT_TAIL(users, u, entry);
	return u;
}

/* Refill the bucket to now at tpm per minute. */
static void
acc_bucket_fill(struct acc_user *u, uint32_t tpm, double now)
{
	double dt;

	if (u->tpm == 0) {
		u->tokens = tpm;
		u->stamp = now;
		u->tpm = tpm;
		return;
	}
	dt = now - u->stamp;
	if (dt > 0)
		u->tokens += dt * (double)tpm / 60.0;
	u->stamp = now;
	u->tpm = tpm;
	if (u->tokens > (double)tpm)
		u->tokens = tpm;
	if (u->tokens < -(double)tpm)
		u->tokens = -(double)tpm;
}

bool
acc_bucket_ok(struct acc_user *u, uint32_t tpm, double now, double *wait_s)
{
	if (tpm == CONFIG_UNLIMITED)
		return true;
	acc_bucket_fill(u, tpm, now);
	if (u->tokens > 0)
		return true;
	/* until the level is above zero again */
	*wait_s = (-u->tokens + 1.0) * 60.0 / (double)tpm;
	return false;
}

void
acc_bucket_charge(struct acc_user *u, uint32_t tpm, double now, uint64_t n)
{
	if (tpm == CONFIG_UNLIMITED)
		return;
	acc_bucket_fill(u, tpm, now);
	u->tokens -= (double)n;
	if (u->tokens < -(double)tpm)
		u->tokens = -(double)tpm;
}

static void
acc_user_free(struct acc_user *u)
{
	free(u->groups);
	free(u);
}

void
acc_users_gc(struct acc_users *users, double now)
{
	struct acc_user *u, *next;

	for (u = TAILQ_FIRST(users); u != NULL; u = next) {
		next = TAILQ_NEXT(u, entry);
		if (u->n_conns > 0 || u->n_active > 0 || u->n_held > 0)
			continue;
		if (u->tpm != 0 && u->tokens + (now - u->stamp) *
		    (double)u->tpm / 60.0 < (double)u->tpm)
			continue;	/* still owes: remember it */
		TAILQ_REMOVE(users, u, entry);
		acc_user_free(u);
	}
}

void
acc_users_free(struct acc_users *users)
{
	struct acc_user *u;

	while ((u = TAILQ_FIRST(users)) != NULL) {
		TAILQ_REMOVE(users, u, entry);
		acc_user_free(u);
	}
}

void
acc_users_regroup(struct acc_users *users)
{
	struct acc_user *u;

	TAILQ_FOREACH(u, users, entry)
		acc_user_groups(u);
}

/* Whether rule a selects user u (peer gid). */
static bool
acc_selects(const struct config_access *a, const struct acc_user *u,
    gid_t gid)
{
	size_t i, k;

	if (a->n_users == 0 && a->n_groups == 0)
		return true;
	for (i = 0; i < a->n_users; i++)
		if (a->users[i] == u->uid)
			return true;
	for (i = 0; i < a->n_groups; i++) {
		if (a->groups[i] == gid)
			return true;
		for (k = 0; k < u->n_groups; k++)
			if (a->groups[i] == u->groups[k])
				return true;
	}
	return false;
}

const struct config_access *
acc_match(const struct config *c, struct acc_user *u, gid_t gid,
    bool admin_socket, bool have_admin_socket)
{
	const struct config_access *dflt = NULL;
	size_t i;

	if (admin_socket)
		return &acc_rule_admin_socket;
	if (c->n_access == 0)
		return have_admin_socket ? &acc_rule_open :
		    &acc_rule_open_admin;
	for (i = 0; i < c->n_access; i++) {
		if (strcmp(c->access[i].name, CONFIG_DEFAULT_ACCESS) == 0) {
			dflt = &c->access[i];
			continue;
		}
		if (acc_selects(&c->access[i], u, gid))
			return &c->access[i];
	}
	return dflt;
}

const char *
acc_rule_label(const struct config_access *r)
{
	static char buf[CONFIG_NAME_MAX + 16];

	if (r == &acc_rule_admin_socket)
		return "the admin socket";
	if (r == &acc_rule_open || r == &acc_rule_open_admin)
		return "the built-in rules";
	snprintf(buf, sizeof(buf), "[access %s]", r->name);
	return buf;
}

bool
acc_model_allowed(const struct config_access *r, const char *name)
{
	size_t i;

	if (r->all_models)
		return true;
	for (i = 0; i < r->n_models; i++)
		if (strcmp(r->models[i], name) == 0)
			return true;
	return false;
}
