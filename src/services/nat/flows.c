/* NAT's flows and group on a switch (nat.h, docs/nat.md): a pure function
 * of the store, the uplinks and the gateways' MACs. */
#include <errno.h>
#include <string.h>

#include "nat.h"
#include "switch/desired.h"
#include "trust/tables.h"
#include "switch/tables.h"
#include "services/nat/tables.h"
#include "lib/mac.h"

#define ETH_IP  0x0800
#define ETH_ARP 0x0806

static int add(struct sw_flows *out, struct of13_flow_mod *fm)
{
	sw_flow_canonical(fm);
	return sw_flows_add(out, fm);
}

/* Where switch @dpid sends a frame for the AEE at @l: its port, the next hop
 * towards its switch, or 0 (no path). */
static uint32_t port_towards(const struct store_state *st, uint64_t dpid,
                             const struct switch_location *l)
{
	return l->dpid == dpid ? l->port : sw_next_hop(st, dpid, l->dpid);
}

/* Steers what is addressed to public port(s) @port/@mask of @proto, on any
 * public address, to member @owner's AEE. */
static int steer(const struct store_state *st, const struct nat_options *o, uint64_t dpid,
                 uint64_t owner, uint8_t proto, uint16_t port, uint16_t mask, uint16_t priority,
                 struct sw_flows *out)
{
	uint8_t mac[6];
	const struct store_member *m = store_member_find(st, owner);
	const struct switch_location *l = m ? switch_location_find(st, m->name) : NULL;
	if (!l || !nat_member_mac(st, owner, mac))
		return 0;
	uint32_t to = port_towards(st, dpid, l);
	if (!to)
		return 0;
	/* A host reaching its own public port (hairpinning) gets the frame
	 * back on the port it came from, which only IN_PORT may do. */
	int r = 0;
	for (unsigned i = 0; r == 0 && i < o->n_publics * (l->dpid == dpid ? 2 : 1); i++) {
		bool back = i >= o->n_publics;
		struct of13_flow_mod fm = sw_flow_base(1, priority + back);
		uint64_t m64 = mask;
		if (back)
			of13_match_add(&fm.match, OF13_OXM_IN_PORT, to, NULL);
		of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, ETH_IP, NULL);
		of13_match_add(&fm.match, OF13_OXM_IPV4_DST,
		               ntohl(o->publics[i % o->n_publics].s_addr), NULL);
		of13_match_add(&fm.match, OF13_OXM_IP_PROTO, proto, NULL);
		of13_match_add(&fm.match, proto == 6 ? OF13_OXM_TCP_DST : OF13_OXM_UDP_DST, port,
		               mask == 0xffff ? NULL : &m64);
		struct of13_instruction *in = sw_apply(&fm);
		sw_set_eth(in, OF13_OXM_ETH_DST, mac);
		sw_output(in, back ? OF13_PORT_IN_PORT : to);
		r = add(out, &fm);
	}
	return r;
}

/* Steers block @b, TCP and UDP, to its owner's AEE. */
static int block_flows(const struct store_state *st, const struct nat_options *o, uint64_t dpid,
                       const struct nat_block *b, struct sw_flows *out)
{
	uint16_t mask = (uint16_t) ~(b->size - 1u);
	int r = steer(st, o, dpid, b->owner, 6, b->start, mask, NAT_PRIO_BLOCK, out);
	return r ? r : steer(st, o, dpid, b->owner, 17, b->start, mask, NAT_PRIO_BLOCK, out);
}

/* The link by which switch @dpid goes on towards @root (its parent in the
 * tree of shortest paths to the uplink's switch), or NULL. */
static const struct switch_link *parent_link(const struct store_state *st, uint64_t dpid,
                                             uint64_t root)
{
	uint32_t port = sw_next_hop(st, dpid, root);
	for (size_t i = 0; port && i < store_count(st, SWITCH_LINKS); i++) {
		const struct switch_link *k = store_row(st, SWITCH_LINKS, i);
		if (k->dpid == dpid && k->port == port)
			return k;
	}
	return NULL;
}

