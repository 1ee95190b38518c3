/* Compatibility of the store's encodings with files checked in before the
 * tables moved to their services: a snapshot of encoding 3 with rows in
 * every table, one of encoding 2, one encoded command per table, and a
 * snapshot of encoding 5, whose admissions carry TLS keys
 * (tests/unit/golden/store-*). Each must load, dump as the checked-in
 * JSON, and encode back to the same bytes but for what later encodings
 * add. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/fileio.h"
#include "store/tables.h"
#include "tables-all.h"
#include "trust/tables.h"

static char *golden(const char *name)
{
	const char *dir = getenv("GOLDEN_DIR");
	char *text = NULL;
	if (!dir)
		fail_msg("GOLDEN_DIR is not set (run the tests through meson)");
	if (file_read_state(dir, name, &text) < 0)
		fail_msg("cannot read golden file %s/%s", dir, name);
	return text;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes one line of lowercase hex into a new buffer. */
static uint8_t *unhex(const char *line, size_t chars, size_t *ret_len)
{
	assert_int_equal(chars % 2, 0);
	uint8_t *data = malloc(chars / 2 + 1);
	assert_non_null(data);
	for (size_t i = 0; i < chars / 2; i++) {
		int hi = hex_digit(line[2 * i]), lo = hex_digit(line[2 * i + 1]);
		assert_true(hi >= 0 && lo >= 0);
		data[i] = (uint8_t)(hi << 4 | lo);
	}
	*ret_len = chars / 2;
	return data;
}

static uint8_t *golden_bytes(const char *name, size_t *ret_len)
{
	char *text = golden(name);
	uint8_t *data = unhex(text, strcspn(text, "\n"), ret_len);
	free(text);
	return data;
}

/* Compares the dump with @name's; the tables of later encodings (labels,
 * since 4) are not in those files and must be empty. */
static void assert_dump(const struct store_state *s, const char *name)
{
	char *expected = golden(name);
	json_t *dump = store_state_dump(s);
	assert_int_equal(json_array_size(json_object_get(dump, "labels")), 0);
	assert_true(json_is_array(json_object_get(dump, "labels")));
	json_object_del(dump, "labels");
	/* Since 6: no change of policy under way, nobody acknowledged. */
	assert_int_equal(json_integer_value(json_object_get(json_object_get(dump, "policy_epochs"),
	                                                    "pending")),
	                 0);
	assert_int_equal(json_array_size(json_object_get(dump, "policy_acks")), 0);
	json_object_del(dump, "policy_epochs");
	json_object_del(dump, "policy_acks");
	char *actual = json_dumps(dump, JSON_INDENT(2));
	assert_non_null(actual);
	size_t n = strlen(expected);
	while (n && expected[n - 1] == '\n')
		n--;
	if (strlen(actual) != n || memcmp(actual, expected, n) != 0)
		fail_msg("the dump differs from %s:\n%s", name, actual);
	free(actual);
	json_decref(dump);
	free(expected);
}

static struct store_state *restore(const char *name)
{
	size_t len;
	uint8_t *data = golden_bytes(name, &len);
	struct store_state *s;
	char *error = NULL;
	assert_int_equal(store_state_new(&s), 0);
	if (store_state_restore(s, data, len, &error) < 0)
		fail_msg("%s does not load: %s", name, error);
	free(data);
	return s;
}

/* What encoding 6 adds at the end of a snapshot with no change of policy
 * under way: the policy's epochs (tag, four zero numbers, an empty text)
 * and its acknowledgements (tag, a zero count). */
#define SINCE_6 (1 + 8 * 4 + 4 + 1 + 4)

static void assert_since_6_empty(const uint8_t *tail)
{
	assert_int_equal(tail[0], STORE_POLICY_EPOCHS);
	for (size_t i = 1; i < SINCE_6; i++)
		if (i != 1 + 8 * 4 + 4)
			assert_int_equal(tail[i], 0);
	assert_int_equal(tail[1 + 8 * 4 + 4], STORE_POLICY_ACKS);
}

static void test_snapshot_v3_loads_and_encodes_the_same(void **state)
{
	(void)state;
	size_t len, again_len;
	uint8_t *data = golden_bytes("store-snapshot-v3.hex", &len), *again;
	struct store_state *s = restore("store-snapshot-v3.hex");
	assert_dump(s, "store-dump-v3.json");
	for (unsigned t = 1; t <= 14; t++)
		assert_true(store_count(s, t) >= 1);
	/* Written again in today's encoding, it adds the labels table (id 15,
	 * empty: its id and a zero count, since 4) at the end and an empty TLS
	 * key to each admission and attestation (an empty string: two zero
	 * bytes, since 5), and reads back as the same state. */
	static const uint8_t labels_empty[] = {15, 0, 0, 0, 0};
	size_t keyed = store_count(s, TRUST_ADMISSIONS) + store_count(s, TRUST_ATTESTATIONS);
	assert_int_equal(store_state_snapshot(s, &again, &again_len), 0);
	assert_int_equal(again_len, len + sizeof(labels_empty) + 2 * keyed + SINCE_6);
	assert_int_equal(data[4], 3);
	assert_int_equal(again[4], STORE_ENCODING_VERSION);
	assert_memory_equal(again + again_len - SINCE_6 - sizeof(labels_empty), labels_empty,
	                    sizeof(labels_empty));
	assert_since_6_empty(again + again_len - SINCE_6);
	struct store_state *back;
	char *error = NULL;
	assert_int_equal(store_state_new(&back), 0);
	assert_int_equal(store_state_restore(back, again, again_len, &error), 0);
	assert_dump(back, "store-dump-v3.json");
	store_state_free(back);
	free(again);
	free(data);
	store_state_free(s);
}

