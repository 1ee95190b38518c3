/* The OpenFlow 1.3 codec against hex vectors, checked both ways: our
 * encoder must produce the vector, and Open vSwitch's own decoder
 * (`ovs-ofctl ofp-print`) and ours must read the same message from it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/hex.h"
#include "openflow/ofp.h"

struct vector {
	const char *name;
	const char *hex;
	const char *ovs; /* what ovs-ofctl ofp-print says (its first line(s)) */
	const char *ours;
};

static const struct vector vectors[] = {
    {"hello", "04000010000000010001000800000010",
     "OFPT_HELLO (OF1.3) (xid=0x1):\n version bitmap: 0x04", "HELLO xid=0x1: version_bitmap=0x10"},
    {"echo", "0402000c0000000270696e67", "OFPT_ECHO_REQUEST (OF1.3) (xid=0x2): 4 bytes of payload",
     "ECHO_REQUEST xid=0x2: 4 bytes of data"},
    {"barrier", "0414000800000003",
     "OFPT_BARRIER_REQUEST (OF1.3) (xid=0x3):", "BARRIER_REQUEST xid=0x3"},
    {"features", "0406002000000004000000000000000100000000fe0000000000004f00000000",
     "OFPT_FEATURES_REPLY (OF1.3) (xid=0x4): dpid:0000000000000001\nn_tables:254, n_buffers:0",
     "FEATURES_REPLY xid=0x4: dpid=0x0000000000000001 n_tables=254 n_buffers=0"},
    {"set_config", "0409000c000000090000ffff",
     "OFPT_SET_CONFIG (OF1.3) (xid=0x9): frags=normal miss_send_len=65535",
     "SET_CONFIG xid=0x9: flags=0x0 miss_send_len=65535"},
    {"role", "04180018000000070000000200000000000000000000000a",
     "OFPT_ROLE_REQUEST (OF1.3) (xid=0x7): role=primary generation_id=10",
     "ROLE_REQUEST xid=0x7: role=master generation_id=10"},
    {"flow",
     "040e008800000005e77000000000000100000000000000000000000000000064ffffffffffffffffffffff"
     "ff000000000001002b800000040000000380000a020800800019080a4d0100ffffff00800014010680001d04"
     "4000fc00000000000000040028000000000019001080000606020000000002000000000010000000020000"
     "000000000000",
     "OFPT_FLOW_MOD (OF1.3) (xid=0x5): ADD priority=100,tcp,in_port=3,nw_dst=10.77.1.0/24,"
     "tp_dst=0x4000/0xfc00 cookie:0xe770000000000001 actions=set_field:02:00:00:00:00:02->"
     "eth_dst,output:2",
     "FLOW_MOD xid=0x5: add table=0 priority=100 cookie=0xe770000000000001 match=in_port=3,"
     "eth_type=0x0800,ipv4_dst=10.77.1.0/255.255.255.0,ip_proto=6,tcp_dst=16384/0xfc00 "
     "actions=set_field:eth_dst=02:00:00:00:00:02,output:2"},
    {"flow2",
     "040e0060000000060000000000000000000000000000000001000000000000c8ffffffffffffffffffffff"
     "ff000000000001001880000a02080680002a02000180002e040a4d00020003001000000000001600080000"
     "00070001000802000000",
     "OFPT_FLOW_MOD (OF1.3) (xid=0x6): ADD table:1 priority=200,arp,arp_tpa=10.77.0.2,"
     "arp_op=1 actions=write_actions(group:7),goto_table:2",
     "FLOW_MOD xid=0x6: add table=1 priority=200 cookie=0x0 match=eth_type=0x0806,arp_op=1,"
     "arp_tpa=10.77.0.2 actions=write_actions(group:7),goto_table:2"},
    {"flowdel",
     "040e003800000008e770000000000000ffff000000000000ff03000000000000ffffffffffffffffffffff"
     "ff000000000001000400000000",
     "OFPT_FLOW_MOD (OF1.3) (xid=0x8): DEL table:255 priority=0 cookie:0xe770000000000000/"
     "0xffff000000000000 actions=drop",
     "FLOW_MOD xid=0x8: delete table=255 priority=0 cookie=0xe770000000000000/"
     "0xffff000000000000 match=any actions=drop"},
    {"packet_in",
     "040a003800000000ffffffff000e01000000000000000e770001000c8000000400000002000000000000ff"
     "ffffffffff02000000000188cc",
     "OFPT_PACKET_IN (OF1.3) (xid=0x0): cookie=0xe77 total_len=14 in_port=2 (via action) "
     "data_len=14 (unbuffered)",
     "PACKET_IN xid=0x0: reason=1 table=0 cookie=0xe77 match=in_port=2 total_len=14 data_len=14"},
    {"packet_out",
     "040d00360000000bfffffffffffffffd001000000000000000000010000000030000000000000000ffffff"
     "ffffff02000000000188cc",
     "OFPT_PACKET_OUT (OF1.3) (xid=0xb): in_port=CONTROLLER actions=output:3 data_len=14",
     "PACKET_OUT xid=0xb: in_port=0xfffffffd actions=output:3 data_len=14"},
    {"port_status",
     "040c0050000000000200000000000000000000030000000002000000000300006833000000000000000000"
     "00000000000000000000000001000000000000000000000000000000000098968000000000",
     "OFPT_PORT_STATUS (OF1.3) (xid=0x0): MOD: 3(h3): addr:02:00:00:00:00:03\n     config:     0\n "
     "    state:      LINK_DOWN",
     "PORT_STATUS xid=0x0: reason=2 port=3(h3) state=link_down"},
    {"port_desc_request", "041200100000000c000d000000000000",
     "OFPST_PORT_DESC request (OF1.3) (xid=0xc): port=ANY",
     "MULTIPART_REQUEST xid=0xc: type=13 flags=0x0, 0 bytes of body"},
    {"port_stats_request", "041200180000000d0004000000000000ffffffff00000000",
     "OFPST_PORT request (OF1.3) (xid=0xd): port_no=ANY",
     "MULTIPART_REQUEST xid=0xd: type=4 flags=0x0, 8 bytes of body"},
    {"port_desc_reply",
     "041300500000000c000d000000000000000000030000000002000000000300006833000000000000000000"
     "00000000000000000000000000000000000000000000000000000000000098968000000000",
     "OFPST_PORT_DESC reply (OF1.3) (xid=0xc):\n 3(h3): addr:02:00:00:00:00:03",
     "MULTIPART_REPLY xid=0xc: type=13 flags=0x0, 64 bytes of body"},
    {"port_stats_reply",
     "041300800000000d00040000000000000000000300000000000000000000000a0000000000000014000000"
     "00000003e800000000000007d0000000000000000000000000000000000000000000000000000000000000"
     "000000000000000000000000000000000000000000000000000000000000000000000000000500000000",
     "OFPST_PORT reply (OF1.3) (xid=0xd): 1 ports\n  port  3: rx pkts=10, bytes=1000, drop=0, "
     "errs=0",
     "MULTIPART_REPLY xid=0xd: type=4 flags=0x0, 112 bytes of body"},
    {"group_mod",
     "040f007000000014000001000000000100300001ffffffffffffffff000000000019001080000606020000"
     "00000100000000001000000001000000000000000000300001ffffffffffffffff00000000001900108000"
     "0606020000000002000000000010000000020000000000000000",
     "OFPT_GROUP_MOD (OF1.3) (xid=0x14):\n ADD "
     "group_id=1,type=select,bucket=actions=set_field:02:00:00:00:00:01->eth_dst,output:1,bucket="
     "actions=set_field:02:00:00:00:00:02->eth_dst,output:2",
     "GROUP_MOD xid=0x14: add group_id=1 type=select "
     "bucket=weight:1,actions=set_field:eth_dst=02:00:00:00:00:01,output:1 "
     "bucket=weight:1,actions=set_field:eth_dst=02:00:00:00:00:02,output:2"},
    {"group_stats_request", "04120018000000150006000000000000fffffffc00000000",
     "OFPST_GROUP request (OF1.3) (xid=0x15): group_id=ALL",
     "MULTIPART_REQUEST xid=0x15: type=6 flags=0x0, 8 bytes of body"},
    {"group_stats_reply",
     "0413005800000015000600000000000000480000000000010000000200000000000000000000001e000000"
     "0000000bb80000000900000000000000000000000a00000000000003e80000000000000014000000000000"
     "07d0",
     "OFPST_GROUP reply (OF1.3) (xid=0x15):\n "
     "group_id=1,duration=9s,ref_count=2,packet_count=30,byte_count=3000,bucket0:packet_count=10,"
     "byte_count=1000,bucket1:packet_count=20,byte_count=2000",
     "MULTIPART_REPLY xid=0x15: type=6 flags=0x0, 72 bytes of body"},
    {"flow_stats_request",
     "04120038000000160001000000000000ff000000ffffffffffffffff00000000e770000000000000ffff00"
     "00000000000001000400000000",
     "OFPST_FLOW request (OF1.3) (xid=0x16):",
     "MULTIPART_REQUEST xid=0x16: type=1 flags=0x0, 40 bytes of body"},
    {"flow_stats_reply",
     "04130070000000160001000000000000006000000000000c00000000006400000000000000000000e77000"
     "0000000001000000000000000500000000000001f40001001280000a020800800018040a4d010200000000"
     "0000000400180000000000000010000000020000000000000000",
     "OFPST_FLOW reply (OF1.3) (xid=0x16):\n cookie=0xe770000000000001, duration=12s, table=0, "
     "n_packets=5, n_bytes=500, priority=100,ip,nw_dst=10.77.1.2 actions=output:2",
     "MULTIPART_REPLY xid=0x16: type=1 flags=0x0, 96 bytes of body"},
};

