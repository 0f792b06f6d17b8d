"""Regenerate ``blip/resources/tokenizer.json`` from ``blip/resources/vocab.txt`` (bert-base-uncased).

    python -m scripts.build_tokenizer     # from the repository root

``tests/test_tokenizer.py`` checks that the shipped file equals what this script writes.
"""

from pathlib import Path

from blip.loading.tokenizer import BlipTokenizer

RESOURCES = Path(__file__).resolve().parents[1] / "blip" / "resources"


def main() -> None:
    tokenizer = BlipTokenizer.from_vocab(RESOURCES / "vocab.txt", lowercase=True)
    tokenizer.save(RESOURCES / "tokenizer.json")
    print(f"wrote {RESOURCES / 'tokenizer.json'}")


if __name__ == "__main__":
    main()
