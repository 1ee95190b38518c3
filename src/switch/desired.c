/* Desired flows (desired.h). */
#include "desired.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "api/server.h"
#include "lib/buf.h"
#include "trust/tables.h"
#include "switch/tables.h"
#include "lib/mac.h"

void sw_flows_free(struct sw_flows *f)
{
	free(f->v);
	*f = (struct sw_flows){0};
}

int sw_flows_add(struct sw_flows *f, const struct of13_flow_mod *fm)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 32;
		struct of13_flow_mod *v = realloc(f->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n++] = *fm;
	return 0;
}

struct of13_group_mod *sw_groups_add(struct sw_groups *g)
{
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 4;
		struct of13_group_mod *v = reallocarray(g->v, cap, sizeof(*v));
		if (!v)
			return NULL;
		g->v = v;
		g->cap = cap;
	}
	struct of13_group_mod *gm = &g->v[g->n++];
	memset(gm, 0, sizeof(*gm));
	return gm;
}

void sw_groups_free(struct sw_groups *g)
{
	for (size_t i = 0; i < g->n; i++)
		of13_group_mod_free(&g->v[i]);
	free(g->v);
	*g = (struct sw_groups){0};
}

/* ---- paths ---- */

/* Breadth-first search from @from over the links, until @to (0: all the
 * way). Returns the first hop port of the path to @to (0: none), and in
 * *@ret_reached how many switches it reached, @from included; 0 and 0
 * when memory ran out. */
static uint32_t walk(const struct store_state *st, uint64_t from, uint64_t to,
                     size_t *ret_reached)
{
	size_t n_links;
	const struct switch_link *links = store_rows(st, SWITCH_LINKS, &n_links);
	/* Every switch reached but @from is the far end of a link. */
	struct hop {
		uint64_t dpid;
		uint32_t first;
	} *seen = calloc(n_links + 1, sizeof(*seen));
	*ret_reached = 0;
	if (!seen)
		return 0;
	size_t head = 0, n = 0;
	uint32_t found = 0;
	seen[n++] = (struct hop){from, 0};
	while (head < n && !found) {
		struct hop at = seen[head++];
		for (size_t i = 0; i < n_links && !found; i++) {
			const struct switch_link *l = &links[i];
			if (l->dpid != at.dpid)
				continue;
			bool known = false;
			for (size_t k = 0; k < n && !known; k++)
				known = seen[k].dpid == l->peer_dpid;
			if (known)
				continue;
			uint32_t hop = at.first ? at.first : l->port;
			if (l->peer_dpid == to)
				found = hop;
			seen[n++] = (struct hop){l->peer_dpid, hop};
		}
	}
	free(seen);
	*ret_reached = n;
	return found;
}

uint32_t sw_next_hop(const struct store_state *st, uint64_t from, uint64_t to)
{
	size_t reached;
	return from == to ? 0 : walk(st, from, to, &reached);
}

/* ---- building flows ---- */

struct of13_flow_mod sw_flow_base(uint8_t table, uint16_t priority)
{
	struct of13_flow_mod fm;
	of13_flow_mod_init(&fm, OF13_FLOW_ADD);
	fm.cookie = SW_COOKIE;
	fm.table_id = table;
	fm.priority = priority;
	return fm;
}

static void goto_table(struct of13_flow_mod *fm, uint8_t table)
{
	fm->instructions[fm->n_instructions++] =
	    (struct of13_instruction){.type = OF13_INSTRUCTION_GOTO_TABLE, .table_id = table};
}

struct of13_instruction *sw_apply(struct of13_flow_mod *fm)
{
	struct of13_instruction *in = &fm->instructions[fm->n_instructions++];
	*in = (struct of13_instruction){.type = OF13_INSTRUCTION_APPLY_ACTIONS};
	return in;
}

void sw_output(struct of13_instruction *in, uint32_t port)
{
	in->actions[in->n_actions++] = (struct of13_action){
	    .type = OF13_ACTION_OUTPUT,
	    .output = {.port = port, .max_len = port == OF13_PORT_CONTROLLER ? 0xffff : 0}};
}

