/* The control protocol (docs/control-protocol.md): one JSON object per line
 * each way. Pure functions, shared by ettmd and ettmctl, fed bytes by the
 * unit tests and the fuzzer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "lib/error.h"

#define CTL_LINE_MAX 65536
#define CTL_CMD_MAX  64

struct ctl_request {
	bool has_id;
	json_int_t id;
	char cmd[CTL_CMD_MAX];
	json_t *args; /* an object; never NULL after a successful parse */
};

/* Parses one request line (@len bytes, without the '\n'). On success returns
 * 0 and fills *ret_req (release with ctl_request_done()). On error returns
 * -EINVAL with a one-line reason naming the field or byte offset in
 * *ret_error (newly allocated; error.h), and, if the request's id could be
 * read, sets *ret_req's id so the reply can carry it; -ENOMEM without a
 * reason. */
int ctl_request_parse(const char *line, size_t len, struct ctl_request *ret_req, char **ret_error);

void ctl_request_done(struct ctl_request *req);

/* Encodes a request line (with its '\n'); steals @args (may be NULL).
 * Returns a newly allocated string or NULL. */
char *ctl_request_encode(json_int_t id, const char *cmd, json_t *args);

/* Encodes a reply line (with its '\n'): a success carrying @result (stolen;
 * NULL means {}), or a failure carrying @error when @error is not NULL.
 * @req may be NULL when the request had no readable id. Returns a newly
 * allocated string or NULL. */
char *ctl_reply_encode(const struct ctl_request *req, json_t *result, const char *error);

/* Parses a reply line. On success returns 0 and sets *ret_ok; on ok,
 * *ret_result is the result (a new reference), otherwise *ret_reason is the
 * agent's reason (newly allocated). Returns -EINVAL with *ret_error set
 * (error.h) when the line is not a reply. */
int ctl_reply_parse(const char *line, size_t len, bool *ret_ok, json_t **ret_result,
                    char **ret_reason, char **ret_error);

/* The string argument @name of @req, or NULL. */
const char *ctl_arg_str(const struct ctl_request *req, const char *name);
