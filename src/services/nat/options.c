/* NAT's options and their defaults (nat.h): kept apart from the service so
 * that a reader of the configuration links none of it. */
#include "nat.h"

#include <errno.h>
#include <string.h>

void nat_options_default(struct nat_options *o)
{
	*o = (struct nat_options){
	    .block_size = 1024,
	    .first_port = 1024,
	    .reclaim_after_ms = 60000,
	    .filtering = NAT_FILTER_ADDRESS,
	};
}

int nat_filtering_parse(const char *s, enum nat_filtering *ret)
{
	for (int i = 0; i < NAT_FILTER_MAX; i++)
		if (strcmp(s, nat_filtering_name((enum nat_filtering)i)) == 0) {
			*ret = (enum nat_filtering)i;
			return 0;
		}
	return -EINVAL;
}
