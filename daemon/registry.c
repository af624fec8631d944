/*
 * registry.c - the models directory and the resident models: loading
 * on a loader thread, keep-alive, unloading, eviction, and the list,
 * show and ps replies.
 */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <math.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"
#include "dispatch.h"
#include "kernels.h"
#include "log.h"
#include "meta.h"
#include "pool.h"
#include "registry.h"
#include "server.h"

#define REG_EXT		".gguf"
#define REG_EXT_LEN	5
#define REG_PROGRESS_STEP 100	/* progress events per load at most */

#define REG_META_THREADS 2	/* header threads at most */
#define REG_CACHE_MAX	64	/* headers in the cache at most */
#define REG_CACHE_BYTES	(32u << 20)	/* and their bytes at most */

/* The state of a file a header was read from. */
struct reg_key {
	dev_t			 dev;
	ino_t			 ino;
	off_t			 size;
	struct timespec		 mtime;
};

/*
 * What hearthd needs of one file's header, read on a header thread and
 * then, on the loop, shared (refs) by the cache and the requests using
 * it. Never changed once read.
 */
struct reg_hdr {
	uint32_t		 refs;		/* loop: owners */
	struct reg_key		 key;		/* the file when it was read */
	bool			 stable;	/* the same after the read */
	uint32_t		 max_items;	/* the limits show was cut to */
	uint32_t		 max_text;
	size_t			 bytes;		/* memory held, about */
	int			 open_rc;	/* gguf_open: 0 or -errno */
	char			 open_msg[ENG_ERR_MAX];	/* its message */
	struct meta_info	 info;		/* list */
	int			 show_rc;	/* meta_show: 0 or -ENOMEM */
	struct meta_show	 show;		/* show */
	int			 shape_rc;	/* budget_shape_gguf: 0, -errno */
	char			 shape_msg[ENG_ERR_MAX];	/* its message */
	struct budget_shape	 shape;		/* a load's cost */
	int			 render_rc;	/* 0 or -ENOMEM */
	struct meta_render	 render;	/* render and chat (a copy) */
};

/* A header in the cache. */
struct reg_cache {
	char			*path;		/* the file */
	struct reg_hdr		*hdr;		/* one ref */
	TAILQ_ENTRY(reg_cache)	 entry;		/* most recently used first */
	bool			 seen;		/* list: in the latest scan */
};

/* One file a reg_meta needs. */
struct reg_item {
	char			*name;		/* model name */
	char			*path;		/* its file */
	struct reg_key		 key;		/* its stat when asked */
	uint64_t		 size;		/* list: bytes */
	struct reg_hdr		*hdr;		/* one ref; NULL: not read (yet),
						 * or out of memory */
	bool			 wait;		/* its read is asked for */
};

enum reg_meta_kind {
	REG_META_LIST,
	REG_META_SHOW,
	REG_META_RENDER,
	REG_META_ADMIT,		/* a load's cost (rm) */
};

struct reg_meta {
	struct registry		*reg;
	enum reg_meta_kind	 kind;
	struct dreq		*d;		/* waiting; NULL: none or gone */
	struct reg_model	*rm;		/* ADMIT; NULL: gone */
	bool			 from_model;	/* show/render: the resident
						 * model's metadata */
	struct reg_item		*items;		/* [n_items] */
	size_t			 n_items;
	uint32_t		 n_wait;	/* reads not back yet */
	bool			 linked;	/* in reg->metas */
	TAILQ_ENTRY(reg_meta)	 entry;		/* in reg->metas */
};

/* A reg_meta waiting for a job: which of its items. */
struct reg_jwait {
	struct reg_meta		*m;
	size_t			 item;		/* index in m->items */
};

/* One header read, asked by the loop, done by a header thread. */
struct reg_job {
	char			*path;		/* the file */
	struct reg_key		 key;		/* its stat when asked (dedup) */
	struct proto_limits	 limits;	/* show's */
	struct reg_hdr		*hdr;		/* the result (thread); NULL:
						 * out of memory */
	struct reg_jwait	*waits;		/* [n_waits] (loop) */
	size_t			 n_waits;
	size_t			 cap_waits;
	STAILQ_ENTRY(reg_job)	 q;		/* in todo or done (lock) */
	TAILQ_ENTRY(reg_job)	 entry;		/* in reg->jobs until handled */
};

struct registry {
	struct srv		*srv;
	char			*dir;		/* models directory */
	char			*dir_real;	/* its realpath, for links */
	TAILQ_HEAD(, reg_model)	 models;	/* loading or resident */
	uint32_t		 n_models;
	TAILQ_HEAD(reg_cache_head, reg_cache) cache;	/* headers by file,
						 * most recently used first */
	uint32_t		 n_cache;
	size_t			 cache_bytes;
	uint64_t		 gone_prompt;	/* tokens of unloaded models */
	uint64_t		 gone_generated;
	struct numa_usage	 usage;		/* placements of admitted models */
	/* header threads */
	TAILQ_HEAD(, reg_meta)	 metas;		/* waiting for headers (their
						 * requests are DREQ_META) */
	TAILQ_HEAD(, reg_job)	 jobs;		/* asked, not handled yet */
	struct event		*ev_meta;	/* headers are done */
	sem_t			 meta_sem;	/* one post a job to read, and
						 * one a thread to stop (a post
						 * never waits for a thread, even
						 * one held by a debugger) */
	pthread_mutex_t		 meta_lock;	/* protects the fields below */
	STAILQ_HEAD(, reg_job)	 todo;		/* to read */
	STAILQ_HEAD(, reg_job)	 done;		/* read, for the loop */
	pthread_t		 meta_threads[REG_META_THREADS];
	uint32_t		 n_meta_threads;
	uint32_t		 meta_idle;	/* threads waiting for work */
	uint32_t		 n_todo;	/* jobs in todo */
	bool			 meta_stop;
};

static struct numa_topo	reg_topo;	/* the machine's or simulated */
static bool		reg_topo_ok;	/* reg_memory_init ran */
static uint64_t		reg_ram;	/* RAM the budget is a share of */

/* Memory a reply points into, kept in resp->mem until reg_reply_free. */
struct reg_reply_mem {
	void			*array;		/* list/ps entries */
	struct meta_show	 show;		/* show: its entries (strings
						 * of the model's or the
						 * header's, or its own) */
	char			 strs[5][4 * NUMA_REASON_MAX]; /* show:
						 * residency values */
	char			*labels;	/* ps: [n][PROTO_MAX_LABEL + 1]
						 * placements */
};

static void reg_model_free(struct reg_model *rm);
static void reg_unload_now(struct reg_model *rm);
static void reg_check_idle(struct reg_model *rm);
static int  reg_start_load(struct reg_model *rm, struct proto_err *err);
static void reg_release(struct reg_model *rm);
static void reg_load_opts(const struct config *cfg, const char *name,
	    struct reg_load_opts *lo);

static void reg_meta_cb(evutil_socket_t, short, void *);
static void reg_meta_threads_stop(struct registry *r);
static void reg_hdr_unref(struct reg_hdr *h);
static void reg_job_free(struct reg_job *j);

