/*
 * memory.h - anonymous memory for resident weights and KV caches, and
 * large sequential file reads into it.
 *
 * mem_region_new() maps private anonymous memory (never the model file,
 * so a file changed on disk cannot fault the daemon) trying, in order:
 * explicit 1 GiB hugepages (when asked), explicit 2 MiB hugepages while
 * the pool has room, transparent hugepages (madvise, then verified in
 * /proc/self/smaps), small pages. One region may mix them: its hugetlb
 * part comes first, the rest follows at a 2 MiB boundary, all virtually
 * contiguous. Every page is faulted in before it returns (with
 * MADV_POPULATE_WRITE, which fails instead of raising SIGBUS when a
 * hugepage is missing), so the memory is zeroed, resident and what it
 * got is known: struct mem_usage gives the bytes of each kind.
 *
 * The system calls go through a struct mem_ops so the Check suite can
 * simulate an empty hugepage pool, THP disabled, failed populates, a low
 * RLIMIT_MEMLOCK without root. NULL ops means the real system.
 */
#ifndef HEARTH_MEMORY_H
#define HEARTH_MEMORY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

#define MEM_PAGE_2M	((size_t)2 << 20)	/* explicit/transparent hugepage */
#define MEM_PAGE_1G	((size_t)1 << 30)	/* gigantic page */
#define MEM_MAX_NODES	64			/* NUMA nodes a binding names */
#define MEM_READ_CHUNK	((size_t)8 << 20)	/* default read size */
#define MEM_DIRECT_ALIGN 4096			/* O_DIRECT offset/address/size */
#define MEM_DIRECT_MIN	((uint64_t)1 << 30)	/* AUTO: files at least this big */

/* The best kind of page to try; lower kinds follow unless strict. */
enum mem_pages {
	MEM_PAGES_HUGETLB = 0,	/* explicit hugepages, then THP, then small */
	MEM_PAGES_THP,		/* transparent hugepages, then small */
	MEM_PAGES_SMALL,	/* small pages only */
};

/* NUMA memory policy of a region (applied with mbind before faulting). */
enum mem_numa {
	MEM_NUMA_NONE = 0,	/* the process's default (first touch) */
	MEM_NUMA_PREFERRED,	/* the lowest node of nodes, others when full */
	MEM_NUMA_BIND,		/* only nodes (strict: may fail to fault) */
	MEM_NUMA_INTERLEAVE,	/* pages round-robin over nodes */
};

struct mem_params {
	enum mem_pages	 pages;		/* best kind to try (HUGETLB) */
	bool		 strict;	/* fail with -ENOMEM/-ENOTSUP rather
					 * than use a kind below pages: HUGETLB
					 * means every byte in explicit pages,
					 * THP means madvise must be accepted */
	bool		 huge_1g;	/* try 1 GiB pages before 2 MiB ones
					 * (whole 1 GiB pages only) */
	enum mem_numa	 numa;		/* NUMA policy (NONE) */
	uint64_t	 nodes;		/* kernel node numbers as bits: node n
					 * is bit n (n < MEM_MAX_NODES) */
};

/* Bytes of a region (or a model's regions) by kind of page. */
struct mem_usage {
	uint64_t	 huge_1g;	/* explicit 1 GiB hugepages */
	uint64_t	 huge_2m;	/* explicit 2 MiB hugepages */
	uint64_t	 thp;		/* transparent hugepages (AnonHugePages) */
	uint64_t	 small;		/* base pages */
};

/*
 * The system calls the allocator makes, replaceable for tests. Each has
 * the system call's contract (-1 or MAP_FAILED with errno set), except:
 * hugetlb_free returns the number of free pages of page_size a new
 * mapping may take (given the binding's nodes, 0 for none), or -errno
 * when there is no such pool; thp_bytes stores in *out the bytes of
 * [addr, addr + len) backed by transparent hugepages and returns 0 or
 * -errno; memlock_limit stores RLIMIT_MEMLOCK's soft limit (UINT64_MAX
 * for unlimited) and returns 0 or -errno.
 */
struct mem_ops {
	void	*(*mmap)(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off);
	int	 (*munmap)(void *addr, size_t len);
	int	 (*madvise)(void *addr, size_t len, int advice);
	long	 (*mbind)(void *addr, unsigned long len, int mode,
		    const unsigned long *nodemask, unsigned long maxnode,
		    unsigned int flags);
	int	 (*mlock)(const void *addr, size_t len);
	int64_t	 (*hugetlb_free)(size_t page_size, enum mem_numa numa,
		    uint64_t nodes);
	int	 (*thp_bytes)(const void *addr, size_t len, uint64_t *out);
	int	 (*memlock_limit)(uint64_t *out);
};

/* The real system (what NULL ops means). */
extern const struct mem_ops mem_ops_system;

struct mem_region {
	void		*addr;		/* size usable bytes, zeroed, aligned to
					 * 2 MiB (1 GiB when it has 1G pages) */
	size_t		 size;		/* bytes asked for */
	size_t		 mapped;	/* bytes mapped from addr: size rounded
					 * up to the pages used; the sum of
					 * usage */
	struct mem_usage usage;		/* what the kernel gave */
	int		 numa_status;	/* 0, or -errno when the NUMA policy
					 * could not be applied (the memory is
					 * still usable, just not placed) */
	bool		 locked;	/* mem_region_lock() succeeded */
	/* private */
	void		*resv;		/* whole reservation incl. guard pages */
	size_t		 resv_size;
	size_t		 lock_off;	/* first byte not in explicit hugepages
					 * (those cannot be swapped anyway) */
	const struct mem_ops *ops;	/* never NULL */
};

