#!/usr/bin/env python3
"""Watch mode (incrementalMode=watch): latency and the cost of watching.

    bench/watch.sh [--seconds 30] [--rate 100] [--big-rate 10] [--tree-files 1000000]

Latency: `ossimportctl run` (release build) on a watched local tree into a
fresh SeaweedFS; after its first pass, a writer thread creates files at a
steady rate (small files at --rate per second, then 1 MiB files at
--big-rate per second), each written and closed in one go, and a poller
reads the job store every 20 ms: a file's latency is from its close to the
first poll that sees its row verified (so it overstates by up to 20 ms).
Prints p50/p95/p99 per load.

Cost: daemon/examples/watch_only.rs watches a generated tree of
--tree-files files (--per-dir per directory) with inotify and (as root)
fanotify, and reports the inotify watches held, the set-up time and the RSS
added. The latency runs use the default backend (fanotify as root).
"""

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import AK, SK, MIB, REPO, WORK, Server, gen_tree, log  # noqa: E402


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))]


def passes_ended(db: Path):
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        n = c.execute("SELECT count(*) FROM passes WHERE ended_at IS NOT NULL").fetchone()[0]
        c.close()
        return n
    except sqlite3.Error:
        return 0


def latency(name, rate, seconds, size, a):
    base = WORK / "runs" / f"watch-{name}"
    shutil.rmtree(base, ignore_errors=True)
    src, work = base / "src", base / "work"
    src.mkdir(parents=True)
    (src / "seed").write_bytes(b"seed")
    srv = Server(base / "s3").start()
    try:
        srv.make_bucket("watch")
        cfg = base / "job.cfg"
        cfg.write_text(
            f"jobName=watch{name}\nsrcType=local\nsrcPrefix={src}/\ndestDomain={srv.endpoint}\n"
            f"destBucket=watch\ndestAccessKey={AK}\ndestSecretKey={SK}\n"
            "isIncremental=true\nincrementalModeInterval=3600\nincrementalMode=watch\n"
            f"watchSettleSeconds={a.settle}\ntaskObjectCountLimit=1000\n")
        errlog = open(base / "run.log", "w")
        p = subprocess.Popen([a.bin, "run", str(cfg), "--work-dir", str(work)],
                             stdout=subprocess.DEVNULL, stderr=errlog)
        db = work / "ossimport.db"
        deadline = time.time() + 60
        while passes_ended(db) < 1:
            if time.time() > deadline:
                raise SystemExit(f"{name}: the first pass did not end; see {base}/run.log")
            time.sleep(0.1)
        total = int(rate * seconds)
        closed = {}
        body = os.urandom(size)
        (src / "new").mkdir()

        def writer():
            t0 = time.time()
            for i in range(total):
                due = t0 + i / rate
                now = time.time()
                if due > now:
                    time.sleep(due - now)
                rel = f"new/f{i:06d}"
                with open(src / rel, "wb") as f:
                    f.write(i.to_bytes(8, "little") + body[8:])
                closed[rel] = time.time()

        w = threading.Thread(target=writer)
        w.start()
        seen = {}
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        end = time.time() + seconds + 120
        while (len(seen) < total or w.is_alive()) and time.time() < end:
            now = time.time()
            for (rel,) in c.execute(
                    "SELECT rel_path FROM objects WHERE state = 'verified' AND rel_path LIKE 'new/%'"):
                if rel not in seen and rel in closed:
                    seen[rel] = now - closed[rel]
            time.sleep(0.02)
        w.join()
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
        lat = list(seen.values())
        out = {"load": name, "files": total, "size": size, "rate_per_s": rate,
               "verified": len(seen), "settle_s": a.settle,
               "p50_s": round(percentile(lat, 0.5), 3), "p95_s": round(percentile(lat, 0.95), 3),
               "p99_s": round(percentile(lat, 0.99), 3), "max_s": round(max(lat), 3)}
        log(json.dumps(out))
        return out
    finally:
        srv.stop()


def cost(a):
    root = WORK / f"watch-tree-{a.tree_files}-{a.per_dir}"
    gen_tree(root, a.tree_files, 0, a.per_dir, 7)
    out = []
    backends = ["inotify", "fanotify"] if os.geteuid() == 0 else ["inotify"]
    for backend in backends:
        env = dict(os.environ, OSSIMPORT_WATCH=backend)
        text = subprocess.run([a.watch_only, str(root)], check=True, capture_output=True,
                              text=True, env=env).stdout
        r = json.loads(text.strip().splitlines()[-1])
        r["files"] = a.tree_files
        log(json.dumps(r))
        out.append(r)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rate", type=float, default=100, help="small files per second")
    ap.add_argument("--small-size", type=int, default=4096)
    ap.add_argument("--big-rate", type=float, default=10, help="1 MiB files per second")
    ap.add_argument("--settle", type=int, default=1, help="watchSettleSeconds")
    ap.add_argument("--tree-files", type=int, default=1_000_000)
    ap.add_argument("--per-dir", type=int, default=100)
    ap.add_argument("--bin", default=str(REPO / "target/release/ossimportctl"))
    ap.add_argument("--watch-only", default=str(REPO / "target/release/examples/watch_only"))
    a = ap.parse_args()
    results = {
        "latency": [latency("small", a.rate, a.seconds, a.small_size, a),
                    latency("1mib", a.big_rate, a.seconds, MIB, a)],
        "cost": cost(a),
    }
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    out = REPO / "bench" / "results" / f"watch-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    print("| load | files | rate/s | p50 | p95 | p99 | max |")
    print("|---|---|---|---|---|---|---|")
    for r in results["latency"]:
        print(f"| {r['load']} ({r['size']} B) | {r['verified']}/{r['files']} | {r['rate_per_s']} | "
              f"{r['p50_s']} s | {r['p95_s']} s | {r['p99_s']} s | {r['max_s']} s |")
    for c in results["cost"]:
        print(f"\n{c['backend']}: {c['files']} files in {c['dirs']} directories, {c['watches']} inotify watches, "
              f"set up in {c['setup_secs']:.2f} s, RSS +{(c['rss_after_kib'] - c['rss_before_kib']) / 1024:.1f} MiB "
              f"({c['rss_per_watch_bytes']:.0f} B per directory)")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
