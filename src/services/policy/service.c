/* The policy service (policy.h): its commands, and its fragment of the
 * datapath, which follows the store's policy, the hosts' locations and
 * the devices.
 *
 * Who may ask: every command is the admin's (the local control socket);
 * the peer API answers policy.log.local alone, to an admitted member
 * gathering the network-wide log for its admin (SVC_RELAY). A guest or
 * device reaches no control port at all. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "api/client.h"
#include "api/server.h"
#include "datapath/datapath.h"
#include "datapath/fragment.h"
#include "lib/array.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/log.h"
#include "policy-internal.h"
#include "policy.h"
#include "services/devices/tables.h"
#include "services/service.h"
#include "store/store.h"
#include "switch/tables.h"

/* How long the network-wide log waits for each member's part, and the
 * most entries it returns (the newest: about 350 KB of JSON, within a
 * reply's 1 MB). */
#define LOG_PEER_TIMEOUT_MS 2000
#define LOG_ALL_MAX         1000

/* The longest policy text a command takes: a command relayed to the
 * leader travels hex-encoded in one request line of the peer API
 * (CTL_LINE_MAX), so twice this must fit in it. */
#define POLICY_TEXT_MAX 32000

/* The tables the service follows. */
#define N_SUBS 7

struct policy_svc {
	struct svc_env *env;
	struct store_subscription *subs[N_SUBS];
	/* The epoch the last fragment rendered, the one the kernel enforces
	 * (rendered, applied, and its flows steered to the agent), and why the
	 * store's policy could not be compiled, if it could not. */
	uint64_t built_epoch, enforced_epoch;
	char *error;
	/* The time the table is built for, and what its windows depend on:
	 * each second the clock ticks, and when a window has opened or closed
	 * (a new slot) the table and the agent follow. */
	time_t now;
	struct policy_time clock;
	unsigned built_slot, told_slot;
	uv_timer_t tick;
	void (*done)(void *arg);
	void *done_arg;
	/* Judges the flows whose programs or users the rules ask for. */
	struct policy_agent *agent;
	char *agent_error;
	/* The epochs installed beside the active one, and the newest one
	 * the kernel has (acknowledged through the store). */
	struct policy_epochs epochs;
	uint64_t built_newest, installed_epoch;
};

/* ---- the network as this replica knows it ---- */

static struct policy_host *view_find(struct net_view *v, const char *name)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->hosts[i].name, name) == 0)
			return &v->hosts[i];
	return NULL;
}

/* Adds the end @name, or gives the one there its address (when known). */
static int view_add(struct net_view *v, const char *name, uint32_t guest_addr, bool device)
{
	struct policy_host *h = view_find(v, name);
	if (h) {
		if (guest_addr)
			h->guest_addr = guest_addr;
		return 0;
	}
	if (ARRAY_RESERVE(v->hosts, v->cap, v->n + 1) < 0)
		return -ENOMEM;
	h = &v->hosts[v->n++];
	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->guest_addr = guest_addr;
	h->device = device;
	return 0;
}

/* The hosts: the store's members and located hosts, with their guests'
 * addresses where the switch controller learned them; this host's own
 * from its configuration. The devices: the store's allowed devices, with
 * the addresses the switches' master learned (a device named as a host is
 * known by its address alone). The LAN: the control address's prefix. */
int policy_view_build(const struct svc_env *env, struct net_view *v)
{
	memset(v, 0, sizeof(*v));
	const struct store_state *st = store_state(env->store);
	const struct dp_config *cfg = env->host->datapath;
	uint32_t mask = cfg->control_plen ? htonl(~0u << (32 - cfg->control_plen)) : 0;
	v->net.lan_mask = mask;
	v->net.lan_addr = cfg->control_addr.s_addr & mask;
	size_t n;
	const struct store_member *m = store_rows(st, STORE_MEMBERS, &n);
	for (size_t i = 0; i < n; i++)
		if (view_add(v, m[i].name, 0, false) < 0)
			return -ENOMEM;
	const struct switch_location *l = store_rows(st, SWITCH_LOCATIONS, &n);
	for (size_t i = 0; i < n; i++)
		if (view_add(v, l[i].host, htonl(l[i].guest_addr), false) < 0)
			return -ENOMEM;
	if (view_add(v, env->host->name, cfg->guest_addr.s_addr, false) < 0)
		return -ENOMEM;
	const struct devices_device *d = store_rows(st, DEVICES_DEVICES, &n);
	for (size_t i = 0; i < n; i++)
		if (!view_find(v, d[i].name) &&
		    view_add(v, d[i].name, htonl(d[i].address), true) < 0)
			return -ENOMEM;
	v->net.hosts = v->hosts;
	v->net.n_hosts = v->n;
	return 0;
}

