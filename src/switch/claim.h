/* Mastership claims: which generation id to claim on a switch that may
 * have seen ids ETTM never issued. Pure arithmetic, no I/O.
 *
 * An OpenFlow 1.3 switch remembers the highest generation id any
 * controller claimed MASTER or SLAVE with, and refuses a claim whose id is
 * behind it as stale (spec 6.3.6: "the switch must compare the
 * generation_id ... using a circular (wrap-around) comparison", with
 * "(int64_t)(id - cached) < 0" as the test; Open vSwitch does exactly
 * that). ETTM's own ids are sw_generation_id(): the cluster's generation
 * in the high 32 bits, the Raft term in the low ones. docs/switch.md,
 * "Mastership and fencing", argues the rule. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The generation id of a mastership claim: the cluster's generation in the
 * high 32 bits, the Raft term in the low ones. A forced recovery keeps the
 * Raft term, so the generation must rank first: a returning voter of an
 * older generation, whatever its term, is then stale to the switch. */
static inline uint64_t sw_generation_id(uint64_t generation, uint64_t term)
{
	return generation << 32 | (term & 0xffffffffu);
}

/* How many generations ahead of ours an id may be and still be taken for
 * the claim of a newer ETTM generation (a recovery by fiat adds one; no
 * cluster sees 65536 of them). An id further ahead is foreign. */
#define SW_CLAIM_GENERATIONS_AHEAD 65536ull
#define SW_CLAIM_AHEAD_MAX         (SW_CLAIM_GENERATIONS_AHEAD << 32)

/* True when a switch that has seen @seen refuses a claim with @ours as
 * stale: the signed 64-bit difference ours - seen is negative. */
static inline bool sw_claim_behind(uint64_t ours, uint64_t seen)
{
	return (int64_t)(ours - seen) < 0;
}

enum sw_claim_verdict {
	SW_CLAIM_OURS,    /* @ours is not behind: claim it as it is */
	SW_CLAIM_NEWER,   /* a newer ETTM claim holds the switch: ours is stale */
	SW_CLAIM_FOREIGN, /* an id no ETTM cluster issued ahead of ours: walk back */
};

/* What to claim on a switch that has seen @seen, wanting @ours. With
 * SW_CLAIM_OURS, ret_ids[0] = @ours (*ret_n = 1). With SW_CLAIM_FOREIGN,
 * two claims, each accepted by the switch in turn, that bring its memory
 * back to @ours: ret_ids[0] halfway round the circle from @seen to @ours,
 * ret_ids[1] = @ours (*ret_n = 2). With SW_CLAIM_NEWER, *ret_n = 0. */
enum sw_claim_verdict sw_claim_plan(uint64_t ours, uint64_t seen, uint64_t ret_ids[2],
                                    size_t *ret_n);

/* The next wait between two claims after a refusal or a deposal: doubles
 * @prev_ms from SW_CLAIM_BACKOFF_MIN_MS up to SW_CLAIM_BACKOFF_MAX_MS. */
#define SW_CLAIM_BACKOFF_MIN_MS 100u
#define SW_CLAIM_BACKOFF_MAX_MS 5000u
unsigned sw_claim_backoff(unsigned prev_ms);
