/* The leader's upkeep of the membership (roles recorded in the members
 * table, voters replaced when they stay unreachable), joining through the
 * seeds, and the periodic tick that drives both. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/fileio.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "store-internal.h"

/* ---- membership (leader) ---- */

void store_member_role_done(void *userdata, int status, const struct store_result *res,
                            const char *error)
{
	(void)userdata;
	(void)res;
	if (status < 0)
		log_warn("store: cannot record a member's role: %s", error);
}

/* Records in the members table the role Raft now gives @id. */
static void record_role(struct store *s, raft_id id, int role)
{
	const struct store_member *m = store_member_find(s->state, id);
	if (!m || m->role == role)
		return;
	struct store_cmd cmd = {.table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = wall_ms()};
	(*STORE_CMD_ROW(&cmd, struct store_member)) = *m;
	STORE_CMD_ROW(&cmd, struct store_member)->role = (uint8_t)role;
	store_propose(s, &cmd, store_member_role_done, NULL);
}

static void maintain_membership(struct store *s);

static void change_cb(struct raft_change *req, int status)
{
	struct store *s = req->data;
	s->changing = false;
	if (status != 0) {
		log_warn("store: membership change for %" PRIu64 " failed: %s", s->change_id,
		         raft_strerror(status));
		return;
	}
	if (s->change_role >= 0) {
		log_info("store: member %" PRIu64 " is now %s", s->change_id,
		         s->change_role == RAFT_VOTER ? "a voter" : "a standby");
		record_role(s, s->change_id, s->change_role);
	}
	/* The next step at once, not at the next tick: each host that joins
	 * takes two (a replica, then a standby), and sixty hosts joining
	 * together would wait half a minute for the ticks. libraft has
	 * cleared the change and its uncommitted index before this call. */
	if (s->phase == PHASE_RUNNING && !s->raft_closing && s->raft.state == RAFT_LEADER)
		maintain_membership(s);
}

/* One step towards the wanted membership (membership.c decides). */
static void maintain_membership(struct store *s)
{
	if (s->changing)
		return;
	struct membership_change c = membership_next(&s->members, &s->raft, s->state, mono_ms());
	if (c.action == MEMBERSHIP_NONE)
		return;
	s->changing = true;
	s->change_id = c.id;
	s->change_role = c.action == MEMBERSHIP_ADD ? -1 : c.role;
	s->change.data = s;
	int r = c.action == MEMBERSHIP_ADD
	            ? raft_add(&s->raft, &s->change, c.id, c.address, change_cb)
	            : raft_assign(&s->raft, &s->change, c.id, c.role, change_cb);
	if (r != 0) {
		s->changing = false;
		log_warn("store: cannot change member %llu: %s", (unsigned long long)c.id,
		         raft_errmsg(&s->raft));
		return;
	}
	log_info("store: member %llu: %s (%s)", (unsigned long long)c.id,
	         c.action == MEMBERSHIP_ADD ? "adding as a replica"
	         : c.role == RAFT_VOTER     ? "promoting to voter"
	                                    : "making a standby",
	         c.why);
}

/* ---- joining ---- */

static void join_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct store *s = userdata;
	s->join_in_flight = false;
	if (status < 0) {
		log_debug("store: join: %s", error);
		s->redirect[0] = '\0';
		return;
	}
	const char *redirect = json_string_value(json_object_get(result, "redirect"));
	snprintf(s->redirect, sizeof(s->redirect), "%s", redirect ? redirect : "");
	if (json_is_true(json_object_get(result, "accepted"))) {
		const char *key = json_string_value(json_object_get(result, "leader_key"));
		snprintf(s->joined_via, sizeof(s->joined_via), "%s", s->join_to);
		snprintf(s->joined_key, sizeof(s->joined_key), "%s",
		         key && hex_is_lower(key, 32) ? key : "");
	}
}

const char *store_joined_via(const struct store *s)
{
	return s->joined_via;
}

const char *store_joined_key(const struct store *s)
{
	return s->joined_key;
}

/* Where a host without seeds asks to join: a member it knows of, or one of
 * the peers it saved before its state was wiped (a host that created the
 * cluster and rejoins it after a recovery elsewhere). Fills @to. */
static bool join_target(struct store *s, char *to, size_t size)
{
	if (s->o.n_seeds > 0) {
		snprintf(to, size, "%s", s->o.seeds[s->seed_next++ % s->o.n_seeds]);
		return true;
	}
	size_t n = store_count(s->state, STORE_MEMBERS);
	for (size_t k = 0; k < n; k++) {
		const struct store_member *m =
		    store_row(s->state, STORE_MEMBERS, s->seed_next++ % n);
		if (m->id != s->o.id && m->peer[0]) {
			snprintf(to, size, "%s", m->peer);
			return true;
		}
	}
	char *text = NULL, *save;
	if (file_read_state(s->o.dir, "peers", &text) < 0)
		return false;
	unsigned lines = 0, pick;
	for (char *p = strchr(text, '\n'); p && p[1]; p = strchr(p + 1, '\n'))
		lines++;
	pick = lines ? s->seed_next++ % lines : 0;
	bool found = false;
	unsigned i = 0;
	for (char *line = strtok_r(text, "\n", &save); line && !found;
	     line = strtok_r(NULL, "\n", &save))
		if (line != text && i++ == pick) {
			snprintf(to, size, "%s", line);
			found = true;
		}
	free(text);
	return found;
}

