/* The peer API's mutual TLS (src/api/tls.c): the identity on disk, two
 * sessions fed each other's bytes in memory, and a ctl_server over TLS
 * called with ctl_call() and on one ctl_conn on a real loop, with gates
 * that admit one key and not another. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/client.h"
#include "api/server.h"
#include "api/tls.h"
#include "ports.h"

static void rm_rf(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static struct ctl_tls *identity(char *dir, size_t size, const char *name)
{
	snprintf(dir, size, "/tmp/ettm-test-tls-XXXXXX");
	assert_non_null(mkdtemp(dir));
	struct ctl_tls *t = NULL;
	char *error = NULL;
	assert_int_equal(ctl_tls_open(dir, name, &t, &error), 0);
	assert_null(error);
	return t;
}

/* The key and certificate are made once, mode 0600, and read back as the
 * same key; the fingerprint is that of the SubjectPublicKeyInfo as the
 * openssl tool computes it. */
static void test_identity(void **state)
{
	char dir[64], path[128], cmd[512], out[128] = "";
	struct ctl_tls *t = identity(dir, sizeof(dir), "h1");
	char fp[CTL_TLS_FP_LEN];
	snprintf(fp, sizeof(fp), "%s", ctl_tls_fingerprint(t));
	assert_int_equal(strlen(fp), 64);
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, CTL_TLS_KEY_FILE);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(path, sizeof(path), "%s/%s", dir, CTL_TLS_CERT_FILE);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	snprintf(cmd, sizeof(cmd),
	         "openssl x509 -in %s -noout -pubkey | openssl pkey -pubin -outform DER | "
	         "sha256sum | cut -d' ' -f1",
	         path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, sizeof(out), p));
	pclose(p);
	out[strcspn(out, "\n")] = '\0';
	assert_string_equal(out, fp);
	snprintf(cmd, sizeof(cmd), "openssl x509 -in %s -noout -subject | grep -q 'CN = h1'", path);
	assert_int_equal(system(cmd), 0);
	ctl_tls_free(t);

	/* The second start reads the same key. */
	char *error = NULL;
	assert_int_equal(ctl_tls_open(dir, "h1", &t, &error), 0);
	assert_string_equal(ctl_tls_fingerprint(t), fp);
	ctl_tls_free(t);

	/* A key others can read is refused, and says so. */
	snprintf(path, sizeof(path), "%s/%s", dir, CTL_TLS_KEY_FILE);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(ctl_tls_open(dir, "h1", &t, &error), -EPERM);
	assert_non_null(strstr(error, "must be 0600"));
	free(error);
	error = NULL;
	/* A certificate that is not of the key is refused. */
	assert_int_equal(chmod(path, 0600), 0);
	char other[64];
	struct ctl_tls *o = identity(other, sizeof(other), "h2");
	snprintf(cmd, sizeof(cmd), "cp %s/%s %s/%s", other, CTL_TLS_CERT_FILE, dir,
	         CTL_TLS_CERT_FILE);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(ctl_tls_open(dir, "h1", &t, &error), -EBADMSG);
	assert_non_null(strstr(error, "is not the certificate of the key"));
	free(error);
	ctl_tls_free(o);
	rm_rf(other);
	rm_rf(dir);
}

/* ---- two sessions in memory ---- */

struct end {
	struct ctl_tls_session *s;
	struct end *peer;
	uint8_t wire[65536]; /* what this end sent, not yet fed to the peer */
	size_t wire_len;
	char got[1024];
	size_t got_len;
	int ready;
};

static void end_send(void *userdata, const uint8_t *data, size_t len)
{
	struct end *e = userdata;
	assert_true(e->wire_len + len <= sizeof(e->wire));
	memcpy(e->wire + e->wire_len, data, len);
	e->wire_len += len;
}

static void end_plain(void *userdata, const char *data, size_t len)
{
	struct end *e = userdata;
	assert_true(e->got_len + len <= sizeof(e->got));
	memcpy(e->got + e->got_len, data, len);
	e->got_len += len;
}

