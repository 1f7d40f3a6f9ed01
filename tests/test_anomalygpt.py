"""AnomalyGPT-style plugin: grid words, answers, maps, decoder training, weights, chat backend."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from baselines.anomalygpt import (
    LOGIT_SCALE,
    NO_ANSWER,
    AnomalyGPT,
    ImageDecoder,
    answer_text,
    class_question,
    depth_indices,
    prompt_ensemble,
    weight_spec,
)
from baselines.anomalygpt_synth import cutpaste_poisson, poisson_clone
from baselines.chat_backend import ChatAnswer, ChatBackend, ChatConfig, parse_location
from benchmarks.data.schema import ImageRecord
from benchmarks.plugins.contract import MethodContext, Sample
from benchmarks.plugins.location_grid import GRID, grid_location, grid_location_of_mask
from benchmarks.plugins.registry import BASELINES
from benchmarks.plugins.weights import WeightsResolver
from benchmarks.running.presets import get_preset

TINY = AnomalyGPT.meta.tiny.options["model_overrides"]  # type: ignore[union-attr]
KEY = "sk-PLANTED-4f9a1c77e2"
YES_RE = re.compile(r"Yes, there is an anomaly in the image, at the (top left|top|top right|left|center|right|"
                    r"bottom left|bottom|bottom right) of the image\.")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(make_context: Callable[..., MethodContext]) -> Callable[..., AnomalyGPT]:
    def build(variant: str = "k1", **options: Any) -> AnomalyGPT:
        return AnomalyGPT(make_context(variant, model_overrides=TINY, **options))

    return build


# --- grid locations and answers -------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(27, 36), (64, 64)])
def test_grid_location_covers_all_nine_cells(shape: tuple[int, int]) -> None:
    height, width = shape
    for row in range(3):
        for col in range(3):
            y, x = (2 * row + 1) * height // 6, (2 * col + 1) * width // 6
            peak = np.zeros(shape)
            peak[y, x] = 1.0
            assert grid_location(peak) == GRID[row][col]
            mask = np.zeros(shape, dtype=bool)
            mask[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = True
            assert grid_location_of_mask(mask) == GRID[row][col]
    corner = np.zeros(shape)
    corner[-1, -1] = 5.0
    assert grid_location(corner) == "bottom right"
    with pytest.raises(ValueError, match="empty"):
        grid_location_of_mask(np.zeros(shape, dtype=bool))


def test_answers_have_anomalygpt_wording() -> None:
    assert answer_text(False, "top") == "No, there is no anomaly in the image."
    assert answer_text(True, "bottom left") == "Yes, there is an anomaly in the image, at the bottom left of the image."
    question = class_question("smartphone screen", "front view of a phone")
    assert question.startswith("This is a photo of a smartphone screen (front view of a phone)")
    assert question.endswith("which should be without any damage, flaw, defect, scratch, crack or broken part. "
                             "Is there any anomaly in the image?")
    assert class_question("object").startswith("This is a photo of an object for")
    normal, abnormal = prompt_ensemble("phone")
    assert len(normal) == 14 and len(abnormal) == 10
    assert "a photo of a flawless phone." in normal and "a photo of the phone with damage." in abnormal
    assert depth_indices(12) == [2, 5, 8, 11] and depth_indices(32) == [7, 15, 23, 31]


# --- synthetic anomalies --------------------------------------------------------------------------

def test_poisson_clone_and_cutpaste() -> None:
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 255, (20, 30, 3))
    support = np.zeros((20, 30), dtype=bool)
    support[3:15, 4:25] = True
    # Cloning a patch onto itself reproduces it; a flat source takes on the boundary's harmonic fill.
    np.testing.assert_allclose(poisson_clone(target, target, support), target, atol=1e-8)
    flat = poisson_clone(np.full((10, 10, 3), 80.0), np.full((10, 10, 3), 200.0), np.pad(np.ones((8, 8), bool), 1))
    np.testing.assert_allclose(flat, 80.0, atol=1e-8)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    for _ in range(5):
        out, mask = cutpaste_poisson(image, rng)
        assert out.shape == image.shape and out.dtype == np.uint8 and mask.shape == (64, 80)
        assert 0.0 <= mask.min() and mask.max() == 1.0 and 0 < (mask > 0).mean() < 0.5
        assert np.array_equal(out[mask == 0], image[mask == 0])
        assert not np.array_equal(out, image)


# --- the plugin -----------------------------------------------------------------------------------

def test_registered_with_variants() -> None:
    assert BASELINES.get("anomalygpt") is AnomalyGPT
    assert set(AnomalyGPT.meta.variants) == {"k1", "k4", "unsupervised"}
    assert AnomalyGPT.meta.variants["k4"].shots == 4


def test_text_prototypes_shape(tiny: Callable[..., AnomalyGPT]) -> None:
    plugin = tiny("k1")
    assert plugin.prototypes.shape == (2, 32)
    np.testing.assert_allclose(plugin.prototypes.norm(dim=1).numpy(), 1.0, atol=1e-5)
    assert not torch.allclose(plugin.prototypes[0], plugin.prototypes[1])
    assert plugin.depths == [0, 1, 2, 3] and plugin.weights.mode == "random"


def test_fewshot_map_is_zero_on_the_memory_image(tiny: Callable[..., AnomalyGPT],
                                                 toy_task: dict[str, list[Sample]]) -> None:
    plugin = tiny("k1")
    rng = np.random.default_rng(1)
    shot = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)  # non-square: goes through the resize
    other = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    plugin.fit([_sample(shot)] + toy_task["train"][:3])  # k1 keeps only the first shot
    assert [bank.shape for bank in plugin.memory or []] == [(64, 32)] * 4
    prediction = plugin.predict([shot, other])
    prediction.check(2)
    assert prediction.maps is not None and prediction.maps.shape == (2, 64, 64)
    assert np.abs(prediction.maps[0]).max() < 1e-5
    assert prediction.scores[1] > 0.01
    assert plugin.threshold_source == "synthetic"


def test_decoder_map_is_the_two_way_softmax_of_upsampled_logits() -> None:
    """The decoder upsamples only the logit margin; the map must equal the paper's formulation."""
    torch.manual_seed(0)
    decoder = ImageDecoder(width=24, embed_dim=16, n_depths=4)
    tokens = [torch.randn(3, 5 * 7, 24) for _ in range(4)]
    prototypes = torch.nn.functional.normalize(torch.randn(2, 16), dim=-1)
    maps = decoder(tokens, prototypes, (5, 7), (20, 28))
    expected = []
    for head, depth_tokens in zip(decoder.heads, tokens, strict=True):
        projected = torch.nn.functional.normalize(head(depth_tokens), dim=-1)
        logits = (LOGIT_SCALE * projected @ prototypes.T).transpose(1, 2).reshape(3, 2, 5, 7)
        logits = torch.nn.functional.interpolate(logits, size=(20, 28), mode="bilinear", align_corners=True)
        expected.append(logits.softmax(dim=1)[:, 1])
    assert maps.shape == (4, 3, 20, 28)
    torch.testing.assert_close(maps, torch.stack(expected), rtol=1e-4, atol=1e-5)


