#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cmocka.h>
#include <nftables/libnftables.h>

#include "datapath/datapath-internal.h"
#include "datapath/queue.h"
#include "datapath/ruleset.h"
#include "golden.h"
#include "services/control/control.h"
#include "services/devices/devices.h"
#include "services/nat/nat.h"

/* Composes the ruleset as the agent does: the devices' fragment, then
 * NAT's (main.c adds their sources in that order), each rendered by the
 * service's own renderer. NULL: that source renders nothing. */
static int compose(const struct dp_config *cfg, const struct nat_view *nat,
                   const struct devices_view *devices, struct dp_ruleset *ret_rs)
{
	static const struct devices_view no_devices;
	static const struct nat_view no_nat;
	struct dp_fragment *f = calloc(2, sizeof(*f));
	assert_non_null(f);
	int r = devices_ruleset_build(cfg, devices ? devices : &no_devices, &f[0]);
	if (r == 0)
		r = nat_ruleset_build(cfg, nat ? nat : &no_nat, &f[1]);
	const struct dp_fragment *frags[] = {&f[0], &f[1]};
	if (r == 0)
		r = dp_ruleset_compose(cfg, frags, 2, ret_rs);
	dp_fragment_free(&f[0]);
	dp_fragment_free(&f[1]);
	free(f);
	return r;
}

static struct dp_config lab_host(int n)
{
	struct dp_config cfg = {.guest_if = "g0", .uplink_if = "u0", .control_plen = 16};
	char addr[32];
	snprintf(addr, sizeof(addr), "10.77.1.%d", n);
	inet_pton(AF_INET, addr, &cfg.guest_addr);
	snprintf(addr, sizeof(addr), "10.77.0.%d", n);
	inet_pton(AF_INET, addr, &cfg.control_addr);
	return cfg;
}

