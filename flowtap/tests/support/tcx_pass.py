"""Stands in for a CNI's TC programs (Cilium's on kernels with TCX): attaches
to an interface's TCX ingress and egress a program that returns TC_ACT_OK,
as a CNI's does when it lets a packet go on. TCX ends a chain at any verdict
but TCX_NEXT, so a program placed after this one never sees the packet.

Usage: tcx_pass.py IFACE. Prints "attached" once both links hold, and keeps
them (BPF links: they go with this process) until stdin closes.

Raw bpf(2) through ctypes, x86_64 only (the syscall number); no BPF
toolchain needed."""

import ctypes
import os
import struct
import sys

SYS_BPF = 321  # x86_64
BPF_PROG_LOAD, BPF_LINK_CREATE = 5, 28
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_TCX_INGRESS, BPF_TCX_EGRESS = 46, 47

libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, 128)
    fd = libc.syscall(SYS_BPF, cmd, buf, len(buf))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return fd


def main() -> None:
    iface = sys.argv[1]
    # r0 = 0 (TC_ACT_OK); exit
    insns = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    code = ctypes.create_string_buffer(insns, len(insns))
    license = ctypes.create_string_buffer(b"GPL")
    # union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license,
    # log_level, log_size, log_buf, kern_version, prog_flags, prog_name.
    attr = struct.pack("<IIQQIIQII16s", BPF_PROG_TYPE_SCHED_CLS, 2, ctypes.addressof(code),
                       ctypes.addressof(license), 0, 0, 0, 0, 0, b"cni_like")
    prog = bpf(BPF_PROG_LOAD, attr)
    with open(f"/sys/class/net/{iface}/ifindex") as f:
        ifindex = int(f.read())
    # BPF_LINK_CREATE: prog_fd, target_ifindex, attach_type, flags (0:
    # appended to the chain, as a program attached before flowtap's is).
    links = [bpf(BPF_LINK_CREATE, struct.pack("<IIII", prog, ifindex, at, 0))
             for at in (BPF_TCX_INGRESS, BPF_TCX_EGRESS)]
    print("attached", flush=True)
    sys.stdin.read()
    for fd in links + [prog]:
        os.close(fd)


if __name__ == "__main__":
    main()
