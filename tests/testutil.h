/*
 * testutil.h - small helpers shared by the Check suites.
 */
#ifndef HEARTH_TESTUTIL_H
#define HEARTH_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Path of a file in $HEARTH_TESTDATA, or NULL when the variable is unset
 * (the caller skips, saying so) or the file is missing. Static buffer.
 */
const char *tu_testdata(const char *rel);
/* Print "SKIP: <what>: HEARTH_TESTDATA not set" once per what. */
void tu_skip(const char *what);

/* A fresh temporary directory, removed with its files by tu_tmpdir_free. */
const char *tu_tmpdir(void);
void tu_tmpdir_free(void);
/* "<tmpdir>/<name>" in a static buffer. */
const char *tu_tmpfile(const char *name);

/* Read a whole file into a malloc'd buffer; NULL on error. */
uint8_t *tu_read_file(const char *path, size_t *len);
/* Write a buffer to a file; 0 or -errno. */
int tu_write_file(const char *path, const void *buf, size_t len);
/*
 * Run cmd with sh -c, its stdout and stderr captured in *out and *err
 * (malloc'd, NUL-terminated; either may be NULL): its exit status, 128 + the signal that
 * ended it, or -1 (nothing stored) when it could not be run or read.
 */
int tu_sh(const char *cmd, char **out, char **err);

/* Deterministic random numbers (xorshift64*). */
uint64_t tu_rand_u64(uint64_t *state);
float    tu_rand_float(uint64_t *state, float lo, float hi);	/* uniform */
float    tu_rand_normal(uint64_t *state);	/* N(0, 1) */

#endif /* HEARTH_TESTUTIL_H */
