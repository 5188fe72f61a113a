#!/usr/bin/env python3
"""What the store's CPU pays for the checksums a client sends, and for ossimport's uploads.

One SeaweedFS (scripts/s3-server.sh), its bucket's volume grown before the
first measure, and W2's shape uploaded again and again in turn: --files
objects of --file-size at once, each in --part parts, --part-streams of a
file's parts in flight. From boto3 (payload unsigned, no checksum of its
own), with each header set: nothing; Content-MD5 on every part; an upload
started with CRC-64/NVME (ChecksumType=FULL_OBJECT) whose parts carry
x-amz-checksum-crc64nvme and whose Complete the full-object value, as
ossimport sends them. With --ossimport BIN, also `BIN run` of bench/work's
W2 tree of that shape (bench.py generates it), the same job settings.
Prints the server's user+sys CPU seconds per GiB of each, medians of
--rounds, and writes them to bench/results/server-cost-*.json.

    .venv/bin/python bench/server_cost.py [--files 4] [--file-size 256m] [--part 32m]
        [--part-streams 4] [--rounds 3] [--ossimport target/release/ossimportctl]
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BENCH, WORK, Server, gen_large, machine, parse_size  # noqa: E402

# CRC-64/NVME (reflected, poly 0x9a6c9329ac4bc9b5, init and xorout all ones).
_POLY = 0x9A6C9329AC4BC9B5
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)
_MASK = (1 << 64) - 1


def crc64nvme_update(crc: int, data: bytes) -> int:
    """The running register (before the final xor); start from all ones."""
    t = _TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def zeros_operator(n: int):
    """The register's map for n zero bytes, as the images of its 64 bits."""
    def apply(cols, v):
        r, j = 0, 0
        while v:
            if v & 1:
                r ^= cols[j]
            v >>= 1
            j += 1
        return r

    one = [_TABLE[(1 << j) & 0xFF] ^ ((1 << j) >> 8) for j in range(64)]
    result = [1 << j for j in range(64)]
    while n:
        if n & 1:
            result = [apply(one, c) for c in result]
        one = [apply(one, c) for c in one]
        n >>= 1
    return lambda v: apply(result, v)


def b64(v: int, n: int) -> str:
    return base64.b64encode(v.to_bytes(n, "big")).decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=4, help="objects uploaded at once")
    ap.add_argument("--file-size", default="256m")
    ap.add_argument("--part", default="32m", help="part size (one part body, sent again and again)")
    ap.add_argument("--part-streams", type=int, default=4, help="parts of a file in flight")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ossimport", metavar="BIN", help="also upload the W2 tree with `BIN run`")
    a = ap.parse_args()
    part_size, file_size = parse_size(a.part), parse_size(a.file_size)
    parts = max(1, file_size // part_size)
    file_size = parts * part_size
    body = os.urandom(part_size)
    # An object is `parts` copies of the body; the register is linear:
    # after another copy it is c0 ^ zeros(register).
    c0 = crc64nvme_update(0, body)
    zeros = zeros_operator(part_size)
    reg = c0 ^ zeros(_MASK)
    part_nvme = b64(reg ^ _MASK, 8)
    full = reg
    for _ in range(parts - 1):
        full = c0 ^ zeros(full)
    full_nvme = b64(full ^ _MASK, 8)
    part_md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    tree = WORK / f"w2-{a.files}x{file_size}"
    if a.ossimport:
        gen_large(tree, a.files, file_size)

    srv = Server(WORK / "server-cost").start()
    try:
        s3 = boto3.client(
            "s3", endpoint_url=srv.endpoint, aws_access_key_id="testkey",
            aws_secret_access_key="testsecret", region_name="us-east-1",
            config=Config(s3={"addressing_style": "path", "payload_signing_enabled": False},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          max_pool_connections=a.files * a.part_streams * 2))
        bucket = "server-cost"
        srv.make_bucket(bucket)
        s3.put_object(Bucket=bucket, Key="warm", Body=body)  # the volume is grown here

        def upload(kind, key):
            kw = ({"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "FULL_OBJECT"}
                  if kind == "crc64nvme" else {})
            up = s3.create_multipart_upload(Bucket=bucket, Key=key, **kw)["UploadId"]

            def one(n):
                pk = {}
                if kind == "md5":
                    pk["ContentMD5"] = part_md5
                if kind == "crc64nvme":
                    pk["ChecksumCRC64NVME"] = part_nvme
                r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n,
                                   Body=body, **pk)
                return {"ETag": r["ETag"], "PartNumber": n}

            with ThreadPoolExecutor(a.part_streams) as ex:
                done = list(ex.map(one, range(1, parts + 1)))
            ck = ({"ChecksumCRC64NVME": full_nvme, "ChecksumType": "FULL_OBJECT"}
                  if kind == "crc64nvme" else {})
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
                                         MultipartUpload={"Parts": done}, **ck)

        def ossimport(r):
            run = WORK / "server-cost-run"
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir()
            (run / "job.cfg").write_text(
                f"jobName=servercost\nsrcType=local\nsrcPrefix={tree}/\ndestDomain={srv.endpoint}\n"
                f"destBucket={bucket}\ndestPrefix=ossimport/{r}/\ndestAccessKey=testkey\n"
                f"destSecretKey=testsecret\nmultipartUploadThreshold={part_size}\n"
                f"multipartUploadPartSize={part_size}\nuploadThreadNumPerLargeFile={a.part_streams}\n")
            (run / "sys.properties").write_text(f"workerTaskThreadNum={a.files}\n")
            subprocess.run([a.ossimport, "run", str(run / "job.cfg"), "--work-dir", str(run / "work"),
                            "--progress-interval", "3600"], check=True, stdout=subprocess.DEVNULL)
            shutil.rmtree(run)

        def upload_all(kind, r):
            if kind == "ossimport":
                return ossimport(r)
            with ThreadPoolExecutor(a.files) as ex:
                list(ex.map(lambda i: upload(kind, f"{kind}/{r}/{i}"), range(a.files)))

        kinds = ["none", "md5", "crc64nvme"] + (["ossimport"] if a.ossimport else [])
        per_gib = {k: [] for k in kinds}
        walls = {k: [] for k in kinds}
        gib = a.files * file_size / (1 << 30)
        for r in range(a.rounds):
            for k in kinds:
                c0, t0 = srv.cpu(), time.time()
                upload_all(k, r)
                walls[k].append(time.time() - t0)
                per_gib[k].append((srv.cpu() - c0) / gib)
                print(f"[server-cost] round {r + 1} {k:9} server {per_gib[k][-1]:.2f} CPU-s/GiB, "
                      f"wall {walls[k][-1]:.2f} s", flush=True)
        print("| headers | server CPU-s per GiB, median (min-max) | wall s, median |")
        print("|---|---|---|")
        for k in kinds:
            v = per_gib[k]
            print(f"| {k} | {statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f}) | "
                  f"{statistics.median(walls[k]):.2f} |")
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
        out = BENCH / "results" / f"server-cost-{stamp}.json"
        out.write_text(json.dumps({
            "settings": {"files": a.files, "file_size": file_size, "part": part_size,
                         "part_streams": a.part_streams, "rounds": a.rounds, "ossimport": a.ossimport},
            "machine": machine(), "server_cpu_per_gib": per_gib, "wall_s": walls}, indent=1))
        print(f"results: {out}")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