def test_decoder_training_lowers_focal_dice_loss(tiny: Callable[..., AnomalyGPT],
                                                 toy_task: dict[str, list[Sample]]) -> None:
    plugin = tiny("unsupervised", epochs=8, anomalous_images=12, normal_images=4)
    before = [p.detach().clone() for p in plugin.decoder.parameters()]
    plugin.fit(toy_task["train"], toy_task["val"])
    losses = plugin.train_losses
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses
    assert any(not torch.equal(a, b) for a, b in zip(before, plugin.decoder.parameters(), strict=True))
    assert plugin.threshold_source == "val"
    test = toy_task["test"]
    prediction = plugin.predict([s.image for s in test])
    prediction.check(len(test))
    assert prediction.texts is not None and prediction.maps is not None
    for text, decision, score, location, stated, source, anomaly_map in zip(
        prediction.texts, prediction.decisions, prediction.scores, prediction.locations,
        prediction.extra["answer_location"], prediction.extra["answer_source"], prediction.maps, strict=True,
    ):
        assert source == "template" and location == grid_location(anomaly_map)
        assert decision == int(score >= plugin.threshold)
        assert text == (answer_text(True, location) if decision else NO_ANSWER)
        assert (YES_RE.fullmatch(text) is not None) == bool(decision)
        assert stated == (location if decision else None)
    again = tiny("unsupervised", epochs=8, anomalous_images=12, normal_images=4)
    again.fit(toy_task["train"], toy_task["val"])
    assert again.train_losses == losses  # seeded


