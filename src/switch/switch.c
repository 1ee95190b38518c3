/* The controller (switch.h). */
#include "switch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/client.h"
#include "api/server.h"
#include "conn.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lldp.h"
#include "store/store.h"
#include "switch/tables.h"
#include "trust/tables.h"

#define TICK_MS                   50 /* how often leadership and term are checked */
#define PEER_TIMEOUT_MS           1000
#define MAX_SEEN                  256
#define OFPET_BAD_REQUEST         1
#define OFPBRC_IS_SLAVE           10
#define OFPET_ROLE_REQUEST_FAILED 11
#define OFPET_GROUP_MOD_FAILED    6
#define OFPGMFC_GROUP_EXISTS      0

enum role {
	ROLE_NONE, /* not asked yet, or refused */
	ROLE_SLAVE,
	ROLE_MASTER,
};

static const char *role_name(enum role r)
{
	return r == ROLE_MASTER ? "master" : r == ROLE_SLAVE ? "slave" : "equal";
}

struct port {
	struct of13_port desc;
	uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets;
	uint64_t stats_ms; /* when the counters above were read */
	double rx_bps, tx_bps;
	uint64_t down_since_ms; /* 0 while up */
};

struct sw {
	struct swc *ctl;
	unsigned index; /* 1-based, in configuration order */
	struct of_conn *conn;
	bool up;
	uint64_t dpid;
	enum role role;
	uint64_t role_term;    /* the term of the last role request */
	bool role_asked;       /* a request is under way */
	uint64_t refused_term; /* the switch refused our role in this term */
	struct port ports[OF13_PORTS_MAX];
	unsigned n_ports;
	/* Flows read back from the switch: ETTM's (by cookie), and a count of
	 * all of them; groups. */
	struct sw_flows installed, dump;
	bool installed_valid, dumping;
	unsigned n_flows, n_flows_dump, n_groups, n_groups_dump;
	/* Reconciliation, while master. */
	bool reconciling, dirty;
	uint64_t reconciled_ms;
	uint64_t reconciled_term; /* the last term this agent reconciled the switch as master */
	unsigned flow_mods, refused;
	uint64_t reconcile_started_ns;
	struct sent_group {
		uint32_t id;
		uint8_t *bytes;
		size_t len;
	} groups_sent[SW_GROUPS_MAX];
	size_t n_groups_sent;
};

/* Soft state the master keeps for links and locations: when each was last
 * seen (link keys are dpid/port; location keys host names). */
struct seen {
	uint64_t dpid;
	uint32_t port;
	uint64_t ms;
};

struct swc {
	uv_loop_t *loop;
	struct store *store;
	struct sw_options o;
	struct sw_self self;
	uint8_t mac[6];
	int raw_fd;
	int ifindex;
	struct sw sw[SW_MAX_SWITCHES];
	uv_timer_t tick, lldp, stats, kick;
	struct store_subscription *subs[3]; /* the tables it follows */
	bool leader;
	uint64_t term;
	struct seen links_seen[MAX_SEEN];
	unsigned n_links_seen;
	unsigned topo_inflight;
	/* The failure detector (fiat_check). */
	char fiat_state[24];
	char fiat_reason[256];
	bool fiat_running;
	uint64_t fiat_last_ms;
	struct {
		const struct sw_service *svc;
		void *data;
	} svcs[SW_MAX_SERVICES];
	unsigned n_svcs;
	bool closing;
	int open_handles;
};

void sw_options_default(struct sw_options *o)
{
	*o = (struct sw_options){
	    .stats_interval_ms = 1000,
	    .lldp_interval_ms = 1000,
	    .link_timeout_ms = 2500,
	    .fiat_after_ms = 3000,
	};
}

static struct sw *find_dpid(struct swc *c, uint64_t dpid)
{
	for (unsigned i = 0; i < c->o.n_switches; i++)
		if (c->sw[i].up && c->sw[i].dpid == dpid)
			return &c->sw[i];
	return NULL;
}

static struct port *find_port(struct sw *s, uint32_t no)
{
	for (unsigned i = 0; i < s->n_ports; i++)
		if (s->ports[i].desc.port_no == no)
			return &s->ports[i];
	return NULL;
}

