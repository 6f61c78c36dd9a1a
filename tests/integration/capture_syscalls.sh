#!/usr/bin/env bash
# capture.sh with the capture on syscall tracepoints (kernels before 6.3), forced by capture.hooks.
CAPTURE_HOOKS=syscalls exec bash "$(dirname "$0")/capture.sh"
