/*
 * check_memory.c - tests of daemon/memory.c: the hugetlb -> THP -> small
 * fallbacks through simulated system calls (an empty or exhausted pool,
 * THP refused or not granted, failed populates, NUMA policies, a low
 * RLIMIT_MEMLOCK), then what this machine really gives (hugepages
 * reserved for a moment when run as root), and the chunked, optionally
 * O_DIRECT, file reads with progress and cancellation.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <numa.h>
#include <numaif.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gguf.h"
#include "memory.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

#define MiB	((size_t)1 << 20)
#define KiB	((size_t)1 << 10)

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT	26
#endif

/* --- simulated system calls ----------------------------------------------- */

struct fake_range {
	uintptr_t	 lo, hi;	/* a "hugetlb" mapping */
};

static struct {
	int64_t		 pool_2m;	/* hugetlb_free answers */
	int64_t		 pool_1g;
	int		 huge_mmap_errno;	/* MAP_HUGETLB mmaps fail */
	int		 huge_1g_errno;		/* 1 GiB ones fail */
	int		 rest_mmap_errno;	/* plain RW MAP_FIXED mmaps fail */
	int		 resv_mmap_errno;	/* the PROT_NONE reservation fails */
	int		 thp_errno;		/* MADV_HUGEPAGE fails */
	int		 huge_populate_errno;	/* populate of hugetlb fails */
	bool		 populate_einval;	/* MADV_POPULATE_WRITE unknown */
	bool		 populate_noop;		/* do not really fault in */
	int64_t		 thp_report;		/* -1: all THP, else bytes */
	int		 mbind_errno;
	int		 mlock_errno;
	uint64_t	 memlock;
	/* records */
	int		 n_huge_maps;		/* MAP_HUGETLB mmaps tried */
	int		 huge_shift[8];		/* their MAP_HUGE_* sizes */
	int		 n_populate;
	int		 n_nohuge;		/* MADV_NOHUGEPAGE calls */
	int		 n_mbind;
	int		 mbind_mode[8];
	unsigned long	 mbind_mask[8];
	unsigned long	 mbind_len[8];
	enum mem_numa	 pool_numa;		/* last hugetlb_free query */
	uint64_t	 pool_nodes;
	int		 n_mlock;
	size_t		 mlock_len;
	struct fake_range huge[8];
	int		 n_huge;
} F;

static void
fake_reset(void)
{
	memset(&F, 0, sizeof(F));
	F.thp_report = -1;
	F.memlock = UINT64_MAX;
}

static bool
fake_is_huge(void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;

	for (int i = 0; i < F.n_huge; i++)
		if (a < F.huge[i].hi && a + len > F.huge[i].lo)
			return true;
	return false;
}

static void *
fake_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	size_t page;

	if (flags & MAP_HUGETLB) {
		int shift = (flags >> MAP_HUGE_SHIFT) & 0x3f;

		if (F.n_huge_maps < 8)
			F.huge_shift[F.n_huge_maps] = shift;
		F.n_huge_maps++;
		page = (size_t)1 << shift;
		ck_assert(shift == 21 || shift == 30);
		ck_assert_uint_eq((uintptr_t)addr % page, 0);
		ck_assert_uint_eq(len % page, 0);
		ck_assert(flags & MAP_FIXED);
		if (F.huge_mmap_errno || (shift == 30 && F.huge_1g_errno)) {
			errno = shift == 30 && F.huge_1g_errno ?
			    F.huge_1g_errno : F.huge_mmap_errno;
			return MAP_FAILED;
		}
		flags &= ~(MAP_HUGETLB | (int)(0x3fu << MAP_HUGE_SHIFT));
		if (F.n_huge < 8) {
			F.huge[F.n_huge].lo = (uintptr_t)addr;
			F.huge[F.n_huge].hi = (uintptr_t)addr + len;
			F.n_huge++;
		}
		return mmap(addr, len, prot, flags, fd, off);
	}
	if (prot == PROT_NONE && !(flags & MAP_FIXED) && F.resv_mmap_errno) {
		errno = F.resv_mmap_errno;
		return MAP_FAILED;
	}
	if (prot != PROT_NONE && (flags & MAP_FIXED) && F.rest_mmap_errno) {
		errno = F.rest_mmap_errno;
		return MAP_FAILED;
	}
	/* a range put back to PROT_NONE is no longer hugetlb */
	if (prot == PROT_NONE && (flags & MAP_FIXED))
		for (int i = 0; i < F.n_huge; i++)
			if (F.huge[i].lo == (uintptr_t)addr)
				F.huge[i].lo = F.huge[i].hi = 0;
	return mmap(addr, len, prot, flags, fd, off);
}

static int
fake_munmap(void *addr, size_t len)
{
	return munmap(addr, len);
}

static int
fake_madvise(void *addr, size_t len, int advice)
{
	if (advice == MADV_HUGEPAGE && F.thp_errno) {
		errno = F.thp_errno;
		return -1;
	}
	if (advice == MADV_NOHUGEPAGE)
		F.n_nohuge++;
	if (advice == MADV_POPULATE_WRITE) {
		F.n_populate++;
		if (F.populate_einval) {
			errno = EINVAL;
			return -1;
		}
		if (F.huge_populate_errno && fake_is_huge(addr, len)) {
			errno = F.huge_populate_errno;
			return -1;
		}
		if (F.populate_noop)
			return 0;
	}
	return madvise(addr, len, advice);
}

static long
fake_mbind(void *addr, unsigned long len, int mode,
    const unsigned long *mask, unsigned long maxnode, unsigned int flags)
{
	(void)addr; (void)flags;
	ck_assert_uint_ge(maxnode, 65);
	if (F.n_mbind < 8) {
		F.mbind_mode[F.n_mbind] = mode;
		F.mbind_mask[F.n_mbind] = mask[0];
		F.mbind_len[F.n_mbind] = len;
	}
	F.n_mbind++;
	if (F.mbind_errno) {
		errno = F.mbind_errno;
		return -1;
	}
	return 0;
}

static int
fake_mlock(const void *addr, size_t len)
{
	(void)addr;
	F.n_mlock++;
	F.mlock_len = len;
	if (F.mlock_errno) {
		errno = F.mlock_errno;
		return -1;
	}
	return 0;
}

static int64_t
fake_hugetlb_free(size_t page, enum mem_numa numa, uint64_t nodes)
{
	F.pool_numa = numa;
	F.pool_nodes = nodes;
	return page == MEM_PAGE_1G ? F.pool_1g : F.pool_2m;
}

static int
fake_thp_bytes(const void *addr, size_t len, uint64_t *out)
{
	(void)addr;
	*out = F.thp_report < 0 ? len : (uint64_t)F.thp_report;
	return 0;
}

static int
fake_memlock_limit(uint64_t *out)
{
	*out = F.memlock;
	return 0;
}

static const struct mem_ops fake_ops = {
	.mmap = fake_mmap,
	.munmap = fake_munmap,
	.madvise = fake_madvise,
	.mbind = fake_mbind,
	.mlock = fake_mlock,
	.hugetlb_free = fake_hugetlb_free,
	.thp_bytes = fake_thp_bytes,
	.memlock_limit = fake_memlock_limit,
};

/* --- helpers -------------------------------------------------------------- */

static void
setup(void)
{
	fake_reset();
	tu_tmpdir();
}

static void
teardown(void)
{
	tu_tmpdir_free();
}

static size_t
page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* The region is consistent, zeroed, and every byte writable. */
static void
check_region(struct mem_region *r, size_t size, bool full)
{
	unsigned char *p = r->addr, acc = 0;
	size_t i, step = full ? 1 : page_size();

	ck_assert_ptr_nonnull(r->addr);
	ck_assert_uint_eq(r->size, size);
	ck_assert_uint_ge(r->mapped, size);
	ck_assert_uint_eq(mem_usage_total(&r->usage), r->mapped);
	ck_assert_uint_eq((uintptr_t)r->addr % MEM_PAGE_2M, 0);
	for (i = 0; i < size; i += step)
		acc |= p[i];
	ck_assert_uint_eq(acc, 0);
	ck_assert_uint_eq(p[size - 1], 0);
	memset(p, 0xa5, size);
	ck_assert_uint_eq(p[0], 0xa5);
	ck_assert_uint_eq(p[size - 1], 0xa5);
}

