/* The unmanaged devices' tables in the store: the devices allowed by policy
 * and the member that forwards for them (docs/devices.md). Registered with
 * store_tables_register(devices_tables). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "store/tables.h"

/* Table ids: on the wire, never renumbered. Both since encoding 3. */
#define DEVICES_DEVICES 13 /* unmanaged devices allowed by policy */
#define DEVICES_MANAGER 14 /* one row: the agent that forwards for the devices */

/* An unmanaged device (printer, phone, visitor) allowed by policy, never by
 * trust (docs/devices.md). The row's existence is the allowance; where it
 * sits and its IPv4 address are learned by the master from its frames. */
struct devices_device {
	char mac[STORE_MAC_MAX]; /* key; lowercase "xx:xx:xx:xx:xx:xx", unicast */
	char name[STORE_NAME_MAX];
	uint32_t address; /* host byte order; 0: not known yet */
	uint64_t dpid;    /* where it was last seen; 0: not yet */
	uint32_t port;
	uint64_t allowed_ms; /* when it was allowed */
};

/* The member whose AEE forwards every device's traffic, kept by the
 * leader at an admitted, located, reachable member. */
struct devices_manager {
	char host[STORE_NAME_MAX]; /* "": none */
	uint64_t since_ms;
};

/* NULL-terminated, for store_tables_register(). */
extern const struct store_table *const devices_tables[];

const struct devices_device *devices_device_find(const struct store_state *s, const char *mac);
const struct devices_manager *devices_manager(const struct store_state *s);

/* True when @mac is a device key: lowercase "xx:xx:xx:xx:xx:xx", neither
 * multicast nor all zero. */
bool devices_device_mac_valid(const char *mac);
/* True when @name is 1-31 letters, digits, '.', '_' or '-'. */
bool devices_device_name_valid(const char *name);
