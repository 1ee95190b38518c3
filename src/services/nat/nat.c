/* The NAT service on the agent's loop (nat.h, docs/nat.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/server.h"
#include "datapath/conntrack.h"
#include "datapath/fragment.h"
#include "guest/guest.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "nat.h"
#include "pmp.h"
#include "store/store.h"
#include "services/nat/tables.h"
#include "switch/tables.h"
#include "trust/tables.h"
#include "switch/desired.h"

#define TICK_MS            1000
#define GATEWAY_REFRESH_MS 30000
#define SHORT_NUM          3 /* claim another block above 3/4 in use */
#define SHORT_DEN          4
#define PMP_MAX_LIFETIME   86400  /* seconds a requested mapping may last */
#define PMP_ERROR_LIFETIME 30     /* seconds a PCP client may cache an error */
#define AUTO_LIFETIME_MS   120000 /* an automatic mapping, renewed while listening */
#define AUTO_RENEW_MS      60000
#define AUTO_MAX           64

struct orphan {
	uint64_t owner;
	uint64_t since_ms; /* when the leader first saw its blocks unowned */
};

struct nat {
	uv_loop_t *loop;
	struct nat_options o;
	uint64_t self;
	char name[STORE_NAME_MAX];
	struct store *store;
	struct swc *sw;
	struct datapath *dp;
	uv_timer_t tick, soon;
	unsigned uplink;                    /* the public address this host's flows leave by */
	bool claiming;                      /* a block claim is under way */
	bool exhausted;                     /* no block was free at the last try (said once) */
	bool synced;                        /* the store has caught up since the start */
	bool syncing;                       /* a barrier is under way */
	long in_use;                        /* translated flows in this host's blocks; -1 unknown */
	struct store_subscription *subs[5]; /* the tables it follows */
	/* What the master learnt of the gateways. */
	uint8_t gw_mac[NAT_PUBLIC_MAX][6];
	bool gw_known[NAT_PUBLIC_MAX];
	uint64_t gw_asked_ms[NAT_PUBLIC_MAX];
	struct orphan orphans[64];
	unsigned n_orphans;
	bool reclaiming;
	/* NAT-PMP and PCP on the control address, for the guest. */
	uv_udp_t pmp;
	bool pmp_open;
	uint64_t started_ms;
	bool expiring; /* a lapsed mapping's deletion is under way */
	/* Automatic mappings: the guest's listeners this agent mapped. */
	struct guest *guest;
	struct {
		uint8_t proto;
		uint16_t port;
	} autos[AUTO_MAX];
	unsigned n_autos;
	bool auto_busy; /* a change is under way */
	bool guest_failed;
	/* The guest's ephemeral ports, kept inside this host's blocks. */
	char *guest_netns;
	struct guest_port_block ports[GUEST_PORT_BLOCKS_MAX];
	size_t n_ports;
	bool ports_failed;
	int open_handles;
};

static const struct store_state *state(struct nat *n)
{
	return store_state(n->store);
}

/* ---- the datapath ---- */

/* Every ephemeral port the guest picks lies in this host's blocks, so SNAT
 * keeps it and the mapping is endpoint-independent (guest.h). Set again
 * whenever the blocks change; a failure is retried every tick, logged
 * once. */
static void update_guest_ports(struct nat *n, const struct nat_view *d)
{
	if (!n->guest_netns || d->n_own == 0)
		return;
	struct guest_port_block b[GUEST_PORT_BLOCKS_MAX];
	size_t k = d->n_own < GUEST_PORT_BLOCKS_MAX ? d->n_own : GUEST_PORT_BLOCKS_MAX;
	unsigned lo = 65535, hi = 0;
	for (size_t i = 0; i < k; i++) {
		b[i] = (struct guest_port_block){.start = d->own[i].start, .size = d->own[i].size};
		lo = b[i].start < lo ? b[i].start : lo;
		hi = b[i].start + b[i].size - 1u > hi ? b[i].start + b[i].size - 1u : hi;
	}
	bool same = k == n->n_ports && memcmp(b, n->ports, k * sizeof(*b)) == 0;
	if (same && !n->ports_failed)
		return;
	const char *failed = NULL;
	int r = guest_set_local_ports(n->guest_netns, b, k, &failed);
	if (r < 0 && (!same || !n->ports_failed))
		log_error("nat: the guest's ephemeral ports (%s): %s; its mappings depend on the "
		          "destination",
		          failed ? failed : n->guest_netns, strerror(-r));
	else if (r == 0)
		log_info("nat: the guest's ephemeral ports are %u-%u (%zu block%s)", lo, hi, k,
		         k == 1 ? "" : "s");
	memcpy(n->ports, b, k * sizeof(*b));
	n->n_ports = k;
	n->ports_failed = r < 0;
}

/* NAT's datapath source (dp_build_fn): until the store has caught up, no
 * blocks, and the table from before a restart held as it is. */
