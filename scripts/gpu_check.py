"""One command for the first machine with a GPU: build, check and time what only a GPU can show.

    python scripts/gpu_check.py --out gpu_check/          # full run, about 5-8 minutes on one H200
    python scripts/gpu_check.py --quick --out /tmp/gc     # CPU smoke run (the test suite runs this)

Steps, each one row (or several) of the table; a step that fails records its error and the run goes on:

1. **build**: load or build the CUDA extension (``kernels._C`` if installed, else the JIT build into the
   cache), with the time it took and where the module came from.
2. **kernels**: ``upfirdn2d`` and ``fused_leaky_relu`` on the golden shapes (those of
   ``../shared/golden/modules.pt``) in fp32, bf16 and fp16: the CUDA kernel against the reference
   (computed in float64 on the same device), max absolute error; then ms per call of each at the
   sizes the generator runs them at.
3. **generator**: official-size random weights (``toonify``), ``generate`` at 256x256 and 512x512 crops
   (outputs 1024 and 2048) in each precision, with the fused kernels and with the reference ops
   (``FACESTYLE_KERNELS=ref``); then, in bf16 with the fused kernels: channels-last, ``torch.compile``
   and a CUDA graph. Each row: ms per frame, frames/s, max error against fp32 with the reference ops.
4. **image ops and encoders**: the kornia crop, aligned face and paste on the device against the host
   route (OpenCV, Pillow) on a 1080p frame of noise (max difference in levels, ms each way), and
   whether the NVENC encoders open.
5. **bench**: ``facestyle bench --json`` on a synthetic 1920x1080 clip (the whole pipeline) on the device.

It prints one table and writes ``gpu_check.json`` (every row, the machine, versions) and
``gpu_check.txt`` (the table) into ``--out``. ``--budget`` seconds (default 420) bounds the timed part:
rows after it are marked skipped. ``--quick`` runs every step on the CPU at toy sizes (tiny preset,
64x64 crop, fp32 and bf16, a 320x180 bench clip) in under a minute, so the script is not broken when
a GPU arrives; CUDA-only rows are marked skipped there.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the facestyle command: no spinning OpenMP workers

import torch  # noqa: E402

from kernels import _build, fused_leaky_relu, upfirdn2d  # noqa: E402

# (name, input shape, kernel shape, up, down, pad): the golden upfirdn2d cases; then the bias_act ones
GOLDEN_UPFIRDN = [
    ("upfirdn2d_up2_pad2_1", (2, 3, 7, 9), (4, 4), 2, 1, (2, 1)),
    ("upfirdn2d_blur_pad1_1", (2, 3, 7, 9), (4, 4), 1, 1, (1, 1)),
    ("upfirdn2d_down2_pad1_1", (2, 3, 7, 9), (4, 4), 1, 2, (1, 1)),
    ("upfirdn2d_asym_up2", (2, 3, 7, 9), (3, 4), 2, 1, (1, 2)),
    ("upfirdn2d_asym_crop", (2, 3, 7, 9), (3, 4), 1, 2, (-1, 2)),
]
GOLDEN_LRELU = [("fused_leaky_relu_4d", (2, 5, 4, 6)), ("fused_leaky_relu_2d", (3, 7))]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Row:
    step: str
    name: str
    precision: str = ""
    ms: float | None = None
    max_err: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


class Run:
    """The rows, the deadline and the device of one check."""

    def __init__(self, device: torch.device, quick: bool, budget: float) -> None:
        self.device, self.quick, self.rows = device, quick, []
        self.deadline = time.monotonic() + budget
        self.cuda = device.type == "cuda"

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.step:9s} {row.name:34s} {row.precision:5s} "
              f"{'' if row.ms is None else f'{row.ms:10.3f} ms'} "
              f"{'' if row.max_err is None else f'err {row.max_err:.2e}'} {row.note}", flush=True)
        return row

    def guarded(self, step: str, name: str, precision: str, fn: Callable[[], Row]) -> Row:
        """``fn()``'s row, or a row saying why it did not run (out of time, or its error)."""
        if time.monotonic() > self.deadline:
            return self.add(Row(step, name, precision, note="skipped: time budget spent"))
        try:
            return self.add(fn())
        except Exception as exc:  # a GPU check records every failure and goes on
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            return self.add(Row(step, name, precision, note=f"FAILED: {type(exc).__name__}: {first}"))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, min_s: float = 0.3, max_reps: int = 50) -> float:
    """Median milliseconds per call of ``fn`` after two warm-up calls."""
    for _ in range(2):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_s and len(times) < max_reps):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


