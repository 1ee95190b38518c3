#include "ruleset.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char *const counter_names[DP_COUNTER_MAX] = {
    [DP_COUNTER_GUEST_TX] = "guest_tx",
    [DP_COUNTER_GUEST_RX] = "guest_rx",
    [DP_COUNTER_SPOOFED] = "spoofed",
};

const char *dp_counter_name(enum dp_counter_id id)
{
	return id < DP_COUNTER_MAX ? counter_names[id] : NULL;
}

static struct dp_chain *add_chain(struct dp_ruleset *rs, const char *name, const char *hook,
                                  const char *policy)
{
	struct dp_chain *c = &rs->chains[rs->n_chains++];
	*c = (struct dp_chain){.name = name, .hook = hook, .policy = policy};
	return c;
}

static int add_rule(struct dp_chain *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int add_rule(struct dp_chain *c, const char *fmt, ...)
{
	if (c->n_rules >= DP_MAX_RULES)
		return -ENOSPC;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&c->rules[c->n_rules], fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	c->n_rules++;
	return 0;
}

/* ---- NAT (docs/nat.md) ---- */

struct text {
	char *s;
	size_t len;
	FILE *f;
};

static const char *mac_str(const uint8_t m[6], char buf[18])
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	return buf;
}

/* "{ 203.0.113.10, 203.0.113.11 }" */
static void publics_set(FILE *f, const struct dp_nat *nat)
{
	char a[INET_ADDRSTRLEN];
	fputs("{ ", f);
	for (unsigned i = 0; i < nat->n_publics; i++)
		fprintf(f, "%s%s", i ? ", " : "",
		        inet_ntop(AF_INET, &nat->publics[i], a, sizeof(a)));
	fputs(" }", f);
}

/* "{ 2048-3071 : 02:..., ... }": others' blocks to their owners' AEEs. */
static void others_map(FILE *f, const struct dp_nat *nat)
{
	char m[18];
	fputs("{ ", f);
	for (unsigned i = 0; i < nat->n_others; i++) {
		const struct dp_nat_block *b = &nat->others[i];
		fprintf(f, "%s%u-%u : %s", i ? ", " : "", b->start, b->start + b->size - 1,
		        mac_str(b->mac, m));
	}
	fputs(" }", f);
}

/* Closes @f (a memstream over *@text) and adds what it holds as a rule. */
static int add_text_rule(struct dp_chain *c, char **text, FILE *f)
{
	int r = fclose(f) == 0 ? add_rule(c, "%s", *text) : -ENOMEM;
	free(*text);
	return r;
}

/* The network's own prefix (the control address's): never translated. */
static void inside_prefix(const struct dp_config *cfg, char net[INET_ADDRSTRLEN])
{
	uint32_t mask = cfg->control_plen ? htonl(~0u << (32 - cfg->control_plen)) : 0;
	struct in_addr inside = {cfg->control_addr.s_addr & mask};
	inet_ntop(AF_INET, &inside, net, INET_ADDRSTRLEN);
}