static struct mem_region *
new_region(size_t size, const struct mem_params *p)
{
	struct mem_region *r = NULL;
	struct eng_err err = { "" };
	int e;

	e = mem_region_new(size, p, &fake_ops, &r, &err);
	ck_assert_msg(e == 0, "mem_region_new: %d %s", e, err.msg);
	ck_assert_ptr_nonnull(r);
	return r;
}

static struct mem_params
params(enum mem_pages pages)
{
	struct mem_params p;

	mem_params_default(&p);
	p.pages = pages;
	return p;
}

/* --- core: the fallbacks -------------------------------------------------- */

START_TEST(test_defaults)
{
	struct mem_params p;

	memset(&p, 0xff, sizeof(p));
	mem_params_default(&p);
	ck_assert_int_eq(p.pages, MEM_PAGES_HUGETLB);
	ck_assert(!p.strict);
	ck_assert(!p.huge_1g);
	ck_assert_int_eq(p.numa, MEM_NUMA_NONE);
	ck_assert_uint_eq(p.nodes, 0);
}
END_TEST

START_TEST(test_small_pages)
{
	struct mem_params p = params(MEM_PAGES_SMALL);
	size_t size = 3 * MiB + 5;
	struct mem_region *r;

	F.pool_2m = 100;
	r = new_region(size, &p);
	check_region(r, size, true);
	ck_assert_uint_eq(r->mapped, (size + page_size() - 1) / page_size() *
	    page_size());
	ck_assert_uint_eq(r->usage.small, r->mapped);
	ck_assert_uint_eq(r->usage.thp + r->usage.huge_2m + r->usage.huge_1g,
	    0);
	ck_assert_int_eq(F.n_huge_maps, 0);
	ck_assert_int_eq(F.n_nohuge, 1);	/* THP kept off */
	ck_assert_int_ge(F.n_populate, 1);
	mem_region_free(r);
}
END_TEST

START_TEST(test_hugetlb_full)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r;

	F.pool_2m = 100;
	r = new_region(8 * MiB, &p);
	check_region(r, 8 * MiB, true);
	ck_assert_uint_eq(r->usage.huge_2m, 8 * MiB);
	ck_assert_uint_eq(r->mapped, 8 * MiB);
	ck_assert_int_eq(F.n_huge_maps, 1);
	ck_assert_int_eq(F.huge_shift[0], 21);
	mem_region_free(r);
}
END_TEST

START_TEST(test_hugetlb_pool_partial)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	size_t size = 8 * MiB + 100 * KiB;
	struct mem_region *r;

	F.pool_2m = 3;		/* room for 6 MiB: the rest is THP */
	r = new_region(size, &p);
	check_region(r, size, true);
	ck_assert_uint_eq(r->usage.huge_2m, 6 * MiB);
	ck_assert_uint_eq(r->usage.thp, 2 * MiB + 100 * KiB);
	ck_assert_uint_eq(r->usage.small, 0);
	ck_assert_uint_eq(r->lock_off, 6 * MiB);
	mem_region_free(r);
}
END_TEST

START_TEST(test_hugetlb_pool_exhausted)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r;

	/* the pool said 10 pages, but another process took them */
	F.pool_2m = 10;
	F.huge_mmap_errno = ENOMEM;
	r = new_region(10 * MiB, &p);
	check_region(r, 10 * MiB, true);
	ck_assert_int_eq(F.n_huge_maps, 1);
	ck_assert_uint_eq(r->usage.huge_2m, 0);
	ck_assert_uint_eq(r->usage.thp, 10 * MiB);
	ck_assert_uint_eq(r->lock_off, 0);
	mem_region_free(r);
}
END_TEST

START_TEST(test_hugetlb_pool_empty)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r;

	F.pool_2m = 0;
	r = new_region(4 * MiB, &p);
	check_region(r, 4 * MiB, true);
	ck_assert_int_eq(F.n_huge_maps, 0);	/* not even tried */
	ck_assert_uint_eq(r->usage.thp, 4 * MiB);
	mem_region_free(r);

	F.pool_2m = -ENOENT;	/* no hugetlb support at all */
	r = new_region(4 * MiB, &p);
	check_region(r, 4 * MiB, false);
	ck_assert_uint_eq(r->usage.thp, 4 * MiB);
	mem_region_free(r);
}
END_TEST

START_TEST(test_thp_disabled)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r;

	F.thp_errno = EINVAL;	/* THP "never", or an old kernel */
	r = new_region(6 * MiB, &p);
	check_region(r, 6 * MiB, true);
	ck_assert_uint_eq(r->usage.small, 6 * MiB);
	ck_assert_uint_eq(r->usage.thp, 0);
	mem_region_free(r);
}
END_TEST

START_TEST(test_thp_not_granted)
{
	struct mem_params p = params(MEM_PAGES_THP);
	struct mem_region *r;

	/* madvise accepted, but smaps shows no AnonHugePages */
	F.thp_report = 0;
	r = new_region(6 * MiB, &p);
	check_region(r, 6 * MiB, true);
	ck_assert_uint_eq(r->usage.small, 6 * MiB);
	ck_assert_uint_eq(r->usage.thp, 0);
	mem_region_free(r);

	/* only some of it */
	F.thp_report = 4 * MiB;
	r = new_region(10 * MiB, &p);
	check_region(r, 10 * MiB, false);
	ck_assert_uint_eq(r->usage.thp, 4 * MiB);
	ck_assert_uint_eq(r->usage.small, 6 * MiB);
	mem_region_free(r);

	/* a report larger than the range is capped */
	F.thp_report = 100 * MiB;
	r = new_region(2 * MiB, &p);
	ck_assert_uint_eq(r->usage.thp, 2 * MiB);
	ck_assert_uint_eq(mem_usage_total(&r->usage), r->mapped);
	mem_region_free(r);
}
END_TEST

START_TEST(test_thp_skips_hugetlb)
{
	struct mem_params p = params(MEM_PAGES_THP);
	struct mem_region *r;

	F.pool_2m = 100;
	r = new_region(4 * MiB, &p);
	ck_assert_int_eq(F.n_huge_maps, 0);
	ck_assert_uint_eq(r->usage.thp, 4 * MiB);
	mem_region_free(r);
}
END_TEST

START_TEST(test_huge_populate_fails)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r;

	/* a node without free hugepages: populate says EFAULT, not SIGBUS */
	F.pool_2m = 100;
	F.huge_populate_errno = EFAULT;
	r = new_region(8 * MiB, &p);
	check_region(r, 8 * MiB, true);
	ck_assert_int_eq(F.n_huge_maps, 1);
	ck_assert_uint_eq(r->usage.huge_2m, 0);
	ck_assert_uint_eq(r->usage.thp, 8 * MiB);
	mem_region_free(r);
}
END_TEST

START_TEST(test_populate_unsupported)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r;

	/* before Linux 5.14: pages are touched instead */
	F.pool_2m = 100;
	F.populate_einval = true;
	r = new_region(4 * MiB + 8 * KiB, &p);
	check_region(r, 4 * MiB + 8 * KiB, true);
	ck_assert_uint_eq(r->usage.huge_2m, 4 * MiB);
	ck_assert_uint_eq(r->usage.thp, 8 * KiB);
	mem_region_free(r);

	/* ... except bound hugetlb memory, where touching could SIGBUS */
	fake_reset();
	F.pool_2m = 100;
	F.populate_einval = true;
	p.numa = MEM_NUMA_BIND;
	p.nodes = 1;
	r = new_region(4 * MiB, &p);
	check_region(r, 4 * MiB, true);
	ck_assert_uint_eq(r->usage.huge_2m, 0);
	ck_assert_uint_eq(r->usage.thp, 4 * MiB);
	mem_region_free(r);
}
END_TEST

