/* The small helpers of src/lib: hex, MAC, IPv4 address, cleanup. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/addr.h"
#include "lib/array.h"
#include "lib/cleanup.h"
#include "lib/error.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "lib/mac.h"

static void test_hex_round_trip(void **state)
{
	(void)state;
	const uint8_t in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
	char s[2 * sizeof(in) + 1];
	hex_encode(in, sizeof(in), s);
	assert_string_equal(s, "00017f80abff");
	uint8_t *out;
	size_t len;
	assert_int_equal(hex_decode(s, &out, &len), 0);
	assert_int_equal(len, sizeof(in));
	assert_memory_equal(out, in, sizeof(in));
	free(out);
	assert_int_equal(hex_decode("00017F80ABFF", &out, &len), 0);
	assert_memory_equal(out, in, sizeof(in));
	free(out);
	char *n = hex_encode_new(in, 2);
	assert_string_equal(n, "0001");
	free(n);
	assert_int_equal(hex_decode("", &out, &len), 0);
	assert_int_equal(len, 0);
	free(out);
}

static void test_hex_refuses(void **state)
{
	(void)state;
	uint8_t *out = NULL, fixed[2] = {7, 7};
	size_t len = 99;
	assert_int_equal(hex_decode("abc", &out, &len), -EINVAL);
	assert_int_equal(hex_decode("zz", &out, &len), -EINVAL);
	assert_int_equal(hex_decode("0g", &out, &len), -EINVAL);
	assert_null(out);
	assert_int_equal(len, 99);
	assert_int_equal(hex_decode_into("abcd", fixed, 2), 0);
	assert_int_equal(fixed[0], 0xab);
	assert_int_equal(fixed[1], 0xcd);
	assert_int_equal(hex_decode_into("abc", fixed, 2), -EINVAL);
	assert_int_equal(hex_decode_into("abcdef", fixed, 2), -EINVAL);
	assert_int_equal(hex_decode_into("12x4", fixed, 2), -EINVAL);
	assert_int_equal(fixed[0], 0xab); /* untouched by a failure */
	assert_int_equal(hex_digit('F'), 15);
	assert_int_equal(hex_digit('g'), -1);
}

static void test_hex_is_lower(void **state)
{
	(void)state;
	assert_true(hex_is_lower("00ff", 2));
	assert_false(hex_is_lower("00FF", 2));
	assert_false(hex_is_lower("00ff0", 2));
	assert_false(hex_is_lower("00f", 2));
	assert_false(hex_is_lower(NULL, 2));
	assert_true(hex_is_lower("", 0));
}

static void test_mac(void **state)
{
	(void)state;
	uint8_t mac[MAC_LEN], keep[MAC_LEN] = {1, 2, 3, 4, 5, 6};
	char s[MAC_STR_MAX];
	assert_true(mac_parse("02:AA:00:0b:c:01", mac));
	assert_string_equal(mac_format(mac, s), "02:aa:00:0b:0c:01");
	memcpy(mac, keep, sizeof(mac));
	assert_false(mac_parse("02:aa:00:00:00", mac));
	assert_false(mac_parse("zz:aa:00:00:00:01", mac));
	assert_false(mac_parse("", mac));
	assert_false(mac_parse(NULL, mac));
	assert_memory_equal(mac, keep, sizeof(mac));
	assert_string_equal(mac_format((uint8_t[]){0xff, 0, 0, 0, 0, 0x10}, s),
	                    "ff:00:00:00:00:10");
}

static void test_addr(void **state)
{
	(void)state;
	char s[ADDR_STR_MAX];
	struct in_addr a = {.s_addr = htonl(0x0a4d0102)};
	assert_string_equal(addr_format(a, s), "10.77.1.2");
	assert_string_equal(addr_format_host(0xcb00710a, s), "203.0.113.10");
	json_t *j = addr_json(a);
	assert_string_equal(json_string_value(j), "10.77.1.2");
	json_decref(j);
	j = addr_json_host(0);
	assert_string_equal(json_string_value(j), "0.0.0.0");
	json_decref(j);
}

static int freed_fd = -2;

static int scoped(bool keep, char **ret)
{
	_cleanup_free_ char *s = strdup("x");
	_cleanup_json_ json_t *j = json_object();
	_cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!s || !j || fd < 0)
		return -ENOMEM;
	freed_fd = fd;
	if (!keep)
		return -EAGAIN;
	*ret = TAKE_PTR(s);
	return 0;
}

static void test_cleanup(void **state)
{
	(void)state;
	char *s = NULL;
	assert_int_equal(scoped(false, &s), -EAGAIN);
	assert_null(s);
	assert_int_equal(fcntl(freed_fd, F_GETFD), -1); /* closed on the way out */
	assert_int_equal(scoped(true, &s), 0);
	assert_string_equal(s, "x");
	free(s);
	int fd = 5;
	assert_int_equal(TAKE_FD(fd), 5);
	assert_int_equal(fd, -1);
}

static void test_error_set(void **state)
{
	(void)state;
	char *e = NULL;
	assert_int_equal(error_set(&e, -EINVAL, "field \"%s\": bad", "x"), -EINVAL);
	assert_string_equal(e, "field \"x\": bad");
	free(e);
}

/* One line per interval per source, and the count of what was held back. */
static void test_log_ratelimit(void **state)
{
	(void)state;
	struct log_ratelimit rl = {0}, other = {0};
	unsigned held = 99;
	assert_true(log_ratelimit_ok(&rl, 5, 60000, &held));
	assert_int_equal(held, 0);
	for (unsigned i = 0; i < 1000; i++)
		assert_false(log_ratelimit_ok(&rl, 6 + i, 60000, &held));
	assert_true(log_ratelimit_ok(&other, 10, 60000, &held)); /* another source */
	assert_false(log_ratelimit_ok(&rl, 60004, 60000, &held));
	assert_true(log_ratelimit_ok(&rl, 60005, 60000, &held));
	assert_int_equal(held, 1001);
	assert_false(log_ratelimit_ok(&rl, 60006, 60000, &held));
	/* At time 0 too. */
	struct log_ratelimit zero = {0};
	assert_true(log_ratelimit_ok(&zero, 0, 1000, &held));
	assert_false(log_ratelimit_ok(&zero, 0, 1000, &held));
}

/* An array grows by doubling past any old fixed size and keeps what it
 * held; a size that cannot be represented is refused, the array intact. */
static void test_array_reserve(void **state)
{
	(void)state;
	int *v = NULL;
	size_t n = 0, cap = 0;
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(ARRAY_RESERVE(v, cap, n + 1), 0);
		v[n++] = i;
	}
	assert_int_equal(cap, 1024);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(v[i], i);
	assert_int_equal(ARRAY_RESERVE(v, cap, SIZE_MAX / 2), -EOVERFLOW);
	assert_int_equal(cap, 1024);
	assert_int_equal(v[999], 999);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hex_round_trip), cmocka_unit_test(test_hex_refuses),
	    cmocka_unit_test(test_hex_is_lower),   cmocka_unit_test(test_mac),
	    cmocka_unit_test(test_addr),           cmocka_unit_test(test_cleanup),
	    cmocka_unit_test(test_error_set),      cmocka_unit_test(test_log_ratelimit),
	    cmocka_unit_test(test_array_reserve),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
