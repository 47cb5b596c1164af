"""`facesim bench serve --in-process`: the predictor's request path in this process, on one core, side by
side with face_recognition, interleaved request by request; with what each stage costs.

facesim: a V1 body parsed, decoded, every face detected (YuNet), aligned, embedded (each face and its
mirror as one batch), searched in the gallery and the answer encoded as JSON, as the server does it
minus HTTP. face_recognition: load (decode), detect (HOG) and encode every face of the same photo.
Also the embedding pass's FLOPs (counted from model.onnx) against this core's measured float32 peak.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesim.benchmarks.peer import import_face_recognition
from facesim.contract.api import READY_PATH
from facesim.inference.protocol import RequestLimits


@dataclass(frozen=True)
class PhotoTiming:
    image: str
    pixels: str
    faces: int
    facesim_p50_ms: float
    face_recognition_p50_ms: float | None
    stages_ms: dict[str, float] = field(default_factory=dict)  # p50 of each stage alone
    # p50 CPU time (this process, all threads) per request: what a busy machine inflates least
    facesim_cpu_ms: float = 0.0
    face_recognition_cpu_ms: float | None = None

    @property
    def ratio(self) -> float | None:
        return self.face_recognition_p50_ms / self.facesim_p50_ms if self.face_recognition_p50_ms else None

    @property
    def cpu_ratio(self) -> float | None:
        return self.face_recognition_cpu_ms / self.facesim_cpu_ms if self.face_recognition_cpu_ms else None


def pin_to_one_core() -> int:
    """This process (and the threads it starts from now on) on one CPU, OpenCV on one thread."""
    import cv2

    cpu = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    return cpu


def p50_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def load_predictor(model_dir: Path, gallery: Path, yunet_path: str | None, runtime: str):
    from facesim.inference.predictor import FaceNetPredictor, ServingConfig
    from facesim.inference.server import quiet_logs

    quiet_logs(False)
    predictor = FaceNetPredictor(
        ServingConfig(model_dir=model_dir, gallery_dir=gallery, yunet_path=yunet_path, runtime=runtime, threads=1)
    )
    predictor.load()
    return predictor


def request_path(predictor, data: bytes) -> Callable[[], bytes]:
    """One V1 request through the predictor's handlers, ending in the JSON bytes the server would send."""
    import orjson

    body = {"instances": [{"image": {"b64": base64.b64encode(data).decode()}, "top_k": 3}]}
    loop = asyncio.new_event_loop()

    async def answer() -> dict:
        batch = await predictor.preprocess(body)
        return await predictor.postprocess(await predictor.predict(batch))

    return lambda: orjson.dumps(loop.run_until_complete(answer()), option=orjson.OPT_SERIALIZE_NUMPY)


def stage_costs(predictor, data: bytes, repeats: int) -> tuple[int, dict[str, float]]:
    """Each stage alone: decode, YuNet, alignment of every face, the embedding pass, search, JSON encoding
    (and YuNet on OpenCV's cv2.FaceDetectorYN, which ONNX Runtime replaced)."""
    import orjson

    from facesim.faces.detect import YuNetDetector
    from facesim.faces.image import decode_reduced

    limits = RequestLimits()
    rgb, _ = decode_reduced(data, limits.image_limits, predictor.config.decode_max_side)
    detector = predictor.preprocessor.detector
    faces = predictor.preprocessor.all_faces(rgb)
    crops = np.stack([face.crop for face in faces]) if faces else None
    answer = request_path(predictor, data)
    stages = {
        "decode": p50_ms(lambda: decode_reduced(data, limits.image_limits, predictor.config.decode_max_side), repeats),
        "detect": p50_ms(lambda: detector.detect(rgb), repeats),
        "align": p50_ms(lambda: [predictor.preprocessor._align(rgb, face.face.landmarks) for face in faces], repeats),
    }
    if isinstance(detector, YuNetDetector):  # the same YuNet on OpenCV's runtime, for comparison
        opencv = YuNetDetector(detector.model_path, detector.min_score, detector.max_side, backend="opencv")
        stages["detect_opencv"] = p50_ms(lambda: opencv.detect(rgb), repeats)
    if crops is not None:
        embeddings = predictor.embedder.embed(crops)
        stages["embed"] = p50_ms(lambda: predictor.embedder.embed(crops), repeats)
        stages["search"] = p50_ms(lambda: predictor.index.search(embeddings, 3, True), repeats)
    payload = orjson.loads(answer())
    stages["encode"] = p50_ms(lambda: orjson.dumps(payload), repeats)
    return len(faces), stages


