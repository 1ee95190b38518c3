/* Header, hello, echo, error, features, role and barrier (spec 7.1, 7.3.1,
 * 7.3.9, 7.4, 7.5). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "internal.h"

#define HELLO_ELEM_VERSIONBITMAP 1

const char *of13_err_string(enum of13_err err)
{
	switch (err) {
	case OF13_OK:
		return "ok";
	case OF13_ERR_BAD_VERSION:
		return "unsupported OpenFlow version";
	case OF13_ERR_BAD_TYPE:
		return "unknown message type";
	case OF13_ERR_BAD_LEN:
		return "bad message length";
	case OF13_ERR_BAD_ACTION_TYPE:
		return "unknown action";
	case OF13_ERR_BAD_ACTION_LEN:
		return "bad action length";
	case OF13_ERR_BAD_INSTRUCTION:
		return "unknown instruction";
	case OF13_ERR_BAD_INSTRUCTION_LEN:
		return "bad instruction length";
	case OF13_ERR_BAD_MATCH_TYPE:
		return "match is not OXM";
	case OF13_ERR_BAD_MATCH_LEN:
		return "bad match length";
	case OF13_ERR_BAD_FIELD:
		return "unknown or malformed match field";
	case OF13_ERR_DUP_FIELD:
		return "match field given twice";
	case OF13_ERR_TOO_MANY:
		return "more fields, actions or instructions than supported";
	}
	return "unknown error";
}

enum of13_err of13_header_decode(const void *data, size_t len, struct of13_header *ret_header)
{
	struct cursor c = cursor_init(data, len);
	struct of13_header h = {
	    .version = cursor_u8(&c),
	    .type = cursor_u8(&c),
	    .length = cursor_u16(&c),
	    .xid = cursor_u32(&c),
	};
	if (!cursor_ok(&c) || h.length < OF13_HEADER_LEN || h.length != len)
		return OF13_ERR_BAD_LEN;
	/* The header is filled in even for another version, so that a hello
	 * of any version can be read. */
	*ret_header = h;
	if (h.version != OF13_VERSION && h.type != OF13_HELLO)
		return OF13_ERR_BAD_VERSION;
	return OF13_OK;
}

void of13_start(struct obuf *b, uint8_t type, uint32_t xid)
{
	obuf_put_u8(b, OF13_VERSION);
	obuf_put_u8(b, type);
	obuf_put_u16(b, 0); /* of13_finish() */
	obuf_put_u32(b, xid);
}

int of13_finish(struct obuf *b)
{
	if (b->failed)
		return -ENOMEM;
	if (b->len > OF13_MAX_MESSAGE || b->len < OF13_HEADER_LEN)
		return -EMSGSIZE;
	b->data[2] = (uint8_t)(b->len >> 8);
	b->data[3] = (uint8_t)b->len;
	return 0;
}

enum of13_err of13_body(const void *data, size_t len, uint8_t type, struct cursor *ret)
{
	struct of13_header h;
	enum of13_err e = of13_header_decode(data, len, &h);
	if (e)
		return e;
	if (h.type != type)
		return OF13_ERR_BAD_TYPE;
	*ret = cursor_init((const uint8_t *)data + OF13_HEADER_LEN, len - OF13_HEADER_LEN);
	return OF13_OK;
}

enum of13_err of13_hello_decode(const void *data, size_t len, struct of13_hello *ret)
{
	struct of13_header hdr;
	enum of13_err e = of13_header_decode(data, len, &hdr);
	/* A hello of any version is read: it is how versions are agreed. */
	if (e && e != OF13_ERR_BAD_VERSION)
		return e;
	if (hdr.type != OF13_HELLO)
		return e ? e : OF13_ERR_BAD_TYPE;
	struct cursor c =
	    cursor_init((const uint8_t *)data + OF13_HEADER_LEN, len - OF13_HEADER_LEN);
	struct of13_hello h = {0};
	/* Elements we do not know are skipped (spec 7.5.1). */
	while (c.left >= 4) {
		uint16_t type = cursor_u16(&c), elen = cursor_u16(&c);
		if (elen < 4 || (size_t)elen - 4 > c.left)
			return OF13_ERR_BAD_LEN;
		struct cursor el = cursor_init(cursor_bytes(&c, elen - 4u), elen - 4u);
		if (type == HELLO_ELEM_VERSIONBITMAP && el.left >= 4)
			h.version_bitmap = cursor_u32(&el); /* versions 0-31 */
		/* Elements are padded to 8 bytes; the last pad may be cut. */
		size_t pad = ((elen + 7u) & ~7u) - elen;
		cursor_bytes(&c, pad < c.left ? pad : c.left);
	}
	*ret = h;
	return OF13_OK;
}

