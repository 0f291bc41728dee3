"""agent/: the LangGraph Reason -> Action -> Observation loop, its brains, and expert validation.

    from larsight import agent
    answer = agent.ask("run.h5:3", "Classify this event and explain why.", brain="rules")
    print(answer)                  # the text, then every claim with its check
    for step in agent.stream(event, "Where is the vertex?"):
        print(step)

See ``agent.api`` (Answer, Agent), ``agent.graph`` (the loop), ``agent.brains`` (rules, vlm,
openai), ``agent.validate`` (claims and checks) and ``agent.toolset`` (the fixed tools, the event
registry and the run-folder guard).
"""
from .api import Agent, Answer, Step, ToolCall, ask, get_agent, stream
from .brains import BRAINS, Decision, OpenAIBrain, RulesBrain, VLMBrain, make_brain
from .validate import Check, Claim, extract_claims, validate

__all__ = ["Agent", "Answer", "Step", "ToolCall", "ask", "stream", "get_agent", "BRAINS", "Decision",
           "RulesBrain", "VLMBrain", "OpenAIBrain", "make_brain", "Check", "Claim", "extract_claims",
           "validate"]
