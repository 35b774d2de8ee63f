"""Peak memory per request for hostile images: the endpoint's decode and the function's downscale.

    make hostile                    # = .venv/bin/python benchmarks/bench_hostile.py
    make hostile ARGS="--only png_RGBA_7000x9000 png_L_2x40000"   # some entries only
    make hostile ARGS="--code-root /tmp/orig"   # an older copy of the code, e.g. unpacked from
        # git archive HEAD training/container/dog_breeds lambdas/classify_upload/classify_upload

Each body of ``tests/hostile_images.py`` goes, once per path, through a fresh child process that
warms up on small images, then runs one request: the endpoint path (``decode_image`` with
input_fn's draft size, then ``to_model_input``) and the function path (``fit_request`` on the body
padded past the 6 MiB request limit). The child reports the outcome (HTTP status, or the function's
error_type) and its peak RSS growth: VmHWM after the request minus VmHWM before it, in MiB. Each
child runs under an address-space cap (``--cap-gib`` above its size at the start, 3 GiB by
default) so a runaway request ends in a MemoryError instead of taking the machine: a growth near
the cap means "at least that much". Prints one JSON object: per entry and path, then the largest
growth per corpus class.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def load_corpus():
    """tests/hostile_images.py, imported by its path (nothing here edits sys.path)."""
    spec = importlib.util.spec_from_file_location("hostile_images", TESTS / "hostile_images.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_images"] = module
    spec.loader.exec_module(module)
    return module


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="entry names (default: all)")
    parser.add_argument("--paths", nargs="*", default=["endpoint", "function"])
    parser.add_argument(
        "--code-root",
        default="",
        help="a tree with training/container and lambdas/classify_upload to import instead",
    )
    parser.add_argument("--cap-gib", type=float, default=3.0)
    parser.add_argument(
        "--upload-mib", type=int, default=300, help="the oversized upload (0: skip it)"
    )
    return parser


class _NoEndpointCalls:
    """The endpoint's container for the upload check: neither upload may reach it."""

    def ping(self) -> bool:
        return True

    def invoke(self, body, content_type, accept="application/json", custom_attributes=None):
        from local.endpoint.runtime import ContainerResponse

        return ContainerResponse(500, b'{"error": "the endpoint was called"}')


def oversized_upload(size_mib: int) -> dict:
    """An empty upload, then one of ``size_mib`` MiB, through the offline stack: each item's
    outcome and the sandboxes' peak memory after each (MB, as Lambda's REPORT line gives it)."""
    import tempfile

    from local.demo.uploads import read_items
    from local.stack import LocalStack

    jpeg_start = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
    uploads = {"empty": b"", "oversized": jpeg_start + bytes(size_mib * 2**20 - len(jpeg_start))}
    figures: dict = {"object_mib": size_mib}
    with (
        tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp,
        LocalStack(None, container=_NoEndpointCalls(), log_dir=Path(tmp)) as stack,
    ):
        if not stack.wait_idle(60):  # S3's test event
            raise RuntimeError("the offline stack did not settle")
        figures["function_memory_mb"] = stack.facts.function.memory_mb
        for name in list(uploads):
            key = f"uploads/bench/{name}.jpg"
            body = uploads.pop(name)
            stack.client("s3").put_object(Bucket=stack.facts.bucket, Key=key, Body=body)
            del body
            if not stack.wait_idle(120):
                raise RuntimeError(f"the {name} upload was not processed in 120 s")
            item = read_items(stack.table(), stack.facts.bucket)[key]
            figures[name] = {
                "item": f"{item['status']}/{item.get('error_type')}",
                "get_object_step": "get_object" in item.get("timings_ms", {}),
                "sandbox_peak_mb": stack.event_source.stats.peak_memory_used_mb,
            }
        figures["endpoint_calls"] = len(stack.endpoint.invocations)
    figures["peak_ratio_oversized_to_empty"] = round(
        figures["oversized"]["sandbox_peak_mb"] / figures["empty"]["sandbox_peak_mb"], 3
    )
    return figures


def main(args: argparse.Namespace) -> dict:
    hostile = load_corpus()
    pythonpath = ""
    if args.code_root:
        root = Path(args.code_root).resolve()
        pythonpath = f"{root / 'training' / 'container'}:{root / 'lambdas' / 'classify_upload'}"
    cap = int(args.cap_gib * 2**30)
    entries = [e for e in hostile.CORPUS if args.only is None or e.name in args.only]
    results: dict[str, dict] = {}
    by_class: dict[str, dict[str, float]] = {}
    for entry in entries:
        row: dict = {"class": entry.cls}
        for path in args.paths:
            body = entry.body if path == "endpoint" else hostile.function_body(entry)
            got = hostile.run_in_child(path, body, cap, pythonpath)
            expected = entry.endpoint if path == "endpoint" else entry.function
            outcome = got.get("status", got.get("outcome", f"killed {got.get('killed')}"))
            row[path] = {
                "outcome": outcome,
                "expected": expected,
                "peak_growth_mib": got.get("peak_growth_mib"),
                "reason": (got.get("reason") or got.get("stderr", ""))[:160],
            }
            worst = by_class.setdefault(entry.cls, {})
            peak = got.get("peak_growth_mib")
            if peak is None:  # killed: at least the cap
                peak = float(cap >> 20)
            worst[path] = max(worst.get(path, 0.0), peak)
        results[entry.name] = row
        print(entry.name, json.dumps(row), file=sys.stderr, flush=True)
    report = {
        "code": args.code_root or "installed",
        "cap_mib": cap >> 20,
        "max_peak_growth_mib_by_class": by_class,
        "entries": results,
    }
    if args.upload_mib > 0:
        report["oversized_upload"] = oversized_upload(args.upload_mib)
    return report


if __name__ == "__main__":
    print(json.dumps(main(get_args_parser().parse_args()), indent=1))
