#!/usr/bin/env bash
# The faults_churn.sh suite with the capture on syscall tracepoints, where entries are keyed
# by tgid and fd and a process's exit closes its fds without a close syscall.
CAPTURE_HOOKS=syscalls exec bash "$(dirname "$0")/faults_churn.sh"
