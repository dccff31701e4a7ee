"""One conversion job: an input (video or frame folder) to an output (video or PNG folder), in resumable segments,
pipelined, optionally spread over the ranks of a shard. See :func:`convert_video` and docs/video.md."""
import dataclasses
import fractions
import math
import os
import re
import time
import warnings

import numpy as np
import torch

from ..frames import from_float, image_to_tensor
from ..video import (DEFAULT_CRF, DEFAULT_DUPLICATE_THRESHOLD, DEFAULT_SCENE_THRESHOLD, VideoDecodeWarning,
                     VideoError, is_folder_output, list_frame_files, open_reader)
from .pipeline import run_pipeline
from .plan import DEFAULT_SEGMENT_FRAMES, PairPlanner, first_output, output_count
from .segments import (MANIFEST_VERSION, Parts, PngSegmentWriter, VideoSegmentWriter,
                       describe_difference, input_identity, join_video)


class JobError(VideoError):
    """A job that cannot start or continue as asked (parts of an earlier job, a changed input, ...): one line."""


class DecodeFailure(VideoError):
    """Decoding stopped at input frame ``frame`` (of the processed range): the frames before it were finished
    and written (``summary``); the job is otherwise complete."""

    def __init__(self, message, frame, summary):
        super().__init__(message)
        self.frame, self.summary = frame, summary


