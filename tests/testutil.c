/*
 * testutil.c - small helpers shared by the Check suites.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char tu_tmp[PATH_MAX];

const char *
tu_testdata(const char *rel)
{
	static char path[PATH_MAX];
	const char *dir = getenv("HEARTH_TESTDATA");

	if (dir == NULL || *dir == '\0')
		return NULL;
	if (snprintf(path, sizeof(path), "%s/%s", dir, rel) >= (int)sizeof(path))
		return NULL;
	if (access(path, R_OK) != 0)
		return NULL;
	return path;
}

void
tu_skip(const char *what)
{
	fprintf(stderr, "SKIP: %s: HEARTH_TESTDATA not set or file missing\n",
	    what);
}

const char *
tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	if (tu_tmp[0] != '\0')
		return tu_tmp;
	if (base == NULL || *base == '\0')
		base = "/tmp";
	snprintf(tu_tmp, sizeof(tu_tmp), "%s/hearth-test.XXXXXX", base);
	if (mkdtemp(tu_tmp) == NULL) {
		perror("mkdtemp");
		abort();
	}
	return tu_tmp;
}

static int
tu_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

void
tu_tmpdir_free(void)
{
	if (tu_tmp[0] == '\0')
		return;
	nftw(tu_tmp, tu_rm, 16, FTW_DEPTH | FTW_PHYS);
	tu_tmp[0] = '\0';
}

const char *
tu_tmpfile(const char *name)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", tu_tmpdir(), name);
	return path;
}

uint8_t *
tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc(n > 0 ? (size_t)n : 1);
	if (buf == NULL)
		goto out;
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
		goto out;
	}
	*len = (size_t)n;
out:
	fclose(f);
	return buf;
}

int
tu_write_file(const char *path, const void *buf, size_t len)
{
	int fd, r = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (len > 0 && write(fd, buf, len) != (ssize_t)len)
		r = -EIO;
	if (close(fd) != 0 && r == 0)
		r = -errno;
	return r;
}

uint64_t
tu_rand_u64(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

float
tu_rand_float(uint64_t *state, float lo, float hi)
{
	double u = (double)(tu_rand_u64(state) >> 11) * (1.0 / 9007199254740992.0);

	return lo + (float)(u * (hi - lo));
}

float
tu_rand_normal(uint64_t *state)
{
	double u1, u2;

	do
		u1 = (double)(tu_rand_u64(state) >> 11) * (1.0 / 9007199254740992.0);
	while (u1 <= 1e-300);
	u2 = (double)(tu_rand_u64(state) >> 11) * (1.0 / 9007199254740992.0);
	return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* A file as a NUL-terminated string, removed after; NULL on error. */
static char *
tu_take_text(const char *path)
{
	uint8_t	*buf, *s;
	size_t	 len;

	buf = tu_read_file(path, &len);
	unlink(path);
	if (buf == NULL || (s = realloc(buf, len + 1)) == NULL) {
		free(buf);
		return NULL;
	}
	s[len] = '\0';
	return (char *)s;
}

int
tu_sh(const char *cmd, char **out, char **err)
{
	static unsigned	 n;
	char		 op[PATH_MAX], ep[PATH_MAX], *full, *o, *e;
	size_t		 size;
	int		 st;

	snprintf(op, sizeof(op), "%s/sh-%d-%u.out", tu_tmpdir(), (int)getpid(),
	    n);
	snprintf(ep, sizeof(ep), "%s/sh-%d-%u.err", tu_tmpdir(), (int)getpid(),
	    n++);
	size = strlen(cmd) + strlen(op) + strlen(ep) + 32;
	if ((full = malloc(size)) == NULL)
		return -1;
	snprintf(full, size, "( %s ) >'%s' 2>'%s'", cmd, op, ep);
	st = system(full);
	free(full);
	o = tu_take_text(op);
	e = tu_take_text(ep);
	if (st == -1 || o == NULL || e == NULL) {
		free(o);
		free(e);
		return -1;
	}
	if (out != NULL)
		*out = o;
	else
		free(o);
	if (err != NULL)
		*err = e;
	else
		free(e);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
