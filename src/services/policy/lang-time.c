/* The policy language's time windows (lang.h, docs/policy.md "Time
 * windows"): `window`, `timezone`, a rule's `during` and an expectation's
 * `at`. What the days and hours mean is time.c's. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang.h"
#include "lib/array.h"
#include "policy-internal.h"

/* ---- time windows ---- */

/* DAYS [HOURS] | HOURS, added to @set. */
static int window_spec(struct parser *ps, uint8_t *set)
{
	const char *what = "days (mon, mon-fri, daily, weekdays or weekends) or hours HH:MM-HH:MM";
	if (ps->tok.kind != TOK_WORD)
		return lang_expected(ps, what);
	uint8_t days = 0x7f;
	int lo = 0, hi = 24 * 60;
	bool have_days = policy_days_parse(ps->tok.text, &days);
	if (have_days)
		lang_next(ps);
	if (ps->tok.kind == TOK_WORD && strchr(ps->tok.text, ':')) {
		if (!policy_hours_parse(ps->tok.text, &lo, &hi))
			return lang_fail(
			    ps, ps->tok.pos,
			    "expected hours HH:MM-HH:MM from 00:00 to 24:00, not empty, "
			    "found \"%s\"",
			    ps->tok.text);
		lang_next(ps);
	} else if (!have_days) {
		return lang_expected(ps, what);
	}
	policy_window_add(set, days, lo, hi);
	return 0;
}

/* One item of `during`: a window's name, or days and hours as a window
 * states them. */
static int during_item(struct parser *ps, uint8_t *set)
{
	const char *t = ps->tok.text;
	uint8_t days;
	const struct policy_window *w =
	    ps->tok.kind == TOK_WORD ? lang_find_window(ps->p, t) : NULL;
	if (!w && ps->tok.kind == TOK_WORD && isalpha((unsigned char)t[0]) && !strchr(t, ':') &&
	    !lang_is_keyword(t) && !policy_days_parse(t, &days))
		return lang_fail(ps, ps->tok.pos,
		                 "unknown window \"%s\": expected a window, days (mon, mon-fri, "
		                 "daily, weekdays or weekends) or hours HH:MM-HH:MM",
		                 t);
	if (!w)
		return window_spec(ps, set);
	for (size_t i = 0; i < POLICY_WEEK_BYTES; i++)
		set[i] |= w->minutes[i];
	lang_next(ps);
	return 0;
}

/* SPEC-OR-NAME {, SPEC-OR-NAME} into a new set *@ret. */
int lang_window_list(struct parser *ps, bool names, uint8_t **ret)
{
	uint8_t *set = calloc(1, POLICY_WEEK_BYTES);
	if (!set)
		return lang_oom(ps);
	int r = names ? during_item(ps, set) : window_spec(ps, set);
	while (r == 0 && ps->tok.kind == TOK_COMMA) {
		lang_next(ps);
		r = names ? during_item(ps, set) : window_spec(ps, set);
	}
	if (r < 0) {
		free(set);
		return r;
	}
	*ret = set;
	return 0;
}

/* window NAME = SPEC {, SPEC} */
int lang_stmt_window(struct parser *ps)
{
	struct policy *p = ps->p;
	struct policy_window w = {.pos = ps->tok.pos};
	lang_next(ps);
	int r = lang_new_name(ps, w.name);
	if (r == 0)
		r = lang_expect_equals(ps);
	if (r == 0)
		r = lang_window_list(ps, false, &w.minutes);
	if (r == 0)
		r = lang_expect_end(ps);
	if (r == 0 && ARRAY_RESERVE(p->windows, p->cap_windows, p->n_windows + 1) < 0)
		r = lang_oom(ps);
	if (r < 0) {
		free(w.minutes);
		return r;
	}
	p->windows[p->n_windows++] = w;
	return 0;
}

/* timezone UTC | UTC+HH:MM[:SS] | UTC-HH:MM[:SS] | Area/Place */
int lang_stmt_timezone(struct parser *ps)
{
	struct policy *p = ps->p;
	struct policy_pos pos = ps->tok.pos;
	lang_next(ps);
	if (ps->tok.kind != TOK_WORD)
		return lang_expected(ps, "a time zone: UTC, UTC+HH:MM or one such as Europe/Paris");
	if (p->has_zone)
		return lang_fail(ps, pos, "the time zone is stated twice");
	char *why = NULL;
	if (policy_zone_parse(ps->tok.text, &p->time.zone, &why) < 0) {
		int r = lang_fail(ps, ps->tok.pos, "%s", why ? why : "a time zone");
		free(why);
		return r;
	}
	p->has_zone = true;
	lang_next(ps);
	return lang_expect_end(ps);
}

/* at DAY HH:MM */
int lang_expect_at(struct parser *ps, int *ret_minute)
{
	lang_next(ps);
	char when[2 * WORD_MAX + 2];
	struct policy_pos pos = ps->tok.pos;
	if (ps->tok.kind != TOK_WORD)
		return lang_expected(ps, "a time DAY HH:MM, e.g. mon 09:30");
	snprintf(when, sizeof(when), "%s", ps->tok.text);
	lang_next(ps);
	if (ps->tok.kind == TOK_WORD) {
		size_t n = strlen(when);
		snprintf(when + n, sizeof(when) - n, " %s", ps->tok.text);
		lang_next(ps);
	}
	if (!policy_time_parse(when, ret_minute))
		return lang_fail(ps, pos, "expected a time DAY HH:MM, e.g. mon 09:30, found \"%s\"",
		                 when);
	return 0;
}
