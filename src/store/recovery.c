/* Recovery by fiat and generations: forced recovery (`ettmctl cluster
 * recover`), the new generation's cluster row, the merge of the orphans a
 * host applied before it, the gossip of generations, and the probe at start
 * that finds whether the cluster moved on without this host. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/server.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "store-internal.h"

/* ---- generations: forced recovery and the hosts that come back ---- */

static void orphan_propose_done(void *userdata, int status, const struct store_result *res,
                                const char *error)
{
	(void)userdata;
	if (status < 0)
		log_warn("store: re-proposing an orphaned command failed: %s", error);
	else if (!res->applied)
		log_info("store: an orphaned command was rejected on merge: %s", res->reason);
}

struct merge_ctx {
	struct store *s;
	unsigned applied, skipped, conflicts;
};

static void merge_one(void *userdata, const void *data, size_t len)
{
	struct merge_ctx *m = userdata;
	struct store_cmd cmd;
	char *error = NULL, *reason = NULL;
	if (store_cmd_decode(data, len, &cmd, &error) < 0) {
		free(error);
		return;
	}
	switch (store_merge(m->s->state, &cmd, &reason)) {
	case STORE_MERGE_SKIP:
		m->skipped++;
		break;
	case STORE_MERGE_APPLY:
		m->applied++;
		store_propose(m->s, &cmd, orphan_propose_done, NULL);
		break;
	case STORE_MERGE_CONFLICT: {
		m->conflicts++;
		struct store_cmd c = {
		    .table = STORE_CONFLICTS, .op = STORE_PUT, .time_ms = wall_ms()};
		STORE_CMD_ROW(&c, struct store_conflict)->table = cmd.table;
		STORE_CMD_ROW(&c, struct store_conflict)->generation =
		    store_cluster(m->s->state)->generation - 1;
		snprintf(STORE_CMD_ROW(&c, struct store_conflict)->reason,
		         sizeof(STORE_CMD_ROW(&c, struct store_conflict)->reason), "%s",
		         reason ? reason : "out of memory");
		store_propose(m->s, &c, orphan_propose_done, NULL);
		log_warn("store: merge conflict: %s", reason ? reason : "out of memory");
		break;
	}
	}
	free(reason);
	store_cmd_done(&cmd);
}

/* Once this replica has caught up with the new generation, merge what it
 * had applied that the new cluster lacks. */
void store_merge_orphans(struct store *s)
{
	const struct store_cluster *c = store_cluster(s->state);
	if (!s->orphans_pending || c->generation == 0 || store_leader_member(s) == NULL)
		return;
	struct merge_ctx m = {.s = s};
	journal_each_orphan(s->journal, c->generation, c->from_index, merge_one, &m);
	journal_drop_orphans(s->journal);
	s->orphans_pending = false;
	log_info("store: merged orphaned commands into generation %" PRIu64
	         ": %u re-proposed, %u already present, %u conflicts",
	         c->generation, m.applied, m.skipped, m.conflicts);
}

/* This host's state belongs to a generation the cluster has left: keep the
 * journal as orphans, forget the Raft state, and join the cluster again as
 * a fresh replica. */
void store_reset_to_generation(struct store *s, uint64_t generation)
{
	if (s->phase != PHASE_RUNNING)
		return;
	log_warn("store: the cluster is at generation %" PRIu64 ", this host at %" PRIu64
	         "; rejoining as a fresh replica and merging what only this host had",
	         generation, store_cluster(s->state)->generation);
	journal_take_orphans(s->journal);
	s->orphans_pending = true;
	s->next_mode = START_NORMAL;
	s->wipe_on_restart = true;
	store_stop_raft(s, PHASE_RESTARTING);
}

static void hello_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct store *s = userdata;
	(void)error;
	s->hello_in_flight = false;
	if (status < 0)
		return;
	uint64_t gen = (uint64_t)json_integer_value(json_object_get(result, "generation"));
	if (gen > store_cluster(s->state)->generation && store_cluster(s->state)->generation > 0)
		store_reset_to_generation(s, gen);
}

/* Asks one other member, in turn, which generation it is at. */
void store_gossip_generation(struct store *s)
{
	size_t n = store_count(s->state, STORE_MEMBERS);
	if (s->hello_in_flight || n < 2)
		return;
	const struct store_member *m = store_row(s->state, STORE_MEMBERS, s->hello_next++ % n);
	if (m->id == s->o.id || !m->peer[0])
		return;
	if (store_call(s, m->peer, "store.hello", json_object(), PEER_TIMEOUT_MS, hello_cb, s) == 0)
		s->hello_in_flight = true;
}

