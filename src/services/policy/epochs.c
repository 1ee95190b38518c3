/* The two phases of a change of policy on one agent (policy-internal.h,
 * docs/policy.md "Epochs"): which epochs it installs, its
 * acknowledgement, and, on the leader, the activation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/server.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "policy-internal.h"
#include "store/store.h"

/* A policy apply waiting for its epoch. */
struct policy_wait {
	struct policy_wait *next;
	struct policy_epochs *pe; /* NULL once @pe is gone (a commit under way) */
	struct ctl_deferred *d;   /* NULL once answered */
	json_t *report;
	/* Not committed yet: the text, made on that epoch; with no leader
	 * known, proposed again until @since_ms + POLICY_PROPOSE_MS. */
	char *text;
	uint64_t made_on;
	bool proposing;
	uint64_t epoch, since_ms;
};

/* An acknowledgement or an activation under way; @pe NULL once it is
 * gone (the store answers every proposal, even after the service). */
struct epochs_op {
	struct policy_epochs *pe;
	bool ack;
};

/* Stamps of the epochs in @v, one each: a later one whose stamp is taken
 * is left out. */
static size_t add(struct policy_epoch_text *v, size_t n, uint64_t epoch, const char *text)
{
	for (size_t i = 0; i < n; i++)
		if (policy_epoch_stamp(v[i].epoch) == policy_epoch_stamp(epoch))
			return n;
	v[n] = (struct policy_epoch_text){epoch, text};
	return n + 1;
}

static uint64_t acked_epoch(const struct store_state *st, const char *host)
{
	struct store_policy_ack key = {0};
	snprintf(key.host, sizeof(key.host), "%s", host);
	const struct store_policy_ack *a = store_table_get(st, STORE_POLICY_ACKS, &key);
	return a ? a->epoch : 0;
}

size_t policy_epochs_installed(struct policy_epochs *pe, const struct store_state *st,
                               uint64_t now_ms, struct policy_epoch_text v[POLICY_INSTALLED_MAX])
{
	const struct store_policy *sp = store_policy(st);
	const struct store_policy_epochs *e = store_policy_epochs(st);
	const char *text;
	uint64_t active = store_policy_active(st, &text);
	if (active != pe->active && pe->seen) {
		/* Activated: the epoch it replaced here stays for what is still
		 * stamped with it (its text this agent's own copy: the store's
		 * may already be the next change's). */
		free(pe->retired_text);
		pe->retired = pe->active;
		pe->retired_text = pe->active_text;
		pe->active_text = NULL;
		/* (Not when its copy could not be made: it would pass all.) */
		pe->retired_until_ms =
		    pe->retired && !pe->retired_text ? 0 : now_ms + POLICY_RETIRE_MS;
	}
	if (active != pe->active || !pe->seen) {
		free(pe->active_text);
		pe->active_text = text ? strdup(text) : NULL;
		if (text && !pe->active_text)
			log_error("policy: out of memory for epoch %llu's text",
			          (unsigned long long)active);
	}
	pe->active = active;
	pe->seen = true;
	size_t n = add(v, 0, active, text);
	if (e->pending)
		n = add(v, n, sp->epoch, sp->text);
	if (now_ms < pe->retired_until_ms)
		n = add(v, n, pe->retired, pe->retired_text);
	return n;
}

bool policy_epochs_retiring(const struct policy_epochs *pe, uint64_t now_ms)
{
	return pe->retired_until_ms && now_ms >= pe->retired_until_ms;
}

void policy_epochs_retired(struct policy_epochs *pe)
{
	free(pe->retired_text);
	pe->retired_text = NULL;
	pe->retired_until_ms = 0;
}

static void answer(struct policy_wait *w, json_t *result, const char *error)
{
	if (w->d)
		ctl_deferred_reply(w->d, result, error);
	else
		json_decref(result);
	w->d = NULL;
	w->report = NULL;
}

static void wait_free(struct policy_wait *w)
{
	json_decref(w->report);
	free(w->text);
	free(w);
}

void policy_epochs_free(struct policy_epochs *pe)
{
	while (pe->waits) {
		struct policy_wait *w = pe->waits;
		pe->waits = w->next;
		json_decref(w->report);
		w->report = NULL;
		answer(w, NULL, "the agent stopped before the epoch was activated");
		if (w->proposing)
			w->pe = NULL; /* freed by its commit's callback */
		else
			wait_free(w);
	}
	if (pe->ack_op)
		pe->ack_op->pe = NULL;
	if (pe->act_op)
		pe->act_op->pe = NULL;
	free(pe->retired_text);
	free(pe->active_text);
	memset(pe, 0, sizeof(*pe));
}

