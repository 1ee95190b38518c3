#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <raft.h>
#include <raft/uv.h>

#include "api/client.h"
#include "api/server.h"
#include "fsm.h"
#include "journal.h"
#include "membership.h"
#include "lib/fileio.h"
#include "lib/clock.h"
#include "lib/log.h"

#define TICK_MS            250
#define PEER_TIMEOUT_MS    1000
#define FORWARD_TIMEOUT_MS 5000
#define HELLO_EVERY_TICKS  2
#define PROBE_TIMEOUT_MS   700

_Static_assert(STORE_ROLE_VOTER == RAFT_VOTER && STORE_ROLE_STANDBY == RAFT_STANDBY &&
                   STORE_ROLE_SPARE == RAFT_SPARE,
               "the members table keeps Raft's role numbers");

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
	uint64_t wait_index; /* follower: applied index to wait for */
	bool has_result;     /* a forwarded proposal's, delivered after the wait */
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

	/* The Raft instance; re-created in place by recover and reset. */
	struct raft raft;
	struct raft_io io;
	struct raft_uv_transport transport;
	struct store_fsm fsm;
	bool raft_open;
	enum start_mode next_mode;
	struct raft_configuration recover_conf;

	uv_timer_t tick;
	unsigned ticks;
	struct store_subscription *subscribers;
	unsigned notifying;               /* depth of notify() calls */
	struct pending *waiting_barriers; /* followers' barriers, by index */

	/* Membership changes: one at a time, leader only. */
	bool changing;
	struct raft_change change;
	uint64_t change_id;
	int change_role;
	struct membership members;

	/* Joining: where to ask next. */
	unsigned seed_next;
	char redirect[STORE_ADDR_MAX];
	bool join_in_flight;

	/* Forced recovery: the cluster row to commit once leader. */
	struct store_cluster pending_generation;
	bool generation_pending;
	bool orphans_pending;
	bool wipe_on_restart;
	bool hello_in_flight;
	unsigned hello_next;
	uint64_t probe_generation; /* the generation this host had at start */
	struct probe *probe;       /* while PHASE_PROBING */

	void (*close_cb)(void *userdata);
	void *close_userdata;
	/* Peer calls whose callback will still get this store: it is freed
	 * only when they are all back. */
	int calls;
	bool freeing;
};

const char *store_raft_version(void)
{
	return "libraft " RAFT_LIB_VERSION;
}

void store_options_default(struct store_options *o)
{
	*o = (struct store_options){
	    .election_ms = 300,
	    .heartbeat_ms = 50,
	    .snapshot_threshold = 8192,
	    .promote_after_ms = 3000,
	};
}

/* ---- the state machine ---- */

static void notify(struct store *s, const struct store_cmd *cmd, const struct store_result *res)
{
	s->notifying++;
	for (struct store_subscription *sub = s->subscribers; sub; sub = sub->next)
		if (sub->cb && (sub->table == 0 || sub->table == cmd->table))
			sub->cb(sub->userdata, cmd, res);
	if (--s->notifying)
		return;
	for (struct store_subscription **p = &s->subscribers; *p;) {
		struct store_subscription *sub = *p;
		if (sub->cb) {
			p = &sub->next;
			continue;
		}
		*p = sub->next;
		free(sub);
	}
}

static void fail_store(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void handle_self_removed(struct store *s);
static void release_barriers(struct store *s);

/* What a restarting host needs before its Raft state is loaded: its
 * generation and where the other members' peer APIs are. */
static void save_peers(struct store *s)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return;
	fprintf(f, "%" PRIu64 "\n", store_cluster(s->state)->generation);
	for (size_t i = 0; i < store_count(s->state, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(s->state, STORE_MEMBERS, i);
		if (m->id != s->o.id && m->peer[0])
			fprintf(f, "%s\n", m->peer);
	}
	fclose(f);
	if (file_write_state(s->o.dir, "peers", text) < 0)
		log_warn("store: cannot save %s/peers", s->o.dir);
	free(text);
}

static void fsm_applied(void *userdata, const struct raft_buffer *buf, const struct store_cmd *cmd,
                        const struct store_result *res)
{
	struct store *s = userdata;
	if (res->applied && (cmd->table == STORE_CLUSTER || cmd->table == STORE_MEMBERS))
		save_peers(s);
	journal_append(s->journal, store_cluster(s->state)->generation, s->raft.last_applied + 1,
	               buf->base, buf->len);
	notify(s, cmd, res);
	if (cmd->table == STORE_MEMBERS && cmd->op == STORE_DELETE && res->applied &&
	    STORE_CMD_ROW(cmd, struct store_member)->id == s->o.id)
		handle_self_removed(s);
}

static void fsm_corrupt(void *userdata, const char *why)
{
	struct store *s = userdata;
	/* The admin restores this host from a healthy replica. */
	fail_store(s, "corrupt log entry or snapshot after index %llu: %s",
	           (unsigned long long)s->raft.last_applied, why);
}

/* ---- the Raft instance ---- */

static void start_raft(struct store *s);
static void tick_closed_cb(uv_handle_t *h);
static int wipe_raft_state(struct store *s);
static int probe_generation(struct store *s);
struct probe;

static void raft_closed_cb(struct raft *r)
{
	struct store *s = r->data;
	raft_uv_close(&s->io);
	raft_uv_tcp_close(&s->transport);
	s->raft_open = false;
	if (s->phase == PHASE_RESTARTING) {
		s->phase = PHASE_RUNNING;
		if (s->wipe_on_restart && wipe_raft_state(s) < 0)
			return;
		start_raft(s);
	} else if (s->phase == PHASE_CLOSING) {
		uv_close((uv_handle_t *)&s->tick, tick_closed_cb);
	}
}

static void stop_raft(struct store *s, enum store_phase then)
{
	s->phase = then;
	s->changing = false;
	if (s->raft_open)
		raft_close(&s->raft, raft_closed_cb);
}

static void fail_store(struct store *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->fatal, sizeof(s->fatal), fmt, ap);
	va_end(ap);
	log_error("store: %s; the store stops", s->fatal);
	s->phase = PHASE_FAILED;
}

/* Marks this host as removed, in memory and on disk: a restart does not
 * rejoin on its own (delete the store directory to join again). */
static void handle_self_removed(struct store *s)
{
	if (s->phase == PHASE_REMOVED)
		return;
	log_info("store: this host was removed from the cluster; leaving");
	if (file_write_state(s->o.dir, "removed", "removed by the admin\n") < 0)
		log_warn("store: cannot record the removal in %s", s->o.dir);
	s->phase = PHASE_REMOVED;
}

/* Forgets the Raft log, snapshots and the applied state, keeping the
 * journal: the host will be caught up from the leader. */
static int wipe_raft_state(struct store *s)
{
	s->wipe_on_restart = false;
	char cmd[PATH_MAX + 300];
	DIR *d = opendir(s->raft_dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(cmd, sizeof(cmd), "%s/%s", s->raft_dir, e->d_name);
		if (unlink(cmd) < 0)
			log_warn("store: cannot remove %s: %s", cmd, strerror(errno));
	}
	if (d)
		closedir(d);
	struct store_state *fresh;
	if (store_state_new(&fresh) < 0) {
		fail_store(s, "out of memory");
		return -ENOMEM;
	}
	store_state_free(s->state);
	s->state = fresh;
	return 0;
}

