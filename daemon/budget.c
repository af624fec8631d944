/*
 * budget.c - model costs and admission within the memory budget.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budget.h"
#include "memory.h"
#include "units.h"

/* --- costs ---------------------------------------------------------------- */

static int
budget_mul(uint64_t a, uint64_t b, uint64_t *out)
{
	return __builtin_mul_overflow(a, b, out) ? -EOVERFLOW : 0;
}

static int
budget_add(uint64_t a, uint64_t b, uint64_t *out)
{
	return __builtin_add_overflow(a, b, out) ? -EOVERFLOW : 0;
}

/* Bytes of one cache row of n elements. */
static int
budget_row_bytes(uint32_t n, enum budget_kv_type type, uint64_t *out)
{
	switch (type) {
	case BUDGET_KV_F16:
		*out = (uint64_t)n * 2;
		return 0;
	case BUDGET_KV_Q8_0:
		*out = ((uint64_t)n + 31) / 32 * 34;
		return 0;
	case BUDGET_KV_F32:
		*out = (uint64_t)n * 4;
		return 0;
	}
	return -EINVAL;
}

int
budget_kv_bytes(uint32_t n_layer, uint32_t n_embd_k, uint32_t n_embd_v,
    uint32_t n_ctx, uint32_t n_parallel, enum budget_kv_type type,
    uint64_t *out)
{
	uint64_t k, v, rows, row, total;
	int r;

	if ((r = budget_row_bytes(n_embd_k, type, &k)) < 0 ||
	    (r = budget_row_bytes(n_embd_v, type, &v)) < 0)
		return r;
	/* rows: one per layer, position and sequence */
	if ((r = budget_mul((uint64_t)n_layer * n_ctx, n_parallel,
	    &rows)) < 0 ||
	    (r = budget_add(k, v, &row)) < 0 ||
	    (r = budget_mul(rows, row, &total)) < 0)
		return r;
	*out = total;
	return 0;
}

int
budget_cost(const struct budget_shape *s, struct budget_cost *out)
{
	struct budget_cost c;
	int r;

	if ((r = budget_mul(s->weight_bytes, s->copies ? s->copies : 1,
	    &c.weights)) < 0 ||
	    (r = budget_kv_bytes(s->n_layer, s->n_embd_k, s->n_embd_v,
	    s->n_ctx, s->n_parallel, s->kv_type, &c.kv)) < 0)
		return r;
	c.scratch = s->scratch_bytes;
	if ((r = budget_add(c.weights, c.kv, &c.total)) < 0 ||
	    (r = budget_add(c.total, c.scratch, &c.total)) < 0)
		return r;
	*out = c;
	return 0;
}

/* "<arch>.<key>" as a u32; 0, -ENOENT or -EINVAL. */
static int
budget_arch_u32(const struct gguf *g, const char *arch, const char *key,
    uint32_t *out)
{
	char full[128];

	if (snprintf(full, sizeof(full), "%s.%s", arch, key) >=
	    (int)sizeof(full))
		return -EINVAL;
	return gguf_get_u32(g, full, out);
}

int
budget_shape_gguf(const struct gguf *g, budget_pack_fn pack, void *arg,
    struct budget_shape *s, struct eng_err *err)
{
	static const char *need[] = { "block_count", "embedding_length",
	    "feed_forward_length", "attention.head_count" };
	const struct gguf_str *a;
	const struct gguf_kv *tok;
	const struct gguf_tensor *emb;
	char arch[64];
	uint32_t v[4], kv_heads, kdim, vdim, ctx = 0;
	uint64_t w = 0, b, p;
	uint64_t i;
	unsigned k;
	bool tied;
	int r;

	if (gguf_get_str(g, "general.architecture", &a) < 0 ||
	    a->len == 0 || a->len >= sizeof(arch))
		return err_set(err, -EINVAL, "no general.architecture");
	memcpy(arch, a->s, a->len);
	arch[a->len] = '\0';
	for (k = 0; k < 4; k++)
		if ((r = budget_arch_u32(g, arch, need[k], &v[k])) < 0 ||
		    v[k] == 0)
			return err_set(err, -EINVAL, "%s.%s: %s", arch, need[k],
			    r == -ENOENT ? "missing" : "bad value");
	if (budget_arch_u32(g, arch, "attention.head_count_kv",
	    &kv_heads) < 0)
		kv_heads = v[3];
	if (budget_arch_u32(g, arch, "attention.key_length", &kdim) < 0)
		kdim = v[1] / v[3];
	if (budget_arch_u32(g, arch, "attention.value_length", &vdim) < 0)
		vdim = kdim;
	(void)budget_arch_u32(g, arch, "context_length", &ctx);
	if (kv_heads == 0 || kdim == 0 || vdim == 0 ||
	    (uint64_t)kv_heads * kdim > UINT32_MAX ||
	    (uint64_t)kv_heads * vdim > UINT32_MAX ||
	    (uint64_t)v[3] * kdim > UINT32_MAX)
		return err_set(err, -EINVAL, "%s: bad attention dimensions",
		    arch);
	tied = gguf_find_tensor(g, "output.weight") == NULL;
	for (i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];

