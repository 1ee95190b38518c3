#include "datapath.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fileio.h"
#include "lib/log.h"
#include "link.h"
#include "nft.h"
#include "ruleset.h"

#define GENERATION_FILE "datapath.generation"
#define RULESET_FILE    "datapath.nft"

int dp_open(struct datapath *dp, const struct dp_config *cfg, const char *state_dir)
{
	*dp = (struct datapath){.cfg = *cfg};
	dp->state_dir = strdup(state_dir);
	if (!dp->state_dir)
		return -ENOMEM;
	int r = dp_nft_new(&dp->nft);
	if (r < 0)
		return r;

	char *text = NULL;
	if (file_read_state(state_dir, GENERATION_FILE, &text) == 0) {
		dp->generation = strtoull(text, NULL, 10);
		free(text);
	}
	return 0;
}

static void set_error(struct datapath *dp, char *error)
{
	free(dp->error);
	dp->error = error;
	dp->ok = error == NULL;
}

/* Counts a new generation when @text differs from the last ruleset applied,
 * and records both. */
static void record_generation(struct datapath *dp, const char *text)
{
	char *last = NULL;
	bool same =
	    file_read_state(dp->state_dir, RULESET_FILE, &last) == 0 && strcmp(last, text) == 0;
	free(last);
	if (same && dp->generation > 0)
		return;
	dp->generation++;
	char number[32];
	snprintf(number, sizeof(number), "%" PRIu64 "\n", dp->generation);
	if (file_write_state(dp->state_dir, RULESET_FILE, text) < 0 ||
	    file_write_state(dp->state_dir, GENERATION_FILE, number) < 0)
		log_warn("datapath: cannot record generation %" PRIu64 " in %s", dp->generation,
		         dp->state_dir);
	else
		log_info("datapath: ruleset generation %" PRIu64, dp->generation);
}

int dp_reconcile(struct datapath *dp)
{
	struct dp_ruleset rs;
	char *error = NULL, *text = NULL;
	int r = dp_link_setup(&dp->cfg, &dp->nat, &error);
	if (r < 0) {
		set_error(dp, error ? error : strdup(strerror(-r)));
		return r;
	}
	r = dp_link_devices(&dp->devices_linked, &dp->devices, &error);
	if (r < 0) {
		set_error(dp, error ? error : strdup(strerror(-r)));
		return r;
	}
	dp->devices_linked = dp->devices;
	if (dp->hold_ruleset && dp_table_present(dp)) {
		set_error(dp, NULL);
		return 0;
	}
	r = dp_ruleset_build_devices(&dp->cfg, &dp->nat, &dp->devices, &rs);
	if (r < 0) {
		set_error(dp, strdup("out of memory building the ruleset"));
		return r;
	}
	r = dp_nft_apply(dp->nft, &rs, &error);
	if (r == 0 && dp->nat.enabled)
		r = dp_link_nat_timers(&error);
	if (r == 0)
		r = dp_ruleset_render_string(&rs, &text);
	dp_ruleset_free(&rs);
	if (r < 0) {
		set_error(dp, error ? error : strdup(strerror(-r)));
		return r;
	}
	record_generation(dp, text);
	free(text);
	set_error(dp, NULL);
	return 0;
}

int dp_set_nat(struct datapath *dp, const struct dp_nat *nat)
{
	/* Unchanged: nothing to do (a failed one is retried by the watch). */
	if (memcmp(&dp->nat, nat, sizeof(*nat)) == 0 && !dp->hold_ruleset)
		return 0;
	dp->nat = *nat;
	dp->hold_ruleset = false;
	return dp_reconcile(dp);
}

int dp_set_devices(struct datapath *dp, const struct dp_devices *devices)
{
	if (memcmp(&dp->devices, devices, sizeof(*devices)) == 0)
		return 0;
	dp->devices = *devices;
	return dp_reconcile(dp);
}

bool dp_table_present(struct datapath *dp)
{
	struct dp_counter c[DP_COUNTER_MAX];
	return dp_nft_read_counters(dp->nft, c) != -ENOENT;
}

int dp_read_counters(struct datapath *dp, struct dp_counter ret[DP_COUNTER_MAX])
{
	return dp_nft_read_counters(dp->nft, ret);
}

void dp_close(struct datapath *dp)
{
	if (!dp)
		return;
	dp_nft_free(dp->nft);
	free(dp->state_dir);
	free(dp->error);
	*dp = (struct datapath){0};
}