/* Creates and starts the Raft instance in s->raft per s->next_mode. */
static void start_raft(struct store *s)
{
	int r;
	const char *what = "raft_uv_tcp_init";
	if ((r = raft_uv_tcp_init(&s->transport, s->loop)) != 0)
		goto fail;
	what = "raft_uv_init";
	if ((r = raft_uv_init(&s->io, s->loop, s->raft_dir, &s->transport)) != 0) {
		raft_uv_tcp_close(&s->transport);
		goto fail;
	}
	store_fsm_init(&s->fsm, s->state);
	s->fsm.applied = fsm_applied;
	s->fsm.corrupt = fsm_corrupt;
	s->fsm.userdata = s;
	what = "raft_init";
	if ((r = raft_init(&s->raft, &s->io, &s->fsm.fsm, s->o.id, s->o.raft_address)) != 0) {
		raft_uv_close(&s->io);
		raft_uv_tcp_close(&s->transport);
		goto fail;
	}
	s->raft.data = s;
	s->raft_open = true;
	raft_set_pre_vote(&s->raft, true);
	raft_set_election_timeout(&s->raft, s->o.election_ms);
	raft_set_heartbeat_timeout(&s->raft, s->o.heartbeat_ms);
	raft_set_snapshot_threshold(&s->raft, s->o.snapshot_threshold);
	raft_uv_set_connect_retry_delay(&s->io, 100);

	if (s->next_mode == START_BOOTSTRAP) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		raft_configuration_add(&conf, s->o.id, s->o.raft_address, RAFT_VOTER);
		what = "raft_bootstrap";
		r = raft_bootstrap(&s->raft, &conf);
		raft_configuration_close(&conf);
		if (r == RAFT_CANTBOOTSTRAP) /* state exists: resume from it */
			r = 0;
		else if (r == 0) {
			s->pending_generation = (struct store_cluster){.generation = 1};
			snprintf(s->pending_generation.by, sizeof(s->pending_generation.by), "%s",
			         s->o.name);
			s->generation_pending = true;
			log_info("store: created a new cluster");
		}
	} else if (s->next_mode == START_RECOVER) {
		what = "raft_recover";
		r = raft_recover(&s->raft, &s->recover_conf);
		raft_configuration_close(&s->recover_conf);
	}
	if (r != 0)
		goto fail_open;
	s->next_mode = START_NORMAL;
	what = "raft_start";
	if ((r = raft_start(&s->raft)) != 0)
		goto fail_open;
	return;

fail_open:
	fail_store(s, "%s: %s", what, raft_errmsg(&s->raft));
	raft_close(&s->raft, raft_closed_cb);
	return;
fail:
	fail_store(s, "%s: %s", what, raft_strerror(r));
}

/* ---- peer calls: the store outlives every call it made ---- */

struct store_call_ctx {
	struct store *s;
	ctl_call_cb cb;
	void *userdata;
};

static void store_free_final(struct store *s);

static void store_call_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct store_call_ctx c = *(struct store_call_ctx *)userdata;
	free(userdata);
	c.cb(c.userdata, status, result, error);
	if (--c.s->calls == 0 && c.s->freeing)
		store_free_final(c.s);
}

/* ctl_call() on behalf of the store; see ctl_call() for the contract. */
static int store_call(struct store *s, const char *address, const char *cmd, json_t *args,
                      unsigned timeout_ms, ctl_call_cb cb, void *userdata)
{
	struct store_call_ctx *c = malloc(sizeof(*c));
	if (!c) {
		json_decref(args);
		return -ENOMEM;
	}
	*c = (struct store_call_ctx){.s = s, .cb = cb, .userdata = userdata};
	int r = ctl_call(s->loop, address, cmd, args, timeout_ms, store_call_cb, c);
	if (r < 0)
		free(c);
	else
		s->calls++;
	return r;
}

/* ---- proposals ---- */

static void pending_done(struct pending *p, int status, const struct store_result *res,
                         const char *error)
{
	p->cb(p->userdata, status, res, error);
	free(p);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct pending *p = req->data;
	struct store_result *res = result;
	if (status != 0)
		pending_done(
		    p, status == RAFT_NOTLEADER || status == RAFT_LEADERSHIPLOST ? -EAGAIN : -EIO,
		    NULL, raft_strerror(status));
	else {
		struct store_result r = *res;
		r.index = req->index;
		pending_done(p, 0, &r, NULL);
	}
}

static int propose_local(struct store *s, const uint8_t *data, size_t len, store_done_cb cb,
                         void *userdata)
{
	size_t padded;
	struct pending *p = calloc(1, sizeof(*p));
	void *copy = store_fsm_entry(data, len, &padded);
	if (!p || !copy) {
		free(p);
		raft_free(copy);
		return -ENOMEM;
	}
	*p = (struct pending){.store = s, .cb = cb, .userdata = userdata};
	p->apply.data = p;
	struct raft_buffer buf = {.base = copy, .len = padded};
	int r = raft_apply(&s->raft, &p->apply, &buf, 1, apply_cb);
	if (r != 0) {
		raft_free(copy);
		free(p);
		return r == RAFT_NOTLEADER ? -EAGAIN : -EIO;
	}
	return 0;
}

static const struct store_member *leader_member(struct store *s)
{
	raft_id id = 0;
	const char *address = NULL;
	if (!s->raft_open)
		return NULL;
	raft_leader(&s->raft, &id, &address);
	return id ? store_member_find(s->state, id) : NULL;
}

static char *hex_encode(const uint8_t *data, size_t len)
{
	char *hex = malloc(len * 2 + 1);
	for (size_t i = 0; hex && i < len; i++)
		sprintf(hex + 2 * i, "%02x", data[i]);
	if (hex)
		hex[len * 2] = '\0';
	return hex;
}

static int hex_decode(const char *hex, uint8_t **ret_data, size_t *ret_len)
{
	size_t n = strlen(hex);
	if (n % 2)
		return -EINVAL;
	uint8_t *data = malloc(n / 2 + 1);
	if (!data)
		return -ENOMEM;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			free(data);
			return -EINVAL;
		}
		data[i] = (uint8_t)v;
	}
	*ret_data = data;
	*ret_len = n / 2;
	return 0;
}

/* A forwarded call's context: the original callback. */
struct forward {
	struct store *store;
	store_done_cb cb;
	void *userdata;
	bool barrier;
	char leader[STORE_NAME_MAX + STORE_ADDR_MAX + 8];
};

static void forward_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct forward *f = userdata;
	if (status < 0) {
		char why[STORE_REASON_MAX + 128];
		snprintf(why, sizeof(why), "the leader %s: %s", f->leader,
		         error ? error : "failed");
		f->cb(f->userdata, status == -EREMOTEIO ? -EAGAIN : status, NULL, why);
		free(f);
		return;
	}
	/* Wait until this replica has applied what the leader had when it
	 * answered: a barrier, or a proposal (so that whoever proposed here
	 * reads its own write here). */
	struct pending *p = calloc(1, sizeof(*p));
	if (!p) {
		f->cb(f->userdata, -ENOMEM, NULL, "out of memory");
		free(f);
		return;
	}
	*p = (struct pending){.store = f->store, .cb = f->cb, .userdata = f->userdata};
	p->wait_index = (uint64_t)json_integer_value(json_object_get(result, "index"));
	if (!f->barrier) {
		p->has_result = true;
		p->result.applied = json_is_true(json_object_get(result, "applied"));
		p->result.value = (uint64_t)json_integer_value(json_object_get(result, "value"));
		p->result.index = p->wait_index;
		snprintf(p->result.reason, sizeof(p->result.reason), "%s",
		         json_string_value(json_object_get(result, "reason")) ?: "");
	}
	p->next = f->store->waiting_barriers;
	f->store->waiting_barriers = p;
	free(f);
	release_barriers(p->store);
}

static int forward(struct store *s, const char *cmd, json_t *args, bool barrier, store_done_cb cb,
                   void *userdata)
{
	const struct store_member *leader = leader_member(s);
	if (!leader || !leader->peer[0]) {
		json_decref(args);
		return -EAGAIN;
	}
	struct forward *f = calloc(1, sizeof(*f));
	if (!f) {
		json_decref(args);
		return -ENOMEM;
	}
	*f = (struct forward){.store = s, .cb = cb, .userdata = userdata, .barrier = barrier};
	snprintf(f->leader, sizeof(f->leader), "%s (%s)", leader->name, leader->peer);
	int r = store_call(s, leader->peer, cmd, args, FORWARD_TIMEOUT_MS, forward_cb, f);
	if (r < 0)
		free(f);
	return r;
}