size_t sw_uplinks(struct swc *c, struct sw_port_ref *refs, bool *up)
{
	for (unsigned i = 0; i < c->o.n_uplinks; i++) {
		struct sw *s = find_dpid(c, c->o.uplinks[i].dpid);
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

/* The switch's flows, and the service's flows and groups. */
static int desired_for(struct swc *c, struct sw *s, struct sw_flows *ret, struct sw_groups *groups)
{
	struct sw_port_ref refs[SW_MAX_UPLINKS];
	size_t n = sw_uplinks(c, refs, NULL);
	const struct store_state *st = store_state(c->store);
	struct sw_groups ignore;
	if (!groups)
		groups = &ignore;
	groups->n = 0;
	int r = sw_desired(st, refs, n, s->dpid, ret);
	for (unsigned i = 0; r == 0 && i < c->n_svcs; i++) {
		r = c->svcs[i].svc->flows(c->svcs[i].data, st, refs, n, s->dpid, ret, groups);
		if (r < 0)
			sw_flows_free(ret);
	}
	return r;
}

/* ---- errors the switch sends back ---- */

static void note_error(struct sw *s, const uint8_t *msg, size_t len)
{
	struct of13_error_msg e;
	if (of13_error_decode(msg, len, &e) != OF13_OK)
		return;
	if (e.type == OFPET_BAD_REQUEST && e.code == OFPBRC_IS_SLAVE) {
		s->refused++;
		log_warn("switch %u: refused a write: this agent is not its master (%s)", s->index,
		         s->role == ROLE_MASTER ? "deposed" : "slave");
		return;
	}
	if (e.type == OFPET_GROUP_MOD_FAILED && e.code == OFPGMFC_GROUP_EXISTS)
		return; /* send_group() sends ADD, then MODIFY */
	log_warn("switch %u: error type %u code %u", s->index, e.type, e.code);
}

/* ---- reconciliation (master) ---- */

static void reconcile(struct sw *s);

static void barrier_done(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                         size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	(void)msg;
	(void)len;
	(void)last;
	s->reconciling = false;
	if (status < 0)
		return;
	s->reconciled_ms = wall_ms();
	double ms = (double)(mono_ns() - s->reconcile_started_ns) / 1e6;
	if (s->reconciled_term != s->role_term)
		log_info("switch %u: reconciled as master of term %" PRIu64 " in %.1f ms", s->index,
		         s->role_term, ms);
	else
		log_debug("switch %u: reconciled in %.1f ms", s->index, ms);
	s->reconciled_term = s->role_term;
	if (s->dirty)
		reconcile(s);
}

static void send_flow_mod(struct sw *s, const struct of13_flow_mod *fm)
{
	struct obuf b = {0};
	of13_flow_mod_encode(&b, of_conn_xid(s->conn), fm);
	if (of_conn_send(s->conn, &b, NULL, NULL) == 0)
		s->flow_mods++;
}

/* A group as this agent last sent it to the switch: sent again only when it
 * changes (and after each role claim, when the memory is cleared). The
 * switch refuses ADD for a group it has (OFPGMFC_GROUP_EXISTS, ignored)
 * and MODIFY for one it has not, so both go, in that order. */
static void send_group(struct sw *s, const struct of13_group_mod *gm)
{
	struct obuf want = {0};
	of13_group_mod_encode(&want, 0, gm);
	if (want.failed)
		return;
	for (size_t i = 0; i < s->n_groups_sent; i++) {
		struct sent_group *g = &s->groups_sent[i];
		if (g->id != gm->group_id)
			continue;
		if (g->len == want.len && memcmp(g->bytes, want.data, want.len) == 0) {
			obuf_free(&want);
			return;
		}
		free(g->bytes);
		*g = s->groups_sent[--s->n_groups_sent];
		break;
	}
	for (int cmd = OF13_GROUP_ADD; cmd <= OF13_GROUP_MODIFY; cmd++) {
		struct of13_group_mod m = *gm;
		m.command = (uint16_t)cmd;
		struct obuf b = {0};
		of13_group_mod_encode(&b, of_conn_xid(s->conn), &m);
		of_conn_send(s->conn, &b, NULL, NULL);
	}
	if (s->n_groups_sent < SW_GROUPS_MAX)
		s->groups_sent[s->n_groups_sent++] =
		    (struct sent_group){gm->group_id, want.data, want.len};
	else
		obuf_free(&want);
}

static void forget_groups(struct sw *s)
{
	for (size_t i = 0; i < s->n_groups_sent; i++)
		free(s->groups_sent[i].bytes);
	s->n_groups_sent = 0;
}

static void collect_flow(void *userdata, const struct of13_flow_stats *fs)
{
	struct sw *s = userdata;
	s->n_flows_dump++;
	if ((fs->cookie & SW_COOKIE_MASK) != SW_COOKIE)
		return;
	struct of13_flow_mod fm;
	of13_flow_mod_init(&fm, OF13_FLOW_ADD);
	fm.cookie = fs->cookie;
	fm.table_id = fs->table_id;
	fm.priority = fs->priority;
	fm.match = fs->match;
	fm.n_instructions = fs->n_instructions;
	memcpy(fm.instructions, fs->instructions, sizeof(fm.instructions));
	sw_flow_canonical(&fm);
	sw_flows_add(&s->dump, &fm);
}

/* Applies the difference between the flows just read back and the desired
 * set, then a barrier marks the end. */
static void apply_diff(struct sw *s)
{
	struct sw_flows want = {0};
	struct sw_diff d = {0};
	struct sw_groups groups;
	if (desired_for(s->ctl, s, &want, &groups) < 0 || sw_diff(&want, &s->installed, &d) < 0) {
		log_error("switch %u: out of memory computing flows", s->index);
		s->reconciling = false;
		sw_flows_free(&want);
		return;
	}
	/* Groups before the flows that use them. */
	for (size_t i = 0; i < groups.n; i++)
		send_group(s, &groups.v[i]);
	for (size_t i = 0; i < d.n_del; i++) {
		struct of13_flow_mod fm = *d.del[i];
		fm.command = OF13_FLOW_DELETE_STRICT;
		fm.cookie = SW_COOKIE;
		fm.cookie_mask = SW_COOKIE_MASK;
		fm.n_instructions = 0;
		send_flow_mod(s, &fm);
	}
	for (size_t i = 0; i < d.n_add; i++)
		send_flow_mod(s, d.add[i]);
	if (d.n_add || d.n_del)
		log_info("switch %u: reconciled: %zu flow(s) added or changed, %zu removed",
		         s->index, d.n_add, d.n_del);
	/* What the switch will hold once the barrier returns. */
	sw_flows_free(&s->installed);
	s->installed = want;
	sw_diff_free(&d);
	struct obuf b = {0};
	of13_simple_encode(&b, OF13_BARRIER_REQUEST, of_conn_xid(s->conn), NULL, 0);
	if (of_conn_send(s->conn, &b, barrier_done, s) < 0)
		s->reconciling = false;
}

static void flow_dump_done(struct sw *s)
{
	sw_flows_free(&s->installed);
	s->installed = s->dump;
	s->dump = (struct sw_flows){0};
	s->installed_valid = true;
	s->n_flows = s->n_flows_dump;
	s->dumping = false;
	for (unsigned i = 0; i < s->ctl->n_svcs; i++)
		if (s->ctl->svcs[i].svc->installed)
			s->ctl->svcs[i].svc->installed(s->ctl->svcs[i].data, s->dpid,
			                               &s->installed);
}

static void dump_cb(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                    size_t len, bool last);

static void request_flows(struct sw *s)
{
	struct of13_flow_stats_request req = {
	    .table_id = 0xff,
	    .out_port = OF13_PORT_ANY,
	    .out_group = OF13_GROUP_ANY,
	};
	struct obuf b = {0};
	of13_flow_stats_request_encode(&b, of_conn_xid(s->conn), &req);
	sw_flows_free(&s->dump);
	s->n_flows_dump = 0;
	s->dumping = true;
	if (of_conn_send(s->conn, &b, dump_cb, s) < 0) {
		s->dumping = false;
		s->reconciling = false;
	}
}

/* Reads the switch's flows back and makes them the desired set. Only once
 * the switch has confirmed this agent as master for the current term. */
static void reconcile(struct sw *s)
{
	struct swc *c = s->ctl;
	if (!s->up || s->role != ROLE_MASTER || !c->leader || s->role_term != c->term)
		return;
	if (s->reconciling || s->dumping) {
		s->dirty = true;
		return;
	}
	s->dirty = false;
	s->reconciling = true;
	s->reconcile_started_ns = mono_ns();
	request_flows(s);
}

static void kick_cb(uv_timer_t *t)
{
	struct swc *c = t->data;
	for (unsigned i = 0; i < c->o.n_switches; i++)
		reconcile(&c->sw[i]);
}

/* Soon, and once for a burst of changes. */
static void kick(struct swc *c)
{
	if (!c->closing && !uv_is_active((uv_handle_t *)&c->kick))
		uv_timer_start(&c->kick, kick_cb, 5, 0);
}

static void store_changed(void *userdata, const struct store_cmd *cmd,
                          const struct store_result *result)
{
	struct swc *c = userdata;
	(void)cmd;
	if (result->applied)
		kick(c);
}

/* ---- mastership ---- */

static void role_reply(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                       size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	(void)last;
	s->role_asked = false;
	if (status == -ECONNRESET)
		return;
	struct of13_role_msg r;
	if (status < 0) {
		struct of13_error_msg e;
		if (of13_error_decode(msg, len, &e) == OF13_OK)
			log_warn("switch %u: role request refused (type %u code %u%s)", s->index,
			         e.type, e.code,
			         e.type == OFPET_ROLE_REQUEST_FAILED && e.code == 0 ? ": stale term"
			                                                            : "");
		s->role = ROLE_NONE;
		s->refused_term = s->role_term; /* ask again in the next term */
		return;
	}
	if (of13_role_decode(msg, len, &r) != OF13_OK)
		return;
	enum role was = s->role;
	s->role = r.role == OF13_ROLE_MASTER  ? ROLE_MASTER
	          : r.role == OF13_ROLE_SLAVE ? ROLE_SLAVE
	                                      : ROLE_NONE;
	if (s->role != was)
		log_info("switch %u: %s (term %" PRIu64 ")", s->index, role_name(s->role),
		         r.generation_id);
	if (s->role == ROLE_MASTER) {
		/* Another master may have changed the groups meanwhile. */
		forget_groups(s);
		reconcile(s);
	}
}

static void claim_role(struct sw *s)
{
	struct swc *c = s->ctl;
	if (!s->up || s->role_asked || c->term == 0)
		return;
	enum role want = c->leader ? ROLE_MASTER : ROLE_SLAVE;
	if (s->role == want && s->role_term == c->term)
		return;
	struct of13_role_msg r = {
	    .role = want == ROLE_MASTER ? OF13_ROLE_MASTER : OF13_ROLE_SLAVE,
	    .generation_id = c->term,
	};
	struct obuf b = {0};
	of13_role_encode(&b, OF13_ROLE_REQUEST, of_conn_xid(s->conn), &r);
	if (s->refused_term == c->term)
		return;
	/* Until the switch confirms, this agent writes nothing. */
	s->role = ROLE_NONE;
	s->role_term = c->term;
	if (of_conn_send(s->conn, &b, role_reply, s) == 0)
		s->role_asked = true;
}

/* ---- the failure detector: recovery by fiat ---- */

/* How long the port of @host has been down, as the switch it sits on
 * reports: 0 while it is up, -1 when this agent cannot tell. */
static int64_t port_down_ms(struct swc *c, const char *host)
{
	const struct switch_location *l = switch_location_find(store_state(c->store), host);
	struct sw *s = l ? find_dpid(c, l->dpid) : NULL;
	struct port *p = s ? find_port(s, l->port) : NULL;
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

/* A majority of voters is gone. If every one of them has its switch port
 * down (power lost, not a partition) for fiat-after-ms, the survivors
 * recover the membership on their own: the one with the lowest id among
 * the members whose ports are up declares it. */
static void fiat_check(struct swc *c)
{
	if (!c->o.fiat_after_ms) {
		fiat_set(c, "off", "fiat-after-ms is 0");
		return;
	}
	const struct store_state *st = store_state(c->store);
	uint64_t leader = store_leader_id(c->store);
	if (store_is_leader(c->store) || c->fiat_running) {
		fiat_set(c, "ok", "%s", c->fiat_running ? "recovering" : "this host leads");
		return;
	}
	uint64_t voters[16];
	size_t n = store_voters(c->store, voters, 16);
	char down[128] = "", up[128] = "";
	size_t n_down = 0;
	int64_t shortest = INT64_MAX;
	for (size_t i = 0; i < n; i++) {
		const struct store_member *m = store_member_find(st, voters[i]);
		if (!m || strcmp(m->name, c->self.name) == 0)
			continue;
		int64_t ms = port_down_ms(c, m->name);
		char *list = ms > 0 ? down : up;
		snprintf(list + strlen(list), 128 - strlen(list), "%s%s", list[0] ? ", " : "",
		         m->name);
		if (ms > 0) {
			n_down++;
			shortest = ms < shortest ? ms : shortest;
		}
	}
	if (n == 0 || store_cluster(st)->generation == 0 ||
	    !store_member_find_name(st, c->self.name)) {
		fiat_set(c, "ok", "not a member of a cluster yet");
		return;
	}
	if (leader && (!n_down || n - n_down > n / 2)) {
		fiat_set(c, "ok", "a leader is elected");
		return;
	}
	if (!n_down) {
		fiat_set(c, "waiting",
		         "no leader, but no voter's port is down (%s up): an election "
		         "or a partition, not a power loss; no fiat",
		         up[0] ? up : "this host");
		return;
	}
	if (n - n_down > n / 2) {
		fiat_set(c, "waiting",
		         "no leader, but the ports of a majority of voters are up (%s): "
		         "a partition or an election, not a power loss; no fiat",
		         up[0] ? up : "this host");
		return;
	}
	if (shortest < (int64_t)c->o.fiat_after_ms) {
		fiat_set(c, "pending",
		         "the ports of voters %s are down; recovery by fiat if they stay down "
		         "%u ms",
		         down, c->o.fiat_after_ms);
		return;
	}
	/* The survivor that declares: the lowest id with its port up. */
	const struct store_member *me = store_member_find_name(st, c->self.name);
	for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(st, STORE_MEMBERS, i);
		if (m->id < (me ? me->id : 0) && port_down_ms(c, m->name) == 0) {
			fiat_set(c, "pending",
			         "voters %s lost power; %s, the first survivor, recovers by fiat",
			         down, m->name);
			return;
		}
	}
	uint64_t now = uv_now(c->loop);
	if (c->fiat_last_ms && now - c->fiat_last_ms < 5000)
		return;
	c->fiat_last_ms = now;
	fiat_set(c, "recovering", "voters %s lost power (ports down %u ms): recovering by fiat",
	         down, c->o.fiat_after_ms);
	char *error = NULL;
	if (store_recover(c->store, fiat_done, c, &error) == 0)
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

static void lldp_probe_all(struct swc *c);

static void tick_cb(uv_timer_t *t)
{
	struct swc *c = t->data;
	bool leader = store_is_leader(c->store);
	uint64_t term = store_term(c->store);
	if (leader != c->leader || term != c->term) {
		if (leader && !c->leader) {
			log_info("switches: this agent leads (term %" PRIu64
			         "); claiming mastership",
			         term);
			/* Links are as fresh as the store says until LLDP
			 * says otherwise. */
			uint64_t now = uv_now(c->loop);
			for (unsigned i = 0; i < c->n_links_seen; i++)
				c->links_seen[i].ms = now;
		}
		c->leader = leader;
		c->term = term;
	}
	for (unsigned i = 0; i < c->o.n_switches; i++)
		claim_role(&c->sw[i]);
	fiat_check(c);
}

/* ---- services ---- */

void sw_set_service(struct swc *c, const struct sw_service *svc, void *userdata)
{
	unsigned i = 0;
	while (i < c->n_svcs && c->svcs[i].data != userdata)
		i++;
	if (!svc) {
		if (i < c->n_svcs)
			memmove(&c->svcs[i], &c->svcs[i + 1],
			        (c->n_svcs - i - 1) * sizeof(c->svcs[0]));
		c->n_svcs -= i < c->n_svcs;
	} else if (i < c->n_svcs || c->n_svcs < SW_MAX_SERVICES) {
		c->svcs[i].svc = svc;
		c->svcs[i].data = userdata;
		c->n_svcs += i == c->n_svcs;
	}
	kick(c);
}

void sw_kick(struct swc *c)
{
	kick(c);
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

/* ---- topology: LLDP ---- */

static void packet_out(struct sw *s, uint32_t port, const uint8_t *frame, size_t len)
{
	struct of13_packet_out po = {
	    .buffer_id = OF13_NO_BUFFER,
	    .in_port = OF13_PORT_CONTROLLER,
	    .n_actions = 1,
	    .actions = {{.type = OF13_ACTION_OUTPUT, .output = {.port = port}}},
	    .data = frame,
	    .data_len = len,
	};
	struct obuf b = {0};
	of13_packet_out_encode(&b, of_conn_xid(s->conn), &po);
	of_conn_send(s->conn, &b, NULL, NULL);
}

int sw_packet_out(struct swc *c, uint64_t dpid, uint32_t port, const uint8_t *frame, size_t len)
{
	struct sw *s = find_dpid(c, dpid);
	if (!s || s->role != ROLE_MASTER)
		return -ENOTCONN;
	packet_out(s, port, frame, len);
	return 0;
}

static void lldp_probe_all(struct swc *c)
{
	for (unsigned i = 0; i < c->o.n_switches; i++) {
		struct sw *s = &c->sw[i];
		if (!s->up || s->role != ROLE_MASTER)
			continue;
		for (unsigned k = 0; k < s->n_ports; k++) {
			const struct of13_port *p = &s->ports[k].desc;
			if (p->port_no > OF13_PORT_MAX || (p->state & OF13_PORT_STATE_LINK_DOWN))
				continue;
			struct lldp_info info = {
			    .kind = LLDP_PROBE, .dpid = s->dpid, .port = p->port_no};
			memcpy(info.src_mac, p->hw_addr, 6);
			uint8_t frame[LLDP_FRAME_MAX];
			size_t len = lldp_encode(frame, sizeof(frame), &info);
			if (len)
				packet_out(s, p->port_no, frame, len);
		}
	}
}

static void topo_done(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct swc *c = userdata;
	c->topo_inflight--;
	if (status < 0)
		log_debug("switches: topology update not committed: %s", error);
	else if (!res->applied)
		log_warn("switches: topology update rejected: %s", res->reason);
}

static void propose_topo(struct swc *c, const struct store_cmd *cmd)
{
	/* One change at a time: the next probe round proposes the rest
	 * against the state this one leaves. */
	if (c->topo_inflight)
		return;
	if (store_propose(c->store, cmd, topo_done, c) == 0)
		c->topo_inflight++;
}

static struct seen *link_seen(struct swc *c, uint64_t dpid, uint32_t port, bool add)
{
	for (unsigned i = 0; i < c->n_links_seen; i++)
		if (c->links_seen[i].dpid == dpid && c->links_seen[i].port == port)
			return &c->links_seen[i];
	if (!add || c->n_links_seen == MAX_SEEN)
		return NULL;
	c->links_seen[c->n_links_seen] = (struct seen){dpid, port, 0};
	return &c->links_seen[c->n_links_seen++];
}

static const struct switch_link *stored_link(struct swc *c, uint64_t dpid, uint32_t port)
{
	const struct store_state *st = store_state(c->store);
	for (size_t i = 0; i < store_count(st, SWITCH_LINKS); i++) {
		const struct switch_link *l = store_row(st, SWITCH_LINKS, i);
		if (l->dpid == dpid && l->port == port)
			return l;
	}
	return NULL;
}

static void saw_link(struct swc *c, uint64_t dpid, uint32_t port, uint64_t peer_dpid,
                     uint32_t peer_port)
{
	struct seen *seen = link_seen(c, dpid, port, true);
	if (seen)
		seen->ms = uv_now(c->loop);
	const struct switch_link *l = stored_link(c, dpid, port);
	if (l && l->peer_dpid == peer_dpid && l->peer_port == peer_port)
		return;
	struct store_cmd cmd = {.table = SWITCH_LINKS, .op = STORE_PUT, .time_ms = wall_ms()};
	(*STORE_CMD_ROW(&cmd, struct switch_link)) =
	    (struct switch_link){dpid, port, peer_dpid, peer_port, cmd.time_ms};
	log_info("switches: link %016" PRIx64 "/%u -> %016" PRIx64 "/%u", dpid, port, peer_dpid,
	         peer_port);
	propose_topo(c, &cmd);
}

static void saw_host(struct swc *c, const struct lldp_info *info, uint64_t dpid, uint32_t port)
{
	char mac[STORE_MAC_MAX];
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", info->src_mac[0],
	         info->src_mac[1], info->src_mac[2], info->src_mac[3], info->src_mac[4],
	         info->src_mac[5]);
	const struct switch_location *l = switch_location_find(store_state(c->store), info->host);
	if (l && l->dpid == dpid && l->port == port && strcmp(l->mac, mac) == 0 &&
	    l->control_addr == info->control_addr && l->guest_addr == info->guest_addr)
		return;
	struct store_cmd cmd = {.table = SWITCH_LOCATIONS, .op = STORE_PUT, .time_ms = wall_ms()};
	struct switch_location *n = STORE_CMD_ROW(&cmd, struct switch_location);
	snprintf(n->host, sizeof(n->host), "%s", info->host);
	snprintf(n->mac, sizeof(n->mac), "%s", mac);
	n->dpid = dpid;
	n->port = port;
	n->control_addr = info->control_addr;
	n->guest_addr = info->guest_addr;
	n->seen_ms = cmd.time_ms;
	log_info("switches: host %s at %016" PRIx64 "/%u (%s)", info->host, dpid, port, mac);
	propose_topo(c, &cmd);
}

static void packet_in(struct sw *s, const uint8_t *msg, size_t len)
{
	struct swc *c = s->ctl;
	struct of13_packet_in pi;
	uint64_t in_port;
	struct lldp_info info;
	enum of13_err e = of13_packet_in_decode(msg, len, &pi);
	if (e) {
		log_debug("switch %u: packet_in: %s", s->index, of13_err_string(e));
		return;
	}
	if (!of13_match_get(&pi.match, OF13_OXM_IN_PORT, &in_port, NULL))
		return;
	if (!c->leader || s->role != ROLE_MASTER)
		return;
	if (lldp_decode(pi.data, pi.data_len, &info) < 0) {
		for (unsigned i = 0; i < c->n_svcs; i++)
			if (c->svcs[i].svc->packet_in)
				c->svcs[i].svc->packet_in(c->svcs[i].data, s->dpid,
				                          (uint32_t)in_port, pi.data, pi.data_len);
		return;
	}
	if (info.kind == LLDP_PROBE) {
		if (info.dpid != s->dpid && find_dpid(c, info.dpid))
			saw_link(c, info.dpid, info.port, s->dpid, (uint32_t)in_port);
	} else {
		saw_host(c, &info, s->dpid, (uint32_t)in_port);
	}
}

/* Links not seen for link-timeout are gone. */
static void expire_links(struct swc *c)
{
	const struct store_state *st = store_state(c->store);
	uint64_t now = uv_now(c->loop);
	for (size_t i = 0; i < store_count(st, SWITCH_LINKS); i++) {
		const struct switch_link *l = store_row(st, SWITCH_LINKS, i);
		struct seen *seen = link_seen(c, l->dpid, l->port, true);
		if (!seen)
			continue;
		if (!seen->ms)
			seen->ms = now;
		if (now - seen->ms < c->o.link_timeout_ms)
			continue;
		struct store_cmd cmd = {
		    .table = SWITCH_LINKS, .op = STORE_DELETE, .time_ms = wall_ms()};
		(*STORE_CMD_ROW(&cmd, struct switch_link)) = *l;
		log_warn("switches: link %016" PRIx64 "/%u -> %016" PRIx64 "/%u is gone (%u ms)",
		         l->dpid, l->port, l->peer_dpid, l->peer_port, c->o.link_timeout_ms);
		propose_topo(c, &cmd);
		return;
	}
}

/* The AEE's own announcement, out of its uplink. */
static void announce(struct swc *c)
{
	if (c->raw_fd < 0)
		return;
	struct lldp_info info = {.kind = LLDP_ANNOUNCE,
	                         .control_addr = c->self.control_addr,
	                         .guest_addr = c->self.guest_addr};
	memcpy(info.src_mac, c->mac, 6);
	snprintf(info.host, sizeof(info.host), "%s", c->self.name);
	uint8_t frame[LLDP_FRAME_MAX];
	size_t len = lldp_encode(frame, sizeof(frame), &info);
	struct sockaddr_ll sll = {
	    .sll_family = AF_PACKET, .sll_ifindex = c->ifindex, .sll_halen = 6};
	memcpy(sll.sll_addr, frame, 6);
	if (sendto(c->raw_fd, frame, len, 0, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		log_debug("switches: announcement on %s: %s", c->self.uplink_if, strerror(errno));
}

static void lldp_cb(uv_timer_t *t)
{
	struct swc *c = t->data;
	announce(c);
	if (!c->leader)
		return;
	lldp_probe_all(c);
	expire_links(c);
}

/* ---- ports and statistics ---- */

static void port_update(struct sw *s, const struct of13_port *p, bool deleted)
{
	struct port *at = find_port(s, p->port_no);
	if (deleted) {
		if (at) {
			*at = s->ports[--s->n_ports];
		}
		return;
	}
	if (!at) {
		if (s->n_ports == OF13_PORTS_MAX)
			return;
		at = &s->ports[s->n_ports++];
		*at = (struct port){0};
	}
	bool was_down = at->down_since_ms != 0;
	bool down = (p->state & OF13_PORT_STATE_LINK_DOWN) || (p->config & OF13_PORT_CONFIG_DOWN);
	at->desc = *p;
	if (down && !was_down)
		at->down_since_ms = uv_now(s->ctl->loop);
	else if (!down)
		at->down_since_ms = 0;
}

static void port_status(struct sw *s, const uint8_t *msg, size_t len)
{
	struct of13_port_status ps;
	if (of13_port_status_decode(msg, len, &ps) != OF13_OK)
		return;
	bool down = ps.port.state & OF13_PORT_STATE_LINK_DOWN;
	log_info("switch %u: port %u (%s) %s", s->index, ps.port.port_no, ps.port.name,
	         ps.reason == OF13_PORT_DELETE ? "deleted"
	         : down                        ? "down"
	                                       : "up");
	port_update(s, &ps.port, ps.reason == OF13_PORT_DELETE);
	/* A link whose port went down is gone now, not at the timeout. */
	struct swc *c = s->ctl;
	if (c->leader && (down || ps.reason == OF13_PORT_DELETE)) {
		struct seen *seen = link_seen(c, s->dpid, ps.port.port_no, false);
		if (seen)
			seen->ms = 1; /* expired at the next probe round */
	}
	kick(c);
}

static void port_desc_cb(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                         size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	(void)last;
	struct of13_port_desc_reply r;
	if (status < 0 || of13_port_desc_reply_decode(msg, len, &r) != OF13_OK)
		return;
	for (unsigned i = 0; i < r.n; i++)
		port_update(s, &r.ports[i], false);
	kick(s->ctl);
}

static void port_stats_cb(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                          size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	(void)last;
	struct of13_port_stats_reply r;
	if (status < 0 || of13_port_stats_reply_decode(msg, len, &r) != OF13_OK)
		return;
	uint64_t now = uv_now(s->ctl->loop);
	for (unsigned i = 0; i < r.n; i++) {
		const struct of13_port_stats *st = &r.stats[i];
		struct port *p = find_port(s, st->port_no);
		if (!p)
			continue;
		if (p->stats_ms && now > p->stats_ms) {
			double dt = (double)(now - p->stats_ms) / 1000.0;
			p->rx_bps = (double)(st->rx_bytes - p->rx_bytes) * 8 / dt;
			p->tx_bps = (double)(st->tx_bytes - p->tx_bytes) * 8 / dt;
		}
		p->rx_bytes = st->rx_bytes;
		p->tx_bytes = st->tx_bytes;
		p->rx_packets = st->rx_packets;
		p->tx_packets = st->tx_packets;
		p->stats_ms = now;
	}
}

static void count_group(void *userdata, const struct of13_group_stats *gs)
{
	struct sw *s = userdata;
	(void)gs;
	s->n_groups_dump++;
}

static void group_stats_cb(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                           size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	if (status < 0)
		return;
	uint16_t flags;
	of13_group_stats_reply_decode(msg, len, &flags, count_group, s);
	if (last) {
		s->n_groups = s->n_groups_dump;
		s->n_groups_dump = 0;
	}
}

/* The switch's flows, read back: for a reconciliation, the difference to
 * apply; for the periodic read, the counts, and a repair when someone
 * changed the switch behind the master's back. */
static void dump_cb(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                    size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	if (status < 0) {
		s->reconciling = s->dumping = false;
		sw_flows_free(&s->dump);
		return;
	}
	uint16_t flags;
	of13_flow_stats_reply_decode(msg, len, &flags, collect_flow, s);
	if (!last)
		return;
	flow_dump_done(s);
	if (s->reconciling) {
		if (s->role == ROLE_MASTER && s->ctl->leader && s->role_term == s->ctl->term)
			apply_diff(s);
		else
			s->reconciling = false;
		return;
	}
	if (s->dirty) {
		reconcile(s); /* a change came in during the read */
		return;
	}
	if (s->role == ROLE_MASTER && s->ctl->leader) {
		struct sw_flows want = {0};
		struct sw_diff d = {0};
		if (desired_for(s->ctl, s, &want, NULL) == 0 &&
		    sw_diff(&want, &s->installed, &d) == 0 && (d.n_add || d.n_del)) {
			log_warn("switch %u: %zu flow(s) missing or different, %zu unexpected; "
			         "reconciling",
			         s->index, d.n_add, d.n_del);
			reconcile(s);
		}
		sw_diff_free(&d);
		sw_flows_free(&want);
	}
}

static void stats_cb(uv_timer_t *t)
{
	struct swc *c = t->data;
	for (unsigned i = 0; i < c->o.n_switches; i++) {
		struct sw *s = &c->sw[i];
		if (!s->up)
			continue;
		struct obuf b = {0};
		of13_port_stats_request_encode(&b, of_conn_xid(s->conn), OF13_PORT_ANY);
		of_conn_send(s->conn, &b, port_stats_cb, s);
		of13_group_stats_request_encode(&b, of_conn_xid(s->conn), OF13_GROUP_ALL);
		of_conn_send(s->conn, &b, group_stats_cb, s);
		if (!s->dumping && !s->reconciling)
			request_flows(s);
	}
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
	s->n_ports = 0;
	s->installed_valid = false;
	/* Packet-ins (LLDP) and port status, whole frames: a connection to
	 * a switch's passive listener gets neither until it asks. */
	struct obuf b = {0};
	of13_set_config_encode(&b, of_conn_xid(conn),
	                       &(struct of13_switch_config){.miss_send_len = OF13_CML_NO_BUFFER});
	of_conn_send(conn, &b, NULL, NULL);
	of13_port_desc_request_encode(&b, of_conn_xid(conn));
	of_conn_send(conn, &b, port_desc_cb, s);
	claim_role(s);
}

static void conn_down(void *userdata, struct of_conn *conn, const char *why)
{
	struct sw *s = userdata;
	(void)conn;
	log_warn("switch %u (%s): disconnected: %s", s->index, of_conn_address(s->conn), why);
	s->up = false;
	s->role = ROLE_NONE;
	s->role_asked = false;
	s->reconciling = s->dumping = false;
	sw_flows_free(&s->dump);
	forget_groups(s);
}

static void conn_message(void *userdata, struct of_conn *conn, const struct of13_header *h,
                         const uint8_t *msg, size_t len)
{
	struct sw *s = userdata;
	(void)conn;
	switch (h->type) {
	case OF13_PACKET_IN:
		packet_in(s, msg, len);
		break;
	case OF13_PORT_STATUS:
		port_status(s, msg, len);
		break;
	case OF13_ERROR:
		note_error(s, msg, len);
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

static int open_raw(struct swc *c, char *error, size_t error_size)
{
	c->raw_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->raw_fd < 0) {
		snprintf(error, error_size, "LLDP socket: %s", strerror(errno));
		return -errno;
	}
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", c->self.uplink_if);
	if (ioctl(c->raw_fd, SIOCGIFINDEX, &ifr) < 0 || (c->ifindex = ifr.ifr_ifindex, 0) ||
	    ioctl(c->raw_fd, SIOCGIFHWADDR, &ifr) < 0) {
		int r = -errno;
		snprintf(error, error_size, "uplink %s: %s", c->self.uplink_if, strerror(errno));
		close(c->raw_fd);
		c->raw_fd = -1;
		return r;
	}
	memcpy(c->mac, ifr.ifr_hwaddr.sa_data, 6);
	return 0;
}

int sw_open(uv_loop_t *loop, const struct sw_options *o, const struct sw_self *self,
            struct store *store, struct swc **ret, char *error, size_t error_size)
{
	struct swc *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->o = *o;
	c->self = *self;
	c->store = store;
	c->raw_fd = -1;
	int r = open_raw(c, error, error_size);
	if (r < 0) {
		free(c);
		return r;
	}
	for (unsigned i = 0; i < o->n_switches; i++) {
		struct sw *s = &c->sw[i];
		s->ctl = c;
		s->index = i + 1;
		r = of_conn_open(loop, o->switches[i], &conn_ops, s, &s->conn);
		if (r < 0) {
			snprintf(error, error_size, "switch %s: %s", o->switches[i], strerror(-r));
			for (unsigned k = 0; k < i; k++)
				of_conn_close(c->sw[k].conn);
			close(c->raw_fd);
			free(c);
			return r;
		}
	}
	unsigned tables[] = {TRUST_ADMISSIONS, SWITCH_LOCATIONS, SWITCH_LINKS};
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		r = store_subscribe(store, tables[i], store_changed, c, &c->subs[i]);
		if (r < 0) {
			snprintf(error, error_size, "store: %s", strerror(-r));
			for (size_t k = 0; k < i; k++)
				store_unsubscribe(store, c->subs[k]);
			for (unsigned k = 0; k < o->n_switches; k++)
				of_conn_close(c->sw[k].conn);
			close(c->raw_fd);
			free(c);
			return r;
		}
	}
	uv_timer_t *timers[] = {&c->tick, &c->lldp, &c->stats, &c->kick};
	for (size_t i = 0; i < 4; i++) {
		uv_timer_init(loop, timers[i]);
		timers[i]->data = c;
	}
	uv_timer_start(&c->tick, tick_cb, TICK_MS, TICK_MS);
	uv_timer_start(&c->lldp, lldp_cb, 100, o->lldp_interval_ms);
	uv_timer_start(&c->stats, stats_cb, o->stats_interval_ms, o->stats_interval_ms);
	*ret = c;
	return 0;
}

static void timer_closed(uv_handle_t *h)
{
	struct swc *c = h->data;
	if (--c->open_handles == 0) {
		for (unsigned i = 0; i < c->o.n_switches; i++) {
			sw_flows_free(&c->sw[i].installed);
			sw_flows_free(&c->sw[i].dump);
			forget_groups(&c->sw[i]);
		}
		free(c);
	}
}

void sw_close(struct swc *c)
{
	c->closing = true;
	for (size_t i = 0; i < sizeof(c->subs) / sizeof(c->subs[0]); i++)
		store_unsubscribe(c->store, c->subs[i]);
	for (unsigned i = 0; i < c->o.n_switches; i++)
		of_conn_close(c->sw[i].conn);
	if (c->raw_fd >= 0)
		close(c->raw_fd);
	uv_timer_t *timers[] = {&c->tick, &c->lldp, &c->stats, &c->kick};
	c->open_handles = 4;
	for (size_t i = 0; i < 4; i++)
		uv_close((uv_handle_t *)timers[i], timer_closed);
}

/* ---- control requests ---- */

static char *dpid_str(uint64_t dpid, char buf[17])
{
	snprintf(buf, 17, "%016" PRIx64, dpid);
	return buf;
}

static json_t *ports_json(const struct sw *s)
{
	json_t *a = json_array();
	for (unsigned i = 0; i < s->n_ports; i++) {
		const struct port *p = &s->ports[i];
		if (p->desc.port_no > OF13_PORT_MAX)
			continue;
		double speed = (double)p->desc.curr_speed * 1000.0;
		double use =
		    speed > 0 ? (p->tx_bps > p->rx_bps ? p->tx_bps : p->rx_bps) / speed : 0;
		json_array_append_new(a,
		                      json_pack("{s:i, s:s, s:s, s:f, s:f, s:f, s:I, s:I}", "port",
		                                (int)p->desc.port_no, "name", p->desc.name, "state",
		                                p->down_since_ms ? "down" : "up", "rx_bps",
		                                p->rx_bps, "tx_bps", p->tx_bps, "utilisation", use,
		                                "rx_packets", (json_int_t)p->rx_packets,
		                                "tx_packets", (json_int_t)p->tx_packets));
	}
	return a;
}

/* This agent's view of each switch. */
static json_t *local_view(struct swc *c)
{
	json_t *a = json_array();
	char d[17];
	for (unsigned i = 0; i < c->o.n_switches; i++) {
		const struct sw *s = &c->sw[i];
		json_t *o = json_pack("{s:i, s:s, s:b, s:s, s:I}", "index", (int)s->index,
		                      "address", c->o.switches[i], "connected", s->up, "role",
		                      s->up ? role_name(s->role) : "none", "term",
		                      (json_int_t)s->role_term);
		if (s->up) {
			json_object_set_new(o, "dpid", json_string(dpid_str(s->dpid, d)));
			json_object_set_new(o, "flows", json_integer(s->n_flows));
			json_object_set_new(o, "groups", json_integer(s->n_groups));
			json_object_set_new(o, "ports", ports_json(s));
		}
		json_object_set_new(o, "flow_mods", json_integer(s->flow_mods));
		json_object_set_new(o, "refused_writes", json_integer(s->refused));
		json_object_set_new(o, "reconciled_ms", json_integer((json_int_t)s->reconciled_ms));
		json_array_append_new(a, o);
	}
	return json_pack("{s:s, s:o}", "host", c->self.name, "switches", a);
}

/* "switches": every member's view, merged by switch. */
struct gather {
	struct swc *c;
	struct ctl_deferred *d;
	json_t *views;
	int waiting;
};

static void gather_finish(struct gather *g)
{
	/* Switch index -> {its own facts from the first agent connected, and
	 * every agent's connection and role}. */
	json_t *out = json_array();
	for (unsigned i = 0; i < g->c->o.n_switches; i++) {
		json_t *sw = json_pack("{s:i, s:s, s:o}", "index", (int)i + 1, "address",
		                       g->c->o.switches[i], "agents", json_array());
		size_t k;
		json_t *view;
		json_array_foreach(g->views, k, view)
		{
			json_t *mine = json_array_get(json_object_get(view, "switches"), i);
			if (!mine)
				continue;
			json_array_append_new(
			    json_object_get(sw, "agents"),
			    json_pack("{s:O, s:O, s:O, s:O}", "host", json_object_get(view, "host"),
			              "connected", json_object_get(mine, "connected"), "role",
			              json_object_get(mine, "role"), "refused_writes",
			              json_object_get(mine, "refused_writes")));
			const char *role = json_string_value(json_object_get(mine, "role"));
			bool better =
			    !json_object_get(sw, "dpid") || (role && strcmp(role, "master") == 0);
			if (json_is_true(json_object_get(mine, "connected")) && better) {
				const char *keys[] = {"dpid", "flows", "groups", "ports"};
				for (size_t j = 0; j < 4; j++)
					json_object_set(sw, keys[j],
					                json_object_get(mine, keys[j]));
			}
		}
		json_array_append_new(out, sw);
	}
	ctl_deferred_reply(g->d, json_pack("{s:o}", "switches", out), NULL);
	json_decref(g->views);
	free(g);
}

static void gather_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct gather *g = userdata;
	(void)error;
	if (status == 0)
		json_array_append(g->views, result);
	if (--g->waiting == 0)
		gather_finish(g);
}

static int handle_switches(struct swc *c, struct ctl_client *client, const struct ctl_request *req)
{
	struct gather *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->c = c;
	g->d = ctl_defer(client, req);
	g->views = json_array();
	json_array_append_new(g->views, local_view(c));
	g->waiting = 1;
	const struct store_state *st = store_state(c->store);
	for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(st, STORE_MEMBERS, i);
		if (strcmp(m->name, c->self.name) == 0 || !m->peer[0])
			continue;
		if (ctl_call(c->loop, m->peer, "switch.local", json_object(), PEER_TIMEOUT_MS,
		             gather_cb, g) == 0)
			g->waiting++;
	}
	if (--g->waiting == 0)
		gather_finish(g);
	return CTL_DEFERRED;
}

static json_t *addr_json(uint32_t a)
{
	struct in_addr in = {htonl(a)};
	return json_string(inet_ntoa(in));
}

static json_t *topology(struct swc *c)
{
	const struct store_state *st = store_state(c->store);
	char d[17], e[17];
	json_t *switches = json_array(), *links = json_array(), *hosts = json_array();
	for (unsigned i = 0; i < c->o.n_switches; i++) {
		const struct sw *s = &c->sw[i];
		json_array_append_new(switches,
		                      json_pack("{s:i, s:s, s:s?}", "index", (int)s->index,
		                                "address", c->o.switches[i], "dpid",
		                                s->up ? dpid_str(s->dpid, d) : NULL));
	}
	for (size_t i = 0; i < store_count(st, SWITCH_LINKS); i++) {
		const struct switch_link *l = store_row(st, SWITCH_LINKS, i);
		json_t *o = json_pack("{s:s, s:i, s:s, s:i}", "dpid", dpid_str(l->dpid, d), "port",
		                      (int)l->port, "peer_dpid", dpid_str(l->peer_dpid, e),
		                      "peer_port", (int)l->peer_port);
		struct sw *s = find_dpid(c, l->dpid);
		struct port *p = s ? find_port(s, l->port) : NULL;
		if (p) {
			double speed = (double)p->desc.curr_speed * 1000.0;
			json_object_set_new(o, "tx_bps", json_real(p->tx_bps));
			json_object_set_new(o, "utilisation",
			                    json_real(speed > 0 ? p->tx_bps / speed : 0));
			json_object_set_new(o, "state",
			                    json_string(p->down_since_ms ? "down" : "up"));
		}
		json_array_append_new(links, o);
	}
	for (size_t i = 0; i < store_count(st, SWITCH_LOCATIONS); i++) {
		const struct switch_location *l = store_row(st, SWITCH_LOCATIONS, i);
		json_t *o =
		    json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:b}", "host", l->host, "mac", l->mac,
		              "dpid", dpid_str(l->dpid, d), "port", (int)l->port, "control",
		              addr_json(l->control_addr), "guest", addr_json(l->guest_addr),
		              "admitted", trust_admission_find(st, l->host) != NULL);
		struct sw *s = find_dpid(c, l->dpid);
		struct port *p = s ? find_port(s, l->port) : NULL;
		if (p)
			json_object_set_new(o, "port_state",
			                    json_string(p->down_since_ms ? "down" : "up"));
		json_array_append_new(hosts, o);
	}
	return json_pack("{s:o, s:o, s:o}", "switches", switches, "links", links, "hosts", hosts);
}

static char *flow_text(const struct of13_flow_mod *fm)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	sw_flow_format(f, fm);
	fclose(f);
	return text;
}