static void end_ready(void *userdata)
{
	((struct end *)userdata)->ready++;
}

static const struct ctl_tls_io end_io = {end_send, end_plain, end_ready};

/* Feeds each end what the other sent until neither sends more. */
static int pump(struct end *a, struct end *b)
{
	for (int round = 0; round < 10 && (a->wire_len || b->wire_len); round++) {
		struct end *from[2] = {a, b};
		for (int i = 0; i < 2; i++) {
			struct end *e = from[i];
			uint8_t buf[65536];
			size_t n = e->wire_len;
			memcpy(buf, e->wire, n);
			e->wire_len = 0;
			char *error = NULL;
			int r = ctl_tls_session_feed(e->peer->s, buf, n, &error);
			free(error);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* A signature by the identity's key verifies against its SubjectPublicKeyInfo
 * and no other; what is not exactly one P-256 key is refused as such; the
 * openssl tool verifies it too, so it is plain ECDSA over SHA-256. */
static void test_sign_verify(void **state)
{
	(void)state;
	char dir[64], other_dir[64], path[128], cmd[512];
	struct ctl_tls *t = identity(dir, sizeof(dir), "h1");
	struct ctl_tls *o = identity(other_dir, sizeof(other_dir), "h2");
	static const char data[] = "what is signed";
	uint8_t sig[CTL_TLS_SIG_MAX], spki_plus[256];
	size_t sig_len = 0, len, other_len;
	assert_int_equal(ctl_tls_sign(t, data, sizeof(data), sig, 8, &sig_len), -ENOBUFS);
	assert_int_equal(sig_len, 0);
	assert_int_equal(ctl_tls_sign(t, data, sizeof(data), sig, sizeof(sig), &sig_len), 0);
	const uint8_t *spki = ctl_tls_spki(t, &len), *other = ctl_tls_spki(o, &other_len);
	assert_int_equal(ctl_tls_verify(spki, len, data, sizeof(data), sig, sig_len), 0);
	assert_int_equal(ctl_tls_verify(spki, len, data, sizeof(data) - 1, sig, sig_len),
	                 -EKEYREJECTED);
	assert_int_equal(ctl_tls_verify(other, other_len, data, sizeof(data), sig, sig_len),
	                 -EKEYREJECTED);
	assert_int_equal(ctl_tls_verify(spki, len, data, sizeof(data), sig, sig_len - 1),
	                 -EKEYREJECTED);
	assert_int_equal(ctl_tls_verify(spki, len - 1, data, sizeof(data), sig, sig_len), -EBADMSG);
	memcpy(spki_plus, spki, len);
	spki_plus[len] = 0;
	assert_int_equal(ctl_tls_verify(spki_plus, len + 1, data, sizeof(data), sig, sig_len),
	                 -EBADMSG);
	assert_int_equal(ctl_tls_verify(spki, 0, data, sizeof(data), sig, sig_len), -EBADMSG);

	snprintf(path, sizeof(path), "%s/sig", dir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(sig, 1, sig_len, f), sig_len);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
	         "printf 'what is signed\\000' | openssl dgst -sha256 -prverify %s/tls-key.pem "
	         "-signature %s >/dev/null",
	         dir, path);
	assert_int_equal(system(cmd), 0);
	ctl_tls_free(t);
	ctl_tls_free(o);
	rm_rf(dir);
	rm_rf(other_dir);
}

static void test_sessions(void **state)
{
	char da[64], db[64];
	struct ctl_tls *ta = identity(da, sizeof(da), "a"), *tb = identity(db, sizeof(db), "b");
	struct end c = {0}, s = {0};
	c.peer = &s;
	s.peer = &c;
	assert_int_equal(ctl_tls_session_new(ta, false, &end_io, &c, &c.s), 0);
	assert_int_equal(ctl_tls_session_new(tb, true, &end_io, &s, &s.s), 0);
	assert_false(ctl_tls_session_ready(c.s));
	assert_string_equal(ctl_tls_session_peer_fp(c.s), "");
	assert_int_equal(ctl_tls_session_write(c.s, "x", 1), -ENOTCONN);
	char *error = NULL;
	assert_int_equal(ctl_tls_session_start(c.s, &error), 0);
	assert_true(c.wire_len > 0); /* the ClientHello */
	assert_int_equal(pump(&c, &s), 0);
	assert_int_equal(c.ready, 1);
	assert_int_equal(s.ready, 1);
	/* Each side knows the other's key. */
	assert_string_equal(ctl_tls_session_peer_fp(c.s), ctl_tls_fingerprint(tb));
	assert_string_equal(ctl_tls_session_peer_fp(s.s), ctl_tls_fingerprint(ta));
	/* Application bytes both ways, and never in clear on the wire. */
	const char *req = "{\"id\":1,\"cmd\":\"store.propose\"}\n";
	assert_int_equal(ctl_tls_session_write(c.s, req, strlen(req)), 0);
	assert_null(memmem(c.wire, c.wire_len, "store.propose", 13));
	assert_int_equal(pump(&c, &s), 0);
	assert_int_equal(s.got_len, strlen(req));
	assert_memory_equal(s.got, req, strlen(req));
	assert_int_equal(ctl_tls_session_write(s.s, "ok\n", 3), 0);
	assert_int_equal(pump(&c, &s), 0);
	assert_int_equal(c.got_len, 3);
	/* A flipped bit in a record kills the session. */
	assert_int_equal(ctl_tls_session_write(c.s, "more", 4), 0);
	c.wire[c.wire_len - 1] ^= 1;
	assert_int_equal(ctl_tls_session_feed(s.s, c.wire, c.wire_len, &error), -EPROTO);
	assert_non_null(error);
	free(error);
	error = NULL;
	assert_int_equal(ctl_tls_session_feed(s.s, (const uint8_t *)"", 0, &error), -EPROTO);
	free(error);
	ctl_tls_session_free(c.s);
	ctl_tls_session_free(s.s);

	/* A plaintext request to a TLS server is refused, not read. */
	struct end p = {0};
	assert_int_equal(ctl_tls_session_new(tb, true, &end_io, &p, &p.s), 0);
	error = NULL;
	assert_int_equal(ctl_tls_session_feed(p.s, (const uint8_t *)req, strlen(req), &error),
	                 -EPROTO);
	assert_non_null(strstr(error, "TLS handshake"));
	assert_int_equal(p.got_len, 0);
	free(error);
	ctl_tls_session_free(p.s);
	ctl_tls_free(ta);
	ctl_tls_free(tb);
	rm_rf(da);
	rm_rf(db);
}

/* ---- the channel to the switches: a CA instead of pinning ---- */

/* A CA in @ca_dir, and in @dir a key with a certificate it signed for a
 * server (extendedKeyUsage serverAuth) at IP address @ip, named as the
 * identity's files so that ctl_tls_open() plays the switch with them. */
static void switch_identity(const char *ca_dir, const char *dir, const char *ip)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
	         "set -e; cd %s; [ -f ca.pem ] || openssl req -x509 -newkey ec -pkeyopt "
	         "ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -subj /CN=ca -days 1 "
	         "2>/dev/null; printf 'extendedKeyUsage = serverAuth\nsubjectAltName = IP:%s\n' "
	         ">ext; openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	         "-keyout %s/tls-key.pem -subj /CN=switch -out req 2>/dev/null; chmod 600 "
	         "%s/tls-key.pem; openssl x509 -req -in req -CA ca.pem -CAkey ca.key -set_serial 7 "
	         "-days 1 -extfile ext -out %s/tls-cert.pem 2>/dev/null",
	         ca_dir, ip, dir, dir, dir);
	assert_int_equal(system(cmd), 0);
}

