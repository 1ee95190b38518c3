/* The agent's judge (policy-internal.h, docs/policy.md "Programs and
 * users"): a rule that asks which program or user at this end opened a
 * flow, or serves it, cannot be told by nftables, because a packet that
 * crosses from the guest's namespace into the AEE loses its socket. So the
 * first packet of such a flow is queued to the agent, which asks the
 * guest's kernel whose socket the flow's addresses and ports are
 * (sock_diag: its user, and its inode), finds the process holding that
 * socket (/proc), and judges the flow as policy_judge_end() does. Its
 * verdict: a drop, or an accept with POLICY_AGENT_MARK, at which nftables
 * stamps the flow with the epoch's ct mark, so the flow's later packets
 * stay in the kernel. A new epoch judges every established flow again. */
#include <arpa/inet.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "datapath/queue.h"
#include "guest/guest.h"
#include "lib/error.h"
#include "lib/log.h"
#include "policy-internal.h"
#include "services/service.h"

#define USERS_KEPT 16

struct policy_agent {
	const struct svc_env *env;
	struct guest *guest; /* sock_diag in the guest's namespace */
	struct dp_queue *queue[2];
	uv_poll_t poll[2];
	bool polling[2];
	/* What it judges by, while a direction is steered. */
	bool have;
	struct policy policy;
	struct net_view view;
	const struct policy_host *self;
	uint64_t epoch;
	/* What is steered now, to change nothing when nothing changed. */
	size_t n_steer;
	struct dp_steer steer[2];
	bool steered_once;
	int last_pid; /* the process that held the last flow's socket */
	size_t n_users;
	struct {
		uint32_t uid;
		char name[POLICY_WORD_MAX];
	} users[USERS_KEPT];
	/* For status. */
	uint64_t judged, attributed, unknown, denied;
	void (*done)(void *arg);
	void *done_arg;
	int closing;
};

/* The user @uid by its name where the host knows one, else its number;
 * the last few are kept (the user database is read again at each
 * policy update). */
static void user_name(struct policy_agent *a, uint32_t uid, char out[POLICY_WORD_MAX])
{
	for (size_t i = 0; i < a->n_users; i++)
		if (a->users[i].uid == uid) {
			snprintf(out, POLICY_WORD_MAX, "%s", a->users[i].name);
			return;
		}
	struct passwd pw, *found = NULL;
	char buf[1024];
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found &&
	    strlen(found->pw_name) < POLICY_WORD_MAX)
		snprintf(out, POLICY_WORD_MAX, "%s", found->pw_name);
	else
		snprintf(out, POLICY_WORD_MAX, "%u", uid);
	size_t slot = a->n_users < USERS_KEPT ? a->n_users++ : uid % USERS_KEPT;
	a->users[slot].uid = uid;
	snprintf(a->users[slot].name, POLICY_WORD_MAX, "%s", out);
}

/* The program and user of the guest's socket for the packet's flow; ""
 * where it cannot be known (no such socket, or no process holds it any
 * more: a program that sent one datagram and exited). */
static void attribute(struct policy_agent *a, const struct dp_queued *pkt, bool from_guest,
                      struct policy_who *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (!a->guest || (pkt->proto != IPPROTO_TCP && pkt->proto != IPPROTO_UDP))
		return;
	struct guest_flow f = {
	    .proto = pkt->proto,
	    .local = from_guest ? pkt->src : pkt->dst,
	    .remote = from_guest ? pkt->dst : pkt->src,
	    .local_port = from_guest ? pkt->sport : pkt->dport,
	    .remote_port = from_guest ? pkt->dport : pkt->sport,
	};
	struct guest_owner o;
	if (guest_flow_owner(a->guest, &f, &o) < 0)
		return;
	user_name(a, o.uid, ret->user);
	char path[PATH_MAX];
	if (guest_socket_program(a->guest, o.inode, &a->last_pid, path, sizeof(path)) == 0 &&
	    strlen(path) < POLICY_WORD_MAX)
		snprintf(ret->app, POLICY_WORD_MAX, "%s", path);
}

