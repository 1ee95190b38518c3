/* Composing the datapath's ruleset (ruleset.h): its own counters and base
 * chains (the guest's forwarding and anti-spoofing), the fragments' rules at
 * their points and their own chains; rendering it in nft's language and the
 * transaction that replaces the running table. */
#include "ruleset.h"
#include "lib/addr.h"
#include "lib/array.h"

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

/* The composition under way: the first failure is kept, so the steps read
 * as a list and no errno is ever combined with another. */
struct compose {
	struct dp_ruleset *rs;
	const struct dp_config *cfg;
	const struct dp_fragment *const *frags;
	size_t n;
	int status;
};

static void fail(struct compose *c, int r)
{
	if (r < 0 && c->status == 0)
		c->status = r;
}

static bool has_chain(const struct dp_ruleset *rs, const char *name)
{
	for (size_t i = 0; i < rs->n_chains; i++)
		if (strcmp(rs->chains[i].name, name) == 0)
			return true;
	for (size_t i = 0; i < rs->n_netdev; i++)
		if (strcmp(rs->netdev[i].name, name) == 0)
			return true;
	return false;
}

/* A new chain of @rs, in the inet table or (@netdev) the netdev one; valid
 * until the next new_chain(). */
static struct dp_chain *new_chain(struct compose *c, bool netdev, const struct dp_chain *like)
{
	size_t *n = netdev ? &c->rs->n_netdev : &c->rs->n_chains;
	size_t *cap = netdev ? &c->rs->cap_netdev : &c->rs->cap_chains;
	struct dp_chain **v = netdev ? &c->rs->netdev : &c->rs->chains;
	if (has_chain(c->rs, like->name)) {
		fail(c, -EEXIST);
		return NULL;
	}
	if (array_reserve((void **)v, cap, *n + 1, sizeof(**v)) < 0) {
		fail(c, -ENOMEM);
		return NULL;
	}
	struct dp_chain *ch = &(*v)[(*n)++];
	*ch = *like;
	ch->rules = (struct dp_rules){0};
	return ch;
}

