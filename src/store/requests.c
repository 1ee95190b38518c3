/* The store's requests: its status, and the peer API and admin commands
 * ("store.*", "cluster*") with their replies. */
#include <errno.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/server.h"
#include "api/tls.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "store-internal.h"

/* ---- status ---- */

static const char *phase_state(struct store *s)
{
	switch (s->phase) {
	case PHASE_RUNNING:
		break;
	case PHASE_RESTARTING:
		return "restarting";
	case PHASE_PROBING:
		return "probing";
	case PHASE_REMOVED:
		return "removed";
	case PHASE_FAILED:
		return "failed";
	case PHASE_CLOSING:
		return "closing";
	}
	if (!s->raft_open)
		return "stopped";
	switch (raft_state(&s->raft)) {
	case RAFT_LEADER:
		return "leader";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_FOLLOWER:
		return "follower";
	}
	return "unavailable";
}

json_t *store_status(struct store *s)
{
	struct raft *r = &s->raft;
	bool leader = store_is_leader(s);
	const struct store_member *lm = store_leader_member(s);
	json_t *members = json_array();
	uint64_t now = mono_ms();
	for (unsigned i = 0; s->raft_open && i < r->configuration.n; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		const struct store_member *m = store_member_find(s->state, srv->id);
		json_t *reachable = json_null();
		if (srv->id == s->o.id)
			reachable = json_true();
		else if (leader)
			reachable = json_boolean(r->leader_state.progress[i].recent_recv);
		json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:o}", "id", (json_int_t)srv->id,
		                      "name", m ? m->name : "?", "address", srv->address, "role",
		                      store_role_name((unsigned)srv->role), "reachable", reachable);
		if (leader && srv->id != s->o.id)
			json_object_set_new(o, "silent_ms",
			                    json_integer((json_int_t)membership_silence(
			                        &s->members, srv->id, now)));
		if (leader)
			json_object_set_new(
			    o, "match_index",
			    json_integer((json_int_t)r->leader_state.progress[i].match_index));
		json_array_append_new(members, o);
	}
	const struct store_cluster *c = store_cluster(s->state);
	return json_pack(
	    "{s:I, s:s, s:s, s:s?, s:I, s:I, s:I, s:I, s:I, s:s, s:o, s:s?, s:b}", "id",
	    (json_int_t)s->o.id, "name", s->o.name, "state", phase_state(s), "leader",
	    lm ? lm->name : NULL, "term", (json_int_t)(s->raft_open ? r->current_term : 0),
	    "commit_index", (json_int_t)(s->raft_open ? r->commit_index : 0), "applied_index",
	    (json_int_t)(s->raft_open ? raft_last_applied(r) : 0), "generation",
	    (json_int_t)c->generation, "voters_wanted",
	    (json_int_t)(s->raft_open ? membership_target(&s->members, r->configuration.n) : 0),
	    "raft_version", store_raft_version(), "members", members, "error",
	    s->fatal[0] ? s->fatal : NULL, "orphans_pending", s->orphans_pending);
}

/* ---- requests: the peer API and the admin's commands ---- */

struct reply_ctx {
	struct ctl_deferred *d;
	bool reject_is_error;
	struct store *s;
};

static void reply_done(void *userdata, int status, const struct store_result *res,
                       const char *error)
{
	struct reply_ctx *c = userdata;
	if (status < 0)
		ctl_deferred_reply(c->d, NULL, error ? error : strerror(-status));
	else if (!res) /* a barrier */
		ctl_deferred_reply(
		    c->d,
		    json_pack("{s:I}", "index",
		              (json_int_t)(c->s->raft_open ? raft_last_applied(&c->s->raft) : 0)),
		    NULL);
	else if (!res->applied && c->reject_is_error)
		ctl_deferred_reply(c->d, NULL, res->reason);
	else
		ctl_deferred_reply(c->d,
		                   json_pack("{s:b, s:s, s:I, s:I}", "applied", res->applied,
		                             "reason", res->reason, "value", (json_int_t)res->value,
		                             "index", (json_int_t)res->index),
		                   NULL);
	free(c);
}

static struct reply_ctx *reply_ctx(struct store *s, struct ctl_client *client,
                                   const struct ctl_request *req, bool reject_is_error)
{
	struct reply_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->d = ctl_defer(client, req);
	if (!c->d) {
		free(c);
		return NULL;
	}
	c->s = s;
	c->reject_is_error = reject_is_error;
	return c;
}

static int deferred_error(struct reply_ctx *c, int r)
{
	/* The deferral is cancelled by answering it now with the error. */
	const char *why = r == -EAGAIN      ? "no leader is known right now; try again"
	                  : r == -ESHUTDOWN ? "the store is not running on this host"
	                                    : strerror(-r);
	ctl_deferred_reply(c->d, NULL, why);
	free(c);
	return CTL_DEFERRED;
}

