/* NAT-PMP and PCP messages (pmp.h). */
#include "pmp.h"

#include <arpa/inet.h>
#include <string.h>

#include "lib/buf.h"

#define PCP_HEADER_LEN      24
#define PCP_MAP_LEN         36
#define PCP_OPT_PREFER_FAIL 2
#define PCP_R_BIT           0x80

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d); false for anything else,
 * except the all-zero address (none). */
static bool pull_v4(struct cursor *c, struct in_addr *ret)
{
	const uint8_t *p = cursor_bytes(c, 16);
	if (!p)
		return false;
	static const uint8_t zero[16];
	if (memcmp(p, zero, 16) == 0) {
		ret->s_addr = 0;
		return true;
	}
	if (memcmp(p, v4_mapped_prefix, 12) != 0)
		return false;
	memcpy(&ret->s_addr, p + 12, 4);
	return true;
}

static void put_v4(struct obuf *b, struct in_addr a)
{
	obuf_put_bytes(b, v4_mapped_prefix, 12);
	obuf_put_bytes(b, &a.s_addr, 4);
}

static enum pmp_result decode_natpmp(struct cursor *c, size_t len, struct pmp_request *r)
{
	if (r->opcode == PMP_OP_ADDRESS)
		return len == 2 ? PMP_SUCCESS : PMP_DROP;
	if (r->opcode != PMP_OP_MAP_UDP && r->opcode != PMP_OP_MAP_TCP)
		return PMP_UNSUPP_OPCODE;
	cursor_u16(c); /* reserved */
	r->internal_port = cursor_u16(c);
	r->external_port = cursor_u16(c);
	r->lifetime = cursor_u32(c);
	if (!cursor_ok(c) || len != 12)
		return PMP_DROP;
	r->protocol = r->opcode == PMP_OP_MAP_UDP ? 17 : 6;
	return PMP_SUCCESS;
}

static enum pmp_result decode_options(struct cursor *c, struct pmp_request *r)
{
	while (c->left > 0) {
		uint8_t code = cursor_u8(c);
		cursor_u8(c);
		uint16_t len = cursor_u16(c);
		if (!cursor_ok(c) || len > c->left || !cursor_bytes(c, (len + 3u) & ~3u))
			return PMP_MALFORMED_OPTION;
		if (code == PCP_OPT_PREFER_FAIL) {
			if (len != 0)
				return PMP_MALFORMED_OPTION;
			r->prefer_failure = true;
		} else if (code < 128) {
			return PMP_UNSUPP_OPTION; /* mandatory to process, unknown */
		}
	}
	return PMP_SUCCESS;
}

static enum pmp_result decode_pcp(struct cursor *c, size_t len, struct pmp_request *r)
{
	cursor_u16(c); /* reserved */
	r->lifetime = cursor_u32(c);
	bool client_ok = pull_v4(c, &r->client);
	if (!cursor_ok(c))
		return PMP_DROP;
	if (len % 4 || len > PMP_MAX_MESSAGE)
		return PMP_MALFORMED_REQUEST;
	if (r->opcode == PCP_OP_ANNOUNCE)
		return decode_options(c, r);
	if (r->opcode != PCP_OP_MAP)
		return PMP_UNSUPP_OPCODE;
	const uint8_t *nonce = cursor_bytes(c, PMP_NONCE_LEN);
	if (!nonce)
		return PMP_MALFORMED_REQUEST;
	memcpy(r->nonce, nonce, PMP_NONCE_LEN);
	r->protocol = cursor_u8(c);
	cursor_bytes(c, 3);
	r->internal_port = cursor_u16(c);
	r->external_port = cursor_u16(c);
	bool external_ok = pull_v4(c, &r->external);
	if (!cursor_ok(c))
		return PMP_MALFORMED_REQUEST;
	if (!client_ok)
		return PMP_ADDRESS_MISMATCH; /* not an IPv4 client: not ours */
	enum pmp_result res = decode_options(c, r);
	if (res != PMP_SUCCESS)
		return res;
	if (!external_ok)
		return PMP_MALFORMED_REQUEST;
	if (r->protocol == 0 ? r->internal_port != 0 : r->protocol != 6 && r->protocol != 17)
		return r->protocol == 0 ? PMP_MALFORMED_REQUEST : PMP_UNSUPP_PROTOCOL;
	if (r->protocol == 0 && r->lifetime != 0)
		return PMP_UNSUPP_PROTOCOL; /* only deleting "all" is supported */
	if (r->internal_port == 0 && r->lifetime != 0)
		return PMP_MALFORMED_REQUEST;
	return PMP_SUCCESS;
}

/* The order of the first checks is RFC 6887's for a server (section 8.2,
 * "General PCP Server: Processing a Request"; section 8.3 is the client's
 * processing of a response):
 *
 *   "If the received PCP request message is less than two octets long, it
 *   is silently dropped.  If the R bit is set, the message is silently
 *   dropped.  If the first octet (version) is a version that is not
 *   supported, a response is generated with the UNSUPP_VERSION result
 *   code ...  Otherwise, if the version is supported but the received
 *   message is shorter than 24 octets, the message is silently dropped."
 *
 * and then "If the length of the message exceeds 1100 octets, is not a
 * multiple of 4 octets, or is too short for the opcode in question, it is
 * invalid and a MALFORMED_REQUEST response is generated" (decode_pcp()).
 * The R bit is the top bit of the second octet in every version, NAT-PMP's
 * too (its responses are opcode + 128), so a response is never answered,
 * whatever version it claims. */
