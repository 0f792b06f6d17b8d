"""blip.tokenizer against transformers' BertTokenizer: identical ids, padding, masks and decoded text.

transformers facts these tests pin (5.24.0):
- ``BertTokenizer(vocab_file=...)`` silently ignores ``vocab_file`` and builds a 5-token vocabulary;
  load the oracle with ``BertTokenizer.from_pretrained(folder_with_vocab_txt)``.
- Lower-casing strips accents ("Café" -> "cafe"): ``strip_accents=None`` follows ``do_lower_case``.
- ``decode`` cleans spaces only in the WordPiece decoder (no space before . , ? !); the extra
  ``clean_up_tokenization_spaces`` pass ("don ' t" -> "don't") is off by default in transformers 5 and
  follows ``tokenizer_config.json``.
- Ids the vocabulary lacks (BLIP's [DEC] 30522, [ENC] 30523) are dropped by ``decode`` and shown as
  None by ``convert_ids_to_tokens``.
- ``truncation=True`` with ``max_length`` below 2 does not truncate at all; ours raises instead.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from transformers import BertTokenizer
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from blip.loading.tokenizer import CLS_ID, DEC_ID, ENC_ID, PAD_ID, SEP_ID, BlipTokenizer

pytestmark = pytest.mark.parity

RESOURCES = Path(__file__).resolve().parents[1] / "blip" / "resources"
VOCAB = RESOURCES / "vocab.txt"

LONG = " ".join(
    f"sentence {i}: a photograph of {i % 7} brown dogs, running across the Beach near Café Ünïcode!"
    for i in range(60)
)
TEXTS = [
    "a picture of",
    "How many DOGS are in the picture?",
    "Café naïve résumé",
    "ÀÉÎÕÜ àéîõü ß œ ø Å ç ñ",
    "日本語のテキスト 中文字符 한국어",
    "emoji 😀🐶 and 👍🏽 ❤️ together😀",
    "don't stop... it's $3.50! (a-b) \"quoted\" [brackets] {braces} @#%^&* ~`|\\/<>",
    "[SEP] in the middle [CLS] and [MASK] [PAD] [UNK] but not [sep] or [ CLS ]",
    "",
    "   ",
    "\t\n  \r ",
    "1234567890 3.14159 1,000,000 2nd 21st 007",
    "unaffable antidisestablishmentarianism supercalifragilisticexpialidocious",
    "x" * 150,  # longer than WordPiece's 100-character word limit: one [UNK]
    "control\x00chars\u200b zero\u00adwidth and\u3000ideographic space",
    "ﬁ ligature Ⅻ ① ｆｕｌｌｗｉｄｔｈ",
    "a man riding a horse on a beach at sunset, with a dog running beside him.",
    "what is the man holding?",
    LONG,
]


# ---- the oracle and our tokenizer, loaded every way ----------------------------------------------------


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("vocab_only")
    shutil.copy(VOCAB, directory / "vocab.txt")
    return directory


@pytest.fixture(scope="module")
def oracle(vocab_dir) -> BertTokenizer:
    tokenizer = BertTokenizer.from_pretrained(vocab_dir)
    assert len(tokenizer) == 30522 and tokenizer.do_lower_case
    return tokenizer


@pytest.fixture(scope="module")
def saved_dir(oracle, tmp_path_factory) -> Path:
    """What save_pretrained writes (tokenizer.json, tokenizer_config.json), as on the Hub."""
    directory = tmp_path_factory.mktemp("saved")
    oracle.save_pretrained(directory)
    assert (directory / "tokenizer.json").is_file() and not (directory / "vocab.txt").exists()
    return directory


@pytest.fixture(scope="module")
def ours(vocab_dir, saved_dir, tmp_path_factory) -> dict[str, BlipTokenizer]:
    return {
        "from_vocab": BlipTokenizer.from_vocab(VOCAB),
        "default": BlipTokenizer.default(),
        "saved_tokenizer_json": BlipTokenizer.from_checkpoint_dir(saved_dir),
        "from_file": BlipTokenizer.from_file(saved_dir / "tokenizer.json"),
        "vocab_only_dir": BlipTokenizer.from_checkpoint_dir(vocab_dir),
        "empty_dir": BlipTokenizer.from_checkpoint_dir(tmp_path_factory.mktemp("empty")),
    }


VARIANTS = ["from_vocab", "default", "saved_tokenizer_json", "from_file", "vocab_only_dir", "empty_dir"]


# ---- encoding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_reference_ids(ours, variant):
    tokenizer = ours[variant]
    assert tokenizer.encode("a picture of") == [101, 1037, 3861, 1997, 102]
    assert tokenizer.encode("How many DOGS are in the picture?") == [
        101, 2129, 2116, 6077, 2024, 1999, 1996, 3861, 1029, 102,
    ]  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS)
def test_ids_match_oracle(ours, oracle, variant):
    for text in TEXTS:
        assert ours[variant].encode(text) == oracle(text)["input_ids"], text


def test_pure_python_bert_agrees():
    """transformers' legacy pure-Python BertTokenizer: an independent second opinion on the ids."""
    legacy = BertTokenizerLegacy(vocab_file=str(VOCAB), do_lower_case=True)
    tokenizer = BlipTokenizer.default()
    for text in TEXTS:
        assert tokenizer.encode(text) == legacy(text)["input_ids"], text


