#!/bin/bash
# The original's console.sh, mapped to ossimportctl so scripts built around it
# keep working:  console.sh submit [job.cfg] | start | stop | stat | retry [job] |
#                clean job | version | deploy   (import.sh: the one-click run)
# Standalone scripts used the fixed job name local_test and conf/local_job.cfg;
# those defaults are kept. `stat` prints the original's JobName:/JobState: block.
set -euo pipefail
OSS_IMPORT_HOME="${OSS_IMPORT_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
CTL="${OSSIMPORTCTL:-ossimportctl}"
# The original's work-directory override.
if [ -n "${OSS_IMPORT_WORK_DIR:-}" ]; then export OSSIMPORT_WORK_DIR="$OSS_IMPORT_WORK_DIR"; fi
SYS="$OSS_IMPORT_HOME/conf/sys.properties"
sys_args=()
[ -f "$SYS" ] && sys_args=(--sys "$SYS")
default_job="$OSS_IMPORT_HOME/conf/job.cfg"
[ -f "$default_job" ] || default_job="$OSS_IMPORT_HOME/conf/local_job.cfg"

usage() {
  echo "usage: $0 deploy|start|stop|submit [job_cfg]|stat [job_name]|retry [job_name]|clean job_name|version" >&2
  exit 2
}
[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
  submit)  exec "$CTL" submit "${1:-$default_job}" "${sys_args[@]}" ;;
  start)   exec "$CTL" start "${sys_args[@]}" ;;
  stop)    exec "$CTL" stop "${sys_args[@]}" ;;
  stat)    exec "$CTL" stat --legacy ${1:+"$1"} "${sys_args[@]}" ;;
  retry)   exec "$CTL" retry ${1:+"$1"} "${sys_args[@]}" ;;
  clean)   exec "$CTL" clean "${1:-local_test}" "${sys_args[@]}" ;;
  version) exec "$CTL" version "${sys_args[@]}" ;;
  deploy)  exec "$CTL" deploy "${sys_args[@]}" ;;
  *)       usage ;;
esac