/* Whether switch @at lies below @dpid in the tree towards @root (or is
 * @dpid). Sets *ret_port to @dpid's port towards the child on the way, 0
 * when @at is @dpid itself. */
static bool below(const struct store_state *st, uint64_t root, uint64_t dpid, uint64_t at,
                  uint32_t *ret_port)
{
	*ret_port = 0;
	for (unsigned hops = 0; at != dpid; hops++) {
		const struct switch_link *k =
		    at == root || hops == 64 ? NULL : parent_link(st, at, root);
		if (!k)
			return false;
		if (k->peer_dpid == dpid)
			*ret_port = k->peer_port;
		at = k->peer_dpid;
	}
	return true;
}

static struct of13_bucket *bucket_out(struct of13_group_mod *g, uint32_t port)
{
	for (size_t i = 0; i < g->n_buckets; i++)
		if (g->buckets[i].watch_port == port)
			return &g->buckets[i];
	struct of13_bucket *b = of13_group_mod_add_bucket(g);
	if (b)
		*b = (struct of13_bucket){.watch_port = port, .watch_group = OF13_GROUP_ANY};
	return b;
}

/* The select group of uplink @i's live AEEs on switch @dpid, over the tree
 * of shortest paths from the uplink's switch @root: one bucket per admitted
 * AEE on this switch, and one per switch below, weighted by the AEEs under
 * it, where that switch's own group chooses. Each bucket is watched on its
 * way out, so a port that goes down is skipped by the switch it is on, at
 * once and with no master: a host unplugged on another switch than the
 * uplink's is skipped there, not black-holed (docs/nat.md). No bucket, no
 * group. */
static int any_aee_group(const struct store_state *st, unsigned i, uint64_t root, uint64_t dpid,
                         struct sw_groups *groups)
{
	struct of13_group_mod g = {.command = OF13_GROUP_ADD,
	                           .type = OF13_GROUP_TYPE_SELECT,
	                           .group_id = NAT_GROUP_ID + i};
	for (size_t k = 0; k < store_count(st, SWITCH_LOCATIONS); k++) {
		const struct switch_location *l = store_row(st, SWITCH_LOCATIONS, k);
		uint8_t mac[6];
		uint32_t child;
		if (!trust_admission_find(st, l->host) || !mac_parse(l->mac, mac) ||
		    !below(st, root, dpid, l->dpid, &child))
			continue;
		struct of13_bucket *b = bucket_out(&g, child ? child : l->port);
		if (!b) {
			of13_group_mod_free(&g);
			return -ENOMEM;
		}
		b->weight++;
		if (child)
			continue; /* that switch's group sets the AEE's address */
		b->actions[b->n_actions].type = OF13_ACTION_SET_FIELD;
		b->actions[b->n_actions].set_field.field = OF13_OXM_ETH_DST;
		b->actions[b->n_actions].set_field.len = 6;
		memcpy(b->actions[b->n_actions++].set_field.value, mac, 6);
		b->actions[b->n_actions++] =
		    (struct of13_action){.type = OF13_ACTION_OUTPUT, .output = {.port = l->port}};
	}
	for (size_t k = 0; k < g.n_buckets; k++)
		if (g.buckets[k].n_actions == 0)
			g.buckets[k].actions[g.buckets[k].n_actions++] =
			    (struct of13_action){.type = OF13_ACTION_OUTPUT,
			                         .output = {.port = g.buckets[k].watch_port}};
	if (g.n_buckets == 0)
		return 0; /* nothing allocated */
	struct of13_group_mod *to = sw_groups_add(groups);
	if (!to) {
		of13_group_mod_free(&g);
		return -ENOMEM;
	}
	*to = g; /* the buckets are the set's now */
	return 1;
}

/* Inbound for public address @i that no other flow takes, arriving by
 * @port (the uplink, or the link from the switch above): to the group. */