static int datapath_build(void *userdata, const struct dp_config *cfg, struct dp_fragment *out)
{
	struct nat *n = userdata;
	struct nat_view d;
	nat_datapath(n->synced ? state(n) : NULL, &n->o, n->self, sw_own_mac(n->sw), n->uplink, &d);
	out->hold = !n->synced;
	return nat_ruleset_build(cfg, &d, out);
}

static void update_datapath(struct nat *n)
{
	if (!n->synced)
		return;
	struct nat_view d;
	nat_datapath(state(n), &n->o, n->self, sw_own_mac(n->sw), n->uplink, &d);
	if (dp_changed(n->dp) < 0)
		log_error("nat: datapath: %s", n->dp->error ? n->dp->error : "failed");
	update_guest_ports(n, &d);
}

/* ---- blocks: claim, use, reclaim ---- */

static void claim_done(void *userdata, int status, const struct store_result *res,
                       const char *error)
{
	struct nat *n = userdata;
	n->claiming = false;
	if (status < 0)
		log_debug("nat: block claim not committed: %s", error);
	else if (!res->applied)
		log_info("nat: block claim refused: %s", res->reason); /* raced; next tick */
}

static void claim_block(struct nat *n)
{
	uint16_t start;
	if (n->claiming)
		return;
	if (nat_block_pick(state(n), &n->o, &start) < 0) {
		if (!n->exhausted)
			log_warn("nat: no free block of %u ports left", n->o.block_size);
		n->exhausted = true;
		return;
	}
	n->exhausted = false;
	struct store_cmd cmd = {.table = NAT_BLOCKS, .op = STORE_PUT, .time_ms = wall_ms()};
	(*STORE_CMD_ROW(&cmd, struct nat_block)) =
	    (struct nat_block){.start = start,
	                       .size = (uint16_t)n->o.block_size,
	                       .owner = n->self,
	                       .claimed_ms = cmd.time_ms};
	log_info("nat: claiming ports %u-%u", start, start + n->o.block_size - 1);
	if (store_propose(n->store, &cmd, claim_done, n) == 0)
		n->claiming = true;
}

static bool own_port(struct nat *n, unsigned port)
{
	return port < 65536 && nat_port_owner(state(n), (uint16_t)port) == n->self;
}

/* A translated flow using this host's public ports: the reply direction
 * of a conntrack entry is addressed to a public address and one of our
 * ports (ICMP: echo id). */
static bool in_use(void *userdata, const struct dp_ct_entry *e)
{
	struct nat *n = userdata;
	const struct dp_ct_tuple *r = &e->reply;
	if (!r->has_port && !r->has_id)
		return false;
	bool public = false;
	for (unsigned i = 0; i < n->o.n_publics && !public; i++)
	public = n->o.publics[i].s_addr == r->dst.s_addr;
	return public && own_port(n, r->has_port ? r->dport : r->id);
}

/* Translated flows using this host's public ports; -1 when the kernel
 * does not show its table. */
static long count_in_use(struct nat *n)
{
	unsigned long k;
	return dp_conntrack_count(in_use, n, &k) == 0 ? (long)k : -1;
}

static bool admitted(struct nat *n)
{
	return trust_admission_find(state(n), n->name) != NULL;
}

static void check_blocks(struct nat *n)
{
	if (!n->synced || !admitted(n) || !store_member_find(state(n), n->self))
		return;
	size_t held = nat_blocks_of(state(n), n->self);
	n->in_use = count_in_use(n);
	if (held == 0 || (n->in_use >= 0 && (unsigned long)n->in_use * SHORT_DEN >=
	                                        (unsigned long)held * n->o.block_size * SHORT_NUM))
		claim_block(n);
}

static void reclaim_done(void *userdata, int status, const struct store_result *res,
                         const char *error)
{
	struct nat *n = userdata;
	(void)res;
	(void)error;
	(void)status;
	n->reclaiming = false;
}

/* A member that is gone, or no longer admitted. */
static bool departed(struct nat *n, uint64_t owner)
{
	const struct store_member *m = store_member_find(state(n), owner);
	return !m || !trust_admission_find(state(n), m->name);
}

static struct orphan *orphan(struct nat *n, uint64_t owner)
{
	for (unsigned i = 0; i < n->n_orphans; i++)
		if (n->orphans[i].owner == owner)
			return &n->orphans[i];
	if (n->n_orphans == sizeof(n->orphans) / sizeof(n->orphans[0]))
		return NULL;
	n->orphans[n->n_orphans] = (struct orphan){owner, uv_now(n->loop)};
	return &n->orphans[n->n_orphans++];
}

/* The leader gives a departed host's blocks and mappings back once it has
 * been gone for the grace period (its connections may come back with it). */
