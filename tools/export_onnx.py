"""Export the whole UPR-Net (motion estimation and synthesis) to ONNX.

    python -m tools.export_onnx --model_size base --out upr-base.onnx            # the shipped checkpoint, L=3
    python -m tools.export_onnx --model_file my.pkl --pyr_level 5 --out upr-base-l5.onnx --check

The graph's inputs and outputs, the frame sizes it accepts (multiples of 2^(pyr_level + 1): pad first), its
metadata, how splatting is exported (opset 18), --check, and what is refused: docs/onnx.md.
"""
import os
import time
import warnings

import torch
import torch.nn as nn

from core.cli import UsageError, add_model_arguments, cli_main, tool_parser

DEFAULT_OPSET = 18
INPUT_NAMES = ("img0", "img1", "t")
OUTPUT_NAMES = ("interp", "bi_flow")


def size_multiple(pyr_level):
    """H and W of the exported graph's frames must be multiples of this: 2^(pyr_level + 1)."""
    return 2 ** (pyr_level + 1)


class ExportedUPRNet(nn.Module):
    """``UPRNet.forward(img0, img1, t, pyr_level, nr_lvl_skipped)[:2]`` with the pyramid fixed and t a tensor.

    The synthesis loop is ``UPRNet.synthesize``'s with the upsampling factors between levels fixed in advance (2,
    and 2^S into the level after S skipped ones) instead of read off the frame sizes, which the exporters cannot
    pass to an interpolation as a scale; the golden tests check it gives the model's outputs."""

    def __init__(self, model, pyr_level, nr_lvl_skipped=0):
        super().__init__()
        model._levels(pyr_level, nr_lvl_skipped)                  # the model's own check of the pyramid
        self.model, self.pyr_level, self.nr_lvl_skipped = model, pyr_level, nr_lvl_skipped

    def forward(self, img0, img1, t):
        from core.model.upr_net import as_time_tensor, upsample_image

        levels = self.model.estimate_motion(img0, img1, self.pyr_level, self.nr_lvl_skipped)
        time_period = as_time_tensor(t, img0)
        interp = None
        for k, motion in enumerate(levels):
            if interp is not None:
                skipped = self.nr_lvl_skipped > 0 and k == len(levels) - 1
                interp = upsample_image(interp, 2 ** self.nr_lvl_skipped if skipped else 2)
            interp = self.model.synthesis_network(motion.img0, motion.img1, motion.feats0, motion.feats1,
                                                  motion.full_flow, time_period, interp)
        return interp, levels[-1].full_flow