int store_propose_reply(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                        const struct store_cmd *cmd, bool reject_is_error, char **ret_error)
{
	struct reply_ctx *c = reply_ctx(s, client, req, reject_is_error);
	if (!c)
		return -ENOMEM;
	int r = store_propose(s, cmd, reply_done, c);
	return r < 0 ? deferred_error(c, r) : CTL_DEFERRED;
}

static void relay_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct ctl_deferred *d = userdata;
	ctl_deferred_reply(d, status == 0 ? json_incref(result) : NULL, status == 0 ? NULL : error);
}

/* Passes a request on to another agent and its answer back as it is. */
static int relay(struct store *s, const char *address, const char *cmd, json_t *args,
                 struct ctl_deferred *d)
{
	int r = store_call(s, address, cmd, args, FORWARD_TIMEOUT_MS, relay_cb, d);
	if (r < 0)
		ctl_deferred_reply(d, NULL, strerror(-r));
	return CTL_DEFERRED;
}

/* The host part of "A.B.C.D:PORT" equals @a. */
static bool address_on(const char *address, struct in_addr a)
{
	struct sockaddr_in sa;
	return ctl_parse_address(address, &sa) == 0 && sa.sin_addr.s_addr == a.s_addr;
}

/* A join must come from the addresses it registers, and must not take an
 * existing member's name or id to another address: anyone may ask to join
 * (SVC_JOIN), so a join is no way to move a member's traffic elsewhere. */
static int check_join_source(struct store *s, struct ctl_client *client, uint64_t id,
                             const char *name, const char *address, const char *peer,
                             char **ret_error)
{
	struct in_addr source;
	if (ctl_client_source(client, &source) < 0)
		return 0; /* the local socket: the host's own admin */
	char from[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &source, from, sizeof(from));
	if (!address_on(address, source) || !address_on(peer, source))
		return error_set(ret_error, -EPERM,
		                 "store.join from %s names the addresses %s and %s: a host joins "
		                 "from its own address",
		                 from, address, peer);
	const struct store_member *by_id = store_member_find(s->state, id);
	const struct store_member *by_name = store_member_find_name(s->state, name);
	if ((by_id && strcmp(by_id->name, name) != 0) || (by_name && by_name->id != id))
		return error_set(ret_error, -EPERM,
		                 "store.join: %s (id %" PRIu64 ") clashes with member %s (id %" PRIu64
		                 ")",
		                 name, id, by_id ? by_id->name : by_name->name,
		                 by_id ? by_id->id : by_name->id);
	if (by_id && strcmp(by_id->peer, peer) != 0)
		return error_set(ret_error, -EPERM,
		                 "store.join: member %s is at %s; a join in its name from %s is "
		                 "refused",
		                 name, by_id->peer, from);
	return 0;
}

static int handle_join(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	if (!store_is_leader(s)) {
		const struct store_member *lm = store_leader_member(s);
		*ret_result = json_pack("{s:s?}", "redirect", lm ? lm->peer : NULL);
		return 0;
	}
	const char *name = ctl_arg_str(req, "name"), *address = ctl_arg_str(req, "address");
	const char *peer = ctl_arg_str(req, "peer"), *version = ctl_arg_str(req, "raft_version");
	json_int_t id = json_integer_value(json_object_get(req->args, "id"));
	if (!name || !address || !peer || !version || id <= 0)
		return error_set(ret_error, -EINVAL,
		                 "store.join needs id, name, address, peer and raft_version");
	if (strcmp(version, store_raft_version()) != 0)
		return error_set(ret_error, -EPROTO,
		                 "%s runs %s but the cluster runs %s; Raft versions do not "
		                 "interoperate",
		                 name, version, store_raft_version());
	int r = check_join_source(s, client, (uint64_t)id, name, address, peer, ret_error);
	if (r < 0)
		return r;
	const struct store_member *m = store_member_find(s->state, (uint64_t)id);
	if (!m || strcmp(m->address, address) != 0 || strcmp(m->peer, peer) != 0) {
		struct store_cmd cmd = {
		    .table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = wall_ms()};
		struct store_member *row = STORE_CMD_ROW(&cmd, struct store_member);
		row->id = (uint64_t)id;
		row->role = STORE_ROLE_SPARE;
		row->joined_ms = wall_ms();
		snprintf(row->name, sizeof(row->name), "%s", name);
		snprintf(row->address, sizeof(row->address), "%s", address);
		snprintf(row->peer, sizeof(row->peer), "%s", peer);
		snprintf(row->raft_version, sizeof(row->raft_version), "%s", version);
		r = store_propose(s, &cmd, store_member_role_done, NULL);
		if (r < 0)
			return error_set(ret_error, r, "cannot propose the member: %s",
			                 strerror(-r));
		log_info("store: %s (%lld) asks to join", name, (long long)id);
	}
	/* The key this leader speaks Raft with: the joining host, whose replica
	 * is still empty, hears Raft from that key only (trust/gate.h). */
	const struct ctl_tls *tls = ctl_tls_default();
	*ret_result = json_pack("{s:b, s:s?}", "accepted", 1, "leader_key",
	                        tls ? ctl_tls_fingerprint(tls) : NULL);
	return 0;
}

