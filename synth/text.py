"""Generated text: the forms people write besides dictionary words (numbers with units and counters, dates, times,
prices, phone numbers, short Latin words, mixed tokens), added to the word list in the shares render.generated
asks. Deterministic from the render seed; standard library only."""

from __future__ import annotations

import random
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, model_validator

from hwocr import hashing

COUNTERS = ("개", "명", "번", "살", "층", "권", "장", "잔", "병", "대", "마리", "시간", "분", "초", "일", "주", "달",
            "개월", "년", "호", "회", "점", "배", "벌", "켤레", "송이", "그릇", "인분", "곳", "쪽", "줄", "통", "봉지")
UNITS = ("kg", "g", "mg", "km", "m", "cm", "mm", "L", "ml", "%", "도", "평", "cc", "MB", "GB", "W", "V")
NATIVE = ("한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉", "열", "스무")
ACRONYMS = ("OK", "TV", "PC", "KTX", "SRT", "USB", "SNS", "CCTV", "ATM", "GPS", "AI", "ID", "PDF", "QR", "LED",
            "CEO", "IT", "DIY", "VIP", "SOS", "NO", "FAQ", "DM", "PPT", "LTE", "5G", "3D", "A4", "B2B")
LATIN = ("cafe", "coffee", "menu", "open", "close", "sale", "new", "best", "free", "shop", "hotel", "bus", "taxi",
         "exit", "info", "wifi", "Seoul", "Busan", "Korea", "mart", "bakery", "beauty", "studio", "office", "parking",
         "toilet", "push", "pull", "email", "phone", "delivery", "order", "thanks", "hello", "love", "day", "time")
WORDS_WITH_LATIN = ("메일", "팝", "방", "맵", "사이즈", "편의점", "마트", "카드", "사", "동", "구역", "라인", "타워")
WEEKDAYS = "월화수목금토일"


def _number(r: random.Random) -> str:
    kind = r.randrange(4)
    if kind == 0:
        return f"{r.randint(1, 99)}{r.choice(COUNTERS)}"
    if kind == 1:
        n = r.choice((r.randint(1, 999), round(r.uniform(0.1, 99.9), 1)))
        return f"{n}{r.choice(UNITS)}"
    if kind == 2:
        return f"{r.choice(NATIVE)}{r.choice(COUNTERS[:12])}"
    return f"{r.randint(1, 9)}~{r.randint(10, 30)}{r.choice(COUNTERS)}"


def _date(r: random.Random) -> str:
    y, m, d = r.randint(1950, 2035), r.randint(1, 12), r.randint(1, 28)
    return r.choice((f"{y}.{m:02d}.{d:02d}", f"{y}-{m:02d}-{d:02d}", f"{m}/{d}", f"{y}년", f"{m}월{d}일",
                     f"{y}년{m}월", f"{m}.{d}({r.choice(WEEKDAYS)})", f"{y % 100:02d}.{m}.{d}", f"{d}일"))


def _time(r: random.Random) -> str:
    h, m = r.randint(0, 23), r.choice((0, 5, 10, 15, 20, 30, 40, 45, 50, r.randint(0, 59)))
    h12, half = h % 12 or 12, "오전" if h < 12 else "오후"
    return r.choice((f"{h:02d}:{m:02d}", f"{h}:{m:02d}", f"{h12}시", f"{h12}시{m}분", f"{half}{h12}시",
                     f"{half}{h12}:{m:02d}", f"{r.randint(1, 12)}시간", f"{m or 30}분"))


def _price(r: random.Random) -> str:
    won = r.choice((r.randint(1, 99) * 100, r.randint(1, 999) * 1000, r.randint(1, 99) * 10000, r.randint(1, 9) * 900))
    kind = r.randrange(4)
    if kind == 0:
        return f"{won:,}원"
    if kind == 1:
        return f"{won}원"
    if kind == 2 and won >= 10000:
        man, rest = divmod(won, 10000)
        return f"{man}만{rest // 1000}천원" if rest >= 1000 else f"{man}만원"
    return f"${r.randint(1, 99)}.{r.randint(0, 99):02d}" if r.random() < 0.3 else f"{won:,}"


def _phone(r: random.Random) -> str:
    return r.choice((f"010-{r.randint(1000, 9999)}-{r.randint(1000, 9999)}",
                     f"02-{r.randint(100, 9999)}-{r.randint(1000, 9999)}",
                     f"0{r.randint(31, 64)}-{r.randint(100, 999)}-{r.randint(1000, 9999)}",
                     f"1{r.choice((588, 577, 566, 644, 600))}-{r.randint(1000, 9999)}",
                     f"010{r.randint(1000, 9999)}{r.randint(1000, 9999)}"))


