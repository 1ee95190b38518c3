/* The host's own TPM through tpm2-tss's ESAPI.
 *
 * Keys are primaries in the endorsement hierarchy, made from TCG templates:
 * a primary key is a function of the hierarchy's seed and the template
 * (TPM 2.0 Part 1, "Primary Keys"; Part 3, 24.1 TPM2_CreatePrimary), so the same TPM always gives
 * the same EK and AK and nothing needs to be stored.
 *
 * No object stays loaded between calls: a TPM holds few loaded objects
 * (swtpm three) and nothing flushes what a killed process left, so every
 * kill -9 of an agent that kept its AK loaded leaked one slot until the TPM
 * ran out ("out of memory for object contexts", 0x902). The AK is created
 * once, its context saved (TPM2_ContextSave, Part 3, 28.2) and flushed;
 * each use loads the saved context (TPM2_ContextLoad, 28.3; cheaper than
 * re-deriving the primary) and flushes it again. At open, transient
 * objects that are this module's AK or EK (an earlier life of the process,
 * killed between a load and its flush) are flushed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "trust/internal.h"

struct trust_tpm {
	TSS2_TCTI_CONTEXT *tcti;
	ESYS_CONTEXT *esys;
	TPMS_CONTEXT *ak_context; /* the AK's saved context; NULL until first used */
	TPM2B_PUBLIC ak_public;
};

/* TCG EK Credential Profile for TPM Family 2.0, annex B: the default EK
 * templates L-1 (RSA 2048) and L-2 (ECC NIST P-256), and the NV indices of
 * their certificates. */
#define EK_CERT_RSA 0x01c00002
#define EK_CERT_ECC 0x01c0000a

/* PolicySecret(TPM_RH_ENDORSEMENT) (EK Credential Profile, annex B): the EK can
 * be used only by whoever knows the endorsement hierarchy's authorization. */
static const uint8_t ek_policy[32] = {
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
};

static const TPMA_OBJECT ek_attributes =
    TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
    TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;

static void ek_template(bool ecc, TPM2B_PUBLIC *t)
{
	memset(t, 0, sizeof(*t));
	TPMT_PUBLIC *p = &t->publicArea;
	p->nameAlg = TPM2_ALG_SHA256;
	p->objectAttributes = ek_attributes;
	p->authPolicy.size = sizeof(ek_policy);
	memcpy(p->authPolicy.buffer, ek_policy, sizeof(ek_policy));
	TPMT_SYM_DEF_OBJECT sym = {
	    .algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB};
	if (!ecc) {
		p->type = TPM2_ALG_RSA;
		p->parameters.rsaDetail.symmetric = sym;
		p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
		p->parameters.rsaDetail.keyBits = 2048;
		p->parameters.rsaDetail.exponent = 0;
		p->unique.rsa.size = 256; /* zeros */
	} else {
		p->type = TPM2_ALG_ECC;
		p->parameters.eccDetail.symmetric = sym;
		p->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
		p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
		p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
		p->unique.ecc.x.size = 32;
		p->unique.ecc.y.size = 32;
	}
	t->size = 0; /* computed when marshalled */
}

/* The AK: ECC P-256, ECDSA SHA-256, restricted signing (Part 1,
 * "Attestation"; Part 2, TPMA_OBJECT); noDA so that unclean stops do not count as attacks;
 * userWithAuth with the empty auth of a primary created without one. */
static void ak_template(TPM2B_PUBLIC *t)
{
	memset(t, 0, sizeof(*t));
	TPMT_PUBLIC *p = &t->publicArea;
	p->type = TPM2_ALG_ECC;
	p->nameAlg = TPM2_ALG_SHA256;
	p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
	                      TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
	                      TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_NODA;
	TPMS_ECC_PARMS *e = &p->parameters.eccDetail;
	e->symmetric.algorithm = TPM2_ALG_NULL;
	e->scheme.scheme = TPM2_ALG_ECDSA;
	e->scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
	e->curveID = TPM2_ECC_NIST_P256;
	e->kdf.scheme = TPM2_ALG_NULL;
}

static int tss_fail(char **ret_error, const char *what, TSS2_RC rc)
{
	trust_err(ret_error, "%s: %s (0x%x)", what, Tss2_RC_Decode(rc), rc);
	return -EIO;
}

