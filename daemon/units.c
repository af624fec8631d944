/*
 * units.c - the size parser shared by config.c, budget.c and
 * numa_topo.c (see units.h).
 */
#include <errno.h>
#include <stddef.h>
#include <strings.h>

#include "units.h"

/* A suffix and its power of two. */
struct units_suffix {
	const char	*name;	/* compared without case */
	unsigned	 shift;
};

static const struct units_suffix units_suffixes[] = {
	{ "", 0 }, { "b", 0 },
	{ "k", 10 }, { "kib", 10 },
	{ "m", 20 }, { "mib", 20 },
	{ "g", 30 }, { "gib", 30 },
	{ "t", 40 }, { "tib", 40 },
};

int
units_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	for (i = 0; i < sizeof(units_suffixes) / sizeof(units_suffixes[0]);
	    i++) {
		if (strcasecmp(s, units_suffixes[i].name) != 0)
			continue;
		if (v > UINT64_MAX >> units_suffixes[i].shift)
			return -ERANGE;
		*out = v << units_suffixes[i].shift;
		return 0;
	}
	return -EINVAL;
}
