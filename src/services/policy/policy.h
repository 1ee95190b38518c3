/* Policy (docs/policy.md): the admin's rules for what may talk to what, in
 * a file for people; every AEE compiles the network's one policy for its
 * own guest, both directions, into its nftables table.
 *
 * The language: named groups of hosts, named services (protocol and
 * ports), the ends `any`, `lan` and `internet`, address literals, rules
 * `allow` / `deny` from ENDS to ENDS [SERVICES] [during WINDOWS], with
 * `except`, judged top to bottom (the first rule that matches a flow decides it), the two
 * defaults (`default outbound` for what a guest begins, `default inbound`
 * for what reaches a guest), time windows (days and hours, in the file's
 * `timezone`), and `expect` lines, tests that must hold before the file
 * is applied.
 *
 * Parsing, judging (for `expect` and `explain`) and compiling are pure
 * functions of the text and a view of the network (struct policy_net), so
 * the three agree by construction and are tested without root. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "store/tables.h"

struct dp_fragment;

/* ---- the network as the policy sees it ---- */

/* A managed end: a host (its guest), or an unmanaged device, whose
 * traffic its manager's AEE judges and which runs no programs an AEE can
 * know. */
struct policy_host {
	char name[STORE_NAME_MAX];
	uint32_t guest_addr; /* network byte order; 0: not located yet */
	bool device;
};

struct policy_net {
	uint32_t lan_addr, lan_mask; /* network byte order: the managed network */
	size_t n_hosts;
	const struct policy_host *hosts;
	/* Enforcing a policy applied earlier: a name that is no host, group or
	 * service any more is a host that has left (it matches nothing), not
	 * an error. */
	bool departed_hosts;
};

/* The host named @name in @net, or NULL. */
const struct policy_host *policy_net_host(const struct policy_net *net, const char *name);

/* ---- the parsed policy ---- */

/* Where a construct is in the file: line and column, from 1. */
struct policy_pos {
	unsigned line, col;
};

enum policy_end_kind {
	POLICY_END_ANY,
	POLICY_END_LAN,      /* the managed network's prefix */
	POLICY_END_INTERNET, /* everything outside it */
	POLICY_END_HOST,     /* a managed host: its guest */
	POLICY_END_PREFIX,   /* an address or prefix */
};

struct policy_end {
	enum policy_end_kind kind;
	char host[STORE_NAME_MAX];
	uint32_t addr, mask; /* network byte order; POLICY_END_PREFIX */
};

/* The longest word of the language: a name, a program's pattern. */
#define POLICY_WORD_MAX 64

/* The program and user of one end of a flow, as a rule asks for them
 * (`app PATTERN`, `user NAME`) or as a flow has them. In a rule, "" asks
 * nothing; the pattern `unknown` asks for a program (or user) that could
 * not be known. In a flow, "" is a program (or user) that could not be
 * known, and POLICY_WHO_UNNAMED one an `expect` line did not name, which
 * no condition matches. */
struct policy_who {
	char app[POLICY_WORD_MAX];  /* a glob: with a '/', of the path; else of its last part */
	char user[POLICY_WORD_MAX]; /* a name or a number */
};

#define POLICY_WHO_UNNAMED "\x01"

/* A list of ends, groups expanded, and what it excludes; and the program
 * and user at that end, which only the end's own AEE knows. */
struct policy_side {
	size_t n, cap;
	struct policy_end *v;
	size_t n_except, cap_except;
	struct policy_end *except;
	struct policy_who who;
};

/* Whether @s asks for a program or a user. */
static inline bool policy_side_qualified(const struct policy_side *s)
{
	return s->who.app[0] || s->who.user[0];
}

enum { POLICY_PROTO_ANY = 0, POLICY_PROTO_ICMP = 1, POLICY_PROTO_TCP = 6, POLICY_PROTO_UDP = 17 };

/* tcp/80, udp/5000-5010, tcp (every port), icmp. */
struct policy_port {
	uint8_t proto;
	uint16_t lo, hi; /* 0..65535 when the line named no port */
};

/* ---- time ---- */

