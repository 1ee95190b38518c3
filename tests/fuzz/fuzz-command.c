/* Fuzz target: the store's command decoder and apply. A replica must never
 * crash on a corrupt entry: bytes either decode, re-encode to the same
 * command and apply (accepted or rejected), or are refused with a reason.
 * The same bytes are also fed to snapshot restore. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/tables.h"
#include "services/nat/tables.h"
#include "../unit/tables-all.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct store_state *base(void)
{
	struct store_state *s;
	static bool registered;
	if (!registered) {
		register_all_tables();
		registered = true;
	}
	if (store_state_new(&s) < 0)
		abort();
	struct store_cmd m = {.table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = 1};
	(*STORE_CMD_ROW(&m, struct store_member)) =
	    (struct store_member){.id = 1, .name = "h1", .address = "10.77.0.1:7700"};
	struct store_cmd b = {.table = NAT_BLOCKS, .op = STORE_PUT, .time_ms = 1};
	(*STORE_CMD_ROW(&b, struct nat_block)) =
	    (struct nat_block){.start = 4096, .size = 1024, .owner = 1};
	struct store_result r;
	store_state_apply(s, &m, &r);
	store_state_apply(s, &b, &r);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_cmd cmd, again;
	char *error = NULL;
	struct store_state *s = base();

	if (store_cmd_decode(data, size, &cmd, &error) == 0) {
		uint8_t *enc;
		size_t len;
		if (store_cmd_encode(&cmd, &enc, &len) < 0 ||
		    store_cmd_decode(enc, len, &again, &error) < 0 || again.table != cmd.table ||
		    again.op != cmd.op)
			__builtin_trap();
		store_cmd_done(&again);
		free(enc);
		struct store_result res;
		if (store_state_apply(s, &cmd, &res) < 0)
			__builtin_trap();
		/* Whatever was applied, the state still snapshots and restores. */
		uint8_t *snap;
		size_t snap_len;
		struct store_state *copy = base();
		if (store_state_snapshot(s, &snap, &snap_len) < 0 ||
		    store_state_restore(copy, snap, snap_len, &error) < 0)
			__builtin_trap();
		free(snap);
		store_state_free(copy);
		char *reason = NULL;
		store_merge(s, &cmd, &reason);
		free(reason);
		store_cmd_done(&cmd);
	} else if (!error || !error[0]) {
		__builtin_trap(); /* a refusal says why */
	}
	free(error);
	error = NULL;
	store_state_restore(s, data, size, &error);
	free(error);
	store_state_free(s);
	return 0;
}
