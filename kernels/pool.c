/*
 * pool.c - the kernels' worker pool: persistent threads pinned to
 * physical cores, started with a generation counter, finished with a
 * counter, and a sense-counting barrier; every wait spins first and then
 * sleeps on a futex, so a busy forward pass costs no system calls and an
 * idle model no CPU.
 *
 * Lost wake-ups cannot happen: a waiter announces itself (sleepers++)
 * before it re-reads the word it waits on and calls futex_wait with the
 * value it saw; a waker changes the word before it reads sleepers. With
 * sequentially consistent atomics one of the two sees the other.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

#define POOL_SPIN_NS	20000	/* spin this long, */
#define POOL_YIELD_NS	200000	/* then yield the CPU up to this, then sleep */
#define POOL_MAX_CPUS	1024

/* One word threads wait for a change of, and how many sleep on it. */
struct pool_word {
	_Alignas(64) _Atomic uint32_t	 v;
	_Atomic uint32_t		 sleepers;
};

struct pool_worker {
	struct kern_pool	*pool;
	uint32_t		 ith;
	int			 cpu;		/* pinned to, or -1 */
	pthread_t		 tid;
};

/* Pools get distinct ids, so a caller knows which pool it is pinned for. */
static _Atomic uint64_t pool_next_id = 1;
/* The pool the calling thread was last pinned for (0: none). */
static _Thread_local uint64_t pool_tls_pinned;

struct kern_pool {
	uint32_t		 n;		/* threads, the caller included */
	struct pool_worker	*workers;	/* [n - 1] */
	uint64_t		 id;		/* distinct per pool */
	int			 cpu0;		/* the caller's CPU, or -1 */
	ptrdiff_t		*offset;	/* [n] per-thread byte offsets */
	uint32_t		 started;	/* workers running */
	pthread_mutex_t		 run_lock;	/* one run at a time */
	kern_pool_fn		 fn;		/* the current run */
	void			*arg;
	_Atomic bool		 stop;
	struct pool_word	 gen;		/* + 1 per run */
	struct pool_word	 done;		/* workers through this run */
	struct pool_word	 phase;		/* + 1 per barrier */
	_Alignas(64) _Atomic uint32_t arrived;	/* at the current barrier */
};

static void
pool_futex_wait(_Atomic uint32_t *w, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL,
	    NULL, 0);
}

static void
pool_futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL,
	    NULL, 0);
}

static inline void
pool_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static uint64_t
pool_now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Wait until w->v differs from old; return it. Spin first (the others
 * are usually microseconds away), then yield the CPU (when threads
 * outnumber cores, the one we wait for may need ours), then sleep.
 */
static uint32_t
pool_wait_change(struct pool_word *w, uint32_t old)
{
	uint64_t	 t0 = 0, dt = 0;
	uint32_t	 v;
	unsigned	 i;

	for (i = 0;; i++) {
		if ((v = atomic_load(&w->v)) != old)
			return v;
		if (t0 != 0 && dt > POOL_SPIN_NS)
			sched_yield();
		else
			pool_pause();
		if ((i & 63) != 63 && (t0 == 0 || dt <= POOL_SPIN_NS))
			continue;
		if (t0 == 0) {
			t0 = pool_now_ns();
			dt = 0;
		} else if ((dt = pool_now_ns() - t0) > POOL_YIELD_NS) {
			break;
		}
	}
	atomic_fetch_add(&w->sleepers, 1);
	while ((v = atomic_load(&w->v)) == old)
		pool_futex_wait(&w->v, old);
	atomic_fetch_sub(&w->sleepers, 1);
	return v;
}

/* Change w->v by one, waking whoever sleeps on it. */
static void
pool_bump(struct pool_word *w)
{
	atomic_fetch_add(&w->v, 1);
	if (atomic_load(&w->sleepers) != 0)
		pool_futex_wake(&w->v);
}

static void *
pool_worker_main(void *a)
{
	struct pool_worker	*w = a;
	struct kern_pool	*p = w->pool;
	uint32_t		 seen = 0;

	for (;;) {
		seen = pool_wait_change(&p->gen, seen);
		if (atomic_load(&p->stop))
			break;
		p->fn(p->arg, w->ith, p->n);
		pool_bump(&p->done);
	}
	return NULL;
}

