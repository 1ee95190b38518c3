/* OpenFlow 1.3 (OpenFlow Switch Specification 1.3.x, "the spec"): wire
 * constants, the decoded forms of the messages ETTM uses, and the protocol
 * errors a decoder reports. The codec is split by message family like Open
 * vSwitch's lib/ofp-*.c: msg.c (header, hello, echo, error, features, role,
 * barrier), match.c (OXM), action.c (actions and instructions), flow.c
 * (flow_mod). Every message has decode, encode and format functions;
 * decoding is bounds-checked and never trusts a length field. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/buf.h"

#define OF13_VERSION    0x04
#define OF13_HEADER_LEN 8
#define OF13_MAX_MESSAGE 65535 /* the header's 16-bit length */

/* Spec 7.1: message types. */
enum of13_type {
	OF13_HELLO = 0,
	OF13_ERROR = 1,
	OF13_ECHO_REQUEST = 2,
	OF13_ECHO_REPLY = 3,
	OF13_FEATURES_REQUEST = 5,
	OF13_FEATURES_REPLY = 6,
	OF13_SET_CONFIG = 9,
	OF13_PACKET_IN = 10,
	OF13_FLOW_REMOVED = 11,
	OF13_PORT_STATUS = 12,
	OF13_PACKET_OUT = 13,
	OF13_FLOW_MOD = 14,
	OF13_GROUP_MOD = 15,
	OF13_MULTIPART_REQUEST = 18,
	OF13_MULTIPART_REPLY = 19,
	OF13_BARRIER_REQUEST = 20,
	OF13_BARRIER_REPLY = 21,
	OF13_ROLE_REQUEST = 24,
	OF13_ROLE_REPLY = 25,
};

/* Spec 7.2.1: reserved port numbers. */
#define OF13_PORT_MAX        0xffffff00u
#define OF13_PORT_IN_PORT    0xfffffff8u
#define OF13_PORT_TABLE      0xfffffff9u
#define OF13_PORT_NORMAL     0xfffffffau
#define OF13_PORT_FLOOD      0xfffffffbu
#define OF13_PORT_ALL        0xfffffffcu
#define OF13_PORT_CONTROLLER 0xfffffffdu
#define OF13_PORT_LOCAL      0xfffffffeu
#define OF13_PORT_ANY        0xffffffffu
#define OF13_GROUP_ANY       0xffffffffu
#define OF13_NO_BUFFER       0xffffffffu

/* What a decoder found wrong, as the OFPT_ERROR type and code a switch or
 * controller would answer with (spec 7.4.4). 0 is success. */
enum of13_err {
	OF13_OK = 0,
	OF13_ERR_BAD_VERSION = 0x00010000,         /* OFPET_BAD_REQUEST, OFPBRC_BAD_VERSION */
	OF13_ERR_BAD_TYPE = 0x00010001,            /* OFPBRC_BAD_TYPE */
	OF13_ERR_BAD_LEN = 0x00010006,             /* OFPBRC_BAD_LEN */
	OF13_ERR_BAD_ACTION_TYPE = 0x00020000,     /* OFPET_BAD_ACTION, OFPBAC_BAD_TYPE */
	OF13_ERR_BAD_ACTION_LEN = 0x00020001,      /* OFPBAC_BAD_LEN */
	OF13_ERR_BAD_INSTRUCTION = 0x00030000,     /* OFPET_BAD_INSTRUCTION, OFPBIC_UNKNOWN_INST */
	OF13_ERR_BAD_INSTRUCTION_LEN = 0x00030006, /* OFPBIC_BAD_LEN */
	OF13_ERR_BAD_MATCH_TYPE = 0x00040000,      /* OFPET_BAD_MATCH, OFPBMC_BAD_TYPE */
	OF13_ERR_BAD_MATCH_LEN = 0x00040001,       /* OFPBMC_BAD_LEN */
	OF13_ERR_BAD_FIELD = 0x00040006,           /* OFPBMC_BAD_FIELD */
	OF13_ERR_DUP_FIELD = 0x0004000a,           /* OFPBMC_DUP_FIELD */
	OF13_ERR_TOO_MANY = 0x0001000a,            /* ETTM's limits (OFPBRC_EPERM) */
};

/* A short description of @err ("bad length"), for logs and messages. */
const char *of13_err_string(enum of13_err err);

struct of13_header {
	uint8_t version;
	uint8_t type;
	uint16_t length;
	uint32_t xid;
};

/* ---- msg.c ---- */

