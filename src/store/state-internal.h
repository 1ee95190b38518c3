/* Private to src/store: the replicated state's layout, shared by the
 * registry and rows (state.c), the encodings (codec.c) and the store's own
 * tables (core.c). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tables.h"

#define STORE_TABLE_IDS 256 /* a table id is one byte on the wire */

/* One table's rows: sorted by key, or the one row of a one-row table
 * (allocated at its first put; zero until then). */
struct state_table {
	size_t n, cap;
	unsigned char *rows; /* n rows of the table's row_size */
};

struct store_state {
	struct state_table tables[STORE_TABLE_IDS];
	uint64_t next_conflict;
};

/* Row @i of @t, of @table's row size. */
static inline void *state_row_at(const struct state_table *t, const struct store_table *table,
                                 size_t i)
{
	return t->rows + i * table->row_size;
}

/* Frees every row of @s (not @s). */
void state_clear(struct store_state *s);
