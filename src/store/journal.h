/* The journal: every command this replica applied, tagged with the cluster
 * generation and log index, kept so that a forced recovery loses nothing.
 * When a host learns that the cluster went on under a new generation without
 * it, its journal becomes the orphans file, and the commands past the point
 * the new generation began from are merged back (docs/store.md).
 *
 * The journal keeps the last 16-32 MiB of commands (two files, rotated);
 * orphans older than that are not merged, and the host says so. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal;

int journal_open(const char *dir, struct journal **ret_journal);
void journal_close(struct journal *j);

/* Records an applied command. Failures are logged, not fatal: the journal
 * serves recovery, not correctness of the running cluster. */
void journal_append(struct journal *j, uint64_t generation, uint64_t index, const void *data,
                    size_t len);

/* Turns the journal into the orphans file (replacing an older one). */
int journal_take_orphans(struct journal *j);

bool journal_has_orphans(struct journal *j);

/* Calls @fn for each orphaned command of a generation before @generation
 * with an index above @from_index, oldest first. */
int journal_each_orphan(struct journal *j, uint64_t generation, uint64_t from_index,
                        void (*fn)(void *userdata, const void *data, size_t len), void *userdata);

/* Removes the orphans file once merged. */
void journal_drop_orphans(struct journal *j);
