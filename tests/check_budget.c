/*
 * check_budget.c - tests of daemon/budget.c: KV cache and model costs
 * (checked against what model_open really allocates), admission and
 * eviction order (least recently used idle unpinned models, a minimal
 * set), pinned and busy models never evicted, exact-fit boundaries,
 * refusals with their numbers, overflow-safe arithmetic, and the budget
 * setting itself.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "gguf.h"
#include "gguf_write.h"
#include "kernels.h"
#include "mkmodel_lib.h"
#include "model.h"
#include "testutil.h"

#define GiB	((uint64_t)1 << 30)
#define MiB	((uint64_t)1 << 20)

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

/* --- costs ---------------------------------------------------------------- */

START_TEST(test_kv_bytes)
{
	uint64_t b;

	/* TinyLlama: 22 layers, 4 KV heads of 64, context 2048, 4 slots */
	ck_assert_int_eq(budget_kv_bytes(22, 256, 256, 2048, 4, BUDGET_KV_F16,
	    &b), 0);
	ck_assert_uint_eq(b, 2ull * 22 * 2048 * 4 * 256 * 2);
	ck_assert_uint_eq(b, 176 * MiB);
	ck_assert_int_eq(budget_kv_bytes(22, 256, 256, 2048, 4, BUDGET_KV_F32,
	    &b), 0);
	ck_assert_uint_eq(b, 352 * MiB);
	/* q8_0: 34 bytes per 32 elements */
	ck_assert_int_eq(budget_kv_bytes(22, 256, 256, 2048, 4,
	    BUDGET_KV_Q8_0, &b), 0);
	ck_assert_uint_eq(b, 2ull * 22 * 2048 * 4 * (256 / 32 * 34));
	ck_assert_uint_eq(b, 176 * MiB / 2 * 34 / 32);
	/* a row that is not whole blocks takes its last block whole */
	ck_assert_int_eq(budget_kv_bytes(1, 40, 40, 1, 1, BUDGET_KV_Q8_0, &b),
	    0);
	ck_assert_uint_eq(b, 2 * 68);
	/* K and V of different widths */
	ck_assert_int_eq(budget_kv_bytes(2, 128, 64, 10, 3, BUDGET_KV_F16,
	    &b), 0);
	ck_assert_uint_eq(b, 2ull * 10 * 3 * (128 + 64) * 2);
	ck_assert_int_eq(budget_kv_bytes(0, 256, 256, 2048, 4, BUDGET_KV_F16,
	    &b), 0);
	ck_assert_uint_eq(b, 0);
}
END_TEST

START_TEST(test_cost)
{
	struct budget_shape s = { 0 };
	struct budget_cost c;

	s.weight_bytes = 3 * GiB;
	s.n_layer = 22;
	s.n_embd_k = s.n_embd_v = 256;
	s.n_ctx = 2048;
	s.n_parallel = 4;
	s.kv_type = BUDGET_KV_F16;
	s.scratch_bytes = 50 * MiB;
	ck_assert_int_eq(budget_cost(&s, &c), 0);
	ck_assert_uint_eq(c.weights, 3 * GiB);	/* copies 0 counts as 1 */
	ck_assert_uint_eq(c.kv, 176 * MiB);
	ck_assert_uint_eq(c.scratch, 50 * MiB);
	ck_assert_uint_eq(c.total, 3 * GiB + 226 * MiB);
	/* replicated on four nodes */
	s.copies = 4;
	ck_assert_int_eq(budget_cost(&s, &c), 0);
	ck_assert_uint_eq(c.weights, 12 * GiB);
	ck_assert_uint_eq(c.total, 12 * GiB + 226 * MiB);
	/* a bigger context costs linearly */
	s.copies = 1;
	s.n_ctx = 4096;
	s.kv_type = BUDGET_KV_Q8_0;
	ck_assert_int_eq(budget_cost(&s, &c), 0);
	ck_assert_uint_eq(c.kv, 352 * MiB / 2 * 34 / 32);
}
END_TEST

static uint64_t
pack_size(uint32_t type, uint64_t rows, uint64_t cols, void *arg)
{
	const struct kern_ops *ops = arg;

	return ops->pack_size(type, (size_t)rows, (size_t)cols);
}

/*
 * budget_shape_gguf on the file at path predicts exactly the weight
 * memory model_open allocates, and the model's own dimensions.
 */
