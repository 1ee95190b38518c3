/* A fragment: what one service hands the datapath, built from that
 * service's own state by its source (datapath.h, dp_set_source()). The
 * datapath composes every source's fragment with its own base chains into
 * one nftables transaction and the link operations they ask for; it knows no
 * service's types.
 *
 * A fragment holds:
 * - rules appended to the datapath's own base chains at a point (enum
 *   dp_point), and guards (what may not be forwarded out of the uplink);
 * - chains of its own, in the `inet ettm` table (any type, hook, priority
 *   and policy) or in the `netdev ettm` table (ingress on a device);
 * - named counters of its own;
 * - sets and maps of its own, which its rules fill from the packet path;
 * - link operations: a default route through a gateway, routed veth links,
 *   sysctls set after the table is applied;
 * - hold: "not ready yet", which keeps the kernel's table as it is while it
 *   is there (a restarted agent whose service has not caught up). */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "datapath.h"

/* A chain's, counter's or set's name, with its NUL. nftables allows 256
 * (NFT_NAME_MAXLEN); ETTM's names are short. */
#define DP_NAME_MAX     32
#define DP_SET_SPEC_MAX 160

/* Rules, chains, counters, sets, links, a link's hosts and sysctls are
 * growable arrays (lib/array.h): a fragment holds as many as its service
 * renders (nftables itself sets no limit on rules per chain or objects per
 * table), and its memory follows what it holds. */

/* Where a fragment's rules go in the datapath's own base chains, in the
 * order the chains evaluate them:
 *
 *   forward: guards (every forwarded source), the guest's outbound accept
 *            (guest_tx), DP_FORWARD_OUT, the guest's catch-all drop
 *            (spoofed), the guest's inbound accept (guest_rx), DP_FORWARD_IN
 *   input:   the guest's anti-spoofing drops, DP_INPUT
 *   netdev ingress on the uplink: DP_INGRESS
 *
 * Within a point, fragments follow their sources' order. */
enum dp_point {
	DP_FORWARD_OUT, /* before the guest's catch-all drop: rules for iifname guest go here */
	DP_FORWARD_IN,  /* the end of forward, after the guest's inbound accept */
	DP_INPUT,       /* the end of input */
	DP_INGRESS,     /* frames on the uplink, before the IP stack (fwd, ether set) */
	DP_POINT_MAX,
};

struct dp_rules {
	size_t n, cap;
	char **v;
};

/* A chain of a fragment's own. @type, @hook, @priority and @policy are
 * static strings: "filter" (NULL) or "nat"; "forward", "postrouting"...
 * (NULL: a regular chain); "filter" (NULL), "srcnat", "dstnat"; "accept" or
 * "drop". A netdev chain has @device set and hooks ingress (or egress) on
 * it. */
struct dp_chain {
	char name[DP_NAME_MAX];
	const char *type;
	const char *hook;
	const char *priority;
	const char *policy;
	char device[IF_NAMESIZE];
	struct dp_rules rules;
};

/* A host reached through a link: a /32 route and a permanent neighbour
 * entry on the link. Addresses in network byte order. */
struct dp_host {
	struct in_addr addr;
	uint8_t mac[6];
};

/* A routed veth link: the pair @peer/@name, @name wearing @mac and
 * answering ARP by proxy at once, IPv6 off on both, and a route and
 * neighbour entry on @name for each host. @peer has no IP life (frames to
 * and from it are steered by netdev chains). @present false: the pair is
 * removed if it is there. @forwarded: what the link forwards out of the
 * uplink is subject to the guards, as the guest's is. */
struct dp_link {
	char name[IF_NAMESIZE];
	char peer[IF_NAMESIZE];
	bool present;
	bool forwarded;
	uint8_t mac[6];
	size_t n_hosts, cap_hosts;
	struct dp_host *hosts; /* owned; dp_link_add_host(), dp_link_free() */
};

/* A default route on the uplink through @addr (on-link), whose neighbour
 * entry is @mac, permanent: the AEE never resolves it. */
struct dp_gateway {
	bool set;
	struct in_addr addr;
	uint8_t mac[6];
};

/* A sysctl under /proc/sys/, set after each table applied (modules the
 * table loads, such as conntrack, have their sysctls by then). */
struct dp_sysctl {
	char path[96]; /* e.g. "net/netfilter/nf_conntrack_udp_timeout" */
	char value[16];
};

