/* NAT's fragment of the datapath (nat.h, docs/nat.md): from the view
 * nat_datapath() computes, the source NAT of this host's flows into its
 * blocks, the inbound mappings to its guest, the steering of packets for
 * others' blocks and mappings to their owners' AEEs on the uplink, the
 * guard that lets nothing out untranslated before a block is held, the
 * filtering of inbound UDP the host's configuration chooses, the route to
 * the ISP gateway and the conntrack UDP timers. Pure. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datapath/fragment.h"
#include "nat.h"
#include "lib/addr.h"
#include "lib/mac.h"

/* "{ 203.0.113.10, 203.0.113.11 }" */
static void publics_set(FILE *f, const struct nat_view *nat)
{
	char a[ADDR_STR_MAX];
	fputs("{ ", f);
	for (unsigned i = 0; i < nat->n_publics; i++)
		fprintf(f, "%s%s", i ? ", " : "", addr_format(nat->publics[i], a));
	fputs(" }", f);
}

/* "{ 2048-3071 : 02:..., ... }": others' blocks to their owners' AEEs. */
static void others_map(FILE *f, const struct nat_view *nat)
{
	char m[MAC_STR_MAX];
	fputs("{ ", f);
	for (unsigned i = 0; i < nat->n_others; i++) {
		const struct nat_view_block *b = &nat->others[i];
		fprintf(f, "%s%u-%u : %s", i ? ", " : "", b->start, b->start + b->size - 1,
		        mac_format(b->mac, m));
	}
	fputs(" }", f);
}

/* A rule written piece by piece into a memory stream. */
struct text {
	char *s;
	size_t len;
	FILE *f;
};

static int text_open(struct text *t)
{
	*t = (struct text){0};
	t->f = open_memstream(&t->s, &t->len);
	return t->f ? 0 : -ENOMEM;
}

/* Closes @t and adds what it holds to @c (NULL: at @at). */
static int text_add(struct text *t, struct dp_fragment *out, struct dp_chain *c, enum dp_point at)
{
	int r = fclose(t->f) == 0 ? 0 : -ENOMEM;
	if (r == 0)
		r = c ? dp_fragment_chain_rule(out, c, "%s", t->s)
		      : dp_fragment_rule(out, at, "%s", t->s);
	free(t->s);
	return r;
}

/* "{ 0 : A . B0, 1 : A . B1 }": the blocks by index. */
static void blocks_map(FILE *f, const struct nat_view *nat, const char *pub)
{
	fputs("{ ", f);
	for (unsigned i = 0; i < nat->n_own; i++) {
		const struct nat_view_block *b = &nat->own[i];
		fprintf(f, "%s%u : %s . %u-%u", i ? ", " : "", i, pub, b->start,
		        b->start + b->size - 1u);
	}
	fputs(" }", f);
}

/* Outbound: the guest's (and the AEE's own) flows to outside the network
 * leave with the public address and a port (ICMP: an echo id) from this
 * host's blocks.
 *
 * Endpoint-independent mapping (RFC 4787 REQ-1): the kernel's SNAT keeps a
 * source port that lies in the rule's range and is unique, and otherwise
 * reuses the public port an earlier flow of the same source address and
 * port got, if that is in the range (nf_nat_core.c, get_unique_tuple). The
 * guest's ephemeral ports lie in the blocks (guest.h), so with several
 * blocks a port is translated by the rule of its own block; a port outside
 * them (bound explicitly) picks its block by a hash of the port, so every
 * flow of it lands in the same range and gets the port its first flow got.
 * ICMP echo ids are spread over the blocks in turn.
 *
 * One rule per block, its range written in the rule, not one lookup in an
 * interval map: while a ruleset is replaced, such a lookup was seen to miss
 * (in 1 of about 2,000 new flows during a burst, on Linux 6.18), and the
 * flow then fell to the hash rule, which gave it a port of another block,
 * one the guest's own next flow would pick; the two collided in conntrack,
 * and the second's SYN was dropped (insert_failed). Only a flow's first
 * packet walks the chain. */
