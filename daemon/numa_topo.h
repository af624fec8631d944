/*
 * numa_topo.h - the machine's NUMA topology and where a model goes on it.
 *
 * (Not named numa.h: daemon/ is on the include path, and that name would
 * hide libnuma's <numa.h>.)
 *
 * numa_topo_read() asks libnuma at start: the nodes, the CPUs of each
 * that this process may run on (which of them are a core's second
 * hardware thread), total and free memory. numa_topo_load() reads the
 * same from a text file describing a simulated machine:
 *
 *	# comment; blank lines are ignored
 *	node 0 cpus 0-3,8-11 mem 16G free 12G smt 8-11
 *	node 1 cpus 4-7 mem 8G
 *	node 2 cpus - mem 64G			# memory only (CXL)
 *
 * One line per node: "node ID" then key/value pairs in any order:
 * "cpus LIST" (required; "-" for none), "mem SIZE" (required),
 * "free SIZE" (default: mem; at most mem), "smt LIST" (CPUs of cpus that
 * are second hardware threads of a core; default none). LIST is
 * comma-separated CPU numbers and ranges "a-b"; SIZE is a whole number
 * with an optional K, M, G or T suffix (powers of 1024). Node IDs are
 * distinct and < NUMA_MAX_NODES, CPUs < NUMA_MAX_CPUS and in one node
 * only, at least one node has CPUs. An error names the line.
 *
 * numa_place() is a pure function of a topology, the memory and CPUs
 * hearth's resident models already use, and what the new model wants.
 */
#ifndef HEARTH_NUMA_TOPO_H
#define HEARTH_NUMA_TOPO_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define NUMA_MAX_NODES	64
#define NUMA_MAX_CPUS	1024
#define NUMA_CPU_WORDS	(NUMA_MAX_CPUS / 64)
#define NUMA_REASON_MAX	320
#define NUMA_LINE_MAX	1024	/* longest line of a topology file */
#define NUMA_FILE_MAX	(1 << 20) /* largest topology file */

/* A set of CPU numbers. */
struct numa_cpuset {
	uint64_t	 bits[NUMA_CPU_WORDS];	/* CPU c is bit c % 64 of
						 * bits[c / 64] */
};

struct numa_node {
	uint32_t		 id;		/* kernel node number (for mbind) */
	uint64_t		 mem_total;	/* bytes */
	uint64_t		 mem_free;	/* bytes free when read */
	struct numa_cpuset	 cpus;		/* CPUs this process may use */
	struct numa_cpuset	 smt;		/* subset of cpus: a core's second
						 * (third...) hardware thread */
};

struct numa_topo {
	uint32_t	 n_nodes;		/* 1..NUMA_MAX_NODES */
	struct numa_node nodes[NUMA_MAX_NODES];	/* [n_nodes], by id */
	bool		 simulated;		/* from a file: the node ids need
						 * not exist, so do not bind */
	bool		 libnuma;		/* read through libnuma (false:
						 * one node, without NUMA) */
};

enum numa_policy {
	NUMA_POLICY_AUTO = 0,	/* replicate small models on several nodes
				 * when they fit everywhere, else local when
				 * one node holds it, else interleave */
	NUMA_POLICY_LOCAL,	/* weights, KV and threads on one node */
	NUMA_POLICY_INTERLEAVE,	/* memory page-interleaved over the nodes,
				 * threads on every node */
	NUMA_POLICY_REPLICATE,	/* a copy of the weights per node; each
				 * worker reads its own node's copy */
};

/*
 * What hearth's resident models use, by node index (position in
 * topo->nodes, not kernel id). Add a model's placement when it is
 * loaded, subtract it when it is unloaded.
 */
struct numa_usage {
	uint64_t	 bytes[NUMA_MAX_NODES];	/* [n_nodes] placed there */
	uint16_t	 cpu_refs[NUMA_MAX_CPUS];	/* workers pinned to each CPU */
};

/* What a model to place wants. */
struct numa_want {
	uint64_t	 weight_bytes;	/* one copy of the weights */
	uint64_t	 other_bytes;	/* KV cache and scratch (one copy) */
	enum numa_policy policy;	/* asked for (AUTO) */
	uint32_t	 threads;	/* workers; 0: one per free physical
					 * core of the chosen nodes */
	uint64_t	 replicate_max;	/* AUTO replicates weights up to this;
					 * 0: a quarter of the smallest memory
					 * of a node with CPUs */
};

