/* The guest's sockets through sock_diag, and its ephemeral ports (guest.h). */
#include "guest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>

#include "lib/array.h"
#include "lib/cleanup.h"
#include "lib/fileio.h"

struct guest {
	struct mnl_socket *nl;
	struct stat ns; /* the namespace's identity */
	int proc;       /* /proc, or -1 */
};

struct netns_call {
	const char *path;
	int (*fn)(void *arg);
	void *arg;
	int r;
};

static void *in_netns_thread(void *data)
{
	struct netns_call *t = data;
	int fd = open(t->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		t->r = -errno;
		return NULL;
	}
	t->r = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
	close(fd);
	if (t->r == 0)
		t->r = t->fn(t->arg);
	return NULL;
}

/* Runs @fn(@arg) on a short-lived thread that enters the network namespace
 * at @netns_path first: a thread's namespace is its own, so the agent's loop
 * thread never leaves the AEE, whatever fails. Returns what @fn returned, or
 * a negative errno when the namespace cannot be entered. */
static int in_netns(const char *netns_path, int (*fn)(void *arg), void *arg)
{
	struct netns_call t = {.path = netns_path, .fn = fn, .arg = arg};
	pthread_t th;
	int r = pthread_create(&th, NULL, in_netns_thread, &t);
	if (r != 0)
		return -r;
	pthread_join(th, NULL);
	return t.r;
}

/* A socket belongs to the namespace it was made in. */
static int open_diag(void *arg)
{
	struct mnl_socket **nl = arg;
	*nl = mnl_socket_open(NETLINK_SOCK_DIAG);
	return *nl ? 0 : -errno;
}

int guest_open(const char *netns_path, struct guest **ret)
{
	struct mnl_socket *nl = NULL;
	int r = in_netns(netns_path, open_diag, &nl);
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
	g->proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (stat(netns_path, &g->ns) < 0 || g->proc < 0) {
		r = -errno;
		guest_close(g);
		return r;
	}
	*ret = g;
	return 0;
}

void guest_close(struct guest *g)
{
	if (!g)
		return;
	mnl_socket_close(g->nl);
	if (g->proc >= 0)
		close(g->proc);
	free(g);
}