@contextlib.contextmanager
def kernels_mode(ref: bool) -> Iterator[None]:
    """``FACESTYLE_KERNELS=ref`` for the block when ``ref`` (read by the ops at call time)."""
    saved = os.environ.get(_build.ENV_FORCE)
    os.environ[_build.ENV_FORCE] = "ref" if ref else ""
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(_build.ENV_FORCE, None)
        else:
            os.environ[_build.ENV_FORCE] = saved


# -- 1. build --------------------------------------------------------------------------------------

def step_build(run: Run) -> None:
    if not run.cuda:
        run.add(Row("build", "CUDA extension", note=f"skipped: {_build.status()}"))
        return

    def build() -> Row:
        t = time.perf_counter()
        _build.load_extension()
        return Row("build", "CUDA extension", ms=(time.perf_counter() - t) * 1e3, note=_build.status())

    run.guarded("build", "CUDA extension", "", build)


# -- 2. kernels ------------------------------------------------------------------------------------

def _kernel_cases(run: Run) -> list[tuple[str, Callable[[str, torch.Tensor], torch.Tensor], torch.Tensor]]:
    """(name, op(impl, x), x) for the golden shapes and the generator's own sizes."""
    gen = torch.Generator().manual_seed(0)
    cases = []
    for name, shape, kshape, up, down, pad in GOLDEN_UPFIRDN:
        k = torch.rand(kshape, generator=gen).to(run.device, torch.float64)
        cases.append((name, lambda impl, x, k=k, up=up, down=down, pad=pad: upfirdn2d(
            x, k.to(x.dtype), up=up, down=down, pad=pad, impl=impl), torch.rand(shape, generator=gen) * 2 - 1))
    for name, shape in GOLDEN_LRELU:
        bias = torch.rand(shape[1], generator=gen).to(run.device, torch.float64)
        cases.append((name, lambda impl, x, b=bias: fused_leaky_relu(x, b.to(x.dtype), impl=impl),
                      torch.rand(shape, generator=gen) * 2 - 1))
    blur = (torch.tensor([1.0, 3.0, 3.0, 1.0]).outer(torch.tensor([1.0, 3.0, 3.0, 1.0])) / 16).to(run.device)
    side, ch = (32, 8) if run.quick else (256, 256)   # a 512 crop runs these at 256^2 x 256 channels and up
    cases.append((f"upfirdn2d blur [4,{ch},{side},{side}]",
                  lambda impl, x: upfirdn2d(x, blur.to(x.dtype), pad=(1, 1), gain=4.0, impl=impl),
                  torch.rand(4, ch, side, side, generator=gen)))
    cases.append((f"upfirdn2d up2 [4,3,{4 * side},{4 * side}]",
                  lambda impl, x: upfirdn2d(x, blur.to(x.dtype), up=2, pad=(2, 1), gain=4.0, impl=impl),
                  torch.rand(4, 3, 4 * side, 4 * side, generator=gen)))
    bias = torch.rand(ch, generator=gen).to(run.device)
    cases.append((f"fused_leaky_relu [4,{ch},{side},{side}]",
                  lambda impl, x: fused_leaky_relu(x, bias.to(x.dtype), impl=impl),
                  torch.rand(4, ch, side, side, generator=gen)))
    return cases


def step_kernels(run: Run) -> None:
    impl = "cuda" if run.cuda else "ref"   # on a CPU: the reference in each dtype against float64
    for name, op, x in _kernel_cases(run):
        x = x.to(run.device)
        want = op("ref", x.double())
        for precision, dtype in DTYPES.items():
            if dtype == torch.float16 and not run.cuda:
                continue

            def check(op=op, x=x, dtype=dtype, want=want, precision=precision, name=name) -> Row:
                xd = x.to(dtype)
                err = (op(impl, xd).double() - want).abs().max().item()
                ms = time_ms(lambda: op(impl, xd), run.device, min_s=0.05 if run.quick else 0.2)
                ref_ms = time_ms(lambda: op("ref", xd), run.device, 0.05 if run.quick else 0.2) if run.cuda else ms
                return Row("kernel", name, precision, ms=ms, max_err=err,
                           note=f"{impl}; ref {ref_ms:.3f} ms" if run.cuda else "ref (no CUDA)",
                           extra={"ref_ms": ref_ms, "impl": impl})

            run.guarded("kernel", name, precision, check)


# -- 3. generator ----------------------------------------------------------------------------------

def _model(run: Run, precision: str):
    from pipeline import build_model, make_random_checkpoint
    from pipeline.runtime.device import resolve_precision

    prec = resolve_precision(precision, run.device)
    ckpt = make_random_checkpoint("tiny" if run.quick else "toonify", 0)
    return build_model(ckpt, device=run.device, dtype=prec.params), prec