static void reclaim(struct nat *n)
{
	const struct store_state *st = state(n);
	if (!store_is_leader(n->store)) {
		n->n_orphans = 0;
		return;
	}
	for (unsigned i = 0; i < n->n_orphans;)
		if (!departed(n, n->orphans[i].owner))
			n->orphans[i] = n->orphans[--n->n_orphans];
		else
			i++;
	if (n->reclaiming)
		return;
	struct store_cmd cmd = {.op = STORE_DELETE, .time_ms = wall_ms()};
	for (size_t i = 0; i < store_count(st, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
		struct orphan *o = departed(n, b->owner) ? orphan(n, b->owner) : NULL;
		if (o && uv_now(n->loop) - o->since_ms >= n->o.reclaim_after_ms) {
			cmd.table = NAT_BLOCKS;
			(*STORE_CMD_ROW(&cmd, struct nat_block)) = *b;
			break;
		}
	}
	for (size_t i = 0; !cmd.table && i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		struct orphan *o = departed(n, m->owner) ? orphan(n, m->owner) : NULL;
		if (o && uv_now(n->loop) - o->since_ms >= n->o.reclaim_after_ms) {
			cmd.table = NAT_MAPPINGS;
			(*STORE_CMD_ROW(&cmd, struct nat_mapping)) = *m;
		}
	}
	if (!cmd.table)
		return;
	log_info("nat: member %" PRIu64 " departed %u ms ago: giving its %s back",
	         cmd.table == NAT_BLOCKS ? STORE_CMD_ROW(&cmd, struct nat_block)->owner
	                                 : STORE_CMD_ROW(&cmd, struct nat_mapping)->owner,
	         n->o.reclaim_after_ms, cmd.table == NAT_BLOCKS ? "block" : "mapping");
	if (store_propose(n->store, &cmd, reclaim_done, n) == 0)
		n->reclaiming = true;
}

/* ---- the master: ARP for the public addresses, the gateways ---- */

static void ask_gateway(struct nat *n, unsigned i, const struct sw_port_ref *up)
{
	struct arp_msg m = {.op = 1, .spa = n->o.publics[i], .tpa = nat_gateway(&n->o, i)};
	nat_public_mac(n->o.publics[i], m.eth_src);
	memcpy(m.sha, m.eth_src, 6);
	memset(m.eth_dst, 0xff, 6);
	uint8_t frame[ARP_FRAME_LEN];
	size_t len = arp_build(&m, frame);
	if (len && sw_packet_out(n->sw, up->dpid, up->port, frame, len) == 0)
		n->gw_asked_ms[i] = uv_now(n->loop);
}

static void resolve_gateways(struct nat *n)
{
	if (!sw_is_master(n->sw))
		return;
	struct sw_port_ref ups[SW_MAX_UPLINKS];
	size_t k = sw_uplinks(n->sw, ups, NULL);
	for (unsigned i = 0; i < k && i < n->o.n_publics; i++) {
		uint64_t age = uv_now(n->loop) - n->gw_asked_ms[i];
		if (ups[i].port && (!n->gw_known[i] || age >= GATEWAY_REFRESH_MS))
			ask_gateway(n, i, &ups[i]);
	}
}

static void learn_gateway(struct nat *n, unsigned i, const uint8_t mac[6])
{
	if (n->gw_known[i] && memcmp(n->gw_mac[i], mac, 6) == 0)
		return;
	memcpy(n->gw_mac[i], mac, 6);
	n->gw_known[i] = true;
	log_info("nat: gateway of uplink %u is %02x:%02x:%02x:%02x:%02x:%02x", i + 1, mac[0],
	         mac[1], mac[2], mac[3], mac[4], mac[5]);
	sw_kick(n->sw);
}

static void packet_in(void *userdata, uint64_t dpid, uint32_t in_port, const uint8_t *frame,
                      size_t len)
{
	struct nat *n = userdata;
	struct arp_msg a;
	if (arp_parse(frame, len, &a) < 0)
		return;
	struct sw_port_ref ups[SW_MAX_UPLINKS];
	size_t k = sw_uplinks(n->sw, ups, NULL);
	for (unsigned i = 0; i < k && i < n->o.n_publics; i++) {
		if (ups[i].dpid != dpid || ups[i].port != in_port ||
		    a.tpa.s_addr != n->o.publics[i].s_addr)
			continue;
		if (a.spa.s_addr == nat_gateway(&n->o, i).s_addr)
			learn_gateway(n, i, a.sha);
		if (a.op != 1)
			return;
		struct arp_msg r = {.op = 2, .spa = a.tpa, .tpa = a.spa};
		nat_public_mac(n->o.publics[i], r.sha);
		memcpy(r.eth_src, r.sha, 6);
		memcpy(r.eth_dst, a.sha, 6);
		memcpy(r.tha, a.sha, 6);
		uint8_t out[ARP_FRAME_LEN];
		size_t olen = arp_build(&r, out);
		if (olen)
			sw_packet_out(n->sw, dpid, in_port, out, olen);
		return;
	}
}

/* Every agent learns the gateways' MACs from the master's flows, so a new
 * master has them before it resolves them itself, and outbound traffic
 * never waits for an ARP round trip. */
static void installed(void *userdata, uint64_t dpid, const struct sw_flows *flows)
{
	struct nat *n = userdata;
	for (size_t f = 0; f < flows->n; f++) {
		const struct of13_flow_mod *fm = &flows->v[f];
		uint64_t src;
		if (fm->table_id != 1 || fm->priority != NAT_PRIO_OUT || fm->n_instructions != 1 ||
		    !of13_match_get(&fm->match, OF13_OXM_IPV4_SRC, &src, NULL))
			continue;
		for (unsigned i = 0; i < n->o.n_publics; i++) {
			if (ntohl(n->o.publics[i].s_addr) != src ||
			    (n->gw_known[i] && sw_is_master(n->sw)))
				continue;
			const struct of13_instruction *in = &fm->instructions[0];
			for (unsigned a = 0; a < in->n_actions; a++)
				if (in->actions[a].type == OF13_ACTION_SET_FIELD &&
				    in->actions[a].set_field.field == OF13_OXM_ETH_DST) {
					memcpy(n->gw_mac[i], in->actions[a].set_field.value, 6);
					n->gw_known[i] = true;
				}
		}
	}
	(void)dpid;
}

static int flows(void *userdata, const struct store_state *st, const struct sw_port_ref *uplinks,
                 size_t n_uplinks, uint64_t dpid, struct sw_flows *out, struct sw_groups *groups)
{
	struct nat *n = userdata;
	return nat_flows(st, &n->o, uplinks, n_uplinks, (const uint8_t(*)[6])n->gw_mac, n->gw_known,
	                 dpid, out, groups);
}

const struct sw_service nat_sw = {
    .flows = flows,
    .installed = installed,
    .packet_in = packet_in,
};

/* ---- NAT-PMP and PCP: mappings on the guest's request ---- */

struct pmp_call {
	struct nat *n;
	struct sockaddr_in to;
	struct pmp_request req;
	struct pmp_response res;
	unsigned pending; /* commands not answered yet */
	bool failed;
	bool answered; /* the reply went already (an error before the commits) */
};

static void pmp_send(struct nat *n, const struct sockaddr_in *to, struct pmp_response *res)
{
	uint8_t out[PMP_MAX_MESSAGE];
	res->epoch = (uint32_t)((uv_now(n->loop) - n->started_ms) / 1000);
	if (res->result != PMP_SUCCESS && res->version != PMP_VERSION_NATPMP)
		res->lifetime = PMP_ERROR_LIFETIME;
	size_t len = pmp_encode(res, out, sizeof(out));
	if (len == 0)
		return;
	uv_buf_t buf = uv_buf_init((char *)out, (unsigned)len);
	if (uv_udp_try_send(&n->pmp, &buf, 1, (const struct sockaddr *)to) < 0)
		log_debug("nat: port mapping reply not sent");
}

static void pmp_committed(void *userdata, int status, const struct store_result *res,
                          const char *error)
{
	struct pmp_call *call = userdata;
	if (status < 0 || !res->applied) {
		log_info("nat: port mapping not committed: %s", status < 0 ? error : res->reason);
		call->failed = true;
	}
	if (--call->pending)
		return;
	if (call->failed) {
		call->res.result = status < 0 ? PMP_NETWORK_FAILURE : PMP_NO_RESOURCES;
		call->res.external_port = 0;
		call->res.lifetime = 0;
	}
	if (!call->answered)
		pmp_send(call->n, &call->to, &call->res);
	free(call);
}

static int pmp_propose(struct pmp_call *call, enum store_op op, const struct nat_mapping *m)
{
	struct store_cmd cmd = {.table = NAT_MAPPINGS, .op = op, .time_ms = wall_ms()};
	(*STORE_CMD_ROW(&cmd, struct nat_mapping)) = *m;
	int r = store_propose(call->n->store, &cmd, pmp_committed, call);
	if (r == 0)
		call->pending++;
	return r;
}

/* Lifetime 0: the guest's mappings of the port (all of them for port 0, or
 * protocol 0) go. */
static enum pmp_result pmp_delete(struct nat *n, struct pmp_call *call)
{
	const struct store_state *st = state(n);
	for (size_t i = 0; i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		if (m->owner != n->self || m->expires_ms == 0 ||
		    (call->req.protocol && m->proto != call->req.protocol) ||
		    (call->req.internal_port && m->guest_port != call->req.internal_port))
			continue;
		if (pmp_propose(call, STORE_DELETE, m) < 0)
			return PMP_NETWORK_FAILURE;
	}
	call->res.external_port = 0;
	call->res.lifetime = 0;
	return PMP_SUCCESS;
}

static enum pmp_result pmp_map(struct nat *n, struct pmp_call *call)
{
	const struct pmp_request *q = &call->req;
	uint16_t port;
	int r = nat_mapping_port(state(n), n->self, q->protocol, q->internal_port, q->external_port,
	                         &port);
	if (r < 0)
		return PMP_NO_RESOURCES;
	if (r == 1 && q->prefer_failure)
		return PMP_CANNOT_PROVIDE_EXTERNAL;
	const struct nat_mapping *old =
	    nat_mapping_of(state(n), n->self, q->protocol, q->internal_port);
	if (old && old->expires_ms == 0)
		return PMP_NOT_AUTHORIZED; /* the admin's mapping: not the guest's to change */
	uint32_t lifetime = q->lifetime < PMP_MAX_LIFETIME ? q->lifetime : PMP_MAX_LIFETIME;
	struct nat_mapping m = {
	    .proto = q->protocol,
	    .public_port = port,
	    .owner = n->self,
	    .guest_addr = ntohl(n->dp->cfg.guest_addr.s_addr),
	    .guest_port = q->internal_port,
	    .expires_ms = wall_ms() + (uint64_t)lifetime * 1000,
	};
	if (pmp_propose(call, STORE_PUT, &m) < 0)
		return PMP_NETWORK_FAILURE;
	call->res.external_port = port;
	call->res.lifetime = lifetime;
	return PMP_SUCCESS;
}

static void pmp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                     unsigned flags)
{
	struct nat *n = h->data;
	(void)flags;
	if (nread <= 0 || !addr || addr->sa_family != AF_INET)
		return;
	struct pmp_call *call = calloc(1, sizeof(*call));
	if (!call)
		return;
	call->n = n;
	memcpy(&call->to, addr, sizeof(call->to));
	enum pmp_result r = pmp_decode((const uint8_t *)buf->base, (size_t)nread, &call->req);
	if (r == PMP_DROP) {
		free(call);
		return;
	}
	const struct pmp_request *q = &call->req;
	/* Only this host's guest may ask, for itself. */
	if (r == PMP_SUCCESS && call->to.sin_addr.s_addr != n->dp->cfg.guest_addr.s_addr)
		r = PMP_NOT_AUTHORIZED;
	if (r == PMP_SUCCESS && q->version == PMP_VERSION_PCP &&
	    q->client.s_addr != call->to.sin_addr.s_addr)
		r = PMP_ADDRESS_MISMATCH;
	pmp_response_for(q, r, &call->res);
	call->res.external = n->o.publics[n->uplink];
	bool mapping = q->version == PMP_VERSION_NATPMP ? q->opcode != PMP_OP_ADDRESS
	                                                : q->opcode == PCP_OP_MAP;
	if (r == PMP_SUCCESS && mapping && (!n->synced || !nat_blocks_of(state(n), n->self)))
		r = PMP_NETWORK_FAILURE; /* not ready: no block yet */
	if (r == PMP_SUCCESS && mapping)
		r = q->lifetime == 0 ? pmp_delete(n, call) : pmp_map(n, call);
	call->res.result = r;
	if (r != PMP_SUCCESS) {
		call->res.external_port = 0;
		call->res.lifetime = 0;
	}
	log_debug("nat: %s request op %u port %u from %s: %s",
	          q->version == PMP_VERSION_NATPMP ? "NAT-PMP" : "PCP", q->opcode, q->internal_port,
	          inet_ntoa(call->to.sin_addr), pmp_result_name(r));
	if (call->pending == 0 || r != PMP_SUCCESS) {
		pmp_send(n, &call->to, &call->res);
		call->answered = true;
		if (call->pending == 0)
			free(call);
	}
}