static void add_flow_json(json_t *a, const char *state, const struct of13_flow_mod *fm)
{
	char *text = flow_text(fm);
	json_array_append_new(a,
	                      json_pack("{s:s, s:s}", "state", state, "flow", text ? text : "?"));
	free(text);
}

static struct sw *switch_by_name(struct swc *c, const char *name)
{
	char *end;
	if ((name[0] == 's' || name[0] == 'S') && name[1]) {
		unsigned long n = strtoul(name + 1, &end, 10);
		if (!*end && n >= 1 && n <= c->o.n_switches)
			return &c->sw[n - 1];
	}
	uint64_t dpid = strtoull(name, &end, 16);
	if (*name && !*end) {
		for (unsigned i = 0; i < c->o.n_switches; i++)
			if (c->sw[i].up && c->sw[i].dpid == dpid)
				return &c->sw[i];
	}
	return NULL;
}

static int handle_flows(struct swc *c, const struct ctl_request *req, json_t **ret_result,
                        char **ret_error)
{
	const char *name = json_string_value(json_object_get(req->args, "switch"));
	if (!name) {
		*ret_error =
		    strdup("field \"switch\": expected a switch (s1, s2... or a datapath id)");
		return -EINVAL;
	}
	struct sw *s = switch_by_name(c, name);
	if (!s) {
		if (asprintf(ret_error, "no switch \"%s\" (this agent knows s1..s%u)", name,
		             c->o.n_switches) < 0)
			*ret_error = NULL;
		return -ENOENT;
	}
	if (!s->up) {
		if (asprintf(ret_error, "switch s%u (%s) is not connected", s->index,
		             c->o.switches[s->index - 1]) < 0)
			*ret_error = NULL;
		return -ENOTCONN;
	}
	struct sw_flows want = {0};
	if (desired_for(c, s, &want, NULL) < 0)
		return -ENOMEM;
	json_t *a = json_array();
	unsigned missing = 0, extra = 0;
	for (size_t i = 0; i < want.n; i++) {
		bool there = false;
		for (size_t k = 0; k < s->installed.n && !there; k++)
			there = sw_flow_equal(&want.v[i], &s->installed.v[k]);
		missing += !there;
		add_flow_json(a, there ? "installed" : "missing", &want.v[i]);
	}
	for (size_t k = 0; k < s->installed.n; k++) {
		bool wanted = false;
		for (size_t i = 0; i < want.n && !wanted; i++)
			wanted = sw_flow_equal(&want.v[i], &s->installed.v[k]);
		if (!wanted) {
			extra++;
			add_flow_json(a, "unexpected", &s->installed.v[k]);
		}
	}
	char d[17];
	*ret_result = json_pack("{s:i, s:s, s:i, s:i, s:i, s:i, s:o}", "index", (int)s->index,
	                        "dpid", dpid_str(s->dpid, d), "desired", (int)want.n, "installed",
	                        (int)s->installed.n, "missing", (int)missing, "unexpected",
	                        (int)extra, "flows", a);
	sw_flows_free(&want);
	return 0;
}

