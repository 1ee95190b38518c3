/* Compiling the policy for one host (policy.h): pure.
 *
 * The chain `policy` hooks forward before the datapath's own chain. A
 * flow of the guest is judged by its conntrack tuple, so a packet of
 * either direction is judged as the flow it belongs to: the guest's own
 * flows (original source the guest) by the rules of its outbound side,
 * flows to the guest's servers (reply source the guest: after any
 * inbound NAT) by those of its inbound side. An allowed flow is stamped
 * with the epoch's ct mark and its later packets pass at the first rule;
 * when the epoch changes, or a window opens or closes (the mark holds
 * both), each established flow is judged again at its next packet, so a
 * stricter policy cuts what it denies. A denied packet is dropped;
 * `accept` here only lets the datapath's own chain go on.
 *
 * On the devices' manager, the chain `firewall_devices` judges each
 * device's end the same way, at every packet (policy.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datapath/fragment.h"
#include "lib/array.h"
#include "policy.h"

#define POLICY_CHAIN     "firewall"
#define POLICY_CHAIN_OUT "firewall_out"
#define POLICY_CHAIN_IN  "firewall_in"
/* The devices' ends, on their manager (policy_ruleset_build_devices()). */
#define POLICY_CHAIN_DEVICES "firewall_devices"
/* Stamps the packets that leave for the LAN with the active epoch. */
#define POLICY_CHAIN_STAMP "firewall_stamp"

uint32_t policy_epoch_mark(uint64_t epoch, unsigned slot)
{
	/* The slot (at most POLICY_WEEK_MINUTES) in bits 17-30, the epoch in
	 * 0-16: an untimed policy's mark is 0x80000000 | epoch. */
	return 0x80000000u | (slot & 0x3fffu) << 17 | (uint32_t)(epoch & 0x1ffffu);
}

/* An address prefix, network byte order. */
struct prefix {
	uint32_t addr, mask;
};

struct prefixes {
	size_t n, cap;
	struct prefix *v;
};

static int prefixes_add(struct prefixes *ps, uint32_t addr, uint32_t mask)
{
	/* An element inside another is left out, and one that holds others
	 * replaces them: nftables refuses overlapping intervals in a set. */
	for (size_t i = 0; i < ps->n; i++) {
		struct prefix *p = &ps->v[i];
		if ((addr & p->mask) == p->addr && (ntohl(p->mask) <= ntohl(mask)))
			return 0;
	}
	size_t kept = 0;
	for (size_t i = 0; i < ps->n; i++)
		if (!((ps->v[i].addr & mask) == addr))
			ps->v[kept++] = ps->v[i];
	ps->n = kept;
	if (ARRAY_RESERVE(ps->v, ps->cap, ps->n + 1) < 0)
		return -ENOMEM;
	ps->v[ps->n++] = (struct prefix){addr & mask, mask};
	return 0;
}

static unsigned prefix_len(uint32_t mask)
{
	return (unsigned)__builtin_popcount(mask);
}

/* "{ 10.77.1.2, 198.51.100.0/24 }" into @out. */
static void prefixes_render(const struct prefixes *ps, FILE *out)
{
	fputs("{ ", out);
	for (size_t i = 0; i < ps->n; i++) {
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &ps->v[i].addr, a, sizeof(a));
		if (prefix_len(ps->v[i].mask) == 32)
			fprintf(out, "%s%s", i ? ", " : "", a);
		else
			fprintf(out, "%s%s/%u", i ? ", " : "", a, prefix_len(ps->v[i].mask));
	}
	fputs(" }", out);
}

/* The conditions on the far end of a flow that a side names: up to two
 * alternatives (its addresses; everything outside the LAN), and what it
 * excludes. */
struct far {
	bool never;    /* the side names nothing this host can match */
	bool all;      /* no condition on the address (except the exclusions) */
	bool internet; /* one alternative: outside the LAN */
	struct prefixes in;
	bool except_internet; /* the far end must be inside the LAN */
	struct prefixes except;
};

