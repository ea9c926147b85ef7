"""The OpenAI Agents SDK with a function tool, through its chat-completions model, on a
syndicate model.

    python examples/clients/agents_sdk.py --base-url http://127.0.0.1:8080/v1 --model qwen2_5-coder-1_5b
"""

from __future__ import annotations

import argparse
import os

from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return "22 C and sunny" if city.lower() == "paris" else "no data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"))
    parser.add_argument("--model", default="qwen2_5-coder-1_5b")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "unused"))
    parser.add_argument("--question", default="What is the weather in Paris?")
    args = parser.parse_args()
    set_tracing_disabled(True)  # the SDK would export its traces to OpenAI's platform
    model = OpenAIChatCompletionsModel(model=args.model,
                                       openai_client=AsyncOpenAI(base_url=args.base_url, api_key=args.api_key))
    agent = Agent(name="assistant", instructions="Answer briefly; use the tools when they help.",
                  model=model, tools=[get_weather])
    result = Runner.run_sync(agent, args.question)
    for item in result.new_items:
        if item.type == "tool_call_output_item":
            print(f"tool result: {item.output}")
    print(result.final_output)


if __name__ == "__main__":
    main()
