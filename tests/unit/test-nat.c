/* NAT's pure parts: port blocks (allocation, exhaustion, never two owners),
 * the datapath's view, the switches' flows and group, ARP frames, and the
 * translated ruleset. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cmocka.h>

#include "datapath/ruleset.h"
#include "golden.h"
#include "guest/guest.h"
#include "services/nat/nat.h"
#include "services/nat/pmp.h"
#include "switch/desired.h"
#include "trust/tables.h"
#include "switch/tables.h"
#include "services/nat/tables.h"
#include "tables-all.h"

static struct nat_options lab_options(void)
{
	struct nat_options o;
	nat_options_default(&o);
	inet_pton(AF_INET, "203.0.113.10", &o.publics[0]);
	o.n_publics = 1;
	inet_pton(AF_INET, "203.0.113.1", &o.gateways[0]);
	o.n_gateways = 1;
	return o;
}

static struct store_result apply(struct store_state *st, const struct store_cmd *cmd)
{
	struct store_result res;
	assert_int_equal(store_state_apply(st, cmd, &res), 0);
	return res;
}

/* Member @n ("hN", id n) on switch 1 port @n, with AEE MAC 02:..:0n. */
/* The datapath's ruleset with NAT's fragment alone, as the agent composes
 * it. */
static int compose_nat(const struct dp_config *cfg, const struct nat_view *d,
                       struct dp_ruleset *ret_rs)
{
	struct dp_fragment *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	int r = nat_ruleset_build(cfg, d, f);
	const struct dp_fragment *frags[] = {f};
	if (r == 0)
		r = dp_ruleset_compose(cfg, frags, 1, ret_rs);
	dp_fragment_free(f);
	free(f);
	return r;
}

static void host_at(struct store_state *st, unsigned n, bool admit, uint64_t dpid, uint32_t port)
{
	struct store_cmd cmd = {.table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = 1};
	STORE_CMD_ROW(&cmd, struct store_member)->id = n;
	snprintf(STORE_CMD_ROW(&cmd, struct store_member)->name,
	         sizeof(STORE_CMD_ROW(&cmd, struct store_member)->name), "h%u", n);
	snprintf(STORE_CMD_ROW(&cmd, struct store_member)->address,
	         sizeof(STORE_CMD_ROW(&cmd, struct store_member)->address), "10.77.0.%u:7700", n);
	assert_true(apply(st, &cmd).applied);
	cmd = (struct store_cmd){.table = SWITCH_LOCATIONS, .op = STORE_PUT, .time_ms = 1};
	snprintf(STORE_CMD_ROW(&cmd, struct switch_location)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct switch_location)->host), "h%u", n);
	snprintf(STORE_CMD_ROW(&cmd, struct switch_location)->mac,
	         sizeof(STORE_CMD_ROW(&cmd, struct switch_location)->mac), "02:00:00:00:00:%02x",
	         n);
	STORE_CMD_ROW(&cmd, struct switch_location)->dpid = dpid;
	STORE_CMD_ROW(&cmd, struct switch_location)->port = port;
	STORE_CMD_ROW(&cmd, struct switch_location)->guest_addr = 0x0a4d0100 | n;
	assert_true(apply(st, &cmd).applied);
	if (admit) {
		cmd = (struct store_cmd){.table = TRUST_ADMISSIONS, .op = STORE_PUT, .time_ms = 1};
		snprintf(STORE_CMD_ROW(&cmd, struct trust_admission)->host,
		         sizeof(STORE_CMD_ROW(&cmd, struct trust_admission)->host), "h%u", n);
		assert_true(apply(st, &cmd).applied);
	}
}

static void host(struct store_state *st, unsigned n, bool admit)
{
	host_at(st, n, admit, 1, n);
}

static struct store_result block(struct store_state *st, uint16_t start, uint16_t size,
                                 uint64_t owner)
{
	struct store_cmd cmd = {.table = NAT_BLOCKS, .op = STORE_PUT, .time_ms = 1};
	(*STORE_CMD_ROW(&cmd, struct nat_block)) = (struct nat_block){start, size, owner, 1};
	return apply(st, &cmd);
}

static struct store_result mapping(struct store_state *st, uint8_t proto, uint16_t port,
                                   uint64_t owner, uint16_t guest_port)
{
	struct store_cmd cmd = {.table = NAT_MAPPINGS, .op = STORE_PUT, .time_ms = 1};
	(*STORE_CMD_ROW(&cmd, struct nat_mapping)) = (struct nat_mapping){
	    .proto = proto, .public_port = port, .owner = owner, .guest_port = guest_port};
	return apply(st, &cmd);
}

static void test_blocks(void **state)
{
	(void)state;
	struct store_state *st;
	struct nat_options o = lab_options();
	uint16_t start;
	assert_int_equal(store_state_new(&st), 0);

	assert_int_equal(nat_block_pick(st, &o, &start), 0);
	assert_int_equal(start, 1024);
	assert_true(block(st, start, 1024, 1).applied);
	assert_int_equal(nat_block_pick(st, &o, &start), 0);
	assert_int_equal(start, 2048);

	/* Never two owners: an overlapping claim is refused, whoever makes it,
	 * and so is a misaligned one. */
	struct store_result r = block(st, 1024, 1024, 2);
	assert_false(r.applied);
	assert_string_equal(r.reason, "ports 1024-2047 overlap the block 1024-2047 of member 1");
	assert_false(block(st, 1536, 512, 2).applied);
	assert_false(block(st, 0, 4096, 2).applied);
	assert_false(block(st, 3000, 1024, 2).applied);
	assert_false(block(st, 4096, 1000, 2).applied);
	assert_true(block(st, 2048, 1024, 2).applied);
	assert_int_equal(nat_blocks_of(st, 1), 1);
	assert_int_equal(nat_port_owner(st, 2047), 1);
	assert_int_equal(nat_port_owner(st, 2048), 2);
	assert_int_equal(nat_port_owner(st, 80), 0);

	/* Exhaustion: blocks of 16384 from port 1024 start at 16384; three
	 * fit below 65536. */
	struct store_state *big;
	assert_int_equal(store_state_new(&big), 0);
	o.block_size = 16384;
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(nat_block_pick(big, &o, &start), 0);
		assert_int_equal(start, 16384 * (i + 1));
		assert_true(block(big, start, 16384, i + 1).applied);
	}
	assert_int_equal(nat_block_pick(big, &o, &start), -ENOSPC);

	/* A mapping may not take a port of another member's block. */
	r = mapping(st, 6, 2100, 1, 80);
	assert_false(r.applied);
	assert_string_equal(r.reason, "public port 2100 is in the block 2048-3071 of member 2");
	assert_true(mapping(st, 6, 2100, 2, 80).applied);
	assert_true(mapping(st, 6, 80, 1, 8080).applied);
	assert_false(mapping(st, 6, 80, 2, 8080).applied);
	store_state_free(big);
	store_state_free(st);
}

/* Claiming under a burst: several free blocks at once, and as many as the
 * use and its growth call for. */
