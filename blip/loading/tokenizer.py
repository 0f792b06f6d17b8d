"""BLIP's tokenizer (Li et al., 2022, arXiv 2201.12086): BERT's uncased WordPiece plus two ids of BLIP's own.

The text side of BLIP is BERT, so its tokenizer is bert-base-uncased (30,522 entries). The embedding
table has two more rows that no tokenizer file names:

    [DEC] = 30522  the text decoder's first token (captioning, VQA answers)
    [ENC] = 30523  replaces [CLS] when the text encoder attends to an image (ITM, VQA)

Encoding is ``[CLS] wordpieces [SEP]``. Text is lower-cased and, as in BERT-uncased, accents are
stripped ("Café" -> "cafe"); CJK characters become one token each. This class wraps a
``tokenizers.Tokenizer`` and gives the same ids and strings as transformers' ``BertTokenizer``.

The wrapped tokenizer is never modified after construction (truncation and padding are done here, per
call), so one instance can serve concurrent requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

# Special ids of the bert-base-uncased vocabulary.
PAD_ID = 0
UNK_ID = 100
CLS_ID = 101
SEP_ID = 102  # also ends generation
MASK_ID = 103
BERT_VOCAB_SIZE = 30522
# BLIP's own rows of the embedding table, beyond the tokenizer's vocabulary.
DEC_ID = 30522
ENC_ID = 30523

_SPECIAL_TOKENS = {"[PAD]": PAD_ID, "[UNK]": UNK_ID, "[CLS]": CLS_ID, "[SEP]": SEP_ID, "[MASK]": MASK_ID}
_BLIP_TOKENS = {DEC_ID: "[DEC]", ENC_ID: "[ENC]"}
_RESOURCES = Path(__file__).resolve().parents[1] / "resources"

# transformers' optional extra clean-up after decoding (``clean_up_tokenization_spaces=True``).
_CLEANUP = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip


class BlipTokenizer:
    """Text to token ids and back, for BLIP.

    Args:
        tokenizer: a BERT WordPiece ``tokenizers.Tokenizer`` with the bert-base-uncased special ids.
        clean_up_tokenization_spaces: also apply transformers' extra clean-up when decoding
            ("don ' t" -> "don't"); off by default, as in transformers 5.
    """

    def __init__(self, tokenizer: Tokenizer, clean_up_tokenization_spaces: bool = False):
        for token, expected in _SPECIAL_TOKENS.items():
            if tokenizer.token_to_id(token) != expected:
                raise ValueError(
                    f"not a bert-base-uncased tokenizer: {token} has id {tokenizer.token_to_id(token)}, "
                    f"BLIP needs {expected}"
                )
        # Settings baked into a tokenizer.json would apply to every call; we pass them per call instead.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self._size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces

    # ---- constructors ---------------------------------------------------------------------------

    @classmethod
    def from_file(
        cls, tokenizer_json_path: str | Path, clean_up_tokenization_spaces: bool = False
    ) -> BlipTokenizer:
        """Load a Hub-style ``tokenizer.json``.

        Args:
            tokenizer_json_path: path of the ``tokenizer.json`` file.
            clean_up_tokenization_spaces: see the class docstring.
        """
        return cls(Tokenizer.from_file(str(tokenizer_json_path)), clean_up_tokenization_spaces)

    @classmethod
    def from_vocab(
        cls, vocab_txt_path: str | Path, lowercase: bool = True, clean_up_tokenization_spaces: bool = False
    ) -> BlipTokenizer:
        """Build BERT's WordPiece tokenizer from a ``vocab.txt`` (one token per line, the id is the line).

        Args:
            vocab_txt_path: path of the vocabulary file.
            lowercase: lower-case (and strip accents), as bert-base-uncased does.
            clean_up_tokenization_spaces: see the class docstring.
        """
        tokenizer = Tokenizer(WordPiece.from_file(str(vocab_txt_path), unk_token="[UNK]"))
        # Cleans control characters, spaces out CJK characters, lower-cases; strip_accents=None means
        # "strip when lower-casing", BERT's own rule.
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # split on spaces and punctuation
        # Special tokens written literally in the text ("[SEP]") are matched before normalising.
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _SPECIAL_TOKENS])
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)]
        )
        # Joins "##" pieces to the previous token, drops the space before . , ? !
        tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        return cls(tokenizer, clean_up_tokenization_spaces)

    @classmethod
    def from_checkpoint_dir(cls, directory: str | Path) -> BlipTokenizer:
        """The tokenizer of a checkpoint folder: its ``tokenizer.json``, else its ``vocab.txt``, else ours.

        ``tokenizer_config.json``, when present, supplies ``do_lower_case`` (for ``vocab.txt``) and
        ``clean_up_tokenization_spaces``.

        Args:
            directory: a downloaded Hub repository or a folder written by ``save_pretrained``.
        """
        directory = Path(directory)
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        cleanup = bool(config.get("clean_up_tokenization_spaces", False))
        if (directory / "tokenizer.json").is_file():
            return cls.from_file(directory / "tokenizer.json", cleanup)
        if (directory / "vocab.txt").is_file():
            return cls.from_vocab(directory / "vocab.txt", bool(config.get("do_lower_case", True)), cleanup)
        return cls.from_file(_RESOURCES / "tokenizer.json", cleanup)

    @classmethod
    def default(cls) -> BlipTokenizer:
        """The bert-base-uncased tokenizer shipped with this package (``blip/resources``)."""
        return cls.from_file(_RESOURCES / "tokenizer.json")

    def save(self, path: str | Path) -> None:
        """Write the wrapped tokenizer as a ``tokenizer.json``.

        Args:
            path: destination file.
        """
        self._tokenizer.save(str(path), pretty=True)

    # ---- text -> ids ----------------------------------------------------------------------------

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Token ids of ``text``: ``[CLS] ... [SEP]``.

        Args:
            text: any string (empty is fine: ``[CLS] [SEP]``).
            max_length: keep at most this many ids, counting [CLS] and [SEP]; the final [SEP] is kept
                (transformers' ``truncation=True, max_length=N``). None: no limit.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = self._tokenizer.encode(text).ids
        if max_length is not None:
            if max_length < 2:
                raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
            if len(ids) > max_length:
                ids = ids[: max_length - 1] + ids[-1:]  # cut the word pieces, keep the closing [SEP]
        return ids

    def encode_batch(
        self, texts: Sequence[str], max_length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode several texts, right-padded with [PAD] to the longest (transformers' ``padding="longest"``).

        Args:
            texts: the strings to encode (a list, not a single string).
            max_length: per-text limit, as in ``encode``.

        Returns:
            ``input_ids`` and ``attention_mask`` (1 for tokens, 0 for padding), both int64 of shape (B, T).
        """
        if isinstance(texts, str):
            raise TypeError("encode_batch() takes a list of strings; use encode() for one string")
        encoded = [self.encode(text, max_length) for text in texts]
        if not encoded:
            raise ValueError("encode_batch() needs at least one text")
        longest = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), longest), PAD_ID, dtype=torch.int64)
        attention_mask = torch.zeros((len(encoded), longest), dtype=torch.int64)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask

    # ---- ids -> text ----------------------------------------------------------------------------

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """The text of ``ids``, with word pieces joined (transformers' ``decode``).

        Ids the vocabulary does not hold, BLIP's [DEC] and [ENC] among them, are left out (as
        transformers does), whatever ``skip_special_tokens`` says.

        Args:
            ids: a sequence of ids or a 1-D tensor.
            skip_special_tokens: leave out [CLS], [SEP], [PAD], [UNK], [MASK].
        """
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else [int(i) for i in ids]
        text = self._tokenizer.decode([i for i in ids if 0 <= i < self._size], skip_special_tokens)
        if self.clean_up_tokenization_spaces:
            for before, after in _CLEANUP:
                text = text.replace(before, after)
        return text

    def id_to_token(self, token_id: int) -> str:
        """The vocabulary entry for one id ("##ing" for a word piece, "[DEC]" / "[ENC]" for BLIP's own).

        Args:
            token_id: an id below 30524.
        """
        token_id = int(token_id)
        token = self._tokenizer.id_to_token(token_id) if token_id >= 0 else None
        token = _BLIP_TOKENS.get(token_id) if token is None else token
        if token is None:
            raise ValueError(f"token id {token_id} is outside BLIP's vocabulary")
        return token

    def convert_ids_to_tokens(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        """``id_to_token`` for each id, for display.

        Args:
            ids: a sequence of ids or a 1-D tensor.
        """
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return [self.id_to_token(i) for i in ids]
