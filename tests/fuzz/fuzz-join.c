/* Fuzz target: the join protocol's messages as they arrive on the peer API
 * (docs/trust.md): one JSON line, parsed as a request, then decoded and
 * checked as a trust.challenge (EK certificate, EK and AK public areas in
 * hex) and as a quote (trust.prove's and trust.quote's attest, signature,
 * measurement and AK). A malformed or failing message is refused with a
 * reason; never a crash or an over-read. No CA matches (a missing file), so
 * a certificate is parsed and then refused. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/proto.h"
#include "trust/attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_request req;
	char *error = NULL;
	if (ctl_request_parse((const char *)data, size, &req, &error) < 0) {
		free(error);
		return 0;
	}
	struct attest_claim claim;
	char *why = NULL;
	int r = attest_check_challenge(req.args, "/nonexistent/ca.pem", &claim, &why);
	if (r == 0)
		attest_claim_done(&claim);
	else if (!why)
		__builtin_trap(); /* a refusal always says why */
	free(why);
	why = NULL;
	static const uint8_t nonce[TRUST_NONCE_LEN];
	struct trust_quote q;
	char fp[TRUST_FP_LEN];
	if (attest_check_quote(req.args, NULL, nonce, 16, fp, &q, &why) < 0 && !why)
		__builtin_trap();
	free(why);
	ctl_request_done(&req);
	return 0;
}
