"""Jobs spread over ranks: core.engine.distributed.Shard, the benchmark scripts and tools.interp_video under
torchrun with two Gloo ranks on the CPU, compared with one process.

The multi-rank runs start ``python -m torch.distributed.run --standalone --nproc_per_node 2`` as a subprocess
on tiny generated inputs (64 x 48 to 64 x 96 frames) with a random-weight model: the numbers mean nothing, but a
two-rank job must give exactly what one process gives (same per-frame scores in the same order, same averages;
same decoded frames and frame count for videos).
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:                  # `tools` is a plain folder next to `core`
    sys.path.insert(0, ROOT)

import core  # noqa: E402
from core.engine.distributed import Shard, ShardError, merge_by_index  # noqa: E402
from tools import benchmark_8x_4k1000fps, benchmark_snufilm, benchmark_ucf101, benchmark_vimeo90k  # noqa: E402

TIMING_KEYS = {"seconds"}
QUIET = ["--nr_data_worker", "0", "--threads", "1", "--no_progress"]


# ------------------------------------------------------------------------------------------------ Shard alone

def test_one_process_shard_without_launcher_environment():
    shard = Shard.from_environment("cpu", environ={})
    assert (shard.rank, shard.world_size, shard.is_main, shard.distributed) == (0, 1, True, False)
    assert shard.indices(4) == [0, 1, 2, 3] and shard.all_gather({"a": 1}) == [{"a": 1}]
    shard.barrier()
    shard.close()
    one = Shard.from_environment("cpu", environ={"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"})
    assert one.world_size == 1 and not one.distributed


def test_rank_arithmetic():
    shards = [Shard(rank, 3) for rank in range(3)]
    assert [s.indices(7) for s in shards] == [[0, 3, 6], [1, 4], [2, 5]]
    assert [s.owns(4) for s in shards] == [False, True, False]
    assert [s.is_main for s in shards] == [True, False, False]
    parts = [[f"item{i}" for i in s.indices(7)] for s in shards]
    assert merge_by_index(parts, 7) == [f"item{i}" for i in range(7)]
    assert merge_by_index([[], []], 0) == []
    with pytest.raises(ValueError, match="rank 1 returned 1 results, expected 2"):
        merge_by_index([["a", "c"], ["b"], ["x"]], 6)


@pytest.mark.parametrize("environ, fragment", [
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK 2 is outside [0, WORLD_SIZE 2)"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE must be at least 1"),
    ({"WORLD_SIZE": "two"}, "must be whole numbers"),
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, "MASTER_ADDR and MASTER_PORT are not set"),
])
def test_bad_launcher_environment_is_one_clear_error(environ, fragment):
    with pytest.raises(ShardError) as info:
        Shard.from_environment("cpu", environ=environ)
    assert fragment in str(info.value) and isinstance(info.value, OSError)


# ------------------------------------------------------------------------------------------- torchrun helpers

def _torchrun(script, tmp_path, nproc=2, args=(), timeout=600):
    """Run ``script`` (Python source) under ``torch.distributed.run --standalone``; returns the CompletedProcess."""
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(script))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "UPR_DEBUG"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               str(path), *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _write(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _frame(rng, h, w):
    """A smooth random H x W x 3 uint8 frame."""
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _without_timing(result):
    return {key: value for key, value in result.items() if key not in TIMING_KEYS}


# ---------------------------------------------------------------------------------------- benchmark sharding

@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Tiny sets in the four layouts (odd sample counts, two frame sizes in SNU-FILM) and random weights."""
    root = tmp_path_factory.mktemp("sharded_sets")
    rng = np.random.default_rng(3)
    paths = {"model": str(root / "random-base.pkl")}
    core.save_weights(core.build_model("base"), paths["model"])
    vimeo = root / "vimeo"
    lines = ["00001/0001", "00001/0002", "00002/0001", "00003/0004", "00003/0005"]
    for line in lines:
        for i in (1, 2, 3):
            _write(vimeo / "sequences" / line / f"im{i}.png", _frame(rng, 48, 64))
    (vimeo / "tri_testlist.txt").write_text("\n".join(lines) + "\n")
    ucf = root / "ucf101"
    for name in ("1", "2", "3"):
        for f in ("frame_00.png", "frame_01_gt.png", "frame_02.png"):
            _write(ucf / name / f, _frame(rng, 64, 64))
    snu = root / "snufilm"
    os.makedirs(snu / "eval_modes")
    for subset in ("easy", "medium", "hard", "extreme"):
        list_lines = []
        for k, (h, w) in enumerate([(48, 64), (64, 48), (48, 64)]):
            names = [f"test/GOPRO_test/{subset}{k}/{i:06d}.png" for i in (1, 2, 3)]
            for name in names:
                _write(snu / name, _frame(rng, h, w))
            list_lines.append(" ".join(f"data/SNU-FILM/{name}" for name in names))
        (snu / "eval_modes" / f"test-{subset}.txt").write_text("\n".join(list_lines) + "\n")
    xtest = root / "xtest"
    for kind, scene in (("Type1", "TEST01_003_f0433"), ("Type2", "TEST05_158_f0321"),
                        ("Type2", "TEST06_001_f0001")):
        for i in range(33):
            _write(xtest / kind / scene / f"{i:04d}.png", _frame(rng, 48, 64))
    paths.update(vimeo=str(vimeo), ucf=str(ucf), snu=str(snu), xtest=str(xtest))
    return paths


