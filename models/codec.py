"""CTC labels <-> text. Index 0 is the blank; character i of the set is class i+1 (EasyOCR's convention)."""

from __future__ import annotations

import math
import unicodedata

import torch

from hwocr.errors import HwocrError


class CTCCodec:
    def __init__(self, charset: str) -> None:
        self.charset = charset
        self.num_class = len(charset) + 1
        self._index = {c: i + 1 for i, c in enumerate(charset)}

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated targets (LongTensor, 1-D) and per-text lengths (IntTensor), as nn.CTCLoss takes them."""
        targets: list[int] = []
        lengths: list[int] = []
        for text in texts:
            # The set is stored NFC; a label typed as decomposed jamo must still match it.
            text = unicodedata.normalize("NFC", text)
            for c in text:
                i = self._index.get(c)
                if i is None:
                    raise HwocrError(f"text {text!r}: character {c!r} (U+{ord(c):04X}) is not in the character set")
                targets.append(i)
            lengths.append(len(text))
        return torch.tensor(targets, dtype=torch.long), torch.tensor(lengths, dtype=torch.int)

    def _indices(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        return x.argmax(-1) if x.dim() == 3 else x

    def _kept(self, seq: list[int]) -> list[int]:
        """Positions kept by greedy CTC decoding: not a repeat of the previous step, not blank."""
        return [t for t, i in enumerate(seq) if i != 0 and (t == 0 or seq[t - 1] != i)]

    def decode_greedy(self, x: torch.Tensor) -> list[str]:
        """[B, T, C] scores (logits, log-probs or probs) or [B, T] class indices -> texts."""
        out = []
        for seq in self._indices(x).tolist():
            out.append("".join(self.charset[seq[t] - 1] for t in self._kept(seq)))
        return out

    def decode_with_confidence(self, probs: torch.Tensor) -> list[tuple[str, float]]:
        """[B, T, C] probabilities -> (text, confidence) as EasyOCR's recognizer_predict computes it.

        EasyOCR takes the max probability of every non-blank step (repeats included) and returns
        prod ** (2 / sqrt(n)) (`custom_mean`); with no such step the confidence is 0.
        """
        probs = torch.as_tensor(probs)
        values, indices = probs.max(-1)
        texts = self.decode_greedy(indices)
        out = []
        for text, v, i in zip(texts, values.double(), indices):
            kept = v[i != 0]
            conf = float(kept.prod() ** (2.0 / math.sqrt(len(kept)))) if len(kept) else 0.0
            out.append((text, conf))
        return out


class AttnCodec:
    """The benchmark's AttnLabelConverter: class 0 is [GO] (the decoder's first input, and the padding the loss
    ignores), class 1 is [s] (end of text), character i is class i+2."""

    GO, EOS = 0, 1

    def __init__(self, charset: str, batch_max_length: int = 25) -> None:
        self.charset = charset
        self.batch_max_length = batch_max_length
        self.num_class = len(charset) + 2
        self._index = {c: i + 2 for i, c in enumerate(charset)}

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, batch_max_length + 2] targets: [GO], the characters, [s], then [GO] padding; [B] lengths counting
        [s]). The decoder reads text[:, :-1] and is scored against text[:, 1:]."""
        out = torch.zeros(len(texts), self.batch_max_length + 2, dtype=torch.long)
        lengths = []
        for row, text in enumerate(texts):
            text = unicodedata.normalize("NFC", text)
            if len(text) > self.batch_max_length:
                raise HwocrError(f"text {text!r}: {len(text)} characters, more than batch_max_length "
                                 f"{self.batch_max_length}")
            ids = []
            for c in text:
                i = self._index.get(c)
                if i is None:
                    raise HwocrError(f"text {text!r}: character {c!r} (U+{ord(c):04X}) is not in the character set")
                ids.append(i)
            ids.append(self.EOS)
            out[row, 1:1 + len(ids)] = torch.tensor(ids)
            lengths.append(len(ids))
        return out, torch.tensor(lengths, dtype=torch.int)

    def _cut(self, seq: list[int]) -> list[int]:
        """Steps before the first [s] (the benchmark's test.py prunes there). A [GO] predicted mid-word, which
        the benchmark would print as the text '[GO]', is left out."""
        end = seq.index(self.EOS) if self.EOS in seq else len(seq)
        return [t for t in range(end) if seq[t] != self.GO]

    def decode_greedy(self, x: torch.Tensor) -> list[str]:
        x = torch.as_tensor(x)
        seqs = (x.argmax(-1) if x.dim() == 3 else x).tolist()
        return ["".join(self.charset[seq[t] - 2] for t in self._cut(seq)) for seq in seqs]

    def decode_with_confidence(self, probs: torch.Tensor) -> list[tuple[str, float]]:
        """[B, T, C] probabilities -> (text, confidence): the product of the step maxima before [s], as the
        benchmark's test.py computes it (cumprod; 0 for an empty reading)."""
        probs = torch.as_tensor(probs)
        values, indices = probs.max(-1)
        out = []
        for v, seq in zip(values.double(), indices.tolist()):
            end = seq.index(self.EOS) if self.EOS in seq else len(seq)
            text = "".join(self.charset[seq[t] - 2] for t in self._cut(seq))
            out.append((text, float(v[:end].prod()) if end else 0.0))
        return out


def make_codec(prediction: str, charset: str, batch_max_length: int = 25) -> CTCCodec | AttnCodec:
    """The label codec of a Prediction stage."""
    return AttnCodec(charset, batch_max_length) if prediction == "Attn" else CTCCodec(charset)