/* "{ 0 : A . B0, 1 : A . B1 }" or, @by_block, "{ B0 : A . B0, B1 : A . B1 }". */
static void blocks_map(FILE *f, const struct dp_nat *nat, const char *pub, bool by_block)
{
	fputs("{ ", f);
	for (unsigned i = 0; i < nat->n_own; i++) {
		const struct dp_nat_block *b = &nat->own[i];
		unsigned last = b->start + b->size - 1u;
		if (by_block)
			fprintf(f, "%s%u-%u : %s . %u-%u", i ? ", " : "", b->start, last, pub,
			        b->start, last);
		else
			fprintf(f, "%s%u : %s . %u-%u", i ? ", " : "", i, pub, b->start, last);
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
 * ICMP echo ids are spread over the blocks in turn. */
static int nat_outbound(struct dp_ruleset *rs, const struct dp_config *cfg,
                        const struct dp_nat *nat)
{
	char pub[INET_ADDRSTRLEN], net[INET_ADDRSTRLEN], head[128];
	inside_prefix(cfg, net);
	inet_ntop(AF_INET, &nat->public_addr, pub, sizeof(pub));
	snprintf(head, sizeof(head), "oifname \"%s\" ip daddr != %s/%u", cfg->uplink_if, net,
	         cfg->control_plen);
	struct dp_chain *out = add_chain(rs, "nat_out", "postrouting", "accept");
	out->type = "nat";
	out->priority = "srcnat";
	if (nat->n_own == 1)
		return add_rule(out, "%s meta l4proto { tcp, udp, icmp } snat ip to %s:%u-%u", head,
		                pub, nat->own[0].start, nat->own[0].start + nat->own[0].size - 1);
	int r = 0;
	for (int kind = 0; r == 0 && kind < 3; kind++) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		if (!f)
			return -ENOMEM;
		if (kind == 0)
			fprintf(f, "%s meta l4proto { tcp, udp } snat ip to th sport map ", head);
		else if (kind == 1)
			fprintf(
			    f, "%s meta l4proto { tcp, udp } snat ip to jhash th sport mod %u map ",
			    head, nat->n_own);
		else
			fprintf(f, "%s meta l4proto icmp snat ip to numgen inc mod %u map ", head,
			        nat->n_own);
		blocks_map(f, nat, pub, kind == 0);
		r = add_text_rule(out, &text, f);
	}
	return r;
}

/* Inbound mappings of this host: the public port to the guest's. */
static int nat_mappings(struct dp_ruleset *rs, const struct dp_config *cfg,
                        const struct dp_nat *nat)
{
	if (nat->n_own_maps == 0)
		return 0;
	struct dp_chain *in = add_chain(rs, "nat_in", "prerouting", "accept");
	in->type = "nat";
	in->priority = "dstnat";
	char guest[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &cfg->guest_addr, guest, sizeof(guest));
	int r = 0;
	for (unsigned i = 0; r == 0 && i < nat->n_own_maps; i++) {
		const struct dp_nat_mapping *m = &nat->own_maps[i];
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		if (!f)
			return -ENOMEM;
		fprintf(f, "iifname \"%s\" ip daddr ", cfg->uplink_if);
		publics_set(f, nat);
		fprintf(f, " %s dport %u dnat ip to %s:%u", m->proto == 6 ? "tcp" : "udp",
		        m->public_port, guest, m->guest_port);
		r = add_text_rule(in, &text, f);
	}
	return r;
}

/* A packet for a public port that is not this host's, sent here by the
 * switch (no flow for it yet, or ICMP, which the switch cannot match by
 * echo id): straight on to the owner's AEE. */
static int nat_forward(struct dp_ruleset *rs, const struct dp_config *cfg, const struct dp_nat *nat)
{
	char own[18], m[18];
	mac_str(nat->own_mac, own);
	struct dp_chain *c = &rs->ingress;
	int r = 0;
	for (int kind = 0; r == 0 && nat->n_others && kind < 2; kind++) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		if (!f)
			return -ENOMEM;
		fputs("ip daddr ", f);
		publics_set(f, nat);
		fputs(kind == 0 ? " meta l4proto { tcp, udp } ether daddr set th dport map "
		                : " ether daddr set icmp id map ",
		      f);
		others_map(f, nat);
		fprintf(f, " ether saddr set %s fwd to \"%s\"", own, cfg->uplink_if);
		r = add_text_rule(c, &text, f);
	}
	for (unsigned i = 0; r == 0 && i < nat->n_other_maps; i++) {
		const struct dp_nat_mapping *x = &nat->other_maps[i];
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		if (!f)
			return -ENOMEM;
		fputs("ip daddr ", f);
		publics_set(f, nat);
		fprintf(f, " %s dport %u ether daddr set %s ether saddr set %s fwd to \"%s\"",
		        x->proto == 6 ? "tcp" : "udp", x->public_port, mac_str(x->mac, m), own,
		        cfg->uplink_if);
		r = add_text_rule(c, &text, f);
	}
	return r;
}

/* ---- unmanaged devices (docs/devices.md) ---- */

static bool devices_on(const struct dp_devices *d)
{
	return d && d->enabled;
}

/* "{ 10.77.2.1, 10.77.2.2 }" of the devices whose address is known; false
 * when none is. */
