/*
 * check_residency.c - where resident models live (issue 5): worker
 * threads pinned to their placement's CPUs, per-node copies of the
 * weights under `replicate`, the NUMA policy of a load request, and a
 * load while the hugetlb pool is exhausted.
 *
 * engine:  a forward pass whose second worker reads a copy of the
 *          weights through its pool offset gives the same logits, and
 *          other logits once that copy is spoiled (it really reads it).
 * daemon:  a real hearthd on simulated topologies (--numa-topology):
 *          two local models on two nodes get disjoint CPU sets (show,
 *          ps, log, and the threads' affinity in /proc when the CPUs
 *          exist here); CPUs that do not exist are not pinned and the
 *          model still serves; replicate makes a copy per node (2 on two
 *          nodes, 1 on one), answers as local does, reports the memory
 *          twice and is admitted at that cost (it evicts what a single
 *          copy would not have); numa on load requests and `hearth load
 *          --numa`, unknown policies refused; the hugetlb pool exhausted
 *          during a load (root only: reserves a few pages, maps the free
 *          ones itself, restores nr_hugepages; SKIP with the reason
 *          otherwise).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forward.h"
#include "memory.h"
#include "mkmodel_lib.h"
#include "model.h"
#include "pool.h"
#include "proto.h"
#include "tclient.h"
#include "testutil.h"

#define N_VOCAB		512	/* of the generated models */
#define HUGE_2M		((size_t)2 << 20)

static struct td g_d;			/* the daemon (tclient.c) */
static char	g_topo[4200];		/* simulated topology */

/* ---- files ----------------------------------------------------------- */

static void
write_text(const char *path, const char *text)
{
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

static void
setup(void)
{
	struct mkm_spec s;
	static const char *const names[] = { "a", "b", "loc", "rep" };
	size_t i;

	signal(SIGPIPE, SIG_IGN);
	if (td_init(&g_d, tu_tmpdir()) != 0)
		abort();
	snprintf(g_d.sock, sizeof(g_d.sock), "%s/hearth.sock", g_d.dir);
	g_d.threads = NULL;	/* the daemon's own count */
	snprintf(g_topo, sizeof(g_topo), "%s/topo", g_d.dir);
	/* the same weights under four names */
	mkm_spec_default(&s);
	s.n_vocab = N_VOCAB;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		td_write_model(&g_d, &s, names[i]);
	/* weights of a few MiB, for hugepages (a tail under 1 MiB is not
	 * worth one) */
	s.n_embd = 256;
	s.n_ff = 768;
	s.seed = 5;
	td_write_model(&g_d, &s, "h1");
	td_write_model(&g_d, &s, "h2");
}

static void huge_restore(void);

static void
teardown(void)
{
	huge_restore();
	tu_tmpdir_free();
}

/* ---- the daemon -------------------------------------------------------- */

/*
 * Start hearthd with a configuration ([daemon] lines, then the admin
 * rule for us) and a topology (NULL: the machine's).
 */
static void
daemon_start(const char *daemon_conf, const char *topo)
{
	char conf[4096];

	unlink(g_d.log);
	snprintf(conf, sizeof(conf), "[daemon]\nkeep_alive = 300\n%s\n"
	    "[access me]\nuser = %u\nadmin = yes\n", daemon_conf,
	    (unsigned)geteuid());
	write_text(g_d.conf, conf);
	if (topo != NULL)
		write_text(g_topo, topo);
	g_d.topo = topo != NULL ? g_topo : NULL;
	td_start(&g_d);
}

/* SIGTERM: the daemon must exit 0 (its log is printed if not). */
static void
daemon_stop(void)
{
	ck_assert_msg(td_finish(&g_d) == 0, "hearthd did not stop cleanly");
}

/* ---- requests ------------------------------------------------------------ */

/* A show entry of model as text ("" when absent), or its number. */
static uint64_t
show_get(struct tc *c, const char *model, const char *key, char *str,
    size_t size)
{
	struct proto_response resp;
	uint64_t u = UINT64_MAX;
	uint32_t k;
	int64_t id;

	if (str != NULL)
		str[0] = '\0';
	id = tc_simple(c, PROTO_MSG_SHOW, model);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_SHOW, &resp);
	for (k = 0; k < resp.u.show.n_meta; k++) {
		const struct proto_meta *m = &resp.u.show.meta[k];

		if (strcmp(m->key, key) != 0)
			continue;
		if (m->type == PROTO_META_UINT)
			u = m->u;
		else if (m->type == PROTO_META_STR && str != NULL)
			snprintf(str, size, "%.*s", (int)m->s_len, m->s);
	}
	proto_response_free(&resp);
	return u;
}

