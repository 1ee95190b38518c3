/* The controller's private state, shared by the files of src/switch that
 * implement switch.h (not part of its interface; include it only inside
 * src/switch): one struct swc per agent, one struct sw per configured
 * switch, and the functions each file offers the others.
 *
 *   switch.c     open/close, connections, mastership (role requests),
 *                services, the leadership tick
 *   reconcile.c  desired against installed: flow reads, flow-mods, groups
 *   topology.c   LLDP probes and announcements, links and locations
 *   stats.c      ports (description, status) and statistics
 *   fiat.c       the failure detector (recovery by fiat)
 *   requests.c   switches, switch.local, topology, flows
 *   hosts.c      hosts.list, hosts.admit, hosts.revoke (self-contained)
 *   bench.c      switch.bench (only with -Dbench_hooks=true) */
#pragma once

#include "claim.h"
#include "conn.h"
#include "lib/log.h"
#include "lldp.h"
#include "switch.h"

#define SW_PEER_TIMEOUT_MS 1000
#define SW_MAX_SEEN        256

/* OpenFlow error types and codes the controller tells apart (spec 7.4.4). */
#define OFPET_BAD_REQUEST         1
#define OFPBRC_IS_SLAVE           10
#define OFPET_ROLE_REQUEST_FAILED 11
#define OFPRRFC_STALE             0
/* A refused claim or write is logged once per switch per minute. */
#define SW_REFUSAL_LOG_MS      60000
#define OFPET_GROUP_MOD_FAILED 6
#define OFPGMFC_GROUP_EXISTS   0

enum role {
	ROLE_NONE, /* not asked yet, or refused */
	ROLE_SLAVE,
	ROLE_MASTER,
};

struct port {
	struct of13_port desc;
	uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets;
	uint64_t stats_ms; /* when the counters above were read */
	double rx_bps, tx_bps;
	uint64_t down_since_ms; /* 0 while up */
	/* The tokens of the master's probes out of this port (topology.c):
	 * each port its own, so that a machine on one port, which hears
	 * that port's probes, cannot name another port in a forged one. */
	struct lldp_tokens probe_tokens;
};

/* A group as this agent last sent it to a switch (reconcile.c). */
struct sent_group {
	uint32_t id;
	uint8_t *bytes;
	size_t len;
};

struct sw {
	struct swc *ctl;
	unsigned index; /* 1-based, in configuration order */
	struct of_conn *conn;
	bool up;
	uint64_t dpid;
	/* Mastership (switch.c). */
	enum role role;           /* what the switch confirmed, or learnt it made us */
	enum role role_want;      /* the role of the claim under way */
	uint64_t role_term;       /* sw_generation_id() of the last claim */
	bool role_asked;          /* a claim or a query is under way */
	bool query_after_refusal; /* the query under way follows a stale refusal */
	uint64_t refused_term;    /* the switch refused our role in this term */
	uint64_t claim_ids[2];    /* the ids to claim in turn (claim.h) */
	size_t n_claims, claim_at;
	uint64_t seen_id; /* the highest generation id the switch has seen */
	bool seen_known;
	unsigned backoff_ms;    /* the wait before the next claim after trouble */
	uint64_t next_claim_ms; /* mono_ms() before which no claim goes */
	uint64_t role_since_ms; /* mono_ms() when the switch confirmed the role */
	unsigned deposals;      /* times another controller took the switch */
	struct log_ratelimit refusal_log, claim_log, down_log, group_log;
	struct port *ports; /* as many as the switch has */
	unsigned n_ports;
	size_t cap_ports;
	/* Flows read back from the switch: ETTM's (by cookie), and a count of
	 * all of them; groups. */
	struct sw_flows installed, dump;
	bool installed_valid, dumping;
	unsigned n_flows, n_flows_dump, n_groups, n_groups_dump;
	/* Reconciliation, while master. */
	bool reconciling, dirty;
	uint64_t reconciled_ms;
	uint64_t reconciled_term; /* the last term this agent reconciled the switch as master */
	unsigned flow_mods, refused;
	uint64_t reconcile_started_ns;
	struct sent_group *groups_sent;
	size_t n_groups_sent, cap_groups_sent;
	/* `flows` requests waiting for the read under way (requests.c). */
	struct flow_waiter *flow_waiters;
};

/* Soft state the master keeps for links and locations: when each was last
 * seen (link keys are dpid/port; location keys host names). */
struct seen {
	uint64_t dpid;
	uint32_t port;
	uint64_t ms;
};

/* The rate limit of the warnings about one host's refused announcements
 * (topology.c). */
struct refused_host {
	char host[32];
	struct log_ratelimit log;
};

/* A service registered with sw_set_service(). */
struct sw_service_ref {
	const struct sw_service *svc;
	void *data;
};

