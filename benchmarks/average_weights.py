"""Average two fine-tuned cross-encoders of the same architecture, weight by weight.

``python -m benchmarks.average_weights A B OUT [--weight W]`` writes OUT as a copy of A whose
``model.safetensors`` is ``W * A + (1 - W) * B`` (floating-point tensors; others from A).
Used by benchmarks/scifact_finetune.sh to pull a domain fine-tune back towards the model it
started from (docs/finetune.md).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def average(a: Path, b: Path, out: Path, weight: float) -> None:
    from safetensors.torch import load_file, save_file

    if not 0.0 <= weight <= 1.0:
        raise SystemExit(f"--weight must be between 0 and 1, got {weight}")
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    if wa.keys() != wb.keys() or any(wa[k].shape != wb[k].shape for k in wa):
        raise SystemExit(f"{a} and {b} do not have the same tensors")
    mixed = {
        k: (weight * v.float() + (1 - weight) * wb[k].float()).to(v.dtype)
        if v.is_floating_point()
        else v
        for k, v in wa.items()
    }
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(a, out)
    save_file(mixed, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "averaged_from.txt").write_text(f"{weight} x {a}\n{1 - weight} x {b}\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--weight", type=float, default=0.5, help="weight of A (default 0.5)")
    args = p.parse_args()
    average(args.a, args.b, args.out, args.weight)


if __name__ == "__main__":
    main()
