/* The agent's judge (policy-internal.h, docs/policy.md "Programs and
 * users"): a rule that asks which program or user at this end opened a
 * flow, or serves it, cannot be told by nftables, because a packet that
 * crosses from the guest's namespace into the AEE loses its socket. So the
 * first packet of such a flow is queued to the agent, which asks the
 * guest's kernel whose socket the flow's addresses and ports are
 * (sock_diag: its user, and its inode), finds the process holding that
 * socket (/proc), and judges the flow as policy_judge_end() does. Its
 * verdict: a drop, or an accept with policy_agent_mark(), at which nftables
 * stamps the flow with the epoch's ct mark, so the flow's later packets
 * stay in the kernel. A new epoch judges every established flow again.
 *
 * The agent also keeps the policy log (docs/policy.md, "The log"): the
 * flows nftables logs (nflog group POLICY_LOG_GROUP) and those it judges
 * itself that are denied or logged, each with the program and user of the
 * guest's socket where they can be known. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "datapath/datapath.h"
#include "datapath/queue.h"
#include "guest/guest.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/log.h"
#include "policy-internal.h"
#include "services/service.h"

#define USERS_KEPT   16
#define LOG_KEPT     512
#define LOG_RULE_MAX 160

enum { POLL_LOG = 2 };

struct log_entry {
	uint64_t seq, time_ms, epoch;
	unsigned line; /* 0: a default */
	char action;   /* a allowed, d denied, w would be denied (audit) */
	bool outbound;
	bool by_agent;
	struct dp_queued pkt;
	struct policy_who who;        /* the guest's program and user; "": unknown */
	char rule[LOG_RULE_MAX];      /* as written, cut to fit; "": not known */
	char device[POLICY_WORD_MAX]; /* the device whose end it was; "": the guest's */
};

struct agent_epoch {
	uint64_t epoch;
	bool has_policy; /* false: no policy, every flow passes */
	struct policy policy;
	int minute; /* of the week: the windows are judged as then */
	unsigned slot;
};

/* Two rules a direction for the active epoch, and a skip and two for
 * each other one. */
#define STEER_MAX (2 + 3 * (POLICY_INSTALLED_MAX - 1))

struct policy_agent {
	const struct svc_env *env;
	struct guest *guest; /* sock_diag in the guest's namespace */
	struct dp_queue *queue[2];
	struct dp_log *log;
	uv_poll_t poll[3]; /* the two queues, the log */
	bool polling[3];
	/* The log: a ring of the last LOG_KEPT entries, numbered from 1. */
	struct log_entry entries[LOG_KEPT];
	uint64_t last_seq;
	/* What it judges by, while a direction is steered: the epochs
	 * installed, the active one first (a packet from the LAN stamped with
	 * another is judged under that one). */
	bool have;
	size_t n_epochs;
	struct agent_epoch epochs[POLICY_INSTALLED_MAX];
	struct net_view view;
	const struct policy_host *self;
	unsigned uplink; /* its interface index: where stamped packets come in */
	/* What is steered now, to change nothing when nothing changed. */
	size_t n_steer;
	struct dp_steer steer[STEER_MAX];
	bool steered_once;
	struct guest_hint last; /* where the last flow's socket was */
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
	if (guest_socket_program(a->guest, o.inode, &a->last, path, sizeof(path)) == 0 &&
	    strlen(path) < POLICY_WORD_MAX)
		snprintf(ret->app, POLICY_WORD_MAX, "%s", path);
}

