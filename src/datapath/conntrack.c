/* Reading the conntrack table through ctnetlink (conntrack.h): one dump of
 * IPv4 entries, each message parsed with bounds-checked attributes. */
#include "conntrack.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

/* A dump's messages arrive in batches that fit a page or a few. */
#define CT_BUFFER_SIZE 32768

/* Protocols whose tuples carry ports (the text table printed sport= and
 * dport= for exactly these). */
static bool has_ports(uint8_t proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE ||
	       proto == IPPROTO_SCTP || proto == IPPROTO_DCCP;
}

_Static_assert(CTA_PROTO_MAX < 32 && CTA_TUPLE_MAX < 32 && CTA_IP_MAX < 32 && CTA_TUPLE_REPLY < 32,
               "struct nest holds every attribute type it collects");

/* Collects the attributes of one nest, each of the type it must have. */
struct nest {
	const struct nlattr *tb[32];
	int max;
	int status;
};

static int collect(const struct nlattr *attr, void *data)
{
	struct nest *n = data;
	int type = mnl_attr_get_type(attr);
	if (type > n->max)
		return MNL_CB_OK;
	n->tb[type] = attr;
	return MNL_CB_OK;
}

static int parse_nest(const struct nlattr *attr, int max, struct nest *ret)
{
	*ret = (struct nest){.max = max};
	if (mnl_attr_parse_nested(attr, collect, ret) < 0)
		return -EBADMSG;
	return 0;
}

static int get_u16(const struct nlattr *a, uint16_t *ret)
{
	if (mnl_attr_validate(a, MNL_TYPE_U16) < 0)
		return -EBADMSG;
	*ret = ntohs(mnl_attr_get_u16(a));
	return 0;
}

static int parse_tuple(const struct nlattr *attr, struct dp_ct_tuple *ret)
{
	struct nest t, ip, proto;
	int r = parse_nest(attr, CTA_TUPLE_MAX, &t);
	if (r < 0)
		return r;
	if (!t.tb[CTA_TUPLE_IP] || !t.tb[CTA_TUPLE_PROTO])
		return -EBADMSG;
	if (parse_nest(t.tb[CTA_TUPLE_IP], CTA_IP_MAX, &ip) < 0 ||
	    parse_nest(t.tb[CTA_TUPLE_PROTO], CTA_PROTO_MAX, &proto) < 0)
		return -EBADMSG;
	const struct nlattr *src = ip.tb[CTA_IP_V4_SRC], *dst = ip.tb[CTA_IP_V4_DST];
	const struct nlattr *num = proto.tb[CTA_PROTO_NUM];
	if (!src || !dst)
		return -ENOENT; /* IPv6 */
	if (mnl_attr_validate(src, MNL_TYPE_U32) < 0 || mnl_attr_validate(dst, MNL_TYPE_U32) < 0 ||
	    !num || mnl_attr_validate(num, MNL_TYPE_U8) < 0)
		return -EBADMSG;
	struct dp_ct_tuple x = {.proto = mnl_attr_get_u8(num)};
	x.src.s_addr = mnl_attr_get_u32(src);
	x.dst.s_addr = mnl_attr_get_u32(dst);
	const struct nlattr *sp = proto.tb[CTA_PROTO_SRC_PORT], *dp = proto.tb[CTA_PROTO_DST_PORT];
	if (has_ports(x.proto) && sp && dp) {
		if (get_u16(sp, &x.sport) < 0 || get_u16(dp, &x.dport) < 0)
			return -EBADMSG;
		x.has_port = true;
	}
	if (x.proto == IPPROTO_ICMP && proto.tb[CTA_PROTO_ICMP_ID]) {
		if (get_u16(proto.tb[CTA_PROTO_ICMP_ID], &x.id) < 0)
			return -EBADMSG;
		x.has_id = true;
	}
	*ret = x;
	return 0;
}

int dp_conntrack_parse(const void *msg, size_t len, struct dp_ct_entry *ret)
{
	const struct nlmsghdr *nlh = msg;
	if (len < sizeof(*nlh) || !mnl_nlmsg_ok(nlh, (int)len) ||
	    nlh->nlmsg_len < MNL_NLMSG_HDRLEN + sizeof(struct nfgenmsg))
		return -EBADMSG;
	const struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);
	if (nfg->nfgen_family != AF_INET)
		return -ENOENT;
	struct nest top = {.max = CTA_TUPLE_REPLY};
	if (mnl_attr_parse(nlh, sizeof(*nfg), collect, &top) < 0)
		return -EBADMSG;
	if (!top.tb[CTA_TUPLE_ORIG] || !top.tb[CTA_TUPLE_REPLY])
		return -ENOENT;
	struct dp_ct_entry e;
	int r = parse_tuple(top.tb[CTA_TUPLE_ORIG], &e.orig);
	if (r == 0)
		r = parse_tuple(top.tb[CTA_TUPLE_REPLY], &e.reply);
	if (r < 0)
		return r;
	*ret = e;
	return 0;
}

struct count {
	dp_ct_match_fn match;
	void *userdata;
	unsigned long n;
};

static int count_cb(const struct nlmsghdr *nlh, void *data)
{
	struct count *c = data;
	struct dp_ct_entry e;
	if (dp_conntrack_parse(nlh, nlh->nlmsg_len, &e) == 0 && c->match(c->userdata, &e))
		c->n++;
	return MNL_CB_OK;
}

static int dump(struct mnl_socket *nl, struct count *c)
{
	char buf[CT_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = (uint32_t)time(NULL);
	struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = AF_INET;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = 0;
	uint32_t seq = nlh->nlmsg_seq, portid = mnl_socket_get_portid(nl);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		int r = mnl_cb_run(buf, (size_t)n, seq, portid, count_cb, c);
		if (r < 0)
			return -errno;
		if (r == MNL_CB_STOP)
			return 0;
	}
}

int dp_conntrack_count(dp_ct_match_fn match, void *userdata, unsigned long *ret_count)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		return errno == EPROTONOSUPPORT ? -EPROTONOSUPPORT : -errno;
	int r = mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 ? -errno : 0;
	struct count c = {.match = match, .userdata = userdata};
	if (r == 0)
		r = dump(nl, &c);
	mnl_socket_close(nl);
	if (r < 0)
		return r;
	*ret_count = c.n;
	return 0;
}

int dp_conntrack_total(unsigned long *ret_count)
{
	FILE *f = fopen("/proc/sys/net/netfilter/nf_conntrack_count", "re");
	if (!f)
		return -errno;
	unsigned long n;
	int r = fscanf(f, "%lu", &n) == 1 ? 0 : -EIO;
	fclose(f);
	if (r == 0)
		*ret_count = n;
	return r;
}
