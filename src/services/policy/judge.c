/* Judging one flow under a policy (policy.h): what `expect` lines and
 * `ettmctl policy explain` report. The compiler (ruleset.c) renders the
 * same first-match order and the same defaults into nftables. */
#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "policy.h"

static bool in_lan(const struct policy_net *net, uint32_t addr)
{
	return (addr & net->lan_mask) == net->lan_addr;
}

/* Whether the rule's end @e names the flow's end @f (a host, an
 * address, or an internet address no prefix of the file names). */
static bool end_matches(const struct policy_net *net, const struct policy_end *e,
                        const struct policy_end *f)
{
	const struct policy_host *h =
	    f->kind == POLICY_END_HOST ? policy_net_host(net, f->host) : NULL;
	uint32_t addr = f->kind == POLICY_END_PREFIX ? f->addr : h ? h->guest_addr : 0;
	bool lan =
	    f->kind == POLICY_END_HOST || (f->kind == POLICY_END_PREFIX && in_lan(net, addr));
	switch (e->kind) {
	case POLICY_END_ANY:
		return true;
	case POLICY_END_LAN:
		return lan;
	case POLICY_END_INTERNET:
		return f->kind != POLICY_END_HOST && !lan;
	case POLICY_END_HOST:
		if (f->kind == POLICY_END_HOST)
			return strcmp(e->host, f->host) == 0;
		h = policy_net_host(net, e->host);
		return f->kind == POLICY_END_PREFIX && h && h->guest_addr && h->guest_addr == addr;
	case POLICY_END_PREFIX:
		return f->kind != POLICY_END_INTERNET && addr && (addr & e->mask) == e->addr;
	}
	return false;
}

bool policy_side_matches(const struct policy_net *net, const struct policy_side *s,
                         const struct policy_end *f)
{
	bool in = false;
	for (size_t i = 0; i < s->n && !in; i++)
		in = end_matches(net, &s->v[i], f);
	for (size_t i = 0; i < s->n_except && in; i++)
		if (end_matches(net, &s->except[i], f))
			in = false;
	return in;
}

static bool port_matches(const struct policy_rule *r, const struct policy_port *f)
{
	if (r->n_ports == 0)
		return true;
	for (size_t i = 0; i < r->n_ports; i++) {
		const struct policy_port *p = &r->ports[i];
		if (p->proto == f->proto &&
		    (p->proto == POLICY_PROTO_ICMP || (p->lo <= f->lo && f->lo <= p->hi)))
			return true;
	}
	return false;
}

/* An address that is a located host's guest is that host. */
static struct policy_end as_host(const struct policy_net *net, const struct policy_end *f)
{
	struct policy_end e = *f;
	if (f->kind != POLICY_END_PREFIX)
		return e;
	for (size_t i = 0; i < net->n_hosts; i++)
		if (net->hosts[i].guest_addr && net->hosts[i].guest_addr == f->addr) {
			e = (struct policy_end){.kind = POLICY_END_HOST};
			snprintf(e.host, sizeof(e.host), "%s", net->hosts[i].name);
		}
	return e;
}

static bool known(const char *have)
{
	return have[0] && strcmp(have, POLICY_WHO_UNNAMED) != 0;
}

/* A user's name or number as a uid, by the host's user database. */
static bool resolve_uid(const char *s, uid_t *ret)
{
	if (!known(s))
		return false;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (end != s && *end == '\0' && errno == 0 && v <= (uid_t)-1) {
		*ret = (uid_t)v;
		return true;
	}
	struct passwd pw, *found = NULL;
	char buf[1024];
	if (getpwnam_r(s, &pw, buf, sizeof(buf), &found) != 0 || !found)
		return false;
	*ret = found->pw_uid;
	return true;
}

static bool app_matches(const char *want, const char *have)
{
	if (strcmp(want, "unknown") == 0)
		return have[0] == '\0';
	if (!known(have))
		return false;
	const char *base = strrchr(have, '/');
	return fnmatch(want, strchr(want, '/') || !base ? have : base + 1, 0) == 0;
}

static bool user_matches(const char *want, const char *have)
{
	if (strcmp(want, "unknown") == 0)
		return have[0] == '\0';
	if (!known(have))
		return false;
	uid_t a, b;
	return strcmp(want, have) == 0 ||
	       (resolve_uid(want, &a) && resolve_uid(have, &b) && a == b);
}