int
reg_new(struct srv *s, const char *dir, struct registry **out, char *err,
    size_t errsize)
{
	struct registry *r;
	struct stat st;
	int rc;

	if (!reg_topo_ok && (rc = reg_memory_init(NULL, err, errsize)) < 0)
		return rc;
	if (stat(dir, &st) != 0) {
		snprintf(err, errsize, "models directory %s: %s", dir,
		    strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errsize, "models directory %s: not a directory",
		    dir);
		return -ENOTDIR;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->dir = strdup(dir)) == NULL ||
	    (r->dir_real = realpath(dir, NULL)) == NULL ||
	    (r->ev_meta = event_new(s->base, -1, 0, reg_meta_cb, r)) ==
	    NULL) {
		if (r != NULL) {
			free(r->dir);
			free(r->dir_real);
		}
		free(r);
		snprintf(err, errsize, "out of memory");
		return -ENOMEM;
	}
	r->srv = s;
	TAILQ_INIT(&r->models);
	TAILQ_INIT(&r->cache);
	TAILQ_INIT(&r->metas);
	TAILQ_INIT(&r->jobs);
	STAILQ_INIT(&r->todo);
	STAILQ_INIT(&r->done);
	pthread_mutex_init(&r->meta_lock, NULL);
	if (sem_init(&r->meta_sem, 0, 0) != 0) {
		event_free(r->ev_meta);
		free(r->dir);
		free(r->dir_real);
		free(r);
		snprintf(err, errsize, "semaphore: %s", strerror(errno));
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

void
reg_free(struct registry *r)
{
	struct reg_model *rm;
	struct reg_cache *ce;
	struct reg_meta *m;
	struct reg_job *j;

	if (r == NULL)
		return;
	/* a header being read is read to its end */
	reg_meta_threads_stop(r);
	TAILQ_FOREACH(rm, &r->models, entry)
		atomic_store(&rm->cancel, true);
	while ((rm = TAILQ_FIRST(&r->models)) != NULL) {
		TAILQ_REMOVE(&r->models, rm, entry);
		if (rm->thread_live) {
			/* its LOADED post is freed by srv_free */
			pthread_join(rm->thread, NULL);
			rm->thread_live = false;
		}
		if (rm->s != NULL)
			log_info("registry: unloading %s", rm->name);
		reg_model_free(rm);
	}
	/* every job is in jobs, and in todo or done or neither */
	while ((j = TAILQ_FIRST(&r->jobs)) != NULL) {
		TAILQ_REMOVE(&r->jobs, j, entry);
		reg_job_free(j);
	}
	while ((m = TAILQ_FIRST(&r->metas)) != NULL)
		reg_meta_free(m);	/* unlinks it */
	while ((ce = TAILQ_FIRST(&r->cache)) != NULL) {
		TAILQ_REMOVE(&r->cache, ce, entry);
		reg_hdr_unref(ce->hdr);
		free(ce->path);
		free(ce);
	}
	event_free(r->ev_meta);
	pthread_mutex_destroy(&r->meta_lock);
	sem_destroy(&r->meta_sem);
	free(r->dir);
	free(r->dir_real);
	free(r);
}

/* ---- headers: read on header threads, cached by file ---- */

static void
reg_key_of(const struct stat *st, struct reg_key *k)
{
	memset(k, 0, sizeof(*k));
	k->dev = st->st_dev;
	k->ino = st->st_ino;
	k->size = st->st_size;
	k->mtime = st->st_mtim;
}

static bool
reg_key_eq(const struct reg_key *a, const struct reg_key *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	    a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Bytes a weight takes in the kernels' layout (0: as in the GGUF). */
static uint64_t
reg_pack_size(uint32_t type, uint64_t rows, uint64_t cols, void *arg)
{
	const struct kern_ops *ops = arg;

	if (ops == NULL || ops->layout == KERN_LAYOUT_ROWS)
		return 0;
	return ops->pack_size(type, (size_t)rows, (size_t)cols);
}

/*
 * Header thread: read the header of path and keep what list, show,
 * render and a load's cost need. NULL when out of memory.
 */
static struct reg_hdr *
reg_hdr_read(const char *path, const struct proto_limits *l)
{
	struct eng_err ee = { "" };
	struct meta_render view;
	struct reg_hdr *h;
	struct stat a, b;
	struct gguf *g;
	bool have_a;
	int rc;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->refs = 1;
	h->max_items = l->max_items;
	h->max_text = l->max_text;
	have_a = stat(path, &a) == 0;
	if (have_a)
		reg_key_of(&a, &h->key);
	if ((rc = gguf_open(path, &g, &ee)) < 0) {
		h->open_rc = rc;
		snprintf(h->open_msg, sizeof(h->open_msg), "%s", ee.msg);
	} else {
		meta_info(g, &h->info);
		h->show_rc = meta_show(g, l, &h->show);
		ee.msg[0] = '\0';
		h->shape_rc = budget_shape_gguf(g, reg_pack_size,
		    (void *)kern_ops(), &h->shape, &ee);
		if (h->shape_rc < 0)
			snprintf(h->shape_msg, sizeof(h->shape_msg), "%s",
			    ee.msg);
		meta_render_view(g, &view);
		h->render_rc = meta_render_copy(&view, &h->render);
		gguf_close(g);
	}
	/* a file that changed meanwhile is answered from, not cached */
	if (have_a && stat(path, &b) == 0) {
		struct reg_key kb;

		reg_key_of(&b, &kb);
		h->stable = reg_key_eq(&h->key, &kb);
	}
	h->bytes = sizeof(*h) + meta_show_bytes(&h->show) +
	    (h->render.tmpl != NULL ? h->render.tmpl_len : 0) +
	    (h->render.bos != NULL ? strlen(h->render.bos) : 0) +
	    (h->render.eos != NULL ? strlen(h->render.eos) : 0);
	return h;
}

static struct reg_hdr *
reg_hdr_ref(struct reg_hdr *h)
{
	if (h != NULL)
		h->refs++;
	return h;
}

static void
reg_hdr_unref(struct reg_hdr *h)
{
	if (h == NULL || --h->refs > 0)
		return;
	meta_show_free(&h->show);
	meta_render_free(&h->render);
	free(h);
}

/* Header thread: read what is asked until told to stop. */
static void *
reg_meta_main(void *arg)
{
	struct registry *r = arg;
	struct reg_job *j;

	(void)pthread_setname_np(pthread_self(), "hearth-meta");
	for (;;) {
		pthread_mutex_lock(&r->meta_lock);
		r->meta_idle++;
		pthread_mutex_unlock(&r->meta_lock);
		while (sem_wait(&r->meta_sem) != 0 && errno == EINTR)
			;
		pthread_mutex_lock(&r->meta_lock);
		r->meta_idle--;
		if (r->meta_stop || (j = STAILQ_FIRST(&r->todo)) == NULL) {
			pthread_mutex_unlock(&r->meta_lock);
			break;
		}
		STAILQ_REMOVE_HEAD(&r->todo, q);
		r->n_todo--;
		pthread_mutex_unlock(&r->meta_lock);
		j->hdr = reg_hdr_read(j->path, &j->limits);
		pthread_mutex_lock(&r->meta_lock);
		STAILQ_INSERT_TAIL(&r->done, j, q);
		pthread_mutex_unlock(&r->meta_lock);
		event_active(r->ev_meta, EV_READ, 0);
	}
	return NULL;
}

/* Stop and join the header threads (a read in progress ends first). */
static void
reg_meta_threads_stop(struct registry *r)
{
	uint32_t i;

	pthread_mutex_lock(&r->meta_lock);
	r->meta_stop = true;
	pthread_mutex_unlock(&r->meta_lock);
	for (i = 0; i < r->n_meta_threads; i++)
		sem_post(&r->meta_sem);
	for (i = 0; i < r->n_meta_threads; i++)
		pthread_join(r->meta_threads[i], NULL);
	r->n_meta_threads = 0;
}

static void
reg_job_free(struct reg_job *j)
{
	if (j == NULL)
		return;
	reg_hdr_unref(j->hdr);
	free(j->waits);
	free(j->path);
	free(j);
}

/*
 * The cached header of path when it is still the file's (key) and was
 * cut to today's limits; it becomes the most recently used. NULL if
 * none.
 */
static struct reg_hdr *
reg_cache_find(struct registry *r, const char *path, const struct reg_key *key)
{
	const struct proto_limits *l = &r->srv->limits;
	struct reg_cache *ce;

	TAILQ_FOREACH(ce, &r->cache, entry)
		if (strcmp(ce->path, path) == 0)
			break;
	if (ce == NULL || !reg_key_eq(&ce->hdr->key, key) ||
	    ce->hdr->max_items != l->max_items ||
	    ce->hdr->max_text != l->max_text)
		return NULL;
	if (ce != TAILQ_FIRST(&r->cache)) {
		TAILQ_REMOVE(&r->cache, ce, entry);
		TAILQ_INSERT_HEAD(&r->cache, ce, entry);
	}
	return ce->hdr;
}

static void
reg_cache_remove(struct registry *r, struct reg_cache *ce)
{
	TAILQ_REMOVE(&r->cache, ce, entry);
	r->n_cache--;
	r->cache_bytes -= ce->hdr->bytes;
	reg_hdr_unref(ce->hdr);
	free(ce->path);
	free(ce);
}

/* Keep h as path's header (replacing an older one); evict the least
 * recently used over the limits. */
static void
reg_cache_put(struct registry *r, const char *path, struct reg_hdr *h)
{
	struct reg_cache *ce;

	TAILQ_FOREACH(ce, &r->cache, entry)
		if (strcmp(ce->path, path) == 0)
			break;
	if (ce != NULL)
		reg_cache_remove(r, ce);
	if (h->bytes > REG_CACHE_BYTES / 4)
		return;		/* not worth the others */
	if ((ce = calloc(1, sizeof(*ce))) == NULL ||
	    (ce->path = strdup(path)) == NULL) {
		free(ce);
		return;
	}
	ce->hdr = reg_hdr_ref(h);
	TAILQ_INSERT_HEAD(&r->cache, ce, entry);
	r->n_cache++;
	r->cache_bytes += h->bytes;
	while (r->n_cache > REG_CACHE_MAX ||
	    r->cache_bytes > REG_CACHE_BYTES)
		reg_cache_remove(r, TAILQ_LAST(&r->cache, reg_cache_head));
}

/* Ask a header thread for path (key), or join the same read asked. */
static struct reg_job *
reg_job_get(struct registry *r, const char *path, const struct reg_key *key,
    int *rc)
{
	struct reg_job *j;
	pthread_t t;
	int e;

	TAILQ_FOREACH(j, &r->jobs, entry)
		if (strcmp(j->path, path) == 0 && reg_key_eq(&j->key, key))
			return j;
	if ((j = calloc(1, sizeof(*j))) == NULL ||
	    (j->path = strdup(path)) == NULL) {
		free(j);
		*rc = -ENOMEM;
		return NULL;
	}
	j->key = *key;
	j->limits = r->srv->limits;
	pthread_mutex_lock(&r->meta_lock);
	/* another thread when every one is busy, up to the limit */
	if (r->n_todo + 1 > r->meta_idle &&
	    r->n_meta_threads < REG_META_THREADS) {
		if ((e = pthread_create(&t, NULL, reg_meta_main, r)) == 0)
			r->meta_threads[r->n_meta_threads++] = t;
		else if (r->n_meta_threads == 0) {
			pthread_mutex_unlock(&r->meta_lock);
			reg_job_free(j);
			*rc = -e;
			return NULL;
		}
	}
	STAILQ_INSERT_TAIL(&r->todo, j, q);
	r->n_todo++;
	pthread_mutex_unlock(&r->meta_lock);
	sem_post(&r->meta_sem);
	TAILQ_INSERT_TAIL(&r->jobs, j, entry);
	return j;
}

/* Link item i of m to a read of its header. 0 or -errno. */
static int
reg_job_wait(struct reg_meta *m, size_t i)
{
	struct reg_item *it = &m->items[i];
	struct reg_jwait *w;
	struct reg_job *j;
	size_t cap;
	int rc = 0;

	if ((j = reg_job_get(m->reg, it->path, &it->key, &rc)) == NULL)
		return rc;
	if (j->n_waits == j->cap_waits) {
		cap = j->cap_waits ? 2 * j->cap_waits : 4;
		if ((w = realloc(j->waits, cap * sizeof(*w))) == NULL)
			return -ENOMEM;	/* the job runs on, for the cache */
		j->waits = w;
		j->cap_waits = cap;
	}
	j->waits[j->n_waits].m = m;
	j->waits[j->n_waits].item = i;
	j->n_waits++;
	it->wait = true;
	m->n_wait++;
	return 0;
}

static struct reg_meta *
reg_meta_alloc(struct registry *r, enum reg_meta_kind kind, size_t n)
{
	struct reg_meta *m;

	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->items = calloc(n ? n : 1, sizeof(*m->items))) == NULL) {
		free(m);
		return NULL;
	}
	m->reg = r;
	m->kind = kind;
	return m;
}

/* Add a file to m (path is taken over); its header if cached. */
static void
reg_meta_item(struct reg_meta *m, const char *name, char *path,
    const struct stat *st)
{
	struct reg_item *it = &m->items[m->n_items++];

	it->name = strdup(name);
	it->path = path;
	if (st != NULL) {
		reg_key_of(st, &it->key);
		it->size = (uint64_t)st->st_size;
		it->hdr = reg_hdr_ref(reg_cache_find(m->reg, path, &it->key));
	}
}

void
reg_meta_free(struct reg_meta *m)
{
	struct reg_job *j;
	size_t i, k;

	if (m == NULL)
		return;
	if (m->linked) {
		TAILQ_REMOVE(&m->reg->metas, m, entry);
		m->linked = false;
	}
	/* reads still out: they must not come back to m */
	if (m->n_wait > 0)
		TAILQ_FOREACH(j, &m->reg->jobs, entry)
			for (k = 0; k < j->n_waits; k++)
				if (j->waits[k].m == m)
					j->waits[k].m = NULL;
	if (m->rm != NULL)
		m->rm->hdr_wait = NULL;
	for (i = 0; i < m->n_items; i++) {
		free(m->items[i].name);
		free(m->items[i].path);
		reg_hdr_unref(m->items[i].hdr);
	}
	free(m->items);
	free(m);
}

bool
reg_meta_ready(const struct reg_meta *m)
{
	size_t i;

	if (m->from_model)
		return true;
	for (i = 0; i < m->n_items; i++)
		if (m->items[i].hdr == NULL && m->items[i].name != NULL &&
		    m->items[i].path != NULL)
			return false;
	return true;
}

/* Ask for every header m lacks and link it; 0 or -errno. */
static int
reg_meta_start(struct reg_meta *m)
{
	size_t i;
	int rc;

	for (i = 0; i < m->n_items; i++) {
		if (m->items[i].hdr != NULL || m->items[i].name == NULL ||
		    m->items[i].path == NULL)
			continue;
		if ((rc = reg_job_wait(m, i)) < 0)
			return rc;
	}
	TAILQ_INSERT_TAIL(&m->reg->metas, m, entry);
	m->linked = true;
	return 0;
}

int
reg_meta_wait(struct reg_meta *m, struct dreq *d, struct proto_err *err)
{
	int rc;

	if ((rc = reg_meta_start(m)) < 0) {
		reg_meta_free(m);
		return proto_err_set(err, PROTO_E_INTERNAL, rc, rc == -ENOMEM ?
		    "out of memory" : "cannot start a header thread: %s",
		    strerror(-rc));
	}
	m->d = d;
	d->state = DREQ_META;
	return 0;
}

/*
 * d (DREQ_META) ends before its headers are read: the reads go on, m is
 * dropped when they end.
 */
static void
reg_meta_detach(struct registry *r, struct dreq *d)
{
	struct reg_meta *m;

	TAILQ_FOREACH(m, &r->metas, entry)
		if (m->d == d) {
			m->d = NULL;
			break;
		}
}

static void reg_admit_done(struct reg_meta *m);

