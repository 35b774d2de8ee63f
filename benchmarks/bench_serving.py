"""CPU serving benchmark: the plain eager PyTorch path vs our served path, same model, same images.

    make bench                      # = .venv/bin/python benchmarks/bench_serving.py
    make bench ARGS="--isa avx2"    # oneDNN capped to AVX2 in the serving children (AVX: avx)

(a) eager: what the original project served: PIL decode, torchvision Resize(256) / CenterCrop(224) /
    ToTensor / Normalize, the model in eval mode, fp32, batch 1, softmax.
(b) served: training/endpoint_inference.py's model_fn once, then per request input_fn (raw JPEG
    bytes) → predict_fn → output_fn (JSON), in a fresh child process that does nothing else, so
    its peak RSS (VmHWM) and model load time are the serving process's own.
The two alternate image by image (eager in this process, then the same image in the child), so
a busy machine slows both alike; each side times only its own work.

(c) int8: the artifact is quantized at build time by training's own export step
    (quantize.export_int8_form: NNCF, calibrated on the fit's training images, guarded on
    held-out ones), so the served path serves int8 as a trained model's would. Model only, in a
    child: the fp32 IR against the int8 IR: latency, top-1 agreement, accuracy drop on the
    labelled benchmark images.
(d) concurrency: images per second through the served path with 1 and 2 requests in flight, as
    the container runs them: TorchServe under the toolkit's defaults starts one worker process
    per vCPU (2 on an ml.t2.medium), each a child here with runtimes.threads_per_worker() (then 1)
    OpenVINO threads; for int8 (what ships) and fp32 (DOG_BREEDS_FORCE_FP32=1), and for
    comparison with 2 threads a worker. Each worker reports its CPU time, so the CPU time per
    image, and from it what an ml.t2.medium sustains at its baseline, is measured, not derived
    from latency.

The side-by-side (a)/(b) is one worker with every core (SAGEMAKER_MODEL_SERVER_WORKERS=1), fp32.

--isa caps oneDNN (ONEDNN_MAX_CPU_ISA) in the children's environment only: (b), (c) and (d) run
capped, the eager side (a) runs in this process and is not. ``conv_kernels`` lists the primitive
types of the convolutions OpenVINO actually compiled, so a cap that did not take shows.

The artifact: dog_breeds.model's ResNet50 + head at 224 × 224, saved with dog_breeds.artifact
and exported with dog_breeds.training.cpu_export, fitted on generated images
(dog_breeds.data.synthetic's class patterns) in a few
minutes: see ``fit_bench_model``. Fewer classes than dogImages' 133 (the head's size is a rounding
error in the network's cost) so the model separates them and int8's accuracy drop means something.
It is cached under runs/bench/ (pass --rebuild to refit). Images: generated 500×375 / 375×500
JPEGs the fit never saw, labelled (labels.json beside them).

The last stdout line is one JSON object (keys: see ``summary``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import io
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dog_breeds import contract

REPO = Path(__file__).resolve().parents[1]

# Bump when the recipe below changes, so a cached artifact from an older recipe is rebuilt.
RECIPE = {
    "version": 5,
    "classes": 16,
    "image_size": 224,
    "hidden_size": 256,
    "dropout": 0.3,
    "head_train_per_class": 12,
    "heldout_per_class": 4,
    "head_steps": 300,
    "head_lr": 1e-3,
    "seed": 0,
    "int8_max_drop_points": 0.5,  # training's default guard
}
WARMUP = 5
# render_photos seeds: the fit's (and int8 calibration's) images, the fit's held-out check.
TRAIN_SEED, HELDOUT_SEED = 22, 23

ISA_CAPS = {"native": None, "avx2": "AVX2", "avx": "AVX"}
ISA_ENV = "ONEDNN_MAX_CPU_ISA"
WORKERS_ENV = contract.MODEL_SERVER_WORKERS_ENV
FORCE_FP32_ENV = "DOG_BREEDS_FORCE_FP32"  # runtimes.FORCE_FP32_ENV
# An ml.t2.medium: 2 vCPUs, each with a baseline of 20 % once its CPU credits are spent.
T2_MEDIUM_VCPUS, T2_MEDIUM_BASELINE = 2, 0.20
ISA_NOTES = [
    "the cap is set in the serving/int8/concurrency children only; the eager PyTorch side runs in "
    "the parent, uncapped (PyTorch would need ATEN_CPU_CAPABILITY and MKL_ENABLE_INSTRUCTIONS too)",
    "ONEDNN_MAX_CPU_ISA reaches OpenVINO's oneDNN kernels (convolutions: see conv_kernels); "
    "OpenVINO's own kernels obey only OV_CPU_MAX_ISA, which release builds may ignore",
]


def child_env(isa: str, base: dict[str, str] | None = None, **extra: str | None) -> dict[str, str]:
    """A copy of ``base`` (default os.environ) for a child process, with oneDNN capped to ``isa``
    (native: the variable removed) and ``extra`` set (None: removed). Never edits os.environ: the
    benchmark's own process keeps its native ISA."""
    env = dict(os.environ if base is None else base)
    for name, value in {ISA_ENV: ISA_CAPS[isa], **extra}.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def conv_kernels(compiled) -> list[str]:
    """Distinct primitive types of the convolutions in an OpenVINO compiled model's runtime graph
    (e.g. brgconv_avx512_f32, jit_avx2_I8): what the CPU plugin actually chose."""

    def text(value) -> str:
        return value.astype(str) if hasattr(value, "astype") else str(value)

    kinds = set()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and text(info["layerType"]) == "Convolution":
            kinds.add(text(info["primitiveType"]) if "primitiveType" in info else "?")
    return sorted(kinds)