static void
check_shape(const char *path)
{
	const struct kern_ops *ops = kern_ops();
	struct budget_shape s = { 0 };
	struct eng_err err = { "" };
	struct gguf *g = NULL;
	struct model *m = NULL;
	int r;

	ck_assert_msg(gguf_open(path, &g, &err) == 0, "%s", err.msg);
	s.n_ctx = 77;
	s.scratch_bytes = 5;
	r = budget_shape_gguf(g, ops->layout != KERN_LAYOUT_ROWS ? pack_size :
	    NULL, (void *)ops, &s, &err);
	ck_assert_msg(r == 0, "%s", err.msg);
	ck_assert_msg(model_open(path, NULL, NULL, &m, &err) == 0, "%s",
	    err.msg);
	ck_assert_msg(s.weight_bytes == m->mem_size, "%s: predicted %llu, "
	    "model_open %zu (kernels %s)", path,
	    (unsigned long long)s.weight_bytes, m->mem_size, ops->name);
	ck_assert_uint_eq(s.n_layer, m->hp.n_layer);
	ck_assert_uint_eq(s.n_embd, m->hp.n_embd);
	ck_assert_uint_eq(s.n_ff, m->hp.n_ff);
	ck_assert_uint_eq(s.n_head, m->hp.n_head);
	ck_assert_uint_eq(s.head_dim, m->hp.head_dim);
	ck_assert_uint_eq(s.n_embd_k, m->hp.n_head_kv * m->hp.head_dim);
	ck_assert_uint_eq(s.n_embd_v, m->hp.n_head_kv * m->hp.head_dim);
	ck_assert_uint_eq(s.n_vocab, m->hp.n_vocab);
	ck_assert_uint_eq(s.n_ctx_train, m->hp.n_ctx_train);
	ck_assert_uint_eq(s.n_ctx, 77);		/* left alone */
	ck_assert_uint_eq(s.scratch_bytes, 5);
	model_free(m);
	gguf_close(g);
}

START_TEST(test_shape_generated)
{
	static const struct {
		const char	*arch;
		uint32_t	 wtype;
		bool		 tied;
		bool		 rope_freqs;
		uint32_t	 n_head_kv;
	} cases[] = {
		{ "llama", KERN_TYPE_F32, false, false, 2 },
		{ "llama", KERN_TYPE_Q4_0, true, true, 4 },
		{ "llama", KERN_TYPE_Q4_K, false, false, 1 },
		{ "qwen2", KERN_TYPE_Q8_0, false, false, 2 },
		{ "qwen2", KERN_TYPE_F16, true, false, 2 },
		{ "qwen2", KERN_TYPE_Q6_K, false, true, 4 },
	};
	char path[64];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mkm_spec sp;
		struct eng_err err = { "" };

		mkm_spec_default(&sp);
		sp.arch = cases[i].arch;
		sp.n_embd = 256;
		sp.n_ff = 512;
		sp.wtype = cases[i].wtype;
		sp.embd_type = cases[i].wtype;
		sp.out_type = cases[i].wtype;
		sp.tied = cases[i].tied;
		sp.rope_freqs = cases[i].rope_freqs;
		sp.n_head_kv = cases[i].n_head_kv;
		snprintf(path, sizeof(path), "m%zu.gguf", i);
		ck_assert_msg(mkm_write(&sp, tu_tmpfile(path), &err) == 0,
		    "%s", err.msg);
		check_shape(tu_tmpfile(path));
	}
}
END_TEST

START_TEST(test_shape_testdata)
{
	static const char *files[] = { "models/aidreams260K.gguf",
	    "ref/ref-llama-q4_k_m.gguf", "ref/ref-qwen2-q8_0.gguf",
	    "ref/ref-llama-bf16.gguf" };
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		const char *path = tu_testdata(files[i]);

		if (path == NULL) {
			tu_skip(files[i]);
			continue;
		}
		check_shape(path);
	}
}
END_TEST

START_TEST(test_scratch_estimate)
{
	struct budget_shape s = { 0 };

	s.n_embd = 2048;
	s.n_head = 32;
	s.head_dim = 64;
	s.n_embd_k = s.n_embd_v = 256;
	s.n_ff = 5632;
	s.n_ctx = 2048;
	s.n_parallel = 4;
	s.n_vocab = 32000;
	ck_assert_uint_eq(budget_scratch_estimate(&s, 512),
	    4ull * 512 * (3 * 2048 + 2048 + 512 + 2 * 5632) +
	    4ull * 512 * 2048 + 4ull * 4 * 32000);
	s.n_embd = UINT32_MAX;
	s.n_ff = UINT32_MAX;
	s.n_ctx = UINT32_MAX;
	s.n_vocab = UINT32_MAX;
	s.n_parallel = UINT32_MAX;
	ck_assert_uint_eq(budget_scratch_estimate(&s, UINT32_MAX),
	    UINT64_MAX);
}
END_TEST