void policy_view_free(struct net_view *v)
{
	free(v->hosts);
	memset(v, 0, sizeof(*v));
}

/* ---- the datapath ---- */

static int build(void *userdata, const struct dp_config *cfg, struct dp_fragment *out)
{
	struct policy_svc *ps = userdata;
	const struct store_state *st = store_state(ps->env->store);
	struct policy_epoch_text texts[POLICY_INSTALLED_MAX];
	size_t n = policy_epochs_installed(&ps->epochs, st, uv_now(ps->env->loop), texts);
	if (store_policy(st)->epoch == 0)
		return 0; /* no policy applied yet: nothing is filtered */
	struct net_view v;
	struct policy p[POLICY_INSTALLED_MAX];
	struct policy_installed in[POLICY_INSTALLED_MAX];
	size_t parsed = 0;
	char *error = NULL;
	int r = policy_view_build(ps->env, &v);
	v.net.departed_hosts = true;
	uint64_t failed = 0;
	for (size_t i = 0; r == 0 && i < n; i++) {
		in[i] = (struct policy_installed){.epoch = texts[i].epoch};
		if (!texts[i].text)
			continue;
		r = policy_parse(texts[i].text, "policy", &v.net, &p[parsed], &error);
		if (r < 0) {
			failed = texts[i].epoch;
			break;
		}
		in[i].p = &p[parsed++];
		in[i].minute = policy_time_minute(&in[i].p->time, ps->now);
	}
	if (r == 0) {
		const struct policy_host *self = policy_net_host(&v.net, ps->env->host->name);
		const struct devices_manager *m = devices_manager(st);
		bool manager = m && strcmp(m->host, ps->env->host->name) == 0;
		r = policy_ruleset_build_installed(in, n, &v.net, self, manager, cfg->uplink_if,
		                                   out);
		/* The clock of the active epoch's windows (or of the one
		 * pending, while no policy is active). */
		ps->clock.timed = false;
		for (size_t i = 0; i < n; i++)
			if (in[i].p) {
				ps->clock = in[i].p->time;
				ps->built_slot = policy_time_slot(&ps->clock, in[i].minute);
				break;
			}
	}
	for (size_t i = 0; i < parsed; i++)
		policy_free(&p[i]);
	policy_view_free(&v);
	free(ps->error);
	ps->error = error;
	if (error) {
		log_error("policy: epoch %llu cannot be compiled here: %s",
		          (unsigned long long)failed, error);
		dp_fragment_fail(out, r, "epoch %llu: %s", (unsigned long long)failed, error);
	}
	if (r == 0) {
		ps->built_epoch = texts[0].epoch;
		ps->built_newest = store_policy(st)->epoch;
	}
	return r;
}

