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

#include "agent.h"
#include "api/server.h"
#include "api/tls.h"
#include "config.h"
#include "peers.h"
#include "datapath/datapath.h"
#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "store/store.h"
#include "trust/attest.h"

/* How often the agent checks that its table is still in the kernel. */
#define WATCH_INTERVAL_MS 5000

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

static int handle_admin(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                        json_t **ret_result, char **ret_error)
{
	struct agent *a = userdata;
	return svc_dispatch(&a->services, SVC_ADMIN, client, req, ret_result, ret_error);
}

/* The peer API: what other agents, and hosts that join, may ask; who may
 * ask what is peers.h's. */
static int handle_peer(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	struct agent *a = userdata;
	struct in_addr source = {0};
	if (ctl_client_source(client, &source) < 0)
		return error_set(ret_error, -ENOTCONN, "the peer API cannot tell who is asking");
	const struct store_state *st = a->env.store ? store_state(a->env.store) : NULL;
	/* Over TLS in a cluster that admits by attestation, who asks is the
	 * host its key was admitted as, and that alone (peers.h). */
	bool by_key = ctl_client_peer_fp(client) && attest_enabled(&a->cfg.trust);
	unsigned granted = peer_scope(st, source, by_key, ctl_client_peer_host(client), NULL);
	unsigned wanted = svc_command_scope(&a->services, req->cmd);
	int r = peer_guard_check(&a->peer_guard, source, granted, wanted, req->cmd, uv_now(a->loop),
	                         ret_error);
	if (r < 0)
		return r;
	return svc_dispatch(&a->services, granted, client, req, ret_result, ret_error);
}

/* A request the TLS gate refused (a key no admitted host holds, beyond the
 * join protocol) still counts against its source's rate, and is logged as
 * the guard logs its own refusals; over its rate, the client is told so. */
static void refused_peer(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                         char **inout_reason)
{
	struct agent *a = userdata;
	struct in_addr source = {0};
	char *why = NULL;
	if (ctl_client_source(client, &source) < 0)
		return;
	unsigned wanted = svc_command_scope(&a->services, req->cmd);
	if (peer_guard_check(&a->peer_guard, source, SVC_JOIN, wanted, req->cmd, uv_now(a->loop),
	                     &why) == -EBUSY) {
		free(*inout_reason);
		*inout_reason = why;
		return;
	}
	free(why);
}

/* Someone removed the table (nft flush ruleset, a careless admin), or
 * changed nftables in the AEE: put the table back whole, so the agent
 * keeps owning its datapath (a change of its own sends only what differs,
 * and would leave an edit by hand in place). */