static int propose_encoded(struct store *s, const uint8_t *data, size_t len, store_done_cb cb,
                           void *userdata)
{
	if (s->phase != PHASE_RUNNING || !s->raft_open)
		return -ESHUTDOWN;
	if (raft_state(&s->raft) == RAFT_LEADER)
		return propose_local(s, data, len, cb, userdata);
	char *hex = hex_encode(data, len);
	if (!hex)
		return -ENOMEM;
	json_t *args = json_pack("{s:s}", "command", hex);
	free(hex);
	return forward(s, "store.propose", args, false, cb, userdata);
}

int store_propose(struct store *s, const struct store_cmd *cmd, store_done_cb cb, void *userdata)
{
	uint8_t *data;
	size_t len;
	int r = store_cmd_encode(cmd, &data, &len);
	if (r < 0)
		return r;
	r = propose_encoded(s, data, len, cb, userdata);
	free(data);
	return r;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	struct pending *p = req->data;
	if (status != 0)
		pending_done(p, -EAGAIN, NULL, raft_strerror(status));
	else
		pending_done(p, 0, NULL, NULL);
}

static void release_barriers(struct store *s)
{
	uint64_t applied = s->raft_open ? raft_last_applied(&s->raft) : 0;
	struct pending **pp = &s->waiting_barriers;
	while (*pp) {
		struct pending *p = *pp;
		if (p->wait_index <= applied) {
			*pp = p->next;
			pending_done(p, 0, p->has_result ? &p->result : NULL, NULL);
		} else {
			pp = &p->next;
		}
	}
}

int store_barrier(struct store *s, store_done_cb cb, void *userdata)
{
	if (s->phase != PHASE_RUNNING || !s->raft_open)
		return -ESHUTDOWN;
	if (raft_state(&s->raft) != RAFT_LEADER)
		return forward(s, "store.barrier", json_object(), true, cb, userdata);
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	*p = (struct pending){.store = s, .cb = cb, .userdata = userdata};
	p->barrier.data = p;
	int r = raft_barrier(&s->raft, &p->barrier, barrier_cb);
	if (r != 0) {
		free(p);
		return -EAGAIN;
	}
	return 0;
}

const struct store_state *store_state(const struct store *s)
{
	return s->state;
}

int store_subscribe(struct store *s, unsigned table, store_watch_cb cb, void *userdata,
                    struct store_subscription **ret_sub)
{
	struct store_subscription *sub = calloc(1, sizeof(*sub));
	if (!sub)
		return -ENOMEM;
	*sub = (struct store_subscription){
	    .table = table, .cb = cb, .userdata = userdata, .next = s->subscribers};
	s->subscribers = sub;
	if (ret_sub)
		*ret_sub = sub;
	return 0;
}

void store_unsubscribe(struct store *s, struct store_subscription *sub)
{
	if (!sub)
		return;
	sub->cb = NULL;
	if (s->notifying)
		return;
	for (struct store_subscription **p = &s->subscribers; *p; p = &(*p)->next)
		if (*p == sub) {
			*p = sub->next;
			free(sub);
			return;
		}
}

bool store_is_leader(const struct store *s)
{
	return s->raft_open && s->phase == PHASE_RUNNING &&
	       raft_state((struct raft *)&s->raft) == RAFT_LEADER;
}

int store_member_reachable(struct store *s, uint64_t id)
{
	if (!store_is_leader(s))
		return -EAGAIN;
	if (id == s->o.id)
		return 1;
	for (unsigned i = 0; i < s->raft.configuration.n; i++)
		if (s->raft.configuration.servers[i].id == id)
			return s->raft.leader_state.progress[i].recent_recv ? 1 : 0;
	return -ENOENT;
}

uint64_t store_term(const struct store *s)
{
	return s->raft_open ? s->raft.current_term : 0;
}

uint64_t store_leader_id(struct store *s)
{
	raft_id id = 0;
	const char *address = NULL;
	if (s->raft_open && s->phase == PHASE_RUNNING)
		raft_leader(&s->raft, &id, &address);
	return id;
}

size_t store_voters(const struct store *s, uint64_t *ids, size_t max)
{
	size_t n = 0;
	for (unsigned i = 0; s->raft_open && i < s->raft.configuration.n && n < max; i++)
		if (s->raft.configuration.servers[i].role == RAFT_VOTER)
			ids[n++] = s->raft.configuration.servers[i].id;
	return n;
}

/* ---- membership (leader) ---- */

static void member_role_done(void *userdata, int status, const struct store_result *res,
                             const char *error)
{
	(void)userdata;
	(void)res;
	if (status < 0)
		log_warn("store: cannot record a member's role: %s", error);
}

/* Records in the members table the role Raft now gives @id. */
static void record_role(struct store *s, raft_id id, int role)
{
	const struct store_member *m = store_member_find(s->state, id);
	if (!m || m->role == role)
		return;
	struct store_cmd cmd = {.table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = wall_ms()};
	(*STORE_CMD_ROW(&cmd, struct store_member)) = *m;
	STORE_CMD_ROW(&cmd, struct store_member)->role = (uint8_t)role;
	store_propose(s, &cmd, member_role_done, NULL);
}

static void change_cb(struct raft_change *req, int status)
{
	struct store *s = req->data;
	s->changing = false;
	if (status != 0) {
		log_warn("store: membership change for %" PRIu64 " failed: %s", s->change_id,
		         raft_strerror(status));
		return;
	}
	if (s->change_role >= 0) {
		log_info("store: member %" PRIu64 " is now %s", s->change_id,
		         s->change_role == RAFT_VOTER ? "a voter" : "a standby");
		record_role(s, s->change_id, s->change_role);
	}
}

/* One step towards the wanted membership (membership.c decides). */
static void maintain_membership(struct store *s)
{
	if (s->changing)
		return;
	struct membership_change c = membership_next(&s->members, &s->raft, s->state, mono_ms());
	if (c.action == MEMBERSHIP_NONE)
		return;
	s->changing = true;
	s->change_id = c.id;
	s->change_role = c.action == MEMBERSHIP_ADD ? -1 : c.role;
	s->change.data = s;
	int r = c.action == MEMBERSHIP_ADD
	            ? raft_add(&s->raft, &s->change, c.id, c.address, change_cb)
	            : raft_assign(&s->raft, &s->change, c.id, c.role, change_cb);
	if (r != 0) {
		s->changing = false;
		log_warn("store: cannot change member %llu: %s", (unsigned long long)c.id,
		         raft_errmsg(&s->raft));
		return;
	}
	log_info("store: member %llu: %s (%s)", (unsigned long long)c.id,
	         c.action == MEMBERSHIP_ADD ? "adding as a replica"
	         : c.role == RAFT_VOTER     ? "promoting to voter"
	                                    : "making a standby",
	         c.why);
}

/* ---- joining ---- */

static void join_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct store *s = userdata;
	s->join_in_flight = false;
	if (status < 0) {
		log_debug("store: join: %s", error);
		s->redirect[0] = '\0';
		return;
	}
	const char *redirect = json_string_value(json_object_get(result, "redirect"));
	snprintf(s->redirect, sizeof(s->redirect), "%s", redirect ? redirect : "");
}

static void try_join(struct store *s)
{
	if (s->join_in_flight || (s->o.n_seeds == 0 && !s->redirect[0]))
		return;
	const char *to = s->redirect[0] ? s->redirect : s->o.seeds[s->seed_next++ % s->o.n_seeds];
	if (strcmp(to, s->o.peer_address) == 0)
		return;
	json_t *args = json_pack("{s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)s->o.id, "name",
	                         s->o.name, "address", s->o.raft_address, "peer", s->o.peer_address,
	                         "raft_version", store_raft_version());
	s->redirect[0] = '\0';
	if (store_call(s, to, "store.join", args, PEER_TIMEOUT_MS, join_cb, s) == 0)
		s->join_in_flight = true;
}

