/* The unmanaged devices' store tables (tables.h): devices and their
 * manager, with their encodings, apply, merge rules and JSON. */
#include "tables.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/addr.h"

/* ---- devices ---- */

static void device_encode(struct obuf *b, const void *row)
{
	const struct devices_device *d = row;
	obuf_put_str(b, d->mac);
	obuf_put_str(b, d->name);
	obuf_put_u32(b, d->address);
	obuf_put_u64(b, d->dpid);
	obuf_put_u32(b, d->port);
	obuf_put_u64(b, d->allowed_ms);
}

static void device_decode(struct cursor *c, void *row)
{
	struct devices_device *d = row;
	cursor_str(c, d->mac, sizeof(d->mac));
	cursor_str(c, d->name, sizeof(d->name));
	d->address = cursor_u32(c);
	d->dpid = cursor_u64(c);
	d->port = cursor_u32(c);
	d->allowed_ms = cursor_u64(c);
}

static int device_cmp(const void *a, const void *b)
{
	return strcmp(((const struct devices_device *)a)->mac,
	              ((const struct devices_device *)b)->mac);
}

static json_t *device_json(const void *row)
{
	const struct devices_device *d = row;
	return json_pack("{s:s, s:s, s:o, s:I, s:I, s:I}", "mac", d->mac, "name", d->name,
	                 "address", d->address ? addr_json_host(d->address) : json_null(), "dpid",
	                 (json_int_t)d->dpid, "port", (json_int_t)d->port, "allowed_ms",
	                 (json_int_t)d->allowed_ms);
}

const struct devices_device *devices_device_find(const struct store_state *s, const char *mac)
{
	struct devices_device key = {0};
	snprintf(key.mac, sizeof(key.mac), "%s", mac);
	return store_table_get(s, DEVICES_DEVICES, &key);
}

bool devices_device_mac_valid(const char *mac)
{
	if (strlen(mac) != 17)
		return false;
	unsigned first = 0, any = 0;
	for (int i = 0; i < 17; i++) {
		char ch = mac[i];
		if (i % 3 == 2) {
			if (ch != ':')
				return false;
			continue;
		}
		if (!isdigit((unsigned char)ch) && !(ch >= 'a' && ch <= 'f'))
			return false;
		unsigned v = (unsigned)(isdigit((unsigned char)ch) ? ch - '0' : ch - 'a' + 10);
		if (i == 1)
			first = v;
		any |= v;
	}
	return any && !(first & 1); /* the group bit: multicast */
}

bool devices_device_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n >= STORE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
			return false;
	return true;
}

static int device_apply(struct store_state *s, const struct store_cmd *cmd,
                        struct store_result *res)
{
	const struct devices_device *d = STORE_CMD_ROW(cmd, const struct devices_device);
	if (!devices_device_mac_valid(d->mac)) {
		store_reject(res, "a device's MAC is six lowercase hex pairs (xx:xx:xx:xx:xx:xx), "
		                  "unicast and not all zero");
		return 0;
	}
	if (cmd->op == STORE_PUT) {
		if (!devices_device_name_valid(d->name)) {
			store_reject(res,
			             "a device's name is 1 to %d letters, digits, '.', '_' or '-'",
			             STORE_NAME_MAX - 1);
			return 0;
		}
		/* One device per address: the one just seen there has it. */
		for (size_t i = 0; d->address && i < store_count(s, DEVICES_DEVICES); i++) {
			struct devices_device *o = store_row_edit(s, DEVICES_DEVICES, i);
			if (o->address == d->address && strcmp(o->mac, d->mac) != 0)
				o->address = 0;
		}
	}
	return store_apply_simple(s, cmd, res, "device");
}

/* The newer decision about a device wins: an allowance (or its learned
 * place) is re-applied unless the new cluster allowed it again later; a
 * removal unless it was allowed again after it. */
static enum store_merge device_merge(const struct store_state *s, struct store_cmd *cmd,
                                     char **ret_reason)
{
	(void)ret_reason;
	const struct devices_device *d = STORE_CMD_ROW(cmd, const struct devices_device);
	const struct devices_device *row = store_table_get(s, DEVICES_DEVICES, d);
	return store_merge_later(cmd, row != NULL, row ? row->allowed_ms : 0, d->allowed_ms);
}

static const struct store_table devices_table = {
    .id = DEVICES_DEVICES,
    .name = "devices",
    .version = 3,
    .row_size = sizeof(struct devices_device),
    .cmp = device_cmp,
    .encode = device_encode,
    .decode = device_decode,
    .apply = device_apply,
    .merge = device_merge,
    .to_json = device_json,
};

/* ---- manager ---- */

static void manager_encode(struct obuf *b, const void *row)
{
	const struct devices_manager *m = row;
	obuf_put_str(b, m->host);
	obuf_put_u64(b, m->since_ms);
}

static void manager_decode(struct cursor *c, void *row)
{
	struct devices_manager *m = row;
	cursor_str(c, m->host, sizeof(m->host));
	m->since_ms = cursor_u64(c);
}

static json_t *manager_json(const void *row)
{
	const struct devices_manager *m = row;
	return json_pack("{s:s?, s:I}", "host", m->host[0] ? m->host : NULL, "since_ms",
	                 (json_int_t)m->since_ms);
}

const struct devices_manager *devices_manager(const struct store_state *s)
{
	return store_row(s, DEVICES_MANAGER, 0);
}

static int manager_apply(struct store_state *s, const struct store_cmd *cmd,
                         struct store_result *res)
{
	const struct devices_manager *m = STORE_CMD_ROW(cmd, const struct devices_manager);
	if (cmd->op == STORE_DELETE) {
		store_table_del(s, DEVICES_MANAGER, m);
		return 0;
	}
	if (!m->host[0] || !store_member_find_name(s, m->host)) {
		store_reject(res, "the manager must be a member; \"%s\" is not", m->host);
		return 0;
	}
	return store_table_put(s, DEVICES_MANAGER, m);
}

/* The new cluster's leader chooses the devices' manager. */
static enum store_merge manager_merge(const struct store_state *s, struct store_cmd *cmd,
                                      char **ret_reason)
{
	(void)s, (void)cmd, (void)ret_reason;
	return STORE_MERGE_SKIP;
}

static const struct store_table manager_table = {
    .id = DEVICES_MANAGER,
    .name = "manager",
    .version = 3,
    .row_size = sizeof(struct devices_manager),
    .single = true,
    .encode = manager_encode,
    .decode = manager_decode,
    .apply = manager_apply,
    .merge = manager_merge,
    .to_json = manager_json,
};

const struct store_table *const devices_tables[] = {&devices_table, &manager_table, NULL};
