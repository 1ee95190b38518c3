/* Private to src/datapath: the code that talks to nftables (nft.c) and to
 * rtnetlink and /proc/sys (link.c). Nothing outside src/datapath includes
 * this header; services ask through fragments (fragment.h). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "fragment.h"
#include "ruleset.h"

/* ---- nft.c: applying rulesets and reading counters through libnftables,
 * in the network namespace the calling process is in ---- */

struct dp_nft;

/* Returns 0 and a new handle in *ret_nft, or -ENOMEM. */
int dp_nft_new(struct dp_nft **ret_nft);

/* NULL-accepting. */
void dp_nft_free(struct dp_nft *nft);

/* Makes the running `inet ettm` table equal to @rs in one atomic transaction
 * (only what differs from the last apply, when that is known).
 * On failure returns a negative errno and, if @ret_error is not NULL, nft's
 * message in a newly allocated *ret_error; the running table is unchanged. */
int dp_nft_apply(struct dp_nft *nft, const struct dp_ruleset *rs, char **ret_error);

/* The namespace's nftables generation (every committed transaction counts
 * one, whoever made it) into *@ret; returns 0 or a negative errno. */
int dp_nft_genid(uint32_t *ret);

/* The generation after the agent's own last transaction: its table's, or
 * its steering rules' (queue.c). */
extern uint32_t dp_own_genid;

/* Forgets what the last apply left: the next replaces the whole table, so
 * that whatever changed it since (an admin's hand) is undone. */
void dp_nft_forget(struct dp_nft *nft);

/* Reads the table's named counters into @ret (indexed by enum dp_counter_id).
 * Returns 0, -ENOENT when the table is missing, or another negative errno. */
int dp_nft_read_counters(struct dp_nft *nft, struct dp_counter ret[DP_COUNTER_MAX]);

/* ---- link.c: kernel forwarding between the guest link and the uplink ----
 *
 * The guest keeps its /16 and believes its peers are on-link; the AEE
 * answers ARP for them by proxy on the guest link, and for its guest on the
 * uplink, and routes between the two (DESIGN.md, "One host"). Each call
 * returns 0, or a negative errno and a newly allocated message in
 * *ret_error (if not NULL). */

/* Brings both links up, puts the control address on the uplink, routes the
 * guest's address to the guest link, with @gw set routes the rest through
 * it, and turns on IPv4 forwarding and immediate proxy ARP on both links.
 * Idempotent: running it again on a set-up AEE changes nothing and cuts no
 * connection. */
int dp_link_setup(const struct dp_config *cfg, const struct dp_gateway *gw, char **ret_error);

/* Makes @link (fragment.h) so: present, the veth pair with its hosts' routes
 * and neighbour entries, and no longer those of @old (what the last call for
 * this link set up; NULL: nothing); not present, the pair removed.
 * Idempotent. */
int dp_link_veth(const struct dp_link *old, const struct dp_link *link, char **ret_error);

/* Writes each of @s[0..@n) under /proc/sys/. */
int dp_link_sysctls(const struct dp_sysctl *s, size_t n, char **ret_error);
