/* ARP frames for the master's answers and gateway lookups (nat.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "lib/buf.h"
#include "nat.h"

static void pull_mac(struct cursor *c, uint8_t mac[6])
{
	const uint8_t *p = cursor_bytes(c, 6);
	if (p)
		memcpy(mac, p, 6);
	else
		memset(mac, 0, 6);
}

int arp_parse(const uint8_t *frame, size_t len, struct arp_msg *ret)
{
	struct cursor c = cursor_init(frame, len);
	struct arp_msg m;
	pull_mac(&c, m.eth_dst);
	pull_mac(&c, m.eth_src);
	uint16_t type = cursor_u16(&c), htype = cursor_u16(&c), ptype = cursor_u16(&c);
	uint8_t hlen = cursor_u8(&c), plen = cursor_u8(&c);
	m.op = cursor_u16(&c);
	pull_mac(&c, m.sha);
	m.spa.s_addr = htonl(cursor_u32(&c));
	pull_mac(&c, m.tha);
	m.tpa.s_addr = htonl(cursor_u32(&c));
	if (!cursor_ok(&c) || type != 0x0806 || htype != 1 || ptype != 0x0800 || hlen != 6 ||
	    plen != 4 || (m.op != 1 && m.op != 2))
		return -EBADMSG;
	*ret = m;
	return 0;
}

size_t arp_build(const struct arp_msg *m, uint8_t frame[ARP_FRAME_LEN])
{
	struct obuf b = {0};
	obuf_put_bytes(&b, m->eth_dst, 6);
	obuf_put_bytes(&b, m->eth_src, 6);
	obuf_put_u16(&b, 0x0806);
	obuf_put_u16(&b, 1);
	obuf_put_u16(&b, 0x0800);
	obuf_put_u8(&b, 6);
	obuf_put_u8(&b, 4);
	obuf_put_u16(&b, m->op);
	obuf_put_bytes(&b, m->sha, 6);
	obuf_put_u32(&b, ntohl(m->spa.s_addr));
	obuf_put_bytes(&b, m->tha, 6);
	obuf_put_u32(&b, ntohl(m->tpa.s_addr));
	size_t len = 0;
	if (!b.failed && b.len == ARP_FRAME_LEN) {
		memcpy(frame, b.data, ARP_FRAME_LEN);
		len = ARP_FRAME_LEN;
	}
	obuf_free(&b);
	return len;
}