/* The ps entry of model: found, with its weights and placement label. */
struct ps_info {
	bool		 found;
	uint64_t	 weights;
	uint64_t	 bytes_2m, bytes_thp, bytes_small;
	char		 placement[PROTO_MAX_LABEL + 1];
	uint32_t	 n_models;	/* resident in all */
};

static void
ps_get(struct tc *c, const char *model, struct ps_info *out)
{
	struct proto_response resp;
	uint32_t k;
	int64_t id;

	memset(out, 0, sizeof(*out));
	id = tc_simple(c, PROTO_MSG_PS, NULL);
	tc_expect_reply(c, (uint64_t)id, PROTO_MSG_PS, &resp);
	out->n_models = resp.u.ps.n_models;
	for (k = 0; k < resp.u.ps.n_models; k++) {
		const struct proto_ps_entry *e = &resp.u.ps.models[k];

		if (strcmp(e->name, model) != 0)
			continue;
		out->found = true;
		out->weights = e->weights;
		out->bytes_2m = e->bytes_2m;
		out->bytes_thp = e->bytes_thp;
		out->bytes_small = e->bytes_small;
		snprintf(out->placement, sizeof(out->placement), "%s",
		    e->placement != NULL ? e->placement : "");
	}
	proto_response_free(&resp);
}

/* 16 greedy tokens of "hello" from model. */
static void
answer(struct tc *c, const char *model, struct gen *g)
{
	int64_t id;

	memset(g, 0, sizeof(*g));
	id = tc_generate(c, model, "hello", 16, true);
	ck_assert_int_eq(tc_collect(c, (uint64_t)id, g, 0), 0);
	ck_assert_msg(g->done, "%s: error %d %s", model, g->error, g->msg);
	ck_assert_uint_gt(g->n, 0);
}

static void
assert_same(const struct gen *a, const struct gen *b)
{
	uint32_t i;

	ck_assert_uint_eq(a->n, b->n);
	for (i = 0; i < a->n; i++)
		ck_assert_int_eq(a->ids[i], b->ids[i]);
}

/* A load request with a numa policy (absent: has false). */
static int64_t
send_load(struct tc *c, const char *model, bool has, enum proto_numa numa)
{
	struct proto_request r;

	proto_request_init(&r, PROTO_MSG_LOAD, 0);
	r.u.load.model = model;
	r.u.load.has_numa = has;
	r.u.load.numa = numa;
	return tc_send(c, &r);
}

static void
load_ok(struct tc *c, const char *model, bool has, enum proto_numa numa)
{
	struct proto_response resp;
	int64_t id = send_load(c, model, has, numa);

	for (;;) {
		tc_must_recv(c, &resp);
		ck_assert_uint_eq(resp.id, (uint64_t)id);
		if (resp.type != PROTO_MSG_PROGRESS)
			break;
		proto_response_free(&resp);
	}
	ck_assert_msg(resp.type == PROTO_MSG_REPLY, "load %s: %s", model,
	    resp.type == PROTO_MSG_ERROR ? resp.u.error.message : "?");
	proto_response_free(&resp);
}