def test_pretrained_path_loads_resolved_file(make_context: Callable[..., MethodContext], tmp_path: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(123)
    source = open_clip.create_model("ViT-B-16", pretrained=None, **TINY)
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    key = weight_spec("ViT-B-16", "laion2b_s34b_b88k", TINY).key
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights_dir / f"{key}.safetensors"))
    context = make_context("k1", model_overrides=TINY)
    context = MethodContext(**{**context.__dict__, "weights": WeightsResolver(mode="pretrained", weights_dir=weights_dir)})
    plugin = AnomalyGPT(context)
    assert plugin.weights.mode == "pretrained" and plugin.weights.path == weights_dir / f"{key}.safetensors"
    assert torch.equal(plugin.visual.conv1.weight, source.visual.conv1.weight)
    assert weight_spec().hf_repo == "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"


def test_bad_options_are_refused(tiny: Callable[..., AnomalyGPT]) -> None:
    with pytest.raises(ValueError, match="unknown options"):
        tiny("k1", epoch=3)
    with pytest.raises(ValueError, match="fewshot_map"):
        tiny("k1", fewshot_map="max")
    with pytest.raises(RuntimeError, match="fit"):
        tiny("k1").predict([np.zeros((8, 8, 3), np.uint8)])


# --- chat backend ---------------------------------------------------------------------------------

class _Canned(BaseHTTPRequestHandler):
    """Answers each POST with the next canned (status, body, headers); the last one repeats."""

    responses: list[tuple[int, str, dict[str, str]]] = []
    seen: list[dict[str, Any]] = []
    delay_s: float = 0.0

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        status, text, headers = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        payload = text.encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def chat_server() -> Iterator[tuple[str, type[_Canned]]]:
    handler = type("Handler", (_Canned,), {"responses": [], "seen": [], "delay_s": 0.0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()
    server.server_close()


def _completion(content: str) -> tuple[int, str, dict[str, str]]:
    return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}), {}


def _backend(url: str, **overrides: Any) -> tuple[ChatBackend, list[float]]:
    sleeps: list[float] = []
    config = ChatConfig(**{"base_url": url, "model": "tiny-vlm", "api_key": KEY, "timeout_s": 2.0,
                           "max_retries": 2, "backoff_s": 0.01, **overrides})
    return ChatBackend(config, sleep=sleeps.append), sleeps