static void watch_cb(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (!dp_table_present(&a->dp))
		log_warn("datapath: table %s %s disappeared; restoring it", DP_TABLE_FAMILY,
		         DP_TABLE_NAME);
	else if (dp_changed_elsewhere(&a->dp))
		log_info("datapath: nftables changed outside the agent; making its tables whole");
	else
		return;
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

static void services_closed(void *arg)
{
	(void)arg;
}

static void signal_cb(uv_signal_t *sig, int signum)
{
	struct agent *a = sig->data;
	log_info("received %s; stopping (the datapath keeps its rules)", strsignal(signum));
	ctl_server_close(&a->ctl, ctl_closed_cb);
	ctl_server_close(&a->peer, ctl_closed_cb);
	svc_set_close(&a->services, services_closed, a);
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

/* Who this host is, for the services. */
static int describe_host(struct agent *a)
{
	a->host = (struct svc_host){
	    .name = a->cfg.name,
	    .id = a->cfg.id,
	    .state_dir = a->cfg.state_dir,
	    .guest_netns = a->cfg.guest_netns[0] ? a->cfg.guest_netns : NULL,
	    .datapath = &a->cfg.datapath,
	    .raft_port = a->cfg.raft_port,
	    .peer_port = a->cfg.peer_port,
	};
	if (attest_enabled(&a->cfg.trust)) {
		char *error = NULL;
		int r = config_load_measured(a->config_path, &a->measured_config, &error);
		if (r < 0) {
			log_error("trust: %s", error ? error : strerror(-r));
			free(error);
			return r;
		}
		a->host.measured_config = a->measured_config;
	}
	return 0;
}

static int make_socket_dir(const char *path)
{
	char dir[sizeof(((struct config *)NULL)->control_socket)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	return file_mkdir_p(dir);
}

/* The peer API, on the control address the datapath has just set up. */
static int start_peer_api(struct agent *a)
{
	char addr[INET_ADDRSTRLEN], peer[STORE_ADDR_MAX];
	inet_ntop(AF_INET, &a->cfg.datapath.control_addr, addr, sizeof(addr));
	snprintf(peer, sizeof(peer), "%s:%u", addr, a->cfg.peer_port);
	peer_guard_init(&a->peer_guard);
	int r = ctl_server_start_tcp(&a->peer, a->loop, peer, handle_peer, a);
	a->peer.refused = refused_peer;
	if (r < 0)
		log_error("peer API on %s: %s", peer, uv_strerror(r));
	return r;
}

/* The datapath with every service's stand-in, reconciled once; the peer
 * API; then the services, which replace their stand-ins. */
static int start_services(struct agent *a)
{
	char *error = NULL;
	int r = svc_set_init(&a->services, ettmd_services, &error);
	if (r == 0)
		r = svc_set_boot(&a->services, &a->env, &a->cfg, &error);
	if (r < 0) {
		log_error("services: %s", error ? error : strerror(-r));
		free(error);
		return r;
	}
	/* A failed reconciliation is reported through status, not fatal: the
	 * admin can see why and fix the host while the agent keeps serving. */
	if (dp_reconcile(&a->dp) < 0)
		log_error("datapath: %s", a->dp.error);
	else
		log_info("datapath: ready (%s <-> %s, guest %s)", a->cfg.datapath.guest_if,
		         a->cfg.datapath.uplink_if, inet_ntoa(a->cfg.datapath.guest_addr));
	if ((r = start_peer_api(a)) < 0)
		return r;
	r = svc_set_open(&a->services, &error);
	if (r < 0) {
		log_error("%s", error ? error : strerror(-r));
		free(error);
	}
	return r;
}

static int start(struct agent *a)
{
	int r = file_mkdir_p(a->cfg.state_dir);
	if (r < 0) {
		log_error("state directory %s: %s", a->cfg.state_dir, strerror(-r));
		return r;
	}
	/* The peer API's key: made at first start, then the same for good
	 * (docs/trust.md: it is bound into this host's attestation). */
	char *error = NULL;
	r = a->cfg.tls ? ctl_tls_open(a->cfg.state_dir, a->cfg.name, &a->tls, &error) : 0;
	if (!a->cfg.tls)
		log_warn("store.tls = false: the peer API and Raft are plaintext and every peer "
		         "is heard (a benchmark's baseline, never a network)");
	if (r < 0) {
		log_error("TLS identity: %s", error ? error : strerror(-r));
		free(error);
		return r;
	}
	/* The network's CA, before any connection: the switches are judged
	 * by it, and a joining host's peers (docs/trust.md). */
	if (a->tls && a->cfg.network_ca[0] &&
	    (r = ctl_tls_set_network_ca(a->tls, a->cfg.network_ca, &error)) < 0) {
		log_error("host.network-ca: %s", error ? error : strerror(-r));
		free(error);
		return r;
	}
	ctl_tls_set_default(a->tls);
	if (a->tls)
		log_info("TLS key %s (%s/%s)", ctl_tls_fingerprint(a->tls), a->cfg.state_dir,
		         CTL_TLS_KEY_FILE);
	r = dp_open(&a->dp, &a->cfg.datapath, a->cfg.state_dir);
	if (r < 0) {
		log_error("datapath: %s", strerror(-r));
		return r;
	}
	r = make_socket_dir(a->cfg.control_socket);
	if (r < 0) {
		log_error("control socket directory: %s", strerror(-r));
		return r;
	}
	if ((r = describe_host(a)) < 0)
		return r;
	a->env = (struct svc_env){.loop = a->loop, .host = &a->host, .dp = &a->dp};

	if ((r = start_services(a)) < 0)
		return r;
	r = ctl_server_start(&a->ctl, a->loop, a->cfg.control_socket, handle_admin, a);
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
		ctl_tls_free(agent.tls);
		dp_close(&agent.dp);
		return 1;
	}
	uv_run(agent.loop, UV_RUN_DEFAULT);
	uv_loop_close(agent.loop);
	svc_set_free(&agent.services);
	ctl_tls_free(agent.tls);
	free(agent.measured_config);
	dp_close(&agent.dp);
	log_info("stopped");
	return 0;
}