def openvino_isa_report() -> dict:
    """What this process's environment and OpenVINO say about the ISA."""
    import openvino as ov

    from dog_breeds.serving import runtimes

    core = runtimes.openvino_core()
    return {
        ISA_ENV: os.environ.get(ISA_ENV),
        "openvino_capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
        "openvino_version": ov.get_version(),
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# ---------------------------------------------------------------------------- the artifact
def render_photos(count: int, classes: int, seed: int) -> list[tuple[int, object]]:
    """(class, PIL image) pairs: the synthetic set's class patterns as 500×375 / 375×500 photos."""
    from dog_breeds.data import synthetic

    rng = np.random.default_rng(seed)
    photos = []
    for i in range(count):
        label = i % classes
        square = synthetic.render(label, classes, 500, rng)
        box = (0, 62, 500, 437) if i % 4 else (62, 0, 437, 500)
        photos.append((label, square.crop(box).convert("RGB")))
    return photos


def fit_bench_model(recipe: dict):
    """ResNet50 + head with real BatchNorm statistics and a trained head, in a few minutes (4 on a
    busy 2-core machine).

    Training all of ResNet50 on 133 classes from random init takes far longer than a benchmark
    may (train.py: ~5 min per epoch on this busy 2-core machine, still at chance after one).
    So: BatchNorm running statistics are measured on generated 224 px images (a data-dependent
    init, so activations are well scaled), then the two-layer head is trained on the pooled
    features of those images. With few, well-spread classes the head separates unseen generated
    images (its held-out accuracy is recorded in the fit and measured again by the benchmark):
    a model that is right, so int8's accuracy drop is a real figure; it knows nothing of dogs.
    """
    import torch

    from dog_breeds.model import network
    from dog_breeds.serving import preprocess

    classes, size = recipe["classes"], recipe["image_size"]
    torch.manual_seed(recipe["seed"])
    model = network.build_model(classes, recipe["hidden_size"], recipe["dropout"])

    def tensors(photos) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.stack([preprocess.to_model_input(im, size) for _, im in photos])
        return torch.from_numpy(x), torch.tensor([label for label, _ in photos])

    train_x, train_y = tensors(train_photos(recipe))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over all calibration batches
    model.train()
    with torch.no_grad():
        for chunk in train_x.split(16):
            model(chunk)
    model.eval()

    head = model.backbone.fc
    model.backbone.fc = torch.nn.Identity()
    with torch.no_grad():
        features = torch.cat([model(chunk) for chunk in train_x.split(16)])
    model.backbone.fc = head
    # Random deep features differ between images mostly in small, per-feature offsets: the head
    # learns on standardised features, and the standardisation is folded into its first layer.
    mean, std = features.mean(0), features.std(0) + 1e-3
    standardised = (features - mean) / std
    optimizer = torch.optim.AdamW(head.parameters(), lr=recipe["head_lr"])
    head.train()
    for _ in range(recipe["head_steps"]):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(standardised), train_y)
        loss.backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        first = head[0]
        first.weight /= std
        first.bias -= first.weight @ mean
        accuracy = float((head(features).argmax(1) == train_y).float().mean())
    model.eval()
    heldout_x, heldout_y = tensors(
        render_photos(classes * recipe["heldout_per_class"], classes, HELDOUT_SEED)
    )
    with torch.no_grad():
        predicted = torch.cat([model(chunk).argmax(1) for chunk in heldout_x.split(16)])
    return model, {
        "head_train_loss": float(loss.detach()),
        "head_train_accuracy": accuracy,
        "heldout_accuracy": float((predicted == heldout_y).float().mean()),
    }


def train_photos(recipe: dict) -> list[tuple[int, object]]:
    """The images the fit trained on (int8 calibration uses them too)."""
    classes = recipe["classes"]
    return render_photos(classes * recipe["head_train_per_class"], classes, TRAIN_SEED)


