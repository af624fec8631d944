/*
 * check_pool.c - tests of kernels/pool.c: every thread runs every job
 * exactly once, the barrier holds everyone back, workers that went to
 * sleep wake up, runs from several callers take turns, threads pinned
 * to a given CPU list (read back with sched_getaffinity in each thread),
 * per-thread offsets, and the limits.
 */

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"

/*
 * Assert inside hot loops: Check records every passing ck_assert, which
 * costs a write per call; this reaches Check only on failure.
 */
#define CHECK(cond, ...) do {						\
	if (!(cond))							\
		ck_abort_msg(__VA_ARGS__);				\
} while (0)

/* Runs per test of the hand-over: enough to catch a lost wake-up. */
#define N_RUNS		5000
/* Barrier rounds per run in the barrier test. */
#define N_ROUNDS	64

/* What a job records: which threads ran it, with which nth. */
struct seen {
	_Atomic uint32_t	 calls[KERN_POOL_MAX_THREADS];
	_Atomic uint32_t	 bad_nth;
	uint32_t		 nth;
};

static void
job_mark(void *arg, uint32_t ith, uint32_t nth)
{
	struct seen	*s = arg;

	if (nth != s->nth || ith >= nth)
		atomic_fetch_add(&s->bad_nth, 1);
	else
		atomic_fetch_add(&s->calls[ith], 1);
}

static void
sleep_ms(long ms)
{
	struct timespec	 ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* ---- core ------------------------------------------------------------- */

START_TEST(test_every_thread_once)
{
	static const uint32_t	 sizes[] = { 1, 2, 3, 4 };
	struct kern_pool	*p;
	struct seen		*s;
	uint32_t		 n = sizes[_i], i;
	int			 run;

	s = calloc(1, sizeof(*s));
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(kern_pool_new(n, &p), 0);
	ck_assert_uint_eq(kern_pool_threads(p), n);
	s->nth = n;
	for (run = 0; run < N_RUNS; run++)
		kern_pool_run(p, job_mark, s);
	ck_assert_uint_eq(atomic_load(&s->bad_nth), 0);
	for (i = 0; i < n; i++)
		ck_assert_uint_eq(atomic_load(&s->calls[i]), N_RUNS);
	for (; i < KERN_POOL_MAX_THREADS; i++)
		ck_assert_uint_eq(atomic_load(&s->calls[i]), 0);
	kern_pool_free(p);
	free(s);
}
END_TEST

/*
 * Each round every thread writes round + ith to its slot, meets the
 * others, and checks every slot; a second barrier keeps the next round's
 * writes from overtaking a slow reader.
 */
struct bar_job {
	struct kern_pool	*pool;
	_Atomic uint32_t	 slot[KERN_POOL_MAX_THREADS];
	_Atomic uint32_t	 errors;
	uint32_t		 base;
};

static void
job_barrier(void *arg, uint32_t ith, uint32_t nth)
{
	struct bar_job	*b = arg;
	uint32_t	 round, j;

	for (round = 0; round < N_ROUNDS; round++) {
		atomic_store(&b->slot[ith], b->base + round + ith);
		kern_pool_barrier(b->pool);
		for (j = 0; j < nth; j++)
			if (atomic_load(&b->slot[j]) != b->base + round + j)
				atomic_fetch_add(&b->errors, 1);
		kern_pool_barrier(b->pool);
	}
}

START_TEST(test_barrier)
{
	struct bar_job	*b;
	uint32_t	 run;

	b = calloc(1, sizeof(*b));
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(kern_pool_new(_i + 2, &b->pool), 0);
	for (run = 0; run < 200; run++) {
		b->base = run * 1000;
		kern_pool_run(b->pool, job_barrier, b);
		CHECK(atomic_load(&b->errors) == 0,
		    "run %u: a thread passed the barrier early", run);
	}
	kern_pool_free(b->pool);
	free(b);
}
END_TEST

/* A run writes a sum split over the threads: the caller sees it all. */
struct sum_job {
	uint64_t	 part[KERN_POOL_MAX_THREADS];
	uint64_t	 n;
};

static void
job_sum(void *arg, uint32_t ith, uint32_t nth)
{
	struct sum_job	*s = arg;
	uint64_t	 a = s->n * ith / nth, b = s->n * (ith + 1) / nth, i;
	uint64_t	 t = 0;

	for (i = a; i < b; i++)
		t += i;
	s->part[ith] = t;
}

START_TEST(test_results_visible)
{
	struct kern_pool	*p;
	struct sum_job		 s;
	uint32_t		 i, nth;
	uint64_t		 t;
	int			 run;

	ck_assert_int_eq(kern_pool_new(3, &p), 0);
	nth = kern_pool_threads(p);
	for (run = 1; run < 2000; run++) {
		memset(&s, 0, sizeof(s));
		s.n = (uint64_t)run * 7;
		kern_pool_run(p, job_sum, &s);
		for (t = 0, i = 0; i < nth; i++)
			t += s.part[i];
		CHECK(t == s.n * (s.n - 1) / 2, "run %d: sum %llu", run,
		    (unsigned long long)t);
	}
	kern_pool_free(p);
}
END_TEST

/* Workers that fell asleep between runs wake up for the next. */
START_TEST(test_wake_after_sleep)
{
	struct kern_pool	*p;
	struct seen		*s;
	int			 run;

	s = calloc(1, sizeof(*s));
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(kern_pool_new(2, &p), 0);
	s->nth = 2;
	for (run = 0; run < 20; run++) {
		sleep_ms(run % 2 ? 5 : 1);	/* past the spin */
		kern_pool_run(p, job_mark, s);
	}
	ck_assert_uint_eq(atomic_load(&s->calls[0]), 20);
	ck_assert_uint_eq(atomic_load(&s->calls[1]), 20);
	kern_pool_free(p);
	free(s);
}
END_TEST

/* Two callers share one pool: their runs never overlap. */
struct turn_arg {
	struct kern_pool	*pool;
	_Atomic int		 inside;	/* threads inside any run */
	_Atomic int		 overlap;
	_Atomic uint32_t	 runs;
};

static void
job_turn(void *arg, uint32_t ith, uint32_t nth)
{
	struct turn_arg	*t = arg;

	(void)ith;
	if (atomic_fetch_add(&t->inside, 1) >= (int)nth)
		atomic_fetch_add(&t->overlap, 1);
	kern_pool_barrier(t->pool);
	atomic_fetch_sub(&t->inside, 1);
	if (ith == 0)
		atomic_fetch_add(&t->runs, 1);
}

static void *
caller_main(void *a)
{
	struct turn_arg	*t = a;
	int		 i;

	for (i = 0; i < 2000; i++)
		kern_pool_run(t->pool, job_turn, t);
	return NULL;
}

START_TEST(test_callers_take_turns)
{
	struct turn_arg	 t;
	pthread_t	 th[2];
	int		 i;

	memset(&t, 0, sizeof(t));
	ck_assert_int_eq(kern_pool_new(2, &t.pool), 0);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, caller_main, &t),
		    0);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(atomic_load(&t.overlap), 0);
	ck_assert_uint_eq(atomic_load(&t.runs), 4000);
	kern_pool_free(t.pool);
}
END_TEST

