"""Nothing lost, nothing stale: a SIGKILLed run resumes from its finished jobs, and the same command gives the same
leaderboard.csv (apart from measured time and memory) uninterrupted, resumed, retrained from an empty cache,
in-process and on `--scheduler local`; a second run cannot write into a folder another run holds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import bench
from bench.errors import UserError
from datasets.files import folder_lock

ROOT = Path(__file__).resolve().parent.parent
# a few seconds of jobs after a ~2 s training: long enough to be killed part-way, short enough for CI
ARGS = ["--scale", "tiny", "--methods", "grids,input-x-gradient,random", "--cell-types", "Astro,Oligo", "--L", "3,8"]
MEASURED = ("seconds", "peak_rss_mb")  # the only columns allowed to differ between two runs


def _cli(out: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "bench", "run", *ARGS, "--out", str(out), "--cache-dir", str(cache),
            "--no-progress"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _comparable(out: Path) -> pd.DataFrame:
    table = pd.read_csv(out / "leaderboard.csv")
    return table.drop(columns=[c for c in table.columns if c.startswith(MEASURED)])


def _job_files(cache: Path) -> list[Path]:
    return [p for p in (cache / "jobs").glob("*/*.json") if not p.name.startswith(".")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(_cli(root / "out", root / "cache"), check=True, cwd=ROOT, env=_env(), capture_output=True)
    return root / "out"


def test_a_sigkilled_run_resumes_from_its_finished_jobs(tmp_path, uninterrupted):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = subprocess.Popen(_cli(out, cache), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(_job_files(cache)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed; give it more jobs"
    finished = _job_files(cache)
    assert finished and not (out / "leaderboard.csv").exists()
    for path in finished:  # every finished job is whole: written atomically, never half
        assert json.loads(path.read_text())["status"] in ("ok", "budget_exceeded", "not_converged")

    resumed = subprocess.run(_cli(out, cache), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr  # the killed run's lock died with it
    records = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    assert sum(bool(r.get("cached")) for r in records) == len(finished) < len(records)
    assert f"{len(finished)} of {len(records)} jobs reused" in resumed.stderr
    pd.testing.assert_frame_equal(_comparable(out), _comparable(uninterrupted))


def test_the_same_command_gives_the_same_table_in_process_and_on_dask(tmp_path, uninterrupted):
    """Fresh caches (the surrogate retrained each time), in this process and on a dask LocalCluster, and a forced
    rerun: each leaderboard.csv equals the subprocess run's."""
    kw = dict(methods=ARGS[3].split(","), cell_types=ARGS[5].split(","), L=[3, 8], progress=False)
    bench.run("tiny", cache_dir=tmp_path / "c1", out=tmp_path / "local", scheduler="local", **kw)
    pd.testing.assert_frame_equal(_comparable(tmp_path / "local"), _comparable(uninterrupted))
    bench.run("tiny", cache_dir=tmp_path / "c2", out=tmp_path / "inproc", **kw)
    pd.testing.assert_frame_equal(_comparable(tmp_path / "inproc"), _comparable(uninterrupted))
    bench.run("tiny", cache_dir=tmp_path / "c2", out=tmp_path / "forced", force=True, **kw)
    pd.testing.assert_frame_equal(_comparable(tmp_path / "forced"), _comparable(uninterrupted))


def test_jobs_side_by_side_give_the_table_of_the_same_jobs_one_at_a_time(tmp_path, monkeypatch):
    """A profile with `job_threads` runs its jobs two at a time in worker processes (a 2-core machine, training on 2
    threads): the same answers as those jobs on one thread one after another in this process, under their own
    cache key (a run on the surrogate's thread count does not reuse them), and the header says how they ran."""
    from dataclasses import replace

    from bench import config
    from bench.running import pipeline

    monkeypatch.setitem(config.PROFILES, "tiny", replace(config.PROFILES["tiny"], job_threads=1))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert pipeline.side_by_side(config.PROFILES["tiny"]) == (1, 2)
    assert pipeline.side_by_side(config.PROFILES["quick"]) == (None, 1)
    on_gpu = type("OnGpu", (), {"device": torch.device("cuda")})()  # jobs on a GPU stay in this process
    assert pipeline.side_by_side(config.PROFILES["tiny"], on_gpu) == (None, 1)
    assert pipeline.local_workers(config.PROFILES["tiny"]) == 2
    assert pipeline.local_workers(config.PROFILES["tiny"], scheduler="tcp://elsewhere:8786") == 1
    kw = dict(methods=ARGS[3].split(","), cell_types=ARGS[5].split(","), L=[3, 8], progress=False)
    cache = tmp_path / "cache"
    bench.run("tiny", cache_dir=cache, out=tmp_path / "side", **kw)
    header = (tmp_path / "side" / "leaderboard.md").read_text()
    assert "jobs ran 2 at a time on 1 torch thread each, in worker processes of at most" in header
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one core: the same jobs, one at a time, in this process
    bench.run("tiny", cache_dir=tmp_path / "cache1", out=tmp_path / "one", **kw)
    assert "jobs ran" not in (tmp_path / "one" / "leaderboard.md").read_text()
    pd.testing.assert_frame_equal(_comparable(tmp_path / "side"), _comparable(tmp_path / "one"))
    monkeypatch.setitem(config.PROFILES, "tiny", replace(config.PROFILES["tiny"], job_threads=None))
    again = bench.run("tiny", cache_dir=cache, out=tmp_path / "own", **kw)
    assert not any(r.get("cached") for r in again.attrs["records"])  # other threads: not the same jobs


def test_a_folder_another_run_is_writing_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "leaderboard.md").write_text("the other run's table")
    with folder_lock(out):
        with pytest.raises(UserError, match=f"{out} is being written by pid {os.getpid()}"):
            bench.run("tiny", methods=["random"], L=[3], cache_dir=tmp_path / "cache", out=out, progress=False)
    assert (out / "leaderboard.md").read_text() == "the other run's table"
    assert not (tmp_path / "cache" / "surrogates").exists()  # refused before training