/* Dials a switch at @ip with @agent (@ip NULL: a peer API session, pinned,
 * to @sw as a peer); the other end is a TLS server of @sw. Returns 0 once
 * both ends are ready, setting *@ret_ca to what the network's CA said of
 * @sw's certificate. */
static int dial(struct ctl_tls *agent, struct ctl_tls *sw, const char *ip, enum ctl_tls_ca *ret_ca)
{
	struct end c = {0}, s = {0};
	c.peer = &s;
	s.peer = &c;
	if (ip)
		assert_int_equal(ctl_tls_session_new_switch(agent, ip, &end_io, &c, &c.s), 0);
	else
		assert_int_equal(ctl_tls_session_new(agent, false, &end_io, &c, &c.s), 0);
	assert_int_equal(ctl_tls_session_new(sw, true, &end_io, &s, &s.s), 0);
	char *error = NULL;
	assert_int_equal(ctl_tls_session_start(c.s, &error), 0);
	int r = pump(&c, &s);
	if (r == 0 && !c.ready)
		r = -EPROTO;
	if (r == 0) {
		assert_string_equal(ctl_tls_session_peer_fp(c.s), ctl_tls_fingerprint(sw));
		*ret_ca = ctl_tls_session_peer_ca(c.s);
	}
	ctl_tls_session_free(c.s);
	ctl_tls_session_free(s.s);
	return r;
}

