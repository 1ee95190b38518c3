/* Fuzz target: the policy language. Any input is parsed; a rejected one
 * carries a message that names the file, line and column; an accepted one
 * is judged by its own expectations and compiled for a host at some time,
 * none of which may crash or read out of bounds. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datapath/fragment.h"
#include "services/policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy_host hosts[4] = {{"h1", htonl(0x0a4d0101), false},
	                               {"h2", htonl(0x0a4d0102), false},
	                               {"h3", 0, false},
	                               {"printer", htonl(0x0a4d0201), true}};
	struct policy_net net = {.lan_addr = htonl(0x0a4d0000),
	                         .lan_mask = htonl(0xffff0000),
	                         .n_hosts = 4,
	                         .hosts = hosts,
	                         .departed_hosts = size > 0 && data[0] == '#'};
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct policy p;
	char *error = NULL;
	int r = policy_parse(text, "fuzz.policy", &net, &p, &error);
	if (r < 0) {
		if (r == -EINVAL && (!error || strncmp(error, "fuzz.policy:", 12) != 0))
			__builtin_trap(); /* every error names where */
		free(error);
		free(text);
		return 0;
	}
	policy_run_expects(&p, &net, "fuzz.policy", NULL);
	/* Compiled at a moment the input picks, in the file's time zone. */
	int minute = policy_time_minute(&p.time, (time_t)(size * 7919u));
	if (minute < 0 || minute >= POLICY_WEEK_MINUTES ||
	    policy_time_slot(&p.time, minute) > POLICY_WEEK_MINUTES)
		__builtin_trap();
	for (size_t i = 0; i < 2; i++) {
		struct dp_fragment f = {0};
		policy_needs_agent(&p, &net, &hosts[i], i == 0);
		policy_ruleset_build(&p, 3, minute, &net, &hosts[i], &f);
		dp_fragment_free(&f);
	}
	struct dp_fragment f = {0};
	policy_ruleset_build_devices(&p, 3, minute, &net, &f);
	dp_fragment_free(&f);
	policy_free(&p);
	free(text);
	return 0;
}