/* The agent and the table in the order policy_agent_update() gives. */
static void follow(struct policy_svc *ps)
{
	const struct store_state *st = store_state(ps->env->store);
	struct policy_epoch_text texts[POLICY_INSTALLED_MAX];
	size_t n = policy_epochs_installed(&ps->epochs, st, uv_now(ps->env->loop), texts);
	if (store_policy(st)->epoch == 0)
		n = 0;
	char *error = NULL;
	ps->now = time(NULL);
	if (n == 0)
		ps->clock.timed = false;
	int r = policy_agent_update(&ps->agent, ps->env, texts, n, ps->now, true, &error);
	int applied = dp_changed(ps->env->dp);
	if (applied < 0)
		log_error("policy: datapath: %s",
		          ps->env->dp->error ? ps->env->dp->error : "failed");
	/* A table that could not be applied: the agent goes on judging as
	 * the one the kernel has. */
	if (r == 0 && applied == 0)
		r = policy_agent_update(&ps->agent, ps->env, texts, n, ps->now, false, &error);
	if (r < 0 && !error)
		error_set(&error, r, "%s", strerror(-r));
	if (error && (!ps->agent_error || strcmp(error, ps->agent_error) != 0))
		log_error("policy: the agent cannot judge flows by program or user: %s", error);
	free(ps->agent_error);
	ps->agent_error = error;
	if (applied == 0 && r == 0 && !ps->error && ps->built_epoch != ps->enforced_epoch) {
		ps->enforced_epoch = ps->built_epoch;
		log_info("policy: epoch %llu enforced", (unsigned long long)ps->enforced_epoch);
	}
	if (applied == 0 && !ps->error && ps->built_newest != ps->installed_epoch) {
		ps->installed_epoch = ps->built_newest;
		if (ps->installed_epoch != ps->enforced_epoch)
			log_info("policy: epoch %llu installed beside epoch %llu",
			         (unsigned long long)ps->installed_epoch,
			         (unsigned long long)ps->enforced_epoch);
	}
	if (ps->installed_epoch)
		policy_epochs_ack(&ps->epochs, ps->env->store, ps->env->host->name,
		                  ps->installed_epoch);
}

static void on_tick(uv_timer_t *t)
{
	struct policy_svc *ps = t->data;
	policy_epochs_lead(&ps->epochs, ps->env->store);
	policy_epochs_answer(&ps->epochs, store_state(ps->env->store));
	if (policy_epochs_retiring(&ps->epochs, uv_now(ps->env->loop))) {
		policy_epochs_retired(&ps->epochs);
		follow(ps);
		return;
	}
	if (!ps->clock.timed)
		return;
	int minute = policy_time_minute(&ps->clock, time(NULL));
	unsigned slot = policy_time_slot(&ps->clock, minute);
	if (slot == ps->built_slot)
		return;
	if (slot != ps->told_slot) {
		char when[16];
		policy_time_format(minute, when);
		log_info("policy: a window opened or closed; judging as at %s, time zone %s", when,
		         ps->clock.zone.name);
		ps->told_slot = slot;
	}
	follow(ps);
}

static void flushed(void *userdata, int status, const struct store_result *res, const char *error)
{
	(void)userdata, (void)status, (void)res, (void)error;
}

static void store_changed(void *userdata, const struct store_cmd *cmd,
                          const struct store_result *res)
{
	struct policy_svc *ps = userdata;
	/* Followers learn that an entry is committed from the leader's next
	 * message: the leader sends one at once (a barrier) for a new epoch,
	 * not at its next heartbeat, so every host enforces it sooner. */
	/* (An acknowledgement with a value activated its epoch.) */
	bool acked = cmd->table == STORE_POLICY_ACKS;
	bool epoch = cmd->table == STORE_POLICY || cmd->table == STORE_POLICY_EPOCHS ||
	             (acked && res->value);
	if (epoch && res->applied && store_is_leader(ps->env->store))
		store_barrier(ps->env->store, flushed, NULL);
	policy_epochs_answer(&ps->epochs, store_state(ps->env->store));
	if (acked && !res->value) {
		policy_epochs_lead(&ps->epochs, ps->env->store);
		return;
	}
	follow(ps);
}

/* ---- commands ---- */

/* The line an apply with "audit" adds to a file that states no mode (at
 * its end, so that every other line keeps its number). */
#define AUDIT_LINE "mode audit   # applied with --audit\n"

/* The text of a check or apply as it would be stored, newly allocated:
 * the file's, and with "audit" the line that makes it an audit. */