/* ---- policy apply's commit and answer ---- */

static void unlink_wait(struct policy_epochs *pe, struct policy_wait *w)
{
	for (struct policy_wait **p = &pe->waits; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			return;
		}
}

static void committed(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct policy_wait *w = userdata;
	w->proposing = false;
	if (!w->pe) {
		wait_free(w);
		return;
	}
	if (status >= 0 && res->applied) {
		w->epoch = res->value;
		free(w->text);
		w->text = NULL;
		policy_epochs_answer(w->pe, store_state(w->pe->store));
		return;
	}
	json_decref(w->report);
	w->report = NULL;
	answer(w, NULL, status < 0 ? (error ? error : strerror(-status)) : res->reason);
	unlink_wait(w->pe, w);
	wait_free(w);
}

/* Proposes @w's text; false when it is answered (and to be freed). */
static bool propose(struct policy_wait *w)
{
	struct store_cmd cmd = {.table = STORE_POLICY, .op = STORE_PUT, .time_ms = wall_ms()};
	struct store_policy *sp = STORE_CMD_ROW(&cmd, struct store_policy);
	sp->epoch = w->made_on;
	sp->text = w->text;
	int r = store_propose(w->pe->store, &cmd, committed, w); /* encodes the text at once */
	if (r == 0) {
		w->proposing = true;
		return true;
	}
	/* No leader known right now (an election): proposed again soon. */
	if (r == -EAGAIN && wall_ms() < w->since_ms + POLICY_PROPOSE_MS)
		return true;
	json_decref(w->report);
	w->report = NULL;
	answer(w, NULL,
	       r == -EAGAIN ? "no leader is known right now; nothing was applied: try again"
	                    : strerror(-r));
	return false;
}

void policy_epochs_apply(struct policy_epochs *pe, struct store *store, char *text,
                         uint64_t made_on, struct ctl_deferred *d, json_t *report)
{
	struct policy_wait *w = calloc(1, sizeof(*w));
	if (!w) {
		free(text);
		json_decref(report);
		ctl_deferred_reply(d, NULL, strerror(ENOMEM));
		return;
	}
	pe->store = store;
	*w = (struct policy_wait){.next = pe->waits,
	                          .pe = pe,
	                          .d = d,
	                          .report = report,
	                          .text = text,
	                          .made_on = made_on,
	                          .since_ms = wall_ms()};
	pe->waits = w;
	if (!propose(w)) {
		pe->waits = w->next;
		wait_free(w);
	}
}

/* Adds to @report how @w's epoch ended, or returns false while pending. */
static bool ended(const struct policy_wait *w, const struct store_state *st, json_t *report)
{
	const struct store_policy *sp = store_policy(st);
	const struct store_policy_epochs *e = store_policy_epochs(st);
	uint64_t active = store_policy_active(st, NULL);
	json_object_set_new(report, "epoch", json_integer((json_int_t)w->epoch));
	if (active >= w->epoch) {
		json_t *acked = json_array(), *behind = json_array();
		for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
			const struct store_member *m = store_row(st, STORE_MEMBERS, i);
			json_array_append_new(acked_epoch(st, m->name) >= w->epoch ? acked : behind,
			                      json_string(m->name));
		}
		json_object_set_new(report, "activated", json_true());
		json_object_set_new(report, "acknowledged", acked);
		json_object_set_new(report, "not_acknowledged", behind);
		if (active == w->epoch) /* since the apply was proposed */
			json_object_set_new(
			    report, "activated_after_ms",
			    json_integer((json_int_t)(e->activated_ms > e->since_ms
			                                  ? e->activated_ms - e->since_ms
			                                  : 0)));
		return true;
	}
	if (e->pending != w->epoch && sp->epoch > w->epoch) {
		json_object_set_new(report, "activated", json_false());
		json_object_set_new(report, "superseded_by", json_integer((json_int_t)sp->epoch));
		return true;
	}
	if (wall_ms() >= w->since_ms + POLICY_WAIT_MS) {
		json_object_set_new(report, "activated", json_false());
		return true;
	}
	return false;
}

void policy_epochs_answer(struct policy_epochs *pe, const struct store_state *st)
{
	for (struct policy_wait **p = &pe->waits; *p;) {
		struct policy_wait *w = *p;
		bool keep = w->proposing || (w->text ? propose(w) : !ended(w, st, w->report));
		if (keep) {
			p = &w->next;
			continue;
		}
		*p = w->next;
		answer(w, w->report, NULL);
		wait_free(w);
	}
}