static char *render(const struct dp_config *cfg)
{
	struct dp_ruleset rs;
	char *text;
	assert_int_equal(compose(cfg, NULL, NULL, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	dp_ruleset_free(&rs);
	return text;
}

static void test_render_lab_host(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	char *text = render(&cfg);
	assert_golden("ruleset-h1.nft", text);
	free(text);
}

static void test_render_other_names(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(42);
	strcpy(cfg.guest_if, "veth-guest");
	strcpy(cfg.uplink_if, "enp3s0");
	char *text = render(&cfg);
	assert_golden("ruleset-renamed.nft", text);
	free(text);
}

/* The same configuration renders the same bytes: generations count real
 * changes only. */
static void test_render_is_deterministic(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(3);
	char *a = render(&cfg), *b = render(&cfg);
	assert_string_equal(a, b);
	free(a);
	free(b);
}

static void test_has(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_ruleset rs;
	assert_int_equal(compose(&cfg, NULL, NULL, &rs), 0);
	assert_true(dp_ruleset_has(&rs, "chain", "forward"));
	assert_true(dp_ruleset_has(&rs, "counter", "spoofed"));
	assert_false(dp_ruleset_has(&rs, "chain", "spoofed"));
	assert_false(dp_ruleset_has(&rs, "set", "forward"));
	dp_ruleset_free(&rs);
}

static void test_transaction_fresh(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_ruleset rs;
	char *tx;
	assert_int_equal(compose(&cfg, NULL, NULL, &rs), 0);
	assert_int_equal(dp_ruleset_transaction(&rs, NULL, &tx), 0);
	assert_golden("transaction-fresh.nft", tx);
	free(tx);
	dp_ruleset_free(&rs);
}

/* A running table (as `nft -j list table inet ettm` prints it) with a chain
 * and a counter the new ruleset lacks, and an object of another table that
 * must be left alone. */
static const char running[] =
    "{\"nftables\": [{\"metainfo\": {\"version\": \"1.0.6\", \"json_schema_version\": 1}},"
    "{\"table\": {\"family\": \"inet\", \"name\": \"ettm\", \"handle\": 1}},"
    "{\"counter\": {\"family\": \"inet\", \"name\": \"guest_tx\", \"table\": \"ettm\","
    " \"handle\": 2, \"packets\": 5, \"bytes\": 420}},"
    "{\"counter\": {\"family\": \"inet\", \"name\": \"old_counter\", \"table\": \"ettm\","
    " \"handle\": 3, \"packets\": 0, \"bytes\": 0}},"
    "{\"counter\": {\"family\": \"ip\", \"name\": \"old_counter\", \"table\": \"other\","
    " \"handle\": 3, \"packets\": 0, \"bytes\": 0}},"
    "{\"chain\": {\"family\": \"inet\", \"table\": \"ettm\", \"name\": \"forward\","
    " \"handle\": 4, \"type\": \"filter\", \"hook\": \"forward\", \"prio\": 0,"
    " \"policy\": \"drop\"}},"
    "{\"chain\": {\"family\": \"inet\", \"table\": \"ettm\", \"name\": \"old_chain\","
    " \"handle\": 5}},"
    "{\"map\": {\"family\": \"inet\", \"table\": \"ettm\", \"name\": \"old_map\","
    " \"handle\": 6, \"type\": \"inet_service\", \"map\": \"inet_service\"}},"
    "{\"set\": {\"family\": \"inet\", \"table\": \"ettm\", \"name\": \"kept_set\","
    " \"handle\": 7, \"type\": \"inet_service\"}}]}";

static void test_transaction_deletes_stale(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_ruleset rs;
	char *tx;
	struct dp_fragment kept = {0};
	assert_int_equal(dp_fragment_set(&kept, "set", "kept_set",
	                                 "type inet_service; flags dynamic,timeout; timeout 300s;"),
	                 0);
	const struct dp_fragment *frags[] = {&kept};
	assert_int_equal(dp_ruleset_compose(&cfg, frags, 1, &rs), 0);
	assert_int_equal(dp_ruleset_transaction(&rs, running, &tx), 0);
	/* The map no fragment declares goes; the set one does stays, with its
	 * elements (no delete, declared again). */
	assert_non_null(strstr(tx, "delete map inet ettm old_map\n"));
	assert_null(strstr(tx, "delete set inet ettm kept_set"));
	assert_non_null(strstr(tx, "\tset kept_set {\n"));
	assert_golden("transaction-stale.nft", tx);
	free(tx);
	dp_ruleset_free(&rs);
	dp_fragment_free(&kept);
}

/* The netdev table is flushed, not replaced, while it has chains: a base
 * chain deleted makes the kernel drop every packet queued to the agent.
 * A netdev chain the ruleset lacks is deleted; with none left, the table
 * goes. */
static void test_transaction_keeps_netdev_hooks(void **state)
{
	(void)state;
	static const char listing[] =
	    "{\"nftables\": [{\"table\": {\"family\": \"inet\", \"name\": \"ettm\"}},"
	    "{\"table\": {\"family\": \"netdev\", \"name\": \"ettm\"}},"
	    "{\"chain\": {\"family\": \"netdev\", \"table\": \"ettm\", \"name\": \"kept\"}},"
	    "{\"chain\": {\"family\": \"netdev\", \"table\": \"ettm\", \"name\": \"gone\"}}]}";
	struct dp_config cfg = lab_host(1);
	struct dp_ruleset rs;
	char *tx;
	struct dp_fragment f = {0};
	struct dp_chain *c;
	assert_int_equal(dp_fragment_netdev_chain(&f, "kept", "u0", "accept", &c), 0);
	dp_fragment_chain_rule(&f, c, "counter");
	const struct dp_fragment *frags[] = {&f};
	assert_int_equal(dp_ruleset_compose(&cfg, frags, 1, &rs), 0);
	assert_int_equal(dp_ruleset_transaction(&rs, listing, &tx), 0);
	assert_non_null(strstr(tx, "add table netdev ettm\nflush table netdev ettm\n"));
	assert_non_null(strstr(tx, "delete chain netdev ettm gone\n"));
	assert_null(strstr(tx, "delete chain netdev ettm kept"));
	assert_null(strstr(tx, "delete table netdev"));
	free(tx);
	dp_ruleset_free(&rs);
	dp_fragment_free(&f);
	assert_int_equal(dp_ruleset_compose(&cfg, NULL, 0, &rs), 0);
	assert_int_equal(dp_ruleset_transaction(&rs, listing, &tx), 0);
	assert_non_null(strstr(tx, "add table netdev ettm\ndelete table netdev ettm\n"));
	assert_null(strstr(tx, "delete chain netdev"));
	free(tx);
	dp_ruleset_free(&rs);
}

/* The agent's steering: a stamped epoch's packets first (queued unless
 * judged under it, else left to the table), then the active epoch's. */
static void test_steer_rules(void **state)
{
	(void)state;
	struct dp_steer v[3];
	memset(v, 0, sizeof(v));
	for (int i = 0; i < 2; i++) {
		v[i].addr.s_addr = htonl(0x0a4d0101);
		v[i].stamped = true;
		v[i].stamp = 2;
		v[i].from.s_addr = htonl(0x0a4d0000);
		v[i].from_len = 16;
		snprintf(v[i].iif, sizeof(v[i].iif), "u0");
	}
	v[0].reply = true;
	v[0].unless_ct_mark = 0x80000006;
	v[0].queue = 1;
	v[1].skip = true;
	v[2].addr.s_addr = htonl(0x0a4d0101);
	v[2].unless_ct_mark = 0x80000007;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	dp_steer_render(v, 3, f);
	fclose(f);
	assert_string_equal(
	    out,
	    "*mangle\n:ETTM-QUEUE - [0:0]\n-F ETTM-QUEUE\n"
	    "-A ETTM-QUEUE -i u0 -s 10.77.0.0/16 -m tos --tos 0x08/0x0c -m conntrack "
	    "--ctreplsrc 10.77.1.1/32 -m connmark ! --mark 0x80000006 -j NFQUEUE --queue-num 1 "
	    "--queue-bypass\n"
	    "-A ETTM-QUEUE -i u0 -s 10.77.0.0/16 -m tos --tos 0x08/0x0c -j RETURN\n"
	    "-A ETTM-QUEUE -m conntrack --ctorigsrc 10.77.1.1/32 -m connmark ! --mark "
	    "0x80000007 -j NFQUEUE --queue-num 0 --queue-bypass\nCOMMIT\n");
	free(out);
}

static void test_transaction_bad_listing(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_ruleset rs;
	char *tx = NULL;
	assert_int_equal(compose(&cfg, NULL, NULL, &rs), 0);
	assert_int_equal(dp_ruleset_transaction(&rs, "{\"nftables\": 3}", &tx), -EINVAL);
	assert_int_equal(dp_ruleset_transaction(&rs, "not json", &tx), -EINVAL);
	assert_null(tx);
	dp_ruleset_free(&rs);
}

/* The devices' manager: device frames to and from the devices' side, their
 * forwarding under the guest's rules, one device whose address is not
 * known yet (steered, but nothing of it forwarded). */
static void test_render_devices(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct nat_view nat = {.enabled = true, .n_own = 1, .n_publics = 1};
	inet_pton(AF_INET, "203.0.113.10", &nat.public_addr);
	nat.publics[0] = nat.public_addr;
	struct nat_view_block own = {.start = 1024, .size = 1024};
	nat.own = &own;
	struct devices_view_device devs[2];
	struct devices_view d = {.enabled = true, .own_mac = {2, 0, 0, 0, 0, 1}, .n = 2, .v = devs};
	d.v[0] = (struct devices_view_device){.mac = {2, 0xaa, 0, 0, 0, 1}};
	inet_pton(AF_INET, "10.77.2.1", &d.v[0].addr);
	d.v[1] = (struct devices_view_device){.mac = {2, 0xaa, 0, 0, 0, 2}};
	struct dp_ruleset rs;
	char *text;
	assert_int_equal(compose(&cfg, &nat, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	assert_golden("ruleset-devices.nft", text);
	free(text);
	dp_ruleset_free(&rs);

	/* Not the manager: exactly the ruleset without devices. */
	char *plain;
	d.enabled = false;
	assert_int_equal(compose(&cfg, NULL, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	dp_ruleset_free(&rs);
	plain = render(&cfg);
	assert_string_equal(text, plain);
	free(text);
	free(plain);

	/* Manager of devices with no address yet, before any NAT block:
	 * nothing of theirs is forwarded, only steered and dropped. */
	d.enabled = true;
	d.v[0].addr.s_addr = 0;
	nat.n_own = 0;
	assert_int_equal(compose(&cfg, &nat, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	/* NAT's guard covers the devices' link as the guest's (composed
	 * for every forwarded link, so also while no device has an address:
	 * a drop, which changes nothing then); no accept from dv1. */
	assert_null(strstr(text, "iifname \"dv1\" oifname {"));
	assert_non_null(strstr(text, "iifname \"dv1\" oifname \"u0\" ip daddr != 10.77.0.0/16 "
	                             "counter drop"));
	assert_non_null(
	    strstr(text, "iifname \"dv1\" meta nfproto ipv4 counter name \"spoofed\" drop"));
	assert_non_null(strstr(text, "fwd to \"dv0\""));
	free(text);
	dp_ruleset_free(&rs);
}

/* Before a NAT block, a device with an address: the guard drops what it
 * sends outside ahead of the devices' own accepts. */
static void test_guard_before_accepts(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct nat_view nat = {.enabled = true, .n_publics = 1};
	inet_pton(AF_INET, "203.0.113.10", &nat.public_addr);
	nat.publics[0] = nat.public_addr;
	struct devices_view_device dev;
	struct devices_view d = {.enabled = true, .own_mac = {2, 0, 0, 0, 0, 1}, .n = 1, .v = &dev};
	d.v[0] = (struct devices_view_device){.mac = {2, 0xaa, 0, 0, 0, 1}};
	inet_pton(AF_INET, "10.77.2.1", &d.v[0].addr);
	struct dp_ruleset rs;
	char *text;
	assert_int_equal(compose(&cfg, &nat, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	const char *g = strstr(text, "iifname \"g0\" oifname \"u0\" ip daddr != 10.77.0.0/16 "
	                             "counter drop");
	const char *v = strstr(text, "iifname \"dv1\" oifname \"u0\" ip daddr != 10.77.0.0/16 "
	                             "counter drop");
	const char *tx = strstr(text, "counter name \"guest_tx\" accept");
	const char *accept = strstr(text, "iifname \"dv1\" oifname { \"u0\", \"g0\" }");
	assert_non_null(g);
	assert_non_null(v);
	assert_non_null(accept);
	assert_true(g < v && v < tx && tx < accept);
	assert_null(strstr(text, "snat"));
	free(text);
	dp_ruleset_free(&rs);
}

/* The control plane closed: the guest and the devices' link reach no
 * agent's or switch's address out of the uplink, and nothing but the
 * uplink and loopback reaches this agent's Raft and peer ports. */
static void test_control_closed(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct devices_view_device dev;
	struct devices_view d = {.enabled = true, .own_mac = {2, 0, 0, 0, 0, 1}, .n = 1, .v = &dev};
	d.v[0] = (struct devices_view_device){.mac = {2, 0xaa, 0, 0, 0, 1}};
	inet_pton(AF_INET, "10.77.2.1", &d.v[0].addr);
	struct control_view v = {.ports = {7700, 7701}};
	const char *addrs[] = {"10.77.0.2", "10.77.255.1", "10.77.0.1", "10.77.0.2"};
	for (size_t i = 0; i < 4; i++) {
		struct in_addr a;
		inet_pton(AF_INET, addrs[i], &a);
		assert_true(control_view_add(&v, a.s_addr));
	}
	assert_int_equal(v.n_addrs, 3);
	struct dp_fragment *f = calloc(2, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(devices_ruleset_build(&cfg, &d, &f[0]), 0);
	assert_int_equal(control_ruleset_build(&cfg, &v, &f[1]), 0);
	const struct dp_fragment *frags[] = {&f[0], &f[1]};
	struct dp_ruleset rs;
	char *text;
	assert_int_equal(dp_ruleset_compose(&cfg, frags, 2, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	const char *set = "ip daddr { 10.77.0.1, 10.77.0.2, 10.77.255.1 } counter drop";
	char g[256], dv[256];
	snprintf(g, sizeof(g), "iifname \"g0\" oifname \"u0\" %s", set);
	snprintf(dv, sizeof(dv), "iifname \"dv1\" oifname \"u0\" %s", set);
	const char *pg = strstr(text, g), *pdv = strstr(text, dv);
	const char *tx = strstr(text, "counter name \"guest_tx\" accept");
	assert_non_null(pg);
	assert_non_null(pdv);
	assert_true(pg < tx && pdv < tx);
	assert_non_null(strstr(text, "iifname != { \"u0\", \"lo\" } tcp dport { 7700, 7701 } "
	                             "counter name \"control_refused\" drop"));
	assert_non_null(strstr(text, "counter control_refused {"));
	free(text);
	dp_ruleset_free(&rs);
	dp_fragment_free(&f[0]);
	dp_fragment_free(&f[1]);
	free(f);
}

/* A fragment of a source that renders its own chains and counters: they
 * follow the datapath's own, in source order; a name used twice, or a
 * fragment that failed, fails the composition with that errno alone. */
static void test_compose_generic(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_fragment a = {0}, b = {0};
	struct dp_chain *c;
	assert_int_equal(dp_fragment_counter(&a, "qos_drops"), 0);
	assert_int_equal(dp_fragment_chain(&a, "qos", NULL, "forward", NULL, "accept", &c), 0);
	assert_int_equal(dp_fragment_chain_rule(&a, c, "meta priority set 1:20"), 0);
	assert_int_equal(dp_fragment_rule(&a, DP_INPUT, "tcp dport 22 counter accept"), 0);
	const struct dp_fragment *frags[] = {NULL, &a};
	struct dp_ruleset rs;
	assert_int_equal(dp_ruleset_compose(&cfg, frags, 2, &rs), 0);
	assert_true(dp_ruleset_has(&rs, "chain", "qos"));
	assert_true(dp_ruleset_has(&rs, "counter", "qos_drops"));
	assert_string_equal(rs.counters[3], "qos_drops");
	assert_string_equal(rs.chains[2].name, "qos");
	assert_string_equal(rs.chains[1].rules.v[rs.chains[1].rules.n - 1],
	                    "tcp dport 22 counter accept");
	char *text;
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	assert_null(strstr(text, "table netdev")); /* no netdev rules: no table */
	free(text);
	dp_ruleset_free(&rs);

	/* The same chain from two fragments, a counter shadowing the
	 * datapath's own. */
	assert_int_equal(dp_fragment_chain(&b, "qos", NULL, NULL, NULL, NULL, &c), 0);
	const struct dp_fragment *twice[] = {&a, &b};
	assert_int_equal(dp_ruleset_compose(&cfg, twice, 2, &rs), -EEXIST);
	dp_fragment_free(&b);
	assert_int_equal(dp_fragment_counter(&b, "spoofed"), 0);
	assert_int_equal(dp_ruleset_compose(&cfg, twice, 2, &rs), -EEXIST);
	dp_fragment_free(&b);

	/* A failure (a name too long) is kept in the fragment, the first
	 * one only, and returned as it is. */
	assert_int_equal(dp_fragment_chain(&b, "a-name-much-too-long-for-nftables-here", NULL, NULL,
	                                   NULL, NULL, &c),
	                 -EINVAL);
	assert_int_equal(dp_fragment_set(&b, "list", "x", "type ipv4_addr;"), -EINVAL);
	assert_int_equal(b.status, -EINVAL);
	assert_int_equal(dp_ruleset_compose(&cfg, twice, 2, &rs), -EINVAL);
	dp_fragment_free(&a);
	dp_fragment_free(&b);
}

/* How many times @needle occurs in @text. */
static size_t occurrences(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* A fragment far past the sizes the datapath once had room for (128 rules
 * a point, 8 chains, counters and sysctls and 4 sets a fragment, 24 objects
 * a ruleset, 64 hosts a link): all of it is composed and rendered, in
 * order. */
static void test_compose_large(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_fragment a = {0};
	struct dp_chain *first, *c;
	char name[DP_NAME_MAX];
	assert_int_equal(dp_fragment_chain(&a, "policy_0", NULL, NULL, NULL, NULL, &first), 0);
	for (int i = 0; i < 300; i++) {
		assert_int_equal(dp_fragment_rule(&a, DP_INPUT, "meta mark %d accept", i), 0);
		assert_int_equal(dp_fragment_guard(&a, "ip daddr 192.0.2.%d", i % 256), 0);
		snprintf(name, sizeof(name), "policy_%d", i + 1);
		assert_int_equal(dp_fragment_chain(&a, name, NULL, NULL, NULL, NULL, &c), 0);
		assert_int_equal(dp_fragment_chain_rule(&a, c, "meta mark %d drop", i), 0);
		/* The first chain's pointer stays valid as chains are added. */
		assert_int_equal(dp_fragment_chain_rule(&a, first, "tcp dport %d drop", i), 0);
		snprintf(name, sizeof(name), "hits_%d", i);
		assert_int_equal(dp_fragment_counter(&a, name), 0);
		snprintf(name, sizeof(name), "seen_%d", i);
		assert_int_equal(dp_fragment_set(&a, "set", name, "type ipv4_addr;"), 0);
	}
	for (int i = 0; i < 20; i++)
		assert_int_equal(dp_fragment_sysctl(&a, "net/ipv4/ip_forward", "1"), 0);
	struct dp_link l = {.name = "d0", .peer = "d1", .present = true};
	for (int i = 0; i < 100; i++) {
		const uint8_t mac[6] = {2, 0, 0, 0, 0, (uint8_t)i};
		assert_int_equal(
		    dp_link_add_host(&l, (struct in_addr){htonl(0x0a4d0200u + i)}, mac), 0);
	}
	assert_int_equal(dp_fragment_link(&a, &l), 0);
	dp_link_free(&l); /* the fragment holds its own copy */
	assert_int_equal(a.status, 0);
	assert_int_equal(a.links[0].n_hosts, 100);
	assert_int_equal(a.links[0].hosts[99].mac[5], 99);
	assert_int_equal(a.n_sysctls, 20);

	const struct dp_fragment *frags[] = {&a};
	struct dp_ruleset rs;
	assert_int_equal(dp_ruleset_compose(&cfg, frags, 1, &rs), 0);
	assert_int_equal(rs.n_chains, 2 + 301);
	assert_int_equal(rs.n_counters, DP_COUNTER_MAX + 300);
	assert_int_equal(rs.n_sets, 300);
	char *text;
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	assert_int_equal(occurrences(text, "\t\tmeta mark "), 600);
	assert_int_equal(occurrences(text, "tcp dport "), 300);
	assert_int_equal(occurrences(text, "ip daddr 192.0.2."), 300);
	assert_int_equal(occurrences(text, "\tcounter hits_"), 300);
	assert_int_equal(occurrences(text, "\tset seen_"), 300);
	const char *r0 = strstr(text, "meta mark 0 accept"),
	           *r299 = strstr(text, "meta mark 299 accept");
	assert_non_null(r0);
	assert_non_null(r299);
	assert_true(r0 < r299);
	assert_non_null(strstr(text, "\tchain policy_300 {\n\t\tmeta mark 299 drop\n\t}\n"));
	assert_non_null(strstr(text, "\t\ttcp dport 299 drop\n\t}\n\tchain policy_1 {"));
	free(text);
	dp_ruleset_free(&rs);
	dp_fragment_free(&a);
}

/* Three rulesets a change goes through: the datapath's own chains with a
 * fragment's chains, counter, set and netdev chain; then some of them
 * gone, one changed, new ones (one jumped to from a changed base chain)
 * and no netdev chain; then a netdev chain again. */
static void staged(int stage, struct dp_ruleset *ret_rs)
{
	struct dp_config cfg = lab_host(1);
	struct dp_fragment f = {0};
	struct dp_chain *c;
	assert_int_equal(dp_fragment_chain(&f, "kept", NULL, NULL, NULL, NULL, &c), 0);
	dp_fragment_chain_rule(&f, c, "tcp dport 22 counter accept");
	if (stage == 0) {
		dp_fragment_counter(&f, "old_counter");
		dp_fragment_set(&f, "set", "old_set", "type ipv4_addr;");
		dp_fragment_chain(&f, "old_chain", NULL, NULL, NULL, NULL, &c);
		dp_fragment_chain_rule(&f, c,
		                       "ip saddr @old_set counter name \"old_counter\" drop");
		dp_fragment_rule(&f, DP_FORWARD_OUT, "jump old_chain");
		dp_fragment_netdev_chain(&f, "nd", "u0", "accept", &c);
		dp_fragment_chain_rule(&f, c, "counter");
	} else {
		dp_fragment_counter(&f, "new_counter");
		dp_fragment_set(&f, "map", "new_map", "type inet_service : inet_service;");
		dp_fragment_chain(&f, "new_chain", NULL, NULL, NULL, NULL, &c);
		dp_fragment_chain_rule(&f, c,
		                       "tcp dport @new_map counter name \"new_counter\" accept");
		dp_fragment_rule(&f, DP_FORWARD_OUT, "jump new_chain");
	}
	if (stage == 2) {
		dp_fragment_netdev_chain(&f, "nd", "u0", "accept", &c);
		dp_fragment_chain_rule(&f, c, "ether type arp counter");
	}
	const struct dp_fragment *frags[] = {&f};
	assert_int_equal(dp_ruleset_compose(&cfg, frags, 1, ret_rs), 0);
	dp_fragment_free(&f);
}

/* A change touches only what differs: nothing for the same ruleset; for
 * another, a flush of each chain that changed or went, then the deletes,
 * then only the new and changed objects declared. */
static void test_delta_touches_only_what_differs(void **state)
{
	(void)state;
	struct dp_ruleset a, b;
	char *tx;
	staged(0, &a);
	staged(1, &b);
	assert_int_equal(dp_ruleset_delta(&a, &a, &tx), 0);
	assert_string_equal(tx, "table inet ettm {\n}\ntable netdev ettm {\n}\n");
	free(tx);
	assert_int_equal(dp_ruleset_delta(&a, &b, &tx), 0);
	assert_golden("delta.nft", tx);
	assert_non_null(strstr(tx, "flush chain inet ettm forward\n"));
	assert_non_null(strstr(tx, "flush chain inet ettm old_chain\n"));
	assert_null(strstr(tx, "flush chain inet ettm input"));
	assert_null(strstr(tx, "chain kept"));
	assert_null(strstr(tx, "chain input"));
	assert_non_null(strstr(tx, "delete table netdev ettm\n"));
	free(tx);

	/* A set whose declaration changed: only a listing can say how to
	 * replace it. */
	snprintf(b.sets[0].spec, sizeof(b.sets[0].spec), "type ipv4_addr : inet_service;");
	snprintf(b.sets[0].name, sizeof(b.sets[0].name), "old_set");
	b.sets[0].kind = "set";
	assert_int_equal(dp_ruleset_delta(&a, &b, &tx), -ESTALE);
	dp_ruleset_free(&a);
	dp_ruleset_free(&b);
}

/* The table's listing in the calling thread's namespace. */
static char *listing(struct nft_ctx *ctx)
{
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	assert_int_equal(nft_run_cmd_from_buffer(ctx, "list table inet ettm"), 0);
	char *text = NULL;
	/* No netdev table is listed as none. */
	bool netdev = nft_run_cmd_from_buffer(ctx, "list table netdev ettm") == 0;
	assert_true(asprintf(&text, "%s%s", nft_ctx_get_output_buffer(ctx),
	                     netdev ? "" : "(no netdev table)\n") > 0);
	nft_ctx_unbuffer_output(ctx);
	nft_ctx_unbuffer_error(ctx);
	return text;
}

struct delta_run {
	int status;
	char *by_delta[2], *whole[2];
};

/* In a namespace of its own: each stage applied as a change from the one
 * before, listed, then applied again whole (what the agent did before
 * changes were sent alone), listed. */
static void *delta_main(void *arg)
{
	struct delta_run *run = arg;
	if (unshare(CLONE_NEWNET) < 0) {
		run->status = -errno;
		return NULL;
	}
	if (system("ip link add u0 type veth peer name u0p") != 0) {
		run->status = -ENODEV;
		return NULL;
	}
	struct dp_nft *nft;
	assert_int_equal(dp_nft_new(&nft), 0);
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	struct dp_ruleset rs;
	char *error = NULL;
	staged(0, &rs);
	assert_int_equal(dp_nft_apply(nft, &rs, &error), 0);
	dp_ruleset_free(&rs);
	for (int stage = 1; stage <= 2; stage++) {
		staged(stage, &rs);
		int r = dp_nft_apply(nft, &rs, &error);
		if (r < 0)
			fprintf(stderr, "stage %d by delta: %s\n", stage, error);
		assert_int_equal(r, 0);
		run->by_delta[stage - 1] = listing(ctx);
		dp_nft_forget(nft);
		assert_int_equal(dp_nft_apply(nft, &rs, &error), 0);
		run->whole[stage - 1] = listing(ctx);
		dp_ruleset_free(&rs);
	}
	nft_ctx_free(ctx);
	dp_nft_free(nft);
	return NULL;
}

/* Root only: what a change leaves in the kernel is what replacing the
 * whole table leaves. */
static void test_delta_in_the_kernel(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	struct delta_run run = {0};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, delta_main, &run), 0);
	pthread_join(t, NULL);
	if (run.status == -EPERM)
		skip();
	assert_int_equal(run.status, 0);
	for (int i = 0; i < 2; i++) {
		assert_non_null(run.by_delta[i]);
		assert_string_equal(run.by_delta[i], run.whole[i]);
		free(run.by_delta[i]);
		free(run.whole[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_render_lab_host),
	    cmocka_unit_test(test_render_other_names),
	    cmocka_unit_test(test_render_is_deterministic),
	    cmocka_unit_test(test_has),
	    cmocka_unit_test(test_transaction_fresh),
	    cmocka_unit_test(test_transaction_keeps_netdev_hooks),
	    cmocka_unit_test(test_steer_rules),
	    cmocka_unit_test(test_transaction_deletes_stale),
	    cmocka_unit_test(test_transaction_bad_listing),
	    cmocka_unit_test(test_render_devices),
	    cmocka_unit_test(test_guard_before_accepts),
	    cmocka_unit_test(test_control_closed),
	    cmocka_unit_test(test_compose_generic),
	    cmocka_unit_test(test_compose_large),
	    cmocka_unit_test(test_delta_touches_only_what_differs),
	    cmocka_unit_test(test_delta_in_the_kernel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
