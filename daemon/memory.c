/*
 * memory.c - hugepage-first anonymous regions, NUMA binding, mlock, and
 * chunked (optionally O_DIRECT) file reads into memory.
 *
 * A region is built inside one PROT_NONE reservation so its parts stay
 * contiguous: [1 GiB pages][2 MiB pages][THP or small pages], each part
 * mapped MAP_FIXED over the reservation, bound to its NUMA nodes, then
 * faulted in. A part whose mapping or populate fails is put back to
 * PROT_NONE and its bytes go to the next kind. One guard page of the
 * reservation is kept on each side so the region's mappings never merge
 * with a neighbour's, which keeps the smaps accounting exact.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memory.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT		26
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB		(21 << MAP_HUGE_SHIFT)
#endif
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB		(30 << MAP_HUGE_SHIFT)
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE	0x100000
#endif

#define MEM_MAX_SIZE	((size_t)1 << 56)	/* larger requests are refused */
#define MEM_ANON	(MAP_PRIVATE | MAP_ANONYMOUS)

/* --- the real system ------------------------------------------------------ */

static void *
sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

static int
sys_munmap(void *addr, size_t len)
{
	return munmap(addr, len);
}

static int
sys_madvise(void *addr, size_t len, int advice)
{
	return madvise(addr, len, advice);
}

static long
sys_mbind(void *addr, unsigned long len, int mode,
    const unsigned long *nodemask, unsigned long maxnode, unsigned int flags)
{
	return mbind(addr, len, mode, nodemask, maxnode, flags);
}

static int
sys_mlock(const void *addr, size_t len)
{
	return mlock(addr, len);
}

