/* Fuzz target: the control protocol's request and reply parsers. A bad
 * request must get an error, and a good one must encode back to a request
 * that parses the same. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_request req, again;
	char *error = NULL;
	bool ok;
	json_t *result = NULL;
	char *reason = NULL;

	int r = ctl_request_parse((const char *)data, size, &req, &error);
	if (r == 0) {
		char *line = ctl_request_encode(req.id, req.cmd, json_incref(req.args));
		if (!line || ctl_request_parse(line, strlen(line) - 1, &again, &error) != 0 ||
		    strcmp(again.cmd, req.cmd) != 0 || !json_equal(again.args, req.args))
			__builtin_trap();
		ctl_request_done(&again);
		free(line);
		ctl_request_done(&req);
	} else if (r == -EINVAL && !error) {
		__builtin_trap(); /* a refusal always says why */
	}
	free(error);
	error = NULL;

	if (ctl_reply_parse((const char *)data, size, &ok, &result, &reason, &error) == 0) {
		json_decref(result);
		free(reason);
	}
	free(error);
	return 0;
}
