/* NAT's control requests (nat.h, docs/nat.md): "nat" (the status: uplinks,
 * blocks, mappings, this host's share), "nat.expose" and "nat.unexpose" (an
 * admin's inbound mapping, put or deleted through the store). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api/server.h"
#include "lib/addr.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/mac.h"
#include "services/nat/nat-internal.h"
#include "services/nat/tables.h"
#include "store/store.h"
#include "switch/switch.h"
#include "switch/tables.h"

/* ---- "nat": the status ---- */

static const char *member_name(const struct store_state *st, uint64_t id)
{
	const struct store_member *m = store_member_find(st, id);
	return m ? m->name : NULL;
}

static json_t *uplinks_json(struct nat *n)
{
	struct sw_port_ref ups[SW_MAX_UPLINKS];
	bool up[SW_MAX_UPLINKS];
	size_t k = sw_uplinks(n->sw, ups, up);
	json_t *uplinks = json_array();
	for (unsigned i = 0; i < n->o.n_publics; i++) {
		char mac[MAC_STR_MAX] = "";
		if (n->gw_known[i])
			mac_format(n->gw_mac[i], mac);
		char dpid[17];
		snprintf(dpid, sizeof(dpid), "%016" PRIx64, i < k ? ups[i].dpid : 0);
		json_array_append_new(
		    uplinks, json_pack("{s:i, s:o, s:o, s:s?, s:s, s:i, s:b}", "uplink", i + 1,
		                       "public", addr_json(n->o.publics[i]), "gateway",
		                       addr_json(nat_gateway(&n->o, i)), "gateway_mac",
		                       mac[0] ? mac : NULL, "dpid", dpid, "port",
		                       i < k ? (int)ups[i].port : 0, "up", i < k && up[i]));
	}
	return uplinks;
}

static json_t *blocks_json(const struct store_state *st)
{
	json_t *blocks = json_array();
	for (size_t i = 0; i < store_count(st, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
		json_t *o = json_pack("{s:i, s:i, s:i, s:I, s:s?, s:I}", "start", b->start, "end",
		                      b->start + b->size - 1, "size", b->size, "owner_id",
		                      (json_int_t)b->owner, "owner", member_name(st, b->owner),
		                      "claimed_ms", (json_int_t)b->claimed_ms);
		json_array_append_new(blocks, o);
	}
	return blocks;
}

static json_t *mappings_json(const struct store_state *st)
{
	json_t *maps = json_array();
	for (size_t i = 0; i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		json_array_append_new(
		    maps,
		    json_pack("{s:s, s:i, s:s?, s:o, s:i, s:I}", "proto", nat_proto_name(m->proto),
		              "public_port", m->public_port, "owner", member_name(st, m->owner),
		              "guest", addr_json_host(m->guest_addr), "guest_port", m->guest_port,
		              "expires_ms", (json_int_t)m->expires_ms));
	}
	return maps;
}

static json_t *nat_status(struct nat *n)
{
	const struct store_state *st = nat_state(n);
	return json_pack("{s:s, s:o, s:i, s:o, s:o, s:{s:s, s:o, s:I, s:i, s:s}}", "host", n->name,
	                 "uplinks", uplinks_json(n), "block_size", n->o.block_size, "blocks",
	                 blocks_json(st), "mappings", mappings_json(st), "self", "host", n->name,
	                 "public", addr_json(n->o.publics[n->uplink]), "in_use",
	                 (json_int_t)nat_usage_count(n), "blocks", (int)nat_blocks_of(st, n->self),
	                 "filtering", nat_filtering_name(n->o.filtering));
}

/* ---- "nat.expose", "nat.unexpose" ---- */

static int parse_proto(const char *s, uint8_t *ret)
{
	if (s && strcmp(s, "tcp") == 0)
		*ret = 6;
	else if (s && strcmp(s, "udp") == 0)
		*ret = 17;
	else
		return -EINVAL;
	return 0;
}

/* The new mapping of @m's public port to @host's guest @port. */
static int expose_add(const struct store_state *st, const char *host, json_int_t port,
                      struct nat_mapping *m, char **ret_error)
{
	const struct store_member *mem = host ? store_member_find_name(st, host) : NULL;
	const struct switch_location *l = host ? switch_location_find(st, host) : NULL;
	if (!mem || !l)
		return error_set(ret_error, -ENOENT,
		                 "field \"host\": no located member named \"%s\"",
		                 host ? host : "");
	m->owner = mem->id;
	m->guest_addr = l->guest_addr;
	m->guest_port = (uint16_t)port;
	return 0;
}

/* Deleting names the public port; the owner is the store's. */
static int expose_find(const struct store_state *st, struct nat_mapping *m, char **ret_error)
{
	for (size_t i = 0; i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *x = store_row(st, NAT_MAPPINGS, i);
		if (x->proto == m->proto && x->public_port == m->public_port) {
			*m = *x;
			return 0;
		}
	}
	return error_set(ret_error, -ENOENT, "no mapping of public port %lld/%s",
	                 (long long)m->public_port, nat_proto_name(m->proto));
}

static int expose(struct nat *n, struct ctl_client *client, const struct ctl_request *req,
                  char **ret_error)
{
	bool add = strcmp(req->cmd, "nat.expose") == 0;
	const char *host = json_string_value(json_object_get(req->args, "host"));
	json_t *jport = json_object_get(req->args, "port");
	json_t *jpublic = json_object_get(req->args, "public_port");
	uint8_t proto;
	if (parse_proto(json_string_value(json_object_get(req->args, "proto")), &proto) < 0)
		return error_set(ret_error, -EINVAL,
		                 "field \"proto\": expected \"tcp\" or \"udp\"");
	json_int_t port = json_integer_value(jport);
	json_int_t pub = jpublic ? json_integer_value(jpublic) : port;
	if (add && (!json_is_integer(jport) || port < 1 || port > 65535))
		return error_set(ret_error, -EINVAL, "field \"port\": expected 1 to 65535");
	if (!json_is_integer(add ? jport : jpublic) || pub < 1 || pub > 65535)
		return error_set(ret_error, -EINVAL, "field \"public_port\": expected 1 to 65535");
	struct store_cmd cmd = {
	    .table = NAT_MAPPINGS, .op = add ? STORE_PUT : STORE_DELETE, .time_ms = wall_ms()};
	struct nat_mapping *m = STORE_CMD_ROW(&cmd, struct nat_mapping);
	m->proto = proto;
	m->public_port = (uint16_t)pub;
	int r = add ? expose_add(nat_state(n), host, port, m, ret_error)
	            : expose_find(nat_state(n), m, ret_error);
	if (r < 0)
		return r;
	return store_propose_reply(n->store, client, req, &cmd, true, ret_error);
}

int nat_handle_request(struct nat *n, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	if (strcmp(req->cmd, "nat") == 0) {
		*ret_result = nat_status(n);
		return *ret_result ? 0 : -ENOMEM;
	}
	if (strcmp(req->cmd, "nat.expose") == 0 || strcmp(req->cmd, "nat.unexpose") == 0)
		return expose(n, client, req, ret_error);
	return -ENOENT;
}
