#!/usr/bin/env bash
# Gives flowtap (and pcap-replay) the capabilities live capture needs as file
# capabilities, so they run as a non-root user: BPF and NET_ADMIN (load and
# attach XDP/TC programs, create host mode's veth), NET_RAW (AF_XDP sockets),
# IPC_LOCK (pin the sockets' buffers).
#
# File capabilities go to whoever may run the file: on a host with other
# users, give GROUP, and only its members may run them (mode 0750, as
# Wireshark's dumpcap). Without GROUP (the container image, whose only user
# is flowtap's) the files stay runnable by all. A systemd unit needs none of
# this: it grants the service alone the capabilities (AmbientCapabilities).
#
# flowtap's are permitted only (+p), not effective: flowtap raises them itself
# when it captures (live.rs, take_up_permitted_capabilities). With the
# effective bit set, the kernel refuses to exec the file at all where the
# bounding set cannot grant every one of them: the hub's container, which drops
# them all, or the image run for `-r` without --cap-add. pcap-replay, a test
# tool run only where it is granted them, keeps them effective.
set -euo pipefail
bin="${1:?usage: install-caps.sh DIR-WITH-BINARIES [GROUP]}"
group="${2:-}"
if [ -n "$group" ]; then
    chgrp "$group" "$bin/flowtap" "$bin/pcap-replay"
    chmod 0750 "$bin/flowtap" "$bin/pcap-replay"
fi
setcap cap_bpf,cap_net_admin,cap_net_raw,cap_ipc_lock+p "$bin/flowtap"
setcap cap_net_raw,cap_ipc_lock+ep "$bin/pcap-replay"
getcap "$bin/flowtap" "$bin/pcap-replay"
