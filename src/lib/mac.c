/* MAC parsing and formatting: see mac.h. */
#include "lib/mac.h"

#include <stdio.h>

bool mac_parse(const char *s, uint8_t ret_mac[MAC_LEN])
{
	unsigned b[MAC_LEN];
	if (!s ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return false;
	for (int i = 0; i < MAC_LEN; i++)
		ret_mac[i] = (uint8_t)b[i];
	return true;
}

char *mac_format(const uint8_t mac[MAC_LEN], char out[MAC_STR_MAX])
{
	snprintf(out, MAC_STR_MAX, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
	         mac[4], mac[5]);
	return out;
}
