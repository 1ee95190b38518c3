/* Recovery by fiat and generations: forced recovery (`ettmctl cluster
 * recover`), the new generation's cluster row, the merge of the orphans a
 * host applied before it, the gossip of generations, and the probe at start
 * that finds whether the cluster moved on without this host. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
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

static void merge_one(void *userdata, const struct journal_pos *pos, const void *data, size_t len)
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
		STORE_CMD_ROW(&c, struct store_conflict)->generation = pos->generation;
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

/* Keeps the journal as orphans, to be merged once generation @generation
 * is applied; the target survives a restart (<dir>/orphans-generation). */
static void take_orphans(struct store *s, uint64_t generation)
{
	char text[32];
	journal_take_orphans(s->journal);
	s->orphans_pending = true;
	if (generation > s->orphans_generation)
		s->orphans_generation = generation;
	snprintf(text, sizeof(text), "%" PRIu64 "\n", s->orphans_generation);
	if (file_write_state(s->o.dir, "orphans-generation", text) < 0)
		log_warn("store: cannot save %s/orphans-generation", s->o.dir);
	if (generation > s->generation_floor)
		s->generation_floor = generation;
}

/* At open: the generation the orphans left by an earlier run wait for. */
void store_load_orphans_target(struct store *s)
{
	char *text = NULL;
	if (file_read_state(s->o.dir, "orphans-generation", &text) < 0)
		return;
	s->orphans_generation = strtoull(text, NULL, 10);
	free(text);
}

/* Once this replica has applied the new generation it was told of (its
 * cluster row comes after every entry the generation carried over), merge
 * what it had applied that the new history lacks. Before that its state is
 * a prefix of the old history, and the merge would find everything
 * present. */
void store_merge_orphans(struct store *s)
{
	const struct store_cluster *c = store_cluster(s->state);
	if (!s->orphans_pending || c->generation == 0 || c->generation < s->orphans_generation ||
	    store_leader_member(s) == NULL)
		return;
	struct merge_ctx m = {.s = s};
	struct journal_origin o = {
	    .generation = c->generation, .from_term = c->from_term, .from_index = c->from_index};
	journal_each_orphan(s->journal, &o, merge_one, &m);
	journal_drop_orphans(s->journal);
	s->orphans_pending = false;
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/orphans-generation", s->o.dir);
	unlink(path);
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
	take_orphans(s, generation);
	s->next_mode = START_NORMAL;
	s->wipe_on_restart = true;
	store_stop_raft(s, PHASE_RESTARTING);
}

/* A member's answer to store.hello: a newer generation than this host
 * knows means this host's history is over. The answer came over the peer
 * API, whose client judges the member's key (an admitted host's). */
static void heard_generation(struct store *s, json_t *result)
{
	uint64_t gen = (uint64_t)json_integer_value(json_object_get(result, "generation"));
	uint64_t known = store_known_generation(s);
	if (gen > known && known > 0)
		store_reset_to_generation(s, gen);
}

static void hello_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct store *s = userdata;
	(void)error;
	s->hello_in_flight = false;
	if (status < 0)
		return;
	heard_generation(s, result);
	const char *leader = json_string_value(json_object_get(result, "leader"));
	if (leader) {
		snprintf(s->hello_leader, sizeof(s->hello_leader), "%s", leader);
		s->hello_leader_ms = uv_now(s->loop);
	}
}

const char *store_heard_leader(const struct store *s)
{
	const struct store_member *m =
	    s->hello_leader[0] ? store_member_find_name(s->state, s->hello_leader) : NULL;
	bool fresh = uv_now(s->loop) - s->hello_leader_ms < HELLO_LEADER_MS;
	return m && fresh && m->id != s->o.id ? m->peer : "";
}

static void confirm_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct store *s = userdata;
	(void)error;
	s->confirming--;
	if (status == 0)
		heard_generation(s, result);
}

/* The fence met a host that says it is of a newer generation. The fence's
 * message goes in clear, before any key is judged, so anyone who reaches
 * a Raft port can say it: the members are asked at once over the peer API,
 * and this host resets only when one of them answers with a newer
 * generation (a forged one costs a round of questions, nothing more). */
