/* The NAT service's tables in the store: the blocks of public ports each
 * member holds, and the port mappings guests asked for. Registered with
 * store_tables_register(nat_tables). */
#pragma once

#include <stdint.h>

#include "store/tables.h"

/* Table ids: on the wire, never renumbered. */
#define NAT_BLOCKS   6
#define NAT_MAPPINGS 7

struct nat_block {
	uint16_t start; /* key; aligned to size */
	uint16_t size;  /* a power of two */
	uint64_t owner; /* member id */
	uint64_t claimed_ms;
};

struct nat_mapping {
	uint8_t proto;        /* key (with public_port): 6 TCP, 17 UDP */
	uint16_t public_port; /* key */
	uint64_t owner;
	uint32_t guest_addr; /* host byte order */
	uint16_t guest_port;
	uint64_t expires_ms;
};

/* NULL-terminated, for store_tables_register(). */
extern const struct store_table *const nat_tables[];