def face_recognition_path(path: Path) -> Callable[[], object]:
    face_recognition = import_face_recognition()

    def run() -> object:
        rgb = face_recognition.load_image_file(str(path))
        return face_recognition.face_encodings(rgb, face_recognition.face_locations(rgb))

    return run


def measure_photos(predictor, images: list[Path], repeats: int, with_face_recognition: bool) -> list[PhotoTiming]:
    """Interleaved: facesim then face_recognition, request by request, so both see the same machine."""
    from PIL import Image

    results = []
    for path in images:
        data = path.read_bytes()
        ours = request_path(predictor, data)
        theirs = face_recognition_path(path) if with_face_recognition else None
        ours()
        if theirs:
            theirs()
        our_times: list[float] = []
        their_times: list[float] = []
        our_cpu: list[float] = []
        their_cpu: list[float] = []
        for _ in range(repeats):
            for run, times, cpu in ((ours, our_times, our_cpu), (theirs, their_times, their_cpu)):
                if run is None:
                    continue
                start, start_cpu = time.perf_counter(), time.process_time()
                run()
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
        faces, stages = stage_costs(predictor, data, repeats)
        with Image.open(path) as opened:
            pixels = f"{opened.width}x{opened.height}"
        results.append(
            PhotoTiming(
                path.name,
                pixels,
                faces,
                float(np.median(our_times) * 1000),
                float(np.median(their_times) * 1000) if their_times else None,
                stages,
                float(np.median(our_cpu) * 1000),
                float(np.median(their_cpu) * 1000) if their_cpu else None,
            )
        )
    return results


def onnx_flops(model_path: Path, batch: int = 1) -> float:
    """Floating-point operations (2 per multiply-add) of one call on `batch` crops: every Conv, MatMul and
    Gemm of model.onnx, with shapes from ONNX's shape inference."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(model_path))
    graph_input = model.graph.input[0]
    graph_input.type.tensor_type.shape.dim[0].dim_value = batch
    inferred = shape_inference.infer_shapes(model)
    shapes = {
        value.name: [d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    for node in model.graph.node:  # an int8 model's weights reach its Conv and MatMul through DequantizeLinear
        if node.op_type == "DequantizeLinear" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    flops = 0.0
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            out = shapes[node.output[0]]  # N, C_out, H, W
            kernel = weights[node.input[1]]  # C_out, C_in / groups, kH, kW
            flops += 2.0 * np.prod(out) * np.prod(kernel[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            out = shapes[node.output[0]]
            inner = (weights.get(node.input[1]) or shapes[node.input[1]])[0]
            flops += 2.0 * np.prod(out) * inner
    return flops


def measured_peak_gflops(seconds: float = 1.0, size: int = 1024) -> float:
    """The float32 FLOP rate of ONNX Runtime's own matrix product (MLAS, AVX2 + FMA here) on one thread:
    the practical peak of this core, measured by the same runtime that runs the network (its fastest call)."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    matrix = np.random.default_rng(0).random((size, size), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "peak",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
        [numpy_helper.from_array(matrix, "b")],
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, {"a": matrix})
    fastest, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:  # the fastest call: the others lost time to other processes
        call = time.perf_counter()
        session.run(None, {"a": matrix})
        fastest = min(fastest, time.perf_counter() - call)
    return 2 * size**3 / fastest / 1e9