static void far_free(struct far *f)
{
	free(f->in.v);
	free(f->except.v);
}

/* Adds @e's addresses to @ps; *@ret_internet, *@ret_any when @e is one of
 * those. A host not located yet has no address: it matches nothing here. */
static int end_addresses(const struct policy_net *net, const struct policy_end *e,
                         struct prefixes *ps, bool *ret_internet, bool *ret_any)
{
	const struct policy_host *h;
	switch (e->kind) {
	case POLICY_END_ANY:
		*ret_any = true;
		return 0;
	case POLICY_END_INTERNET:
		*ret_internet = true;
		return 0;
	case POLICY_END_LAN:
		return prefixes_add(ps, net->lan_addr, net->lan_mask);
	case POLICY_END_HOST:
		h = policy_net_host(net, e->host);
		return h && h->guest_addr ? prefixes_add(ps, h->guest_addr, 0xffffffffu) : 0;
	case POLICY_END_PREFIX:
		return prefixes_add(ps, e->addr, e->mask);
	}
	return 0;
}

/* The far end of a side that asks for a program or user there: only a
 * managed host's AEE knows one, so the side is the located hosts it names
 * (other than @self). */
static int far_build_hosts(const struct policy_net *net, const struct policy_side *s,
                           const char *self, struct far *f)
{
	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < net->n_hosts; i++) {
		const struct policy_host *h = &net->hosts[i];
		struct policy_end e = {.kind = POLICY_END_HOST};
		snprintf(e.host, sizeof(e.host), "%s", h->name);
		if (h->guest_addr && !h->device && strcmp(h->name, self) != 0 &&
		    policy_side_matches(net, s, &e) &&
		    prefixes_add(&f->in, h->guest_addr, 0xffffffffu) < 0)
			return -ENOMEM;
	}
	f->never = f->in.n == 0;
	return 0;
}

static int far_build(const struct policy_net *net, const struct policy_side *s, struct far *f)
{
	memset(f, 0, sizeof(*f));
	bool any = false;
	for (size_t i = 0; i < s->n; i++)
		if (end_addresses(net, &s->v[i], &f->in, &f->internet, &any) < 0)
			return -ENOMEM;
	bool any_except = false;
	for (size_t i = 0; i < s->n_except; i++)
		if (end_addresses(net, &s->except[i], &f->except, &f->except_internet,
		                  &any_except) < 0)
			return -ENOMEM;
	bool lan = false;
	for (size_t i = 0; i < f->in.n; i++)
		lan |= f->in.v[i].addr == net->lan_addr && f->in.v[i].mask == net->lan_mask;
	f->all = any || (lan && f->internet);
	f->never = any_except || (!f->all && !f->internet && f->in.n == 0);
	return 0;
}

/* One policy rule as nftables rules: each alternative of the far end by
 * each protocol, all ending in the rule's verdict, so first match holds. */
struct emit {
	struct dp_fragment *frag;
	struct dp_chain *chain;
	const struct policy_net *net;
	bool outbound; /* the guest's own flows: the far end is the destination */
	const char *self;
	const char *far_addr; /* "ct original ip daddr" or "ct original ip saddr" */
	const char *port;     /* "ct original proto-dst" or "ct reply proto-src" */
	char verdict[48];
	char lan[INET_ADDRSTRLEN + 4];
	uint64_t epoch;
	bool audit;
	/* A device's end (policy_ruleset_build_devices()): judged at every
	 * packet, an allow returning to the next end's judgement. */
	bool device;
};

/* A flow that @match matches, decided at @line (0: the default): allowed
 * (logged first, with @log), or denied: logged, at most
 * POLICY_LOG_RATE a second, and dropped; in audit mode logged as a flow
 * that would be denied, and let through. A flow's logged packet is the
 * first it sends in the epoch (a device's: its first), or each one that
 * is dropped. */
