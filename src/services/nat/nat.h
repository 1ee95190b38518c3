/* Distributed NAT (docs/nat.md): the store hands each admitted host aligned
 * blocks of public ports; each AEE translates its own guest's flows into its
 * blocks (nftables); the switches steer inbound packets to the owner by
 * block, and what no flow matches goes to any live AEE (a select group),
 * which forwards it to the owner. The master answers ARP for the public
 * addresses and resolves the ISP gateway once for everyone.
 *
 * The pure parts (blocks, the datapath's view, the switches' flows, ARP
 * frames) take the store's state and are tested without root; the service
 * on the agent's loop is nat.c and the files it is split into, listed in the
 * private nat-internal.h. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "datapath/datapath.h"
#include "store/tables.h"
#include "services/nat/tables.h"
#include "switch/switch.h"

#define NAT_PUBLIC_MAX SW_MAX_UPLINKS
#define NAT_GROUP_ID   0xe77d0001u /* + uplink: the select group of live AEEs */

/* Priorities of NAT's flows in table 1 (above forwarding, 2000-2100). */
#define NAT_PRIO_ARP_GW  2410 /* the gateway's ARP for a public address: answered */
#define NAT_PRIO_ARP     2400 /* ARP for public addresses, to the master */
#define NAT_PRIO_MAPPING 2350 /* one inbound mapping */
#define NAT_PRIO_BLOCK   2300 /* a port block to its owner */
#define NAT_PRIO_OUT     2200 /* from a public address: to the uplink */
#define NAT_PRIO_ANY_AEE 2150 /* inbound, unmatched: to any live AEE */

/* Ports a guest application may expose by listening on them: ranges the
 * admin writes in one configuration line (nat.expose), not a size the
 * network sets; each entry may span any number of ports, and the
 * configuration's reader refuses a 17th naming this limit. */
#define NAT_EXPOSE_MAX 16
struct nat_expose {
	uint8_t proto; /* 6 or 17 */
	uint16_t lo, hi;
};

/* Which inbound UDP packets reach a mapping the guest made by sending
 * (RFC 4787 section 5, REQ-8), as each host's configuration chooses
 * (nat.filtering). TCP is always address-and-port-dependent (conntrack). */
enum nat_filtering {
	NAT_FILTER_ADDRESS,      /* from an address the mapping has sent to (the default) */
	NAT_FILTER_ENDPOINT,     /* from anywhere: endpoint-independent */
	NAT_FILTER_ADDRESS_PORT, /* from an address and port it has sent to */
};

#define NAT_FILTER_MAX (NAT_FILTER_ADDRESS_PORT + 1)

/* "address-dependent", "endpoint-independent", "address-and-port-dependent".
 * Inline: the configuration's reader (options.c) links none of the service. */
static inline const char *nat_filtering_name(enum nat_filtering f)
{
	switch (f) {
	case NAT_FILTER_ADDRESS:
		return "address-dependent";
	case NAT_FILTER_ENDPOINT:
		return "endpoint-independent";
	case NAT_FILTER_ADDRESS_PORT:
		return "address-and-port-dependent";
	}
	return "unknown";
}
/* The filtering named @s (as nat_filtering_name() says it): 0, or -EINVAL. */
int nat_filtering_parse(const char *s, enum nat_filtering *ret);

struct nat_options {
	struct in_addr publics[NAT_PUBLIC_MAX]; /* one per switch.uplinks entry */
	unsigned n_publics;
	struct in_addr gateways[NAT_PUBLIC_MAX];  /* the ISP gateway on each uplink */
	unsigned n_gateways;                      /* 1: the same on every uplink */
	unsigned block_size;                      /* ports per block, a power of two */
	unsigned first_port;                      /* blocks start here */
	unsigned reclaim_after_ms;                /* a departed host's blocks return after this */
	struct nat_expose expose[NAT_EXPOSE_MAX]; /* default: none */
	unsigned n_expose;
	enum nat_filtering filtering;
};

/* True when @o lets a guest listening on @port/@proto be reached. */
bool nat_may_expose(const struct nat_options *o, uint8_t proto, uint16_t port);

void nat_options_default(struct nat_options *o);
static inline bool nat_enabled(const struct nat_options *o)
{
	return o->n_publics > 0;
}
struct in_addr nat_gateway(const struct nat_options *o, unsigned uplink);

/* The MAC the organisation shows the ISP for a public address (locally
 * administered, derived from the address), and the MAC every AEE uses for
 * the gateway (the switch replaces it with the gateway's real one). */
void nat_public_mac(struct in_addr addr, uint8_t mac[6]);
extern const uint8_t nat_gateway_mac[6];

/* ---- blocks.c: pure ---- */

/* The lowest free aligned block of @o->block_size ports at or above
 * @o->first_port: 0 and its start in *ret_start, or -ENOSPC. */
int nat_block_pick(const struct store_state *st, const struct nat_options *o, uint16_t *ret_start);
/* Up to @want distinct free blocks, lowest first, into @ret_starts; returns
 * how many (0: none is free). */
