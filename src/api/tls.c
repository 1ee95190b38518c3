/* Mutual TLS 1.3 for the peer API: the agent's identity on disk, the gate,
 * and a session over memory BIOs with no I/O of its own. See tls.h. */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/error.h"
#include "lib/hex.h"

/* Self-signed certificates are pinned by fingerprint, not checked against a
 * clock: a long validity keeps X.509 dates out of the decision. */
#define CERT_DAYS (100 * 365)

struct ctl_tls {
	EVP_PKEY *key;
	X509 *cert;
	SSL_CTX *server, *client;
	SSL_CTX *to_switch; /* NULL until ctl_tls_set_network_ca() */
	uint8_t *spki;
	size_t spki_len;
	char fp[CTL_TLS_FP_LEN];
	ctl_tls_gate_fn gate;
	void *gate_userdata;
};

struct ctl_tls_session {
	SSL *ssl;
	BIO *in, *out; /* wire -> OpenSSL, OpenSSL -> wire */
	const struct ctl_tls_io *io;
	void *userdata;
	bool server, ready, dead;
	bool ca_known; /* the network's CA was loaded when the session began */
	enum ctl_tls_ca peer_ca;
	char peer_fp[CTL_TLS_FP_LEN];
};

static struct ctl_tls *default_tls;

void ctl_tls_set_default(struct ctl_tls *tls)
{
	default_tls = tls;
}

struct ctl_tls *ctl_tls_default(void)
{
	return default_tls;
}

/* OpenSSL's reason for the last failure, or @fallback. */
static const char *ssl_why(char *buf, size_t size, const char *fallback)
{
	unsigned long e = ERR_peek_last_error();
	if (!e) {
		snprintf(buf, size, "%s", fallback);
		return buf;
	}
	ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

void ctl_tls_fp_of_spki(const uint8_t *spki, size_t len, char ret_fp[CTL_TLS_FP_LEN])
{
	uint8_t md[32];
	unsigned mdlen = 0;
	EVP_Digest(spki, len, md, &mdlen, EVP_sha256(), NULL);
	hex_encode(md, sizeof(md), ret_fp);
}

int ctl_tls_sign(const struct ctl_tls *t, const void *data, size_t len, uint8_t *sig, size_t size,
                 size_t *ret_len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t out[CTL_TLS_SIG_MAX + 16];
	size_t n = sizeof(out);
	int r = -EIO;
	if (md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, t->key) == 1 &&
	    EVP_DigestSign(md, out, &n, data, len) == 1)
		r = n <= size ? 0 : -ENOBUFS;
	EVP_MD_CTX_free(md);
	ERR_clear_error();
	if (r == 0) {
		memcpy(sig, out, n);
		*ret_len = n;
	}
	return r;
}

/* The P-256 public key that is the whole of @spki, or NULL. */
static EVP_PKEY *p256_of_spki(const uint8_t *spki, size_t len)
{
	if (len == 0 || len > 1024)
		return NULL;
	const uint8_t *p = spki;
	EVP_PKEY *key = d2i_PUBKEY(NULL, &p, (long)len);
	char group[32];
	if (key && p == spki + len && EVP_PKEY_is_a(key, "EC") &&
	    EVP_PKEY_get_group_name(key, group, sizeof(group), NULL) == 1 &&
	    strcmp(group, "prime256v1") == 0)
		return key;
	EVP_PKEY_free(key);
	return NULL;
}

int ctl_tls_verify(const uint8_t *spki, size_t spki_len, const void *data, size_t len,
                   const uint8_t *sig, size_t sig_len)
{
	EVP_PKEY *key = p256_of_spki(spki, spki_len);
	if (!key) {
		ERR_clear_error();
		return -EBADMSG;
	}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int r = -EKEYREJECTED;
	if (md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
	    EVP_DigestVerify(md, sig, sig_len, data, len) == 1)
		r = 0;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return r;
}