/* Pulls a header and checks that @len bytes hold exactly the message it
 * announces and that it is of version 1.3 (hellos of any version pass).
 * On OF13_ERR_BAD_VERSION, *ret_header is still filled in. */
enum of13_err of13_header_decode(const void *data, size_t len, struct of13_header *ret_header);

/* Starts a message: writes a header whose length of13_finish() fixes. */
void of13_start(struct obuf *b, uint8_t type, uint32_t xid);
/* Sets the header's length to the bytes written; -EMSGSIZE over 64 KiB. */
int of13_finish(struct obuf *b);

/* Spec 7.5.1: a hello carries the versions its sender speaks. */
struct of13_hello {
	uint32_t version_bitmap; /* bit N: version N; 0 when the hello had none */
};
enum of13_err of13_hello_decode(const void *data, size_t len, struct of13_hello *ret);
void of13_hello_encode(struct obuf *b, uint32_t xid, const struct of13_hello *h);
/* The highest version both bitmaps have, or 0 (spec 6.3.1). */
uint8_t of13_negotiate(uint32_t ours, uint32_t theirs);

/* Echo request/reply and barrier request/reply: a header and opaque data. */
void of13_simple_encode(struct obuf *b, uint8_t type, uint32_t xid, const void *data, size_t len);

struct of13_error_msg {
	uint16_t type, code;
	const uint8_t *data; /* points into the decoded message */
	size_t data_len;
};
enum of13_err of13_error_decode(const void *data, size_t len, struct of13_error_msg *ret);
void of13_error_encode(struct obuf *b, uint32_t xid, enum of13_err err, const void *request,
                       size_t request_len);

struct of13_features {
	uint64_t datapath_id;
	uint32_t n_buffers;
	uint8_t n_tables;
	uint8_t auxiliary_id;
	uint32_t capabilities;
};
enum of13_err of13_features_decode(const void *data, size_t len, struct of13_features *ret);
void of13_features_encode(struct obuf *b, uint32_t xid, const struct of13_features *f);

/* Spec 7.3.9: controller roles. */
enum of13_role {
	OF13_ROLE_NOCHANGE = 0,
	OF13_ROLE_EQUAL = 1,
	OF13_ROLE_MASTER = 2,
	OF13_ROLE_SLAVE = 3,
};
struct of13_role_msg {
	uint32_t role;
	uint64_t generation_id;
};
/* Role request and reply share a layout; @type says which. */
enum of13_err of13_role_decode(const void *data, size_t len, struct of13_role_msg *ret);
void of13_role_encode(struct obuf *b, uint8_t type, uint32_t xid, const struct of13_role_msg *r);

/* Spec 7.3.2: switch configuration. A controller that listens on a
 * switch's passive port (a "service" connection to Open vSwitch) gets no
 * asynchronous messages (packet_in, port_status) until it sets a nonzero
 * miss_send_len. */
#define OF13_CML_NO_BUFFER 0xffffu
struct of13_switch_config {
	uint16_t flags;
	uint16_t miss_send_len;
};
enum of13_err of13_set_config_decode(const void *data, size_t len, struct of13_switch_config *ret);
void of13_set_config_encode(struct obuf *b, uint32_t xid, const struct of13_switch_config *sc);

/* One line describing any message this codec knows, e.g.
 * "ROLE_REQUEST xid=0x7: role=master generation_id=10". */
void of13_format(FILE *out, const void *data, size_t len);

/* ---- match.c ---- */

/* Spec 7.2.3.7: OXM basic fields ETTM uses. */
enum of13_oxm_field {
	OF13_OXM_IN_PORT = 0,
	OF13_OXM_ETH_DST = 3,
	OF13_OXM_ETH_SRC = 4,
	OF13_OXM_ETH_TYPE = 5,
	OF13_OXM_VLAN_VID = 6,
	OF13_OXM_IP_PROTO = 10,
	OF13_OXM_IPV4_SRC = 11,
	OF13_OXM_IPV4_DST = 12,
	OF13_OXM_TCP_SRC = 13,
	OF13_OXM_TCP_DST = 14,
	OF13_OXM_UDP_SRC = 15,
	OF13_OXM_UDP_DST = 16,
	OF13_OXM_ICMPV4_TYPE = 19,
	OF13_OXM_ICMPV4_CODE = 20,
	OF13_OXM_ARP_OP = 21,
	OF13_OXM_ARP_SPA = 22,
	OF13_OXM_ARP_TPA = 23,
	OF13_OXM_ARP_SHA = 24,
	OF13_OXM_ARP_THA = 25,
};

#define OF13_OXM_MAX_LEN 8 /* the longest value ETTM uses (fields of 6 bytes fit) */
#define OF13_MATCH_MAX   16

