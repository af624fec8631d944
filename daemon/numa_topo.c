/*
 * numa_topo.c - NUMA topology (libnuma or a simulation file) and the
 * placement of a model's memory and worker threads on it.
 *
 * Placement is a pure function: the free memory read at start less what
 * hearth already placed on each node, the CPUs other models' workers are
 * pinned to, and the model's size and policy give one decision with a
 * reason. Ties always go to the lower node index, so it is repeatable.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <numa.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "memory.h"
#include "numa_topo.h"
#include "units.h"

/* --- CPU sets ------------------------------------------------------------- */

void
numa_cpuset_clear(struct numa_cpuset *s)
{
	memset(s, 0, sizeof(*s));
}

void
numa_cpuset_add(struct numa_cpuset *s, uint32_t cpu)
{
	if (cpu < NUMA_MAX_CPUS)
		s->bits[cpu / 64] |= (uint64_t)1 << (cpu % 64);
}

bool
numa_cpuset_has(const struct numa_cpuset *s, uint32_t cpu)
{
	return cpu < NUMA_MAX_CPUS && (s->bits[cpu / 64] >> (cpu % 64) & 1);
}

uint32_t
numa_cpuset_count(const struct numa_cpuset *s)
{
	uint32_t n = 0, i;

	for (i = 0; i < NUMA_CPU_WORDS; i++)
		n += (uint32_t)__builtin_popcountll(s->bits[i]);
	return n;
}

/* Format the set bits of a bit test as ranges: 0 or -ENOSPC. */
static int
numa_fmt_ranges(bool (*has)(const void *, uint32_t), const void *arg,
    uint32_t max, char *buf, size_t size)
{
	uint32_t i = 0, j;
	size_t len = 0;
	int w;

	if (size == 0)
		return -ENOSPC;
	buf[0] = '\0';
	while (i < max) {
		if (!has(arg, i)) {
			i++;
			continue;
		}
		for (j = i; j + 1 < max && has(arg, j + 1); j++)
			;
		if (j == i)
			w = snprintf(buf + len, size - len, "%s%u",
			    len ? "," : "", i);
		else
			w = snprintf(buf + len, size - len, "%s%u-%u",
			    len ? "," : "", i, j);
		if (w < 0 || (size_t)w >= size - len)
			return -ENOSPC;
		len += (size_t)w;
		i = j + 1;
	}
	if (len == 0)
		snprintf(buf, size, "-");
	return 0;
}

static bool
numa_cpu_has(const void *arg, uint32_t i)
{
	return numa_cpuset_has(arg, i);
}

int
numa_cpuset_format(const struct numa_cpuset *s, char *buf, size_t size)
{
	return numa_fmt_ranges(numa_cpu_has, s, NUMA_MAX_CPUS, buf, size);
}

/* A decimal number < lim at *sp, advancing it: 0 or -EINVAL/-ERANGE. */
static int
numa_parse_num(const char **sp, uint32_t lim, uint32_t *out)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v >= lim)
			return -ERANGE;
		s++;
	}
	*sp = s;
	*out = (uint32_t)v;
	return 0;
}

int
numa_cpuset_parse(const char *s, struct numa_cpuset *out)
{
	struct numa_cpuset set;
	uint32_t a, b, c;
	int r;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	numa_cpuset_clear(&set);
	if (strcmp(s, "-") == 0) {
		*out = set;
		return 0;
	}
	for (;;) {
		if ((r = numa_parse_num(&s, NUMA_MAX_CPUS, &a)) < 0)
			return r;
		b = a;
		if (*s == '-') {
			s++;
			if ((r = numa_parse_num(&s, NUMA_MAX_CPUS, &b)) < 0)
				return r;
			if (b < a)
				return -EINVAL;
		}
		for (c = a; c <= b; c++)
			numa_cpuset_add(&set, c);
		if (*s == '\0')
			break;
		if (*s != ',')
			return -EINVAL;
		s++;
	}
	*out = set;
	return 0;
}

void
numa_cpuset_to_sched(const struct numa_cpuset *s, cpu_set_t *out)
{
	uint32_t c;

	CPU_ZERO(out);
	for (c = 0; c < NUMA_MAX_CPUS && c < CPU_SETSIZE; c++)
		if (numa_cpuset_has(s, c))
			CPU_SET(c, out);
}

/* --- reading the machine -------------------------------------------------- */

