/* IPv4 address formatting: see addr.h. */
#include "lib/addr.h"

#include <arpa/inet.h>

char *addr_format(struct in_addr a, char out[ADDR_STR_MAX])
{
	/* inet_ntop cannot fail for AF_INET into INET_ADDRSTRLEN bytes. */
	inet_ntop(AF_INET, &a, out, ADDR_STR_MAX);
	return out;
}

char *addr_format_host(uint32_t a, char out[ADDR_STR_MAX])
{
	return addr_format((struct in_addr){.s_addr = htonl(a)}, out);
}

json_t *addr_json(struct in_addr a)
{
	char s[ADDR_STR_MAX];
	return json_string(addr_format(a, s));
}

json_t *addr_json_host(uint32_t a)
{
	char s[ADDR_STR_MAX];
	return json_string(addr_format_host(a, s));
}