static int any_aee_flow(const struct nat_options *o, unsigned i, uint32_t port,
                        struct sw_flows *out)
{
	struct of13_flow_mod fm = sw_flow_base(1, NAT_PRIO_ANY_AEE);
	of13_match_add(&fm.match, OF13_OXM_IN_PORT, port, NULL);
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, ETH_IP, NULL);
	of13_match_add(&fm.match, OF13_OXM_IPV4_DST, ntohl(o->publics[i].s_addr), NULL);
	struct of13_instruction *in = sw_apply(&fm);
	in->actions[in->n_actions++] =
	    (struct of13_action){.type = OF13_ACTION_GROUP, .group_id = NAT_GROUP_ID + i};
	return add(out, &fm);
}

/* A set_field of a @len-byte integer field, in network order. */
static void set_int(struct of13_instruction *in, enum of13_oxm_field field, uint32_t value,
                    uint8_t len)
{
	struct of13_action *a = &in->actions[in->n_actions++];
	*a = (struct of13_action){.type = OF13_ACTION_SET_FIELD};
	a->set_field.field = field;
	a->set_field.len = len;
	for (unsigned k = 0; k < len; k++)
		a->set_field.value[len - 1 - k] = (uint8_t)(value >> (8 * k));
}

/* The gateway's ARP requests for the public address, answered by the
 * uplink's switch itself (RFC 826 reply: the request's sender becomes the
 * target; its address is the gateway's: a router asks from whichever of
 * its addresses the packet it holds came from, and OpenFlow 1.3 cannot copy
 * a field) once the gateway's MAC is known, so that the ISP reaches the
 * public address while no agent is master: mastership moving, a leader
 * killed, voters returning. Requests from another MAC, a gateway whose MAC
 * changed among them, still go to the master. */
static int gateway_arp_flow(const struct nat_options *o, unsigned i, uint32_t port,
                            const uint8_t *gw_mac, const uint8_t mac[6], struct sw_flows *out)
{
	uint32_t pub = ntohl(o->publics[i].s_addr), gw = ntohl(nat_gateway(o, i).s_addr);
	struct of13_flow_mod fm = sw_flow_base(1, NAT_PRIO_ARP_GW);
	of13_match_add(&fm.match, OF13_OXM_IN_PORT, port, NULL);
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, ETH_ARP, NULL);
	of13_match_add(&fm.match, OF13_OXM_ARP_OP, 1, NULL);
	of13_match_add(&fm.match, OF13_OXM_ARP_TPA, pub, NULL);
	of13_match_add_eth(&fm.match, OF13_OXM_ARP_SHA, gw_mac, NULL);
	struct of13_instruction *in = sw_apply(&fm);
	sw_set_eth(in, OF13_OXM_ETH_DST, gw_mac);
	sw_set_eth(in, OF13_OXM_ETH_SRC, mac);
	set_int(in, OF13_OXM_ARP_OP, 2, 2);
	sw_set_eth(in, OF13_OXM_ARP_SHA, mac);
	set_int(in, OF13_OXM_ARP_SPA, pub, 4);
	sw_set_eth(in, OF13_OXM_ARP_THA, gw_mac);
	set_int(in, OF13_OXM_ARP_TPA, gw, 4);
	sw_output(in, OF13_PORT_IN_PORT);
	return add(out, &fm);
}

/* At the uplink's switch: ARP for the public address to the master; what
 * leaves from it gets the organisation's MAC and the gateway's. */