/* ---- generations: forced recovery and the hosts that come back ---- */

static void orphan_propose_done(void *userdata, int status, const struct store_result *res,
                                const char *error)
{
	(void)userdata;
	if (status < 0)
		log_warn("store: re-proposing an orphaned command failed: %s", error);
	else if (!res->applied)
		log_info("store: an orphaned command was rejected on merge: %s", res->reason);
}

struct merge_ctx {
	struct store *s;
	unsigned applied, skipped, conflicts;
};

static void merge_one(void *userdata, const void *data, size_t len)
{
	struct merge_ctx *m = userdata;
	struct store_cmd cmd;
	char error[STORE_REASON_MAX], reason[STORE_REASON_MAX] = "";
	if (store_cmd_decode(data, len, &cmd, error, sizeof(error)) < 0)
		return;
	switch (store_merge(m->s->state, &cmd, reason, sizeof(reason))) {
	case STORE_MERGE_SKIP:
		m->skipped++;
		break;
	case STORE_MERGE_APPLY:
		m->applied++;
		store_propose(m->s, &cmd, orphan_propose_done, NULL);
		break;
	case STORE_MERGE_CONFLICT: {
		m->conflicts++;
		struct store_cmd c = {
		    .table = STORE_CONFLICTS, .op = STORE_PUT, .time_ms = wall_ms()};
		STORE_CMD_ROW(&c, struct store_conflict)->table = cmd.table;
		STORE_CMD_ROW(&c, struct store_conflict)->generation =
		    store_cluster(m->s->state)->generation - 1;
		snprintf(STORE_CMD_ROW(&c, struct store_conflict)->reason,
		         sizeof(STORE_CMD_ROW(&c, struct store_conflict)->reason), "%s", reason);
		store_propose(m->s, &c, orphan_propose_done, NULL);
		log_warn("store: merge conflict: %s", reason);
		break;
	}
	}
	store_cmd_done(&cmd);
}

/* Once this replica has caught up with the new generation, merge what it
 * had applied that the new cluster lacks. */
static void merge_orphans(struct store *s)
{
	const struct store_cluster *c = store_cluster(s->state);
	if (!s->orphans_pending || c->generation == 0 || leader_member(s) == NULL)
		return;
	struct merge_ctx m = {.s = s};
	journal_each_orphan(s->journal, c->generation, c->from_index, merge_one, &m);
	journal_drop_orphans(s->journal);
	s->orphans_pending = false;
	log_info("store: merged orphaned commands into generation %" PRIu64
	         ": %u re-proposed, %u already present, %u conflicts",
	         c->generation, m.applied, m.skipped, m.conflicts);
}

/* This host's state belongs to a generation the cluster has left: keep the
 * journal as orphans, forget the Raft state, and join the cluster again as
 * a fresh replica. */
static void reset_to_generation(struct store *s, uint64_t generation)
{
	if (s->phase != PHASE_RUNNING)
		return;
	log_warn("store: the cluster is at generation %" PRIu64 ", this host at %" PRIu64
	         "; rejoining as a fresh replica and merging what only this host had",
	         generation, store_cluster(s->state)->generation);
	journal_take_orphans(s->journal);
	s->orphans_pending = true;
	s->next_mode = START_NORMAL;
	s->wipe_on_restart = true;
	stop_raft(s, PHASE_RESTARTING);
}

static void hello_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct store *s = userdata;
	(void)error;
	s->hello_in_flight = false;
	if (status < 0)
		return;
	uint64_t gen = (uint64_t)json_integer_value(json_object_get(result, "generation"));
	if (gen > store_cluster(s->state)->generation && store_cluster(s->state)->generation > 0)
		reset_to_generation(s, gen);
}

/* Asks one other member, in turn, which generation it is at. */
static void gossip_generation(struct store *s)
{
	size_t n = store_count(s->state, STORE_MEMBERS);
	if (s->hello_in_flight || n < 2)
		return;
	const struct store_member *m = store_row(s->state, STORE_MEMBERS, s->hello_next++ % n);
	if (m->id == s->o.id || !m->peer[0])
		return;
	if (store_call(s, m->peer, "store.hello", json_object(), PEER_TIMEOUT_MS, hello_cb, s) == 0)
		s->hello_in_flight = true;
}

static void generation_done(void *userdata, int status, const struct store_result *res,
                            const char *error)
{
	struct store *s = userdata;
	if (status == 0 && res->applied) {
		log_info("store: cluster generation %" PRIu64 " committed", res->value);
		return;
	}
	s->generation_pending = true; /* try again on the next tick */
	log_debug("store: generation not committed yet: %s", status ? error : res->reason);
}

static void tick_cb(uv_timer_t *t)
{
	struct store *s = t->data;
	s->ticks++;
	/* Removed, or stopped by a corrupt entry: Raft is closed here, not
	 * inside the state machine's callback that found out. */
	if ((s->phase == PHASE_REMOVED || s->phase == PHASE_FAILED) && s->raft_open)
		stop_raft(s, s->phase);
	if (s->phase != PHASE_RUNNING || !s->raft_open)
		return;
	release_barriers(s);
	bool leader = raft_state(&s->raft) == RAFT_LEADER;
	if (leader && s->generation_pending) {
		s->generation_pending = false;
		struct store_cmd cmd = {
		    .table = STORE_CLUSTER, .op = STORE_PUT, .time_ms = wall_ms()};
		(*STORE_CMD_ROW(&cmd, struct store_cluster)) = s->pending_generation;
		if (store_propose(s, &cmd, generation_done, s) < 0)
			s->generation_pending = true;
		/* The creator joins its own members table. */
		if (s->pending_generation.generation == 1 &&
		    !store_member_find(s->state, s->o.id)) {
			struct store_cmd m = {
			    .table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = wall_ms()};
			(*STORE_CMD_ROW(&m, struct store_member)) = (struct store_member){
			    .id = s->o.id, .role = STORE_ROLE_VOTER, .joined_ms = wall_ms()};
			snprintf(STORE_CMD_ROW(&m, struct store_member)->name,
			         sizeof(STORE_CMD_ROW(&m, struct store_member)->name), "%s",
			         s->o.name);
			snprintf(STORE_CMD_ROW(&m, struct store_member)->address,
			         sizeof(STORE_CMD_ROW(&m, struct store_member)->address), "%s",
			         s->o.raft_address);
			snprintf(STORE_CMD_ROW(&m, struct store_member)->peer,
			         sizeof(STORE_CMD_ROW(&m, struct store_member)->peer), "%s",
			         s->o.peer_address);
			snprintf(STORE_CMD_ROW(&m, struct store_member)->raft_version,
			         sizeof(STORE_CMD_ROW(&m, struct store_member)->raft_version), "%s",
			         store_raft_version());
			store_propose(s, &m, member_role_done, NULL);
		}
	}
	if (leader)
		maintain_membership(s);
	else if (!store_member_find(s->state, s->o.id) && s->ticks % 2 == 0)
		try_join(s);
	if (s->ticks % HELLO_EVERY_TICKS == 0)
		gossip_generation(s);
	merge_orphans(s);
}

/* ---- status ---- */

static const char *phase_state(struct store *s)
{
	switch (s->phase) {
	case PHASE_RUNNING:
		break;
	case PHASE_RESTARTING:
		return "restarting";
	case PHASE_PROBING:
		return "probing";
	case PHASE_REMOVED:
		return "removed";
	case PHASE_FAILED:
		return "failed";
	case PHASE_CLOSING:
		return "closing";
	}
	if (!s->raft_open)
		return "stopped";
	switch (raft_state(&s->raft)) {
	case RAFT_LEADER:
		return "leader";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_FOLLOWER:
		return "follower";
	}
	return "unavailable";
}