static int outbound(struct dp_fragment *out, const struct dp_config *cfg,
                    const struct nat_view *nat)
{
	char pub[ADDR_STR_MAX], net[ADDR_STR_MAX], head[128];
	dp_config_prefix(cfg, net);
	addr_format(nat->public_addr, pub);
	snprintf(head, sizeof(head), "oifname \"%s\" ip daddr != %s/%u", cfg->uplink_if, net,
	         cfg->control_plen);
	struct dp_chain *c;
	int r = dp_fragment_chain(out, "nat_out", "nat", "postrouting", "srcnat", "accept", &c);
	if (r < 0)
		return r;
	if (nat->n_own == 1)
		return dp_fragment_chain_rule(
		    out, c, "%s meta l4proto { tcp, udp, icmp } snat ip to %s:%u-%u", head, pub,
		    nat->own[0].start, nat->own[0].start + nat->own[0].size - 1);
	for (unsigned i = 0; r == 0 && i < nat->n_own; i++) {
		unsigned first = nat->own[i].start, last = first + nat->own[i].size - 1u;
		r = dp_fragment_chain_rule(
		    out, c, "%s meta l4proto { tcp, udp } th sport %u-%u snat ip to %s:%u-%u", head,
		    first, last, pub, first, last);
	}
	for (int kind = 0; r == 0 && kind < 2; kind++) {
		struct text t;
		if ((r = text_open(&t)) < 0)
			return r;
		if (kind == 0)
			fprintf(
			    t.f,
			    "%s meta l4proto { tcp, udp } snat ip to jhash th sport mod %u map ",
			    head, nat->n_own);
		else
			fprintf(t.f, "%s meta l4proto icmp snat ip to numgen inc mod %u map ", head,
			        nat->n_own);
		blocks_map(t.f, nat, pub);
		r = text_add(&t, out, c, 0);
	}
	return r;
}

/* Filtering (RFC 4787 section 5, REQ-8) of UDP, beyond conntrack's own
 * address-and-port-dependent kind: what the guest's translated flows have
 * sent is remembered from the packet path, after the source NAT (chain
 * nat_sent, postrouting after srcnat): in the map nat_ports, each public
 * port a guest flow has, to the guest's port behind it; with
 * address-dependent filtering, in the set nat_peers, each address it sent
 * to with that public port. A new inbound flow (no conntrack entry) for a
 * public port of nat_ports (endpoint-independent) or from an address of
 * nat_peers to that port (address-dependent) is translated to the guest's
 * port (chain nat_in, after the inbound mappings). Each element lives
 * NAT_FILTER_TIMEOUT after the last packet out, the longest the kernel
 * keeps a UDP flow (nf_conntrack_udp_timeout_stream, way_out()), and
 * outlives a new table (fragment.h). Only flows the guest started count
 * (ct direction original), not the answers to inbound ones. */
#define NAT_FILTER_TIMEOUT   "300s"
#define NAT_FILTER_SPEC(key) "type " key "; flags dynamic,timeout; timeout " NAT_FILTER_TIMEOUT ";"

static bool filtering(const struct nat_view *nat)
{
	return nat->n_own && nat->filtering != NAT_FILTER_ADDRESS_PORT;
}

static int filtering_sent(struct dp_fragment *out, const struct dp_config *cfg,
                          const struct nat_view *nat)
{
	if (!filtering(nat))
		return 0;
	bool by_address = nat->filtering == NAT_FILTER_ADDRESS;
	int r = dp_fragment_set(out, "map", "nat_ports",
	                        NAT_FILTER_SPEC("inet_service : inet_service"));
	if (r == 0 && by_address)
		r = dp_fragment_set(out, "set", "nat_peers",
		                    NAT_FILTER_SPEC("ipv4_addr . inet_service"));
	struct dp_chain *c;
	if (r == 0)
		r = dp_fragment_chain(out, "nat_sent", NULL, "postrouting", "srcnat + 10", "accept",
		                      &c);
	char pub[ADDR_STR_MAX], head[160];
	snprintf(head, sizeof(head),
	         "oifname \"%s\" ip saddr %s meta l4proto udp ct direction original",
	         cfg->uplink_if, addr_format(nat->public_addr, pub));
	if (r == 0)
		r = dp_fragment_chain_rule(
		    out, c, "%s update @nat_ports { ct reply proto-dst : ct original proto-src }",
		    head);
	if (r == 0 && by_address)
		r = dp_fragment_chain_rule(
		    out, c, "%s update @nat_peers { ip daddr . ct reply proto-dst }", head);
	return r;
}

