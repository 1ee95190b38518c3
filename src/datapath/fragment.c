/* Building fragments (fragment.h): the helpers a service's renderer calls,
 * each keeping the first failure in the fragment. */
#include "fragment.h"
#include "lib/addr.h"
#include "lib/array.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int keep(struct dp_fragment *f, int r)
{
	if (r < 0 && f->status == 0)
		f->status = r;
	return r;
}

static int rules_addv(struct dp_rules *r, const char *fmt, va_list ap)
{
	if (ARRAY_RESERVE(r->v, r->cap, r->n + 1) < 0)
		return -ENOMEM;
	if (vasprintf(&r->v[r->n], fmt, ap) < 0) {
		r->v[r->n] = NULL;
		return -ENOMEM;
	}
	r->n++;
	return 0;
}

int dp_fragment_fail(struct dp_fragment *f, int r, const char *fmt, ...)
{
	if (f->status < 0)
		return r;
	f->status = r;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&f->error, fmt, ap) < 0)
		f->error = NULL;
	va_end(ap);
	return r;
}

int dp_rules_add(struct dp_rules *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int ret = rules_addv(r, fmt, ap);
	va_end(ap);
	return ret;
}

void dp_rules_free(struct dp_rules *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
	*r = (struct dp_rules){0};
}

int dp_fragment_rule(struct dp_fragment *f, enum dp_point at, const char *fmt, ...)
{
	if (at >= DP_POINT_MAX)
		return keep(f, -EINVAL);
	va_list ap;
	va_start(ap, fmt);
	int r = rules_addv(&f->at[at], fmt, ap);
	va_end(ap);
	return keep(f, r);
}

int dp_fragment_guard(struct dp_fragment *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = rules_addv(&f->guards, fmt, ap);
	va_end(ap);
	return keep(f, r);
}

static int add_chain(struct dp_fragment *f, const char *name, struct dp_chain **ret_chain)
{
	if (strlen(name) >= DP_NAME_MAX)
		return keep(f, -EINVAL);
	struct dp_chain *c = calloc(1, sizeof(*c));
	if (!c || ARRAY_RESERVE(f->chains, f->cap_chains, f->n_chains + 1) < 0) {
		free(c);
		return keep(f, -ENOMEM);
	}
	f->chains[f->n_chains++] = c;
	snprintf(c->name, sizeof(c->name), "%s", name);
	*ret_chain = c;
	return 0;
}

int dp_fragment_chain(struct dp_fragment *f, const char *name, const char *type, const char *hook,
                      const char *priority, const char *policy, struct dp_chain **ret_chain)
{
	struct dp_chain *c;
	int r = add_chain(f, name, &c);
	if (r < 0)
		return r;
	c->type = type;
	c->hook = hook;
	c->priority = priority;
	c->policy = policy;
	*ret_chain = c;
	return 0;
}

static int netdev_chain(struct dp_fragment *f, const char *name, const char *device,
                        const char *hook, const char *policy, struct dp_chain **ret_chain)
{
	if (strlen(device) >= IF_NAMESIZE)
		return keep(f, -EINVAL);
	struct dp_chain *c;
	int r = add_chain(f, name, &c);
	if (r < 0)
		return r;
	c->hook = hook;
	c->policy = policy;
	snprintf(c->device, sizeof(c->device), "%s", device);
	*ret_chain = c;
	return 0;
}

int dp_fragment_netdev_chain(struct dp_fragment *f, const char *name, const char *device,
                             const char *policy, struct dp_chain **ret_chain)
{
	return netdev_chain(f, name, device, "ingress", policy, ret_chain);
}

int dp_fragment_netdev_egress_chain(struct dp_fragment *f, const char *name, const char *device,
                                    const char *policy, struct dp_chain **ret_chain)
{
	return netdev_chain(f, name, device, "egress", policy, ret_chain);
}

int dp_fragment_chain_rule(struct dp_fragment *f, struct dp_chain *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = rules_addv(&c->rules, fmt, ap);
	va_end(ap);
	return keep(f, r);
}