static size_t unhex(const char *hex, uint8_t *out)
{
	size_t n = strlen(hex) / 2;
	assert_int_equal(hex_decode_into(hex, out, n), 0);
	return n;
}

static char *tohex(const uint8_t *d, size_t len)
{
	return hex_encode_new(d, len);
}

static const struct vector *vec(const char *name)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
		if (strcmp(vectors[i].name, name) == 0)
			return &vectors[i];
	fail_msg("no vector %s", name);
	return NULL;
}

static void assert_encodes_to(struct obuf *b, const char *name)
{
	assert_int_equal(of13_finish(b), 0);
	char *hex = tohex(b->data, b->len);
	if (strcmp(hex, vec(name)->hex) != 0)
		fail_msg("%s encodes to\n%s\nexpected\n%s", name, hex, vec(name)->hex);
	free(hex);
	obuf_free(b);
}

static struct of13_flow_mod flow_vector(void)
{
	struct of13_flow_mod fm;
	of13_flow_mod_init(&fm, OF13_FLOW_ADD);
	fm.cookie = 0xe770000000000001ull;
	fm.priority = 100;
	uint64_t m24 = 0xffffff00, pm = 0xfc00;
	assert_int_equal(of13_match_add(&fm.match, OF13_OXM_IN_PORT, 3, NULL), 0);
	assert_int_equal(of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, 0x0800, NULL), 0);
	assert_int_equal(of13_match_add(&fm.match, OF13_OXM_IPV4_DST, 0x0a4d0100, &m24), 0);
	assert_int_equal(of13_match_add(&fm.match, OF13_OXM_IP_PROTO, 6, NULL), 0);
	assert_int_equal(of13_match_add(&fm.match, OF13_OXM_TCP_DST, 0x4000, &pm), 0);
	struct of13_instruction *in = &fm.instructions[fm.n_instructions++];
	in->type = OF13_INSTRUCTION_APPLY_ACTIONS;
	struct of13_match tmp = {0};
	const uint8_t mac[6] = {2, 0, 0, 0, 0, 2};
	assert_int_equal(of13_match_add_eth(&tmp, OF13_OXM_ETH_DST, mac, NULL), 0);
	in->actions[0] =
	    (struct of13_action){.type = OF13_ACTION_SET_FIELD, .set_field = tmp.oxm[0]};
	in->actions[1] = (struct of13_action){.type = OF13_ACTION_OUTPUT, .output.port = 2};
	in->n_actions = 2;
	return fm;
}