static bool device_addrs(const struct dp_devices *d, char *buf, size_t size)
{
	size_t len = 0;
	unsigned n = 0;
	char a[INET_ADDRSTRLEN];
	len += (size_t)snprintf(buf, size, "{ ");
	for (unsigned i = 0; i < d->n && len < size; i++) {
		if (!d->v[i].addr.s_addr)
			continue;
		len += (size_t)snprintf(buf + len, size - len, "%s%s", n++ ? ", " : "",
		                        inet_ntop(AF_INET, &d->v[i].addr, a, sizeof(a)));
	}
	if (len < size)
		snprintf(buf + len, size - len, " }");
	return n > 0;
}

/* The devices' own forwarding: as the guest's (out of the uplink, to this
 * host's guest), nothing else from their side. @before_spoof: the rules
 * that must come before the guest's catch-all drop. */
static int devices_forward(struct dp_chain *fwd, const struct dp_config *cfg,
                           const struct dp_nat *nat, const struct dp_devices *d, bool before_spoof)
{
	char set[DP_DEVICES_MAX * 18 + 8], guest[INET_ADDRSTRLEN];
	const char *g = cfg->guest_if, *u = cfg->uplink_if, *v = DP_DEVICE_IF;
	bool any = device_addrs(d, set, sizeof(set));
	inet_ntop(AF_INET, &cfg->guest_addr, guest, sizeof(guest));
	int r = 0;
	if (before_spoof) {
		if (any && nat && nat->enabled && nat->n_own == 0) {
			char net[INET_ADDRSTRLEN];
			inside_prefix(cfg, net);
			r |= add_rule(
			    fwd, "iifname \"%s\" oifname \"%s\" ip daddr != %s/%u counter drop", v,
			    u, net, cfg->control_plen);
		}
		if (any) {
			r |= add_rule(
			    fwd,
			    "iifname \"%s\" oifname { \"%s\", \"%s\" } ip saddr %s counter "
			    "accept",
			    v, u, g, set);
			r |= add_rule(
			    fwd,
			    "iifname \"%s\" oifname \"%s\" ip saddr %s ip daddr %s counter "
			    "accept",
			    g, v, guest, set);
		}
		return r;
	}
	if (any)
		r |= add_rule(fwd, "iifname \"%s\" oifname \"%s\" ip daddr %s counter accept", u, v,
		              set);
	r |= add_rule(fwd, "iifname \"%s\" counter name \"spoofed\" drop", v);
	return r;
}

static int devices_input(struct dp_chain *in, const struct dp_devices *d)
{
	char set[DP_DEVICES_MAX * 18 + 8];
	const char *v = DP_DEVICE_IF;
	int r = 0;
	if (device_addrs(d, set, sizeof(set)))
		r |= add_rule(in, "iifname \"%s\" ip saddr != %s counter name \"spoofed\" drop", v,
		              set);
	else
		r |= add_rule(in, "iifname \"%s\" meta nfproto ipv4 counter name \"spoofed\" drop",
		              v);
	r |= add_rule(in, "iifname \"%s\" meta nfproto ipv6 counter name \"spoofed\" drop", v);
	return r;
}

/* Frames from the devices leave the uplink for the devices' side; what the
 * AEE sends there (with the uplink's MAC) goes back out of the uplink. */
static int devices_steer(struct dp_ruleset *rs, const struct dp_config *cfg,
                         const struct dp_devices *d)
{
	char own[18], m[18];
	if (d->n) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		if (!f)
			return -ENOMEM;
		fputs("ether saddr { ", f);
		for (unsigned i = 0; i < d->n; i++)
			fprintf(f, "%s%s", i ? ", " : "", mac_str(d->v[i].mac, m));
		fprintf(f, " } fwd to \"%s\"", DP_DEVICE_PEER);
		int r = add_text_rule(&rs->ingress, &text, f);
		if (r < 0)
			return r;
	}
	rs->devices = (struct dp_chain){.name = "to_uplink", .hook = "ingress", .policy = "drop"};
	return add_rule(&rs->devices, "ether saddr %s ether type { ip, arp } fwd to \"%s\"",
	                mac_str(d->own_mac, own), cfg->uplink_if);
}

int dp_ruleset_build(const struct dp_config *cfg, const struct dp_nat *nat,
                     struct dp_ruleset *ret_rs)
{
	return dp_ruleset_build_devices(cfg, nat, NULL, ret_rs);
}

