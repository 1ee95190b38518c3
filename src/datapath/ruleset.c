#include "ruleset.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char *const counter_names[DP_COUNTER_MAX] = {
    [DP_COUNTER_GUEST_TX] = "guest_tx",
    [DP_COUNTER_GUEST_RX] = "guest_rx",
    [DP_COUNTER_SPOOFED] = "spoofed",
};

const char *dp_counter_name(enum dp_counter_id id)
{
	return id < DP_COUNTER_MAX ? counter_names[id] : NULL;
}

static struct dp_chain *add_chain(struct dp_ruleset *rs, const char *name, const char *hook,
                                  const char *policy)
{
	struct dp_chain *c = &rs->chains[rs->n_chains++];
	*c = (struct dp_chain){.name = name, .hook = hook, .policy = policy};
	return c;
}

static int add_rule(struct dp_chain *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int add_rule(struct dp_chain *c, const char *fmt, ...)
{
	if (c->n_rules >= DP_MAX_RULES)
		return -ENOSPC;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&c->rules[c->n_rules], fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	c->n_rules++;
	return 0;
}

int dp_ruleset_build(const struct dp_config *cfg, struct dp_ruleset *ret_rs)
{
	struct dp_ruleset rs = {0};
	char guest[INET_ADDRSTRLEN];
	const char *g = cfg->guest_if, *u = cfg->uplink_if;
	int r = 0;

	inet_ntop(AF_INET, &cfg->guest_addr, guest, sizeof(guest));
	for (int i = 0; i < DP_COUNTER_MAX; i++)
		rs.counters[rs.n_counters++] = counter_names[i];

	/* Forwarding: only the guest's own address leaves the guest link, and
	 * only packets for it enter; everything else forwarded is dropped. The
	 * table stays when ettmd stops, so the host keeps working with the
	 * last rules (fail-static). */
	struct dp_chain *fwd = add_chain(&rs, "forward", "forward", "drop");
	r |= add_rule(fwd,
	              "iifname \"%s\" oifname \"%s\" ip saddr %s counter name \"guest_tx\" accept",
	              g, u, guest);
	r |= add_rule(fwd, "iifname \"%s\" counter name \"spoofed\" drop", g);
	r |= add_rule(fwd,
	              "iifname \"%s\" oifname \"%s\" ip daddr %s counter name \"guest_rx\" accept",
	              u, g, guest);

	/* Traffic for the AEE itself (its services) is accepted, but not from a
	 * forged guest source. */
	struct dp_chain *in = add_chain(&rs, "input", "input", "accept");
	r |= add_rule(in, "iifname \"%s\" ip saddr != %s counter name \"spoofed\" drop", g, guest);
	r |= add_rule(in, "iifname \"%s\" meta nfproto ipv6 counter name \"spoofed\" drop", g);

	if (r != 0) {
		dp_ruleset_free(&rs);
		return -ENOMEM;
	}
	*ret_rs = rs;
	return 0;
}

void dp_ruleset_free(struct dp_ruleset *rs)
{
	if (!rs)
		return;
	for (size_t i = 0; i < rs->n_chains; i++)
		for (size_t j = 0; j < rs->chains[i].n_rules; j++)
			free(rs->chains[i].rules[j]);
	*rs = (struct dp_ruleset){0};
}

void dp_ruleset_render(const struct dp_ruleset *rs, FILE *out)
{
	fprintf(out, "table %s %s {\n", DP_TABLE_FAMILY, DP_TABLE_NAME);
	for (size_t i = 0; i < rs->n_counters; i++)
		fprintf(out, "\tcounter %s {\n\t}\n", rs->counters[i]);
	for (size_t i = 0; i < rs->n_chains; i++) {
		const struct dp_chain *c = &rs->chains[i];
		fprintf(out, "\tchain %s {\n", c->name);
		if (c->hook)
			fprintf(out, "\t\ttype filter hook %s priority filter; policy %s;\n",
			        c->hook, c->policy);
		for (size_t j = 0; j < c->n_rules; j++)
			fprintf(out, "\t\t%s\n", c->rules[j]);
		fprintf(out, "\t}\n");
	}
	fprintf(out, "}\n");
}

int dp_ruleset_render_string(const struct dp_ruleset *rs, char **ret_text)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	dp_ruleset_render(rs, f);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	*ret_text = text;
	return 0;
}

bool dp_ruleset_has(const struct dp_ruleset *rs, const char *kind, const char *name)
{
	if (strcmp(kind, "counter") == 0) {
		for (size_t i = 0; i < rs->n_counters; i++)
			if (strcmp(rs->counters[i], name) == 0)
				return true;
	} else if (strcmp(kind, "chain") == 0) {
		for (size_t i = 0; i < rs->n_chains; i++)
			if (strcmp(rs->chains[i].name, name) == 0)
				return true;
	}
	return false;
}

/* Object kinds of a listed table that ETTM's rulesets use. */
static const char *const listed_kinds[] = {"chain", "counter"};

int dp_ruleset_transaction(const struct dp_ruleset *rs, const char *current_json, char **ret_text)
{
	json_t *root = NULL;
	char *text = NULL;
	size_t len = 0;
	int r = 0;

	if (current_json) {
		root = json_loads(current_json, 0, NULL);
		if (!root || !json_is_array(json_object_get(root, "nftables"))) {
			json_decref(root);
			return -EINVAL;
		}
	}

	FILE *f = open_memstream(&text, &len);
	if (!f) {
		json_decref(root);
		return -ENOMEM;
	}
	fprintf(f, "add table %s %s\n", DP_TABLE_FAMILY, DP_TABLE_NAME);
	fprintf(f, "flush table %s %s\n", DP_TABLE_FAMILY, DP_TABLE_NAME);

	/* Chains first: a counter is referenced by rules, which the flush above
	 * already removed, so deleting it afterwards is always allowed. */
	for (size_t k = 0; k < sizeof(listed_kinds) / sizeof(listed_kinds[0]); k++) {
		size_t i;
		json_t *item;
		json_array_foreach(json_object_get(root, "nftables"), i, item)
		{
			json_t *obj = json_object_get(item, listed_kinds[k]);
			const char *family = json_string_value(json_object_get(obj, "family"));
			const char *table = json_string_value(json_object_get(obj, "table"));
			const char *name = json_string_value(json_object_get(obj, "name"));
			if (!obj || !family || !table || !name)
				continue;
			if (strcmp(family, DP_TABLE_FAMILY) != 0 ||
			    strcmp(table, DP_TABLE_NAME) != 0)
				continue;
			if (dp_ruleset_has(rs, listed_kinds[k], name))
				continue;
			fprintf(f, "delete %s %s %s %s\n", listed_kinds[k], DP_TABLE_FAMILY,
			        DP_TABLE_NAME, name);
		}
	}
	dp_ruleset_render(rs, f);
	if (fclose(f) != 0)
		r = -ENOMEM;
	json_decref(root);
	if (r < 0) {
		free(text);
		return r;
	}
	*ret_text = text;
	return 0;
}
