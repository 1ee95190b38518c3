/* The controller (switch.h): opening and closing it, its connections to
 * the switches, mastership (a role request per switch and term: MASTER
 * with generation id = the Raft term while this agent's store leads, SLAVE
 * otherwise), the services registered with it, and the tick that follows
 * the store's leadership. The rest of the controller is split by concern;
 * switch-internal.h lists the files. */
#include "switch-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "api/tls.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/log.h"
#include "store/store.h"
#include "switch/tables.h"
#include "trust/tables.h"

#define TICK_MS 50 /* how often leadership and term are checked */

const char *sw_role_name(enum role r)
{
	return r == ROLE_MASTER ? "master" : r == ROLE_SLAVE ? "slave" : "equal";
}

struct sw *sw_find_dpid(struct swc *c, uint64_t dpid)
{
	for (unsigned i = 0; i < c->o.n_switches; i++)
		if (c->sw[i].up && c->sw[i].dpid == dpid)
			return &c->sw[i];
	return NULL;
}

size_t sw_uplinks(struct swc *c, struct sw_port_ref *refs, bool *up)
{
	for (unsigned i = 0; i < c->o.n_uplinks; i++) {
		struct sw *s = sw_find_dpid(c, c->o.uplinks[i].dpid);
		refs[i] = (struct sw_port_ref){c->o.uplinks[i].dpid, 0};
		if (up)
			up[i] = false;
		for (unsigned k = 0; s && k < s->n_ports; k++)
			if (strcmp(s->ports[k].desc.name, c->o.uplinks[i].port) == 0) {
				refs[i].port = s->ports[k].desc.port_no;
				if (up)
					up[i] = s->ports[k].down_since_ms == 0;
			}
	}
	return c->o.n_uplinks;
}

static void deposed(struct sw *s, const char *how);

/* Logs @fmt for @s at most once a minute per @rl (a refusal caused by
 * what another controller did). */
#define refusal_log(s, rl, fmt, ...)                                                               \
	log_warn_limited((rl), mono_ms(), SW_REFUSAL_LOG_MS, "switch %u: " fmt, (s)->index,        \
	                 __VA_ARGS__)

static void note_error(struct sw *s, const uint8_t *msg, size_t len)
{
	struct of13_error_msg e;
	if (of13_error_decode(msg, len, &e) != OF13_OK)
		return;
	if (e.type == OFPET_BAD_REQUEST && e.code == OFPBRC_IS_SLAVE) {
		/* The first refusal tells a master it was deposed; it stops
		 * writing at once, and nothing refused is sent again. */
		s->refused++;
		refusal_log(s, &s->refusal_log,
		            "refused a write: this agent is not its master (%s)",
		            s->role == ROLE_MASTER ? "deposed" : "not master");
		if (s->role == ROLE_MASTER)
			deposed(s, "the switch refused a write");
		return;
	}
	if (e.type == OFPET_GROUP_MOD_FAILED && e.code == OFPGMFC_GROUP_EXISTS)
		return; /* reconcile.c sends ADD, then MODIFY */
	log_warn("switch %u: error type %u code %u", s->index, e.type, e.code);
}

static void store_changed(void *userdata, const struct store_cmd *cmd,
                          const struct store_result *result)
{
	struct swc *c = userdata;
	(void)cmd;
	if (result->applied)
		reconcile_kick(c);
}

/* ---- mastership ----
 *
 * A claim is one role request, or two when the switch has seen a foreign
 * id ahead of ours (claim.h). A refusal as stale makes the agent ask the
 * switch what it has seen (ROLE_REQUEST with role NOCHANGE, spec 7.3.9),
 * and sw_claim_plan() decides. A master learns it was deposed from the
 * first refused write, or from the periodic NOCHANGE query; it stops
 * writing, and claims again while it leads, after a backoff that doubles
 * up to SW_CLAIM_BACKOFF_MAX_MS. */

static void send_claim(struct sw *s);

/* Waits before the next claim, longer each time (reset once a role has
 * held for a while: sw_probe_role()). */
static void back_off(struct sw *s)
{
	s->backoff_ms = sw_claim_backoff(s->backoff_ms);
	s->next_claim_ms = mono_ms() + s->backoff_ms;
}