/* One member as `ettmctl hosts` shows it: where it sits, whether its port
 * is open, and what its last attestation concluded (docs/trust.md). */
static json_t *host_json(const struct store_state *st, const struct store_member *m)
{
	const struct switch_location *l = switch_location_find(st, m->name);
	const struct trust_admission *adm = trust_admission_find(st, m->name);
	const struct trust_attestation *t = trust_attestation_find(st, m->name);
	char d[17];
	const char *state = adm ? "admitted" : "not admitted";
	if (t && !(adm && t->state != TRUST_ATTEST_ADMITTED))
		state = trust_attest_state_name(t->state);
	const char *measurement = adm && adm->measurement[0] ? adm->measurement
	                          : t && t->measurement[0]   ? t->measurement
	                                                     : NULL;
	return json_pack(
	    "{s:s, s:b, s:s, s:s?, s:s?, s:I, s:o, s:o, s:s?, s:s?, s:i}", "host", m->name,
	    "admitted", adm != NULL, "state", state, "reason", t && t->reason[0] ? t->reason : NULL,
	    "measurement", measurement, "attested_ms", t ? (json_int_t)t->time_ms : (json_int_t)0,
	    "control_address", l ? addr_json(l->control_addr) : json_null(), "guest_address",
	    l ? addr_json(l->guest_addr) : json_null(), "mac", l ? l->mac : NULL, "dpid",
	    l ? dpid_str(l->dpid, d) : NULL, "port", l ? (int)l->port : 0);
}

