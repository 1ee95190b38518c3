/* The datapath's sources and its reconciliation (datapath.h): compose every
 * source's fragment, set up the links they ask for, apply the table, and
 * count generations. */
#include "datapath.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "datapath-internal.h"
#include "lib/addr.h"
#include "lib/array.h"

#define GENERATION_FILE "datapath.generation"

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
		char *end = NULL;
		dp->generation = strtoull(text, &end, 10);
		dp->digest = strtoull(end, NULL, 16);
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

static uint64_t digest_of(const char *text)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	return h;
}

/* Counts a new generation when @text differs from the last ruleset applied
 * (by its digest), and records the two. The record is one line of fixed
 * width written in place: no rename() or truncation, whose flush of the
 * file system's journal held the agent's loop for milliseconds at every
 * change. A crash of the machine may lose it; a generation is counted
 * again then, and nothing else depends on it. */
static void record_generation(struct datapath *dp, const char *text)
{
	uint64_t digest = digest_of(text);
	if (dp->generation > 0 && digest == dp->digest)
		return;
	dp->generation++;
	dp->digest = digest;
	char line[64], path[PATH_MAX];
	int n =
	    snprintf(line, sizeof(line), "%020" PRIu64 " %016" PRIx64 "\n", dp->generation, digest);
	snprintf(path, sizeof(path), "%s/%s", dp->state_dir, GENERATION_FILE);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	bool ok = fd >= 0 && pwrite(fd, line, (size_t)n, 0) == n;
	if (fd >= 0)
		close(fd);
	if (!ok)
		log_warn("datapath: cannot record generation %" PRIu64 " in %s", dp->generation,
		         path);
	else
		log_info("datapath: ruleset generation %" PRIu64, dp->generation);
}

int dp_set_source(struct datapath *dp, const char *name, dp_build_fn build, void *userdata)
{
	if (!build || strlen(name) >= sizeof(dp->sources[0].name))
		return -EINVAL;
	size_t i = 0;
	while (i < dp->n_sources && strcmp(dp->sources[i].name, name) != 0)
		i++;
	if (i == dp->n_sources) {
		if (ARRAY_RESERVE(dp->sources, dp->cap_sources, dp->n_sources + 1) < 0)
			return -ENOMEM;
		dp->n_sources++;
		snprintf(dp->sources[i].name, sizeof(dp->sources[i].name), "%s", name);
	}
	dp->sources[i].build = build;
	dp->sources[i].userdata = userdata;
	return 0;
}

void dp_remove_source(struct datapath *dp, const char *name)
{
	for (size_t i = 0; i < dp->n_sources; i++)
		if (strcmp(dp->sources[i].name, name) == 0) {
			memmove(&dp->sources[i], &dp->sources[i + 1],
			        (dp->n_sources - i - 1) * sizeof(dp->sources[0]));
			dp->n_sources--;
			return;
		}
}

/* Every source's fragment, composed: what one reconciliation makes the
 * kernel match. */
struct composed {
	struct dp_fragment **frags; /* one per source */
	size_t n;
	struct dp_ruleset rs;
	bool have_rs;
	const struct dp_gateway *gateway; /* the first source's that sets one */
	bool hold;
	char *text;      /* the ruleset, rendered */
	char *signature; /* the ruleset and every link operation */
};

static void composed_free(struct composed *c)
{
	for (size_t i = 0; i < c->n; i++) {
		dp_fragment_free(c->frags[i]);
		free(c->frags[i]);
	}
	free(c->frags);
	if (c->have_rs)
		dp_ruleset_free(&c->rs);
	free(c->text);
	free(c->signature);
	*c = (struct composed){0};
}

/* The link operations in words: two compositions that print the same ask
 * the kernel for the same. */
static void describe_links(const struct composed *c, FILE *f)
{
	char a[ADDR_STR_MAX];
	fprintf(f, "# hold %d\n", c->hold);
	if (c->gateway)
		fprintf(f, "# gateway %s %02x%02x%02x%02x%02x%02x\n",
		        addr_format(c->gateway->addr, a), c->gateway->mac[0], c->gateway->mac[1],
		        c->gateway->mac[2], c->gateway->mac[3], c->gateway->mac[4],
		        c->gateway->mac[5]);
	for (size_t i = 0; i < c->n; i++) {
		const struct dp_fragment *fr = c->frags[i];
		for (size_t j = 0; j < fr->n_links; j++) {
			const struct dp_link *l = &fr->links[j];
			fprintf(f, "# link %s %s %d %d %02x%02x%02x%02x%02x%02x", l->name, l->peer,
			        l->present, l->forwarded, l->mac[0], l->mac[1], l->mac[2],
			        l->mac[3], l->mac[4], l->mac[5]);
			for (size_t k = 0; k < l->n_hosts; k++)
				fprintf(f, " %s/%02x%02x%02x%02x%02x%02x",
				        addr_format(l->hosts[k].addr, a), l->hosts[k].mac[0],
				        l->hosts[k].mac[1], l->hosts[k].mac[2], l->hosts[k].mac[3],
				        l->hosts[k].mac[4], l->hosts[k].mac[5]);
			fputc('\n', f);
		}
		for (size_t j = 0; j < fr->n_sysctls; j++)
			fprintf(f, "# sysctl %s=%s\n", fr->sysctls[j].path, fr->sysctls[j].value);
	}
}

static int signature(struct composed *c)
{
	size_t len = 0;
	FILE *f = open_memstream(&c->signature, &len);
	if (!f)
		return -ENOMEM;
	fputs(c->text, f);
	describe_links(c, f);
	return fclose(f) == 0 ? 0 : -ENOMEM;
}