/*
 * The first CPU of each physical core in the affinity mask, in order:
 * cores are told apart by their thread_siblings_list.
 */
static uint32_t
pool_core_cpus(int *cpus, uint32_t max)
{
	cpu_set_t	 set;
	char		 path[128], sib[256], seen[64][256];
	uint32_t	 n = 0, n_seen = 0, i;
	int		 c;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 0;
	for (c = 0; c < CPU_SETSIZE && c < POOL_MAX_CPUS && n < max; c++) {
		FILE	*f;
		bool	 dup = false;

		if (!CPU_ISSET(c, &set))
			continue;
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/"
		    "topology/thread_siblings_list", c);
		sib[0] = '\0';
		if ((f = fopen(path, "re")) != NULL) {
			if (fgets(sib, sizeof(sib), f) == NULL)
				sib[0] = '\0';
			fclose(f);
		}
		for (i = 0; sib[0] != '\0' && i < n_seen; i++)
			if (strcmp(seen[i], sib) == 0)
				dup = true;
		if (dup)
			continue;
		if (sib[0] != '\0' && n_seen < 64)
			memcpy(seen[n_seen++], sib, sizeof(sib));
		cpus[n++] = c;
	}
	return n;
}

uint32_t
kern_pool_cores(void)
{
	int	 cpus[KERN_POOL_MAX_THREADS];
	uint32_t n = pool_core_cpus(cpus, KERN_POOL_MAX_THREADS);

	return n > 0 ? n : 1;
}

/* Pinning disabled by HEARTH_PIN=0. */
static bool
pool_pin_off(void)
{
	const char	*pin = getenv("HEARTH_PIN");

	return pin != NULL && strcmp(pin, "0") == 0;
}

/* Pin thread t to cpu; 0 or -errno. */
static int
pool_pin(pthread_t t, int cpu)
{
	cpu_set_t	 set;

	if (cpu < 0 || cpu >= CPU_SETSIZE)
		return -EINVAL;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return -pthread_setaffinity_np(t, sizeof(set), &set);
}

/*
 * Start a pool of n_threads (>= 1); cpus[i] is thread i's CPU or -1,
 * cpus NULL: none pinned.
 */
static int
pool_start(uint32_t n_threads, const int *cpus, struct kern_pool **out)
{
	struct kern_pool	*p;
	cpu_set_t		 allowed;
	bool			 have_allowed;
	uint32_t		 i;
	int			 r;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -ENOMEM;
	p->n = n_threads;
	p->id = atomic_fetch_add(&pool_next_id, 1);
	p->cpu0 = -1;
	if ((p->offset = calloc(n_threads, sizeof(*p->offset))) == NULL) {
		free(p);
		return -ENOMEM;
	}
	if ((r = pthread_mutex_init(&p->run_lock, NULL)) != 0) {
		free(p->offset);
		free(p);
		return -r;
	}
	if (n_threads > 1 &&
	    (p->workers = calloc(n_threads - 1, sizeof(*p->workers))) == NULL) {
		pthread_mutex_destroy(&p->run_lock);
		free(p->offset);
		free(p);
		return -ENOMEM;
	}
	/* the process's CPUs (the main thread's mask, not the caller's) */
	have_allowed = sched_getaffinity(getpid(), sizeof(allowed),
	    &allowed) == 0;
#define POOL_CPU_OK(c) ((c) >= 0 && (c) < CPU_SETSIZE && \
	(!have_allowed || CPU_ISSET((c), &allowed)))
	if (cpus != NULL && POOL_CPU_OK(cpus[0]))
		p->cpu0 = cpus[0];
	for (i = 1; i < n_threads; i++) {
		struct pool_worker	*w = &p->workers[i - 1];

		w->pool = p;
		w->ith = i;
		w->cpu = -1;
		if ((r = pthread_create(&w->tid, NULL, pool_worker_main,
		    w)) != 0) {
			kern_pool_free(p);
			return -r;
		}
		p->started++;
		/* best effort: an unpinned worker still works */
		if (cpus != NULL && POOL_CPU_OK(cpus[i]) &&
		    pool_pin(w->tid, cpus[i]) == 0)
			w->cpu = cpus[i];
	}
