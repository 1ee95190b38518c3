/* Ports (spec 7.2.1), port_status (7.4.3), and the port description and
 * port statistics multiparts (7.3.5.6, 7.3.5.7). */
#include <inttypes.h>
#include <string.h>

#include "internal.h"

#define PORT_LEN       64
#define PORT_STATS_LEN 112

static void port_decode(struct cursor *c, struct of13_port *p)
{
	*p = (struct of13_port){.port_no = cursor_u32(c)};
	cursor_u32(c);
	const uint8_t *hw = cursor_bytes(c, 6);
	if (hw)
		memcpy(p->hw_addr, hw, 6);
	cursor_u16(c);
	const uint8_t *name = cursor_bytes(c, OF13_PORT_NAME_LEN);
	if (name) {
		/* Spec: NUL-terminated; a full name is cut, never over-read. */
		memcpy(p->name, name, OF13_PORT_NAME_LEN);
		p->name[OF13_PORT_NAME_LEN] = '\0';
	}
	p->config = cursor_u32(c);
	p->state = cursor_u32(c);
	p->curr = cursor_u32(c);
	p->advertised = cursor_u32(c);
	p->supported = cursor_u32(c);
	p->peer = cursor_u32(c);
	p->curr_speed = cursor_u32(c);
	p->max_speed = cursor_u32(c);
}

static void port_encode(struct obuf *b, const struct of13_port *p)
{
	char name[OF13_PORT_NAME_LEN] = {0};
	size_t n = strnlen(p->name, OF13_PORT_NAME_LEN - 1);
	memcpy(name, p->name, n);
	obuf_put_u32(b, p->port_no);
	obuf_put_u32(b, 0);
	obuf_put_bytes(b, p->hw_addr, 6);
	obuf_put_u16(b, 0);
	obuf_put_bytes(b, name, OF13_PORT_NAME_LEN);
	obuf_put_u32(b, p->config);
	obuf_put_u32(b, p->state);
	obuf_put_u32(b, p->curr);
	obuf_put_u32(b, p->advertised);
	obuf_put_u32(b, p->supported);
	obuf_put_u32(b, p->peer);
	obuf_put_u32(b, p->curr_speed);
	obuf_put_u32(b, p->max_speed);
}

enum of13_err of13_port_status_decode(const void *data, size_t len, struct of13_port_status *ret)
{
	struct cursor c;
	enum of13_err e = of13_body(data, len, OF13_PORT_STATUS, &c);
	if (e)
		return e;
	struct of13_port_status ps = {.reason = cursor_u8(&c)};
	cursor_bytes(&c, 7);
	port_decode(&c, &ps.port);
	if (!cursor_ok(&c) || c.left)
		return OF13_ERR_BAD_LEN;
	*ret = ps;
	return OF13_OK;
}

void of13_port_status_encode(struct obuf *b, uint32_t xid, const struct of13_port_status *ps)
{
	of13_start(b, OF13_PORT_STATUS, xid);
	obuf_put_u8(b, ps->reason);
	obuf_put_bytes(b, "\0\0\0\0\0\0\0", 7);
	port_encode(b, &ps->port);
}

void of13_mp_start(struct obuf *b, uint8_t type, uint32_t xid, uint16_t mp_type, uint16_t flags)
{
	of13_start(b, type, xid);
	obuf_put_u16(b, mp_type);
	obuf_put_u16(b, flags);
	obuf_put_u32(b, 0);
}

enum of13_err of13_multipart_decode(const void *data, size_t len, uint16_t *ret_type,
                                    uint16_t *ret_flags)
{
	struct of13_header h;
	enum of13_err e = of13_header_decode(data, len, &h);
	if (e)
		return e;
	if (h.type != OF13_MULTIPART_REQUEST && h.type != OF13_MULTIPART_REPLY)
		return OF13_ERR_BAD_TYPE;
	struct cursor c =
	    cursor_init((const uint8_t *)data + OF13_HEADER_LEN, len - OF13_HEADER_LEN);
	uint16_t type = cursor_u16(&c), flags = cursor_u16(&c);
	if (!cursor_ok(&c) || !cursor_bytes(&c, 4))
		return OF13_ERR_BAD_LEN;
	*ret_type = type;
	*ret_flags = flags;
	return OF13_OK;
}