static int tpm_flush_leftovers(struct trust_tpm *t, char **ret_error);

static int tpm_open(const char *tcti, struct trust_tpm **ret_tpm, char **ret_error)
{
	if (!tcti || !ret_tpm) {
		trust_err(ret_error, "TPM: no TCTI");
		return -EINVAL;
	}
	/* This module reports through @ret_error; the daemon decides what to log. */
	trust_quiet_tss();
	struct trust_tpm *t = calloc(1, sizeof(*t));
	if (!t)
		return trust_fail_default(-ENOMEM, ret_error, "TPM");
	int r;
	TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti, &t->tcti);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(ret_error, tcti, rc);
		goto fail;
	}
	rc = Esys_Initialize(&t->esys, t->tcti, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(ret_error, "Esys_Initialize", rc);
		goto fail;
	}
	rc = Esys_Startup(t->esys, TPM2_SU_CLEAR);
	if (rc != TSS2_RC_SUCCESS && rc != TPM2_RC_INITIALIZE) {
		r = tss_fail(ret_error, "TPM2_Startup", rc);
		goto fail;
	}
	r = tpm_flush_leftovers(t, ret_error);
	if (r < 0)
		goto fail;
	*ret_tpm = t;
	return 0;
fail:
	trust_tpm_close(t);
	return r;
}

void trust_tpm_close(struct trust_tpm *t)
{
	if (!t)
		return;
	Esys_Free(t->ak_context);
	if (t->esys)
		Esys_Finalize(&t->esys);
	if (t->tcti)
		Tss2_TctiLdr_Finalize(&t->tcti);
	free(t);
}

static int pcr_handle(unsigned pcr, ESYS_TR *ret, char **ret_error)
{
	if (pcr > 23) {
		trust_err(ret_error, "PCR %u: out of range", pcr);
		return -EINVAL;
	}
	*ret = ESYS_TR_PCR0 + pcr;
	return 0;
}

static int tpm_measure(struct trust_tpm *t, unsigned pcr,
                       const uint8_t (*digests)[TRUST_DIGEST_LEN], size_t n, char **ret_error)
{
	ESYS_TR h;
	int r = pcr_handle(pcr, &h, ret_error);
	if (r < 0)
		return r;
	if (n && !digests)
		return -EINVAL;
	/* Part 3, 22.8: only PCRs with the pcrResetL0 attribute (16 and 23 on
	 * a PC Client TPM) can be reset at locality 0. */
	TSS2_RC rc = Esys_PCR_Reset(t->esys, h, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ret_error, "TPM2_PCR_Reset", rc);
	for (size_t i = 0; i < n; i++) {
		TPML_DIGEST_VALUES v = {.count = 1};
		v.digests[0].hashAlg = TPM2_ALG_SHA256;
		memcpy(v.digests[0].digest.sha256, digests[i], TRUST_DIGEST_LEN);
		rc = Esys_PCR_Extend(t->esys, h, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &v);
		if (rc != TSS2_RC_SUCCESS)
			return tss_fail(ret_error, "TPM2_PCR_Extend", rc);
	}
	return 0;
}

static void select_pcr(unsigned pcr, TPML_PCR_SELECTION *sel)
{
	memset(sel, 0, sizeof(*sel));
	sel->count = 1;
	sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
	sel->pcrSelections[0].sizeofSelect = 3;
	sel->pcrSelections[0].pcrSelect[pcr / 8] = (uint8_t)(1u << (pcr % 8));
}

static int tpm_pcr_read(struct trust_tpm *t, unsigned pcr, uint8_t ret_value[TRUST_DIGEST_LEN],
                        char **ret_error)
{
	ESYS_TR h;
	int r = pcr_handle(pcr, &h, ret_error);
	if (r < 0)
		return r;
	TPML_PCR_SELECTION sel, *sel_out = NULL;
	TPML_DIGEST *values = NULL;
	UINT32 counter;
	select_pcr(pcr, &sel);
	TSS2_RC rc = Esys_PCR_Read(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel,
	                           &counter, &sel_out, &values);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ret_error, "TPM2_PCR_Read", rc);
	if (values->count != 1 || values->digests[0].size != TRUST_DIGEST_LEN) {
		trust_err(ret_error, "TPM2_PCR_Read: no SHA-256 value of PCR %u", pcr);
		r = -EIO;
	} else {
		memcpy(ret_value, values->digests[0].buffer, TRUST_DIGEST_LEN);
	}
	Esys_Free(sel_out);
	Esys_Free(values);
	return r;
}

