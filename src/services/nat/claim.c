/* Claiming and reclaiming NAT's port blocks (nat-internal.h, docs/nat.md):
 * each host claims more blocks when it holds none or uses more than 3/4
 * of its ports, as many at once as its use and its growth call for; the
 * leader gives a departed host's blocks and mappings back
 * once it has been gone for the grace period (its connections may come back
 * with it). */
#include <inttypes.h>
#include <stdint.h>

#include "lib/array.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "datapath/conntrack.h"
#include "services/nat/nat-internal.h"
#include "services/nat/tables.h"
#include "store/store.h"
#include "trust/tables.h"

#define CLAIM_MAX         16  /* blocks one claim asks for at most */
#define CLAIM_AHEAD_MS    250 /* room for this long of the use's growth */
#define CLAIM_RATE_MIN_MS 50  /* the shortest interval a growth rate is taken over */

/* ---- this host's blocks ---- */

static void claim_done(void *userdata, int status, const struct store_result *res,
                       const char *error)
{
	struct nat *n = userdata;
	n->claiming--;
	if (status < 0)
		log_debug("nat: block claim not committed: %s", error);
	else if (!res->applied)
		log_info("nat: block claim refused: %s", res->reason); /* raced; counted again */
}

/* Proposes @want blocks at once, each its own command: the store applies
 * them in one order and refuses any that another host took first. */
static void claim_blocks(struct nat *n, size_t want)
{
	uint16_t starts[CLAIM_MAX];
	size_t k =
	    nat_blocks_pick(nat_state(n), &n->o, starts, want < CLAIM_MAX ? want : CLAIM_MAX);
	if (k == 0) {
		if (!n->exhausted)
			log_warn("nat: no free block of %u ports left", n->o.block_size);
		n->exhausted = true;
		return;
	}
	n->exhausted = false;
	for (size_t i = 0; i < k; i++) {
		struct store_cmd cmd = {.table = NAT_BLOCKS, .op = STORE_PUT, .time_ms = wall_ms()};
		(*STORE_CMD_ROW(&cmd, struct nat_block)) =
		    (struct nat_block){.start = starts[i],
		                       .size = (uint16_t)n->o.block_size,
		                       .owner = n->self,
		                       .claimed_ms = cmd.time_ms};
		log_info("nat: claiming ports %u-%u", starts[i], starts[i] + n->o.block_size - 1);
		if (store_propose(n->store, &cmd, claim_done, n) == 0)
			n->claiming++;
	}
}

static bool admitted(struct nat *n)
{
	return trust_admission_find(nat_state(n), n->name) != NULL;
}

void nat_claim_check(struct nat *n)
{
	if (n->claiming || !n->synced || !admitted(n) || !store_member_find(nat_state(n), n->self))
		return;
	size_t held = nat_blocks_of(nat_state(n), n->self);
	/* The exact count reads the kernel's whole conntrack table, every
	 * namespace's entries (ctnetlink filters them one by one), so on a
	 * machine of many AEEs each count costs as much as all of them: skip
	 * it while this namespace has fewer entries than 3/4 of the ports held,
	 * where no count could want a block. A burst that crosses 3/4 is seen
	 * by the watch (nat.c) within WATCH_MS, and counted from there. */
	unsigned long total;
	if (held && dp_conntrack_total(&total) == 0 &&
	    total * 4 < held * (unsigned long)n->o.block_size * 3) {
		n->growing = false;
		return;
	}
	long before = n->in_use;
	uint64_t now = uv_now(n->loop), since = now - n->counted_ms;
	n->in_use = nat_usage_count(n);
	n->counted_ms = now;
	if (n->in_use < 0) {
		if (held == 0)
			claim_blocks(n, 1);
		return;
	}
	/* What the use will have grown by when new blocks are applied, at the
	 * rate it grew since the last count, once it has grown at two counts
	 * in a row (a burst under way, not one step up). */
	unsigned long ahead = 0;
	bool grows = before >= 0 && n->in_use > before;
	if (grows && n->growing)
		ahead = (unsigned long)(n->in_use - before) * CLAIM_AHEAD_MS /
		        (since > CLAIM_RATE_MIN_MS ? since : CLAIM_RATE_MIN_MS);
	n->growing = grows;
	size_t want = nat_blocks_wanted(held, n->o.block_size, (unsigned long)n->in_use, ahead);
	if (want)
		claim_blocks(n, want);
}

bool nat_claim_soon(struct nat *n, unsigned long total)
{
	unsigned long ports = nat_blocks_of(nat_state(n), n->self) * (unsigned long)n->o.block_size;
	/* Not again for a table that has not grown by an eighth of a block
	 * since the last look: flows that are not translated count too. */
	return ports && !n->claiming && total * 4 >= ports * 3 &&
	       total >= n->watched + n->o.block_size / 8;
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
	for (size_t i = 0; i < n->n_orphans; i++)
		if (n->orphans[i].owner == owner)
			return &n->orphans[i];
	if (ARRAY_RESERVE(n->orphans, n->cap_orphans, n->n_orphans + 1) < 0)
		return NULL; /* out of memory: seen again at the next tick */
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
	for (size_t i = 0; i < n->n_orphans;)
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
