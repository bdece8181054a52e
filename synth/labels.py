"""Which labels can be trained on: the one validity rule of the word list, gt.txt and the LMDB loader."""

from __future__ import annotations

import unicodedata

CONTROL = "\t\r\n\x0b\x0c"  # would break a line of gt.txt or labels.tsv


def label_problem(label: str, allowed: set[str], max_length: int) -> str | None:
    """Why label cannot be used (empty_label, control_char, not_nfc, out_of_charset, too_long), or None."""
    if not label:
        return "empty_label"
    if any(c in label for c in CONTROL):
        return "control_char"
    if unicodedata.normalize("NFC", label) != label:
        return "not_nfc"
    if not allowed.issuperset(label):
        return "out_of_charset"
    if len(label) > max_length:
        return "too_long"
    return None
