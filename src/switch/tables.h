/* The switch controller's tables in the store: the topology the master
 * learns by LLDP, so that the next master starts from it. Registered with
 * store_tables_register(switch_tables). */
#pragma once

#include <stdint.h>

#include "store/tables.h"

/* Table ids: on the wire, never renumbered. Both since encoding 2. */
#define SWITCH_LOCATIONS 10 /* where each host's AEE meets the network */
#define SWITCH_LINKS     11 /* switch-to-switch links */

/* Where a host's AEE sits, as its LLDP announcement told the master. Learned,
 * not configured: the master commits a row when it first sees the host or
 * the host moves, so the next master starts from the same topology. */
struct switch_location {
	char host[STORE_NAME_MAX]; /* key */
	char mac[STORE_MAC_MAX];   /* the AEE's uplink address */
	uint64_t dpid;
	uint32_t port;
	uint32_t control_addr, guest_addr; /* host byte order */
	uint64_t seen_ms;                  /* when this place was first seen */
};

/* One direction of a switch-to-switch link, learned by LLDP; the master
 * deletes it when it has not been seen for a while. */
struct switch_link {
	uint64_t dpid; /* key, with port */
	uint32_t port;
	uint64_t peer_dpid;
	uint32_t peer_port;
	uint64_t seen_ms;
};

/* NULL-terminated, for store_tables_register(). */
extern const struct store_table *const switch_tables[];

const struct switch_location *switch_location_find(const struct store_state *s, const char *host);
