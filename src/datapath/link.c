/* The AEE's links (datapath-internal.h): its own (the guest link and the
 * uplink, the gateway route) and the routed veth links fragments ask for,
 * through rtnetlink; sysctls through /proc/sys. */
#include "datapath-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/veth.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/addr.h"

/* Requests are small; the kernel's acknowledgements fit in a page. */
#define RTNL_BUFFER_SIZE 8192

static int fail(char **ret_error, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* error_set(), for callers that may pass no @ret_error. */
static int fail(char **ret_error, int r, const char *fmt, ...)
{
	if (ret_error) {
		va_list ap;
		va_start(ap, fmt);
		error_setv(ret_error, r, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* Sends one request and waits for its acknowledgement. */
static int rtnl_talk(struct mnl_socket *nl, struct nlmsghdr *nlh)
{
	char buf[RTNL_BUFFER_SIZE];
	uint32_t portid = mnl_socket_get_portid(nl);

	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = (uint32_t)time(NULL);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0)
		return -errno;
	int r = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, NULL, NULL);
	return r < 0 ? -errno : 0;
}

/* An RTM_NEWLINK or RTM_DELLINK message about interface @ifindex, in @buf
 * (RTNL_BUFFER_SIZE bytes); *ret_ifi is its header, for flags. */
static struct nlmsghdr *link_msg(char *buf, uint16_t type, unsigned ifindex,
                                 struct ifinfomsg **ret_ifi)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = (int)ifindex;
	*ret_ifi = ifi;
	return nlh;
}

static int link_up(struct mnl_socket *nl, unsigned ifindex)
{
	char buf[RTNL_BUFFER_SIZE];
	struct ifinfomsg *ifi;
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, ifindex, &ifi);
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	return rtnl_talk(nl, nlh);
}

