"""The OpenAI-compatible pairwise judge against a stub server on 127.0.0.1: request body, position
alternation, verdict parsing, retries, auth header, failures."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mgs.errors import ConfigError
from mgs.eval.config import EvalConfig, JudgeConfig
from mgs.eval.judge import (
    JUDGE_SYSTEM_PROMPT,
    ChatJudge,
    JudgeError,
    build_request,
    endpoint,
    outcome,
    parse_verdict,
    redact,
    split_credentials,
)
from mgs.eval.result import EvalResult


class StubJudge(BaseHTTPRequestHandler):
    """Prefers the assistant whose answer contains GOOD ([[C]] when both or neither do).

    A question containing FLAKY fails with HTTP 500 on its first request; UNREADABLE gets an
    answer without a verdict; DOWN always fails; ECHO fails with HTTP 401 and a body that echoes
    the request's Authorization header (as some misconfigured servers and proxies do), the key
    itself starting at character 190, across the 200-character cut of the error text.
    """

    requests: list[dict] = []  # noqa: RUF012 - shared by the handler instances of one server
    headers_seen: list[dict] = []  # noqa: RUF012
    flaky_seen: set[str] = set()  # noqa: RUF012

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body})
        type(self).headers_seen.append(dict(self.headers))
        user = body["messages"][1]["content"]
        question = user.split("[User Question]\n", 1)[1].split("\n\n", 1)[0]
        if "ECHO" in question:
            auth = self.headers.get("Authorization", "")
            secret = auth.split(" ", 1)[-1]
            body = "." * 190 + f"{secret} was refused; you sent Authorization: {auth}"
            self.send_response(401)
            self.end_headers()
            self.wfile.write(body.encode())
            return
        if "DOWN" in question or ("FLAKY" in question and question not in self.flaky_seen):
            type(self).flaky_seen.add(question)
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"overloaded")
            return
        a = user.split("[The Start of Assistant A's Answer]\n", 1)[1].split("\n[The End", 1)[0]
        b = user.split("[The Start of Assistant B's Answer]\n", 1)[1].split("\n[The End", 1)[0]
        if "UNREADABLE" in question:
            text = "I cannot decide."
        elif ("GOOD" in a) == ("GOOD" in b):
            text = "Both are equally fine. [[C]]"
        else:
            text = f"Assistant {'A' if 'GOOD' in a else 'B'} is better. [[{'A' if 'GOOD' in a else 'B'}]]"
        payload = {"choices": [{"message": {"role": "assistant", "content": text}}]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def server(monkeypatch):
    for name in ("no_proxy", "NO_PROXY"):  # never send the local requests through a proxy
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    StubJudge.requests, StubJudge.headers_seen, StubJudge.flaky_seen = [], [], set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StubJudge)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _cfg(url: str, **extra) -> JudgeConfig:
    return JudgeConfig(url=url, model="judge-x", api_key_env="MGS_TEST_JUDGE_KEY", **extra)


def test_request_body_puts_ours_first_on_even_samples_and_second_on_odd():
    cfg = _cfg("http://127.0.0.1:1/v1", max_tokens=77)
    even = build_request(cfg, "Q?", "OURS", "REF", 0)
    odd = build_request(cfg, "Q?", "OURS", "REF", 1)
    assert even["model"] == "judge-x" and even["max_tokens"] == 77 and even["temperature"] == 0
    assert even["messages"][0] == {"role": "system", "content": JUDGE_SYSTEM_PROMPT}
    user_even, user_odd = even["messages"][1]["content"], odd["messages"][1]["content"]
    assert user_even.startswith("[User Question]\nQ?\n\n")
    assert (
        "Assistant A's Answer]\nOURS\n" in user_even and "Assistant B's Answer]\nREF\n" in user_even
    )
    assert (
        "Assistant A's Answer]\nREF\n" in user_odd and "Assistant B's Answer]\nOURS\n" in user_odd
    )


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("A is more helpful. [[A]]", "A"),
        ("[[B]]", "B"),
        ("Tie. [[C]]", "tie"),
        ("I first thought [[A]] but on reflection [[B]]", "B"),  # the last verdict counts
        ("[[ a ]]", "A"),
        ("B", "B"),
        ("Assistant A.", "A"),
        ("tie", "tie"),
        ("A and B are both wrong", None),
        ("", None),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_outcome_maps_the_verdict_through_our_position():
    assert outcome("A", "A") == 1.0 and outcome("B", "A") == 0.0
    assert outcome("B", "B") == 1.0 and outcome("A", "B") == 0.0
    assert outcome("tie", "A") == 0.5 and outcome(None, "B") is None


def test_endpoint_appends_chat_completions_once():
    assert endpoint("http://h:8000/v1") == "http://h:8000/v1/chat/completions"
    assert endpoint("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert endpoint("http://h/v1/chat/completions") == "http://h/v1/chat/completions"


def test_judge_against_stub_server(server, monkeypatch):
    monkeypatch.setenv("MGS_TEST_JUDGE_KEY", "sk-test")
    questions = ["q0", "q1", "q2 FLAKY", "q3", "q4 UNREADABLE", "q5"]
    ours = ["GOOD answer", "GOOD answer", "GOOD", "meh", "GOOD", None]
    refs = ["bad", "bad", "bad", "GOOD ref", "bad", "bad"]
    done = []
    results = ChatJudge(_cfg(server)).judge(questions, ours, refs, on_done=lambda: done.append(1))
    # ours wins whether it sits in position A (even) or B (odd); the flaky one after a retry
    assert [r.ours_position for r in results] == ["A", "B", "A", "B", "A", "B"]
    assert [r.verdict for r in results[:4]] == ["A", "B", "A", "A"]
    assert [r.win for r in results] == [1.0, 1.0, 1.0, 0.0, None, 0.0]
    assert results[4].verdict is None and results[4].raw == "I cannot decide."
    assert results[5].raw.startswith("no response")  # missing response: a loss, no request
    assert len(done) == 6
    paths = {r["path"] for r in StubJudge.requests}
    assert paths == {"/v1/chat/completions"}
    assert len(StubJudge.requests) == 6  # 5 samples asked + 1 retry of the flaky one
    assert all(h.get("Authorization") == "Bearer sk-test" for h in StubJudge.headers_seen)
    assert all(r["body"]["model"] == "judge-x" for r in StubJudge.requests)


def test_judge_ties_and_no_key(server, monkeypatch):
    monkeypatch.delenv("MGS_TEST_JUDGE_KEY", raising=False)
    results = ChatJudge(_cfg(server)).judge(["q"], ["GOOD"], ["GOOD too"])
    assert results[0].verdict == "tie" and results[0].win == 0.5
    assert "Authorization" not in StubJudge.headers_seen[0]


def test_a_judge_that_never_answers_is_an_error(server):
    with pytest.raises(JudgeError, match="check --judge-url"):
        ChatJudge(_cfg(server, retries=0)).judge(["DOWN 1", "DOWN 2"], ["x", "y"], ["r", "r"])


def test_judge_config_errors_say_what_to_write():
    with pytest.raises(ConfigError, match="http://"):
        JudgeConfig(url="localhost:8000", model="m")
    with pytest.raises(ConfigError, match="http://") as bad:
        JudgeConfig(url="bob:s3cret@localhost:8000", model="m")
    assert "s3cret" not in str(bad.value)
    with pytest.raises(ConfigError, match="--judge-model"):
        JudgeConfig(url="http://127.0.0.1:8000/v1", model="")


# ------------------------------------------------------------- issue 12: secrets never leak

KEY = "K3y-Very-Secret-Value-42"  # matches no token pattern: only the key itself can redact it


def test_redact_hides_the_key_and_token_shaped_text():
    text = (
        f'body {KEY} | Authorization: Bearer abc.def | {{"api_key": "zz9"}} | x-api-key=q1 | '
        "sk-abcdefghijklmnop | http://bob:pw@host/v1 | Basic dXNlcjpwdw=="
    )
    assert redact(text, [KEY]) == (
        'body [redacted] | Authorization: Bearer [redacted] | {"api_key": "[redacted]"} | '
        "x-api-key=[redacted] | [redacted] | http://[redacted]@host/v1 | Basic [redacted]"
    )
    assert redact("no secret here: 2 + 2 = 4", [""]) == "no secret here: 2 + 2 = 4"


def test_split_credentials():
    assert split_credentials("https://bob:p%40ss@h:8000/v1") == ("https://h:8000/v1", "bob", "p@ss")
    assert split_credentials("http://h/v1") == ("http://h/v1", None, None)


def test_an_error_body_echoing_the_key_never_shows_it(server, monkeypatch):
    monkeypatch.setenv("MGS_TEST_JUDGE_KEY", KEY)
    judge = ChatJudge(_cfg(server, retries=0))
    result = judge.judge(["ECHO 1", "q"], ["x", "GOOD"], ["r", "bad"])[0]
    assert result.verdict is None and result.raw.startswith("HTTP 401: ....")
    # Before: the first 10 characters of the key were in the 200-character cut.
    assert KEY[:6] not in result.raw and "[redacted]" in result.raw
    with pytest.raises(JudgeError) as failed:
        judge.judge(["ECHO 2"], ["x"], ["r"])
    assert KEY[:6] not in str(failed.value) and "HTTP 401" in str(failed.value)


def test_url_credentials_go_as_basic_auth_and_are_never_shown_or_saved(server, monkeypatch):
    monkeypatch.delenv("MGS_TEST_JUDGE_KEY", raising=False)
    url = server.replace("http://", "http://alice:pw%2Fs3cret@")
    judge = ChatJudge(_cfg(url, retries=0))
    assert judge.judge(["q"], ["GOOD"], ["bad"])[0].win == 1.0  # urllib alone cannot use them
    assert StubJudge.headers_seen[-1]["Authorization"] == "Basic YWxpY2U6cHcvczNjcmV0"
    results = judge.judge(["ECHO", "q"], ["x", "GOOD"], ["bad", "bad"])
    assert "s3cret" not in results[0].raw and "YWxpY2U6cHcvczNjcmV0" not in results[0].raw
    with pytest.raises(JudgeError) as failed:
        judge.judge(["DOWN"], ["x"], ["r"])
    assert "alice" not in str(failed.value) and "s3cret" not in str(failed.value)
    saved = EvalResult("m", EvalConfig(judge=_cfg(url)), {}).to_dict()
    assert saved["config"]["judge"]["url"] == server  # what the results JSON holds
    assert "s3cret" not in json.dumps(saved)