def ensure_artifact(work: Path, rebuild: bool) -> Path:
    """The benchmark's artifact (dog_breeds.artifact layout + OpenVINO form), cached in ``work``."""
    model_dir = work / "artifact"
    recipe_file = model_dir / "bench_recipe.json"
    wanted = json.loads(json.dumps(RECIPE))
    cached = json.loads(recipe_file.read_text()) if recipe_file.is_file() else {}
    if not rebuild and cached.get("recipe") == wanted:
        return model_dir

    from dog_breeds.artifact import store
    from dog_breeds.data import synthetic
    from dog_breeds.serving import preprocess
    from dog_breeds.training import cpu_export

    started = time.perf_counter()
    print(f"building the benchmark artifact in {model_dir} (once) ...", file=sys.stderr)
    shutil.rmtree(model_dir, ignore_errors=True)
    model, fit = fit_bench_model(RECIPE)
    classes = [name.split(".", 1)[1] for name in synthetic.folder_names(RECIPE["classes"])]
    store.save_artifact(
        model, model_dir, classes,
        hidden_size=RECIPE["hidden_size"], dropout=RECIPE["dropout"],
        image_size=RECIPE["image_size"],
        mean=preprocess.IMAGENET_MEAN, std=preprocess.IMAGENET_STD,
        model_name="bench-resnet50",
    )  # fmt: skip
    exported = cpu_export.export_cpu_form(model, model_dir)
    int8 = export_int8(model_dir, work / "dataset", classes)
    fit["int8"] = {k: v for k, v in int8.__dict__.items() if v is not None}
    fit["seconds"] = round(time.perf_counter() - started, 1)
    print(f"artifact: {fit}; CPU form: {exported}", file=sys.stderr)
    recipe_file.write_text(json.dumps({"recipe": wanted, "fit": fit}) + "\n")
    return model_dir


def export_int8(model_dir: Path, data_dir: Path, classes: list[str]):
    """training's own int8 export (NNCF, guard, export.json record) on a folder-layout copy of the
    fit's images: train/ = its training images (calibration), valid/ = its held-out ones (the
    guard), test/ the same (load_splits wants one)."""
    from dog_breeds.data import folders, synthetic
    from dog_breeds.training import quantize

    shutil.rmtree(data_dir, ignore_errors=True)
    names = synthetic.folder_names(RECIPE["classes"])
    count = RECIPE["classes"] * RECIPE["heldout_per_class"]
    heldout = render_photos(count, len(names), HELDOUT_SEED)
    for split, photos in (("train", train_photos(RECIPE)), ("valid", heldout), ("test", heldout)):
        for i, (label, image) in enumerate(photos):
            folder = data_dir / split / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i:04d}.jpg", quality=90)
    splits = folders.load_splits(data_dir, RECIPE["image_size"])
    assert [n.split(".", 1)[1] for n in names] == classes == splits.classes
    return quantize.export_int8_form(
        model_dir, splits, max_drop_points=RECIPE["int8_max_drop_points"]
    )


def ensure_images(work: Path, count: int, classes: int) -> list[Path]:
    """``count`` JPEGs of realistic sizes (500×375 and 375×500), unseen by the head's training,
    with their classes in labels.json (file name -> class index)."""
    out = work / f"images-{count}-c{classes}"
    paths = sorted(out.glob("*.jpg"))
    if len(paths) == count and (out / "labels.json").is_file():
        return paths
    out.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i, (label, image) in enumerate(render_photos(count, classes, seed=1234)):
        image.save(out / f"{i:04d}.jpg", quality=90)
        labels[f"{i:04d}.jpg"] = label
    (out / "labels.json").write_text(json.dumps(labels) + "\n")
    return sorted(out.glob("*.jpg"))


def image_labels(paths: list[Path]) -> list[int]:
    labels = json.loads((paths[0].parent / "labels.json").read_text())
    return [labels[p.name] for p in paths]


# ---------------------------------------------------------------------------- (a) eager
class EagerPath:
    """The original project's serving path, in this (parent) process."""

    def __init__(self, model_dir: Path):
        import torch

        from dog_breeds.artifact import store
        from dog_breeds.serving import preprocess

        config = store.load_config(model_dir)
        self.torch = torch
        self.model = store.build_from_artifact(model_dir).eval()
        self.transform = preprocess.reference_transform(
            config["image_size"], config["mean"], config["std"]
        )

    def __call__(self, blob: bytes) -> np.ndarray:
        from PIL import Image

        image = Image.open(io.BytesIO(blob)).convert("RGB")
        batch = self.transform(image).unsqueeze(0)
        with self.torch.no_grad():
            return self.torch.softmax(self.model(batch), dim=1)[0].numpy()


