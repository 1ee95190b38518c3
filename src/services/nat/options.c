/* NAT's options and their defaults (nat.h): kept apart from the service so
 * that a reader of the configuration links none of it. */
#include "nat.h"

void nat_options_default(struct nat_options *o)
{
	*o = (struct nat_options){
	    .block_size = 1024,
	    .first_port = 1024,
	    .reclaim_after_ms = 60000,
	};
}