static void emit_verdict(struct emit *em, const char *match, bool allow, bool log, unsigned line)
{
	char prefix[64 + POLICY_WORD_MAX];
	snprintf(prefix, sizeof(prefix),
	         "log group %u prefix \"" POLICY_LOG_PREFIX "%llu %u %c %c%s%s\"", POLICY_LOG_GROUP,
	         (unsigned long long)em->epoch, line,
	         allow       ? 'a'
	         : em->audit ? 'w'
	                     : 'd',
	         em->outbound ? 'o' : 'i', em->device ? " " : "", em->device ? em->self : "");
	bool logs = allow ? log : em->audit;
	if ((allow || em->audit) && em->device) {
		if (logs)
			dp_fragment_chain_rule(em->frag, em->chain, "%sct state new %s", match,
			                       prefix);
		dp_fragment_chain_rule(em->frag, em->chain, "%s%s", match, em->verdict);
	} else if (allow || em->audit) {
		dp_fragment_chain_rule(em->frag, em->chain, "%s%s%s%s", match, logs ? prefix : "",
		                       logs ? " " : "", em->verdict);
	} else {
		dp_fragment_chain_rule(em->frag, em->chain,
		                       "%slimit rate %u/second burst %u packets %s", match,
		                       POLICY_LOG_RATE, POLICY_LOG_RATE, prefix);
		dp_fragment_chain_rule(em->frag, em->chain, "%sdrop", match);
	}
}

/* The ranges of @proto in @v, sorted and merged, into @ret (room for @n). */
static size_t merged_ranges(const struct policy_port *v, size_t n, uint8_t proto,
                            struct policy_port *ret)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i].proto == proto)
			ret[k++] = v[i];
	for (size_t i = 1; i < k; i++)
		for (size_t j = i; j > 0 && ret[j].lo < ret[j - 1].lo; j--) {
			struct policy_port t = ret[j];
			ret[j] = ret[j - 1];
			ret[j - 1] = t;
		}
	size_t m = 0;
	for (size_t i = 0; i < k; i++) {
		if (m && ret[i].lo <= ret[m - 1].hi + 1u) {
			if (ret[i].hi > ret[m - 1].hi)
				ret[m - 1].hi = ret[i].hi;
			continue;
		}
		ret[m++] = ret[i];
	}
	return m;
}

struct alts {
	size_t n, cap;
	char **v;
};

