/* The agent itself: what ettmd holds, and its own commands (status,
 * services), shared by main.c, agent.c and services.c. */
#pragma once

#include <time.h>

#include <uv.h>

#include "api/server.h"
#include "config.h"
#include "datapath/datapath.h"
#include "peers.h"
#include "svcset.h"

struct agent {
	uv_loop_t *loop;
	struct config cfg;
	const char *config_path;
	char *measured_config; /* for the TPM; NULL without [trust] */
	struct datapath dp;
	struct ctl_server ctl;  /* the admin's control socket */
	struct ctl_server peer; /* the peer API */
	struct peer_guard peer_guard; /* who may ask what on it (peers.h) */
	struct ctl_tls *tls;    /* the peer API's TLS identity */
	struct svc_host host;
	struct svc_env env;
	struct svc_set services;
	uv_signal_t sigterm, sigint;
	uv_timer_t watch;
	struct timespec started;
};

/* The agent's own commands, as a service whose self is the agent. */
extern const struct service agent_service;

/* Every service of ettmd, in the order they open (services.c). */
extern const struct svc_entry ettmd_services[];
