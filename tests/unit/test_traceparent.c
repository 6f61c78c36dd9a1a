/*
 * Unit tests for core/traceparent.c: the valid forms and every invalid form the
 * W3C Trace Context recommendation (level 1 and 2, "traceparent Header") names.
 */
#include <check.h>
#include <errno.h>
#include <string.h>

#include <periscope/traceparent.h>

#define TP_OK "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int parse(const char *s, struct ps_traceparent *out)
{
	return ps_traceparent_parse(s, strlen(s), out);
}

START_TEST(test_valid_00)
{
	static const uint8_t trace[16] = { 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
					   0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };
	static const uint8_t parent[8] = { 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 };
	struct ps_traceparent tp;
	char back[PS_TRACEPARENT_LEN + 1];

	ck_assert_int_eq(parse(TP_OK, &tp), 0);
	ck_assert_int_eq(tp.version, 0);
	ck_assert_mem_eq(tp.trace_id, trace, 16);
	ck_assert_mem_eq(tp.parent_id, parent, 8);
	ck_assert_int_eq(tp.flags, PS_TRACE_FLAG_SAMPLED);
	ps_traceparent_format(&tp, back);
	ck_assert_str_eq(back, TP_OK);
	ck_assert(ps_traceparent_valid(TP_OK, strlen(TP_OK)));

	/* not sampled; unknown flag bits are carried, not judged */
	ck_assert_int_eq(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &tp), 0);
	ck_assert_int_eq(tp.flags, 0);
	ck_assert_int_eq(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &tp), 0);
	ck_assert_int_eq(tp.flags, 0xff);
	/* one nonzero digit is enough */
	ck_assert_int_eq(parse("00-00000000000000000000000000000001-0000000000000001-01", &tp), 0);
	ck_assert_int_eq(tp.trace_id[15], 1);
	ck_assert_int_eq(tp.parent_id[7], 1);
}
END_TEST

START_TEST(test_future_versions)
{
	struct ps_traceparent tp;

	/* the 00-compatible prefix is read, whatever follows a '-' */
	ck_assert_int_eq(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &tp), 0);
	ck_assert_int_eq(tp.version, 0xcc);
	ck_assert_int_eq(tp.flags, 1);
	ck_assert_int_eq(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-"
			       "future-will-be-like",
			       &tp),
			 0);
	ck_assert_int_eq(tp.parent_id[7], 0xb7);
	ck_assert_int_eq(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-", &tp), 0);
	/* longer without the '-' after the flags */
	ck_assert_int_eq(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01what", &tp),
			 -EINVAL);
	/* shorter than the prefix */
	ck_assert_int_eq(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", &tp),
			 -EINVAL);
	/* the prefix's own rules still hold */
	ck_assert_int_eq(parse("cc-00000000000000000000000000000000-00f067aa0ba902b7-01-x", &tp),
			 -EINVAL);
	ck_assert_int_eq(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00F067aa0ba902b7-01-x", &tp),
			 -EINVAL);
}
END_TEST

/* Every one of these must be rejected. */
static const char *const invalid[] = {
	/* version ff is forbidden */
	"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
	/* version 00 is exactly 55 characters */
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
	"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",
	"",
	"00",
	/* all-zero ids */
	"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
	"00-00000000000000000000000000000000-0000000000000000-00",
	/* uppercase hex anywhere */
	"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
	"0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	/* not hex */
	"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bx-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-.1",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7- 1",
	/* delimiters: missing, misplaced, or another character */
	"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
	"004bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b701--",
	"-00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
	/* surrounding whitespace belongs to the header parser, not here */
	" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
};

START_TEST(test_invalid)
{
	struct ps_traceparent tp;

	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		memset(&tp, 0x5a, sizeof(tp));
		ck_assert_msg(parse(invalid[i], &tp) == -EINVAL, "accepted: \"%s\"", invalid[i]);
		ck_assert_msg(!ps_traceparent_valid(invalid[i], strlen(invalid[i])),
			      "valid: \"%s\"", invalid[i]);
		ck_assert_int_eq(tp.version, 0x5a); /* out untouched on failure */
	}
}
END_TEST

START_TEST(test_bounds)
{
	char buf[64];

	/* len is the bound: bytes after it are never read */
	memcpy(buf, TP_OK, sizeof(TP_OK));
	ck_assert_int_eq(ps_traceparent_parse(buf, PS_TRACEPARENT_LEN - 1, NULL), -EINVAL);
	ck_assert_int_eq(ps_traceparent_parse(buf, PS_TRACEPARENT_LEN, NULL), 0);
	ck_assert_int_eq(ps_traceparent_parse(NULL, 55, NULL), -EINVAL);
	/* an embedded NUL is not hex */
	buf[20] = '\0';
	ck_assert_int_eq(ps_traceparent_parse(buf, PS_TRACEPARENT_LEN, NULL), -EINVAL);
}
END_TEST

static Suite *traceparent_suite(void)
{
	Suite *s = suite_create("traceparent");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_valid_00);
	tcase_add_test(tc, test_future_versions);
	tcase_add_test(tc, test_invalid);
	tcase_add_test(tc, test_bounds);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(traceparent_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