static void test_encoders(void **state)
{
	(void)state;
	struct obuf b = {0};
	of13_hello_encode(&b, 1, &(struct of13_hello){.version_bitmap = 1u << OF13_VERSION});
	assert_encodes_to(&b, "hello");
	of13_simple_encode(&b, OF13_ECHO_REQUEST, 2, "ping", 4);
	assert_encodes_to(&b, "echo");
	of13_simple_encode(&b, OF13_BARRIER_REQUEST, 3, NULL, 0);
	assert_encodes_to(&b, "barrier");
	of13_features_encode(
	    &b, 4,
	    &(struct of13_features){.datapath_id = 1, .n_tables = 254, .capabilities = 0x4f});
	assert_encodes_to(&b, "features");
	of13_role_encode(&b, OF13_ROLE_REQUEST, 7,
	                 &(struct of13_role_msg){.role = OF13_ROLE_MASTER, .generation_id = 10});
	assert_encodes_to(&b, "role");
	of13_set_config_encode(&b, 9,
	                       &(struct of13_switch_config){.miss_send_len = OF13_CML_NO_BUFFER});
	assert_encodes_to(&b, "set_config");
	struct of13_flow_mod fm = flow_vector();
	of13_flow_mod_encode(&b, 5, &fm);
	assert_encodes_to(&b, "flow");

	struct of13_flow_mod arp;
	of13_flow_mod_init(&arp, OF13_FLOW_ADD);
	arp.priority = 200;
	arp.table_id = 1;
	of13_match_add(&arp.match, OF13_OXM_ETH_TYPE, 0x0806, NULL);
	of13_match_add(&arp.match, OF13_OXM_ARP_OP, 1, NULL);
	of13_match_add(&arp.match, OF13_OXM_ARP_TPA, 0x0a4d0002, NULL);
	arp.instructions[0] =
	    (struct of13_instruction){.type = OF13_INSTRUCTION_WRITE_ACTIONS, .n_actions = 1};
	arp.instructions[0].actions[0] =
	    (struct of13_action){.type = OF13_ACTION_GROUP, .group_id = 7};
	arp.instructions[1] =
	    (struct of13_instruction){.type = OF13_INSTRUCTION_GOTO_TABLE, .table_id = 2};
	arp.n_instructions = 2;
	of13_flow_mod_encode(&b, 6, &arp);
	assert_encodes_to(&b, "flow2");

	struct of13_flow_mod del;
	of13_flow_mod_init(&del, OF13_FLOW_DELETE);
	del.cookie = 0xe770000000000000ull;
	del.cookie_mask = 0xffff000000000000ull;
	del.table_id = 0xff;
	of13_flow_mod_encode(&b, 8, &del);
	assert_encodes_to(&b, "flowdel");
}

