/* The two clocks the agent reads: wall time (stamped into store commands,
 * shown to people) and monotonic time (durations). */
#pragma once

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Milliseconds since the epoch. */
static inline uint64_t wall_ms(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000000u;
}

static inline uint64_t mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static inline uint64_t mono_ms(void)
{
	return mono_ns() / 1000000u;
}
