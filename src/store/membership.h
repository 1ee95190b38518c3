/* The leader's membership policy as a pure function of the Raft
 * configuration, the members table and what the leader has heard: which one
 * change to make next (docs/store.md, "Membership"). */
#pragma once

#include <raft.h>

#include "tables.h"

#define MEMBERSHIP_SLOTS 256

struct membership {
	unsigned target_voters;    /* 0: 3, or 5 with at least 7 servers */
	unsigned promote_after_ms; /* a voter silent this long is replaced */
	raft_id self;
	uint64_t last_seen_ms[MEMBERSHIP_SLOTS]; /* by id % MEMBERSHIP_SLOTS */
};

enum membership_action {
	MEMBERSHIP_NONE,
	MEMBERSHIP_ADD,    /* raft_add(id, address): a member Raft lacks */
	MEMBERSHIP_ASSIGN, /* raft_assign(id, role) */
};

struct membership_change {
	enum membership_action action;
	raft_id id;
	int role;
	const char *address;
	const char *why;
};

/* Records what the leader @r has heard by @now_ms (call on every tick while
 * leader), and returns the next change. @r must be a leader. */
struct membership_change membership_next(struct membership *m, const struct raft *r,
                                         const struct store_state *state, uint64_t now_ms);

/* The number of voters wanted for a configuration of @n servers. */
unsigned membership_target(const struct membership *m, unsigned n);

/* Milliseconds since the leader last heard from @id (0 if never tracked). */
uint64_t membership_silence(const struct membership *m, raft_id id, uint64_t now_ms);
