/*
 * registry.h - the models hearthd knows: the models directory (a model
 * is a file NAME.gguf in it) and the models resident in memory, each
 * with its scheduler.
 *
 * A model loads on first use, on a loader thread (model_open with a
 * progress callback that can be cancelled); requests for it wait in its
 * waiters list meanwhile and are run (or failed) when the load ends.
 * Once no request runs or waits, it stays resident for its keep-alive
 * (the last request's, else the configuration's; -1 forever) and is
 * then unloaded; an unload request waits for the running requests
 * first.
 *
 * Residency: before a load starts, the model's cost (weights as
 * repacked, KV cache at its n_ctx and n_parallel, scratch) is computed
 * from the file's header and admitted against the memory budget
 * (memory_budget, default 80% of RAM) and max_models: the least
 * recently used idle, unpinned models are unloaded to make room; when
 * that is not enough the load is refused with the numbers (busy when
 * busy models hold the memory, too_large otherwise). A NUMA placement
 * is decided for it on the topology (read at start, or simulated with
 * --numa-topology) and reported in show and the log.
 * All functions run on the loop thread.
 */
#ifndef HEARTH_REGISTRY_H
#define HEARTH_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "budget.h"
#include "conn.h"
#include "meta.h"
#include "model.h"
#include "numa_topo.h"
#include "proto.h"
#include "sched.h"

struct event;
struct srv;
struct registry;

enum reg_state {
	REG_LOADING,		/* loader thread running, or its header being
				 * read (hdr_wait) */
	REG_RESIDENT,		/* model and scheduler ready */
	REG_UNLOADING,		/* waiting for running requests to end */
};

/* What a load runs with, taken from the configuration when it starts
 * (the loader thread never reads the configuration, which a reload may
 * replace). */
struct reg_load_opts {
	uint32_t	 threads;	/* compute threads; 0: the engine's */
	uint32_t	 n_parallel;	/* KV slots */
	uint32_t	 n_ctx;		/* positions per slot; 0: the model's */
	uint32_t	 n_batch;
	uint32_t	 prefill_chunk;
	uint32_t	 max_queue;
	struct model_load_opts mo;	/* pages, NUMA binding, mlock */
};

/* A model that is loading or resident. */
struct reg_model {
	struct registry		*reg;
	char			*name;		/* model name */
	char			*path;		/* its file */
	enum reg_state		 state;
	struct model		*m;		/* RESIDENT, UNLOADING */
	struct sched		*s;		/* RESIDENT, UNLOADING */
	struct sched_params	 sp;		/* what the scheduler runs with */
	struct reg_load_opts	 lo;		/* the configuration of this load */
	pthread_t		 thread;	/* loader */
	bool			 thread_live;	/* loader not joined yet */
	atomic_bool		 cancel;	/* stop loading */
	uint64_t		 prog_posted;	/* loader thread: last posted */
	uint64_t		 prog_done;	/* last progress seen (loop) */
	uint64_t		 prog_total;
	double			 load_start;	/* monotonic seconds */
	double			 load_ms;	/* how long the load took */
	int64_t			 keep_alive;	/* seconds once idle; -1 forever */
	bool			 pinned;	/* [model] pin or a load's pin: no
						 * keep-alive expiry, never
						 * evicted */
	int			 pin_asked;	/* -1: pin follows [model] pin;
						 * 0/1: a load request's pin,
						 * kept over a reload */
	bool			 preload;	/* loading for [model] preload */
	bool			 again;		/* loading again for requests that
						 * came during its unload */
	struct reg_meta		*hdr_wait;	/* its header is being read (no
						 * cost yet, no loader) */
	bool			 admitted;	/* cost and place are counted in
						 * the registry's budget and NUMA
						 * usage (loading or resident) */
	struct budget_cost	 cost;		/* estimated before loading */
	uint32_t		 n_ctx;		/* positions per slot it costs */
	enum numa_policy	 policy;	/* asked for (a load request's,
						 * else the configuration's) */
	int			 numa_asked;	/* -1: the policy follows the
						 * configuration; else a load
						 * request's enum numa_policy,
						 * kept over a reload */
	struct numa_place	 place;		/* decided at admission */
	uint32_t		 n_copies;	/* copies of the weights the
						 * placement wants (REPLICATE on
						 * several nodes: one per node) */
	struct mem_region	*replicas[NUMA_MAX_NODES];	/* [n_nodes]
						 * by node index: that node's copy
						 * of the weights when it is not
						 * m->weights (REPLICATE); NULL */
	uint32_t		 copies_made;	/* copies resident: 1 + replicas */
	char			 pinning[2 * NUMA_REASON_MAX];	/* how the
						 * worker threads are pinned (set
						 * by the loader thread) */
	struct event		*ka_timer;	/* keep-alive expiry */
	double			 ka_expire;	/* monotonic seconds, 0: unarmed */
	double			 last_use;	/* monotonic seconds */
	uint32_t		 active;	/* requests in the scheduler */
	bool			 unload_asked;	/* unload when possible */
	TAILQ_HEAD(, dreq)	 waiters;	/* requests waiting to run */
	TAILQ_HEAD(, dreq)	 unloaders;	/* unload requests to answer */
	TAILQ_ENTRY(reg_model)	 entry;		/* in registry->models */
};