		/* model.c widens 1-D tensors to float32 */
		b = t->n_dims == 1 ? t->nelems * 4 : t->nbytes;
		if (pack != NULL && t->n_dims == 2 && (tied ||
		    strcmp(t->name.s, "token_embd.weight") != 0) &&
		    (p = pack(t->type, t->ne[1], t->ne[0], arg)) != 0)
			b = p;
		if (b > UINT64_MAX - BUDGET_ALIGN ||
		    budget_add(w, (b + BUDGET_ALIGN - 1) /
		    BUDGET_ALIGN * BUDGET_ALIGN, &w) < 0)
			return err_set(err, -EOVERFLOW, "tensor sizes overflow");
	}
	s->weight_bytes = w;
	s->n_layer = v[0];
	s->n_embd = v[1];
	s->n_ff = v[2];
	s->n_head = v[3];
	s->head_dim = kdim;
	s->n_embd_k = kv_heads * kdim;
	s->n_embd_v = kv_heads * vdim;
	s->n_ctx_train = ctx;
	s->n_vocab = 0;
	if (gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VTYPE_STRING,
	    &tok) == 0 && tok->v.arr.n <= UINT32_MAX)
		s->n_vocab = (uint32_t)tok->v.arr.n;
	else if ((emb = gguf_find_tensor(g, "token_embd.weight")) != NULL &&
	    emb->ne[1] <= UINT32_MAX)
		s->n_vocab = (uint32_t)emb->ne[1];
	return 0;
}

