/* The desired nftables tables, composed from the datapath's own base chains
 * and its sources' fragments (fragment.h).
 *
 * A ruleset is a small model (named counters, sets and maps, and chains with
 * their rules) so
 * that applying it can tell which objects of the running table are stale, and
 * rendering it to nft's language is a pure function with golden tests. */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include "datapath.h"
#include "fragment.h"

/* Every array is growable (lib/array.h): a ruleset holds as many objects
 * as its fragments do. */
struct dp_ruleset {
	size_t n_counters, cap_counters;
	char (*counters)[DP_NAME_MAX];
	/* The fragments' sets and maps, in the `inet ettm` table. */
	size_t n_sets, cap_sets;
	struct dp_set *sets;
	/* The `inet ettm` table: forward and input first, then the
	 * fragments' own chains. */
	size_t n_chains, cap_chains;
	struct dp_chain *chains;
	/* The `netdev ettm` table: the uplink's ingress chain, then the
	 * fragments' own; a chain without rules is left out, and so is the
	 * table when no chain has any. */
	size_t n_netdev, cap_netdev;
	struct dp_chain *netdev;
};

/* Composes the ruleset for @cfg and the fragments @frags[0..@n) (in that
 * order; a NULL entry is skipped) into @ret_rs, as fragment.h's enum
 * dp_point describes. Returns 0, -EEXIST (two objects of one name), -ENOMEM, or a fragment's own
 * failure (its status). Free with dp_ruleset_free(). */
int dp_ruleset_compose(const struct dp_config *cfg, const struct dp_fragment *const *frags,
                       size_t n, struct dp_ruleset *ret_rs);

void dp_ruleset_free(struct dp_ruleset *rs);

/* Writes @rs as one `table inet ettm { ... }` block in nft's language, and
 * a `table netdev ettm { ... }` block when it has netdev rules. */
void dp_ruleset_render(const struct dp_ruleset *rs, FILE *out);

/* Renders @rs into a newly allocated string; returns 0 or -ENOMEM. */
int dp_ruleset_render_string(const struct dp_ruleset *rs, char **ret_text);

/* True when @rs has a counter (@kind "counter"), inet chain ("chain"),
 * set ("set") or map ("map") named @name. */
bool dp_ruleset_has(const struct dp_ruleset *rs, const char *kind, const char *name);

/* Builds the one nft transaction that turns the running table into @rs:
 * create the table if missing, flush its rules (named counters keep their
 * values, sets and maps their elements), delete the chains, counters, sets
 * and maps @rs no longer has, and declare @rs; the netdev table the same
 * way (its chains), or deleted when @rs has nothing in it. A set or map
 * @rs keeps must keep its declaration: the kernel refuses another for an
 * existing name. @current_json is `nft -j list table inet ettm` of the
 * running table, with the objects of the netdev table's listing added to
 * its array (dp_nft_apply() does), or NULL when there is none. Pure: the
 * kernel applies the result atomically, so no packet ever sees a
 * half-built table. Returns 0, -EINVAL when @current_json does not parse,
 * or -ENOMEM. */
int dp_ruleset_transaction(const struct dp_ruleset *rs, const char *current_json, char **ret_text);

/* Deep-copies @rs into @ret; returns 0 or -ENOMEM. */
int dp_ruleset_copy(const struct dp_ruleset *rs, struct dp_ruleset *ret);

/* Builds the nft transaction that turns the running table, known to be
 * @from (the last ruleset applied), into @to, touching only what differs:
 * it flushes the chains that changed or went and declares them again (a
 * base chain keeps its hook registered, so packets queued to the agent
 * stay queued), deletes what @to no longer has and declares what it adds.
 * What did not change costs libnftables and the kernel nothing. Pure.
 * Returns 0, -ENOMEM, or -ESTALE when a set or map that both have differs
 * (the kernel takes no other declaration for an existing name: only
 * dp_ruleset_transaction() from a listing can say so). */
int dp_ruleset_delta(const struct dp_ruleset *from, const struct dp_ruleset *to, char **ret_text);