static void rule(struct compose *c, struct dp_chain *ch, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rule(struct compose *c, struct dp_chain *ch, const char *fmt, ...)
{
	if (c->status < 0 || !ch)
		return;
	char *text = NULL;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (r < 0) {
		fail(c, -ENOMEM);
		return;
	}
	fail(c, dp_rules_add(&ch->rules, "%s", text));
	free(text);
}

/* Every fragment's rules at @at, in order. */
static void point(struct compose *c, struct dp_chain *ch, enum dp_point at)
{
	for (size_t i = 0; i < c->n; i++)
		for (size_t j = 0; c->frags[i] && j < c->frags[i]->at[at].n; j++)
			rule(c, ch, "%s", c->frags[i]->at[at].v[j]);
}

/* Each guard, for @iif. */
static void guards_for(struct compose *c, struct dp_chain *fwd, const char *iif)
{
	for (size_t i = 0; i < c->n; i++)
		for (size_t j = 0; c->frags[i] && j < c->frags[i]->guards.n; j++)
			rule(c, fwd, "iifname \"%s\" oifname \"%s\" %s counter drop", iif,
			     c->cfg->uplink_if, c->frags[i]->guards.v[j]);
}

/* The guards, for the guest and then for each forwarded link. */
static void guards(struct compose *c, struct dp_chain *fwd)
{
	guards_for(c, fwd, c->cfg->guest_if);
	for (size_t i = 0; i < c->n; i++)
		for (size_t j = 0; c->frags[i] && j < c->frags[i]->n_links; j++) {
			const struct dp_link *l = &c->frags[i]->links[j];
			if (l->present && l->forwarded)
				guards_for(c, fwd, l->name);
		}
}

static void counter(struct compose *c, const char *name)
{
	struct dp_ruleset *rs = c->rs;
	if (dp_ruleset_has(rs, "counter", name))
		fail(c, -EEXIST);
	else if (ARRAY_RESERVE(rs->counters, rs->cap_counters, rs->n_counters + 1) < 0)
		fail(c, -ENOMEM);
	else
		snprintf(rs->counters[rs->n_counters++], DP_NAME_MAX, "%s", name);
}

static void counters(struct compose *c)
{
	for (int i = 0; i < DP_COUNTER_MAX; i++)
		counter(c, counter_names[i]);
	for (size_t i = 0; i < c->n; i++)
		for (size_t j = 0; c->frags[i] && j < c->frags[i]->n_counters; j++)
			counter(c, c->frags[i]->counters[j]);
}

static void sets(struct compose *c)
{
	struct dp_ruleset *rs = c->rs;
	for (size_t i = 0; i < c->n; i++)
		for (size_t j = 0; c->frags[i] && j < c->frags[i]->n_sets; j++) {
			const struct dp_set *s = &c->frags[i]->sets[j];
			if (dp_ruleset_has(rs, "set", s->name) ||
			    dp_ruleset_has(rs, "map", s->name))
				fail(c, -EEXIST);
			else if (ARRAY_RESERVE(rs->sets, rs->cap_sets, rs->n_sets + 1) < 0)
				fail(c, -ENOMEM);
			else
				rs->sets[rs->n_sets++] = *s;
		}
}

/* Forwarding: only the guest's own address leaves the guest link, and only
 * packets for it enter; everything else forwarded is dropped. The table
 * stays when ettmd stops, so the host keeps working with the last rules
 * (fail-static). Traffic for the AEE itself (its services) is accepted, but
 * not from a forged guest source. */
static void base_chains(struct compose *c)
{
	char guest[ADDR_STR_MAX];
	const char *g = c->cfg->guest_if, *u = c->cfg->uplink_if;
	addr_format(c->cfg->guest_addr, guest);

	struct dp_chain *fwd = new_chain(
	    c, false, &(struct dp_chain){.name = "forward", .hook = "forward", .policy = "drop"});
	guards(c, fwd);
	rule(c, fwd, "iifname \"%s\" oifname \"%s\" ip saddr %s counter name \"guest_tx\" accept",
	     g, u, guest);
	point(c, fwd, DP_FORWARD_OUT);
	rule(c, fwd, "iifname \"%s\" counter name \"spoofed\" drop", g);
	rule(c, fwd, "iifname \"%s\" oifname \"%s\" ip daddr %s counter name \"guest_rx\" accept",
	     u, g, guest);
	point(c, fwd, DP_FORWARD_IN);

	struct dp_chain *in = new_chain(
	    c, false, &(struct dp_chain){.name = "input", .hook = "input", .policy = "accept"});
	rule(c, in, "iifname \"%s\" ip saddr != %s counter name \"spoofed\" drop", g, guest);
	rule(c, in, "iifname \"%s\" meta nfproto ipv6 counter name \"spoofed\" drop", g);
	point(c, in, DP_INPUT);
}

/* The fragments' own chains, and the uplink's ingress chain first in the
 * netdev table. */
static void own_chains(struct compose *c)
{
	struct dp_chain ingress = {.name = "ingress", .hook = "ingress", .policy = "accept"};
	snprintf(ingress.device, sizeof(ingress.device), "%s", c->cfg->uplink_if);
	point(c, new_chain(c, true, &ingress), DP_INGRESS);
	for (size_t i = 0; i < c->n; i++)
		for (size_t j = 0; c->frags[i] && j < c->frags[i]->n_chains; j++) {
			const struct dp_chain *from = c->frags[i]->chains[j];
			struct dp_chain *to = new_chain(c, from->device[0] != '\0', from);
			for (size_t k = 0; to && k < from->rules.n; k++)
				rule(c, to, "%s", from->rules.v[k]);
		}
}

int dp_ruleset_compose(const struct dp_config *cfg, const struct dp_fragment *const *frags,
                       size_t n, struct dp_ruleset *ret_rs)
{
	struct dp_ruleset *rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	struct compose c = {.rs = rs, .cfg = cfg, .frags = frags, .n = n};
	for (size_t i = 0; i < n; i++)
		if (frags[i])
			fail(&c, frags[i]->status);
	counters(&c);
	sets(&c);
	base_chains(&c);
	own_chains(&c);
	if (c.status < 0) {
		dp_ruleset_free(rs);
		free(rs);
		return c.status;
	}
	*ret_rs = *rs;
	free(rs);
	return 0;
}

void dp_ruleset_free(struct dp_ruleset *rs)
{
	if (!rs)
		return;
	for (size_t i = 0; i < rs->n_chains; i++)
		dp_rules_free(&rs->chains[i].rules);
	for (size_t i = 0; i < rs->n_netdev; i++)
		dp_rules_free(&rs->netdev[i].rules);
	free(rs->counters);
	free(rs->sets);
	free(rs->chains);
	free(rs->netdev);
	memset(rs, 0, sizeof(*rs));
}

static void render_chain(const struct dp_chain *c, FILE *out)
{
	fprintf(out, "\tchain %s {\n", c->name);
	if (c->device[0])
		fprintf(out, "\t\ttype filter hook %s device \"%s\" priority filter; policy %s;\n",
		        c->hook ? c->hook : "ingress", c->device, c->policy);
	else if (c->hook)
		fprintf(out, "\t\ttype %s hook %s priority %s; policy %s;\n",
		        c->type ? c->type : "filter", c->hook, c->priority ? c->priority : "filter",
		        c->policy);
	for (size_t j = 0; j < c->rules.n; j++)
		fprintf(out, "\t\t%s\n", c->rules.v[j]);
	fprintf(out, "\t}\n");
}

/* A netdev chain is rendered only with rules in it. */
static bool netdev_has(const struct dp_ruleset *rs, const char *name)
{
	for (size_t i = 0; i < rs->n_netdev; i++)
		if (rs->netdev[i].rules.n && strcmp(rs->netdev[i].name, name) == 0)
			return true;
	return false;
}

static bool netdev_used(const struct dp_ruleset *rs)
{
	for (size_t i = 0; i < rs->n_netdev; i++)
		if (rs->netdev[i].rules.n)
			return true;
	return false;
}

void dp_ruleset_render(const struct dp_ruleset *rs, FILE *out)
{
	fprintf(out, "table %s %s {\n", DP_TABLE_FAMILY, DP_TABLE_NAME);
	for (size_t i = 0; i < rs->n_counters; i++)
		fprintf(out, "\tcounter %s {\n\t}\n", rs->counters[i]);
	for (size_t i = 0; i < rs->n_sets; i++)
		fprintf(out, "\t%s %s {\n\t\t%s\n\t}\n", rs->sets[i].kind, rs->sets[i].name,
		        rs->sets[i].spec);
	for (size_t i = 0; i < rs->n_chains; i++)
		render_chain(&rs->chains[i], out);
	fprintf(out, "}\n");
	if (!netdev_used(rs))
		return;
	fprintf(out, "table netdev %s {\n", DP_TABLE_NAME);
	for (size_t i = 0; i < rs->n_netdev; i++)
		if (rs->netdev[i].rules.n)
			render_chain(&rs->netdev[i], out);
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
	} else if (strcmp(kind, "set") == 0 || strcmp(kind, "map") == 0) {
		for (size_t i = 0; i < rs->n_sets; i++)
			if (strcmp(rs->sets[i].kind, kind) == 0 &&
			    strcmp(rs->sets[i].name, name) == 0)
				return true;
	}
	return false;
}

