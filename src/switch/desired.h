/* The flows ETTM wants on each switch, computed from the store alone (a
 * pure function: every agent computes the same set, and a new master
 * reconciles the switch to it), and the comparison of a switch's installed
 * flows with that set. docs/switch.md describes the tables. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "openflow/ofp.h"
#include "store/tables.h"

/* Cookies mark ETTM's flows: the high 32 bits say "ETTM", the low ones are
 * free. The start-up (bootstrap) flows carry a cookie of their own: the
 * switch holds them before any agent is master, and the master keeps them
 * there (sw_startup_flows()). */
#define SW_COOKIE         0xe77d000000000000ull
#define SW_COOKIE_MASK    0xffffffff00000000ull
#define SW_STARTUP_COOKIE 0xe77b000000000001ull

/* The start-up flows' addresses (DESIGN.md's addressing plan): the AEEs'
 * control addresses and the switches' management addresses, host order. */
#define SW_STARTUP_CONTROL_NET 0x0a4d0000u /* 10.77.0.0/24 */
#define SW_STARTUP_MGMT_NET    0x0a4dff00u /* 10.77.255.0/24 */
#define SW_STARTUP_NET_MASK    0xffffff00u
#define SW_PRIO_STARTUP_LLDP   5000
#define SW_PRIO_STARTUP        1000

/* Priorities, table 0 (admission) and table 1 (forwarding). */
#define SW_PRIO_ADMIT   2000
#define SW_PRIO_FORWARD 2000
#define SW_PRIO_ARP     2100
#define SW_PRIO_MISS    0
/* Table 0, the control plane (docs/switch.md, "The control plane closed"):
 * above the start-up flows (1000), under the devices' (1500 and up) and
 * admission (2000). */
#define SW_PRIO_CONTROL_AGENT  1200 /* an agent not admitted: its control traffic */
#define SW_PRIO_CONTROL_SPOOF  1100 /* an agent's address from elsewhere: drop */
#define SW_PRIO_CONTROL_CLOSED 1050 /* to an agent or a switch, from elsewhere: drop */

struct sw_port_ref {
	uint64_t dpid;
	uint32_t port;
};

struct sw_flows {
	struct of13_flow_mod *v;
	size_t n, cap;
};

void sw_flows_free(struct sw_flows *f);
/* Appends a copy of @fm; -ENOMEM. */
int sw_flows_add(struct sw_flows *f, const struct of13_flow_mod *fm);

/* Groups a service wants on a switch, grown to fit. */
struct sw_groups {
	struct of13_group_mod *v;
	size_t n, cap;
};

/* Appends a zeroed group_mod and returns it, or NULL (out of memory). */
struct of13_group_mod *sw_groups_add(struct sw_groups *g);
/* Frees the groups and leaves @g empty, ready for reuse. */
void sw_groups_free(struct sw_groups *g);

/* The control plane, as the controller's configuration knows it. */
struct sw_control {
	const uint32_t *switch_addrs; /* the switches' own addresses, host order */
	size_t n_switch_addrs;
	/* How many switches the network has: the addresses are closed to
	 * unknown ports only once the links join this many, so that no
	 * switch-to-switch port still unknown is cut off before LLDP found it. */
	size_t n_switches;
};

/* The flows switch @dpid should have: admitted hosts' ports, links,
 * @uplinks (ports that lead to the ISP) and the switch's own port enter
 * table 1; table 1 forwards to every admitted host along a shortest path
 * and answers ARP for its addresses without flooding. With @control (NULL:
 * none), the control plane is closed: an agent whose host is not admitted
 * sends only its own control traffic to the agents and switches; an
 * agent's address is dropped from any port but its own (where the path to
 * it is known); and, once the links join every switch and every voter of
 * the store has a place, IPv4 and ARP to an agent or a switch from any
 * other port. Returns 0 or -ENOMEM. */
int sw_desired(const struct store_state *st, const struct sw_port_ref *uplinks, size_t n_uplinks,
               const struct sw_control *control, uint64_t dpid, struct sw_flows *ret);

/* Appends the start-up flows (table 0, cookie SW_STARTUP_COOKIE): LLDP
 * to the controller, and ARP and IPv4 between the control and management
 * networks, switched normally. They carry OFPFF_SEND_FLOW_REM, so the
 * master hears at once when they are deleted. docs/switch.md, "Start-up
 * flows". Returns 0 or -ENOMEM. */
int sw_startup_flows(struct sw_flows *out);
/* True for a flow of @cookie that reconciling owns: ETTM's and the
 * start-up flows (an admin's own flows are never touched). */
bool sw_cookie_owned(uint64_t cookie);

/* Building blocks of flows, for services. */
/* A flow_mod adding an ETTM flow (cookie) to @table at @priority. */
struct of13_flow_mod sw_flow_base(uint8_t table, uint16_t priority);
/* Appends an apply-actions instruction and returns it. */
struct of13_instruction *sw_apply(struct of13_flow_mod *fm);
void sw_output(struct of13_instruction *in, uint32_t port);
/* set_field of an Ethernet address (OF13_OXM_ETH_SRC or _DST). */
void sw_set_eth(struct of13_instruction *in, enum of13_oxm_field field, const uint8_t mac[6]);

/* The port of switch @from on a shortest path to switch @to over the links
 * of @st, or 0 when @to cannot be reached (or @from == @to). */
uint32_t sw_next_hop(const struct store_state *st, uint64_t from, uint64_t to);

/* Puts a flow in canonical form (match fields sorted) so flows read back
 * from a switch compare equal to the ones ETTM wrote. */
void sw_flow_canonical(struct of13_flow_mod *fm);

/* Same table, priority and match. */
bool sw_flow_same_key(const struct of13_flow_mod *a, const struct of13_flow_mod *b);
/* Same key and same instructions. */
bool sw_flow_equal(const struct of13_flow_mod *a, const struct of13_flow_mod *b);

/* What reconciling @installed to @desired takes: the flows to add (missing
 * or different) and to delete (installed, not desired). Both borrow. */
struct sw_diff {
	const struct of13_flow_mod **add;
	size_t n_add;
	const struct of13_flow_mod **del;
	size_t n_del;
};
int sw_diff(const struct sw_flows *desired, const struct sw_flows *installed, struct sw_diff *ret);
void sw_diff_free(struct sw_diff *d);

/* One flow as ovs-ofctl-like text: "table=1 priority=2000 eth_dst=... actions". */
void sw_flow_format(FILE *out, const struct of13_flow_mod *fm);