def export(model, path, pyr_level=3, nr_lvl_skipped=0, example_size=(64, 64), opset=DEFAULT_OPSET,
           model_size=None):
    """Export ``model`` (an UPRNet, fp32) with the pyramid fixed to ``path``; dynamic N, H and W.

    example_size: (H, W) of the random frames traced, multiples of :func:`size_multiple`. Returns ``path``.
    """
    from core.ops.export_friendly import exporting

    multiple = size_multiple(pyr_level)
    if any(v % multiple or v < multiple for v in example_size):
        raise ValueError(f"the example size {example_size[0]}x{example_size[1]} must be positive multiples of "
                         f"2^(pyr_level+1) = {multiple}")
    if opset < 18:
        raise ValueError(f"opset must be at least 18 (ScatterElements with reduction 'add'), got {opset}")
    wrapper = ExportedUPRNet(model.float().eval(), pyr_level, nr_lvl_skipped).eval()
    generator = torch.Generator().manual_seed(0)
    example = (torch.rand(1, 3, *example_size, generator=generator),
               torch.rand(1, 3, *example_size, generator=generator), torch.tensor([0.5]))
    with exporting(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")        # the tracer's warnings about shapes read as Python values
        frame = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(wrapper, example, path, dynamo=False, opset_version=opset,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes={"img0": frame, "img1": frame, "t": {0: "batch"},
                                        "interp": frame, "bi_flow": frame})
    _add_metadata(path, {"upr_multiple": multiple, "upr_pyr_level": pyr_level,
                         "upr_nr_lvl_skipped": nr_lvl_skipped, "upr_model_size": model_size or model.model_size})
    return path


def _add_metadata(path, entries):
    import onnx

    proto = onnx.load(path)
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, str(value)
    proto.doc_string = (f"UPR-Net {entries['upr_model_size']}: inputs img0, img1 (N x 3 x H x W in [0, 1], H and W "
                        f"multiples of {entries['upr_multiple']}), t (N); outputs interp, bi_flow (pixels)")
    onnx.save(proto, path)


def scatter_reductions(path):
    """[(op type, reduction)] of the Scatter* nodes of the ONNX file at ``path`` (functions included)."""
    import onnx

    proto = onnx.load(path)
    nodes = list(proto.graph.node) + [n for f in proto.functions for n in f.node]
    found = []
    for node in nodes:
        if node.op_type in ("ScatterND", "ScatterElements"):
            reduction = next((a.s.decode() for a in node.attribute if a.name == "reduction"), "none")
            found.append((node.op_type, reduction))
    return found


def ort_session(path, threads=None):
    """An ONNX Runtime CPU session for ``path`` (``threads``: intra-op threads, None: ORT's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_ort(session, img0, img1, t):
    """(interp, bi_flow) as torch tensors from an ONNX Runtime session; t: a float or an N tensor."""
    n = img0.shape[0]
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(n).contiguous()
    feeds = {"img0": img0.float().contiguous().numpy(), "img1": img1.float().contiguous().numpy(), "t": t.numpy()}
    return tuple(torch.from_numpy(v) for v in session.run(list(OUTPUT_NAMES), feeds))


def build_parser():
    parser = tool_parser("python -m tools.export_onnx", __doc__, "docs/onnx.md",
                         usage="%(prog)s --out FILE.onnx [options]")
    add_model_arguments(parser, pyr_level=3, nr_lvl_skipped=0)
    parser.add_argument("--out", required=True, metavar="FILE.onnx", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                        help=f"ONNX opset, >= 18 (default: {DEFAULT_OPSET})")
    parser.add_argument("--example_size", default=None, metavar="WxH",
                        help="frames traced (default: 4 x 2^(pyr_level+1) square; any multiple runs)")
    parser.add_argument("--check", action="store_true",
                        help="run the file in ONNX Runtime on the example frames, compare with PyTorch")
    return parser


def _parse_args(argv):
    args = build_parser().parse_args(argv)
    if args.pyr_level < 1 or not 0 <= args.nr_lvl_skipped < args.pyr_level:
        raise UsageError(f"need --pyr_level >= 1 and 0 <= --nr_lvl_skipped < --pyr_level, got {args.pyr_level} "
                         f"and {args.nr_lvl_skipped}")
    if args.precision != "fp32":
        raise UsageError("the ONNX export is fp32 only: --precision must be fp32")
    if args.scale != 1.0:
        raise UsageError("the exported graph holds one pyramid: set it with --pyr_level / --nr_lvl_skipped, "
                         "not --scale")
    if args.compile:
        raise UsageError("--compile does not apply to the ONNX export (the graph is traced, not compiled)")
    if args.low_memory == "on":
        raise UsageError("the exported graph synthesizes whole frames: --low_memory on is not supported")
    if args.device not in ("auto", "cpu"):
        raise UsageError(f"the export runs on the CPU: --device {args.device} is not supported")
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.opset < 18:
        raise UsageError(f"--opset must be at least 18 (ScatterElements with reduction 'add'), got {args.opset}")
    if not args.out.endswith(".onnx"):
        raise UsageError(f"--out must end in .onnx: {args.out}")
    multiple = size_multiple(args.pyr_level)
    if args.example_size is None:
        args.example_hw = (4 * multiple, 4 * multiple)
    else:
        try:
            width, height = (int(v) for v in args.example_size.lower().split("x"))
        except ValueError:
            raise UsageError(f"--example_size: expected WIDTHxHEIGHT such as 128x64, got {args.example_size!r}") \
                from None
        if width < multiple or height < multiple or width % multiple or height % multiple:
            raise UsageError(f"--example_size {args.example_size}: width and height must be positive multiples of "
                             f"2^(pyr_level+1) = {multiple}")
        args.example_hw = (height, width)
    return args


def _load_model(args):
    """The network of --model_file (or, without it, of the default file for --model_size, as every tool finds
    it: core.cli.model_file_from_args), built as the file records it (core.load_model)."""
    from core.checkpoint import load_model
    from core.cli import model_file_from_args, report_loaded

    path = model_file_from_args(args)
    model = load_model(path, model_size=args.model_size)
    report_loaded(model.model_size, path)
    return model, path


@cli_main(extra_errors=(ImportError,))
def main(argv=None):
    args = _parse_args(argv)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UsageError("the ONNX export needs the onnx package: pip install -e '.[onnx]'") from None
    model, weights = _load_model(args)
    started = time.perf_counter()
    export(model, args.out, args.pyr_level, args.nr_lvl_skipped, args.example_hw, args.opset, args.model_size)
    scatters = scatter_reductions(args.out)
    multiple = size_multiple(args.pyr_level)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2 ** 20:.1f} MiB, {time.perf_counter() - started:.1f} s): "
          f"UPR-Net {args.model_size} from {weights}, pyramid L={args.pyr_level} skipping {args.nr_lvl_skipped}, "
          f"opset {args.opset}, {len(scatters)} scatter-add nodes; inputs img0, img1 N x 3 x H x W (H, W multiples "
          f"of {multiple}), t N; outputs interp, bi_flow")
    if not scatters or any(reduction != "add" for _, reduction in scatters):
        raise RuntimeError(f"the exported graph's scatters are not all reduction 'add': {scatters}")
    if args.check:
        generator = torch.Generator().manual_seed(1)
        h, w = args.example_hw
        img0, img1 = torch.rand(2, 3, h, w, generator=generator), torch.rand(2, 3, h, w, generator=generator)
        t = torch.tensor([0.5, 0.25])
        with torch.no_grad():
            reference = ExportedUPRNet(model, args.pyr_level, args.nr_lvl_skipped)(img0, img1, t)
        ours = run_ort(ort_session(args.out), img0, img1, t)
        print(f"ONNX Runtime vs PyTorch on 2 random {w}x{h} pairs: interp max |diff| "
              f"{(ours[0] - reference[0]).abs().max().item():.2e}, bi_flow "
              f"{(ours[1] - reference[1]).abs().max().item():.2e} px")


if __name__ == "__main__":
    raise SystemExit(main())