struct remove_ctx {
	struct store *s;
	struct ctl_deferred *d;
	uint64_t id;
	char peer[STORE_ADDR_MAX];
	struct raft_change change;
};

static void leave_cb(void *userdata, int status, json_t *result, const char *error)
{
	(void)userdata;
	(void)result;
	if (status < 0)
		log_warn("store: the removed host did not hear it was removed: %s", error);
}

static void removed_cb(struct raft_change *req, int status)
{
	struct remove_ctx *c = req->data;
	if (status != 0)
		log_warn("store: raft_remove %" PRIu64 ": %s", c->id, raft_strerror(status));
	free(c);
}

/* The member is gone from the table: now take it out of Raft. In this
 * order, the membership policy never sees a member Raft lacks and re-adds
 * it. */
static void remove_done(void *userdata, int status, const struct store_result *res,
                        const char *error)
{
	struct remove_ctx *c = userdata;
	if (status < 0 || !res->applied) {
		ctl_deferred_reply(c->d, NULL, status < 0 ? error : res->reason);
		free(c);
		return;
	}
	ctl_deferred_reply(c->d, json_pack("{s:b}", "removed", 1), NULL);
	/* Once out of Raft the host hears nothing more, so it is told. */
	if (c->peer[0])
		store_call(c->s, c->peer, "store.leave", json_object(), PEER_TIMEOUT_MS, leave_cb,
		           NULL);
	c->change.data = c;
	if (!c->s->raft_open || raft_remove(&c->s->raft, &c->change, c->id, removed_cb) != 0) {
		log_warn("store: member %" PRIu64 " left the table but not Raft: %s", c->id,
		         c->s->raft_open ? raft_errmsg(&c->s->raft) : "store stopped");
		free(c);
	}
}

static int handle_remove(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                         char **ret_error)
{
	const char *host = ctl_arg_str(req, "host");
	if (!host)
		return error_set(ret_error, -EINVAL, "cluster.remove needs a host");
	if (!store_is_leader(s)) {
		const struct store_member *lm = store_leader_member(s);
		if (!lm)
			return error_set(ret_error, -EAGAIN, "no leader is known right now");
		struct ctl_deferred *d = ctl_defer(client, req);
		if (!d)
			return -ENOMEM;
		return relay(s, lm->peer, "cluster.remove", json_incref(req->args), d);
	}
	const struct store_member *m = store_member_find_name(s->state, host);
	if (!m)
		return error_set(ret_error, -ENOENT, "no member named %s", host);
	if (m->id == s->o.id)
		return error_set(ret_error, -EBUSY,
		                 "%s is the leader; stop it, and remove it once another host "
		                 "leads",
		                 host);
	struct remove_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = (struct remove_ctx){.s = s, .id = m->id, .d = ctl_defer(client, req)};
	snprintf(c->peer, sizeof(c->peer), "%s", m->peer);
	struct store_cmd cmd = {.table = STORE_MEMBERS, .op = STORE_DELETE, .time_ms = wall_ms()};
	STORE_CMD_ROW(&cmd, struct store_member)->id = m->id;
	int r = store_propose(s, &cmd, remove_done, c);
	if (r < 0) {
		ctl_deferred_reply(c->d, NULL, strerror(-r));
		free(c);
	}
	return CTL_DEFERRED;
}

/* ---- dispatch ---- */

void store_set_cluster_extra(struct store *s, const char *key, json_t *(*fn)(void *userdata),
                             void *userdata)
{
	s->extra_key = fn ? key : NULL;
	s->extra_fn = fn;
	s->extra_userdata = userdata;
}

/* This host's view for `cluster`, with what another module adds to it. */
static json_t *cluster_view(struct store *s)
{
	json_t *o = store_status(s);
	if (o && s->extra_fn)
		json_object_set_new(o, s->extra_key, s->extra_fn(s->extra_userdata));
	return o;
}

static void cluster_status_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct reply_ctx *c = userdata;
	json_t *mine = cluster_view(c->s);
	(void)error;
	/* The leader knows who is reachable; this host knows its own state. */
	if (status == 0 && json_is_array(json_object_get(result, "members")))
		json_object_set(mine, "members", json_object_get(result, "members"));
	ctl_deferred_reply(c->d, mine, NULL);
	free(c);
}