void store_act_on_fence(struct store *s)
{
	uint64_t claimed = s->fence_newer, known = store_known_generation(s);
	s->fence_newer = 0;
	if (claimed <= known || known == 0 || s->confirming)
		return;
	for (size_t i = 0; i < store_count(s->state, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(s->state, STORE_MEMBERS, i);
		if (m->id != s->o.id && m->peer[0] &&
		    store_call(s, m->peer, "store.hello", json_object(), PEER_TIMEOUT_MS,
		               confirm_cb, s) == 0)
			s->confirming++;
	}
}

/* Asks one other member, in turn, which generation it is at (and whom it
 * follows: store_heard_leader()). */
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

#define RECOVER_MAX_SURVIVORS 64

/* A member that answered store.hello, and where its log ends. */
struct survivor {
	uint64_t id, generation, last_term, last_index;
	char name[STORE_NAME_MAX];
	char address[STORE_ADDR_MAX]; /* Raft */
	char peer[STORE_ADDR_MAX];
};

struct recover_ctx {
	struct store *s;
	store_recover_cb done;
	void *userdata;
	int waiting;
	bool delegated; /* asked by a survivor whose log is behind this one's */
	json_t *down;   /* names of members known to be gone: not asked */
	struct survivor alive[RECOVER_MAX_SURVIVORS];
	unsigned n_alive;
	char leader[STORE_NAME_MAX]; /* a member still leading: no recovery */
};

static void recover_reset_cb(void *userdata, int status, json_t *result, const char *error)
{
	(void)userdata;
	(void)result;
	if (status < 0)
		log_warn("store: recover: a survivor did not take the reset: %s", error);
}

static void recover_free(struct recover_ctx *c)
{
	json_decref(c->down);
	free(c);
}

static void recover_fail(struct recover_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void recover_fail(struct recover_ctx *c, const char *fmt, ...)
{
	char why[320];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	c->done(c->userdata, NULL, why);
	recover_free(c);
}

/* The survivor whose log is more up to date than this host's (Raft's
 * order: the later last term, then the longer log), or NULL. */
static const struct survivor *most_up_to_date(struct recover_ctx *c)
{
	uint64_t term = store_last_term(&c->s->raft);
	uint64_t index = (uint64_t)raft_last_index(&c->s->raft);
	const struct survivor *best = NULL;
	for (unsigned i = 0; i < c->n_alive; i++) {
		const struct survivor *v = &c->alive[i];
		if (v->last_term > term || (v->last_term == term && v->last_index > index)) {
			best = v;
			term = v->last_term;
			index = v->last_index;
		}
	}
	return best;
}

static void delegate_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct recover_ctx *c = userdata;
	if (status < 0) {
		recover_fail(c, "%s",
		             error ? error
		                   : "the survivor with the most up-to-date log "
		                     "did not answer");
		return;
	}
	c->done(c->userdata, result, NULL);
	recover_free(c);
}

/* Recovery is declared from the most up-to-date survivor's log, so that
 * nothing a lost majority acknowledged and a survivor holds is left out:
 * this host asks that one to declare it (once: that host does not pass it
 * on). */
static void recover_delegate(struct recover_ctx *c, const struct survivor *best)
{
	struct store *s = c->s;
	log_warn("store: recover: %s has a more up-to-date log (term %" PRIu64 ", index %" PRIu64
	         ") than this host (term %" PRIu64 ", index %" PRIu64 "); %s",
	         best->name, best->last_term, best->last_index, store_last_term(&s->raft),
	         (uint64_t)raft_last_index(&s->raft), c->delegated ? "refusing" : "it recovers");
	if (c->delegated) {
		recover_fail(c,
		             "%s has a more up-to-date log (term %" PRIu64 ", index %" PRIu64
		             "); run `ettmctl cluster recover` on %s",
		             best->name, best->last_term, best->last_index, best->name);
		return;
	}
	char peer[STORE_ADDR_MAX], name[STORE_NAME_MAX];
	snprintf(peer, sizeof(peer), "%s", best->peer);
	snprintf(name, sizeof(name), "%s", best->name);
	if (store_call(s, peer, "cluster.recover",
	               json_pack("{s:b, s:O}", "delegated", 1, "down", c->down),
	               4 * PEER_TIMEOUT_MS, delegate_cb, c) < 0)
		recover_fail(c,
		             "%s has a more up-to-date log and cannot be reached; run `ettmctl "
		             "cluster recover` on %s",
		             name, name);
}

/* The new configuration: this host the only voter, the other survivors
 * standbys (promoted once caught up). Fills @names. */
static void recover_conf(struct recover_ctx *c, struct raft_configuration *conf, json_t *names)
{
	struct store *s = c->s;
	raft_configuration_init(conf);
	raft_configuration_add(conf, s->o.id, s->o.raft_address, RAFT_VOTER);
	json_array_append_new(names, json_string(s->o.name));
	for (unsigned i = 0; i < c->n_alive; i++) {
		const struct survivor *v = &c->alive[i];
		const struct store_member *m = store_member_find(s->state, v->id);
		const char *address = v->address[0] ? v->address : m ? m->address : NULL;
		if (!address || v->id == s->o.id)
			continue;
		raft_configuration_add(conf, v->id, address, RAFT_STANDBY);
		json_array_append_new(names, json_string(v->name));
	}
}

/* Every survivor answered (or timed out): declare the new membership. */
static void recover_finish(struct recover_ctx *c)
{
	struct store *s = c->s;
	if (c->leader[0] || store_is_leader(s) || s->phase != PHASE_RUNNING) {
		recover_fail(c,
		             "%s is the leader and reachable; recover is only for a lost majority",
		             c->leader[0] ? c->leader : "this host");
		return;
	}
	uint64_t known = store_known_generation(s);
	for (unsigned i = 0; i < c->n_alive; i++)
		if (c->alive[i].generation > known) {
			recover_fail(c,
			             "%s is at generation %" PRIu64 ", this host at %" PRIu64
			             ": this host is behind; it rejoins on its own",
			             c->alive[i].name, c->alive[i].generation, known);
			return;
		}
	const struct survivor *best = most_up_to_date(c);
	if (best) {
		recover_delegate(c, best);
		return;
	}
	json_t *names = json_array();
	recover_conf(c, &s->recover_conf, names);
	uint64_t generation = known + 1;
	s->pending_generation = (struct store_cluster){
	    .generation = generation,
	    .from_term = store_last_term(&s->raft),
	    .from_index = (uint64_t)raft_last_index(&s->raft),
	};
	snprintf(s->pending_generation.by, sizeof(s->pending_generation.by), "%s", s->o.name);
	s->generation_pending = true;
	s->generation_floor = generation; /* the fence shows it from now on */
	s->next_mode = START_RECOVER;
	log_warn("store: forced recovery: generation %" PRIu64 " with %zu survivor(s), from term "
	         "%" PRIu64 " index %" PRIu64,
	         generation, json_array_size(names), s->pending_generation.from_term,
	         s->pending_generation.from_index);
	for (unsigned i = 0; i < c->n_alive; i++)
		store_call(s, c->alive[i].peer, "store.reset",
		           json_pack("{s:I}", "generation", (json_int_t)generation),
		           PEER_TIMEOUT_MS, recover_reset_cb, NULL);
	store_stop_raft(s, PHASE_RESTARTING);
	json_t *result =
	    json_pack("{s:I, s:o}", "generation", (json_int_t)generation, "members", names);
	c->done(c->userdata, result, NULL);
	json_decref(result);
	recover_free(c);
}

static void copy_str(char *dst, size_t size, json_t *o, const char *key)
{
	snprintf(dst, size, "%s", json_string_value(json_object_get(o, key)) ?: "");
}

static uint64_t get_u64(json_t *o, const char *key)
{
	return (uint64_t)json_integer_value(json_object_get(o, key));
}

struct recover_call {
	struct recover_ctx *c;
	char peer[STORE_ADDR_MAX];
};

static void recover_hello_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct recover_call *call = userdata;
	struct recover_ctx *c = call->c;
	(void)error;
	if (status == 0) {
		const char *state = json_string_value(json_object_get(result, "state"));
		if (state && strcmp(state, "leader") == 0)
			copy_str(c->leader, sizeof(c->leader), result, "name");
		struct survivor v = {.id = get_u64(result, "id"),
		                     .generation = get_u64(result, "generation"),
		                     .last_term = get_u64(result, "last_term"),
		                     .last_index = get_u64(result, "last_index")};
		copy_str(v.name, sizeof(v.name), result, "name");
		copy_str(v.address, sizeof(v.address), result, "address");
		snprintf(v.peer, sizeof(v.peer), "%s", call->peer);
		if (v.id && v.id != c->s->o.id && c->n_alive < RECOVER_MAX_SURVIVORS)
			c->alive[c->n_alive++] = v;
	}
	free(call);
	if (--c->waiting == 0)
		recover_finish(c);
}