void store_generation_done(void *userdata, int status, const struct store_result *res,
                           const char *error)
{
	struct store *s = userdata;
	if (status == 0 && res->applied) {
		log_info("store: cluster generation %" PRIu64 " committed", res->value);
		return;
	}
	s->generation_pending = true; /* try again on the next tick */
	log_debug("store: generation not committed yet: %s", status ? error : res->reason);
}

/* ---- forced recovery ---- */

struct recover_ctx {
	struct store *s;
	store_recover_cb done;
	void *userdata;
	int waiting;
	uint64_t alive[256];
	unsigned n_alive;
	char leader[STORE_NAME_MAX]; /* a member still leading: no recovery */
};

static void recover_reset_cb(void *userdata, int status, json_t *result, const char *error)
{
	(void)userdata;
	(void)status;
	(void)result;
	if (status < 0)
		log_warn("store: recover: a survivor did not take the reset: %s", error);
}

/* Every survivor answered (or timed out): declare the new membership. */
static void recover_finish(struct recover_ctx *c)
{
	struct store *s = c->s;
	if (c->leader[0] || store_is_leader(s) || s->phase != PHASE_RUNNING) {
		char why[160];
		snprintf(why, sizeof(why),
		         "%s is the leader and reachable; recover is only for a lost majority",
		         c->leader[0] ? c->leader : "this host");
		c->done(c->userdata, NULL, why);
		free(c);
		return;
	}
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, s->o.id, s->o.raft_address, RAFT_VOTER);
	json_t *names = json_array();
	json_array_append_new(names, json_string(s->o.name));
	for (unsigned i = 0; i < c->n_alive; i++) {
		const struct store_member *m = store_member_find(s->state, c->alive[i]);
		if (!m)
			continue;
		/* Survivors start as standbys and are promoted once caught up. */
		raft_configuration_add(&conf, m->id, m->address, RAFT_STANDBY);
		json_array_append_new(names, json_string(m->name));
	}
	uint64_t generation = store_cluster(s->state)->generation + 1;
	s->pending_generation = (struct store_cluster){
	    .generation = generation,
	    .from_term = s->raft.current_term,
	    .from_index = raft_last_index(&s->raft),
	};
	snprintf(s->pending_generation.by, sizeof(s->pending_generation.by), "%s", s->o.name);
	s->generation_pending = true;
	s->recover_conf = conf;
	s->next_mode = START_RECOVER;
	log_warn("store: forced recovery: generation %" PRIu64 " with %u survivor(s)", generation,
	         c->n_alive + 1);
	for (unsigned i = 0; i < c->n_alive; i++) {
		const struct store_member *m = store_member_find(s->state, c->alive[i]);
		if (m)
			store_call(s, m->peer, "store.reset",
			           json_pack("{s:I}", "generation", (json_int_t)generation),
			           PEER_TIMEOUT_MS, recover_reset_cb, NULL);
	}
	store_stop_raft(s, PHASE_RESTARTING);
	json_t *result =
	    json_pack("{s:I, s:o}", "generation", (json_int_t)generation, "members", names);
	c->done(c->userdata, result, NULL);
	json_decref(result);
	free(c);
}

static void recover_hello_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct recover_ctx *c = userdata;
	(void)error;
	if (status == 0) {
		uint64_t id = (uint64_t)json_integer_value(json_object_get(result, "id"));
		const char *state = json_string_value(json_object_get(result, "state"));
		if (state && strcmp(state, "leader") == 0)
			snprintf(c->leader, sizeof(c->leader), "%s",
			         json_string_value(json_object_get(result, "name")) ?: "?");
		if (id && c->n_alive < 256)
			c->alive[c->n_alive++] = id;
	}
	if (--c->waiting == 0)
		recover_finish(c);
}

static int recover_check(struct store *s, char **ret_error)
{
	if (s->phase != PHASE_RUNNING || !s->raft_open)
		return error_set(ret_error, -ESHUTDOWN, "the store is not running on this host");
	if (store_is_leader(s))
		return error_set(ret_error, -EBUSY,
		                 "this host is the leader; recover is only for a lost majority");
	if (store_cluster(s->state)->generation == 0)
		return error_set(ret_error, -EAGAIN, "this host has not joined a cluster yet");
	return 0;
}

