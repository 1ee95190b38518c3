/* LLDP frames (lldp.h). A TLV header is 7 bits of type and 9 of length. */
#include "lldp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"

#define TLV_END      0
#define TLV_CHASSIS  1
#define TLV_PORT     2
#define TLV_TTL      3
#define TLV_SYSNAME  5
#define TLV_ORG      127
#define ID_LOCAL     7 /* chassis and port ID subtype "locally assigned" */
#define LLDP_TTL_SEC 3

/* A locally administered company ID (IEEE CID: the X bit set), so ETTM's TLV
 * never collides with a registered organisation's. */
static const uint8_t ettm_oui[3] = {0x0a, 0xe7, 0x7d};

static const uint8_t lldp_dst[6] = {0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e};

static void tlv(struct obuf *b, unsigned type, const void *value, size_t len)
{
	obuf_put_u16(b, (uint16_t)(type << 9 | (len & 0x1ff)));
	obuf_put_bytes(b, value, len);
}

static void tlv_id(struct obuf *b, unsigned type, const char *id)
{
	uint8_t v[64];
	size_t n = strnlen(id, sizeof(v) - 1);
	v[0] = ID_LOCAL;
	memcpy(v + 1, id, n);
	tlv(b, type, v, n + 1);
}

size_t lldp_encode(uint8_t *buf, size_t size, const struct lldp_info *in)
{
	struct obuf b = {0};
	char id[48];
	obuf_put_bytes(&b, lldp_dst, 6);
	obuf_put_bytes(&b, in->src_mac, 6);
	obuf_put_u16(&b, LLDP_ETHERTYPE);

	struct obuf org = {0};
	obuf_put_bytes(&org, ettm_oui, 3);
	obuf_put_u8(&org, in->kind);
	if (in->kind == LLDP_PROBE) {
		snprintf(id, sizeof(id), "dpid:%016" PRIx64, in->dpid);
		tlv_id(&b, TLV_CHASSIS, id);
		snprintf(id, sizeof(id), "%" PRIu32, in->port);
		tlv_id(&b, TLV_PORT, id);
		obuf_put_u64(&org, in->dpid);
		obuf_put_u32(&org, in->port);
	} else {
		snprintf(id, sizeof(id), "ettm:%.31s", in->host);
		tlv_id(&b, TLV_CHASSIS, id);
		tlv_id(&b, TLV_PORT, "uplink");
		obuf_put_u32(&org, in->control_addr);
		obuf_put_u32(&org, in->guest_addr);
	}
	uint8_t ttl[2] = {0, LLDP_TTL_SEC};
	tlv(&b, TLV_TTL, ttl, 2);
	if (in->kind == LLDP_ANNOUNCE)
		tlv(&b, TLV_SYSNAME, in->host, strnlen(in->host, sizeof(in->host) - 1));
	tlv(&b, TLV_ORG, org.data, org.len);
	tlv(&b, TLV_END, NULL, 0);

	size_t n = 0;
	if (!b.failed && !org.failed && b.len <= size) {
		memcpy(buf, b.data, b.len);
		n = b.len;
	}
	obuf_free(&org);
	obuf_free(&b);
	return n;
}

int lldp_decode(const uint8_t *frame, size_t len, struct lldp_info *ret)
{
	struct cursor c = cursor_init(frame, len);
	struct lldp_info info = {0};
	cursor_bytes(&c, 6); /* destination */
	const uint8_t *src = cursor_bytes(&c, 6);
	if (cursor_u16(&c) != LLDP_ETHERTYPE || !cursor_ok(&c))
		return -EBADMSG;
	memcpy(info.src_mac, src, 6);

	bool ours = false, have_name = false;
	unsigned seen = 0;
	for (;;) {
		uint16_t h = cursor_u16(&c);
		unsigned type = h >> 9, tlen = h & 0x1ff;
		const uint8_t *v = cursor_bytes(&c, tlen);
		if (!cursor_ok(&c))
			return -EBADMSG;
		if (type == TLV_END)
			break;
		/* The first three TLVs are chassis, port and TTL, in order. */
		if (seen < 3 && type != seen + 1)
			return -EBADMSG;
		if (seen < 3 && tlen < 2)
			return -EBADMSG;
		seen++;
		if (type == TLV_SYSNAME) {
			if (tlen >= sizeof(info.host) || memchr(v, 0, tlen))
				return -EBADMSG;
			memcpy(info.host, v, tlen);
			info.host[tlen] = '\0';
			have_name = true;
		}
		if (type != TLV_ORG || tlen < 4 || memcmp(v, ettm_oui, 3) != 0)
			continue;
		struct cursor o = cursor_init(v + 3, tlen - 3);
		info.kind = cursor_u8(&o);
		if (info.kind == LLDP_PROBE) {
			info.dpid = cursor_u64(&o);
			info.port = cursor_u32(&o);
		} else if (info.kind == LLDP_ANNOUNCE) {
			info.control_addr = cursor_u32(&o);
			info.guest_addr = cursor_u32(&o);
		} else {
			return -EBADMSG;
		}
		if (!cursor_ok(&o))
			return -EBADMSG;
		ours = true;
	}
	if (seen < 3)
		return -EBADMSG;
	if (!ours)
		return -ENOENT;
	if (info.kind == LLDP_ANNOUNCE && (!have_name || !info.host[0]))
		return -EBADMSG;
	*ret = info;
	return 0;
}