def test_accents_are_stripped_and_cjk_split(ours, oracle):
    tokenizer = ours["default"]
    assert tokenizer.encode("Café naïve résumé") == tokenizer.encode("cafe naive resume")
    cjk = tokenizer.encode("日本語")
    assert len(cjk) == 5 and cjk == oracle("日本語")["input_ids"]  # one token per character
    assert tokenizer.encode("😀") == [CLS_ID, 100, SEP_ID]  # [UNK]


@pytest.mark.parametrize("max_length", [2, 3, 4, 10, 35, 128, 512, 10_000])
def test_truncation_matches(ours, oracle, max_length):
    for text in [LONG, "a picture of", "", "How many DOGS are in the picture?"]:
        expected = oracle(text, truncation=True, max_length=max_length)["input_ids"]
        for variant in ("default", "saved_tokenizer_json"):
            got = ours[variant].encode(text, max_length=max_length)
            assert got == expected, (variant, max_length, text[:30])
        assert len(got) <= max_length and got[0] == CLS_ID and got[-1] == SEP_ID


def test_no_truncation_by_default_and_no_state_between_calls(ours, oracle):
    tokenizer = ours["default"]
    full = oracle(LONG)["input_ids"]
    assert len(full) > 512
    assert tokenizer.encode(LONG, max_length=5) == [*full[:4], SEP_ID]
    assert tokenizer.encode(LONG) == full  # the previous call's limit did not stick


@pytest.mark.parametrize("max_length", [None, 6, 16])
def test_batch_padding_matches(ours, oracle, max_length):
    options = {"truncation": True, "max_length": max_length} if max_length else {}
    expected = oracle(TEXTS, padding="longest", return_tensors="pt", **options)
    for variant in ("default", "saved_tokenizer_json", "vocab_only_dir"):
        input_ids, attention_mask = ours[variant].encode_batch(TEXTS, max_length=max_length)
        assert input_ids.dtype == attention_mask.dtype == torch.int64
        assert torch.equal(input_ids, expected["input_ids"])
        assert torch.equal(attention_mask, expected["attention_mask"])
    assert (input_ids[attention_mask == 0] == PAD_ID).all()


def test_batch_of_one_is_unpadded(ours, oracle):
    input_ids, attention_mask = ours["default"].encode_batch(["a picture of"])
    assert input_ids.tolist() == [[101, 1037, 3861, 1997, 102]]
    assert attention_mask.tolist() == [[1, 1, 1, 1, 1]]


def test_settings_baked_into_tokenizer_json_are_ignored(oracle, tmp_path):
    backend = Tokenizer.from_str(oracle.backend_tokenizer.to_str())
    backend.enable_truncation(max_length=5)
    backend.enable_padding(pad_id=0, pad_token="[PAD]", length=40)
    backend.save(str(tmp_path / "tokenizer.json"))
    tokenizer = BlipTokenizer.from_checkpoint_dir(tmp_path)
    assert tokenizer.encode(LONG) == oracle(LONG)["input_ids"]
    input_ids, _ = tokenizer.encode_batch(["a", "a b c"])
    assert input_ids.shape == (2, 5)


