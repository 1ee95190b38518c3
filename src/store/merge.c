/* Merge rules: what becomes of a command that a host applied before a forced
 * recovery, when the new cluster does not have it (docs/store.md). Each
 * table decides for itself; nothing is dropped silently: a command is
 * re-proposed, found already present, or reported as a conflict. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tables.h"

static enum store_merge conflict(char *reason, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum store_merge conflict(char *reason, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, size, fmt, ap);
	va_end(ap);
	return STORE_MERGE_CONFLICT;
}

static const void *find(const struct store_state *s, enum store_table t,
                        int (*same)(const void *row, const struct store_cmd *cmd),
                        const struct store_cmd *cmd)
{
	for (size_t i = 0; i < store_count(s, t); i++) {
		const void *row = store_row(s, t, i);
		if (same(row, cmd))
			return row;
	}
	return NULL;
}

static int same_trusted(const void *row, const struct store_cmd *cmd)
{
	return strcmp(((const struct store_trusted *)row)->digest, cmd->row.trusted.digest) == 0;
}

static int same_admission(const void *row, const struct store_cmd *cmd)
{
	return strcmp(((const struct store_admission *)row)->host, cmd->row.admission.host) == 0;
}

static int same_attestation(const void *row, const struct store_cmd *cmd)
{
	return strcmp(((const struct store_attestation *)row)->host, cmd->row.attestation.host) ==
	       0;
}

static int same_mapping(const void *row, const struct store_cmd *cmd)
{
	const struct store_nat_mapping *m = row;
	return m->proto == cmd->row.nat_mapping.proto &&
	       m->public_port == cmd->row.nat_mapping.public_port;
}

static int same_lease_mac(const void *row, const struct store_cmd *cmd)
{
	return strcmp(((const struct store_lease *)row)->mac, cmd->row.lease.mac) == 0;
}

static int same_lease_addr(const void *row, const struct store_cmd *cmd)
{
	return ((const struct store_lease *)row)->addr == cmd->row.lease.addr;
}

static int same_device(const void *row, const struct store_cmd *cmd)
{
	return strcmp(((const struct store_device *)row)->mac, cmd->row.device.mac) == 0;
}

/* The newer decision about a device wins: an allowance (or its learned
 * place) is re-applied unless the new cluster allowed it again later; a
 * removal unless it was allowed again after it. */
static enum store_merge merge_device(const struct store_state *s, const struct store_cmd *cmd)
{
	const struct store_device *row = find(s, STORE_DEVICES, same_device, cmd);
	if (cmd->op == STORE_DELETE)
		return row && row->allowed_ms <= cmd->time_ms ? STORE_MERGE_APPLY
		                                              : STORE_MERGE_SKIP;
	if (row && row->allowed_ms >= cmd->row.device.allowed_ms)
		return STORE_MERGE_SKIP;
	return STORE_MERGE_APPLY;
}

static bool block_free(const struct store_state *s, uint32_t start, uint32_t size)
{
	for (size_t i = 0; i < store_count(s, STORE_NAT_BLOCKS); i++) {
		const struct store_nat_block *b = store_row(s, STORE_NAT_BLOCKS, i);
		if (b->start < start + size && start < (uint32_t)b->start + b->size)
			return false;
	}
	return true;
}

/* A NAT block claimed on both sides goes to the new cluster's owner; the
 * orphan's owner gets another free block of the same size. */
static enum store_merge merge_nat_block(const struct store_state *s, struct store_cmd *cmd,
                                        char *reason, size_t size)
{
	struct store_nat_block *b = &cmd->row.nat_block;
	if (cmd->op == STORE_DELETE)
		return STORE_MERGE_APPLY; /* a release that finds nothing is rejected harmlessly */
	if (b->size == 0 || (b->size & (b->size - 1)) || b->start % b->size)
		return STORE_MERGE_APPLY; /* not a block: applying rejects it with the reason */
	for (size_t i = 0; i < store_count(s, STORE_NAT_BLOCKS); i++) {
		const struct store_nat_block *o = store_row(s, STORE_NAT_BLOCKS, i);
		if (o->owner == b->owner && o->start == b->start)
			return STORE_MERGE_SKIP;
	}
	if (block_free(s, b->start, b->size))
		return STORE_MERGE_APPLY;
	/* Ports below 1024 are never handed out; blocks stay aligned. */
	uint32_t first = (1024 + (uint32_t)b->size - 1) / b->size * b->size;
	for (uint32_t start = first; start + b->size <= 65536; start += b->size) {
		if (block_free(s, start, b->size)) {
			b->start = (uint16_t)start;
			return STORE_MERGE_APPLY;
		}
	}
	return conflict(reason, size,
	                "NAT block %u/%u of member %llu was claimed on both sides and no free "
	                "block is left",
	                b->start, b->size, (unsigned long long)b->owner);
}

