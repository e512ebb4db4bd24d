"""The Ray engine on a local Ray instance: the same results as the local engine."""

import csv

import pytest

from reid.bulk import BulkOptions, run_bulk

pytest.importorskip("ray.data")


def table(run_dir):
    with (run_dir / "encounters.csv").open() as f:
        return [
            {k: v for k, v in r.items() if k != "model_version"} | {"m": r["model_version"]}
            for r in csv.DictReader(f)
        ]


@pytest.mark.slow
def test_ray_engine_gives_the_local_engine_results(season, gallery, release, tmp_path):
    # A handful of images: Ray starts in seconds, the work is not the point.
    src = season / "season"
    local = run_bulk(
        src,
        gallery,
        tmp_path / "local",
        BulkOptions(model=release, batch_size=4, report=False, show_progress=False),
    )
    ray_run = run_bulk(
        src,
        gallery,
        tmp_path / "ray",
        BulkOptions(
            model=release, batch_size=4, engine="ray", ray_cpus=2, report=False, show_progress=False
        ),
    )
    assert ray_run.matched_now == local.matched_now == local.encounters
    assert table(tmp_path / "ray") == table(tmp_path / "local")
    assert (tmp_path / "ray" / "new_individuals.csv").read_text() == (
        tmp_path / "local" / "new_individuals.csv"
    ).read_text()