/* What each thread of a pinned pool saw of its own affinity. */
struct affinity {
	uint32_t		 nth;
	int			 cpus[KERN_POOL_MAX_THREADS];	/* asked */
	cpu_set_t		 got[KERN_POOL_MAX_THREADS];	/* read back */
	ptrdiff_t		 off[KERN_POOL_MAX_THREADS];	/* offsets */
	struct kern_pool	*pool;
	_Atomic uint32_t	 bad;
};

static void
job_affinity(void *arg, uint32_t ith, uint32_t nth)
{
	struct affinity	*a = arg;

	if (nth != a->nth ||
	    sched_getaffinity(0, sizeof(a->got[ith]), &a->got[ith]) != 0)
		atomic_fetch_add(&a->bad, 1);
	a->off[ith] = kern_pool_offset(a->pool, ith);
}

/* The CPUs this process may use, in order: how many stored in cpus. */
static uint32_t
allowed_cpus(int *cpus, uint32_t max)
{
	cpu_set_t	 set;
	uint32_t	 n = 0;
	int		 c;

	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (c = 0; c < CPU_SETSIZE && n < max; c++)
		if (CPU_ISSET(c, &set))
			cpus[n++] = c;
	return n;
}

/*
 * Runs on its own thread (pinning the caller must not leak into the
 * other tests when Check does not fork): a pool of 4 threads on the
 * allowed CPUs in reverse order, each reads back its affinity.
 */
static void *
pin_list_main(void *arg)
{
	struct affinity	*a = arg;
	int		 allowed[KERN_POOL_MAX_THREADS];
	uint32_t	 n_allowed, i;
	int		 run;

	n_allowed = allowed_cpus(allowed, KERN_POOL_MAX_THREADS);
	a->nth = 4;
	for (i = 0; i < a->nth; i++)
		a->cpus[i] = allowed[(n_allowed - 1 - i % n_allowed)];
	if (kern_pool_new_cpus(a->nth, a->cpus, &a->pool) != 0)
		return NULL;
	for (i = 0; i < a->nth; i++)
		kern_pool_set_offset(a->pool, i, (ptrdiff_t)i * 4096 - 1);
	for (run = 0; run < 50; run++)
		kern_pool_run(a->pool, job_affinity, a);
	return a;
}

