/* The replicated store: every host's full replica of the network's hard
 * state, kept in agreement by Raft (libraft, behind this module alone).
 *
 * Other modules propose commands (from any host: a follower forwards to the
 * leader), read the committed state, ask for a linearizable read (barrier),
 * and subscribe to committed changes. Membership (joining, keeping the voter
 * count up, removal) and forced recovery after a majority is lost are
 * handled here; see docs/store.md. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "tables.h"

#define STORE_MAX_SEEDS 8

struct store_options {
	uint64_t id;                       /* the Raft server id: the host's id */
	char name[STORE_NAME_MAX];         /* the host's name */
	char raft_address[STORE_ADDR_MAX]; /* A.B.C.D:PORT where Raft listens */
	char peer_address[STORE_ADDR_MAX]; /* A.B.C.D:PORT of this agent's peer API */
	char dir[PATH_MAX];                /* Raft's log and snapshots, plus the journal */
	bool bootstrap;                    /* create a new cluster if there is no state */
	char seeds[STORE_MAX_SEEDS][STORE_ADDR_MAX]; /* peer API addresses to join through */
	unsigned n_seeds;
	unsigned election_ms;        /* default 300 */
	unsigned heartbeat_ms;       /* default 50 */
	unsigned snapshot_threshold; /* default 8192 */
	unsigned voters;             /* 0: 3, or 5 with at least 7 members */
	unsigned promote_after_ms;   /* a voter unreachable this long is replaced; 3000 */
};

/* Whether the TLS key with fingerprint @fp (hex SHA-256 of its
 * SubjectPublicKeyInfo) may speak Raft as server @raft_id: 0, or a
 * negative errno with *ret_error (docs/trust.md). */
typedef int (*store_raft_check_fn)(void *userdata, const char *fp, uint64_t raft_id,
                                   char **ret_error);

/* Fills @o with the defaults above (id, name, addresses and dir empty). */
void store_options_default(struct store_options *o);

struct store;

/* Opens the store on @loop and starts Raft: bootstraps a new cluster,
 * resumes from the data directory, or joins through the seeds. Returns 0
 * or a negative errno with *ret_error. Every table must be registered
 * (store_tables_register()) before. */
int store_open(uv_loop_t *loop, const struct store_options *o, struct store **ret_store,
               char **ret_error);

/* Installs @check (NULL: every key) for the Raft connections, which run
 * over mutual TLS 1.3 when the agent has a TLS identity (api/tls.h):
 * asked once a connection's handshake is done, and again every second for
 * every connection that runs. */
void store_set_raft_check(struct store *s, store_raft_check_fn check, void *userdata);

/* Stops Raft and frees the store once every handle is closed, then calls
 * @cb (may be NULL). */
void store_close(struct store *s, void (*cb)(void *userdata), void *userdata);

/* @status 0: the command was committed and applied; @result says whether the
 * state accepted it. Negative errno: it may or may not have been committed
 * (-EAGAIN: no leader now; -ETIMEDOUT; -ECONNREFUSED...), @error says why. */
typedef void (*store_done_cb)(void *userdata, int status, const struct store_result *result,
                              const char *error);

/* Proposes @cmd. @cb runs exactly once, never from inside this call.
 * Returns 0, or a negative errno (then @cb never runs). */
int store_propose(struct store *s, const struct store_cmd *cmd, store_done_cb cb, void *userdata);

/* Linearizable read: @cb runs (status 0) once this replica has applied
 * everything committed before the call. */
int store_barrier(struct store *s, store_done_cb cb, void *userdata);

/* The committed state as this replica has applied it. */
const struct store_state *store_state(const struct store *s);

/* Whether this replica's state was wiped to rejoin the cluster as a fresh
 * replica (the cluster went on to a newer generation) and it has not yet
 * applied what was committed when it rejoined: its state is partial, and
 * what is built from it would be wrong. @cb runs once it has caught up. */
bool store_catching_up(const struct store *s);
void store_set_caught_up_cb(struct store *s, void (*cb)(void *userdata), void *userdata);