json_t *store_status(struct store *s)
{
	struct raft *r = &s->raft;
	bool leader = store_is_leader(s);
	const struct store_member *lm = leader_member(s);
	json_t *members = json_array();
	uint64_t now = mono_ms();
	for (unsigned i = 0; s->raft_open && i < r->configuration.n; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		const struct store_member *m = store_member_find(s->state, srv->id);
		json_t *reachable = json_null();
		if (srv->id == s->o.id)
			reachable = json_true();
		else if (leader)
			reachable = json_boolean(r->leader_state.progress[i].recent_recv);
		json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:o}", "id", (json_int_t)srv->id,
		                      "name", m ? m->name : "?", "address", srv->address, "role",
		                      store_role_name((unsigned)srv->role), "reachable", reachable);
		if (leader && srv->id != s->o.id)
			json_object_set_new(o, "silent_ms",
			                    json_integer((json_int_t)membership_silence(
			                        &s->members, srv->id, now)));
		if (leader)
			json_object_set_new(
			    o, "match_index",
			    json_integer((json_int_t)r->leader_state.progress[i].match_index));
		json_array_append_new(members, o);
	}
	const struct store_cluster *c = store_cluster(s->state);
	return json_pack(
	    "{s:I, s:s, s:s, s:s?, s:I, s:I, s:I, s:I, s:I, s:s, s:o, s:s?, s:b}", "id",
	    (json_int_t)s->o.id, "name", s->o.name, "state", phase_state(s), "leader",
	    lm ? lm->name : NULL, "term", (json_int_t)(s->raft_open ? r->current_term : 0),
	    "commit_index", (json_int_t)(s->raft_open ? r->commit_index : 0), "applied_index",
	    (json_int_t)(s->raft_open ? raft_last_applied(r) : 0), "generation",
	    (json_int_t)c->generation, "voters_wanted",
	    (json_int_t)(s->raft_open ? membership_target(&s->members, r->configuration.n) : 0),
	    "raft_version", store_raft_version(), "members", members, "error",
	    s->fatal[0] ? s->fatal : NULL, "orphans_pending", s->orphans_pending);
}

/* ---- requests: the peer API and the admin's commands ---- */

struct reply_ctx {
	struct ctl_deferred *d;
	bool reject_is_error;
	struct store *s;
};

static void reply_done(void *userdata, int status, const struct store_result *res,
                       const char *error)
{
	struct reply_ctx *c = userdata;
	if (status < 0)
		ctl_deferred_reply(c->d, NULL, error ? error : strerror(-status));
	else if (!res) /* a barrier */
		ctl_deferred_reply(
		    c->d,
		    json_pack("{s:I}", "index",
		              (json_int_t)(c->s->raft_open ? raft_last_applied(&c->s->raft) : 0)),
		    NULL);
	else if (!res->applied && c->reject_is_error)
		ctl_deferred_reply(c->d, NULL, res->reason);
	else
		ctl_deferred_reply(c->d,
		                   json_pack("{s:b, s:s, s:I, s:I}", "applied", res->applied,
		                             "reason", res->reason, "value", (json_int_t)res->value,
		                             "index", (json_int_t)res->index),
		                   NULL);
	free(c);
}

static struct reply_ctx *reply_ctx(struct store *s, struct ctl_client *client,
                                   const struct ctl_request *req, bool reject_is_error)
{
	struct reply_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->d = ctl_defer(client, req);
	if (!c->d) {
		free(c);
		return NULL;
	}
	c->s = s;
	c->reject_is_error = reject_is_error;
	return c;
}

static int deferred_error(struct reply_ctx *c, int r)
{
	/* The deferral is cancelled by answering it now with the error. */
	const char *why = r == -EAGAIN      ? "no leader is known right now; try again"
	                  : r == -ESHUTDOWN ? "the store is not running on this host"
	                                    : strerror(-r);
	ctl_deferred_reply(c->d, NULL, why);
	free(c);
	return CTL_DEFERRED;
}

int store_propose_reply(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                        const struct store_cmd *cmd, bool reject_is_error, char **ret_error)
{
	struct reply_ctx *c = reply_ctx(s, client, req, reject_is_error);
	if (!c)
		return -ENOMEM;
	int r = store_propose(s, cmd, reply_done, c);
	return r < 0 ? deferred_error(c, r) : CTL_DEFERRED;
}

static void relay_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct ctl_deferred *d = userdata;
	ctl_deferred_reply(d, status == 0 ? json_incref(result) : NULL, status == 0 ? NULL : error);
}

/* Passes a request on to another agent and its answer back as it is. */
static int relay(struct store *s, const char *address, const char *cmd, json_t *args,
                 struct ctl_deferred *d)
{
	int r = store_call(s, address, cmd, args, FORWARD_TIMEOUT_MS, relay_cb, d);
	if (r < 0)
		ctl_deferred_reply(d, NULL, strerror(-r));
	return CTL_DEFERRED;
}

static int handle_join(struct store *s, const struct ctl_request *req, json_t **ret_result,
                       char **ret_error)
{
	if (!store_is_leader(s)) {
		const struct store_member *lm = leader_member(s);
		*ret_result = json_pack("{s:s?}", "redirect", lm ? lm->peer : NULL);
		return 0;
	}
	const char *name = ctl_arg_str(req, "name"), *address = ctl_arg_str(req, "address");
	const char *peer = ctl_arg_str(req, "peer"), *version = ctl_arg_str(req, "raft_version");
	json_int_t id = json_integer_value(json_object_get(req->args, "id"));
	if (!name || !address || !peer || !version || id <= 0)
		return error_set(ret_error, -EINVAL,
		                 "store.join needs id, name, address, peer and raft_version");
	if (strcmp(version, store_raft_version()) != 0)
		return error_set(ret_error, -EPROTO,
		                 "%s runs %s but the cluster runs %s; Raft versions do not "
		                 "interoperate",
		                 name, version, store_raft_version());
	const struct store_member *m = store_member_find(s->state, (uint64_t)id);
	if (!m || strcmp(m->address, address) != 0 || strcmp(m->peer, peer) != 0) {
		struct store_cmd cmd = {
		    .table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = wall_ms()};
		struct store_member *row = STORE_CMD_ROW(&cmd, struct store_member);
		row->id = (uint64_t)id;
		row->role = STORE_ROLE_SPARE;
		row->joined_ms = wall_ms();
		snprintf(row->name, sizeof(row->name), "%s", name);
		snprintf(row->address, sizeof(row->address), "%s", address);
		snprintf(row->peer, sizeof(row->peer), "%s", peer);
		snprintf(row->raft_version, sizeof(row->raft_version), "%s", version);
		int r = store_propose(s, &cmd, member_role_done, NULL);
		if (r < 0)
			return error_set(ret_error, r, "cannot propose the member: %s",
			                 strerror(-r));
		log_info("store: %s (%lld) asks to join", name, (long long)id);
	}
	*ret_result = json_pack("{s:b}", "accepted", 1);
	return 0;
}

struct remove_ctx {
	struct store *s;
	struct ctl_deferred *d;
	uint64_t id;
	char peer[STORE_ADDR_MAX];
	struct raft_change change;
};

static void leave_cb(void *userdata, int status, json_t *result, const char *error)
{
	(void)userdata;
	(void)result;
	if (status < 0)
		log_warn("store: the removed host did not hear it was removed: %s", error);
}

static void removed_cb(struct raft_change *req, int status)
{
	struct remove_ctx *c = req->data;
	if (status != 0)
		log_warn("store: raft_remove %" PRIu64 ": %s", c->id, raft_strerror(status));
	free(c);
}

/* The member is gone from the table: now take it out of Raft. In this
 * order, the membership policy never sees a member Raft lacks and re-adds
 * it. */
