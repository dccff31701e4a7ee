"""The four interpolation benchmarks, listed from their distributed folder layouts.

Each function takes the dataset folder and returns a :class:`BenchmarkSet`: the samples (frame 0, frame 1,
ground-truth frame(s) and their times) grouped into subsets, plus notes on anything that was adjusted while
resolving paths. Every listed file is checked up front, so a missing list file or image fails at once with a
``FileNotFoundError`` naming it; a malformed list or folder raises ``ValueError``.

    vimeo90k(DIR)   DIR/tri_testlist.txt ("00001/0389" lines), DIR/sequences/<line>/im1.png, im2.png (GT), im3.png
    ucf101(DIR)     DIR/<triplet>/frame_00.png, frame_01_gt.png (GT), frame_02.png
    snufilm(DIR)    DIR/eval_modes/test-{easy,medium,hard,extreme}.txt, lines "frame0 gt frame1" relative to DIR
    xtest(DIR)      DIR/<type>/<scene>/*.png, 33 frames: 8x between frames 0 and 32, GT frames 4, 8, ..., 28
"""
import os
from collections import Counter
from dataclasses import dataclass, field

from ..frames import natural_key

SNUFILM_SUBSETS = ("easy", "medium", "hard", "extreme")
XTEST_FRAMES_PER_SCENE = 33
XTEST_FACTOR = 8


@dataclass(frozen=True)
class Sample:
    """One input pair and what to compare against.

    subset: the group the scores are averaged over; name: unique id within the benchmark (used in messages);
    targets: ground-truth image paths, one per time in ``times`` (fractions in (0, 1) between frame0 and
    frame1); save_names: relative output path of each prediction for ``--save_dir``.
    """
    subset: str
    name: str
    frame0: str
    frame1: str
    targets: tuple
    times: tuple
    save_names: tuple


@dataclass
class BenchmarkSet:
    """The samples of one benchmark, in evaluation order, and notes on how paths were resolved."""
    dataset: str
    root: str
    samples: list
    notes: list = field(default_factory=list)

    @property
    def subsets(self):
        """Subset names in order of first appearance."""
        return list(dict.fromkeys(sample.subset for sample in self.samples))

    def counts(self):
        return Counter(sample.subset for sample in self.samples)


def _require_dir(path, what):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} not found: {path}")


def _require_file(path, what="image"):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _read_list(path):
    """Non-empty, stripped lines of a list file as (line_number, text)."""
    _require_file(path, "list file")
    with open(path, encoding="utf-8") as f:
        return [(number, line.strip()) for number, line in enumerate(f, 1) if line.strip()]


def _take(items, limit):
    return items if limit is None else items[:max(0, limit)]


def _check_non_empty(samples, where):
    if not samples:
        raise ValueError(f"no samples found in {where}")


def vimeo90k(root, limit=None):
    """Vimeo90K triplet test set (3,782 triplets of 448x256). ``limit``: at most this many triplets."""
    root = os.fspath(root)
    _require_dir(root, "Vimeo90K folder")
    list_file = os.path.join(root, "tri_testlist.txt")
    samples = []
    for _, line in _take(_read_list(list_file), limit):
        folder = os.path.join(root, "sequences", *line.strip("/").split("/"))
        im1, im2, im3 = (_require_file(os.path.join(folder, f"im{i}.png")) for i in (1, 2, 3))
        samples.append(Sample("vimeo90k", line, im1, im3, (im2,), (0.5,), (f"{line}/im2.png",)))
    _check_non_empty(samples, list_file)
    return BenchmarkSet("vimeo90k", root, samples)


def ucf101(root, limit=None):
    """UCF101 triplets as in DVF (379 folders of 256x256). ``limit``: at most this many folders."""
    root = os.fspath(root)
    _require_dir(root, "UCF101 folder")
    folders = sorted((name for name in os.listdir(root)
                      if not name.startswith(".") and os.path.isdir(os.path.join(root, name))), key=natural_key)
    samples = []
    for name in _take(folders, limit):
        folder = os.path.join(root, name)
        frame0, gt, frame1 = (_require_file(os.path.join(folder, f))
                              for f in ("frame_00.png", "frame_01_gt.png", "frame_02.png"))
        samples.append(Sample("ucf101", name, frame0, frame1, (gt,), (0.5,), (f"{name}/frame_01_gt.png",)))
    if not samples:
        raise ValueError(f"no triplet folders (with frame_00.png, frame_01_gt.png, frame_02.png) in {root}")
    return BenchmarkSet("ucf101", root, samples)


