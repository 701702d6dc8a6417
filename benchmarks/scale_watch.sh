#!/bin/bash
# Sample a running `scale.py --one stream` process every 30 s: its peak and current resident
# memory (Linux VmHWM, VmRSS), its CPU time (all threads), the label files written so far and
# the batch profile files in its work folder (which stage it is in: labels first, then the
# index/levels passes, then one profile file per batch measured).
#   benchmarks/scale_watch.sh PID WORKDIR/stream-SIZE > watch.log
pid=$1
dir=$2
while kill -0 "$pid" 2>/dev/null; do
  hwm=$(awk '/VmHWM/ {print $2}' /proc/"$pid"/status)
  rss=$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status)
  cpu=$(ps -o time= -p "$pid")
  chunks=$(find "$dir" -path '*labels*' -type f 2>/dev/null | wc -l)
  batches=$(ls "$dir"/work 2>/dev/null | wc -l)
  echo "$(date +%H:%M:%S) hwm_mb=$((hwm / 1024)) rss_mb=$((rss / 1024)) cpu=$cpu" \
       "label_files=$chunks batch_files=$batches load=$(cut -d' ' -f1 /proc/loadavg)"
  sleep 30
done