static int
numa_node_cmp(const void *a, const void *b)
{
	const struct numa_node *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

/* Mark the CPUs of t's nodes that have a lower usable sibling. */
static void
numa_topo_read_smt(struct numa_topo *t, const struct numa_cpuset *usable)
{
	struct numa_cpuset sib;
	char path[96], buf[256];
	uint32_t c, s, i;
	ssize_t n;
	int fd;

	for (i = 0; i < t->n_nodes; i++) {
		for (c = 0; c < NUMA_MAX_CPUS; c++) {
			if (!numa_cpuset_has(&t->nodes[i].cpus, c))
				continue;
			snprintf(path, sizeof(path), "/sys/devices/system/cpu/"
			    "cpu%u/topology/thread_siblings_list", c);
			if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
				continue;
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n <= 0)
				continue;
			buf[n] = '\0';
			buf[strcspn(buf, "\n")] = '\0';
			if (numa_cpuset_parse(buf, &sib) < 0)
				continue;
			for (s = 0; s < c; s++)
				if (numa_cpuset_has(&sib, s) &&
				    numa_cpuset_has(usable, s)) {
					numa_cpuset_add(&t->nodes[i].smt, c);
					break;
				}
		}
	}
}

int
numa_topo_read(struct numa_topo *t, struct eng_err *err)
{
	struct numa_topo *nt;
	struct numa_cpuset usable;
	struct bitmask *cpus = NULL;
	struct sysinfo si;
	cpu_set_t aff;
	long long total, fr;
	int max, n, c, r = 0;
	uint32_t k;

	if (sched_getaffinity(0, sizeof(aff), &aff) != 0)
		return err_set(err, -errno, "sched_getaffinity: %s",
		    strerror(errno));
	numa_cpuset_clear(&usable);
	for (c = 0; c < CPU_SETSIZE && c < NUMA_MAX_CPUS; c++)
		if (CPU_ISSET(c, &aff))
			numa_cpuset_add(&usable, (uint32_t)c);
	if ((nt = calloc(1, sizeof(*nt))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");

	if (numa_available() < 0) {
		/* no NUMA: the whole machine is node 0 */
		if (sysinfo(&si) != 0) {
			r = err_set(err, -errno, "sysinfo: %s", strerror(errno));
			goto done;
		}
		nt->n_nodes = 1;
		nt->nodes[0].id = 0;
		nt->nodes[0].mem_total = (uint64_t)si.totalram * si.mem_unit;
		nt->nodes[0].mem_free = (uint64_t)si.freeram * si.mem_unit;
		nt->nodes[0].cpus = usable;
		goto smt;
	}
	nt->libnuma = true;
	max = numa_max_node();
	if ((cpus = numa_allocate_cpumask()) == NULL) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto done;
	}
	for (n = 0; n <= max && n < NUMA_MAX_NODES; n++) {
		struct numa_node *nd = &nt->nodes[nt->n_nodes];

		if (!numa_bitmask_isbitset(numa_nodes_ptr, (unsigned)n))
			continue;
		memset(nd, 0, sizeof(*nd));
		nd->id = (uint32_t)n;
		/* memory this process may not allocate on does not count */
		if (numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)n) &&
		    (total = numa_node_size64(n, &fr)) > 0) {
			nd->mem_total = (uint64_t)total;
			nd->mem_free = fr > 0 ? (uint64_t)fr : 0;
		}
		numa_bitmask_clearall(cpus);
		if (numa_node_to_cpus(n, cpus) == 0)
			for (k = 0; k < cpus->size && k < NUMA_MAX_CPUS; k++)
				if (numa_bitmask_isbitset(cpus, k) &&
				    numa_cpuset_has(&usable, k))
					numa_cpuset_add(&nd->cpus, k);
		if (nd->mem_total == 0 && numa_cpuset_count(&nd->cpus) == 0)
			continue;
		nt->n_nodes++;
	}
	numa_free_cpumask(cpus);
	if (nt->n_nodes == 0) {
		r = err_set(err, -ENODEV, "libnuma reports no usable node");
		goto done;
	}
smt:
	numa_topo_read_smt(nt, &usable);
	for (k = 0; k < nt->n_nodes; k++)
		if (numa_cpuset_count(&nt->nodes[k].cpus) > 0)
			break;
	if (k == nt->n_nodes) {
		r = err_set(err, -ENODEV, "no usable CPU");
		goto done;
	}
	*t = *nt;
done:
	free(nt);
	return r;
}

/* --- simulation files ----------------------------------------------------- */