static int handle_cluster(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                          json_t **ret_result)
{
	const struct store_member *lm = store_leader_member(s);
	if (store_is_leader(s) || !lm || !lm->peer[0]) {
		*ret_result = cluster_view(s);
		return 0;
	}
	struct reply_ctx *c = reply_ctx(s, client, req, false);
	if (!c)
		return -ENOMEM;
	if (store_call(s, lm->peer, "store.status", json_object(), PEER_TIMEOUT_MS,
	               cluster_status_cb, c) < 0)
		cluster_status_cb(c, -EIO, NULL, NULL);
	return CTL_DEFERRED;
}

int store_handle_request(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                         json_t **ret_result, char **ret_error)
{
	const char *cmd = req->cmd;
	if (strcmp(cmd, "store.hello") == 0) {
		const struct store_member *lm = store_leader_member(s);
		*ret_result = json_pack(
		    "{s:I, s:s, s:s, s:I, s:I, s:I, s:s, s:s?}", "id", (json_int_t)s->o.id, "name",
		    s->o.name, "state", phase_state(s), "generation",
		    (json_int_t)store_known_generation(s), "last_index",
		    (json_int_t)(s->raft_open ? raft_last_index(&s->raft) : 0), "last_term",
		    (json_int_t)(s->raft_open ? store_last_term(&s->raft) : 0), "address",
		    s->o.raft_address, "leader", lm ? lm->name : NULL);
		return 0;
	}
	if (strcmp(cmd, "store.status") == 0) {
		*ret_result = store_status(s);
		return 0;
	}
	if (strcmp(cmd, "store.join") == 0)
		return handle_join(s, client, req, ret_result, ret_error);
	if (strcmp(cmd, "store.leave") == 0) {
		/* The leader sends it once the host is out of the members table
		 * (the peer API is unauthenticated: see docs/store.md). */
		store_handle_self_removed(s);
		return 0;
	}
	if (strcmp(cmd, "store.reset") == 0) {
		uint64_t gen =
		    (uint64_t)json_integer_value(json_object_get(req->args, "generation"));
		if (gen > store_cluster(s->state)->generation)
			store_reset_to_generation(s, gen);
		return 0;
	}
	if (strcmp(cmd, "store.propose") == 0) {
		const char *hex = ctl_arg_str(req, "command");
		uint8_t *data;
		size_t len;
		if (!hex || hex_decode(hex, &data, &len) < 0)
			return error_set(ret_error, -EINVAL, "store.propose needs a hex command");
		if (!store_is_leader(s)) {
			free(data);
			return error_set(ret_error, -EAGAIN, "not the leader");
		}
		struct reply_ctx *c = reply_ctx(s, client, req, false);
		int r = c ? store_propose_local(s, data, len, reply_done, c) : -ENOMEM;
		free(data);
		if (r < 0 && c)
			return deferred_error(c, r);
		return r < 0 ? r : CTL_DEFERRED;
	}
	if (strcmp(cmd, "store.barrier") == 0) {
		if (!store_is_leader(s))
			return error_set(ret_error, -EAGAIN, "not the leader");
		struct reply_ctx *c = reply_ctx(s, client, req, false);
		if (!c)
			return -ENOMEM;
		int r = store_barrier(s, reply_done, c);
		return r < 0 ? deferred_error(c, r) : CTL_DEFERRED;
	}
	if (strcmp(cmd, "store.dump") == 0) {
		const char *table = ctl_arg_str(req, "table");
		if (!table) {
			*ret_result = store_state_dump(s->state);
			return 0;
		}
		int t = store_table_from_name(table);
		if (t < 0)
			return error_set(ret_error, -ENOENT, "no table named %s", table);
		*ret_result = json_pack("{s:o}", table, store_table_dump(s->state, t));
		return 0;
	}
	if (strcmp(cmd, "cluster") == 0)
		return handle_cluster(s, client, req, ret_result);
#ifdef ETTM_BENCH_HOOKS
	if (strcmp(cmd, "store.bench") == 0)
		return store_handle_bench(s, client, req, ret_error);
#endif
	if (strcmp(cmd, "cluster.conflicts") == 0) {
		*ret_result =
		    json_pack("{s:o}", "conflicts", store_table_dump(s->state, STORE_CONFLICTS));
		return 0;
	}
	if (strcmp(cmd, "cluster.remove") == 0)
		return handle_remove(s, client, req, ret_error);
	if (strcmp(cmd, "cluster.recover") == 0)
		return store_handle_recover(s, client, req, ret_error);
	return -ENOENT;
}