static void test_blocks_wanted(void **state)
{
	(void)state;
	struct store_state *st;
	struct nat_options o = lab_options();
	o.block_size = 256;
	assert_int_equal(store_state_new(&st), 0);
	assert_true(block(st, 1024, 256, 1).applied);
	assert_true(block(st, 1536, 256, 2).applied);
	uint16_t starts[4];
	assert_int_equal(nat_blocks_pick(st, &o, starts, 4), 4);
	assert_int_equal(starts[0], 1280); /* the gap first, then upwards */
	assert_int_equal(starts[1], 1792);
	assert_int_equal(starts[3], 2304);
	/* None held: one. */
	assert_int_equal(nat_blocks_wanted(0, 256, 0, 0), 1);
	/* Under 3/4 of one block: none; at 3/4: one more, as before. */
	assert_int_equal(nat_blocks_wanted(1, 256, 191, 0), 0);
	assert_int_equal(nat_blocks_wanted(1, 256, 192, 0), 1);
	/* A burst: 250 in use and 500 more expected before new blocks are
	 * applied want room for 750, under 3/4 of 4 blocks (768). */
	assert_int_equal(nat_blocks_wanted(1, 256, 250, 500), 3);
	assert_int_equal(nat_blocks_wanted(4, 256, 250, 500), 0);
	/* The last blocks of the port range. */
	o.first_port = 65536 - 512;
	assert_int_equal(nat_blocks_pick(st, &o, starts, 4), 2);
	store_state_free(st);
}

static void test_uplink_choice(void **state)
{
	(void)state;
	bool up[3] = {true, true, true};
	assert_int_equal(nat_uplink_for(4, up, 3), 1);
	assert_int_equal(nat_uplink_for(5, up, 3), 2);
	up[1] = false; /* 2 live: id 4 -> the first live */
	assert_int_equal(nat_uplink_for(4, up, 3), 0);
	assert_int_equal(nat_uplink_for(5, up, 3), 2);
	up[0] = up[2] = false; /* none up: spread anyway */
	assert_int_equal(nat_uplink_for(5, up, 3), 2);
	assert_int_equal(nat_uplink_for(7, NULL, 1), 0);
}

