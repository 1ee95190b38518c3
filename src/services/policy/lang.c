/* The policy language (policy.h, docs/policy.md): a recursive-descent
 * parser over a line-oriented lexer (lang-lex.c), with the time windows'
 * statements in lang-time.c. The first error stops the parse and names
 * FILE:LINE:COLUMN and what was expected there; nothing of a file with an
 * error is kept. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/array.h"
#include "lang.h"
#include "lib/error.h"
#include "policy-internal.h"

/* ---- ends ---- */

/* "10.77.1.5" or "198.51.100.0/24"; false when @w is not one. */
static bool parse_prefix(const char *w, uint32_t *ret_addr, uint32_t *ret_mask, bool *ret_bad_len)
{
	char buf[WORD_MAX];
	snprintf(buf, sizeof(buf), "%s", w);
	char *slash = strchr(buf, '/');
	unsigned len = 32;
	*ret_bad_len = false;
	if (slash) {
		*slash = '\0';
		char *endp;
		unsigned long l = strtoul(slash + 1, &endp, 10);
		if (!isdigit((unsigned char)slash[1]) || *endp || l > 32) {
			*ret_bad_len = true;
			return false;
		}
		len = (unsigned)l;
	}
	struct in_addr a;
	if (inet_pton(AF_INET, buf, &a) != 1)
		return false;
	uint32_t mask = len ? htonl(~0u << (32 - len)) : 0;
	*ret_addr = a.s_addr & mask;
	*ret_mask = mask;
	return true;
}

static int push_end(struct parser *ps, struct policy_end **v, size_t *n, size_t *cap,
                    const struct policy_end *e)
{
	if (array_reserve((void **)v, cap, *n + 1, sizeof(**v)) < 0)
		return lang_oom(ps);
	(*v)[(*n)++] = *e;
	return 0;
}

/* One end of a list, groups expanded into it. */
static int end_item(struct parser *ps, struct policy_end **v, size_t *n, size_t *cap,
                    bool groups_only)
{
	if (ps->tok.kind != TOK_WORD)
		return lang_expected(ps, groups_only
		                             ? "a host, a group or an address"
		                             : "any, lan, internet, a host, a group or an address");
	const char *w = ps->tok.text;
	struct policy_end e = {0};
	bool bad_len;
	const struct policy_group *g;
	if (!groups_only && strcmp(w, "any") == 0) {
		e.kind = POLICY_END_ANY;
	} else if (!groups_only && strcmp(w, "lan") == 0) {
		e.kind = POLICY_END_LAN;
	} else if (!groups_only && strcmp(w, "internet") == 0) {
		e.kind = POLICY_END_INTERNET;
	} else if (policy_net_host(ps->net, w) && !lang_find_group(ps->p, w)) {
		e.kind = POLICY_END_HOST;
		snprintf(e.host, sizeof(e.host), "%.*s", STORE_NAME_MAX - 1, w);
	} else if ((g = lang_find_group(ps->p, w))) {
		for (size_t i = 0; i < g->side.n; i++)
			if (push_end(ps, v, n, cap, &g->side.v[i]) < 0)
				return ps->status;
		lang_next(ps);
		return 0;
	} else if (parse_prefix(w, &e.addr, &e.mask, &bad_len)) {
		e.kind = POLICY_END_PREFIX;
	} else if (bad_len) {
		return lang_fail(ps, ps->tok.pos, "a prefix length is 0 to 32, in \"%s\"", w);
	} else if (lang_is_keyword(w)) {
		return lang_expected(ps, groups_only
		                             ? "a host, a group or an address"
		                             : "any, lan, internet, a host, a group or an address");
	} else if (lang_find_service(ps->p, w)) {
		return lang_fail(ps, ps->tok.pos,
		                 "\"%s\" is a service, where a host or group was expected", w);
	} else if (lang_find_window(ps->p, w)) {
		return lang_fail(ps, ps->tok.pos,
		                 "\"%s\" is a window, where a host or group was expected (a rule's "
		                 "windows follow \"during\")",
		                 w);
	} else if (ps->net->departed_hosts && strlen(w) < STORE_NAME_MAX) {
		e.kind = POLICY_END_HOST;
		snprintf(e.host, sizeof(e.host), "%.*s", STORE_NAME_MAX - 1, w);
	} else {
		return lang_fail(ps, ps->tok.pos, "unknown host or group \"%s\"", w);
	}
	lang_next(ps);
	return push_end(ps, v, n, cap, &e);
}

