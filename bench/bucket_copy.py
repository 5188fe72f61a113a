#!/usr/bin/env python3
"""Bucket to bucket on one SeaweedFS: ossimport's server-side copies
(`serverSideCopy=auto`) against the same job streamed through ossimport
(`serverSideCopy=never`) and against rclone, which copies server-side within
one remote.

  .venv/bin/python bench/bucket_copy.py [--repeat 3] [--workloads B1,B2] [--tools ...]
      [--results-dir DIR]

Run after bench/run.sh (which installs rclone into .venv and builds
target/release/ossimportctl). Workloads: B1 10,000 x 16 KiB in a tree, B2
4 x 1 GiB. Each workload's source bucket is filled once (by ossimportctl,
not timed) on one fresh server; each run then copies it into a fresh
destination bucket, is checked (object count and bytes), and the bucket is
emptied again. Tools alternate within a repetition; medians of the complete
runs are printed as a Markdown table and written to
`bench/results/bucket-copy-<UTC>.json`.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402

TOOLS = ["ossimport", "ossimport-streamed", "rclone"]
# Not run unless asked (--tools): the copy in parts (UploadPartCopy) that
# objects above serverSideCopyCutoff get, here for the 1 GiB objects of B2
# (32 parts of 32 MiB each, 4 at once).
EXTRA_TOOLS = ["ossimport-parts"]


def job(run_dir: Path, src_bucket, dst_bucket, endpoint, extra):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job.cfg").write_text(
        f"jobName=bucketcopy\nsrcType=s3\nsrcDomain={endpoint}\nsrcBucket={src_bucket}\nsrcPrefix=\n"
        f"srcAccessKey={B.AK}\nsrcSecretKey={B.SK}\ndestDomain={endpoint}\n"
        f"destBucket={dst_bucket}\ndestAccessKey={B.AK}\ndestSecretKey={B.SK}\n"
        f"multipartUploadThreshold=64m\nmultipartUploadPartSize=32m\n"
        f"uploadThreadNumPerLargeFile=4\ntaskObjectCountLimit=1000\n{extra}")
    (run_dir / "sys.properties").write_text("workerTaskThreadNum=16\n")
    return [str(B.REPO / "target/release/ossimportctl"), "run", str(run_dir / "job.cfg"),
            "--work-dir", str(run_dir / "work"), "--progress-interval", "3600"]


def tool_cmd(tool, srv, src_bucket, dst_bucket, run_dir: Path):
    env = dict(os.environ)
    if tool == "ossimport":
        return job(run_dir, src_bucket, dst_bucket, srv.endpoint, ""), env
    if tool == "ossimport-parts":
        return job(run_dir, src_bucket, dst_bucket, srv.endpoint,
                   "serverSideCopyCutoff=256m\n"), env
    if tool == "ossimport-streamed":
        return job(run_dir, src_bucket, dst_bucket, srv.endpoint, "serverSideCopy=never\n"), env
    if tool == "rclone":
        env.pop("AWS_CA_BUNDLE", None)  # rclone refuses it (test-infra.md)
        run_dir.mkdir(parents=True, exist_ok=True)
        conf = run_dir / "rclone.conf"
        conf.write_text(f"[sw]\ntype = s3\nprovider = Other\naccess_key_id = {B.AK}\n"
                        f"secret_access_key = {B.SK}\nendpoint = {srv.endpoint}\n"
                        "force_path_style = true\n")
        env["RCLONE_CONFIG"] = str(conf)
        return [str(B.VENV / "bin/rclone"), "copy", f"sw:{src_bucket}", f"sw:{dst_bucket}", "-q",
                "--transfers", "16", "--checkers", "16"], env
    raise ValueError(tool)


def empty(srv, bucket):
    pag = srv.s3.get_paginator("list_objects_v2")
    for page in pag.paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            srv.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    srv.s3.delete_bucket(Bucket=bucket)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tools", default=",".join(TOOLS),
                   help=f"comma-separated, of {','.join(TOOLS + EXTRA_TOOLS)}")
    p.add_argument("--results-dir", default=str(B.BENCH / "results"))
    p.add_argument("--workloads", default="B1,B2")
    a = p.parse_args()
    tools = a.tools.split(",")
    workloads = [("B1", B.WORK / "w1-10000x16384", lambda r: B.gen_tree(r, 10000, 16384, 100, 1)),
                 ("B2", B.WORK / "w2-4x1073741824", lambda r: B.gen_large(r, 4, 1 << 30))]
    workloads = [w for w in workloads if w[0] in a.workloads.split(",")]
    results = []
    for wl, root, gen in workloads:
        gen(root)  # reused while its marker matches
        expect = B.tree_totals(root)
        srv = B.Server(B.WORK / "s3data-b2b").start()
        try:
            srv.make_bucket("source")
            fill = B.WORK / "runs" / f"fill-{wl}"
            # A job store of an earlier fill (another server's port) would
            # be refused as a changed job.
            shutil.rmtree(fill, ignore_errors=True)
            cmd, _ = B.tool_cmd("ossimport", root, srv.endpoint, "source",
                                argparse.Namespace(part_size=32 << 20, mp_threshold=64 << 20,
                                                   part_concurrency=4, concurrency=16, agents=1,
                                                   variants={}, cluster_variants={},
                                                   ossimport_bin=str(B.REPO / "target/release/ossimportctl")),
                                fill)
            B.log(f"{wl}: filling the source bucket")
            m = B.measure(cmd, log_path=None)
            assert m["rc"] == 0 and srv.totals("source") == expect, (m, srv.totals("source"))
            for rep in range(a.repeat):
                for tool in tools:
                    dst = f"d-{tool}-{wl.lower()}-{rep}"
                    srv.make_bucket(dst)
                    run_dir = B.WORK / "runs" / f"b2b-{tool}-{wl}-{rep}"
                    shutil.rmtree(run_dir, ignore_errors=True)
                    cmd, env = tool_cmd(tool, srv, "source", dst, run_dir)
                    cpu0 = srv.cpu()
                    m = B.measure(cmd, env=env, log_path=run_dir / "output.log")
                    m["server_cpu_s"] = srv.cpu() - cpu0
                    found = srv.totals(dst)
                    m["complete"] = m["rc"] == 0 and found == expect
                    B.log(f"{wl} {tool} run {rep + 1}/{a.repeat}: wall {m['wall_s']:.2f}s "
                          f"cpu {m['cpu_s']:.2f}s server cpu {m['server_cpu_s']:.1f}s "
                          f"complete={m['complete']}")
                    results.append({"workload": wl, "tool": tool, "rep": rep, **m})
                    empty(srv, dst)
        finally:
            srv.stop()
    print("| tool | workload | wall s median (min-max) | CPU s | peak RSS MiB | server CPU s | ossimport speed / this |")
    print("|---|---|---|---|---|---|---|")
    med = {}
    for wl, _, _ in workloads:
        for tool in tools:
            runs = [r for r in results if r["workload"] == wl and r["tool"] == tool and r["complete"]]
            if not runs:
                print(f"| {tool} | {wl} | no complete run | | | | |")
                continue
            w = [r["wall_s"] for r in runs]
            med[(wl, tool)] = statistics.median(w)
            ratio = med[(wl, tool)] / med.get((wl, "ossimport"), med[(wl, tool)])
            print(f"| {tool} | {wl} | {statistics.median(w):.2f} ({min(w):.2f}-{max(w):.2f}) | "
                  f"{statistics.median(r['cpu_s'] for r in runs):.2f} | "
                  f"{statistics.median(r['peak_rss_mib'] for r in runs):.0f} | "
                  f"{statistics.median(r['server_cpu_s'] for r in runs):.1f} | {ratio:.2f} |")
    out = Path(a.results_dir) / f"bucket-copy-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"machine": B.machine(), "results": results}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
