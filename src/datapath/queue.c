/* The agent's packet queue and its steering rules (queue.h). */
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <netinet/ip.h>

#include "datapath-internal.h"
#include "lib/error.h"

extern char **environ;

/* Runs @argv with @input on its standard input; its standard error (cut
 * to what fits) into @err. Returns its exit status, or a negative errno. */
static int run(char *const argv[], const char *input, char *err, size_t err_size)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		return -errno;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, out[1], 2);
	pid_t pid;
	int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (r != 0) {
		close(in[1]);
		close(out[0]);
		snprintf(err, err_size, "%s: %s", argv[0], strerror(r));
		return -r;
	}
	/* The input is small: it fits in the pipe, so nothing blocks. */
	size_t len = strlen(input);
	if (write(in[1], input, len) != (ssize_t)len)
		r = -EIO;
	close(in[1]);
	size_t n = 0;
	for (ssize_t k; n + 1 < err_size && (k = read(out[0], err + n, err_size - 1 - n)) > 0;)
		n += (size_t)k;
	err[n] = '\0';
	while (n && err[n - 1] == '\n')
		err[--n] = '\0';
	close(out[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (r < 0)
		return r;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void dp_steer_render(const struct dp_steer *v, size_t n, FILE *f)
{
	fputs("*mangle\n:" DP_QUEUE_CHAIN " - [0:0]\n-F " DP_QUEUE_CHAIN "\n", f);
	for (size_t i = 0; i < n; i++) {
		fputs("-A " DP_QUEUE_CHAIN, f);
		if (v[i].stamped)
			fprintf(f, " -i %.15s -s %s/%u -m tos --tos 0x%02x/0x0c", v[i].iif,
			        inet_ntoa(v[i].from), (unsigned)v[i].from_len,
			        (unsigned)(v[i].stamp & 3) << 2);
		if (v[i].skip) {
			fputs(" -j RETURN\n", f);
			continue;
		}
		fprintf(f,
		        " -m conntrack --%s %s/32 -m connmark ! --mark 0x%08x "
		        "-j NFQUEUE --queue-num %u --queue-bypass\n",
		        v[i].reply ? "ctreplsrc" : "ctorigsrc", inet_ntoa(v[i].addr),
		        v[i].unless_ct_mark, v[i].queue);
	}
	fputs("COMMIT\n", f);
}

int dp_steer(const struct dp_steer *v, size_t n, char **ret_error)
{
	char *rules = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&rules, &len);
	if (!f)
		return -ENOMEM;
	dp_steer_render(v, n, f);
	if (fclose(f) != 0) {
		free(rules);
		return -ENOMEM;
	}
	char err[512];
	char *restore[] = {"iptables-nft-restore", "--noflush", "--wait", NULL};
	int r = run(restore, rules, err, sizeof(err));
	free(rules);
	/* The jump is made once per process: it stays while the namespace
	 * does, and a spawn less per epoch keeps the agent's loop free for the
	 * packets it is queued. */
	static bool jumped;
	if (r == 0 && !jumped) {
		char *check[] = {"iptables-nft", "--wait", "-t",           "mangle", "-C",
		                 "FORWARD",      "-j",     DP_QUEUE_CHAIN, NULL};
		char *insert[] = {"iptables-nft", "--wait", "-t",           "mangle", "-I",
		                  "FORWARD",      "-j",     DP_QUEUE_CHAIN, NULL};
		if (run(check, "", err, sizeof(err)) != 0)
			r = run(insert, "", err, sizeof(err));
		jumped = r == 0;
	}
	if (r == 0)
		dp_nft_genid(&dp_own_genid);
	if (r != 0)
		return error_set(ret_error, r < 0 ? r : -EIO, "steering packets to the queue: %s",
		                 err[0] ? err : "iptables-nft failed");
	return 0;
}

/* ---- a netfilter netlink socket: the queue's and the log's ---- */

struct nf_sock {
	struct mnl_socket *nl;
	uint32_t portid;
};

static int nf_open(struct nf_sock *n)
{
	n->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!n->nl)
		return -errno;
	if (mnl_socket_bind(n->nl, 0, MNL_SOCKET_AUTOPID) < 0)
		return -errno;
	n->portid = mnl_socket_get_portid(n->nl);
	return 0;
}