static int tpm_counters(struct trust_tpm *t, uint32_t *ret_reset, uint32_t *ret_restart,
                        char **ret_error)
{
	TPMS_TIME_INFO *info = NULL;
	TSS2_RC rc = Esys_ReadClock(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &info);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ret_error, "TPM2_ReadClock", rc);
	*ret_reset = info->clockInfo.resetCount;
	*ret_restart = info->clockInfo.restartCount;
	Esys_Free(info);
	return 0;
}

/* ---- the endorsement key ---- */

static int nv_buffer_max(struct trust_tpm *t, uint16_t *ret)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	*ret = 512;
	TSS2_RC rc =
	    Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
	                       TPM2_CAP_TPM_PROPERTIES, TPM2_PT_NV_BUFFER_MAX, 1, &more, &cap);
	if (rc != TSS2_RC_SUCCESS)
		return 0;
	if (cap->data.tpmProperties.count == 1 &&
	    cap->data.tpmProperties.tpmProperty[0].property == TPM2_PT_NV_BUFFER_MAX &&
	    cap->data.tpmProperties.tpmProperty[0].value > 0 &&
	    cap->data.tpmProperties.tpmProperty[0].value <= TPM2_MAX_NV_BUFFER_SIZE)
		*ret = (uint16_t)cap->data.tpmProperties.tpmProperty[0].value;
	Esys_Free(cap);
	return 0;
}

/* An NV index's content, read with its own (empty) authorization in chunks
 * of the TPM's NV buffer size. -ENOENT if the index is not defined. */
static int nv_read(struct trust_tpm *t, TPM2_HANDLE index, struct trust_blob *ret, char **ret_error)
{
	ESYS_TR nv = ESYS_TR_NONE;
	TSS2_RC rc =
	    Esys_TR_FromTPMPublic(t->esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
	if (rc != TSS2_RC_SUCCESS) {
		trust_err(ret_error, "NV index 0x%08x: not defined", index);
		return -ENOENT;
	}
	TPM2B_NV_PUBLIC *pub = NULL;
	TPM2B_NAME *name = NULL;
	uint8_t *data = NULL;
	int r;
	rc = Esys_NV_ReadPublic(t->esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(ret_error, "TPM2_NV_ReadPublic", rc);
		goto out;
	}
	uint16_t size = pub->nvPublic.dataSize, chunk;
	nv_buffer_max(t, &chunk);
	r = -ENOMEM;
	data = malloc(size ? size : 1);
	if (!data) {
		trust_err(ret_error, "NV index 0x%08x: out of memory", index);
		goto out;
	}
	for (uint16_t off = 0; off < size;) {
		uint16_t n = size - off < chunk ? size - off : chunk;
		TPM2B_MAX_NV_BUFFER *buf = NULL;
		rc = Esys_NV_Read(t->esys, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, n,
		                  off, &buf);
		if (rc != TSS2_RC_SUCCESS) {
			r = tss_fail(ret_error, "TPM2_NV_Read", rc);
			goto out;
		}
		if (buf->size != n) {
			Esys_Free(buf);
			trust_err(ret_error, "TPM2_NV_Read: %u bytes for %u", buf->size, n);
			r = -EIO;
			goto out;
		}
		memcpy(data + off, buf->buffer, n);
		Esys_Free(buf);
		off += n;
	}
	ret->data = data;
	ret->len = size;
	data = NULL;
	r = 0;
out:
	free(data);
	Esys_Free(pub);
	Esys_Free(name);
	Esys_TR_Close(t->esys, &nv);
	return r;
}

static int create_primary(struct trust_tpm *t, const TPM2B_PUBLIC *template, ESYS_TR *ret,
                          TPM2B_PUBLIC *ret_public, const char *what, char **ret_error)
{
	TPM2B_SENSITIVE_CREATE sens = {0};
	TPM2B_DATA outside = {0};
	TPML_PCR_SELECTION pcrs = {0};
	TPM2B_PUBLIC *out = NULL;
	TPM2B_CREATION_DATA *cdata = NULL;
	TPM2B_DIGEST *chash = NULL;
	TPMT_TK_CREATION *ticket = NULL;
	ESYS_TR h = ESYS_TR_NONE;
	TSS2_RC rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD,
	                                ESYS_TR_NONE, ESYS_TR_NONE, &sens, template, &outside,
	                                &pcrs, &h, &out, &cdata, &chash, &ticket);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ret_error, what, rc);
	*ret = h;
	*ret_public = *out;
	Esys_Free(out);
	Esys_Free(cdata);
	Esys_Free(chash);
	Esys_Free(ticket);
	return 0;
}

