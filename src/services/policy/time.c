/* Time windows (policy.h, docs/policy.md "Time windows"): days and hours
 * as sets of minutes of the week, the file's time zone, and the minute of
 * the week that a moment is in it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "policy-internal.h"

#define DAY_MINUTES (24 * 60)
#define ZONEINFO    "/usr/share/zoneinfo/"

static const char *const day_names[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static int day_index(const char *w, size_t n)
{
	for (int d = 0; d < 7; d++)
		if (n == 3 && strncmp(w, day_names[d], 3) == 0)
			return d;
	return -1;
}

bool policy_days_parse(const char *w, uint8_t *ret_days)
{
	if (strcmp(w, "daily") == 0)
		*ret_days = 0x7f;
	else if (strcmp(w, "weekdays") == 0)
		*ret_days = 0x1f;
	else if (strcmp(w, "weekends") == 0)
		*ret_days = 0x60;
	else {
		const char *dash = strchr(w, '-');
		int a = day_index(w, dash ? (size_t)(dash - w) : strlen(w));
		int b = dash ? day_index(dash + 1, strlen(dash + 1)) : a;
		if (a < 0 || b < 0)
			return false;
		*ret_days = 0;
		for (int d = a;; d = (d + 1) % 7) { /* fri-mon wraps over the weekend */
			*ret_days |= (uint8_t)(1u << d);
			if (d == b)
				break;
		}
	}
	return true;
}

/* "HH:MM" with HH 0-23 (24 with @end and MM 00), into minutes of the day. */
static bool clock_parse(const char *s, size_t n, bool end, int *ret)
{
	if (n != 5 || s[2] != ':')
		return false;
	for (size_t i = 0; i < 5; i++)
		if (i != 2 && (s[i] < '0' || s[i] > '9'))
			return false;
	int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
	if (m > 59 || h > 24 || (h == 24 && (!end || m != 0)))
		return false;
	*ret = h * 60 + m;
	return true;
}

bool policy_hours_parse(const char *w, int *ret_lo, int *ret_hi)
{
	const char *dash = strchr(w, '-');
	return dash && clock_parse(w, (size_t)(dash - w), false, ret_lo) &&
	       clock_parse(dash + 1, strlen(dash + 1), true, ret_hi) && *ret_lo != *ret_hi;
}

static void set_range(uint8_t *set, int from, int to)
{
	for (int m = from; m < to; m++)
		set[m / 8] |= (uint8_t)(1u << (m % 8));
}

void policy_window_add(uint8_t *set, uint8_t days, int lo, int hi)
{
	for (int d = 0; d < 7; d++) {
		if (!(days & (1u << d)))
			continue;
		int base = d * DAY_MINUTES;
		if (lo < hi) {
			set_range(set, base + lo, base + hi);
			continue;
		}
		/* Past midnight: into the next day (Sunday's into Monday's). */
		set_range(set, base + lo, base + DAY_MINUTES);
		int next = (d + 1) % 7 * DAY_MINUTES;
		set_range(set, next, next + hi);
	}
}

/* "+02:00", "-05:30", "+05:45:30" as seconds east of UTC. */
static bool offset_parse(const char *s, int *ret)
{
	if (s[0] != '+' && s[0] != '-')
		return false;
	size_t n = strlen(s + 1);
	if (n != 5 && n != 8)
		return false;
	int f[3] = {0, 0, 0};
	for (size_t i = 0; i < n; i++) {
		char c = s[1 + i];
		if (i % 3 == 2) {
			if (c != ':')
				return false;
		} else if (c < '0' || c > '9') {
			return false;
		} else {
			f[i / 3] = f[i / 3] * 10 + (c - '0');
		}
	}
	if (f[0] > 23 || f[1] > 59 || f[2] > 59)
		return false;
	int v = f[0] * 3600 + f[1] * 60 + f[2];
	*ret = s[0] == '-' ? -v : v;
	return true;
}

