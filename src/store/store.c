/* The store's life: open (bootstrap, resume or join), the Raft instance it
 * runs and re-creates in place, the state machine's callbacks and the
 * subscribers they notify, the read accessors, and close. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/tls.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "store-internal.h"

_Static_assert(STORE_ROLE_VOTER == RAFT_VOTER && STORE_ROLE_STANDBY == RAFT_STANDBY &&
                   STORE_ROLE_SPARE == RAFT_SPARE,
               "the members table keeps Raft's role numbers");

static void tick_closed_cb(uv_handle_t *h);
static void fail_store(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *store_raft_version(void)
{
	return "libraft " RAFT_LIB_VERSION;
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
	/* A reply libraft sent just before this apply goes out first, not
	 * after the subscribers' work (tlsproxy.h). */
	fence_pump(&s->fence);
	if (res->applied && (cmd->table == STORE_CLUSTER || cmd->table == STORE_MEMBERS))
		save_peers(s);
	/* The term this replica is in: never below the term that committed
	 * the entry (journal_in_history() counts on it). */
	struct journal_pos pos = {.generation = store_cluster(s->state)->generation,
	                          .term = s->raft.current_term,
	                          .index = s->raft.last_applied + 1};
	journal_append(s->journal, &pos, buf->base, buf->len);
	notify(s, cmd, res);
	fence_pump(&s->fence);
	if (cmd->table == STORE_MEMBERS && cmd->op == STORE_DELETE && res->applied &&
	    STORE_CMD_ROW(cmd, struct store_member)->id == s->o.id)
		store_handle_self_removed(s);
}

static void fsm_corrupt(void *userdata, const char *why)
{
	struct store *s = userdata;
	/* The admin restores this host from a healthy replica. */
	fail_store(s, "corrupt log entry or snapshot after index %llu: %s",
	           (unsigned long long)s->raft.last_applied, why);
}

/* ---- the Raft instance ---- */

static size_t fence_voters(void *userdata, uint64_t *ids, size_t max)
{
	return store_voters(userdata, ids, max);
}

struct probe;

static void raft_closed_cb(struct raft *r)
{
	struct store *s = r->data;
	s->raft_closing = false;
	raft_uv_close(&s->io);
	fence_close_transport(&s->fence);
	s->raft_open = false;
	if (s->phase == PHASE_RESTARTING) {
		s->phase = PHASE_RUNNING;
		if (s->wipe_on_restart && store_wipe_raft_state(s) < 0)
			return;
		store_start_raft(s);
	} else if (s->phase == PHASE_CLOSING) {
		uv_close((uv_handle_t *)&s->tick, tick_closed_cb);
	}
}

/* How long a close waits for the leader's disk writes in flight. */
#define DRAIN_MS 1000

/* Whether the leader has log entries whose disk write has not ended. */
static bool appends_in_flight(struct store *s)
{
	return s->raft.state == RAFT_LEADER && s->raft.last_stored < raft_last_index(&s->raft);
}

/* The tick while a close waits: the close goes on once the writes have
 * ended, or after DRAIN_MS whatever they do. */
static void drain_cb(uv_timer_t *t)
{
	struct store *s = t->data;
	if (appends_in_flight(s) && mono_ms() < s->drain_until_ms)
		return;
	if (s->phase == PHASE_CLOSING)
		uv_timer_stop(&s->tick);
	else
		uv_timer_start(&s->tick, store_tick_cb, TICK_MS, TICK_MS);
	raft_close(&s->raft, raft_closed_cb);
}

/* Closes Raft once: a second raft_close() while the first is under way
 * (a reset, then the agent stopping; a removed host's ticks) crashes
 * libraft. What the phase says when the close ends is what follows it.
 *
 * libraft 0.15 also crashes when it closes a leader with two or more disk
 * writes in flight: each cancelled write truncates the log from its own
 * index, and the second one's index is past the end left by the first
 * (appendLeaderCb, fixed upstream after 0.15). No proposal is taken once
 * the phase has left PHASE_RUNNING, so the writes in flight end within a
 * few milliseconds; the close waits for them. */
