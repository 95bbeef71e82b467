"""The web console in a real browser (headless Chromium from Debian) against a two-node lab
after the story: both ships landed, then rule1, then the xwing turned away. Each page is
screenshotted into artifacts/console/ (gitignored)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.browser import chromium, screenshot, wait_for
from integration.lab.story import L7_POLICY, POLICY, Scenario
from integration.labfixture import running_lab

pytestmark = [pytest.mark.datapath, pytest.mark.timeout(600)]

XWING_EDGE = "default/xwing->default/deathstar"
RULE1_DENY = "default-deny (enforced by default/rule1)"
SHOTS = "console"


@contextlib.contextmanager
def console() -> Iterator[str]:
    """`bulkhead ui` on a free port of this machine, for the lab's control plane (found as
    the CLI finds it: BULKHEAD_STATE_DIR); yields its URL."""
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "ui", "--listen",
                                "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.match(r"bulkhead console: (\S+)", line)
        assert match, f"bulkhead ui said {line!r}"
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)


def set_editor(driver: Any, text: str) -> None:
    """Types the whole text at once (as a paste does): the input event the page listens to."""
    driver.execute_script("const e = document.getElementById('editor'); e.value = arguments[0];"
                          "e.dispatchEvent(new Event('input'));", text)


def click(driver: Any, element: Any) -> None:
    """A click the page handles, also on SVG shapes (which have no click() of their own)."""
    driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', "
                          "{bubbles: true}))", element)


def texts(driver: Any, css: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def edge_text(driver: Any, edge: str) -> str:
    """What an edge of the map says (its SVG text)."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f'g.edge[data-edge="{edge}"]')
    return " ".join(e.get_attribute("textContent") or "" for e in found)