def test_do_lower_case_from_tokenizer_config(tmp_path):
    shutil.copy(VOCAB, tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    oracle = BertTokenizer.from_pretrained(tmp_path)
    assert not oracle.do_lower_case
    tokenizer = BlipTokenizer.from_checkpoint_dir(tmp_path)
    for text in ["How many DOGS are in the picture?", "Café naïve", "a picture of"]:
        assert tokenizer.encode(text) == oracle(text)["input_ids"], text
    assert tokenizer.encode("DOGS") != BlipTokenizer.default().encode("DOGS")


def test_bad_arguments(ours):
    tokenizer = ours["default"]
    with pytest.raises(TypeError):
        tokenizer.encode(None)
    with pytest.raises(ValueError):
        tokenizer.encode("a picture", max_length=1)
    with pytest.raises(TypeError):
        tokenizer.encode_batch("a picture")
    with pytest.raises(ValueError):
        tokenizer.encode_batch([])


def test_a_tokenizer_without_bert_ids_is_refused():
    # The transformers 5 trap: vocab_file is ignored, leaving [PAD] [UNK] [CLS] [SEP] [MASK] = 0..4.
    five_tokens = BertTokenizer(vocab_file=str(VOCAB))
    assert len(five_tokens) == 5
    with pytest.raises(ValueError, match="bert-base-uncased"):
        BlipTokenizer(Tokenizer.from_str(five_tokens.backend_tokenizer.to_str()))


# ---- decoding ------------------------------------------------------------------------------------------


def _random_id_lists(count: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(0)
    lists = []
    for _ in range(count):
        ids = rng.integers(0, 30522, int(rng.integers(1, 40))).tolist()
        for special in (PAD_ID, 100, CLS_ID, SEP_ID, 103):  # sprinkle special ids in
            if rng.random() < 0.3:
                ids.insert(int(rng.integers(0, len(ids) + 1)), special)
        lists.append(ids)
    return lists


@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_decode_matches(ours, oracle, skip_special_tokens):
    id_lists = [oracle(text)["input_ids"] for text in TEXTS] + _random_id_lists()
    id_lists += [[], [DEC_ID, 1037, 3861, 1997, SEP_ID, PAD_ID], [ENC_ID, 2129, 2116, 6077, SEP_ID], [DEC_ID]]
    for variant in ("default", "saved_tokenizer_json", "vocab_only_dir"):
        for ids in id_lists:
            expected = oracle.decode(ids, skip_special_tokens=skip_special_tokens)
            assert ours[variant].decode(ids, skip_special_tokens=skip_special_tokens) == expected, ids


def test_decode_examples(ours):
    tokenizer = ours["default"]
    assert tokenizer.decode([DEC_ID, 1037, 3899, 2003, 2770, 1012, SEP_ID, PAD_ID]) == "a dog is running."
    assert tokenizer.decode(torch.tensor([CLS_ID, 2129, 2116, 6077, 1029, SEP_ID])) == "how many dogs?"
    assert tokenizer.decode(tokenizer.encode("unaffable")) == "unaffable"  # "##" pieces rejoined
    assert tokenizer.decode([CLS_ID, 1037, SEP_ID], skip_special_tokens=False) == "[CLS] a [SEP]"


def test_decode_cleanup_follows_tokenizer_config(oracle, saved_dir, tmp_path):
    shutil.copy(saved_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    config = json.loads((saved_dir / "tokenizer_config.json").read_text())
    config["clean_up_tokenization_spaces"] = True
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    cleaning_oracle = BertTokenizer.from_pretrained(tmp_path)
    cleaning = BlipTokenizer.from_checkpoint_dir(tmp_path)
    for text in [*TEXTS, "i'm sure he's right, they've gone and you're late; isn't it?"]:
        ids = oracle(text)["input_ids"]
        assert cleaning.decode(ids) == cleaning_oracle.decode(ids, skip_special_tokens=True), text
    ids = oracle("don't")["input_ids"]
    assert cleaning.decode(ids) == "don't"
    assert BlipTokenizer.default().decode(ids) == "don ' t" == oracle.decode(ids, skip_special_tokens=True)


def test_tokens_for_display(ours, oracle):
    tokenizer = ours["default"]
    ids = [CLS_ID, DEC_ID, ENC_ID, 1037, 14477, 20961, 3468, SEP_ID, PAD_ID]  # "a unaffable"
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "[CLS]", "[DEC]", "[ENC]", "a", "una", "##ffa", "##ble", "[SEP]", "[PAD]",
    ]  # fmt: skip
    assert tokenizer.convert_ids_to_tokens(torch.tensor(ids))[1] == "[DEC]"
    plain = [i for i in ids if i < 30522]
    assert tokenizer.convert_ids_to_tokens(plain) == oracle.convert_ids_to_tokens(plain)
    for bad in (30524, -1):
        with pytest.raises(ValueError):
            tokenizer.id_to_token(bad)


# ---- the shipped copy ----------------------------------------------------------------------------------


def test_shipped_files_are_bert_base_uncased_and_up_to_date(tmp_path):
    assert hashlib.md5(VOCAB.read_bytes()).hexdigest() == "64800d5d8528ce344256daf115d4965e"
    # scripts/build_tokenizer.py writes exactly this; rerun it if this fails.
    BlipTokenizer.from_vocab(VOCAB).save(tmp_path / "tokenizer.json")
    rebuilt = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert json.loads((RESOURCES / "tokenizer.json").read_text(encoding="utf-8")) == rebuilt
