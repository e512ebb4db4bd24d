"""Season bulk matching on this machine: throughput, peak memory, Ray overhead, accuracy.

    .venv/bin/python bench/bench_bulk.py [--model models/bigcat-default] [--data DIR]
        [--part 0.5] [--ray-season half|full] [--skip-ray] [--screen P] [--compare-screen Q]
        [--verify-frames N]

Renders (or reuses) the benchmark season (:data:`reid.synthetic.season.SEASON_BENCH`:
5,000 frames in 1,000 bursts, 40 known + 10 new individuals of each species, as a
Camtrap DP package), enrols its gallery with ``--model``, then measures, each run in a
fresh child process (so its peak RSS is its own):

- the model's bare forward throughput (tensors in memory, batch 32, channels_last),
  measured again after every bulk run: each run's ratio is taken against the mean of
  the forwards measured just before and just after it. The machine's speed drifts by
  ±10 % within minutes (the same whole-season run gave 0.825 and 0.667 of the forward
  in two benchmarks 10 minutes apart), so the network share below is the steadier
  figure;
- ``reid bulk`` on the first half (``--part``) of the season and on the whole season, local engine:
  frames/s, ratio to the bare forward (and, free of the machine's drift between two
  measurements, the share of the run's matching time spent in the network), peak RSS
  (must not grow with season size), with
  ``--screen P`` (default: ``reid bulk``'s own default);
- the whole season (or, with ``--ray-season half``, its first half) on a local Ray
  instance (2 CPUs): time, overhead against the local engine on the same frames, and
  whether encounters.csv is identical to the local engine's;
- accuracy against the known truth (:func:`reid.synthetic.season.score_run`);
- the whole season again with ``--compare-screen Q`` (default 0: verify every
  encounter): throughput, the share of encounters decided unverified, accuracy, and how
  many encounters' decision or individual differ from the main run.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(args: argparse.Namespace) -> None:
    """Run one measured job in this process and print its result with peak RSS."""
    out: dict = {}
    if args.child == "forward":
        import torch

        from reid.release import load_release

        model, _ = load_release(Path(args.model))
        h, w = model.config.input_size
        x = torch.randn(256, 3, h, w).contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last).eval()
        with torch.inference_mode():
            model(x[:32])
            best = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                for i in range(0, len(x), 32):
                    model(x[i : i + 32])
                best = min(best, time.perf_counter() - t)
        out["images_per_s"] = len(x) / best
    else:
        from reid.bulk import BulkOptions, run_bulk

        opts = BulkOptions(
            model=Path(args.model),
            engine=args.engine,
            ray_cpus=2,
            screen=BulkOptions.screen if args.screen is None else args.screen,
            verify_frames=(
                BulkOptions.verify_frames if args.verify_frames is None else args.verify_frames
            ),
            show_progress=False,
        )
        t = time.perf_counter()
        s = run_bulk(args.source, args.index, args.run, opts)
        out = s.to_dict()
        out["wall_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def spawn(*extra: str) -> dict:
    cmd = [sys.executable, __file__, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def encounter_rows(run: Path) -> dict[str, dict]:
    import csv

    with (run / "encounters.csv").open(encoding="utf-8") as f:
        return {row["encounter"]: row for row in csv.DictReader(f)}


def unverified(run: Path) -> float:
    """Share of a run's encounters decided on the embedding alone."""
    rows = encounter_rows(run).values()
    return round(sum(r["verified"] == "no" for r in rows) / max(1, len(rows)), 3)


def differing(a: Path, b: Path) -> int:
    """Encounters whose decision or individual differ between two runs."""
    ra, rb = encounter_rows(a), encounter_rows(b)
    return sum(
        (ra[k]["decision"], ra[k]["individual"]) != (rb[k]["decision"], rb[k]["individual"])
        for k in ra
    )