void sw_set_eth(struct of13_instruction *in, enum of13_oxm_field field, const uint8_t mac[6])
{
	struct of13_action *a = &in->actions[in->n_actions++];
	*a = (struct of13_action){.type = OF13_ACTION_SET_FIELD};
	a->set_field.field = field;
	a->set_field.len = 6;
	memcpy(a->set_field.value, mac, 6);
}

static int admit_port(struct sw_flows *out, uint32_t port, const uint8_t *mac)
{
	struct of13_flow_mod fm = sw_flow_base(0, SW_PRIO_ADMIT);
	of13_match_add(&fm.match, OF13_OXM_IN_PORT, port, NULL);
	if (mac)
		of13_match_add_eth(&fm.match, OF13_OXM_ETH_SRC, mac, NULL);
	goto_table(&fm, 1);
	sw_flow_canonical(&fm);
	return sw_flows_add(out, &fm);
}

static int arp_to(struct sw_flows *out, uint32_t addr, const uint8_t mac[6], uint32_t port)
{
	struct of13_flow_mod fm = sw_flow_base(1, SW_PRIO_ARP);
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, 0x0806, NULL);
	of13_match_add(&fm.match, OF13_OXM_ARP_OP, 1, NULL);
	of13_match_add(&fm.match, OF13_OXM_ARP_TPA, addr, NULL);
	struct of13_instruction *in = sw_apply(&fm);
	sw_set_eth(in, OF13_OXM_ETH_DST, mac);
	sw_output(in, port);
	sw_flow_canonical(&fm);
	return sw_flows_add(out, &fm);
}

static int host_flows(const struct store_state *st, const struct switch_location *l, uint64_t dpid,
                      struct sw_flows *out)
{
	uint8_t mac[6];
	if (!mac_parse(l->mac, mac))
		return 0;
	uint32_t port = l->dpid == dpid ? l->port : sw_next_hop(st, dpid, l->dpid);
	if (!port)
		return 0; /* no path (yet): nothing to forward along */
	int r = 0;
	if (l->dpid == dpid)
		r = admit_port(out, l->port, mac);

	struct of13_flow_mod fm = sw_flow_base(1, SW_PRIO_FORWARD);
	of13_match_add_eth(&fm.match, OF13_OXM_ETH_DST, mac, NULL);
	sw_output(sw_apply(&fm), port);
	sw_flow_canonical(&fm);
	if (r == 0)
		r = sw_flows_add(out, &fm);
	if (r == 0 && l->control_addr)
		r = arp_to(out, l->control_addr, mac, port);
	if (r == 0 && l->guest_addr && l->guest_addr != l->control_addr)
		r = arp_to(out, l->guest_addr, mac, port);
	return r;
}

bool sw_cookie_owned(uint64_t cookie)
{
	return (cookie & SW_COOKIE_MASK) == SW_COOKIE || cookie == SW_STARTUP_COOKIE;
}

static int startup_flow(struct sw_flows *out, uint16_t priority, uint16_t eth_type,
                        enum of13_oxm_field src_field, uint32_t src,
                        enum of13_oxm_field dst_field, uint32_t dst)
{
	static const uint64_t mask = SW_STARTUP_NET_MASK;
	struct of13_flow_mod fm = sw_flow_base(0, priority);
	fm.cookie = SW_STARTUP_COOKIE;
	fm.flags = OF13_FF_SEND_FLOW_REM;
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, eth_type, NULL);
	if (src_field)
		of13_match_add(&fm.match, src_field, src, &mask);
	if (dst_field)
		of13_match_add(&fm.match, dst_field, dst, &mask);
	sw_output(sw_apply(&fm), eth_type == 0x88cc ? OF13_PORT_CONTROLLER : OF13_PORT_NORMAL);
	sw_flow_canonical(&fm);
	return sw_flows_add(out, &fm);
}

/* ---- the control plane ---- */

/* How many switches the links join @from to, itself included. */
static size_t reachable_switches(const struct store_state *st, uint64_t from)
{
	size_t reached;
	walk(st, from, 0, &reached);
	return reached;
}