static int dial_switch(struct ctl_tls *agent, struct ctl_tls *sw, const char *ip)
{
	enum ctl_tls_ca ca;
	return dial(agent, sw, ip, &ca);
}

/* What the network's CA says of a peer API peer's certificate. */
static enum ctl_tls_ca peer_ca(struct ctl_tls *agent, struct ctl_tls *peer)
{
	enum ctl_tls_ca ca = (enum ctl_tls_ca) - 1;
	assert_int_equal(dial(agent, peer, NULL, &ca), 0);
	return ca;
}

/* The agent accepts a switch only with a certificate of the CA it was given
 * that names the address it dialled; it uses its own identity's key. */
static void test_switch_session(void **state)
{
	(void)state;
	char ca[64] = "/tmp/ettm-test-tls-ca-XXXXXX", sw_dir[64] = "/tmp/ettm-test-tls-sw-XXXXXX";
	char da[64], dself[64], path[128];
	assert_non_null(mkdtemp(ca));
	assert_non_null(mkdtemp(sw_dir));
	switch_identity(ca, sw_dir, "10.77.255.1");
	struct ctl_tls *agent = identity(da, sizeof(da), "h1");
	struct ctl_tls *sw = NULL, *self_signed = identity(dself, sizeof(dself), "s9");
	char *error = NULL;
	assert_int_equal(ctl_tls_open(sw_dir, "s1", &sw, &error), 0);

	/* No CA yet: no session to a switch, and peers are judged by their
	 * key alone. */
	assert_int_equal(peer_ca(agent, sw), CTL_TLS_CA_NONE);
	struct ctl_tls_session *x = NULL;
	assert_int_equal(ctl_tls_session_new_switch(agent, "10.77.255.1", &end_io, NULL, &x),
	                 -EINVAL);
	/* A CA file that is not one says which file. */
	snprintf(path, sizeof(path), "%s/ext", ca);
	assert_int_equal(ctl_tls_set_network_ca(agent, path, &error), -EINVAL);
	assert_non_null(strstr(error, path));
	free(error);
	error = NULL;
	snprintf(path, sizeof(path), "%s/ca.pem", ca);
	assert_int_equal(ctl_tls_set_network_ca(agent, path, &error), 0);

	assert_int_equal(dial_switch(agent, sw, "10.77.255.1"), 0);
	/* A peer API session goes on whatever the certificate (the gate
	 * decides), and says whether the CA signed it. */
	assert_int_equal(peer_ca(agent, sw), CTL_TLS_CA_SIGNED);
	assert_int_equal(peer_ca(agent, self_signed), CTL_TLS_CA_NOT_SIGNED);
	/* The right CA, another switch's address: refused. */
	assert_int_equal(dial_switch(agent, sw, "10.77.255.2"), -EPROTO);
	/* A certificate no CA signed: refused. */
	assert_int_equal(dial_switch(agent, self_signed, "10.77.255.1"), -EPROTO);

	ctl_tls_free(agent);
	ctl_tls_free(sw);
	ctl_tls_free(self_signed);
	rm_rf(ca);
	rm_rf(sw_dir);
	rm_rf(da);
	rm_rf(dself);
}