START_TEST(test_tail_rounding)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r;

	F.pool_2m = 100;
	F.thp_report = 0;
	/* a tail of 1 MiB (half a page) takes one more hugepage */
	r = new_region(5 * MiB, &p);
	check_region(r, 5 * MiB, true);
	ck_assert_uint_eq(r->usage.huge_2m, 6 * MiB);
	ck_assert_uint_eq(r->mapped, 6 * MiB);
	mem_region_free(r);
	/* a smaller tail stays in small pages */
	r = new_region(4 * MiB + 512 * KiB, &p);
	check_region(r, 4 * MiB + 512 * KiB, true);
	ck_assert_uint_eq(r->usage.huge_2m, 4 * MiB);
	ck_assert_uint_eq(r->usage.small, 512 * KiB);
	mem_region_free(r);
	/* not when the pool has no page for it */
	F.pool_2m = 2;
	r = new_region(5 * MiB, &p);
	ck_assert_uint_eq(r->usage.huge_2m, 4 * MiB);
	ck_assert_uint_eq(r->usage.small, 1 * MiB);
	mem_region_free(r);
	/* a region under 1 MiB never takes a hugepage */
	F.pool_2m = 100;
	r = new_region(100, &p);
	check_region(r, 100, true);
	ck_assert_uint_eq(r->usage.huge_2m, 0);
	ck_assert_uint_eq(r->usage.small, page_size());
	mem_region_free(r);
}
END_TEST

START_TEST(test_gigantic_pages)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	size_t size = MEM_PAGE_1G + 4 * MiB + 10 * KiB;
	struct mem_region *r;
	unsigned char *c;

	p.huge_1g = true;
	F.pool_1g = 2;
	F.pool_2m = 100;
	F.thp_report = 0;
	F.populate_noop = true;	/* do not fault in a real GiB */
	r = new_region(size, &p);
	ck_assert_uint_eq((uintptr_t)r->addr % MEM_PAGE_1G, 0);
	ck_assert_uint_eq(r->usage.huge_1g, MEM_PAGE_1G);
	ck_assert_uint_eq(r->usage.huge_2m, 4 * MiB);
	ck_assert_uint_eq(r->usage.small, 12 * KiB);
	ck_assert_uint_eq(mem_usage_total(&r->usage), r->mapped);
	ck_assert_int_eq(F.n_huge_maps, 2);
	ck_assert_int_eq(F.huge_shift[0], 30);
	ck_assert_int_eq(F.huge_shift[1], 21);
	ck_assert_uint_eq(r->lock_off, MEM_PAGE_1G + 4 * MiB);
	c = r->addr;
	ck_assert_uint_eq(c[0], 0);
	c[0] = 1;
	c[MEM_PAGE_1G] = 2;
	c[size - 1] = 3;
	mem_region_free(r);

	/* the 1 GiB mapping refused: all of it goes to 2 MiB pages */
	fake_reset();
	F.pool_1g = 1;
	F.pool_2m = 1000;
	F.populate_noop = true;
	F.huge_1g_errno = ENOMEM;
	r = new_region(MEM_PAGE_1G + 2 * MiB, &p);
	ck_assert_uint_eq((uintptr_t)r->addr % MEM_PAGE_1G, 0);
	ck_assert_uint_eq(r->usage.huge_1g, 0);
	ck_assert_uint_eq(r->usage.huge_2m, MEM_PAGE_1G + 2 * MiB);
	ck_assert_int_eq(F.n_huge_maps, 2);
	((unsigned char *)r->addr)[r->size - 1] = 1;
	mem_region_free(r);

	/* fewer 1 GiB pages than whole GiBs: the rest in 2 MiB pages */
	fake_reset();
	F.pool_1g = 1;
	F.pool_2m = 1000;
	F.populate_noop = true;
	r = new_region(2 * MEM_PAGE_1G, &p);
	ck_assert_uint_eq(r->usage.huge_1g, MEM_PAGE_1G);
	ck_assert_uint_eq(r->usage.huge_2m, MEM_PAGE_1G);
	mem_region_free(r);

	/* under 1 GiB: no 1 GiB page is tried */
	fake_reset();
	F.pool_1g = 4;
	F.pool_2m = 1000;
	r = new_region(4 * MiB, &p);
	ck_assert_uint_eq(r->usage.huge_1g, 0);
	ck_assert_int_eq(F.n_huge_maps, 1);
	ck_assert_int_eq(F.huge_shift[0], 21);
	mem_region_free(r);

	/* no 1 GiB pool: only 2 MiB alignment is needed */
	fake_reset();
	F.pool_1g = 0;
	F.pool_2m = 1000;
	r = new_region(8 * MiB, &p);
	ck_assert_uint_eq(r->usage.huge_1g, 0);
	ck_assert_uint_eq(r->usage.huge_2m, 8 * MiB);
	mem_region_free(r);
}
END_TEST

START_TEST(test_gigantic_fallback)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r;

	/* the 1G populate fails: its bytes go to 2 MiB pages */
	p.huge_1g = true;
	F.pool_1g = 1;
	F.pool_2m = 1000;
	F.populate_noop = true;
	F.huge_populate_errno = ENOMEM;
	r = new_region(MEM_PAGE_1G + 2 * MiB, &p);
	/* every hugetlb populate fails in this simulation */
	ck_assert_uint_eq(r->usage.huge_1g, 0);
	ck_assert_uint_eq(r->usage.huge_2m, 0);
	ck_assert_uint_eq(r->usage.thp, MEM_PAGE_1G + 2 * MiB);
	ck_assert_int_eq(F.n_huge_maps, 2);
	((unsigned char *)r->addr)[r->size - 1] = 1;
	mem_region_free(r);
}
END_TEST

START_TEST(test_strict_hugetlb)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r = (struct mem_region *)&p;
	struct eng_err err = { "" };

	p.strict = true;
	F.pool_2m = 2;
	ck_assert_int_eq(mem_region_new(8 * MiB, &p, &fake_ops, &r, &err),
	    -ENOMEM);
	ck_assert_ptr_eq(r, (struct mem_region *)&p);	/* untouched */
	ck_assert_ptr_nonnull(strstr(err.msg, "nr_hugepages"));
	ck_assert_ptr_nonnull(strstr(err.msg, "4 needed"));
	ck_assert_ptr_nonnull(strstr(err.msg, "2 free"));

	/* strict rounds any tail up into one more page */
	F.pool_2m = 3;
	r = new_region(4 * MiB + 1, &p);
	ck_assert_uint_eq(r->usage.huge_2m, 6 * MiB);
	ck_assert_uint_eq(r->mapped, 6 * MiB);
	mem_region_free(r);

	/* the mapping itself failing is an error too */
	F.huge_mmap_errno = ENOMEM;
	r = NULL;
	ck_assert_int_eq(mem_region_new(4 * MiB, &p, &fake_ops, &r, &err),
	    -ENOMEM);
	ck_assert_ptr_null(r);
}
END_TEST

START_TEST(test_strict_thp)
{
	struct mem_params p = params(MEM_PAGES_THP);
	struct mem_region *r = NULL;
	struct eng_err err = { "" };

	p.strict = true;
	F.thp_errno = EINVAL;
	ck_assert_int_eq(mem_region_new(4 * MiB, &p, &fake_ops, &r, &err),
	    -ENOTSUP);
	ck_assert_ptr_null(r);
	ck_assert_ptr_nonnull(strstr(err.msg, "transparent_hugepage"));
	F.thp_errno = 0;
	r = new_region(4 * MiB, &p);
	ck_assert_uint_eq(r->usage.thp, 4 * MiB);
	mem_region_free(r);
}
END_TEST