static void op_done(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct epochs_op *op = userdata;
	if (status < 0 || !res->applied)
		log_debug("policy: %s not committed: %s",
		          op->ack ? "acknowledgement" : "activation",
		          status < 0 ? (error ? error : "failed") : res->reason);
	if (op->pe && op->ack)
		op->pe->acking = 0, op->pe->ack_op = NULL;
	else if (op->pe)
		op->pe->activating = 0, op->pe->act_op = NULL;
	free(op);
}

static bool op_propose(struct policy_epochs *pe, struct store *store, const struct store_cmd *cmd,
                       bool ack)
{
	struct epochs_op *op = calloc(1, sizeof(*op));
	if (!op)
		return false;
	*op = (struct epochs_op){pe, ack};
	if (store_propose(store, cmd, op_done, op) < 0) {
		free(op);
		return false;
	}
	*(ack ? &pe->ack_op : &pe->act_op) = op;
	return true;
}

void policy_epochs_ack(struct policy_epochs *pe, struct store *store, const char *host,
                       uint64_t epoch)
{
	struct store_policy_ack key = {0};
	snprintf(key.host, sizeof(key.host), "%s", host);
	const struct store_policy_ack *have =
	    store_table_get(store_state(store), STORE_POLICY_ACKS, &key);
	if ((have && have->epoch == epoch) || pe->acking == epoch || epoch == 0)
		return;
	struct store_cmd cmd = {.table = STORE_POLICY_ACKS, .op = STORE_PUT, .time_ms = wall_ms()};
	struct store_policy_ack *a = STORE_CMD_ROW(&cmd, struct store_policy_ack);
	*a = key;
	a->epoch = epoch;
	a->time_ms = cmd.time_ms;
	if (op_propose(pe, store, &cmd, true))
		pe->acking = epoch;
}

void policy_epochs_lead(struct policy_epochs *pe, struct store *store)
{
	const struct store_state *st = store_state(store);
	const struct store_policy_epochs *e = store_policy_epochs(st);
	if (!e->pending || pe->activating == e->pending || !store_is_leader(store))
		return;
	/* Waits for the members it reaches; one it does not reach is gone
	 * or cut off, and does not hold the network back. */
	char missing[256] = "";
	size_t waiting = 0, off = 0;
	for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(st, STORE_MEMBERS, i);
		if (acked_epoch(st, m->name) >= e->pending)
			continue;
		if (store_member_reachable(store, m->id) == 1)
			waiting++;
		if (off < sizeof(missing))
			off += (size_t)snprintf(missing + off, sizeof(missing) - off, "%s%s",
			                        off ? ", " : "", m->name);
	}
	uint64_t now = wall_ms();
	bool late = now >= e->since_ms + POLICY_ACK_TIMEOUT_MS;
	if (waiting && !late)
		return;
	if (missing[0])
		log_warn("policy: epoch %llu activated without %s: %s",
		         (unsigned long long)e->pending, missing,
		         waiting ? "no acknowledgement within 2 s" : "not reachable");
	struct store_cmd cmd = {.table = STORE_POLICY_EPOCHS, .op = STORE_PUT, .time_ms = now};
	STORE_CMD_ROW(&cmd, struct store_policy_epochs)->pending = e->pending;
	if (op_propose(pe, store, &cmd, false))
		pe->activating = e->pending;
}

json_t *policy_epochs_json(const struct store_state *st)
{
	const struct store_policy *sp = store_policy(st);
	const struct store_policy_epochs *e = store_policy_epochs(st);
	uint64_t active = store_policy_active(st, NULL);
	json_t *acks = json_object(), *behind = json_array();
	for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(st, STORE_MEMBERS, i);
		uint64_t a = acked_epoch(st, m->name);
		json_object_set_new(acks, m->name, json_integer((json_int_t)a));
		if (a < sp->epoch)
			json_array_append_new(behind, json_string(m->name));
	}
	return json_pack("{s:I, s:I, s:I, s:I, s:o, s:o}", "active_epoch", (json_int_t)active,
	                 "pending_epoch", (json_int_t)e->pending, "pending_since_ms",
	                 (json_int_t)(e->pending ? e->since_ms : 0), "activated_ms",
	                 (json_int_t)e->activated_ms, "acknowledged", acks, "not_acknowledged",
	                 behind);
}