static void pmp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char space[PMP_MAX_MESSAGE + 4];
	(void)h;
	(void)suggested;
	*buf = uv_buf_init(space, sizeof(space));
}

static int pmp_open(struct nat *n)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(PMP_PORT),
	                         .sin_addr = n->dp->cfg.control_addr};
	int r = uv_udp_init(n->loop, &n->pmp);
	if (r < 0)
		return r;
	n->pmp.data = n;
	n->pmp_open = true;
	r = uv_udp_bind(&n->pmp, (const struct sockaddr *)&sa, UV_UDP_REUSEADDR);
	if (r == 0)
		r = uv_udp_recv_start(&n->pmp, pmp_alloc, pmp_recv);
	return r;
}

/* Requested mappings whose lifetime is over go, one at a time. */
static void expire_done(void *userdata, int status, const struct store_result *res,
                        const char *error)
{
	struct nat *n = userdata;
	(void)status;
	(void)res;
	(void)error;
	n->expiring = false;
}

static void expire_mappings(struct nat *n)
{
	const struct store_state *st = state(n);
	uint64_t now = wall_ms();
	for (size_t i = 0; !n->expiring && i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		if (m->owner != n->self || m->expires_ms == 0 || m->expires_ms > now)
			continue;
		struct store_cmd cmd = {.table = NAT_MAPPINGS, .op = STORE_DELETE, .time_ms = now};
		(*STORE_CMD_ROW(&cmd, struct nat_mapping)) = *m;
		log_info("nat: mapping of public port %u/%s lapsed", m->public_port,
		         m->proto == 6 ? "tcp" : "udp");
		if (store_propose(n->store, &cmd, expire_done, n) == 0)
			n->expiring = true;
	}
}

