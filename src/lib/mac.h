/* Ethernet MAC addresses as text: the one parser and formatter of the
 * project ("02:aa:00:00:00:01", as the store keeps them and ettmctl shows
 * them). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define MAC_LEN     6
#define MAC_STR_MAX 18 /* "xx:xx:xx:xx:xx:xx" and its NUL */

/* Reads six colon-separated hex bytes (one or two digits each, either case)
 * from the start of @s into @ret_mac. False (and @ret_mac untouched) if @s
 * does not start with one. */
bool mac_parse(const char *s, uint8_t ret_mac[MAC_LEN]);

/* Lowercase "xx:xx:xx:xx:xx:xx" of @mac into @out; returns @out. */
char *mac_format(const uint8_t mac[MAC_LEN], char out[MAC_STR_MAX]);