/* Which EK this TPM has a certificate for: RSA (preferred) or ECC. */
static int ek_cert(struct trust_tpm *t, struct trust_blob *ret_cert, bool *ret_ecc,
                   char **ret_error)
{
	int r = nv_read(t, EK_CERT_RSA, ret_cert, ret_error);
	if (r == 0) {
		*ret_ecc = false;
		return 0;
	}
	if (r != -ENOENT)
		return r;
	r = nv_read(t, EK_CERT_ECC, ret_cert, ret_error);
	if (r == 0)
		*ret_ecc = true;
	else if (r == -ENOENT)
		trust_err(ret_error, "EK certificate: neither NV index 0x%08x nor 0x%08x",
		          EK_CERT_RSA, EK_CERT_ECC);
	return r;
}

static int ek_load(struct trust_tpm *t, bool ecc, ESYS_TR *ret, TPM2B_PUBLIC *ret_public,
                   char **ret_error)
{
	TPM2B_PUBLIC tmpl;
	ek_template(ecc, &tmpl);
	return create_primary(t, &tmpl, ret, ret_public, "TPM2_CreatePrimary (EK)", ret_error);
}

static int tpm_ek(struct trust_tpm *t, struct trust_blob *ret_cert, struct trust_blob *ret_public,
                  char **ret_error)
{
	struct trust_blob cert = {0};
	bool ecc;
	int r = ek_cert(t, &cert, &ecc, ret_error);
	if (r < 0)
		return r;
	ESYS_TR ek;
	TPM2B_PUBLIC pub;
	r = ek_load(t, ecc, &ek, &pub, ret_error);
	if (r < 0)
		goto fail;
	Esys_FlushContext(t->esys, ek);
	/* The certificate is for the key of the default template, or the
	 * manufacturer used another template and this EK is not that one. */
	r = trust_cert_matches_public(cert.data, cert.len, &pub.publicArea, ret_error);
	if (r < 0)
		goto fail;
	r = trust_public_marshal(&pub, ret_public);
	if (r < 0) {
		trust_err(ret_error, "EK public: %s", strerror(-r));
		goto fail;
	}
	*ret_cert = cert;
	return 0;
fail:
	trust_blob_done(&cert);
	return r;
}

/* ---- the attestation key ---- */

/* Loads the AK into @ret_handle, for one use: from its saved context, or
 * created again if there is none or the TPM refuses it (a saved context
 * does not survive a TPM Reset, Part 1, "Context Management"). The caller
 * flushes it with ak_unload(). */
static int ak_load(struct trust_tpm *t, ESYS_TR *ret_handle, char **ret_error)
{
	ESYS_TR h = ESYS_TR_NONE;
	if (t->ak_context) {
		if (Esys_ContextLoad(t->esys, t->ak_context, &h) == TSS2_RC_SUCCESS) {
			*ret_handle = h;
			return 0;
		}
		Esys_Free(t->ak_context);
		t->ak_context = NULL;
	}
	TPM2B_PUBLIC tmpl, pub;
	ak_template(&tmpl);
	int r = create_primary(t, &tmpl, &h, &pub, "TPM2_CreatePrimary (AK)", ret_error);
	if (r < 0)
		return r;
	t->ak_public = pub;
	/* Part 3, 28.2: ContextSave leaves the object loaded; without a
	 * saved context each use derives the primary again, which is
	 * slower but works. */
	TPMS_CONTEXT *ctx = NULL;
	if (Esys_ContextSave(t->esys, h, &ctx) == TSS2_RC_SUCCESS)
		t->ak_context = ctx;
	*ret_handle = h;
	return 0;
}

