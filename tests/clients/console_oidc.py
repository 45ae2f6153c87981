"""Sign in to the admin console with single sign-on (authorization code with PKCE) in a real
browser (Debian's chromium + chromedriver, Selenium from PyPI).

Usage: console_oidc.py ADMIN_URL

The gateway (started by tests/console.rs) has `admin.auth.jwt.console_login` pointing at a test
identity provider that signs in `alice` (group trino-edge-admin) without asking. The script opens
the console, is sent to the sign-in page, clicks "Sign in with single sign-on", comes back signed
in, sees the overview, signs out, and comes back from a provider that refuses the sign-in. It
prints one JSON line of facts; any failed expectation raises.
"""
import json
import os
import sys
import tempfile

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

admin = sys.argv[1]
WAIT = 60

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("TRINO_EDGE_CHROMIUM", "/usr/bin/chromium")
for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--window-size=1400,1000",
             f"--user-data-dir={tempfile.mkdtemp(prefix='console-oidc-')}"]:
    options.add_argument(flag)
service = Service(executable_path=os.environ.get("TRINO_EDGE_CHROMEDRIVER", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(service=service, options=options)


def body_text():
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except Exception as e:  # noqa: BLE001 - only for the failure message
        return f"(no page text: {e})"


def wait(what, condition):
    def check(d):
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(check)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for: {what}\nat {driver.current_url}\npage text:\n{body_text()}") from None


def text(selector):
    return wait(f"text of {selector}", lambda d: (lambda els: (els[0].text,) if els else None)(
        d.find_elements(By.CSS_SELECTOR, selector)))[0]


def click(selector):
    def attempt(d):
        el = next((e for e in d.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed() and e.is_enabled()), None)
        if el is None:
            return False
        el.click()
        return True
    wait(f"clickable {selector}", attempt)


facts = {}
try:
    driver.get(f"{admin}/")
    click("#sign-in-oidc")
    # Back from the provider, signed in: the name and role the admin API gives the token.
    wait("signed in as alice", lambda d: "alice" in text("#who"))
    facts["who"] = text("#who")
    facts["url"] = driver.current_url
    wait("the overview", lambda d: d.execute_script("return document.body.dataset.page") == "overview")
    facts["token_kept"] = bool(driver.execute_script(
        "return sessionStorage.getItem('trino-edge.console.token')"))
    facts["verifier_left"] = driver.execute_script(
        "return sessionStorage.getItem('trino-edge.console.oidc')")
    click("#sign-out")
    wait("signed out", lambda d: d.find_elements(By.CSS_SELECTOR, "#sign-in-oidc"))
    # A provider that refuses sends the browser back with `?error=...`: the console says so on
    # the sign-in page.
    driver.get(f"{admin}/?error=access_denied&error_description=user+said+no&state=x")
    wait("the refusal", lambda d: "user said no" in text("#login-error"))
    facts["refusal"] = text("#login-error")
finally:
    logs = []
    try:
        logs = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    except Exception:  # noqa: BLE001
        pass
    facts["console_errors"] = logs
    driver.quit()
print(json.dumps(facts))