static void recover_ask(struct recover_ctx *c, const char *peer)
{
	struct store *s = c->s;
	struct recover_call *call = calloc(1, sizeof(*call));
	if (!call || strcmp(peer, s->o.peer_address) == 0) {
		free(call);
		return;
	}
	call->c = c;
	snprintf(call->peer, sizeof(call->peer), "%s", peer);
	if (store_call(s, peer, "store.hello", json_object(), PEER_TIMEOUT_MS, recover_hello_cb,
	               call) == 0)
		c->waiting++;
	else
		free(call);
}

static bool known_down(const struct recover_ctx *c, const char *name)
{
	size_t i;
	json_t *v;
	json_array_foreach(c->down, i, v) if (json_is_string(v) &&
	                                      strcmp(json_string_value(v), name) == 0) return true;
	return false;
}

/* Asks every member but those known to be gone, or, when this replica has not applied its log yet
 * (a restart without a snapshot), every peer in <dir>/peers. */
static void recover_ask_all(struct recover_ctx *c)
{
	struct store *s = c->s;
	size_t n = store_count(s->state, STORE_MEMBERS);
	for (size_t i = 0; i < n; i++) {
		const struct store_member *m = store_row(s->state, STORE_MEMBERS, i);
		if (m->id != s->o.id && m->peer[0] && !known_down(c, m->name))
			recover_ask(c, m->peer);
	}
	char *text = NULL, *save;
	if (n > 0 || file_read_state(s->o.dir, "peers", &text) < 0)
		return;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (line != text) /* the first line is the generation */
			recover_ask(c, line);
	free(text);
}