static const uint8_t frame[14] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xcc};

static struct of13_port port3(void)
{
	struct of13_port p = {
	    .port_no = 3, .hw_addr = {2, 0, 0, 0, 0, 3}, .name = "h3", .curr_speed = 10000000};
	return p;
}

static void test_packet_and_port_encoders(void **state)
{
	(void)state;
	struct obuf b = {0};
	struct of13_packet_in pi = {.buffer_id = OF13_NO_BUFFER,
	                            .total_len = 14,
	                            .reason = 1,
	                            .cookie = 0xe77,
	                            .data = frame,
	                            .data_len = 14};
	of13_match_add(&pi.match, OF13_OXM_IN_PORT, 2, NULL);
	of13_packet_in_encode(&b, 0, &pi);
	assert_encodes_to(&b, "packet_in");
	struct of13_packet_out po = {.buffer_id = OF13_NO_BUFFER,
	                             .in_port = OF13_PORT_CONTROLLER,
	                             .n_actions = 1,
	                             .data = frame,
	                             .data_len = 14};
	po.actions[0] = (struct of13_action){.type = OF13_ACTION_OUTPUT, .output.port = 3};
	of13_packet_out_encode(&b, 11, &po);
	assert_encodes_to(&b, "packet_out");
	struct of13_port_status ps = {.reason = OF13_PORT_MODIFY, .port = port3()};
	ps.port.state = OF13_PORT_STATE_LINK_DOWN;
	of13_port_status_encode(&b, 0, &ps);
	assert_encodes_to(&b, "port_status");
	of13_port_desc_request_encode(&b, 12);
	assert_encodes_to(&b, "port_desc_request");
	of13_port_stats_request_encode(&b, 13, OF13_PORT_ANY);
	assert_encodes_to(&b, "port_stats_request");
	struct of13_port pd = port3();
	of13_port_desc_reply_encode(&b, 12, 0, &pd, 1);
	assert_encodes_to(&b, "port_desc_reply");
	struct of13_port_stats st = {.port_no = 3,
	                             .rx_packets = 10,
	                             .tx_packets = 20,
	                             .rx_bytes = 1000,
	                             .tx_bytes = 2000,
	                             .duration_sec = 5};
	of13_port_stats_reply_encode(&b, 13, 0, &st, 1);
	assert_encodes_to(&b, "port_stats_reply");
}

/* What a decoder's callbacks saw: how many, and the last. */
struct collected {
	unsigned n;
	struct of13_port port;
	struct of13_port_stats stats;
	struct of13_group_stats group;
	uint64_t last_bucket_bytes;
};

static void collect_port(void *userdata, const struct of13_port *p)
{
	struct collected *c = userdata;
	c->n++;
	c->port = *p;
}

static void collect_port_stats(void *userdata, const struct of13_port_stats *st)
{
	struct collected *c = userdata;
	c->n++;
	c->stats = *st;
}

static void count_group(void *userdata, const struct of13_group_stats *gs)
{
	struct collected *c = userdata;
	c->n++;
	c->group = *gs;
	if (gs->n_buckets) {
		uint64_t packets;
		of13_group_stats_bucket(gs, gs->n_buckets - 1, &packets, &c->last_bucket_bytes);
	}
}