/* Called after each applied command of @table (0: every table). */
typedef void (*store_watch_cb)(void *userdata, const struct store_cmd *cmd,
                               const struct store_result *result);
struct store_subscription;
/* Subscribes @cb to @table's applied commands. Returns 0 and, when
 * @ret_sub is not NULL, the handle that store_unsubscribe() releases (as
 * store_close() releases every one left); or -ENOMEM. */
int store_subscribe(struct store *s, unsigned table, store_watch_cb cb, void *userdata,
                    struct store_subscription **ret_sub);
/* Releases @sub (NULL: nothing): @cb is not called again, even by a
 * notification under way. */
void store_unsubscribe(struct store *s, struct store_subscription *sub);

bool store_is_leader(const struct store *s);
/* As the leader: 1 when it heard from member @id within the last election
 * timeout (or @id is itself), 0 when not; -EAGAIN when this replica does not
 * lead, -ENOENT when @id is not in the Raft configuration. */
int store_member_reachable(struct store *s, uint64_t id);
/* The Raft term this replica is in (0 before Raft runs). */
uint64_t store_term(const struct store *s);
/* The newest generation this replica belongs to or was told of: the one
 * it applied, or the one it declared by a recovery or was reset to, from
 * the moment it is told (before the new generation is committed). */
uint64_t store_known_generation(const struct store *s);
/* The leader this replica knows of, or 0. */
uint64_t store_leader_id(struct store *s);

/* The peer address of the leader that last accepted this host's
 * store.join, "" if none did. A host that joined but is not admitted yet
 * replicates nothing (trust/gate.h), so it attests to that leader. */
const char *store_joined_via(const struct store *s);
/* The TLS key fingerprint that leader named in its answer, "" if none. */
const char *store_joined_key(const struct store *s);
/* The peer address of the member that other members, asked by store.hello
 * in the last 5 s, named as their leader; "" if none. A member that speaks
 * no Raft (not admitted: trust/gate.h) knows no leader by Raft, and
 * attests to that one. */
const char *store_heard_leader(const struct store *s);
/* The ids of the voters in the configuration this replica has. */
size_t store_voters(const struct store *s, uint64_t *ids, size_t max);

/* Forced recovery after a majority of voters is lost for good (what
 * `ettmctl cluster recover` does): asks every member whether it is alive
 * and declares a new membership of those that answer, under a new
 * generation. @down (NULL-terminated, or NULL) names members known to be
 * gone (their switch ports are down): they are not asked, so the round does
 * not wait out their timeouts. @done gets {generation, members} or why not
 * (a leader is still reachable). Returns 0 or a negative errno with
 * *ret_error. */
typedef void (*store_recover_cb)(void *userdata, json_t *result, const char *error);
int store_recover(struct store *s, const char *const *down, store_recover_cb done, void *userdata,
                  char **ret_error);

/* This replica's view: role, leader, term, commit and applied index,
 * generation, and each member with its role and, where known, reachability
 * (the leader knows it; followers report null). */
json_t *store_status(struct store *s);

/* Peer API and admin commands ("store.*", "cluster*"): answers @cmd from
 * another agent or from ettmctl. Returns as ctl_handler_fn does (0,
 * negative errno with *ret_error, or CTL_DEFERRED). */
struct ctl_client;
struct ctl_request;
int store_handle_request(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                         json_t **ret_result, char **ret_error);

struct store_cmd;
/* Proposes @cmd on behalf of a control request and answers it when the
 * command is applied: with {applied, reason, value}, or, when
 * @reject_is_error, with the rejection's reason as the error. Returns
 * CTL_DEFERRED or a negative errno with *ret_error. */
int store_propose_reply(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                        const struct store_cmd *cmd, bool reject_is_error, char **ret_error);

/* Adds "@key": @fn(@userdata) to every `cluster` reply of this host (the
 * switch controller's failure detector); @fn NULL removes it. */
void store_set_cluster_extra(struct store *s, const char *key, json_t *(*fn)(void *userdata),
                             void *userdata);

/* The version of the Raft library this agent runs ("libraft 0.15.0"). */
const char *store_raft_version(void);

struct service;
/* The store as a service of the agent (service.c). */
extern const struct service store_service;
