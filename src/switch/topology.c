/* Topology (LLDP, IEEE 802.1AB, frames in lldp.c): as master, probes out
 * of every switch port and the packet-ins they come back as, which give
 * the switch-to-switch links; every agent's announcement of its own AEE on
 * its uplink, signed with its TLS key and echoing the token of the probe
 * its uplink heard, which gives each host's location;
 * the soft state of when each link was last seen and of each port's probe
 * tokens, and the store commands that record links and locations or
 * expire a link. Packet-ins that are not LLDP go to the services. */
#include "switch-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lldp.h"
#include "lib/mac.h"
#include "store/store.h"
#include "switch/tables.h"
#include "trust/tables.h"

/* A refused announcement is logged once a minute per host. */
#define REFUSED_LOG_MS 60000

static void packet_out(struct sw *s, uint32_t port, const uint8_t *frame, size_t len)
{
	struct of13_packet_out po = {
	    .buffer_id = OF13_NO_BUFFER,
	    .in_port = OF13_PORT_CONTROLLER,
	    .n_actions = 1,
	    .actions = {{.type = OF13_ACTION_OUTPUT, .output = {.port = port}}},
	    .data = frame,
	    .data_len = len,
	};
	struct obuf b = {0};
	of13_packet_out_encode(&b, of_conn_xid(s->conn), &po);
	of_conn_send(s->conn, &b, NULL, NULL);
}

int sw_packet_out(struct swc *c, uint64_t dpid, uint32_t port, const uint8_t *frame, size_t len)
{
	struct sw *s = sw_find_dpid(c, dpid);
	if (!s || s->role != ROLE_MASTER || !c->leader)
		return -ENOTCONN;
	packet_out(s, port, frame, len);
	return 0;
}

/* A fresh random token, never 0 (which no probe is accepted with). */
static uint64_t fresh_token(void)
{
	uint64_t t = 0;
	while (t == 0)
		if (getrandom(&t, sizeof(t), 0) != sizeof(t))
			return 0;
	return t;
}

/* One probe round: each port gets a new token, and its probe carries it,
 * so that only a probe this master sent this round or the last comes back
 * as a link (topology_packet_in()). */
static void lldp_probe_all(struct swc *c)
{
	for (unsigned i = 0; i < c->o.n_switches; i++) {
		struct sw *s = &c->sw[i];
		if (!s->up || s->role != ROLE_MASTER)
			continue;
		for (unsigned k = 0; k < s->n_ports; k++) {
			const struct of13_port *p = &s->ports[k].desc;
			if (p->port_no > OF13_PORT_MAX || (p->state & OF13_PORT_STATE_LINK_DOWN))
				continue;
			uint64_t token = fresh_token();
			if (!token)
				continue; /* no randomness: no probe that anyone could forge */
			lldp_tokens_roll(&s->ports[k].probe_tokens, token);
			struct lldp_info info = {.kind = LLDP_PROBE,
			                         .dpid = s->dpid,
			                         .port = p->port_no,
			                         .token = token};
			memcpy(info.src_mac, p->hw_addr, 6);
			uint8_t frame[LLDP_FRAME_MAX];
			size_t len = lldp_encode(frame, sizeof(frame), &info);
			if (len)
				packet_out(s, p->port_no, frame, len);
		}
	}
}

static void topo_done(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct swc *c = userdata;
	c->topo_inflight--;
	if (status < 0)
		log_debug("switches: topology update not committed: %s", error);
	else if (!res->applied)
		log_warn("switches: topology update rejected: %s", res->reason);
}

static void propose_topo(struct swc *c, const struct store_cmd *cmd)
{
	/* One change at a time: the next probe round proposes the rest
	 * against the state this one leaves. */
	if (c->topo_inflight)
		return;
	if (store_propose(c->store, cmd, topo_done, c) == 0)
		c->topo_inflight++;
}

static struct seen *link_seen(struct swc *c, uint64_t dpid, uint32_t port, bool add)
{
	for (unsigned i = 0; i < c->n_links_seen; i++)
		if (c->links_seen[i].dpid == dpid && c->links_seen[i].port == port)
			return &c->links_seen[i];
	if (!add || c->n_links_seen == SW_MAX_SEEN)
		return NULL;
	c->links_seen[c->n_links_seen] = (struct seen){dpid, port, 0};
	return &c->links_seen[c->n_links_seen++];
}

