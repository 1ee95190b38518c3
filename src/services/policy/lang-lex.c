/* The policy language's lexer (lang.h): words, commas and "=" of one
 * line, the errors that name FILE:LINE:COLUMN, and the names a file
 * defines. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lang.h"
#include "lib/error.h"

static const char *const keywords[] = {
    "allow",   "deny",  "from",     "to",       "except", "default", "outbound",
    "inbound", "group", "service",  "expect",   "any",    "lan",     "internet",
    "tcp",     "udp",   "icmp",     "app",      "user",   "on",      "unknown",
    "log",     "mode",  "audit",    "enforce",  "during", "window",  "timezone",
    "at",      "daily", "weekdays", "weekends", NULL,
};

bool lang_is_keyword(const char *w)
{
	for (size_t i = 0; keywords[i]; i++)
		if (strcmp(keywords[i], w) == 0)
			return true;
	return false;
}

static bool word_char(char c)
{
	return isalnum((unsigned char)c) || strchr("_.-/:*?+", c);
}

int lang_fail(struct parser *ps, struct policy_pos pos, const char *fmt, ...)
{
	if (ps->status)
		return ps->status;
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	ps->status =
	    error_set(&ps->error, -EINVAL, "%s:%u:%u: %s", ps->file, pos.line, pos.col, what);
	return ps->status;
}

/* What the current token is, for "expected X, found Y". */
static const char *found(const struct tok *t, char buf[WORD_MAX + 2])
{
	switch (t->kind) {
	case TOK_WORD:
		snprintf(buf, WORD_MAX + 2, "\"%s\"", t->text);
		return buf;
	case TOK_COMMA:
		return "\",\"";
	case TOK_EQUALS:
		return "\"=\"";
	case TOK_END:
		return "the end of the line";
	default:
		return "a character the language does not use";
	}
}

void lang_next(struct parser *ps)
{
	while (ps->at < ps->line_end && (*ps->at == ' ' || *ps->at == '\t'))
		ps->at++;
	struct tok *t = &ps->tok;
	t->pos = (struct policy_pos){ps->lineno, (unsigned)(ps->at - ps->line) + 1};
	t->text[0] = '\0';
	if (ps->at == ps->line_end || *ps->at == '#' || *ps->at == '\r') {
		t->kind = TOK_END;
		return;
	}
	char c = *ps->at;
	if (c == ',' || c == '=') {
		t->kind = c == ',' ? TOK_COMMA : TOK_EQUALS;
		ps->at++;
		return;
	}
	if (!word_char(c)) {
		t->kind = TOK_BAD;
		return;
	}
	const char *start = ps->at;
	while (ps->at < ps->line_end && word_char(*ps->at))
		ps->at++;
	size_t n = (size_t)(ps->at - start);
	if (n >= WORD_MAX) {
		lang_fail(ps, t->pos, "a word longer than %d characters", WORD_MAX - 1);
		t->kind = TOK_BAD;
		return;
	}
	memcpy(t->text, start, n);
	t->text[n] = '\0';
	t->kind = TOK_WORD;
}

bool lang_at_word(const struct parser *ps, const char *w)
{
	return ps->tok.kind == TOK_WORD && strcmp(ps->tok.text, w) == 0;
}

int lang_expected(struct parser *ps, const char *what)
{
	char buf[WORD_MAX + 2];
	return lang_fail(ps, ps->tok.pos, "expected %s, found %s", what, found(&ps->tok, buf));
}

int lang_expect_word(struct parser *ps, const char *w)
{
	if (!lang_at_word(ps, w)) {
		char what[WORD_MAX + 4];
		snprintf(what, sizeof(what), "\"%s\"", w);
		return lang_expected(ps, what);
	}
	lang_next(ps);
	return 0;
}

int lang_expect_equals(struct parser *ps)
{
	if (ps->tok.kind != TOK_EQUALS)
		return lang_expected(ps, "\"=\"");
	lang_next(ps);
	return 0;
}

int lang_expect_end(struct parser *ps)
{
	return ps->tok.kind == TOK_END ? 0 : lang_expected(ps, "the end of the line");
}

int lang_oom(struct parser *ps)
{
	if (!ps->status)
		ps->status = -ENOMEM;
	return ps->status;
}

/* ---- names ---- */

const struct policy_group *lang_find_group(const struct policy *p, const char *name)
{
	for (size_t i = 0; i < p->n_groups; i++)
		if (strcmp(p->groups[i].name, name) == 0)
			return &p->groups[i];
	return NULL;
}

const struct policy_service *lang_find_service(const struct policy *p, const char *name)
{
	for (size_t i = 0; i < p->n_services; i++)
		if (strcmp(p->services[i].name, name) == 0)
			return &p->services[i];
	return NULL;
}

const struct policy_window *lang_find_window(const struct policy *p, const char *name)
{
	for (size_t i = 0; i < p->n_windows; i++)
		if (strcmp(p->windows[i].name, name) == 0)
			return &p->windows[i];
	return NULL;
}

const struct policy_host *policy_net_host(const struct policy_net *net, const char *name)
{
	for (size_t i = 0; i < net->n_hosts; i++)
		if (strcmp(net->hosts[i].name, name) == 0)
			return &net->hosts[i];
	return NULL;
}

/* A name a definition may take: not a keyword, a host, a group or a
 * service, so that every word of a rule means one thing. */
int lang_new_name(struct parser *ps, char out[STORE_NAME_MAX])
{
	if (ps->tok.kind != TOK_WORD)
		return lang_expected(ps, "a name");
	const char *w = ps->tok.text;
	struct policy_pos pos = ps->tok.pos;
	if (lang_is_keyword(w))
		return lang_fail(ps, pos, "\"%s\" is a word of the language, not a name", w);
	if (strlen(w) >= STORE_NAME_MAX)
		return lang_fail(ps, pos, "a name is at most %d characters", STORE_NAME_MAX - 1);
	if (!isalpha((unsigned char)w[0]) || strchr(w, '/') || strchr(w, ':'))
		return lang_fail(ps, pos, "a name begins with a letter and has no '/' or ':'");
	const struct policy_group *g = lang_find_group(ps->p, w);
	const struct policy_service *s = lang_find_service(ps->p, w);
	const struct policy_window *win = lang_find_window(ps->p, w);
	/* A stored policy is still enforced when a host or device that came
	 * later took a name it defines: its definition wins there. */
	const struct policy_host *h = ps->net->departed_hosts ? NULL : policy_net_host(ps->net, w);
	if (h)
		return lang_fail(ps, pos, "\"%s\" is a %s of the network", w,
		                 h->device ? "device" : "host");
	if (g)
		return lang_fail(ps, pos, "group \"%s\" is defined already, at line %u", w,
		                 g->pos.line);
	if (s)
		return lang_fail(ps, pos, "service \"%s\" is defined already, at line %u", w,
		                 s->pos.line);
	if (win)
		return lang_fail(ps, pos, "window \"%s\" is defined already, at line %u", w,
		                 win->pos.line);
	strcpy(out, w);
	lang_next(ps);
	return 0;
}
