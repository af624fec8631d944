/*
 * dispatch.c - the handler of every request type.
 *
 * Requests are decoded and fully checked by proto_unpack_request; what
 * is left here is the meaning: hello first, ids unique among the
 * connection's requests in flight, at most max_requests of them, model
 * names that exist, chat templates that render, and the [access] rule
 * of the connection (models allowed, admin, the user's limits). Model
 * work over the user's max_requests waits in the user's held list (up
 * to max_queued); then it waits in the registry until its model is
 * resident and goes to the model's scheduler, which sends the rest of
 * the answer itself. list, show and render wait, when they must, for
 * the registry's header threads to read the GGUF headers they need.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "access.h"
#include "conn.h"
#include "dispatch.h"
#include "log.h"
#include "meta.h"
#include "registry.h"
#include "sched.h"
#include "server.h"
#include "template.h"

/* The model a request names; NULL for requests without one. */
static const char *
dispatch_model_name(const struct proto_request *r)
{
	switch (r->type) {
	case PROTO_MSG_SHOW:		return r->u.show.model;
	case PROTO_MSG_LOAD:		return r->u.load.model;
	case PROTO_MSG_UNLOAD:		return r->u.unload.model;
	case PROTO_MSG_GENERATE:	return r->u.generate.model;
	case PROTO_MSG_CHAT:
	case PROTO_MSG_RENDER:		return r->u.chat.model;
	case PROTO_MSG_EVAL:		return r->u.eval.model;
	case PROTO_MSG_EMBED:		return r->u.embed.model;
	case PROTO_MSG_TOKENIZE:	return r->u.tokenize.model;
	case PROTO_MSG_DETOKENIZE:	return r->u.detokenize.model;
	default:			return NULL;
	}
}

static const char *
dispatch_type_name(enum proto_msg t)
{
	const char *s = proto_msg_name(t);

	return s != NULL ? s : "?";
}

/* An error for a proto_err from the registry. */
static void
dispatch_error_e(struct conn *c, uint64_t id, const struct proto_err *e)
{
	conn_error(c, id, e->code != PROTO_E_NONE ? e->code :
	    PROTO_E_INTERNAL, "%s", e->msg[0] ? e->msg : "internal error");
}