static int recover_check(struct store *s, char **ret_error)
{
	if (s->phase != PHASE_RUNNING || !s->raft_open)
		return error_set(ret_error, -ESHUTDOWN, "the store is not running on this host");
	if (store_is_leader(s))
		return error_set(ret_error, -EBUSY,
		                 "this host is the leader; recover is only for a lost majority");
	/* A restarted replica has not applied its log yet: its generation is
	 * the one it saved in <dir>/peers. */
	if (store_known_generation(s) == 0)
		return error_set(ret_error, -EAGAIN, "this host has not joined a cluster yet");
	return 0;
}

static int recover_start(struct store *s, bool delegated, json_t *down, store_recover_cb done,
                         void *userdata, char **ret_error)
{
	int r = recover_check(s, ret_error);
	if (r < 0)
		return r;
	struct recover_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return error_set(ret_error, -ENOMEM, "out of memory");
	c->s = s;
	c->done = done;
	c->userdata = userdata;
	c->delegated = delegated;
	c->down = json_is_array(down) ? json_incref(down) : json_array();
	c->waiting = 1; /* released below, after every call is under way */
	recover_ask_all(c);
	if (--c->waiting == 0)
		recover_finish(c);
	return 0;
}

int store_recover(struct store *s, const char *const *down, store_recover_cb done, void *userdata,
                  char **ret_error)
{
	json_auto_t *names = json_array();
	for (size_t i = 0; down && down[i]; i++)
		json_array_append_new(names, json_string(down[i]));
	return recover_start(s, false, names, done, userdata, ret_error);
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
	bool delegated = json_is_true(json_object_get(req->args, "delegated"));
	r = recover_start(s, delegated, json_object_get(req->args, "down"), recover_reply, d,
	                  ret_error);
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
		take_orphans(s, p->highest);
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
	s->generation_floor = s->probe_generation;
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