static void record(struct policy_agent *a, uint64_t epoch, unsigned line, char action,
                   bool outbound, bool by_agent, const struct dp_queued *pkt,
                   const struct policy_who *who, const char *device)
{
	struct log_entry *e = &a->entries[a->last_seq % LOG_KEPT];
	*e = (struct log_entry){
	    .seq = ++a->last_seq,
	    .time_ms = wall_ms(),
	    .epoch = epoch,
	    .line = line,
	    .action = action,
	    .outbound = outbound,
	    .by_agent = by_agent,
	    .pkt = *pkt,
	    .who = *who,
	};
	e->pkt.id = 0;
	snprintf(e->device, sizeof(e->device), "%s", device);
	/* The rule's words while its epoch is the one this agent has: a
	 * packet nftables logged just before a change may carry the last. */
	const char *text = NULL;
	char deflt[48];
	const struct policy *p = NULL;
	for (size_t i = 0; a->have && i < a->n_epochs; i++)
		if (a->epochs[i].epoch == epoch && a->epochs[i].has_policy)
			p = &a->epochs[i].policy;
	for (size_t i = 0; p && line && i < p->n_rules && !text; i++)
		if (p->rules[i].pos.line == line)
			text = p->rules[i].text;
	if (p && !line) {
		bool allow = outbound ? p->outbound_allow : p->inbound_allow;
		/* A default that allows, yet denied: the flow was between two
		 * managed hosts, which must pass both defaults. */
		if (allow && action != 'a')
			snprintf(deflt, sizeof(deflt), "defaults outbound %s, inbound %s",
			         p->outbound_allow ? "allow" : "deny",
			         p->inbound_allow ? "allow" : "deny");
		else
			snprintf(deflt, sizeof(deflt), "default %s %s",
			         outbound ? "outbound" : "inbound", allow ? "allow" : "deny");
		text = deflt;
	}
	if (text && strlen(text) >= sizeof(e->rule))
		snprintf(e->rule, sizeof(e->rule), "%.*s...", (int)sizeof(e->rule) - 4, text);
	else if (text)
		snprintf(e->rule, sizeof(e->rule), "%s", text);
}

/* A packet nftables logged, its prefix POLICY_LOG_PREFIX "EPOCH LINE A D". */
static void on_logged(void *userdata, const char *prefix, const struct dp_queued *pkt)
{
	struct policy_agent *a = userdata;
	unsigned long long epoch;
	unsigned line;
	char action, dir, device[POLICY_WORD_MAX] = "";
	size_t n = strlen(POLICY_LOG_PREFIX);
	int got =
	    strncmp(prefix, POLICY_LOG_PREFIX, n) != 0
	        ? 0
	        : sscanf(prefix + n, "%llu %u %c %c %31s", &epoch, &line, &action, &dir, device);
	if (got < 4 || !a->self)
		return;
	/* A device's end: it runs no programs the agent could name. */
	struct policy_who who = {0};
	if (!device[0])
		attribute(a, pkt, pkt->src.s_addr == a->self->guest_addr, &who);
	record(a, epoch, line, action, dir == 'o', false, pkt, &who, device);
}

/* The epoch a packet is judged under, as the table judges it: the one it
 * is stamped with when it comes in from the LAN (by the uplink, from an
 * address of the LAN) stamped with an installed one but the active one,
 * else the active one. */
static const struct agent_epoch *epoch_of(const struct policy_agent *a, const struct dp_queued *pkt)
{
	const struct policy_net *net = &a->view.net;
	if (a->uplink && pkt->indev == a->uplink &&
	    (pkt->src.s_addr & net->lan_mask) == (net->lan_addr & net->lan_mask))
		for (size_t i = 1; i < a->n_epochs; i++)
			if (policy_epoch_stamp(a->epochs[i].epoch) == (unsigned)(pkt->tos >> 2 & 3))
				return &a->epochs[i];
	return &a->epochs[0];
}