/* nat_in's rule for new flows that filtering lets in (after the mappings). */
static int filtering_in(struct dp_fragment *out, struct dp_chain *c, const struct dp_config *cfg,
                        const struct nat_view *nat)
{
	char pub[ADDR_STR_MAX], guest[ADDR_STR_MAX];
	addr_format(nat->public_addr, pub);
	addr_format(cfg->guest_addr, guest);
	return dp_fragment_chain_rule(
	    out, c,
	    "iifname \"%s\" ip daddr %s ct state new %s dnat ip to %s : udp dport map @nat_ports",
	    cfg->uplink_if, pub,
	    nat->filtering == NAT_FILTER_ADDRESS ? "ip saddr . udp dport @nat_peers"
	                                         : "udp dport @nat_ports",
	    guest);
}

/* Inbound mappings of this host: the public port to the guest's; then
 * what filtering lets in. */
static int mappings(struct dp_fragment *out, const struct dp_config *cfg,
                    const struct nat_view *nat)
{
	if (nat->n_own_maps == 0 && !filtering(nat))
		return 0;
	struct dp_chain *c;
	int r = dp_fragment_chain(out, "nat_in", "nat", "prerouting", "dstnat", "accept", &c);
	char guest[ADDR_STR_MAX];
	addr_format(cfg->guest_addr, guest);
	for (unsigned i = 0; r == 0 && i < nat->n_own_maps; i++) {
		const struct nat_view_mapping *m = &nat->own_maps[i];
		struct text t;
		if ((r = text_open(&t)) < 0)
			return r;
		fprintf(t.f, "iifname \"%s\" ip daddr ", cfg->uplink_if);
		publics_set(t.f, nat);
		fprintf(t.f, " %s dport %u dnat ip to %s:%u", m->proto == 6 ? "tcp" : "udp",
		        m->public_port, guest, m->guest_port);
		r = text_add(&t, out, c, 0);
	}
	if (r == 0 && filtering(nat))
		r = filtering_in(out, c, cfg, nat);
	return r;
}

/* An ICMP error (RFC 792) for a translated flow quotes the packet that
 * caused it: that packet's IP header (20 octets when it has no options:
 * IHL 5, bits 68-71 from the ICMP header's start), whose protocol is at
 * octet 8 + 9, then its source port (TCP, UDP; octet 28) or, for an echo
 * request (type 8 at octet 28), its identifier (octet 32): the public port
 * or echo id of the flow, which names its owner. */
#define ICMP_ERROR                                                                                 \
	" icmp type { destination-unreachable, source-quench, time-exceeded, parameter-problem }"  \
	" @th,68,4 5"
#define QUOTED_PORT " @th,136,8 { 6, 17 } ether daddr set @th,224,16 map "
#define QUOTED_ECHO " @th,136,8 1 @th,224,8 8 ether daddr set @th,256,16 map "

/* A packet for a public port that is not this host's, sent here by the
 * switch (no flow for it yet, or ICMP, which the switch cannot match by
 * echo id or quoted port): straight on to the owner's AEE, on the uplink's
 * ingress. Without this, the ICMP errors of others' flows (port
 * unreachable, fragmentation needed, time exceeded) would die here, and
 * path-MTU discovery and traceroute with them. */
static int steer(struct dp_fragment *out, const struct dp_config *cfg, const struct nat_view *nat)
{
	static const char *const kinds[] = {
	    " meta l4proto { tcp, udp } ether daddr set th dport map ",
	    " ether daddr set icmp id map ",
	    ICMP_ERROR QUOTED_PORT,
	    ICMP_ERROR QUOTED_ECHO,
	};
	char own[MAC_STR_MAX], m[MAC_STR_MAX];
	mac_format(nat->own_mac, own);
	int r = 0;
	for (size_t kind = 0; r == 0 && nat->n_others && kind < sizeof(kinds) / sizeof(kinds[0]);
	     kind++) {
		struct text t;
		if ((r = text_open(&t)) < 0)
			return r;
		fputs("ip daddr ", t.f);
		publics_set(t.f, nat);
		fputs(kinds[kind], t.f);
		others_map(t.f, nat);
		fprintf(t.f, " ether saddr set %s fwd to \"%s\"", own, cfg->uplink_if);
		r = text_add(&t, out, NULL, DP_INGRESS);
	}
	for (unsigned i = 0; r == 0 && i < nat->n_other_maps; i++) {
		const struct nat_view_mapping *x = &nat->other_maps[i];
		struct text t;
		if ((r = text_open(&t)) < 0)
			return r;
		fputs("ip daddr ", t.f);
		publics_set(t.f, nat);
		fprintf(t.f, " %s dport %u ether daddr set %s ether saddr set %s fwd to \"%s\"",
		        x->proto == 6 ? "tcp" : "udp", x->public_port, mac_format(x->mac, m), own,
		        cfg->uplink_if);
		r = text_add(&t, out, NULL, DP_INGRESS);
		if (r < 0 || (r = text_open(&t)) < 0)
			return r;
		fputs("ip daddr ", t.f);
		publics_set(t.f, nat);
		fprintf(t.f,
		        ICMP_ERROR
		        " @th,136,8 %u @th,224,16 %u ether daddr set %s ether saddr set %s "
		        "fwd to \"%s\"",
		        x->proto, x->public_port, m, own, cfg->uplink_if);
		r = text_add(&t, out, NULL, DP_INGRESS);
	}
	return r;
}

