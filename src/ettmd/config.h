/* ettmd's configuration file (docs/config.md): a small INI dialect with a
 * fixed set of typed keys. Every error names file:line and what was
 * expected; unknown keys are errors. */
#pragma once

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "datapath/datapath.h"
#include "services/nat/nat.h"
#include "store/store.h"
#include "switch/switch.h"
#include "trust/attest.h"

#define CONFIG_NAME_MAX   32
#define CONFIG_SOCKET_MAX 108 /* sizeof(sockaddr_un.sun_path) */

struct config {
	char name[CONFIG_NAME_MAX];
	uint16_t id;
	char state_dir[PATH_MAX];
	char control_socket[CONFIG_SOCKET_MAX];
	struct dp_config datapath;
	char guest_netns[PATH_MAX]; /* the guest's network namespace; "" unknown */
	/* host.network-ca: the CA of the network's installer, which signed the
	 * switches' certificates and this agent's ("": none; then OpenFlow is
	 * plain TCP). Loaded into the TLS identity (ctl_tls_set_network_ca()). */
	char network_ca[PATH_MAX];
	/* [store]; the addresses are the control address with these ports */
	uint16_t raft_port;
	uint16_t peer_port;
	bool tls; /* store.tls: the peer API and Raft over TLS (false: benchmarks' baseline) */
	struct store_options store;
	struct sw_options sw;        /* [switch]; no switches: the agent controls none */
	struct nat_options nat;      /* [nat]; no public addresses: no NAT */
	struct attest_options trust; /* [trust]; no TCTI: admission by the admin */
};

/* Parses @len bytes of @text; @filename is only used in messages. On success
 * returns 0 and fills *ret_config (defaults for keys not given). On error
 * returns -EINVAL and sets *ret_error to "FILE:LINE: message" (newly
 * allocated, lib/error.h); *ret_config is untouched. */
int config_parse(const char *text, size_t len, const char *filename, struct config *ret_config,
                 char **ret_error);

/* Reads and parses the file at @path; errors as config_parse(), plus -errno
 * with "PATH: reason" when the file cannot be read. */
int config_load(const char *path, struct config *ret_config, char **ret_error);

/* What of the configuration the agent measures into its TPM next to its
 * binary (docs/trust.md): every key given, as "section.key = value" lines in
 * a fixed order, but those that only say who the host is or where its
 * files are (host.*, the datapath's addresses and guest namespace,
 * store.bootstrap and store.seeds, trust.tcti), so that every host of a
 * network running the same agent with the same settings has the same
 * measurement. Fails like config_parse() on an invalid configuration.
 * *ret_text is free()d by the caller. */
int config_measured(const char *text, size_t len, const char *filename, char **ret_text,
                    char **ret_error);
/* The same, of the file at @path. */
int config_load_measured(const char *path, char **ret_text, char **ret_error);