class _PathResolver:
    """Resolves list paths under ``root``; a path that does not exist is retried with leading components
    dropped (the released SNU-FILM lists start with ``data/SNU-FILM/``). Counts what was dropped."""

    def __init__(self, root):
        self.root = root
        self.dropped = Counter()
        self.unchanged = 0

    def resolve(self, listed, where):
        parts = [p for p in listed.replace("\\", "/").split("/") if p not in ("", ".")]
        if os.path.isabs(listed) and os.path.isfile(listed):
            self.unchanged += 1
            return listed
        for skip in range(len(parts)):
            candidate = os.path.join(self.root, *parts[skip:])
            if os.path.isfile(candidate):
                if skip:
                    self.dropped["/".join(parts[:skip]) + "/"] += 1
                else:
                    self.unchanged += 1
                return candidate
        raise FileNotFoundError(f"image not found: {os.path.join(self.root, listed)} (listed in {where}; also "
                                f"tried with leading path components dropped)")

    def notes(self):
        return [f"dropped leading '{prefix}' from {count} paths" for prefix, count in self.dropped.items()]


def snufilm(root, limit=None, subsets=SNUFILM_SUBSETS):
    """SNU-FILM (310 triplets per difficulty, up to 1280x720). ``limit``: at most this many per subset.

    Paths in the lists are relative to ``root``; a prefix such as ``data/SNU-FILM/`` is dropped where needed
    and reported in the returned notes.
    """
    root = os.fspath(root)
    _require_dir(root, "SNU-FILM folder")
    unknown = [s for s in subsets if s not in SNUFILM_SUBSETS]
    if unknown:
        raise ValueError(f"unknown SNU-FILM subset(s) {unknown}; choose from {list(SNUFILM_SUBSETS)}")
    list_files = {s: os.path.join(root, "eval_modes", f"test-{s}.txt") for s in subsets}
    for path in list_files.values():            # fail on a missing list before resolving thousands of paths
        _require_file(path, "list file")
    resolver = _PathResolver(root)
    samples = []
    for subset, list_file in list_files.items():
        lines = _take(_read_list(list_file), limit)
        for number, line in lines:
            where = f"{list_file} line {number}"
            paths = line.split()
            if len(paths) != 3:
                raise ValueError(f"{where}: expected three image paths (frame 0, ground truth, frame 1), "
                                 f"got {len(paths)}")
            frame0, gt, frame1 = (resolver.resolve(p, where) for p in paths)
            gt_relative = os.path.relpath(gt, root).replace(os.sep, "/")
            samples.append(Sample(subset, f"{subset}/{gt_relative}", frame0, frame1, (gt,), (0.5,),
                                  (f"{subset}/{gt_relative}",)))
        _check_non_empty(lines, list_file)
    return BenchmarkSet("snufilm", root, samples, resolver.notes())


def xtest(root, limit=None):
    """X-TEST of X4K1000FPS (15 scenes of 33 4096x2160 frames, in type folders): 8x interpolation between
    frames 0 and 32, compared with frames 4k at t = k/8, k = 1..7. ``limit``: at most this many scenes per type.
    """
    root = os.fspath(root)
    _require_dir(root, "X-TEST folder")
    listdirs = lambda path: sorted((n for n in os.listdir(path)
                                    if not n.startswith(".") and os.path.isdir(os.path.join(path, n))),
                                   key=natural_key)
    step = (XTEST_FRAMES_PER_SCENE - 1) // XTEST_FACTOR
    times = tuple(k / XTEST_FACTOR for k in range(1, XTEST_FACTOR))
    samples = []
    for kind in listdirs(root):
        for scene in _take(listdirs(os.path.join(root, kind)), limit):
            folder = os.path.join(root, kind, scene)
            frames = sorted((n for n in os.listdir(folder) if n.lower().endswith(".png")), key=natural_key)
            if len(frames) != XTEST_FRAMES_PER_SCENE:
                raise ValueError(f"X-TEST scene {folder} has {len(frames)} PNG frames, expected "
                                 f"{XTEST_FRAMES_PER_SCENE}")
            paths = [os.path.join(folder, n) for n in frames]
            targets = tuple(paths[k * step] for k in range(1, XTEST_FACTOR))
            save_names = tuple(f"{kind}/{scene}/{frames[k * step]}" for k in range(1, XTEST_FACTOR))
            samples.append(Sample(kind, f"{kind}/{scene}", paths[0], paths[-1], targets, times, save_names))
    if not samples:
        raise ValueError(f"no X-TEST scenes found: expected {root}/<type>/<scene>/*.png "
                         f"({XTEST_FRAMES_PER_SCENE} frames per scene)")
    return BenchmarkSet("xtest", root, samples)
