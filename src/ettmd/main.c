/* ettmd: the ETTM agent. One per host, running in the host's AEE. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <uv.h>

#include "api/server.h"
#include "config.h"
#include "datapath/datapath.h"
#include "lib/clock.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "services/devices/devices.h"
#include "services/nat/nat.h"
#include "store/store.h"
#include "services/devices/tables.h"
#include "services/nat/tables.h"
#include "switch/switch.h"
#include "switch/tables.h"
#include "trust/tables.h"
#include "trust/attest.h"

/* How often the agent checks that its table is still in the kernel. */
#define WATCH_INTERVAL_MS 5000

struct agent {
	uv_loop_t *loop;
	struct config cfg;
	struct datapath dp;
	struct ctl_server ctl;
	struct ctl_server peer;
	struct store *store;
	struct swc *switches;     /* NULL when the configuration names none */
	struct nat *nat;          /* NULL without [nat] public addresses */
	struct nat_view nat_boot; /* NAT's datapath until nat_open() */
	struct devices *devices;  /* NULL without switches */
	struct attest *attest;    /* NULL without [trust]: the admin admits hosts */
	const char *config_path;
	uv_signal_t sigterm, sigint;
	uv_timer_t watch;
	struct timespec started;
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: ettmd --config FILE [--log-level LEVEL]\n"
	             "       ettmd --check-config --config FILE\n"
	             "\n"
	             "The ETTM agent. Runs in the host's AEE network namespace, owns the\n"
	             "datapath between the guest link and the uplink (nftables table\n"
	             "'inet ettm'), and answers ettmctl on its control socket.\n"
	             "\n"
	             "Options:\n"
	             "  -c, --config FILE      configuration file (see docs/config.md)\n"
	             "  -l, --log-level LEVEL  error, warn, info (default) or debug\n"
	             "      --check-config     parse the configuration, report, and exit\n"
	             "  -h, --help             show this help\n"
	             "  -V, --version          show the version\n"
	             "\n"
	             "SIGTERM or SIGINT stop the agent; the datapath keeps its last rules.\n");
}

static double uptime_seconds(const struct agent *a)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - a->started.tv_sec) +
	       (double)(now.tv_nsec - a->started.tv_nsec) / 1e9;
}

static json_t *datapath_status(struct agent *a)
{
	struct dp_counter counters[DP_COUNTER_MAX];
	json_t *cs = json_object();
	int r = dp_read_counters(&a->dp, counters);
	for (int i = 0; r == 0 && i < DP_COUNTER_MAX; i++)
		json_object_set_new(cs, dp_counter_name(i),
		                    json_pack("{s:I, s:I}", "packets",
		                              (json_int_t)counters[i].packets, "bytes",
		                              (json_int_t)counters[i].bytes));
	const char *state = a->dp.ok ? "ok" : "error";
	const char *error = a->dp.error;
	if (a->dp.ok && r < 0) {
		state = "error";
		error = r == -ENOENT ? "the table inet ettm is missing" : "cannot read counters";
	}
	return json_pack("{s:s, s:s?, s:s, s:I, s:o}", "state", state, "error", error, "table",
	                 DP_TABLE_FAMILY " " DP_TABLE_NAME, "generation",
	                 (json_int_t)a->dp.generation, "counters", cs);
}

static json_t *store_brief(struct agent *a)
{
	json_t *full = store_status(a->store);
	json_t *brief = json_pack("{s:O, s:O, s:O, s:O}", "state", json_object_get(full, "state"),
	                          "leader", json_object_get(full, "leader"), "generation",
	                          json_object_get(full, "generation"), "applied_index",
	                          json_object_get(full, "applied_index"));
	json_decref(full);
	return brief;
}

/* trust.add / trust.remove / trust.list: the trusted measurements table. */
static int handle_trust(struct agent *a, struct ctl_client *client, const struct ctl_request *req,
                        json_t **ret_result, char **ret_error)
{
	if (strcmp(req->cmd, "trust.list") == 0) {
		*ret_result = json_pack("{s:o}", "trusted",
		                        store_table_dump(store_state(a->store), TRUST_TRUSTED));
		return 0;
	}
	const char *digest = json_string_value(json_object_get(req->args, "digest"));
	const char *note = json_string_value(json_object_get(req->args, "note"));
	if (!digest) {
		*ret_error = strdup("field \"digest\": expected a string");
		return -EINVAL;
	}
	struct store_cmd cmd = {.table = TRUST_TRUSTED,
	                        .op =
	                            strcmp(req->cmd, "trust.add") == 0 ? STORE_PUT : STORE_DELETE};
	cmd.time_ms = wall_ms();
	snprintf(STORE_CMD_ROW(&cmd, struct trust_trusted)->digest,
	         sizeof(STORE_CMD_ROW(&cmd, struct trust_trusted)->digest), "%s", digest);
	snprintf(STORE_CMD_ROW(&cmd, struct trust_trusted)->note,
	         sizeof(STORE_CMD_ROW(&cmd, struct trust_trusted)->note), "%s", note ? note : "");
	STORE_CMD_ROW(&cmd, struct trust_trusted)->added_ms = cmd.time_ms;
	return store_propose_reply(a->store, client, req, &cmd, true, ret_error);
}