#define NUMA_MAX_THREADS NUMA_MAX_CPUS

/* The decision. Node sets and node_bytes are by node index. */
struct numa_place {
	enum numa_policy policy;	/* LOCAL, INTERLEAVE or REPLICATE */
	bool		 single_node;	/* one node: every policy is local */
	bool		 fits;		/* every node's share is within its free
					 * memory (false: placed anyway) */
	bool		 shared_cpus;	/* some workers share CPUs with other
					 * models (none were free) */
	uint64_t	 weight_nodes;	/* bit i: node i holds weights (LOCAL:
					 * one; INTERLEAVE: spread over these;
					 * REPLICATE: a whole copy on each) */
	int32_t		 kv_node;	/* node index of KV cache and scratch;
					 * -1: interleaved over weight_nodes */
	uint64_t	 node_bytes[NUMA_MAX_NODES];	/* [n_nodes] memory this
					 * placement puts on each node */
	struct numa_cpuset cpus;	/* all worker CPUs */
	uint32_t	 n_threads;	/* workers (1..NUMA_MAX_THREADS) */
	uint16_t	 thread_cpu[NUMA_MAX_THREADS];	/* [n_threads] pin
					 * worker i to this CPU */
	uint8_t		 thread_node[NUMA_MAX_THREADS];	/* [n_threads] node
					 * index of worker i's CPU: its copy of
					 * the weights under REPLICATE */
	char		 reason[NUMA_REASON_MAX];	/* one line for the log
					 * and show: what and why */
};

/* --- CPU sets ------------------------------------------------------------- */

void numa_cpuset_clear(struct numa_cpuset *s);
void numa_cpuset_add(struct numa_cpuset *s, uint32_t cpu);	/* < MAX */
bool numa_cpuset_has(const struct numa_cpuset *s, uint32_t cpu);
uint32_t numa_cpuset_count(const struct numa_cpuset *s);
/* "0-3,8,10-11" (or "-" when empty); 0, or -ENOSPC when truncated. */
int  numa_cpuset_format(const struct numa_cpuset *s, char *buf,
	    size_t size);
/* Parse the same syntax; -EINVAL, or -ERANGE for a CPU >= MAX. */
int  numa_cpuset_parse(const char *s, struct numa_cpuset *out);
/* For sched_setaffinity/pthread_setaffinity_np (CPUs < CPU_SETSIZE). */
void numa_cpuset_to_sched(const struct numa_cpuset *s, cpu_set_t *out);

/* --- topology ------------------------------------------------------------- */

/* The running machine's topology (libnuma; one node without NUMA). */
int  numa_topo_read(struct numa_topo *t, struct eng_err *err);
/* A simulated topology from a file, or from text (name for messages). */
int  numa_topo_load(const char *path, struct numa_topo *t,
	    struct eng_err *err);
int  numa_topo_parse(const char *text, size_t len, const char *name,
	    struct numa_topo *t, struct eng_err *err);
/* The topology in the file format (loads back the same); -ENOSPC. */
int  numa_topo_format(const struct numa_topo *t, char *buf, size_t size);
/* Index of the node with kernel id, or -1. */
int  numa_topo_index(const struct numa_topo *t, uint32_t id);

/* --- placement ------------------------------------------------------------ */

/* "auto", "local", "interleave", "replicate" <-> enum; -EINVAL. */
int  numa_policy_parse(const char *s, enum numa_policy *out);
const char *numa_policy_name(enum numa_policy p);

/*
 * Decide where a model goes. u may be NULL (nothing resident). Returns
 * 0 with the decision in *out (also when it does not fit: fits is false
 * and the reason says so; the memory budget decides admission), or
 * -EINVAL for a bad topology or want.
 */
int  numa_place(const struct numa_topo *t, const struct numa_usage *u,
	    const struct numa_want *w, struct numa_place *out);
/* Kernel node ids (bit id) of the node indices in mask, for mem_params. */
uint64_t numa_place_kernel_nodes(const struct numa_topo *t, uint64_t mask);

/* Account a placement (saturating; the CPU counts never wrap). */
void numa_usage_add(struct numa_usage *u, const struct numa_place *p);
void numa_usage_sub(struct numa_usage *u, const struct numa_place *p);

#endif /* HEARTH_NUMA_TOPO_H */
