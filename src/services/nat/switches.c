/* NAT's part in the switch controller (nat-internal.h, docs/nat.md): its
 * flows on every switch, the master's answers to ARP for the public
 * addresses, and the ISP gateways' MACs, which the master resolves and
 * every agent learns from the master's flows. */
#include <arpa/inet.h>
#include <string.h>

#include "lib/log.h"
#include "lib/mac.h"
#include "openflow/ofp.h"
#include "services/nat/nat-internal.h"
#include "switch/desired.h"
#include "switch/switch.h"

#define GATEWAY_REFRESH_MS 30000

/* ---- the master: the gateways ---- */

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

void nat_switches_resolve(struct nat *n)
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
	char s[MAC_STR_MAX];
	log_info("nat: gateway of uplink %u is %s", i + 1, mac_format(mac, s));
	sw_kick(n->sw);
}

/* ---- the master: ARP for the public addresses ---- */

/* Answers @a, a request for public address @i, out of @dpid's @port. */
static void arp_answer(struct nat *n, unsigned i, const struct arp_msg *a, uint64_t dpid,
                       uint32_t port)
{
	struct arp_msg r = {.op = 2, .spa = a->tpa, .tpa = a->spa};
	nat_public_mac(n->o.publics[i], r.sha);
	memcpy(r.eth_src, r.sha, 6);
	memcpy(r.eth_dst, a->sha, 6);
	memcpy(r.tha, a->sha, 6);
	uint8_t out[ARP_FRAME_LEN];
	size_t len = arp_build(&r, out);
	if (len)
		sw_packet_out(n->sw, dpid, port, out, len);
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
		if (a.op == 1)
			arp_answer(n, i, &a, dpid, in_port);
		return;
	}
}

/* ---- every agent: the gateways from the master's flows ---- */

/* The gateway's MAC that flow @fm sets as the destination, if it does. */
static bool flow_eth_dst(const struct of13_flow_mod *fm, uint8_t mac[6])
{
	const struct of13_instruction *in = &fm->instructions[0];
	bool found = false;
	for (unsigned a = 0; a < in->n_actions; a++)
		if (in->actions[a].type == OF13_ACTION_SET_FIELD &&
		    in->actions[a].set_field.field == OF13_OXM_ETH_DST) {
			memcpy(mac, in->actions[a].set_field.value, 6);
			found = true;
		}
	return found;
}

/* A new master learns the gateways' MACs from the old master's flows, which
 * it reads back before it first reconciles: it has them before it resolves
 * them itself, and outbound traffic never waits for an ARP round trip.
 * A block of this host's that waits to be steered may be now. */
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
			if (flow_eth_dst(fm, n->gw_mac[i]))
				n->gw_known[i] = true;
		}
	}
	(void)dpid;
	if (n->synced && nat_steered_check(n, false))
		nat_datapath_update(n);
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