/* Whether the current word begins a service: tcp/udp/icmp or a service's name. */
static bool at_port(const struct parser *ps)
{
	if (ps->tok.kind != TOK_WORD)
		return false;
	const char *w = ps->tok.text;
	return !strncmp(w, "tcp", 3) || !strncmp(w, "udp", 3) || !strcmp(w, "icmp") ||
	       lang_find_service(ps->p, w);
}

/* {app PATTERN | user NAME}: what a side asks of the program and user at
 * its end; *@ret_any tells whether it asks anything. */
static int who_conditions(struct parser *ps, struct policy_who *who, bool *ret_any)
{
	*ret_any = false;
	while (lang_at_word(ps, "app") || lang_at_word(ps, "user")) {
		bool app = lang_at_word(ps, "app");
		char *dst = app ? who->app : who->user;
		if (*dst)
			return lang_fail(ps, ps->tok.pos, "a side names one %s",
			                 app ? "app" : "user");
		lang_next(ps);
		if (ps->tok.kind != TOK_WORD ||
		    (lang_is_keyword(ps->tok.text) && !lang_at_word(ps, "unknown")))
			return lang_expected(ps,
			                     app ? "a program's path or name (* and ? match any)"
			                         : "a user's name or number");
		const char *w = ps->tok.text;
		if (!app && strcmp(w, "unknown") != 0 &&
		    (strspn(w,
		            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
		         strlen(w) ||
		     w[0] == '-'))
			return lang_fail(ps, ps->tok.pos, "\"%s\" is no user's name or number", w);
		snprintf(dst, POLICY_WORD_MAX, "%s", w);
		*ret_any = true;
		lang_next(ps);
	}
	return 0;
}

/* [WHO [on]] END {, END} [except END {, END}]: with WHO and no `on`, the
 * side is every host. */
static int side(struct parser *ps, struct policy_side *s)
{
	bool who;
	if (who_conditions(ps, &s->who, &who) < 0)
		return ps->status;
	if (who && !lang_at_word(ps, "on")) {
		struct policy_end any = {.kind = POLICY_END_ANY};
		if (push_end(ps, &s->v, &s->n, &s->cap, &any) < 0)
			return ps->status;
	} else {
		if (who)
			lang_next(ps);
		struct policy_pos at = ps->tok.pos;
		if (end_item(ps, &s->v, &s->n, &s->cap, false) < 0)
			return ps->status;
		while (ps->tok.kind == TOK_COMMA) {
			lang_next(ps);
			if (end_item(ps, &s->v, &s->n, &s->cap, false) < 0)
				return ps->status;
		}
		/* A stored policy is still enforced: such a side matches nothing. */
		for (size_t i = 0; who && !ps->net->departed_hosts && i < s->n; i++) {
			const struct policy_host *h = s->v[i].kind == POLICY_END_HOST
			                                  ? policy_net_host(ps->net, s->v[i].host)
			                                  : NULL;
			if (h && h->device)
				return lang_fail(
				    ps, at,
				    "\"%s\" is a device: it runs no agent, so no AEE knows "
				    "its programs or users",
				    h->name);
		}
	}
	if (!lang_at_word(ps, "except"))
		return 0;
	lang_next(ps);
	if (end_item(ps, &s->except, &s->n_except, &s->cap_except, false) < 0)
		return ps->status;
	while (ps->tok.kind == TOK_COMMA) {
		lang_next(ps);
		if (end_item(ps, &s->except, &s->n_except, &s->cap_except, false) < 0)
			return ps->status;
	}
	return 0;
}

/* ---- services ---- */

static int push_port(struct parser *ps, struct policy_port **v, size_t *n, size_t *cap,
                     struct policy_port pt)
{
	if (array_reserve((void **)v, cap, *n + 1, sizeof(**v)) < 0)
		return lang_oom(ps);
	(*v)[(*n)++] = pt;
	return 0;
}

static bool parse_number(const char *s, const char *end, unsigned long max, unsigned long *ret)
{
	if (s == end || end - s > 5)
		return false;
	unsigned long v = 0;
	for (const char *c = s; c < end; c++) {
		if (!isdigit((unsigned char)*c))
			return false;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (v > max)
		return false;
	*ret = v;
	return true;
}

/* "tcp/22", "udp/5000-5010", "tcp", "icmp"; false when @w is none. */
static bool parse_port_word(const char *w, struct policy_port *ret, bool *ret_bad)
{
	*ret_bad = false;
	const char *slash = strchr(w, '/');
	size_t plen = slash ? (size_t)(slash - w) : strlen(w);
	struct policy_port pt = {.lo = 0, .hi = 65535};
	if (plen == 3 && !strncmp(w, "tcp", 3))
		pt.proto = POLICY_PROTO_TCP;
	else if (plen == 3 && !strncmp(w, "udp", 3))
		pt.proto = POLICY_PROTO_UDP;
	else if (plen == 4 && !strncmp(w, "icmp", 4))
		pt.proto = POLICY_PROTO_ICMP;
	else
		return false;
	if (slash) {
		*ret_bad = true;
		if (pt.proto == POLICY_PROTO_ICMP)
			return false;
		const char *dash = strchr(slash + 1, '-');
		const char *end = slash + 1 + strlen(slash + 1);
		unsigned long lo, hi;
		if (!parse_number(slash + 1, dash ? dash : end, 65535, &lo))
			return false;
		hi = lo;
		if (dash && !parse_number(dash + 1, end, 65535, &hi))
			return false;
		if (lo == 0 || hi < lo)
			return false;
		pt.lo = (uint16_t)lo;
		pt.hi = (uint16_t)hi;
		*ret_bad = false;
	}
	*ret = pt;
	return true;
}

static int port_item(struct parser *ps, struct policy_port **v, size_t *n, size_t *cap)
{
	if (ps->tok.kind != TOK_WORD)
		return lang_expected(ps,
		                     "a service (tcp/PORT, udp/PORT, icmp or a service's name)");
	const char *w = ps->tok.text;
	struct policy_port pt;
	bool bad;
	const struct policy_service *s;
	if (parse_port_word(w, &pt, &bad)) {
		lang_next(ps);
		return push_port(ps, v, n, cap, pt);
	}
	if (bad)
		return lang_fail(
		    ps, ps->tok.pos,
		    "expected tcp/PORT or udp/PORT or a range LO-HI of ports 1 to 65535, "
		    "found \"%s\"",
		    w);
	if ((s = lang_find_service(ps->p, w))) {
		for (size_t i = 0; i < s->n_ports; i++)
			if (push_port(ps, v, n, cap, s->ports[i]) < 0)
				return ps->status;
		lang_next(ps);
		return 0;
	}
	return lang_fail(ps, ps->tok.pos, "unknown service \"%s\"", w);
}

static int port_list(struct parser *ps, struct policy_port **v, size_t *n, size_t *cap)
{
	if (port_item(ps, v, n, cap) < 0)
		return ps->status;
	while (ps->tok.kind == TOK_COMMA) {
		lang_next(ps);
		if (port_item(ps, v, n, cap) < 0)
			return ps->status;
	}
	return 0;
}

/* ---- statements ---- */

static int allow_deny(struct parser *ps, bool *ret)
{
	if (lang_at_word(ps, "allow") || lang_at_word(ps, "deny")) {
		*ret = lang_at_word(ps, "allow");
		lang_next(ps);
		return 0;
	}
	return lang_expected(ps, "allow or deny");
}

static int stmt_default(struct parser *ps)
{
	struct policy *p = ps->p;
	struct policy_pos pos = ps->tok.pos;
	lang_next(ps);
	bool out;
	if (lang_at_word(ps, "outbound") || lang_at_word(ps, "inbound"))
		out = lang_at_word(ps, "outbound");
	else
		return lang_expected(ps, "outbound or inbound");
	lang_next(ps);
	if ((out && p->has_outbound) || (!out && p->has_inbound))
		return lang_fail(ps, pos, "the default %s is stated twice",
		                 out ? "outbound" : "inbound");
	bool allow;
	if (allow_deny(ps, &allow) < 0)
		return ps->status;
	bool log = lang_at_word(ps, "log");
	if (log)
		lang_next(ps);
	if (out) {
		p->has_outbound = true;
		p->outbound_allow = allow;
		p->outbound_log = log;
	} else {
		p->has_inbound = true;
		p->inbound_allow = allow;
		p->inbound_log = log;
	}
	return ps->tok.kind == TOK_END ? 0 : lang_expected(ps, "log or the end of the line");
}

/* mode audit|enforce */
static int stmt_mode(struct parser *ps)
{
	struct policy *p = ps->p;
	struct policy_pos pos = ps->tok.pos;
	lang_next(ps);
	if (!lang_at_word(ps, "audit") && !lang_at_word(ps, "enforce"))
		return lang_expected(ps, "audit or enforce");
	if (p->has_mode)
		return lang_fail(ps, pos, "the mode is stated twice");
	p->has_mode = true;
	p->audit = lang_at_word(ps, "audit");
	lang_next(ps);
	return lang_expect_end(ps);
}

static int stmt_group(struct parser *ps)
{
	struct policy *p = ps->p;
	struct policy_group g = {.pos = ps->tok.pos};
	lang_next(ps);
	if (lang_new_name(ps, g.name) < 0 || lang_expect_equals(ps) < 0)
		return ps->status;
	int r = end_item(ps, &g.side.v, &g.side.n, &g.side.cap, true);
	while (r == 0 && ps->tok.kind == TOK_COMMA) {
		lang_next(ps);
		r = end_item(ps, &g.side.v, &g.side.n, &g.side.cap, true);
	}
	if (r == 0)
		r = lang_expect_end(ps);
	if (r == 0 && ARRAY_RESERVE(p->groups, p->cap_groups, p->n_groups + 1) < 0)
		r = lang_oom(ps);
	if (r < 0) {
		free(g.side.v);
		return r;
	}
	p->groups[p->n_groups++] = g;
	return 0;
}

static int stmt_service(struct parser *ps)
{
	struct policy *p = ps->p;
	struct policy_service s = {.pos = ps->tok.pos};
	lang_next(ps);
	int r = lang_new_name(ps, s.name);
	if (r == 0)
		r = lang_expect_equals(ps);
	if (r == 0)
		r = port_list(ps, &s.ports, &s.n_ports, &s.cap_ports);
	if (r == 0)
		r = lang_expect_end(ps);
	if (r == 0 && ARRAY_RESERVE(p->services, p->cap_services, p->n_services + 1) < 0)
		r = lang_oom(ps);
	if (r < 0) {
		free(s.ports);
		return r;
	}
	p->services[p->n_services++] = s;
	return 0;
}

static void side_free(struct policy_side *s)
{
	free(s->v);
	free(s->except);
	*s = (struct policy_side){0};
}

static void rule_free(struct policy_rule *r)
{
	side_free(&r->from);
	side_free(&r->to);
	free(r->ports);
	r->ports = NULL;
	free(r->during);
	r->during = NULL;
	free(r->text);
	r->text = NULL;
}

/* The statement from @pos to where the parser stands, trailing blanks
 * cut, newly allocated (NULL when that failed). */
static char *statement_text(const struct parser *ps, struct policy_pos pos)
{
	const char *start = ps->line + (pos.col - 1);
	size_t len = (size_t)(ps->at - start);
	while (len && strchr(" \t\r", start[len - 1]))
		len--;
	return strndup(start, len);
}

/* allow|deny from SIDE to SIDE [SERVICES] [during WINDOWS] [log] */
static int stmt_rule(struct parser *ps)
{
	struct policy *p = ps->p;
	struct policy_rule rule = {.pos = ps->tok.pos};
	int r = allow_deny(ps, &rule.allow);
	if (r == 0)
		r = lang_expect_word(ps, "from");
	if (r == 0)
		r = side(ps, &rule.from);
	if (r == 0)
		r = lang_expect_word(ps, "to");
	if (r == 0)
		r = side(ps, &rule.to);
	/* Each AEE knows the program and user at its own end only and passes
	 * over a deny that asks for them at the other: one that asks at both
	 * ends would be passed over at both, and deny nothing. A stored
	 * policy that has one is still enforced: the rule matches nothing. */
	if (r == 0 && !rule.allow && !ps->net->departed_hosts &&
	    policy_side_qualified(&rule.from) && policy_side_qualified(&rule.to))
		r = lang_fail(
		    ps, rule.pos,
		    "a deny that names a program or user at both ends denies nothing: each "
		    "AEE knows its own end only; name them at one end");
	if (r == 0 && at_port(ps))
		r = port_list(ps, &rule.ports, &rule.n_ports, &rule.cap_ports);
	if (r == 0 && lang_at_word(ps, "during")) {
		lang_next(ps);
		r = lang_window_list(ps, true, &rule.during);
	}
	if (r == 0 && lang_at_word(ps, "log")) {
		rule.log = true;
		lang_next(ps);
		if (ps->tok.kind != TOK_END)
			r = lang_expected(ps, "the end of the line");
	}
	if (r == 0 && ps->tok.kind != TOK_END)
		r = lang_expected(ps, rule.during
		                          ? "\",\", log, or the end of the line"
		                          : "a service (tcp/PORT, udp/PORT, icmp or a service's "
		                            "name), \",\", except, during, log, or the end of the "
		                            "line");
	if (r == 0 && !(rule.text = statement_text(ps, rule.pos)))
		r = lang_oom(ps);
	if (r == 0 && ARRAY_RESERVE(p->rules, p->cap_rules, p->n_rules + 1) < 0)
		r = lang_oom(ps);
	if (r < 0) {
		rule_free(&rule);
		return r;
	}
	p->rules[p->n_rules++] = rule;
	return 0;
}

/* One end of an expected flow: [WHO on] a host, an address, or internet.
 * What WHO does not name is POLICY_WHO_UNNAMED. */
static int flow_end(struct parser *ps, struct policy_end *ret, struct policy_who *ret_who)
{
	struct policy_who who = {0};
	bool named;
	if (who_conditions(ps, &who, &named) < 0)
		return ps->status;
	if (named && lang_expect_word(ps, "on") < 0)
		return ps->status;
	if (ps->tok.kind != TOK_WORD)
		return lang_expected(ps, "a host, an address or internet");
	const char *w = ps->tok.text;
	bool bad_len;
	*ret = (struct policy_end){0};
	if (strcmp(w, "internet") == 0 && !named) {
		ret->kind = POLICY_END_INTERNET;
	} else if (policy_net_host(ps->net, w)) {
		if (named && !ps->net->departed_hosts && policy_net_host(ps->net, w)->device)
			return lang_fail(
			    ps, ps->tok.pos,
			    "\"%s\" is a device: it runs no agent, so no AEE knows its "
			    "programs or users",
			    w);
		ret->kind = POLICY_END_HOST;
		snprintf(ret->host, sizeof(ret->host), "%.*s", STORE_NAME_MAX - 1, w);
	} else if (!named && parse_prefix(w, &ret->addr, &ret->mask, &bad_len) &&
	           ret->mask == 0xffffffffu) {
		ret->kind = POLICY_END_PREFIX;
	} else if (lang_find_group(ps->p, w)) {
		return lang_fail(ps, ps->tok.pos,
		                 "an expected flow names one host, not the group \"%s\"", w);
	} else if (named) {
		return lang_fail(ps, ps->tok.pos,
		                 "a program runs on a host: expected one, found \"%s\"", w);
	} else {
		return lang_fail(ps, ps->tok.pos,
		                 "expected a host, an address or internet, found \"%s\"", w);
	}
	for (char *f = who.app; f; f = f == who.app ? who.user : NULL)
		if (!*f)
			snprintf(f, POLICY_WORD_MAX, "%s", POLICY_WHO_UNNAMED);
	*ret_who = who;
	lang_next(ps);
	return 0;
}

static int flow_port(struct parser *ps, struct policy_port *ret)
{
	struct policy_port *v = NULL;
	size_t n = 0, cap = 0;
	struct policy_pos pos = ps->tok.pos;
	int r = port_item(ps, &v, &n, &cap);
	if (r == 0 && (n != 1 || (v[0].proto != POLICY_PROTO_ICMP && v[0].lo != v[0].hi)))
		r = lang_fail(ps, pos, "an expected flow names one protocol and port, e.g. tcp/22");
	if (r == 0)
		*ret = v[0];
	free(v);
	return r;
}

/* expect allow|deny FROM [to] TO SERVICE [at DAY HH:MM] */
static int stmt_expect(struct parser *ps)
{
	struct policy *p = ps->p;
	struct policy_expect e = {.pos = ps->tok.pos};
	lang_next(ps);
	int r = allow_deny(ps, &e.allow);
	if (r == 0)
		r = flow_end(ps, &e.flow.from, &e.flow.from_who);
	if (r == 0 && lang_at_word(ps, "to"))
		lang_next(ps);
	if (r == 0)
		r = flow_end(ps, &e.flow.to, &e.flow.to_who);
	if (r == 0)
		r = flow_port(ps, &e.flow.port);
	if (r == 0 && lang_at_word(ps, "at")) {
		e.at = true;
		r = lang_expect_at(ps, &e.flow.minute);
	}
	if (r == 0 && ps->tok.kind != TOK_END)
		r = lang_expected(ps, "at or the end of the line");
	if (r == 0 && ARRAY_RESERVE(p->expects, p->cap_expects, p->n_expects + 1) < 0)
		r = lang_oom(ps);
	if (r == 0 && !(e.text = statement_text(ps, e.pos)))
		r = lang_oom(ps);
	if (r < 0)
		return r;
	p->expects[p->n_expects++] = e;
	return 0;
}

static int statement(struct parser *ps)
{
	if (ps->tok.kind == TOK_END)
		return 0;
	if (lang_at_word(ps, "default"))
		return stmt_default(ps);
	if (lang_at_word(ps, "group"))
		return stmt_group(ps);
	if (lang_at_word(ps, "service"))
		return stmt_service(ps);
	if (lang_at_word(ps, "allow") || lang_at_word(ps, "deny"))
		return stmt_rule(ps);
	if (lang_at_word(ps, "expect"))
		return stmt_expect(ps);
	if (lang_at_word(ps, "mode"))
		return stmt_mode(ps);
	if (lang_at_word(ps, "window"))
		return lang_stmt_window(ps);
	if (lang_at_word(ps, "timezone"))
		return lang_stmt_timezone(ps);
	return lang_expected(
	    ps, "allow, deny, default, group, service, window, timezone, expect or mode");
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_rules; i++)
		rule_free(&p->rules[i]);
	free(p->rules);
	for (size_t i = 0; i < p->n_expects; i++)
		free(p->expects[i].text);
	free(p->expects);
	for (size_t i = 0; i < p->n_groups; i++)
		side_free(&p->groups[i].side);
	free(p->groups);
	for (size_t i = 0; i < p->n_services; i++)
		free(p->services[i].ports);
	free(p->services);
	for (size_t i = 0; i < p->n_windows; i++)
		free(p->windows[i].minutes);
	free(p->windows);
	memset(p, 0, sizeof(*p));
}

int policy_parse(const char *text, const char *file, const struct policy_net *net,
                 struct policy *ret, char **ret_error)
{
	struct policy p = {0};
	struct parser ps = {.file = file, .net = net, .p = &p};
	const char *end = text + strlen(text);
	for (const char *line = text; line < end && ps.status == 0;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		ps.line = line;
		ps.line_end = nl ? nl : end;
		ps.at = line;
		ps.lineno++;
		lang_next(&ps);
		if (ps.status == 0)
			statement(&ps);
		line = nl ? nl + 1 : end;
	}
	if (ps.status == 0 && (!p.has_outbound || !p.has_inbound))
		lang_fail(&ps, (struct policy_pos){ps.lineno ? ps.lineno : 1, 1},
		          "the file states no \"default %s allow\" or \"default %s deny\"",
		          p.has_outbound ? "inbound" : "outbound",
		          p.has_outbound ? "inbound" : "outbound");
	if (ps.status < 0) {
		policy_free(&p);
		if (ret_error && ps.error)
			*ret_error = ps.error;
		else
			free(ps.error);
		return ps.status;
	}
	if (!p.has_zone)
		p.time.zone = (struct policy_zone){.name = "UTC", .fixed = true};
	policy_time_edges(&p.time, p.rules, p.n_rules);
	*ret = p;
	return 0;
}

int policy_flow_parse(const char *from, const char *to, const char *service, const char *app,
                      const char *user, const struct policy_net *net, struct policy_flow *ret,
                      char **ret_error)
{
	struct policy none = {0};
	char line[5 * WORD_MAX + 32];
	const char *words[] = {from, to, service, app ? app : "", user ? user : ""};
	for (size_t i = 0; i < 5; i++)
		if (strlen(words[i]) >= WORD_MAX || strpbrk(words[i], " \t\n,=#") ||
		    (i < 3 && !*words[i]))
			return error_set(
			    ret_error, -EINVAL,
			    "a flow is FROM TO SERVICE, and a program and a user, one word "
			    "each");
	snprintf(line, sizeof(line), "%s%s%s%s%s%s %s %s", app ? "app " : "", app ? app : "",
	         user ? " user " : "", user ? user : "", app || user ? " on " : "", from, to,
	         service);
	struct parser ps = {.file = "flow", .net = net, .p = &none};
	ps.line = ps.at = line;
	ps.line_end = line + strlen(line);
	ps.lineno = 1;
	lang_next(&ps);
	struct policy_flow f = {0};
	if (flow_end(&ps, &f.from, &f.from_who) == 0 && flow_end(&ps, &f.to, &f.to_who) == 0 &&
	    flow_port(&ps, &f.port) == 0)
		lang_expect_end(&ps);
	if (ps.status < 0) {
		if (ret_error && ps.error)
			*ret_error = ps.error;
		else
			free(ps.error);
		return ps.status;
	}
	*ret = f;
	return 0;
}