static void close_raft(struct store *s)
{
	if (!s->raft_open || s->raft_closing)
		return;
	s->raft_closing = true;
	if (appends_in_flight(s)) {
		s->drain_until_ms = mono_ms() + DRAIN_MS;
		uv_timer_start(&s->tick, drain_cb, 1, 1);
		return;
	}
	raft_close(&s->raft, raft_closed_cb);
}

void store_stop_raft(struct store *s, enum store_phase then)
{
	s->phase = then;
	s->changing = false;
	close_raft(s);
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
void store_handle_self_removed(struct store *s)
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
int store_wipe_raft_state(struct store *s)
{
	s->wipe_on_restart = false;
	/* The replica joins again, through whoever leads now. */
	s->joined_via[0] = s->joined_key[0] = '\0';
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
	s->catching_up = true;
	return 0;
}

bool store_catching_up(const struct store *s)
{
	return s->catching_up;
}

void store_set_caught_up_cb(struct store *s, void (*cb)(void *userdata), void *userdata)
{
	s->caught_up_cb = cb;
	s->caught_up_userdata = userdata;
}

uint64_t store_known_generation(const struct store *s)
{
	uint64_t g = store_cluster(s->state)->generation;
	return g > s->generation_floor ? g : s->generation_floor;
}

/* The term of the last entry of @r's log. libraft 0.15 has no call for
 * it; struct raft_log is in its public header. */
uint64_t store_last_term(const struct raft *r)
{
	const struct raft_log *l = &r->log;
	size_t n = l->back >= l->front ? l->back - l->front : l->size - l->front + l->back;
	if (n == 0)
		return l->snapshot.last_term;
	return l->entries[(l->back + l->size - 1) % l->size].term;
}

static uint64_t fence_generation(void *userdata)
{
	return store_known_generation(userdata);
}

static void fence_newer(void *userdata, uint64_t generation)
{
	struct store *s = userdata;
	if (generation > s->fence_newer)
		s->fence_newer = generation;
}

static int fence_check(void *userdata, const char *fp, uint64_t raft_id, char **ret_error)
{
	struct store *s = userdata;
	return s->raft_check ? s->raft_check(s->raft_check_userdata, fp, raft_id, ret_error) : 0;
}

void store_set_raft_check(struct store *s, store_raft_check_fn check, void *userdata)
{
	s->raft_check = check;
	s->raft_check_userdata = userdata;
}

/* Creates and starts the Raft instance in s->raft per s->next_mode. */
void store_start_raft(struct store *s)
{
	int r;
	const char *what = "raft_uv_tcp_init";
	if ((r = fence_init_transport(&s->fence, s->loop)) != 0)
		goto fail;
	s->fence.generation = fence_generation;
	s->fence.newer = fence_newer;
	s->fence.userdata = s;
	s->fence.tls = ctl_tls_default();
	s->fence.check = fence_check;
	s->fence.voters = fence_voters;
	what = "raft_uv_init";
	if ((r = raft_uv_init(&s->io, s->loop, s->raft_dir, &s->fence.t)) != 0) {
		fence_close_transport(&s->fence);
		goto fail;
	}
	store_fsm_init(&s->fsm, s->state);
	s->fsm.applied = fsm_applied;
	s->fsm.corrupt = fsm_corrupt;
	s->fsm.userdata = s;
	what = "raft_init";
	if ((r = raft_init(&s->raft, &s->io, &s->fsm.fsm, s->o.id, s->o.raft_address)) != 0) {
		raft_uv_close(&s->io);
		fence_close_transport(&s->fence);
		goto fail;
	}
	s->raft.data = s;
	s->raft_open = true;
	raft_set_pre_vote(&s->raft, true);
	raft_set_election_timeout(&s->raft, s->o.election_ms);
	raft_set_heartbeat_timeout(&s->raft, s->o.heartbeat_ms);
	raft_set_snapshot_threshold(&s->raft, s->o.snapshot_threshold);
	/* An InstallSnapshot the follower dropped (busy) is sent again after
	 * a few election timeouts, not libraft's 30 s. */
	raft_set_install_snapshot_timeout(&s->raft, 5 * s->o.election_ms);
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
	fail_store(s, "%s (Raft on %s): %s", what, s->o.raft_address,
	           raft_errmsg(&s->raft)[0] ? raft_errmsg(&s->raft) : raft_strerror(r));
	close_raft(s);
	return;
fail:
	fail_store(s, "%s: %s", what, raft_strerror(r));
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
	if (!s->raft_open || s->phase != PHASE_RUNNING)
		return 0;
	raft_leader(&s->raft, &id, &address);
	/* A voter that stops hearing its leader stands for election and
	 * forgets it; a standby or a spare never stands and would remember it
	 * for good (libraft's tickFollower): a leader not heard from for two
	 * election timeouts is not known any more. */
	if (id && s->raft.state == RAFT_FOLLOWER &&
	    s->raft.io->time(s->raft.io) - s->raft.election_timer_start >
	        2 * (raft_time)s->raft.election_timeout)
		return 0;
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

/* ---- open and close ---- */

int store_open(uv_loop_t *loop, const struct store_options *o, struct store **ret_store,
               char **ret_error)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(ret_error, -ENOMEM, "out of memory");
	s->loop = loop;
	s->o = *o;
	int r = snprintf(s->raft_dir, sizeof(s->raft_dir), "%.4000s/raft", o->dir) >=
	                (int)sizeof(s->raft_dir)
	            ? -ENAMETOOLONG
	            : file_mkdir_p(s->raft_dir);
	if (r < 0) {
		error_set(ret_error, r, "%s: %s", s->raft_dir, strerror(-r));
		free(s);
		return r;
	}
	if ((r = store_state_new(&s->state)) < 0 || (r = journal_open(o->dir, &s->journal)) < 0) {
		error_set(ret_error, r, "%s: %s", o->dir, strerror(-r));
		store_state_free(s->state);
		free(s);
		return r;
	}
	s->orphans_pending = journal_has_orphans(s->journal);
	if (s->orphans_pending)
		store_load_orphans_target(s);
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
	if (s->phase != PHASE_REMOVED && store_probe_generation(s) == 0)
		store_start_raft(s);
	if (s->phase == PHASE_FAILED) {
		error_set(ret_error, -EIO, "%s", s->fatal);
		if (s->raft_closing) {
			/* Raft started and failed: it closes in its own time,
			 * and the store is freed after it (raft_closed_cb()). */
			s->phase = PHASE_CLOSING;
			return -EIO;
		}
		uv_close((uv_handle_t *)&s->tick, NULL);
		journal_close(s->journal);
		store_state_free(s->state);
		free(s);
		return -EIO;
	}
	uv_timer_start(&s->tick, store_tick_cb, TICK_MS, TICK_MS);
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

void store_free_final(struct store *s)
{
	while (s->subscribers) {
		struct store_subscription *next = s->subscribers->next;
		free(s->subscribers);
		s->subscribers = next;
	}
	while (s->waiting_barriers) {
		struct pending *p = s->waiting_barriers;
		s->waiting_barriers = p->next;
		store_pending_done(p, -ESHUTDOWN, NULL, "the store is closing");
	}
	/* A recovery declared, then the store closed before Raft restarted. */
	if (s->next_mode == START_RECOVER)
		raft_configuration_close(&s->recover_conf);
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
		store_probe_finish(s->probe);
		s->probe = NULL;
	}
	s->close_cb = cb;
	s->close_userdata = userdata;
	uv_timer_stop(&s->tick);
	bool open = s->raft_open;
	store_stop_raft(s, PHASE_CLOSING);
	if (!open)
		uv_close((uv_handle_t *)&s->tick, tick_closed_cb);
}
