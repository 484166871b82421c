#!/usr/bin/env bash
# A workflow in bash alone: drop 20 jobs into a spool with shell tools, wait for them, sum their outputs.
#
# Needs a manager serving the spool, e.g. in another shell or earlier in the same batch script:
#     fsq manager --spool "$FSQ_SPOOL" &          (or: python -m fsqueue manager --spool ...)
# Then:
#     FSQ_SPOOL=/path/to/spool bash examples/bash-workflow.sh
#
# Nothing here calls fsq: publishing is printf + mv (docs/spool.md), the job ids come from the
# receipts the manager writes, and the states are read from the status files with sed.
set -euo pipefail

spool=${FSQ_SPOOL:?set FSQ_SPOOL to the spool directory}
out=${OUT_DIR:-$PWD/bash-workflow-out}
tasks=${TASKS:-20}
mkdir -p "$out"
run=$$-$RANDOM   # submission file names are never reused in a spool: make them unique per run

# One field of a status or receipt file. They are compact one-line JSON; jq does this too:
#   jq -r .state FILE
field() { sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^\",]*\\).*/\\1/p" "$1"; }

# 1. Drop the jobs: write under a dot-name (ignored by the manager), then rename into place.
for i in $(seq 1 "$tasks"); do
    name="square-$run-$i.json"
    printf '{"name": "square-%d", "script": "echo $((%d * %d))", "stdout": "%s/square-%d.txt"}\n' \
        "$i" "$i" "$i" "$out" "$i" > "$spool/incoming/.$name"
    mv "$spool/incoming/.$name" "$spool/incoming/$name"
done
echo "submitted $tasks jobs to $spool"

# 2. Wait: first for each receipt (the manager took the file in), then for a final state.
final='SUCCEEDED|FAILED|CANCELED|REJECTED'
failed=0
for i in $(seq 1 "$tasks"); do
    receipt="$spool/receipts/square-$run-$i.json"
    # `: < DIR` opens the directory: on NFS this node then asks the server again instead of trusting a
    # cached "no such file" (docs/filesystems.md).
    until : < "$spool/receipts" && [ -s "$receipt" ]; do sleep 0.2; done
    if [ "$(field "$receipt" state)" = REJECTED ]; then
        echo "square-$i rejected: $(cat "$receipt")" >&2; failed=$((failed + 1)); continue
    fi
    id=$(sed -n 's/.*"ids":\["\([0-9a-z]*\)".*/\1/p' "$receipt")
    until : < "$spool/status" && [ -s "$spool/status/$id.json" ] && [[ $(field "$spool/status/$id.json" state) =~ ^($final)$ ]]; do
        sleep 0.2
    done
    state=$(field "$spool/status/$id.json" state)
    [ "$state" = SUCCEEDED ] || { echo "square-$i $state" >&2; failed=$((failed + 1)); }
done

# 3. Aggregate.
sum=0
for i in $(seq 1 "$tasks"); do sum=$((sum + $(cat "$out/square-$i.txt"))); done
echo "sum of squares 1..$tasks = $sum ($failed failed)"
[ "$failed" -eq 0 ]
