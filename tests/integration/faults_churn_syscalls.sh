#!/usr/bin/env bash
# The faults_churn.sh suite with the capture on syscall tracepoints, where entries are keyed
# by tgid and fd and a process's exit closes its fds without a close syscall. 3,000 processes:
# on these hooks every syscall of the host pays for two daemons, and a loaded CI host took
# ten minutes for 10,000 (faults_churn.sh runs those on the socket hooks).
CAPTURE_HOOKS=syscalls CHURN_PROCS=${CHURN_PROCS:-3000} exec bash "$(dirname "$0")/faults_churn.sh"
