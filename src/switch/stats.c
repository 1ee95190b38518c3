/* Ports and statistics: on every agent, each switch's port descriptions
 * (read at connection, then kept by port status messages) and when each
 * port went down; on the master, the soft state the statistics round polls
 * every stats-interval: port counters and rates, the group count, and
 * (through reconcile.c) the flows read back. */
#include "switch-internal.h"

#include <string.h>

#include "lib/array.h"
#include "lib/log.h"

struct port *stats_find_port(struct sw *s, uint32_t no)
{
	for (unsigned i = 0; i < s->n_ports; i++)
		if (s->ports[i].desc.port_no == no)
			return &s->ports[i];
	return NULL;
}

static void port_update(struct sw *s, const struct of13_port *p, bool deleted)
{
	struct port *at = stats_find_port(s, p->port_no);
	if (deleted) {
		if (at) {
			*at = s->ports[--s->n_ports];
		}
		return;
	}
	if (!at) {
		if (ARRAY_RESERVE(s->ports, s->cap_ports, s->n_ports + 1) < 0) {
			log_warn("switch %u: port %u (%s): out of memory", s->index, p->port_no,
			         p->name);
			return;
		}
		at = &s->ports[s->n_ports++];
		*at = (struct port){0};
	}
	bool was_down = at->down_since_ms != 0;
	bool down = (p->state & OF13_PORT_STATE_LINK_DOWN) || (p->config & OF13_PORT_CONFIG_DOWN);
	at->desc = *p;
	if (down && !was_down)
		at->down_since_ms = uv_now(s->ctl->loop);
	else if (!down)
		at->down_since_ms = 0;
}

void stats_port_status(struct sw *s, const uint8_t *msg, size_t len)
{
	struct of13_port_status ps;
	if (of13_port_status_decode(msg, len, &ps) != OF13_OK)
		return;
	bool down = ps.port.state & OF13_PORT_STATE_LINK_DOWN;
	log_info("switch %u: port %u (%s) %s", s->index, ps.port.port_no, ps.port.name,
	         ps.reason == OF13_PORT_DELETE ? "deleted"
	         : down                        ? "down"
	                                       : "up");
	port_update(s, &ps.port, ps.reason == OF13_PORT_DELETE);
	/* A link whose port went down is gone now, not at the timeout. */
	struct swc *c = s->ctl;
	if (c->leader && (down || ps.reason == OF13_PORT_DELETE))
		topology_port_down(s, ps.port.port_no);
	reconcile_kick(c);
}

static void add_port(void *userdata, const struct of13_port *p)
{
	port_update(userdata, p, false);
}

/* The description comes in as many parts as the switch needs; each part's
 * ports are taken as they arrive. */
static void port_desc_cb(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                         size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	uint16_t flags;
	if (status < 0 || of13_port_desc_reply_decode(msg, len, &flags, add_port, s) != OF13_OK)
		return;
	if (last)
		reconcile_kick(s->ctl);
}

static void port_counters(void *userdata, const struct of13_port_stats *st)
{
	struct sw *s = userdata;
	struct port *p = stats_find_port(s, st->port_no);
	if (!p)
		return;
	uint64_t now = uv_now(s->ctl->loop);
	if (p->stats_ms && now > p->stats_ms) {
		double dt = (double)(now - p->stats_ms) / 1000.0;
		p->rx_bps = (double)(st->rx_bytes - p->rx_bytes) * 8 / dt;
		p->tx_bps = (double)(st->tx_bytes - p->tx_bytes) * 8 / dt;
	}
	p->rx_bytes = st->rx_bytes;
	p->tx_bytes = st->tx_bytes;
	p->rx_packets = st->rx_packets;
	p->tx_packets = st->tx_packets;
	p->stats_ms = now;
}

static void port_stats_cb(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                          size_t len, bool last)
{
	(void)conn;
	(void)last;
	uint16_t flags;
	if (status >= 0)
		of13_port_stats_reply_decode(msg, len, &flags, port_counters, userdata);
}

static void count_group(void *userdata, const struct of13_group_stats *gs)
{
	struct sw *s = userdata;
	(void)gs;
	s->n_groups_dump++;
}

static void group_stats_cb(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                           size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	if (status < 0)
		return;
	uint16_t flags;
	of13_group_stats_reply_decode(msg, len, &flags, count_group, s);
	if (last) {
		s->n_groups = s->n_groups_dump;
		s->n_groups_dump = 0;
	}
}

void stats_request_ports(struct sw *s)
{
	struct obuf b = {0};
	of13_port_desc_request_encode(&b, of_conn_xid(s->conn));
	of_conn_send(s->conn, &b, port_desc_cb, s);
}

/* Only the master polls: what it reads is the network's one view of the
 * switch (`switches` shows it), and the switch's work stays the same
 * however many agents there are. The others learn ports from the port
 * status messages every controller gets, which is all the failure
 * detector needs, and read flows when asked. */
void stats_timer_cb(uv_timer_t *t)
{
	struct swc *c = t->data;
	for (unsigned i = 0; i < c->o.n_switches; i++) {
		struct sw *s = &c->sw[i];
		if (!s->up || s->role != ROLE_MASTER)
			continue;
		struct obuf b = {0};
		of13_port_stats_request_encode(&b, of_conn_xid(s->conn), OF13_PORT_ANY);
		of_conn_send(s->conn, &b, port_stats_cb, s);
		of13_group_stats_request_encode(&b, of_conn_xid(s->conn), OF13_GROUP_ALL);
		of_conn_send(s->conn, &b, group_stats_cb, s);
		if (!s->dumping && !s->reconciling)
			reconcile_read_flows(s);
		sw_probe_role(s);
	}
}
