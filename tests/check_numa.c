/*
 * check_numa.c - tests of daemon/numa_topo.c: CPU lists, the simulated
 * topology file format (and its errors, each naming its line), reading
 * this machine through libnuma, and placement decisions on simulated
 * 1-, 2- and 4-node machines with uneven memory.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "numa_topo.h"
#include "testutil.h"

#define GiB	((uint64_t)1 << 30)

static void
setup(void)
{
	tu_tmpdir();
}

static void
teardown(void)
{
	tu_tmpdir_free();
}

/* A topology from text; the test fails on an error. */
static struct numa_topo *
topo(const char *text)
{
	struct numa_topo *t = calloc(1, sizeof(*t));
	struct eng_err err = { "" };
	int r;

	ck_assert_ptr_nonnull(t);
	r = numa_topo_parse(text, strlen(text), "sim", t, &err);
	ck_assert_msg(r == 0, "parse: %s", err.msg);
	return t;
}

static struct numa_place *
place(const struct numa_topo *t, const struct numa_usage *u,
    uint64_t weights, uint64_t other, enum numa_policy pol, uint32_t threads)
{
	struct numa_place *p = calloc(1, sizeof(*p));
	struct numa_want w = { 0 };

	ck_assert_ptr_nonnull(p);
	w.weight_bytes = weights;
	w.other_bytes = other;
	w.policy = pol;
	w.threads = threads;
	ck_assert_int_eq(numa_place(t, u, &w, p), 0);
	ck_assert(p->policy != NUMA_POLICY_AUTO);
	ck_assert_uint_gt(p->n_threads, 0);
	ck_assert_uint_eq(numa_cpuset_count(&p->cpus), p->n_threads);
	for (uint32_t i = 0; i < p->n_threads; i++) {
		uint32_t n = p->thread_node[i];

		ck_assert_uint_lt(n, t->n_nodes);
		ck_assert(numa_cpuset_has(&t->nodes[n].cpus,
		    p->thread_cpu[i]));
	}
	ck_assert(strlen(p->reason) > 0);
	return p;
}

static bool
disjoint(const struct numa_cpuset *a, const struct numa_cpuset *b)
{
	for (int i = 0; i < NUMA_CPU_WORDS; i++)
		if (a->bits[i] & b->bits[i])
			return false;
	return true;
}

static const char *two =
    "# two sockets, uneven memory\n"
    "node 0 cpus 0-3 mem 16G free 12G\n"
    "node 1 cpus 4-7 mem 32G free 30G\n";

static const char *four =
    "node 0 cpus 0-3 mem 16G free 10G\n"
    "node 1 cpus 4-7 mem 16G free 10G\n"
    "node 2 cpus 8-11 mem 16G free 10G\n"
    "node 3 cpus 12-15 mem 16G free 1G\n";

/* --- core: CPU sets and the file format ----------------------------------- */