static void deposed(struct sw *s, const char *how)
{
	s->deposals++;
	s->role = ROLE_SLAVE; /* what the switch made this agent */
	back_off(s);
	log_warn("switch %u: deposed (%s): another controller is master; this agent writes "
	         "nothing until it claims the switch back (in %u ms, while it leads)",
	         s->index, how, s->backoff_ms);
}

/* What a role reply says the switch has seen: its memory now, whatever it
 * said before (spec 7.3.9: the reply carries the switch's generation id). */
static void learn_seen(struct sw *s, uint64_t id)
{
	s->seen_id = id;
	s->seen_known = true;
}

static void role_query_reply(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                             size_t len, bool last);

/* ROLE_REQUEST(NOCHANGE): the switch answers with this connection's role
 * and the highest generation id it has seen, and changes nothing. */
static void query_role(struct sw *s, bool after_refusal)
{
	struct of13_role_msg r = {.role = OF13_ROLE_NOCHANGE};
	struct obuf b = {0};
	of13_role_encode(&b, OF13_ROLE_REQUEST, of_conn_xid(s->conn), &r);
	if (of_conn_send(s->conn, &b, role_query_reply, s) == 0) {
		s->role_asked = true;
		s->query_after_refusal = after_refusal;
	}
}

/* The claim was refused as stale: what now, from what the switch has
 * seen. */
static void plan_claim(struct sw *s)
{
	uint64_t ids[2];
	size_t n;
	switch (sw_claim_plan(s->role_term, s->seen_id, ids, &n)) {
	case SW_CLAIM_OURS: /* it moved back meanwhile: try again, later */
		back_off(s);
		return;
	case SW_CLAIM_NEWER:
		if (s->role_term >> 32 == 0) {
			/* A replica that has not applied its cluster's generation
			 * yet: it claims again once it has. */
			log_debug("switch %u: role refused before the generation is known",
			          s->index);
			s->refused_term = s->role_term;
			return;
		}
		refusal_log(s, &s->claim_log,
		            "role refused: a newer generation's claim holds the switch "
		            "(generation id %#" PRIx64 ", ours %#" PRIx64 ")",
		            s->seen_id, s->role_term);
		s->refused_term = s->role_term; /* ask again in the next term */
		return;
	case SW_CLAIM_FOREIGN:
		refusal_log(s, &s->claim_log,
		            "the switch has seen generation id %#" PRIx64 ", which no ETTM "
		            "cluster issued; claiming it back through %#" PRIx64,
		            s->seen_id, ids[0]);
		memcpy(s->claim_ids, ids, sizeof(ids));
		s->n_claims = n;
		s->claim_at = 0;
		send_claim(s);
		return;
	}
}

static void role_refused(struct sw *s, const uint8_t *msg, size_t len)
{
	struct of13_error_msg e;
	bool stale = of13_error_decode(msg, len, &e) == OF13_OK &&
	             e.type == OFPET_ROLE_REQUEST_FAILED && e.code == OFPRRFC_STALE;
	s->role = ROLE_NONE;
	if (stale && s->n_claims == 1) {
		query_role(s, true);
		return;
	}
	if (stale) {
		/* A walk back was overtaken (someone claimed meanwhile). */
		refusal_log(s, &s->claim_log, "claim %#" PRIx64 " refused as stale",
		            s->claim_ids[s->claim_at]);
		back_off(s);
		return;
	}
	refusal_log(s, &s->claim_log, "role request refused (type %u code %u)", e.type, e.code);
	s->refused_term = s->role_term; /* ask again in the next term */
}

static void role_reply(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                       size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	(void)last;
	s->role_asked = false;
	if (status == -ECONNRESET)
		return;
	if (status < 0) {
		role_refused(s, msg, len);
		return;
	}
	struct of13_role_msg r;
	if (of13_role_decode(msg, len, &r) != OF13_OK)
		return;
	learn_seen(s, r.generation_id);
	if (s->claim_at + 1 < s->n_claims) {
		s->claim_at++;
		send_claim(s);
		return;
	}
	enum role was = s->role;
	s->role = r.role == OF13_ROLE_MASTER  ? ROLE_MASTER
	          : r.role == OF13_ROLE_SLAVE ? ROLE_SLAVE
	                                      : ROLE_NONE;
	s->role_since_ms = mono_ms();
	if (s->role != was)
		log_info("switch %u: %s (term %" PRIu64 ", generation %" PRIu64 ")", s->index,
		         sw_role_name(s->role), r.generation_id & 0xffffffffu,
		         r.generation_id >> 32);
	if (s->role == ROLE_MASTER) {
		/* Another master may have changed the groups meanwhile. */
		reconcile_forget_groups(s);
		reconcile_start(s);
	}
}