/* Every header of m is read: answer (or go on with the load). */
static void
reg_meta_finish(struct reg_meta *m)
{
	struct dreq *d = m->d;

	if (m->kind == REG_META_ADMIT) {
		if (m->rm != NULL)
			reg_admit_done(m);	/* frees m */
		else
			reg_meta_free(m);
		return;
	}
	if (d != NULL) {
		m->d = NULL;
		d->state = DREQ_NONE;
		dispatch_meta_done(d, m);
	}
	reg_meta_free(m);
}

/* The loop: headers came back from the header threads. */
static void
reg_meta_cb(evutil_socket_t fd, short what, void *arg)
{
	struct registry *r = arg;
	STAILQ_HEAD(, reg_job) q;
	struct reg_meta *m;
	struct reg_job *j;
	size_t k;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&r->meta_lock);
	STAILQ_INIT(&q);
	STAILQ_CONCAT(&q, &r->done);
	pthread_mutex_unlock(&r->meta_lock);
	while ((j = STAILQ_FIRST(&q)) != NULL) {
		STAILQ_REMOVE_HEAD(&q, q);
		/* j stays in jobs meanwhile: metas freed or joining it while
		 * its waiters are answered find it there */
		if (j->hdr != NULL && j->hdr->open_rc < 0)
			log_debug("registry: header of %s: %s", j->path,
			    j->hdr->open_msg);
		if (j->hdr != NULL && j->hdr->stable)
			reg_cache_put(r, j->path, j->hdr);
		for (k = 0; k < j->n_waits; k++) {
			if ((m = j->waits[k].m) == NULL)
				continue;	/* gone */
			j->waits[k].m = NULL;
			m->items[j->waits[k].item].hdr = reg_hdr_ref(j->hdr);
			m->items[j->waits[k].item].wait = false;
			if (--m->n_wait == 0)
				reg_meta_finish(m);
		}
		TAILQ_REMOVE(&r->jobs, j, entry);
		reg_job_free(j);
	}
}

/* ---- names and files ---- */

/*
 * Check the file of a model: a regular file, reached through a symlink
 * only when the link stays inside the directory or the configuration
 * allows links out of it.
 */
static int
reg_check_file(struct registry *r, const char *name, const char *path,
    struct stat *st, struct proto_err *err)
{
	char *real;
	size_t n;

	if (lstat(path, st) != 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return proto_err_set(err, PROTO_E_NOT_FOUND, -ENOENT,
			    "no model named '%s' in %s", name, r->dir);
		return proto_err_set(err, PROTO_E_INTERNAL, -errno,
		    "model %s: %s", name, strerror(errno));
	}
	if (S_ISLNK(st->st_mode)) {
		if ((real = realpath(path, NULL)) == NULL)
			return proto_err_set(err, PROTO_E_NOT_FOUND, -ENOENT,
			    "model %s: dangling link: %s", name,
			    strerror(errno));
		n = strlen(r->dir_real);
		if (!r->srv->cfg->external_links &&
		    (strncmp(real, r->dir_real, n) != 0 || real[n] != '/')) {
			free(real);
			return proto_err_set(err, PROTO_E_DENIED, -EPERM,
			    "model %s is a link out of the models directory "
			    "(external_links is off)", name);
		}
		free(real);
		if (stat(path, st) != 0)
			return proto_err_set(err, PROTO_E_NOT_FOUND, -ENOENT,
			    "model %s: %s", name, strerror(errno));
	}
	if (!S_ISREG(st->st_mode))
		return proto_err_set(err, PROTO_E_NOT_FOUND, -ENOENT,
		    "model %s is not a regular file", name);
	return 0;
}

int
reg_path(struct registry *r, const char *name, char **path,
    struct proto_err *err)
{
	struct stat st;
	char *p;
	int rc;

	if ((rc = proto_check_model_name(name, err)) < 0)
		return rc;
	if (asprintf(&p, "%s/%s%s", r->dir, name, REG_EXT) < 0)
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	if ((rc = reg_check_file(r, name, p, &st, err)) < 0) {
		free(p);
		return rc;
	}
	*path = p;
	return 0;
}

struct reg_model *
reg_find(struct registry *r, const char *name)
{
	struct reg_model *rm;

	TAILQ_FOREACH(rm, &r->models, entry)
		if (strcmp(rm->name, name) == 0)
			return rm;
	return NULL;
}

/* ---- loading ---- */

static int
reg_load_progress(uint64_t done, uint64_t total, void *arg)
{
	struct reg_model *rm = arg;
	uint64_t step = total / REG_PROGRESS_STEP;

	if (atomic_load(&rm->cancel))
		return 1;
	if (done == total || done >= rm->prog_posted + step) {
		rm->prog_posted = done;
		srv_post_progress(rm->reg->srv, rm, done, total);
	}
	return 0;
}

/* The scheduler settings: the model's defaults, then the configuration. */
static void
reg_sched_params(const struct reg_load_opts *lo, const struct srv *s,
    const struct model *m, struct sched_params *p)
{
	sched_params_default(p, m);
	p->n_parallel = lo->n_parallel;
	if (lo->n_ctx != 0) {
		p->n_ctx = lo->n_ctx;
		if (m->hp.n_ctx_train > 0 && p->n_ctx > m->hp.n_ctx_train)
			p->n_ctx = m->hp.n_ctx_train;
	}
	p->n_batch = lo->n_batch;
	p->prefill_chunk = lo->prefill_chunk;
	p->max_queue = lo->max_queue;
	p->limits = s->limits;
}

/* What a load of rm runs with: [daemon], then its [model] section. */
static void
reg_load_opts(const struct config *cfg, const char *name,
    struct reg_load_opts *lo)
{
	const struct config_model *cm = config_model_find(cfg, name);

	lo->threads = cfg->threads;
	lo->n_parallel = cfg->n_parallel;
	lo->n_ctx = cm != NULL && cm->n_ctx != 0 ? cm->n_ctx : cfg->n_ctx;
	lo->n_batch = cfg->n_batch;
	lo->prefill_chunk = cfg->prefill_chunk;
	lo->max_queue = cfg->max_queue;
	model_load_opts_default(&lo->mo);
	if (cfg->has_pages)
		lo->mo.mem.pages = lo->mo.kv_mem.pages = cfg->pages;
	/* one kv_type for keys and values */
	lo->mo.kv_type_k = lo->mo.kv_type_v =
	    config_model_kv_type(cfg, name) == CONFIG_KV_Q8_0 ?
	    KERN_TYPE_Q8_0 : KERN_TYPE_F16;
}

/* Bind the memory of a load to its placement (not on a simulated or
 * single-node topology). */
static void
reg_bind(struct reg_model *rm)
{
	const struct numa_place *p = &rm->place;
	struct mem_params *w = &rm->lo.mo.mem, *kv = &rm->lo.mo.kv_mem;

	rm->lo.mo.cancel = &rm->cancel;
	if (reg_topo.simulated || p->single_node || !reg_topo.libnuma)
		return;
	/* replicate: m->weights is the first node's copy (reg_replicate
	 * makes the others) */
	w->nodes = numa_place_kernel_nodes(&reg_topo,
	    p->policy == NUMA_POLICY_REPLICATE ? p->weight_nodes &
	    -p->weight_nodes : p->weight_nodes);
	w->numa = p->policy == NUMA_POLICY_INTERLEAVE ? MEM_NUMA_INTERLEAVE :
	    MEM_NUMA_PREFERRED;
	if (p->kv_node >= 0) {
		kv->numa = MEM_NUMA_PREFERRED;
		kv->nodes = numa_place_kernel_nodes(&reg_topo,
		    (uint64_t)1 << p->kv_node);
	} else {
		kv->numa = MEM_NUMA_INTERLEAVE;
		kv->nodes = w->nodes;
	}
}

/* Free the copies of the weights reg_replicate made. */
static void
reg_free_replicas(struct reg_model *rm)
{
	uint32_t i;

	for (i = 0; i < NUMA_MAX_NODES; i++) {
		mem_region_free(rm->replicas[i]);
		rm->replicas[i] = NULL;
	}
	rm->copies_made = 0;
}

/*
 * Loader thread: the worker pool of m on the placement's CPUs, worker i
 * on thread_cpu[i] (CPUs that do not exist here, as a simulated
 * topology's may, are not pinned), described in rm->pinning. 0 or
 * -errno with err.
 */
static int
reg_pin_threads(struct reg_model *rm, struct model *m, struct eng_err *err)
{
	const struct numa_place *p = &rm->place;
	struct numa_cpuset asked, got;
	struct kern_pool *pool;
	int cpus[KERN_POOL_MAX_THREADS];
	char a[160], g[160];
	uint32_t n = p->n_threads, i, n_pinned = 0;
	const char *pin = getenv("HEARTH_PIN");
	int r;

	if (n == 0) {
		snprintf(rm->pinning, sizeof(rm->pinning), "%u threads, not "
		    "pinned (the placement has no CPUs)", model_threads(m));
		return 0;
	}
	if (n > KERN_POOL_MAX_THREADS)
		n = KERN_POOL_MAX_THREADS;
	numa_cpuset_clear(&asked);
	numa_cpuset_clear(&got);
	for (i = 0; i < n; i++) {
		cpus[i] = p->thread_cpu[i];
		numa_cpuset_add(&asked, p->thread_cpu[i]);
	}
	if ((r = kern_pool_new_cpus(n, cpus, &pool)) < 0)
		return err_set(err, r, "cannot start %u worker threads: %s",
		    n, strerror(-r));
	if ((r = model_set_pool(m, pool)) < 0) {
		kern_pool_free(pool);
		return err_set(err, r, "cannot use the worker threads: %s",
		    strerror(-r));
	}
	for (i = 0; i < n; i++)
		if (kern_pool_cpu(pool, i) >= 0) {
			numa_cpuset_add(&got, (uint32_t)kern_pool_cpu(pool, i));
			n_pinned++;
		}
	numa_cpuset_format(&asked, a, sizeof(a));
	numa_cpuset_format(&got, g, sizeof(g));
	if (n_pinned == n)
		snprintf(rm->pinning, sizeof(rm->pinning), "%u thread%s "
		    "pinned to CPUs %s", n, n == 1 ? "" : "s", g);
	else if (pin != NULL && strcmp(pin, "0") == 0)
		snprintf(rm->pinning, sizeof(rm->pinning), "%u thread%s on "
		    "CPUs %s, not pinned (HEARTH_PIN=0)", n, n == 1 ? "" : "s",
		    a);
	else
		snprintf(rm->pinning, sizeof(rm->pinning), "%u thread%s for "
		    "CPUs %s: %u pinned (CPUs %s), %u not pinned: %s", n,
		    n == 1 ? "" : "s", a, n_pinned, g, n - n_pinned,
		    reg_topo.simulated ? "their CPUs do not exist on this "
		    "machine (simulated topology)" : "this process may not "
		    "use their CPUs");
	return 0;
}

/*
 * Loader thread, REPLICATE on several nodes: a copy of the weights on
 * every node of the placement but the first (whose copy is m->weights),
 * bound there on a real machine; each worker of the pool then reads its
 * own node's copy through its offset. A copy that cannot be made leaves
 * that node's workers on the first copy (logged by reg_loaded). 0 or
 * -ECANCELED.
 */
