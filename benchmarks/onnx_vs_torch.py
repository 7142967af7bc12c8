"""Windows per second: onnxruntime vs PyTorch eager, per batch size, on real windows.

For each shipped model, the same prepared windows (from its real benchmark data) go through
PyTorch eager (the model's architecture from its training config; weights do not change the
speed) and onnxruntime's CPU provider with the FP32 and INT8 files, and with the CUDA provider
when it is available (onnxruntime-gpu and a GPU). Medians of repeated timings, one run, the
same machine, so the ratios hold even on a noisy shared machine.

    python -m benchmarks.onnx_vs_torch [--models sports2d msr3d] [--repeats 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from export.config import TrainConfig, load_config
from export.data import clips_from_dataset, evaluation_windows
from export.encoder import Classifier, Ensemble, SkeletonEncoder
from skeleton.artifact import INPUT_NAME, ModelCard
from skeleton.dataset import SkeletonDataset
from skeleton.readers import read_source

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SOURCES = {
    "sports2d": ("penn-action", "penn-action-train", "penn.npz"),
    "msr3d": ("msr-action3d", "msr-action3d", "msr.npz"),
    "daily3d": ("nw-ucla", "nw-ucla", "nw-ucla.npz"),
}
BATCHES = (1, 8, 32, 128)


def _median_rates(runners: dict, batch: np.ndarray, repeats: int) -> dict[str, float]:
    """Windows/s of each runner; the runners take turns within every repeat, so that the
    load of a shared machine falls on all of them alike."""
    times: dict[str, list[float]] = {label: [] for label in runners}
    for run in runners.values():
        run(batch)  # warm-up
    for _ in range(repeats):
        for label, run in runners.items():
            began = time.perf_counter()
            run(batch)
            times[label].append(time.perf_counter() - began)
    return {label: len(batch) / float(np.median(t)) for label, t in times.items()}


def benchmark(name: str, repeats: int, data_dir: Path | None = None) -> list[dict]:
    configs = ROOT / "configs" / "train"
    shipped_config = configs / f"{name}-ship.toml"  # what the shipped model was trained with, when it has its own
    config = load_config(shipped_config if shipped_config.is_file() else configs / f"{name}.toml", TrainConfig)
    shipped = onnxruntime.InferenceSession(str(ROOT / "models" / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    card = ModelCard.from_metadata(shipped.get_modelmeta().custom_metadata_map, name)
    window = card.window  # what it takes
    # An ensemble's embedding is its members' side by side: their number, in one card field.
    members, rest = divmod(card.embedding_size, config.encoder.embedding_size)
    if members < 1 or rest:
        raise SystemExit(
            f"{name}: its embedding of {card.embedding_size} values is no number of its config's encoders"
            f" ({config.encoder.embedding_size} values each): the config is not the one it was trained with"
        )
    fmt, folder, converted = SOURCES[name]
    dataset = SkeletonDataset.load(data_dir / converted) if data_dir else read_source(fmt, DATA / folder)
    windows, _ = evaluation_windows(clips_from_dataset(dataset, window, range(64)), window)
    windows = np.concatenate([windows] * (1 + 128 // len(windows)))[:128]

    def twin() -> Classifier | Ensemble:  # the shipped model's architecture in PyTorch (weights do not change speed)
        classifiers = [
            Classifier(SkeletonEncoder(config.encoder), len(dataset.label_names), mirror_average=config.mirror_average)
            for _ in range(members)
        ]
        return (classifiers[0] if members == 1 else Ensemble(classifiers)).eval()

    torch_model = twin()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    runners = {"pytorch eager": lambda b: torch_model(torch.from_numpy(b))}
    for variant in ("", ".int8"):
        session = onnxruntime.InferenceSession(
            str(ROOT / "models" / f"{name}{variant}.onnx"), options, providers=["CPUExecutionProvider"]
        )
        runners[f"onnxruntime cpu {variant[1:] or 'fp32'}"] = lambda b, s=session: s.run(None, {INPUT_NAME: b})
    if torch.cuda.is_available():
        gpu_model = twin().cuda()

        def on_gpu(b: np.ndarray) -> None:
            gpu_model(torch.from_numpy(b).cuda())
            torch.cuda.synchronize()

        runners["pytorch eager cuda"] = on_gpu
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        for variant in ("", ".fp16"):
            session = onnxruntime.InferenceSession(
                str(ROOT / "models" / f"{name}{variant}.onnx"), providers=["CUDAExecutionProvider"]
            )
            runners[f"onnxruntime cuda {variant[1:] or 'fp32'}"] = lambda b, s=session: s.run(None, {INPUT_NAME: b})
    rows = []
    with torch.no_grad():
        for batch in BATCHES:
            rates = _median_rates(runners, windows[:batch], repeats)
            rows += [
                {
                    "model": name,
                    "batch": batch,
                    "runtime": label,
                    "windows_per_s": rate,
                    "vs_pytorch": rate / rates["pytorch eager"],
                }
                for label, rate in rates.items()
            ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["sports2d", "msr3d"], choices=sorted(SOURCES))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="read converted datasets (make data) from here instead of ../shared/data",
    )
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__} "
        f"({', '.join(onnxruntime.get_available_providers())})"
    )
    print(f"{'model':10}{'batch':>6}  {'runtime':<26}{'windows/s':>12}{'vs pytorch':>12}")
    rows = [row for name in args.models for row in benchmark(name, args.repeats, args.data_dir)]
    for r in rows:
        print(f"{r['model']:10}{r['batch']:>6}  {r['runtime']:<26}{r['windows_per_s']:>12.0f}{r['vs_pytorch']:>12.2f}")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