enum pmp_result pmp_decode(const uint8_t *data, size_t len, struct pmp_request *ret)
{
	struct cursor c = cursor_init(data, len);
	memset(ret, 0, sizeof(*ret));
	ret->version = cursor_u8(&c);
	ret->opcode = cursor_u8(&c);
	if (!cursor_ok(&c))
		return PMP_DROP; /* under two octets */
	if (ret->opcode & PCP_R_BIT)
		return PMP_DROP; /* a response, not a request */
	switch (ret->version) {
	case PMP_VERSION_NATPMP:
		return decode_natpmp(&c, len, ret);
	case PMP_VERSION_PCP:
		if (len < PCP_HEADER_LEN)
			return PMP_DROP;
		return decode_pcp(&c, len, ret);
	default:
		return PMP_UNSUPP_VERSION;
	}
}

void pmp_response_for(const struct pmp_request *req, enum pmp_result result,
                      struct pmp_response *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->version = req->version;
	ret->opcode = req->opcode & 0x7f;
	ret->result = result;
	ret->protocol = req->protocol;
	ret->internal_port = req->internal_port;
	ret->external_port = req->external_port;
	ret->external = req->external;
	memcpy(ret->nonce, req->nonce, PMP_NONCE_LEN);
}

/* NAT-PMP's result codes (RFC 6886 section 3.5). */
static uint16_t natpmp_result(enum pmp_result r)
{
	switch (r) {
	case PMP_SUCCESS:
		return 0;
	case PMP_UNSUPP_VERSION:
		return 1;
	case PMP_NOT_AUTHORIZED:
	case PMP_ADDRESS_MISMATCH:
		return 2;
	case PMP_NETWORK_FAILURE:
		return 3;
	case PMP_UNSUPP_OPCODE:
		return 5;
	default:
		return 4; /* out of resources */
	}
}

static size_t encode_natpmp(const struct pmp_response *r, struct obuf *b)
{
	obuf_put_u8(b, 0);
	obuf_put_u8(b, (uint8_t)(128 + r->opcode));
	obuf_put_u16(b, natpmp_result(r->result));
	obuf_put_u32(b, r->epoch);
	if (r->result == PMP_UNSUPP_VERSION || r->result == PMP_UNSUPP_OPCODE)
		return b->len;
	if (r->opcode == PMP_OP_ADDRESS) {
		obuf_put_bytes(b, &r->external.s_addr, 4);
	} else {
		obuf_put_u16(b, r->internal_port);
		obuf_put_u16(b, r->external_port);
		obuf_put_u32(b, r->lifetime);
	}
	return b->len;
}

static size_t encode_pcp(const struct pmp_response *r, struct obuf *b)
{
	/* An unsupported version is answered in the highest one we speak. */
	obuf_put_u8(b, PMP_VERSION_PCP);
	obuf_put_u8(b, (uint8_t)(PCP_R_BIT | r->opcode));
	obuf_put_u8(b, 0);
	obuf_put_u8(b, (uint8_t)r->result);
	obuf_put_u32(b, r->lifetime);
	obuf_put_u32(b, r->epoch);
	for (int i = 0; i < 12; i++)
		obuf_put_u8(b, 0);
	if (r->opcode == PCP_OP_MAP && r->result != PMP_UNSUPP_VERSION &&
	    r->result != PMP_MALFORMED_REQUEST) {
		obuf_put_bytes(b, r->nonce, PMP_NONCE_LEN);
		obuf_put_u8(b, r->protocol);
		obuf_put_u8(b, 0);
		obuf_put_u16(b, 0);
		obuf_put_u16(b, r->internal_port);
		obuf_put_u16(b, r->external_port);
		put_v4(b, r->external);
	}
	return b->len;
}

size_t pmp_encode(const struct pmp_response *r, uint8_t *out, size_t size)
{
	if (r->result == PMP_DROP)
		return 0;
	struct obuf b = {0};
	size_t len = r->version == PMP_VERSION_NATPMP ? encode_natpmp(r, &b) : encode_pcp(r, &b);
	if (b.failed || len > size) {
		obuf_free(&b);
		return 0;
	}
	memcpy(out, b.data, len);
	obuf_free(&b);
	return len;
}

const char *pmp_result_name(enum pmp_result r)
{
	static const char *const names[] = {
	    "SUCCESS",           "UNSUPP_VERSION",        "NOT_AUTHORIZED",
	    "MALFORMED_REQUEST", "UNSUPP_OPCODE",         "UNSUPP_OPTION",
	    "MALFORMED_OPTION",  "NETWORK_FAILURE",       "NO_RESOURCES",
	    "UNSUPP_PROTOCOL",   "USER_EX_QUOTA",         "CANNOT_PROVIDE_EXTERNAL",
	    "ADDRESS_MISMATCH",  "EXCESSIVE_REMOTE_PEERS"};
	if (r < 0 || (size_t)r >= sizeof(names) / sizeof(names[0]))
		return "DROP";
	return names[r];
}