/* Inbound fragments (struct nat_view_fragments, docs/nat.md "Fragments").
 * On every AEE but the reassembler, first on the uplink's ingress: any
 * fragment for a public address (an offset, or more to come) goes to the
 * reassembler, but what the reassembler sent. On the reassembler, once the
 * kernel has put a datagram together (prerouting at raw priority, after
 * the defragmentation at -400): one from the uplink (only a reassembled
 * one gets that far: ingress steers the others; the guest's own, to a
 * public address, are hairpinned and translated as usual) for another
 * host's port or echo id is
 * marked with that host's entry (FRAG_MARK + its index), not tracked (so
 * not translated here) and forwarded out of the uplink again; the kernel
 * fragments it as it leaves, each fragment keeps the mark, and the
 * uplink's egress gives it the owner's MAC by the mark. Its own datagrams
 * go on to conntrack, as any packet does. */
#define FRAG_MARK      0xe77e0000u
#define FRAG_MARK_MASK 0xffff0000u
/* Others' blocks take the marks FRAG_MARK + 1 on, others' mappings the
 * ones after: the mark's low 16 bits number at most this many. */
#define FRAG_MARKS_MAX 0xffffu

/* The mark of others' mapping @i. */
static uint32_t map_mark(const struct nat_view *nat, unsigned i)
{
	return FRAG_MARK + nat->n_others + i + 1;
}

static void mark_map(FILE *f, const struct nat_view *nat)
{
	fputs("{ ", f);
	for (unsigned i = 0; i < nat->n_others; i++) {
		const struct nat_view_block *b = &nat->others[i];
		fprintf(f, "%s%u-%u : 0x%08x", i ? ", " : "", b->start, b->start + b->size - 1,
		        FRAG_MARK + i + 1);
	}
	fputs(" }", f);
}

/* The reassembler's part, for others' blocks and mappings. */
static int reassemble(struct dp_fragment *out, const struct dp_config *cfg,
                      const struct nat_view *nat)
{
	struct dp_chain *c, *eg;
	if ((size_t)nat->n_others + nat->n_other_maps > FRAG_MARKS_MAX)
		return dp_fragment_fail(
		    out, -E2BIG,
		    "%u others' blocks and %u others' mappings to reassemble for: "
		    "more than the %u the fragment mark's 16 bits number",
		    nat->n_others, nat->n_other_maps, FRAG_MARKS_MAX);
	int r = dp_fragment_chain(out, "nat_frag", NULL, "prerouting", "raw", "accept", &c);
	if (r == 0)
		r = dp_fragment_netdev_egress_chain(out, "nat_frag_out", cfg->uplink_if, "accept",
		                                    &eg);
	for (int kind = 0; r == 0 && nat->n_others && kind < 2; kind++) {
		struct text t;
		if ((r = text_open(&t)) < 0)
			return r;
		fprintf(t.f, "iifname \"%s\" ip daddr ", cfg->uplink_if);
		publics_set(t.f, nat);
		fputs(kind == 0 ? " meta l4proto { tcp, udp } meta mark set th dport map "
		                : " icmp type echo-reply meta mark set icmp id map ",
		      t.f);
		mark_map(t.f, nat);
		fputs(" notrack", t.f);
		r = text_add(&t, out, c, 0);
	}
	for (unsigned i = 0; r == 0 && i < nat->n_other_maps; i++) {
		const struct nat_view_mapping *x = &nat->other_maps[i];
		struct text t;
		if ((r = text_open(&t)) < 0)
			return r;
		fprintf(t.f, "iifname \"%s\" ip daddr ", cfg->uplink_if);
		publics_set(t.f, nat);
		fprintf(t.f, " %s dport %u meta mark set 0x%08x notrack",
		        x->proto == 6 ? "tcp" : "udp", x->public_port, map_mark(nat, i));
		r = text_add(&t, out, c, 0);
	}
	if (r == 0)
		r = dp_fragment_rule(
		    out, DP_FORWARD_IN,
		    "iifname \"%s\" oifname \"%s\" meta mark & 0x%08x == 0x%08x accept",
		    cfg->uplink_if, cfg->uplink_if, FRAG_MARK_MASK, FRAG_MARK);
	struct text t;
	if (r < 0 || (r = text_open(&t)) < 0)
		return r;
	fprintf(t.f, "meta mark & 0x%08x == 0x%08x ether daddr set meta mark map { ",
	        FRAG_MARK_MASK, FRAG_MARK);
	char m[MAC_STR_MAX];
	for (unsigned i = 0; i < nat->n_others; i++)
		fprintf(t.f, "%s0x%08x : %s", i ? ", " : "", FRAG_MARK + i + 1,
		        mac_format(nat->others[i].mac, m));
	for (unsigned i = 0; i < nat->n_other_maps; i++)
		fprintf(t.f, "%s0x%08x : %s", i || nat->n_others ? ", " : "", map_mark(nat, i),
		        mac_format(nat->other_maps[i].mac, m));
	fputs(" }", t.f);
	return text_add(&t, out, eg, 0);
}

