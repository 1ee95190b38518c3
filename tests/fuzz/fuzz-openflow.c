/* Fuzz target: the OpenFlow 1.3 decoders and the LLDP frames of packet-ins (with the key and
 * signature of an announcement). Any bytes either fail to decode or decode to a message that
 * encodes back to the same bytes; formatting never crashes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openflow/ofp.h"
#include "switch/lldp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads every bucket's counters, so that one outside the message is seen
 * by the sanitizer. */
static void ignore_group(void *userdata, const struct of13_group_stats *gs)
{
	(void)userdata;
	for (unsigned i = 0; i < gs->n_buckets; i++) {
		uint64_t packets, bytes;
		of13_group_stats_bucket(gs, i, &packets, &bytes);
	}
}

static void ignore_port(void *userdata, const struct of13_port *p)
{
	(void)userdata;
	if (strlen(p->name) > OF13_PORT_NAME_LEN)
		__builtin_trap();
}

static void ignore_port_stats(void *userdata, const struct of13_port_stats *st)
{
	(void)userdata;
	(void)st;
}

static void ignore_flow(void *userdata, const struct of13_flow_stats *fs)
{
	(void)userdata;
	(void)fs;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *null = fopen("/dev/null", "w");
	if (null) {
		of13_format(null, data, size);
		fclose(null);
	}
	struct of13_flow_mod fm;
	struct of13_header h;
	if (of13_flow_mod_decode(data, size, &fm) == OF13_OK &&
	    of13_header_decode(data, size, &h) == OF13_OK) {
		struct obuf b = {0};
		of13_flow_mod_encode(&b, h.xid, &fm);
		/* Padding bytes are not kept, so compare by decoding again. */
		struct of13_flow_mod again;
		if (of13_finish(&b) != 0 || b.len != size ||
		    of13_flow_mod_decode(b.data, b.len, &again) != OF13_OK ||
		    again.n_instructions != fm.n_instructions || again.match.n != fm.match.n)
			__builtin_trap();
		obuf_free(&b);
	}
	struct of13_hello hello;
	of13_hello_decode(data, size, &hello);
	struct of13_packet_in pin;
	if (of13_packet_in_decode(data, size, &pin) == OF13_OK &&
	    (pin.data + pin.data_len != data + size))
		__builtin_trap(); /* the frame is the message's tail */
	struct of13_packet_out pout;
	of13_packet_out_decode(data, size, &pout);
	struct of13_port_status ps;
	if (of13_port_status_decode(data, size, &ps) == OF13_OK &&
	    strlen(ps.port.name) > OF13_PORT_NAME_LEN)
		__builtin_trap();
	uint16_t flags;
	of13_port_desc_reply_decode(data, size, &flags, ignore_port, NULL);
	of13_port_stats_reply_decode(data, size, &flags, ignore_port_stats, NULL);
	struct of13_group_mod gm;
	if (of13_group_mod_decode(data, size, &gm) == OF13_OK)
		of13_group_mod_free(&gm);
	of13_group_stats_reply_decode(data, size, &flags, ignore_group, NULL);
	of13_flow_stats_reply_decode(data, size, &flags, ignore_flow, NULL);
	static struct of13_flow_stats_request fr;
	of13_flow_stats_request_decode(data, size, &fr);
	struct of13_role_msg role;
	of13_role_decode(data, size, &role);
	struct of13_switch_config sc;
	of13_set_config_decode(data, size, &sc);
	/* The frames packet-ins carry: LLDP from switches and AEEs. */
	struct lldp_info info;
	if (lldp_decode(data, size, &info) == 0 && info.kind == LLDP_ANNOUNCE &&
	    strlen(info.host) >= sizeof(info.host))
		__builtin_trap();
	/* A signed announcement's key and signature, as the master checks them
	 * when the key is the admission's. */
	if (lldp_decode(data, size, &info) == 0 && info.spki_len) {
		char fp[CTL_TLS_FP_LEN];
		ctl_tls_fp_of_spki(info.spki, info.spki_len, fp);
		lldp_verify(&info, fp, info.time_ms);
	}
	return 0;
}