int dp_ruleset_build_devices(const struct dp_config *cfg, const struct dp_nat *nat,
                             const struct dp_devices *devices, struct dp_ruleset *ret_rs)
{
	struct dp_ruleset rs = {0};
	char guest[INET_ADDRSTRLEN];
	const char *g = cfg->guest_if, *u = cfg->uplink_if;
	int r = 0;

	inet_ntop(AF_INET, &cfg->guest_addr, guest, sizeof(guest));
	for (int i = 0; i < DP_COUNTER_MAX; i++)
		rs.counters[rs.n_counters++] = counter_names[i];

	/* Forwarding: only the guest's own address leaves the guest link, and
	 * only packets for it enter; everything else forwarded is dropped. The
	 * table stays when ettmd stops, so the host keeps working with the
	 * last rules (fail-static). */
	struct dp_chain *fwd = add_chain(&rs, "forward", "forward", "drop");
	if (nat && nat->enabled && nat->n_own == 0) {
		/* No port block yet: nothing leaves for outside untranslated. */
		char net[INET_ADDRSTRLEN];
		inside_prefix(cfg, net);
		r |= add_rule(fwd, "iifname \"%s\" oifname \"%s\" ip daddr != %s/%u counter drop",
		              g, u, net, cfg->control_plen);
	}
	r |= add_rule(fwd,
	              "iifname \"%s\" oifname \"%s\" ip saddr %s counter name \"guest_tx\" accept",
	              g, u, guest);
	if (devices_on(devices))
		r |= devices_forward(fwd, cfg, nat, devices, true);
	r |= add_rule(fwd, "iifname \"%s\" counter name \"spoofed\" drop", g);
	r |= add_rule(fwd,
	              "iifname \"%s\" oifname \"%s\" ip daddr %s counter name \"guest_rx\" accept",
	              u, g, guest);
	if (devices_on(devices))
		r |= devices_forward(fwd, cfg, nat, devices, false);

	/* Traffic for the AEE itself (its services) is accepted, but not from a
	 * forged guest source. */
	struct dp_chain *in = add_chain(&rs, "input", "input", "accept");
	r |= add_rule(in, "iifname \"%s\" ip saddr != %s counter name \"spoofed\" drop", g, guest);
	r |= add_rule(in, "iifname \"%s\" meta nfproto ipv6 counter name \"spoofed\" drop", g);
	if (devices_on(devices))
		r |= devices_input(in, devices);

	if (r == 0 && ((nat && nat->enabled) || devices_on(devices))) {
		rs.ingress =
		    (struct dp_chain){.name = "ingress", .hook = "ingress", .policy = "accept"};
		snprintf(rs.ingress_device, sizeof(rs.ingress_device), "%s", u);
	}
	if (r == 0 && devices_on(devices))
		r = devices_steer(&rs, cfg, devices);
	if (r == 0 && nat && nat->enabled) {
		if (nat->n_own)
			r = nat_outbound(&rs, cfg, nat);
		if (r == 0)
			r = nat_mappings(&rs, cfg, nat);
		if (r == 0)
			r = nat_forward(&rs, cfg, nat);
	}
	if (r != 0) {
		dp_ruleset_free(&rs);
		return r < 0 ? r : -ENOMEM;
	}
	*ret_rs = rs;
	return 0;
}

void dp_ruleset_free(struct dp_ruleset *rs)
{
	if (!rs)
		return;
	for (size_t i = 0; i < rs->n_chains; i++)
		for (size_t j = 0; j < rs->chains[i].n_rules; j++)
			free(rs->chains[i].rules[j]);
	for (size_t j = 0; j < rs->ingress.n_rules; j++)
		free(rs->ingress.rules[j]);
	for (size_t j = 0; j < rs->devices.n_rules; j++)
		free(rs->devices.rules[j]);
	*rs = (struct dp_ruleset){0};
}

