"""A LangGraph ReAct agent (``create_react_agent`` through ``langchain-openai``) with a
Python tool, on a syndicate model.

    python examples/clients/langgraph_react.py --base-url http://127.0.0.1:8080/v1 --model qwen2_5-coder-1_5b
"""

from __future__ import annotations

import argparse
import os

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"))
    parser.add_argument("--model", default="qwen2_5-coder-1_5b")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "unused"))
    parser.add_argument("--question", default="What is 1234 times 5678?")
    args = parser.parse_args()
    llm = ChatOpenAI(model=args.model, base_url=args.base_url, api_key=args.api_key, temperature=0)
    agent = create_react_agent(llm, [multiply])
    state = agent.invoke({"messages": [("user", args.question)]})
    for message in state["messages"]:
        for call in getattr(message, "tool_calls", None) or []:
            print(f"tool {call['name']}({call['args']})")
        if message.type == "tool":
            print(f"tool result: {message.content}")
    print(state["messages"][-1].content)


if __name__ == "__main__":
    main()