static int
reg_replicate(struct reg_model *rm, struct model *m)
{
	const struct numa_place *p = &rm->place;
	struct eng_err ee = { "" };
	struct mem_params mp;
	uint32_t i, first;

	rm->copies_made = 1;
	if (p->policy != NUMA_POLICY_REPLICATE || p->single_node ||
	    p->weight_nodes == 0)
		return 0;
	first = (uint32_t)__builtin_ctzll(p->weight_nodes);
	for (i = first + 1; i < reg_topo.n_nodes && i < 64; i++) {
		if (!(p->weight_nodes >> i & 1))
			continue;
		if (atomic_load(&rm->cancel))
			return -ECANCELED;
		mp = rm->lo.mo.mem;
		mp.numa = MEM_NUMA_NONE;
		mp.nodes = 0;
		if (!reg_topo.simulated && reg_topo.libnuma) {
			mp.numa = MEM_NUMA_PREFERRED;
			mp.nodes = numa_place_kernel_nodes(&reg_topo,
			    (uint64_t)1 << i);
		}
		if (mem_region_copy(m->weights, &mp, NULL, &rm->replicas[i],
		    &ee) < 0) {
			rm->replicas[i] = NULL;
			continue;
		}
		if (rm->lo.mo.lock)
			(void)mem_region_lock(rm->replicas[i], &ee);
		rm->copies_made++;
	}
	for (i = 0; i < kern_pool_threads(m->pool) && i < p->n_threads; i++) {
		const struct mem_region *c = rm->replicas[p->thread_node[i]];

		kern_pool_set_offset(m->pool, i, c == NULL ? 0 :
		    (ptrdiff_t)((uintptr_t)c->addr - (uintptr_t)m->mem));
	}
	return 0;
}

/* The loader thread: read the weights, start the scheduler. */
static void *
reg_load_main(void *arg)
{
	struct reg_model *rm = arg;
	struct srv *s = rm->reg->srv;
	struct eng_err err = { "" };
	struct model *m = NULL;
	struct sched *sc = NULL;
	int r;

	r = model_open_opts(rm->path, &rm->lo.mo, reg_load_progress, rm, &m,
	    &err);
	/* the workers on the placement's CPUs (its thread count: lo.threads
	 * capped to the CPUs, or the physical cores of its nodes) */
	if (r == 0 && (r = reg_pin_threads(rm, m, &err)) == 0 &&
	    (r = reg_replicate(rm, m)) < 0)
		err_set(&err, r, "cancelled");
	if (r < 0) {
		reg_free_replicas(rm);
		model_free(m);
		m = NULL;
	}
	if (r == 0) {
		reg_sched_params(&rm->lo, s, m, &rm->sp);
		if ((r = sched_new(m, &rm->sp, srv_post_frame, s, &sc,
		    &err)) < 0) {
			reg_free_replicas(rm);
			model_free(m);
			m = NULL;
		}
	}
	srv_post_loaded(s, rm, m, sc, r, err.msg);
	return NULL;
}

static int
reg_start_load(struct reg_model *rm, struct proto_err *err)
{
	int r;

	atomic_store(&rm->cancel, false);
	rm->prog_posted = 0;
	rm->prog_done = rm->prog_total = 0;
	rm->load_start = srv_now();
	rm->state = REG_LOADING;
	if ((r = pthread_create(&rm->thread, NULL, reg_load_main, rm)) != 0)
		return proto_err_set(err, PROTO_E_INTERNAL, -r,
		    "cannot start a loader thread: %s", strerror(r));
	rm->thread_live = true;
	log_info("registry: loading %s", rm->name);
	return 0;
}

static void reg_ka_cb(evutil_socket_t, short, void *);

/* ---- residency: cost, placement, budget ---- */

