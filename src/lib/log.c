/* Leveled logging to stderr with the program's identity: see log.h. */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level current_level = LOG_LEVEL_INFO;
static const char *current_ident = "ettm";

static const char *const level_names[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
	current_level = level;
}

enum log_level log_get_level(void)
{
	return current_level;
}

void log_set_ident(const char *ident)
{
	current_ident = ident;
}

int log_level_parse(const char *name, enum log_level *ret_level)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*ret_level = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > current_level)
		return;

	struct timespec ts;
	struct tm tm;
	char stamp[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

	/* One fprintf per line keeps lines whole when several processes share
	 * a log file. */
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s.%03ldZ %s[%s] %s\n", stamp, ts.tv_nsec / 1000000, current_ident,
	        level_names[level], line);
}

bool log_ratelimit_ok(struct log_ratelimit *rl, uint64_t now_ms, uint64_t interval_ms,
                      unsigned *ret_suppressed)
{
	if (rl->next_ms && now_ms < rl->next_ms) {
		rl->suppressed++;
		return false;
	}
	*ret_suppressed = rl->suppressed;
	rl->suppressed = 0;
	rl->next_ms = now_ms + interval_ms;
	if (!rl->next_ms)
		rl->next_ms = 1;
	return true;
}

void log_warn_limited(struct log_ratelimit *rl, uint64_t now_ms, uint64_t interval_ms,
                      const char *fmt, ...)
{
	unsigned held;
	if (!log_ratelimit_ok(rl, now_ms, interval_ms, &held))
		return;
	char line[512], more[64] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (held)
		snprintf(more, sizeof(more), " (and %u more in the last %llu s)", held,
		         (unsigned long long)(interval_ms / 1000));
	log_msg(LOG_LEVEL_WARN, "%s%s", line, more);
}