static int request_text(const struct ctl_request *req, const char *file, char **ret,
                        char **ret_error)
{
	const char *text = ctl_arg_str(req, "text");
	if (!text)
		return error_set(ret_error, -EINVAL,
		                 "field \"text\": expected the policy file's text");
	json_t *audit = json_object_get(req->args, "audit");
	if (audit && !json_is_boolean(audit))
		return error_set(ret_error, -EINVAL, "field \"audit\": expected true or false");
	size_t len = strlen(text);
	bool add = json_is_true(audit);
	if (len + (add ? sizeof(AUDIT_LINE) + 1 : 0) > POLICY_TEXT_MAX)
		return error_set(ret_error, -EFBIG, "%s: %zu bytes; a policy is at most %d", file,
		                 len, POLICY_TEXT_MAX);
	if (add &&
	    asprintf(ret, "%s%s" AUDIT_LINE, text, len && text[len - 1] != '\n' ? "\n" : "") < 0)
		return -ENOMEM;
	if (!add && !(*ret = strdup(text)))
		return -ENOMEM;
	return 0;
}

/* The text and file name of a check or apply, parsed against this
 * replica's view, its expectations run and compiled for every host.
 * Returns 0 with *@ret_report (JSON) and the text to store in *@ret_text,
 * or a negative errno with *@ret_error. */
static int check_text(struct policy_svc *ps, const struct ctl_request *req, json_t **ret_report,
                      char **ret_text, char **ret_error)
{
	const char *file = ctl_arg_str(req, "file");
	if (!file || !*file)
		file = "policy";
	char *text = NULL;
	int r = request_text(req, file, &text, ret_error);
	if (r < 0)
		return r;
	struct net_view v;
	if (policy_view_build(ps->env, &v) < 0) {
		free(text);
		return -ENOMEM;
	}
	struct policy p;
	r = policy_parse(text, file, &v.net, &p, ret_error);
	if (r < 0 && json_is_true(json_object_get(req->args, "audit")) && *ret_error &&
	    strstr(*ret_error, "the mode is stated twice")) {
		free(*ret_error);
		*ret_error = NULL;
		r = error_set(ret_error, -EINVAL,
		              "%s: the file states its mode; --audit is for a file that does not",
		              file);
	}
	if (r < 0) {
		policy_view_free(&v);
		free(text);
		return r;
	}
	char *failures = NULL;
	size_t flen = 0;
	FILE *f = open_memstream(&failures, &flen);
	size_t failed = f ? policy_run_expects(&p, &v.net, file, f) : 0;
	char *warnings = NULL;
	size_t wlen = 0;
	FILE *w = open_memstream(&warnings, &wlen);
	size_t warned = w ? policy_warn_both_ends(&p, &v.net, file, w) : 0;
	if (w && fclose(w) != 0) {
		free(warnings);
		warnings = NULL;
	}
	if (!f || fclose(f) != 0 || !warnings) {
		free(warnings);
		policy_free(&p);
		policy_view_free(&v);
		free(text);
		return -ENOMEM;
	}
	json_t *hosts = json_array();
	int minute = policy_time_minute(&p.time, time(NULL));
	/* Each located host's table, and the devices' chain on their manager
	 * (the last round). */
	for (size_t i = 0; r == 0 && i <= v.n; i++) {
		if (i < v.n && (!v.hosts[i].guest_addr || v.hosts[i].device))
			continue; /* not located yet: compiled when it is */
		struct dp_fragment frag = {0};
		r = i < v.n ? policy_ruleset_build(&p, 1, minute, &v.net, &v.hosts[i], &frag)
		            : policy_ruleset_build_devices(&p, 1, minute, &v.net, &frag);
		if (i == v.n && frag.n_chains == 0) {
			dp_fragment_free(&frag);
			break;
		}
		const char *name = i < v.n ? v.hosts[i].name : "(devices)";
		size_t rules = 0;
		for (size_t c = 0; c < frag.n_chains; c++)
			rules += frag.chains[c]->rules.n;
		if (r < 0)
			error_set(ret_error, r, "compiling for %s: %s", name,
			          frag.error ? frag.error : strerror(-r));
		else
			json_array_append_new(hosts, json_pack("{s:s, s:I}", "host", name,
			                                       "nft_rules", (json_int_t)rules));
		dp_fragment_free(&frag);
	}
	const struct store_policy *sp = store_policy(store_state(ps->env->store));
	bool changed = !sp->text || strcmp(sp->text, text) != 0;
	if (r == 0)
		*ret_report = json_pack(
		    "{s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:b, s:I, s:s}",
		    "file", file, "rules", (json_int_t)p.n_rules, "groups", (json_int_t)p.n_groups,
		    "services", (json_int_t)p.n_services, "windows", (json_int_t)p.n_windows,
		    "default_outbound", p.outbound_allow ? "allow" : "deny", "default_inbound",
		    p.inbound_allow ? "allow" : "deny", "mode", p.audit ? "audit" : "enforce",
		    "expects", (json_int_t)p.n_expects, "expects_failed", (json_int_t)failed,
		    "failures", failures, "hosts", hosts, "changed", changed, "epoch",
		    (json_int_t)sp->epoch, "timezone", p.time.zone.name);
	else
		json_decref(hosts);
	if (r == 0 && *ret_report) {
		json_object_set_new(*ret_report, "warnings", json_string(warnings));
		json_object_set_new(*ret_report, "n_warnings", json_integer((json_int_t)warned));
	}
	free(warnings);
	free(failures);
	policy_free(&p);
	policy_view_free(&v);
	if (r == 0 && !*ret_report)
		r = -ENOMEM;
	if (r == 0 && ret_text)
		*ret_text = text;
	else
		free(text);
	return r;
}

