"""Drive the admin console in a real browser (Debian's chromium + chromedriver, Selenium from PyPI).

Usage: console_browser.py ADMIN_URL ADMIN_TOKEN VIEWER_TOKEN QUERY_ID QUERY_USER PROXY_PORT

Environment: TRINO_EDGE_CHROMIUM and TRINO_EDGE_CHROMEDRIVER (default /usr/bin/chromium and
/usr/bin/chromedriver); CONSOLE_SCREENSHOTS=DIR saves a PNG of each page into DIR.

The gateway (started by tests/console.rs) has two healthy backends `trino-1` and `trino-2`, a
policy `etl` and one query by QUERY_USER in its history. The script signs in (a wrong token first),
sees both backends healthy, drains trino-2 and sees it drain, edits the policy with an invalid
regex and sees the API's error at that field, saves a valid edit, routes a dry run, finds the query
in the history with its link to Trino's page through the gateway, runs a hybrid query, signs in
again as a viewer (who may not drain and does not see SQL) and opens /docs. It prints one JSON line of facts; any failed expectation raises.
"""
import json
import os
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

admin, token, viewer_token, query_id, query_user, proxy_port = sys.argv[1:7]
shots_dir = os.environ.get("CONSOLE_SCREENSHOTS") or None
# Generous: a loaded CI machine may be slow, and every wait ends as soon as its condition holds.
WAIT = 60

