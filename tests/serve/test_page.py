"""The web page in a real browser (Debian's headless Chromium through chromedriver): it loads, a message streams a
reply, the cards show catalog items only, the profile panel updates when a preference is recorded. The test saves
a screenshot (``page.png`` in its temporary directory)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

API_KEY = "test-key"  # the session server's (tests/serve/conftest.py)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("Chromium and chromedriver are not installed; `make install` installs them (Debian packages)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tmp_path_factory.mktemp("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1280,900"):  # fmt: skip
        options.add_argument(flag)
    opened = webdriver.Chrome(service=Service(driver), options=options)
    yield opened
    opened.quit()


def _send(browser, text: str) -> None:
    box = browser.find_element(By.ID, "message")
    box.send_keys(text)
    browser.find_element(By.ID, "send").click()


def _replies(browser) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#messages li.assistant")]


def test_the_page_chats_shows_catalog_cards_and_the_profile(server, browser, ml100k, tmp_path: Path) -> None:
    browser.get(f"{server.url}/")
    assert browser.title == "llmrec chat"
    user = browser.find_element(By.ID, "user")
    user.clear()
    user.send_keys("301")
    browser.find_element(By.ID, "key").send_keys(API_KEY)
    wait = WebDriverWait(browser, 240, poll_frequency=0.1)

    # Every change of the reply's text, as the page renders it.
    browser.execute_script(
        "window.seen = []; new MutationObserver(() => { const r = document.querySelectorAll('#messages li.assistant');"
        " if (r.length) window.seen.push(r[r.length - 1].textContent.length); })"
        ".observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});"
    )

    def replied(driver) -> bool:
        return bool(_replies(driver)) and not driver.find_element(By.ID, "send").get_attribute("disabled")

    _send(browser, "recommend something for me")
    wait.until(replied)
    assert _replies(browser)[-1].strip()  # a reply came
    lengths = [n for n in browser.execute_script("return window.seen") if n]
    assert len(set(lengths)) > 1  # and grew piece by piece while it streamed
    cards = browser.find_elements(By.CSS_SELECTOR, "#cards .card")
    assert cards
    for card in cards:
        item = int(card.get_attribute("data-item-id"))
        assert card.find_element(By.CLASS_NAME, "title").text == ml100k.titles[item]  # a catalog item, by its id
        assert card.find_element(By.CLASS_NAME, "id").text == f"item {item}"
        assert card.find_element(By.CLASS_NAME, "why").text

    _send(browser, "I love film noir and westerns")
    wait.until(lambda driver: "film noir" in driver.find_element(By.ID, "profile-text").text)
    assert "version" in browser.find_element(By.ID, "profile-version").text
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 10_000