/* --- admission ------------------------------------------------------------ */

struct admit {
	struct budget_decision	 d;
	size_t			 evict[64];
};

static struct admit
admit(uint64_t budget, uint32_t max_models, const struct budget_model *res,
    size_t n, uint64_t need)
{
	struct admit a;

	memset(&a, 0, sizeof(a));
	ck_assert_uint_le(n, 64);
	ck_assert_int_eq(budget_admit(budget, max_models, res, n, "X", need,
	    a.evict, &a.d), 0);
	return a;
}

START_TEST(test_admit_fits)
{
	struct budget_model res[2] = {
		{ "a", 3 * GiB, 10, false, false },
		{ "b", 2 * GiB, 20, false, false },
	};
	struct admit a;

	a = admit(8 * GiB, 0, NULL, 0, 8 * GiB);	/* nothing resident */
	ck_assert_int_eq(a.d.verdict, BUDGET_FITS);
	ck_assert_str_eq(a.d.message, "");
	a = admit(8 * GiB, 0, res, 2, 2 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_FITS);
	ck_assert_uint_eq(a.d.in_use, 5 * GiB);
	ck_assert_uint_eq(a.d.n_evict, 0);
	/* exactly the budget: fits */
	a = admit(8 * GiB, 0, res, 2, 3 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_FITS);
	/* one byte more: the oldest goes */
	a = admit(8 * GiB, 0, res, 2, 3 * GiB + 1);
	ck_assert_int_eq(a.d.verdict, BUDGET_EVICT);
	ck_assert_uint_eq(a.d.n_evict, 1);
	ck_assert_uint_eq(a.evict[0], 0);
	ck_assert_uint_eq(a.d.freed, 3 * GiB);
	ck_assert_str_eq(a.d.message, "loading X (3.0 GiB) evicts a (3.0 GiB)");
	/* a model of nothing fits anywhere */
	a = admit(0, 0, NULL, 0, 0);
	ck_assert_int_eq(a.d.verdict, BUDGET_FITS);
}
END_TEST

START_TEST(test_evict_lru_order)
{
	struct budget_model res[4] = {
		{ "c", 1 * GiB, 300, false, false },
		{ "a", 1 * GiB, 100, false, false },
		{ "d", 1 * GiB, 400, false, false },
		{ "b", 1 * GiB, 200, false, false },
	};
	struct admit a;

	/* 4 GiB used of 5: 2 GiB needs one out, 3 GiB two, 5 GiB all */
	a = admit(5 * GiB, 0, res, 4, 2 * GiB);
	ck_assert_uint_eq(a.d.n_evict, 1);
	ck_assert_uint_eq(a.evict[0], 1);		/* a */
	a = admit(5 * GiB, 0, res, 4, 3 * GiB);
	ck_assert_uint_eq(a.d.n_evict, 2);
	ck_assert_uint_eq(a.evict[0], 1);		/* a, then b */
	ck_assert_uint_eq(a.evict[1], 3);
	ck_assert_str_eq(a.d.message,
	    "loading X (3.0 GiB) evicts a (1.0 GiB), b (1.0 GiB)");
	a = admit(5 * GiB, 0, res, 4, 5 * GiB);
	ck_assert_uint_eq(a.d.n_evict, 4);
	ck_assert_uint_eq(a.evict[0], 1);
	ck_assert_uint_eq(a.evict[1], 3);
	ck_assert_uint_eq(a.evict[2], 0);
	ck_assert_uint_eq(a.evict[3], 2);
	ck_assert_uint_eq(a.d.freed, 4 * GiB);
}
END_TEST

START_TEST(test_evict_minimal)
{
	struct budget_model res[3] = {
		{ "small-old", 1 * GiB, 1, false, false },
		{ "big", 4 * GiB, 2, false, false },
		{ "mid", 2 * GiB, 3, false, false },
	};
	struct admit a;

	/* 7 of 8 GiB used, 4 GiB wanted: 3 GiB must go. Oldest first takes
	 * small-old and big; small-old turns out unneeded and stays. */
	a = admit(8 * GiB, 0, res, 3, 4 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_EVICT);
	ck_assert_uint_eq(a.d.n_evict, 1);
	ck_assert_uint_eq(a.evict[0], 1);
	ck_assert_uint_eq(a.d.freed, 4 * GiB);
	/* both needed: both go, oldest first */
	a = admit(8 * GiB, 0, res, 3, 5 * GiB + 1);
	ck_assert_uint_eq(a.d.n_evict, 2);
	ck_assert_uint_eq(a.evict[0], 0);
	ck_assert_uint_eq(a.evict[1], 1);
	/* the most recent taken is dropped first when not needed */
	res[0].bytes = 3 * GiB;		/* 3, 4, 2: 9 GiB used of 10 */
	a = admit(10 * GiB, 0, res, 3, 4 * GiB);
	ck_assert_uint_eq(a.d.n_evict, 1);
	ck_assert_uint_eq(a.evict[0], 0);	/* 3 GiB is enough */
}
END_TEST