static const struct switch_link *stored_link(struct swc *c, uint64_t dpid, uint32_t port)
{
	const struct store_state *st = store_state(c->store);
	for (size_t i = 0; i < store_count(st, SWITCH_LINKS); i++) {
		const struct switch_link *l = store_row(st, SWITCH_LINKS, i);
		if (l->dpid == dpid && l->port == port)
			return l;
	}
	return NULL;
}

static void saw_link(struct swc *c, uint64_t dpid, uint32_t port, uint64_t peer_dpid,
                     uint32_t peer_port)
{
	struct seen *seen = link_seen(c, dpid, port, true);
	if (seen)
		seen->ms = uv_now(c->loop);
	const struct switch_link *l = stored_link(c, dpid, port);
	if (l && l->peer_dpid == peer_dpid && l->peer_port == peer_port)
		return;
	struct store_cmd cmd = {.table = SWITCH_LINKS, .op = STORE_PUT, .time_ms = wall_ms()};
	(*STORE_CMD_ROW(&cmd, struct switch_link)) =
	    (struct switch_link){dpid, port, peer_dpid, peer_port, cmd.time_ms};
	log_info("switches: link %016" PRIx64 "/%u -> %016" PRIx64 "/%u", dpid, port, peer_dpid,
	         peer_port);
	propose_topo(c, &cmd);
}

static struct log_ratelimit *refusal_log(struct swc *c, const char *host)
{
	for (unsigned i = 0; i < c->n_refused_hosts; i++)
		if (strcmp(c->refused_hosts[i].host, host) == 0)
			return &c->refused_hosts[i].log;
	if (c->n_refused_hosts == SW_MAX_SEEN)
		return &c->refused_hosts[SW_MAX_SEEN - 1].log;
	struct refused_host *r = &c->refused_hosts[c->n_refused_hosts++];
	snprintf(r->host, sizeof(r->host), "%s", host);
	r->log = (struct log_ratelimit){0};
	return &r->log;
}

/* A host whose admission names a TLS key is heard only from that key, and
 * only in an answer to a probe of the port it came in on (the token of
 * this round's or the last round's probe out of that port): a stranger on
 * another port announcing the host's name, or replaying an announcement
 * the host signed, would otherwise move its location, and with it the
 * host's traffic. A host with no admission, or one admitted without a key
 * (no attestation, or store.tls off), has no key to check against, and is
 * learnt as it announces itself: a new host must be found before it can
 * be admitted (docs/switch.md, "Topology"). @mac is info->src_mac, for the
 * log. */
static bool announcement_trusted(struct sw *s, const struct lldp_info *info, uint32_t port,
                                 const char *mac)
{
	struct swc *c = s->ctl;
	const struct trust_admission *a = trust_admission_find(store_state(c->store), info->host);
	if (!a || !a->tls_fp[0])
		return true;
	int r = lldp_verify(info, a->tls_fp, wall_ms());
	const char *why = lldp_verify_why(r);
	const struct port *p = stats_find_port(s, port);
	if (r == 0 && !(p && lldp_tokens_match(&p->probe_tokens, info->token))) {
		r = -ESTALE;
		why = info->token ? "it answers no recent probe of this port (a replay, or from "
		                    "another port)"
		                  : "it answers no probe (none heard yet)";
	}
	if (r == 0)
		return true;
	log_warn_limited(refusal_log(c, info->host), mono_ms(), REFUSED_LOG_MS,
	                 "switches: announcement of %s at %016" PRIx64 "/%u (%s) ignored: %s",
	                 info->host, s->dpid, port, mac, why);
	return false;
}

static void saw_host(struct sw *s, const struct lldp_info *info, uint32_t port)
{
	struct swc *c = s->ctl;
	uint64_t dpid = s->dpid;
	char mac[STORE_MAC_MAX];
	mac_format(info->src_mac, mac);
	/* What the store holds already changes nothing, whoever sent it: most
	 * announcements, and those of a host that answered the last master's
	 * probes until this one's first round. */
	const struct switch_location *l = switch_location_find(store_state(c->store), info->host);
	if (l && l->dpid == dpid && l->port == port && strcmp(l->mac, mac) == 0 &&
	    l->control_addr == info->control_addr && l->guest_addr == info->guest_addr)
		return;
	if (!announcement_trusted(s, info, port, mac))
		return;
	struct store_cmd cmd = {.table = SWITCH_LOCATIONS, .op = STORE_PUT, .time_ms = wall_ms()};
	struct switch_location *n = STORE_CMD_ROW(&cmd, struct switch_location);
	snprintf(n->host, sizeof(n->host), "%s", info->host);
	snprintf(n->mac, sizeof(n->mac), "%s", mac);
	n->dpid = dpid;
	n->port = port;
	n->control_addr = info->control_addr;
	n->guest_addr = info->guest_addr;
	n->seen_ms = cmd.time_ms;
	log_info("switches: host %s at %016" PRIx64 "/%u (%s)", info->host, dpid, port, mac);
	propose_topo(c, &cmd);
}