struct collect {
	struct guest_listener *v;
	size_t n, cap;
	uint8_t proto;
	int status; /* -ENOMEM once an element could not be kept */
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
	if (ARRAY_RESERVE(c->v, c->cap, c->n + 1) < 0) {
		c->status = -ENOMEM;
		return MNL_CB_ERROR;
	}
	c->v[c->n++] = (struct guest_listener){
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

int guest_listeners(struct guest *g, struct guest_listener **ret_v, size_t *ret_n)
{
	struct collect c = {0};
	int r = dump(g, IPPROTO_TCP, 1u << TCP_LISTEN, &c);
	if (r == 0)
		r = dump(g, IPPROTO_UDP, 1u << TCP_CLOSE, &c);
	if (r < 0 || c.status < 0) {
		free(c.v);
		return c.status < 0 ? c.status : r;
	}
	*ret_v = c.v;
	*ret_n = c.n;
	return 0;
}

/* ---- who owns a flow ---- */

static int owner_one(const struct nlmsghdr *nlh, void *data)
{
	struct guest_owner *o = data;
	const struct inet_diag_msg *m = mnl_nlmsg_get_payload(nlh);
	if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
		return MNL_CB_OK;
	o->uid = m->idiag_uid;
	o->inode = m->idiag_inode;
	return MNL_CB_OK;
}

static int owner_lookup(struct guest *g, const struct guest_flow *f, struct guest_owner *ret)
{
	char buf[8192];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	nlh->nlmsg_flags = NLM_F_REQUEST; /* no dump: the kernel looks the socket up */
	static uint32_t seq;
	nlh->nlmsg_seq = ++seq;
	struct inet_diag_req_v2 *req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
	req->sdiag_family = AF_INET;
	req->sdiag_protocol = f->proto;
	req->idiag_states = ~0u;
	req->id.idiag_src[0] = f->local.s_addr;
	req->id.idiag_dst[0] = f->remote.s_addr;
	req->id.idiag_sport = htons(f->local_port);
	req->id.idiag_dport = htons(f->remote_port);
	req->id.idiag_cookie[0] = req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (mnl_socket_sendto(g->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	struct guest_owner o = {.inode = UINT64_MAX};
	uint32_t portid = mnl_socket_get_portid(g->nl);
	int r;
	do {
		ssize_t len = mnl_socket_recvfrom(g->nl, buf, sizeof(buf));
		if (len < 0)
			return -errno;
		r = mnl_cb_run(buf, (size_t)len, nlh->nlmsg_seq, portid, owner_one, &o);
		if (r < 0)
			return errno ? -errno : -EIO;
	} while (r == MNL_CB_OK && o.inode == UINT64_MAX);
	if (o.inode == UINT64_MAX)
		return -ENOENT;
	*ret = o;
	return 0;
}

int guest_flow_owner(struct guest *g, const struct guest_flow *f, struct guest_owner *ret)
{
	int r = owner_lookup(g, f, ret);
	/* A connection the server has not accepted yet (or a request socket)
	 * has no inode: it is the listener's. */
	if (f->proto == IPPROTO_TCP && ((r == 0 && ret->inode == 0) || r == -ENOENT)) {
		struct guest_flow listener = *f;
		listener.remote.s_addr = 0;
		listener.remote_port = 0;
		struct guest_owner o;
		if (owner_lookup(g, &listener, &o) == 0 && o.inode) {
			*ret = o;
			return 0;
		}
	}
	return r;
}

/* Whether @link_path (a descriptor under /proc) is @want. */
static bool link_is(int dir, const char *link_path, const char *want)
{
	char link[64];
	ssize_t n = readlinkat(dir, link_path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = '\0';
	return strcmp(link, want) == 0;
}

/* Whether the process @pid (a /proc entry) holds "socket:[@inode]": at the
 * descriptor *@fd first (-1: none; a program that opens a flow after
 * another's close gets the same number again), the one found left in *@fd. */
static bool holds_socket(int proc, const char *pid, const char *want, int *fd_hint)
{
	char path[300];
	if (*fd_hint >= 0) {
		snprintf(path, sizeof(path), "%s/fd/%d", pid, *fd_hint);
		if (link_is(proc, path, want))
			return true;
	}
	snprintf(path, sizeof(path), "%s/fd", pid);
	int fd = openat(proc, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return false;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	bool found = false;
	for (struct dirent *e; !found && (e = readdir(d));)
		if ((found = link_is(fd, e->d_name, want)))
			*fd_hint = atoi(e->d_name);
	closedir(d);
	return found;
}

/* Whether the /proc entry @pid is a process of the namespace @ns that
 * holds @want; its executable then into @ret_path. */
static bool program_of(int proc, const char *pid, const struct stat *ns, const char *want,
                       int *fd_hint, char *ret_path, size_t size)
{
	char path[300];
	struct stat st;
	snprintf(path, sizeof(path), "%s/ns/net", pid);
	/* Only the guest's processes: the others' sockets are not its. */
	if (fstatat(proc, path, &st, 0) < 0 || st.st_ino != ns->st_ino || st.st_dev != ns->st_dev)
		return false;
	if (!holds_socket(proc, pid, want, fd_hint))
		return false;
	snprintf(path, sizeof(path), "%s/exe", pid);
	ssize_t n = readlinkat(proc, path, ret_path, size - 1);
	if (n < 0)
		return false; /* it exited meanwhile */
	ret_path[n] = '\0';
	return true;
}

int guest_socket_program(struct guest *g, uint64_t inode, struct guest_hint *hint, char *ret_path,
                         size_t size)
{
	if (inode == 0)
		return -ENOENT;
	char want[48], name[16];
	snprintf(want, sizeof(want), "socket:[%llu]", (unsigned long long)inode);
	snprintf(name, sizeof(name), "%d", hint->pid);
	if (hint->pid > 0 && program_of(g->proc, name, &g->ns, want, &hint->fd, ret_path, size))
		return 0;
	int fd = openat(g->proc, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		int r = -errno;
		if (fd >= 0)
			close(fd);
		return r;
	}
	int r = -ENOENT;
	for (struct dirent *e; r == -ENOENT && (e = readdir(d));) {
		int fd_hint = -1;
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9' &&
		    program_of(g->proc, e->d_name, &g->ns, want, &fd_hint, ret_path, size)) {
			*hint = (struct guest_hint){.pid = atoi(e->d_name), .fd = fd_hint};
			r = 0;
		}
	}
	closedir(d);
	return r;
}

/* ---- the guest's ephemeral ports ---- */

struct local_ports {
	char range[GUEST_PORT_RANGE_MAX];
	char *reserved;
	const char *failed; /* the file that could not be written */
};

/* Runs inside the guest's namespace: /proc/sys/net is the namespace of the
 * thread that opens it. The gaps are reserved before the range grows over
 * them, so no port outside the blocks is handed out in between. */
static int write_local_ports(void *arg)
{
	struct local_ports *lp = arg;
	static const char reserved[] = "/proc/sys/net/ipv4/ip_local_reserved_ports";
	static const char range[] = "/proc/sys/net/ipv4/ip_local_port_range";
	int r = file_write_value(reserved, lp->reserved);
	if (r < 0) {
		lp->failed = reserved;
		return r;
	}
	r = file_write_value(range, lp->range);
	if (r < 0)
		lp->failed = range;
	return r;
}

static int block_cmp(const void *a, const void *b)
{
	const struct guest_port_block *x = a, *y = b;
	return (x->start > y->start) - (x->start < y->start);
}

/* "A-B,C-D\n": the gaps between @b's @n blocks, sorted and disjoint; an
 * empty list ("\n") clears the reservation. */
static int render_gaps(const struct guest_port_block *b, size_t n, char **ret_reserved)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	bool any = false;
	for (size_t i = 1; i < n; i++) {
		unsigned from = (unsigned)b[i - 1].start + b[i - 1].size, to = b[i].start - 1u;
		if (from > to)
			continue; /* adjacent blocks */
		fprintf(f, "%s%u-%u", any ? "," : "", from, to);
		any = true;
	}
	fputc('\n', f);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	*ret_reserved = text;
	return 0;
}

int guest_ports_render(const struct guest_port_block *blocks, size_t n,
                       char ret_range[GUEST_PORT_RANGE_MAX], char **ret_reserved)
{
	if (n == 0 || n > 65536)
		return -EINVAL;
	_cleanup_free_ struct guest_port_block *b = calloc(n, sizeof(*b));
	if (!b)
		return -ENOMEM;
	memcpy(b, blocks, n * sizeof(*b));
	qsort(b, n, sizeof(*b), block_cmp);
	for (size_t i = 0; i < n; i++)
		if (b[i].size == 0 || (unsigned)b[i].start + b[i].size > 65536 ||
		    (i > 0 && b[i].start < (unsigned)b[i - 1].start + b[i - 1].size))
			return -EINVAL;
	int r = render_gaps(b, n, ret_reserved);
	if (r < 0)
		return r;
	unsigned last = (unsigned)b[n - 1].start + b[n - 1].size - 1;
	snprintf(ret_range, GUEST_PORT_RANGE_MAX, "%u %u\n", b[0].start, last);
	return 0;
}

int guest_set_local_ports(const char *netns_path, const struct guest_port_block *blocks, size_t n,
                          const char **ret_failed)
{
	struct local_ports lp = {0};
	int r = guest_ports_render(blocks, n, lp.range, &lp.reserved);
	if (r < 0)
		return r;
	r = in_netns(netns_path, write_local_ports, &lp);
	free(lp.reserved);
	if (r < 0 && ret_failed)
		*ret_failed = lp.failed ? lp.failed : netns_path;
	return r;
}