static void remove_done(void *userdata, int status, const struct store_result *res,
                        const char *error)
{
	struct remove_ctx *c = userdata;
	if (status < 0 || !res->applied) {
		ctl_deferred_reply(c->d, NULL, status < 0 ? error : res->reason);
		free(c);
		return;
	}
	ctl_deferred_reply(c->d, json_pack("{s:b}", "removed", 1), NULL);
	/* Once out of Raft the host hears nothing more, so it is told. */
	if (c->peer[0])
		store_call(c->s, c->peer, "store.leave", json_object(), PEER_TIMEOUT_MS, leave_cb,
		           NULL);
	c->change.data = c;
	if (!c->s->raft_open || raft_remove(&c->s->raft, &c->change, c->id, removed_cb) != 0) {
		log_warn("store: member %" PRIu64 " left the table but not Raft: %s", c->id,
		         c->s->raft_open ? raft_errmsg(&c->s->raft) : "store stopped");
		free(c);
	}
}

static int handle_remove(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                         char **ret_error)
{
	const char *host = ctl_arg_str(req, "host");
	if (!host)
		return error_set(ret_error, -EINVAL, "cluster.remove needs a host");
	if (!store_is_leader(s)) {
		const struct store_member *lm = leader_member(s);
		if (!lm)
			return error_set(ret_error, -EAGAIN, "no leader is known right now");
		struct ctl_deferred *d = ctl_defer(client, req);
		if (!d)
			return -ENOMEM;
		return relay(s, lm->peer, "cluster.remove", json_incref(req->args), d);
	}
	const struct store_member *m = store_member_find_name(s->state, host);
	if (!m)
		return error_set(ret_error, -ENOENT, "no member named %s", host);
	if (m->id == s->o.id)
		return error_set(ret_error, -EBUSY,
		                 "%s is the leader; stop it, and remove it once another host "
		                 "leads",
		                 host);
	struct remove_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = (struct remove_ctx){.s = s, .id = m->id, .d = ctl_defer(client, req)};
	snprintf(c->peer, sizeof(c->peer), "%s", m->peer);
	struct store_cmd cmd = {.table = STORE_MEMBERS, .op = STORE_DELETE, .time_ms = wall_ms()};
	STORE_CMD_ROW(&cmd, struct store_member)->id = m->id;
	int r = store_propose(s, &cmd, remove_done, c);
	if (r < 0) {
		ctl_deferred_reply(c->d, NULL, strerror(-r));
		free(c);
	}
	return CTL_DEFERRED;
}

/* ---- forced recovery ---- */

struct recover_ctx {
	struct store *s;
	store_recover_cb done;
	void *userdata;
	int waiting;
	uint64_t alive[256];
	unsigned n_alive;
	char leader[STORE_NAME_MAX]; /* a member still leading: no recovery */
};

static void recover_reset_cb(void *userdata, int status, json_t *result, const char *error)
{
	(void)userdata;
	(void)status;
	(void)result;
	if (status < 0)
		log_warn("store: recover: a survivor did not take the reset: %s", error);
}

/* Every survivor answered (or timed out): declare the new membership. */
static void recover_finish(struct recover_ctx *c)
{
	struct store *s = c->s;
	if (c->leader[0] || store_is_leader(s) || s->phase != PHASE_RUNNING) {
		char why[160];
		snprintf(why, sizeof(why),
		         "%s is the leader and reachable; recover is only for a lost majority",
		         c->leader[0] ? c->leader : "this host");
		c->done(c->userdata, NULL, why);
		free(c);
		return;
	}
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, s->o.id, s->o.raft_address, RAFT_VOTER);
	json_t *names = json_array();
	json_array_append_new(names, json_string(s->o.name));
	for (unsigned i = 0; i < c->n_alive; i++) {
		const struct store_member *m = store_member_find(s->state, c->alive[i]);
		if (!m)
			continue;
		/* Survivors start as standbys and are promoted once caught up. */
		raft_configuration_add(&conf, m->id, m->address, RAFT_STANDBY);
		json_array_append_new(names, json_string(m->name));
	}
	uint64_t generation = store_cluster(s->state)->generation + 1;
	s->pending_generation = (struct store_cluster){
	    .generation = generation,
	    .from_term = s->raft.current_term,
	    .from_index = raft_last_index(&s->raft),
	};
	snprintf(s->pending_generation.by, sizeof(s->pending_generation.by), "%s", s->o.name);
	s->generation_pending = true;
	s->recover_conf = conf;
	s->next_mode = START_RECOVER;
	log_warn("store: forced recovery: generation %" PRIu64 " with %u survivor(s)", generation,
	         c->n_alive + 1);
	for (unsigned i = 0; i < c->n_alive; i++) {
		const struct store_member *m = store_member_find(s->state, c->alive[i]);
		if (m)
			store_call(s, m->peer, "store.reset",
			           json_pack("{s:I}", "generation", (json_int_t)generation),
			           PEER_TIMEOUT_MS, recover_reset_cb, NULL);
	}
	stop_raft(s, PHASE_RESTARTING);
	json_t *result =
	    json_pack("{s:I, s:o}", "generation", (json_int_t)generation, "members", names);
	c->done(c->userdata, result, NULL);
	json_decref(result);
	free(c);
}

static void recover_hello_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct recover_ctx *c = userdata;
	(void)error;
	if (status == 0) {
		uint64_t id = (uint64_t)json_integer_value(json_object_get(result, "id"));
		const char *state = json_string_value(json_object_get(result, "state"));
		if (state && strcmp(state, "leader") == 0)
			snprintf(c->leader, sizeof(c->leader), "%s",
			         json_string_value(json_object_get(result, "name")) ?: "?");
		if (id && c->n_alive < 256)
			c->alive[c->n_alive++] = id;
	}
	if (--c->waiting == 0)
		recover_finish(c);
}

static int recover_check(struct store *s, char **ret_error)
{
	if (s->phase != PHASE_RUNNING || !s->raft_open)
		return error_set(ret_error, -ESHUTDOWN, "the store is not running on this host");
	if (store_is_leader(s))
		return error_set(ret_error, -EBUSY,
		                 "this host is the leader; recover is only for a lost majority");
	if (store_cluster(s->state)->generation == 0)
		return error_set(ret_error, -EAGAIN, "this host has not joined a cluster yet");
	return 0;
}

