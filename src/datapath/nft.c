/* Applying rulesets and reading counters through libnftables
 * (datapath-internal.h). */
#include "datapath-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>

#include "lib/log.h"

uint32_t dp_own_genid;

struct dp_nft {
	struct nft_ctx *ctx;
	/* What the last apply left in the kernel (have_last), or not known:
	 * none yet, it failed, or dp_nft_forget(). */
	struct dp_ruleset last;
	bool have_last;
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
	dp_ruleset_free(&nft->last);
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

static json_t *object(const char *kind, const char *family, const char *name)
{
	return json_pack("{s:{s:s, s:s, s:s}}", kind, "family", family, "table", DP_TABLE_NAME,
	                 "name", name);
}

/* The objects @rs makes, as list_table() lists them (their names: all
 * that dp_ruleset_transaction() reads), or NULL when out of memory. */
static char *listing_of(const struct dp_ruleset *rs)
{
	json_t *v = json_array();
	for (size_t i = 0; v && i < rs->n_counters; i++)
		json_array_append_new(v, object("counter", DP_TABLE_FAMILY, rs->counters[i]));
	for (size_t i = 0; v && i < rs->n_sets; i++)
		json_array_append_new(v,
		                      object(rs->sets[i].kind, DP_TABLE_FAMILY, rs->sets[i].name));
	for (size_t i = 0; v && i < rs->n_chains; i++)
		json_array_append_new(v, object("chain", DP_TABLE_FAMILY, rs->chains[i].name));
	for (size_t i = 0; v && i < rs->n_netdev; i++)
		if (rs->netdev[i].rules.n)
			json_array_append_new(v, object("chain", "netdev", rs->netdev[i].name));
	json_t *root = v ? json_pack("{s:o}", "nftables", v) : NULL;
	char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	return text;
}

void dp_nft_forget(struct dp_nft *nft)
{
	dp_ruleset_free(&nft->last);
	nft->have_last = false;
}

/* The whole table replaced, from what the last apply left, or (@fresh,
 * or when that fails) from a listing of the kernel's. */
static int replace(struct dp_nft *nft, const struct dp_ruleset *rs, char **ret_error)
{
	int r = 0;
	for (int fresh = nft->have_last ? 0 : 1; fresh < 2; fresh++) {
		char *current = NULL, *tx = NULL;
		if (!fresh)
			current = listing_of(&nft->last);
		else
			r = list_table(nft, &current);
		if (r < 0 || (!fresh && !current)) {
			if (ret_error)
				*ret_error = strdup("cannot list the running table");
			free(current);
			r = r < 0 ? r : -ENOMEM;
			break;
		}
		r = dp_ruleset_transaction(rs, current, &tx);
		free(current);
		if (r < 0) {
			if (ret_error)
				*ret_error = strdup("cannot parse the running table's listing");
			break;
		}
		log_debug("nft transaction:\n%s", tx);
		r = run(nft, tx, false, NULL, fresh ? ret_error : NULL);
		free(tx);
		if (r == 0 || fresh)
			break;
		log_debug("nft: the transaction from what was last applied failed; listing");
	}
	return r;
}

int dp_nft_apply(struct dp_nft *nft, const struct dp_ruleset *rs, char **ret_error)
{
	/* What the last apply left is known: only what differs from it is
	 * sent, and the running table is listed (as costly as replacing it
	 * whole) only when that fails, because something else changed it. */
	int r = -ESTALE;
	if (nft->have_last) {
		char *tx = NULL;
		r = dp_ruleset_delta(&nft->last, rs, &tx);
		if (r == 0) {
			log_debug("nft transaction:\n%s", tx);
			r = run(nft, tx, false, NULL, NULL);
			if (r < 0)
				log_debug("nft: the change from what was last applied failed");
		}
		free(tx);
	}
	if (r < 0)
		r = replace(nft, rs, ret_error);
	dp_nft_forget(nft);
	if (r == 0 && dp_ruleset_copy(rs, &nft->last) == 0)
		nft->have_last = true;
	if (r == 0)
		dp_nft_genid(&dp_own_genid);
	return r;
}

struct genid {
	uint32_t id;
	bool found;
};

static int genid_attr(const struct nlattr *a, void *data)
{
	struct genid *g = data;
	if (mnl_attr_get_type(a) == NFTA_GEN_ID && mnl_attr_validate(a, MNL_TYPE_U32) == 0)
		*g = (struct genid){.id = ntohl(mnl_attr_get_u32(a)), .found = true};
	return MNL_CB_OK;
}

static int genid_msg(const struct nlmsghdr *nlh, void *data)
{
	if (nlh->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN))
		return MNL_CB_OK;
	return mnl_attr_parse(nlh, sizeof(struct nfgenmsg), genid_attr, data);
}

int dp_nft_genid(uint32_t *ret)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!nl)
		return -errno;
	char buf[8192];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = 1;
	struct nfgenmsg *m = mnl_nlmsg_put_extra_header(nlh, sizeof(*m));
	*m = (struct nfgenmsg){.nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0};
	struct genid g = {0};
	ssize_t n = -1;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0 &&
	    mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) >= 0)
		n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	int r = n < 0 ? -errno : 0;
	if (r == 0 && mnl_cb_run(buf, (size_t)n, 1, mnl_socket_get_portid(nl), genid_msg, &g) < 0)
		r = errno ? -errno : -EIO;
	mnl_socket_close(nl);
	if (r == 0 && !g.found)
		r = -EPROTO;
	if (r == 0)
		*ret = g.id;
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