static int addr_replace(struct mnl_socket *nl, unsigned ifindex, struct in_addr addr, uint8_t plen)
{
	char buf[RTNL_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWADDR;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = plen;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = ifindex;
	mnl_attr_put_u32(nlh, IFA_LOCAL, addr.s_addr);
	mnl_attr_put_u32(nlh, IFA_ADDRESS, addr.s_addr);
	return rtnl_talk(nl, nlh);
}

static int host_route_replace(struct mnl_socket *nl, unsigned ifindex, struct in_addr dst)
{
	char buf[RTNL_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = 32;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_LINK;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put_u32(nlh, RTA_DST, dst.s_addr);
	mnl_attr_put_u32(nlh, RTA_OIF, ifindex);
	return rtnl_talk(nl, nlh);
}

static int route_delete(struct mnl_socket *nl, unsigned ifindex, struct in_addr dst)
{
	char buf[RTNL_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_DELROUTE;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = 32;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_scope = RT_SCOPE_NOWHERE;
	mnl_attr_put_u32(nlh, RTA_DST, dst.s_addr);
	mnl_attr_put_u32(nlh, RTA_OIF, ifindex);
	return rtnl_talk(nl, nlh);
}

/* A permanent neighbour entry (@mac NULL: delete it). */
static int neigh_set(struct mnl_socket *nl, unsigned ifindex, struct in_addr addr,
                     const uint8_t *mac)
{
	char buf[RTNL_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = mac ? RTM_NEWNEIGH : RTM_DELNEIGH;
	nlh->nlmsg_flags = mac ? NLM_F_CREATE | NLM_F_REPLACE : 0;
	struct ndmsg *nd = mnl_nlmsg_put_extra_header(nlh, sizeof(*nd));
	nd->ndm_family = AF_INET;
	nd->ndm_ifindex = (int)ifindex;
	nd->ndm_state = NUD_PERMANENT;
	mnl_attr_put_u32(nlh, NDA_DST, addr.s_addr);
	if (mac)
		mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
	return rtnl_talk(nl, nlh);
}

/* A default route through @gw on the uplink, whose neighbour entry is
 * @gw->mac (NAT: the switch's stand-in for the ISP gateway), so the AEE
 * never ARPs for it. */
static int gateway_replace(struct mnl_socket *nl, unsigned ifindex, const struct dp_gateway *gw)
{
	char buf[RTNL_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWNEIGH;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	struct ndmsg *nd = mnl_nlmsg_put_extra_header(nlh, sizeof(*nd));
	nd->ndm_family = AF_INET;
	nd->ndm_ifindex = (int)ifindex;
	nd->ndm_state = NUD_PERMANENT;
	mnl_attr_put_u32(nlh, NDA_DST, gw->addr.s_addr);
	mnl_attr_put(nlh, NDA_LLADDR, 6, gw->mac);
	int r = rtnl_talk(nl, nlh);
	if (r < 0)
		return r;

	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = 0;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	rtm->rtm_flags = RTNH_F_ONLINK;
	mnl_attr_put_u32(nlh, RTA_GATEWAY, gw->addr.s_addr);
	mnl_attr_put_u32(nlh, RTA_OIF, ifindex);
	return rtnl_talk(nl, nlh);
}

/* Forwarding and proxy ARP. proxy_delay 0: the kernel otherwise holds
 * proxied replies to broadcast requests for up to 0.8 s. */
static int set_sysctls(const struct dp_config *cfg, char **ret_error)
{
	const char *ifs[] = {cfg->guest_if, cfg->uplink_if};
	char path[128];
	int r = file_write_value("/proc/sys/net/ipv4/ip_forward", "1");
	if (r < 0)
		return fail(ret_error, r, "cannot enable IPv4 forwarding: %s", strerror(-r));
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/proxy_arp", ifs[i]);
		r = file_write_value(path, "1");
		if (r == 0) {
			snprintf(path, sizeof(path), "/proc/sys/net/ipv4/neigh/%s/proxy_delay",
			         ifs[i]);
			r = file_write_value(path, "0");
		}
		if (r < 0)
			return fail(ret_error, r, "cannot set %s: %s", path, strerror(-r));
	}
	return 0;
}

/* ---- routed veth links (struct dp_link) ---- */

static int veth_create(struct mnl_socket *nl, const struct dp_link *l)
{
	char buf[RTNL_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWLINK;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, l->peer);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	struct nlattr *peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	struct ifinfomsg *pi = mnl_nlmsg_put_extra_header(nlh, sizeof(*pi));
	pi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, l->name);
	mnl_attr_put(nlh, IFLA_ADDRESS, 6, l->mac);
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, info);
	return rtnl_talk(nl, nlh);
}

static int link_set_mac(struct mnl_socket *nl, unsigned ifindex, const uint8_t mac[6])
{
	char buf[RTNL_BUFFER_SIZE];
	struct ifinfomsg *ifi;
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, ifindex, &ifi);
	mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
	return rtnl_talk(nl, nlh);
}

static int link_delete(struct mnl_socket *nl, unsigned ifindex)
{
	char buf[RTNL_BUFFER_SIZE];
	struct ifinfomsg *ifi;
	return rtnl_talk(nl, link_msg(buf, RTM_DELLINK, ifindex, &ifi));
}

static bool has_host(const struct dp_link *l, struct in_addr addr, const uint8_t *mac)
{
	for (size_t i = 0; l->present && i < l->n_hosts; i++)
		if (l->hosts[i].addr.s_addr == addr.s_addr &&
		    (!mac || !memcmp(l->hosts[i].mac, mac, 6)))
			return true;
	return false;
}

/* Proxy ARP on the link answers ARP for any other address at once; the
 * peer has no IP life. */
static int veth_sysctls(const struct dp_link *l, char **ret_error)
{
	struct {
		char path[128];
		const char *value;
		bool optional;
	} sets[4] = {{.value = "1"},
	             {.value = "0"},
	             {.value = "1", .optional = true},
	             {.value = "1", .optional = true}};
	snprintf(sets[0].path, sizeof(sets[0].path), "/proc/sys/net/ipv4/conf/%s/proxy_arp",
	         l->name);
	snprintf(sets[1].path, sizeof(sets[1].path), "/proc/sys/net/ipv4/neigh/%s/proxy_delay",
	         l->name);
	snprintf(sets[2].path, sizeof(sets[2].path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6",
	         l->name);
	snprintf(sets[3].path, sizeof(sets[3].path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6",
	         l->peer);
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		int r = file_write_value(sets[i].path, sets[i].value);
		if (r < 0 && !(sets[i].optional && r == -ENOENT))
			return fail(ret_error, r, "cannot set %s: %s", sets[i].path, strerror(-r));
	}
	return 0;
}

/* What the last set-up routed on @side and no longer should. */
static void veth_forget(struct mnl_socket *nl, unsigned side, const struct dp_link *old,
                        const struct dp_link *l)
{
	for (size_t i = 0; old && old->present && i < old->n_hosts; i++) {
		const struct dp_host *o = &old->hosts[i];
		if (!o->addr.s_addr || has_host(l, o->addr, o->mac))
			continue;
		neigh_set(nl, side, o->addr, NULL);
		if (!has_host(l, o->addr, NULL))
			route_delete(nl, side, o->addr);
	}
}

static int veth_up(struct mnl_socket *nl, const struct dp_link *old, const struct dp_link *l,
                   char **ret_error)
{
	int r = 0;
	unsigned peer = if_nametoindex(l->peer);
	if (peer == 0 && (r = veth_create(nl, l)) < 0)
		return fail(ret_error, r, "cannot create the link %s/%s: %s", l->peer, l->name,
		            strerror(-r));
	peer = if_nametoindex(l->peer);
	unsigned side = if_nametoindex(l->name);
	if (peer == 0 || side == 0)
		return fail(ret_error, -ENODEV, "the link %s/%s is incomplete", l->peer, l->name);
	if ((r = link_set_mac(nl, side, l->mac)) < 0 || (r = link_up(nl, peer)) < 0 ||
	    (r = link_up(nl, side)) < 0)
		return fail(ret_error, r, "cannot set up the link %s/%s: %s", l->peer, l->name,
		            strerror(-r));
	if ((r = veth_sysctls(l, ret_error)) < 0)
		return r;
	veth_forget(nl, side, old, l);
	char a[ADDR_STR_MAX];
	for (size_t i = 0; i < l->n_hosts; i++) {
		const struct dp_host *h = &l->hosts[i];
		if (!h->addr.s_addr)
			continue;
		if ((r = host_route_replace(nl, side, h->addr)) < 0 ||
		    (r = neigh_set(nl, side, h->addr, h->mac)) < 0)
			return fail(ret_error, r, "cannot route %s to %s: %s",
			            addr_format(h->addr, a), l->name, strerror(-r));
	}
	return 0;
}

int dp_link_veth(const struct dp_link *old, const struct dp_link *l, char **ret_error)
{
	unsigned peer = if_nametoindex(l->peer);
	if (!l->present && peer == 0)
		return 0;
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	if (!nl)
		return fail(ret_error, -errno, "cannot open rtnetlink: %s", strerror(errno));
	int r = mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 ? -errno : 0;
	if (r < 0) {
		fail(ret_error, r, "cannot bind rtnetlink: %s", strerror(-r));
	} else if (!l->present) {
		/* No longer asked for: the pair goes, and its routes with it. */
		r = link_delete(nl, peer);
		if (r < 0 && r != -ENODEV)
			fail(ret_error, r, "cannot remove the link %s: %s", l->peer, strerror(-r));
		else
			r = 0;
	} else {
		r = veth_up(nl, old, l, ret_error);
	}
	mnl_socket_close(nl);
	return r;
}

int dp_link_sysctls(const struct dp_sysctl *s, size_t n, char **ret_error)
{
	for (size_t i = 0; i < n; i++) {
		char path[160];
		snprintf(path, sizeof(path), "/proc/sys/%s", s[i].path);
		int r = file_write_value(path, s[i].value);
		if (r < 0)
			return fail(ret_error, r, "cannot set %s to %s: %s", path, s[i].value,
			            strerror(-r));
	}
	return 0;
}

int dp_link_setup(const struct dp_config *cfg, const struct dp_gateway *gw, char **ret_error)
{
	unsigned guest = if_nametoindex(cfg->guest_if);
	if (guest == 0)
		return fail(ret_error, -ENODEV, "guest link %s: no such interface", cfg->guest_if);
	unsigned uplink = if_nametoindex(cfg->uplink_if);
	if (uplink == 0)
		return fail(ret_error, -ENODEV, "uplink %s: no such interface", cfg->uplink_if);

	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	if (!nl)
		return fail(ret_error, -errno, "cannot open rtnetlink: %s", strerror(errno));
	int r = mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 ? -errno : 0;
	if (r < 0) {
		fail(ret_error, r, "cannot bind rtnetlink: %s", strerror(-r));
		goto out;
	}
	if ((r = link_up(nl, guest)) < 0 || (r = link_up(nl, uplink)) < 0) {
		fail(ret_error, r, "cannot bring links up: %s", strerror(-r));
		goto out;
	}
	r = addr_replace(nl, uplink, cfg->control_addr, cfg->control_plen);
	if (r < 0) {
		fail(ret_error, r, "cannot set the control address on %s: %s", cfg->uplink_if,
		     strerror(-r));
		goto out;
	}
	r = host_route_replace(nl, guest, cfg->guest_addr);
	if (r < 0) {
		fail(ret_error, r, "cannot route the guest's address to %s: %s", cfg->guest_if,
		     strerror(-r));
		goto out;
	}
	if (gw && gw->set && (r = gateway_replace(nl, uplink, gw)) < 0) {
		fail(ret_error, r, "cannot route to the ISP gateway on %s: %s", cfg->uplink_if,
		     strerror(-r));
		goto out;
	}
	r = set_sysctls(cfg, ret_error);
out:
	mnl_socket_close(nl);
	return r;
}
