/* The leader's membership policy as a pure function of the Raft
 * configuration, the members table and what the leader has heard: which one
 * change to make next (docs/store.md, "Membership"). */
#pragma once

#include <raft.h>

#include "tables.h"

#define MEMBERSHIP_SLOTS 256

/* A replica within this many entries of the commit index is caught up: on
 * a busy cluster the commit index moves on while the reply is under way. */
#define MEMBERSHIP_CAUGHT_UP_LAG 64
/* How long a new standby may take to catch up before the next one starts
 * anyway (it is slow, or gone). */
#define MEMBERSHIP_CATCH_UP_MS 10000

struct membership {
	unsigned target_voters;    /* 0: 3, or 5 with at least 7 servers */
	unsigned promote_after_ms; /* a voter silent this long is replaced */
	raft_id self;
	uint64_t last_seen_ms[MEMBERSHIP_SLOTS]; /* by id % MEMBERSHIP_SLOTS */
	/* The last spare made a standby, and when: the next waits until it
	 * has caught up (membership_next()). */
	raft_id catching_up;
	uint64_t catching_up_since_ms;
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