int dp_fragment_counter(struct dp_fragment *f, const char *name)
{
	if (strlen(name) >= DP_NAME_MAX)
		return keep(f, -EINVAL);
	if (ARRAY_RESERVE(f->counters, f->cap_counters, f->n_counters + 1) < 0)
		return keep(f, -ENOMEM);
	snprintf(f->counters[f->n_counters++], DP_NAME_MAX, "%s", name);
	return 0;
}

int dp_fragment_set(struct dp_fragment *f, const char *kind, const char *name, const char *spec)
{
	if ((strcmp(kind, "set") != 0 && strcmp(kind, "map") != 0) || strlen(name) >= DP_NAME_MAX ||
	    strlen(spec) >= DP_SET_SPEC_MAX)
		return keep(f, -EINVAL);
	if (ARRAY_RESERVE(f->sets, f->cap_sets, f->n_sets + 1) < 0)
		return keep(f, -ENOMEM);
	struct dp_set *s = &f->sets[f->n_sets];
	s->kind = strcmp(kind, "set") == 0 ? "set" : "map";
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->spec, sizeof(s->spec), "%s", spec);
	f->n_sets++;
	return 0;
}

int dp_fragment_link(struct dp_fragment *f, const struct dp_link *link)
{
	if (ARRAY_RESERVE(f->links, f->cap_links, f->n_links + 1) < 0)
		return keep(f, -ENOMEM);
	int r = dp_link_copy(&f->links[f->n_links], link);
	if (r < 0)
		return keep(f, r);
	f->n_links++;
	return 0;
}

int dp_link_add_host(struct dp_link *link, struct in_addr addr, const uint8_t mac[6])
{
	if (ARRAY_RESERVE(link->hosts, link->cap_hosts, link->n_hosts + 1) < 0)
		return -ENOMEM;
	struct dp_host *h = &link->hosts[link->n_hosts++];
	h->addr = addr;
	memcpy(h->mac, mac, 6);
	return 0;
}

int dp_link_copy(struct dp_link *to, const struct dp_link *from)
{
	struct dp_host *hosts = NULL;
	if (from->n_hosts) {
		hosts = calloc(from->n_hosts, sizeof(*hosts));
		if (!hosts)
			return -ENOMEM;
		memcpy(hosts, from->hosts, from->n_hosts * sizeof(*hosts));
	}
	*to = *from;
	to->hosts = hosts;
	to->cap_hosts = from->n_hosts;
	return 0;
}

void dp_link_free(struct dp_link *link)
{
	if (!link)
		return;
	free(link->hosts);
	link->hosts = NULL;
	link->n_hosts = link->cap_hosts = 0;
}

int dp_fragment_sysctl(struct dp_fragment *f, const char *path, const char *value)
{
	struct dp_sysctl *s;
	if (strlen(path) >= sizeof(s->path) || strlen(value) >= sizeof(s->value) ||
	    strstr(path, ".."))
		return keep(f, -EINVAL);
	if (ARRAY_RESERVE(f->sysctls, f->cap_sysctls, f->n_sysctls + 1) < 0)
		return keep(f, -ENOMEM);
	s = &f->sysctls[f->n_sysctls];
	snprintf(s->path, sizeof(s->path), "%s", path);
	snprintf(s->value, sizeof(s->value), "%s", value);
	f->n_sysctls++;
	return 0;
}

void dp_fragment_free(struct dp_fragment *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < DP_POINT_MAX; i++)
		dp_rules_free(&f->at[i]);
	dp_rules_free(&f->guards);
	for (size_t i = 0; i < f->n_chains; i++) {
		dp_rules_free(&f->chains[i]->rules);
		free(f->chains[i]);
	}
	free(f->chains);
	free(f->counters);
	for (size_t i = 0; i < f->n_links; i++)
		dp_link_free(&f->links[i]);
	free(f->links);
	free(f->sysctls);
	free(f->sets);
	free(f->error);
	memset(f, 0, sizeof(*f));
}

void dp_config_prefix(const struct dp_config *cfg, char net[ADDR_STR_MAX])
{
	uint32_t mask = cfg->control_plen ? htonl(~0u << (32 - cfg->control_plen)) : 0;
	struct in_addr inside = {cfg->control_addr.s_addr & mask};
	addr_format(inside, net);
}
