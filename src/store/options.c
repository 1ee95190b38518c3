/* The store's options and their defaults (store.h): kept apart from the
 * store itself so that a reader of the configuration links no Raft. */
#include "store.h"

void store_options_default(struct store_options *o)
{
	*o = (struct store_options){
	    .election_ms = 250,
	    .heartbeat_ms = 50,
	    .snapshot_threshold = 8192,
	    .promote_after_ms = 3000,
	};
}
