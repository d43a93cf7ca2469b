#!/usr/bin/env python3
"""Object-store requests per million samples, from Strata's own counters.

Sends remote-write requests shaped like Prometheus' (one sample of every
series per request, like one scrape; `--samples-per-request` series) to a
running Strata, reads `/metrics` before and after, and prints the
`strata_object_store_requests_total` and `strata_ingest_*` deltas scaled to
one million samples. With `--compact-wait` it then waits until the compactor
(serve's timer) has turned the data into blocks and deleted the segments, and
prints the requests of that too, and the bytes stored per sample if
`--data-dir` (local storage) is given. Used for docs/deploy.md.

Only the standard library: the protobuf is written by hand and the snappy
block holds literals only (valid snappy, just not compressed).

    strata serve --config c.toml &   # c.toml: [compact] every = "5s", grace = "1s"
    infra/measure-requests.py --url http://127.0.0.1:9201 --senders 1
"""

import argparse
import re
import struct
import threading
import time
import urllib.request


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def label(name, value):
    return field(1, 2, name.encode()) + field(2, 2, value.encode())


def sample(value, ts_ms):
    # Sample: double value = 1; int64 timestamp = 2.
    return field(1, 1, struct.pack("<d", value)) + field(2, 0, varint(ts_ms & 0xFFFFFFFFFFFFFFFF))


def write_request(series_labels, ts_ms, k):
    body = bytearray()
    for i, labels in enumerate(series_labels):
        ts = b"".join(field(1, 2, lb) for lb in labels)
        ts += field(2, 2, sample(float(k * (i % 97 + 1)), ts_ms))
        body += field(1, 2, ts)
    return bytes(body)


def snappy_literal(raw):
    """A snappy block of literal elements only."""
    out = bytearray(varint(len(raw)))
    for off in range(0, len(raw), 65536):
        chunk = raw[off:off + 65536]
        out.append(61 << 2)  # literal, length-1 in the next 2 bytes
        out += struct.pack("<H", len(chunk) - 1)
        out += chunk
    return bytes(out)


def metrics(url):
    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(strata_(?:object_store_requests_total|ingest_\w+|compactor_\w+))(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def delta(before, after):
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) != 0}


def show(title, d, samples):
    print(f"{title} (per million samples):")
    for k in sorted(d):
        if "_bucket" in k or k.endswith("_created"):
            continue
        print(f"  {k:90s} {d[k] * 1e6 / samples:12.1f}")


def du(path):
    import os
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:9201")
    p.add_argument("--samples", type=int, default=1_000_000)
    p.add_argument("--samples-per-request", type=int, default=2000,
                   help="series per request (Prometheus' max_samples_per_send is 2000)")
    p.add_argument("--senders", type=int, default=1, help="concurrent senders (Prometheus shards)")
    p.add_argument("--interval-s", type=int, default=15, help="scrape interval of the generated samples")
    p.add_argument("--start-hours-ago", type=int, default=48)
    p.add_argument("--compact-wait", type=float, default=0.0,
                   help="seconds to wait for compaction (serve's timer) after sending")
    p.add_argument("--data-dir", help="local storage directory, for bytes per sample")
    a = p.parse_args()

    per_req = a.samples_per_request
    requests_total = a.samples // per_req
    samples = requests_total * per_req
    start = (int(time.time()) - a.start_hours_ago * 3600) // 3600 * 3600 * 1000
    # Each sender owns its own series (and so keeps them in time order).
    series = [[[label("__name__", "measure_metric"), label("instance", f"host-{s}-{i // 50}"),
                label("job", "measure"), label("shard", str(s)), label("slot", str(i))]
               for i in range(per_req)] for s in range(a.senders)]
    before = metrics(a.url)
    t0 = time.time()
    errors = []

    def sender(s):
        n = requests_total // a.senders + (1 if s < requests_total % a.senders else 0)
        for k in range(n):
            body = snappy_literal(write_request(series[s], start + k * a.interval_s * 1000, k))
            req = urllib.request.Request(f"{a.url}/api/v1/write", data=body, method="POST", headers={
                "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                "X-Prometheus-Remote-Write-Version": "0.1.0"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    if r.status != 204:
                        errors.append(r.status)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(str(e))

    threads = [threading.Thread(target=sender, args=(s,)) for s in range(a.senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - t0
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0]}")
    after = metrics(a.url)
    print(f"sent {samples} samples in {requests_total} requests from {a.senders} senders in {took:.1f} s")
    show("ingest", delta(before, after), samples)
    if a.data_dir:
        print(f"  bytes on storage per sample (segments): {du(a.data_dir) / samples:.2f}")
    if a.compact_wait > 0:
        time.sleep(a.compact_wait)
        done = metrics(a.url)
        show("compaction", delta(after, done), samples)
        if a.data_dir:
            print(f"  bytes on storage per sample (after compaction): {du(a.data_dir) / samples:.2f}")


if __name__ == "__main__":
    main()