def _latin(r: random.Random) -> str:
    word = r.choice(LATIN + ACRONYMS)
    return r.choice((word, word.upper(), word.capitalize())) if word.islower() else word


def _mixed(r: random.Random) -> str:
    letter = r.choice("ABCDEFGHJKMNPRST")
    return r.choice((f"{letter}동", f"{r.randint(101, 120)}동", f"{r.randint(1, 25)}0{r.randint(1, 9)}호",
                     f"{letter}{r.randint(1, 9)}", f"B{r.randint(1, 5)}층", f"{r.randint(1, 3)}+1",
                     f"{r.choice('ekTKS')}{r.choice(WORDS_WITH_LATIN)}", f"{r.choice(ACRONYMS)}{r.choice('방실용앱')}",
                     f"No.{r.randint(1, 99)}", f"#{r.randint(1, 999)}", f"{letter}-{r.randint(1, 99)}",
                     f"{r.choice(('S', 'M', 'L', 'XL'))}사이즈"))


def _phrase(r: random.Random, words: list[str]) -> str:
    return " ".join(r.choice(words) for _ in range(2 if r.random() < 0.75 else 3))


KINDS = {"numbers": _number, "dates": _date, "times": _time, "prices": _price, "phones": _phone, "latin": _latin,
         "mixed": _mixed, "phrases": _phrase}


class GeneratedSettings(BaseModel):
    """Generated forms added to the word list: `share` of the list's entries are generated, split over the kinds by
    their weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(0.0, ge=0, lt=1, description="Share of the word list's entries that are generated forms "
                         "(0: the list as it is; 0.2: one in five entries, so one in five images).")
    numbers: NonNegativeFloat = Field(0.25, description="Numbers with units and counters: 3개, 2.5kg, 세 잔.")
    dates: NonNegativeFloat = Field(0.15, description="Dates: 2026.12.02, 12월2일, 5/17.")
    times: NonNegativeFloat = Field(0.1, description="Times: 14:30, 오후3시, 2시간.")
    prices: NonNegativeFloat = Field(0.2, description="Prices: 15,000원, 3만원.")
    phones: NonNegativeFloat = Field(0.1, description="Phone numbers: 010-1234-5678, 02-123-4567.")
    latin: NonNegativeFloat = Field(0.1, description="Short Latin words and acronyms: cafe, OPEN, KTX.")
    mixed: NonNegativeFloat = Field(0.1, description="Mixed tokens: A동, 1203호, e메일, PC방.")
    phrases: NonNegativeFloat = Field(0.0, description="Two or three words of the list with spaces, as readtext "
                                      "reads neighbours it merged into one box: 오늘 날씨, 우리 집 앞.")

    @model_validator(mode="after")
    def _some_kind(self) -> GeneratedSettings:
        if self.share and not sum(self.weights().values()):
            raise ValueError("render.generated.share > 0 needs a kind with a weight above 0")
        return self

    def weights(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in KINDS}


def generate(settings: GeneratedSettings, list_size: int, seed: int, allowed: set[str], max_length: int,
             taken: set[str]) -> tuple[list[str], Counter]:
    """Generated entries to add to a list of list_size words, so that they make `share` of the whole; none already
    in `taken`, each within allowed and max_length. Returns them in generation order and their count by kind."""
    if not settings.share:
        return [], Counter()
    total = round(list_size * settings.share / (1 - settings.share))
    weights = settings.weights()
    norm = sum(weights.values())
    out: list[str] = []
    by_kind: Counter = Counter()
    seen = set(taken)
    # Phrases join the list's Hangul words of up to four syllables (sorted: a set has no stable order).
    hangul_words = sorted(w for w in taken if len(w) <= 4 and all("가" <= c <= "힣" for c in w))
    for kind, fn in KINDS.items():
        want = round(total * weights[kind] / norm)
        if kind == "phrases" and not hangul_words:
            continue
        r = random.Random(hashing.seed(seed, "generated", kind))
        tries = 0
        while by_kind[kind] < want and tries < 50 * want:  # small kinds (latin) run out of new forms: fewer, no loop
            tries += 1
            text = fn(r, hangul_words) if kind == "phrases" else fn(r)
            if text not in seen and len(text) <= max_length and allowed.issuperset(text):
                seen.add(text)
                out.append(text)
                by_kind[kind] += 1
    return out, by_kind