/* Whether a thread of the daemon has exactly the CPU list cpus. */
static bool
daemon_thread_on(const char *cpus)
{
	char path[512], line[512], want[128];
	struct dirent *de;
	bool found = false;
	DIR *d;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)g_d.pid);
	snprintf(want, sizeof(want), "Cpus_allowed_list:\t%s\n", cpus);
	if ((d = opendir(path)) == NULL)
		return false;
	while (!found && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status",
		    (int)g_d.pid, de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		while (fgets(line, sizeof(line), f) != NULL)
			if (strcmp(line, want) == 0)
				found = true;
		fclose(f);
	}
	closedir(d);
	return found;
}

/* Whether this process may run on CPUs 0 and 1. */
static bool
have_cpus_0_1(void)
{
	cpu_set_t set;

	return sched_getaffinity(0, sizeof(set), &set) == 0 &&
	    CPU_ISSET(0, &set) && CPU_ISSET(1, &set);
}

/* ---- core: the engine reads its worker's copy -------------------------- */

/* Logits of the last token of a fixed prompt. */
static void
eval_logits(struct fwd *f, struct fwd_kv *kv, float *out, size_t n)
{
	static const int32_t prompt[] = { 1, 300, 301, 302, 303, 304, 305 };
	struct eng_err err = { "" };

	fwd_kv_truncate(kv, 0);
	ck_assert_int_eq(fwd_eval(f, kv, prompt, 7, false, &err), 0);
	memcpy(out, fwd_logits(f, 0), n * sizeof(float));
}

START_TEST(test_replica_forward)
{
	struct eng_err err = { "" };
	struct mem_region *copy = NULL;
	struct kern_pool *pool;
	struct model *m = NULL;
	struct fwd_kv *kv;
	struct fwd *f;
	int cpus[2] = { -1, -1 };
	float *base, *other;
	size_t nv;
	ptrdiff_t off;

	ck_assert_msg(model_open(td_model_path(&g_d, "rep"), NULL, NULL, &m,
	    &err) == 0, "%s", err.msg);
	/* two threads: 0 (the caller) and one worker */
	ck_assert_int_eq(kern_pool_new_cpus(2, cpus, &pool), 0);
	kern_pool_free(m->pool);
	m->pool = pool;
	nv = m->hp.n_vocab;
	base = calloc(nv, sizeof(float));
	other = calloc(nv, sizeof(float));
	ck_assert(base != NULL && other != NULL);
	ck_assert_int_eq(fwd_new(m, 64, 64, 1, &f), 0);
	ck_assert_int_eq(fwd_kv_new(m, 64, &kv), 0);
	eval_logits(f, kv, base, nv);

	/* worker 1 reads a copy: the same numbers */
	ck_assert_int_eq(mem_region_copy(m->weights, NULL, NULL, &copy, &err),
	    0);
	off = (ptrdiff_t)((uintptr_t)copy->addr - (uintptr_t)m->mem);
	kern_pool_set_offset(pool, 1, off);
	eval_logits(f, kv, other, nv);
	ck_assert(memcmp(base, other, nv * sizeof(float)) == 0);
	/* and thread 0 too */
	kern_pool_set_offset(pool, 0, off);
	eval_logits(f, kv, other, nv);
	ck_assert(memcmp(base, other, nv * sizeof(float)) == 0);

	/* spoil the copy: worker 1's share changes, so it read the copy */
	kern_pool_set_offset(pool, 0, 0);
	memset(copy->addr, 0, copy->size);
	eval_logits(f, kv, other, nv);
	ck_assert(memcmp(base, other, nv * sizeof(float)) != 0);
	/* back to the first copy: the numbers again */
	kern_pool_set_offset(pool, 1, 0);
	eval_logits(f, kv, other, nv);
	ck_assert(memcmp(base, other, nv * sizeof(float)) == 0);

	fwd_kv_free(kv);
	fwd_free(f);
	mem_region_free(copy);
	model_free(m);
	free(base);
	free(other);
}
END_TEST

/* ---- core: through the daemon -------------------------------------------- */