START_TEST(test_numa_policies)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r;

	/* no policy: no mbind */
	F.pool_2m = 2;
	r = new_region(6 * MiB, &p);
	ck_assert_int_eq(F.n_mbind, 0);
	ck_assert_int_eq(r->numa_status, 0);
	mem_region_free(r);

	/* preferred: the lowest node named, on every part */
	fake_reset();
	F.pool_2m = 2;
	p.numa = MEM_NUMA_PREFERRED;
	p.nodes = 0x6;
	r = new_region(6 * MiB, &p);
	ck_assert_int_eq(F.n_mbind, 2);
	ck_assert_int_eq(F.mbind_mode[0], MPOL_PREFERRED);
	ck_assert_uint_eq(F.mbind_mask[0], 0x2);
	ck_assert_uint_eq(F.mbind_len[0], 4 * MiB);
	ck_assert_uint_eq(F.mbind_len[1], 2 * MiB);
	ck_assert_int_eq(F.pool_numa, MEM_NUMA_PREFERRED);
	ck_assert_uint_eq(F.pool_nodes, 0x6);
	ck_assert_int_eq(r->numa_status, 0);
	mem_region_free(r);

	fake_reset();
	p.numa = MEM_NUMA_INTERLEAVE;
	p.nodes = 0x3;
	r = new_region(4 * MiB, &p);
	ck_assert_int_eq(F.n_mbind, 1);
	ck_assert_int_eq(F.mbind_mode[0], MPOL_INTERLEAVE);
	ck_assert_uint_eq(F.mbind_mask[0], 0x3);
	mem_region_free(r);

	fake_reset();
	p.numa = MEM_NUMA_BIND;
	p.nodes = 0x8;
	r = new_region(4 * MiB, &p);
	ck_assert_int_eq(F.mbind_mode[0], MPOL_BIND);
	ck_assert_uint_eq(F.mbind_mask[0], 0x8);
	mem_region_free(r);

	/* a node the kernel does not know: reported, memory still fine */
	fake_reset();
	F.mbind_errno = EINVAL;
	p.numa = MEM_NUMA_PREFERRED;
	p.nodes = (uint64_t)1 << 40;
	r = new_region(4 * MiB, &p);
	check_region(r, 4 * MiB, true);
	ck_assert_int_eq(r->numa_status, -EINVAL);
	mem_region_free(r);
}
END_TEST

START_TEST(test_copy)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *a, *b = NULL;
	struct eng_err err = { "" };
	uint64_t state = 3;
	size_t i, size = 5 * MiB + 77;

	/* a replica on node 2: same bytes, its own binding and pages */
	F.pool_2m = 100;
	a = new_region(size, &p);
	for (i = 0; i < size; i++)
		((unsigned char *)a->addr)[i] = (unsigned char)tu_rand_u64(&state);
	fake_reset();
	p.numa = MEM_NUMA_PREFERRED;
	p.nodes = 0x4;
	ck_assert_int_eq(mem_region_copy(a, &p, &fake_ops, &b, &err), 0);
	ck_assert_ptr_ne(a->addr, b->addr);
	ck_assert_uint_eq(b->size, size);
	ck_assert_mem_eq(a->addr, b->addr, size);
	ck_assert_uint_eq(b->usage.huge_2m, 0);	/* the pool is empty now */
	ck_assert_uint_eq(F.mbind_mask[0], 0x4);
	mem_region_free(b);
	/* failure leaves out alone */
	b = NULL;
	F.resv_mmap_errno = ENOMEM;
	ck_assert_int_eq(mem_region_copy(a, &p, &fake_ops, &b, &err),
	    -ENOMEM);
	ck_assert_ptr_null(b);
	mem_region_free(a);
}
END_TEST

START_TEST(test_lock)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct eng_err warn = { "" };
	struct mem_region *r;

	/* only the part outside explicit hugepages is locked */
	F.pool_2m = 2;
	r = new_region(6 * MiB, &p);
	ck_assert_int_eq(mem_region_lock(r, &warn), 0);
	ck_assert(r->locked);
	ck_assert_int_eq(F.n_mlock, 1);
	ck_assert_uint_eq(F.mlock_len, 2 * MiB);
	ck_assert_int_eq(mem_region_lock(r, &warn), 0);	/* once */
	ck_assert_int_eq(F.n_mlock, 1);
	mem_region_free(r);

	/* all hugetlb: nothing to lock, never swapped anyway */
	fake_reset();
	F.pool_2m = 10;
	r = new_region(4 * MiB, &p);
	ck_assert_int_eq(mem_region_lock(r, &warn), 0);
	ck_assert(r->locked);
	ck_assert_int_eq(F.n_mlock, 0);
	mem_region_free(r);
}
END_TEST

START_TEST(test_lock_limit)
{
	struct mem_params p = params(MEM_PAGES_SMALL);
	struct eng_err warn = { "" };
	struct mem_region *r;

	F.mlock_errno = ENOMEM;
	F.memlock = 64 * KiB;
	r = new_region(4 * MiB, &p);
	ck_assert_int_eq(mem_region_lock(r, &warn), -ENOMEM);
	ck_assert(!r->locked);
	ck_assert_ptr_nonnull(strstr(warn.msg, "LimitMEMLOCK=infinity"));
	ck_assert_ptr_nonnull(strstr(warn.msg, "ulimit -l"));
	ck_assert_ptr_nonnull(strstr(warn.msg, "64.0 KiB"));
	ck_assert_ptr_nonnull(strstr(warn.msg, "4.0 MiB"));
	check_region(r, 4 * MiB, true);		/* still works */
	mem_region_free(r);

	fake_reset();
	F.mlock_errno = EPERM;
	F.memlock = 0;
	r = new_region(4 * MiB, &p);
	ck_assert_int_eq(mem_region_lock(r, &warn), -EPERM);
	ck_assert_ptr_nonnull(strstr(warn.msg, "RLIMIT_MEMLOCK is 0 B"));
	mem_region_free(r);

	fake_reset();
	F.mlock_errno = EAGAIN;
	r = new_region(4 * MiB, &p);
	ck_assert_int_eq(mem_region_lock(r, &warn), -EAGAIN);
	ck_assert_ptr_nonnull(strstr(warn.msg, "unlimited"));
	mem_region_free(r);
}
END_TEST