START_TEST(test_pin_list)
{
	struct affinity	*a;
	pthread_t	 t;
	void		*ret = NULL;
	uint32_t	 i;

	unsetenv("HEARTH_PIN");
	a = calloc(1, sizeof(*a));
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(pthread_create(&t, NULL, pin_list_main, a), 0);
	ck_assert_int_eq(pthread_join(t, &ret), 0);
	ck_assert_ptr_eq(ret, a);
	ck_assert_uint_eq(atomic_load(&a->bad), 0);
	ck_assert_uint_eq(kern_pool_threads(a->pool), 4);
	for (i = 0; i < a->nth; i++) {
		/* every thread, the caller included, on its one CPU */
		ck_assert_int_eq(kern_pool_cpu(a->pool, i), a->cpus[i]);
		ck_assert_int_eq(CPU_COUNT(&a->got[i]), 1);
		ck_assert(CPU_ISSET(a->cpus[i], &a->got[i]));
		ck_assert_int_eq(a->off[i], (ptrdiff_t)i * 4096 - 1);
	}
	ck_assert_int_eq(kern_pool_cpu(a->pool, 4), -1);
	ck_assert_int_eq(kern_pool_offset(a->pool, 4), 0);
	kern_pool_free(a->pool);
	free(a);
}
END_TEST

/* ---- limits ----------------------------------------------------------- */

/*
 * CPUs that do not exist here (a simulated topology's) or -1: those
 * threads are not pinned and keep the process's CPUs; the pool works.
 */
static void *
pin_missing_main(void *arg)
{
	struct affinity	*a = arg;
	int		 allowed[KERN_POOL_MAX_THREADS];
	int		 run;

	(void)allowed_cpus(allowed, KERN_POOL_MAX_THREADS);
	a->nth = 4;
	a->cpus[0] = CPU_SETSIZE - 1;	/* no machine here has it */
	a->cpus[1] = allowed[0];
	a->cpus[2] = -1;
	a->cpus[3] = CPU_SETSIZE + 7;	/* past cpu_set_t */
	if (kern_pool_new_cpus(a->nth, a->cpus, &a->pool) != 0)
		return NULL;
	for (run = 0; run < 20; run++)
		kern_pool_run(a->pool, job_affinity, a);
	return a;
}

START_TEST(test_pin_missing_cpus)
{
	struct affinity	*a;
	cpu_set_t	 proc;
	pthread_t	 t;
	void		*ret = NULL;
	uint32_t	 i;

	unsetenv("HEARTH_PIN");
	ck_assert_int_eq(sched_getaffinity(0, sizeof(proc), &proc), 0);
	a = calloc(1, sizeof(*a));
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(pthread_create(&t, NULL, pin_missing_main, a), 0);
	ck_assert_int_eq(pthread_join(t, &ret), 0);
	ck_assert_ptr_eq(ret, a);
	ck_assert_uint_eq(atomic_load(&a->bad), 0);
	ck_assert_int_eq(kern_pool_cpu(a->pool, 0), -1);
	ck_assert_int_eq(kern_pool_cpu(a->pool, 1), a->cpus[1]);
	ck_assert_int_eq(kern_pool_cpu(a->pool, 2), -1);
	ck_assert_int_eq(kern_pool_cpu(a->pool, 3), -1);
	for (i = 0; i < a->nth; i++) {
		if (i == 1) {
			ck_assert_int_eq(CPU_COUNT(&a->got[i]), 1);
			continue;
		}
		ck_assert(CPU_EQUAL(&a->got[i], &proc));
	}
	kern_pool_free(a->pool);

	/* HEARTH_PIN=0: a list pins nothing */
	setenv("HEARTH_PIN", "0", 1);
	ck_assert_int_eq(kern_pool_new_cpus(4, a->cpus, &a->pool), 0);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(kern_pool_cpu(a->pool, i), -1);
	kern_pool_free(a->pool);
	unsetenv("HEARTH_PIN");
	free(a);
}
END_TEST