static void alts_free(struct alts *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

static int alts_add(struct alts *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int alts_add(struct alts *a, const char *fmt, ...)
{
	if (ARRAY_RESERVE(a->v, a->cap, a->n + 1) < 0)
		return -ENOMEM;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&a->v[a->n], fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	a->n++;
	return 0;
}

/* The protocol and port conditions of a rule, one per merged range ("" for
 * every protocol): one range per nftables rule, since nft gives a set of
 * conntrack ports no type. */
static int port_alternatives(const struct emit *em, const struct policy_rule *r, struct alts *a)
{
	if (r->n_ports == 0)
		return alts_add(a, "%s", "");
	static const uint8_t protos[] = {POLICY_PROTO_TCP, POLICY_PROTO_UDP, POLICY_PROTO_ICMP};
	static const char *const names[] = {"tcp", "udp", "icmp"};
	struct policy_port *ranges = malloc(r->n_ports * sizeof(*ranges));
	if (!ranges)
		return -ENOMEM;
	int ret = 0;
	for (size_t p = 0; ret == 0 && p < 3; p++) {
		size_t n = merged_ranges(r->ports, r->n_ports, protos[p], ranges);
		if (n == 0)
			continue;
		if (protos[p] == POLICY_PROTO_ICMP ||
		    (ranges[0].lo == 0 && ranges[0].hi == 65535)) {
			ret = alts_add(a, "meta l4proto %s ", names[p]);
			continue;
		}
		for (size_t i = 0; ret == 0 && i < n; i++)
			ret = ranges[i].lo == ranges[i].hi
			          ? alts_add(a, "meta l4proto %s %s %u ", names[p], em->port,
			                     ranges[i].lo)
			          : alts_add(a, "meta l4proto %s %s %u-%u ", names[p], em->port,
			                     ranges[i].lo, ranges[i].hi);
	}
	free(ranges);
	return ret;
}

/* A rule as this AEE renders it: one that asks for a program or user at
 * this end as for one that cannot be known (the agent judges the flows it
 * attributes); at the far end, an allow as met there (its AEE decides),
 * a deny not at all. */
static int emit_rule(struct emit *em, const struct policy_rule *r)
{
	static const struct policy_who unknown = {0};
	const struct policy_side *mine = em->outbound ? &r->from : &r->to;
	const struct policy_side *theirs = em->outbound ? &r->to : &r->from;
	if (policy_side_qualified(mine) &&
	    (em->device || !policy_who_matches(&mine->who, &unknown)))
		return 0; /* a device's programs are known to no AEE: such a rule never matches */
	if (policy_side_qualified(theirs) && !r->allow)
		return 0;
	struct far far;
	int ret = policy_side_qualified(theirs) ? far_build_hosts(em->net, theirs, em->self, &far)
	                                        : far_build(em->net, theirs, &far);
	if (ret < 0 || far.never) {
		far_free(&far);
		return ret;
	}
	struct alts ports = {0};
	ret = port_alternatives(em, r, &ports);
	for (int alt = 0; ret == 0 && alt < 2; alt++) {
		/* alt 0: the side's addresses (or no condition); alt 1: outside the LAN. */
		if (alt == 0 && !far.all && far.in.n == 0)
			continue;
		if (alt == 1 && (far.all || !far.internet))
			continue;
		char *cond = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&cond, &len);
		if (!f) {
			ret = -ENOMEM;
			break;
		}
		if (alt == 0 && !far.all) {
			fprintf(f, "%s ", em->far_addr);
			prefixes_render(&far.in, f);
			fputc(' ', f);
		} else if (alt == 1) {
			fprintf(f, "%s != %s ", em->far_addr, em->lan);
		}
		if (far.except_internet)
			fprintf(f, "%s %s ", em->far_addr, em->lan);
		if (far.except.n) {
			fprintf(f, "%s != ", em->far_addr);
			prefixes_render(&far.except, f);
			fputc(' ', f);
		}
		if (fclose(f) != 0 || !cond) {
			free(cond);
			ret = -ENOMEM;
			break;
		}
		for (size_t p = 0; p < ports.n; p++) {
			char *match = NULL;
			if (asprintf(&match, "%s%s", cond, ports.v[p]) < 0) {
				ret = -ENOMEM;
				break;
			}
			emit_verdict(em, match, r->allow, r->log, r->pos.line);
			free(match);
		}
		free(cond);
	}
	alts_free(&ports);
	far_free(&far);
	return ret < 0 ? ret : em->frag->status;
}

bool policy_needs_agent(const struct policy *p, const struct policy_net *net,
                        const struct policy_host *self, bool outbound)
{
	if (self->device)
		return false;
	struct policy_end me = {.kind = POLICY_END_HOST};
	snprintf(me.host, sizeof(me.host), "%s", self->name);
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct policy_side *s = outbound ? &p->rules[i].from : &p->rules[i].to;
		if (policy_side_qualified(s) && policy_side_matches(net, s, &me))
			return true;
	}
	return false;
}

/* A flow to or from another managed host that no rule matches must pass
 * both defaults (policy.h): where this end's default allows and the other
 * end's does not, the other hosts are denied here too. */
static void emit_both_defaults(struct emit *em, const struct policy *p)
{
	bool mine = em->outbound ? p->outbound_allow : p->inbound_allow;
	bool theirs = em->outbound ? p->inbound_allow : p->outbound_allow;
	if (!mine || theirs)
		return;
	struct prefixes others = {0};
	for (size_t i = 0; i < em->net->n_hosts; i++) {
		const struct policy_host *h = &em->net->hosts[i];
		if (h->guest_addr && strcmp(h->name, em->self) != 0 &&
		    prefixes_add(&others, h->guest_addr, 0xffffffffu) < 0) {
			dp_fragment_fail(em->frag, -ENOMEM, "out of memory");
			break;
		}
	}
	if (others.n) {
		char *set = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&set, &len);
		if (f) {
			prefixes_render(&others, f);
			fclose(f);
		}
		char *match = NULL;
		if (set && asprintf(&match, "%s %s ", em->far_addr, set) > 0)
			emit_verdict(em, match, false, false, 0);
		else
			dp_fragment_fail(em->frag, -ENOMEM, "out of memory");
		free(match);
		free(set);
	}
	free(others.v);
}