int store_recover(struct store *s, store_recover_cb done, void *userdata, char **ret_error)
{
	int r = recover_check(s, ret_error);
	if (r < 0)
		return r;
	struct recover_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->s = s;
	c->done = done;
	c->userdata = userdata;
	c->waiting = 1; /* released below, after every call is under way */
	for (size_t i = 0; i < store_count(s->state, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(s->state, STORE_MEMBERS, i);
		if (m->id == s->o.id || !m->peer[0])
			continue;
		if (store_call(s, m->peer, "store.hello", json_object(), PEER_TIMEOUT_MS,
		               recover_hello_cb, c) == 0)
			c->waiting++;
	}
	if (--c->waiting == 0)
		recover_finish(c);
	return 0;
}

static void recover_reply(void *userdata, json_t *result, const char *error)
{
	ctl_deferred_reply(userdata, json_incref(result), error);
}

int store_handle_recover(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                         char **ret_error)
{
	int r = recover_check(s, ret_error);
	if (r < 0)
		return r;
	struct ctl_deferred *d = ctl_defer(client, req);
	if (!d)
		return -ENOMEM;
	r = store_recover(s, recover_reply, d, ret_error);
	if (r < 0) {
		ctl_deferred_reply(d, NULL, *ret_error ? *ret_error : strerror(-r));
		free(*ret_error);
		*ret_error = NULL;
	}
	return CTL_DEFERRED;
}

/* ---- at start: has the cluster moved on without this host? ---- */

static void probe_unref(struct probe *p)
{
	if (--p->refs == 0)
		free(p);
}

static void probe_closed_cb(uv_handle_t *h)
{
	probe_unref(h->data);
}

void store_probe_finish(struct probe *p)
{
	struct store *s = p->s;
	if (p->done)
		return;
	p->done = true;
	uv_close((uv_handle_t *)&p->timer, probe_closed_cb);
	if (!s || s->phase != PHASE_PROBING)
		return;
	s->probe = NULL;
	s->phase = PHASE_RUNNING;
	if (p->highest > s->probe_generation) {
		log_warn("store: the cluster went on to generation %" PRIu64 " while this host was "
		         "away (at %" PRIu64 "); rejoining as a fresh replica",
		         p->highest, s->probe_generation);
		journal_take_orphans(s->journal);
		s->orphans_pending = true;
		s->next_mode = START_NORMAL; /* never bootstrap a cluster of one again */
		if (store_wipe_raft_state(s) < 0)
			return;
	}
	store_start_raft(s);
}

static void probe_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct probe *p = userdata;
	(void)error;
	if (status == 0) {
		uint64_t g = (uint64_t)json_integer_value(json_object_get(result, "generation"));
		if (g > p->highest)
			p->highest = g;
	}
	if (--p->waiting == 0)
		store_probe_finish(p);
	probe_unref(p);
}

static void probe_timeout_cb(uv_timer_t *t)
{
	store_probe_finish(t->data);
}

/* A host with state asks the peers it knew and its seeds for their
 * generation before it starts Raft, so that a group of hosts coming back
 * together does not first elect a leader of a generation that is over.
 * Returns 1 when a probe is under way (it starts Raft when done), 0 when
 * there is nothing to ask. */
int store_probe_generation(struct store *s)
{
	char *text = NULL;
	if (file_read_state(s->o.dir, "peers", &text) < 0)
		return 0;
	s->probe_generation = strtoull(text, NULL, 10);
	struct probe *p = calloc(1, sizeof(*p));
	if (!p) {
		free(text);
		return 0;
	}
	p->s = s;
	p->waiting = 1;
	p->refs = 1;
	char *save;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line == text) /* the generation */
			continue;
		if (store_call(s, line, "store.hello", json_object(), PROBE_TIMEOUT_MS, probe_cb,
		               p) == 0) {
			p->waiting++;
			p->refs++;
		}
	}
	for (unsigned i = 0; i < s->o.n_seeds; i++)
		if (strcmp(s->o.seeds[i], s->o.peer_address) != 0 &&
		    store_call(s, s->o.seeds[i], "store.hello", json_object(), PROBE_TIMEOUT_MS,
		               probe_cb, p) == 0) {
			p->waiting++;
			p->refs++;
		}
	free(text);
	uv_timer_init(s->loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, probe_timeout_cb, PROBE_TIMEOUT_MS + 100, 0);
	s->phase = PHASE_PROBING;
	s->probe = p;
	if (--p->waiting == 0)
		store_probe_finish(p);
	return 1;
}