START_TEST(test_pin_list_limits)
{
	struct kern_pool	*p = (struct kern_pool *)&p;
	int			 cpus[2] = { -1, -1 };

	ck_assert_int_eq(kern_pool_new_cpus(0, cpus, &p), -EINVAL);
	ck_assert_int_eq(kern_pool_new_cpus(KERN_POOL_MAX_THREADS + 1, cpus,
	    &p), -EINVAL);
	ck_assert_ptr_eq(p, (struct kern_pool *)&p);	/* untouched */
	/* NULL list: kern_pool_new */
	ck_assert_int_eq(kern_pool_new_cpus(2, NULL, &p), 0);
	ck_assert_uint_eq(kern_pool_threads(p), 2);
	ck_assert_int_eq(kern_pool_cpu(p, 0), -1);	/* caller unpinned */
	kern_pool_free(p);
	ck_assert_int_eq(kern_pool_cpu(NULL, 0), -1);
	ck_assert_int_eq(kern_pool_offset(NULL, 0), 0);
	kern_pool_set_offset(NULL, 0, 5);		/* no-op */
}
END_TEST

START_TEST(test_default_and_oversubscribed)
{
	struct kern_pool	*p;
	struct seen		*s;
	uint32_t		 cores = kern_pool_cores(), n, i;
	int			 run;

	ck_assert_uint_ge(cores, 1);
	ck_assert_int_eq(kern_pool_new(0, &p), 0);
	ck_assert_uint_eq(kern_pool_threads(p), cores);
	kern_pool_free(p);

	/* more threads than cores: unpinned, still correct */
	n = 2 * cores + 1;
	if (n > KERN_POOL_MAX_THREADS)
		n = KERN_POOL_MAX_THREADS;
	s = calloc(1, sizeof(*s));
	ck_assert_ptr_nonnull(s);
	s->nth = n;
	ck_assert_int_eq(kern_pool_new(n, &p), 0);
	for (run = 0; run < 300; run++)
		kern_pool_run(p, job_mark, s);
	for (i = 0; i < n; i++)
		ck_assert_uint_eq(atomic_load(&s->calls[i]), 300);
	kern_pool_free(p);
	free(s);
}
END_TEST

START_TEST(test_single_and_null)
{
	struct kern_pool	*p;
	struct seen		*s;

	s = calloc(1, sizeof(*s));
	ck_assert_ptr_nonnull(s);
	s->nth = 1;
	kern_pool_run(NULL, job_mark, s);	/* the caller alone */
	ck_assert_uint_eq(kern_pool_threads(NULL), 1);
	ck_assert_int_eq(kern_pool_new(1, &p), 0);
	ck_assert_uint_eq(kern_pool_threads(p), 1);
	kern_pool_run(p, job_mark, s);
	kern_pool_barrier(p);			/* no-op with one thread */
	kern_pool_barrier(NULL);
	ck_assert_uint_eq(atomic_load(&s->calls[0]), 2);
	ck_assert_uint_eq(atomic_load(&s->bad_nth), 0);
	kern_pool_free(p);
	free(s);
}
END_TEST

START_TEST(test_max_threads)
{
	struct kern_pool	*p = (struct kern_pool *)&p;

	ck_assert_int_eq(kern_pool_new(KERN_POOL_MAX_THREADS + 1, &p),
	    -EINVAL);
	ck_assert_ptr_eq(p, (struct kern_pool *)&p);	/* untouched */
	ck_assert_int_eq(kern_pool_new(UINT32_MAX, &p), -EINVAL);
}
END_TEST

/* ---- errors ----------------------------------------------------------- */

START_TEST(test_free_null_and_idle)
{
	struct kern_pool	*p;

	kern_pool_free(NULL);
	/* freed without ever running, and freed while asleep */
	ck_assert_int_eq(kern_pool_new(3, &p), 0);
	kern_pool_free(p);
	ck_assert_int_eq(kern_pool_new(2, &p), 0);
	sleep_ms(5);
	kern_pool_free(p);
}
END_TEST

static Suite *
pool_suite(void)
{
	Suite	*s = suite_create("pool");
	TCase	*tc;

	tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_every_thread_once, 0, 4);
	tcase_add_loop_test(tc, test_barrier, 0, 3);
	tcase_add_test(tc, test_results_visible);
	tcase_add_test(tc, test_wake_after_sleep);
	tcase_add_test(tc, test_callers_take_turns);
	tcase_add_test(tc, test_pin_list);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_default_and_oversubscribed);
	tcase_add_test(tc, test_single_and_null);
	tcase_add_test(tc, test_max_threads);
	tcase_add_test(tc, test_pin_missing_cpus);
	tcase_add_test(tc, test_pin_list_limits);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, test_free_null_and_idle);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr = srunner_create(pool_suite());
	int	 failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