void topology_packet_in(struct sw *s, const uint8_t *msg, size_t len)
{
	struct swc *c = s->ctl;
	struct of13_packet_in pi;
	uint64_t in_port;
	struct lldp_info info;
	enum of13_err e = of13_packet_in_decode(msg, len, &pi);
	if (e) {
		log_debug("switch %u: packet_in: %s", s->index, of13_err_string(e));
		return;
	}
	if (!of13_match_get(&pi.match, OF13_OXM_IN_PORT, &in_port, NULL))
		return;
	if (!c->leader || s->role != ROLE_MASTER)
		return;
	if (lldp_decode(pi.data, pi.data_len, &info) < 0) {
		for (size_t i = 0; i < c->n_svcs; i++)
			if (c->svcs[i].svc->packet_in)
				c->svcs[i].svc->packet_in(c->svcs[i].data, s->dpid,
				                          (uint32_t)in_port, pi.data, pi.data_len);
		return;
	}
	if (info.kind == LLDP_PROBE) {
		/* The probe names the port it was sent out of; only this master
		 * knows that port's tokens. */
		struct sw *from = info.dpid != s->dpid ? sw_find_dpid(c, info.dpid) : NULL;
		struct port *p = from ? stats_find_port(from, info.port) : NULL;
		if (p && lldp_tokens_match(&p->probe_tokens, info.token))
			saw_link(c, info.dpid, info.port, s->dpid, (uint32_t)in_port);
		else if (from)
			log_debug("switches: probe naming %016" PRIx64 "/%u on %016" PRIx64
			          "/%u: not this round's",
			          info.dpid, info.port, s->dpid, (uint32_t)in_port);
	} else {
		saw_host(s, &info, (uint32_t)in_port);
	}
}

/* Links not seen for link-timeout are gone. */
static void expire_links(struct swc *c)
{
	const struct store_state *st = store_state(c->store);
	uint64_t now = uv_now(c->loop);
	for (size_t i = 0; i < store_count(st, SWITCH_LINKS); i++) {
		const struct switch_link *l = store_row(st, SWITCH_LINKS, i);
		struct seen *seen = link_seen(c, l->dpid, l->port, true);
		if (!seen)
			continue;
		if (!seen->ms)
			seen->ms = now;
		if (now - seen->ms < c->o.link_timeout_ms)
			continue;
		struct store_cmd cmd = {
		    .table = SWITCH_LINKS, .op = STORE_DELETE, .time_ms = wall_ms()};
		(*STORE_CMD_ROW(&cmd, struct switch_link)) = *l;
		log_warn("switches: link %016" PRIx64 "/%u -> %016" PRIx64 "/%u is gone (%u ms)",
		         l->dpid, l->port, l->peer_dpid, l->peer_port, c->o.link_timeout_ms);
		propose_topo(c, &cmd);
		return;
	}
}

/* The AEE's own announcement, out of its uplink: every LLDP interval, and
 * at once when the uplink hears a new probe, whose token it echoes. */
