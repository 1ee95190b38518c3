/* Building fragments (fragment.h): the helpers a service's renderer calls,
 * each keeping the first failure in the fragment. */
#include "fragment.h"
#include "lib/addr.h"

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
	if (r->n >= DP_MAX_RULES)
		return -ENOSPC;
	if (vasprintf(&r->v[r->n], fmt, ap) < 0) {
		r->v[r->n] = NULL;
		return -ENOMEM;
	}
	r->n++;
	return 0;
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
	if (f->n_chains >= DP_FRAGMENT_CHAINS)
		return keep(f, -ENOSPC);
	if (strlen(name) >= DP_NAME_MAX)
		return keep(f, -EINVAL);
	struct dp_chain *c = &f->chains[f->n_chains++];
	*c = (struct dp_chain){0};
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
	if (f->n_counters >= DP_FRAGMENT_COUNTERS)
		return keep(f, -ENOSPC);
	if (strlen(name) >= DP_NAME_MAX)
		return keep(f, -EINVAL);
	snprintf(f->counters[f->n_counters++], DP_NAME_MAX, "%s", name);
	return 0;
}

int dp_fragment_set(struct dp_fragment *f, const char *kind, const char *name, const char *spec)
{
	if (f->n_sets >= DP_FRAGMENT_SETS)
		return keep(f, -ENOSPC);
	struct dp_set *s = &f->sets[f->n_sets];
	if ((strcmp(kind, "set") != 0 && strcmp(kind, "map") != 0) ||
	    strlen(name) >= sizeof(s->name) || strlen(spec) >= sizeof(s->spec))
		return keep(f, -EINVAL);
	s->kind = strcmp(kind, "set") == 0 ? "set" : "map";
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->spec, sizeof(s->spec), "%s", spec);
	f->n_sets++;
	return 0;
}

int dp_fragment_link(struct dp_fragment *f, const struct dp_link *link)
{
	if (f->n_links >= DP_FRAGMENT_LINKS)
		return keep(f, -ENOSPC);
	if (link->n_hosts > DP_LINK_HOSTS_MAX)
		return keep(f, -EINVAL);
	f->links[f->n_links++] = *link;
	return 0;
}

int dp_fragment_sysctl(struct dp_fragment *f, const char *path, const char *value)
{
	if (f->n_sysctls >= DP_FRAGMENT_SYSCTLS)
		return keep(f, -ENOSPC);
	struct dp_sysctl *s = &f->sysctls[f->n_sysctls];
	if (strlen(path) >= sizeof(s->path) || strlen(value) >= sizeof(s->value) ||
	    strstr(path, ".."))
		return keep(f, -EINVAL);
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
	for (size_t i = 0; i < f->n_chains; i++)
		dp_rules_free(&f->chains[i].rules);
	memset(f, 0, sizeof(*f));
}

void dp_config_prefix(const struct dp_config *cfg, char net[ADDR_STR_MAX])
{
	uint32_t mask = cfg->control_plen ? htonl(~0u << (32 - cfg->control_plen)) : 0;
	struct in_addr inside = {cfg->control_addr.s_addr & mask};
	addr_format(inside, net);
}
