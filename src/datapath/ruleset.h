/* The desired nftables table, computed from the configuration.
 *
 * A ruleset is a small model (named counters and chains with their rules) so
 * that applying it can tell which objects of the running table are stale, and
 * rendering it to nft's language is a pure function with golden tests. */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include "datapath.h"

#define DP_MAX_OBJECTS 16
#define DP_MAX_RULES   32

struct dp_chain {
	const char *name;
	const char *type;     /* "filter" (NULL) or "nat" */
	const char *hook;     /* "forward", "input"...; NULL for a regular chain */
	const char *priority; /* "filter" (NULL), "srcnat", "dstnat" */
	const char *policy;   /* "accept" or "drop" for a base chain */
	size_t n_rules;
	char *rules[DP_MAX_RULES];
};

struct dp_ruleset {
	size_t n_counters;
	const char *counters[DP_MAX_OBJECTS];
	size_t n_chains;
	struct dp_chain chains[DP_MAX_OBJECTS];
	/* The `netdev ettm` table's ingress chain on the uplink: frames
	 * forwarded to another AEE before the IP stack sees them. Empty: no
	 * such table. */
	struct dp_chain ingress;
	char ingress_device[IF_NAMESIZE];
	/* The same table's chain on DP_DEVICE_PEER: what the AEE routes to
	 * unmanaged devices goes back out of the uplink. Empty: none. */
	struct dp_chain devices;
};

/* Computes the ruleset for @cfg and @nat (NULL: no NAT) into @ret_rs.
 * Returns 0, -ENOSPC (too many rules) or -ENOMEM. Free with
 * dp_ruleset_free(). */
int dp_ruleset_build(const struct dp_config *cfg, const struct dp_nat *nat,
                     struct dp_ruleset *ret_rs);

/* The same, for the devices' manager (@devices NULL or not enabled: as
 * dp_ruleset_build()). */
int dp_ruleset_build_devices(const struct dp_config *cfg, const struct dp_nat *nat,
                             const struct dp_devices *devices, struct dp_ruleset *ret_rs);

void dp_ruleset_free(struct dp_ruleset *rs);

/* Writes @rs as one `table inet ettm { ... }` block in nft's language. */
void dp_ruleset_render(const struct dp_ruleset *rs, FILE *out);

/* Renders @rs into a newly allocated string; returns 0 or -ENOMEM. */
int dp_ruleset_render_string(const struct dp_ruleset *rs, char **ret_text);

/* True when @rs has a counter (@kind "counter") or chain (@kind "chain") named
 * @name. */
bool dp_ruleset_has(const struct dp_ruleset *rs, const char *kind, const char *name);

/* Builds the one nft transaction that turns the running table into @rs:
 * create the table if missing, flush its rules (named counters keep their
 * values), delete the chains and counters @rs no longer has, and declare
 * @rs. @current_json is `nft -j list table inet ettm` of the running table, or
 * NULL when there is none. Pure: the kernel applies the result atomically, so
 * no packet ever sees a half-built table. Returns 0, -EINVAL when
 * @current_json does not parse, or -ENOMEM. */
int dp_ruleset_transaction(const struct dp_ruleset *rs, const char *current_json, char **ret_text);
