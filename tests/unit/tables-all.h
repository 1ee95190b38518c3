/* Registers every module's store tables, as ettmd does before it opens the
 * store: a test or fuzzer that makes a state calls this first. */
#pragma once

#include <stdio.h>
#include <stdlib.h>

#include "services/devices/tables.h"
#include "services/labels/labels.h"
#include "services/nat/tables.h"
#include "store/tables.h"
#include "switch/tables.h"
#include "trust/tables.h"

static inline void register_all_tables(void)
{
	const struct store_table *const *lists[] = {trust_tables, switch_tables, nat_tables,
	                                            devices_tables, labels_tables};
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		char *error = NULL;
		if (store_tables_register(lists[i], &error) < 0) {
			fprintf(stderr, "store tables: %s\n", error ? error : "out of memory");
			abort();
		}
	}
}