static void test_packet_and_port_decoders(void **state)
{
	(void)state;
	uint8_t buf[512];
	size_t len = unhex(vec("packet_in")->hex, buf);
	struct of13_packet_in pi;
	uint64_t v;
	assert_int_equal(of13_packet_in_decode(buf, len, &pi), OF13_OK);
	assert_true(of13_match_get(&pi.match, OF13_OXM_IN_PORT, &v, NULL));
	assert_int_equal(v, 2);
	assert_int_equal(pi.data_len, 14);
	assert_memory_equal(pi.data, frame, 14);
	assert_int_not_equal(of13_packet_in_decode(buf, len - 15, &pi), OF13_OK);

	len = unhex(vec("packet_out")->hex, buf);
	struct of13_packet_out po;
	assert_int_equal(of13_packet_out_decode(buf, len, &po), OF13_OK);
	assert_int_equal(po.n_actions, 1);
	assert_int_equal(po.actions[0].output.port, 3);
	buf[17] = 0xf0; /* actions_len beyond the message */
	assert_int_equal(of13_packet_out_decode(buf, len, &po), OF13_ERR_BAD_LEN);

	len = unhex(vec("port_status")->hex, buf);
	struct of13_port_status ps;
	assert_int_equal(of13_port_status_decode(buf, len, &ps), OF13_OK);
	assert_string_equal(ps.port.name, "h3");
	assert_int_equal(ps.port.state, OF13_PORT_STATE_LINK_DOWN);
	memset(buf + 32, 'x', 16); /* a name without its NUL */
	assert_int_equal(of13_port_status_decode(buf, len, &ps), OF13_OK);
	assert_int_equal(strlen(ps.port.name), 16);

	len = unhex(vec("port_stats_reply")->hex, buf);
	struct collected got = {0};
	uint16_t flags;
	assert_int_equal(of13_port_stats_reply_decode(buf, len, &flags, collect_port_stats, &got),
	                 OF13_OK);
	assert_int_equal(got.n, 1);
	assert_int_equal(got.stats.tx_bytes, 2000);
	assert_int_equal(of13_port_desc_reply_decode(buf, len, &flags, collect_port, &got),
	                 OF13_ERR_BAD_TYPE);
	len = unhex(vec("port_desc_reply")->hex, buf);
	got = (struct collected){0};
	assert_int_equal(of13_port_desc_reply_decode(buf, len, &flags, collect_port, &got), OF13_OK);
	assert_int_equal(got.n, 1);
	assert_int_equal(got.port.curr_speed, 10000000);
	/* A part one byte short is refused whole: no port is taken from it. */
	got = (struct collected){0};
	buf[3]--;
	assert_int_equal(of13_port_desc_reply_decode(buf, len - 1, &flags, collect_port, &got),
	                 OF13_ERR_BAD_LEN);
	assert_int_equal(got.n, 0);
}

/* Any number of ports: a part as large as one message holds (1,023 ports)
 * decodes whole, and the one after it says more follow or not. */
static void test_port_desc_parts(void **state)
{
	(void)state;
	enum { N = (OF13_MAX_MESSAGE - 16) / 64 };
	static struct of13_port ports[N];
	for (unsigned i = 0; i < N; i++) {
		ports[i] = port3();
		ports[i].port_no = i + 1;
		snprintf(ports[i].name, sizeof(ports[i].name), "p%u", i + 1);
	}
	struct obuf b = {0};
	of13_port_desc_reply_encode(&b, 7, OF13_MP_MORE, ports, N);
	assert_int_equal(of13_finish(&b), 0);
	struct collected got = {0};
	uint16_t flags;
	assert_int_equal(of13_port_desc_reply_decode(b.data, b.len, &flags, collect_port, &got),
	                 OF13_OK);
	assert_int_equal(got.n, N);
	assert_int_equal(got.port.port_no, N);
	assert_string_equal(got.port.name, "p1023");
	assert_int_equal(flags, OF13_MP_MORE);
	obuf_free(&b);
	/* One more port does not fit in a message. */
	struct of13_port more[N + 1];
	memcpy(more, ports, sizeof(ports));
	more[N] = port3();
	of13_port_desc_reply_encode(&b, 7, 0, more, N + 1);
	assert_int_equal(of13_finish(&b), -EMSGSIZE);
	obuf_free(&b);
}

static void count_flow(void *userdata, const struct of13_flow_stats *fs)
{
	struct of13_flow_stats *out = userdata;
	*out = *fs;
}

/* A select group with a bucket per AEE of a large network: 500 buckets
 * (a set-field and an output each) go in one message and come back; the
 * message's 64 KiB is the limit, and the encoder says so. */
static struct of13_group_mod many_buckets(unsigned n)
{
	struct of13_group_mod gm = {.type = OF13_GROUP_TYPE_SELECT, .group_id = 9};
	for (unsigned i = 0; i < n; i++) {
		struct of13_bucket *bk = of13_group_mod_add_bucket(&gm);
		assert_non_null(bk);
		*bk = (struct of13_bucket){.weight = 1,
		                           .watch_port = i + 1,
		                           .watch_group = OF13_GROUP_ANY,
		                           .n_actions = 2};
		struct of13_match t = {0};
		const uint8_t mac[6] = {2, 0, 0, 0, (uint8_t)(i >> 8), (uint8_t)i};
		of13_match_add_eth(&t, OF13_OXM_ETH_DST, mac, NULL);
		bk->actions[0] =
		    (struct of13_action){.type = OF13_ACTION_SET_FIELD, .set_field = t.oxm[0]};
		bk->actions[1] =
		    (struct of13_action){.type = OF13_ACTION_OUTPUT, .output.port = i + 1};
	}
	return gm;
}

