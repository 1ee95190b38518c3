/* Switch control from the edge: every agent holds an OpenFlow connection
 * to every switch; the store's leader is MASTER (generation id = its Raft
 * term) and reconciles each switch's ETTM flows to the desired set computed
 * from the store; the others are SLAVE. The master also runs LLDP to learn
 * switch-to-switch links and where each host's AEE sits, and commits what
 * it learns to the store, and polls port and flow statistics into soft
 * state. Every agent announces its own AEE by LLDP. See docs/switch.md. */
#pragma once

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "claim.h"
#include "desired.h"

/* Bounds of the configuration, not of a protocol: every agent holds a
 * connection to every switch, and 64 switches of 48 ports are three
 * thousand ports, more than one cluster is sized for (docs/scale.md). A
 * configuration past them is refused with the bound in the error. */
#define SW_MAX_SWITCHES 64
#define SW_MAX_UPLINKS  8
#define SW_ADDR_MAX     64

struct sw_uplink {
	uint64_t dpid;
	char port[17]; /* the switch port's name */
};

struct sw_options {
	char switches[SW_MAX_SWITCHES][SW_ADDR_MAX]; /* A.B.C.D:PORT of each switch */
	unsigned n_switches;
	struct sw_uplink uplinks[SW_MAX_UPLINKS];
	unsigned n_uplinks;
	unsigned stats_interval_ms; /* default 1000 */
	unsigned lldp_interval_ms;  /* default 1000 */
	unsigned link_timeout_ms;   /* default 2500 */
	unsigned fiat_after_ms;     /* default 2000; 0: never recover by fiat */
};

void sw_options_default(struct sw_options *o);

/* This host, as its announcements tell the master. */
struct sw_self {
	char name[32];
	char uplink_if[IF_NAMESIZE];
	uint32_t control_addr, guest_addr; /* host byte order */
};

struct store;
struct swc;

/* A service's part in the switches (DESIGN.md, "Services"). @uplinks is
 * indexed like switch.uplinks; port 0 where the port is not known yet. */
struct sw_service {
	/* Adds the flows and groups the service wants on switch @dpid; a pure
	 * function of the store and what the service learnt as master. */
	int (*flows)(void *userdata, const struct store_state *st,
	             const struct sw_port_ref *uplinks, size_t n_uplinks, uint64_t dpid,
	             struct sw_flows *out, struct sw_groups *groups);
	/* ETTM's flows just read back from switch @dpid (by the master at
	 * each statistics round and before reconciling; by another agent
	 * when asked for them), or confirmed by the barrier that ends a
	 * reconciliation. */
	void (*installed)(void *userdata, uint64_t dpid, const struct sw_flows *installed);
	/* A packet-in that is not LLDP, at the master. */
	void (*packet_in)(void *userdata, uint64_t dpid, uint32_t in_port, const uint8_t *frame,
	                  size_t len);
};

/* Adds the service with @userdata, or replaces it; @svc NULL removes it.
 * Any number of services; their flows are computed in registration order.
 * Returns 0, or -ENOMEM (the service is then not registered). */
int sw_set_service(struct swc *c, const struct sw_service *svc, void *userdata);
/* Recomputes and reconciles soon (a service's inputs changed). */
void sw_kick(struct swc *c);
/* True when this agent is master of every connected switch. */
bool sw_is_master(struct swc *c);
/* Sends @frame out of port @port of switch @dpid (as master). */
int sw_packet_out(struct swc *c, uint64_t dpid, uint32_t port, const uint8_t *frame, size_t len);
/* The ETTM flows switch @dpid is known to hold: as last read back, or as a
 * reconciliation's barrier confirmed them; NULL while not known (never
 * read, a reconciliation under way, not connected). A non-master's copy is
 * as old as its last read. */
const struct sw_flows *sw_installed(struct swc *c, uint64_t dpid);
/* Asks switch @dpid for its flows; the services' installed() callbacks
 * get them. A read already under way answers instead; and the master that
 * leads reconciles after every change, so its next barrier answers.
 * 0, or -ENOTCONN. */
int sw_read_flows(struct swc *c, uint64_t dpid);
/* The configured uplinks, indexed as in the configuration (port 0: not
 * seen yet), and whether each is up. Returns how many. */
size_t sw_uplinks(struct swc *c, struct sw_port_ref *refs, bool *up);
/* This agent's own uplink MAC. */
const uint8_t *sw_own_mac(struct swc *c);

/* Starts the controller: connections to every switch, LLDP, statistics.
 * With @self->uplink_if empty the agent sends no LLDP announcements (and
 * needs no raw socket; its own MAC reads as zeros). Returns 0 with *@ret,
 * or a negative errno with *@ret_error. */
int sw_open(uv_loop_t *loop, const struct sw_options *o, const struct sw_self *self,
            struct store *store, struct swc **ret, char **ret_error);
/* Closes every connection and timer, then frees @c and calls @done(@arg)
 * (@done may be NULL). */
void sw_close(struct swc *c, void (*done)(void *arg), void *arg);

/* The failure detector's view, for `ettmctl cluster`: {state, reason}. */
json_t *sw_failure_detector(struct swc *c);

/* Control requests: "switches", "switch.local", "topology", "flows", and,
 * built with -Dbench_hooks=true only, "switch.bench" (switch_service lists
 * them). -ENOENT (no error) for a command that is not the controller's. */
struct ctl_client;
struct ctl_request;
int sw_handle_request(struct swc *c, struct ctl_client *client, const struct ctl_request *req,
                      json_t **ret_result, char **ret_error);

struct service;
/* The controller as a service of the agent (service.c). */
extern const struct service switch_service;