void
dispatch_fail(struct dreq *d, enum proto_code code, const char *fmt, ...)
{
	char msg[PROTO_MAX_MESSAGE + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conn_error(d->conn, d->id, code, "%s", msg);
	conn_req_end(d);
}

/* The [access] rule of c now (NULL: none applies). */
static const struct config_access *
dispatch_rule(struct conn *c)
{
	return acc_match(c->srv->cfg, c->user, c->gid, c->admin_socket,
	    c->srv->have_admin);
}

/* ---- chat templates ---- */

/* A rendered conversation and how to read the answer. */
struct dispatch_chat {
	struct tmpl	 t;
	struct tmpl_opts o;
	char		 date[32];	/* today, "28 Nov 2026" */
	char		*prompt;	/* malloc'd, prompt_len bytes */
	size_t		 prompt_len;
};

/*
 * Choose the template (the request's, else the model's, else the
 * configured fallback) and render the messages. mr: the model's chat
 * template and token texts (out->o points to them). 0, or -errno with e.
 */
static int
dispatch_render(struct srv *s, const char *model, const struct meta_render *mr,
    const struct proto_chat *ch, struct dispatch_chat *out,
    struct proto_err *e)
{
	const struct config_model *cm;
	struct tmpl_msg *msgs;
	struct eng_err ee = { "" };
	struct tm tm;
	time_t now;
	uint32_t i;
	int r;

	memset(out, 0, sizeof(*out));
	cm = config_model_find(s->cfg, model);
	if (ch->template != NULL) {
		if (tmpl_from_name(ch->template, &out->t) < 0)
			return proto_err_set(e, PROTO_E_BAD_REQUEST, -EINVAL,
			    "unknown template '%s'", ch->template);
	} else if (cm != NULL && cm->template_name != NULL) {
		if (tmpl_from_name(cm->template_name, &out->t) < 0)
			return proto_err_set(e, PROTO_E_INTERNAL, -EINVAL,
			    "[model %s] template '%s' is unknown", model,
			    cm->template_name);
	} else if (mr->tmpl != NULL &&
	    tmpl_detect(mr->tmpl, mr->tmpl_len, &out->t) == 0) {
		/* the model's own */
	} else if (s->cfg->template_name != NULL) {
		if (tmpl_from_name(s->cfg->template_name, &out->t) < 0)
			return proto_err_set(e, PROTO_E_INTERNAL, -EINVAL,
			    "configured template '%s' is unknown",
			    s->cfg->template_name);
	} else {
		return proto_err_set(e, PROTO_E_BAD_REQUEST, -ENOENT,
		    "model %s has %s; name one with the "
		    "request's 'template' (e.g. \"chatml\") or the "
		    "configuration's", model, mr->tmpl != NULL ?
		    "a chat template hearth does not recognise, and no "
		    "fallback is configured" :
		    "no chat template");
	}
	tmpl_opts_default(&out->o);
	out->o.bos = mr->bos;
	out->o.eos = mr->eos;
	out->o.add_generation_prompt = true;
	out->o.enable_thinking = ch->thinking != PROTO_THINK_OFF;
	now = time(NULL);
	if (localtime_r(&now, &tm) != NULL &&
	    strftime(out->date, sizeof(out->date), "%d %b %Y", &tm) > 0)
		out->o.date = out->date;

	if ((msgs = calloc(ch->n_messages, sizeof(*msgs))) == NULL)
		return proto_err_set(e, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	for (i = 0; i < ch->n_messages; i++) {
		msgs[i].role = ch->messages[i].role;
		msgs[i].role_len = strlen(ch->messages[i].role);
		msgs[i].content = ch->messages[i].content;
		msgs[i].content_len = ch->messages[i].content_len;
	}
	r = tmpl_render(&out->t, &out->o, msgs, ch->n_messages, &out->prompt,
	    &out->prompt_len, &ee);
	free(msgs);
	if (r == -E2BIG)
		return proto_err_set(e, PROTO_E_TOO_LARGE, r, "template %s: %s",
		    tmpl_name(&out->t), ee.msg);
	if (r == -ENOMEM)
		return proto_err_set(e, PROTO_E_INTERNAL, r, "out of memory");
	if (r < 0)
		return proto_err_set(e, PROTO_E_BAD_REQUEST, r,
		    "template %s: %s", tmpl_name(&out->t), ee.msg[0] ?
		    ee.msg : "cannot render the conversation");
	return 0;
}

/*
 * A chat request's prompt for the scheduler: the rendering, with the
 * BOS text in front when the model adds one and the template does not
 * write it (the scheduler parses special tokens and adds none).
 */
static int
dispatch_chat_prompt(struct srv *s, struct reg_model *rm, struct sched_req *sr,
    struct proto_err *e)
{
	struct dispatch_chat dc;
	struct meta_render mr;
	const char *bos;
	size_t blen = 0;
	char *p;
	int r;

	meta_render_view(rm->m->gguf, &mr);
	if ((r = dispatch_render(s, rm->name, &mr, &sr->req.u.chat, &dc,
	    e)) < 0)
		return r;
	bos = dc.o.bos;
	if (bos != NULL && !tmpl_emits_bos(&dc.t) && tok_add_bos(rm->m->tok))
		blen = strlen(bos);
	if (blen > 0) {
		if ((p = malloc(blen + dc.prompt_len + 1)) == NULL) {
			free(dc.prompt);
			return proto_err_set(e, PROTO_E_INTERNAL, -ENOMEM,
			    "out of memory");
		}
		memcpy(p, bos, blen);
		memcpy(p + blen, dc.prompt, dc.prompt_len + 1);
		free(dc.prompt);
		dc.prompt = p;
		dc.prompt_len += blen;
	}
	sr->prompt = dc.prompt;
	sr->prompt_len = dc.prompt_len;
	if (tmpl_has_thinking(&dc.t)) {
		sr->think_open = tmpl_think_open(&dc.t);
		sr->think_close = tmpl_think_close(&dc.t);
		sr->think_first = tmpl_starts_in_thinking(&dc.t, &dc.o);
	}
	return 0;
}

/* ---- sampling ---- */

static uint64_t
dispatch_random_seed(void)
{
	static uint64_t counter;
	struct timespec ts;
	uint64_t seed;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == sizeof(seed))
		return seed;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
	    (++counter * 0x9e3779b97f4a7c15ull);
}

/* Server defaults, then whatever the request set. */
static void
dispatch_sampling(const struct proto_sampling *q, struct smp_params *p)
{
	smp_params_default(p);
	if (q->set & PROTO_S_TEMPERATURE)
		p->temperature = q->temperature;
	if (q->set & PROTO_S_TOP_K)
		p->top_k = q->top_k;
	if (q->set & PROTO_S_TOP_P)
		p->top_p = q->top_p;
	if (q->set & PROTO_S_MIN_P)
		p->min_p = q->min_p;
	if (q->set & PROTO_S_REPEAT_PENALTY)
		p->repeat_penalty = q->repeat_penalty;
	if (q->set & PROTO_S_PRESENCE_PENALTY)
		p->presence_penalty = q->presence_penalty;
	if (q->set & PROTO_S_FREQUENCY_PENALTY)
		p->frequency_penalty = q->frequency_penalty;
	if (q->set & PROTO_S_PENALTY_LAST_N)
		p->penalty_last_n = q->penalty_last_n;
	p->seed = (q->set & PROTO_S_SEED) ? q->seed : dispatch_random_seed();
}

/* ---- model work ---- */

/* Hand d to its resident model's scheduler. */
static void
dispatch_submit(struct dreq *d)
{
	const struct config_access *rule;
	struct reg_model *rm = d->model;
	struct conn *c = d->conn;
	const struct proto_gen_opts *o = NULL;
	const struct proto_input *in = NULL;
	struct sched_req *sr;
	struct proto_err e;
	int r;

	memset(&e, 0, sizeof(e));
	/* d points at rm (DREQ_NONE) until it is running */
	if ((sr = calloc(1, sizeof(*sr))) == NULL) {
		dispatch_fail(d, PROTO_E_INTERNAL, "out of memory");
		return;
	}
	sr->conn_id = c->id;
	sr->uid = c->uid;
	sr->req = d->req;
	memset(&d->req, 0, sizeof(d->req));
	sr->max_tokens = -1;
	smp_params_default(&sr->sampling);
	switch (sr->req.type) {
	case PROTO_MSG_GENERATE:
		o = &sr->req.u.generate.opts;
		in = &sr->req.u.generate.input;
		break;
	case PROTO_MSG_CHAT:
		o = &sr->req.u.chat.opts;
		if (dispatch_chat_prompt(c->srv, rm, sr, &e) < 0)
			goto fail;
		break;
	case PROTO_MSG_EVAL:
		in = &sr->req.u.eval.input;
		break;
	case PROTO_MSG_EMBED:
		in = &sr->req.u.embed.input;
		break;
	default:
		break;
	}
	if (o != NULL) {
		dispatch_sampling(&o->sampling, &sr->sampling);
		sr->max_tokens = o->max_tokens;
	}
	/* a text prompt is measured once the scheduler tokenized it */
	if ((rule = dispatch_rule(c)) != NULL &&
	    rule->max_prompt_tokens != CONFIG_UNLIMITED) {
		sr->max_prompt_tokens = rule->max_prompt_tokens;
		snprintf(sr->limit_rule, sizeof(sr->limit_rule),
		    "denied by %s", acc_rule_label(rule));
	}
	/* a prompt of ids is measured without any work */
	if (in != NULL && in->ids != NULL && in->n_ids > rm->sp.n_ctx) {
		proto_err_set(&e, PROTO_E_TOO_LARGE, -EMSGSIZE,
		    "%u tokens do not fit the context of %u", in->n_ids,
		    rm->sp.n_ctx);
		goto fail;
	}
	if (sr->req.type == PROTO_MSG_DETOKENIZE &&
	    sr->req.u.detokenize.n_ids > 0) {
		uint32_t i, nv = rm->m->hp.n_vocab;

		for (i = 0; i < sr->req.u.detokenize.n_ids; i++)
			if ((uint32_t)sr->req.u.detokenize.ids[i] >= nv) {
				proto_err_set(&e, PROTO_E_BAD_REQUEST, -EINVAL,
				    "ids[%u]: %d is not below the vocabulary "
				    "size %u", i, sr->req.u.detokenize.ids[i],
				    nv);
				goto fail;
			}
	}
	r = sched_submit(rm->s, sr);
	if (r == -EBUSY) {
		proto_err_set(&e, PROTO_E_BUSY, r, "model %s: %u requests "
		    "are queued; try again later", rm->name, rm->sp.max_queue);
		goto fail;
	}
	if (r < 0) {
		proto_err_set(&e, r == -ENOMEM ? PROTO_E_INTERNAL :
		    PROTO_E_BAD_REQUEST, r, "model %s cannot run %s: %s",
		    rm->name, dispatch_type_name(d->type), strerror(-r));
		goto fail;
	}
	reg_running(rm, d);
	/* a request that waited for its model joins the pause */
	if (c->paused)
		sched_pause_conn(rm->s, c->id, true);
	return;
fail:
	sched_req_free(sr);
	log_debug("conn %llu: %s %llu: %s", (unsigned long long)c->id,
	    dispatch_type_name(d->type), (unsigned long long)d->id, e.msg);
	dispatch_fail(d, e.code != PROTO_E_NONE ? e.code : PROTO_E_INTERNAL,
	    "%s", e.msg);
}

static void
dispatch_load_reply(struct dreq *d)
{
	struct reg_model *rm = d->model;
	struct proto_response resp;
	struct sched_stats st;

	sched_get_stats(rm->s, &st);
	proto_response_init(&resp, PROTO_MSG_REPLY, d->id);
	resp.request = PROTO_MSG_LOAD;
	resp.u.load.model = rm->name;
	resp.u.load.memory = reg_model_weights(rm) + st.kv_bytes +
	    st.scratch_bytes;
	resp.u.load.ms = rm->load_ms;
	conn_reply(d->conn, &resp);
}

void
dispatch_resume(struct dreq *d)
{
	if (d->type == PROTO_MSG_LOAD) {
		dispatch_load_reply(d);
		conn_req_end(d);
		return;
	}
	dispatch_submit(d);
}

/* ---- access ---- */

/* Send a refusal and log it with the peer's uid. */
static void __attribute__((format(printf, 4, 5)))
dispatch_refuse(struct conn *c, uint64_t id, enum proto_code code,
    const char *fmt, ...)
{
	char msg[PROTO_MAX_MESSAGE + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_notice("access: uid %u pid %d: %s", (unsigned)c->uid, (int)c->pid,
	    msg);
	conn_error(c, id, code, "%s", msg);
}

/* The generation options of a request, or NULL. */
static struct proto_gen_opts *
dispatch_gen_opts(struct proto_request *req)
{
	if (req->type == PROTO_MSG_GENERATE)
		return &req->u.generate.opts;
	if (req->type == PROTO_MSG_CHAT)
		return &req->u.chat.opts;
	return NULL;
}

/* The prompt or input of a request, or NULL. */
static const struct proto_input *
dispatch_input(const struct proto_request *req)
{
	switch (req->type) {
	case PROTO_MSG_GENERATE:	return &req->u.generate.input;
	case PROTO_MSG_EVAL:		return &req->u.eval.input;
	case PROTO_MSG_EMBED:		return &req->u.embed.input;
	default:			return NULL;
	}
}

/*
 * What rule says about a load, unload or model request: 0, or -1 with
 * the refusal sent. max_tokens and keep_alive are clamped to the rule.
 */
static int
dispatch_check_access(struct conn *c, struct proto_request *req,
    const struct config_access *rule)
{
	const struct config *cfg = c->srv->cfg;
	const char *name = dispatch_model_name(req), *type;
	const struct proto_input *in = dispatch_input(req);
	struct proto_gen_opts *o = dispatch_gen_opts(req);
	char who[CONFIG_NAME_MAX + 32];
	double wait = 0;

	type = dispatch_type_name(req->type);
	if (rule == NULL) {
		dispatch_refuse(c, req->id, PROTO_E_DENIED, "denied: no "
		    "[access] section matches uid %u", (unsigned)c->uid);
		return -1;
	}
	snprintf(who, sizeof(who), "%s", acc_rule_label(rule));
	if ((req->type == PROTO_MSG_LOAD || req->type == PROTO_MSG_UNLOAD) &&
	    !rule->admin) {
		dispatch_refuse(c, req->id, PROTO_E_DENIED, "denied by %s: %s "
		    "needs admin = yes or the admin socket", who, type);
		return -1;
	}
	if (name != NULL && !acc_model_allowed(rule, name)) {
		dispatch_refuse(c, req->id, PROTO_E_DENIED, "denied by %s: "
		    "model '%s' not allowed", who, name);
		return -1;
	}
	if (req->type == PROTO_MSG_LOAD || req->type == PROTO_MSG_UNLOAD)
		return 0;
	if (!acc_bucket_ok(c->user, rule->tokens_per_minute, srv_now(),
	    &wait)) {
		dispatch_refuse(c, req->id, PROTO_E_BUSY, "busy by %s: "
		    "tokens_per_minute %u used up; try again in %.0f s", who,
		    rule->tokens_per_minute, wait < 1 ? 1 : wait);
		return -1;
	}
	if (in != NULL && in->ids != NULL &&
	    rule->max_prompt_tokens != CONFIG_UNLIMITED &&
	    in->n_ids > rule->max_prompt_tokens) {
		dispatch_refuse(c, req->id, PROTO_E_DENIED, "denied by %s: the "
		    "prompt has %u tokens, over max_prompt_tokens %u", who,
		    in->n_ids, rule->max_prompt_tokens);
		return -1;
	}
	if (o != NULL && rule->max_tokens != CONFIG_UNLIMITED &&
	    (o->max_tokens < 0 || (uint32_t)o->max_tokens > rule->max_tokens))
		o->max_tokens = rule->max_tokens > INT32_MAX ? INT32_MAX :
		    (int32_t)rule->max_tokens;
	/* keeping a model resident longer than configured is for admins */
	if (o != NULL && o->has_keep_alive && !rule->admin &&
	    cfg->keep_alive >= 0 &&
	    (o->keep_alive < 0 || o->keep_alive > cfg->keep_alive))
		o->keep_alive = cfg->keep_alive;
	return 0;
}

/* Requests that go to a model: load and the scheduler's. */
static void
dispatch_start(struct dreq *d)
{
	struct conn *c = d->conn;
	struct srv *s = c->srv;
	const char *name = dispatch_model_name(&d->req);
	struct proto_request *req = &d->req;
	struct reg_model *rm;
	struct proto_err e;
	bool has_ka = false;
	int64_t ka = 0;
	enum numa_policy np;
	int numa = -1;		/* the configuration's */

	memset(&e, 0, sizeof(e));
	if (d->type != PROTO_MSG_LOAD && !d->counted) {
		d->counted = true;
		c->user->n_active++;
	}
	if (req->type == PROTO_MSG_LOAD) {
		has_ka = req->u.load.has_keep_alive;
		ka = req->u.load.keep_alive;
		/* load needs an admin rule (dispatch_check_access): so does
		 * numa */
		if (req->u.load.has_numa && numa_policy_parse(
		    proto_numa_name(req->u.load.numa), &np) == 0)
			numa = (int)np;
	} else if (req->type == PROTO_MSG_GENERATE) {
		has_ka = req->u.generate.opts.has_keep_alive;
		ka = req->u.generate.opts.keep_alive;
	} else if (req->type == PROTO_MSG_CHAT) {
		has_ka = req->u.chat.opts.has_keep_alive;
		ka = req->u.chat.opts.keep_alive;
	}
	if (reg_use_numa(s->reg, name, has_ka, ka, numa, &rm, &e) < 0) {
		log_debug("conn %llu: %s %llu: %s", (unsigned long long)c->id,
		    dispatch_type_name(req->type),
		    (unsigned long long)req->id, e.msg);
		dispatch_fail(d, e.code != PROTO_E_NONE ? e.code :
		    PROTO_E_INTERNAL, "%s", e.msg[0] ? e.msg :
		    "internal error");
		return;
	}
	/* load needs an admin rule (dispatch_check_access): so does pin */
	if (req->type == PROTO_MSG_LOAD && req->u.load.has_pin)
		reg_set_pin(rm, req->u.load.pin);
	if (rm->state == REG_RESIDENT) {
		d->model = rm;
		d->state = DREQ_NONE;
		dispatch_resume(d);
	} else
		reg_wait(rm, d);
}

static void
dispatch_model_work(struct conn *c, struct proto_request *req)
{
	struct srv *s = c->srv;
	const struct config_access *rule = dispatch_rule(c);
	struct acc_user *u = c->user;
	struct dreq *d;

	if (s->draining) {
		conn_error(c, req->id, PROTO_E_BUSY, "hearthd is shutting "
		    "down; try again later");
		goto refused;
	}
	if (dispatch_check_access(c, req, rule) < 0)
		goto refused;
	if ((d = conn_req_new(c, req->id, req->type)) == NULL) {
		conn_error(c, req->id, PROTO_E_INTERNAL, "out of memory");
		goto refused;
	}
	d->req = *req;
	memset(req, 0, sizeof(*req));
	if (d->type != PROTO_MSG_LOAD &&
	    rule->max_requests != CONFIG_UNLIMITED &&
	    u->n_active >= rule->max_requests) {
		if (rule->max_queued != CONFIG_UNLIMITED &&
		    u->n_held >= rule->max_queued) {
			dispatch_refuse(c, d->id, PROTO_E_BUSY, "busy by %s: "
			    "uid %u has %u requests running and %u waiting "
			    "(max_requests %u, max_queued %u)",
			    acc_rule_label(rule), (unsigned)c->uid,
			    u->n_active, u->n_held, rule->max_requests,
			    rule->max_queued);
			conn_req_end(d);
			return;
		}
		d->state = DREQ_HELD;
		TAILQ_INSERT_TAIL(&u->held, d, model_entry);
		u->n_held++;
		log_debug("conn %llu: %s %llu waits: uid %u has %u requests "
		    "running", (unsigned long long)c->id,
		    dispatch_type_name(d->type), (unsigned long long)d->id,
		    (unsigned)c->uid, u->n_active);
		srv_changed(s);
		return;
	}
	dispatch_start(d);
	return;
refused:
	proto_request_free(req);
	s->requests++;
}

void
dispatch_release(struct dreq *d)
{
	struct conn *c = d->conn;

	TAILQ_REMOVE(&c->user->held, d, model_entry);
	c->user->n_held--;
	d->state = DREQ_NONE;
	/* the rules may have been reloaded meanwhile */
	if (dispatch_check_access(c, &d->req, dispatch_rule(c)) < 0) {
		conn_req_end(d);
		return;
	}
	dispatch_start(d);
}

void
dispatch_account(struct dreq *d, const uint8_t *frame, size_t len)
{
	const struct config_access *rule = dispatch_rule(d->conn);
	struct proto_response r;
	struct proto_err e;
	uint64_t n = 0;

	if (rule == NULL || len <= PROTO_HDR_SIZE)
		return;
	switch (d->type) {
	case PROTO_MSG_GENERATE:
	case PROTO_MSG_CHAT:
		/* the scheduler refuses prompts over max_prompt_tokens */
		if (rule->tokens_per_minute == CONFIG_UNLIMITED &&
		    rule->max_prompt_tokens == CONFIG_UNLIMITED)
			return;
		break;
	case PROTO_MSG_EVAL:
	case PROTO_MSG_EMBED:
		if (rule->tokens_per_minute == CONFIG_UNLIMITED)
			return;
		break;
	default:
		return;
	}
	memset(&e, 0, sizeof(e));
	if (proto_unpack_response(frame + PROTO_HDR_SIZE,
	    len - PROTO_HDR_SIZE, &d->conn->srv->limits, &r, &e) < 0)
		return;
	if (r.type == PROTO_MSG_ERROR && r.u.error.code == PROTO_E_DENIED)
		log_notice("access: uid %u pid %d: %s",
		    (unsigned)d->conn->uid, (int)d->conn->pid,
		    r.u.error.message);
	if (r.type == PROTO_MSG_DONE)
		n = (uint64_t)r.u.done.prompt_tokens -
		    (r.u.done.cached_tokens <= r.u.done.prompt_tokens ?
		    r.u.done.cached_tokens : r.u.done.prompt_tokens) +
		    r.u.done.generated_tokens;
	else if (r.type == PROTO_MSG_REPLY && r.request == PROTO_MSG_EVAL)
		n = r.u.eval.n_tokens;
	else if (r.type == PROTO_MSG_REPLY && r.request == PROTO_MSG_EMBED)
		n = r.u.embed.tokens;
	proto_response_free(&r);
	acc_bucket_charge(d->conn->user, rule->tokens_per_minute, srv_now(),
	    n);
}

/* ---- answers from the loop ---- */

static void
dispatch_hello(struct conn *c, const struct proto_request *req)
{
	struct proto_response resp;
	struct proto_err e;

	memset(&e, 0, sizeof(e));
	if (c->hello) {
		conn_error(c, req->id, PROTO_E_BAD_REQUEST,
		    "hello was already sent on this connection");
		return;
	}
	if (proto_check_version(req->u.hello.version, &e) < 0) {
		log_debug("conn %llu: hello from %s: %s",
		    (unsigned long long)c->id, req->u.hello.client, e.msg);
		conn_error(c, req->id, PROTO_E_BAD_REQUEST, "%s", e.msg);
		return;
	}
	c->hello = true;
	meta_label(c->client, sizeof(c->client), req->u.hello.client,
	    strlen(req->u.hello.client));
	proto_response_init(&resp, PROTO_MSG_REPLY, req->id);
	resp.request = PROTO_MSG_HELLO;
	resp.u.hello.version = PROTO_VERSION;
	resp.u.hello.server = c->srv->version;
	resp.u.hello.limits = c->srv->limits;
	conn_reply(c, &resp);
	log_debug("conn %llu: hello from %s (uid %u pid %d)",
	    (unsigned long long)c->id, c->client, (unsigned)c->uid,
	    (int)c->pid);
}

/* A list shows the models the rule allows (none without a rule). */
static bool
dispatch_list_filter(const char *name, void *arg)
{
	const struct config_access *rule = arg;

	return rule != NULL && acc_model_allowed(rule, name);
}

/* Show and render name the model: the rule must allow it. */
static int
dispatch_check_model(struct conn *c, const struct proto_request *req,
    const char *name)
{
	const struct config_access *rule = dispatch_rule(c);

	if (rule == NULL) {
		dispatch_refuse(c, req->id, PROTO_E_DENIED, "denied: no "
		    "[access] section matches uid %u", (unsigned)c->uid);
		return -1;
	}
	if (!acc_model_allowed(rule, name)) {
		dispatch_refuse(c, req->id, PROTO_E_DENIED, "denied by %s: "
		    "model '%s' not allowed", acc_rule_label(rule), name);
		return -1;
	}
	return 0;
}

/* ps: built by the registry. */
static void
dispatch_ps(struct conn *c, const struct proto_request *req)
{
	struct proto_response resp;
	struct proto_err e;

	memset(&e, 0, sizeof(e));
	proto_response_init(&resp, PROTO_MSG_REPLY, req->id);
	resp.request = req->type;
	if (reg_ps(c->srv->reg, &resp, &e) < 0)
		dispatch_error_e(c, req->id, &e);
	else
		conn_reply(c, &resp);
	reg_reply_free(&resp);
}

/* Answer a list, show or render whose headers are at hand (m). */
static void
dispatch_meta_answer(struct conn *c, const struct proto_request *req,
    const struct reg_meta *m)
{
	struct proto_response resp;
	struct dispatch_chat dc;
	struct meta_render mr;
	struct proto_err e;
	int r;

	memset(&e, 0, sizeof(e));
	if (req->type == PROTO_MSG_RENDER) {
		if (reg_render_meta(c->srv->reg, m, &mr, &e) < 0 ||
		    dispatch_render(c->srv, req->u.chat.model, &mr,
		    &req->u.chat, &dc, &e) < 0) {
			dispatch_error_e(c, req->id, &e);
			return;
		}
		proto_response_init(&resp, PROTO_MSG_REPLY, req->id);
		resp.request = PROTO_MSG_RENDER;
		resp.u.render.prompt = dc.prompt;
		resp.u.render.prompt_len = dc.prompt_len;
		resp.u.render.template = tmpl_name(&dc.t);
		conn_reply(c, &resp);
		free(dc.prompt);
		return;
	}
	proto_response_init(&resp, PROTO_MSG_REPLY, req->id);
	resp.request = req->type;
	if (req->type == PROTO_MSG_LIST)
		r = reg_list_reply(c->srv->reg, m, &resp, &e);
	else
		r = reg_show_reply(c->srv->reg, m, &resp, &e);
	if (r < 0)
		dispatch_error_e(c, req->id, &e);
	else
		conn_reply(c, &resp);
	reg_reply_free(&resp);
}

/*
 * list, show, render: answered at once when the headers they need are
 * cached (or the model is resident), else once a header thread read
 * them; the request waits meanwhile, counted in the connection's
 * max_requests.
 */
static void
dispatch_meta(struct conn *c, struct proto_request *req)
{
	struct srv *s = c->srv;
	struct reg_meta *m = NULL;
	struct proto_err e;
	struct dreq *d;
	const char *name = NULL;

	if (req->type == PROTO_MSG_SHOW)
		name = req->u.show.model;
	else if (req->type == PROTO_MSG_RENDER)
		name = req->u.chat.model;
	if (name != NULL && dispatch_check_model(c, req, name) < 0)
		goto done;
	memset(&e, 0, sizeof(e));
	if (reg_meta_new(s->reg, req, dispatch_list_filter,
	    (void *)(uintptr_t)dispatch_rule(c), &m, &e) < 0) {
		dispatch_error_e(c, req->id, &e);
		goto done;
	}
	if (reg_meta_ready(m)) {
		dispatch_meta_answer(c, req, m);
		reg_meta_free(m);
		goto done;
	}
	if (c->n_reqs >= s->cfg->max_requests) {
		conn_error(c, req->id, PROTO_E_BUSY, "%u requests in flight "
		    "on this connection; wait for some to end", c->n_reqs);
		reg_meta_free(m);
		goto done;
	}
	if ((d = conn_req_new(c, req->id, req->type)) == NULL) {
		conn_error(c, req->id, PROTO_E_INTERNAL, "out of memory");
		reg_meta_free(m);
		goto done;
	}
	d->req = *req;
	memset(req, 0, sizeof(*req));
	if (reg_meta_wait(m, d, &e) < 0)	/* m freed */
		dispatch_fail(d, e.code, "%s", e.msg);
	return;		/* counted when it ends */
done:
	s->requests++;
	proto_request_free(req);
}

void
dispatch_meta_done(struct dreq *d, struct reg_meta *m)
{
	dispatch_meta_answer(d->conn, &d->req, m);
	conn_req_end(d);
}

static void
dispatch_unload(struct conn *c, struct proto_request *req)
{
	struct proto_response resp;
	struct proto_err e;
	struct dreq *d;
	int r;

	memset(&e, 0, sizeof(e));
	if (dispatch_check_access(c, req, dispatch_rule(c)) < 0) {
		c->srv->requests++;
		return;
	}
	if ((d = conn_req_new(c, req->id, req->type)) == NULL) {
		conn_error(c, req->id, PROTO_E_INTERNAL, "out of memory");
		return;
	}
	r = reg_unload(c->srv->reg, req->u.unload.model, d, &e);
	if (r < 0) {
		conn_error(c, req->id, e.code != PROTO_E_NONE ? e.code :
		    PROTO_E_INTERNAL, "%s", e.msg);
		conn_req_end(d);
		return;
	}
	if (r == 0)
		return;		/* answered when the model is gone */
	proto_response_init(&resp, PROTO_MSG_REPLY, req->id);
	resp.request = PROTO_MSG_UNLOAD;
	conn_reply(c, &resp);
	conn_req_end(d);
}

/* End a request that has not reached a scheduler, as cancelled. */
static void
dispatch_cancel_waiting(struct dreq *d)
{
	struct proto_response resp;

	reg_detach(d);
	proto_response_init(&resp, PROTO_MSG_DONE, d->id);
	resp.u.done.reason = PROTO_REASON_CANCELLED;
	conn_reply(d->conn, &resp);
	conn_req_end(d);
}

static void
dispatch_cancel(struct conn *c, const struct proto_request *req)
{
	struct proto_response resp;
	struct dreq *d;
	bool found = false;

	d = conn_req_find(c, req->u.cancel.target);
	if (d != NULL && d->state == DREQ_RUNNING)
		found = sched_cancel(d->model->s, c->id, d->id);
	else if (d != NULL && (d->state == DREQ_WAITING ||
	    d->state == DREQ_HELD)) {
		dispatch_cancel_waiting(d);
		found = true;
	}
	proto_response_init(&resp, PROTO_MSG_REPLY, req->id);
	resp.request = PROTO_MSG_CANCEL;
	resp.u.cancel.found = found;
	conn_reply(c, &resp);
}

static void
dispatch_stats(struct conn *c, const struct proto_request *req)
{
	struct proto_response resp;
	struct reg_totals t;
	double up = srv_now() - c->srv->start;

	reg_totals(c->srv->reg, &t);
	proto_response_init(&resp, PROTO_MSG_REPLY, req->id);
	resp.request = PROTO_MSG_STATS;
	resp.u.stats.uptime = up > 0 ? (uint64_t)up : 0;
	resp.u.stats.connections = c->srv->n_conns;
	resp.u.stats.requests = c->srv->requests;
	resp.u.stats.prompt_tokens = t.prompt_tokens;
	resp.u.stats.generated_tokens = t.generated_tokens;
	resp.u.stats.models = t.models;
	resp.u.stats.memory = t.memory;
	resp.u.stats.budget = reg_budget(c->srv->reg);
	resp.u.stats.weights = t.weights;
	resp.u.stats.kv = t.kv;
	resp.u.stats.scratch = t.scratch;
	conn_reply(c, &resp);
}

static void
dispatch_ping(struct conn *c, const struct proto_request *req)
{
	struct proto_response resp;

	proto_response_init(&resp, PROTO_MSG_REPLY, req->id);
	resp.request = PROTO_MSG_PING;
	conn_reply(c, &resp);
}

void
dispatch_frame(struct conn *c, const uint8_t *body, size_t len)
{
	struct proto_request req;
	struct proto_err e;
	int r;

	memset(&e, 0, sizeof(e));
	r = proto_unpack_request(body, len, &c->srv->limits, &req, &e);
	if (r < 0) {
		log_debug("conn %llu: bad request (id %llu): %s",
		    (unsigned long long)c->id, (unsigned long long)e.id,
		    e.msg);
		conn_error(c, e.id, e.code != PROTO_E_NONE ? e.code :
		    r == -ENOMEM ? PROTO_E_INTERNAL : PROTO_E_BAD_REQUEST,
		    "%s", e.msg[0] ? e.msg : "malformed request");
		c->srv->requests++;
		return;
	}
	log_debug("conn %llu: %s %llu%s%s", (unsigned long long)c->id,
	    dispatch_type_name(req.type), (unsigned long long)req.id,
	    dispatch_model_name(&req) ? " " : "",
	    dispatch_model_name(&req) ? dispatch_model_name(&req) : "");
	if (!c->hello && req.type != PROTO_MSG_HELLO) {
		conn_error(c, req.id, PROTO_E_BAD_REQUEST,
		    "%s before hello: the first request must be hello",
		    dispatch_type_name(req.type));
		goto done;
	}
	if (conn_req_find(c, req.id) != NULL) {
		conn_error(c, req.id, PROTO_E_BAD_REQUEST,
		    "request id %llu is in use by a request in flight",
		    (unsigned long long)req.id);
		goto done;
	}
	switch (req.type) {
	case PROTO_MSG_LOAD:
	case PROTO_MSG_UNLOAD:
	case PROTO_MSG_GENERATE:
	case PROTO_MSG_CHAT:
	case PROTO_MSG_EVAL:
	case PROTO_MSG_EMBED:
	case PROTO_MSG_TOKENIZE:
	case PROTO_MSG_DETOKENIZE:
		if (c->n_reqs >= c->srv->cfg->max_requests) {
			conn_error(c, req.id, PROTO_E_BUSY, "%u requests in "
			    "flight on this connection; wait for some to "
			    "end", c->n_reqs);
			goto done;
		}
		break;
	default:
		break;
	}
	switch (req.type) {
	case PROTO_MSG_HELLO:
		dispatch_hello(c, &req);
		break;
	case PROTO_MSG_LIST:
	case PROTO_MSG_SHOW:
	case PROTO_MSG_RENDER:
		dispatch_meta(c, &req);
		return;		/* req moved or freed; counted */
	case PROTO_MSG_PS:
		dispatch_ps(c, &req);
		break;
	case PROTO_MSG_UNLOAD:
		dispatch_unload(c, &req);
		proto_request_free(&req);
		return;		/* counted when it ends */
	case PROTO_MSG_LOAD:
	case PROTO_MSG_GENERATE:
	case PROTO_MSG_CHAT:
	case PROTO_MSG_EVAL:
	case PROTO_MSG_EMBED:
	case PROTO_MSG_TOKENIZE:
	case PROTO_MSG_DETOKENIZE:
		dispatch_model_work(c, &req);
		return;		/* req moved or freed; counted when it ends */
	case PROTO_MSG_CANCEL:
		dispatch_cancel(c, &req);
		break;
	case PROTO_MSG_STATS:
		dispatch_stats(c, &req);
		break;
	case PROTO_MSG_PING:
		dispatch_ping(c, &req);
		break;
	default:
		conn_error(c, req.id, PROTO_E_BAD_REQUEST,
		    "%s is not a request", dispatch_type_name(req.type));
		break;
	}
done:
	c->srv->requests++;
	proto_request_free(&req);
}
