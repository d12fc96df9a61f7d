"""The ONNX Runtime INT8 flavour gives the same output on a CPU without VNNI.

ONNX Runtime's x86 u8 x s8 kernels add pairs of products in saturating 16-bit lanes where the
CPU has no VNNI (AVX2, AVX-512 without VNNI); the flavour's 7-bit weights keep every pair below
2**15 (edgeseg.calibration.targets). Here the model runs natively and under ``qemu-x86_64 -cpu
Haswell`` (AVX2, FMA, no AVX-512, no VNNI: ONNX Runtime picks its AVX2 kernels from CPUID) and
the two outputs must be bit-identical. Needs qemu-user (``apt install qemu-user``); skipped
without it, saying so. Emulation is slow: one small frame of a small model.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgeseg.calibration import calibrate  # noqa: E402

QEMU = shutil.which("qemu-x86_64")

_RUN = r"""
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
np.save(sys.argv[3], s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})[0])
"""


def _images(n: int, size: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        img = np.zeros((size, size), np.float32)
        for cy, cx in rng.uniform(0, size, (5, 2)):
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 15.0)
        out.append((img / img.max() * 255).astype(np.uint8))
    return out


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or QEMU is None,
                    reason="needs an x86-64 machine with qemu-x86_64 (apt install qemu-user) to emulate "
                           "an AVX2-only CPU")
def test_onnxruntime_int8_is_bit_identical_on_an_emulated_avx2_cpu(tiny_onnx, tmp_path):
    model = calibrate(tiny_onnx, _images(6), tmp_path / "tiny.int8.onnx", target="onnxruntime",
                      method="percentile", num_images=6, shape=32)
    x = np.stack([im.astype(np.float32) / 255 * 4 - 1 for im in _images(2)])[:, None]  # -1..3, as normalised
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "run.py"
    script.write_text(_RUN)
    outs = {}
    for name, prefix in (("native", []), ("haswell", [QEMU, "-cpu", "Haswell"])):
        out = tmp_path / f"{name}.npy"
        done = subprocess.run([*prefix, sys.executable, str(script), str(model), str(tmp_path / "x.npy"), str(out)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        outs[name] = np.load(out)
    assert outs["native"].shape == (2, 3, 48, 48)
    diff = float(np.abs(outs["native"] - outs["haswell"]).max())
    assert diff == 0.0, f"INT8 output differs between this CPU and an emulated AVX2 one by up to {diff}"
