"""A CrewAI crew whose agent uses a Python tool, on a syndicate model.

    pip install crewai   # in a virtualenv of its own: crewai pins mcp 1.x / openai 2.x
    python crewai_crew.py --base-url http://127.0.0.1:8080/v1 --model qwen2_5-coder-1_5b
"""

from __future__ import annotations

import argparse
import os

from crewai import LLM, Agent, Crew, Task
from crewai.tools import tool


@tool("multiply")
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
    llm = LLM(model=f"openai/{args.model}", base_url=args.base_url, api_key=args.api_key, temperature=0)
    analyst = Agent(role="Analyst", goal="Answer exactly, using the tools for arithmetic",
                    backstory="You never compute by heart what a tool can compute.", llm=llm, tools=[multiply])
    task = Task(description=args.question, expected_output="the number", agent=analyst)
    print(Crew(agents=[analyst], tasks=[task]).kickoff())


if __name__ == "__main__":
    main()
