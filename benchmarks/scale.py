"""Whole thin sections out of core: memory, throughput, linear cost, a 2-worker cluster.

    python benchmarks/scale.py              # sizes 4096 8192 16384 20480; in memory at 8192;
                                            # the 20480 section on a 2-worker local cluster
    python benchmarks/scale.py --quick      # sizes 2048 4096; in memory and cluster at 4096
    python benchmarks/scale.py --held-out   # the checks (streamed = in memory, cluster =
                                            # one process) on held-out seeds, at 4096
    python benchmarks/scale.py --sizes 4096 8192 --in-memory 4096 --cluster 4096
    python benchmarks/scale.py --report results/a.log results/b.json   # saved runs, no run

The section: a mosaic of ``make_thin_section`` scenes of 2048 x 2048 px at 1 um/px (30
crystals each), written to an OME-Zarr store first (cached in ``--cache``, default
``/tmp/napari-zonation-scale``): twelve scenes (seeds 200-211; held out: 300-311), each
placed in its eight rotations and mirror images, tile after tile. A section of N x N px is
the store's top-left N x N corner, read lazily.

Each run is its own process, so that its peak resident memory (Linux ``VmHWM``) is its own:

- **stream N**: ``run_mosaic_pipeline`` on the zarr section (labels written to a zarr store,
  every stage streamed, this process's threads): seconds per stage, crystals, peak RSS.
- **memory N**: ``run_pipeline`` on the same N x N pixels as one numpy array (the in-memory
  path): seconds per stage and peak RSS; the streamed labels, crystal table and profiles
  must equal it (checked, and printed as ``same``).
- **cluster N**: the streamed run on a ``distributed.LocalCluster`` of 2 worker processes
  (1 thread each): labels and tables compared with the one-process run (``same``); peak RSS
  of this process and of each worker.

Every run records per stage its wall seconds and its CPU seconds (this process's threads and
finished children, sampled against the stage's wall interval; a cluster run adds its
workers' CPU seconds: on a shared machine CPU seconds are the fairer measure of cost), its
peak RSS and SHA-256 hashes of its labels, crystal table and profiles.

Printed: one row per run, the throughput ratio stream / memory at the in-memory size, the
cost of each stage per megapixel at every size (linear when it stays flat), and the plot
``--plot`` (default ``docs/images/scale.png``): seconds per stage against the section's
megapixels. Timings on a shared machine are noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
TILE = 2048
N_SCENES = 12
DEV_SEEDS = 200
HELD_OUT_SEEDS = 300
CRYSTALS_PER_TILE = 30
STAGES = ("segment", "index", "levels", "measure", "describe", "cluster")


# --------------------------------------------------------------------------------------------
# the section


def _variant(tile: np.ndarray, k: int) -> np.ndarray:
    out = np.rot90(tile, k % 4)
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def build_section(cache: Path, side: int, seed0: int) -> Path:
    """The OME-Zarr section of ``side`` px (a multiple of 2048), built once and cached."""
    from napari_zonation import make_thin_section
    from napari_zonation.mosaic import ZarrWriter

    path = cache / f"section-{side}-seed{seed0}.zarr"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    scenes = []
    t = time.perf_counter()
    for i in range(N_SCENES):
        npy = cache / f"scene-{TILE}-{CRYSTALS_PER_TILE}-seed{seed0 + i}.npy"
        if not npy.exists():
            s = make_thin_section((TILE, TILE), n_crystals=CRYSTALS_PER_TILE, seed=seed0 + i)
            np.save(npy, np.clip(s.image, 0, 255).astype(np.uint8))
        scenes.append(np.load(npy))
        print(f"  scene {i + 1}/{N_SCENES} ({time.perf_counter() - t:.0f} s)", flush=True)
    n = side // TILE
    writer = ZarrWriter(path, (side, side), np.uint8, kind="image", pixel_size_um=1.0)
    with writer:
        for r in range(n):
            band = np.empty((TILE, side), np.uint8)
            for c in range(n):
                v = r * n + c
                band[:, c * TILE:(c + 1) * TILE] = _variant(scenes[v % N_SCENES], v // N_SCENES)
            writer.array[r * TILE:(r + 1) * TILE] = band
        writer.finish({"scenes": N_SCENES, "first_seed": seed0})
    print(f"  wrote {path} ({time.perf_counter() - t:.0f} s)", flush=True)
    return path


# --------------------------------------------------------------------------------------------
# one run, in its own process


def _peak_mb() -> float:
    sys.path.insert(0, str(HERE))
    from _memory import rss_mb

    return rss_mb("VmHWM")


def _worker_peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _cpu_s() -> float:
    """CPU seconds of this process (all its threads) and of its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuClock:
    """Samples this process's CPU seconds against wall time in a background thread, so that
    the CPU seconds of each stage can be read off afterwards from the stage's wall interval
    (stages run one after the other; their wall durations are the pipeline's ``timings``)."""

    def __init__(self, every: float = 0.2) -> None:
        import threading

        self.samples = [(time.perf_counter(), _cpu_s())]
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.samples.append((time.perf_counter(), _cpu_s()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter(), _cpu_s()))

    def since(self, t0: float) -> float:
        """CPU seconds from wall time ``t0`` to the last sample."""
        wall, cpu = np.array(self.samples).T
        return float(cpu[-1] - np.interp(t0, wall, cpu))

    def per_stage(self, t0: float, timings: dict) -> dict:
        """CPU seconds of each stage, the stages taken in ``timings``' order from ``t0``."""
        wall = np.array([s[0] for s in self.samples])
        cpu = np.array([s[1] for s in self.samples])
        out, start = {}, t0
        for name, sec in timings.items():
            end = start + sec
            out[name] = float(np.interp(end, wall, cpu) - np.interp(start, wall, cpu))
            start = end
        return out


