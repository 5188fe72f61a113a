#!/bin/bash
# One-click standalone import, as the original's import.sh: submit the job,
# start the service, show `stat` every 5 s until the job ends; on Failed
# offer to retry the failed files, on Succeed offer to stop the service.
#
#   import.sh [--yes | --no] [job_cfg]
#
# --yes answers every question with Yes (retrying a failed job at most
# OSS_IMPORT_MAX_RETRIES times, default 3), --no with No: for unattended
# runs. Without them the questions are asked on the terminal.
# Exit codes: 0 done, 1 submit refused (or not cleaned), 2 job failed and
# not retried, 3 the service stopped while the job ran.
# Logs as the original's: logs/submit.log, logs/job_stat.log, logs/retry.log.
set -uo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
OSS_IMPORT_HOME="${OSS_IMPORT_HOME:-$HERE}"
export OSS_IMPORT_HOME
CONSOLE="$HERE/console.sh"
POLL="${OSS_IMPORT_POLL_SECONDS:-5}"
MAX_RETRIES="${OSS_IMPORT_MAX_RETRIES:-3}"

answer=""
job_cfg=""
for arg in "$@"; do
  case "$arg" in
    -y | --yes) answer=yes ;;
    -n | --no) answer=no ;;
    -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "import.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    *) job_cfg="$arg" ;;
  esac
done
if [ -z "$job_cfg" ]; then
  job_cfg="$OSS_IMPORT_HOME/conf/local_job.cfg"
  [ -f "$job_cfg" ] || job_cfg="$OSS_IMPORT_HOME/conf/job.cfg"
fi
if [ ! -f "$job_cfg" ]; then
  echo "Error: job configuration:$job_cfg not found." >&2
  exit 1
fi
# The job's name, for clean and retry (the original fixed it as local_test).
job_name="$(sed -n 's/^[[:space:]]*jobName[[:space:]]*=[[:space:]]*//p' "$job_cfg" | tr -d '\r' | tail -n 1)"
job_name="${job_name%"${job_name##*[![:space:]]}"}"
job_name="${job_name:-local_test}"
logs="$OSS_IMPORT_HOME/logs"
mkdir -p "$logs"

# yes_or_no QUESTION: 0 for Yes, 1 for No.
yes_or_no() {
  local x
  if [ -n "$answer" ]; then
    echo "$*, Yes or No: $answer"
    [ "$answer" = yes ]
    return
  fi
  while true; do
    echo -n "$*, Yes or No: "
    if ! read -r x; then
      echo
      return 1
    fi
    case "$x" in
      y | Y | yes | Yes | YES) return 0 ;;
      n | N | no | No | NO) return 1 ;;
      *) echo "Answer yes or no" ;;
    esac
  done
}

# Submit; a job of the same name left from before may be cleaned first.
while true; do
  bash "$CONSOLE" submit "$job_cfg" >"$logs/submit.log" 2>&1
  rc=$?
  cat "$logs/submit.log"
  [ "$rc" -eq 0 ] && break
  if grep -q "already exists" "$logs/submit.log" && yes_or_no "Clean the previous job"; then
    bash "$CONSOLE" stop >/dev/null 2>&1
    bash "$CONSOLE" clean "$job_name" || exit 1
  else
    exit 1
  fi
done

bash "$CONSOLE" start || exit 3

retries=0
while true; do
  sleep "$POLL"
  bash "$CONSOLE" stat >"$logs/job_stat.log" 2>&1
  rc=$?
  cat "$logs/job_stat.log"
  if [ "$rc" -eq 3 ]; then
    echo "Error: the import service is not running; see ${OSSIMPORT_WORK_DIR:-the work directory}/ossimportd.log, then run import.sh again (the job resumes)." >&2
    exit 3
  fi
  if grep -q "JobState:Failed" "$logs/job_stat.log"; then
    if [ "$answer" = yes ] && [ "$retries" -ge "$MAX_RETRIES" ]; then
      echo "The job still fails after $retries retries; see: ossimportctl errors $job_name" >&2
      exit 2
    fi
    if yes_or_no "Retry the failed tasks"; then
      retries=$((retries + 1))
      bash "$CONSOLE" retry "$job_name" >"$logs/retry.log" 2>&1
      cat "$logs/retry.log"
    else
      exit 2
    fi
  fi
  grep -q "JobState:Succeed" "$logs/job_stat.log" && break
done
echo "Import to oss completed."

if yes_or_no "Stop import service"; then
  bash "$CONSOLE" stop
fi
exit 0