/* ---- a server and calls over TLS on a loop ---- */

struct gate {
	char admitted_fp[CTL_TLS_FP_LEN]; /* the one key admitted, as "h1" */
	int asked;
};

/* Admitted keys may say anything, others only trust.challenge. */
static int gate(void *userdata, const char *fp, enum ctl_tls_ca ca, const char *cmd,
                const char *dialled, char *ret_host, size_t host_size, char **ret_error)
{
	struct gate *g = userdata;
	(void)ca;
	(void)dialled;
	g->asked++;
	if (strcmp(fp, g->admitted_fp) == 0) {
		snprintf(ret_host, host_size, "h1");
		return 0;
	}
	if (strcmp(cmd, "trust.challenge") == 0)
		return 0;
	*ret_error = strdup("key is no admitted host's");
	return -EACCES;
}

static int handler(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                   json_t **ret_result, char **ret_error)
{
	const char *host = ctl_client_peer_host(client);
	*ret_result = json_pack("{s:s?, s:s?, s:I}", "host", host, "fp", ctl_client_peer_fp(client),
	                        "conn", (json_int_t)ctl_client_id(client));
	return 0;
}

struct result {
	int status, done;
	char error[256], host[64], fp[CTL_TLS_FP_LEN];
	json_int_t conn; /* the server's id of the connection that answered */
};

static void call_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct result *r = userdata;
	r->status = status;
	r->done = 1;
	snprintf(r->error, sizeof(r->error), "%s", error ? error : "");
	const char *h = json_string_value(json_object_get(result, "host"));
	const char *f = json_string_value(json_object_get(result, "fp"));
	snprintf(r->host, sizeof(r->host), "%s", h ? h : "");
	snprintf(r->fp, sizeof(r->fp), "%s", f ? f : "");
	r->conn = json_integer_value(json_object_get(result, "conn"));
}

static struct result call(uv_loop_t *loop, const char *addr, const char *cmd)
{
	struct result r = {0};
	assert_int_equal(ctl_call(loop, addr, cmd, json_object(), 3000, call_cb, &r), 0);
	while (!r.done)
		uv_run(loop, UV_RUN_ONCE);
	return r;
}

/* A loop, and a server on it speaking with @ts on a free loopback port
 * (@addr). */
static void serve(uv_loop_t *loop, struct ctl_server *server, struct ctl_tls *ts, char *addr,
                  size_t size)
{
	assert_int_equal(uv_loop_init(loop), 0);
	ctl_tls_set_default(ts);
	snprintf(addr, size, "127.0.0.1:%u", loopback_port());
	assert_int_equal(ctl_server_start_tcp(server, loop, addr, handler, NULL), 0);
}

/* The server's hook for what its gate refused: counts, and the third
 * refusal gets another reason. */
static int refusals;

static void refused(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                    char **inout_reason)
{
	(void)userdata;
	assert_non_null(ctl_client_peer_fp(client));
	assert_string_equal(req->cmd, "store.status");
	if (++refusals == 3) {
		free(*inout_reason);
		*inout_reason = strdup("too many requests");
	}
}

static void server_closed(struct ctl_server *s)
{
	(void)s;
}