/* The DER SubjectPublicKeyInfo of @key (newly allocated) and its length. */
static int spki_of(EVP_PKEY *key, uint8_t **ret, size_t *ret_len)
{
	uint8_t *der = NULL;
	int n = i2d_PUBKEY(key, &der);
	if (n <= 0)
		return -ENOMEM;
	*ret = der;
	*ret_len = (size_t)n;
	return 0;
}

static int write_pem(const char *dir, const char *name, BIO *pem, char **ret_error)
{
	char path[4096], tmp[4200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	char *data;
	long len = BIO_get_mem_data(pem, &data);
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return error_set(ret_error, -errno, "%s: %s", tmp, strerror(errno));
	bool ok = len > 0 && write(fd, data, (size_t)len) == len && fsync(fd) == 0;
	int e = errno;
	close(fd);
	if (!ok || rename(tmp, path) < 0) {
		e = ok ? errno : e;
		unlink(tmp);
		return error_set(ret_error, -e, "%s: %s", path, strerror(e));
	}
	return 0;
}

/* A new P-256 key and a self-signed certificate for it, written to @dir:
 * the key first, so that a certificate on disk always has its key. */
static int create_identity(struct ctl_tls *t, const char *dir, const char *name, char **ret_error)
{
	char why[256];
	uint8_t serial[16];
	BIO *kb = NULL, *cb = NULL;
	BIGNUM *bn = NULL;
	int r = -ENOMEM;
	t->key = EVP_EC_gen("P-256");
	t->cert = X509_new();
	if (!t->key || !t->cert || RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f; /* a positive serial number (RFC 5280, 4.1.2.2) */
	X509_NAME *subject = X509_get_subject_name(t->cert);
	if (!(bn = BN_bin2bn(serial, sizeof(serial), NULL)) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(t->cert)) ||
	    !X509_set_version(t->cert, X509_VERSION_3) ||
	    !X509_gmtime_adj(X509_getm_notBefore(t->cert), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(t->cert), (long)CERT_DAYS * 86400) ||
	    !X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8, (const uint8_t *)"ETTM agent",
	                                -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const uint8_t *)name, -1, -1,
	                                0) ||
	    !X509_set_issuer_name(t->cert, subject) || !X509_set_pubkey(t->cert, t->key) ||
	    !X509_sign(t->cert, t->key, EVP_sha256()))
		goto fail;
	if (!(kb = BIO_new(BIO_s_mem())) || !(cb = BIO_new(BIO_s_mem())) ||
	    !PEM_write_bio_PrivateKey(kb, t->key, NULL, NULL, 0, NULL, NULL) ||
	    !PEM_write_bio_X509(cb, t->cert))
		goto fail;
	if ((r = write_pem(dir, CTL_TLS_KEY_FILE, kb, ret_error)) < 0 ||
	    (r = write_pem(dir, CTL_TLS_CERT_FILE, cb, ret_error)) < 0)
		goto out;
	r = 0;
	goto out;
fail:
	r = error_set(ret_error, r, "cannot make a TLS key and certificate: %s",
	              ssl_why(why, sizeof(why), "out of memory"));
out:
	BN_free(bn);
	BIO_free(kb);
	BIO_free(cb);
	return r;
}

static int load_identity(struct ctl_tls *t, const char *dir, char **ret_error)
{
	char key[4096], cert[4096], why[256];
	snprintf(key, sizeof(key), "%s/%s", dir, CTL_TLS_KEY_FILE);
	snprintf(cert, sizeof(cert), "%s/%s", dir, CTL_TLS_CERT_FILE);
	struct stat st;
	if (stat(key, &st) == 0 && (st.st_mode & 077))
		return error_set(ret_error, -EPERM,
		                 "%s: mode %03o lets others read the agent's TLS key; it must be "
		                 "0600",
		                 key, (unsigned)(st.st_mode & 0777));
	BIO *kb = BIO_new_file(key, "r"), *cb = BIO_new_file(cert, "r");
	int r = 0;
	if (!kb || !cb) {
		r = error_set(ret_error, -ENOENT, "%s: cannot read it", kb ? cert : key);
		goto out;
	}
	t->key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
	t->cert = PEM_read_bio_X509(cb, NULL, NULL, NULL);
	if (!t->key || !t->cert) {
		r = error_set(ret_error, -EBADMSG, "%s: not a PEM %s: %s", t->key ? cert : key,
		              t->key ? "certificate" : "private key",
		              ssl_why(why, sizeof(why), "unreadable"));
		goto out;
	}
	if (X509_check_private_key(t->cert, t->key) != 1)
		r = error_set(ret_error, -EBADMSG, "%s is not the certificate of the key %s", cert,
		              key);
out:
	BIO_free(kb);
	BIO_free(cb);
	return r;
}