START_TEST(test_two_models_disjoint_cpus)
{
	char ca[128], cb[128], ta[512];
	struct ps_info pa, pb;
	struct gen *ga = gen_new(), *gb = gen_new();
	struct tc c;

	daemon_start("numa = local", "node 0 cpus 0 mem 8G\n"
	    "node 1 cpus 1 mem 8G\n");
	tc_open_at(&c, g_d.sock);
	answer(&c, "a", ga);
	answer(&c, "b", gb);
	assert_same(ga, gb);		/* the same weights */
	/* a took node 0 (the first with room and free CPUs), b node 1 */
	show_get(&c, "a", "hearth.numa.cpus", ca, sizeof(ca));
	show_get(&c, "b", "hearth.numa.cpus", cb, sizeof(cb));
	ck_assert_str_eq(ca, "0");
	ck_assert_str_eq(cb, "1");
	show_get(&c, "a", "hearth.numa.threads", ta, sizeof(ta));
	ck_assert_msg(strstr(ta, "1 thread pinned to CPUs 0") != NULL, "%s",
	    ta);
	ps_get(&c, "a", &pa);
	ps_get(&c, "b", &pb);
	ck_assert(pa.found && pb.found);
	ck_assert_msg(strncmp(pa.placement, "local, CPUs 0:", 14) == 0, "%s",
	    pa.placement);
	ck_assert_msg(strncmp(pb.placement, "local, CPUs 1:", 14) == 0, "%s",
	    pb.placement);
	ck_assert(td_log_has(&g_d,
	    "registry: a threads: 1 thread pinned to CPUs 0"));
	ck_assert(td_log_has(&g_d,
	    "registry: b threads: 1 thread pinned to CPUs 1"));
	/* the caller of each pool (the model's scheduler) runs there */
	if (have_cpus_0_1()) {
		ck_assert(daemon_thread_on("0"));
		ck_assert(daemon_thread_on("1"));
	} else
		fprintf(stderr, "check_residency: CPUs 0-1 not both usable "
		    "here: thread affinity not checked\n");
	tc_close(&c);
	daemon_stop();
	free(ga);
	free(gb);
}
END_TEST

START_TEST(test_missing_cpus_not_pinned)
{
	char t[512];
	struct gen *ga = gen_new(), *gb = gen_new();
	struct tc c;

	/* node 1's CPUs exist on no machine this runs on */
	daemon_start("numa = local", "node 0 cpus 0 mem 8G\n"
	    "node 1 cpus 1000-1001 mem 8G\n");
	tc_open_at(&c, g_d.sock);
	answer(&c, "a", ga);
	answer(&c, "b", gb);
	assert_same(ga, gb);
	show_get(&c, "b", "hearth.numa.cpus", t, sizeof(t));
	ck_assert_str_eq(t, "1000-1001");
	show_get(&c, "b", "hearth.numa.threads", t, sizeof(t));
	ck_assert_msg(strstr(t, "2 threads for CPUs 1000-1001: 0 pinned") !=
	    NULL && strstr(t, "do not exist on this machine") != NULL, "%s",
	    t);
	ck_assert(td_log_has(&g_d, "b threads: 2 threads for CPUs 1000-1001: 0 "
	    "pinned"));
	tc_close(&c);
	daemon_stop();
	free(ga);
	free(gb);
}
END_TEST

