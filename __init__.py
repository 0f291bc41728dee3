"""larsight: agentic reasoning for liquid-argon TPC neutrino-detector data.

The repository root is this package; its folders are the layers, imported as
``larsight.events``, ``larsight.encoder``, ``larsight.qformer``, ``larsight.tools``,
``larsight.agent``, ``larsight.ui`` and ``larsight.evals`` (``from larsight import tools``).
Data flows one way, events -> encoder -> qformer -> tools -> agent -> ui; evals drives any layer.
"""
__version__ = "0.1.0"