/* Any certificate passes X.509 verification: peers are pinned by the
 * fingerprint of their key (tls.h), and TLS 1.3 has already proved that
 * the peer holds it. The gate decides after the handshake. */
static int accept_pinned_later(int preverify_ok, X509_STORE_CTX *store)
{
	(void)preverify_ok;
	(void)store;
	return 1;
}

static SSL_CTX *make_ctx(struct ctl_tls *t, bool server)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx)
		return NULL;
	int mode = SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
	SSL_CTX_set_verify(ctx, mode, accept_pinned_later);
	/* No resumption: every connection shows its certificate anew, so the
	 * gate sees the key of every connection. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (server)
		SSL_CTX_set_num_tickets(ctx, 0);
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    SSL_CTX_use_certificate(ctx, t->cert) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, t->key) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int ctl_tls_set_network_ca(struct ctl_tls *t, const char *ca_file, char **ret_error)
{
	char why[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return -ENOMEM;
	/* The default verification (the chain up to @ca_file, the dates),
	 * then the switch's address: see ctl_tls_session_new_switch(). */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	/* The agents' own contexts learn the CA too, to say whether a peer's
	 * certificate is the network's (ctl_tls_session_peer_ca()); their
	 * verification still lets every key through to the gate. */
	if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1 ||
	    SSL_CTX_load_verify_locations(t->server, ca_file, NULL) != 1 ||
	    SSL_CTX_load_verify_locations(t->client, ca_file, NULL) != 1) {
		SSL_CTX_free(ctx);
		return error_set(ret_error, -EINVAL, "%s: not a PEM CA certificate: %s", ca_file,
		                 ssl_why(why, sizeof(why), "unreadable"));
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    SSL_CTX_use_certificate(ctx, t->cert) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, t->key) != 1) {
		SSL_CTX_free(ctx);
		return error_set(ret_error, -EINVAL, "TLS to the switches: %s",
		                 ssl_why(why, sizeof(why), "cannot set up the context"));
	}
	SSL_CTX_free(t->to_switch);
	t->to_switch = ctx;
	return 0;
}

bool ctl_tls_has_network_ca(const struct ctl_tls *t)
{
	return t && t->to_switch;
}

int ctl_tls_open(const char *state_dir, const char *name, struct ctl_tls **ret_tls,
                 char **ret_error)
{
	char path[4096], why[256];
	struct ctl_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/%s", state_dir, CTL_TLS_KEY_FILE);
	int r = access(path, F_OK) == 0 ? load_identity(t, state_dir, ret_error)
	                                : create_identity(t, state_dir, name, ret_error);
	if (r < 0)
		goto fail;
	if ((r = spki_of(t->key, &t->spki, &t->spki_len)) < 0)
		goto fail;
	ctl_tls_fp_of_spki(t->spki, t->spki_len, t->fp);
	if (!(t->server = make_ctx(t, true)) || !(t->client = make_ctx(t, false))) {
		r = error_set(ret_error, -EINVAL, "TLS: %s",
		              ssl_why(why, sizeof(why), "cannot set up the contexts"));
		goto fail;
	}
	*ret_tls = t;
	return 0;
fail:
	ctl_tls_free(t);
	return r;
}