def _benchmark_jobs(sets, out):
    """(module name, argv) of each benchmark run compared: every script, batch 1 and 2, a worker process."""
    model = ["--model_file", sets["model"]]
    return {
        "vimeo": ("benchmark_vimeo90k", ["--data_root", sets["vimeo"], *model, "--save_dir", f"{out}/vimeo_png"]),
        "vimeo_b2": ("benchmark_vimeo90k", ["--data_root", sets["vimeo"], *model, "--batch_size", "2"]),
        "ucf": ("benchmark_ucf101", ["--data_root", sets["ucf"], *model]),
        "snu_b2": ("benchmark_snufilm", ["--data_root", sets["snu"], *model, "--batch_size", "2",
                                         "--pyr_level", "3", "--subsets", "easy", "extreme"]),
        "xtest": ("benchmark_8x_4k1000fps", ["--test_data_path", sets["xtest"], *model, "--pyr_level", "3",
                                             "--nr_lvl_skipped", "0"]),
    }


def test_benchmarks_under_two_ranks_write_the_single_process_json(sets, tmp_path, capsys):
    jobs = _benchmark_jobs(sets, tmp_path / "ranks")
    script = f"""
        import importlib, sys
        jobs = {jobs!r}
        for name, (module, argv) in jobs.items():
            main = importlib.import_module("tools." + module).main
            main(argv + ["--out_json", {str(tmp_path / "ranks")!r} + "/" + name + ".json"] + {QUIET!r})
        """
    finished = _torchrun(script, tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    modules = {"benchmark_vimeo90k": benchmark_vimeo90k, "benchmark_ucf101": benchmark_ucf101,
               "benchmark_snufilm": benchmark_snufilm, "benchmark_8x_4k1000fps": benchmark_8x_4k1000fps}
    single_jobs = _benchmark_jobs(sets, tmp_path / "one")
    for name, (module, argv) in single_jobs.items():
        out = str(tmp_path / "one" / f"{name}.json")
        modules[module].main(argv + ["--out_json", out] + QUIET)
        with open(out) as f:
            single = json.load(f)
        with open(tmp_path / "ranks" / f"{name}.json") as f:
            sharded = json.load(f)
        assert list(sharded) == list(single), name                    # same fields in the same order
        assert _without_timing(sharded) == _without_timing(single), name
        assert len(single["frames"]) == sum(s["count"] for k, s in single["subsets"].items() if k != "all")
    capsys.readouterr()
    # the work was split over two ranks, and rank 0 alone printed: one table per job
    assert finished.stdout.count("; 2 ranks, the progress bar shows rank 0's share") == len(jobs)
    assert finished.stdout.count("results written to") == len(jobs)
    # the predictions saved by both ranks are those of one process, byte for byte
    saved = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "one" / "vimeo_png")
                   for d, _, files in os.walk(tmp_path / "one" / "vimeo_png") for f in files)
    assert len(saved) == 5
    for relative in saved:
        a = cv2.imread(str(tmp_path / "one" / "vimeo_png" / relative), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "ranks" / "vimeo_png" / relative), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(a, b), relative


