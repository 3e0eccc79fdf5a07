"""The agent behind egress: it delivers through tinyproxy's CONNECT tunnel, and a SIGHUP applies new proxy/TLS settings."""

from __future__ import annotations

from tests.support.agent import EVENT, AgentUnderTest, wait_for
from tests.support.cli import run
from tests.support.proxy import PASSWORD


def test_reload_applies_proxy_and_trust(https_receiver, auth_proxy, pki):
    agent = AgentUnderTest(https_receiver)  # the private CA is not trusted yet: deliveries fail
    try:
        started = run(["--config", agent.config, "--pidfile", agent.pidfile], env={})
        assert started.code == 0, started.err
        assert all(reply["ok"] for reply in agent.send([EVENT] * 5))
        wait_for(lambda: "not trusted" in (agent.status()["last_error"] or ""), 30, "the certificate to be refused")
        assert "issued by CN=doow-track Test Private CA" in agent.status()["last_error"]
        assert agent.status()["route"]["proxy"] is None
        agent.write_config(proxy=auth_proxy.url, tls={"caFile": pki.ca})
        reloaded = run(["reload", "--config", agent.config, "--json"], secrets=[PASSWORD])
        assert reloaded.code == 0, reloaded.out + reloaded.err
        wait_for(lambda: https_receiver.store.summary()["events"] == 5, 30, "the spooled events to be delivered")
        assert f"CONNECT {https_receiver.url[len('https://'):]} " in auth_proxy.log()
        status = agent.status()
        assert status["route"] == {"proxy": f"http://egress:***@{auth_proxy.address}",
                                   "origin": f"the config file {agent.config}"}
        assert status["trust"].endswith(f"tls.caFile {pki.ca}")
        shown = run(["status", "--config", agent.config], secrets=[PASSWORD])
        assert f"route: proxy http://egress:***@{auth_proxy.address} (from the config file" in shown.out
        assert PASSWORD not in agent.log()
    finally:
        agent.cleanup()
