/* NAT-PMP (RFC 6886) and PCP (RFC 6887) on the wire: decoding a client's
 * request and encoding the server's response. Pure; bounds-checked (any
 * bytes either decode or are refused with a result code, never over-read).
 * One server answers both on UDP port 5351: version 0 is NAT-PMP, version 2
 * is PCP (RFC 6887 section 9). */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PMP_PORT        5351
#define PMP_MAX_MESSAGE 1100 /* PCP's limit; NAT-PMP messages are smaller */
#define PMP_NONCE_LEN   12

#define PMP_VERSION_NATPMP 0
#define PMP_VERSION_PCP    2

/* Opcodes. NAT-PMP: 0 external address, 1 map UDP, 2 map TCP. PCP: 0
 * ANNOUNCE, 1 MAP, 2 PEER. */
#define PMP_OP_ADDRESS  0
#define PMP_OP_MAP_UDP  1
#define PMP_OP_MAP_TCP  2
#define PCP_OP_ANNOUNCE 0
#define PCP_OP_MAP      1
#define PCP_OP_PEER     2

/* Results, numbered as PCP's (RFC 6887 section 7.4); NAT-PMP's are mapped
 * when encoding. */
enum pmp_result {
	PMP_SUCCESS = 0,
	PMP_UNSUPP_VERSION = 1,
	PMP_NOT_AUTHORIZED = 2,
	PMP_MALFORMED_REQUEST = 3,
	PMP_UNSUPP_OPCODE = 4,
	PMP_UNSUPP_OPTION = 5,
	PMP_MALFORMED_OPTION = 6,
	PMP_NETWORK_FAILURE = 7,
	PMP_NO_RESOURCES = 8,
	PMP_UNSUPP_PROTOCOL = 9,
	PMP_USER_EX_QUOTA = 10,
	PMP_CANNOT_PROVIDE_EXTERNAL = 11,
	PMP_ADDRESS_MISMATCH = 12,
	PMP_EXCESSIVE_REMOTE_PEERS = 13,
	PMP_DROP = -1, /* not answerable: drop silently */
};

struct pmp_request {
	uint8_t version; /* 0 or 2; for an unsupported version, what was sent */
	uint8_t opcode;
	uint32_t lifetime;            /* requested, seconds; 0 deletes */
	uint8_t protocol;             /* 6 or 17 (0: all, PCP only) */
	uint16_t internal_port;       /* 0 with lifetime 0: all mappings */
	uint16_t external_port;       /* suggested; 0 none */
	struct in_addr client;        /* PCP: the client's address as it says */
	struct in_addr external;      /* PCP: suggested external address; 0 none */
	uint8_t nonce[PMP_NONCE_LEN]; /* PCP MAP */
	bool prefer_failure;          /* PCP PREFER_FAILURE option */
};

struct pmp_response {
	uint8_t version;
	uint8_t opcode; /* the request's; the R bit / +128 is added */
	enum pmp_result result;
	uint32_t epoch;    /* seconds since the server's mappings began */
	uint32_t lifetime; /* granted; in PCP errors, how long the error holds */
	uint8_t protocol;
	uint16_t internal_port, external_port;
	struct in_addr external;
	uint8_t nonce[PMP_NONCE_LEN];
};

/* Decodes @len bytes into @ret. Returns PMP_SUCCESS, an error result to
 * answer with (@ret then holds what the response must echo: version,
 * opcode, nonce...), or PMP_DROP. */
enum pmp_result pmp_decode(const uint8_t *data, size_t len, struct pmp_request *ret);

/* The response to @req with @result and the other fields of @r; returns its
 * length in @out (at least PMP_MAX_MESSAGE bytes), or 0 when none is due. */
size_t pmp_encode(const struct pmp_response *r, uint8_t *out, size_t size);

/* A response skeleton for @req: version, opcode, protocol, ports, nonce. */
void pmp_response_for(const struct pmp_request *req, enum pmp_result result,
                      struct pmp_response *ret);

const char *pmp_result_name(enum pmp_result r);
