/* Switch control from the edge: every agent holds an OpenFlow connection
 * to every switch; the store's leader is MASTER (generation id = its Raft
 * term) and reconciles each switch's ETTM flows to the desired set computed
 * from the store; the others are SLAVE. The master also runs LLDP to learn
 * switch-to-switch links and where each host's AEE sits, and commits what
 * it learns to the store. Every agent announces its own AEE by LLDP and
 * polls port and flow statistics into soft state. See docs/switch.md. */
#pragma once

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "desired.h"

#define SW_MAX_SWITCHES 16
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
	unsigned fiat_after_ms;     /* default 3000; 0: never recover by fiat */
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

/* Starts the controller: connections to every switch, LLDP, statistics.
 * Returns 0 or a negative errno with @error. */
int sw_open(uv_loop_t *loop, const struct sw_options *o, const struct sw_self *self,
            struct store *store, struct swc **ret, char *error, size_t error_size);
void sw_close(struct swc *c);

/* The failure detector's view, for `ettmctl cluster`: {state, reason}. */
json_t *sw_failure_detector(struct swc *c);

/* Control requests: "switches", "switch.local", "topology", "flows",
 * "hosts.list", "hosts.admit", "hosts.revoke". -ENOENT (no error) for a
 * command that is not the controller's. */
struct ctl_client;
struct ctl_request;
int sw_handle_request(struct swc *c, struct ctl_client *client, const struct ctl_request *req,
                      json_t **ret_result, char **ret_error);