static void judge(struct policy_agent *a, int dir, const struct dp_queued *pkt)
{
	const struct agent_epoch *ep = a->have ? epoch_of(a, pkt) : NULL;
	if (ep && !ep->has_policy) {
		/* No policy under that epoch: it passes. */
		dp_queue_verdict(a->queue[dir], pkt->id, true, policy_agent_mark(ep->epoch));
		return;
	}
	if (!a->have) {
		/* Queued before the policy went: the table judges it. */
		dp_queue_verdict(a->queue[dir], pkt->id, true, 0);
		return;
	}
	bool outbound = dir == POLICY_QUEUE_OUT;
	bool from_guest = pkt->src.s_addr == a->self->guest_addr;
	struct in_addr far = from_guest ? pkt->dst : pkt->src;
	uint16_t far_port = from_guest ? pkt->dport : pkt->sport;
	uint16_t guest_port = from_guest ? pkt->sport : pkt->dport;
	const struct policy *p = &ep->policy;
	struct policy_flow flow = {.port = {.proto = pkt->proto}, .minute = ep->minute};
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
	struct policy_verdict v = policy_judge_end(p, &a->view.net, &flow, outbound);
	a->judged++;
	if (who.app[0])
		a->attributed++;
	else
		a->unknown++;
	if (!v.allow)
		a->denied++;
	bool log = !v.allow || (v.rule >= 0 ? p->rules[v.rule].log
	                        : outbound  ? p->outbound_log
	                                    : p->inbound_log);
	if (log)
		record(a, ep->epoch, v.rule >= 0 ? p->rules[v.rule].pos.line : 0,
		       v.allow    ? 'a'
		       : p->audit ? 'w'
		                  : 'd',
		       outbound, true, pkt, &who, "");
	bool pass = v.allow || p->audit;
	int r =
	    dp_queue_verdict(a->queue[dir], pkt->id, pass, pass ? policy_agent_mark(ep->epoch) : 0);
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
	if (status < 0)
		return;
	int r;
	if (h == &a->poll[POLL_LOG])
		r = dp_log_read(a->log, on_logged, a);
	else if (h == &a->poll[POLICY_QUEUE_OUT])
		r = dp_queue_read(a->queue[POLICY_QUEUE_OUT], on_packet_out, a);
	else
		r = dp_queue_read(a->queue[POLICY_QUEUE_IN], on_packet_in, a);
	if (r < 0)
		log_warn("policy: reading the %s: %s", h == &a->poll[POLL_LOG] ? "log" : "queue",
		         strerror(-r));
}

static int start_poll(struct policy_agent *a, int i, int fd)
{
	int r = uv_poll_init(a->env->loop, &a->poll[i], fd);
	if (r < 0)
		return r;
	a->poll[i].data = a;
	a->polling[i] = true;
	return uv_poll_start(&a->poll[i], UV_READABLE, on_readable);
}