/* Builds every source's fragment and composes them. */
static int compose(struct datapath *dp, struct composed *c, char **ret_error)
{
	c->frags = calloc(dp->n_sources ? dp->n_sources : 1, sizeof(*c->frags));
	if (!c->frags)
		return error_set(ret_error, -ENOMEM, "out of memory building the ruleset");
	for (size_t i = 0; i < dp->n_sources; i++) {
		const struct dp_source *s = &dp->sources[i];
		struct dp_fragment *f = calloc(1, sizeof(*f));
		if (!f)
			return error_set(ret_error, -ENOMEM, "out of memory building the ruleset");
		c->frags[c->n++] = f;
		int r = s->build(s->userdata, &dp->cfg, f);
		if (r == 0)
			r = f->status;
		if (r < 0)
			return error_set(ret_error, r, "the %s fragment: %s", s->name,
			                 f->error ? f->error : strerror(-r));
		c->hold = c->hold || f->hold;
		if (!c->gateway && f->gateway.set)
			c->gateway = &f->gateway;
	}
	int r =
	    dp_ruleset_compose(&dp->cfg, (const struct dp_fragment *const *)c->frags, c->n, &c->rs);
	if (r < 0)
		return error_set(ret_error, r, "cannot compose the ruleset: %s", strerror(-r));
	c->have_rs = true;
	r = dp_ruleset_render_string(&c->rs, &c->text);
	if (r == 0)
		r = signature(c);
	if (r < 0)
		return error_set(ret_error, r, "out of memory building the ruleset");
	return 0;
}

static const struct dp_link *linked(const struct datapath *dp, const char *name)
{
	for (size_t i = 0; i < dp->n_linked; i++)
		if (strcmp(dp->linked[i].name, name) == 0)
			return &dp->linked[i];
	return NULL;
}

static bool asked(const struct composed *c, const char *name)
{
	for (size_t i = 0; i < c->n; i++)
		for (size_t j = 0; j < c->frags[i]->n_links; j++)
			if (strcmp(c->frags[i]->links[j].name, name) == 0)
				return true;
	return false;
}

/* The fragments' links, and no longer those no fragment asks for. */
static void linked_free(struct dp_link *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dp_link_free(&v[i]);
	free(v);
}

static int set_links(struct datapath *dp, const struct composed *c, char **ret_error)
{
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < c->n; i++)
		cap += c->frags[i]->n_links;
	struct dp_link *next = calloc(cap ? cap : 1, sizeof(*next));
	if (!next)
		return error_set(ret_error, -ENOMEM, "out of memory setting up links");
	int r = 0;
	for (size_t i = 0; r == 0 && i < dp->n_linked; i++) {
		struct dp_link gone = dp->linked[i];
		if (!gone.present || asked(c, gone.name))
			continue;
		gone.present = false;
		r = dp_link_veth(&dp->linked[i], &gone, ret_error);
	}
	for (size_t i = 0; r == 0 && i < c->n; i++)
		for (size_t j = 0; r == 0 && j < c->frags[i]->n_links; j++) {
			const struct dp_link *l = &c->frags[i]->links[j];
			r = dp_link_veth(linked(dp, l->name), l, ret_error);
			if (r == 0 && (r = dp_link_copy(&next[n], l)) < 0)
				error_set(ret_error, r, "out of memory setting up links");
			if (r == 0)
				n++;
		}
	if (r < 0) {
		linked_free(next, n);
		return r;
	}
	linked_free(dp->linked, dp->n_linked);
	dp->linked = next;
	dp->n_linked = n;
	return 0;
}

static int sysctls(const struct composed *c, char **ret_error)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < c->n; i++)
		r = dp_link_sysctls(c->frags[i]->sysctls, c->frags[i]->n_sysctls, ret_error);
	return r;
}

/* Makes the kernel match @c. */
static int apply(struct datapath *dp, struct composed *c, char **ret_error)
{
	int r = dp_link_setup(&dp->cfg, c->gateway, ret_error);
	if (r == 0)
		r = set_links(dp, c, ret_error);
	if (r < 0)
		return r;
	/* Held: the table from before a restart stays as it was (and is
	 * not changed elsewhere for dp_changed_elsewhere()). */
	if (c->hold && dp_table_present(dp)) {
		dp_nft_genid(&dp_own_genid);
		return 0;
	}
	r = dp_nft_apply(dp->nft, &c->rs, ret_error);
	if (r == 0)
		r = sysctls(c, ret_error);
	if (r < 0)
		return r;
	record_generation(dp, c->text);
	return 0;
}

static int reconcile(struct datapath *dp, bool force)
{
	struct composed c = {0};
	char *error = NULL;
	int r = compose(dp, &c, &error);
	if (force)
		dp_nft_forget(dp->nft);
	if (r == 0 && !force && dp->ok && dp->applied && strcmp(dp->applied, c.signature) == 0) {
		composed_free(&c);
		return 0;
	}
	if (r == 0)
		r = apply(dp, &c, &error);
	free(dp->applied);
	dp->applied = NULL;
	if (r == 0) {
		dp->applied = c.signature;
		c.signature = NULL;
	}
	composed_free(&c);
	set_error(dp, r < 0 ? (error ? error : strdup(strerror(-r))) : NULL);
	return r;
}

int dp_reconcile(struct datapath *dp)
{
	return reconcile(dp, true);
}

int dp_changed(struct datapath *dp)
{
	return reconcile(dp, false);
}

bool dp_changed_elsewhere(struct datapath *dp)
{
	uint32_t id;
	return dp->applied && dp_nft_genid(&id) == 0 && id != dp_own_genid;
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
	linked_free(dp->linked, dp->n_linked);
	free(dp->sources);
	free(dp->applied);
	free(dp->state_dir);
	free(dp->error);
	*dp = (struct datapath){0};
}
