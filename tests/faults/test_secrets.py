"""The key never leaks: one fault run whose every output is collected and searched for it."""

from __future__ import annotations

import json
import os
import signal
from typing import List

from doow_track_agent.receiver.faults import Faults
from tests.support.agent import EVENT, AgentUnderTest, wait_for
from tests.support.cli import KEY, Result


def test_the_key_never_appears_in_any_output_of_a_fault_run(receiver, ledger):
    agent = AgentUnderTest(receiver)
    outputs: List[str] = []
    results: List[Result] = []

    def cli(*args: str, stdin: bytes = None) -> Result:
        result = agent.cli(*args, stdin=stdin)
        results.append(result)
        outputs.extend((result.out, result.err))
        return result

    def observe() -> None:
        for path in ("/status", "/metrics", "/readyz", "/healthz"):
            outputs.append(agent.get(path)[1])
        with open(f"/proc/{agent.pid}/cmdline", "rb") as handle:
            outputs.append(handle.read().decode(errors="replace"))

    tailed = os.path.join(agent.dir, "usage.jsonl")
    with open(tailed, "w") as handle:  # the key in bad lines: schema errors quote values
        handle.write(json.dumps(EVENT) + "\n" + json.dumps({**EVENT, "quantity": KEY}) + "\n"
                     + json.dumps({**EVENT, "metadata": {"auth": f"Bearer {KEY}"}}) + "\n")
    agent.write_config(input={"mode": "file", "path": tailed})
    try:
        receiver.set_faults(Faults(fail_first=1, fail_status=401))
        assert cli("--config", agent.config, "--pidfile", agent.pidfile).code == 0
        wait_for(lambda: agent.status()["key_rejected"], 30, "the key rejected")
        observe()
        cli("reload", "--config", agent.config, "--json")  # as after rotating the key: retry at once
        wait_for(lambda: agent.status()["counters"]["delivered"] >= 1, 30, "delivery after the 401")
        receiver.set_faults(Faults(fail_first=4, fail_status=500))
        cli("send", "--config", agent.config, "--json", json.dumps(EVENT), json.dumps({**EVENT, "license_id": KEY}),
            json.dumps({**EVENT, "quantity": KEY}))
        receiver.set_faults(Faults(reset_first=2))
        cli("status", "--config", agent.config, "--json")
        observe()
        agent.kill(signal.SIGKILL)
        assert cli("--config", agent.config, "--pidfile", agent.pidfile).code == 0
        observe()
        with open(agent.config, "w") as handle:
            handle.write('{"apiKey": "%s", "flushAt": "x"}' % KEY)
        os.chmod(agent.config, 0o600)
        cli("reload", "--config", agent.config, "--pidfile", agent.pidfile, "--json")
        cli("check", "--config", agent.config, "--json")
        agent.write_config()
        os.chmod(agent.config, 0o644)  # a key readable by others: warned in pipe mode, refused by the agent
        cli("check", "--config", agent.config, "--json")
        refused = cli("reload", "--config", agent.config, "--json")
        assert refused.code == 78 and "readable by other users" in (refused.out + refused.err)
        os.chmod(agent.config, 0o600)
        observe()
        cli("stop", "--config", agent.config, "--json")
        os.chmod(agent.config, 0o644)
        second = cli("--config", agent.config, "--pidfile", agent.pidfile)
        assert second.code == 78 and "readable by other users" in second.err and agent.pid is None
        outputs.append(agent.log())
    finally:
        agent.cleanup()
    assert all(KEY not in text for text in outputs), [text for text in outputs if KEY in text][0][:2000]
    assert any("dk_…5c1e" in text for text in outputs), "the masked form should be what is shown"
    # The row counts outputs searched (as "sent") and outputs holding the key (as "lost").
    ledger.record(sent=len(outputs), acknowledged=0, stored=0, duplicates=0,
                  lost=sum(KEY in text for text in outputs))

