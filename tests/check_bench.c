/*
 * check_bench.c - hearth-bench as its users read it: the tests it runs
 * and the fields it prints (markdown table and llama-bench's JSON),
 * -d (tokens in the cache first), the llama-bench interleaving (against
 * a fake llama-bench that records its arguments and answers a fixed
 * speed), and its refusals. No speed is checked: benchmarks are not
 * timed tests. The binary is $HEARTH_BUILDDIR/bench/hearth-bench.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "kernels.h"
#include "mkmodel_lib.h"
#include "testutil.h"

static char	 g_bin[4096];	/* the benchmark */
static char	 g_model[4096];	/* a small Q4_0 model */
static char	 g_fake[4096];	/* the fake llama-bench */
static char	 g_args[4096];	/* where it writes its arguments */

/* The model and the fake llama-bench, once, before the tests fork. */
static void
bench_setup(void)
{
	struct eng_err	 err = { "" };
	struct mkm_spec	 s;
	const char	*b = getenv("HEARTH_BUILDDIR");
	char		 sh[8192];
	FILE		*f;

	snprintf(g_bin, sizeof(g_bin), "%s/bench/hearth-bench",
	    b != NULL ? b : ".");
	snprintf(g_model, sizeof(g_model), "%s", tu_tmpfile("small.gguf"));
	mkm_spec_default(&s);
	s.name = "small";
	s.n_embd = 128;		/* head dim 32: a Q8_0 cache can hold it */
	s.n_ff = 256;
	s.wtype = KERN_TYPE_Q4_0;
	s.out_type = KERN_TYPE_Q8_0;
	if (mkm_write(&s, g_model, &err) < 0) {
		fprintf(stderr, "check_bench: %s\n", err.msg);
		abort();
	}
	snprintf(g_fake, sizeof(g_fake), "%s", tu_tmpfile("llama-bench"));
	snprintf(g_args, sizeof(g_args), "%s", tu_tmpfile("llama.args"));
	/* FAKE_TS empty: a llama-bench that fails */
	snprintf(sh, sizeof(sh), "#!/bin/sh\n"
	    "echo \"$*\" >>'%s'\n"
	    "[ -n \"$FAKE_TS\" ] || exit 1\n"
	    "echo \"[{\\\"avg_ts\\\": $FAKE_TS}]\"\n", g_args);
	if ((f = fopen(g_fake, "w")) == NULL || fputs(sh, f) == EOF ||
	    fclose(f) != 0 || chmod(g_fake, 0755) != 0)
		abort();
}

/* Run the benchmark with args (and env assignments before it); its
 * exit status, stdout and stderr (NUL-terminated, to free). */
static int
bench_run(const char *env, const char *args, char **out, char **err)
{
	char	 cmd[16384];
	int	 st;

	snprintf(cmd, sizeof(cmd), "%s '%s' %s", env, g_bin, args);
	st = tu_sh(cmd, out, err);
	ck_assert_int_ne(st, -1);
	return st;
}

/* The object of a JSON array whose "test" is name. */
static json_t *
row_of(json_t *a, const char *name)
{
	size_t	 i;
	json_t	*r;

	json_array_foreach(a, i, r)
		if (strcmp(json_string_value(json_object_get(r, "test")),
		    name) == 0)
			return r;
	ck_abort_msg("no test %s in the JSON", name);
	return NULL;
}

static double
num(json_t *r, const char *key)
{
	json_t	*v = json_object_get(r, key);

	ck_assert_msg(json_is_number(v), "%s is not a number", key);
	return json_number_value(v);
}

