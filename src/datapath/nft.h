/* Applying rulesets and reading counters through libnftables, in the
 * network namespace the calling process is in. */
#pragma once

#include "ruleset.h"

struct dp_nft;

/* Returns 0 and a new handle in *ret_nft, or -ENOMEM. */
int dp_nft_new(struct dp_nft **ret_nft);

/* NULL-accepting. */
void dp_nft_free(struct dp_nft *nft);

/* Makes the running `inet ettm` table equal to @rs in one atomic transaction.
 * On failure returns a negative errno and, if @ret_error is not NULL, nft's
 * message in a newly allocated *ret_error; the running table is unchanged. */
int dp_nft_apply(struct dp_nft *nft, const struct dp_ruleset *rs, char **ret_error);

/* Reads the table's named counters into @ret (indexed by enum dp_counter_id).
 * Returns 0, -ENOENT when the table is missing, or another negative errno. */
int dp_nft_read_counters(struct dp_nft *nft, struct dp_counter ret[DP_COUNTER_MAX]);
