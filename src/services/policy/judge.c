/* Judging one flow under a policy (policy.h): what `expect` lines and
 * `ettmctl policy explain` report. The compiler (ruleset.c) renders the
 * same first-match order and the same defaults into nftables. */
#include <arpa/inet.h>
#include <stdio.h>
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
	const struct policy_host *h = f->kind == POLICY_END_HOST ? policy_net_host(net, f->host) : NULL;
	uint32_t addr = f->kind == POLICY_END_PREFIX ? f->addr : h ? h->guest_addr : 0;
	bool lan = f->kind == POLICY_END_HOST || (f->kind == POLICY_END_PREFIX && in_lan(net, addr));
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
		if (p->proto == f->proto && (p->proto == POLICY_PROTO_ICMP || (p->lo <= f->lo && f->lo <= p->hi)))
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

void policy_judge(const struct policy *p, const struct policy_net *net,
                  const struct policy_flow *flow, struct policy_judgement *ret)
{
	struct policy_end from = as_host(net, &flow->from), to = as_host(net, &flow->to);
	int rule = -1;
	for (size_t i = 0; i < p->n_rules && rule < 0; i++) {
		const struct policy_rule *r = &p->rules[i];
		if (policy_side_matches(net, &r->from, &from) && policy_side_matches(net, &r->to, &to) &&
		    port_matches(r, &flow->port))
			rule = (int)i;
	}
	*ret = (struct policy_judgement){
	    .judged_out = from.kind == POLICY_END_HOST,
	    .judged_in = to.kind == POLICY_END_HOST,
	    .out = {.allow = rule >= 0 ? p->rules[rule].allow : p->outbound_allow, .rule = rule},
	    .in = {.allow = rule >= 0 ? p->rules[rule].allow : p->inbound_allow, .rule = rule},
	};
	ret->allow = (!ret->judged_out || ret->out.allow) && (!ret->judged_in || ret->in.allow);
}

static void verdict_words(const struct policy *p, const struct policy_verdict *v, bool out_dir,
                          FILE *out)
{
	if (v->rule >= 0)
		fprintf(out, "%s by line %u: %s", v->allow ? "allowed" : "denied",
		        p->rules[v->rule].pos.line, p->rules[v->rule].text);
	else
		fprintf(out, "%s by the default: no rule matches; default %s %s",
		        v->allow ? "allowed" : "denied", out_dir ? "outbound" : "inbound",
		        v->allow ? "allow" : "deny");
}

void policy_explain(const struct policy *p, const struct policy_judgement *j, FILE *out)
{
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
		struct policy_judgement j;
		policy_judge(p, net, &e->flow, &j);
		if (j.allow == e->allow)
			continue;
		failed++;
		if (!out)
			continue;
		fprintf(out, "%s:%u:%u: %s: the flow is %s\n", file, e->pos.line, e->pos.col, e->text,
		        j.allow ? "allowed" : "denied");
		policy_explain(p, &j, out);
	}
	return failed;
}