void ctl_tls_free(struct ctl_tls *t)
{
	if (!t)
		return;
	if (default_tls == t)
		default_tls = NULL;
	SSL_CTX_free(t->server);
	SSL_CTX_free(t->client);
	SSL_CTX_free(t->to_switch);
	X509_free(t->cert);
	EVP_PKEY_free(t->key);
	OPENSSL_free(t->spki);
	free(t);
}

const char *ctl_tls_fingerprint(const struct ctl_tls *t)
{
	return t->fp;
}

const uint8_t *ctl_tls_spki(const struct ctl_tls *t, size_t *ret_len)
{
	*ret_len = t->spki_len;
	return t->spki;
}

void ctl_tls_set_gate(struct ctl_tls *t, ctl_tls_gate_fn gate, void *userdata)
{
	t->gate = gate;
	t->gate_userdata = userdata;
}

int ctl_tls_check(const struct ctl_tls *t, const char *fp, enum ctl_tls_ca ca, const char *cmd,
                  const char *dialled, char *ret_host, size_t host_size, char **ret_error)
{
	if (host_size)
		ret_host[0] = '\0';
	if (!t->gate)
		return 0;
	return t->gate(t->gate_userdata, fp, ca, cmd, dialled, ret_host, host_size, ret_error);
}

/* ---- a session ---- */

static int session_new(struct ctl_tls *t, SSL_CTX *ctx, bool server, const struct ctl_tls_io *io,
                       void *userdata, struct ctl_tls_session **ret_session)
{
	struct ctl_tls_session *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ca_known = t->to_switch != NULL;
	s->ssl = SSL_new(ctx);
	s->in = BIO_new(BIO_s_mem());
	s->out = BIO_new(BIO_s_mem());
	if (!s->ssl || !s->in || !s->out) {
		BIO_free(s->in);
		BIO_free(s->out);
		SSL_free(s->ssl);
		free(s);
		return -ENOMEM;
	}
	/* An empty memory BIO reads as "try again", not as the end. */
	BIO_set_mem_eof_return(s->in, -1);
	SSL_set_bio(s->ssl, s->in, s->out);
	if (server)
		SSL_set_accept_state(s->ssl);
	else
		SSL_set_connect_state(s->ssl);
	s->io = io;
	s->userdata = userdata;
	s->server = server;
	*ret_session = s;
	return 0;
}

int ctl_tls_session_new(struct ctl_tls *t, bool server, const struct ctl_tls_io *io, void *userdata,
                        struct ctl_tls_session **ret_session)
{
	return session_new(t, server ? t->server : t->client, server, io, userdata, ret_session);
}

int ctl_tls_session_new_switch(struct ctl_tls *t, const char *ip, const struct ctl_tls_io *io,
                               void *userdata, struct ctl_tls_session **ret_session)
{
	if (!t->to_switch)
		return -EINVAL;
	struct ctl_tls_session *s;
	int r = session_new(t, t->to_switch, false, io, userdata, &s);
	if (r < 0)
		return r;
	/* The switch's certificate must name the address dialled, as an IP
	 * subjectAltName (RFC 6125, 6.2.1: no IP address in a common name). */
	if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), ip) != 1) {
		ctl_tls_session_free(s);
		return -EINVAL;
	}
	*ret_session = s;
	return 0;
}

void ctl_tls_session_free(struct ctl_tls_session *s)
{
	if (!s)
		return;
	SSL_free(s->ssl); /* frees both BIOs */
	free(s);
}

/* Puts on the wire what OpenSSL wrote. */
static void flush(struct ctl_tls_session *s)
{
	char *data;
	long len = BIO_get_mem_data(s->out, &data);
	if (len <= 0)
		return;
	s->io->send(s->userdata, (const uint8_t *)data, (size_t)len);
	(void)BIO_reset(s->out);
}

static int fail(struct ctl_tls_session *s, const char *what, char **ret_error)
{
	char why[256];
	s->dead = true;
	flush(s); /* the alert that tells the peer why */
	return error_set(ret_error, -EPROTO, "TLS %s: %s", what,
	                 ssl_why(why, sizeof(why), "the peer broke the protocol"));
}