/* A drop in table 0 of IPv4 (@arp: ARP) whose @field is @addr. */
static int drop_addr(struct sw_flows *out, uint16_t priority, bool arp,
                     enum of13_oxm_field field, uint32_t addr)
{
	struct of13_flow_mod fm = sw_flow_base(0, priority);
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, arp ? 0x0806 : 0x0800, NULL);
	of13_match_add(&fm.match, field, addr, NULL);
	sw_flow_canonical(&fm);
	return sw_flows_add(out, &fm);
}

int sw_startup_flows(struct sw_flows *out)
{
	const uint32_t ctl = SW_STARTUP_CONTROL_NET, mgmt = SW_STARTUP_MGMT_NET;
	const enum of13_oxm_field src = OF13_OXM_IPV4_SRC, dst = OF13_OXM_IPV4_DST;
	int r = startup_flow(out, SW_PRIO_STARTUP_LLDP, 0x88cc, 0, 0, 0, 0);
	if (r == 0)
		r = startup_flow(out, SW_PRIO_STARTUP, 0x0806, 0, 0, OF13_OXM_ARP_TPA, ctl);
	if (r == 0)
		r = startup_flow(out, SW_PRIO_STARTUP, 0x0806, 0, 0, OF13_OXM_ARP_TPA, mgmt);
	if (r == 0)
		r = startup_flow(out, SW_PRIO_STARTUP, 0x0800, src, ctl, dst, ctl);
	if (r == 0)
		r = startup_flow(out, SW_PRIO_STARTUP, 0x0800, src, ctl, dst, mgmt);
	if (r == 0)
		r = startup_flow(out, SW_PRIO_STARTUP, 0x0800, src, mgmt, dst, ctl);
	return r;
}

/* Both drops, IPv4 and ARP, of @addr as a source (@source) or destination. */
static int drop_both(struct sw_flows *out, uint16_t priority, bool source, uint32_t addr)
{
	int r = drop_addr(out, priority, false, source ? OF13_OXM_IPV4_SRC : OF13_OXM_IPV4_DST,
	                  addr);
	if (r == 0)
		r = drop_addr(out, priority, true, source ? OF13_OXM_ARP_SPA : OF13_OXM_ARP_TPA,
		              addr);
	return r;
}

/* Whether a member's peer API is on @addr (host order). */
static bool member_at(const struct store_state *st, uint32_t addr)
{
	size_t n;
	const struct store_member *m = store_rows(st, STORE_MEMBERS, &n);
	for (size_t i = 0; i < n; i++) {
		struct sockaddr_in sa;
		if (ctl_parse_address(m[i].peer, &sa) == 0 && ntohl(sa.sin_addr.s_addr) == addr)
			return true;
	}
	return false;
}

/* From an agent's port and MAC, IPv4 from its control address to @to
 * (host order), and to TCP port @tcp_port only when not 0. */
static int agent_to(struct sw_flows *out, const struct switch_location *l, const uint8_t mac[6],
                    uint32_t to, uint16_t tcp_port)
{
	struct of13_flow_mod fm = sw_flow_base(0, SW_PRIO_CONTROL_AGENT);
	of13_match_add(&fm.match, OF13_OXM_IN_PORT, l->port, NULL);
	of13_match_add_eth(&fm.match, OF13_OXM_ETH_SRC, mac, NULL);
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, 0x0800, NULL);
	of13_match_add(&fm.match, OF13_OXM_IPV4_SRC, l->control_addr, NULL);
	of13_match_add(&fm.match, OF13_OXM_IPV4_DST, to, NULL);
	if (tcp_port) {
		of13_match_add(&fm.match, OF13_OXM_IP_PROTO, 6, NULL);
		of13_match_add(&fm.match, OF13_OXM_TCP_DST, tcp_port, NULL);
	}
	sw_output(sw_apply(&fm), OF13_PORT_NORMAL);
	sw_flow_canonical(&fm);
	return sw_flows_add(out, &fm);
}

/* What an agent that is not admitted may send from its port: ARP from its
 * own address; as a member of the store, IPv4 from it to the agents and
 * the switches (Raft, the peer API, its switch connections); before that,
 * only TCP to the members' peer APIs, where it joins (store.join, then
 * the join protocol). */