struct of13_oxm {
	uint8_t field; /* enum of13_oxm_field */
	bool has_mask;
	uint8_t len; /* of the value */
	uint8_t value[OF13_OXM_MAX_LEN];
	uint8_t mask[OF13_OXM_MAX_LEN];
};

struct of13_match {
	unsigned n;
	struct of13_oxm oxm[OF13_MATCH_MAX];
};

/* Adds a field from an integer in host order (1, 2, 4 bytes) or 6 bytes of
 * Ethernet address; @mask NULL for an exact match. -ENOSPC or -EINVAL. */
int of13_match_add(struct of13_match *m, enum of13_oxm_field field, uint64_t value,
                   const uint64_t *mask);
int of13_match_add_eth(struct of13_match *m, enum of13_oxm_field field, const uint8_t addr[6],
                       const uint8_t *mask);
/* The field's value as an integer, if present. */
bool of13_match_get(const struct of13_match *m, enum of13_oxm_field field, uint64_t *ret_value,
                    uint64_t *ret_mask);

/* Spec 7.2.3.1: struct ofp_match with OXM, padded to 8 bytes. */
enum of13_err of13_match_decode(struct cursor *c, struct of13_match *ret);
void of13_match_encode(struct obuf *b, const struct of13_match *m);
/* e.g. "in_port=3,eth_type=0x0800,ipv4_dst=10.77.1.0/255.255.255.0", or
 * "any". */
void of13_match_format(FILE *out, const struct of13_match *m);

/* One OXM TLV (also the payload of a set_field action). */
enum of13_err of13_oxm_decode(struct cursor *c, struct of13_oxm *ret);
void of13_oxm_encode(struct obuf *b, const struct of13_oxm *o);
void of13_oxm_format(FILE *out, const struct of13_oxm *o);

/* ---- action.c ---- */

enum of13_action_type {
	OF13_ACTION_OUTPUT = 0,
	OF13_ACTION_GROUP = 22,
	OF13_ACTION_SET_FIELD = 25,
};

struct of13_action {
	uint16_t type;
	union {
		struct {
			uint32_t port;
			uint16_t max_len;
		} output;
		uint32_t group_id;
		struct of13_oxm set_field;
	};
};

enum of13_instruction_type {
	OF13_INSTRUCTION_GOTO_TABLE = 1,
	OF13_INSTRUCTION_WRITE_ACTIONS = 3,
	OF13_INSTRUCTION_APPLY_ACTIONS = 4,
	OF13_INSTRUCTION_CLEAR_ACTIONS = 5,
};

#define OF13_ACTIONS_MAX      16
#define OF13_INSTRUCTIONS_MAX 4

struct of13_instruction {
	uint16_t type;
	uint8_t table_id; /* goto_table */
	unsigned n_actions;
	struct of13_action actions[OF13_ACTIONS_MAX];
};

enum of13_err of13_action_decode(struct cursor *c, struct of13_action *ret);
void of13_action_encode(struct obuf *b, const struct of13_action *a);
void of13_action_format(FILE *out, const struct of13_action *a);

/* Decodes instructions until the cursor is empty. */
enum of13_err of13_instructions_decode(struct cursor *c, struct of13_instruction *ret,
                                       unsigned *ret_n);
void of13_instructions_encode(struct obuf *b, const struct of13_instruction *in, unsigned n);
void of13_instructions_format(FILE *out, const struct of13_instruction *in, unsigned n);

/* ---- flow.c ---- */

enum of13_flow_command {
	OF13_FLOW_ADD = 0,
	OF13_FLOW_MODIFY = 1,
	OF13_FLOW_MODIFY_STRICT = 2,
	OF13_FLOW_DELETE = 3,
	OF13_FLOW_DELETE_STRICT = 4,
};

struct of13_flow_mod {
	uint64_t cookie, cookie_mask;
	uint8_t table_id;
	uint8_t command;
	uint16_t idle_timeout, hard_timeout;
	uint16_t priority;
	uint32_t buffer_id;
	uint32_t out_port, out_group;
	uint16_t flags;
	struct of13_match match;
	unsigned n_instructions;
	struct of13_instruction instructions[OF13_INSTRUCTIONS_MAX];
};

/* Spec 7.3.4.1, flow_mod flags: send OFPT_FLOW_REMOVED when the flow is
 * removed (in 1.3 also when a controller deletes it: reason OFPRR_DELETE). */
#define OF13_FF_SEND_FLOW_REM 1u

