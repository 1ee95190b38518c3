/* Merge of commands orphaned by a forced recovery: what becomes of a
 * command that a host applied before it, when the new cluster does not have
 * it (docs/store.md). Each table decides for itself through its merge rule;
 * nothing is dropped silently: a command is re-proposed, found already
 * present, or reported as a conflict. */
#include "lib/error.h"
#include "tables.h"

enum store_merge store_merge(const struct store_state *s, struct store_cmd *cmd, char **ret_reason)
{
	const struct store_table *tb = store_table_lookup(cmd->table);
	if (!tb) {
		error_set(ret_reason, 0, "unknown table %u", cmd->table);
		return STORE_MERGE_CONFLICT;
	}
	if (!tb->merge)
		return STORE_MERGE_SKIP;
	return tb->merge(s, cmd, ret_reason);
}
