/* Admission commands on the control socket: "hosts.list", "hosts.admit"
 * and "hosts.revoke" (docs/trust.md). They need the store alone. */
#pragma once

#include <jansson.h>

struct store;
struct ctl_client;
struct ctl_request;

/* Answers @req when it is one of the commands above: 0 with *@ret_result,
 * CTL_DEFERRED (admit and revoke answer once the store applies them), or a
 * negative errno with *@ret_error; -ENOENT without an error for any other
 * command. */
int hosts_handle_request(struct store *store, struct ctl_client *client,
                         const struct ctl_request *req, json_t **ret_result, char **ret_error);
