/* The failure detector: when a majority of voters is gone and every one of
 * them has its switch port down (a power loss, not a partition) for
 * fiat-after-ms, the survivors recover the membership on their own
 * (store_recover()); its state and reason for `ettmctl cluster`. */
#include "switch-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "store/store.h"
#include "switch/tables.h"

/* How much later the next survivor declares when the one before has not. */
#define FIAT_TAKEOVER_MS 1000
/* A survivor hears its switch at least this often (echo every 2 s, and
 * statistics every second); longer, and it may be the one cut off. */
#define FIAT_HEARD_MS 2500

/* How long the port of @host has been down, as the switch it sits on
 * reports: 0 while it is up, -1 when this agent cannot tell. */
static int64_t port_down_ms(struct swc *c, const char *host)
{
	const struct switch_location *l = switch_location_find(store_state(c->store), host);
	struct sw *s = l ? sw_find_dpid(c, l->dpid) : NULL;
	struct port *p = s ? stats_find_port(s, l->port) : NULL;
	if (!p)
		return -1;
	return p->down_since_ms ? (int64_t)(uv_now(c->loop) - p->down_since_ms) : 0;
}

static void fiat_set(struct swc *c, const char *state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fiat_set(struct swc *c, const char *state, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char reason[sizeof(c->fiat_reason)];
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (strcmp(state, c->fiat_state) != 0 || strcmp(reason, c->fiat_reason) != 0) {
		if (strcmp(state, "ok") != 0)
			log_info("failure detector: %s: %s", state, reason);
		snprintf(c->fiat_state, sizeof(c->fiat_state), "%s", state);
		snprintf(c->fiat_reason, sizeof(c->fiat_reason), "%s", reason);
	}
}

static void fiat_done(void *userdata, json_t *result, const char *error)
{
	struct swc *c = userdata;
	c->fiat_running = false;
	if (error)
		log_warn("failure detector: recovery by fiat refused: %s", error);
	else
		log_warn("failure detector: recovered by fiat: generation %lld",
		         (long long)json_integer_value(json_object_get(result, "generation")));
}

/* The other voters, sorted by whether their switch port is down. */
struct census {
	size_t n;         /* voters, this host included */
	size_t n_down;    /* other voters whose port is down */
	int64_t shortest; /* the shortest time one of those has been down */
	char down[128], up[128];
	const char *gone[17]; /* those voters' names, NULL-terminated */
};

static void take_census(struct swc *c, struct census *ret)
{
	const struct store_state *st = store_state(c->store);
	uint64_t voters[16];
	*ret = (struct census){.n = store_voters(c->store, voters, 16), .shortest = INT64_MAX};
	for (size_t i = 0; i < ret->n; i++) {
		const struct store_member *m = store_member_find(st, voters[i]);
		if (!m || strcmp(m->name, c->self.name) == 0)
			continue;
		int64_t ms = port_down_ms(c, m->name);
		char *list = ms > 0 ? ret->down : ret->up;
		snprintf(list + strlen(list), 128 - strlen(list), "%s%s", list[0] ? ", " : "",
		         m->name);
		if (ms > 0) {
			ret->gone[ret->n_down] = m->name;
			ret->n_down++;
			ret->shortest = ms < ret->shortest ? ms : ret->shortest;
		}
	}
}

/* Whether the voters that are gone lost power (every one's port down for
 * fiat-after-ms, and too many of them for a majority): sets the state and
 * returns false when no fiat is due. */
static bool power_lost(struct swc *c, const struct census *k)
{
	const struct store_state *st = store_state(c->store);
	const char *up = k->up[0] ? k->up : "this host";
	if (k->n == 0 || store_cluster(st)->generation == 0 ||
	    !store_member_find_name(st, c->self.name)) {
		fiat_set(c, "ok", "not a member of a cluster yet");
		return false;
	}
	if (store_leader_id(c->store) && (!k->n_down || k->n - k->n_down > k->n / 2)) {
		fiat_set(c, "ok", "a leader is elected");
		return false;
	}
	if (!k->n_down) {
		fiat_set(c, "waiting",
		         "no leader, but no voter's port is down (%s up): an election "
		         "or a partition, not a power loss; no fiat",
		         up);
		return false;
	}
	if (k->n - k->n_down > k->n / 2) {
		fiat_set(c, "waiting",
		         "no leader, but the ports of a majority of voters are up (%s): "
		         "a partition or an election, not a power loss; no fiat",
		         up);
		return false;
	}
	if (k->shortest < (int64_t)c->o.fiat_after_ms) {
		fiat_set(c, "pending",
		         "the ports of voters %s are down; recovery by fiat if they stay down "
		         "%u ms",
		         k->down, c->o.fiat_after_ms);
		return false;
	}
	return true;
}

/* Whether this host sees the network now: its own switch connected and
 * heard from lately, its own port up. A host that was unplugged itself
 * still holds the port states it saw last (the other voters going down
 * before it): it must not take them for a power loss elsewhere and
 * declare a generation of its own. */
static bool sees_the_network(struct swc *c)
{
	const struct switch_location *l = switch_location_find(store_state(c->store), c->self.name);
	struct sw *s = l ? sw_find_dpid(c, l->dpid) : NULL;
	if (!s || !s->up || of_conn_silent_ms(s->conn) > FIAT_HEARD_MS) {
		fiat_set(c, "waiting",
		         "this host does not hear its own switch: it may be the one cut off; "
		         "no fiat");
		return false;
	}
	if (port_down_ms(c, c->self.name) != 0) {
		fiat_set(c, "waiting", "this host's own port is not up; no fiat");
		return false;
	}
	return true;
}

/* Whether it is this survivor's turn to declare. The survivors with their
 * ports up take turns by id: the lowest declares once the voters' ports
 * have been down fiat-after-ms, the next FIAT_TAKEOVER_MS later, and so on.
 * A survivor whose view is stale (it sees a leader, or a majority of
 * voters up, that the others do not) does not hold the others up: the next
 * one declares after a bounded wait, and store_recover() refuses while a
 * leader answers or a newer generation exists. */
static bool my_turn(struct swc *c, const struct census *k)
{
	const struct store_state *st = store_state(c->store);
	const struct store_member *me = store_member_find_name(st, c->self.name);
	unsigned rank = 0;
	const char *first = NULL;
	for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(st, STORE_MEMBERS, i);
		if (m->id < (me ? me->id : 0) && port_down_ms(c, m->name) == 0) {
			rank++;
			first = first ? first : m->name;
		}
	}
	int64_t due = (int64_t)c->o.fiat_after_ms + (int64_t)rank * FIAT_TAKEOVER_MS;
	if (rank > 0 && k->shortest < due) {
		fiat_set(c, "pending",
		         "voters %s lost power; %s, the first survivor, recovers by fiat (this "
		         "host takes over after %lld ms)",
		         k->down, first, (long long)due);
		return false;
	}
	return true;
}