/* ---- automatic mappings: a guest server that policy lets be reached ---- */

static void auto_done(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct nat *n = userdata;
	n->auto_busy = false;
	if (status < 0 || !res->applied)
		log_info("nat: automatic mapping not committed: %s",
		         status < 0 ? error : res->reason);
}

static bool auto_known(struct nat *n, uint8_t proto, uint16_t port, bool remove)
{
	for (unsigned i = 0; i < n->n_autos; i++)
		if (n->autos[i].proto == proto && n->autos[i].port == port) {
			if (remove)
				n->autos[i] = n->autos[--n->n_autos];
			return true;
		}
	return false;
}

static void auto_propose(struct nat *n, enum store_op op, const struct nat_mapping *m)
{
	struct store_cmd cmd = {.table = NAT_MAPPINGS, .op = op, .time_ms = wall_ms()};
	(*STORE_CMD_ROW(&cmd, struct nat_mapping)) = *m;
	if (store_propose(n->store, &cmd, auto_done, n) == 0)
		n->auto_busy = true;
}

static bool listening(const struct guest_listener *ls, int k, uint8_t proto, uint16_t port)
{
	for (int i = 0; i < k; i++)
		if (ls[i].proto == proto && ls[i].port == port)
			return true;
	return false;
}

/* One change per tick: map a new listener, renew one, or unmap one that
 * closed. */
