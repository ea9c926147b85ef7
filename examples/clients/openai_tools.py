"""The official OpenAI client calling a tool through a syndicate model.

    python examples/clients/openai_tools.py --base-url http://127.0.0.1:8080/v1 --model qwen2_5-coder-1_5b

The model asks for ``get_weather``; this script runs it and sends the result back; the
model answers from it. Nothing here is syndicate-specific but the base URL and model name.
"""

from __future__ import annotations

import argparse
import json
import os

from openai import OpenAI

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "the city"}},
                   "required": ["city"]}}}]


def get_weather(city: str) -> str:
    return "22 C and sunny" if city.lower() == "paris" else "no data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"))
    parser.add_argument("--model", default="qwen2_5-coder-1_5b")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "unused"))
    parser.add_argument("--question", default="What is the weather in Paris?")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    messages: list = [{"role": "user", "content": args.question}]
    reply = client.chat.completions.create(model=args.model, messages=messages, tools=TOOLS)
    message = reply.choices[0].message
    while message.tool_calls:  # run every call the model asked for, then ask again
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            result = get_weather(**json.loads(call.function.arguments))
            print(f"tool {call.function.name}({call.function.arguments}) -> {result}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        reply = client.chat.completions.create(model=args.model, messages=messages, tools=TOOLS)
        message = reply.choices[0].message
    print(message.content)


if __name__ == "__main__":
    main()
