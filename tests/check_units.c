/*
 * check_units.c - units_parse_size, the one size parser of the
 * configuration, the memory budget and simulated NUMA topologies.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>

#include "units.h"

START_TEST(test_sizes)
{
	uint64_t v;

	ck_assert_int_eq(units_parse_size("0", &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(units_parse_size("4096", &v), 0);
	ck_assert_uint_eq(v, 4096);
	ck_assert_int_eq(units_parse_size("12b", &v), 0);
	ck_assert_uint_eq(v, 12);
	ck_assert_int_eq(units_parse_size("3k", &v), 0);
	ck_assert_uint_eq(v, 3072);
	ck_assert_int_eq(units_parse_size("64KiB", &v), 0);
	ck_assert_uint_eq(v, 64u << 10);
	ck_assert_int_eq(units_parse_size("512M", &v), 0);
	ck_assert_uint_eq(v, 512u << 20);
	ck_assert_int_eq(units_parse_size("1mib", &v), 0);
	ck_assert_uint_eq(v, 1u << 20);
	ck_assert_int_eq(units_parse_size("16G", &v), 0);
	ck_assert_uint_eq(v, 16ull << 30);
	ck_assert_int_eq(units_parse_size("2GIB", &v), 0);
	ck_assert_uint_eq(v, 2ull << 30);
	ck_assert_int_eq(units_parse_size("2T", &v), 0);
	ck_assert_uint_eq(v, 2ull << 40);
	ck_assert_int_eq(units_parse_size("1TiB", &v), 0);
	ck_assert_uint_eq(v, 1ull << 40);
}
END_TEST

START_TEST(test_limits)
{
	uint64_t v = 7;

	ck_assert_int_eq(units_parse_size("18446744073709551615", &v), 0);
	ck_assert_uint_eq(v, UINT64_MAX);
	ck_assert_int_eq(units_parse_size("17179869183G", &v), 0);
	ck_assert_uint_eq(v, 17179869183ull << 30);
	v = 7;
	ck_assert_int_eq(units_parse_size("18446744073709551616", &v),
	    -ERANGE);
	ck_assert_int_eq(units_parse_size("99999999999999999999", &v),
	    -ERANGE);
	ck_assert_int_eq(units_parse_size("17179869184G", &v), -ERANGE);
	ck_assert_int_eq(units_parse_size("16777216T", &v), -ERANGE);
	ck_assert_uint_eq(v, 7);	/* untouched on failure */
}
END_TEST

START_TEST(test_errors)
{
	static const char *const bad[] = {
		"", " 8G", "8G ", "-1", "+1", "1.5G", "16GB", "8 G", "G",
		"0x10", "1e3", "12kb", "5P", "1Gi", "1%",
	};
	uint64_t v = 7;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(units_parse_size(bad[i], &v) == -EINVAL,
		    "'%s' accepted", bad[i]);
	ck_assert_int_eq(units_parse_size(NULL, &v), -EINVAL);
	ck_assert_uint_eq(v, 7);
}
END_TEST

static Suite *
units_suite(void)
{
	Suite *s = suite_create("units");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_test(tc, test_sizes);
	suite_add_tcase(s, tc);
	tc = tcase_create("limits");
	tcase_add_test(tc, test_limits);
	suite_add_tcase(s, tc);
	tc = tcase_create("errors");
	tcase_add_test(tc, test_errors);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(units_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