static void ak_unload(struct trust_tpm *t, ESYS_TR h)
{
	if (h != ESYS_TR_NONE)
		Esys_FlushContext(t->esys, h);
}

static int tpm_ak(struct trust_tpm *t, struct trust_blob *ret_public, char **ret_error)
{
	if (!t->ak_context) {
		ESYS_TR h;
		int r = ak_load(t, &h, ret_error);
		if (r < 0)
			return r;
		ak_unload(t, h);
	}
	return trust_fail_default(trust_public_marshal(&t->ak_public, ret_public), ret_error,
	                          "AK public");
}

/* ---- what an earlier life left ---- */

/* Whether @p was made from the AK template or one of the EK templates: the
 * unique field aside, a primary's public area is its template. */
static bool public_is_ours(const TPMT_PUBLIC *p)
{
	TPM2B_PUBLIC tmpl[3];
	ak_template(&tmpl[0]);
	ek_template(false, &tmpl[1]);
	ek_template(true, &tmpl[2]);
	for (size_t i = 0; i < 3; i++) {
		const TPMT_PUBLIC *q = &tmpl[i].publicArea;
		if (p->type != q->type || p->nameAlg != q->nameAlg ||
		    p->objectAttributes != q->objectAttributes ||
		    p->authPolicy.size != q->authPolicy.size ||
		    memcmp(p->authPolicy.buffer, q->authPolicy.buffer, q->authPolicy.size) != 0)
			continue;
		if (p->type == TPM2_ALG_ECC &&
		    p->parameters.eccDetail.curveID == q->parameters.eccDetail.curveID &&
		    p->parameters.eccDetail.scheme.scheme == q->parameters.eccDetail.scheme.scheme)
			return true;
		if (p->type == TPM2_ALG_RSA &&
		    p->parameters.rsaDetail.keyBits == q->parameters.rsaDetail.keyBits &&
		    p->parameters.rsaDetail.scheme.scheme == q->parameters.rsaDetail.scheme.scheme)
			return true;
	}
	return false;
}

/* Flushes the loaded transient object @handle if it is one of ours. */
static void flush_if_ours(struct trust_tpm *t, TPM2_HANDLE handle)
{
	ESYS_TR h = ESYS_TR_NONE;
	if (Esys_TR_FromTPMPublic(t->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &h) !=
	    TSS2_RC_SUCCESS)
		return;
	TPM2B_PUBLIC *pub = NULL;
	bool ours = Esys_ReadPublic(t->esys, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub,
	                            NULL, NULL) == TSS2_RC_SUCCESS &&
	            public_is_ours(&pub->publicArea);
	Esys_Free(pub);
	if (ours)
		Esys_FlushContext(t->esys, h);
	else
		Esys_TR_Close(t->esys, &h);
}

/* Flushes the AKs and EKs an earlier life of this process left loaded when
 * it was killed between a load and its flush (TPM2_GetCapability of the
 * transient handles, Part 3, 30.2). Other objects are not ours to flush. */
static int tpm_flush_leftovers(struct trust_tpm *t, char **ret_error)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	/* TPM2_TRANSIENT_FIRST shifts an int into its sign bit (undefined):
	 * the same value, computed unsigned. */
	const UINT32 first = (UINT32)TPM2_HT_TRANSIENT << TPM2_HR_SHIFT;
	TSS2_RC rc = Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
	                                TPM2_CAP_HANDLES, first, TPM2_MAX_CAP_HANDLES, &more, &cap);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ret_error, "TPM2_GetCapability (transient handles)", rc);
	for (UINT32 i = 0; i < cap->data.handles.count; i++)
		flush_if_ours(t, cap->data.handles.handle[i]);
	Esys_Free(cap);
	return 0;
}

