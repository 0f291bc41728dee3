"""larsight's analysis tools inside a LangChain / LangGraph agent, in one line.

    python examples/langchain_tools.py                       # offline: calls the tools directly
    LARSIGHT_OPENAI_BASE_URL=http://127.0.0.1:8000/v1 LARSIGHT_OPENAI_MODEL=Qwen/Qwen2.5-7B-Instruct \\
        python examples/langchain_tools.py                   # plus a LangGraph ReAct agent on your server

``langchain_tools(DATA_FOLDERS)`` returns the seven tools (segment, find_vertex, reconstruct,
classify_event, find_similar, describe, render) as LangChain ``StructuredTool`` objects with the
schemas the MCP server publishes, reading event files only under the given folders. An MCP
client framework can instead launch ``larsight mcp --data DIR`` (see the README).
"""
import json
import os
import sys
import tempfile
from pathlib import Path

from larsight import events
from larsight.ui.mcp_server import langchain_tools

data = Path(tempfile.mkdtemp(prefix="larsight-example-"))
events.write(data / "nu.h5", events.sim.simulate("nu", 2, seed=7))

tools = langchain_tools([data])                     # <- the one line
by_name = {t.name: t for t in tools}
print("tools:", ", ".join(by_name))

vertex = json.loads(by_name["find_vertex"].invoke({"event": "nu.h5:0"}))
print(f"vertex: {vertex['vertex_cm']} cm (confidence {vertex['confidence']:.2f})")
print("describe:", json.loads(by_name["describe"].invoke({"event": "nu.h5:0"}))["text"])
print("outside the data folder:", by_name["segment"].invoke({"event": "/etc/passwd:0"}))

if os.environ.get("LARSIGHT_OPENAI_BASE_URL") and os.environ.get("LARSIGHT_OPENAI_MODEL"):
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    model = ChatOpenAI(base_url=os.environ["LARSIGHT_OPENAI_BASE_URL"], model=os.environ["LARSIGHT_OPENAI_MODEL"],
                       api_key=os.environ.get("OPENAI_API_KEY", "not-needed"), timeout=120, max_retries=1)
    agent = create_react_agent(model, tools)
    out = agent.invoke({"messages": [("user", "How many protons are in event nu.h5:0, and where is its vertex?")]})
    print("agent:", out["messages"][-1].content)
else:
    print("(set LARSIGHT_OPENAI_BASE_URL and LARSIGHT_OPENAI_MODEL to also run a LangGraph agent)", file=sys.stderr)