static int handle_request(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                          json_t **ret_result, char **ret_error)
{
	struct agent *a = userdata;
	if (strcmp(req->cmd, "status") == 0) {
		*ret_result = json_pack("{s:s, s:i, s:s, s:i, s:f, s:o, s:o}", "host", a->cfg.name,
		                        "id", a->cfg.id, "version", ETTM_VERSION, "pid",
		                        (int)getpid(), "uptime_s", uptime_seconds(a), "datapath",
		                        datapath_status(a), "store", store_brief(a));
		if (*ret_result && a->attest)
			json_object_set_new(*ret_result, "trust", attest_status(a->attest));
		return *ret_result ? 0 : -ENOMEM;
	}
	if (a->attest) {
		int r = attest_handle_admin(a->attest, client, req, ret_result, ret_error);
		if (r != -ENOENT || *ret_error)
			return r;
	}
	if (strcmp(req->cmd, "trust.add") == 0 || strcmp(req->cmd, "trust.remove") == 0 ||
	    strcmp(req->cmd, "trust.list") == 0)
		return handle_trust(a, client, req, ret_result, ret_error);
	int r = store_handle_request(a->store, client, req, ret_result, ret_error);
	if (r == 0 && a->switches && *ret_result && strcmp(req->cmd, "cluster") == 0)
		json_object_set_new(*ret_result, "failure_detector",
		                    sw_failure_detector(a->switches));
	if (r != -ENOENT || *ret_error)
		return r;
	if (a->switches) {
		r = sw_handle_request(a->switches, client, req, ret_result, ret_error);
		if (r != -ENOENT || *ret_error)
			return r;
	}
	if (a->devices) {
		r = devices_handle_request(a->devices, client, req, ret_result, ret_error);
		if (r != -ENOENT || *ret_error)
			return r;
	} else if (strncmp(req->cmd, "devices", 7) == 0) {
		*ret_error = strdup("unmanaged devices need switches: this host's configuration "
		                    "has no switch.switches");
		return -EOPNOTSUPP;
	}
	if (a->nat) {
		r = nat_handle_request(a->nat, client, req, ret_result, ret_error);
		if (r != -ENOENT || *ret_error)
			return r;
	} else if (strncmp(req->cmd, "nat", 3) == 0) {
		*ret_error = strdup("NAT is off on this host: its configuration has no "
		                    "nat.public-addresses");
		return -EOPNOTSUPP;
	}
	if (asprintf(ret_error, "unknown command \"%s\"", req->cmd) < 0)
		*ret_error = NULL;
	return -EOPNOTSUPP;
}

/* The peer API: what other agents may ask (store.*, cluster.*). */
static int handle_peer(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	struct agent *a = userdata;
	int r = store_handle_request(a->store, client, req, ret_result, ret_error);
	if (r == -ENOENT && !*ret_error && a->attest)
		r = attest_handle_peer(a->attest, client, req, ret_result, ret_error);
	if (r == -ENOENT && !*ret_error && a->switches && strcmp(req->cmd, "switch.local") == 0)
		r = sw_handle_request(a->switches, client, req, ret_result, ret_error);
	if (r == -ENOENT && !*ret_error &&
	    asprintf(ret_error, "unknown command \"%s\"", req->cmd) < 0)
		*ret_error = NULL;
	return r;
}

/* Someone removed the table (nft flush ruleset, a careless admin): put it
 * back, so the agent keeps owning its datapath. */
static void watch_cb(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (dp_table_present(&a->dp))
		return;
	log_warn("datapath: table %s %s disappeared; restoring it", DP_TABLE_FAMILY, DP_TABLE_NAME);
	if (dp_reconcile(&a->dp) < 0)
		log_error("datapath: cannot restore: %s", a->dp.error);
}

static void closed_cb(uv_handle_t *h)
{
	(void)h;
}

static void ctl_closed_cb(struct ctl_server *s)
{
	(void)s;
}

static void signal_cb(uv_signal_t *sig, int signum)
{
	struct agent *a = sig->data;
	log_info("received %s; stopping (the datapath keeps its rules)", strsignal(signum));
	ctl_server_close(&a->ctl, ctl_closed_cb);
	ctl_server_close(&a->peer, ctl_closed_cb);
	nat_close(a->nat);
	attest_close(a->attest);
	devices_close(a->devices);
	if (a->switches)
		sw_close(a->switches);
	store_close(a->store, NULL, NULL);
	uv_close((uv_handle_t *)&a->sigterm, closed_cb);
	uv_close((uv_handle_t *)&a->sigint, closed_cb);
	uv_close((uv_handle_t *)&a->watch, closed_cb);
}

