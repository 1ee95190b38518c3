/* The AEE's datapath: the kernel forwards between the guest link and the
 * uplink, and one nftables table owned by ettmd filters and counts.
 *
 * Rendering (ruleset.c) is a pure function of the configuration, tested
 * without root. Applying (nft.c) and link set-up (link.c) are the only code in
 * ETTM that talks to nftables and to rtnetlink. */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#define DP_TABLE_FAMILY "inet"
#define DP_TABLE_NAME   "ettm"

struct dp_config {
	char guest_if[IF_NAMESIZE];  /* AEE side of the guest link, e.g. "g0" */
	char uplink_if[IF_NAMESIZE]; /* AEE link to the switch, e.g. "u0" */
	struct in_addr guest_addr;   /* the guest's one address */
	struct in_addr control_addr; /* the AEE's own address on the uplink */
	uint8_t control_plen;        /* its prefix length */
};

/* NAT (docs/nat.md): what the AEE translates and forwards, computed from
 * the store by the NAT service. Addresses in network byte order. */
#define DP_NAT_PUBLIC_MAX   8
#define DP_NAT_BLOCKS_MAX   64
#define DP_NAT_MAPPINGS_MAX 64

struct dp_nat_block {
	uint16_t start, size;
	uint8_t mac[6]; /* the owner's AEE (others' blocks) */
};

struct dp_nat_mapping {
	uint8_t proto; /* 6 or 17 */
	uint16_t public_port;
	uint16_t guest_port; /* own mappings */
	uint8_t mac[6];      /* the owner's AEE (others' mappings) */
};

struct dp_nat {
	bool enabled;
	struct in_addr public_addr; /* where this host's own flows leave */
	struct in_addr publics[DP_NAT_PUBLIC_MAX];
	unsigned n_publics;
	struct in_addr gateway;
	uint8_t gateway_mac[6]; /* the switch's stand-in for the ISP gateway */
	uint8_t own_mac[6];     /* this AEE's uplink */
	unsigned n_own, n_others;
	struct dp_nat_block own[DP_NAT_BLOCKS_MAX], others[DP_NAT_BLOCKS_MAX];
	unsigned n_own_maps, n_other_maps;
	struct dp_nat_mapping own_maps[DP_NAT_MAPPINGS_MAX], other_maps[DP_NAT_MAPPINGS_MAX];
};

/* Unmanaged devices (docs/devices.md): on the agent chosen as their manager,
 * frames from the devices' MACs leave the uplink for a veth pair, enter the
 * IP stack on its far side (DP_DEVICE_IF, wearing the uplink's MAC) and are
 * forwarded under the guest's rules; what is routed to a device goes back
 * out of the uplink. Addresses in network byte order. */
#define DP_DEVICES_MAX 32
#define DP_DEVICE_IF   "dv1" /* the devices' side of the IP stack */
#define DP_DEVICE_PEER "dv0" /* its peer: frames to and from the uplink */

struct dp_device {
	uint8_t mac[6];
	struct in_addr addr; /* 0.0.0.0: not known yet */
};

struct dp_devices {
	bool enabled;       /* this AEE is the devices' manager */
	uint8_t own_mac[6]; /* the uplink's */
	unsigned n;
	struct dp_device v[DP_DEVICES_MAX];
};

struct dp_counter {
	uint64_t packets;
	uint64_t bytes;
};

/* The named counters of the table, in the order status reports them. */
enum dp_counter_id {
	DP_COUNTER_GUEST_TX, /* guest → uplink, accepted */
	DP_COUNTER_GUEST_RX, /* uplink → guest, accepted */
	DP_COUNTER_SPOOFED,  /* from the guest with a source not its own, dropped */
	DP_COUNTER_MAX,
};

/* Returns the counter's nftables name ("guest_tx", ...). */
const char *dp_counter_name(enum dp_counter_id id);

struct dp_nft;

/* The datapath of one AEE: its configuration, its nftables handle, and what
 * the last reconciliation did. */
struct datapath {
	struct dp_config cfg;
	struct dp_nat nat;                /* set with dp_set_nat() */
	struct dp_devices devices;        /* set with dp_set_devices() */
	struct dp_devices devices_linked; /* what the links were last set up for */
	/* Links only, while the table from before a restart stays as it was:
	 * NAT holds it until the store has caught up (cleared by dp_set_nat). */
	bool hold_ruleset;
	struct dp_nft *nft;
	char *state_dir;
	uint64_t generation; /* rulesets applied that differed from the one before */
	bool ok;
	char *error; /* why the last reconciliation failed, or NULL */
};

/* Prepares @dp for @cfg, keeping its generation under @state_dir. Returns 0 or
 * a negative errno. Touches nothing in the kernel. */
int dp_open(struct datapath *dp, const struct dp_config *cfg, const char *state_dir);

/* Makes the kernel match the configuration: links, forwarding, and the
 * table, in one nftables transaction. Safe to call at any time; established
 * connections survive it. Returns 0, or a negative errno with dp->error set. */
int dp_reconcile(struct datapath *dp);

/* Sets what NAT wants and reconciles when it changed. */
int dp_set_nat(struct datapath *dp, const struct dp_nat *nat);

/* Sets which devices this AEE forwards for (none: @devices->enabled false)
 * and reconciles when it changed. */
int dp_set_devices(struct datapath *dp, const struct dp_devices *devices);

/* True when the agent's table is still in the kernel. */
bool dp_table_present(struct datapath *dp);

/* Reads the table's counters; see dp_nft_read_counters(). */
int dp_read_counters(struct datapath *dp, struct dp_counter ret[DP_COUNTER_MAX]);

/* NULL-accepting; leaves the kernel as it is (fail-static). */
void dp_close(struct datapath *dp);
