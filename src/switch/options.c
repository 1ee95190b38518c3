/* The switch controller's options and their defaults (switch.h): kept apart
 * from the controller so that a reader of the configuration links none of it. */
#include "switch.h"

void sw_options_default(struct sw_options *o)
{
	*o = (struct sw_options){
	    .stats_interval_ms = 1000,
	    .lldp_interval_ms = 1000,
	    .link_timeout_ms = 2500,
	    .fiat_after_ms = 2000,
	};
}