def _worker_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def run_one(kind: str, store: Path, size: int, work: Path) -> dict:
    import pandas as pd

    from napari_zonation.mosaic import open_mosaic
    from napari_zonation.pipeline import run_mosaic_pipeline, run_pipeline
    from napari_zonation.streaming import iter_profiles

    section = open_mosaic(store).data[:size, :size]
    out: dict = {"kind": kind, "size": size}
    if kind == "memory":
        image = section.compute()
        base = _peak_mb()
        clock = CpuClock()
        t = time.perf_counter()
        r = run_pipeline(image, 1.0)
        out["seconds"] = time.perf_counter() - t
        clock.stop()
        out["timings"] = r.timings
        out["cpu_timings"] = clock.per_stage(t, r.timings)
        out["cpu_seconds"] = clock.since(t)
        out["n_crystals"] = len(r.crystals)
        out["peak_mb"] = _peak_mb()
        out["image_mb"] = base
        ref = work / f"stream-{size}"
        if (ref / "crystals.pkl").exists():
            from napari_zonation.mosaic import open_labels

            labels = open_labels(ref / "labels.zarr").data.compute()
            crystals = pd.read_pickle(ref / "crystals.pkl")
            prof = pd.read_pickle(ref / "profiles.pkl")
            same_labels = bool(np.array_equal(labels, r.labels))
            try:
                pd.testing.assert_frame_equal(crystals.reset_index(drop=True),
                                              r.crystals.reset_index(drop=True))
                pd.testing.assert_frame_equal(prof.reset_index(drop=True),
                                              r.profiles.reset_index(drop=True))
                same_tables = True
            except AssertionError as exc:
                same_tables = False
                out["difference"] = str(exc).splitlines()[0][:200]
            out["same"] = same_labels and same_tables
        return out
    client = cluster = None
    if kind == "cluster":
        import distributed

        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=50)
        client = distributed.Client(cluster)
    target = work / f"{kind}-{size}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if client is not None:
        worker_cpu0 = sum(client.run(_worker_cpu_s).values())
    clock = CpuClock()
    t = time.perf_counter()
    r = run_mosaic_pipeline(section, 1.0, target / "labels.zarr", workdir=target / "work",
                            client=client)
    out["seconds"] = time.perf_counter() - t
    clock.stop()
    out["timings"] = r.timings
    out["cpu_timings"] = clock.per_stage(t, r.timings)
    out["cpu_seconds"] = clock.since(t)
    if client is not None:
        out["worker_cpu_seconds"] = sum(client.run(_worker_cpu_s).values()) - worker_cpu0
    out["n_crystals"] = len(r.crystals)
    out["stats"] = {k: v for k, v in r.stats.items() if isinstance(v, (int, float, str))}
    out["peak_mb"] = _peak_mb()
    if client is not None:
        out["worker_peak_mb"] = list(client.run(_worker_peak_mb).values())
        client.close()
        cluster.close()
    prof = pd.concat(list(iter_profiles(r.profile_files)), ignore_index=True)
    prof = prof.sort_values("label", kind="stable").reset_index(drop=True)
    r.crystals.to_pickle(target / "crystals.pkl")
    prof.to_pickle(target / "profiles.pkl")
    shutil.rmtree(target / "work", ignore_errors=True)
    out["hashes"] = _hashes(target / "labels.zarr", size, r.crystals, prof)
    if kind == "cluster" and (work / f"stream-{size}" / "crystals.pkl").exists():
        from napari_zonation.mosaic import open_labels

        ref = work / f"stream-{size}"
        a = open_labels(ref / "labels.zarr").data
        b = open_labels(target / "labels.zarr").data
        same_labels = all(
            np.array_equal(np.asarray(a[r0:r0 + 2048]), np.asarray(b[r0:r0 + 2048]))
            for r0 in range(0, size, 2048)
        )
        try:
            pd.testing.assert_frame_equal(pd.read_pickle(ref / "crystals.pkl"), r.crystals)
            pd.testing.assert_frame_equal(pd.read_pickle(ref / "profiles.pkl"), prof)
            same_tables = True
        except AssertionError as exc:
            same_tables = False
            out["difference"] = str(exc).splitlines()[0][:200]
        out["same"] = same_labels and same_tables
    return out