/* A minute of the week in the policy's time zone: 0 is Monday 00:00,
 * POLICY_WEEK_MINUTES - 1 Sunday 23:59. A set of them (a window) is a
 * bitmap of POLICY_WEEK_BYTES. */
#define POLICY_WEEK_MINUTES (7 * 24 * 60)
#define POLICY_WEEK_BYTES   (POLICY_WEEK_MINUTES / 8)

static inline bool policy_minute_in(const uint8_t *set, int minute)
{
	return set[minute / 8] & (1u << (minute % 8));
}

/* The `timezone` of a file: a fixed offset east of UTC, or a zone of the
 * system's zoneinfo (tzdata), which knows its summer time. */
struct policy_zone {
	char name[POLICY_WORD_MAX]; /* as written; "UTC" when the file states none */
	bool fixed;
	int offset; /* seconds east of UTC, when fixed */
};

/* What a policy's judgement depends on in time: the minutes at which a
 * window of a rule opens or closes (the edges), in the zone. */
struct policy_time {
	bool timed; /* some rule has `during` */
	struct policy_zone zone;
	uint8_t edges[POLICY_WEEK_BYTES];
};

/* The minute of the week that @now (seconds since the epoch) is in @t's
 * zone. */
int policy_time_minute(const struct policy_time *t, time_t now);

/* Which stretch between two edges @minute is in: 0 for an untimed policy,
 * else 1 + the minute of the week of the edge it began at (1 to
 * POLICY_WEEK_MINUTES). The same slot, the same rules are open. */
unsigned policy_time_slot(const struct policy_time *t, int minute);

/* "mon 09:30" as a minute of the week; false when @s is not one. */
bool policy_time_parse(const char *s, int *ret_minute);

/* @minute as "mon 09:30" into @buf. */
void policy_time_format(int minute, char buf[16]);

struct policy_rule {
	struct policy_pos pos;
	bool allow;
	bool log; /* `log`: each flow it decides goes to the policy log */
	struct policy_side from, to;
	size_t n_ports, cap_ports; /* 0: every protocol and port */
	struct policy_port *ports;
	uint8_t *during; /* the minutes it is open (POLICY_WEEK_BYTES); NULL: always */
	char *text;      /* the line as written, for explain */
};

/* Whether @r is open at @minute (a minute of the week). */
static inline bool policy_rule_open(const struct policy_rule *r, int minute)
{
	return !r->during || policy_minute_in(r->during, minute);
}

/* One flow as `expect` and `explain` name it: its two ends (each a host,
 * an address, or `internet`), its service, and when it begins. */
struct policy_flow {
	struct policy_end from, to;
	struct policy_who from_who, to_who;
	struct policy_port port; /* lo == hi */
	int minute;              /* of the week, in the policy's zone */
};

struct policy_expect {
	struct policy_pos pos;
	bool allow;
	/* `at DAY HH:MM`: the flow begins then; without, the expectation must
	 * hold at every edge of the windows (so at every time). */
	bool at;
	struct policy_flow flow;
	char *text; /* the line as written, for reports */
};

struct policy_group {
	char name[STORE_NAME_MAX];
	struct policy_pos pos;
	struct policy_side side;
};

struct policy_service {
	char name[STORE_NAME_MAX];
	struct policy_pos pos;
	size_t n_ports, cap_ports;
	struct policy_port *ports;
};

struct policy_window {
	char name[STORE_NAME_MAX];
	struct policy_pos pos;
	uint8_t *minutes; /* POLICY_WEEK_BYTES */
};

struct policy {
	bool outbound_allow, inbound_allow; /* the defaults */
	bool outbound_log, inbound_log;     /* ... and whether they log what they allow */
	bool has_outbound, has_inbound;     /* stated in the file */
	/* `mode audit`: nothing is denied; what would be is logged. */
	bool audit, has_mode;
	size_t n_rules, cap_rules;
	struct policy_rule *rules;
	size_t n_expects, cap_expects;
	struct policy_expect *expects;
	size_t n_groups, cap_groups;
	struct policy_group *groups;
	size_t n_services, cap_services;
	struct policy_service *services;
	size_t n_windows, cap_windows;
	struct policy_window *windows;
	bool has_zone;
	struct policy_time time;
};

