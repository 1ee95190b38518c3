/* The store's typed tables: the hard state every host replicates.
 *
 * A command names a table, an operation (put or delete) and one row; the
 * proposer's clock is part of the command, so applying it is deterministic:
 * every replica reaches the same state, and a command invalid for the state
 * it meets is rejected identically everywhere, with a reason. Each table has
 * a versioned binary encoding, a JSON form for `ettmctl store dump`, and a
 * merge rule for commands orphaned by a forced recovery (docs/store.md). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Version of the command and snapshot encodings. A replica refuses
 * encodings newer than it knows. */
#define STORE_ENCODING_VERSION 3 /* 2: locations, links; 3: attestations, devices, manager */

#define STORE_NAME_MAX    32
#define STORE_ADDR_MAX    64
#define STORE_DIGEST_MAX  65 /* hex SHA-256 and its NUL */
#define STORE_MAC_MAX     18
#define STORE_NOTE_MAX    128
#define STORE_REASON_MAX  200
#define STORE_VERSION_MAX 24
#define STORE_POLICY_MAX  32768

enum store_table {
	STORE_CLUSTER = 1, /* one row: generation and where it began */
	STORE_MEMBERS,
	STORE_ADMISSIONS,
	STORE_TRUSTED,
	STORE_POLICY, /* one row: the active policy and its epoch */
	STORE_NAT_BLOCKS,
	STORE_NAT_MAPPINGS,
	STORE_LEASES,
	STORE_CONFLICTS,
	STORE_LOCATIONS,    /* where each host's AEE meets the network */
	STORE_LINKS,        /* switch-to-switch links */
	STORE_ATTESTATIONS, /* each host's last attestation, refusal or revocation */
	STORE_DEVICES,      /* unmanaged devices allowed by policy */
	STORE_MANAGER,      /* one row: the agent that forwards for the devices */
	STORE_TABLE_MAX,
};

enum store_op {
	STORE_PUT = 1,
	STORE_DELETE = 2,
};

enum store_role {
	STORE_ROLE_STANDBY = 0, /* the numbers of raft.h's roles */
	STORE_ROLE_VOTER = 1,
	STORE_ROLE_SPARE = 2,
};

struct store_cluster {
	uint64_t generation; /* 1 for a new cluster; +1 at each forced recovery */
	uint64_t from_term;  /* the log position the generation began from */
	uint64_t from_index;
	char by[STORE_NAME_MAX]; /* the host that declared it */
};

struct store_member {
	uint64_t id; /* key; the Raft server id */
	char name[STORE_NAME_MAX];
	char address[STORE_ADDR_MAX]; /* Raft address, host:port */
	char peer[STORE_ADDR_MAX];    /* peer API address, host:port */
	uint8_t role;                 /* enum store_role, as last assigned */
	char raft_version[STORE_VERSION_MAX];
	uint64_t joined_ms;
};

struct store_admission {
	char host[STORE_NAME_MAX]; /* key */
	char ek_fp[STORE_DIGEST_MAX];
	char ak_fp[STORE_DIGEST_MAX];
	char measurement[STORE_DIGEST_MAX];
	char mac[STORE_MAC_MAX];
	uint64_t dpid;
	uint32_t port;
	uint64_t time_ms;
};

struct store_trusted {
	char digest[STORE_DIGEST_MAX]; /* key; lowercase hex SHA-256 */
	char note[STORE_NOTE_MAX];
	uint64_t added_ms;
};

struct store_policy {
	uint64_t epoch; /* in a put: the epoch the edit was made on */
	char *text;
};

struct store_nat_block {
	uint16_t start; /* key; aligned to size */
	uint16_t size;  /* a power of two */
	uint64_t owner; /* member id */
	uint64_t claimed_ms;
};

struct store_nat_mapping {
	uint8_t proto;        /* key (with public_port): 6 TCP, 17 UDP */
	uint16_t public_port; /* key */
	uint64_t owner;
	uint32_t guest_addr; /* host byte order */
	uint16_t guest_port;
	uint64_t expires_ms;
};