def test_an_error_on_one_rank_is_one_line_from_rank_0(sets, tmp_path):
    broken = tmp_path / "vimeo"
    shutil.copytree(sets["vimeo"], broken)
    (broken / "sequences" / "00001" / "0002" / "im2.png").write_bytes(b"not a png")   # sample 1: rank 1's
    script = f"""
        from tools import benchmark_vimeo90k
        benchmark_vimeo90k.main(["--data_root", {str(broken)!r}, "--model_file", {sets["model"]!r}] + {QUIET!r})
        """
    finished = _torchrun(script, tmp_path)
    assert finished.returncode != 0
    errors = [line for line in finished.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, finished.stderr[-3000:]
    assert errors[0].startswith("error: rank 1: ") and "im2.png" in errors[0]


# ------------------------------------------------------------------------------------------ tools.video_throughput

def _write_clip(path, count, width=64, height=48, fps=25, seed=0):
    """A clip of ``count`` frames: a smooth random picture sliding right by 2 pixels a frame."""
    from core.video import open_writer
    rng = np.random.default_rng(seed)
    wide = _frame(rng, height, width + 2 * count)
    with open_writer(str(path), fps, width, height) as writer:
        for i in range(count):
            writer.write(np.ascontiguousarray(wide[:, 2 * i:2 * i + width]))


def test_video_throughput_times_the_same_pairs_both_ways(tmp_path, capsys):
    from tools import video_throughput
    clip = tmp_path / "clip.mp4"
    _write_clip(clip, 6)
    out = tmp_path / "throughput.json"
    code = video_throughput.main(["--input", str(clip), "--pairs", "3", "--size", "64x48", "--multi", "3",
                                  "--repeat", "2", "--threads", "1", "--quiet", "--keep", str(tmp_path / "keep"),
                                  "--out_json", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["size"] == "64x48" and result["pairs"] == 3 and result["frames_counted"] == 9
    # the engine converted exactly the 4 frames of the test clip: 3 x 4 output frames, all decodable
    assert result["engine_frames_out"] == result["engine_frames_decoded"] == 12
    assert len(result["bare_seconds"]) == len(result["engine_seconds"]) == len(result["engine_model_seconds"]) == 2
    # the model's time inside the engine is part of the engine's wall time
    assert all(0 < m < e for m, e in zip(result["engine_model_seconds"], result["engine_seconds"]))
    assert 0 < result["engine_model_share"] < 1
    bare, engine = (sorted(result[k])[0] + sorted(result[k])[1] for k in ("bare_seconds", "engine_seconds"))
    # medians of two: their means (the JSON's seconds are rounded to 1 ms)
    assert result["ratio"] == pytest.approx(bare / engine, abs=0.002 / engine + 0.002 * bare / engine ** 2)
    assert result["bare_fps"] == pytest.approx(9 / (bare / 2), abs=9 * 0.002 / (bare / 2) ** 2)
    from core.video import open_reader
    with open_reader(str(tmp_path / "keep" / "clip.mp4")) as reader:
        assert sum(1 for _ in reader) == 4
    printed = capsys.readouterr().out
    assert "ratio engine / bare: " in printed


def test_video_throughput_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    from tools import video_throughput
    clip = tmp_path / "clip.mp4"
    _write_clip(clip, 3)
    for argv, fragment in ((["--pairs", "5"], "has 3 frames; --pairs 5 needs 6"),
                           (["--size", "big"], "--size must be WIDTHxHEIGHT or native"),
                           (["--multi", "1"], "--multi must be at least 2")):
        assert video_throughput.main(["--input", str(clip), "--quiet"] + argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err


# ------------------------------------------------------------------------------------- tools.interp_video ranks

def _decoded(path):
    """(frames as one uint8 array, frame rate, presentation times in seconds) of a video; (frames, None, file
    names) of a PNG folder."""
    from core.video import list_frame_files, open_reader
    if os.path.isdir(path):
        files = list_frame_files(str(path))
        return np.stack([cv2.imread(f, cv2.IMREAD_UNCHANGED) for f in files]), None, [os.path.basename(f)
                                                                                        for f in files]
    import av
    with av.open(str(path)) as container:
        pts = [frame.time for frame in container.decode(video=0)]
    with open_reader(str(path)) as reader:
        return np.stack(list(reader)), reader.fps, pts


_RECORDING_DRIVER = """
    import json, os, sys
    import core.engine.job as job
    import tools.interp_video as tool

    rank = os.environ["RANK"]
    original = job.convert_video

    def recording(source, output, *args, **kwargs):      # which rank computed which segments, who joined
        summary = original(source, output, *args, **kwargs)
        with open({log!r} + "." + rank, "a") as f:
            f.write(json.dumps({{"rank": int(rank), "output": os.path.basename(output.rstrip("/")),
                                 "segments_run": summary.segments_run, "segments": summary.segments,
                                 "joined": summary.joined}}) + "\\n")
        return summary

    job.convert_video = tool.convert_video = recording
    for argv in {jobs!r}:
        code = tool.main(argv)
        if code:
            sys.exit(code)
    """


def _records(log):
    records = []
    for rank in (0, 1):
        if os.path.exists(f"{log}.{rank}"):
            with open(f"{log}.{rank}") as f:
                records += [json.loads(line) for line in f]
    return records


def test_interp_video_two_ranks_split_one_long_clip_and_equal_one_process(tmp_path):
    from tools import interp_video
    clip = tmp_path / "long.mp4"
    _write_clip(clip, 21)
    common = ["--multi", "2", "--segment_frames", "4", "--threads", "1", "--quiet"]
    jobs = [["--input", str(clip), "--output", str(tmp_path / "ranks.mp4"), *common],
            ["--input", str(clip), "--output", str(tmp_path / "ranks_png") + "/", *common]]
    log = str(tmp_path / "segments")
    finished = _torchrun(_RECORDING_DRIVER.format(log=log, jobs=jobs), tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    for name in ("one.mp4", "one_png/"):
        assert interp_video.main(["--input", str(clip), "--output", str(tmp_path / name), *common]) == 0
    frames, fps, pts = _decoded(tmp_path / "ranks.mp4")
    expected, expected_fps, expected_pts = _decoded(tmp_path / "one.mp4")
    assert frames.shape == expected.shape == (42, 48, 64, 3)                  # 2 x 21 frames
    assert fps == expected_fps and pts == expected_pts
    assert pts == pytest.approx([k / 50 for k in range(42)], abs=1e-6)      # 50 fps timestamps
    assert np.array_equal(frames, expected)
    png, _, names = _decoded(tmp_path / "ranks_png")
    expected_png, _, expected_names = _decoded(tmp_path / "one_png")
    assert names == expected_names and len(names) == 42 and np.array_equal(png, expected_png)   # bit for bit
    # 6 segments of 4 input frames (the last one 1): ranks 0 and 1 computed 3 each, rank 0 alone joined
    for output in ("ranks.mp4", "ranks_png"):
        runs = {r["rank"]: r for r in _records(log) if r["output"] == output}
        assert runs[0]["segments"] == 6 and runs[0]["segments_run"] == runs[1]["segments_run"] == 3
        assert runs[0]["joined"] and not runs[1]["joined"]
    assert not any(name.endswith(".parts") for name in os.listdir(tmp_path))
    assert finished.stdout.count("output: ") == 2                             # one summary per job, from rank 0


def test_interp_video_two_ranks_spread_a_folder_of_videos(tmp_path):
    from tools import interp_video
    folder = tmp_path / "videos"
    os.makedirs(folder)
    for n, count in enumerate((7, 9, 5)):
        _write_clip(folder / f"clip{n}.mp4", count, seed=n)
    common = ["--multi", "2", "--threads", "1", "--quiet"]
    log = str(tmp_path / "videos_log")
    finished = _torchrun(_RECORDING_DRIVER.format(
        log=log, jobs=[["--input", str(folder), "--output", str(tmp_path / "ranks"), *common]]), tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert interp_video.main(["--input", str(folder), "--output", str(tmp_path / "one"), *common]) == 0
    for n, count in enumerate((7, 9, 5)):
        frames, fps, pts = _decoded(tmp_path / "ranks" / f"clip{n}.mp4")
        expected, expected_fps, expected_pts = _decoded(tmp_path / "one" / f"clip{n}.mp4")
        assert frames.shape[0] == 2 * count and fps == expected_fps and pts == expected_pts
        assert np.array_equal(frames, expected)
    # video n ran on rank n % 2, alone, and was joined there
    ran = {r["output"]: r["rank"] for r in _records(log)}
    assert ran == {"clip0.mp4": 0, "clip1.mp4": 1, "clip2.mp4": 0}
    assert all(r["joined"] for r in _records(log))


def test_benchmark_over_two_nodes_with_c10d_rendezvous(sets, tmp_path):
    """Two "machines" of one process each (two torchrun launchers meeting at a c10d rendezvous, as docs/slurm.md's
    M-machine script does): LOCAL_RANK is 0 on both, RANK 0 and 1; the JSON equals one process's."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["-m", "tools.benchmark_vimeo90k", "--data_root", sets["vimeo"], "--model_file", sets["model"],
            "--out_json", str(tmp_path / "nodes.json"), *QUIET]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "UPR_DEBUG"):
        env.pop(name, None)
    launchers = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                                   "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                                   "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "e2-nodes", *argv],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [launcher.communicate(timeout=600) for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], [err[-2000:] for _, err in outputs]
    assert sum(out.count("; 2 ranks") for out, _ in outputs) == 1            # one rank 0, on one machine
    benchmark_vimeo90k.main(["--data_root", sets["vimeo"], "--model_file", sets["model"],
                             "--out_json", str(tmp_path / "one.json"), *QUIET])
    with open(tmp_path / "nodes.json") as f, open(tmp_path / "one.json") as g:
        assert _without_timing(json.load(f)) == _without_timing(json.load(g))
