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


def texts(driver: Any, css: str, attribute: str = "") -> list[str]:
    """The text (or `attribute`) of every element matching `css`, read in one script: the
    live pages redraw, so element handles kept across calls can go stale."""
    return list(driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map((e) => "
        "arguments[1] ? e.getAttribute(arguments[1]) : e.textContent);", css, attribute))


def click_css(driver: Any, css: str) -> None:
    """Clicks the element matching `css` as found now (also an SVG shape)."""
    driver.execute_script("document.querySelector(arguments[0]).dispatchEvent("
                          "new MouseEvent('click', {bubbles: true}))", css)


def edge_text(driver: Any, edge: str) -> str:
    """What an edge of the map says (its SVG text)."""
    return " ".join(texts(driver, f'g.edge[data-edge="{edge}"]'))


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
            xwing_css = f'g.edge[data-edge="{XWING_EDGE}"]'
            wait_for(driver, lambda d: texts(d, xwing_css, "data-verdict") == ["DROPPED"])
            assert texts(driver, 'g.edge[data-edge="default/tiefighter->default/deathstar"]',
                         "data-verdict") == ["FORWARDED"]
            click_css(driver, xwing_css)
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
            assert set(texts(driver, "#flows-table tbody tr", "data-verdict")) == {"DROPPED"}
            rows = texts(driver, "#flows-table tbody tr")
            assert all("default/xwing" in r for r in rows)
            click_css(driver, "#flows-table tbody tr")
            wait_for(driver, lambda d: RULE1_DENY in d.find_element(By.ID, "flow-rule").text)
            screenshot(driver, SHOTS, "flows")
            # Paused, new drops wait outside the table; resumed, they are added.
            shown = len(rows)
            driver.find_element(By.ID, "flows-pause").click()
            assert story.land("xwing").returncode == 28
            wait_for(driver, lambda d: re.search(r"paused, [1-9]\d* waiting",
                                                 d.find_element(By.ID, "flows-info").text))
            assert len(driver.find_elements(By.CSS_SELECTOR, "#flows-table tbody tr")) == shown
            driver.find_element(By.ID, "flows-pause").click()
            assert len(driver.find_elements(By.CSS_SELECTOR, "#flows-table tbody tr")) > shown
            # By IP: a bad address is refused at its field; the tiefighter's address narrows
            # the table to the flows it sent (of both verdicts: the filter is reset to any).
            Select(driver.find_element(By.NAME, "verdict")).select_by_visible_text("any")
            from_ip = driver.find_element(By.NAME, "from-ip")
            from_ip.send_keys("10.0.0.300")
            driver.find_element(By.ID, "flows-apply").click()
            wait_for(driver, lambda d: d.find_element(By.ID, "flows-error").is_displayed())
            assert "From IP: expected an IPv4 or IPv6 address, got '10.0.0.300'" in \
                driver.find_element(By.ID, "flows-error").text
            assert texts(driver, "#flow-filters .invalid", "name") == ["from-ip"]
            from_ip.clear()
            from_ip.send_keys(story.ip("tiefighter"))
            driver.find_element(By.ID, "flows-apply").click()
            wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#flows-table tbody tr"))
            assert not driver.find_element(By.ID, "flows-error").is_displayed()
            assert not texts(driver, "#flow-filters .invalid", "name")
            sources = texts(driver, "#flows-table tbody td:nth-child(3)")
            assert sources and all(s.startswith("default/tiefighter") for s in sources), sources
            assert "FORWARDED" in texts(driver, "#flows-table tbody tr", "data-verdict")
            screenshot(driver, SHOTS, "flows-from-ip")

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
            wait_for(driver, lambda d: d.find_elements(
                By.CSS_SELECTOR, '#apply-table[data-converged="true"]'))
            states = dict(zip(texts(driver, "#apply-table tr[data-node]", "data-node"),
                              texts(driver, "#apply-table tr[data-node] td:nth-child(2)"),
                              strict=True))
            assert states == {"n1": "applied", "n2": "applied"}
            screenshot(driver, SHOTS, "policies-apply")

            # The map summarises the L7 requests the proxies now see on the tiefighter's edge.
            assert story.exhaust("tiefighter").stdout.strip() == "Access denied"
            assert story.land("tiefighter").stdout.strip() == "Ship landed"
            driver.get(url + "#map")
            tie_edge = "default/tiefighter->default/deathstar"
            # Both requests' flows reach the console through the relay's polling, one after the
            # other: wait for the later one too.
            wait_for(driver, lambda d: "PUT /v1/exhaust-port" in edge_text(d, tie_edge)
                     and "POST /v1/request-landing" in edge_text(d, tie_edge))
            label = edge_text(driver, tie_edge)
            assert "(1 denied)" in label and "POST /v1/request-landing" in label
            screenshot(driver, SHOTS, "map-l7")

            # Cluster: both agents connected, with their acked revisions.
            driver.get(url + "#cluster")
            wait_for(driver, lambda d: len(d.find_elements(
                By.CSS_SELECTOR, "#cluster-nodes tr[data-node]")) == 2)
            agents = texts(driver, "#cluster-nodes tr[data-node] td:nth-child(5)")
            assert agents == ["connected", "connected"]
            assert "default/deathstar" in " ".join(texts(driver, "#cluster-services"))
            screenshot(driver, SHOTS, "cluster")