/* pages HUGETLB, not strict, no 1 GiB pages, no NUMA policy. */
void mem_params_default(struct mem_params *p);

/*
 * Map size bytes (> 0) as p says (NULL: defaults) with ops (NULL: the
 * system). -EINVAL for a zero size or bad params, -ENOMEM when nothing
 * can be mapped (or strict and the kind asked for is unavailable; the
 * message then says how to reserve hugepages), -ENOTSUP for strict THP
 * refused. A NUMA policy the kernel rejects does not fail: see
 * numa_status.
 */
int  mem_region_new(size_t size, const struct mem_params *p,
	    const struct mem_ops *ops, struct mem_region **out,
	    struct eng_err *err);
/* Unmap and free; NULL ok. */
void mem_region_free(struct mem_region *r);
/*
 * A new region mapped with p (typically MEM_NUMA_PREFERRED on another
 * node, for NUMA replication) holding a copy of src's size bytes.
 */
int  mem_region_copy(const struct mem_region *src, const struct mem_params *p,
	    const struct mem_ops *ops, struct mem_region **out,
	    struct eng_err *err);

/*
 * mlock the region's memory outside explicit hugepages. 0 (r->locked),
 * or -ENOMEM/-EPERM/-EAGAIN with a message for a warning that gives the
 * limit and how to raise it (LimitMEMLOCK=infinity, ulimit -l). The
 * region stays usable either way.
 */
int  mem_region_lock(struct mem_region *r, struct eng_err *warn);

/* dst += src, saturating. */
void mem_usage_add(struct mem_usage *dst, const struct mem_usage *src);
uint64_t mem_usage_total(const struct mem_usage *u);	/* saturating */
/* "4.0 GiB in 2M pages + 12 KiB small" (kinds with bytes only; "0 B"). */
void mem_usage_format(const struct mem_usage *u, char *buf, size_t size);

/* "512 B", "17.0 KiB", "4.2 GiB" (one decimal from KiB up). */
void mem_fmt_bytes(uint64_t n, char *buf, size_t size);

/* "hugetlb", "thp", "small" <-> enum; -EINVAL for another word. */
int  mem_pages_parse(const char *s, enum mem_pages *out);
const char *mem_pages_name(enum mem_pages p);

/* --- reading files into memory -------------------------------------------- */

/* Whether to read with O_DIRECT (bypassing the page cache). */
enum mem_direct {
	MEM_DIRECT_AUTO = 0,	/* for files of MEM_DIRECT_MIN or more that
				 * are mostly not in the page cache */
	MEM_DIRECT_OFF,		/* buffered preads */
	MEM_DIRECT_ON,		/* O_DIRECT whenever the file system allows */
};

/* Bytes read so far of total; nonzero cancels (-ECANCELED). */
typedef int (*mem_progress_fn)(uint64_t done, uint64_t total, void *arg);

struct mem_load_opts {
	enum mem_direct	 direct;	/* (AUTO) */
	size_t		 chunk;		/* bytes per read, 0: MEM_READ_CHUNK;
					 * rounded to MEM_DIRECT_ALIGN */
	bool		 drop_cache;	/* buffered reads: tell the kernel the
					 * pages read are not needed again
					 * (POSIX_FADV_DONTNEED) */
	uint64_t	 total;		/* bytes the whole load reads (for
					 * progress); 0: the file size */
	mem_progress_fn	 progress;	/* after every chunk; NULL ok */
	void		*arg;		/* for progress */
	const atomic_bool *cancel;	/* set from any thread: the next chunk
					 * fails with -ECANCELED; NULL ok */
};

struct mem_loader;

/*
 * A loader reading from fd (borrowed: it must stay open while the loader
 * lives; a regular file). For O_DIRECT the same file is reopened through
 * /proc/self/fd (checked to be the same inode); when that or a direct
 * read fails, reading continues buffered. o may be NULL (defaults).
 */
int  mem_loader_new(int fd, const struct mem_load_opts *o,
	    struct mem_loader **out, struct eng_err *err);
void mem_loader_free(struct mem_loader *l);	/* NULL ok */
/*
 * Read len bytes at file offset off into dst, in chunks, calling
 * progress after each. -EIO when the file ends early (it changed on
 * disk), -ECANCELED when cancelled, -errno of pread.
 */
int  mem_loader_read(struct mem_loader *l, uint64_t off, void *dst,
	    size_t len, struct eng_err *err);
uint64_t mem_loader_done(const struct mem_loader *l);	/* bytes read */
bool mem_loader_direct(const struct mem_loader *l);	/* O_DIRECT in use */

/*
 * Read len bytes of path from off (len 0: to the end) into a new region
 * mapped with p and ops (NULL: defaults). The region's size is len.
 */
int  mem_read_file(const char *path, uint64_t off, uint64_t len,
	    const struct mem_params *p, const struct mem_ops *ops,
	    const struct mem_load_opts *o, struct mem_region **out,
	    struct eng_err *err);

#endif /* HEARTH_MEMORY_H */