static void test_group_of_many_buckets(void **state)
{
	(void)state;
	struct of13_group_mod gm = many_buckets(500);
	struct obuf b = {0};
	assert_int_equal(of13_group_mod_encode(&b, 1, &gm), 0);
	assert_int_equal(of13_finish(&b), 0);
	struct of13_group_mod back;
	assert_int_equal(of13_group_mod_decode(b.data, b.len, &back), OF13_OK);
	assert_int_equal(back.n_buckets, 500);
	assert_int_equal(back.buckets[499].watch_port, 500);
	assert_int_equal(back.buckets[499].actions[1].output.port, 500);
	of13_group_mod_free(&back);
	of13_group_mod_free(&gm);
	obuf_free(&b);
	gm = many_buckets(1400);
	assert_int_equal(of13_group_mod_encode(&b, 1, &gm), -EMSGSIZE);
	of13_group_mod_free(&gm);
	obuf_free(&b);
}

static void test_groups_and_flow_stats(void **state)
{
	(void)state;
	struct obuf b = {0};
	struct of13_group_mod gm = {.command = OF13_GROUP_ADD,
	                            .type = OF13_GROUP_TYPE_SELECT,
	                            .group_id = 1};
	for (int i = 0; i < 2; i++) {
		struct of13_bucket *bk = of13_group_mod_add_bucket(&gm);
		assert_non_null(bk);
		*bk = (struct of13_bucket){.weight = 1,
		                           .watch_port = OF13_PORT_ANY,
		                           .watch_group = OF13_GROUP_ANY,
		                           .n_actions = 2};
		struct of13_match t = {0};
		const uint8_t mac[6] = {2, 0, 0, 0, 0, (uint8_t)(i + 1)};
		of13_match_add_eth(&t, OF13_OXM_ETH_DST, mac, NULL);
		bk->actions[0] =
		    (struct of13_action){.type = OF13_ACTION_SET_FIELD, .set_field = t.oxm[0]};
		bk->actions[1] = (struct of13_action){.type = OF13_ACTION_OUTPUT,
		                                      .output.port = (uint32_t)(i + 1)};
	}
	assert_int_equal(of13_group_mod_encode(&b, 20, &gm), 0);
	assert_encodes_to(&b, "group_mod");
	of13_group_mod_free(&gm);
	of13_group_stats_request_encode(&b, 21, OF13_GROUP_ALL);
	assert_encodes_to(&b, "group_stats_request");
	/* Buckets 10 packets / 1000 bytes and 20 / 2000, in network order. */
	static const uint8_t counters[32] = {[7] = 10, [14] = 0x03, [15] = 0xe8,
	                                     [23] = 20, [30] = 0x07, [31] = 0xd0};
	struct of13_group_stats gs = {.group_id = 1,
	                              .ref_count = 2,
	                              .packet_count = 30,
	                              .byte_count = 3000,
	                              .duration_sec = 9,
	                              .n_buckets = 2,
	                              .bucket_counters = counters};
	of13_group_stats_reply_encode(&b, 21, 0, &gs, 1);
	assert_encodes_to(&b, "group_stats_reply");
	struct of13_flow_stats_request fr = {.table_id = 0xff,
	                                     .out_port = OF13_PORT_ANY,
	                                     .out_group = OF13_GROUP_ANY,
	                                     .cookie = 0xe770000000000000ull,
	                                     .cookie_mask = 0xffff000000000000ull};
	of13_flow_stats_request_encode(&b, 22, &fr);
	assert_encodes_to(&b, "flow_stats_request");
	static struct of13_flow_stats fs = {.duration_sec = 12,
	                                    .priority = 100,
	                                    .cookie = 0xe770000000000001ull,
	                                    .packet_count = 5,
	                                    .byte_count = 500,
	                                    .n_instructions = 1};
	of13_match_add(&fs.match, OF13_OXM_ETH_TYPE, 0x0800, NULL);
	of13_match_add(&fs.match, OF13_OXM_IPV4_DST, 0x0a4d0102, NULL);
	fs.instructions[0] =
	    (struct of13_instruction){.type = OF13_INSTRUCTION_APPLY_ACTIONS, .n_actions = 1};
	fs.instructions[0].actions[0] =
	    (struct of13_action){.type = OF13_ACTION_OUTPUT, .output.port = 2};
	of13_flow_stats_reply_encode(&b, 22, 0, &fs, 1);
	assert_encodes_to(&b, "flow_stats_reply");

	/* And back. */
	uint8_t buf[512];
	size_t len = unhex(vec("group_mod")->hex, buf);
	struct of13_group_mod gm2;
	assert_int_equal(of13_group_mod_decode(buf, len, &gm2), OF13_OK);
	assert_int_equal(gm2.n_buckets, 2);
	assert_int_equal(gm2.buckets[1].actions[1].output.port, 2);
	of13_group_mod_free(&gm2);
	buf[16] = 0xff; /* a bucket longer than the message */
	assert_int_equal(of13_group_mod_decode(buf, len, &gm2), OF13_ERR_BAD_LEN);
	uint16_t flags;
	struct collected gs2 = {0};
	len = unhex(vec("group_stats_reply")->hex, buf);
	assert_int_equal(of13_group_stats_reply_decode(buf, len, &flags, count_group, &gs2),
	                 OF13_OK);
	assert_int_equal(gs2.group.n_buckets, 2);
	assert_int_equal(gs2.last_bucket_bytes, 2000);
	static struct of13_flow_stats fs2;
	len = unhex(vec("flow_stats_reply")->hex, buf);
	assert_int_equal(of13_flow_stats_reply_decode(buf, len, &flags, count_flow, &fs2), OF13_OK);
	assert_int_equal(fs2.packet_count, 5);
	assert_int_equal(fs2.match.n, 2);
	struct of13_flow_stats_request fr2;
	len = unhex(vec("flow_stats_request")->hex, buf);
	assert_int_equal(of13_flow_stats_request_decode(buf, len, &fr2), OF13_OK);
	assert_int_equal(fr2.cookie_mask, 0xffff000000000000ull);
}

