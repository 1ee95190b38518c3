/* Mutual TLS 1.3 for the agents' peer API (docs/trust.md, "Who may speak"):
 * the agent's TLS identity (a P-256 key and its certificate in its state
 * directory), the gate that says which peers may be spoken with, and
 * a TLS session over a byte stream with no I/O of its own (OpenSSL with
 * memory BIOs), which server.c and client.c put on their libuv streams and
 * the unit tests and the fuzzer feed bytes.
 *
 * Peers are not authenticated by a PKI: a certificate's issuer does not
 * matter (it is self-signed at first start, or signed by the network's CA
 * for the switches: ctl_tls_set_network_ca()), and what identifies a peer
 * is the SHA-256 of its certificate's SubjectPublicKeyInfo (DER), its
 * fingerprint. TLS 1.3's CertificateVerify proves that the peer holds that
 * key (RFC 8446, 4.4.3); the gate then decides whether the key is one the
 * cluster admitted. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A fingerprint in hex, with its NUL. */
#define CTL_TLS_FP_LEN 65
/* The files of the identity, in the agent's state directory. */
#define CTL_TLS_KEY_FILE  "tls-key.pem"
#define CTL_TLS_CERT_FILE "tls-cert.pem"

struct ctl_tls;
struct ctl_tls_session;

/* What the network's CA (ctl_tls_set_network_ca()) says of a peer's
 * certificate: nothing when this agent has none; else whether it signed it
 * (the chain, the dates and the purpose all good). */
enum ctl_tls_ca {
	CTL_TLS_CA_NONE,
	CTL_TLS_CA_SIGNED,
	CTL_TLS_CA_NOT_SIGNED,
};

/* Decides whether the peer whose key has fingerprint @fp, and whose
 * certificate the network's CA judged @ca, may be spoken with about @cmd
 * (the request's command on a server, the call's on a client). @dialled is
 * the address ("A.B.C.D:PORT") a client called, so
 * that the gate can hold the key to the host at that address; NULL on a
 * server. Returns 0 when it may, filling @ret_host (@host_size bytes) with
 * the admitted host the key belongs to ("" when it belongs to none: then
 * only the join protocol passes); or a negative errno (-EACCES) with
 * *ret_error saying why not. */
typedef int (*ctl_tls_gate_fn)(void *userdata, const char *fp, enum ctl_tls_ca ca, const char *cmd,
                               const char *dialled, char *ret_host, size_t host_size,
                               char **ret_error);

/* Loads the identity from @state_dir, or creates it there at first start
 * (a P-256 key and a self-signed certificate naming @name, both files mode
 * 0600). Returns 0 or a negative errno with *ret_error. */
int ctl_tls_open(const char *state_dir, const char *name, struct ctl_tls **ret_tls,
                 char **ret_error);
void ctl_tls_free(struct ctl_tls *tls);

/* This agent's fingerprint (hex), and its SubjectPublicKeyInfo (DER). */
const char *ctl_tls_fingerprint(const struct ctl_tls *tls);
const uint8_t *ctl_tls_spki(const struct ctl_tls *tls, size_t *ret_len);

/* Installs the gate (NULL: every peer may speak, with no host). */
void ctl_tls_set_gate(struct ctl_tls *tls, ctl_tls_gate_fn gate, void *userdata);
/* Asks the gate; see ctl_tls_gate_fn. */
int ctl_tls_check(const struct ctl_tls *tls, const char *fp, enum ctl_tls_ca ca, const char *cmd,
                  const char *dialled, char *ret_host, size_t host_size, char **ret_error);

/* The identity this process's peer API server and calls use: set once by
 * the agent at start (NULL: plaintext, as unit tests and the benchmarks'
 * baseline run). */
void ctl_tls_set_default(struct ctl_tls *tls);
struct ctl_tls *ctl_tls_default(void);

/* The fingerprint (hex) of the SubjectPublicKeyInfo @spki (DER). */
void ctl_tls_fp_of_spki(const uint8_t *spki, size_t len, char ret_fp[CTL_TLS_FP_LEN]);

/* The longest signature ctl_tls_sign() makes: an ECDSA P-256 signature in
 * DER (SEQUENCE of two INTEGERs of at most 33 bytes each) is at most 72. */
#define CTL_TLS_SIG_MAX 72