/* Sends a configuration message and reads the kernel's answer. */
static int nf_config(struct nf_sock *n, const struct nlmsghdr *nlh)
{
	char buf[8192];
	if (mnl_socket_sendto(n->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	ssize_t len = mnl_socket_recvfrom(n->nl, buf, sizeof(buf));
	if (len < 0)
		return -errno;
	return mnl_cb_run(buf, (size_t)len, 0, n->portid, NULL, NULL) < 0 ? -errno : 0;
}

/* Non-blocking, for the caller's loop. */
static int nf_nonblock(struct nf_sock *n)
{
	int fd = mnl_socket_get_fd(n->nl);
	return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ? -errno : 0;
}

static void nf_close(struct nf_sock *n)
{
	if (n->nl)
		mnl_socket_close(n->nl);
	n->nl = NULL;
}

/* Reads every message there is, without blocking, through @cb. Messages
 * lost to a full buffer (ENOBUFS) are passed over. */
static int nf_drain(struct nf_sock *n, mnl_cb_t cb, void *data)
{
	static char buf[65536 + 8192]; /* one loop thread reads */
	for (;;) {
		ssize_t len = mnl_socket_recvfrom(n->nl, buf, sizeof(buf));
		if (len < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == ENOBUFS)
				continue;
			return -errno;
		}
		if (mnl_cb_run(buf, (size_t)len, 0, n->portid, cb, data) < 0)
			return -errno;
	}
}

/* ---- the queue ---- */

struct dp_queue {
	struct nf_sock nf;
	uint16_t num;
};

static int queue_config(struct dp_queue *q, bool params)
{
	char buf[256];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, q->num);
	nlh->nlmsg_flags |= NLM_F_ACK;
	if (params)
		nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 128);
	else
		nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
	return nf_config(&q->nf, nlh);
}

int dp_queue_open(uint16_t num, struct dp_queue **ret)
{
	struct dp_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->num = num;
	int r = nf_open(&q->nf);
	if (r == 0)
		r = queue_config(q, false);
	if (r == 0)
		r = queue_config(q, true);
	if (r == 0) {
		/* A burst of new flows must not be lost to a full socket buffer:
		 * ENOBUFS is reported, and the packets dropped, not accepted. */
		int one = 1;
		setsockopt(mnl_socket_get_fd(q->nf.nl), SOL_NETLINK, NETLINK_NO_ENOBUFS, &one,
		           sizeof(one));
		r = nf_nonblock(&q->nf);
	}
	if (r < 0) {
		dp_queue_close(q);
		return r;
	}
	*ret = q;
	return 0;
}

void dp_queue_close(struct dp_queue *q)
{
	if (!q)
		return;
	nf_close(&q->nf);
	free(q);
}

int dp_queue_fd(const struct dp_queue *q)
{
	return mnl_socket_get_fd(q->nf.nl);
}

int dp_queue_verdict(struct dp_queue *q, uint32_t id, bool accept, uint32_t mark)
{
	char buf[256];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT, q->num);
	nfq_nlmsg_verdict_put(nlh, (int)id, accept ? NF_ACCEPT : NF_DROP);
	if (accept && mark)
		nfq_nlmsg_verdict_put_mark(nlh, mark);
	return mnl_socket_sendto(q->nf.nl, nlh, nlh->nlmsg_len) < 0 ? -errno : 0;
}

/* The addresses and ports of an IPv4 packet; false when it is none or is
 * too short to tell. */
static bool parse_ip(const uint8_t *p, size_t len, struct dp_queued *ret)
{
	if (len < sizeof(struct iphdr))
		return false;
	const struct iphdr *ip = (const void *)p;
	size_t hl = (size_t)ip->ihl * 4;
	if (ip->version != 4 || hl < sizeof(*ip) || hl > len)
		return false;
	ret->proto = ip->protocol;
	ret->tos = ip->tos;
	ret->src.s_addr = ip->saddr;
	ret->dst.s_addr = ip->daddr;
	ret->sport = ret->dport = 0;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return true;
	if ((ntohs(ip->frag_off) & 0x1fff) != 0 || len < hl + 4)
		return false; /* a later fragment shows no ports */
	ret->sport = (uint16_t)(p[hl] << 8 | p[hl + 1]);
	ret->dport = (uint16_t)(p[hl + 2] << 8 | p[hl + 3]);
	return true;
}

struct read_ctx {
	struct dp_queue *q;
	void (*fn)(void *userdata, const struct dp_queued *pkt);
	void *userdata;
	int n;
};

