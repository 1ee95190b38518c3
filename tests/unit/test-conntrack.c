/* Parsing ctnetlink's conntrack entries (datapath/conntrack.h), fed bytes
 * built as the kernel lays them out. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

#include "datapath/conntrack.h"

struct tuple {
	const char *src, *dst;
	uint8_t proto;
	uint16_t sport, dport, id; /* ports for TCP/UDP, id for ICMP */
};

static void put_tuple(struct nlmsghdr *nlh, uint16_t type, const struct tuple *t, bool ipv6)
{
	struct nlattr *tuple = mnl_attr_nest_start(nlh, type);
	struct nlattr *ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	if (ipv6) {
		uint8_t a[16] = {0xfe, 0x80};
		mnl_attr_put(nlh, CTA_IP_V6_SRC, 16, a);
		mnl_attr_put(nlh, CTA_IP_V6_DST, 16, a);
	} else {
		struct in_addr a;
		inet_pton(AF_INET, t->src, &a);
		mnl_attr_put_u32(nlh, CTA_IP_V4_SRC, a.s_addr);
		inet_pton(AF_INET, t->dst, &a);
		mnl_attr_put_u32(nlh, CTA_IP_V4_DST, a.s_addr);
	}
	mnl_attr_nest_end(nlh, ip);
	struct nlattr *proto = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, t->proto);
	if (t->proto == IPPROTO_ICMP) {
		mnl_attr_put_u16(nlh, CTA_PROTO_ICMP_ID, htons(t->id));
		mnl_attr_put_u8(nlh, CTA_PROTO_ICMP_TYPE, 8);
		mnl_attr_put_u8(nlh, CTA_PROTO_ICMP_CODE, 0);
	} else if (t->sport || t->dport) {
		mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(t->sport));
		mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(t->dport));
	}
	mnl_attr_nest_end(nlh, proto);
	mnl_attr_nest_end(nlh, tuple);
}

/* An IPCTNL_MSG_CT_NEW message in @buf, as a dump returns it. */
static struct nlmsghdr *entry(char *buf, const struct tuple *orig, const struct tuple *reply,
                              uint8_t family)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	nlh->nlmsg_flags = NLM_F_MULTI;
	struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = family;
	nfg->version = NFNETLINK_V0;
	put_tuple(nlh, CTA_TUPLE_ORIG, orig, family != AF_INET);
	put_tuple(nlh, CTA_TUPLE_REPLY, reply, family != AF_INET);
	mnl_attr_put_u32(nlh, CTA_STATUS, htonl(0x18e));
	mnl_attr_put_u32(nlh, CTA_TIMEOUT, htonl(120));
	return nlh;
}

