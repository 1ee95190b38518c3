/* The store's tables: the hard state every host replicates, as tables that
 * their owners register with their operations.
 *
 * A command names a table, an operation (put or delete) and one row; the
 * proposer's clock is part of the command, so applying it is deterministic:
 * every replica reaches the same state, and a command invalid for the state
 * it meets is rejected identically everywhere, with a reason. Each table has
 * a stable id, a binary encoding introduced at some encoding version, a JSON
 * form for `ettmctl store dump`, and a merge rule for commands orphaned by a
 * forced recovery (docs/store.md).
 *
 * The store knows only its own tables (cluster, members, conflicts, and for
 * now policy and leases); a service defines its rows and table ids in its
 * own tables.h and registers them with store_tables_register() before any
 * state is made. */
#pragma once

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Version of the command and snapshot encodings. A replica refuses
 * encodings newer than it knows. */
/* 2: locations, links; 3: attestations, devices, manager; 4: labels;
 * 5: the TLS key of an admission and an attestation; 6: policy epochs and
 * acknowledgements */
#define STORE_ENCODING_VERSION 6

#define STORE_NAME_MAX    32
#define STORE_ADDR_MAX    64
#define STORE_DIGEST_MAX  65 /* hex SHA-256 and its NUL */
#define STORE_MAC_MAX     18
#define STORE_NOTE_MAX    128
#define STORE_REASON_MAX  200
#define STORE_VERSION_MAX 24
#define STORE_POLICY_MAX  32768

/* The largest row a table may have, in memory: a command carries one. */
#define STORE_ROW_MAX 512

/* The store's own tables. The ids are on the wire: never renumber one.
 * Services' ids (3, 4, 6, 7, 10-14 today) are in their own tables.h. */
#define STORE_CLUSTER       1 /* one row: generation and where it began */
#define STORE_MEMBERS       2
#define STORE_POLICY        5 /* one row: the active policy and its epoch */
#define STORE_LEASES        8
#define STORE_CONFLICTS     9
#define STORE_POLICY_EPOCHS 16 /* one row: the epoch being installed, and the other one */
#define STORE_POLICY_ACKS   17 /* the newest epoch each member installed */

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

/* The policy service will take this table over. */
struct store_policy {
	uint64_t epoch; /* in a put: the epoch the edit was made on */
	char *text;
};

/* A change of policy in two phases (docs/policy.md, "Epochs"). A new
 * epoch is first *pending*: every AEE installs it beside the *active* one,
 * by which the AEEs still judge and stamp their guests' packets, and
 * acknowledges it (struct store_policy_ack); the leader then activates it.
 * The zero row: no change under way, and no other epoch known. */
struct store_policy_epochs {
	uint64_t pending; /* the policy's epoch while pending, else 0; in a put:
	                     the epoch to activate */
	/* The other epoch installed: the active one while an epoch is pending;
	 * after that, the one it replaced (0: no policy), which receivers keep
	 * a while for the packets stamped with it. */
	uint64_t other;
	char *other_text;
	uint64_t since_ms;     /* when the pending epoch was committed */
	uint64_t activated_ms; /* when the last one was activated */
};

struct store_policy_ack {
	char host[STORE_NAME_MAX]; /* key */
	uint64_t epoch;            /* the newest epoch it installed */
	uint64_t time_ms;
};

/* The DHCP service will take this table over. */
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

struct store_cmd {
	uint8_t table;    /* a registered table's id */
	uint8_t op;       /* enum store_op */
	uint64_t time_ms; /* the proposer's clock */
	/* One row of the table, of its registered type: reach it with
	 * STORE_CMD_ROW(). */
	alignas(max_align_t) unsigned char row[STORE_ROW_MAX];
};

/* @cmd's row as a @type * (the table's row type; registration checks that
 * it fits). */
#define STORE_CMD_ROW(cmd, type) ((type *)(void *)(cmd)->row)

/* What applying a command did. */
struct store_result {
	bool applied;
	char reason[STORE_REASON_MAX]; /* why it was rejected */
	uint64_t value;                /* a put's assigned value: policy epoch, conflict id */
	uint64_t index;                /* the log index it was applied at; 0 unknown */
};