static int handle_hosts(struct swc *c, struct ctl_client *client, const struct ctl_request *req,
                        json_t **ret_result, char **ret_error)
{
	const struct store_state *st = store_state(c->store);
	if (strcmp(req->cmd, "hosts.list") == 0) {
		json_t *a = json_array();
		for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++)
			json_array_append_new(a, host_json(st, store_row(st, STORE_MEMBERS, i)));
		*ret_result = json_pack("{s:o}", "hosts", a);
		return 0;
	}
	const char *host = json_string_value(json_object_get(req->args, "host"));
	if (!host || !host[0]) {
		*ret_error = strdup("field \"host\": expected a host name");
		return -EINVAL;
	}
	bool admit = strcmp(req->cmd, "hosts.admit") == 0;
	if (admit && !store_member_find_name(st, host)) {
		if (asprintf(ret_error, "no member named \"%s\" (see 'ettmctl hosts')", host) < 0)
			*ret_error = NULL;
		return -ENOENT;
	}
	struct store_cmd cmd = {.table = TRUST_ADMISSIONS,
	                        .op = admit ? STORE_PUT : STORE_DELETE,
	                        .time_ms = wall_ms()};
	snprintf(STORE_CMD_ROW(&cmd, struct trust_admission)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct trust_admission)->host), "%s", host);
	STORE_CMD_ROW(&cmd, struct trust_admission)->time_ms = cmd.time_ms;
	return store_propose_reply(c->store, client, req, &cmd, true, ret_error);
}