void dp_ruleset_render(const struct dp_ruleset *rs, FILE *out)
{
	fprintf(out, "table %s %s {\n", DP_TABLE_FAMILY, DP_TABLE_NAME);
	for (size_t i = 0; i < rs->n_counters; i++)
		fprintf(out, "\tcounter %s {\n\t}\n", rs->counters[i]);
	for (size_t i = 0; i < rs->n_chains; i++) {
		const struct dp_chain *c = &rs->chains[i];
		fprintf(out, "\tchain %s {\n", c->name);
		if (c->hook)
			fprintf(out, "\t\ttype %s hook %s priority %s; policy %s;\n",
			        c->type ? c->type : "filter", c->hook,
			        c->priority ? c->priority : "filter", c->policy);
		for (size_t j = 0; j < c->n_rules; j++)
			fprintf(out, "\t\t%s\n", c->rules[j]);
		fprintf(out, "\t}\n");
	}
	fprintf(out, "}\n");
	if (rs->ingress.n_rules == 0 && rs->devices.n_rules == 0)
		return;
	fprintf(out, "table netdev %s {\n", DP_TABLE_NAME);
	const struct dp_chain *chains[] = {&rs->ingress, &rs->devices};
	const char *devs[] = {rs->ingress_device, DP_DEVICE_PEER};
	for (size_t i = 0; i < 2; i++) {
		const struct dp_chain *c = chains[i];
		if (c->n_rules == 0)
			continue;
		fprintf(out, "\tchain %s {\n", c->name);
		fprintf(out,
		        "\t\ttype filter hook ingress device \"%s\" priority filter; policy %s;\n",
		        devs[i], c->policy);
		for (size_t j = 0; j < c->n_rules; j++)
			fprintf(out, "\t\t%s\n", c->rules[j]);
		fprintf(out, "\t}\n");
	}
	fprintf(out, "}\n");
}

int dp_ruleset_render_string(const struct dp_ruleset *rs, char **ret_text)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	dp_ruleset_render(rs, f);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	*ret_text = text;
	return 0;
}

bool dp_ruleset_has(const struct dp_ruleset *rs, const char *kind, const char *name)
{
	if (strcmp(kind, "counter") == 0) {
		for (size_t i = 0; i < rs->n_counters; i++)
			if (strcmp(rs->counters[i], name) == 0)
				return true;
	} else if (strcmp(kind, "chain") == 0) {
		for (size_t i = 0; i < rs->n_chains; i++)
			if (strcmp(rs->chains[i].name, name) == 0)
				return true;
	}
	return false;
}

/* Object kinds of a listed table that ETTM's rulesets use. */
static const char *const listed_kinds[] = {"chain", "counter"};

int dp_ruleset_transaction(const struct dp_ruleset *rs, const char *current_json, char **ret_text)
{
	json_t *root = NULL;
	char *text = NULL;
	size_t len = 0;
	int r = 0;

	if (current_json) {
		root = json_loads(current_json, 0, NULL);
		if (!root || !json_is_array(json_object_get(root, "nftables"))) {
			json_decref(root);
			return -EINVAL;
		}
	}

	FILE *f = open_memstream(&text, &len);
	if (!f) {
		json_decref(root);
		return -ENOMEM;
	}
	fprintf(f, "add table %s %s\n", DP_TABLE_FAMILY, DP_TABLE_NAME);
	fprintf(f, "flush table %s %s\n", DP_TABLE_FAMILY, DP_TABLE_NAME);
	/* The netdev table holds no state: replaced whole. */
	fprintf(f, "add table netdev %s\ndelete table netdev %s\n", DP_TABLE_NAME, DP_TABLE_NAME);

	/* Chains first: a counter is referenced by rules, which the flush above
	 * already removed, so deleting it afterwards is always allowed. */
	for (size_t k = 0; k < sizeof(listed_kinds) / sizeof(listed_kinds[0]); k++) {
		size_t i;
		json_t *item;
		json_array_foreach(json_object_get(root, "nftables"), i, item)
		{
			json_t *obj = json_object_get(item, listed_kinds[k]);
			const char *family = json_string_value(json_object_get(obj, "family"));
			const char *table = json_string_value(json_object_get(obj, "table"));
			const char *name = json_string_value(json_object_get(obj, "name"));
			if (!obj || !family || !table || !name)
				continue;
			if (strcmp(family, DP_TABLE_FAMILY) != 0 ||
			    strcmp(table, DP_TABLE_NAME) != 0)
				continue;
			if (dp_ruleset_has(rs, listed_kinds[k], name))
				continue;
			fprintf(f, "delete %s %s %s %s\n", listed_kinds[k], DP_TABLE_FAMILY,
			        DP_TABLE_NAME, name);
		}
	}
	dp_ruleset_render(rs, f);
	if (fclose(f) != 0)
		r = -ENOMEM;
	json_decref(root);
	if (r < 0) {
		free(text);
		return r;
	}
	*ret_text = text;
	return 0;
}