START_TEST(test_pinned_busy)
{
	struct budget_model res[4] = {
		{ "pinned-old", 2 * GiB, 1, true, false },
		{ "busy-old", (uint64_t)(3.1 * GiB), 2, false, true },
		{ "idle", 1 * GiB, 3, false, false },
		{ "idle2", 1 * GiB, 4, false, false },
	};
	struct admit a;

	/* 7.1 of 8 GiB used: the idle ones go, never the oldest two */
	a = admit(8 * GiB, 0, res, 4, 2 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_EVICT);
	ck_assert_uint_eq(a.d.n_evict, 2);
	ck_assert_uint_eq(a.evict[0], 2);
	ck_assert_uint_eq(a.evict[1], 3);
	ck_assert_uint_eq(a.d.held, 2 * GiB + (uint64_t)(3.1 * GiB));
	/* exactly what is left after evicting everything evictable */
	a = admit(8 * GiB, 0, res, 4, 8 * GiB - a.d.held);
	ck_assert_int_eq(a.d.verdict, BUDGET_EVICT);
	ck_assert_uint_eq(a.d.n_evict, 2);
	/* one byte more: refused, with the numbers, nothing evicted */
	a = admit(8 * GiB, 0, res, 4, 8 * GiB - a.d.held + 1);
	ck_assert_int_eq(a.d.verdict, BUDGET_REFUSE);
	ck_assert_uint_eq(a.d.n_evict, 0);
	/* the example */
	a = admit(8 * GiB, 0, res, 4, (uint64_t)(4.2 * GiB));
	ck_assert_int_eq(a.d.verdict, BUDGET_REFUSE);
	ck_assert_str_eq(a.d.message, "model X needs 4.2 GiB; budget 8.0 GiB, "
	    "5.1 GiB in use by pinned or busy models");
	/* all pinned */
	res[1].busy = false;
	res[1].pinned = true;
	res[2].pinned = res[3].pinned = true;
	a = admit(8 * GiB, 0, res, 4, 1 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_REFUSE);
	ck_assert_uint_eq(a.d.held, a.d.in_use);
}
END_TEST

START_TEST(test_need_over_budget)
{
	struct admit a;

	a = admit(8 * GiB, 0, NULL, 0, 9 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_REFUSE);
	ck_assert_str_eq(a.d.message, "model X needs 9.0 GiB; budget 8.0 GiB");
	a = admit(8 * GiB, 0, NULL, 0, 8 * GiB + 1);
	ck_assert_int_eq(a.d.verdict, BUDGET_REFUSE);
}
END_TEST

START_TEST(test_max_models)
{
	struct budget_model res[3] = {
		{ "a", 1 * GiB, 30, false, false },
		{ "b", 1 * GiB, 10, false, false },
		{ "c", 1 * GiB, 20, false, false },
	};
	struct admit a;

	/* plenty of memory, but at most 3 resident: the LRU one goes */
	a = admit(100 * GiB, 3, res, 3, 1 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_EVICT);
	ck_assert_uint_eq(a.d.n_evict, 1);
	ck_assert_uint_eq(a.evict[0], 1);
	/* at most 2 (lowered in the config): two go */
	a = admit(100 * GiB, 2, res, 3, 1 * GiB);
	ck_assert_uint_eq(a.d.n_evict, 2);
	ck_assert_uint_eq(a.evict[0], 1);
	ck_assert_uint_eq(a.evict[1], 2);
	a = admit(100 * GiB, 4, res, 3, 1 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_FITS);
	a = admit(100 * GiB, 0, res, 3, 1 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_FITS);
	/* count and bytes together: the count rule keeps one eviction,
	 * the bytes need a bigger one */
	res[2].bytes = 5 * GiB;		/* 7 GiB of 8 used */
	a = admit(8 * GiB, 3, res, 3, 4 * GiB);
	ck_assert_uint_eq(a.d.n_evict, 1);
	ck_assert_uint_eq(a.evict[0], 2);
	/* all busy: refused, saying why */
	res[0].busy = res[1].busy = res[2].busy = true;
	a = admit(100 * GiB, 3, res, 3, 1 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_REFUSE);
	ck_assert_str_eq(a.d.message, "model X cannot be loaded: 3 models "
	    "resident (at most 3) and too few of them are idle and unpinned");
}
END_TEST