static int fragments(struct dp_fragment *out, const struct dp_config *cfg,
                     const struct nat_view *nat)
{
	const struct nat_view_fragments *fr = &nat->fragments;
	if (!fr->known)
		return 0;
	if (fr->self && nat->n_others + nat->n_other_maps == 0)
		return 0;
	char to[MAC_STR_MAX], own[MAC_STR_MAX];
	mac_format(fr->mac, to);
	mac_format(nat->own_mac, own);
	struct text t;
	int r = text_open(&t);
	if (r < 0)
		return r;
	fputs("ip daddr ", t.f);
	publics_set(t.f, nat);
	if (fr->self) /* to the stack, whole: not steered by a first fragment's port */
		fputs(" ip frag-off & 0x3fff != 0 accept", t.f);
	else
		fprintf(
		    t.f,
		    " ip frag-off & 0x3fff != 0 ether saddr != %s ether daddr set %s ether saddr "
		    "set %s fwd to \"%s\"",
		    to, to, own, cfg->uplink_if);
	r = text_add(&t, out, NULL, DP_INGRESS);
	return r == 0 && fr->self ? reassemble(out, cfg, nat) : r;
}

/* NAT's way out (a default route to the ISP gateway, whose neighbour entry
 * is the switch's stand-in MAC: the switch puts the real gateway's address
 * on at the uplink, so no AEE ever ARPs outside) and its conntrack UDP
 * timers in the AEE's namespace. RFC 4787 section 4.3, REQ-5: a UDP mapping
 * timer must not expire in less than two minutes; five minutes is
 * recommended. The kernel's defaults are 30 s before the peer answers and
 * 120 s after (a plain request and response keeps the short one). */
static int way_out(struct dp_fragment *out, const struct nat_view *nat)
{
	out->gateway = (struct dp_gateway){.set = true, .addr = nat->gateway};
	memcpy(out->gateway.mac, nat->gateway_mac, 6);
	int r = dp_fragment_sysctl(out, "net/netfilter/nf_conntrack_udp_timeout", "120");
	if (r == 0)
		r = dp_fragment_sysctl(out, "net/netfilter/nf_conntrack_udp_timeout_stream", "300");
	return r;
}

int nat_ruleset_build(const struct dp_config *cfg, const struct nat_view *nat,
                      struct dp_fragment *out)
{
	if (!nat->enabled)
		return 0;
	int r = way_out(out, nat);
	if (r == 0 && nat->n_own == 0) {
		/* No port block yet: nothing leaves for outside untranslated. */
		char net[ADDR_STR_MAX];
		dp_config_prefix(cfg, net);
		r = dp_fragment_guard(out, "ip daddr != %s/%u", net, cfg->control_plen);
	}
	if (r == 0 && nat->n_own)
		r = outbound(out, cfg, nat);
	if (r == 0)
		r = filtering_sent(out, cfg, nat);
	if (r == 0)
		r = mappings(out, cfg, nat);
	if (r == 0)
		r = fragments(out, cfg, nat); /* before steer(): fragments first */
	if (r == 0)
		r = steer(out, cfg, nat);
	return r;
}

int nat_fragment_held(void *userdata, const struct dp_config *cfg, struct dp_fragment *out)
{
	out->hold = true;
	return nat_ruleset_build(cfg, userdata, out);
}