# ---------------------------------------------------------------------------- (b) served
def child_serve(model_dir: Path, image_dir: Path, count: int) -> None:
    """The serving process: load with model_fn, then serve the images the parent names (one
    index per stdin line) through input_fn → predict_fn → output_fn; one JSON line back each."""
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="serving child: %(message)s")
    started = time.perf_counter()
    from dog_breeds.serving import inference

    import_s = time.perf_counter() - started
    started = time.perf_counter()
    model = inference.model_fn(str(model_dir))
    load_s = time.perf_counter() - started
    blobs = [p.read_bytes() for p in sorted(image_dir.glob("*.jpg"))[:count]]

    def serve(blob: bytes) -> dict:
        t0 = time.perf_counter()
        data = inference.input_fn(blob, "image/jpeg")
        t1 = time.perf_counter()
        prediction = inference.predict_fn(data, model)
        t2 = time.perf_counter()
        body = inference.output_fn(prediction, "application/json")
        t3 = time.perf_counter()
        if isinstance(body, tuple):  # (body, content_type), as the toolkit also accepts
            body = body[0]
        return {
            "ms": (t3 - t0) * 1000,
            "input_fn_ms": (t1 - t0) * 1000,
            "predict_fn_ms": (t2 - t1) * 1000,
            "output_fn_ms": (t3 - t2) * 1000,
            "response": json.loads(body),
        }

    for blob in blobs[:WARMUP]:
        serve(blob)
    ready = {"ready": True, "import_s": import_s, "load_s": load_s, **runtime_report(model)}
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        if line.strip() == "done":
            break
        if line.strip() == "cpu":  # this process's CPU seconds so far, all its threads
            print(json.dumps({"cpu_s": time.process_time()}), flush=True)
            continue
        print(json.dumps(serve(blobs[int(line)])), flush=True)
    rss = peak_rss_mib()
    print(json.dumps({"peak_rss_mib": rss}), flush=True)


def runtime_report(model) -> dict:
    """The served runtime's threads, ISA view and convolution kernels (OpenVINO only)."""
    runtime = model.runtime
    report = {"threads": getattr(runtime, "num_threads", None), "conv_kernels": None, "isa": {}}
    # The compiled model is the runtime's own (private) attribute: the benchmark looks inside.
    compiled = getattr(runtime, "_compiled", None)
    if compiled is not None:
        report["conv_kernels"] = conv_kernels(compiled)
        report["isa"] = openvino_isa_report()
    return report