static int one_packet(const struct nlmsghdr *nlh, void *data)
{
	struct read_ctx *c = data;
	struct nlattr *attr[NFQA_MAX + 1] = {0};
	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
		return MNL_CB_OK;
	const struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	struct dp_queued pkt = {.id = ntohl(ph->packet_id)};
	if (attr[NFQA_IFINDEX_INDEV])
		pkt.indev = ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV]));
	c->n++;
	if (!attr[NFQA_PAYLOAD] || !parse_ip(mnl_attr_get_payload(attr[NFQA_PAYLOAD]),
	                                     mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]), &pkt)) {
		dp_queue_verdict(c->q, pkt.id, false, 0);
		return MNL_CB_OK;
	}
	c->fn(c->userdata, &pkt);
	return MNL_CB_OK;
}

int dp_queue_read(struct dp_queue *q, void (*fn)(void *userdata, const struct dp_queued *pkt),
                  void *userdata)
{
	struct read_ctx c = {.q = q, .fn = fn, .userdata = userdata};
	int r = nf_drain(&q->nf, one_packet, &c);
	return r < 0 ? r : c.n;
}

/* ---- the log ---- */

struct dp_log {
	struct nf_sock nf;
	uint16_t group;
};

static struct nlmsghdr *log_msg(char *buf, uint16_t group, uint8_t type)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = AF_UNSPEC;
	g->version = NFNETLINK_V0;
	g->res_id = htons(group);
	return nlh;
}

int dp_log_open(uint16_t group, struct dp_log **ret)
{
	struct dp_log *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->group = group;
	int r = nf_open(&l->nf);
	char buf[256];
	if (r == 0) {
		struct nlmsghdr *nlh = log_msg(buf, group, NFULNL_MSG_CONFIG);
		struct nfulnl_msg_config_cmd cmd = {.command = NFULNL_CFG_CMD_BIND};
		mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof(cmd), &cmd);
		r = nf_config(&l->nf, nlh);
	}
	if (r == 0) {
		struct nlmsghdr *nlh = log_msg(buf, group, NFULNL_MSG_CONFIG);
		struct nfulnl_msg_config_mode mode = {.copy_range = htonl(128),
		                                      .copy_mode = NFULNL_COPY_PACKET};
		mnl_attr_put(nlh, NFULA_CFG_MODE, sizeof(mode), &mode);
		mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(1)); /* each packet as it comes */
		r = nf_config(&l->nf, nlh);
	}
	if (r == 0)
		r = nf_nonblock(&l->nf);
	if (r < 0) {
		dp_log_close(l);
		return r;
	}
	*ret = l;
	return 0;
}

void dp_log_close(struct dp_log *l)
{
	if (!l)
		return;
	nf_close(&l->nf);
	free(l);
}

int dp_log_fd(const struct dp_log *l)
{
	return mnl_socket_get_fd(l->nf.nl);
}

struct log_ctx {
	void (*fn)(void *userdata, const char *prefix, const struct dp_queued *pkt);
	void *userdata;
	int n;
};

static int log_attr(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	uint16_t type = mnl_attr_get_type(a);
	if (type <= NFULA_MAX)
		tb[type] = a;
	return MNL_CB_OK;
}

static int one_logged(const struct nlmsghdr *nlh, void *data)
{
	struct log_ctx *c = data;
	const struct nlattr *tb[NFULA_MAX + 1] = {0};
	if (mnl_attr_parse(nlh, sizeof(struct nfgenmsg), log_attr, tb) < 0 || !tb[NFULA_PAYLOAD])
		return MNL_CB_OK;
	struct dp_queued pkt = {0};
	if (!parse_ip(mnl_attr_get_payload(tb[NFULA_PAYLOAD]),
	              mnl_attr_get_payload_len(tb[NFULA_PAYLOAD]), &pkt))
		return MNL_CB_OK;
	char prefix[128] = "";
	if (tb[NFULA_PREFIX]) {
		size_t n = mnl_attr_get_payload_len(tb[NFULA_PREFIX]);
		if (n >= sizeof(prefix))
			n = sizeof(prefix) - 1;
		memcpy(prefix, mnl_attr_get_payload(tb[NFULA_PREFIX]), n);
		prefix[n] = '\0';
	}
	c->n++;
	c->fn(c->userdata, prefix, &pkt);
	return MNL_CB_OK;
}

int dp_log_read(struct dp_log *l,
                void (*fn)(void *userdata, const char *prefix, const struct dp_queued *pkt),
                void *userdata)
{
	struct log_ctx c = {.fn = fn, .userdata = userdata};
	int r = nf_drain(&l->nf, one_logged, &c);
	return r < 0 ? r : c.n;
}
