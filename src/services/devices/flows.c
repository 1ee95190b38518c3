/* The devices' flows on a switch (devices.h, docs/devices.md): a pure
 * function of the store. */
#include <errno.h>
#include <string.h>

#include "devices.h"
#include "switch/desired.h"
#include "trust/tables.h"
#include "switch/tables.h"
#include "services/devices/tables.h"
#include "lib/mac.h"

#define ETH_ARP 0x0806

static int add(struct sw_flows *out, struct of13_flow_mod *fm)
{
	sw_flow_canonical(fm);
	return sw_flows_add(out, fm);
}

static void goto_table1(struct of13_flow_mod *fm)
{
	fm->instructions[fm->n_instructions++] =
	    (struct of13_instruction){.type = OF13_INSTRUCTION_GOTO_TABLE, .table_id = 1};
}

const struct switch_location *devices_manager_location(const struct store_state *st)
{
	const struct devices_manager *m = devices_manager(st);
	if (!m->host[0] || !trust_admission_find(st, m->host))
		return NULL;
	const struct switch_location *l = switch_location_find(st, m->host);
	uint8_t mac[6];
	return l && mac_parse(l->mac, mac) ? l : NULL;
}

/* Where switch @dpid sends a frame for port @port of switch @to. */
static uint32_t towards(const struct store_state *st, uint64_t dpid, uint64_t to, uint32_t port)
{
	return to == dpid ? port : sw_next_hop(st, dpid, to);
}

/* Table 0 at the device's own port: into table 1 (everything copied to
 * the master while its address is unknown); its ARP only from its known
 * address, other ARP to the master alone. An address is learned before
 * the manager sees the device's ARP from it: else the manager's proxy ARP
 * would answer the device's announcement of its own address (RFC 5227
 * calls that a conflict). */
static int admit(const struct devices_device *d, const uint8_t mac[6], struct sw_flows *out)
{
	struct of13_flow_mod fm = sw_flow_base(0, DEV_PRIO_LEARN);
	of13_match_add(&fm.match, OF13_OXM_IN_PORT, d->port, NULL);
	of13_match_add_eth(&fm.match, OF13_OXM_ETH_SRC, mac, NULL);
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, ETH_ARP, NULL);
	sw_output(sw_apply(&fm), OF13_PORT_CONTROLLER);
	int r = add(out, &fm);

	if (r == 0 && d->address) {
		fm = sw_flow_base(0, DEV_PRIO_ARP_OWN);
		of13_match_add(&fm.match, OF13_OXM_IN_PORT, d->port, NULL);
		of13_match_add_eth(&fm.match, OF13_OXM_ETH_SRC, mac, NULL);
		of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, ETH_ARP, NULL);
		of13_match_add(&fm.match, OF13_OXM_ARP_SPA, d->address, NULL);
		goto_table1(&fm);
		r = add(out, &fm);
	}

	fm = sw_flow_base(0, DEV_PRIO_ADMIT);
	of13_match_add(&fm.match, OF13_OXM_IN_PORT, d->port, NULL);
	of13_match_add_eth(&fm.match, OF13_OXM_ETH_SRC, mac, NULL);
	if (!d->address)
		sw_output(sw_apply(&fm), OF13_PORT_CONTROLLER);
	goto_table1(&fm);
	return r == 0 ? add(out, &fm) : r;
}

/* Table 1: from the device to the manager (addressed to it, so that a
 * device that still knows the previous manager's MAC is not lost), ARP
 * for its address to the manager, and what is for it to it. */
static int forward(const struct store_state *st, const struct devices_device *d,
                   const uint8_t mac[6], const uint8_t mgr_mac[6], uint32_t to_mgr, uint64_t dpid,
                   struct sw_flows *out)
{
	struct of13_flow_mod fm = sw_flow_base(1, DEV_PRIO_FROM);
	of13_match_add_eth(&fm.match, OF13_OXM_ETH_SRC, mac, NULL);
	struct of13_instruction *in = sw_apply(&fm);
	sw_set_eth(in, OF13_OXM_ETH_DST, mgr_mac);
	sw_output(in, to_mgr);
	int r = add(out, &fm);

	if (r == 0 && d->address) {
		fm = sw_flow_base(1, DEV_PRIO_ARP);
		of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, ETH_ARP, NULL);
		of13_match_add(&fm.match, OF13_OXM_ARP_OP, 1, NULL);
		of13_match_add(&fm.match, OF13_OXM_ARP_TPA, d->address, NULL);
		in = sw_apply(&fm);
		sw_set_eth(in, OF13_OXM_ETH_DST, mgr_mac);
		sw_output(in, to_mgr);
		r = add(out, &fm);
	}
	uint32_t to_dev = d->dpid && d->port ? towards(st, dpid, d->dpid, d->port) : 0;
	if (r == 0 && to_dev) {
		fm = sw_flow_base(1, DEV_PRIO_TO);
		of13_match_add_eth(&fm.match, OF13_OXM_ETH_DST, mac, NULL);
		sw_output(sw_apply(&fm), to_dev);
		r = add(out, &fm);
	}
	return r;
}

int devices_flows(const struct store_state *st, uint64_t dpid, struct sw_flows *out)
{
	const struct switch_location *mgr = devices_manager_location(st);
	uint8_t mgr_mac[6];
	uint32_t to_mgr = 0;
	if (mgr && mac_parse(mgr->mac, mgr_mac))
		to_mgr = towards(st, dpid, mgr->dpid, mgr->port);
	int r = 0;
	for (size_t i = 0; r == 0 && i < store_count(st, DEVICES_DEVICES); i++) {
		const struct devices_device *d = store_row(st, DEVICES_DEVICES, i);
		uint8_t mac[6];
		if (!mac_parse(d->mac, mac))
			continue;
		struct of13_flow_mod fm = sw_flow_base(0, DEV_PRIO_SEEN);
		of13_match_add_eth(&fm.match, OF13_OXM_ETH_SRC, mac, NULL);
		sw_output(sw_apply(&fm), OF13_PORT_CONTROLLER);
		r = add(out, &fm);
		/* Without a way to the manager a device's frames go nowhere:
		 * table 1's miss would take them the switch's normal way. */
		if (r < 0 || !to_mgr)
			continue;
		if (d->dpid == dpid && d->port)
			r = admit(d, mac, out);
		if (r == 0)
			r = forward(st, d, mac, mgr_mac, to_mgr, dpid, out);
	}
	return r;
}
