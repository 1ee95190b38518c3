/* Mastership claims (claim.h): the generation arithmetic. */
#include "claim.h"

enum sw_claim_verdict sw_claim_plan(uint64_t ours, uint64_t seen, uint64_t ret_ids[2],
                                    size_t *ret_n)
{
	if (!sw_claim_behind(ours, seen)) {
		ret_ids[0] = ours;
		*ret_n = 1;
		return SW_CLAIM_OURS;
	}
	/* seen is ahead of ours by d, 1 <= d <= 2^63 (at 2^63 the difference
	 * is negative both ways, and both ids are stale to each other). */
	uint64_t d = seen - ours;
	if (d <= SW_CLAIM_AHEAD_MAX) {
		*ret_n = 0;
		return SW_CLAIM_NEWER;
	}
	/* Forward from seen round to ours is f = 2^64 - d, at least 2^63 and
	 * below 2^64 - 2^48. Half of it, then the rest: each step is below
	 * 2^63, so the switch takes each as not stale, and its memory ends at
	 * ours. */
	uint64_t f = ours - seen;
	ret_ids[0] = seen + f / 2;
	ret_ids[1] = ours;
	*ret_n = 2;
	return SW_CLAIM_FOREIGN;
}

unsigned sw_claim_backoff(unsigned prev_ms)
{
	if (prev_ms < SW_CLAIM_BACKOFF_MIN_MS)
		return SW_CLAIM_BACKOFF_MIN_MS;
	if (prev_ms >= SW_CLAIM_BACKOFF_MAX_MS / 2)
		return SW_CLAIM_BACKOFF_MAX_MS;
	return prev_ms * 2;
}