def test_the_console_after_the_story(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with running_lab(tmp_path) as lab:
        story = Scenario(lab.name, env={"BULKHEAD_STATE_DIR": os.environ["BULKHEAD_STATE_DIR"]})
        story.setup()
        assert story.land("tiefighter").stdout.strip() == "Ship landed"
        assert story.land("xwing").stdout.strip() == "Ship landed"
        assert "applied on 2 nodes" in story.apply_policy().stdout
        assert story.land("tiefighter").stdout.strip() == "Ship landed"
        assert story.land("xwing").returncode == 28
        deathstar = f"default/{story.deathstars()[0]}"
        with console() as url, chromium() as driver:
            # Map: the xwing -> deathstar edge is dropped; its flows name the default deny
            # rule1 put the deathstar under.
            driver.get(url + "#map")
            edge = wait_for(driver, lambda d: d.find_element(
                By.CSS_SELECTOR, f'g.edge[data-edge="{XWING_EDGE}"][data-verdict="DROPPED"]'))
            tie = driver.find_element(
                By.CSS_SELECTOR, 'g.edge[data-edge="default/tiefighter->default/deathstar"]')
            assert tie.get_attribute("data-verdict") == "FORWARDED"
            click(driver, edge)
            wait_for(driver, lambda d: RULE1_DENY in texts(d, "#edge-flows td.rule"))
            # flows forwarded before rule1 say that rule1 did not decide them
            assert {r for r in texts(driver, "#edge-flows td.rule")
                    if not r.startswith("policies changed since; now DENIED")} <= {
                RULE1_DENY, "default-allow"}
            screenshot(driver, SHOTS, "map")

            # Flows: only the dropped ones once filtered by verdict; one drilled into.
            driver.get(url + "#flows")
            Select(driver.find_element(By.NAME, "verdict")).select_by_visible_text("DROPPED")
            driver.find_element(By.ID, "flows-apply").click()
            wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#flows-table tbody tr"))
            rows = driver.find_elements(By.CSS_SELECTOR, "#flows-table tbody tr")
            assert {r.get_attribute("data-verdict") for r in rows} == {"DROPPED"}
            assert all("default/xwing" in r.text for r in rows)
            rows[0].click()
            wait_for(driver, lambda d: RULE1_DENY in d.find_element(By.ID, "flow-rule").text)
            screenshot(driver, SHOTS, "flows")

            # Policies: an error is shown at its path (and line) as the API reports it.
            driver.get(url + "#policies")
            wait_for(driver, lambda d: d.find_elements(
                By.CSS_SELECTOR, '#policy-list tr[data-policy="default/rule1"]'))
            set_editor(driver, POLICY.read_text().replace('port: "80"', 'port: "99999"'))
            problem = wait_for(driver, lambda d: d.find_element(
                By.CSS_SELECTOR, 'li[data-field="spec.ingress[0].toPorts[0].ports[0].port"]'))
            assert "must be 1-65535" in problem.text and problem.text.startswith("line ")
            screenshot(driver, SHOTS, "policies-error")

            # What-if: the xwing to a deathstar on 80/TCP is DENIED, with the rule.
            set_editor(driver, "")
            form = driver.find_element(By.ID, "whatif")
            form.find_element(By.NAME, "src").send_keys("default/xwing")
            form.find_element(By.NAME, "dst").send_keys(deathstar)
            driver.find_element(By.ID, "whatif-run").click()
            answer = wait_for(driver, lambda d: d.find_element(
                By.CSS_SELECTOR, '[data-whatif="stored policies"]'))
            assert answer.text.startswith("DENIED") and RULE1_DENY in answer.text
            screenshot(driver, SHOTS, "policies-whatif")

            # Impact: with rule1 removed, the xwing's flows would change (DENIED -> ALLOWED).
            driver.find_element(By.CSS_SELECTOR, 'input[data-remove="default/rule1"]').click()
            driver.find_element(By.ID, "impact-run").click()
            row = wait_for(driver, lambda d: d.find_element(
                By.CSS_SELECTOR, f'#impact-table tr[data-impact="{XWING_EDGE}"]'))
            assert "DENIED" in row.text and "ALLOWED" in row.text
            assert not driver.find_elements(
                By.CSS_SELECTOR, '#impact-table tr[data-impact^="default/tiefighter"]')
            screenshot(driver, SHOTS, "policies-impact")

            # Apply (the demo's L7 rule1, rule1 kept): every node hosting a deathstar applied it.
            driver.find_element(By.CSS_SELECTOR, 'input[data-remove="default/rule1"]').click()
            set_editor(driver, L7_POLICY.read_text())
            wait_for(driver, lambda d: "valid: default/rule1" in d.find_element(
                By.ID, "problems").text)
            driver.find_element(By.ID, "apply-run").click()
            applied = wait_for(driver, lambda d: d.find_element(
                By.CSS_SELECTOR, '#apply-table[data-converged="true"]'))
            states = {r.get_attribute("data-node"): r.text.split()[1] for r in
                      applied.find_elements(By.CSS_SELECTOR, "tr[data-node]")}
            assert states == {"n1": "applied", "n2": "applied"}
            screenshot(driver, SHOTS, "policies-apply")

            # The map summarises the L7 requests the proxies now see on the tiefighter's edge.
            assert story.exhaust("tiefighter").stdout.strip() == "Access denied"
            assert story.land("tiefighter").stdout.strip() == "Ship landed"
            driver.get(url + "#map")
            tie_edge = "default/tiefighter->default/deathstar"
            wait_for(driver, lambda d: "PUT /v1/exhaust-port" in edge_text(d, tie_edge))
            label = edge_text(driver, tie_edge)
            assert "(1 denied)" in label and "POST /v1/request-landing" in label
            screenshot(driver, SHOTS, "map-l7")

            # Cluster: both agents connected, with their acked revisions.
            driver.get(url + "#cluster")
            wait_for(driver, lambda d: len(d.find_elements(
                By.CSS_SELECTOR, "#cluster-nodes tr[data-node]")) == 2)
            agents = [r.find_elements(By.TAG_NAME, "td")[4].text for r in
                      driver.find_elements(By.CSS_SELECTOR, "#cluster-nodes tr[data-node]")]
            assert agents == ["connected", "connected"]
            assert "default/deathstar" in driver.find_element(By.ID, "cluster-services").text
            screenshot(driver, SHOTS, "cluster")
