/* Growable arrays: an array whose size comes from the network (rules,
 * mappings, devices) is a pointer, a count and a capacity, and grows by
 * doubling through array_reserve(), so its memory follows what it holds.
 *
 *	struct thing *v; size_t n, cap;
 *	if (ARRAY_RESERVE(v, cap, n + 1) < 0)
 *		return -ENOMEM;
 *	v[n++] = thing;
 */
#pragma once

#include <stddef.h>

/* Makes room for at least @need elements of @size bytes in the array
 * *@v of capacity *@cap (both updated), doubling from 8. On failure
 * (-ENOMEM, or -EOVERFLOW when @need * @size does not fit in a size_t)
 * *@v and *@cap are left as they were. New elements are not initialised. */
int array_reserve(void **v, size_t *cap, size_t need, size_t size);

#define ARRAY_RESERVE(v, cap, need) array_reserve((void **)&(v), &(cap), (need), sizeof(*(v)))