/* -o json: one object per test, llama-bench's fields and hearth's. */
START_TEST(test_json)
{
	static const char *const names[] = { "pp8 @ d16", "tg4 @ d16",
	    "tg4x2 @ d16" };
	char		 args[8192], *out, *err;
	json_t		*a, *r;
	json_error_t	 je;
	size_t		 i;

	snprintf(args, sizeof(args), "-m '%s' -t 1 -p 8 -n 4 -s 2 -r 2 -d 16 "
	    "-b 4 -o json", g_model);
	ck_assert_int_eq(bench_run("", args, &out, &err), 0);
	a = json_loads(out, 0, &je);
	ck_assert_msg(a != NULL, "not JSON (%s): %s", je.text, out);
	ck_assert(json_is_array(a));
	ck_assert_uint_eq(json_array_size(a), 3);
	for (i = 0; i < 3; i++) {
		r = row_of(a, names[i]);
		ck_assert_str_eq(json_string_value(json_object_get(r,
		    "model_filename")), g_model);
		ck_assert_ptr_nonnull(strstr(json_string_value(
		    json_object_get(r, "model_type")), "Q4_0"));
		ck_assert(num(r, "n_threads") == 1);
		ck_assert(num(r, "n_batch") == 4);
		ck_assert(num(r, "n_depth") == 16);
		ck_assert(num(r, "avg_ts") > 0);
		ck_assert(num(r, "stddev_ts") >= 0);
		ck_assert(num(r, "avg_ns") > 0);
		ck_assert(num(r, "model_size") > 0);
		ck_assert(num(r, "model_n_params") > 0);
		ck_assert(num(r, "bandwidth_gbs") > 0);
		ck_assert_uint_eq(json_array_size(json_object_get(r,
		    "samples_ts")), 2);
		ck_assert_uint_eq(json_array_size(json_object_get(r,
		    "samples_ns")), 2);
		ck_assert_str_eq(json_string_value(json_object_get(r,
		    "type_k")), "f16");
		/* no llama-bench: no ratio */
		ck_assert_ptr_null(json_object_get(r, "ratio"));
	}
	r = row_of(a, "pp8 @ d16");
	ck_assert(num(r, "n_prompt") == 8 && num(r, "n_gen") == 0);
	ck_assert(num(r, "peak_frac") > 0);
	r = row_of(a, "tg4 @ d16");
	ck_assert(num(r, "n_prompt") == 0 && num(r, "n_gen") == 4);
	ck_assert(num(r, "n_streams") == 1);
	ck_assert(num(r, "roofline_frac") > 0);
	r = row_of(a, "tg4x2 @ d16");
	ck_assert(num(r, "n_streams") == 2);
	ck_assert(fabs(num(r, "vs_one_stream") - num(r, "avg_ts") /
	    num(row_of(a, "tg4 @ d16"), "avg_ts")) < 1e-6);
	ck_assert_ptr_nonnull(strstr(err, "16 tokens into 2 caches first"));
	json_decref(a);
	free(out);
	free(err);
}
END_TEST

/* The table: the machine line, a header and a row per test. */
START_TEST(test_markdown)
{
	char	 args[8192], *out, *err;

	snprintf(args, sizeof(args), "-m '%s' -t 1 -p 8 -n 4 -s 1 -r 1 "
	    "-ctk q8_0 -ctv q8_0", g_model);
	ck_assert_int_eq(bench_run("", args, &out, &err), 0);
	ck_assert_ptr_nonnull(strstr(out, "machine (1 threads): read "
	    "bandwidth"));
	ck_assert_ptr_nonnull(strstr(out, "KV cache: k q8_0, v q8_0"));
	ck_assert_ptr_nonnull(strstr(out, "| model "));
	ck_assert_ptr_nonnull(strstr(out, " pp8 |"));
	ck_assert_ptr_nonnull(strstr(out, " tg4 |"));
	ck_assert_ptr_nonnull(strstr(out, "% of peak"));
	ck_assert_ptr_nonnull(strstr(out, "% of roofline"));
	/* -s 1: no batched test; no -d: no depth */
	ck_assert_ptr_null(strstr(out, "tg4x"));
	ck_assert_ptr_null(strstr(out, " @ d"));
	ck_assert_ptr_null(strstr(out, "llama.cpp"));
	free(out);
	free(err);
}
END_TEST

/*
 * LLAMA_BENCH: after every hearth run of pp and tg (not the batched
 * test, which llama-bench has not), one llama-bench run of the same file
 * with the same threads, sizes, depth, batch and cache types; its speed
 * beside hearth's and the ratio.
 */