int
reg_memory_init(const char *topo_file, char *err, size_t errsize)
{
	struct eng_err ee = { "" };
	char buf[4096], *line, *save = NULL;
	uint64_t ram = 0;
	int rc;

	if (topo_file != NULL)
		rc = numa_topo_load(topo_file, &reg_topo, &ee);
	else
		rc = numa_topo_read(&reg_topo, &ee);
	if (rc < 0) {
		snprintf(err, errsize, "NUMA topology%s%s: %s", topo_file ?
		    " " : "", topo_file ? topo_file : "", ee.msg);
		return rc;
	}
	if ((rc = budget_ram_total(&ram)) < 0) {
		log_warnx("registry: cannot read the RAM size (%s); the "
		    "default memory budget is unlimited", strerror(-rc));
		ram = UINT64_MAX / 100;
	}
	reg_ram = ram;
	reg_topo_ok = true;
	log_info("registry: NUMA topology: %u node%s (%s)", reg_topo.n_nodes,
	    reg_topo.n_nodes == 1 ? "" : "s", reg_topo.simulated ?
	    "simulated" : reg_topo.libnuma ? "libnuma" : "no NUMA");
	if (numa_topo_format(&reg_topo, buf, sizeof(buf)) == 0)
		for (line = strtok_r(buf, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			log_info("registry: topology: %s", line);
	return 0;
}

const struct numa_topo *
reg_topology(void)
{
	return &reg_topo;
}

uint64_t
reg_budget(const struct registry *r)
{
	const char *b = r->srv->cfg->memory_budget;
	uint64_t v;

	if (b != NULL && budget_parse(b, reg_ram, &v) == 0)
		return v;
	return budget_default(reg_ram);
}


/* The NUMA policy of a model: its [model] section, else [daemon]'s. */
static enum numa_policy
reg_policy(const struct config *cfg, const char *name)
{
	const struct config_model *cm = config_model_find(cfg, name);

	if (cm != NULL && cm->has_numa)
		return cm->numa;
	return cfg->has_numa ? cfg->numa : NUMA_POLICY_AUTO;
}

/*
 * REPLICATE on several nodes: a copy of the weights only on the nodes
 * where workers run (a node whose CPUs are all taken, or a thread count
 * below the node count, leaves one without); at least one copy. The
 * placement's memory per node (weight_bytes a copy) and its reason say
 * so.
 */
static void
reg_trim_replicas(struct numa_place *p, uint64_t weight_bytes)
{
	uint64_t workers = 0, drop;
	char ids[160];
	size_t len, o = 0;
	uint32_t i;

	if (p->policy != NUMA_POLICY_REPLICATE || p->single_node ||
	    p->weight_nodes == 0)
		return;
	for (i = 0; i < p->n_threads && i < NUMA_MAX_THREADS; i++)
		if (p->thread_node[i] < 64)
			workers |= (uint64_t)1 << p->thread_node[i];
	if ((p->weight_nodes & workers) == 0)	/* keep the first copy */
		workers = p->weight_nodes & -p->weight_nodes;
	if ((drop = p->weight_nodes & ~workers) == 0)
		return;
	ids[0] = '\0';
	for (i = 0; i < reg_topo.n_nodes && i < 64; i++) {
		if (!(drop >> i & 1))
			continue;
		p->node_bytes[i] = p->node_bytes[i] > weight_bytes ?
		    p->node_bytes[i] - weight_bytes : 0;
		if (o < sizeof(ids))
			o += (size_t)snprintf(ids + o, sizeof(ids) - o, "%s%u",
			    o > 0 ? "," : "", reg_topo.nodes[i].id);
	}
	p->weight_nodes &= ~drop;
	len = strlen(p->reason);
	if (len < sizeof(p->reason))
		snprintf(p->reason + len, sizeof(p->reason) - len, "; no "
		    "worker on node%s %s: no copy there", __builtin_popcountll(
		    drop) == 1 ? "" : "s", ids);
}

/*
 * A model's cost and placement from its file's header h, with the load
 * options lo: 0, or -errno with err (model_error).
 */
static int
reg_estimate(struct registry *r, const char *name, const struct reg_hdr *h,
    const struct reg_load_opts *lo, enum numa_policy policy,
    struct budget_cost *cost, uint32_t *n_ctx, struct numa_place *place,
    uint32_t *copies, struct proto_err *err)
{
	struct budget_shape sh;
	struct numa_want w;
	int rc;

	if (h == NULL)
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	if (h->open_rc < 0)
		return proto_err_set(err, h->open_rc == -ENOMEM ?
		    PROTO_E_INTERNAL : PROTO_E_MODEL_ERROR, h->open_rc,
		    "cannot load model %s: %s", name, h->open_msg);
	if (h->shape_rc < 0)
		return proto_err_set(err, PROTO_E_MODEL_ERROR, h->shape_rc,
		    "cannot load model %s: %s", name, h->shape_msg);
	sh = h->shape;
	/* as reg_sched_params will set it */
	sh.n_ctx = 4096;
	if (sh.n_ctx_train > 0 && sh.n_ctx_train < sh.n_ctx)
		sh.n_ctx = sh.n_ctx_train;
	if (lo->n_ctx != 0) {
		sh.n_ctx = lo->n_ctx;
		if (sh.n_ctx_train > 0 && sh.n_ctx > sh.n_ctx_train)
			sh.n_ctx = sh.n_ctx_train;
	}
	sh.n_parallel = lo->n_parallel;
	sh.kv_type = lo->mo.kv_type_k == KERN_TYPE_Q8_0 ? BUDGET_KV_Q8_0 :
	    BUDGET_KV_F16;
	sh.copies = 1;		/* one copy to place; replicate: see below */
	sh.scratch_bytes = budget_scratch_estimate(&sh, lo->n_batch);
	if ((rc = budget_cost(&sh, cost)) < 0)
		return proto_err_set(err, PROTO_E_MODEL_ERROR, rc,
		    "model %s: its memory does not fit in 64 bits", name);
	memset(&w, 0, sizeof(w));
	w.weight_bytes = cost->weights;
	w.other_bytes = cost->kv + cost->scratch;
	w.policy = policy;
	w.threads = lo->threads;
	if ((rc = numa_place(&reg_topo, &r->usage, &w, place)) < 0)
		return proto_err_set(err, PROTO_E_INTERNAL, rc,
		    "model %s: no NUMA placement: %s", name, strerror(-rc));
	reg_trim_replicas(place, cost->weights);
	/* replicate on several nodes: the budget counts every copy */
	*copies = 1;
	if (place->policy == NUMA_POLICY_REPLICATE && !place->single_node &&
	    place->weight_nodes != 0) {
		sh.copies = (uint32_t)__builtin_popcountll(place->weight_nodes);
		if ((rc = budget_cost(&sh, cost)) < 0)
			return proto_err_set(err, PROTO_E_MODEL_ERROR, rc,
			    "model %s: its memory does not fit in 64 bits",
			    name);
		*copies = sh.copies;
	}
	*n_ctx = sh.n_ctx;
	return 0;
}

/* Give back what rm was admitted with. */
static void
reg_release(struct reg_model *rm)
{
	if (!rm->admitted)
		return;
	numa_usage_sub(&rm->reg->usage, &rm->place);
	rm->admitted = false;
}

/*
 * Admit rm (not admitted yet; it may be in the list) at its cost:
 * unload the idle models the budget says must go, or refuse with the
 * numbers. 0 or -errno with err.
 */
static int
reg_admit(struct registry *r, struct reg_model *rm, struct proto_err *err)
{
	struct budget_model *res = NULL;
	struct budget_decision dec;
	struct reg_model *o, **idx = NULL, **victims = NULL;
	size_t n = 0, i, *evict = NULL;
	uint64_t budget = reg_budget(r), busy_unpinned = 0;
	char w[32], k[32], sc[32];
	int rc = 0;

	if (r->n_models > 0 && ((res = calloc(r->n_models, sizeof(*res))) ==
	    NULL || (idx = calloc(r->n_models, sizeof(*idx))) == NULL ||
	    (evict = calloc(r->n_models, sizeof(*evict))) == NULL ||
	    (victims = calloc(r->n_models, sizeof(*victims))) == NULL)) {
		rc = proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
		goto out;
	}
	TAILQ_FOREACH(o, &r->models, entry) {
		if (o == rm || !o->admitted || n >= r->n_models)
			continue;
		res[n].name = o->name;
		res[n].bytes = o->cost.total;
		res[n].last_use = (uint64_t)(o->last_use * 1e6);
		res[n].pinned = o->pinned;
		res[n].busy = o->state != REG_RESIDENT || o->active > 0 ||
		    !TAILQ_EMPTY(&o->waiters);
		if (res[n].busy && !res[n].pinned)
			busy_unpinned += res[n].bytes;
		idx[n++] = o;
	}
	if ((rc = budget_admit(budget, r->srv->cfg->max_models, res, n,
	    rm->name, rm->cost.total, evict, &dec)) < 0) {
		rc = proto_err_set(err, PROTO_E_INTERNAL, rc,
		    "model %s: cannot count the memory of resident models",
		    rm->name);
		goto out;
	}
	switch (dec.verdict) {
	case BUDGET_FITS:
		break;
	case BUDGET_EVICT:
		log_info("registry: %s", dec.message);
		for (i = 0; i < dec.n_evict; i++)
			victims[i] = idx[evict[i]];
		for (i = 0; i < dec.n_evict; i++) {
			log_info("registry: evicting %s (idle, unpinned, least "
			    "recently used)", victims[i]->name);
			reg_unload_now(victims[i]);	/* frees it: idle */
		}
		break;
	case BUDGET_REFUSE:
		mem_fmt_bytes(rm->cost.weights, w, sizeof(w));
		mem_fmt_bytes(rm->cost.kv, k, sizeof(k));
		mem_fmt_bytes(rm->cost.scratch, sc, sizeof(sc));
		log_warnx("registry: refusing %s: %s (weights %s, KV %s, "
		    "scratch %s)", rm->name, dec.message, w, k, sc);
		/* busy models may go idle: retry later; else it never fits */
		rc = proto_err_set(err, busy_unpinned > 0 ||
		    (r->srv->cfg->max_models > 0 &&
		    n >= r->srv->cfg->max_models && rm->cost.total <=
		    budget) ? PROTO_E_BUSY : PROTO_E_TOO_LARGE, -ENOMEM,
		    "%s (weights %s, KV %s, scratch %s)", dec.message, w, k,
		    sc);
		goto out;
	}
	numa_usage_add(&r->usage, &rm->place);
	rm->admitted = true;
out:
	free(res);
	free(idx);
	free(evict);
	free(victims);
	return rc;
}

/* Cost, place and admit rm for a (re)load from its header h; 0 or -errno
 * with err. */
static int
reg_prepare(struct reg_model *rm, const struct reg_hdr *h,
    struct proto_err *err)
{
	struct registry *r = rm->reg;
	int rc;

	reg_release(rm);	/* a load that failed before it ended */
	reg_load_opts(r->srv->cfg, rm->name, &rm->lo);
	rm->policy = rm->numa_asked >= 0 ? (enum numa_policy)rm->numa_asked :
	    reg_policy(r->srv->cfg, rm->name);
	if ((rc = reg_estimate(r, rm->name, h, &rm->lo, rm->policy,
	    &rm->cost, &rm->n_ctx, &rm->place, &rm->n_copies, err)) < 0)
		return rc;
	reg_bind(rm);
	return reg_admit(r, rm, err);
}

/*
 * Start a (re)load of rm: cost, place, admit and start the loader when
 * its header is cached; else ask for the header (rm waits, LOADING, and
 * reg_admit_done goes on). 0 or -errno with err.
 */
static int
reg_begin(struct reg_model *rm, struct proto_err *err)
{
	struct registry *r = rm->reg;
	struct reg_hdr *h = NULL;
	struct reg_meta *m;
	struct stat st;
	char *path;
	int rc;

	if (stat(rm->path, &st) == 0) {
		struct reg_key k;

		reg_key_of(&st, &k);
		h = reg_cache_find(r, rm->path, &k);
	}
	if (h != NULL) {
		if ((rc = reg_prepare(rm, h, err)) < 0)
			return rc;
		return reg_start_load(rm, err);
	}
	/* a file that cannot be stat'ed: gguf_open says why */
	if ((m = reg_meta_alloc(r, REG_META_ADMIT, 1)) == NULL ||
	    (path = strdup(rm->path)) == NULL) {
		reg_meta_free(m);
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	}
	reg_meta_item(m, rm->name, path, NULL);
	if (stat(rm->path, &st) == 0)
		reg_key_of(&st, &m->items[0].key);
	if ((rc = reg_meta_start(m)) < 0) {
		reg_meta_free(m);
		return proto_err_set(err, PROTO_E_INTERNAL, rc, rc == -ENOMEM ?
		    "out of memory" : "cannot start a header thread: %s",
		    strerror(-rc));
	}
	reg_release(rm);
	m->rm = rm;
	rm->hdr_wait = m;
	rm->state = REG_LOADING;
	rm->load_start = srv_now();
	return 0;
}

static void reg_fail_waiters(struct reg_model *rm, enum proto_code code,
	    const char *msg);
static void reg_remove(struct reg_model *rm);
static void reg_answer_unloaders(struct reg_model *rm);
static void reg_after_unload(struct reg_model *rm);

/* The header of a load came (m: REG_META_ADMIT): go on with it. */
static void
reg_admit_done(struct reg_meta *m)
{
	struct reg_model *rm = m->rm;
	struct proto_err e;
	struct dreq *d;
	int rc;

	m->rm = NULL;
	rm->hdr_wait = NULL;
	memset(&e, 0, sizeof(e));
	if (rm->unload_asked) {
		/* unloaded before it loaded: as a cancelled load */
		reg_meta_free(m);
		log_info("registry: loading %s cancelled", rm->name);
		reg_answer_unloaders(rm);
		reg_after_unload(rm);
		return;
	}
	if ((rc = reg_prepare(rm, m->items[0].hdr, &e)) == 0)
		rc = reg_start_load(rm, &e);
	reg_meta_free(m);
	if (rc == 0)
		return;
	if (e.code == PROTO_E_NONE)
		e.code = PROTO_E_INTERNAL;
	if (rm->preload)
		log_warnx("registry: cannot preload %s: %s", rm->name, e.msg);
	if (rm->again) {
		reg_fail_waiters(rm, PROTO_E_INTERNAL, e.msg);
	} else {
		/* as reg_use would have answered at once */
		while ((d = TAILQ_FIRST(&rm->waiters)) != NULL) {
			TAILQ_REMOVE(&rm->waiters, d, model_entry);
			d->model = NULL;
			d->state = DREQ_NONE;
			log_debug("conn %llu: %s %llu: %s",
			    (unsigned long long)d->conn->id,
			    proto_msg_name(d->type) ? proto_msg_name(d->type) :
			    "?", (unsigned long long)d->id, e.msg);
			dispatch_fail(d, e.code, "%s", e.msg[0] ? e.msg :
			    "internal error");
		}
	}
	srv_changed(rm->reg->srv);
	reg_remove(rm);
}

int
reg_use(struct registry *r, const char *name, bool has_ka, int64_t keep_alive,
    struct reg_model **out, struct proto_err *err)
{
	return reg_use_numa(r, name, has_ka, keep_alive, -1, out, err);
}

int
reg_use_numa(struct registry *r, const char *name, bool has_ka,
    int64_t keep_alive, int numa, struct reg_model **out,
    struct proto_err *err)
{
	const struct config_model *cm;
	struct reg_model *rm;
	char *path = NULL;
	int rc;

	if (numa > (int)NUMA_POLICY_REPLICATE)
		return proto_err_set(err, PROTO_E_BAD_REQUEST, -EINVAL,
		    "bad numa policy");
	if ((rm = reg_find(r, name)) != NULL && numa >= 0 &&
	    (enum numa_policy)numa != rm->policy &&
	    (enum numa_policy)numa != rm->place.policy) {
		/* placed otherwise: place it again when nothing uses it */
		if (rm->state != REG_RESIDENT || rm->active > 0 ||
		    !TAILQ_EMPTY(&rm->waiters))
			return proto_err_set(err, PROTO_E_BUSY, -EBUSY,
			    "model %s is %s with numa policy %s; retry when "
			    "it is idle, or unload it first", name,
			    rm->state == REG_RESIDENT ? "in use" : "loading",
			    numa_policy_name(rm->policy));
		log_info("registry: %s: numa %s asked (was %s): loading it "
		    "again", name, numa_policy_name((enum numa_policy)numa),
		    numa_policy_name(rm->policy));
		reg_unload_now(rm);	/* idle: frees it */
		rm = NULL;
	}
	if (rm != NULL) {
		if (has_ka)
			rm->keep_alive = keep_alive;
		*out = rm;
		return 0;
	}
	if ((rc = reg_path(r, name, &path, err)) < 0)
		return rc;
	if ((rm = calloc(1, sizeof(*rm))) == NULL ||
	    (rm->name = strdup(name)) == NULL ||
	    (rm->ka_timer = evtimer_new(r->srv->base, reg_ka_cb, rm)) ==
	    NULL) {
		if (rm != NULL)
			free(rm->name);
		free(rm);
		free(path);
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	}
	rm->reg = r;
	rm->path = path;
	cm = config_model_find(r->srv->cfg, name);
	rm->pinned = cm != NULL && cm->pin;
	rm->pin_asked = -1;
	rm->numa_asked = numa;
	if (has_ka)
		rm->keep_alive = keep_alive;
	else if (cm != NULL && cm->has_keep_alive)
		rm->keep_alive = cm->keep_alive;
	else
		rm->keep_alive = r->srv->cfg->keep_alive;
	rm->last_use = srv_now();
	TAILQ_INIT(&rm->waiters);
	TAILQ_INIT(&rm->unloaders);
	rm->state = REG_LOADING;
	if ((rc = reg_begin(rm, err)) < 0) {
		reg_model_free(rm);
		return rc;
	}
	TAILQ_INSERT_TAIL(&r->models, rm, entry);
	r->n_models++;
	*out = rm;
	return 0;
}

void
reg_wait(struct reg_model *rm, struct dreq *d)
{
	d->model = rm;
	d->state = DREQ_WAITING;
	TAILQ_INSERT_TAIL(&rm->waiters, d, model_entry);
	srv_changed(rm->reg->srv);
	reg_check_idle(rm);
}

void
reg_running(struct reg_model *rm, struct dreq *d)
{
	d->model = rm;
	d->state = DREQ_RUNNING;
	rm->active++;
	rm->last_use = srv_now();
	srv_changed(rm->reg->srv);
	reg_check_idle(rm);
}

void
reg_detach(struct dreq *d)
{
	struct reg_model *rm = d->model;

	if (d->state == DREQ_META) {
		if (d->conn->srv->reg != NULL)
			reg_meta_detach(d->conn->srv->reg, d);
		d->state = DREQ_NONE;
		return;
	}
	if (rm == NULL)
		return;
	switch (d->state) {
	case DREQ_WAITING:
		TAILQ_REMOVE(&rm->waiters, d, model_entry);
		break;
	case DREQ_UNLOADING:
		TAILQ_REMOVE(&rm->unloaders, d, model_entry);
		break;
	case DREQ_RUNNING:
		rm->active--;
		rm->last_use = srv_now();
		break;
	case DREQ_NONE:
	case DREQ_HELD:
	case DREQ_META:
		break;
	}
	d->model = NULL;
	d->state = DREQ_NONE;
	reg_check_idle(rm);	/* may free rm */
}

/* Arm or disarm the keep-alive; finish an unload that waited. */
static void
reg_check_idle(struct reg_model *rm)
{
	struct timeval tv;

	if (rm->state == REG_UNLOADING) {
		if (rm->active == 0)
			reg_unload_now(rm);
		return;
	}
	if (rm->state != REG_RESIDENT || rm->active > 0 ||
	    !TAILQ_EMPTY(&rm->waiters) || rm->keep_alive < 0 || rm->pinned) {
		evtimer_del(rm->ka_timer);
		rm->ka_expire = 0;
		return;
	}
	tv.tv_sec = (time_t)rm->keep_alive;
	tv.tv_usec = 0;
	evtimer_add(rm->ka_timer, &tv);
	rm->ka_expire = srv_now() + (double)rm->keep_alive;
}

static void
reg_ka_cb(evutil_socket_t fd, short what, void *arg)
{
	struct reg_model *rm = arg;

	(void)fd;
	(void)what;
	rm->ka_expire = 0;
	if (rm->state != REG_RESIDENT || rm->active > 0 || rm->pinned ||
	    !TAILQ_EMPTY(&rm->waiters))
		return;
	log_info("registry: unloading %s: idle for %lld s", rm->name,
	    (long long)rm->keep_alive);
	reg_unload_now(rm);
}

/* Answer an unload request: the model is gone. */
static void
reg_answer_unload(struct dreq *d)
{
	struct proto_response resp;

	proto_response_init(&resp, PROTO_MSG_REPLY, d->id);
	resp.request = PROTO_MSG_UNLOAD;
	conn_reply(d->conn, &resp);
	conn_req_end(d);
}

/* Answer every unload request waiting on rm. */
static void
reg_answer_unloaders(struct reg_model *rm)
{
	struct dreq *d;

	while ((d = TAILQ_FIRST(&rm->unloaders)) != NULL) {
		TAILQ_REMOVE(&rm->unloaders, d, model_entry);
		d->model = NULL;
		d->state = DREQ_NONE;
		reg_answer_unload(d);
	}
	rm->unload_asked = false;
}

/* Fail every request waiting on rm. */
static void
reg_fail_waiters(struct reg_model *rm, enum proto_code code, const char *msg)
{
	struct dreq *d;

	while ((d = TAILQ_FIRST(&rm->waiters)) != NULL) {
		TAILQ_REMOVE(&rm->waiters, d, model_entry);
		d->model = NULL;
		d->state = DREQ_NONE;
		dispatch_fail(d, code, "cannot load model %s: %s", rm->name,
		    msg);
	}
}

/* Remove rm from the registry and free it. */
static void
reg_remove(struct reg_model *rm)
{
	struct registry *r = rm->reg;

	TAILQ_REMOVE(&r->models, rm, entry);
	r->n_models--;
	reg_model_free(rm);
}

/*
 * Requests came for rm while it went away: load it again, or fail them.
 * Frees rm when nothing waits.
 */
static void
reg_after_unload(struct reg_model *rm)
{
	struct proto_err e;

	if (TAILQ_EMPTY(&rm->waiters) || rm->reg->srv->stopping) {
		reg_fail_waiters(rm, PROTO_E_INTERNAL, "the server is "
		    "stopping");
		reg_remove(rm);
		return;
	}
	memset(&e, 0, sizeof(e));
	rm->again = true;
	if (reg_begin(rm, &e) < 0) {
		reg_fail_waiters(rm, PROTO_E_INTERNAL, e.msg);
		reg_remove(rm);
	}
}

/* Stop the scheduler and free the weights now; rm may be freed. */
static void
reg_unload_now(struct reg_model *rm)
{
	struct registry *r = rm->reg;
	struct sched_stats st;

	evtimer_del(rm->ka_timer);
	rm->ka_expire = 0;
	if (rm->s != NULL) {
		sched_get_stats(rm->s, &st);
		r->gone_prompt += st.prompt_tokens;
		r->gone_generated += st.generated_tokens;
		/* requests still there belong to dropped connections */
		sched_free(rm->s);
		rm->s = NULL;
	}
	if (rm->m != NULL) {
		log_info("registry: unloaded %s (%.1f MB)", rm->name,
		    (double)rm->m->mem_size * rm->copies_made / 1e6);
		model_free(rm->m);
		rm->m = NULL;
	}
	reg_free_replicas(rm);
	reg_release(rm);
	rm->state = REG_LOADING;	/* neither resident nor unloading */
	rm->active = 0;
	srv_changed(r->srv);
	reg_answer_unloaders(rm);
	reg_after_unload(rm);
}

void
reg_progress(struct reg_model *rm, uint64_t done, uint64_t total)
{
	struct proto_response resp;
	struct dreq *d;

	rm->prog_done = done;
	rm->prog_total = total;
	TAILQ_FOREACH(d, &rm->waiters, model_entry) {
		if (d->type != PROTO_MSG_LOAD)
			continue;
		proto_response_init(&resp, PROTO_MSG_PROGRESS, d->id);
		resp.u.progress.done = done <= total ? done : total;
		resp.u.progress.total = total;
		conn_reply(d->conn, &resp);
	}
}

/* Pages of the weights, every copy (zero when not resident). */
static void
reg_weight_usage(const struct reg_model *rm, struct mem_usage *u)
{
	uint32_t i;

	memset(u, 0, sizeof(*u));
	if (rm->m == NULL || rm->m->weights == NULL)
		return;
	mem_usage_add(u, &rm->m->weights->usage);
	for (i = 0; i < NUMA_MAX_NODES; i++)
		if (rm->replicas[i] != NULL)
			mem_usage_add(u, &rm->replicas[i]->usage);
}

/* Resident bytes of the weights, every copy. */
static uint64_t
reg_weight_bytes(const struct reg_model *rm)
{
	return rm->m == NULL ? 0 : (uint64_t)rm->m->mem_size *
	    (rm->copies_made > 0 ? rm->copies_made : 1);
}

uint64_t
reg_model_weights(const struct reg_model *rm)
{
	return reg_weight_bytes(rm);
}

/* "pages" of a resident model: what its memory is known to be made of. */
static void
reg_pages(const struct reg_model *rm, char *buf, size_t size)
{
	struct mem_usage u;

	if (rm->m == NULL || rm->m->weights == NULL) {
		snprintf(buf, size, "not resident");
		return;
	}
	reg_weight_usage(rm, &u);
	mem_usage_format(&u, buf, size);
}

/* Copies of the weights: resident, else planned. */
static uint32_t
reg_copies(const struct reg_model *rm)
{
	if (rm->m != NULL && rm->copies_made > 0)
		return rm->copies_made;
	return rm->n_copies > 0 ? rm->n_copies : 1;
}

/* The placement of rm as one line. */
static void
reg_placement(const struct reg_model *rm, char *buf, size_t size)
{
	uint32_t copies = reg_copies(rm);
	char c[128];

	if (rm->place.policy != NUMA_POLICY_REPLICATE)
		c[0] = '\0';
	else if (rm->place.single_node)
		snprintf(c, sizeof(c), "; one copy of the weights (one node)");
	else if (copies == 1)
		snprintf(c, sizeof(c), "; one copy of the weights (workers on "
		    "one node)");
	else
		snprintf(c, sizeof(c), "; %u copies of the weights%s", copies,
		    rm->m != NULL && copies < rm->n_copies ? " (fewer than "
		    "planned: out of memory)" : "");
	snprintf(buf, size, "%s: %s (%s%s; %s)",
	    numa_policy_name(rm->place.policy), rm->place.reason,
	    reg_topo.simulated ? "simulated topology: memory not bound" :
	    rm->place.single_node ? "one node" : "memory bound", c,
	    rm->m != NULL && rm->pinning[0] != '\0' ? rm->pinning :
	    "not resident");
}

/* Log what a resident model costs, where it is and its residency. */
static void
reg_log_residency(const struct reg_model *rm)
{
	char w[32], k[32], sc[32], t[32], b[32], pages[96];
	char place[4 * NUMA_REASON_MAX];

	mem_fmt_bytes(rm->cost.weights, w, sizeof(w));
	mem_fmt_bytes(rm->cost.kv, k, sizeof(k));
	mem_fmt_bytes(rm->cost.scratch, sc, sizeof(sc));
	mem_fmt_bytes(rm->cost.total, t, sizeof(t));
	mem_fmt_bytes(reg_budget(rm->reg), b, sizeof(b));
	reg_pages(rm, pages, sizeof(pages));
	reg_placement(rm, place, sizeof(place));
	log_info("registry: %s memory: weights %s, KV %s (%s), scratch %s = "
	    "%s of budget %s; pages: %s; %s", rm->name, w, k,
	    kern_type_name(rm->lo.mo.kv_type_k), sc, t, b, pages,
	    rm->pinned ? "pinned" : "evictable when idle");
	log_info("registry: %s numa: %s", rm->name, place);
	log_info("registry: %s threads: %s", rm->name, rm->pinning);
	if (rm->place.policy == NUMA_POLICY_REPLICATE &&
	    rm->copies_made < rm->n_copies)
		log_warnx("registry: %s: only %u of %u copies of the weights "
		    "could be made (out of memory); the other nodes' workers "
		    "read the first copy", rm->name, rm->copies_made,
		    rm->n_copies);
}

void
reg_loaded(struct reg_model *rm, struct model *m, struct sched *s, int rc,
    const char *msg)
{
	struct sched_stats st;
	struct dreq *d;

	if (rm->thread_live) {
		pthread_join(rm->thread, NULL);
		rm->thread_live = false;
	}
	rm->load_ms = (srv_now() - rm->load_start) * 1e3;
	rm->preload = false;
	srv_changed(rm->reg->srv);
	if (rc < 0) {
		if (rc == -ECANCELED)
			log_info("registry: loading %s cancelled", rm->name);
		else
			log_warnx("registry: cannot load %s: %s", rm->name,
			    msg);
		if (rm->unload_asked) {
			reg_answer_unloaders(rm);
			reg_after_unload(rm);
			return;
		}
		reg_fail_waiters(rm, PROTO_E_MODEL_ERROR, msg[0] ? msg :
		    strerror(-rc));
		reg_remove(rm);
		return;
	}
	rm->m = m;
	rm->s = s;
	rm->state = REG_RESIDENT;
	rm->last_use = srv_now();
	sched_get_stats(s, &st);
	log_info("registry: loaded %s: %s, %.1f MiB weights, %.1f MiB KV "
	    "and scratch (%u slots of %u), %u threads, in %.0f ms", rm->name,
	    model_arch_name(m->hp.arch), (double)m->mem_size / 1048576.0,
	    (double)(st.kv_bytes + st.scratch_bytes) / 1048576.0,
	    rm->sp.n_parallel,
	    rm->sp.n_ctx, model_threads(m), rm->load_ms);
	reg_log_residency(rm);
	if (m->lock_status < 0)
		log_warnx("registry: %s: %s", rm->name, m->lock_warn.msg);
	if (rm->unload_asked) {
		reg_unload_now(rm);
		return;
	}
	while ((d = TAILQ_FIRST(&rm->waiters)) != NULL) {
		TAILQ_REMOVE(&rm->waiters, d, model_entry);
		d->state = DREQ_NONE;	/* d->model stays rm */
		dispatch_resume(d);
	}
	reg_check_idle(rm);
}

int
reg_unload(struct registry *r, const char *name, struct dreq *d,
    struct proto_err *err)
{
	struct reg_model *rm;
	char *path;
	int rc;

	if ((rm = reg_find(r, name)) == NULL) {
		if ((rc = reg_path(r, name, &path, err)) < 0)
			return rc;
		free(path);
		return 1;	/* not resident: nothing to do */
	}
	if (rm->state == REG_RESIDENT && rm->active == 0 &&
	    TAILQ_EMPTY(&rm->waiters)) {
		log_info("registry: unloading %s on request", rm->name);
		reg_unload_now(rm);
		return 1;
	}
	if (rm->state == REG_LOADING) {
		atomic_store(&rm->cancel, true);
	} else if (rm->state == REG_RESIDENT) {
		log_info("registry: unloading %s once its %u requests end",
		    rm->name, rm->active);
		rm->state = REG_UNLOADING;
		evtimer_del(rm->ka_timer);
		rm->ka_expire = 0;
	}
	rm->unload_asked = true;
	d->model = rm;
	d->state = DREQ_UNLOADING;
	TAILQ_INSERT_TAIL(&rm->unloaders, d, model_entry);
	if (rm->state == REG_UNLOADING && rm->active == 0)
		reg_unload_now(rm);	/* only waiters were left */
	return 0;
}

void
reg_drop_conn(struct registry *r, uint64_t conn_id)
{
	struct reg_model *rm;

	TAILQ_FOREACH(rm, &r->models, entry)
		if (rm->s != NULL)
			sched_drop_conn(rm->s, conn_id);
}

void
reg_pause_conn(struct registry *r, uint64_t conn_id, bool paused)
{
	struct reg_model *rm;

	TAILQ_FOREACH(rm, &r->models, entry)
		if (rm->s != NULL)
			sched_pause_conn(rm->s, conn_id, paused);
}

static void
reg_model_free(struct reg_model *rm)
{
	struct dreq *d;

	if (rm == NULL)
		return;
	if (rm->hdr_wait != NULL) {
		rm->hdr_wait->rm = NULL;	/* dropped when read */
		rm->hdr_wait = NULL;
	}
	while ((d = TAILQ_FIRST(&rm->waiters)) != NULL) {
		TAILQ_REMOVE(&rm->waiters, d, model_entry);
		d->model = NULL;
		d->state = DREQ_NONE;
	}
	while ((d = TAILQ_FIRST(&rm->unloaders)) != NULL) {
		TAILQ_REMOVE(&rm->unloaders, d, model_entry);
		d->model = NULL;
		d->state = DREQ_NONE;
	}
	sched_free(rm->s);
	model_free(rm->m);
	reg_free_replicas(rm);
	reg_release(rm);
	if (rm->ka_timer != NULL)
		event_free(rm->ka_timer);
	free(rm->name);
	free(rm->path);
	free(rm);
}

/* ---- replies ---- */

static struct reg_reply_mem *
reg_reply_mem(struct proto_response *resp)
{
	struct reg_reply_mem *mem = calloc(1, sizeof(*mem));

	resp->mem = mem;
	return mem;
}

void
reg_reply_free(struct proto_response *resp)
{
	struct reg_reply_mem *mem = resp->mem;

	if (mem == NULL)
		return;
	free(mem->array);
	free(mem->labels);
	meta_show_free(&mem->show);
	free(mem);
	resp->mem = NULL;
}

static int
reg_cmp_info(const void *a, const void *b)
{
	const struct proto_model_info *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* List: the directory now, filtered; headers from the cache. */
static int
reg_meta_list(struct registry *r, reg_filter_fn filter, void *arg,
    struct reg_meta **out, struct proto_err *err)
{
	struct reg_meta *m = NULL;
	struct reg_item *ni;
	struct reg_cache *ce, *tmp;
	struct dirent *de;
	struct proto_err fe;
	struct stat st;
	char name[NAME_MAX + 1], *path;
	size_t len, cap = 16;
	bool whole = true;
	DIR *dir;

	if ((m = reg_meta_alloc(r, REG_META_LIST, cap)) == NULL)
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	if ((dir = opendir(r->dir)) == NULL) {
		reg_meta_free(m);
		return proto_err_set(err, PROTO_E_INTERNAL, -errno,
		    "models directory %s: %s", r->dir, strerror(errno));
	}
	TAILQ_FOREACH(ce, &r->cache, entry)
		ce->seen = false;
	while ((de = readdir(dir)) != NULL) {
		if (m->n_items >= r->srv->limits.max_items) {
			whole = false;
			break;
		}
		len = strlen(de->d_name);
		if (len <= REG_EXT_LEN ||
		    strcmp(de->d_name + len - REG_EXT_LEN, REG_EXT) != 0)
			continue;
		memcpy(name, de->d_name, len - REG_EXT_LEN);
		name[len - REG_EXT_LEN] = '\0';
		if (proto_check_model_name(name, NULL) < 0)
			continue;
		if (asprintf(&path, "%s/%s", r->dir, de->d_name) < 0) {
			whole = false;
			break;
		}
		/* a file still here keeps its header (list or not) */
		TAILQ_FOREACH(ce, &r->cache, entry)
			if (strcmp(ce->path, path) == 0)
				ce->seen = true;
		memset(&fe, 0, sizeof(fe));
		if ((filter != NULL && !filter(name, arg)) ||
		    reg_check_file(r, name, path, &st, &fe) < 0) {
			free(path);
			continue;
		}
		if (m->n_items == cap) {
			cap *= 2;
			if ((ni = realloc(m->items, cap * sizeof(*ni))) ==
			    NULL) {
				free(path);
				whole = false;
				break;
			}
			m->items = ni;
			memset(ni + m->n_items, 0, (cap - m->n_items) *
			    sizeof(*ni));
		}
		reg_meta_item(m, name, path, &st);
	}
	closedir(dir);
	/* forget files that are gone */
	for (ce = TAILQ_FIRST(&r->cache); whole && ce != NULL; ce = tmp) {
		tmp = TAILQ_NEXT(ce, entry);
		if (!ce->seen && strncmp(ce->path, r->dir, strlen(r->dir)) ==
		    0)
			reg_cache_remove(r, ce);
	}
	*out = m;
	return 0;
}

/* Show, render: the resident model, else the file's header. */
static int
reg_meta_model(struct registry *r, enum reg_meta_kind kind, const char *name,
    struct reg_meta **out, struct proto_err *err)
{
	struct reg_model *rm;
	struct reg_meta *m;
	struct stat st;
	char *path;
	int rc;

	if ((m = reg_meta_alloc(r, kind, 1)) == NULL)
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	if ((rm = reg_find(r, name)) != NULL && rm->m != NULL) {
		m->from_model = true;
		reg_meta_item(m, name, NULL, NULL);
		*out = m;
		return 0;
	}
	if ((rc = reg_path(r, name, &path, err)) < 0) {
		reg_meta_free(m);
		return rc;
	}
	/* reg_path checked it: a stat that fails now is a race that
	 * gguf_open reports */
	if (stat(path, &st) == 0)
		reg_meta_item(m, name, path, &st);
	else
		reg_meta_item(m, name, path, NULL);
	*out = m;
	return 0;
}

int
reg_meta_new(struct registry *r, const struct proto_request *req,
    reg_filter_fn filter, void *arg, struct reg_meta **out,
    struct proto_err *err)
{
	switch (req->type) {
	case PROTO_MSG_LIST:
		return reg_meta_list(r, filter, arg, out, err);
	case PROTO_MSG_SHOW:
		return reg_meta_model(r, REG_META_SHOW, req->u.show.model, out,
		    err);
	case PROTO_MSG_RENDER:
		return reg_meta_model(r, REG_META_RENDER, req->u.chat.model,
		    out, err);
	default:
		return proto_err_set(err, PROTO_E_INTERNAL, -EINVAL,
		    "%s has no headers to read", proto_msg_name(req->type) ?
		    proto_msg_name(req->type) : "?");
	}
}

int
reg_list_reply(struct registry *r, const struct reg_meta *m,
    struct proto_response *resp, struct proto_err *err)
{
	struct proto_model_info *v;
	struct reg_reply_mem *mem;
	const struct reg_item *it;
	struct reg_model *rm;
	size_t i, n = 0;

	if ((mem = reg_reply_mem(resp)) == NULL ||
	    (v = calloc(m->n_items ? m->n_items : 1, sizeof(*v))) == NULL)
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	mem->array = v;
	for (i = 0; i < m->n_items; i++) {
		it = &m->items[i];
		if (it->name == NULL || it->hdr == NULL)
			continue;	/* out of memory */
		v[n].name = it->name;
		v[n].size = it->size;
		v[n].arch = it->hdr->info.arch;
		v[n].quant = it->hdr->info.quant;
		v[n].params = it->hdr->info.params;
		v[n].license = it->hdr->info.license;
		rm = reg_find(r, it->name);
		v[n].resident = rm != NULL && rm->m != NULL;
		n++;
	}
	if (n > 0)
		qsort(v, n, sizeof(*v), reg_cmp_info);
	resp->u.list.models = v;
	resp->u.list.n_models = (uint32_t)n;
	return 0;
}

/*
 * The header of a show or render (m from reg_meta_model, not from the
 * model): 0 with *out, or -errno with err when it could not be read.
 */
static int
reg_meta_hdr(const struct reg_meta *m, const struct reg_hdr **out,
    struct proto_err *err)
{
	const struct reg_hdr *h = m->n_items > 0 ? m->items[0].hdr : NULL;

	if (h == NULL)
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	if (h->open_rc < 0)
		return proto_err_set(err, h->open_rc == -ENOMEM ?
		    PROTO_E_INTERNAL : PROTO_E_MODEL_ERROR, h->open_rc, "%s",
		    h->open_msg);
	*out = h;
	return 0;
}

/* The resident model of a show or render from the model: 0 with *out,
 * or -errno with err. */
static int
reg_meta_rm(struct registry *r, const struct reg_meta *m,
    struct reg_model **out, struct proto_err *err)
{
	struct reg_model *rm;

	if (m->n_items == 0 || m->items[0].name == NULL)
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	if ((rm = reg_find(r, m->items[0].name)) == NULL || rm->m == NULL)
		return proto_err_set(err, PROTO_E_INTERNAL, -EAGAIN, "model %s "
		    "is no longer resident", m->items[0].name);
	*out = rm;
	return 0;
}

int
reg_render_meta(struct registry *r, const struct reg_meta *m,
    struct meta_render *out, struct proto_err *err)
{
	const struct reg_hdr *h = NULL;
	struct reg_model *rm = NULL;
	int rc;

	if (m->from_model) {
		if ((rc = reg_meta_rm(r, m, &rm, err)) < 0)
			return rc;
		meta_render_view(rm->m->gguf, out);
		return 0;
	}
	if ((rc = reg_meta_hdr(m, &h, err)) < 0)
		return rc;
	if (h->render_rc < 0)
		return proto_err_set(err, PROTO_E_INTERNAL, h->render_rc,
		    "out of memory");
	*out = h->render;
	out->buf = NULL;	/* the header's */
	return 0;
}

#define REG_SHOW_EXTRA	16	/* entries reg_show_residency adds */

/*
 * Append hearth.* entries to a show reply: the model's cost (what it
 * costs resident, or would cost loaded now), the budget, pin, pages and
 * NUMA placement. Skipped when the reply has no room or no estimate.
 */
static void
reg_show_residency(struct registry *r, const char *name,
    const struct reg_hdr *h, struct reg_reply_mem *mem)
{
	struct meta_show *sh = &mem->show;
	const struct config_model *cm;
	struct reg_model *rm, tmp;
	struct proto_meta *v, *e;
	struct proto_err pe;
	bool resident;

	if (sh->n_meta + REG_SHOW_EXTRA > r->srv->limits.max_items)
		return;
	if ((rm = reg_find(r, name)) == NULL || !rm->admitted) {
		memset(&tmp, 0, sizeof(tmp));
		tmp.reg = r;
		memset(&pe, 0, sizeof(pe));
		if (h == NULL)
			return;
		reg_load_opts(r->srv->cfg, name, &tmp.lo);
		tmp.policy = reg_policy(r->srv->cfg, name);
		if (reg_estimate(r, name, h, &tmp.lo, tmp.policy, &tmp.cost,
		    &tmp.n_ctx, &tmp.place, &tmp.n_copies, &pe) < 0)
			return;
		cm = config_model_find(r->srv->cfg, name);
		tmp.pinned = cm != NULL && cm->pin;
		rm = &tmp;
	}
	resident = rm != &tmp && rm->m != NULL;
	if ((v = realloc(sh->meta, (sh->n_meta + REG_SHOW_EXTRA) *
	    sizeof(*v))) == NULL)
		return;
	sh->meta = v;
	e = &v[sh->n_meta];
	memset(e, 0, REG_SHOW_EXTRA * sizeof(*e));
#define REG_U(i, k, val) do { e[i].key = (k); e[i].type = PROTO_META_UINT; \
	e[i].u = (val); } while (0)
#define REG_B(i, k, val) do { e[i].key = (k); e[i].type = PROTO_META_BOOL; \
	e[i].b = (val); } while (0)
#define REG_S(i, k, val) do { e[i].key = (k); e[i].type = PROTO_META_STR; \
	e[i].s = (val); e[i].s_len = strlen(val); } while (0)
	REG_B(0, "hearth.resident", resident);
	REG_B(1, "hearth.pinned", rm->pinned);
	REG_U(2, "hearth.memory.weights", resident ? reg_weight_bytes(rm) :
	    rm->cost.weights);
	REG_U(3, "hearth.memory.kv", rm->cost.kv);
	REG_U(4, "hearth.memory.scratch", rm->cost.scratch);
	REG_U(5, "hearth.memory.total", rm->cost.total);
	REG_U(6, "hearth.memory.budget", reg_budget(r));
	REG_U(7, "hearth.numa.nodes", reg_topo.n_nodes);
	REG_S(8, "hearth.numa.policy", numa_policy_name(rm->place.policy));
	reg_placement(rm, mem->strs[0], sizeof(mem->strs[0]));
	REG_S(9, "hearth.numa.placement", mem->strs[0]);
	if (resident)
		reg_pages(rm, mem->strs[1], sizeof(mem->strs[1]));
	else
		snprintf(mem->strs[1], sizeof(mem->strs[1]), "not resident");
	REG_S(10, "hearth.memory.pages", mem->strs[1]);
	REG_U(11, "hearth.n_ctx", rm->n_ctx);
	REG_U(12, "hearth.numa.copies", reg_copies(rm));
	numa_cpuset_format(&rm->place.cpus, mem->strs[2], sizeof(mem->strs[2]));
	REG_S(13, "hearth.numa.cpus", mem->strs[2]);
	REG_S(14, "hearth.numa.threads", resident && rm->pinning[0] != '\0' ?
	    rm->pinning : "not resident");
	/* keys and values alike (one kv_type in the configuration) */
	REG_S(15, "hearth.kv_type", kern_type_name(rm->lo.mo.kv_type_k));
#undef REG_U
#undef REG_B
#undef REG_S
	sh->n_meta += REG_SHOW_EXTRA;
}