static int parse_args(int argc, char **argv, const char **ret_config, bool *ret_check)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"log-level", required_argument, NULL, 'l'},
	    {"check-config", no_argument, NULL, 'C'}, {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},      {0},
	};
	enum log_level level;
	int c;
	while ((c = getopt_long(argc, argv, "c:l:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			*ret_config = optarg;
			break;
		case 'l':
			if (log_level_parse(optarg, &level) < 0) {
				fprintf(stderr,
				        "ettmd: --log-level: expected error, warn, info or "
				        "debug, got \"%s\"\n",
				        optarg);
				return 2;
			}
			log_set_level(level);
			break;
		case 'C':
			*ret_check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ettmd %s\n", ETTM_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try 'ettmd --help'.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ettmd: unexpected argument \"%s\"\nTry 'ettmd --help'.\n",
		        argv[optind]);
		return 2;
	}
	if (!*ret_config) {
		fprintf(stderr, "ettmd: --config FILE is required\nTry 'ettmd --help'.\n");
		return 2;
	}
	return -1;
}

/* Every module's tables, registered before the store makes a state. The
 * service interface will list each service's tables and register them. */
static int register_tables(void)
{
	const struct store_table *const *lists[] = {trust_tables, switch_tables, nat_tables,
	                                            devices_tables};
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		char *error = NULL;
		int r = store_tables_register(lists[i], &error);
		if (r < 0) {
			log_error("store tables: %s", error ? error : strerror(-r));
			free(error);
			return r;
		}
	}
	return 0;
}

/* The store listens on the control address; its data lives under the
 * state directory. */
static int start_store(struct agent *a)
{
	struct store_options *o = &a->cfg.store;
	char addr[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &a->cfg.datapath.control_addr, addr, sizeof(addr));
	o->id = a->cfg.id;
	snprintf(o->name, sizeof(o->name), "%s", a->cfg.name);
	snprintf(o->raft_address, sizeof(o->raft_address), "%s:%u", addr, a->cfg.raft_port);
	snprintf(o->peer_address, sizeof(o->peer_address), "%s:%u", addr, a->cfg.peer_port);
	snprintf(o->dir, sizeof(o->dir), "%.4000s/store", a->cfg.state_dir);
	/* No seeds to join through: this host is a cluster of its own. */
	if (o->n_seeds == 0)
		o->bootstrap = true;

	int r = ctl_server_start_tcp(&a->peer, a->loop, o->peer_address, handle_peer, a);
	if (r < 0) {
		log_error("peer API on %s: %s", o->peer_address, uv_strerror(r));
		return r;
	}
	r = register_tables();
	if (r < 0)
		return r;
	char *error = NULL;
	r = store_open(a->loop, o, &a->store, &error);
	if (r < 0) {
		log_error("store: %s", error ? error : strerror(-r));
		free(error);
		return r;
	}
	log_info("store: raft on %s, peer API on %s, %s", o->raft_address, o->peer_address,
	         store_raft_version());
	return 0;
}