/* Counters of the whole daemon's life (stats). */
struct reg_totals {
	uint32_t	 models;		/* resident now */
	uint64_t	 memory;		/* bytes of resident models */
	uint64_t	 weights;		/* of memory: weights */
	uint64_t	 kv;			/* of memory: KV caches */
	uint64_t	 scratch;		/* of memory: scratch */
	uint64_t	 prompt_tokens;		/* since start */
	uint64_t	 generated_tokens;
};

/*
 * The process's memory view, before reg_new: the NUMA topology (from
 * topo_file when not NULL, else the machine's) and the RAM the budget
 * is a share of. Logs both. 0 or -errno with a message in err.
 * reg_new calls it with NULL when it was not called.
 */
int	reg_memory_init(const char *topo_file, char *err, size_t errsize);
const struct numa_topo *reg_topology(void);
/* The budget the configuration gives (memory_budget or 80% of RAM). */
uint64_t reg_budget(const struct registry *r);

int	reg_new(struct srv *s, const char *dir, struct registry **out,
	    char *err, size_t errsize);
/* Cancel loads, stop schedulers, free every model. NULL ok. */
void	reg_free(struct registry *r);

/*
 * The file of a model name: 0 and a malloc'd path, -EINVAL (bad name),
 * -ENOENT (no such model, PROTO_E_NOT_FOUND) with a message in err.
 */
int	reg_path(struct registry *r, const char *name, char **path,
	    struct proto_err *err);
/* A loading or resident model; NULL if neither. */
struct reg_model *reg_find(struct registry *r, const char *name);
/*
 * A model for a request: the resident or loading entry, or a new load.
 * keep_alive (seconds, -1 forever) replaces the model's when has_ka.
 * 0 with *out, or -errno with err set (not_found, busy...).
 */
int	reg_use(struct registry *r, const char *name, bool has_ka,
	    int64_t keep_alive, struct reg_model **out, struct proto_err *err);
/*
 * reg_use with a load request's NUMA policy (numa: an enum numa_policy,
 * or -1 for the configuration's), used when this starts a load. A model
 * resident with another policy is unloaded and loaded again with this
 * one when idle; busy when it is in use or loading.
 */
int	reg_use_numa(struct registry *r, const char *name, bool has_ka,
	    int64_t keep_alive, int numa, struct reg_model **out,
	    struct proto_err *err);
/* Bytes of rm's weights resident, every copy (replicate: one per node). */
uint64_t reg_model_weights(const struct reg_model *rm);
/* Link d to rm: waiting (rm not resident) or running. */
void	reg_wait(struct reg_model *rm, struct dreq *d);
void	reg_running(struct reg_model *rm, struct dreq *d);
/*
 * Unlink d from its model, or from the headers it waits for (DREQ_META):
 * it ended, was cancelled or dropped. Then DREQ_NONE, no model.
 */