static int handle_check(void *self, struct ctl_client *client, const struct ctl_request *req,
                        json_t **ret_result, char **ret_error)
{
	(void)client;
	return check_text(self, req, ret_result, NULL, ret_error);
}

/* policy.apply {text, file}: checked as policy.check does; a file whose
 * expectations fail is not applied. Committed as the next epoch, made on
 * the epoch this replica has (a concurrent apply is refused, not lost),
 * and answered once it is activated (policy_epochs_apply()). */
static int handle_apply(void *self, struct ctl_client *client, const struct ctl_request *req,
                        json_t **ret_result, char **ret_error)
{
	(void)ret_result;
	struct policy_svc *ps = self;
	json_t *report = NULL;
	char *text = NULL;
	int r = check_text(ps, req, &report, &text, ret_error);
	if (r < 0)
		return r;
	json_int_t failed = json_integer_value(json_object_get(report, "expects_failed"));
	if (failed) {
		r = error_set(ret_error, -EINVAL,
		              "%lld expectation%s failed; nothing was applied:\n%s",
		              (long long)failed, failed == 1 ? "" : "s",
		              json_string_value(json_object_get(report, "failures")));
		json_decref(report);
		free(text);
		return r;
	}
	struct ctl_deferred *d = ctl_defer(client, req);
	if (!d) {
		json_decref(report);
		free(text);
		return -ENOMEM;
	}
	policy_epochs_apply(&ps->epochs, ps->env->store, text,
	                    store_policy(store_state(ps->env->store))->epoch, d, report);
	return CTL_DEFERRED;
}

static int handle_show(void *self, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	(void)client, (void)req, (void)ret_error;
	struct policy_svc *ps = self;
	const struct store_policy *sp = store_policy(store_state(ps->env->store));
	json_t *r = policy_epochs_json(store_state(ps->env->store));
	if (r)
		json_object_update_missing_new(
		    r, json_pack("{s:I, s:s, s:I, s:I, s:s?}", "epoch", (json_int_t)sp->epoch,
		                 "text", sp->text ? sp->text : "", "enforced_epoch",
		                 (json_int_t)ps->enforced_epoch, "installed_epoch",
		                 (json_int_t)ps->installed_epoch, "error", ps->error));
	*ret_result = r;
	return *ret_result ? 0 : -ENOMEM;
}

static json_t *verdict_json(const struct policy *p, const struct policy_verdict *v)
{
	if (v->rule < 0)
		return json_pack("{s:b, s:n}", "allow", v->allow, "rule");
	return json_pack("{s:b, s:{s:I, s:s}}", "allow", v->allow, "rule", "line",
	                 (json_int_t)p->rules[v->rule].pos.line, "text", p->rules[v->rule].text);
}

/* policy.explain {from, to, service, app, user, at}: which rule decides
 * the flow under the store's policy, beginning now (or at "DAY HH:MM" in
 * the policy's time zone), at each end that judges it, and why. */
