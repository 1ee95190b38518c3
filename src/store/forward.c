/* Proposals and barriers: applied locally on the leader, forwarded from a
 * follower to the leader over the peer API (and answered once this replica
 * has applied them), and the peer calls the store makes.
 *
 * A forwarded command waits twice, each wait bounded by
 * store_forward_timeout_ms(): for the leader's answer, then for this
 * replica to apply the index the leader answered with. A follower cut off
 * right after the leader answered would otherwise keep its caller waiting
 * until it reconnects. On the leader, raft_apply() and raft_barrier() need
 * no timer of their own: a leader that loses its quorum steps down within
 * an election timeout and fails what it has in flight. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/client.h"
#include "lib/hex.h"
#include "store-internal.h"

/* ---- peer calls: the store outlives every call it made ---- */

struct store_call_ctx {
	struct store *s;
	ctl_call_cb cb;
	void *userdata;
};

static void store_call_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct store_call_ctx c = *(struct store_call_ctx *)userdata;
	free(userdata);
	c.cb(c.userdata, status, result, error);
	if (--c.s->calls == 0 && c.s->freeing)
		store_free_final(c.s);
}

/* ctl_call() on behalf of the store; see ctl_call() for the contract. */
int store_call(struct store *s, const char *address, const char *cmd, json_t *args,
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

void store_pending_done(struct pending *p, int status, const struct store_result *res,
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
		store_pending_done(
		    p, status == RAFT_NOTLEADER || status == RAFT_LEADERSHIPLOST ? -EAGAIN : -EIO,
		    NULL, raft_strerror(status));
	else {
		struct store_result r = *res;
		r.index = req->index;
		store_pending_done(p, 0, &r, NULL);
	}
}

int store_propose_local(struct store *s, const uint8_t *data, size_t len, store_done_cb cb,
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

const struct store_member *store_leader_member(struct store *s)
{
	uint64_t id = store_leader_id(s);
	return id ? store_member_find(s->state, id) : NULL;
}

/* A forwarded call's context: the original callback. */
struct forward {
	struct store *store;
	store_done_cb cb;
	void *userdata;
	bool barrier;
	char leader[STORE_NAME_MAX + STORE_ADDR_MAX + 8];
};

/* Ten election timeouts (2.5 s with the default 250 ms): a leader change
 * takes one or two, so a command that is not answered by then is not
 * coming back soon; never under a second. */
unsigned store_forward_timeout_ms(const struct store *s)
{
	unsigned ms = 10 * s->o.election_ms;
	return ms < 1000 ? 1000 : ms;
}

static void forward_failed(struct forward *f, int status, const char *error)
{
	char why[STORE_REASON_MAX + 256];
	unsigned ms = store_forward_timeout_ms(f->store);
	if (status == -ETIMEDOUT)
		snprintf(why, sizeof(why),
		         "forwarded to the leader %s; no answer within %u.%u s: it may or may "
		         "not have been committed",
		         f->leader, ms / 1000, ms % 1000 / 100);
	else
		snprintf(why, sizeof(why), "the leader %s: %s", f->leader,
		         error ? error : "failed");
	f->cb(f->userdata, status == -EREMOTEIO ? -EAGAIN : status, NULL, why);
	free(f);
}

static void forward_clock_start(struct store *s);

static void forward_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct forward *f = userdata;
	if (status < 0) {
		forward_failed(f, status, error);
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
	p->deadline_ms = uv_now(f->store->loop) + store_forward_timeout_ms(f->store);
	snprintf(p->leader, sizeof(p->leader), "%s", f->leader);
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
	forward_clock_start(p->store);
	store_release_barriers(p->store);
}

static int forward(struct store *s, const char *cmd, json_t *args, bool barrier, store_done_cb cb,
                   void *userdata)
{
	const struct store_member *leader = store_leader_member(s);
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
	int r = store_call(s, leader->peer, cmd, args, store_forward_timeout_ms(s), forward_cb, f);
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
		return store_propose_local(s, data, len, cb, userdata);
	char *hex = hex_encode_new(data, len);
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
		store_pending_done(p, -EAGAIN, NULL, raft_strerror(status));
	else
		store_pending_done(p, 0, NULL, NULL);
}

/* The leader answered, this replica did not get there in time: what is
 * known is that the leader committed it. */
static void wait_expired(struct pending *p, uint64_t applied)
{
	char why[STORE_REASON_MAX + 256];
	unsigned ms = store_forward_timeout_ms(p->store);
	snprintf(why, sizeof(why),
	         "forwarded to the leader %s, which %s %llu; this host applied only "
	         "up to %llu within %u.%u s (cut off from the leader?)",
	         p->leader, p->has_result ? "committed it at index" : "had applied up to index",
	         (unsigned long long)p->wait_index, (unsigned long long)applied, ms / 1000,
	         ms % 1000 / 100);
	store_pending_done(p, -ETIMEDOUT, NULL, why);
}

void store_release_barriers(struct store *s)
{
	uint64_t applied = s->raft_open ? raft_last_applied(&s->raft) : 0;
	uint64_t now = uv_now(s->loop);
	struct pending **pp = &s->waiting_barriers;
	while (*pp) {
		struct pending *p = *pp;
		if (p->wait_index <= applied) {
			*pp = p->next;
			store_pending_done(p, 0, p->has_result ? &p->result : NULL, NULL);
		} else if (now >= p->deadline_ms) {
			*pp = p->next;
			wait_expired(p, applied);
		} else {
			pp = &p->next;
		}
	}
}

/* ---- the clock of the followers' waits ---- */

/* Runs while followers' waits are pending, whatever the store's phase (the
 * store's own tick skips a store whose Raft is closed). It counts as one of
 * the store's calls, so the store is freed only after it has closed. */
struct forward_clock {
	uv_timer_t timer;
	struct store *s;
};

static void forward_clock_closed(uv_handle_t *h)
{
	struct forward_clock *c = h->data;
	struct store *s = c->s;
	free(c);
	if (--s->calls == 0 && s->freeing)
		store_free_final(s);
}

static void forward_clock_cb(uv_timer_t *t)
{
	struct forward_clock *c = t->data;
	struct store *s = c->s;
	if (!s->freeing)
		store_release_barriers(s);
	if (s->freeing || !s->waiting_barriers) {
		s->forward_clock = NULL;
		uv_close((uv_handle_t *)&c->timer, forward_clock_closed);
	}
}

static void forward_clock_start(struct store *s)
{
	if (s->forward_clock || s->freeing)
		return;
	struct forward_clock *c = calloc(1, sizeof(*c));
	if (!c)
		return; /* the store's tick still expires the waits while Raft runs */
	c->s = s;
	c->timer.data = c;
	uv_timer_init(s->loop, &c->timer);
	uv_timer_start(&c->timer, forward_clock_cb, TICK_MS, TICK_MS);
	s->forward_clock = c;
	s->calls++;
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
