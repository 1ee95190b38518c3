/* Admission commands: "hosts.list" (every member: where it sits, whether
 * its port is open, what its last attestation concluded; docs/trust.md),
 * "hosts.admit" and "hosts.revoke" (a command to the store's admissions
 * table) when admission is the admin's: without a TPM on this host
 * (attest.h answers admit and revoke otherwise). Part of the trust service
 * (service.c), which owns admission. */
#include "hosts.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api/server.h"
#include "lib/addr.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "store/store.h"
#include "switch/tables.h"
#include "trust/tables.h"

/* One member as `ettmctl hosts` shows it: where it sits, whether its port
 * is open, and what its last attestation concluded (docs/trust.md). */
static json_t *host_json(const struct store_state *st, const struct store_member *m)
{
	const struct switch_location *l = switch_location_find(st, m->name);
	const struct trust_admission *adm = trust_admission_find(st, m->name);
	const struct trust_attestation *t = trust_attestation_find(st, m->name);
	char d[17];
	snprintf(d, sizeof(d), "%016" PRIx64, l ? l->dpid : 0);
	const char *state = adm ? "admitted" : "not admitted";
	if (t && !(adm && t->state != TRUST_ATTEST_ADMITTED))
		state = trust_attest_state_name(t->state);
	const char *measurement = adm && adm->measurement[0] ? adm->measurement
	                          : t && t->measurement[0]   ? t->measurement
	                                                     : NULL;
	return json_pack("{s:s, s:b, s:s, s:s?, s:s?, s:I, s:o, s:o, s:s?, s:s?, s:i}", "host",
	                 m->name, "admitted", adm != NULL, "state", state, "reason",
	                 t && t->reason[0] ? t->reason : NULL, "measurement", measurement,
	                 "attested_ms", t ? (json_int_t)t->time_ms : (json_int_t)0,
	                 "control_address", l ? addr_json_host(l->control_addr) : json_null(),
	                 "guest_address", l ? addr_json_host(l->guest_addr) : json_null(), "mac",
	                 l ? l->mac : NULL, "dpid", l ? d : NULL, "port", l ? (int)l->port : 0);
}

int hosts_handle_request(struct store *store, struct ctl_client *client,
                         const struct ctl_request *req, json_t **ret_result, char **ret_error)
{
	const struct store_state *st = store_state(store);
	if (strcmp(req->cmd, "hosts.list") == 0) {
		json_t *a = json_array();
		for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++)
			json_array_append_new(a, host_json(st, store_row(st, STORE_MEMBERS, i)));
		*ret_result = json_pack("{s:o}", "hosts", a);
		return 0;
	}
	bool admit = strcmp(req->cmd, "hosts.admit") == 0;
	if (!admit && strcmp(req->cmd, "hosts.revoke") != 0)
		return -ENOENT;
	const char *host = json_string_value(json_object_get(req->args, "host"));
	if (!host || !host[0])
		return error_set(ret_error, -EINVAL, "field \"host\": expected a host name");
	if (admit && !store_member_find_name(st, host))
		return error_set(ret_error, -ENOENT, "no member named \"%s\" (see 'ettmctl hosts')",
		                 host);
	struct store_cmd cmd = {.table = TRUST_ADMISSIONS,
	                        .op = admit ? STORE_PUT : STORE_DELETE,
	                        .time_ms = wall_ms()};
	snprintf(STORE_CMD_ROW(&cmd, struct trust_admission)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct trust_admission)->host), "%s", host);
	STORE_CMD_ROW(&cmd, struct trust_admission)->time_ms = cmd.time_ms;
	return store_propose_reply(store, client, req, &cmd, true, ret_error);
}
