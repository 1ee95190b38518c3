/* The devices' fragment of the datapath (devices.h, docs/devices.md): on
 * their manager, the veth link their frames cross into the IP stack, their
 * forwarding under the guest's rules, their anti-spoofing, and the steering
 * of their frames between the uplink and the link. Pure. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datapath/fragment.h"
#include "devices.h"
#include "lib/addr.h"
#include "lib/cleanup.h"
#include "lib/mac.h"

/* "{ 10.77.2.1, 10.77.2.2 }" of the devices whose address is known, newly
 * allocated into *@ret_set, or NULL when none is. Returns 0 or -ENOMEM. */
static int device_addrs(const struct devices_view *d, char **ret_set)
{
	char *text = NULL;
	size_t len = 0;
	unsigned n = 0;
	char a[ADDR_STR_MAX];
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	fputs("{ ", f);
	for (unsigned i = 0; i < d->n; i++)
		if (d->v[i].addr.s_addr)
			fprintf(f, "%s%s", n++ ? ", " : "", addr_format(d->v[i].addr, a));
	fputs(" }", f);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	if (n == 0) {
		free(text);
		text = NULL;
	}
	*ret_set = text;
	return 0;
}

/* The link: present only on the manager, so a former manager's goes. */
static int veth(struct dp_fragment *out, const struct devices_view *d)
{
	struct dp_link l = {.present = d->enabled, .forwarded = true};
	snprintf(l.name, sizeof(l.name), "%s", DEVICES_IF);
	snprintf(l.peer, sizeof(l.peer), "%s", DEVICES_PEER);
	memcpy(l.mac, d->own_mac, 6);
	int r = 0;
	for (unsigned i = 0; r == 0 && d->enabled && i < d->n; i++)
		if (d->v[i].addr.s_addr)
			r = dp_link_add_host(&l, d->v[i].addr, d->v[i].mac);
	if (r == 0)
		r = dp_fragment_link(out, &l);
	dp_link_free(&l);
	return r;
}

/* The devices' own forwarding: as the guest's (out of the uplink, to this
 * host's guest), nothing else from their side. */
static int forward(struct dp_fragment *out, const struct dp_config *cfg,
                   const struct devices_view *d)
{
	char guest[ADDR_STR_MAX];
	const char *g = cfg->guest_if, *u = cfg->uplink_if, *v = DEVICES_IF;
	addr_format(cfg->guest_addr, guest);
	_cleanup_free_ char *set = NULL;
	int r = device_addrs(d, &set);
	if (r < 0)
		return r;
	if (set) {
		dp_fragment_rule(out, DP_FORWARD_OUT,
		                 "iifname \"%s\" oifname { \"%s\", \"%s\" } ip saddr %s counter "
		                 "accept",
		                 v, u, g, set);
		dp_fragment_rule(out, DP_FORWARD_OUT,
		                 "iifname \"%s\" oifname \"%s\" ip saddr %s ip daddr %s counter "
		                 "accept",
		                 g, v, guest, set);
		dp_fragment_rule(out, DP_FORWARD_IN,
		                 "iifname \"%s\" oifname \"%s\" ip daddr %s counter accept", u, v,
		                 set);
	}
	dp_fragment_rule(out, DP_FORWARD_IN, "iifname \"%s\" counter name \"spoofed\" drop", v);
	return out->status;
}

static int input(struct dp_fragment *out, const struct devices_view *d)
{
	const char *v = DEVICES_IF;
	_cleanup_free_ char *set = NULL;
	int r = device_addrs(d, &set);
	if (r < 0)
		return r;
	if (set)
		dp_fragment_rule(out, DP_INPUT,
		                 "iifname \"%s\" ip saddr != %s counter name \"spoofed\" drop", v,
		                 set);
	else
		dp_fragment_rule(out, DP_INPUT,
		                 "iifname \"%s\" meta nfproto ipv4 counter name \"spoofed\" drop",
		                 v);
	dp_fragment_rule(out, DP_INPUT,
	                 "iifname \"%s\" meta nfproto ipv6 counter name \"spoofed\" drop", v);
	return out->status;
}

/* Frames from the devices leave the uplink for the devices' side; what the
 * AEE sends there (with the uplink's MAC) goes back out of the uplink. */
static int steer(struct dp_fragment *out, const struct dp_config *cfg, const struct devices_view *d)
{
	char own[MAC_STR_MAX], m[MAC_STR_MAX];
	if (d->n) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		if (!f)
			return -ENOMEM;
		fputs("ether saddr { ", f);
		for (unsigned i = 0; i < d->n; i++)
			fprintf(f, "%s%s", i ? ", " : "", mac_format(d->v[i].mac, m));
		fprintf(f, " } fwd to \"%s\"", DEVICES_PEER);
		int r = fclose(f) == 0 ? dp_fragment_rule(out, DP_INGRESS, "%s", text) : -ENOMEM;
		free(text);
		if (r < 0)
			return r;
	}
	struct dp_chain *c;
	int r = dp_fragment_netdev_chain(out, "to_uplink", DEVICES_PEER, "drop", &c);
	if (r < 0)
		return r;
	return dp_fragment_chain_rule(out, c, "ether saddr %s ether type { ip, arp } fwd to \"%s\"",
	                              mac_format(d->own_mac, own), cfg->uplink_if);
}

int devices_ruleset_build(const struct dp_config *cfg, const struct devices_view *d,
                          struct dp_fragment *out)
{
	int r = veth(out, d);
	if (r < 0 || !d->enabled)
		return r;
	if ((r = forward(out, cfg, d)) < 0 || (r = input(out, d)) < 0)
		return r;
	return steer(out, cfg, d);
}

int devices_fragment_idle(void *userdata, const struct dp_config *cfg, struct dp_fragment *out)
{
	(void)userdata;
	static const struct devices_view none;
	return devices_ruleset_build(cfg, &none, out);
}