static void role_query_reply(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                             size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	(void)last;
	s->role_asked = false;
	struct of13_role_msg r;
	if (status < 0 || of13_role_decode(msg, len, &r) != OF13_OK)
		return;
	learn_seen(s, r.generation_id);
	if (s->query_after_refusal) {
		plan_claim(s);
		return;
	}
	/* The periodic query: has someone else taken the switch? */
	if (s->role == ROLE_MASTER && r.role != OF13_ROLE_MASTER)
		deposed(s, "the switch says this agent is no longer its master");
}

static void send_claim(struct sw *s)
{
	struct of13_role_msg r = {
	    .role = s->role_want == ROLE_MASTER ? OF13_ROLE_MASTER : OF13_ROLE_SLAVE,
	    .generation_id = s->claim_ids[s->claim_at],
	};
	struct obuf b = {0};
	of13_role_encode(&b, OF13_ROLE_REQUEST, of_conn_xid(s->conn), &r);
	if (of_conn_send(s->conn, &b, role_reply, s) == 0)
		s->role_asked = true;
}

static void claim_role(struct sw *s)
{
	struct swc *c = s->ctl;
	if (!s->up || s->role_asked || (c->term & 0xffffffffu) == 0)
		return;
	enum role want = c->leader ? ROLE_MASTER : ROLE_SLAVE;
	if (s->role == want && s->role_term == c->term)
		return;
	/* A master whose store lost its leader stays master until another
	 * leader claims the switch: while there is none, it alone can put the
	 * start-up flows back, without which no leader may ever be elected
	 * (reconcile.c writes nothing else without leadership). */
	if (s->role == ROLE_MASTER && !c->leader && store_leader_id(c->store) == 0)
		return;
	if (s->refused_term == c->term || mono_ms() < s->next_claim_ms)
		return;
	/* Until the switch confirms, this agent writes nothing. */
	s->role = ROLE_NONE;
	s->role_want = want;
	s->role_term = c->term;
	s->claim_ids[0] = c->term;
	s->n_claims = 1;
	s->claim_at = 0;
	send_claim(s);
}

void sw_probe_role(struct sw *s)
{
	if (!s->up || s->role_asked || s->role == ROLE_NONE)
		return;
	/* A role that held a while ends the trouble: the next one starts
	 * from the shortest wait again. */
	if (s->backoff_ms && mono_ms() - s->role_since_ms > 10 * SW_CLAIM_BACKOFF_MAX_MS)
		s->backoff_ms = 0;
	query_role(s, false);
}

/* ---- the leadership tick ---- */

static void tick_cb(uv_timer_t *t)
{
	struct swc *c = t->data;
	bool leader = store_is_leader(c->store);
	/* The generation this leader declared, not only the one applied: a
	 * survivor that recovers by fiat or by hand leads at once, in the old
	 * generation's term (raft_recover() keeps it), and would claim the
	 * switches with the very id the old generation's master holds. */
	uint64_t generation = store_known_generation(c->store);
	uint64_t term = sw_generation_id(generation, store_term(c->store));
	if (leader != c->leader || term != c->term) {
		if (leader && !c->leader) {
			log_info("switches: this agent leads (term %" PRIu64 ", generation %" PRIu64
			         "); claiming mastership",
			         store_term(c->store), generation);
			topology_leading(c);
		}
		c->leader = leader;
		c->term = term;
	}
	for (unsigned i = 0; i < c->o.n_switches; i++)
		claim_role(&c->sw[i]);
	fiat_check(c);
}

/* ---- services ---- */