/* Read one unsigned decimal from a sysfs file: 0 or -errno. */
static int
mem_read_u64(const char *path, uint64_t *out)
{
	char buf[64], *end;
	unsigned long long v;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EINVAL;
	buf[n] = '\0';
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (end == buf || errno != 0 || (*end != '\n' && *end != '\0'))
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * Free pages of the pool for page_size: the global free count less the
 * pages reserved by mappings not faulted yet; for a binding to some
 * nodes, also at most what those nodes have free (for interleave, the
 * emptiest node's share times the node count).
 */
static int64_t
sys_hugetlb_free(size_t page_size, enum mem_numa numa, uint64_t nodes)
{
	char path[160];
	uint64_t fr, resv, avail, sum = 0, min = UINT64_MAX, v;
	unsigned kb = (unsigned)(page_size >> 10), n, count = 0;
	int r;

	snprintf(path, sizeof(path),
	    "/sys/kernel/mm/hugepages/hugepages-%ukB/free_hugepages", kb);
	if ((r = mem_read_u64(path, &fr)) < 0)
		return r;
	snprintf(path, sizeof(path),
	    "/sys/kernel/mm/hugepages/hugepages-%ukB/resv_hugepages", kb);
	if ((r = mem_read_u64(path, &resv)) < 0)
		return r;
	avail = fr > resv ? fr - resv : 0;
	if (numa == MEM_NUMA_BIND || numa == MEM_NUMA_INTERLEAVE) {
		for (n = 0; n < MEM_MAX_NODES; n++) {
			if (!(nodes >> n & 1))
				continue;
			snprintf(path, sizeof(path), "/sys/devices/system/node/"
			    "node%u/hugepages/hugepages-%ukB/free_hugepages",
			    n, kb);
			if (mem_read_u64(path, &v) < 0)
				v = 0;
			sum += v;
			if (v < min)
				min = v;
			count++;
		}
		if (numa == MEM_NUMA_INTERLEAVE && count > 0)
			sum = min * count;
		if (sum < avail)
			avail = sum;
	}
	return avail > INT64_MAX ? INT64_MAX : (int64_t)avail;
}

/*
 * AnonHugePages of the mappings overlapping [addr, addr + len), from
 * /proc/self/smaps. A mapping only partly inside counts at most its
 * overlap (the region's guard pages make that not happen).
 */
static int
sys_thp_bytes(const void *addr, size_t len, uint64_t *out)
{
	uintptr_t lo = (uintptr_t)addr, hi = lo + len, s = 0, e = 0;
	unsigned long long kb;
	uint64_t total = 0, b, ov;
	char *line = NULL, *end;
	size_t cap = 0;
	bool in = false;
	FILE *f;

	if ((f = fopen("/proc/self/smaps", "re")) == NULL)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		unsigned long long a = strtoull(line, &end, 16);

		if (end != line && *end == '-') {
			s = (uintptr_t)a;
			e = (uintptr_t)strtoull(end + 1, NULL, 16);
			in = s < hi && e > lo;
			continue;
		}
		if (!in || strncmp(line, "AnonHugePages:", 14) != 0)
			continue;
		kb = strtoull(line + 14, NULL, 10);
		b = (uint64_t)kb << 10;
		ov = (e < hi ? e : hi) - (s > lo ? s : lo);
		total += b < ov ? b : ov;
	}
	free(line);
	if (ferror(f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	*out = total;
	return 0;
}

static int
sys_memlock_limit(uint64_t *out)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		return -errno;
	*out = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
	return 0;
}

const struct mem_ops mem_ops_system = {
	.mmap = sys_mmap,
	.munmap = sys_munmap,
	.madvise = sys_madvise,
	.mbind = sys_mbind,
	.mlock = sys_mlock,
	.hugetlb_free = sys_hugetlb_free,
	.thp_bytes = sys_thp_bytes,
	.memlock_limit = sys_memlock_limit,
};

/* --- formatting ----------------------------------------------------------- */

void
mem_fmt_bytes(uint64_t n, char *buf, size_t size)
{
	static const char *unit[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	uint64_t scale = 1024;
	unsigned u = 0, tenths;

	if (size == 0)
		return;
	if (n < 1024) {
		snprintf(buf, size, "%" PRIu64 " B", n);
		return;
	}
	while (u < 5 && n / scale >= 1024) {
		scale *= 1024;
		u++;
	}
	/* tenths of the unit, rounded to nearest, without overflow */
	tenths = (unsigned)(((n % scale) * 10 + scale / 2) / scale);
	if (tenths == 10 && n / scale + 1 == 1024 && u < 5)
		snprintf(buf, size, "1.0 %s", unit[u + 1]);
	else if (tenths == 10)
		snprintf(buf, size, "%" PRIu64 ".0 %s", n / scale + 1, unit[u]);
	else
		snprintf(buf, size, "%" PRIu64 ".%u %s", n / scale, tenths,
		    unit[u]);
}

static uint64_t
mem_sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void
mem_usage_add(struct mem_usage *dst, const struct mem_usage *src)
{
	dst->huge_1g = mem_sat_add(dst->huge_1g, src->huge_1g);
	dst->huge_2m = mem_sat_add(dst->huge_2m, src->huge_2m);
	dst->thp = mem_sat_add(dst->thp, src->thp);
	dst->small = mem_sat_add(dst->small, src->small);
}

uint64_t
mem_usage_total(const struct mem_usage *u)
{
	return mem_sat_add(mem_sat_add(u->huge_1g, u->huge_2m),
	    mem_sat_add(u->thp, u->small));
}

void
mem_usage_format(const struct mem_usage *u, char *buf, size_t size)
{
	const uint64_t v[4] = { u->huge_1g, u->huge_2m, u->thp, u->small };
	static const char *what[4] = { "in 1G pages", "in 2M pages", "THP",
	    "small" };
	char num[32];
	size_t len = 0;
	int i, w;

	if (size == 0)
		return;
	buf[0] = '\0';
	for (i = 0; i < 4; i++) {
		if (v[i] == 0)
			continue;
		mem_fmt_bytes(v[i], num, sizeof(num));
		w = snprintf(buf + len, size - len, "%s%s %s",
		    len ? " + " : "", num, what[i]);
		if (w < 0 || (size_t)w >= size - len)
			return;
		len += (size_t)w;
	}
	if (len == 0)
		snprintf(buf, size, "0 B");
}

int
mem_pages_parse(const char *s, enum mem_pages *out)
{
	if (s == NULL)
		return -EINVAL;
	if (strcmp(s, "hugetlb") == 0)
		*out = MEM_PAGES_HUGETLB;
	else if (strcmp(s, "thp") == 0)
		*out = MEM_PAGES_THP;
	else if (strcmp(s, "small") == 0)
		*out = MEM_PAGES_SMALL;
	else
		return -EINVAL;
	return 0;
}

const char *
mem_pages_name(enum mem_pages p)
{
	switch (p) {
	case MEM_PAGES_HUGETLB:
		return "hugetlb";
	case MEM_PAGES_THP:
		return "thp";
	case MEM_PAGES_SMALL:
		return "small";
	}
	return "?";
}

/* --- regions -------------------------------------------------------------- */

void
mem_params_default(struct mem_params *p)
{
	memset(p, 0, sizeof(*p));
	p->pages = MEM_PAGES_HUGETLB;
	p->numa = MEM_NUMA_NONE;
}

static size_t
mem_round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

/* Apply p's NUMA policy to [addr, addr + len): 0 or -errno. */
static int
mem_bind(const struct mem_ops *ops, void *addr, size_t len,
    const struct mem_params *p)
{
	unsigned long mask[1];
	int mode;

	switch (p->numa) {
	case MEM_NUMA_NONE:
		return 0;
	case MEM_NUMA_PREFERRED:
		mode = MPOL_PREFERRED;
		/* one node: the lowest named */
		mask[0] = (unsigned long)(p->nodes & (~p->nodes + 1));
		break;
	case MEM_NUMA_BIND:
		mode = MPOL_BIND;
		mask[0] = (unsigned long)p->nodes;
		break;
	case MEM_NUMA_INTERLEAVE:
		mode = MPOL_INTERLEAVE;
		mask[0] = (unsigned long)p->nodes;
		break;
	default:
		return -EINVAL;
	}
	/* the kernel reads maxnode - 1 bits */
	if (ops->mbind(addr, len, mode, mask, MEM_MAX_NODES + 1, 0) != 0)
		return -errno;
	return 0;
}

/*
 * Fault in [addr, addr + len) writable. Kernels before 5.14 lack
 * MADV_POPULATE_WRITE: then touch every page, except hugetlb memory
 * bound to nodes, where a missing page would raise SIGBUS (-ENOTSUP).
 */
static int
mem_populate(const struct mem_ops *ops, void *addr, size_t len, size_t step,
    bool risky)
{
	volatile char *c = addr;
	size_t i;

	if (ops->madvise(addr, len, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	if (risky)
		return -ENOTSUP;
	for (i = 0; i < len; i += step)
		c[i] = 0;
	return 0;
}

/* Put [addr, addr + len) back to an inaccessible reservation. */
static void
mem_unreserve_part(const struct mem_ops *ops, void *addr, size_t len)
{
	ops->mmap(addr, len, PROT_NONE, MEM_ANON | MAP_NORESERVE | MAP_FIXED,
	    -1, 0);
}

/*
 * Map n explicit hugepages of page bytes at addr (inside the
 * reservation), bind and fault them in. 0, or -errno with addr back to
 * PROT_NONE.
 */
static int
mem_map_huge(struct mem_region *r, const struct mem_params *p, char *addr,
    size_t n, size_t page)
{
	const struct mem_ops *ops = r->ops;
	int flags = MEM_ANON | MAP_FIXED | MAP_HUGETLB |
	    (page == MEM_PAGE_1G ? MAP_HUGE_1GB : MAP_HUGE_2MB);
	size_t len = n * page;
	void *m;
	int e;

	m = ops->mmap(addr, len, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (m == MAP_FAILED) {
		e = -errno;
		/*
		 * A failed MAP_FIXED normally leaves the old mapping; should
		 * a kernel have unmapped it, take the hole back without
		 * replacing anything another thread may have put there.
		 */
		ops->mmap(addr, len, PROT_NONE, MEM_ANON | MAP_NORESERVE |
		    MAP_FIXED_NOREPLACE, -1, 0);
		return e;
	}
	if (m != addr) {
		mem_unreserve_part(ops, addr, len);
		return -EFAULT;
	}
	if ((e = mem_bind(ops, addr, len, p)) < 0 && r->numa_status == 0)
		r->numa_status = e;
	e = mem_populate(ops, addr, len, page, p->numa != MEM_NUMA_NONE);
	if (e < 0) {
		mem_unreserve_part(ops, addr, len);
		return e;
	}
	return 0;
}

/*
 * Map the rest [addr, addr + len) with ordinary anonymous memory,
 * advising THP when p allows it, bind, fault in and measure.
 */
static int
mem_map_rest(struct mem_region *r, const struct mem_params *p, char *addr,
    size_t len, struct eng_err *err)
{
	const struct mem_ops *ops = r->ops;
	size_t pg = sysconf(_SC_PAGESIZE) > 0 ? (size_t)sysconf(_SC_PAGESIZE) :
	    4096;
	bool thp = false;
	uint64_t got = 0;
	char num[32];
	void *m;
	int e, b;

	m = ops->mmap(addr, len, PROT_READ | PROT_WRITE, MEM_ANON | MAP_FIXED,
	    -1, 0);
	if (m == MAP_FAILED || m != addr) {
		e = m == MAP_FAILED ? -errno : -EFAULT;
		if (m != MAP_FAILED)
			mem_unreserve_part(ops, addr, len);
		mem_fmt_bytes(len, num, sizeof(num));
		return err_set(err, e, "cannot map %s: %s", num, strerror(-e));
	}
	if (p->pages <= MEM_PAGES_THP) {
		if (ops->madvise(addr, len, MADV_HUGEPAGE) == 0)
			thp = true;
		else if (p->strict && p->pages == MEM_PAGES_THP) {
			e = -errno;
			mem_unreserve_part(ops, addr, len);
			return err_set(err, -ENOTSUP, "transparent hugepages "
			    "refused (madvise: %s); see /sys/kernel/mm/"
			    "transparent_hugepage/enabled", strerror(-e));
		}
	} else {
		/* small asked for: keep THP "always" mode off this range */
		(void)ops->madvise(addr, len, MADV_NOHUGEPAGE);
	}
	b = mem_bind(ops, addr, len, p);
	if (b < 0 && r->numa_status == 0)
		r->numa_status = b;
	e = mem_populate(ops, addr, len, pg, false);
	if (e < 0 && p->numa != MEM_NUMA_NONE && b == 0) {
		/* the nodes are full: drop the policy, keep the memory */
		unsigned long none = 0;

		if (ops->mbind(addr, len, MPOL_DEFAULT, &none,
		    MEM_MAX_NODES + 1, 0) == 0) {
			r->numa_status = e;
			e = mem_populate(ops, addr, len, pg, false);
		}
	}
	if (e < 0) {
		mem_unreserve_part(ops, addr, len);
		mem_fmt_bytes(len, num, sizeof(num));
		return err_set(err, e, "cannot fault in %s: %s", num,
		    strerror(-e));
	}
	if (thp && ops->thp_bytes(addr, len, &got) < 0)
		got = 0;
	if (got > len)
		got = len;
	r->usage.thp += got;
	r->usage.small += len - got;
	return 0;
}

/* Pages of page bytes the pool offers now (0 when none or no pool). */
static uint64_t
mem_pool(const struct mem_ops *ops, size_t page, const struct mem_params *p)
{
	int64_t a = ops->hugetlb_free(page, p->numa, p->nodes);

	return a > 0 ? (uint64_t)a : 0;
}

int
mem_region_new(size_t size, const struct mem_params *p,
    const struct mem_ops *ops, struct mem_region **out, struct eng_err *err)
{
	struct mem_params def;
	struct mem_region *r;
	size_t pg, align, resv_size, off = 0, need, whole, tail, n, head_trim;
	uint64_t avail1 = 0, avail2 = 0;
	uintptr_t base;
	char num[32];
	void *resv;
	int e;

	if (p == NULL) {
		mem_params_default(&def);
		p = &def;
	}
	if (ops == NULL)
		ops = &mem_ops_system;
	if (size == 0)
		return err_set(err, -EINVAL, "cannot map 0 bytes");
	if ((unsigned)p->pages > MEM_PAGES_SMALL ||
	    (unsigned)p->numa > MEM_NUMA_INTERLEAVE ||
	    (p->numa != MEM_NUMA_NONE && p->nodes == 0))
		return err_set(err, -EINVAL, "bad memory parameters");
	if (size > MEM_MAX_SIZE) {
		mem_fmt_bytes(size, num, sizeof(num));
		return err_set(err, -ENOMEM, "cannot map %s", num);
	}
	pg = sysconf(_SC_PAGESIZE) > 0 ? (size_t)sysconf(_SC_PAGESIZE) : 4096;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	r->ops = ops;
	r->size = size;

	/* Reserve room for every layout: 1 GiB alignment only if used. */
	if (p->pages == MEM_PAGES_HUGETLB && p->huge_1g && size >= MEM_PAGE_1G)
		avail1 = mem_pool(ops, MEM_PAGE_1G, p);
	align = avail1 > 0 ? MEM_PAGE_1G : MEM_PAGE_2M;
	resv_size = mem_round_up(size, MEM_PAGE_2M) + align + 2 * pg;
	resv = ops->mmap(NULL, resv_size, PROT_NONE, MEM_ANON | MAP_NORESERVE,
	    -1, 0);
	if (resv == MAP_FAILED) {
		e = -errno;
		free(r);
		mem_fmt_bytes(size, num, sizeof(num));
		return err_set(err, e, "cannot reserve %s of address space: %s",
		    num, strerror(-e));
	}
	r->resv = resv;
	r->resv_size = resv_size;
	base = ((uintptr_t)resv + pg + align - 1) / align * align;
	r->addr = (void *)base;

	if (p->pages == MEM_PAGES_HUGETLB) {
		/* 1 GiB pages: whole pages only */
		if (avail1 > 0) {
			n = size / MEM_PAGE_1G;
			if (avail1 < n)
				n = (size_t)avail1;
			if (mem_map_huge(r, p, (char *)base, n,
			    MEM_PAGE_1G) == 0) {
				off = n * MEM_PAGE_1G;
				r->usage.huge_1g = off;
			}
		}
		/*
		 * 2 MiB pages while the pool has room; a tail of half a page
		 * or more (any tail when strict) takes one more page.
		 */
		need = size - off;
		whole = need / MEM_PAGE_2M;
		tail = need % MEM_PAGE_2M;
		avail2 = mem_pool(ops, MEM_PAGE_2M, p);
		n = avail2 < whole ? (size_t)avail2 : whole;
		if (tail != 0 && n == whole && avail2 > whole &&
		    (p->strict || tail >= MEM_PAGE_2M / 2))
			n++;
		if (n > 0 && mem_map_huge(r, p, (char *)base + off, n,
		    MEM_PAGE_2M) == 0) {
			off += n * MEM_PAGE_2M;
			r->usage.huge_2m = n * MEM_PAGE_2M;
		}
		if (p->strict && off < size) {
			mem_fmt_bytes(size, num, sizeof(num));
			e = err_set(err, -ENOMEM, "%s in explicit hugepages: "
			    "the pool has %" PRIu64 " free 2 MiB pages, %zu "
			    "needed (reserve them: echo N > /proc/sys/vm/"
			    "nr_hugepages, or hugepages=N at boot)", num,
			    avail2, mem_round_up(size, MEM_PAGE_2M) /
			    MEM_PAGE_2M);
			goto fail;
		}
		r->lock_off = off;
	}
	if (off < size) {
		n = mem_round_up(size - off, pg);
		if ((e = mem_map_rest(r, p, (char *)base + off, n, err)) < 0)
			goto fail;
		off += n;
	}
	r->mapped = off;

	/* Keep one guard page each side; give back the rest. */
	head_trim = base - pg - (uintptr_t)resv;
	if (head_trim > 0)
		ops->munmap(resv, head_trim);
	n = (uintptr_t)resv + resv_size - (base + off + pg);
	if (n > 0)
		ops->munmap((char *)base + off + pg, n);
	r->resv = (char *)base - pg;
	r->resv_size = off + 2 * pg;
	*out = r;
	return 0;

fail:
	ops->munmap(r->resv, r->resv_size);
	free(r);
	return e;
}

void
mem_region_free(struct mem_region *r)
{
	if (r == NULL)
		return;
	r->ops->munmap(r->resv, r->resv_size);
	free(r);
}

int
mem_region_copy(const struct mem_region *src, const struct mem_params *p,
    const struct mem_ops *ops, struct mem_region **out, struct eng_err *err)
{
	struct mem_region *r;
	int e;

	if ((e = mem_region_new(src->size, p, ops, &r, err)) < 0)
		return e;
	memcpy(r->addr, src->addr, src->size);
	*out = r;
	return 0;
}

int
mem_region_lock(struct mem_region *r, struct eng_err *warn)
{
	char num[32], lim[32];
	uint64_t limit;
	size_t len;
	int e;

	if (r->locked)
		return 0;
	if (r->lock_off >= r->mapped) {
		/* all in explicit hugepages: never swapped */
		r->locked = true;
		return 0;
	}
	len = r->mapped - r->lock_off;
	if (r->ops->mlock((char *)r->addr + r->lock_off, len) == 0) {
		r->locked = true;
		return 0;
	}
	e = -errno;
	mem_fmt_bytes(len, num, sizeof(num));
	if (r->ops->memlock_limit(&limit) < 0)
		snprintf(lim, sizeof(lim), "unknown");
	else if (limit == UINT64_MAX)
		snprintf(lim, sizeof(lim), "unlimited");
	else
		mem_fmt_bytes(limit, lim, sizeof(lim));
	if (e == -ENOMEM || e == -EPERM)
		return err_set(warn, e, "cannot lock %s in memory: "
		    "RLIMIT_MEMLOCK is %s; raise it with LimitMEMLOCK=infinity "
		    "in the service unit or ulimit -l unlimited (the memory "
		    "works, but may be swapped out)", num, lim);
	return err_set(warn, e, "cannot lock %s in memory: %s "
	    "(RLIMIT_MEMLOCK is %s); the memory works, but may be swapped "
	    "out", num, strerror(-e), lim);
}

/* --- reading -------------------------------------------------------------- */

struct mem_loader {
	int		 fd;		/* borrowed, buffered reads */
	int		 dfd;		/* O_DIRECT reopen, or -1 */
	uint64_t	 file_size;	/* at mem_loader_new */
	size_t		 chunk;		/* bytes per read, multiple of ALIGN */
	bool		 drop_cache;	/* fadvise DONTNEED after buffered reads */
	uint64_t	 total;		/* for progress */
	uint64_t	 done;		/* bytes read so far */
	mem_progress_fn	 progress;	/* after each chunk, or NULL */
	void		*arg;		/* for progress */
	const atomic_bool *cancel;	/* checked before each chunk, or NULL */
	void		*bounce;	/* [chunk], ALIGN-aligned, for direct
					 * reads into misaligned memory */
};

/*
 * pread all n bytes unless the file ends: bytes read or -errno. With
 * O_DIRECT (direct), a read that stops off the alignment is the end of
 * the file (another read there would be refused as misaligned).
 */
static ssize_t
mem_pread_full(int fd, void *buf, size_t n, uint64_t off, bool direct)
{
	size_t done = 0;
	ssize_t r;

	while (done < n) {
		r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
		if (direct && done % MEM_DIRECT_ALIGN != 0)
			break;
	}
	return (ssize_t)done;
}

/*
 * Fraction (in 1/1024) of fd's pages in the page cache, via mincore on
 * a read-only mapping that is never touched (so it cannot fault).
 * -errno when it cannot tell.
 */
static int
mem_cached_share(int fd, uint64_t size)
{
	const uint64_t win = (uint64_t)1 << 30;
	size_t pg = sysconf(_SC_PAGESIZE) > 0 ? (size_t)sysconf(_SC_PAGESIZE) :
	    4096;
	uint64_t off, in = 0, pages = 0;
	unsigned char *vec;
	size_t len, np, i;
	void *m;

	if (size == 0)
		return 0;
	if ((vec = malloc(win / pg)) == NULL)
		return -ENOMEM;
	for (off = 0; off < size; off += win) {
		len = (size_t)(size - off < win ? size - off : win);
		m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
		if (m == MAP_FAILED) {
			free(vec);
			return -errno;
		}
		np = (len + pg - 1) / pg;
		if (mincore(m, len, vec) != 0) {
			munmap(m, len);
			free(vec);
			return -errno;
		}
		munmap(m, len);
		for (i = 0; i < np; i++)
			in += vec[i] & 1;
		pages += np;
	}
	free(vec);
	return (int)(in * 1024 / pages);
}

/* Reopen fd with O_DIRECT: the new descriptor or -1. */
static int
mem_open_direct(int fd, const struct stat *st)
{
	struct stat st2;
	char path[64];
	int dfd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	dfd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	if (fstat(dfd, &st2) != 0 || st2.st_dev != st->st_dev ||
	    st2.st_ino != st->st_ino) {
		close(dfd);
		return -1;
	}
	return dfd;
}

int
mem_loader_new(int fd, const struct mem_load_opts *o,
    struct mem_loader **out, struct eng_err *err)
{
	struct mem_load_opts def;
	struct mem_loader *l;
	struct stat st;
	bool direct;
	int share;

	if (o == NULL) {
		memset(&def, 0, sizeof(def));
		o = &def;
	}
	if (fstat(fd, &st) != 0)
		return err_set(err, -errno, "fstat: %s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(err, -EINVAL, "not a regular file");
	if ((unsigned)o->direct > MEM_DIRECT_ON ||
	    o->chunk > ((size_t)1 << 30))
		return err_set(err, -EINVAL, "bad load options");
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	l->fd = fd;
	l->dfd = -1;
	l->file_size = (uint64_t)st.st_size;
	l->chunk = o->chunk ? mem_round_up(o->chunk, MEM_DIRECT_ALIGN) :
	    MEM_READ_CHUNK;
	l->drop_cache = o->drop_cache;
	l->total = o->total ? o->total : l->file_size;
	l->progress = o->progress;
	l->arg = o->arg;
	l->cancel = o->cancel;

	direct = o->direct == MEM_DIRECT_ON;
	if (o->direct == MEM_DIRECT_AUTO && l->file_size >= MEM_DIRECT_MIN) {
		/* direct only pays when the file is not cached already */
		share = mem_cached_share(fd, l->file_size);
		direct = share >= 0 && share < 512;
	}
	if (direct)
		l->dfd = mem_open_direct(fd, &st);
	if (l->dfd < 0)
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	*out = l;
	return 0;
}

void
mem_loader_free(struct mem_loader *l)
{
	if (l == NULL)
		return;
	if (l->dfd >= 0)
		close(l->dfd);
	free(l->bounce);
	free(l);
}

uint64_t
mem_loader_done(const struct mem_loader *l)
{
	return l->done;
}

bool
mem_loader_direct(const struct mem_loader *l)
{
	return l->dfd >= 0;
}

/* A direct read failed with EINVAL: continue buffered. */
static void
mem_loader_undirect(struct mem_loader *l)
{
	close(l->dfd);
	l->dfd = -1;
	(void)posix_fadvise(l->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
}

/*
 * One step of a read: at most a chunk at off into dst. Bytes read (> 0)
 * or -errno; 0 means the file ended.
 */
static ssize_t
mem_loader_step(struct mem_loader *l, uint64_t off, char *dst, size_t len)
{
	const size_t A = MEM_DIRECT_ALIGN;
	size_t n, skip, rd;
	ssize_t got;
	uint64_t aoff;

	if (l->dfd >= 0 && (off % A) == ((uintptr_t)dst % A)) {
		/* dst mirrors the file's alignment: straight in */
		n = (size_t)((A - off % A) % A);
		if (n == 0 && len >= A) {
			n = len / A * A;
			if (n > l->chunk)
				n = l->chunk;
			got = mem_pread_full(l->dfd, dst, n, off, true);
			if (got == -EINVAL) {
				mem_loader_undirect(l);
				return mem_loader_step(l, off, dst, len);
			}
			return got;
		}
		/* the unaligned head or the short tail: buffered */
		if (n == 0 || n > len)
			n = len;
		return mem_pread_full(l->fd, dst, n, off, false);
	}
	if (l->dfd >= 0) {
		/* through the aligned bounce buffer */
		if (l->bounce == NULL &&
		    posix_memalign(&l->bounce, A, l->chunk) != 0) {
			l->bounce = NULL;
			return -ENOMEM;
		}
		aoff = off / A * A;
		skip = (size_t)(off - aoff);
		n = l->chunk - skip;
		if (n > len)
			n = len;
		rd = mem_round_up(skip + n, A);
		got = mem_pread_full(l->dfd, l->bounce, rd, aoff, true);
		if (got == -EINVAL) {
			mem_loader_undirect(l);
			return mem_loader_step(l, off, dst, len);
		}
		if (got < 0)
			return got;
		if ((size_t)got <= skip)
			return 0;
		if ((size_t)got - skip < n)
			n = (size_t)got - skip;
		memcpy(dst, (char *)l->bounce + skip, n);
		return (ssize_t)n;
	}
	n = len < l->chunk ? len : l->chunk;
	got = mem_pread_full(l->fd, dst, n, off, false);
	if (got > 0 && l->drop_cache)
		(void)posix_fadvise(l->fd, (off_t)off, (off_t)got,
		    POSIX_FADV_DONTNEED);
	return got;
}

int
mem_loader_read(struct mem_loader *l, uint64_t off, void *dst, size_t len,
    struct eng_err *err)
{
	char *d = dst;
	ssize_t got;

	if (len > UINT64_MAX - off)
		return err_set(err, -EINVAL, "read past 2^64 bytes");
	while (len > 0) {
		if (l->cancel != NULL && atomic_load(l->cancel))
			return err_set(err, -ECANCELED, "load cancelled");
		got = mem_loader_step(l, off, d, len);
		if (got < 0)
			return err_set(err, (int)got, "read at byte %" PRIu64
			    ": %s", off, strerror((int)-got));
		if (got == 0)
			return err_set(err, -EIO, "file ends before byte %"
			    PRIu64 " (changed on disk?)", off + len);
		off += (uint64_t)got;
		d += got;
		len -= (size_t)got;
		l->done += (uint64_t)got;
		if (l->progress != NULL &&
		    l->progress(l->done, l->total, l->arg) != 0)
			return err_set(err, -ECANCELED, "load cancelled");
	}
	return 0;
}

int
mem_read_file(const char *path, uint64_t off, uint64_t len,
    const struct mem_params *p, const struct mem_ops *ops,
    const struct mem_load_opts *o, struct mem_region **out,
    struct eng_err *err)
{
	struct mem_load_opts lo;
	struct mem_loader *l = NULL;
	struct mem_region *r = NULL;
	struct stat st;
	int fd, e;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0) {
		e = err_set(err, -errno, "%s: %s", path, strerror(errno));
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		e = err_set(err, -EINVAL, "%s: not a regular file", path);
		goto done;
	}
	if (off > (uint64_t)st.st_size ||
	    (len == 0 && off == (uint64_t)st.st_size) ||
	    len > (uint64_t)st.st_size - off) {
		e = err_set(err, -EINVAL, "%s: %" PRIu64 " bytes at %" PRIu64
		    " are past its end (%" PRIu64 " bytes)", path, len, off,
		    (uint64_t)st.st_size);
		goto done;
	}
	if (len == 0)
		len = (uint64_t)st.st_size - off;
	if (len > SIZE_MAX) {
		e = err_set(err, -ENOMEM, "%s: too large", path);
		goto done;
	}
	if (o == NULL)
		memset(&lo, 0, sizeof(lo));
	else
		lo = *o;
	if (lo.total == 0)
		lo.total = len;
	if ((e = mem_region_new((size_t)len, p, ops, &r, err)) < 0)
		goto done;
	if ((e = mem_loader_new(fd, &lo, &l, err)) < 0 ||
	    (e = mem_loader_read(l, off, r->addr, (size_t)len, err)) < 0) {
		err_prefix(err, e, "%s", path);
		goto done;
	}
	*out = r;
	r = NULL;
	e = 0;
done:
	mem_loader_free(l);
	mem_region_free(r);
	close(fd);
	return e;
}
