"""The tool catalogue: the default one loads and is well-formed; every bad file is one
InputError line naming the file and the tool; the digest is of the content."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from taskdecomp.catalogue import (
    DEFAULT_CATALOGUE_PATH,
    TYPES,
    Catalogue,
    Tool,
    default_catalogue,
    load_catalogue,
    parse_catalogue,
)
from taskdecomp.errors import InputError
from taskdecomp.schema import MODALITIES, OPERATIONS

ROOT = Path(__file__).resolve().parents[1]

GOOD_TOOL = "{id: ocr, description: Read the text in a picture, inputs: [image], outputs: [text], modality: image, operation: analysis}"


def test_the_default_catalogue_loads_and_is_well_formed():
    cat = default_catalogue()
    assert cat.name == "multimedia" and len(cat.tools) >= 30
    assert len(set(cat.ids)) == len(cat.ids)
    for t in cat.tools:
        assert t.inputs and t.outputs and set(t.inputs) | set(t.outputs) <= set(TYPES)
        assert t.modality in MODALITIES and t.operation in OPERATIONS
        assert t.description and "\n" not in t.description
    # the kinds the issue lists are all there
    for tid in ("image-captioning", "text-recognition", "speech-recognition", "text-to-speech", "translation",
                "summarization", "question-answering", "image-generation", "image-editing", "image-segmentation",
                "object-detection", "style-transfer", "video-generation", "video-summarization", "video-captioning",
                "video-trimming", "audio-separation", "audio-enhancement", "music-generation"):  # fmt: skip
        assert tid in cat, tid
    assert load_catalogue(DEFAULT_CATALOGUE_PATH) == cat


def test_the_default_catalogue_ships_as_package_data():
    assert DEFAULT_CATALOGUE_PATH.is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+; the project runs on 3.10)
    assert re.search(r'^"taskdecomp" = \[[^\]]*"catalogues/\*\.yaml"', pyproject, re.MULTILINE)
    core = pyproject.split('name = "The core imports no stage"', 1)[1].split("forbidden_modules", 1)[0]
    assert '"taskdecomp.catalogue"' in core


def test_get_feeds_and_digest():
    cat = default_catalogue()
    assert cat.get("speech-recognition").outputs == ("text",)
    assert cat.feeds("speech-recognition", "summarization")  # text -> text
    assert not cat.feeds("image-generation", "summarization")  # image -> text: no
    with pytest.raises(InputError) as exc:
        cat.get("teleportation")
    assert "teleportation" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(InputError):
        cat.feeds("teleportation", "summarization")
    # the digest is of the content: the same tools give the same digest, a change another
    again = parse_catalogue(yaml.safe_dump(cat.to_dict()))
    assert again == cat and again.digest == cat.digest and len(cat.digest) == 64
    first = cat.tools[0]
    changed = Catalogue(cat.name, (Tool(first.id, first.description + " now", first.inputs, first.outputs,
                                        first.modality, first.operation, first.args), *cat.tools[1:]))  # fmt: skip
    assert changed.digest != cat.digest


def _catalogue(tools: str, head: str = "name: x\nversion: 1\n") -> str:
    return head + "tools:\n" + "".join(f"  - {t}\n" for t in tools.split("\n"))


BAD = [
    ("duplicate", _catalogue(GOOD_TOOL + "\n" + GOOD_TOOL), "tool 'ocr' is listed twice"),
    ("unknown type", _catalogue(GOOD_TOOL.replace("outputs: [text]", "outputs: [smell]")), "unknown type 'smell'"),
    ("no output", _catalogue(GOOD_TOOL.replace("outputs: [text]", "outputs: []")), "tool 'ocr' has no output"),
    ("no input", _catalogue(GOOD_TOOL.replace("inputs: [image], ", "")), "tool 'ocr' has no input"),
    ("missing field", _catalogue(GOOD_TOOL.replace("description: Read the text in a picture, ", "")),
     "tool 'ocr' has no 'description'"),
    ("bad id", _catalogue(GOOD_TOOL.replace("id: ocr", "id: Read_Text")), "bad id"),
    ("bad modality", _catalogue(GOOD_TOOL.replace("modality: image", "modality: smell")), "unknown modality"),
    ("bad operation", _catalogue(GOOD_TOOL.replace("operation: analysis", "operation: magic")), "unknown operation"),
    ("unknown key", _catalogue(GOOD_TOOL.replace("}", ", cost: 3}")), "unknown key 'cost'"),
    ("bad args", _catalogue(GOOD_TOOL.replace("}", ", args: [1, 2]}")), "args must be a list"),
    ("no tools", "name: x\nversion: 1\ntools: []\n", "missing field 'tools'"),
    ("no name", _catalogue(GOOD_TOOL, head="version: 1\n"), "missing field 'name'"),
    ("version", _catalogue(GOOD_TOOL, head="name: x\nversion: 2\n"), "version 2 is not supported"),
    ("not yaml", "name: x\ntools: [\n", "is not valid YAML at line"),
    ("not a mapping", "- just\n- a list\n", "expected a mapping"),
    ("tool not a mapping", "name: x\ntools:\n  - ocr\n", "tool #1 is not a mapping"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "needle"), BAD, ids=[b[0] for b in BAD])
def test_bad_catalogue_is_one_line(tmp_path, case, text, needle):
    path = tmp_path / "cat.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        load_catalogue(path)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg, msg
    assert msg.startswith(f"CATALOGUE {path}") and msg.endswith("fix the file"), msg


def test_unreadable_catalogue_files(tmp_path):
    binary = tmp_path / "cat.yaml"
    binary.write_bytes(b"\xff\xfe\x00binary")
    for path, needle in ((tmp_path / "missing.yaml", "no such file"), (tmp_path, "is a directory"),
                         (binary, "not a text file")):  # fmt: skip
        with pytest.raises(InputError) as exc:
            load_catalogue(path)
        msg = str(exc.value)
        assert needle in msg and "CATALOGUE" in msg and "\n" not in msg, msg


def test_a_good_small_catalogue(tmp_path):
    path = tmp_path / "cat.yaml"
    path.write_text(
        _catalogue(GOOD_TOOL + "\n" + GOOD_TOOL.replace("ocr", "ocr-2").replace("}", ", args: [image]}"))
    )
    cat = load_catalogue(path)
    assert cat.ids == ("ocr", "ocr-2") and cat.get("ocr").args == () and cat.get("ocr-2").args == ("image",)
    assert not cat.feeds("ocr", "ocr-2")  # text does not feed an image input
