/* The hex codec: see hex.h. */
#include "lib/hex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void hex_encode(const void *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0xf];
	}
	out[2 * len] = '\0';
}

char *hex_encode_new(const void *data, size_t len)
{
	char *s = malloc(2 * len + 1);
	if (s)
		hex_encode(data, len, s);
	return s;
}

static int decode(const char *s, uint8_t *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int hex_decode(const char *s, uint8_t **ret_data, size_t *ret_len)
{
	size_t n = strlen(s);
	if (n % 2)
		return -EINVAL;
	uint8_t *data = malloc(n / 2 + 1);
	if (!data)
		return -ENOMEM;
	if (decode(s, data, n / 2) < 0) {
		free(data);
		return -EINVAL;
	}
	*ret_data = data;
	*ret_len = n / 2;
	return 0;
}

int hex_decode_into(const char *s, uint8_t *out, size_t len)
{
	if (strlen(s) != 2 * len)
		return -EINVAL;
	for (size_t i = 0; i < 2 * len; i++)
		if (hex_digit(s[i]) < 0)
			return -EINVAL;
	return decode(s, out, len);
}

bool hex_is_lower(const char *s, size_t len)
{
	if (!s || strlen(s) != 2 * len)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}