int policy_zone_parse(const char *w, struct policy_zone *ret, char **ret_error)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->name, sizeof(ret->name), "%s", w);
	if (strncmp(w, "UTC", 3) == 0 && (w[3] == '\0' || w[3] == '+' || w[3] == '-')) {
		ret->fixed = true;
		if (w[3] == '\0' || offset_parse(w + 3, &ret->offset))
			return 0;
		return error_set(ret_error, -EINVAL,
		                 "expected UTC, UTC+HH:MM or UTC-HH:MM (up to 23:59, seconds "
		                 "as :SS), found \"%s\"",
		                 w);
	}
	/* A name of the zoneinfo database: Area/Place, no way out of it. */
	bool ok = w[0] && w[0] != '/' && !strstr(w, "..") &&
	          strspn(w, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+-/") ==
	              strlen(w);
	char path[sizeof(ZONEINFO) + POLICY_WORD_MAX], magic[4] = {0};
	snprintf(path, sizeof(path), ZONEINFO "%s", w);
	FILE *f = ok ? fopen(path, "re") : NULL;
	ok = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "TZif", 4) == 0;
	if (f)
		fclose(f);
	if (!ok)
		return error_set(ret_error, -EINVAL,
		                 "unknown time zone \"%s\": expected UTC, UTC+HH:MM or a zone of "
		                 "%s such as Europe/Paris",
		                 w, ZONEINFO);
	return 0;
}

void policy_time_edges(struct policy_time *t, const struct policy_rule *rules, size_t n)
{
	memset(t->edges, 0, sizeof(t->edges));
	t->timed = false;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *d = rules[i].during;
		if (!d)
			continue;
		t->timed = true;
		/* Minute m is an edge where its bit differs from m - 1's (the
		 * week wraps: Monday 00:00 follows Sunday 23:59). */
		for (size_t b = 0; b < POLICY_WEEK_BYTES; b++) {
			uint8_t before = d[(b + POLICY_WEEK_BYTES - 1) % POLICY_WEEK_BYTES] >> 7;
			t->edges[b] |= d[b] ^ (uint8_t)(d[b] << 1 | before);
		}
	}
}

static int week_minute(const struct tm *tm)
{
	return (tm->tm_wday + 6) % 7 * DAY_MINUTES + tm->tm_hour * 60 + tm->tm_min;
}

int policy_time_minute(const struct policy_time *t, time_t now)
{
	struct tm tm;
	if (t->zone.fixed || !t->zone.name[0]) {
		time_t local = now + t->zone.offset;
		return gmtime_r(&local, &tm) ? week_minute(&tm) : 0;
	}
	/* The C library reads a named zone through TZ only; the agent's loop
	 * is the one thread that asks for local time. */
	const char *was = getenv("TZ");
	char *saved = was ? strdup(was) : NULL;
	setenv("TZ", t->zone.name, 1);
	tzset();
	struct tm *ok = localtime_r(&now, &tm);
	if (saved)
		setenv("TZ", saved, 1);
	else
		unsetenv("TZ");
	tzset();
	free(saved);
	return ok ? week_minute(&tm) : 0;
}

unsigned policy_time_slot(const struct policy_time *t, int minute)
{
	if (!t->timed)
		return 0;
	for (int k = 0; k < POLICY_WEEK_MINUTES; k++) {
		int m = (minute - k + POLICY_WEEK_MINUTES) % POLICY_WEEK_MINUTES;
		if (policy_minute_in(t->edges, m))
			return 1u + (unsigned)m;
	}
	return 1; /* windows that never open or close */
}

bool policy_time_parse(const char *s, int *ret_minute)
{
	int d = day_index(s, 3), m;
	if (d < 0 || s[3] != ' ' || !clock_parse(s + 4, strlen(s + 4), false, &m))
		return false;
	*ret_minute = d * DAY_MINUTES + m;
	return true;
}

void policy_time_format(int minute, char buf[16])
{
	int m = minute % DAY_MINUTES;
	snprintf(buf, 16, "%s %02d:%02d", day_names[minute / DAY_MINUTES % 7], m / 60, m % 60);
}