static int handle_explain(void *self, struct ctl_client *client, const struct ctl_request *req,
                          json_t **ret_result, char **ret_error)
{
	(void)client;
	struct policy_svc *ps = self;
	const char *from = ctl_arg_str(req, "from"), *to = ctl_arg_str(req, "to"),
	           *service = ctl_arg_str(req, "service");
	if (!from || !to || !service)
		return error_set(
		    ret_error, -EINVAL,
		    "fields \"from\", \"to\", \"service\": expected the flow, e.g. h2 h1 "
		    "tcp/22");
	const char *at = ctl_arg_str(req, "at");
	int at_minute = 0;
	json_t *at_json = json_object_get(req->args, "at");
	if ((at_json && !at && !json_is_null(at_json)) ||
	    (at && !policy_time_parse(at, &at_minute)))
		return error_set(ret_error, -EINVAL,
		                 "field \"at\": expected a time DAY HH:MM, e.g. \"mon 09:30\"");
	const struct store_policy *sp = store_policy(store_state(ps->env->store));
	if (sp->epoch == 0)
		return error_set(ret_error, -ENOENT, "no policy is applied: every flow passes");
	struct net_view v;
	if (policy_view_build(ps->env, &v) < 0)
		return -ENOMEM;
	struct policy p;
	struct policy_flow flow;
	v.net.departed_hosts = true;
	int r = policy_flow_parse(from, to, service, ctl_arg_str(req, "app"),
	                          ctl_arg_str(req, "user"), &v.net, &flow, ret_error);
	if (r == 0)
		r = policy_parse(sp->text, "policy", &v.net, &p, ret_error);
	if (r < 0) {
		policy_view_free(&v);
		return r;
	}
	flow.minute = at ? at_minute : policy_time_minute(&p.time, time(NULL));
	struct policy_judgement j;
	policy_judge(&p, &v.net, &flow, &j);
	char *why = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&why, &len);
	if (f) {
		policy_explain(&p, &j, flow.minute, f);
		fclose(f);
	}
	char when[16];
	policy_time_format(flow.minute, when);
	*ret_result = json_pack(
	    "{s:I, s:b, s:o?, s:o?, s:s, s:s?, s:s}", "epoch", (json_int_t)sp->epoch, "allow",
	    j.allow, "outbound", j.judged_out ? verdict_json(&p, &j.out) : NULL, "inbound",
	    j.judged_in ? verdict_json(&p, &j.in) : NULL, "why", why ? why : "", "at",
	    p.time.timed || at ? when : NULL, "timezone", p.time.zone.name);
	free(why);
	policy_free(&p);
	policy_view_free(&v);
	return *ret_result ? 0 : -ENOMEM;
}

/* A whole number field of @req between 0 and @max: its value, @dflt when
 * absent, or -1 after setting *@ret_error. */
static long long arg_count(const struct ctl_request *req, const char *name, long long dflt,
                           long long max, char **ret_error)
{
	json_t *j = json_object_get(req->args, name);
	if (!j)
		return dflt;
	if (!json_is_integer(j) || json_integer_value(j) < 0 || json_integer_value(j) > max) {
		error_set(ret_error, -EINVAL, "field \"%s\": expected a whole number 0 to %lld",
		          name, max);
		return -1;
	}
	return json_integer_value(j);
}

/* policy.log.local {since, limit}: this AEE's recent denied and logged
 * flows. */
static int handle_log_local(void *self, struct ctl_client *client, const struct ctl_request *req,
                            json_t **ret_result, char **ret_error)
{
	(void)client;
	struct policy_svc *ps = self;
	long long since = arg_count(req, "since", 0, INT64_MAX, ret_error);
	long long limit = since < 0 ? -1 : arg_count(req, "limit", 0, 100000, ret_error);
	if (limit < 0)
		return -EINVAL;
	json_t *entries = policy_agent_log(ps->agent, (uint64_t)since, (size_t)limit);
	*ret_result = json_pack("{s:o?}", "entries", entries);
	return *ret_result ? 0 : -ENOMEM;
}

/* The network-wide log being gathered: every member's part, merged. */
struct log_gather {
	struct ctl_deferred *d;
	json_t *entries, *unreachable;
	size_t waiting, limit;
};