static void announce(struct swc *c)
{
	if (c->raw_fd < 0)
		return;
	struct lldp_info info = {.kind = LLDP_ANNOUNCE,
	                         .control_addr = c->self.control_addr,
	                         .guest_addr = c->self.guest_addr,
	                         .token = c->heard_token};
	memcpy(info.src_mac, c->mac, 6);
	snprintf(info.host, sizeof(info.host), "%s", c->self.name);
	/* Without an identity (plaintext peer API), the announcement goes
	 * unsigned, and only a master that knows no key for this host takes
	 * it. */
	const struct ctl_tls *tls = ctl_tls_default();
	int r = tls ? lldp_sign(&info, tls, wall_ms()) : 0;
	if (r < 0)
		log_debug("switches: announcement not signed: %s", strerror(-r));
	uint8_t frame[LLDP_FRAME_MAX];
	size_t len = lldp_encode(frame, sizeof(frame), &info);
	struct sockaddr_ll sll = {
	    .sll_family = AF_PACKET, .sll_ifindex = c->ifindex, .sll_halen = 6};
	memcpy(sll.sll_addr, frame, 6);
	if (sendto(c->raw_fd, frame, len, 0, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		log_debug("switches: announcement on %s: %s", c->self.uplink_if, strerror(errno));
}

/* Frames on the uplink's LLDP socket: the master's probes out of this
 * host's port (the switches send LLDP only to the controller, so nothing
 * else reaches it there), and this agent's own announcements going out. */
static void lldp_in_cb(uv_poll_t *h, int status, int events)
{
	struct swc *c = h->data;
	(void)events;
	if (status < 0)
		return;
	/* A bounded number a wakeup, so that a flood cannot hold the loop. */
	for (int i = 0; i < 64; i++) {
		uint8_t frame[LLDP_FRAME_MAX];
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n =
		    recvfrom(c->raw_fd, frame, sizeof(frame), 0, (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		struct lldp_info info;
		if (from.sll_pkttype == PACKET_OUTGOING ||
		    lldp_decode(frame, (size_t)n, &info) < 0 || info.kind != LLDP_PROBE ||
		    !info.token || info.token == c->heard_token)
			continue;
		c->heard_token = info.token;
		announce(c);
	}
}

void topology_lldp_cb(uv_timer_t *t)
{
	struct swc *c = t->data;
	announce(c);
	if (!c->leader)
		return;
	lldp_probe_all(c);
	expire_links(c);
}

void topology_leading(struct swc *c)
{
	uint64_t now = uv_now(c->loop);
	for (unsigned i = 0; i < c->n_links_seen; i++)
		c->links_seen[i].ms = now;
}

void topology_port_down(struct sw *s, uint32_t port)
{
	struct seen *seen = link_seen(s->ctl, s->dpid, port, false);
	if (seen)
		seen->ms = 1; /* expired at the next probe round */
}

int topology_open(struct swc *c, char **ret_error)
{
	c->raw_fd = -1;
	if (!c->self.uplink_if[0])
		return 0;
	c->raw_fd =
	    socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(LLDP_ETHERTYPE));
	if (c->raw_fd < 0) {
		int r = -errno;
		return error_set(ret_error, r, "LLDP socket: %s", strerror(-r));
	}
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", c->self.uplink_if);
	if (ioctl(c->raw_fd, SIOCGIFINDEX, &ifr) < 0 || (c->ifindex = ifr.ifr_ifindex, 0) ||
	    ioctl(c->raw_fd, SIOCGIFHWADDR, &ifr) < 0) {
		int r = -errno;
		topology_close(c, NULL);
		return error_set(ret_error, r, "uplink %s: %s", c->self.uplink_if, strerror(-r));
	}
	memcpy(c->mac, ifr.ifr_hwaddr.sa_data, 6);
	/* Only the uplink's LLDP: a socket of one protocol bound to one
	 * interface hears nothing else. */
	struct sockaddr_ll sll = {.sll_family = AF_PACKET,
	                          .sll_protocol = htons(LLDP_ETHERTYPE),
	                          .sll_ifindex = c->ifindex};
	int r = bind(c->raw_fd, (struct sockaddr *)&sll, sizeof(sll)) < 0 ? -errno : 0;
	if (r == 0)
		r = uv_poll_init(c->loop, &c->lldp_in, c->raw_fd);
	if (r < 0) {
		topology_close(c, NULL);
		return error_set(ret_error, r, "uplink %s: %s", c->self.uplink_if, strerror(-r));
	}
	c->lldp_in.data = c;
	uv_poll_start(&c->lldp_in, UV_READABLE, lldp_in_cb);
	return 0;
}

void topology_close(struct swc *c, uv_close_cb done)
{
	if (c->raw_fd < 0)
		return;
	/* uv_close() takes the descriptor out of the loop's poll set at once,
	 * so it may be closed right after. */
	if (done)
		uv_close((uv_handle_t *)&c->lldp_in, done);
	close(c->raw_fd);
	c->raw_fd = -1;
}