enum of13_err of13_mp_body(const void *data, size_t len, uint8_t type, uint16_t mp_type,
                           uint16_t *ret_flags, struct cursor *ret)
{
	uint16_t got;
	struct of13_header h;
	enum of13_err e = of13_multipart_decode(data, len, &got, ret_flags);
	if (e)
		return e;
	of13_header_decode(data, len, &h);
	if (h.type != type || got != mp_type)
		return OF13_ERR_BAD_TYPE;
	*ret = cursor_init((const uint8_t *)data + OF13_HEADER_LEN + OF13_MP_HEADER_LEN,
	                   len - OF13_HEADER_LEN - OF13_MP_HEADER_LEN);
	return OF13_OK;
}

void of13_port_desc_request_encode(struct obuf *b, uint32_t xid)
{
	of13_mp_start(b, OF13_MULTIPART_REQUEST, xid, OF13_MP_PORT_DESC, 0);
}

void of13_port_stats_request_encode(struct obuf *b, uint32_t xid, uint32_t port_no)
{
	of13_mp_start(b, OF13_MULTIPART_REQUEST, xid, OF13_MP_PORT_STATS, 0);
	obuf_put_u32(b, port_no);
	obuf_put_u32(b, 0);
}

enum of13_err of13_port_desc_reply_decode(const void *data, size_t len, uint16_t *ret_flags,
                                          void (*fn)(void *userdata, const struct of13_port *p),
                                          void *userdata)
{
	struct cursor c;
	enum of13_err e =
	    of13_mp_body(data, len, OF13_MULTIPART_REPLY, OF13_MP_PORT_DESC, ret_flags, &c);
	if (e)
		return e;
	if (c.left % PORT_LEN)
		return OF13_ERR_BAD_LEN;
	while (c.left) {
		struct of13_port p;
		port_decode(&c, &p);
		fn(userdata, &p);
	}
	return OF13_OK;
}

void of13_port_desc_reply_encode(struct obuf *b, uint32_t xid, uint16_t flags,
                                 const struct of13_port *ports, unsigned n)
{
	of13_mp_start(b, OF13_MULTIPART_REPLY, xid, OF13_MP_PORT_DESC, flags);
	for (unsigned i = 0; i < n; i++)
		port_encode(b, &ports[i]);
}

enum of13_err of13_port_stats_reply_decode(const void *data, size_t len, uint16_t *ret_flags,
                                           void (*fn)(void *userdata,
                                                      const struct of13_port_stats *st),
                                           void *userdata)
{
	struct cursor c;
	enum of13_err e =
	    of13_mp_body(data, len, OF13_MULTIPART_REPLY, OF13_MP_PORT_STATS, ret_flags, &c);
	if (e)
		return e;
	if (c.left % PORT_STATS_LEN)
		return OF13_ERR_BAD_LEN;
	while (c.left) {
		struct of13_port_stats s = {.port_no = cursor_u32(&c)};
		cursor_u32(&c);
		s.rx_packets = cursor_u64(&c);
		s.tx_packets = cursor_u64(&c);
		s.rx_bytes = cursor_u64(&c);
		s.tx_bytes = cursor_u64(&c);
		s.rx_dropped = cursor_u64(&c);
		s.tx_dropped = cursor_u64(&c);
		s.rx_errors = cursor_u64(&c);
		s.tx_errors = cursor_u64(&c);
		cursor_bytes(&c, 32); /* frame, overrun, CRC errors, collisions */
		s.duration_sec = cursor_u32(&c);
		s.duration_nsec = cursor_u32(&c);
		fn(userdata, &s);
	}
	return OF13_OK;
}

void of13_port_stats_reply_encode(struct obuf *b, uint32_t xid, uint16_t flags,
                                  const struct of13_port_stats *stats, unsigned n)
{
	of13_mp_start(b, OF13_MULTIPART_REPLY, xid, OF13_MP_PORT_STATS, flags);
	for (unsigned i = 0; i < n; i++) {
		const struct of13_port_stats *s = &stats[i];
		obuf_put_u32(b, s->port_no);
		obuf_put_u32(b, 0);
		obuf_put_u64(b, s->rx_packets);
		obuf_put_u64(b, s->tx_packets);
		obuf_put_u64(b, s->rx_bytes);
		obuf_put_u64(b, s->tx_bytes);
		obuf_put_u64(b, s->rx_dropped);
		obuf_put_u64(b, s->tx_dropped);
		obuf_put_u64(b, s->rx_errors);
		obuf_put_u64(b, s->tx_errors);
		for (int k = 0; k < 4; k++)
			obuf_put_u64(b, 0);
		obuf_put_u32(b, s->duration_sec);
		obuf_put_u32(b, s->duration_nsec);
	}
}

void of13_put_len(struct obuf *b, size_t at, size_t len)
{
	if (!b->failed) {
		b->data[at] = (uint8_t)(len >> 8);
		b->data[at + 1] = (uint8_t)len;
	}
}
