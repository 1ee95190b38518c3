/* The store's tables as a Raft state machine: apply, snapshot and restore
 * for libraft's raft_fsm, with hooks for what the store does around them.
 * Used by store.c on the real cluster and by the consensus tests on
 * libraft's raft_fixture. */
#pragma once

#include <raft.h>

#include "tables.h"

struct store_fsm {
	struct raft_fsm fsm; /* first: libraft hands back a pointer to it */
	struct store_state *state;
	/* After each applied command (may be NULL). */
	void (*applied)(void *userdata, const struct raft_buffer *buf, const struct store_cmd *cmd,
	                const struct store_result *result);
	/* A log entry or snapshot that does not decode (may be NULL). */
	void (*corrupt)(void *userdata, const char *why);
	void *userdata;
	/* The result of the last apply. libraft hands it to the proposer's
	 * callback right after the apply, and to nobody on followers, so it
	 * lives here rather than on the heap: copy it, never free it. */
	struct store_result result;
};

/* Sets up @f to apply to @state. */
void store_fsm_init(struct store_fsm *f, struct store_state *state);

/* Pads @len bytes of @data to a multiple of 8 in a raft_malloc()ed buffer,
 * as log entries must be (docs/store.md). NULL when out of memory. */
void *store_fsm_entry(const void *data, size_t len, size_t *ret_len);