START_TEST(test_format)
{
	struct mem_usage u = { 0 }, v;
	char buf[128];
	enum mem_pages pg;

	mem_fmt_bytes(0, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0 B");
	mem_fmt_bytes(1023, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1023 B");
	mem_fmt_bytes(1024, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1.0 KiB");
	mem_fmt_bytes(1536, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1.5 KiB");
	mem_fmt_bytes(MiB - 1, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1.0 MiB");
	mem_fmt_bytes((uint64_t)(4.2 * (double)(1ull << 30)), buf,
	    sizeof(buf));
	ck_assert_str_eq(buf, "4.2 GiB");
	mem_fmt_bytes(8ull << 30, buf, sizeof(buf));
	ck_assert_str_eq(buf, "8.0 GiB");
	mem_fmt_bytes(UINT64_MAX, buf, sizeof(buf));
	ck_assert_str_eq(buf, "16.0 EiB");
	mem_fmt_bytes(12345, buf, 4);		/* truncated, terminated */
	ck_assert_uint_eq(strlen(buf), 3);

	mem_usage_format(&u, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0 B");
	u.huge_2m = 4ull << 30;
	u.small = 12 * KiB;
	mem_usage_format(&u, buf, sizeof(buf));
	ck_assert_str_eq(buf, "4.0 GiB in 2M pages + 12.0 KiB small");
	u.huge_1g = 1ull << 30;
	u.thp = 2 * MiB;
	mem_usage_format(&u, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1.0 GiB in 1G pages + 4.0 GiB in 2M pages + "
	    "2.0 MiB THP + 12.0 KiB small");
	ck_assert_uint_eq(mem_usage_total(&u), (5ull << 30) + 2 * MiB +
	    12 * KiB);
	v = u;
	mem_usage_add(&v, &u);
	ck_assert_uint_eq(v.huge_2m, 8ull << 30);
	v.thp = UINT64_MAX - 1;
	mem_usage_add(&v, &u);
	ck_assert_uint_eq(v.thp, UINT64_MAX);	/* saturates */
	ck_assert_uint_eq(mem_usage_total(&v), UINT64_MAX);

	ck_assert_int_eq(mem_pages_parse("hugetlb", &pg), 0);
	ck_assert_int_eq(pg, MEM_PAGES_HUGETLB);
	ck_assert_int_eq(mem_pages_parse("thp", &pg), 0);
	ck_assert_int_eq(pg, MEM_PAGES_THP);
	ck_assert_int_eq(mem_pages_parse("small", &pg), 0);
	ck_assert_int_eq(pg, MEM_PAGES_SMALL);
	ck_assert_int_eq(mem_pages_parse("huge", &pg), -EINVAL);
	ck_assert_int_eq(mem_pages_parse(NULL, &pg), -EINVAL);
	ck_assert_str_eq(mem_pages_name(MEM_PAGES_THP), "thp");
	ck_assert_str_eq(mem_pages_name(MEM_PAGES_SMALL), "small");
	ck_assert_str_eq(mem_pages_name(MEM_PAGES_HUGETLB), "hugetlb");
}
END_TEST

/* --- core: the real machine ----------------------------------------------- */

/* The bracketed word of a sysfs mode file ("always [madvise] never"). */
static void
sysfs_mode(const char *path, char *out, size_t size)
{
	char buf[128] = "", *a, *b;
	size_t n;
	FILE *f = fopen(path, "r");

	out[0] = '\0';
	if (f == NULL)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((a = strchr(buf, '[')) != NULL && (b = strchr(a, ']')) != NULL) {
		*b = '\0';
		snprintf(out, size, "%s", a + 1);
	}
}

START_TEST(test_real_default)
{
	struct mem_region *r = NULL;
	struct eng_err err = { "" };
	char mode[32], buf[160];
	int e;

	e = mem_region_new(64 * MiB, NULL, NULL, &r, &err);
	ck_assert_msg(e == 0, "%s", err.msg);
	check_region(r, 64 * MiB, false);
	mem_usage_format(&r->usage, buf, sizeof(buf));
	sysfs_mode("/sys/kernel/mm/transparent_hugepage/enabled", mode,
	    sizeof(mode));
	fprintf(stderr, "this machine: 64 MiB = %s (THP mode '%s')\n", buf,
	    mode);
	if (r->usage.huge_2m == 0 && r->usage.huge_1g == 0 &&
	    (strcmp(mode, "madvise") == 0 || strcmp(mode, "always") == 0))
		/* faulted in 2 MiB-aligned with MADV_HUGEPAGE: some THP */
		ck_assert_uint_gt(r->usage.thp, 0);
	mem_region_free(r);

	/* forced small pages get no THP even in "always" mode */
	{
		struct mem_params p = params(MEM_PAGES_SMALL);

		ck_assert_int_eq(mem_region_new(8 * MiB, &p, NULL, &r, &err),
		    0);
		ck_assert_uint_eq(r->usage.small, 8 * MiB);
		check_region(r, 8 * MiB, false);
		mem_region_free(r);
	}
}
END_TEST

START_TEST(test_real_smaps)
{
	struct mem_region *r = NULL;
	struct mem_params p = params(MEM_PAGES_THP);
	struct eng_err err = { "" };
	uint64_t got = 1;
	char *plain;

	/* a plain small-page mapping shows no AnonHugePages */
	plain = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(plain != MAP_FAILED);
	ck_assert_int_eq(madvise(plain, 4 * MiB, MADV_NOHUGEPAGE), 0);
	memset(plain, 1, 4 * MiB);
	ck_assert_int_eq(mem_ops_system.thp_bytes(plain, 4 * MiB, &got), 0);
	ck_assert_uint_eq(got, 0);
	munmap(plain, 4 * MiB);
	/* the region's own figure agrees with a fresh reading */
	ck_assert_int_eq(mem_region_new(16 * MiB, &p, NULL, &r, &err), 0);
	ck_assert_int_eq(mem_ops_system.thp_bytes(r->addr, r->mapped, &got),
	    0);
	ck_assert_uint_le(got, r->mapped);
	ck_assert_uint_eq(got, r->usage.thp);
	mem_region_free(r);
}
END_TEST

/* Write a number to a sysfs/procfs file: 0 or -errno. */
static int
write_num(const char *path, unsigned long v)
{
	char buf[32];
	int fd, n, e = 0;

	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%lu\n", v);
	if (write(fd, buf, (size_t)n) != n)
		e = -errno;
	close(fd);
	return e;
}

static long
read_num(const char *path)
{
	char buf[32] = "";
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f != NULL) {
		if (fgets(buf, sizeof(buf), f) != NULL)
			v = strtol(buf, NULL, 10);
		fclose(f);
	}
	return v;
}

/*
 * As root: add n pages to the pool of page_kb for a moment, allocate
 * strictly from it, restore the pool, then check. Skips otherwise.
 */
static void
real_hugetlb(unsigned page_kb, unsigned n, size_t size, bool huge_1g)
{
	char total[128], fr[128];
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r = NULL;
	struct eng_err err = { "" };
	struct mem_usage u = { 0 };
	long old, now, avail;
	int e, w;

	snprintf(total, sizeof(total),
	    "/sys/kernel/mm/hugepages/hugepages-%ukB/nr_hugepages", page_kb);
	snprintf(fr, sizeof(fr),
	    "/sys/kernel/mm/hugepages/hugepages-%ukB/free_hugepages", page_kb);
	if (geteuid() != 0 || (old = read_num(total)) < 0) {
		fprintf(stderr, "SKIP: real %u kB hugepages: needs root and "
		    "the pool\n", page_kb);
		return;
	}
	w = write_num(total, (unsigned long)old + n);
	now = read_num(total);
	avail = read_num(fr);
	if (w < 0 || now < old + n || avail < (long)n) {
		if (now != old)
			write_num(total, (unsigned long)old);
		fprintf(stderr, "SKIP: real %u kB hugepages: the kernel could "
		    "not reserve %u more\n", page_kb, n);
		return;
	}
	p.strict = true;
	p.huge_1g = huge_1g;
	e = mem_region_new(size, &p, NULL, &r, &err);
	if (e == 0) {
		u = r->usage;
		((unsigned char *)r->addr)[0] = 0x5a;
		((unsigned char *)r->addr)[size - 1] = 0x5a;
		mem_region_free(r);
	}
	/* restore before any assertion can end the test */
	write_num(total, (unsigned long)old);
	ck_assert_msg(e == 0, "%s", err.msg);
	if (huge_1g)
		ck_assert_uint_eq(u.huge_1g, size);
	else
		ck_assert_uint_eq(u.huge_2m, size);
	ck_assert_uint_eq(read_num(total), old);
}

START_TEST(test_real_hugetlb_2m)
{
	real_hugetlb(2048, 4, 6 * MiB, false);
}
END_TEST

START_TEST(test_real_hugetlb_1g)
{
	real_hugetlb(1048576, 1, MEM_PAGE_1G, true);
}
END_TEST

START_TEST(test_real_lock_limit)
{
	pid_t pid;
	int status;

	if (UNDER_ASAN) {
		/* ASan's mlock does nothing and always succeeds */
		fprintf(stderr, "SKIP: real RLIMIT_MEMLOCK: under ASan\n");
		return;
	}
	/* a child with a 64 KiB RLIMIT_MEMLOCK and no CAP_IPC_LOCK */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct rlimit rl = { 64 * KiB, 64 * KiB };
		struct mem_params p = params(MEM_PAGES_SMALL);
		struct mem_region *r = NULL;
		struct eng_err warn = { "" };
		int e;

		if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
			_exit(10);
		if (geteuid() == 0 && (setgid(65534) != 0 ||
		    setuid(65534) != 0))
			_exit(11);
		if (mem_region_new(4 * MiB, &p, NULL, &r, NULL) != 0)
			_exit(12);
		e = mem_region_lock(r, &warn);
		if (e != -ENOMEM && e != -EPERM && e != -EAGAIN)
			_exit(13);
		if (strstr(warn.msg, "LimitMEMLOCK=infinity") == NULL ||
		    strstr(warn.msg, "64.0 KiB") == NULL || r->locked)
			_exit(14);
		memset(r->addr, 1, 4 * MiB);	/* still usable */
		mem_region_free(r);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

START_TEST(test_real_lock)
{
	struct mem_region *r = NULL;
	struct eng_err warn = { "" };
	struct rlimit rl;
	int e;

	ck_assert_int_eq(mem_region_new(2 * MiB, NULL, NULL, &r, NULL), 0);
	e = mem_region_lock(r, &warn);
	ck_assert_int_eq(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
	if (e == 0)
		ck_assert(r->locked);
	else
		/* not allowed here: then the warning says how */
		ck_assert_ptr_nonnull(strstr(warn.msg, "ulimit -l"));
	mem_region_free(r);
}
END_TEST

START_TEST(test_real_numa)
{
	struct mem_params p = params(MEM_PAGES_THP);
	struct mem_region *r = NULL;
	int node = -1;

	if (numa_available() < 0) {
		fprintf(stderr, "SKIP: real NUMA binding: no NUMA here\n");
		return;
	}
	p.numa = MEM_NUMA_PREFERRED;
	p.nodes = 1;	/* node 0 always exists */
	ck_assert_int_eq(mem_region_new(4 * MiB, &p, NULL, &r, NULL), 0);
	ck_assert_int_eq(r->numa_status, 0);
	ck_assert_int_eq(get_mempolicy(&node, NULL, 0, r->addr,
	    MPOL_F_NODE | MPOL_F_ADDR), 0);
	ck_assert_int_eq(node, 0);
	mem_region_free(r);
	/* a node that does not exist: reported, memory works */
	p.numa = MEM_NUMA_BIND;
	p.nodes = (uint64_t)1 << 63;
	ck_assert_int_eq(mem_region_new(4 * MiB, &p, NULL, &r, NULL), 0);
	ck_assert_int_lt(r->numa_status, 0);
	memset(r->addr, 1, 4 * MiB);
	mem_region_free(r);
	/* interleave over node 0 */
	p.numa = MEM_NUMA_INTERLEAVE;
	p.nodes = 1;
	ck_assert_int_eq(mem_region_new(4 * MiB, &p, NULL, &r, NULL), 0);
	ck_assert_int_eq(r->numa_status, 0);
	mem_region_free(r);
}
END_TEST

/* --- limits --------------------------------------------------------------- */

START_TEST(test_bad_args)
{
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	struct mem_region *r = (struct mem_region *)&p;
	struct eng_err err = { "" };

	ck_assert_int_eq(mem_region_new(0, NULL, &fake_ops, &r, &err),
	    -EINVAL);
	ck_assert_int_eq(mem_region_new((size_t)1 << 57, NULL, &fake_ops, &r,
	    &err), -ENOMEM);
	ck_assert_int_eq(mem_region_new(SIZE_MAX, NULL, &fake_ops, &r, &err),
	    -ENOMEM);
	p.pages = (enum mem_pages)7;
	ck_assert_int_eq(mem_region_new(1, &p, &fake_ops, &r, &err), -EINVAL);
	p.pages = MEM_PAGES_SMALL;
	p.numa = MEM_NUMA_BIND;
	p.nodes = 0;		/* a policy without nodes */
	ck_assert_int_eq(mem_region_new(1, &p, &fake_ops, &r, &err), -EINVAL);
	p.numa = (enum mem_numa)9;
	p.nodes = 1;
	ck_assert_int_eq(mem_region_new(1, &p, &fake_ops, &r, &err), -EINVAL);
	ck_assert_ptr_eq(r, (struct mem_region *)&p);
	mem_region_free(NULL);
}
END_TEST

START_TEST(test_map_failures)
{
	struct mem_region *r = NULL;
	struct eng_err err = { "" };

	F.resv_mmap_errno = ENOMEM;
	ck_assert_int_eq(mem_region_new(4 * MiB, NULL, &fake_ops, &r, &err),
	    -ENOMEM);
	ck_assert_ptr_nonnull(strstr(err.msg, "address space"));
	ck_assert_ptr_null(r);

	fake_reset();
	F.rest_mmap_errno = ENOMEM;
	ck_assert_int_eq(mem_region_new(4 * MiB, NULL, &fake_ops, &r, &err),
	    -ENOMEM);
	ck_assert_ptr_nonnull(strstr(err.msg, "cannot map 4.0 MiB"));
	ck_assert_ptr_null(r);

	/* hugetlb worked for part, the rest fails: all released */
	fake_reset();
	F.pool_2m = 1;
	F.rest_mmap_errno = ENOMEM;
	ck_assert_int_eq(mem_region_new(4 * MiB, NULL, &fake_ops, &r, &err),
	    -ENOMEM);
	ck_assert_ptr_null(r);
}
END_TEST

START_TEST(test_many_regions)
{
	struct mem_region *r[64];
	struct mem_params p = params(MEM_PAGES_HUGETLB);
	uint64_t state = 7;
	int i;

	/* sizes of every shape; neighbours never overlap */
	F.pool_2m = 5;
	for (i = 0; i < 64; i++) {
		size_t size = 1 + (size_t)(tu_rand_u64(&state) % (9 * MiB));

		r[i] = new_region(size, &p);
		memset(r[i]->addr, i, size);
	}
	for (i = 0; i < 64; i++) {
		unsigned char *c = r[i]->addr;

		ck_assert_uint_eq(c[0], (unsigned)i);
		ck_assert_uint_eq(c[r[i]->size - 1], (unsigned)i);
		mem_region_free(r[i]);
	}
}
END_TEST

/* --- reading -------------------------------------------------------------- */

/* A file of n deterministic bytes; returns its contents (malloc'd). */
static unsigned char *
make_file(const char *path, size_t n)
{
	unsigned char *b = malloc(n ? n : 1);
	uint64_t state = n + 1;
	size_t i;

	ck_assert_ptr_nonnull(b);
	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(tu_rand_u64(&state) >> 56);
	ck_assert_int_eq(tu_write_file(path, b, n), 0);
	return b;
}

struct prog {
	uint64_t	 last;		/* done at the previous call */
	uint64_t	 total;
	int		 calls;
	int		 cancel_at;	/* return 1 at this call; 0 never */
	atomic_bool	*flag;		/* set at cancel_at instead */
};

static int
on_progress(uint64_t done, uint64_t total, void *arg)
{
	struct prog *pr = arg;

	ck_assert_uint_gt(done, pr->last);
	ck_assert_uint_le(done, total);
	pr->last = done;
	pr->total = total;
	pr->calls++;
	if (pr->cancel_at != 0 && pr->calls == pr->cancel_at) {
		if (pr->flag != NULL) {
			atomic_store(pr->flag, true);
			return 0;
		}
		return 1;
	}
	return 0;
}

START_TEST(test_read_file)
{
	const char *path = tu_tmpfile("data");
	size_t n = 20 * MiB + 123;
	unsigned char *want = make_file(path, n);
	struct mem_load_opts o = { 0 };
	struct mem_region *r = NULL;
	struct eng_err err = { "" };
	struct prog pr = { 0 };

	o.chunk = 1 * MiB;
	o.direct = MEM_DIRECT_OFF;
	o.progress = on_progress;
	o.arg = &pr;
	ck_assert_int_eq(mem_read_file(path, 0, 0, NULL, NULL, &o, &r, &err),
	    0);
	ck_assert_uint_eq(r->size, n);
	ck_assert_mem_eq(r->addr, want, n);
	ck_assert_int_eq(pr.calls, 21);		/* one per MiB chunk */
	ck_assert_uint_eq(pr.last, n);
	ck_assert_uint_eq(pr.total, n);
	mem_region_free(r);

	/* a slice, with the page cache dropped behind it */
	o.drop_cache = true;
	memset(&pr, 0, sizeof(pr));
	ck_assert_int_eq(mem_read_file(path, 4097, 3 * MiB, NULL, NULL, &o,
	    &r, &err), 0);
	ck_assert_mem_eq(r->addr, want + 4097, 3 * MiB);
	ck_assert_uint_eq(pr.total, 3 * MiB);
	mem_region_free(r);

	/* the whole file, default options */
	ck_assert_int_eq(mem_read_file(path, n - 10, 0, NULL, NULL, NULL, &r,
	    &err), 0);
	ck_assert_uint_eq(r->size, 10);
	ck_assert_mem_eq(r->addr, want + n - 10, 10);
	mem_region_free(r);
	free(want);
}
END_TEST

/* Read [off, off + len) at dst through a loader in mode d; compare. */
static void
read_check(int fd, const unsigned char *want, enum mem_direct d, size_t chunk,
    uint64_t off, unsigned char *dst, size_t len, bool *direct)
{
	struct mem_load_opts o = { 0 };
	struct mem_loader *l = NULL;
	struct eng_err err = { "" };

	o.direct = d;
	o.chunk = chunk;
	ck_assert_int_eq(mem_loader_new(fd, &o, &l, &err), 0);
	memset(dst, 0, len);
	ck_assert_msg(mem_loader_read(l, off, dst, len, &err) == 0, "%s",
	    err.msg);
	ck_assert_mem_eq(dst, want + off, len);
	ck_assert_uint_eq(mem_loader_done(l), len);
	*direct = mem_loader_direct(l);
	mem_loader_free(l);
}

START_TEST(test_read_direct)
{
	const char *path = tu_tmpfile("direct");
	size_t n = 6 * MiB + 1000;	/* not a multiple of 4096 */
	unsigned char *want = make_file(path, n);
	struct mem_region *r = NULL;
	unsigned char *buf;
	bool direct = false;
	int fd;

	ck_assert_int_eq(mem_region_new(n + 8192, NULL, NULL, &r, NULL), 0);
	buf = r->addr;
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);

	/* buffered, any alignment */
	read_check(fd, want, MEM_DIRECT_OFF, 0, 3, buf + 5, 1 * MiB, &direct);
	ck_assert(!direct);
	/* AUTO leaves small files buffered */
	read_check(fd, want, MEM_DIRECT_AUTO, 0, 0, buf, n, &direct);
	ck_assert(!direct);

	read_check(fd, want, MEM_DIRECT_ON, 1 * MiB, 0, buf, n, &direct);
	if (!direct) {
		fprintf(stderr, "SKIP: O_DIRECT: not supported by the file "
		    "system of %s\n", path);
		goto out;
	}
	/* aligned body, to the unaligned end of the file */
	read_check(fd, want, MEM_DIRECT_ON, 1 * MiB, 8192, buf + 8192,
	    n - 8192, &direct);
	ck_assert(direct);
	/* same misalignment in file and memory: head buffered, body direct */
	read_check(fd, want, MEM_DIRECT_ON, 1 * MiB, 100, buf + 100,
	    3 * MiB + 7, &direct);
	ck_assert(direct);
	/* different misalignment: through the bounce buffer */
	read_check(fd, want, MEM_DIRECT_ON, 1 * MiB, 100, buf + 1,
	    3 * MiB + 7, &direct);
	ck_assert(direct);
	read_check(fd, want, MEM_DIRECT_ON, 64 * KiB, 4095, buf, n - 4095,
	    &direct);
	ck_assert(direct);
	/* tiny reads */
	read_check(fd, want, MEM_DIRECT_ON, 0, n - 1, buf + 3, 1, &direct);
	read_check(fd, want, MEM_DIRECT_ON, 0, 0, buf, 1, &direct);
	ck_assert(direct);
out:
	close(fd);
	mem_region_free(r);
	free(want);
}
END_TEST

START_TEST(test_read_auto_direct)
{
	const char *path = tu_tmpfile("sparse");
	uint64_t size = MEM_DIRECT_MIN + 12345;
	struct mem_loader *l = NULL;
	struct eng_err err = { "" };
	unsigned char *buf = calloc(1, 64 * KiB), acc = 0;
	size_t i;
	int fd;

	/* a big file that is not in the page cache (sparse: no disk used) */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	ck_assert_int_eq(pwrite(fd, "hearth", 6, (off_t)size - 6), 6);
	ck_assert_int_eq(fdatasync(fd), 0);
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	ck_assert_int_eq(mem_loader_new(fd, NULL, &l, &err), 0);
	if (!mem_loader_direct(l))
		fprintf(stderr, "SKIP: AUTO O_DIRECT: not chosen for %s (no "
		    "O_DIRECT there, or the file is cached)\n", path);
	memset(buf, 0xff, 64 * KiB);
	ck_assert_int_eq(mem_loader_read(l, size - 64 * KiB, buf, 64 * KiB,
	    &err), 0);
	for (i = 0; i < 64 * KiB - 6; i++)
		acc |= buf[i];
	ck_assert_uint_eq(acc, 0);
	ck_assert_mem_eq(buf + 64 * KiB - 6, "hearth", 6);
	mem_loader_free(l);
	close(fd);
	free(buf);
}
END_TEST

START_TEST(test_read_cancel)
{
	const char *path = tu_tmpfile("cancel");
	size_t n = 8 * MiB;
	unsigned char *want = make_file(path, n), *buf = malloc(n);
	struct mem_load_opts o = { 0 };
	struct mem_loader *l = NULL;
	struct eng_err err = { "" };
	struct prog pr = { 0 };
	atomic_bool flag = false;
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_ptr_nonnull(buf);
	o.chunk = 1 * MiB;
	o.progress = on_progress;
	o.arg = &pr;
	o.direct = MEM_DIRECT_OFF;

	/* the callback says stop */
	pr.cancel_at = 3;
	ck_assert_int_eq(mem_loader_new(fd, &o, &l, &err), 0);
	ck_assert_int_eq(mem_loader_read(l, 0, buf, n, &err), -ECANCELED);
	ck_assert_str_eq(err.msg, "load cancelled");
	ck_assert_uint_eq(mem_loader_done(l), 3 * MiB);
	mem_loader_free(l);

	/* the flag, set from elsewhere (here: from the callback) */
	memset(&pr, 0, sizeof(pr));
	pr.cancel_at = 2;
	pr.flag = &flag;
	o.cancel = &flag;
	ck_assert_int_eq(mem_loader_new(fd, &o, &l, &err), 0);
	ck_assert_int_eq(mem_loader_read(l, 0, buf, n, &err), -ECANCELED);
	ck_assert_uint_eq(mem_loader_done(l), 2 * MiB);
	/* still set: nothing more is read */
	ck_assert_int_eq(mem_loader_read(l, 0, buf, 10, &err), -ECANCELED);
	mem_loader_free(l);

	/* through mem_read_file: no region is left behind */
	{
		struct mem_region *r = NULL;

		ck_assert_int_eq(mem_read_file(path, 0, 0, NULL, NULL, &o, &r,
		    &err), -ECANCELED);
		ck_assert_ptr_null(r);
		ck_assert_ptr_nonnull(strstr(err.msg, "cancelled"));
	}
	close(fd);
	free(buf);
	free(want);
}
END_TEST

START_TEST(test_read_truncated)
{
	const char *path = tu_tmpfile("trunc");
	size_t n = 4 * MiB;
	unsigned char *want = make_file(path, n), *buf;
	struct mem_region *r = NULL;
	struct mem_load_opts o = { 0 };
	struct mem_loader *l = NULL;
	struct eng_err err = { "" };
	enum mem_direct modes[2] = { MEM_DIRECT_OFF, MEM_DIRECT_ON };
	int fd, i;

	ck_assert_int_eq(mem_region_new(n, NULL, NULL, &r, NULL), 0);
	buf = r->addr;
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(tu_write_file(path, want, n), 0);
		fd = open(path, O_RDONLY);
		ck_assert_int_ge(fd, 0);
		o.direct = modes[i];
		ck_assert_int_eq(mem_loader_new(fd, &o, &l, &err), 0);
		/* the file shrinks on disk after the loader looked at it */
		ck_assert_int_eq(truncate(path, 1 * MiB + 5), 0);
		ck_assert_int_eq(mem_loader_read(l, 0, buf, n, &err), -EIO);
		ck_assert_ptr_nonnull(strstr(err.msg, "changed on disk"));
		ck_assert_mem_eq(buf, want, 1 * MiB + 5);
		mem_loader_free(l);
		close(fd);
	}
	mem_region_free(r);
	free(want);
}
END_TEST

START_TEST(test_read_errors)
{
	char *path = strdup(tu_tmpfile("small"));	/* static buffer */
	unsigned char *want = make_file(path, 100);
	struct mem_region *r = NULL;
	struct mem_loader *l = NULL;
	struct eng_err err = { "" };
	struct mem_load_opts o = { 0 };
	int p[2];
	char c;

	ck_assert_int_eq(mem_read_file(path, 0, 101, NULL, NULL, NULL, &r,
	    &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "past its end"));
	ck_assert_int_eq(mem_read_file(path, 101, 0, NULL, NULL, NULL, &r,
	    &err), -EINVAL);
	ck_assert_int_eq(mem_read_file(path, 100, 0, NULL, NULL, NULL, &r,
	    &err), -EINVAL);	/* nothing left to read */
	ck_assert_int_eq(mem_read_file(path, 50, UINT64_MAX, NULL, NULL, NULL,
	    &r, &err), -EINVAL);
	ck_assert_int_eq(mem_read_file(tu_tmpdir(), 0, 0, NULL, NULL, NULL,
	    &r, &err), -EINVAL);
	ck_assert_int_eq(mem_read_file(tu_tmpfile("none"), 0, 0, NULL, NULL,
	    NULL, &r, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, "none"));
	ck_assert_int_eq(tu_write_file(tu_tmpfile("empty"), "", 0), 0);
	ck_assert_int_eq(mem_read_file(tu_tmpfile("empty"), 0, 0, NULL, NULL,
	    NULL, &r, &err), -EINVAL);
	ck_assert_ptr_null(r);

	/* not a regular file */
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(mem_loader_new(p[0], NULL, &l, &err), -EINVAL);
	ck_assert_ptr_null(l);
	close(p[0]);
	close(p[1]);
	ck_assert_int_eq(mem_loader_new(-1, NULL, &l, &err), -EBADF);
	/* bad options */
	p[0] = open(path, O_RDONLY);
	o.direct = (enum mem_direct)5;
	ck_assert_int_eq(mem_loader_new(p[0], &o, &l, &err), -EINVAL);
	o.direct = MEM_DIRECT_OFF;
	o.chunk = (size_t)2 << 30;
	ck_assert_int_eq(mem_loader_new(p[0], &o, &l, &err), -EINVAL);
	o.chunk = 0;
	ck_assert_int_eq(mem_loader_new(p[0], &o, &l, &err), 0);
	ck_assert_int_eq(mem_loader_read(l, UINT64_MAX - 5, &c, 10, &err),
	    -EINVAL);
	ck_assert_int_eq(mem_loader_read(l, 100, &c, 1, &err), -EIO);
	ck_assert_int_eq(mem_loader_read(l, 99, &c, 1, &err), 0);
	ck_assert_uint_eq((unsigned char)c, want[99]);
	ck_assert_int_eq(mem_loader_read(l, 0, &c, 0, &err), 0);
	mem_loader_free(l);
	mem_loader_free(NULL);
	close(p[0]);
	free(want);
	free(path);
}
END_TEST

START_TEST(test_read_gguf_tensor)
{
	const char *path = tu_testdata("models/aidreams260K.gguf");
	struct gguf *g = NULL;
	struct mem_loader *l = NULL;
	struct mem_region *r = NULL;
	struct eng_err err = { "" };
	struct mem_load_opts o = { 0 };
	uint64_t i, total = 0;
	unsigned char *ref;

	if (path == NULL) {
		tu_skip("check_memory gguf");
		return;
	}
	ck_assert_int_eq(gguf_open(path, &g, &err), 0);
	for (i = 0; i < g->n_tensors; i++)
		total += g->tensors[i].nbytes;
	/* every tensor through a loader on the reader's own descriptor */
	o.total = total;
	ck_assert_int_eq(mem_loader_new(g->fd, &o, &l, &err), 0);
	ck_assert_int_eq(mem_region_new(total, NULL, NULL, &r, &err), 0);
	total = 0;
	for (i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		unsigned char *dst = (unsigned char *)r->addr + total;

		ck_assert_int_eq(mem_loader_read(l, g->data_offset + t->offset,
		    dst, t->nbytes, &err), 0);
		ref = malloc(t->nbytes);
		ck_assert_int_eq(gguf_read_tensor(g, t, ref, t->nbytes, &err),
		    0);
		ck_assert_mem_eq(dst, ref, t->nbytes);
		free(ref);
		total += t->nbytes;
	}
	ck_assert_uint_eq(mem_loader_done(l), total);
	mem_loader_free(l);
	mem_region_free(r);
	gguf_close(g);
}
END_TEST

static Suite *
memory_suite(void)
{
	Suite *s = suite_create("memory");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_small_pages);
	tcase_add_test(tc, test_hugetlb_full);
	tcase_add_test(tc, test_hugetlb_pool_partial);
	tcase_add_test(tc, test_hugetlb_pool_exhausted);
	tcase_add_test(tc, test_hugetlb_pool_empty);
	tcase_add_test(tc, test_thp_disabled);
	tcase_add_test(tc, test_thp_not_granted);
	tcase_add_test(tc, test_thp_skips_hugetlb);
	tcase_add_test(tc, test_huge_populate_fails);
	tcase_add_test(tc, test_populate_unsupported);
	tcase_add_test(tc, test_tail_rounding);
	tcase_add_test(tc, test_gigantic_pages);
	tcase_add_test(tc, test_gigantic_fallback);
	tcase_add_test(tc, test_strict_hugetlb);
	tcase_add_test(tc, test_strict_thp);
	tcase_add_test(tc, test_numa_policies);
	tcase_add_test(tc, test_copy);
	tcase_add_test(tc, test_lock);
	tcase_add_test(tc, test_lock_limit);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_real_default);
	tcase_add_test(tc, test_real_smaps);
	tcase_add_test(tc, test_real_hugetlb_2m);
	tcase_add_test(tc, test_real_hugetlb_1g);
	tcase_add_test(tc, test_real_lock_limit);
	tcase_add_test(tc, test_real_lock);
	tcase_add_test(tc, test_real_numa);
	tcase_add_test(tc, test_read_file);
	tcase_add_test(tc, test_read_direct);
	tcase_add_test(tc, test_read_auto_direct);
	tcase_add_test(tc, test_read_gguf_tensor);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_many_regions);
	tcase_add_test(tc, test_read_cancel);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_map_failures);
	tcase_add_test(tc, test_read_truncated);
	tcase_add_test(tc, test_read_errors);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(memory_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