/* A majority of voters is gone. If every one of them has its switch port
 * down (power lost, not a partition) for fiat-after-ms, the survivors
 * recover the membership on their own: the one with the lowest id among
 * the members whose ports are up declares it, or, when it has not, the
 * next one after a bounded wait (my_turn()). */
void fiat_check(struct swc *c)
{
	if (!c->o.fiat_after_ms) {
		fiat_set(c, "off", "fiat-after-ms is 0");
		return;
	}
	if (store_is_leader(c->store) || c->fiat_running) {
		fiat_set(c, "ok", "%s", c->fiat_running ? "recovering" : "this host leads");
		return;
	}
	struct census k;
	take_census(c, &k);
	if (!power_lost(c, &k) || !sees_the_network(c) || !my_turn(c, &k))
		return;
	uint64_t now = uv_now(c->loop);
	if (c->fiat_last_ms && now - c->fiat_last_ms < FIAT_TAKEOVER_MS)
		return;
	c->fiat_last_ms = now;
	fiat_set(c, "recovering", "voters %s lost power (ports down %u ms): recovering by fiat",
	         k.down, c->o.fiat_after_ms);
	char *error = NULL;
	if (store_recover(c->store, k.gone, fiat_done, c, &error) == 0)
		c->fiat_running = true;
	else
		log_warn("failure detector: cannot recover: %s", error ? error : "?");
	free(error);
}

json_t *sw_failure_detector(struct swc *c)
{
	return json_pack("{s:s, s:s, s:i}", "state", c->fiat_state[0] ? c->fiat_state : "ok",
	                 "reason", c->fiat_reason, "fiat_after_ms", (int)c->o.fiat_after_ms);
}
