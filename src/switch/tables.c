/* The switch controller's store tables (tables.h): locations and links,
 * with their encodings, apply and JSON. Their merge rule is to skip: the
 * new cluster's master learns the topology again. */
#include "tables.h"

#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/addr.h"

static enum store_merge learned_again(const struct store_state *s, struct store_cmd *cmd,
                                      char **ret_reason)
{
	(void)s, (void)cmd, (void)ret_reason;
	return STORE_MERGE_SKIP;
}

/* ---- locations ---- */

static void location_encode(struct obuf *b, const void *row)
{
	const struct switch_location *l = row;
	obuf_put_str(b, l->host);
	obuf_put_str(b, l->mac);
	obuf_put_u64(b, l->dpid);
	obuf_put_u32(b, l->port);
	obuf_put_u32(b, l->control_addr);
	obuf_put_u32(b, l->guest_addr);
	obuf_put_u64(b, l->seen_ms);
}

static void location_decode(struct cursor *c, void *row)
{
	struct switch_location *l = row;
	cursor_str(c, l->host, sizeof(l->host));
	cursor_str(c, l->mac, sizeof(l->mac));
	l->dpid = cursor_u64(c);
	l->port = cursor_u32(c);
	l->control_addr = cursor_u32(c);
	l->guest_addr = cursor_u32(c);
	l->seen_ms = cursor_u64(c);
}

static int location_cmp(const void *a, const void *b)
{
	return strcmp(((const struct switch_location *)a)->host,
	              ((const struct switch_location *)b)->host);
}

static json_t *location_json(const void *row)
{
	const struct switch_location *l = row;
	return json_pack("{s:s, s:s, s:I, s:I, s:o, s:o, s:I}", "host", l->host, "mac", l->mac,
	                 "dpid", (json_int_t)l->dpid, "port", (json_int_t)l->port, "control_addr",
	                 addr_json_host(l->control_addr), "guest_addr",
	                 addr_json_host(l->guest_addr), "seen_ms", (json_int_t)l->seen_ms);
}

const struct switch_location *switch_location_find(const struct store_state *s, const char *host)
{
	struct switch_location key = {0};
	snprintf(key.host, sizeof(key.host), "%s", host);
	return store_table_get(s, SWITCH_LOCATIONS, &key);
}

static int location_apply(struct store_state *s, const struct store_cmd *cmd,
                          struct store_result *res)
{
	const struct switch_location *l = STORE_CMD_ROW(cmd, const struct switch_location);
	if (cmd->op == STORE_PUT) {
		if (!l->host[0] || !l->dpid || !l->port) {
			store_reject(res, "a location needs a host, a switch and a port");
			return 0;
		}
		/* One host per port: a host seen on another's port replaces it. */
		for (size_t i = 0; i < store_count(s, SWITCH_LOCATIONS); i++) {
			const struct switch_location *o = store_row(s, SWITCH_LOCATIONS, i);
			if (strcmp(o->host, l->host) != 0 && o->dpid == l->dpid &&
			    o->port == l->port) {
				struct switch_location key = *o;
				store_table_del(s, SWITCH_LOCATIONS, &key);
				break;
			}
		}
	}
	return store_apply_simple(s, cmd, res, "location");
}

static const struct store_table locations_table = {
    .id = SWITCH_LOCATIONS,
    .name = "locations",
    .version = 2,
    .row_size = sizeof(struct switch_location),
    .cmp = location_cmp,
    .encode = location_encode,
    .decode = location_decode,
    .apply = location_apply,
    .merge = learned_again,
    .to_json = location_json,
};

/* ---- links ---- */

static void link_encode(struct obuf *b, const void *row)
{
	const struct switch_link *l = row;
	obuf_put_u64(b, l->dpid);
	obuf_put_u32(b, l->port);
	obuf_put_u64(b, l->peer_dpid);
	obuf_put_u32(b, l->peer_port);
	obuf_put_u64(b, l->seen_ms);
}

static void link_decode(struct cursor *c, void *row)
{
	struct switch_link *l = row;
	l->dpid = cursor_u64(c);
	l->port = cursor_u32(c);
	l->peer_dpid = cursor_u64(c);
	l->peer_port = cursor_u32(c);
	l->seen_ms = cursor_u64(c);
}

static int link_cmp(const void *a, const void *b)
{
	const struct switch_link *x = a, *y = b;
	int r = store_cmp_u64(x->dpid, y->dpid);
	return r ? r : store_cmp_u64(x->port, y->port);
}

static json_t *link_json(const void *row)
{
	const struct switch_link *l = row;
	return json_pack("{s:I, s:I, s:I, s:I, s:I}", "dpid", (json_int_t)l->dpid, "port",
	                 (json_int_t)l->port, "peer_dpid", (json_int_t)l->peer_dpid, "peer_port",
	                 (json_int_t)l->peer_port, "seen_ms", (json_int_t)l->seen_ms);
}

static int link_apply(struct store_state *s, const struct store_cmd *cmd, struct store_result *res)
{
	const struct switch_link *l = STORE_CMD_ROW(cmd, const struct switch_link);
	if (cmd->op == STORE_PUT &&
	    (!l->dpid || !l->port || !l->peer_dpid || !l->peer_port || l->dpid == l->peer_dpid)) {
		store_reject(res, "a link joins two ports of two different switches");
		return 0;
	}
	return store_apply_simple(s, cmd, res, "link");
}

static const struct store_table links_table = {
    .id = SWITCH_LINKS,
    .name = "links",
    .version = 2,
    .row_size = sizeof(struct switch_link),
    .cmp = link_cmp,
    .encode = link_encode,
    .decode = link_decode,
    .apply = link_apply,
    .merge = learned_again,
    .to_json = link_json,
};

const struct store_table *const switch_tables[] = {&locations_table, &links_table, NULL};