/* One "node ..." line split into words; 0 or an error naming line ln. */
static int
numa_parse_line(struct numa_topo *t, char **w, size_t nw, const char *name,
    unsigned ln, struct eng_err *err)
{
	struct numa_node *nd;
	const char *s;
	bool have_cpus = false, have_mem = false, have_free = false,
	    have_smt = false;
	uint32_t id, i, c;
	size_t k;
	int r;

	if (strcmp(w[0], "node") != 0)
		return err_set(err, -EINVAL, "%s:%u: expected 'node', got '%s'",
		    name, ln, w[0]);
	if (nw < 2)
		return err_set(err, -EINVAL, "%s:%u: node: missing id", name,
		    ln);
	s = w[1];
	if ((r = numa_parse_num(&s, NUMA_MAX_NODES, &id)) < 0 || *s != '\0')
		return err_set(err, -EINVAL, "%s:%u: bad node id '%s' (0..%d)",
		    name, ln, w[1], NUMA_MAX_NODES - 1);
	for (i = 0; i < t->n_nodes; i++)
		if (t->nodes[i].id == id)
			return err_set(err, -EINVAL, "%s:%u: node %u is "
			    "already described", name, ln, id);
	if (t->n_nodes >= NUMA_MAX_NODES)
		return err_set(err, -E2BIG, "%s:%u: more than %d nodes", name,
		    ln, NUMA_MAX_NODES);
	nd = &t->nodes[t->n_nodes];
	memset(nd, 0, sizeof(*nd));
	nd->id = id;
	if ((nw - 2) % 2 != 0)
		return err_set(err, -EINVAL, "%s:%u: node %u: '%s' has no "
		    "value", name, ln, id, w[nw - 1]);
	for (k = 2; k < nw; k += 2) {
		const char *key = w[k], *val = w[k + 1];
		bool *seen;

		if (strcmp(key, "cpus") == 0)
			seen = &have_cpus;
		else if (strcmp(key, "mem") == 0)
			seen = &have_mem;
		else if (strcmp(key, "free") == 0)
			seen = &have_free;
		else if (strcmp(key, "smt") == 0)
			seen = &have_smt;
		else
			return err_set(err, -EINVAL, "%s:%u: node %u: unknown "
			    "key '%s' (cpus, mem, free, smt)", name, ln, id,
			    key);
		if (*seen)
			return err_set(err, -EINVAL, "%s:%u: node %u: '%s' "
			    "given twice", name, ln, id, key);
		*seen = true;
		if (seen == &have_cpus || seen == &have_smt) {
			r = numa_cpuset_parse(val, seen == &have_cpus ?
			    &nd->cpus : &nd->smt);
			if (r < 0)
				return err_set(err, -EINVAL, "%s:%u: node %u: "
				    "bad CPU list '%s'%s", name, ln, id, val,
				    r == -ERANGE ? " (CPU number too large)" :
				    "");
		} else {
			r = units_parse_size(val, seen == &have_mem ?
			    &nd->mem_total : &nd->mem_free);
			if (r < 0)
				return err_set(err, -EINVAL, "%s:%u: node %u: "
				    "bad size '%s' for %s", name, ln, id, val,
				    key);
		}
	}
	if (!have_cpus || !have_mem)
		return err_set(err, -EINVAL, "%s:%u: node %u: missing '%s'",
		    name, ln, id, have_cpus ? "mem" : "cpus");
	if (!have_free)
		nd->mem_free = nd->mem_total;
	if (nd->mem_free > nd->mem_total)
		return err_set(err, -EINVAL, "%s:%u: node %u: free is more than "
		    "mem", name, ln, id);
	for (c = 0; c < NUMA_MAX_CPUS; c++) {
		if (numa_cpuset_has(&nd->smt, c) &&
		    !numa_cpuset_has(&nd->cpus, c))
			return err_set(err, -EINVAL, "%s:%u: node %u: smt CPU "
			    "%u is not in cpus", name, ln, id, c);
		if (!numa_cpuset_has(&nd->cpus, c))
			continue;
		for (i = 0; i < t->n_nodes; i++)
			if (numa_cpuset_has(&t->nodes[i].cpus, c))
				return err_set(err, -EINVAL, "%s:%u: node %u: "
				    "CPU %u is already in node %u", name, ln,
				    id, c, t->nodes[i].id);
	}
	t->n_nodes++;
	return 0;
}

int
numa_topo_parse(const char *text, size_t len, const char *name,
    struct numa_topo *t, struct eng_err *err)
{
	struct numa_topo *nt;
	char line[NUMA_LINE_MAX + 1], *w[NUMA_LINE_MAX / 2 + 1], *p;
	size_t pos = 0, ll, nw;
	unsigned ln = 0;
	uint32_t i;
	int r = 0;