/* The rules of @self's end into @chains (outbound, inbound), each allowed
 * flow ending in @allow_verdict. */
static int emit_end(const struct policy *p, uint64_t epoch, int minute,
                    const struct policy_net *net, const struct policy_host *self,
                    struct dp_chain *chains[2], const char *allow_verdict, struct dp_fragment *out)
{
	char lan[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &net->lan_addr, lan, sizeof(lan));
	struct policy_end me = {.kind = POLICY_END_HOST};
	snprintf(me.host, sizeof(me.host), "%s", self->name);
	for (int dir = 0; dir < 2; dir++) {
		bool outbound = dir == 0;
		struct emit em = {
		    .frag = out,
		    .chain = chains[dir],
		    .net = net,
		    .outbound = outbound,
		    .self = self->name,
		    .far_addr = outbound ? "ct original ip daddr" : "ct original ip saddr",
		    .port = outbound ? "ct original proto-dst" : "ct reply proto-src",
		    .epoch = epoch,
		    .audit = p->audit,
		    .device = self->device,
		};
		snprintf(em.verdict, sizeof(em.verdict), "%s", allow_verdict);
		snprintf(em.lan, sizeof(em.lan), "%s/%u", lan, prefix_len(net->lan_mask));
		for (size_t i = 0; i < p->n_rules; i++) {
			const struct policy_rule *r = &p->rules[i];
			if (!policy_rule_open(r, minute) ||
			    !policy_side_matches(net, outbound ? &r->from : &r->to, &me))
				continue;
			int ret = emit_rule(&em, r);
			if (ret < 0)
				return ret;
		}
		emit_both_defaults(&em, p);
		emit_verdict(&em, "", outbound ? p->outbound_allow : p->inbound_allow,
		             outbound ? p->outbound_log : p->inbound_log, 0);
	}
	return out->status;
}

/* @p's chains for @self's guest under @epoch: @name (a base chain of the
 * forward hook when @hooked, else one the dispatch jumps to), and its two
 * ends, @name_out and @name_in. */
static int render_host(const struct policy *p, uint64_t epoch, int minute,
                       const struct policy_net *net, const struct policy_host *self,
                       const char *name, bool hooked, struct dp_fragment *out)
{
	char guest[INET_ADDRSTRLEN], names[2][DP_NAME_MAX];
	inet_ntop(AF_INET, &self->guest_addr, guest, sizeof(guest));
	uint32_t mark = policy_epoch_mark(epoch, policy_time_slot(&p->time, minute));
	struct dp_chain *base, *chains[2];
	dp_fragment_chain(out, name, NULL, hooked ? "forward" : NULL, hooked ? "-10" : NULL,
	                  hooked ? "accept" : NULL, &base);
	for (int dir = 0; dir < 2; dir++) {
		snprintf(names[dir], sizeof(names[dir]), "%s_%s", name, dir == 0 ? "out" : "in");
		dp_fragment_chain(out, names[dir], NULL, NULL, NULL, NULL, &chains[dir]);
	}
	if (out->status)
		return out->status;
	dp_fragment_chain_rule(out, base, "ct mark 0x%08x accept", mark);
	if (policy_needs_agent(p, net, self, true) || policy_needs_agent(p, net, self, false))
		dp_fragment_chain_rule(out, base, "meta mark 0x%08x ct mark set 0x%08x accept",
		                       policy_agent_mark(epoch), mark);
	dp_fragment_chain_rule(out, base, "ct original ip saddr %s jump %s", guest, names[0]);
	dp_fragment_chain_rule(out, base, "ct reply ip saddr %s jump %s", guest, names[1]);
	char verdict[48];
	snprintf(verdict, sizeof(verdict), "ct mark set 0x%08x accept", mark);
	return emit_end(p, epoch, minute, net, self, chains, verdict, out);
}

