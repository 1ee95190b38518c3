/* The guest's sockets through sock_diag (guest.h). */
#include "guest.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>

struct guest {
	struct mnl_socket *nl;
};

int guest_open(const char *netns_path, struct guest **ret)
{
	int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return -errno;
	int target = open(netns_path, O_RDONLY | O_CLOEXEC);
	if (target < 0) {
		int r = -errno;
		close(self);
		return r;
	}
	/* A socket belongs to the namespace it was made in: make it there,
	 * come straight back. */
	int r = setns(target, CLONE_NEWNET) < 0 ? -errno : 0;
	struct mnl_socket *nl = r == 0 ? mnl_socket_open(NETLINK_SOCK_DIAG) : NULL;
	if (r == 0 && !nl)
		r = -errno;
	if (setns(self, CLONE_NEWNET) < 0)
		abort(); /* cannot go home: nothing this agent does would be right */
	close(self);
	close(target);
	if (r < 0)
		return r;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		r = -errno;
		mnl_socket_close(nl);
		return r;
	}
	struct guest *g = calloc(1, sizeof(*g));
	if (!g) {
		mnl_socket_close(nl);
		return -ENOMEM;
	}
	g->nl = nl;
	*ret = g;
	return 0;
}

void guest_close(struct guest *g)
{
	if (!g)
		return;
	mnl_socket_close(g->nl);
	free(g);
}

struct collect {
	struct guest_listener *out;
	size_t n, max;
	uint8_t proto;
};

static int one(const struct nlmsghdr *nlh, void *data)
{
	struct collect *c = data;
	const struct inet_diag_msg *m = mnl_nlmsg_get_payload(nlh);
	if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*m)) || m->idiag_family != AF_INET)
		return MNL_CB_OK;
	/* UDP: only sockets not connected to one peer are servers. */
	if (c->proto == IPPROTO_UDP && m->id.idiag_dport != 0)
		return MNL_CB_OK;
	if (c->n < c->max)
		c->out[c->n++] = (struct guest_listener){
		    .proto = c->proto,
		    .port = ntohs(m->id.idiag_sport),
		    .addr = {m->id.idiag_src[0]},
		};
	return MNL_CB_OK;
}

static int dump(struct guest *g, uint8_t proto, uint32_t states, struct collect *c)
{
	static char buf[32768]; /* one loop thread: one dump at a time */
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = (uint32_t)time(NULL);
	struct inet_diag_req_v2 *req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
	req->sdiag_family = AF_INET;
	req->sdiag_protocol = proto;
	req->idiag_states = states;
	if (mnl_socket_sendto(g->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	uint32_t seq = nlh->nlmsg_seq, portid = mnl_socket_get_portid(g->nl);
	c->proto = proto;
	for (;;) {
		ssize_t len = mnl_socket_recvfrom(g->nl, buf, sizeof(buf));
		if (len < 0)
			return -errno;
		int r = mnl_cb_run(buf, (size_t)len, seq, portid, one, c);
		if (r < 0)
			return -errno;
		if (r == MNL_CB_STOP)
			return 0;
	}
}

int guest_listeners(struct guest *g, struct guest_listener *out, size_t max)
{
	struct collect c = {.out = out, .max = max};
	int r = dump(g, IPPROTO_TCP, 1u << TCP_LISTEN, &c);
	if (r == 0)
		r = dump(g, IPPROTO_UDP, 1u << TCP_CLOSE, &c);
	return r < 0 ? r : (int)c.n;
}