bool policy_who_matches(const struct policy_who *want, const struct policy_who *have)
{
	return (!want->app[0] || app_matches(want->app, have->app)) &&
	       (!want->user[0] || user_matches(want->user, have->user));
}

/* Whether an AEE knows the programs at the end @e: a managed host's (one
 * that has left too), not a device's nor an address's. */
static bool knows_programs(const struct policy_net *net, const struct policy_end *e)
{
	const struct policy_host *h =
	    e->kind == POLICY_END_HOST ? policy_net_host(net, e->host) : NULL;
	return e->kind == POLICY_END_HOST && (!h || !h->device);
}

/* Whether @r decides the flow @from -> @to at the sender's AEE
 * (@by_sender) or the receiver's: a program or user at the judging end
 * is known; at the other end it is not, and that end's AEE decides (an
 * allow is taken as met, a deny passed over). */
static bool rule_matches(const struct policy_net *net, const struct policy_rule *r,
                         const struct policy_flow *flow, const struct policy_end *from,
                         const struct policy_end *to, bool by_sender)
{
	if (!policy_rule_open(r, flow->minute) || !policy_side_matches(net, &r->from, from) ||
	    !policy_side_matches(net, &r->to, to) || !port_matches(r, &flow->port))
		return false;
	for (int s = 0; s < 2; s++) {
		const struct policy_side *side = s == 0 ? &r->from : &r->to;
		if (!policy_side_qualified(side))
			continue;
		if (!knows_programs(net, s == 0 ? from : to))
			return false; /* no AEE there knows a program */
		if ((s == 0) != by_sender)
			return r->allow;
		if (!policy_who_matches(&side->who, s == 0 ? &flow->from_who : &flow->to_who))
			return false;
	}
	return true;
}

struct policy_verdict policy_judge_end(const struct policy *p, const struct policy_net *net,
                                       const struct policy_flow *flow, bool outbound)
{
	struct policy_end from = as_host(net, &flow->from), to = as_host(net, &flow->to);
	for (size_t i = 0; i < p->n_rules; i++)
		if (rule_matches(net, &p->rules[i], flow, &from, &to, outbound))
			return (struct policy_verdict){.allow = p->rules[i].allow, .rule = (int)i};
	bool both = from.kind == POLICY_END_HOST && to.kind == POLICY_END_HOST;
	return (struct policy_verdict){
	    .allow = both       ? p->outbound_allow && p->inbound_allow
	             : outbound ? p->outbound_allow
	                        : p->inbound_allow,
	    .rule = -1,
	    .both_defaults = both,
	};
}

void policy_judge(const struct policy *p, const struct policy_net *net,
                  const struct policy_flow *flow, struct policy_judgement *ret)
{
	*ret = (struct policy_judgement){
	    .judged_out = as_host(net, &flow->from).kind == POLICY_END_HOST,
	    .judged_in = as_host(net, &flow->to).kind == POLICY_END_HOST,
	};
	if (ret->judged_out)
		ret->out = policy_judge_end(p, net, flow, true);
	if (ret->judged_in)
		ret->in = policy_judge_end(p, net, flow, false);
	ret->allow = (!ret->judged_out || ret->out.allow) && (!ret->judged_in || ret->in.allow);
}

static void verdict_words(const struct policy *p, const struct policy_verdict *v, bool out_dir,
                          FILE *out)
{
	if (v->rule >= 0)
		fprintf(out, "%s by line %u: %s", v->allow ? "allowed" : "denied",
		        p->rules[v->rule].pos.line, p->rules[v->rule].text);
	else if (v->both_defaults)
		fprintf(
		    out,
		    "%s by the defaults: no rule matches a flow between two managed hosts, which "
		    "must pass both: default outbound %s, default inbound %s",
		    v->allow ? "allowed" : "denied", p->outbound_allow ? "allow" : "deny",
		    p->inbound_allow ? "allow" : "deny");
	else
		fprintf(out, "%s by the default: no rule matches; default %s %s",
		        v->allow ? "allowed" : "denied", out_dir ? "outbound" : "inbound",
		        v->allow ? "allow" : "deny");
}