static void auto_mappings(struct nat *n)
{
	if (!n->guest || n->auto_busy || !nat_blocks_of(state(n), n->self))
		return;
	static struct guest_listener ls[GUEST_LISTENERS_MAX];
	int k = guest_listeners(n->guest, ls, GUEST_LISTENERS_MAX);
	if (k < 0) {
		if (!n->guest_failed)
			log_warn("nat: cannot read the guest's sockets: %s", strerror(-k));
		n->guest_failed = true;
		return;
	}
	n->guest_failed = false;
	uint64_t now = wall_ms();
	for (int i = 0; i < k; i++) {
		const struct guest_listener *l = &ls[i];
		if ((l->addr.s_addr && l->addr.s_addr != n->dp->cfg.guest_addr.s_addr) ||
		    !nat_may_expose(&n->o, l->proto, l->port))
			continue;
		const struct nat_mapping *m = nat_mapping_of(state(n), n->self, l->proto, l->port);
		if (m && (m->expires_ms == 0 || m->expires_ms > now + AUTO_RENEW_MS))
			continue; /* the admin's, or fresh enough */
		struct nat_mapping want = {
		    .proto = l->proto,
		    .owner = n->self,
		    .guest_addr = ntohl(n->dp->cfg.guest_addr.s_addr),
		    .guest_port = l->port,
		    .expires_ms = now + AUTO_LIFETIME_MS,
		};
		if (nat_mapping_port(state(n), n->self, l->proto, l->port, l->port,
		                     &want.public_port) < 0)
			continue;
		if (!auto_known(n, l->proto, l->port, false)) {
			if (n->n_autos == AUTO_MAX)
				continue;
			n->autos[n->n_autos].proto = l->proto;
			n->autos[n->n_autos++].port = l->port;
			log_info("nat: guest listens on %s port %u: public port %u",
			         l->proto == 6 ? "tcp" : "udp", l->port, want.public_port);
		}
		auto_propose(n, STORE_PUT, &want);
		return;
	}
	for (unsigned i = 0; i < n->n_autos; i++) {
		uint8_t proto = n->autos[i].proto;
		uint16_t port = n->autos[i].port;
		if (listening(ls, k, proto, port))
			continue;
		auto_known(n, proto, port, true);
		const struct nat_mapping *m = nat_mapping_of(state(n), n->self, proto, port);
		if (m && m->expires_ms != 0) {
			log_info("nat: guest closed %s port %u: unmapping public port %u",
			         proto == 6 ? "tcp" : "udp", port, m->public_port);
			auto_propose(n, STORE_DELETE, m);
		}
		return;
	}
}

/* ---- timers ---- */

static void choose_uplink(struct nat *n)
{
	struct sw_port_ref ups[SW_MAX_UPLINKS];
	bool up[SW_MAX_UPLINKS];
	size_t k = sw_uplinks(n->sw, ups, up);
	bool any = false;
	for (size_t i = 0; i < k; i++)
		any |= up[i];
	unsigned u = nat_uplink_for(n->self, any ? up : NULL,
	                            (unsigned)(k < n->o.n_publics ? k : n->o.n_publics));
	if (u == n->uplink)
		return;
	char a[INET_ADDRSTRLEN];
	log_info("nat: flows now leave by uplink %u (%s)", u + 1,
	         inet_ntop(AF_INET, &n->o.publics[u], a, sizeof(a)));
	n->uplink = u;
}

static void sync_done(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct nat *n = userdata;
	(void)res;
	n->syncing = false;
	if (status < 0) {
		log_debug("nat: waiting for the store: %s", error);
		return;
	}
	if (!n->synced)
		log_info("nat: the store has caught up; translating");
	n->synced = true;
	update_datapath(n);
}

/* Once after the start: everything committed so far is applied here. */
static void sync_store(struct nat *n)
{
	if (!n->synced && !n->syncing && store_barrier(n->store, sync_done, n) == 0)
		n->syncing = true;
}