int store_recover(struct store *s, store_recover_cb done, void *userdata, char **ret_error)
{
	int r = recover_check(s, ret_error);
	if (r < 0)
		return r;
	struct recover_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->s = s;
	c->done = done;
	c->userdata = userdata;
	c->waiting = 1; /* released below, after every call is under way */
	for (size_t i = 0; i < store_count(s->state, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(s->state, STORE_MEMBERS, i);
		if (m->id == s->o.id || !m->peer[0])
			continue;
		if (store_call(s, m->peer, "store.hello", json_object(), PEER_TIMEOUT_MS,
		               recover_hello_cb, c) == 0)
			c->waiting++;
	}
	if (--c->waiting == 0)
		recover_finish(c);
	return 0;
}

static void recover_reply(void *userdata, json_t *result, const char *error)
{
	ctl_deferred_reply(userdata, json_incref(result), error);
}

static int handle_recover(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                          char **ret_error)
{
	int r = recover_check(s, ret_error);
	if (r < 0)
		return r;
	struct ctl_deferred *d = ctl_defer(client, req);
	if (!d)
		return -ENOMEM;
	r = store_recover(s, recover_reply, d, ret_error);
	if (r < 0) {
		ctl_deferred_reply(d, NULL, *ret_error ? *ret_error : strerror(-r));
		free(*ret_error);
		*ret_error = NULL;
	}
	return CTL_DEFERRED;
}

#ifdef ETTM_BENCH_HOOKS
/* ---- store.bench: commit latency and throughput through store_propose() ---- */

/* Each command is a 64-byte lease put, compared in bench/RESULTS.md with
 * bare libraft's 64-byte entries. The leases stay in the table (hosts named
 * "bench-..."): run it on lab clusters only. */
struct bench {
	struct store *s;
	struct ctl_deferred *d;
	unsigned count, burst, inflight;
	unsigned sent, done, phase;
	uint64_t *lat_ns;
	uint64_t burst_t0;
	int failed;
	char error[STORE_REASON_MAX + 128];
};

struct bench_req {
	struct bench *b;
	uint64_t t0;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void bench_step(struct bench *b);

static void bench_finish(struct bench *b)
{
	if (b->failed) {
		ctl_deferred_reply(b->d, NULL, b->error);
	} else {
		double secs = (double)(uv_hrtime() - b->burst_t0) / 1e9;
		qsort(b->lat_ns, b->count, sizeof(uint64_t), cmp_u64);
		ctl_deferred_reply(b->d,
		                   json_pack("{s:s, s:i, s:f, s:f, s:i, s:i, s:f}", "impl", "ettmd",
		                             "count", b->count, "median_us",
		                             (double)b->lat_ns[b->count / 2] / 1e3, "p99_us",
		                             (double)b->lat_ns[b->count * 99 / 100] / 1e3, "burst",
		                             b->burst, "inflight", b->inflight, "commits_per_s",
		                             (double)b->burst / secs),
		                   NULL);
	}
	free(b->lat_ns);
	free(b);
}

static void bench_done(void *userdata, int status, const struct store_result *res,
                       const char *error)
{
	struct bench_req *r = userdata;
	struct bench *b = r->b;
	if (status < 0 && !b->failed) {
		b->failed = status;
		snprintf(b->error, sizeof(b->error), "%s", error ? error : "failed");
	}
	(void)res;
	if (b->phase == 0 && !b->failed)
		b->lat_ns[b->done] = uv_hrtime() - r->t0;
	free(r);
	b->done++;
	if (b->phase == 0 && b->done == b->count) {
		b->phase = 1;
		b->sent = b->done = 0;
		b->burst_t0 = uv_hrtime();
	} else if (b->phase == 1 && b->done == b->burst) {
		bench_finish(b);
		return;
	}
	bench_step(b);
}

static void bench_send(struct bench *b)
{
	unsigned n = b->phase * b->count + b->sent;
	struct store_cmd cmd = {.table = STORE_LEASES, .op = STORE_PUT, .time_ms = wall_ms()};
	snprintf(STORE_CMD_ROW(&cmd, struct store_lease)->mac,
	         sizeof(STORE_CMD_ROW(&cmd, struct store_lease)->mac), "02:00:%02x:%02x:%02x:%02x",
	         (n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
	STORE_CMD_ROW(&cmd, struct store_lease)->addr = 0x0a000000u + n;
	snprintf(STORE_CMD_ROW(&cmd, struct store_lease)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct store_lease)->host), "bench-%012u", n);
	struct bench_req *r = calloc(1, sizeof(*r));
	r->b = b;
	r->t0 = uv_hrtime();
	b->sent++;
	int err = store_propose(b->s, &cmd, bench_done, r);
	if (err < 0) {
		free(r);
		bench_done(&(struct bench_req){.b = b}, err, NULL, strerror(-err));
	}
}

static void bench_step(struct bench *b)
{
	if (b->failed) {
		if (b->done == b->sent)
			bench_finish(b);
		return;
	}
	if (b->phase == 0) {
		bench_send(b);
		return;
	}
	while (b->sent < b->burst && b->sent - b->done < b->inflight)
		bench_send(b);
}

static int handle_bench(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                        char **ret_error)
{
	json_int_t count = json_integer_value(json_object_get(req->args, "count"));
	json_int_t burst = json_integer_value(json_object_get(req->args, "burst"));
	json_int_t inflight = json_integer_value(json_object_get(req->args, "inflight"));
	if (count < 1 || count > 1000000 || burst < 1 || burst > 10000000 || inflight < 1)
		return error_set(ret_error, -EINVAL,
		                 "store.bench needs count (1-1000000), burst (1-10000000) and "
		                 "inflight (>= 1)");
	if (!store_is_leader(s))
		return error_set(ret_error, -EAGAIN, "store.bench runs on the leader");
	struct bench *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	*b = (struct bench){.s = s,
	                    .count = (unsigned)count,
	                    .burst = (unsigned)burst,
	                    .inflight = (unsigned)inflight};
	b->lat_ns = calloc(b->count, sizeof(uint64_t));
	b->d = ctl_defer(client, req);
	bench_step(b);
	return CTL_DEFERRED;
}
#endif /* ETTM_BENCH_HOOKS */

/* ---- dispatch ---- */

static void cluster_status_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct reply_ctx *c = userdata;
	json_t *mine = store_status(c->s);
	(void)error;
	/* The leader knows who is reachable; this host knows its own state. */
	if (status == 0 && json_is_array(json_object_get(result, "members")))
		json_object_set(mine, "members", json_object_get(result, "members"));
	ctl_deferred_reply(c->d, mine, NULL);
	free(c);
}

static int handle_cluster(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                          json_t **ret_result)
{
	const struct store_member *lm = leader_member(s);
	if (store_is_leader(s) || !lm || !lm->peer[0]) {
		*ret_result = store_status(s);
		return 0;
	}
	struct reply_ctx *c = reply_ctx(s, client, req, false);
	if (!c)
		return -ENOMEM;
	if (store_call(s, lm->peer, "store.status", json_object(), PEER_TIMEOUT_MS,
	               cluster_status_cb, c) < 0)
		cluster_status_cb(c, -EIO, NULL, NULL);
	return CTL_DEFERRED;
}

int store_handle_request(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                         json_t **ret_result, char **ret_error)
{
	const char *cmd = req->cmd;
	if (strcmp(cmd, "store.hello") == 0) {
		const struct store_member *lm = leader_member(s);
		*ret_result =
		    json_pack("{s:I, s:s, s:s, s:I, s:I, s:s?}", "id", (json_int_t)s->o.id, "name",
		              s->o.name, "state", phase_state(s), "generation",
		              (json_int_t)store_cluster(s->state)->generation, "last_index",
		              (json_int_t)(s->raft_open ? raft_last_index(&s->raft) : 0), "leader",
		              lm ? lm->name : NULL);
		return 0;
	}
	if (strcmp(cmd, "store.status") == 0) {
		*ret_result = store_status(s);
		return 0;
	}
	if (strcmp(cmd, "store.join") == 0)
		return handle_join(s, req, ret_result, ret_error);
	if (strcmp(cmd, "store.leave") == 0) {
		/* The leader sends it once the host is out of the members table
		 * (the peer API is unauthenticated: see docs/store.md). */
		handle_self_removed(s);
		return 0;
	}
	if (strcmp(cmd, "store.reset") == 0) {
		uint64_t gen =
		    (uint64_t)json_integer_value(json_object_get(req->args, "generation"));
		if (gen > store_cluster(s->state)->generation)
			reset_to_generation(s, gen);
		return 0;
	}
	if (strcmp(cmd, "store.propose") == 0) {
		const char *hex = ctl_arg_str(req, "command");
		uint8_t *data;
		size_t len;
		if (!hex || hex_decode(hex, &data, &len) < 0)
			return error_set(ret_error, -EINVAL, "store.propose needs a hex command");
		if (!store_is_leader(s)) {
			free(data);
			return error_set(ret_error, -EAGAIN, "not the leader");
		}
		struct reply_ctx *c = reply_ctx(s, client, req, false);
		int r = c ? propose_local(s, data, len, reply_done, c) : -ENOMEM;
		free(data);
		if (r < 0 && c)
			return deferred_error(c, r);
		return r < 0 ? r : CTL_DEFERRED;
	}
	if (strcmp(cmd, "store.barrier") == 0) {
		if (!store_is_leader(s))
			return error_set(ret_error, -EAGAIN, "not the leader");
		struct reply_ctx *c = reply_ctx(s, client, req, false);
		if (!c)
			return -ENOMEM;
		int r = store_barrier(s, reply_done, c);
		return r < 0 ? deferred_error(c, r) : CTL_DEFERRED;
	}
	if (strcmp(cmd, "store.dump") == 0) {
		const char *table = ctl_arg_str(req, "table");
		if (!table) {
			*ret_result = store_state_dump(s->state);
			return 0;
		}
		int t = store_table_from_name(table);
		if (t < 0)
			return error_set(ret_error, -ENOENT, "no table named %s", table);
		*ret_result = json_pack("{s:o}", table, store_table_dump(s->state, t));
		return 0;
	}
	if (strcmp(cmd, "cluster") == 0)
		return handle_cluster(s, client, req, ret_result);
#ifdef ETTM_BENCH_HOOKS
	if (strcmp(cmd, "store.bench") == 0)
		return handle_bench(s, client, req, ret_error);
#endif
	if (strcmp(cmd, "cluster.conflicts") == 0) {
		*ret_result =
		    json_pack("{s:o}", "conflicts", store_table_dump(s->state, STORE_CONFLICTS));
		return 0;
	}
	if (strcmp(cmd, "cluster.remove") == 0)
		return handle_remove(s, client, req, ret_error);
	if (strcmp(cmd, "cluster.recover") == 0)
		return handle_recover(s, client, req, ret_error);
	return -ENOENT;
}

/* ---- at start: has the cluster moved on without this host? ---- */

/* Freed when the timer is closed and every call has answered. */
struct probe {
	struct store *s; /* NULL once the store closed */
	int waiting;     /* calls not answered yet */
	int refs;        /* the timer and each call */
	uint64_t highest;
	uv_timer_t timer;
	bool done;
};

static void probe_unref(struct probe *p)
{
	if (--p->refs == 0)
		free(p);
}

static void probe_closed_cb(uv_handle_t *h)
{
	probe_unref(h->data);
}

static void probe_finish(struct probe *p)
{
	struct store *s = p->s;
	if (p->done)
		return;
	p->done = true;
	uv_close((uv_handle_t *)&p->timer, probe_closed_cb);
	if (!s || s->phase != PHASE_PROBING)
		return;
	s->probe = NULL;
	s->phase = PHASE_RUNNING;
	if (p->highest > s->probe_generation) {
		log_warn("store: the cluster went on to generation %" PRIu64 " while this host was "
		         "away (at %" PRIu64 "); rejoining as a fresh replica",
		         p->highest, s->probe_generation);
		journal_take_orphans(s->journal);
		s->orphans_pending = true;
		s->next_mode = START_NORMAL; /* never bootstrap a cluster of one again */
		if (wipe_raft_state(s) < 0)
			return;
	}
	start_raft(s);
}

static void probe_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct probe *p = userdata;
	(void)error;
	if (status == 0) {
		uint64_t g = (uint64_t)json_integer_value(json_object_get(result, "generation"));
		if (g > p->highest)
			p->highest = g;
	}
	if (--p->waiting == 0)
		probe_finish(p);
	probe_unref(p);
}