def startup_seconds(model_dir: Path, gallery: Path, yunet_path: str | None, runtime: str, port: int) -> float:
    """Seconds from starting `facesim serve` (a new process) until it answers ready (polled every 20 ms)."""
    import subprocess
    import sys

    import requests

    command = [sys.executable, "-m", "facesim", "serve", "--model", str(model_dir), "--gallery", str(gallery)]
    command += ["--port", str(port), "--runtime", runtime] + (["--yunet", yunet_path] if yunet_path else [])
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < 120:
            if process.poll() is not None:
                raise RuntimeError(f"`{' '.join(command)}` exited with code {process.returncode}")
            try:
                if requests.get(f"http://127.0.0.1:{port}{READY_PATH}", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except requests.RequestException:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"`{' '.join(command)}` was not ready after 120 s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def report(
    timings: list[PhotoTiming],
    runtime: str,
    cpu: int,
    flops: float,
    passes: int,
    pass_ms: tuple[float, float],
    peak: float,
    int8: bool = False,
) -> list[str]:
    """`pass_ms`: the embedding call's p50 and fastest; its share of the peak compares fastest with fastest
    (an int8 model's multiply-adds are not bound by the float32 peak: said so instead)."""
    lines = [
        f"in-process, one core (CPU {cpu}), runtime {runtime}; p50 per request, interleaved with face_recognition",
        "",
        "| image | pixels | faces | facesim ms | face_recognition ms | ratio | decode | detect | align | embed | search "
        "| encode | facesim CPU ms | face_recognition CPU ms | CPU ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        stage = [f"{t.stages_ms[name]:.2f}" if name in t.stages_ms else "-" for name in STAGES]
        theirs = f"{t.face_recognition_p50_ms:.1f}" if t.face_recognition_p50_ms else "-"
        ratio = f"{t.ratio:.1f}x" if t.ratio else "-"
        their_cpu = f"{t.face_recognition_cpu_ms:.1f}" if t.face_recognition_cpu_ms else "-"
        cpu_ratio = f"{t.cpu_ratio:.1f}x" if t.cpu_ratio else "-"
        lines.append(
            f"| {t.image} | {t.pixels} | {t.faces} | {t.facesim_p50_ms:.1f} | {theirs} | {ratio} | {' | '.join(stage)} "
            f"| {t.facesim_cpu_ms:.1f} | {their_cpu} | {cpu_ratio} |"
        )
    rate = flops / (pass_ms[1] / 1000) / 1e9
    if any("detect_opencv" in t.stages_ms for t in timings):
        yunet = [f"{t.image} {t.stages_ms['detect']:.2f} / {t.stages_ms['detect_opencv']:.2f}" for t in timings]
        lines += [
            "",
            f"detect, p50 ms alone, YuNet on ONNX Runtime / on OpenCV (cv2.FaceDetectorYN): {', '.join(yunet)}",
        ]
    lines += [
        "",
        f"embedding one face ({passes} network pass{'es' if passes > 1 else ''}: the crop"
        f"{' and its mirror as one batch' if passes > 1 else ''}): {flops / 1e9:.3f} GFLOP (Conv + MatMul, counted "
        f"from model.onnx; {flops / 2e9 / passes:.3f} G multiply-adds per pass), {pass_ms[0]:.2f} ms p50, "
        f"fastest {pass_ms[1]:.2f} ms = {rate:.1f} GFLOP/s; this core's measured float32 peak (ONNX Runtime MatMul "
        f"1024^2, one thread, fastest call) {peak:.1f} GFLOP/s: "
        + (
            f"{rate / peak:.2f}x it (an int8 model: its convolutions multiply 8-bit integers)"
            if int8
            else f"{100 * rate / peak:.0f}% of it"
        ),
    ]
    return lines


STAGES = ("decode", "detect", "align", "embed", "search", "encode")
