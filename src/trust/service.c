/* Trust as a service of the agent (services/service.h): admission. With a
 * TPM configured it measures this host, joins by attestation and, while
 * this host leads, verifies the others (attest.h); without one the admin
 * admits hosts (hosts.h). Either way it owns every admission command, the
 * trusted measurements (trust.list, trust.add, trust.remove) and the join
 * protocol's peer commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/server.h"
#include "api/tls.h"
#include "attest.h"
#include "gate.h"
#include "hosts.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/log.h"
#include "services/service.h"
#include "store/store.h"
#include "tables.h"

struct trust_svc {
	struct store *store;
	struct attest *attest; /* NULL: admission is the admin's */
};

/* The gate of the peer API's TLS (api/tls.h), on this replica's state. */
static int gate(void *self, const char *fp, enum ctl_tls_ca ca, const char *cmd,
                const char *dialled, char *ret_host, size_t host_size, char **ret_error)
{
	struct trust_svc *t = self;
	return trust_key_check(store_state(t->store), t->attest != NULL, fp, ca, cmd, dialled,
	                       ret_host, host_size, ret_error);
}

/* Who may speak Raft (store.h), on this replica's state. */
static int raft_check(void *self, const char *fp, uint64_t raft_id, char **ret_error)
{
	struct trust_svc *t = self;
	return trust_raft_key_check(store_state(t->store), t->attest != NULL,
	                            store_joined_key(t->store), fp, raft_id, ret_error);
}

static int open_trust(struct svc_env *env, const void *options, void **ret_self, char **ret_error)
{
	const struct attest_options *o = options;
	struct trust_svc *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->store = env->store;
	if (attest_enabled(o)) {
		int r = attest_open(env->loop, o, env->host->name, "/proc/self/exe",
		                    env->host->measured_config, env->host->state_dir, env->store,
		                    &t->attest, ret_error);
		if (r < 0) {
			free(t);
			return r;
		}
		log_info("trust: measured into PCR %u: %s", o->pcr, attest_measurement(t->attest));
	}
	if (ctl_tls_default())
		ctl_tls_set_gate(ctl_tls_default(), gate, t);
	store_set_raft_check(t->store, raft_check, t);
	*ret_self = t;
	return 0;
}

static void close_trust(void *self, void (*done)(void *arg), void *arg)
{
	struct trust_svc *t = self;
	if (ctl_tls_default())
		ctl_tls_set_gate(ctl_tls_default(), NULL, NULL);
	store_set_raft_check(t->store, NULL, NULL);
	attest_close(t->attest);
	free(t);
	done(arg);
}

/* `ettmctl status` shows this host's attestation when it has a TPM. */
static json_t *status(void *self)
{
	struct trust_svc *t = self;
	return t->attest ? attest_status(t->attest) : NULL;
}

static int handle_hosts(void *self, struct ctl_client *client, const struct ctl_request *req,
                        json_t **ret_result, char **ret_error)
{
	struct trust_svc *t = self;
	if (t->attest && strcmp(req->cmd, "hosts.list") != 0)
		return attest_handle_admin(t->attest, client, req, ret_result, ret_error);
	return hosts_handle_request(t->store, client, req, ret_result, ret_error);
}

static int handle_join(void *self, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	struct trust_svc *t = self;
	if (!t->attest)
		return error_set(ret_error, -EOPNOTSUPP,
		                 "attestation is off on this host: its configuration has no "
		                 "trust.tcti");
	return attest_handle_peer(t->attest, client, req, ret_result, ret_error);
}

static int handle_list(void *self, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	struct trust_svc *t = self;
	*ret_result =
	    json_pack("{s:o}", "trusted", store_table_dump(store_state(t->store), TRUST_TRUSTED));
	return *ret_result ? 0 : -ENOMEM;
}

/* trust.add and trust.remove: a command to the trusted measurements. */
static int handle_edit(void *self, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	struct trust_svc *t = self;
	const char *digest = ctl_arg_str(req, "digest");
	const char *note = ctl_arg_str(req, "note");
	if (!digest)
		return error_set(ret_error, -EINVAL, "field \"digest\": expected a string");
	struct store_cmd cmd = {.table = TRUST_TRUSTED,
	                        .op = strcmp(req->cmd, "trust.add") == 0 ? STORE_PUT : STORE_DELETE,
	                        .time_ms = wall_ms()};
	struct trust_trusted *row = STORE_CMD_ROW(&cmd, struct trust_trusted);
	snprintf(row->digest, sizeof(row->digest), "%s", digest);
	snprintf(row->note, sizeof(row->note), "%s", note ? note : "");
	row->added_ms = cmd.time_ms;
	return store_propose_reply(t->store, client, req, &cmd, true, ret_error);
}

static const struct svc_command commands[] = {
    {"hosts.list", SVC_ADMIN, handle_hosts},
    {"hosts.admit", SVC_ADMIN, handle_hosts},
    {"hosts.revoke", SVC_ADMIN, handle_hosts},
    {"trust.list", SVC_ADMIN, handle_list},
    {"trust.add", SVC_ADMIN, handle_edit},
    {"trust.remove", SVC_ADMIN, handle_edit},
    /* The join protocol (docs/trust.md): asked by a host that is not
     * admitted yet, so by anyone; trust.quote by the leader, a member. */
    {"trust.challenge", SVC_JOIN, handle_join},
    {"trust.prove", SVC_JOIN, handle_join},
    {"trust.quote", SVC_PEER, handle_join},
    {NULL},
};

const struct service trust_service = {
    .name = "trust",
    .open = open_trust,
    .close = close_trust,
    .status = status,
    .commands = commands,
    .tables = trust_tables,
};