/* Parses @text (the file @file, for messages) against @net: every host a
 * rule names must be one of @net's. Returns 0, -EINVAL with *@ret_error
 * "FILE:LINE:COL: what was expected" (the first error; nothing of the file
 * is kept), or -ENOMEM. Free with policy_free(). */
int policy_parse(const char *text, const char *file, const struct policy_net *net,
                 struct policy *ret, char **ret_error);

void policy_free(struct policy *p);

/* Parses a flow as `expect` and `explain` write it: FROM TO SERVICE, e.g.
 * "h2", "h1", "tcp/22", its sender's program @app and user @user (NULL:
 * not named). Returns 0 or -EINVAL with *@ret_error. */
int policy_flow_parse(const char *from, const char *to, const char *service, const char *app,
                      const char *user, const struct policy_net *net, struct policy_flow *ret,
                      char **ret_error);

/* Whether the flow end's @have (its program and user) is what @want asks. */
bool policy_who_matches(const struct policy_who *want, const struct policy_who *have);

/* ---- judging ---- */

/* What one AEE decides of a flow: the rule (index, or -1: the default). */
struct policy_verdict {
	bool allow;
	int rule;
	bool both_defaults; /* no rule: a flow between two managed hosts */
};

/* Which AEEs judge @flow (a managed end's own), and what each decides:
 * the sender's judges it as outbound, the receiver's as inbound, and the
 * flow passes when both allow. Each AEE knows the program and user at its
 * own end only: a rule that asks for them at the other end is taken as
 * met there if it allows, and passed over if it denies, so that the end
 * which knows decides. A flow between two managed hosts that no rule
 * matches must pass both defaults, at both ends. */
struct policy_judgement {
	bool allow;
	bool judged_out, judged_in; /* whether each end is a managed host */
	struct policy_verdict out, in;
};

void policy_judge(const struct policy *p, const struct policy_net *net,
                  const struct policy_flow *flow, struct policy_judgement *ret);

/* What one end's AEE decides of @flow: the sender's (@outbound) or the
 * receiver's, as policy_judge() does. */
struct policy_verdict policy_judge_end(const struct policy *p, const struct policy_net *net,
                                       const struct policy_flow *flow, bool outbound);

/* Whether @s names the flow's end @f (a host, an address, or internet:
 * an internet address no prefix of the file names). */
bool policy_side_matches(const struct policy_net *net, const struct policy_side *s,
                         const struct policy_end *f);

/* Writes a warning to @out for each pair of allow rules that name a
 * program or user at the sender in one and at the receiver in the other,
 * for flows between two of @net's hosts (docs/policy.md, "How a flow is
 * judged"): each end judges only its own half. Returns how many. */
size_t policy_warn_both_ends(const struct policy *p, const struct policy_net *net, const char *file,
                             FILE *out);

/* Runs @p's `expect` lines; returns how many failed and writes each
 * failure, "FILE:LINE:COL: LINE: the flow is denied[ at mon 08:00]" and
 * why, to @out (may be NULL). */
size_t policy_run_expects(const struct policy *p, const struct policy_net *net, const char *file,
                          FILE *out);

/* Writes why @j (of a flow beginning at @minute) is what it is, in
 * words, to @out. */
void policy_explain(const struct policy *p, const struct policy_judgement *j, int minute,
                    FILE *out);

/* ---- compiling ---- */

/* The ct mark that stamps a flow allowed under @epoch while its windows
 * are as in @slot (policy_time_slot()): a flow's later packets are
 * accepted without being judged again while the mark is the active one;
 * a new epoch, or a window that opens or closes, judges each established
 * flow again at its next packet. */
uint32_t policy_epoch_mark(uint64_t epoch, unsigned slot);