void of13_hello_encode(struct obuf *b, uint32_t xid, const struct of13_hello *h)
{
	of13_start(b, OF13_HELLO, xid);
	obuf_put_u16(b, HELLO_ELEM_VERSIONBITMAP);
	obuf_put_u16(b, 8);
	obuf_put_u32(b, h->version_bitmap);
}

uint8_t of13_negotiate(uint32_t ours, uint32_t theirs)
{
	uint32_t both = ours & theirs;
	for (int v = 31; v > 0; v--)
		if (both & (1u << v))
			return (uint8_t)v;
	return 0;
}

void of13_simple_encode(struct obuf *b, uint8_t type, uint32_t xid, const void *data, size_t len)
{
	of13_start(b, type, xid);
	obuf_put_bytes(b, data, len);
}

enum of13_err of13_error_decode(const void *data, size_t len, struct of13_error_msg *ret)
{
	struct cursor c;
	enum of13_err e = of13_body(data, len, OF13_ERROR, &c);
	if (e)
		return e;
	struct of13_error_msg m = {.type = cursor_u16(&c), .code = cursor_u16(&c)};
	if (!cursor_ok(&c))
		return OF13_ERR_BAD_LEN;
	m.data_len = c.left;
	m.data = cursor_bytes(&c, c.left);
	*ret = m;
	return OF13_OK;
}

void of13_error_encode(struct obuf *b, uint32_t xid, enum of13_err err, const void *request,
                       size_t request_len)
{
	of13_start(b, OF13_ERROR, xid);
	obuf_put_u16(b, (uint16_t)((unsigned)err >> 16));
	obuf_put_u16(b, (uint16_t)err);
	/* Spec 7.4.4: at least 64 bytes of the failed request. */
	obuf_put_bytes(b, request, request_len < 64 ? request_len : 64);
}

enum of13_err of13_features_decode(const void *data, size_t len, struct of13_features *ret)
{
	struct cursor c;
	enum of13_err e = of13_body(data, len, OF13_FEATURES_REPLY, &c);
	if (e)
		return e;
	struct of13_features f = {.datapath_id = cursor_u64(&c),
	                          .n_buffers = cursor_u32(&c),
	                          .n_tables = cursor_u8(&c),
	                          .auxiliary_id = cursor_u8(&c)};
	cursor_bytes(&c, 2);
	f.capabilities = cursor_u32(&c);
	cursor_u32(&c); /* reserved */
	if (!cursor_ok(&c) || c.left)
		return OF13_ERR_BAD_LEN;
	*ret = f;
	return OF13_OK;
}

void of13_features_encode(struct obuf *b, uint32_t xid, const struct of13_features *f)
{
	of13_start(b, OF13_FEATURES_REPLY, xid);
	obuf_put_u64(b, f->datapath_id);
	obuf_put_u32(b, f->n_buffers);
	obuf_put_u8(b, f->n_tables);
	obuf_put_u8(b, f->auxiliary_id);
	obuf_put_u16(b, 0);
	obuf_put_u32(b, f->capabilities);
	obuf_put_u32(b, 0);
}