struct store_state;
struct obuf;
struct cursor;

/* Merge of a command orphaned by a forced recovery into the new cluster's
 * state (docs/store.md, "Merge rules"). */
enum store_merge {
	STORE_MERGE_SKIP,     /* already there, or not the old side's to decide */
	STORE_MERGE_APPLY,    /* propose @cmd (possibly rewritten) */
	STORE_MERGE_CONFLICT, /* cannot be merged: record @reason for the admin */
};

/* A table and its operations, as its owner registers it. */
struct store_table {
	uint8_t id;       /* stable, on the wire */
	const char *name; /* in dumps and `ettmctl store dump TABLE` */
	uint8_t version;  /* the encoding version that introduced the table */
	size_t row_size;  /* at most STORE_ROW_MAX */
	bool single;      /* one row (zero until put) instead of rows by key */
	/* Orders two rows by key (keyed tables only). */
	int (*cmp)(const void *a, const void *b);
	void (*encode)(struct obuf *b, const void *row);
	/* Fills @row (row_size bytes, zeroed) or fails @c. */
	void (*decode)(struct cursor *c, void *row);
	/* A row whose layout changed: the encoding version that changed it
	 * last, and the decoder of the rows of encodings before it, told their
	 * @version (0 and NULL: the layout never changed). */
	uint8_t row_version;
	void (*decode_old)(struct cursor *c, void *row, unsigned version);
	/* Checks @cmd against @s and applies it with store_table_put() and
	 * store_table_del(), or rejects it with store_reject() leaving @s
	 * unchanged. Returns 0 or -ENOMEM. */
	int (*apply)(struct store_state *s, const struct store_cmd *cmd, struct store_result *res);
	/* What becomes of @cmd orphaned by a forced recovery; may rewrite it.
	 * On STORE_MERGE_CONFLICT, *ret_reason says why (as error_set()
	 * does: newly allocated, NULL when that failed). */
	enum store_merge (*merge)(const struct store_state *s, struct store_cmd *cmd,
	                          char **ret_reason);
	json_t *(*to_json)(const void *row);
	/* Frees what @row owns (may be NULL: rows own nothing). */
	void (*release)(void *row);
};

/* Registers the NULL-terminated @tables. All or none: a table whose id or
 * name is taken by another, or whose row exceeds STORE_ROW_MAX, is refused
 * with -EEXIST or -EINVAL and *ret_error. Registering the same table again
 * does nothing. The store registers its own tables (store_core_tables) by
 * itself. */
int store_tables_register(const struct store_table *const *tables, char **ret_error);

/* The registered table @id, or NULL. */
const struct store_table *store_table_lookup(unsigned id);

extern const struct store_table *const store_core_tables[];

/* A new, empty state (generation 0: not yet bootstrapped). */
int store_state_new(struct store_state **ret_state);
void store_state_free(struct store_state *s);

/* Encodes @cmd; *ret_data is free()d by the caller. */
int store_cmd_encode(const struct store_cmd *cmd, uint8_t **ret_data, size_t *ret_len);

/* Decodes a command. Returns 0, or -EBADMSG with *ret_error (a reason that
 * names the field); *ret_cmd is then untouched. Free with store_cmd_done(). */
int store_cmd_decode(const void *data, size_t len, struct store_cmd *ret_cmd, char **ret_error);
void store_cmd_done(struct store_cmd *cmd);

/* Applies @cmd to @s. A command the state does not allow is not an error:
 * *ret_result says it was rejected and why, and @s is unchanged. Returns 0,
 * or -ENOMEM (then @s is unchanged too). */
int store_state_apply(struct store_state *s, const struct store_cmd *cmd,
                      struct store_result *ret_result);

/* Decodes and applies; -EBADMSG for a corrupt command. */
int store_state_apply_encoded(struct store_state *s, const void *data, size_t len,
                              struct store_result *ret_result, char **ret_error);

/* The whole state, encoded; *ret_data is free()d by the caller. */
int store_state_snapshot(const struct store_state *s, uint8_t **ret_data, size_t *ret_len);