static void test_server_gate(void **state)
{
	char ds[64], da[64], dx[64];
	struct ctl_tls *ts = identity(ds, sizeof(ds), "srv");
	struct ctl_tls *ta = identity(da, sizeof(da), "h1");
	struct ctl_tls *tx = identity(dx, sizeof(dx), "stranger");
	struct gate sg = {0}, cg = {0};
	snprintf(sg.admitted_fp, sizeof(sg.admitted_fp), "%s", ctl_tls_fingerprint(ta));
	snprintf(cg.admitted_fp, sizeof(cg.admitted_fp), "%s", ctl_tls_fingerprint(ts));
	ctl_tls_set_gate(ts, gate, &sg);
	uv_loop_t loop;
	struct ctl_server server;
	char addr[64];
	serve(&loop, &server, ts, addr, sizeof(addr));

	/* The admitted key: any command, and the server knows its host. */
	ctl_tls_set_default(ta);
	struct result r = call(&loop, addr, "store.status");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.host, "h1");
	assert_string_equal(r.fp, ctl_tls_fingerprint(ta));
	/* A key no host was admitted with: only the join protocol. The
	 * server's hook hears of each refusal and may change its reason. */
	server.refused = refused;
	ctl_tls_set_default(tx);
	r = call(&loop, addr, "store.status");
	assert_int_equal(r.status, -EREMOTEIO);
	assert_string_equal(r.error, "key is no admitted host's");
	assert_int_equal(refusals, 1);
	r = call(&loop, addr, "store.status");
	assert_int_equal(refusals, 2);
	r = call(&loop, addr, "store.status");
	assert_int_equal(r.status, -EREMOTEIO);
	assert_string_equal(r.error, "too many requests");
	r = call(&loop, addr, "trust.challenge");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.host, "");
	assert_string_equal(r.fp, ctl_tls_fingerprint(tx));
	/* The caller's gate judges the server's key: a client that admits
	 * only the server's key talks, one that admits another refuses before
	 * sending anything. */
	ctl_tls_set_gate(ta, gate, &cg);
	ctl_tls_set_default(ta);
	int asked = sg.asked;
	r = call(&loop, addr, "store.status");
	assert_int_equal(r.status, 0);
	assert_int_equal(cg.asked, 1);
	snprintf(cg.admitted_fp, sizeof(cg.admitted_fp), "%s", ctl_tls_fingerprint(tx));
	r = call(&loop, addr, "store.status");
	assert_int_equal(r.status, -EACCES);
	assert_string_equal(r.error, "key is no admitted host's");
	assert_int_equal(sg.asked, asked + 1); /* the refused request never arrived */
	/* A plaintext client gets no answer from the TLS server. */
	ctl_tls_set_default(NULL);
	r = call(&loop, addr, "store.status");
	assert_true(r.status < 0);
	assert_int_not_equal(r.status, -EREMOTEIO);

	ctl_server_close(&server, server_closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	ctl_tls_free(ts);
	ctl_tls_free(ta);
	ctl_tls_free(tx);
	rm_rf(ds);
	rm_rf(da);
	rm_rf(dx);
}

static struct result conn_call(uv_loop_t *loop, struct ctl_conn *c, const char *cmd)
{
	struct result r = {0};
	assert_int_equal(ctl_conn_call(c, cmd, json_object(), 3000, call_cb, &r), 0);
	while (!r.done)
		uv_run(loop, UV_RUN_ONCE);
	return r;
}

/* One connection, one handshake, several calls: the server answers them
 * all on the same connection with the same key; a refusal by the server's
 * gate or by the caller's leaves the connection of use. */
