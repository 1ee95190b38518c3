/* Private to src/store: the store's own structs and the functions its
 * files (store.c, forward.c, upkeep.c, recovery.c, requests.c, bench.c)
 * share. Never included outside src/store. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "api/client.h"
#include "fence.h"
#include "fsm.h"
#include "journal.h"
#include "membership.h"
#include "store.h"

#define TICK_MS            250
#define PEER_TIMEOUT_MS    1000
#define FORWARD_TIMEOUT_MS 5000
#define HELLO_EVERY_TICKS  2
/* How long store_heard_leader() goes by one answer. */
#define HELLO_LEADER_MS  5000
#define PROBE_TIMEOUT_MS 700

enum store_phase {
	PHASE_RUNNING,
	PHASE_PROBING,    /* at start: asking peers for their generation first */
	PHASE_RESTARTING, /* raft closed, about to start again (recover, reset) */
	PHASE_REMOVED,    /* removed by the admin: raft stopped for good */
	PHASE_FAILED,     /* a corrupt entry: raft stopped, see fatal */
	PHASE_CLOSING,
};

/* How the next Raft instance starts. */
enum start_mode {
	START_NORMAL,
	START_BOOTSTRAP,
	START_RECOVER,
};

/* A store_subscribe() handle. Released while the store notifies, it is
 * only marked (cb NULL) and freed when the notification is over. */
struct store_subscription {
	unsigned table;
	store_watch_cb cb;
	void *userdata;
	struct store_subscription *next;
};

/* A proposal or barrier waiting for its callback. */
struct pending {
	union {
		struct raft_apply apply;
		struct raft_barrier barrier;
	};
	struct store *store;
	store_done_cb cb;
	void *userdata;
	uint64_t wait_index;  /* follower: applied index to wait for */
	uint64_t deadline_ms; /* follower: uv_now() after which the wait fails */
	char leader[STORE_NAME_MAX + STORE_ADDR_MAX + 8]; /* follower: who answered */
	bool has_result; /* a forwarded proposal's, delivered after the wait */
	struct store_result result;
	struct pending *next;
};

struct store {
	uv_loop_t *loop;
	struct store_options o;
	char raft_dir[PATH_MAX]; /* o.dir/raft: what a reset forgets */
	struct store_state *state;
	struct journal *journal;
	enum store_phase phase;
	char fatal[256];
	/* What another module adds to `cluster` (store_set_cluster_extra()). */
	const char *extra_key;
	json_t *(*extra_fn)(void *userdata);
	void *extra_userdata;

	/* The Raft instance; re-created in place by recover and reset. */
	struct raft raft;
	struct raft_io io;
	struct fence fence; /* libraft's TCP transport behind the generation fence */
	struct store_fsm fsm;
	bool raft_open;
	bool raft_closing;       /* raft_close() called or due, its callback not yet run */
	uint64_t drain_until_ms; /* the close waits for the leader's disk writes until then */
	enum start_mode next_mode;
	struct raft_configuration recover_conf;

	uv_timer_t tick;
	unsigned ticks;
	struct store_subscription *subscribers;
	unsigned notifying;                  /* depth of notify() calls */
	struct pending *waiting_barriers;    /* followers' barriers, by index */
	struct forward_clock *forward_clock; /* expires them (forward.c) */

	/* Membership changes: one at a time, leader only. */
	bool changing;
	struct raft_change change;
	uint64_t change_id;
	int change_role;
	struct membership members;

	/* Joining: where to ask next. */
	unsigned seed_next;
	char redirect[STORE_ADDR_MAX];
	char join_to[STORE_ADDR_MAX];    /* where the join in flight went */
	char joined_via[STORE_ADDR_MAX]; /* the leader that last accepted it */
	char joined_key[65];             /* that leader's TLS key, "" if none */
	bool join_in_flight;

	/* Forced recovery: the cluster row to commit once leader. */
	struct store_cluster pending_generation;
	bool generation_pending;
	bool orphans_pending;
	bool wipe_on_restart;
	/* Wiped to rejoin as a fresh replica, and not yet caught up: the state
	 * is partial (store_catching_up()). */
	bool catching_up, catchup_in_flight;
	void (*caught_up_cb)(void *userdata);
	void *caught_up_userdata;
	bool hello_in_flight;
	unsigned confirming; /* store.hello calls checking what the fence heard */
	unsigned hello_next;
	/* The leader the last answer to store.hello named, and when (uv_now). */
	char hello_leader[STORE_NAME_MAX];
	uint64_t hello_leader_ms;
	uint64_t probe_generation; /* the generation this host had at start */
	/* The generation this host belongs to or was told to join, even before
	 * its state has it (a restart, a reset): what the fence shows. */
	uint64_t generation_floor;
	uint64_t fence_newer;           /* a newer generation the fence met; acted on at tick */
	store_raft_check_fn raft_check; /* who may speak Raft (store_set_raft_check()) */
	void *raft_check_userdata;
	uint64_t orphans_generation; /* merge orphans once this generation is applied */
	struct probe *probe;         /* while PHASE_PROBING */

	void (*close_cb)(void *userdata);
	void *close_userdata;
	/* Peer calls whose callback will still get this store: it is freed
	 * only when they are all back. */
	int calls;
	bool freeing;
};

/* Freed when the timer is closed and every call has answered. */
struct probe {
	struct store *s; /* NULL once the store closed */
	int waiting;     /* calls not answered yet */
	int refs;        /* the timer and each call */
	uint64_t highest;
	uv_timer_t timer;
	bool done;
};

/* store.c */
void store_stop_raft(struct store *s, enum store_phase then);
void store_handle_self_removed(struct store *s);
int store_wipe_raft_state(struct store *s);
void store_start_raft(struct store *s);
void store_free_final(struct store *s);

uint64_t store_last_term(const struct raft *r);

/* forward.c */
/* How long a follower waits for each step of a forwarded command: the
 * leader's answer, then its own apply of the answered index. */
unsigned store_forward_timeout_ms(const struct store *s);
int store_call(struct store *s, const char *address, const char *cmd, json_t *args,
               unsigned timeout_ms, ctl_call_cb cb, void *userdata);
void store_pending_done(struct pending *p, int status, const struct store_result *res,
                        const char *error);
int store_propose_local(struct store *s, const uint8_t *data, size_t len, store_done_cb cb,
                        void *userdata);
const struct store_member *store_leader_member(struct store *s);
void store_release_barriers(struct store *s);

/* upkeep.c */
void store_member_role_done(void *userdata, int status, const struct store_result *res,
                            const char *error);
void store_tick_cb(uv_timer_t *t);

/* recovery.c */
void store_merge_orphans(struct store *s);
void store_reset_to_generation(struct store *s, uint64_t generation);
void store_act_on_fence(struct store *s);
void store_load_orphans_target(struct store *s);
void store_gossip_generation(struct store *s);
void store_generation_done(void *userdata, int status, const struct store_result *res,
                           const char *error);
int store_handle_recover(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                         char **ret_error);
void store_probe_finish(struct probe *p);
int store_probe_generation(struct store *s);

/* bench.c */
int store_handle_bench(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                       char **ret_error);