START_TEST(test_replicate)
{
	char conf[512], t[1024];
	struct gen *gl = gen_new(), *gr = gen_new();
	struct ps_info pl, pr;
	uint64_t wl, wr, tl, tr, kv_l, kv_r;
	struct tc c;

	daemon_start("numa = local\n[model rep]\nnuma = replicate",
	    "node 0 cpus 0 mem 8G\nnode 1 cpus 1 mem 8G\n");
	tc_open_at(&c, g_d.sock);
	/* costs before loading: a replica counts a second copy */
	wl = show_get(&c, "loc", "hearth.memory.weights", NULL, 0);
	wr = show_get(&c, "rep", "hearth.memory.weights", NULL, 0);
	tl = show_get(&c, "loc", "hearth.memory.total", NULL, 0);
	tr = show_get(&c, "rep", "hearth.memory.total", NULL, 0);
	kv_l = show_get(&c, "loc", "hearth.memory.kv", NULL, 0);
	kv_r = show_get(&c, "rep", "hearth.memory.kv", NULL, 0);
	ck_assert_uint_gt(wl, 0);
	ck_assert_uint_eq(wr, 2 * wl);
	ck_assert_uint_eq(kv_r, kv_l);
	ck_assert_uint_eq(tr, tl + wl);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.numa.copies", NULL, 0),
	    2);

	/* rep first: its workers take a CPU on each node */
	answer(&c, "rep", gr);
	answer(&c, "loc", gl);
	assert_same(gl, gr);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.numa.copies", NULL, 0),
	    2);
	ck_assert_uint_eq(show_get(&c, "loc", "hearth.numa.copies", NULL, 0),
	    1);
	ps_get(&c, "loc", &pl);
	ps_get(&c, "rep", &pr);
	ck_assert(pl.found && pr.found);
	ck_assert_uint_eq(pr.weights, 2 * pl.weights);
	ck_assert_uint_eq(pr.bytes_2m + pr.bytes_thp + pr.bytes_small,
	    2 * (pl.bytes_2m + pl.bytes_thp + pl.bytes_small));
	ck_assert_msg(strncmp(pr.placement, "replicate, 2 copies, CPUs 0-1:",
	    30) == 0, "%s", pr.placement);
	show_get(&c, "rep", "hearth.numa.placement", t, sizeof(t));
	ck_assert_msg(strstr(t, "2 copies of the weights") != NULL, "%s", t);
	show_get(&c, "rep", "hearth.numa.threads", t, sizeof(t));
	ck_assert_msg(strstr(t, "2 threads") != NULL, "%s", t);
	ck_assert(td_log_has(&g_d, "rep numa: replicate"));
	/* again, with both resident and warm */
	answer(&c, "rep", gr);
	assert_same(gl, gr);
	tc_close(&c);
	daemon_stop();

	/*
	 * A budget that holds loc and one copy of rep but not two: loading
	 * rep evicts the idle loc (the real cost is admitted). Three CPUs a
	 * node and two threads a model: loc leaves a free CPU on its node,
	 * so rep has a worker (and a copy) on each.
	 */
	snprintf(conf, sizeof(conf), "numa = local\nthreads = 2\n"
	    "memory_budget = %llu\n[model rep]\nnuma = replicate",
	    (unsigned long long)(tl + tr - wl / 2));
	daemon_start(conf, "node 0 cpus 0-2 mem 8G\nnode 1 cpus 3-5 mem 8G\n");
	tc_open_at(&c, g_d.sock);
	answer(&c, "loc", gl);
	answer(&c, "rep", gr);
	assert_same(gl, gr);
	ps_get(&c, "loc", &pl);
	ck_assert_msg(!pl.found, "loc should have been evicted");
	ck_assert_uint_eq(pl.n_models, 1);
	ck_assert(td_log_has(&g_d, "evicting loc"));
	tc_close(&c);
	daemon_stop();

	/* one node: replicate is one copy, and says so */
	daemon_start("numa = replicate", "node 0 cpus 0-1 mem 8G\n");
	tc_open_at(&c, g_d.sock);
	answer(&c, "rep", gr);
	assert_same(gl, gr);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.numa.copies", NULL, 0),
	    1);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.memory.weights", NULL,
	    0), wl);
	show_get(&c, "rep", "hearth.numa.placement", t, sizeof(t));
	ck_assert_msg(strstr(t, "one copy of the weights (one node)") != NULL,
	    "%s", t);
	tc_close(&c);
	daemon_stop();
	free(gl);
	free(gr);
}
END_TEST

/*
 * replicate makes a copy of the weights only on nodes where its workers
 * run: with one thread for two nodes, and with the only CPU of a node
 * taken by another model, one copy (show, ps and the budget agree) and
 * the same answer.
 */
