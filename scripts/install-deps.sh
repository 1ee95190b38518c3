#!/bin/sh
# Install every Debian package ETTM needs to build, test and run its lab.
# Idempotent and non-interactive; safe to run again.
set -eu

PACKAGES="
  build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
  libuv1-dev libjansson-dev libnftables-dev libmnl-dev libnetfilter-queue-dev libcmocka-dev
  libraft-dev
  libtss2-dev libssl-dev openssl swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0
  nftables iptables iproute2 iputils-ping ethtool procps psmisc util-linux tzdata
  openvswitch-switch openvswitch-common
  iperf3 python3 python3-pytest curl wget natpmpc iputils-tracepath tcpdump coturn
"

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: must run as root (apt-get install)" >&2
	exit 1
fi

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Package scripts must not start services: OVS's init script loads a
# kernel module this project does not use (the lab runs OVS's userspace
# datapath with private daemons). policy-rc.d is Debian's switch for that.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	made_policy=1
fi
status=0
apt-get install -y -qq --no-install-recommends $missing || status=$?
[ -n "$made_policy" ] && rm -f "$policy"
exit $status