def step_generator(run: Run) -> None:
    crops = [(64, 2)] if run.quick else [(256, 4), (512, 1)]   # (crop side, batch)
    precisions = ["fp32", "bf16"] if not run.cuda else list(DTYPES)
    gen = torch.Generator().manual_seed(1)
    inputs = {side: torch.rand(batch, 3, side, side, generator=gen) * 2 - 1 for side, batch in crops}
    x2 = torch.rand(1, 3, 256, 256, generator=gen) * 2 - 1
    baseline: dict[int, torch.Tensor] = {}
    for precision in ["fp32"] + [p for p in precisions if p != "fp32"]:
        try:
            model, prec = _model(run, precision)
        except Exception as exc:
            run.add(Row("generator", "build model", precision, note=f"FAILED: {exc}"))
            continue
        for side, batch in crops:
            with torch.no_grad(), prec.context(run.device):
                latents = model.invert(inputs[side].to(run.device), w_plus=model.codes(x2.to(run.device)))
            variants = [("reference ops", True), ("fused kernels", False)]
            if precision == "bf16":
                variants += [("fused, channels-last", False), ("fused, torch.compile", False),
                             ("fused, CUDA graph", False)]
            for variant, ref in variants:
                run.guarded("generator", f"{side}x{side} x{batch} {variant}", precision,
                            lambda v=variant, r=ref, s=side, b=batch, m=model, p=prec, la=latents, pr=precision:
                            _time_generator(run, m, p, la, v, r, s, b, pr, baseline))
        del model
        if run.cuda:
            torch.cuda.empty_cache()


def _time_generator(run: Run, model, prec, latents, variant: str, ref: bool, side: int, batch: int,
                    precision: str, baseline: dict[int, torch.Tensor]) -> Row:
    name = f"{side}x{side} x{batch} {variant}"
    if not run.cuda and ("CUDA" in variant or "compile" in variant):
        return Row("generator", name, precision, note="skipped: needs CUDA")
    fn = lambda: model.generate(latents)  # noqa: E731
    if "channels-last" in variant:
        _memory_format(model, torch.channels_last)
    if "compile" in variant:
        fn = torch.compile(fn)
    with kernels_mode(ref), torch.no_grad(), prec.context(run.device):
        if "CUDA graph" in variant:
            fn = _graphed(fn, run.device)
        out = fn().float()
        ms = time_ms(fn, run.device, min_s=0.1 if run.quick else 1.0) / batch
    if "channels-last" in variant:
        _memory_format(model, torch.contiguous_format)
    if precision == "fp32" and ref:
        baseline[side] = out.cpu()
    err = (out.cpu() - baseline[side]).abs().max().item() if side in baseline else None
    return Row("generator", name, precision, ms=ms, max_err=err, note=f"{1e3 / ms:.1f} frames/s",
               extra={"side": side, "batch": batch, "variant": variant, "fps": 1e3 / ms})


def _memory_format(model: torch.nn.Module, fmt: torch.memory_format) -> None:
    """Every 4-d weight of ``model`` in ``fmt`` (``Module.to(memory_format=)`` refuses other ranks)."""
    for param in model.parameters():
        if param.dim() == 4:
            param.data = param.data.contiguous(memory_format=fmt)