int policy_ruleset_build(const struct policy *p, uint64_t epoch, int minute,
                         const struct policy_net *net, const struct policy_host *self,
                         struct dp_fragment *out)
{
	return render_host(p, epoch, minute, net, self, POLICY_CHAIN, true, out);
}

/* The devices' ends under @epoch: @name (hooked as policy_ruleset_build_devices()
 * says, or not), and each device's two chains, named after @ends. */
static int render_devices(const struct policy *p, uint64_t epoch, int minute,
                          const struct policy_net *net, const char *name, const char *ends,
                          bool hooked, struct dp_fragment *out)
{
	struct dp_chain *base = NULL;
	for (size_t i = 0; i < net->n_hosts && out->status == 0; i++) {
		const struct policy_host *d = &net->hosts[i];
		if (!d->device || !d->guest_addr)
			continue; /* its address not learned yet: it sends nothing here */
		if (!base &&
		    dp_fragment_chain(out, name, NULL, hooked ? "forward" : NULL,
		                      hooked ? "-9" : NULL, hooked ? "accept" : NULL, &base) < 0)
			break;
		char addr[INET_ADDRSTRLEN], names[2][DP_NAME_MAX];
		inet_ntop(AF_INET, &d->guest_addr, addr, sizeof(addr));
		struct dp_chain *chains[2];
		for (int dir = 0; dir < 2; dir++) {
			snprintf(names[dir], sizeof(names[dir]), "%s_d%u_%s", ends, (unsigned)i,
			         dir == 0 ? "out" : "in");
			dp_fragment_chain(out, names[dir], NULL, NULL, NULL, NULL, &chains[dir]);
		}
		if (out->status)
			break;
		dp_fragment_chain_rule(out, base, "ct original ip saddr %s jump %s", addr,
		                       names[0]);
		dp_fragment_chain_rule(out, base, "ct reply ip saddr %s jump %s", addr, names[1]);
		if (emit_end(p, epoch, minute, net, d, chains, "return", out) < 0)
			break;
	}
	return out->status;
}

int policy_ruleset_build_devices(const struct policy *p, uint64_t epoch, int minute,
                                 const struct policy_net *net, struct dp_fragment *out)
{
	return render_devices(p, epoch, minute, net, POLICY_CHAIN_DEVICES, POLICY_CHAIN, true, out);
}

static bool has_devices(const struct policy_net *net)
{
	for (size_t i = 0; i < net->n_hosts; i++)
		if (net->hosts[i].device && net->hosts[i].guest_addr)
			return true;
	return false;
}

/* The base chain @name (at @priority) that judges each packet under its
 * epoch: one the agent judged under an installed epoch but the active one
 * (its mark says which), or that came from the LAN (by @uplink, from an
 * address of the LAN: not the internet's) stamped with one, goes
 * to that epoch's chain (or passes: no policy), every other one to the
 * active epoch's. */
static int render_dispatch(const struct policy_installed *in, size_t n,
                           const struct policy_net *net, const char *uplink, const char *name,
                           const char *priority, struct dp_fragment *out)
{
	struct dp_chain *base;
	char chain[DP_NAME_MAX], lan[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &net->lan_addr, lan, sizeof(lan));
	if (dp_fragment_chain(out, name, NULL, "forward", priority, "accept", &base) < 0)
		return out->status;
	/* What the agent judged goes under the epoch it judged it under
	 * (policy_agent_mark()); then what the LAN stamped. */
	for (int stamped = 0; stamped < 2; stamped++)
		for (size_t i = 1; i < n; i++) {
			snprintf(chain, sizeof(chain), "%s_e%llu", name,
			         (unsigned long long)in[i].epoch);
			char verdict[DP_NAME_MAX + 8];
			snprintf(verdict, sizeof(verdict), in[i].p ? "goto %s" : "accept", chain);
			if (stamped)
				dp_fragment_chain_rule(
				    out, base,
				    "iifname \"%s\" ip saddr %s/%u ip dscp & 0x03 == %u %s", uplink,
				    lan, prefix_len(net->lan_mask), policy_epoch_stamp(in[i].epoch),
				    verdict);
			else
				dp_fragment_chain_rule(out, base, "meta mark 0x%08x %s",
				                       policy_agent_mark(in[i].epoch), verdict);
		}
	if (in[0].p) {
		snprintf(chain, sizeof(chain), "%s_e%llu", name, (unsigned long long)in[0].epoch);
		dp_fragment_chain_rule(out, base, "goto %s", chain);
	}
	return out->status;
}

