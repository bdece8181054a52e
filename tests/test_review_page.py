"""hwocr review: the review page driven as a person drives it, in a real headless Chromium (Debian's chromium and
chromedriver, which scripts/bootstrap.sh installs for the tests), against `hwocr review` itself. The folders are
drawn here in a handwriting-style font and labelled as prelabel labels them: stand-ins, not real scans."""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw, ImageFont

from models.charset import load_charset
from models.review import load

HWOCR = os.path.join(os.path.dirname(sys.executable), "hwocr")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BRUSH = "/usr/share/fonts/truetype/nanum/NanumBrush.ttf"
# (word as written, the model's reading, its confidence): lowest confidence first is 사랑, 바다, 하늘, 한글, 나무, 구름
PAGES = [[("한글", "한글", 0.91), ("사랑", "사량", 0.12), ("바다", "바다", 0.33)],
         [("하늘", "하놀", 0.58), ("나무", "나무", 0.95), ("구름", "구릅", 0.97)]]
SHOTS = os.environ.get("HWOCR_SCREENSHOTS")  # a folder: docs/review's screenshot of a refused save is taken here


def prelabelled(root, pages=PAGES) -> str:
    """A folder as hwocr prelabel writes it: the pages, crops/, Label.txt (status predicted), prelabel.json."""
    folder = root / "review"
    (folder / "crops").mkdir(parents=True)
    font = ImageFont.truetype(BRUSH, 56)
    lines = []
    for n, page in enumerate(pages):
        image = Image.new("L", (900, 260), 250)
        draw = ImageDraw.Draw(image)
        words = []
        for k, (written, read, confidence) in enumerate(page):
            x, y = 40 + 280 * k, 90
            left, top, right, bottom = draw.textbbox((x, y), written, font=font)
            draw.text((x, y), written, font=font, fill=20)
            box = (left - 4, top - 4, right + 4, bottom + 4)
            crop = f"crops/p{n}.png-{k:03d}.png"
            image.crop(box).save(folder / crop)
            words.append({"transcription": read, "points": [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]],
                                                           [box[0], box[3]]],
                          "confidence": confidence, "status": "predicted", "difficult": False, "crop": crop})
        image.save(folder / f"p{n}.png")
        lines.append(f"review/p{n}.png\t{json.dumps(words, ensure_ascii=False)}\n")
    (folder / "Label.txt").write_text("".join(lines), encoding="utf-8")
    (folder / "prelabel.json").write_text(json.dumps({"charset": load_charset("korean_g2")}), encoding="utf-8")
    return str(folder)


