"""What lower precision would cost.

What lower precision would cost: the served fp32 IR vs bf16 execution vs NNCF int8, on the
benchmark's artifact and images (run ``make bench`` first; it builds both under runs/bench/).
``make bench`` itself reports int8 (latency, agreement, accuracy drop); this adds bf16 and an
int8 variant with the head left in fp32.

Needs ``nncf``, which the project venv does not carry (it is not a serving dependency). Run it
from a scratch venv that holds nncf, openvino and Pillow:

    python3.11 -m venv /tmp/int8 && /tmp/int8/bin/pip install nncf==3.4.0 openvino==2026.4.1 \\
        numpy==1.26.4 pillow
    PYTHONPATH=training/container /tmp/int8/bin/python benchmarks/bench_precision.py

Model only (no decode/handlers): median latency at batch 1, top-1 agreement and the largest
softmax-probability difference against the fp32 IR (itself within ~1e-5 of PyTorch fp32).
The last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from dog_breeds.serving import preprocess

REPO = Path(__file__).resolve().parents[1]

WORK = REPO / "runs" / "bench"
CALIBRATION_IMAGES = 300


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def load_inputs(paths: list[Path], size: int) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(preprocess.to_model_input(image.convert("RGB"), size)[np.newaxis])
    return out


def calibration_inputs(size: int, classes: int) -> list[np.ndarray]:
    """Generated photos unlike the evaluation images (another seed), as a calibration set."""
    import bench_serving

    photos = bench_serving.render_photos(CALIBRATION_IMAGES, classes, seed=77)
    return [preprocess.to_model_input(im, size)[np.newaxis] for _, im in photos]


def run(compiled, inputs: list[np.ndarray]) -> tuple[np.ndarray, float]:
    request = compiled.create_infer_request()
    for x in inputs[:5]:
        request.infer({0: x})
    logits, times = [], []
    for x in inputs:
        started = time.perf_counter()
        logits.append(np.array(request.infer({0: x})[0], copy=True))
        times.append(time.perf_counter() - started)
    return np.concatenate(logits), float(np.median(times) * 1000)


def main() -> dict:
    import nncf
    import openvino as ov

    from dog_breeds.serving import runtimes

    model_dir = WORK / "artifact"
    config = json.loads((model_dir / "config.json").read_text())
    size = config["image_size"]
    images = sorted((WORK / f"images-200-c{config['num_classes']}").glob("*.jpg"))
    inputs = load_inputs(images, size)
    core = runtimes.openvino_core()
    fp32_model = core.read_model(model_dir / "openvino" / "model.xml")

    def compile_(model, precision):
        return core.compile_model(
            model,
            "CPU",
            {
                ov.properties.hint.performance_mode: ov.properties.hint.PerformanceMode.LATENCY,
                ov.properties.hint.inference_precision: precision,
                ov.properties.inference_num_threads: len(os.sched_getaffinity(0)),
            },
        )

    calibration = nncf.Dataset(calibration_inputs(size, config["num_classes"]))
    started = time.perf_counter()
    int8_model = nncf.quantize(fp32_model, calibration, subset_size=CALIBRATION_IMAGES)
    quantize_s = time.perf_counter() - started
    # Variant: the convolutions in int8, the head's fully connected layers left in fp32.
    int8_head_fp32 = nncf.quantize(
        fp32_model,
        calibration,
        subset_size=CALIBRATION_IMAGES,
        ignored_scope=nncf.IgnoredScope(types=["MatMul"]),
    )

    ref_logits, fp32_ms = run(compile_(fp32_model, ov.Type.f32), inputs)
    ref = softmax(ref_logits)
    result = {"images": len(inputs), "fp32_ms": round(fp32_ms, 2)}
    variants = {
        "bf16": compile_(fp32_model, ov.Type.bf16),
        "int8": compile_(int8_model, ov.Type.f32),
        "int8_head_fp32": compile_(int8_head_fp32, ov.Type.f32),
    }
    for name, compiled in variants.items():
        logits, ms = run(compiled, inputs)
        probs = softmax(logits)
        result[f"{name}_ms"] = round(ms, 2)
        result[f"{name}_speedup"] = round(fp32_ms / ms, 2)
        result[f"{name}_top1_agreement"] = float((probs.argmax(1) == ref.argmax(1)).mean())
        result[f"{name}_max_prob_diff"] = float(f"{np.abs(probs - ref).max():.3g}")
    result["int8_quantize_s"] = round(quantize_s, 1)
    result["int8_calibration_images"] = CALIBRATION_IMAGES
    result["cpu_bf16_native"] = "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
