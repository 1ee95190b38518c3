/* Private to src/services/nat (include it only there): the NAT service's
 * state on the agent's loop, shared by the files that split the service by
 * concern:
 *   nat.c         the frame: open and close, the timers, the store's
 *                 subscriptions, the datapath source, the uplink in use
 *   claim.c       claiming this host's port blocks, reclaiming a departed
 *                 host's blocks and mappings (the leader)
 *   usage.c       conntrack accounting: flows using this host's ports
 *   inbound.c     inbound mappings: automatic ones from the guest's
 *                 listeners, and the expiry of requested ones
 *   pmp-server.c  NAT-PMP and PCP for the guest (pmp.c is the codec)
 *   switches.c    NAT's part in the switches: its flows, the master's ARP
 *                 for the public addresses, the gateways' MACs
 *   steered.c     which of this host's blocks the switches steer to it
 *                 already, and so are in use
 *   requests.c    the control requests nat, nat.expose, nat.unexpose
 * The public API stays in nat.h. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <uv.h>

#include "guest/guest.h"
#include "services/nat/nat.h"
#include "store/store.h"

#define NAT_TABLES_WATCH 5 /* the store tables the service follows */
/* A block not seen steered is in use anyway this long after its claim. */
#define NAT_STEER_WAIT_MS 2000

/* A departed member whose blocks or mappings the leader will give back. */
struct nat_orphan {
	uint64_t owner;
	uint64_t since_ms; /* when the leader first saw its blocks unowned */
};

/* A guest listener this agent mapped automatically. */
struct nat_auto {
	uint8_t proto;
	uint16_t port;
};

struct nat {
	uv_loop_t *loop;
	struct nat_options o;
	uint64_t self;
	char name[STORE_NAME_MAX];
	struct store *store;
	struct swc *sw;
	struct datapath *dp;
	uv_timer_t tick, soon, watch;
	unsigned uplink;       /* the public address this host's flows leave by */
	unsigned claiming;     /* block claims under way */
	bool exhausted;        /* no block was free at the last try (said once) */
	bool synced;           /* the store has caught up since the start */
	bool syncing;          /* a barrier is under way */
	long in_use;           /* translated flows in this host's blocks; -1 unknown */
	unsigned long watched; /* the conntrack table's size at the watch's last count */
	uint64_t counted_ms;   /* uv_now() of the last count of in_use */
	bool growing;          /* in_use grew at the last count */
	struct store_subscription *subs[NAT_TABLES_WATCH];
	/* What the master learnt of the gateways. */
	uint8_t gw_mac[NAT_PUBLIC_MAX][6];
	bool gw_known[NAT_PUBLIC_MAX];
	uint64_t gw_asked_ms[NAT_PUBLIC_MAX];
	struct nat_orphan *orphans; /* growable (lib/array.h) */
	size_t n_orphans, cap_orphans;
	bool reclaiming;
	/* NAT-PMP and PCP on the control address, for the guest. */
	uv_udp_t pmp;
	bool pmp_open;
	uint64_t started_ms;
	bool expiring; /* a lapsed mapping's deletion is under way */
	/* Automatic mappings: the guest's listeners this agent mapped. */
	struct guest *guest;
	struct nat_auto *autos; /* growable (lib/array.h) */
	size_t n_autos, cap_autos;
	bool auto_busy; /* a change is under way */
	bool guest_failed;
	/* The guest's ephemeral ports, kept inside this host's blocks. */
	char *guest_netns;
	struct guest_port_block *ports; /* n_ports of them, as last set */
	size_t n_ports;
	bool ports_failed;
	/* This host's blocks the switches steer to it (steered.c): the
	 * starts of those in use, and the timer that asks while one waits. */
	uint16_t *steered; /* growable (lib/array.h) */
	size_t n_steered, cap_steered;
	uv_timer_t steer_poll;
	int open_handles;
	void (*closed)(void *arg); /* nat_close()'s completion */
	void *closed_arg;
};

static inline const struct store_state *nat_state(struct nat *n)
{
	return store_state(n->store);
}

/* "tcp" or "udp" for IP protocol @proto (6 or 17). */
static inline const char *nat_proto_name(uint8_t proto)
{
	return proto == 6 ? "tcp" : "udp";
}

/* ---- claim.c ---- */

/* Claims more blocks when this host holds none or uses more than 3/4 of
 * its ports, counting what its use grew by since the last count
 * (nat_blocks_wanted()), once the store has caught up and the host is
 * admitted. */
void nat_claim_check(struct nat *n);
/* Whether a conntrack table of @total entries (dp_conntrack_total(), an
 * upper bound of this host's use) calls for nat_claim_check() now. */
bool nat_claim_soon(struct nat *n, unsigned long total);
/* The leader gives back, one at a time, the blocks and mappings of members
 * gone for longer than the grace period. */
void nat_claim_reclaim(struct nat *n);

/* ---- usage.c ---- */

/* Translated flows using this host's public ports; -1 when the kernel does
 * not show its table. */
long nat_usage_count(struct nat *n);

/* ---- inbound.c ---- */

/* Proposes @op (STORE_PUT, STORE_DELETE) of mapping @m to the store, @cb
 * called with @userdata once it is decided (store_propose()). */
int nat_inbound_propose(struct nat *n, enum store_op op, const struct nat_mapping *m,
                        store_done_cb cb, void *userdata);
/* Deletes one of this host's requested mappings whose lifetime is over. */
void nat_inbound_expire(struct nat *n);
/* One change to the automatic mappings: map or renew a guest listener that
 * policy lets be reached, or unmap one that closed. */
void nat_inbound_auto(struct nat *n);

/* ---- pmp-server.c ---- */

/* Opens the NAT-PMP/PCP socket on the control address (n->pmp; n->pmp_open
 * once it needs closing). Returns 0 or a negative errno (libuv's). */
int nat_pmp_server_open(struct nat *n);

/* ---- nat.c ---- */

/* The datapath and the guest's ephemeral ports, again from the store. */
void nat_datapath_update(struct nat *n);

/* ---- steered.c ---- */

/* Puts to use this host's blocks that every switch from the uplink to its
 * AEE steers to it now, as last known (sw_installed()), or that were
 * claimed NAT_STEER_WAIT_MS ago. While one waits, a timer asks the
 * switches on the way for their flows every 10 ms (@ask: now too), and
 * updates the datapath when one is put to use. True when a block was put
 * to use (the caller updates the datapath). */
bool nat_steered_check(struct nat *n, bool ask);
/* Drops from @d's own blocks those not in use yet. */
void nat_steered_filter(const struct nat *n, struct nat_view *d);

/* ---- switches.c ---- */

/* The master asks each uplink's gateway for its MAC, again every 30 s. */
void nat_switches_resolve(struct nat *n);
