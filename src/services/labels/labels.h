/* Labels (docs/labels.md): a note of the admin's on any host or device of
 * the network ("front desk PC", "printer, 2nd floor"), kept in the store so
 * every agent shows the same. The smallest real service: one table, three
 * commands and a status; docs/design.md, "Adding a service", walks
 * through it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "store/tables.h"

/* Table id: on the wire, never renumbered; since encoding 4. */
#define LABELS_TABLE 15

#define LABELS_TEXT_MAX 128

struct labels_label {
	char name[STORE_NAME_MAX]; /* key: a host's or device's name */
	char text[LABELS_TEXT_MAX];
	uint64_t set_ms; /* when the admin set it */
};

/* NULL-terminated, for store_tables_register(). */
extern const struct store_table *const labels_tables[];

/* True when @name is 1-31 letters, digits, '.', '_' or '-'. */
bool labels_name_valid(const char *name);
/* True when @text is 1-127 printable characters (UTF-8 allowed). */
bool labels_text_valid(const char *text);

struct service;
extern const struct service labels_service;