static int uplink_flows(const struct nat_options *o, unsigned i, uint32_t port,
                        const uint8_t *gw_mac, struct sw_flows *out)
{
	uint32_t pub = ntohl(o->publics[i].s_addr);
	uint8_t mac[6];
	nat_public_mac(o->publics[i], mac);

	struct of13_flow_mod fm = sw_flow_base(1, NAT_PRIO_ARP);
	of13_match_add(&fm.match, OF13_OXM_IN_PORT, port, NULL);
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, ETH_ARP, NULL);
	of13_match_add(&fm.match, OF13_OXM_ARP_TPA, pub, NULL);
	sw_output(sw_apply(&fm), OF13_PORT_CONTROLLER);
	int r = add(out, &fm);

	fm = sw_flow_base(1, NAT_PRIO_OUT);
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, ETH_IP, NULL);
	of13_match_add(&fm.match, OF13_OXM_IPV4_SRC, pub, NULL);
	if (gw_mac) {
		struct of13_instruction *in = sw_apply(&fm);
		sw_set_eth(in, OF13_OXM_ETH_SRC, mac);
		sw_set_eth(in, OF13_OXM_ETH_DST, gw_mac);
		sw_output(in, port);
	} /* else dropped until the gateway answers */
	if (r == 0)
		r = add(out, &fm);

	if (r == 0 && gw_mac)
		r = gateway_arp_flow(o, i, port, gw_mac, mac, out);
	return r;
}

int nat_flows(const struct store_state *st, const struct nat_options *o,
              const struct sw_port_ref *uplinks, size_t n_uplinks, const uint8_t (*gw_macs)[6],
              const bool *gw_known, uint64_t dpid, struct sw_flows *out, struct sw_groups *groups)
{
	if (!nat_enabled(o))
		return 0;
	int r = 0;
	for (size_t i = 0; r == 0 && i < n_uplinks && i < o->n_publics; i++) {
		if (!uplinks[i].port)
			continue;
		uint32_t in = uplinks[i].port;
		if (uplinks[i].dpid == dpid) {
			r = uplink_flows(o, (unsigned)i, in, gw_known[i] ? gw_macs[i] : NULL, out);
		} else {
			if (!(in = sw_next_hop(st, dpid, uplinks[i].dpid)))
				continue;
			struct of13_flow_mod fm = sw_flow_base(1, NAT_PRIO_OUT);
			of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, ETH_IP, NULL);
			of13_match_add(&fm.match, OF13_OXM_IPV4_SRC, ntohl(o->publics[i].s_addr),
			               NULL);
			sw_output(sw_apply(&fm), in);
			r = add(out, &fm);
		}
		if (r == 0 &&
		    (r = any_aee_group(st, (unsigned)i, uplinks[i].dpid, dpid, groups)) > 0)
			r = any_aee_flow(o, (unsigned)i, in, out);
	}
	for (size_t i = 0; r == 0 && i < store_count(st, NAT_BLOCKS); i++)
		r = block_flows(st, o, dpid, store_row(st, NAT_BLOCKS, i), out);
	for (size_t i = 0; r == 0 && i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		if (nat_port_owner(st, m->public_port) != m->owner)
			r = steer(st, o, dpid, m->owner, m->proto, m->public_port, 0xffff,
			          NAT_PRIO_MAPPING, out);
	}
	return r;
}

int nat_block_steered(const struct store_state *st, const struct nat_options *o, uint64_t dpid,
                      const struct nat_block *b, const struct sw_flows *installed)
{
	struct sw_flows want = {0};
	int r = block_flows(st, o, dpid, b, &want);
	if (r == 0 && want.n == 0)
		r = -ENOENT; /* no way to the owner from @dpid */
	bool all = r == 0;
	for (size_t i = 0; all && i < want.n; i++) {
		all = false;
		for (size_t k = 0; k < installed->n && !all; k++)
			all = sw_flow_equal(&want.v[i], &installed->v[k]);
	}
	sw_flows_free(&want);
	return r < 0 ? r : all;
}

size_t nat_steer_path(const struct store_state *st, uint64_t from, uint64_t to, uint64_t *path,
                      size_t max)
{
	size_t k = 0;
	while (k < max) {
		path[k++] = from;
		if (from == to)
			return k;
		const struct switch_link *next = parent_link(st, from, to);
		if (!next)
			return 0;
		from = next->peer_dpid;
	}
	return 0;
}