/* Our decoder reads every vector, formats it as expected, and re-encodes
 * the flow_mods to the same bytes. */
static void test_decoders(void **state)
{
	(void)state;
	uint8_t buf[512];
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		size_t len = unhex(vectors[i].hex, buf);
		char *text = NULL;
		size_t tlen = 0;
		FILE *f = open_memstream(&text, &tlen);
		of13_format(f, buf, len);
		fclose(f);
		if (strcmp(text, vectors[i].ours) != 0)
			fail_msg("%s formats as\n%s\nexpected\n%s", vectors[i].name, text,
			         vectors[i].ours);
		free(text);
		struct of13_header h;
		assert_int_equal(of13_header_decode(buf, len, &h), OF13_OK);
		if (h.type != OF13_FLOW_MOD)
			continue;
		struct of13_flow_mod fm;
		struct obuf b = {0};
		assert_int_equal(of13_flow_mod_decode(buf, len, &fm), OF13_OK);
		of13_flow_mod_encode(&b, h.xid, &fm);
		assert_int_equal(of13_finish(&b), 0);
		assert_int_equal(b.len, len);
		assert_memory_equal(b.data, buf, len);
		obuf_free(&b);
	}
	struct of13_flow_mod fm;
	uint64_t v, m;
	assert_int_equal(of13_flow_mod_decode(buf, unhex(vec("flow")->hex, buf), &fm), OF13_OK);
	assert_true(of13_match_get(&fm.match, OF13_OXM_IPV4_DST, &v, &m));
	assert_int_equal(v, 0x0a4d0100);
	assert_int_equal(m, 0xffffff00);
	assert_false(of13_match_get(&fm.match, OF13_OXM_UDP_DST, &v, &m));
}

/* Open vSwitch's decoder reads the same vectors the same way. */
static void test_ovs_agrees(void **state)
{
	(void)state;
	if (system("command -v ovs-ofctl >/dev/null 2>&1") != 0)
		skip();
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		char cmd[1024], out[4096] = "";
		snprintf(cmd, sizeof(cmd), "ovs-ofctl ofp-print %s 2>/dev/null", vectors[i].hex);
		FILE *p = popen(cmd, "r");
		assert_non_null(p);
		size_t n = fread(out, 1, sizeof(out) - 1, p);
		out[n] = '\0';
		assert_int_equal(pclose(p), 0);
		if (strncmp(out, vectors[i].ovs, strlen(vectors[i].ovs)) != 0)
			fail_msg("ovs-ofctl reads %s as\n%s\nexpected\n%s", vectors[i].name, out,
			         vectors[i].ovs);
	}
}

/* Every prefix of a message, and every length field made to lie, is an
 * error and never a crash (the sanitizer build catches over-reads). */
