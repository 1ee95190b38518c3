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

/* Where a command was applied in the history it was written in: its
 * generation, an upper bound of the term of its entry (the term this
 * replica was in when it applied it, never below the term that committed
 * it) and its log index. */
struct journal_pos {
	uint64_t generation, term, index;
};

/* Records an applied command. Failures are logged, not fatal: the journal
 * serves recovery, not correctness of the running cluster. */
void journal_append(struct journal *j, const struct journal_pos *pos, const void *data, size_t len);

/* Turns the journal into the orphans file (replacing an older one). */
int journal_take_orphans(struct journal *j);

bool journal_has_orphans(struct journal *j);

/* The position a generation began from: the declaring host's last log
 * entry (term and index) in the generation before it. */
struct journal_origin {
	uint64_t generation; /* the generation that began there */
	uint64_t from_term, from_index;
};

/* Whether the command at @pos is in the history of the generation that
 * began at @o, without comparing positions of two histories: only a command
 * of the generation just before, committed at a term no later than the
 * declarer's last entry and at an index no further, is certainly there
 * (Raft's log matching and leader completeness, docs/store.md). */
bool journal_in_history(const struct journal_pos *pos, const struct journal_origin *o);

/* Calls @fn for each orphaned command of a generation before
 * @o->generation that journal_in_history() does not place in the new
 * history, oldest first. */
int journal_each_orphan(struct journal *j, const struct journal_origin *o,
                        void (*fn)(void *userdata, const struct journal_pos *pos, const void *data,
                                   size_t len),
                        void *userdata);

/* Removes the orphans file once merged. */
void journal_drop_orphans(struct journal *j);