profile = tempfile.mkdtemp(prefix="console-chromium-")
options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("TRINO_EDGE_CHROMIUM", "/usr/bin/chromium")
for flag in [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
    "--hide-scrollbars",
    f"--user-data-dir={profile}",
]:
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
service = Service(executable_path=os.environ.get("TRINO_EDGE_CHROMEDRIVER", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(service=service, options=options)
facts = {"screenshots": []}


def wait(what, condition, timeout=WAIT):
    """Wait until `condition(driver)` is truthy (stale elements are retried); its value."""
    def check(d):
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for: {what}\npage text:\n{body_text()}") from None


def body_text():
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except Exception as e:  # noqa: BLE001 - only for the failure message
        return f"(no page text: {e})"


def css(selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def one(selector):
    return wait(f"element {selector}", lambda d: next(iter(css(selector)), None))


def text(selector):
    """The text of the first element matching `selector`, read in one go (pages re-render)."""
    return wait(f"text of {selector}", lambda d: (lambda els: (els[0].text,) if els else None)(css(selector)))[0]


def attr(selector, name):
    return wait(f"{name} of {selector}",
                lambda d: (lambda els: (els[0].get_attribute(name),) if els else None)(css(selector)))[0]


def visible(selector):
    return wait(f"visible {selector}", lambda d: next((e for e in css(selector) if e.is_displayed()), None))


def click(selector):
    """Click the element, again if a re-render replaced it in between."""
    def attempt(d):
        el = next((e for e in css(selector) if e.is_displayed() and e.is_enabled()), None)
        if el is None:
            return False
        el.click()
        return True
    wait(f"clickable {selector}", attempt)


def type_into(selector, text):
    el = visible(selector)
    el.clear()
    el.send_keys(text)


def shot(name):
    if not shots_dir:
        return
    os.makedirs(shots_dir, exist_ok=True)
    path = os.path.join(shots_dir, f"{name}.png")
    # The whole page (up to 1,600 px), without the passing notifications; fonts and the last poll
    # get a moment to settle into the picture (no assertion depends on it).
    driver.execute_script("document.getElementById('toasts')?.replaceChildren()")
    dialog = driver.execute_script("return !!document.querySelector('dialog[open]')")
    height = 1000 if dialog else min(1600, max(1000, driver.execute_script(
        "return document.documentElement.scrollHeight") + 160))
    driver.set_window_size(1400, height)
    time.sleep(0.5)
    driver.save_screenshot(path)
    driver.set_window_size(1400, 1000)
    facts["screenshots"].append(path)


def go(page):
    driver.get(f"{admin}/#/{page}")
    wait(f"page {page}", lambda d: d.execute_script("return document.body.dataset.page") == page)


def row_state(name):
    rows = css(f'#backends tr[data-backend="{name}"]')
    return rows[0].get_attribute("data-state") if rows else None


try:
    # Sign in: the console asks for a token; a wrong one is refused with the API's message.
    driver.get(f"{admin}/")
    one("#token")
    assert driver.execute_script("return location.hash") == "#/login"
    type_into("#token", "not-a-token")
    click("#sign-in")
    err = visible("#login-error")
    assert "Not accepted" in err.text and "invalid token" in err.text, err.text
    facts["wrong_token_message"] = err.text
    type_into("#token", "")
    shot("login")
    type_into("#token", token)
    click("#sign-in")
    wait("the overview after sign-in", lambda d: d.execute_script("return document.body.dataset.page") == "overview")
    who = visible("#who").text
    assert "console-admin" in who and "admin" in who, who
    facts["who"] = who

    # Overview: both backends healthy, figures from /metrics drawn.
    wait("two healthy backends on the overview",
         lambda d: len(css('#overview-backends tr[data-backend] .pill-healthy')) == 2)
    wait("a figure for submissions/s", lambda d: any(ch.isdigit() for ch in one("#kpi-submissions .kpi-value").text))
    wait("a latency figure", lambda d: "ms" in one("#kpi-latency .kpi-value").text or " s" in one("#kpi-latency .kpi-value").text)
    assert css("#kpi-submissions svg.chart path"), "no chart drawn"
    facts["overview"] = {
        "submissions": text("#kpi-submissions .kpi-value"),
        "latency": text("#kpi-latency .kpi-value"),
        "backends": text("#kpi-backends .kpi-value"),
    }
    # A few more samples so the charts in the picture have a line (the checks above passed already).
    if shots_dir:
        time.sleep(15)
    shot("overview")

    # Backends: both healthy; drain trino-2 and see it drain.
    go("backends")
    wait("both backends HEALTHY", lambda d: row_state("trino-1") == "HEALTHY" and row_state("trino-2") == "HEALTHY")
    click('#backends tr[data-backend="trino-2"] button[data-action="deactivate"]')
    state = wait("trino-2 draining or inactive", lambda d: row_state("trino-2") in ("DRAINING", "INACTIVE") and row_state("trino-2"))
    one('#backends tr[data-backend="trino-2"] button[data-action="activate"]')
    wait("trino-1 still HEALTHY", lambda d: row_state("trino-1") == "HEALTHY")
    facts["drained_state"] = state
    wait("trino-2 inactive", lambda d: row_state("trino-2") == "INACTIVE")
    shot("backends")

    # Routing: an invalid regex is refused and the API's message shows at the field it names.
    go("routing")
    click('#policies tr[data-policy="etl"] button[data-action="edit"]')
    visible("dialog#editor")
    type_into("#f-match-user", "^svc_(")
    click("#editor-save")
    field_error = visible('.field[data-field="match.user"] .field-error')
    assert "invalid regex" in field_error.text, field_error.text
    assert "has-error" in one('.field[data-field="match.user"]').get_attribute("class")
    facts["field_error"] = field_error.text
    shot("routing-error")
    # The JSON view holds the same object; back to the form, a valid edit is saved.
    click("#tab-json")
    assert '"user": "^svc_("' in visible("#editor-json").get_attribute("value")
    click("#tab-form")
    type_into("#f-match-user", "^etl_")
    type_into("#f-priority", "20")
    click("#editor-save")
    wait("the editor closed", lambda d: not css("dialog#editor"))
    wait("the saved policy in the table",
         lambda d: "^etl_" in one('#policies tr[data-policy="etl"]').text and "20" in one('#policies tr[data-policy="etl"]').text)
    # Dry run: a user the edited policy matches is sent to its group.
    type_into("#try-user", "etl_loader")
    click("#try-run")
    decision = visible("#try-result .decision")
    wait("the policy decision", lambda d: "decision: policy" in one("#try-result .decision").text)
    assert "etl" in decision.text, decision.text
    facts["dry_run"] = one("#try-result .decision-head").text
    shot("routing")

    # History: the query run through the proxy, found by its user, linked to Trino's page.
    go("history")
    type_into("#h-user", query_user)
    click("#history-search")
    # The search by user answers with this query alone (the first search, of every query, may
    # still be on the page for a moment).
    rows = "#history tbody tr[data-query]"
    wait("the query alone in the history",
         lambda d: [r.get_attribute("data-query") for r in css(rows)] == [query_id])
    href = attr(f'#history tr[data-query="{query_id}"] a', "href")
    assert href == f"http://127.0.0.1:{proxy_port}/ui/query.html?{query_id}", href
    # The text filter narrows the loaded results.
    type_into("#h-text", "no-such-text-anywhere")
    wait("no rows for a text nobody wrote", lambda d: not css(rows))
    type_into("#h-text", query_id[-6:])
    wait("the row back", lambda d: len(css(rows)) == 1)
    facts["history_link"] = href
    type_into("#h-user", "")
    type_into("#h-text", "")
    click("#history-search")
    wait("every query", lambda d: len(css(rows)) > 1)
    shot("history")

    # Hybrid: the default registration and SQL run; the table and the remote stats show.
    go("hybrid")
    click("#hybrid-run")
    wait("the hybrid result", lambda d: css("#hybrid-table tbody tr"))
    cells = [td.text for td in css("#hybrid-table tbody tr td")]
    assert cells == ["7", "28980"], cells
    remote = one("#hybrid-remote tbody tr").text
    assert "trino-1" in remote, remote  # trino-2 is drained
    facts["hybrid"] = {"cells": cells, "remote": remote}
    shot("hybrid")

    # A viewer: signed in under its own name, may not drain, does not see SQL.
    click("#sign-out")
    wait("the sign-in page", lambda d: d.execute_script("return document.body.dataset.page") == "login")
    type_into("#token", viewer_token)
    click("#sign-in")
    wait("the viewer signed in", lambda d: "console-viewer" in one("#who").text and "viewer" in one("#who").text)
    go("backends")
    drain = '#backends tr[data-backend="trino-1"] button[data-action="deactivate"]'
    assert attr(drain, "disabled") is not None, "a viewer's Drain button is enabled"
    assert "needs the operator role" in attr(drain, "title"), attr(drain, "title")
    go("history")
    assert "not shown" in text("#history tbody tr[data-query] td.sql")
    facts["viewer"] = text("#who")

    # Swagger UI for /openapi.json.
    driver.get(f"{admin}/docs")
    wait("Swagger UI's operations", lambda d: len(css(".swagger-ui .opblock")) > 10)
    facts["docs_operations"] = len(css(".swagger-ui .opblock"))
    shot("docs")

    # Nothing the pages did broke the Content-Security-Policy or threw.
    problems = [
        e["message"]
        for e in driver.get_log("browser")
        if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]
    ]
    assert not problems, problems
    print(json.dumps(facts))
finally:
    driver.quit()
