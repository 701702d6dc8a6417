"""Speed of ``segment_crystals`` against other versions of the code, interleaved in one session.

Each version (``--tree DIR``: a checkout whose ``src`` holds ``napari_zonation``; this
checkout is always the first) runs in its own worker process that loads the inputs once; the
workers take turns, scene by scene and round by round, so that the load of a shared machine
falls on every version alike. Printed: per version the median wall time of every input, the
whole-image throughput (megapixels over the summed medians of the whole-image scenes) and the
tiled 8192 x 8192 time, each version's ratio to the first ``--tree`` (the baseline), and for
every pair of versions on how many inputs their labels are identical (a hash of the label
image).

Inputs:

- ``whole``: the quick grid of ``benchmarks/segmentation.py`` (the default classes' 9 scenes
  and one scene of every other kind, 640 x 640) and a 2048 x 2048 default scene at 1 um/px,
  each segmented whole;
- ``tiled``: the 8192 x 8192 mosaic of ``segmentation.py --large`` (16 distinct 2048 x 2048
  scenes), segmented in automatic tiles (``--no-large`` skips it; ``--cache FILE.npz`` keeps
  the mosaic between runs).

    python benchmarks/segment_speed.py --tree /path/to/old-checkout [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _inputs(large: bool, cache: str | None):
    """``{name: (image, pixel_size_um)}`` of every input (built by this checkout's generator)."""
    sys.path.insert(0, HERE)
    from segmentation import large_mosaic, make_scene, scene_grid

    from napari_zonation import make_thin_section
    from napari_zonation.synthetic import SCENE_KINDS

    out = {}
    for spec in scene_grid(True, False, ["default", *SCENE_KINDS]):
        s = make_scene(spec, 640)
        name = f"{spec['kind']}_s{spec['seed']}_n{spec['noise']}_b{spec['bits']}_px{spec['px']}"
        out[name] = (s.image, spec["px"])
    big = make_thin_section((2048, 2048), n_crystals=150, pixel_size_um=1.0, noise=0.02, seed=7)
    out["whole_2048"] = (big.image, 1.0)
    if large:
        image, _ = large_mosaic(cache=cache)
        out["tiled_8192"] = (image, 1.0)
    return out


def worker(cache_file: str) -> None:
    """Serve timing requests: a line with an input's name -> a line with its seconds."""
    from napari_zonation import segment_crystals

    with np.load(cache_file) as z:
        data = {k: z[k] for k in z.files}
    px = json.loads(str(data.pop("__px__")))
    segment_crystals(data[next(iter(data))], px[next(iter(data))])  # warm up imports
    print("ready", flush=True)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            break
        t0 = time.perf_counter()
        labels = segment_crystals(data[name], px[name])
        dt = time.perf_counter() - t0
        digest = hashlib.sha1(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()
        print(f"{dt:.6f} {digest}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="another checkout to time (repeatable); the first is the baseline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-large", action="store_true", help="skip the tiled 8192 x 8192")
    parser.add_argument("--cache", default=None, help="npz file keeping the 8192 mosaic")
    parser.add_argument("--inputs", default=None, help="npz file keeping all the inputs")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return
    path = args.inputs or os.path.join("/tmp", f"segment_speed_inputs_{os.getpid()}.npz")
    if not (args.inputs and os.path.exists(path)):
        ins = _inputs(not args.no_large, args.cache)
        np.savez(path, **{k: v[0] for k, v in ins.items()},
                 __px__=json.dumps({k: v[1] for k, v in ins.items()}))
    with np.load(path) as z:
        names = [k for k in z.files if k != "__px__"]
        mpix = {k: z[k].size / 1e6 for k in names}
    if args.no_large and "tiled_8192" in names:
        names.remove("tiled_8192")
    trees = [*args.tree, ROOT]
    procs = []
    for tree in trees:
        env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"))
        p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree,
        )
        assert p.stdout.readline().strip() == "ready"
        procs.append(p)
    times = {t: {n: [] for n in names} for t in trees}
    digests = {t: {} for t in trees}
    for r in range(args.rounds):
        for k, name in enumerate(names):
            order = list(range(len(trees)))
            if (r + k) % 2:
                order.reverse()
            for i in order:
                procs[i].stdin.write(name + "\n")
                procs[i].stdin.flush()
                seconds, digest = procs[i].stdout.readline().split()
                times[trees[i]][name].append(float(seconds))
                digests[trees[i]][name] = digest
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
        p.wait()
    base = trees[0]
    whole = [n for n in names if n != "tiled_8192"]
    print(f"\n{'input':<40}" + "".join(f"{os.path.basename(t):>16}" for t in trees)
          + "   (median s)")
    for name in names:
        print(f"{name:<40}" + "".join(f"{np.median(times[t][name]):>16.3f}" for t in trees))
    print()
    for t in trees:
        tw = sum(np.median(times[t][n]) for n in whole)
        tb = sum(np.median(times[base][n]) for n in whole)
        per = [np.median(times[base][n]) / np.median(times[t][n]) for n in whole]
        line = (f"{os.path.basename(t):<16} whole image: {sum(mpix[n] for n in whole) / tw:.2f}"
                f" MPix/s ({tb / tw:.2f}x the baseline; per scene median {np.median(per):.2f}x,"
                f" {min(per):.2f}x .. {max(per):.2f}x)")
        if "tiled_8192" in names:
            tt = np.median(times[t]["tiled_8192"])
            line += (f"; tiled 8192^2: {tt:.1f} s ({mpix['tiled_8192'] / tt:.2f} MPix/s, "
                     f"{np.median(times[base]['tiled_8192']) / tt:.2f}x the baseline)")
        print(line)
    print(f"\nlabels identical (inputs out of {len(names)}):")
    for t in trees:
        same = {u: sum(digests[t][n] == digests[u][n] for n in names) for u in trees if u != t}
        print(f"{os.path.basename(t):<16}" + "".join(
            f"  {os.path.basename(u)}: {k}" for u, k in same.items()))


if __name__ == "__main__":
    main()