static int agent_port(struct sw_flows *out, const struct switch_location *l, const uint8_t mac[6],
                      const struct store_state *st, const struct sw_control *control)
{
	struct of13_flow_mod fm = sw_flow_base(0, SW_PRIO_CONTROL_AGENT);
	of13_match_add(&fm.match, OF13_OXM_IN_PORT, l->port, NULL);
	of13_match_add_eth(&fm.match, OF13_OXM_ETH_SRC, mac, NULL);
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, 0x0806, NULL);
	of13_match_add(&fm.match, OF13_OXM_ARP_SPA, l->control_addr, NULL);
	sw_output(sw_apply(&fm), OF13_PORT_NORMAL);
	sw_flow_canonical(&fm);
	int r = sw_flows_add(out, &fm);
	size_t n;
	if (!member_at(st, l->control_addr)) {
		const struct store_member *m = store_rows(st, STORE_MEMBERS, &n);
		for (size_t i = 0; r == 0 && i < n; i++) {
			struct sockaddr_in sa;
			if (ctl_parse_address(m[i].peer, &sa) == 0)
				r = agent_to(out, l, mac, ntohl(sa.sin_addr.s_addr),
				             ntohs(sa.sin_port));
		}
		return r;
	}
	const struct switch_location *all = store_rows(st, SWITCH_LOCATIONS, &n);
	for (size_t i = 0; r == 0 && i < n + control->n_switch_addrs; i++) {
		uint32_t to = i < n ? all[i].control_addr : control->switch_addrs[i - n];
		if (to && to != l->control_addr)
			r = agent_to(out, l, mac, to, 0);
	}
	return r;
}

/* Whether the ports of switch @dpid that may carry control traffic are
 * all known, so that closing the rest cuts no agent off: the links join
 * every switch, and every voter of the store has a place (the leader is a
 * voter: the master, which learns the places, keeps its own way to the
 * switches). */
static bool control_known(const struct store_state *st, const struct sw_control *control,
                          uint64_t dpid)
{
	if (reachable_switches(st, dpid) < control->n_switches)
		return false;
	size_t n;
	const struct store_member *m = store_rows(st, STORE_MEMBERS, &n);
	if (n == 0)
		return false; /* a new cluster that has not committed its creator yet */
	for (size_t i = 0; i < n; i++)
		if (m[i].role == STORE_ROLE_VOTER && !switch_location_find(st, m[i].name))
			return false;
	return true;
}

static int control_flows(const struct store_state *st, const struct sw_control *control,
                         uint64_t dpid, struct sw_flows *out)
{
	size_t n;
	const struct switch_location *l = store_rows(st, SWITCH_LOCATIONS, &n);
	int r = 0;
	for (size_t i = 0; r == 0 && i < n; i++) {
		uint8_t mac[6];
		if (!l[i].control_addr || !mac_parse(l[i].mac, mac))
			continue;
		bool here = l[i].dpid == dpid;
		if (here && !trust_admission_find(st, l[i].host))
			r = agent_port(out, &l[i], mac, st, control);
		/* Where the way to the agent is not known, its traffic may
		 * still come in by a link LLDP has not found. */
		if (r == 0 && (here || sw_next_hop(st, dpid, l[i].dpid)))
			r = drop_both(out, SW_PRIO_CONTROL_SPOOF, true, l[i].control_addr);
	}
	if (r < 0 || !control_known(st, control, dpid))
		return r;
	for (size_t i = 0; r == 0 && i < n; i++)
		if (l[i].control_addr)
			r = drop_both(out, SW_PRIO_CONTROL_CLOSED, false, l[i].control_addr);
	for (size_t i = 0; r == 0 && i < control->n_switch_addrs; i++)
		r = drop_both(out, SW_PRIO_CONTROL_CLOSED, false, control->switch_addrs[i]);
	return r;
}