/* switch.bench: flow-mods per second from this agent (the master) to one
 * switch: @count flows sent back to back, timed to the barrier that
 * confirms them, then removed. They use their own cookie, outside ETTM's,
 * in a table ETTM does not use, so reconciliation leaves them alone. */
#define BENCH_COOKIE 0xe77e000000000000ull
#define BENCH_TABLE  7

struct bench {
	struct sw *s;
	struct ctl_deferred *d;
	unsigned count, refused_before;
	bool keep; /* leave the flows for inspection */
	uint64_t t0;
};

static void bench_done(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                       size_t len, bool last)
{
	struct bench *b = userdata;
	(void)msg;
	(void)len;
	(void)last;
	double sec = (double)(mono_ns() - b->t0) / 1e9;
	if (status < 0) {
		ctl_deferred_reply(b->d, NULL, "the switch went away during the benchmark");
	} else if (b->s->refused != b->refused_before) {
		ctl_deferred_reply(b->d, NULL, "the switch refused the flows: not master");
	} else {
		ctl_deferred_reply(b->d,
		                   json_pack("{s:i, s:f, s:f}", "count", (int)b->count, "seconds",
		                             sec, "per_second", (double)b->count / sec),
		                   NULL);
	}
	if (status == 0 && !b->keep) {
		struct of13_flow_mod fm;
		of13_flow_mod_init(&fm, OF13_FLOW_DELETE);
		fm.table_id = BENCH_TABLE;
		fm.cookie = BENCH_COOKIE;
		fm.cookie_mask = SW_COOKIE_MASK;
		struct obuf o = {0};
		of13_flow_mod_encode(&o, of_conn_xid(conn), &fm);
		of_conn_send(conn, &o, NULL, NULL);
	}
	free(b);
}