static int start(struct agent *a)
{
	int r = file_mkdir_p(a->cfg.state_dir);
	if (r < 0) {
		log_error("state directory %s: %s", a->cfg.state_dir, strerror(-r));
		return r;
	}
	r = dp_open(&a->dp, &a->cfg.datapath, a->cfg.state_dir);
	if (r < 0) {
		log_error("datapath: %s", strerror(-r));
		return r;
	}
	/* The datapath's sources, in the order their fragments compose: the
	 * devices' steering on the uplink comes before NAT's. Until a service
	 * is open its source stands in: no devices' link, and with NAT nothing
	 * leaves untranslated while a table from before a restart stays until
	 * NAT knows the blocks (nat_open()). */
	r = dp_set_source(&a->dp, DEVICES_DP_SOURCE, devices_fragment_idle, NULL);
	if (r == 0 && nat_enabled(&a->cfg.nat)) {
		static const uint8_t none[6];
		nat_datapath(NULL, &a->cfg.nat, a->cfg.id, none,
		             nat_uplink_for(a->cfg.id, NULL, a->cfg.nat.n_publics), &a->nat_boot);
		r = dp_set_source(&a->dp, NAT_DP_SOURCE, nat_fragment_held, &a->nat_boot);
	}
	if (r < 0) {
		log_error("datapath: %s", strerror(-r));
		return r;
	}
	/* A failed reconciliation is reported through status, not fatal: the
	 * admin can see why and fix the host while the agent keeps serving. */
	if (dp_reconcile(&a->dp) < 0)
		log_error("datapath: %s", a->dp.error);
	else
		log_info("datapath: ready (%s <-> %s, guest %s)", a->cfg.datapath.guest_if,
		         a->cfg.datapath.uplink_if, inet_ntoa(a->cfg.datapath.guest_addr));

	char *slash = strrchr(a->cfg.control_socket, '/');
	if (slash && slash != a->cfg.control_socket) {
		*slash = '\0';
		r = file_mkdir_p(a->cfg.control_socket);
		*slash = '/';
		if (r < 0) {
			log_error("control socket directory: %s", strerror(-r));
			return r;
		}
	}
	r = start_store(a);
	if (r < 0)
		return r;
	if (attest_enabled(&a->cfg.trust)) {
		char *error = NULL, *measured;
		r = config_load_measured(a->config_path, &measured, &error);
		if (r == 0) {
			r = attest_open(a->loop, &a->cfg.trust, a->cfg.name, "/proc/self/exe",
			                measured, a->cfg.state_dir, a->store, &a->attest, &error);
			free(measured);
		}
		if (r < 0) {
			log_error("trust: %s", error ? error : strerror(-r));
			free(error);
			return r;
		}
		log_info("trust: measured into PCR %u: %s", a->cfg.trust.pcr,
		         attest_measurement(a->attest));
	}
	if (a->cfg.sw.n_switches) {
		struct sw_self self = {.control_addr = ntohl(a->cfg.datapath.control_addr.s_addr),
		                       .guest_addr = ntohl(a->cfg.datapath.guest_addr.s_addr)};
		snprintf(self.name, sizeof(self.name), "%s", a->cfg.name);
		snprintf(self.uplink_if, sizeof(self.uplink_if), "%s", a->cfg.datapath.uplink_if);
		char *error = NULL;
		r = sw_open(a->loop, &a->cfg.sw, &self, a->store, &a->switches, &error);
		if (r < 0) {
			log_error("switches: %s", error ? error : strerror(-r));
			free(error);
			return r;
		}
		log_info("switches: controlling %u switch(es)", a->cfg.sw.n_switches);
		if (nat_enabled(&a->cfg.nat)) {
			r = nat_open(a->loop, &a->cfg.nat, a->cfg.id, a->cfg.name, a->store,
			             a->switches, &a->dp,
			             a->cfg.guest_netns[0] ? a->cfg.guest_netns : NULL, &a->nat);
			if (r < 0) {
				log_error("nat: %s", strerror(-r));
				return r;
			}
			log_info("nat: %u public address(es), blocks of %u ports",
			         a->cfg.nat.n_publics, a->cfg.nat.block_size);
		}
		r = devices_open(a->loop, a->cfg.name, a->cfg.store.promote_after_ms, a->store,
		                 a->switches, &a->dp, &a->devices);
		if (r < 0) {
			log_error("devices: %s", strerror(-r));
			return r;
		}
	}
	r = ctl_server_start(&a->ctl, a->loop, a->cfg.control_socket, handle_request, a);
	if (r < 0) {
		log_error("control socket %s: %s", a->cfg.control_socket,
		          r == -EADDRINUSE ? "another agent is listening there" : strerror(-r));
		return r;
	}

	uv_signal_init(a->loop, &a->sigterm);
	uv_signal_init(a->loop, &a->sigint);
	a->sigterm.data = a->sigint.data = a;
	uv_signal_start(&a->sigterm, signal_cb, SIGTERM);
	uv_signal_start(&a->sigint, signal_cb, SIGINT);
	uv_timer_init(a->loop, &a->watch);
	a->watch.data = a;
	uv_timer_start(&a->watch, watch_cb, WATCH_INTERVAL_MS, WATCH_INTERVAL_MS);
	log_info("agent %s (id %u) listening on %s", a->cfg.name, a->cfg.id, a->cfg.control_socket);
	return 0;
}

int main(int argc, char **argv)
{
	static struct agent agent;
	const char *config_path = NULL;
	bool check = false;
	char *error = NULL;

	log_set_ident("ettmd");
	int r = parse_args(argc, argv, &config_path, &check);
	if (r >= 0)
		return r;
	if (config_load(config_path, &agent.cfg, &error) < 0) {
		fprintf(stderr, "ettmd: %s\n", error ? error : "out of memory");
		free(error);
		return 1;
	}
	if (check) {
		printf("%s: ok\n", config_path);
		return 0;
	}
	agent.config_path = config_path;

	signal(SIGPIPE, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &agent.started);
	agent.loop = uv_default_loop();
	if (start(&agent) < 0) {
		dp_close(&agent.dp);
		return 1;
	}
	uv_run(agent.loop, UV_RUN_DEFAULT);
	uv_loop_close(agent.loop);
	dp_close(&agent.dp);
	log_info("stopped");
	return 0;
}
