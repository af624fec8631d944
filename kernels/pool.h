/*
 * pool.h - a persistent pool of worker threads for the kernels, pinned
 * to cores, with a cheap barrier.
 *
 * kern_pool_run() hands one function to every thread of the pool (the
 * caller is thread 0, the workers 1 .. n-1) and returns when all have
 * finished it. Between runs the workers spin for a short while (the
 * next step of a forward pass usually follows at once), then sleep on a
 * futex. Inside a run, kern_pool_barrier() waits for all n threads the
 * same way. Nothing is allocated or created per run.
 */
#ifndef HEARTH_POOL_H
#define HEARTH_POOL_H

#include <stddef.h>
#include <stdint.h>

struct kern_pool;

/* Work for thread ith of nth (0 <= ith < nth). */
typedef void (*kern_pool_fn)(void *arg, uint32_t ith, uint32_t nth);

#define KERN_POOL_MAX_THREADS	256

/*
 * The physical cores this process may run on (its affinity mask, one
 * hyperthread per core), at least 1: the default thread count.
 */
uint32_t kern_pool_cores(void);

/*
 * Start n_threads - 1 workers (n_threads in 1 .. KERN_POOL_MAX_THREADS;
 * 0 means kern_pool_cores()). When n_threads fits the cores, worker i
 * is pinned to core i (the caller keeps core 0 to itself), unless the
 * environment has HEARTH_PIN=0. Returns 0, -EINVAL or -errno.
 */
int      kern_pool_new(uint32_t n_threads, struct kern_pool **out);
/*
 * kern_pool_new with a CPU for each thread: cpus[i] (n_threads entries;
 * -1: not pinned) for thread i; thread 0, the caller, is pinned to
 * cpus[0] the first time it runs the pool. cpus NULL is kern_pool_new;
 * with cpus, n_threads is 1 .. KERN_POOL_MAX_THREADS. A CPU this
 * process may not run on (e.g. from a simulated topology) or that the
 * kernel refuses is not pinned: kern_pool_cpu() tells what was done. HEARTH_PIN=0 in
 * the environment pins nothing. Returns 0, -EINVAL or -errno.
 */
int      kern_pool_new_cpus(uint32_t n_threads, const int *cpus,
	    struct kern_pool **out);
/* Stop and join the workers. Accepts NULL. Not during a run. */
void     kern_pool_free(struct kern_pool *p);
/* Threads including the caller; 1 for NULL. */
uint32_t kern_pool_threads(const struct kern_pool *p);
/*
 * The CPU thread ith is pinned to (for thread 0: will be, at its first
 * run), or -1 when it is not pinned. -1 for NULL or ith out of range.
 */
int      kern_pool_cpu(const struct kern_pool *p, uint32_t ith);

/*
 * A byte offset per thread, for data replicated per NUMA node: a thread
 * adds its offset to pointers into the first copy to read its own node's
 * copy. 0 unless set. Set it between runs only; read it inside fn.
 * kern_pool_offset is 0 for NULL or ith out of range.
 */
void     kern_pool_set_offset(struct kern_pool *p, uint32_t ith,
	    ptrdiff_t off);
ptrdiff_t kern_pool_offset(const struct kern_pool *p, uint32_t ith);

/*
 * fn(arg, i, n) on every thread i of the pool, the caller's being 0;
 * returns when every call has. p == NULL runs fn(arg, 0, 1). Runs from
 * several threads at once take turns. fn must not call kern_pool_run.
 */
void     kern_pool_run(struct kern_pool *p, kern_pool_fn fn, void *arg);

/* Inside fn: wait until all n threads of the run have reached it. */
void     kern_pool_barrier(struct kern_pool *p);

#endif /* HEARTH_POOL_H */