static int tpm_quote(struct trust_tpm *t, unsigned pcr, const uint8_t *nonce, size_t nonce_len,
                     struct trust_blob *ret_attest, struct trust_blob *ret_signature,
                     char **ret_error)
{
	ESYS_TR h;
	int r = pcr_handle(pcr, &h, ret_error);
	if (r < 0)
		return r;
	TPM2B_DATA qualifying = {0};
	if (!nonce || nonce_len == 0 || nonce_len > sizeof(qualifying.buffer)) {
		trust_err(ret_error, "quote: nonce of %zu bytes (1 to %zu)", nonce_len,
		          sizeof(qualifying.buffer));
		return -EINVAL;
	}
	ESYS_TR ak;
	r = ak_load(t, &ak, ret_error);
	if (r < 0)
		return r;
	qualifying.size = (UINT16)nonce_len;
	memcpy(qualifying.buffer, nonce, nonce_len);
	TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_NULL}; /* the AK's own */
	TPML_PCR_SELECTION sel;
	select_pcr(pcr, &sel);
	TPM2B_ATTEST *quoted = NULL;
	TPMT_SIGNATURE *sig = NULL;
	TSS2_RC rc = Esys_Quote(t->esys, ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
	                        &qualifying, &scheme, &sel, &quoted, &sig);
	ak_unload(t, ak);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ret_error, "TPM2_Quote", rc);
	struct trust_blob a = {malloc(sizeof(*quoted)), 0}, s = {malloc(sizeof(*sig)), 0};
	r = -ENOMEM;
	if (a.data && s.data &&
	    Tss2_MU_TPM2B_ATTEST_Marshal(quoted, a.data, sizeof(*quoted), &a.len) == 0 &&
	    Tss2_MU_TPMT_SIGNATURE_Marshal(sig, s.data, sizeof(*sig), &s.len) == 0) {
		*ret_attest = a;
		*ret_signature = s;
		r = 0;
	} else {
		free(a.data);
		free(s.data);
		trust_err(ret_error, "quote: out of memory");
	}
	Esys_Free(quoted);
	Esys_Free(sig);
	return r;
}

/* ---- credential activation ---- */

/* A policy session that satisfies the EK's policy: PolicySecret with the
 * endorsement hierarchy's (empty) authorization (Part 3, 23.4). */
static int ek_session(struct trust_tpm *t, ESYS_TR *ret, char **ret_error)
{
	TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
	ESYS_TR s = ESYS_TR_NONE;
	TSS2_RC rc =
	    Esys_StartAuthSession(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
	                          ESYS_TR_NONE, NULL, TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256, &s);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ret_error, "TPM2_StartAuthSession", rc);
	TPM2B_NONCE nonce_tpm = {0}, policy_ref = {0};
	TPM2B_DIGEST cp_hash = {0};
	TPM2B_TIMEOUT *timeout = NULL;
	TPMT_TK_AUTH *ticket = NULL;
	rc = Esys_PolicySecret(t->esys, ESYS_TR_RH_ENDORSEMENT, s, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                       ESYS_TR_NONE, &nonce_tpm, &cp_hash, &policy_ref, 0, &timeout,
	                       &ticket);
	Esys_Free(timeout);
	Esys_Free(ticket);
	if (rc != TSS2_RC_SUCCESS) {
		Esys_FlushContext(t->esys, s);
		return tss_fail(ret_error, "TPM2_PolicySecret", rc);
	}
	*ret = s;
	return 0;
}

