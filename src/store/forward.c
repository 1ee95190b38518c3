/* Proposals and barriers: applied locally on the leader, forwarded from a
 * follower to the leader over the peer API (and answered once this replica
 * has applied them), and the peer calls the store makes. */
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
	raft_id id = 0;
	const char *address = NULL;
	if (!s->raft_open)
		return NULL;
	raft_leader(&s->raft, &id, &address);
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

void store_release_barriers(struct store *s)
{
	uint64_t applied = s->raft_open ? raft_last_applied(&s->raft) : 0;
	struct pending **pp = &s->waiting_barriers;
	while (*pp) {
		struct pending *p = *pp;
		if (p->wait_index <= applied) {
			*pp = p->next;
			store_pending_done(p, 0, p->has_result ? &p->result : NULL, NULL);
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
