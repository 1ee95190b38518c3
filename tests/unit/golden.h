/* Golden files for the unit tests: compare output with a checked-in file
 * under $GOLDEN_DIR; with UPDATE_GOLDEN=1 in the environment, rewrite it. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fileio.h"

static inline void assert_golden(const char *name, const char *actual)
{
	const char *dir = getenv("GOLDEN_DIR");
	char *expected = NULL;
	if (!dir)
		fail_msg("GOLDEN_DIR is not set (run the tests through meson)");
	if (getenv("UPDATE_GOLDEN")) {
		assert_int_equal(file_write_state(dir, name, actual), 0);
		return;
	}
	if (file_read_state(dir, name, &expected) < 0)
		fail_msg("cannot read golden file %s/%s", dir, name);
	if (strcmp(expected, actual) != 0)
		fail_msg("output differs from %s/%s (UPDATE_GOLDEN=1 rewrites it):\n%s", dir, name,
		         actual);
	free(expected);
}
