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

/* The queues of the flows the agent judges: the guest's own, and those
 * that reach it. */
enum { POLICY_QUEUE_OUT = 0, POLICY_QUEUE_IN = 1 };

struct policy_agent;

/* Makes the agent judge under the store's policy @text at @epoch, its
 * windows as at @now (seconds since the epoch: the time the table was
 * built for): each
 * direction whose rules ask for programs or users at this end has its
 * flows steered to a queue, attributed and judged here; the others are
 * left to nftables. @text NULL: none. *@pa is created when first needed
 * and kept.
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
int policy_agent_update(struct policy_agent **pa, const struct svc_env *env, const char *text,
                        uint64_t epoch, time_t now, bool before_table, char **ret_error);

/* What it judged, for status; NULL when there is no agent. */
json_t *policy_agent_status(const struct policy_agent *a);

/* The policy log's entries after @since (a seq; 0: from the oldest kept),
 * at most the last @limit of them (0: all); newest last. An empty array
 * when there is no agent. */
json_t *policy_agent_log(const struct policy_agent *a, uint64_t since, size_t limit);

/* Stops steering, closes the queues and frees @a; calls @done(@arg) once
 * its handles are closed. */
void policy_agent_close(struct policy_agent *a, void (*done)(void *arg), void *arg);