int sw_set_service(struct swc *c, const struct sw_service *svc, void *userdata)
{
	size_t i = 0;
	while (i < c->n_svcs && c->svcs[i].data != userdata)
		i++;
	if (!svc) {
		if (i < c->n_svcs) {
			memmove(&c->svcs[i], &c->svcs[i + 1],
			        (c->n_svcs - i - 1) * sizeof(c->svcs[0]));
			c->n_svcs--;
		}
		reconcile_kick(c);
		return 0;
	}
	if (i == c->n_svcs && c->n_svcs == c->cap_svcs) {
		size_t cap = c->cap_svcs ? 2 * c->cap_svcs : 4;
		struct sw_service_ref *v = reallocarray(c->svcs, cap, sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->svcs = v;
		c->cap_svcs = cap;
	}
	c->svcs[i] = (struct sw_service_ref){svc, userdata};
	c->n_svcs += i == c->n_svcs;
	reconcile_kick(c);
	return 0;
}

void sw_kick(struct swc *c)
{
	reconcile_kick(c);
}

bool sw_is_master(struct swc *c)
{
	if (!c->leader)
		return false;
	for (unsigned i = 0; i < c->o.n_switches; i++)
		if (c->sw[i].up && c->sw[i].role != ROLE_MASTER)
			return false;
	return true;
}

const uint8_t *sw_own_mac(struct swc *c)
{
	return c->mac;
}

/* ---- connections ---- */

static void conn_up(void *userdata, struct of_conn *conn, uint64_t dpid)
{
	struct sw *s = userdata;
	s->up = true;
	s->dpid = dpid;
	s->role = ROLE_NONE;
	s->role_term = 0;
	s->role_asked = false;
	s->seen_known = false;
	s->n_ports = 0;
	s->installed_valid = false;
	/* Packet-ins (LLDP) and port status, whole frames: a connection to
	 * a switch's passive listener gets neither until it asks. */
	struct obuf b = {0};
	of13_set_config_encode(&b, of_conn_xid(conn),
	                       &(struct of13_switch_config){.miss_send_len = OF13_CML_NO_BUFFER});
	of_conn_send(conn, &b, NULL, NULL);
	stats_request_ports(s);
	claim_role(s);
}

static void conn_down(void *userdata, struct of_conn *conn, const char *why)
{
	struct sw *s = userdata;
	(void)conn;
	refusal_log(s, &s->down_log, "(%s) disconnected: %s", of_conn_address(s->conn), why);
	s->up = false;
	s->role = ROLE_NONE;
	s->role_asked = false;
	s->reconciling = s->dumping = false;
	sw_flows_free(&s->dump);
	reconcile_forget_groups(s);
}

static void conn_message(void *userdata, struct of_conn *conn, const struct of13_header *h,
                         const uint8_t *msg, size_t len)
{
	struct sw *s = userdata;
	(void)conn;
	switch (h->type) {
	case OF13_PACKET_IN:
		topology_packet_in(s, msg, len);
		break;
	case OF13_PORT_STATUS:
		stats_port_status(s, msg, len);
		break;
	case OF13_ERROR:
		note_error(s, msg, len);
		break;
	case OF13_FLOW_REMOVED:
		/* Only the start-up flows ask for this (OFPFF_SEND_FLOW_REM):
		 * someone deleted them; the master puts them back now. */
		if (s->role == ROLE_MASTER)
			reconcile_repair(s);
		break;
	default:
		break;
	}
}

static const struct of_conn_ops conn_ops = {
    .up = conn_up,
    .down = conn_down,
    .message = conn_message,
};

int sw_open(uv_loop_t *loop, const struct sw_options *o, const struct sw_self *self,
            struct store *store, struct swc **ret, char **ret_error)
{
	struct swc *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->o = *o;
	c->self = *self;
	c->store = store;
	c->raw_fd = -1;
	/* TLS to the switches with the agent's identity when the network has a
	 * CA (docs/switch.md, "The OpenFlow channel"); else plain TCP. */
	struct ctl_tls *tls = ctl_tls_has_network_ca(ctl_tls_default()) ? ctl_tls_default() : NULL;
	if (!tls && o->n_switches)
		log_warn(
		    "host.network-ca is not set: the OpenFlow channels are plain TCP and "
		    "the switches are not authenticated (a bare lab or a benchmark's baseline)");
	int r;
	for (unsigned i = 0; i < o->n_switches; i++) {
		struct sw *s = &c->sw[i];
		s->ctl = c;
		s->index = i + 1;
		r = of_conn_open(loop, o->switches[i], tls, &conn_ops, s, &s->conn);
		if (r < 0) {
			for (unsigned k = 0; k < i; k++)
				of_conn_close(c->sw[k].conn);
			free(c);
			return error_set(ret_error, r, "switch %s: %s", o->switches[i],
			                 strerror(-r));
		}
	}
	/* The members too: who has joined decides what a port not admitted
	 * may send (desired.c, the control plane). */
	unsigned tables[] = {TRUST_ADMISSIONS, SWITCH_LOCATIONS, SWITCH_LINKS, STORE_MEMBERS};
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		r = store_subscribe(store, tables[i], store_changed, c, &c->subs[i]);
		if (r < 0) {
			error_set(ret_error, r, "store: %s", strerror(-r));
			for (size_t k = 0; k < i; k++)
				store_unsubscribe(store, c->subs[k]);
			break;
		}
	}
	/* Last, since its poll handle is in the loop once it is open. */
	if (r >= 0 && (r = topology_open(c, ret_error)) < 0)
		for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++)
			store_unsubscribe(store, c->subs[k]);
	if (r < 0) {
		for (unsigned k = 0; k < o->n_switches; k++)
			of_conn_close(c->sw[k].conn);
		free(c);
		return r;
	}
	uv_timer_t *timers[] = {&c->tick, &c->lldp, &c->stats, &c->kick};
	for (size_t i = 0; i < 4; i++) {
		uv_timer_init(loop, timers[i]);
		timers[i]->data = c;
	}
	uv_timer_start(&c->tick, tick_cb, TICK_MS, TICK_MS);
	uv_timer_start(&c->lldp, topology_lldp_cb, 100, o->lldp_interval_ms);
	uv_timer_start(&c->stats, stats_timer_cb, o->stats_interval_ms, o->stats_interval_ms);
	*ret = c;
	return 0;
}

