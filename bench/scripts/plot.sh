#!/usr/bin/env bash
# Plots the idle memory curve (RSS per connection against connections, one
# line per server) from a results directory written by report.sh:
#   bench/scripts/plot.sh bench/results/<date>-<commit>   # -> memory.png there
# Needs gnuplot (Debian: gnuplot-nox) and python3. Reads fanout-bench's
# snake_case JSON; a single run's own charts come from fanout-bench -plot.
set -euo pipefail
dir=${1:?results directory}
python3 - "$dir" <<'PY'
import glob, json, os, sys
d = sys.argv[1]
rows = {}
for f in glob.glob(os.path.join(d, "idle-*-*.json")):
    r = json.load(open(f))["result"]
    server = os.path.basename(f).rsplit("-", 1)[1][:-5]
    rows.setdefault(server, []).append((r["connected"], r["rss_per_conn_bytes"] / 1024))
for server, pts in rows.items():
    with open(os.path.join(d, f"memory-{server}.dat"), "w") as out:
        for n, kib in sorted(pts):
            out.write(f"{n} {kib:.3f}\n")
PY
cd "$dir"
plots=$(for f in memory-*.dat; do s=${f#memory-}; s=${s%.dat}; printf "'%s' using 1:2 with linespoints title '%s'," "$f" "$s"; done)
gnuplot <<GP
set terminal pngcairo size 900,540 font 'sans,11' noenhanced
set output 'memory.png'
set title 'Idle memory per connection (server RSS delta / connections), 2-core VM, loopback'
set xlabel 'connections held by one server process'
set ylabel 'KiB of RSS per connection'
set logscale y
set grid
set key top left
plot ${plots%,}
GP
echo "wrote $dir/memory.png"