	if (name == NULL)
		name = "topology";
	if (len > NUMA_FILE_MAX)
		return err_set(err, -EFBIG, "%s: larger than %d bytes", name,
		    NUMA_FILE_MAX);
	if (memchr(text, '\0', len) != NULL)
		return err_set(err, -EINVAL, "%s: contains a NUL byte", name);
	if ((nt = calloc(1, sizeof(*nt))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	nt->simulated = true;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);

		ll = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;
		ln++;
		if (ll > NUMA_LINE_MAX) {
			r = err_set(err, -EINVAL, "%s:%u: line longer than %d "
			    "bytes", name, ln, NUMA_LINE_MAX);
			goto done;
		}
		memcpy(line, text + pos, ll);
		line[ll] = '\0';
		pos += ll + (nl != NULL);
		if ((p = strchr(line, '#')) != NULL)
			*p = '\0';
		nw = 0;
		for (p = strtok(line, " \t\r"); p != NULL;
		    p = strtok(NULL, " \t\r"))
			w[nw++] = p;
		if (nw == 0)
			continue;
		if ((r = numa_parse_line(nt, w, nw, name, ln, err)) < 0)
			goto done;
	}
	if (nt->n_nodes == 0) {
		r = err_set(err, -EINVAL, "%s: no 'node' line", name);
		goto done;
	}
	for (i = 0; i < nt->n_nodes; i++)
		if (numa_cpuset_count(&nt->nodes[i].cpus) > 0)
			break;
	if (i == nt->n_nodes) {
		r = err_set(err, -EINVAL, "%s: no node has CPUs", name);
		goto done;
	}
	qsort(nt->nodes, nt->n_nodes, sizeof(nt->nodes[0]), numa_node_cmp);
	*t = *nt;
done:
	free(nt);
	return r;
}

int
numa_topo_load(const char *path, struct numa_topo *t, struct eng_err *err)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t got = 0;
	int fd, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0) {
		r = err_set(err, -errno, "%s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > NUMA_FILE_MAX) {
		close(fd);
		return err_set(err, S_ISREG(st.st_mode) ? -EFBIG : -EINVAL,
		    "%s: %s", path, S_ISREG(st.st_mode) ? "too large" :
		    "not a regular file");
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return err_set(err, -ENOMEM, "out of memory");
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	r = numa_topo_parse(buf, got, path, t, err);
	free(buf);
	return r;
}

/* A size as the file writes it: the largest exact unit. */
static void
numa_fmt_size(uint64_t v, char *buf, size_t size)
{
	static const char suf[] = "TGMK";
	unsigned shift[] = { 40, 30, 20, 10 }, i;

	for (i = 0; i < 4 && v != 0; i++)
		if (v % ((uint64_t)1 << shift[i]) == 0) {
			snprintf(buf, size, "%" PRIu64 "%c", v >> shift[i],
			    suf[i]);
			return;
		}
	snprintf(buf, size, "%" PRIu64, v);
}

int
numa_topo_format(const struct numa_topo *t, char *buf, size_t size)
{
	char cpus[NUMA_LINE_MAX / 2], smt[NUMA_LINE_MAX / 2], mem[32], fr[32];
	size_t len = 0;
	uint32_t i;
	int w;

	if (size == 0)
		return -ENOSPC;
	buf[0] = '\0';
	for (i = 0; i < t->n_nodes; i++) {
		const struct numa_node *nd = &t->nodes[i];

		if (numa_cpuset_format(&nd->cpus, cpus, sizeof(cpus)) < 0 ||
		    numa_cpuset_format(&nd->smt, smt, sizeof(smt)) < 0)
			return -ENOSPC;
		numa_fmt_size(nd->mem_total, mem, sizeof(mem));
		numa_fmt_size(nd->mem_free, fr, sizeof(fr));
		w = snprintf(buf + len, size - len,
		    "node %u cpus %s mem %s free %s%s%s\n", nd->id, cpus, mem,
		    fr, numa_cpuset_count(&nd->smt) ? " smt " : "",
		    numa_cpuset_count(&nd->smt) ? smt : "");
		if (w < 0 || (size_t)w >= size - len)
			return -ENOSPC;
		len += (size_t)w;
	}
	return 0;
}

int
numa_topo_index(const struct numa_topo *t, uint32_t id)
{
	uint32_t i;

	for (i = 0; i < t->n_nodes; i++)
		if (t->nodes[i].id == id)
			return (int)i;
	return -1;
}

/* --- placement ------------------------------------------------------------ */

int
numa_policy_parse(const char *s, enum numa_policy *out)
{
	static const char *names[] = { "auto", "local", "interleave",
	    "replicate" };
	unsigned i;

	for (i = 0; s != NULL && i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum numa_policy)i;
			return 0;
		}
	return -EINVAL;
}

const char *
numa_policy_name(enum numa_policy p)
{
	switch (p) {
	case NUMA_POLICY_AUTO:
		return "auto";
	case NUMA_POLICY_LOCAL:
		return "local";
	case NUMA_POLICY_INTERLEAVE:
		return "interleave";
	case NUMA_POLICY_REPLICATE:
		return "replicate";
	}
	return "?";
}

