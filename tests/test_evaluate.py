"""Test-then-train: every prediction comes from a model that has not trained on that frame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wirelearn.capture import FrameBatch
from wirelearn.features import FeatureBatch
from wirelearn.models._evaluate import Evaluator, LabelledBatch, prequential


def _features(frame: np.ndarray, ts_ns: np.ndarray) -> FeatureBatch:
    n = len(frame)
    neg = np.full(n, -1, dtype=np.int32)
    return FeatureBatch(
        frame=frame.astype(np.int64),
        ts_ns=ts_ns.astype(np.int64),
        linktype=np.ones(n, dtype=np.int64),
        cap_len=np.full(n, 60, dtype=np.int64),
        frame_len=np.full(n, 60, dtype=np.int64),
        dst_mac=np.full(n, 0x0000_5E00_5301, dtype=np.int64),
        src_mac=(frame % 3 + 0x0200_0000_0000).astype(np.int64),
        ethertype=np.full(n, 0x0800, dtype=np.int32),
        vlan=neg.copy(),
        payload_len=np.full(n, 46, dtype=np.int32),
        ip_version=np.full(n, 4, dtype=np.int8),
        ip_src=np.tile(np.array([10, 0, 0, 1] + [0] * 12, dtype=np.uint8), (n, 1)),
        ip_dst=np.tile(np.array([10, 0, 0, 2] + [0] * 12, dtype=np.uint8), (n, 1)),
        ip_proto=np.full(n, 17, dtype=np.int16),
        ttl=np.full(n, 64, dtype=np.int16),
        sport=np.full(n, 5353, dtype=np.int32),
        dport=np.full(n, 53, dtype=np.int32),
        tcp_flags=neg.copy(),
        status=np.zeros(n, dtype=np.uint8),
    )


class FrameIdFeaturizer:
    """Model input = the frame number, so a spy model knows which frames it sees."""

    def transform(self, fb: FeatureBatch) -> np.ndarray:
        return fb.frame.astype(np.float32).reshape(-1, 1)

    def mac_codes(self, fb: FeatureBatch) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(fb), dtype=np.int64), np.ones(len(fb), dtype=np.int64)


class SpyModel:
    """Remembers every frame it learned; fails if asked to predict one of them."""

    def __init__(self) -> None:
        self.learned: set[int] = set()
        self.predicted_before_learning = 0
        self.memory: dict[int, str] = {}

    def learn_many(self, X: np.ndarray, y: np.ndarray) -> None:
        for f, label in zip(X[:, 0].astype(int).tolist(), y.tolist(), strict=True):
            self.learned.add(f)
            self.memory[f % 10] = label

    def predict_many(self, X: np.ndarray) -> np.ndarray:
        frames = X[:, 0].astype(int).tolist()
        assert not self.learned.intersection(frames), "predicted a frame it had already learned"
        self.predicted_before_learning += len(frames)
        return np.array([self.memory.get(f % 10) for f in frames], dtype=object)


def _stream(n_batches: int, size: int) -> list[LabelledBatch]:
    out = []
    for b in range(n_batches):
        frame = np.arange(b * size + 1, (b + 1) * size + 1)
        ts = frame * 1_000_000 + 1_700_000_000 * 10**9
        fb = _features(frame, ts)
        # The label is a function of frame % 10, so a memorising model can be right only
        # if it learned earlier frames, never the frame itself.
        labels = np.array([f"c{f % 10}" if f % 7 else None for f in frame.tolist()], dtype=object)
        frames = FrameBatch.from_frames([b"\0" * 60] * size, first_frame=int(frame[0]), ts_ns=ts)
        out.append(LabelledBatch(frames=frames, features=fb, labels=labels))
    return out


def test_predictions_come_before_learning_on_every_frame() -> None:
    spy = SpyModel()
    ev = Evaluator({"spy": spy}, FrameIdFeaturizer(), target="labels")
    snaps = list(prequential(_stream(20, 256), ev))
    assert spy.predicted_before_learning == 20 * 256
    assert snaps[-1].final and snaps[-1].frames == 20 * 256
    labelled = sum(1 for f in range(1, 20 * 256 + 1) if f % 7)
    assert snaps[-1].labelled == labelled
    spy_score = snaps[-1].model("spy")
    assert spy_score is not None and spy_score.learned == labelled
    # The very first batch was predicted with nothing learned: those frames count as wrong.
    assert 0.9 < spy_score.accuracy < 1.0


def test_unlabelled_frames_are_predicted_but_never_learned_or_scored() -> None:
    spy = SpyModel()
    ev = Evaluator({"spy": spy}, FrameIdFeaturizer())
    snap = list(prequential(_stream(3, 70), ev))[-1]
    assert all(f % 7 for f in spy.learned)
    score = snap.model("spy")
    assert score is not None and score.scored == snap.labelled


def test_no_learn_only_scores() -> None:
    spy = SpyModel()
    ev = Evaluator({"spy": spy}, FrameIdFeaturizer(), learn=False)
    snap = list(prequential(_stream(3, 50), ev))[-1]
    assert not spy.learned
    score = snap.model("spy")
    assert score is not None and score.learned == 0 and score.scored == snap.labelled


def test_sampling_under_pressure_is_explicit() -> None:
    spy = SpyModel()
    ev = Evaluator({"spy": spy}, FrameIdFeaturizer(), pressure=lambda: 0.9)
    snap = list(prequential(_stream(4, 100), ev))[-1]
    assert snap.frames == 400
    assert snap.evaluated == 40  # every 10th frame
    assert snap.sampling_ratio == pytest.approx(0.1)


def test_snapshot_json_round_trip_and_bounded_history() -> None:
    spy = SpyModel()
    ev = Evaluator({"spy": spy}, FrameIdFeaturizer(), history_max=16, recent=5)
    snaps = list(prequential(_stream(100, 10), ev))
    last = snaps[-1]
    assert len(last.history) <= 16
    assert [h.frames for h in last.history] == sorted(h.frames for h in last.history)
    assert len(last.recent) == 5 and last.recent[-1].frame == 1000
    d = json.loads(json.dumps(last.to_dict(history=True, recent=True)))
    assert d["frames"] == 1000 and d["models"][0]["name"] == "spy"
    assert d["source"]["linktypes"] == ["EN10MB"]
    assert d["traffic"]["ethertypes"] == [["IPv4", 1000]]
