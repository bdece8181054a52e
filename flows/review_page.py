"""hwocr review: a local web page over a prelabelled folder, one word at a time (models/review.py reads the folder
and saves each edit). FastAPI and uvicorn come with Prefect; the page itself is one file, review.html."""

from __future__ import annotations

import errno
import json
import os
import socket

from pydantic import BaseModel

from hwocr.errors import HwocrError
from models import review

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "review.html")


class Edit(BaseModel):
    seen: dict  # the word as the page read it: {"transcription", "status"}
    transcription: str
    status: str


def make_app(folder: str, charset: str):
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, Response
    def as_json(words: list[review.Word]) -> list[dict]:
        pages = {image: review.file_in(folder, image) for image in {w.image for w in words}}
        return [{**review.as_json(w), "page": pages[w.image]} for w in words]

    app = FastAPI(title="hwocr review", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        with open(PAGE, encoding="utf-8") as f:
            return f.read()

    @app.get("/api/words")
    def words() -> Response:
        try:
            found = review.load(folder)
        except HwocrError as e:  # Label.txt edited by hand into another shape since the server started
            raise HTTPException(422, str(e)) from None
        # 10,000 words: dumped directly, not through FastAPI's encoder (several times slower on nested lists)
        body = {"folder": folder, "charset": charset, "words": as_json(found)}
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")

    @app.post("/api/words/{word_id}")
    def edit(word_id: str, e: Edit) -> dict:
        try:
            word = review.save(folder, word_id, e.seen, e.transcription, e.status, charset)
        except review.Conflict as c:
            raise HTTPException(409, str(c)) from None
        except HwocrError as err:
            raise HTTPException(422, str(err)) from None
        return as_json([word])[0]

    @app.get("/files/{path:path}")
    def files(path: str) -> FileResponse:
        rel = review.file_in(folder, path)
        if rel is None:
            raise HTTPException(404, f"{path}: not a file of {folder}")
        return FileResponse(os.path.join(folder, rel))

    return app


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one clear line, not uvicorn's traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise HwocrError(f"--port {port}: in use on {host} (another hwocr review? give another --port, or 0 "
                             "for any free one)") from None
        raise HwocrError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    sock.listen(128)
    return sock


def serve(folder: str, host: str = "127.0.0.1", port: int = 8765, charset: str = "korean_g2") -> None:
    """Serve the review page until Ctrl-C; every check (the folder, its Label.txt, the port) before it starts."""
    import uvicorn

    folder = os.path.abspath(folder)
    if not os.path.isdir(folder):
        raise HwocrError(f"{folder}: no such folder (hwocr prelabel --out writes one)")
    words = review.load(folder)
    characters = review.charset_of(folder, charset)
    sock = bind(host, port)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}/"
    left = sum(w.status == "predicted" for w in words)
    print(f"review: {url} ({len(words)} words, {left} to review; Ctrl-C stops)", flush=True)
    config = uvicorn.Config(make_app(folder, characters), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
