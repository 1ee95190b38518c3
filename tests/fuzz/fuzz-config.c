/* Fuzz target: the configuration parser must reject any input with a
 * message, never crash or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ettmd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	char error[512];
	error[0] = '\0';
	if (config_parse((const char *)data, size, "fuzz.conf", &c, error, sizeof(error)) < 0 &&
	    strncmp(error, "fuzz.conf:", 10) != 0)
		__builtin_trap(); /* every error names the file */
	return 0;
}
