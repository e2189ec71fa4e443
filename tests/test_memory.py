"""Bounded memory: what a mini-batch holds, chunked features and predictions, lean imports.

``benchmarks/bench_memory.py`` measures the peak over 10M frames; these tests pin the
mechanisms that keep it there, each against the unchunked or unhidden behaviour.
"""

from __future__ import annotations

import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

import wirelearn
from wirelearn.capture import FrameBatch, PcapWriter
from wirelearn.features import _pipeline as pipeline_module
from wirelearn.features import decode
from wirelearn.features._pipeline import FeaturePipeline
from wirelearn.models import _base as base_module
from wirelearn.models import _evaluate as evaluate_module
from wirelearn.models._registry import make_model
from wirelearn.pipeline import MiniBatcher

ROOT = Path(__file__).resolve().parents[1]


def _scenario_frames(frames: int) -> FrameBatch:
    scenarios = pytest.importorskip("wirelearn.scenarios")
    parts = [b for b, _ in scenarios.generate("portscan", frames=frames, seed=1, batch_size=8192)]
    return FrameBatch.concat(parts).compact()


def test_features_in_chunks_equal_the_whole_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    fb = decode(_scenario_frames(30_000))
    whole = FeaturePipeline()
    monkeypatch.setattr(pipeline_module, "CHUNK_ROWS", 1 << 30)
    expected = [whole.transform(fb.slice(0, 12_000)), whole.transform(fb.slice(12_000, 30_000))]
    monkeypatch.setattr(pipeline_module, "CHUNK_ROWS", 4096)
    chunked = FeaturePipeline()
    # The first batch crosses scale_frames (10,000): moments from exactly those frames.
    got = [chunked.transform(fb.slice(0, 12_000)), chunked.transform(fb.slice(12_000, 30_000))]
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == np.float32 and g.flags.f_contiguous
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(chunked.scaler.mean_, whole.scaler.mean_)
    # Once the moments are fixed the work buffer is gone.
    assert chunked._work.size == 0


def test_predictions_in_chunks_equal_the_whole_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    X = np.asfortranarray(rng.normal(size=(5000, 6)).astype(np.float32))
    y = np.where(X[:, 0] + X[:, 1] > 0, "a", np.where(X[:, 2] > 1, "b", "c")).astype(object)
    for name in ("sgd", "svm", "nb", "rf", "logistic"):
        model = make_model(name, seed=0)
        model.learn_many(X, y)
        whole = model.predict_codes_many(X)
        monkeypatch.setattr(base_module, "PREDICT_ROWS", 700)
        chunked = model.predict_codes_many(X)
        monkeypatch.setattr(base_module, "PREDICT_ROWS", 16384)
        assert chunked[1] == whole[1], name
        np.testing.assert_array_equal(chunked[0], whole[0], err_msg=name)


def test_minibatcher_joins_any_rows_with_the_given_join() -> None:
    fb = decode(_scenario_frames(1000))
    parts = [fb.slice(i, i + 300) for i in range(0, 1000, 300)]
    joined: list[int] = []

    def join(pieces: list[object]) -> object:
        joined.append(len(pieces))
        return type(fb).concat(pieces)  # type: ignore[arg-type]

    out = list(MiniBatcher(parts, 400, join=join))  # type: ignore[arg-type]
    assert [len(b) for b in out] == [400, 400, 200]
    assert joined == [2, 2, 2]
    np.testing.assert_array_equal(np.concatenate([b.frame for b in out]), fb.frame)


def test_a_mini_batch_holds_no_frame_bytes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``replay``: during a learning step at most one read batch's bytes are alive."""
    from wirelearn import cli
    from wirelearn.capture import _decoder
    from wirelearn.capture import _reader as reader_module

    frames = _scenario_frames(40_000)
    path = tmp_path / "scan.pcap"
    with path.open("wb") as f:
        PcapWriter(f).write(frames)
    # Read batches of about 256 KiB (~5,000 frames), joined into 20,000-frame mini-batches.
    monkeypatch.setattr(reader_module, "_HOLD_BYTES", 256 << 10)
    alive: dict[int, int] = {}
    built = [0]
    decoder_cls = next(
        c for c in vars(_decoder).values() if isinstance(c, type) and hasattr(c, "_build")
    )
    real_build = decoder_cls._build

    def build(self: object) -> FrameBatch:
        batch: FrameBatch = real_build(self)
        owner = batch.data if batch.data.base is None else batch.data.base
        built[0] += 1
        alive[built[0]] = len(batch)
        weakref.finalize(owner, alive.pop, built[0])
        return batch

    counts: list[int] = []
    sizes: list[int] = []
    real_step = evaluate_module.Evaluator.step

    def step(self: evaluate_module.Evaluator, lb: evaluate_module.LabelledBatch) -> object:
        assert lb.frames is None
        counts.append(len(alive))
        sizes.append(len(lb.features))
        return real_step(self, lb)

    monkeypatch.setattr(decoder_cls, "_build", build)
    monkeypatch.setattr(evaluate_module.Evaluator, "step", step)
    code = cli.main(["replay", "--no-ui", str(path), "--models", "sgd", "--batch-size", "20000"])
    assert code == 0
    assert built[0] >= 6  # several read batches per mini-batch
    assert sizes == [20_000, 20_000]
    # The read batch being passed on, at most; without decoding before mini-batching the
    # 4 reads of a mini-batch (and its joined copy) would all be alive.
    assert max(counts) <= 1, counts
    assert not alive


def test_the_package_loads_its_re_exports_on_first_use() -> None:
    code = (
        "import sys, wirelearn.cli\n"
        "assert 'pandas' not in sys.modules and 'numpy' not in sys.modules\n"
        "import wirelearn\n"
        "assert wirelearn.FrameBatch.__name__ == 'FrameBatch'\n"
        "assert 'numpy' in sys.modules\n"
        "assert set(wirelearn.__all__) <= set(dir(wirelearn))\n"
        "try:\n"
        "    wirelearn.nope\n"
        "except AttributeError as e:\n"
        "    assert 'nope' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
    assert wirelearn.open_capture is not None


@pytest.mark.parametrize(
    ("argv", "pyarrow_loaded"),
    [
        (["replay", "--no-ui", str(FIXTURES / "dhcp-arp-icmp.pcap")], False),
        (["read", "-c", "3", str(FIXTURES / "dhcp-arp-icmp.pcap")], False),
    ],
)
def test_streaming_commands_load_pandas_without_pyarrow(
    argv: list[str], pyarrow_loaded: bool
) -> None:
    pytest.importorskip("pyarrow")
    code = (
        "import sys\n"
        "from wirelearn import cli\n"
        f"code = cli.main({argv!r})\n"
        "assert code == 0, code\n"
        f"assert ('pyarrow' in sys.modules) is {pyarrow_loaded}, sorted(sys.modules)[:5]\n"
        "import pandas, pyarrow\n"  # unhidden afterwards for anyone who imports it directly
        "assert pyarrow.__version__\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300, capture_output=True
    )
