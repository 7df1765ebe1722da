"""Fine-tuning the released plate reader from its committed ONNX file (no last.pt survives).

The rebuilt CRNN must compute what the ONNX file computes (folded Conv+BN split back with
calibrated statistics, LSTM gates re-ordered), and `train(init=X.onnx)` must start from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.train import plate_reader  # noqa: E402
from models.train.plate_reader_onnx_init import model_from_onnx, onnx_arch  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
READER = REPO / "models" / "plate_reader.onnx"


def _crops(n: int, seed: int = 0, size: tuple[int, int] = (32, 96)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 3, *size)).astype(np.float32)


def _random_export(tmp_path: Path, arch: str) -> tuple[object, Path]:
    """A CRNN with non-trivial weights and BatchNorm statistics, exported like a release."""
    torch.manual_seed(3)
    model = plate_reader.build_model(arch=arch)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics away from (0, 1)
            model(torch.from_numpy(_crops(16, 1)))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    path = plate_reader.export_onnx(model, tmp_path / f"{arch}.onnx", data_hash="test")
    return model, path


@pytest.mark.parametrize("arch", ["base", "wide"])
def test_rebuilt_reader_computes_what_the_onnx_file_computes(tmp_path: Path, arch: str) -> None:
    original, path = _random_export(tmp_path, arch)
    x = _crops(40, 2)
    rebuilt, info = model_from_onnx(path, x)
    assert info["arch"] == arch and info["max_prob_diff_vs_onnx"] < 1e-4
    assert rebuilt.training  # ready to train
    rebuilt.eval()
    original.eval()  # type: ignore[attr-defined]
    fresh = torch.from_numpy(_crops(8, 9))  # crops the statistics were not taken on
    with torch.no_grad():
        a = torch.softmax(rebuilt(fresh), -1)
        b = torch.softmax(original(fresh), -1)  # type: ignore[operator]
    assert float((a - b).abs().max()) < 1e-4
    # the LSTM and head weights are the originals, not just something that fits the outputs
    ro, oo = rebuilt.state_dict(), original.state_dict()  # type: ignore[attr-defined]
    for key in ("rnn.weight_ih_l0", "rnn.weight_hh_l0_reverse", "rnn.bias_ih_l0", "head.weight"):
        assert torch.allclose(ro[key], oo[key], atol=1e-6), key


@pytest.mark.skipif(not READER.is_file(), reason="models/plate_reader.onnx not committed")
def test_the_committed_reader_rebuilds_exactly() -> None:
    size = plate_reader.ARCHS[onnx_arch(READER)].input_size  # 2.1 is wide48: 48x144
    _, info = model_from_onnx(READER, _crops(24, 4, size))
    assert info["max_prob_diff_vs_onnx"] < 1e-4 and info["lstm_layers"] >= 1


def test_a_file_that_is_not_a_plate_reader_is_refused(tmp_path: Path) -> None:
    other = REPO / "models" / "plates.onnx"
    if not other.is_file():
        pytest.skip("models/plates.onnx not committed")
    with pytest.raises(ValueError, match="not a plate_reader export"):
        model_from_onnx(other, _crops(2))


def _spy_on_export(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Replace the export at the end of `train` by one that keeps the trained model."""
    seen: dict[str, object] = {}

    def spy_export(model: object, out: Path, **kw: object) -> Path:
        seen["model"] = model
        return out

    monkeypatch.setattr(plate_reader, "export_onnx", spy_export)
    return seen


def test_training_starts_from_the_onnx_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train(init=X.onnx)`: the first batch sees the released network (same predictions
    before any step as the ONNX file), and a wrong --arch is refused by name."""
    _, path = _random_export(tmp_path, "base")
    seen = _spy_on_export(monkeypatch)
    with pytest.raises(ValueError, match="holds arch 'base', not 'wide'"):
        plate_reader.train(tmp_path / "w", epochs=1, datasets_root=tmp_path / "none", synth_n=40, quick=True,
                           init=path, arch="wide")
    plate_reader.train(tmp_path / "b", epochs=1, datasets_root=tmp_path / "none", synth_n=40, quick=True,
                       init=path, arch="base", lr=1e-12)
    model = seen["model"]
    assert model is not None
    import onnxruntime as ort

    x = _crops(6, 5)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    model.eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        ours = torch.softmax(model(torch.from_numpy(x)), -1).numpy()  # type: ignore[operator]
    # lr 1e-12: the steps taken cannot move it; BatchNorm running statistics do move in train
    # mode, so compare loosely: an un-initialised net would be off by ~1
    assert float(np.abs(ours - ref).max()) < 0.05


def test_a_wide_release_initialises_the_48px_net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`wide` -> `wide48` (same layers, 48x144 input): every weight of the release is carried
    over, and the exported net runs at its own input size."""
    original, path = _random_export(tmp_path, "wide")
    seen = _spy_on_export(monkeypatch)
    plate_reader.train(tmp_path / "w48", epochs=1, datasets_root=tmp_path / "none", synth_n=40, quick=True,
                       init=path, arch="wide48", lr=1e-12)
    model = seen["model"]
    assert getattr(model, "arch", None) == "wide48" and getattr(model, "input_size", None) == (48, 144)
    ours, theirs = model.state_dict(), original.state_dict()  # type: ignore[attr-defined]
    # load_state_dict is strict: all layers came over; the recurrent and head weights are the originals
    for key in ("rnn.weight_ih_l0", "rnn.weight_hh_l1_reverse", "rnn.bias_hh_l1", "head.weight", "head.bias"):
        assert torch.allclose(ours[key], theirs[key], atol=1e-5), key
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 48, 144))  # type: ignore[operator]
    assert tuple(out.shape) == (1, 36, plate_reader.NUM_CLASSES)


def test_an_init_with_other_layers_is_refused(tmp_path: Path) -> None:
    _, path = _random_export(tmp_path, "base")
    with pytest.raises(ValueError, match="holds arch 'base', not 'wide48'"):
        plate_reader.train(tmp_path / "x", epochs=1, datasets_root=tmp_path / "none", synth_n=40, quick=True,
                           init=path, arch="wide48")