struct log_part {
	struct log_gather *g;
	char host[STORE_NAME_MAX];
};

static int by_time(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t tx = json_integer_value(json_object_get(x, "time_ms"));
	json_int_t ty = json_integer_value(json_object_get(y, "time_ms"));
	if (tx != ty)
		return tx < ty ? -1 : 1;
	int c = strcmp(json_string_value(json_object_get(x, "host")) ?: "",
	               json_string_value(json_object_get(y, "host")) ?: "");
	return c ? c
	       : (json_integer_value(json_object_get(x, "seq")) <
	          json_integer_value(json_object_get(y, "seq")))
	           ? -1
	           : 1;
}

static void log_gathered(struct log_gather *g)
{
	size_t n = json_array_size(g->entries);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	json_t *sorted = json_array();
	if (v && sorted) {
		for (size_t i = 0; i < n; i++)
			v[i] = json_array_get(g->entries, i);
		qsort(v, n, sizeof(*v), by_time);
		for (size_t i = g->limit && n > g->limit ? n - g->limit : 0; i < n; i++)
			json_array_append(sorted, v[i]);
	}
	json_t *r = sorted
	                ? json_pack("{s:o, s:O}", "entries", sorted, "unreachable", g->unreachable)
	                : NULL;
	ctl_deferred_reply(g->d, r, r ? NULL : "out of memory");
	free(v);
	json_decref(g->entries);
	json_decref(g->unreachable);
	free(g);
}

static void log_part_cb(void *userdata, int status, json_t *result, const char *error)
{
	(void)error;
	struct log_part *p = userdata;
	struct log_gather *g = p->g;
	json_t *entries = status == 0 ? json_object_get(result, "entries") : NULL;
	if (json_is_array(entries))
		json_array_extend(g->entries, entries);
	else
		json_array_append_new(g->unreachable, json_string(p->host));
	free(p);
	if (--g->waiting == 0)
		log_gathered(g);
}

/* policy.log {since, limit} or {all, after, limit}: this AEE's log, or
 * every member's (policy.log.local over the peer API), merged by time;
 * "after" is the last seq seen of each host ({"h1": 12}), for --follow. */
static int handle_log(void *self, struct ctl_client *client, const struct ctl_request *req,
                      json_t **ret_result, char **ret_error)
{
	struct policy_svc *ps = self;
	json_t *all = json_object_get(req->args, "all");
	if (all && !json_is_boolean(all))
		return error_set(ret_error, -EINVAL, "field \"all\": expected true or false");
	if (!json_is_true(all))
		return handle_log_local(self, client, req, ret_result, ret_error);
	json_t *after = json_object_get(req->args, "after");
	if (after && !json_is_object(after))
		return error_set(
		    ret_error, -EINVAL,
		    "field \"after\": expected each host's last seq, e.g. {\"h1\": 12}");
	long long limit = arg_count(req, "limit", LOG_ALL_MAX, LOG_ALL_MAX, ret_error);
	if (limit < 0)
		return -EINVAL;
	if (limit == 0)
		limit = LOG_ALL_MAX;
	struct log_gather *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->entries = json_array();
	g->unreachable = json_array();
	g->limit = (size_t)limit;
	g->d = ctl_defer(client, req);
	g->waiting = 1;
	const char *me = ps->env->host->name;
	json_t *mine = json_object_get(after, me);
	json_t *local = policy_agent_log(ps->agent,
	                                 json_is_integer(mine) && json_integer_value(mine) > 0
	                                     ? (uint64_t)json_integer_value(mine)
	                                     : 0,
	                                 (size_t)limit);
	json_array_extend(g->entries, local);
	json_decref(local);
	const struct store_state *st = store_state(ps->env->store);
	for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(st, STORE_MEMBERS, i);
		if (strcmp(m->name, me) == 0)
			continue;
		struct log_part *p = calloc(1, sizeof(*p));
		json_t *since = json_object_get(after, m->name);
		json_t *args = json_pack("{s:I, s:I}", "since",
		                         json_is_integer(since) && json_integer_value(since) > 0
		                             ? json_integer_value(since)
		                             : 0,
		                         "limit", (json_int_t)limit);
		if (p) {
			p->g = g;
			snprintf(p->host, sizeof(p->host), "%s", m->name);
		}
		if (!p || !args || !m->peer[0])
			json_decref(args); /* ctl_call() takes it, even when it fails */
		else if (ctl_call(ps->env->loop, m->peer, "policy.log.local", args,
		                  LOG_PEER_TIMEOUT_MS, log_part_cb, p) == 0) {
			g->waiting++;
			continue;
		}
		free(p);
		json_array_append_new(g->unreachable, json_string(m->name));
	}
	if (--g->waiting == 0)
		log_gathered(g);
	return CTL_DEFERRED;
}