/* The policy log (docs/policy.md, "The log"): nftables sends what it logs
 * to this nflog group of the AEE's namespace, each packet with the prefix
 * "ettm: EPOCH LINE ACTION DIRECTION [DEVICE]" (LINE 0: a default; ACTION
 * a allowed, d denied, w would be denied (audit); DIRECTION o outbound, i
 * inbound; DEVICE the name of the device whose end it was, on their
 * manager). Denied packets are logged at most POLICY_LOG_RATE a second
 * per rule. */
#define POLICY_LOG_GROUP  7
#define POLICY_LOG_PREFIX "ettm: "
#define POLICY_LOG_RATE   20

/* The meta mark (all of it) with which the agent hands back a packet of a
 * flow it judged and allowed (agent.c): POLICY_AGENT_MARK with the stamp
 * of the epoch it judged the packet under (policy_agent_mark()), at which
 * nftables stamps the flow with that epoch's ct mark and the packet, if it
 * leaves for the LAN, with that epoch: the table may have moved on to
 * another epoch while the packet waited for its verdict. A packet's mark
 * does not survive the crossing into the AEE, so no guest can set it. */
#define POLICY_AGENT_MARK 0x40000000u

/* The stamp of @epoch in a packet inside the LAN: the two low bits of its
 * DSCP (docs/policy.md, "Epochs"). */
static inline unsigned policy_epoch_stamp(uint64_t epoch)
{
	return (unsigned)(epoch & 3);
}

static inline uint32_t policy_agent_mark(uint64_t epoch)
{
	return POLICY_AGENT_MARK | policy_epoch_stamp(epoch);
}

/* Whether the rules ask for programs or users at @self's own end of its
 * outbound (@outbound) or inbound flows: those flows are judged by the
 * agent, which attributes them. */
bool policy_needs_agent(const struct policy *p, const struct policy_net *net,
                        const struct policy_host *self, bool outbound);

/* Renders @p under @epoch at @minute (of the week: the rules open then)
 * for the host @self (its guest at @self->guest_addr) into @out: one
 * chain of the forward hook, before the datapath's own, that judges each
 * flow of the guest (by its original tuple, both directions) once per
 * epoch and slot. Rules that ask for programs or
 * users at this end are rendered as for a program and user that cannot
 * be known: that is how a flow the agent did not judge is judged. Returns
 * 0 or a negative errno (the fragment's status). */
int policy_ruleset_build(const struct policy *p, uint64_t epoch, int minute,
                         const struct policy_net *net, const struct policy_host *self,
                         struct dp_fragment *out);

/* Renders the ends of @net's devices (those whose address is known), for
 * their manager's AEE, into @out: a chain of the forward hook after the
 * guest's (so a flow between the guest and a device is judged at both
 * ends) that judges each packet of a device's flows, both directions, by
 * the rules as at the device's end. Nothing when no device has an
 * address. Returns 0 or a negative errno. */
int policy_ruleset_build_devices(const struct policy *p, uint64_t epoch, int minute,
                                 const struct policy_net *net, struct dp_fragment *out);

/* An epoch a host has installed: its policy (NULL: no policy, everything
 * passes), and the minute of the week its windows are judged at. */
struct policy_installed {
	const struct policy *p;
	uint64_t epoch;
	int minute;
};

/* The epochs installed at once: the active one, one pending, and the one
 * the active one replaced (for the packets still stamped with it). */
#define POLICY_INSTALLED_MAX 3

/* Renders the @n epochs @in (the active one first, with stamps distinct)
 * for @self's AEE into @out: each packet of the guest's flows (and with
 * @devices, of the devices', on their manager) is judged under the epoch
 * it carries when it comes from the LAN (@uplink) stamped with an
 * installed one, else under the active epoch; and every packet that
 * leaves by @uplink for the LAN is stamped with the active epoch. With
 * one epoch, its chains are policy_ruleset_build()'s and
 * policy_ruleset_build_devices()'s. Returns 0 or a negative errno. */
int policy_ruleset_build_installed(const struct policy_installed *in, size_t n,
                                   const struct policy_net *net, const struct policy_host *self,
                                   bool devices, const char *uplink, struct dp_fragment *out);

struct service;
extern const struct service policy_service;