/* A flow_mod with the defaults a new flow wants (buffer none, out_port and
 * out_group any). */
void of13_flow_mod_init(struct of13_flow_mod *fm, uint8_t command);
enum of13_err of13_flow_mod_decode(const void *data, size_t len, struct of13_flow_mod *ret);
void of13_flow_mod_encode(struct obuf *b, uint32_t xid, const struct of13_flow_mod *fm);
void of13_flow_mod_format(FILE *out, const struct of13_flow_mod *fm);

/* ---- packet.c: packet_in and packet_out (spec 7.4.1, 7.3.7) ---- */

struct of13_packet_in {
	uint32_t buffer_id;
	uint16_t total_len;
	uint8_t reason; /* 0 no match, 1 action, 2 invalid TTL */
	uint8_t table_id;
	uint64_t cookie;
	struct of13_match match; /* in_port at least */
	const uint8_t *data;     /* the frame, pointing into the message */
	size_t data_len;
};
enum of13_err of13_packet_in_decode(const void *data, size_t len, struct of13_packet_in *ret);
void of13_packet_in_encode(struct obuf *b, uint32_t xid, const struct of13_packet_in *pi);

struct of13_packet_out {
	uint32_t buffer_id;
	uint32_t in_port;
	unsigned n_actions;
	struct of13_action actions[OF13_ACTIONS_MAX];
	const uint8_t *data;
	size_t data_len;
};
enum of13_err of13_packet_out_decode(const void *data, size_t len, struct of13_packet_out *ret);
void of13_packet_out_encode(struct obuf *b, uint32_t xid, const struct of13_packet_out *po);

/* ---- port.c: ports, port_status, port description and statistics ---- */

#define OF13_PORT_NAME_LEN        16
#define OF13_PORT_STATE_LINK_DOWN 1u
#define OF13_PORT_CONFIG_DOWN     1u

struct of13_port {
	uint32_t port_no;
	uint8_t hw_addr[6];
	char name[OF13_PORT_NAME_LEN + 1];
	uint32_t config, state;
	uint32_t curr, advertised, supported, peer;
	uint32_t curr_speed, max_speed; /* kbit/s */
};

enum of13_port_reason {
	OF13_PORT_ADD = 0,
	OF13_PORT_DELETE = 1,
	OF13_PORT_MODIFY = 2,
};

struct of13_port_status {
	uint8_t reason;
	struct of13_port port;
};
enum of13_err of13_port_status_decode(const void *data, size_t len, struct of13_port_status *ret);
void of13_port_status_encode(struct obuf *b, uint32_t xid, const struct of13_port_status *ps);

/* Spec 7.3.5: multipart types ETTM uses. */
enum of13_multipart_type {
	OF13_MP_FLOW = 1,
	OF13_MP_PORT_STATS = 4,
	OF13_MP_GROUP = 6,
	OF13_MP_PORT_DESC = 13,
};
#define OF13_MP_MORE 1u /* flags: more replies follow */

/* A multipart request with an empty body (port description) or a port
 * number (port statistics; OF13_PORT_ANY for all). */
void of13_port_desc_request_encode(struct obuf *b, uint32_t xid);
void of13_port_stats_request_encode(struct obuf *b, uint32_t xid, uint32_t port_no);

/* Port descriptions and port statistics: any number of ports, in as many
 * parts as the switch sends (each part at most one 64 KiB message, about
 * a thousand ports). A reply part is checked whole first, then @fn is
 * called once per port; nothing is called for a part that is wrong. */
enum of13_err of13_port_desc_reply_decode(const void *data, size_t len, uint16_t *ret_flags,
                                          void (*fn)(void *userdata, const struct of13_port *p),
                                          void *userdata);
void of13_port_desc_reply_encode(struct obuf *b, uint32_t xid, uint16_t flags,
                                 const struct of13_port *ports, unsigned n);

struct of13_port_stats {
	uint32_t port_no;
	uint64_t rx_packets, tx_packets, rx_bytes, tx_bytes, rx_dropped, tx_dropped;
	uint64_t rx_errors, tx_errors;
	uint32_t duration_sec, duration_nsec;
};

enum of13_err of13_port_stats_reply_decode(const void *data, size_t len, uint16_t *ret_flags,
                                           void (*fn)(void *userdata,
                                                      const struct of13_port_stats *st),
                                           void *userdata);
void of13_port_stats_reply_encode(struct obuf *b, uint32_t xid, uint16_t flags,
                                  const struct of13_port_stats *stats, unsigned n);

/* The multipart type and flags of a request or reply. */
enum of13_err of13_multipart_decode(const void *data, size_t len, uint16_t *ret_type,
                                    uint16_t *ret_flags);