int
reg_show_reply(struct registry *r, const struct reg_meta *m,
    struct proto_response *resp, struct proto_err *err)
{
	struct reg_reply_mem *mem;
	const struct reg_hdr *h = NULL;
	struct reg_model *rm = NULL;
	const char *name;
	int rc;

	if ((mem = reg_reply_mem(resp)) == NULL)
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	if (m->from_model) {
		if ((rc = reg_meta_rm(r, m, &rm, err)) < 0)
			return rc;
		if (meta_show(rm->m->gguf, &r->srv->limits, &mem->show) < 0)
			return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
			    "out of memory");
	} else {
		if ((rc = reg_meta_hdr(m, &h, err)) < 0)
			return rc;
		if (h->show_rc < 0 || (mem->show.meta = calloc(
		    h->show.n_meta ? h->show.n_meta : 1,
		    sizeof(*mem->show.meta))) == NULL)
			return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
			    "out of memory");
		/* the strings stay the header's (m holds it) */
		memcpy(mem->show.meta, h->show.meta, h->show.n_meta *
		    sizeof(*mem->show.meta));
		mem->show.n_meta = h->show.n_meta;
	}
	name = m->items[0].name;
	reg_show_residency(r, name, h, mem);
	resp->u.show.model = name;
	resp->u.show.meta = mem->show.meta;
	resp->u.show.n_meta = mem->show.n_meta;
	return 0;
}