uint64_t
numa_place_kernel_nodes(const struct numa_topo *t, uint64_t mask)
{
	uint64_t ids = 0;
	uint32_t i;

	for (i = 0; i < t->n_nodes && i < 64; i++)
		if ((mask >> i & 1) && t->nodes[i].id < 64)
			ids |= (uint64_t)1 << t->nodes[i].id;
	return ids;
}

/* The working state of one placement. */
struct numa_ctx {
	const struct numa_topo	*t;		/* the machine */
	const struct numa_usage	*u;		/* what is placed already */
	const struct numa_want	*w;		/* the model */
	struct numa_place	*p;		/* the decision being made */
	uint64_t		 total;		/* weights + other, saturated */
	uint64_t		 avail[NUMA_MAX_NODES];	/* free - used */
	uint64_t		 cpu_nodes;	/* nodes with CPUs (bits) */
	size_t			 rlen;		/* of p->reason */
};

static uint64_t
numa_sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static void numa_say(struct numa_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append to the reason (truncated silently at its end). */
static void
numa_say(struct numa_ctx *c, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (c->rlen >= sizeof(c->p->reason) - 1)
		return;
	va_start(ap, fmt);
	w = vsnprintf(c->p->reason + c->rlen, sizeof(c->p->reason) - c->rlen,
	    fmt, ap);
	va_end(ap);
	if (w > 0)
		c->rlen += (size_t)w;
	if (c->rlen > sizeof(c->p->reason) - 1)
		c->rlen = sizeof(c->p->reason) - 1;
}

struct numa_ids_arg {
	const struct numa_topo	*t;	/* for index <-> id */
	uint64_t		 mask;	/* node indices */
};

static bool
numa_ids_has(const void *arg, uint32_t id)
{
	const struct numa_ids_arg *a = arg;
	int i = numa_topo_index(a->t, id);

	return i >= 0 && (a->mask >> i & 1);
}

/* "node 1" or "nodes 0-3" by kernel id. */
static void
numa_fmt_nodes(const struct numa_topo *t, uint64_t mask, char *buf,
    size_t size)
{
	struct numa_ids_arg a = { t, mask };
	char ids[128];

	if (numa_fmt_ranges(numa_ids_has, &a, NUMA_MAX_NODES, ids,
	    sizeof(ids)) < 0)
		snprintf(ids, sizeof(ids), "...");
	snprintf(buf, size, "%s %s", __builtin_popcountll(mask) == 1 ?
	    "node" : "nodes", ids);
}

static const char *
numa_sz(uint64_t n, char *buf, size_t size)
{
	mem_fmt_bytes(n, buf, size);
	return buf;
}

/*
 * CPUs of node i in the order workers take them: free primaries, free
 * second threads, then (only when shared) busy primaries and busy second
 * threads. Returns how many were written to list.
 */
static uint32_t
numa_node_cpus(const struct numa_ctx *c, uint32_t i, bool shared,
    uint16_t *list)
{
	const struct numa_node *nd = &c->t->nodes[i];
	uint32_t n = 0, cpu, pass;

	for (pass = 0; pass < 4; pass++) {
		bool busy = pass >= 2, smt = pass % 2 == 1;

		if (busy && !shared)
			break;
		for (cpu = 0; cpu < NUMA_MAX_CPUS; cpu++) {
			if (!numa_cpuset_has(&nd->cpus, cpu) ||
			    numa_cpuset_has(&nd->smt, cpu) != smt ||
			    (c->u->cpu_refs[cpu] > 0) != busy)
				continue;
			list[n++] = (uint16_t)cpu;
		}
	}
	return n;
}

/* Free CPUs of node i; primaries only when primary. */
static uint32_t
numa_free_cpus(const struct numa_ctx *c, uint32_t i, bool primary)
{
	const struct numa_node *nd = &c->t->nodes[i];
	uint32_t n = 0, cpu;

	for (cpu = 0; cpu < NUMA_MAX_CPUS; cpu++)
		if (numa_cpuset_has(&nd->cpus, cpu) &&
		    c->u->cpu_refs[cpu] == 0 &&
		    (!primary || !numa_cpuset_has(&nd->smt, cpu)))
			n++;
	return n;
}

/*
 * Pick the worker CPUs on the nodes of mask (those with CPUs): only free
 * CPUs while there are any, else shared ones. threads 0: one per free
 * physical core (else per free CPU, else per core, shared). More threads
 * than CPUs are capped. Workers are spread round-robin over the nodes
 * and listed node by node.
 */
static void
numa_pick_threads(struct numa_ctx *c, uint64_t mask)
{
	struct numa_place *p = c->p;
	uint32_t cap[NUMA_MAX_NODES], take[NUMA_MAX_NODES];
	uint32_t i, j, want = c->w->threads, have = 0, n_free = 0, n_prim = 0;
	bool shared, more;
	char cpus[160];

	mask &= c->cpu_nodes;
	for (i = 0; i < c->t->n_nodes; i++) {
		if (!(mask >> i & 1))
			continue;
		n_free += numa_free_cpus(c, i, false);
		n_prim += numa_free_cpus(c, i, true);
	}
	shared = n_free == 0;
	for (i = 0; i < c->t->n_nodes; i++) {
		cap[i] = take[i] = 0;
		if (!(mask >> i & 1))
			continue;
		if (want != 0)
			cap[i] = shared ? numa_cpuset_count(
			    &c->t->nodes[i].cpus) : numa_free_cpus(c, i, false);
		else if (n_prim > 0)
			take[i] = numa_free_cpus(c, i, true);
		else if (n_free > 0)
			take[i] = numa_free_cpus(c, i, false);
		else
			take[i] = numa_cpuset_count(&c->t->nodes[i].cpus) -
			    numa_cpuset_count(&c->t->nodes[i].smt);
	}
	if (want != 0) {
		do {
			more = false;
			for (i = 0; i < c->t->n_nodes && have < want; i++)
				if (take[i] < cap[i]) {
					take[i]++;
					have++;
					more = true;
				}
		} while (more && have < want);
	}
	p->n_threads = 0;
	numa_cpuset_clear(&p->cpus);
	for (i = 0; i < c->t->n_nodes; i++) {
		uint16_t list[NUMA_MAX_CPUS];
		uint32_t n;

		if (take[i] == 0)
			continue;
		n = numa_node_cpus(c, i, shared, list);
		for (j = 0; j < take[i] && j < n; j++) {
			p->thread_cpu[p->n_threads] = list[j];
			p->thread_node[p->n_threads] = (uint8_t)i;
			p->n_threads++;
			numa_cpuset_add(&p->cpus, list[j]);
		}
	}
	p->shared_cpus = shared;
	numa_cpuset_format(&p->cpus, cpus, sizeof(cpus));
	numa_say(c, "; %u thread%s on CPUs %s", p->n_threads,
	    p->n_threads == 1 ? "" : "s", cpus);
	if (want != 0 && p->n_threads < want)
		numa_say(c, " (%u asked, %u %sCPUs)", want, p->n_threads,
		    shared ? "" : "free ");
	if (shared)
		numa_say(c, ", shared with other models (no free CPU)");
}

/* Local on node i. */
static void
numa_do_local(struct numa_ctx *c, uint32_t i)
{
	struct numa_place *p = c->p;

	p->policy = NUMA_POLICY_LOCAL;
	p->weight_nodes = (uint64_t)1 << i;
	p->kv_node = (int32_t)i;
	p->node_bytes[i] = c->total;
	p->fits = c->avail[i] >= c->total;
}

/* Split bytes over the nodes of mask: equal shares, the rest first. */
static void
numa_spread(struct numa_ctx *c, uint64_t mask, uint64_t bytes)
{
	uint32_t k = (uint32_t)__builtin_popcountll(mask), i, seen = 0;
	uint64_t share, rest;

	if (k == 0)
		return;
	share = bytes / k;
	rest = bytes % k;
	for (i = 0; i < c->t->n_nodes; i++)
		if (mask >> i & 1) {
			c->p->node_bytes[i] = numa_sat_add(c->p->node_bytes[i],
			    share + (seen < rest));
			seen++;
		}
}

/* The best node for local, or -1 when it fits on none. */
static int
numa_best_local(const struct numa_ctx *c)
{
	int best = -1;
	bool bfree = false, f;
	uint32_t i;

	for (i = 0; i < c->t->n_nodes; i++) {
		if (!(c->cpu_nodes >> i & 1) || c->avail[i] < c->total)
			continue;
		f = numa_free_cpus(c, i, false) > 0;
		if (best < 0 || (f && !bfree) || (f == bfree &&
		    c->avail[i] > c->avail[best])) {
			best = (int)i;
			bfree = f;
		}
	}
	return best;
}

/* The node with CPUs and the most room (for messages). */
static uint32_t
numa_roomiest(const struct numa_ctx *c, uint64_t among)
{
	uint32_t i, best = 0;
	bool any = false;

	for (i = 0; i < c->t->n_nodes; i++)
		if ((among >> i & 1) && (!any || c->avail[i] > c->avail[best])) {
			best = i;
			any = true;
		}
	return best;
}

/*
 * Replication over the nodes with CPUs: a whole copy of the weights and
 * an equal share of the rest on each. The first node short of room is
 * stored in *short_node; true when all fit.
 */
static bool
numa_replicate_fits(const struct numa_ctx *c, int *short_node)
{
	uint32_t k = (uint32_t)__builtin_popcountll(c->cpu_nodes), i;
	uint64_t need;

	*short_node = -1;
	if (k < 2)
		return false;
	need = numa_sat_add(c->w->weight_bytes, (c->w->other_bytes + k - 1) / k);
	for (i = 0; i < c->t->n_nodes; i++)
		if ((c->cpu_nodes >> i & 1) && c->avail[i] < need) {
			*short_node = (int)i;
			return false;
		}
	return true;
}

static void
numa_do_replicate(struct numa_ctx *c)
{
	struct numa_place *p = c->p;
	uint32_t i;

	p->policy = NUMA_POLICY_REPLICATE;
	p->weight_nodes = c->cpu_nodes;
	p->kv_node = -1;
	for (i = 0; i < c->t->n_nodes; i++)
		if (c->cpu_nodes >> i & 1)
			p->node_bytes[i] = c->w->weight_bytes;
	numa_spread(c, c->cpu_nodes, c->w->other_bytes);
	p->fits = true;
	for (i = 0; i < c->t->n_nodes; i++)
		if ((c->cpu_nodes >> i & 1) && c->avail[i] < p->node_bytes[i])
			p->fits = false;
}

/*
 * Interleave over the most nodes (those with memory, roomiest first)
 * that can each take an equal share; all of them when none can.
 */
static void
numa_do_interleave(struct numa_ctx *c)
{
	struct numa_place *p = c->p;
	uint32_t order[NUMA_MAX_NODES], n = 0, i, j, k, best = 0;
	uint64_t mask = 0, share;

	for (i = 0; i < c->t->n_nodes; i++)
		if (c->t->nodes[i].mem_total > 0)
			order[n++] = i;
	/* insertion sort by room, descending; stable by index */
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && c->avail[order[j]] >
		    c->avail[order[j - 1]]; j--) {
			uint32_t x = order[j];

			order[j] = order[j - 1];
			order[j - 1] = x;
		}
	for (k = n; k >= 1; k--) {
		share = c->total / k + (c->total % k != 0);
		if (c->avail[order[k - 1]] >= share) {
			best = k;
			break;
		}
	}
	p->policy = NUMA_POLICY_INTERLEAVE;
	p->fits = best > 0;
	if (best == 0)
		best = n;
	for (i = 0; i < best; i++)
		mask |= (uint64_t)1 << order[i];
	p->weight_nodes = mask;
	p->kv_node = -1;
	numa_spread(c, mask, c->total);
}