struct store_lease {
	char mac[STORE_MAC_MAX]; /* key */
	uint32_t addr;           /* host byte order */
	char host[STORE_NAME_MAX];
	uint64_t expires_ms;
};

struct store_conflict {
	uint64_t id; /* key; assigned at apply */
	uint8_t table;
	uint64_t generation; /* the generation the orphan came from */
	char reason[STORE_REASON_MAX];
};

/* Where a host's AEE sits, as its LLDP announcement told the master. Learned,
 * not configured: the master commits a row when it first sees the host or
 * the host moves, so the next master starts from the same topology. */
struct store_location {
	char host[STORE_NAME_MAX]; /* key */
	char mac[STORE_MAC_MAX];   /* the AEE's uplink address */
	uint64_t dpid;
	uint32_t port;
	uint32_t control_addr, guest_addr; /* host byte order */
	uint64_t seen_ms;                  /* when this place was first seen */
};

/* One direction of a switch-to-switch link, learned by LLDP; the master
 * deletes it when it has not been seen for a while. */
struct store_link {
	uint64_t dpid; /* key, with port */
	uint32_t port;
	uint64_t peer_dpid;
	uint32_t peer_port;
	uint64_t seen_ms;
};

/* What the leader last concluded of a host's attestation (docs/trust.md).
 * An admission is what opens the port; this row says why there is one, or
 * why not. */
enum store_attest_state {
	STORE_ATTEST_ADMITTED = 1, /* the last quote was good */
	STORE_ATTEST_REFUSED = 2,  /* the last attempt failed: @reason */
	STORE_ATTEST_REVOKED = 3,  /* the admin revoked the host: no attempt is heard */
};

struct store_attestation {
	char host[STORE_NAME_MAX]; /* key */
	uint8_t state;             /* enum store_attest_state */
	char reason[STORE_REASON_MAX];
	char ek_fp[STORE_DIGEST_MAX];        /* its TPM: a host name stays with one TPM */
	char measurement[STORE_DIGEST_MAX];  /* the PCR value the host claimed */
	uint32_t reset_count, restart_count; /* its TPM's, from the last good quote */
	uint64_t time_ms;                    /* of the last attempt */
};

/* An unmanaged device (printer, phone, visitor) allowed by policy, never by
 * trust (docs/devices.md). The row's existence is the allowance; where it
 * sits and its IPv4 address are learned by the master from its frames. */
struct store_device {
	char mac[STORE_MAC_MAX]; /* key; lowercase "xx:xx:xx:xx:xx:xx", unicast */
	char name[STORE_NAME_MAX];
	uint32_t address; /* host byte order; 0: not known yet */
	uint64_t dpid;    /* where it was last seen; 0: not yet */
	uint32_t port;
	uint64_t allowed_ms; /* when it was allowed */
};

/* The member whose AEE forwards every device's traffic, kept by the
 * leader at an admitted, located, reachable member. */
struct store_manager {
	char host[STORE_NAME_MAX]; /* "": none */
	uint64_t since_ms;
};

union store_row {
	struct store_cluster cluster;
	struct store_member member;
	struct store_admission admission;
	struct store_trusted trusted;
	struct store_policy policy;
	struct store_nat_block nat_block;
	struct store_nat_mapping nat_mapping;
	struct store_lease lease;
	struct store_conflict conflict;
	struct store_location location;
	struct store_link link;
	struct store_attestation attestation;
	struct store_device device;
	struct store_manager manager;
};

struct store_cmd {
	uint8_t table;    /* enum store_table */
	uint8_t op;       /* enum store_op */
	uint64_t time_ms; /* the proposer's clock */
	union store_row row;
};

/* What applying a command did. */
struct store_result {
	bool applied;
	char reason[STORE_REASON_MAX]; /* why it was rejected */
	uint64_t value;                /* a put's assigned value: policy epoch, conflict id */
	uint64_t index;                /* the log index it was applied at; 0 unknown */
};