/* Encoding 5: admissions carry the TLS key the host attested with, and
 * attestations the key of the last admission. The
 * checked-in snapshot loads, dumps as checked in (the key in "tls_fp"),
 * and encodes back to the same bytes and what 6 adds. */
static void test_snapshot_v5_keys(void **state)
{
	(void)state;
	size_t len, again_len;
	uint8_t *data = golden_bytes("store-snapshot-v5.hex", &len), *again;
	struct store_state *s = restore("store-snapshot-v5.hex");
	assert_int_equal(data[4], 5);
	assert_dump(s, "store-dump-v5.json");
	const struct trust_admission *a = trust_admission_find(s, "h1");
	assert_non_null(a);
	assert_int_equal(strlen(a->tls_fp), 64);
	assert_ptr_equal(trust_admission_by_key(s, a->tls_fp), a);
	/* Written again in today's encoding: the same bytes but the version,
	 * and what 6 adds at the end. */
	assert_int_equal(store_state_snapshot(s, &again, &again_len), 0);
	assert_int_equal(again_len, len + SINCE_6);
	assert_int_equal(again[4], STORE_ENCODING_VERSION);
	again[4] = data[4];
	assert_memory_equal(again, data, len);
	assert_since_6_empty(again + len);
	free(again);
	free(data);
	store_state_free(s);
}

/* Encoding 2 had no attestations, devices or manager: they load empty, and
 * the state is written again in today's encoding. */
static void test_snapshot_v2_loads(void **state)
{
	(void)state;
	struct store_state *s = restore("store-snapshot-v2.hex");
	assert_dump(s, "store-dump-v2.json");
	uint8_t *data;
	size_t len;
	assert_int_equal(store_state_snapshot(s, &data, &len), 0);
	assert_int_equal(data[4], STORE_ENCODING_VERSION);
	free(data);
	store_state_free(s);
}

/* One command per table, in table order, then a delete: each decodes,
 * encodes back to the same bytes, and applies to an empty state as it did
 * when it was written. */
static void test_commands_decode_and_encode_the_same(void **state)
{
	(void)state;
	static const unsigned tables[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 4};
	char *text = golden("store-commands-v3.hex");
	struct store_state *s;
	assert_int_equal(store_state_new(&s), 0);
	const char *line = text;
	size_t i = 0;
	for (; *line; i++) {
		size_t chars = strcspn(line, "\n"), len, again_len;
		uint8_t *data = unhex(line, chars, &len), *again;
		struct store_cmd cmd;
		char *error = NULL;
		if (store_cmd_decode(data, len, &cmd, &error) < 0)
			fail_msg("command %zu does not decode: %s", i, error);
		assert_true(i < sizeof(tables) / sizeof(tables[0]));
		assert_int_equal(cmd.table, tables[i]);
		assert_int_equal(cmd.op, i < 14 ? STORE_PUT : STORE_DELETE);
		/* The same bytes but the encoding version (after the magic):
		 * today's; and a put of an admission or an attestation gains its
		 * empty TLS key at the end (two zero bytes, since 5). */
		size_t grown = (cmd.table == TRUST_ADMISSIONS || cmd.table == TRUST_ATTESTATIONS) &&
		                       cmd.op == STORE_PUT
		                   ? 2
		                   : 0;
		assert_int_equal(store_cmd_encode(&cmd, &again, &again_len), 0);
		assert_int_equal(again_len, len + grown);
		assert_int_equal(data[2], 3);
		assert_int_equal(again[2], STORE_ENCODING_VERSION);
		again[2] = data[2];
		assert_memory_equal(again, data, len);
		for (size_t k = 0; k < grown; k++)
			assert_int_equal(again[len + k], 0);
		struct store_result res;
		assert_int_equal(store_state_apply(s, &cmd, &res), 0);
		if (i < 14 && !res.applied)
			fail_msg("command %zu is rejected: %s", i, res.reason);
		if (i == 14)
			assert_string_equal(res.reason, "no such trusted measurement");
		store_cmd_done(&cmd);
		free(again);
		free(data);
		line += chars;
		line += *line == '\n';
	}
	assert_int_equal(i, sizeof(tables) / sizeof(tables[0]));
	store_state_free(s);
	free(text);
}

int main(void)
{
	register_all_tables();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_snapshot_v3_loads_and_encodes_the_same),
	    cmocka_unit_test(test_snapshot_v2_loads),
	    cmocka_unit_test(test_snapshot_v5_keys),
	    cmocka_unit_test(test_commands_decode_and_encode_the_same),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