START_TEST(test_replicate_no_worker)
{
	static const char *topo = "node 0 cpus 0 mem 8G\nnode 1 cpus 1 mem 8G\n";
	char t[1024];
	struct gen *gl = gen_new(), *gr = gen_new();
	struct ps_info pl, pr;
	uint64_t wl, tl;
	struct tc c;

	/* one worker thread: node 1 gets none */
	daemon_start("threads = 1\nnuma = local\n[model rep]\n"
	    "numa = replicate", topo);
	tc_open_at(&c, g_d.sock);
	wl = show_get(&c, "loc", "hearth.memory.weights", NULL, 0);
	tl = show_get(&c, "loc", "hearth.memory.total", NULL, 0);
	ck_assert_uint_gt(wl, 0);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.numa.copies", NULL, 0),
	    1);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.memory.weights", NULL,
	    0), wl);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.memory.total", NULL, 0),
	    tl);
	/* rep first: its one worker takes node 0 */
	answer(&c, "rep", gr);
	answer(&c, "loc", gl);
	assert_same(gl, gr);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.numa.copies", NULL, 0),
	    1);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.memory.weights", NULL,
	    0), wl);
	ps_get(&c, "loc", &pl);
	ps_get(&c, "rep", &pr);
	ck_assert(pl.found && pr.found);
	ck_assert_uint_eq(pr.weights, pl.weights);
	ck_assert_msg(strncmp(pr.placement, "replicate, 1 copy, CPUs 0:",
	    26) == 0, "%s", pr.placement);
	show_get(&c, "rep", "hearth.numa.placement", t, sizeof(t));
	ck_assert_msg(strstr(t, "no worker on node 1: no copy there") !=
	    NULL, "%s", t);
	ck_assert_msg(strstr(t, "one copy of the weights (workers on one "
	    "node)") != NULL, "%s", t);
	ck_assert(!td_log_has(&g_d, "could be made"));
	tc_close(&c);
	daemon_stop();

	/* the CPU of one node is loc's: rep's workers and its one copy go
	 * to the other */
	daemon_start("numa = local\n[model rep]\nnuma = replicate", topo);
	tc_open_at(&c, g_d.sock);
	answer(&c, "loc", gl);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.numa.copies", NULL, 0),
	    1);
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.memory.total", NULL, 0),
	    tl);
	answer(&c, "rep", gr);
	assert_same(gl, gr);
	ps_get(&c, "loc", &pl);
	ps_get(&c, "rep", &pr);
	ck_assert(pl.found && pr.found);
	ck_assert_uint_eq(pr.weights, pl.weights);
	ck_assert_msg(strncmp(pr.placement, "replicate, 1 copy, CPUs ",
	    24) == 0, "%s", pr.placement);
	/* not the CPU of loc */
	ck_assert_msg(strncmp(pl.placement + strlen("local, CPUs "),
	    pr.placement + strlen("replicate, 1 copy, CPUs "), 1) != 0,
	    "%s / %s", pl.placement, pr.placement);
	show_get(&c, "rep", "hearth.numa.placement", t, sizeof(t));
	ck_assert_msg(strstr(t, "no copy there") != NULL, "%s", t);
	tc_close(&c);
	daemon_stop();
	free(gl);
	free(gr);
}
END_TEST