@pytest.fixture
def serve():
    """Start `hwocr review FOLDER --port 0`; returns its URL."""
    procs = []

    def start(folder: str) -> str:
        proc = subprocess.Popen([HWOCR, "review", folder, "--port", "0"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        line = proc.stdout.readline()
        assert line.startswith("review: http://127.0.0.1:"), line + proc.stderr.read()
        return line.split()[1]

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail(f"{CHROMIUM} or {CHROMEDRIVER} is missing: scripts/bootstrap.sh installs Debian's chromium and "
                    "chromium-driver for the tests")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The network here is closed: without the background-networking flags Chromium keeps dialing out.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def open_page(driver, url: str):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def until(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30, poll_frequency=0.05).until(lambda d: condition(), message=what)


def keys(driver, *sequence):
    """Keys as a person presses them, into whatever has the focus (the current word's input)."""
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for key in sequence:
        if isinstance(key, tuple):  # (modifier, key)
            chain.key_down(key[0]).send_keys(key[1]).key_up(key[0])
        else:
            chain.send_keys(key)
    chain.perform()


def shown(driver) -> list[tuple[str, str, str]]:
    """The rows on the page: (word id, its label, its status), the current row's label read from its input."""
    return [tuple(r) for r in driver.execute_script("""return [...document.querySelectorAll('.row')].map(r => [
        r.dataset.id, r.querySelector('input') ? r.querySelector('input').value : r.querySelector('.label').textContent,
        r.querySelector('.status').textContent]);""")]


def on_disk(folder: str) -> dict:
    return {w.id: (w.transcription, w.status) for w in load(folder)}


def shot(driver, name: str):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        driver.save_screenshot(os.path.join(SHOTS, name))


@pytest.mark.slow
def test_accept_correct_reject_then_reload_and_the_page_and_the_file_agree(tmp_path, serve, browser):
    from selenium.webdriver.common.keys import Keys

    folder = prelabelled(tmp_path)
    open_page(browser, serve(folder))
    # Lowest confidence first, the first word to review current, its reading in the input.
    assert [r[0] for r in shown(browser)] == ["0:1", "0:2", "1:0", "0:0", "1:1", "1:2"]
    assert shown(browser)[0] == ("0:1", "사량", "predicted")
    assert browser.switch_to.active_element.get_attribute("value") == "사량"

    # A character outside the model's set is named as it is typed, and Enter saves nothing.
    keys(browser, "사Æ")
    error = browser.find_element("css selector", ".row.current .error").text
    assert error == "'Æ' (U+00C6) is not in the model's character set"
    keys(browser, Keys.ENTER)
    assert on_disk(folder)["0:1"] == ("사량", "predicted")

    # Correct one, accept three, reject one: 사랑 fixed, 바다 accepted, 하놀 passed, 한글 accepted.
    keys(browser, (Keys.CONTROL, "a"), "사랑", Keys.ENTER, Keys.ENTER, Keys.ARROW_DOWN, Keys.ENTER)
    keys(browser, (Keys.ALT, "p"))  # the page around the current word (나무), its box drawn
    until(browser, lambda: browser.execute_script(
        "return document.querySelector('#page polygon') !== null && getComputedStyle("
        "document.querySelector('#context')).display === 'block'"), "the page context to show")
    points = browser.find_element("css selector", "#page polygon").get_attribute("points")
    assert points == " ".join(",".join(map(str, p)) for p in load(folder)[4].points)
    # Back to 하놀: unreadable; past 한글 (reviewed); accept 나무.
    keys(browser, Keys.ARROW_UP, Keys.ARROW_UP, (Keys.SHIFT, Keys.ENTER), Keys.ARROW_DOWN, Keys.ENTER)
    want = {"0:0": ("한글", "reviewed"), "0:1": ("사랑", "reviewed"), "0:2": ("바다", "reviewed"),
            "1:0": ("하놀", "rejected"), "1:1": ("나무", "reviewed"), "1:2": ("구릅", "predicted")}
    until(browser, lambda: on_disk(folder) == want, f"Label.txt to hold {want}")
    until(browser, lambda: "saving…" not in str(shown(browser)), "every save to be answered")
    assert browser.find_element("id", "progress").text.startswith("5 / 6 reviewed (1 unreadable) · ")

    browser.refresh()
    open_page(browser, browser.current_url)
    assert browser.switch_to.active_element.get_attribute("value") == "구릅"  # the first word left to review
    assert on_disk(folder) == want
    from selenium.webdriver.support.ui import Select

    page = {}
    for status in ("predicted", "reviewed", "rejected"):  # each filter shows what it says, and all of it
        Select(browser.find_element("id", "filter")).select_by_value(status)
        rows = shown(browser)
        assert rows and {s for _, _, s in rows} == {status}
        page.update({word_id: (label, s) for word_id, label, s in rows})
    assert page == want


@pytest.mark.slow
def test_the_same_word_from_two_tabs_the_second_save_is_refused_and_says_so(tmp_path, serve, browser):
    from selenium.webdriver.common.keys import Keys

    folder = prelabelled(tmp_path)
    url = serve(folder)
    open_page(browser, url)
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    open_page(browser, url)
    second = browser.current_window_handle

    browser.switch_to.window(first)
    keys(browser, "사랑", Keys.ENTER)
    until(browser, lambda: on_disk(folder)["0:1"] == ("사랑", "reviewed"), "the first tab's edit on disk")
    browser.switch_to.window(second)  # it read the word before that edit
    keys(browser, "사람", Keys.ENTER)
    until(browser, lambda: browser.find_element("id", "alert").is_displayed(), "the second tab to say why")
    alert = browser.find_element("id", "alert").text
    assert alert == ("review/p0.png, word 0:1: not saved: word 0:1 was changed elsewhere since this page read it "
                     "(now '사랑', reviewed): reload to see it"), alert
    assert on_disk(folder)["0:1"] == ("사랑", "reviewed")  # the first edit kept
    row = browser.find_element("css selector", '.row[data-id="0:1"]')
    assert "not saved" in row.find_element("css selector", ".error").text
    assert row.find_element("css selector", ".status").text == "predicted"  # what this tab last read, not its edit
    shot(browser, "review-conflict.png")
    browser.refresh()
    open_page(browser, browser.current_url)
    assert ("0:1", "사랑", "reviewed") in shown(browser)


@pytest.mark.slow
def test_ten_thousand_crops_open_and_move_at_reading_speed(tmp_path, serve, browser):
    from selenium.webdriver.common.keys import Keys

    folder = tmp_path / "review"
    (folder / "crops").mkdir(parents=True)
    one = folder / "crops" / "one.png"
    Image.new("L", (120, 40), 240).save(one)
    lines = []
    for n in range(100):  # 100 pages of 100 words; every crop file its own name, as prelabel writes them
        words = []
        for k in range(100):
            crop = f"crops/p{n}-{k:03d}.png"
            os.link(one, folder / crop)
            words.append({"transcription": "한글", "points": [[k, 0], [k + 9, 0], [k + 9, 9], [k, 9]],
                          "confidence": ((n * 100 + k) * 7919 % 10000) / 10000, "status": "predicted",
                          "crop": crop})
        lines.append(f"review/p{n}.png\t{json.dumps(words, ensure_ascii=False)}\n")
    (folder / "Label.txt").write_text("".join(lines), encoding="utf-8")
    open_page(browser, serve(str(folder)))
    opened = browser.execute_script("return window.hwocrOpened")
    assert shown(browser)[0][0] == "0:0" and len(shown(browser)) == 20  # confidence 0.0 first; a window of rows
    keys(browser, *[Keys.ARROW_DOWN] * 20, *[Keys.ENTER] * 20)
    until(browser, lambda: sum(s == "reviewed" for _, s in on_disk(str(folder)).values()) == 20,
          "20 words reviewed on disk")
    moves = browser.execute_script("return window.hwocrMoves")
    assert len(moves) == 40
    print(f"\nreview page, 10,000 crops: opened in {opened:.0f} ms, next word in {statistics.median(moves):.1f} ms "
          f"(median of 40, max {max(moves):.1f} ms)")


def test_a_port_in_use_and_a_broken_folder_are_one_line(tmp_path):
    folder = prelabelled(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([HWOCR, "review", folder, "--port", str(port)], capture_output=True, text=True,
                              timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"hwocr: error: --port {port}: in use on 127.0.0.1 (another hwocr review? give another --port, or 0 for any "
        "free one)"), proc.stderr
    label = os.path.join(folder, "Label.txt")
    with open(label, encoding="utf-8") as f:
        good = f.read()
    with open(label, "w", encoding="utf-8") as f:
        f.write(good.replace('"predicted"', '"maybe"', 1))
    proc = subprocess.run([HWOCR, "review", folder, "--port", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"hwocr: error: {label} line 1 word 1: status 'maybe' is not one of predicted, reviewed, rejected"), proc.stderr
    with open(label, encoding="utf-8") as f:
        assert f.read() == good.replace('"predicted"', '"maybe"', 1)  # nothing rewritten
    shutil.rmtree(folder)
    proc = subprocess.run([HWOCR, "review", folder], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == f"hwocr: error: {folder}: no such folder (hwocr prelabel " \
                                                           "--out writes one)", proc.stderr