START_TEST(test_cpuset)
{
	struct numa_cpuset s;
	char buf[64];
	cpu_set_t cs;

	ck_assert_int_eq(numa_cpuset_parse("0-3,8,10-11", &s), 0);
	ck_assert_uint_eq(numa_cpuset_count(&s), 7);
	ck_assert(numa_cpuset_has(&s, 3));
	ck_assert(!numa_cpuset_has(&s, 4));
	ck_assert(numa_cpuset_has(&s, 11));
	ck_assert(!numa_cpuset_has(&s, 5000));
	ck_assert_int_eq(numa_cpuset_format(&s, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "0-3,8,10-11");
	numa_cpuset_to_sched(&s, &cs);
	ck_assert_int_eq(CPU_COUNT(&cs), 7);
	ck_assert(CPU_ISSET(10, &cs));
	ck_assert_int_eq(numa_cpuset_format(&s, buf, 5), -ENOSPC);

	ck_assert_int_eq(numa_cpuset_parse("-", &s), 0);
	ck_assert_uint_eq(numa_cpuset_count(&s), 0);
	ck_assert_int_eq(numa_cpuset_format(&s, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "-");
	ck_assert_int_eq(numa_cpuset_parse("1023", &s), 0);
	ck_assert(numa_cpuset_has(&s, 1023));
	ck_assert_int_eq(numa_cpuset_parse("0-1023", &s), 0);
	ck_assert_uint_eq(numa_cpuset_count(&s), 1024);
	ck_assert_int_eq(numa_cpuset_format(&s, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "0-1023");
	numa_cpuset_clear(&s);
	numa_cpuset_add(&s, 7);
	numa_cpuset_add(&s, 5000);	/* ignored */
	ck_assert_uint_eq(numa_cpuset_count(&s), 1);
}
END_TEST

START_TEST(test_parse)
{
	struct numa_topo *t;

	t = topo("\n  # leading comment\n"
	    "node 1 cpus 4-7 mem 8G   # trailing comment\n"
	    "\t\n"
	    "node 0 free 12G mem 16G cpus 0-3,8-11 smt 8-11\r\n"
	    "node 2 cpus - mem 64G\n"
	    "node 3 cpus 12 mem 1024");	/* no final newline */
	ck_assert(t->simulated);
	ck_assert_uint_eq(t->n_nodes, 4);
	/* sorted by id */
	ck_assert_uint_eq(t->nodes[0].id, 0);
	ck_assert_uint_eq(t->nodes[0].mem_total, 16 * GiB);
	ck_assert_uint_eq(t->nodes[0].mem_free, 12 * GiB);
	ck_assert_uint_eq(numa_cpuset_count(&t->nodes[0].cpus), 8);
	ck_assert_uint_eq(numa_cpuset_count(&t->nodes[0].smt), 4);
	ck_assert(numa_cpuset_has(&t->nodes[0].smt, 9));
	ck_assert_uint_eq(t->nodes[1].id, 1);
	ck_assert_uint_eq(t->nodes[1].mem_free, 8 * GiB);	/* = mem */
	ck_assert_uint_eq(numa_cpuset_count(&t->nodes[2].cpus), 0);
	ck_assert_uint_eq(t->nodes[3].mem_total, 1024);
	ck_assert_int_eq(numa_topo_index(t, 2), 2);
	ck_assert_int_eq(numa_topo_index(t, 9), -1);
	free(t);

	/* sizes: every suffix, either case */
	t = topo("node 0 cpus 0 mem 3T free 5g\nnode 1 cpus 1 mem 7k free 3K\n"
	    "node 2 cpus 2 mem 2m free 1M\n");
	ck_assert_uint_eq(t->nodes[0].mem_total, 3ull << 40);
	ck_assert_uint_eq(t->nodes[0].mem_free, 5 * GiB);
	ck_assert_uint_eq(t->nodes[1].mem_total, 7 << 10);
	ck_assert_uint_eq(t->nodes[2].mem_free, 1 << 20);
	free(t);
}
END_TEST

START_TEST(test_format_roundtrip)
{
	struct numa_topo *t, *u;
	char buf[4096];

	t = topo("node 3 cpus 0-3,8-11 mem 16G free 12884901889 smt 8-11\n"
	    "node 1 cpus 4-7 mem 1536M free 0\nnode 7 cpus - mem 100\n");
	ck_assert_int_eq(numa_topo_format(t, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf,
	    "node 1 cpus 4-7 mem 1536M free 0\n"
	    "node 3 cpus 0-3,8-11 mem 16G free 12884901889 smt 8-11\n"
	    "node 7 cpus - mem 100 free 100\n");
	u = topo(buf);
	ck_assert_uint_eq(u->n_nodes, t->n_nodes);
	ck_assert_mem_eq(u->nodes, t->nodes, t->n_nodes * sizeof(t->nodes[0]));
	ck_assert_int_eq(numa_topo_format(t, buf, 20), -ENOSPC);
	free(t);
	free(u);
}
END_TEST

START_TEST(test_load_file)
{
	const char *path = tu_tmpfile("topo");
	struct numa_topo t;
	struct eng_err err = { "" };

	ck_assert_int_eq(tu_write_file(path, two, strlen(two)), 0);
	ck_assert_int_eq(numa_topo_load(path, &t, &err), 0);
	ck_assert_uint_eq(t.n_nodes, 2);
	ck_assert(t.simulated);
	ck_assert_uint_eq(t.nodes[1].mem_free, 30 * GiB);
	/* errors carry the path */
	ck_assert_int_eq(tu_write_file(path, "node 0 cpus 0 mem 1G\nbogus\n",
	    27), 0);
	ck_assert_int_eq(numa_topo_load(path, &t, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "topo:2:"));
	ck_assert_int_eq(numa_topo_load(tu_tmpfile("missing"), &t, &err),
	    -ENOENT);
	ck_assert_int_eq(numa_topo_load(tu_tmpdir(), &t, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
	ck_assert_uint_eq(t.n_nodes, 2);	/* untouched by failures */
}
END_TEST

START_TEST(test_read_machine)
{
	struct numa_topo t;
	struct numa_place p;
	struct numa_want w = { 0 };
	struct eng_err err = { "" };
	char buf[8192];
	uint32_t i, cpus = 0;
	long online = sysconf(_SC_NPROCESSORS_ONLN);

	ck_assert_msg(numa_topo_read(&t, &err) == 0, "%s", err.msg);
	ck_assert(!t.simulated);
	ck_assert_uint_ge(t.n_nodes, 1);
	for (i = 0; i < t.n_nodes; i++) {
		cpus += numa_cpuset_count(&t.nodes[i].cpus);
		ck_assert_uint_le(t.nodes[i].mem_free, t.nodes[i].mem_total);
		if (i > 0)
			ck_assert_uint_gt(t.nodes[i].id, t.nodes[i - 1].id);
	}
	ck_assert_uint_ge(cpus, 1);
	ck_assert_int_le((long)cpus, online);
	ck_assert_int_eq(numa_topo_format(&t, buf, sizeof(buf)), 0);
	fprintf(stderr, "this machine (%s):\n%s", t.libnuma ? "libnuma" :
	    "no NUMA", buf);
	/* it loads back as a simulation of itself */
	{
		struct numa_topo *u = topo(buf);

		ck_assert_uint_eq(u->n_nodes, t.n_nodes);
		ck_assert_mem_eq(u->nodes, t.nodes,
		    t.n_nodes * sizeof(t.nodes[0]));
		free(u);
	}
	w.weight_bytes = 1 << 20;
	ck_assert_int_eq(numa_place(&t, NULL, &w, &p), 0);
	ck_assert_uint_ge(p.n_threads, 1);
	fprintf(stderr, "a 1 MiB model here: %s\n", p.reason);
}
END_TEST

/* --- core: placement ------------------------------------------------------ */

START_TEST(test_one_node)
{
	struct numa_topo *t = topo("node 0 cpus 0-7 smt 4-7 mem 32G free 20G");
	enum numa_policy pol;
	struct numa_place *p;

	for (pol = NUMA_POLICY_AUTO; pol <= NUMA_POLICY_REPLICATE; pol++) {
		p = place(t, NULL, 4 * GiB, GiB, pol, 0);
		ck_assert(p->single_node);
		ck_assert(p->fits);
		ck_assert_int_eq(p->policy, pol == NUMA_POLICY_AUTO ?
		    NUMA_POLICY_LOCAL : pol);
		ck_assert_uint_eq(p->weight_nodes, 1);
		ck_assert_int_eq(p->kv_node, 0);
		ck_assert_uint_eq(p->node_bytes[0], 5 * GiB);
		/* one worker per physical core */
		ck_assert_uint_eq(p->n_threads, 4);
		ck_assert_uint_eq(p->thread_cpu[3], 3);
		ck_assert_ptr_nonnull(strstr(p->reason, "one NUMA node"));
		ck_assert_ptr_nonnull(strstr(p->reason,
		    numa_policy_name(p->policy)));
		free(p);
	}
	/* too big: still placed, reported */
	p = place(t, NULL, 24 * GiB, 0, NUMA_POLICY_REPLICATE, 2);
	ck_assert(!p->fits);
	ck_assert_uint_eq(p->n_threads, 2);
	ck_assert_ptr_nonnull(strstr(p->reason, "20.0 GiB free"));
	free(p);
	free(t);
}
END_TEST

START_TEST(test_local_most_free)
{
	struct numa_topo *t = topo(two);
	struct numa_usage u = { 0 };
	struct numa_place *p;

	p = place(t, NULL, 4 * GiB, GiB, NUMA_POLICY_LOCAL, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_LOCAL);
	ck_assert(!p->single_node);
	ck_assert(p->fits);
	ck_assert_uint_eq(p->weight_nodes, 0x2);
	ck_assert_int_eq(p->kv_node, 1);
	ck_assert_uint_eq(p->node_bytes[1], 5 * GiB);
	ck_assert_uint_eq(p->node_bytes[0], 0);
	ck_assert_uint_eq(p->n_threads, 4);
	for (uint32_t i = 0; i < 4; i++) {
		ck_assert_uint_eq(p->thread_cpu[i], 4 + i);
		ck_assert_uint_eq(p->thread_node[i], 1);
	}
	ck_assert_ptr_nonnull(strstr(p->reason, "local on node 1"));
	ck_assert_ptr_nonnull(strstr(p->reason, "CPUs 4-7"));
	free(p);

	/* hearth already put 20 GiB on node 1: node 0 has more room now */
	u.bytes[1] = 20 * GiB;
	p = place(t, &u, 4 * GiB, GiB, NUMA_POLICY_LOCAL, 0);
	ck_assert_uint_eq(p->weight_nodes, 0x1);
	ck_assert_int_eq(p->kv_node, 0);
	ck_assert_uint_eq(p->thread_cpu[0], 0);
	free(p);
	free(t);
}
END_TEST

START_TEST(test_local_falls_back)
{
	struct numa_topo *t = topo(four);
	struct numa_place *p;

	/* 12 GiB fits no node: interleaved over three, saying why */
	p = place(t, NULL, 11 * GiB, GiB, NUMA_POLICY_LOCAL, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_INTERLEAVE);
	ck_assert(p->fits);
	ck_assert_uint_eq(p->weight_nodes, 0x7);
	ck_assert_uint_eq(p->node_bytes[2], 4 * GiB);
	ck_assert_ptr_nonnull(strstr(p->reason, "local: 12.0 GiB fits on no "
	    "node (most free: node 0, 10.0 GiB); interleave: 12.0 GiB over "
	    "nodes 0-2"));
	free(p);
	free(t);
}
END_TEST

START_TEST(test_interleave)
{
	struct numa_topo *t = topo(two), *f = topo(four);
	struct numa_place *p;

	p = place(t, NULL, 9 * GiB, GiB, NUMA_POLICY_INTERLEAVE, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_INTERLEAVE);
	ck_assert(p->fits);
	ck_assert_uint_eq(p->weight_nodes, 0x3);
	ck_assert_int_eq(p->kv_node, -1);
	ck_assert_uint_eq(p->node_bytes[0], 5 * GiB);
	ck_assert_uint_eq(p->node_bytes[1], 5 * GiB);
	ck_assert_uint_eq(p->n_threads, 8);	/* threads on all nodes */
	ck_assert_ptr_nonnull(strstr(p->reason, "over nodes 0-1"));
	free(p);

	/* odd bytes: shares differ by at most one byte, sum exact */
	p = place(t, NULL, 7, 0, NUMA_POLICY_INTERLEAVE, 0);
	ck_assert_uint_eq(p->node_bytes[0], 4);
	ck_assert_uint_eq(p->node_bytes[1], 3);
	free(p);

	/* four nodes, one nearly full: 24 GiB over the three with room */
	p = place(f, NULL, 24 * GiB, 0, NUMA_POLICY_INTERLEAVE, 0);
	ck_assert(p->fits);
	ck_assert_uint_eq(p->weight_nodes, 0x7);
	ck_assert_uint_eq(p->node_bytes[0], 8 * GiB);
	ck_assert_uint_eq(p->node_bytes[3], 0);
	ck_assert_uint_eq(p->n_threads, 16);	/* all cores still */
	ck_assert_ptr_nonnull(strstr(p->reason, "nodes 0-2"));
	free(p);
	/* small enough for all four */
	p = place(f, NULL, 4 * GiB, 0, NUMA_POLICY_INTERLEAVE, 0);
	ck_assert_uint_eq(p->weight_nodes, 0xf);
	ck_assert_uint_eq(p->node_bytes[3], GiB);
	free(p);
	/* too big for everything: spread anyway, fits false */
	p = place(f, NULL, 40 * GiB, 0, NUMA_POLICY_INTERLEAVE, 0);
	ck_assert(!p->fits);
	ck_assert_uint_eq(p->weight_nodes, 0xf);
	ck_assert_ptr_nonnull(strstr(p->reason, "does not fit"));
	free(p);
	free(t);
	free(f);
}
END_TEST

START_TEST(test_replicate)
{
	struct numa_topo *t = topo(two), *f = topo(four);
	struct numa_place *p;
	uint32_t i, per[2] = { 0, 0 };

	p = place(t, NULL, 2 * GiB, GiB, NUMA_POLICY_REPLICATE, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_REPLICATE);
	ck_assert(p->fits);
	ck_assert_uint_eq(p->weight_nodes, 0x3);
	ck_assert_int_eq(p->kv_node, -1);
	ck_assert_uint_eq(p->node_bytes[0], 2 * GiB + GiB / 2);
	ck_assert_uint_eq(p->node_bytes[1], 2 * GiB + GiB / 2);
	ck_assert_uint_eq(p->n_threads, 8);
	/* each worker's node is its CPU's: it reads that copy */
	for (i = 0; i < p->n_threads; i++) {
		ck_assert_uint_eq(p->thread_node[i], p->thread_cpu[i] / 4);
		per[p->thread_node[i]]++;
	}
	ck_assert_uint_eq(per[0], 4);
	ck_assert_uint_eq(per[1], 4);
	ck_assert_ptr_nonnull(strstr(p->reason, "copy"));
	free(p);

	/* threads asked for are spread evenly over the copies */
	p = place(t, NULL, 2 * GiB, 0, NUMA_POLICY_REPLICATE, 3);
	ck_assert_uint_eq(p->n_threads, 3);
	ck_assert_uint_eq(p->thread_node[0], 0);
	ck_assert_uint_eq(p->thread_node[1], 0);
	ck_assert_uint_eq(p->thread_node[2], 1);
	free(p);

	/* 13 GiB of weights do not fit node 0 (12 GiB free): local on 1 */
	p = place(t, NULL, 13 * GiB, 0, NUMA_POLICY_REPLICATE, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_LOCAL);
	ck_assert_uint_eq(p->weight_nodes, 0x2);
	ck_assert_ptr_nonnull(strstr(p->reason, "replicate: 13.0 GiB of "
	    "weights do not fit on node 0 (12.0 GiB free)"));
	ck_assert_ptr_nonnull(strstr(p->reason, "local on node 1"));
	free(p);

	/* nor anywhere whole: interleaved */
	p = place(t, NULL, 31 * GiB, 0, NUMA_POLICY_REPLICATE, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_INTERLEAVE);
	ck_assert_ptr_nonnull(strstr(p->reason, "replicate:"));
	free(p);

	/* four nodes: node 3 has 1 GiB, so 2 GiB cannot be copied there */
	p = place(f, NULL, 2 * GiB, 0, NUMA_POLICY_REPLICATE, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_LOCAL);
	ck_assert_ptr_nonnull(strstr(p->reason, "node 3 (1.0 GiB free)"));
	free(p);
	p = place(f, NULL, GiB / 2, GiB / 2, NUMA_POLICY_REPLICATE, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_REPLICATE);
	ck_assert_uint_eq(p->weight_nodes, 0xf);
	ck_assert_uint_eq(p->node_bytes[3], GiB / 2 + GiB / 8);
	free(p);
	free(t);
	free(f);
}
END_TEST

START_TEST(test_auto)
{
	struct numa_topo *t = topo(two), *f = topo(four);
	struct numa_place *p;
	struct numa_want w = { 0 };
	struct numa_place q;

	/* small (<= 16G / 4) and fits everywhere: replicate */
	p = place(t, NULL, 3 * GiB, GiB, NUMA_POLICY_AUTO, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_REPLICATE);
	ck_assert_ptr_nonnull(strstr(p->reason, "auto: 3.0 GiB of weights is "
	    "small (up to 4.0 GiB)"));
	free(p);
	/* bigger than a quarter of the smallest node: local */
	p = place(t, NULL, 5 * GiB, GiB, NUMA_POLICY_AUTO, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_LOCAL);
	ck_assert_uint_eq(p->weight_nodes, 0x2);
	ck_assert_ptr_nonnull(strstr(p->reason, "auto: local on node 1"));
	free(p);
	/* fits no node: interleave */
	p = place(t, NULL, 33 * GiB, 0, NUMA_POLICY_AUTO, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_INTERLEAVE);
	ck_assert(!p->fits);
	ck_assert_ptr_nonnull(strstr(p->reason, "auto: interleave: 33.0 GiB "
	    "does not fit"));
	free(p);
	/* replicate_max set by the caller */
	w.weight_bytes = 5 * GiB;
	w.replicate_max = 8 * GiB;
	ck_assert_int_eq(numa_place(t, NULL, &w, &q), 0);
	ck_assert_int_eq(q.policy, NUMA_POLICY_REPLICATE);
	w.replicate_max = GiB;
	ck_assert_int_eq(numa_place(t, NULL, &w, &q), 0);
	ck_assert_int_eq(q.policy, NUMA_POLICY_LOCAL);
	/* four nodes: small, but node 3 is nearly full: local */
	p = place(f, NULL, 2 * GiB, 0, NUMA_POLICY_AUTO, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_LOCAL);
	ck_assert_uint_eq(p->weight_nodes, 0x1);	/* ties: lowest */
	free(p);
	p = place(f, NULL, GiB / 4, 0, NUMA_POLICY_AUTO, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_REPLICATE);
	ck_assert_uint_eq(p->weight_nodes, 0xf);
	free(p);
	free(t);
	free(f);
}
END_TEST

START_TEST(test_two_models_disjoint)
{
	struct numa_topo *t = topo(two), *f = topo(four);
	struct numa_usage u = { 0 };
	struct numa_place *a, *b, *c;
	int i;

	/* both would fit node 1 best; the second goes where cores are free */
	a = place(t, &u, 4 * GiB, 0, NUMA_POLICY_LOCAL, 0);
	numa_usage_add(&u, a);
	ck_assert_uint_eq(u.bytes[1], 4 * GiB);
	ck_assert_uint_eq(u.cpu_refs[4], 1);
	b = place(t, &u, 4 * GiB, 0, NUMA_POLICY_LOCAL, 0);
	ck_assert_uint_eq(a->weight_nodes, 0x2);
	ck_assert_uint_eq(b->weight_nodes, 0x1);
	ck_assert(disjoint(&a->cpus, &b->cpus));
	ck_assert(!a->shared_cpus && !b->shared_cpus);
	numa_usage_add(&u, b);

	/* a third finds no free core: it shares, and says so */
	c = place(t, &u, 1 * GiB, 0, NUMA_POLICY_LOCAL, 0);
	ck_assert(c->shared_cpus);
	ck_assert_ptr_nonnull(strstr(c->reason, "shared with other models"));
	free(c);

	/* unloading gives everything back */
	numa_usage_sub(&u, a);
	numa_usage_sub(&u, b);
	for (i = 0; i < NUMA_MAX_NODES; i++)
		ck_assert_uint_eq(u.bytes[i], 0);
	for (i = 0; i < NUMA_MAX_CPUS; i++)
		ck_assert_uint_eq(u.cpu_refs[i], 0);
	numa_usage_sub(&u, a);		/* saturates at zero */
	ck_assert_uint_eq(u.bytes[1], 0);
	free(a);
	free(b);

	/* four nodes: four local models, four disjoint sets */
	{
		struct numa_place *m[4];
		int j;

		for (i = 0; i < 4; i++) {
			m[i] = place(f, &u, GiB / 2, 0, NUMA_POLICY_LOCAL, 2);
			ck_assert_uint_eq(m[i]->n_threads, 2);
			numa_usage_add(&u, m[i]);
		}
		/* the roomiest node with free cores each time */
		ck_assert_uint_eq(m[0]->weight_nodes, 0x1);
		ck_assert_uint_eq(m[1]->weight_nodes, 0x2);
		ck_assert_uint_eq(m[2]->weight_nodes, 0x4);
		ck_assert_uint_eq(m[3]->weight_nodes, 0x1);
		for (i = 0; i < 4; i++)
			for (j = i + 1; j < 4; j++)
				ck_assert(disjoint(&m[i]->cpus, &m[j]->cpus));
		ck_assert_uint_eq(m[3]->thread_cpu[0], 2);
		for (i = 0; i < 4; i++)
			free(m[i]);
	}
	free(t);
	free(f);
}
END_TEST

START_TEST(test_threads)
{
	struct numa_topo *t = topo("node 0 cpus 0-7 smt 4-7 mem 8G\n"
	    "node 1 cpus 8-15 smt 12-15 mem 4G\n");
	struct numa_usage u = { 0 };
	struct numa_place *p;

	/* default: one per physical core of the node */
	p = place(t, NULL, GiB, 0, NUMA_POLICY_LOCAL, 0);
	ck_assert_uint_eq(p->weight_nodes, 0x1);
	ck_assert_uint_eq(p->n_threads, 4);
	free(p);
	/* more than cores: the second hardware threads come last */
	p = place(t, NULL, GiB, 0, NUMA_POLICY_LOCAL, 6);
	ck_assert_uint_eq(p->n_threads, 6);
	ck_assert_uint_eq(p->thread_cpu[3], 3);
	ck_assert_uint_eq(p->thread_cpu[4], 4);
	ck_assert_uint_eq(p->thread_cpu[5], 5);
	free(p);
	/* more than the node's CPUs: capped, said */
	p = place(t, NULL, GiB, 0, NUMA_POLICY_LOCAL, 32);
	ck_assert_uint_eq(p->n_threads, 8);
	ck_assert_ptr_nonnull(strstr(p->reason, "(32 asked, 8 free CPUs)"));
	free(p);
	/* some cores taken: only the free ones, primaries first */
	u.cpu_refs[0] = u.cpu_refs[1] = 1;
	u.cpu_refs[8] = u.cpu_refs[9] = u.cpu_refs[10] = u.cpu_refs[11] = 1;
	p = place(t, &u, GiB, 0, NUMA_POLICY_LOCAL, 0);
	ck_assert_uint_eq(p->weight_nodes, 0x1);
	ck_assert_uint_eq(p->n_threads, 2);
	ck_assert_uint_eq(p->thread_cpu[0], 2);
	ck_assert_uint_eq(p->thread_cpu[1], 3);
	free(p);
	/* interleave over both: free primaries of both nodes */
	p = place(t, &u, GiB, 0, NUMA_POLICY_INTERLEAVE, 0);
	ck_assert_uint_eq(p->n_threads, 2);	/* node 1 has no free core */
	free(p);
	p = place(t, &u, GiB, 0, NUMA_POLICY_INTERLEAVE, 10);
	ck_assert_uint_eq(p->n_threads, 10);
	ck_assert(!p->shared_cpus);
	ck_assert(!numa_cpuset_has(&p->cpus, 0));
	ck_assert(!numa_cpuset_has(&p->cpus, 8));
	free(p);
	free(t);
}
END_TEST

START_TEST(test_memory_only_node)
{
	struct numa_topo *t = topo("node 0 cpus 0-3 mem 8G free 6G\n"
	    "node 1 cpus - mem 64G\n"
	    "node 2 cpus 4-7 mem 8G free 5G\n");
	struct numa_place *p;

	/* local never picks the CPU-less node, however roomy */
	p = place(t, NULL, 4 * GiB, 0, NUMA_POLICY_LOCAL, 0);
	ck_assert_uint_eq(p->weight_nodes, 0x1);
	free(p);
	/* interleave uses its memory, threads stay on CPU nodes */
	p = place(t, NULL, 30 * GiB, 0, NUMA_POLICY_AUTO, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_INTERLEAVE);
	ck_assert(p->fits);
	ck_assert_uint_eq(p->weight_nodes, 0x2);	/* only it has room */
	ck_assert_uint_eq(p->n_threads, 8);
	free(p);
	/* replicate: copies on CPU nodes only */
	p = place(t, NULL, GiB, 0, NUMA_POLICY_REPLICATE, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_REPLICATE);
	ck_assert_uint_eq(p->weight_nodes, 0x5);
	ck_assert_uint_eq(p->node_bytes[1], 0);
	free(p);
	/* kernel ids of the chosen indices */
	ck_assert_uint_eq(numa_place_kernel_nodes(t, 0x5), 0x5);
	free(t);

	/* one node with CPUs and one without: replicate is impossible */
	t = topo("node 0 cpus 0-1 mem 8G\nnode 5 cpus - mem 8G\n");
	p = place(t, NULL, GiB, 0, NUMA_POLICY_REPLICATE, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_LOCAL);
	ck_assert_ptr_nonnull(strstr(p->reason, "only one node has CPUs"));
	free(p);
	ck_assert_uint_eq(numa_place_kernel_nodes(t, 0x3), 0x21);
	free(t);
}
END_TEST

START_TEST(test_policy_names)
{
	enum numa_policy p;

	ck_assert_int_eq(numa_policy_parse("auto", &p), 0);
	ck_assert_int_eq(p, NUMA_POLICY_AUTO);
	ck_assert_int_eq(numa_policy_parse("local", &p), 0);
	ck_assert_int_eq(p, NUMA_POLICY_LOCAL);
	ck_assert_int_eq(numa_policy_parse("interleave", &p), 0);
	ck_assert_int_eq(p, NUMA_POLICY_INTERLEAVE);
	ck_assert_int_eq(numa_policy_parse("replicate", &p), 0);
	ck_assert_int_eq(p, NUMA_POLICY_REPLICATE);
	ck_assert_int_eq(numa_policy_parse("Local", &p), -EINVAL);
	ck_assert_int_eq(numa_policy_parse(NULL, &p), -EINVAL);
	ck_assert_str_eq(numa_policy_name(NUMA_POLICY_REPLICATE), "replicate");
	ck_assert_str_eq(numa_policy_name((enum numa_policy)9), "?");
}
END_TEST

/* --- limits --------------------------------------------------------------- */

START_TEST(test_big_machines)
{
	char *text = malloc(64 * 80);
	struct numa_topo *t;
	struct numa_place *p;
	size_t len = 0;
	int i;

	/* 64 nodes of 16 CPUs: every node and CPU number there is */
	for (i = 0; i < 64; i++)
		len += (size_t)sprintf(text + len, "node %d cpus %d-%d mem %dG\n",
		    i, i * 16, i * 16 + 15, 1 + i % 3);
	t = topo(text);
	ck_assert_uint_eq(t->n_nodes, 64);
	p = place(t, NULL, 40 * GiB, 0, NUMA_POLICY_INTERLEAVE, 0);
	ck_assert_uint_eq(p->n_threads, 1024);
	ck_assert_uint_eq(p->weight_nodes, UINT64_MAX);
	ck_assert(p->fits);
	free(p);
	/* 100 GiB in equal shares does not fit 1 GiB nodes */
	p = place(t, NULL, 100 * GiB, 0, NUMA_POLICY_INTERLEAVE, 0);
	ck_assert(!p->fits);
	free(p);
	p = place(t, NULL, GiB / 8, 0, NUMA_POLICY_AUTO, 0);
	ck_assert_int_eq(p->policy, NUMA_POLICY_REPLICATE);
	ck_assert_uint_eq(p->weight_nodes, UINT64_MAX);
	ck_assert_uint_eq(p->thread_node[1023], 63);
	free(p);
	free(t);
	free(text);
}
END_TEST

START_TEST(test_overflow)
{
	struct numa_topo *t = topo(two);
	struct numa_usage u = { 0 };
	struct numa_place *p;

	/* sizes near 2^64 saturate: nothing fits, nothing wraps */
	p = place(t, NULL, UINT64_MAX, UINT64_MAX, NUMA_POLICY_AUTO, 0);
	ck_assert(!p->fits);
	ck_assert_int_eq(p->policy, NUMA_POLICY_INTERLEAVE);
	free(p);
	p = place(t, NULL, UINT64_MAX - 5, 100, NUMA_POLICY_REPLICATE, 0);
	ck_assert(!p->fits);
	numa_usage_add(&u, p);
	numa_usage_add(&u, p);
	ck_assert_uint_eq(u.bytes[0], UINT64_MAX);
	free(p);
	/* usage beyond the free memory: no room, no underflow */
	u.bytes[0] = u.bytes[1] = UINT64_MAX;
	p = place(t, &u, 1, 0, NUMA_POLICY_LOCAL, 0);
	ck_assert(!p->fits);
	free(p);
	/* CPU counts saturate */
	memset(&u, 0, sizeof(u));
	u.cpu_refs[4] = UINT16_MAX;
	p = place(t, NULL, 1, 0, NUMA_POLICY_LOCAL, 0);
	numa_usage_add(&u, p);
	ck_assert_uint_eq(u.cpu_refs[4], UINT16_MAX);
	free(p);
	free(t);
}
END_TEST

/* --- errors --------------------------------------------------------------- */

/* text must fail with code and a message containing want. */
static void
bad(const char *text, int code, const char *want)
{
	struct numa_topo *t = calloc(1, sizeof(*t));
	struct eng_err err = { "" };

	ck_assert_ptr_nonnull(t);
	t->n_nodes = 77;
	ck_assert_int_eq(numa_topo_parse(text, strlen(text), "sim", t, &err),
	    code);
	ck_assert_msg(strstr(err.msg, want) != NULL, "'%s' lacks '%s'",
	    err.msg, want);
	ck_assert_uint_eq(t->n_nodes, 77);	/* untouched */
	free(t);
}

START_TEST(test_parse_errors)
{
	const char *ok = "node 0 cpus 0-3 mem 8G\n";
	char buf[2048];

	bad("", -EINVAL, "sim: no 'node' line");
	bad("# only a comment\n\n", -EINVAL, "no 'node' line");
	bad("node 0 cpus - mem 8G\n", -EINVAL, "no node has CPUs");
	bad("node 0 cpus 0 mem 8G\ncpu 1\n", -EINVAL,
	    "sim:2: expected 'node', got 'cpu'");
	bad("\n\nnode\n", -EINVAL, "sim:3: node: missing id");
	bad("node x cpus 0 mem 1G\n", -EINVAL, "sim:1: bad node id 'x'");
	bad("node 64 cpus 0 mem 1G\n", -EINVAL, "bad node id '64' (0..63)");
	bad("node -1 cpus 0 mem 1G\n", -EINVAL, "bad node id");
	bad("node 1x cpus 0 mem 1G\n", -EINVAL, "bad node id '1x'");
	bad("node 0 cpus 0 mem 1G\nnode 0 cpus 1 mem 1G\n", -EINVAL,
	    "sim:2: node 0 is already described");
	bad("node 0 cpus 0 mem 1G color red\n", -EINVAL,
	    "sim:1: node 0: unknown key 'color'");
	bad("node 0 cpus 0 mem 1G mem 2G\n", -EINVAL, "'mem' given twice");
	bad("node 0 cpus 0 mem\n", -EINVAL, "'mem' has no value");
	bad("node 0 mem 1G\n", -EINVAL, "missing 'cpus'");
	bad("node 0 cpus 1\n", -EINVAL, "missing 'mem'");
	bad("node 0 cpus 0 mem 12X\n", -EINVAL, "bad size '12X' for mem");
	bad("node 0 cpus 0 mem G\n", -EINVAL, "bad size 'G'");
	bad("node 0 cpus 0 mem 1GB\n", -EINVAL, "bad size '1GB'");
	bad("node 0 cpus 0 mem 1.5G\n", -EINVAL, "bad size '1.5G'");
	bad("node 0 cpus 0 mem 99999999999999999999\n", -EINVAL, "bad size");
	bad("node 0 cpus 0 mem 20000000T\n", -EINVAL, "bad size");
	bad("node 0 cpus 0 mem 1G free 2G\n", -EINVAL, "free is more than mem");
	bad("node 0 cpus 3-1 mem 1G\n", -EINVAL, "bad CPU list '3-1'");
	bad("node 0 cpus 1,,2 mem 1G\n", -EINVAL, "bad CPU list '1,,2'");
	bad("node 0 cpus 1, mem 1G\n", -EINVAL, "bad CPU list '1,'");
	bad("node 0 cpus a mem 1G\n", -EINVAL, "bad CPU list 'a'");
	bad("node 0 cpus 5000 mem 1G\n", -EINVAL, "(CPU number too large)");
	bad("node 0 cpus 0-3 smt 4 mem 1G\n", -EINVAL,
	    "smt CPU 4 is not in cpus");
	bad("node 0 cpus 0-3 mem 1G\nnode 1 cpus 3-5 mem 1G\n", -EINVAL,
	    "sim:2: node 1: CPU 3 is already in node 0");
	/* a long line, counted right */
	memset(buf, 'x', sizeof(buf));
	snprintf(buf, sizeof(buf), "%s# ", ok);
	buf[strlen(buf)] = 'x';
	buf[1500] = '\0';
	bad(buf, -EINVAL, "sim:2: line longer than 1024 bytes");
	{
		struct numa_topo *t = calloc(1, sizeof(*t));
		struct eng_err err = { "" };
		char nul[] = "node 0 cpus 0 mem 1G\0\n";
		char *big = calloc(1, NUMA_FILE_MAX + 2);

		ck_assert_int_eq(numa_topo_parse(nul, sizeof(nul) - 1, NULL, t,
		    &err), -EINVAL);
		ck_assert_ptr_nonnull(strstr(err.msg, "topology: contains a "
		    "NUL byte"));
		memset(big, '\n', NUMA_FILE_MAX + 1);
		ck_assert_int_eq(numa_topo_parse(big, NUMA_FILE_MAX + 1, "b",
		    t, &err), -EFBIG);
		/* exactly the cap is fine (only blank lines: no node) */
		ck_assert_int_eq(numa_topo_parse(big, NUMA_FILE_MAX, "b", t,
		    &err), -EINVAL);
		ck_assert_ptr_nonnull(strstr(err.msg, "no 'node' line"));
		free(big);
		free(t);
	}
	/* 65 nodes */
	{
		char *text = malloc(65 * 40);
		size_t len = 0;
		int i;

		for (i = 0; i < 64; i++)
			len += (size_t)sprintf(text + len,
			    "node %d cpus %d mem 1G\n", i, i);
		len += (size_t)sprintf(text + len, "node 3 cpus 99 mem 1G\n");
		bad(text, -EINVAL, "sim:65: node 3 is already described");
		free(text);
	}
}
END_TEST

START_TEST(test_place_errors)
{
	struct numa_topo *t = topo(two);
	struct numa_want w = { 0 };
	struct numa_place p;

	memset(&p, 0x5a, sizeof(p));
	w.weight_bytes = GiB;
	w.policy = (enum numa_policy)4;
	ck_assert_int_eq(numa_place(t, NULL, &w, &p), -EINVAL);
	w.policy = NUMA_POLICY_AUTO;
	w.threads = NUMA_MAX_THREADS + 1;
	ck_assert_int_eq(numa_place(t, NULL, &w, &p), -EINVAL);
	w.threads = 0;
	ck_assert_int_eq(numa_place(NULL, NULL, &w, &p), -EINVAL);
	ck_assert_int_eq(numa_place(t, NULL, NULL, &p), -EINVAL);
	ck_assert_int_eq(numa_place(t, NULL, &w, NULL), -EINVAL);
	t->n_nodes = 0;
	ck_assert_int_eq(numa_place(t, NULL, &w, &p), -EINVAL);
	t->n_nodes = 2;
	numa_cpuset_clear(&t->nodes[0].cpus);
	numa_cpuset_clear(&t->nodes[1].cpus);
	ck_assert_int_eq(numa_place(t, NULL, &w, &p), -EINVAL);
	ck_assert_uint_eq(p.n_threads, 0x5a5a5a5a);	/* untouched */
	free(t);
}
END_TEST

static Suite *
numa_suite(void)
{
	Suite *s = suite_create("numa");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_cpuset);
	tcase_add_test(tc, test_parse);
	tcase_add_test(tc, test_format_roundtrip);
	tcase_add_test(tc, test_load_file);
	tcase_add_test(tc, test_read_machine);
	tcase_add_test(tc, test_one_node);
	tcase_add_test(tc, test_local_most_free);
	tcase_add_test(tc, test_local_falls_back);
	tcase_add_test(tc, test_interleave);
	tcase_add_test(tc, test_replicate);
	tcase_add_test(tc, test_auto);
	tcase_add_test(tc, test_two_models_disjoint);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_memory_only_node);
	tcase_add_test(tc, test_policy_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_big_machines);
	tcase_add_test(tc, test_overflow);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_parse_errors);
	tcase_add_test(tc, test_place_errors);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(numa_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
