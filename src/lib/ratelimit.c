/* Per-source token buckets and per-source log periods (ratelimit.h). */
#include "ratelimit.h"

#include <string.h>

void rate_limiter_init(struct rate_limiter *rl, double per_s, double burst)
{
	memset(rl, 0, sizeof(*rl));
	rl->per_s = per_s > 0 ? per_s : 0;
	rl->burst = burst >= 1 ? burst : 1;
}

/* @addr's slot, refilled up to @now_ms; a new or recycled slot when it has
 * none. */
static struct rate_source *source(struct rate_limiter *rl, uint32_t addr, uint64_t now_ms)
{
	struct rate_source *free_slot = NULL, *oldest = NULL;
	for (size_t i = 0; i < RATE_SOURCES; i++) {
		struct rate_source *s = &rl->v[i];
		if (!s->used) {
			if (!free_slot)
				free_slot = s;
			continue;
		}
		if (s->addr == addr) {
			/* A clock that went back refills nothing. */
			if (now_ms > s->seen_ms) {
				s->tokens += (double)(now_ms - s->seen_ms) * rl->per_s / 1000.0;
				if (s->tokens > rl->burst)
					s->tokens = rl->burst;
				s->seen_ms = now_ms;
			}
			return s;
		}
		if (!oldest || s->seen_ms < oldest->seen_ms)
			oldest = s;
	}
	struct rate_source *s = free_slot ? free_slot : oldest;
	*s = (struct rate_source){.addr = addr, .used = true, .tokens = rl->burst, .seen_ms = now_ms};
	return s;
}

bool rate_take(struct rate_limiter *rl, uint32_t addr, uint64_t now_ms)
{
	struct rate_source *s = source(rl, addr, now_ms);
	if (s->tokens < 1)
		return false;
	s->tokens -= 1;
	return true;
}

bool rate_log_due(struct rate_limiter *rl, uint32_t addr, uint64_t now_ms, uint64_t period_ms)
{
	struct rate_source *s = source(rl, addr, now_ms);
	if (s->logged_ms && now_ms < s->logged_ms + period_ms)
		return false;
	s->logged_ms = now_ms ? now_ms : 1;
	return true;
}
