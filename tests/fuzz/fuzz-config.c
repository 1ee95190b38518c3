/* Fuzz target: the configuration parser must reject any input with a
 * message, never crash or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ettmd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	char *error = NULL;
	if (config_parse((const char *)data, size, "fuzz.conf", &c, &error) < 0 &&
	    (!error || strncmp(error, "fuzz.conf:", 10) != 0))
		__builtin_trap(); /* every error names the file */
	free(error);
	return 0;
}