/* Resident bytes of a model: weights, caches, scratch. */
static uint64_t
reg_memory(const struct reg_model *rm, struct sched_stats *st)
{
	sched_get_stats(rm->s, st);
	return reg_weight_bytes(rm) + st->kv_bytes + st->scratch_bytes;
}

/* The largest kind of page most of the weights are in, for ps. */
static const char *
reg_ps_pages(const struct reg_model *rm)
{
	const struct mem_usage *u;

	if (rm->m == NULL || rm->m->weights == NULL)
		return rm->reg->srv->hugepages;
	u = &rm->m->weights->usage;
	if (u->huge_1g > 0 && u->huge_1g >= mem_usage_total(u) / 2)
		return "1G";
	if (u->huge_1g + u->huge_2m >= mem_usage_total(u) / 2 &&
	    u->huge_2m > 0)
		return "2M";
	if (u->thp > 0 && u->thp >= mem_usage_total(u) / 2)
		return "thp";
	return "none";
}

/* The placement label of rm for ps, in buf[PROTO_MAX_LABEL + 1]. */
static const char *
reg_ps_placement(const struct reg_model *rm, char *buf)
{
	size_t i;

	char cpus[64], copies[32];

	if (numa_cpuset_format(&rm->place.cpus, cpus, sizeof(cpus)) < 0)
		snprintf(cpus + sizeof(cpus) - 4, 4, "...");
	copies[0] = '\0';
	if (rm->place.policy == NUMA_POLICY_REPLICATE)
		snprintf(copies, sizeof(copies), ", %u cop%s", reg_copies(rm),
		    reg_copies(rm) == 1 ? "y" : "ies");
	snprintf(buf, PROTO_MAX_LABEL + 1, "%s%s, CPUs %s: %.160s",
	    numa_policy_name(rm->place.policy), copies, cpus,
	    rm->place.reason);
	for (i = 0; buf[i] != '\0'; i++)	/* a label: no controls */
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f ||
		    (unsigned char)buf[i] >= 0x80)
			buf[i] = '?';
	return buf;
}