static uint64_t
budget_sat_mul(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t
budget_sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t
budget_scratch_estimate(const struct budget_shape *s, uint32_t n_batch)
{
	uint64_t per_tok, act, scores, logits;

	per_tok = budget_sat_add(budget_sat_add(3 * (uint64_t)s->n_embd,
	    (uint64_t)s->n_head * s->head_dim), budget_sat_add(
	    (uint64_t)s->n_embd_k + s->n_embd_v, 2 * (uint64_t)s->n_ff));
	act = budget_sat_mul(budget_sat_mul(4, n_batch), per_tok);
	scores = budget_sat_mul(budget_sat_mul(4, n_batch), s->n_ctx);
	logits = budget_sat_mul(budget_sat_mul(4, s->n_parallel), s->n_vocab);
	return budget_sat_add(budget_sat_add(act, scores), logits);
}

/* --- admission ------------------------------------------------------------ */

/* Does a come before b in eviction order (older, then lower index)? */
static bool
budget_older(const struct budget_model *res, size_t a, size_t b)
{
	if (res[a].last_use != res[b].last_use)
		return res[a].last_use < res[b].last_use;
	return a < b;
}

int
budget_admit(uint64_t budget, uint32_t max_models,
    const struct budget_model *res, size_t n, const char *name,
    uint64_t need, size_t *evict, struct budget_decision *out)
{
	struct budget_decision d;
	uint64_t need_free = 0, freed = 0;
	size_t need_count = 0, n_cand = 0, k, i, j, x;
	char a[32], b[32], c[32];
	size_t len;
	int w;

	if (out == NULL || (n > 0 && (res == NULL || evict == NULL)))
		return -EINVAL;
	if (name == NULL)
		name = "model";
	memset(&d, 0, sizeof(d));
	for (i = 0; i < n; i++) {
		if (budget_add(d.in_use, res[i].bytes, &d.in_use) < 0)
			return -EOVERFLOW;
		if (res[i].pinned || res[i].busy)
			d.held += res[i].bytes;	/* <= in_use: no overflow */
	}
	mem_fmt_bytes(need, a, sizeof(a));
	mem_fmt_bytes(budget, b, sizeof(b));
	if (need > budget) {
		d.verdict = BUDGET_REFUSE;
		snprintf(d.message, sizeof(d.message), "model %s needs %s; "
		    "budget %s", name, a, b);
		goto done;
	}
	if (d.in_use > budget - need)
		need_free = d.in_use - (budget - need);
	if (max_models > 0 && n >= max_models)
		need_count = n + 1 - max_models;
	if (need_free == 0 && need_count == 0) {
		d.verdict = BUDGET_FITS;
		goto done;
	}

	/* Candidates, oldest first (insertion sort: n is small). */
	for (i = 0; i < n; i++) {
		if (res[i].pinned || res[i].busy)
			continue;
		for (j = n_cand; j > 0 && budget_older(res, i, evict[j - 1]);
		    j--)
			evict[j] = evict[j - 1];
		evict[j] = i;
		n_cand++;
	}
	/* Take the oldest until enough is freed... */
	for (k = 0; k < n_cand && (freed < need_free || k < need_count); k++)
		freed += res[evict[k]].bytes;	/* <= in_use */
	if (freed < need_free || k < need_count) {
		d.verdict = BUDGET_REFUSE;
		mem_fmt_bytes(d.held, c, sizeof(c));
		if (freed >= need_free)
			snprintf(d.message, sizeof(d.message), "model %s cannot "
			    "be loaded: %zu models resident (at most %u) and "
			    "too few of them are idle and unpinned", name, n,
			    max_models);
		else
			snprintf(d.message, sizeof(d.message), "model %s needs "
			    "%s; budget %s, %s in use by pinned or busy models",
			    name, a, b, c);
		goto done;
	}
	/* ...then keep those not needed after all, most recent first. */
	for (i = k; i-- > 0;) {
		x = evict[i];
		if (freed - res[x].bytes >= need_free && k - 1 >= need_count) {
			freed -= res[x].bytes;
			memmove(&evict[i], &evict[i + 1], (k - i - 1) *
			    sizeof(*evict));
			k--;
		}
	}
	d.verdict = BUDGET_EVICT;
	d.n_evict = k;
	d.freed = freed;
	len = (size_t)snprintf(d.message, sizeof(d.message), "loading %s (%s) "
	    "evicts", name, a);
	for (i = 0; i < k && len < sizeof(d.message); i++) {
		mem_fmt_bytes(res[evict[i]].bytes, c, sizeof(c));
		w = snprintf(d.message + len, sizeof(d.message) - len,
		    "%s %s (%s)", i ? "," : "", res[evict[i]].name != NULL ?
		    res[evict[i]].name : "?", c);
		if (w < 0)
			break;
		len += (size_t)w;
	}
done:
	*out = d;
	return 0;
}

/* --- the budget itself ---------------------------------------------------- */

uint64_t
budget_default(uint64_t ram)
{
	return ram / 100 * BUDGET_DEFAULT_PCT +
	    ram % 100 * BUDGET_DEFAULT_PCT / 100;
}

int
budget_parse(const char *s, uint64_t ram, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;
	int r;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p != '%') {
		/* a size; 0 bytes is no budget */
		if ((r = units_parse_size(s, &v)) < 0)
			return r;
		if (v == 0)
			return -ERANGE;
		*out = v;
		return 0;
	}
	if (p[1] != '\0')
		return -EINVAL;
	if (p - s > 3)
		return -ERANGE;
	for (p = s; *p != '%'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	if (v < 1 || v > 100)
		return -ERANGE;
	v = ram / 100 * v + ram % 100 * v / 100;
	if (v == 0)
		return -ERANGE;
	*out = v;
	return 0;
}

/* A whole small file into buf (NUL-terminated): 0 or -errno. */
static int
budget_slurp(const char *path, char *buf, size_t size)
{
	size_t got = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	while (got < size - 1) {
		n = read(fd, buf + got, size - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			n = -errno;
			close(fd);
			return (int)n;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return 0;
}

/* A cgroup limit file: bytes, or UINT64_MAX for "max" or unreadable. */
static uint64_t
budget_cg_limit(const char *path)
{
	char buf[64], *end;
	unsigned long long v;

	if (budget_slurp(path, buf, sizeof(buf)) < 0)
		return UINT64_MAX;
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (end == buf || errno != 0 || (*end != '\n' && *end != '\0'))
		return UINT64_MAX;
	return v;
}

int
budget_ram_from(const char *meminfo, const char *cgroup_limit,
    uint64_t *out)
{
	char buf[8192], *p;
	unsigned long long kb;
	uint64_t ram, lim;
	int r;

	if ((r = budget_slurp(meminfo, buf, sizeof(buf))) < 0)
		return r;
	if ((p = strstr(buf, "MemTotal:")) == NULL ||
	    sscanf(p + 9, "%llu kB", &kb) != 1 || kb == 0 ||
	    kb > UINT64_MAX >> 10)
		return -EINVAL;
	ram = (uint64_t)kb << 10;
	if (cgroup_limit != NULL) {
		lim = budget_cg_limit(cgroup_limit);
		if (lim > 0 && lim < ram)
			ram = lim;
	}
	*out = ram;
	return 0;
}

int
budget_ram_total(uint64_t *out)
{
	char buf[4096], path[PATH_MAX], *line, *save, *c, *cg;
	uint64_t ram, lim;
	size_t len;
	int r;

	if ((r = budget_ram_from("/proc/meminfo", NULL, &ram)) < 0)
		return r;
	if (budget_slurp("/proc/self/cgroup", buf, sizeof(buf)) < 0)
		goto done;
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		/* "hierarchy:controllers:path" */
		if ((c = strchr(line, ':')) == NULL)
			continue;
		*c++ = '\0';
		if ((cg = strchr(c, ':')) == NULL)
			continue;
		*cg++ = '\0';
		len = strlen(cg);
		/* this cgroup and each ancestor */
		for (;;) {
			if (strcmp(line, "0") == 0 && *c == '\0')
				snprintf(path, sizeof(path),
				    "/sys/fs/cgroup%s/memory.max", cg);
			else if (strstr(c, "memory") != NULL)
				snprintf(path, sizeof(path), "/sys/fs/cgroup/"
				    "memory%s/memory.limit_in_bytes", cg);
			else
				break;
			lim = budget_cg_limit(path);
			if (lim > 0 && lim < ram)
				ram = lim;
			while (len > 0 && cg[len - 1] != '/')
				len--;
			if (len == 0)
				break;
			cg[--len] = '\0';
			if (len == 0)
				break;
		}
	}
done:
	*out = ram;
	return 0;
}