def part_source(season: Path, out: Path, fraction: float) -> Path:
    """The first ``fraction`` of the season's frames (by time) as a manifest source."""
    from reid.data.manifest import read_manifest, write_manifest

    records = sorted(read_manifest(season / "season.csv"), key=lambda r: (r.captured_at, r.path))
    cut = records[int(len(records) * fraction)].captured_at
    write_manifest([r for r in records if r.captured_at < cut], out / "manifest.csv")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/bigcat-default")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "bench-season")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--ray-season", choices=("half", "full"), default="full")
    ap.add_argument(
        "--part", type=float, default=0.5, help="Share of the season in the smaller run ('half')."
    )
    ap.add_argument("--child")
    ap.add_argument("--source")
    ap.add_argument("--index")
    ap.add_argument("--run")
    ap.add_argument("--engine", default="local")
    ap.add_argument(
        "--screen",
        type=float,
        default=None,
        help="Screening confidence of the main runs (reid bulk --screen; default: its default).",
    )
    ap.add_argument(
        "--verify-frames",
        type=int,
        default=None,
        help="Frames of a burst verified in every run (reid bulk --verify-frames; default: its "
        "default).",
    )
    ap.add_argument(
        "--compare-screen",
        type=float,
        default=0.0,
        help="Also run the whole season with this screening (0: verify every encounter; "
        "negative: skip that run).",
    )
    args = ap.parse_args()
    if args.child:
        return child(args)

    import shutil

    from reid.data.manifest import read_manifest as read_catalogue
    from reid.match import enroll
    from reid.synthetic.season import SEASON_BENCH, score_run, write_season

    data = args.data
    result: dict = {"frames": SEASON_BENCH.frames, "model": args.model}
    if not (data / "season.csv").exists():
        t = time.perf_counter()
        write_season(data, SEASON_BENCH, workers=2)
        result["render_s"] = round(time.perf_counter() - t, 1)
    index = data / "index"
    if (index / "CURRENT").exists():  # built with another model: enrol again
        from reid.errors import ReidError
        from reid.index import GalleryIndex
        from reid.release import model_fingerprint, read_manifest

        release = read_manifest(Path(args.model) / "manifest.json")
        try:
            GalleryIndex.open(index, model_fingerprint(release))
        except ReidError:
            shutil.rmtree(index)
    if not (index / "CURRENT").exists():
        shutil.rmtree(index, ignore_errors=True)
        t = time.perf_counter()
        enroll(
            read_catalogue(data / "gallery" / "manifest.csv"),
            index,
            args.model,
            show_progress=False,
        )
        result["enroll_s"] = round(time.perf_counter() - t, 1)
    forwards = [spawn("--child", "forward", "--model", args.model)["images_per_s"]]
    result["forward_images_per_s"] = round(forwards[0], 1)

    def around() -> float:
        """The bare forward again, after a run: the mean of it and the one before."""
        forwards.append(spawn("--child", "forward", "--model", args.model)["images_per_s"])
        return (forwards[-2] + forwards[-1]) / 2

    runs = data / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    half = part_source(data, runs / "half-source", args.part)

    def bulk(source: Path, name: str, *extra: str) -> dict:
        """One ``reid bulk`` run of ``source`` into ``runs/name`` in a child process."""
        return spawn(
            "--child", "bulk", "--model", args.model, "--source", str(source),
            "--index", str(index), "--run", str(runs / name),
            *([] if args.verify_frames is None else ["--verify-frames", str(args.verify_frames)]),
            *extra,
        )  # fmt: skip

    main_screen = [] if args.screen is None else ["--screen", str(args.screen)]
    for name, source in (("half", half), ("full", data / "season")):
        r = bulk(source, name, *main_screen)
        bare = around()
        result[name] = {
            "frames": r["frames"],
            "encounters": r["encounters"],
            "wall_s": round(r["wall_s"], 1),
            "frames_per_s": r["frames_per_s"],
            "forward_images_per_s": round(bare, 1),
            "over_forward": round(r["frames_per_s"] / bare, 3),
            # the same ratio against the network's speed in this run (no drift between two
            # measurements): the share of the matching time spent in the network
            "network_share": round(r["network_s"] / r["seconds"], 3),
            "peak_rss_mb": round(r["peak_rss_mb"]),
            "unverified": unverified(runs / name),
        }
    result["accuracy"] = score_run(data, runs / "full")
    if args.compare_screen >= 0:
        r = bulk(data / "season", "compare", "--screen", str(args.compare_screen))
        bare = around()
        result["compare"] = {
            "screen": args.compare_screen,
            "wall_s": round(r["wall_s"], 1),
            "frames_per_s": r["frames_per_s"],
            "forward_images_per_s": round(bare, 1),
            "over_forward": round(r["frames_per_s"] / bare, 3),
            "network_share": round(r["network_s"] / r["seconds"], 3),
            "unverified": unverified(runs / "compare"),
            "accuracy": score_run(data, runs / "compare"),
            "decisions_differing_from_full": differing(runs / "full", runs / "compare"),
        }
    if not args.skip_ray:
        which = args.ray_season
        ray_source = half if which == "half" else data / "season"
        r = bulk(ray_source, "ray", "--engine", "ray")
        same = (runs / "ray" / "encounters.csv").read_text() == (
            runs / which / "encounters.csv"
        ).read_text()
        result["ray"] = {
            "season": which,
            "frames": r["frames"],
            "wall_s": round(r["wall_s"], 1),
            "frames_per_s": r["frames_per_s"],
            "identical_to_local": same,
            "overhead": round(r["wall_s"] / result[which]["wall_s"] - 1, 3),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
