#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/proto.h"

static int parse(const char *line, struct ctl_request *req, char *error)
{
	char *e = NULL;
	int r = ctl_request_parse(line, strlen(line), req, &e);
	snprintf(error, 256, "%s", e ? e : "");
	free(e);
	return r;
}

static void test_good_requests(void **state)
{
	struct ctl_request req;
	char error[256];
	(void)state;

	assert_int_equal(
	    parse("{\"id\": 7, \"cmd\": \"status\", \"args\": {\"x\": 1}}", &req, error), 0);
	assert_true(req.has_id);
	assert_int_equal(req.id, 7);
	assert_string_equal(req.cmd, "status");
	assert_int_equal(json_integer_value(json_object_get(req.args, "x")), 1);
	ctl_request_done(&req);

	assert_int_equal(parse("  {\"cmd\":\"status\"}  ", &req, error), 0);
	assert_false(req.has_id);
	assert_true(json_is_object(req.args));
	assert_int_equal(json_object_size(req.args), 0);
	ctl_request_done(&req);
}

struct bad_case {
	const char *line;
	const char *error;
	bool has_id;
};

static const struct bad_case bad_cases[] = {
    {"", "invalid JSON at byte 0: '[' or '{' expected near end of file", false},
    {"{\"cmd\": ", "invalid JSON at byte 8: unexpected token near end of file", false},
    {"[1, 2]", "request must be a JSON object", false},
    {"{\"id\": \"7\", \"cmd\": \"status\"}", "field \"id\": expected an integer", false},
    {"{\"id\": 3}", "field \"cmd\": missing", true},
    {"{\"id\": 3, \"cmd\": 5}", "field \"cmd\": expected a non-empty string of at most 63 bytes",
     true},
    {"{\"cmd\": \"\"}", "field \"cmd\": expected a non-empty string of at most 63 bytes", false},
    {"{\"cmd\": \"s\\u0000x\"}",
     "invalid JSON at byte 18: \\u0000 is not allowed without JSON_ALLOW_NUL near "
     "'\"s\\u0000x\"'",
     false},
    {"{\"cmd\": \"status\", \"args\": [1]}", "field \"args\": expected an object", false},
    {"{\"cmd\": \"status\", \"argz\": {}}", "field \"argz\": unknown", false},
    {"{\"cmd\": \"a\", \"cmd\": \"b\"}",
     "invalid JSON at byte 18: duplicate object key near '\"cmd\"'", false},
};

static void test_bad_requests(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct ctl_request req;
		char error[256] = "";
		int r = parse(bad_cases[i].line, &req, error);
		if (r != -EINVAL || strcmp(error, bad_cases[i].error) != 0)
			fail_msg("case %zu: got %d \"%s\", expected \"%s\"", i, r, error,
			         bad_cases[i].error);
		assert_int_equal(req.has_id, bad_cases[i].has_id);
		assert_null(req.args);
	}
}

static void test_too_long(void **state)
{
	struct ctl_request req;
	char *error = NULL;
	(void)state;
	size_t len = CTL_LINE_MAX + 1;
	char *line = malloc(len);
	memset(line, ' ', len);
	assert_int_equal(ctl_request_parse(line, len, &req, &error), -EINVAL);
	assert_string_equal(error, "request longer than 65536 bytes");
	free(error);
	free(line);
}

static void test_reply_round_trip(void **state)
{
	struct ctl_request req = {.has_id = true, .id = 9};
	char *error = NULL;
	bool ok;
	json_t *result = NULL;
	char *reason = NULL;
	(void)state;

	char *line = ctl_reply_encode(&req, json_pack("{s:i}", "n", 3), NULL);
	assert_string_equal(line, "{\"ok\":true,\"result\":{\"n\":3},\"id\":9}\n");
	assert_int_equal(ctl_reply_parse(line, strlen(line) - 1, &ok, &result, &reason, &error), 0);
	assert_true(ok);
	assert_int_equal(json_integer_value(json_object_get(result, "n")), 3);
	json_decref(result);
	free(line);

	line = ctl_reply_encode(NULL, NULL, "unknown command \"x\"");
	assert_string_equal(line, "{\"ok\":false,\"error\":\"unknown command \\\"x\\\"\"}\n");
	assert_int_equal(ctl_reply_parse(line, strlen(line), &ok, &result, &reason, &error), 0);
	assert_false(ok);
	assert_string_equal(reason, "unknown command \"x\"");
	free(reason);
	free(line);

	assert_int_equal(ctl_reply_parse("{\"ok\":1}", 8, &ok, &result, &reason, &error), -EINVAL);
	assert_string_equal(error, "reply field \"ok\": expected a boolean");
	free(error);
}

static void test_request_encode(void **state)
{
	(void)state;
	char *line = ctl_request_encode(1, "status", NULL);
	assert_string_equal(line, "{\"id\":1,\"cmd\":\"status\",\"args\":{}}\n");
	struct ctl_request req;
	char *error = NULL;
	assert_int_equal(ctl_request_parse(line, strlen(line) - 1, &req, &error), 0);
	assert_null(error);
	assert_string_equal(req.cmd, "status");
	ctl_request_done(&req);
	free(line);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_requests),  cmocka_unit_test(test_bad_requests),
	    cmocka_unit_test(test_too_long),       cmocka_unit_test(test_reply_round_trip),
	    cmocka_unit_test(test_request_encode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