static void test_malformed(void **state)
{
	(void)state;
	uint8_t buf[512], copy[512];
	size_t len = unhex(vec("flow")->hex, buf);
	struct of13_flow_mod fm;
	/* A prefix that ends between instructions is a shorter, valid
	 * message; any other is an error. */
	unsigned valid = 0;
	for (size_t cut = 0; cut < len; cut++) {
		memcpy(copy, buf, len);
		copy[2] = (uint8_t)(cut >> 8);
		copy[3] = (uint8_t)cut;
		if (of13_flow_mod_decode(copy, cut, &fm) != OF13_OK)
			continue;
		struct obuf b = {0};
		of13_flow_mod_encode(&b, 5, &fm);
		assert_int_equal(of13_finish(&b), 0);
		assert_int_equal(b.len, cut);
		assert_memory_equal(b.data, copy, cut);
		obuf_free(&b);
		valid++;
	}
	assert_int_equal(valid, 1); /* the flow without its instruction */
	/* The header says more than there is. */
	assert_int_equal(of13_flow_mod_decode(buf, len - 8, &fm), OF13_ERR_BAD_LEN);
	/* Wrong version, wrong type. */
	memcpy(copy, buf, len);
	copy[0] = 0x01;
	assert_int_equal(of13_flow_mod_decode(copy, len, &fm), OF13_ERR_BAD_VERSION);
	memcpy(copy, buf, len);
	copy[1] = OF13_ROLE_REQUEST;
	assert_int_equal(of13_flow_mod_decode(copy, len, &fm), OF13_ERR_BAD_TYPE);
	/* The match (at 48) says it is longer than the message. */
	memcpy(copy, buf, len);
	copy[50] = 0x7f;
	assert_int_equal(of13_flow_mod_decode(copy, len, &fm), OF13_ERR_BAD_MATCH_LEN);
	/* An OXM field with a length that does not fit its type (in_port: 4). */
	memcpy(copy, buf, len);
	copy[55] = 5;
	assert_int_not_equal(of13_flow_mod_decode(copy, len, &fm), OF13_OK);
	/* The same field twice: ip_proto (at 79) turned into in_port's id. */
	memcpy(copy, buf, len);
	copy[78] = OF13_OXM_IN_PORT << 1;
	copy[79] = 4;
	assert_int_not_equal(of13_flow_mod_decode(copy, len, &fm), OF13_OK);
	/* An instruction of an unknown type (instructions start at 96). */
	memcpy(copy, buf, len);
	copy[97] = 0x09;
	assert_int_equal(of13_flow_mod_decode(copy, len, &fm), OF13_ERR_BAD_INSTRUCTION);
	/* An action whose length is not a multiple of 8 (first action at 104). */
	memcpy(copy, buf, len);
	copy[107] = 0x0f;
	assert_int_equal(of13_flow_mod_decode(copy, len, &fm), OF13_ERR_BAD_ACTION_LEN);
	/* An unknown action. */
	memcpy(copy, buf, len);
	copy[105] = 0x63;
	assert_int_equal(of13_flow_mod_decode(copy, len, &fm), OF13_ERR_BAD_ACTION_TYPE);
	assert_string_equal(of13_err_string(OF13_ERR_BAD_ACTION_TYPE), "unknown action");

	char *text = NULL;
	size_t tlen;
	FILE *f = open_memstream(&text, &tlen);
	of13_format(f, buf, 5);
	fclose(f);
	assert_string_equal(text, "(malformed: bad message length)");
	free(text);
}

static void test_hello_and_negotiation(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct of13_hello h;
	/* A hello from a 1.0-1.3 peer (as OVS sends), and one without
	 * elements from a version 5 peer. */
	size_t len = unhex("04000010000000010001000800000012", buf);
	assert_int_equal(of13_hello_decode(buf, len, &h), OF13_OK);
	assert_int_equal(of13_negotiate(1u << 4, h.version_bitmap), 4);
	len = unhex("0500000800000001", buf);
	assert_int_equal(of13_hello_decode(buf, len, &h), OF13_OK);
	assert_int_equal(h.version_bitmap, 0);
	assert_int_equal(of13_negotiate(1u << 4, 1u << 1), 0);
	/* An element that claims more than is there. */
	len = unhex("04000010000000010001001000000010", buf);
	assert_int_equal(of13_hello_decode(buf, len, &h), OF13_ERR_BAD_LEN);
}

static void test_error_and_role(void **state)
{
	(void)state;
	struct obuf b = {0};
	uint8_t req[80] = {4, 14, 0, 80};
	of13_error_encode(&b, 9, OF13_ERR_BAD_FIELD, req, sizeof(req));
	assert_int_equal(of13_finish(&b), 0);
	struct of13_error_msg e;
	assert_int_equal(of13_error_decode(b.data, b.len, &e), OF13_OK);
	assert_int_equal(e.type, 4);
	assert_int_equal(e.code, 6);
	assert_int_equal(e.data_len, 64); /* spec 7.4.4: at least 64 bytes */
	obuf_free(&b);

	uint8_t buf[64];
	size_t len = unhex(vec("role")->hex, buf);
	struct of13_role_msg r;
	assert_int_equal(of13_role_decode(buf, len, &r), OF13_OK);
	assert_int_equal(r.role, OF13_ROLE_MASTER);
	assert_int_equal(r.generation_id, 10);
	assert_int_equal(of13_role_decode(buf, len - 1, &r), OF13_ERR_BAD_LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encoders),
	    cmocka_unit_test(test_decoders),
	    cmocka_unit_test(test_ovs_agrees),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_packet_and_port_encoders),
	    cmocka_unit_test(test_packet_and_port_decoders),
	    cmocka_unit_test(test_port_desc_parts),
	    cmocka_unit_test(test_group_of_many_buckets),
	    cmocka_unit_test(test_groups_and_flow_stats),
	    cmocka_unit_test(test_hello_and_negotiation),
	    cmocka_unit_test(test_error_and_role),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
