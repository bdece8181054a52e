import os
import tempfile

# Isolate Prefect's database and result records from the user's, and stay offline; before Prefect loads.
_HOME = tempfile.mkdtemp(prefix="hwocr-test-prefect-")
os.environ["PREFECT_HOME"] = _HOME
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import contextlib  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import lmdb  # noqa: E402
import pytest  # noqa: E402

FONT_DIR = "/usr/share/fonts/truetype"
FONTS = {
    "pen": f"{FONT_DIR}/nanum/NanumPen.ttf",
    "pilgi": f"{FONT_DIR}/unfonts-core/UnPilgi.ttf",
    "brush": f"{FONT_DIR}/nanum/NanumBrush.ttf",
    "guseul": f"{FONT_DIR}/alee/Guseul.ttf",  # Hangul only: no digits or Latin letters
    "latin": f"{FONT_DIR}/dejavu/DejaVuSans.ttf",  # no Hangul at all
}
WORDS = ["한글", "손글씨", "안녕하세요", "가나다", "학교", "사랑", "Hello", "2024", "바다", "하늘"]


# The longest modules first (scripts/test.sh runs two pytest-xdist workers, a module to one worker): the two then
# finish together, rather than one running the longest module alone at the end.
FIRST = ["test_s3", "test_interrupt", "test_champion", "test_concurrent", "test_cli", "test_export", "test_versions",
         "test_prefect_server", "test_crash", "test_pages", "test_real_flow", "test_dask"]


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.module.__name__.rsplit(".", 1)[-1]
        return FIRST.index(name) if name in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: within a module, and among the rest, the file order stays


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_script(name: str):
    """A script of bench/ imported as a module (bench/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def plain_python() -> str:
    """The Python of .venv-plain: hwocr installed as the Docker images install it (`pip install .`, no dev
    extras); scripts/test.sh builds it."""
    py = os.environ.get("HWOCR_PLAIN_PYTHON", os.path.join(ROOT, ".venv-plain", "bin", "python"))
    if not os.path.exists(py):
        pytest.fail(f"{py} is missing: `HWOCR_PLAIN_VENV=1 bash scripts/bootstrap.sh` builds it (scripts/test.sh does)")
    return py


@pytest.fixture(scope="session")
def prefect(tmp_path_factory) -> str:
    """One real `prefect server` for the session (each pytest-xdist worker's own), with a fresh database: the flows
    run in the test process report to it, as do the deployments, workers and CLI runs of tests that name it
    (prefect_api, or this fixture itself: the deployment and worker tests). Its API URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with served_prefect(tmp_path_factory.mktemp("prefect-server")) as url, temporary_settings({PREFECT_API_URL: url}):
        yield url


# A real `mlflow server` on loopback, stopped when the block ends; env is added to its environment.
@contextlib.contextmanager
def started_mlflow_server(tmp_path, artifacts: str, env: dict, python: str = sys.executable):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = os.path.join(os.path.dirname(python), "mlflow")
    proc = subprocess.Popen([mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", artifacts],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **env})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, "mlflow server exited"
        assert time.monotonic() < deadline, "mlflow server did not become healthy"
        time.sleep(0.2)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def prefect_api(prefect) -> dict:
    """The environment that points a CLI subprocess at this session's served Prefect: with PREFECT_API_URL set, a
    run starts no temporary server of its own (seconds each). For runs whose test is not about that server."""
    return {"PREFECT_API_URL": prefect}


@pytest.fixture
def words_file(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return str(p)


@pytest.fixture
def make_config(words_file):
    from flows.config import load_config

    def make(out, *overrides, fonts=("pen", "pilgi")):
        base = [f"render.words={words_file}", "render.count=48", "render.val_count=12", "render.shards=3",
                "render.min_shard_images=1", "render.workers=2", f"render.fonts=[{', '.join(FONTS[f] for f in fonts)}]"]
        return load_config(None, base + list(overrides), out=str(out))

    return make


def read_lmdb(path) -> dict[bytes, bytes]:
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
    with env.begin() as txn:
        items = dict(txn.cursor())
    env.close()
    return items


# One tiny set and one model that reads it, shared by every module (training it costs tens of seconds). Tests
# only read them.
@pytest.fixture(scope="session")
def tiny_lmdb(tmp_path_factory):
    from tests.tiny import make_tiny_lmdb

    return make_tiny_lmdb(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_run(tiny_lmdb, tmp_path_factory, worker_id):
    """240 iterations on the tiny set: the result, its folder and its log lines. Trained once for all of pytest-xdist's
    workers: the first to ask trains, under a lock, and the others read what it left (the set's bytes are the same
    in every worker)."""
    import json

    from filelock import FileLock

    from models.trainer import train
    from tests.tiny import settings

    root = tmp_path_factory.getbasetemp()
    root = root.parent if worker_id != "master" else root  # the folder the workers share
    out, record = root / "tiny-run", root / "tiny-run.json"
    with FileLock(str(root / "tiny-run.lock")):
        if not record.exists():
            logs: list[str] = []
            result = train(settings(num_iter=240, val_interval=60), [tiny_lmdb], tiny_lmdb, str(out),
                           log=logs.append)
            record.write_text(json.dumps({"result": result, "logs": logs}), encoding="utf-8")
        saved = json.loads(record.read_text(encoding="utf-8"))
    return {"result": saved["result"], "dir": out, "logs": saved["logs"]}


@pytest.fixture(scope="session")
def trained(tiny_run):
    """The tiny model's best checkpoint; it reads all four words."""
    assert tiny_run["result"]["best_accuracy"] == 100.0
    return str(tiny_run["dir"] / "best_accuracy.pth")


# Servers the slow tests start on loopback.
BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """SIGINT first (a Prefect runner or worker only shuts down cleanly on it), then the whole process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_for(check, what: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready after {timeout} s")
        time.sleep(0.5)


@contextlib.contextmanager
def served_prefect(home):
    """`prefect server start` on a free loopback port, its home (and database) in `home`: its API URL."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": ""}
    log = open(os.path.join(home, "server.log"), "w")
    proc = subprocess.Popen([os.path.join(BIN, "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, "prefect server", proc)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        stop(proc)
        log.close()