static int handle_bench(struct swc *c, struct ctl_client *client, const struct ctl_request *req,
                        char **ret_error)
{
	const char *name = json_string_value(json_object_get(req->args, "switch"));
	json_int_t count = json_integer_value(json_object_get(req->args, "count"));
	struct sw *s = name ? switch_by_name(c, name) : NULL;
	if (!s || count < 1 || count > 1000000) {
		*ret_error = strdup("fields \"switch\" (s1, s2...) and \"count\" (1-1000000) "
		                    "expected");
		return -EINVAL;
	}
	if (!s->up || s->role != ROLE_MASTER) {
		if (asprintf(ret_error, "this agent is not master of s%u; run it on the leader",
		             s->index) < 0)
			*ret_error = NULL;
		return -EPERM;
	}
	struct bench *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	*b = (struct bench){.s = s,
	                    .count = (unsigned)count,
	                    .refused_before = s->refused,
	                    .keep = json_is_true(json_object_get(req->args, "keep"))};
	b->t0 = mono_ns();
	for (json_int_t i = 0; i < count; i++) {
		struct of13_flow_mod fm;
		of13_flow_mod_init(&fm, OF13_FLOW_ADD);
		fm.table_id = BENCH_TABLE;
		fm.priority = 100;
		fm.cookie = BENCH_COOKIE;
		const uint8_t mac[6] = {
		    0x02,      0xbe, (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8),
		    (uint8_t)i};
		of13_match_add_eth(&fm.match, OF13_OXM_ETH_DST, mac, NULL);
		fm.instructions[0] = (struct of13_instruction){
		    .type = OF13_INSTRUCTION_APPLY_ACTIONS, .n_actions = 1};
		fm.instructions[0].actions[0] =
		    (struct of13_action){.type = OF13_ACTION_OUTPUT, .output = {.port = 1}};
		fm.n_instructions = 1;
		send_flow_mod(s, &fm);
	}
	struct obuf o = {0};
	of13_simple_encode(&o, OF13_BARRIER_REQUEST, of_conn_xid(s->conn), NULL, 0);
	b->d = ctl_defer(client, req);
	if (of_conn_send(s->conn, &o, bench_done, b) < 0) {
		ctl_deferred_reply(b->d, NULL, "the switch went away");
		free(b);
	}
	return CTL_DEFERRED;
}

int sw_handle_request(struct swc *c, struct ctl_client *client, const struct ctl_request *req,
                      json_t **ret_result, char **ret_error)
{
	if (strcmp(req->cmd, "switch.bench") == 0)
		return handle_bench(c, client, req, ret_error);
	const char *cmd = req->cmd;
	if (strcmp(cmd, "switch.local") == 0) {
		*ret_result = local_view(c);
		return 0;
	}
	if (strcmp(cmd, "switches") == 0)
		return handle_switches(c, client, req);
	if (strcmp(cmd, "topology") == 0) {
		*ret_result = topology(c);
		return 0;
	}
	if (strcmp(cmd, "flows") == 0)
		return handle_flows(c, req, ret_result, ret_error);
	if (strncmp(cmd, "hosts.", 6) == 0)
		return handle_hosts(c, client, req, ret_result, ret_error);
	return -ENOENT;
}