/* Stamps what leaves for the LAN with the active epoch (what the agent
 * judged under another installed one, with that one), in the two low
 * bits of the DSCP (the other four kept): nftables cannot change part of
 * a field with the checksum mended, so one rule by the value of the four. */
static int render_stamp(const struct policy_installed *in, size_t n, const struct policy_net *net,
                        const char *uplink, struct dp_fragment *out)
{
	struct dp_chain *c;
	char lan[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &net->lan_addr, lan, sizeof(lan));
	if (dp_fragment_chain(out, POLICY_CHAIN_STAMP, NULL, "forward", "50", "accept", &c) < 0)
		return out->status;
	dp_fragment_chain_rule(out, c, "oifname != \"%s\" accept", uplink);
	dp_fragment_chain_rule(out, c, "ip daddr != %s/%u accept", lan, prefix_len(net->lan_mask));
	for (size_t i = 1; i < n; i++)
		for (unsigned high = 0; high < 64; high += 4)
			dp_fragment_chain_rule(
			    out, c,
			    "meta mark 0x%08x ip dscp & 0x3c == 0x%02x ip dscp set 0x%02x accept",
			    policy_agent_mark(in[i].epoch), high,
			    high | policy_epoch_stamp(in[i].epoch));
	for (unsigned high = 0; high < 64; high += 4)
		dp_fragment_chain_rule(out, c, "ip dscp & 0x3c == 0x%02x ip dscp set 0x%02x accept",
		                       high, high | policy_epoch_stamp(in[0].epoch));
	return out->status;
}

int policy_ruleset_build_installed(const struct policy_installed *in, size_t n,
                                   const struct policy_net *net, const struct policy_host *self,
                                   bool devices, const char *uplink, struct dp_fragment *out)
{
	if (n == 0)
		return 0;
	if (render_stamp(in, n, net, uplink, out) < 0)
		return out->status;
	devices = devices && has_devices(net);
	if (n == 1) {
		/* Nothing else installed: the chains judge under the active
		 * epoch alone. */
		if (!in[0].p)
			return out->status;
		if (policy_ruleset_build(in[0].p, in[0].epoch, in[0].minute, net, self, out) < 0)
			return out->status;
		if (devices)
			policy_ruleset_build_devices(in[0].p, in[0].epoch, in[0].minute, net, out);
		return out->status;
	}
	render_dispatch(in, n, net, uplink, POLICY_CHAIN, "-10", out);
	if (devices)
		render_dispatch(in, n, net, uplink, POLICY_CHAIN_DEVICES, "-9", out);
	for (size_t i = 0; i < n && out->status == 0; i++) {
		if (!in[i].p)
			continue;
		char name[DP_NAME_MAX], ends[DP_NAME_MAX];
		snprintf(name, sizeof(name), POLICY_CHAIN "_e%llu",
		         (unsigned long long)in[i].epoch);
		if (render_host(in[i].p, in[i].epoch, in[i].minute, net, self, name, false, out) <
		    0)
			break;
		snprintf(ends, sizeof(ends), "%s", name);
		snprintf(name, sizeof(name), POLICY_CHAIN_DEVICES "_e%llu",
		         (unsigned long long)in[i].epoch);
		if (devices)
			render_devices(in[i].p, in[i].epoch, in[i].minute, net, name, ends, false,
			               out);
	}
	return out->status;
}