START_TEST(test_ties_and_over_budget)
{
	struct budget_model res[3] = {
		{ "a", 2 * GiB, 5, false, false },
		{ "b", 2 * GiB, 5, false, false },
		{ "c", 2 * GiB, 5, false, false },
	};
	struct admit a;

	/* same last use: lower index first */
	a = admit(6 * GiB, 0, res, 3, 2 * GiB);
	ck_assert_uint_eq(a.d.n_evict, 1);
	ck_assert_uint_eq(a.evict[0], 0);
	/* the budget was lowered below what is resident */
	a = admit(3 * GiB, 0, res, 3, 1 * GiB);
	ck_assert_int_eq(a.d.verdict, BUDGET_EVICT);
	ck_assert_uint_eq(a.d.n_evict, 2);	/* 6 - 4 + 1 <= 3 */
	ck_assert_uint_eq(a.d.in_use, 6 * GiB);
}
END_TEST

/* --- limits --------------------------------------------------------------- */

START_TEST(test_overflow)
{
	struct budget_model res[3] = {
		{ "a", UINT64_MAX - 1, 1, false, false },
		{ "b", 1, 2, false, false },
		{ "c", 1, 3, false, false },
	};
	struct budget_shape s = { 0 };
	struct budget_cost c;
	struct budget_decision d;
	size_t ev[3];
	uint64_t b = 12345;

	memset(&d, 0x5a, sizeof(d));
	ck_assert_int_eq(budget_admit(UINT64_MAX, 0, res, 3, "X", 1, ev, &d),
	    -EOVERFLOW);
	ck_assert_uint_eq(d.n_evict, 0x5a5a5a5a5a5a5a5aull);	/* untouched */
	/* exactly 2^64 - 1 in use: no overflow, budget full */
	ck_assert_int_eq(budget_admit(UINT64_MAX, 0, res, 2, "X", 1, ev, &d),
	    0);
	ck_assert_uint_eq(d.in_use, UINT64_MAX);
	ck_assert_int_eq(d.verdict, BUDGET_EVICT);
	ck_assert_uint_eq(ev[0], 0);		/* the oldest: enough alone */
	ck_assert_uint_eq(d.n_evict, 1);
	ck_assert_int_eq(budget_admit(UINT64_MAX, 0, res, 2, "X", UINT64_MAX,
	    ev, &d), 0);
	ck_assert_int_eq(d.verdict, BUDGET_EVICT);
	ck_assert_uint_eq(d.n_evict, 2);

	/* KV cache past 2^64 */
	ck_assert_int_eq(budget_kv_bytes(UINT32_MAX, UINT32_MAX, UINT32_MAX,
	    UINT32_MAX, UINT32_MAX, BUDGET_KV_F32, &b), -EOVERFLOW);
	ck_assert_uint_eq(b, 12345);
	ck_assert_int_eq(budget_kv_bytes(1, UINT32_MAX, UINT32_MAX, 1, 1,
	    BUDGET_KV_F32, &b), 0);
	ck_assert_uint_eq(b, 8ull * UINT32_MAX);
	/* weights times copies, and the total */
	s.weight_bytes = UINT64_MAX / 2 + 1;
	s.copies = 2;
	ck_assert_int_eq(budget_cost(&s, &c), -EOVERFLOW);
	s.copies = 1;
	s.scratch_bytes = UINT64_MAX / 2 + 1;
	ck_assert_int_eq(budget_cost(&s, &c), -EOVERFLOW);
	s.scratch_bytes = UINT64_MAX / 2;
	ck_assert_int_eq(budget_cost(&s, &c), 0);
	ck_assert_uint_eq(c.total, UINT64_MAX);
}
END_TEST

/* Does evicting ev[0..k) of res make room, while no subset missing one does? */
static void
check_minimal(const struct budget_model *res, size_t n, uint64_t budget,
    uint64_t need, const size_t *ev, size_t k)
{
	uint64_t in_use = 0, freed = 0;
	size_t i;

	for (i = 0; i < n; i++)
		in_use += res[i].bytes;
	for (i = 0; i < k; i++) {
		ck_assert(!res[ev[i]].pinned && !res[ev[i]].busy);
		freed += res[ev[i]].bytes;
		if (i > 0)	/* listed oldest first */
			ck_assert_uint_le(res[ev[i - 1]].last_use,
			    res[ev[i]].last_use);
	}
	ck_assert_uint_le(in_use - freed + need, budget);
	for (i = 0; i < k; i++)
		ck_assert_uint_gt(in_use - (freed - res[ev[i]].bytes) + need,
		    budget);
}