static void judge(struct policy_agent *a, int dir, const struct dp_queued *pkt)
{
	bool outbound = dir == POLICY_QUEUE_OUT;
	bool from_guest = pkt->src.s_addr == a->self->guest_addr;
	struct in_addr far = from_guest ? pkt->dst : pkt->src;
	uint16_t far_port = from_guest ? pkt->dport : pkt->sport;
	uint16_t guest_port = from_guest ? pkt->sport : pkt->dport;
	struct policy_flow flow = {.port = {.proto = pkt->proto}};
	struct policy_end me = {.kind = POLICY_END_HOST};
	snprintf(me.host, sizeof(me.host), "%s", a->self->name);
	struct policy_end them = {
	    .kind = POLICY_END_PREFIX, .addr = far.s_addr, .mask = 0xffffffffu};
	struct policy_who who;
	attribute(a, pkt, from_guest, &who);
	flow.from = outbound ? me : them;
	flow.to = outbound ? them : me;
	(outbound ? &flow.from_who : &flow.to_who)[0] = who;
	/* The service is the server's port: the far end's for the guest's
	 * own flows, the guest's for those that reach it. */
	flow.port.lo = flow.port.hi = outbound ? far_port : guest_port;
	if (pkt->proto != IPPROTO_TCP && pkt->proto != IPPROTO_UDP)
		flow.port.lo = 0, flow.port.hi = 65535;
	struct policy_verdict v = policy_judge_end(&a->policy, &a->view.net, &flow, outbound);
	a->judged++;
	if (who.app[0])
		a->attributed++;
	else
		a->unknown++;
	if (!v.allow)
		a->denied++;
	int r = dp_queue_verdict(a->queue[dir], pkt->id, v.allow, v.allow ? POLICY_AGENT_MARK : 0);
	if (r < 0)
		log_warn("policy: a verdict for the queue: %s", strerror(-r));
}

static void on_packet_out(void *userdata, const struct dp_queued *pkt)
{
	judge(userdata, POLICY_QUEUE_OUT, pkt);
}

static void on_packet_in(void *userdata, const struct dp_queued *pkt)
{
	judge(userdata, POLICY_QUEUE_IN, pkt);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	(void)events;
	struct policy_agent *a = h->data;
	int dir = h == &a->poll[POLICY_QUEUE_OUT] ? POLICY_QUEUE_OUT : POLICY_QUEUE_IN;
	if (status < 0)
		return;
	int r =
	    dp_queue_read(a->queue[dir], dir == POLICY_QUEUE_OUT ? on_packet_out : on_packet_in, a);
	if (r < 0)
		log_warn("policy: reading the queue: %s", strerror(-r));
}

static int open_queue(struct policy_agent *a, int dir)
{
	if (a->queue[dir])
		return 0;
	int r = dp_queue_open((uint16_t)dir, &a->queue[dir]);
	if (r < 0)
		return r;
	r = uv_poll_init(a->env->loop, &a->poll[dir], dp_queue_fd(a->queue[dir]));
	if (r < 0) {
		dp_queue_close(a->queue[dir]);
		a->queue[dir] = NULL;
		return r;
	}
	a->poll[dir].data = a;
	a->polling[dir] = true;
	return uv_poll_start(&a->poll[dir], UV_READABLE, on_readable);
}

static int steer(struct policy_agent *a, const struct dp_steer *v, size_t n, char **ret_error)
{
	if (n == a->n_steer && memcmp(v, a->steer, n * sizeof(*v)) == 0 &&
	    (n > 0 || !a->steered_once))
		return 0;
	int r = dp_steer(v, n, ret_error);
	a->steered_once = true;
	a->n_steer = r == 0 ? n : 0;
	memcpy(a->steer, v, a->n_steer * sizeof(*v));
	return r;
}

static void forget(struct policy_agent *a)
{
	if (!a->have)
		return;
	policy_free(&a->policy);
	policy_view_free(&a->view);
	a->have = false;
	a->self = NULL;
}

