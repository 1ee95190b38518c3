/* IPv4 addresses as text and as JSON: the one formatter of the project.
 * The store's rows keep addresses as host-order integers, the kernel and
 * the configuration as struct in_addr (network order); both have a helper. */
#pragma once

#include <stdint.h>

#include <netinet/in.h>

#include <jansson.h>

#define ADDR_STR_MAX INET_ADDRSTRLEN

/* Dotted quad of @a into @out; returns @out. */
char *addr_format(struct in_addr a, char out[ADDR_STR_MAX]);

/* The same for a host-order address (the store's form). */
char *addr_format_host(uint32_t a, char out[ADDR_STR_MAX]);

/* A JSON string of the dotted quad (NULL when out of memory, which
 * json_pack's "o" turns into a failed pack). */
json_t *addr_json(struct in_addr a);
json_t *addr_json_host(uint32_t a);
