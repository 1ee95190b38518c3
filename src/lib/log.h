/* Leveled logging for the daemon and tools.
 *
 * Libraries log only at debug level; the daemon logs once, at the place that
 * decides. Output goes to stderr with a monotonic-free wall-clock stamp, so
 * the lab's log files read like any daemon's. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Sets the most verbose level printed; default LOG_LEVEL_INFO. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parses "error", "warn", "info" or "debug". Returns 0 and sets *ret_level,
 * or -EINVAL. */
int log_level_parse(const char *name, enum log_level *ret_level);

/* Prefixes each line with the program's name, e.g. "ettmd". */
void log_set_ident(const char *ident);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Warnings caused by what a peer sends are rate-limited: one line per
 * source per interval, with the count of what was not logged. Embed one
 * per source (zeroed); @now_ms on any monotonic clock. */
struct log_ratelimit {
	uint64_t next_ms;
	unsigned suppressed;
};

/* True when a line may be logged now (and then the next not before
 * @interval_ms); *@ret_suppressed is how many were held back since the last
 * line, and is reset. False counts one more held back. */
bool log_ratelimit_ok(struct log_ratelimit *rl, uint64_t now_ms, uint64_t interval_ms,
                      unsigned *ret_suppressed);

/* A warning under @rl: logged when log_ratelimit_ok() says so, with
 * " (and N more in the last S s)" when some were held back. */
void log_warn_limited(struct log_ratelimit *rl, uint64_t now_ms, uint64_t interval_ms,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