static void probe_timeout_cb(uv_timer_t *t)
{
	probe_finish(t->data);
}

/* A host with state asks the peers it knew and its seeds for their
 * generation before it starts Raft, so that a group of hosts coming back
 * together does not first elect a leader of a generation that is over.
 * Returns 1 when a probe is under way (it starts Raft when done), 0 when
 * there is nothing to ask. */
static int probe_generation(struct store *s)
{
	char *text = NULL;
	if (file_read_state(s->o.dir, "peers", &text) < 0)
		return 0;
	s->probe_generation = strtoull(text, NULL, 10);
	struct probe *p = calloc(1, sizeof(*p));
	if (!p) {
		free(text);
		return 0;
	}
	p->s = s;
	p->waiting = 1;
	p->refs = 1;
	char *save;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line == text) /* the generation */
			continue;
		if (store_call(s, line, "store.hello", json_object(), PROBE_TIMEOUT_MS, probe_cb,
		               p) == 0) {
			p->waiting++;
			p->refs++;
		}
	}
	for (unsigned i = 0; i < s->o.n_seeds; i++)
		if (strcmp(s->o.seeds[i], s->o.peer_address) != 0 &&
		    store_call(s, s->o.seeds[i], "store.hello", json_object(), PROBE_TIMEOUT_MS,
		               probe_cb, p) == 0) {
			p->waiting++;
			p->refs++;
		}
	free(text);
	uv_timer_init(s->loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, probe_timeout_cb, PROBE_TIMEOUT_MS + 100, 0);
	s->phase = PHASE_PROBING;
	s->probe = p;
	if (--p->waiting == 0)
		probe_finish(p);
	return 1;
}

/* ---- open and close ---- */

int store_open(uv_loop_t *loop, const struct store_options *o, struct store **ret_store,
               char *error, size_t error_size)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->o = *o;
	int r = snprintf(s->raft_dir, sizeof(s->raft_dir), "%.4000s/raft", o->dir) >=
	                (int)sizeof(s->raft_dir)
	            ? -ENAMETOOLONG
	            : file_mkdir_p(s->raft_dir);
	if (r < 0) {
		snprintf(error, error_size, "%s: %s", s->raft_dir, strerror(-r));
		free(s);
		return r;
	}
	if ((r = store_state_new(&s->state)) < 0 || (r = journal_open(o->dir, &s->journal)) < 0) {
		snprintf(error, error_size, "%s: %s", o->dir, strerror(-r));
		store_state_free(s->state);
		free(s);
		return r;
	}
	s->orphans_pending = journal_has_orphans(s->journal);
	char *removed = NULL;
	if (file_read_state(o->dir, "removed", &removed) == 0) {
		free(removed);
		log_warn("store: this host was removed from the cluster; not rejoining (remove "
		         "%s to join again)",
		         o->dir);
		s->phase = PHASE_REMOVED;
	}
	s->members = (struct membership){
	    .target_voters = o->voters, .promote_after_ms = o->promote_after_ms, .self = o->id};
	s->next_mode = o->bootstrap ? START_BOOTSTRAP : START_NORMAL;
	uv_timer_init(loop, &s->tick);
	s->tick.data = s;
	if (s->phase != PHASE_REMOVED && probe_generation(s) == 0)
		start_raft(s);
	if (s->phase == PHASE_FAILED) {
		snprintf(error, error_size, "%s", s->fatal);
		uv_close((uv_handle_t *)&s->tick, NULL);
		journal_close(s->journal);
		store_state_free(s->state);
		free(s);
		return -EIO;
	}
	uv_timer_start(&s->tick, tick_cb, TICK_MS, TICK_MS);
	*ret_store = s;
	return 0;
}

static void tick_closed_cb(uv_handle_t *h)
{
	struct store *s = h->data;
	s->freeing = true;
	if (s->calls == 0)
		store_free_final(s);
}

static void store_free_final(struct store *s)
{
	while (s->subscribers) {
		struct store_subscription *next = s->subscribers->next;
		free(s->subscribers);
		s->subscribers = next;
	}
	while (s->waiting_barriers) {
		struct pending *p = s->waiting_barriers;
		s->waiting_barriers = p->next;
		pending_done(p, -ESHUTDOWN, NULL, "the store is closing");
	}
	journal_close(s->journal);
	store_state_free(s->state);
	void (*cb)(void *) = s->close_cb;
	void *userdata = s->close_userdata;
	free(s);
	if (cb)
		cb(userdata);
}

void store_close(struct store *s, void (*cb)(void *userdata), void *userdata)
{
	if (s->probe) {
		s->probe->s = NULL;
		probe_finish(s->probe);
		s->probe = NULL;
	}
	s->close_cb = cb;
	s->close_userdata = userdata;
	uv_timer_stop(&s->tick);
	bool open = s->raft_open;
	stop_raft(s, PHASE_CLOSING);
	if (!open)
		uv_close((uv_handle_t *)&s->tick, tick_closed_cb);
}