enum of13_err of13_role_decode(const void *data, size_t len, struct of13_role_msg *ret)
{
	struct of13_header h;
	enum of13_err e = of13_header_decode(data, len, &h);
	if (e)
		return e;
	if (h.type != OF13_ROLE_REQUEST && h.type != OF13_ROLE_REPLY)
		return OF13_ERR_BAD_TYPE;
	struct cursor c =
	    cursor_init((const uint8_t *)data + OF13_HEADER_LEN, len - OF13_HEADER_LEN);
	struct of13_role_msg r = {.role = cursor_u32(&c)};
	cursor_u32(&c); /* pad */
	r.generation_id = cursor_u64(&c);
	if (!cursor_ok(&c) || c.left)
		return OF13_ERR_BAD_LEN;
	*ret = r;
	return OF13_OK;
}

void of13_role_encode(struct obuf *b, uint8_t type, uint32_t xid, const struct of13_role_msg *r)
{
	of13_start(b, type, xid);
	obuf_put_u32(b, r->role);
	obuf_put_u32(b, 0);
	obuf_put_u64(b, r->generation_id);
}

static const char *role_name(uint32_t role)
{
	static const char *const names[] = {"nochange", "equal", "master", "slave"};
	return role < 4 ? names[role] : "unknown";
}
enum of13_err of13_set_config_decode(const void *data, size_t len, struct of13_switch_config *ret)
{
	struct cursor c;
	enum of13_err e = of13_body(data, len, OF13_SET_CONFIG, &c);
	if (e)
		return e;
	struct of13_switch_config sc = {.flags = cursor_u16(&c), .miss_send_len = cursor_u16(&c)};
	if (!cursor_ok(&c) || c.left)
		return OF13_ERR_BAD_LEN;
	*ret = sc;
	return OF13_OK;
}

void of13_set_config_encode(struct obuf *b, uint32_t xid, const struct of13_switch_config *sc)
{
	of13_start(b, OF13_SET_CONFIG, xid);
	obuf_put_u16(b, sc->flags);
	obuf_put_u16(b, sc->miss_send_len);
}

static const char *type_name(uint8_t type)
{
	switch (type) {
	case OF13_HELLO:
		return "HELLO";
	case OF13_ERROR:
		return "ERROR";
	case OF13_ECHO_REQUEST:
		return "ECHO_REQUEST";
	case OF13_ECHO_REPLY:
		return "ECHO_REPLY";
	case OF13_FEATURES_REQUEST:
		return "FEATURES_REQUEST";
	case OF13_FEATURES_REPLY:
		return "FEATURES_REPLY";
	case OF13_SET_CONFIG:
		return "SET_CONFIG";
	case OF13_FLOW_MOD:
		return "FLOW_MOD";
	case OF13_BARRIER_REQUEST:
		return "BARRIER_REQUEST";
	case OF13_BARRIER_REPLY:
		return "BARRIER_REPLY";
	case OF13_ROLE_REQUEST:
		return "ROLE_REQUEST";
	case OF13_ROLE_REPLY:
		return "ROLE_REPLY";
	case OF13_PACKET_IN:
		return "PACKET_IN";
	case OF13_PACKET_OUT:
		return "PACKET_OUT";
	case OF13_GROUP_MOD:
		return "GROUP_MOD";
	case OF13_PORT_STATUS:
		return "PORT_STATUS";
	case OF13_MULTIPART_REQUEST:
		return "MULTIPART_REQUEST";
	case OF13_MULTIPART_REPLY:
		return "MULTIPART_REPLY";
	}
	return NULL;
}