START_TEST(test_load_numa)
{
	char t[256], cmd[12288];
	struct gen *g = gen_new(), *g2 = gen_new();
	struct tc c;
	int64_t id;
	int st;

	/* three CPUs a node, two threads a model: a leaves a free CPU on
	 * its node, and replicate has a worker on each node */
	daemon_start("numa = local\nthreads = 2", "node 0 cpus 0-2 mem 8G\n"
	    "node 1 cpus 3-5 mem 8G\n");
	tc_open_at(&c, g_d.sock);
	answer(&c, "a", g);
	/* a load's numa places the model (config says local) */
	load_ok(&c, "rep", true, PROTO_NUMA_REPLICATE);
	show_get(&c, "rep", "hearth.numa.policy", t, sizeof(t));
	ck_assert_str_eq(t, "replicate");
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.numa.copies", NULL, 0),
	    2);
	answer(&c, "rep", g2);
	assert_same(g, g2);
	/* the same again: nothing to do; another: loaded again (idle) */
	load_ok(&c, "rep", true, PROTO_NUMA_REPLICATE);
	ck_assert(!td_log_has(&g_d, "rep: numa"));
	load_ok(&c, "rep", true, PROTO_NUMA_INTERLEAVE);
	show_get(&c, "rep", "hearth.numa.policy", t, sizeof(t));
	ck_assert_str_eq(t, "interleave");
	ck_assert_uint_eq(show_get(&c, "rep", "hearth.numa.copies", NULL, 0),
	    1);
	ck_assert(td_log_has(&g_d, "rep: numa interleave asked (was "
	    "replicate): loading it again"));
	answer(&c, "rep", g2);
	assert_same(g, g2);
	/* without numa: left as it is */
	load_ok(&c, "rep", false, PROTO_NUMA_AUTO);
	show_get(&c, "rep", "hearth.numa.policy", t, sizeof(t));
	ck_assert_str_eq(t, "interleave");

	/* an unknown policy: bad_request, the connection goes on */
	{
		static const uint8_t body[] = {
			0x84, 0xa4, 't', 'y', 'p', 'e', 0xa4, 'l', 'o', 'a',
			'd', 0xa2, 'i', 'd', 0x37, 0xa5, 'm', 'o', 'd', 'e',
			'l', 0xa1, 'a', 0xa4, 'n', 'u', 'm', 'a', 0xa3, 'f',
			'a', 'r' };
		uint8_t hdr[4];

		proto_frame_hdr(hdr, sizeof(body));
		ck_assert_int_eq(tc_write(&c, hdr, 4), 0);
		ck_assert_int_eq(tc_write(&c, body, sizeof(body)), 0);
		tc_expect_error(&c, 0x37, PROTO_E_BAD_REQUEST,
		    "unknown policy 'far'");
	}
	tc_ping(&c);

	/* the CLI */
	snprintf(cmd, sizeof(cmd), "%s -s %s load b --numa replicate "
	    ">/dev/null", td_build_path("hearth"), g_d.sock);
	st = system(cmd);
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	show_get(&c, "b", "hearth.numa.policy", t, sizeof(t));
	ck_assert_str_eq(t, "replicate");
	snprintf(cmd, sizeof(cmd), "%s -s %s load b --numa far 2>/dev/null",
	    td_build_path("hearth"), g_d.sock);
	st = system(cmd);
	ck_assert_int_ne(WEXITSTATUS(st), 0);

	/* busy: another policy while a request runs */
	id = tc_generate(&c, "b", "hello", 2000, true);
	(void)id;
	{
		struct proto_response resp;
		int64_t lid;

		/* the first token: it runs */
		tc_must_recv(&c, &resp);
		proto_response_free(&resp);
		lid = send_load(&c, "b", true, PROTO_NUMA_LOCAL);
		for (;;) {
			tc_must_recv(&c, &resp);
			if (resp.id == (uint64_t)lid) {
				ck_assert_int_eq(resp.type, PROTO_MSG_ERROR);
				ck_assert_int_eq(resp.u.error.code,
				    PROTO_E_BUSY);
				proto_response_free(&resp);
				break;
			}
			proto_response_free(&resp);
		}
	}
	tc_close(&c);
	daemon_stop();
	free(g);
	free(g2);
}
END_TEST

/* ---- hugetlb pool exhausted ------------------------------------------------ */

static long
read_long(const char *path)
{
	char buf[64];
	long v = -1;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) != NULL)
		v = strtol(buf, NULL, 10);
	fclose(f);
	return v;
}

