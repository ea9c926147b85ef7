"""Tool-call validity of the syndicate's models through its OpenAI API: a fixed set of
requests (one to three tools each, ``tool_choice`` auto, temperature 0), some where a tool
fits and some where none does. A response counts as **valid** when it is a schema-valid
call of the right tool (where one fits) or a plain answer (where none does); the gateway
never passes a broken call on (it becomes flagged text), so a broken one counts against.
Also reported: the calls whose arguments hold the expected values, and the time taken.

The stack is a real nats-server, one reasoner-agent holding each model in turn (its own
cores) and a gateway; the requests use the official ``openai`` client. Heavy: run under
``flock /work/wt/heavy.lock``.

    python bench/tool_calls.py [--quick] [--models qwen2_5-coder-0_5b,qwen2_5-coder-1_5b] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _baseline import scrubbed_env
from _common import emit, nats_server
from model_serving import free_port, wait_for
from openai import OpenAI

REPO = Path(__file__).resolve().parent.parent


def fn(name: str, description: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": list(properties) if required is None else required}}}


S, INT, NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}
WEATHER = fn("get_weather", "Get the current weather in a city", {"city": S, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, ["city"])
MULTIPLY = fn("multiply", "Multiply two integers", {"a": INT, "b": INT})
SEARCH = fn("search_web", "Search the web and return the top results", {"query": S})
EMAIL = fn("send_email", "Send an email", {"to": S, "subject": S, "body": S})
STOCK = fn("get_stock_price", "Get the latest price of a stock by its ticker symbol", {"ticker": S})
CURRENCY = fn("convert_currency", "Convert an amount of money between currencies",
              {"amount": NUM, "from_currency": S, "to_currency": S})
EVENT = fn("create_event", "Create a calendar event", {"title": S, "date": {"type": "string", "description": "YYYY-MM-DD"}},
           ["title", "date"])
TRANSLATE = fn("translate", "Translate a text into another language", {"text": S, "target_language": S})
TIME = fn("get_time", "Get the current time in a time zone", {"timezone": {"type": "string", "description": "IANA name"}})

# (question, tools, the tool that fits or None, expected argument values (lower-cased substrings))
CASES: list[tuple[str, list[dict[str, Any]], str | None, dict[str, Any]]] = [
    ("What is the weather in Paris?", [WEATHER], "get_weather", {"city": "paris"}),
    ("What is 1234 times 5678?", [MULTIPLY], "multiply", {"a": 1234, "b": 5678}),
    ("Is it raining in Tokyo right now? Use fahrenheit.", [WEATHER, STOCK], "get_weather", {"city": "tokyo", "unit": "fahrenheit"}),
    ("What's Apple's stock price? The ticker is AAPL.", [WEATHER, STOCK], "get_stock_price", {"ticker": "aapl"}),
    ("Multiply 17 by 23.", [MULTIPLY, WEATHER, SEARCH], "multiply", {"a": 17, "b": 23}),
    ("Search the web for the latest Python release notes.", [SEARCH, EMAIL], "search_web", {"query": "python"}),
    ("Send an email to bob@example.com with the subject Lunch and the body 'See you at noon'.", [EMAIL, SEARCH],
     "send_email", {"to": "bob@example.com", "subject": "lunch"}),
    ("Convert 100 US dollars to euros.", [CURRENCY, STOCK], "convert_currency", {"amount": 100}),
    ("Put a meeting called Design review on my calendar for 2026-12-10.", [EVENT, EMAIL], "create_event",
     {"title": "design review", "date": "2026-12-10"}),
    ("Translate 'good morning' into Spanish.", [TRANSLATE, SEARCH], "translate", {"target_language": "spanish"}),
    ("What time is it in Europe/Berlin?", [TIME, WEATHER], "get_time", {"timezone": "europe/berlin"}),
    ("How warm is it in Cairo today?", [WEATHER, TIME, CURRENCY], "get_weather", {"city": "cairo"}),
    ("What does a share of MSFT cost right now?", [STOCK, CURRENCY, SEARCH], "get_stock_price", {"ticker": "msft"}),
    ("I need 250 British pounds in Japanese yen.", [CURRENCY], "convert_currency", {"amount": 250}),
    ("What is 99 multiplied by 101?", [MULTIPLY, CURRENCY], "multiply", {"a": 99, "b": 101}),
    ("Find news about the Mars rover on the web.", [SEARCH, WEATHER, STOCK], "search_web", {"query": "mars"}),
    ("Email alice@example.com: subject 'Report', body 'The report is attached.'", [EMAIL], "send_email",
     {"to": "alice@example.com"}),
    # No tool fits: a plain answer is right.
    ("Write a haiku about autumn leaves.", [WEATHER, STOCK], None, {}),
    ("What is the capital of France?", [MULTIPLY], None, {}),
    ("Explain what a Python list comprehension is, in one sentence.", [EMAIL, SEARCH], None, {}),
    ("Say hello in a friendly way.", [CURRENCY], None, {}),
    ("Write a Python function that reverses a string.", [WEATHER, TIME], None, {}),
    ("What is the difference between a list and a tuple in Python?", [STOCK, EVENT, TRANSLATE], None, {}),
    ("Give me a synonym for 'happy'.", [MULTIPLY, TIME], None, {}),
    ("Tell me a short joke about programmers.", [SEARCH], None, {}),
]


def judge(reply: Any, expected: str | None, args: dict[str, Any]) -> dict[str, Any]:
    choice = reply.choices[0]
    calls = choice.message.tool_calls or []
    extra = (reply.model_extra or {}).get("syndicate", {})
    out = {"calls": [c.function.name for c in calls], "invalid": len(extra.get("invalid_tool_calls", [])),
           "finish": choice.finish_reason}
    if expected is None:
        out["valid"] = not calls and bool((choice.message.content or "").strip()) and not out["invalid"]
        out["args_ok"] = None
        return out
    out["valid"] = bool(calls) and calls[0].function.name == expected and not out["invalid"]
    if out["valid"]:
        got = json.loads(calls[0].function.arguments)
        out["args_ok"] = all(str(v).lower() in str(got.get(k, "")).lower() for k, v in args.items())
    else:
        out["args_ok"] = False
    return out


def run_model(model: str, threads: int, cases: list[Any]) -> dict[str, Any]:
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:threads])
    state = tempfile.mkdtemp(prefix="bench-tools-")
    port = free_port()
    log = open(Path(state) / "services.log", "wb")  # noqa: SIM115 - closed with the processes
    procs: list[subprocess.Popen[bytes]] = []
    with nats_server() as url:
        env = {**scrubbed_env(), "SYNDICATE_NATS_URL": url, "SYNDICATE_STATE_DIR": state, "PYTHONPATH": str(REPO),
               "SYNDICATE_LOG_LEVEL": "WARNING", "SYNDICATE_GATEWAY_PORT": str(port)}
        agent_env = {**env, "SYNDICATE_CPUS": cpus, "OMP_NUM_THREADS": str(threads),
                     "SYNDICATE_MODEL_REASONER_MODEL": model, "SYNDICATE_MODEL_REASONER_SPECULATIVE": "off"}
        procs.append(subprocess.Popen([sys.executable, "-m", "services.reasoner_agent"], env=agent_env, cwd=REPO,
                                      stdout=log, stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen([sys.executable, "-m", "services.gateway"], env=env, cwd=REPO,
                                      stdout=log, stderr=subprocess.STDOUT))
        try:
            base = f"http://127.0.0.1:{port}/v1"
            wait_for(base, model)
            client = OpenAI(base_url=base, api_key="x", max_retries=0, timeout=600)
            t0 = time.perf_counter()
            judged = []
            for question, tools, expected, args in cases:
                reply = client.chat.completions.create(model=model, temperature=0.0, max_tokens=256, tools=tools,  # type: ignore[arg-type]
                                                       messages=[{"role": "user", "content": question}])
                judged.append({"question": question, "expected": expected, **judge(reply, expected, args)})
            seconds = time.perf_counter() - t0
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
            log.close()
    fits = [j for j in judged if j["expected"]]
    none = [j for j in judged if not j["expected"]]
    for j in judged:
        if not j["valid"]:
            print(f"  {model}: not valid: {j}", file=sys.stderr)
    return {
        "validity": round(sum(j["valid"] for j in judged) / len(judged), 3),
        "right_tool": round(sum(j["valid"] for j in fits) / len(fits), 3) if fits else None,
        "plain_where_none_fits": round(sum(j["valid"] for j in none) / len(none), 3) if none else None,
        "args_ok": round(sum(bool(j["args_ok"]) for j in fits) / len(fits), 3) if fits else None,
        "invalid_calls": sum(j["invalid"] for j in judged), "requests": len(judged), "seconds": round(seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="qwen2_5-coder-0_5b,qwen2_5-coder-1_5b")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--quick", action="store_true", help="every third request")
    args = ap.parse_args()
    cases = CASES[::3] if args.quick else CASES
    result: dict[str, Any] = {"requests": len(cases), "threads": args.threads}
    for model in args.models.split(","):
        result[model] = run_model(model, args.threads, cases)
        print(json.dumps({model: result[model]}), file=sys.stderr)
    result["uptime"] = Path("/proc/loadavg").read_text().split()[:3]
    emit(result)


if __name__ == "__main__":
    main()
