/* Per-source token buckets (RFC 2697's single-rate idea, one bucket per
 * IPv4 source) for what strangers may ask of an agent, and a per-source
 * "log this at most once a period" for the warnings they cause (STYLE.md:
 * warnings caused by network input are rate-limited). Pure: the caller
 * passes the time. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* How many sources are remembered at once. When a new source comes and
 * every slot is taken, the one heard from least recently is forgotten (a
 * forgotten source starts again with a full bucket). */
#define RATE_SOURCES 256

struct rate_source {
	uint32_t addr;      /* network order */
	bool used;
	double tokens;      /* what the bucket holds */
	uint64_t seen_ms;   /* last refill: the last time the source was heard */
	uint64_t logged_ms; /* last time a warning about it was logged; 0: never */
};

struct rate_limiter {
	double per_s; /* tokens added per second */
	double burst; /* what a bucket holds at most, and a new one holds */
	struct rate_source v[RATE_SOURCES];
};

/* Buckets of @burst tokens (at least 1) refilled at @per_s a second. */
void rate_limiter_init(struct rate_limiter *rl, double per_s, double burst);

/* Takes one token from @addr's bucket at @now_ms: true when there was
 * one (the request may go on), false when the source is over its rate. */
bool rate_take(struct rate_limiter *rl, uint32_t addr, uint64_t now_ms);

/* True at most once per @period_ms for @addr: whether a warning about it
 * is to be logged now. */
bool rate_log_due(struct rate_limiter *rl, uint32_t addr, uint64_t now_ms, uint64_t period_ms);