@dataclasses.dataclass
class VideoJobOptions:
    """What a job does (one of ``multi`` and ``fps``). Times are seconds (Fractions or floats); rates Fractions.

    multi: M x the frame rate; fps: output rate; input_fps: rate of a frame folder (default 25) or an override;
    start / end: the range of input frames with i / r in [start, end); scene_threshold / dup_threshold: in
    [0, 1], 0 disables; montage: input left of the result; crf / codec: video encoder; audio: copy the source's
    audio; batch: pairs per forward (None: 1 on the CPU, 4 on CUDA); segment_frames: input frames per segment;
    resume: continue the parts of an earlier identical job; overwrite: drop an existing output / parts;
    model: a dict naming the model (file, size, precision ...), recorded in the manifest so a resume with another
    model is refused.
    """
    multi: int = None
    fps: fractions.Fraction = None
    input_fps: fractions.Fraction = None
    start: fractions.Fraction = None
    end: fractions.Fraction = None
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD
    dup_threshold: float = DEFAULT_DUPLICATE_THRESHOLD
    montage: bool = False
    crf: int = DEFAULT_CRF
    codec: str = None
    audio: bool = True
    batch: int = None
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    resume: bool = False
    overwrite: bool = False
    model: dict = dataclasses.field(default_factory=dict)

    def check(self):
        if (self.multi is None) == (self.fps is None):
            raise JobError("give one of multi and fps")
        if self.multi is not None and self.multi < 2:
            raise JobError(f"--multi must be at least 2, got {self.multi}")
        if self.fps is not None and self.fps <= 0:
            raise JobError(f"the output frame rate must be positive, got {self.fps}")
        for name in ("scene_threshold", "dup_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise JobError(f"--{name} must lie in [0, 1] (0 disables), got {getattr(self, name):g}")
        if self.batch is not None and self.batch < 1:
            raise JobError(f"--batch must be at least 1, got {self.batch}")
        if self.segment_frames < 1:
            raise JobError(f"--segment_frames must be at least 1, got {self.segment_frames}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise JobError("--end must come after --start")


@dataclasses.dataclass
class JobSummary:
    """What a job did. frames_in / frames_out / interpolated / cuts / duplicates cover the whole output (on a
    rank that did not join: its own segments); segments_run: the segments computed by this call (the others were
    done before, or by other ranks); joined: this call wrote the final output; decode_error: the message when
    the input stopped decoding early (its frame: ``decode_frame``)."""
    output: str
    in_fps: fractions.Fraction
    out_fps: fractions.Fraction
    frames_in: int = 0
    frames_out: int = 0
    interpolated: int = 0
    cuts: list = dataclasses.field(default_factory=list)
    duplicates: list = dataclasses.field(default_factory=list)
    segments: int = 0
    segments_run: int = 0
    joined: bool = False
    elapsed: float = 0.0
    audio: str = None
    decode_error: str = None
    decode_frame: int = None


def _log(log, text):
    if log is not None:
        log(text)


def describe_rate(rate):
    """50 -> "50", 30000/1001 -> "29.97", 7/3 -> "7/3 (~2.333)"."""
    text = f"{float(rate):g}"
    return text if rate.denominator == 1 or len(text) < 8 else f"{rate} (~{float(rate):.3f})"


def describe_time(seconds):
    seconds = float(seconds)
    return f"{int(seconds // 60)}:{seconds % 60:06.3f}" if seconds >= 60 else f"{seconds:.3f} s"


def _range_frames(reader, first, stop, limit=None):
    """The frames first .. stop - 1 of ``reader`` as (index in the range, frame); ``limit``: stop after this
    index of the range."""
    if reader.is_folder:
        files = reader.files[first:stop]
        if limit is not None:
            files = files[:limit + 1]
        reader.files = files
        reader.frame_count = len(files)
        yield from enumerate(reader)
        return
    for index, frame in enumerate(reader):
        if stop is not None and index >= stop:
            break
        if limit is not None and index - first > limit:
            break
        if index >= first:
            yield index - first, frame


class _ModelStage:
    """The calling thread's stage: batches the pairs that need the model, runs it, and hands on, in output order,
    ("frames", k, [(frame, left), ...]) and ("commit", k, record) events. Pairs with the same number of times go
    into one batch (each with its own times, where the interpolator takes per-pair lists; else only pairs with
    equal times)."""

    def __init__(self, interpolator, batch, on_cuda):
        self.interpolator = interpolator
        self.batch = batch
        self.on_cuda = on_cuda
        self.pending = []   # events in order; pairs to compute have a "work" entry
        self.queued = 0
        self.times = None
        self.stats = {}
        self.per_pair = None   # whether interpolate_tensors takes a list of per-pair time lists (None: untried)

    def _fits(self, between):
        if self.per_pair is False:
            return between == self.times
        return len(between) == len(self.times)

    def _interpolate(self, img0, img1, times):
        """interpolate_tensors over the batch with per-pair ``times`` (lists of Fractions)."""
        flat = [float(t) for t in times[0]]
        if all(t == times[0] for t in times):
            return self.interpolator.interpolate_tensors(img0, img1, flat)[0]
        per_pair = [[float(t) for t in pair] for pair in times]
        if self.per_pair is not False:
            try:
                frames = self.interpolator.interpolate_tensors(img0, img1, per_pair)[0]
                self.per_pair = True
                return frames
            except (TypeError, ValueError):
                if self.per_pair:
                    raise
                self.per_pair = False
        parts = [self.interpolator.interpolate_tensors(img0[n:n + 1], img1[n:n + 1], pair)[0]
                 for n, pair in enumerate(per_pair)]
        return [torch.cat([part[k] for part in parts]) for k in range(len(flat))]

    def _segment_stats(self, k):
        return self.stats.setdefault(k, {"interpolated": 0, "cuts": [], "duplicates": [], "frames_out": 0})

    def feed(self, event):
        kind = event[0]
        out = []
        if kind == "pair":
            _, k, work = event
            stats = self._segment_stats(k)
            if work.cut:
                stats["cuts"].append(work.index)
            elif work.duplicate:
                stats["duplicates"].append(work.index)
            stats["frames_out"] += len(work.outputs)
            between = work.between
            if between:
                stats["interpolated"] += len(between)
                if self.queued and (not self._fits(between) or self.queued >= self.batch):
                    out += self._run()
                self.times = between
                self.queued += 1
            self.pending.append(event)
            if self.queued >= self.batch:
                out += self._run()
            elif not self.queued:
                out += self._emit()
        elif kind == "tail":
            self._segment_stats(event[1])["frames_out"] += event[3]
            self.pending.append(event)
        else:   # segment end
            out += self._run()
            _, k, record = event
            record.update(self.stats.pop(k, self._segment_stats(k)))
            self.stats.pop(k, None)
            out.append(("commit", k, record))
        return out

    def flush(self):
        return self._run()

    def _run(self):
        results = {}
        if self.queued:
            works = [e[2] for e in self.pending if e[0] == "pair" and e[2].between]
            img0 = self._batch([w.tensor0 for w in works])
            img1 = self._batch([w.tensor1 for w in works])
            frames = self._interpolate(img0, img1, [w.between for w in works])
            if self.on_cuda and works[0].frame0.dtype == np.uint8:   # 4x less to copy back; same rounding
                frames = [(f.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
                          for f in frames]
            frames = [f.cpu() for f in frames]
            for n, work in enumerate(works):
                results[id(work)] = [f[n] for f in frames]
            self.queued, self.times = 0, None
        return self._emit(results)

    def _batch(self, tensors):
        """N frames (1 x 3 x H x W float, or pinned uint8 on CUDA) -> one N x 3 x H x W float batch; uint8
        frames are copied to the GPU as they are and divided by 255 there (the same float32 values)."""
        if tensors[0].dtype != torch.uint8:
            return torch.cat(tensors)
        device = self.interpolator.device
        return torch.cat([t.to(device, non_blocking=True) for t in tensors]).float().div_(255.0)

    def _emit(self, results=None):
        out = []
        for event in self.pending:
            if event[0] == "tail":
                _, k, frame, count = event
                out.append(("frames", k, [(frame, frame)] * count))
                continue
            _, k, work = event
            made = iter(results[id(work)]) if work.between else iter(())
            frames = [(work.frame0 if (t == 0 or work.hold) else next(made), work.frame0) for t in work.times]
            if frames:
                out.append(("frames", k, frames))
        self.pending = []
        return out


def _to_array(frame, dtype):
    """An output frame (numpy H x W x 3, a 3 x H x W float CPU tensor or an H x W x 3 uint8 one) -> numpy of
    ``dtype``."""
    if isinstance(frame, np.ndarray):
        return frame
    if frame.dtype == torch.uint8:   # H x W x 3 already (made on the GPU)
        return frame.numpy()
    return from_float(frame.permute(1, 2, 0).numpy(), dtype)


def _job_manifest(identity, options, first, stop, ratio, in_fps, out_fps, to_folder, ext, copy_audio, length):
    return {"version": MANIFEST_VERSION, "input": identity, "segment_frames": length,
            "options": {"ratio": str(ratio), "input_fps": str(in_fps), "output_fps": str(out_fps),
                        "first_frame": first, "stop_frame": stop, "scene_threshold": options.scene_threshold,
                        "dup_threshold": options.dup_threshold, "montage": options.montage,
                        "output": "png" if to_folder else ext,
                        "crf": None if to_folder else options.crf, "codec": None if to_folder else options.codec,
                        "audio": copy_audio, "batch": options.batch, "model": options.model}}


def _finished(parts, manifest, output, to_folder):
    """The "joined" record of an earlier identical job whose output is in place (killed while its parts were being
    removed), else None."""
    old = parts.manifest() if parts.exists() else None
    joined = (old or {}).get("joined")
    if not joined or describe_difference({k: v for k, v in old.items() if k != "joined"}, manifest) is not None:
        return None
    if to_folder:
        return joined if os.path.isdir(output) else None
    return joined if os.path.isfile(output) and os.path.getsize(output) == joined.get("size") else None


def _prepare_parts(parts, manifest, options, output, to_folder):
    """Main rank, before any work: an earlier job's parts are continued (resume, same manifest), dropped
    (overwrite) or refused (one line)."""
    if parts.exists() and parts.manifest() is None and not parts.done():
        parts.remove()   # an empty leftover (a kill during the removal of a finished job's parts)
    if parts.exists():
        old = parts.manifest()
        if options.overwrite:
            parts.remove()
            if to_folder and os.path.isdir(output):
                for name in os.listdir(output):
                    if re.fullmatch(r"(\.tmp\d+_)?frame_\d{6}\.png", name):
                        os.remove(os.path.join(output, name))
        elif not options.resume:
            raise JobError(f"{parts.folder} holds the parts of an earlier job for {output}: pass --resume to "
                           "continue it, or --overwrite to start again")
        elif old is None:
            raise JobError(f"cannot resume: {parts.manifest_path} is missing or unreadable; pass --overwrite "
                           "to start again")
        else:
            difference = describe_difference(old.get("input", {}), manifest["input"], "input ")
            what = "the input changed"
            if difference is None:
                old_rest = {k: v for k, v in old.items() if k not in ("input", "joined")}
                new_rest = {k: v for k, v in manifest.items() if k not in ("input", "joined")}
                difference = describe_difference(old_rest, new_rest)
                what = "the options changed"
            if difference is not None:
                raise JobError(f"cannot resume {output}: {what} since the earlier job ({difference}); pass "
                               "--overwrite to start again")
    if not to_folder and os.path.exists(output) and not options.overwrite:
        raise JobError(f"output {output} exists; pass --overwrite to replace it")
    if to_folder:
        os.makedirs(output, exist_ok=True)
        if not parts.exists() and list_frame_files(output):
            raise JobError(f"output folder {output} already holds PNG files; choose an empty or new folder")
    parts.create(manifest)


def convert_video(source, output, options, interpolator, progress=None, shard=None, log=None):
    """Convert ``source`` (a video file or a frame folder) to ``output`` (a video file, or a PNG folder when
    :func:`core.video.is_folder_output`) with ``interpolator`` (a :class:`core.Interpolator`, or a function
    returning one, called once the input opened) as ``options``
    (:class:`VideoJobOptions`) say; returns a :class:`JobSummary`.

    Work is done in segments of ``options.segment_frames`` input frames, committed atomically under
    ``<output>.parts``, and joined at the end (docs/video.md, Resume). ``progress(done, total)``: called with the
    output frames written so far and the expected total (None when unknown), from the encoder thread.
    ``shard``: None (one process) or an object with ``rank``, ``world_size`` and ``barrier()``: rank r computes
    the segments k with k % world_size == r; after a barrier rank 0 joins. ``log(line)``: receives the
    lines describing the job (None: silent). Errors: :class:`JobError`, ``VideoError``, ``OSError`` (a full
    disk: the committed segments stay, ``resume`` continues); a decode error mid-input finishes the frames before
    it, writes the output and raises :class:`DecodeFailure` naming the frame.
    """
    options.check()
    rank, world = (0, 1) if shard is None else (shard.rank, shard.world_size)
    is_main = rank == 0
    to_folder = is_folder_output(output)
    ext = None if to_folder else os.path.splitext(output)[1].lower()
    parts = Parts(output, ext)
    reader = open_reader(source, options.input_fps)
    with reader:
        if not hasattr(interpolator, "interpolate_tensors") and callable(interpolator):
            interpolator = interpolator()   # loaded once the input is known to open
        in_fps = fractions.Fraction(reader.fps)
        out_fps = in_fps * options.multi if options.multi is not None else fractions.Fraction(options.fps)
        ratio = out_fps / in_fps
        first = math.ceil(options.start * in_fps) if options.start is not None else 0
        stop = math.ceil(options.end * in_fps) if options.end is not None else None
        known = reader.frame_count or None
        if known is not None and reader.is_folder and first >= known:
            raise JobError(f"--start {describe_time(options.start)} is past the end of {source} "
                           f"({known} frames, {describe_time(known / in_fps)})")
        copy_audio = reader.audio is not None and options.audio and not to_folder
        length = options.segment_frames
        on_cuda = getattr(getattr(interpolator, "device", None), "type", "cpu") == "cuda"
        batch = options.batch or (4 if on_cuda else 1)
        identity = input_identity(source, reader.files if reader.is_folder else None)
        manifest = _job_manifest(identity, options, first, stop, ratio, in_fps, out_fps, to_folder, ext,
                                 copy_audio, length)
        summary = JobSummary(output, in_fps, out_fps)

        kind = "frames" if reader.is_folder else "video"
        _log(log, f"input: {source} ({kind}, {reader.width}x{reader.height}, {describe_rate(in_fps)} fps"
                  f"{', ~%d frames' % reader.frame_count if reader.frame_count else ''}"
                  f"{', audio ' + str(reader.audio) if reader.audio else ''})")
        if first or stop is not None:
            _log(log, f"range: input frames {first} to {'the end' if stop is None else stop - 1} "
                      f"({describe_time(first / in_fps)} to "
                      f"{'the end' if stop is None else describe_time(stop / in_fps)})")
        if hasattr(interpolator, "pyramid_for"):
            pyr_level, skipped = interpolator.pyramid_for(reader.height, reader.width)
            _log(log, f"model: UPR-Net {getattr(interpolator.model, 'model_size', '')} on {interpolator.device}, "
                      f"pyramid levels {pyr_level} (skipped {skipped}), batch {batch}; scene threshold "
                      f"{options.scene_threshold:g}" + (" (off)" if options.scene_threshold <= 0 else "")
                      + f", duplicate threshold {options.dup_threshold:g}"
                      + (" (off)" if options.dup_threshold <= 0 else ""))
        if reader.audio is not None and to_folder and options.audio:
            _log(log, "note: a PNG folder has no audio track; the audio is left out")
        width = 2 * reader.width if options.montage else reader.width
        if not to_folder and (width % 2 or reader.height % 2):
            _log(log, f"note: odd size {width}x{reader.height}: the video is stored as "
                      f"{width + width % 2}x{reader.height + reader.height % 2} (last row/column repeated)")

        if is_main and options.resume and not options.overwrite:
            finished = _finished(parts, manifest, output, to_folder)
            if finished is not None:
                for key in ("frames_in", "frames_out", "interpolated", "cuts", "duplicates", "segments", "audio"):
                    setattr(summary, key, finished.get(key, getattr(summary, key)))
                summary.joined = True
                _log(log, f"resume: {output} was complete already; its parts are removed")
                parts.remove()
                return summary
        if is_main:
            _prepare_parts(parts, manifest, options, output, to_folder)
        if shard is not None:
            shard.barrier()
        if not is_main:
            found = parts.manifest()
            if found is None:   # rank 0 has not prepared (a launcher without a real barrier)
                if to_folder:
                    os.makedirs(output, exist_ok=True)
                parts.create(manifest)
            elif describe_difference(found, manifest) is not None:
                raise JobError(f"rank {rank}: {parts.manifest_path} does not describe this job "
                               f"({describe_difference(found, manifest)})")
        done = parts.done()
        last_known = next((k for k, r in done.items() if r.get("last")), None)
        mine = lambda k: k % world == rank and k not in done   # noqa: E731
        if done:
            _log(log, f"resume: {len(done)} segment(s) done in {parts.folder}")

        limit = None   # the last range index worth decoding
        if last_known is not None:
            todo = [k for k in range(last_known + 1) if mine(k)]
            limit = (max(todo) + 1) * length if todo else 0
        expected = None
        if known is not None:
            n = max(0, (known if stop is None else min(known, stop)) - first)
            expected = output_count(n, ratio) if n else None
        written = [sum(r.get("frames_out", 0) for r in done.values())]
        ended = {}

        def produce():
            planners = {}
            previous = None
            count = 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", VideoDecodeWarning)   # reported by the summary instead
                for i, frame in _range_frames(reader, first, stop, limit):
                    count = i + 1
                    k = i // length
                    wanted = [j for j in ((k - 1,) if i % length == 0 and k else ()) + (k,) if mine(j)]
                    if not wanted:
                        previous = None
                        continue
                    if on_cuda and frame.dtype == np.uint8:   # 4x less to copy; converted on the GPU
                        tensor = torch.from_numpy(frame).permute(2, 0, 1)[None].pin_memory()
                    else:
                        tensor = image_to_tensor(frame)
                    for j in wanted:
                        planner = planners.get(j)
                        if planner is None:
                            planner = planners[j] = PairPlanner(ratio, options.scene_threshold,
                                                                options.dup_threshold, start=j * length)
                            planner.tensor = None
                        work = planner.push(frame)
                        if work is not None:
                            work.tensor0, work.tensor1 = planner.tensor, tensor
                            yield ("pair", j, work)
                        planner.tensor = tensor
                        if j == k - 1:   # frame (k) * length closes segment k - 1
                            del planners[j]
                            yield ("end", j, {"index": j, "first_output": first_output(j * length, ratio),
                                              "last": False})
                    previous = frame
            ended["count"] = count
            ended["previous"] = previous
            if count == 0 or (limit is not None and count > limit):
                return
            last = (count - 1) // length
            if mine(last):
                start_out = first_output(last * length, ratio)
                tail = max(0, output_count(count, ratio) - first_output(count - 1, ratio))
                if tail:
                    yield ("tail", last, previous, tail)
                yield ("end", last, {"index": last, "first_output": start_out, "last": True, "frames_in": count})

        state = {"writer": None, "k": None}
        dtype = [None]

        def consume(event):
            kind, k = event[0], event[1]
            if kind == "frames":
                writer = state["writer"]
                if writer is None or state["k"] != k:
                    start_out = first_output(k * length, ratio)
                    if to_folder:
                        writer = PngSegmentWriter(parts, k, output, start_out)
                    else:
                        writer = VideoSegmentWriter(parts, k, out_fps, width, reader.height, reader.color_tags,
                                                    options.codec, options.crf)
                    state["writer"], state["k"] = writer, k
                for frame, left in event[2]:
                    if dtype[0] is None:
                        dtype[0] = left.dtype
                    frame = _to_array(frame, left.dtype)
                    if options.montage:
                        frame = np.concatenate([left, frame], axis=1)
                    writer.write(frame)
                    written[0] += 1
                    if progress is not None:
                        progress(written[0], expected)
            else:   # commit
                record = event[2]
                writer = state["writer"] if state["k"] == k else None
                if writer is None:   # a segment without frames of its own
                    writer = PngSegmentWriter(parts, k, output, 0) if to_folder else None
                if writer is not None:
                    writer.commit(record)
                else:
                    parts.commit(record)
                state["writer"], state["k"] = None, None
                summary.segments_run += 1

        start_time = time.perf_counter()
        stage = _ModelStage(interpolator, batch, on_cuda)
        try:
            run_pipeline(produce, stage, consume, depth=16 if on_cuda else 4)   # CUDA: ride out encoder flushes
        except BaseException:
            if state["writer"] is not None:
                state["writer"].abort()
            raise
        summary.elapsed = time.perf_counter() - start_time
        if ended.get("count", 0) == 0 and limit != 0:
            raise JobError(f"--start {describe_time(options.start or 0)} is past the end of {source} "
                           f"({reader.frames_read} frames, {describe_time(reader.frames_read / in_fps)})")
        count = ended.get("count", 0)
        if reader.decode_error:
            summary.decode_error = reader.decode_error
            summary.decode_frame = count
        elif limit is None and not reader.is_folder and known:
            announced = (known if stop is None else min(known, stop)) - first
            if announced - count > max(10, announced // 20):   # the demuxer stopped early without an error
                summary.decode_error = (f"{source} ended after {first + count} frames, but its header announces "
                                        f"~{known}: the file is truncated or corrupt")
                summary.decode_frame = count
        first_time = reader.first_frame_time or 0.0

    if shard is not None:
        shard.barrier()
    records = parts.done()
    if not is_main:
        for r in records.values():
            if r["index"] % world == rank:
                _add(summary, r)
        return summary
    last = next((k for k, r in records.items() if r.get("last")), None)
    missing = [k for k in range((last if last is not None else max(records, default=-1)) + 1) if k not in records]
    if last is None or missing:
        raise JobError(f"cannot join {output}: segment(s) {', '.join(map(str, missing[:10])) or 'at the end'} "
                       f"are not done in {parts.folder}")
    ordered = [records[k] for k in range(last + 1)]
    for r in ordered:
        _add(summary, r)
    summary.segments = len(ordered)
    if not to_folder:
        audio = None
        if copy_audio:
            offset = first_time + float(first / in_fps)
            keep = None
            if first or stop is not None:
                keep = (0.0 if first else None, None if stop is None else float((stop - first) / in_fps))
            audio = (source, offset, keep)
    joined = {"frames_in": summary.frames_in, "frames_out": summary.frames_out, "interpolated": summary.interpolated,
              "cuts": summary.cuts, "duplicates": summary.duplicates, "segments": summary.segments}
    if not to_folder:
        def before_rename(size, passthrough):
            if passthrough is not None:
                summary.audio = "copied" if passthrough.copy else \
                    f"re-encoded to {passthrough.stream.codec_context.name}"
            joined.update(size=size, audio=summary.audio)
            parts.mark_joined(joined)

        join_video(parts, ordered, output, out_fps, audio, before_rename=before_rename)
    else:
        for name in os.listdir(output):   # frames half-written by a killed run
            if re.fullmatch(r"\.tmp\d+_frame_\d{6}\.png", name):
                os.remove(os.path.join(output, name))
        parts.mark_joined(joined)
    parts.remove()
    summary.joined = True
    if summary.decode_error:
        raise DecodeFailure(f"{summary.decode_error}; input frame {summary.decode_frame} of the range failed to "
                            f"decode: the output holds the {summary.frames_out} frames made from the "
                            f"{summary.frames_in} before it", summary.decode_frame, summary)
    return summary


def _add(summary, record):
    summary.frames_out += record.get("frames_out", 0)
    summary.interpolated += record.get("interpolated", 0)
    summary.cuts += record.get("cuts", [])
    summary.duplicates += record.get("duplicates", [])
    if record.get("last"):
        summary.frames_in = record.get("frames_in", 0)


def describe_summary(summary, montage=False):
    """The two lines the tool prints after a job: what was written, and what the model did."""
    to_folder = is_folder_output(summary.output)
    audio = f"; audio {summary.audio}" if summary.audio else ""
    line = (f"output: {summary.output} ({'PNG frames' if to_folder else 'video'}{', montage' if montage else ''}, "
            f"{summary.frames_out} frames at {describe_rate(summary.out_fps)} fps, "
            f"{float(summary.frames_out / summary.out_fps):.3f} s; input {summary.frames_in} frames, "
            f"{float(summary.frames_in / summary.in_fps):.3f} s{audio})")
    cuts = ""
    if summary.cuts:
        shown = ", ".join(map(str, summary.cuts[:20])) + (" ..." if len(summary.cuts) > 20 else "")
        cuts = f" after input frame(s) {shown}"
    stats = (f"{summary.interpolated} frames interpolated in {summary.elapsed:.1f} s; {len(summary.cuts)} scene "
             f"cut(s){cuts}; {len(summary.duplicates)} duplicate pair(s) skipped")
    return line, stats


def convert_many(jobs, options, interpolator, shard=None, log=None, progress_for=None, errors=(VideoError, OSError)):
    """Convert several (source, output) pairs (a folder of videos), each a job of its own (own parts, manifest).

    With a shard of w ranks and at least w jobs, job n runs on rank n % w alone; with fewer jobs every rank
    takes part in each job's segments (:func:`convert_video`). A job failing with one of ``errors`` is reported
    and the others go on (where the jobs are spread; in segment mode an error stops all). ``progress_for(n,
    source)``: the progress callback of job n (or None). Returns [(source, output, JobSummary or the error)] for
    the jobs this rank ran; all ranks meet at a barrier at the end."""
    world = 1 if shard is None else shard.world_size
    rank = 0 if shard is None else shard.rank
    spread = world > 1 and len(jobs) >= world
    results = []
    for n, (source, output) in enumerate(jobs):
        if spread and n % world != rank:
            continue
        progress = progress_for(n, source) if progress_for is not None else None
        try:
            result = convert_video(source, output, options, interpolator, progress,
                                   None if spread else shard, log)
        except errors as error:
            if not spread and world > 1:
                raise
            result = error
        results.append((source, output, result))
    if shard is not None:
        shard.barrier()
    return results