def peak_rss_mib() -> float:
    """This process's own peak resident memory.

    Not ``getrusage(...).ru_maxrss``: Linux carries the parent's peak over into it at exec (the
    spawning address space's high-water mark), so a child started by a 1.5 GiB parent would report
    at least that. ``VmHWM`` belongs to the address space exec created.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


class ServedPath:
    """A fresh Python process that only loads and serves (its RSS and load time are honest)."""

    def __init__(self, model_dir: Path, image_dir: Path, count: int, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(model_dir), str(image_dir), str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"serving child exited ({self.proc.wait()})")
        return json.loads(line)

    def __call__(self, index: int) -> dict:
        self.proc.stdin.write(f"{index}\n")
        self.proc.stdin.flush()
        return self._read()

    def cpu_s(self) -> float:
        self.proc.stdin.write("cpu\n")
        self.proc.stdin.flush()
        return self._read()["cpu_s"]

    def close(self) -> dict:
        self.proc.stdin.write("done\n")
        self.proc.stdin.flush()
        final = self._read()
        self.proc.wait(timeout=60)
        return final


def run_side_by_side(model_dir: Path, paths: list[Path], env: dict[str, str]) -> tuple[dict, dict]:
    """Alternate eager and served per image, so a busy machine slows both alike."""
    blobs = [p.read_bytes() for p in paths]
    served = ServedPath(model_dir, paths[0].parent, len(paths), env)
    eager = EagerPath(model_dir)
    for blob in blobs[:WARMUP]:
        eager(blob)
    eager_ms, eager_probs, served_rows = [], [], []
    try:
        for index, blob in enumerate(blobs):
            started = time.perf_counter()
            eager_probs.append(eager(blob))
            eager_ms.append((time.perf_counter() - started) * 1000)
            served_rows.append(served(index))
    finally:
        final = served.close()
    eager_result = {
        "latencies_ms": eager_ms,
        "probs": np.stack(eager_probs),
        "threads": eager.torch.get_num_threads(),
        "aten_capability": eager.torch.backends.cpu.get_cpu_capability(),
    }
    served_result = {
        "latencies_ms": [r["ms"] for r in served_rows],
        "input_fn_ms": [r["input_fn_ms"] for r in served_rows],
        "predict_fn_ms": [r["predict_fn_ms"] for r in served_rows],
        "output_fn_ms": [r["output_fn_ms"] for r in served_rows],
        "responses": [r["response"] for r in served_rows],
        **served.ready,
        **final,
    }
    return eager_result, served_result


# ---------------------------------------------------------------------------- (c) int8
INT8_DIR = "openvino-int8"


def child_int8(model_dir: Path, image_dir: Path, count: int) -> None:
    """fp32 IR vs its NNCF int8 form, model only, batch 1, alternating image by image; one JSON
    line. The int8 IR is cached beside the artifact (a --rebuild discards both)."""
    import openvino as ov

    from dog_breeds.artifact import cpu_form
    from dog_breeds.serving import preprocess, runtimes

    config = json.loads((model_dir / "config.json").read_text())
    size = config["image_size"]
    core = runtimes.openvino_core()
    fp32_model = core.read_model(model_dir / cpu_form.OPENVINO_DIR / cpu_form.IR_XML)
    shipped_xml = model_dir / cpu_form.OPENVINO_DIR / cpu_form.INT8_IR_XML
    # The int8 IR that shipped; if the guard refused it, this benchmark's own (cached) one.
    int8_xml = shipped_xml if shipped_xml.is_file() else model_dir / INT8_DIR / cpu_form.IR_XML
    quantize_s = None
    if not int8_xml.is_file():
        import nncf

        calibration = [
            preprocess.to_model_input(image, size)[np.newaxis] for _, image in train_photos(RECIPE)
        ]
        started = time.perf_counter()
        int8_model = nncf.quantize(
            fp32_model, nncf.Dataset(calibration), subset_size=len(calibration)
        )
        quantize_s = round(time.perf_counter() - started, 1)
        tmp = int8_xml.parent.with_name(INT8_DIR + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        ov.save_model(int8_model, tmp / cpu_form.IR_XML, compress_to_fp16=False)
        tmp.rename(int8_xml.parent)

    threads = runtimes.available_cpus()  # one worker's view: every core, as the side-by-side
    settings = {
        ov.properties.hint.performance_mode: ov.properties.hint.PerformanceMode.LATENCY,
        ov.properties.hint.inference_precision: ov.Type.f32,
        ov.properties.inference_num_threads: threads,
        ov.properties.hint.enable_cpu_pinning: False,
    }
    compiled = {
        "fp32": core.compile_model(fp32_model, "CPU", settings),
        "int8": core.compile_model(core.read_model(int8_xml), "CPU", settings),
    }
    requests = {name: c.create_infer_request() for name, c in compiled.items()}
    from PIL import Image

    paths = sorted(image_dir.glob("*.jpg"))[:count]
    labels = np.asarray(image_labels(paths))
    inputs = []
    for path in paths:
        with Image.open(path) as image:
            inputs.append(preprocess.to_model_input(image.convert("RGB"), size)[np.newaxis])
    for x in inputs[:WARMUP]:
        for request in requests.values():
            request.infer({0: x})
    times = {name: [] for name in requests}
    top1 = {name: [] for name in requests}
    for x in inputs:
        for name, request in requests.items():
            started = time.perf_counter()
            logits = request.infer({0: x})[0]
            times[name].append((time.perf_counter() - started) * 1000)
            top1[name].append(int(np.argmax(logits)))
    accuracy = {name: float((np.asarray(t) == labels).mean()) for name, t in top1.items()}
    result = {
        "fp32_p50_ms": round(percentile(times["fp32"], 50), 2),
        "int8_p50_ms": round(percentile(times["int8"], 50), 2),
        "int8_top1_agreement": float(np.mean(np.asarray(top1["fp32"]) == np.asarray(top1["int8"]))),
        "fp32_accuracy": accuracy["fp32"],
        "int8_accuracy": accuracy["int8"],
        "int8_ir": "shipped" if int8_xml == shipped_xml else "bench's own (guard refused)",
        "int8_calibration_images": len(train_photos(RECIPE)),
        "int8_quantize_s": quantize_s,  # None: the cached int8 IR was used
        "int8_threads": threads,
        "conv_kernels_fp32": conv_kernels(compiled["fp32"]),
        "conv_kernels_int8": conv_kernels(compiled["int8"]),
    }
    print(json.dumps(result), flush=True)


def run_int8(model_dir: Path, paths: list[Path], env: dict[str, str]) -> dict:
    """(c) in a child with the capped environment; a failure (no nncf, an ISA without int8
    kernels) is reported, not fatal."""
    done = subprocess.run(
        [sys.executable, __file__, "--child-int8", str(model_dir), str(paths[0].parent),
         str(len(paths))],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"int8_error": f"int8 child exited {done.returncode}: {tail}"}
    result = json.loads(lines[-1])
    result["int8_speedup"] = round(result["fp32_p50_ms"] / result["int8_p50_ms"], 2)
    result["int8_valid_drop_points"] = round(
        100 * (result.pop("fp32_accuracy") - result.pop("int8_accuracy")), 2
    )
    return result


# ---------------------------------------------------------------------------- (d) concurrency
CONCURRENCY_WORKERS = 2  # TorchServe's default: one worker per vCPU (ml.t2.medium: 2)


def t2_medium_baseline_images_per_hour(cpu_ms_per_image: float) -> int:
    """Images an hour an ml.t2.medium sustains once its CPU credits are spent: 2 vCPUs at 20 %
    each is 1,440 CPU-seconds an hour, divided by the CPU time one image costs."""
    return int(3600 * T2_MEDIUM_VCPUS * T2_MEDIUM_BASELINE / (cpu_ms_per_image / 1000))


def run_concurrency(model_dir: Path, paths: list[Path], env: dict[str, str]) -> dict:
    """Images per second through the served path with 1 and 2 requests in flight, across
    CONCURRENCY_WORKERS fresh serving processes started with ``env`` (as TorchServe's workers
    are); the CPU time per image (all the workers' CPU seconds over a phase, spinning threads
    included); the peak resident memory of each worker and of all."""
    workers = [ServedPath(model_dir, paths[0].parent, len(paths), env)]
    workers.append(ServedPath(model_dir, paths[0].parent, len(paths), env))

    def one_in_flight() -> None:
        for index in range(len(paths)):
            workers[index % len(workers)](index)  # TorchServe hands it to an idle worker

    def two_in_flight() -> None:
        def drive(worker: ServedPath, indices: range) -> None:
            for index in indices:
                worker(index)

        with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
            jobs = [
                pool.submit(drive, w, range(i, len(paths), len(workers)))
                for i, w in enumerate(workers)
            ]
            for job in jobs:
                job.result()

    def phase(run) -> tuple[float, float]:
        """(images per second, CPU ms per image)"""
        cpu_before = sum(w.cpu_s() for w in workers)
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        cpu = sum(w.cpu_s() for w in workers) - cpu_before
        return len(paths) / seconds, cpu * 1000 / len(paths)

    try:
        runtime = workers[0](0)["response"].get("model", {}).get("runtime")
        (c1, cpu1), (c2, cpu2) = phase(one_in_flight), phase(two_in_flight)
    finally:
        peaks = [w.close()["peak_rss_mib"] for w in workers]
    return {
        "runtime": runtime,
        "images_per_s_c1": round(c1, 2),
        "images_per_s_c2": round(c2, 2),
        "cpu_ms_per_image_c1": round(cpu1, 1),
        "cpu_ms_per_image_c2": round(cpu2, 1),
        "workers": len(workers),
        "threads_per_worker": workers[0].ready["threads"],
        "peak_rss_mib_per_worker": round(max(peaks), 1),
        "peak_rss_mib_all_workers": round(sum(peaks), 1),
    }


def concurrency_configs(isa: str) -> dict[str, dict[str, str]]:
    """Name -> the serving children's environment. "deployed": the worker count the launcher
    leaves to TorchServe (one per vCPU, one thread each); "2 threads a worker": the same two
    processes told they are alone (SAGEMAKER_MODEL_SERVER_WORKERS=1), for comparison."""
    configs = {}
    for runtime, force in (("int8", None), ("fp32", "1")):
        configs[f"deployed, {runtime}"] = child_env(
            isa, **{WORKERS_ENV: None, FORCE_FP32_ENV: force}
        )
        configs[f"2 threads a worker, {runtime}"] = child_env(
            isa, **{WORKERS_ENV: "1", FORCE_FP32_ENV: force}
        )
    return configs


# ---------------------------------------------------------------------------- pre/post costs
def preprocessing_costs(model_dir: Path, blobs: list[bytes]) -> dict:
    """Median ms per image for decoding and for each preprocessing implementation."""
    from PIL import Image

    from dog_breeds.artifact import store
    from dog_breeds.serving import image_decode, preprocess

    config = store.load_config(model_dir)
    size, mean, std = config["image_size"], config["mean"], config["std"]
    reference = preprocess.reference_transform(size, mean, std)
    resize = preprocess.resize_size_for(size)

    def decode(blob: bytes):
        return image_decode.decode_image(blob, resize_size=resize)

    images = [decode(b) for b in blobs[:50]]

    def median_ms(fn, items) -> float:
        times = []
        for item in items:
            started = time.perf_counter()
            fn(item)
            times.append((time.perf_counter() - started) * 1000)
        return round(statistics.median(times), 3)

    return {
        "decode_ms": median_ms(decode, blobs[:50]),
        "decode_pil_plain_ms": median_ms(
            lambda b: Image.open(io.BytesIO(b)).convert("RGB"), blobs[:50]
        ),
        "preprocess_torchvision_ms": median_ms(reference, images),
        "preprocess_fast_ms": median_ms(
            lambda im: preprocess.to_model_input(im, size, mean, std), images
        ),
    }


# ---------------------------------------------------------------------------- report
def agreement(eager_probs: np.ndarray, responses: list[dict]) -> dict:
    """Top-1 agreement and the largest probability difference over every returned breed."""
    top1_same, max_diff = 0, 0.0
    for probs, response in zip(eager_probs, responses, strict=True):
        predictions = response["predictions"]
        top1_same += int(predictions[0]["index"] == int(np.argmax(probs)))
        for p in predictions:
            max_diff = max(max_diff, abs(float(p["probability"]) - float(probs[p["index"]])))
    top1 = eager_probs.max(axis=1)
    second = np.sort(eager_probs, axis=1)[:, -2]
    return {
        "top1_agreement": top1_same / len(responses),
        "max_prob_diff": max_diff,
        "eager_mean_top1_prob": float(top1.mean()),
        "eager_min_top1_margin": float((top1 - second).min()),
        "eager_distinct_top1": len(set(np.argmax(eager_probs, axis=1).tolist())),
        "top_k_compared": len(responses[0]["predictions"]),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "bench")
    parser.add_argument("--rebuild", action="store_true", help="retrain the cached artifact")
    parser.add_argument(
        "--isa", choices=list(ISA_CAPS), default="native",
        help="cap oneDNN to this ISA in the serving children (ONEDNN_MAX_CPU_ISA; native: unset)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    bench_started = time.perf_counter()
    model_dir = ensure_artifact(work, args.rebuild)
    paths = ensure_images(work, args.images, RECIPE["classes"])
    blobs = [p.read_bytes() for p in paths]
    load_before = os.getloadavg()[0]
    # One worker with every core, fp32: the side-by-side and the model-only int8 comparison.
    env = child_env(args.isa, **{WORKERS_ENV: "1", FORCE_FP32_ENV: "1"})

    eager, served = run_side_by_side(model_dir, paths, env)
    costs = preprocessing_costs(model_dir, blobs)
    agree = agreement(eager["probs"], served["responses"])
    model_info = served["responses"][0].get("model", {})
    labels = image_labels(paths)
    served_top1 = [r["predictions"][0]["index"] for r in served["responses"]]
    int8 = run_int8(model_dir, paths, env)
    concurrency = {
        name: run_concurrency(model_dir, paths, config_env)
        for name, config_env in concurrency_configs(args.isa).items()
    }
    deployed = {r: concurrency[f"deployed, {r}"] for r in ("int8", "fp32")}
    shipped = deployed["int8"]  # serves fp32 when the guard refused int8: its runtime says
    guard = json.loads((model_dir / "bench_recipe.json").read_text())["fit"].get("int8", {})

    eager_p50 = percentile(eager["latencies_ms"], 50)
    served_p50 = percentile(served["latencies_ms"], 50)
    summary = {
        "eager_p50_ms": round(eager_p50, 2),
        "eager_p95_ms": round(percentile(eager["latencies_ms"], 95), 2),
        "served_p50_ms": round(served_p50, 2),
        "served_p95_ms": round(percentile(served["latencies_ms"], 95), 2),
        "served_images_per_s": round(len(paths) / (sum(served["latencies_ms"]) / 1000), 2),
        "eager_images_per_s": round(len(paths) / (sum(eager["latencies_ms"]) / 1000), 2),
        "speedup_p50": round(eager_p50 / served_p50, 2),
        "top1_agreement": agree["top1_agreement"],
        "max_prob_diff": float(f"{agree['max_prob_diff']:.3g}"),
        "peak_rss_mib": round(served["peak_rss_mib"], 1),
        "load_s": round(served["load_s"], 3),
        "runtime": model_info.get("runtime"),
        "images": len(paths),
        "input_fn_p50_ms": round(percentile(served["input_fn_ms"], 50), 3),
        "predict_fn_p50_ms": round(percentile(served["predict_fn_ms"], 50), 3),
        "output_fn_p50_ms": round(percentile(served["output_fn_ms"], 50), 3),
        **costs,
        "eager_mean_top1_prob": round(agree["eager_mean_top1_prob"], 4),
        "eager_min_top1_margin": float(f"{agree['eager_min_top1_margin']:.3g}"),
        "eager_distinct_top1": agree["eager_distinct_top1"],
        "top_k_compared": agree["top_k_compared"],
        "eager_threads": eager["threads"],
        "isa": {
            "requested": args.isa,
            ISA_ENV: ISA_CAPS[args.isa],
            "served_child": served["isa"],
            "eager_aten_capability": eager["aten_capability"],
            "notes": ISA_NOTES,
        },
        "conv_kernels": served["conv_kernels"],
        "served_threads": served["threads"],
        "bench_model_accuracy": round(float(np.mean(np.asarray(served_top1) == labels)), 4),
        "bench_model_classes": RECIPE["classes"],
        **int8,
        "int8_shipped": guard.get("shipped"),
        "int8_guard": guard.get("reason"),
        "served_runtime_deployed": shipped["runtime"],
        "images_per_s_c1": shipped["images_per_s_c1"],
        "images_per_s_c2": shipped["images_per_s_c2"],
        "images_per_s_c1_fp32": deployed["fp32"]["images_per_s_c1"],
        "images_per_s_c2_fp32": deployed["fp32"]["images_per_s_c2"],
        "peak_rss_mib_all_workers": shipped["peak_rss_mib_all_workers"],
        "peak_rss_mib_all_workers_fp32": deployed["fp32"]["peak_rss_mib_all_workers"],
        "cpu_ms_per_image": shipped["cpu_ms_per_image_c2"],
        "cpu_ms_per_image_fp32": deployed["fp32"]["cpu_ms_per_image_c2"],
        "t2_medium_baseline_images_per_hour": t2_medium_baseline_images_per_hour(
            shipped["cpu_ms_per_image_c2"]
        ),
        "t2_medium_baseline_images_per_hour_fp32": t2_medium_baseline_images_per_hour(
            deployed["fp32"]["cpu_ms_per_image_c2"]
        ),
        "concurrency": {
            "how": (
                f"{CONCURRENCY_WORKERS} serving processes (TorchServe's default under the "
                "toolkit: one worker per vCPU, each serving one request at a time); deployed: "
                "runtimes.threads_per_worker() OpenVINO threads each (1 on 2 vCPUs); c1: one "
                "request at a time, c2: two at once, one per worker; cpu_ms_per_image: all the "
                "workers' CPU seconds over the phase per image; peaks cover c1 and c2 (the same "
                "processes); t2_medium_baseline_images_per_hour: 2 vCPUs x 20 % x 3600 s over "
                "cpu_ms_per_image at c2, on this machine's CPU"
            ),
            **concurrency,
        },
        "cpus": len(os.sched_getaffinity(0)),
        "loadavg_1m_before": round(load_before, 2),
        "bench_s": round(time.perf_counter() - bench_started, 1),
    }
    print_table(summary)
    print(json.dumps(summary))
    return summary


def print_table(s: dict) -> None:
    rows = [
        ("p50 latency, batch 1 (ms)", s["eager_p50_ms"], s["served_p50_ms"]),
        ("p95 latency, batch 1 (ms)", s["eager_p95_ms"], s["served_p95_ms"]),
        ("images / s (one worker)", s["eager_images_per_s"], s["served_images_per_s"]),
    ]
    print(f"{'':32}{'eager PyTorch':>16}{'served (' + str(s['runtime']) + ')':>22}")
    for name, a, b in rows:
        print(f"{name:32}{a:>16}{b:>22}")
    print(
        f"speedup p50 {s['speedup_p50']}x; top-1 agreement {s['top1_agreement']:.3f}; "
        f"max prob diff {s['max_prob_diff']}; peak RSS {s['peak_rss_mib']} MiB; "
        f"load {s['load_s']} s; {s['images']} images; "
        f"handlers p50 in/predict/out {s['input_fn_p50_ms']}/{s['predict_fn_p50_ms']}/"
        f"{s['output_fn_p50_ms']} ms"
    )
    if "int8_p50_ms" in s:
        print(
            f"int8 (model only): {s['fp32_p50_ms']} -> {s['int8_p50_ms']} ms "
            f"({s['int8_speedup']}x), top-1 agreement {s['int8_top1_agreement']:.3f}, accuracy "
            f"drop {s['int8_valid_drop_points']} points (fp32 accuracy {s['bench_model_accuracy']})"
        )
    else:
        print(f"int8: {s.get('int8_error')}")
    print(
        f"isa {s['isa']['requested']}: conv kernels {s['conv_kernels']}; deployed "
        f"({s['served_runtime_deployed']}): images/s with 1 and 2 in flight "
        f"{s['images_per_s_c1']} / {s['images_per_s_c2']} (fp32 {s['images_per_s_c1_fp32']} / "
        f"{s['images_per_s_c2_fp32']}); CPU ms an image {s['cpu_ms_per_image']} (fp32 "
        f"{s['cpu_ms_per_image_fp32']}); ml.t2.medium at baseline: "
        f"{s['t2_medium_baseline_images_per_hour']} images/hour (fp32 "
        f"{s['t2_medium_baseline_images_per_hour_fp32']})"
    )
    if not math.isclose(s["loadavg_1m_before"], 0.0, abs_tol=s["cpus"] * 0.5):
        print(f"note: load average {s['loadavg_1m_before']} before the run: timings are noisy")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_serve(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-int8":
        child_int8(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
