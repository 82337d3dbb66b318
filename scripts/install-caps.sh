#!/usr/bin/env bash
# Gives flowtap (and pcap-replay) the capabilities live capture needs as file
# capabilities, so they run as a non-root user: BPF and NET_ADMIN (load and
# attach XDP/TC programs, create host mode's veth), NET_RAW (AF_XDP sockets),
# IPC_LOCK (pin the sockets' buffers).
set -euo pipefail
bin="${1:?usage: install-caps.sh DIR-WITH-BINARIES}"
setcap cap_bpf,cap_net_admin,cap_net_raw,cap_ipc_lock+ep "$bin/flowtap"
setcap cap_net_raw,cap_ipc_lock+ep "$bin/pcap-replay"
getcap "$bin/flowtap" "$bin/pcap-replay"
