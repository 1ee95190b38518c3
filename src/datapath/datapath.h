/* The AEE's datapath: the kernel forwards between the guest link and the
 * uplink, and one nftables table owned by ettmd filters and counts.
 *
 * The datapath knows no service: services hand it fragments (fragment.h)
 * through named sources, and it composes them with its own base chains into
 * one atomic nftables transaction and the link operations they ask for.
 * Composing (ruleset.c) is a pure function, tested without root; applying
 * (nft.c), links (link.c) and conntrack (conntrack.c) are the only code in
 * ETTM that talks to nftables, rtnetlink and ctnetlink. */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
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

struct dp_counter {
	uint64_t packets;
	uint64_t bytes;
};

/* The datapath's own named counters, in the order status reports them. */
enum dp_counter_id {
	DP_COUNTER_GUEST_TX, /* guest → uplink, accepted */
	DP_COUNTER_GUEST_RX, /* uplink → guest, accepted */
	DP_COUNTER_SPOOFED,  /* from the guest with a source not its own, dropped */
	DP_COUNTER_MAX,
};

/* Returns the counter's nftables name ("guest_tx", ...). */
const char *dp_counter_name(enum dp_counter_id id);

struct dp_fragment;
struct dp_link;

/* A source renders its service's fragment into @out (zeroed) from its own
 * state (@userdata) and the datapath's configuration. Returns 0 or a
 * negative errno; either way the datapath frees @out. */
typedef int (*dp_build_fn)(void *userdata, const struct dp_config *cfg, struct dp_fragment *out);

struct dp_source {
	char name[32];
	dp_build_fn build;
	void *userdata;
};

struct dp_nft;

/* The datapath of one AEE: its configuration, its sources, its nftables
 * handle, and what the last reconciliation did. */
struct datapath {
	struct dp_config cfg;
	size_t n_sources, cap_sources;
	struct dp_source *sources;
	struct dp_link *linked; /* the links last set up (their own copies) */
	size_t n_linked;
	char *applied; /* what the kernel was last made to match, or NULL */
	struct dp_nft *nft;
	char *state_dir;
	uint64_t generation; /* rulesets applied that differed from the one before */
	uint64_t digest;     /* FNV-1a of that generation's ruleset text */
	bool ok;
	char *error; /* why the last reconciliation failed, or NULL */
};

/* Prepares @dp for @cfg, keeping its generation under @state_dir. Returns 0 or
 * a negative errno. Touches nothing in the kernel. */
int dp_open(struct datapath *dp, const struct dp_config *cfg, const char *state_dir);

/* Adds the source @name (at most 31 characters), or replaces the build
 * function and state of the source already called @name, keeping its place.
 * Fragments compose in the order their sources were first added (the agent
 * adds them in a fixed order at start-up, before the first
 * reconciliation). Takes effect at the next dp_changed() or dp_reconcile().
 * Returns 0, -ENOMEM or -EINVAL. */
int dp_set_source(struct datapath *dp, const char *name, dp_build_fn build, void *userdata);

/* Removes the source @name, if there; its links are removed at the next
 * reconciliation. */
void dp_remove_source(struct datapath *dp, const char *name);

/* A source's inputs changed: recomposes every fragment and reconciles when
 * the result differs from what was last applied (or the last attempt
 * failed). Returns 0, or a negative errno with dp->error set. */
int dp_changed(struct datapath *dp);

/* Recomposes every fragment and makes the kernel match: links, forwarding,
 * and the table, in one nftables transaction; while a fragment holds and the
 * running table is there, the table is left as it is. Safe to call at any
 * time; established connections survive it. Returns 0, or a negative errno
 * with dp->error set. */
int dp_reconcile(struct datapath *dp);

/* True when a transaction the agent did not make was committed in its
 * namespace since its own last one (an admin's edit by hand, a program's
 * table): dp_reconcile() then makes its tables whole again. */
bool dp_changed_elsewhere(struct datapath *dp);

/* True when the agent's table is still in the kernel. */
bool dp_table_present(struct datapath *dp);

/* Reads the table's counters; see dp_nft_read_counters(). */
int dp_read_counters(struct datapath *dp, struct dp_counter ret[DP_COUNTER_MAX]);

/* NULL-accepting; leaves the kernel as it is (fail-static). */
void dp_close(struct datapath *dp);