static void soon_cb(uv_timer_t *t)
{
	struct nat *n = t->data;
	choose_uplink(n);
	update_datapath(n);
	check_blocks(n);
	sw_kick(n->sw);
}

static void tick_cb(uv_timer_t *t)
{
	struct nat *n = t->data;
	sync_store(n);
	soon_cb(t);
	reclaim(n);
	if (n->synced) {
		expire_mappings(n);
		auto_mappings(n);
	}
	resolve_gateways(n);
}

static void store_changed(void *userdata, const struct store_cmd *cmd,
                          const struct store_result *result)
{
	struct nat *n = userdata;
	(void)cmd;
	if (result->applied && !uv_is_active((uv_handle_t *)&n->soon))
		uv_timer_start(&n->soon, soon_cb, 5, 0);
}

int nat_open(uv_loop_t *loop, const struct nat_options *o, uint64_t self, const char *name,
             struct store *store, struct swc *switches, struct datapath *dp,
             const char *guest_netns, struct nat **ret)
{
	struct nat *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->loop = loop;
	n->o = *o;
	n->self = self;
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->store = store;
	n->sw = switches;
	n->dp = dp;
	n->in_use = -1;
	n->uplink = nat_uplink_for(self, NULL, o->n_publics);
	if (guest_netns && !(n->guest_netns = strdup(guest_netns))) {
		free(n);
		return -ENOMEM;
	}
	unsigned tables[] = {NAT_BLOCKS, NAT_MAPPINGS, TRUST_ADMISSIONS, SWITCH_LOCATIONS,
	                     STORE_MEMBERS};
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		int r = store_subscribe(store, tables[i], store_changed, n, &n->subs[i]);
		if (r < 0) {
			for (size_t k = 0; k < i; k++)
				store_unsubscribe(store, n->subs[k]);
			free(n->guest_netns);
			free(n);
			return r;
		}
	}
	uv_timer_t *timers[] = {&n->tick, &n->soon};
	for (size_t i = 0; i < 2; i++) {
		uv_timer_init(loop, timers[i]);
		timers[i]->data = n;
	}
	uv_timer_start(&n->tick, tick_cb, 10, TICK_MS);
	n->started_ms = uv_now(loop);
	int r = guest_netns && o->n_expose ? guest_open(guest_netns, &n->guest) : 0;
	if (r < 0)
		log_error("nat: the guest's namespace %s: %s; no automatic mappings", guest_netns,
		          strerror(-r));
	r = pmp_open(n);
	if (r < 0)
		log_error("nat: NAT-PMP/PCP on port %u: %s; port mapping requests are off",
		          PMP_PORT, uv_strerror(r));
	r = dp_set_source(dp, NAT_DP_SOURCE, datapath_build, n);
	if (r < 0)
		log_error("nat: datapath source: %s", strerror(-r));
	*ret = n;
	return 0;
}

static void closed(uv_handle_t *h)
{
	struct nat *n = h->data;
	if (--n->open_handles == 0) {
		free(n->guest_netns);
		free(n);
	}
}

void nat_close(struct nat *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < sizeof(n->subs) / sizeof(n->subs[0]); i++)
		store_unsubscribe(n->store, n->subs[i]);
	dp_remove_source(n->dp, NAT_DP_SOURCE);
	guest_close(n->guest);
	n->guest = NULL;
	n->open_handles = 2 + n->pmp_open;
	uv_close((uv_handle_t *)&n->tick, closed);
	uv_close((uv_handle_t *)&n->soon, closed);
	if (n->pmp_open)
		uv_close((uv_handle_t *)&n->pmp, closed);
}

/* ---- control requests ---- */

static json_t *addr_json(struct in_addr a)
{
	char s[INET_ADDRSTRLEN];
	return json_string(inet_ntop(AF_INET, &a, s, sizeof(s)));
}

static const char *member_name(const struct store_state *st, uint64_t id)
{
	const struct store_member *m = store_member_find(st, id);
	return m ? m->name : NULL;
}