def _hashes(labels_path: Path, size: int, crystals, profiles) -> dict:
    """SHA-256 of the labels (read band by band) and of the crystal and profile tables."""
    import hashlib

    import pandas as pd

    from napari_zonation.mosaic import open_labels

    labels = open_labels(labels_path).data
    h = hashlib.sha256()
    for r0 in range(0, size, 2048):
        h.update(np.ascontiguousarray(labels[r0:r0 + 2048]).tobytes())
    out = {"labels": h.hexdigest()[:16]}
    for name, table in (("crystals", crystals), ("profiles", profiles)):
        values = pd.util.hash_pandas_object(table.reset_index(drop=True), index=True).to_numpy()
        out[name] = hashlib.sha256(values.tobytes()).hexdigest()[:16]
    return out


def _spawn(kind: str, store: Path, size: int, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--one", kind, "--store", str(store), "--size", str(size),
           "--work", str(work)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"kind": kind, "size": size, "error": tail}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------------------------
# report


def _row(r: dict) -> str:
    if "error" in r:
        return f"{r['kind']:<8}{r['size']:>7}  failed: {r['error']}"
    mpx = r["size"] ** 2 / 1e6
    t = r["timings"]
    stages = " ".join(f"{t.get(s, float('nan')):7.1f}" for s in
                      (STAGES if r["kind"] != "memory" else
                       ("segment", "profiles", "describe", "cluster")))
    workers = ""
    if "worker_peak_mb" in r:
        workers = " workers " + "+".join(f"{w:.0f}" for w in r["worker_peak_mb"]) + " MB"
    same = "" if "same" not in r else ("  same" if r["same"] else
                                      f"  DIFFERENT ({r.get('difference', '')})")
    cpu = r.get("cpu_seconds", float("nan")) + r.get("worker_cpu_seconds", 0.0)
    ct = r.get("cpu_timings", {})
    cpu_stages = " ".join(f"{ct.get(s, float('nan')):7.1f}" for s in
                          (STAGES if r["kind"] != "memory" else
                           ("segment", "profiles", "describe", "cluster")))
    hashes = ""
    if "hashes" in r:
        hashes = "  sha256 " + " ".join(f"{k}={v}" for k, v in r["hashes"].items())
    return (f"{r['kind']:<8}{r['size']:>7}{mpx:8.1f}{r['n_crystals']:>8}{r['seconds']:9.1f}"
            f"{cpu:9.1f}{mpx / r['seconds']:8.3f}{r['peak_mb']:9.0f}  {stages}  cpu: "
            f"{cpu_stages}{workers}{same}{hashes}")