static void test_datapath_view(void **state)
{
	(void)state;
	struct store_state *st;
	struct nat_options o = lab_options();
	assert_int_equal(store_state_new(&st), 0);
	host(st, 1, true);
	host(st, 2, true);
	host(st, 3, false); /* not admitted: its block is not forwarded to */
	assert_true(block(st, 1024, 1024, 1).applied);
	assert_true(block(st, 2048, 1024, 2).applied);
	assert_true(block(st, 3072, 1024, 3).applied);
	assert_true(block(st, 4096, 1024, 1).applied);
	assert_true(mapping(st, 6, 80, 2, 8080).applied);
	assert_true(mapping(st, 17, 2050, 2, 53).applied); /* inside h2's block */
	assert_true(mapping(st, 6, 22, 1, 22).applied);

	static const uint8_t mac[6] = {2, 0, 0, 0, 0, 1};
	struct nat_view d;
	assert_int_equal(nat_datapath(st, &o, 1, mac, 0, &d), 0);
	assert_true(d.enabled);
	assert_int_equal(d.n_own, 2);
	assert_int_equal(d.own[0].start, 1024);
	assert_int_equal(d.own[1].start, 4096);
	assert_int_equal(d.n_others, 1);
	assert_int_equal(d.others[0].start, 2048);
	assert_int_equal(d.others[0].mac[5], 2);
	assert_int_equal(d.n_own_maps, 1);
	assert_int_equal(d.own_maps[0].public_port, 22);
	assert_int_equal(d.n_other_maps, 1); /* 80; 2050 goes with h2's block */
	assert_int_equal(d.other_maps[0].public_port, 80);
	assert_memory_equal(d.gateway_mac, nat_gateway_mac, 6);

	/* The rules it renders: two blocks in turn, a mapping, forwarding. */
	struct dp_config cfg = {.guest_if = "g0", .uplink_if = "u0", .control_plen = 16};
	inet_pton(AF_INET, "10.77.1.1", &cfg.guest_addr);
	inet_pton(AF_INET, "10.77.0.1", &cfg.control_addr);
	struct dp_ruleset rs;
	char *text;
	assert_int_equal(compose_nat(&cfg, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	assert_golden("ruleset-nat.nft", text);
	free(text);
	dp_ruleset_free(&rs);

	/* Filtering (nat.filtering): what each mode lets in of new UDP flows
	 * to a public port a guest flow has sent from. */
	struct {
		enum nat_filtering mode;
		const char *in; /* nat_in's rule, or NULL: none */
		bool peers;     /* the set of addresses sent to */
	} modes[] = {
	    {NAT_FILTER_ENDPOINT,
	     "iifname \"u0\" ip daddr 203.0.113.10 ct state new udp dport @nat_ports dnat ip to "
	     "10.77.1.1 : udp dport map @nat_ports\n",
	     false},
	    {NAT_FILTER_ADDRESS,
	     "iifname \"u0\" ip daddr 203.0.113.10 ct state new ip saddr . udp dport @nat_peers "
	     "dnat "
	     "ip to 10.77.1.1 : udp dport map @nat_ports\n",
	     true},
	    {NAT_FILTER_ADDRESS_PORT, NULL, false},
	};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		o.filtering = modes[i].mode;
		nat_view_free(&d);
		assert_int_equal(nat_datapath(st, &o, 1, mac, 0, &d), 0);
		assert_int_equal(compose_nat(&cfg, &d, &rs), 0);
		assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
		if (modes[i].in)
			assert_non_null(strstr(text, modes[i].in));
		else
			assert_null(strstr(text, "@nat_ports"));
		assert_true(!modes[i].peers == !strstr(text, "set nat_peers {"));
		assert_true(!modes[i].in == !strstr(text,
		                                    "update @nat_ports { ct reply proto-dst : "
		                                    "ct original proto-src }"));
		free(text);
		dp_ruleset_free(&rs);
	}

	/* Fragments: h1, the lowest id holding a block, puts them together
	 * (the golden file above); h2 passes every one to h1, but what h1
	 * sent it. */
	nat_view_free(&d);
	assert_int_equal(nat_datapath(st, &o, 2, mac, 0, &d), 0);
	assert_true(d.fragments.known);
	assert_false(d.fragments.self);
	assert_int_equal(d.fragments.mac[5], 1);
	assert_int_equal(compose_nat(&cfg, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	const char *first = strstr(text, "chain ingress {");
	assert_non_null(first);
	assert_non_null(
	    strstr(first, "\t\tip daddr { 203.0.113.10 } ip frag-off & 0x3fff != 0 ether saddr != "
	                  "02:00:00:00:00:01 ether daddr set 02:00:00:00:00:01 ether saddr set "
	                  "02:00:00:00:00:01 fwd to \"u0\"\n\t\tip daddr { 203.0.113.10 } meta "
	                  "l4proto { tcp, udp } ether daddr set th dport map"));
	assert_null(strstr(text, "nat_frag"));
	free(text);
	dp_ruleset_free(&rs);

	/* No block yet: nothing leaves for outside. */
	struct nat_options o2 = lab_options();
	nat_view_free(&d);
	assert_int_equal(nat_datapath(st, &o2, 9, mac, 0, &d), 0);
	assert_int_equal(d.n_own, 0);
	assert_int_equal(compose_nat(&cfg, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	assert_non_null(strstr(text, "iifname \"g0\" oifname \"u0\" ip daddr != 10.77.0.0/16 "
	                             "counter drop"));
	assert_null(strstr(text, "snat"));
	free(text);
	dp_ruleset_free(&rs);
	nat_view_free(&d);
	store_state_free(st);
}

static size_t occurrences(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Far more blocks and mappings than the view once held (64 of each kind):
 * every one is in the view and in the ruleset. */
static void test_datapath_view_large(void **state)
{
	(void)state;
	struct store_state *st;
	struct nat_options o = lab_options();
	o.block_size = 16;
	assert_int_equal(store_state_new(&st), 0);
	host(st, 1, true);
	host(st, 2, true);
	for (unsigned i = 0; i < 300; i++) {
		assert_true(block(st, (uint16_t)(1024 + 32 * i), 16, 1).applied);
		assert_true(block(st, (uint16_t)(1040 + 32 * i), 16, 2).applied);
	}
	for (unsigned i = 0; i < 200; i++) {
		assert_true(mapping(st, 6, (uint16_t)(20000 + i), 1, (uint16_t)(2000 + i)).applied);
		assert_true(
		    mapping(st, 17, (uint16_t)(30000 + i), 2, (uint16_t)(3000 + i)).applied);
	}
	static const uint8_t mac[6] = {2, 0, 0, 0, 0, 1};
	struct nat_view d;
	assert_int_equal(nat_datapath(st, &o, 1, mac, 0, &d), 0);
	assert_int_equal(d.n_own, 300);
	assert_int_equal(d.n_others, 300);
	assert_int_equal(d.n_own_maps, 200);
	assert_int_equal(d.n_other_maps, 200);
	assert_int_equal(d.own[299].start, 1024 + 32 * 299);
	assert_int_equal(d.others[299].start, 1040 + 32 * 299);
	assert_int_equal(d.others[299].mac[5], 2);
	assert_int_equal(d.own_maps[199].guest_port, 2199);
	assert_int_equal(d.other_maps[199].public_port, 30199);
	assert_true(d.fragments.self);

	struct dp_config cfg = {.guest_if = "g0", .uplink_if = "u0", .control_plen = 16};
	inet_pton(AF_INET, "10.77.1.1", &cfg.guest_addr);
	inet_pton(AF_INET, "10.77.0.1", &cfg.control_addr);
	struct dp_ruleset rs;
	char *text;
	assert_int_equal(compose_nat(&cfg, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	assert_int_equal(occurrences(text, "dnat ip to 10.77.1.1:"), 200);
	assert_non_null(strstr(text, "tcp dport 20199 dnat ip to 10.77.1.1:2199\n"));
	/* Each other host's mapping: steered, and its ICMP errors too. */
	assert_int_equal(occurrences(text, "ether daddr set 02:00:00:00:00:02 ether saddr set"),
	                 400);
	assert_non_null(strstr(text, "10592-10607"));                     /* the last own block */
	assert_non_null(strstr(text, "10608-10623 : 02:00:00:00:00:02")); /* the last other */
	/* The marks of others' mappings follow those of their 300 blocks. */
	assert_non_null(strstr(text, "udp dport 30199 meta mark set 0xe77e01f4 notrack"));
	assert_non_null(strstr(text, "0xe77e012c : 02:00:00:00:00:02, 0xe77e012d : "));
	assert_non_null(strstr(text, "0xe77e01f4 : 02:00:00:00:00:02 }"));
	free(text);
	dp_ruleset_free(&rs);
	nat_view_free(&d);
	store_state_free(st);

	/* The one limit left: the reassembler marks others' blocks and
	 * mappings with the mark's low 16 bits, 65535 of them at most. */
	struct nat_view big = {.enabled = true, .n_publics = 1, .n_other_maps = 65536};
	big.publics[0] = o.publics[0];
	big.fragments = (struct nat_view_fragments){.known = true, .self = true};
	big.other_maps = calloc(big.n_other_maps, sizeof(*big.other_maps));
	assert_non_null(big.other_maps);
	struct dp_fragment f = {0};
	assert_int_equal(nat_ruleset_build(&cfg, &big, &f), -E2BIG);
	assert_non_null(f.error);
	assert_non_null(strstr(f.error, "65536 others' mappings"));
	assert_non_null(strstr(f.error, "the 65535 the fragment mark's 16 bits number"));
	dp_fragment_free(&f);
	big.n_other_maps = 65535;
	assert_int_equal(nat_ruleset_build(&cfg, &big, &f), 0);
	dp_fragment_free(&f);
	nat_view_free(&big);
}

static const struct of13_flow_mod *find(const struct sw_flows *f, uint16_t prio,
                                        enum of13_oxm_field field, uint64_t value, bool in_port)
{
	for (size_t i = 0; i < f->n; i++) {
		uint64_t v, p;
		if (f->v[i].priority == prio && of13_match_get(&f->v[i].match, field, &v, NULL) &&
		    v == value &&
		    of13_match_get(&f->v[i].match, OF13_OXM_IN_PORT, &p, NULL) == in_port)
			return &f->v[i];
	}
	return NULL;
}

static void test_switch_flows(void **state)
{
	(void)state;
	struct store_state *st;
	struct nat_options o = lab_options();
	assert_int_equal(store_state_new(&st), 0);
	host(st, 1, true);
	host(st, 2, true);
	host(st, 3, false);
	assert_true(block(st, 1024, 1024, 1).applied);
	assert_true(block(st, 2048, 1024, 2).applied);
	assert_true(mapping(st, 6, 80, 2, 8080).applied);

	struct sw_port_ref up = {1, 9};
	uint8_t gw[1][6] = {{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
	bool known = false;
	struct sw_flows f = {0};
	struct sw_groups g = {0};
	assert_int_equal(nat_flows(st, &o, &up, 1, gw, &known, 1, &f, &g), 0);

	/* Blocks to their owners, for TCP and UDP; also back out of the
	 * owner's own port (hairpinning to itself). */
	const struct of13_flow_mod *fm = find(&f, NAT_PRIO_BLOCK, OF13_OXM_TCP_DST, 2048, false);
	assert_non_null(fm);
	assert_int_equal(fm->instructions[0].actions[1].output.port, 2);
	assert_non_null(find(&f, NAT_PRIO_BLOCK, OF13_OXM_UDP_DST, 1024, false));
	fm = find(&f, NAT_PRIO_BLOCK + 1, OF13_OXM_TCP_DST, 2048, true);
	assert_non_null(fm);
	assert_int_equal(fm->instructions[0].actions[1].output.port, OF13_PORT_IN_PORT);
	/* The mapping outside any block. */
	assert_non_null(find(&f, NAT_PRIO_MAPPING, OF13_OXM_TCP_DST, 80, false));
	/* ARP for the public address to the master. */
	assert_non_null(find(&f, NAT_PRIO_ARP, OF13_OXM_ARP_TPA, 0xcb00710a, true));
	/* Outbound waits (dropped) until the gateway is known. */
	fm = find(&f, NAT_PRIO_OUT, OF13_OXM_IPV4_SRC, 0xcb00710a, false);
	assert_non_null(fm);
	assert_int_equal(fm->n_instructions, 0);
	/* The select group of the admitted AEEs: h1 and h2, not h3. */
	assert_int_equal(g.n, 1);
	assert_int_equal(g.v[0].type, OF13_GROUP_TYPE_SELECT);
	assert_int_equal(g.v[0].group_id, NAT_GROUP_ID);
	assert_int_equal(g.v[0].n_buckets, 2);
	assert_int_equal(g.v[0].buckets[1].watch_port, 2);
	sw_flows_free(&f);
	sw_groups_free(&g);

	/* With the gateway known: the organisation's MAC and the gateway's. */
	known = true;
	g.n = 0;
	assert_int_equal(nat_flows(st, &o, &up, 1, gw, &known, 1, &f, &g), 0);
	fm = find(&f, NAT_PRIO_OUT, OF13_OXM_IPV4_SRC, 0xcb00710a, false);
	assert_non_null(fm);
	uint8_t pub_mac[6];
	nat_public_mac(o.publics[0], pub_mac);
	assert_memory_equal(fm->instructions[0].actions[0].set_field.value, pub_mac, 6);
	assert_memory_equal(fm->instructions[0].actions[1].set_field.value, gw[0], 6);
	assert_int_equal(fm->instructions[0].actions[2].output.port, 9);
	sw_flows_free(&f);
	sw_groups_free(&g);

	/* A switch without the uplink: no group, outbound along the path. */
	struct store_cmd l = {.table = SWITCH_LINKS, .op = STORE_PUT, .time_ms = 1};
	(*STORE_CMD_ROW(&l, struct switch_link)) = (struct switch_link){2, 5, 1, 7, 1};
	assert_true(apply(st, &l).applied);
	g.n = 0;
	assert_int_equal(nat_flows(st, &o, &up, 1, gw, &known, 2, &f, &g), 0);
	assert_int_equal(g.n, 0);
	fm = find(&f, NAT_PRIO_OUT, OF13_OXM_IPV4_SRC, 0xcb00710a, false);
	assert_non_null(fm);
	assert_int_equal(fm->instructions[0].actions[0].output.port, 5);
	sw_flows_free(&f);
	sw_groups_free(&g);
	store_state_free(st);
}

static void link_both(struct store_state *st, uint64_t a, uint32_t pa, uint64_t b, uint32_t pb)
{
	struct store_cmd l = {.table = SWITCH_LINKS, .op = STORE_PUT, .time_ms = 1};
	(*STORE_CMD_ROW(&l, struct switch_link)) = (struct switch_link){a, pa, b, pb, 1};
	assert_true(apply(st, &l).applied);
	(*STORE_CMD_ROW(&l, struct switch_link)) = (struct switch_link){b, pb, a, pa, 1};
	assert_true(apply(st, &l).applied);
}

/* The group of switch @dpid, its bucket watching @port: weight, and whether
 * it sets the AEE's address (a bucket to a host) or not (to a switch). */
static void expect_bucket(const struct sw_groups *g, uint32_t port, uint16_t weight, bool to_host)
{
	assert_int_equal(g->n, 1);
	assert_int_equal(g->v[0].group_id, NAT_GROUP_ID);
	for (size_t i = 0; i < g->v[0].n_buckets; i++) {
		const struct of13_bucket *b = &g->v[0].buckets[i];
		if (b->watch_port != port)
			continue;
		assert_int_equal(b->weight, weight);
		assert_int_equal(b->n_actions, to_host ? 2 : 1);
		assert_int_equal(b->actions[b->n_actions - 1].output.port, port);
		return;
	}
	fail_msg("no bucket watching port %u", port);
}

/* Three switches in a row, the uplink at s1 (port 9): each switch's group
 * holds its own AEEs and one bucket for the switch below, so a port that
 * goes down is skipped where it is, without a master; each switch below
 * the uplink's sends what comes from above to its group. */
static void test_any_aee_tree(void **state)
{
	(void)state;
	struct store_state *st;
	struct nat_options o = lab_options();
	assert_int_equal(store_state_new(&st), 0);
	link_both(st, 1, 7, 2, 5);
	link_both(st, 2, 6, 3, 4);
	host_at(st, 1, true, 1, 1);
	host_at(st, 2, true, 2, 2);
	host_at(st, 3, true, 3, 3);
	host_at(st, 4, true, 3, 8);
	host_at(st, 5, false, 3, 10); /* not admitted: in no group */
	struct sw_port_ref up = {1, 9};
	uint8_t gw[1][6] = {{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
	bool known = true;
	const struct {
		uint64_t dpid;
		uint32_t in_port;
		size_t n_buckets;
	} want[] = {{1, 9, 2}, {2, 5, 2}, {3, 4, 2}};
	for (size_t k = 0; k < 3; k++) {
		struct sw_flows f = {0};
		struct sw_groups g = {0};
		assert_int_equal(nat_flows(st, &o, &up, 1, gw, &known, want[k].dpid, &f, &g), 0);
		assert_int_equal(g.v[0].n_buckets, want[k].n_buckets);
		const struct of13_flow_mod *fm =
		    find(&f, NAT_PRIO_ANY_AEE, OF13_OXM_IPV4_DST, 0xcb00710a, true);
		assert_non_null(fm);
		uint64_t in;
		assert_true(of13_match_get(&fm->match, OF13_OXM_IN_PORT, &in, NULL));
		assert_int_equal(in, want[k].in_port);
		assert_int_equal(fm->instructions[0].actions[0].group_id, NAT_GROUP_ID);
		if (want[k].dpid == 1) {
			expect_bucket(&g, 1, 1, true);
			expect_bucket(&g, 7, 3, false); /* h2 at s2, h3 and h4 at s3 */
		} else if (want[k].dpid == 2) {
			expect_bucket(&g, 2, 1, true);
			expect_bucket(&g, 6, 2, false);
		} else {
			expect_bucket(&g, 3, 1, true);
			expect_bucket(&g, 8, 1, true);
		}
		sw_flows_free(&f);
		sw_groups_free(&g);
	}
	store_state_free(st);
}

/* Whether a switch steers a block, from the flows it holds: every flow the
 * master installs for it (TCP and UDP, with the owner's address and port)
 * must be there; and the switches on the way from the uplink to a host. */
static void test_block_steered(void **state)
{
	(void)state;
	struct store_state *st;
	struct nat_options o = lab_options();
	assert_int_equal(store_state_new(&st), 0);
	link_both(st, 1, 7, 2, 5);
	link_both(st, 2, 6, 3, 4);
	host_at(st, 1, true, 1, 1);
	host_at(st, 2, true, 3, 3);
	assert_true(block(st, 1024, 256, 2).applied);
	const struct nat_block *b = store_row(st, NAT_BLOCKS, 0);

	uint64_t path[4];
	assert_int_equal(nat_steer_path(st, 1, 3, path, 4), 3);
	assert_int_equal(path[0], 1);
	assert_int_equal(path[1], 2);
	assert_int_equal(path[2], 3);
	assert_int_equal(nat_steer_path(st, 1, 1, path, 4), 1);
	assert_int_equal(nat_steer_path(st, 1, 3, path, 2), 0); /* longer than room */
	assert_int_equal(nat_steer_path(st, 1, 9, path, 4), 0); /* no way there */

	struct sw_port_ref up = {1, 9};
	uint8_t gw[1][6] = {{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
	bool known = true;
	for (uint64_t dpid = 1; dpid <= 3; dpid++) {
		struct sw_flows f = {0};
		struct sw_groups g = {0};
		assert_int_equal(nat_flows(st, &o, &up, 1, gw, &known, dpid, &f, &g), 0);
		assert_int_equal(nat_block_steered(st, &o, dpid, b, &f), 1);
		/* Another switch's flows send the block elsewhere. */
		if (dpid > 1) {
			struct sw_flows other = {0};
			assert_int_equal(nat_flows(st, &o, &up, 1, gw, &known, dpid - 1, &other, &g),
			                 0);
			assert_int_equal(nat_block_steered(st, &o, dpid, b, &other), 0);
			sw_flows_free(&other);
		}
		/* Without the UDP flow, it is not steered yet. */
		const struct of13_flow_mod *udp =
		    find(&f, NAT_PRIO_BLOCK, OF13_OXM_UDP_DST, 1024, false);
		assert_non_null(udp);
		f.v[udp - f.v] = f.v[--f.n];
		assert_int_equal(nat_block_steered(st, &o, dpid, b, &f), 0);
		sw_flows_free(&f);
		sw_groups_free(&g);
	}
	/* A switch with no way to the owner has nothing to hold. */
	struct sw_flows none = {0};
	assert_int_equal(nat_block_steered(st, &o, 9, b, &none), -ENOENT);
	store_state_free(st);
}

static void test_arp(void **state)
{
	(void)state;
	struct arp_msg m = {.op = 1,
	                    .eth_src = {2, 0xe7, 0x7e, 0, 0x71, 10},
	                    .eth_dst = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	                    .sha = {2, 0xe7, 0x7e, 0, 0x71, 10}};
	inet_pton(AF_INET, "203.0.113.10", &m.spa);
	inet_pton(AF_INET, "203.0.113.1", &m.tpa);
	uint8_t frame[ARP_FRAME_LEN];
	assert_int_equal(arp_build(&m, frame), ARP_FRAME_LEN);
	/* As tcpdump would show it: who-has 203.0.113.1 tell 203.0.113.10. */
	static const uint8_t want[ARP_FRAME_LEN] = {
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xe7, 0x7e, 0x00, 0x71, 0x0a, 0x08, 0x06,
	    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0xe7, 0x7e, 0x00, 0x71, 0x0a,
	    0xcb, 0x00, 0x71, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xcb, 0x00, 0x71, 0x01};
	assert_memory_equal(frame, want, ARP_FRAME_LEN);
	struct arp_msg back;
	assert_int_equal(arp_parse(frame, ARP_FRAME_LEN, &back), 0);
	assert_int_equal(back.op, 1);
	assert_int_equal(back.spa.s_addr, m.spa.s_addr);
	assert_int_equal(back.tpa.s_addr, m.tpa.s_addr);
	assert_memory_equal(back.sha, m.sha, 6);
	/* Truncated, not ARP, an unknown operation: refused. */
	for (size_t n = 0; n < ARP_FRAME_LEN; n++)
		assert_int_equal(arp_parse(frame, n, &back), -EBADMSG);
	frame[21] = 9;
	assert_int_equal(arp_parse(frame, ARP_FRAME_LEN, &back), -EBADMSG);
	frame[21] = 1;
	frame[13] = 0x00;
	assert_int_equal(arp_parse(frame, ARP_FRAME_LEN, &back), -EBADMSG);
}

static void test_mapping_port(void **state)
{
	(void)state;
	struct store_state *st;
	uint16_t port;
	assert_int_equal(store_state_new(&st), 0);
	assert_true(block(st, 1024, 256, 1).applied);
	assert_true(block(st, 1280, 256, 2).applied);
	assert_int_equal(nat_mapping_port(st, 1, 6, 8080, 8080, &port), 0);
	assert_int_equal(port, 8080); /* outside every block, free */
	assert_true(mapping(st, 6, 8080, 1, 8080).applied);
	/* Taken: the RFC's alternative, a port of its own block. */
	assert_int_equal(nat_mapping_port(st, 2, 6, 8080, 8080, &port), 1);
	assert_int_equal(port, 1535);
	/* In another member's block: the alternative too. */
	assert_int_equal(nat_mapping_port(st, 1, 17, 53, 1300, &port), 1);
	assert_int_equal(port, 1279);
	/* A renewal keeps its port, whatever is suggested. */
	assert_int_equal(nat_mapping_port(st, 1, 6, 8080, 9999, &port), 0);
	assert_int_equal(port, 8080);
	/* No block: nothing to give but a free suggested port. */
	assert_int_equal(nat_mapping_port(st, 3, 6, 22, 0, &port), -ENOSPC);
	store_state_free(st);
}

/* The command that puts @owner's mapping of @port to its guest's @guest_port. */
static struct store_cmd mapping_cmd(uint8_t proto, uint16_t port, uint64_t owner,
                                    uint16_t guest_port)
{
	struct store_cmd cmd = {.table = NAT_MAPPINGS, .op = STORE_PUT, .time_ms = 1};
	(*STORE_CMD_ROW(&cmd, struct nat_mapping)) = (struct nat_mapping){.proto = proto,
	                                                                  .public_port = port,
	                                                                  .owner = owner,
	                                                                  .guest_port = guest_port,
	                                                                  .expires_ms = 60000};
	return cmd;
}

/* Two guests ask for one free port at once: both replicas choose it, the
 * log commits h1's first and refuses h2's on every replica; h2's replica
 * then holds h1's mapping, and choosing again gives a port of h2's own. */
static void test_mapping_race(void **state)
{
	(void)state;
	struct store_state *st[2];
	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_state_new(&st[i]), 0);
		assert_true(block(st[i], 1024, 256, 1).applied);
		assert_true(block(st[i], 1280, 256, 2).applied);
	}
	struct nat_map_ask a1 = {.proto = 6, .guest_port = 8080, .suggested = 8080};
	struct nat_map_ask a2 = a1;
	uint16_t p1, p2;
	assert_int_equal(nat_map_next(st[0], 1, &a1, &p1), 0);
	assert_int_equal(nat_map_next(st[1], 2, &a2, &p2), 0);
	assert_int_equal(p1, 8080);
	assert_int_equal(p2, 8080);
	struct store_cmd c1 = mapping_cmd(6, p1, 1, 8080), c2 = mapping_cmd(6, p2, 2, 8080);
	for (int i = 0; i < 2; i++) {
		assert_true(apply(st[i], &c1).applied);
		struct store_result r = apply(st[i], &c2);
		assert_false(r.applied);
		assert_non_null(strstr(r.reason, "is mapped by member 1"));
	}
	/* h2 chooses again on its replica: the alternative, its own port. */
	a2.refused++;
	assert_int_equal(nat_map_next(st[1], 2, &a2, &p2), 0);
	assert_int_equal(p2, 1535);
	c2 = mapping_cmd(6, p2, 2, 8080);
	for (int i = 0; i < 2; i++)
		assert_true(apply(st[i], &c2).applied);
	/* Both replicas agree: each guest has the port it was told of. */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(nat_mapping_of(st[i], 1, 6, 8080)->public_port, 8080);
		assert_int_equal(nat_mapping_of(st[i], 2, 6, 8080)->public_port, 1535);
	}
	/* With PREFER_FAILURE the suggested port or nothing: once it is
	 * taken, choosing again refuses. */
	struct nat_map_ask a3 = {
	    .proto = 17, .guest_port = 53, .suggested = 9000, .prefer_failure = true};
	assert_int_equal(nat_map_next(st[1], 2, &a3, &p2), 0);
	assert_int_equal(p2, 9000);
	struct store_cmd c3 = mapping_cmd(17, 9000, 1, 53);
	assert_true(apply(st[1], &c3).applied);
	a3.refused++;
	assert_int_equal(nat_map_next(st[1], 2, &a3, &p2), -EEXIST);
	/* A request the store keeps refusing ends. */
	a2.refused = NAT_MAP_TRIES;
	assert_int_equal(nat_map_next(st[1], 2, &a2, &p2), -EAGAIN);
	/* The admin's mapping (no expiry) is not the guest's to change. */
	assert_true(mapping(st[1], 6, 22, 2, 22).applied);
	struct nat_map_ask a4 = {.proto = 6, .guest_port = 22, .suggested = 22};
	assert_int_equal(nat_map_next(st[1], 2, &a4, &p2), -EPERM);
	for (int i = 0; i < 2; i++)
		store_state_free(st[i]);
}

static size_t respond(const struct pmp_request *q, enum pmp_result r, uint16_t ext,
                      uint32_t lifetime, uint8_t *out)
{
	struct pmp_response res;
	pmp_response_for(q, r, &res);
	res.epoch = 5;
	res.external_port = ext;
	res.lifetime = lifetime;
	inet_pton(AF_INET, "203.0.113.10", &res.external);
	return pmp_encode(&res, out, PMP_MAX_MESSAGE);
}

static void test_natpmp(void **state)
{
	(void)state;
	struct pmp_request q;
	uint8_t out[PMP_MAX_MESSAGE];

	/* External address (RFC 6886 section 3.2). */
	static const uint8_t address[] = {0, 0};
	assert_int_equal(pmp_decode(address, sizeof(address), &q), PMP_SUCCESS);
	static const uint8_t address_reply[] = {0, 128, 0, 0, 0, 0, 0, 5, 203, 0, 113, 10};
	assert_int_equal(respond(&q, PMP_SUCCESS, 0, 0, out), sizeof(address_reply));
	assert_memory_equal(out, address_reply, sizeof(address_reply));

	/* Map TCP 8080 for an hour (section 3.3). */
	static const uint8_t map[] = {0, 2, 0, 0, 0x1f, 0x90, 0x1f, 0x90, 0, 0, 0x0e, 0x10};
	assert_int_equal(pmp_decode(map, sizeof(map), &q), PMP_SUCCESS);
	assert_int_equal(q.protocol, 6);
	assert_int_equal(q.internal_port, 8080);
	assert_int_equal(q.external_port, 8080);
	assert_int_equal(q.lifetime, 3600);
	static const uint8_t map_reply[] = {0,    130,  0,    0,    0, 0, 0,    5,
	                                    0x1f, 0x90, 0x05, 0xff, 0, 0, 0x0e, 0x10};
	assert_int_equal(respond(&q, PMP_SUCCESS, 1535, 3600, out), sizeof(map_reply));
	assert_memory_equal(out, map_reply, sizeof(map_reply));
	/* Out of resources: code 4. */
	assert_int_equal(respond(&q, PMP_NO_RESOURCES, 0, 0, out), 16);
	assert_int_equal(out[3], 4);

	/* Truncated or padded map requests, responses: dropped. */
	for (size_t n = 1; n < sizeof(map); n++)
		assert_int_equal(pmp_decode(map, n, &q), PMP_DROP);
	static const uint8_t reply_in[] = {0, 130, 0, 0};
	assert_int_equal(pmp_decode(reply_in, sizeof(reply_in), &q), PMP_DROP);
	/* An unknown opcode: result 5. */
	static const uint8_t op3[] = {0, 3, 0, 0};
	assert_int_equal(pmp_decode(op3, sizeof(op3), &q), PMP_UNSUPP_OPCODE);
	assert_true(respond(&q, PMP_UNSUPP_OPCODE, 0, 0, out) >= 4);
	assert_int_equal(out[1], 131);
	assert_int_equal(out[3], 5);
}

static size_t pcp_map(uint8_t *buf, uint8_t proto, uint16_t port, const uint8_t *extra,
                      size_t extra_len)
{
	uint8_t *p = buf;
	memset(buf, 0, 60);
	p[0] = 2;
	p[1] = 1; /* MAP */
	p[4] = 0, p[5] = 0, p[6] = 0x0e, p[7] = 0x10;
	p[18] = p[19] = 0xff;
	p[20] = 10, p[21] = 77, p[22] = 1, p[23] = 2;
	for (int i = 0; i < 12; i++)
		p[24 + i] = (uint8_t)(0xa0 + i); /* nonce */
	p[36] = proto;
	p[40] = (uint8_t)(port >> 8), p[41] = (uint8_t)port;
	p[42] = (uint8_t)(port >> 8), p[43] = (uint8_t)port;
	if (extra_len)
		memcpy(buf + 60, extra, extra_len);
	return 60 + extra_len;
}

static void test_pcp(void **state)
{
	(void)state;
	struct pmp_request q;
	uint8_t buf[128], out[PMP_MAX_MESSAGE];
	size_t len = pcp_map(buf, 6, 8080, NULL, 0);
	assert_int_equal(pmp_decode(buf, len, &q), PMP_SUCCESS);
	assert_int_equal(q.version, 2);
	assert_int_equal(q.opcode, PCP_OP_MAP);
	assert_int_equal(q.lifetime, 3600);
	assert_int_equal(ntohl(q.client.s_addr), 0x0a4d0102);
	assert_int_equal(q.protocol, 6);
	assert_int_equal(q.internal_port, 8080);
	assert_int_equal(q.external.s_addr, 0);
	assert_false(q.prefer_failure);

	/* The response: R bit, result, lifetime, epoch, the nonce echoed, the
	 * assigned port and address. */
	assert_int_equal(respond(&q, PMP_SUCCESS, 1535, 3600, out), 60);
	assert_int_equal(out[0], 2);
	assert_int_equal(out[1], 0x81);
	assert_int_equal(out[3], 0);
	assert_int_equal(out[7], 0x10);
	assert_int_equal(out[11], 5);
	assert_memory_equal(out + 24, buf + 24, 12);
	assert_int_equal(out[36], 6);
	assert_int_equal((out[40] << 8) | out[41], 8080);
	assert_int_equal((out[42] << 8) | out[43], 1535);
	static const uint8_t mapped[16] = {0, 0, 0,    0,    0,   0, 0,   0,
	                                   0, 0, 0xff, 0xff, 203, 0, 113, 10};
	assert_memory_equal(out + 44, mapped, 16);

	/* Options: PREFER_FAILURE; an unknown optional one is skipped, an
	 * unknown mandatory one refused; a bad length is malformed. */
	static const uint8_t prefer[] = {2, 0, 0, 0};
	assert_int_equal(pmp_decode(buf, pcp_map(buf, 6, 80, prefer, 4), &q), PMP_SUCCESS);
	assert_true(q.prefer_failure);
	static const uint8_t optional[] = {200, 0, 0, 4, 1, 2, 3, 4};
	assert_int_equal(pmp_decode(buf, pcp_map(buf, 6, 80, optional, 8), &q), PMP_SUCCESS);
	static const uint8_t mandatory[] = {99, 0, 0, 0};
	assert_int_equal(pmp_decode(buf, pcp_map(buf, 6, 80, mandatory, 4), &q), PMP_UNSUPP_OPTION);
	static const uint8_t too_long[] = {2, 0, 0, 8};
	assert_int_equal(pmp_decode(buf, pcp_map(buf, 6, 80, too_long, 4), &q),
	                 PMP_MALFORMED_OPTION);

	/* Refusals the RFC names. */
	assert_int_equal(pmp_decode(buf, pcp_map(buf, 1, 80, NULL, 0), &q), PMP_UNSUPP_PROTOCOL);
	len = pcp_map(buf, 6, 80, NULL, 0);
	buf[1] = PCP_OP_PEER;
	assert_int_equal(pmp_decode(buf, len, &q), PMP_UNSUPP_OPCODE);
	len = pcp_map(buf, 6, 80, NULL, 0);
	buf[10] = 1; /* client address not IPv4-mapped */
	assert_int_equal(pmp_decode(buf, len, &q), PMP_ADDRESS_MISMATCH);
	len = pcp_map(buf, 6, 80, NULL, 0);
	assert_int_equal(pmp_decode(buf, len - 2, &q), PMP_MALFORMED_REQUEST);
	buf[0] = 3; /* a version we do not speak: answered in ours */
	assert_int_equal(pmp_decode(buf, len, &q), PMP_UNSUPP_VERSION);
	assert_int_equal(respond(&q, PMP_UNSUPP_VERSION, 0, 0, out), 24);
	assert_int_equal(out[0], 2);
	assert_int_equal(out[3], PMP_UNSUPP_VERSION);
	/* Every truncation of a good request: refused or dropped, never read
	 * past its end (the sanitizer build checks). */
	len = pcp_map(buf, 17, 5000, prefer, 4);
	for (size_t n = 0; n < len; n++)
		if (n != 60) /* without the option: a good request too */
			assert_int_not_equal(pmp_decode(buf, n, &q), PMP_SUCCESS);
}

/* The first checks in RFC 6887's order for a server (section 8.2): under
 * two octets dropped; the R bit set dropped, whatever the version; an
 * unsupported version answered UNSUPP_VERSION from two octets on; a
 * supported one under 24 octets dropped; then a length over 1100 or not a
 * multiple of 4, or too short for the opcode, MALFORMED_REQUEST. */
static void test_pcp_first_checks(void **state)
{
	(void)state;
	struct pmp_request q;
	uint8_t buf[PMP_MAX_MESSAGE + 8], out[PMP_MAX_MESSAGE];
	memset(buf, 0, sizeof(buf));

	assert_int_equal(pmp_decode(buf, 0, &q), PMP_DROP);
	buf[0] = 2;
	assert_int_equal(pmp_decode(buf, 1, &q), PMP_DROP);
	buf[0] = 9;
	assert_int_equal(pmp_decode(buf, 1, &q), PMP_DROP);

	/* The R bit before the version: a response of a version we do not
	 * speak, or of ours, or of NAT-PMP's, is never answered. */
	static const uint8_t v3_response[] = {3, 0x81};
	assert_int_equal(pmp_decode(v3_response, sizeof(v3_response), &q), PMP_DROP);
	uint8_t v1_response[60] = {1, 0x81};
	assert_int_equal(pmp_decode(v1_response, sizeof(v1_response), &q), PMP_DROP);
	size_t len = pcp_map(buf, 6, 80, NULL, 0);
	buf[1] |= 0x80;
	assert_int_equal(pmp_decode(buf, len, &q), PMP_DROP);
	assert_int_equal(pmp_decode(buf, 24, &q), PMP_DROP);
	assert_int_equal(pmp_decode(buf, 4, &q), PMP_DROP);
	static const uint8_t natpmp_response[] = {0, 130, 0, 0, 0, 0, 0, 5};
	assert_int_equal(pmp_decode(natpmp_response, sizeof(natpmp_response), &q), PMP_DROP);

	/* An unsupported version, from two octets on: UNSUPP_VERSION,
	 * answered as a 24-octet PCP header in version 2. */
	static const uint8_t v3_two[] = {3, 1};
	assert_int_equal(pmp_decode(v3_two, sizeof(v3_two), &q), PMP_UNSUPP_VERSION);
	assert_int_equal(q.version, 3);
	assert_int_equal(respond(&q, PMP_UNSUPP_VERSION, 0, 0, out), 24);
	assert_int_equal(out[0], 2);
	assert_int_equal(out[1], 0x81);
	assert_int_equal(out[3], PMP_UNSUPP_VERSION);
	uint8_t v1_map[60] = {1, 1};
	assert_int_equal(pmp_decode(v1_map, sizeof(v1_map), &q), PMP_UNSUPP_VERSION);
	static const uint8_t v255_odd[] = {255, 0, 0};
	assert_int_equal(pmp_decode(v255_odd, sizeof(v255_odd), &q), PMP_UNSUPP_VERSION);

	/* Version 2 under 24 octets: dropped, not answered. */
	len = pcp_map(buf, 6, 80, NULL, 0);
	for (size_t n = 2; n < 24; n++)
		assert_int_equal(pmp_decode(buf, n, &q), PMP_DROP);

	/* From 24 octets on: the length rules, then the opcode's own. */
	assert_int_equal(pmp_decode(buf, 26, &q), PMP_MALFORMED_REQUEST); /* not 4k */
	assert_int_equal(pmp_decode(buf, 28, &q), PMP_MALFORMED_REQUEST); /* no nonce */
	assert_int_equal(pmp_decode(buf, 56, &q), PMP_MALFORMED_REQUEST); /* short MAP */
	memset(buf + 60, 0, sizeof(buf) - 60);
	for (size_t k = 60; k + 4 <= PMP_MAX_MESSAGE; k += 4)
		buf[k] = 200; /* optional options of length 0, up to 1100 octets */
	assert_int_equal(pmp_decode(buf, PMP_MAX_MESSAGE, &q), PMP_SUCCESS);
	assert_int_equal(pmp_decode(buf, PMP_MAX_MESSAGE + 4, &q), PMP_MALFORMED_REQUEST);
	assert_int_equal(respond(&q, PMP_MALFORMED_REQUEST, 0, 0, out), 24);
	/* An ANNOUNCE is a bare header. */
	len = pcp_map(buf, 6, 80, NULL, 0);
	buf[1] = PCP_OP_ANNOUNCE;
	assert_int_equal(pmp_decode(buf, 24, &q), PMP_SUCCESS);
}

/* The guest's ephemeral ports: the span of the blocks, the gaps reserved. */
static void test_guest_ports(void **state)
{
	(void)state;
	char range[GUEST_PORT_RANGE_MAX], *reserved;
	struct guest_port_block one[] = {{1024, 256}};
	assert_int_equal(guest_ports_render(one, 1, range, &reserved), 0);
	assert_string_equal(range, "1024 1279\n");
	assert_string_equal(reserved, "\n");
	free(reserved);

	/* Any order; adjacent blocks leave no gap. */
	struct guest_port_block three[] = {{4096, 1024}, {1024, 1024}, {2048, 1024}};
	assert_int_equal(guest_ports_render(three, 3, range, &reserved), 0);
	assert_string_equal(range, "1024 5119\n");
	assert_string_equal(reserved, "3072-4095\n");
	free(reserved);

	struct guest_port_block gaps[] = {{65280, 256}, {1024, 256}, {8192, 256}};
	assert_int_equal(guest_ports_render(gaps, 3, range, &reserved), 0);
	assert_string_equal(range, "1024 65535\n");
	assert_string_equal(reserved, "1280-8191,8448-65279\n");
	free(reserved);

	struct guest_port_block overlap[] = {{1024, 1024}, {1536, 256}};
	assert_int_equal(guest_ports_render(overlap, 2, range, &reserved), -EINVAL);
	assert_int_equal(guest_ports_render(one, 0, range, &reserved), -EINVAL);
	struct guest_port_block past[] = {{65280, 512}};
	assert_int_equal(guest_ports_render(past, 1, range, &reserved), -EINVAL);
}

/* @n blocks of 16 ports, every other 16 (the smallest block size), from
 * port 1024, and the gaps between them as the kernel lists them. */
static struct guest_port_block *sparse_blocks(size_t n, char **ret_gaps)
{
	struct guest_port_block *b = calloc(n, sizeof(*b));
	assert_non_null(b);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	for (size_t i = 0; i < n; i++) {
		/* Backwards: any order will do. */
		b[n - 1 - i] = (struct guest_port_block){.start = (uint16_t)(1024 + 32 * i), 16};
		if (i > 0)
			fprintf(f, "%s%zu-%zu", i > 1 ? "," : "", 1024 + 32 * (i - 1) + 16,
			        1024 + 32 * i - 1);
	}
	fputc('\n', f);
	assert_int_equal(fclose(f), 0);
	*ret_gaps = text;
	return b;
}

/* 2000 blocks, far past the 64 the guest once took: every gap is in the
 * reservation, whose text (about 23 KB) is far past the page the kernel
 * takes in one write. */
static void test_guest_ports_many(void **state)
{
	(void)state;
	char range[GUEST_PORT_RANGE_MAX], *reserved, *gaps;
	struct guest_port_block *b = sparse_blocks(2000, &gaps);
	assert_int_equal(guest_ports_render(b, 2000, range, &reserved), 0);
	assert_string_equal(range, "1024 65007\n");
	assert_true(strlen(reserved) > 20000);
	assert_string_equal(reserved, gaps);
	free(reserved);
	free(gaps);
	free(b);
}

/* A network namespace of its own, held by a thread until told to go, for
 * guest_set_local_ports() to enter by /proc/self/task/TID/ns/net; the
 * thread reads the namespace's reservation back. */
struct own_netns {
	pthread_t thread;
	pid_t tid;
	int status;
	sem_t ready, go, done;
	char reserved[65536];
};

static void *own_netns_main(void *arg)
{
	struct own_netns *ns = arg;
	ns->tid = (pid_t)syscall(SYS_gettid);
	ns->status = unshare(CLONE_NEWNET) == 0 ? 0 : -errno;
	sem_post(&ns->ready);
	if (ns->status < 0)
		return NULL;
	sem_wait(&ns->go);
	int fd = open("/proc/sys/net/ipv4/ip_local_reserved_ports", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, ns->reserved, sizeof(ns->reserved) - 1);
	ns->reserved[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
	sem_post(&ns->done);
	return NULL;
}

/* In a namespace of its own (root only), the kernel holds every one of
 * 2000 blocks' gaps: written a page at a time, not cut at the first. */
static void test_guest_ports_kernel(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	struct own_netns *ns = calloc(1, sizeof(*ns));
	assert_non_null(ns);
	sem_init(&ns->ready, 0, 0);
	sem_init(&ns->go, 0, 0);
	sem_init(&ns->done, 0, 0);
	assert_int_equal(pthread_create(&ns->thread, NULL, own_netns_main, ns), 0);
	sem_wait(&ns->ready);
	char path[64], *gaps;
	snprintf(path, sizeof(path), "/proc/self/task/%d/ns/net", (int)ns->tid);
	struct guest_port_block *b = sparse_blocks(2000, &gaps);
	const char *failed = NULL;
	int r = ns->status < 0 ? ns->status : guest_set_local_ports(path, b, 2000, &failed);
	sem_post(&ns->go);
	if (ns->status == 0)
		sem_wait(&ns->done);
	pthread_join(ns->thread, NULL);
	if (ns->status == -EPERM)
		skip();
	assert_int_equal(ns->status, 0);
	assert_int_equal(r, 0);
	assert_string_equal(ns->reserved, gaps);
	free(gaps);
	free(b);
	free(ns);
}

int main(void)
{
	register_all_tables();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_blocks),
	    cmocka_unit_test(test_blocks_wanted),
	    cmocka_unit_test(test_uplink_choice),
	    cmocka_unit_test(test_datapath_view),
	    cmocka_unit_test(test_switch_flows),
	    cmocka_unit_test(test_any_aee_tree),
	    cmocka_unit_test(test_block_steered),
	    cmocka_unit_test(test_arp),
	    cmocka_unit_test(test_mapping_port),
	    cmocka_unit_test(test_mapping_race),
	    cmocka_unit_test(test_natpmp),
	    cmocka_unit_test(test_pcp),
	    cmocka_unit_test(test_pcp_first_checks),
	    cmocka_unit_test(test_guest_ports),
	    cmocka_unit_test(test_datapath_view_large),
	    cmocka_unit_test(test_guest_ports_many),
	    cmocka_unit_test(test_guest_ports_kernel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