static json_t *nat_status(struct nat *n)
{
	const struct store_state *st = state(n);
	struct sw_port_ref ups[SW_MAX_UPLINKS];
	bool up[SW_MAX_UPLINKS];
	size_t k = sw_uplinks(n->sw, ups, up);
	json_t *uplinks = json_array();
	for (unsigned i = 0; i < n->o.n_publics; i++) {
		char mac[18] = "";
		if (n->gw_known[i])
			snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->gw_mac[i][0],
			         n->gw_mac[i][1], n->gw_mac[i][2], n->gw_mac[i][3], n->gw_mac[i][4],
			         n->gw_mac[i][5]);
		char dpid[17];
		snprintf(dpid, sizeof(dpid), "%016" PRIx64, i < k ? ups[i].dpid : 0);
		json_array_append_new(
		    uplinks, json_pack("{s:i, s:o, s:o, s:s?, s:s, s:i, s:b}", "uplink", i + 1,
		                       "public", addr_json(n->o.publics[i]), "gateway",
		                       addr_json(nat_gateway(&n->o, i)), "gateway_mac",
		                       mac[0] ? mac : NULL, "dpid", dpid, "port",
		                       i < k ? (int)ups[i].port : 0, "up", i < k && up[i]));
	}
	json_t *blocks = json_array();
	for (size_t i = 0; i < store_count(st, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
		json_t *o = json_pack("{s:i, s:i, s:i, s:I, s:s?, s:I}", "start", b->start, "end",
		                      b->start + b->size - 1, "size", b->size, "owner_id",
		                      (json_int_t)b->owner, "owner", member_name(st, b->owner),
		                      "claimed_ms", (json_int_t)b->claimed_ms);
		json_array_append_new(blocks, o);
	}
	json_t *maps = json_array();
	for (size_t i = 0; i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		struct in_addr g = {htonl(m->guest_addr)};
		json_array_append_new(maps,
		                      json_pack("{s:s, s:i, s:s?, s:o, s:i, s:I}", "proto",
		                                m->proto == 6 ? "tcp" : "udp", "public_port",
		                                m->public_port, "owner", member_name(st, m->owner),
		                                "guest", addr_json(g), "guest_port", m->guest_port,
		                                "expires_ms", (json_int_t)m->expires_ms));
	}
	return json_pack("{s:s, s:o, s:i, s:o, s:o, s:{s:s, s:o, s:I, s:i}}", "host", n->name,
	                 "uplinks", uplinks, "block_size", n->o.block_size, "blocks", blocks,
	                 "mappings", maps, "self", "host", n->name, "public",
	                 addr_json(n->o.publics[n->uplink]), "in_use", (json_int_t)n->in_use,
	                 "blocks", (int)nat_blocks_of(st, n->self));
}

static int parse_proto(const char *s, uint8_t *ret)
{
	if (s && strcmp(s, "tcp") == 0)
		*ret = 6;
	else if (s && strcmp(s, "udp") == 0)
		*ret = 17;
	else
		return -EINVAL;
	return 0;
}

static int expose(struct nat *n, struct ctl_client *client, const struct ctl_request *req,
                  char **ret_error)
{
	const struct store_state *st = state(n);
	bool add = strcmp(req->cmd, "nat.expose") == 0;
	const char *host = json_string_value(json_object_get(req->args, "host"));
	json_t *jport = json_object_get(req->args, "port");
	json_t *jpublic = json_object_get(req->args, "public_port");
	uint8_t proto;
	if (parse_proto(json_string_value(json_object_get(req->args, "proto")), &proto) < 0) {
		*ret_error = strdup("field \"proto\": expected \"tcp\" or \"udp\"");
		return -EINVAL;
	}
	json_int_t port = json_integer_value(jport);
	json_int_t pub = jpublic ? json_integer_value(jpublic) : port;
	if (add && (!json_is_integer(jport) || port < 1 || port > 65535)) {
		*ret_error = strdup("field \"port\": expected 1 to 65535");
		return -EINVAL;
	}
	if (!json_is_integer(add ? jport : jpublic) || pub < 1 || pub > 65535) {
		*ret_error = strdup("field \"public_port\": expected 1 to 65535");
		return -EINVAL;
	}
	struct store_cmd cmd = {
	    .table = NAT_MAPPINGS, .op = add ? STORE_PUT : STORE_DELETE, .time_ms = wall_ms()};
	struct nat_mapping *m = STORE_CMD_ROW(&cmd, struct nat_mapping);
	m->proto = proto;
	m->public_port = (uint16_t)pub;
	if (add) {
		const struct store_member *mem = host ? store_member_find_name(st, host) : NULL;
		const struct switch_location *l = host ? switch_location_find(st, host) : NULL;
		if (!mem || !l) {
			if (asprintf(ret_error, "field \"host\": no located member named \"%s\"",
			             host ? host : "") < 0)
				*ret_error = NULL;
			return -ENOENT;
		}
		m->owner = mem->id;
		m->guest_addr = l->guest_addr;
		m->guest_port = (uint16_t)port;
	} else {
		/* Deleting names the public port; the owner is the store's. */
		bool found = false;
		for (size_t i = 0; i < store_count(st, NAT_MAPPINGS) && !found; i++) {
			const struct nat_mapping *x = store_row(st, NAT_MAPPINGS, i);
			if (x->proto == proto && x->public_port == pub) {
				*m = *x;
				found = true;
			}
		}
		if (!found) {
			if (asprintf(ret_error, "no mapping of public port %lld/%s", (long long)pub,
			             proto == 6 ? "tcp" : "udp") < 0)
				*ret_error = NULL;
			return -ENOENT;
		}
	}
	return store_propose_reply(n->store, client, req, &cmd, true, ret_error);
}

int nat_handle_request(struct nat *n, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	if (strcmp(req->cmd, "nat") == 0) {
		*ret_result = nat_status(n);
		return *ret_result ? 0 : -ENOMEM;
	}
	if (strcmp(req->cmd, "nat.expose") == 0 || strcmp(req->cmd, "nat.unexpose") == 0)
		return expose(n, client, req, ret_error);
	return -ENOENT;
}