START_TEST(test_random)
{
	struct budget_model res[40];
	uint64_t state = 99;
	int round, evicts = 0, refuses = 0, fits = 0;

	for (round = 0; round < 2000; round++) {
		size_t n = 1 + tu_rand_u64(&state) % 40, i;
		uint64_t budget = 64 * GiB, used = 0, need;
		struct admit a;

		for (i = 0; i < n; i++) {
			res[i].name = "m";
			res[i].bytes = 1 + tu_rand_u64(&state) % (4 * GiB);
			res[i].last_use = tu_rand_u64(&state) % 50;
			res[i].pinned = tu_rand_u64(&state) % 5 == 0;
			res[i].busy = tu_rand_u64(&state) % 4 == 0;
			used += res[i].bytes;
		}
		need = tu_rand_u64(&state) % (16 * GiB);
		a = admit(budget, 0, res, n, need);
		switch (a.d.verdict) {
		case BUDGET_FITS:
			ck_assert_uint_le(used + need, budget);
			fits++;
			break;
		case BUDGET_EVICT:
			ck_assert_uint_gt(used + need, budget);
			check_minimal(res, n, budget, need, a.evict,
			    a.d.n_evict);
			evicts++;
			break;
		case BUDGET_REFUSE:
			/* even without every idle unpinned model */
			ck_assert_uint_gt(a.d.held + need, budget);
			refuses++;
			break;
		}
	}
	/* the rounds covered every verdict */
	ck_assert_int_gt(fits, 0);
	ck_assert_int_gt(evicts, 0);
	ck_assert_int_gt(refuses, 0);
}
END_TEST

START_TEST(test_long_message)
{
	static const char *long_name = "a-model-with-a-very-long-name-indeed-"
	    "it-goes-on-and-on-and-on-and-on";
	struct budget_model res[30];
	struct admit a;
	size_t i;

	for (i = 0; i < 30; i++) {
		res[i].name = long_name;
		res[i].bytes = GiB;
		res[i].last_use = i;
		res[i].pinned = res[i].busy = false;
	}
	a = admit(30 * GiB, 0, res, 30, 30 * GiB);
	ck_assert_uint_eq(a.d.n_evict, 30);
	ck_assert_uint_lt(strlen(a.d.message), BUDGET_MSG_MAX);
	ck_assert_ptr_nonnull(strstr(a.d.message, long_name));
	res[0].name = NULL;
	a = admit(30 * GiB, 0, res, 30, 30 * GiB);
	ck_assert_ptr_nonnull(strstr(a.d.message, "evicts ? (1.0 GiB)"));
	ck_assert_int_eq(budget_admit(GiB, 0, NULL, 0, NULL, 2 * GiB, NULL,
	    &a.d), 0);
	ck_assert_str_eq(a.d.message, "model model needs 2.0 GiB; budget "
	    "1.0 GiB");
}
END_TEST

/* --- errors --------------------------------------------------------------- */

START_TEST(test_bad_args)
{
	struct budget_model res[1] = { { "a", 1, 1, false, false } };
	struct budget_decision d;
	struct budget_shape s = { 0 };
	struct budget_cost c;
	size_t ev[1];
	uint64_t b;

	ck_assert_int_eq(budget_admit(1, 0, res, 1, "x", 1, ev, NULL),
	    -EINVAL);
	ck_assert_int_eq(budget_admit(1, 0, NULL, 1, "x", 1, ev, &d), -EINVAL);
	ck_assert_int_eq(budget_admit(1, 0, res, 1, "x", 1, NULL, &d),
	    -EINVAL);
	ck_assert_int_eq(budget_kv_bytes(1, 1, 1, 1, 1,
	    (enum budget_kv_type)7, &b), -EINVAL);
	s.kv_type = (enum budget_kv_type)7;
	ck_assert_int_eq(budget_cost(&s, &c), -EINVAL);
}
END_TEST