def test_chat_retries_429_then_parses_answer(chat_server: tuple[str, type[_Canned]]) -> None:
    url, handler = chat_server
    handler.responses = [(429, "{}", {"Retry-After": "0"}),
                         _completion("Yes, there is an anomaly in the image, at the top left of the image.")]
    backend, sleeps = _backend(url)
    answer = backend.ask(np.full((40, 60, 3), 128, np.uint8), "Is there any anomaly in the image?")
    assert answer == ChatAnswer("Yes, there is an anomaly in the image, at the top left of the image.", True,
                                "top left", None)
    assert len(handler.seen) == 2 and sleeps == [0.0]
    request = handler.seen[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    parts = request["json"]["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "Is there any anomaly in the image?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert request["json"]["model"] == "tiny-vlm"
    assert KEY not in repr(backend.config)


def test_chat_failures_never_raise_or_leak_the_key(chat_server: tuple[str, type[_Canned]],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    url, handler = chat_server
    image = np.zeros((8, 8, 3), np.uint8)
    caplog.set_level(logging.DEBUG)
    handler.responses = [_completion(f"Hmm, maybe. Your key is {KEY}.")]
    backend, sleeps = _backend(url)
    garbage = backend.ask(image, "q")
    assert not garbage.ok and garbage.error is not None and "unparsable" in garbage.error
    assert garbage.text == "Hmm, maybe. Your key is ***."
    handler.responses = [(503, "{}", {})]
    handler.seen.clear()
    overloaded = backend.ask(image, "q")
    assert not overloaded.ok and "3 attempts" in str(overloaded.error) and len(handler.seen) == 3
    assert sleeps == [0.01, 0.02]
    handler.responses = [(401, json.dumps({"error": f"bad key {KEY}"}), {})]
    assert "HTTP 401" in str(backend.ask(image, "q").error)
    handler.responses = [(200, "<html>not json</html>", {})]
    assert "JSON" in str(backend.ask(image, "q").error)
    handler.delay_s = 1.0
    slow, _ = _backend(url, timeout_s=0.2, max_retries=0)
    assert "network error" in str(slow.ask(image, "q").error)
    handler.delay_s = 0.0
    closed, _ = _backend("http://127.0.0.1:9/v1", max_retries=0)  # discard port: connection refused
    assert not closed.ask(image, "q").ok
    assert KEY not in caplog.text
    assert parse_location("Yes, at the Bottom-Right corner.") == "bottom right"
    assert parse_location("Yes, in the centre.") == "center"


def test_plugin_uses_chat_backend_from_environment(
    tiny: Callable[..., AnomalyGPT], toy_task: dict[str, list[Sample]], chat_server: tuple[str, type[_Canned]],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    url, handler = chat_server
    monkeypatch.setenv("BENCHMARKS_CHAT_BASE_URL", url)
    monkeypatch.setenv("BENCHMARKS_CHAT_MODEL", "tiny-vlm")
    monkeypatch.setenv("BENCHMARKS_CHAT_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    handler.responses = [
        (429, "{}", {"Retry-After": "0"}),
        _completion("Yes, there is an anomaly in the image, at the bottom of the image."),
        _completion(f"garbage {KEY}"),
        _completion("No, there is no anomaly in the image."),
    ]
    plugin = tiny("k1")
    plugin.fit(toy_task["train"][:1])
    assert len(handler.seen) == 0  # calibration never asks the chat model
    images = [s.image for s in toy_task["test"][:3]]
    prediction = plugin.predict(images)
    prediction.check(3)
    assert prediction.extra["answer_source"] == ["chat", "chat-failed", "chat"]
    assert prediction.decisions == [True, None, False]
    assert prediction.extra["answer_location"] == ["bottom", None, None]
    errors = prediction.extra["chat_error"]  # only with a chat backend: why an answer was not used
    assert errors[0] is None and errors[2] is None and errors[1]
    assert prediction.texts is not None
    assert prediction.texts[0] == "Yes, there is an anomaly in the image, at the bottom of the image."
    assert prediction.texts[2] == NO_ANSWER
    assert prediction.texts[1] in (NO_ANSWER, answer_text(True, prediction.locations[1]))
    question = handler.seen[1]["json"]["messages"][0]["content"][0]["text"]
    assert question.startswith("This is a photo of a toy texture for anomaly detection")
    assert "Is there any anomaly in the image?" in question and "anomaly score" in question
    dumped = json.dumps({"texts": prediction.texts, "extra": prediction.extra}, default=str)
    assert KEY not in dumped and KEY not in caplog.text and KEY not in repr(plugin.chat)
    monkeypatch.delenv("BENCHMARKS_CHAT_BASE_URL")
    with pytest.raises(ValueError, match="BENCHMARKS_CHAT_BASE_URL"):
        tiny("k1", chat="on")
    assert tiny("k1").chat is None


def _sample(image: np.ndarray) -> Sample:
    record = ImageRecord(row=1, image_id="shot.png", image=Path("/toy/shot.png"), label=0, split="train",
                         source="real", group="toy", defect="none", hard_negative=False)
    return Sample(record=record, image=image)


def test_smoke_preset_schedule_is_small(tiny: Callable[..., AnomalyGPT]) -> None:
    assert get_preset("smoke").name == "smoke"
    schedule = tiny("unsupervised").schedule
    assert schedule.epochs <= 5 and schedule.anomalous_images <= 8