void policy_explain(const struct policy *p, const struct policy_judgement *j, int minute, FILE *out)
{
	if (p->time.timed) {
		char when[16];
		policy_time_format(minute, when);
		fprintf(out, "  judged at %s, time zone %s\n", when, p->time.zone.name);
	}
	if (!j->judged_out && !j->judged_in) {
		fputs("no managed host sends or receives this flow: no AEE judges it\n", out);
		return;
	}
	if (j->judged_out) {
		fputs("  the sender's AEE (outbound): ", out);
		verdict_words(p, &j->out, true, out);
		fputc('\n', out);
	}
	if (j->judged_in) {
		fputs("  the receiver's AEE (inbound): ", out);
		verdict_words(p, &j->in, false, out);
		fputc('\n', out);
	}
}

size_t policy_run_expects(const struct policy *p, const struct policy_net *net, const char *file,
                          FILE *out)
{
	size_t failed = 0;
	for (size_t i = 0; i < p->n_expects; i++) {
		const struct policy_expect *e = &p->expects[i];
		struct policy_flow flow = e->flow;
		struct policy_judgement j;
		/* Without `at`, at each edge of the windows: between two, every
		 * minute is judged as the edge before it. */
		bool held = true;
		for (int m = e->at ? flow.minute : 0; held && m < POLICY_WEEK_MINUTES; m++) {
			if (!e->at && m > 0 && !policy_minute_in(p->time.edges, m))
				continue;
			flow.minute = m;
			policy_judge(p, net, &flow, &j);
			held = j.allow == e->allow;
			if (e->at)
				break;
		}
		if (held)
			continue;
		failed++;
		if (!out)
			continue;
		char when[16] = "";
		if (p->time.timed)
			policy_time_format(flow.minute, when);
		fprintf(out, "%s:%u:%u: %s: the flow is %s%s%s\n", file, e->pos.line, e->pos.col,
		        e->text, j.allow ? "allowed" : "denied", e->at || !when[0] ? "" : " at ",
		        e->at ? "" : when);
		policy_explain(p, &j, flow.minute, out);
	}
	return failed;
}

/* Whether two rules' services share a port of a protocol. */
static bool ports_overlap(const struct policy_rule *a, const struct policy_rule *b)
{
	if (a->n_ports == 0 || b->n_ports == 0)
		return true;
	for (size_t i = 0; i < a->n_ports; i++)
		for (size_t k = 0; k < b->n_ports; k++) {
			const struct policy_port *x = &a->ports[i], *y = &b->ports[k];
			if ((x->proto == y->proto || !x->proto || !y->proto) && x->lo <= y->hi &&
			    y->lo <= x->hi)
				return true;
		}
	return false;
}

static bool side_has_host(const struct policy_net *net, const struct policy_side *s,
                          const char *host)
{
	struct policy_end e = {.kind = POLICY_END_HOST};
	snprintf(e.host, sizeof(e.host), "%s", host);
	return policy_side_matches(net, s, &e);
}

size_t policy_warn_both_ends(const struct policy *p, const struct policy_net *net, const char *file,
                             FILE *out)
{
	size_t warned = 0;
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct policy_rule *a = &p->rules[i];
		if (!a->allow || !policy_side_qualified(&a->from))
			continue;
		for (size_t k = 0; k < p->n_rules; k++) {
			const struct policy_rule *b = &p->rules[k];
			if (k == i || !b->allow || !policy_side_qualified(&b->to) ||
			    !ports_overlap(a, b))
				continue;
			/* Some east-west flow both rules are about: the sender's
			 * program in one, the receiver's in the other. */
			const char *from = NULL, *to = NULL;
			for (size_t x = 0; !from && x < net->n_hosts; x++)
				for (size_t y = 0; !from && y < net->n_hosts; y++) {
					const char *hx = net->hosts[x].name,
					           *hy = net->hosts[y].name;
					if (x == y || net->hosts[x].device || net->hosts[y].device)
						continue;
					if (side_has_host(net, &a->from, hx) &&
					    side_has_host(net, &a->to, hy) &&
					    side_has_host(net, &b->from, hx) &&
					    side_has_host(net, &b->to, hy))
						from = hx, to = hy;
				}
			if (!from)
				continue;
			fprintf(
			    out,
			    "%s:%u:%u: warning: with line %u, programs or users are named at both "
			    "ends of flows from %s to %s: each end knows only its own, so a flow "
			    "that full knowledge would deny may pass (name them at one end)\n",
			    file, a->pos.line, a->pos.col, b->pos.line, from, to);
			warned++;
		}
	}
	return warned;
}