void of13_format(FILE *out, const void *data, size_t len)
{
	struct of13_header h;
	enum of13_err e = of13_header_decode(data, len, &h);
	if (e && !(e == OF13_ERR_BAD_VERSION && len >= OF13_HEADER_LEN)) {
		fprintf(out, "(malformed: %s)", of13_err_string(e));
		return;
	}
	const char *name = type_name(h.type);
	if (!name) {
		fprintf(out, "type %u xid=0x%" PRIx32 ": (not decoded)", h.type, h.xid);
		return;
	}
	fprintf(out, "%s xid=0x%" PRIx32, name, h.xid);
	union {
		struct of13_hello hello;
		struct of13_error_msg error;
		struct of13_features features;
		struct of13_role_msg role;
		struct of13_switch_config config;
		struct of13_flow_mod flow;
		struct of13_packet_in pin;
		struct of13_packet_out pout;
		struct of13_port_status port;
		struct of13_group_mod group;
		struct {
			uint16_t type, flags;
		} mp;
	} m;
	switch (h.type) {
	case OF13_HELLO:
		e = of13_hello_decode(data, len, &m.hello);
		if (!e)
			fprintf(out, ": version_bitmap=0x%" PRIx32, m.hello.version_bitmap);
		break;
	case OF13_ERROR:
		e = of13_error_decode(data, len, &m.error);
		if (!e)
			fprintf(out, ": type=%u code=%u (%s), %zu bytes of data", m.error.type,
			        m.error.code,
			        of13_err_string(
			            (enum of13_err)((unsigned)m.error.type << 16 | m.error.code)),
			        m.error.data_len);
		break;
	case OF13_FEATURES_REPLY:
		e = of13_features_decode(data, len, &m.features);
		if (!e)
			fprintf(out, ": dpid=0x%016" PRIx64 " n_tables=%u n_buffers=%" PRIu32,
			        m.features.datapath_id, m.features.n_tables, m.features.n_buffers);
		break;
	case OF13_SET_CONFIG:
		e = of13_set_config_decode(data, len, &m.config);
		if (!e)
			fprintf(out, ": flags=0x%x miss_send_len=%u", m.config.flags,
			        m.config.miss_send_len);
		break;
	case OF13_ROLE_REQUEST:
	case OF13_ROLE_REPLY:
		e = of13_role_decode(data, len, &m.role);
		if (!e)
			fprintf(out, ": role=%s generation_id=%" PRIu64, role_name(m.role.role),
			        m.role.generation_id);
		break;
	case OF13_FLOW_MOD:
		e = of13_flow_mod_decode(data, len, &m.flow);
		if (!e) {
			fputs(": ", out);
			of13_flow_mod_format(out, &m.flow);
		}
		break;
	case OF13_PACKET_IN:
		e = of13_packet_in_decode(data, len, &m.pin);
		if (!e) {
			fprintf(out,
			        ": reason=%u table=%u cookie=0x%" PRIx64 " match=", m.pin.reason,
			        m.pin.table_id, m.pin.cookie);
			of13_match_format(out, &m.pin.match);
			fprintf(out, " total_len=%u data_len=%zu", m.pin.total_len, m.pin.data_len);
		}
		break;
	case OF13_PACKET_OUT:
		e = of13_packet_out_decode(data, len, &m.pout);
		if (!e) {
			fprintf(out, ": in_port=0x%" PRIx32 " actions=", m.pout.in_port);
			for (unsigned i = 0; i < m.pout.n_actions; i++) {
				if (i)
					fputc(',', out);
				of13_action_format(out, &m.pout.actions[i]);
			}
			fprintf(out, " data_len=%zu", m.pout.data_len);
		}
		break;
	case OF13_GROUP_MOD:
		e = of13_group_mod_decode(data, len, &m.group);
		if (!e) {
			fputs(": ", out);
			of13_group_mod_format(out, &m.group);
			of13_group_mod_free(&m.group);
		}
		break;
	case OF13_PORT_STATUS:
		e = of13_port_status_decode(data, len, &m.port);
		if (!e)
			fprintf(out, ": reason=%u port=%" PRIu32 "(%s) state=%s", m.port.reason,
			        m.port.port.port_no, m.port.port.name,
			        m.port.port.state & OF13_PORT_STATE_LINK_DOWN ? "link_down"
			                                                      : "link_up");
		break;
	case OF13_MULTIPART_REQUEST:
	case OF13_MULTIPART_REPLY:
		e = of13_multipart_decode(data, len, &m.mp.type, &m.mp.flags);
		if (!e)
			fprintf(out, ": type=%u flags=0x%x, %zu bytes of body", m.mp.type,
			        m.mp.flags, len - OF13_HEADER_LEN - 8);
		break;
	default:
		if (len > OF13_HEADER_LEN)
			fprintf(out, ": %zu bytes of data", len - OF13_HEADER_LEN);
	}
	if (e)
		fprintf(out, ": (malformed: %s)", of13_err_string(e));
}