/* Replaces @s with a snapshot's content (of any encoding up to
 * STORE_ENCODING_VERSION: tables introduced later start empty). On
 * -EBADMSG (with *ret_error) @s is unchanged. */
int store_state_restore(struct store_state *s, const void *data, size_t len, char **ret_error);

/* Every table as JSON: {"cluster": {...}, "members": [...], ...}. */
json_t *store_state_dump(const struct store_state *s);

/* JSON of one table (an array, or an object for one-row tables); NULL for
 * an unknown table. */
json_t *store_table_dump(const struct store_state *s, unsigned table);

/* The table's name, or NULL when no table has the id. */
const char *store_table_name(unsigned table);
/* The id of the table named @name, or -ENOENT. */
int store_table_from_name(const char *name);

/* "voter", "standby", "spare" (enum store_role, the numbers of Raft's
 * roles), or "none". */
const char *store_role_name(unsigned role);

/* Read access for the modules. Rows are owned by the state and valid until
 * its next change. A one-row table counts one row. */
const struct store_cluster *store_cluster(const struct store_state *s);
const struct store_policy *store_policy(const struct store_state *s);
const struct store_policy_epochs *store_policy_epochs(const struct store_state *s);
/* The epoch the AEEs judge their own guests' packets by, and its text
 * (NULL: no policy). */
uint64_t store_policy_active(const struct store_state *s, const char **ret_text);
size_t store_count(const struct store_state *s, unsigned table);
const void *store_row(const struct store_state *s, unsigned table, size_t i);
/* Every row of keyed table @table at once, for a loop over all of them:
 * an array of *@ret_n rows of the table's row type, in key order (NULL
 * and 0 when it has none). store_row() looks the table up on each call. */
const void *store_rows(const struct store_state *s, unsigned table, size_t *ret_n);
const struct store_member *store_member_find(const struct store_state *s, uint64_t id);
const struct store_member *store_member_find_name(const struct store_state *s, const char *name);

/* For the tables' apply functions. */

/* The row of table @table with @key's key (a row of the table's type, only
 * its key read), or NULL. For a one-row table, its row. */
const void *store_table_get(const struct store_state *s, unsigned table, const void *key);
/* Inserts or replaces (releasing the old one) the row with @row's key; a
 * one-row table's row is replaced. Returns 0 or -ENOMEM. */
int store_table_put(struct store_state *s, unsigned table, const void *row);
/* Deletes the row with @key's key, if any; a one-row table's row becomes
 * zero. */
void store_table_del(struct store_state *s, unsigned table, const void *key);
/* Row @i of @table for an in-place edit that leaves its key alone. */
void *store_row_edit(struct store_state *s, unsigned table, size_t i);
/* Rejects: res->applied false, res->reason the formatted text. */
void store_reject(struct store_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Deletes the row @cmd names (rejecting "no such @what" when there is none)
 * or puts @cmd's row. */
int store_apply_simple(struct store_state *s, const struct store_cmd *cmd, struct store_result *res,
                       const char *what);
/* Orders two integers, for the tables' cmp. */
static inline int store_cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

/* The merge rule of @cmd's table (an unknown table's command is a
 * conflict); *ret_reason as the table's merge sets it. */
enum store_merge store_merge(const struct store_state *s, struct store_cmd *cmd, char **ret_reason);

/* The merge rule "the later decision wins", for a table whose rows say
 * when they were decided: an orphaned put (decided at @put_ms) is
 * re-applied unless the new cluster's row (@have_row, decided at @row_ms)
 * is as recent; an orphaned delete unless the row was put again after it. */
static inline enum store_merge store_merge_later(const struct store_cmd *cmd, bool have_row,
                                                 uint64_t row_ms, uint64_t put_ms)
{
	if (cmd->op == STORE_DELETE)
		return have_row && row_ms <= cmd->time_ms ? STORE_MERGE_APPLY : STORE_MERGE_SKIP;
	return have_row && row_ms >= put_ms ? STORE_MERGE_SKIP : STORE_MERGE_APPLY;
}