int policy_agent_update(struct policy_agent **pa, const struct svc_env *env, const char *text,
                        uint64_t epoch, bool before_table, char **ret_error)
{
	struct policy_agent *a = *pa;
	struct net_view v;
	struct policy p;
	int r = policy_view_build(env, &v);
	if (r < 0)
		return r;
	v.net.departed_hosts = true;
	const struct policy_host *self = policy_net_host(&v.net, env->host->name);
	bool needs[2] = {false, false};
	r = text ? policy_parse(text, "policy", &v.net, &p, NULL) : -ENOENT;
	if (r == 0 && self && self->guest_addr)
		for (int dir = 0; dir < 2; dir++)
			needs[dir] = policy_needs_agent(&p, &v.net, self, dir == POLICY_QUEUE_OUT);
	if (r == 0 && !needs[0] && !needs[1])
		policy_free(&p);
	if (!needs[0] && !needs[1]) {
		policy_view_free(&v);
		if (!a || before_table)
			return 0; /* nothing steered by this agent; or not yet */
		forget(a);
		return steer(a, NULL, 0, ret_error);
	}
	if (!before_table && a && a->have && a->epoch == epoch && a->n_steer > 0) {
		policy_free(&p);
		policy_view_free(&v);
		return 0; /* done before the table changed */
	}
	if (!a) {
		if (!(a = calloc(1, sizeof(*a)))) {
			policy_free(&p);
			policy_view_free(&v);
			return -ENOMEM;
		}
		a->env = env;
		*pa = a;
	}
	forget(a);
	a->n_users = 0;
	a->policy = p;
	a->view = v;
	a->self = policy_net_host(&a->view.net, env->host->name);
	a->epoch = epoch;
	a->have = true;
	if (!a->guest && env->host->guest_netns) {
		r = guest_open(env->host->guest_netns, &a->guest);
		if (r < 0)
			log_error(
			    "policy: the guest's namespace %s: %s; its flows' programs cannot be "
			    "known",
			    env->host->guest_netns, strerror(-r));
	}
	struct dp_steer s[2];
	size_t n = 0;
	for (int dir = 0; dir < 2; dir++) {
		if (!needs[dir])
			continue;
		r = open_queue(a, dir);
		if (r < 0)
			return error_set(ret_error, r, "the packet queue %d: %s", dir,
			                 strerror(-r));
		s[n++] = (struct dp_steer){
		    .addr = {a->self->guest_addr},
		    .reply = dir == POLICY_QUEUE_IN,
		    .unless_ct_mark = policy_epoch_mark(epoch),
		    .queue = (uint16_t)dir,
		};
	}
	return steer(a, s, n, ret_error);
}

json_t *policy_agent_status(const struct policy_agent *a)
{
	if (!a)
		return NULL;
	return json_pack("{s:b, s:b, s:I, s:I, s:I, s:I}", "outbound",
	                 a->n_steer && !a->steer[0].reply, "inbound",
	                 a->n_steer && a->steer[a->n_steer - 1].reply, "judged",
	                 (json_int_t)a->judged, "attributed", (json_int_t)a->attributed, "unknown",
	                 (json_int_t)a->unknown, "denied", (json_int_t)a->denied);
}

static void finish(struct policy_agent *a)
{
	for (int dir = 0; dir < 2; dir++)
		dp_queue_close(a->queue[dir]);
	void (*done)(void *) = a->done;
	void *arg = a->done_arg;
	free(a);
	done(arg);
}

static void closed(uv_handle_t *h)
{
	struct policy_agent *a = h->data;
	if (--a->closing == 0)
		finish(a);
}

void policy_agent_close(struct policy_agent *a, void (*done)(void *arg), void *arg)
{
	if (!a) {
		done(arg);
		return;
	}
	char *error = NULL;
	if (a->n_steer && steer(a, NULL, 0, &error) < 0)
		log_warn("policy: %s", error);
	free(error);
	forget(a);
	guest_close(a->guest);
	a->done = done;
	a->done_arg = arg;
	for (int dir = 0; dir < 2; dir++)
		if (a->polling[dir]) {
			a->closing++;
			uv_close((uv_handle_t *)&a->poll[dir], closed);
		}
	if (a->closing == 0)
		finish(a);
}
