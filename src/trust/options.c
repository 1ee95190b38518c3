/* Attestation's options and their defaults (attest.h): kept apart from
 * attestation so that a reader of the configuration links no TPM stack. */
#include "attest.h"

void attest_options_default(struct attest_options *o)
{
	*o = (struct attest_options){.pcr = 16, .reattest_ms = 30000};
}
