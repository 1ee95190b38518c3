/* ettmctl's output: errors and usage errors on stderr, JSON or a table on
 * stdout, and the small formatters the tables share (a field or "-", a
 * rate, a time ago). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ettmctl/ettmctl.h"

int output_fail(const char *fmt, ...)
{
	va_list ap;
	fputs("ettmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

int output_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!s)
		return output_fail("out of memory");
	puts(s);
	free(s);
	return 0;
}

int output_result(const struct options *o, json_t *r, void (*human)(json_t *r))
{
	if (o->json || !human)
		output_json(r);
	else
		human(r);
	json_decref(r);
	return 0;
}

int output_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fputs("ettmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'ettmctl %s --help'.\n", cmd);
	return 2;
}

const char *output_str(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v ? v : "-";
}

json_int_t output_num(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

double output_fnum(json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

/* 1234567 -> "1.2 Mbit/s". */
const char *output_rate(double bps, char buf[32])
{
	const char *unit[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s"};
	int u = 0;
	while (bps >= 1000 && u < 3) {
		bps /= 1000;
		u++;
	}
	snprintf(buf, 32, "%.1f %s", bps, unit[u]);
	return buf;
}

/* "12 s ago" for a time in ms since the epoch. */
const char *output_ago(json_int_t ms, char buf[32])
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	long long d = (long long)now.tv_sec - (long long)(ms / 1000);
	if (ms <= 0)
		snprintf(buf, 32, "never");
	else if (d < 120)
		snprintf(buf, 32, "%lld s ago", d < 0 ? 0 : d);
	else
		snprintf(buf, 32, "%lld min ago", d / 60);
	return buf;
}