static int open_queue(struct policy_agent *a, int dir)
{
	if (a->queue[dir])
		return 0;
	int r = dp_queue_open((uint16_t)dir, &a->queue[dir]);
	if (r == 0)
		r = start_poll(a, dir, dp_queue_fd(a->queue[dir]));
	return r;
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

/* A new agent: the guest's sockets, and the log. */
static int agent_new(const struct svc_env *env, struct policy_agent **ret)
{
	struct policy_agent *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->env = env;
	int r;
	if (env->host->guest_netns && (r = guest_open(env->host->guest_netns, &a->guest)) < 0)
		log_error(
		    "policy: the guest's namespace %s: %s; its flows' programs cannot be known",
		    env->host->guest_netns, strerror(-r));
	if ((r = dp_log_open(POLICY_LOG_GROUP, &a->log)) == 0)
		r = start_poll(a, POLL_LOG, dp_log_fd(a->log));
	if (r < 0)
		log_error("policy: the log (nflog group %d): %s; nothing is logged",
		          POLICY_LOG_GROUP, strerror(-r));
	*ret = a;
	return 0;
}

static void forget(struct policy_agent *a)
{
	if (!a->have)
		return;
	for (size_t i = 0; i < a->n_epochs; i++)
		if (a->epochs[i].has_policy)
			policy_free(&a->epochs[i].policy);
	a->n_epochs = 0;
	policy_view_free(&a->view);
	a->have = false;
	a->self = NULL;
}

static void free_epochs(struct agent_epoch *in, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (in[i].has_policy)
			policy_free(&in[i].policy);
}

/* The steering of @n epochs @in for @addr's flows, @needs as
 * policy_agent_update() finds them, into @s; returns how many. The other
 * epochs' stamped packets first: queued when that epoch asks for the
 * agent and the flow is not judged under it yet, else left to the table;
 * then the active epoch's. */
static size_t steering(const struct agent_epoch *in, size_t n, const bool (*needs)[2],
                       uint32_t addr, const struct policy_net *net, const char *uplink,
                       struct dp_steer s[STEER_MAX])
{
	memset(s, 0, STEER_MAX * sizeof(*s)); /* compared whole, padding and all */
	size_t k = 0;
	for (size_t i = n; i-- > 0;) {
		struct dp_steer base;
		memset(&base, 0, sizeof(base));
		base.addr.s_addr = addr;
		if (i > 0) {
			base.stamped = true;
			base.stamp = (uint8_t)policy_epoch_stamp(in[i].epoch);
			base.from.s_addr = net->lan_addr & net->lan_mask;
			base.from_len = (uint8_t)__builtin_popcount(net->lan_mask);
			snprintf(base.iif, sizeof(base.iif), "%s", uplink);
		}
		for (int dir = 0; dir < 2; dir++) {
			if (!needs[i][dir])
				continue;
			s[k] = base;
			s[k].reply = dir == POLICY_QUEUE_IN;
			s[k].unless_ct_mark = policy_epoch_mark(in[i].epoch, in[i].slot);
			s[k++].queue = (uint16_t)dir;
		}
		if (i > 0) {
			s[k] = base;
			s[k++].skip = true;
		}
	}
	return k;
}

/* Opens the queues @v steers to, and steers. */
static int steer_to_queues(struct policy_agent *a, const struct dp_steer *v, size_t n,
                           char **ret_error)
{
	for (size_t i = 0; i < n; i++) {
		int r = v[i].skip ? 0 : open_queue(a, v[i].queue);
		if (r < 0)
			return error_set(ret_error, r, "the packet queue %u: %s", v[i].queue,
			                 strerror(-r));
	}
	return steer(a, v, n, ret_error);
}

int policy_agent_update(struct policy_agent **pa, const struct svc_env *env,
                        const struct policy_epoch_text *texts, size_t n, time_t now,
                        bool before_table, char **ret_error)
{
	struct policy_agent *a = *pa;
	struct net_view v;
	struct agent_epoch in[POLICY_INSTALLED_MAX];
	size_t parsed = 0;
	int r = policy_view_build(env, &v);
	if (r < 0)
		return r;
	v.net.departed_hosts = true;
	const struct policy_host *self = policy_net_host(&v.net, env->host->name);
	/* needs[i][dir]: whether epoch i asks for programs or users at this
	 * end of that direction's flows. */
	bool needs[POLICY_INSTALLED_MAX][2] = {{false}}, needed = false;
	for (; r == 0 && parsed < n; parsed++) {
		struct agent_epoch *e = &in[parsed];
		*e = (struct agent_epoch){.epoch = texts[parsed].epoch};
		if (!texts[parsed].text)
			continue;
		if ((r = policy_parse(texts[parsed].text, "policy", &v.net, &e->policy, NULL)) < 0)
			break;
		e->has_policy = true;
		e->minute = policy_time_minute(&e->policy.time, now);
		e->slot = policy_time_slot(&e->policy.time, e->minute);
		for (int dir = 0; self && self->guest_addr && dir < 2; dir++)
			needed |= needs[parsed][dir] =
			    policy_needs_agent(&e->policy, &v.net, self, dir == POLICY_QUEUE_OUT);
	}
	if (n == 0)
		r = -ENOENT;
	const char *uplink = env->dp ? env->dp->cfg.uplink_if : "";
	struct dp_steer s[STEER_MAX];
	size_t k =
	    r == 0 && needed ? steering(in, n, needs, self->guest_addr, &v.net, uplink, s) : 0;
	if (r < 0 || before_table) {
		/* Before the table changes, the agent judges as the table does
		 * now (or leaves the packets to it): only the steering follows
		 * a policy that needs it. One that no longer needs it is
		 * unsteered once the table has changed. */
		free_epochs(in, parsed);
		policy_view_free(&v);
		if (r < 0) {
			if (!a || before_table)
				return 0;
			forget(a);
			return steer(a, NULL, 0, ret_error);
		}
		if (!needed)
			return 0;
		if (!a && (r = agent_new(env, &a)) < 0)
			return r;
		*pa = a;
		return steer_to_queues(a, s, k, ret_error);
	}
	if (!a && (r = agent_new(env, &a)) < 0) {
		free_epochs(in, parsed);
		policy_view_free(&v);
		return r;
	}
	*pa = a;
	forget(a);
	a->n_users = 0;
	memcpy(a->epochs, in, n * sizeof(in[0]));
	a->n_epochs = n;
	a->view = v;
	a->self = policy_net_host(&a->view.net, env->host->name);
	a->have = true;
	a->uplink = if_nametoindex(uplink);
	return steer_to_queues(a, s, k, ret_error);
}

/* Whether the active epoch's flows of a direction are steered. */
static bool steers(const struct policy_agent *a, bool reply)
{
	for (size_t i = 0; i < a->n_steer; i++)
		if (!a->steer[i].stamped && a->steer[i].reply == reply)
			return true;
	return false;
}

json_t *policy_agent_status(const struct policy_agent *a)
{
	if (!a)
		return NULL;
	return json_pack("{s:b, s:b, s:I, s:I, s:I, s:I}", "outbound", steers(a, false), "inbound",
	                 steers(a, true), "judged", (json_int_t)a->judged, "attributed",
	                 (json_int_t)a->attributed, "unknown", (json_int_t)a->unknown, "denied",
	                 (json_int_t)a->denied);
}

static const char *proto_name(uint8_t proto, char buf[8])
{
	if (proto == IPPROTO_TCP)
		return "tcp";
	if (proto == IPPROTO_UDP)
		return "udp";
	if (proto == IPPROTO_ICMP)
		return "icmp";
	snprintf(buf, 8, "%u", proto);
	return buf;
}

static json_t *entry_json(const struct policy_agent *a, const struct log_entry *e)
{
	char from[32], to[32], pbuf[8];
	const char *rule = e->rule[0] ? e->rule : NULL;
	snprintf(from, sizeof(from), "%s:%u", inet_ntoa(e->pkt.src), e->pkt.sport);
	snprintf(to, sizeof(to), "%s:%u", inet_ntoa(e->pkt.dst), e->pkt.dport);
	return json_pack(
	    "{s:I, s:I, s:s, s:s, s:I, s:I, s:s?, s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s}", "seq",
	    (json_int_t)e->seq, "time_ms", (json_int_t)e->time_ms, "host",
	    e->device[0] ? e->device : a->env->host->name, "aee", a->env->host->name, "epoch",
	    (json_int_t)e->epoch, "line", (json_int_t)e->line, "rule", rule, "action",
	    e->action == 'a'   ? "allowed"
	    : e->action == 'w' ? "would deny"
	                       : "denied",
	    "direction", e->outbound ? "outbound" : "inbound", "proto",
	    proto_name(e->pkt.proto, pbuf), "from", from, "to", to, "app",
	    e->who.app[0] ? e->who.app : NULL, "user", e->who.user[0] ? e->who.user : NULL,
	    "judged_by", e->by_agent ? "agent" : "nftables");
}

json_t *policy_agent_log(const struct policy_agent *a, uint64_t since, size_t limit)
{
	json_t *v = json_array();
	if (!a || !v)
		return v;
	uint64_t first = a->last_seq > LOG_KEPT ? a->last_seq - LOG_KEPT + 1 : 1;
	if (since >= first)
		first = since + 1;
	if (limit && a->last_seq >= first && a->last_seq - first + 1 > limit)
		first = a->last_seq - limit + 1;
	for (uint64_t seq = first; seq <= a->last_seq; seq++)
		json_array_append_new(v, entry_json(a, &a->entries[(seq - 1) % LOG_KEPT]));
	return v;
}

static void finish(struct policy_agent *a)
{
	for (int dir = 0; dir < 2; dir++)
		dp_queue_close(a->queue[dir]);
	dp_log_close(a->log);
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
	for (int i = 0; i < 3; i++)
		if (a->polling[i]) {
			a->closing++;
			uv_close((uv_handle_t *)&a->poll[i], closed);
		}
	if (a->closing == 0)
		finish(a);
}