START_TEST(test_budget_setting)
{
	uint64_t b = 7;

	ck_assert_uint_eq(budget_default(10 * GiB), 8 * GiB);
	ck_assert_uint_eq(budget_default(100), 80);
	ck_assert_uint_eq(budget_default(99), 79);
	ck_assert_uint_eq(budget_default(UINT64_MAX),
	    UINT64_MAX / 100 * 80 + UINT64_MAX % 100 * 80 / 100);

	ck_assert_int_eq(budget_parse("80%", 10 * GiB, &b), 0);
	ck_assert_uint_eq(b, 8 * GiB);
	ck_assert_int_eq(budget_parse("100%", 10 * GiB, &b), 0);
	ck_assert_uint_eq(b, 10 * GiB);
	ck_assert_int_eq(budget_parse("1%", UINT64_MAX, &b), 0);
	ck_assert_uint_eq(b, UINT64_MAX / 100 + UINT64_MAX % 100 / 100);
	ck_assert_int_eq(budget_parse("16G", 0, &b), 0);
	ck_assert_uint_eq(b, 16 * GiB);
	ck_assert_int_eq(budget_parse("512m", 0, &b), 0);
	ck_assert_uint_eq(b, 512 * MiB);
	ck_assert_int_eq(budget_parse("3k", 0, &b), 0);
	ck_assert_uint_eq(b, 3072);
	ck_assert_int_eq(budget_parse("2T", 0, &b), 0);
	ck_assert_uint_eq(b, 2ull << 40);
	ck_assert_int_eq(budget_parse("1048576", 0, &b), 0);
	ck_assert_uint_eq(b, MiB);
	b = 7;
	ck_assert_int_eq(budget_parse("0%", GiB, &b), -ERANGE);
	ck_assert_int_eq(budget_parse("101%", GiB, &b), -ERANGE);
	ck_assert_int_eq(budget_parse("50%", 1, &b), -ERANGE);	/* 0 bytes */
	ck_assert_int_eq(budget_parse("0", GiB, &b), -ERANGE);
	ck_assert_int_eq(budget_parse("0G", GiB, &b), -ERANGE);
	ck_assert_int_eq(budget_parse("99999999999999999999", GiB, &b),
	    -ERANGE);
	ck_assert_int_eq(budget_parse("16777216T", GiB, &b), -ERANGE);
	ck_assert_int_eq(budget_parse("16GB", GiB, &b), -EINVAL);
	ck_assert_int_eq(budget_parse("1.5G", GiB, &b), -EINVAL);
	ck_assert_int_eq(budget_parse("80%%", GiB, &b), -EINVAL);
	ck_assert_int_eq(budget_parse("%", GiB, &b), -EINVAL);
	ck_assert_int_eq(budget_parse("", GiB, &b), -EINVAL);
	ck_assert_int_eq(budget_parse(" 8G", GiB, &b), -EINVAL);
	ck_assert_int_eq(budget_parse("-1", GiB, &b), -EINVAL);
	ck_assert_int_eq(budget_parse(NULL, GiB, &b), -EINVAL);
	ck_assert_uint_eq(b, 7);	/* untouched */
}
END_TEST

START_TEST(test_ram)
{
	const char *mi = "MemTotal:       24684096 kB\nMemFree:  1 kB\n";
	char meminfo[256], cg[256];
	uint64_t ram = 1, real;

	snprintf(meminfo, sizeof(meminfo), "%s", tu_tmpfile("meminfo"));
	snprintf(cg, sizeof(cg), "%s", tu_tmpfile("memory.max"));
	ck_assert_int_eq(tu_write_file(meminfo, mi, strlen(mi)), 0);
	ck_assert_int_eq(budget_ram_from(meminfo, NULL, &ram), 0);
	ck_assert_uint_eq(ram, 24684096ull * 1024);
	/* a cgroup limit below RAM wins; "max" or a bigger one does not */
	ck_assert_int_eq(tu_write_file(cg, "4294967296\n", 11), 0);
	ck_assert_int_eq(budget_ram_from(meminfo, cg, &ram), 0);
	ck_assert_uint_eq(ram, 4 * GiB);
	ck_assert_int_eq(tu_write_file(cg, "max\n", 4), 0);
	ck_assert_int_eq(budget_ram_from(meminfo, cg, &ram), 0);
	ck_assert_uint_eq(ram, 24684096ull * 1024);
	ck_assert_int_eq(tu_write_file(cg, "9223372036854771712\n", 20), 0);
	ck_assert_int_eq(budget_ram_from(meminfo, cg, &ram), 0);
	ck_assert_uint_eq(ram, 24684096ull * 1024);
	ck_assert_int_eq(budget_ram_from(meminfo, tu_tmpfile("none"), &ram),
	    0);
	/* a broken meminfo */
	ram = 1;
	ck_assert_int_eq(tu_write_file(meminfo, "MemFree: 3 kB\n", 14), 0);
	ck_assert_int_eq(budget_ram_from(meminfo, NULL, &ram), -EINVAL);
	ck_assert_int_eq(tu_write_file(meminfo, "MemTotal: x kB\n", 15), 0);
	ck_assert_int_eq(budget_ram_from(meminfo, NULL, &ram), -EINVAL);
	ck_assert_int_eq(budget_ram_from(tu_tmpfile("nope"), NULL, &ram),
	    -ENOENT);
	ck_assert_uint_eq(ram, 1);
	/* this machine */
	ck_assert_int_eq(budget_ram_total(&ram), 0);
	ck_assert_int_eq(budget_ram_from("/proc/meminfo", NULL, &real), 0);
	ck_assert_uint_gt(ram, 0);
	ck_assert_uint_le(ram, real);
	fprintf(stderr, "this machine: RAM for hearth %llu MiB, default "
	    "budget %llu MiB\n", (unsigned long long)(ram >> 20),
	    (unsigned long long)(budget_default(ram) >> 20));
}
END_TEST

