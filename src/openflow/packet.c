/* packet_in (spec 7.4.1) and packet_out (spec 7.3.7). */
#include <inttypes.h>
#include <string.h>

#include "internal.h"

enum of13_err of13_packet_in_decode(const void *data, size_t len, struct of13_packet_in *ret)
{
	struct cursor c;
	enum of13_err e = of13_body(data, len, OF13_PACKET_IN, &c);
	if (e)
		return e;
	struct of13_packet_in pi = {
	    .buffer_id = cursor_u32(&c),
	    .total_len = cursor_u16(&c),
	    .reason = cursor_u8(&c),
	    .table_id = cursor_u8(&c),
	    .cookie = cursor_u64(&c),
	};
	if (!cursor_ok(&c))
		return OF13_ERR_BAD_LEN;
	if ((e = of13_match_decode(&c, &pi.match)))
		return e;
	if (!cursor_bytes(&c, 2)) /* pad */
		return OF13_ERR_BAD_LEN;
	pi.data_len = c.left;
	pi.data = cursor_bytes(&c, c.left);
	*ret = pi;
	return OF13_OK;
}

void of13_packet_in_encode(struct obuf *b, uint32_t xid, const struct of13_packet_in *pi)
{
	of13_start(b, OF13_PACKET_IN, xid);
	obuf_put_u32(b, pi->buffer_id);
	obuf_put_u16(b, pi->total_len);
	obuf_put_u8(b, pi->reason);
	obuf_put_u8(b, pi->table_id);
	obuf_put_u64(b, pi->cookie);
	of13_match_encode(b, &pi->match);
	obuf_put_u16(b, 0);
	obuf_put_bytes(b, pi->data, pi->data_len);
}

enum of13_err of13_packet_out_decode(const void *data, size_t len, struct of13_packet_out *ret)
{
	struct cursor c;
	enum of13_err e = of13_body(data, len, OF13_PACKET_OUT, &c);
	if (e)
		return e;
	struct of13_packet_out po = {.buffer_id = cursor_u32(&c), .in_port = cursor_u32(&c)};
	uint16_t actions_len = cursor_u16(&c);
	const uint8_t *actions = cursor_bytes(&c, 6) ? cursor_bytes(&c, actions_len) : NULL;
	if (!actions)
		return OF13_ERR_BAD_LEN;
	struct cursor a = cursor_init(actions, actions_len);
	while (a.left) {
		if (po.n_actions == OF13_ACTIONS_MAX)
			return OF13_ERR_TOO_MANY;
		if ((e = of13_action_decode(&a, &po.actions[po.n_actions++])))
			return e;
	}
	po.data_len = c.left;
	po.data = cursor_bytes(&c, c.left);
	*ret = po;
	return OF13_OK;
}

void of13_packet_out_encode(struct obuf *b, uint32_t xid, const struct of13_packet_out *po)
{
	of13_start(b, OF13_PACKET_OUT, xid);
	obuf_put_u32(b, po->buffer_id);
	obuf_put_u32(b, po->in_port);
	size_t at = b->len;
	obuf_put_u16(b, 0);
	obuf_put_bytes(b, "\0\0\0\0\0\0", 6);
	size_t start = b->len;
	for (unsigned i = 0; i < po->n_actions; i++)
		of13_action_encode(b, &po->actions[i]);
	size_t actions_len = b->len - start;
	of13_put_len(b, at, actions_len);
	obuf_put_bytes(b, po->data, po->data_len);
}
