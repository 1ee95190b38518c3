/* Hexadecimal: the one codec of the project for bytes written as text
 * (digests, TPM structures in the peer messages, raw store commands).
 * Encoding is lowercase; decoding takes either case. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The value of one hex digit, or -1 if @c is none. */
int hex_digit(char c);

/* Writes @len bytes of @data as 2 * @len lowercase digits and a NUL into
 * @out (2 * @len + 1 bytes). */
void hex_encode(const void *data, size_t len, char *out);

/* Like hex_encode(), into a new string (free() it); NULL when out of
 * memory. */
char *hex_encode_new(const void *data, size_t len);

/* Decodes the whole of @s (an even number of hex digits, possibly none) into
 * a newly allocated *@ret_data of *@ret_len bytes (free() it; never NULL on
 * success). -EINVAL if @s is not hex, -ENOMEM. */
int hex_decode(const char *s, uint8_t **ret_data, size_t *ret_len);

/* Decodes @s, which must be exactly 2 * @len hex digits, into @out.
 * -EINVAL otherwise (@out is then untouched). */
int hex_decode_into(const char *s, uint8_t *out, size_t len);

/* Whether @s is exactly 2 * @len lowercase hex digits: the canonical form
 * hex_encode() gives, as a digest is stored and compared. */
bool hex_is_lower(const char *s, size_t len);