/* The later decision about a host wins: its admission, its attestation. */
static enum store_merge later_wins(const struct store_cmd *cmd, uint64_t row_time, bool exists)
{
	if (exists && row_time >= cmd->time_ms)
		return STORE_MERGE_SKIP;
	if (!exists && cmd->op == STORE_DELETE)
		return STORE_MERGE_SKIP;
	return STORE_MERGE_APPLY;
}

enum store_merge store_merge(const struct store_state *s, struct store_cmd *cmd, char *reason,
                             size_t reason_size)
{
	const void *row;
	switch (cmd->table) {
	case STORE_CLUSTER:
	case STORE_MEMBERS:
	case STORE_CONFLICTS:
	case STORE_LOCATIONS:
	case STORE_LINKS:
	case STORE_MANAGER:
		/* Membership and generations belong to the cluster that is;
		 * topology is learned again by the new master; the new
		 * cluster's leader chooses the devices' manager. */
		return STORE_MERGE_SKIP;
	case STORE_DEVICES:
		return merge_device(s, cmd);
	case STORE_TRUSTED:
		row = find(s, STORE_TRUSTED, same_trusted, cmd);
		return (cmd->op == STORE_PUT) == (row != NULL) ? STORE_MERGE_SKIP
		                                               : STORE_MERGE_APPLY;
	case STORE_ADMISSIONS:
		row = find(s, STORE_ADMISSIONS, same_admission, cmd);
		return later_wins(cmd, row ? ((const struct store_admission *)row)->time_ms : 0,
		                  row != NULL);
	case STORE_ATTESTATIONS:
		row = find(s, STORE_ATTESTATIONS, same_attestation, cmd);
		return later_wins(cmd, row ? ((const struct store_attestation *)row)->time_ms : 0,
		                  row != NULL);
	case STORE_POLICY:
		if (cmd->row.policy.epoch == store_policy(s)->epoch)
			return STORE_MERGE_APPLY;
		return conflict(reason, reason_size,
		                "a policy edit made on epoch %llu meets epoch %llu; review it and "
		                "apply it again by hand",
		                (unsigned long long)cmd->row.policy.epoch,
		                (unsigned long long)store_policy(s)->epoch);
	case STORE_NAT_BLOCKS:
		return merge_nat_block(s, cmd, reason, reason_size);
	case STORE_NAT_MAPPINGS:
		row = find(s, STORE_NAT_MAPPINGS, same_mapping, cmd);
		if (cmd->op == STORE_DELETE)
			return row ? STORE_MERGE_APPLY : STORE_MERGE_SKIP;
		if (!row)
			return STORE_MERGE_APPLY;
		if (((const struct store_nat_mapping *)row)->owner == cmd->row.nat_mapping.owner)
			return STORE_MERGE_SKIP;
		return conflict(reason, reason_size,
		                "public port %u was mapped by member %llu on one side and %llu on "
		                "the other",
		                cmd->row.nat_mapping.public_port,
		                (unsigned long long)((const struct store_nat_mapping *)row)->owner,
		                (unsigned long long)cmd->row.nat_mapping.owner);
	case STORE_LEASES:
		if (cmd->op == STORE_DELETE)
			return find(s, STORE_LEASES, same_lease_mac, cmd) ? STORE_MERGE_APPLY
			                                                  : STORE_MERGE_SKIP;
		row = find(s, STORE_LEASES, same_lease_addr, cmd);
		if (!row || strcmp(((const struct store_lease *)row)->mac, cmd->row.lease.mac) == 0)
			return STORE_MERGE_APPLY;
		return conflict(reason, reason_size, "an address was leased to %s and to %s",
		                ((const struct store_lease *)row)->mac, cmd->row.lease.mac);
	}
	return conflict(reason, reason_size, "unknown table %u", cmd->table);
}