def parse_row(line: str) -> dict | None:
    """A streamed run's printed row (``_row``) read back: what ``--report`` needs of it."""
    words = line.split()
    if len(words) < 21 or words[0] not in ("stream", "cluster") or words[14] != "cpu:":
        return None
    r = {"kind": words[0], "size": int(words[1]), "n_crystals": int(words[3]),
         "seconds": float(words[4]), "cpu_seconds": float(words[5]),
         "peak_mb": float(words[7])}
    r["timings"] = dict(zip(STAGES, map(float, words[8:14]), strict=True))
    r["cpu_timings"] = dict(zip(STAGES, map(float, words[15:21]), strict=True))
    if "sha256" in words:
        r["hashes"] = dict(w.split("=", 1) for w in words[words.index("sha256") + 1:])
    return r


def plot(results: list[dict], path: Path) -> None:
    """Wall and CPU seconds per megapixel of each stage against the section's megapixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted((r for r in results if r.get("kind") == "stream" and "error" not in r),
                  key=lambda r: r["size"])
    if len(runs) < 2:
        return
    mpx = np.array([r["size"] ** 2 / 1e6 for r in runs])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", sharex=True)
    colours = plt.get_cmap("tab10")
    for k, stage in enumerate((*STAGES, "total")):
        style = {"color": "black", "lw": 2.2} if stage == "total" else {"color": colours(k)}
        wall = np.array([r["seconds"] if stage == "total" else r["timings"].get(stage, np.nan)
                         for r in runs])
        cpu = np.array([r.get("cpu_seconds", np.nan) if stage == "total" else
                        r.get("cpu_timings", {}).get(stage, np.nan) for r in runs])
        ax.plot(mpx, wall / mpx, "o-", label=stage, **style)
        ax2.plot(mpx, cpu / mpx, "o-", label=stage, **style)
    for a, what in ((ax, "wall"), (ax2, "CPU")):
        a.set_xlabel("section (megapixels)")
        a.set_ylabel(f"{what} seconds per megapixel")
        a.set_ylim(bottom=0)
    ax.set_title("wall time per megapixel (shared machine: noisy)")
    ax2.set_title("CPU time per megapixel (flat = linear)")
    peak = ", ".join(f"{r['size']} px: {r['peak_mb'] / 1024:.2f} GB" for r in runs)
    fig.suptitle(f"streamed, one process; peak RSS {peak}", fontsize=9)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def report(results: list[dict], mem: int | None) -> None:
    """Print the throughput ratio, the peak, the cluster's identity and the cost per Mpx."""
    by = {(r["kind"], r["size"]): r for r in results if "error" not in r}
    print()
    if ("memory", mem) in by and ("stream", mem) in by:
        s, m = by[("stream", mem)], by[("memory", mem)]
        print(f"throughput at {mem} px: streamed {mem**2 / 1e6 / s['seconds']:.3f} Mpx/s, in "
              f"memory {mem**2 / 1e6 / m['seconds']:.3f} Mpx/s: ratio "
              f"{m['seconds'] / s['seconds']:.2f} (goal >= 0.8); peak RSS streamed "
              f"{s['peak_mb'] / 1024:.2f} GB, in memory {m['peak_mb'] / 1024:.2f} GB")
    for c in (r for r in results if r.get("kind") == "cluster" and "error" not in r):
        ref = by.get(("stream", c["size"]))
        if ref is not None and "hashes" in ref and "hashes" in c:
            same = ref["hashes"] == c["hashes"]
            print(f"cluster at {c['size']} px: labels, crystals and profiles "
                  f"{'identical' if same else 'DIFFERENT'} to the one-process run (SHA-256)")
    largest = max((r for r in results if r.get("kind") == "stream" and "error" not in r),
                  key=lambda r: r["size"], default=None)
    if largest:
        print(f"peak RSS at {largest['size']} px, streamed: {largest['peak_mb'] / 1024:.2f} GB "
              "(goal < 3 GB)")
    runs = sorted((r for r in results if r.get("kind") == "stream" and "error" not in r),
                  key=lambda r: r["size"])
    if runs:
        print("\nseconds per megapixel (streamed): side " + " ".join(
            f"{s:>9}" for s in (*STAGES, "total")))
        for r in runs:
            mpx = r["size"] ** 2 / 1e6
            vals = [r["timings"].get(s, np.nan) / mpx for s in STAGES] + [r["seconds"] / mpx]
            print(f"{'':34}{r['size']:>5} " + " ".join(f"{v:9.3f}" for v in vals))
        print("CPU seconds per megapixel (streamed, process + children): side " + " ".join(
            f"{s:>9}" for s in (*STAGES, "total")))
        for r in runs:
            mpx = r["size"] ** 2 / 1e6
            ct = r.get("cpu_timings", {})
            vals = [ct.get(s, np.nan) / mpx for s in STAGES]
            vals.append(r.get("cpu_seconds", np.nan) / mpx)
            print(f"{'':34}{r['size']:>5} " + " ".join(f"{v:9.3f}" for v in vals))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="sizes 2048 4096; memory/cluster 4096")
    p.add_argument("--held-out", action="store_true",
                   help="held-out seeds: the checks at 4096 (once, at the end)")
    p.add_argument("--sizes", type=int, nargs="*", help="section sides (multiples of 2048)")
    p.add_argument("--in-memory", type=int, default=None, help="side of the in-memory run")
    p.add_argument("--cluster", type=int, default=None, help="side of the cluster run")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) /
                   "napari-zonation-scale")
    p.add_argument("--plot", type=Path, default=HERE.parent / "docs" / "images" / "scale.png")
    p.add_argument("--report", type=Path, nargs="*",
                   help="no run: report (and plot) the runs saved in these files: JSON (a run or "
                        "a list of runs, as last-results.json), a --one run's output, or a "
                        ".log of the printed rows")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.store, args.size, args.work), default=float))
        return
    if args.report:
        results = []
        for f in args.report:
            text = f.read_text().strip()
            if f.suffix == ".log":  # the printed rows of a run
                got = [r for r in map(parse_row, text.splitlines()) if r is not None]
                results.extend(got)
                continue
            try:
                got = json.loads(text)
            except json.JSONDecodeError:  # a --one run's output: its last JSON line
                got = json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])
            results.extend(got if isinstance(got, list) else [got])
        results = [r for r in results if "error" not in r]
        for r in results:
            print(_row(r))
        report(results, args.in_memory)
        plot(results, args.plot)
        return
    if args.held_out:
        sizes, mem, clu, seed0 = [4096], 4096, 4096, HELD_OUT_SEEDS
    elif args.quick:
        sizes, mem, clu, seed0 = [2048, 4096], 4096, 4096, DEV_SEEDS
    else:
        sizes, mem, clu, seed0 = [4096, 8192, 16384, 20480], 8192, 20480, DEV_SEEDS
    sizes = args.sizes or sizes
    mem = args.in_memory if args.in_memory is not None else mem
    clu = args.cluster if args.cluster is not None else clu
    side = max([*sizes, mem or 0, clu or 0])
    side = -(-side // TILE) * TILE
    print(f"section: {side} x {side} px from {N_SCENES} scenes of {TILE} px "
          f"(seeds {seed0}-{seed0 + N_SCENES - 1}), {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    store = build_section(args.cache, side, seed0)
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=args.cache))
    print("\nrun        side     Mpx crystals  seconds  cpu_s   Mpx/s  peak_MB  stage seconds "
          f"({' '.join(STAGES)}; in memory: segment profiles describe cluster)", flush=True)
    results = []
    plan = [("stream", n) for n in sorted(set(sizes) | {mem, clu} - {None, 0})]
    if mem:  # right after its streamed run, so that a long run of larger sizes comes last
        plan.insert(plan.index(("stream", mem)) + 1, ("memory", mem))
    if clu:
        plan.append(("cluster", clu))
    for kind, n in plan:
        r = _spawn(kind, store, n, work)
        results.append(r)
        print(_row(r), flush=True)
    report(results, mem)
    if not args.held_out:
        plot(results, args.plot)
    (args.cache / "last-results.json").write_text(json.dumps(results, indent=1, default=float))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