static char *addr(struct in_addr a, char buf[INET_ADDRSTRLEN])
{
	return (char *)inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

/* A guest's TCP flow, translated: the reply comes back to the public
 * address and port. */
static void test_tcp_translated(void **state)
{
	(void)state;
	char buf[1024], a[INET_ADDRSTRLEN];
	struct tuple o = {"10.77.1.1", "198.51.100.10", IPPROTO_TCP, 40000, 80, 0};
	struct tuple r = {"198.51.100.10", "203.0.113.10", IPPROTO_TCP, 80, 1030, 0};
	struct nlmsghdr *nlh = entry(buf, &o, &r, AF_INET);
	struct dp_ct_entry e;
	assert_int_equal(dp_conntrack_parse(nlh, nlh->nlmsg_len, &e), 0);
	assert_string_equal(addr(e.orig.src, a), "10.77.1.1");
	assert_string_equal(addr(e.orig.dst, a), "198.51.100.10");
	assert_string_equal(addr(e.reply.dst, a), "203.0.113.10");
	assert_int_equal(e.reply.proto, IPPROTO_TCP);
	assert_true(e.reply.has_port);
	assert_false(e.reply.has_id);
	assert_int_equal(e.orig.sport, 40000);
	assert_int_equal(e.reply.sport, 80);
	assert_int_equal(e.reply.dport, 1030);
}

static void test_icmp_echo(void **state)
{
	(void)state;
	char buf[1024];
	struct tuple o = {"10.77.1.1", "198.51.100.10", IPPROTO_ICMP, .id = 7};
	struct tuple r = {"198.51.100.10", "203.0.113.10", IPPROTO_ICMP, .id = 1100};
	struct nlmsghdr *nlh = entry(buf, &o, &r, AF_INET);
	struct dp_ct_entry e;
	assert_int_equal(dp_conntrack_parse(nlh, nlh->nlmsg_len, &e), 0);
	assert_true(e.reply.has_id);
	assert_false(e.reply.has_port);
	assert_int_equal(e.orig.id, 7);
	assert_int_equal(e.reply.id, 1100);
}

/* A protocol without ports (GRE's keys travel in the port attributes):
 * neither ports nor an id, as the text table showed none. */
static void test_no_ports(void **state)
{
	(void)state;
	char buf[1024];
	struct tuple o = {"10.77.1.1", "198.51.100.10", IPPROTO_GRE, 5, 6, 0};
	struct nlmsghdr *nlh = entry(buf, &o, &o, AF_INET);
	struct dp_ct_entry e;
	assert_int_equal(dp_conntrack_parse(nlh, nlh->nlmsg_len, &e), 0);
	assert_false(e.reply.has_port);
	assert_false(e.reply.has_id);
}

static void test_not_ipv4(void **state)
{
	(void)state;
	char buf[1024];
	struct tuple o = {NULL, NULL, IPPROTO_TCP, 1, 2, 0};
	struct nlmsghdr *nlh = entry(buf, &o, &o, AF_INET6);
	struct dp_ct_entry e;
	assert_int_equal(dp_conntrack_parse(nlh, nlh->nlmsg_len, &e), -ENOENT);
}

/* Cut anywhere, or with a length field that lies, the message is refused
 * and nothing is read past its end. */
static void test_cut(void **state)
{
	(void)state;
	char buf[1024];
	struct tuple o = {"10.77.1.1", "198.51.100.10", IPPROTO_UDP, 5353, 53, 0};
	struct nlmsghdr *nlh = entry(buf, &o, &o, AF_INET);
	uint32_t len = nlh->nlmsg_len;
	struct dp_ct_entry e;
	for (uint32_t n = 0; n < len; n++) {
		char copy[1024];
		memcpy(copy, buf, n);
		assert_int_not_equal(dp_conntrack_parse(copy, n, &e), 0);
	}
	/* The header claims every byte, the attributes stop short: the reply
	 * tuple is lost. */
	nlh = entry(buf, &o, &o, AF_INET);
	struct nlattr *reply =
	    (struct nlattr *)((char *)mnl_nlmsg_get_payload(nlh) + sizeof(struct nfgenmsg));
	reply = (struct nlattr *)((char *)reply + MNL_ALIGN(reply->nla_len));
	reply->nla_len = 0xffff;
	assert_int_not_equal(dp_conntrack_parse(nlh, nlh->nlmsg_len, &e), 0);
	/* A port of the wrong size. */
	nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = AF_INET;
	struct tuple t = {"10.77.1.1", "198.51.100.10", IPPROTO_UDP, 1, 2, 0};
	put_tuple(nlh, CTA_TUPLE_ORIG, &t, false);
	struct nlattr *bad = mnl_attr_nest_start(nlh, CTA_TUPLE_REPLY);
	struct nlattr *ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	mnl_attr_put_u32(nlh, CTA_IP_V4_SRC, 1);
	mnl_attr_put_u32(nlh, CTA_IP_V4_DST, 2);
	mnl_attr_nest_end(nlh, ip);
	struct nlattr *proto = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, IPPROTO_UDP);
	mnl_attr_put_u8(nlh, CTA_PROTO_SRC_PORT, 1);
	mnl_attr_put_u8(nlh, CTA_PROTO_DST_PORT, 2);
	mnl_attr_nest_end(nlh, proto);
	mnl_attr_nest_end(nlh, bad);
	assert_int_equal(dp_conntrack_parse(nlh, nlh->nlmsg_len, &e), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tcp_translated),
	    cmocka_unit_test(test_icmp_echo),
	    cmocka_unit_test(test_no_ports),
	    cmocka_unit_test(test_not_ipv4),
	    cmocka_unit_test(test_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