struct store_state;

/* A new, empty state (generation 0: not yet bootstrapped). */
int store_state_new(struct store_state **ret_state);
void store_state_free(struct store_state *s);

/* Encodes @cmd; *ret_data is free()d by the caller. */
int store_cmd_encode(const struct store_cmd *cmd, uint8_t **ret_data, size_t *ret_len);

/* Decodes a command. Returns 0, or -EBADMSG with a reason in @error that
 * names the field; *ret_cmd is then untouched. Free with store_cmd_done(). */
int store_cmd_decode(const void *data, size_t len, struct store_cmd *ret_cmd, char *error,
                     size_t error_size);
void store_cmd_done(struct store_cmd *cmd);

/* Applies @cmd to @s. A command the state does not allow is not an error:
 * *ret_result says it was rejected and why, and @s is unchanged. Returns 0,
 * or -ENOMEM (then @s is unchanged too). */
int store_state_apply(struct store_state *s, const struct store_cmd *cmd,
                      struct store_result *ret_result);

/* Decodes and applies; -EBADMSG for a corrupt command. */
int store_state_apply_encoded(struct store_state *s, const void *data, size_t len,
                              struct store_result *ret_result, char *error, size_t error_size);

/* The whole state, encoded; *ret_data is free()d by the caller. */
int store_state_snapshot(const struct store_state *s, uint8_t **ret_data, size_t *ret_len);

/* Replaces @s with a snapshot's content. On -EBADMSG (with @error) @s is
 * unchanged. */
int store_state_restore(struct store_state *s, const void *data, size_t len, char *error,
                        size_t error_size);

/* Every table as JSON: {"cluster": {...}, "members": [...], ...}. */
json_t *store_state_dump(const struct store_state *s);

/* JSON of one table (an array, or an object for one-row tables). */
json_t *store_table_dump(const struct store_state *s, enum store_table table);

const char *store_table_name(enum store_table table);

/* "voter", "standby", "spare" (enum store_role, the numbers of Raft's
 * roles), or "none". */
const char *store_role_name(unsigned role);
int store_table_from_name(const char *name);

/* Read access for the modules. Rows are owned by the state and valid until
 * its next change. */
const struct store_cluster *store_cluster(const struct store_state *s);
const struct store_policy *store_policy(const struct store_state *s);
size_t store_count(const struct store_state *s, enum store_table table);
const void *store_row(const struct store_state *s, enum store_table table, size_t i);
const struct store_member *store_member_find(const struct store_state *s, uint64_t id);
const struct store_member *store_member_find_name(const struct store_state *s, const char *name);
const struct store_admission *store_admission_find(const struct store_state *s, const char *host);
const struct store_location *store_location_find(const struct store_state *s, const char *host);
const struct store_attestation *store_attestation_find(const struct store_state *s,
                                                       const char *host);
/* "admitted", "refused", "revoked" (enum store_attest_state), or "none". */
const char *store_attest_state_name(unsigned state);
const struct store_device *store_device_find(const struct store_state *s, const char *mac);
const struct store_manager *store_manager(const struct store_state *s);

/* True when @mac is a device key: lowercase "xx:xx:xx:xx:xx:xx", neither
 * multicast nor all zero. */
bool store_device_mac_valid(const char *mac);
/* True when @name is 1-31 letters, digits, '.', '_' or '-'. */
bool store_device_name_valid(const char *name);

/* Merge of a command orphaned by a forced recovery into the new cluster's
 * state (docs/store.md, "Merge rules"). */
enum store_merge {
	STORE_MERGE_SKIP,     /* already there, or not the old side's to decide */
	STORE_MERGE_APPLY,    /* propose @cmd (possibly rewritten) */
	STORE_MERGE_CONFLICT, /* cannot be merged: record @reason for the admin */
};

enum store_merge store_merge(const struct store_state *s, struct store_cmd *cmd, char *reason,
                             size_t reason_size);