static int peer_fingerprint(struct ctl_tls_session *s)
{
	X509 *peer = SSL_get0_peer_certificate(s->ssl);
	EVP_PKEY *key = peer ? X509_get0_pubkey(peer) : NULL;
	uint8_t *spki;
	size_t len;
	if (!key || spki_of(key, &spki, &len) < 0)
		return -EPROTO;
	ctl_tls_fp_of_spki(spki, len, s->peer_fp);
	OPENSSL_free(spki);
	return 0;
}

int ctl_tls_session_start(struct ctl_tls_session *s, char **ret_error)
{
	if (s->server)
		return 0;
	int r = SSL_do_handshake(s->ssl);
	if (r <= 0 && SSL_get_error(s->ssl, r) != SSL_ERROR_WANT_READ)
		return fail(s, "handshake", ret_error);
	flush(s);
	return 0;
}

static int handshake(struct ctl_tls_session *s, char **ret_error)
{
	int r = SSL_do_handshake(s->ssl);
	if (r <= 0) {
		if (SSL_get_error(s->ssl, r) != SSL_ERROR_WANT_READ)
			return fail(s, "handshake", ret_error);
		flush(s);
		return 0;
	}
	flush(s);
	if (SSL_version(s->ssl) != TLS1_3_VERSION || peer_fingerprint(s) < 0) {
		s->dead = true;
		return error_set(ret_error, -EPROTO, "TLS handshake: the peer showed no key");
	}
	/* With accept_pinned_later() the handshake goes on whatever the
	 * chain; the result of its verification is kept all the same. */
	s->peer_ca = !s->ca_known                                 ? CTL_TLS_CA_NONE
	             : SSL_get_verify_result(s->ssl) == X509_V_OK ? CTL_TLS_CA_SIGNED
	                                                          : CTL_TLS_CA_NOT_SIGNED;
	s->ready = true;
	s->io->ready(s->userdata);
	return 0;
}

int ctl_tls_session_feed(struct ctl_tls_session *s, const uint8_t *data, size_t len,
                         char **ret_error)
{
	if (s->dead)
		return error_set(ret_error, -EPROTO, "TLS: the session failed before");
	if (len > 0 && BIO_write(s->in, data, (int)len) != (int)len)
		return -ENOMEM;
	if (!s->ready) {
		int r = handshake(s, ret_error);
		if (r < 0 || !s->ready)
			return r;
	}
	char buf[16384];
	for (;;) {
		int n = SSL_read(s->ssl, buf, sizeof(buf));
		if (n > 0) {
			s->io->plain(s->userdata, buf, (size_t)n);
			if (s->dead)
				return -EPROTO;
			continue;
		}
		int e = SSL_get_error(s->ssl, n);
		flush(s); /* a post-handshake message may want an answer */
		if (e == SSL_ERROR_WANT_READ)
			return 0;
		if (e == SSL_ERROR_ZERO_RETURN) {
			s->dead = true;
			return -ECONNRESET;
		}
		return fail(s, "record", ret_error);
	}
}

int ctl_tls_session_write(struct ctl_tls_session *s, const char *data, size_t len)
{
	if (!s->ready || s->dead)
		return -ENOTCONN;
	while (len > 0) {
		int n = SSL_write(s->ssl, data, (int)(len > 1 << 20 ? 1 << 20 : len));
		if (n <= 0) {
			s->dead = true;
			ERR_clear_error();
			return -EPROTO;
		}
		data += n;
		len -= (size_t)n;
	}
	flush(s);
	return 0;
}

bool ctl_tls_session_ready(const struct ctl_tls_session *s)
{
	return s->ready;
}

enum ctl_tls_ca ctl_tls_session_peer_ca(const struct ctl_tls_session *s)
{
	return s->ready ? s->peer_ca : CTL_TLS_CA_NONE;
}

const char *ctl_tls_session_peer_fp(const struct ctl_tls_session *s)
{
	return s->ready ? s->peer_fp : "";
}
