"""Tokenisation and vocabularies shared by every text view."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

import torch

PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def read_utf8(path, what: str) -> str:
    """The text of a UTF-8 file; FileNotFoundError ("<what> not found: <path>") or
    ValueError naming the file when it is missing or not UTF-8."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not valid UTF-8 ({e})") from e


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; punctuation other than letters/digits becomes its own token,
    except ``?``, ``.``, ``,`` and ``!`` which are dropped."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in {"?", ".", ",", "!"}]


class Vocab:
    """Token ↔ id map with ``<pad>`` = 0 and ``<unk>`` = 1."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.itos = [PAD, UNK] + [t for t in tokens if t not in (PAD, UNK)]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "Vocab":
        counts = Counter(tok for text in texts for tok in tokenize(text))
        return cls(sorted(t for t, c in counts.items() if c >= min_count))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(t, 1) for t in tokenize(text)]

    def encode_batch(self, texts: Sequence[str], max_len: int | None = None,
                     names: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode texts to ``tokens [N, L]`` (long, 0-padded) and ``mask [N, L]`` (bool).

        Words not in the vocabulary (any unseen word or character) become ``<unk>``. An
        empty text (no tokens) raises ``ValueError`` naming it (by ``names[i]`` when given,
        e.g. the file and question id), since a question or caption without words cannot
        be attended over.
        """
        ids = [self.encode(t) for t in texts]
        for i, (text, seq) in enumerate(zip(texts, ids)):
            if not seq:
                where = names[i] if names is not None else f"text #{i}"
                raise ValueError(f"{where}: {text!r} has no words (an empty question or caption)")
        length = max_len or max(len(s) for s in ids)
        tokens = torch.zeros(len(ids), length, dtype=torch.long)
        for row, seq in enumerate(ids):
            seq = seq[:length]
            tokens[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return tokens, tokens != 0
