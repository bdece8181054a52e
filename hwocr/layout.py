"""Where everything of one output folder (local or a URL) lives; no other module builds these paths."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from hwocr import storage


class Layout(BaseModel):
    """<out>/words, shards, <split>/gt.txt, lmdb, real/<source>, runs/<key>/{eval, easyocr}, dataset.json,
    prefect-results."""

    model_config = ConfigDict(frozen=True)

    out: str

    @classmethod
    def at(cls, url: str) -> Layout:
        return cls(out=storage.normalize(url))

    def join(self, *parts: str) -> str:
        return storage.join(self.out, *parts)

    def relative(self, url: str) -> str:
        """url as a path below out (gt.txt names images this way)."""
        return url[len(self.out.rstrip("/")) + 1:]

    def words(self, sha256: str) -> str:
        return self.join("words", sha256[:24] + ".txt")

    def shard(self, split: str, key: str) -> str:
        return self.join("shards", split, key[:24])

    def gt(self, split: str) -> str:
        return self.join(split, "gt.txt")

    def gt_result(self, split: str) -> str:
        return self.join(split, "report.json")

    def lmdb(self, split: str) -> str:
        return self.join("lmdb", split)

    def real(self, name: str) -> str:
        """A real source's LMDBs, one per split (<split>/), and its report."""
        return self.join("real", name)

    def run(self, key: str) -> str:
        return self.join("runs", key[:16])

    def eval(self, run_key: str, split: str, start: bool = False) -> str:
        """A split's scores of a run's checkpoint, or of the pretrained start it began from."""
        return storage.join(self.run(run_key), "eval", ("start_" if start else "") + split)

    def pages(self, split: str, key: str) -> str:
        """A split's words composed into pages, with the boxes EasyOCR's detector finds on them (any model's)."""
        return self.join("pages", split, key[:16])

    def easyocr_check(self, run_key: str, split: str) -> str:
        return storage.join(self.eval(run_key, split), "easyocr")

    def bundle(self, run_key: str) -> str:
        return storage.join(self.run(run_key), "easyocr")

    @property
    def summary(self) -> str:
        return self.join("dataset.json")

    @property
    def contact_sheet(self) -> str:
        return self.join("contact_sheet.png")

    @property
    def fonts_sheet(self) -> str:
        return self.join("fonts_effects.png")

    @property
    def results(self) -> str:
        """Prefect's cache records, unless the config points them elsewhere."""
        return self.join("prefect-results")