size_t nat_blocks_pick(const struct store_state *st, const struct nat_options *o,
                       uint16_t *ret_starts, size_t want);
/* How many more blocks a host holding @held blocks of @block_size ports
 * should claim when @in_use of them are used and @ahead more are expected
 * before new blocks can be applied (the use's growth rate times that
 * time): enough that @in_use + @ahead stays under 3/4 of its ports; at
 * least one when it holds none. */
size_t nat_blocks_wanted(size_t held, unsigned block_size, unsigned long in_use,
                         unsigned long ahead);
/* How many blocks member @owner holds. */
size_t nat_blocks_of(const struct store_state *st, uint64_t owner);
/* The member that holds public port @port, or 0. */
uint64_t nat_port_owner(const struct store_state *st, uint16_t port);
/* The AEE MAC of member @id, when it is admitted and located. */
bool nat_member_mac(const struct store_state *st, uint64_t id, uint8_t mac[6]);
/* Which uplink host @id leaves by: spread by id over the uplinks that are
 * up (@up; NULL: all). */
unsigned nat_uplink_for(uint64_t id, const bool *up, unsigned n);

/* Member @owner's mapping of @proto to its guest's @guest_port, if any. */
const struct nat_mapping *nat_mapping_of(const struct store_state *st, uint64_t owner,
                                         uint8_t proto, uint16_t guest_port);
/* The public port for a mapping of @proto to member @self's guest port
 * @guest_port: the one it has already; else @suggested when free (not
 * mapped, in no other member's block); else a free port of its own blocks.
 * Returns 0, 1 when @suggested was not free and another port was chosen,
 * or -ENOSPC. */
int nat_mapping_port(const struct store_state *st, uint64_t self, uint8_t proto,
                     uint16_t guest_port, uint16_t suggested, uint16_t *ret_port);

/* A guest's request for a mapping (NAT-PMP, PCP) while it is decided. Two
 * guests may choose the same free port at once, each on a replica that has
 * not applied the other's mapping yet: the store commits the first and
 * refuses the second, whose host then chooses again on its replica, which
 * by then holds the winner's mapping (a refusal is reported once this
 * replica has applied everything up to it). */
#define NAT_MAP_TRIES 8 /* proposals of one request the store may refuse */
struct nat_map_ask {
	uint8_t proto; /* 6 or 17 */
	uint16_t guest_port;
	uint16_t suggested;  /* 0: none */
	bool prefer_failure; /* PCP PREFER_FAILURE: the suggested port or nothing */
	unsigned refused;    /* this request's proposals the store refused so far */
};

/* The public port to propose next for @a, member @self's request, on
 * @st: nat_mapping_port()'s choice. Returns 0 and the port in *ret_port;
 * -EEXIST when the suggested port is taken and @a->prefer_failure;
 * -EPERM when the guest's port has the admin's mapping (not the guest's
 * to change); -ENOSPC when no port is free; -EAGAIN when the store has
 * refused NAT_MAP_TRIES proposals of this request already. */
int nat_map_next(const struct store_state *st, uint64_t self, const struct nat_map_ask *a,
                 uint16_t *ret_port);

/* NAT's view of the datapath: what the AEE translates and forwards.
 * Addresses in network byte order. Its blocks and mappings are growable
 * arrays (lib/array.h), as many as the store holds. */

struct nat_view_block {
	uint16_t start, size;
	uint8_t mac[6]; /* the owner's AEE (others' blocks) */
};

struct nat_view_mapping {
	uint8_t proto; /* 6 or 17 */
	uint16_t public_port;
	uint16_t guest_port; /* own mappings */
	uint8_t mac[6];      /* the owner's AEE (others' mappings) */
};

/* Where inbound IP fragments for the public addresses are put together
 * (docs/nat.md, "Fragments"): later fragments carry no port, so no switch
 * flow can place them. Every AEE passes every fragment to one AEE, the
 * reassembler: the admitted, located member with the lowest id among those
 * that hold a block, which every replica computes alike. It reassembles,
 * and sends what is another host's on to that host, fragmented again. */
struct nat_view_fragments {
	bool known;     /* a reassembler exists */
	bool self;      /* this host is it */
	uint8_t mac[6]; /* its AEE */
};

struct nat_view {
	bool enabled;
	enum nat_filtering filtering;
	struct in_addr public_addr; /* where this host's own flows leave */
	struct in_addr publics[NAT_PUBLIC_MAX];
	unsigned n_publics;
	struct in_addr gateway;
	uint8_t gateway_mac[6]; /* the switch's stand-in for the ISP gateway */
	uint8_t own_mac[6];     /* this AEE's uplink */
	unsigned n_own, n_others;
	size_t cap_own, cap_others;
	struct nat_view_block *own, *others;
	unsigned n_own_maps, n_other_maps;
	size_t cap_own_maps, cap_other_maps;
	struct nat_view_mapping *own_maps, *other_maps;
	struct nat_view_fragments fragments;
};