static int tpm_activate(struct trust_tpm *t, const struct trust_blob *credential,
                        const struct trust_blob *secret, struct trust_blob *ret_plain,
                        char **ret_error)
{
	TPM2B_ID_OBJECT id = {0};
	TPM2B_ENCRYPTED_SECRET sec = {0};
	size_t off = 0;
	if (!credential || !credential->data ||
	    Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(credential->data, credential->len, &off, &id) != 0 ||
	    off != credential->len) {
		trust_err(ret_error, "credential: not one TPM2B_ID_OBJECT");
		return -EBADMSG;
	}
	off = 0;
	if (!secret || !secret->data ||
	    Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(secret->data, secret->len, &off, &sec) != 0 ||
	    off != secret->len) {
		trust_err(ret_error, "secret: not one TPM2B_ENCRYPTED_SECRET");
		return -EBADMSG;
	}
	struct trust_blob cert = {0};
	bool ecc;
	int r = ek_cert(t, &cert, &ecc, ret_error);
	trust_blob_done(&cert);
	if (r < 0)
		return r;
	ESYS_TR ek, ak = ESYS_TR_NONE, session = ESYS_TR_NONE;
	TPM2B_PUBLIC ek_pub;
	r = ek_load(t, ecc, &ek, &ek_pub, ret_error);
	if (r < 0)
		return r;
	r = ak_load(t, &ak, ret_error);
	if (r < 0)
		goto out;
	r = ek_session(t, &session, ret_error);
	if (r < 0)
		goto out;
	TPM2B_DIGEST *plain = NULL;
	TSS2_RC rc = Esys_ActivateCredential(t->esys, ak, ek, ESYS_TR_PASSWORD, session,
	                                     ESYS_TR_NONE, &id, &sec, &plain);
	if (rc != TSS2_RC_SUCCESS) {
		/* Part 3, 12.5: an integrity or value error is a credential that
		 * was not made for this EK and AK. */
		trust_err(ret_error, "TPM2_ActivateCredential: %s (0x%x)", Tss2_RC_Decode(rc), rc);
		r = (rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER ? -EACCES : -EIO;
		goto out;
	}
	uint8_t *data = malloc(plain->size ? plain->size : 1);
	if (!data) {
		r = -ENOMEM;
		trust_err(ret_error, "credential: out of memory");
	} else {
		memcpy(data, plain->buffer, plain->size);
		ret_plain->data = data;
		ret_plain->len = plain->size;
	}
	Esys_Free(plain);
out:
	/* The session was not marked continueSession by us, but ESAPI keeps
	 * sessions alive by default: flush it and the EK either way. */
	if (session != ESYS_TR_NONE)
		Esys_FlushContext(t->esys, session);
	ak_unload(t, ak);
	Esys_FlushContext(t->esys, ek);
	return r;
}

/* ---- the entry points: their messages leave the module (internal.h) ---- */

int trust_tpm_open(const char *tcti, struct trust_tpm **ret_tpm, char **ret_error)
{
	char *e = NULL;
	int r = tpm_open(tcti, ret_tpm, &e);
	return trust_error_out(r, e, ret_error);
}

int trust_tpm_measure(struct trust_tpm *t, unsigned pcr, const uint8_t (*digests)[TRUST_DIGEST_LEN],
                      size_t n, char **ret_error)
{
	char *e = NULL;
	int r = tpm_measure(t, pcr, digests, n, &e);
	return trust_error_out(r, e, ret_error);
}

int trust_tpm_pcr_read(struct trust_tpm *t, unsigned pcr, uint8_t ret_value[TRUST_DIGEST_LEN],
                       char **ret_error)
{
	char *e = NULL;
	int r = tpm_pcr_read(t, pcr, ret_value, &e);
	return trust_error_out(r, e, ret_error);
}

int trust_tpm_counters(struct trust_tpm *t, uint32_t *ret_reset, uint32_t *ret_restart,
                       char **ret_error)
{
	char *e = NULL;
	int r = tpm_counters(t, ret_reset, ret_restart, &e);
	return trust_error_out(r, e, ret_error);
}

int trust_tpm_ek(struct trust_tpm *t, struct trust_blob *ret_cert, struct trust_blob *ret_public,
                 char **ret_error)
{
	char *e = NULL;
	int r = tpm_ek(t, ret_cert, ret_public, &e);
	return trust_error_out(r, e, ret_error);
}

int trust_tpm_ak(struct trust_tpm *t, struct trust_blob *ret_public, char **ret_error)
{
	char *e = NULL;
	int r = tpm_ak(t, ret_public, &e);
	return trust_error_out(r, e, ret_error);
}

int trust_tpm_quote(struct trust_tpm *t, unsigned pcr, const uint8_t *nonce, size_t nonce_len,
                    struct trust_blob *ret_attest, struct trust_blob *ret_signature,
                    char **ret_error)
{
	char *e = NULL;
	int r = tpm_quote(t, pcr, nonce, nonce_len, ret_attest, ret_signature, &e);
	return trust_error_out(r, e, ret_error);
}

int trust_tpm_activate(struct trust_tpm *t, const struct trust_blob *credential,
                       const struct trust_blob *secret, struct trust_blob *ret_plain,
                       char **ret_error)
{
	char *e = NULL;
	int r = tpm_activate(t, credential, secret, ret_plain, &e);
	return trust_error_out(r, e, ret_error);
}
