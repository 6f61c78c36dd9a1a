#!/usr/bin/env bash
# The kafka.sh suite with the capture on syscall tracepoints: the path of kernels without
# the sock_send_length/sock_recv_length tracepoints (before 6.3), forced by capture.hooks;
# the walker follows large Fetch responses there too.
CAPTURE_HOOKS=syscalls exec bash "$(dirname "$0")/kafka.sh"