#undef POOL_CPU_OK
	*out = p;
	return 0;
}

int
kern_pool_new(uint32_t n_threads, struct kern_pool **out)
{
	int			 cpus[KERN_POOL_MAX_THREADS];
	uint32_t		 n_cores;

	if (n_threads > KERN_POOL_MAX_THREADS)
		return -EINVAL;
	n_cores = pool_core_cpus(cpus, KERN_POOL_MAX_THREADS);
	if (n_threads == 0)
		n_threads = n_cores > 0 ? n_cores : 1;
	/* worker i on core i when they fit; the caller is not pinned */
	if (n_threads > n_cores || pool_pin_off())
		return pool_start(n_threads, NULL, out);
	cpus[0] = -1;
	return pool_start(n_threads, cpus, out);
}

int
kern_pool_new_cpus(uint32_t n_threads, const int *cpus,
    struct kern_pool **out)
{
	if (cpus == NULL)
		return kern_pool_new(n_threads, out);
	if (n_threads == 0 || n_threads > KERN_POOL_MAX_THREADS)
		return -EINVAL;
	return pool_start(n_threads, pool_pin_off() ? NULL : cpus, out);
}

void
kern_pool_free(struct kern_pool *p)
{
	uint32_t	 i;

	if (p == NULL)
		return;
	atomic_store(&p->stop, true);
	pool_bump(&p->gen);
	for (i = 0; i < p->started; i++)
		pthread_join(p->workers[i].tid, NULL);
	pthread_mutex_destroy(&p->run_lock);
	free(p->workers);
	free(p->offset);
	free(p);
}

uint32_t
kern_pool_threads(const struct kern_pool *p)
{
	return p != NULL ? p->n : 1;
}

int
kern_pool_cpu(const struct kern_pool *p, uint32_t ith)
{
	if (p == NULL || ith >= p->n)
		return -1;
	return ith == 0 ? p->cpu0 : p->workers[ith - 1].cpu;
}

void
kern_pool_set_offset(struct kern_pool *p, uint32_t ith, ptrdiff_t off)
{
	if (p != NULL && ith < p->n)
		p->offset[ith] = off;
}

ptrdiff_t
kern_pool_offset(const struct kern_pool *p, uint32_t ith)
{
	if (p == NULL || ith >= p->n)
		return 0;
	return p->offset[ith];
}

void
kern_pool_run(struct kern_pool *p, kern_pool_fn fn, void *arg)
{
	uint32_t	 d0, v;

	/* the caller runs thread 0: pin it once (a failure is not retried:
	 * cpu0 was checked against the process's CPUs) */
	if (p != NULL && p->cpu0 >= 0 && pool_tls_pinned != p->id) {
		(void)pool_pin(pthread_self(), p->cpu0);
		pool_tls_pinned = p->id;
	}
	if (p == NULL || p->n == 1) {
		fn(arg, 0, 1);
		return;
	}
	pthread_mutex_lock(&p->run_lock);
	p->fn = fn;
	p->arg = arg;
	d0 = atomic_load(&p->done.v);
	pool_bump(&p->gen);
	fn(arg, 0, p->n);
	/* done.v moves by one per worker: wait for all n - 1 */
	while ((v = atomic_load(&p->done.v)) - d0 < p->n - 1)
		pool_wait_change(&p->done, v);
	pthread_mutex_unlock(&p->run_lock);
}

void
kern_pool_barrier(struct kern_pool *p)
{
	uint32_t	 phase;

	if (p == NULL || p->n == 1)
		return;
	phase = atomic_load(&p->phase.v);
	if (atomic_fetch_add(&p->arrived, 1) + 1 == p->n) {
		atomic_store(&p->arrived, 0);
		pool_bump(&p->phase);
	} else {
		pool_wait_change(&p->phase, phase);
	}
}
