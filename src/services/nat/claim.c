/* Claiming and reclaiming NAT's port blocks (nat-internal.h, docs/nat.md):
 * each host claims another block when it holds none or uses more than 3/4
 * of its ports; the leader gives a departed host's blocks and mappings back
 * once it has been gone for the grace period (its connections may come back
 * with it). */
#include <inttypes.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "services/nat/nat-internal.h"
#include "services/nat/tables.h"
#include "store/store.h"
#include "trust/tables.h"

#define SHORT_NUM 3 /* claim another block above 3/4 in use */
#define SHORT_DEN 4

/* ---- this host's blocks ---- */

static void claim_done(void *userdata, int status, const struct store_result *res,
                       const char *error)
{
	struct nat *n = userdata;
	n->claiming = false;
	if (status < 0)
		log_debug("nat: block claim not committed: %s", error);
	else if (!res->applied)
		log_info("nat: block claim refused: %s", res->reason); /* raced; next tick */
}

static void claim_block(struct nat *n)
{
	uint16_t start;
	if (n->claiming)
		return;
	if (nat_block_pick(nat_state(n), &n->o, &start) < 0) {
		if (!n->exhausted)
			log_warn("nat: no free block of %u ports left", n->o.block_size);
		n->exhausted = true;
		return;
	}
	n->exhausted = false;
	struct store_cmd cmd = {.table = NAT_BLOCKS, .op = STORE_PUT, .time_ms = wall_ms()};
	(*STORE_CMD_ROW(&cmd, struct nat_block)) =
	    (struct nat_block){.start = start,
	                       .size = (uint16_t)n->o.block_size,
	                       .owner = n->self,
	                       .claimed_ms = cmd.time_ms};
	log_info("nat: claiming ports %u-%u", start, start + n->o.block_size - 1);
	if (store_propose(n->store, &cmd, claim_done, n) == 0)
		n->claiming = true;
}

static bool admitted(struct nat *n)
{
	return trust_admission_find(nat_state(n), n->name) != NULL;
}

void nat_claim_check(struct nat *n)
{
	if (!n->synced || !admitted(n) || !store_member_find(nat_state(n), n->self))
		return;
	size_t held = nat_blocks_of(nat_state(n), n->self);
	n->in_use = nat_usage_count(n);
	if (held == 0 || (n->in_use >= 0 && (unsigned long)n->in_use * SHORT_DEN >=
	                                        (unsigned long)held * n->o.block_size * SHORT_NUM))
		claim_block(n);
}

/* ---- departed hosts' blocks and mappings ---- */

static void reclaim_done(void *userdata, int status, const struct store_result *res,
                         const char *error)
{
	struct nat *n = userdata;
	(void)res;
	(void)error;
	(void)status;
	n->reclaiming = false;
}

/* A member that is gone, or no longer admitted. */
static bool departed(struct nat *n, uint64_t owner)
{
	const struct store_member *m = store_member_find(nat_state(n), owner);
	return !m || !trust_admission_find(nat_state(n), m->name);
}

static struct nat_orphan *orphan(struct nat *n, uint64_t owner)
{
	for (unsigned i = 0; i < n->n_orphans; i++)
		if (n->orphans[i].owner == owner)
			return &n->orphans[i];
	if (n->n_orphans == NAT_ORPHANS_MAX)
		return NULL;
	n->orphans[n->n_orphans] = (struct nat_orphan){owner, uv_now(n->loop)};
	return &n->orphans[n->n_orphans++];
}

/* Whether @owner's rows are due to go back: departed for the grace period. */
static bool reclaim_due(struct nat *n, uint64_t owner)
{
	struct nat_orphan *o = departed(n, owner) ? orphan(n, owner) : NULL;
	return o && uv_now(n->loop) - o->since_ms >= n->o.reclaim_after_ms;
}

/* Forgets the orphans that came back. */
static void forget_returned(struct nat *n)
{
	for (unsigned i = 0; i < n->n_orphans;)
		if (!departed(n, n->orphans[i].owner))
			n->orphans[i] = n->orphans[--n->n_orphans];
		else
			i++;
}

/* The deletion of the first block, else the last mapping, that is due into
 * @cmd (cmd->table stays 0 when none is). */
static void reclaim_pick(struct nat *n, struct store_cmd *cmd)
{
	const struct store_state *st = nat_state(n);
	for (size_t i = 0; i < store_count(st, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
		if (reclaim_due(n, b->owner)) {
			cmd->table = NAT_BLOCKS;
			(*STORE_CMD_ROW(cmd, struct nat_block)) = *b;
			return;
		}
	}
	for (size_t i = 0; i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		if (reclaim_due(n, m->owner)) {
			cmd->table = NAT_MAPPINGS;
			(*STORE_CMD_ROW(cmd, struct nat_mapping)) = *m;
		}
	}
}

void nat_claim_reclaim(struct nat *n)
{
	if (!store_is_leader(n->store)) {
		n->n_orphans = 0;
		return;
	}
	forget_returned(n);
	if (n->reclaiming)
		return;
	struct store_cmd cmd = {.op = STORE_DELETE, .time_ms = wall_ms()};
	reclaim_pick(n, &cmd);
	if (!cmd.table)
		return;
	bool block = cmd.table == NAT_BLOCKS;
	log_info("nat: member %" PRIu64 " departed %u ms ago: giving its %s back",
	         block ? STORE_CMD_ROW(&cmd, struct nat_block)->owner
	               : STORE_CMD_ROW(&cmd, struct nat_mapping)->owner,
	         n->o.reclaim_after_ms, block ? "block" : "mapping");
	if (store_propose(n->store, &cmd, reclaim_done, n) == 0)
		n->reclaiming = true;
}