/* Signs @len bytes at @data with the identity's key: ECDSA P-256 over
 * SHA-256, the signature in DER (RFC 5480, 2.2 and RFC 3279, 2.2.3). Writes
 * at most @size bytes to @sig and sets *@ret_len. Returns 0, -ENOBUFS when
 * @size is too small, or -EIO when OpenSSL fails. */
int ctl_tls_sign(const struct ctl_tls *tls, const void *data, size_t len, uint8_t *sig, size_t size,
                 size_t *ret_len);

/* Checks that @sig (@sig_len bytes, DER) is a signature over @len bytes at
 * @data by the P-256 key whose SubjectPublicKeyInfo (DER) is @spki. Holds no
 * state, so anyone may call it with bytes off the wire. Returns 0 when it
 * is; -EBADMSG when @spki is not exactly one P-256 public key; -EKEYREJECTED
 * when the signature is not that key's over these bytes. */
int ctl_tls_verify(const uint8_t *spki, size_t spki_len, const void *data, size_t len,
                   const uint8_t *sig, size_t sig_len);

/* What a session does with what it makes: @send puts TLS records on the
 * wire, @plain hands on application bytes the peer sent, @ready tells that
 * the handshake is done (ctl_tls_session_peer_fp() is then known). Each may
 * be called from inside ctl_tls_session_start(), _feed() and _write(). */
struct ctl_tls_io {
	void (*send)(void *userdata, const uint8_t *data, size_t len);
	void (*plain)(void *userdata, const char *data, size_t len);
	void (*ready)(void *userdata);
};

/* A session of @tls as the server (@server) or the client. Returns 0 or
 * -ENOMEM. */
int ctl_tls_session_new(struct ctl_tls *tls, bool server, const struct ctl_tls_io *io,
                        void *userdata, struct ctl_tls_session **ret_session);
void ctl_tls_session_free(struct ctl_tls_session *s);

/* A client sends its ClientHello; a server waits for one. Returns 0 or a
 * negative errno with *ret_error. */
int ctl_tls_session_start(struct ctl_tls_session *s, char **ret_error);

/* Takes @len bytes from the wire: advances the handshake, or decrypts.
 * Returns 0, or -EPROTO with *ret_error when the peer's bytes are not TLS
 * 1.3 this side accepts (the session is then dead), or -ECONNRESET when
 * the peer closed the session. */
int ctl_tls_session_feed(struct ctl_tls_session *s, const uint8_t *data, size_t len,
                         char **ret_error);

/* Encrypts @len application bytes (after ready). Returns 0 or a negative
 * errno. */
int ctl_tls_session_write(struct ctl_tls_session *s, const char *data, size_t len);

/* The channel to the OpenFlow switches (docs/switch.md, "The OpenFlow
 * channel") is the exception to pinning: a switch keeps no ETTM state, so
 * it cannot know which keys the cluster admitted, and it is judged, and
 * judges this agent, by a CA instead. The switch's certificate must chain
 * to the CA in @ca_file and name the switch's IP address; this agent shows
 * its identity's certificate, which the switches accept only if that CA
 * (or another they trust) signed it. TLS 1.3, as between agents. The
 * peer API's sessions learn the CA as well, to tell a certificate of the
 * network from another (ctl_tls_session_peer_ca()). Returns 0 or a
 * negative errno with *ret_error. */
int ctl_tls_set_network_ca(struct ctl_tls *tls, const char *ca_file, char **ret_error);
/* Whether ctl_tls_set_network_ca() was called on @tls (false for NULL). */
bool ctl_tls_has_network_ca(const struct ctl_tls *tls);
/* A client session to the switch at @ip (dotted quad), after
 * ctl_tls_set_network_ca(). Returns 0, -EINVAL or -ENOMEM. */
int ctl_tls_session_new_switch(struct ctl_tls *tls, const char *ip, const struct ctl_tls_io *io,
                               void *userdata, struct ctl_tls_session **ret_session);

bool ctl_tls_session_ready(const struct ctl_tls_session *s);
/* What the network's CA says of the peer's certificate, once ready. */
enum ctl_tls_ca ctl_tls_session_peer_ca(const struct ctl_tls_session *s);
/* The peer's fingerprint once ready, else "". */
const char *ctl_tls_session_peer_fp(const struct ctl_tls_session *s);