static void try_join(struct store *s)
{
	char to[STORE_ADDR_MAX];
	if (s->join_in_flight)
		return;
	if (s->redirect[0])
		snprintf(to, sizeof(to), "%s", s->redirect);
	else if (!join_target(s, to, sizeof(to)))
		return;
	if (strcmp(to, s->o.peer_address) == 0)
		return;
	json_t *args = json_pack("{s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)s->o.id, "name",
	                         s->o.name, "address", s->o.raft_address, "peer", s->o.peer_address,
	                         "raft_version", store_raft_version());
	s->redirect[0] = '\0';
	snprintf(s->join_to, sizeof(s->join_to), "%s", to);
	if (store_call(s, to, "store.join", args, PEER_TIMEOUT_MS, join_cb, s) == 0)
		s->join_in_flight = true;
}

static void caught_up_cb(void *userdata, int status, const struct store_result *res,
                         const char *error)
{
	struct store *s = userdata;
	(void)res;
	s->catchup_in_flight = false;
	if (status < 0) {
		log_debug("store: still catching up: %s", error ? error : strerror(-status));
		return;
	}
	s->catching_up = false;
	log_info("store: caught up with generation %" PRIu64 " as a fresh replica",
	         store_cluster(s->state)->generation);
	if (s->caught_up_cb)
		s->caught_up_cb(s->caught_up_userdata);
}

/* A wiped replica has caught up once it has applied everything committed
 * when it asks: a barrier through the leader. */
static void check_caught_up(struct store *s)
{
	if (s->catching_up && !s->catchup_in_flight && store_leader_id(s) &&
	    store_barrier(s, caught_up_cb, s) == 0)
		s->catchup_in_flight = true;
}

void store_tick_cb(uv_timer_t *t)
{
	struct store *s = t->data;
	s->ticks++;
	/* Removed, or stopped by a corrupt entry: Raft is closed here, not
	 * inside the state machine's callback that found out. */
	if ((s->phase == PHASE_REMOVED || s->phase == PHASE_FAILED) && s->raft_open)
		store_stop_raft(s, s->phase);
	if (s->phase != PHASE_RUNNING || !s->raft_open)
		return;
	store_release_barriers(s);
	/* A host revoked or removed loses its Raft connections within a
	 * second (its peer API requests are judged one by one). */
	if (s->ticks % 4 == 0)
		fence_recheck(&s->fence);
	if (s->fence_newer) {
		store_act_on_fence(s);
		if (s->phase != PHASE_RUNNING)
			return;
	}
	bool leader = raft_state(&s->raft) == RAFT_LEADER;
	if (leader && s->generation_pending) {
		s->generation_pending = false;
		struct store_cmd cmd = {
		    .table = STORE_CLUSTER, .op = STORE_PUT, .time_ms = wall_ms()};
		(*STORE_CMD_ROW(&cmd, struct store_cluster)) = s->pending_generation;
		if (store_propose(s, &cmd, store_generation_done, s) < 0)
			s->generation_pending = true;
		/* The creator joins its own members table. */
		if (s->pending_generation.generation == 1 &&
		    !store_member_find(s->state, s->o.id)) {
			struct store_cmd m = {
			    .table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = wall_ms()};
			(*STORE_CMD_ROW(&m, struct store_member)) = (struct store_member){
			    .id = s->o.id, .role = STORE_ROLE_VOTER, .joined_ms = wall_ms()};
			snprintf(STORE_CMD_ROW(&m, struct store_member)->name,
			         sizeof(STORE_CMD_ROW(&m, struct store_member)->name), "%s",
			         s->o.name);
			snprintf(STORE_CMD_ROW(&m, struct store_member)->address,
			         sizeof(STORE_CMD_ROW(&m, struct store_member)->address), "%s",
			         s->o.raft_address);
			snprintf(STORE_CMD_ROW(&m, struct store_member)->peer,
			         sizeof(STORE_CMD_ROW(&m, struct store_member)->peer), "%s",
			         s->o.peer_address);
			snprintf(STORE_CMD_ROW(&m, struct store_member)->raft_version,
			         sizeof(STORE_CMD_ROW(&m, struct store_member)->raft_version), "%s",
			         store_raft_version());
			store_propose(s, &m, store_member_role_done, NULL);
		}
	}
	check_caught_up(s);
	if (leader)
		maintain_membership(s);
	else if (!store_member_find(s->state, s->o.id) && s->ticks % 2 == 0)
		try_join(s);
	if (s->ticks % HELLO_EVERY_TICKS == 0)
		store_gossip_generation(s);
	store_merge_orphans(s);
}