static int
write_long(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	int rc;

	if (f == NULL)
		return -errno;
	rc = fprintf(f, "%ld\n", v) > 0 ? 0 : -EIO;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* HugePages_Free of /proc/meminfo (2 MiB pages), or -1. */
static long
hugepages_free(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "HugePages_Free: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

#define NR_HUGE	"/proc/sys/vm/nr_hugepages"

static long g_huge_orig = -1;	/* nr_hugepages to restore, or -1 */

/* Put nr_hugepages back (also at exit: a failed check exits the test). */
static void
huge_restore(void)
{
	if (g_huge_orig >= 0 && write_long(NR_HUGE, g_huge_orig) == 0)
		g_huge_orig = -1;
}

START_TEST(test_hugetlb_exhausted)
{
	struct gen *g1 = gen_new(), *g2 = gen_new();
	struct ps_info p1, p2;
	char pages[256];
	long orig, nfree;
	void *hog = MAP_FAILED;
	size_t hog_len = 0;
	struct tc c;

	if (geteuid() != 0) {
		tu_skip("hugetlb exhausted during a load: needs root to "
		    "reserve hugepages");
		goto out;
	}
	if ((orig = read_long(NR_HUGE)) < 0 || access(NR_HUGE, W_OK) != 0) {
		tu_skip("hugetlb exhausted during a load: " NR_HUGE " is not "
		    "writable here");
		goto out;
	}
	g_huge_orig = orig;
	atexit(huge_restore);
	if (write_long(NR_HUGE, orig + 8) < 0 ||
	    read_long(NR_HUGE) < orig + 1 || hugepages_free() < 1) {
		huge_restore();
		tu_skip("hugetlb exhausted during a load: the kernel reserved "
		    "no free hugepage");
		goto out;
	}
	daemon_start("pages = hugetlb", NULL);
	tc_open_at(&c, g_d.sock);
	/* with room in the pool: the weights in 2 MiB pages (unless another
	 * process took the pages first: the machine may be shared) */
	answer(&c, "h1", g1);
	ps_get(&c, "h1", &p1);
	ck_assert(p1.found);
	if (p1.bytes_2m == 0)
		fprintf(stderr, "check_residency: the first model got no "
		    "hugepage (another process took them?)\n");

	/* exhaust the pool: map every free hugepage ourselves */
	nfree = hugepages_free();
	if (nfree > 0) {
		hog_len = (size_t)nfree * HUGE_2M;
		hog = mmap(NULL, hog_len, PROT_READ | PROT_WRITE, MAP_PRIVATE |
		    MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		ck_assert_msg(hog != MAP_FAILED, "mmap %ld hugepages: %s",
		    nfree, strerror(errno));
		memset(hog, 1, hog_len);	/* fault them in */
	}
	ck_assert_int_eq(hugepages_free(), 0);

	/* the load falls back, the answer is right, the pages say so */
	answer(&c, "h2", g2);
	assert_same(g1, g2);
	ps_get(&c, "h2", &p2);
	ck_assert(p2.found);
	ck_assert_uint_eq(p2.bytes_2m, 0);
	ck_assert_uint_gt(p2.bytes_thp + p2.bytes_small, 0);
	show_get(&c, "h2", "hearth.memory.pages", pages, sizeof(pages));
	ck_assert_msg(strstr(pages, "2M") == NULL && (strstr(pages, "THP") !=
	    NULL || strstr(pages, "small") != NULL || strstr(pages, "thp") !=
	    NULL), "%s", pages);
	/* and the first model still answers the same */
	answer(&c, "h1", g2);
	assert_same(g1, g2);
	tc_close(&c);
	daemon_stop();
	if (hog != MAP_FAILED)
		munmap(hog, hog_len);
	huge_restore();
	ck_assert_int_eq(g_huge_orig, -1);
	ck_assert_int_eq(read_long(NR_HUGE), orig);
out:
	free(g1);
	free(g2);
}
END_TEST

static Suite *
residency_suite(void)
{
	Suite *s = suite_create("residency");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_replica_forward);
	tcase_add_test(tc, test_two_models_disjoint_cpus);
	tcase_add_test(tc, test_replicate);
	tcase_add_test(tc, test_replicate_no_worker);
	tcase_add_test(tc, test_load_numa);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_missing_cpus_not_pinned);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_hugetlb_exhausted);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(residency_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