static const struct svc_command commands[] = {
    {"policy.check", SVC_ADMIN, handle_check},
    {"policy.apply", SVC_ADMIN, handle_apply},
    {"policy", SVC_ADMIN, handle_show},
    {"policy.explain", SVC_ADMIN, handle_explain},
    {"policy.log", SVC_ADMIN, handle_log},
    {"policy.log.local", SVC_ADMIN | SVC_RELAY, handle_log_local},
    {NULL},
};

/* ---- the service ---- */

static const char *off(const struct svc_env *env, const void *options)
{
	(void)options;
	return env->dp && env->store ? NULL : "policy needs the datapath and the store";
}

static int open_policy(struct svc_env *env, const void *options, void **ret_self, char **ret_error)
{
	(void)options, (void)ret_error;
	struct policy_svc *ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	ps->env = env;
	static const unsigned tables[] = {STORE_POLICY,   STORE_POLICY_EPOCHS, STORE_POLICY_ACKS,
	                                  STORE_MEMBERS,  SWITCH_LOCATIONS,    DEVICES_DEVICES,
	                                  DEVICES_MANAGER};
	int r = 0;
	for (size_t i = 0; r == 0 && i < N_SUBS; i++)
		r = store_subscribe(env->store, tables[i], store_changed, ps, &ps->subs[i]);
	if (r == 0)
		r = dp_set_source(env->dp, policy_service.name, build, ps);
	if (r < 0) {
		for (size_t i = 0; i < N_SUBS; i++)
			store_unsubscribe(env->store, ps->subs[i]);
		free(ps);
		return r;
	}
	uv_timer_init(env->loop, &ps->tick);
	ps->tick.data = ps;
	uv_timer_start(&ps->tick, on_tick, 100, 100);
	*ret_self = ps;
	follow(ps);
	return 0;
}

static void tick_closed(uv_handle_t *h)
{
	struct policy_svc *ps = h->data;
	struct policy_agent *agent = ps->agent;
	void (*done)(void *arg) = ps->done;
	void *arg = ps->done_arg;
	free(ps->error);
	free(ps->agent_error);
	policy_epochs_free(&ps->epochs);
	free(ps);
	policy_agent_close(agent, done, arg);
}

static void close_policy(void *self, void (*done)(void *arg), void *arg)
{
	struct policy_svc *ps = self;
	for (size_t i = 0; i < N_SUBS; i++)
		store_unsubscribe(ps->env->store, ps->subs[i]);
	dp_remove_source(ps->env->dp, policy_service.name);
	ps->done = done;
	ps->done_arg = arg;
	uv_close((uv_handle_t *)&ps->tick, tick_closed);
}

static json_t *status(void *self)
{
	struct policy_svc *ps = self;
	char when[16];
	policy_time_format(policy_time_minute(&ps->clock, ps->now), when);
	return json_pack("{s:I, s:I, s:I, s:s?, s:o?, s:s?, s:s?}", "epoch",
	                 (json_int_t)store_policy(store_state(ps->env->store))->epoch,
	                 "enforced_epoch", (json_int_t)ps->enforced_epoch, "installed_epoch",
	                 (json_int_t)ps->installed_epoch, "error", ps->error, "agent",
	                 policy_agent_status(ps->agent), "agent_error", ps->agent_error,
	                 "judged_as_at", ps->clock.timed ? when : NULL);
}

const struct service policy_service = {
    .name = "policy",
    .off = off,
    .open = open_policy,
    .close = close_policy,
    .status = status,
    .commands = commands,
};