/* ---- group.c: group_mod (spec 7.3.4.2) and group statistics ---- */

enum of13_group_command {
	OF13_GROUP_ADD = 0,
	OF13_GROUP_MODIFY = 1,
	OF13_GROUP_DELETE = 2,
};

enum of13_group_type {
	OF13_GROUP_TYPE_ALL = 0,
	OF13_GROUP_TYPE_SELECT = 1,
	OF13_GROUP_TYPE_INDIRECT = 2,
	OF13_GROUP_TYPE_FF = 3,
};

/* A group_mod is one message, so its buckets are bounded only by the
 * message's 64 KiB: of13_group_mod_encode() fails with -EMSGSIZE past it
 * (about 1,300 buckets of a set-field and an output each). */
struct of13_bucket {
	uint16_t weight;
	uint32_t watch_port, watch_group;
	unsigned n_actions;
	struct of13_action actions[OF13_ACTIONS_MAX];
};

/* The buckets are the group_mod's own: of13_group_mod_free() releases
 * them; a copy by assignment shares them. */
struct of13_group_mod {
	uint16_t command;
	uint8_t type;
	uint32_t group_id;
	unsigned n_buckets;
	size_t cap_buckets;
	struct of13_bucket *buckets;
};
/* A new zeroed bucket at the end, or NULL when memory ran out. */
struct of13_bucket *of13_group_mod_add_bucket(struct of13_group_mod *gm);
void of13_group_mod_free(struct of13_group_mod *gm);
/* On success *ret owns its buckets (of13_group_mod_free()). */
enum of13_err of13_group_mod_decode(const void *data, size_t len, struct of13_group_mod *ret);
/* -EMSGSIZE when the group does not fit in one message. */
int of13_group_mod_encode(struct obuf *b, uint32_t xid, const struct of13_group_mod *gm);
void of13_group_mod_format(FILE *out, const struct of13_group_mod *gm);

/* Group statistics: request for @group_id (OF13_GROUP_ALL for all). */
#define OF13_GROUP_ALL 0xfffffffcu
void of13_group_stats_request_encode(struct obuf *b, uint32_t xid, uint32_t group_id);

struct of13_group_stats {
	uint32_t group_id;
	uint32_t ref_count;
	uint64_t packet_count, byte_count;
	uint32_t duration_sec, duration_nsec;
	/* Per bucket: the counters' place in the message, 16 bytes each
	 * (packets, then bytes, in network order); of13_group_stats_bucket(). */
	unsigned n_buckets;
	const uint8_t *bucket_counters;
};
void of13_group_stats_bucket(const struct of13_group_stats *gs, unsigned i, uint64_t *packets,
                             uint64_t *bytes);
/* Calls @fn for each group of a group statistics reply. */
enum of13_err of13_group_stats_reply_decode(const void *data, size_t len, uint16_t *ret_flags,
                                            void (*fn)(void *userdata,
                                                       const struct of13_group_stats *gs),
                                            void *userdata);
void of13_group_stats_reply_encode(struct obuf *b, uint32_t xid, uint16_t flags,
                                   const struct of13_group_stats *gs, unsigned n);

/* ---- flowstats.c: flow statistics (spec 7.3.5.2) ---- */

struct of13_flow_stats_request {
	uint8_t table_id; /* 0xff: all tables */
	uint32_t out_port, out_group;
	uint64_t cookie, cookie_mask;
	struct of13_match match;
};
void of13_flow_stats_request_encode(struct obuf *b, uint32_t xid,
                                    const struct of13_flow_stats_request *r);
enum of13_err of13_flow_stats_request_decode(const void *data, size_t len,
                                             struct of13_flow_stats_request *ret);

struct of13_flow_stats {
	uint8_t table_id;
	uint32_t duration_sec, duration_nsec;
	uint16_t priority, idle_timeout, hard_timeout, flags;
	uint64_t cookie, packet_count, byte_count;
	struct of13_match match;
	unsigned n_instructions;
	struct of13_instruction instructions[OF13_INSTRUCTIONS_MAX];
};
/* Calls @fn for each flow of a flow statistics reply. */
enum of13_err of13_flow_stats_reply_decode(const void *data, size_t len, uint16_t *ret_flags,
                                           void (*fn)(void *userdata,
                                                      const struct of13_flow_stats *fs),
                                           void *userdata);
void of13_flow_stats_reply_encode(struct obuf *b, uint32_t xid, uint16_t flags,
                                  const struct of13_flow_stats *fs, unsigned n);