static void handle_closed(uv_handle_t *h)
{
	struct swc *c = h->data;
	if (--c->open_handles == 0) {
		for (unsigned i = 0; i < c->o.n_switches; i++) {
			sw_flows_free(&c->sw[i].installed);
			sw_flows_free(&c->sw[i].dump);
			reconcile_forget_groups(&c->sw[i]);
			free(c->sw[i].groups_sent);
			free(c->sw[i].ports);
		}
		void (*done)(void *arg) = c->closed;
		void *arg = c->closed_arg;
		free(c->svcs);
		free(c);
		if (done)
			done(arg);
	}
}

void sw_close(struct swc *c, void (*done)(void *arg), void *arg)
{
	c->closing = true;
	c->closed = done;
	c->closed_arg = arg;
	for (size_t i = 0; i < sizeof(c->subs) / sizeof(c->subs[0]); i++)
		store_unsubscribe(c->store, c->subs[i]);
	for (unsigned i = 0; i < c->o.n_switches; i++)
		of_conn_close(c->sw[i].conn);
	uv_timer_t *timers[] = {&c->tick, &c->lldp, &c->stats, &c->kick};
	c->open_handles = 4 + (c->raw_fd >= 0);
	topology_close(c, handle_closed);
	for (size_t i = 0; i < 4; i++)
		uv_close((uv_handle_t *)timers[i], handle_closed);
}

/* ---- helpers for the other files ---- */

struct sw *sw_find_name(struct swc *c, const char *name)
{
	char *end;
	if ((name[0] == 's' || name[0] == 'S') && name[1]) {
		unsigned long n = strtoul(name + 1, &end, 10);
		if (!*end && n >= 1 && n <= c->o.n_switches)
			return &c->sw[n - 1];
	}
	uint64_t dpid = strtoull(name, &end, 16);
	if (*name && !*end)
		return sw_find_dpid(c, dpid);
	return NULL;
}

void sw_send_flow_mod(struct sw *s, const struct of13_flow_mod *fm)
{
	struct obuf b = {0};
	of13_flow_mod_encode(&b, of_conn_xid(s->conn), fm);
	if (of_conn_send(s->conn, &b, NULL, NULL) == 0)
		s->flow_mods++;
}

char *sw_dpid_str(uint64_t dpid, char buf[17])
{
	snprintf(buf, 17, "%016" PRIx64, dpid);
	return buf;
}