int
numa_place(const struct numa_topo *t, const struct numa_usage *u,
    const struct numa_want *w, struct numa_place *out)
{
	static const struct numa_usage none;
	struct numa_ctx c;
	char a[32], b[32], nodes[160];
	uint64_t small;
	uint32_t i;
	int best, short_node;
	bool rep_ok;

	if (t == NULL || w == NULL || out == NULL || t->n_nodes == 0 ||
	    t->n_nodes > NUMA_MAX_NODES ||
	    (unsigned)w->policy > NUMA_POLICY_REPLICATE ||
	    w->threads > NUMA_MAX_THREADS)
		return -EINVAL;
	memset(&c, 0, sizeof(c));
	c.t = t;
	c.u = u != NULL ? u : &none;
	c.w = w;
	c.total = numa_sat_add(w->weight_bytes, w->other_bytes);
	for (i = 0; i < t->n_nodes; i++) {
		c.avail[i] = t->nodes[i].mem_free > c.u->bytes[i] ?
		    t->nodes[i].mem_free - c.u->bytes[i] : 0;
		if (numa_cpuset_count(&t->nodes[i].cpus) > 0)
			c.cpu_nodes |= (uint64_t)1 << i;
	}
	if (c.cpu_nodes == 0)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	c.p = out;

	if (t->n_nodes == 1) {
		numa_do_local(&c, 0);
		out->policy = w->policy == NUMA_POLICY_AUTO ?
		    NUMA_POLICY_LOCAL : w->policy;
		out->single_node = true;
		numa_say(&c, "one NUMA node: %s keeps %s on node %u",
		    numa_policy_name(out->policy),
		    numa_sz(c.total, a, sizeof(a)), t->nodes[0].id);
		if (!out->fits)
			numa_say(&c, " (%s free)", numa_sz(c.avail[0], b,
			    sizeof(b)));
		numa_pick_threads(&c, 1);
		return 0;
	}

	best = numa_best_local(&c);
	rep_ok = numa_replicate_fits(&c, &short_node);
	small = w->replicate_max;
	if (small == 0) {
		small = UINT64_MAX;
		for (i = 0; i < t->n_nodes; i++)
			if ((c.cpu_nodes >> i & 1) &&
			    t->nodes[i].mem_total / 4 < small)
				small = t->nodes[i].mem_total / 4;
	}

	switch (w->policy) {
	case NUMA_POLICY_AUTO:
		numa_say(&c, "auto: ");
		if (rep_ok && w->weight_bytes <= small) {
			numa_do_replicate(&c);
			numa_fmt_nodes(t, out->weight_nodes, nodes,
			    sizeof(nodes));
			numa_say(&c, "%s of weights is small (up to %s) and "
			    "fits on every node: a copy on each of %s",
			    numa_sz(w->weight_bytes, a, sizeof(a)),
			    numa_sz(small, b, sizeof(b)), nodes);
			break;
		}
		if (best >= 0) {
			numa_do_local(&c, (uint32_t)best);
			numa_say(&c, "local on node %u, most free memory "
			    "(%s) for %s", t->nodes[best].id,
			    numa_sz(c.avail[best], a, sizeof(a)),
			    numa_sz(c.total, b, sizeof(b)));
			break;
		}
		numa_do_interleave(&c);
		break;
	case NUMA_POLICY_LOCAL:
		if (best >= 0) {
			numa_do_local(&c, (uint32_t)best);
			numa_say(&c, "local on node %u, most free memory "
			    "(%s) for %s", t->nodes[best].id,
			    numa_sz(c.avail[best], a, sizeof(a)),
			    numa_sz(c.total, b, sizeof(b)));
			break;
		}
		i = numa_roomiest(&c, c.cpu_nodes);
		numa_say(&c, "local: %s fits on no node (most free: node %u, "
		    "%s); ", numa_sz(c.total, a, sizeof(a)), t->nodes[i].id,
		    numa_sz(c.avail[i], b, sizeof(b)));
		numa_do_interleave(&c);
		break;
	case NUMA_POLICY_REPLICATE:
		if (rep_ok) {
			numa_do_replicate(&c);
			numa_fmt_nodes(t, out->weight_nodes, nodes,
			    sizeof(nodes));
			numa_say(&c, "replicate: a copy of %s of weights on "
			    "each of %s", numa_sz(w->weight_bytes, a,
			    sizeof(a)), nodes);
			break;
		}
		if (short_node >= 0)
			numa_say(&c, "replicate: %s of weights do not fit on "
			    "node %u (%s free); ", numa_sz(w->weight_bytes, a,
			    sizeof(a)), t->nodes[short_node].id,
			    numa_sz(c.avail[short_node], b, sizeof(b)));
		else
			numa_say(&c, "replicate: only one node has CPUs; ");
		if (best >= 0) {
			numa_do_local(&c, (uint32_t)best);
			numa_say(&c, "local on node %u (%s free)",
			    t->nodes[best].id, numa_sz(c.avail[best], a,
			    sizeof(a)));
			break;
		}
		numa_do_interleave(&c);
		break;
	case NUMA_POLICY_INTERLEAVE:
		numa_do_interleave(&c);
		break;
	}
	if (out->policy == NUMA_POLICY_INTERLEAVE) {
		numa_fmt_nodes(t, out->weight_nodes, nodes, sizeof(nodes));
		if (out->fits)
			numa_say(&c, "interleave: %s over %s", numa_sz(c.total,
			    a, sizeof(a)), nodes);
		else
			numa_say(&c, "interleave: %s does not fit in the free "
			    "memory; spread over %s anyway", numa_sz(c.total,
			    a, sizeof(a)), nodes);
		/* threads on every node with CPUs */
		numa_pick_threads(&c, c.cpu_nodes);
	} else
		numa_pick_threads(&c, out->weight_nodes);
	return 0;
}

void
numa_usage_add(struct numa_usage *u, const struct numa_place *p)
{
	uint32_t i;

	for (i = 0; i < NUMA_MAX_NODES; i++)
		u->bytes[i] = numa_sat_add(u->bytes[i], p->node_bytes[i]);
	for (i = 0; i < p->n_threads && i < NUMA_MAX_THREADS; i++)
		if (u->cpu_refs[p->thread_cpu[i]] < UINT16_MAX)
			u->cpu_refs[p->thread_cpu[i]]++;
}

void
numa_usage_sub(struct numa_usage *u, const struct numa_place *p)
{
	uint32_t i;

	for (i = 0; i < NUMA_MAX_NODES; i++)
		u->bytes[i] = u->bytes[i] > p->node_bytes[i] ?
		    u->bytes[i] - p->node_bytes[i] : 0;
	for (i = 0; i < p->n_threads && i < NUMA_MAX_THREADS; i++)
		if (u->cpu_refs[p->thread_cpu[i]] > 0)
			u->cpu_refs[p->thread_cpu[i]]--;
}
