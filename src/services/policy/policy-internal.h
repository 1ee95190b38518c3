/* Between the policy service's files: the network as this replica knows
 * it, and the agent that judges the flows nftables cannot (agent.c). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "policy.h"

struct svc_env;

/* ---- time windows (time.c), for the parser ---- */

/* "mon", "fri-mon", "daily", "weekdays", "weekends" as days, bit 0
 * Monday; false when @w is none. */
bool policy_days_parse(const char *w, uint8_t *ret_days);

/* "08:00-17:30" as minutes of the day (the end may be 24:00, or before the
 * start: past midnight); false when @w is none or an empty span. */
bool policy_hours_parse(const char *w, int *ret_lo, int *ret_hi);

/* Adds the hours @lo to @hi of each of @days to the minutes @set; a span
 * past midnight goes on into the next day, Sunday's into Monday's. */
void policy_window_add(uint8_t *set, uint8_t days, int lo, int hi);

/* "UTC", "UTC+02:00", "UTC-03:30:15" or a zone of the system's zoneinfo
 * ("Europe/Paris") into *@ret; -EINVAL with *@ret_error when it is none. */
int policy_zone_parse(const char *w, struct policy_zone *ret, char **ret_error);

/* The edges of @n @rules' windows into @t (and whether any is timed). */
void policy_time_edges(struct policy_time *t, const struct policy_rule *rules, size_t n);

/* The hosts (the store's members and located hosts, with their guests'
 * addresses where the switch controller learned them; this host's own from
 * its configuration) and the LAN (the control address's prefix). */
struct net_view {
	struct policy_net net;
	size_t n, cap;
	struct policy_host *hosts;
};

int policy_view_build(const struct svc_env *env, struct net_view *v);
void policy_view_free(struct net_view *v);

/* ---- the two phases of a change (epochs.c) ---- */

/* After an activation, the epoch it replaced stays installed this long,
 * for the packets still stamped with it: far longer than a packet lives
 * inside the LAN. */
#define POLICY_RETIRE_MS 2000
/* The leader activates a pending epoch once every member it reaches has
 * acknowledged it, or this long after it was committed. */
#define POLICY_ACK_TIMEOUT_MS 2000

struct store;
struct store_state;

/* An epoch and its policy's text (NULL: no policy). */
struct policy_epoch_text {
	uint64_t epoch;
	const char *text;
};

/* How long policy apply waits for its epoch to be activated, and, while
 * no leader is known (an election), for one to commit it. */
#define POLICY_WAIT_MS    10000
#define POLICY_PROPOSE_MS 5000

struct policy_wait;
struct epochs_op;
struct ctl_deferred;

/* One agent's part: what it saw active (and a copy of its text), the
 * epoch retired by the last activation and until when it stays, the
 * commands under way, and the applies waiting for their epochs. */
struct policy_epochs {
	bool seen;
	uint64_t active, retired, retired_until_ms;
	char *active_text, *retired_text;
	uint64_t acking, activating;
	struct epochs_op *ack_op, *act_op;
	struct policy_wait *waits;
	struct store *store;
};

/* The epochs to install now into @v, the active one first; their stamps
 * are distinct. Notes an activation (the epoch it replaced is retired at
 * @now_ms + POLICY_RETIRE_MS). The texts are valid until the store or
 * @pe changes. */
size_t policy_epochs_installed(struct policy_epochs *pe, const struct store_state *st,
                               uint64_t now_ms, struct policy_epoch_text v[POLICY_INSTALLED_MAX]);
/* Whether the retired epoch's time is over: then policy_epochs_retired()
 * and install again. */
bool policy_epochs_retiring(const struct policy_epochs *pe, uint64_t now_ms);
void policy_epochs_retired(struct policy_epochs *pe);
void policy_epochs_free(struct policy_epochs *pe);

/* Acknowledges through the store that @host installed @epoch (once). */
void policy_epochs_ack(struct policy_epochs *pe, struct store *store, const char *host,
                       uint64_t epoch);

/* As the leader: activates the pending epoch once every member it reaches
 * has acknowledged it, or POLICY_ACK_TIMEOUT_MS after its commit, naming
 * in the log the members that had not. */
void policy_epochs_lead(struct policy_epochs *pe, struct store *store);

/* Commits @text (stolen) as the policy, made on epoch @made_on (while no
 * leader is known, proposed again for up to POLICY_PROPOSE_MS), and
 * answers @d (policy apply, its @report stolen) once the epoch is
 * activated ("epoch", "activated": true, the members that acknowledged it
 * and not, and "activated_after_ms" since the apply was proposed),
 * replaced by a newer one before ("activated": false, "superseded_by"), or
 * after POLICY_WAIT_MS ("activated": false); or with the store's refusal.
 * policy_epochs_answer() checks, at each change of the store and each
 * tick; policy_epochs_free() answers what is left. */
void policy_epochs_apply(struct policy_epochs *pe, struct store *store, char *text,
                         uint64_t made_on, struct ctl_deferred *d, json_t *report);
void policy_epochs_answer(struct policy_epochs *pe, const struct store_state *st);

/* {active_epoch, pending_epoch, pending_since_ms, activated_ms,
 * acknowledged: {member: epoch}, not_acknowledged: [members behind the
 * newest epoch]}. */
json_t *policy_epochs_json(const struct store_state *st);

/* The queues of the flows the agent judges: the guest's own, and those
 * that reach it. */
enum { POLICY_QUEUE_OUT = 0, POLICY_QUEUE_IN = 1 };

struct policy_agent;

/* Makes the agent judge under the @n epochs @texts installed (the active
 * one first, as policy_epochs_installed() gives them), their windows as
 * at @now (seconds since the epoch: the time the table was built for):
 * each direction whose rules ask for programs or users at this end has
 * its flows steered to a queue, attributed and judged here, under the
 * epoch the table judges the packet under (one stamped with another
 * installed epoch, from the LAN, under that one); the others are left to
 * nftables. @n 0: no policy. *@pa is created when first needed and kept.
 *
 * Called twice for each change, @before_table the table changes and after
 * it, so that no flow an epoch allows is dropped in between: a policy that
 * needs the agent is steered to it before the table changes (until then
 * the old table takes the agent's verdicts, or judges by itself), and one
 * that no longer needs it is unsteered only after (until then its flows
 * are judged by the agent and then by the new table).
 *
 * Returns 0 or a negative errno with *@ret_error; on failure nothing is
 * steered, and the nftables rules judge every flow as one of an unknown
 * program. */
int policy_agent_update(struct policy_agent **pa, const struct svc_env *env,
                        const struct policy_epoch_text *texts, size_t n, time_t now,
                        bool before_table, char **ret_error);

/* What it judged, for status; NULL when there is no agent. */
json_t *policy_agent_status(const struct policy_agent *a);

/* The policy log's entries after @since (a seq; 0: from the oldest kept),
 * at most the last @limit of them (0: all); newest last. An empty array
 * when there is no agent. */
json_t *policy_agent_log(const struct policy_agent *a, uint64_t since, size_t limit);

/* Stops steering, closes the queues and frees @a; calls @done(@arg) once
 * its handles are closed. */
void policy_agent_close(struct policy_agent *a, void (*done)(void *arg), void *arg);