/* A set or map of a fragment's own in the inet table. @kind is "set" or
 * "map" (static); @spec its declaration's body in nft's language, e.g.
 * "type inet_service : inet_service; flags dynamic,timeout; timeout 300s;".
 * Rules fill it from the packet path (`update @NAME { ... }`). Its
 * elements outlive each new table that declares it alike: a transaction
 * flushes chains, not sets (dp_ruleset_transaction()). */
struct dp_set {
	char name[DP_NAME_MAX];
	const char *kind;
	char spec[DP_SET_SPEC_MAX];
};

struct dp_fragment {
	bool hold;   /* not ready: keep the running table as it is, if there */
	int status;  /* the first failure of a dp_fragment_*() call, or 0 */
	char *error; /* what that failure was, when dp_fragment_fail() said it */
	struct dp_rules at[DP_POINT_MAX];
	struct dp_rules guards; /* match expressions, e.g. "ip daddr != 10.77.0.0/16" */
	/* Each chain allocated alone, so the pointer dp_fragment_chain()
	 * hands out stays valid as more chains are added. */
	size_t n_chains, cap_chains;
	struct dp_chain **chains;
	size_t n_counters, cap_counters;
	char (*counters)[DP_NAME_MAX];
	size_t n_links, cap_links;
	struct dp_link *links;
	struct dp_gateway gateway;
	size_t n_sysctls, cap_sysctls;
	struct dp_sysctl *sysctls;
	size_t n_sets, cap_sets;
	struct dp_set *sets;
};

/* Each of these returns 0 or a negative errno (-ENOMEM; -EINVAL: a name
 * too long), and keeps the first failure in @f->status so
 * a renderer may check once at its end. */

/* Records the failure @r (a negative errno) of @f's renderer, with what
 * failed in words (e.g. the limit reached and its value), unless a failure
 * is kept already; the datapath's error then quotes it. Returns @r. */
int dp_fragment_fail(struct dp_fragment *f, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends a rule at @at. */
int dp_fragment_rule(struct dp_fragment *f, enum dp_point at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds a guard: whatever the guest or a forwarded link sends out of the
 * uplink that matches @fmt is counted and dropped, before any accept. */
int dp_fragment_guard(struct dp_fragment *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Adds a chain of the fragment's own to the inet table, and its pointer in
 * *ret_chain (valid while @f is). */
int dp_fragment_chain(struct dp_fragment *f, const char *name, const char *type, const char *hook,
                      const char *priority, const char *policy, struct dp_chain **ret_chain);

/* The same in the netdev table, hooked at ingress on @device. */
int dp_fragment_netdev_chain(struct dp_fragment *f, const char *name, const char *device,
                             const char *policy, struct dp_chain **ret_chain);

/* The same, hooked at egress on @device: frames as they leave it, after
 * the IP stack (fragmented already). */
int dp_fragment_netdev_egress_chain(struct dp_fragment *f, const char *name, const char *device,
                                    const char *policy, struct dp_chain **ret_chain);

/* Appends a rule to @c, a chain of @f. */
int dp_fragment_chain_rule(struct dp_fragment *f, struct dp_chain *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds a named counter. */
int dp_fragment_counter(struct dp_fragment *f, const char *name);

/* Adds a set (@kind "set") or map ("map") named @name, declared by @spec
 * (struct dp_set); -EINVAL for another kind or a name or spec too long. */
int dp_fragment_set(struct dp_fragment *f, const char *kind, const char *name, const char *spec);

/* Adds a link (copied, its hosts too: the caller still frees @link). */
int dp_fragment_link(struct dp_fragment *f, const struct dp_link *link);

/* Adds the host @addr with @mac to @link: 0 or -ENOMEM. */
int dp_link_add_host(struct dp_link *link, struct in_addr addr, const uint8_t mac[6]);

/* Copies @from into @to (zeroed or freed), its hosts too: 0 or -ENOMEM. */
int dp_link_copy(struct dp_link *to, const struct dp_link *from);

/* Frees @link's hosts; NULL-accepting; leaves @link with none. */
void dp_link_free(struct dp_link *link);

/* Sets @path (under /proc/sys/) to @value after the table is applied. */
int dp_fragment_sysctl(struct dp_fragment *f, const char *path, const char *value);

/* NULL-accepting; leaves @f zeroed. */
void dp_fragment_free(struct dp_fragment *f);

void dp_rules_free(struct dp_rules *r);

/* Appends a formatted rule to @r: 0 or -ENOMEM. */
int dp_rules_add(struct dp_rules *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "10.77.0.0" for a control address 10.77.0.1/16: the network's own
 * prefix, with @cfg->control_plen. */
void dp_config_prefix(const struct dp_config *cfg, char net[INET_ADDRSTRLEN]);