START_TEST(test_shape_errors)
{
	struct gguf_writer *w = NULL;
	struct budget_shape s = { 0 };
	struct eng_err err = { "" };
	struct gguf *g = NULL;
	const char *path = tu_tmpfile("bad.gguf");
	uint64_t ne[2] = { 32, 4 };
	float data[128] = { 0 };

	/* no architecture */
	ck_assert_int_eq(gguf_writer_new(&w), 0);
	ck_assert_int_eq(gguf_writer_add_tensor(w, "t", 2, ne, 0, data,
	    sizeof(data)), 0);
	ck_assert_int_eq(gguf_writer_to_file(w, path, &err), 0);
	ck_assert_msg(gguf_open(path, &g, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(budget_shape_gguf(g, NULL, NULL, &s, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "no general.architecture");
	gguf_close(g);
	/* no block count */
	ck_assert_int_eq(gguf_writer_set_str(w, "general.architecture",
	    "llama"), 0);
	ck_assert_int_eq(gguf_writer_to_file(w, path, &err), 0);
	ck_assert_msg(gguf_open(path, &g, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(budget_shape_gguf(g, NULL, NULL, &s, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "llama.block_count: missing");
	gguf_close(g);
	/* a zero head count */
	ck_assert_int_eq(gguf_writer_set_u32(w, "llama.block_count", 2), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "llama.embedding_length", 64),
	    0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "llama.feed_forward_length",
	    128), 0);
	ck_assert_int_eq(gguf_writer_set_u32(w, "llama.attention.head_count",
	    0), 0);
	ck_assert_int_eq(gguf_writer_to_file(w, path, &err), 0);
	ck_assert_msg(gguf_open(path, &g, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(budget_shape_gguf(g, NULL, NULL, &s, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "llama.attention.head_count: bad value");
	gguf_close(g);
	/* complete: one 2-D f32 tensor of 512 bytes, defaults for the rest */
	ck_assert_int_eq(gguf_writer_set_u32(w, "llama.attention.head_count",
	    4), 0);
	ck_assert_int_eq(gguf_writer_to_file(w, path, &err), 0);
	ck_assert_msg(gguf_open(path, &g, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(budget_shape_gguf(g, NULL, NULL, &s, &err), 0);
	ck_assert_uint_eq(s.weight_bytes, 512);
	ck_assert_uint_eq(s.head_dim, 16);
	ck_assert_uint_eq(s.n_embd_k, 64);	/* kv heads = heads */
	ck_assert_uint_eq(s.n_vocab, 0);	/* no tokens, no token_embd */
	gguf_close(g);
	gguf_writer_free(w);
}
END_TEST

static Suite *
budget_suite(void)
{
	Suite *s = suite_create("budget");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_kv_bytes);
	tcase_add_test(tc, test_cost);
	tcase_add_test(tc, test_shape_generated);
	tcase_add_test(tc, test_shape_testdata);
	tcase_add_test(tc, test_scratch_estimate);
	tcase_add_test(tc, test_admit_fits);
	tcase_add_test(tc, test_evict_lru_order);
	tcase_add_test(tc, test_evict_minimal);
	tcase_add_test(tc, test_pinned_busy);
	tcase_add_test(tc, test_need_over_budget);
	tcase_add_test(tc, test_max_models);
	tcase_add_test(tc, test_ties_and_over_budget);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_overflow);
	tcase_add_test(tc, test_random);
	tcase_add_test(tc, test_long_message);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_budget_setting);
	tcase_add_test(tc, test_ram);
	tcase_add_test(tc, test_shape_errors);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(budget_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
