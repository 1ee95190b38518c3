/* Fuzz target: NAT-PMP and PCP requests from a guest. Any bytes either
 * decode, are refused with a result code, or are dropped; never a crash or
 * an over-read. A response can always be built for what was not dropped,
 * within the protocols' size limit. */
#include <stddef.h>
#include <stdint.h>

#include "services/nat/pmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pmp_request req;
	enum pmp_result r = pmp_decode(data, size, &req);
	if (r == PMP_DROP)
		return 0;
	struct pmp_response res;
	pmp_response_for(&req, r, &res);
	uint8_t out[PMP_MAX_MESSAGE];
	size_t len = pmp_encode(&res, out, sizeof(out));
	if (len == 0 || len > PMP_MAX_MESSAGE || len % 4)
		__builtin_trap();
	return 0;
}