static void test_conn_over_tls(void **state)
{
	(void)state;
	char ds[64], da[64];
	struct ctl_tls *ts = identity(ds, sizeof(ds), "srv");
	struct ctl_tls *ta = identity(da, sizeof(da), "h1");
	struct gate sg = {0}, cg = {0};
	/* The server hears the client's key only for the join protocol; the
	 * client speaks with the server's key. */
	snprintf(sg.admitted_fp, sizeof(sg.admitted_fp), "%s", "none");
	snprintf(cg.admitted_fp, sizeof(cg.admitted_fp), "%s", ctl_tls_fingerprint(ts));
	ctl_tls_set_gate(ts, gate, &sg);
	ctl_tls_set_gate(ta, gate, &cg);
	uv_loop_t loop;
	struct ctl_server server;
	char addr[64];
	serve(&loop, &server, ts, addr, sizeof(addr));

	ctl_tls_set_default(ta);
	struct ctl_conn *c;
	assert_int_equal(ctl_conn_open(&loop, addr, &c), 0);
	struct result first = conn_call(&loop, c, "trust.challenge");
	assert_int_equal(first.status, 0);
	assert_string_equal(first.fp, ctl_tls_fingerprint(ta));
	assert_true(first.conn > 0);
	/* Refused by the server's gate: the connection carries on. */
	struct result r = conn_call(&loop, c, "store.status");
	assert_int_equal(r.status, -EREMOTEIO);
	assert_string_equal(r.error, "key is no admitted host's");
	r = conn_call(&loop, c, "trust.challenge");
	assert_int_equal(r.status, 0);
	assert_true(r.conn == first.conn);
	assert_string_equal(r.fp, ctl_tls_fingerprint(ta));
	/* Refused by the caller's own gate, once the handshake is done:
	 * nothing is sent, the caller is told at once, and the connection
	 * carries the next call. */
	snprintf(cg.admitted_fp, sizeof(cg.admitted_fp), "%s", "none");
	int asked = sg.asked;
	assert_int_equal(ctl_conn_call(c, "store.status", json_object(), 3000, call_cb, &r),
	                 -EACCES);
	snprintf(cg.admitted_fp, sizeof(cg.admitted_fp), "%s", ctl_tls_fingerprint(ts));
	r = conn_call(&loop, c, "trust.challenge");
	assert_int_equal(r.status, 0);
	assert_true(r.conn == first.conn);
	assert_int_equal(sg.asked, asked + 1);
	ctl_conn_close(c);

	ctl_server_close(&server, server_closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	ctl_tls_set_default(NULL);
	ctl_tls_free(ts);
	ctl_tls_free(ta);
	rm_rf(ds);
	rm_rf(da);
}

/* A connection that never starts its TLS handshake holds an fd, a session
 * and buffers: the server ends it after 5 s (a stranger could otherwise
 * open them until the agent runs out of descriptors). */
static void test_handshake_deadline(void **state)
{
	(void)state;
	char ds[64];
	struct ctl_tls *ts = identity(ds, sizeof(ds), "srv");
	uv_loop_t loop;
	struct ctl_server server;
	char addr[64];
	serve(&loop, &server, ts, addr, sizeof(addr));
	struct sockaddr_in sa;
	assert_int_equal(ctl_parse_address(addr, &sa), 0);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	assert_true(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS);
	uv_update_time(&loop);
	uint64_t start = uv_now(&loop);
	bool closed = false;
	char byte;
	while (!closed && uv_now(&loop) - start < 8000) {
		uv_run(&loop, UV_RUN_NOWAIT);
		closed = read(fd, &byte, 1) == 0;
		usleep(2000);
		uv_update_time(&loop);
	}
	uint64_t took = uv_now(&loop) - start;
	assert_true(closed);
	assert_true(took >= 4500); /* and closed within the 8 s above */
	close(fd);
	ctl_server_close(&server, server_closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	ctl_tls_set_default(NULL);
	ctl_tls_free(ts);
	rm_rf(ds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_identity),           cmocka_unit_test(test_sign_verify),
	    cmocka_unit_test(test_sessions),           cmocka_unit_test(test_switch_session),
	    cmocka_unit_test(test_server_gate),        cmocka_unit_test(test_conn_over_tls),
	    cmocka_unit_test(test_handshake_deadline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