/* Object kinds of a listed table that ETTM's rulesets use. */
static const char *const listed_kinds[] = {"chain", "counter", "set", "map"};

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
	/* The netdev table holds no state, but it is flushed, not replaced:
	 * a base chain deleted (its hook unregistered) makes the kernel drop
	 * every packet queued to a program in the namespace (the policy's
	 * agent, which would lose the first packets of the flows it judges
	 * at every change). Deleted whole when nothing is left in it. */
	bool netdev = netdev_used(rs);
	fprintf(f, "add table netdev %s\n%s table netdev %s\n", DP_TABLE_NAME,
	        netdev ? "flush" : "delete", DP_TABLE_NAME);

	/* Chains first: a counter, set or map is referenced by rules, which the
	 * flush above already removed, so deleting it afterwards is always
	 * allowed. A set or map kept is declared again alike, with its
	 * elements (a flush empties chains, not sets). */
	for (size_t k = 0; k < sizeof(listed_kinds) / sizeof(listed_kinds[0]); k++) {
		size_t i;
		json_t *item;
		json_array_foreach(json_object_get(root, "nftables"), i, item)
		{
			json_t *obj = json_object_get(item, listed_kinds[k]);
			const char *family = json_string_value(json_object_get(obj, "family"));
			const char *table = json_string_value(json_object_get(obj, "table"));
			const char *name = json_string_value(json_object_get(obj, "name"));
			if (!obj || !family || !table || !name || strcmp(table, DP_TABLE_NAME) != 0)
				continue;
			if (netdev && strcmp(family, "netdev") == 0 &&
			    strcmp(listed_kinds[k], "chain") == 0 && !netdev_has(rs, name))
				fprintf(f, "delete chain netdev %s %s\n", DP_TABLE_NAME, name);
			if (strcmp(family, DP_TABLE_FAMILY) != 0)
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

int dp_ruleset_copy(const struct dp_ruleset *rs, struct dp_ruleset *ret)
{
	struct dp_ruleset c = {0};
	int r = 0;
	if (rs->n_counters &&
	    (r = ARRAY_RESERVE(c.counters, c.cap_counters, rs->n_counters)) == 0) {
		memcpy(c.counters, rs->counters, rs->n_counters * sizeof(*c.counters));
		c.n_counters = rs->n_counters;
	}
	if (r == 0 && rs->n_sets && (r = ARRAY_RESERVE(c.sets, c.cap_sets, rs->n_sets)) == 0) {
		memcpy(c.sets, rs->sets, rs->n_sets * sizeof(*c.sets));
		c.n_sets = rs->n_sets;
	}
	for (int netdev = 0; r == 0 && netdev < 2; netdev++) {
		const struct dp_chain *from = netdev ? rs->netdev : rs->chains;
		size_t n = netdev ? rs->n_netdev : rs->n_chains;
		struct dp_chain **to = netdev ? &c.netdev : &c.chains;
		size_t *n_to = netdev ? &c.n_netdev : &c.n_chains;
		size_t *cap = netdev ? &c.cap_netdev : &c.cap_chains;
		if (n && (r = array_reserve((void **)to, cap, n, sizeof(**to))) < 0)
			break;
		for (size_t i = 0; r == 0 && i < n; i++) {
			struct dp_chain *ch = &(*to)[(*n_to)++];
			*ch = from[i];
			ch->rules = (struct dp_rules){0};
			for (size_t j = 0; r == 0 && j < from[i].rules.n; j++)
				r = dp_rules_add(&ch->rules, "%s", from[i].rules.v[j]);
		}
	}
	if (r < 0) {
		dp_ruleset_free(&c);
		return r;
	}
	*ret = c;
	return 0;
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_chain(const struct dp_chain *a, const struct dp_chain *b)
{
	if (!same_str(a->type, b->type) || !same_str(a->hook, b->hook) ||
	    !same_str(a->priority, b->priority) || !same_str(a->policy, b->policy) ||
	    strcmp(a->device, b->device) != 0 || a->rules.n != b->rules.n)
		return false;
	for (size_t i = 0; i < a->rules.n; i++)
		if (strcmp(a->rules.v[i], b->rules.v[i]) != 0)
			return false;
	return true;
}

/* The chain of @rs named @name in the inet (or @netdev) table, as rendered:
 * a netdev chain without rules is not there. */
static const struct dp_chain *chain_of(const struct dp_ruleset *rs, bool netdev, const char *name)
{
	const struct dp_chain *v = netdev ? rs->netdev : rs->chains;
	size_t n = netdev ? rs->n_netdev : rs->n_chains;
	for (size_t i = 0; i < n; i++)
		if ((!netdev || v[i].rules.n) && strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

static const struct dp_set *set_of(const struct dp_ruleset *rs, const char *name)
{
	for (size_t i = 0; i < rs->n_sets; i++)
		if (strcmp(rs->sets[i].name, name) == 0)
			return &rs->sets[i];
	return NULL;
}

/* The chains of @to's table (@netdev or inet) that are new or differ from
 * @from's, rendered; with @flush, instead, a flush of each of @from's that
 * @to lacks or changed. */
static void delta_chains(const struct dp_ruleset *from, const struct dp_ruleset *to, bool netdev,
                         bool flush, FILE *f)
{
	const struct dp_ruleset *walk = flush ? from : to;
	const struct dp_chain *v = netdev ? walk->netdev : walk->chains;
	size_t n = netdev ? walk->n_netdev : walk->n_chains;
	const char *family = netdev ? "netdev" : DP_TABLE_FAMILY;
	for (size_t i = 0; i < n; i++) {
		if (netdev && !v[i].rules.n)
			continue;
		const struct dp_chain *other = chain_of(flush ? to : from, netdev, v[i].name);
		if (other && same_chain(other, &v[i]))
			continue;
		if (flush)
			fprintf(f, "flush chain %s %s %s\n", family, DP_TABLE_NAME, v[i].name);
		else
			render_chain(&v[i], f);
	}
}

int dp_ruleset_delta(const struct dp_ruleset *from, const struct dp_ruleset *to, char **ret_text)
{
	for (size_t i = 0; i < to->n_sets; i++) {
		const struct dp_set *was = set_of(from, to->sets[i].name);
		if (was && (strcmp(was->kind, to->sets[i].kind) != 0 ||
		            strcmp(was->spec, to->sets[i].spec) != 0))
			return -ESTALE;
	}
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	bool netdev_was = netdev_used(from), netdev_is = netdev_used(to);
	/* Rules first, as the whole transaction flushes them: a chain, set or
	 * counter deleted below is referenced by no rule left. */
	delta_chains(from, to, false, true, f);
	if (netdev_was && netdev_is)
		delta_chains(from, to, true, true, f);
	else if (netdev_was)
		fprintf(f, "delete table netdev %s\n", DP_TABLE_NAME);
	for (size_t i = 0; i < from->n_chains; i++)
		if (!chain_of(to, false, from->chains[i].name))
			fprintf(f, "delete chain %s %s %s\n", DP_TABLE_FAMILY, DP_TABLE_NAME,
			        from->chains[i].name);
	for (size_t i = 0; netdev_was && netdev_is && i < from->n_netdev; i++)
		if (from->netdev[i].rules.n && !chain_of(to, true, from->netdev[i].name))
			fprintf(f, "delete chain netdev %s %s\n", DP_TABLE_NAME,
			        from->netdev[i].name);
	for (size_t i = 0; i < from->n_counters; i++)
		if (!dp_ruleset_has(to, "counter", from->counters[i]))
			fprintf(f, "delete counter %s %s %s\n", DP_TABLE_FAMILY, DP_TABLE_NAME,
			        from->counters[i]);
	for (size_t i = 0; i < from->n_sets; i++)
		if (!set_of(to, from->sets[i].name))
			fprintf(f, "delete %s %s %s %s\n", from->sets[i].kind, DP_TABLE_FAMILY,
			        DP_TABLE_NAME, from->sets[i].name);
	fprintf(f, "table %s %s {\n", DP_TABLE_FAMILY, DP_TABLE_NAME);
	for (size_t i = 0; i < to->n_counters; i++)
		if (!dp_ruleset_has(from, "counter", to->counters[i]))
			fprintf(f, "\tcounter %s {\n\t}\n", to->counters[i]);
	for (size_t i = 0; i < to->n_sets; i++)
		if (!set_of(from, to->sets[i].name))
			fprintf(f, "\t%s %s {\n\t\t%s\n\t}\n", to->sets[i].kind, to->sets[i].name,
			        to->sets[i].spec);
	delta_chains(from, to, false, false, f);
	fprintf(f, "}\n");
	if (netdev_is) {
		fprintf(f, "table netdev %s {\n", DP_TABLE_NAME);
		delta_chains(netdev_was ? from : &(struct dp_ruleset){0}, to, true, false, f);
		fprintf(f, "}\n");
	}
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	*ret_text = text;
	return 0;
}