START_TEST(test_llama)
{
	char		 args[8192], env[8192], *out, *err, *lines;
	json_t		*a, *r;
	json_error_t	 je;
	size_t		 len, n = 0;
	char		*p;

	unlink(g_args);
	snprintf(args, sizeof(args), "-m '%s' -t 1 -p 8 -n 4 -s 2 -r 3 -d 8 "
	    "-b 4 -ctk q8_0 -o json", g_model);
	snprintf(env, sizeof(env), "FAKE_TS=2.5 LLAMA_BENCH='%s'", g_fake);
	ck_assert_int_eq(bench_run(env, args, &out, &err), 0);
	ck_assert_ptr_nonnull(a = json_loads(out, 0, &je));
	r = row_of(a, "pp8 @ d8");
	ck_assert(num(r, "llama_avg_ts") == 2.5);
	ck_assert_uint_eq(json_array_size(json_object_get(r,
	    "llama_samples_ts")), 3);
	ck_assert(fabs(num(r, "ratio") - num(r, "avg_ts") / 2.5) < 1e-9);
	r = row_of(a, "tg4 @ d8");
	ck_assert(fabs(num(r, "ratio") - num(r, "avg_ts") / 2.5) < 1e-9);
	ck_assert_ptr_null(json_object_get(row_of(a, "tg4x2 @ d8"), "ratio"));
	json_decref(a);
	/* 3 runs each of pp and tg, with the same settings */
	ck_assert_ptr_nonnull(lines = (char *)tu_read_file(g_args, &len));
	ck_assert_ptr_nonnull(lines = realloc(lines, len + 1));
	lines[len] = '\0';
	for (p = lines; (p = strchr(p, '\n')) != NULL; p++)
		n++;
	ck_assert_uint_eq(n, 6);
	ck_assert_ptr_nonnull(strstr(lines, "-t 1 -p 8 -n 0 -d 8 -b 4 -ub 4 "
	    "-ctk q8_0 -ctv f16 -r 1 -o json"));
	ck_assert_ptr_nonnull(strstr(lines, "-t 1 -p 0 -n 4 -d 8 -b 4 -ub 4 "
	    "-ctk q8_0 -ctv f16 -r 1 -o json"));
	ck_assert_ptr_nonnull(strstr(lines, g_model));
	free(lines);
	free(out);
	free(err);
}
END_TEST

/* A llama-bench that fails: hearth's figures stand, no ratio. */
START_TEST(test_llama_fails)
{
	char	 args[8192], env[8192], *out, *err;

	snprintf(args, sizeof(args), "-m '%s' -t 1 -p 8 -n 0 -r 1", g_model);
	snprintf(env, sizeof(env), "FAKE_TS= LLAMA_BENCH='%s'", g_fake);
	ck_assert_int_eq(bench_run(env, args, &out, &err), 0);
	ck_assert_ptr_nonnull(strstr(out, "llama.cpp t/s"));
	ck_assert_ptr_nonnull(strstr(out, "|                - |      - |"));
	ck_assert_ptr_nonnull(strstr(err, "(llama.cpp -1.00)"));
	free(out);
	free(err);
}
END_TEST

/* Bad options: usage and exit 2; a file that is not a model: exit 1
 * with the file's name. */
START_TEST(test_errors)
{
	static const char *const bad[] = {
		"-d x", "-d -1", "-d 1048577", "-t 0", "-p 70000", "-r 0",
		"-s 65", "-o yaml", "-ctk q4_0", "-ctv", "--pages huge",
		"extra",
	};
	char	 args[8192], *out, *err;
	size_t	 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(args, sizeof(args), "-m '%s' %s", g_model, bad[i]);
		ck_assert_msg(bench_run("", args, &out, &err) == 2,
		    "%s: not refused: %s", bad[i], err);
		ck_assert_msg(strstr(err, "usage: hearth-bench") != NULL ||
		    strstr(err, "hearth-bench: ") != NULL, "%s: %s", bad[i],
		    err);
		ck_assert_str_eq(out, "");
		free(out);
		free(err);
	}
	ck_assert_int_eq(bench_run("", "", &out, &err), 2);
	ck_assert_ptr_nonnull(strstr(err, "usage: hearth-bench"));
	free(out);
	free(err);
	snprintf(args, sizeof(args), "-m '%s' -p 8 -n 0 -r 1", g_fake);
	ck_assert_int_eq(bench_run("", args, &out, &err), 1);
	ck_assert_ptr_nonnull(strstr(err, g_fake));
	free(out);
	free(err);
}
END_TEST

static Suite *
bench_suite(void)
{
	Suite	*s = suite_create("bench");
	TCase	*tc;

	tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_json);
	tcase_add_test(tc, test_markdown);
	tcase_add_test(tc, test_llama);
	suite_add_tcase(s, tc);
	tc = tcase_create("errors");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_llama_fails);
	tcase_add_test(tc, test_errors);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr;
	int	 failed;

	bench_setup();
	sr = srunner_create(bench_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	tu_tmpdir_free();
	return failed != 0;
}
