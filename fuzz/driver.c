/*
 * driver.c - run a fuzz target without libFuzzer: every regular file of
 * the directories (or the files) named on the command line, else of
 * FUZZ_CORPUS_DIR (tests/corpus/<target>), is fed once to
 * LLVMFuzzerTestOneInput in name order. Built with the normal compiler,
 * so make check replays the regression inputs in every build. A crash or
 * a broken invariant (abort) fails the run; the last "corpus:" line on
 * stderr names the input. Prints a Check-style summary at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzzutil.h"

#ifndef FUZZ_CORPUS_DIR
#define FUZZ_CORPUS_DIR	"tests/corpus"
#endif

/* Read a whole file into an allocation of exactly its size (so that the
 * sanitizers see reads past the end), or NULL. */
static uint8_t *
drv_read(const char *path, size_t *len)
{
	FILE *f;
	uint8_t *buf = NULL;
	struct stat st;

	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	if (fstat(fileno(f), &st) != 0 || st.st_size < 0)
		goto out;
	*len = (size_t)st.st_size;
	if ((buf = malloc(*len ? *len : 1)) == NULL)
		goto out;
	if (*len > 0 && fread(buf, 1, *len, f) != *len) {
		free(buf);
		buf = NULL;
	}
out:
	fclose(f);
	return buf;
}

static int
drv_run_file(const char *path)
{
	uint8_t *data;
	size_t len = 0;

	if ((data = drv_read(path, &len)) == NULL) {
		fprintf(stderr, "corpus: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(stderr, "corpus: %s (%zu bytes)\n", path, len);
	LLVMFuzzerTestOneInput(data, len);
	free(data);
	return 0;
}

static int
drv_filter(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Run every regular file of dir; returns the count or -1. */
static long
drv_run_dir(const char *dir)
{
	struct dirent **names;
	struct stat st;
	char path[4096];
	long n = 0;
	int i, count;

	count = scandir(dir, &names, drv_filter, alphasort);
	if (count < 0) {
		fprintf(stderr, "corpus: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (i = 0; i < count; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (drv_run_file(path) < 0)
				n = -1;
			else if (n >= 0)
				n++;
		}
		free(names[i]);
	}
	free(names);
	return n;
}

int
main(int argc, char **argv)
{
	const char *def[] = { FUZZ_CORPUS_DIR };
	const char **paths = def;
	struct stat st;
	long n, total = 0;
	int i, n_paths = 1, bad = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	if (argc > 1) {
		paths = (const char **)argv + 1;
		n_paths = argc - 1;
	}
	for (i = 0; i < n_paths; i++) {
		if (stat(paths[i], &st) != 0) {
			fprintf(stderr, "corpus: %s: %s\n", paths[i],
			    strerror(errno));
			bad++;
			continue;
		}
		n = S_ISDIR(st.st_mode) ? drv_run_dir(paths[i]) :
		    drv_run_file(paths[i]) == 0 ? 1 : -1;
		if (n < 0)
			bad++;
		else
			total += n;
	}
	if (total == 0)
		bad++;	/* an empty corpus tests nothing */
	printf("%d%%: Checks: %ld, Failures: 0, Errors: %d\n",
	    bad ? 0 : 100, total + bad, bad);
	return bad != 0;
}
