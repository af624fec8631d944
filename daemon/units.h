/*
 * units.h - sizes written by people ("16G", "512MiB", "4096"): the one
 * parser the configuration, the memory budget and the simulated NUMA
 * topologies share.
 */
#ifndef HEARTH_UNITS_H
#define HEARTH_UNITS_H

#include <stdint.h>

/*
 * A size: decimal digits, then an optional binary suffix, any case: K or
 * KiB (2^10), M or MiB (2^20), G or GiB (2^30), T or TiB (2^40), or B
 * (bytes). No sign, no spaces, no fractions; "16GB" is refused (it
 * would read as decimal to some). 0 with *out set, -EINVAL for anything
 * else, -ERANGE when the bytes do not fit in 64 bits. 0 is a valid size:
 * the caller says what range it allows.
 */
int	units_parse_size(const char *s, uint64_t *out);

#endif /* HEARTH_UNITS_H */