int sw_desired(const struct store_state *st, const struct sw_port_ref *uplinks, size_t n_uplinks,
               const struct sw_control *control, uint64_t dpid, struct sw_flows *ret)
{
	struct sw_flows out = {0};
	int r = 0;
	for (size_t i = 0; r == 0 && i < store_count(st, SWITCH_LOCATIONS); i++) {
		const struct switch_location *l = store_row(st, SWITCH_LOCATIONS, i);
		if (trust_admission_find(st, l->host))
			r = host_flows(st, l, dpid, &out);
	}
	for (size_t i = 0; r == 0 && i < store_count(st, SWITCH_LINKS); i++) {
		const struct switch_link *l = store_row(st, SWITCH_LINKS, i);
		if (l->dpid == dpid)
			r = admit_port(&out, l->port, NULL);
	}
	for (size_t i = 0; r == 0 && i < n_uplinks; i++)
		if (uplinks[i].dpid == dpid && uplinks[i].port)
			r = admit_port(&out, uplinks[i].port, NULL);
	if (r == 0 && control) {
		/* The switch's own stack: its answers to the agents. */
		r = admit_port(&out, OF13_PORT_LOCAL, NULL);
		if (r == 0)
			r = control_flows(st, control, dpid, &out);
	}
	if (r == 0) {
		/* What table 1 does not know goes the switch's normal way:
		 * to the uplink's gateway, the switches' own addresses. */
		struct of13_flow_mod fm = sw_flow_base(1, SW_PRIO_MISS);
		sw_output(sw_apply(&fm), OF13_PORT_NORMAL);
		r = sw_flows_add(&out, &fm);
	}
	if (r < 0) {
		sw_flows_free(&out);
		return r;
	}
	*ret = out;
	return 0;
}

/* ---- comparing ---- */

static int oxm_cmp(const void *a, const void *b)
{
	const struct of13_oxm *x = a, *y = b;
	return (int)x->field - (int)y->field;
}

void sw_flow_canonical(struct of13_flow_mod *fm)
{
	qsort(fm->match.oxm, fm->match.n, sizeof(fm->match.oxm[0]), oxm_cmp);
}

static bool same_bytes(struct obuf *a, struct obuf *b)
{
	bool same = !a->failed && !b->failed && a->len == b->len &&
	            (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
	obuf_free(a);
	obuf_free(b);
	return same;
}

bool sw_flow_same_key(const struct of13_flow_mod *a, const struct of13_flow_mod *b)
{
	if (a->table_id != b->table_id || a->priority != b->priority)
		return false;
	struct obuf x = {0}, y = {0};
	of13_match_encode(&x, &a->match);
	of13_match_encode(&y, &b->match);
	return same_bytes(&x, &y);
}

bool sw_flow_equal(const struct of13_flow_mod *a, const struct of13_flow_mod *b)
{
	if (!sw_flow_same_key(a, b))
		return false;
	struct obuf x = {0}, y = {0};
	of13_instructions_encode(&x, a->instructions, a->n_instructions);
	of13_instructions_encode(&y, b->instructions, b->n_instructions);
	return same_bytes(&x, &y);
}

static int push(const struct of13_flow_mod ***v, size_t *n, const struct of13_flow_mod *fm)
{
	const struct of13_flow_mod **nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (!nv)
		return -ENOMEM;
	nv[(*n)++] = fm;
	*v = nv;
	return 0;
}

int sw_diff(const struct sw_flows *desired, const struct sw_flows *installed, struct sw_diff *ret)
{
	struct sw_diff d = {0};
	int r = 0;
	for (size_t i = 0; r == 0 && i < desired->n; i++) {
		bool there = false;
		for (size_t k = 0; k < installed->n && !there; k++)
			there = sw_flow_equal(&desired->v[i], &installed->v[k]);
		if (!there)
			r = push(&d.add, &d.n_add, &desired->v[i]);
	}
	for (size_t k = 0; r == 0 && k < installed->n; k++) {
		bool wanted = false;
		for (size_t i = 0; i < desired->n && !wanted; i++)
			wanted = sw_flow_same_key(&desired->v[i], &installed->v[k]);
		if (!wanted)
			r = push(&d.del, &d.n_del, &installed->v[k]);
	}
	if (r < 0) {
		sw_diff_free(&d);
		return r;
	}
	*ret = d;
	return 0;
}

void sw_diff_free(struct sw_diff *d)
{
	free(d->add);
	free(d->del);
	*d = (struct sw_diff){0};
}

void sw_flow_format(FILE *out, const struct of13_flow_mod *fm)
{
	fprintf(out, "table=%u priority=%u ", fm->table_id, fm->priority);
	of13_match_format(out, &fm->match);
	fputc(' ', out);
	of13_instructions_format(out, fm->instructions, fm->n_instructions);
}
