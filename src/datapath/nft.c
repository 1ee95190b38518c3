/* Applying rulesets and reading counters through libnftables
 * (datapath-internal.h). */
#include "datapath-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <nftables/libnftables.h>

#include "lib/log.h"

struct dp_nft {
	struct nft_ctx *ctx;
};

int dp_nft_new(struct dp_nft **ret_nft)
{
	struct dp_nft *nft = calloc(1, sizeof(*nft));
	if (!nft)
		return -ENOMEM;
	nft->ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!nft->ctx) {
		free(nft);
		return -ENOMEM;
	}
	nft_ctx_buffer_output(nft->ctx);
	nft_ctx_buffer_error(nft->ctx);
	*ret_nft = nft;
	return 0;
}

void dp_nft_free(struct dp_nft *nft)
{
	if (!nft)
		return;
	nft_ctx_free(nft->ctx);
	free(nft);
}

/* Runs @cmd; with @json, asks for JSON output. On success *ret_output (if
 * not NULL) is a copy of nft's output; on failure *ret_error (if not NULL) is
 * its message. */
static int run(struct dp_nft *nft, const char *cmd, bool json, char **ret_output, char **ret_error)
{
	nft_ctx_output_set_flags(nft->ctx, json ? NFT_CTX_OUTPUT_JSON : 0);
	int r = nft_run_cmd_from_buffer(nft->ctx, cmd);
	nft_ctx_output_set_flags(nft->ctx, 0);
	const char *out = nft_ctx_get_output_buffer(nft->ctx);
	const char *err = nft_ctx_get_error_buffer(nft->ctx);

	if (r != 0) {
		log_debug("nft failed: %s: %s", cmd, err ? err : "");
		if (ret_error) {
			*ret_error = strdup(err && *err ? err : "nft failed without a message");
			/* Keep the message on one line for status and logs. */
			for (char *p = *ret_error; p && *p; p++)
				if (*p == '\n')
					*p = ' ';
		}
		return err && strstr(err, "No such file or directory") ? -ENOENT : -EIO;
	}
	if (ret_output) {
		*ret_output = strdup(out ? out : "");
		if (!*ret_output)
			return -ENOMEM;
	}
	return 0;
}

/* The running tables' listing: the inet table's, with the netdev table's
 * objects added to its array (dp_ruleset_transaction()); NULL when there
 * is no inet table. */
static int list_table(struct dp_nft *nft, char **ret_json)
{
	char *json = NULL, *netdev = NULL;
	*ret_json = NULL;
	int r = run(nft, "list table " DP_TABLE_FAMILY " " DP_TABLE_NAME, true, &json, NULL);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	r = run(nft, "list table netdev " DP_TABLE_NAME, true, &netdev, NULL);
	if (r == -ENOENT) {
		*ret_json = json;
		return 0;
	}
	json_t *all = r == 0 ? json_loads(json, 0, NULL) : NULL;
	json_t *more = r == 0 ? json_loads(netdev, 0, NULL) : NULL;
	free(netdev);
	if (r == 0 && (!json_is_array(json_object_get(all, "nftables")) ||
	               !json_is_array(json_object_get(more, "nftables"))))
		r = -EINVAL;
	if (r == 0)
		json_array_extend(json_object_get(all, "nftables"),
		                  json_object_get(more, "nftables"));
	if (r == 0) {
		free(json);
		json = json_dumps(all, JSON_COMPACT);
		r = json ? 0 : -ENOMEM;
	}
	json_decref(all);
	json_decref(more);
	if (r < 0) {
		free(json);
		return r;
	}
	*ret_json = json;
	return 0;
}

int dp_nft_apply(struct dp_nft *nft, const struct dp_ruleset *rs, char **ret_error)
{
	char *current = NULL, *tx = NULL;
	int r = list_table(nft, &current);
	if (r < 0) {
		if (ret_error)
			*ret_error = strdup("cannot list the running table");
		return r;
	}
	r = dp_ruleset_transaction(rs, current, &tx);
	free(current);
	if (r < 0) {
		if (ret_error)
			*ret_error = strdup("cannot parse the running table's listing");
		return r;
	}
	log_debug("nft transaction:\n%s", tx);
	r = run(nft, tx, false, NULL, ret_error);
	free(tx);
	return r;
}

int dp_nft_read_counters(struct dp_nft *nft, struct dp_counter ret[DP_COUNTER_MAX])
{
	char *out = NULL;
	int r =
	    run(nft, "list counters table " DP_TABLE_FAMILY " " DP_TABLE_NAME, true, &out, NULL);
	if (r < 0)
		return r;

	json_t *root = json_loads(out, 0, NULL);
	free(out);
	if (!root)
		return -EINVAL;

	struct dp_counter found[DP_COUNTER_MAX] = {0};
	size_t i;
	json_t *item;
	json_array_foreach(json_object_get(root, "nftables"), i, item)
	{
		json_t *c = json_object_get(item, "counter");
		const char *name = json_string_value(json_object_get(c, "name"));
		if (!name)
			continue;
		for (int id = 0; id < DP_COUNTER_MAX; id++) {
			if (strcmp(name, dp_counter_name(id)) != 0)
				continue;
			found[id].packets = json_integer_value(json_object_get(c, "packets"));
			found[id].bytes = json_integer_value(json_object_get(c, "bytes"));
		}
	}
	json_decref(root);
	memcpy(ret, found, sizeof(found));
	return 0;
}
