#include "membership.h"

#include <stdbool.h>

unsigned membership_target(const struct membership *m, unsigned n)
{
	if (m->target_voters)
		return m->target_voters;
	return n >= 7 ? 5 : 3;
}

static uint64_t *seen(struct membership *m, raft_id id)
{
	return &m->last_seen_ms[id % MEMBERSHIP_SLOTS];
}

uint64_t membership_silence(const struct membership *m, raft_id id, uint64_t now_ms)
{
	uint64_t t = m->last_seen_ms[id % MEMBERSHIP_SLOTS];
	return t ? now_ms - t : 0;
}

static struct membership_change assign(raft_id id, int role, const char *why)
{
	return (struct membership_change){
	    .action = MEMBERSHIP_ASSIGN, .id = id, .role = role, .why = why};
}

static bool caught_up(const struct raft *r, const struct raft_progress *p)
{
	return p->match_index + MEMBERSHIP_CAUGHT_UP_LAG >= r->commit_index;
}

struct membership_change membership_next(struct membership *m, const struct raft *r,
                                         const struct store_state *state, uint64_t now_ms)
{
	struct membership_change none = {.action = MEMBERSHIP_NONE};
	unsigned voters = 0, live_voters = 0;
	raft_id dead_voter = 0, live_standby = 0, spare = 0;
	bool catching_up = false;

	for (unsigned i = 0; i < r->configuration.n; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		const struct raft_progress *p = &r->leader_state.progress[i];
		uint64_t *t = seen(m, srv->id);
		if (srv->id == m->self || p->recent_recv || *t == 0)
			*t = now_ms;
		bool gone = now_ms - *t > m->promote_after_ms;
		if (srv->role == RAFT_VOTER) {
			voters++;
			if (!gone)
				live_voters++;
			else if (!dead_voter)
				dead_voter = srv->id;
		} else if (srv->role == RAFT_STANDBY && !gone && !live_standby && caught_up(r, p)) {
			live_standby = srv->id;
		} else if (srv->role == RAFT_SPARE && !spare) {
			spare = srv->id;
		}
		if (srv->id == m->catching_up && srv->role == RAFT_STANDBY && !caught_up(r, p) &&
		    now_ms - m->catching_up_since_ms < MEMBERSHIP_CATCH_UP_MS)
			catching_up = true;
	}

	/* One change at a time: Raft allows no other while one is pending. */
	if (r->configuration_uncommitted_index != 0)
		return none;

	for (size_t i = 0; i < store_count(state, STORE_MEMBERS); i++) {
		const struct store_member *mem = store_row(state, STORE_MEMBERS, i);
		bool present = false;
		for (unsigned k = 0; k < r->configuration.n; k++)
			present |= r->configuration.servers[k].id == mem->id;
		if (!present)
			return (struct membership_change){.action = MEMBERSHIP_ADD,
			                                  .id = mem->id,
			                                  .address = mem->address,
			                                  .why = "a member Raft does not have yet"};
	}
	/* A new standby is sent the whole log (or a snapshot) until it has
	 * caught up, again at every heartbeat while it has not answered: one
	 * at a time, or sixty hosts joining at once would have the leader
	 * send sixty logs twenty times a second. */
	if (spare && !catching_up) {
		m->catching_up = spare;
		m->catching_up_since_ms = now_ms;
		return assign(spare, RAFT_STANDBY, "a new replica");
	}

	unsigned want = membership_target(m, r->configuration.n);
	if (live_standby && (live_voters < want || (dead_voter && voters <= want)))
		return assign(live_standby, RAFT_VOTER,
		              dead_voter ? "replaces an unreachable voter" : "voters are missing");
	/* The unreachable voter goes once its replacement votes, which keeps
	 * the quorum small. */
	if (dead_voter && voters > want)
		return assign(dead_voter, RAFT_STANDBY, "unreachable for too long");
	if (voters > want && live_voters > want) {
		for (unsigned i = r->configuration.n; i-- > 0;) {
			const struct raft_server *srv = &r->configuration.servers[i];
			if (srv->role == RAFT_VOTER && srv->id != m->self)
				return assign(srv->id, RAFT_STANDBY, "more voters than wanted");
		}
	}
	return none;
}
