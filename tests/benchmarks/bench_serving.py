"""CPU serving benchmark: the plain eager PyTorch path vs our served path, same model, same images.

    make bench        # = .venv/bin/python tests/benchmarks/bench_serving.py

(a) eager: what the original project served: PIL decode, torchvision Resize(256) / CenterCrop(224) /
    ToTensor / Normalize, the model in eval mode, fp32, batch 1, softmax.
(b) served: training/endpoint_inference.py's model_fn once, then per request input_fn (raw JPEG
    bytes) → predict_fn → output_fn (JSON), in a fresh child process that does nothing else, so
    its peak RSS (VmHWM) and model load time are the serving process's own.
The two alternate image by image (eager in this process, then the same image in the child), so
a busy machine slows both alike; each side times only its own work.

The artifact: dog_model's ResNet50 + head at 224 × 224, 133 classes (as dogImages), saved with
model_artifact and exported with fast_runtime, fitted on generated images (synthetic_dataset's
class patterns) in about a minute: see ``fit_bench_model``. It is cached under runs/bench/
(pass --rebuild to refit). Images: generated 500×375 / 375×500 JPEGs the fit never saw.

The last stdout line is one JSON object (keys: see ``summary``).
"""

from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parents[2]

# Bump when the recipe below changes, so a cached artifact from an older recipe is rebuilt.
RECIPE = {
    "version": 3,
    "classes": 133,
    "image_size": 224,
    "hidden_size": 256,
    "dropout": 0.3,
    "head_train_per_class": 2,
    "head_steps": 300,
    "head_lr": 1e-3,
    "seed": 0,
}
WARMUP = 5


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# ---------------------------------------------------------------------------- the artifact
def render_photos(count: int, classes: int, seed: int) -> list[tuple[int, object]]:
    """(class, PIL image) pairs: synthetic_dataset's class patterns as 500×375 / 375×500 photos."""
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
    """ResNet50 + head with real BatchNorm statistics and a trained head, in about a minute.

    Training all of ResNet50 on 133 classes from random init takes far longer than a benchmark
    may (train.py: ~5 min per epoch on this busy 2-core machine, still at chance after one).
    So: BatchNorm running statistics are measured on generated 224 px images (a data-dependent
    init, so activations are well scaled), then the two-layer head is trained on the pooled
    features of those images. On unseen generated images it is right about 2 times in 3 with a
    mean top-1 probability around 0.65 (measured): it answers differently per image with real
    margins, which is what agreement needs; it is not meant to be accurate on dogs.
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

    train_x, train_y = tensors(render_photos(classes * recipe["head_train_per_class"], classes, 22))
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
    return model.eval(), {"head_train_loss": float(loss.detach()), "head_train_accuracy": accuracy}


def ensure_artifact(work: Path, rebuild: bool) -> Path:
    """The benchmark's artifact (model_artifact layout + OpenVINO form), cached in ``work``."""
    model_dir = work / "artifact"
    recipe_file = model_dir / "bench_recipe.json"
    wanted = json.loads(json.dumps(RECIPE))
    cached = json.loads(recipe_file.read_text()) if recipe_file.is_file() else {}
    if not rebuild and cached.get("recipe") == wanted:
        return model_dir

    from dog_breeds.artifact import store
    from dog_breeds.data import synthetic
    from dog_breeds.serving import preprocess, runtimes

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
    exported = runtimes.export_cpu_form(model, model_dir)
    fit["seconds"] = round(time.perf_counter() - started, 1)
    print(f"artifact: {fit}; CPU form: {exported}", file=sys.stderr)
    recipe_file.write_text(json.dumps({"recipe": wanted, "fit": fit}) + "\n")
    return model_dir


def ensure_images(work: Path, count: int, classes: int) -> list[Path]:
    """``count`` JPEGs of realistic sizes (500×375 and 375×500), unseen by the head's training."""
    out = work / f"images-{count}"
    paths = sorted(out.glob("*.jpg"))
    if len(paths) == count:
        return paths
    out.mkdir(parents=True, exist_ok=True)
    for i, (_, image) in enumerate(render_photos(count, classes, seed=1234)):
        image.save(out / f"{i:04d}.jpg", quality=90)
    return sorted(out.glob("*.jpg"))


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
    print(json.dumps({"ready": True, "import_s": import_s, "load_s": load_s}), flush=True)
    for line in sys.stdin:
        if line.strip() == "done":
            break
        print(json.dumps(serve(blobs[int(line)])), flush=True)
    rss = peak_rss_mib()
    print(json.dumps({"peak_rss_mib": rss}), flush=True)


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

    def __init__(self, model_dir: Path, image_dir: Path, count: int):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(model_dir), str(image_dir), str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
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

    def close(self) -> dict:
        self.proc.stdin.write("done\n")
        self.proc.stdin.flush()
        final = self._read()
        self.proc.wait(timeout=60)
        return final


def run_side_by_side(model_dir: Path, paths: list[Path]) -> tuple[dict, dict]:
    """Alternate eager and served per image, so a busy machine slows both alike."""
    blobs = [p.read_bytes() for p in paths]
    served = ServedPath(model_dir, paths[0].parent, len(paths))
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "bench")
    parser.add_argument("--rebuild", action="store_true", help="retrain the cached artifact")
    args = parser.parse_args(argv)

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    bench_started = time.perf_counter()
    model_dir = ensure_artifact(work, args.rebuild)
    paths = ensure_images(work, args.images, RECIPE["classes"])
    blobs = [p.read_bytes() for p in paths]
    load_before = os.getloadavg()[0]

    eager, served = run_side_by_side(model_dir, paths)
    costs = preprocessing_costs(model_dir, blobs)
    agree = agreement(eager["probs"], served["responses"])
    model_info = served["responses"][0].get("model", {})

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
    if not math.isclose(s["loadavg_1m_before"], 0.0, abs_tol=s["cpus"] * 0.5):
        print(f"note: load average {s['loadavg_1m_before']} before the run: timings are noisy")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_serve(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