int
reg_ps(struct registry *r, struct proto_response *resp,
    struct proto_err *err)
{
	struct mem_usage u;
	struct proto_ps_entry *v;
	struct reg_reply_mem *mem;
	struct sched_stats st;
	struct reg_model *rm;
	double left, now = srv_now();
	uint32_t n = 0;

	if ((mem = reg_reply_mem(resp)) == NULL ||
	    (v = calloc(r->n_models ? r->n_models : 1, sizeof(*v))) == NULL ||
	    (mem->labels = calloc(r->n_models ? r->n_models : 1,
	    PROTO_MAX_LABEL + 1)) == NULL) {
		if (mem != NULL)
			mem->array = v;
		return proto_err_set(err, PROTO_E_INTERNAL, -ENOMEM,
		    "out of memory");
	}
	mem->array = v;
	TAILQ_FOREACH(rm, &r->models, entry) {
		if (rm->m == NULL || rm->s == NULL)
			continue;
		v[n].name = rm->name;
		v[n].memory = reg_memory(rm, &st);
		v[n].weights = reg_weight_bytes(rm);
		v[n].kv = st.kv_bytes;
		v[n].scratch = st.scratch_bytes;
		reg_weight_usage(rm, &u);
		v[n].bytes_1g = u.huge_1g;
		v[n].bytes_2m = u.huge_2m;
		v[n].bytes_thp = u.thp;
		v[n].bytes_small = u.small;
		v[n].pinned = rm->pinned;
		v[n].placement = reg_ps_placement(rm,
		    mem->labels + (size_t)n * (PROTO_MAX_LABEL + 1));
		v[n].hugepages = reg_ps_pages(rm);
		v[n].clients = st.clients;
		v[n].tokens = st.prompt_tokens + st.generated_tokens;
		if (rm->keep_alive < 0 || rm->pinned)
			v[n].keep_alive = -1;
		else if (rm->ka_expire > 0) {
			left = ceil(rm->ka_expire - now);
			v[n].keep_alive = left > 0 ? (int64_t)left : 0;
		} else
			v[n].keep_alive = rm->keep_alive;
		n++;
	}
	resp->u.ps.models = v;
	resp->u.ps.n_models = n;
	return 0;
}

void
reg_totals(struct registry *r, struct reg_totals *t)
{
	struct sched_stats st;
	struct reg_model *rm;

	memset(t, 0, sizeof(*t));
	t->prompt_tokens = r->gone_prompt;
	t->generated_tokens = r->gone_generated;
	TAILQ_FOREACH(rm, &r->models, entry) {
		if (rm->m == NULL || rm->s == NULL)
			continue;
		t->models++;
		t->memory += reg_memory(rm, &st);
		t->weights += reg_weight_bytes(rm);
		t->kv += st.kv_bytes;
		t->scratch += st.scratch_bytes;
		t->prompt_tokens += st.prompt_tokens;
		t->generated_tokens += st.generated_tokens;
	}
}

void
reg_preload(struct registry *r)
{
	const struct config *cfg = r->srv->cfg;
	struct reg_model *rm;
	struct proto_err e;
	size_t i;

	for (i = 0; i < cfg->n_models; i++) {
		if (!cfg->models[i].preload ||
		    reg_find(r, cfg->models[i].name) != NULL)
			continue;
		memset(&e, 0, sizeof(e));
		if (reg_use(r, cfg->models[i].name, false, 0, &rm, &e) < 0) {
			log_warnx("registry: cannot preload %s: %s",
			    cfg->models[i].name, e.msg);
			continue;
		}
		rm->preload = true;
	}
}

uint32_t
reg_preloading(struct registry *r)
{
	struct reg_model *rm;
	uint32_t n = 0;

	TAILQ_FOREACH(rm, &r->models, entry)
		if (rm->preload && rm->state == REG_LOADING)
			n++;
	return n;
}

void
reg_set_pin(struct reg_model *rm, bool pin)
{
	rm->pin_asked = pin;
	if (rm->pinned == pin)
		return;
	rm->pinned = pin;
	log_info("registry: %s is %s by a load request", rm->name, pin ?
	    "pinned" : "no longer pinned");
	if (rm->state == REG_RESIDENT)
		reg_check_idle(rm);	/* arms or disarms the keep-alive */
}

void
reg_reconfigure(struct registry *r)
{
	const struct config_model *cm;
	struct reg_model *rm, *next;

	for (rm = TAILQ_FIRST(&r->models); rm != NULL; rm = next) {
		next = TAILQ_NEXT(rm, entry);
		cm = config_model_find(r->srv->cfg, rm->name);
		if (rm->pin_asked >= 0 ||
		    rm->pinned == (cm != NULL && cm->pin))
			continue;	/* a load's pin outlives the reload */
		rm->pinned = cm != NULL && cm->pin;
		log_info("registry: %s is %s", rm->name, rm->pinned ?
		    "pinned" : "no longer pinned");
		reg_check_idle(rm);	/* arms or disarms the keep-alive */
	}
}

void
reg_counts(struct registry *r, uint32_t *resident, uint32_t *running,
    uint32_t *waiting)
{
	struct reg_model *rm;
	struct dreq *d;

	*resident = *running = *waiting = 0;
	if (r == NULL)
		return;
	TAILQ_FOREACH(rm, &r->models, entry) {
		if (rm->m != NULL && rm->s != NULL)
			(*resident)++;
		*running += rm->active;
		TAILQ_FOREACH(d, &rm->waiters, model_entry)
			(*waiting)++;
	}
}