struct swc {
	uv_loop_t *loop;
	struct store *store;
	struct store_subscription *subs[4]; /* the tables it follows */
	struct sw_options o;
	struct sw_self self;
	uint8_t mac[6];
	int raw_fd; /* LLDP on the uplink: announcements out, probes in */
	int ifindex;
	uv_poll_t lldp_in;    /* on raw_fd, while raw_fd >= 0 */
	uint64_t heard_token; /* of the last probe the uplink heard; 0: none */
	struct sw sw[SW_MAX_SWITCHES];
	uv_timer_t tick, lldp, stats, kick;
	bool leader;
	uint64_t term; /* sw_generation_id() of the generation and Raft term */
	struct seen links_seen[SW_MAX_SEEN];
	unsigned n_links_seen;
	unsigned topo_inflight;
	/* One per host name whose announcements were refused; the last slot
	 * is shared once the table is full. */
	struct refused_host refused_hosts[SW_MAX_SEEN];
	unsigned n_refused_hosts;
	/* The failure detector (fiat.c). */
	char fiat_state[24];
	char fiat_reason[256];
	bool fiat_running;
	uint64_t fiat_last_ms;
	/* In registration order; grown to fit. */
	struct sw_service_ref *svcs;
	size_t n_svcs, cap_svcs;
	bool closing;
	int open_handles;
	void (*closed)(void *arg); /* sw_close()'s completion */
	void *closed_arg;
};

/* ---- switch.c ---- */

const char *sw_role_name(enum role r);
/* The connected switch @dpid, or NULL. */
struct sw *sw_find_dpid(struct swc *c, uint64_t dpid);
/* "s1", "s2"... or a connected switch's datapath id in hex; NULL if none. */
struct sw *sw_find_name(struct swc *c, const char *name);
/* Asks @s for this agent's role and the generation id it has seen
 * (ROLE_REQUEST NOCHANGE): a master that was deposed learns it here even
 * when it has nothing to write. Once per statistics round. */
void sw_probe_role(struct sw *s);
/* Sends @fm to @s and counts it. */
void sw_send_flow_mod(struct sw *s, const struct of13_flow_mod *fm);
/* The datapath id as 16 hex digits in @buf. */
char *sw_dpid_str(uint64_t dpid, char buf[17]);

/* ---- reconcile.c ---- */

/* The switch's flows and the services' flows and groups (@groups may be
 * NULL); the caller frees both. Returns 0 or -ENOMEM. */
int reconcile_desired(struct swc *c, struct sw *s, struct sw_flows *ret, struct sw_groups *groups);
/* Reads @s's flows back and makes them the desired set, once the switch has
 * confirmed this agent as master for the current term. */
void reconcile_start(struct sw *s);
/* A flow was removed behind the master's back: reconcile_start() as
 * leader; without leadership (the store lost its leader, and no other
 * master claimed the switch), only the start-up flows are put back. */
void reconcile_repair(struct sw *s);
/* reconcile_start() on every switch, soon, and once for a burst of changes. */
void reconcile_kick(struct swc *c);
/* Reads @s's flows back (the periodic read; a repair when they drifted). */
void reconcile_read_flows(struct sw *s);
/* Forgets which groups were sent to @s (a new role, a new connection). */
void reconcile_forget_groups(struct sw *s);

/* ---- requests.c ---- */

/* Answers the `flows` requests waiting for @s's flows: with what was just
 * read, or with @error when the read failed. */
void requests_flows_read(struct sw *s, const char *error);

/* ---- topology.c ---- */

/* Opens the raw socket that announces this AEE on self.uplink_if and hears
 * the master's probes there, and learns its MAC; none when uplink_if is
 * empty. 0 or a negative errno with *ret_error. */
int topology_open(struct swc *c, char **ret_error);
/* Closes that socket; with @done, after its poll handle closed (@done
 * then runs on the handle), else at once (nothing was polling yet). */
void topology_close(struct swc *c, uv_close_cb done);
/* This agent became leader: links are as fresh as the store says. */
void topology_leading(struct swc *c);
/* A packet-in from @s: LLDP for the topology, anything else to the services. */
void topology_packet_in(struct sw *s, const uint8_t *msg, size_t len);
/* The port @port of @s went down or away: its link expires now. */
void topology_port_down(struct sw *s, uint32_t port);
/* The LLDP timer: announce, and as leader probe and expire links. */
void topology_lldp_cb(uv_timer_t *t);

/* ---- stats.c ---- */

struct port *stats_find_port(struct sw *s, uint32_t no);
/* Asks @s for its port descriptions (at connection). */
void stats_request_ports(struct sw *s);
/* An OFPT_PORT_STATUS message from @s. */
void stats_port_status(struct sw *s, const uint8_t *msg, size_t len);
/* The statistics timer: port and group counters, and the flows read back. */
void stats_timer_cb(uv_timer_t *t);

/* ---- fiat.c ---- */

/* Once per tick: whether the survivors of a power loss recover by fiat. */
void fiat_check(struct swc *c);

#ifdef ETTM_BENCH_HOOKS
/* ---- bench.c ---- */

/* "switch.bench": {switch, count, keep}. CTL_DEFERRED or a negative errno
 * with *ret_error. */
struct ctl_client;
struct ctl_request;
int bench_handle_request(struct swc *c, struct ctl_client *client, const struct ctl_request *req,
                         char **ret_error);
#endif