void	reg_detach(struct dreq *d);
/*
 * Unload a model: 1 when nothing was resident or it is gone now (answer
 * at once), 0 when d waits in the model (answered when it is gone),
 * -errno with err.
 */
int	reg_unload(struct registry *r, const char *name, struct dreq *d,
	    struct proto_err *err);

/* Loader results (from srv's queue). */
void	reg_progress(struct reg_model *rm, uint64_t done, uint64_t total);
void	reg_loaded(struct reg_model *rm, struct model *m, struct sched *s,
	    int rc, const char *msg);

/* A connection's requests are gone / paused: tell every scheduler (each
 * request is then ended, and reg_detach'ed, by conn_req_end). */
void	reg_drop_conn(struct registry *r, uint64_t conn_id);
void	reg_pause_conn(struct registry *r, uint64_t conn_id, bool paused);

/*
 * Load the [model] sections with preload = yes that are not resident or
 * loading (at start and after a reload); failures are logged.
 */
void	reg_preload(struct registry *r);
/* Models loading for preload (READY=1 waits for none). */
uint32_t reg_preloading(struct registry *r);
/* A load request's pin (admin): pin or unpin rm, over [model] pin. */
void	reg_set_pin(struct reg_model *rm, bool pin);
/* After a reload: apply pin (and the keep-alive it implies) anew. */
void	reg_reconfigure(struct registry *r);
/* Resident models, requests in schedulers, requests waiting for a load. */
void	reg_counts(struct registry *r, uint32_t *resident, uint32_t *running,
	    uint32_t *waiting);

/* Which models a list shows (NULL: all). */
typedef bool (*reg_filter_fn)(const char *name, void *arg);

/*
 * Headers. list, show, render and a load's cost read GGUF headers; they
 * are read on header threads ("hearth-meta", at most REG_META_THREADS,
 * started when needed), never on the loop, and kept in a cache by file
 * (dev, inode, size, mtime; REG_CACHE_MAX headers, REG_CACHE_BYTES, the
 * least recently used go first). A load whose header is not cached
 * waits in its model (state REG_LOADING, no loader yet) until it is.
 *
 * A reg_meta is what one list, show or render request needs: the files
 * (list: the directory scanned now, filter applied) and their headers.
 */
struct reg_meta;

/*
 * The headers req (LIST, SHOW or RENDER) needs, from the cache or the
 * resident model: 0 with *out (free with reg_meta_free), or -errno with
 * err (show/render: bad name, not_found...).
 */
int	reg_meta_new(struct registry *r, const struct proto_request *req,
	    reg_filter_fn filter, void *arg, struct reg_meta **out,
	    struct proto_err *err);
/* Every header is at hand: the reply can be built now. */
bool	reg_meta_ready(const struct reg_meta *m);
/*
 * Read the missing headers on a header thread. d (DREQ_NONE, its
 * decoded request in d->req) waits in state DREQ_META:
 * dispatch_meta_done(d, m) is called on the loop once they are read (d
 * then DREQ_NONE; m freed after); if d ends first (reg_detach), m is
 * dropped when the reads end.
 * 0, or -errno with err (m is then freed, d untouched).
 */
int	reg_meta_wait(struct reg_meta *m, struct dreq *d,
	    struct proto_err *err);
void	reg_meta_free(struct reg_meta *m);	/* NULL ok */

/* Replies. Each fills resp (REPLY) with memory freed by reg_reply_free. */
int	reg_list_reply(struct registry *r, const struct reg_meta *m,
	    struct proto_response *resp, struct proto_err *err);
int	reg_show_reply(struct registry *r, const struct reg_meta *m,
	    struct proto_response *resp, struct proto_err *err);
int	reg_ps(struct registry *r, struct proto_response *resp,
	    struct proto_err *err);
void	reg_reply_free(struct proto_response *resp);
void	reg_totals(struct registry *r, struct reg_totals *t);

/*
 * What render needs of a render request's model (m from reg_meta_new
 * for it): 0 with out (valid while m is), -errno with err.
 */
int	reg_render_meta(struct registry *r, const struct reg_meta *m,
	    struct meta_render *out, struct proto_err *err);

#endif /* HEARTH_REGISTRY_H */