/* What the AEE of member @self translates and forwards, into @ret (its
 * old contents ignored; free with nat_view_free(), whatever the result).
 * @own_mac is its uplink's MAC; @uplink the index of the public address
 * its flows leave by. @st NULL: before the store is known (no blocks:
 * nothing leaves). Returns 0 or -ENOMEM. */
int nat_datapath(const struct store_state *st, const struct nat_options *o, uint64_t self,
                 const uint8_t own_mac[6], unsigned uplink, struct nat_view *ret);

/* Frees @v's blocks and mappings; NULL-accepting; leaves @v with none. */
void nat_view_free(struct nat_view *v);

/* ---- ruleset.c: pure ---- */

struct dp_fragment;

/* NAT's fragment of the datapath for @nat (nothing when not enabled) into
 * @out: with blocks, the chain nat_out (postrouting, srcnat); with own
 * mappings, nat_in (prerouting, dstnat); others' blocks and mappings
 * steered at DP_INGRESS; without a block, a guard against anything leaving
 * for outside; the gateway route and the conntrack UDP timers. Returns 0
 * or a negative errno. */
int nat_ruleset_build(const struct dp_config *cfg, const struct nat_view *nat,
                      struct dp_fragment *out);

/* A datapath source (dp_build_fn) for the agent's start, before NAT is
 * open: @userdata's struct nat_view (nat_datapath() with no store),
 * holding the table from before a restart as it is. nat_open() replaces it
 * with the service's own source, which holds until the store has caught
 * up. */
int nat_fragment_held(void *userdata, const struct dp_config *cfg, struct dp_fragment *out);

/* The name of NAT's datapath source. */
#define NAT_DP_SOURCE "nat"

/* ---- flows.c: pure ---- */

/* NAT's flows and group for switch @dpid (a struct sw_service flows
 * function's body). @gw_macs: the gateways' MACs as the master resolved
 * them (NULL entries: not yet). */
int nat_flows(const struct store_state *st, const struct nat_options *o,
              const struct sw_port_ref *uplinks, size_t n_uplinks, const uint8_t (*gw_macs)[6],
              const bool *gw_known, uint64_t dpid, struct sw_flows *out, struct sw_groups *groups);

/* 1 when switch @dpid holds every flow that steers block @b to its owner
 * (as nat_flows() makes them: TCP and UDP, each public address), 0 when
 * one is missing from @installed, a negative errno when @dpid has no way
 * to the owner (-ENOENT) or out of memory. */
int nat_block_steered(const struct store_state *st, const struct nat_options *o, uint64_t dpid,
                      const struct nat_block *b, const struct sw_flows *installed);
/* The switches a packet crosses from switch @from to switch @to, both
 * included, over the links of @st, into @path (at most @max); how many, or
 * 0 when @to cannot be reached in @max. */
size_t nat_steer_path(const struct store_state *st, uint64_t from, uint64_t to, uint64_t *path,
                      size_t max);

/* ---- arp.c: pure ---- */

#define ARP_FRAME_LEN 42

struct arp_msg {
	uint16_t op; /* 1 request, 2 reply */
	uint8_t eth_src[6], eth_dst[6];
	uint8_t sha[6], tha[6];
	struct in_addr spa, tpa;
};

/* Parses an Ethernet/IPv4 ARP frame; -EBADMSG names nothing (callers only
 * look at ARP they asked for). */
int arp_parse(const uint8_t *frame, size_t len, struct arp_msg *ret);
/* Writes @m as a 42-byte frame into @frame; returns its length. */
size_t arp_build(const struct arp_msg *m, uint8_t frame[ARP_FRAME_LEN]);

/* ---- the service: nat.c (open, close), requests.c (control requests) ---- */

struct nat;
struct store;
struct swc;
struct datapath;

/* Starts NAT for member @self (@name) with its datapath and switches;
 * @guest_netns (NULL: none) is where the guest's listeners are read for
 * automatic mappings, and where the guest's ephemeral ports are kept inside
 * this host's blocks (guest_set_local_ports()). The
 * datapath's ruleset is NAT's to set once the store has caught up (a
 * barrier); until then a restarted agent leaves the kernel's rules as they
 * were. Returns 0 or a negative errno. */
int nat_open(uv_loop_t *loop, const struct nat_options *o, uint64_t self, const char *name,
             struct store *store, struct swc *switches, struct datapath *dp,
             const char *guest_netns, struct nat **ret);
/* Stops NAT; frees @n and calls @done(@arg) (may be NULL) once its last
 * handle is closed. */
void nat_close(struct nat *n, void (*done)(void *arg), void *arg);

/* NAT's part in the switches (its flows and group, ARP packet-ins as
 * master), called with the struct nat of nat_open(). */
extern const struct sw_service nat_sw;

/* Control requests "nat", "nat.expose", "nat.unexpose"; -ENOENT (no
 * error) for others. */
struct ctl_client;
struct ctl_request;
int nat_handle_request(struct nat *n, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error);

struct service;
/* NAT as a service of the agent (service.c). */
extern const struct service nat_service;
