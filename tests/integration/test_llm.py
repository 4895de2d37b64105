"""LLMAgentNode through the daemon, against local upstreams written here: an OpenAI-compatible server
(/v1/chat/completions with usage) and an Ollama-shaped one (/api/chat). The key travels as a Bearer
token and shows nowhere else (answer, run record, daemon output); a missing variable, error
statuses, a timeout, garbage and an oversize answer are mapped as HTTP nodes map them; a client
leaving cancels the call; the mock provider answers as the SDK's (recorded from the SDK itself)."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import assert_error
from wfs import node, wf

SECRET = "sk-itest-5d2c9e41f0aa77b3"
SEEN = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n) or b"{}")
        SEEN.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        p = self.path
        if p.startswith("/s500/"):
            return self.send(500, {"error": {"message": "boom " + SECRET, "type": "server_error"}})
        if p.startswith("/s429/"):
            return self.send(429, {"error": {"message": "key " + SECRET, "code": "rate_limit_exceeded"}})
        if p.startswith("/garbage/"):
            return self.send(200, b"<html>not json", "text/html")
        if p.startswith("/huge/"):
            return self.send(200, b" " * (3 << 20))
        if p.startswith("/slow/"):
            time.sleep(3)
        if p.endswith("/api/chat"):
            return self.send(200, {"model": body["model"], "message": {"role": "assistant", "content": "ollama says hi"},
                                   "done": True, "done_reason": "stop", "prompt_eval_count": 9, "eval_count": 4})
        return self.send(200, {"id": "c1", "model": body["model"], "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "echo: " + body["messages"][-1]["content"]},
             "finish_reason": "stop"}], "usage": {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}})


@pytest.fixture(scope="module")
def llm_port():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


def agent(port, prefix="", **kw):
    cfg = {"provider": "openai", "base_url": "http://127.0.0.1:%d%s" % (port, prefix), "model": "gpt-4",
           "max_retries": 0, "messages": [{"role": "user", "content": "{{inputs.q}}"}]}
    cfg.update(kw)
    return wf({"chat": node("LLMAgentNode", **cfg)})


# The SDK's LLMAgentNode(provider="mock") output for these inputs, recorded with kailash-py's
# kaizen.nodes.ai.llm_agent at e5e220aa (response.id left out: the SDK's is a randomised hash).
SDK_MOCK = {
    "success": True,
    "response": {"content": "Regarding your question about 'What is 2+2?...', here's what I found from the "
                            "available context and resources...", "role": "assistant", "model": "mock-model",
                 "created": 1701234567, "tool_calls": [], "finish_reason": "stop",
                 "usage": {"prompt_tokens": 5, "completion_tokens": 28, "total_tokens": 0}},
    "conversation_id": None,
    "usage": {"prompt_tokens": 5, "completion_tokens": 28, "total_tokens": 0, "estimated_cost_usd": 0.00183,
              "model": "gpt-4", "provider": "mock", "efficiency_score": 0.0},
    "context": {"mcp_resources_used": 0, "rag_documents_retrieved": 0, "tools_available": 0, "tools_executed": 0,
                "memory_tokens": 0},
    "metadata": {"provider": "mock", "model": "gpt-4", "langchain_used": False, "streaming": False,
                 "generation_config": {}},
}


@pytest.fixture(scope="module")
def d(module_daemons, llm_port):
    p = llm_port
    workflows = {
        "chat": agent(p, api_key_env="LLM_TEST_KEY"),
        "chat_v1": agent(p, "/v1"),
        "ollama": wf({"chat": node("LLMAgentNode", provider="ollama", base_url="http://127.0.0.1:%d" % p,
                                   model="llama3", max_tokens=32,
                                   messages=[{"role": "user", "content": "{{inputs.q}}"}])}),
        "nokey": agent(p, api_key_env="LLM_UNSET_KEY"),
        "s500": agent(p, "/s500", api_key_env="LLM_TEST_KEY"),
        "s429": agent(p, "/s429", api_key_env="LLM_TEST_KEY"),
        "garbage": agent(p, "/garbage"),
        "huge": agent(p, "/huge"),
        "slow": agent(p, "/slow", timeout=0.5),
        "slow_long": agent(p, "/slow", timeout=30),
        "mock": wf({"chat": node("LLMAgentNode", provider="mock", model="gpt-4", system_prompt="Be brief",
                                 messages=[{"role": "user", "content": "What is 2+2?"}])}),
    }
    return module_daemons.make(workflows=workflows, env={"LLM_TEST_KEY": SECRET})


def no_secret(*texts):
    for t in texts:
        assert SECRET not in t and SECRET[:12] not in t


def test_openai_call_sends_the_key_as_bearer_and_never_shows_it(d):
    SEEN.clear()
    r = d.execute("chat", inputs={"q": "hello"})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]["chat"]
    assert out["success"] is True
    assert out["response"]["content"] == "echo: hello"
    assert out["response"]["finish_reason"] == "stop"
    assert out["usage"]["prompt_tokens"] == 11 and out["usage"]["total_tokens"] == 17
    assert out["metadata"]["provider"] == "openai"
    assert SEEN[-1]["auth"] == "Bearer " + SECRET
    assert SEEN[-1]["path"] == "/v1/chat/completions"
    assert SEEN[-1]["body"]["model"] == "gpt-4"
    rec = d.get("/runs/" + r.json()["run_id"])
    assert rec.status_code == 200, rec.text
    assert rec.json()["outputs"]["chat"]["usage"]["total_tokens"] == 17
    no_secret(r.text, rec.text, d.get("/workflows/chat").text, d.stdout(), d.stderr())


def test_base_url_ending_in_v1_and_no_key(d):
    SEEN.clear()
    r = d.execute("chat_v1", inputs={"q": "x"})
    assert r.status_code == 200, r.text
    assert SEEN[-1]["path"] == "/v1/chat/completions"
    assert SEEN[-1]["auth"] is None


def test_ollama_call(d):
    SEEN.clear()
    r = d.execute("ollama", inputs={"q": "hey"})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]["chat"]
    assert out["response"]["content"] == "ollama says hi"
    assert out["usage"]["prompt_tokens"] == 9 and out["usage"]["completion_tokens"] == 4
    assert out["usage"]["total_tokens"] == 13
    assert SEEN[-1]["path"] == "/api/chat"
    assert SEEN[-1]["body"]["stream"] is False
    assert SEEN[-1]["body"]["options"] == {"num_predict": 32}


def test_missing_env_var_is_a_node_error_naming_it(d):
    err = assert_error(d.execute("nokey", inputs={"q": "x"}), 500, "internal")
    assert "LLM_UNSET_KEY is not set" in err["message"], err
    assert err["details"]["node"] == "chat", err


def test_error_statuses_are_answers_without_the_upstream_text(d):
    for name, want in (("s500", "HTTP 500: server_error"), ("s429", "HTTP 429: rate_limit_exceeded")):
        r = d.execute(name, inputs={"q": "x"})
        assert r.status_code == 200, r.text
        out = r.json()["outputs"]["chat"]
        assert out["success"] is False and want in out["error"], out
        assert out["status_code"] == int(name[1:])
        no_secret(r.text, d.get("/runs/" + r.json()["run_id"]).text)
    no_secret(d.stdout(), d.stderr())


def test_garbage_huge_and_timeout_are_upstream_errors(d):
    for name in ("garbage", "huge", "slow"):
        err = assert_error(d.execute(name, inputs={"q": "x"}), 502, "upstream_error")
        assert err["details"]["node"] == "chat", err


def test_a_request_may_not_redirect_the_call(d):
    r = d.execute("chat", inputs={"q": "x"}, body={"parameters": {"chat": {"base_url": "http://127.0.0.1:1"}}})
    assert r.status_code == 400, r.text
    r = d.execute("chat", inputs={"q": "x"}, body={"parameters": {"chat": {"api_key_env": "HOME"}}})
    assert r.status_code == 400, r.text


def test_a_client_leaving_cancels_the_call(d):
    s = socket.create_connection(("127.0.0.1", d.port))
    body = json.dumps({"inputs": {"q": "x"}}).encode()
    s.sendall(b"POST /workflows/slow_long/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(0.5)
    s.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        runs = d.get("/runs?workflow=slow_long").json()
        items = runs.get("runs", runs.get("items", [])) if isinstance(runs, dict) else runs
        if items and items[0].get("status") == "cancelled":
            break
        time.sleep(0.2)
    assert items and items[0].get("status") == "cancelled", runs


def test_mock_provider_answers_as_the_sdk(d):
    r = d.execute("mock")
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]["chat"]
    assert out["response"].pop("id").startswith("msg_")
    assert out == SDK_MOCK