def _graphed(fn: Callable[[], torch.Tensor], device: torch.device) -> Callable[[], torch.Tensor]:
    """``fn`` captured once into a CUDA graph; calls replay it and return its (static) output."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = fn()

    def replay() -> torch.Tensor:
        graph.replay()
        return static

    return replay


# -- 3b. device-side image ops and hardware encoders ------------------------------------------------

def step_image_ops(run: Run) -> None:
    """kornia crops, aligned face and paste on the device against the host route (OpenCV, Pillow)."""
    import numpy as np

    from pipeline.face import warp
    from pipeline.face.align import align_quad, apply_crop, crop_params, ffhq_quad
    from pipeline.stages.paste import paste_face
    from pipeline.tools.synthetic import face_landmarks

    h, w = (270, 480) if run.quick else (1080, 1920)
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (h, w, 3), np.uint8)
    lm = face_landmarks((w / 2, h / 2), 64 if not run.quick else 30, angle_deg=7)
    crop, quad = crop_params(lm, h, w), ffhq_quad(lm)
    stylized = rng.integers(0, 256, (4 * crop.crop_h, 4 * crop.crop_w, 3), np.uint8)
    ft = torch.from_numpy(frame).permute(2, 0, 1).to(run.device)
    st = torch.from_numpy(stylized).permute(2, 0, 1).to(run.device)

    def diff(a, b) -> float:
        return float(np.abs(a.astype(int) - b.astype(int)).max())

    def pasted_host():
        out = frame.copy()
        paste_face(out, stylized, crop, 0.08)
        return out

    def pasted_device():
        out = torch.from_numpy(frame.copy()).to(run.device)
        warp.paste_faces(out, [st], [crop], 0.08)
        return out

    cases = [("kornia crop", lambda: warp.cut_crops(ft, [crop])[0],
              lambda r: diff(warp.to_hwc_uint8(r), apply_crop(frame, crop)), lambda: apply_crop(frame, crop)),
             ("kornia aligned face", lambda: warp.align_faces(ft, [quad])[0],
              lambda r: diff(warp.to_hwc_uint8(r), align_quad(frame, quad)), lambda: align_quad(frame, quad)),
             ("kornia paste", pasted_device, lambda r: diff(r.cpu().numpy(), pasted_host()), pasted_host)]
    for name, fn, err, host in cases:
        def check(fn=fn, err=err, host=host, name=name) -> Row:
            host_ms = time_ms(host, torch.device("cpu"), min_s=0.05)
            return Row("imageops", f"{name} {w}x{h}", "fp32", ms=time_ms(fn, run.device, min_s=0.05),
                       max_err=err(fn()), note=f"host route {host_ms:.2f} ms (levels)", extra={"host_ms": host_ms})

        run.guarded("imageops", f"{name} {w}x{h}", "fp32", check)
    for codec in ("h264_nvenc", "hevc_nvenc", "av1_nvenc"):
        def encoder(codec=codec) -> Row:
            from pipeline.errors import UsageError
            from pipeline.stages.video_out import VideoOutConfig

            try:
                VideoOutConfig(codec=codec)
            except UsageError as err:
                return Row("encoder", codec, note=f"not here: {err}"[:150])
            return Row("encoder", codec, note="opens on this machine")

        run.guarded("encoder", codec, "", encoder)


# -- 4. bench --------------------------------------------------------------------------------------

def step_bench(run: Run, out: Path) -> None:
    args = ["--frames", "4", "--size", "320x180", "--random-preset", "tiny"] if run.quick else \
        ["--frames", "60", "--size", "1920x1080", "--precision", "bf16"]
    cmd = [sys.executable, str(REPO / "cli.py"), "bench", "--json", "--device", str(run.device), *args]

    def bench() -> Row:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120 if run.quick else 300, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1])
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        (out / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
        fps = report["frames"]["written"] / report["wall_s"]
        return Row("bench", f"facestyle bench {'x'.join(map(str, report['frame_size']))}", "",
                   ms=1e3 / fps, note=f"{fps:.1f} frames/s, {report['frames']['written']} frames",
                   extra={"command": " ".join(cmd[1:])})

    run.guarded("bench", "facestyle bench", "", bench)


# -- the table -------------------------------------------------------------------------------------

def table(rows: list[Row]) -> str:
    head = f"{'step':9s}  {'what':40s}  {'prec':5s}  {'ms':>11s}  {'max err':>9s}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        ms = "" if r.ms is None else f"{r.ms:11.3f}"
        err = "" if r.max_err is None else f"{r.max_err:9.2e}"
        lines.append(f"{r.step:9s}  {r.name:40s}  {r.precision:5s}  {ms:>11s}  {err:>9s}  {r.note}")
    return "\n".join(lines)


def machine(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": str(device), "host": platform.node(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("gpu_check"), help="folder for gpu_check.json and .txt")
    ap.add_argument("--quick", action="store_true", help="CPU smoke run at toy sizes (under a minute)")
    ap.add_argument("--device", default=None, help="default: cuda when available (cpu with --quick)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for the timed steps (default 420)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["build", "kernels", "generator", "imageops", "bench"],
                    help="steps to leave out")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.quick or not torch.cuda.is_available() else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device ({_build.status()})", file=sys.stderr)
        return 2
    if device.type == "cpu" and not args.quick:
        print("gpu_check: no CUDA device; run with --quick for the CPU smoke run", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(device, args.quick, args.budget)
    start = time.monotonic()
    print(f"gpu_check on {device} ({'quick' if args.quick else 'full'}), torch {torch.__version__}", flush=True)
    for name, step in (("build", step_build), ("kernels", step_kernels), ("generator", step_generator),
                       ("imageops", step_image_ops), ("bench", lambda r: step_bench(r, args.out))):
        if name not in args.skip:
            step(run)
    text = table(run.rows)
    failed = [r for r in run.rows if r.note.startswith("FAILED")]
    summary = {"machine": machine(device), "quick": args.quick, "seconds": round(time.monotonic() - start, 1),
               "failed": len(failed), "rows": [asdict(r) for r in run.rows]}
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "gpu_check.txt").write_text(text + "\n")
    print(f"\n{text}\n\ngpu_check: {len(run.rows)} rows, {len(failed)} failed, {summary['seconds']} s; "
          f"{args.out / 'gpu_check.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
